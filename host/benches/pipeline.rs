//! Throughput and CPU cost of the built-in policies, with and without Kafka, against the
//! passthrough baseline measured in the same run. `bench/README.md` explains how to read
//! the output; `bench/run.sh` runs this against Apache Kafka and OpenBao and compares it
//! with the seed's approach (an application calling Vault once per record).
//!
//!     cargo bench -p kafka-transit --bench pipeline
//!     cargo bench -p kafka-transit --bench pipeline -- --rounds 2 --min-seconds 0.3 --sizes 1024
//!     cargo bench -p kafka-transit --bench pipeline -- --kafka 127.0.0.1:9092 --vault http://127.0.0.1:8200
//!     cargo bench -p kafka-transit --bench pipeline -- --kafka 127.0.0.1:9092 --sink-kafka 127.0.0.1:9093 --vault http://127.0.0.1:8200
//!
//! Options (after `--`):
//! - `--rounds N` (default 5): every row is measured N times. Rounds are interleaved
//!   (round 1 of every row, then round 2, ...), so a slow spell of the machine lands on
//!   one round of many rows rather than on every round of one row.
//! - `--min-seconds S` (default 2): each round repeats its work until S seconds of
//!   measured time, so one hiccup is a small part of a round.
//! - `--warmup N` (default 1): N unmeasured rounds of every row first, each one pass (or
//!   one batch), so that the broker's JIT, the page cache and the first policy
//!   instances are not measured in round 1 (which ran 2-4x slower than the rest).
//! - `--sizes B,B` (default 1024,1048576): record value sizes in bytes. Rows of policies
//!   that send values to Vault transit (encrypt-*, decrypt-*) are left out above 256 KiB:
//!   transit takes at most about 1 MiB of base64 per value, which is why envelope
//!   encryption exists.
//! - `--input-bytes B` (default 32 MiB): the input topic of each size holds this many
//!   bytes of values (so 1 MiB rows have fewer records); a pipeline pass consumes all of
//!   it, and passes repeat until `--min-seconds`. The mock cluster keeps 5 MiB per
//!   partition, so raise this only with `--kafka`. The per-subject inputs (`subjects-*`)
//!   hold at most 4,096 records: each new subject costs Vault requests in turn.
//! - `--kafka HOST:PORT`: Apache Kafka instead of librdkafka's in-process mock cluster.
//! - `--sink-kafka HOST:PORT` (with `--kafka`): a second Apache Kafka, the sink of the
//!   `pipeline-eos-2c` rows. Without it, `--kafka` skips those rows (and says so); on the
//!   mock, a second mock cluster is started for them.
//! - `--vault ADDR`: an external Vault or OpenBao (plain http) with the token in
//!   `VAULT_TOKEN` and transit mounted at `transit/`, instead of an in-process vault-dev.
//!   The transit key `bench` is created if missing.
//! - `--transaction-interval-ms N`: `pipeline.transaction_interval` of the exactly-once rows.
//! - `--only WORD,WORD`: only rows whose label (`measure/policy/size`, e.g.
//!   `pipeline-eos/envelope-seal/1KiB`, or `latency/policy/delivery/rate`, e.g.
//!   `latency/encrypt-value/exactly-once/1000rps`) contains one of the words: `--only
//!   latency` runs the latency rows alone, `--only pipeline-eos` both exactly-once
//!   measures, `--only pipeline-eos/` the one-cluster one alone.
//! - `--rates R,R` (default 1000,10000): records per second of the latency rows.
//! - `--latency-seconds S` (default 5): measured seconds of each latency row, after 1 s
//!   of warm-up at the same rate.
//! - `--json FILE`: also write the summary as JSON (bench/run.sh reads it).
//!
//! `RUST_LOG` (e.g. `kafka_transit=debug`) prints the pipeline's own log to stderr.
//!
//! Measures, per policy and size:
//! - `policy`: batches straight through the wasm policy (and Vault), no Kafka: the
//!   host's per-record cost.
//! - `pipeline` (at-least-once) and `pipeline-eos` (`delivery = "exactly-once"`): a fresh
//!   pipeline (consumer group) per pass consumes the input topic and produces to a sink
//!   topic on the same cluster; time runs from the first record consumed to the last one
//!   acknowledged (under exactly-once: committed), so group join is not counted. Source
//!   and sink on one cluster, exactly-once runs in its one-cluster mode (one
//!   transactional producer per runner, source offsets committed in the transaction;
//!   docs/guarantees.md, "On one cluster").
//! - `pipeline-eos-2c`: `pipeline-eos` with the sink topic on a second cluster (a second
//!   mock cluster, or `--sink-kafka`): exactly-once across clusters (a transactional
//!   producer per source partition, signed positions in `kafka-transit-offsets` on the
//!   sink cluster; "Across clusters" there).
//!
//!   A pass of any pipeline row ends only when the pipeline counts every input record
//!   produced (acknowledged by the sink; under exactly-once, in a committed transaction)
//!   and none dead-lettered, and after it the sink topic's end offsets on the sink
//!   cluster must have grown by at least the input's record count.
//!
//! - `latency` (run after the rounds, once each, in a table of their own): records of
//!   1 KiB sent at a fixed rate (`--rates`) to a fresh source topic by a producer with
//!   `linger.ms = 0`, every millisecond the records due by then, through a pipeline of
//!   passthrough, envelope-seal or encrypt-value, at-least-once and exactly-once, built as
//!   the pipeline rows build theirs (fresh topics and group), and read from the sink by a
//!   `read_committed` consumer. Each record carries the microsecond it was handed to the
//!   producer in the header `bench.sent-us` (which these policies leave as it is; a
//!   record without it falls back to its CreateTime, to the millisecond, and the table
//!   says how many did); the reader, in this process on the same clock, takes the
//!   microsecond it sees it. p50, p99 and max are over the records sent after a 1 s
//!   warm-up, for `--latency-seconds`; a row fails unless every record sent was seen.
//!   `latency/direct/<rate>` is the producer and the reader on one topic, no pipeline:
//!   what Kafka alone costs; each row's `added` p50 and p99 are its own minus direct's.
//!   The mock cluster does not honour `read_committed` (no transaction markers, last
//!   stable offset = high watermark), so only `--kafka` shows exactly-once's wait for the
//!   commit (about `transaction_interval`); and it holds an empty fetch for all of
//!   `fetch.wait.max.ms`, so there the reader and the pipelines' consumers take 5 ms.
//!
//! The decrypt side (decrypt-value, decrypt-fields, envelope-open) reads what the
//! matching encrypting policy wrote: those inputs are prepared once, before the rounds,
//! and checked to decrypt back to the originals.
//!
//! The `json-*` rows run on other records (see `json_records`): JSON order documents of
//! the same sizes, keyed by an e-mail address, with three headers (`traceparent`,
//! `user-id`, `tenant`): what `envelope-seal`'s format 3 options have something to work
//! on. `json-envelope-seal+zstd` and `+lz4` compress, `+all` turns everything on
//! (`record_keys = "encrypt"`, `headers = "seal"` keeping `traceparent`, `bind =
//! ["stream", "key"]`, `compression = "zstd"`); each is reported against
//! `json-envelope-seal` (no options) and `json-passthrough` on the same records.
//!
//! The `subjects-*` rows seal under a transit key per data subject (docs/forgetting.md),
//! the record key naming the subject: 1,000 subjects in turn, and 100,000 (more than the
//! input has records, so every record is a subject's first); they are compared with
//! `envelope-seal` under one key on the same values, and `vault/1k` gives Vault requests
//! per 1,000 records. Their inputs hold at most 4,096 records (`SUBJECT_RECORDS`).
//!
//! The `customers-*` rows compare field-level protection of schema'd records with
//! `encrypt-fields` on JSON of the same content (see `customer_records`): a customer
//! (name, e-mail, street and two phone numbers to protect; id, city, phone kinds and a
//! free-text `notes` filling the record to its size to leave) as plain JSON for
//! `encrypt-fields`, and as Avro, JSON Schema and Protobuf records in Confluent's wire
//! format for `encrypt-schema-fields`, with the schemas tagged PII in an in-process
//! Schema Registry. Five fields per record go to Vault in every row.
//!
//! Every row also reports the bytes written to the sink per record (key, value, and each
//! header's name and value): the mean over the row's batch (up to 500 records) of what
//! its policy outputs, which is what the pipeline produces, as it is.
//!
//! CPU is this process's own user+system time (`getrusage(RUSAGE_SELF)`) over the measured
//! time of each round. It includes the in-process vault-dev and mock cluster when they are
//! used; with `--kafka` and `--vault` it is the runner's alone.

/// The binary's allocator (host/Cargo.toml says why), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/kafka.rs"]
#[allow(dead_code)]
mod kafka_support;
#[path = "../tests/support/registry.rs"]
#[allow(dead_code)]
mod registry_support;

use std::collections::btree_map::{BTreeMap, Entry};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kafka_support::{PipelineSpec, RunningPipeline, TestKafka};
use kafka_transit::config::{DeliveryGuarantee, PolicySource};
use kafka_transit::policy::pipeline::PipelineView;
use kafka_transit::policy::{Header, Limits, PolicyRunner, PolicyRuntime, SourceRecord};
use kafka_transit::vault::{VaultClient, VaultSettings, VaultToken};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A policy and its configuration (`[policy.config]` TOML), and the records it reads.
struct Case {
    /// The row's name in labels: the policy, or the policy and what is special.
    name: &'static str,
    policy: &'static str,
    toml: &'static str,
    /// The encrypting case whose output this one reads (the decrypt side).
    reads: Option<&'static str>,
    /// Which records it reads, unless `reads`.
    input: Input,
    /// Sends each value to Vault transit (so cannot take values near 1 MiB).
    transit: bool,
}

/// The records a case reads.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// `{"id":N,"payload":"xxx..."}` values, keys `kN`, no headers (`plain_records`).
    Plain,
    /// JSON order documents keyed by e-mail, with headers (`json_records`).
    Json,
    /// Customers, as plain JSON or schema'd in Confluent's wire format
    /// (`customer_records`).
    Customers(Format),
    /// `Plain` values keyed by one of this many data subjects, in turn
    /// (`subject_records`): a key per subject (docs/forgetting.md).
    Subjects(usize),
}

/// How a customer record is written.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Avro,
    JsonSchema,
    Protobuf,
}

impl Case {
    /// The configuration as the JSON a policy's `init` takes.
    fn json(&self) -> String {
        let table: toml::Table = toml::from_str(self.toml).expect("a case's TOML");
        serde_json::to_string(&table).expect("TOML is JSON")
    }

