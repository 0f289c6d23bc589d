//! Field-level protection of JSON records: selecting fields by JSON Pointer, and the
//! pure halves of encrypting, decrypting and rewrapping them (the Vault call sits in
//! between, in the policies).
//!
//! Pointers are RFC 6901 (`/card/number`; `~0` for `~` and `~1` for `/` inside a name;
//! `""` for the whole document) plus one extension: the token `*` stands for every
//! element of an array or every member of an object (`/orders/*/iban`). A member
//! literally named `*` is therefore selected only along with its siblings.
//!
//! **Only the selected values change.** A record's value is scanned, not parsed into
//! numbers and re-serialised: every byte outside the selected values leaves as it came
//! (numbers of any size or precision, `-0`, escapes such as `"\u00e9"`, member order,
//! whitespace). Encryption replaces each selected value by the JSON string of its
//! ciphertext; the plaintext is the value's own bytes without insignificant whitespace,
//! so numbers inside a selected value keep their digits too. Decryption puts the
//! decrypted text back in place of the ciphertext string, after checking that it is
//! exactly one JSON value (anything else is invalid input); it also reads what earlier
//! versions wrote (compact `serde_json` text). Rewrapping swaps ciphertext strings.
//!
//! **Selection never leaves a field in clear.**
//! - A member name is compared decoded: `{"\u0073sn": ...}` is selected by `/ssn`, as
//!   every JSON reader downstream would see `ssn`.
//! - Every member whose name matches is selected, duplicates included
//!   (`{"ssn": "1", "ssn": "2"}` has both encrypted), whichever one a reader keeps.
//! - A value that cannot hold the selected field is invalid input, whatever
//!   `on_missing_field` says: the record (or any value on a pointer's way) is a string,
//!   number or boolean where the pointer goes on, or an array where the pointer's next
//!   token is a name that is not an index (`/ssn` on `["333-33-3333"]`). Only `null`
//!   on the way, an absent member or an index past the end make a field *missing*,
//!   which `on_missing_field` decides (`"pass"` by default).
//!
//! **Strict JSON.** A value is one RFC 8259 JSON value: valid UTF-8, no byte order
//! mark, no trailing text, no lone surrogate escapes. One that is not is invalid input,
//! or forwarded unchanged with `on_invalid_json = "pass"`. Arrays and objects nested
//! deeper than 128 levels are invalid input whatever `on_invalid_json` says: such a
//! value is JSON that may hold the field, so it is never passed on unexamined.
//!
//! Failure reasons quote the configured pointer (`a field selected by "/orders/*/iban"`),
//! never a member name, a value or a header of the record.

mod json;
mod lookup;
mod pointer;
mod select;

pub(crate) use lookup::text_at;

use std::sync::Arc;

use serde::Deserialize;

pub use select::Fields;

use crate::transit::{DecryptItem, EncryptItem};
use crate::{
    parse_config, with_allowed_keys, ContextSource, Failure, KeyName, Prepared, ResolvedKey,
    SourceRecord, TransitKeyConfig,
};

/// Whether to fail a record that is not as configured, or pass it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Fail,
    Pass,
}

/// The configuration of `encrypt-fields`, `decrypt-fields` and `rewrap-fields`.
#[derive(Debug, Clone)]
pub struct FieldsConfig {
    pub transit: TransitKeyConfig,
    pub fields: Fields,
    /// A value that is not JSON: fail it (default) or pass it on unchanged.
    pub on_invalid_json: Action,
    /// A configured pointer that selects nothing: pass (default) or fail.
    pub on_missing_field: Action,
}

