package kafkatransit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Records sealed per data subject (docs/forgetting.md): each under a transit key of its
// subject's own, named by a prefix and a pseudonym; kafka-transit forget deletes the key.

// subjectKey is the key name envelope-seal gives a subject: the prefix, then 24 bytes in
// hex (of Vault's HMAC of the id there; any digest does for a test).
func subjectKey(id string) string {
	digest := sha256.Sum256([]byte(id))
	return "customers-" + hex.EncodeToString(digest[:24])
}

// fakeClock is the cache's clock in tests: a minute passes without a minute's sleep.
type fakeClock struct{ at time.Time }

func (c *fakeClock) now() time.Time          { return c.at }
func (c *fakeClock) advance(d time.Duration) { c.at = c.at.Add(d) }

func withClock(r *Reader) *fakeClock {
	clock := &fakeClock{at: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)}
	r.cache.mu.Lock()
	defer r.cache.mu.Unlock()
	r.cache.now = clock.now
	return clock
}

// subjectWriters seals, for each subject id, records under that subject's own key.
func subjectWriters(t *testing.T, vault *fakeTransit, options WriterOptions, ids ...string) map[string]*Writer {
	t.Helper()
	writers := map[string]*Writer{}
	for _, id := range ids {
		options.Key = subjectKey(id)
		writer, err := NewWriter(vault, options)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(writer.Close)
		writers[id] = writer
	}
	return writers
}

func subjectReader(t *testing.T, vault Decrypter, options RecordOptions) *Reader {
	t.Helper()
	reader := NewReader(vault, "", 0)
	if err := reader.SetSubjectKeys("customers-"); err != nil {
		t.Fatal(err)
	}
	if err := reader.SetRecordOptions(options); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	return reader
}

// forgottenAsSaid checks the error of a forgotten subject's record: ErrSubjectForgotten,
// its message starting "subject forgotten", not retryable (no ErrVault), and neither the
// subject's id nor its key name in it.
func forgottenAsSaid(t *testing.T, err error, id string) {
	t.Helper()
	if !errors.Is(err, ErrSubjectForgotten) || errors.Is(err, ErrVault) {
		t.Fatalf("subject %s: %v", id, err)
	}
	if message := err.Error(); !strings.HasPrefix(message, "subject forgotten") ||
		strings.Contains(message, id) || strings.Contains(message, subjectKey(id)) {
		t.Errorf("subject %s: %q", id, message)
	}
}

func TestAForgottenSubjectsRecordsFailAndTheOthersStillOpen(t *testing.T) {
	vault := newFakeTransit()
	ids := []string{"4711", "4712", "4713"}
	writers := subjectWriters(t, vault, WriterOptions{Bind: []string{"stream", "key"}, Headers: "seal",
		Compression: "zstd"}, ids...)
	type sealed struct {
		id            string
		source, input Record
	}
	var records []sealed
	for round := range 2 {
		for _, id := range ids {
			source := Record{Topic: "orders", Key: []byte(id), Value: []byte(fmt.Sprintf(`{"order":%d,"customer":"%s"}`,
				round, id)), Headers: []Header{{"tenant", []byte("a")}}}
			records = append(records, sealed{id, source, seal(t, writers[id], "orders", source.Key, source.Value,
				source.Headers)})
		}
	}
	reader := subjectReader(t, vault, RecordOptions{RequireBinding: []string{"stream", "key"}})
	clock := withClock(reader)
	readAll := func(forgotten string) {
		t.Helper()
		for _, r := range records {
			got, err := reader.ReadRecord(context.Background(), r.input)
			if r.id == forgotten {
				forgottenAsSaid(t, err, r.id)
				if got.Value != nil || got.Key != nil {
					t.Errorf("subject %s: a forgotten record gave data", r.id)
				}
				continue
			}
			if err != nil || !sameBytes(got.Key, r.source.Key) || !sameBytes(got.Value, r.source.Value) ||
				!sameHeaders(got.Headers, r.source.Headers) {
				t.Fatalf("subject %s: %q %q %v, %v", r.id, got.Key, got.Value, got.Headers, err)
			}
		}
	}
	readAll("")
	if reader.CachedKeys() != len(ids) {
		t.Errorf("%d data keys cached, want one per subject", reader.CachedKeys())
	}

	vault.forget(subjectKey("4712"))
	// Within the cache's max age the unwrapped data key still opens: the bound the
	// readers document for a forget to reach a running reader.
	clock.advance(DefaultCacheMaxAge - time.Millisecond)
	readAll("")
	clock.advance(time.Millisecond)
	readAll("4712")
	// A forgotten subject is asked of Vault again each time (its failure is not cached),
	// and the others' data keys were unwrapped again once.
	if reader.CachedKeys() != len(ids)-1 {
		t.Errorf("%d data keys cached, want %d", reader.CachedKeys(), len(ids)-1)
	}
}

