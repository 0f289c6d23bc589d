//! `pipeline.toml`: what to consume, where to produce, which policy runs in between,
//! how to reach Vault and what to do with records that cannot be transformed.
//!
//! Every error a user can cause names the field to change. Secrets are never inline:
//! the Vault token comes from an environment variable or a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::topics::{Route, SourceTopics, TopicTemplate};
use crate::vault::VaultSettings;

/// A configuration problem, naming the field (`sink.topic`, `policy.path`, ...).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub source: SourceConfig,
    pub sink: SinkConfig,
    pub vault: VaultSettings,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub errors: ErrorsConfig,
    #[serde(default)]
    pub pipeline: TuningConfig,
    /// The admin HTTP listener (metrics, health probes, policy reload); off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The Schema Registry that policies of schema'd records ask for schemas; none when
    /// absent.
    #[serde(default)]
    pub schema_registry: Option<crate::schema_registry::RegistrySettings>,
    /// Where runners learn of forgotten data subjects; required by policies that seal
    /// or open per subject (docs/forgetting.md).
    #[serde(default)]
    pub forget: Option<crate::forget::ForgetSettings>,
}

/// `[admin]`: where Prometheus scrapes and Kubernetes probes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` to listen on, e.g. `"127.0.0.1:9464"` (`"0.0.0.0:9464"` in a pod).
    /// Anyone who reaches it can read metrics and probes; reloading the policy needs
    /// the reload token.
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token that `POST /admin/policy/reload` requires (read
    /// at every request, so a rotated secret is picked up). Without this or
    /// `reload_token_env` the endpoint is off.
    #[serde(default)]
    pub reload_token_file: Option<PathBuf>,
    /// An environment variable holding that token, instead of a file.
    #[serde(default)]
    pub reload_token_env: Option<String>,
    /// `/health/live` fails once the pipeline loop has not gone round for this long.
    #[serde(default = "default_stall_timeout", with = "duration_text")]
    pub stall_timeout: Duration,
    /// How often readiness asks Vault whether it is unsealed and accepts the token.
    #[serde(default = "default_vault_check_interval", with = "duration_text")]
    pub vault_check_interval: Duration,
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_vault_check_interval() -> Duration {
    Duration::from_secs(5)
}

/// The cluster and topics records are consumed from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub bootstrap_servers: String,
    /// Topic names, and regular expressions (starting with `^`, librdkafka's convention)
    /// that pick up matching topics as they are created.
    pub topics: Vec<String>,
    pub group_id: String,
    /// How partitions are shared between runners of the same `group_id`.
    #[serde(default)]
    pub assignment: Assignment,
    /// Any librdkafka consumer property; these win over kafka-transit's defaults.
    #[serde(default)]
    pub properties: Properties,
}

/// How a runner gets its source partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    /// Kafka consumer-group membership: runners of one group share the partitions and
    /// rebalance when one joins or leaves.
    #[default]
    Group,
    /// This runner reads every partition of `source.topics` itself, resuming from the
    /// offsets committed under `group_id`, with no group membership: nothing to
    /// rebalance, nothing to wait for after a crash. Run one runner per group.
    Static,
}

/// The cluster (possibly another one: on-prem to SaaS) records are produced to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub bootstrap_servers: String,
    /// Where a policy's output goes unless the policy names another topic: a name, or a
    /// template of the source topic (`"{topic}.protected"`).
    pub topic: TopicTemplate,
    /// Any librdkafka producer property; these win over kafka-transit's defaults.
    #[serde(default)]
    pub properties: Properties,
    /// Produce each record to the same partition number it came from (the sink topic
    /// needs at least as many partitions). By default the sink partitions by key.
    #[serde(default)]
    pub preserve_partitions: bool,
    /// Which time an output record carries: its source record's (the default, as
    /// MirrorMaker does, so time-based retention and event-time consumers see when the
    /// event happened) or the time kafka-transit produced it.
    #[serde(default)]
    pub timestamp: TimestampSource,
    /// Create a missing sink (or dead-letter) topic when its first record is due, with
    /// the source topic's partition count.
    #[serde(default = "default_create_topics")]
    pub create_topics: bool,
    /// Replication factor of created topics; -1 (the default): the broker's
    /// `default.replication.factor`.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Topic configs of created topics (`"retention.ms" = "604800000"`, ...).
    #[serde(default)]
    pub topic_config: Properties,
}

fn default_create_topics() -> bool {
    true
}
fn default_replication_factor() -> i32 {
    -1
}

/// `sink.timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampSource {
    /// The source record's timestamp (CreateTime or LogAppendTime, as the source topic
    /// recorded it).
    #[default]
    Source,
    /// The time the sink producer sends the record.
    Produce,
}

/// librdkafka properties. TOML numbers and booleans are accepted and passed as text; a
/// value may also come from the environment or a file, `{ env = "NAME" }` or
/// `{ file = "PATH" }`, which is how secrets such as `sasl.password` must be given.
#[derive(Clone, Default)]
pub struct Properties(pub BTreeMap<String, String>);

/// Values are not printed: some are passwords.
impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// librdkafka properties that hold secrets: never accepted as inline text.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
];

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
        raw.into_iter()
            .map(|(name, value)| {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Table(from) => {
                        resolve(&name, &from).map_err(serde::de::Error::custom)?
                    }
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "property \"{name}\" must be a string, number, boolean, \
                             {{ env = \"NAME\" }} or {{ file = \"PATH\" }}, not {}",
                            other.type_str()
                        )))
                    }
                };
                Ok((name, text))
            })
            .collect::<Result<_, _>>()
            .map(Properties)
    }
}