    /// The inputs it reads: what the case named by `reads` wrote, or fresh records.
    fn input_name(&self) -> &'static str {
        match (self.reads, self.input) {
            (Some(encrypting), _) => encrypting,
            (None, Input::Plain) => "plain",
            (None, Input::Json) => "json",
            (None, Input::Customers(Format::Json)) => "customers-json",
            (None, Input::Customers(Format::Avro)) => "customers-avro",
            (None, Input::Customers(Format::JsonSchema)) => "customers-jsonschema",
            (None, Input::Customers(Format::Protobuf)) => "customers-protobuf",
            (None, Input::Subjects(SUBJECTS_FEW)) => "subjects-1k",
            (None, Input::Subjects(_)) => "subjects-100k",
        }
    }
}

const KEY_TOML: &str = "key = \"bench\"";
/// The fields of a customer the schemas tag PII, as JSON Pointers.
const CUSTOMER_FIELDS_TOML: &str = r#"key = "bench"
fields = ["/name", "/email", "/address/street", "/phones/*/number"]"#;
const FIELDS_TOML: &str = "key = \"bench\"\nfields = [\"/payload\"]";
/// A transit key per data subject: the record key names the subject.
const SUBJECTS_TOML: &str = r#"subject = "{key}"
subject_keys = "bench-subject-"
subject_hmac_key = "bench-subject-ids""#;
const SUBJECTS_FEW: usize = 1_000;
const SUBJECTS_MANY: usize = 100_000;
/// The most records a per-subject input holds, whatever `--input-bytes`. A new subject's
/// first record is three Vault requests in turn (a data key refused, the key created, a
/// data key), about 90 records/s against OpenBao here: a whole 32 MiB input would keep
/// subjects-100k's first pass (the warm-up) past the 10 minutes a pass may take.
const SUBJECT_RECORDS: usize = 4096;
const ZSTD_TOML: &str = "key = \"bench\"\ncompression = \"zstd\"";
const LZ4_TOML: &str = "key = \"bench\"\ncompression = \"lz4\"";
/// Every format 3 option of `envelope-seal` but padding.
const ALL_TOML: &str = r#"key = "bench"
record_keys = "encrypt"
record_keys_key = "bench-keys"
headers = "seal"
keep_headers = ["traceparent"]
bind = ["stream", "key"]
compression = "zstd""#;

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { name: "passthrough", policy: "passthrough", toml: "", reads: None, input: Input::Plain, transit: false },
    Case { name: "encrypt-value", policy: "encrypt-value", toml: KEY_TOML, reads: None, input: Input::Plain, transit: true },
    Case { name: "encrypt-fields", policy: "encrypt-fields", toml: FIELDS_TOML, reads: None, input: Input::Plain, transit: true },
    Case { name: "envelope-seal", policy: "envelope-seal", toml: KEY_TOML, reads: None, input: Input::Plain, transit: false },
    Case { name: "decrypt-value", policy: "decrypt-value", toml: KEY_TOML, reads: Some("encrypt-value"), input: Input::Plain, transit: true },
    Case { name: "decrypt-fields", policy: "decrypt-fields", toml: FIELDS_TOML, reads: Some("encrypt-fields"), input: Input::Plain, transit: true },
    Case { name: "envelope-open", policy: "envelope-open", toml: KEY_TOML, reads: Some("envelope-seal"), input: Input::Plain, transit: false },
    Case { name: "json-passthrough", policy: "passthrough", toml: "", reads: None, input: Input::Json, transit: false },
    Case { name: "json-envelope-seal", policy: "envelope-seal", toml: KEY_TOML, reads: None, input: Input::Json, transit: false },
    Case { name: "json-envelope-seal+zstd", policy: "envelope-seal", toml: ZSTD_TOML, reads: None, input: Input::Json, transit: false },
    Case { name: "json-envelope-seal+lz4", policy: "envelope-seal", toml: LZ4_TOML, reads: None, input: Input::Json, transit: false },
    Case { name: "json-envelope-seal+all", policy: "envelope-seal", toml: ALL_TOML, reads: None, input: Input::Json, transit: false },
    Case { name: "customers-encrypt-fields", policy: "encrypt-fields", toml: CUSTOMER_FIELDS_TOML, reads: None, input: Input::Customers(Format::Json), transit: true },
    Case { name: "customers-avro", policy: "encrypt-schema-fields", toml: KEY_TOML, reads: None, input: Input::Customers(Format::Avro), transit: true },
    Case { name: "customers-jsonschema", policy: "encrypt-schema-fields", toml: KEY_TOML, reads: None, input: Input::Customers(Format::JsonSchema), transit: true },
    Case { name: "customers-protobuf", policy: "encrypt-schema-fields", toml: KEY_TOML, reads: None, input: Input::Customers(Format::Protobuf), transit: true },
    Case { name: "subjects-1k", policy: "envelope-seal", toml: SUBJECTS_TOML, reads: None, input: Input::Subjects(SUBJECTS_FEW), transit: false },
    Case { name: "subjects-100k", policy: "envelope-seal", toml: SUBJECTS_TOML, reads: None, input: Input::Subjects(SUBJECTS_MANY), transit: false },
];

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
}

/// Said when `--kafka` comes without `--sink-kafka`.
const SKIPPED_TWO_CLUSTERS: &str = "pipeline-eos-2c rows skipped: --kafka without --sink-kafka \
     (a second Apache Kafka cluster for their sink)";

/// Above this, values are too large for Vault transit (see the module comment).
const TRANSIT_MAX_VALUE: usize = 256 * 1024;
const PARTITIONS: i32 = 16;
const KEY: &str = "bench";

struct Options {
    rounds: usize,
    warmup: usize,
    min_seconds: f64,
    sizes: Vec<usize>,
    input_bytes: usize,
    kafka: Option<String>,
    /// The sink cluster of the `pipeline-eos-2c` rows, with `kafka`.
    sink_kafka: Option<String>,
    vault: Option<String>,
    transaction_interval: Option<Duration>,
    only: Vec<String>,
    json: Option<String>,
    /// Records per second of the latency rows.
    rates: Vec<u64>,
    /// Measured seconds of each latency row (after `LATENCY_WARMUP`).
    latency_seconds: f64,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 5,
        warmup: 1,
        min_seconds: 2.0,
        sizes: vec![1024, 1 << 20],
        input_bytes: 32 << 20,
        kafka: None,
        sink_kafka: None,
        vault: None,
        transaction_interval: None,
        only: Vec::new(),
        json: None,
        rates: vec![1_000, 10_000],
        latency_seconds: 5.0,
    };
    // `cargo bench` adds `--bench`: unknown arguments are ignored rather than refused.
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = pair[1].as_str();
        match pair[0].as_str() {
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            "--min-seconds" => options.min_seconds = value.parse().expect("--min-seconds S"),
            "--warmup" => options.warmup = value.parse().expect("--warmup N"),
            "--sizes" => {
                options.sizes = value
                    .split(',')
                    .map(|s| s.trim().parse().expect("--sizes BYTES,BYTES"))
                    .collect()
            }
            "--input-bytes" => options.input_bytes = value.parse().expect("--input-bytes N"),
            "--kafka" => options.kafka = Some(value.to_string()),
            "--sink-kafka" => options.sink_kafka = Some(value.to_string()),
            "--vault" => options.vault = Some(value.trim_end_matches('/').to_string()),
            "--transaction-interval-ms" => {
                let ms = value.parse().expect("--transaction-interval-ms N");
                options.transaction_interval = Some(Duration::from_millis(ms));
            }
            "--only" => options.only = value.split(',').map(str::to_string).collect(),
            "--json" => options.json = Some(value.to_string()),
            "--rates" => {
                options.rates = value
                    .split(',')
                    .map(|s| s.trim().parse().expect("--rates R,R (records per second)"))
                    .collect()
            }
            "--latency-seconds" => {
                options.latency_seconds = value.parse().expect("--latency-seconds S")
            }
            _ => {}
        }
    }
    assert!(options.rounds > 0, "--rounds must be at least 1");
    assert!(
        options.sink_kafka.is_none() || options.kafka.is_some(),
        "--sink-kafka needs --kafka (on the mock cluster a second mock cluster is the sink)"
    );
    assert!(
        options.rates.iter().all(|&r| r > 0),
        "--rates must be at least 1"
    );
    assert!(
        options.latency_seconds > 0.0,
        "--latency-seconds must be more than 0"
    );
    options
}

fn value(i: usize, size: usize) -> Vec<u8> {
    let mut value = format!("{{\"id\":{i},\"payload\":\"").into_bytes();
    value.resize(size.saturating_sub(2), b'x');
    value.extend_from_slice(b"\"}");
    value
}

/// A small deterministic generator (SplitMix64): the JSON records are the same in
/// every run, so the compression rows compress the same bytes.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }
}

