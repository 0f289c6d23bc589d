//! Opens envelopes made by `envelope-seal` (docs/envelope-format.md). A value that is
//! not an envelope, was tampered with, or was sealed under another transit key is an
//! invalid-input failure, never passed on. Removes the kafka-transit stamps, so the
//! record comes out as it went in. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`. Or, for
//! records sealed per data subject (docs/forgetting.md), `subject_keys` (the prefix of
//! the subjects' keys: each envelope names its own, which must have it) and
//! `on_forgotten` (`"dead-letter"`, the default, or `"skip"`): a record whose subject
//! was forgotten fails with a reason starting "subject forgotten".
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header must hold a version 3 envelope with the same flags (and a version 3 envelope
//! must come with its header), checked before any Vault call. It is opened with the
//! binding rebuilt from the flags, the stream (`stream`, default: the record's own
//! topic) and the key as received, unpadded and decompressed by the host; sealed
//! headers come back after the kept ones, an encrypted key is decrypted under
//! `record_keys_key` (an HMAC'd one is refused unless `keep_hmac_keys = true`), and the
//! protection header is dropped. `require_binding` refuses records bound to less, and
//! records without the header.

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::envelope::{self, OpenItem};
use kafka_transit_policy_sdk::protection::{
    check_envelope, is_protected, restore_keys, Protected, Role, Shape, Streams,
};
use kafka_transit_policy_sdk::subject::{forgotten_first, OnForgotten, SubjectOpening};
use kafka_transit_policy_sdk::transit::TransitError;
use kafka_transit_policy_sdk::{
    configured_policy, envelope_format, forward, log, EnvelopeConfig, Failure, Level, OutputRecord,
    ResolvedKey, SourceRecord, TransformResult,
};

/// Which transit key an envelope must be sealed under.
enum Keys {
    /// `key`: one key, or a template naming one per record.
    Named(EnvelopeConfig),
    /// `subject_keys`: the key of the record's data subject, which the envelope names.
    PerSubject(SubjectOpening),
}

type Config = Protected<Keys>;

fn parse(json: &str) -> Result<Config, String> {
    Protected::parse(json, Role::Open, Shape::Envelope, |json| {
        Ok(match SubjectOpening::from_config(json)? {
            Some(subjects) => Keys::PerSubject(subjects),
            None => Keys::Named(EnvelopeConfig::parse(json)?),
        })
    })
}

configured_policy!(EnvelopeOpen, parse, open);

fn open(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let protection = &config.protection;
    let context = match &config.config {
        Keys::Named(named) => named.context(),
        Keys::PerSubject(_) => None,
    };
    let key_for = |record: &SourceRecord, envelope: &[u8]| match &config.config {
        Keys::Named(named) => named.key.for_record(record),
        Keys::PerSubject(subjects) => {
            let header = envelope_format::parse(envelope)
                .map_err(|e| Failure::InvalidInput(e.to_string()))?;
            subjects.key_of(header.key_name)
        }
    };
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        // A tombstone of formats 1/2 stays as it is.
        if record.value.is_none() && !is_protected(&record) && !protection.require_binding.any() {
            return Start::Output(forward(record));
        }
        let envelope = match record.value.take() {
            None => None,
            // An envelope of another key fails here, before Vault, and without the name
            // its header claims in the reason.
            Some(envelope) => match key_for(&record, &envelope) {
                Ok(key) => Some((key, envelope)),
                Err(failure) => return Start::Fail(failure),
            },
        };
        let incoming = match protection.incoming(record, &mut streams, envelope) {
            Ok(incoming) => incoming,
            Err(failure) => return Start::Fail(failure),
        };
        if let Some((key, envelope)) = &incoming.extra {
            let checked = envelope_format::sealed_under(envelope, key)
                .and_then(|header| check_envelope(&header, incoming.flags));
            if let Err(failure) = checked {
                return Start::Fail(failure);
            }
        }
        Start::Work(incoming)
    });
    restore_keys(&mut batch, protection);
    let per_subject = matches!(config.config, Keys::PerSubject(_));
    batch.vault(
        "envelope open",
        |incoming| {
            let aad = incoming.binding_parts();
            Ok(incoming
                .extra
                .take()
                .map(|(key, envelope): (ResolvedKey, _)| (key, vec![OpenItem { envelope, aad }])))
        },
        |key, items| match envelope::open(key, context, items) {
            // A subject's key that is gone was deleted by `forget`.
            Err(TransitError::KeyNotFound(_)) if per_subject => Err(SubjectOpening::forgotten()),
            other => other,
        },
        |incoming, mut plaintexts| {
            let plaintext = plaintexts.pop().unwrap_or_default();
            incoming.value = Some(incoming.restore(plaintext)?);
            Ok(())
        },
    );
    let results = batch.finish(|incoming| {
        Ok::<_, Failure>(OutputRecord {
            topic: None,
            key: incoming.key,
            value: incoming.value,
            headers: incoming.headers,
        })
    });
    match &config.config {
        Keys::PerSubject(subjects) if subjects.on_forgotten == OnForgotten::Skip => {
            skip_forgotten(results)
        }
        Keys::PerSubject(_) => results.into_iter().map(forgotten_first).collect(),
        Keys::Named(_) => results,
    }
}

