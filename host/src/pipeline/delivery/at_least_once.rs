//! At least once (`pipeline.delivery = "at-least-once"`, the default): an idempotent
//! producer, and batches that complete strictly in order.
//!
//! A batch is handed to the producer and kept in flight until every one of its
//! deliveries was acknowledged; up to `pipeline.max_in_flight_batches` full batches'
//! worth of records overlap (however small batches are), so batch N is acknowledged
//! while the next ones are in the policy. Its offsets are committed (on the
//! source cluster, under `source.group_id`) only once it and every batch before it were
//! acknowledged, so a crash at any point repeats records, never loses them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::CommitMode;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use tokio::task::JoinHandle;

use crate::config::PipelineConfig;
use crate::kafka::{self, AckingProducer, Acks};
use crate::metrics::Metrics;
use crate::policy::{PolicyRuntime, SourceRecord, TransformResult};

use crate::pipeline::error::{kafka_error, PipelineError};
use crate::pipeline::ownership::{BatchOffsets, Epoch, Handover, Ownership, Partition};
use crate::pipeline::sink::{
    delivery_error, enqueue, refused_by_sink, DeadLetterPath, Handed, Outbox, Sink, Target,
    SINK_REJECTED,
};
use crate::pipeline::source::{Batch, Source};
use crate::pipeline::stopping::Stopping;

/// At least once needs nothing of its own when partitions come and go: [`Ownership`]
/// drains and commits what was acknowledged.
pub(crate) struct Untracked;

impl Handover for Untracked {}

/// What the batches in flight hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    records: usize,
    bytes: u64,
}

impl Held {
    fn exceeds(self, limit: Held) -> bool {
        self.records > limit.records || self.bytes > limit.bytes
    }
}

/// A batch's answers: what was handed over, and the failures among it by ticket number
/// (sorted; none, almost always).
struct Answers {
    handed: Vec<Handed>,
    failed: Vec<(usize, KafkaError)>,
}

impl Answers {
    fn failure(&self, handed: &Handed) -> Option<&KafkaError> {
        self.failed
            .binary_search_by_key(&handed.ticket, |(ticket, _)| *ticket)
            .ok()
            .map(|at| &self.failed[at].1)
    }
}

/// A batch whose records were handed to producers and await acknowledgement.
struct InFlight {
    records: Vec<SourceRecord>,
    /// The policy that transformed the batch: its late dead letters (a record the sink
    /// refused) carry this digest even if another policy was swapped in meanwhile.
    policy: Arc<PolicyRuntime>,
    read_at: Instant,
    /// Its source records' bytes (keys, values, headers), which stay held until it
    /// completes.
    bytes: u64,
    /// Its number in [`Ownership`], which tracks it for rebalances.
    sequence: u64,
    /// Resolves when every delivery of the batch has an answer.
    deliveries: JoinHandle<Answers>,
}

pub(crate) struct AtLeastOnce {
    producer: AckingProducer,
    sink: Sink,
    in_flight: VecDeque<InFlight>,
    /// Records and bytes of the batches in flight.
    held: Held,
    /// At most this much stays in flight: `pipeline.max_in_flight_batches` full batches'
    /// worth (`batch_size` records, `max_batch_bytes`), however small batches are.
    limit: Held,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
}

impl AtLeastOnce {
    pub(crate) fn new(
        config: &PipelineConfig,
        sink: Sink,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
    ) -> Result<AtLeastOnce, PipelineError> {
        Ok(AtLeastOnce {
            producer: kafka::sink_producer(&config.sink, &config.pipeline)
                .map_err(kafka_error("creating the sink producer"))?,
            sink,
            in_flight: VecDeque::new(),
            held: Held::default(),
            limit: Held {
                records: config.pipeline.batch_size * config.pipeline.max_in_flight_batches,
                bytes: config.pipeline.max_batch_bytes as u64
                    * config.pipeline.max_in_flight_batches as u64,
            },
            ownership,
            metrics,
        })
    }

