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
		9:  {Type: Avro, Text: `{"type": "record", "name": "R", "fields": [{"name": "x", "type": {"type": "array", "items": "int"}, "confluent:tags": ["PII"]}]}`},
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
	mustErr(t, "a tagged array of ints", second(reader.Open(ctx, frame(9, []byte{0}))), ErrSchema)
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

// Tagged arrays and maps of strings and bytes: each element and value protected.
const avroCollections = `{"type": "record", "name": "R", "fields": [
  {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
  {"name": "attrs", "type": {"type": "map", "values": "bytes"}, "confluent:tags": ["PII"]},
  {"name": "notes", "type": ["null", {"type": "array", "items": ["null", "string"]}], "confluent:tags": ["PII"]},
  {"name": "either", "type": ["null", "string", {"type": "array", "items": "bytes"}], "confluent:tags": ["PII"]},
  {"name": "n", "type": "int"}]}`

func avroCollectionsRecord(t protectText, b protectBytes, i int) map[string]any {
	record := map[string]any{
		"tags":  []any{t("/tags/0", "a"), t("/tags/1", "b")},
		"attrs": map[string]any{"k/1": b("/attrs/k~11", []byte{0xff}), "k2": b("/attrs/k2", []byte{})},
		"notes": union("array", []any{union("string", t("/notes/0", "n0")), nil,
			union("string", t("/notes/2", "n2"))}),
		"either": union("string", t("/either", "s")),
		"n":      7,
	}
	if i == 1 {
		record["tags"], record["attrs"], record["notes"] = []any{}, map[string]any{}, nil
		record["either"] = union("array", []any{b("/either/0", []byte("x")), b("/either/1", []byte("yz"))})
	}
	return record
}

func TestAvroArraysAndMapsOfStrings(t *testing.T) {
	registry := registryOf(map[uint32]*RegisteredSchema{1: {Type: Avro, Text: avroCollections}})
	wantPaths := [][]string{
		{"/attrs/k2", "/attrs/k~11", "/either", "/notes/0", "/notes/2", "/tags/0", "/tags/1"},
		{"/either/0", "/either/1"},
	}
	// Tags, paths to the fields, and paths to their elements select the same.
	for _, options := range []Options{
		{},
		{Tags: []string{}, Fields: []string{"/tags", "/attrs", "/notes", "/either"}},
		{Tags: []string{}, Fields: []string{"/tags/*", "/attrs/*", "/notes/*", "/either"}},
	} {
		vault := newFakeTransit()
		p := protector{vault: vault, key: "customers", deterministic: true}
		options.Deterministic = true
		reader := newReader(t, vault, registry, options)
		for i, paths := range wantPaths {
			value := frame(1, avroEncode(t, avroCollections, avroCollectionsRecord(p.text, p.bytes, i)))
			opened, err := reader.Open(context.Background(), value)
			if err != nil {
				t.Fatalf("%v, record %d: %v", options.Fields, i, err)
			}
			want := avroDecode(t, avroCollections, avroEncode(t, avroCollections, avroCollectionsRecord(asIs, bytesAsIs, i)))
			if !reflect.DeepEqual(opened.Value, want) {
				t.Errorf("%v, record %d: opened %#v\nwant %#v", options.Fields, i, opened.Value, want)
			}
			if !reflect.DeepEqual(avroDecode(t, avroCollections, opened.Wire[5:]), want) {
				t.Errorf("%v, record %d: the wire bytes do not decode to the opened record", options.Fields, i)
			}
			got := append([]string(nil), opened.Fields...)
			sort.Strings(got)
			if !reflect.DeepEqual(got, paths) {
				t.Errorf("%v, record %d: located paths %q", options.Fields, i, got)
			}
		}
	}
	// `*` for every field selects the int among them too.
	vault := newFakeTransit()
	reader := newReader(t, vault, registry, Options{Tags: []string{}, Fields: []string{"/*"}})
	_, err := reader.Open(context.Background(), frame(1, avroEncode(t, avroCollections, avroCollectionsRecord(asIs, bytesAsIs, 0))))
	mustErr(t, "/* over an int", err, ErrSchema)
	if !strings.Contains(err.Error(), "field /n is selected by the path /* but is int; only string and bytes fields, "+
		"and arrays and maps of them, can be protected") {
		t.Errorf("reason: %v", err)
	}
}

// avroSchemaError is why schema text cannot be read with tags and fields ("" if it can).
func avroSchemaError(t *testing.T, text string, tags, fields []string, references ...Reference) string {
	t.Helper()
	sel := &selection{tags: tags}
	for _, field := range fields {
		p, err := parsePattern(field)
		if err != nil {
			t.Fatal(err)
		}
		sel.patterns = append(sel.patterns, p)
	}
	_, err := parseAvro(&RegisteredSchema{Type: Avro, Text: text, References: references}, sel)
	if err == nil {
		return ""
	}
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("%s: %v is not a schema error", text, err)
	}
	return err.Error()
}

