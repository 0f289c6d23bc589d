//! Envelope encryption of whole values, for large or high-rate records: the host
//! encrypts each value locally with AES-256-GCM under a data key Vault generated and
//! wrapped, so a stream costs a few Vault requests in all and values of any size work.
//! The value becomes an envelope in the published format (docs/envelope-format.md),
//! which any Vault client can open. Tombstones pass through unchanged.
//!
//! Config: `key` (required), `context` (a fixed derivation context, for derived keys).
//! Per-record contexts (`context_from`) are refused: they would need a data key per
//! record, which is what envelope encryption exists to avoid.
//!
//! Or, in place of `key`, a transit key per data subject (docs/forgetting.md):
//! `subject` (whose data a record is: `"{key}"`, `"{header:user}"`,
//! `"{value:/customer/id}"`), `subject_keys` (the prefix of their keys' names) and
//! `subject_hmac_key` (the transit key whose HMAC of a subject's id names its key). Each
//! subject's key is created on its first record; `kafka-transit forget` deletes it, and
//! from then on nothing of theirs opens, anywhere.
//!
//! Format 3 (docs/protected-records.md), when any of these is set: `record_keys`
//! (`"encrypt"` or `"hmac"` under `record_keys_key`, one Vault call per batch for its
//! distinct keys), `headers = "seal"` with `keep_headers`, `bind = ["stream", "key"]`,
//! `stream` (default: the sink topic), `compression` (`"zstd"`, `"lz4"`: before
//! encryption) and `pad_to` (bytes: the compressed plaintext padded to a multiple). The
//! values become version 3 envelopes (flags and a key commitment in the authenticated
//! header, the record's binding data in the associated data), and every format 3
//! record, tombstones too, carries the `kafka-transit.protection` header. With none of
//! these set the output is what it always was (version 2 envelopes).

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::envelope::{self, SealItem};
use kafka_transit_policy_sdk::protection::{
    protect_keys, Outgoing, Protected, ProtectionConfig, Role, Shape, Streams,
};
use kafka_transit_policy_sdk::subject::{forgotten_first, SubjectKeys};
use kafka_transit_policy_sdk::transit::{self, TransitError};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_by_key, EnvelopeConfig, OutputRecord, ResolvedKey,
    SourceRecord, TransformResult,
};

/// Which transit key wraps each record's data key.
enum Keys {
    /// `key`: one key, or a template naming one per record.
    Named(EnvelopeConfig),
    /// `subject`, `subject_keys`, `subject_hmac_key`: one per data subject.
    PerSubject(SubjectKeys),
}

type Config = Protected<Keys>;

fn parse(json: &str) -> Result<Config, String> {
    Protected::parse(json, Role::Protect, Shape::Envelope, |json| {
        Ok(match SubjectKeys::from_config(json)? {
            Some(subjects) => Keys::PerSubject(subjects),
            None => Keys::Named(EnvelopeConfig::parse(json)?),
        })
    })
}

configured_policy!(EnvelopeSeal, parse, seal);

fn seal(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    match &config.config {
        Keys::PerSubject(subjects) => seal_per_subject(subjects, &config.protection, batch),
        Keys::Named(named) if config.protection.is_format3() => {
            seal_v3(named, &config.protection, batch)
        }
        Keys::Named(named) => seal_v2(named, batch),
    }
}

fn seal_v2(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "envelope seal",
        |record| {
            config.key.with_value(record, |plaintext, _| {
                Ok(SealItem {
                    plaintext,
                    aad: Vec::new(),
                })
            })
        },
        |key, items| {
            envelope::seal(key, config.context(), items)
                .map(|sealed| sealed.into_iter().map(Ok).collect())
        },
        |record, key, sealed| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(sealed),
            headers: stamped(record.headers, "envelope-seal", key),
        },
    )
}

