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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::schema_registry::SchemaType;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{Failure, Policy};

    fn framed(json: &str) -> Vec<u8> {
        let mut value = vec![0, 0, 0, 0, 1];
        value.extend_from_slice(json.as_bytes());
        value
    }

    #[test]
    fn fields_decrypt_in_place_and_a_tagged_field_in_clear_fails_the_record() {
        let host = Host::install();
        host.create_key("customers");
        host.register_schema(
            1,
            SchemaType::Json,
            r#"{"type": "object", "properties": {
                "name": {"type": "string", "confluent:tags": ["PII"]}}}"#,
        );
        DecryptSchemaFields::init(r#"{"key": "customers"}"#.into()).unwrap();
        let sealed = host.encrypt("customers", "Ann \"the\" Ünïcode".as_bytes());
        let out = DecryptSchemaFields::transform(vec![
            record("k", framed(&format!(r#"{{"name": "{sealed}", "n": 1}}"#))),
            record("k", framed(r#"{"name": "Ann"}"#)),
        ]);
        let value = out[0].as_ref().unwrap()[0].value.clone().unwrap();
        assert_eq!(value, framed(r#"{"name": "Ann \"the\" Ünïcode", "n": 1}"#));
        assert!(
            matches!(out[1], Err(Failure::InvalidInput(_))),
            "{:?}",
            out[1]
        );
    }
}
