//! `kafka-transit demo`: the whole story in one process, with no set-up.
//!
//! Starts an in-process Kafka cluster (librdkafka's mock brokers: real Kafka protocol)
//! and an in-process `vault-dev`, produces customer records full of personal data, runs
//! an encrypt pipeline (raw → protected) and a decrypt pipeline (protected → cleartext)
//! side by side, then shows what a Kafka administrator sees on each topic next to what
//! the authorised consumer gets, and checks that the round trip is byte-identical.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};

use crate::config::PipelineConfig;
use crate::kafka::read_topic;
use crate::pipeline::Pipeline;
use crate::policy::{Limits, PolicyRunner, PolicyRuntime};
use crate::vault::{VaultClient, VaultSettings, VaultToken};

const RAW: &str = "customers.raw";
const PROTECTED: &str = "customers.protected";
const CLEARTEXT: &str = "customers.cleartext";
const KEY: &str = "customers";
const PARTITIONS: i32 = 3;

/// What the demo found.
#[derive(Debug)]
pub struct DemoReport {
    pub records: usize,
    pub round_trip_identical: bool,
    pub plaintext_on_protected_topic: usize,
    pub vault_requests: u64,
    pub elapsed: Duration,
}

/// Sample customer records: deterministic, and full of what must not leak.
pub fn sample_customers(count: usize) -> Vec<(String, Vec<u8>)> {
    const FIRST: &[&str] = &[
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
    ];
    const LAST: &[&str] = &[
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
    ];
    (0..count)
        .map(|i| {
            let first = FIRST[i % FIRST.len()];
            let last = LAST[(i / FIRST.len()) % LAST.len()];
            let value = serde_json::json!({
                "id": i,
                "name": format!("{first} {last}"),
                "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), i),
                "ssn": format!("{:03}-{:02}-{:04}", 100 + i % 800, 10 + i % 89, 1000 + i % 9000),
                "card": {"number": format!("4111{:012}", i * 7919), "exp": "12/29"},
                "iban": format!("DE89370400440532{:06}", i),
            });
            (format!("customer-{i:05}"), serde_json::to_vec(&value).expect("JSON"))
        })
        .collect()
}

fn pipeline_config(
    bootstrap: &str,
    vault_url: &str,
    from: &str,
    to: &str,
    policy: &str,
) -> anyhow::Result<PipelineConfig> {
    let text = format!(
        r#"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{from}"]
group_id = "kafka-transit-demo-{policy}"

[sink]
bootstrap_servers = "{bootstrap}"
topic = "{to}"

[vault]
address = "{vault_url}"
token_env = "KAFKA_TRANSIT_DEMO_UNUSED"

[policy]
builtin = "{policy}"
[policy.config]
key = "{KEY}"

[errors]
on_failure = "stop"

[pipeline]
progress_interval = "5s"
"#
    );
    Ok(PipelineConfig::parse(&text)?)
}