/// A property value from `{ env = "NAME" }` or `{ file = "PATH" }`.
fn resolve(name: &str, from: &toml::Table) -> Result<String, String> {
    match (from.get("env"), from.get("file"), from.len()) {
        (Some(toml::Value::String(var)), None, 1) => std::env::var(var)
            .map_err(|_| format!("property \"{name}\": environment variable \"{var}\" is not set")),
        (None, Some(toml::Value::String(path)), 1) => std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("property \"{name}\": cannot read {path}: {e}")),
        _ => Err(format!(
            "property \"{name}\": write {{ env = \"NAME\" }} or {{ file = \"PATH\" }}"
        )),
    }
}

/// The longest run of characters from the file that a quoted part of an error may show:
/// a short value ("1s", "orders", "{topic}.dlq") says what is wrong, a longer one may be a
/// secret written in the wrong field.
const MAX_SHOWN_CHARS: usize = 11;

impl ConfigError {
    /// This error with each quoted part (`"..."` or `` `...` ``: the value of a field, a
    /// value serde or toml names) that shares a run of more than [`MAX_SHOWN_CHARS`]
    /// characters with `text`, letter case aside, replaced by `[not shown]`, unless the
    /// run is part of a key of the file (a field name, as in "unknown field").
    fn without_values_of(self, text: &str) -> Self {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        if let Ok(table) = text.parse::<toml::Table>() {
            collect_keys(&table, &mut keys);
            collect_long_strings(&toml::Value::Table(table), &mut values);
        }
        let file = text.to_ascii_lowercase();
        // The file's long string values wherever the message holds them first: serde
        // quotes a value as it is, so one holding a quote would end the quoted part
        // early, and the rest of it would be shown.
        let clean = |message: String| {
            let message = without_strings(&message, &values);
            without_quoted_values(&message, &file, &keys)
        };
        match self {
            ConfigError::Syntax { path, message } => ConfigError::Syntax {
                path,
                message: clean(message),
            },
            ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: clean(field),
                message: clean(message),
            },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

/// Every key of `table` and the tables inside it, lowercased.
fn collect_keys(table: &toml::Table, keys: &mut Vec<String>) {
    fn in_value(value: &toml::Value, keys: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => collect_keys(table, keys),
            toml::Value::Array(values) => values.iter().for_each(|v| in_value(v, keys)),
            _ => {}
        }
    }
    for (key, value) in table {
        keys.push(key.to_ascii_lowercase());
        in_value(value, keys);
    }
}

/// Every string in `value` longer than [`MAX_SHOWN_CHARS`] characters, lowercased.
fn collect_long_strings(value: &toml::Value, strings: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if text.chars().count() > MAX_SHOWN_CHARS => {
            strings.push(text.to_ascii_lowercase())
        }
        toml::Value::Table(table) => table
            .values()
            .for_each(|value| collect_long_strings(value, strings)),
        toml::Value::Array(values) => values
            .iter()
            .for_each(|value| collect_long_strings(value, strings)),
        _ => {}
    }
}

/// `message` with each occurrence of one of `strings` (lowercased), letter case aside,
/// replaced by `[not shown]`.
fn without_strings(message: &str, strings: &[String]) -> String {
    let mut message = message.to_string();
    for string in strings {
        // ASCII lowercasing keeps every byte where it was, so positions carry over.
        while let Some(at) = message.to_ascii_lowercase().find(string.as_str()) {
            message.replace_range(at..at + string.len(), "[not shown]");
        }
    }
    message
}

/// `message` with its quoted parts that come from `file` (lowercased) replaced.
fn without_quoted_values(message: &str, file: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open];
        let inside = &rest[open + 1..];
        // Debug formatting escapes a quote inside with a backslash.
        let close = inside
            .char_indices()
            .scan(false, |escaped, (at, c)| {
                let end = !*escaped && c as u32 == u32::from(quote);
                *escaped = !*escaped && c == '\\' && quote == b'"';
                Some((at, end))
            })
            .find_map(|(at, end)| end.then_some(at));
        let Some(close) = close else { break };
        out.push_str(&rest[..=open]);
        let value = &inside[..close];
        if shares_a_long_run(value, file, keys) {
            out.push_str("[not shown]");
        } else {
            out.push_str(value);
        }
        out.push(quote as char);
        rest = &inside[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `value` holds more than [`MAX_SHOWN_CHARS`] characters in a row that are in
/// `file` (lowercased) but not inside one of `keys`.
fn shares_a_long_run(value: &str, file: &str, keys: &[String]) -> bool {
    let value = value.to_ascii_lowercase();
    let starts: Vec<usize> = value.char_indices().map(|(at, _)| at).collect();
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([value.len()])
        .collect();
    (0..starts.len()).any(|first| {
        let Some(&end) = ends.get(first + MAX_SHOWN_CHARS) else {
            return false;
        };
        let run = &value[starts[first]..end];
        file.contains(run) && !keys.iter().any(|key| key.contains(run))
    })
}

/// A TOML error as "line L, column C: what is wrong", without the excerpt of the file
/// that `toml`'s `Display` quotes.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    ConfigError::Syntax {
        path: PathBuf::from("pipeline config"),
        message: format!("{}{}", at.unwrap_or_default(), error.message()),
    }
}

/// Refuses secrets written inline, before the typed parse (whose error excerpts would
/// quote the offending line back), naming the field but never the value.
fn refuse_inline_secrets(table: &toml::Table) -> Result<(), ConfigError> {
    let text_at = |path: &[&str]| -> bool {
        let mut value: Option<&toml::Value> = None;
        let mut current = table;
        for (depth, part) in path.iter().enumerate() {
            value = current.get(*part);
            match value {
                Some(toml::Value::Table(next)) if depth + 1 < path.len() => current = next,
                _ if depth + 1 < path.len() => return false,
                _ => {}
            }
        }
        matches!(value, Some(toml::Value::String(_)))
    };
    let inline = |field: String, instead: &str| ConfigError::Invalid {
        field,
        message: format!("secrets are never written in the configuration; use {instead}"),
    };
    if text_at(&["vault", "token"]) {
        return Err(inline(
            "vault.token".into(),
            "vault.token_env or vault.token_file",
        ));
    }
    for secret in ["role_id", "secret_id"] {
        if text_at(&["vault", "approle", secret]) {
            return Err(inline(
                format!("vault.approle.{secret}"),
                &format!("vault.approle.{secret}_env or vault.approle.{secret}_file"),
            ));
        }
    }
    for method in ["jwt", "kubernetes"] {
        if text_at(&["vault", method, "jwt"]) {
            return Err(inline(
                format!("vault.{method}.jwt"),
                &format!("vault.{method}.jwt_file"),
            ));
        }
    }
    for side in ["source", "sink"] {
        for property in SECRET_PROPERTIES {
            if text_at(&[side, "properties", property]) {
                return Err(inline(
                    format!("{side}.properties.\"{property}\""),
                    "{ env = \"NAME\" } or { file = \"PATH\" }",
                ));
            }
        }
    }
    Ok(())
}

