//! The sink side: handing a batch's outputs (or its dead letters) to the producers, and
//! completing batches strictly in order once every delivery was acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::task::JoinHandle;

use crate::config::{PipelineConfig, SinkConfig, TimestampSource};
use crate::kafka;
use crate::metrics::Metrics;
use crate::policy::{Failure, OutputRecord, PolicyRuntime, SourceRecord, TransformResult};
use crate::topics::Route;

use super::dead_letter::DeadLetters;
use super::ownership::{BatchOffsets, Epoch, Ownership, Partition};
use super::produce::enqueue;
use super::refusal::{refused_by_sink, SINK_REJECTED};
use super::sink_topics::SinkTopics;
use super::source::Batch;
use super::stopping::Stopping;
use super::topic_creation::{Cluster, TopicCreation};
use super::transactions::{Sent, Transactions};
use super::{joined, kafka_error, PipelineError};

/// Where a delivery went, to say which cluster failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Sink,
    /// With the failure's kind (`invalid-input`, ...), for the metrics.
    DeadLetter(&'static str),
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Sink => "the sink",
            Target::DeadLetter(_) => "the dead-letter topic",
        }
    }
}

type DeliveryOutcome = Result<(), KafkaError>;

/// The failure kind of a record whose output has no acceptable topic.
const UNROUTABLE: &str = "unroutable";

/// The records of one source partition in a batch, with their results.
struct PartitionBatch {
    partition: Partition,
    epoch: Epoch,
    items: Vec<(SourceRecord, TransformResult)>,
}

/// A batch whose records were handed to producers and await acknowledgement.
pub(crate) struct InFlight {
    records: Vec<SourceRecord>,
    /// The policy that transformed the batch: its late dead letters (a record the sink
    /// refused) carry this digest even if another policy was swapped in meanwhile.
    policy: Arc<PolicyRuntime>,
    read_at: Instant,
    /// Its number in [`Ownership`], which tracks it for rebalances.
    sequence: u64,
    /// Resolves when every delivery of the batch has an answer.
    deliveries: JoinHandle<Vec<(usize, Target, u64, DeliveryOutcome)>>,
}

pub(crate) struct Delivery {
    sink: FutureProducer,
    sink_config: SinkConfig,
    sink_route: Route,
    sink_topics: SinkTopics,
    topic_creation: Arc<TopicCreation>,
    dead_letters: Option<DeadLetters>,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
    stopping: Stopping,
}

impl Delivery {
    pub(crate) fn new(
        config: &PipelineConfig,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
        stopping: Stopping,
    ) -> Result<Delivery, PipelineError> {
        let topic_creation = Arc::new(TopicCreation::new(config));
        Ok(Delivery {
            sink: kafka::sink_producer(&config.sink, &config.pipeline)
                .map_err(kafka_error("creating the sink producer"))?,
            sink_config: config.sink.clone(),
            sink_route: config
                .sink_route()
                .map_err(|e| PipelineError::Route(e.to_string()))?,
            sink_topics: SinkTopics::new(&config.sink),
            dead_letters: DeadLetters::new(config, topic_creation.clone(), stopping.clone())?,
            topic_creation,
            ownership,
            metrics,
            stopping,
        })
    }