/// A record's value, where its selected fields are, and what Vault needs for them:
/// handed from a policy's preparation to its finish.
#[derive(Debug)]
pub struct Selected {
    /// The record's value, taken out of the record.
    value: Vec<u8>,
    /// The selected values, in document order, none inside another.
    fields: Vec<Field>,
    /// The record's transit key; `None` when no field was selected (nothing goes to
    /// Vault, so a record the key template cannot resolve is fine then).
    pub key: Option<ResolvedKey>,
    pub context: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Field {
    start: usize,
    end: usize,
    /// The configured pointer that selected it, for failure reasons.
    pointer: Arc<str>,
    /// The pointer that locates it in this document (`/orders/2/iban`): what a format 3
    /// ciphertext of it is bound to. Record data: never in a failure reason.
    located: String,
    /// The decoded ciphertext, when the record was prepared for decryption or rewrap.
    ciphertext: Option<String>,
}

impl Selected {
    /// How many fields were selected: one Vault item each.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The pointer locating each selected field in the document (RFC 6901, member
    /// names decoded: `/orders/2/iban`), in item order: the field part of the binding
    /// data of format 3 field ciphertexts.
    pub fn located_pointers(&self) -> Vec<&str> {
        self.fields
            .iter()
            .map(|field| field.located.as_str())
            .collect()
    }

    /// The key to name in the record's `kafka-transit.key` header.
    pub fn key_or<'a>(&'a self, config: &'a FieldsConfig) -> &'a str {
        self.key.as_deref().unwrap_or(config.transit.key.as_str())
    }

    /// The key to group the record's Vault items under: its own, or (when it has no
    /// items) the configured text as a fixed key.
    pub fn resolved_key_or(&self, config: &FieldsConfig) -> ResolvedKey {
        self.key
            .clone()
            .unwrap_or_else(|| ResolvedKey::fixed(config.transit.key.as_str()))
    }

    /// What to encrypt: each selected value's own bytes, minified (any JSON type goes,
    /// so decryption restores the type).
    pub fn plaintexts(&self) -> Vec<Vec<u8>> {
        self.fields
            .iter()
            .map(|field| json::minified(&self.value[field.start..field.end]))
            .collect()
    }

    /// The value with each selected field replaced by the JSON string of its new
    /// ciphertext (encryption, rewrap), in order; every other byte as it was.
    pub fn with_ciphertexts(self, ciphertexts: Vec<String>) -> Vec<u8> {
        let grown = ciphertexts.iter().map(|c| c.len() + 2).sum::<usize>();
        let mut out = Vec::with_capacity(self.value.len() + grown);
        let mut copied = 0;
        for (field, ciphertext) in self.fields.iter().zip(&ciphertexts) {
            out.extend_from_slice(&self.value[copied..field.start]);
            json::push_string(&mut out, ciphertext);
            copied = field.end;
        }
        out.extend_from_slice(&self.value[copied..]);
        out
    }

