//! A transit key per data subject, so that one person's records can be made unreadable
//! everywhere at once by deleting one key (`kafka-transit forget`, docs/forgetting.md).
//!
//! - `subject` (a template: `"{key}"`, `"{header:user}"`, `"{value:/customer/id}"`) says
//!   whose data a record is. A record whose subject cannot be found is invalid input,
//!   never sealed under some shared key.
//! - The subject's key is `subject_keys` (a prefix) followed by Vault's HMAC of the
//!   subject id under `subject_hmac_key`: the same id always finds the same key, and the
//!   name, which is on the sink in every envelope, says nothing of the id without Vault.
//!   Names are cached per instance; the ids not cached are sent in one HMAC batch
//!   request per batch.
//! - A subject's key is created on first use (Vault's `encrypt` creates a missing key),
//!   and deleted by `forget`. The runner refuses to seal for a forgotten subject.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use kafka_transit_names::{check_name, subject_key_name, Template, SUBJECT_NAME_CHARS};

use crate::transit::{self, EncryptItem, TransitError};
use crate::{Failure, ResolvedKey, SourceRecord, TransformResult};

/// Subjects whose key names an instance keeps, beyond which the cache starts again.
const MAX_CACHED_SUBJECTS: usize = 100_000;

/// `policy.config.subject`, `subject_keys` and `subject_hmac_key`.
#[derive(Debug)]
pub struct SubjectKeys {
    subject: Template,
    /// The template's text, as failure reasons quote it.
    text: Arc<str>,
    prefix: String,
    hmac_key: String,
    /// Subject id to its key's name. Ids are personal data: they stay in this
    /// instance's memory only, never in a reason or a log.
    names: RefCell<HashMap<String, String>>,
}

impl SubjectKeys {
    /// The three options together; errors name the field.
    pub fn parse(subject: &str, prefix: &str, hmac_key: &str) -> Result<Self, String> {
        let template =
            Template::parse(subject).map_err(|e| format!("policy.config.subject: {e}"))?;
        if template.literal().is_some() {
            return Err(format!(
                "policy.config.subject: \"{subject}\" names one subject for every record; \
                 take it from the record: \"{{key}}\", \"{{header:NAME}}\" or \
                 \"{{value:/json/pointer}}\""
            ));
        }
        let longest = format!("{prefix}{}", "a".repeat(SUBJECT_NAME_CHARS));
        check_name(&longest).map_err(|reason| {
            format!(
                "policy.config.subject_keys: \"{prefix}\" followed by a {SUBJECT_NAME_CHARS}-\
                 character pseudonym must be a transit key name: {reason}"
            )
        })?;
        if !prefix.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && !prefix.is_empty()
        {
            return Err(format!(
                "policy.config.subject_keys: \"{prefix}\" must start with a letter, a digit or \
                 '_' (Vault refuses other key names)"
            ));
        }
        if prefix.is_empty() {
            return Err(
                "policy.config.subject_keys: give the subjects' keys a prefix of \
                        their own (\"customers-\"), so that their keys, and the Vault \
                        policies that grant them, are told apart from every other key"
                    .into(),
            );
        }
        check_name(hmac_key).map_err(|reason| {
            format!("policy.config.subject_hmac_key: \"{hmac_key}\" is not a transit key name: {reason}")
        })?;
        Ok(SubjectKeys {
            text: subject.into(),
            subject: template,
            prefix: prefix.to_string(),
            hmac_key: hmac_key.to_string(),
            names: RefCell::new(HashMap::new()),
        })
    }