    /// Hands the batch's outputs to the producers. Records of partitions revoked since
    /// they were read are left out: their next owner reads them again.
    pub(crate) async fn dispatch(
        &self,
        batch: Batch,
        results: Vec<TransformResult>,
        policy: &Arc<PolicyRuntime>,
    ) -> Result<InFlight, PipelineError> {
        let mut offsets = BatchOffsets::new();
        let read_at = batch.read_at;
        let mut records = Vec::with_capacity(batch.records.len());
        let mut deliveries: Vec<(usize, Target, u64, DeliveryFuture)> = Vec::new();
        for ((record, epoch), result) in batch.records.into_iter().zip(batch.epochs).zip(results) {
            let partition = (record.topic.clone(), record.partition);
            if !self.ownership.owns(&partition, epoch) {
                tracing::debug!(
                    topic = record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    "partition revoked since this record was read; left to its next owner"
                );
                continue;
            }
            offsets.insert(partition, (record.offset + 1, epoch));
            let index = records.len();
            match result {
                Ok(outputs) => match self.destinations(&record, &outputs).await {
                    Ok(topics) => {
                        for (output, topic) in outputs.iter().zip(&topics) {
                            let bytes =
                                kafka::record_bytes(output.key.as_deref(), output.value.as_deref());
                            let message = self.sink_message(&record, output, topic);
                            match enqueue(&self.sink, message, &self.stopping).await {
                                Ok(delivery) => {
                                    deliveries.push((index, Target::Sink, bytes, delivery))
                                }
                                Err(error) => {
                                    let Some(reason) = refused_by_sink(&error) else {
                                        return Err(delivery_error(Target::Sink, &record, error));
                                    };
                                    let delivery = self
                                        .dead_letter(&record, SINK_REJECTED, &reason, policy)
                                        .await?;
                                    deliveries.push((
                                        index,
                                        Target::DeadLetter(SINK_REJECTED),
                                        0,
                                        delivery,
                                    ));
                                }
                            }
                        }
                    }
                    Err((kind, reason)) => {
                        let delivery = self.dead_letter(&record, kind, &reason, policy).await?;
                        deliveries.push((index, Target::DeadLetter(kind), 0, delivery));
                    }
                },
                Err(failure) => {
                    let (kind, reason) = describe_failure(&failure);
                    let delivery = self.dead_letter(&record, kind, &reason, policy).await?;
                    deliveries.push((index, Target::DeadLetter(kind), 0, delivery));
                }
            }
            records.push(record);
        }
        let sequence = self.ownership.dispatched(offsets);
        let ownership = self.ownership.clone();
        let sink = self.sink.clone();
        let deliveries = tokio::spawn(async move {
            let outcomes = join_all(deliveries.into_iter().map(
                |(index, target, bytes, delivery)| {
                    let sink = sink.clone();
                    async move {
                        let outcome = match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((error, message))) if collateral(&error) => {
                                resend(&sink, &message).await
                            }
                            Ok(Err((error, _message))) => Err(error),
                            Err(_canceled) => Err(KafkaError::Canceled),
                        };
                        (index, target, bytes, outcome)
                    }
                },
            ))
            .await;
            ownership.delivered(sequence, outcomes.iter().all(|o| o.3.is_ok()));
            outcomes
        });
        Ok(InFlight {
            records,
            policy: policy.clone(),
            read_at,
            sequence,
            deliveries,
        })
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
            if let Some(reason) = self.sink_topics.refusal(topic, output).await {
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
                    self.sink_route.check_output_topic(topic)?;
                    Ok(Arc::from(topic.as_str()))
                }
                None => match &rendered {
                    Some(topic) => Ok(Arc::clone(topic)),
                    None => {
                        let topic = self.sink_route.topic_for(&record.topic)?;
                        rendered = Some(topic.clone());
                        Ok(topic)
                    }
                },
            })
            .collect()
    }

    /// The sink record for one output of `record`, to `topic`.
    fn sink_message<'a>(
        &'a self,
        record: &SourceRecord,
        output: &'a OutputRecord,
        topic: &'a str,
    ) -> FutureRecord<'a, [u8], [u8]> {
        let mut message =
            FutureRecord::<[u8], [u8]>::to(topic).headers(kafka::owned_headers(&output.headers));
        if let Some(key) = &output.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &output.value {
            message = message.payload(value.as_slice());
        }
        if self.sink_config.preserve_partitions {
            message = message.partition(record.partition);
        }
        if self.sink_config.timestamp == TimestampSource::Source {
            if let Some(timestamp) = record.timestamp {
                message = message.timestamp(timestamp);
            }
        }
        message
    }

    /// Exactly-once: hands the batch's outputs (and dead letters on the sink cluster) to
    /// the open transaction of each source partition, beginning one where none is open.
    /// [`Transactions::commit_due`] commits them, with their positions.
    pub(crate) async fn deliver_exactly_once(
        &self,
        transactions: &Arc<Transactions>,
        batch: Batch,
        results: Vec<TransformResult>,
        policy: &PolicyRuntime,
    ) -> Result<(), PipelineError> {
        let mut groups: Vec<PartitionBatch> = Vec::new();
        let mut index: HashMap<Partition, usize> = HashMap::new();
        for ((record, epoch), result) in batch.records.into_iter().zip(batch.epochs).zip(results) {
            let partition = (record.topic.clone(), record.partition);
            if !self.ownership.owns(&partition, epoch) {
                continue;
            }
            let at = *index.entry(partition.clone()).or_insert_with(|| {
                groups.push(PartitionBatch {
                    partition,
                    epoch,
                    items: Vec::new(),
                });
                groups.len() - 1
            });
            groups[at].items.push((record, result));
        }
        for group in groups {
            let first = group.items.first().map_or(0, |(record, _)| record.offset);
            let next = group
                .items
                .last()
                .map_or(0, |(record, _)| record.offset + 1);
            let producer = transactions.begin(&group.partition, group.epoch, first)?;
            let sent = self
                .send_in_transaction(&producer, transactions, &group, policy)
                .await;
            match sent {
                Ok(sent) => transactions.sent(&group.partition, next, sent),
                // The sink did not take a record (librdkafka refuses sends once a
                // transaction must abort): abort, and read the partition again.
                Err((sent, error @ PipelineError::Delivery { .. })) => {
                    transactions.sent(&group.partition, next, sent);
                    transactions.doom(&group.partition, error.to_string());
                }
                Err((_, error)) => {
                    let (transactions, partition) = (transactions.clone(), group.partition);
                    tokio::task::spawn_blocking(move || transactions.abort_open(&partition))
                        .await
                        .map_err(joined("aborting a transaction"))??;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Sends a partition's outputs through its transactional producer. Dead letters on
    /// the source cluster, outside the transaction, are awaited here: the position that
    /// passes their records must not commit before they are acknowledged.
    async fn send_in_transaction(
        &self,
        producer: &FutureProducer,
        transactions: &Transactions,
        group: &PartitionBatch,
        policy: &PolicyRuntime,
    ) -> Result<Vec<Sent>, (Vec<Sent>, PipelineError)> {
        let mut sent = Vec::new();
        for (record, result) in &group.items {
            let refused = transactions.refused(&group.partition, record.offset);
            let failure = match result {
                Ok(_) if refused.is_some() => refused.map(|reason| (SINK_REJECTED, reason)),
                Ok(outputs) => match self.destinations(record, outputs).await {
                    Ok(topics) => {
                        let mut failure = None;
                        for (output, topic) in outputs.iter().zip(&topics) {
                            let bytes =
                                kafka::record_bytes(output.key.as_deref(), output.value.as_deref());
                            let message = self.sink_message(record, output, topic);
                            match enqueue(producer, message, &self.stopping).await {
                                Ok(delivery) => sent.push(Sent {
                                    offset: record.offset,
                                    dead_letter: None,
                                    bytes,
                                    delivery,
                                }),
                                Err(error) => match refused_by_sink(&error) {
                                    Some(reason) => {
                                        failure = Some((SINK_REJECTED, reason));
                                        break;
                                    }
                                    None => {
                                        return Err((
                                            sent,
                                            delivery_error(Target::Sink, record, error),
                                        ))
                                    }
                                },
                            }
                        }
                        failure
                    }
                    Err(failure) => Some(failure),
                },
                Err(failure) => {
                    let (kind, reason) = describe_failure(failure);
                    Some((kind, reason))
                }
            };
            let Some((kind, reason)) = failure else {
                continue;
            };
            let Some(dead_letters) = &self.dead_letters else {
                return Err((sent, stopped_on_failure(record, kind, &reason)));
            };
            let topic = match dead_letters.topic_for(record) {
                Ok(topic) => topic,
                Err(error) => return Err((sent, error)),
            };
            if dead_letters.on_sink_cluster() {
                let delivery = match dead_letters
                    .send_via(producer, &topic, record, kind, &reason, policy)
                    .await
                {
                    Ok(delivery) => delivery,
                    Err(error) => {
                        return Err((
                            sent,
                            delivery_error(Target::DeadLetter(kind), record, error),
                        ))
                    }
                };
                sent.push(Sent {
                    offset: record.offset,
                    dead_letter: Some(kind),
                    bytes: 0,
                    delivery,
                });
            } else {
                // Outside the transaction, at least once: acknowledged before the
                // position passes it, or the transaction aborts and it is sent again.
                let acknowledged = match self.dead_letter(record, kind, &reason, policy).await {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((error, _))) => {
                            Err(delivery_error(Target::DeadLetter(kind), record, error))
                        }
                        Err(_) => Err(delivery_error(
                            Target::DeadLetter(kind),
                            record,
                            KafkaError::Canceled,
                        )),
                    },
                    Err(error) => Err(error),
                };
                if let Err(error) = acknowledged {
                    return Err((sent, error));
                }
                self.metrics.dead_lettered(kind);
            }
        }
        Ok(sent)
    }

    /// Sends a failed record to the dead-letter topic, or stops if so configured.
    async fn dead_letter(
        &self,
        record: &SourceRecord,
        kind: &'static str,
        reason: &str,
        policy: &PolicyRuntime,
    ) -> Result<DeliveryFuture, PipelineError> {
        let Some(dead_letters) = &self.dead_letters else {
            return Err(stopped_on_failure(record, kind, reason));
        };
        let topic = dead_letters.topic_for(record)?;
        dead_letters
            .send(&topic, record, kind, reason, policy)
            .await
            .map_err(|error| delivery_error(Target::DeadLetter(kind), record, error))
    }

    /// Completes in-flight batches, oldest first, until at most `keep` remain (waiting
    /// as needed) and no finished batch is left at the front. `keep = 0` drains all.
    /// Returns how many batches completed.
    pub(crate) async fn settle(
        &self,
        in_flight: &mut VecDeque<InFlight>,
        keep: usize,
    ) -> Result<usize, PipelineError> {
        let mut completed = 0;
        while let Some(front) = in_flight.front() {
            if in_flight.len() <= keep && !front.deliveries.is_finished() {
                break;
            }
            let flight = in_flight.pop_front().expect("front exists");
            let sequence = flight.sequence;
            let outcome = self.complete(flight).await;
            // Never commit a batch whose acknowledgements were not all seen.
            self.ownership.completed(sequence, outcome.is_ok());
            outcome?;
            completed += 1;
        }
        Ok(completed)
    }

    async fn complete(&self, flight: InFlight) -> Result<(), PipelineError> {
        let outcomes = flight
            .deliveries
            .await
            .map_err(|error| PipelineError::Delivery {
                target: Target::Sink.name(),
                topic: flight
                    .records
                    .first()
                    .map(|r| r.topic.clone())
                    .unwrap_or_default(),
                partition: flight.records.first().map_or(-1, |r| r.partition),
                offset: flight.records.first().map_or(-1, |r| r.offset),
                detail: format!("waiting for acknowledgements failed: {error}"),
            })?;
        for (index, target, bytes, outcome) in outcomes {
            let record = &flight.records[index];
            match (target, outcome) {
                (Target::Sink, Ok(())) => self.metrics.produced(bytes),
                (Target::DeadLetter(kind), Ok(())) => self.metrics.dead_lettered(kind),
                // The broker refused this record (its size, no key on a compacted
                // topic...): that is the record's failure, not the pipeline's.
                // Dead-letter it (waiting for that) or stop.
                (Target::Sink, Err(error)) if refused_by_sink(&error).is_some() => {
                    let reason = refused_by_sink(&error).unwrap_or_default();
                    let delivery = self
                        .dead_letter(record, SINK_REJECTED, &reason, &flight.policy)
                        .await?;
                    let dead_letter = Target::DeadLetter(SINK_REJECTED);
                    match delivery.await {
                        Ok(Ok(_)) => self.metrics.dead_lettered(SINK_REJECTED),
                        Ok(Err((error, _))) => {
                            return Err(delivery_error(dead_letter, record, error))
                        }
                        Err(_) => {
                            return Err(delivery_error(dead_letter, record, KafkaError::Canceled))
                        }
                    }
                }
                (target, Err(error)) => return Err(delivery_error(target, record, error)),
            }
        }
        self.metrics.committed();
        self.metrics.batch_finished(flight.read_at.elapsed());
        Ok(())
    }
}

/// How long a record produced again may wait for room in librdkafka's queue.
const RESEND_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Refused only because another record of its produce request was: not this record's
/// failure.
fn collateral(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidDifferentRecord)
}

/// Produces again a record the broker refused with another (see [`collateral`]). A record
/// is refused that way only next to one the sink topic cannot take, which
/// [`SinkTopics`] mostly keeps from being produced; librdkafka hands it back after
/// records it sent later, so in that rare case it lands after them.
async fn resend(sink: &FutureProducer, message: &OwnedMessage) -> Result<(), KafkaError> {
    let mut record = FutureRecord::<[u8], [u8]>::to(message.topic()).partition(message.partition());
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(value) = message.payload() {
        record = record.payload(value);
    }
    if let Some(headers) = message.headers() {
        record = record.headers(headers.clone());
    }
    if let Some(timestamp) = message.timestamp().to_millis() {
        record = record.timestamp(timestamp);
    }
    match sink.send(record, Timeout::After(RESEND_QUEUE_WAIT)).await {
        Ok(_) => Ok(()),
        Err((error, _)) => Err(error),
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

fn delivery_error(target: Target, record: &SourceRecord, error: KafkaError) -> PipelineError {
    PipelineError::Delivery {
        target: target.name(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        detail: error.to_string(),
    }
}