    /// The value with each selected ciphertext string replaced by its decrypted text,
    /// which must be exactly one JSON value; every other byte as it was.
    pub fn with_plaintexts(self, plaintexts: Vec<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        let grown = plaintexts.iter().map(Vec::len).sum::<usize>();
        let mut out = Vec::with_capacity(self.value.len() + grown);
        let mut copied = 0;
        for (field, plaintext) in self.fields.iter().zip(&plaintexts) {
            json::validate(plaintext).map_err(|e| {
                Failure::InvalidInput(format!(
                    "a field selected by \"{}\" decrypted to something that is not one JSON \
                     value ({e})",
                    field.pointer
                ))
            })?;
            out.extend_from_slice(&self.value[copied..field.start]);
            out.extend_from_slice(plaintext);
            copied = field.end;
        }
        out.extend_from_slice(&self.value[copied..]);
        Ok(out)
    }
}

impl FieldsConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            key: KeyName,
            #[serde(default)]
            context: Option<String>,
            #[serde(default)]
            context_from: ContextSource,
            fields: Vec<String>,
            #[serde(default)]
            on_invalid_json: Option<String>,
            #[serde(default)]
            on_missing_field: Option<String>,
            #[serde(default)]
            allowed_keys: Option<Vec<String>>,
        }
        let raw: Raw = parse_config(json)?;
        let transit = TransitKeyConfig {
            key: with_allowed_keys(raw.key, raw.allowed_keys)?,
            context: raw.context,
            context_from: raw.context_from,
        };
        Ok(Self {
            transit: transit.validated()?,
            fields: Fields::parse(&raw.fields)?,
            on_invalid_json: action("on_invalid_json", raw.on_invalid_json, Action::Fail)?,
            on_missing_field: action("on_missing_field", raw.on_missing_field, Action::Pass)?,
        })
    }

    /// What every field policy does first: scan the value, select the fields, find the
    /// key and context, or decide the record's fate without Vault. The value is taken
    /// out of the record when the record goes on (`Prepared::Item`).
    pub fn prepare(&self, record: &mut SourceRecord) -> Prepared<Selected> {
        let Some(value) = record.value.as_deref() else {
            return Prepared::Forward; // a tombstone stays a tombstone
        };
        let doc = match json::parse(value) {
            Ok(doc) => doc,
            Err(e @ json::Error::TooDeep) => {
                return Prepared::Fail(Failure::InvalidInput(format!(
                    "value is JSON too deep to examine: {e}"
                )))
            }
            Err(_) if self.on_invalid_json == Action::Pass => return Prepared::Forward,
            Err(e) => {
                return Prepared::Fail(Failure::InvalidInput(format!("value is not JSON: {e}")))
            }
        };
        let selection = match self.fields.select(&doc) {
            Ok(selection) => selection,
            Err(wrong) => return Prepared::Fail(Failure::InvalidInput(wrong.reason())),
        };
        if let (Some(pointer), Action::Fail) = (selection.missing.first(), self.on_missing_field) {
            return Prepared::Fail(Failure::InvalidInput(format!(
                "nothing in the value matches the field pointer \"{pointer}\" \
                 (policy.config.on_missing_field = \"fail\")"
            )));
        }
        let fields: Vec<Field> = selection
            .values
            .into_iter()
            .map(|(node, pointer, located)| {
                let node_at = &doc.nodes[node];
                Field {
                    start: node_at.start,
                    end: node_at.end,
                    ciphertext: doc.string(node),
                    pointer,
                    located,
                }
            })
            .collect();
        // No field, no Vault: a keyless record is fine then, even with a per-record context
        // or key.
        let (key, context) = if fields.is_empty() {
            (None, None)
        } else {
            match self.transit.key_and_context(record) {
                Ok(resolved) => resolved,
                Err(failure) => return Prepared::Fail(failure),
            }
        };
        drop(doc);
        Prepared::Item(Selected {
            value: record.value.take().unwrap_or_default(),
            fields,
            key,
            context,
        })
    }

    /// [`FieldsConfig::prepare`], then the selected values as items to encrypt: for
    /// [`through_vault_keyed`](crate::through_vault_keyed), with the record's key.
    pub fn plaintext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Selected, Vec<EncryptItem>)> {
        self.prepare(record).and_then(|selected| {
            let items = selected
                .plaintexts()
                .into_iter()
                .map(|plaintext| EncryptItem {
                    plaintext,
                    context: selected.context.clone(),
                })
                .collect();
            Prepared::Item((selected.resolved_key_or(self), selected, items))
        })
    }

    /// [`FieldsConfig::prepare`], then the selected fields' ciphertexts as items to
    /// decrypt or rewrap. A selected field that is not a ciphertext string fails the
    /// record: passing it on would pass on whatever it is.
    pub fn ciphertext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Selected, Vec<DecryptItem>)> {
        self.prepare(record).and_then(|mut selected| {
            let mut items = Vec::with_capacity(selected.fields.len());
            for field in &mut selected.fields {
                match field.ciphertext.take() {
                    Some(ciphertext) if ciphertext.starts_with("vault:v") => {
                        items.push(DecryptItem {
                            ciphertext,
                            context: selected.context.clone(),
                        })
                    }
                    _ => {
                        return Prepared::Fail(Failure::InvalidInput(format!(
                            "a field selected by \"{}\" is not a Vault transit ciphertext \
                             (expected a string vault:v<N>:...)",
                            field.pointer
                        )))
                    }
                }
            }
            Prepared::Item((selected.resolved_key_or(self), selected, items))
        })
    }
}