/// Which policy runs, and its own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A policy embedded in the host (see `policy::builtin::names`).
    pub builtin: Option<String>,
    /// A policy component on disk (`.wasm`), swapped in without rebuilding the host.
    pub path: Option<PathBuf>,
    /// Handed to the policy's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Linear memory one policy instance may grow to, in MiB.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// Guest CPU time allowed per batch (time spent waiting on Vault does not count).
    #[serde(default = "default_batch_deadline", with = "duration_text")]
    pub batch_deadline: Duration,
    /// Longest a batch may wait on Vault, all of its host calls (and their retries)
    /// together. Past it the batch's Vault calls fail as unavailable ("Vault
    /// unreachable") and the pipeline pauses and tries the batch again later, so a
    /// Vault that accepts connections but never answers cannot hold a batch (or an
    /// exactly-once transaction) for minutes.
    #[serde(default = "default_vault_deadline", with = "duration_text")]
    pub vault_deadline: Duration,
    /// When envelope data keys are retired: `[policy.data_keys]`.
    #[serde(default)]
    pub data_keys: crate::envelope::DataKeyPolicy,
    /// How often the file at `policy.path` is checked for a new component (see
    /// `policy::swap`); a change is loaded once the file has stayed the same for one
    /// more interval, so a half-written file is never loaded.
    #[serde(default = "default_watch_interval", with = "duration_text")]
    pub watch_interval: Duration,
}

fn default_memory_limit_mib() -> u64 {
    256
}
fn default_batch_deadline() -> Duration {
    Duration::from_secs(10)
}
fn default_vault_deadline() -> Duration {
    Duration::from_secs(20)
}
fn default_watch_interval() -> Duration {
    Duration::from_secs(1)
}

/// Where the policy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Builtin(String),
    File(PathBuf),
}

impl PolicyConfig {
    pub fn source(&self) -> Result<PolicySource, ConfigError> {
        match (&self.builtin, &self.path) {
            (Some(name), None) => Ok(PolicySource::Builtin(name.clone())),
            (None, Some(path)) => Ok(PolicySource::File(path.clone())),
            (Some(_), Some(_)) => Err(invalid(
                "policy",
                "set either policy.builtin or policy.path, not both",
            )),
            (None, None) => Err(invalid(
                "policy",
                "set policy.builtin (e.g. \"encrypt-value\") or policy.path (a .wasm component)",
            )),
        }
    }

    /// `[policy.config]` as the JSON text the policy's `init` receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a TOML table is valid JSON")
    }
}

/// What happens to a record the policy could not transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Produce the record, with headers explaining why, to the dead-letter topic.
    #[default]
    DeadLetter,
    /// Stop the pipeline without committing the record, so nothing is skipped.
    Stop,
}

/// Which cluster the dead-letter topic lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterCluster {
    /// The source cluster, where the (plaintext) record already is. The default: a
    /// failed record never carries its contents to the sink cluster.
    #[default]
    Source,
    /// The sink cluster. Only the failure's metadata goes there (error, source topic,
    /// partition, offset): never the record's key, value or headers.
    Sink,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A name, or a template of the source topic (`"{topic}.dlq"`).
    pub dead_letter_topic: Option<TopicTemplate>,
    #[serde(default)]
    pub dead_letter_cluster: DeadLetterCluster,
    /// Longest pause between retries of a batch that failed for a retryable reason.
    #[serde(default = "default_max_retry_backoff", with = "duration_text")]
    pub max_retry_backoff: Duration,
}

fn default_max_retry_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            on_failure: OnFailure::default(),
            dead_letter_topic: None,
            dead_letter_cluster: DeadLetterCluster::default(),
            max_retry_backoff: default_max_retry_backoff(),
        }
    }
}

/// `pipeline.delivery`: what a crash or a rebalance may do to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    /// Nothing is lost; after a crash the records since the last commit are produced
    /// again (with fresh ciphertexts, so downstream cannot tell the copies apart).
    #[default]
    AtLeastOnce,
    /// Kafka transactions on the sink cluster: each batch's outputs and its source
    /// offsets commit together or not at all. Consumers of the sink must read with
    /// `isolation.level = read_committed`.
    ExactlyOnce,
}

