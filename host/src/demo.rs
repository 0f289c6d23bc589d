//! `kafka-transit demo`: the three classic demonstrations in one process, with no set-up.
//!
//! Starts an in-process Kafka cluster (librdkafka's mock brokers: real Kafka protocol)
//! and an in-process `vault-dev`, then:
//! 1. a Kafka administrator reads customer records in plaintext;
//! 2. with kafka-transit in front (whole-value `encrypt-value` and field-level
//!    `encrypt-fields`), the same administrator sees only ciphertext, while the
//!    authorised consumer (a `decrypt-value` pipeline) gets byte-identical records back;
//! 3. multi-megabyte records go through envelope encryption and back.
//!
//! It fails unless every expectation holds, so it doubles as a test.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rdkafka::message::OwnedMessage;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};

use crate::config::PipelineConfig;
use crate::kafka::read_topic;
use crate::pipeline::Pipeline;
use crate::policy::{PolicyRunner, PolicyRuntime};
use crate::vault::{VaultClient, VaultSettings, VaultToken};

const RAW: &str = "customers.raw";
const PROTECTED: &str = "customers.protected";
const FIELDS: &str = "customers.fields";
const CLEARTEXT: &str = "customers.cleartext";
const LARGE_RAW: &str = "documents.raw";
const LARGE_SEALED: &str = "documents.sealed";
const LARGE_OPENED: &str = "documents.opened";
const KEY: &str = "customers";
const PARTITIONS: i32 = 3;
/// One record per partition: the mock cluster keeps only 5 MiB per partition.
const LARGE_SIZES: [usize; 3] = [1 << 20, 2 << 20, 4 << 20];
const TIMEOUT: Duration = Duration::from_secs(180);

/// What the demo found.
#[derive(Debug)]
pub struct DemoReport {
    pub records: usize,
    pub round_trip_identical: bool,
    pub plaintext_on_protected_topics: usize,
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

/// One pipeline of the demo.
struct Stage {
    from: &'static str,
    to: &'static str,
    policy: &'static str,
    /// Extra `[policy.config]` lines besides the key.
    policy_config: &'static str,
    /// Extra `[pipeline]` lines.
    tuning: &'static str,
}

struct Demo {
    bootstrap: String,
    vault_url: String,
    vault: VaultClient,
}

impl Demo {
    fn config(&self, stage: &Stage) -> anyhow::Result<PipelineConfig> {
        let text = format!(
            r#"
[source]
bootstrap_servers = "{bootstrap}"
topics = ["{from}"]
group_id = "kafka-transit-demo-{to}"

[sink]
bootstrap_servers = "{bootstrap}"
topic = "{to}"
preserve_partitions = true

[vault]
address = "{vault_url}"
token_env = "KAFKA_TRANSIT_DEMO_UNUSED"

[policy]
builtin = "{policy}"
[policy.config]
key = "{KEY}"
{policy_config}

[errors]
on_failure = "stop"

[pipeline]
progress_interval = "5s"
{tuning}
"#,
            bootstrap = self.bootstrap,
            vault_url = self.vault_url,
            from = stage.from,
            to = stage.to,
            policy = stage.policy,
            policy_config = stage.policy_config,
            tuning = stage.tuning,
        );
        Ok(PipelineConfig::parse(&text)?)
    }

    /// Runs the stages side by side until each has handled `records` records.
    async fn run(&self, stages: &[Stage], records: usize) -> anyhow::Result<()> {
        let mut running = Vec::new();
        for stage in stages {
            let config = self.config(stage)?;
            let runtime = PolicyRuntime::from_config(&config.policy, Some(self.vault.clone()))?
                .with_pipeline(crate::policy::pipeline::PipelineView::of(&config)?);
            let runner = PolicyRunner::start(Arc::new(runtime)).await?;
            let pipeline = Pipeline::new(config, runner, self.vault.clone())?;
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
            running.push((stage.policy, tokio::spawn(pipeline.run(done))));
        }
        for (policy, handle) in running {
            tokio::time::timeout(TIMEOUT, handle)
                .await
                .with_context(|| {
                    format!("the {policy} pipeline did not finish within {TIMEOUT:?}")
                })???;
        }
        Ok(())
    }

    async fn read(
        &self,
        topic: &'static str,
        count: usize,
    ) -> anyhow::Result<HashMap<Vec<u8>, Vec<u8>>> {
        let bootstrap = self.bootstrap.clone();
        let messages: Vec<OwnedMessage> = tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, topic, count, Duration::from_secs(30))
        })
        .await??;
        Ok(messages
            .iter()
            .map(|m| {
                (
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                )
            })
            .collect())
    }
}

