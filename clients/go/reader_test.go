package kafkatransit

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// fakeVault stands in for transit/decrypt in unit tests of the format and cache layers;
// the HTTP client is exercised against OpenBao in .ci/e2e/readers.sh.
type fakeVault struct {
	plaintexts map[string][]byte
	requests   [][]string
	down       error
}

func newFakeVault() *fakeVault { return &fakeVault{plaintexts: map[string][]byte{}} }

func (f *fakeVault) knows(ciphertext string, plaintext []byte) *fakeVault {
	f.plaintexts[ciphertext] = plaintext
	return f
}

func (f *fakeVault) Decrypt(_ context.Context, _ string, ciphertexts []string) ([]Decryption, error) {
	f.requests = append(f.requests, slices.Clone(ciphertexts))
	if f.down != nil {
		return nil, f.down
	}
	out := make([]Decryption, len(ciphertexts))
	for i, c := range ciphertexts {
		if p, ok := f.plaintexts[c]; ok {
			out[i].Plaintext = bytes.Clone(p)
		} else {
			out[i].Err = "cipher: message authentication failed"
		}
	}
	return out, nil
}

const text = "vault:v1:c2VjcmV0"

func fixture(t *testing.T) (*fakeVault, vectorFile) {
	file := loadVectors(t)
	vault := newFakeVault().knows(text, []byte("secret"))
	for _, v := range file.Vectors {
		vault.knows(v.WrappedKey, v.DataKey)
	}
	return vault, file
}

func TestADataKeyIsUnwrappedOnce(t *testing.T) {
	vault, file := fixture(t)
	reader := NewReader(vault, "", 10)
	hello := file.Vectors[0]
	for range 5 {
		plaintext, err := reader.Open(context.Background(), hello.Envelope)
		if err != nil || !bytes.Equal(plaintext, hello.Plaintext) {
			t.Fatalf("%x %v", plaintext, err)
		}
	}
	if len(vault.requests) != 1 || reader.CachedKeys() != 1 {
		t.Errorf("%d Vault requests, %d cached keys", len(vault.requests), reader.CachedKeys())
	}
}

func TestABatchAsksVaultOncePerTransitKey(t *testing.T) {
	vault, file := fixture(t)
	hello, js := file.Vectors[0], file.Vectors[2]
	vault.knows("vault:v1:b3RoZXI=", []byte("other"))
	reader := NewReader(vault, "customers", 10)
	results := reader.ReadAll(context.Background(), [][]byte{
		hello.Envelope, []byte(text), hello.Envelope, []byte("vault:v1:b3RoZXI="), []byte(`{"plain":1}`), js.Envelope,
	})
	want := [][]byte{hello.Plaintext, []byte("secret"), hello.Plaintext, []byte("other")}
	for i, w := range want {
		if results[i].Err != nil || !bytes.Equal(results[i].Plaintext, w) {
			t.Errorf("result %d: %x %v", i, results[i].Plaintext, results[i].Err)
		}
	}
	if !errors.Is(results[4].Err, ErrFormat) || !errors.Is(results[5].Err, ErrKeyMismatch) {
		t.Errorf("results 4, 5: %v, %v", results[4].Err, results[5].Err)
	}
	if fmt.Sprint(vault.requests) != fmt.Sprint([][]string{{hello.WrappedKey, text, "vault:v1:b3RoZXI="}}) {
		t.Errorf("requests: %v", vault.requests)
	}
	plaintext, err := reader.DecryptValue(context.Background(), text)
	if err != nil || string(plaintext) != "secret" {
		t.Errorf("DecryptValue: %q %v", plaintext, err)
	}
}

func TestVaultTextNeedsAKey(t *testing.T) {
	vault, _ := fixture(t)
	if _, err := NewReader(vault, "", 10).DecryptValue(context.Background(), text); !errors.Is(err, ErrConfig) {
		t.Errorf("got %v", err)
	}
}

func TestVaultDownOrRefusingFailsAndCachesNothing(t *testing.T) {
	vault, file := fixture(t)
	hello := file.Vectors[0]
	vault.down = fmt.Errorf("%w: Vault at http://127.0.0.1:1 is unreachable", ErrVault)
	reader := NewReader(vault, "", 10)
	if p, err := reader.Open(context.Background(), hello.Envelope); !errors.Is(err, ErrVault) || p != nil {
		t.Errorf("got %x %v", p, err)
	}
	if reader.CachedKeys() != 0 {
		t.Error("a failure was cached")
	}
	vault.down = nil
	if _, err := reader.Open(context.Background(), hello.Envelope); err != nil {
		t.Errorf("after Vault came back: %v", err)
	}
	refusing := NewReader(newFakeVault(), "", 10)
	if _, err := refusing.Open(context.Background(), hello.Envelope); !errors.Is(err, ErrVault) {
		t.Errorf("refused unwrap: %v", err)
	}
	short := NewReader(newFakeVault().knows(hello.WrappedKey, make([]byte, 16)), "", 10)
	if _, err := short.Open(context.Background(), hello.Envelope); !errors.Is(err, ErrVault) {
		t.Errorf("a 128-bit data key: %v", err)
	}
}

