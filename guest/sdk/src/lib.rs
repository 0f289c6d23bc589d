//! Write [kafka-transit] data-protection policies in Rust.
//!
//! A policy is a WebAssembly component that the kafka-transit host hands batches of
//! Kafka records; it returns one result per record and reaches Vault only through the
//! host's imports ([`transit`], [`envelope`], [`pipeline`], [`log`]). This crate is the one place
//! policies get their WIT bindings (generated from `wit/policy.wit`, shipped inside the
//! crate, see [`WIT`]), plus what every policy needs:
//!
//! - [`configured_policy!`]: a policy whose `init` parses its `[policy.config]` once;
//! - [`through_vault`] and [`through_vault_many`]: one Vault batch call for a whole
//!   batch, results dealt back per record, failures mapped to what the host should do;
//!   [`through_vault_by_key`] and [`through_vault_keyed`] when the transit key is
//!   resolved per record ([`KeyName`]: `key = "{topic}"`), one call per distinct key; a
//!   key a record chose that Vault refuses (403, 404) fails that record's records as
//!   invalid input, never the batch, and reasons name the template, not the key
//!   ([`ResolvedKey`]); `allowed_keys` ([`AllowedKeys`]) limits what records may name;
//! - [`fields`]: JSON fields selected by pointer for field-level policies, over a strict
//!   scanner that leaves every byte outside the selected fields as it came; a value that
//!   cannot hold a selected field (a bare string where `/ssn` is expected) is invalid
//!   input, never passed on in clear;
//! - [`protection`] and [`batch`]: format 3 (docs/protected-records.md): the options
//!   of `[policy.config]` checked for the kind of policy, and the steps of protecting,
//!   opening and rewrapping records (record keys, sealed headers, binding data), over a
//!   batch worked on in several Vault steps; [`pipeline`] tells the sink topic, the
//!   default stream;
//! - [`testing`] (native targets only): an in-memory stand-in for the host's imports, so
//!   a policy is unit-tested with plain `cargo test`, without Vault or Kafka.
//!
//! A policy that replaces each record's key with its HMAC under a transit key (a name,
//! or a template such as `"{topic}"`, resolved per record):
//!
//! ```
//! use kafka_transit_policy_sdk::transit;
//! use kafka_transit_policy_sdk::{configured_policy, through_vault_by_key, OutputRecord,
//!     Prepared, SourceRecord, TransformResult, TransitKeyConfig};
//!
//! configured_policy!(HashKeys, TransitKeyConfig::parse, hash_keys);
//!
//! fn hash_keys(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
//!     through_vault_by_key(
//!         batch,
//!         "vault hmac",
//!         |record| match (config.key.for_record(record), record.key.take()) {
//!             (_, None) => Prepared::Forward,
//!             (Ok(transit_key), Some(key)) => Prepared::Item((transit_key, key)),
//!             (Err(failure), Some(_)) => Prepared::Fail(failure),
//!         },
//!         |transit_key, keys| transit::hmac(transit_key, keys),
//!         |record, _, hmac| OutputRecord { topic: None, key: Some(hmac.into_bytes()),
//!                                          value: record.value, headers: record.headers },
//!     )
//! }
//! # use kafka_transit_policy_sdk::{testing::{record, Host}, Policy};
//! # let host = Host::install();
//! # host.create_key("customers");
//! # HashKeys::init(r#"{"key":"customers"}"#.into()).unwrap();
//! # let out = HashKeys::transform(vec![record("alice", "v")]).remove(0).unwrap();
//! # assert!(out[0].key.as_deref().unwrap().starts_with(b"vault:v1:"));
//! ```
//!
//! Build it for the host with `cargo build --release --target wasm32-wasip2` (or
//! `cargo component build --release`); `kafka-transit policy new NAME` writes a crate
//! like this one with its tests, its WIT and a pipeline file.
//!
//! [kafka-transit]: https://github.com/kafka-transit/kafka-transit

wit_bindgen::generate!({
    path: "wit",
    world: "data-policy",
    pub_export_macro: true,
    export_macro_name: "export_policy",
    default_bindings_module: "kafka_transit_policy_sdk",
    // So that tests can assert_eq! on records, results and failures.
    additional_derives: [PartialEq, Eq],
});

