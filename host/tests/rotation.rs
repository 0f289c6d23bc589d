//! Key rotation without exposing plaintext, against vault-dev and the mock Kafka
//! cluster: records encrypted under version 1 (whole values, fields, envelopes) are moved
//! to version 2 by `rewrap-value`, `rewrap-fields` and `envelope-rewrap`; after
//! `min_decryption_version = 2` the rewrapped ones decrypt and the originals are refused.
//! And envelope sealing picks up a rotation within `rotation_check_interval`.

mod support;

use std::time::Duration;

use kafka_transit::envelope::{parse, DataKeyPolicy, EnvelopeError, Envelopes};
use kafka_transit::vault::{DecryptInput, VaultClient};
use rdkafka::message::Message;
use serde_json::{json, Value};
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);
const RECORDS: usize = 200;

/// Runs `policy` from `from` to `to` until all `RECORDS` are out, and stops it.
async fn run(
    kafka: &TestKafka,
    url: &str,
    vault: &VaultClient,
    (from, to): (&str, &str),
    policy: &str,
    config: &str,
) {
    let mut spec = PipelineSpec::from_to(kafka, url, from, to, format!("builtin = \"{policy}\""));
    spec.policy_config = config;
    spec.group = to; // several pipelines read `raw`, each from the start
    let pipeline = RunningPipeline::start(spec.config(), vault.clone()).await;
    pipeline
        .wait_until(WAIT, |m| {
            m.records_out as usize == RECORDS && m.committed_batches > 0
        })
        .await;
    let done = pipeline.stop().await.unwrap();
    assert_eq!(done.dead_lettered, 0, "{policy}: nothing dead-lettered");
}

async fn values(kafka: &TestKafka, topic: &str) -> Vec<(String, Vec<u8>)> {
    let mut values: Vec<(String, Vec<u8>)> = kafka
        .read(topic, RECORDS, WAIT)
        .await
        .iter()
        .map(|m| {
            (
                String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                m.payload().unwrap().to_vec(),
            )
        })
        .collect();
    assert_eq!(values.len(), RECORDS, "{topic}");
    values.sort();
    values
}

fn text(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap()
}

/// Each ciphertext decrypted with the host's plain Vault client, as any Vault client would.
async fn decrypt_each(vault: &VaultClient, ciphertexts: &[&str]) -> Vec<Result<Vec<u8>, String>> {
    let inputs: Vec<DecryptInput<'_>> = ciphertexts.iter().map(|c| DecryptInput::new(c)).collect();
    vault
        .decrypt_batch("customers", &inputs)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.map_err(|e| e.message))
        .collect()
}

