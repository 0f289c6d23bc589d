//! A record on its way to the sink in format 3.

use std::collections::HashMap;

use super::{is_ours, protection_header, Headers, ProtectionConfig, RecordKeys, Streams};
use crate::batch::Batch;
use crate::envelope_format::record::{self, Flags, FrameHeader, PROTECTION_HEADER};
use crate::transit::{self, EncryptItem, TransitError};
use crate::{failure_from_transit, stamped, Failure, Header, OutputRecord, SourceRecord};

/// A record being protected: what stays in clear, what is protected, and what its
/// ciphertexts are bound to. `extra` is the policy's own state (its transit key, say).
#[derive(Debug)]
pub struct Outgoing<T> {
    /// The record key as it will be on the sink: the source's until [`protect_keys`]
    /// replaces it.
    pub key: Option<Vec<u8>>,
    /// The headers that stay in clear: all of them, or with `headers = "seal"` only
    /// `keep_headers` and `kafka-transit.*` (never an incoming protection header).
    pub headers: Vec<Header>,
    /// What to protect: the value, or with sealed headers their frame and the value;
    /// `None` for a tombstone (or when the policy took the value out first). The policy
    /// puts what protects it here.
    pub value: Option<Vec<u8>>,
    /// The stream name, when the configuration binds it or protects record keys.
    pub stream: Option<String>,
    pub extra: T,
}

impl ProtectionConfig {
    /// A record prepared for protection: its value taken out (framed with the sealed
    /// headers, with `headers = "seal"`), its stream found. A tombstone has no value to
    /// seal headers in: they are dropped and only the kept ones stay.
    pub fn outgoing<T>(
        &self,
        record: SourceRecord,
        streams: &mut Streams,
        extra: T,
    ) -> Result<Outgoing<T>, Failure> {
        let stream = if self.needs_stream() {
            Some(streams.of(&record.topic)?)
        } else {
            None
        };
        let mut headers = Vec::with_capacity(record.headers.len());
        let mut sealed: Vec<FrameHeader> = Vec::new();
        for header in record.headers {
            if header.key == PROTECTION_HEADER {
                continue; // the record's own, written below; a producer's is not kept
            }
            let clear = self.headers == Headers::Keep
                || is_ours(&header.key)
                || self.keep_headers.contains(&header.key);
            if clear {
                headers.push(header);
            } else {
                sealed.push((header.key, header.value));
            }
        }
        let value = match record.value {
            Some(value) if self.headers == Headers::Seal => Some(record::frame(&sealed, &value)),
            value => value,
        };
        Ok(Outgoing {
            key: record.key,
            headers,
            value,
            stream,
            extra,
        })
    }
}

impl<T> Outgoing<T> {
    /// The binding data of this record's ciphertexts (`pointer`: a field's), for Vault's
    /// `associated_data`.
    pub fn binding(&self, flags: Flags, pointer: Option<&str>) -> Vec<u8> {
        record::binding(
            flags,
            self.stream.as_deref().unwrap_or_default(),
            self.key.as_deref(),
            pointer,
        )
    }

    /// [`Outgoing::binding`] without its prefix and flags: an envelope's `aad`.
    pub fn binding_parts(&self, flags: Flags) -> Vec<u8> {
        record::binding_parts(
            flags,
            self.stream.as_deref().unwrap_or_default(),
            self.key.as_deref(),
            None,
        )
    }

    /// The sink record: its key and value as they are now, the kept headers stamped
    /// with `stamp`'s policy and transit key (a tombstone is not stamped), and the
    /// protection header last.
    pub fn output(self, config: &ProtectionConfig, stamp: Option<(&str, &str)>) -> OutputRecord {
        let mut headers = match (stamp, &self.value) {
            (Some((policy, transit_key)), Some(_)) => stamped(self.headers, policy, transit_key),
            _ => self.headers,
        };
        headers.push(protection_header(config.header_flags().header_value()));
        OutputRecord {
            topic: None,
            key: self.key,
            value: self.value,
            headers,
        }
    }
}

