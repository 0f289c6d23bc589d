package schemafields

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	kafkatransit "github.com/kafka-transit/kafka-transit/clients/go"
)

// The published vectors of schema'd records (docs/schema-fields-test-vectors.json,
// written by docs/gen-schema-fields-test-vectors.py with its own encoders): every reader
// must find the same fields in the same records, and refuse the same records.

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == nil {
		*h = nil // a null record key
		return nil
	}
	decoded, err := hex.DecodeString(*s)
	*h = append(hexBytes{}, decoded...)
	return err
}

type schemaVectorRecord struct {
	Name       string     `json:"name"`
	SchemaType SchemaType `json:"schema_type"`
	Schema     string     `json:"schema"`
	References []struct {
		Name   string `json:"name"`
		Schema string `json:"schema"`
	} `json:"references"`
	SchemaID uint32   `json:"schema_id"`
	Tags     []string `json:"tags"`
	Fields   []string `json:"fields"`
	Value    hexBytes `json:"value_hex"`
}

type schemaVectorFile struct {
	Vectors []struct {
		schemaVectorRecord
		Located []struct {
			Path    string   `json:"path"`
			Content hexBytes `json:"content_hex"`
		} `json:"located"`
		Protected hexBytes `json:"protected_hex"`
		Bindings  []struct {
			Flags     byte     `json:"flags"`
			Stream    string   `json:"stream"`
			RecordKey hexBytes `json:"record_key_hex"`
			Path      string   `json:"path"`
			Binding   hexBytes `json:"binding_hex"`
		} `json:"bindings"`
	} `json:"vectors"`
	Refused []struct {
		schemaVectorRecord
		Side   string `json:"side"`
		Expect string `json:"expect"`
	} `json:"refused"`
}

// Fails, never skips, without the file: the vectors are how the readers agree.
func loadSchemaVectors(t *testing.T) schemaVectorFile {
	t.Helper()
	raw, err := os.ReadFile("../../../docs/schema-fields-test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file schemaVectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 || len(file.Refused) == 0 {
		t.Fatal("the vector file holds no vectors or no refused cases")
	}
	return file
}

func (v schemaVectorRecord) registered() *RegisteredSchema {
	s := &RegisteredSchema{Type: v.SchemaType, Text: v.Schema}
	for _, r := range v.References {
		s.References = append(s.References, Reference{Name: r.Name, Text: r.Schema})
	}
	return s
}

func (v schemaVectorRecord) options() Options {
	// An empty tags list selects by fields alone (nil would be the default, PII).
	return Options{Key: "customers", Tags: append([]string{}, v.Tags...), Fields: v.Fields,
		RecordKeysKey: "customer-ids"}
}

// standInVault opens the vectors' stand-in ciphertexts, vault:v1:<base64 of the
// plaintext>. Format 2 (bindings nil): any context or associated data is refused. Format
// 3: a field's associated data must be the binding of a located field holding that
// ciphertext ("message authentication failed" otherwise, as Vault), and a record key
// is decrypted with the stream as its context.
type standInVault struct {
	mu       sync.Mutex
	bindings map[string][][]byte // ciphertext -> the bindings it may come with
	stream   string
	requests []kafkatransit.DecryptItem
}

func (s *standInVault) DecryptItems(_ context.Context, keyName string, items []kafkatransit.DecryptItem) ([]kafkatransit.Decryption, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, items...)
	out := make([]kafkatransit.Decryption, len(items))
	for i, item := range items {
		plaintext, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(item.Ciphertext, "vault:v1:"))
		switch {
		case !strings.HasPrefix(item.Ciphertext, "vault:v1:") || err != nil:
			out[i].Err = "invalid ciphertext"
		case keyName == "customer-ids":
			if s.bindings == nil || string(item.Context) != s.stream || item.AssociatedData != nil {
				out[i].Err = "cipher: message authentication failed"
			} else {
				out[i].Plaintext = plaintext
			}
		case keyName != "customers":
			out[i].Err = "unknown key " + keyName
		case s.bindings == nil && (item.Context != nil || item.AssociatedData != nil):
			out[i].Err = "a format 2 record was read with a context or associated data"
		case s.bindings != nil && !containsBytes(s.bindings[item.Ciphertext], item.AssociatedData):
			out[i].Err = "cipher: message authentication failed"
		default:
			out[i].Plaintext = plaintext
		}
	}
	return out, nil
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, item := range list {
		if bytes.Equal(item, b) {
			return true
		}
	}
	return false
}

