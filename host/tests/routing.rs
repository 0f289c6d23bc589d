//! Many topics through one pipeline (mock cluster, in-process vault-dev, the built-in
//! policies): source topics by pattern, sink and dead-letter topics and transit keys by
//! template, a key per tenant from a header.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_transit::envelope;
use kafka_transit::pipeline::dead_letter_headers;
use kafka_transit::vault::DecryptInput;
use rdkafka::message::Message;
use support::kafka::{header_text, PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);
const KEY_HEADER: &str = "kafka-transit.key";

fn records(prefix: &str, count: usize) -> Vec<TestRecord> {
    (0..count)
        .map(|i| TestRecord::new(&format!("{prefix}-{i}"), &format!("{prefix} secret {i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_routes_each_topic_to_its_sink_under_its_key_and_picks_up_new_topics() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[
        ("payments.raw", 2),
        ("orders.raw", 2),
        ("payments.protected", 2),
        ("orders.protected", 2),
        ("refunds.protected", 1),
        ("payments.audit", 1),
    ]);
    kafka
        .produce("payments.raw", &records("payments", 40))
        .await;
    kafka.produce("orders.raw", &records("orders", 40)).await;
    // Not matched by the pattern: must stay where it is.
    kafka.produce("payments.audit", &records("audit", 5)).await;

    let mut spec = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "routing",
        "builtin = \"encrypt-value\"".into(),
    );
    spec.source_topic = "^[a-z]+[.]raw$";
    spec.sink_topic = "{topic|strip_suffix:.raw}.protected";
    spec.policy_config = "key = \"{topic|strip_suffix:.raw}\"";
    spec.errors = "on_failure = \"dead-letter\"\ndead_letter_topic = \"{topic}.dlq\"";
    let mut config = spec.config();
    // Find the topic created below within a second, not the default 10 s.
    config
        .source
        .properties
        .0
        .insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    let pipeline = RunningPipeline::start(config, vault.clone()).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 80).await;

    // Created after the pipeline started: picked up without a restart.
    kafka.create_topics(&[("refunds.raw", 1)], &[]).await;
    kafka.produce("refunds.raw", &records("refunds", 40)).await;
    pipeline
        .wait_until(WAIT, |m| {
            m.records_out == 120 && m.committed_batches == m.batches
        })
        .await;
    let done = pipeline.stop().await.unwrap();
    assert_eq!((done.records_in, done.dead_lettered), (120, 0));

    for topic in ["payments", "orders", "refunds"] {
        let out = kafka.read(&format!("{topic}.protected"), 40, WAIT).await;
        assert_eq!(out.len(), 40, "{topic}.protected");
        let mut ciphertexts = Vec::new();
        for message in &out {
            assert_eq!(header_text(message, KEY_HEADER), topic);
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            assert!(key.starts_with(topic), "{key} landed in {topic}.protected");
            ciphertexts.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
        let inputs: Vec<DecryptInput> = ciphertexts
            .iter()
            .map(|c| DecryptInput {
                ciphertext: c,
                context: None,
                associated_data: None,
            })
            .collect();
        // Each topic's values open under its own key and no other.
        let plaintexts = vault.decrypt_batch(topic, &inputs).await.unwrap();
        for (message, plaintext) in out.iter().zip(plaintexts) {
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let i = key.rsplit('-').next().unwrap();
            assert_eq!(
                plaintext.unwrap(),
                format!("{topic} secret {i}").into_bytes()
            );
        }
        let other = if topic == "orders" {
            "payments"
        } else {
            "orders"
        };
        let refused = vault.decrypt_batch(other, &inputs[..1]).await.unwrap();
        assert!(refused[0].is_err(), "{topic}'s value opened under {other}");
    }
    // The unmatched topic's records went nowhere.
    assert!(kafka
        .read("payments.audit.protected", 1, Duration::from_secs(2))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_header_selects_the_key_and_a_record_without_one_is_dead_lettered() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("clear", 2), ("in.dlq", 1)]);
    let tenants = ["acme", "globex", ""];
    let sent: Vec<TestRecord> = (0..90)
        .map(|i| {
            let mut record = TestRecord::new(&format!("k{i}"), &format!("value {i}"));
            let tenant = tenants[i % 3];
            if !tenant.is_empty() {
                record.headers = vec![("tenant".into(), Some(tenant.as_bytes().to_vec()))];
            }
            record
        })
        .collect();
    kafka.produce("in", &sent).await;
    // Data keys come from existing transit keys only (Vault's datakey does not create).
    for key in ["tenant-acme", "tenant-globex"] {
        support::create_key(&vault_server, "transit", key, serde_json::json!({})).await;
    }

    let mut seal = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "tenants",
        "builtin = \"envelope-seal\"".into(),
    );
    seal.policy_config = "key = \"tenant-{header:tenant}\"";
    seal.errors = "on_failure = \"dead-letter\"\ndead_letter_topic = \"{topic}.dlq\"";
    let pipeline = RunningPipeline::start(seal.config(), vault.clone()).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 60 && m.dead_lettered == 30)
        .await;
    pipeline.stop().await.unwrap();

    // Each tenant's envelopes name its key, and share one data key (cached per key).
    let out = kafka.read("out", 60, WAIT).await;
    let mut wrapped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in &out {
        let tenant = header_text(message, "tenant");
        let parsed = envelope::parse(message.payload().unwrap()).unwrap();
        assert_eq!(parsed.key_name, format!("tenant-{tenant}"));
        assert_eq!(header_text(message, KEY_HEADER), parsed.key_name);
        wrapped
            .entry(tenant)
            .or_default()
            .insert(parsed.wrapped_key.to_string());
    }
    assert_eq!(wrapped.len(), 2);
    assert!(wrapped.values().all(|keys| keys.len() == 1), "{wrapped:?}");

    // Without the header there is no key: dead-lettered, never sealed under another.
    let dead = kafka.read("in.dlq", 30, WAIT).await;
    assert_eq!(dead.len(), 30);
    for message in &dead {
        assert_eq!(
            header_text(message, dead_letter_headers::ERROR_KIND),
            "invalid-input"
        );
        let error = header_text(message, dead_letter_headers::ERROR);
        assert!(
            error.contains("the record has no header \"tenant\""),
            "{error}"
        );
    }

    // The open side resolves the same template per record and gets every value back.
    let mut open = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "tenants-open",
        "builtin = \"envelope-open\"".into(),
    );
    open.source_topic = "out";
    open.sink_topic = "clear";
    open.policy_config = "key = \"tenant-{header:tenant}\"";
    let pipeline = RunningPipeline::start(open.config(), vault.clone()).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 60).await;
    let done = pipeline.stop().await.unwrap();
    assert_eq!(done.dead_lettered, 0);
    let clear = kafka.read("clear", 60, WAIT).await;
    let values: BTreeSet<Vec<u8>> = clear
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    let expected: BTreeSet<Vec<u8>> = sent
        .iter()
        .filter(|r| !r.headers.is_empty())
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values, expected);
}