    /// The per-subject options of `[policy.config]` (JSON text), if `subject` is among
    /// them; then `key`, `context` and `allowed_keys` are refused (each subject's key is
    /// `subject_keys` and a pseudonym) and the other two are required.
    pub fn from_config(json: &str) -> Result<Option<Self>, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            subject: String,
            subject_keys: Option<String>,
            subject_hmac_key: Option<String>,
        }
        let table: serde_json::Map<String, serde_json::Value> = crate::parse_config(json)?;
        if !table.contains_key("subject") {
            return Ok(None);
        }
        for (field, why) in [
            (
                "key",
                "each subject's key is subject_keys followed by a pseudonym",
            ),
            ("allowed_keys", "subject keys are named by subject_keys"),
            ("context", "subject keys are not derived keys"),
        ] {
            if table.contains_key(field) {
                return Err(format!(
                    "policy.config.{field}: not taken with policy.config.subject ({why}); \
                     remove it"
                ));
            }
        }
        let raw: Raw = crate::parse_config(json)?;
        let required = |value: Option<String>, field: &str, example: &str| {
            value.ok_or_else(|| {
                format!(
                    "policy.config.{field}: required with policy.config.subject, e.g. \
                     {field} = \"{example}\" (docs/forgetting.md)"
                )
            })
        };
        let prefix = required(raw.subject_keys, "subject_keys", "customers-")?;
        let hmac_key = required(raw.subject_hmac_key, "subject_hmac_key", "subject-ids")?;
        Self::parse(&raw.subject, &prefix, &hmac_key).map(Some)
    }

    /// The prefix of every subject's key name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The transit key that turns subject ids into key names.
    pub fn hmac_key(&self) -> &str {
        &self.hmac_key
    }

    /// Whose data `record` is. A record without one (no key, no such member, ...) is
    /// invalid input; the reason says where the template looked, never what it found.
    pub fn subject_of(&self, record: &SourceRecord) -> Result<String, Failure> {
        match self.subject.render_text(record) {
            Ok(id) if !id.is_empty() => Ok(id),
            Ok(_) => Err(Failure::InvalidInput(format!(
                "policy.config.subject = \"{}\": the record's subject is empty; it is not \
                 sealed under a shared key",
                self.text
            ))),
            Err(why) => Err(Failure::InvalidInput(format!(
                "policy.config.subject = \"{}\": {why}; the record is not sealed under a \
                 shared key",
                self.text
            ))),
        }
    }

    /// The key of subject `id`, if this instance has found it before.
    pub fn cached(&self, id: &str) -> Option<ResolvedKey> {
        self.names
            .borrow()
            .get(id)
            .map(|name| self.resolved(name.clone()))
    }

    /// The key of subject `id`, from Vault's HMAC of it; remembered.
    pub fn learn(&self, id: &str, hmac: &str) -> Result<ResolvedKey, Failure> {
        let name = subject_key_name(&self.prefix, hmac).map_err(|why| {
            Failure::PolicyError(format!(
                "policy.config.subject_hmac_key = \"{}\": {why}",
                self.hmac_key
            ))
        })?;
        let mut names = self.names.borrow_mut();
        if names.len() >= MAX_CACHED_SUBJECTS {
            names.clear();
        }
        names.insert(id.to_string(), name.clone());
        Ok(self.resolved(name))
    }

    fn resolved(&self, name: String) -> ResolvedKey {
        ResolvedKey::chosen(name, "subject", self.text.clone())
    }

    /// Creates the transit key `name` of a subject seen for the first time: Vault's
    /// `encrypt` creates a key it does not have (the token needs `create` on
    /// `transit/encrypt/<subject_keys>*`). What it encrypts is thrown away.
    pub fn create(&self, name: &str) -> Result<(), TransitError> {
        let probe = EncryptItem {
            plaintext: Vec::new(),
            context: None,
        };
        transit::encrypt(name, &[probe])?
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                Err(TransitError::Other(
                    "no answer to the key's creation".into(),
                ))
            })
            .map(drop)
    }
}

/// How every forgotten-subject failure reason starts, so that readers of dead letters
/// (and `on_forgotten = "skip"`) can tell it from any other.
pub const FORGOTTEN: &str = "subject forgotten";

/// `result` with a forgotten subject's reason starting [`FORGOTTEN`], whatever step
/// prefixed it: what a dead letter's `kafka-transit.error` starts with, as the readers'
/// errors do.
pub fn forgotten_first(result: TransformResult) -> TransformResult {
    match result {
        Err(Failure::InvalidInput(reason)) => {
            Err(Failure::InvalidInput(match reason.find(FORGOTTEN) {
                Some(at) => reason[at..].to_string(),
                None => reason,
            }))
        }
        other => other,
    }
}

/// What an opening policy does with a record of a forgotten subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnForgotten {
    /// Fail it as invalid input, with a reason starting [`FORGOTTEN`] (dead-lettered, or
    /// the pipeline stops, as `errors.on_failure` says).
    DeadLetter,
    /// Leave it out of the output, counted in the log.
    Skip,
}

/// The per-subject options of an opening policy: `subject_keys` (the prefix of the
/// subjects' keys; an envelope names its own key, which must have it) and
/// `on_forgotten`.
#[derive(Debug, Clone)]
pub struct SubjectOpening {
    prefix: Arc<str>,
    pub on_forgotten: OnForgotten,
}

