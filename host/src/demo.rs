//! `kafka-transit demo`: the three classic demonstrations in one process, with no set-up.
//!
//! Starts an in-process Kafka cluster (librdkafka's mock brokers: real Kafka protocol)
//! and an in-process `vault-dev`, then:
//! 1. a Kafka administrator reads customer records in plaintext: values, and keys (the
//!    customer's e-mail) and headers (`user-id`, `tenant`) full of personal data too;
//! 2. with kafka-transit in front (whole-value `encrypt-value` with record keys
//!    encrypted, headers sealed and ciphertexts bound to their stream and key, and
//!    field-level `encrypt-fields`), the same administrator sees only ciphertext, while
//!    the authorised consumer (a `decrypt-value` pipeline) gets byte-identical records
//!    back (key, value, headers); a ciphertext the sink's operator moves under another
//!    record's key is dead-lettered, not opened;
//! 3. multi-megabyte records go through envelope encryption and back.
//!
//! It fails unless every expectation holds, so it doubles as a test.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};

use crate::config::PipelineConfig;
use crate::kafka::read_topic;
use crate::metrics::Snapshot;
use crate::pipeline::{dead_letter_headers, Pipeline};
use crate::policy::{PolicyRunner, PolicyRuntime};
use crate::vault::{VaultClient, VaultSettings, VaultToken};

const RAW: &str = "customers.raw";
const PROTECTED: &str = "customers.protected";
const FIELDS: &str = "customers.fields";
const CLEARTEXT: &str = "customers.cleartext";
const DEAD_LETTERS: &str = "customers.protected.dlq";
const LARGE_RAW: &str = "documents.raw";
const LARGE_SEALED: &str = "documents.sealed";
const LARGE_OPENED: &str = "documents.opened";
const KEY: &str = "customers";
/// The transit key of record keys: convergent, so that one customer's records keep one
/// key on the sink (partitioning, per-key order and compaction keep working).
const RECORD_KEYS_KEY: &str = "customer-keys";
const PARTITIONS: i32 = 3;
/// One record per partition: the mock cluster keeps only 5 MiB per partition.
const LARGE_SIZES: [usize; 3] = [1 << 20, 2 << 20, 4 << 20];
const TIMEOUT: Duration = Duration::from_secs(180);
const TENANTS: [&str; 3] = ["tenant-northwind", "tenant-contoso", "tenant-globex"];

/// Format 3 on the whole-value topic: the key, the headers but `traceparent`, and the
/// value are protected, and each ciphertext is bound to its stream and record key.
const PROTECT_ALL: &str = r#"record_keys = "encrypt"
record_keys_key = "customer-keys"
headers = "seal"
keep_headers = ["traceparent"]
bind = ["stream", "key"]"#;

/// What the demo found.
#[derive(Debug)]
pub struct DemoReport {
    pub records: usize,
    pub round_trip_identical: bool,
    pub plaintext_on_protected_topics: usize,
    /// The ciphertext moved under another record's key was dead-lettered for failing
    /// authentication, and nothing else was.
    pub moved_ciphertext_refused: bool,
    pub vault_requests: u64,
    pub elapsed: Duration,
}

/// A record as produced or read back: key, value and headers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record read from a topic, and where it was.
struct Read {
    partition: i32,
    offset: i64,
    record: DemoRecord,
}

impl DemoRecord {
    fn of(message: &OwnedMessage) -> DemoRecord {
        DemoRecord {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Sample customer records: deterministic, and full of what must not leak. The key is
/// the customer's e-mail; the headers carry a trace context (not personal: it stays in
/// clear), the customer's user id and tenant.
pub fn sample_customers(count: usize) -> Vec<DemoRecord> {
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
            let email = format!(
                "{}.{}{i}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            );
            let value = serde_json::json!({
                "id": i,
                "name": format!("{first} {last}"),
                "email": email,
                "ssn": format!("{:03}-{:02}-{:04}", 100 + i % 800, 10 + i % 89, 1000 + i % 9000),
                "card": {"number": format!("4111{:012}", i * 7919), "exp": "12/29"},
                "iban": format!("DE89370400440532{:06}", i),
            });
            // A W3C trace context, different per record (any fixed mixing will do).
            let trace = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            let headers = [
                (
                    "traceparent",
                    format!("00-{trace:032x}-{:016x}-01", trace as u64 >> 3),
                ),
                ("user-id", format!("user-{i:06}")),
                ("tenant", TENANTS[i % TENANTS.len()].to_string()),
            ];
            DemoRecord {
                key: Some(email.into_bytes()),
                value: Some(serde_json::to_vec(&value).expect("JSON")),
                headers: headers
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), Some(value.into_bytes())))
                    .collect(),
            }
        })
        .collect()
}

