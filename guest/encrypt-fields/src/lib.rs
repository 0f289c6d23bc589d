//! Encrypts selected fields of JSON records with Vault transit, leaving the rest of the
//! record readable and byte for byte as it came. Each selected value, whatever its type,
//! is encrypted as its own JSON text without insignificant whitespace; the field becomes
//! the JSON string `vault:v<N>:<base64>`, so `decrypt-fields` can restore the original
//! type. A value that cannot hold a selected field (a bare string where `/ssn` is
//! expected) is invalid input, never passed on in clear; every duplicate of a selected
//! member is encrypted (see the SDK's `fields` module). Keys stay as they are; two
//! headers name the policy and the key. Tombstones pass through unchanged. One Vault
//! batch request serves every field of every record of a batch.
//!
//! Config: `key`, `fields` (JSON Pointers, `*` for every element or member),
//! `on_invalid_json` (`fail`|`pass`), `on_missing_field` (`pass`|`fail`), `allowed_keys`,
//! and `context` or `context_from = "record-key"` (derived keys).
//!
//! Format 3 (docs/protected-records.md), when any of these is set: `record_keys`
//! (`"encrypt"` or `"hmac"` under `record_keys_key`), `bind = ["stream", "key"]` (each
//! field is encrypted with Vault's `associated_data` = the record's binding data and the
//! JSON Pointer locating that field in the document, `/orders/2/iban`: a field moved to
//! another place, record, key or stream does not decrypt), `stream` (default: the sink
//! topic). Headers stay in clear (`headers = "seal"` is for whole-value policies). Every
//! format 3 record, tombstones and records passed on unprotected too, carries the
//! `kafka-transit.protection` header, and its key is protected.

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::protection::{Protected, Role, Shape};
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<FieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    let config = Protected::parse(json, Role::Protect, Shape::Fields, FieldsConfig::parse)?;
    config
        .protection
        .check_context_from(&config.config.transit)?;
    Ok(config)
}

configured_policy!(EncryptFields, parse, encrypt);