func TestTheCacheIsBoundedAndWipesWhatItEvicts(t *testing.T) {
	cache := newKeyCache(2, DefaultCacheMaxAge)
	first, third := []byte{1, 2, 3}, []byte{5}
	cache.put(slot{"k", "a"}, first)
	cache.put(slot{"k", "b"}, []byte{4})
	cache.get(slot{"k", "a"})
	cache.put(slot{"k", "c"}, third)
	if cache.len() != 2 || cache.get(slot{"k", "b"}) != nil || !bytes.Equal(cache.get(slot{"k", "a"}), []byte{1, 2, 3}) {
		t.Fatal("not LRU")
	}
	cache.clear()
	if !bytes.Equal(first, []byte{0, 0, 0}) || third[0] != 0 {
		t.Error("keys not wiped")
	}
}

func TestConfigNeverShowsTheToken(t *testing.T) {
	cfg := Config{Address: "http://127.0.0.1:1", Token: "s.secret-token", Key: "customers"}
	for _, shown := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if bytes.Contains([]byte(shown), []byte("secret-token")) {
			t.Errorf("token shown: %s", shown)
		}
	}
	reader, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = reader.DecryptValue(context.Background(), text)
	if !errors.Is(err, ErrVault) || bytes.Contains([]byte(err.Error()), []byte("secret-token")) {
		t.Errorf("unreachable Vault: %v", err)
	}
	if _, err := New(Config{Address: "http://x"}); !errors.Is(err, ErrConfig) {
		t.Errorf("no token: %v", err)
	}
}

func TestATombstoneStaysNilAnEmptyValueIsRefused(t *testing.T) {
	reader := NewReader(newFakeVault(), "customers", 10)
	if plaintext, err := reader.Read(context.Background(), nil); plaintext != nil || err != nil {
		t.Errorf("tombstone: %x, %v", plaintext, err)
	}
	if _, err := reader.Read(context.Background(), []byte{}); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty value: %v", err)
	}
}

// sealedUnder is the "hello (v2)" vector sealed again under keyName, with a valid tag.
func sealedUnder(t *testing.T, keyName string) (envelope, dataKey []byte, wrappedKey string) {
	t.Helper()
	hello := loadVectors(t).Vectors[3]
	parsed, err := Parse(hello.Envelope)
	if err != nil || parsed.Version != FormatVersion {
		t.Fatalf("vector 3 is not hello (v2): %v", err)
	}
	plaintext, err := parsed.Open(hello.DataKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := []byte{FormatVersion, byte(len(keyName) >> 8), byte(len(keyName))}
	head = append(head, keyName...)
	block, _ := aes.NewCipher(hello.DataKey)
	gcm, _ := cipher.NewGCM(block)
	envelope = append(append([]byte(nil), head...), byte(len(hello.WrappedKey)>>8), byte(len(hello.WrappedKey)))
	envelope = append(append(envelope, hello.WrappedKey...), parsed.Nonce...)
	return gcm.Seal(envelope, parsed.Nonce, plaintext, head), hello.DataKey, hello.WrappedKey
}

// A record on the sink names the transit key its data key was wrapped with; a reader that
// put any name in transit/decrypt/<key name> would send its token wherever the record says.
func TestAnEnvelopeCannotSteerTheVaultRequestPath(t *testing.T) {
	var paths []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"data":{"batch_results":[{"plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}}`)
	}))
	defer server.Close()
	reader, err := New(Config{Address: server.URL, Token: "s.reader-token"})
	if err != nil {
		t.Fatal(err)
	}
	for _, keyName := range []string{"..", "../../sys/seal", "team/tenant-a", ".", "a b", ""} {
		envelope, _, _ := sealedUnder(t, keyName)
		plaintext, err := reader.Open(context.Background(), envelope)
		if !errors.Is(err, ErrKeyName) || plaintext != nil {
			t.Fatalf("key name %q: got %v (plaintext %x)", keyName, err, plaintext)
		}
		// "." and ".." are in the rule's own words; every other name must not appear at all.
		quoted := strings.Contains(err.Error(), fmt.Sprintf("%q", keyName))
		if len(keyName) > 2 && strings.Contains(err.Error(), keyName) || quoted {
			t.Errorf("key name %q: the error quotes it: %v", keyName, err)
		}
	}
	// Decrypter is exported: the HTTP client checks the names it is given too.
	vault, err := NewVault(Config{Address: server.URL, Token: "s.reader-token"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Decrypt(context.Background(), "../sys/seal", []string{"vault:v1:AAAA"}); !errors.Is(err, ErrKeyName) {
		t.Errorf("Vault.Decrypt with \"../sys/seal\": %v", err)
	}
	if len(paths) != 0 {
		t.Errorf("Vault was asked at %q", paths)
	}
	// The same reader still reaches transit/decrypt/<key> for a valid name.
	envelope, _, _ := sealedUnder(t, "customers")
	if _, err := reader.Open(context.Background(), envelope); !errors.Is(err, ErrAuthentication) ||
		len(paths) != 1 || paths[0] != "/v1/transit/decrypt/customers" {
		t.Errorf("a valid key name: %v, paths %q", err, paths)
	}
}

// Errors go to logs; the envelope's key name is record data, so it is not quoted.
func TestAnotherKeyIsRefusedWithoutQuotingTheEnvelope(t *testing.T) {
	envelope, dataKey, wrappedKey := sealedUnder(t, "tenant-secret-project")
	vault := newFakeVault().knows(wrappedKey, dataKey)
	_, err := NewReader(vault, "customers", 10).Open(context.Background(), envelope)
	if !errors.Is(err, ErrKeyMismatch) || strings.Contains(err.Error(), "tenant-secret-project") ||
		!strings.Contains(err.Error(), `"customers"`) || len(vault.requests) != 0 {
		t.Errorf("got %v, %d Vault requests", err, len(vault.requests))
	}
}