/// A JSON order document of exactly `size` bytes (valid JSON from about 400 bytes up):
/// a customer with an address, line items (SKU, product name, quantity, price,
/// discount) drawn from small vocabularies with varied numbers, and a free-text note of
/// words filling the rest. It compresses as business JSON does (member names repeat,
/// numbers do not), unlike `value`'s run of one byte: zstd about 2.5x, LZ4 about 2x at
/// 1 KiB, more on larger documents (the sink bytes column says what each row wrote).
fn json_value(i: usize, size: usize) -> Vec<u8> {
    const FIRST: &[&str] = &[
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
    ];
    const LAST: &[&str] = &[
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
    ];
    const CITIES: &[&str] = &[
        "Berlin", "Lisbon", "Utrecht", "Lyon", "Tampere", "Graz", "Brno",
    ];
    const STREETS: &[&str] = &["Market Street", "Station Road", "Mill Lane", "Church Walk"];
    const ADJECTIVES: &[&str] = &["blue", "large", "compact", "steel", "organic", "wireless"];
    const PRODUCTS: &[&str] = &["widget", "kettle", "lamp", "notebook", "cable", "backpack"];
    const WORDS: &[&str] = &[
        "please",
        "deliver",
        "after",
        "noon",
        "leave",
        "parcel",
        "with",
        "the",
        "neighbour",
        "ring",
        "twice",
        "gift",
        "wrap",
        "invoice",
        "to",
        "office",
        "fragile",
        "side",
        "door",
    ];
    let mut mix = Mix(i as u64);
    let (first, last) = (mix.pick(FIRST), mix.pick(LAST));
    let mut doc = format!(
        r#"{{"order_id":"ORD-{i:08}","created":"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z","customer":{{"id":{},"name":"{first} {last}","email":"{}.{}{i}@example.com","tier":"{}","address":{{"street":"{} {}","city":"{}","postcode":"{:05}","country":"{}"}}}},"currency":"EUR","items":["#,
        1 + mix.below(12),
        1 + mix.below(28),
        mix.below(24),
        mix.below(60),
        mix.below(60),
        100_000 + mix.below(900_000),
        first.to_lowercase(),
        last.to_lowercase(),
        mix.pick(&["standard", "silver", "gold"]),
        1 + mix.below(200),
        mix.pick(STREETS),
        mix.pick(CITIES),
        mix.below(100_000),
        mix.pick(&["DE", "PT", "NL", "FR", "FI", "AT", "CZ"]),
    );
    let close_min = r#"],"note":""}"#.len();
    let mut first_item = true;
    loop {
        let item = format!(
            r#"{{"sku":"SKU-{:06}","name":"{} {}","qty":{},"unit_price":{}.{:02},"discount":{}}}"#,
            mix.below(1_000_000),
            mix.pick(ADJECTIVES),
            mix.pick(PRODUCTS),
            1 + mix.below(9),
            1 + mix.below(500),
            mix.below(100),
            mix.pick(&["0", "0.05", "0.1", "0.15"]),
        );
        let separator = usize::from(!first_item);
        if doc.len() + separator + item.len() + close_min > size {
            break;
        }
        if !first_item {
            doc.push(',');
        }
        doc.push_str(&item);
        first_item = false;
    }
    doc.push_str(r#"],"note":""#);
    while doc.len() + 2 < size {
        doc.push_str(mix.pick(WORDS));
        doc.push(' ');
    }
    doc.truncate(size.saturating_sub(2));
    doc.push_str(r#""}"#);
    let mut value = doc.into_bytes();
    value.truncate(size);
    value
}

fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

/// This process's user+system CPU time in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The Vault server the policies call: in-process vault-dev, or an external one.
enum Vault {
    Dev(vault_dev::RunningServer),
    External(String),
}

impl Vault {
    fn url(&self) -> String {
        match self {
            Vault::Dev(server) => server.url(),
            Vault::External(address) => address.clone(),
        }
    }

    fn token(&self) -> String {
        match self {
            Vault::Dev(server) => server.root_token().to_string(),
            Vault::External(_) => std::env::var("VAULT_TOKEN").expect("--vault needs VAULT_TOKEN"),
        }
    }

    /// Requests served so far; only vault-dev counts them.
    fn requests(&self) -> Option<u64> {
        match self {
            Vault::Dev(server) => Some(server.stats().requests),
            Vault::External(_) => None,
        }
    }

    /// Creates the transit keys (a no-op if they exist): envelope-seal's data keys need
    /// one, exactly-once's signed positions another (`pipeline.offsets_key`), encrypted
    /// record keys a convergent one (`record_keys_key`).
    async fn create_key(&self) {
        let convergent = serde_json::json!({"derived": true, "convergent_encryption": true});
        for (key, options) in [
            (KEY, serde_json::json!({})),
            ("bench-subject-ids", serde_json::json!({})),
            ("kafka-transit-offsets", serde_json::json!({})),
            ("bench-keys", convergent),
        ] {
            let response = reqwest::Client::new()
                .post(format!("{}/v1/transit/keys/{key}", self.url()))
                .header("X-Vault-Token", self.token())
                .json(&options)
                .send()
                .await
                .expect("Vault answers");
            let status = response.status();
            assert!(
                status.is_success(),
                "creating transit/keys/{key} at {}: {status} {}",
                self.url(),
                response.text().await.unwrap_or_default()
            );
        }
    }
}

/// Where a pipeline row's sink topic is.
#[derive(Clone, Copy, PartialEq)]
enum Clusters {
    /// On the source cluster: exactly-once in its one-cluster mode.
    One,
    /// On a second cluster: exactly-once across clusters.
    Two,
}

#[derive(Clone, Copy, PartialEq)]
enum Measure {
    Policy,
    Pipeline(DeliveryGuarantee, Clusters),
}

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Measure::Policy => "policy",
            Measure::Pipeline(DeliveryGuarantee::AtLeastOnce, Clusters::One) => "pipeline",
            // Not measured (no row asks for it), named for completeness.
            Measure::Pipeline(DeliveryGuarantee::AtLeastOnce, Clusters::Two) => "pipeline-2c",
            Measure::Pipeline(DeliveryGuarantee::ExactlyOnce, Clusters::One) => "pipeline-eos",
            Measure::Pipeline(DeliveryGuarantee::ExactlyOnce, Clusters::Two) => "pipeline-eos-2c",
        }
    }

    fn clusters(self) -> Option<Clusters> {
        match self {
            Measure::Policy => None,
            Measure::Pipeline(_, clusters) => Some(clusters),
        }
    }
}

/// What one round of one row measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    records: f64,
    seconds: f64,
    cpu_seconds: f64,
    vault_requests: Option<u64>,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.records += other.records;
        self.seconds += other.seconds;
        self.cpu_seconds += other.cpu_seconds;
        self.vault_requests = self
            .vault_requests
            .zip(other.vault_requests)
            .map(|(a, b)| a + b);
    }
}

/// A row's state between rounds.
enum Work {
    /// A live policy instance and the batch it transforms, again and again.
    Policy {
        runner: PolicyRunner,
        batch: Vec<SourceRecord>,
    },
    /// The topic each pass consumes (`records` records) and the sink it writes.
    Pipeline {
        input: String,
        records: usize,
        sink: String,
        passes: usize,
    },
}

/// What a row measures.
#[derive(Clone, Copy)]
struct RowId {
    case: &'static Case,
    measure: Measure,
    value_bytes: usize,
}

impl RowId {
    fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.measure.label(),
            self.case.name,
            size_label(self.value_bytes)
        )
    }
}

struct Row {
    id: RowId,
    work: Work,
    samples: Vec<Sample>,
    /// Bytes written to the sink per record: key, value, headers' names and values.
    sink_bytes: f64,
}

impl Row {
    fn mb_per_second(&self, sample: &Sample) -> f64 {
        sample.records * self.id.value_bytes as f64 / sample.seconds / 1e6
    }
}

/// A runner of `case`'s policy as in a pipeline writing to `bench-policy-out` (a
/// protecting policy binds its ciphertexts to the sink topic, so it asks for one), with
/// room for an envelope around values of `value_bytes`.
async fn start_policy(case: &Case, value_bytes: usize, vault: &VaultClient) -> PolicyRunner {
    let spec = PipelineSpec {
        source_bootstrap: "127.0.0.1:9092",
        sink_bootstrap: "127.0.0.1:9092",
        source_topic: "in",
        sink_topic: "bench-policy-out",
        group: "bench-policy",
        policy: format!("builtin = \"{}\"", case.policy),
        policy_config: case.toml,
        errors: "on_failure = \"stop\"",
        vault_address: "http://127.0.0.1:8200",
        schema_registry: REGISTRY.get().map(|registry| registry.url.as_str()),
    };
    let mut config = config_of(&spec, case);
    config.pipeline.max_record_bytes = config.pipeline.max_record_bytes.max(2 * value_bytes);
    let runtime = PolicyRuntime::load(
        &PolicySource::Builtin(case.policy.into()),
        case.json(),
        Limits::default(),
        Some(vault.clone()),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.name))
    .with_pipeline(PipelineView::of(&config).unwrap());
    PolicyRunner::start(Arc::new(runtime)).await.unwrap()
}

/// The pipeline file of `spec`; with `[forget]`, which per-subject sealing needs.
fn config_of(spec: &PipelineSpec<'_>, case: &Case) -> kafka_transit::config::PipelineConfig {
    if !matches!(case.input, Input::Subjects(_)) {
        return spec.config();
    }
    let text = format!("{}\n[forget]\ntopic = \"bench-forgotten\"\n", spec.text());
    kafka_transit::config::PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Key, value and headers (names and values) of a record as written.
fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
}

/// The mean bytes per record that `case` writes to the sink for `batch`.
async fn sink_bytes(case: &Case, batch: &[SourceRecord], vault: &VaultClient) -> f64 {
    let mut runner = start_policy(case, value_len(&batch[0]), vault).await;
    let mut bytes = 0;
    let mut records = 0;
    for result in runner.transform(batch).await.unwrap() {
        for output in result.unwrap_or_else(|e| panic!("{}: {e:?}", case.name)) {
            bytes += record_bytes(
                output.key.as_deref(),
                output.value.as_deref(),
                &output.headers,
            );
            records += 1;
        }
    }
    bytes as f64 / records.max(1) as f64
}

fn batch_size(value_bytes: usize) -> usize {
    (16 * 1024 * 1024 / value_bytes).clamp(4, 500)
}

/// `json_value` documents keyed by an e-mail address, with the headers `traceparent`
/// (a W3C trace context), `user-id` and `tenant`.
fn json_records(count: usize, value_bytes: usize) -> Vec<SourceRecord> {
    (0..count)
        .map(|i| {
            let mut mix = Mix(!(i as u64));
            let header = |key: &str, value: String| Header {
                key: key.into(),
                value: Some(value.into_bytes()),
            };
            SourceRecord {
                topic: "in".into(),
                partition: i as i32 % PARTITIONS,
                offset: i as i64,
                timestamp: None,
                key: Some(format!("customer.{i}@example.com").into_bytes()),
                value: Some(json_value(i, value_bytes)),
                headers: vec![
                    header(
                        "traceparent",
                        format!(
                            "00-{:016x}{:016x}-{:016x}-01",
                            mix.next(),
                            mix.next(),
                            mix.next()
                        ),
                    ),
                    header("user-id", format!("user-{:08}", i * 7 % 100_000_000)),
                    header("tenant", format!("tenant-{}", i % 10)),
                ],
            }
        })
        .collect()
}

/// The in-process Schema Registry of the `customers-*` rows, and the schema ids of the
/// customer schemas in it.
static REGISTRY: OnceLock<registry_support::TestRegistry> = OnceLock::new();
static CUSTOMER_SCHEMA_IDS: OnceLock<[u32; 3]> = OnceLock::new();

