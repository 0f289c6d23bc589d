//! Field-level protection of schema'd records: the pure half (no Vault, no registry).
//!
//! A record value in Confluent's wire format ([`wire`]: magic byte 0, a 4-byte schema
//! id, then the encoded record) is walked under its schema (Avro, Protobuf or JSON
//! Schema, as a Schema Registry returns it) to find the fields to protect: those whose
//! schema carries one of the configured tags (Confluent's `confluent:tags` convention,
//! e.g. `PII`) or whose path is configured. [`Schema::locate`] returns each such field's
//! current content; [`Located::replace`] writes the record again with new contents
//! (ciphertexts when protecting, plaintexts when opening), every other byte as it came.
//!
//! **Only `string` and `bytes` fields are protected**, as Confluent's client-side field
//! level encryption does: a ciphertext (`vault:v1:...` text) fits a string field, and its
//! UTF-8 bytes a bytes field, so the record stays valid under the *same* schema id and
//! every consumer using the ordinary deserializer reads it; no derived schema has to be
//! registered. A selected array or map of strings or bytes has each element or value
//! protected (as a Protobuf tag on a `repeated string` field does). A selected field of
//! another type is a schema error, never passed in clear, and so is a string or bytes
//! that a ciphertext would make invalid: an Avro logical type (`uuid`, `decimal`), a JSON
//! Schema `pattern`, `maxLength`, `format`, `enum`, `const`, `contentEncoding` or
//! `contentMediaType`.
//!
//! **Nothing here panics, loops or allocates beyond the input's size on any input**
//! (fuzzed): a record that does not decode under its schema, or a schema that cannot be
//! used, is an [`Error`], which a policy turns into invalid input (dead-lettered). Error
//! reasons name schema paths, never record data.

mod avro;
mod json_schema;
mod path;
mod protobuf;
pub mod wire;

pub use path::{unescape, Pattern, Selection};

/// The three schema types of a Confluent-compatible Schema Registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

/// A schema as the registry returns it, its references resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaText {
    pub schema_type: SchemaType,
    /// Avro: the schema's JSON. JSON Schema: the schema document. Protobuf: the `.proto`
    /// file's text, or a base64 `FileDescriptorProto` (what some registries return).
    pub text: String,
    /// Every schema this one references, directly or not, each under the name the
    /// referencing schema uses (an Avro full name, a `.proto` import path, a JSON Schema
    /// `$ref` URL).
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub text: String,
}

/// The type a protected field has in its schema: what its content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Content is UTF-8 text (a replacement must be UTF-8 too).
    String,
    /// Content is any bytes.
    Bytes,
}

/// A field found in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where it sits in this record, RFC 6901 style over the record's logical shape:
    /// `/customer/ssn`, `/phones/2/number`, `/attributes/<map key>` (`~0`, `~1` escaped).
    /// A union or `oneof` branch adds nothing. Record data (map keys, indices): what a
    /// bound ciphertext is bound to, never put in an error or a log.
    pub path: String,
    pub field_type: FieldType,
    /// The field's content: a string's UTF-8 bytes, or the bytes of a bytes field.
    pub content: Vec<u8>,
}

