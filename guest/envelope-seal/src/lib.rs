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