impl SubjectOpening {
    /// The options, if `subject_keys` is among them; `key`, `context` and
    /// `allowed_keys` are refused with it.
    pub fn from_config(json: &str) -> Result<Option<Self>, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            subject_keys: String,
            #[serde(default)]
            on_forgotten: Option<String>,
        }
        let table: serde_json::Map<String, serde_json::Value> = crate::parse_config(json)?;
        if !table.contains_key("subject_keys") {
            if table.contains_key("on_forgotten") {
                return Err(
                    "policy.config.on_forgotten: only with policy.config.subject_keys \
                            (records sealed per data subject)"
                        .into(),
                );
            }
            return Ok(None);
        }
        for field in ["key", "allowed_keys", "context"] {
            if table.contains_key(field) {
                return Err(format!(
                    "policy.config.{field}: not taken with policy.config.subject_keys (each \
                     envelope names its subject's key, which must start with subject_keys); \
                     remove it"
                ));
            }
        }
        let raw: Raw = crate::parse_config(json)?;
        let longest = format!("{}{}", raw.subject_keys, "a".repeat(SUBJECT_NAME_CHARS));
        if raw.subject_keys.is_empty() || check_name(&longest).is_err() {
            return Err(format!(
                "policy.config.subject_keys: \"{}\" is not the prefix of transit key names \
                 (the one the sealing pipeline has, e.g. \"customers-\")",
                raw.subject_keys
            ));
        }
        let on_forgotten = match raw.on_forgotten.as_deref() {
            None | Some("dead-letter") => OnForgotten::DeadLetter,
            Some("skip") => OnForgotten::Skip,
            Some(other) => {
                return Err(format!(
                    "policy.config.on_forgotten: \"{other}\" is not one of \"dead-letter\", \
                     \"skip\""
                ))
            }
        };
        Ok(Some(SubjectOpening {
            prefix: raw.subject_keys.into(),
            on_forgotten,
        }))
    }

    /// The key an envelope names, if it is a subject's key; otherwise the record is
    /// invalid input (a pipeline opening subjects' records opens nothing else).
    pub fn key_of(&self, key_name: &str) -> Result<ResolvedKey, Failure> {
        if !key_name.starts_with(&*self.prefix) {
            return Err(Failure::InvalidInput(format!(
                "the envelope was not sealed under a data subject's key (policy.config.\
                 subject_keys = \"{}\")",
                self.prefix
            )));
        }
        Ok(ResolvedKey::chosen(
            key_name.to_string(),
            "subject_keys",
            self.prefix.clone(),
        ))
    }

    /// What Vault's "key not found" means for an envelope under a subject's key.
    pub fn forgotten() -> TransitError {
        TransitError::InvalidInput(format!(
            "{FORGOTTEN}: the transit key of this record's data subject no longer exists \
             (kafka-transit forget deleted it); the record cannot be opened by anyone"
        ))
    }

    /// Whether a failure reason is [`SubjectOpening::forgotten`]'s.
    pub fn is_forgotten(failure: &Failure) -> bool {
        matches!(failure, Failure::InvalidInput(reason) if reason.contains(FORGOTTEN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{record, Host};
    use crate::Header;

    fn keys(subject: &str) -> SubjectKeys {
        SubjectKeys::parse(subject, "customers-", "subject-ids").unwrap()
    }

    #[test]
    fn the_options_are_checked_and_errors_name_the_field() {
        for (subject, prefix, hmac_key, field) in [
            ("customer", "customers-", "ids", "subject"),
            ("{nope}", "customers-", "ids", "subject"),
            ("{key}", "", "ids", "subject_keys"),
            ("{key}", "a/b-", "ids", "subject_keys"),
            ("{key}", &"p".repeat(230), "ids", "subject_keys"),
            ("{key}", "customers-", "../sys", "subject_hmac_key"),
        ] {
            let error = SubjectKeys::parse(subject, prefix, hmac_key).unwrap_err();
            assert!(
                error.starts_with(&format!("policy.config.{field}: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_subject_comes_from_the_key_a_header_or_the_value_or_the_record_fails() {
        let _host = Host::install();
        let mut with_header = record("k-1", r#"{"customer": {"id": 4711}}"#);
        with_header.headers.push(Header {
            key: "user".into(),
            value: Some(b"u-9".to_vec()),
        });
        assert_eq!(keys("{key}").subject_of(&with_header).unwrap(), "k-1");
        assert_eq!(
            keys("{header:user}").subject_of(&with_header).unwrap(),
            "u-9"
        );
        assert_eq!(
            keys("{value:/customer/id}")
                .subject_of(&with_header)
                .unwrap(),
            "4711"
        );
        let keyless = SourceRecord {
            key: None,
            ..record("", r#"{"customer": {}}"#)
        };
        for subject in ["{key}", "{header:user}", "{value:/customer/id}"] {
            match keys(subject).subject_of(&keyless) {
                Err(Failure::InvalidInput(reason)) => {
                    assert!(reason.contains("not sealed under a shared key"), "{reason}")
                }
                other => panic!("{subject}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_are_the_prefix_and_the_hmac_and_a_rotated_hmac_key_is_refused() {
        let host = Host::install();
        host.create_key("subject-ids");
        let keys = keys("{key}");
        let hmac = transit::hmac("subject-ids", &[b"4711".to_vec()]).unwrap()[0]
            .clone()
            .unwrap();
        let name = keys.learn("4711", &hmac).unwrap();
        assert!(name.name().starts_with("customers-"), "{}", name.name());
        assert_eq!(name.name().len(), "customers-".len() + SUBJECT_NAME_CHARS);
        assert_eq!(keys.cached("4711"), Some(name));
        assert_eq!(keys.cached("4712"), None);
        host.rotate_key("subject-ids");
        let rotated = transit::hmac("subject-ids", &[b"4712".to_vec()]).unwrap()[0]
            .clone()
            .unwrap();
        assert!(matches!(
            keys.learn("4712", &rotated),
            Err(Failure::PolicyError(m)) if m.contains("rotated")
        ));
    }
}