// libraryDecode decodes a Confluent-framed plaintext record with the format's own
// library, independently of the reader's walkers.
func libraryDecode(t *testing.T, v schemaVectorRecord, framed []byte) any {
	t.Helper()
	body := framed[5:]
	switch v.SchemaType {
	case Avro:
		return avroDecode(t, v.Schema, body)
	case JSON:
		return decodeJSON(t, body)
	case Protobuf:
		indexes, message, err := messageIndexes(body)
		if err != nil {
			t.Fatal(err)
		}
		md := compileVectorProto(t, v).Messages().Get(indexes[0])
		for _, i := range indexes[1:] {
			md = md.Messages().Get(i)
		}
		m := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(message, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Fatalf("schema type %q", v.SchemaType)
	return nil
}

func compileVectorProto(t *testing.T, v schemaVectorRecord) protoreflect.FileDescriptor {
	t.Helper()
	sources := map[string]string{"vector.proto": v.Schema}
	for _, r := range v.References {
		sources[r.Name] = r.Schema
	}
	compiler := protocompile.Compiler{Resolver: protocompile.WithStandardImports(protocompile.ResolverFunc(
		func(path string) (protocompile.SearchResult, error) {
			if text, ok := sources[path]; ok {
				return protocompile.SearchResult{Source: strings.NewReader(text)}, nil
			}
			if text, ok := builtinProtos[path]; ok {
				return protocompile.SearchResult{Source: strings.NewReader(text)}, nil
			}
			return protocompile.SearchResult{}, fmt.Errorf("no %s", path)
		}))}
	files, err := compiler.Compile(context.Background(), "vector.proto")
	if err != nil {
		t.Fatal(err)
	}
	return files[0]
}

// sameRecord compares an opened record with the library's decoding of the plaintext.
// Protobuf: the opened message (of the reader's descriptors) is encoded and decoded again
// as the library's message (proto.Equal needs one descriptor for both).
func sameRecord(t *testing.T, opened, want any) bool {
	t.Helper()
	if w, ok := want.(*dynamicpb.Message); ok {
		o, ok := opened.(proto.Message)
		if !ok {
			return false
		}
		raw, err := proto.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		again := dynamicpb.NewMessage(w.Descriptor())
		if err := proto.Unmarshal(raw, again); err != nil {
			t.Fatal(err)
		}
		return proto.Equal(again, w)
	}
	return reflect.DeepEqual(opened, want)
}

// distinctSorted is paths sorted, each once: the reader lists map entries in key order
// and a non-repeated Protobuf field that occurs twice on the wire once (the library keeps
// the last), where the vectors list both in the order of the encoded body.
func distinctSorted(paths []string) []string {
	out := append([]string(nil), paths...)
	sort.Strings(out)
	return slices.Compact(out)
}

func TestSchemaFieldsVectors(t *testing.T) {
	file := loadSchemaVectors(t)
	ctx := context.Background()
	for _, v := range file.Vectors {
		want := libraryDecode(t, v.schemaVectorRecord, v.Value)
		registry := registryOf(map[uint32]*RegisteredSchema{v.SchemaID: v.registered()})

		// Format 2: the stand-in Vault refuses any context or associated data.
		vault := &standInVault{}
		reader, err := NewReader(vault, registry, v.options())
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		opened, err := reader.ReadRecord(ctx, Record{Value: v.Protected})
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if !sameRecord(t, opened.Value, want) {
			t.Errorf("%s: opened %v\nwant %v", v.Name, opened.Value, want)
		}
		if !bytes.Equal(opened.Wire[:5], v.Value[:5]) || !sameRecord(t, libraryDecode(t, v.schemaVectorRecord, opened.Wire), want) {
			t.Errorf("%s: the opened wire bytes do not decode to the plaintext record", v.Name)
		}
		var paths []string
		for _, l := range v.Located {
			paths = append(paths, l.Path)
		}
		if !reflect.DeepEqual(distinctSorted(opened.Fields), distinctSorted(paths)) {
			t.Errorf("%s: located %q, want %q", v.Name, opened.Fields, paths)
		}

		// The binding of each located field under bind = ["stream", "key"].
		if len(v.Bindings) != len(v.Located) {
			t.Fatalf("%s: %d bindings for %d located fields", v.Name, len(v.Bindings), len(v.Located))
		}
		format3 := &standInVault{bindings: map[string][][]byte{}}
		for i, b := range v.Bindings {
			flags, err := kafkatransit.ParseFlags(b.Flags)
			if err != nil {
				t.Fatalf("%s: %v", v.Name, err)
			}
			path := b.Path
			if got := kafkatransit.Binding(flags, b.Stream, b.RecordKey, &path); !bytes.Equal(got, b.Binding) {
				t.Errorf("%s, %s: binding %x, want %x", v.Name, b.Path, got, []byte(b.Binding))
			}
			if b.Path != v.Located[i].Path || b.Flags != v.Bindings[0].Flags || b.Stream != v.Bindings[0].Stream ||
				!bytes.Equal(b.RecordKey, v.Bindings[0].RecordKey) {
				t.Fatalf("%s: binding %d is not of located field %d of the same record", v.Name, i, i)
			}
			ciphertext := "vault:v1:" + base64.StdEncoding.EncodeToString(v.Located[i].Content)
			format3.bindings[ciphertext] = append(format3.bindings[ciphertext], b.Binding)
		}
		if len(v.Bindings) == 0 {
			continue
		}

		// The same record read as format 3, bound as the bindings say: each field must be
		// asked with its binding as associated data; the encrypted record key restored.
		b := v.Bindings[0]
		flags := kafkatransit.Flags(b.Flags)
		format3.stream = b.Stream
		bound, err := NewReader(format3, registry, v.options())
		if err != nil {
			t.Fatal(err)
		}
		record := Record{Topic: b.Stream, Key: b.RecordKey, Value: v.Protected, Headers: []kafkatransit.Header{
			{Key: kafkatransit.ProtectionHeader, Value: flags.HeaderValue()}}}
		opened, err = bound.ReadRecord(ctx, record)
		if err != nil {
			t.Errorf("%s, format 3: %v", v.Name, err)
			continue
		}
		wantKey := []byte(b.RecordKey)
		if flags.Has(kafkatransit.FlagKeysEncrypted) {
			wantKey, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(string(b.RecordKey), "vault:v1:"))
		}
		if !sameRecord(t, opened.Value, want) || !bytes.Equal(opened.Key, wantKey) {
			t.Errorf("%s, format 3: opened another record or key (%q)", v.Name, opened.Key)
		}
		for name, moved := range map[string]Record{
			"another stream": {Topic: b.Stream + ".copy", Key: record.Key, Value: record.Value, Headers: record.Headers},
			"another key":    {Topic: b.Stream, Key: append([]byte("x"), b.RecordKey...), Value: record.Value, Headers: record.Headers},
		} {
			if opened, err := bound.ReadRecord(ctx, moved); !errors.Is(err, ErrAuthentication) || opened != nil {
				t.Errorf("%s, format 3, %s: %v", v.Name, name, err)
			}
		}
	}
}

var vectorRefusals = map[string]error{"wire": ErrFormat, "decode": ErrDecode, "schema": ErrSchema,
	"not a ciphertext": ErrNotCiphertext}

// Every refused case is refused with its kind, never returned, and no field goes to Vault.
func TestSchemaFieldsVectorsRefused(t *testing.T) {
	file := loadSchemaVectors(t)
	for _, c := range file.Refused {
		want, ok := vectorRefusals[c.Expect]
		if !ok || (c.Side != "open" && c.Side != "protect") {
			t.Fatalf("%s: unknown expect %q or side %q", c.Name, c.Expect, c.Side)
		}
		vault := &standInVault{}
		reader, err := NewReader(vault, registryOf(map[uint32]*RegisteredSchema{c.SchemaID: c.registered()}), c.options())
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		opened, err := reader.ReadRecord(context.Background(), Record{Value: c.Value})
		if !errors.Is(err, want) || opened != nil {
			t.Errorf("%s: got %v, want %v", c.Name, err, want)
		}
		if len(vault.requests) != 0 {
			t.Errorf("%s: %d ciphertexts sent to Vault", c.Name, len(vault.requests))
		}
	}
}
