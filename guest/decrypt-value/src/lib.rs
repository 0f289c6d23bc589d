//! Decrypts values that `encrypt-value` (or any Vault client) produced: each value must
//! be a Vault transit ciphertext `vault:v<N>:<base64>`. A value that is not one is an
//! invalid-input failure (dead-lettered or stops the pipeline, as configured), never
//! passed on. The kafka-transit headers are removed, so the record comes out as it went
//! in. Tombstones pass through unchanged.
//!
//! Config: `key` (required), `context` or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_by_key, without_stamps, OutputRecord, SourceRecord,
    TransformResult, TransitKeyConfig,
};

configured_policy!(DecryptValue, TransitKeyConfig::parse, decrypt);

fn decrypt(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "vault decrypt",
        |record| config.ciphertext_item(record),
        transit::decrypt,
        |record, _, plaintext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(plaintext),
            headers: without_stamps(record.headers),
        },
    )
}
