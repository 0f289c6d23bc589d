//! Decoding `batch_input` the way Vault's transit engine does, with its error texts.
//!
//! Encrypt and decrypt use a hand-written decoder (`decodeBatchRequestItems`);
//! rewrap and HMAC use `mapstructure.Decode`. They accept slightly different inputs
//! (mapstructure takes a JSON number as text, the fast decoder does not) and word
//! their errors differently. Any error here fails the whole request with a 500.

use serde_json::{Map, Value};

use crate::fields::{go_kind, go_type};

/// One item of an encrypt, decrypt or rewrap batch (or the single request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub plaintext: String,
    pub ciphertext: String,
    pub context: String,
    pub associated_data: String,
    pub key_version: i64,
    pub reference: String,
}

/// Which field the fast decoder insists on (by key presence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    Plaintext,
    Ciphertext,
}

/// `decodeBatchRequestItems` (encrypt and decrypt).
pub fn decode_fast(raw: &Value, require: Require) -> Result<Vec<Item>, String> {
    let Value::Array(list) = raw else {
        return Err(format!(
            "source data must be an array or slice, got {}",
            go_type(raw)
        ));
    };
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let Value::Object(map) = entry else {
            return Err(format!("[{i}] expected a map, got '{}'", go_type(entry)));
        };
        let mut item = Item::default();
        let mut string = |name: &str, required: bool, null_ok: bool| -> String {
            match map.get(name) {
                None if required => {
                    let what = if name == "plaintext" {
                        "plaintext to encrypt"
                    } else {
                        "ciphertext to decrypt"
                    };
                    errors.push(format!("'[{i}].{name}' missing {what}"));
                    String::new()
                }
                None => String::new(),
                Some(Value::Null) if null_ok => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    errors.push(format!(
                        "'[{i}].{name}' expected type 'string', got unconvertible type '{}'",
                        go_type(other)
                    ));
                    String::new()
                }
            }
        };
        item.context = string("context", false, true);
        item.ciphertext = string("ciphertext", require == Require::Ciphertext, true);
        // The one field the Go code does not let be null.
        item.plaintext = string("plaintext", require == Require::Plaintext, false);
        match map.get("key_version") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => item.key_version = v,
                None => errors.push(format!(
                    "error decoding json.Number into [{i}].key_version: strconv.ParseInt: parsing \"{n}\": invalid syntax"
                )),
            },
            Some(other) => errors.push(format!(
                "'[{i}].key_version' expected type 'int', got unconvertible type '{}'",
                go_type(other)
            )),
        }
        let mut string = |name: &str| match map.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                errors.push(format!(
                    "'[{i}].{name}' expected type 'string', got unconvertible type '{}'",
                    go_type(other)
                ));
                String::new()
            }
        };
        item.associated_data = string("associated_data");
        item.reference = string("reference");
        items.push(item);
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors.join("\n"))
    }
}

fn mapstructure_errors(errors: Vec<String>) -> String {
    format!(
        "decoding failed due to the following error(s):\n\n{}",
        errors.join("\n")
    )
}

/// A string field as mapstructure decodes it: text and numbers are accepted.
fn mapstructure_string(v: &Value, at: &str, errors: &mut Vec<String>) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            errors.push(format!(
                "'{at}' expected type 'string', got unconvertible type '{}'",
                go_type(other)
            ));
            String::new()
        }
    }
}

/// A field of a struct-typed item, matched by name like mapstructure (exact, then
/// case-insensitive).
fn struct_field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The list itself, or mapstructure's error for anything else.
fn mapstructure_list(raw: &Value) -> Result<&Vec<Value>, String> {
    match raw {
        Value::Array(list) => Ok(list),
        other => Err(format!(
            "'' source data must be an array or slice, got {}",
            go_kind(other)
        )),
    }
}

