//! Swapping the policy while the pipeline runs: by replacing the file at `policy.path`
//! and by re-reading the pipeline file's `[policy]` table. Mock Kafka cluster, vault-dev
//! and the real built-in components.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kafka_transit::policy::builtin;
use kafka_transit::policy::swap::{PolicySwitch, ReloadError};
use kafka_transit::policy::{digest_of, PolicyError};
use prometheus_client::registry::Registry;
use rdkafka::message::{Headers, Message, OwnedMessage};
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);

fn spec<'a>(kafka: &'a TestKafka, vault: &'a str, policy: String) -> PipelineSpec<'a> {
    PipelineSpec::in_to_out(kafka, vault, "hot-swap", policy)
}

/// Replaces `path` as a deployment would: a new file renamed over the old one.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The metrics `switch` registers, as Prometheus scrapes them.
fn scrape(switch: &PolicySwitch) -> String {
    let mut registry = Registry::with_prefix("kafka_transit");
    switch.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn reloads(switch: &PolicySwitch, outcome: &str) -> u64 {
    let series = format!("kafka_transit_policy_reloads_total{{outcome=\"{outcome}\"}} ");
    scrape(switch)
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series}in the scrape"))
        .parse()
        .unwrap()
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn policy_header(message: &OwnedMessage) -> String {
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "kafka-transit.policy"))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protected {
    Transit,
    Envelope,
}

/// How a sink value was protected; panics on anything else (plaintext above all).
fn protection(message: &OwnedMessage) -> Protected {
    let value = message.payload().expect("a value");
    if value.starts_with(b"vault:v1:") {
        assert_eq!(policy_header(message), "encrypt-value");
        Protected::Transit
    } else if kafka_transit::envelope::parse(value).is_ok() {
        assert_eq!(policy_header(message), "envelope-seal");
        Protected::Envelope
    } else {
        panic!(
            "neither a Vault ciphertext nor an envelope: {:?}",
            String::from_utf8_lossy(value)
        )
    }
}

