//! Moves values that `encrypt-value` (or any Vault client) encrypted to the transit key's
//! latest version after a rotation, with Vault's `transit/rewrap`: Vault decrypts and
//! re-encrypts inside itself, so neither this policy nor the host ever sees a plaintext.
//! Each value must be a ciphertext `vault:v<N>:<base64>`; one that is not is an
//! invalid-input failure, never passed on. Keys and headers stay as they are (the record
//! is still what the policy that encrypted it made). Tombstones pass through unchanged.
//! One Vault batch request per batch.
//!
//! Config: `key` (required), `context` or `context_from = "record-key"` (derived keys).
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header keeps its format. Its value was encrypted with Vault's `associated_data`, which
//! `transit/rewrap` does not take, so it is decrypted and encrypted again with the same
//! binding (stream: `stream`, default the record's own topic): **this policy sees the
//! plaintext of such records**, as `decrypt-value` does. With `record_keys = "encrypt"`
//! and `record_keys_key`, encrypted record keys (tombstones' too) are rewrapped to the
//! latest key version as well, so that compaction converges again after a rotation; a
//! value bound to its key is then bound to the new one. Headers stay as they are.

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::protection::{rewrap_keys, Protected, Role, Shape, Streams};
use kafka_transit_policy_sdk::transit::{self, BoundDecryptItem, BoundEncryptItem, DecryptItem};
use kafka_transit_policy_sdk::{
    ciphertext_text, configured_policy, forward, Failure, OutputRecord, ResolvedKey, SourceRecord,
    TransformResult, TransitKeyConfig,
};

type Config = Protected<TransitKeyConfig>;

fn parse(json: &str) -> Result<Config, String> {
    let config = Protected::parse(json, Role::Rewrap, Shape::Value, TransitKeyConfig::parse)?;
    config.protection.check_context_from(&config.config)?;
    Ok(config)
}

configured_policy!(RewrapValue, parse, rewrap);

/// A record's ciphertext, its transit key and context.
struct Value {
    key: ResolvedKey,
    ciphertext: String,
    context: Option<Vec<u8>>,
}