async fn rotate(server: &vault_dev::RunningServer) {
    let path = "transit/keys/customers/rotate";
    support::request_ok(server, reqwest::Method::POST, path, Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_rewrap_and_raise_min_decryption_version() {
    let server = support::start_vault().await;
    let url = server.url();
    let vault = support::client_for(&server);
    support::create_key(&server, "transit", "customers", json!({})).await;
    let kafka = TestKafka::start(&[
        ("raw", 2),
        ("values", 2),
        ("values.v2", 2),
        ("fields", 2),
        ("fields.v2", 2),
        ("sealed", 2),
        ("sealed.v2", 2),
        ("dlq", 1),
    ]);
    let originals: Vec<TestRecord> = (0..RECORDS)
        .map(|i| {
            TestRecord::new(
                &format!("k{i:03}"),
                &json!({"id": i, "ssn": format!("ssn-{i}")}).to_string(),
            )
        })
        .collect();
    kafka.produce("raw", &originals).await;
    let fields = "key = \"customers\"\nfields = [\"/ssn\"]";
    let key_only = "key = \"customers\"";
    let encrypt = [
        ("raw", "values", "encrypt-value", key_only),
        ("raw", "fields", "encrypt-fields", fields),
        ("raw", "sealed", "envelope-seal", key_only),
    ];
    let rewrap = [
        ("values", "values.v2", "rewrap-value", key_only),
        ("fields", "fields.v2", "rewrap-fields", fields),
        ("sealed", "sealed.v2", "envelope-rewrap", key_only),
    ];
    for (from, to, policy, config) in encrypt {
        run(&kafka, &url, &vault, (from, to), policy, config).await;
    }
    rotate(&server).await;
    for (from, to, policy, config) in rewrap {
        let before = server.stats();
        run(&kafka, &url, &vault, (from, to), policy, config).await;
        let after = server.stats();
        let requests =
            after.by_operation["rewrap"] - before.by_operation.get("rewrap").unwrap_or(&0);
        let items = after.batch_items - before.batch_items;
        if policy == "envelope-rewrap" {
            assert_eq!(
                items, requests,
                "{RECORDS} envelopes under one data key: one wrapped key per batch request"
            );
        } else {
            assert_eq!(
                items as usize, RECORDS,
                "{policy}: one item per value or field"
            );
        }
    }

    support::request_ok(
        &server,
        reqwest::Method::POST,
        "transit/keys/customers/config",
        json!({"min_decryption_version": 2}),
    )
    .await;

    let (old_values, new_values) = (
        values(&kafka, "values").await,
        values(&kafka, "values.v2").await,
    );
    let ssn = |value: &[u8]| {
        serde_json::from_slice::<Value>(value).unwrap()["ssn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (old_fields, new_fields) = (
        values(&kafka, "fields").await,
        values(&kafka, "fields.v2").await,
    );
    for (((key, old), (key2, new)), original) in old_values.iter().zip(&new_values).zip(&originals)
    {
        assert_eq!(key, key2);
        assert!(text(old).starts_with("vault:v1:") && text(new).starts_with("vault:v2:"));
        let results = decrypt_each(&vault, &[text(new), text(old)]).await;
        assert_eq!(results[0].as_deref().ok(), original.value.as_deref());
        assert!(
            results[1].as_ref().is_err_and(|e| e.contains("too old")),
            "{:?}",
            results[1]
        );
    }
    for ((_, old), (_, new)) in old_fields.iter().zip(&new_fields) {
        let (old_ssn, new_ssn) = (ssn(old), ssn(new));
        assert!(new_ssn.starts_with("vault:v2:"));
        let results = decrypt_each(&vault, &[&new_ssn, &old_ssn]).await;
        let plaintext: Value = serde_json::from_slice(results[0].as_ref().unwrap()).unwrap();
        assert!(plaintext.as_str().unwrap().starts_with("ssn-"));
        assert!(results[1].is_err(), "the old field is refused");
    }

    let (old_sealed, new_sealed) = (
        values(&kafka, "sealed").await,
        values(&kafka, "sealed.v2").await,
    );
    let envelopes = Envelopes::new(vault.clone(), DataKeyPolicy::default());
    for (((_, old), (_, new)), original) in old_sealed.iter().zip(&new_sealed).zip(&originals) {
        let (old_header, new_header) = (parse(old).unwrap(), parse(new).unwrap());
        assert!(old_header.wrapped_key.starts_with("vault:v1:"));
        assert!(new_header.wrapped_key.starts_with("vault:v2:"));
        let body = 12 + original.value.as_ref().unwrap().len() + 16; // nonce, ciphertext, tag
        assert_eq!(
            old[old.len() - body..],
            new[new.len() - body..],
            "the data ciphertext is untouched"
        );
        let opened = envelopes
            .open("customers", None, &[(new, b""), (old, b"")], 1 << 20)
            .await
            .unwrap();
        assert_eq!(opened[0].as_deref().ok(), original.value.as_deref());
        assert!(
            matches!(&opened[1], Err(EnvelopeError::Unwrap(m)) if m.contains("too old")),
            "{:?}",
            opened[1]
        );
    }
}

#[tokio::test]
async fn sealing_picks_up_a_rotation_within_the_check_interval() {
    let server = support::start_vault().await;
    support::create_key(&server, "transit", "customers", json!({})).await;
    let envelopes = Envelopes::new(
        support::client_for(&server),
        DataKeyPolicy {
            rotation_check_interval: Duration::from_millis(300),
            ..DataKeyPolicy::default()
        },
    );
    let seal = || async {
        let sealed = envelopes
            .seal("customers", None, &[(b"v", b"")])
            .await
            .unwrap();
        parse(&sealed[0]).unwrap().wrapped_key.to_string()
    };
    let first = seal().await;
    assert!(first.starts_with("vault:v1:"));
    rotate(&server).await;
    assert_eq!(
        seal().await,
        first,
        "the data key is kept within the interval"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = seal().await;
    assert!(after.starts_with("vault:v2:"), "{after}");
    assert_eq!(seal().await, after, "and the new one is kept in turn");
    assert_eq!(server.stats().by_operation["datakey"], 2);
}
