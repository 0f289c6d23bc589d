//! Encrypts the protected fields of Avro, Protobuf and JSON Schema records in
//! Confluent's wire format with Vault transit, leaving every other field, the schema id
//! and the record's framing as they came: a consumer with the ordinary deserializer
//! reads every record, and sees each protected field as `vault:v<N>:...` text (bytes
//! fields: its UTF-8 bytes).
//!
//! Which fields: those the schema tags with one of `tags` (default `["PII"]`, in
//! Confluent's `confluent:tags`), and those at the paths in `fields`. Only string and
//! bytes fields can be protected; a schema that selects another type fails the record.
//! Schemas come from the pipeline's `[schema_registry]`, once per schema id. One Vault
//! batch request serves every field of every record of a batch. Tombstones pass through
//! unchanged; two headers name the policy and the key.
//!
//! A value not in the wire format, with an unknown schema id, or not decoding under its
//! schema is invalid input (never passed in clear); the registry unreachable pauses the
//! pipeline. Config: `key`, `tags`, `fields`, `deterministic`, `allowed_keys`, and
//! `context` or `context_from = "record-key"` (derived keys); see the SDK's
//! `schema_fields` module.

use kafka_transit_policy_sdk::schema_fields::SchemaFieldsConfig;
use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_keyed, OutputRecord, SourceRecord, TransformResult,
};

configured_policy!(EncryptSchemaFields, SchemaFieldsConfig::parse, encrypt);

fn encrypt(config: &SchemaFieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault encrypt",
        |record| config.plaintext_items(record),
        transit::encrypt,
        |record, located, ciphertexts| {
            let headers = stamped(
                record.headers,
                "encrypt-schema-fields",
                located.key_name(config),
            );
            let contents = ciphertexts.into_iter().map(String::into_bytes).collect();
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(located.with_contents(contents)?),
                headers,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::schema_registry::{RegistryError, SchemaType};
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{Failure, Policy};

    const SCHEMA: &str = r#"{"type": "object", "properties": {
        "name": {"type": "string", "confluent:tags": ["PII"]},
        "city": {"type": "string"}}}"#;

    fn framed(id: u32, json: &str) -> Vec<u8> {
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        value.extend_from_slice(json.as_bytes());
        value
    }

    fn host() -> Host {
        let host = Host::install();
        host.create_key("customers");
        host.register_schema(7, SchemaType::Json, SCHEMA);
        EncryptSchemaFields::init(r#"{"key": "customers"}"#.into()).unwrap();
        host
    }

    #[test]
    fn tagged_fields_are_encrypted_in_place_under_the_same_schema_id() {
        let host = host();
        let batch = (0..10)
            .map(|i| {
                record(
                    "k",
                    framed(7, &format!(r#"{{"name":"Ann {i}","city":"Oslo"}}"#)),
                )
            })
            .collect();
        let out = EncryptSchemaFields::transform(batch);
        assert_eq!(host.calls().len(), 1, "one Vault call per batch");
        for (i, result) in out.into_iter().enumerate() {
            let value = result.unwrap().remove(0).value.unwrap();
            assert_eq!(&value[..5], &[0, 0, 0, 0, 7]);
            let doc: serde_json::Value = serde_json::from_slice(&value[5..]).unwrap();
            let name = doc["name"].as_str().unwrap();
            assert_eq!(
                host.decrypt("customers", name).unwrap(),
                format!("Ann {i}").into_bytes()
            );
            assert_eq!(doc["city"], "Oslo");
        }
        assert_eq!(host.schema_lookups(), 1, "one lookup per schema id");
    }

    #[test]
    fn deterministic_fields_give_equal_ciphertexts_for_equal_values_in_the_same_place() {
        let host = Host::install();
        host.create_derived_key("ids", true);
        host.register_schema(
            3,
            SchemaType::Json,
            r#"{"type": "object", "properties": {
                "a": {"type": "string", "confluent:tags": ["PII"]},
                "b": {"type": "string", "confluent:tags": ["PII"]}}}"#,
        );
        EncryptSchemaFields::init(r#"{"key": "ids", "deterministic": true}"#.into()).unwrap();
        let fields = |value: Vec<u8>| -> (String, String) {
            let doc: serde_json::Value = serde_json::from_slice(&value[5..]).unwrap();
            (
                doc["a"].as_str().unwrap().into(),
                doc["b"].as_str().unwrap().into(),
            )
        };
        let out = EncryptSchemaFields::transform(vec![
            record("1", framed(3, r#"{"a":"4711","b":"4711"}"#)),
            record("2", framed(3, r#"{"a":"4711","b":"0815"}"#)),
        ]);
        let mut out = out.into_iter().map(|r| r.unwrap().remove(0).value.unwrap());
        let (first_a, first_b) = fields(out.next().unwrap());
        let (second_a, second_b) = fields(out.next().unwrap());
        assert_eq!(first_a, second_a, "the same value in the same place");
        assert_ne!(first_a, first_b, "the same value in another place");
        assert_ne!(first_b, second_b, "another value");
        // The context is the field's path: a convergent key refuses to work without one.
        assert!(EncryptSchemaFields::init(
            r#"{"key": "ids", "deterministic": true, "context": "x"}"#.into()
        )
        .is_err());
    }

    #[test]
    fn what_the_registry_cannot_read_fails_closed() {
        let host = host();
        let out = EncryptSchemaFields::transform(vec![
            record("unknown id", framed(8, r#"{"name":"Ann"}"#)),
            record("not framed", r#"{"name":"Ann"}"#),
            record("not json", framed(7, "{\"name\":")),
            record("a number", framed(7, r#"{"name":42}"#)),
        ]);
        for result in out {
            assert!(
                matches!(result, Err(Failure::InvalidInput(_))),
                "{result:?}"
            );
        }
        host.registry_fails(RegistryError::Unavailable("registry down".into()));
        let out = EncryptSchemaFields::transform(vec![record("k", framed(9, "{}"))]);
        assert!(matches!(out[0], Err(Failure::Retryable(_))), "{out:?}");
    }
}
