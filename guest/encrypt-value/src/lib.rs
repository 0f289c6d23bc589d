//! Encrypts each record's value with Vault transit. The value becomes the UTF-8 text
//! `vault:v<N>:<base64>`, exactly Vault's ciphertext, so any Vault client in any
//! language can decrypt it with `transit/decrypt` alone. Keys and existing headers stay
//! as they are; two headers name the policy and the key. Tombstones pass through
//! unchanged. One Vault batch request serves a whole batch.
//!
//! Config: `key` (required; a name or a template such as `"{topic}"` or
//! `"tenant-{header:tenant}"`), `context` or `context_from = "record-key"` (derived keys).
//!
//! Format 3 (docs/protected-records.md), when any of these is set: `record_keys`
//! (`"encrypt"` or `"hmac"` under `record_keys_key`: one more Vault call per batch, for
//! its distinct keys), `headers = "seal"` with `keep_headers` (the other headers go
//! inside the ciphertext, in a frame), `bind = ["stream", "key"]` (each value is
//! encrypted with Vault's `associated_data` = the record's binding data, so it decrypts
//! only in its stream, under its key), `stream` (default: the sink topic). Every format 3
//! record, tombstones too, carries the `kafka-transit.protection` header; a tombstone's
//! key is protected as well, so it still deletes, and only its kept headers stay. With
//! none of these set the output is byte for byte what it always was.

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::protection::{protect_keys, Protected, Role, Shape, Streams};
use kafka_transit_policy_sdk::transit::{self, BoundEncryptItem, EncryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_by_key, OutputRecord, ResolvedKey, SourceRecord,
    TransformResult, TransitKeyConfig,
};

type Config = Protected<TransitKeyConfig>;

fn parse(json: &str) -> Result<Config, String> {
    let config = Protected::parse(json, Role::Protect, Shape::Value, TransitKeyConfig::parse)?;
    config.protection.check_context_from(&config.config)?;
    Ok(config)
}

configured_policy!(EncryptValue, parse, encrypt);

fn encrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    if config.protection.is_format3() {
        return encrypt_bound(config, batch);
    }
    let config = &config.config;
    through_vault_by_key(
        batch,
        "vault encrypt",
        |record| {
            // A tombstone stays a tombstone.
            config.key.with_value(record, |plaintext, record| {
                let context = config.context_for(record.key.as_deref())?;
                Ok(EncryptItem { plaintext, context })
            })
        },
        transit::encrypt,
        |record, key, ciphertext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(ciphertext.into_bytes()),
            headers: stamped(record.headers, "encrypt-value", key),
        },
    )
}

/// The value's transit key and derivation context, from the record as produced.
type ValueKey = Option<(ResolvedKey, Option<Vec<u8>>)>;

