//! Encrypts each record's value with Vault transit. The value becomes the UTF-8 text
//! `vault:v<N>:<base64>`, exactly Vault's ciphertext, so any Vault client in any
//! language can decrypt it with `transit/decrypt` alone. Keys and existing headers stay
//! as they are; two headers name the policy and the key. Tombstones pass through
//! unchanged. One Vault batch request serves a whole batch.
//!
//! Config: `key` (required), `context` or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::transit::{self, EncryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault, OutputRecord, Prepared, SourceRecord,
    TransformResult, TransitKeyConfig,
};

configured_policy!(EncryptValue, TransitKeyConfig::parse, encrypt);

fn encrypt(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault(
        batch,
        "vault encrypt",
        |record| {
            let Some(plaintext) = record.value.take() else {
                return Prepared::Forward; // a tombstone stays a tombstone
            };
            match config.context_for(record.key.as_deref()) {
                Ok(context) => Prepared::Item(EncryptItem { plaintext, context }),
                Err(failure) => Prepared::Fail(failure),
            }
        },
        |items| transit::encrypt(&config.key, items),
        |record, ciphertext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(ciphertext.into_bytes()),
            headers: stamped(record.headers, "encrypt-value", &config.key),
        },
    )
}
