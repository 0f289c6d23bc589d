package kafkatransit

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

type format3File struct {
	Format3 struct {
		Envelopes []struct {
			Name             string      `json:"name"`
			DataKey          hexBytes    `json:"data_key_hex"`
			KeyName          string      `json:"key_name"`
			WrappedKey       string      `json:"wrapped_key"`
			Nonce            hexBytes    `json:"nonce_hex"`
			Flags            byte        `json:"flags"`
			ProtectionHeader string      `json:"protection_header"`
			Stream           string      `json:"stream"`
			RecordKey        *hexBytes   `json:"record_key_hex"`
			SealedHeaders    [][]*string `json:"sealed_headers"`
			Value            hexBytes    `json:"value_hex"`
			Compression      string      `json:"compression"`
			PadTo            int         `json:"pad_to"`
			Binding          hexBytes    `json:"binding_hex"`
			Envelope         hexBytes    `json:"envelope_hex"`
		} `json:"envelopes"`
		Bindings []struct {
			Flags     byte      `json:"flags"`
			Stream    string    `json:"stream"`
			RecordKey *hexBytes `json:"record_key_hex"`
			Pointer   *string   `json:"pointer"`
			Binding   hexBytes  `json:"binding_hex"`
		} `json:"bindings"`
		Frames []struct {
			Headers [][]*string `json:"headers"`
			Value   hexBytes    `json:"value_hex"`
			Frame   hexBytes    `json:"frame_hex"`
		} `json:"frames"`
		Tampered []struct {
			Name             string    `json:"name"`
			DataKey          hexBytes  `json:"data_key_hex"`
			ProtectionHeader *string   `json:"protection_header"`
			Stream           string    `json:"stream"`
			RecordKey        *hexBytes `json:"record_key_hex"`
			RequireBinding   []string  `json:"require_binding"`
			MaxPlaintext     int       `json:"max_plaintext_bytes"`
			Envelope         hexBytes  `json:"envelope_hex"`
			Expect           string    `json:"expect"`
		} `json:"tampered"`
	} `json:"format3"`
}