/// The WIT package these bindings were generated from (`kafka-transit:policy@...`). A
/// component built with this crate runs on a kafka-transit host whose `kafka-transit
/// policy wit` prints the same text.
pub const WIT: &str = include_str!("../wit/policy.wit");

pub use exports::kafka_transit::policy::policy::Guest as Policy;
pub use kafka_transit::policy::log::Level;
pub use kafka_transit::policy::types::{
    Failure, Header, OutputRecord, SourceRecord, TransformResult,
};

// In a component the imports are the host's. Natively (`cargo test`) there is no host:
// the same functions, with the same types, answer from the stand-in in `testing`.
#[cfg(target_arch = "wasm32")]
pub use kafka_transit::policy::log::log;
#[cfg(target_arch = "wasm32")]
pub use kafka_transit::policy::{envelope, pipeline, schema_registry, transit};
#[cfg(not(target_arch = "wasm32"))]
pub use testing::imports::{envelope, log, pipeline, schema_registry, transit};

pub mod batch;
pub mod envelope_format;
pub mod field_policies;
pub mod fields;
mod key;
pub mod protection;
pub mod schema_fields;
pub mod subject;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use key::{AllowedKeys, KeyName, ResolvedKey};

use serde::de::DeserializeOwned;
use transit::TransitError;

/// Header naming the policy that produced a record.
pub const POLICY_HEADER: &str = "kafka-transit.policy";
/// Header naming the Vault transit key a record was protected with.
pub const KEY_HEADER: &str = "kafka-transit.key";

/// Parses the pipeline's `[policy.config]` table (JSON text from the host). The error
/// names the offending field, e.g. "policy.config: missing field `key`".
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| {
        // A field's own deserializer (KeyName) may already name the field.
        let message = e.to_string();
        if message.starts_with("policy.config.") {
            message
        } else {
            format!("policy.config: {message}")
        }
    })
}

/// What a failed Vault call under a fixed key means for the records that depended on it.
/// Under a key a record chose (a [`KeyName`] template), [`ResolvedKey::failure`] decides:
/// the `through_vault_*` helpers call it.
pub fn failure_from_transit(error: TransitError, what: &str) -> Failure {
    match error {
        TransitError::InvalidInput(m) => Failure::InvalidInput(format!("{what}: {m}")),
        // Nothing about the record can fix a missing key or a missing permission, but
        // skipping the record would lose it: pause and retry until an operator acts.
        TransitError::PermissionDenied(m) => Failure::Retryable(format!("{what}: {m}")),
        TransitError::Unavailable(m) => Failure::Retryable(format!("{what}: {m}")),
        TransitError::KeyNotFound(m) => Failure::PolicyError(format!("{what}: {m}")),
        TransitError::Other(m) => Failure::PolicyError(format!("{what}: {m}")),
    }
}

/// The record unchanged, bound for the sink's default topic.
pub fn forward(record: SourceRecord) -> OutputRecord {
    OutputRecord {
        topic: None,
        key: record.key,
        value: record.value,
        headers: record.headers,
    }
}

/// `headers` with every kafka-transit stamp removed, so a decrypted record comes out as
/// it went in.
pub fn without_stamps(headers: Vec<Header>) -> Vec<Header> {
    headers
        .into_iter()
        .filter(|h| h.key != POLICY_HEADER && h.key != KEY_HEADER)
        .collect()
}

/// `headers` stamped with the policy that produced the record and the key it used,
/// replacing any earlier stamps.
pub fn stamped(headers: Vec<Header>, policy: &str, key: &str) -> Vec<Header> {
    let mut headers = without_stamps(headers);
    headers.push(Header {
        key: POLICY_HEADER.into(),
        value: Some(policy.as_bytes().to_vec()),
    });
    headers.push(Header {
        key: KEY_HEADER.into(),
        value: Some(key.as_bytes().to_vec()),
    });
    headers
}

/// Where a derived key's context comes from.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContextSource {
    /// No context (the key is not derived).
    #[default]
    None,
    /// The record's key bytes (one derived key per tenant or entity).
    RecordKey,
}