fn records(prefix: &str, range: std::ops::Range<usize>) -> Vec<TestRecord> {
    range
        .map(|i| TestRecord::new(&format!("{prefix}{i}"), &format!("secret-{i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_policy_file_mid_stream_switches_every_partition_once_and_loses_nothing() {
    const RECORDS: usize = 20_000;
    const PARTITIONS: i32 = 4;
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    support::create_key(&vault_server, "transit", "customers", serde_json::json!({})).await;
    let kafka = TestKafka::start(&[("in", PARTITIONS), ("out", PARTITIONS), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.wasm");
    let encrypt_value = builtin::component("encrypt-value").unwrap();
    let envelope_seal = builtin::component("envelope-seal").unwrap();
    std::fs::write(&policy_path, encrypt_value).unwrap();
    let config_path = dir.path().join("pipeline.toml");
    spec(
        &kafka,
        &url,
        "path = \"policy.wasm\"\nwatch_interval = \"100ms\"".into(),
    )
    .write(&config_path);
    let (pipeline, switch, _triggers) =
        RunningPipeline::start_swappable(&config_path, support::client_for(&vault_server)).await;

    // Records keep arriving throughout, so the swap lands mid-stream.
    let source = TestKafka::at(&kafka.bootstrap);
    let produce = async {
        for chunk in records("k", 0..RECORDS).chunks(500) {
            source.produce("in", chunk).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let sealing = digest_of(envelope_seal);
    let swap = async {
        pipeline
            .wait_until(WAIT, |m| m.records_out >= RECORDS as u64 / 4)
            .await;
        replace_atomically(&policy_path, envelope_seal);
        eventually("the pipeline switches to envelope-seal", || {
            switch.current().1 == sealing
        })
        .await;
        pipeline.metrics.snapshot().records_out
    };
    let ((), switched_at) = tokio::join!(produce, swap);
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out >= RECORDS as u64)
        .await;
    assert!(
        switched_at < RECORDS as u64,
        "the swap came after the last record ({switched_at} out)"
    );
    assert_eq!(done.dead_lettered, 0);
    assert_eq!(reloads(&switch, "applied"), 1);
    assert_eq!(reloads(&switch, "refused"), 0);
    let info = format!(
        "kafka_transit_policy_info{{name=\"{}\",digest=\"{sealing}\"}} 1",
        policy_path.display()
    );
    assert!(scrape(&switch).contains(&info), "{}", scrape(&switch));

    let out = kafka.read("out", RECORDS, WAIT).await;
    let keys: BTreeSet<&[u8]> = out.iter().filter_map(Message::key).collect();
    assert_eq!(out.len(), RECORDS, "every record, once");
    assert_eq!(keys.len(), RECORDS, "20,000 distinct keys");
    let mut by_partition: BTreeMap<i32, Vec<Protected>> = BTreeMap::new();
    for message in &out {
        by_partition
            .entry(message.partition())
            .or_default()
            .push(protection(message));
    }
    assert_eq!(by_partition.len(), PARTITIONS as usize);
    for (partition, kinds) in &by_partition {
        let switches: Vec<_> = kinds.windows(2).filter(|w| w[0] != w[1]).collect();
        let transit = kinds.iter().filter(|k| **k == Protected::Transit).count();
        eprintln!(
            "partition {partition}: {} records, {transit} vault:, {} envelopes, {} switches",
            kinds.len(),
            kinds.len() - transit,
            switches.len()
        );
        assert_eq!(
            switches,
            [[Protected::Transit, Protected::Envelope]],
            "partition {partition}: exactly one switch, from vault: to envelopes"
        );
    }

    // Refused: garbage bytes, then a valid module that is not a component.
    let not_a_component = wat::parse_str("(module)").unwrap();
    for (refusals, broken) in [(1, b"not wasm at all".to_vec()), (2, not_a_component)] {
        replace_atomically(&policy_path, &broken);
        eventually("the broken file is refused", || {
            reloads(&switch, "refused") == refusals
        })
        .await;
    }
    // And a policy whose init fails, through the pipeline file.
    PipelineSpec {
        policy_config: "",
        ..spec(&kafka, &url, "builtin = \"envelope-seal\"".into())
    }
    .write(&config_path);
    let error = switch.reload_from_config().await.unwrap_err();
    assert!(
        matches!(error, ReloadError::Policy(PolicyError::Init { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("envelope-seal"), "{error}");
    assert_eq!(reloads(&switch, "refused"), 3);
    assert_eq!(reloads(&switch, "applied"), 1);
    assert_eq!(switch.current().1, sealing, "the old policy stays in use");

    kafka.produce("in", &records("late", 0..100)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out >= RECORDS as u64 + 100)
        .await;
    let out = kafka.read("out", RECORDS + 100, WAIT).await;
    let late: Vec<_> = out
        .iter()
        .filter(|m| m.key().is_some_and(|k| k.starts_with(b"late")))
        .collect();
    assert_eq!(late.len(), 100);
    for message in late {
        assert_eq!(protection(message), Protected::Envelope);
    }
    let stopped = pipeline.stop().await.unwrap();
    assert_eq!(stopped.records_out, RECORDS as u64 + 100);
    assert_eq!(stopped.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_switches_to_another_builtin_with_its_own_config_and_the_watcher_follows_a_new_path(
) {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    support::create_key(&vault_server, "transit", "customers", serde_json::json!({})).await;
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("dlq", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("pipeline.toml");
    spec(&kafka, &url, "builtin = \"encrypt-value\"".into()).write(&config_path);
    let (pipeline, switch, _triggers) =
        RunningPipeline::start_swappable(&config_path, support::client_for(&vault_server)).await;
    let json = |prefix: &str, range: std::ops::Range<usize>| -> Vec<TestRecord> {
        range
            .map(|i| {
                let value = format!(r#"{{"name":"person-{i}","city":"city-{i}"}}"#);
                TestRecord::new(&format!("{prefix}{i}"), &value)
            })
            .collect()
    };
    kafka.produce("in", &json("before", 0..300)).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 300).await;

    PipelineSpec {
        policy_config: "key = \"customers\"\nfields = [\"/name\"]",
        ..spec(&kafka, &url, "builtin = \"encrypt-fields\"".into())
    }
    .write(&config_path);
    let loaded = switch.reload_from_config().await.unwrap();
    assert_eq!(loaded.name, "encrypt-fields");
    assert_eq!(
        loaded.digest,
        digest_of(builtin::component("encrypt-fields").unwrap())
    );
    kafka.produce("in", &json("after", 0..300)).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 600).await;
    assert_eq!(switch.current(), ("encrypt-fields".into(), loaded.digest));
    assert_eq!(reloads(&switch, "applied"), 1);

    for message in kafka.read("out", 600, WAIT).await {
        let value = std::str::from_utf8(message.payload().unwrap()).unwrap();
        if message.key().unwrap().starts_with(b"before") {
            assert!(value.starts_with("vault:v1:"), "{value}");
            assert_eq!(policy_header(&message), "encrypt-value");
        } else {
            let doc: serde_json::Value = serde_json::from_str(value).unwrap();
            assert!(
                doc["name"].as_str().unwrap().starts_with("vault:v1:"),
                "{doc}"
            );
            assert!(doc["city"].as_str().unwrap().starts_with("city-"), "{doc}");
            assert_eq!(policy_header(&message), "encrypt-fields");
        }
    }

    // From a built-in to a file: the watcher now follows that file.
    let policy_path = dir.path().join("policy.wasm");
    std::fs::write(&policy_path, builtin::component("passthrough").unwrap()).unwrap();
    spec(
        &kafka,
        &url,
        "path = \"policy.wasm\"\nwatch_interval = \"100ms\"".into(),
    )
    .write(&config_path);
    let loaded = switch.reload_from_config().await.unwrap();
    assert_eq!(loaded.name, policy_path.display().to_string());
    // The pipeline takes it at its next batch, empty or not.
    eventually("the pipeline switches to the file", || {
        switch.current().1 == loaded.digest
    })
    .await;
    let encrypt_value = builtin::component("encrypt-value").unwrap();
    replace_atomically(&policy_path, encrypt_value);
    let encrypting = digest_of(encrypt_value);
    eventually("the watcher loads the new file", || {
        switch.current().1 == encrypting
    })
    .await;
    assert_eq!(reloads(&switch, "applied"), 3);
    assert_eq!(reloads(&switch, "refused"), 0);
    pipeline.stop().await.unwrap();
}
