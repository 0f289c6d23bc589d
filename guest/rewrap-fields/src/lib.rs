//! Moves the fields that `encrypt-fields` encrypted to the transit key's latest version
//! after a rotation, with Vault's `transit/rewrap`: Vault decrypts and re-encrypts inside
//! itself, so no plaintext reaches this policy or the host. Each selected field must be a
//! JSON string holding a Vault ciphertext; one that is not fails the record as invalid
//! input, never passed on. The rest of the record (byte for byte), its key and its
//! headers stay as they are. Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields` and `decrypt-fields`.

use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_keyed, OutputRecord, SourceRecord, TransformResult,
};
configured_policy!(RewrapFields, FieldsConfig::parse, rewrap);

fn rewrap(config: &FieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault rewrap",
        |record| config.ciphertext_items(record),
        transit::rewrap,
        |record, selected, ciphertexts| {
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(selected.with_ciphertexts(ciphertexts)),
                headers: record.headers,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
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
}
