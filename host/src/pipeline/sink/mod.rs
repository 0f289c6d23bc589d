//! The sink side both delivery modes share: where each output of a record goes, the
//! sink records themselves, and what happens to a record that cannot go there (its dead
//! letter, or a stop). How deliveries are awaited and committed is the delivery mode's
//! business (`pipeline/delivery`).

mod dead_letter;
mod produce;
mod refusal;
mod sink_topics;
mod topic_creation;

use std::sync::Arc;

use rdkafka::error::KafkaError;

use crate::config::{PipelineConfig, SinkConfig, TimestampSource};
use crate::kafka;
use crate::metrics::Metrics;
use crate::policy::{Failure, OutputRecord, PolicyRuntime, SourceRecord, TransformResult};
use crate::topics::Route;

use super::error::PipelineError;
use super::stopping::Stopping;

pub use dead_letter::headers as dead_letter_headers;
pub(crate) use produce::{enqueue, Message, Outbox};
pub(crate) use refusal::{refused_by_sink, SINK_REJECTED};

use dead_letter::DeadLetters;
use sink_topics::SinkTopics;
use topic_creation::{Cluster, TopicCreation};

/// Where a delivery went, to say which cluster failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Sink,
    /// With the failure's kind (`invalid-input`, ...), for the metrics.
    DeadLetter(&'static str),
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Sink => "the sink",
            Target::DeadLetter(_) => "the dead-letter topic",
        }
    }
}

/// The failure kind of a record whose output has no acceptable topic.
const UNROUTABLE: &str = "unroutable";

/// A record (or its dead letter) handed to a producer, awaiting its acknowledgement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handed {
    /// The record's place in its batch.
    pub index: usize,
    pub target: Target,
    /// Key and value bytes of a sink record (0 for a dead letter), for the metrics.
    pub bytes: u64,
    /// Its ticket's number in the [`kafka::Acks`] it was handed over with.
    pub ticket: usize,
}

/// How a delivery mode's dead letters travel.
#[derive(Clone, Copy)]
pub(crate) enum DeadLetterPath {
    /// Through the dead-letter producer, counted in the batch's acks and awaited with
    /// its other records (at least once).
    WithBatch,
    /// Exactly once: inside the transaction (its outbox) when the dead-letter topic is
    /// on the sink cluster; otherwise outside it, acknowledged before going on (the
    /// position that passes the record must not commit before its dead letter is
    /// acknowledged).
    Transaction,
}

pub(crate) struct Sink {
    config: SinkConfig,
    route: Route,
    topics: SinkTopics,
    topic_creation: Arc<TopicCreation>,
    dead_letters: Option<DeadLetters>,
    metrics: Arc<Metrics>,
    stopping: Stopping,
}

impl Sink {
    pub(crate) fn new(
        config: &PipelineConfig,
        metrics: Arc<Metrics>,
        stopping: Stopping,
    ) -> Result<Sink, PipelineError> {
        let topic_creation = Arc::new(TopicCreation::new(config));
        Ok(Sink {
            config: config.sink.clone(),
            route: config
                .sink_route()
                .map_err(|e| PipelineError::Route(e.to_string()))?,
            topics: SinkTopics::new(&config.sink),
            dead_letters: DeadLetters::new(config, topic_creation.clone(), stopping.clone())?,
            topic_creation,
            metrics,
            stopping,
        })
    }

    /// Whether the pipeline is stopping (a full producer queue is then the answer).
    pub(crate) fn stopping(&self) -> &Stopping {
        &self.stopping
    }