func TestAvroRefusedFields(t *testing.T) {
	field := func(ty string) string {
		return `{"type": "record", "name": "R", "fields": [{"name": "x", "type": ` + ty + `, "confluent:tags": ["PII"]}]}`
	}
	pii := []string{"PII"}
	uuid := field(`{"type": "string", "logicalType": "uuid"}`)
	if got, want := avroSchemaError(t, uuid, pii, nil), "field /x is tagged PII but is string (logical type uuid): "+
		"a ciphertext is not a valid uuid, so consumers would fail to read the record; remove the tag or the "+
		"logical type"; !strings.Contains(got, want) {
		t.Errorf("got %q", got)
	}
	if got := avroSchemaError(t, uuid, nil, []string{"/x"}); !strings.Contains(got,
		"field /x is selected by the path /x but is string (logical type uuid): a ciphertext is not a valid uuid, "+
			"so consumers would fail to read the record; remove the path or the logical type") {
		t.Errorf("got %q", got)
	}
	// Not selected: no error.
	if got := avroSchemaError(t, uuid, []string{"PHI"}, nil); got != "" {
		t.Errorf("not selected: %s", got)
	}
	// Logical types, known to hamba/avro or not, wherever the selected strings are.
	for ty, what := range map[string]string{
		`{"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}`: "is bytes (logical type decimal): a ciphertext is not a valid decimal",
		`{"type": "string", "logicalType": "acme-iban"}`:                          "is string (logical type acme-iban): a ciphertext is not a valid acme-iban",
		`{"type": "bytes", "logicalType": "big-decimal"}`:                         "is bytes (logical type big-decimal)",
		`["null", {"type": "string", "logicalType": "uuid"}]`:                     "is a union of null, string (logical type uuid): a ciphertext is not a valid uuid",
		`{"type": "array", "items": {"type": "string", "logicalType": "uuid"}}`:   "is an array of string (logical type uuid): a ciphertext is not a valid uuid",
		`["null", {"type": "map", "values": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 4}]}]`: "is a union of null, " +
			"a map of a union of null, bytes (logical type decimal): a ciphertext is not a valid decimal",
	} {
		if got := avroSchemaError(t, field(ty), pii, nil); !strings.Contains(got, what) {
			t.Errorf("%s: %q", ty, got)
		}
	}
	// Selected by a path through an array.
	ids := `{"type": "record", "name": "R", "fields": [
		{"name": "ids", "type": {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}}]}`
	if got := avroSchemaError(t, ids, nil, []string{"/ids/*"}); !strings.Contains(got,
		"field /ids/* is selected by the path /ids/* but is string (logical type uuid)") {
		t.Errorf("got %q", got)
	}
	// A named type from a reference, used twice.
	ref := `{"type": "record", "name": "Id", "namespace": "r", "fields": [
		{"name": "v", "type": {"type": "string", "logicalType": "ulid"}, "confluent:tags": ["PII"]}]}`
	uses := `{"type": "record", "name": "R", "fields": [{"name": "a", "type": "r.Id"}, {"name": "b", "type": ["null", "r.Id"]}]}`
	if got := avroSchemaError(t, uses, pii, nil, Reference{Name: "r.Id", Text: ref}); !strings.Contains(got,
		"field /a/v is tagged PII but is string (logical type ulid)") {
		t.Errorf("a reference: %q", got)
	}
	if got := avroSchemaError(t, uses, nil, []string{"/b/v"}, Reference{Name: "r.Id", Text: ref}); !strings.Contains(got,
		"field /b/v is selected by the path /b/v but is string (logical type ulid)") {
		t.Errorf("a reference used again: %q", got)
	}
	// Not protectable: a record, an array or map of anything but strings and bytes.
	for ty, described := range map[string]string{
		`{"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}`: "record In",
		`{"type": "array", "items": {"type": "record", "name": "In", "fields": []}}`:    "an array of record In",
		`{"type": "array", "items": "int"}`:                                             "an array of int",
		`{"type": "array", "items": {"type": "array", "items": "string"}}`:              "an array of an array of string",
		`{"type": "map", "values": ["null", "string", "long"]}`:                         "a map of a union of null, string, long",
		`["null", {"type": "array", "items": "int"}]`:                                   "a union of null, an array of int",
		`["null", "string", {"type": "record", "name": "In", "fields": []}]`:            "a union of null, string, record In",
		`["null", {"type": "array", "items": ["null", {"type": "array", "items": "string"}]}]`: "a union of null, " +
			"an array of a union of null, an array of string",
		`"null"`: "null",
		`{"type": "enum", "name": "E", "symbols": ["A"]}`: "enum E",
		`{"type": "fixed", "name": "F", "size": 2}`:       "fixed F",
	} {
		got := avroSchemaError(t, field(ty), pii, nil)
		want := "field /x is tagged PII but is " + described + "; only string and bytes fields, and arrays and maps " +
			"of them, can be protected"
		if !strings.Contains(got, want) {
			t.Errorf("%s: %q", ty, got)
		}
	}
	// Logical types elsewhere are read as their underlying types.
	mixed := `{"type": "record", "name": "R", "fields": [
		{"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
		{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
		{"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
		{"name": "code", "type": {"type": "string", "logicalType": "acme-code"}},
		{"name": "name", "type": "string", "confluent:tags": ["PII"]}]}`
	if got := avroSchemaError(t, mixed, pii, nil); got != "" {
		t.Errorf("logical types not selected: %s", got)
	}
}

func second[T any](_ T, err error) error { return err }
