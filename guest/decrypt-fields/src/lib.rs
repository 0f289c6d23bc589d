//! Decrypts the fields that `encrypt-fields` encrypted and restores their original
//! values and types: each ciphertext string is replaced by the decrypted JSON text, and
//! every other byte of the record stays as it came. Each selected field must be a JSON
//! string holding a Vault transit ciphertext, and must decrypt to exactly one JSON value;
//! a field that does not fails the record as invalid input (dead-lettered or stops the
//! pipeline, as configured), never passed on. The kafka-transit headers are removed.
//! Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields`.

use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_keyed, without_stamps, OutputRecord, SourceRecord,
    TransformResult,
};

configured_policy!(DecryptFields, FieldsConfig::parse, decrypt);

fn decrypt(config: &FieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault decrypt",
        |record| config.ciphertext_items(record),
        transit::decrypt,
        |record, selected, plaintexts| {
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(selected.with_plaintexts(plaintexts)?),
                headers: without_stamps(record.headers),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host};
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
}