    /// Hands the outputs of `record` (the `index`th of its batch) to `outbox`, or, if
    /// the record failed, has an output with no acceptable topic, was `refused` by the
    /// sink before, or has an output the sink refuses now, its dead letter (or stops, with
    /// `errors.on_failure = "stop"`). What was handed over is appended to `handed`, also
    /// when an error follows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn hand_over(
        &self,
        outbox: Outbox<'_>,
        index: usize,
        record: &SourceRecord,
        result: &TransformResult,
        refused: Option<String>,
        policy: &PolicyRuntime,
        path: DeadLetterPath,
        handed: &mut Vec<Handed>,
    ) -> Result<(), PipelineError> {
        let failure = match (result, refused) {
            (Ok(_), Some(reason)) => Some((SINK_REJECTED, reason)),
            (Ok(outputs), None) => match self.destinations(record, outputs).await {
                Ok(topics) => {
                    self.produce(outbox, index, record, outputs, &topics, handed)
                        .await?
                }
                Err(failure) => Some(failure),
            },
            (Err(failure), _) => Some(describe_failure(failure)),
        };
        let Some((kind, reason)) = failure else {
            return Ok(());
        };
        let Some(dead_letters) = &self.dead_letters else {
            return Err(stopped_on_failure(record, kind, &reason));
        };
        let target = Target::DeadLetter(kind);
        let topic = dead_letters.topic_for(record)?;
        let via = match path {
            DeadLetterPath::WithBatch => Outbox {
                producer: dead_letters.producer(),
                acks: outbox.acks,
            },
            DeadLetterPath::Transaction if dead_letters.on_sink_cluster() => outbox,
            DeadLetterPath::Transaction => {
                return self
                    .dead_letter_acknowledged(record, kind, &reason, policy)
                    .await;
            }
        };
        let ticket = dead_letters
            .send_via(via, &topic, record, kind, &reason, policy)
            .await
            .map_err(|error| delivery_error(target, record, error))?;
        handed.push(Handed {
            index,
            target,
            bytes: 0,
            ticket,
        });
        Ok(())
    }

    /// Hands each output to `outbox` until the sink refuses one (its size, no key on a
    /// compacted topic...): then that refusal is the record's failure.
    async fn produce(
        &self,
        outbox: Outbox<'_>,
        index: usize,
        record: &SourceRecord,
        outputs: &[OutputRecord],
        topics: &[Arc<str>],
        handed: &mut Vec<Handed>,
    ) -> Result<Option<(&'static str, String)>, PipelineError> {
        for (output, topic) in outputs.iter().zip(topics) {
            let bytes = kafka::record_bytes(output.key.as_deref(), output.value.as_deref());
            let (message, ticket) = outbox.message(topic);
            let message = self.sink_message(message, record, output);
            match enqueue(outbox.producer, message, &self.stopping).await {
                Ok(()) => handed.push(Handed {
                    index,
                    target: Target::Sink,
                    bytes,
                    ticket,
                }),
                Err(error) => match refused_by_sink(&error) {
                    Some(reason) => return Ok(Some((SINK_REJECTED, reason))),
                    None => return Err(delivery_error(Target::Sink, record, error)),
                },
            }
        }
        Ok(None)
    }

    /// Dead-letters `record` through the dead-letter producer and waits for the
    /// acknowledgement (or stops, with `errors.on_failure = "stop"`).
    pub(crate) async fn dead_letter_acknowledged(
        &self,
        record: &SourceRecord,
        kind: &'static str,
        reason: &str,
        policy: &PolicyRuntime,
    ) -> Result<(), PipelineError> {
        let Some(dead_letters) = &self.dead_letters else {
            return Err(stopped_on_failure(record, kind, reason));
        };
        let target = Target::DeadLetter(kind);
        let topic = dead_letters.topic_for(record)?;
        let acks = kafka::Acks::new();
        let outbox = Outbox {
            producer: dead_letters.producer(),
            acks: &acks,
        };
        let sent = dead_letters
            .send_via(outbox, &topic, record, kind, reason, policy)
            .await;
        sent.map_err(|error| delivery_error(target, record, error))?;
        acks.outcome()
            .await
            .map_err(|error| delivery_error(target, record, error))?;
        self.metrics.dead_lettered(kind);
        Ok(())
    }

    /// The topic of each output of `record`, or why the record fails instead: an output
    /// with no acceptable topic (`unroutable`), or one its topic cannot take
    /// (`sink-rejected`). Checked for every output before any is produced.
    async fn destinations(
        &self,
        record: &SourceRecord,
        outputs: &[OutputRecord],
    ) -> Result<Vec<Arc<str>>, (&'static str, String)> {
        let topics = self
            .output_topics(record, outputs)
            .map_err(|reason| (UNROUTABLE, reason))?;
        for (output, topic) in outputs.iter().zip(&topics) {
            self.topic_creation
                .ensure(Cluster::Sink, topic, &record.topic)
                .await;
            if let Some(reason) = self.topics.refusal(topic, output).await {
                return Err((SINK_REJECTED, reason));
            }
        }
        Ok(topics)
    }

    /// The topic of each output of `record`: `sink.topic` rendered for the record's
    /// source topic, or the one the policy named, checked like a rendered one. A
    /// record with an output that has no acceptable topic fails alone (dead-lettered as
    /// `unroutable`) rather than stop every partition.
    fn output_topics(
        &self,
        record: &SourceRecord,
        outputs: &[OutputRecord],
    ) -> Result<Vec<Arc<str>>, String> {
        let mut rendered = None;
        outputs
            .iter()
            .map(|output| match &output.topic {
                Some(topic) => {
                    self.route.check_output_topic(topic)?;
                    Ok(Arc::from(topic.as_str()))
                }
                None => match &rendered {
                    Some(topic) => Ok(Arc::clone(topic)),
                    None => {
                        let topic = self.route.topic_for(&record.topic)?;
                        rendered = Some(topic.clone());
                        Ok(topic)
                    }
                },
            })
            .collect()
    }

    /// `message` (to an output's topic) made the sink record for `output` of `record`.
    fn sink_message<'a>(
        &self,
        mut message: Message<'a>,
        record: &SourceRecord,
        output: &'a OutputRecord,
    ) -> Message<'a> {
        // librdkafka allocates a header list even for none.
        if !output.headers.is_empty() {
            message = message.headers(kafka::owned_headers(&output.headers));
        }
        if let Some(key) = &output.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &output.value {
            message = message.payload(value.as_slice());
        }
        if self.config.preserve_partitions {
            message = message.partition(record.partition);
        }
        if self.config.timestamp == TimestampSource::Source {
            if let Some(timestamp) = record.timestamp {
                message = message.timestamp(timestamp);
            }
        }
        message
    }
}

fn stopped_on_failure(record: &SourceRecord, kind: &'static str, reason: &str) -> PipelineError {
    PipelineError::StoppedOnFailure {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        kind,
        reason: reason.to_string(),
    }
}

fn describe_failure(failure: &Failure) -> (&'static str, String) {
    match failure {
        Failure::InvalidInput(reason) => ("invalid-input", reason.clone()),
        Failure::PolicyError(reason) => ("policy-error", reason.clone()),
        Failure::Retryable(reason) => ("retryable", reason.clone()),
    }
}

/// The error of a delivery of `record` that failed for a reason of the cluster or the
/// producer, not of the record.
pub(crate) fn delivery_error(
    target: Target,
    record: &SourceRecord,
    error: KafkaError,
) -> PipelineError {
    PipelineError::Delivery {
        target: target.name(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        detail: error.to_string(),
    }
}