fn rewrap(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let (transit_config, protection) = (&config.config, &config.protection);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let value = match record.value.take() {
            None => None,
            Some(value) => {
                let prepared = transit_config.key.for_record(&record).and_then(|key| {
                    Ok(Value {
                        key,
                        ciphertext: ciphertext_text(value)?,
                        context: transit_config.context_for(record.key.as_deref())?,
                    })
                });
                match prepared {
                    Ok(value) => Some(value),
                    Err(failure) => return Start::Fail(failure),
                }
            }
        };
        if value.is_none() && !kafka_transit_policy_sdk::protection::is_protected(&record) {
            return Start::Output(forward(record)); // a tombstone of formats 1/2
        }
        match protection.incoming(record, &mut streams, value) {
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    rewrap_keys(&mut batch, protection);
    // Formats 1/2: inside Vault.
    batch.vault(
        "vault rewrap",
        |incoming| match (&mut incoming.extra, incoming.flags) {
            (Some(value), None) => Ok(Some((
                value.key.clone(),
                vec![DecryptItem {
                    ciphertext: std::mem::take(&mut value.ciphertext),
                    context: value.context.clone(),
                }],
            ))),
            _ => Ok(None),
        },
        transit::rewrap,
        |incoming, mut ciphertexts| {
            incoming.value = ciphertexts.pop().map(String::into_bytes);
            Ok(())
        },
    );
    // Format 3: open with the record's binding, then encrypt with the binding it leaves
    // with (its key may have been rewrapped).
    batch.vault(
        "vault decrypt",
        |incoming| {
            let binding = incoming.binding(None);
            match (&mut incoming.extra, binding) {
                (Some(value), Some(associated_data)) => Ok(Some((
                    value.key.clone(),
                    vec![BoundDecryptItem {
                        ciphertext: std::mem::take(&mut value.ciphertext),
                        context: value.context.clone(),
                        associated_data,
                    }],
                ))),
                _ => Ok(None),
            }
        },
        transit::decrypt_bound,
        |incoming, mut plaintexts| {
            incoming.value = plaintexts.pop();
            Ok(())
        },
    );
    batch.vault(
        "vault encrypt",
        |incoming| {
            let binding = incoming.rebinding(None);
            match (&incoming.extra, binding) {
                (Some(value), Some(associated_data)) => Ok(Some((
                    value.key.clone(),
                    vec![BoundEncryptItem {
                        plaintext: incoming.value.take().unwrap_or_default(),
                        context: value.context.clone(),
                        associated_data,
                    }],
                ))),
                _ => Ok(None),
            }
        },
        transit::encrypt_bound,
        |incoming, mut ciphertexts| {
            incoming.value = ciphertexts.pop().map(String::into_bytes);
            Ok(())
        },
    );
    batch.finish(|incoming| {
        Ok::<_, Failure>(OutputRecord {
            topic: None,
            key: incoming.key,
            value: incoming.value,
            headers: incoming.headers,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::{Failure, Policy};

    #[test]
    fn rotated_values_move_to_the_latest_version_and_survive_min_decryption_version() {
        let host = Host::install();
        host.create_key("customers");
        let old = [
            host.encrypt("customers", b"alice"),
            host.encrypt("customers", b"bob"),
        ];
        host.rotate_key("customers");
        RewrapValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let mut batch: Vec<SourceRecord> = old.iter().map(|c| record("k", c)).collect();
        batch.push(SourceRecord {
            value: None,
            ..record("gone", "")
        });
        batch.push(record("plain", "not a ciphertext"));
        let results = RewrapValue::transform(batch);

        let rewrapped: Vec<String> = results[..2]
            .iter()
            .map(|r| String::from_utf8(r.as_ref().unwrap()[0].value.clone().unwrap()).unwrap())
            .collect();
        for value in &rewrapped {
            assert!(value.starts_with("vault:v2:"), "{value}");
        }
        assert_eq!(results[2].as_ref().unwrap()[0].value, None, "tombstone");
        assert!(matches!(&results[3], Err(Failure::InvalidInput(_))));
        assert_eq!(
            host.items_per_call(Operation::Rewrap),
            [2],
            "one Vault batch for the batch"
        );

        host.set_min_decryption_version("customers", 2);
        assert_eq!(
            host.decrypt("customers", &rewrapped[0]),
            Ok(b"alice".to_vec())
        );
        assert_eq!(
            host.decrypt("customers", &rewrapped[1]),
            Ok(b"bob".to_vec())
        );
        assert!(
            host.decrypt("customers", &old[0]).is_err(),
            "the old value is refused"
        );
    }

    #[test]
    fn a_value_below_min_decryption_version_cannot_be_rewrapped() {
        let host = Host::install();
        host.create_key("customers");
        let old = host.encrypt("customers", b"alice");
        host.rotate_key("customers");
        host.set_min_decryption_version("customers", 2);
        RewrapValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let results = RewrapValue::transform(vec![record("k", &old)]);
        assert!(
            matches!(&results[0], Err(Failure::InvalidInput(m)) if m.contains("too old")),
            "{results:?}"
        );
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::transit::{EncryptItem, TransitError};
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

        fn bound(flags: Flags, key: &[u8], plaintext: &str) -> String {
            let item = BoundEncryptItem {
                plaintext: plaintext.as_bytes().to_vec(),
                context: None,
                associated_data: record::binding(flags, STREAM, Some(key), None),
            };
            transit::encrypt_bound("customers", &[item]).unwrap()[0]
                .clone()
                .unwrap()
        }

        fn open(ciphertext: &[u8], flags: Flags, key: &[u8]) -> Result<Vec<u8>, TransitError> {
            let item = BoundDecryptItem {
                ciphertext: String::from_utf8(ciphertext.to_vec()).unwrap(),
                context: None,
                associated_data: record::binding(flags, STREAM, Some(key), None),
            };
            transit::decrypt_bound("customers", &[item])
                .unwrap()
                .remove(0)
        }

        fn protected(flags: Flags, key: Vec<u8>, value: Option<String>) -> SourceRecord {
            SourceRecord {
                topic: STREAM.into(),
                key: Some(key),
                value: value.map(String::into_bytes),
                headers: vec![Header {
                    key: PROTECTION_HEADER.into(),
                    value: Some(flags.header_value().into_bytes()),
                }],
                ..record("", "")
            }
        }

        #[test]
        fn bound_values_and_their_keys_move_to_the_latest_versions_together() {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            let flags = Flags::parse(0x43).unwrap();
            let old_key = encrypted_key("k1");
            let value = bound(flags, &old_key, "v1");
            let old = host.encrypt("customers", b"older");
            host.rotate_key("customers");
            host.rotate_key("record-keys");
            RewrapValue::init(
                r#"{"key":"customers","record_keys":"encrypt","record_keys_key":"record-keys"}"#
                    .into(),
            )
            .unwrap();
            let calls = host.calls().len();
            let results = RewrapValue::transform(vec![
                protected(flags, old_key.clone(), Some(value.clone())),
                protected(flags, old_key.clone(), None),
                record("k", &old),
            ]);
            let out: Vec<OutputRecord> =
                results.into_iter().map(|r| r.unwrap().remove(0)).collect();
            let operations: Vec<Operation> =
                host.calls()[calls..].iter().map(|c| c.operation).collect();
            assert_eq!(
                operations,
                [
                    Operation::Rewrap,
                    Operation::Rewrap,
                    Operation::DecryptBound,
                    Operation::EncryptBound
                ],
                "record keys, older values in Vault, then bound values through the policy"
            );
            let new_key = out[0].key.clone().unwrap();
            assert!(new_key.starts_with(b"vault:v2:"));
            assert_eq!(
                new_key,
                encrypted_key("k1"),
                "where a fresh protection lands"
            );
            assert_eq!(
                out[1].key.as_ref(),
                Some(&new_key),
                "the tombstone's key too"
            );
            assert!(out[0].value.as_deref().unwrap().starts_with(b"vault:v2:"));
            assert_eq!(
                open(out[0].value.as_deref().unwrap(), flags, &new_key),
                Ok(b"v1".to_vec())
            );
            assert!(open(out[0].value.as_deref().unwrap(), flags, &old_key).is_err());
            assert_eq!(
                out[0].headers,
                protected(flags, Vec::new(), None).headers,
                "unchanged"
            );
            assert!(out[2].value.as_deref().unwrap().starts_with(b"vault:v2:"));
        }

        #[test]
        fn a_bound_value_moved_elsewhere_is_not_rewrapped() {
            let host = Host::install();
            host.create_key("customers");
            let flags = Flags::parse(0x03).unwrap();
            let value = bound(flags, b"k1", "v1");
            RewrapValue::init(r#"{"key":"customers"}"#.into()).unwrap();
            let moved = SourceRecord {
                topic: "elsewhere".into(),
                ..protected(flags, b"k1".to_vec(), Some(value.clone()))
            };
            let rekeyed = protected(flags, b"k2".to_vec(), Some(value.clone()));
            for result in RewrapValue::transform(vec![moved, rekeyed]) {
                assert!(
                    matches!(&result, Err(Failure::InvalidInput(m)) if m.contains("authentication failed")),
                    "{result:?}"
                );
            }
            let kept = RewrapValue::transform(vec![protected(flags, b"k1".to_vec(), Some(value))]);
            assert_eq!(
                kept[0].as_ref().unwrap()[0].key.as_deref(),
                Some(&b"k1"[..])
            );
            let error = RewrapValue::init(
                r#"{"key":"customers","record_keys":"hmac","record_keys_key":"h"}"#.into(),
            )
            .unwrap_err();
            assert!(error.contains("cannot be rewrapped"), "{error}");
        }
    }
}