/// Batching, delivery and reporting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningConfig {
    #[serde(default)]
    pub delivery: DeliveryGuarantee,
    /// Exactly-once: the compacted topic on the sink cluster where each transaction
    /// records its source positions (created on first use if missing).
    #[serde(default = "default_offsets_topic")]
    pub offsets_topic: String,
    /// Exactly-once: the transit key under which positions in the offsets topic are
    /// authenticated (HMAC under a data key it wraps), so that the sink cluster's
    /// operator cannot make the runner skip records. It must exist.
    #[serde(default = "default_offsets_key")]
    pub offsets_key: String,
    /// Exactly-once: how long a partition's transaction stays open across batches before
    /// it commits (sooner when the source goes quiet). Longer amortises the commit;
    /// shorter makes outputs visible to `read_committed` readers sooner.
    #[serde(default = "default_transaction_interval", with = "duration_text")]
    pub transaction_interval: Duration,
    /// Most records handed to the policy at once (and so the size of its Vault batch).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A batch closes early once its keys and values reach this many bytes, so large
    /// records do not pile up in one policy instance's memory.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// How long to wait for a batch's first record; past it the batch is empty, which
    /// tells the pipeline the source is quiet (it finishes what is open). A batch never
    /// waits to fill: it takes what the consumer has already fetched, up to
    /// `batch_size` and `max_batch_bytes`.
    #[serde(default = "default_batch_timeout", with = "duration_text")]
    pub batch_timeout: Duration,
    /// At least once: how many full batches' worth of records (`batch_size` records,
    /// `max_batch_bytes` bytes each) may be produced and not yet acknowledged by the sink;
    /// small batches (a source that is not busy) do not lower it.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight_batches: usize,
    /// How often `run` logs progress.
    #[serde(default = "default_progress_interval", with = "duration_text")]
    pub progress_interval: Duration,
    /// Largest record value expected, in bytes; client fetch and produce limits are
    /// raised to fit it (the broker's `message.max.bytes` must allow it too).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// After a stop (SIGTERM, SIGINT), how long the runner waits for in-flight batches
    /// to be acknowledged and committed before it gives up on them (they are consumed
    /// again after a restart). The process ends within this plus 10 s, whatever the
    /// sink, Vault or the group coordinator do.
    #[serde(default = "default_shutdown_timeout", with = "duration_text")]
    pub shutdown_timeout: Duration,
}

