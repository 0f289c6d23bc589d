package schemafields

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// A line of the records files: a record key (base64, or null) and either its value
// (base64, or null for a tombstone) or, in OUT, why it could not be opened.
type schemaRecordLine struct {
	Key   *[]byte `json:"key"`
	Value *[]byte `json:"value,omitempty"`
	Error string  `json:"error,omitempty"`
}

// TestSchemaRecordsFile opens every record of KAFKA_TRANSIT_SCHEMA_IN (JSON lines
// {"key": base64|null, "value": base64|null}, as encrypt-schema-fields wrote them) against
// a live registry (KAFKA_TRANSIT_SCHEMA_REGISTRY) and Vault (VAULT_ADDR, VAULT_TOKEN,
// VAULT_CACERT) with transit key KAFKA_TRANSIT_SCHEMA_KEY, and writes each to
// KAFKA_TRANSIT_SCHEMA_OUT: {"key": ..., "value": base64} with the value opened (Confluent
// wire format, same schema id), or {"key": ..., "error": "..."}. Optional:
// KAFKA_TRANSIT_SCHEMA_DETERMINISTIC=1, KAFKA_TRANSIT_SCHEMA_TAGS and
// KAFKA_TRANSIT_SCHEMA_FIELDS (comma-separated), KAFKA_TRANSIT_SCHEMA_REGISTRY_TOKEN or
// KAFKA_TRANSIT_SCHEMA_REGISTRY_USERNAME and _PASSWORD. Skipped unless the four are set.
func TestSchemaRecordsFile(t *testing.T) {
	in, out := os.Getenv("KAFKA_TRANSIT_SCHEMA_IN"), os.Getenv("KAFKA_TRANSIT_SCHEMA_OUT")
	registryURL, key := os.Getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY"), os.Getenv("KAFKA_TRANSIT_SCHEMA_KEY")
	if in == "" || out == "" || registryURL == "" || key == "" {
		t.Skip("KAFKA_TRANSIT_SCHEMA_IN, _OUT, _REGISTRY and _KEY not all set (and VAULT_ADDR, VAULT_TOKEN): " +
			"the records file test reads a sink of encrypt-schema-fields")
	}
	options := Options{Key: key, Deterministic: os.Getenv("KAFKA_TRANSIT_SCHEMA_DETERMINISTIC") == "1"}
	if tags, ok := os.LookupEnv("KAFKA_TRANSIT_SCHEMA_TAGS"); ok {
		options.Tags = []string{}
		for _, tag := range strings.Split(tags, ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				options.Tags = append(options.Tags, tag)
			}
		}
	}
	for _, field := range strings.Split(os.Getenv("KAFKA_TRANSIT_SCHEMA_FIELDS"), ",") {
		if field = strings.TrimSpace(field); field != "" {
			options.Fields = append(options.Fields, field)
		}
	}
	reader, err := New(Config{
		Vault: kafkatransit.Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN"),
			CACert: os.Getenv("VAULT_CACERT")},
		Registry: RegistryConfig{URL: registryURL, Token: os.Getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY_TOKEN"),
			Username: os.Getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY_USERNAME"),
			Password: os.Getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY_PASSWORD")},
		Options: options,
	})
	if err != nil {
		t.Fatal(err)
	}
	input, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer input.Close()
	var lines []schemaRecordLine
	scanner := bufio.NewScanner(input)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for number := 1; scanner.Scan(); number++ {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var line schemaRecordLine
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("%s line %d: %v", in, number, err)
		}
		lines = append(lines, line)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatalf("%s holds no record", in)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	output, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer output.Close()
	writer := bufio.NewWriter(output)
	encoder := json.NewEncoder(writer)
	opened, failed, tombstones, fields := 0, 0, 0, 0
	// A poll's worth at a time: one Vault request per batch (249 fields a request at most).
	const batch = 500
	for start := 0; start < len(lines); start += batch {
		chunk := lines[start:min(len(lines), start+batch)]
		records := make([]Record, len(chunk))
		for i, line := range chunk {
			if line.Key != nil {
				records[i].Key = *line.Key
			}
			if line.Value != nil {
				records[i].Value = *line.Value
				if records[i].Value == nil {
					records[i].Value = []byte{}
				}
			}
		}
		for i, result := range reader.OpenAll(ctx, records) {
			written := schemaRecordLine{Key: chunk[i].Key}
			switch {
			case result.Err != nil:
				written.Error = result.Err.Error()
				failed++
			case result.Opened == nil:
				tombstones++
				if err := encoder.Encode(map[string]any{"key": chunk[i].Key, "value": nil}); err != nil {
					t.Fatal(err)
				}
				continue
			default:
				written.Value = &result.Opened.Wire
				fields += len(result.Opened.Fields)
				opened++
			}
			if err := encoder.Encode(written); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := writer.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("go schemafields reader: %d records opened (%d fields), %d refused, %d tombstones, %d Vault request(s); "+
		"written to %s", opened, fields, failed, tombstones, reader.VaultCalls(), out)
}