/// `on_forgotten = "skip"`: records of forgotten subjects leave no output, and the
/// log says how many.
fn skip_forgotten(results: Vec<TransformResult>) -> Vec<TransformResult> {
    let mut skipped = 0;
    let results = results
        .into_iter()
        .map(|result| match result {
            Err(failure) if SubjectOpening::is_forgotten(&failure) => {
                skipped += 1;
                Ok(Vec::new())
            }
            other => other,
        })
        .collect();
    if skipped > 0 {
        log(
            Level::Info,
            &format!(
                "skipped {skipped} record(s) of forgotten data subjects \
                 (policy.config.on_forgotten = \"skip\")"
            ),
        );
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::envelope::SealItem;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{Failure, Header, Policy};

    fn sealed_for(tenant: &str, envelope: &[u8]) -> SourceRecord {
        let mut record = record("k", envelope);
        record.headers.push(Header {
            key: "tenant".into(),
            value: Some(tenant.as_bytes().to_vec()),
        });
        record
    }

    fn seal(key: &str, plaintext: &str) -> Vec<u8> {
        let item = SealItem {
            plaintext: plaintext.as_bytes().to_vec(),
            aad: Vec::new(),
        };
        envelope::seal(key, None, &[item]).unwrap().remove(0)
    }

    #[test]
    fn a_tenant_whose_key_is_denied_or_missing_fails_alone_as_invalid_input() {
        let host = Host::install();
        host.create_key("tenant-acme");
        host.create_key("tenant-evil");
        let acme = seal("tenant-acme", "a1");
        let evil = seal("tenant-evil", "e1");
        host.deny_key("tenant-evil");
        EnvelopeOpen::init(r#"{"key":"tenant-{header:tenant}"}"#.into()).unwrap();
        let results = EnvelopeOpen::transform(vec![
            sealed_for("acme", &acme),
            sealed_for("evil", &evil),
            sealed_for("ghost", &acme),
        ]);
        assert_eq!(
            results[0].as_ref().unwrap()[0].value.as_deref(),
            Some(&b"a1"[..])
        );
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
    fn an_envelope_of_another_key_fails_before_vault_without_its_key_name() {
        let host = Host::install();
        host.create_key("customers");
        host.create_key("alice-at-example.com");
        let foreign = seal("alice-at-example.com", "x");
        EnvelopeOpen::init(r#"{"key":"customers"}"#.into()).unwrap();
        let calls = host.calls().len();
        let results = EnvelopeOpen::transform(vec![record("k", &foreign)]);
        assert!(
            matches!(&results[0], Err(Failure::InvalidInput(m))
                if m.contains("\"customers\"") && !m.contains("alice")),
            "{results:?}"
        );
        assert_eq!(host.calls().len(), calls, "no Vault call");
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope::SealOptions;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::protection::seal_options;
        use kafka_transit_policy_sdk::testing::Operation;

        const STREAM: &str = "orders.protected";

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            EnvelopeOpen::init(config.into()).expect("a valid configuration");
            host
        }

        /// What envelope-seal writes with `flags` (zstd, padded to 64 when the flags
        /// say so): `k1`, `v1`, the header `secret` sealed, `traceparent` in clear.
        fn written(flags: u8) -> SourceRecord {
            let flags = Flags::parse(flags).unwrap();
            let key = match flags.record_keys() {
                record::RecordKeys::Encrypted => {
                    let item = kafka_transit_policy_sdk::transit::EncryptItem {
                        plaintext: b"k1".to_vec(),
                        context: Some(STREAM.as_bytes().to_vec()),
                    };
                    kafka_transit_policy_sdk::transit::encrypt("record-keys", &[item]).unwrap()[0]
                        .clone()
                        .unwrap()
                        .into_bytes()
                }
                _ => b"k1".to_vec(),
            };
            let plaintext = match flags.headers() {
                true => record::frame(&[("secret".into(), Some(b"s".to_vec()))], b"v1"),
                false => b"v1".to_vec(),
            };
            let options: SealOptions = seal_options(
                flags.with_body(record::Compression::None, false),
                flags.compression(),
                if flags.padded() { 64 } else { 0 },
            );
            let item = SealItem {
                plaintext,
                aad: record::binding_parts(flags, STREAM, Some(&key), None),
            };
            let sealed = envelope::seal_v3("customers", None, options, &[item])
                .unwrap()
                .remove(0);
            SourceRecord {
                topic: STREAM.into(),
                key: Some(key),
                value: Some(sealed),
                headers: vec![
                    Header {
                        key: "traceparent".into(),
                        value: Some(b"00-1".to_vec()),
                    },
                    Header {
                        key: PROTECTION_HEADER.into(),
                        value: Some(flags.header_value().into_bytes()),
                    },
                ],
                ..record("", "")
            }
        }

        fn opened(record: SourceRecord) -> Result<OutputRecord, Failure> {
            EnvelopeOpen::transform(vec![record])
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
        fn sealed_headers_and_encrypted_keys_come_back() {
            let host = start(r#"{"key":"customers","record_keys_key":"record-keys"}"#);
            let flags = 0x01 | 0x02 | 0x04 | 0x40 | 0x10 | 0x08;
            let out = opened(written(flags)).unwrap();
            assert_eq!(out.key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(out.value.as_deref(), Some(&b"v1"[..]));
            let names: Vec<&str> = out.headers.iter().map(|h| h.key.as_str()).collect();
            assert_eq!(names, ["traceparent", "secret"]);
            assert_eq!(host.items_per_call(Operation::Open), [1]);
        }

        #[test]
        fn stripped_added_or_edited_headers_are_refused_before_vault_or_at_the_tag() {
            let host = start(r#"{"key":"customers"}"#);
            let mut stripped = written(0x03);
            stripped.headers.retain(|h| h.key != PROTECTION_HEADER);
            let mut edited = written(0x03);
            edited.headers[1].value = Some(b"3;01".to_vec());
            let calls = host.calls().len();
            assert_refused(
                opened(stripped),
                "without its kafka-transit.protection header",
            );
            assert_refused(opened(edited), "flags differ");
            let mut added = record(
                "k1",
                envelope::seal(
                    "customers",
                    None,
                    &[SealItem {
                        plaintext: b"v1".to_vec(),
                        aad: Vec::new(),
                    }],
                )
                .unwrap()
                .remove(0),
            );
            added.headers.push(Header {
                key: PROTECTION_HEADER.into(),
                value: Some(b"3;00".to_vec()),
            });
            let calls_after_seal = host.calls().len();
            assert_refused(opened(added), "version before 3");
            assert_eq!(host.calls().len(), calls_after_seal, "none reached Vault");
            assert_eq!(calls + 1, calls_after_seal);

            let moved = SourceRecord {
                topic: "elsewhere".into(),
                ..written(0x03)
            };
            assert_refused(opened(moved), "authentication failed");
            let mut rekeyed = written(0x03);
            rekeyed.key = Some(b"k2".to_vec());
            assert_refused(opened(rekeyed), "authentication failed");
        }

        #[test]
        fn require_binding_and_hmac_keys() {
            let host = start(r#"{"key":"customers","require_binding":["key"]}"#);
            let old = envelope::seal(
                "customers",
                None,
                &[SealItem {
                    plaintext: b"v".to_vec(),
                    aad: Vec::new(),
                }],
            )
            .unwrap()
            .remove(0);
            assert_refused(opened(record("k", old)), "format 1 or 2");
            assert_refused(opened(written(0x01)), "bound to less");
            assert!(opened(written(0x02)).is_ok());
            assert_refused(opened(written(0x82)), "keep_hmac_keys");
            EnvelopeOpen::init(r#"{"key":"customers","keep_hmac_keys":true}"#.into()).unwrap();
            assert_eq!(
                opened(written(0x82)).unwrap().key.as_deref(),
                Some(&b"k1"[..])
            );
            drop(host);
        }
    }

    mod per_subject {
        use super::*;
        use kafka_transit_policy_sdk::subject::FORGOTTEN;

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers-aaaa");
            host.create_key("customers-bbbb");
            host.create_key("other");
            EnvelopeOpen::init(config.into()).unwrap();
            host
        }

        #[test]
        fn each_envelope_opens_under_its_subjects_key_and_a_forgotten_one_says_so() {
            let host = start(r#"{"subject_keys": "customers-"}"#);
            let (a, b, other) = (
                seal("customers-aaaa", "a"),
                seal("customers-bbbb", "b"),
                seal("other", "o"),
            );
            host.forget_key("customers-bbbb");
            let results = EnvelopeOpen::transform(vec![
                record("1", &a),
                record("2", &b),
                record("3", &other),
            ]);
            assert_eq!(
                results[0].as_ref().unwrap()[0].value.as_deref(),
                Some(&b"a"[..])
            );
            assert!(
                matches!(&results[1], Err(Failure::InvalidInput(m)) if m.starts_with(FORGOTTEN)),
                "{:?}",
                results[1]
            );
            assert!(
                matches!(&results[2], Err(Failure::InvalidInput(m)) if !m.contains(FORGOTTEN)),
                "not a subject's key: {:?}",
                results[2]
            );
        }

        #[test]
        fn on_forgotten_skip_leaves_them_out_and_logs_how_many() {
            let host = start(r#"{"subject_keys": "customers-", "on_forgotten": "skip"}"#);
            let (a, b) = (seal("customers-aaaa", "a"), seal("customers-bbbb", "b"));
            host.forget_key("customers-bbbb");
            let results =
                EnvelopeOpen::transform(vec![record("1", &a), record("2", &b), record("3", b"x")]);
            assert_eq!(results[0].as_ref().unwrap().len(), 1);
            assert_eq!(results[1], Ok(Vec::new()), "skipped");
            assert!(results[2].is_err(), "other failures still fail");
            assert!(host
                .logs()
                .iter()
                .any(|(_, line)| line.contains("skipped 1 record")));
        }

        #[test]
        fn subject_options_are_checked() {
            let _host = Host::install();
            for (config, field) in [
                (r#"{"subject_keys": "customers-", "key": "k"}"#, "key"),
                (r#"{"subject_keys": "a/b"}"#, "subject_keys"),
                (
                    r#"{"subject_keys": "c-", "on_forgotten": "drop"}"#,
                    "on_forgotten",
                ),
                (r#"{"key": "k", "on_forgotten": "skip"}"#, "on_forgotten"),
            ] {
                let error = EnvelopeOpen::init(config.into()).unwrap_err();
                assert!(
                    error.starts_with(&format!("policy.config.{field}: ")),
                    "{error}"
                );
            }
        }
    }
}