fn default_transaction_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_offsets_key() -> String {
    "kafka-transit-offsets".into()
}
fn default_offsets_topic() -> String {
    "kafka-transit-offsets".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_max_batch_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_batch_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_max_in_flight() -> usize {
    4
}
fn default_progress_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_record_bytes() -> usize {
    1024 * 1024
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            delivery: DeliveryGuarantee::default(),
            offsets_topic: default_offsets_topic(),
            offsets_key: default_offsets_key(),
            transaction_interval: default_transaction_interval(),
            batch_size: default_batch_size(),
            max_batch_bytes: default_max_batch_bytes(),
            batch_timeout: default_batch_timeout(),
            max_in_flight_batches: default_max_in_flight(),
            progress_interval: default_progress_interval(),
            max_record_bytes: default_max_record_bytes(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

impl PipelineConfig {
    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        // A relative policy path is relative to the config file, not to the shell.
        if let Some(policy_path) = &config.policy.path {
            if policy_path.is_relative() {
                let base = path.parent().unwrap_or(Path::new("."));
                config.policy.path = Some(base.join(policy_path));
            }
        }
        Ok(config)
    }

    /// Parses and checks pipeline TOML text.
    ///
    /// Errors never quote the file: a line in it may hold a secret written where it
    /// must not be (the inline-secret check below cannot run on a file that does not
    /// parse; a token where its variable's name goes, a password in a URL), and the
    /// error reaches logs and the reload endpoint's answer. Syntax errors say where,
    /// not what; a value a message quotes is shown only when short (see
    /// [`ConfigError::without_values_of`]); field names are always shown.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_quoting(text).map_err(|error| error.without_values_of(text))
    }

    fn parse_quoting(text: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| syntax_error(text, &e))?;
        refuse_inline_secrets(&table)?;
        let config: PipelineConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// `source.topics`, checked.
    pub fn source_topics(&self) -> Result<SourceTopics, ConfigError> {
        SourceTopics::parse(&self.source.topics)
            .map_err(|message| invalid("source.topics", message))
    }

    /// Where outputs go, per source topic (`sink.topic`).
    pub fn sink_route(&self) -> Result<Route, ConfigError> {
        let same_cluster = self.source.bootstrap_servers == self.sink.bootstrap_servers;
        Ok(Route::new(
            "sink.topic",
            self.sink.topic.clone(),
            same_cluster.then(|| self.source_topics()).transpose()?,
            self.reserved_topics(),
        ))
    }

    /// Where dead letters go, per source topic, when they go anywhere.
    /// Whether source and sink are one cluster (the same `bootstrap_servers`): then
    /// exactly-once commits the source offsets inside its transactions.
    pub fn one_cluster(&self) -> bool {
        let servers = |list: &str| {
            let mut servers: Vec<String> = list
                .split(',')
                .map(|server| server.trim().to_ascii_lowercase())
                .filter(|server| !server.is_empty())
                .collect();
            servers.sort();
            servers
        };
        servers(&self.source.bootstrap_servers) == servers(&self.sink.bootstrap_servers)
    }

    pub fn dead_letter_route(&self) -> Result<Option<Route>, ConfigError> {
        let Some(template) = &self.errors.dead_letter_topic else {
            return Ok(None);
        };
        let on_source_cluster = match self.errors.dead_letter_cluster {
            DeadLetterCluster::Source => true,
            DeadLetterCluster::Sink => self.one_cluster(),
        };
        Ok(Some(Route::new(
            "errors.dead_letter_topic",
            template.clone(),
            on_source_cluster
                .then(|| self.source_topics())
                .transpose()?,
            self.reserved_topics(),
        )))
    }

    fn reserved_topics(&self) -> Vec<String> {
        match self.pipeline.delivery {
            DeliveryGuarantee::ExactlyOnce => vec![self.pipeline.offsets_topic.clone()],
            DeliveryGuarantee::AtLeastOnce => Vec::new(),
        }
    }

    /// Checks what serde cannot: relations between fields and sane values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        non_empty("source.bootstrap_servers", &self.source.bootstrap_servers)?;
        if let Some(registry) = &self.schema_registry {
            registry
                .validate()
                .map_err(|(field, message)| invalid(field, message))?;
        } else if self
            .policy
            .builtin
            .as_deref()
            .is_some_and(|name| name.ends_with("-schema-fields"))
        {
            return Err(invalid(
                "schema_registry",
                "this policy reads each record's schema from a Schema Registry: add a \
                 [schema_registry] table with its url, e.g. url = \"http://registry:8081\"",
            ));
        }
        if let Some(forget) = &self.forget {
            forget
                .validate()
                .map_err(|(field, message)| invalid(field, message))?;
        } else if ["subject", "subject_keys"]
            .iter()
            .any(|option| self.policy.config.contains_key(*option))
        {
            return Err(invalid(
                "forget",
                "a policy that seals or opens per data subject needs a [forget] table, so \
                 that runners learn which subjects were forgotten (the defaults do: \
                 [forget] with topic = \"kafka-transit.forgotten\" on the source cluster)",
            ));
        }
        non_empty("source.group_id", &self.source.group_id)?;
        let source_topics = self.source_topics()?;
        if source_topics.has_patterns() && self.source.assignment == Assignment::Static {
            return Err(invalid(
                "source.topics",
                "patterns (\"^...\") need source.assignment = \"group\": a static assignment \
                 reads the partitions of listed topics only; list the topics instead",
            ));
        }
        non_empty("sink.bootstrap_servers", &self.sink.bootstrap_servers)?;
        if self.sink.replication_factor == 0 || self.sink.replication_factor < -1 {
            return Err(invalid(
                "sink.replication_factor",
                "must be at least 1, or -1 for the broker's default.replication.factor",
            ));
        }
        // The listed source topics are known now: a template that sends one back to the
        // pipeline is refused here, not at the first record. Patterns are checked as
        // their topics appear.
        let routes = [Some(self.sink_route()?), self.dead_letter_route()?];
        for route in routes.iter().flatten() {
            for topic in source_topics.names() {
                route
                    .topic_for(topic)
                    .map_err(|message| invalid(route.field(), message))?;
            }
        }
        for (name, _) in self.source.properties.0.iter() {
            if name == "enable.auto.commit" || name == "enable.auto.offset.store" {
                return Err(invalid(
                    &format!("source.properties.\"{name}\""),
                    "kafka-transit commits offsets itself, only after the sink acknowledged; remove this property",
                ));
            }
        }
        if self.pipeline.delivery == DeliveryGuarantee::ExactlyOnce {
            non_empty("pipeline.offsets_topic", &self.pipeline.offsets_topic)?;
            kafka_transit_names::check_name(&self.pipeline.offsets_key).map_err(|reason| {
                invalid(
                    "pipeline.offsets_key",
                    format!("must be a transit key name: {reason}"),
                )
            })?;
            if self.sink.topic.literal() == Some(self.pipeline.offsets_topic.as_str()) {
                return Err(invalid(
                    "pipeline.offsets_topic",
                    "must differ from sink.topic",
                ));
            }
            if self.pipeline.transaction_interval > Duration::from_secs(30) {
                return Err(invalid(
                    "pipeline.transaction_interval",
                    "must be at most 30s (well inside the producer's transaction.timeout.ms, 60s by default)",
                ));
            }
            // A transaction stays open while the next batch is in the policy: if that
            // can outlast the broker's transaction timeout, the broker aborts it and the
            // runner finds itself fenced, which says nothing about the real cause.
            let transaction_timeout = match self.sink.properties.0.get("transaction.timeout.ms") {
                None => Duration::from_secs(60),
                Some(ms) => ms.trim().parse().map(Duration::from_millis).map_err(|_| {
                    invalid(
                        "sink.properties.\"transaction.timeout.ms\"",
                        "must be a number of milliseconds",
                    )
                })?,
            };
            let open_at_most = self.pipeline.transaction_interval
                + self.policy.batch_deadline
                + self.policy.vault_deadline
                + TRANSACTION_MARGIN;
            if open_at_most > transaction_timeout {
                return Err(invalid(
                    "policy.vault_deadline",
                    format!(
                        "a transaction may stay open for pipeline.transaction_interval + \
                         policy.batch_deadline + policy.vault_deadline + {}s of delivery \
                         ({}s), longer than the sink's transaction.timeout.ms ({}s): lower \
                         policy.vault_deadline or policy.batch_deadline, or raise \
                         sink.properties.\"transaction.timeout.ms\" (the broker's \
                         transaction.max.timeout.ms must allow it)",
                        TRANSACTION_MARGIN.as_secs(),
                        open_at_most.as_secs_f64().ceil(),
                        transaction_timeout.as_secs_f64()
                    ),
                ));
            }
            for (name, value) in self.sink.properties.0.iter() {
                let refused = match name.as_str() {
                    "transactional.id" => Some(
                        "with pipeline.delivery = \"exactly-once\" kafka-transit names its transactional producers (<source.group_id>.<topic>.<partition> across clusters, <source.group_id>.runner-<random> on one cluster); remove this property",
                    ),
                    "enable.idempotence" if value == "false" => Some(
                        "transactions need the idempotent producer; remove this property",
                    ),
                    _ => None,
                };
                if let Some(message) = refused {
                    return Err(invalid(&format!("sink.properties.\"{name}\""), message));
                }
            }
        }
        self.vault
            .validate()
            .map_err(|message| ConfigError::Invalid {
                field: "vault".into(),
                message,
            })?;
        self.policy.source()?;
        if self.policy.memory_limit_mib < 16 {
            return Err(invalid(
                "policy.memory_limit_mib",
                "must be at least 16 (MiB)",
            ));
        }
        if self.policy.batch_deadline.is_zero() {
            return Err(invalid("policy.batch_deadline", "must be more than zero"));
        }
        if self.policy.vault_deadline.is_zero() {
            return Err(invalid("policy.vault_deadline", "must be more than zero"));
        }
        if self.policy.watch_interval.is_zero() {
            return Err(invalid("policy.watch_interval", "must be more than zero"));
        }
        match (&self.errors.on_failure, &self.errors.dead_letter_topic) {
            (OnFailure::DeadLetter, None) => return Err(invalid(
                "errors.dead_letter_topic",
                "required when errors.on_failure = \"dead-letter\" (or set on_failure = \"stop\")",
            )),
            (_, Some(topic)) if topic == &self.sink.topic => {
                return Err(invalid(
                    "errors.dead_letter_topic",
                    "must differ from sink.topic",
                ))
            }
            _ => {}
        }
        if let Some(admin) = &self.admin {
            if admin.reload_token_file.is_some() && admin.reload_token_env.is_some() {
                return Err(invalid(
                    "admin.reload_token_file",
                    "set either admin.reload_token_file or admin.reload_token_env, not both",
                ));
            }
            if admin.vault_check_interval < Duration::from_millis(100) {
                return Err(invalid(
                    "admin.vault_check_interval",
                    "must be at least 100ms",
                ));
            }
            if admin.stall_timeout <= self.errors.max_retry_backoff {
                return Err(invalid(
                    "admin.stall_timeout",
                    "must be longer than errors.max_retry_backoff (a batch waiting for Vault goes round once per backoff)",
                ));
            }
        }
        let tuning = &self.pipeline;
        if tuning.batch_size == 0 || tuning.batch_size > 10_000 {
            return Err(invalid(
                "pipeline.batch_size",
                "must be between 1 and 10000",
            ));
        }
        if tuning.max_batch_bytes == 0 {
            return Err(invalid(
                "pipeline.max_batch_bytes",
                "must be more than zero",
            ));
        }
        if tuning.max_in_flight_batches == 0 {
            return Err(invalid(
                "pipeline.max_in_flight_batches",
                "must be at least 1",
            ));
        }
        if tuning.progress_interval.is_zero() {
            return Err(invalid(
                "pipeline.progress_interval",
                "must be more than zero",
            ));
        }
        if tuning.shutdown_timeout.is_zero() {
            return Err(invalid(
                "pipeline.shutdown_timeout",
                "must be more than zero",
            ));
        }
        if tuning.max_record_bytes < 1024 || tuning.max_record_bytes > 512 * 1024 * 1024 {
            return Err(invalid(
                "pipeline.max_record_bytes",
                "must be between 1024 and 536870912",
            ));
        }
        Ok(())
    }
}

