//! Which transit key protects a record: one fixed name, or a template resolved per
//! record (`"{topic}"`, `"tenant-{header:tenant}"`, `"{topic|strip_suffix:.raw}"`).
//! The language is the host's, from the `kafka-transit-names` crate; it is documented
//! in docs/topics-and-keys.md ("Many topics, templates and a key per topic or tenant").
//!
//! A key a record chose is the record's business: when Vault refuses it (the token may
//! not use it, or it does not exist), that record is set aside and the others go on,
//! where a refused fixed key pauses the pipeline until an operator acts. Either way a
//! failure names the configured template, never the name it rendered, which comes from
//! the record's headers.

mod allowlist;

use std::ops::Deref;
use std::sync::Arc;

use kafka_transit_names::{check_name, Field, Record, RenderError, Template, ValueAt};
use serde::{Deserialize, Deserializer};

pub use allowlist::AllowedKeys;

use crate::transit::TransitError;
use crate::{failure_from_transit, Failure, Prepared, SourceRecord};

/// `policy.config.key`: a transit key name or a template naming one per record, and the
/// `policy.config.allowed_keys` it is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName {
    template: Template,
    /// The template's text, shared with every [`ResolvedKey`] it renders.
    text: Arc<str>,
    allowed: Option<AllowedKeys>,
}

/// The transit key of one record, and whether the record chose it.
///
/// A `String` converts into a fixed key, so helpers that take `impl Into<ResolvedKey>`
/// accept the plain names of policies with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    name: String,
    /// The configured template, when `name` was rendered from the record.
    template: Option<Arc<str>>,
    /// The `policy.config` option that holds the template: `key`, or `subject` for a
    /// data subject's key.
    option: &'static str,
}

