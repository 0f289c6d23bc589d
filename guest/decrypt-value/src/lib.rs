//! Decrypts values that `encrypt-value` (or any Vault client) produced: each value must
//! be a Vault transit ciphertext `vault:v<N>:<base64>`. A value that is not one is an
//! invalid-input failure (dead-lettered or stops the pipeline, as configured), never
//! passed on. The kafka-transit headers are removed, so the record comes out as it went
//! in. Tombstones pass through unchanged.
//!
//! Config: `key` (required), `context` or `context_from = "record-key"` (derived keys).
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header is opened as the header says. Its value is decrypted with the binding data
//! rebuilt from the flags, the stream (`stream`, default: the record's own topic, since
//! this pipeline reads what a protecting pipeline wrote to its sink) and the key as
//! received: a value moved to another stream or key, or whose header was edited, fails
//! with "message authentication failed". Sealed headers come back after the kept ones,
//! an encrypted key is decrypted under `record_keys_key` (an HMAC'd one is refused
//! unless `keep_hmac_keys = true`), and the protection header is dropped.
//! `require_binding = ["stream", "key"]` refuses records bound to less, and records
//! without the header (formats 1/2).

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::envelope_format::record::RecordKeys;
use kafka_transit_policy_sdk::protection::{
    is_protected, restore_keys, Protected, Role, Shape, Streams,
};
use kafka_transit_policy_sdk::transit::{self, BoundDecryptItem, DecryptItem};
use kafka_transit_policy_sdk::{
    ciphertext_text, configured_policy, forward, ContextSource, Failure, OutputRecord, ResolvedKey,
    SourceRecord, TransformResult, TransitKeyConfig,
};

type Config = Protected<TransitKeyConfig>;

fn parse(json: &str) -> Result<Config, String> {
    Protected::parse(json, Role::Open, Shape::Value, TransitKeyConfig::parse)
}

configured_policy!(DecryptValue, parse, decrypt);

/// A record's value as Vault ciphertext text, its transit key and context.
struct Value {
    key: ResolvedKey,
    ciphertext: String,
    context: Option<Vec<u8>>,
}

fn decrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let (transit_config, protection) = (&config.config, &config.protection);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        // A tombstone of formats 1/2 stays as it is.
        if record.value.is_none() && !is_protected(&record) && !protection.require_binding.any() {
            return Start::Output(forward(record));
        }
        let value = match record.value.take() {
            None => None,
            Some(value) => match value_of(transit_config, &record, value) {
                Ok(value) => Some(value),
                Err(failure) => return Start::Fail(failure),
            },
        };
        match protection.incoming(record, &mut streams, value) {
            Ok(incoming)
                if incoming
                    .flags
                    .is_some_and(|flags| flags.record_keys() != RecordKeys::Kept)
                    && matches!(transit_config.context_from, ContextSource::RecordKey) =>
            {
                Start::Fail(Failure::InvalidInput(
                    "policy.config.context_from = \"record-key\" cannot open a record whose \
                     key is encrypted or HMAC'd (its kafka-transit.protection header says so)"
                        .into(),
                ))
            }
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    restore_keys(&mut batch, protection);
    batch.vault(
        "vault decrypt",
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
        transit::decrypt,
        |incoming, mut plaintexts| {
            incoming.value = plaintexts.pop();
            Ok(())
        },
    );
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
            let plaintext = plaintexts.pop().unwrap_or_default();
            incoming.value = Some(incoming.restore(plaintext)?);
            Ok(())
        },
    );
    batch.finish(|incoming| {
        Ok(OutputRecord {
            topic: None,
            key: incoming.key,
            value: incoming.value,
            headers: incoming.headers,
        })
    })
}