/// Why a record or schema cannot be worked on. Every variant is the record's fault (or its
/// schema's): retrying cannot help. Reasons never quote record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The value is not in Confluent's wire format (too short, magic byte not 0).
    Frame(String),
    /// The schema cannot be used: it does not parse, uses what is not supported, or
    /// selects a field that is neither string nor bytes (nor an array or map of them), or
    /// whose schema a ciphertext would not satisfy.
    Schema(String),
    /// The record does not decode under its schema (truncated, trailing bytes, a bad
    /// varint, an out-of-range union index, invalid UTF-8 in a string, too deep).
    Decode(String),
    /// A replacement does not fit its field (not UTF-8 for a string field), or the count
    /// of replacements is not the count of fields.
    Replace(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Frame(reason) => write!(f, "not in Confluent's wire format: {reason}"),
            Error::Schema(reason) => write!(f, "schema cannot be used: {reason}"),
            Error::Decode(reason) => write!(f, "does not decode under its schema: {reason}"),
            Error::Replace(reason) => write!(f, "cannot write the field back: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// A parsed schema, ready to walk records; parse once per schema id and keep it.
#[derive(Debug)]
pub struct Schema {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Avro(avro::Schema),
    Json(json_schema::Schema),
    Protobuf(protobuf::Schema),
}

/// The fields of one record, and how to write the record again.
#[derive(Debug)]
pub struct Located {
    fields: Vec<Field>,
    plan: Plan,
}

#[derive(Debug)]
enum Plan {
    Avro(avro::Plan),
    Json(json_schema::Plan),
    Protobuf(protobuf::Plan),
}

impl Schema {
    /// Parses a schema and works out which of its fields `selection` picks.
    pub fn parse(text: &SchemaText, selection: &Selection) -> Result<Schema, Error> {
        let inner = match text.schema_type {
            SchemaType::Avro => Inner::Avro(avro::Schema::parse(text, selection)?),
            SchemaType::Json => Inner::Json(json_schema::Schema::parse(text, selection)?),
            SchemaType::Protobuf => Inner::Protobuf(protobuf::Schema::parse(text, selection)?),
        };
        Ok(Schema { inner })
    }

    pub fn schema_type(&self) -> SchemaType {
        match self.inner {
            Inner::Avro(_) => SchemaType::Avro,
            Inner::Json(_) => SchemaType::Json,
            Inner::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// Finds the selected fields of `body`: the record after the wire format's header,
    /// and for Protobuf after the message indexes too, which `message` gives
    /// ([`wire::message_indexes`]; ignored for Avro and JSON Schema).
    pub fn locate(&self, body: &[u8], message: &[i64]) -> Result<Located, Error> {
        let (fields, plan) = match &self.inner {
            Inner::Avro(schema) => {
                let (fields, plan) = schema.locate(body)?;
                (fields, Plan::Avro(plan))
            }
            Inner::Json(schema) => {
                let (fields, plan) = schema.locate(body)?;
                (fields, Plan::Json(plan))
            }
            Inner::Protobuf(schema) => {
                let (fields, plan) = schema.locate(body, message)?;
                (fields, Plan::Protobuf(plan))
            }
        };
        Ok(Located { fields, plan })
    }
}

impl Located {
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `body` again, each field's content replaced by the one at its index in `contents`
    /// (as many as there are fields), every other byte as it was.
    pub fn replace(&self, body: &[u8], contents: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        if contents.len() != self.fields.len() {
            return Err(Error::Replace(format!(
                "{} replacements for {} fields",
                contents.len(),
                self.fields.len()
            )));
        }
        for (field, content) in self.fields.iter().zip(contents) {
            if field.field_type == FieldType::String && std::str::from_utf8(content).is_err() {
                return Err(Error::Replace(
                    "a string field's new content is not UTF-8".into(),
                ));
            }
        }
        match &self.plan {
            Plan::Avro(plan) => plan.apply(body, contents),
            Plan::Json(plan) => plan.apply(body, contents),
            Plan::Protobuf(plan) => plan.apply(body, contents),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(schema_type: SchemaType, text: &str, selection: &Selection) -> Result<Schema, Error> {
        let text = SchemaText {
            schema_type,
            text: text.to_string(),
            references: Vec::new(),
        };
        Schema::parse(&text, selection)
    }

    fn selection(tags: &[&str], paths: &[&str]) -> Selection {
        Selection::new(
            tags.iter().map(|t| t.to_string()).collect(),
            paths.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
        )
    }

    const AVRO: &str = r#"{"type": "record", "name": "Customer", "fields": [
        {"name": "name", "type": "string", "confluent:tags": ["PII"]},
        {"name": "nick", "type": ["null", "string"], "confluent:tags": ["PII"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "confluent:tags": ["PII"]},
        {"name": "attrs", "type": {"type": "map", "values": "string"}, "confluent:tags": ["PII"]},
        {"name": "age", "type": "int"}]}"#;
    const JSON: &str = r#"{"type": "object", "properties": {
        "name": {"type": "string", "confluent:tags": ["PII"]},
        "nick": {"type": ["string", "null"], "confluent:tags": ["PII"]},
        "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
        "attrs": {"type": "object", "additionalProperties": {"type": "string"},
                  "confluent:tags": ["PII"]},
        "age": {"type": "integer"}}}"#;
    const PROTO: &str = r#"syntax = "proto3";
        message Customer {
          string name = 1 [(confluent.field_meta).tags = "PII"];
          optional string nick = 2 [(confluent.field_meta).tags = "PII"];
          repeated string tags = 3 [(confluent.field_meta).tags = "PII"];
          map<string, string> attrs = 4 [(confluent.field_meta).tags = "PII"];
          int32 age = 5;
        }"#;

    /// The same customer in each format: Ann, Nn, [a, b], {k: v}, 42.
    fn records() -> [(SchemaType, &'static str, Vec<u8>); 3] {
        [
            (
                SchemaType::Avro,
                AVRO,
                b"\x06Ann\x02\x04Nn\x04\x02a\x02b\x00\x02\x02k\x02v\x00\x54".to_vec(),
            ),
            (
                SchemaType::Json,
                JSON,
                br#"{"name": "Ann", "nick": "Nn", "tags": ["a", "b"], "attrs": {"k": "v"}, "age": 42}"#
                    .to_vec(),
            ),
            (
                SchemaType::Protobuf,
                PROTO,
                b"\x0a\x03Ann\x12\x02Nn\x1a\x01a\x1a\x01b\x22\x06\x0a\x01k\x12\x01v\x28\x2a"
                    .to_vec(),
            ),
        ]
    }

    #[test]
    fn the_three_walkers_select_the_same_fields() {
        let expected: Vec<(String, Vec<u8>)> = [
            ("/name", "Ann"),
            ("/nick", "Nn"),
            ("/tags/0", "a"),
            ("/tags/1", "b"),
            ("/attrs/k", "v"),
        ]
        .iter()
        .map(|(path, content)| (path.to_string(), content.as_bytes().to_vec()))
        .collect();
        let selections = [
            selection(&["PII"], &[]),
            selection(&[], &["/name", "/nick", "/tags", "/attrs"]),
            selection(&[], &["/name", "/nick", "/tags/*", "/attrs/*"]),
        ];
        for (schema_type, text, body) in records() {
            for selected in &selections {
                let schema = schema(schema_type, text, selected).unwrap();
                let located = schema.locate(&body, &[]).unwrap();
                let found: Vec<(String, Vec<u8>)> = located
                    .fields()
                    .iter()
                    .map(|f| (f.path.clone(), f.content.clone()))
                    .collect();
                assert_eq!(found, expected, "{schema_type:?} {selected:?}");
                let contents: Vec<Vec<u8>> = (0..found.len())
                    .map(|i| format!("vault:v1:{i}").into_bytes())
                    .collect();
                let out = located.replace(&body, &contents).unwrap();
                let again = schema.locate(&out, &[]).unwrap();
                let again: Vec<Vec<u8>> =
                    again.fields().iter().map(|f| f.content.clone()).collect();
                assert_eq!(again, contents, "{schema_type:?}");
            }
        }
    }

    #[test]
    fn the_three_walkers_refuse_the_same_fields() {
        let field = |schema_type: SchemaType, kind: &str| -> String {
            match (schema_type, kind) {
                (SchemaType::Avro, "record") => r#"{"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}"#.into(),
                (SchemaType::Avro, "ints") => r#"{"type": "array", "items": "int"}"#.into(),
                (SchemaType::Avro, "records") => r#"{"type": "map", "values": {"type": "record", "name": "In", "fields": [{"name": "s", "type": "string"}]}}"#.into(),
                (SchemaType::Json, "record") => r#"{"type": "object", "properties": {"s": {"type": "string"}}}"#.into(),
                (SchemaType::Json, "ints") => r#"{"type": "array", "items": {"type": "integer"}}"#.into(),
                (SchemaType::Json, "records") => r#"{"type": "object", "additionalProperties": {"type": "object", "properties": {"s": {"type": "string"}}}}"#.into(),
                (SchemaType::Protobuf, "record") => "In".into(),
                (SchemaType::Protobuf, "ints") => "repeated int32".into(),
                (SchemaType::Protobuf, "records") => "map<string, In>".into(),
                _ => unreachable!(),
            }
        };
        for kind in ["record", "ints", "records"] {
            for schema_type in [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf] {
                let ty = field(schema_type, kind);
                let text = match schema_type {
                    SchemaType::Avro => format!(
                        r#"{{"type": "record", "name": "R", "fields": [{{"name": "x", "type": {ty}, "confluent:tags": ["PII"]}}]}}"#
                    ),
                    SchemaType::Json => format!(
                        r#"{{"type": "object", "properties": {{"x": {{"confluent:tags": ["PII"], "allOf": [{ty}]}}}}}}"#
                    ),
                    SchemaType::Protobuf => format!(
                        r#"syntax = "proto3";
                        message R {{ {ty} x = 1 [(confluent.field_meta).tags = "PII"]; }}
                        message In {{ string s = 1; }}"#
                    ),
                };
                for selected in [selection(&["PII"], &[]), selection(&[], &["/x"])] {
                    let result = schema(schema_type, &text, &selected);
                    assert!(
                        matches!(result, Err(Error::Schema(_))),
                        "{schema_type:?} {kind}: {result:?}"
                    );
                }
            }
        }
    }
}
