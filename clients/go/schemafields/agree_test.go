package schemafields

import (
	"errors"
	"reflect"
	"testing"
)

// One customer in each format: the three readers select the same fields, as the
// runner's three walkers do (schema-fields' lib tests).
const (
	agreeAvro = `{"type": "record", "name": "Customer", "fields": [
  {"name": "name", "type": "string", "confluent:tags": ["PII"]},
  {"name": "nick", "type": ["null", "string"], "confluent:tags": ["PII"]},
  {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
  {"name": "attrs", "type": {"type": "map", "values": "string"}, "confluent:tags": ["PII"]},
  {"name": "age", "type": "int"}]}`
	agreeJSON = `{"type": "object", "properties": {
  "name": {"type": "string", "confluent:tags": ["PII"]},
  "nick": {"type": ["string", "null"], "confluent:tags": ["PII"]},
  "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
  "attrs": {"type": "object", "additionalProperties": {"type": "string"}, "confluent:tags": ["PII"]},
  "age": {"type": "integer"}}}`
	agreeProto = `syntax = "proto3";
import "confluent/meta.proto";
message Customer {
  string name = 1 [(confluent.field_meta).tags = "PII"];
  optional string nick = 2 [(confluent.field_meta).tags = "PII"];
  repeated string tags = 3 [(confluent.field_meta).tags = "PII"];
  map<string, string> attrs = 4 [(confluent.field_meta).tags = "PII"];
  int32 age = 5;
}
message In { string s = 1; }`
)

func agreeSelection(t *testing.T, tags []string, fields ...string) *selection {
	t.Helper()
	sel := &selection{tags: tags}
	for _, field := range fields {
		p, err := parsePattern(field)
		if err != nil {
			t.Fatal(err)
		}
		sel.patterns = append(sel.patterns, p)
	}
	return sel
}

func TestFormatsSelectTheSameFields(t *testing.T) {
	records := []struct {
		schema *RegisteredSchema
		body   []byte
	}{
		{&RegisteredSchema{Type: Avro, Text: agreeAvro}, []byte("\x06Ann\x02\x04Nn\x04\x02a\x02b\x00\x02\x02k\x02v\x00\x54")},
		{&RegisteredSchema{Type: JSON, Text: agreeJSON},
			[]byte(`{"name": "Ann", "nick": "Nn", "tags": ["a", "b"], "attrs": {"k": "v"}, "age": 42}`)},
		{&RegisteredSchema{Type: Protobuf, Text: agreeProto},
			[]byte("\x0a\x03Ann\x12\x02Nn\x1a\x01a\x1a\x01b\x22\x06\x0a\x01k\x12\x01v\x28\x2a")},
	}
	want := [][2]string{{"/name", "Ann"}, {"/nick", "Nn"}, {"/tags/0", "a"}, {"/tags/1", "b"}, {"/attrs/k", "v"}}
	selections := map[string]*selection{
		"tags":           agreeSelection(t, []string{"PII"}),
		"paths":          agreeSelection(t, nil, "/name", "/nick", "/tags", "/attrs"),
		"paths, element": agreeSelection(t, nil, "/name", "/nick", "/tags/*", "/attrs/*"),
	}
	for _, record := range records {
		for name, sel := range selections {
			schema, err := parseSchema(record.schema, sel)
			if err != nil {
				t.Fatalf("%s, %s: %v", record.schema.Type, name, err)
			}
			located, err := schema.locate(record.body, []int{0})
			if err != nil {
				t.Fatalf("%s, %s: %v", record.schema.Type, name, err)
			}
			var got [][2]string
			for _, field := range located.fields() {
				got = append(got, [2]string{field.path, string(field.content)})
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s: located %q", record.schema.Type, name, got)
			}
		}
	}
}

func TestFormatsRefuseTheSameFields(t *testing.T) {
	fields := map[string]map[SchemaType]string{
		"record": {
			Avro:     `{"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}`,
			JSON:     `{"type": "object", "properties": {"s": {"type": "string"}}}`,
			Protobuf: "In",
		},
		"ints": {
			Avro:     `{"type": "array", "items": "int"}`,
			JSON:     `{"type": "array", "items": {"type": "integer"}}`,
			Protobuf: "repeated int32",
		},
		"records": {
			Avro:     `{"type": "map", "values": {"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}}`,
			JSON:     `{"type": "object", "additionalProperties": {"type": "object", "properties": {"s": {"type": "string"}}}}`,
			Protobuf: "map<string, In>",
		},
	}
	for kind, byType := range fields {
		for schemaType, ty := range byType {
			var text string
			switch schemaType {
			case Avro:
				text = `{"type": "record", "name": "R", "fields": [{"name": "x", "type": ` + ty + `, "confluent:tags": ["PII"]}]}`
			case JSON:
				text = `{"type": "object", "properties": {"x": {"confluent:tags": ["PII"], "allOf": [` + ty + `]}}}`
			case Protobuf:
				text = `syntax = "proto3"; import "confluent/meta.proto";
message R { ` + ty + ` x = 1 [(confluent.field_meta).tags = "PII"]; }
message In { string s = 1; }`
			}
			for name, sel := range map[string]*selection{"tag": agreeSelection(t, []string{"PII"}),
				"path": agreeSelection(t, nil, "/x")} {
				schema, err := parseSchema(&RegisteredSchema{Type: schemaType, Text: text}, sel)
				if err == nil && schemaType == JSON {
					// The JSON Schema reader checks a selected field where a record has it.
					_, err = schema.locate([]byte(`{"x": null}`), nil)
				}
				if !errors.Is(err, ErrSchema) {
					t.Errorf("%s %s by %s: %v", schemaType, kind, name, err)
				}
			}
		}
	}
}