fn encrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::protect(config, batch, "encrypt-fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::{transit, OutputRecord};
    use kafka_transit_policy_sdk::{Failure, Header, Policy};

    fn start(config: &str) -> Host {
        let host = Host::install();
        host.create_key("customers");
        EncryptFields::init(config.into()).expect("a valid configuration");
        host
    }

    fn encrypt_one(value: &[u8]) -> TransformResult {
        EncryptFields::transform(vec![record("k", value)]).remove(0)
    }

    fn value_of(result: &TransformResult) -> Vec<u8> {
        let records = result.as_ref().expect("the record was transformed");
        records[0].value.clone().expect("a value")
    }

    /// `before`, then one JSON string holding a ciphertext, then `after`: the
    /// ciphertext, unquoted.
    fn ciphertext_between(out: &[u8], before: &str, after: &str) -> String {
        let out = String::from_utf8(out.to_vec()).unwrap();
        assert!(out.starts_with(before), "changed before the field:\n{out}");
        assert!(out.ends_with(after), "changed after the field:\n{out}");
        let middle = &out[before.len()..out.len() - after.len()];
        let ciphertext = middle
            .strip_prefix('"')
            .and_then(|m| m.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not a JSON string: {middle}"));
        assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
        ciphertext.to_string()
    }

    #[test]
    fn everything_outside_the_selected_fields_leaves_byte_for_byte() {
        let host = start(r#"{"key":"customers","fields":["/ssn"]}"#);
        let before = "{\n  \"z\" : 12345678901234567.89,\t\"big\": 123456789012345678901234567890,\n  \
                      \"tiny\": 1.5E-7, \"neg\": -0, \"trail\": 0.1000, \"name\": \"Ren\\u00e9e \\/ \\\"x\\\"\",\n  \
                      \"a\": [ 1e400, {\"k\" :null} ],\r\n  \"ssn\" :  ";
        let after = " ,\n  \"last\": true }\n";
        let out = value_of(&encrypt_one(
            format!("{before}\"123-45-6789\"{after}").as_bytes(),
        ));
        let ciphertext = ciphertext_between(&out, before, after);
        assert_eq!(
            host.decrypt("customers", &ciphertext),
            Ok(br#""123-45-6789""#.to_vec())
        );
    }

    #[test]
    fn a_selected_value_is_encrypted_as_its_own_tokens_minified() {
        let host = start(r#"{"key":"customers","fields":["/amount","/card"]}"#);
        let out = value_of(&encrypt_one(
            br#"{"amount": 12345678901234567.89, "card": { "n" : "\u00e9 x", "e": [1.0, -0, 2E+3] } }"#,
        ));
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let plaintext = |field: &str| {
            let ciphertext = doc[field].as_str().unwrap();
            String::from_utf8(host.decrypt("customers", ciphertext).unwrap()).unwrap()
        };
        assert_eq!(plaintext("amount"), "12345678901234567.89");
        assert_eq!(plaintext("card"), r#"{"n":"\u00e9 x","e":[1.0,-0,2E+3]}"#);
    }

    #[test]
    fn a_member_name_written_with_escapes_is_selected_by_its_decoded_name() {
        let host = start(r#"{"key":"customers","fields":["/ssn","/a~1b"]}"#);
        let out = value_of(&encrypt_one(br#"{"\u0073sn":"123-45-6789","a\/b":"x/y"}"#));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            !text.contains("123-45-6789") && !text.contains("x/y"),
            "{text}"
        );
        assert!(text.starts_with(r#"{"\u0073sn":"vault:v1:"#), "{text}");
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(host
            .decrypt("customers", doc["ssn"].as_str().unwrap())
            .is_ok());
    }

    #[test]
    fn every_duplicate_of_a_selected_member_is_encrypted() {
        let _host = start(r#"{"key":"customers","fields":["/ssn","/card/number"]}"#);
        let out = value_of(&encrypt_one(
            br#"{"ssn":"111","card":{"number":"4111"},"ssn":"222","card":{"number":"5500"}}"#,
        ));
        let text = String::from_utf8(out).unwrap();
        for clear in ["111", "222", "4111", "5500"] {
            assert!(!text.contains(clear), "{clear} in clear: {text}");
        }
        assert_eq!(text.matches("vault:v1:").count(), 4, "{text}");
        assert_eq!(
            text.matches("\"ssn\"").count(),
            2,
            "both members kept: {text}"
        );
    }

    #[test]
    fn a_value_that_cannot_hold_the_field_is_invalid_input_never_passed_in_clear() {
        // on_missing_field = "pass" is the default: it must not cover a wrong shape.
        let host = start(r#"{"key":"customers","fields":["/ssn","/orders/*/iban"]}"#);
        for value in [
            r#""333-33-3333""#,
            r#"["333-33-3333"]"#,
            "333333333",
            "true",
            r#"{"orders":["DE89370400440532013000"]}"#,
            r#"{"orders":{"first":"DE89370400440532013000"}}"#,
            r#"{"orders":[{"iban":"DE89"},"DE89370400440532013000"]}"#,
        ] {
            match encrypt_one(value.as_bytes()) {
                Err(Failure::InvalidInput(reason)) => {
                    assert!(
                        !reason.contains("333") && !reason.contains("DE89"),
                        "{reason}"
                    );
                    assert!(!reason.contains("first"), "a member name: {reason}");
                }
                other => panic!("{value}: expected invalid input, got {other:?}"),
            }
        }
        // null on the path, an absent member, an index past the end: missing, so passed.
        for value in [
            "null",
            r#"{"orders":null}"#,
            r#"{"orders":[]}"#,
            r#"{"orders":[null]}"#,
            r#"{"other":1}"#,
        ] {
            assert_eq!(value_of(&encrypt_one(value.as_bytes())), value.as_bytes());
        }
        assert!(host.calls().is_empty());
    }

    #[test]
    fn a_wrong_shape_is_invalid_input_even_with_on_missing_field_fail() {
        let _host = start(r#"{"key":"customers","fields":["/ssn"],"on_missing_field":"fail"}"#);
        assert!(matches!(
            encrypt_one(br#"["x"]"#),
            Err(Failure::InvalidInput(_))
        ));
    }

    #[test]
    fn json_too_deep_is_invalid_input_whatever_on_invalid_json_says() {
        let _host = start(r#"{"key":"customers","fields":["/ssn"],"on_invalid_json":"pass"}"#);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            encrypt_one(deep.as_bytes()),
            Err(Failure::InvalidInput(_))
        ));
    }

    #[test]
    fn invalid_json_fails_or_passes_as_configured() {
        let bad: [&[u8]; 6] = [
            b"\xef\xbb\xbf{\"ssn\":\"1\"}",
            b"{\"ssn\":\"1\"} x",
            b"{\"ssn\":\"\xff\"}",
            br#"{"a":"\ud800","ssn":"1"}"#,
            br#"{"a":"\udc00"}"#,
            b"{\"ssn\":\"1\",}",
        ];
        let _host = start(r#"{"key":"customers","fields":["/ssn"]}"#);
        for value in bad {
            assert!(
                matches!(encrypt_one(value), Err(Failure::InvalidInput(_))),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        let _host = start(r#"{"key":"customers","fields":["/ssn"],"on_invalid_json":"pass"}"#);
        for value in bad {
            assert_eq!(value_of(&encrypt_one(value)), value);
        }
    }

    #[test]
    fn a_tenant_whose_key_is_denied_fails_alone_as_invalid_input() {
        let host = Host::install();
        host.create_key("tenant-acme");
        host.create_key("tenant-evil");
        host.deny_key("tenant-evil");
        EncryptFields::init(r#"{"key":"tenant-{header:tenant}","fields":["/ssn"]}"#.into())
            .unwrap();
        let batch = ["acme", "evil"]
            .map(|tenant| {
                let mut record = record("k", r#"{"ssn":"1"}"#);
                record.headers.push(Header {
                    key: "tenant".into(),
                    value: Some(tenant.as_bytes().to_vec()),
                });
                record
            })
            .to_vec();
        let results = EncryptFields::transform(batch);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(Failure::InvalidInput(m))
                if m.contains("tenant-{header:tenant}") && !m.contains("evil")),
            "{:?}",
            results[1]
        );
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::{BoundDecryptItem, TransitError};

        const STREAM: &str = "orders.protected";

        fn start(config: &str) -> Host {
            let host = Host::install();
            host.create_key("customers");
            host.create_derived_key("record-keys", true);
            host.set_sink_topic("test", STREAM);
            EncryptFields::init(config.into()).expect("a valid configuration");
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
        fn each_field_is_bound_to_its_place_its_record_key_and_its_stream() {
            let host = start(
                r#"{"key":"customers","fields":["/ssn","/orders/*/iban"],
                    "bind":["stream","key"]}"#,
            );
            let value = r#"{"ssn":"1","orders":[{"iban":"A"},{"iban":"B"}],"keep":true}"#;
            let out = EncryptFields::transform(vec![record("k1", value)])
                .remove(0)
                .unwrap()
                .remove(0);
            assert_eq!(host.items_per_call(Operation::EncryptBound), [3]);
            assert_eq!(out.key.as_deref(), Some(&b"k1"[..]), "record_keys = keep");
            assert_eq!(out.headers.last().unwrap().key, PROTECTION_HEADER);
            assert_eq!(
                out.headers.last().unwrap().value.as_deref(),
                Some(&b"3;03"[..])
            );
            let doc: serde_json::Value =
                serde_json::from_slice(out.value.as_ref().unwrap()).unwrap();
            assert_eq!(doc["keep"], true);
            let flags = Flags::parse(0x03).unwrap();
            let binding =
                |pointer: &str| record::binding(flags, STREAM, Some(b"k1"), Some(pointer));
            let first = doc["orders"][0]["iban"].as_str().unwrap();
            assert_eq!(
                open(doc["ssn"].as_str().unwrap(), binding("/ssn")),
                Ok(br#""1""#.to_vec())
            );
            assert_eq!(
                open(first, binding("/orders/0/iban")),
                Ok(br#""A""#.to_vec())
            );
            // Swapped with its neighbour, moved to another field, record key or stream: no.
            for wrong in [
                binding("/orders/1/iban"),
                binding("/ssn"),
                record::binding(flags, STREAM, Some(b"k2"), Some("/orders/0/iban")),
                record::binding(flags, "elsewhere", Some(b"k1"), Some("/orders/0/iban")),
            ] {
                assert!(matches!(
                    open(first, wrong),
                    Err(TransitError::InvalidInput(m)) if m.contains("authentication failed")
                ));
            }
        }

        #[test]
        fn records_passed_on_unexamined_still_get_their_key_protected_and_the_header() {
            let host = start(
                r#"{"key":"customers","fields":["/ssn"],"on_invalid_json":"pass",
                    "record_keys":"encrypt","record_keys_key":"record-keys"}"#,
            );
            let tombstone = SourceRecord {
                value: None,
                ..record("k1", "")
            };
            let out: Vec<OutputRecord> = EncryptFields::transform(vec![
                record("k1", "not json"),
                record("k1", r#"{"other":1}"#),
                tombstone,
            ])
            .into_iter()
            .map(|r| r.unwrap().remove(0))
            .collect();
            assert_eq!(
                host.items_per_call(Operation::Encrypt),
                [2],
                "one distinct key, the probe"
            );
            assert!(
                host.items_per_call(Operation::EncryptBound).is_empty(),
                "no field to encrypt"
            );
            let sink_key = out[0].key.clone().unwrap();
            assert!(sink_key.starts_with(b"vault:v1:"));
            for (out, value) in
                out.iter()
                    .zip([Some(&b"not json"[..]), Some(br#"{"other":1}"#), None])
            {
                assert_eq!(out.key.as_ref(), Some(&sink_key));
                assert_eq!(out.value.as_deref(), value);
                assert_eq!(
                    out.headers.last().unwrap().value.as_deref(),
                    Some(&b"3;40"[..])
                );
            }
            // Stamped when it had fields to look at, as before; not when passed on.
            assert_eq!(out[0].headers.len(), 1);
            assert_eq!(out[1].headers.len(), 3);
        }

        #[test]
        fn sealed_headers_and_envelope_options_are_refused() {
            let _host = Host::install();
            for (config, field) in [
                (r#"{"key":"k","fields":["/a"],"headers":"seal"}"#, "headers"),
                (r#"{"key":"k","fields":["/a"],"pad_to":16}"#, "pad_to"),
            ] {
                let error = EncryptFields::init(config.into()).unwrap_err();
                assert!(
                    error.starts_with(&format!("policy.config.{field}: ")),
                    "{error}"
                );
            }
        }
    }
}