/// Format 3: record keys first (envelopes are bound to the key as on the sink), then
/// version 3 envelopes with the binding in their associated data.
fn seal_v3(
    envelope_config: &EnvelopeConfig,
    protection: &ProtectionConfig,
    batch: Vec<SourceRecord>,
) -> Vec<TransformResult> {
    let flags = protection.flags();
    let options = protection.seal_options(flags);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |record| {
        let key: Option<ResolvedKey> = match record.value {
            None => None,
            Some(_) => match envelope_config.key.for_record(&record) {
                Ok(key) => Some(key),
                Err(failure) => return Start::Fail(failure),
            },
        };
        match protection.outgoing(record, &mut streams, key) {
            Ok(out) => Start::Work(out),
            Err(failure) => Start::Fail(failure),
        }
    });
    protect_keys(&mut batch, protection);
    batch.vault(
        "envelope seal",
        |out| {
            let (Some(key), Some(plaintext)) = (&out.extra, out.value.take()) else {
                return Ok(None);
            };
            let item = SealItem {
                plaintext,
                aad: out.binding_parts(flags),
            };
            Ok(Some((key.clone(), vec![item])))
        },
        |key, items| {
            envelope::seal_v3(key, envelope_config.context(), options, items)
                .map(|sealed| sealed.into_iter().map(Ok).collect())
        },
        |out, mut sealed| {
            out.value = sealed.pop();
            Ok(())
        },
    );
    batch.finish(|out| {
        let key = out.extra.as_ref().map(|key| key.name().to_string());
        let stamp = key.as_deref().map(|key| ("envelope-seal", key));
        Ok(out.output(protection, stamp))
    })
}

/// A record sealed under its data subject's key: the subject's id (`None`: a
/// tombstone, which has nothing to seal), then its key once known.
struct Subject {
    id: String,
    key: Option<ResolvedKey>,
}