/// The personal data of the sample customers (e-mails, user ids, tenants, SSNs, card
/// numbers, IBANs), looked for in any bytes in one pass: a table of every secret's
/// first [`PersonalData::PREFIX`] bytes, then a full comparison on a hit.
struct PersonalData {
    secrets: Vec<Vec<u8>>,
    by_prefix: HashMap<[u8; PersonalData::PREFIX], Vec<usize>>,
}

impl PersonalData {
    /// Every secret is at least this long (and none can occur in base64 by chance:
    /// each has a `-`, `@` or 16 digits).
    const PREFIX: usize = 8;

    fn of(customers: &[DemoRecord]) -> PersonalData {
        let mut unique = HashSet::new();
        for customer in customers {
            unique.extend(customer.key.clone());
            for name in ["user-id", "tenant"] {
                unique.extend(customer.header(name).map(<[u8]>::to_vec));
            }
            let value = customer.value.as_deref().unwrap_or_default();
            if let Ok(record) = serde_json::from_slice::<serde_json::Value>(value) {
                for field in [&record["ssn"], &record["card"]["number"], &record["iban"]] {
                    unique.extend(field.as_str().map(|s| s.as_bytes().to_vec()));
                }
            }
        }
        let secrets: Vec<Vec<u8>> = unique.into_iter().collect();
        let mut by_prefix: HashMap<[u8; PersonalData::PREFIX], Vec<usize>> = HashMap::new();
        for (index, secret) in secrets.iter().enumerate() {
            assert!(
                secret.len() >= Self::PREFIX,
                "sample secrets are long enough"
            );
            let prefix = secret[..Self::PREFIX].try_into().expect("PREFIX bytes");
            by_prefix.entry(prefix).or_default().push(index);
        }
        PersonalData { secrets, by_prefix }
    }

    fn found_in(&self, bytes: &[u8]) -> bool {
        bytes.windows(Self::PREFIX).enumerate().any(|(at, window)| {
            self.by_prefix.get(window).is_some_and(|candidates| {
                candidates
                    .iter()
                    .any(|&index| bytes[at..].starts_with(&self.secrets[index]))
            })
        })
    }

    /// Whether the administrator sees personal data in this record: in its key, its
    /// value, or (with `headers`) any header's name or value.
    fn shown_by(&self, record: &DemoRecord, headers: bool) -> bool {
        let key = record.key.as_deref().unwrap_or_default();
        let value = record.value.as_deref().unwrap_or_default();
        self.found_in(key)
            || self.found_in(value)
            || (headers
                && record.headers.iter().any(|(name, value)| {
                    self.found_in(name.as_bytes())
                        || self.found_in(value.as_deref().unwrap_or_default())
                }))
    }
}

/// One pipeline of the demo.
struct Stage {
    from: &'static str,
    to: &'static str,
    policy: &'static str,
    /// Extra `[policy.config]` lines besides the key.
    policy_config: &'static str,
    /// `[errors]` lines.
    errors: &'static str,
    /// Extra `[pipeline]` lines.
    tuning: &'static str,
}