/// Configuration shared by the whole-value transit policies.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "RawTransitKeyConfig")]
pub struct TransitKeyConfig {
    /// The transit key's name, or a template naming one per record (see [`KeyName`]),
    /// held to `policy.config.allowed_keys` if the configuration lists any.
    pub key: KeyName,
    /// A fixed derivation context (UTF-8), for keys created with `derived = true`.
    pub context: Option<String>,
    /// Take the derivation context from each record instead: `"record-key"`.
    pub context_from: ContextSource,
}

/// `[policy.config]` of the whole-value transit policies as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransitKeyConfig {
    key: KeyName,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    context_from: ContextSource,
    #[serde(default)]
    allowed_keys: Option<Vec<String>>,
}

impl TryFrom<RawTransitKeyConfig> for TransitKeyConfig {
    type Error = String;

    fn try_from(raw: RawTransitKeyConfig) -> Result<Self, String> {
        TransitKeyConfig {
            key: with_allowed_keys(raw.key, raw.allowed_keys)?,
            context: raw.context,
            context_from: raw.context_from,
        }
        .validated()
    }
}

/// `key` held to `policy.config.allowed_keys` (`allowed`), as every policy with a `key`
/// takes it.
pub(crate) fn with_allowed_keys(
    key: KeyName,
    allowed: Option<Vec<String>>,
) -> Result<KeyName, String> {
    let allowed = allowed.as_deref().map(AllowedKeys::parse).transpose()?;
    key.allowing(allowed)
}

impl TransitKeyConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        parse_config::<Self>(json)
    }

    /// The checks serde cannot express, for policies that embed these fields in a
    /// larger config of their own.
    pub fn validated(self) -> Result<Self, String> {
        if self.context.is_some() && matches!(self.context_from, ContextSource::RecordKey) {
            return Err("policy.config: set either `context` or `context_from`, not both".into());
        }
        Ok(self)
    }

    /// The record's transit key and derivation context, for a record with fields to
    /// send to Vault (field policies resolve neither for a record without any).
    pub fn key_and_context(
        &self,
        record: &SourceRecord,
    ) -> Result<(Option<ResolvedKey>, Option<Vec<u8>>), Failure> {
        let key = self.key.for_record(record)?;
        Ok((Some(key), self.context_for(record.key.as_deref())?))
    }

    /// The derivation context for one record. A record without a key cannot have a
    /// per-record context: that is the record's fault, not Vault's.
    pub fn context_for(&self, record_key: Option<&[u8]>) -> Result<Option<Vec<u8>>, Failure> {
        match (&self.context_from, &self.context) {
            (ContextSource::RecordKey, _) => match record_key {
                Some(k) if !k.is_empty() => Ok(Some(k.to_vec())),
                _ => Err(Failure::InvalidInput(
                    "record has no key, but policy.config.context_from = \"record-key\"".into(),
                )),
            },
            (ContextSource::None, Some(c)) => Ok(Some(c.as_bytes().to_vec())),
            (ContextSource::None, None) => Ok(None),
        }
    }

    /// Takes a record's value as a Vault ciphertext to decrypt or rewrap, with the
    /// record's key and context: for [`through_vault_by_key`]. A value that is not a
    /// ciphertext fails the record: passing it on would pass on whatever it is.
    pub fn ciphertext_item(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, transit::DecryptItem)> {
        self.key.with_value(record, |value, record| {
            let ciphertext = ciphertext_text(value)?;
            let context = self.context_for(record.key.as_deref())?;
            Ok(transit::DecryptItem {
                ciphertext,
                context,
            })
        })
    }
}

/// A record's value as Vault ciphertext text (`vault:v<N>:...`). A value that is not one
/// fails the record: passing it on would pass on whatever it is.
pub fn ciphertext_text(value: Vec<u8>) -> Result<String, Failure> {
    match String::from_utf8(value) {
        Ok(text) if text.starts_with("vault:v") => Ok(text),
        _ => Err(Failure::InvalidInput(
            "value is not a Vault transit ciphertext (expected vault:v<N>:...)".into(),
        )),
    }
}

