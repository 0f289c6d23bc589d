//! Throughput of the policies, with and without Kafka, against the passthrough baseline
//! measured in the same run.
//!
//!     cargo bench -p kafka-transit --bench pipeline
//!     cargo bench -p kafka-transit --bench pipeline -- --records 20000 --value-bytes 1024
//!     cargo bench -p kafka-transit --bench pipeline -- --kafka 127.0.0.1:9092 --rounds 5
//!     cargo bench -p kafka-transit --bench pipeline -- --transaction-interval-ms 1000
//!
//! Measurements per policy, all on one machine with an in-process vault-dev:
//! - "policy": batches of 500 records straight through the wasm policy (and Vault),
//!   no Kafka: the host's per-record cost.
//! - "pipeline" (at-least-once) and "pipeline-eos" (`delivery = "exactly-once"`):
//!   records consumed from and produced to librdkafka's in-process mock cluster (real
//!   protocol), or the Apache Kafka cluster given with `--kafka`, from the first record
//!   consumed to the last one out. Each is run `--rounds` times (default 3), the two
//!   modes interleaved, and the median is reported.

#[path = "../tests/support/kafka.rs"]
#[allow(dead_code)]
mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};
use kafka_transit::config::{DeliveryGuarantee, PolicySource};
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
    /// An Apache Kafka bootstrap address instead of the mock cluster.
    kafka: Option<String>,
    rounds: usize,
    /// `pipeline.transaction_interval` of the exactly-once rows.
    transaction_interval: Option<Duration>,
}

fn options() -> Options {
    let mut options = Options {
        records: 24_000,
        value_bytes: 1024,
        kafka: None,
        rounds: 3,
        transaction_interval: None,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--records" => options.records = pair[1].parse().expect("--records N"),
            "--value-bytes" => options.value_bytes = pair[1].parse().expect("--value-bytes N"),
            "--kafka" => options.kafka = Some(pair[1].clone()),
            "--rounds" => options.rounds = pair[1].parse().expect("--rounds N"),
            "--transaction-interval-ms" => {
                let ms = pair[1].parse().expect("--transaction-interval-ms N");
                options.transaction_interval = Some(Duration::from_millis(ms));
            }
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

/// One pipeline run from `input` to a sink topic of its own.
struct Run<'a> {
    case: &'a Case,
    delivery: DeliveryGuarantee,
    input: &'a str,
    sink: String,
}

fn measure(delivery: DeliveryGuarantee) -> &'static str {
    match delivery {
        DeliveryGuarantee::AtLeastOnce => "pipeline",
        DeliveryGuarantee::ExactlyOnce => "pipeline-eos",
    }
}

async fn through_kafka(
    run: &Run<'_>,
    options: &Options,
    kafka: &TestKafka,
    vault: &VaultClient,
    server: &vault_dev::RunningServer,
) -> Row {
    let case = run.case;
    let sink = &run.sink;
    let spec = PipelineSpec {
        source_bootstrap: &kafka.bootstrap,
        sink_bootstrap: &kafka.bootstrap,
        source_topic: run.input,
        sink_topic: sink,
        group: sink,
        policy: format!("builtin = \"{}\"", case.policy),
        policy_config: case.toml,
        errors: "on_failure = \"stop\"",
        vault_address: &server.url(),
    };
    let mut config = spec.config();
    config.pipeline.delivery = run.delivery;
    if let Some(interval) = options.transaction_interval {
        config.pipeline.transaction_interval = interval;
    }
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
        what: measure(run.delivery),
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

    let input = match &options.kafka {
        None => "in".to_string(),
        Some(_) => format!("bench-in-{}", std::process::id()),
    };
    let mut runs = Vec::new();
    for round in 0..options.rounds {
        for case in CASES {
            for delivery in [
                DeliveryGuarantee::AtLeastOnce,
                DeliveryGuarantee::ExactlyOnce,
            ] {
                let sink = format!("{input}-{}-{}-{round}", case.policy, measure(delivery));
                runs.push(Run {
                    case,
                    delivery,
                    input: &input,
                    sink,
                });
            }
        }
    }
    let mut topics: Vec<(&str, i32)> = vec![(&input, PARTITIONS)];
    topics.extend(runs.iter().map(|run| (run.sink.as_str(), PARTITIONS)));
    let kafka = match &options.kafka {
        None => {
            // The mock cluster cannot create topics through the admin API.
            topics.push(("kafka-transit-offsets", 1));
            TestKafka::start(&topics)
        }
        Some(bootstrap) => {
            let kafka = TestKafka::at(bootstrap);
            kafka.create_topics(&topics, &[]).await;
            kafka
        }
    };
    let where_ = if kafka.is_mock() {
        "librdkafka's in-process mock cluster".to_string()
    } else {
        format!("Apache Kafka at {}", kafka.bootstrap)
    };
    eprintln!(
        "producing {} records of {} bytes to {where_}...",
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
        kafka.produce(&input, &records).await;
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
    let mut pipeline_rows: Vec<Row> = Vec::new();
    for (n, run) in runs.iter().enumerate() {
        eprintln!(
            "run {}/{}: {} {}",
            n + 1,
            runs.len(),
            run.case.policy,
            measure(run.delivery)
        );
        pipeline_rows.push(through_kafka(run, &options, &kafka, &vault, &server).await);
    }
    for case in CASES {
        for delivery in [
            DeliveryGuarantee::AtLeastOnce,
            DeliveryGuarantee::ExactlyOnce,
        ] {
            let what = measure(delivery);
            let mut same: Vec<&Row> = pipeline_rows
                .iter()
                .filter(|r| r.policy == case.policy && r.what == what)
                .collect();
            same.sort_by(|a, b| a.records_per_second.total_cmp(&b.records_per_second));
            let median = same[same.len() / 2];
            rows.push(Row {
                policy: median.policy,
                what,
                records_per_second: median.records_per_second,
                megabytes_per_second: median.megabytes_per_second,
                vault_requests: median.vault_requests,
            });
        }
    }

    println!(
        "\n{} records of {} bytes, batches of up to 500, one machine: in-process vault-dev; \
         pipeline rows through {where_}, median of {} rounds",
        options.records, options.value_bytes, options.rounds
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
    println!(
        "\nexactly-once (transaction_interval {}) against at-least-once, same policy, same run:",
        options
            .transaction_interval
            .map_or_else(|| "default".to_string(), |i| format!("{i:?}"))
    );
    for case in CASES {
        let rate = |what| {
            rows.iter()
                .find(|r| r.policy == case.policy && r.what == what)
                .map_or(f64::NAN, |r| r.records_per_second)
        };
        println!(
            "{:<15} {:>6.1}%",
            case.policy,
            100.0 * rate("pipeline-eos") / rate("pipeline")
        );
    }
    server.shutdown().await;
}
