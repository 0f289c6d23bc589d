//! Opens envelopes made by `envelope-seal` (docs/envelope-format.md). A value that is
//! not an envelope, was tampered with, or was sealed under another transit key is an
//! invalid-input failure, never passed on. Removes the kafka-transit stamps, so the
//! record comes out as it went in. Tombstones pass through unchanged.
//!
//! Config: `key` (required: envelopes of other keys are refused), `context`.

use std::cell::RefCell;

use kafka_transit_policy_sdk::envelope::{self, OpenItem};
use kafka_transit_policy_sdk::{
    export_policy, through_vault, without_stamps, EnvelopeConfig, Failure, OutputRecord, Policy,
    Prepared, SourceRecord, TransformResult,
};

thread_local! {
    static CONFIG: RefCell<Option<EnvelopeConfig>> = const { RefCell::new(None) };
}

struct EnvelopeOpen;

impl Policy for EnvelopeOpen {
    fn init(config: String) -> Result<(), String> {
        let config = EnvelopeConfig::parse(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(())
    }

    fn transform(batch: Vec<SourceRecord>) -> Vec<TransformResult> {
        CONFIG.with(|c| match c.borrow().as_ref() {
            Some(config) => open(config, batch),
            None => batch
                .iter()
                .map(|_| Err(Failure::PolicyError("policy used before init".into())))
                .collect(),
        })
    }
}

fn open(config: &EnvelopeConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault(
        batch,
        "envelope open",
        |record| match record.value.take() {
            Some(envelope) => Prepared::Item(OpenItem {
                envelope,
                aad: Vec::new(),
            }),
            None => Prepared::Forward,
        },
        |items| envelope::open(&config.key, config.context(), items),
        |record, plaintext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(plaintext),
            headers: without_stamps(record.headers),
        },
    )
}

export_policy!(EnvelopeOpen);