func loadFormat3(t *testing.T) format3File {
	t.Helper()
	raw, err := os.ReadFile("../../docs/envelope-test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file format3File
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

func keyOf(h *hexBytes) []byte {
	if h == nil {
		return nil
	}
	return []byte(*h)
}

func headersOf(t *testing.T, pairs [][]*string) []Header {
	var out []Header
	for _, pair := range pairs {
		h := Header{Key: *pair[0]}
		if pair[1] != nil {
			var v hexBytes
			if err := v.UnmarshalJSON([]byte(`"` + *pair[1] + `"`)); err != nil {
				t.Fatal(err)
			}
			h.Value = append([]byte{}, v...)
		}
		out = append(out, h)
	}
	return out
}

// vectorVault answers the one unwrap a vector needs with the vector's data key.
type vectorVault struct{ dataKey []byte }

func (v vectorVault) Decrypt(_ context.Context, _ string, ciphertexts []string) ([]Decryption, error) {
	out := make([]Decryption, len(ciphertexts))
	for i := range out {
		out[i].Plaintext = append([]byte(nil), v.dataKey...)
	}
	return out, nil
}

// DecryptItems restores an encrypted record key (the vectors' keys are no real Vault texts).
func (v vectorVault) DecryptItems(_ context.Context, _ string, items []DecryptItem) ([]Decryption, error) {
	out := make([]Decryption, len(items))
	for i, item := range items {
		out[i].Plaintext = append([]byte("restored:"), item.Context...)
	}
	return out, nil
}

// kindOf names an error as the vectors' "expect" does.
func kindOf(err error) string {
	for _, k := range []struct {
		err  error
		kind string
	}{{ErrUnbound, "unbound"}, {ErrFlags, "flags"}, {ErrCommitment, "commitment"}, {ErrPadding, "padding"},
		{ErrTooLarge, "too large"}, {ErrDecompression, "decompression"}, {ErrFrame, "frame"},
		{ErrAuthentication, "authentication"}, {ErrTruncated, "truncated"}, {ErrKeyName, "key name"},
		{ErrFormat, "version"}} {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return "other: " + err.Error()
}

func TestFormat3VectorsOpenAndSealToTheirBytes(t *testing.T) {
	file := loadFormat3(t)
	for _, v := range file.Format3.Envelopes {
		reader := NewReader(vectorVault{v.DataKey}, "", 0)
		if err := reader.SetRecordOptions(RecordOptions{RecordKeysKey: "customer-ids"}); err != nil {
			t.Fatal(err)
		}
		headers := []Header{{"kept", []byte("1")}, {ProtectionHeader, []byte(v.ProtectionHeader)}}
		got, err := reader.ReadRecord(context.Background(), Record{Topic: v.Stream, Key: keyOf(v.RecordKey),
			Value: v.Envelope, Headers: headers})
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		want := append([]Header{{"kept", []byte("1")}}, headersOf(t, v.SealedHeaders)...)
		if !bytes.Equal(got.Value, v.Value) || !reflect.DeepEqual(got.Headers, want) {
			t.Fatalf("%s: got %q %v", v.Name, got.Value, got.Headers)
		}
		flags := Flags(v.Flags)
		wantKey := keyOf(v.RecordKey)
		if flags&FlagKeysEncrypted != 0 {
			wantKey = []byte("restored:" + v.Stream)
		}
		if !bytes.Equal(got.Key, wantKey) {
			t.Fatalf("%s: key %q", v.Name, got.Key)
		}
		if b := Binding(flags, v.Stream, keyOf(v.RecordKey), nil); !bytes.Equal(b, v.Binding) {
			t.Fatalf("%s: binding %x", v.Name, b)
		}
		if v.Compression != "none" {
			continue
		}
		plaintext := []byte(v.Value)
		if flags&FlagHeaders != 0 {
			plaintext = Frame(headersOf(t, v.SealedHeaders), v.Value)
		}
		sealed, err := SealV3With(v.DataKey, v.KeyName, v.WrappedKey, v.Nonce, flags, plaintext, v.Binding[16:], v.PadTo)
		if err != nil || !bytes.Equal(sealed, v.Envelope) {
			t.Fatalf("%s: sealed to other bytes (%v)", v.Name, err)
		}
	}
	for _, b := range file.Format3.Bindings {
		if got := Binding(Flags(b.Flags), b.Stream, keyOf(b.RecordKey), b.Pointer); !bytes.Equal(got, b.Binding) {
			t.Fatalf("binding %+v: %x", b, got)
		}
	}
	for _, f := range file.Format3.Frames {
		headers := headersOf(t, f.Headers)
		if got := Frame(headers, f.Value); !bytes.Equal(got, f.Frame) {
			t.Fatalf("frame %x", got)
		}
		back, value, err := Unframe(f.Frame)
		if err != nil || !bytes.Equal(value, f.Value) || len(back) != len(headers) {
			t.Fatalf("unframe %x: %v", f.Frame, err)
		}
	}
}

func TestFormat3TamperedRecordsAreRefusedForTheirReason(t *testing.T) {
	file := loadFormat3(t)
	if len(file.Format3.Tampered) < 20 {
		t.Fatalf("only %d tampered cases", len(file.Format3.Tampered))
	}
	for _, c := range file.Format3.Tampered {
		reader := NewReader(vectorVault{c.DataKey}, "", 0)
		if err := reader.SetRecordOptions(RecordOptions{RequireBinding: c.RequireBinding,
			MaxPlaintext: c.MaxPlaintext}); err != nil {
			t.Fatal(err)
		}
		var headers []Header
		if c.ProtectionHeader != nil {
			headers = []Header{{ProtectionHeader, []byte(*c.ProtectionHeader)}}
		}
		_, err := reader.ReadRecord(context.Background(), Record{Topic: c.Stream, Key: keyOf(c.RecordKey),
			Value: c.Envelope, Headers: headers})
		if err == nil {
			t.Fatalf("%s: opened", c.Name)
		}
		if kind := kindOf(err); kind != c.Expect {
			t.Errorf("%s: refused as %s (%v), expected %s", c.Name, kind, err, c.Expect)
		}
	}
}

// fakeTransit stands in for Vault: data keys, AES-GCM encryption with associated data,
// convergent (deterministic) encryption under a context, and HMAC.
type fakeTransit struct {
	mu    sync.Mutex
	keys  map[string][]byte
	calls int
}

func newFakeTransit() *fakeTransit { return &fakeTransit{keys: map[string][]byte{}} }

func (f *fakeTransit) key(name string, context []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	root, ok := f.keys[name]
	if !ok {
		root = make([]byte, 32)
		rand.Read(root)
		f.keys[name] = root
	}
	if context == nil {
		return root
	}
	mac := hmac.New(sha256.New, root)
	mac.Write(context)
	return mac.Sum(nil)
}

func gcm(key []byte) cipher.AEAD {
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return aead
}

func (f *fakeTransit) Encrypt(_ context.Context, keyName string, plaintext, context, ad []byte) (string, error) {
	key := f.key(keyName, context)
	nonce := make([]byte, 12)
	if context != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(plaintext)
		copy(nonce, mac.Sum(nil))
	} else {
		rand.Read(nonce)
	}
	return "vault:v1:" + base64.StdEncoding.EncodeToString(gcm(key).Seal(nonce, nonce, plaintext, ad)), nil
}

// forget deletes a transit key, as kafka-transit forget does in Vault.
func (f *fakeTransit) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, name)
}

