//! Field-level protection of JSON records: selecting fields by JSON Pointer, and the
//! pure halves of encrypting and decrypting them (the Vault call sits in between, in
//! the policies).
//!
//! Pointers are RFC 6901 (`/card/number`; `~0` for `~` and `~1` for `/` inside a name;
//! `""` for the whole document) plus one extension: the token `*` stands for every
//! element of an array or every member of an object (`/orders/*/iban`). A member
//! literally named `*` is therefore selected only along with its siblings.

use std::fmt::Write;

use serde::Deserialize;
use serde_json::Value;

use crate::transit::DecryptItem;
use crate::{
    parse_config, with_allowed_keys, ContextSource, Failure, KeyName, Prepared, ResolvedKey,
    SourceRecord, TransitKeyConfig,
};

/// The configured pointers, validated.
#[derive(Debug, Clone)]
pub struct Fields {
    pointers: Vec<Pointer>,
}

#[derive(Debug, Clone)]
struct Pointer {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone)]
enum Token {
    Any,
    /// A member name, and the array index it also denotes if it is one in RFC 6901's
    /// canonical form (digits only, no leading zero).
    Name(String, Option<usize>),
}

/// What [`Fields::select`] found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Concrete RFC 6901 pointers, usable with `Value::pointer_mut`, in document order;
    /// none lies inside another.
    pub locations: Vec<String>,
    /// The configured pointers that selected nothing, as configured.
    pub missing: Vec<String>,
}

impl Fields {
    /// Validates the configured pointers; an error names the entry to fix.
    pub fn parse(fields: &[String]) -> Result<Self, String> {
        if fields.is_empty() {
            return Err("policy.config.fields: list at least one JSON Pointer".into());
        }
        let pointers = fields
            .iter()
            .enumerate()
            .map(|(i, text)| match parse_pointer(text) {
                Ok(tokens) => Ok(Pointer {
                    text: text.clone(),
                    tokens,
                }),
                Err(why) => Err(format!("policy.config.fields[{i}]: {why} (got {text:?})")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { pointers })
    }

    /// The locations in `doc` that the pointers select.
    pub fn select(&self, doc: &Value) -> Selection {
        let mut walk = Walk {
            pointers: &self.pointers,
            matched: vec![false; self.pointers.len()],
            locations: Vec::new(),
        };
        let all: Vec<usize> = (0..self.pointers.len()).collect();
        walk.visit(doc, &mut String::new(), 0, &all, false);
        let missing = self
            .pointers
            .iter()
            .zip(&walk.matched)
            .filter(|(_, &matched)| !matched)
            .map(|(pointer, _)| pointer.text.clone())
            .collect();
        Selection {
            locations: walk.locations,
            missing,
        }
    }
}

fn parse_pointer(text: &str) -> Result<Vec<Token>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err("a JSON Pointer must be \"\" or start with \"/\"".into());
    };
    rest.split('/')
        .map(|raw| {
            if raw == "*" {
                return Ok(Token::Any);
            }
            let name = unescape(raw)?;
            let canonical = name == "0"
                || (!name.is_empty()
                    && !name.starts_with('0')
                    && name.bytes().all(|b| b.is_ascii_digit()));
            let index = if canonical { name.parse().ok() } else { None };
            Ok(Token::Name(name, index))
        })
        .collect()
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut name = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            name.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => name.push('~'),
            Some('1') => name.push('/'),
            _ => return Err("`~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)".into()),
        }
    }
    Ok(name)
}

fn push_escaped(path: &mut String, name: &str) {
    path.push('/');
    for c in name.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// One pass over the document in document order, carrying the pointers still on
/// their way down: visiting each node once gives document order and no duplicates
/// for free.
struct Walk<'a> {
    pointers: &'a [Pointer],
    matched: Vec<bool>,
    locations: Vec<String>,
}

