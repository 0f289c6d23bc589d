//! Moves envelopes that `envelope-seal` made to the transit key's latest version after a
//! rotation, without opening them: only the wrapped data key in each envelope's header
//! is rewrapped (Vault's `transit/rewrap`, inside Vault), and the nonce, ciphertext and
//! tag are copied unchanged. Format versions 2 and 3 leave the wrapped key out of the
//! tag for exactly this (docs/envelope-format.md). Neither this policy nor the host sees
//! a data key or a plaintext. Envelopes sealed under one data key share one wrapped key,
//! and a batch sends Vault each distinct wrapped key once.
//!
//! A value that is not an envelope, one sealed under another transit key, and a format
//! version 1 envelope (whose tag covers the wrapped key) are invalid input, never passed
//! on. Keys and headers stay as they are. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`.
//!
//! Format 3 (docs/protected-records.md): a version 3 envelope must come with its
//! `kafka-transit.protection` header (same flags), and is rewrapped in place like a
//! version 2 one. With `record_keys = "encrypt"` and `record_keys_key`, encrypted record
//! keys (tombstones' too) are rewrapped to the latest key version as well (stream:
//! `stream`, default the record's own topic), so that compaction converges again after
//! a rotation. An envelope bound to its record key (flag `KEY`) whose key changes that
//! way cannot keep its tag: it is opened and sealed again under the new key, with its
//! compression and `pad_to` (required for padded records): **this policy sees the
//! plaintext of those records**.

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::envelope::{self, OpenItem, SealItem};
use kafka_transit_policy_sdk::envelope_format::record::{Compression, Flags};
use kafka_transit_policy_sdk::envelope_format::{self, FORMAT_VERSION_1};
use kafka_transit_policy_sdk::protection::{
    check_envelope, is_protected, rewrap_keys, seal_options, Incoming, Protected, Role, Shape,
    Streams,
};
use kafka_transit_policy_sdk::transit::{self, DecryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, deduplicated, forward, EnvelopeConfig, Failure, OutputRecord, ResolvedKey,
    SourceRecord, TransformResult,
};

type Config = Protected<EnvelopeConfig>;

fn parse(json: &str) -> Result<Config, String> {
    Protected::parse(json, Role::Rewrap, Shape::Envelope, EnvelopeConfig::parse)
}

configured_policy!(EnvelopeRewrap, parse, rewrap);

/// A record's envelope and transit key; then, if it is sealed again, its plaintext.
struct Envelope {
    key: ResolvedKey,
    envelope: Vec<u8>,
    plaintext: Option<Vec<u8>>,
}

/// Whether a record's envelope must be sealed again: it is bound to a key that changed.
fn resealed(incoming: &Incoming<Option<Envelope>>) -> bool {
    incoming.extra.is_some() && incoming.flags.is_some_and(Flags::key) && incoming.key_changed()
}

