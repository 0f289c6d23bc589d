package schemafields

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// fakeTransit stands in for Vault's transit engine: AES-GCM under a key per name,
// derived per context (HMAC) when there is one, with a nonce derived from the plaintext
// then (convergent: the same value and context give the same ciphertext).
type fakeTransit struct {
	mu       sync.Mutex
	keys     map[string][]byte
	requests [][]kafkatransit.DecryptItem
	keyNames []string
	fail     error
}

func newFakeTransit() *fakeTransit { return &fakeTransit{keys: map[string][]byte{}} }

func (f *fakeTransit) key(name string, context []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
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

// encrypt is transit/encrypt/<key> as the policy calls it.
func (f *fakeTransit) encrypt(keyName string, plaintext []byte, context []byte) string {
	return f.encryptBound(keyName, plaintext, context, nil)
}

// encryptBound is transit/encrypt/<key> with associated_data (format 3): AES-GCM's
// associated data, so decrypting with any other fails authentication as Vault does.
func (f *fakeTransit) encryptBound(keyName string, plaintext, context, associatedData []byte) string {
	key := f.key(keyName, context)
	nonce := make([]byte, 12)
	if context != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(plaintext)
		copy(nonce, mac.Sum(nil))
	} else {
		rand.Read(nonce)
	}
	return "vault:v1:" + base64.StdEncoding.EncodeToString(gcm(key).Seal(nonce, nonce, plaintext, associatedData))
}

func (f *fakeTransit) DecryptItems(_ context.Context, keyName string, items []kafkatransit.DecryptItem) ([]kafkatransit.Decryption, error) {
	f.mu.Lock()
	f.requests = append(f.requests, items)
	f.keyNames = append(f.keyNames, keyName)
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	out := make([]kafkatransit.Decryption, len(items))
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

// fakeRegistry serves schemas by id.
type fakeRegistry struct {
	mu      sync.Mutex
	schemas map[uint32]*RegisteredSchema
	calls   int
	down    bool
}

func (r *fakeRegistry) SchemaByID(_ context.Context, id uint32) (*RegisteredSchema, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.down {
		return nil, fmt.Errorf("%w: registry down", ErrRegistry)
	}
	s, ok := r.schemas[id]
	if !ok {
		return nil, fmt.Errorf("%w: no id %d", ErrUnknownSchema, id)
	}
	return s, nil
}

func registryOf(schemas map[uint32]*RegisteredSchema) *fakeRegistry {
	return &fakeRegistry{schemas: schemas}
}

// frame puts body in Confluent's wire format (for Protobuf, body starts with the
// message indexes).
func frame(id uint32, body []byte) []byte {
	out := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(out[1:], id)
	return append(out, body...)
}

// indexesBytes writes message indexes as Confluent does: [0] as a single 0.
func indexesBytes(indexes ...int) []byte {
	if len(indexes) == 1 && indexes[0] == 0 {
		return []byte{0}
	}
	out := binary.AppendVarint(nil, int64(len(indexes)))
	for _, i := range indexes {
		out = binary.AppendVarint(out, int64(i))
	}
	return out
}

func newReader(t *testing.T, vault *fakeTransit, registry Registry, options Options) *Reader {
	t.Helper()
	if options.Key == "" {
		options.Key = "customers"
	}
	reader, err := NewReader(vault, registry, options)
	if err != nil {
		t.Fatal(err)
	}
	return reader
}

// protector protects values the way encrypt-schema-fields does, with fakeTransit: each
// value with its located path as context when deterministic, and in format 3 (bound)
// with its binding as associated data.
type protector struct {
	vault         *fakeTransit
	key           string
	deterministic bool
	context       []byte
	// Format 3: the flags, stream and record key (as on the sink) the fields are bound to.
	bound     bool
	flags     kafkatransit.Flags
	stream    string
	recordKey []byte
	// moved, when set, is the path a field's binding names instead of its own (a forgery).
	moved func(path string) string
}

func (p protector) text(path, plaintext string) string {
	return p.vault.encryptBound(p.key, []byte(plaintext), p.ctx(path), p.aad(path))
}

func (p protector) bytes(path string, plaintext []byte) []byte {
	return []byte(p.vault.encryptBound(p.key, plaintext, p.ctx(path), p.aad(path)))
}

func (p protector) aad(path string) []byte {
	if !p.bound {
		return nil
	}
	if p.moved != nil {
		path = p.moved(path)
	}
	return kafkatransit.Binding(p.flags, p.stream, p.recordKey, &path)
}

func (p protector) ctx(path string) []byte {
	if p.deterministic {
		return []byte(path)
	}
	return p.context
}

func mustErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}
