package schemafields

import (
	"bytes"
	"context"
	"encoding/json"
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