/// `mapstructure.Decode` into `[]BatchRequestItem` (rewrap).
pub fn decode_mapstructure(raw: &Value) -> Result<Vec<Item>, String> {
    let list = mapstructure_list(raw)?;
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let mut item = Item::default();
        match entry {
            Value::Null => {}
            Value::Object(map) => {
                let mut string = |name: &str| {
                    struct_field(map, name)
                        .map(|v| mapstructure_string(v, &format!("[{i}].{name}"), &mut errors))
                        .unwrap_or_default()
                };
                item.context = string("context");
                item.plaintext = string("plaintext");
                item.ciphertext = string("ciphertext");
                match struct_field(map, "key_version") {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(v) => item.key_version = v,
                        None => errors.push(format!(
                            "'[{i}].key_version' cannot parse value as 'int': strconv.ParseInt: parsing \"{n}\": invalid syntax"
                        )),
                    },
                    Some(other) => errors.push(format!(
                        "'[{i}].key_version' expected type 'int', got unconvertible type '{}'",
                        go_type(other)
                    )),
                }
                let mut string = |name: &str| {
                    struct_field(map, name)
                        .map(|v| mapstructure_string(v, &format!("[{i}].{name}"), &mut errors))
                        .unwrap_or_default()
                };
                item.associated_data = string("associated_data");
                item.reference = string("reference");
            }
            other => errors.push(format!(
                "'[{i}]' expected a map or struct, got \"{}\"",
                go_kind(other)
            )),
        }
        items.push(item);
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(mapstructure_errors(errors))
    }
}

/// `mapstructure.Decode` into `[]map[string]string` (HMAC): every value is text.
/// A null value is kept as an empty string (the key counts as present).
pub fn decode_string_maps(raw: &Value) -> Result<Vec<Map<String, Value>>, String> {
    let list = mapstructure_list(raw)?;
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let mut item = Map::new();
        match entry {
            Value::Null => {}
            Value::Object(map) => {
                for (k, v) in map {
                    let text = mapstructure_string(v, &format!("[{i}][{k}]"), &mut errors);
                    item.insert(k.clone(), Value::String(text));
                }
            }
            other => errors.push(format!(
                "'[{i}]' expected type 'transit.batchRequestHMACItem', got unconvertible type '{}'",
                go_type(other)
            )),
        }
        items.push(item);
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(mapstructure_errors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fast_decoder_errors_like_vault() {
        let err = decode_fast(
            &json!([{ "plaintext": "", "context": 1, "associated_data": 2 }, { "reference": true }]),
            Require::Plaintext,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "'[0].context' expected type 'string', got unconvertible type 'json.Number'\n\
             '[0].associated_data' expected type 'string', got unconvertible type 'json.Number'\n\
             '[1].plaintext' missing plaintext to encrypt\n\
             '[1].reference' expected type 'string', got unconvertible type 'bool'"
        );
        assert_eq!(
            decode_fast(&json!([{}, "x"]), Require::Ciphertext).unwrap_err(),
            "[1] expected a map, got 'string'"
        );
        assert_eq!(
            decode_fast(&json!({}), Require::Ciphertext).unwrap_err(),
            "source data must be an array or slice, got map[string]interface {}"
        );
        let items = decode_fast(
            &json!([{ "ciphertext": null, "reference": "r", "key_version": 2 }]),
            Require::Ciphertext,
        )
        .unwrap();
        assert_eq!(items[0].reference, "r");
        assert_eq!(items[0].key_version, 2);
    }

    #[test]
    fn mapstructure_decoder_accepts_numbers_as_text() {
        let items =
            decode_mapstructure(&json!([{ "ciphertext": "c", "reference": 7 }, null])).unwrap();
        assert_eq!(items[0].reference, "7");
        assert_eq!(items[1], Item::default());
        assert_eq!(
            decode_mapstructure(&json!([{ "key_version": "1" }, true])).unwrap_err(),
            "decoding failed due to the following error(s):\n\n\
             '[0].key_version' expected type 'int', got unconvertible type 'string'\n\
             '[1]' expected a map or struct, got \"bool\""
        );
        assert_eq!(
            decode_string_maps(&json!([5])).unwrap_err(),
            "decoding failed due to the following error(s):\n\n\
             '[0]' expected type 'transit.batchRequestHMACItem', got unconvertible type 'json.Number'"
        );
        assert_eq!(
            decode_string_maps(&json!([{ "reference": true }])).unwrap_err(),
            "decoding failed due to the following error(s):\n\n\
             '[0][reference]' expected type 'string', got unconvertible type 'bool'"
        );
    }
}