/// Starts a pipeline that stops once it has handled `records` records.
async fn spawn_pipeline(
    config: PipelineConfig,
    vault: VaultClient,
    records: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let source = config.policy.source()?;
    let runtime = PolicyRuntime::load(
        &source,
        config.policy.config_json(),
        Limits::default(),
        Some(vault.clone()),
    )?;
    let runner = PolicyRunner::start(Arc::new(runtime)).await?;
    let pipeline = Pipeline::new(config, runner, vault)?;
    let metrics = pipeline.metrics();
    let done = async move {
        loop {
            let now = metrics.snapshot();
            if (now.records_out + now.dead_lettered) as usize >= records
                && now.committed_batches > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    Ok(tokio::spawn(async move {
        pipeline.run(done).await?;
        Ok(())
    }))
}

pub async fn run(records: usize) -> anyhow::Result<DemoReport> {
    ensure!(records > 0, "--records must be at least 1");
    let started = Instant::now();
    let vault_server = vault_dev::Server::start(vault_dev::ServerConfig::default())
        .await
        .context("starting the in-process vault-dev")?;
    let cluster = MockCluster::new(3).context("starting the in-process Kafka cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    for topic in [RAW, PROTECTED, CLEARTEXT] {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    println!("kafka-transit demo");
    println!("  Kafka: in-process cluster of 3 brokers at {bootstrap}");
    println!(
        "  Vault: in-process vault-dev at {} (transit mounted at transit/)",
        vault_server.url()
    );

    let customers = sample_customers(records);
    produce(&bootstrap, RAW, &customers).await?;
    println!("  produced {records} customer records to {RAW}\n");

    let settings = VaultSettings::for_token(vault_server.url(), "KAFKA_TRANSIT_DEMO_UNUSED");
    let vault = VaultClient::with_token(
        &settings,
        VaultToken::new(vault_server.root_token().to_string()),
    )?;
    let encrypt = spawn_pipeline(
        pipeline_config(
            &bootstrap,
            &vault_server.url(),
            RAW,
            PROTECTED,
            "encrypt-value",
        )?,
        vault.clone(),
        records,
    )
    .await?;
    let decrypt = spawn_pipeline(
        pipeline_config(
            &bootstrap,
            &vault_server.url(),
            PROTECTED,
            CLEARTEXT,
            "decrypt-value",
        )?,
        vault.clone(),
        records,
    )
    .await?;
    println!("  encrypt pipeline: {RAW} --[encrypt-value, Vault key \"{KEY}\"]--> {PROTECTED}");
    println!("  decrypt pipeline: {PROTECTED} --[decrypt-value]--> {CLEARTEXT}\n");
    let timeout = Duration::from_secs(120);
    for (name, handle) in [("encrypt", encrypt), ("decrypt", decrypt)] {
        tokio::time::timeout(timeout, handle)
            .await
            .with_context(|| {
                format!("the {name} pipeline did not finish within {timeout:?}")
            })???;
    }

    let read = |topic: &'static str| {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, topic, records, Duration::from_secs(30))
        })
    };
    let (raw, protected, cleartext) = (
        read(RAW).await??,
        read(PROTECTED).await??,
        read(CLEARTEXT).await??,
    );

    let by_key = |messages: &[rdkafka::message::OwnedMessage]| -> HashMap<Vec<u8>, Vec<u8>> {
        messages
            .iter()
            .map(|m| {
                (
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                )
            })
            .collect()
    };
    let (raw_values, protected_values, clear_values) =
        (by_key(&raw), by_key(&protected), by_key(&cleartext));

    let sample_key = customers[0].0.as_bytes();
    println!("What a Kafka administrator sees on {RAW} (kcat -C -t {RAW}):");
    println!("  {}", show(sample_key, raw_values.get(sample_key)));
    println!("What the same administrator sees on {PROTECTED}:");
    println!("  {}", show(sample_key, protected_values.get(sample_key)));
    println!("What the authorised consumer gets on {CLEARTEXT}:");
    println!("  {}\n", show(sample_key, clear_values.get(sample_key)));

    let identical = customers
        .iter()
        .filter(|(key, value)| clear_values.get(key.as_bytes()) == Some(value))
        .count();
    let leaks = protected_values
        .values()
        .filter(|value| {
            customers
                .iter()
                .take(50)
                .any(|(_, plain)| contains_any_field(value, plain))
                || !value.starts_with(b"vault:v")
        })
        .count();
    let stats = vault_server.stats();
    let report = DemoReport {
        records,
        round_trip_identical: identical == records && raw_values.len() == records,
        plaintext_on_protected_topic: leaks,
        vault_requests: stats.requests,
        elapsed: started.elapsed(),
    };
    let bytes: usize = customers.iter().map(|(_, v)| v.len()).sum();
    println!(
        "round trip: {identical}/{records} records byte-identical; records on {PROTECTED} that are not Vault ciphertext: {leaks}"
    );
    println!(
        "summary: records={records} bytes={bytes} vault_requests={} time={:.2}s",
        report.vault_requests,
        report.elapsed.as_secs_f64()
    );
    vault_server.shutdown().await;
    ensure!(
        leaks == 0,
        "{leaks} records on {PROTECTED} are not ciphertext"
    );
    Ok(report)
}

/// Whether `protected` shows any personal field of `plaintext` in clear.
fn contains_any_field(protected: &[u8], plaintext: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(fields)) =
        serde_json::from_slice::<serde_json::Value>(plaintext)
    else {
        return false;
    };
    let text = String::from_utf8_lossy(protected);
    ["name", "email", "ssn", "iban"]
        .iter()
        .filter_map(|field| fields.get(*field).and_then(|v| v.as_str()))
        .any(|secret| text.contains(secret))
}

fn show(key: &[u8], value: Option<&Vec<u8>>) -> String {
    const WIDTH: usize = 110;
    let value = value.map_or_else(
        || "<missing>".to_string(),
        |v| String::from_utf8_lossy(v).into_owned(),
    );
    let value = if value.chars().count() > WIDTH {
        format!(
            "{}… ({} bytes)",
            value.chars().take(WIDTH).collect::<String>(),
            value.len()
        )
    } else {
        value
    };
    format!("{} │ {value}", String::from_utf8_lossy(key))
}

async fn produce(
    bootstrap: &str,
    topic: &str,
    records: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, value)| {
            producer
                .send_result(FutureRecord::to(topic).key(key).payload(value))
                .map_err(|(error, _)| error)
        })
        .collect::<Result<_, _>>()?;
    for delivery in deliveries {
        delivery
            .await
            .context("producer closed")?
            .map_err(|(error, _)| error)
            .context("producing sample records")?;
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}