impl KeyName {
    /// Parses `policy.config.key`; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let template = Template::parse(text).map_err(|e| format!("policy.config.key: {e}"))?;
        // Key names are on the sink (envelope headers, the kafka-transit.key header):
        // a name made of the record's key or value would put its data there.
        if let Some(field) = template
            .fields()
            .find(|field| matches!(field, Field::Key | Field::Value(_)))
        {
            return Err(format!(
                "policy.config.key: \"{field}\" cannot name a transit key (key names are \
                 visible on the sink); for a key per data subject use policy.config.subject \
                 (docs/forgetting.md)"
            ));
        }
        // A fixed key goes into Vault paths as it is: the rule rendered keys follow.
        if let Some(name) = template.literal() {
            check_name(name).map_err(|reason| {
                format!("policy.config.key: \"{name}\" is not a transit key name: {reason}")
            })?;
        }
        Ok(Self::from_template(template))
    }

    fn from_template(template: Template) -> Self {
        KeyName {
            text: template.as_str().into(),
            template,
            allowed: None,
        }
    }

    /// The same key, held to `allowed` (`policy.config.allowed_keys`): a record whose
    /// rendered key is not listed fails before any Vault call. A fixed key that is not
    /// listed is a configuration error.
    pub fn allowing(mut self, allowed: Option<AllowedKeys>) -> Result<Self, String> {
        if let (Some(name), Some(list)) = (self.template.literal(), &allowed) {
            if !list.allows(name) {
                return Err(format!(
                    "policy.config.allowed_keys: policy.config.key = \"{name}\" is not in the \
                     list; add it, or use a key the list allows"
                ));
            }
        }
        self.allowed = allowed;
        Ok(self)
    }

    /// The configured text, template or name.
    pub fn as_str(&self) -> &str {
        self.template.as_str()
    }

    /// Whether each record names its own key (the template has placeholders).
    pub fn is_per_record(&self) -> bool {
        self.template.literal().is_none()
    }

    /// `policy.config.allowed_keys`, if set.
    pub fn allowed_keys(&self) -> Option<&AllowedKeys> {
        self.allowed.as_ref()
    }

    /// What a whole-value policy does first with each record: a tombstone is forwarded;
    /// otherwise the record's key is resolved and `item` makes the Vault item from the
    /// value (taken out of the record) and the rest of the record.
    pub fn with_value<I>(
        &self,
        record: &mut SourceRecord,
        item: impl FnOnce(Vec<u8>, &SourceRecord) -> Result<I, Failure>,
    ) -> Prepared<(ResolvedKey, I)> {
        if record.value.is_none() {
            return Prepared::Forward;
        }
        let key = match self.for_record(record) {
            Ok(key) => key,
            Err(failure) => return Prepared::Fail(failure),
        };
        let value = record.value.take().unwrap_or_default();
        match item(value, record) {
            Ok(item) => Prepared::Item((key, item)),
            Err(failure) => Prepared::Fail(failure),
        }
    }

    /// The key for `record`. A record the template cannot name a key for (a missing
    /// tenant header, say), or names one `policy.config.allowed_keys` does not list, is
    /// invalid input: it is dead-lettered, never protected under some other key.
    pub fn for_record(&self, record: &SourceRecord) -> Result<ResolvedKey, Failure> {
        if let Some(name) = self.template.literal() {
            return Ok(ResolvedKey::fixed(name));
        }
        let name = self.template.render(record).map_err(|e| {
            let why = match e {
                // The name is the record's text: say why it is no name, not what it is.
                RenderError::InvalidName { reason, .. } => {
                    format!("the record's values make no valid key name: {reason}")
                }
                other => other.to_string(),
            };
            Failure::InvalidInput(format!("policy.config.key = \"{}\": {why}", self.text))
        })?;
        if self
            .allowed
            .as_ref()
            .is_some_and(|list| !list.allows(&name))
        {
            return Err(Failure::InvalidInput(format!(
                "policy.config.key = \"{}\" names a key for this record that \
                 policy.config.allowed_keys does not list",
                self.text
            )));
        }
        Ok(ResolvedKey::chosen(
            name.into_owned(),
            "key",
            self.text.clone(),
        ))
    }
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyName::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl ResolvedKey {
    /// A key fixed by the configuration, not chosen by a record.
    pub fn fixed(name: impl Into<String>) -> Self {
        ResolvedKey {
            name: name.into(),
            template: None,
            option: "key",
        }
    }

    /// A key a record chose: `name`, rendered from the template in `policy.config.<option>`.
    pub fn chosen(name: String, option: &'static str, template: Arc<str>) -> Self {
        ResolvedKey {
            name,
            template: Some(template),
            option,
        }
    }

    /// The transit key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured template that named this key for its record; `None` for a fixed key.
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    pub fn into_name(self) -> String {
        self.name
    }

    /// How a failure reason names this key: a fixed key by its name, a key the record
    /// chose by the template that named it (its name comes from the record's headers,
    /// and reasons go to logs and dead letters).
    pub fn describe(&self) -> String {
        match self.template() {
            None => format!("transit key \"{}\"", self.name),
            Some(template) => format!(
                "the transit key that policy.config.{} = \"{template}\" names for this record",
                self.option
            ),
        }
    }

    /// What a failed Vault call (or item) under this key means for the record. For a key
    /// the record chose, a key the token may not use or that does not exist is that
    /// record's fault (invalid input: dead-lettered, the others go on), and the key's name
    /// is replaced by the template in every message. For a fixed key, see
    /// [`failure_from_transit`].
    pub fn failure(&self, error: TransitError, what: &str) -> Failure {
        if self.template.is_none() {
            return failure_from_transit(error, what);
        }
        let refused = |why: &str, fix: &str| {
            Failure::InvalidInput(format!(
                "{what}: {} {why}; the record is set aside, the others go on ({fix}; \
                 policy.config.allowed_keys limits the keys records may name)",
                self.describe()
            ))
        };
        match error {
            TransitError::PermissionDenied(_) => refused(
                "is one Vault does not let this token use",
                "if records may name it, grant the token's policy that key",
            ),
            TransitError::KeyNotFound(_) => {
                refused("does not exist", "if records may name it, create the key")
            }
            other => failure_from_transit(self.redacted(other), what),
        }
    }

    /// `error` with every mention of this key's name replaced by its template.
    fn redacted(&self, error: TransitError) -> TransitError {
        let template = self.template().unwrap_or_default();
        let redact = |message: String| replace_name(&message, &self.name, template);
        match error {
            TransitError::InvalidInput(m) => TransitError::InvalidInput(redact(m)),
            TransitError::PermissionDenied(m) => TransitError::PermissionDenied(redact(m)),
            TransitError::Unavailable(m) => TransitError::Unavailable(redact(m)),
            TransitError::KeyNotFound(m) => TransitError::KeyNotFound(redact(m)),
            TransitError::Other(m) => TransitError::Other(redact(m)),
        }
    }
}

