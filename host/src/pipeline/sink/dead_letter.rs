//! The dead-letter topic: where a record that could not be protected goes instead of
//! the sink, with headers that say why.
//!
//! It lives on the source cluster by default, where the plaintext already is; on the
//! sink cluster it carries only the failure metadata, never the record's contents.

use std::sync::Arc;

use rdkafka::error::KafkaError;

use crate::config::{DeadLetterCluster, PipelineConfig};
use crate::kafka;
use crate::policy::{Header, PolicyRuntime, SourceRecord};
use crate::topics::Route;

use crate::pipeline::error::{kafka_error, PipelineError};
use crate::pipeline::stopping::Stopping;

use super::produce::{enqueue, Outbox};
use super::topic_creation::{Cluster, TopicCreation};

/// Headers on dead-lettered records.
pub mod headers {
    pub const ERROR: &str = "kafka-transit.error";
    pub const ERROR_KIND: &str = "kafka-transit.error.kind";
    pub const SOURCE_TOPIC: &str = "kafka-transit.source.topic";
    pub const SOURCE_PARTITION: &str = "kafka-transit.source.partition";
    pub const SOURCE_OFFSET: &str = "kafka-transit.source.offset";
    pub const POLICY: &str = "kafka-transit.policy";
    pub const POLICY_DIGEST: &str = "kafka-transit.policy.digest";
}

pub(crate) struct DeadLetters {
    producer: kafka::AckingProducer,
    route: Route,
    cluster: DeadLetterCluster,
    topic_creation: Arc<TopicCreation>,
    stopping: Stopping,
}

impl DeadLetters {
    /// The dead-letter producer, when `errors.on_failure = "dead-letter"`.
    pub(crate) fn new(
        config: &PipelineConfig,
        topic_creation: Arc<TopicCreation>,
        stopping: Stopping,
    ) -> Result<Option<DeadLetters>, PipelineError> {
        let route = config
            .dead_letter_route()
            .map_err(|e| PipelineError::Route(e.to_string()))?;
        let Some(route) = route else {
            return Ok(None);
        };
        if config.errors.on_failure != crate::config::OnFailure::DeadLetter {
            return Ok(None);
        }
        let cluster = config.errors.dead_letter_cluster;
        let producer = match cluster {
            DeadLetterCluster::Source => kafka::producer(
                &config.source.bootstrap_servers,
                &kafka::connection_properties(&config.source.properties),
                &config.pipeline,
            ),
            DeadLetterCluster::Sink => kafka::sink_producer(&config.sink, &config.pipeline),
        }
        .map_err(kafka_error("creating the dead-letter producer"))?;
        Ok(Some(DeadLetters {
            producer,
            route,
            topic_creation,
            cluster,
            stopping,
        }))
    }

    /// Whether dead letters join the sink's transactions (exactly-once): they do on the
    /// sink cluster; on the source cluster they are delivered at least once.
    pub(crate) fn on_sink_cluster(&self) -> bool {
        self.cluster == DeadLetterCluster::Sink
    }

    /// The dead-letter topic for `record` (`errors.dead_letter_topic`).
    pub(crate) fn topic_for(&self, record: &SourceRecord) -> Result<Arc<str>, PipelineError> {
        self.route
            .topic_for(&record.topic)
            .map_err(PipelineError::Route)
    }

    /// The dead-letter topic's own producer (idempotent, outside any transaction).
    pub(crate) fn producer(&self) -> &kafka::AckingProducer {
        &self.producer
    }

    /// Hands `record` to `outbox` (the dead-letter producer, or a transactional one of
    /// the same cluster), on `topic`, with headers naming the failure; returns its
    /// ticket's number.
    pub(crate) async fn send_via(
        &self,
        outbox: Outbox<'_>,
        topic: &str,
        record: &SourceRecord,
        kind: &'static str,
        reason: &str,
        policy: &PolicyRuntime,
    ) -> Result<usize, KafkaError> {
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            kind,
            dead_letter_topic = topic,
            "dead-lettering record: {reason}"
        );
        let cluster = match self.cluster {
            DeadLetterCluster::Source => Cluster::Source,
            DeadLetterCluster::Sink => Cluster::Sink,
        };
        self.topic_creation
            .ensure(cluster, topic, &record.topic)
            .await;
        let mut all = match self.cluster {
            DeadLetterCluster::Source => record.headers.clone(),
            // Never carry record contents to the sink cluster.
            DeadLetterCluster::Sink => Vec::new(),
        };
        for (key, value) in [
            (headers::ERROR, reason.to_string()),
            (headers::ERROR_KIND, kind.to_string()),
            (headers::SOURCE_TOPIC, record.topic.clone()),
            (headers::SOURCE_PARTITION, record.partition.to_string()),
            (headers::SOURCE_OFFSET, record.offset.to_string()),
            (headers::POLICY, policy.name().to_string()),
            (headers::POLICY_DIGEST, policy.digest().to_string()),
        ] {
            all.push(Header {
                key: key.to_string(),
                value: Some(value.into_bytes()),
            });
        }
        let (message, number) = outbox.message(topic);
        let mut message = message.headers(kafka::owned_headers(&all));
        if self.cluster == DeadLetterCluster::Source {
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
        }
        enqueue(outbox.producer, message, &self.stopping).await?;
        Ok(number)
    }
}
