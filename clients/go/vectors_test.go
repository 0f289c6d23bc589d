package kafkatransit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	decoded, err := hex.DecodeString(s)
	*h = decoded
	return err
}

type vectorFile struct {
	Vectors []struct {
		Name       string   `json:"name"`
		Version    byte     `json:"format_version"`
		DataKey    hexBytes `json:"data_key_hex"`
		KeyName    string   `json:"key_name"`
		WrappedKey string   `json:"wrapped_key"`
		Plaintext  hexBytes `json:"plaintext_hex"`
		AAD        hexBytes `json:"aad_hex"`
		Envelope   hexBytes `json:"envelope_hex"`
	} `json:"vectors"`
	Tampered []struct {
		Name     string   `json:"name"`
		DataKey  hexBytes `json:"data_key_hex"`
		AAD      hexBytes `json:"aad_hex"`
		Envelope hexBytes `json:"envelope_hex"`
		Expect   string   `json:"expect"`
	} `json:"tampered"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	raw, err := os.ReadFile("../../docs/envelope-test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestPublishedVectorsOpen(t *testing.T) {
	file := loadVectors(t)
	if len(file.Vectors) != 7 {
		t.Fatalf("%d vectors", len(file.Vectors))
	}
	versions := map[byte]int{}
	vault := newFakeVault()
	for _, v := range file.Vectors {
		vault.knows(v.WrappedKey, v.DataKey)
	}
	reader := NewReader(vault, "", 10)
	for _, v := range file.Vectors {
		envelope, err := Parse(v.Envelope)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		versions[envelope.Version]++
		if envelope.Version != v.Version || envelope.KeyName != v.KeyName || envelope.WrappedKey != v.WrappedKey {
			t.Errorf("%s: parsed version %d, %q %q", v.Name, envelope.Version, envelope.KeyName, envelope.WrappedKey)
		}
		plaintext, err := envelope.Open(v.DataKey, v.AAD)
		if err != nil || !bytes.Equal(plaintext, v.Plaintext) {
			t.Errorf("%s: opened to %x, %v", v.Name, plaintext, err)
		}
		plaintext, err = reader.OpenWithAAD(context.Background(), v.Envelope, v.AAD)
		if err != nil || !bytes.Equal(plaintext, v.Plaintext) {
			t.Errorf("%s: the reader opened to %x, %v", v.Name, plaintext, err)
		}
	}
	if versions[FormatVersion] == 0 || versions[FormatVersion1] == 0 {
		t.Errorf("vectors by format version: %v, expected both 1 and 2", versions)
	}
}

func TestTamperedVectorsAreRejected(t *testing.T) {
	file := loadVectors(t)
	if len(file.Tampered) < 10 {
		t.Fatalf("only %d tampered vectors", len(file.Tampered))
	}
	expected := map[string]error{"version": ErrFormat, "truncated": ErrTruncated, "authentication": ErrAuthentication,
		"key name": ErrKeyName}
	vault := newFakeVault()
	reader := NewReader(vault, "", 10)
	for _, v := range file.Tampered {
		if expected[v.Expect] == nil {
			t.Errorf("%s: unknown expectation %q", v.Name, v.Expect)
		}
		envelope, err := Parse(v.Envelope)
		var plaintext []byte
		if err == nil {
			plaintext, err = envelope.Open(v.DataKey, v.AAD)
		}
		if !errors.Is(err, expected[v.Expect]) || plaintext != nil {
			t.Errorf("%s: got %v (plaintext %x), expected %v", v.Name, err, plaintext, expected[v.Expect])
		}
		if err != nil && strings.Contains(err.Error(), hex.EncodeToString(v.DataKey)) {
			t.Errorf("%s: the data key is in the error", v.Name)
		}
		if v.Expect == "key name" {
			// The reader refuses it as the format does, before asking Vault anything.
			before := len(vault.requests)
			plaintext, err := reader.OpenWithAAD(context.Background(), v.Envelope, v.AAD)
			if !errors.Is(err, ErrKeyName) || plaintext != nil || len(vault.requests) != before {
				t.Errorf("%s: the reader got %v (plaintext %x), asked Vault %d times", v.Name, err, plaintext,
					len(vault.requests)-before)
			}
		}
	}
}
