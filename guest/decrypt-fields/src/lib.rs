//! Decrypts the fields that `encrypt-fields` encrypted and restores their original
//! values and types. Each selected field must be a JSON string holding a Vault transit
//! ciphertext; one that is not fails the record as invalid input (dead-lettered or
//! stops the pipeline, as configured), never passed on. The kafka-transit headers are
//! removed. Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields`.

use kafka_transit_policy_sdk::fields::{self, FieldsConfig};
use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_keyed, without_stamps, Failure, OutputRecord, SourceRecord,
    TransformResult,
};
use serde_json::Value;

configured_policy!(DecryptFields, FieldsConfig::parse, decrypt);

fn decrypt(config: &FieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault decrypt",
        |record| config.ciphertext_items(record),
        transit::decrypt,
        |record, (mut doc, locations), plaintexts| {
            let values = locations
                .iter()
                .zip(&plaintexts)
                .map(|(at, plaintext)| fields::parse_plaintext(at, plaintext))
                .collect::<Result<Vec<Value>, Failure>>()?;
            fields::apply(&mut doc, &locations, values);
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(doc.to_string().into_bytes()),
                headers: without_stamps(record.headers),
            })
        },
    )
}
