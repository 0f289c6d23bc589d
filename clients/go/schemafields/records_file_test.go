package schemafields

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// A line of the records files: a record key (base64, or null) and either its value
// (base64, or null for a tombstone) or, in OUT, why it could not be opened. For format 3
// (records with the kafka-transit.protection header) a line of IN also gives the topic
// the record was read from and its headers, [[name, base64 or null], ...] in order as
// demos/python/schema_fields.py takes them (or {"name": "text"}, as Java's
// SchemaRecordsFileIT does); OUT then holds the key restored and, when IN gave headers,
// the headers without the protection header ([[name, base64 or null], ...]).
type schemaRecordLine struct {
	Topic   string          `json:"topic,omitempty"`
	Key     *[]byte         `json:"key"`
	Value   *[]byte         `json:"value,omitempty"`
	Headers json.RawMessage `json:"headers,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// headersOf decodes a line's headers: each a name and a base64 value, or null for a
// header without value; or an object of names and text values.
func headersOf(line schemaRecordLine) ([]kafkatransit.Header, error) {
	if len(line.Headers) == 0 || string(line.Headers) == "null" {
		return nil, nil
	}
	var pairs [][]*string
	if err := json.Unmarshal(line.Headers, &pairs); err != nil {
		// An object holds one header of each name and no order: names sorted, so that
		// OUT is the same from run to run.
		var texts map[string]*string
		if json.Unmarshal(line.Headers, &texts) != nil {
			return nil, err
		}
		names := make([]string, 0, len(texts))
		for name := range texts {
			names = append(names, name)
		}
		sort.Strings(names)
		var headers []kafkatransit.Header
		for _, name := range names {
			header := kafkatransit.Header{Key: name}
			if text := texts[name]; text != nil {
				header.Value = []byte(*text)
			}
			headers = append(headers, header)
		}
		return headers, nil
	}
	headers := make([]kafkatransit.Header, 0, len(pairs))
	for _, pair := range pairs {
		if len(pair) != 2 || pair[0] == nil {
			return nil, errors.New("a header is not [name, base64 or null]")
		}
		header := kafkatransit.Header{Key: *pair[0]}
		if pair[1] != nil {
			value, err := base64.StdEncoding.DecodeString(*pair[1])
			if err != nil {
				return nil, err
			}
			header.Value = append([]byte{}, value...)
		}
		headers = append(headers, header)
	}
	return headers, nil
}

func headersLine(headers []kafkatransit.Header) json.RawMessage {
	out := make([][]*string, 0, len(headers))
	for _, h := range headers {
		name := h.Key
		var value *string
		if h.Value != nil {
			encoded := base64.StdEncoding.EncodeToString(h.Value)
			value = &encoded
		}
		out = append(out, []*string{&name, value})
	}
	raw, _ := json.Marshal(out)
	return raw
}

func splitList(text string) []string {
	var out []string
	for _, item := range strings.Split(text, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// TestSchemaRecordsFile opens every record of KAFKA_TRANSIT_SCHEMA_IN (JSON lines
// {"key": base64|null, "value": base64|null}, as encrypt-schema-fields wrote them; for
// format 3 also "topic" and "headers") against a live registry
// (KAFKA_TRANSIT_SCHEMA_REGISTRY) and Vault (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT) with
// transit key KAFKA_TRANSIT_SCHEMA_KEY, and writes each to KAFKA_TRANSIT_SCHEMA_OUT:
// {"key": ..., "value": base64} with the value opened (Confluent wire format, same schema
// id) and the key restored, or {"key": ..., "error": "..."}. Optional:
// KAFKA_TRANSIT_SCHEMA_DETERMINISTIC=1, KAFKA_TRANSIT_SCHEMA_TAGS and
// KAFKA_TRANSIT_SCHEMA_FIELDS (comma-separated), KAFKA_TRANSIT_SCHEMA_REGISTRY_TOKEN or
// KAFKA_TRANSIT_SCHEMA_REGISTRY_USERNAME and _PASSWORD; format 3:
// KAFKA_TRANSIT_SCHEMA_STREAM, KAFKA_TRANSIT_SCHEMA_REQUIRE_BINDING (comma-separated),
// KAFKA_TRANSIT_SCHEMA_RECORD_KEYS_KEY, KAFKA_TRANSIT_SCHEMA_KEEP_HMAC_KEYS=1. Skipped
// unless the four are set.
func TestSchemaRecordsFile(t *testing.T) {
	in, out := os.Getenv("KAFKA_TRANSIT_SCHEMA_IN"), os.Getenv("KAFKA_TRANSIT_SCHEMA_OUT")
	registryURL, key := os.Getenv("KAFKA_TRANSIT_SCHEMA_REGISTRY"), os.Getenv("KAFKA_TRANSIT_SCHEMA_KEY")
	if in == "" || out == "" || registryURL == "" || key == "" {
		t.Skip("KAFKA_TRANSIT_SCHEMA_IN, _OUT, _REGISTRY and _KEY not all set (and VAULT_ADDR, VAULT_TOKEN): " +
			"the records file test reads a sink of encrypt-schema-fields")
	}
	options := Options{Key: key, Deterministic: os.Getenv("KAFKA_TRANSIT_SCHEMA_DETERMINISTIC") == "1",
		Fields: splitList(os.Getenv("KAFKA_TRANSIT_SCHEMA_FIELDS")), Stream: os.Getenv("KAFKA_TRANSIT_SCHEMA_STREAM"),
		RequireBinding: splitList(os.Getenv("KAFKA_TRANSIT_SCHEMA_REQUIRE_BINDING")),
		RecordKeysKey:  os.Getenv("KAFKA_TRANSIT_SCHEMA_RECORD_KEYS_KEY"),
		KeepHMACKeys:   os.Getenv("KAFKA_TRANSIT_SCHEMA_KEEP_HMAC_KEYS") == "1"}
	if tags, ok := os.LookupEnv("KAFKA_TRANSIT_SCHEMA_TAGS"); ok {
		options.Tags = append([]string{}, splitList(tags)...)
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
			records[i].Topic = line.Topic
			if line.Key != nil {
				records[i].Key = *line.Key
				if records[i].Key == nil {
					records[i].Key = []byte{}
				}
			}
			if line.Value != nil {
				records[i].Value = *line.Value
				if records[i].Value == nil {
					records[i].Value = []byte{}
				}
			}
			if records[i].Headers, err = headersOf(line); err != nil {
				t.Fatalf("%s record %d: %v", in, start+i+1, err)
			}
		}
		for i, result := range reader.OpenAll(ctx, records) {
			written := schemaRecordLine{Key: chunk[i].Key}
			switch {
			case result.Err != nil:
				written.Error = result.Err.Error()
				failed++
			case result.Opened == nil || result.Opened.Wire == nil:
				tombstones++
				if result.Opened != nil {
					written.Key = &result.Opened.Key
				}
				if err := encoder.Encode(map[string]any{"key": written.Key, "value": nil}); err != nil {
					t.Fatal(err)
				}
				continue
			default:
				written.Key, written.Value = &result.Opened.Key, &result.Opened.Wire
				if chunk[i].Headers != nil {
					written.Headers = headersLine(result.Opened.Headers)
				}
				fields += len(result.Opened.Fields)
				opened++
			}
			if written.Key != nil && *written.Key == nil {
				written.Key = nil // a null key stays null
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