func (f *fakeTransit) DecryptItems(_ context.Context, keyName string, items []DecryptItem) ([]Decryption, error) {
	f.mu.Lock()
	_, exists := f.keys[keyName]
	f.mu.Unlock()
	if !exists {
		// What *Vault makes of Vault's answer for a key it does not have: the whole
		// request fails with HTTP 400 {"errors":["encryption key not found"]}.
		return nil, fmt.Errorf("%w: %w: HTTP 400 from transit/decrypt/%s: encryption key not found", ErrVault,
			ErrKeyNotFound, keyName)
	}
	out := make([]Decryption, len(items))
	for i, item := range items {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(item.Ciphertext, "vault:v1:"))
		if err != nil || len(raw) < 12 {
			out[i].Err = "invalid ciphertext"
			continue
		}
		plain, err := gcm(f.key(keyName, item.Context)).Open(nil, raw[:12], raw[12:], item.AssociatedData)
		if err != nil {
			out[i].Err = "cipher: message authentication failed"
			continue
		}
		out[i].Plaintext = plain
	}
	return out, nil
}

func (f *fakeTransit) Decrypt(ctx context.Context, keyName string, ciphertexts []string) ([]Decryption, error) {
	items := make([]DecryptItem, len(ciphertexts))
	for i, c := range ciphertexts {
		items[i].Ciphertext = c
	}
	return f.DecryptItems(ctx, keyName, items)
}

func (f *fakeTransit) DataKey(ctx context.Context, keyName string) ([]byte, string, error) {
	material := make([]byte, 32)
	rand.Read(material)
	wrapped, err := f.Encrypt(ctx, keyName, material, nil, nil)
	return material, wrapped, err
}

