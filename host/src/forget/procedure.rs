//! `kafka-transit forget` and `POST /admin/forget`: one data subject's key deleted, and
//! every runner told.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::watcher::ensure_topic;
use super::ForgetSettings;
use crate::config::{PipelineConfig, SourceConfig};
use crate::kafka;
use crate::vault::{VaultClient, VaultError};

/// Why a forget could not be done (or finished). What was done before the failure is
/// said, so that running it again (it is idempotent) is the fix.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("{0}")]
    Config(String),
    #[error("Vault: {0}")]
    Vault(#[from] VaultError),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// How subjects' keys are named: `[policy.config]` `subject_keys` and
/// `subject_hmac_key` of the sealing pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectNaming {
    pub prefix: String,
    pub hmac_key: String,
}

impl SubjectNaming {
    /// From a pipeline file whose policy seals per subject.
    pub fn of(config: &PipelineConfig) -> Result<SubjectNaming, ForgetError> {
        let text = |name: &str| {
            config
                .policy
                .config
                .get(name)
                .and_then(toml::Value::as_str)
                .map(str::to_string)
        };
        match (text("subject_keys"), text("subject_hmac_key")) {
            (Some(prefix), Some(hmac_key)) => Ok(SubjectNaming { prefix, hmac_key }),
            _ => Err(ForgetError::Config(
                "policy.config: forget needs the sealing pipeline's file, whose policy \
                 (envelope-seal with subject) sets subject_keys and subject_hmac_key"
                    .into(),
            )),
        }
    }

    /// The transit key of subject `id`: Vault's HMAC of it, as the sealing policy names it.
    pub async fn key_of(&self, vault: &VaultClient, id: &str) -> Result<String, ForgetError> {
        let hmac = vault
            .hmac_batch(&self.hmac_key, &[id.as_bytes()])
            .await?
            .pop()
            .ok_or_else(|| ForgetError::Config("Vault gave no HMAC".into()))?
            .map_err(|e| ForgetError::Config(format!("Vault's HMAC of the subject: {e}")))?;
        kafka_transit_names::subject_key_name(&self.prefix, &hmac)
            .map_err(|why| ForgetError::Config(format!("policy.config.subject_hmac_key: {why}")))
    }
}

/// What a forget did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The subject's transit key (its name says nothing of the subject).
    pub key: String,
    /// The key versions deleted; empty when Vault had no such key (forgotten before, or
    /// the subject never had a record).
    pub versions_deleted: Vec<u64>,
    /// Where the marker went.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.versions_deleted.is_empty() {
            write!(
                f,
                "no transit key {} in Vault (forgotten before, or no record of this subject \
                 was ever sealed)",
                self.key
            )?;
        } else {
            write!(
                f,
                "deleted transit key {} ({} version(s): {:?})",
                self.key,
                self.versions_deleted.len(),
                self.versions_deleted
            )?;
        }
        write!(
            f,
            "; marker on {} partition {} offset {}: running runners refuse to seal or open \
             under it",
            self.topic, self.partition, self.offset
        )
    }
}

/// Forgets subject `id`: its key's name from Vault's HMAC, a marker on the forget topic
/// (runners drop the key from their caches and stop sealing under it), `grace` for them
/// to see it, then the key deleted in Vault. Idempotent. The id is never logged.
pub async fn forget(
    vault: &VaultClient,
    source: &SourceConfig,
    settings: &ForgetSettings,
    naming: &SubjectNaming,
    id: &str,
) -> Result<Report, ForgetError> {
    if id.is_empty() {
        return Err(ForgetError::Config("the subject id is empty".into()));
    }
    let key = naming.key_of(vault, id).await?;
    ensure_topic(source, &settings.topic).await?;
    let (partition, offset) = mark(source, &settings.topic, &key).await?;
    tracing::info!(
        key,
        topic = settings.topic,
        grace_s = settings.grace.as_secs_f64(),
        "forget: marker written; deleting the key after the grace period"
    );
    tokio::time::sleep(settings.grace).await;
    let versions_deleted = match vault.key_versions(&key).await? {
        None => Vec::new(),
        Some(versions) => {
            vault.delete_key(&key).await?;
            versions
        }
    };
    if vault.key_versions(&key).await?.is_some() {
        return Err(ForgetError::Config(format!(
            "transit key {key} still exists after its deletion (made again by a runner that \
             has not seen the marker?); run forget again"
        )));
    }
    tracing::info!(
        key,
        versions = versions_deleted.len(),
        "forget: data subject forgotten"
    );
    Ok(Report {
        key,
        versions_deleted,
        topic: settings.topic.clone(),
        partition,
        offset,
    })
}

/// Writes the marker for `key`: the key's name as the record key, and when (ms since
/// the epoch) as the value.
async fn mark(source: &SourceConfig, topic: &str, key: &str) -> Result<(i32, i64), ForgetError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.bootstrap_servers)
        .set("acks", "all")
        .set("enable.idempotence", "true");
    for (name, value) in &kafka::connection_properties(&source.properties).0 {
        config.set(name, value);
    }
    let producer: FutureProducer = config
        .create()
        .map_err(|e| ForgetError::Kafka(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default();
    let value = serde_json::json!({"forgotten_at_ms": now}).to_string();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map(|delivered| (delivered.partition, delivered.offset))
        .map_err(|(error, _)| ForgetError::Kafka(format!("writing the marker to {topic}: {error}")))
}
