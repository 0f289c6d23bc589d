//! Opens envelopes made by `envelope-seal` (docs/envelope-format.md). A value that is
//! not an envelope, was tampered with, or was sealed under another transit key is an
//! invalid-input failure, never passed on. Removes the kafka-transit stamps, so the
//! record comes out as it went in. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`.

use kafka_transit_policy_sdk::envelope::{self, OpenItem};
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_by_key, without_stamps, EnvelopeConfig, OutputRecord,
    SourceRecord, TransformResult,
};

configured_policy!(EnvelopeOpen, EnvelopeConfig::parse, open);

fn open(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "envelope open",
        |record| {
            config.key.with_value(record, |envelope, _| {
                Ok(OpenItem {
                    envelope,
                    aad: Vec::new(),
                })
            })
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
