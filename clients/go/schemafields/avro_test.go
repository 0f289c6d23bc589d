package schemafields

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

const avroCustomer = `{"type": "record", "name": "Customer", "namespace": "kafkatransit.test", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string", "confluent:tags": ["PII"]},
  {"name": "email", "type": ["null", "string"], "default": null, "confluent:tags": ["PII"]},
  {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
    {"name": "street", "type": "string", "confluent:tags": ["PII"]},
    {"name": "city", "type": "string"}]}},
  {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone", "fields": [
    {"name": "kind", "type": "string"},
    {"name": "number", "type": "string", "confluent:tags": ["PII", "contact"]}]}}},
  {"name": "photo", "type": "bytes", "confluent:tags": ["PII"]},
  {"name": "attributes", "type": {"type": "map", "values": "string"}},
  {"name": "previous", "type": ["null", "Address"], "default": null},
  {"name": "loyalty", "type": "int"},
  {"name": "notes", "type": "string"}]}`

type protectText func(path, plaintext string) string
type protectBytes func(path string, plaintext []byte) []byte

func asIs(_ string, s string) string          { return s }
func bytesAsIs(_ string, b []byte) []byte     { return b }
func union(name string, v any) map[string]any { return map[string]any{name: v} }

// avroRecord0 has every kind of place filled; avroRecord1 the optional ones empty.
func avroRecord0(t protectText, b protectBytes) map[string]any {
	return map[string]any{
		"id":      int64(7000000001),
		"name":    t("/name", "Ada Lovelace"),
		"email":   union("string", t("/email", "ada@example.com")),
		"address": map[string]any{"street": t("/address/street", "Bahnhofstrasse 1"), "city": "Zürich"},
		"phones": []any{
			map[string]any{"kind": "mobile", "number": t("/phones/0/number", "+41 44 000 0001")},
			map[string]any{"kind": "home", "number": t("/phones/1/number", "+41 44 000 0002")},
		},
		"photo":      b("/photo", []byte{0, 1, 2, 0xff}),
		"attributes": map[string]any{"tier": t("/attributes/tier", "gold"), "a/b~": t("/attributes/a~1b~0", "odd key")},
		"previous": union("kafkatransit.test.Address",
			map[string]any{"street": t("/previous/street", "Rue de Rivoli 2"), "city": "Paris"}),
		"loyalty": 42,
		"notes":   "vault:v1:not protected, untagged",
	}
}

func avroRecord1(t protectText, b protectBytes) map[string]any {
	return map[string]any{
		"id": int64(7000000002), "name": t("/name", "Grace Hopper"), "email": nil,
		"address": map[string]any{"street": t("/address/street", ""), "city": "Arlington"},
		"phones":  []any{}, "photo": b("/photo", []byte{}), "attributes": map[string]any{}, "previous": nil,
		"loyalty": -100, "notes": "",
	}
}