// ReadAll asks Vault once per transit key: a forgotten subject's request fails whole,
// the other subjects' envelopes in the same batch open.
func TestInABatchOnlyTheForgottenSubjectFails(t *testing.T) {
	vault := newFakeTransit()
	writers := subjectWriters(t, vault, WriterOptions{}, "id-a", "id-b", "id-c")
	var values [][]byte
	var ids []string
	for _, id := range []string{"id-a", "id-b", "id-c", "id-b", "id-a"} {
		sealed := seal(t, writers[id], "orders", nil, []byte("value of "+id), nil)
		values, ids = append(values, sealed.Value), append(ids, id)
	}
	vault.forget(subjectKey("id-b"))
	reader := subjectReader(t, vault, RecordOptions{})
	results := reader.ReadAll(context.Background(), values)
	for i, result := range results {
		if ids[i] == "id-b" {
			forgottenAsSaid(t, result.Err, "id-b")
			continue
		}
		if result.Err != nil || string(result.Plaintext) != "value of "+ids[i] {
			t.Errorf("value %d (subject %s): %q %v", i, ids[i], result.Plaintext, result.Err)
		}
	}
	if reader.VaultCalls() != 3 {
		t.Errorf("%d Vault calls, want one per subject", reader.VaultCalls())
	}
}

// The reader opens its subjects' keys only: an envelope naming any other key is refused
// before Vault is asked, without quoting the name the producer wrote.
func TestASubjectReaderRefusesEnvelopesUnderOtherKeys(t *testing.T) {
	vault := newFakeTransit()
	for _, keyName := range []string{"customers", "orders-" + strings.Repeat("x", 32), "Customers-abc", "xcustomers-abc"} {
		writer, err := NewWriter(vault, WriterOptions{Key: keyName})
		if err != nil {
			t.Fatal(err)
		}
		record := seal(t, writer, "orders", []byte("k"), []byte("v"), nil)
		writer.Close()
		reader := subjectReader(t, vault, RecordOptions{})
		_, err = reader.ReadRecord(context.Background(), record)
		if !errors.Is(err, ErrKeyMismatch) || strings.Contains(err.Error(), fmt.Sprintf("%q", keyName)) ||
			len(keyName) > len("customers-") && strings.Contains(err.Error(), keyName) ||
			!strings.Contains(err.Error(), `"customers-"`) {
			t.Errorf("%s: %v", keyName, err)
		}
		if _, err := reader.Read(context.Background(), record.Value); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("%s, Read: %v", keyName, err)
		}
		if reader.VaultCalls() != 0 {
			t.Errorf("%s: Vault was asked", keyName)
		}
	}
	// A reader without SubjectKeys opens any key, as before.
	writer, _ := NewWriter(vault, WriterOptions{Key: "customers"})
	defer writer.Close()
	record := seal(t, writer, "orders", nil, []byte("v"), nil)
	if got, err := NewReader(vault, "", 0).Read(context.Background(), record.Value); err != nil || string(got) != "v" {
		t.Errorf("without SubjectKeys: %q %v", got, err)
	}
}