/// The value as a ciphertext to decrypt, with the record's transit key and context.
fn value_of(
    config: &TransitKeyConfig,
    record: &SourceRecord,
    value: Vec<u8>,
) -> Result<Value, Failure> {
    Ok(Value {
        key: config.key.for_record(record)?,
        ciphertext: ciphertext_text(value)?,
        context: config.context_for(record.key.as_deref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::transit::{BoundEncryptItem, EncryptItem};
    use kafka_transit_policy_sdk::{Header, Policy};

    const STREAM: &str = "orders.protected";

    fn header(key: &str, value: Option<&str>) -> Header {
        Header {
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn start(config: &str) -> Host {
        let host = Host::install();
        host.create_key("customers");
        host.create_derived_key("record-keys", true);
        DecryptValue::init(config.into()).expect("a valid configuration");
        host
    }

    /// What encrypt-value writes to `STREAM` with `flags` (docs/protected-records.md),
    /// made here from the format's own pieces: `k1` as the source key, `v1` as the
    /// value, the headers `a: 1`, `a: 2` and `none` (valueless) sealed when the flags
    /// say so, `traceparent` in clear.
    fn written(flags: u8) -> SourceRecord {
        let flags = Flags::parse(flags).unwrap();
        let key = match flags.record_keys() {
            record::RecordKeys::Encrypted => {
                let item = EncryptItem {
                    plaintext: b"k1".to_vec(),
                    context: Some(STREAM.as_bytes().to_vec()),
                };
                transit::encrypt("record-keys", &[item]).unwrap()[0]
                    .clone()
                    .unwrap()
                    .into_bytes()
            }
            _ => b"k1".to_vec(),
        };
        let sealed = vec![
            ("a".to_string(), Some(b"1".to_vec())),
            ("a".to_string(), Some(b"2".to_vec())),
            ("none".to_string(), None),
        ];
        let plaintext = match flags.headers() {
            true => record::frame(&sealed, b"v1"),
            false => b"v1".to_vec(),
        };
        let item = BoundEncryptItem {
            plaintext,
            context: None,
            associated_data: record::binding(flags, STREAM, Some(&key), None),
        };
        let ciphertext = transit::encrypt_bound("customers", &[item]).unwrap()[0]
            .clone()
            .unwrap();
        SourceRecord {
            topic: STREAM.into(),
            key: Some(key),
            value: Some(ciphertext.into_bytes()),
            headers: vec![
                header("traceparent", Some("00-1")),
                header("kafka-transit.policy", Some("encrypt-value")),
                header("kafka-transit.key", Some("customers")),
                header(PROTECTION_HEADER, Some(&flags.header_value())),
            ],
            ..record("", "")
        }
    }

    fn opened(record: SourceRecord) -> Result<OutputRecord, Failure> {
        DecryptValue::transform(vec![record])
            .remove(0)
            .map(|mut out| out.remove(0))
    }

    fn assert_refused(result: Result<OutputRecord, Failure>, words: &str) {
        match result {
            Err(Failure::InvalidInput(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("expected invalid input ({words}), got {other:?}"),
        }
    }

    #[test]
    fn key_value_and_headers_come_back_as_they_went_in() {
        let host = start(r#"{"key":"customers","record_keys_key":"record-keys"}"#);
        let tombstone = SourceRecord {
            value: None,
            ..written(0x47)
        };
        let results = DecryptValue::transform(vec![written(0x47), written(0x47), tombstone]);
        let out: Vec<OutputRecord> = results.into_iter().map(|r| r.unwrap().remove(0)).collect();
        assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(out[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(
            out[0].headers,
            [
                header("traceparent", Some("00-1")),
                header("a", Some("1")),
                header("a", Some("2")),
                header("none", None)
            ],
            "kept first, then the sealed ones in order; no stamps, no protection header"
        );
        assert_eq!(
            out[2].key.as_deref(),
            Some(&b"k1"[..]),
            "a tombstone's key too"
        );
        assert_eq!((out[2].value.as_ref(), out[2].headers.len()), (None, 1));
        assert_eq!(
            host.items_per_call(Operation::Decrypt),
            [1],
            "distinct keys, one call"
        );
        assert_eq!(host.items_per_call(Operation::DecryptBound), [2]);
    }

    #[test]
    fn a_value_moved_swapped_or_relabelled_fails_as_invalid_input() {
        let _host = start(r#"{"key":"customers","record_keys_key":"record-keys"}"#);
        // Copied into another stream (read from another topic).
        let moved = SourceRecord {
            topic: "payments.protected".into(),
            ..written(0x03)
        };
        assert_refused(opened(moved), "message authentication failed");
        // Under another record's key.
        let mut swapped = written(0x03);
        swapped.key = Some(b"k2".to_vec());
        assert_refused(opened(swapped), "message authentication failed");
        // Its protection header stripped, or edited to bind less.
        let mut stripped = written(0x03);
        stripped.headers.retain(|h| h.key != PROTECTION_HEADER);
        assert_refused(opened(stripped), "message authentication failed");
        let mut edited = written(0x03);
        edited.headers.last_mut().unwrap().value = Some(b"3;01".to_vec());
        assert_refused(opened(edited), "message authentication failed");
        // Sealed headers claimed where there are none: no frame survives the tag.
        let mut claimed = written(0x03);
        claimed.headers.last_mut().unwrap().value = Some(b"3;07".to_vec());
        assert_refused(opened(claimed), "message authentication failed");
        // A sink key that is not its record's encrypted key.
        let mut rekeyed = written(0x43);
        rekeyed.key = written(0x43).key.map(|mut k| {
            k.push(b'A');
            k
        });
        assert!(opened(rekeyed).is_err());
    }

    #[test]
    fn the_stream_can_be_named_and_it_is_the_records_topic_by_default() {
        let _host = start(r#"{"key":"customers","stream":"orders.protected"}"#);
        let moved = SourceRecord {
            topic: "copied-by-mirrormaker".into(),
            ..written(0x01)
        };
        assert_eq!(opened(moved).unwrap().value.as_deref(), Some(&b"v1"[..]));
    }

    #[test]
    fn require_binding_refuses_older_and_under_bound_records() {
        let host = start(r#"{"key":"customers","require_binding":["stream","key"]}"#);
        let old = record("k1", host.encrypt("customers", b"v1"));
        assert_refused(opened(old.clone()), "format 1 or 2");
        let old_tombstone = SourceRecord { value: None, ..old };
        assert_refused(opened(old_tombstone), "format 1 or 2");
        assert_refused(opened(written(0x01)), "bound to less");
        assert_eq!(
            opened(written(0x03)).unwrap().value.as_deref(),
            Some(&b"v1"[..])
        );
    }

    #[test]
    fn hmac_keys_are_refused_unless_kept_and_older_records_still_open() {
        let host = start(r#"{"key":"customers"}"#);
        let mut hashed = written(0x03);
        hashed.headers.last_mut().unwrap().value = Some(b"3;83".to_vec());
        assert_refused(opened(hashed.clone()), "keep_hmac_keys");
        DecryptValue::init(r#"{"key":"customers","keep_hmac_keys":true}"#.into()).unwrap();
        // The flags are part of the binding: these ones were not written so.
        assert_refused(opened(hashed), "message authentication failed");

        let old = SourceRecord {
            headers: vec![header("kafka-transit.key", Some("customers"))],
            ..record("k1", host.encrypt("customers", b"v1"))
        };
        let out = opened(old).unwrap();
        assert_eq!(
            (out.key.as_deref(), out.value.as_deref()),
            (Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        assert!(out.headers.is_empty());
        let old_tombstone = SourceRecord {
            value: None,
            headers: vec![header("kafka-transit.key", Some("customers"))],
            ..record("k1", "")
        };
        assert_eq!(
            opened(old_tombstone.clone()).unwrap().headers,
            old_tombstone.headers,
            "as before"
        );
    }

    #[test]
    fn an_encrypted_key_without_record_keys_key_is_a_policy_error() {
        let _host = start(r#"{"key":"customers"}"#);
        assert!(matches!(
            opened(written(0x43)),
            Err(Failure::PolicyError(m)) if m.contains("record_keys_key")
        ));
        let error = DecryptValue::init(r#"{"key":"customers","bind":["key"]}"#.into()).unwrap_err();
        assert!(error.starts_with("policy.config.bind: "), "{error}");
    }
}