async fn start_registry() {
    let registry = registry_support::TestRegistry::start_local().await;
    let ids = [
        registry
            .register("customers-avro-value", "AVRO", CUSTOMER_AVRO)
            .await,
        registry
            .register("customers-json-value", "JSON", CUSTOMER_JSON_SCHEMA)
            .await,
        registry
            .register("customers-proto-value", "PROTOBUF", CUSTOMER_PROTO)
            .await,
    ];
    let _ = CUSTOMER_SCHEMA_IDS.set(ids);
    let _ = REGISTRY.set(registry);
}

const CUSTOMER_AVRO: &str = r#"{"type": "record", "name": "Customer", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string", "confluent:tags": ["PII"]},
  {"name": "email", "type": ["null", "string"], "confluent:tags": ["PII"]},
  {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
    {"name": "street", "type": "string", "confluent:tags": ["PII"]},
    {"name": "city", "type": "string"}]}},
  {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone",
    "fields": [{"name": "kind", "type": "string"},
               {"name": "number", "type": "string", "confluent:tags": ["PII"]}]}}},
  {"name": "notes", "type": "string"}]}"#;

const CUSTOMER_JSON_SCHEMA: &str = r#"{"type": "object", "properties": {
  "id": {"type": "integer"},
  "name": {"type": "string", "confluent:tags": ["PII"]},
  "email": {"type": ["string", "null"], "confluent:tags": ["PII"]},
  "address": {"type": "object", "properties": {
    "street": {"type": "string", "confluent:tags": ["PII"]},
    "city": {"type": "string"}}},
  "phones": {"type": "array", "items": {"type": "object", "properties": {
    "kind": {"type": "string"},
    "number": {"type": "string", "confluent:tags": ["PII"]}}}},
  "notes": {"type": "string"}}}"#;

const CUSTOMER_PROTO: &str = r#"syntax = "proto3";
import "confluent/meta.proto";
message Customer {
  int64 id = 1;
  string name = 2 [(confluent.field_meta).tags = "PII"];
  optional string email = 3 [(confluent.field_meta).tags = "PII"];
  Address address = 4;
  repeated Phone phones = 5;
  string notes = 6;
}
message Address {
  string street = 1 [(confluent.field_meta).tags = "PII"];
  string city = 2;
}
message Phone {
  string kind = 1;
  string number = 2 [(confluent.field_meta).tags = "PII"];
}
"#;

/// Customer `i` in `format`, its `notes` filling the value to about `size` bytes.
fn customer_value(i: usize, size: usize, format: Format) -> Vec<u8> {
    let name = format!("Customer Number {i}");
    let email = format!("customer.{i}@example.com");
    let street = format!("{} Main Street", 100 + i % 900);
    let phones = [
        ("home", format!("+1-555-{:04}", i % 10_000)),
        ("work", format!("+1-555-9{:03}", i % 1_000)),
    ];
    let encode = |notes: &str| -> Vec<u8> {
        match format {
            Format::Json | Format::JsonSchema => {
                let doc = serde_json::json!({
                    "id": i, "name": name, "email": email,
                    "address": {"street": street, "city": "Springfield"},
                    "phones": phones.iter().map(|(kind, number)| {
                        serde_json::json!({"kind": kind, "number": number})
                    }).collect::<Vec<_>>(),
                    "notes": notes,
                });
                let body = doc.to_string().into_bytes();
                if format == Format::Json {
                    body
                } else {
                    framed(CUSTOMER_SCHEMA_IDS.get().unwrap()[1], &[], &body)
                }
            }
            Format::Avro => {
                let mut out = Vec::new();
                avro_long(&mut out, i as i64);
                avro_string(&mut out, &name);
                avro_long(&mut out, 1);
                avro_string(&mut out, &email);
                avro_string(&mut out, &street);
                avro_string(&mut out, "Springfield");
                avro_long(&mut out, phones.len() as i64);
                for (kind, number) in &phones {
                    avro_string(&mut out, kind);
                    avro_string(&mut out, number);
                }
                avro_long(&mut out, 0);
                avro_string(&mut out, notes);
                framed(CUSTOMER_SCHEMA_IDS.get().unwrap()[0], &[], &out)
            }
            Format::Protobuf => {
                let mut out = Vec::new();
                proto_varint(&mut out, 1 << 3);
                proto_varint(&mut out, i as u64);
                proto_bytes(&mut out, 2, name.as_bytes());
                proto_bytes(&mut out, 3, email.as_bytes());
                let mut address = Vec::new();
                proto_bytes(&mut address, 1, street.as_bytes());
                proto_bytes(&mut address, 2, b"Springfield");
                proto_bytes(&mut out, 4, &address);
                for (kind, number) in &phones {
                    let mut phone = Vec::new();
                    proto_bytes(&mut phone, 1, kind.as_bytes());
                    proto_bytes(&mut phone, 2, number.as_bytes());
                    proto_bytes(&mut out, 5, &phone);
                }
                proto_bytes(&mut out, 6, notes.as_bytes());
                // Message indexes [0]: the file's first message.
                framed(CUSTOMER_SCHEMA_IDS.get().unwrap()[2], &[0], &out)
            }
        }
    };
    let bare = encode("").len();
    let mut mix = Mix(i as u64);
    let mut notes = String::new();
    while bare + notes.len() < size {
        notes.push_str(mix.pick(&["order ", "late ", "call ", "back ", "ok ", "thanks "]));
    }
    notes.truncate(size.saturating_sub(bare));
    encode(&notes)
}

fn framed(id: u32, indexes: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(indexes);
    out.extend_from_slice(body);
    out
}

fn avro_long(out: &mut Vec<u8>, v: i64) {
    proto_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn avro_string(out: &mut Vec<u8>, s: &str) {
    avro_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn proto_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn proto_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    proto_varint(out, field << 3 | 2);
    proto_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `customer_value`s keyed by customer id.
fn customer_records(count: usize, value_bytes: usize, format: Format) -> Vec<SourceRecord> {
    (0..count)
        .map(|i| SourceRecord {
            topic: "in".into(),
            partition: i as i32 % PARTITIONS,
            offset: i as i64,
            timestamp: None,
            key: Some(format!("customer-{i}").into_bytes()),
            value: Some(customer_value(i, value_bytes, format)),
            headers: vec![],
        })
        .collect()
}

/// `plain_records`' values (at most `SUBJECT_RECORDS` of them), keyed by `subjects` data
/// subjects in turn.
fn subject_records(count: usize, value_bytes: usize, subjects: usize) -> Vec<SourceRecord> {
    plain_records(count.min(SUBJECT_RECORDS), value_bytes)
        .into_iter()
        .enumerate()
        .map(|(i, record)| SourceRecord {
            key: Some(format!("subject-{}", i % subjects).into_bytes()),
            ..record
        })
        .collect()
}

fn plain_records(count: usize, value_bytes: usize) -> Vec<SourceRecord> {
    (0..count)
        .map(|i| SourceRecord {
            topic: "in".into(),
            partition: i as i32 % PARTITIONS,
            offset: i as i64,
            timestamp: None,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(value(i, value_bytes)),
            headers: vec![],
        })
        .collect()
}

/// `records` through `policy`, as records its decrypting counterpart reads.
async fn transformed(
    policy: &Case,
    records: &[SourceRecord],
    vault: &VaultClient,
) -> Vec<SourceRecord> {
    let mut runner = start_policy(policy, value_len(&records[0]), vault).await;
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(batch_size(value_len(&records[0]))) {
        for (record, result) in chunk.iter().zip(runner.transform(chunk).await.unwrap()) {
            let mut outputs = result.unwrap_or_else(|e| panic!("{}: {e:?}", policy.name));
            assert_eq!(
                outputs.len(),
                1,
                "{} writes one record per record",
                policy.name
            );
            let output = outputs.remove(0);
            out.push(SourceRecord {
                key: output.key,
                value: output.value,
                headers: output.headers,
                ..record.clone()
            });
        }
    }
    out
}

fn value_len(record: &SourceRecord) -> usize {
    record.value.as_ref().map_or(0, Vec::len)
}

/// The decrypting `policy` must give back `originals` from `inputs`: otherwise the
/// decrypt rows would measure failures.
async fn check_round_trip(
    policy: &Case,
    inputs: &[SourceRecord],
    originals: &[SourceRecord],
    vault: &VaultClient,
) {
    let sample = inputs.len().min(8);
    let back = transformed(policy, &inputs[..sample], vault).await;
    for (back, original) in back.iter().zip(originals) {
        assert!(
            back.value == original.value,
            "{} did not restore the original value",
            policy.name
        );
    }
}

/// Produces `records` to their own partitions (spread evenly: the mock cluster keeps
/// only 5 MiB per partition) and waits for every acknowledgement.
async fn produce(bootstrap: &str, topic: &str, records: &[SourceRecord]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "67108864")
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    for chunk in records.chunks(2000) {
        let mut deliveries = Vec::new();
        for record in chunk {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, header| {
                    h.insert(rdkafka::message::Header {
                        key: &header.key,
                        value: header.value.as_deref(),
                    })
                });
            let mut message = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(record.partition)
                .headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key);
            }
            if let Some(value) = &record.value {
                message = message.payload(value);
            }
            deliveries.push(
                producer
                    .send_result(message)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
        }
        for delivery in deliveries {
            delivery.await.expect("delivery").expect("acknowledged");
        }
    }
}

/// One round of a policy-only row: the batch again and again for `min_seconds`.
async fn policy_round(
    runner: &mut PolicyRunner,
    batch: &[SourceRecord],
    min_seconds: f64,
    vault: &Vault,
) -> Sample {
    let requests = vault.requests();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut records = 0;
    while records == 0 || started.elapsed().as_secs_f64() < min_seconds {
        let results = runner.transform(batch).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
        records += batch.len();
    }
    Sample {
        records: records as f64,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
        vault_requests: requests.zip(vault.requests()).map(|(a, b)| b - a),
    }
}

/// The pipeline file of a pipeline row (and a latency row) of `case`: `topics` are the
/// source topic, the sink topic and the consumer group, `[source, sink]` their clusters
/// (one cluster twice, or two).
fn pipeline_config(
    case: &Case,
    delivery: DeliveryGuarantee,
    value_bytes: usize,
    [input, sink, group]: [&str; 3],
    options: &Options,
    [source_kafka, sink_kafka]: [&TestKafka; 2],
    vault: &Vault,
) -> kafka_transit::config::PipelineConfig {
    let spec = PipelineSpec {
        source_bootstrap: &source_kafka.bootstrap,
        sink_bootstrap: &sink_kafka.bootstrap,
        source_topic: input,
        sink_topic: sink,
        group,
        policy: format!("builtin = \"{}\"", case.policy),
        policy_config: case.toml,
        errors: "on_failure = \"stop\"",
        vault_address: &vault.url(),
        schema_registry: REGISTRY.get().map(|registry| registry.url.as_str()),
    };
    let mut config = config_of(&spec, case);
    config.pipeline.delivery = delivery;
    if let Some(interval) = options.transaction_interval {
        config.pipeline.transaction_interval = interval;
    }
    config.pipeline.batch_size = 500;
    config.pipeline.progress_interval = Duration::from_secs(3600);
    // Room for an envelope around the largest value.
    config.pipeline.max_record_bytes = config.pipeline.max_record_bytes.max(2 * value_bytes);
    config
}

