//! The one place kafka-transit policies get their WIT bindings, plus the few helpers
//! every policy needs (configuration parsing, mapping Vault errors to record failures,
//! the headers the built-in policies stamp on records).
//!
//! A policy implements [`Policy`] and registers itself with
//! `kafka_transit_policy_sdk::export_policy!(MyPolicy);`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "data-policy",
    pub_export_macro: true,
    export_macro_name: "export_policy",
    default_bindings_module: "kafka_transit_policy_sdk",
});

pub use exports::kafka_transit::policy::policy::Guest as Policy;
pub use kafka_transit::policy::log::{log, Level};
pub use kafka_transit::policy::transit;
pub use kafka_transit::policy::types::{Failure, Header, OutputRecord, SourceRecord, TransformResult};

use serde::de::DeserializeOwned;
use transit::TransitError;

/// Header naming the policy that produced a record.
pub const POLICY_HEADER: &str = "kafka-transit.policy";
/// Header naming the Vault transit key a record was protected with.
pub const KEY_HEADER: &str = "kafka-transit.key";

/// Parses the pipeline's `[policy.config]` table (JSON text from the host). The error
/// names the offending field, e.g. "policy.config: missing field `key`".
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("policy.config: {e}"))
}

/// What a failed Vault call means for the records that depended on it.
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
#[serde(deny_unknown_fields)]
pub struct TransitKeyConfig {
    /// The transit key's name.
    pub key: String,
    /// A fixed derivation context (UTF-8), for keys created with `derived = true`.
    #[serde(default)]
    pub context: Option<String>,
    /// Take the derivation context from each record instead: `"record-key"`.
    #[serde(default)]
    pub context_from: ContextSource,
}

impl TransitKeyConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        let config: Self = parse_config(json)?;
        if config.key.is_empty() {
            return Err("policy.config.key: must name a Vault transit key".into());
        }
        if config.context.is_some() && matches!(config.context_from, ContextSource::RecordKey) {
            return Err(
                "policy.config: set either `context` or `context_from`, not both".into(),
            );
        }
        Ok(config)
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
}

/// What a policy wants done with one record of a batch before the Vault call.
pub enum Prepared<I> {
    /// Forward the record unchanged (a tombstone, say).
    Forward,
    /// Send this item to Vault; the record is finished with the item's result.
    Item(I),
    /// The record is bad as it stands.
    Fail(Failure),
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
    enum Slot {
        Forward,
        Item(usize),
        Fail(Failure),
    }
    let mut batch = batch;
    let mut items = Vec::new();
    let slots: Vec<Slot> = batch
        .iter_mut()
        .map(|record| match prepare(record) {
            Prepared::Forward => Slot::Forward,
            Prepared::Item(item) => {
                items.push(item);
                Slot::Item(items.len() - 1)
            }
            Prepared::Fail(failure) => Slot::Fail(failure),
        })
        .collect();

    let outcome: Result<Vec<Option<Result<O, TransitError>>>, Failure> = if items.is_empty() {
        Ok(Vec::new())
    } else {
        match call(&items) {
            Ok(results) if results.len() == items.len() => {
                Ok(results.into_iter().map(Some).collect())
            }
            Ok(results) => Err(Failure::PolicyError(format!(
                "{what}: host returned {} results for {} items",
                results.len(),
                items.len()
            ))),
            Err(error) => Err(failure_from_transit(error, what)),
        }
    };
    let mut outcome = outcome;

    batch
        .into_iter()
        .zip(slots)
        .map(|(record, slot)| match slot {
            Slot::Forward => Ok(vec![forward(record)]),
            Slot::Fail(failure) => Err(failure),
            Slot::Item(index) => match &mut outcome {
                Err(failure) => Err(failure.clone()),
                Ok(results) => match results[index].take().expect("each item is used once") {
                    Ok(output) => Ok(vec![finish(record, output)]),
                    Err(error) => Err(failure_from_transit(error, what)),
                },
            },
        })
        .collect()
}
