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
//!
//! Format 3 (docs/protected-records.md), when `bind` or `record_keys` is set (`stream`
//! names the stream bound, default the sink topic):
//! each field is encrypted with Vault's `associated_data` = the record's binding data and
//! the field's located path (`/customer/ssn`), so a field moved to another place, record,
//! key or stream does not decrypt; `record_keys` protects the record key. Every record,
//! tombstones and records without fields too, carries the `kafka-transit.protection`
//! header. `deterministic` and `bind` exclude each other (see
//! `SchemaFieldsConfig::parse_protected`).

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::protection::{Protected, Role};
use kafka_transit_policy_sdk::schema_fields::SchemaFieldsConfig;
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<SchemaFieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    SchemaFieldsConfig::parse_protected(json, Role::Protect)
}

configured_policy!(EncryptSchemaFields, parse, encrypt);

fn encrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::protect(config, batch, "encrypt-schema-fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::schema_registry::{RegistryError, SchemaType};
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{transit, OutputRecord};
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

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::{BoundDecryptItem, TransitError};

        const STREAM: &str = "customers.protected";

        /// Avro: a tagged name, and an array of tagged strings (two places whose
        /// ciphertexts could be swapped).
        const AVRO: &str = r#"{"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string", "confluent:tags": ["PII"]},
            {"name": "emails", "type": {"type": "array", "items": "string"},
             "confluent:tags": ["PII"]},
            {"name": "age", "type": "int"}]}"#;

        fn avro_string(text: &str, out: &mut Vec<u8>) {
            zigzag(text.len() as i64, out);
            out.extend_from_slice(text.as_bytes());
        }

        fn zigzag(n: i64, out: &mut Vec<u8>) {
            let mut n = ((n << 1) ^ (n >> 63)) as u64;
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
        }

        fn customer(name: &str, emails: &[&str]) -> Vec<u8> {
            let mut value = vec![0, 0, 0, 0, 5];
            avro_string(name, &mut value);
            if !emails.is_empty() {
                zigzag(emails.len() as i64, &mut value);
                for email in emails {
                    avro_string(email, &mut value);
                }
            }
            value.push(0); // the end of the array
            zigzag(42, &mut value);
            value
        }

        /// The ciphertexts of a protected `customer`, in order.
        fn ciphertexts(value: &[u8]) -> Vec<String> {
            let text = String::from_utf8_lossy(value);
            text.split("vault:v1:")
                .skip(1)
                .map(|rest| {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c)))
                        .unwrap_or(rest.len());
                    format!("vault:v1:{}", &rest[..end])
                })
                .collect()
        }

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            host.set_sink_topic("test", STREAM);
            host.register_schema(5, SchemaType::Avro, AVRO);
            EncryptSchemaFields::init(config.into()).expect("a valid configuration");
            host
        }

        fn open(ciphertext: &str, binding: Vec<u8>) -> Result<Vec<u8>, TransitError> {
            let item = BoundDecryptItem {
                ciphertext: ciphertext.into(),
                context: None,
                associated_data: binding,
            };
            transit::decrypt_bound("customers", &[item])
                .unwrap()
                .remove(0)
        }

        #[test]
        fn each_field_is_bound_to_its_located_path_its_record_key_and_its_stream() {
            let host = start(r#"{"key": "customers", "bind": ["stream", "key"]}"#);
            let out = EncryptSchemaFields::transform(vec![record(
                "k1",
                customer("Ann", &["a@x.example", "b@x.example"]),
            )])
            .remove(0)
            .unwrap()
            .remove(0);
            assert_eq!(host.items_per_call(Operation::EncryptBound), [3]);
            assert_eq!(out.key.as_deref(), Some(&b"k1"[..]), "record_keys = keep");
            let protection = out.headers.last().unwrap();
            assert_eq!(protection.key, PROTECTION_HEADER);
            assert_eq!(protection.value.as_deref(), Some(&b"3;03"[..]));
            assert!(
                out.headers.iter().any(|h| h.key == "kafka-transit.policy"
                    && h.value.as_deref() == Some(&b"encrypt-schema-fields"[..])),
                "{:?}",
                out.headers
            );
            let value = out.value.unwrap();
            assert_eq!(&value[..5], &[0, 0, 0, 0, 5], "the framing as it came");
            assert_eq!(value.last(), Some(&84), "age 42 as it came");
            let sealed = ciphertexts(&value);
            assert_eq!(sealed.len(), 3);
            let flags = Flags::parse(0x03).unwrap();
            let binding = |path: &str| record::binding(flags, STREAM, Some(b"k1"), Some(path));
            assert_eq!(open(&sealed[0], binding("/name")), Ok(b"Ann".to_vec()));
            assert_eq!(
                open(&sealed[2], binding("/emails/1")),
                Ok(b"b@x.example".to_vec())
            );
            // Swapped with its neighbour, moved to another field, record key or stream: no.
            for wrong in [
                binding("/emails/0"),
                binding("/name"),
                record::binding(flags, STREAM, Some(b"k2"), Some("/emails/1")),
                record::binding(flags, "elsewhere", Some(b"k1"), Some("/emails/1")),
                Vec::new(),
            ] {
                assert!(matches!(
                    open(&sealed[2], wrong),
                    Err(TransitError::InvalidInput(m)) if m.contains("authentication failed")
                ));
            }
        }

        #[test]
        fn record_keys_are_protected_and_fields_bound_to_the_key_as_on_the_sink() {
            let host = start(
                r#"{"key": "customers", "bind": ["key"],
                    "record_keys": "encrypt", "record_keys_key": "record-keys"}"#,
            );
            let tombstone = SourceRecord {
                value: None,
                ..record("k1", "")
            };
            let out: Vec<OutputRecord> =
                EncryptSchemaFields::transform(vec![record("k1", customer("Ann", &[])), tombstone])
                    .into_iter()
                    .map(|r| r.unwrap().remove(0))
                    .collect();
            let sink_key = out[0].key.clone().unwrap();
            assert!(sink_key.starts_with(b"vault:v1:"), "the key encrypted");
            assert_eq!(out[1].key.as_ref(), Some(&sink_key), "convergent: the same");
            for out in &out {
                assert_eq!(
                    out.headers.last().unwrap().value.as_deref(),
                    Some(&b"3;42"[..])
                );
            }
            assert_eq!(out[1].value, None, "the tombstone stays one");
            let sealed = ciphertexts(out[0].value.as_ref().unwrap());
            let flags = Flags::parse(0x42).unwrap();
            assert_eq!(
                open(
                    &sealed[0],
                    record::binding(flags, STREAM, Some(&sink_key), Some("/name"))
                ),
                Ok(b"Ann".to_vec())
            );
            assert!(open(
                &sealed[0],
                record::binding(flags, STREAM, Some(b"k1"), Some("/name"))
            )
            .is_err());
            assert_eq!(host.items_per_call(Operation::EncryptBound), [1]);
        }

        #[test]
        fn deterministic_fields_are_not_bound_and_field_policies_seal_no_headers() {
            let _host = Host::install();
            for (config, field) in [
                (
                    r#"{"key": "k", "deterministic": true, "bind": ["key"]}"#,
                    "bind",
                ),
                (r#"{"key": "k", "headers": "seal"}"#, "headers"),
                (r#"{"key": "k", "pad_to": 16}"#, "pad_to"),
                (
                    r#"{"key": "k", "require_binding": ["key"]}"#,
                    "require_binding",
                ),
                (
                    r#"{"key": "k", "context_from": "record-key",
                        "record_keys": "hmac", "record_keys_key": "rk"}"#,
                    "context_from",
                ),
            ] {
                let error = EncryptSchemaFields::init(config.into()).unwrap_err();
                assert!(
                    error.starts_with(&format!("policy.config.{field}: ")),
                    "{error}"
                );
            }
            // Deterministic with protected record keys: nothing shares a nonce.
            assert!(EncryptSchemaFields::init(
                r#"{"key": "k", "deterministic": true,
                    "record_keys": "encrypt", "record_keys_key": "rk"}"#
                    .into()
            )
            .is_ok());
        }
    }
}