/// The records `topic` on `cluster` has ever had: the sum of its partitions' high
/// watermarks (on Apache Kafka transaction markers count too).
fn end_offsets(cluster: &TestKafka, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .expect("a consumer for end offsets");
    (0..PARTITIONS)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("end offset of {topic}/{partition}: {e}"));
            high
        })
        .sum()
}

/// One pass of a pipeline row: a fresh consumer group reads the whole input topic from
/// `clusters[0]` and writes `sink` on `clusters[1]`; every record must get there.
#[allow(clippy::too_many_arguments)]
async fn pipeline_pass(
    row: RowId,
    input: &str,
    records: usize,
    sink: &str,
    group: &str,
    options: &Options,
    clusters: [&TestKafka; 2],
    vault: &Vault,
    client: &VaultClient,
) -> Sample {
    let Measure::Pipeline(delivery, _) = row.measure else {
        unreachable!("a pass of a policy row")
    };
    let sink_kafka = clusters[1];
    // On Apache Kafka each pass writes a fresh topic; on the mock the row's own topic.
    let sink_before = if sink_kafka.is_mock() {
        end_offsets(sink_kafka, sink)
    } else {
        0
    };
    let config = pipeline_config(
        row.case,
        delivery,
        row.value_bytes,
        [input, sink, group],
        options,
        clusters,
        vault,
    );
    let pipeline = RunningPipeline::start(config, client.clone()).await;
    // Group join takes seconds and is not what is measured: wait for the first record,
    // polling often so the start of the measured time is close to it.
    let first = pipeline
        .wait_until(Duration::from_secs(60), |m| m.records_in > 0)
        .await;
    let requests = vault.requests();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut last = first;
    while (last.records_out as usize) < records {
        tokio::time::sleep(Duration::from_millis(2)).await;
        last = pipeline.metrics.snapshot();
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{} stalled at {last:?}",
            row.label()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let requests = requests.zip(vault.requests()).map(|(a, b)| b - a);
    let end = pipeline.stop().await.unwrap();
    assert_eq!(
        end.dead_lettered,
        0,
        "{}: records dead-lettered",
        row.label()
    );
    // What the pipeline counted produced is on the sink cluster's topic.
    let written = end_offsets(sink_kafka, sink) - sink_before;
    assert!(
        written >= records as i64,
        "{}: {sink} at {} grew by {written} records, not the {records} of the input",
        row.label(),
        sink_kafka.bootstrap
    );
    Sample {
        records: (last.records_out - first.records_out.min(last.records_out)).max(1) as f64,
        seconds,
        cpu_seconds: cpu,
        vault_requests: requests,
    }
}

/// The policies of the latency rows, each at both delivery guarantees.
const LATENCY_POLICIES: &[&str] = &["passthrough", "envelope-seal", "encrypt-value"];
const LATENCY_DELIVERIES: [DeliveryGuarantee; 2] = [
    DeliveryGuarantee::AtLeastOnce,
    DeliveryGuarantee::ExactlyOnce,
];
const LATENCY_VALUE_BYTES: usize = 1024;
/// Records sent before the measured ones, at the same rate, and not measured (they are
/// still checked to arrive).
const LATENCY_WARMUP: Duration = Duration::from_secs(1);
/// The header carrying when a record was handed to the producer: microseconds since the
/// epoch, in decimal. Every latency policy keeps headers as they are (`headers = "seal"`
/// is off), so it reaches the sink readable.
const SENT_HEADER: &str = "bench.sent-us";
/// Keys of the records that show a pipeline (and the reader) are running, one a partition.
const PRIME_KEY: &[u8] = b"prime-";
/// The latency readers' `fetch.wait.max.ms`, and on the mock cluster the latency
/// pipelines' (see `Reader::start`).
const MOCK_FETCH_WAIT_MS: &str = "5";
/// How long the records still missing at the end of a latency row may take to arrive
/// before the row counts them lost.
const LATENCY_DRAIN: Duration = Duration::from_secs(60);

/// Microseconds since the epoch, from a monotonic clock (the wall clock read once): the
/// producer's and the reader's timestamps are both taken here, in this process.
fn now_us() -> u64 {
    static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();
    let (instant, epoch_us) = *ORIGIN.get_or_init(|| {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970");
        (Instant::now(), since_epoch.as_micros() as u64)
    });
    epoch_us + instant.elapsed().as_micros() as u64
}

fn delivery_label(delivery: DeliveryGuarantee) -> &'static str {
    match delivery {
        DeliveryGuarantee::AtLeastOnce => "at-least-once",
        DeliveryGuarantee::ExactlyOnce => "exactly-once",
    }
}

/// A latency row: a policy's pipeline at a delivery guarantee, or Kafka alone (`None`),
/// at `rate` records per second.
#[derive(Clone, Copy)]
struct LatencyId {
    pipeline: Option<(&'static Case, DeliveryGuarantee)>,
    rate: u64,
}

impl LatencyId {
    fn label(&self) -> String {
        match self.pipeline {
            None => format!("latency/direct/{}rps", self.rate),
            Some((case, delivery)) => format!(
                "latency/{}/{}/{}rps",
                case.name,
                delivery_label(delivery),
                self.rate
            ),
        }
    }

    fn name(&self) -> &'static str {
        self.pipeline.map_or("direct", |(case, _)| case.name)
    }
}

/// What a latency row measured: send-to-seen times of the measured records.
struct Latency {
    id: LatencyId,
    /// Records measured (sent after the warm-up), every one of them seen.
    records: usize,
    /// The rate the producer held over the measured records.
    sent_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    /// Records whose sent time came from their CreateTime (milliseconds), the header
    /// missing on the sink.
    create_time: usize,
    /// Records seen more than once (at-least-once may write a record again).
    duplicates: usize,
}

/// What the reader saw, by record sequence number.
#[derive(Default)]
struct Seen {
    /// Microseconds from sent to seen; `u64::MAX` for a record not seen (yet).
    latency_us: Vec<u64>,
    duplicates: usize,
    create_time: usize,
}

/// A read_committed consumer of every partition of a topic, on a thread of its own,
/// noting when each record arrives.
struct Reader {
    stop: Arc<AtomicBool>,
    /// Distinct records seen (priming records not counted).
    seen: Arc<AtomicUsize>,
    /// Distinct priming records seen.
    primes: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Reader {
    fn start(bootstrap: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // Apache Kafka answers a fetch as soon as one byte is there (fetch.min.bytes
            // = 1); the mock cluster instead holds a fetch that finds nothing for the
            // whole fetch.wait.max.ms (500 ms by default), even if records arrive.
            .set("fetch.wait.max.ms", MOCK_FETCH_WAIT_MS)
            .create()
            .expect("reader");
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&partitions).expect("assign");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let primes = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let (stop, seen_count, primes_count) = (stop.clone(), seen.clone(), primes.clone());
            move || {
                let mut seen = Seen::default();
                let mut distinct = 0;
                let mut prime_keys = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let message = match consumer.poll(Duration::from_millis(20)) {
                        None => continue,
                        Some(Ok(message)) => message,
                        Some(Err(error)) => {
                            eprintln!("latency reader: {error}");
                            continue;
                        }
                    };
                    let now = now_us();
                    let key = message.key().unwrap_or_default();
                    if key.starts_with(PRIME_KEY) {
                        prime_keys.insert(key.to_vec());
                        primes_count.store(prime_keys.len(), Ordering::Relaxed);
                        continue;
                    }
                    let sequence: usize = std::str::from_utf8(key)
                        .ok()
                        .and_then(|k| k.strip_prefix('l')?.parse().ok())
                        .unwrap_or_else(|| panic!("a latency record's key: {key:?}"));
                    let header = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == SENT_HEADER)
                            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
                    });
                    let sent = header.unwrap_or_else(|| {
                        seen.create_time += 1;
                        let ms = message.timestamp().to_millis().expect("a CreateTime");
                        ms as u64 * 1000
                    });
                    if seen.latency_us.len() <= sequence {
                        seen.latency_us.resize(sequence + 1, u64::MAX);
                    }
                    if seen.latency_us[sequence] == u64::MAX {
                        seen.latency_us[sequence] = now.saturating_sub(sent);
                        distinct += 1;
                        seen_count.store(distinct, Ordering::Relaxed);
                    } else {
                        seen.duplicates += 1;
                    }
                }
                seen
            }
        });
        Reader {
            stop,
            seen,
            primes,
            thread,
        }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("latency reader")
    }
}

/// The latency producer: records handed over at once (linger.ms = 0).
fn latency_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("latency producer")
}

/// Sends one priming record to every partition of `topic` until the reader has seen all
/// of them (through the pipeline, if there is one): the pipeline has joined its group
/// and every partition is being read.
async fn prime(producer: &FutureProducer, topic: &str, reader: &Reader, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for partition in 0..PARTITIONS {
            let key = [PRIME_KEY, partition.to_string().as_bytes()].concat();
            producer
                .send(
                    FutureRecord::<[u8], [u8]>::to(topic)
                        .partition(partition)
                        .key(&key)
                        .payload(b"prime"),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("priming record acknowledged");
        }
        let wait = Instant::now() + Duration::from_secs(5);
        while Instant::now() < wait {
            if reader.primes.load(Ordering::Relaxed) >= PARTITIONS as usize {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the priming records did not come through in 120 s"
        );
    }
}

/// Sends `LATENCY_WARMUP` and then `measured` worth of records at `rate` per second:
/// every millisecond, the records due by then. Returns how many were sent before the
/// measured ones, how many in all, and the seconds the measured ones took to send.
async fn paced_produce(
    producer: &FutureProducer,
    topic: &str,
    rate: u64,
    measured: Duration,
) -> (usize, usize, f64) {
    let warm = (rate as f64 * LATENCY_WARMUP.as_secs_f64()).round() as usize;
    let total = warm + ((rate as f64 * measured.as_secs_f64()).round() as usize).max(1);
    let mut deliveries = Vec::with_capacity(total);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut measured_from = started;
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while sent < due {
            if sent == warm {
                measured_from = Instant::now();
            }
            let key = format!("l{sent}");
            let value = value(sent, LATENCY_VALUE_BYTES);
            let now = now_us();
            let stamp = now.to_string();
            let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
                key: SENT_HEADER,
                value: Some(stamp.as_bytes()),
            });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers)
                .timestamp((now / 1000) as i64);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .expect("enqueue"),
            );
            sent += 1;
        }
    }
    let seconds = measured_from.elapsed().as_secs_f64();
    for delivery in deliveries {
        delivery.await.expect("delivery").expect("acknowledged");
    }
    (warm, total, seconds)
}