/// Room for delivering and committing a transaction's records, on top of the time its
/// batches may spend in the policy.
const TRANSACTION_MARGIN: Duration = Duration::from_secs(10);

fn non_empty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Durations written as text: "50ms", "10s", "1h".
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "\"{text}\" is not a duration ({e}); write e.g. \"50ms\", \"10s\", \"1h\""
            ))
        })
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cluster_means_the_same_bootstrap_servers_in_any_order() {
        let mut config = PipelineConfig::parse(EXAMPLE).unwrap();
        assert!(config.one_cluster());
        config.source.bootstrap_servers = "b:9092, A:9092".into();
        config.sink.bootstrap_servers = "a:9092,b:9092".into();
        assert!(config.one_cluster());
        config.sink.bootstrap_servers = "a:9092,c:9092".into();
        assert!(!config.one_cluster());
    }

    const EXAMPLE: &str = r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["customers.raw"]
group_id = "kafka-transit-encrypt"
[source.properties]
"auto.offset.reset" = "earliest"

[sink]
bootstrap_servers = "127.0.0.1:9092"
topic = "customers.protected"
[sink.properties]

[vault]
address = "http://127.0.0.1:8200"
mount = "transit"
token_env = "VAULT_TOKEN"

[policy]
builtin = "encrypt-value"
[policy.config]
key = "customers"

