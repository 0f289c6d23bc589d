package kafkatransit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// A line of a records file (.ci/e2e/protect-all.sh writes it; demos/python/records_check.py
// and Java's RecordsFileIT read the same file): a record as it is on the sink, and either
// what a reader must give back (Expect) or the kind of failure it must refuse it with
// (Refuse).
type recordsFileLine struct {
	matrixRecord
	Expect *matrixRecord `json:"expect"`
	Refuse string        `json:"refuse"`
}

var refusals = map[string]error{"authentication": ErrAuthentication, "unbound": ErrUnbound, "flags": ErrFlags,
	"forgotten": ErrSubjectForgotten}

// sameHeaders compares headers by name and value, a valueless header (nil) apart from an
// empty one.
func sameHeaders(a, b []Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || (a[i].Value == nil) != (b[i].Value == nil) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// TestRecordsFile reads every record of KAFKA_TRANSIT_E2E_RECORDS with ReadRecord (binding to
// stream and key required; values and envelopes under transit key customers, record keys
// under customer-ids) against a live Vault: each must come back as the line expects, or be
// refused for the reason it names. Skipped unless the variable is set.
//
// KAFKA_TRANSIT_SUBJECT_KEYS=PREFIX (.ci/e2e/forget.sh) reads records sealed per data
// subject instead: envelopes under the keys whose names start with PREFIX, not under
// customers. A record whose subject was forgotten is refused with ErrSubjectForgotten
// (refuse "forgotten" on its line), and each such record is written to standard output
// (go test -v) as a line "error: line N: subject forgotten: ...", as records_check.py
// writes it, for the script to count.
func TestRecordsFile(t *testing.T) {
	path := os.Getenv("KAFKA_TRANSIT_E2E_RECORDS")
	if path == "" {
		t.Skip("KAFKA_TRANSIT_E2E_RECORDS not set: run .ci/e2e/protect-all.sh")
	}
	cfg := Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN"),
		CACert: os.Getenv("VAULT_CACERT"), Key: "customers",
		Records: RecordOptions{RecordKeysKey: "customer-ids", RequireBinding: []string{"stream", "key"}}}
	subjectKeys := os.Getenv("KAFKA_TRANSIT_SUBJECT_KEYS")
	if subjectKeys != "" {
		cfg.Key, cfg.SubjectKeys = "", subjectKeys
	}
	reader, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	read, refused, forgotten, problems := 0, 0, 0, 0
	for number := 0; scanner.Scan(); number++ {
		var line recordsFileLine
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v", number, err)
		}
		got, err := reader.ReadRecord(ctx, line.record(t))
		if errors.Is(err, ErrSubjectForgotten) {
			// Not t.Log, which indents and prefixes: the same line as records_check.py's.
			fmt.Printf("error: line %d: %v\n", number, err)
			forgotten++
		}
		switch {
		case line.Refuse != "":
			want, known := refusals[line.Refuse]
			if !known {
				t.Fatalf("line %d: unknown refusal %q", number, line.Refuse)
			}
			if !errors.Is(err, want) {
				t.Errorf("line %d: must be refused (%s), got %v", number, line.Refuse, err)
				problems++
				continue
			}
			refused++
		case err != nil:
			t.Errorf("line %d: %v", number, err)
			problems++
		default:
			want := line.Expect.record(t)
			if !sameBytes(got.Key, want.Key) || !sameBytes(got.Value, want.Value) || !sameHeaders(got.Headers, want.Headers) {
				t.Errorf("line %d read back differently (key %v, value %v, headers %v)", number,
					sameBytes(got.Key, want.Key), sameBytes(got.Value, want.Value), sameHeaders(got.Headers, want.Headers))
				problems++
				continue
			}
			read++
		}
		if problems > 10 {
			t.Fatal("too many problems")
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if read == 0 {
		t.Fatal("no record read")
	}
	subjects := ""
	if subjectKeys != "" {
		subjects = fmt.Sprintf(" (%d of them of forgotten data subjects)", forgotten)
	}
	t.Logf("go reader: %d records read back byte-identical (key, value, headers), %d refused as expected%s, "+
		"%d Vault calls", read, refused, subjects, reader.VaultCalls())
}