const STOP_ON_FAILURE: &str = r#"on_failure = "stop""#;

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
{errors}

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
            errors = stage.errors,
            tuning = stage.tuning,
        );
        Ok(PipelineConfig::parse(&text)?)
    }

    /// Runs the stages side by side until each has handled (written or dead-lettered)
    /// `records` records; returns each one's final counters.
    async fn run(&self, stages: &[Stage], records: usize) -> anyhow::Result<Vec<Snapshot>> {
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
        let mut finals = Vec::with_capacity(running.len());
        for (policy, handle) in running {
            finals.push(
                tokio::time::timeout(TIMEOUT, handle)
                    .await
                    .with_context(|| {
                        format!("the {policy} pipeline did not finish within {TIMEOUT:?}")
                    })???,
            );
        }
        Ok(finals)
    }

    /// The first `count` records of `topic`, partition by partition.
    async fn read(&self, topic: &'static str, count: usize) -> anyhow::Result<Vec<DemoRecord>> {
        Ok(self
            .read_where(topic, count)
            .await?
            .into_iter()
            .map(|read| read.record)
            .collect())
    }

    /// [`Demo::read`], with each record's partition and offset.
    async fn read_where(&self, topic: &'static str, count: usize) -> anyhow::Result<Vec<Read>> {
        let bootstrap = self.bootstrap.clone();
        let messages: Vec<OwnedMessage> = tokio::task::spawn_blocking(move || {
            read_topic(&bootstrap, topic, count, Duration::from_secs(30))
        })
        .await??;
        Ok(messages
            .iter()
            .map(|message| Read {
                partition: message.partition(),
                offset: message.offset(),
                record: DemoRecord::of(message),
            })
            .collect())
    }

    /// Creates a transit key with `options` (vault-dev creates plain keys on first use;
    /// a convergent one must exist beforehand).
    async fn create_key(
        &self,
        name: &str,
        token: &str,
        options: serde_json::Value,
    ) -> anyhow::Result<()> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/transit/keys/{name}", self.vault_url))
            .header("X-Vault-Token", token)
            .json(&options)
            .send()
            .await
            .with_context(|| format!("creating the transit key {name}"))?;
        ensure!(
            response.status().is_success(),
            "creating the transit key {name}: {}",
            response.status()
        );
        Ok(())
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
        DEAD_LETTERS,
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
    demo.create_key(
        RECORD_KEYS_KEY,
        vault_server.root_token(),
        serde_json::json!({"derived": true, "convergent_encryption": true}),
    )
    .await?;
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
    let personal = PersonalData::of(&customers);
    produce(&demo.bootstrap, RAW, &customers, false).await?;
    let raw = demo.read_where(RAW, records).await?;
    // The record shown on every topic: the first customer's, which each pipeline writes
    // at the same partition and offset (`preserve_partitions`, in order).
    let sample = raw
        .iter()
        .find(|read| read.record.key == customers[0].key)
        .context("the first customer's record is not on the raw topic")?;
    let sample_at = (sample.partition, sample.offset);
    fn at(topic: &[Read], (partition, offset): (i32, i64)) -> Option<&DemoRecord> {
        topic
            .iter()
            .find(|read| (read.partition, read.offset) == (partition, offset))
            .map(|read| &read.record)
    }
    let at_sample = |topic| at(topic, sample_at);
    heading("Demo 1 — a Kafka administrator reads everything");
    println!(
        "  an application produced {records} customer records to {RAW}; `kcat -C -t {RAW}` shows:"
    );
    show(Some(&sample.record), false);
    println!();

    // Demo 2: kafka-transit in front.
    let phase = Instant::now();
    demo.run(
        &[
            Stage {
                from: RAW,
                to: PROTECTED,
                policy: "encrypt-value",
                policy_config: PROTECT_ALL,
                errors: STOP_ON_FAILURE,
                tuning: "",
            },
            Stage {
                from: RAW,
                to: FIELDS,
                policy: "encrypt-fields",
                policy_config: r#"fields = ["/ssn", "/card/number", "/iban", "/email"]
record_keys = "encrypt"
record_keys_key = "customer-keys"
bind = ["stream", "key"]"#,
                errors: STOP_ON_FAILURE,
                tuning: "",
            },
        ],
        records,
    )
    .await?;
    let (protected_at, fields_at) = (
        demo.read_where(PROTECTED, records).await?,
        demo.read_where(FIELDS, records).await?,
    );
    heading("Demo 2 — with kafka-transit in front, the administrator sees ciphertext");
    println!(
        "  {RAW} --[encrypt-value]--> {PROTECTED}   (Vault keys \"{KEY}\", \"{RECORD_KEYS_KEY}\")"
    );
    println!("      value, key and headers: record_keys = \"encrypt\", headers = \"seal\" (keep_headers = [\"traceparent\"]),");
    println!("      every ciphertext bound to its topic and key: bind = [\"stream\", \"key\"]");
    println!(
        "  {RAW} --[encrypt-fields]--> {FIELDS}   (ssn, card number, iban, email; key encrypted)"
    );
    println!("  {PROTECTED} --[decrypt-value]--> {CLEARTEXT}   (the authorised consumer)\n");
    println!("  administrator, {PROTECTED} (ciphertexts shortened here):");
    let protected_sample = at_sample(&protected_at)
        .cloned()
        .context("the first customer's record is not on the protected topic")?;
    show(Some(&protected_sample), true);
    println!("  administrator, {FIELDS}:");
    show(at_sample(&fields_at), true);
    let records_of = |reads: Vec<Read>| -> Vec<DemoRecord> {
        reads.into_iter().map(|read| read.record).collect()
    };
    let (protected, fields) = (records_of(protected_at), records_of(fields_at));
    println!(
        "      (encrypt-fields leaves headers as they came: headers with personal data need \
         a whole-value policy and headers = \"seal\")"
    );

    // The sink's operator cannot read the records, but can move them: a ciphertext
    // copied under another record's key, on the same topic, must not open.
    let forged = moved_ciphertext(&protected_sample, &protected)?;
    produce(
        &demo.bootstrap,
        PROTECTED,
        std::slice::from_ref(&forged.record),
        false,
    )
    .await?;
    println!(
        "\n  the sink's operator copies the value of the record keyed {} under the key {}\n  \
         (the first one above; same topic), then the authorised consumer's decrypt-value \
         pipeline reads {PROTECTED}:",
        short(forged.from_key.as_deref()),
        short(forged.record.key.as_deref())
    );
    let opening = demo
        .run(
            &[Stage {
                from: PROTECTED,
                to: CLEARTEXT,
                policy: "decrypt-value",
                policy_config: r#"record_keys_key = "customer-keys"
require_binding = ["stream", "key"]"#,
                errors: r#"on_failure = "dead-letter"
dead_letter_topic = "customers.protected.dlq""#,
                tuning: "",
            }],
            records + 1,
        )
        .await?;
    let phase = phase.elapsed();
    let cleartext = demo.read(CLEARTEXT, records).await?;
    let dead = demo.read(DEAD_LETTERS, 1).await?;
    let reason = dead
        .first()
        .and_then(|letter| letter.header(dead_letter_headers::ERROR))
        .map(|reason| String::from_utf8_lossy(reason).into_owned());
    println!(
        "  decrypt-value: {} records out, {} dead-lettered to {DEAD_LETTERS}: {}",
        opening[0].records_out,
        opening[0].dead_lettered,
        reason.as_deref().unwrap_or("<no dead letter>")
    );
    println!("  authorised consumer, {CLEARTEXT}:");
    show(
        cleartext
            .iter()
            .find(|record| record.key == customers[0].key),
        false,
    );
    let moved_ciphertext_refused = opening[0].dead_lettered == 1
        && dead.len() == 1
        && dead[0].key == forged.record.key
        && dead[0].value == forged.record.value
        && reason
            .as_deref()
            .is_some_and(|r| r.contains("message authentication failed"));

    let by_key: HashMap<&[u8], &DemoRecord> = cleartext
        .iter()
        .filter_map(|record| Some((record.key.as_deref()?, record)))
        .collect();
    let identical = customers
        .iter()
        .filter(|customer| {
            by_key.get(customer.key.as_deref().unwrap_or_default()) == Some(customer)
        })
        .count();
    // The whole-value topic hides keys, headers and values; the field-level one keys
    // and the selected fields (its headers are as they came, said above).
    let shown = protected
        .iter()
        .filter(|record| personal.shown_by(record, true))
        .count()
        + fields
            .iter()
            .filter(|record| personal.shown_by(record, false))
            .count();
    let leaks = shown + (2 * records).saturating_sub(protected.len() + fields.len());
    println!(
        "  {identical}/{records} records byte-identical (key, value, headers) after the round trip; \
         records showing personal data to the administrator: {leaks}; {:.2}s\n",
        phase.as_secs_f64()
    );

    // Demo 3: large records through envelope encryption.
    heading("Demo 3 — large records, envelope encryption");
    let documents: Vec<DemoRecord> = LARGE_SIZES
        .iter()
        .map(|&size| {
            let mut value = format!("CONFIDENTIAL document of {} MiB. ", size >> 20).into_bytes();
            while value.len() < size {
                value.extend_from_slice(b"Quarterly figures, salaries and contracts. ");
            }
            value.truncate(size);
            DemoRecord {
                key: Some(format!("document-{}mib", size >> 20).into_bytes()),
                value: Some(value),
                headers: Vec::new(),
            }
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
                errors: STOP_ON_FAILURE,
                tuning: large,
            },
            Stage {
                from: LARGE_SEALED,
                to: LARGE_OPENED,
                policy: "envelope-open",
                policy_config: "",
                errors: STOP_ON_FAILURE,
                tuning: large,
            },
        ],
        documents.len(),
    )
    .await?;
    let phase = phase.elapsed();
    let values_by_key = |records: Vec<DemoRecord>| -> HashMap<Vec<u8>, Vec<u8>> {
        records
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
            .collect()
    };
    let (sealed, opened) = (
        values_by_key(demo.read(LARGE_SEALED, documents.len()).await?),
        values_by_key(demo.read(LARGE_OPENED, documents.len()).await?),
    );
    println!(
        "  {LARGE_RAW} --[envelope-seal]--> {LARGE_SEALED} --[envelope-open]--> {LARGE_OPENED}"
    );
    println!("  settings: pipeline.max_record_bytes = pipeline.max_batch_bytes = 5 MiB (client limits follow)");
    let mut large_identical = 0;
    for document in &documents {
        let key = document.key.as_deref().unwrap_or_default();
        let value = document.value.as_ref().expect("documents have values");
        let sealed_value = sealed.get(key);
        let same = opened.get(key) == Some(value);
        let hidden = sealed_value.is_some_and(|v| !contains(v, b"CONFIDENTIAL"));
        large_identical += usize::from(same && hidden);
        println!(
            "  {:<16} {:>8} bytes → sealed {:>8} bytes, administrator sees {} → opened {}",
            String::from_utf8_lossy(key),
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
        moved_ciphertext_refused,
        vault_requests: vault_server.stats().requests,
        elapsed: started.elapsed(),
    };
    let bytes: usize = customers
        .iter()
        .chain(&documents)
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum();
    println!(
        "summary: records={} bytes={bytes} vault_requests={} time={:.2}s result={}",
        records + documents.len(),
        report.vault_requests,
        report.elapsed.as_secs_f64(),
        if report.round_trip_identical && leaks == 0 && moved_ciphertext_refused {
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
    ensure!(
        moved_ciphertext_refused,
        "the ciphertext moved under another record's key was not refused as it should be \
         (one dead letter, \"message authentication failed\"): {} dead-lettered, reason {:?}",
        opening[0].dead_lettered,
        reason
    );
    Ok(report)
}

/// A protected record's value and headers under another protected record's key: what
/// the sink's operator can write without any key.
struct MovedCiphertext {
    /// The key the value was written under.
    from_key: Option<Vec<u8>>,
    record: DemoRecord,
}

/// `from`'s value and headers under the key of the first record of `protected` that
/// has another key.
fn moved_ciphertext(
    from: &DemoRecord,
    protected: &[DemoRecord],
) -> anyhow::Result<MovedCiphertext> {
    let other = protected
        .iter()
        .find(|record| record.key != from.key)
        .context("the demo needs at least two customers (--records 2)")?;
    Ok(MovedCiphertext {
        from_key: from.key.clone(),
        record: DemoRecord {
            key: other.key.clone(),
            ..from.clone()
        },
    })
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

/// A record as `kcat` would show it, one line for each of key, headers and value;
/// with `shorten`, Vault ciphertexts cut to their first characters.
fn show(record: Option<&DemoRecord>, shorten: bool) {
    const WIDTH: usize = 150;
    let Some(record) = record else {
        println!("    <missing>");
        return;
    };
    let text = |bytes: &[u8]| {
        if shorten && bytes.starts_with(b"vault:v") {
            short(Some(bytes))
        } else {
            let text = String::from_utf8_lossy(bytes).into_owned();
            if text.chars().count() > WIDTH {
                let cut: String = text.chars().take(WIDTH).collect();
                format!("{cut}… ({} bytes)", bytes.len())
            } else {
                text
            }
        }
    };
    let key = record.key.as_deref().map_or_else(|| "<null>".into(), text);
    let headers: Vec<String> = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.as_deref().map_or_else(String::new, |v| {
                let shown = String::from_utf8_lossy(v);
                // A trace context is long and not the point: its first characters do.
                if shown.chars().count() > 28 {
                    format!("{}…", shown.chars().take(24).collect::<String>())
                } else {
                    shown.into_owned()
                }
            });
            format!("{name}={value}")
        })
        .collect();
    let value = match record.value.as_deref() {
        None => "<null>".to_string(),
        Some(v) if shorten && !v.starts_with(b"vault:v") => {
            String::from_utf8_lossy(&abbreviate_ciphertexts(v)).into_owned()
        }
        Some(v) => text(v),
    };
    println!("    key      {key}");
    println!("    headers  {}", headers.join(", "));
    println!("    value    {value}");
}

/// A Vault ciphertext's first characters and its length.
fn short(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "<null>".into(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            format!(
                "{}… ({} bytes)",
                text.chars().take(17).collect::<String>(),
                bytes.len()
            )
        }
    }
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
    records: &[DemoRecord],
    spread: bool,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10485760")
        .create()?;
    let mut deliveries = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name,
                    value: value.as_deref(),
                })
            });
        let mut message = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(value) = &record.value {
            message = message.payload(value);
        }
        if spread {
            message = message.partition(index as i32 % PARTITIONS);
        }
        deliveries.push(producer.send_result(message).map_err(|(error, _)| error)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_found_wherever_it_is_and_only_there() {
        let customers = sample_customers(20);
        let personal = PersonalData::of(&customers);
        assert!(
            personal.shown_by(&customers[7], true),
            "a raw record shows everything"
        );
        let mut hidden = DemoRecord {
            key: Some(b"vault:v1:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/==".to_vec()),
            value: Some(b"vault:v1:ZmFrZSBjaXBoZXJ0ZXh0".to_vec()),
            headers: vec![(
                "traceparent".into(),
                customers[7].header("traceparent").map(<[u8]>::to_vec),
            )],
        };
        assert!(!personal.shown_by(&hidden, true));
        // One secret anywhere is enough: a header value, in the middle of the bytes.
        hidden
            .headers
            .push(("x".into(), Some(b"prefix user-000007 suffix".to_vec())));
        assert!(personal.shown_by(&hidden, true));
        assert!(
            !personal.shown_by(&hidden, false),
            "headers left out when asked"
        );
        hidden.value = Some(br#"{"iban":"DE89370400440532000019"}"#.to_vec());
        assert!(personal.shown_by(&hidden, false));
    }

    #[test]
    fn a_moved_ciphertext_takes_another_records_key_and_keeps_its_own_value() {
        let records = sample_customers(3);
        let moved = moved_ciphertext(&records[1], &records).unwrap();
        assert_eq!(moved.from_key, records[1].key);
        assert_eq!(moved.record.key, records[0].key);
        assert_eq!(moved.record.value, records[1].value);
        assert_eq!(moved.record.headers, records[1].headers);
        assert!(moved_ciphertext(&records[0], &records[..1]).is_err());
    }
}