/// A key per data subject (docs/forgetting.md): each record's subject, the names of the
/// subjects not seen before in one HMAC request, then envelopes per subject key, each
/// key created on its subject's first record. Formats 2 and 3 alike.
fn seal_per_subject(
    subjects: &SubjectKeys,
    protection: &ProtectionConfig,
    batch: Vec<SourceRecord>,
) -> Vec<TransformResult> {
    let format3 = protection.is_format3();
    let flags = protection.flags();
    let options = protection.seal_options(flags);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |record| {
        let subject = match record.value {
            None => None,
            Some(_) => match subjects.subject_of(&record) {
                Ok(id) => Some(Subject {
                    key: subjects.cached(&id),
                    id,
                }),
                Err(failure) => return Start::Fail(failure),
            },
        };
        match protection.outgoing(record, &mut streams, subject) {
            Ok(out) => Start::Work(out),
            Err(failure) => Start::Fail(failure),
        }
    });
    protect_keys(&mut batch, protection);
    batch.vault(
        "subject key names",
        |out: &mut Outgoing<Option<Subject>>| match &out.extra {
            Some(subject) if subject.key.is_none() => Ok(Some((
                ResolvedKey::fixed(subjects.hmac_key()),
                vec![subject.id.as_bytes().to_vec()],
            ))),
            _ => Ok(None),
        },
        transit::hmac,
        |out, mut hmacs| {
            if let (Some(subject), Some(hmac)) = (&mut out.extra, hmacs.pop()) {
                subject.key = Some(subjects.learn(&subject.id, &hmac)?);
            }
            Ok(())
        },
    );
    batch.vault(
        "envelope seal",
        |out| {
            let (Some(Subject { key: Some(key), .. }), Some(plaintext)) =
                (&out.extra, out.value.take())
            else {
                return Ok(None);
            };
            let aad = if format3 {
                out.binding_parts(flags)
            } else {
                Vec::new()
            };
            Ok(Some((key.clone(), vec![SealItem { plaintext, aad }])))
        },
        |key, items| {
            let seal = || {
                if format3 {
                    envelope::seal_v3(key, None, options, items)
                } else {
                    envelope::seal(key, None, items)
                }
            };
            let sealed = match seal() {
                // The subject's first record: its key is made now.
                Err(TransitError::KeyNotFound(_)) => {
                    subjects.create(key)?;
                    seal()
                }
                other => other,
            };
            sealed.map(|sealed| sealed.into_iter().map(Ok).collect())
        },
        |out, mut sealed| {
            out.value = sealed.pop();
            Ok(())
        },
    );
    let results = batch.finish(|out| {
        let key = out
            .extra
            .as_ref()
            .and_then(|subject| subject.key.as_ref())
            .map(|key| key.name().to_string());
        let stamp = key.as_deref().map(|key| ("envelope-seal", key));
        if format3 {
            return Ok(out.output(protection, stamp));
        }
        Ok(OutputRecord {
            topic: None,
            key: out.key,
            headers: match stamp {
                Some((policy, key)) => stamped(out.headers, policy, key),
                None => out.headers,
            },
            value: out.value,
        })
    });
    results.into_iter().map(forgotten_first).collect()
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

    #[test]
    fn a_tenant_whose_key_is_denied_or_missing_fails_alone_as_invalid_input() {
        let host = Host::install();
        host.create_key("tenant-acme");
        host.create_key("tenant-evil");
        host.deny_key("tenant-evil");
        EnvelopeSeal::init(r#"{"key":"tenant-{header:tenant}"}"#.into()).unwrap();
        let results = EnvelopeSeal::transform(vec![
            for_tenant("acme", "a1"),
            for_tenant("evil", "e1"),
            for_tenant("ghost", "g1"),
        ]);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        for (result, tenant) in [(&results[1], "evil"), (&results[2], "ghost")] {
            match result {
                Err(Failure::InvalidInput(reason)) => {
                    assert!(reason.contains("tenant-{header:tenant}"), "{reason}");
                    assert!(!reason.contains(tenant), "{tenant:?} leaks: {reason}");
                }
                other => panic!("{tenant}: expected invalid input, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_denied_fixed_key_waits_for_the_operator() {
        let host = Host::install();
        host.create_key("stream");
        host.deny_key("stream");
        EnvelopeSeal::init(r#"{"key":"stream"}"#.into()).unwrap();
        let results = EnvelopeSeal::transform(vec![record("k", "v")]);
        assert!(
            matches!(&results[0], Err(Failure::Retryable(_))),
            "{results:?}"
        );
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope::OpenItem;
        use kafka_transit_policy_sdk::envelope_format::{
            self,
            record::{self, Flags, PROTECTION_HEADER},
        };
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::TransitError;

        const STREAM: &str = "orders.protected";

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("stream");
            host.create_derived_key("record-keys", true);
            host.set_sink_topic("test", STREAM);
            EnvelopeSeal::init(config.into()).expect("a valid configuration");
            host
        }

        fn open(sealed: &[u8], aad: Vec<u8>) -> Result<Vec<u8>, TransitError> {
            let item = OpenItem {
                envelope: sealed.to_vec(),
                aad,
            };
            envelope::open("stream", None, &[item]).unwrap().remove(0)
        }

        #[test]
        fn version_3_envelopes_carry_the_protection_headers_flags_and_open_only_bound() {
            let host = start(
                r#"{"key":"stream","record_keys":"encrypt","record_keys_key":"record-keys",
                    "headers":"seal","bind":["stream","key"],"compression":"zstd","pad_to":64}"#,
            );
            let mut first = record("k1", "v1");
            first.headers.push(Header {
                key: "secret-header".into(),
                value: Some(b"s".to_vec()),
            });
            let tombstone = SourceRecord {
                value: None,
                ..record("k1", "")
            };
            let out: Vec<OutputRecord> =
                EnvelopeSeal::transform(vec![first, record("k2", "v2"), tombstone])
                    .into_iter()
                    .map(|r| r.expect("sealed").remove(0))
                    .collect();
            assert_eq!(
                host.items_per_call(Operation::SealV3),
                [2],
                "one data key call"
            );
            assert_eq!(
                host.items_per_call(Operation::Encrypt),
                [3],
                "two keys and the probe"
            );

            let flags = Flags::parse(0x01 | 0x02 | 0x04 | 0x40 | 0x10 | 0x08).unwrap();
            let header = out[0].headers.last().unwrap();
            assert_eq!(header.key, PROTECTION_HEADER);
            assert_eq!(
                header.value.as_deref(),
                Some(flags.header_value().as_bytes())
            );
            let envelope = envelope_format::parse(out[0].value.as_deref().unwrap()).unwrap();
            assert_eq!((envelope.version, envelope.flags), (3, flags));
            assert!(out[0].headers.iter().all(|h| h.key != "secret-header"));

            let key = out[0].key.clone().unwrap();
            let framed = open(
                out[0].value.as_deref().unwrap(),
                record::binding_parts(flags, STREAM, Some(&key), None),
            )
            .unwrap();
            let (sealed, value) = record::unframe(&framed).unwrap();
            assert_eq!((sealed[0].0.as_str(), value), ("secret-header", &b"v1"[..]));
            // The other record's key, another stream, nothing bound: no.
            let other_key = out[1].key.clone().unwrap();
            for aad in [
                record::binding_parts(flags, STREAM, Some(&other_key), None),
                record::binding_parts(flags, "elsewhere", Some(&key), None),
                Vec::new(),
            ] {
                assert!(open(out[0].value.as_deref().unwrap(), aad).is_err());
            }
            assert_eq!(out[2].key.as_ref(), Some(&key));
            assert_eq!(out[2].value, None);
            assert_eq!(
                out[2]
                    .headers
                    .iter()
                    .map(|h| h.key.as_str())
                    .collect::<Vec<_>>(),
                [PROTECTION_HEADER]
            );
        }

        #[test]
        fn without_options_envelopes_stay_version_2() {
            let host = start(r#"{"key":"stream"}"#);
            let out = EnvelopeSeal::transform(vec![record("k", "v")])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(
                envelope_format::parse(out.value.as_deref().unwrap())
                    .unwrap()
                    .version,
                2
            );
            assert!(out.headers.iter().all(|h| h.key != PROTECTION_HEADER));
            assert_eq!(host.items_per_call(Operation::Seal), [1]);
            assert!(host.items_per_call(Operation::SealV3).is_empty());
        }

        #[test]
        fn compression_alone_is_format_3_and_per_record_contexts_stay_refused() {
            let _host = start(r#"{"key":"stream","compression":"lz4"}"#);
            let out = EnvelopeSeal::transform(vec![record("k", "v")])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(
                out.headers.last().unwrap().value.as_deref(),
                Some(&b"3;20"[..])
            );
            assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                open(out.value.as_deref().unwrap(), Vec::new()),
                Ok(b"v".to_vec())
            );
            let error = EnvelopeSeal::init(
                r#"{"key":"stream","bind":["key"],"context_from":"record-key"}"#.into(),
            )
            .unwrap_err();
            assert!(error.starts_with("policy.config.context_from"), "{error}");
            let error = EnvelopeSeal::init(r#"{"key":"stream","pad_to":"64"}"#.into()).unwrap_err();
            assert!(error.starts_with("policy.config.pad_to: "), "{error}");
        }
    }

    mod per_subject {
        use super::*;
        use kafka_transit_policy_sdk::envelope::OpenItem;
        use kafka_transit_policy_sdk::envelope_format;
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::TransitError;

        const CONFIG: &str = r#"{"subject": "{value:/customer}", "subject_keys": "customers-",
                                 "subject_hmac_key": "subject-ids"}"#;

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("subject-ids");
            host.allow_key_creation();
            EnvelopeSeal::init(config.into()).expect("a valid configuration");
            host
        }

        fn of(customer: &str, i: usize) -> SourceRecord {
            record(
                format!("k{i}"),
                format!(r#"{{"customer": "{customer}", "n": {i}}}"#),
            )
        }

        fn key_name(envelope: &[u8]) -> String {
            envelope_format::parse(envelope)
                .unwrap()
                .key_name
                .to_string()
        }

        fn open(envelope: &[u8]) -> Result<Vec<u8>, TransitError> {
            let item = OpenItem {
                envelope: envelope.to_vec(),
                aad: Vec::new(),
            };
            envelope::open(&key_name(envelope), None, &[item])?.remove(0)
        }

        #[test]
        fn each_subject_gets_its_own_key_named_by_one_hmac_call_per_batch() {
            let host = start(CONFIG);
            let batch = ["ann", "bob", "ann", "cy"]
                .iter()
                .enumerate()
                .map(|(i, c)| of(c, i))
                .collect();
            let out: Vec<OutputRecord> = EnvelopeSeal::transform(batch)
                .into_iter()
                .map(|r| r.unwrap().remove(0))
                .collect();
            let names: Vec<String> = out
                .iter()
                .map(|o| key_name(o.value.as_ref().unwrap()))
                .collect();
            assert_eq!(names[0], names[2], "one subject, one key");
            assert_ne!(names[0], names[1]);
            assert_ne!(names[1], names[3]);
            for name in &names {
                assert!(name.starts_with("customers-"), "{name}");
                assert!(!name.contains("ann") && !name.contains("bob"), "{name}");
                assert!(host.has_key(name), "created on first use");
            }
            assert_eq!(host.items_per_call(Operation::Hmac), [4]);
            for (i, o) in out.iter().enumerate() {
                let plain = open(o.value.as_ref().unwrap()).unwrap();
                assert!(String::from_utf8(plain)
                    .unwrap()
                    .contains(&format!("\"n\": {i}")));
                assert_eq!(
                    o.headers.last().unwrap().value.as_deref(),
                    Some(names[i].as_bytes()),
                    "kafka-transit.key names the subject's key"
                );
            }
            // Known subjects cost no HMAC call in the next batch.
            EnvelopeSeal::transform(vec![of("bob", 9)]);
            assert_eq!(host.items_per_call(Operation::Hmac), [4]);
        }

        #[test]
        fn a_record_without_a_subject_fails_and_a_forgotten_one_is_not_sealed_again() {
            let host = start(CONFIG);
            let sealed = EnvelopeSeal::transform(vec![of("ann", 0)])
                .remove(0)
                .unwrap();
            let ann = key_name(sealed[0].value.as_ref().unwrap());
            host.forget_key(&ann);
            assert!(matches!(
                open(sealed[0].value.as_ref().unwrap()),
                Err(TransitError::KeyNotFound(_))
            ));
            let results = EnvelopeSeal::transform(vec![
                record("k", r#"{"other": 1}"#),
                record("k", "not json"),
                of("ann", 1),
                of("bob", 2),
            ]);
            for result in &results[..3] {
                match result {
                    Err(Failure::InvalidInput(reason)) => {
                        assert!(!reason.contains("ann"), "{reason}")
                    }
                    other => panic!("expected invalid input, got {other:?}"),
                }
            }
            assert!(
                matches!(&results[2], Err(Failure::InvalidInput(m)) if m.starts_with("subject forgotten")),
                "{:?}",
                results[2]
            );
            assert!(results[3].is_ok(), "{:?}", results[3]);
            assert!(!host.has_key(&ann), "a forgotten key is not made again");
        }

        #[test]
        fn options_are_checked_together() {
            let _host = Host::install();
            for (config, field) in [
                (
                    r#"{"subject": "{key}", "subject_keys": "c-"}"#,
                    "subject_hmac_key",
                ),
                (
                    r#"{"subject": "{key}", "subject_hmac_key": "ids"}"#,
                    "subject_keys",
                ),
                (
                    r#"{"subject": "{key}", "subject_keys": "c-", "subject_hmac_key": "ids", "key": "k"}"#,
                    "key",
                ),
                (r#"{"key": "{key}"}"#, "key"),
            ] {
                let error = EnvelopeSeal::init(config.into()).unwrap_err();
                assert!(
                    error.starts_with(&format!("policy.config.{field}: ")),
                    "{error}"
                );
            }
        }

        #[test]
        fn format_3_binds_and_protects_record_keys_per_subject_too() {
            let host = start(
                r#"{"subject": "{key}", "subject_keys": "customers-",
                    "subject_hmac_key": "subject-ids", "bind": ["stream", "key"]}"#,
            );
            host.set_sink_topic("test", "s");
            let out = EnvelopeSeal::transform(vec![record("4711", "v")])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(
                out.headers.last().unwrap().value.as_deref(),
                Some(&b"3;03"[..])
            );
            let envelope = out.value.unwrap();
            assert!(key_name(&envelope).starts_with("customers-"));
            assert!(
                open(&envelope).is_err(),
                "bound: no open without its binding"
            );
        }
    }
}
