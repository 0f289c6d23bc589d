package kafkatransit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readDir maps record key -> value of a directory of KEY.bin (value bytes) and KEY.null
// (tombstone) files.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]byte{}
	for _, entry := range entries {
		name := entry.Name()
		key := strings.TrimSuffix(strings.TrimSuffix(name, ".bin"), ".null")
		if strings.HasSuffix(name, ".null") {
			values[key] = nil
			continue
		}
		if values[key], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return values
}

// TestHostOutput reads what kafka-transit wrote to Kafka (envelope-seal and encrypt-value
// output, saved by .ci/e2e/readers.sh) with a real OpenBao over TLS, and compares it
// byte for byte with what was produced. Skipped unless KAFKA_TRANSIT_E2E_HOST_OUTPUT is set.
func TestHostOutput(t *testing.T) {
	hostOutput := os.Getenv("KAFKA_TRANSIT_E2E_HOST_OUTPUT")
	if hostOutput == "" {
		t.Skip("KAFKA_TRANSIT_E2E_HOST_OUTPUT not set: run .ci/e2e/readers.sh")
	}
	expected := readDir(t, os.Getenv("KAFKA_TRANSIT_E2E_EXPECTED"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A token that may only decrypt with key customers, read from its file.
	config := Config{
		Address:   os.Getenv("VAULT_ADDR"),
		TokenFile: os.Getenv("KAFKA_TRANSIT_E2E_TOKEN_FILE"),
		CACert:    os.Getenv("VAULT_CACERT"),
		Key:       "customers",
	}

	for _, topic := range []string{"readers.sealed", "readers.encrypted"} {
		written := readDir(t, filepath.Join(hostOutput, topic))
		if len(written) != len(expected) {
			t.Fatalf("%s: %d records, %d expected", topic, len(written), len(expected))
		}
		// One call per record, as a consumer loop would make them.
		reader, err := New(config)
		if err != nil {
			t.Fatal(err)
		}
		identical := 0
		for key, want := range expected {
			value, ok := written[key]
			switch {
			case !ok:
				t.Fatalf("%s: no record %s", topic, key)
			case want == nil:
				if value != nil {
					t.Errorf("%s: %s is not a tombstone", topic, key)
				}
				identical++
				continue
			}
			var plaintext []byte
			if topic == "readers.sealed" {
				plaintext, err = reader.Open(ctx, value)
			} else {
				plaintext, err = reader.DecryptValue(ctx, string(value))
			}
			if err != nil || !bytes.Equal(plaintext, want) {
				t.Fatalf("%s: %s: %d bytes, %v", topic, key, len(plaintext), err)
			}
			identical++
		}
		t.Logf("go reader: %s: %d records read one by one, %d byte-identical, %d Vault request(s)",
			topic, len(written), identical, reader.VaultCalls())

		// The whole topic as one batch.
		batchReader, err := New(config)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var values [][]byte
		for key, value := range written {
			if value != nil {
				keys, values = append(keys, key), append(values, value)
			}
		}
		for i, result := range batchReader.ReadAll(ctx, values) {
			if result.Err != nil || !bytes.Equal(result.Plaintext, expected[keys[i]]) {
				t.Fatalf("%s: ReadAll %s: %v", topic, keys[i], result.Err)
			}
		}
		t.Logf("go reader: %s: %d values read with ReadAll, all byte-identical, %d Vault request(s)",
			topic, len(values), batchReader.VaultCalls())
	}

	tampered := readDir(t, filepath.Join(hostOutput, "readers.tampered"))
	reader, err := New(config)
	if err != nil {
		t.Fatal(err)
	}
	if plaintext, err := reader.Open(ctx, tampered["json-7"]); err != nil || !bytes.Equal(plaintext, expected["json-7"]) {
		t.Fatalf("the untouched envelope: %v", err)
	}
	plaintext, err := reader.Open(ctx, tampered["json-7-tampered"])
	if !errors.Is(err, ErrAuthentication) || plaintext != nil {
		t.Fatalf("the tampered envelope: %x, %v", plaintext, err)
	}
	t.Logf("go reader: tampered envelope refused: %v", err)

	refused := config
	refused.TokenFile, refused.Token = "", "not-a-token"
	reader, err = New(refused)
	if err != nil {
		t.Fatal(err)
	}
	plaintext, err = reader.Open(ctx, tampered["json-7"])
	if !errors.Is(err, ErrVault) || plaintext != nil || strings.Contains(err.Error(), "not-a-token") {
		t.Fatalf("a token Vault refuses: %x, %v", plaintext, err)
	}
	t.Logf("go reader: a refused token: %v", err)
}

// TestNamespace decrypts a value encrypted in Vault namespace team-a: with the namespace
// set, and not without. Skipped unless .ci/e2e/readers.sh set it up.
func TestNamespace(t *testing.T) {
	path := os.Getenv("KAFKA_TRANSIT_E2E_NAMESPACE_VALUE")
	if path == "" {
		t.Skip("KAFKA_TRANSIT_E2E_NAMESPACE_VALUE not set: run .ci/e2e/readers.sh")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(string(raw))
	config := Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN"),
		CACert: os.Getenv("VAULT_CACERT"), Key: "customers"}
	outside, err := New(config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outside.DecryptValue(context.Background(), text); !errors.Is(err, ErrVault) {
		t.Fatalf("without the namespace: %v", err)
	}
	config.Namespace = "team-a"
	inside, err := New(config)
	if err != nil {
		t.Fatal(err)
	}
	plaintext, err := inside.DecryptValue(context.Background(), text)
	if err != nil || string(plaintext) != "hello from namespace team-a" {
		t.Fatalf("with the namespace: %q, %v", plaintext, err)
	}
	t.Logf("go reader: a value encrypted in namespace team-a decrypts with the namespace set, not without")
}