/// Format 3: record keys first (the value is bound to the key as on the sink), then the
/// values with their binding data.
fn encrypt_bound(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let (transit_config, protection) = (&config.config, &config.protection);
    let flags = protection.flags();
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |record| {
        let value_key: ValueKey = match record.value {
            None => None,
            Some(_) => match transit_config
                .key
                .for_record(&record)
                .and_then(|key| Ok((key, transit_config.context_for(record.key.as_deref())?)))
            {
                Ok(found) => Some(found),
                Err(failure) => return Start::Fail(failure),
            },
        };
        match protection.outgoing(record, &mut streams, value_key) {
            Ok(out) => Start::Work(out),
            Err(failure) => Start::Fail(failure),
        }
    });
    protect_keys(&mut batch, protection);
    batch.vault(
        "vault encrypt",
        |out| {
            let (Some((key, context)), Some(plaintext)) = (&out.extra, out.value.take()) else {
                return Ok(None);
            };
            let item = BoundEncryptItem {
                plaintext,
                context: context.clone(),
                associated_data: out.binding(flags, None),
            };
            Ok(Some((key.clone(), vec![item])))
        },
        transit::encrypt_bound,
        |out, mut ciphertexts| {
            out.value = ciphertexts.pop().map(String::into_bytes);
            Ok(())
        },
    );
    batch.finish(|out| {
        let key = out.extra.as_ref().map(|(key, _)| key.name().to_string());
        let stamp = key.as_deref().map(|key| ("encrypt-value", key));
        Ok(out.output(protection, stamp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{Failure, Header, Policy};

    fn for_tenant(tenant: &str, value: &str) -> SourceRecord {
        let mut record = record("k", value);
        record.headers.push(Header {
            key: "tenant".into(),
            value: Some(tenant.as_bytes().to_vec()),
        });
        record
    }

    /// A record's failure that must be dead-lettered, naming the template but not the
    /// key it rendered (a header value).
    fn assert_dead_lettered_quietly(result: &TransformResult, tenant: &str) {
        match result {
            Err(Failure::InvalidInput(reason)) => {
                assert!(reason.contains("tenant-{header:tenant}"), "{reason}");
                assert!(!reason.contains(tenant), "{tenant:?} leaks: {reason}");
            }
            other => panic!("{tenant}: expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn a_tenant_whose_key_is_denied_or_missing_fails_alone_as_invalid_input() {
        let host = Host::install();
        host.create_key("tenant-acme");
        host.create_key("tenant-evil");
        host.deny_key("tenant-evil");
        EncryptValue::init(r#"{"key":"tenant-{header:tenant}"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![
            for_tenant("acme", "a1"),
            for_tenant("evil", "e1"),
            for_tenant("ghost", "g1"),
            for_tenant("acme", "a2"),
        ]);
        for ok in [&results[0], &results[3]] {
            let value = ok.as_ref().expect("acme's records go through")[0]
                .value
                .clone();
            assert!(value.unwrap().starts_with(b"vault:v1:"));
        }
        assert_dead_lettered_quietly(&results[1], "evil");
        assert_dead_lettered_quietly(&results[2], "ghost");
    }

    #[test]
    fn a_denied_fixed_key_waits_for_the_operator_and_a_missing_one_is_a_policy_error() {
        let host = Host::install();
        host.create_key("customers");
        host.deny_key("customers");
        EncryptValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![record("k", "v")]);
        assert!(
            matches!(&results[0], Err(Failure::Retryable(m)) if m.contains("customers")),
            "{results:?}"
        );
        EncryptValue::init(r#"{"key":"nobody-made-me"}"#.into()).unwrap();
        let results = EncryptValue::transform(vec![record("k", "v")]);
        assert!(
            matches!(&results[0], Err(Failure::PolicyError(_))),
            "{results:?}"
        );
    }

    #[test]
    fn a_key_outside_allowed_keys_fails_before_any_vault_call() {
        let host = Host::install();
        host.create_key("tenant-acme");
        EncryptValue::init(
            r#"{"key":"tenant-{header:tenant}","allowed_keys":["tenant-acme"]}"#.into(),
        )
        .unwrap();
        let results =
            EncryptValue::transform(vec![for_tenant("acme", "a1"), for_tenant("mallory", "m1")]);
        assert!(results[0].is_ok());
        assert_dead_lettered_quietly(&results[1], "mallory");
        assert!(
            host.calls().iter().all(|call| call.key == "tenant-acme"),
            "{:?}",
            host.calls()
        );
        let error = EncryptValue::init(r#"{"key":"customers","allowed_keys":["tenant-*"]}"#.into())
            .unwrap_err();
        assert!(error.starts_with("policy.config.allowed_keys"), "{error}");
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::{BoundDecryptItem, DecryptItem, TransitError};

        const STREAM: &str = "orders.protected";
        const SEALING: &str = r#"{"key":"customers","record_keys":"encrypt",
            "record_keys_key":"record-keys","headers":"seal","keep_headers":["traceparent"],
            "bind":["stream","key"]}"#;

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            host.set_sink_topic("test", STREAM);
            EncryptValue::init(config.into()).expect("a valid configuration");
            host
        }

        fn with(mut record: SourceRecord, headers: &[(&str, Option<&str>)]) -> SourceRecord {
            record.headers = headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.to_string(),
                    value: value.map(|v| v.as_bytes().to_vec()),
                })
                .collect();
            record
        }

        fn names(headers: &[Header]) -> Vec<&str> {
            headers.iter().map(|h| h.key.as_str()).collect()
        }

        fn open(ciphertext: &[u8], binding: Vec<u8>) -> Result<Vec<u8>, TransitError> {
            let item = BoundDecryptItem {
                ciphertext: String::from_utf8(ciphertext.to_vec()).unwrap(),
                context: None,
                associated_data: binding,
            };
            transit::decrypt_bound("customers", &[item])
                .unwrap()
                .remove(0)
        }

        fn source_key(sink_key: &[u8], stream: &str) -> Result<Vec<u8>, TransitError> {
            let item = DecryptItem {
                ciphertext: String::from_utf8(sink_key.to_vec()).unwrap(),
                context: Some(stream.as_bytes().to_vec()),
            };
            transit::decrypt("record-keys", &[item]).unwrap().remove(0)
        }

        #[test]
        fn keys_encrypted_headers_sealed_and_values_bound_in_two_vault_calls() {
            let host = start(SEALING);
            let headers = [
                ("a", Some("1")),
                ("traceparent", Some("00-1")),
                ("a", Some("2")),
                ("valueless", None),
            ];
            let tombstone = SourceRecord {
                value: None,
                ..with(record("k1", ""), &headers)
            };
            let keyless = SourceRecord {
                key: None,
                ..record("", "v3")
            };
            let results = EncryptValue::transform(vec![
                with(record("k1", "v1"), &headers),
                record("k1", "v2"),
                tombstone,
                keyless,
            ]);
            let out: Vec<OutputRecord> = results
                .into_iter()
                .map(|r| r.expect("protected").remove(0))
                .collect();
            assert_eq!(
                host.items_per_call(Operation::Encrypt),
                [2],
                "one key and the probe"
            );
            assert_eq!(host.items_per_call(Operation::EncryptBound), [3]);

            let flags = Flags::from_header_value(b"3;47").unwrap();
            let sink_key = out[0].key.clone().unwrap();
            assert_eq!(source_key(&sink_key, STREAM), Ok(b"k1".to_vec()));
            assert_eq!(
                out[1].key.as_ref(),
                Some(&sink_key),
                "same source key, same sink key"
            );
            assert_eq!(
                out[2].key.as_ref(),
                Some(&sink_key),
                "a tombstone still deletes"
            );
            assert_eq!(out[3].key, None);
            assert_eq!(
                names(&out[0].headers),
                [
                    "traceparent",
                    "kafka-transit.policy",
                    "kafka-transit.key",
                    PROTECTION_HEADER
                ]
            );
            assert_eq!(out[0].headers[3].value.as_deref(), Some(&b"3;47"[..]));
            let framed = open(
                out[0].value.as_deref().unwrap(),
                record::binding(flags, STREAM, Some(&sink_key), None),
            )
            .unwrap();
            let (sealed, value) = record::unframe(&framed).unwrap();
            assert_eq!(value, b"v1");
            assert_eq!(
                sealed,
                [
                    ("a".to_string(), Some(b"1".to_vec())),
                    ("a".to_string(), Some(b"2".to_vec())),
                    ("valueless".to_string(), None)
                ]
            );
            // Moved to another stream, or under another key, it does not open.
            for binding in [
                record::binding(flags, "elsewhere", Some(&sink_key), None),
                record::binding(flags, STREAM, None, None),
                record::binding(flags, STREAM, Some(b"k1"), None),
                record::binding(Flags::parse(0x43).unwrap(), STREAM, Some(&sink_key), None),
            ] {
                assert!(matches!(
                    open(out[0].value.as_deref().unwrap(), binding),
                    Err(TransitError::InvalidInput(m)) if m.contains("authentication failed")
                ));
            }
            assert!(
                host.decrypt(
                    "customers",
                    std::str::from_utf8(out[0].value.as_deref().unwrap()).unwrap()
                )
                .is_err(),
                "not without its binding either"
            );
            assert_eq!(out[2].value, None);
            assert_eq!(names(&out[2].headers), ["traceparent", PROTECTION_HEADER]);
            let keyless = open(
                out[3].value.as_deref().unwrap(),
                record::binding(flags, STREAM, None, None),
            );
            assert_eq!(record::unframe(&keyless.unwrap()).unwrap().1, b"v3");
        }

        #[test]
        fn hmac_keys_bind_only_what_is_asked_and_a_named_stream_wins() {
            let _host = start(
                r#"{"key":"customers","record_keys":"hmac","record_keys_key":"record-keys",
                    "stream":"orders"}"#,
            );
            let out = EncryptValue::transform(vec![with(record("k1", "v1"), &[("h", Some("x"))])])
                .remove(0)
                .unwrap()
                .remove(0);
            let expected = transit::hmac("record-keys", &[b"orders\0k1".to_vec()]).unwrap();
            assert_eq!(out.key, Some(expected[0].clone().unwrap().into_bytes()));
            assert_eq!(
                names(&out.headers),
                [
                    "h",
                    "kafka-transit.policy",
                    "kafka-transit.key",
                    PROTECTION_HEADER
                ]
            );
            assert_eq!(out.headers[3].value.as_deref(), Some(&b"3;80"[..]));
            // Nothing bound but the flags: the value opens with the bare binding only.
            let flags = Flags::parse(0x80).unwrap();
            assert_eq!(
                open(
                    out.value.as_deref().unwrap(),
                    record::binding(flags, "", None, None)
                ),
                Ok(b"v1".to_vec())
            );
        }

        #[test]
        fn no_sink_topic_to_bind_to_is_a_policy_error_naming_stream() {
            let host = Host::install();
            host.create_key("customers");
            EncryptValue::init(r#"{"key":"customers","bind":["stream"]}"#.into()).unwrap();
            let results = EncryptValue::transform(vec![record("k", "v")]);
            assert!(
                matches!(&results[0], Err(Failure::PolicyError(m)) if m.contains("policy.config.stream")),
                "{results:?}"
            );
            assert!(host.calls().is_empty(), "nothing reached Vault");
        }

        #[test]
        fn without_options_the_output_is_what_it_always_was() {
            let host = start(r#"{"key":"customers"}"#);
            let out = EncryptValue::transform(vec![with(record("k1", "v1"), &[("h", Some("x"))])])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(out.key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(
                names(&out.headers),
                ["h", "kafka-transit.policy", "kafka-transit.key"]
            );
            let text = String::from_utf8(out.value.unwrap()).unwrap();
            assert_eq!(host.decrypt("customers", &text), Ok(b"v1".to_vec()));
            assert_eq!(host.items_per_call(Operation::Encrypt), [1]);
            assert!(host.items_per_call(Operation::EncryptBound).is_empty());
            let tombstone = SourceRecord {
                value: None,
                ..with(record("k", ""), &[("h", None)])
            };
            let out = EncryptValue::transform(vec![tombstone.clone()])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(
                (out.key, out.value, out.headers),
                (tombstone.key, None, tombstone.headers)
            );
        }

        #[test]
        fn options_this_policy_cannot_honour_are_refused_at_init() {
            let _host = Host::install();
            for (config, field) in [
                (r#"{"key":"k","compression":"zstd"}"#, "compression"),
                (
                    r#"{"key":"k","require_binding":["key"]}"#,
                    "require_binding",
                ),
                (r#"{"key":"k","record_keys":"encrypt"}"#, "record_keys_key"),
                (
                    r#"{"key":"k","context_from":"record-key","record_keys":"hmac","record_keys_key":"h"}"#,
                    "context_from",
                ),
            ] {
                let error = EncryptValue::init(config.into()).unwrap_err();
                assert!(
                    error.starts_with(&format!("policy.config.{field}: ")),
                    "{error}"
                );
            }
            let typo = EncryptValue::init(r#"{"key":"k","bnid":["key"]}"#.into()).unwrap_err();
            assert!(
                typo.contains("unknown field `bnid`") && typo.contains("bind"),
                "{typo}"
            );
        }
    }
}
