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

use kafka_transit_policy_sdk::batch::{Batch, Start};
use kafka_transit_policy_sdk::fields::{FieldsConfig, Selected};
use kafka_transit_policy_sdk::protection::{
    is_protected, rewrap_keys, Protected, Role, Shape, Streams,
};
use kafka_transit_policy_sdk::transit::{self, BoundDecryptItem, BoundEncryptItem, DecryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, forward, Failure, OutputRecord, Prepared, ResolvedKey, SourceRecord,
    TransformResult,
};

type Config = Protected<FieldsConfig>;

fn parse(json: &str) -> Result<Config, String> {
    let config = Protected::parse(json, Role::Rewrap, Shape::Fields, FieldsConfig::parse)?;
    config
        .protection
        .check_context_from(&config.config.transit)?;
    Ok(config)
}

configured_policy!(RewrapFields, parse, rewrap);

/// A record's selected fields, their ciphertexts and then (format 3) their plaintexts;
/// `None`: a tombstone, or a value passed on unexamined.
struct Fields {
    key: ResolvedKey,
    selected: Selected,
    items: Vec<DecryptItem>,
    plaintexts: Vec<Vec<u8>>,
}

fn rewrap(config: &Config, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    let (fields, protection) = (&config.config, &config.protection);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let protected = is_protected(&record);
        let selected = match fields.ciphertext_items(&mut record) {
            Prepared::Forward if !protected => return Start::Output(forward(record)),
            Prepared::Forward => None,
            Prepared::Item((key, selected, items)) => Some(Fields {
                key,
                selected,
                items,
                plaintexts: Vec::new(),
            }),
            Prepared::Fail(failure) => return Start::Fail(failure),
        };
        match protection.incoming(record, &mut streams, selected) {
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    rewrap_keys(&mut batch, protection);
    // Formats 1/2: inside Vault.
    batch.vault(
        "vault rewrap",
        |incoming| match (&mut incoming.extra, incoming.flags) {
            (Some(fields), None) => Ok(Some((
                fields.key.clone(),
                std::mem::take(&mut fields.items),
            ))),
            _ => Ok(None),
        },
        transit::rewrap,
        |incoming, ciphertexts| {
            if let Some(fields) = incoming.extra.take() {
                incoming.value = Some(fields.selected.with_ciphertexts(ciphertexts));
            }
            Ok(())
        },
    );
    // Format 3: open each field with its binding, encrypt it with the binding it leaves
    // with (the record's key may have been rewrapped).
    batch.vault(
        "vault decrypt",
        |incoming| {
            if incoming.flags.is_none() {
                return Ok(None);
            }
            let bindings = bindings(incoming, |incoming, pointer| incoming.binding(pointer));
            let Some(fields) = &mut incoming.extra else {
                return Ok(None);
            };
            let items = std::mem::take(&mut fields.items)
                .into_iter()
                .zip(bindings)
                .map(|(item, associated_data)| BoundDecryptItem {
                    ciphertext: item.ciphertext,
                    context: item.context,
                    associated_data,
                })
                .collect();
            Ok(Some((fields.key.clone(), items)))
        },
        transit::decrypt_bound,
        |incoming, plaintexts| {
            if let Some(fields) = &mut incoming.extra {
                fields.plaintexts = plaintexts;
            }
            Ok(())
        },
    );
    batch.vault(
        "vault encrypt",
        |incoming| {
            if incoming.flags.is_none() {
                return Ok(None);
            }
            let bindings = bindings(incoming, |incoming, pointer| incoming.rebinding(pointer));
            let context = incoming
                .extra
                .as_ref()
                .and_then(|f| f.selected.context.clone());
            let Some(fields) = &mut incoming.extra else {
                return Ok(None);
            };
            let items = std::mem::take(&mut fields.plaintexts)
                .into_iter()
                .zip(bindings)
                .map(|(plaintext, associated_data)| BoundEncryptItem {
                    plaintext,
                    context: context.clone(),
                    associated_data,
                })
                .collect();
            Ok(Some((fields.key.clone(), items)))
        },
        transit::encrypt_bound,
        |incoming, ciphertexts| {
            if let Some(fields) = incoming.extra.take() {
                incoming.value = Some(fields.selected.with_ciphertexts(ciphertexts));
            }
            Ok(())
        },
    );
    batch.finish(|incoming| {
        Ok::<_, Failure>(OutputRecord {
            topic: None,
            key: incoming.key,
            value: incoming.value,
            headers: incoming.headers,
        })
    })
}

/// The binding data of each selected field of a format 3 record (empty: none, or not
/// format 3), made by `binding` with each field's located pointer.
fn bindings(
    incoming: &kafka_transit_policy_sdk::protection::Incoming<Option<Fields>>,
    binding: impl Fn(
        &kafka_transit_policy_sdk::protection::Incoming<Option<Fields>>,
        Option<&str>,
    ) -> Option<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let Some(fields) = &incoming.extra else {
        return Vec::new();
    };
    fields
        .selected
        .located_pointers()
        .into_iter()
        .map_while(|pointer| binding(incoming, Some(pointer)))
        .collect()
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
