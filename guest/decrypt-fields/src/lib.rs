//! Decrypts the fields that `encrypt-fields` encrypted and restores their original
//! values and types. Each selected field must be a JSON string holding a Vault transit
//! ciphertext; one that is not fails the record as invalid input (dead-lettered or
//! stops the pipeline, as configured), never passed on. The kafka-transit headers are
//! removed. Tombstones pass through unchanged. One Vault batch request per batch.
//!
//! Config: the same as `encrypt-fields`.

use kafka_transit_policy_sdk::fields::{self, FieldsConfig, Selected};
use kafka_transit_policy_sdk::transit::{self, DecryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, through_vault_keyed, without_stamps, Failure, OutputRecord, Prepared,
    SourceRecord, TransformResult,
};
use serde_json::Value;

configured_policy!(DecryptFields, FieldsConfig::parse, decrypt);

fn decrypt(config: &FieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault decrypt",
        |record| {
            config.prepare(record).and_then(|mut selected: Selected| {
                let ciphertexts = match fields::plan_decrypt(&mut selected.doc, &selected.locations)
                {
                    Ok(ciphertexts) => ciphertexts,
                    Err(failure) => return Prepared::Fail(failure),
                };
                let items = ciphertexts
                    .into_iter()
                    .map(|ciphertext| DecryptItem {
                        ciphertext,
                        context: selected.context.clone(),
                    })
                    .collect();
                let key = selected.key_or(config).to_string();
                Prepared::Item((key, (selected.doc, selected.locations), items))
            })
        },
        transit::decrypt,
        |record, (mut doc, locations), plaintexts| {
            let values = locations
                .iter()
                .zip(&plaintexts)
                .map(|(at, plaintext)| fields::parse_plaintext(at, plaintext))
                .collect::<Result<Vec<Value>, Failure>>()?;
            fields::apply(&mut doc, &locations, values);
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(doc.to_string().into_bytes()),
                headers: without_stamps(record.headers),
            })
        },
    )
}