func TestSubjectKeysAndCacheMaxAgeAreChecked(t *testing.T) {
	base := Config{Address: "http://127.0.0.1:1", Token: "s.token"}
	for name, change := range map[string]func(*Config){
		"with Key":           func(c *Config) { c.Key, c.SubjectKeys = "customers", "customers-" },
		"a slash":            func(c *Config) { c.SubjectKeys = "team/customers-" },
		"no room for names":  func(c *Config) { c.SubjectKeys = strings.Repeat("c", MaxKeyNameLength-subjectNameLength+1) },
		"a negative max age": func(c *Config) { c.CacheMaxAge = -time.Second },
	} {
		cfg := base
		change(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := base
	cfg.SubjectKeys, cfg.CacheMaxAge = strings.Repeat("c", MaxKeyNameLength-subjectNameLength), 5*time.Second
	reader, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reader.cache.maxAge != 5*time.Second || NewReader(newFakeVault(), "", 0).cache.maxAge != DefaultCacheMaxAge {
		t.Errorf("max age %v", reader.cache.maxAge)
	}
	if shown := fmt.Sprint(Config{SubjectKeys: "customers-"}); !strings.Contains(shown, `SubjectKeys: "customers-"`) {
		t.Errorf("Config shows %s", shown)
	}
}

func TestACachedDataKeyIsUnwrappedAgainAfterItsMaxAge(t *testing.T) {
	vault, file := fixture(t)
	hello := file.Vectors[0]
	reader := NewReader(vault, "", 10)
	clock := withClock(reader)
	open := func(wantRequests int) {
		t.Helper()
		plaintext, err := reader.Open(context.Background(), hello.Envelope)
		if err != nil || !bytes.Equal(plaintext, hello.Plaintext) {
			t.Fatalf("%x %v", plaintext, err)
		}
		if len(vault.requests) != wantRequests {
			t.Fatalf("%d Vault requests, want %d", len(vault.requests), wantRequests)
		}
	}
	open(1)
	clock.advance(30 * time.Second)
	open(1)
	clock.advance(30*time.Second - time.Nanosecond)
	open(1) // used all along, yet its age counts from the unwrap
	clock.advance(time.Nanosecond)
	open(2)
	if err := reader.SetCacheMaxAge(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	clock.advance(9 * time.Second)
	open(2)
	clock.advance(time.Second)
	open(3)
}

// An expired key is wiped at the cache's next use, even when it is never asked for again.
func TestExpiredKeysAreWipedThoughNeverAskedForAgain(t *testing.T) {
	cache := newKeyCache(10, time.Minute)
	clock := &fakeClock{at: time.Unix(1_800_000_000, 0)}
	cache.now = clock.now
	old, young := []byte{1, 2, 3}, []byte{4, 5, 6}
	cache.put(slot{"customers-a", "vault:v1:a"}, old)
	clock.advance(30 * time.Second)
	cache.put(slot{"customers-b", "vault:v1:b"}, young)
	clock.advance(30 * time.Second)
	if cache.get(slot{"customers-b", "vault:v1:b"}) == nil || cache.len() != 1 {
		t.Fatalf("%d keys cached, want the younger one", cache.len())
	}
	if !bytes.Equal(old, []byte{0, 0, 0}) || !bytes.Equal(young, []byte{4, 5, 6}) {
		t.Errorf("old %v, young %v", old, young)
	}
	// Replacing a key restarts its age, and it then expires after the keys put before.
	cache.put(slot{"customers-b", "vault:v1:b"}, []byte{7})
	clock.advance(10 * time.Second)
	cache.put(slot{"customers-c", "vault:v1:c"}, []byte{8})
	clock.advance(10 * time.Second)
	cache.put(slot{"customers-b", "vault:v1:b"}, []byte{9})
	clock.advance(55 * time.Second) // c is 65 s old, b 55 s
	if cache.len() != 1 || !bytes.Equal(cache.get(slot{"customers-b", "vault:v1:b"}), []byte{9}) {
		t.Errorf("%d keys cached, want the replaced one only", cache.len())
	}
}

// Over HTTP: Vault and OpenBao answer transit/decrypt/<name> for a key they do not have
// with HTTP 400 {"errors":["encryption key not found"]}, the whole request failing
// (OpenBao's builtin/logical/transit/path_decrypt.go; vault-dev mimics it).
func TestVaultsKeyNotFoundIsAForgottenSubject(t *testing.T) {
	live, gone, denied := subjectKey("live"), subjectKey("gone"), subjectKey("denied")
	liveEnvelope, dataKey, _ := sealedUnder(t, live)
	goneEnvelope, _, _ := sealedUnder(t, gone)
	deniedEnvelope, _, _ := sealedUnder(t, denied)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/transit/decrypt/" + gone:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"errors":["encryption key not found"]}`)
		case "/v1/transit/decrypt/" + denied:
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`)
		default:
			fmt.Fprintf(w, `{"data":{"batch_results":[{"plaintext":%q}]}}`, base64.StdEncoding.EncodeToString(dataKey))
		}
	}))
	defer server.Close()
	hello := loadVectors(t).Vectors[3].Plaintext
	reader, err := New(Config{Address: server.URL, Token: "s.reader-token", SubjectKeys: "customers-"})
	if err != nil {
		t.Fatal(err)
	}
	results := reader.ReadAll(context.Background(), [][]byte{goneEnvelope, liveEnvelope, deniedEnvelope})
	forgottenAsSaid(t, results[0].Err, "gone")
	if results[1].Err != nil || !bytes.Equal(results[1].Plaintext, hello) {
		t.Errorf("live subject: %x %v", results[1].Plaintext, results[1].Err)
	}
	if !errors.Is(results[2].Err, ErrVault) || errors.Is(results[2].Err, ErrSubjectForgotten) {
		t.Errorf("permission denied: %v", results[2].Err)
	}
	// Without SubjectKeys a missing key is no forgotten subject, only a Vault failure.
	plain, err := New(Config{Address: server.URL, Token: "s.reader-token"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plain.Open(context.Background(), goneEnvelope)
	if !errors.Is(err, ErrVault) || !errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrSubjectForgotten) {
		t.Errorf("without SubjectKeys: %v", err)
	}
}

// A Decrypter of its own may report a missing key per item rather than fail the request.
func TestAMissingKeyReportedPerItemIsAForgottenSubjectToo(t *testing.T) {
	envelope, _, wrapped := sealedUnder(t, subjectKey("id-x"))
	vault := newFakeVault()
	reader := subjectReader(t, perItemNotFound{vault}, RecordOptions{})
	_, err := reader.Open(context.Background(), envelope)
	forgottenAsSaid(t, err, "id-x")
	if len(vault.requests) != 1 || vault.requests[0][0] != wrapped {
		t.Errorf("requests %v", vault.requests)
	}
}

type perItemNotFound struct{ *fakeVault }

func (p perItemNotFound) Decrypt(ctx context.Context, keyName string, ciphertexts []string) ([]Decryption, error) {
	out, err := p.fakeVault.Decrypt(ctx, keyName, ciphertexts)
	for i := range out {
		out[i] = Decryption{Err: "encryption key not found"}
	}
	return out, err
}