fn rewrap(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let (envelope_config, protection) = (&config.config, &config.protection);
    let context = envelope_config.context().map(<[u8]>::to_vec);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let envelope = match record.value.take() {
            None if !is_protected(&record) => return Start::Output(forward(record)),
            None => None,
            Some(envelope) => match envelope_config.key.for_record(&record) {
                Ok(key) => Some(Envelope {
                    key,
                    envelope,
                    plaintext: None,
                }),
                Err(failure) => return Start::Fail(failure),
            },
        };
        let incoming = match protection.incoming(record, &mut streams, envelope) {
            Ok(incoming) => incoming,
            Err(failure) => return Start::Fail(failure),
        };
        if let Some(envelope) = &incoming.extra {
            if let Err(failure) = rewrappable(envelope, &incoming) {
                return Start::Fail(failure);
            }
        }
        Start::Work(incoming)
    });
    rewrap_keys(&mut batch, protection);
    batch.each(|incoming| match incoming.flags {
        Some(flags) if resealed(incoming) && flags.padded() && protection.pad_to == 0 => {
            Err(Failure::PolicyError(
                "a padded envelope bound to its record key is sealed again when the key is                  rewrapped: set policy.config.pad_to to the multiple its protecting policy                  pads to"
                    .into(),
            ))
        }
        _ => Ok(()),
    });
    // In place: the wrapped data key alone.
    batch.vault(
        "vault rewrap",
        |incoming| {
            if resealed(incoming) {
                return Ok(None);
            }
            let Some(envelope) = &incoming.extra else {
                return Ok(None);
            };
            let wrapped = envelope_format::parse(&envelope.envelope)
                .map_err(invalid)?
                .wrapped_key
                .to_string();
            let item = DecryptItem {
                ciphertext: wrapped,
                context: context.clone(),
            };
            Ok(Some((envelope.key.clone(), vec![item])))
        },
        |key, items| {
            deduplicated(
                items,
                |item| &item.ciphertext,
                |distinct| transit::rewrap(key, distinct),
            )
        },
        |incoming, mut rewrapped| {
            if let Some(envelope) = incoming.extra.take() {
                let header = envelope_format::parse(&envelope.envelope).map_err(invalid)?;
                let value = header
                    .rewrapped(&rewrapped.pop().expect("one item per envelope"))
                    .map_err(invalid)?;
                incoming.value = Some(value);
            }
            Ok(())
        },
    );
    // Sealed again: opened with the binding it was made with...
    batch.vault(
        "envelope open",
        |incoming| {
            if !resealed(incoming) {
                return Ok(None);
            }
            let aad = incoming.binding_parts();
            let Some(envelope) = &mut incoming.extra else {
                return Ok(None);
            };
            let item = OpenItem {
                envelope: std::mem::take(&mut envelope.envelope),
                aad,
            };
            Ok(Some((envelope.key.clone(), vec![item])))
        },
        |key, items| envelope::open(key, envelope_config.context(), items),
        |incoming, mut plaintexts| {
            if let Some(envelope) = &mut incoming.extra {
                envelope.plaintext = plaintexts.pop();
            }
            Ok(())
        },
    );
    // ... and sealed with the one it leaves with, its flags as they were: one call per
    // key for each distinct flags byte in the batch (one, as a rule).
    let mut flags_seen: Vec<Flags> = Vec::new();
    for incoming in batch.working() {
        if let (Some(flags), true) = (incoming.flags, resealed(incoming)) {
            if !flags_seen.contains(&flags) {
                flags_seen.push(flags);
            }
        }
    }
    for flags in flags_seen {
        let options = seal_options(
            flags.with_body(Compression::None, false),
            flags.compression(),
            if flags.padded() { protection.pad_to } else { 0 },
        );
        batch.vault(
            "envelope seal",
            |incoming| {
                if !resealed(incoming) || incoming.flags != Some(flags) {
                    return Ok(None);
                }
                let aad = incoming.rebinding_parts();
                let Some(envelope) = &mut incoming.extra else {
                    return Ok(None);
                };
                let item = SealItem {
                    plaintext: envelope.plaintext.take().unwrap_or_default(),
                    aad,
                };
                Ok(Some((envelope.key.clone(), vec![item])))
            },
            |key, items| {
                envelope::seal_v3(key, envelope_config.context(), options, items)
                    .map(|sealed| sealed.into_iter().map(Ok).collect())
            },
            |incoming, mut sealed| {
                incoming.extra = None;
                incoming.value = sealed.pop();
                Ok(())
            },
        );
    }
    batch.finish(|incoming| {
        Ok(OutputRecord {
            topic: None,
            key: incoming.key,
            value: incoming.value,
            headers: incoming.headers,
        })
    })
}

/// Whether the envelope is one this policy can rewrap with its transit key, as its
/// record's protection header says: checked before any Vault call.
fn rewrappable(envelope: &Envelope, incoming: &Incoming<Option<Envelope>>) -> Result<(), Failure> {
    let header = envelope_format::sealed_under(&envelope.envelope, &envelope.key)?;
    if header.version == FORMAT_VERSION_1 {
        // Say why before any Vault call is spent on it.
        return Err(invalid(envelope_format::WriteError::NotRewrappable {
            version: header.version,
        }));
    }
    check_envelope(&header, incoming.flags)
}

