//! Encrypts selected fields of JSON records with Vault transit, leaving the rest of the
//! record readable. Each selected value, whatever its type, is written as compact JSON
//! text and encrypted; the field becomes the JSON string `vault:v<N>:<base64>`, so
//! `decrypt-fields` can restore the original type. Keys stay as they are; two headers
//! name the policy and the key. Tombstones pass through unchanged. One Vault batch
//! request serves every field of every record of a batch.
//!
//! Config: `key`, `fields` (JSON Pointers, `*` for every element or member),
//! `on_invalid_json` (`fail`|`pass`), `on_missing_field` (`pass`|`fail`), and `context`
//! or `context_from = "record-key"` (derived keys).

use kafka_transit_policy_sdk::fields::{self, FieldsConfig, Selected};
use kafka_transit_policy_sdk::transit::{self, EncryptItem};
use kafka_transit_policy_sdk::{
    configured_policy, stamped, through_vault_keyed, OutputRecord, Prepared, SourceRecord,
    TransformResult,
};

configured_policy!(EncryptFields, FieldsConfig::parse, encrypt);

fn encrypt(config: &FieldsConfig, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    through_vault_keyed(
        batch,
        "vault encrypt",
        |record| {
            config.prepare(record).and_then(|mut selected: Selected| {
                let items = fields::plan_encrypt(&mut selected.doc, &selected.locations)
                    .into_iter()
                    .map(|plaintext| EncryptItem {
                        plaintext,
                        context: selected.context.clone(),
                    })
                    .collect();
                let key = selected.resolved_key_or(config);
                Prepared::Item((key.clone(), (selected.doc, selected.locations, key), items))
            })
        },
        transit::encrypt,
        |record, (doc, locations, key), ciphertexts| {
            Ok(OutputRecord {
                topic: None,
                key: record.key,
                value: Some(fields::with_ciphertexts((doc, locations), ciphertexts)),
                headers: stamped(record.headers, "encrypt-fields", &key),
            })
        },
    )
}
