//! Moves the fields `encrypt-schema-fields` protected to the transit key's latest version
//! after a rotation, with Vault's `transit/rewrap`: Vault decrypts and encrypts again
//! inside itself, so no plaintext reaches this policy or the host. The fields are found
//! as the other schema field policies find them (the same `tags` and `fields`, under the
//! record's schema from `[schema_registry]`); each present one must hold a Vault
//! ciphertext, or the record fails as invalid input, never passed on. Every other byte of
//! the record, its key and its headers stay as they are. Tombstones pass through
//! unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-schema-fields` (`deterministic` fields are rewrapped with
//! their path as context), and of the format 3 options `stream`, `record_keys`,
//! `record_keys_key`.
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header keeps its format. Its fields were encrypted with Vault's `associated_data`,
//! which `transit/rewrap` does not take, so each is decrypted and encrypted again with
//! the same binding (its located path; stream: `stream`, default the record's own
//! topic): **this policy sees the plaintext of such fields**, as `decrypt-schema-fields`
//! does. With `record_keys = "encrypt"`, encrypted record keys are rewrapped too (fields
//! bound to the key are then bound to the new one).

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::protection::{Protected, Role};
use kafka_transit_policy_sdk::schema_fields::SchemaFieldsConfig;
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<SchemaFieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    SchemaFieldsConfig::parse_protected(json, Role::Rewrap)
}

configured_policy!(RewrapSchemaFields, parse, rewrap);

fn rewrap(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::rewrap(config, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
    use kafka_transit_policy_sdk::schema_registry::SchemaType;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::transit::{self, BoundDecryptItem, BoundEncryptItem};
    use kafka_transit_policy_sdk::Failure;
    use kafka_transit_policy_sdk::{Header, Policy};
    use serde_json::Value;

    const SCHEMA: &str = r#"{"type": "object", "properties": {
        "id": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "confluent:tags": ["PII"]},
        "name": {"type": "string", "confluent:tags": ["PII"]}}}"#;

    fn framed(json: &str) -> Vec<u8> {
        let mut value = vec![0, 0, 0, 0, 4];
        value.extend_from_slice(json.as_bytes());
        value
    }

    fn doc(value: &[u8]) -> Value {
        assert_eq!(&value[..5], &[0, 0, 0, 0, 4], "the framing as it came");
        serde_json::from_slice(&value[5..]).unwrap()
    }

    fn host() -> Host {
        let host = Host::install();
        host.create_key("customers");
        host.register_schema(4, SchemaType::Json, SCHEMA);
        host
    }

    #[test]
    fn fields_move_to_the_latest_key_version_inside_vault_and_clear_ones_fail() {
        let host = host();
        let name = host.encrypt("customers", b"Ann");
        host.rotate_key("customers");
        RewrapSchemaFields::init(r#"{"key": "customers"}"#.into()).unwrap();
        let before = format!(r#"{{ "id" : 7, "name": "{name}" }}"#);
        let results = RewrapSchemaFields::transform(vec![
            record("k", framed(&before)),
            record("k", framed(r#"{"id": 8, "name": "Ann"}"#)),
        ]);
        let value = results[0].as_ref().unwrap()[0].value.clone().unwrap();
        let text = String::from_utf8(value[5..].to_vec()).unwrap();
        assert!(
            text.starts_with(r#"{ "id" : 7, "name": "vault:v2:"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#"" }"#),
            "every other byte as it came: {text}"
        );
        let rewrapped = doc(&value)["name"].as_str().unwrap().to_string();
        host.set_min_decryption_version("customers", 2);
        assert_eq!(host.decrypt("customers", &rewrapped), Ok(b"Ann".to_vec()));
        assert!(matches!(results[1], Err(Failure::InvalidInput(_))));
        assert_eq!(host.items_per_call(Operation::Rewrap), [1]);
    }

    #[test]
    fn deterministic_fields_keep_their_path_as_context() {
        let host = Host::install();
        host.create_derived_key("ids", true);
        host.register_schema(4, SchemaType::Json, SCHEMA);
        let item = |path: &str| kafka_transit_policy_sdk::transit::EncryptItem {
            plaintext: b"4711".to_vec(),
            context: Some(path.as_bytes().to_vec()),
        };
        let sealed = transit::encrypt("ids", &[item("/name")])
            .unwrap()
            .remove(0)
            .unwrap();
        host.rotate_key("ids");
        RewrapSchemaFields::init(r#"{"key": "ids", "deterministic": true}"#.into()).unwrap();
        let out = RewrapSchemaFields::transform(vec![record(
            "k",
            framed(&format!(r#"{{"name": "{sealed}"}}"#)),
        )]);
        let value = out[0].as_ref().unwrap()[0].value.clone().unwrap();
        let again = transit::encrypt("ids", &[item("/name")])
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(
            doc(&value)["name"].as_str().unwrap(),
            again,
            "convergent: what encrypting the value again gives under v2"
        );
    }

    #[test]
    fn bound_fields_are_opened_and_sealed_again_in_their_place() {
        let host = host();
        let flags = Flags::parse(0x03).unwrap();
        let binding = |path: &str| record::binding(flags, "s", Some(b"k"), Some(path));
        let encrypt = |plaintext: &[u8], path: &str| {
            let item = BoundEncryptItem {
                plaintext: plaintext.to_vec(),
                context: None,
                associated_data: binding(path),
            };
            transit::encrypt_bound("customers", &[item]).unwrap()[0]
                .clone()
                .unwrap()
        };
        let (a, b) = (encrypt(b"A", "/tags/0"), encrypt(b"B", "/tags/1"));
        host.rotate_key("customers");
        RewrapSchemaFields::init(r#"{"key": "customers"}"#.into()).unwrap();
        let protected = |json: String| SourceRecord {
            topic: "s".into(),
            headers: vec![Header {
                key: PROTECTION_HEADER.into(),
                value: Some(b"3;03".to_vec()),
            }],
            ..record("k", framed(&json))
        };
        let results = RewrapSchemaFields::transform(vec![
            protected(format!(r#"{{"tags": ["{a}", "{b}"], "id": 1}}"#)),
            protected(format!(r#"{{"tags": ["{b}", "{a}"]}}"#)),
        ]);
        assert_eq!(host.items_per_call(Operation::DecryptBound), [4]);
        let out = &results[0].as_ref().unwrap()[0];
        assert_eq!(out.headers[0].key, PROTECTION_HEADER, "the format kept");
        let doc = doc(out.value.as_ref().unwrap());
        assert_eq!(doc["id"], 1);
        for (i, plaintext) in [(0, b"A"), (1, b"B")] {
            let ciphertext = doc["tags"][i].as_str().unwrap();
            assert!(ciphertext.starts_with("vault:v2:"), "{ciphertext}");
            let item = BoundDecryptItem {
                ciphertext: ciphertext.into(),
                context: None,
                associated_data: binding(&format!("/tags/{i}")),
            };
            assert_eq!(
                transit::decrypt_bound("customers", &[item]).unwrap()[0],
                Ok(plaintext.to_vec())
            );
        }
        assert!(
            matches!(&results[1], Err(Failure::InvalidInput(m)) if m.contains("authentication failed")),
            "swapped fields are not rewrapped: {:?}",
            results[1]
        );
    }
}
