//! How a runner learns which subjects were forgotten: the compacted `[forget] topic` on
//! the source cluster, read to its end before the pipeline starts (so that a runner
//! started after a forget never seals under that key again), then followed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{ForgetError, ForgetSettings, ForgottenKeys};
use crate::config::SourceConfig;
use crate::kafka::{self, TopicState};

/// Kafka lookups and the first read give up after this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Creating the forget topic gives up after this, saying how to create it instead.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the forget topic until dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the topic if it is missing, reads every marker on it into `keys`, and keeps
/// reading in a thread of its own. Returns once the markers written before the call are
/// all in `keys`.
pub async fn watch(
    source: &SourceConfig,
    settings: &ForgetSettings,
    keys: Arc<ForgottenKeys>,
) -> Result<Watcher, ForgetError> {
    ensure_topic(source, &settings.topic).await?;
    let consumer = reader(source)?;
    let topic = settings.topic.clone();
    let (consumer, ends) = tokio::task::spawn_blocking(move || {
        let ends = assign_from_beginning(&consumer, &topic)?;
        Ok::<_, ForgetError>((consumer, ends))
    })
    .await
    .map_err(|e| ForgetError::Kafka(e.to_string()))??;
    let stop = Arc::new(AtomicBool::new(false));
    let (caught_up, ready) = tokio::sync::oneshot::channel();
    let thread = {
        let (stop, keys, topic) = (stop.clone(), keys.clone(), settings.topic.clone());
        std::thread::Builder::new()
            .name("forget-watcher".into())
            .spawn(move || follow(consumer, &topic, ends, &keys, &stop, caught_up))
            .map_err(|e| ForgetError::Kafka(e.to_string()))?
    };
    let watcher = Watcher {
        stop,
        thread: Some(thread),
    };
    match tokio::time::timeout(TIMEOUT, ready).await {
        Ok(Ok(())) => {
            tracing::info!(
                topic = settings.topic,
                forgotten = keys.len(),
                "forgotten data subjects loaded; following the topic"
            );
            Ok(watcher)
        }
        _ => Err(ForgetError::Kafka(format!(
            "could not read the forget topic \"{}\" to its end within {}s; check forget.topic \
             and the source cluster's ACLs (Read and Describe on the topic)",
            settings.topic,
            TIMEOUT.as_secs()
        ))),
    }
}

fn reader(source: &SourceConfig) -> Result<BaseConsumer, ForgetError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.bootstrap_servers)
        // No group: every runner reads every marker; nothing is committed.
        .set("group.id", "kafka-transit-forget-watcher")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false");
    for (name, value) in &kafka::connection_properties(&source.properties).0 {
        config.set(name, value);
    }
    config
        .create()
        .map_err(|e| ForgetError::Kafka(format!("the forget topic's reader: {e}")))
}

/// Assigns every partition from its beginning; the end offsets to read to. A topic just
/// created may show no partitions for a moment: asked again until it does.
fn assign_from_beginning(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<Vec<(i32, i64)>, ForgetError> {
    let kafka = |e: rdkafka::error::KafkaError| ForgetError::Kafka(format!("{topic}: {e}"));
    let started = Instant::now();
    let partitions: Vec<i32> = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(kafka)?;
        let found: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !found.is_empty() {
            break found;
        }
        if started.elapsed() > TIMEOUT {
            return Err(ForgetError::Kafka(format!(
                "the forget topic \"{topic}\" shows no partitions"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(kafka)?;
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(kafka)?;
        if high > low {
            ends.push((partition, high));
        }
    }
    consumer.assign(&assignment).map_err(kafka)?;
    Ok(ends)
}

/// Reads markers until `stop`; says when every partition reached its end of `ends`.
fn follow(
    consumer: BaseConsumer,
    topic: &str,
    mut ends: Vec<(i32, i64)>,
    keys: &ForgottenKeys,
    stop: &AtomicBool,
    caught_up: tokio::sync::oneshot::Sender<()>,
) {
    let mut caught_up = Some(caught_up);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if ends.is_empty() {
            if let Some(sender) = caught_up.take() {
                let _ = sender.send(());
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                let offset = message.offset();
                ends.retain(|&(p, end)| p != partition || offset + 1 < end);
                // A tombstone (compaction's) or a key that is no key name is not a marker.
                let name = message
                    .key()
                    .and_then(|key| std::str::from_utf8(key).ok())
                    .filter(|name| kafka_transit_names::check_name(name).is_ok());
                match (name, message.payload()) {
                    (Some(name), Some(_)) => {
                        if keys.insert(name) && caught_up.is_none() {
                            tracing::info!(
                                key = name,
                                "a data subject was forgotten: its key is dropped from the caches \
                                 and nothing is sealed under it again"
                            );
                        }
                    }
                    _ => tracing::warn!(
                        topic,
                        partition,
                        offset,
                        "a record on the forget topic that is not a marker was ignored"
                    ),
                }
            }
            Some(Err(error)) => {
                tracing::warn!(topic, "reading the forget topic: {error}");
                std::thread::sleep(Duration::from_millis(500));
            }
            None if caught_up.is_some() && started.elapsed() > TIMEOUT => {
                // `watch` has given up waiting; go on following anyway.
                caught_up = None;
            }
            None => {}
        }
    }
}

/// Creates the forget topic (compacted, one partition) when the source cluster does not
/// have it; another runner creating it first is fine.
pub(super) async fn ensure_topic(source: &SourceConfig, topic: &str) -> Result<(), ForgetError> {
    let admin = kafka::lookup_admin(&source.bootstrap_servers, &source.properties)
        .map_err(|e| ForgetError::Kafka(e.to_string()))?;
    let admin = Arc::new(admin);
    let state = {
        let (admin, name) = (admin.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || kafka::topic_state(admin.inner(), &name, TIMEOUT))
            .await
            .map_err(|e| ForgetError::Kafka(e.to_string()))?
            .map_err(|e| ForgetError::Kafka(format!("looking up {topic}: {e}")))?
    };
    match state {
        TopicState::Partitions(_) => return Ok(()),
        TopicState::Refused(why) => {
            return Err(ForgetError::Kafka(format!(
                "looking up the forget topic \"{topic}\": {why}"
            )))
        }
        TopicState::Missing => {}
    }
    // Three copies where the cluster has three brokers, fewer on a smaller one.
    let brokers = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, TIMEOUT)
                .map(|metadata| metadata.brokers().len())
        })
        .await
        .map_err(|e| ForgetError::Kafka(e.to_string()))?
        .map_err(|e| ForgetError::Kafka(format!("the source cluster's brokers: {e}")))?
    };
    let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new()
        .operation_timeout(Some(CREATE_TIMEOUT))
        .request_timeout(Some(CREATE_TIMEOUT));
    let results = admin.create_topics([&new], &options).await.map_err(|e| {
        ForgetError::Kafka(format!(
            "creating the forget topic \"{topic}\": {e}; create it (compacted, one \
                 partition) or grant CreateTopics on the source cluster"
        ))
    })?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, "created the forget topic (compacted)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(ForgetError::Kafka(format!(
                    "creating the forget topic \"{topic}\": {code}; create it (compacted) or \
                     grant CreateTopics"
                )))
            }
        }
    }
    Ok(())
}
