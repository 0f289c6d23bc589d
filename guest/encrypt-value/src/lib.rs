//! Encrypts each record's value with Vault transit. The value becomes the UTF-8 text
//! `vault:v<N>:<base64>`, exactly Vault's ciphertext, so any Vault client in any
//! language can decrypt it with `transit/decrypt` alone. Keys and existing headers stay
//! as they are; two headers name the policy and the key. Tombstones pass through
//! unchanged. One Vault batch request serves a whole batch.
//!
//! Config: `key` (required; a name or a template such as `"{topic}"` or
//! `"tenant-{header:tenant}"`), `context` or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::transit::{self, EncryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_by_key, OutputRecord, SourceRecord, TransformResult,
    TransitKeyConfig,
};

configured_policy!(EncryptValue, TransitKeyConfig::parse, encrypt);

fn encrypt(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
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