func (f *fakeTransit) HMAC(_ context.Context, keyName string, input []byte) (string, error) {
	mac := hmac.New(sha256.New, f.key(keyName, nil))
	mac.Write(input)
	return "vault:v1:" + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

var everyOption = WriterOptions{Key: "customers", RecordKeys: "encrypt", RecordKeysKey: "customer-ids",
	Headers: "seal", KeepHeaders: []string{"traceparent"}, Bind: []string{"stream", "key"}, Compression: "zstd",
	PadTo: 256}

var sourceHeaders = []Header{{"traceparent", []byte("00-1-01")}, {"tenant", []byte("a")}, {"tenant", []byte("b")},
	{"flag", nil}}

func setup(t *testing.T, options WriterOptions) (*fakeTransit, *Writer, *Reader) {
	t.Helper()
	vault := newFakeTransit()
	writer, err := NewWriter(vault, options)
	if err != nil {
		t.Fatal(err)
	}
	reader := NewReader(vault, "customers", 0)
	if err := reader.SetRecordOptions(RecordOptions{RecordKeysKey: "customer-ids",
		RequireBinding: []string{"stream", "key"}}); err != nil {
		t.Fatal(err)
	}
	return vault, writer, reader
}

func seal(t *testing.T, w *Writer, topic string, key, value []byte, headers []Header) Record {
	t.Helper()
	r, err := w.Seal(context.Background(), Record{Topic: topic, Key: key, Value: value, Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func refused(t *testing.T, r *Reader, record Record, want error) {
	t.Helper()
	_, err := r.ReadRecord(context.Background(), record)
	if !errors.Is(err, want) {
		t.Fatalf("expected %v, got %v", want, err)
	}
}

func TestEveryOptionRoundTripsAndHidesTheHeaders(t *testing.T) {
	_, writer, reader := setup(t, everyOption)
	value := []byte(`{"total":12,"notes":"` + strings.Repeat("x", 300) + `"}`)
	sealed := seal(t, writer, "orders", []byte("customer-42"), value, sourceHeaders)
	if !bytes.HasPrefix(sealed.Key, []byte("vault:v1:")) || len(sealed.Headers) != 2 ||
		sealed.Headers[0].Key != "traceparent" || string(sealed.Headers[1].Value) != "3;5f" {
		t.Fatalf("sink record: key %q headers %v", sealed.Key, sealed.Headers)
	}
	if again := seal(t, writer, "orders", []byte("customer-42"), []byte("v"), nil); !bytes.Equal(again.Key, sealed.Key) {
		t.Fatal("the same key on the same stream must give the same sink key (partitioning, compaction)")
	}
	got, err := reader.ReadRecord(context.Background(), sealed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Key) != "customer-42" || !bytes.Equal(got.Value, value) || !reflect.DeepEqual(got.Headers, sourceHeaders) {
		t.Fatalf("read back %q %q %v", got.Key, got.Value, got.Headers)
	}
}

func TestAMovedRecordIsRefused(t *testing.T) {
	vault, writer, reader := setup(t, everyOption)
	sealed := seal(t, writer, "orders", []byte("k"), []byte("v"), sourceHeaders)
	sealed.Topic = "payments"
	refused(t, reader, sealed, ErrAuthentication)
	// A reader configured with the stream reads it wherever it was copied to.
	copied := NewReader(vault, "customers", 0)
	if err := copied.SetRecordOptions(RecordOptions{Stream: "orders", RecordKeysKey: "customer-ids"}); err != nil {
		t.Fatal(err)
	}
	if got, err := copied.ReadRecord(context.Background(), sealed); err != nil || string(got.Value) != "v" {
		t.Fatalf("%q %v", got.Value, err)
	}
}

func TestAValueSwappedBetweenKeysIsRefused(t *testing.T) {
	_, writer, reader := setup(t, everyOption)
	one := seal(t, writer, "orders", []byte("customer-1"), []byte("one"), nil)
	two := seal(t, writer, "orders", []byte("customer-2"), []byte("two"), nil)
	one.Key = two.Key
	refused(t, reader, one, ErrAuthentication)
	one.Key = nil
	refused(t, reader, one, ErrAuthentication)
}

func TestARekeyedEnvelopeIsRefusedByItsCommitment(t *testing.T) {
	vault, writer, reader := setup(t, everyOption)
	first := seal(t, writer, "orders", []byte("k"), []byte("one"), nil)
	other, _ := NewWriter(vault, everyOption)
	second := seal(t, other, "orders", []byte("k"), []byte("two"), nil)
	at := 4 + len("customers") + 32
	w1 := int(binary.BigEndian.Uint16(first.Value[at:]))
	w2 := int(binary.BigEndian.Uint16(second.Value[at:]))
	forged := append(append(append([]byte(nil), first.Value[:at]...), second.Value[at:at+2+w2]...),
		first.Value[at+2+w1:]...)
	first.Value = forged
	refused(t, reader, first, ErrCommitment)
}

func TestStrippedOrEditedProtectionHeadersAreRefused(t *testing.T) {
	vault, writer, reader := setup(t, everyOption)
	sealed := seal(t, writer, "orders", []byte("k"), []byte("v"), sourceHeaders)
	stripped := sealed
	stripped.Headers = sealed.Headers[:1]
	refused(t, reader, stripped, ErrUnbound)
	lenient := NewReader(vault, "customers", 0)
	lenient.SetRecordOptions(RecordOptions{RecordKeysKey: "customer-ids"})
	refused(t, lenient, stripped, ErrFlags)
	edited := sealed
	edited.Headers = []Header{sealed.Headers[0], {ProtectionHeader, []byte("3;5b")}}
	refused(t, reader, edited, ErrFlags)
	doubled := sealed
	doubled.Headers = append(append([]Header{}, sealed.Headers...), Header{ProtectionHeader, []byte("3;5f")})
	refused(t, reader, doubled, ErrFlags)
	// The value-only API refuses a bound record rather than returning the frame.
	if _, err := reader.Read(context.Background(), sealed.Value); !errors.Is(err, ErrFlags) {
		t.Fatalf("Read of a bound record: %v", err)
	}
}

func TestRequireBindingRefusesUnboundRecords(t *testing.T) {
	_, loose, reader := setup(t, WriterOptions{Key: "customers", Bind: []string{"stream"}})
	sealed := seal(t, loose, "orders", []byte("k"), []byte("v"), nil)
	_, err := reader.ReadRecord(context.Background(), sealed)
	if !errors.Is(err, ErrUnbound) || !strings.Contains(err.Error(), "key") {
		t.Fatalf("%v", err)
	}
	if err := reader.SetRecordOptions(RecordOptions{RequireBinding: []string{"partition"}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("%v", err)
	}
}

func TestBoundVaultValuesAndFields(t *testing.T) {
	vault, _, reader := setup(t, everyOption)
	ctx := context.Background()
	flags := FlagStream | FlagKey
	text, _ := vault.Encrypt(ctx, "customers", []byte("secret"), nil, Binding(flags, "orders", []byte("k"), nil))
	headers := []Header{{ProtectionHeader, flags.HeaderValue()}}
	got, err := reader.ReadRecord(ctx, Record{Topic: "orders", Key: []byte("k"), Value: []byte(text), Headers: headers})
	if err != nil || string(got.Value) != "secret" {
		t.Fatalf("%q %v", got.Value, err)
	}
	refused(t, reader, Record{Topic: "payments", Key: []byte("k"), Value: []byte(text), Headers: headers},
		ErrAuthentication)
	pointer := "/ssn"
	field, _ := vault.Encrypt(ctx, "customers", []byte(`"123-45-6789"`), nil, Binding(flags, "orders", []byte("k"), &pointer))
	moved := []byte(`{"name":"Ada","other":"` + field + `"}`)
	if _, err := reader.ReadFields(ctx, Record{Topic: "orders", Key: []byte("k"), Value: moved, Headers: headers}); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a field moved in the document: %v", err)
	}
	document := []byte(`{"name":"Ada","ssn":"` + field + `"}`)
	plain, err := reader.ReadFields(ctx, Record{Topic: "orders", Key: []byte("k"), Value: document, Headers: headers})
	if err != nil || string(plain) != `{"name":"Ada","ssn":"123-45-6789"}` {
		t.Fatalf("%s %v", plain, err)
	}
}

func TestTombstonesKeepTheirKeyAndDropSealedHeaders(t *testing.T) {
	_, writer, reader := setup(t, everyOption)
	sealed := seal(t, writer, "orders", []byte("k"), nil, sourceHeaders)
	got, err := reader.ReadRecord(context.Background(), sealed)
	if err != nil || got.Value != nil || string(got.Key) != "k" || len(got.Headers) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestDataKeysAreRetiredAfterMaxRecordsAndWiped(t *testing.T) {
	_, writer, _ := setup(t, WriterOptions{Key: "customers", Bind: []string{"stream"}, MaxRecords: 2})
	for i := 0; i < 5; i++ {
		seal(t, writer, "orders", nil, []byte("v"), nil)
	}
	if writer.DataKeysMinted() != 3 {
		t.Fatalf("%d data keys for 5 records at 2 a key", writer.DataKeysMinted())
	}
	material := writer.active.material
	writer.Close()
	if !bytes.Equal(material, make([]byte, 32)) {
		t.Fatal("the data key was not wiped")
	}
}

func TestLZ4AndHMACKeys(t *testing.T) {
	_, writer, reader := setup(t, WriterOptions{Key: "customers", RecordKeys: "hmac", RecordKeysKey: "customer-ids",
		Bind: []string{"stream", "key"}, Compression: "lz4", PadTo: 32})
	sealed := seal(t, writer, "orders", []byte("k"), bytes.Repeat([]byte("a"), 1000), nil)
	got, err := reader.ReadRecord(context.Background(), sealed)
	if err != nil || !bytes.Equal(got.Key, sealed.Key) || len(got.Value) != 1000 {
		t.Fatalf("%v", err)
	}
}