    /// Hands the batch's outputs to the producer, then completes the oldest batches
    /// while more than `pipeline.max_in_flight_batches` full batches' worth is in
    /// flight. Records of partitions revoked since they were read are left out: their
    /// next owner reads them again.
    pub(crate) async fn deliver(
        &mut self,
        batch: Batch,
        results: Vec<TransformResult>,
        policy: &Arc<PolicyRuntime>,
        source: &mut Source,
    ) -> Result<(), PipelineError> {
        let mut offsets = BatchOffsets::new();
        let read_at = batch.read_at;
        let mut records = Vec::with_capacity(batch.records.len());
        let mut handed = Vec::with_capacity(batch.records.len());
        let acks = Acks::new();
        let outbox = Outbox {
            producer: &self.producer,
            acks: &acks,
        };
        // Records come in runs of one partition: ownership is asked once per run.
        let mut run: Option<(Partition, Epoch, bool)> = None;
        for ((record, epoch), result) in batch.records.into_iter().zip(batch.epochs).zip(results) {
            let same_run = run.as_ref().is_some_and(|(partition, run_epoch, _)| {
                *run_epoch == epoch
                    && partition.1 == record.partition
                    && partition.0 == record.topic
            });
            if !same_run {
                let partition = (record.topic.clone(), record.partition);
                let owned = self.ownership.owns(&partition, epoch);
                if owned {
                    offsets.insert(partition.clone(), (record.offset + 1, epoch));
                }
                run = Some((partition, epoch, owned));
            }
            let Some((partition, _, owned)) = &run else {
                continue;
            };
            if !owned {
                tracing::debug!(
                    topic = record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    "partition revoked since this record was read; left to its next owner"
                );
                continue;
            }
            if let Some(next) = offsets.get_mut(partition) {
                next.0 = record.offset + 1;
            }
            let index = records.len();
            self.sink
                .hand_over(
                    outbox,
                    index,
                    &record,
                    &result,
                    None,
                    policy,
                    DeadLetterPath::WithBatch,
                    &mut handed,
                )
                .await?;
            records.push(record);
        }
        // Every record of the batch was handed over.
        acks.close();
        let sequence = self.ownership.dispatched(offsets);
        let bytes = records.iter().map(kafka::source_record_bytes).sum();
        self.held.records += records.len();
        self.held.bytes += bytes;
        self.in_flight.push_back(InFlight {
            records,
            policy: policy.clone(),
            read_at,
            bytes,
            sequence,
            deliveries: tokio::spawn(acknowledged(
                handed,
                acks,
                self.producer.clone(),
                self.sink.stopping().clone(),
                self.ownership.clone(),
                sequence,
            )),
        });
        self.settle(Some(self.limit), source).await
    }

    /// Completes every batch in flight and commits (the source is quiet, Vault is away,
    /// the pipeline stops).
    pub(crate) async fn flush(&mut self, source: &mut Source) -> Result<(), PipelineError> {
        self.settle(None, source).await
    }

    /// Gives up the batches in flight (a stop that could not wait for them any longer):
    /// none of their offsets is ever committed. Returns how many there were.
    pub(crate) fn abandon(&mut self) -> usize {
        let batches = self.in_flight.len();
        self.in_flight.clear();
        self.held = Held::default();
        self.ownership.abandon_in_flight();
        batches
    }

    /// Completes in-flight batches, oldest first, until what remains is within `limit`
    /// (waiting as needed; `None`: until none remains) and no finished batch is left at
    /// the front, and commits what they acknowledged.
    async fn settle(
        &mut self,
        limit: Option<Held>,
        source: &mut Source,
    ) -> Result<(), PipelineError> {
        let mut completed = 0;
        let mut outcome = Ok(());
        while let Some(front) = self.in_flight.front() {
            let within = limit.is_some_and(|limit| !self.held.exceeds(limit));
            if within && !front.deliveries.is_finished() {
                break;
            }
            let flight = self.in_flight.pop_front().expect("front exists");
            self.held.records -= flight.records.len();
            self.held.bytes -= flight.bytes;
            let sequence = flight.sequence;
            let completion = self.complete(flight).await;
            // Never commit a batch whose acknowledgements were not all seen.
            self.ownership.completed(sequence, completion.is_ok());
            if completion.is_err() {
                outcome = completion;
                break;
            }
            completed += 1;
        }
        self.metrics.set_in_flight(self.in_flight.len());
        if completed > 0 {
            source.commit(CommitMode::Async);
        }
        outcome
    }

    async fn complete(&self, flight: InFlight) -> Result<(), PipelineError> {
        let first = flight.records.first();
        let answers = flight
            .deliveries
            .await
            .map_err(|error| PipelineError::Delivery {
                target: Target::Sink.name(),
                topic: first.map(|r| r.topic.clone()).unwrap_or_default(),
                partition: first.map_or(-1, |r| r.partition),
                offset: first.map_or(-1, |r| r.offset),
                detail: format!("waiting for acknowledgements failed: {error}"),
            })?;
        for handed in &answers.handed {
            let record = &flight.records[handed.index];
            match (handed.target, answers.failure(handed)) {
                (Target::Sink, None) => self.metrics.produced(handed.bytes),
                (Target::DeadLetter(kind), None) => self.metrics.dead_lettered(kind),
                // The broker refused this record (its size, no key on a compacted
                // topic...): that is the record's failure, not the pipeline's.
                // Dead-letter it (waiting for that) or stop.
                (Target::Sink, Some(error)) if refused_by_sink(error).is_some() => {
                    let reason = refused_by_sink(error).unwrap_or_default();
                    self.sink
                        .dead_letter_acknowledged(record, SINK_REJECTED, &reason, &flight.policy)
                        .await?;
                }
                (target, Some(error)) => return Err(delivery_error(target, record, error.clone())),
            }
        }
        self.metrics.committed();
        self.metrics.batch_finished(flight.read_at.elapsed());
        Ok(())
    }
}

