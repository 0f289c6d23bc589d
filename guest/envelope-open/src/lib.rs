//! Opens envelopes made by `envelope-seal` (docs/envelope-format.md). A value that is
//! not an envelope, was tampered with, or was sealed under another transit key is an
//! invalid-input failure, never passed on. Removes the kafka-transit stamps, so the
//! record comes out as it went in. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`.

use kafka_transit_policy_sdk::envelope::{self, OpenItem};
use kafka_transit_policy_sdk::{
    configured_policy, envelope_format, through_vault_by_key, without_stamps, EnvelopeConfig,
    OutputRecord, Prepared, SourceRecord, TransformResult,
};

configured_policy!(EnvelopeOpen, EnvelopeConfig::parse, open);

fn open(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "envelope open",
        |record| {
            config
                .key
                .with_value(record, |envelope, _| {
                    Ok(OpenItem {
                        envelope,
                        aad: Vec::new(),
                    })
                })
                // An envelope of another key fails here, before Vault, and without the
                // name its header claims in the reason.
                .and_then(
                    |(key, item)| match envelope_format::sealed_under(&item.envelope, &key) {
                        Ok(_) => Prepared::Item((key, item)),
                        Err(failure) => Prepared::Fail(failure),
                    },
                )
        },
        |key, items| envelope::open(key, config.context(), items),
        |record, _, plaintext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(plaintext),
            headers: without_stamps(record.headers),
        },
    )
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
}
