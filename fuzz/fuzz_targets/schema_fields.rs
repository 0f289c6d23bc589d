//! The walkers of schema'd records (schema-fields/): Avro, JSON Schema and Protobuf
//! records under fixed schemas with tagged fields at every depth, and any schema text.
//! Oracles: no panic; whatever `locate` finds, `replace` writes back so that `locate`
//! finds the new contents, as many and in the same places.
//!
//! Input: a first byte choosing the case (a fixed schema by type, or — cases 3 to 5 — a
//! schema of that type read from the input up to the first NUL), then the record body.

#![no_main]

use kafka_transit_schema_fields::{Pattern, Schema, SchemaText, SchemaType, Selection};
use libfuzzer_sys::fuzz_target;

const AVRO: &str = r#"{"type": "record", "name": "C", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string", "confluent:tags": ["PII"]},
  {"name": "email", "type": ["null", "string"], "confluent:tags": ["PII"]},
  {"name": "raw", "type": "bytes", "confluent:tags": ["PII"]},
  {"name": "tags", "type": {"type": "map", "values": "string"}},
  {"name": "next", "type": ["null", "C"]},
  {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "P",
    "fields": [{"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["A", "B"]}},
               {"name": "number", "type": "string", "confluent:tags": ["PII"]}]}}}]}"#;

const JSON: &str = r##"{"type": "object", "$defs": {"c": {"type": "object", "properties": {
  "name": {"type": "string", "confluent:tags": ["PII"]},
  "email": {"type": ["string", "null"], "confluent:tags": ["PII"]},
  "next": {"$ref": "#/$defs/c"},
  "phones": {"type": "array", "items": {"type": "object", "properties": {
    "number": {"type": "string", "confluent:tags": ["PII"]}}}},
  "attributes": {"type": "object", "additionalProperties": {"type": "string"}}}}},
  "$ref": "#/$defs/c"}"##;

const PROTO: &str = r#"syntax = "proto3";
import "confluent/meta.proto";
message C {
  int64 id = 1;
  string name = 2 [(confluent.field_meta).tags = "PII"];
  optional string email = 3 [(confluent.field_meta).tags = "PII"];
  bytes raw = 4 [(confluent.field_meta).tags = "PII"];
  map<string, string> attributes = 5;
  C next = 6;
  repeated P phones = 7;
  oneof contact { string phone = 8 [(confluent.field_meta).tags = "PII"]; string handle = 9; }
}
message P { string kind = 1; string number = 2 [(confluent.field_meta).tags = "PII"]; }
"#;

fuzz_target!(|data: &[u8]| {
    let Some((&case, rest)) = data.split_first() else {
        return;
    };
    let schema_type = match case % 3 {
        0 => SchemaType::Avro,
        1 => SchemaType::Json,
        _ => SchemaType::Protobuf,
    };
    let (text, body) = if case % 6 < 3 {
        let text = match schema_type {
            SchemaType::Avro => AVRO,
            SchemaType::Json => JSON,
            SchemaType::Protobuf => PROTO,
        };
        (text.to_string(), rest)
    } else {
        let at = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let text = String::from_utf8_lossy(&rest[..at]).into_owned();
        (text, rest.get(at + 1..).unwrap_or_default())
    };
    let selection = Selection::new(
        vec!["PII".into()],
        vec![Pattern::parse("/attributes/*").unwrap()],
    );
    let text = SchemaText {
        schema_type,
        text,
        references: Vec::new(),
    };
    let Ok(schema) = Schema::parse(&text, &selection) else {
        return;
    };
    let message = [0];
    let Ok(located) = schema.locate(body, &message) else {
        return;
    };
    // New contents of other lengths, valid for either field type.
    let contents: Vec<Vec<u8>> = located
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            // Whole characters: a string field's content must stay UTF-8.
            let head: String = String::from_utf8_lossy(&field.content)
                .chars()
                .take(7)
                .collect();
            format!("vault:v1:{i}:{head}").into_bytes()
        })
        .collect();
    let replaced = located
        .replace(body, &contents)
        .expect("what locate found, replace writes");
    let again = schema
        .locate(&replaced, &message)
        .expect("a replaced record decodes under its schema");
    assert_eq!(
        again.fields().len(),
        located.fields().len(),
        "as many fields"
    );
    for ((before, after), content) in located.fields().iter().zip(again.fields()).zip(&contents) {
        assert_eq!(before.path, after.path, "in the same places");
        assert_eq!(&after.content, content, "with the new contents");
    }
});