/// Runs `call` once on the distinct items of `items` (by `identity`) and gives every
/// item its answer, so a batch in which many records share a ciphertext (envelopes
/// sealed under one data key, say) costs Vault one item per ciphertext.
pub fn deduplicated<I: Clone, O: Clone>(
    items: &[I],
    identity: impl Fn(&I) -> &str,
    call: impl FnOnce(&[I]) -> Result<Vec<Result<O, TransitError>>, TransitError>,
) -> Result<Vec<Result<O, TransitError>>, TransitError> {
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let slots: Vec<usize> = items
        .iter()
        .map(|item| {
            *first.entry(identity(item)).or_insert_with(|| {
                distinct.push(item.clone());
                distinct.len() - 1
            })
        })
        .collect();
    let answers = call(&distinct)?;
    if answers.len() != distinct.len() {
        // through_vault reports a miscount; keep it visible rather than guess.
        return Ok(answers);
    }
    Ok(slots
        .into_iter()
        .map(|slot| answers[slot].clone())
        .collect())
}

/// What a policy wants done with one record of a batch before the Vault call.
pub enum Prepared<I> {
    /// Forward the record unchanged (a tombstone, say).
    Forward,
    /// Send this item to Vault; the record is finished with the item's result. With
    /// [`through_vault_many`], the item is the record's state and its (many) items.
    Item(I),
    /// The record is bad as it stands.
    Fail(Failure),
}

impl<I> Prepared<I> {
    /// Goes on with the item, if there is one.
    pub fn and_then<J>(self, next: impl FnOnce(I) -> Prepared<J>) -> Prepared<J> {
        match self {
            Prepared::Forward => Prepared::Forward,
            Prepared::Item(item) => next(item),
            Prepared::Fail(failure) => Prepared::Fail(failure),
        }
    }
}

/// Runs one Vault batch call for the records of `batch` that need it and maps the
/// per-item results back onto the records, in order. Every record gets exactly one
/// result; a failure of the whole call fails exactly the records that were in it.
pub fn through_vault<I, O>(
    batch: Vec<SourceRecord>,
    what: &str,
    mut prepare: impl FnMut(&mut SourceRecord) -> Prepared<I>,
    call: impl FnOnce(&[I]) -> Result<Vec<Result<O, TransitError>>, TransitError>,
    mut finish: impl FnMut(SourceRecord, O) -> OutputRecord,
) -> Vec<TransformResult> {
    through_vault_many(
        batch,
        what,
        |record| prepare(record).and_then(|item| Prepared::Item(((), vec![item]))),
        call,
        |record, (), mut outputs| {
            Ok(finish(
                record,
                outputs.pop().expect("one result for one item"),
            ))
        },
    )
}

/// [`through_vault`] for policies whose key is resolved per record ([`KeyName`]):
/// `prepare` gives each record's key with its item, there is one Vault batch call per
/// distinct key, and `finish` gets the record's key back (for [`stamped`]). The key is a
/// [`ResolvedKey`] from [`KeyName::for_record`] (a key the record chose: Vault refusing
/// it fails only that record's records) or a `String` (a fixed key).
pub fn through_vault_by_key<K: Into<ResolvedKey>, I, O>(
    batch: Vec<SourceRecord>,
    what: &str,
    mut prepare: impl FnMut(&mut SourceRecord) -> Prepared<(K, I)>,
    call: impl FnMut(&str, &[I]) -> Result<Vec<Result<O, TransitError>>, TransitError>,
    mut finish: impl FnMut(SourceRecord, &str, O) -> OutputRecord,
) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        what,
        |record| {
            prepare(record).and_then(|(key, item)| {
                let key: ResolvedKey = key.into();
                Prepared::Item((key.clone(), key, vec![item]))
            })
        },
        call,
        |record, key, mut outputs| {
            let output = outputs.pop().expect("one result for one item");
            Ok(finish(record, &key, output))
        },
    )
}

/// [`through_vault`] for policies that send zero or more items per record (one per
/// field, say). `prepare` may also hand over per-record state (a parsed document) that
/// `finish` gets back with that record's results, in item order, so nothing is parsed
/// twice. Still one Vault call for all items of all records. A record with no items
/// does not depend on the call and is finished whatever the call's fate; a record with
/// a failed item fails with that item's error.
pub fn through_vault_many<S, I, O>(
    batch: Vec<SourceRecord>,
    what: &str,
    mut prepare: impl FnMut(&mut SourceRecord) -> Prepared<(S, Vec<I>)>,
    call: impl FnOnce(&[I]) -> Result<Vec<Result<O, TransitError>>, TransitError>,
    finish: impl FnMut(SourceRecord, S, Vec<O>) -> Result<OutputRecord, Failure>,
) -> Vec<TransformResult> {
    let mut call = Some(call);
    through_vault_keyed(
        batch,
        what,
        |record| {
            prepare(record)
                .and_then(|(state, items)| Prepared::Item((ResolvedKey::fixed(""), state, items)))
        },
        |_, items| (call.take().expect("one key, so one call"))(items),
        finish,
    )
}