/// The `q` quantile of sorted `values`, by nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One latency row: fresh topics (and a pipeline with a fresh group reading one and
/// writing the other), a reader, the primes, then records at the row's rate.
async fn latency_row(
    id: LatencyId,
    prefix: &str,
    options: &Options,
    kafka: &TestKafka,
    vault: &Vault,
    client: &VaultClient,
) -> Latency {
    let label = id.label();
    eprintln!("{label}...");
    let name = label.replace('/', "-");
    let input = format!("{prefix}-{name}-in");
    let sink = format!("{prefix}-{name}-out");
    let mut topics = vec![(input.as_str(), PARTITIONS)];
    if id.pipeline.is_some() {
        topics.push((sink.as_str(), PARTITIONS));
    }
    kafka.create_topics(&topics, &[]).await;
    let pipeline = match id.pipeline {
        None => None,
        Some((case, delivery)) => {
            let group = format!("{prefix}-{name}");
            let mut config = pipeline_config(
                case,
                delivery,
                LATENCY_VALUE_BYTES,
                [&input, &sink, &group],
                options,
                [kafka, kafka],
                vault,
            );
            if kafka.is_mock() {
                // The mock cluster holds a fetch that finds nothing for the whole
                // fetch.wait.max.ms (librdkafka's 500 ms) even when records arrive
                // meanwhile, where Apache Kafka answers as they arrive: without this the
                // mock's rows measure that wait (p50 ~265 ms, p99 ~505 ms at 1,000/s).
                config
                    .source
                    .properties
                    .0
                    .insert("fetch.wait.max.ms".into(), MOCK_FETCH_WAIT_MS.into());
            }
            Some(RunningPipeline::start(config, client.clone()).await)
        }
    };
    let read = if pipeline.is_some() { &sink } else { &input };
    let reader = Reader::start(&kafka.bootstrap, read);
    let producer = latency_producer(&kafka.bootstrap);
    prime(&producer, &input, &reader, &label).await;
    let measured = Duration::from_secs_f64(options.latency_seconds);
    let (warm, total, seconds) = paced_produce(&producer, &input, id.rate, measured).await;
    let deadline = Instant::now() + LATENCY_DRAIN;
    while reader.seen.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = reader.finish();
    if let Some(pipeline) = pipeline {
        let end = pipeline
            .stop()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(end.dead_lettered, 0, "{label}: records dead-lettered");
    }
    if !kafka.is_mock() {
        let names: Vec<&str> = topics.iter().map(|(t, _)| *t).collect();
        kafka.delete_topics(&names).await;
    }
    let missing = (0..total)
        .filter(|&i| seen.latency_us.get(i).is_none_or(|&l| l == u64::MAX))
        .count();
    assert_eq!(
        missing, 0,
        "{label}: {missing} of {total} records produced never reached {read} (waited {LATENCY_DRAIN:?})"
    );
    let mut latencies = seen.latency_us[warm..total].to_vec();
    latencies.sort_unstable();
    Latency {
        id,
        records: latencies.len(),
        sent_per_second: latencies.len() as f64 / seconds.max(1e-9),
        p50_us: quantile(&latencies, 0.5),
        p99_us: quantile(&latencies, 0.99),
        max_us: latencies[latencies.len() - 1],
        create_time: seen.create_time,
        duplicates: seen.duplicates,
    }
}