fn action(field: &str, value: Option<String>, default: Action) -> Result<Action, String> {
    match value.as_deref() {
        None => Ok(default),
        Some("fail") => Ok(Action::Fail),
        Some("pass") => Ok(Action::Pass),
        Some(other) => Err(format!(
            "policy.config.{field}: must be \"fail\" or \"pass\" (got {other:?})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, value: Option<&str>) -> SourceRecord {
        SourceRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    fn config(json: &str) -> FieldsConfig {
        FieldsConfig::parse(json).unwrap()
    }

    #[test]
    fn encrypt_then_decrypt_restores_every_type_and_every_byte_around() {
        let original = r#"{ "name": "Ada", "ssn": "123-45-6789",
            "card": {"number":"4111111111111111","exp": "12/29"},
            "n": 12345678901234567.89, "b": false, "z": null, "o": {"k":[1,"x\u00e9"]}, "a": [1,{"y":2}] }"#;
        let config = config(
            r#"{"key": "k", "fields": ["/ssn", "/card/number", "/n", "/b", "/z", "/o", "/a"]}"#,
        );
        let Prepared::Item((_, selected, items)) =
            config.plaintext_items(&mut record(None, Some(original)))
        else {
            panic!("expected items");
        };
        let plaintexts: Vec<Vec<u8>> = items.into_iter().map(|i| i.plaintext).collect();
        assert_eq!(plaintexts[0], br#""123-45-6789""#);
        assert_eq!(plaintexts[2], b"12345678901234567.89");
        assert_eq!(plaintexts[5], br#"{"k":[1,"x\u00e9"]}"#);

        // A fake Vault: the "ciphertext" carries the plaintext, in the clear.
        let fake = |p: &Vec<u8>| format!("vault:v1:{}", String::from_utf8(p.clone()).unwrap());
        let encrypted = selected.with_ciphertexts(plaintexts.iter().map(fake).collect());
        let text = String::from_utf8(encrypted.clone()).unwrap();
        assert!(
            text.starts_with(r#"{ "name": "Ada", "ssn": "vault:v1:\"123-45-6789\"","#),
            "{text}"
        );
        assert!(text.contains(r#""z": "vault:v1:null""#), "{text}");

        let Prepared::Item((_, selected, items)) =
            config.ciphertext_items(&mut record(None, Some(&text)))
        else {
            panic!("expected items");
        };
        let plaintexts = items
            .iter()
            .map(|i| {
                i.ciphertext
                    .strip_prefix("vault:v1:")
                    .unwrap()
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        let decrypted = String::from_utf8(selected.with_plaintexts(plaintexts).unwrap()).unwrap();
        // Every selected value was minified already, so all comes back byte for byte.
        assert_eq!(decrypted, original);
    }

    #[test]
    fn decrypting_a_field_that_is_not_a_ciphertext_names_its_pointer_not_its_place() {
        let config = config(r#"{"key": "k", "fields": ["/users/*/ssn"]}"#);
        for value in [
            r#"{"users": {"alice@example.com": {"ssn": "123-45-6789"}}}"#,
            r#"{"users": {"alice@example.com": {"ssn": 4111}}}"#,
        ] {
            match config.ciphertext_items(&mut record(None, Some(value))) {
                Prepared::Fail(Failure::InvalidInput(m)) => {
                    assert!(m.contains("\"/users/*/ssn\""), "{m}");
                    assert!(!m.contains("alice") && !m.contains("123") && !m.contains("4111"));
                }
                _ => panic!("{value}: expected invalid input"),
            }
        }
    }

    #[test]
    fn a_decrypted_value_must_be_one_json_value() {
        let config = config(r#"{"key": "k", "fields": ["/ssn"]}"#);
        let prepared =
            || match config.ciphertext_items(&mut record(None, Some(r#"{"ssn":"vault:v1:x"}"#))) {
                Prepared::Item((_, selected, _)) => selected,
                _ => panic!("expected items"),
            };
        for bad in [&b"1 2"[..], b"", b"{\"a\":", b"\"x", b"[1,]"] {
            match prepared().with_plaintexts(vec![bad.to_vec()]) {
                Err(Failure::InvalidInput(m)) => assert!(m.contains("\"/ssn\""), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        let ok = prepared()
            .with_plaintexts(vec![b" [1, 2] ".to_vec()])
            .unwrap();
        assert_eq!(ok, br#"{"ssn": [1, 2] }"#);
    }

    #[test]
    fn config_defaults_and_errors() {
        let config = FieldsConfig::parse(r#"{"key": "customers", "fields": ["/ssn"]}"#).unwrap();
        assert_eq!(config.transit.key.as_str(), "customers");
        assert_eq!(config.on_invalid_json, Action::Fail);
        assert_eq!(config.on_missing_field, Action::Pass);

        let err = |json: &str| FieldsConfig::parse(json).unwrap_err();
        assert!(
            err(r#"{"key": "k", "fields": ["/a"], "on_invalid_json": "skip"}"#)
                .starts_with("policy.config.on_invalid_json: ")
        );
        assert!(
            err(r#"{"key": "k", "fields": ["/a"], "on_missing_field": "x"}"#)
                .starts_with("policy.config.on_missing_field: ")
        );
        assert!(err(r#"{"key": "", "fields": ["/a"]}"#).starts_with("policy.config.key: "));
        assert!(err(r#"{"key": "k", "fields": ["a"]}"#).starts_with("policy.config.fields[0]: "));
        assert!(
            err(r#"{"key": "k", "fields": ["/a"], "extra": 1}"#).contains("unknown field `extra`")
        );
        assert!(err(r#"{"key": "k"}"#).contains("missing field `fields`"));
        assert!(err(
            r#"{"key": "k", "fields": ["/a"], "context": "c", "context_from": "record-key"}"#
        )
        .contains("not both"));
    }

    #[test]
    fn prepare_decides_what_needs_vault() {
        let config = |extra: &str| {
            FieldsConfig::parse(&format!(
                r#"{{"key": "k", "fields": ["/ssn"], "context_from": "record-key"{extra}}}"#
            ))
            .unwrap()
        };
        let strict = config(r#", "on_missing_field": "fail""#);
        let lenient = config(r#", "on_invalid_json": "pass""#);

        assert!(matches!(
            strict.prepare(&mut record(None, None)),
            Prepared::Forward
        ));
        assert!(matches!(
            strict.prepare(&mut record(Some("k"), Some("nope"))),
            Prepared::Fail(Failure::InvalidInput(m)) if m.starts_with("value is not JSON")
        ));
        let mut invalid = record(Some("k"), Some("nope"));
        assert!(matches!(lenient.prepare(&mut invalid), Prepared::Forward));
        assert_eq!(
            invalid.value.as_deref(),
            Some(&b"nope"[..]),
            "left in the record"
        );
        assert!(matches!(
            strict.prepare(&mut record(Some("k"), Some(r#"{"a": 1}"#))),
            Prepared::Fail(Failure::InvalidInput(m)) if m.contains("\"/ssn\"")
        ));
        // Nothing to protect: no Vault call, so no need for a record key either.
        let mut nothing = record(None, Some(r#"{"a": 1}"#));
        match lenient.prepare(&mut nothing) {
            Prepared::Item(s) => {
                assert!(s.is_empty() && s.context.is_none() && s.key.is_none());
                assert_eq!(s.with_ciphertexts(Vec::new()), br#"{"a": 1}"#);
            }
            _ => panic!("expected an item"),
        }
        assert!(matches!(
            lenient.prepare(&mut record(None, Some(r#"{"ssn": 1}"#))),
            Prepared::Fail(Failure::InvalidInput(_))
        ));
        match lenient.prepare(&mut record(Some("tenant"), Some(r#"{"ssn": 1}"#))) {
            Prepared::Item(s) => {
                assert_eq!(s.len(), 1);
                assert_eq!(s.context.as_deref(), Some(&b"tenant"[..]));
                assert_eq!(s.key, Some(ResolvedKey::fixed("k")));
            }
            _ => panic!("expected an item"),
        }
        // Too deep is never passed on, even by a lenient configuration.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            lenient.prepare(&mut record(Some("k"), Some(&deep))),
            Prepared::Fail(Failure::InvalidInput(m)) if m.contains("128")
        ));
    }
}
