//! docs/schema-fields-test-vectors.json, written by docs/gen-schema-fields-test-vectors.py
//! with fastavro, Python's protobuf and `json` (no code of this crate): the walkers must
//! find the fields the generator selected, in the order it encoded them, and write the
//! records it wrote, byte for byte, both ways.

use kafka_transit_envelope_format::record::{binding, Flags};
use kafka_transit_schema_fields::{
    wire, Error, Located, Pattern, Reference, Schema, SchemaText, SchemaType, Selection,
};
use serde_json::Value;

const STAND_IN_PREFIX: &str = "vault:v1:";

fn document() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/schema-fields-test-vectors.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `{key}` is not a string", case["name"]))
}

fn list<'a>(case: &'a Value, key: &str) -> &'a [Value] {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("{}: `{key}` is not an array", case["name"]))
}

fn hex(digits: &str) -> Vec<u8> {
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// The standard base64 alphabet with padding, as the stand-in ciphertexts use it.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(bits >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn schema_text(case: &Value) -> SchemaText {
    SchemaText {
        schema_type: match text(case, "schema_type") {
            "AVRO" => SchemaType::Avro,
            "PROTOBUF" => SchemaType::Protobuf,
            "JSON" => SchemaType::Json,
            other => panic!("{}: schema_type {other}", case["name"]),
        },
        text: text(case, "schema").to_string(),
        references: list(case, "references")
            .iter()
            .map(|r| Reference {
                name: text(r, "name").to_string(),
                text: text(r, "schema").to_string(),
            })
            .collect(),
    }
}

fn selection(case: &Value) -> Selection {
    let strings = |key| list(case, key).iter().map(|v| v.as_str().unwrap());
    Selection::new(
        strings("tags").map(str::to_string).collect(),
        strings("fields")
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
    )
}

/// Where a record was refused, when it was.
#[derive(Debug)]
enum Refused {
    /// The framing: the header, or the message indexes (reading them, or finding the
    /// message they name).
    Wire(Error),
    Schema(Error),
    /// The body under its schema.
    Body(Error),
}

/// A record opened as every reader does: unframed, its schema parsed, its message
/// indexes read (Protobuf), its fields located. The schema id, the header and message
/// indexes as they came, the body, and the located fields.
struct Opened {
    schema_id: u32,
    prefix: Vec<u8>,
    body: Vec<u8>,
    located: Located,
}

fn open(case: &Value, value: &[u8]) -> Result<Opened, Refused> {
    let (schema_id, framed) = wire::unframe(value).map_err(Refused::Wire)?;
    let schema = Schema::parse(&schema_text(case), &selection(case)).map_err(Refused::Schema)?;
    let (message, body) = match schema.schema_type() {
        SchemaType::Protobuf => wire::message_indexes(framed).map_err(Refused::Wire)?,
        _ => (Vec::new(), framed),
    };
    let located = schema.locate(body, &message).map_err(|e| match e {
        Error::Decode(ref reason) if reason.contains("message indexes") => Refused::Wire(e),
        e => Refused::Body(e),
    })?;
    Ok(Opened {
        schema_id,
        prefix: value[..value.len() - body.len()].to_vec(),
        body: body.to_vec(),
        located,
    })
}

fn joined(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    [prefix, body].concat()
}

fn fields(located: &Located) -> Vec<(String, Vec<u8>)> {
    located
        .fields()
        .iter()
        .map(|f| (f.path.clone(), f.content.clone()))
        .collect()
}

#[test]
fn vectors_locate_protect_and_open_byte_for_byte() {
    let document = document();
    let vectors = list(&document, "vectors");
    assert!(!vectors.is_empty());
    for case in vectors {
        let name = text(case, "name");
        let value = hex(text(case, "value_hex"));
        let protected = hex(text(case, "protected_hex"));
        let expected: Vec<(String, Vec<u8>)> = list(case, "located")
            .iter()
            .map(|l| (text(l, "path").to_string(), hex(text(l, "content_hex"))))
            .collect();
        assert!(!expected.is_empty(), "{name}: locates nothing");

        let plain = open(case, &value).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            u64::from(plain.schema_id),
            case["schema_id"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(fields(&plain.located), expected, "{name}: located fields");

        let stand_ins: Vec<Vec<u8>> = expected
            .iter()
            .map(|(_, content)| format!("{STAND_IN_PREFIX}{}", base64(content)).into_bytes())
            .collect();
        let written = plain
            .located
            .replace(&plain.body, &stand_ins)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            joined(&plain.prefix, &written),
            protected,
            "{name}: the protected record"
        );

        let sealed = open(case, &protected).unwrap_or_else(|e| panic!("{name} protected: {e:?}"));
        let found = fields(&sealed.located);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        let wanted: Vec<&str> = expected.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, wanted, "{name}: paths in the protected record");
        let contents: Vec<Vec<u8>> = found.into_iter().map(|(_, c)| c).collect();
        assert_eq!(
            contents, stand_ins,
            "{name}: stand-ins in the protected record"
        );

        let originals: Vec<Vec<u8>> = expected.iter().map(|(_, c)| c.clone()).collect();
        let reopened = sealed
            .located
            .replace(&sealed.body, &originals)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            joined(&sealed.prefix, &reopened),
            value,
            "{name}: the record opened again"
        );

        let bindings = list(case, "bindings");
        assert_eq!(
            bindings.len(),
            expected.len(),
            "{name}: one binding a field"
        );
        for (entry, (path, _)) in bindings.iter().zip(&expected) {
            assert_eq!(text(entry, "path"), path, "{name}");
            let flags = u8::try_from(entry["flags"].as_u64().unwrap()).unwrap();
            let flags = Flags::parse(flags).unwrap_or_else(|b| panic!("{name}: flags {b:#x}"));
            let key = entry["record_key_hex"].as_str().map(hex);
            let made = binding(flags, text(entry, "stream"), key.as_deref(), Some(path));
            assert_eq!(
                made,
                hex(text(entry, "binding_hex")),
                "{name}: binding of {path}"
            );
        }
    }
}

#[test]
fn refused_cases_are_refused() {
    let document = document();
    let refused = list(&document, "refused");
    assert!(!refused.is_empty());
    for case in refused {
        let name = text(case, "name");
        let value = hex(text(case, "value_hex"));
        let outcome = open(case, &value);
        match (text(case, "side"), text(case, "expect"), outcome) {
            ("protect", "wire", Err(Refused::Wire(Error::Frame(_) | Error::Decode(_)))) => {}
            ("protect", "schema", Err(Refused::Schema(Error::Schema(_)))) => {}
            ("protect", "decode", Err(Refused::Body(Error::Decode(_)))) => {}
            // Nothing to refuse while walking: a reader refuses it when a selected field,
            // which must hold a ciphertext, does not.
            ("open", "not a ciphertext", Ok(opened)) => {
                let contents = fields(&opened.located);
                assert!(!contents.is_empty(), "{name}: locates nothing");
                let in_clear = contents
                    .iter()
                    .filter(|(_, c)| !c.starts_with(b"vault:v"))
                    .count();
                assert_eq!(in_clear, 1, "{name}: {contents:?}");
            }
            (side, expect, outcome) => {
                let outcome = outcome.map(|o| fields(&o.located));
                panic!("{name}: expected {side}/{expect}, got {outcome:?}")
            }
        }
    }
}

#[test]
fn base64_is_the_standard_alphabet() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
}
