//! Throughput of the policies, with and without Kafka, against the passthrough baseline
//! measured in the same run.
//!
//!     cargo bench -p kafka-transit --bench pipeline
//!     cargo bench -p kafka-transit --bench pipeline -- --records 20000 --value-bytes 1024
//!
//! Two measurements per policy, both on one machine with an in-process vault-dev:
//! - "policy": batches of 500 records straight through the wasm policy (and Vault),
//!   no Kafka: the host's per-record cost.
//! - "pipeline": records consumed from and produced to librdkafka's in-process mock
//!   cluster (real protocol), from the first record consumed to the last acknowledged.

#[path = "../tests/support/kafka.rs"]
#[allow(dead_code)]
mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};
use kafka_transit::config::PolicySource;
use kafka_transit::policy::{Limits, PolicyRunner, PolicyRuntime, SourceRecord};
use kafka_transit::vault::{VaultClient, VaultSettings, VaultToken};

/// A policy and its configuration, as `[policy.config]` TOML and as the JSON `init` gets.
struct Case {
    policy: &'static str,
    toml: &'static str,
    json: &'static str,
}

const CASES: &[Case] = &[
    Case {
        policy: "passthrough",
        toml: "",
        json: "{}",
    },
    Case {
        policy: "encrypt-value",
        toml: "key = \"bench\"",
        json: r#"{"key":"bench"}"#,
    },
    Case {
        policy: "encrypt-fields",
        toml: "key = \"bench\"\nfields = [\"/payload\"]",
        json: r#"{"key":"bench","fields":["/payload"]}"#,
    },
    Case {
        policy: "envelope-seal",
        toml: "key = \"bench\"",
        json: r#"{"key":"bench"}"#,
    },
];
const PARTITIONS: i32 = 12;

struct Options {
    records: usize,
    value_bytes: usize,
}

fn options() -> Options {
    let mut options = Options {
        records: 24_000,
        value_bytes: 1024,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--records" => options.records = pair[1].parse().expect("--records N"),
            "--value-bytes" => options.value_bytes = pair[1].parse().expect("--value-bytes N"),
            _ => {}
        }
    }
    options
}

fn value(i: usize, size: usize) -> Vec<u8> {
    let mut value = format!("{{\"id\":{i},\"payload\":\"").into_bytes();
    value.resize(size.saturating_sub(2), b'x');
    value.extend_from_slice(b"\"}");
    value
}

struct Row {
    policy: &'static str,
    what: &'static str,
    records_per_second: f64,
    megabytes_per_second: f64,
    vault_requests: u64,
}