fn invalid(error: impl std::fmt::Display) -> Failure {
    Failure::InvalidInput(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::envelope::{self, OpenItem, SealItem};
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::Policy;

    fn seal(values: &[&str]) -> Vec<Vec<u8>> {
        let items: Vec<SealItem> = values
            .iter()
            .map(|v| SealItem {
                plaintext: v.as_bytes().to_vec(),
                aad: Vec::new(),
            })
            .collect();
        envelope::seal("customers", None, &items).unwrap()
    }

    fn open(envelope: &[u8]) -> Result<Vec<u8>, transit::TransitError> {
        let item = OpenItem {
            envelope: envelope.to_vec(),
            aad: Vec::new(),
        };
        envelope::open("customers", None, &[item])
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_the_wrapped_key_changes_once_per_data_key_and_old_envelopes_are_then_refused() {
        let host = Host::install();
        host.create_key("customers");
        host.create_key("other");
        let mut sealed = seal(&["a", "b", "c"]);
        host.rotate_key("customers");
        sealed.extend(seal(&["d"])); // already under version 2: its own data key
        let foreign = envelope::seal(
            "other",
            None,
            &[SealItem {
                plaintext: b"x".to_vec(),
                aad: Vec::new(),
            }],
        )
        .unwrap()
        .remove(0);
        EnvelopeRewrap::init(r#"{"key":"customers"}"#.into()).unwrap();
        let mut batch: Vec<SourceRecord> = sealed.iter().map(|e| record("k", e)).collect();
        batch.push(record("json", r#"{"plain":true}"#));
        batch.push(record("foreign", &foreign));
        let calls_before = host.calls().len();
        let results = EnvelopeRewrap::transform(batch);

        let rewrap_calls: Vec<_> = host.calls()[calls_before..].to_vec();
        assert_eq!(rewrap_calls.len(), 1, "one Vault call: {rewrap_calls:?}");
        assert_eq!(rewrap_calls[0].operation, Operation::Rewrap);
        assert_eq!(
            rewrap_calls[0].items, 2,
            "two distinct data keys in the batch"
        );

        let rewrapped: Vec<Vec<u8>> = results[..4]
            .iter()
            .map(|r| r.as_ref().unwrap()[0].value.clone().unwrap())
            .collect();
        for (before, after) in sealed.iter().zip(&rewrapped) {
            let (before, after) = (
                envelope_format::parse(before).unwrap(),
                envelope_format::parse(after).unwrap(),
            );
            assert_eq!(
                before.body, after.body,
                "nonce, ciphertext and tag untouched"
            );
            assert!(after.wrapped_key.starts_with("vault:v2:"));
        }
        assert!(matches!(&results[4], Err(Failure::InvalidInput(m)) if m.contains("0x7b")));
        // The reason names the configured key, not the one the producer's envelope claims.
        assert!(
            matches!(&results[5], Err(Failure::InvalidInput(m))
                if m.contains("transit key \"customers\"") && !m.contains("\"other\"")),
            "{:?}",
            results[5]
        );

        host.set_min_decryption_version("customers", 2);
        for (envelope, plaintext) in rewrapped.iter().zip(["a", "b", "c", "d"]) {
            assert_eq!(open(envelope), Ok(plaintext.as_bytes().to_vec()));
        }
        assert!(open(&sealed[0]).is_err(), "the old envelope is refused");
    }

    #[test]
    fn a_version_1_envelope_is_refused_before_any_vault_call() {
        let host = Host::install();
        host.create_key("customers");
        let mut v1 = seal(&["a"]).remove(0);
        v1[0] = 1;
        EnvelopeRewrap::init(r#"{"key":"customers"}"#.into()).unwrap();
        let calls_before = host.calls().len();
        let results = EnvelopeRewrap::transform(vec![record("k", &v1)]);
        assert!(
            matches!(&results[0], Err(Failure::InvalidInput(m)) if m.contains("version 1")),
            "{results:?}"
        );
        assert_eq!(host.calls().len(), calls_before);
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::protection::seal_options;
        use kafka_transit_policy_sdk::transit::EncryptItem;
        use kafka_transit_policy_sdk::Header;

        const STREAM: &str = "orders.protected";

        fn encrypted_key(source: &str) -> Vec<u8> {
            let item = EncryptItem {
                plaintext: source.as_bytes().to_vec(),
                context: Some(STREAM.as_bytes().to_vec()),
            };
            transit::encrypt("record-keys", &[item]).unwrap()[0]
                .clone()
                .unwrap()
                .into_bytes()
        }

        /// What envelope-seal writes with `flags` under `key` (padded to 64 when the
        /// flags say so).
        fn written(flags: u8, key: Vec<u8>) -> SourceRecord {
            let flags = Flags::parse(flags).unwrap();
            let options = seal_options(
                flags.with_body(Compression::None, false),
                flags.compression(),
                if flags.padded() { 64 } else { 0 },
            );
            let item = SealItem {
                plaintext: b"v1".to_vec(),
                aad: record::binding_parts(flags, STREAM, Some(&key), None),
            };
            let sealed = envelope::seal_v3("customers", None, options, &[item])
                .unwrap()
                .remove(0);
            SourceRecord {
                topic: STREAM.into(),
                headers: vec![Header {
                    key: PROTECTION_HEADER.into(),
                    value: Some(flags.header_value().into_bytes()),
                }],
                ..record(key, sealed)
            }
        }

        fn open_as(out: &OutputRecord, key: &[u8]) -> Result<Vec<u8>, transit::TransitError> {
            let flags = Flags::from_header_value(out.headers[0].value.as_deref().unwrap()).unwrap();
            let item = OpenItem {
                envelope: out.value.clone().unwrap(),
                aad: record::binding_parts(flags, STREAM, Some(key), None),
            };
            envelope::open("customers", None, &[item])
                .unwrap()
                .remove(0)
        }

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            EnvelopeRewrap::init(config.into()).unwrap();
            host
        }

        #[test]
        fn version_3_envelopes_are_rewrapped_in_place_unless_their_bound_key_changes() {
            let host = start(
                r#"{"key":"customers","record_keys":"encrypt","record_keys_key":"record-keys"}"#,
            );
            let old_key = encrypted_key("k1");
            let unbound = written(0x41, old_key.clone()); // stream only: rewrapped in place
            let bound = written(0x43 | 0x10, old_key.clone()); // key bound: sealed again
            host.rotate_key("customers");
            host.rotate_key("record-keys");
            let calls = host.calls().len();
            let out: Vec<OutputRecord> =
                EnvelopeRewrap::transform(vec![unbound.clone(), bound.clone()])
                    .into_iter()
                    .map(|r| r.unwrap().remove(0))
                    .collect();
            let operations: Vec<Operation> =
                host.calls()[calls..].iter().map(|c| c.operation).collect();
            assert_eq!(
                operations,
                [
                    Operation::Rewrap,
                    Operation::Rewrap,
                    Operation::Open,
                    Operation::SealV3
                ]
            );
            let new_key = encrypted_key("k1");
            assert!(new_key.starts_with(b"vault:v2:"));
            for out in &out {
                assert_eq!(out.key.as_ref(), Some(&new_key));
                let header = envelope_format::parse(out.value.as_deref().unwrap()).unwrap();
                assert!(header.wrapped_key.starts_with("vault:v2:"));
            }
            let (before, after) = (
                envelope_format::parse(unbound.value.as_deref().unwrap()).unwrap(),
                envelope_format::parse(out[0].value.as_deref().unwrap()).unwrap(),
            );
            assert_eq!(
                before.body, after.body,
                "in place: nonce, ciphertext and tag kept"
            );
            assert_eq!(open_as(&out[0], &new_key), Ok(b"v1".to_vec()));
            let resealed = envelope_format::parse(out[1].value.as_deref().unwrap()).unwrap();
            assert_eq!(
                resealed.flags,
                Flags::parse(0x53).unwrap(),
                "its flags as they were"
            );
            assert_eq!(open_as(&out[1], &new_key), Ok(b"v1".to_vec()));
            assert!(open_as(&out[1], &old_key).is_err(), "bound to the new key");
            assert_eq!(out[1].headers, bound.headers);
        }

        #[test]
        fn a_padded_envelope_to_seal_again_needs_pad_to_and_headers_must_match() {
            let host = start(
                r#"{"key":"customers","record_keys":"encrypt","record_keys_key":"record-keys"}"#,
            );
            let padded = written(0x43 | 0x08, encrypted_key("k1"));
            let mut stripped = written(0x41, encrypted_key("k1"));
            stripped.headers.clear();
            host.rotate_key("record-keys");
            let results = EnvelopeRewrap::transform(vec![padded.clone(), stripped]);
            assert!(
                matches!(&results[0], Err(Failure::PolicyError(m)) if m.contains("policy.config.pad_to")),
                "{:?}",
                results[0]
            );
            assert!(
                matches!(&results[1], Err(Failure::InvalidInput(m)) if m.contains("without its"))
            );
            EnvelopeRewrap::init(
                r#"{"key":"customers","record_keys":"encrypt","record_keys_key":"record-keys","pad_to":64}"#
                    .into(),
            )
            .unwrap();
            let out = EnvelopeRewrap::transform(vec![padded])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(
                open_as(&out, out.key.as_deref().unwrap()),
                Ok(b"v1".to_vec())
            );
            assert!(envelope_format::parse(out.value.as_deref().unwrap())
                .unwrap()
                .flags
                .padded());
        }
    }
}
