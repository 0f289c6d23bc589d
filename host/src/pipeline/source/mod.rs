//! The source side: joining the group (or assigning every partition), gathering
//! batches, staying in the group while a batch waits, and committing offsets.

mod context;

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Assignment, SourceConfig, TuningConfig};
use crate::kafka;
use crate::kafka::Consumed;
use crate::metrics::Metrics;
use crate::policy::SourceRecord;

use super::error::{kafka_error, PipelineError};
use super::ownership::{Epoch, Handover, Ownership, Partition};
use context::resume_from;
pub(crate) use context::{block_in_place, PipelineContext};

/// Records handed to the policy together, each with the epoch its partition was owned
/// under when it was read.
pub(crate) struct Batch {
    pub records: Vec<SourceRecord>,
    pub epochs: Vec<Epoch>,
    /// Records the policy must not be given (by index, ascending), with why: they fail
    /// as invalid input without reaching it.
    pub refused: Vec<(usize, String)>,
    /// When the batch was complete: where its `batch_duration` starts.
    pub read_at: Instant,
}

pub(crate) struct Source {
    /// Closed with a bound when the source is dropped, never dropped in place.
    consumer: ManuallyDrop<StreamConsumer<PipelineContext>>,
    ownership: Arc<Ownership>,
    handover: Arc<dyn Handover>,
    metrics: Arc<Metrics>,
    /// Records that arrived while the source was paused; they open the next batch.
    pending: VecDeque<(Consumed, Epoch)>,
    paused: bool,
}

impl Source {
    pub(crate) fn new(
        config: &SourceConfig,
        tuning: &TuningConfig,
        ownership: Arc<Ownership>,
        handover: Arc<dyn Handover>,
        metrics: Arc<Metrics>,
    ) -> Result<Source, PipelineError> {
        let context = PipelineContext {
            ownership: ownership.clone(),
            handover: handover.clone(),
            metrics: metrics.clone(),
            cooperative: kafka::cooperative_assignment(&config.properties),
        };
        let consumer = kafka::consumer(config, tuning, context)
            .map_err(kafka_error("creating the source consumer"))?;
        Ok(Source {
            consumer: ManuallyDrop::new(consumer),
            ownership,
            handover,
            metrics,
            pending: VecDeque::new(),
            paused: false,
        })
    }

    pub(crate) fn start(&self, config: &SourceConfig) -> Result<(), PipelineError> {
        match config.assignment {
            Assignment::Group => {
                let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
                self.consumer
                    .subscribe(&topics)
                    .map_err(kafka_error("subscribing to source.topics"))
            }
            Assignment::Static => self.assign_every_partition(config),
        }
    }