/// Batches straight through the policy: `records` values of `value_bytes` each.
async fn policy_only(
    case: &Case,
    records: usize,
    value_bytes: usize,
    vault: &VaultClient,
    server: &vault_dev::RunningServer,
) -> Row {
    let runtime = PolicyRuntime::load(
        &PolicySource::Builtin(case.policy.into()),
        case.json.into(),
        Limits::default(),
        Some(vault.clone()),
    )
    .unwrap();
    let mut runner = PolicyRunner::start(Arc::new(runtime)).await.unwrap();
    let batch_size = (16 * 1024 * 1024 / value_bytes).clamp(4, 500);
    let batch: Vec<SourceRecord> = (0..batch_size)
        .map(|i| SourceRecord {
            topic: "in".into(),
            partition: 0,
            offset: i as i64,
            timestamp: None,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(value(i, value_bytes)),
            headers: vec![],
        })
        .collect();
    runner.transform(&batch).await.unwrap(); // warm-up
    let requests_before = server.stats().requests;
    let rounds = (records / batch.len()).max(1);
    let started = Instant::now();
    for _ in 0..rounds {
        let results = runner.transform(&batch).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = (rounds * batch.len()) as f64;
    Row {
        policy: case.policy,
        what: if value_bytes >= 1 << 20 {
            "policy-1MiB"
        } else {
            "policy"
        },
        records_per_second: records / seconds,
        megabytes_per_second: records * value_bytes as f64 / seconds / 1e6,
        vault_requests: server.stats().requests - requests_before,
    }
}

async fn through_kafka(
    case: &Case,
    options: &Options,
    kafka: &TestKafka,
    vault: &VaultClient,
    server: &vault_dev::RunningServer,
) -> Row {
    let sink = format!("out-{}", case.policy);
    let spec = PipelineSpec {
        source_bootstrap: &kafka.bootstrap,
        sink_bootstrap: &kafka.bootstrap,
        source_topic: "in",
        sink_topic: &sink,
        group: &sink,
        policy: format!("builtin = \"{}\"", case.policy),
        policy_config: case.toml,
        errors: "on_failure = \"stop\"",
        vault_address: &server.url(),
    };
    let mut config = spec.config();
    config.pipeline.batch_size = 500;
    config.pipeline.progress_interval = Duration::from_secs(3600);
    let requests_before = server.stats().requests;
    let pipeline = RunningPipeline::start(config, vault.clone()).await;
    // Group join takes seconds on the mock cluster: time from the first record in.
    let first = pipeline
        .wait_until(Duration::from_secs(60), |m| m.records_in > 0)
        .await;
    let started = Instant::now();
    let last = pipeline
        .wait_until(Duration::from_secs(600), |m| {
            m.records_out as usize >= options.records
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    pipeline.stop().await.unwrap();
    let records = (last.records_out - first.records_out.min(last.records_out)) as f64;
    let records = records.max(1.0);
    Row {
        policy: case.policy,
        what: "pipeline",
        records_per_second: records / seconds,
        megabytes_per_second: records * options.value_bytes as f64 / seconds / 1e6,
        vault_requests: server.stats().requests - requests_before,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let server = vault_dev::Server::start(vault_dev::ServerConfig::default())
        .await
        .unwrap();
    let settings = VaultSettings::for_token(server.url(), "KAFKA_TRANSIT_BENCH_UNUSED");
    let vault =
        VaultClient::with_token(&settings, VaultToken::new(server.root_token().to_string()))
            .unwrap();

    let mut topics: Vec<(String, i32)> = vec![("in".to_string(), PARTITIONS)];
    topics.extend(
        CASES
            .iter()
            .map(|c| (format!("out-{}", c.policy), PARTITIONS)),
    );
    let topic_refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let kafka = TestKafka::start(&topic_refs);
    eprintln!(
        "producing {} records of {} bytes to the mock cluster...",
        options.records, options.value_bytes
    );
    for chunk in (0..options.records).collect::<Vec<_>>().chunks(5000) {
        let records: Vec<TestRecord> = chunk
            .iter()
            .map(|&i| TestRecord {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(value(i, options.value_bytes)),
                headers: vec![],
                timestamp: None,
            })
            .collect();
        kafka.produce("in", &records).await;
    }

    let mut rows = Vec::new();
    for case in CASES {
        rows.push(policy_only(case, options.records, options.value_bytes, &vault, &server).await);
    }
    // Large records: envelope encryption against the baseline, 1 MiB values.
    for case in CASES
        .iter()
        .filter(|c| matches!(c.policy, "passthrough" | "envelope-seal"))
    {
        rows.push(policy_only(case, 512, 1 << 20, &vault, &server).await);
    }
    for case in CASES {
        rows.push(through_kafka(case, &options, &kafka, &vault, &server).await);
    }

    println!(
        "\n{} records of {} bytes, batches of up to 500, one machine: in-process vault-dev; \
         pipeline rows through librdkafka's in-process mock cluster",
        options.records, options.value_bytes
    );
    println!(
        "{:<15} {:<12} {:>12} {:>9} {:>15} {:>12}",
        "policy", "measure", "records/s", "MB/s", "vs passthrough", "vault reqs"
    );
    for row in &rows {
        let baseline = rows
            .iter()
            .find(|r| r.policy == "passthrough" && r.what == row.what)
            .map_or(1.0, |r| r.records_per_second);
        println!(
            "{:<15} {:<12} {:>12.0} {:>9.1} {:>14.1}% {:>12}",
            row.policy,
            row.what,
            row.records_per_second,
            row.megabytes_per_second,
            100.0 * row.records_per_second / baseline,
            row.vault_requests
        );
    }
    server.shutdown().await;
}