[errors]
on_failure = "dead-letter"
dead_letter_topic = "customers.dlq"
"#;

    #[test]
    fn the_documented_example_parses() {
        let config = PipelineConfig::parse(EXAMPLE).unwrap();
        assert_eq!(config.source.topics, vec!["customers.raw"]);
        assert_eq!(
            config.source.properties.0.get("auto.offset.reset").unwrap(),
            "earliest"
        );
        assert_eq!(config.sink.topic.as_str(), "customers.protected");
        assert_eq!(
            config.policy.source().unwrap(),
            PolicySource::Builtin("encrypt-value".into())
        );
        assert_eq!(config.policy.config_json(), r#"{"key":"customers"}"#);
        assert_eq!(config.errors.on_failure, OnFailure::DeadLetter);
        assert_eq!(config.errors.dead_letter_cluster, DeadLetterCluster::Source);
        assert_eq!(config.pipeline.batch_size, 500);
    }

    fn error_of(text: &str) -> String {
        PipelineConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_policies_of_schemad_records_need_a_registry() {
        let schema = EXAMPLE.replace(
            "builtin = \"encrypt-value\"",
            "builtin = \"encrypt-schema-fields\"",
        );
        let error = error_of(&schema);
        assert!(error.starts_with("schema_registry: "), "{error}");
        assert!(error.contains("url = "), "{error}");
        let with = format!("{schema}\n[schema_registry]\nurl = \"http://registry:8081\"\n");
        let config = PipelineConfig::parse(&with).unwrap();
        assert_eq!(config.schema_registry.unwrap().cache_capacity, 1000);
        let bad = format!("{schema}\n[schema_registry]\nurl = \"registry:8081\"\n");
        assert!(
            error_of(&bad).starts_with("schema_registry.url: "),
            "{}",
            error_of(&bad)
        );
    }

    #[test]
    fn topics_by_pattern_and_template() {
        let routed = EXAMPLE
            .replace(
                r#"topics = ["customers.raw"]"#,
                r#"topics = ['^.*\.raw$', "orders"]"#,
            )
            .replace(
                r#"topic = "customers.protected""#,
                r#"topic = "{topic|strip_suffix:.raw}.protected""#,
            )
            .replace(r#""customers.dlq""#, r#""{topic}.dlq""#);
        let config = PipelineConfig::parse(&routed).unwrap();
        let sink = config.sink_route().unwrap();
        assert_eq!(
            &*sink.topic_for("customers.raw").unwrap(),
            "customers.protected"
        );
        let dead_letters = config.dead_letter_route().unwrap().unwrap();
        assert_eq!(&*dead_letters.topic_for("orders").unwrap(), "orders.dlq");

        // A listed topic whose sink the subscription also consumes: refused at start-up.
        let looping = routed.replace(r#""{topic}.dlq""#, r#""{topic}.raw""#);
        let error = error_of(&looping);
        assert!(
            error.starts_with("errors.dead_letter_topic: errors.dead_letter_topic = \"{topic}.raw\" sends records of \"orders\" to \"orders.raw\""),
            "{error}"
        );
        let static_patterns = routed.replace(
            "group_id = \"kafka-transit-encrypt\"",
            "group_id = \"g\"\nassignment = \"static\"",
        );
        assert!(error_of(&static_patterns).starts_with("source.topics: patterns"));
        let bad_pattern = routed.replace(r#"'^.*\.raw$'"#, r#""^(""#);
        assert!(error_of(&bad_pattern).contains("not a valid regular expression"));
        let header_topic = routed.replace(r#""{topic}.dlq""#, r#""{header:tenant}""#);
        assert!(error_of(&header_topic).contains("cannot name a topic"));
        // The old rule, now a case of the general one.
        let same = EXAMPLE.replace(r#""customers.protected""#, r#""customers.raw""#);
        assert!(error_of(&same).contains("consume its own output"));
    }

    #[test]
    fn errors_name_the_field() {
        let missing_topic = EXAMPLE.replace("topic = \"customers.protected\"", "");
        assert!(
            error_of(&missing_topic).contains("topic"),
            "{}",
            error_of(&missing_topic)
        );

        let both = EXAMPLE.replace(
            "builtin = \"encrypt-value\"",
            "builtin = \"encrypt-value\"\npath = \"x.wasm\"",
        );
        assert!(error_of(&both).starts_with("policy: set either"));

        let no_dlq = EXAMPLE.replace("dead_letter_topic = \"customers.dlq\"", "");
        assert!(error_of(&no_dlq).starts_with("errors.dead_letter_topic:"));

        let loop_back = EXAMPLE.replace("customers.protected", "customers.raw");
        assert!(error_of(&loop_back).starts_with("sink.topic:"));

        let auto_commit = EXAMPLE.replace(
            "\"auto.offset.reset\" = \"earliest\"",
            "\"enable.auto.commit\" = true",
        );
        assert!(error_of(&auto_commit).contains("enable.auto.commit"));

        let bad_duration = EXAMPLE.replace("[errors]", "[errors]\nmax_retry_backoff = \"soon\"");
        assert!(error_of(&bad_duration).contains("not a duration"));

        let unknown = EXAMPLE.replace("[errors]", "[errors]\non_falure = \"stop\"");
        assert!(error_of(&unknown).contains("on_falure"));

        let big_batch = format!("{EXAMPLE}\n[pipeline]\nbatch_size = 20000\n");
        assert!(error_of(&big_batch).starts_with("pipeline.batch_size:"));
    }

    #[test]
    fn exactly_once_is_opt_in_and_owns_the_transactional_id() {
        let config = PipelineConfig::parse(EXAMPLE).unwrap();
        assert_eq!(config.pipeline.delivery, DeliveryGuarantee::AtLeastOnce);

        let eos = format!("{EXAMPLE}\n[pipeline]\ndelivery = \"exactly-once\"\n");
        let config = PipelineConfig::parse(&eos).unwrap();
        assert_eq!(config.pipeline.delivery, DeliveryGuarantee::ExactlyOnce);

        let own_id = eos.replace(
            "[sink.properties]",
            "[sink.properties]\n\"transactional.id\" = \"mine\"",
        );
        assert!(error_of(&own_id).starts_with("sink.properties.\"transactional.id\":"));
        let no_idempotence = eos.replace(
            "[sink.properties]",
            "[sink.properties]\n\"enable.idempotence\" = false",
        );
        assert!(error_of(&no_idempotence).starts_with("sink.properties.\"enable.idempotence\":"));

        let typo = format!("{EXAMPLE}\n[pipeline]\ndelivery = \"exactly_once\"\n");
        assert!(
            error_of(&typo).contains("exactly-once"),
            "{}",
            error_of(&typo)
        );
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        for (find, replace, field) in [
            (
                "token_env = \"VAULT_TOKEN\"",
                "token = \"s.SECRET\"",
                "vault.token",
            ),
            (
                "token_env = \"VAULT_TOKEN\"",
                "[vault.jwt]\nrole = \"kt\"\njwt = \"eyJSECRET\"",
                "vault.jwt.jwt",
            ),
            (
                "[sink.properties]",
                "[sink.properties]\n\"sasl.password\" = \"SECRET\"",
                "sink.properties.\"sasl.password\"",
            ),
        ] {
            let error = error_of(&EXAMPLE.replace(find, replace));
            assert!(error.starts_with(field), "{error}");
            assert!(!error.contains("SECRET"), "{error}");
        }
    }

    #[test]
    fn a_value_holding_a_quote_is_not_shown_either() {
        // Found by fuzzing: serde quotes an unknown variant as it is, so a backtick inside
        // it ended the quoted part early and the rest of the value was shown.
        let text = "[errors]\non_failure = \"dead-lety's `Zq7xMarkerKq3vW9Zq7xMarkerKq3vW9us]o\"\n";
        let error = PipelineConfig::parse(text).unwrap_err().to_string();
        assert!(!error.to_lowercase().contains("marker"), "{error}");
        assert!(
            error.contains("expected `dead-letter` or `stop`"),
            "{error}"
        );
    }

    #[test]
    fn syntax_errors_say_where_without_quoting_the_file() {
        // A token written inline on a line that does not parse: the inline-secret check
        // cannot run, and toml's own message would quote the line back.
        let text = EXAMPLE.replace("token_env = \"VAULT_TOKEN\"", "token = \"s.SECRET");
        let error = error_of(&text);
        assert!(!error.contains("SECRET"), "{error}");
        let line = text.lines().position(|l| l.contains("s.SECRET")).unwrap() + 1;
        assert!(error.contains(&format!("line {line}, column ")), "{error}");
        // Typed errors (after the syntax is fine) are located the same way.
        let error = error_of(&format!("{EXAMPLE}\n[pipeline]\nbatch_size = \"many\"\n"));
        assert!(
            error.contains("line ") && error.contains("invalid type"),
            "{error}"
        );
        assert!(!error.contains("batch_size = "), "{error}");
    }

    /// Found by fuzz/fuzz_targets/config.rs: validation and typed errors quoted values
    /// back (an address, an environment variable's name, a pattern, a template, a
    /// value of the wrong type or an unknown variant), and a secret written in the
    /// wrong field (a token where its variable's name goes, a password in a URL) would
    /// have reached logs and the reload endpoint's answer with them.
    #[test]
    fn no_error_quotes_a_value_from_the_file() {
        const MARKER: &str = "Zq7xMarkerKq3vW9";
        let with_sink_properties = |line: &str| {
            EXAMPLE.replace("[sink.properties]", &format!("[sink.properties]\n{line}"))
        };
        for text in [
            EXAMPLE.replace("http://127.0.0.1:8200", &format!("{MARKER}://x")),
            EXAMPLE.replace("http://127.0.0.1:8200", &format!("http://u:{MARKER}@[")),
            with_sink_properties(&format!("\"sasl.password\" = {{ env = \"{MARKER}\" }}")),
            format!("{EXAMPLE}\n[pipeline]\ndelivery = \"{MARKER}\"\n"),
            format!("{EXAMPLE}\n[pipeline]\nbatch_size = \"{MARKER}\"\n"),
            EXAMPLE.replace(r#"["customers.raw"]"#, &format!(r#"["^{MARKER}["]"#)),
            EXAMPLE.replace(r#"["customers.raw"]"#, &format!(r#"["{MARKER}/x"]"#)),
            EXAMPLE.replace(
                r#""customers.protected""#,
                &format!(r#""{{header:{MARKER}}}""#),
            ),
            EXAMPLE.replace(
                "[errors]",
                &format!("[errors]\nmax_retry_backoff = \"{MARKER}\""),
            ),
        ] {
            let error = error_of(&text);
            assert!(
                !error.to_lowercase().contains(&MARKER.to_lowercase()),
                "{error}"
            );
            assert!(error.contains("[not shown]"), "{error}");
        }
        // Field names the file wrote are not values: an unknown one is named.
        let unknown = EXAMPLE.replace("[errors]", &format!("[errors]\n{MARKER} = 1"));
        assert!(
            error_of(&unknown).contains(MARKER),
            "{}",
            error_of(&unknown)
        );
    }

    #[test]
    fn property_values_come_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        std::env::set_var("KAFKA_TRANSIT_TEST_SASL_USER", "from-env");
        let text = EXAMPLE.replace(
            "[sink.properties]",
            &format!(
                "[sink.properties]\n\"sasl.username\" = {{ env = \"KAFKA_TRANSIT_TEST_SASL_USER\" }}\n\"sasl.password\" = {{ file = \"{}\" }}",
                file.display()
            ),
        );
        let config = PipelineConfig::parse(&text).unwrap();
        assert_eq!(config.sink.properties.0["sasl.username"], "from-env");
        assert_eq!(config.sink.properties.0["sasl.password"], "from-file");
        assert!(
            !format!("{config:?}").contains("from-file"),
            "Debug hides property values"
        );

        let missing = EXAMPLE.replace(
            "[sink.properties]",
            "[sink.properties]\n\"sasl.password\" = { env = \"KAFKA_TRANSIT_TEST_UNSET\" }",
        );
        // The variable's name is a value of the file, and long: not shown (it might be
        // the password itself, written where its variable's name goes).
        let error = error_of(&missing);
        assert!(
            error.contains(
                "property \"sasl.password\": environment variable \"[not shown]\" is not set"
            ),
            "{error}"
        );
        let short = missing.replace("KAFKA_TRANSIT_TEST_UNSET", "KT_UNSET_1");
        assert!(error_of(&short).contains("\"KT_UNSET_1\" is not set"));
    }

    #[test]
    fn properties_accept_numbers_and_booleans() {
        let text = EXAMPLE.replace(
            "[sink.properties]",
            "[sink.properties]\n\"linger.ms\" = 5\n\"enable.idempotence\" = true",
        );
        let config = PipelineConfig::parse(&text).unwrap();
        assert_eq!(config.sink.properties.0["linger.ms"], "5");
        assert_eq!(config.sink.properties.0["enable.idempotence"], "true");
    }

    #[test]
    fn relative_policy_path_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = EXAMPLE.replace("builtin = \"encrypt-value\"", "path = \"policies/p.wasm\"");
        let file = dir.path().join("pipeline.toml");
        std::fs::write(&file, text).unwrap();
        let config = PipelineConfig::load(&file).unwrap();
        assert_eq!(
            config.policy.source().unwrap(),
            PolicySource::File(dir.path().join("policies/p.wasm"))
        );
    }

    #[test]
    fn the_policy_file_is_watched_every_second_unless_configured() {
        let config = PipelineConfig::parse(EXAMPLE).unwrap();
        assert_eq!(config.policy.watch_interval, Duration::from_secs(1));
        let set = EXAMPLE.replace(
            "builtin = \"encrypt-value\"",
            "builtin = \"encrypt-value\"\nwatch_interval = \"250ms\"",
        );
        let config = PipelineConfig::parse(&set).unwrap();
        assert_eq!(config.policy.watch_interval, Duration::from_millis(250));
        let zero = EXAMPLE.replace(
            "builtin = \"encrypt-value\"",
            "builtin = \"encrypt-value\"\nwatch_interval = \"0s\"",
        );
        assert!(error_of(&zero).starts_with("policy.watch_interval:"));
    }
}