/// Waits for every delivery of batch `sequence` (a record refused only because another
/// of its produce request was is produced again), then tells [`Ownership`], which a
/// revocation waits on.
async fn acknowledged(
    handed: Vec<Handed>,
    acks: Acks,
    producer: AckingProducer,
    stopping: Stopping,
    ownership: Arc<Ownership>,
    sequence: u64,
) -> Answers {
    let mut failed = Vec::new();
    for failure in acks.answered().await {
        if collateral(&failure.error) {
            if let Err(error) = resend(&producer, &failure.message, &stopping).await {
                failed.push((failure.number, error));
            }
        } else {
            failed.push((failure.number, failure.error));
        }
    }
    failed.sort_unstable_by_key(|(ticket, _)| *ticket);
    ownership.delivered(sequence, failed.is_empty());
    Answers { handed, failed }
}

/// Refused only because another record of its produce request was: not this record's
/// failure.
fn collateral(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidDifferentRecord)
}

/// Produces again a record the broker refused with another (see [`collateral`]). A record
/// is refused that way only next to one the sink topic cannot take, which the sink's
/// topic checks mostly keep from being produced; librdkafka hands it back after records
/// it sent later, so in that rare case it lands after them.
async fn resend(
    producer: &AckingProducer,
    message: &OwnedMessage,
    stopping: &Stopping,
) -> Result<(), KafkaError> {
    let acks = Acks::new();
    let outbox = Outbox {
        producer,
        acks: &acks,
    };
    let (mut record, _) = outbox.message(message.topic());
    record = record.partition(message.partition());
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
    enqueue(producer, record, stopping).await?;
    acks.outcome().await
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::ClientConfig;

    use super::*;

    #[tokio::test]
    async fn a_batch_is_acknowledged_once_every_record_is_and_then_its_offsets_commit() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let producer: AckingProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create_with_context(kafka::Acknowledging)
            .unwrap();
        let ownership = Arc::new(Ownership::default());
        let partition: Partition = ("in".into(), 0);
        ownership.assigned([partition.clone()]);
        let epoch = ownership.epoch(&partition).unwrap();
        let sequence = ownership.dispatched(BatchOffsets::from([(partition, (3, epoch))]));
        let acks = Acks::new();
        let outbox = Outbox {
            producer: &producer,
            acks: &acks,
        };
        let stopping = Stopping::default();
        let mut handed = Vec::new();
        for index in 0..3 {
            let (message, ticket) = outbox.message("out");
            enqueue(&producer, message.payload(&b"x"[..]), &stopping)
                .await
                .unwrap();
            handed.push(Handed {
                index,
                target: Target::Sink,
                bytes: 1,
                ticket,
            });
        }
        acks.close();
        assert_eq!(
            ownership.commit_list().count(),
            0,
            "nothing before the batch completes"
        );
        let answers = acknowledged(
            handed,
            acks,
            producer.clone(),
            stopping,
            ownership.clone(),
            sequence,
        )
        .await;
        assert_eq!(
            answers
                .handed
                .iter()
                .map(|handed| (
                    handed.index,
                    handed.target,
                    answers.failure(handed).is_none()
                ))
                .collect::<Vec<_>>(),
            vec![
                (0, Target::Sink, true),
                (1, Target::Sink, true),
                (2, Target::Sink, true)
            ]
        );
        ownership.completed(sequence, true);
        let committed = ownership.commit_list();
        let element = &committed.elements()[0];
        assert_eq!(
            (element.topic(), element.partition(), element.offset()),
            ("in", 0, rdkafka::Offset::Offset(3))
        );
    }

    #[test]
    fn only_a_record_refused_for_another_is_produced_again() {
        let collateral_error =
            KafkaError::MessageProduction(RDKafkaErrorCode::InvalidDifferentRecord);
        assert!(collateral(&collateral_error));
        for own in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::BrokerNotAvailable,
        ] {
            assert!(!collateral(&KafkaError::MessageProduction(own)), "{own:?}");
        }
    }

    #[test]
    fn many_small_batches_stay_in_flight_as_long_as_few_full_ones_would() {
        let limit = Held {
            records: 4 * 500,
            bytes: 4 * (16 << 20),
        };
        let small_batches = Held {
            records: 40 * 50,
            bytes: 40 * 50 * 1024,
        };
        assert!(!small_batches.exceeds(limit));
        assert!(Held {
            records: 2001,
            ..small_batches
        }
        .exceeds(limit));
        assert!(Held {
            records: 10,
            bytes: (64 << 20) + 1
        }
        .exceeds(limit));
    }
}
