package schemafields

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

const jsonCustomer = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Customer",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "name": {"type": "string", "confluent:tags": ["PII"]},
    "email": {"oneOf": [{"type": "null"}, {"type": "string"}], "confluent:tags": ["PII"]},
    "address": {"$ref": "#/definitions/Address"},
    "previous": {"oneOf": [{"type": "null"}, {"$ref": "#/definitions/Address"}]},
    "phones": {"type": "array", "items": {"type": "object", "properties": {
      "kind": {"type": "string"},
      "number": {"type": "string", "confluent:tags": ["PII"]}}}},
    "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
    "secrets": {"type": "object", "patternProperties": {"^s_": {"type": "string", "confluent:tags": ["PII"]}},
      "additionalProperties": {"type": "integer"}},
    "notes": {"type": "string"},
    "loyalty": {"type": "integer"}
  },
  "definitions": {
    "Address": {"type": "object", "properties": {
      "street": {"type": ["string", "null"], "confluent:tags": ["PII"]},
      "city": {"type": "string"}}}
  }
}`

// jsonRecord is a customer's JSON text, each protected field through t, odd whitespace
// and number formats included.
func jsonRecordText(t protectText, i int) string {
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	email := "null"
	if i%2 == 0 {
		email = q(t("/email", "ada\u00e9@example.com"))
	}
	return fmt.Sprintf(`{"id": 7.0e9 , "name":%s,"email" : %s,
  "address": {"street": %s, "city": "Z\u00fcrich"},
  "previous": {"street": null, "city": "Paris"},
  "phones": [{"kind": "mobile", "number": %s}, {"kind": "home", "number": %s}],
  "attributes": {"tier": %s, "a/b~": %s},
  "secrets": {"s_pin": %s, "count": 3},
  "notes": "vault:v1:untagged", "loyalty": -1}`,
		q(t("/name", "Ada \"Countess\" Lovelace\n")), email, q(t("/address/street", "Bahnhofstrasse 1")),
		q(t("/phones/0/number", "+41 1")), q(t("/phones/1/number", "+41 2")),
		q(t("/attributes/tier", "gold")), q(t("/attributes/a~1b~0", "odd")), q(t("/secrets/s_pin", "1234")))
}

func decodeJSON(t *testing.T, text []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestJSONFieldsOpen(t *testing.T) {
	for _, deterministic := range []bool{false, true} {
		vault := newFakeTransit()
		p := protector{vault: vault, key: "customers", deterministic: deterministic}
		reader := newReader(t, vault, registryOf(map[uint32]*RegisteredSchema{11: {Type: JSON, Text: jsonCustomer}}),
			Options{Deterministic: deterministic, Fields: []string{"/attributes/*"}})
		var records []Record
		for i := 0; i < 2; i++ {
			records = append(records, Record{Value: frame(11, []byte(jsonRecordText(p.text, i)))})
		}
		for i, result := range reader.OpenAll(context.Background(), records) {
			if result.Err != nil {
				t.Fatalf("record %d: %v", i, result.Err)
			}
			// Every byte outside the opened strings as it came.
			want := jsonRecordText(asIs, i)
			if got := string(result.Opened.Wire[5:]); got != want {
				t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
			}
			if !reflect.DeepEqual(result.Opened.Value, decodeJSON(t, []byte(want))) {
				t.Errorf("record %d: value %v", i, result.Opened.Value)
			}
			if i == 0 {
				paths := append([]string(nil), result.Opened.Fields...)
				sort.Strings(paths)
				want := []string{"/address/street", "/attributes/a~1b~0", "/attributes/tier", "/email", "/name",
					"/phones/0/number", "/phones/1/number", "/secrets/s_pin"}
				if !reflect.DeepEqual(paths, want) {
					t.Errorf("located paths %q", paths)
				}
			}
		}
		if reader.VaultCalls() != 1 {
			t.Errorf("%d Vault calls", reader.VaultCalls())
		}
	}
}

func TestJSONReferencesAndCombinators(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers", deterministic: true}
	// The registry's references by name and by $id; allOf, anyOf, if/then, $defs, 2020-12 prefixItems.
	root := `{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
	  "properties": {
	    "customer": {"$ref": "customer.json"},
	    "billing": {"allOf": [{"$ref": "https://example.com/schemas/address.json"}]},
	    "pair": {"type": "array", "prefixItems": [{"type": "string", "confluent:tags": ["PII"]}, {"type": "string"}],
	      "items": {"$ref": "#/$defs/Secret"}},
	    "maybe": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Secret"}]},
	    "tree": {"$ref": "#/$defs/Node"}
	  },
	  "if": {"properties": {"kind": {"const": "x"}}}, "then": {"properties": {"extra": {"$ref": "#/$defs/Secret"}}},
	  "$defs": {"Secret": {"type": "string", "confluent:tags": ["PII"]},
	    "Node": {"type": "object", "properties": {"label": {"$ref": "#/$defs/Secret"},
	      "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}`
	customer := `{"type": "object", "properties": {"name": {"type": "string", "confluent:tags": ["PII"]},
	  "address": {"$ref": "https://example.com/schemas/address.json"}}}`
	address := `{"$id": "https://example.com/schemas/address.json", "type": "object",
	  "properties": {"street": {"$ref": "#/$defs/Street"}}, "$defs": {"Street": {"type": "string", "confluent:tags": ["PII"]}}}`
	registry := registryOf(map[uint32]*RegisteredSchema{1: {Type: JSON, Text: root, References: []Reference{
		{Name: "customer.json", Text: customer}, {Name: "address.json", Text: address}}}})
	reader := newReader(t, vault, registry, Options{Deterministic: true})
	q := func(path, s string) string {
		b, _ := json.Marshal(p.text(path, s))
		return string(b)
	}
	text := `{"customer": {"name": ` + q("/customer/name", "Ada") + `, "address": {"street": ` +
		q("/customer/address/street", "Main") + `}}, "billing": {"street": ` + q("/billing/street", "Side") + `},
	  "pair": [` + q("/pair/0", "first") + `, "second", ` + q("/pair/2", "third") + `],
	  "maybe": ` + q("/maybe", "m") + `, "kind": "y", "extra": ` + q("/extra", "e") + `,
	  "tree": {"label": ` + q("/tree/label", "root") + `, "children": [{"label": ` + q("/tree/children/0/label", "leaf") + `}]}}`
	opened, err := reader.Open(context.Background(), frame(1, []byte(text)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"customer": {"name": "Ada", "address": {"street": "Main"}}, "billing": {"street": "Side"},
	  "pair": ["first", "second", "third"],
	  "maybe": "m", "kind": "y", "extra": "e",
	  "tree": {"label": "root", "children": [{"label": "leaf"}]}}`
	if string(opened.Wire[5:]) != want {
		t.Errorf("got %s", opened.Wire[5:])
	}
	// A selected field whose value is a number: refused, never passed on.
	_, err = reader.Open(context.Background(), frame(1, []byte(`{"maybe": 5}`)))
	mustErr(t, "a number in a selected field", err, ErrDecode)
	// anyOf with a branch that is not a string: the schema is refused.
	registry.schemas[2] = &RegisteredSchema{Type: JSON, Text: `{"properties": {"maybe": {"anyOf": [{"type": "integer"},
	  {"type": "string", "confluent:tags": ["PII"]}]}}}`}
	_, err = reader.Open(context.Background(), frame(2, []byte(`{"maybe": 5}`)))
	mustErr(t, "an integer or a tagged string", err, ErrSchema)
}

func TestJSONFailures(t *testing.T) {
	vault := newFakeTransit()
	p := protector{vault: vault, key: "customers"}
	registry := registryOf(map[uint32]*RegisteredSchema{
		11: {Type: JSON, Text: jsonCustomer},
		12: {Type: JSON, Text: `{"type": "object", "properties": {"age": {"type": "integer", "confluent:tags": ["PII"]}}}`},
		13: {Type: JSON, Text: `{"type": "object", "properties": {"x": {"$ref": "missing.json"}}}`},
		14: {Type: JSON, Text: `{"type": "object", "properties": {"x": {"confluent:tags": ["PII"]}}}`},
	})
	reader := newReader(t, vault, registry, Options{})
	ctx := context.Background()
	good := []byte(jsonRecordText(p.text, 0))
	if _, err := reader.Open(ctx, frame(11, good)); err != nil {
		t.Fatal(err)
	}
	mustErr(t, "in clear", second(reader.Open(ctx, frame(11, []byte(jsonRecordText(asIs, 0))))), ErrNotCiphertext)
	mustErr(t, "trailing", second(reader.Open(ctx, frame(11, append(good, '}')))), ErrDecode)
	mustErr(t, "truncated", second(reader.Open(ctx, frame(11, good[:len(good)-1]))), ErrDecode)
	mustErr(t, "a number in a tagged string", second(reader.Open(ctx, frame(11, []byte(`{"name": 5}`)))), ErrDecode)
	mustErr(t, "bad UTF-8", second(reader.Open(ctx, frame(11, []byte("{\"notes\": \"\xff\"}")))), ErrDecode)
	_, err := reader.Open(ctx, frame(12, []byte(`{"age": 5}`)))
	mustErr(t, "a tagged integer", err, ErrSchema)
	if !strings.Contains(err.Error(), "field /age is selected (tagged PII) but its schema type is integer") {
		t.Errorf("reason: %v", err)
	}
	mustErr(t, "an unresolved $ref", second(reader.Open(ctx, frame(13, []byte(`{}`)))), ErrSchema)
	mustErr(t, "a tag without a type", second(reader.Open(ctx, frame(14, []byte(`{"x": "vault:v1:x"}`)))), ErrSchema)
	// Nothing selected in the record: opened as it is, with no Vault call.
	calls := reader.VaultCalls()
	opened, err := reader.Open(ctx, frame(12, []byte(` {} `)))
	if err != nil || string(opened.Wire[5:]) != " {} " || reader.VaultCalls() != calls {
		t.Errorf("nothing to open: %v %q", err, opened.Wire)
	}
}

// Tagged arrays and maps of strings: each element and value protected.
const jsonCollections = `{"type": "object", "properties": {
  "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
  "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
  "notes": {"type": ["array", "null"], "items": {"type": ["string", "null"]}, "confluent:tags": ["PII"]},
  "refs": {"$ref": "#/$defs/Names", "confluent:tags": ["PII"]},
  "n": {"type": "integer"}},
  "$defs": {"Names": {"oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"$ref": "#/$defs/Name"}}]},
    "Name": {"type": "string", "minLength": 1}}}`

func jsonCollectionsText(t protectText, i int) string {
	q := func(path, s string) string {
		b, _ := json.Marshal(t(path, s))
		return string(b)
	}
	if i == 1 {
		return `{"tags": [], "attrs": {}, "notes": null, "refs": null, "n": 1}`
	}
	return `{"tags": [` + q("/tags/0", "a") + `, ` + q("/tags/1", "b") + `], "attrs": {"k/1": ` + q("/attrs/k~11", "v") +
		`, "k2": ` + q("/attrs/k2", "") + `}, "notes": [` + q("/notes/0", "n0") + `, null, ` + q("/notes/2", "n2") +
		`], "refs": {"x": ` + q("/refs/x", "X") + `}, "n": 7}`
}

func TestJSONArraysAndMapsOfStrings(t *testing.T) {
	registry := registryOf(map[uint32]*RegisteredSchema{1: {Type: JSON, Text: jsonCollections}})
	wantPaths := [][]string{
		{"/attrs/k2", "/attrs/k~11", "/notes/0", "/notes/2", "/refs/x", "/tags/0", "/tags/1"},
		nil,
	}
	// Tags, paths to the fields, and paths to their elements select the same.
	for _, options := range []Options{
		{},
		{Tags: []string{}, Fields: []string{"/tags", "/attrs", "/notes", "/refs"}},
		{Tags: []string{}, Fields: []string{"/tags/*", "/attrs/*", "/notes/*", "/refs/*"}},
	} {
		vault := newFakeTransit()
		p := protector{vault: vault, key: "customers", deterministic: true}
		options.Deterministic = true
		reader := newReader(t, vault, registry, options)
		for i, paths := range wantPaths {
			opened, err := reader.Open(context.Background(), frame(1, []byte(jsonCollectionsText(p.text, i))))
			if err != nil {
				t.Fatalf("%v, record %d: %v", options.Fields, i, err)
			}
			if got, want := string(opened.Wire[5:]), jsonCollectionsText(asIs, i); got != want {
				t.Errorf("%v, record %d:\n got %s\nwant %s", options.Fields, i, got, want)
			}
			got := append([]string(nil), opened.Fields...)
			sort.Strings(got)
			if !reflect.DeepEqual(got, paths) {
				t.Errorf("%v, record %d: located paths %q", options.Fields, i, got)
			}
		}
	}
	// A record whose selected field is not what the schema says: refused, never passed on.
	reader := newReader(t, newFakeTransit(), registry, Options{})
	for record, why := range map[string]string{
		`{"tags": "vault:v1:x"}`:       "field /tags is selected (tagged PII) but holds a string, not an array of strings",
		`{"tags": [5]}`:                "field /tags/* is selected (tagged PII) but holds a number, not a string",
		`{"attrs": ["vault:v1:x"]}`:    "field /attrs is selected (tagged PII) but holds an array, not an object of strings",
		`{"attrs": {"k": {"a": "b"}}}`: "field /attrs/* is selected (tagged PII) but holds an object, not a string",
		`{"notes": [["vault:v1:x"]]}`:  "field /notes/* is selected (tagged PII) but holds an array, not a string",
	} {
		_, err := reader.Open(context.Background(), frame(1, []byte(record)))
		mustErr(t, record, err, ErrDecode)
		if !strings.Contains(err.Error(), why) {
			t.Errorf("%s: %v", record, err)
		}
	}
}

// jsonSchemaError is why a record {"x": ...} under schema text is refused as a schema
// error with tags and fields ("" if it is not).
func jsonSchemaError(t *testing.T, text string, tags, fields []string, record string) string {
	t.Helper()
	sel := &selection{tags: tags}
	for _, field := range fields {
		p, err := parsePattern(field)
		if err != nil {
			t.Fatal(err)
		}
		sel.patterns = append(sel.patterns, p)
	}
	schema, err := parseJSONSchema(&RegisteredSchema{Type: JSON, Text: text}, sel)
	if err == nil {
		_, err = schema.locate([]byte(record), nil)
	}
	if err == nil {
		return ""
	}
	if !errors.Is(err, ErrSchema) {
		t.Fatalf("%s: %v is not a schema error", text, err)
	}
	return err.Error()
}

func TestJSONRefusedFields(t *testing.T) {
	pii := []string{"PII"}
	property := func(schema string) string {
		return `{"type": "object", "properties": {"x": ` + schema + `}, "$defs": {"Code": {"type": "string", "pattern": "^[A-Z]+$"}}}`
	}
	// Keywords a ciphertext may fail, in the field's schema or any that applies there.
	for _, keyword := range []string{`"pattern": "^[0-9]+$"`, `"maxLength": 40`, `"format": "email"`,
		`"enum": ["a", "b"]`, `"const": "a"`, `"contentEncoding": "base64"`, `"contentMediaType": "text/plain"`} {
		name, _, _ := strings.Cut(strings.Trim(keyword, `"`), `"`)
		for _, schema := range []string{
			`{"type": "string", ` + keyword + `, "confluent:tags": ["PII"]}`,
			`{"allOf": [{"type": "string"}, {` + keyword + `}], "confluent:tags": ["PII"]}`,
			`{"oneOf": [{"type": "null"}, {"type": "string", ` + keyword + `}], "confluent:tags": ["PII"]}`,
			`{"type": "array", "items": {"type": "string", ` + keyword + `}, "confluent:tags": ["PII"]}`,
			`{"type": "object", "additionalProperties": {"type": "string", ` + keyword + `}, "confluent:tags": ["PII"]}`,
		} {
			got := jsonSchemaError(t, property(schema), pii, nil, `{"x": null}`)
			if !strings.Contains(got, "but its schema has `"+name+"` (") ||
				!strings.Contains(got, "a ciphertext may not satisfy it, so consumers that validate records would "+
					"refuse the record; remove the tag or `"+name+"`") {
				t.Errorf("%s: %q", schema, got)
			}
		}
	}
	ref := property(`{"$ref": "#/$defs/Code", "confluent:tags": ["PII"]}`)
	if got := jsonSchemaError(t, ref, pii, nil, `{"x": "vault:v1:x"}`); !strings.Contains(got,
		"field /x is selected (tagged PII) but its schema has `pattern` (#/$defs/Code)") {
		t.Errorf("a $ref: %q", got)
	}
	if got := jsonSchemaError(t, property(`{"$ref": "#/$defs/Code"}`), nil, []string{"/x"}, `{"x": "vault:v1:x"}`); !strings.Contains(got,
		"field /x is selected (at the configured path /x) but its schema has `pattern`") ||
		!strings.Contains(got, "remove the path or `pattern`") {
		t.Errorf("a path: %q", got)
	}
	// Not selected: no error.
	if got := jsonSchemaError(t, ref, []string{"PHI"}, nil, `{"x": "A"}`); got != "" {
		t.Errorf("not selected: %s", got)
	}
	// minLength, and a constraint of a branch that allows no string, constrain no ciphertext.
	for _, schema := range []string{
		`{"type": "string", "minLength": 3, "confluent:tags": ["PII"]}`,
		`{"oneOf": [{"type": "null", "const": null}, {"type": "string"}], "confluent:tags": ["PII"]}`,
		`{"oneOf": [{"type": "null", "enum": [null]}, {"type": "array", "items": {"type": "string"}}], "confluent:tags": ["PII"]}`,
	} {
		if got := jsonSchemaError(t, property(schema), pii, nil, `{"x": null}`); got != "" {
			t.Errorf("%s: %s", schema, got)
		}
	}
	// Not protectable: an object with properties, an array or map of anything but strings.
	for schema, why := range map[string]string{
		`{"type": "object", "properties": {"s": {"type": "string"}}, "additionalProperties": {"type": "string"}}`: "its schema type is object",
		`{"type": "array", "items": {"type": "integer"}}`:                                                         "field /x/* is selected (tagged PII) but its schema type is integer",
		`{"type": "object", "additionalProperties": {"type": "object", "properties": {"s": {"type": "string"}}}}`: "field /x/* is selected (tagged PII) but its schema type is object",
		`{"type": "array", "items": {"type": "array", "items": {"type": "string"}}}`:                              "field /x/* is selected (tagged PII) but its schema type is array",
		`{"type": "array"}`:                "is an array whose schema (#/properties/x) has no `items` schema",
		`{"type": "array", "items": true}`: "is an array whose schema (#/properties/x) has no `items` schema",
		`{"type": "object"}`:               "is an object whose schema (#/properties/x) has no `additionalProperties` schema",
		`{"type": ["array", "string"], "items": {"type": "string"}}`: "its schema type is [\"array\", \"string\"]",
		`{"type": "array", "items": {}}`:                             "field /x/* is selected (tagged PII) but its schema gives it no type",
	} {
		tagged := strings.TrimSuffix(schema, "}") + `, "confluent:tags": ["PII"]}`
		got := jsonSchemaError(t, property(`{"allOf": [`+schema+`], "confluent:tags": ["PII"]}`), pii, nil, `{"x": null}`)
		if !strings.Contains(got, why) {
			t.Errorf("%s: %q", schema, got)
		}
		if got := jsonSchemaError(t, property(tagged), pii, nil, `{"x": null}`); !strings.Contains(got, why) {
			t.Errorf("%s: %q", tagged, got)
		}
	}
}