/// The latency table, and the rows as JSON.
fn report_latency(
    latencies: &[Latency],
    options: &Options,
    where_: &str,
    json: &mut Vec<serde_json::Value>,
) {
    if latencies.is_empty() {
        return;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let same_rate = |row: &Latency, name: &str, delivery: Option<DeliveryGuarantee>| {
        latencies.iter().find(|r| {
            r.id.rate == row.id.rate
                && r.id.name() == name
                && r.id.pipeline.map(|(_, d)| d) == delivery
        })
    };
    println!(
        "\nlatency through {where_}: {} KiB values sent at a fixed rate by a producer with \
         linger.ms = 0 to the source topic, read from the sink topic by a read_committed \
         consumer; per record, the time it was seen minus the time it was handed to the \
         producer (header {SENT_HEADER}, microseconds, one clock in this process); \
         {:?} of warm-up, then {} s measured; every record sent must be seen",
        LATENCY_VALUE_BYTES / 1024,
        LATENCY_WARMUP,
        options.latency_seconds
    );
    println!(
        "direct = the same producer and consumer on one topic, no pipeline: what Kafka alone \
         costs; added = the row minus direct at the same rate; p99 / passthrough = against \
         passthrough at the same delivery and rate; exactly-once transaction_interval {}",
        options
            .transaction_interval
            .map_or_else(|| "default (100 ms)".to_string(), |i| format!("{i:?}"))
    );
    if options.kafka.is_none() {
        println!(
            "NOTE: the mock cluster ignores read_committed (it writes no transaction markers \
             and its last stable offset is its high watermark): exactly-once records are seen \
             before their transaction commits. Use --kafka for exactly-once latency. The \
             pipelines' consumers get fetch.wait.max.ms = {MOCK_FETCH_WAIT_MS} here, as the \
             reader: the mock holds an empty fetch for all of it (Apache Kafka does not)."
        );
    }
    println!(
        "\n{:<44} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "row",
        "records",
        "sent/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "added p50",
        "added p99",
        "p99/pass"
    );
    for row in latencies {
        let direct = same_rate(row, "direct", None);
        let passthrough = row
            .id
            .pipeline
            .and_then(|(_, delivery)| same_rate(row, "passthrough", Some(delivery)));
        let added = |f: fn(&Latency) -> u64| {
            direct
                .filter(|_| row.id.pipeline.is_some())
                .map(|d| (f(row) as f64 - f(d) as f64) / 1000.0)
        };
        let added_p50 = added(|l| l.p50_us);
        let added_p99 = added(|l| l.p99_us);
        let vs_passthrough = passthrough.map(|p| row.p99_us as f64 / p.p99_us.max(1) as f64);
        let show =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!(
            "{:<44} {:>8} {:>8.0} {:>9.2} {:>9.2} {:>9.2} {:>10} {:>10} {:>8}",
            row.id.label(),
            row.records,
            row.sent_per_second,
            ms(row.p50_us),
            ms(row.p99_us),
            ms(row.max_us),
            show(added_p50, 2),
            show(added_p99, 2),
            show(vs_passthrough, 2),
        );
        if row.create_time > 0 {
            println!(
                "  {} records had no {SENT_HEADER} header on the sink: their sent time is \
                 their CreateTime, to the millisecond",
                row.create_time
            );
        }
        if row.duplicates > 0 {
            println!("  {} records were seen more than once", row.duplicates);
        }
        json.push(serde_json::json!({
            "measure": "latency",
            "name": row.id.name(),
            "policy": row.id.pipeline.map(|(case, _)| case.policy),
            "delivery": row.id.pipeline.map(|(_, d)| delivery_label(d)),
            "rate": row.id.rate,
            "value_bytes": LATENCY_VALUE_BYTES,
            "records": row.records,
            "sent_per_second": row.sent_per_second,
            "latency_us": {"p50": row.p50_us, "p99": row.p99_us, "max": row.max_us},
            "added_us": added_p50.zip(added_p99).map(|(p50, p99)| {
                serde_json::json!({"p50": p50 * 1000.0, "p99": p99 * 1000.0})
            }),
            "p99_vs_passthrough": vs_passthrough,
            "create_time_records": row.create_time,
            "duplicates": row.duplicates,
        }));
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median, min and max.
fn summary(mut values: Vec<f64>) -> (f64, f64, f64) {
    let m = median(&mut values);
    (m, values[0], values[values.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    // The pipeline's own log (warnings, retries, Vault pauses), when asked for: a row
    // that is slower than it should be usually says why there.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let vault = match &options.vault {
        None => Vault::Dev(
            vault_dev::Server::start(vault_dev::ServerConfig::default())
                .await
                .unwrap(),
        ),
        Some(address) => Vault::External(address.clone()),
    };
    vault.create_key().await;
    if CASES
        .iter()
        .any(|case| case.policy == "encrypt-schema-fields")
    {
        start_registry().await;
    }
    let settings = VaultSettings::for_token(vault.url(), "KAFKA_TRANSIT_BENCH_UNUSED");
    let client = VaultClient::with_token(&settings, VaultToken::new(vault.token())).unwrap();

    // The rows, in the order each round runs them.
    let selected = |measure: Measure, case: &Case, size: usize| {
        let label = format!("{}/{}/{}", measure.label(), case.name, size_label(size));
        (!case.transit || size <= TRANSIT_MAX_VALUE)
            && (options.only.is_empty() || options.only.iter().any(|w| label.contains(w)))
    };
    let two_clusters = Measure::Pipeline(DeliveryGuarantee::ExactlyOnce, Clusters::Two);
    let mut measures = vec![
        Measure::Policy,
        Measure::Pipeline(DeliveryGuarantee::AtLeastOnce, Clusters::One),
        Measure::Pipeline(DeliveryGuarantee::ExactlyOnce, Clusters::One),
        two_clusters,
    ];
    // Apache Kafka without a second one: no sink cluster for the two-cluster rows.
    let skipped_two_clusters = options.kafka.is_some()
        && options.sink_kafka.is_none()
        && options
            .sizes
            .iter()
            .any(|&size| CASES.iter().any(|c| selected(two_clusters, c, size)));
    if options.kafka.is_some() && options.sink_kafka.is_none() {
        measures.retain(|&m| m != two_clusters);
    }
    if skipped_two_clusters {
        eprintln!("{SKIPPED_TWO_CLUSTERS}");
    }
    let prefix = match &options.kafka {
        None => "bench".to_string(),
        Some(_) => format!("bench-{}", std::process::id()),
    };
    // Topic names take `A-Z a-z 0-9 . _ -`: a case's `+` becomes `_`.
    let input_topic = |size: usize, input: &str| {
        format!(
            "{prefix}-in-{}-{}",
            size_label(size),
            input.replace('+', "_")
        )
    };

    let mut rows: Vec<Row> = Vec::new();
    // Inputs prepared once per size: plain and JSON records, and each encrypting case's
    // output (keyed by `Case::input_name`).
    let mut inputs: BTreeMap<(usize, &str), Vec<SourceRecord>> = BTreeMap::new();
    // Sink bytes per record, once per case and size.
    let mut sink_sizes: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    for &size in &options.sizes {
        let count = (options.input_bytes / size).max(1);
        for &measure in &measures {
            for case in CASES.iter().filter(|c| selected(measure, c, size)) {
                for (input, make) in [
                    (
                        "plain",
                        plain_records as fn(usize, usize) -> Vec<SourceRecord>,
                    ),
                    ("json", json_records),
                    ("customers-json", |n, size| {
                        customer_records(n, size, Format::Json)
                    }),
                    ("customers-avro", |n, size| {
                        customer_records(n, size, Format::Avro)
                    }),
                    ("customers-jsonschema", |n, size| {
                        customer_records(n, size, Format::JsonSchema)
                    }),
                    ("customers-protobuf", |n, size| {
                        customer_records(n, size, Format::Protobuf)
                    }),
                    ("subjects-1k", |n, size| {
                        subject_records(n, size, SUBJECTS_FEW)
                    }),
                    ("subjects-100k", |n, size| {
                        subject_records(n, size, SUBJECTS_MANY)
                    }),
                ] {
                    let needed = case.input_name() == input
                        || case
                            .reads
                            .is_some_and(|e| self::case(e).input_name() == input);
                    if needed && !inputs.contains_key(&(size, input)) {
                        inputs.insert((size, input), make(count, size));
                    }
                }
                if let Some(encrypting) = case.reads {
                    let encrypting = self::case(encrypting);
                    if !inputs.contains_key(&(size, encrypting.name)) {
                        eprintln!(
                            "preparing {count} {} records of {size} bytes...",
                            encrypting.name
                        );
                        let originals = &inputs[&(size, encrypting.input_name())];
                        let sealed = transformed(encrypting, originals, &client).await;
                        check_round_trip(case, &sealed, originals, &client).await;
                        inputs.insert((size, encrypting.name), sealed);
                    }
                }
                let source = &inputs[&(size, case.input_name())];
                let batch = source[..batch_size(size).min(source.len())].to_vec();
                let sink_bytes = match sink_sizes.entry((size, case.name)) {
                    Entry::Occupied(known) => *known.get(),
                    Entry::Vacant(slot) => *slot.insert(sink_bytes(case, &batch, &client).await),
                };
                let work = match measure {
                    Measure::Policy => {
                        let mut runner = start_policy(case, size, &client).await;
                        runner.transform(&batch).await.unwrap(); // warm-up
                        Work::Policy { runner, batch }
                    }
                    Measure::Pipeline(..) => Work::Pipeline {
                        input: input_topic(size, case.input_name()),
                        records: source.len(),
                        sink: format!(
                            "{prefix}-out-{}-{}-{}",
                            measure.label(),
                            case.name.replace('+', "_"),
                            size_label(size)
                        ),
                        passes: 0,
                    },
                };
                rows.push(Row {
                    id: RowId {
                        case,
                        measure,
                        value_bytes: size,
                    },
                    work,
                    samples: Vec::new(),
                    sink_bytes,
                });
            }
        }
    }
    // The latency rows, each rate's direct baseline first.
    let mut latency_ids: Vec<LatencyId> = Vec::new();
    for &rate in &options.rates {
        latency_ids.push(LatencyId {
            pipeline: None,
            rate,
        });
        for &policy in LATENCY_POLICIES {
            for delivery in LATENCY_DELIVERIES {
                latency_ids.push(LatencyId {
                    pipeline: Some((case(policy), delivery)),
                    rate,
                });
            }
        }
    }
    latency_ids.retain(|id| {
        let label = id.label();
        options.only.is_empty() || options.only.iter().any(|w| label.contains(w))
    });
    assert!(
        !rows.is_empty() || !latency_ids.is_empty(),
        "no row matches --only"
    );

    // Kafka, with the input topics the pipeline rows read.
    let mut used_inputs: Vec<(usize, &str)> = Vec::new();
    let mut topics: Vec<String> = Vec::new();
    // The sink topics of the two-cluster rows, on the second cluster.
    let mut sink_topics: Vec<String> = Vec::new();
    for row in &rows {
        if let Work::Pipeline { input, sink, .. } = &row.work {
            if !topics.contains(input) {
                topics.push(input.clone());
                used_inputs.push((row.id.value_bytes, row.id.case.input_name()));
            }
            // On Apache Kafka every pass writes a sink topic of its own, deleted after
            // it: the outputs of a whole run would not fit on the disk.
            if options.kafka.is_none() {
                match row.id.measure.clusters() {
                    Some(Clusters::Two) => sink_topics.push(sink.clone()),
                    _ => topics.push(sink.clone()),
                }
            }
        }
    }
    let any_two_clusters = rows
        .iter()
        .any(|row| row.id.measure.clusters() == Some(Clusters::Two));
    let mut kafka = None;
    let mut where_ = String::from("no Kafka");
    if !topics.is_empty() || !latency_ids.is_empty() {
        let mut list: Vec<(&str, i32)> = topics.iter().map(|t| (t.as_str(), PARTITIONS)).collect();
        let cluster = match &options.kafka {
            None => {
                // The mock cluster cannot create topics through the admin API.
                list.push(("kafka-transit-offsets", 1));
                list.push(("bench-forgotten", 1));
                TestKafka::start(&list)
            }
            Some(bootstrap) => {
                let cluster = TestKafka::at(bootstrap);
                cluster
                    .create_topics(&list, &[("max.message.bytes", "67108864")])
                    .await;
                cluster
            }
        };
        where_ = if cluster.is_mock() {
            "librdkafka's in-process mock cluster".to_string()
        } else {
            format!("Apache Kafka at {}", cluster.bootstrap)
        };
        for key in &used_inputs {
            let topic = input_topic(key.0, key.1);
            eprintln!("producing {topic} to {where_}...");
            produce(&cluster.bootstrap, &topic, &inputs[key]).await;
        }
        kafka = Some(cluster);
    }
    drop(inputs);
    // The second cluster, the sink of the two-cluster rows.
    let sink_kafka = match (&options.sink_kafka, any_two_clusters) {
        (_, false) => None,
        (None, true) => {
            // The mock cluster cannot create topics through the admin API: the sink
            // topics and the exactly-once offsets topic (which the pipeline would create,
            // compacted, on Apache Kafka).
            let mut list: Vec<(&str, i32)> = sink_topics
                .iter()
                .map(|t| (t.as_str(), PARTITIONS))
                .collect();
            list.push(("kafka-transit-offsets", 1));
            Some(TestKafka::start(&list))
        }
        (Some(bootstrap), true) => Some(TestKafka::at(bootstrap)),
    };
    let where_rows = match &sink_kafka {
        None => where_.clone(),
        Some(sink) if sink.is_mock() => {
            format!("{where_} (pipeline-eos-2c: to a second mock cluster)")
        }
        Some(sink) => format!(
            "{where_} (pipeline-eos-2c: to Apache Kafka at {})",
            sink.bootstrap
        ),
    };

    // Warm-up rounds (one pass each, not measured), then round-robin: round 1 of every
    // row, then round 2, ...
    for round in 0..options.warmup + options.rounds {
        let warm = round < options.warmup;
        let min_seconds = if warm { 0.0 } else { options.min_seconds };
        for row in rows.iter_mut() {
            if warm {
                eprintln!(
                    "warm-up {}/{}: {}",
                    round + 1,
                    options.warmup,
                    row.id.label()
                );
            } else {
                let round = round - options.warmup;
                eprintln!("round {}/{}: {}", round + 1, options.rounds, row.id.label());
            }
            let sample = match &mut row.work {
                Work::Policy { runner, batch } => {
                    policy_round(runner, batch, min_seconds, &vault).await
                }
                Work::Pipeline {
                    input,
                    records,
                    sink,
                    passes,
                } => {
                    let mut total = Sample {
                        vault_requests: vault.requests().map(|_| 0),
                        ..Sample::default()
                    };
                    while total.records == 0.0 || total.seconds < min_seconds {
                        *passes += 1;
                        let group = format!("{sink}-{passes}");
                        let kafka = kafka.as_ref().unwrap();
                        let sink_cluster = match row.id.measure.clusters() {
                            Some(Clusters::Two) => sink_kafka.as_ref().unwrap(),
                            _ => kafka,
                        };
                        let sink = if sink_cluster.is_mock() {
                            sink.clone()
                        } else {
                            let sink = format!("{sink}-{passes}");
                            sink_cluster
                                .create_topics(
                                    &[(&sink, PARTITIONS)],
                                    &[("max.message.bytes", "67108864")],
                                )
                                .await;
                            sink
                        };
                        let pass = pipeline_pass(
                            row.id,
                            input,
                            *records,
                            &sink,
                            &group,
                            &options,
                            [kafka, sink_cluster],
                            &vault,
                            &client,
                        )
                        .await;
                        if !sink_cluster.is_mock() {
                            sink_cluster.delete_topics(&[&sink]).await;
                        }
                        total.add(pass);
                    }
                    total
                }
            };
            if !warm {
                row.samples.push(sample);
            }
        }
    }

    // The latency rows, one after the other, after the throughput rounds.
    let mut latencies = Vec::new();
    for &id in &latency_ids {
        let kafka = kafka.as_ref().unwrap();
        latencies.push(latency_row(id, &prefix, &options, kafka, &vault, &client).await);
    }

    report(&rows, &latencies, &options, [&where_rows, &where_], &vault);
    if skipped_two_clusters {
        println!("\nNOTE: {SKIPPED_TWO_CLUSTERS}");
    }
    if let Vault::Dev(server) = vault {
        server.shutdown().await;
    }
}

/// `where_`: where the pipeline rows ran, and the latency rows.
fn report(
    rows: &[Row],
    latencies: &[Latency],
    options: &Options,
    [where_rows, where_]: [&str; 2],
    vault: &Vault,
) {
    // The row of `policy` (no options) on the same records, measure and size.
    let same_records = |row: &Row, policy: &str| {
        rows.iter().find(|r| {
            r.id.case.policy == policy
                && r.id.case.toml == CASES.iter().find(|c| c.policy == policy).unwrap().toml
                && r.id.case.input == row.id.case.input
                && r.id.case.reads.is_none()
                && r.id.measure == row.id.measure
                && r.id.value_bytes == row.id.value_bytes
        })
    };
    let baseline = |row: &Row| same_records(row, "passthrough");
    // Per-round ratios of `row`'s rate to `base`'s: median, min, max.
    let ratio = |row: &Row, base: &Row| {
        summary(
            row.samples
                .iter()
                .zip(&base.samples)
                .map(|(s, b)| row.mb_per_second(s) / base.mb_per_second(b))
                .collect(),
        )
    };
    let vault_name = match vault {
        Vault::Dev(_) => "in-process vault-dev".to_string(),
        Vault::External(address) => format!("Vault at {address}"),
    };
    let in_process = [
        (options.kafka.is_none(), "the mock cluster"),
        (options.vault.is_none(), "vault-dev"),
    ]
    .iter()
    .filter(|(yes, _)| *yes)
    .map(|(_, what)| *what)
    .collect::<Vec<_>>();
    // Only latency rows: no throughput table.
    if !rows.is_empty() {
        println!(
            "\n{} rounds per row (after {} unmeasured), interleaved, each at least {} s; \
         {vault_name}; pipeline rows through {where_rows}; batches of up to 500",
            options.rounds, options.warmup, options.min_seconds
        );
        println!(
            "median [min-max] over rounds; vs passthrough = median of per-round ratios to the \
         passthrough row of the same measure, size and records (json-* rows: json-passthrough); \
         sink B/rec = bytes written to the sink per record (key, value, headers' names and values)"
        );
        if in_process.is_empty() {
            println!("CPU: this process (the runner) alone, user+system, per MB/s of values moved");
        } else {
            println!(
                "CPU: this process, user+system, per MB/s of values moved; it INCLUDES {} \
             running in-process (use --kafka and --vault for the runner's own)",
                in_process.join(" and ")
            );
        }
        println!(
            "\n{:<15} {:<5} {:<23} {:>9} {:>19} {:>10} {:>18} {:>12} {:>10} {:>9} {:>10}",
            "measure",
            "size",
            "policy",
            "MB/s",
            "[min-max]",
            "records/s",
            "vs passthrough",
            "mcores/MB/s",
            "vault/rnd",
            "vault/1k",
            "sink B/rec"
        );
    }
    let mut json = Vec::new();
    for row in rows {
        let mbps: Vec<f64> = row.samples.iter().map(|s| row.mb_per_second(s)).collect();
        let (mb, mb_min, mb_max) = summary(mbps.clone());
        let (rps, _, _) = summary(row.samples.iter().map(|s| s.records / s.seconds).collect());
        // Millicores per MB/s: (cpu / wall * 1000) / (MB/s), per round.
        let (mcores, _, _) = summary(
            row.samples
                .iter()
                .map(|s| s.cpu_seconds / s.seconds * 1000.0 / row.mb_per_second(s))
                .collect(),
        );
        let vs_passthrough = baseline(row).map(|base| ratio(row, base));
        let requests: Option<Vec<f64>> = row
            .samples
            .iter()
            .map(|s| s.vault_requests.map(|r| r as f64))
            .collect();
        let per_thousand: Option<Vec<f64>> = row
            .samples
            .iter()
            .map(|s| s.vault_requests.map(|r| r as f64 * 1000.0 / s.records))
            .collect();
        let per_thousand = per_thousand.map(|r| summary(r).0);
        let requests = requests.map(|r| summary(r).0);
        println!(
            "{:<15} {:<5} {:<23} {:>9.1} {:>19} {:>10.0} {:>18} {:>12.1} {:>10} {:>9} {:>10.0}",
            row.id.measure.label(),
            size_label(row.id.value_bytes),
            row.id.case.name,
            mb,
            format!("[{mb_min:.1}-{mb_max:.1}]"),
            rps,
            vs_passthrough.map_or("-".into(), |(m, lo, hi)| format!(
                "{m:.2} [{lo:.2}-{hi:.2}]"
            )),
            mcores,
            requests.map_or("-".into(), |r| format!("{r:.0}")),
            per_thousand.map_or("-".into(), |r| format!("{r:.1}")),
            row.sink_bytes,
        );
        json.push(serde_json::json!({
            "measure": row.id.measure.label(),
            "name": row.id.case.name,
            "policy": row.id.case.policy,
            "value_bytes": row.id.value_bytes,
            "mb_per_second": {"median": mb, "min": mb_min, "max": mb_max},
            "records_per_second": rps,
            "vs_passthrough": vs_passthrough.map(|r| r.0),
            "vs_envelope_seal": same_records(row, "envelope-seal")
                .filter(|base| base.id.case.name != row.id.case.name)
                .map(|base| ratio(row, base).0),
            "millicores_per_mb_per_second": mcores,
            "vault_requests_per_1000_records": per_thousand,
            "sink_bytes_per_record": row.sink_bytes,
            "rounds": mbps,
        }));
    }

    // envelope-seal's options against envelope-seal without them, on the same records.
    let options_rows: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.id.case.policy == "envelope-seal")
        .filter_map(|r| {
            same_records(r, "envelope-seal")
                .filter(|base| base.id.case.name != r.id.case.name)
                .map(|base| (r, base))
        })
        .collect();
    if !options_rows.is_empty() {
        println!(
            "\nenvelope-seal options / envelope-seal without them, on the same records: median \
             of per-round ratios of MB/s (of values read), and bytes written to the sink per record"
        );
    }
    for (row, base) in options_rows {
        let (m, lo, hi) = ratio(row, base);
        println!(
            "{:<15} {:<5} {:<23} {m:.2} [{lo:.2}-{hi:.2}]   sink {:.0} B/rec against {:.0} ({:.2})",
            row.id.measure.label(),
            size_label(row.id.value_bytes),
            row.id.case.name,
            row.sink_bytes,
            base.sink_bytes,
            row.sink_bytes / base.sink_bytes
        );
    }

    // A key per data subject against envelope-seal with one key, on values alike.
    let subject_rows: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| matches!(r.id.case.input, Input::Subjects(_)))
        .filter_map(|r| {
            rows.iter()
                .find(|base| {
                    base.id.case.name == "envelope-seal"
                        && base.id.measure == r.id.measure
                        && base.id.value_bytes == r.id.value_bytes
                })
                .map(|base| (r, base))
        })
        .collect();
    if !subject_rows.is_empty() {
        println!(
            "\na key per data subject / envelope-seal with one key, same values: median of \
             per-round ratios of MB/s; Vault requests per 1,000 records, median over rounds"
        );
    }
    let per_thousand = |row: &Row| {
        let values: Option<Vec<f64>> = row
            .samples
            .iter()
            .map(|s| s.vault_requests.map(|r| r as f64 * 1000.0 / s.records))
            .collect();
        values.map_or("-".to_string(), |v| format!("{:.1}", summary(v).0))
    };
    for (row, base) in subject_rows {
        let (m, lo, hi) = ratio(row, base);
        println!(
            "{:<15} {:<5} {:<23} {m:.2} [{lo:.2}-{hi:.2}]   Vault {} per 1,000 records against {}",
            row.id.measure.label(),
            size_label(row.id.value_bytes),
            row.id.case.name,
            per_thousand(row),
            per_thousand(base)
        );
    }

    // Schema'd fields against encrypt-fields on JSON of the same customers.
    let schema_rows: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| r.id.case.policy == "encrypt-schema-fields")
        .filter_map(|r| {
            rows.iter()
                .find(|base| {
                    base.id.case.name == "customers-encrypt-fields"
                        && base.id.measure == r.id.measure
                        && base.id.value_bytes == r.id.value_bytes
                })
                .map(|base| (r, base))
        })
        .collect();
    if !schema_rows.is_empty() {
        println!(
            "\nencrypt-schema-fields / encrypt-fields on JSON of the same customers (five \
             fields each): median of per-round ratios of MB/s"
        );
    }
    for (row, base) in schema_rows {
        let (m, lo, hi) = ratio(row, base);
        println!(
            "{:<15} {:<5} {:<23} {m:.2} [{lo:.2}-{hi:.2}]",
            row.id.measure.label(),
            size_label(row.id.value_bytes),
            row.id.case.name,
        );
    }

    // Exactly-once against at-least-once: the same policy and size, per round; a line
    // per exactly-once measure (one cluster, two clusters) under each at-least-once row.
    let eos: Vec<(&Row, &Row)> = rows
        .iter()
        .filter(|r| {
            r.id.measure == Measure::Pipeline(DeliveryGuarantee::AtLeastOnce, Clusters::One)
        })
        .flat_map(|alo| {
            rows.iter()
                .filter(move |r| {
                    matches!(
                        r.id.measure,
                        Measure::Pipeline(DeliveryGuarantee::ExactlyOnce, _)
                    ) && r.id.case.name == alo.id.case.name
                        && r.id.value_bytes == alo.id.value_bytes
                })
                .map(move |eos| (eos, alo))
        })
        .collect();
    if !eos.is_empty() {
        println!(
            "\nexactly-once / at-least-once (transaction_interval {}), median of per-round \
             ratios; at-least-once is the `pipeline` row (sink on the source cluster) for both: \
             pipeline-eos = sink on the source cluster (one transaction per runner), \
             pipeline-eos-2c = sink on a second cluster (a transaction per source partition, \
             signed positions)",
            options
                .transaction_interval
                .map_or_else(|| "default".to_string(), |i| format!("{i:?}"))
        );
    }
    for (row, alo) in eos {
        let (m, lo, hi) = summary(
            row.samples
                .iter()
                .zip(&alo.samples)
                .map(|(e, a)| row.mb_per_second(e) / alo.mb_per_second(a))
                .collect(),
        );
        let clusters = match row.id.measure.clusters() {
            Some(Clusters::Two) => "two clusters",
            _ => "one cluster",
        };
        println!(
            "{:<15} {:<5} {:<23} {clusters:<12} {m:.2} [{lo:.2}-{hi:.2}]",
            row.id.measure.label(),
            size_label(row.id.value_bytes),
            row.id.case.name
        );
    }
    report_latency(latencies, options, where_, &mut json);
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&json).unwrap();
        std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
