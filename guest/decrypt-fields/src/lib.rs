//! Decrypts the fields that `encrypt-fields` encrypted and restores their original
//! values and types: each ciphertext string is replaced by the decrypted JSON text, and
//! every other byte of the record stays as it came. Each selected field must be a JSON
//! string holding a Vault transit ciphertext, and must decrypt to exactly one JSON value;
//! a field that does not fails the record as invalid input (dead-lettered or stops the
//! pipeline, as configured), never passed on. The kafka-transit headers are removed.
//! Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields`.
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header has each field decrypted with the binding rebuilt from the flags, the stream
//! (`stream`, default: the record's own topic), the key as received and the JSON
//! Pointer that locates the field in this document: a field moved elsewhere in the
//! document, or to another record, key or stream, fails with "message authentication
//! failed". An encrypted key is decrypted under `record_keys_key` (an HMAC'd one is
//! refused unless `keep_hmac_keys = true`), and the protection header is dropped.
//! `require_binding` refuses records bound to less, and records without the header.

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::protection::{Protected, Role, Shape};
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<FieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    Protected::parse(json, Role::Open, Shape::Fields, FieldsConfig::parse)
}

configured_policy!(DecryptFields, parse, decrypt);

fn decrypt(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::open(config, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host};
    use kafka_transit_policy_sdk::transit;
    use kafka_transit_policy_sdk::{Failure, Policy};

    fn start(config: &str) -> Host {
        let host = Host::install();
        host.create_key("customers");
        DecryptFields::init(config.into()).expect("a valid configuration");
        host
    }

    fn decrypt_one(value: &[u8]) -> TransformResult {
        DecryptFields::transform(vec![record("k", value)]).remove(0)
    }

    fn text_of(result: &TransformResult) -> String {
        let records = result.as_ref().expect("the record was decrypted");
        String::from_utf8(records[0].value.clone().expect("a value")).unwrap()
    }

    #[test]
    fn only_the_ciphertexts_change_and_the_plaintext_goes_in_as_it_was() {
        let host = start(r#"{"key":"customers","fields":["/ssn","/amount"]}"#);
        let ssn = host.encrypt("customers", br#""123-45-6789""#);
        let amount = host.encrypt("customers", b"12345678901234567.89");
        let around = |ssn: &str, amount: &str| {
            format!(
                "{{ \"n\": 98765432109876543210.5e-3 , \"ssn\":{ssn},\n\"name\":\"Ren\\u00e9e\",\
                 \"amount\" : {amount}, \"z\": [ -0 ] }}"
            )
        };
        let out = text_of(&decrypt_one(
            around(&format!("\"{ssn}\""), &format!("\"{amount}\"")).as_bytes(),
        ));
        assert_eq!(out, around(r#""123-45-6789""#, "12345678901234567.89"));
    }

    #[test]
    fn a_ciphertext_written_with_json_escapes_is_decoded_first() {
        let host = start(r#"{"key":"customers","fields":["/ssn"]}"#);
        let ssn = host.encrypt("customers", br#""1""#);
        let escaped = format!("\\u0076{}", &ssn[1..]).replace(':', "\\u003a");
        let out = text_of(&decrypt_one(format!(r#"{{"ssn":"{escaped}"}}"#).as_bytes()));
        assert_eq!(out, r#"{"ssn":"1"}"#);
    }

    #[test]
    fn values_encrypted_by_serde_json_text_still_decrypt() {
        // What encrypt-fields wrote before it kept tokens as they came: compact
        // serde_json text, numbers in serde_json's own form.
        let host = start(r#"{"key":"customers","fields":["/a","/o"]}"#);
        let a = host.encrypt("customers", b"1.2345678901234568e16");
        let o = host.encrypt("customers", br#"{"k":[1,"x\u0000"],"e":"\u00e9"}"#);
        let out = text_of(&decrypt_one(
            format!(r#"{{"a":"{a}","o":"{o}"}}"#).as_bytes(),
        ));
        assert_eq!(
            out,
            r#"{"a":1.2345678901234568e16,"o":{"k":[1,"x\u0000"],"e":"\u00e9"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["o"]["e"], "\u{e9}");
    }

    #[test]
    fn a_plaintext_that_is_not_exactly_one_json_value_is_invalid_input() {
        let host = start(r#"{"key":"customers","fields":["/ssn"]}"#);
        for plaintext in [&b"1 2"[..], b"{\"a\":1} x", b"", b"\"unterminated", b"\xff"] {
            let ciphertext = host.encrypt("customers", plaintext);
            let result = decrypt_one(format!(r#"{{"ssn":"{ciphertext}"}}"#).as_bytes());
            assert!(
                matches!(&result, Err(Failure::InvalidInput(m)) if m.contains("/ssn")),
                "{result:?}"
            );
        }
    }

    #[test]
    fn every_duplicate_of_a_selected_member_is_decrypted() {
        let host = start(r#"{"key":"customers","fields":["/ssn"]}"#);
        let (one, two) = (
            host.encrypt("customers", br#""111""#),
            host.encrypt("customers", br#""222""#),
        );
        let out = text_of(&decrypt_one(
            format!(r#"{{"ssn":"{one}","ssn":"{two}"}}"#).as_bytes(),
        ));
        assert_eq!(out, r#"{"ssn":"111","ssn":"222"}"#);
        // A duplicate left in clear is a plaintext where a ciphertext belongs.
        let result = decrypt_one(format!(r#"{{"ssn":"{one}","ssn":"222"}}"#).as_bytes());
        assert!(
            matches!(&result, Err(Failure::InvalidInput(_))),
            "{result:?}"
        );
    }

    mod format3 {
        use super::*;
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::testing::Operation;
        use kafka_transit_policy_sdk::transit::BoundEncryptItem;
        use kafka_transit_policy_sdk::Header;

        const STREAM: &str = "orders.protected";

        /// A field's ciphertext as encrypt-fields writes it with `flags` for key `k1`.
        fn field(flags: Flags, plaintext: &str, pointer: &str) -> String {
            let item = BoundEncryptItem {
                plaintext: plaintext.as_bytes().to_vec(),
                context: None,
                associated_data: record::binding(flags, STREAM, Some(b"k1"), Some(pointer)),
            };
            transit::encrypt_bound("customers", &[item]).unwrap()[0]
                .clone()
                .unwrap()
        }

        fn protected(value: String, flags: Flags) -> SourceRecord {
            SourceRecord {
                topic: STREAM.into(),
                headers: vec![Header {
                    key: PROTECTION_HEADER.into(),
                    value: Some(flags.header_value().into_bytes()),
                }],
                ..record("k1", value)
            }
        }

        #[test]
        fn fields_open_only_where_they_were_encrypted() {
            let host = start(r#"{"key":"customers","fields":["/ssn","/orders/*/iban"]}"#);
            let flags = Flags::parse(0x03).unwrap();
            let (a, b, ssn) = (
                field(flags, r#""A""#, "/orders/0/iban"),
                field(flags, r#""B""#, "/orders/1/iban"),
                field(flags, r#""1""#, "/ssn"),
            );
            let doc = |first: &str, second: &str| {
                format!(
                    r#"{{"ssn":"{ssn}","orders":[{{"iban":"{first}"}},{{"iban":"{second}"}}]}}"#
                )
            };
            let out =
                text_of(&DecryptFields::transform(vec![protected(doc(&a, &b), flags)]).remove(0));
            assert_eq!(out, r#"{"ssn":"1","orders":[{"iban":"A"},{"iban":"B"}]}"#);
            assert_eq!(host.items_per_call(Operation::DecryptBound), [3]);
            // Swapped within the document, or the document under another key or stream.
            let swapped = DecryptFields::transform(vec![protected(doc(&b, &a), flags)]).remove(0);
            assert!(
                matches!(&swapped, Err(Failure::InvalidInput(m)) if m.contains("authentication failed")),
                "{swapped:?}"
            );
            let mut rekeyed = protected(doc(&a, &b), flags);
            rekeyed.key = Some(b"k2".to_vec());
            let moved = SourceRecord {
                topic: "elsewhere".into(),
                ..protected(doc(&a, &b), flags)
            };
            for result in DecryptFields::transform(vec![rekeyed, moved]) {
                assert!(matches!(result, Err(Failure::InvalidInput(_))));
            }
            // Without its protection header, nothing opens either.
            let mut stripped = protected(doc(&a, &b), flags);
            stripped.headers.clear();
            assert!(DecryptFields::transform(vec![stripped]).remove(0).is_err());
        }

        #[test]
        fn headers_sealed_in_a_field_value_are_no_format_and_require_binding_holds() {
            let _host =
                start(r#"{"key":"customers","fields":["/ssn"],"require_binding":["stream"]}"#);
            let sealed = protected(
                r#"{"ssn":"vault:v1:x"}"#.into(),
                Flags::parse(0x05).unwrap(),
            );
            assert!(matches!(
                DecryptFields::transform(vec![sealed]).remove(0),
                Err(Failure::InvalidInput(m)) if m.contains("never does")
            ));
            let old = record("k1", r#"{"other":1}"#);
            assert!(matches!(
                DecryptFields::transform(vec![old]).remove(0),
                Err(Failure::InvalidInput(m)) if m.contains("format 1 or 2")
            ));
            // A format 3 record with nothing selected still loses its protection header.
            let nothing = protected(r#"{"other":1}"#.into(), Flags::parse(0x01).unwrap());
            let out = DecryptFields::transform(vec![nothing])
                .remove(0)
                .unwrap()
                .remove(0);
            assert!(out.headers.is_empty());
            assert_eq!(out.value.as_deref(), Some(&br#"{"other":1}"#[..]));
        }
    }
}
