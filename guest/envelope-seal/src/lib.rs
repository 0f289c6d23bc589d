//! Envelope encryption of whole values, for large or high-rate records: the host
//! encrypts each value locally with AES-256-GCM under a data key Vault generated and
//! wrapped, so a stream costs a few Vault requests in all and values of any size work.
//! The value becomes an envelope in the published format (docs/envelope-format.md),
//! which any Vault client can open. Tombstones pass through unchanged.
//!
//! Config: `key` (required), `context` (a fixed derivation context, for derived keys).
//! Per-record contexts (`context_from`) are refused: they would need a data key per
//! record, which is what envelope encryption exists to avoid.

use kafka_transit_policy_sdk::envelope::{self, SealItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_by_key, EnvelopeConfig, OutputRecord, SourceRecord,
    TransformResult,
};

configured_policy!(EnvelopeSeal, EnvelopeConfig::parse, seal);

fn seal(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
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
}