    /// Static assignment: every partition of the source topics, from the offsets
    /// committed under the group id (exactly-once: on the sink cluster first), or where
    /// `auto.offset.reset` says, for partitions without a commit. Runs once at
    /// start-up; the calls block briefly.
    fn assign_every_partition(&self, config: &SourceConfig) -> Result<(), PipelineError> {
        const TIMEOUT: Duration = Duration::from_secs(30);
        let mut partitions = TopicPartitionList::new();
        for topic in &config.topics {
            let count = kafka::partition_count(&*self.consumer, topic, TIMEOUT)
                .map_err(kafka_error("reading the source topics' metadata"))?;
            if count == 0 {
                return Err(PipelineError::SourceTopic(format!(
                    "topic \"{topic}\" does not exist on the source cluster"
                )));
            }
            for partition in 0..count as i32 {
                partitions.add_partition(topic, partition);
            }
        }
        let reset = match config
            .properties
            .0
            .get("auto.offset.reset")
            .map(String::as_str)
        {
            Some("latest" | "largest" | "end") => Offset::End,
            _ => Offset::Beginning,
        };
        let assigned: Vec<Partition> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        self.ownership.assigned(assigned.clone());
        self.metrics.set_assigned(self.ownership.owned_count());
        // Exactly once, this fences the previous runner first (so that nothing commits
        // after the offsets below are read) and reads (and, for signed positions,
        // verifies through Vault) what the sink holds, blocking: off the runtime's
        // worker, as the rebalance path does.
        let positions = block_in_place(|| self.handover.assigned(&assigned))?;
        let committed = kafka::committed_offsets(&*self.consumer, &partitions, TIMEOUT).map_err(
            kafka_error("reading the committed offsets of source.group_id"),
        )?;
        let mut start = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => reset,
            };
            start
                .add_partition_offset(element.topic(), element.partition(), offset)
                .map_err(kafka_error("assigning source partitions"))?;
        }
        tracing::info!(
            partitions = start.count(),
            "source partitions assigned (static)"
        );
        resume_from(&start, &positions);
        self.consumer
            .assign(&start)
            .map_err(kafka_error("assigning source partitions"))
    }

    /// Up to `pipeline.batch_size` records or `pipeline.max_batch_bytes` bytes (keys,
    /// values and headers) of what the consumer has fetched, waiting at most
    /// `pipeline.batch_timeout` for the first record (an empty batch says the source is
    /// quiet).
    pub(crate) async fn next_batch(&mut self, tuning: &TuningConfig) -> Batch {
        let mut batch = Batch {
            records: Vec::with_capacity(tuning.batch_size),
            epochs: Vec::with_capacity(tuning.batch_size),
            refused: Vec::new(),
            read_at: Instant::now(),
        };
        let mut bytes = 0u64;
        let mut held = 0u64;
        let deadline = tokio::time::Instant::now() + tuning.batch_timeout;
        while batch.records.len() < tuning.batch_size && held < tuning.max_batch_bytes as u64 {
            let (consumed, epoch) = match self.pending.pop_front() {
                Some(pending) => pending,
                None if batch.records.is_empty() => {
                    match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                        Err(_elapsed) => break,
                        Ok(Ok(message)) => match self.owned_record(&message) {
                            Some(owned) => owned,
                            None => continue,
                        },
                        Ok(Err(error)) => {
                            tracing::warn!("consumer: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                    }
                }
                // Once the batch has a record, it takes what librdkafka has already
                // fetched and no more: waiting for records that may not come would add
                // their wait to every record's latency. Under load the queue refills
                // while a batch is in the policy, so batches still fill.
                None => match self.consumer.recv().now_or_never() {
                    None => break,
                    Some(Ok(message)) => match self.owned_record(&message) {
                        Some(owned) => owned,
                        None => continue,
                    },
                    Some(Err(error)) => {
                        tracing::warn!("consumer: {error}");
                        break;
                    }
                },
            };
            let Consumed { record, refused } = consumed;
            bytes += kafka::record_bytes(record.key.as_deref(), record.value.as_deref());
            held += kafka::source_record_bytes(&record);
            if let Some(reason) = refused {
                batch.refused.push((batch.records.len(), reason));
            }
            batch.records.push(record);
            batch.epochs.push(epoch);
        }
        if !batch.records.is_empty() {
            self.metrics.consumed(batch.records.len() as u64, bytes);
        }
        batch.read_at = Instant::now();
        batch
    }

    fn owned_record(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Option<(Consumed, Epoch)> {
        let consumed = kafka::source_record(message);
        let epoch = self
            .ownership
            .epoch(&(consumed.record.topic.clone(), consumed.record.partition))?;
        Some((consumed, epoch))
    }

    /// The consumer's group metadata (generation and member id), for offsets sent in a
    /// transaction.
    pub(crate) fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// Waits `duration` while a batch cannot go on (Vault sealed, unreachable), with
    /// the assigned partitions paused but the consumer still polled: past
    /// `max.poll.interval.ms` without a poll, librdkafka would leave the group, and the
    /// rebalance that follows would repeat the batch elsewhere. Anything that arrives
    /// anyway (a partition assigned meanwhile) is kept for the next batch.
    pub(crate) async fn wait_paused(&mut self, duration: Duration) {
        self.pause();
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Ok(message)) => {
                    if let Some(owned) = self.owned_record(&message) {
                        self.pending.push_back(owned);
                    }
                    self.paused = false;
                    self.pause();
                }
                Ok(Err(error)) => {
                    tracing::warn!("consumer: {error}");
                    tokio::time::sleep(Duration::from_millis(100).min(duration)).await;
                }
            }
        }
    }

    fn pause(&mut self) {
        if self.paused {
            return;
        }
        match self.consumer.assignment() {
            Ok(assignment) => match self.consumer.pause(&assignment) {
                Ok(()) => self.paused = true,
                Err(error) => tracing::warn!("pausing the source partitions failed: {error}"),
            },
            Err(error) => tracing::warn!("reading the source assignment failed: {error}"),
        }
    }

    /// Fetches again after [`Source::wait_paused`]; fetching resumes after the last
    /// record handed to a batch.
    pub(crate) fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        let resumed = self
            .consumer
            .assignment()
            .and_then(|assignment| self.consumer.resume(&assignment));
        if let Err(error) = resumed {
            tracing::warn!("resuming the source partitions failed: {error}");
        }
    }

    /// Reads `partition` again from `offset` (exactly-once, after an aborted
    /// transaction), if it is still owned under `epoch`. An error stops the pipeline:
    /// going on would skip the aborted records.
    pub(crate) fn rewind(
        &mut self,
        partition: &Partition,
        epoch: Epoch,
        offset: i64,
    ) -> Result<(), PipelineError> {
        if !self.ownership.owns(partition, epoch) {
            return Ok(());
        }
        // Records of the partition already read (a batch being prepared) are stale.
        self.ownership.renew(partition);
        self.pending.retain(|(consumed, _)| {
            (&consumed.record.topic, consumed.record.partition) != (&partition.0, partition.1)
        });
        self.consumer
            .seek(
                &partition.0,
                partition.1,
                Offset::Offset(offset),
                Duration::from_secs(10),
            )
            .map_err(kafka_error(
                "rewinding a partition after an aborted transaction",
            ))
    }

    /// Commits the acknowledged offsets of the partitions this runner owns:
    /// asynchronously while running; at the end, waiting for the group coordinator's
    /// answer at most [`FINAL_COMMIT_LIMIT`].
    pub(crate) fn commit(&self, mode: CommitMode) {
        let list = self.ownership.commit_list();
        if list.count() == 0 {
            return;
        }
        let committed = match mode {
            CommitMode::Async => self
                .consumer
                .commit(&list, CommitMode::Async)
                .map_err(|e| e.to_string()),
            CommitMode::Sync => {
                block_in_place(|| kafka::commit_within(&*self.consumer, &list, FINAL_COMMIT_LIMIT))
            }
        };
        // A failed commit loses nothing: the records are re-delivered after a restart.
        if let Err(error) = committed {
            tracing::warn!("committing source offsets failed (records may be repeated after a restart): {error}");
        }
    }

    /// Gives every partition up and leaves the consumer group (if it joined one), so
    /// that closing the consumer has no rebalance left to answer (see
    /// [`kafka::leave_group`]). The last step of a stop, after the final commit.
    pub(crate) async fn leave_group(&self) {
        if let Err(error) = kafka::leave_group(&self.consumer, LEAVE_LIMIT).await {
            tracing::warn!(
                "leaving the source consumer group: {error}; closing the consumer anyway"
            );
        }
    }
}

impl Drop for Source {
    /// Closing the consumer answers its last rebalance and leaves the group. librdkafka
    /// can wait for ever doing that (see `kafka::group`); a stopping runner does not.
    fn drop(&mut self) {
        // SAFETY: the consumer is taken once, here, and `self` is not used again.
        let consumer = unsafe { ManuallyDrop::take(&mut self.consumer) };
        if !block_in_place(|| kafka::close_within(consumer, CLOSE_LIMIT)) {
            tracing::warn!(
                "the source consumer did not close within {CLOSE_LIMIT:?}; stopping without it \
                 (its partitions go to other runners once the group's session.timeout.ms passes)"
            );
        }
    }
}

/// How long the last commit of a stopping pipeline waits for the coordinator.
const FINAL_COMMIT_LIMIT: Duration = Duration::from_secs(10);

/// How long leaving the group may take: a revocation's drain and commit ([`context`]'s
/// limits), and a little more.
const LEAVE_LIMIT: Duration = Duration::from_secs(45);

/// How long closing the source consumer may take, should it still have a revocation to
/// answer (a stop that did not leave the group first).
const CLOSE_LIMIT: Duration = Duration::from_secs(60);