/// `message` with each occurrence of `name` that is not inside a longer word
/// (`transit/encrypt/NAME`, `` `NAME` ``, `"NAME"`, `NAME.`) replaced by `by`. Letters
/// and digits are the word's: a name "a" stays in "Vault", but punctuation that names
/// may contain is a boundary, so that `NAME.` at the end of a sentence goes too.
fn replace_name(message: &str, name: &str, by: &str) -> String {
    let is_name_byte = |b: u8| b.is_ascii_alphanumeric();
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = message[from..].find(name) {
        let start = from + found;
        let end = start + name.len();
        let alone = (start == 0 || !is_name_byte(bytes[start - 1]))
            && (end == bytes.len() || !is_name_byte(bytes[end]));
        if alone {
            out.push_str(&message[copied..start]);
            out.push_str(by);
            copied = end;
        }
        // `name` is ASCII (a checked name), so `start + 1` is a char boundary.
        from = if alone { end } else { start + 1 };
        if name.is_empty() {
            break;
        }
    }
    out.push_str(&message[copied..]);
    out
}

impl Deref for ResolvedKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl AsRef<str> for ResolvedKey {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl From<String> for ResolvedKey {
    fn from(name: String) -> Self {
        ResolvedKey::fixed(name)
    }
}

impl From<&str> for ResolvedKey {
    fn from(name: &str) -> Self {
        ResolvedKey::fixed(name)
    }
}

impl PartialEq<str> for ResolvedKey {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl PartialEq<&str> for ResolvedKey {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

impl PartialEq<String> for ResolvedKey {
    fn eq(&self, other: &String) -> bool {
        &self.name == other
    }
}

impl Record for SourceRecord {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.key == name)
            .map(|h| h.value.as_deref())
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn value_at(&self, pointer: &str) -> ValueAt<'_> {
        match self.value.as_deref() {
            Some(value) => crate::fields::text_at(value, pointer),
            None => ValueAt::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;
    use crate::Header;

    fn for_tenant(tenant: &[u8]) -> SourceRecord {
        let mut r = record("k", "v");
        r.headers.push(Header {
            key: "tenant".into(),
            value: Some(tenant.to_vec()),
        });
        r
    }

    fn allowed(entries: &[&str]) -> Option<AllowedKeys> {
        Some(
            AllowedKeys::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap(),
        )
    }

    /// The fuzz target for name templates found that a template without placeholders
    /// was never held to the name rule: `key = "a/b"` reached Vault as the path
    /// `transit/encrypt/a/b`, though every rendered key and `allowed_keys` entry is held
    /// to it.
    #[test]
    fn a_fixed_key_must_be_a_transit_key_name() {
        for bad in ["a/b", "..", "../../sys/seal", "a b"] {
            let error = KeyName::parse(bad).unwrap_err();
            assert!(
                error.starts_with("policy.config.key: ")
                    && error.contains("not a transit key name"),
                "{bad:?}: {error}"
            );
        }
        assert!(!KeyName::parse("team.customers_v2-eu")
            .unwrap()
            .is_per_record());
    }

    #[test]
    fn a_header_names_the_key_and_its_absence_is_invalid_input() {
        let key = KeyName::parse("tenant-{header:tenant}").unwrap();
        let resolved = key.for_record(&for_tenant(b"acme")).unwrap();
        assert_eq!(resolved, "tenant-acme");
        assert_eq!(resolved.template(), Some("tenant-{header:tenant}"));
        let missing = key.for_record(&record("k", "v")).unwrap_err();
        assert_eq!(
            missing,
            Failure::InvalidInput(
                "policy.config.key = \"tenant-{header:tenant}\": the record has no header \"tenant\""
                    .into()
            )
        );
        assert!(KeyName::parse("{tenant}")
            .unwrap_err()
            .starts_with("policy.config.key: "));
    }

    #[test]
    fn an_invalid_rendered_name_is_refused_without_quoting_it() {
        let key = KeyName::parse("tenant-{header:tenant}").unwrap();
        let Err(Failure::InvalidInput(reason)) = key.for_record(&for_tenant(b"alice@example.com"))
        else {
            panic!("an invalid name must be invalid input");
        };
        assert!(!reason.contains("alice"), "{reason}");
        assert!(reason.contains("only letters, digits"), "{reason}");
    }

    #[test]
    fn a_fixed_key_is_not_the_records_choice() {
        let key = KeyName::parse("customers").unwrap();
        assert!(!key.is_per_record());
        let resolved = key.for_record(&record("k", "v")).unwrap();
        assert_eq!(resolved, ResolvedKey::fixed("customers"));
        assert_eq!(resolved.template(), None);
        assert!(KeyName::parse("{topic}").unwrap().is_per_record());
    }

    #[test]
    fn the_allowlist_refuses_unlisted_keys_before_vault_and_fixed_ones_at_init() {
        let key = KeyName::parse("tenant-{header:tenant}")
            .unwrap()
            .allowing(allowed(&["tenant-acme", "tenant-eu-*"]))
            .unwrap();
        assert!(key.for_record(&for_tenant(b"acme")).is_ok());
        assert!(key.for_record(&for_tenant(b"eu-globex")).is_ok());
        let Err(Failure::InvalidInput(reason)) = key.for_record(&for_tenant(b"evil")) else {
            panic!("an unlisted key must be invalid input");
        };
        assert!(reason.contains("policy.config.allowed_keys"), "{reason}");
        assert!(reason.contains("tenant-{header:tenant}") && !reason.contains("evil"));

        let fixed = KeyName::parse("customers").unwrap();
        assert!(fixed.clone().allowing(allowed(&["cust*"])).is_ok());
        let error = fixed.allowing(allowed(&["tenant-*"])).unwrap_err();
        assert!(error.starts_with("policy.config.allowed_keys: "), "{error}");
    }

    #[test]
    fn a_refused_per_record_key_is_the_records_failure_and_is_not_named() {
        let key = KeyName::parse("tenant-{header:tenant}").unwrap();
        let evil = key.for_record(&for_tenant(b"evil")).unwrap();
        let message = "permission denied by Vault for `transit/encrypt/tenant-evil`".to_string();
        for error in [
            TransitError::PermissionDenied(message.clone()),
            TransitError::KeyNotFound("transit key `tenant-evil` not found".into()),
        ] {
            match evil.failure(error, "vault encrypt") {
                Failure::InvalidInput(reason) => {
                    assert!(reason.starts_with("vault encrypt: "), "{reason}");
                    assert!(reason.contains("\"tenant-{header:tenant}\""), "{reason}");
                    assert!(!reason.contains("evil"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Other failures keep their meaning, with the name replaced by the template.
        let unavailable = evil.failure(
            TransitError::Unavailable("mount `transit` (key `tenant-evil`) sealed".into()),
            "vault encrypt",
        );
        assert_eq!(
            unavailable,
            Failure::Retryable(
                "vault encrypt: mount `transit` (key `tenant-{header:tenant}`) sealed".into()
            )
        );

        let fixed = ResolvedKey::from("customers".to_string());
        assert!(matches!(
            fixed.failure(TransitError::PermissionDenied(message), "x"),
            Failure::Retryable(m) if m.contains("tenant-evil")
        ));
        assert!(matches!(
            fixed.failure(TransitError::KeyNotFound("gone".into()), "x"),
            Failure::PolicyError(_)
        ));
    }

    #[test]
    fn only_a_whole_name_is_replaced() {
        assert_eq!(
            replace_name("a/tenant-a/tenant-ab `tenant-a` tenant-a.", "tenant-a", "T"),
            "a/T/tenant-ab `T` T."
        );
        assert_eq!(replace_name("Vault: a", "a", "T"), "Vault: T");
        assert_eq!(replace_name("xx", "x", "T"), "xx");
        assert_eq!(replace_name("x", "x", "T"), "T");
        assert_eq!(replace_name("é x é", "x", "T"), "é T é");
    }
}
