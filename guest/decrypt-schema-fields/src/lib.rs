//! Decrypts the fields `encrypt-schema-fields` protected, restoring each one's original
//! content; every other byte of the record, its schema id and framing stay as they came.
//! The fields are found the same way (the same `tags` and `fields`, under the record's
//! schema from the pipeline's `[schema_registry]`); each present one must hold a Vault
//! transit ciphertext, and a string field must decrypt to UTF-8, or the record fails as
//! invalid input (never passed on). The kafka-transit headers are removed. Tombstones
//! pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-schema-fields`.

use kafka_transit_policy_sdk::schema_fields::SchemaFieldsConfig;
use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_keyed, without_stamps, OutputRecord, SourceRecord,
    TransformResult,
};

configured_policy!(DecryptSchemaFields, SchemaFieldsConfig::parse, decrypt);

fn decrypt(config: &SchemaFieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault decrypt",
        |record| config.ciphertext_items(record),
        transit::decrypt,
        |record, located, plaintexts| {
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(located.with_contents(plaintexts)?),
                headers: without_stamps(record.headers),
            })
        },
    )
}
