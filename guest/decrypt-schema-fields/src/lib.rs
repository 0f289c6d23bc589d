//! Decrypts the fields `encrypt-schema-fields` protected, restoring each one's original
//! content; every other byte of the record, its schema id and framing stay as they came.
//! The fields are found the same way (the same `tags` and `fields`, under the record's
//! schema from the pipeline's `[schema_registry]`); each present one must hold a Vault
//! transit ciphertext, and a string field must decrypt to UTF-8, or the record fails as
//! invalid input (never passed on). The kafka-transit headers are removed. Tombstones
//! pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-schema-fields`, but the format 3 options an opening
//! policy takes: `stream` (default: the record's own topic), `record_keys_key`,
//! `require_binding`, `keep_hmac_keys`.
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header has each field decrypted with the binding rebuilt from its flags, the stream,
//! the key as received and the field's located path: a field moved elsewhere in the
//! record, or to another record, key or stream, fails with "message authentication
//! failed". An encrypted key is decrypted under `record_keys_key` (an HMAC'd one is
//! refused unless `keep_hmac_keys = true`), and the protection header is dropped.

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::protection::{Protected, Role};
use kafka_transit_policy_sdk::schema_fields::SchemaFieldsConfig;
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<SchemaFieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    SchemaFieldsConfig::parse_protected(json, Role::Open)
}

configured_policy!(DecryptSchemaFields, parse, decrypt);

fn decrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::open(config, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::schema_registry::SchemaType;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::transit;
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

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::transit::BoundEncryptItem;
        use kafka_transit_policy_sdk::Header;

        const SCHEMA: &str = r#"{"type": "object", "properties": {
            "name": {"type": "string", "confluent:tags": ["PII"]},
            "nick": {"type": "string", "confluent:tags": ["PII"]}}}"#;

        fn sealed(path: &str, key: &[u8], stream: &str, plaintext: &str) -> String {
            let item = BoundEncryptItem {
                plaintext: plaintext.as_bytes().to_vec(),
                context: None,
                associated_data: record::binding(
                    Flags::parse(0x03).unwrap(),
                    stream,
                    Some(key),
                    Some(path),
                ),
            };
            transit::encrypt_bound("customers", &[item])
                .unwrap()
                .remove(0)
                .unwrap()
        }

        fn protected(key: &str, json: &str) -> SourceRecord {
            let mut record = record(key, framed(json));
            for (name, value) in [
                (PROTECTION_HEADER, "3;03"),
                ("kafka-transit.policy", "encrypt-schema-fields"),
                ("trace", "t-1"),
            ] {
                record.headers.push(Header {
                    key: name.into(),
                    value: Some(value.as_bytes().to_vec()),
                });
            }
            record
        }

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.register_schema(1, SchemaType::Json, SCHEMA);
            DecryptSchemaFields::init(config.into()).unwrap();
            host
        }

        #[test]
        fn bound_fields_open_in_their_place_only() {
            let _host = start(r#"{"key": "customers"}"#);
            let name = sealed("/name", b"k1", "test", "Ann");
            let nick = sealed("/nick", b"k1", "test", "Annie");
            let out = DecryptSchemaFields::transform(vec![
                protected("k1", &format!(r#"{{"name":"{name}","nick":"{nick}"}}"#)),
                // Swapped places; another record key; another stream's ciphertext.
                protected("k1", &format!(r#"{{"name":"{nick}","nick":"{name}"}}"#)),
                protected("k2", &format!(r#"{{"name":"{name}"}}"#)),
                protected(
                    "k1",
                    &format!(r#"{{"name":"{}"}}"#, sealed("/name", b"k1", "other", "Ann")),
                ),
            ]);
            let opened = out[0].as_ref().unwrap()[0].clone();
            assert_eq!(
                opened.value.unwrap(),
                framed(r#"{"name":"Ann","nick":"Annie"}"#)
            );
            let names: Vec<&str> = opened.headers.iter().map(|h| h.key.as_str()).collect();
            assert_eq!(names, ["trace"], "the protection header and stamps dropped");
            for result in &out[1..] {
                assert!(
                    matches!(result, Err(Failure::InvalidInput(m)) if m.contains("authentication failed")),
                    "{result:?}"
                );
            }
        }

        #[test]
        fn require_binding_refuses_unbound_records_and_field_records_have_no_body_flags() {
            let host = start(r#"{"key": "customers", "require_binding": ["stream", "key"]}"#);
            let clear = host.encrypt("customers", b"Ann");
            let calls = host.calls().len();
            let mut padded = protected("k1", &format!(r#"{{"name":"{clear}"}}"#));
            padded.headers[0].value = Some(b"3;0b".to_vec());
            let out = DecryptSchemaFields::transform(vec![
                record("k1", framed(&format!(r#"{{"name":"{clear}"}}"#))),
                padded,
            ]);
            assert!(
                matches!(&out[0], Err(Failure::InvalidInput(m)) if m.contains("require_binding")),
                "{:?}",
                out[0]
            );
            assert!(
                matches!(&out[1], Err(Failure::InvalidInput(m)) if m.contains("padded")),
                "{:?}",
                out[1]
            );
            assert_eq!(host.calls().len(), calls, "refused before any Vault call");
        }
    }
}