impl Walk<'_> {
    /// `active`: the pointers whose first `depth` tokens led to `node`. `covered`: an
    /// ancestor is selected already, so this subtree only tells which pointers match.
    fn visit(
        &mut self,
        node: &Value,
        path: &mut String,
        depth: usize,
        active: &[usize],
        covered: bool,
    ) {
        let mut covered = covered;
        let mut onward = Vec::new();
        for &p in active {
            if self.pointers[p].tokens.len() == depth {
                self.matched[p] = true;
                if !covered {
                    self.locations.push(path.clone());
                    covered = true;
                }
            } else {
                onward.push(p);
            }
        }
        if covered {
            onward.retain(|&p| !self.matched[p]);
        }
        if onward.is_empty() {
            return;
        }
        let len = path.len();
        match node {
            Value::Object(members) => {
                for (name, child) in members {
                    let next = self.step(&onward, depth, |token| match token {
                        Token::Any => true,
                        Token::Name(n, _) => n == name,
                    });
                    if !next.is_empty() {
                        push_escaped(path, name);
                        self.visit(child, path, depth + 1, &next, covered);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(elements) => {
                for (i, child) in elements.iter().enumerate() {
                    let next = self.step(&onward, depth, |token| match token {
                        Token::Any => true,
                        Token::Name(_, index) => *index == Some(i),
                    });
                    if !next.is_empty() {
                        let _ = write!(path, "/{i}");
                        self.visit(child, path, depth + 1, &next, covered);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }

    fn step(&self, onward: &[usize], depth: usize, accepts: impl Fn(&Token) -> bool) -> Vec<usize> {
        onward
            .iter()
            .copied()
            .filter(|&p| accepts(&self.pointers[p].tokens[depth]))
            .collect()
    }
}

/// Takes each selected value out of `doc` (leaving `null` until [`apply`] puts its
/// replacement there) and returns it as compact JSON text, to be encrypted. Any type
/// goes, so decryption can restore the original type.
pub fn plan_encrypt(doc: &mut Value, locations: &[String]) -> Vec<Vec<u8>> {
    locations
        .iter()
        .map(|at| {
            let value = doc
                .pointer_mut(at)
                .expect("selected in this document")
                .take();
            value.to_string().into_bytes()
        })
        .collect()
}

/// Takes each selected ciphertext out of `doc`. A selected field that does not hold
/// one fails the record: passing it on would pass on whatever it is.
pub fn plan_decrypt(doc: &mut Value, locations: &[String]) -> Result<Vec<String>, Failure> {
    locations
        .iter()
        .map(|at| match doc.pointer_mut(at) {
            Some(Value::String(text)) if text.starts_with("vault:v") => Ok(std::mem::take(text)),
            _ => Err(Failure::InvalidInput(format!(
                "field {at:?} is not a Vault transit ciphertext (expected a string vault:v<N>:...)"
            ))),
        })
        .collect()
}

/// A decrypted field: the JSON text [`plan_encrypt`] made.
pub fn parse_plaintext(at: &str, plaintext: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(plaintext).map_err(|e| {
        Failure::InvalidInput(format!("field {at:?}: decrypted value is not JSON: {e}"))
    })
}

/// Puts `values` at the planned `locations`, in order.
pub fn apply(doc: &mut Value, locations: &[String], values: impl IntoIterator<Item = Value>) {
    for (at, value) in locations.iter().zip(values) {
        if let Some(slot) = doc.pointer_mut(at) {
            *slot = value;
        }
    }
}

/// The document with each selected field replaced by its ciphertext, as the record's
/// new value.
pub fn with_ciphertexts((mut doc, locations): Located, ciphertexts: Vec<String>) -> Vec<u8> {
    apply(
        &mut doc,
        &locations,
        ciphertexts.into_iter().map(Value::String),
    );
    doc.to_string().into_bytes()
}

/// Whether to fail a record that is not as configured, or pass it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Fail,
    Pass,
}

/// The configuration of `encrypt-fields` and `decrypt-fields`.
#[derive(Debug, Clone)]
pub struct FieldsConfig {
    pub transit: TransitKeyConfig,
    pub fields: Fields,
    /// A value that is not JSON: fail it (default) or pass it on unchanged.
    pub on_invalid_json: Action,
    /// A configured pointer that selects nothing: pass (default) or fail.
    pub on_missing_field: Action,
}

/// A parsed document and the locations of its selected fields, handed from a policy's
/// preparation to its finish.
pub type Located = (Value, Vec<String>);

/// A record's parsed value, what to protect in it, and the derivation context.
#[derive(Debug)]
pub struct Selected {
    pub doc: Value,
    pub locations: Vec<String>,
    /// The record's transit key; `None` when no field was selected (nothing goes to
    /// Vault, so a record the key template cannot resolve is fine then).
    pub key: Option<ResolvedKey>,
    pub context: Option<Vec<u8>>,
}

impl Selected {
    /// The key to name in the record's `kafka-transit.key` header.
    pub fn key_or<'a>(&'a self, config: &'a FieldsConfig) -> &'a str {
        self.key.as_deref().unwrap_or(config.transit.key.as_str())
    }

    /// The key to group the record's Vault items under: its own, or (when it has no items)
    /// the configured text as a fixed key.
    pub fn resolved_key_or(&self, config: &FieldsConfig) -> ResolvedKey {
        self.key
            .clone()
            .unwrap_or_else(|| ResolvedKey::fixed(config.transit.key.as_str()))
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

    /// What both policies do before their own part: parse the value, select the fields
    /// and find the context, or decide the record's fate without Vault.
    pub fn prepare(&self, record: &SourceRecord) -> Prepared<Selected> {
        let Some(value) = record.value.as_deref() else {
            return Prepared::Forward; // a tombstone stays a tombstone
        };
        let doc: Value = match serde_json::from_slice(value) {
            Ok(doc) => doc,
            Err(_) if self.on_invalid_json == Action::Pass => return Prepared::Forward,
            Err(e) => {
                return Prepared::Fail(Failure::InvalidInput(format!("value is not JSON: {e}")))
            }
        };
        let selection = self.fields.select(&doc);
        if let (Some(pointer), Action::Fail) = (selection.missing.first(), self.on_missing_field) {
            return Prepared::Fail(Failure::InvalidInput(format!(
                "field {pointer:?} is missing (policy.config.on_missing_field = \"fail\")"
            )));
        }
        // No field, no Vault: a keyless record is fine then, even with a per-record context
        // or key.
        let (key, context) = if selection.locations.is_empty() {
            (None, None)
        } else {
            let resolved =
                self.transit.key.for_record(record).and_then(|key| {
                    Ok((Some(key), self.transit.context_for(record.key.as_deref())?))
                });
            match resolved {
                Ok(resolved) => resolved,
                Err(failure) => return Prepared::Fail(failure),
            }
        };
        Prepared::Item(Selected {
            doc,
            locations: selection.locations,
            key,
            context,
        })
    }

    /// [`FieldsConfig::prepare`], then the selected fields' ciphertexts taken out as
    /// items to decrypt or rewrap: for [`through_vault_keyed`](crate::through_vault_keyed),
    /// with the record's key, and the document and the fields' locations as its state.
    pub fn ciphertext_items(
        &self,
        record: &SourceRecord,
    ) -> Prepared<(ResolvedKey, Located, Vec<DecryptItem>)> {
        self.prepare(record).and_then(|mut selected: Selected| {
            let ciphertexts = match plan_decrypt(&mut selected.doc, &selected.locations) {
                Ok(ciphertexts) => ciphertexts,
                Err(failure) => return Prepared::Fail(failure),
            };
            let items = ciphertexts
                .into_iter()
                .map(|ciphertext| DecryptItem {
                    ciphertext,
                    context: selected.context.clone(),
                })
                .collect();
            let key = selected.resolved_key_or(self);
            Prepared::Item((key, (selected.doc, selected.locations), items))
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
    use serde_json::json;

    fn fields(pointers: &[&str]) -> Fields {
        Fields::parse(&pointers.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn locations(pointers: &[&str], doc: &Value) -> Vec<String> {
        fields(pointers).select(doc).locations
    }

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

    #[test]
    fn plain_pointers_select_existing_fields() {
        let doc = json!({"ssn": "1", "card": {"number": "4111", "exp": "12/29"}});
        assert_eq!(
            locations(&["/ssn", "/card/number"], &doc),
            ["/ssn", "/card/number"]
        );
    }

    #[test]
    fn wildcard_over_array_elements() {
        let doc = json!({"orders": [{"iban": "A"}, {"no": 1}, {"iban": "C"}]});
        assert_eq!(
            locations(&["/orders/*/iban"], &doc),
            ["/orders/0/iban", "/orders/2/iban"]
        );
    }

    #[test]
    fn wildcard_over_object_members_and_root() {
        let doc = json!({"b": 1, "a": {"x": 2}});
        // Member order is the record's, not alphabetical (serde_json's preserve_order).
        assert_eq!(locations(&["/*"], &doc), ["/b", "/a"]);
        assert_eq!(locations(&["/*/x"], &doc), ["/a/x"]);
        assert_eq!(
            locations(&["/*/*"], &json!([[1, 2], {"k": 3}])),
            ["/0/0", "/0/1", "/1/k"]
        );
    }

    #[test]
    fn wildcard_on_a_scalar_selects_nothing() {
        let selection = fields(&["/a/*"]).select(&json!({"a": 5}));
        assert!(selection.locations.is_empty());
        assert_eq!(selection.missing, ["/a/*"]);
    }

    #[test]
    fn escaped_names_are_unescaped_and_reescaped() {
        let doc = json!({"a/b": 1, "m~n": 2, "~1": 3});
        let found = locations(&["/a~1b", "/m~0n", "/~01"], &doc);
        assert_eq!(found, ["/a~1b", "/m~0n", "/~01"]);
        let mut doc = doc;
        for at in &found {
            assert!(doc.pointer_mut(at).is_some(), "{at} must resolve");
        }
        // Wildcard hits are escaped too.
        assert_eq!(locations(&["/*"], &json!({"x/y~": 1})), ["/x~1y~0"]);
    }

    #[test]
    fn root_pointer_selects_the_whole_document() {
        let doc = json!({"a": 1});
        assert_eq!(locations(&[""], &doc), [""]);
        assert_eq!(locations(&["", "/a"], &doc), [""]);
    }

    #[test]
    fn array_indices_must_be_canonical() {
        let doc = json!([10, 11]);
        assert_eq!(locations(&["/1"], &doc), ["/1"]);
        assert!(locations(&["/01"], &doc).is_empty());
        assert!(locations(&["/+1"], &doc).is_empty());
        assert!(locations(&["/-"], &doc).is_empty());
        // A numeric token still names an object member.
        assert_eq!(locations(&["/01"], &json!({"01": 1})), ["/01"]);
    }

    #[test]
    fn ancestors_absorb_descendants_and_duplicates_go() {
        let doc = json!({"card": {"number": "4111", "exp": "12/29"}, "ssn": "1"});
        let selection = fields(&["/card/number", "/card", "/ssn", "/ssn", "/*/exp"]).select(&doc);
        assert_eq!(selection.locations, ["/card", "/ssn"]);
        // Absorbed pointers did match: they are not missing.
        assert!(selection.missing.is_empty());
    }

    #[test]
    fn missing_pointers_are_reported_in_config_order() {
        let doc = json!({"a": {"b": 1}, "list": []});
        let selection = fields(&["/z", "/a/b", "/a/c", "/list/*"]).select(&doc);
        assert_eq!(selection.locations, ["/a/b"]);
        assert_eq!(selection.missing, ["/z", "/a/c", "/list/*"]);
    }

    #[test]
    fn locations_come_in_document_order_not_config_order() {
        let doc = json!({"z": 1, "y": [{"q": 2}, {"q": 3}], "x": 4});
        assert_eq!(
            locations(&["/x", "/y/1/q", "/z", "/y/0/q"], &doc),
            ["/z", "/y/0/q", "/y/1/q", "/x"]
        );
    }

    #[test]
    fn invalid_pointers_are_refused_naming_the_entry() {
        let parse =
            |p: &[&str]| Fields::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let err = parse(&["/ok", "ssn"]).unwrap_err();
        assert!(err.starts_with("policy.config.fields[1]: "), "{err}");
        let err = parse(&["/a~2b"]).unwrap_err();
        assert!(err.starts_with("policy.config.fields[0]: "), "{err}");
        assert!(parse(&["/a~"]).is_err());
        assert!(parse(&[])
            .unwrap_err()
            .starts_with("policy.config.fields: "));
    }

    #[test]
    fn encrypt_then_decrypt_restores_every_type() {
        let original = json!({
            "name": "Ada", "ssn": "123-45-6789",
            "card": {"number": "4111111111111111", "exp": "12/29"},
            "n": 1.5, "b": false, "z": null, "o": {"k": [1, "x"]}, "a": [1, {"y": 2}]
        });
        let pointers = fields(&["/ssn", "/card/number", "/n", "/b", "/z", "/o", "/a"]);
        let mut doc = original.clone();
        let locations = pointers.select(&doc).locations;
        let plaintexts = plan_encrypt(&mut doc, &locations);
        assert_eq!(plaintexts[0], br#""123-45-6789""#);
        assert_eq!(plaintexts[5], br#"{"k":[1,"x"]}"#);

        // A fake Vault: the "ciphertext" carries the plaintext in the clear.
        let fake = |p: &Vec<u8>| format!("vault:v1:{}", String::from_utf8(p.clone()).unwrap());
        apply(
            &mut doc,
            &locations,
            plaintexts.iter().map(|p| Value::String(fake(p))),
        );
        assert_eq!(doc["name"], "Ada");
        assert_eq!(doc["card"]["exp"], "12/29");
        assert_eq!(doc["card"]["number"], r#"vault:v1:"4111111111111111""#);
        assert_eq!(doc["z"], "vault:v1:null");
        let text = doc.to_string();
        assert!(
            text.starts_with(r#"{"name":"Ada","ssn":"vault:v1:"#),
            "{text}"
        );

        let mut doc: Value = serde_json::from_str(&text).unwrap();
        let locations = pointers.select(&doc).locations;
        let ciphertexts = plan_decrypt(&mut doc, &locations).unwrap();
        let values: Vec<Value> = locations
            .iter()
            .zip(&ciphertexts)
            .map(|(at, c)| parse_plaintext(at, c.strip_prefix("vault:v1:").unwrap().as_bytes()))
            .collect::<Result<_, _>>()
            .unwrap();
        apply(&mut doc, &locations, values);
        assert_eq!(doc, original);
        assert_eq!(
            doc.to_string(),
            original.to_string(),
            "member order is kept"
        );
    }

    #[test]
    fn decrypting_a_field_that_is_not_a_ciphertext_names_it() {
        let mut doc = json!({"ssn": "123-45-6789", "card": {"number": 4111}});
        for at in ["/ssn", "/card/number"] {
            match plan_decrypt(&mut doc, &[at.to_string()]) {
                Err(Failure::InvalidInput(m)) => assert!(m.contains(at), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        match parse_plaintext("/x", b"not json") {
            Err(Failure::InvalidInput(m)) => assert!(m.contains("/x"), "{m}"),
            other => panic!("{other:?}"),
        }
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
            strict.prepare(&record(None, None)),
            Prepared::Forward
        ));
        assert!(matches!(
            strict.prepare(&record(Some("k"), Some("nope"))),
            Prepared::Fail(Failure::InvalidInput(m)) if m.starts_with("value is not JSON")
        ));
        assert!(matches!(
            lenient.prepare(&record(Some("k"), Some("nope"))),
            Prepared::Forward
        ));
        assert!(matches!(
            strict.prepare(&record(Some("k"), Some(r#"{"a": 1}"#))),
            Prepared::Fail(Failure::InvalidInput(m)) if m.contains("/ssn")
        ));
        // Nothing to protect: no Vault call, so no need for a record key either.
        match lenient.prepare(&record(None, Some(r#"{"a": 1}"#))) {
            Prepared::Item(s) => assert!(s.locations.is_empty() && s.context.is_none()),
            _ => panic!("expected an item"),
        }
        assert!(matches!(
            lenient.prepare(&record(None, Some(r#"{"ssn": 1}"#))),
            Prepared::Fail(Failure::InvalidInput(_))
        ));
        match lenient.prepare(&record(Some("tenant"), Some(r#"{"ssn": 1}"#))) {
            Prepared::Item(s) => {
                assert_eq!(s.locations, ["/ssn"]);
                assert_eq!(s.context.as_deref(), Some(&b"tenant"[..]));
            }
            _ => panic!("expected an item"),
        }
    }
}