/// The general form: each record names its transit key, its state and its items;
/// there is one Vault batch call per distinct key (in order of first use), and each
/// record gets its own results back in item order. Failures are mapped with
/// [`ResolvedKey::failure`]: a key the record chose that Vault refuses (permission
/// denied, not found) fails its records as invalid input, a fixed one pauses the batch.
pub fn through_vault_keyed<K: Into<ResolvedKey>, S, I, O>(
    batch: Vec<SourceRecord>,
    what: &str,
    mut prepare: impl FnMut(&mut SourceRecord) -> Prepared<(K, S, Vec<I>)>,
    mut call: impl FnMut(&str, &[I]) -> Result<Vec<Result<O, TransitError>>, TransitError>,
    mut finish: impl FnMut(SourceRecord, S, Vec<O>) -> Result<OutputRecord, Failure>,
) -> Vec<TransformResult> {
    enum Slot<S> {
        Forward,
        /// The record's state, its key's group and how many items it has there.
        Items(S, usize, usize),
        Fail(Failure),
    }
    let mut batch = batch;
    // Few distinct keys per batch: a list beats a map.
    let mut groups: Vec<(ResolvedKey, Vec<I>)> = Vec::new();
    let slots: Vec<Slot<S>> = batch
        .iter_mut()
        .map(|record| match prepare(record) {
            Prepared::Forward => Slot::Forward,
            Prepared::Item((key, state, mine)) => {
                let key: ResolvedKey = key.into();
                let group = match groups.iter().position(|(k, _)| *k == key) {
                    Some(group) => group,
                    None => {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    }
                };
                let count = mine.len();
                groups[group].1.extend(mine);
                Slot::Items(state, group, count)
            }
            Prepared::Fail(failure) => Slot::Fail(failure),
        })
        .collect();

    let mut outcomes: Vec<Result<_, Failure>> = groups
        .iter()
        .map(|(key, items)| {
            if items.is_empty() {
                return Ok(Vec::new().into_iter());
            }
            match call(key, items) {
                Ok(results) if results.len() == items.len() => Ok(results.into_iter()),
                Ok(results) => Err(Failure::PolicyError(format!(
                    "{what}: host returned {} results for {} items",
                    results.len(),
                    items.len()
                ))),
                Err(error) => Err(key.failure(error, what)),
            }
        })
        .collect();

    // Within a group, records own consecutive runs of items, in record order.
    batch
        .into_iter()
        .zip(slots)
        .map(|(record, slot)| match slot {
            Slot::Forward => Ok(vec![forward(record)]),
            Slot::Fail(failure) => Err(failure),
            Slot::Items(state, _, 0) => finish(record, state, Vec::new()).map(|out| vec![out]),
            Slot::Items(state, group, count) => match &mut outcomes[group] {
                Err(failure) => Err(failure.clone()),
                Ok(results) => {
                    // Take all of this record's results before looking at any, so an
                    // early error cannot leave some behind for the next record.
                    let mine: Vec<_> = results.by_ref().take(count).collect();
                    match mine.into_iter().collect::<Result<Vec<O>, _>>() {
                        Ok(outputs) => finish(record, state, outputs).map(|out| vec![out]),
                        Err(error) => Err(groups[group].0.failure(error, what)),
                    }
                }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> SourceRecord {
        SourceRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    /// Each record's value is a list of words, one item per word; "bad" fails its
    /// item, "none" forwards the record, "" has no items.
    fn run(
        values: &[&str],
        call: impl FnOnce(&[String]) -> Result<Vec<Result<String, TransitError>>, TransitError>,
    ) -> Vec<Result<String, String>> {
        through_vault_many(
            values.iter().map(|v| record(v)).collect(),
            "test",
            |record| match String::from_utf8(record.value.clone().unwrap())
                .unwrap()
                .as_str()
            {
                "none" => Prepared::Forward,
                "fail" => Prepared::Fail(Failure::InvalidInput("fail".into())),
                words => Prepared::Item((
                    "state",
                    words.split_whitespace().map(String::from).collect(),
                )),
            },
            call,
            |record, state, outputs| {
                assert_eq!(state, "state");
                Ok(OutputRecord {
                    value: Some(outputs.join(" ").into_bytes()),
                    ..forward(record)
                })
            },
        )
        .into_iter()
        .map(|result| match result {
            Ok(mut out) => Ok(String::from_utf8(out.remove(0).value.unwrap_or_default()).unwrap()),
            Err(failure) => Err(format!("{failure:?}")),
        })
        .collect()
    }

    fn upper(items: &[String]) -> Result<Vec<Result<String, TransitError>>, TransitError> {
        Ok(items
            .iter()
            .map(|i| match i.as_str() {
                "bad" => Err(TransitError::InvalidInput("bad".into())),
                i => Ok(i.to_uppercase()),
            })
            .collect())
    }

    #[test]
    fn many_items_go_in_one_call_and_come_back_per_record() {
        let mut calls = 0;
        let results = run(&["a b", "none", "", "c", "fail", "d bad e", "f"], |items| {
            calls += 1;
            assert_eq!(items, ["a", "b", "c", "d", "bad", "e", "f"]);
            upper(items)
        });
        assert_eq!(calls, 1);
        assert_eq!(results[0], Ok("A B".into()));
        assert_eq!(results[1], Ok("none".into()));
        assert_eq!(results[2], Ok("".into()));
        assert_eq!(results[3], Ok("C".into()));
        assert!(results[4].as_ref().unwrap_err().contains("fail"));
        assert!(results[5].as_ref().unwrap_err().contains("test: bad"));
        // The failed record's leftover item ("e") does not shift the next record's.
        assert_eq!(results[6], Ok("F".into()));
    }

    #[test]
    fn one_call_per_key_and_a_failed_key_fails_only_its_records() {
        let mut calls = Vec::new();
        let results: Vec<_> = through_vault_keyed(
            ["a:x", "b:y", "a:z", "c:w"].map(record).to_vec(),
            "test",
            |record| {
                let value = String::from_utf8(record.value.clone().unwrap()).unwrap();
                let (key, word) = value.split_once(':').unwrap();
                Prepared::Item((key.to_string(), key.to_string(), vec![word.to_string()]))
            },
            |key, items| {
                calls.push(format!("{key}:{}", items.join(",")));
                match key {
                    "c" => Err(TransitError::Unavailable("sealed".into())),
                    _ => upper(items),
                }
            },
            |record, key, outputs| {
                Ok(OutputRecord {
                    value: Some(format!("{key}={}", outputs.join(" ")).into_bytes()),
                    ..forward(record)
                })
            },
        )
        .into_iter()
        .map(|r| r.map(|mut out| String::from_utf8(out.remove(0).value.unwrap()).unwrap()))
        .collect();
        assert_eq!(calls, ["a:x,z", "b:y", "c:w"]);
        assert_eq!(results[0], Ok("a=X".to_string()));
        assert_eq!(results[1], Ok("b=Y".to_string()));
        assert_eq!(results[2], Ok("a=Z".to_string()));
        assert!(matches!(results[3], Err(Failure::Retryable(_))));
    }

    /// `through_vault_keyed` over records "tenant:word", keys from `tenant-{header:t}`.
    fn per_tenant(
        records: &[&str],
        mut call: impl FnMut(&str, &[String]) -> Result<Vec<Result<String, TransitError>>, TransitError>,
    ) -> Vec<TransformResult> {
        let key = KeyName::parse("tenant-{header:t}").unwrap();
        let batch = records
            .iter()
            .map(|r| {
                let (tenant, word) = r.split_once(':').unwrap();
                let mut record = record(word);
                record.headers.push(Header {
                    key: "t".into(),
                    value: Some(tenant.as_bytes().to_vec()),
                });
                record
            })
            .collect();
        through_vault_keyed(
            batch,
            "test",
            |record| match key.for_record(record) {
                Ok(key) => Prepared::Item((key, (), vec![record.value.take().unwrap()])),
                Err(failure) => Prepared::Fail(failure),
            },
            |key, items| {
                let words: Vec<String> = items
                    .iter()
                    .map(|i| String::from_utf8(i.clone()).unwrap())
                    .collect();
                call(key, &words)
            },
            |record, (), outputs| {
                Ok(OutputRecord {
                    value: Some(outputs.concat().into_bytes()),
                    ..forward(record)
                })
            },
        )
    }

    fn assert_set_aside_quietly(result: &TransformResult, tenant: &str) {
        match result {
            Err(Failure::InvalidInput(reason)) => {
                assert!(reason.starts_with("test: "), "{reason}");
                assert!(reason.contains("\"tenant-{header:t}\""), "{reason}");
                assert!(!reason.contains(tenant), "{tenant} leaks: {reason}");
            }
            other => panic!("{tenant}: {other:?}"),
        }
    }

    #[test]
    fn a_per_record_key_vault_refuses_fails_its_records_as_invalid_input_whole_call_or_item() {
        let denied = |key: &str| TransitError::PermissionDenied(format!("no: transit/x/{key}"));
        let results = per_tenant(
            &[
                "acme:a",
                "evil:b",
                "gone:c",
                "mixed:d",
                "mixed:poison",
                "acme:e",
            ],
            |key, words| match key {
                "tenant-evil" => Err(denied(key)),
                "tenant-gone" => Err(TransitError::KeyNotFound(format!("{key} not found"))),
                _ => Ok(words
                    .iter()
                    .map(|w| match w.as_str() {
                        "poison" => Err(denied(key)),
                        w => Ok(w.to_uppercase()),
                    })
                    .collect()),
            },
        );
        let value = |i: usize| results[i].as_ref().unwrap()[0].value.clone().unwrap();
        assert_eq!(value(0), b"A");
        assert_eq!(value(3), b"D");
        assert_eq!(value(5), b"E");
        assert_set_aside_quietly(&results[1], "evil");
        assert_set_aside_quietly(&results[2], "gone");
        assert_set_aside_quietly(&results[4], "mixed");
    }

    #[test]
    fn under_a_per_record_key_other_failures_keep_their_kind_without_the_name() {
        let results = per_tenant(&["acme:a"], |key, _| {
            Err(TransitError::Unavailable(format!("sealed, key `{key}`")))
        });
        assert_eq!(
            results[0],
            Err(Failure::Retryable(
                "test: sealed, key `tenant-{header:t}`".into()
            ))
        );
    }

    #[test]
    fn a_fixed_key_vault_refuses_waits_for_the_operator() {
        let results = through_vault_by_key(
            vec![record("a")],
            "test",
            |record| Prepared::Item(("customers".to_string(), record.value.take().unwrap())),
            |_, _: &[Vec<u8>]| -> Result<Vec<Result<Vec<u8>, TransitError>>, TransitError> {
                Err(TransitError::PermissionDenied("denied".into()))
            },
            |record, _, _| forward(record),
        );
        assert_eq!(results[0], Err(Failure::Retryable("test: denied".into())));
    }

    #[test]
    fn every_config_with_a_key_takes_allowed_keys() {
        let transit = TransitKeyConfig::parse(
            r#"{"key":"tenant-{header:t}","allowed_keys":["tenant-a","tenant-b*"]}"#,
        )
        .unwrap();
        assert!(transit.key.allowed_keys().unwrap().allows("tenant-bx"));
        let envelope =
            EnvelopeConfig::parse(r#"{"key":"{topic}","allowed_keys":["orders"]}"#).unwrap();
        assert!(!envelope.key.allowed_keys().unwrap().allows("tenant-a"));
        let fields = fields::FieldsConfig::parse(
            r#"{"key":"{topic}","fields":["/a"],"allowed_keys":["t*"]}"#,
        )
        .unwrap();
        assert!(fields.transit.key.allowed_keys().is_some());

        for error in [
            TransitKeyConfig::parse(r#"{"key":"customers","allowed_keys":["tenant-*"]}"#),
            TransitKeyConfig::parse(r#"{"key":"{topic}","allowed_keys":["a*b"]}"#),
        ]
        .map(Result::unwrap_err)
        .into_iter()
        .chain([
            EnvelopeConfig::parse(r#"{"key":"stream","allowed_keys":[]}"#).unwrap_err(),
            fields::FieldsConfig::parse(r#"{"key":"k","fields":["/a"],"allowed_keys":["x"]}"#)
                .unwrap_err(),
        ]) {
            assert!(error.starts_with("policy.config.allowed_keys"), "{error}");
        }
    }

    #[test]
    fn a_failed_call_fails_only_the_records_in_it() {
        let results = run(&["a", "", "b"], |_| {
            Err(TransitError::Unavailable("sealed".into()))
        });
        assert!(results[0].as_ref().unwrap_err().contains("Retryable"));
        assert_eq!(results[1], Ok("".into()));
        assert!(results[2].as_ref().unwrap_err().contains("Retryable"));
    }

    #[test]
    fn a_miscounting_host_is_a_policy_error_and_no_items_means_no_call() {
        let results = run(&["a b"], |_| Ok(vec![Ok("A".into())]));
        assert!(results[0]
            .as_ref()
            .unwrap_err()
            .contains("1 results for 2 items"));
        let results = run(&["", "none"], |_| panic!("no items, no call"));
        assert_eq!(results[0], Ok("".into()));
    }
}

/// Configuration of the envelope policies: a transit key and an optional fixed
/// derivation context (one data key serves many records, so the context cannot vary
/// per record).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "RawEnvelopeConfig")]
pub struct EnvelopeConfig {
    /// The transit key that generates and wraps the data keys, or a template naming one
    /// per record (see [`KeyName`]); data keys are cached per resolved key. Held to
    /// `policy.config.allowed_keys` if the configuration lists any.
    pub key: KeyName,
    /// A fixed derivation context (UTF-8), for keys created with `derived = true`.
    pub context: Option<String>,
}

/// `[policy.config]` of the envelope policies as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelopeConfig {
    key: KeyName,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    allowed_keys: Option<Vec<String>>,
}

impl TryFrom<RawEnvelopeConfig> for EnvelopeConfig {
    type Error = String;

    fn try_from(raw: RawEnvelopeConfig) -> Result<Self, String> {
        Ok(EnvelopeConfig {
            key: with_allowed_keys(raw.key, raw.allowed_keys)?,
            context: raw.context,
        })
    }
}

impl EnvelopeConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.contains("\"context_from\"") {
            return Err(
                "policy.config.context_from: envelope policies take one fixed `context`; \
                 per-record contexts would need a data key per record"
                    .into(),
            );
        }
        parse_config(json)
    }

    pub fn context(&self) -> Option<&[u8]> {
        self.context.as_deref().map(str::as_bytes)
    }
}

/// Defines and exports a policy whose `init` parses a configuration once per instance
/// and whose `transform` runs with it:
///
/// ```ignore
/// kafka_transit_policy_sdk::configured_policy!(EncryptValue, TransitKeyConfig::parse, encrypt);
/// fn encrypt(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> { ... }
/// ```
///
/// The component exports exist only in a wasm32 build. Natively the policy is a plain
/// public type (`EncryptValue::transform(...)` through [`Policy`]), so that several
/// policies can live in one native program: the fuzz targets (fuzz/) run every
/// built-in policy against the `testing` host in one binary, and exports with the
/// same symbol names would collide there.
#[macro_export]
macro_rules! configured_policy {
    ($policy:ident, $parse:path, $transform:path) => {
        // A component instance is single-threaded: a thread-local cell is all the
        // synchronisation the configuration needs.
        std::thread_local! {
            static CONFIG: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
                const { std::cell::RefCell::new(None) };
        }

        pub struct $policy;

        impl $crate::Policy for $policy {
            fn init(config: String) -> Result<(), String> {
                let parsed = $parse(&config)?;
                CONFIG.with(|cell| *cell.borrow_mut() = Some(Box::new(parsed)));
                Ok(())
            }

            fn transform(batch: Vec<$crate::SourceRecord>) -> Vec<$crate::TransformResult> {
                CONFIG.with(
                    |cell| match cell.borrow().as_ref().and_then(|c| c.downcast_ref()) {
                        Some(config) => $transform(config, batch),
                        None => $crate::fail_all(batch, "policy used before init"),
                    },
                )
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::export_policy!($policy);
    };
}

/// Every record of the batch fails with a policy error.
pub fn fail_all(batch: Vec<SourceRecord>, reason: &str) -> Vec<TransformResult> {
    batch
        .iter()
        .map(|_| Err(Failure::PolicyError(reason.into())))
        .collect()
}
