package kafkatransit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The format 3 interoperability matrix, Go's row and column (.ci/e2e/sdk-matrix.sh sets
// KAFKA_TRANSIT_MATRIX_DIR and KAFKA_TRANSIT_MATRIX_MODE, write or read, and VAULT_ADDR,
// VAULT_TOKEN): Go writes the source records with every option on, and reads every
// writer's records back to the source.

type matrixRecord struct {
	Topic   string      `json:"topic"`
	Key     *string     `json:"key"`
	Value   *string     `json:"value"`
	Headers [][]*string `json:"headers"`
}

func unhex(t *testing.T, s *string) []byte {
	if s == nil {
		return nil
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func enhex(b []byte) *string {
	if b == nil {
		return nil
	}
	s := hex.EncodeToString(b)
	return &s
}

func (m matrixRecord) record(t *testing.T) Record {
	r := Record{Topic: m.Topic, Key: unhex(t, m.Key), Value: unhex(t, m.Value)}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, Header{Key: *h[0], Value: unhex(t, h[1])})
	}
	return r
}

func fromRecord(r Record) matrixRecord {
	m := matrixRecord{Topic: r.Topic, Key: enhex(r.Key), Value: enhex(r.Value), Headers: [][]*string{}}
	for _, h := range r.Headers {
		name := h.Key
		m.Headers = append(m.Headers, []*string{&name, enhex(h.Value)})
	}
	return m
}

var matrixOptions = WriterOptions{Key: "customers", RecordKeys: "encrypt", RecordKeysKey: "customer-ids",
	Headers: "seal", KeepHeaders: []string{"traceparent"}, Bind: []string{"stream", "key"}, Compression: "zstd",
	PadTo: 256}

func TestMatrix(t *testing.T) {
	dir := os.Getenv("KAFKA_TRANSIT_MATRIX_DIR")
	if dir == "" {
		t.Skip("run by .ci/e2e/sdk-matrix.sh (KAFKA_TRANSIT_MATRIX_DIR, KAFKA_TRANSIT_MATRIX_MODE, VAULT_ADDR, VAULT_TOKEN)")
	}
	var sources []matrixRecord
	raw, err := os.ReadFile(filepath.Join(dir, "records.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sources); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN"), CACert: os.Getenv("VAULT_CACERT"),
		Key: "customers", Records: RecordOptions{RecordKeysKey: "customer-ids", RequireBinding: []string{"stream", "key"}}}
	vault, err := NewVault(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	switch mode := os.Getenv("KAFKA_TRANSIT_MATRIX_MODE"); mode {
	case "write":
		writer, err := NewWriter(vault, matrixOptions)
		if err != nil {
			t.Fatal(err)
		}
		defer writer.Close()
		var out bytes.Buffer
		for _, source := range sources {
			sealed, err := writer.Seal(ctx, source.record(t))
			if err != nil {
				t.Fatal(err)
			}
			line, _ := json.Marshal(fromRecord(sealed))
			out.Write(append(line, '\n'))
		}
		if err := os.WriteFile(filepath.Join(dir, "go.jsonl"), out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("go wrote %d records (%d data key)", len(sources), writer.DataKeysMinted())
	case "read":
		reader, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		if len(files) == 0 {
			t.Fatal("no writer's records to read")
		}
		for _, file := range files {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(lines) != len(sources) {
				t.Fatalf("%s: %d records, expected %d", file, len(lines), len(sources))
			}
			var first Record
			for i, line := range lines {
				var written matrixRecord
				if err := json.Unmarshal([]byte(line), &written); err != nil {
					t.Fatal(err)
				}
				sink := written.record(t)
				if i == 0 {
					first = sink
				}
				got, err := reader.ReadRecord(ctx, sink)
				if err != nil {
					t.Fatalf("%s record %d: %v", file, i, err)
				}
				// kafka-transit's envelope-seal stamps its records in clear (kafka-transit.policy,
				// kafka-transit.key): no source header, and a reader passes them on as they are.
				var unstamped []Header
				for _, h := range got.Headers {
					if h.Key != "kafka-transit.policy" && h.Key != "kafka-transit.key" {
						unstamped = append(unstamped, h)
					}
				}
				got.Headers = unstamped
				want := sources[i].record(t)
				var kept, sealed []Header
				for _, h := range want.Headers {
					if h.Key == "traceparent" {
						kept = append(kept, h)
					} else if want.Value != nil {
						sealed = append(sealed, h)
					}
				}
				want.Headers = append(kept, sealed...)
				if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) ||
					!bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) ||
					!reflect.DeepEqual(got.Headers, want.Headers) {
					t.Fatalf("%s record %d read back differently: %q %v", file, i, got.Key, got.Headers)
				}
			}
			first.Topic = "payments.eu"
			if _, err := reader.ReadRecord(ctx, first); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("%s: a record moved to another topic: %v", file, err)
			}
			t.Logf("go read %d records of %s; a moved one was refused", len(lines), filepath.Base(file))
		}
	default:
		t.Fatalf("KAFKA_TRANSIT_MATRIX_MODE is write or read, not %q", mode)
	}
}