/// Replaces each record's key by its protected form (`record_keys`): one Vault call for
/// the batch's distinct (stream, key) pairs under `record_keys_key`. Null keys stay
/// null. With `"encrypt"`, the call carries the first key twice: a key that is not
/// convergent answers twice differently, and then the records fail as a policy error
/// rather than get keys that change every time (no compaction, no per-key order).
pub fn protect_keys<T>(batch: &mut Batch<Outgoing<T>>, config: &ProtectionConfig) {
    let Some(transit_key) = config.record_keys_key.as_deref() else {
        return;
    };
    let mut index: HashMap<(String, Vec<u8>), usize> = HashMap::new();
    let mut distinct: Vec<(String, Vec<u8>)> = Vec::new();
    for out in batch.working() {
        if let (Some(key), Some(stream)) = (&out.key, &out.stream) {
            index
                .entry((stream.clone(), key.clone()))
                .or_insert_with(|| {
                    distinct.push((stream.clone(), key.clone()));
                    distinct.len() - 1
                });
        }
    }
    if distinct.is_empty() {
        return;
    }
    let (what, answers) = match config.record_keys {
        RecordKeys::Keep => return,
        RecordKeys::Encrypt => {
            let mut items: Vec<EncryptItem> = distinct
                .iter()
                .map(|(stream, key)| EncryptItem {
                    plaintext: key.clone(),
                    context: Some(stream.as_bytes().to_vec()),
                })
                .collect();
            items.push(items[0].clone());
            let what = "vault encrypt (record keys)";
            let answer = transit::encrypt(transit_key, &items);
            (what, convergent(answer, items.len(), transit_key, what))
        }
        RecordKeys::Hmac => {
            let inputs: Vec<Vec<u8>> = distinct
                .iter()
                .map(|(stream, key)| [stream.as_bytes(), &[0], key].concat())
                .collect();
            let what = "vault hmac (record keys)";
            (
                what,
                checked(transit::hmac(transit_key, &inputs), inputs.len(), what),
            )
        }
    };
    batch.each(|out| {
        let (Some(key), Some(stream)) = (&out.key, &out.stream) else {
            return Ok(());
        };
        let slot = index[&(stream.clone(), key.clone())];
        match &answers {
            Err(failure) => Err(failure.clone()),
            Ok(results) => match &results[slot] {
                Ok(protected) => {
                    out.key = Some(protected.clone().into_bytes());
                    Ok(())
                }
                Err(error) => Err(failure_from_transit(error.clone(), what)),
            },
        }
    });
}

type Answer = Result<Vec<Result<String, TransitError>>, TransitError>;

/// A whole answer, as each record's failure if it failed or miscounted.
pub(super) fn checked(
    answer: Answer,
    expected: usize,
    what: &str,
) -> Result<Vec<Result<String, TransitError>>, Failure> {
    match answer {
        Ok(results) if results.len() == expected => Ok(results),
        Ok(results) => Err(Failure::PolicyError(format!(
            "{what}: host returned {} results for {expected} items",
            results.len()
        ))),
        Err(error) => Err(failure_from_transit(error, what)),
    }
}

/// An encrypt answer whose last item repeats the first: both must be equal, as a
/// convergent key makes them.
fn convergent(
    answer: Answer,
    expected: usize,
    transit_key: &str,
    what: &str,
) -> Result<Vec<Result<String, TransitError>>, Failure> {
    let mut results = checked(answer, expected, what)?;
    let probe = results.pop().expect("two or more results");
    match (&results[0], probe) {
        (Ok(first), Ok(again)) if *first != again => Err(Failure::PolicyError(format!(
            "{what}: policy.config.record_keys_key = \"{transit_key}\" encrypted one record key \
             twice to different texts: it is not a convergent key, so sink keys would change \
             every time (no compaction, no per-key order); use a key created with \
             derived = true and convergent_encryption = true"
        ))),
        _ => Ok(results),
    }
}