func avroEncode(t *testing.T, schema string, record any) []byte {
	t.Helper()
	body, err := avro.Marshal(avro.MustParse(schema), record)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func avroDecode(t *testing.T, schema string, body []byte) any {
	t.Helper()
	r := avro.NewReader(nil, 0).Reset(body)
	v := r.ReadNext(avro.MustParse(schema))
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	return v
}

var avroRegistry = map[uint32]*RegisteredSchema{7: {Type: Avro, Text: avroCustomer}}

func TestAvroFieldsOpen(t *testing.T) {
	for _, deterministic := range []bool{false, true} {
		vault := newFakeTransit()
		p := protector{vault: vault, key: "customers", deterministic: deterministic}
		reader := newReader(t, vault, registryOf(avroRegistry), Options{Deterministic: deterministic,
			Fields: []string{"/attributes/*"}})
		var records []Record
		var wants []any
		for _, build := range []func(protectText, protectBytes) map[string]any{avroRecord0, avroRecord1} {
			records = append(records, Record{Value: frame(7, avroEncode(t, avroCustomer, build(p.text, p.bytes)))})
			wants = append(wants, avroDecode(t, avroCustomer, avroEncode(t, avroCustomer, build(asIs, bytesAsIs))))
		}
		records = append(records, Record{Value: nil}) // a tombstone
		results := reader.OpenAll(context.Background(), records)
		for i, want := range wants {
			got := results[i]
			if got.Err != nil {
				t.Fatalf("deterministic %v, record %d: %v", deterministic, i, got.Err)
			}
			if !reflect.DeepEqual(got.Opened.Value, want) {
				t.Errorf("record %d: opened %#v\nwant %#v", i, got.Opened.Value, want)
			}
			if !bytes.Equal(got.Opened.Wire[:5], records[i].Value[:5]) ||
				!reflect.DeepEqual(avroDecode(t, avroCustomer, got.Opened.Wire[5:]), want) {
				t.Errorf("record %d: the wire bytes do not decode to the opened record", i)
			}
			if got.Opened.SchemaID != 7 || got.Opened.SchemaType != Avro {
				t.Errorf("record %d: %d %s", i, got.Opened.SchemaID, got.Opened.SchemaType)
			}
		}
		if results[2].Opened != nil || results[2].Err != nil {
			t.Errorf("a tombstone: %+v", results[2])
		}
		paths := append([]string(nil), results[0].Opened.Fields...)
		sort.Strings(paths)
		want := []string{"/address/street", "/attributes/a~1b~0", "/attributes/tier", "/email", "/name",
			"/phones/0/number", "/phones/1/number", "/photo", "/previous/street"}
		if !reflect.DeepEqual(paths, want) {
			t.Errorf("located paths %q", paths)
		}
		// One Vault request for the batch, each field with its path as context when
		// deterministic, none otherwise.
		if len(vault.requests) != 1 || reader.VaultCalls() != 1 || vault.keyNames[0] != "customers" {
			t.Fatalf("%d Vault requests", len(vault.requests))
		}
		for _, item := range vault.requests[0] {
			if deterministic != (item.Context != nil) {
				t.Errorf("context %q", item.Context)
			}
		}
		if deterministic {
			var contexts []string
			for _, item := range vault.requests[0][:len(results[0].Opened.Fields)] {
				contexts = append(contexts, string(item.Context))
			}
			sort.Strings(contexts)
			if !reflect.DeepEqual(contexts, want) {
				t.Errorf("contexts %q", contexts)
			}
		}
	}
}

// The same value in the same place gives the same ciphertext when deterministic: the
// batch asks Vault once for it.
func TestAvroDeterministicDuplicatesAreAskedOnce(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers", deterministic: true}
	reader := newReader(t, vault, registryOf(avroRegistry), Options{Deterministic: true})
	value := frame(7, avroEncode(t, avroCustomer, avroRecord1(p.text, p.bytes)))
	again := frame(7, avroEncode(t, avroCustomer, avroRecord1(p.text, p.bytes)))
	if !bytes.Equal(value, again) {
		t.Fatal("deterministic protection gave two ciphertexts")
	}
	for _, result := range reader.OpenAll(context.Background(), []Record{{Value: value}, {Value: again}}) {
		if result.Err != nil {
			t.Fatal(result.Err)
		}
	}
	if n := len(vault.requests[0]); n != 3 {
		t.Errorf("%d items for 3 distinct fields", n)
	}
	// Not deterministic: the reader sends no context, and Vault refuses.
	plain := newReader(t, vault, registryOf(avroRegistry), Options{})
	_, err := plain.Open(context.Background(), value)
	mustErr(t, "no context", err, ErrVault)
}

func TestAvroFailures(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers"}
	registry := registryOf(map[uint32]*RegisteredSchema{
		7: {Type: Avro, Text: avroCustomer},
		8: {Type: Avro, Text: `{"type": "record", "name": "R", "fields": [
			{"name": "customer", "type": {"type": "record", "name": "C", "fields": [
				{"name": "age", "type": "int", "confluent:tags": ["PII"]}]}}]}`},
		9:  {Type: Avro, Text: `{"type": "record", "name": "R", "fields": [{"name": "x", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]}]}`},
		10: {Type: Avro, Text: `{"type": "record"`},
	})
	reader := newReader(t, vault, registry, Options{})
	ctx := context.Background()
	good := avroEncode(t, avroCustomer, avroRecord0(p.text, p.bytes))
	if _, err := reader.Open(ctx, frame(7, good)); err != nil {
		t.Fatal(err)
	}

	clear := frame(7, avroEncode(t, avroCustomer, avroRecord0(asIs, bytesAsIs)))
	opened, err := reader.Open(ctx, clear)
	mustErr(t, "a field in clear", err, ErrNotCiphertext)
	if opened != nil || strings.Contains(err.Error(), "Ada") {
		t.Errorf("a field in clear: %v, %v", opened, err)
	}
	half := avroRecord0(p.text, p.bytes)
	half["photo"] = []byte("vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	_, err = reader.Open(ctx, frame(7, avroEncode(t, avroCustomer, half)))
	mustErr(t, "a forged ciphertext", err, ErrVault)
	other := protector{vault: vault, key: "other-key"}
	_, err = reader.Open(ctx, frame(7, avroEncode(t, avroCustomer, avroRecord0(other.text, other.bytes))))
	mustErr(t, "another key", err, ErrVault)

	mustErr(t, "truncated", second(reader.Open(ctx, frame(7, good[:len(good)-3]))), ErrDecode)
	mustErr(t, "trailing bytes", second(reader.Open(ctx, frame(7, append(good, 0)))), ErrDecode)
	mustErr(t, "magic byte", second(reader.Open(ctx, append([]byte{1}, frame(7, good)[1:]...))), ErrFormat)
	mustErr(t, "short", second(reader.Open(ctx, []byte{0, 0, 0})), ErrFormat)
	mustErr(t, "empty", second(reader.Open(ctx, []byte{})), ErrFormat)
	_, err = reader.Open(ctx, frame(8, []byte{2}))
	mustErr(t, "a tagged int", err, ErrSchema)
	if !strings.Contains(err.Error(), "field /customer/age is tagged PII but is int") {
		t.Errorf("reason: %v", err)
	}
	mustErr(t, "a tagged array", second(reader.Open(ctx, frame(9, []byte{0}))), ErrSchema)
	mustErr(t, "a schema that does not parse", second(reader.Open(ctx, frame(10, []byte{0}))), ErrSchema)

	calls := registry.calls
	mustErr(t, "unknown id", second(reader.Open(ctx, frame(99, good))), ErrUnknownSchema)
	mustErr(t, "unknown id again", second(reader.Open(ctx, frame(99, good))), ErrUnknownSchema)
	if registry.calls != calls+1 {
		t.Errorf("an unknown id was asked %d times", registry.calls-calls)
	}
	registry.down = true
	fresh := newReader(t, vault, registry, Options{})
	mustErr(t, "registry down", second(fresh.Open(ctx, frame(7, good))), ErrRegistry)
	registry.down = false
	if _, err := fresh.Open(ctx, frame(7, good)); err != nil {
		t.Errorf("the registry back: %v", err)
	}

	vault.fail = errors.Join(ErrVault, errors.New("connection refused"))
	results := reader.OpenAll(ctx, []Record{{Value: frame(7, good)}, {Value: frame(7, avroEncode(t, avroCustomer,
		map[string]any{"id": int64(1), "name": "", "email": nil, "address": map[string]any{"street": "x", "city": ""},
			"phones": []any{}, "photo": []byte("vault:v1:x"), "attributes": map[string]any{}, "previous": nil,
			"loyalty": 1, "notes": ""}))}})
	for i, result := range results {
		if result.Opened != nil || result.Err == nil {
			t.Errorf("Vault down, record %d: %+v", i, result)
		}
	}
	mustErr(t, "Vault down", results[0].Err, ErrVault)
	mustErr(t, "a field in clear among others", results[1].Err, ErrNotCiphertext)
}

// Path selection: a record field by name, every field of a record with *.
func TestAvroPaths(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers"}
	reader := newReader(t, vault, registryOf(avroRegistry), Options{Tags: []string{}, Fields: []string{"/notes", "/address/*"}})
	record := avroRecord1(asIs, bytesAsIs)
	record["notes"] = p.text("/notes", "note")
	record["address"] = map[string]any{"street": p.text("/address/street", "s"), "city": p.text("/address/city", "c")}
	opened, err := reader.Open(context.Background(), frame(7, avroEncode(t, avroCustomer, record)))
	if err != nil {
		t.Fatal(err)
	}
	got := opened.Value.(map[string]any)
	if got["notes"] != "note" || !reflect.DeepEqual(got["address"], map[string]any{"street": "s", "city": "c"}) ||
		got["name"] != "Grace Hopper" {
		t.Errorf("%#v", got)
	}
	bad := newReader(t, vault, registryOf(avroRegistry), Options{Fields: []string{"/phones/*"}})
	_, err = bad.Open(context.Background(), frame(7, avroEncode(t, avroCustomer, record)))
	mustErr(t, "a path to a record", err, ErrSchema)
	if !strings.Contains(err.Error(), "/phones/* is selected by the path /phones/* but is record kafkatransit.test.Phone") {
		t.Errorf("reason: %v", err)
	}
}

// A recursive type and named types from references.
func TestAvroReferencesAndRecursion(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers", deterministic: true}
	node := `{"type": "record", "name": "Node", "namespace": "n", "fields": [
		{"name": "value", "type": "string", "confluent:tags": ["PII"]},
		{"name": "next", "type": ["null", "Node"]}]}`
	list := `{"type": "record", "name": "List", "namespace": "n", "fields": [{"name": "head", "type": "Node"}]}`
	registry := registryOf(map[uint32]*RegisteredSchema{1: {Type: Avro, Text: list,
		References: []Reference{{Name: "n.Node", Text: node}}}})
	reader := newReader(t, vault, registry, Options{Deterministic: true})
	record := map[string]any{"head": map[string]any{"value": p.text("/head/value", "a"),
		"next": union("n.Node", map[string]any{"value": p.text("/head/next/value", "b"),
			"next": union("n.Node", map[string]any{"value": p.text("/head/next/next/value", "c"), "next": nil})})}}
	cache := &avro.SchemaCache{}
	avro.ParseWithCache(node, "", cache)
	full, err := avro.ParseWithCache(list, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(full, record)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := reader.Open(context.Background(), frame(1, body))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"head": map[string]any{"value": "a", "next": union("n.Node", map[string]any{"value": "b",
		"next": union("n.Node", map[string]any{"value": "c", "next": nil})})}}
	if !reflect.DeepEqual(opened.Value, want) {
		t.Errorf("%#v", opened.Value)
	}
}

func second[T any](_ T, err error) error { return err }
