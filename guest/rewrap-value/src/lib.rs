//! Moves values that `encrypt-value` (or any Vault client) encrypted to the transit key's
//! latest version after a rotation, with Vault's `transit/rewrap`: Vault decrypts and
//! re-encrypts inside itself, so neither this policy nor the host ever sees a plaintext.
//! Each value must be a ciphertext `vault:v<N>:<base64>`; one that is not is an
//! invalid-input failure, never passed on. Keys and headers stay as they are (the record
//! is still what the policy that encrypted it made). Tombstones pass through unchanged.
//! One Vault batch request per batch.
//!
//! Config: `key` (required), `context` or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::transit;
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_by_key, OutputRecord, SourceRecord, TransformResult,
    TransitKeyConfig,
};

configured_policy!(RewrapValue, TransitKeyConfig::parse, rewrap);

fn rewrap(config: &TransitKeyConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_by_key(
        batch,
        "vault rewrap",
        |record| config.ciphertext_item(record),
        transit::rewrap,
        |record, _, ciphertext| OutputRecord {
            topic: None,
            key: record.key,
            value: Some(ciphertext.into_bytes()),
            headers: record.headers,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_policy_sdk::testing::{record, Host, Operation};
    use kafka_transit_policy_sdk::{Failure, Policy};

    #[test]
    fn rotated_values_move_to_the_latest_version_and_survive_min_decryption_version() {
        let host = Host::install();
        host.create_key("customers");
        let old = [
            host.encrypt("customers", b"alice"),
            host.encrypt("customers", b"bob"),
        ];
        host.rotate_key("customers");
        RewrapValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let mut batch: Vec<SourceRecord> = old.iter().map(|c| record("k", c)).collect();
        batch.push(SourceRecord {
            value: None,
            ..record("gone", "")
        });
        batch.push(record("plain", "not a ciphertext"));
        let results = RewrapValue::transform(batch);

        let rewrapped: Vec<String> = results[..2]
            .iter()
            .map(|r| String::from_utf8(r.as_ref().unwrap()[0].value.clone().unwrap()).unwrap())
            .collect();
        for value in &rewrapped {
            assert!(value.starts_with("vault:v2:"), "{value}");
        }
        assert_eq!(results[2].as_ref().unwrap()[0].value, None, "tombstone");
        assert!(matches!(&results[3], Err(Failure::InvalidInput(_))));
        assert_eq!(
            host.items_per_call(Operation::Rewrap),
            [2],
            "one Vault batch for the batch"
        );

        host.set_min_decryption_version("customers", 2);
        assert_eq!(
            host.decrypt("customers", &rewrapped[0]),
            Ok(b"alice".to_vec())
        );
        assert_eq!(
            host.decrypt("customers", &rewrapped[1]),
            Ok(b"bob".to_vec())
        );
        assert!(
            host.decrypt("customers", &old[0]).is_err(),
            "the old value is refused"
        );
    }

    #[test]
    fn a_value_below_min_decryption_version_cannot_be_rewrapped() {
        let host = Host::install();
        host.create_key("customers");
        let old = host.encrypt("customers", b"alice");
        host.rotate_key("customers");
        host.set_min_decryption_version("customers", 2);
        RewrapValue::init(r#"{"key":"customers"}"#.into()).unwrap();
        let results = RewrapValue::transform(vec![record("k", &old)]);
        assert!(
            matches!(&results[0], Err(Failure::InvalidInput(m)) if m.contains("too old")),
            "{results:?}"
        );
    }
}