pub async fn run(records: usize) -> anyhow::Result<DemoReport> {
    ensure!(records > 0, "--records must be at least 1");
    let started = Instant::now();
    let vault_server = vault_dev::Server::start(vault_dev::ServerConfig::default())
        .await
        .context("starting the in-process vault-dev")?;
    let cluster = MockCluster::new(3).context("starting the in-process Kafka cluster")?;
    for topic in [
        RAW,
        PROTECTED,
        FIELDS,
        CLEARTEXT,
        LARGE_RAW,
        LARGE_SEALED,
        LARGE_OPENED,
    ] {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    let settings = VaultSettings::for_token(vault_server.url(), "KAFKA_TRANSIT_DEMO_UNUSED");
    let demo = Demo {
        bootstrap: cluster.bootstrap_servers(),
        vault_url: vault_server.url(),
        vault: VaultClient::with_token(
            &settings,
            VaultToken::new(vault_server.root_token().to_string()),
        )?,
    };
    println!("kafka-transit demo");
    println!(
        "  Kafka: in-process cluster of 3 brokers (librdkafka mock) at {}",
        demo.bootstrap
    );
    println!(
        "  Vault: in-process vault-dev at {} (transit engine at transit/)\n",
        demo.vault_url
    );

    // Demo 1: what the administrator of the cluster can read today.
    let customers = sample_customers(records);
    produce(&demo.bootstrap, RAW, &customers, false).await?;
    let raw = demo.read(RAW, records).await?;
    let sample = customers[0].0.as_bytes();
    heading("Demo 1 — a Kafka administrator reads everything");
    println!(
        "  an application produced {records} customer records to {RAW}; `kcat -C -t {RAW}` shows:"
    );
    println!("  {}\n", show(sample, raw.get(sample)));

    // Demo 2: kafka-transit in front.
    let stages = [
        Stage {
            from: RAW,
            to: PROTECTED,
            policy: "encrypt-value",
            policy_config: "",
            tuning: "",
        },
        Stage {
            from: RAW,
            to: FIELDS,
            policy: "encrypt-fields",
            policy_config: r#"fields = ["/ssn", "/card/number", "/iban", "/email"]"#,
            tuning: "",
        },
        Stage {
            from: PROTECTED,
            to: CLEARTEXT,
            policy: "decrypt-value",
            policy_config: "",
            tuning: "",
        },
    ];
    let phase = Instant::now();
    demo.run(&stages, records).await?;
    let phase = phase.elapsed();
    let (protected, fields, cleartext) = (
        demo.read(PROTECTED, records).await?,
        demo.read(FIELDS, records).await?,
        demo.read(CLEARTEXT, records).await?,
    );
    heading("Demo 2 — with kafka-transit in front, the administrator sees ciphertext");
    println!("  {RAW} --[encrypt-value]--> {PROTECTED}   (whole value, Vault key \"{KEY}\")");
    println!("  {RAW} --[encrypt-fields]--> {FIELDS}   (only ssn, card number, iban, email)");
    println!("  {PROTECTED} --[decrypt-value]--> {CLEARTEXT}   (the authorised consumer)\n");
    println!(
        "  administrator, {PROTECTED}:\n  {}",
        show(sample, protected.get(sample))
    );
    println!(
        "  administrator, {FIELDS} (ciphertexts shortened here):\n  {}",
        show(
            sample,
            fields
                .get(sample)
                .map(|v| abbreviate_ciphertexts(v))
                .as_ref()
        )
    );
    println!(
        "  authorised consumer, {CLEARTEXT}:\n  {}",
        show(sample, cleartext.get(sample))
    );
    let identical = customers
        .iter()
        .filter(|(key, value)| cleartext.get(key.as_bytes()) == Some(value))
        .count();
    let leaks = customers
        .iter()
        .filter(|(key, plain)| {
            let key = key.as_bytes();
            let whole = protected
                .get(key)
                .is_none_or(|v| !v.starts_with(b"vault:v") || reveals(v, plain));
            let by_field = fields.get(key).is_none_or(|v| reveals(v, plain));
            whole || by_field
        })
        .count();
    println!(
        "  {identical}/{records} records byte-identical after the round trip; \
         records showing personal data to the administrator: {leaks}; {:.2}s\n",
        phase.as_secs_f64()
    );

    // Demo 3: large records through envelope encryption.
    heading("Demo 3 — large records, envelope encryption");
    let documents: Vec<(String, Vec<u8>)> = LARGE_SIZES
        .iter()
        .map(|&size| {
            let mut value = format!("CONFIDENTIAL document of {} MiB. ", size >> 20).into_bytes();
            while value.len() < size {
                value.extend_from_slice(b"Quarterly figures, salaries and contracts. ");
            }
            value.truncate(size);
            (format!("document-{}mib", size >> 20), value)
        })
        .collect();
    produce(&demo.bootstrap, LARGE_RAW, &documents, true).await?;
    let large = "max_record_bytes = 5242880\nmax_batch_bytes = 5242880";
    let requests_before = vault_server.stats().requests;
    let phase = Instant::now();
    demo.run(
        &[
            Stage {
                from: LARGE_RAW,
                to: LARGE_SEALED,
                policy: "envelope-seal",
                policy_config: "",
                tuning: large,
            },
            Stage {
                from: LARGE_SEALED,
                to: LARGE_OPENED,
                policy: "envelope-open",
                policy_config: "",
                tuning: large,
            },
        ],
        documents.len(),
    )
    .await?;
    let phase = phase.elapsed();
    let (sealed, opened) = (
        demo.read(LARGE_SEALED, documents.len()).await?,
        demo.read(LARGE_OPENED, documents.len()).await?,
    );
    println!(
        "  {LARGE_RAW} --[envelope-seal]--> {LARGE_SEALED} --[envelope-open]--> {LARGE_OPENED}"
    );
    println!("  settings: pipeline.max_record_bytes = pipeline.max_batch_bytes = 5 MiB (client limits follow)");
    let mut large_identical = 0;
    for (key, value) in &documents {
        let sealed_value = sealed.get(key.as_bytes());
        let same = opened.get(key.as_bytes()) == Some(value);
        let hidden = sealed_value.is_some_and(|v| !contains(v, b"CONFIDENTIAL"));
        large_identical += usize::from(same && hidden);
        println!(
            "  {key:<16} {:>8} bytes → sealed {:>8} bytes, administrator sees {} → opened {}",
            value.len(),
            sealed_value.map_or(0, Vec::len),
            sealed_value.map_or_else(|| "nothing".to_string(), |v| hex_prefix(v)),
            if same { "identical" } else { "DIFFERENT" }
        );
    }
    let large_requests = vault_server.stats().requests - requests_before;
    println!(
        "  {large_identical}/{} documents identical and hidden; {large_requests} Vault requests; {:.2}s\n",
        documents.len(),
        phase.as_secs_f64()
    );

    let report = DemoReport {
        records,
        round_trip_identical: identical == records && large_identical == documents.len(),
        plaintext_on_protected_topics: leaks,
        vault_requests: vault_server.stats().requests,
        elapsed: started.elapsed(),
    };
    let bytes: usize = customers
        .iter()
        .chain(&documents)
        .map(|(_, v)| v.len())
        .sum();
    println!(
        "summary: records={} bytes={bytes} vault_requests={} time={:.2}s result={}",
        records + documents.len(),
        report.vault_requests,
        report.elapsed.as_secs_f64(),
        if report.round_trip_identical && leaks == 0 {
            "ok"
        } else {
            "FAILED"
        }
    );
    vault_server.shutdown().await;
    ensure!(
        leaks == 0,
        "{leaks} records showed personal data to the administrator"
    );
    Ok(report)
}

fn heading(title: &str) {
    println!(
        "── {title} {}",
        "─".repeat(78usize.saturating_sub(title.chars().count()))
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whether `protected` shows any personal field of `plaintext` in clear.
fn reveals(protected: &[u8], plaintext: &[u8]) -> bool {
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(plaintext) else {
        return false;
    };
    let secrets = [
        &record["ssn"],
        &record["card"]["number"],
        &record["iban"],
        &record["email"],
    ];
    secrets
        .iter()
        .filter_map(|value| value.as_str())
        .any(|secret| contains(protected, secret.as_bytes()))
}

fn show(key: &[u8], value: Option<&Vec<u8>>) -> String {
    const WIDTH: usize = 170;
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

/// The JSON record with each `vault:v...` string cut short, so the readable fields
/// stand out next to the encrypted ones.
fn abbreviate_ciphertexts(value: &[u8]) -> Vec<u8> {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) if text.starts_with("vault:v") => {
                text.truncate(14);
                text.push('…');
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(members) => members.values_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(mut json) => {
            walk(&mut json);
            serde_json::to_vec(&json).unwrap_or_else(|_| value.to_vec())
        }
        Err(_) => value.to_vec(),
    }
}

fn hex_prefix(value: &[u8]) -> String {
    let shown: Vec<String> = value.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{} …", shown.join(" "))
}

/// Produces records (to partition i when `spread`, else by key) and waits for them.
async fn produce(
    bootstrap: &str,
    topic: &str,
    records: &[(String, Vec<u8>)],
    spread: bool,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10485760")
        .create()?;
    let mut deliveries = Vec::with_capacity(records.len());
    for (index, (key, value)) in records.iter().enumerate() {
        let mut record = FutureRecord::to(topic).key(key).payload(value);
        if spread {
            record = record.partition(index as i32 % PARTITIONS);
        }
        deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
    }
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
