//! Moves envelopes that `envelope-seal` made to the transit key's latest version after a
//! rotation, without opening them: only the wrapped data key in each envelope's header
//! is rewrapped (Vault's `transit/rewrap`, inside Vault), and the nonce, ciphertext and
//! tag are copied unchanged. Format version 2 leaves the wrapped key out of the tag for
//! exactly this (docs/envelope-format.md). Neither this policy nor the host sees a data
//! key or a plaintext. Envelopes sealed under one data key share one wrapped key, and a
//! batch sends Vault each distinct wrapped key once.
//!
//! A value that is not an envelope, one sealed under another transit key, and a format
//! version 1 envelope (whose tag covers the wrapped key) are invalid input, never passed
//! on. Keys and headers stay as they are. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`.

use kafka_transit_policy_sdk::envelope_format::{self, FORMAT_VERSION};
use kafka_transit_policy_sdk::transit::{self, DecryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, deduplicated, through_vault_keyed, EnvelopeConfig, Failure, OutputRecord,
    Prepared, ResolvedKey, SourceRecord, TransformResult,
};

configured_policy!(EnvelopeRewrap, EnvelopeConfig::parse, rewrap);

fn rewrap(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault rewrap",
        |record| {
            if record.value.is_none() {
                return Prepared::Forward; // a tombstone stays a tombstone
            }
            let key = match config.key.for_record(record) {
                Ok(key) => key,
                Err(failure) => return Prepared::Fail(failure),
            };
            let envelope = record.value.take().unwrap_or_default();
            match wrapped_key(&key, &envelope) {
                Ok(ciphertext) => {
                    let item = DecryptItem {
                        ciphertext,
                        context: config.context().map(<[u8]>::to_vec),
                    };
                    Prepared::Item((key, envelope, vec![item]))
                }
                Err(failure) => Prepared::Fail(failure),
            }
        },
        |key, items| {
            deduplicated(
                items,
                |item| &item.ciphertext,
                |distinct| transit::rewrap(key, distinct),
            )
        },
        |record, envelope, mut rewrapped| {
            let header = envelope_format::parse(&envelope).map_err(invalid)?;
            let value = header
                .rewrapped(&rewrapped.pop().expect("one item per envelope"))
                .map_err(invalid)?;
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(value),
                headers: record.headers,
            })
        },
    )
}

/// The envelope's wrapped data key, if it is an envelope this policy can rewrap with
/// transit key `key`.
fn wrapped_key(key: &ResolvedKey, envelope: &[u8]) -> Result<String, Failure> {
    let header = envelope_format::sealed_under(envelope, key)?;
    if header.version != FORMAT_VERSION {
        // Say why before any Vault call is spent on it.
        return Err(invalid(envelope_format::WriteError::NotRewrappable {
            version: header.version,
        }));
    }
    Ok(header.wrapped_key.to_string())
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
}
