//! Moves the fields that `encrypt-fields` encrypted to the transit key's latest version
//! after a rotation, with Vault's `transit/rewrap`: Vault decrypts and re-encrypts inside
//! itself, so no plaintext reaches this policy or the host. Each selected field must be a
//! JSON string holding a Vault ciphertext; one that is not fails the record as invalid
//! input, never passed on. The rest of the record (byte for byte), its key and its
//! headers stay as they are. Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields` and `decrypt-fields`.
//!
//! Format 3 (docs/protected-records.md): a record with a `kafka-transit.protection`
//! header keeps its format. Its fields were encrypted with Vault's `associated_data`,
//! which `transit/rewrap` does not take, so each is decrypted and encrypted again with
//! the same binding (its located pointer; stream: `stream`, default the record's own
//! topic): **this policy sees the plaintext of such fields**, as `decrypt-fields` does.
//! With `record_keys = "encrypt"` and `record_keys_key`, encrypted record keys are
//! rewrapped to the latest key version too (fields bound to the key are then bound to
//! the new one), so that compaction converges again after a rotation.

use kafka_transit_policy_sdk::field_policies;
use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::protection::{Protected, Role, Shape};
use kafka_transit_policy_sdk::{configured_policy, SourceRecord, TransformResult};

type Config = Protected<FieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    let config = Protected::parse(json, Role::Rewrap, Shape::Fields, FieldsConfig::parse)?;
    config
        .protection
        .check_context_from(&config.config.transit)?;
    Ok(config)
}

configured_policy!(RewrapFields, parse, rewrap);

fn rewrap(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    field_policies::rewrap(config, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::transit;
    use kafka_transit_policy_sdk::{Failure, Policy};
    use serde_json::Value;

    #[test]
    fn only_the_selected_fields_are_rewrapped_and_they_decrypt_after_min_version() {
        let host = Host::install();
        host.create_key("customers");
        let ssn = host.encrypt("customers", b"\"123\"");
        let card = host.encrypt("customers", b"4111");
        let doc = serde_json::json!({"id": 7, "ssn": ssn, "card": {"number": card}});
        host.rotate_key("customers");
        RewrapFields::init(r#"{"key":"customers","fields":["/ssn","/card/number"]}"#.into())
            .unwrap();
        let results = RewrapFields::transform(vec![
            record("k", doc.to_string()),
            record("k", r#"{"id":8,"ssn":"plain"}"#),
        ]);
        let out: Value =
            serde_json::from_slice(results[0].as_ref().unwrap()[0].value.as_ref().unwrap())
                .unwrap();
        assert_eq!(out["id"], 7);
        let (new_ssn, new_card) = (
            out["ssn"].as_str().unwrap(),
            out["card"]["number"].as_str().unwrap(),
        );
        assert!(new_ssn.starts_with("vault:v2:") && new_card.starts_with("vault:v2:"));
        assert!(
            matches!(&results[1], Err(Failure::InvalidInput(m)) if m.contains("/ssn")),
            "a plaintext field is not passed on: {:?}",
            results[1]
        );
        assert_eq!(host.items_per_call(Operation::Rewrap), [2]);

        host.set_min_decryption_version("customers", 2);
        assert_eq!(host.decrypt("customers", new_ssn), Ok(b"\"123\"".to_vec()));
        assert_eq!(host.decrypt("customers", new_card), Ok(b"4111".to_vec()));
        assert!(
            host.decrypt("customers", &ssn).is_err(),
            "the old field is refused"
        );
    }

    #[test]
    fn the_rest_of_the_record_leaves_byte_for_byte() {
        let host = Host::install();
        host.create_key("customers");
        let ssn = host.encrypt("customers", b"\"123\"");
        host.rotate_key("customers");
        RewrapFields::init(r#"{"key":"customers","fields":["/ssn"]}"#.into()).unwrap();
        let before = "{ \"amount\": 12345678901234567.89,\n \"e\": \"\\u00e9\", \"ssn\" : ";
        let after = " }";
        let results =
            RewrapFields::transform(vec![record("k", format!("{before}\"{ssn}\"{after}"))]);
        let out =
            String::from_utf8(results[0].as_ref().unwrap()[0].value.clone().unwrap()).unwrap();
        assert!(out.starts_with(before) && out.ends_with(after), "{out}");
        let new = &out[before.len() + 1..out.len() - after.len() - 1];
        assert!(new.starts_with("vault:v2:"), "{out}");
        assert_eq!(host.decrypt("customers", new), Ok(b"\"123\"".to_vec()));
    }

    #[test]
    fn bound_fields_are_rewrapped_through_the_policy_with_their_place() {
        use kafka_transit_policy_sdk::envelope_format::record::{self, Flags, PROTECTION_HEADER};
        use kafka_transit_policy_sdk::transit::{BoundDecryptItem, BoundEncryptItem};
        use kafka_transit_policy_sdk::Header;
        let host = Host::install();
        host.create_key("customers");
        let flags = Flags::parse(0x03).unwrap();
        let binding = |pointer: &str| record::binding(flags, "s", Some(b"k"), Some(pointer));
        let encrypt = |plaintext: &[u8], pointer: &str| {
            let item = BoundEncryptItem {
                plaintext: plaintext.to_vec(),
                context: None,
                associated_data: binding(pointer),
            };
            transit::encrypt_bound("customers", &[item]).unwrap()[0]
                .clone()
                .unwrap()
        };
        let (a, b) = (encrypt(b"\"A\"", "/l/0"), encrypt(b"\"B\"", "/l/1"));
        host.rotate_key("customers");
        RewrapFields::init(r#"{"key":"customers","fields":["/l/*"]}"#.into()).unwrap();
        let protected = |value: String| SourceRecord {
            topic: "s".into(),
            headers: vec![Header {
                key: PROTECTION_HEADER.into(),
                value: Some(b"3;03".to_vec()),
            }],
            ..record("k", value)
        };
        let results = RewrapFields::transform(vec![
            protected(format!(r#"{{"l": ["{a}", "{b}"], "n": 1}}"#)),
            protected(format!(r#"{{"l": ["{b}", "{a}"]}}"#)),
        ]);
        assert_eq!(
            host.items_per_call(Operation::DecryptBound),
            [4],
            "one call, four fields"
        );
        assert_eq!(
            host.items_per_call(Operation::EncryptBound)[2..],
            [2],
            "two got through"
        );
        let out = &results[0].as_ref().unwrap()[0];
        let doc: Value = serde_json::from_slice(out.value.as_ref().unwrap()).unwrap();
        assert_eq!(doc["n"], 1);
        assert_eq!(out.headers[0].key, PROTECTION_HEADER);
        for (i, plaintext) in [(0, b"\"A\""), (1, b"\"B\"")] {
            let ciphertext = doc["l"][i].as_str().unwrap();
            assert!(ciphertext.starts_with("vault:v2:"));
            let item = BoundDecryptItem {
                ciphertext: ciphertext.into(),
                context: None,
                associated_data: binding(&format!("/l/{i}")),
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
