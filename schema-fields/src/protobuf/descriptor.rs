//! The schema as a base64 `google.protobuf.FileDescriptorProto`: what the Python
//! serializer registers, and what some registries (Apicurio) hand back.
//!
//! Decoded by hand, only the parts walking records needs: a generated decoder (prost)
//! drops unknown fields, and Confluent's tags are one (`FieldOptions` extension 1088).

use super::codec::{Fields, Malformed, Value, MAX_DEPTH};
use super::model::{Hint, RawField, RawFile, RawMessage, RawType, Scalar};

/// `extend google.protobuf.FieldOptions { Meta field_meta = 1088; }` and
/// `Meta.tags = 3`, as in `confluent/meta.proto`.
const FIELD_META: u32 = 1088;
const META_TAGS: u32 = 3;

/// Whether `text` can only be base64: `.proto` text always has `;`, `{` or `"`.
pub(super) fn looks_like_base64(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b) || b.is_ascii_whitespace())
}

/// Standard or URL-safe alphabet, padding optional, whitespace ignored.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = false;
    for b in text.bytes() {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b if b.is_ascii_whitespace() => continue,
            _ => return None,
        };
        if padding {
            return None;
        }
        // Fewer than 14 bits are ever pending: keep only those.
        acc = ((acc << 6) | u32::from(value)) & 0x3fff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits are the padding of the last group; a lone sixth cannot be.
    (bits < 6).then_some(out)
}

fn text(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn malformed(e: Malformed) -> String {
    format!("not a FileDescriptorProto: {}", e.0)
}

pub(super) fn parse(bytes: &[u8]) -> Result<RawFile, String> {
    let mut file = RawFile::default();
    let mut fields = Fields::new(bytes, 0);
    while let Some((number, value)) = fields.next_field().map_err(malformed)? {
        match (number, value) {
            (2, Value::Bytes(b)) => file.package = text(b, "the package")?,
            (4, Value::Bytes(b)) => file.messages.push(message(b, 1)?),
            (5, Value::Bytes(b)) => file.enums.push(enum_name(b)?),
            (2 | 4 | 5, _) => return Err(malformed(Malformed("wrong wire type"))),
            _ => {}
        }
    }
    Ok(file)
}

fn enum_name(bytes: &[u8]) -> Result<String, String> {
    let mut name = String::new();
    let mut fields = Fields::new(bytes, 0);
    while let Some((number, value)) = fields.next_field().map_err(malformed)? {
        if let (1, Value::Bytes(b)) = (number, value) {
            name = text(b, "an enum name")?;
        }
    }
    Ok(name)
}

fn message(bytes: &[u8], depth: usize) -> Result<RawMessage, String> {
    if depth > MAX_DEPTH {
        return Err("messages nested deeper than 64".into());
    }
    let mut message = RawMessage {
        indexed: true,
        ..RawMessage::default()
    };
    let mut fields = Fields::new(bytes, 0);
    while let Some((number, value)) = fields.next_field().map_err(malformed)? {
        match (number, value) {
            (1, Value::Bytes(b)) => message.name = text(b, "a message name")?,
            (2, Value::Bytes(b)) => message.fields.push(field(b)?),
            (3, Value::Bytes(b)) => message.nested.push(self::message(b, depth + 1)?),
            (4, Value::Bytes(b)) => message.enums.push(enum_name(b)?),
            (7, Value::Bytes(b)) => message.map_entry |= map_entry(b)?,
            (1..=4 | 7, _) => return Err(malformed(Malformed("wrong wire type"))),
            _ => {}
        }
    }
    if message.name.is_empty() {
        return Err("a message has no name".into());
    }
    Ok(message)
}

/// `MessageOptions.map_entry = 7`.
fn map_entry(bytes: &[u8]) -> Result<bool, String> {
    let mut map_entry = false;
    let mut fields = Fields::new(bytes, 0);
    while let Some((number, value)) = fields.next_field().map_err(malformed)? {
        if let (7, Value::Varint(v)) = (number, value) {
            map_entry = v != 0;
        }
    }
    Ok(map_entry)
}

/// `FieldDescriptorProto.Type`'s numbers.
fn scalar(type_number: u64) -> Option<Scalar> {
    Some(match type_number {
        1 => Scalar::Double,
        2 => Scalar::Float,
        3 => Scalar::Int64,
        4 => Scalar::Uint64,
        5 => Scalar::Int32,
        6 => Scalar::Fixed64,
        7 => Scalar::Fixed32,
        8 => Scalar::Bool,
        9 => Scalar::String,
        12 => Scalar::Bytes,
        13 => Scalar::Uint32,
        15 => Scalar::Sfixed32,
        16 => Scalar::Sfixed64,
        17 => Scalar::Sint32,
        18 => Scalar::Sint64,
        _ => return None,
    })
}

fn field(bytes: &[u8]) -> Result<RawField, String> {
    let mut name = String::new();
    let mut number = 0u64;
    let mut repeated = false;
    let mut type_number = None;
    let mut type_name = None;
    let mut tags = Vec::new();
    let mut fields = Fields::new(bytes, 0);
    while let Some((n, value)) = fields.next_field().map_err(malformed)? {
        match (n, value) {
            (1, Value::Bytes(b)) => name = text(b, "a field name")?,
            (3, Value::Varint(v)) => number = v,
            // LABEL_REPEATED
            (4, Value::Varint(v)) => repeated = v == 3,
            (5, Value::Varint(v)) => type_number = Some(v),
            (6, Value::Bytes(b)) => type_name = Some(text(b, "a type name")?),
            (8, Value::Bytes(b)) => field_tags(b, &mut tags)?,
            (1 | 3..=6 | 8, _) => return Err(malformed(Malformed("wrong wire type"))),
            _ => {}
        }
    }
    if name.is_empty() {
        return Err("a field has no name".into());
    }
    let number = u32::try_from(number)
        .ok()
        .filter(|n| (1..(1 << 29)).contains(n))
        .ok_or_else(|| format!("field `{name}` has no valid number"))?;
    let ty = match (type_number.and_then(scalar), type_number, type_name) {
        (Some(scalar), _, _) => RawType::Scalar(scalar),
        // TYPE_GROUP, TYPE_MESSAGE, TYPE_ENUM; or a type name left to resolve
        (None, Some(10 | 11), Some(name)) => RawType::Named {
            name,
            hint: Hint::Message,
        },
        (None, Some(14), Some(name)) => RawType::Named {
            name,
            hint: Hint::Enum,
        },
        (None, None, Some(name)) => RawType::Named {
            name,
            hint: Hint::Unknown,
        },
        _ => return Err(format!("field `{name}` has no valid type")),
    };
    Ok(RawField {
        name,
        number,
        repeated,
        ty,
        tags,
    })
}

/// `FieldOptions`: Confluent's `field_meta` (1088) is an extension, so an unknown field
/// to every generated decoder; its `tags` are what selects.
fn field_tags(bytes: &[u8], tags: &mut Vec<String>) -> Result<(), String> {
    let mut options = Fields::new(bytes, 0);
    while let Some((number, value)) = options.next_field().map_err(malformed)? {
        let (FIELD_META, Value::Bytes(meta)) = (number, value) else {
            continue;
        };
        let mut meta = Fields::new(meta, 0);
        while let Some((number, value)) = meta.next_field().map_err(malformed)? {
            if let (META_TAGS, Value::Bytes(tag)) = (number, value) {
                tags.push(text(tag, "a tag")?);
            }
        }
    }
    Ok(())
}
