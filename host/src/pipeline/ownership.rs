//! Which source partitions this runner owns, and the offsets it may commit for them.
//!
//! With consumer-group assignment, partitions come and go in rebalances. Each
//! assignment of a partition opens a new *epoch*; records and in-flight batches carry
//! the epoch they were read under, and an offset is recorded (and later committed) only
//! while its partition is still owned under that epoch. So a runner never commits for a
//! partition it gave away (which could rewind the new owner), and a stale batch of a
//! partition it got back changes nothing.
//!
//! On revocation, inside librdkafka's rebalance callback and so before the partitions
//! go, [`PipelineContext`] waits (bounded) for the in-flight batches to be
//! acknowledged, commits what was acknowledged for the revoked partitions, and forgets
//! them. Records of those partitions still in a batch are then dropped before they
//! reach the sink: the new owner reads them again from the committed offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::metrics::Metrics;

use super::error::PipelineError;

/// A source partition.
pub(crate) type Partition = (String, i32);

/// The next offset to commit for each partition a batch touched, with the epoch its
/// records were read under.
pub(crate) type BatchOffsets = HashMap<Partition, (i64, Epoch)>;

/// One assignment of one partition to this runner.
pub(crate) type Epoch = u64;

/// What a delivery mode does when partitions come and go (exactly once: open and end
/// the partitions' transactions). Called from librdkafka's rebalance callback (and, with
/// static assignment, once at start-up); the calls may block.
pub(crate) trait Handover: Send + Sync {
    /// `partitions` were assigned: where each must start, for those the mode knows.
    fn assigned(
        &self,
        _partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        Ok(HashMap::new())
    }

    /// Whether the source group's committed offsets are this mode's positions and are
    /// committed inside transactions (exactly once on one cluster): then an assigned
    /// partition starts at its offset read stably here, waiting while another runner's
    /// transaction holds it, never where librdkafka's own fetch may leave it (see
    /// [`crate::kafka::committed_offsets`]).
    fn positions_in_source_group(&self) -> bool {
        false
    }

    /// [`Handover::assigned`] failed; the pipeline must stop on `error` before it reads
    /// further.
    fn failed(&self, _error: PipelineError) {}

    /// The consumer's group metadata, at the start of every rebalance (its generation
    /// fences transactional offset commits on one cluster).
    fn group_changed(&self, _metadata: Option<rdkafka::consumer::ConsumerGroupMetadata>) {}

    /// `partitions` are being revoked, before their in-flight batches are drained.
    fn revoking(&self, _partitions: &[Partition]) {}

    /// `partitions` are gone.
    fn revoked(&self, _partitions: &[Partition]) {}
}

/// How long a revocation waits for in-flight batches before it lets the partitions go
/// with what was acknowledged so far (the rest is repeated by the new owner).
const REVOKE_DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long a revocation waits for the group coordinator to confirm its commit.
const REVOKE_COMMIT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct Ownership {
    state: Mutex<State>,
    /// Signalled whenever an in-flight batch settles.
    settled: Condvar,
}

#[derive(Default)]
struct State {
    last_epoch: Epoch,
    owned: HashMap<Partition, Epoch>,
    /// Acknowledged and not yet known to be committed: the next offset per partition.
    acknowledged: HashMap<Partition, (i64, Epoch)>,
    /// Batches handed to the producers, by sequence number, oldest first.
    in_flight: BTreeMap<u64, InFlightBatch>,
    next_batch: u64,
}

struct InFlightBatch {
    offsets: BatchOffsets,
    /// `None` until every delivery answered; then whether all succeeded.
    all_delivered: Option<bool>,
}

impl Ownership {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `partitions` (a new epoch each).
    pub(crate) fn assigned(&self, partitions: impl IntoIterator<Item = Partition>) {
        let mut state = self.lock();
        for partition in partitions {
            state.last_epoch += 1;
            let epoch = state.last_epoch;
            state.owned.insert(partition, epoch);
        }
    }

    /// Starts a new epoch of `partition`, if owned (exactly-once, after a rewind): the
    /// records read before it no longer count.
    pub(crate) fn renew(&self, partition: &Partition) {
        let mut state = self.lock();
        if state.owned.contains_key(partition) {
            state.last_epoch += 1;
            let epoch = state.last_epoch;
            state.owned.insert(partition.clone(), epoch);
        }
    }

    /// The epoch `partition` is owned under, if it is.
    /// How many partitions this runner owns now.
    pub(crate) fn owned_count(&self) -> usize {
        self.lock().owned.len()
    }

    pub(crate) fn epoch(&self, partition: &Partition) -> Option<Epoch> {
        self.lock().owned.get(partition).copied()
    }

    /// Whether `partition` is still owned under `epoch`.
    pub(crate) fn owns(&self, partition: &Partition, epoch: Epoch) -> bool {
        self.lock().owned.get(partition) == Some(&epoch)
    }

    /// Registers a batch handed to the producers; returns its sequence number.
    pub(crate) fn dispatched(&self, offsets: BatchOffsets) -> u64 {
        let mut state = self.lock();
        let sequence = state.next_batch;
        state.next_batch += 1;
        state.in_flight.insert(
            sequence,
            InFlightBatch {
                offsets,
                all_delivered: None,
            },
        );
        sequence
    }

    /// Every delivery of batch `sequence` answered (called from the delivery task).
    pub(crate) fn delivered(&self, sequence: u64, all_delivered: bool) {
        if let Some(batch) = self.lock().in_flight.get_mut(&sequence) {
            batch.all_delivered = Some(all_delivered);
        }
        self.settled.notify_all();
    }

    /// The pipeline finished batch `sequence`: with `acknowledged`, every output (or
    /// dead letter) of it and of every batch before it was acknowledged.
    pub(crate) fn completed(&self, sequence: u64, acknowledged: bool) {
        let mut state = self.lock();
        if let Some(batch) = state.in_flight.remove(&sequence) {
            if acknowledged {
                state.acknowledge(&batch.offsets);
            }
        }
    }

    /// Forgets the batches still in flight (a stop that could not wait for them any
    /// longer): none of their offsets is ever committed, and a revocation (the consumer
    /// closing) no longer waits for them.
    pub(crate) fn abandon_in_flight(&self) {
        self.lock().in_flight.clear();
        self.settled.notify_all();
    }

    /// A transaction committed `partition` up to `next` (exactly-once): the source
    /// group gets a copy of it, for lag monitoring.
    pub(crate) fn committed_in_transaction(&self, partition: Partition, next: i64, epoch: Epoch) {
        self.lock()
            .acknowledge(&BatchOffsets::from([(partition, (next, epoch))]));
    }

    /// What may be committed now: the acknowledged offsets of owned partitions.
    pub(crate) fn commit_list(&self) -> TopicPartitionList {
        let state = self.lock();
        offsets_list(
            state
                .acknowledged
                .iter()
                .filter(|(partition, (_, epoch))| state.owned.get(*partition) == Some(epoch)),
        )
    }

    /// A revocation: waits (bounded) for in-flight batches to settle, records what was
    /// acknowledged in order, and returns the offsets to commit for the revoked
    /// partitions, which are then no longer owned.
    fn revoke(&self, revoked: &[Partition], drain_limit: Duration) -> TopicPartitionList {
        let deadline = Instant::now() + drain_limit;
        let mut state = self.lock();
        while state.in_flight.values().any(|b| b.all_delivered.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    "revoking partitions with batches still unacknowledged after {drain_limit:?}; \
                     their records will be repeated by the next owner"
                );
                break;
            }
            state = self
                .settled
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        // Batches complete in order: only a prefix of fully delivered ones counts.
        let prefix: Vec<BatchOffsets> = state
            .in_flight
            .values()
            .take_while(|b| b.all_delivered == Some(true))
            .map(|b| b.offsets.clone())
            .collect();
        for offsets in &prefix {
            state.acknowledge(offsets);
        }
        let commit = offsets_list(state.acknowledged.iter().filter(|(partition, (_, epoch))| {
            revoked.contains(partition) && state.owned.get(*partition) == Some(epoch)
        }));
        for partition in revoked {
            state.owned.remove(partition);
            state.acknowledged.remove(partition);
        }
        commit
    }
}

impl State {
    /// Records offsets whose partition is still owned under the same epoch; offsets
    /// only move forward.
    fn acknowledge(&mut self, offsets: &BatchOffsets) {
        for (partition, &(next, epoch)) in offsets {
            if self.owned.get(partition) != Some(&epoch) {
                continue;
            }
            let entry = self
                .acknowledged
                .entry(partition.clone())
                .or_insert((next, epoch));
            if entry.1 != epoch || entry.0 < next {
                *entry = (next, epoch);
            }
        }
    }
}

fn offsets_list<'a>(
    offsets: impl Iterator<Item = (&'a Partition, &'a (i64, Epoch))>,
) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), (next, _)) in offsets {
        if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!("cannot commit {topic}/{partition}: {error}");
        }
    }
    list
}

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// The source consumer's view of librdkafka: rebalances go through [`Ownership`] and the
/// delivery mode's [`Handover`]; lag and revocations feed the metrics.
pub(crate) struct PipelineContext {
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) handover: Arc<dyn Handover>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the group rebalances incrementally (`cooperative-sticky`), known from the
    /// configuration: asking librdkafka (`rd_kafka_rebalance_protocol`) from the
    /// callback waits without a bound on its main thread, which can hang a closing
    /// consumer.
    pub(crate) cooperative: bool,
}

impl ClientContext for PipelineContext {
    fn stats(&self, statistics: Statistics) {
        let lags = statistics.topics.iter().flat_map(|(topic, stats)| {
            stats
                .partitions
                .values()
                .filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0)
                .map(move |partition| (topic.as_str(), partition.partition, partition.consumer_lag))
        });
        self.metrics.set_lag(lags);
    }
}

impl ConsumerContext for PipelineContext {
    /// rdkafka's own `rebalance`, but with the protocol known rather than asked for
    /// (see [`PipelineContext::cooperative`]), and the error objects of librdkafka's
    /// incremental calls checked and freed.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        use rdkafka::bindings as rd;
        use rdkafka::types::RDKafkaRespErr;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            other => Rebalance::Error(rdkafka::error::KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let client = rdkafka::consumer::Consumer::client(consumer).native_ptr();
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        // SAFETY: librdkafka's rebalance calls on the consumer's live handle with the list
        // it handed to this callback (or none); an error object returned is freed here.
        unsafe {
            if self.cooperative {
                let error = if assign {
                    rd::rd_kafka_incremental_assign(client, partitions.ptr())
                } else {
                    rd::rd_kafka_incremental_unassign(client, partitions.ptr())
                };
                if !error.is_null() {
                    let message = std::ffi::CStr::from_ptr(rd::rd_kafka_error_string(error))
                        .to_string_lossy()
                        .into_owned();
                    rd::rd_kafka_error_destroy(error);
                    tracing::warn!("consumer group rebalance: {message}");
                }
            } else {
                let list = if assign {
                    partitions.ptr()
                } else {
                    std::ptr::null_mut()
                };
                rd::rd_kafka_assign(client, list);
            }
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.handover
            .group_changed(rdkafka::consumer::Consumer::group_metadata(consumer));
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned = partitions_of(partitions);
                self.ownership.assigned(assigned.clone());
                self.metrics.set_assigned(self.ownership.owned_count());
                let start = block_in_place(|| {
                    let committed = self.handover.assigned(&assigned)?;
                    if !self.handover.positions_in_source_group() || partitions.count() == 0 {
                        return Ok(committed);
                    }
                    stable_offsets(consumer, partitions)
                });
                match start {
                    Ok(committed) => resume_from(partitions, &committed),
                    Err(error) => {
                        tracing::error!("taking the assigned partitions failed: {error}");
                        self.handover.failed(error);
                    }
                }
                tracing::info!(
                    partitions = partitions.count(),
                    "source partitions assigned"
                );
            }
            Rebalance::Revoke(partitions) => {
                let revoked = partitions_of(partitions);
                block_in_place(|| self.handover.revoking(&revoked));
                // This callback runs inside the pipeline's poll; the delivery tasks that
                // settle its batches run on other worker threads.
                let commit = block_in_place(|| self.ownership.revoke(&revoked, REVOKE_DRAIN_LIMIT));
                if commit.count() > 0 {
                    let committed = block_in_place(|| {
                        crate::kafka::commit_within(consumer, &commit, REVOKE_COMMIT_LIMIT)
                    });
                    if let Err(error) = committed {
                        tracing::warn!(
                            "committing revoked partitions failed (the next owner repeats their records): {error}"
                        );
                    }
                }
                self.handover.revoked(&revoked);
                self.metrics.revoked(revoked.len() as u64);
                self.metrics.set_assigned(self.ownership.owned_count());
                tracing::info!(
                    partitions = revoked.len(),
                    committed = commit.count(),
                    "source partitions revoked"
                );
            }
            Rebalance::Error(error) => tracing::warn!("consumer group rebalance failed: {error}"),
        }
    }
}

/// The source group's committed offsets of `partitions` (those that have one), read
/// stably: a crashed runner's transaction that had sent offsets holds them until the
/// broker aborts it, `transaction.timeout.ms` after it began.
fn stable_offsets(
    consumer: &BaseConsumer<PipelineContext>,
    partitions: &TopicPartitionList,
) -> Result<HashMap<Partition, i64>, PipelineError> {
    let committed = crate::kafka::committed_offsets(consumer, partitions, STABLE_OFFSETS_LIMIT)
        .map_err(|source| PipelineError::Kafka {
            context: "reading the committed offsets of the assigned source partitions (a runner \
                      that crashed inside a transaction holds them until the sink's \
                      transaction.timeout.ms ends it)",
            source,
        })?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(next) => {
                Some(((element.topic().to_string(), element.partition()), next))
            }
            _ => None,
        })
        .collect())
}

/// How long an assignment waits for stable committed offsets: past the default
/// `transaction.timeout.ms` (60 s) of a crashed runner's open transaction.
const STABLE_OFFSETS_LIMIT: Duration = Duration::from_secs(90);

/// Starts each of `partitions` at its offset in `committed` (exactly-once: the offsets
/// committed on the sink cluster), where there is one.
pub(crate) fn resume_from(partitions: &TopicPartitionList, committed: &HashMap<Partition, i64>) {
    // The elements point into the list librdkafka is about to assign.
    for mut element in partitions.elements() {
        let partition = (element.topic().to_string(), element.partition());
        if let Some(&next) = committed.get(&partition) {
            if let Err(error) = element.set_offset(Offset::Offset(next)) {
                tracing::warn!(
                    "cannot start {}/{} at {next}: {error}",
                    partition.0,
                    partition.1
                );
            }
        }
    }
}

/// Runs `f`, which blocks, without stalling other tasks of a multi-threaded runtime.
pub(crate) fn block_in_place<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_string(), n)
    }

    fn offsets(list: &TopicPartitionList) -> Vec<(i32, i64)> {
        let mut v: Vec<_> = list
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw().unwrap()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_offsets_of_the_current_epoch_are_committed() {
        let ownership = Ownership::default();
        ownership.assigned([p(0), p(1)]);
        let e0 = ownership.epoch(&p(0)).unwrap();
        let e1 = ownership.epoch(&p(1)).unwrap();
        let batch = ownership.dispatched(BatchOffsets::from([(p(0), (10, e0)), (p(1), (20, e1))]));
        ownership.delivered(batch, true);
        ownership.completed(batch, true);
        assert_eq!(offsets(&ownership.commit_list()), vec![(0, 10), (1, 20)]);

        // Partition 1 goes away and comes back: the old epoch's batch changes nothing.
        let old = ownership.dispatched(BatchOffsets::from([(p(1), (30, e1))]));
        // The old batch is still unacknowledged when the partition goes.
        assert_eq!(
            offsets(&ownership.revoke(&[p(1)], Duration::ZERO)),
            vec![(1, 20)]
        );
        ownership.assigned([p(1)]);
        ownership.delivered(old, true);
        ownership.completed(old, true);
        assert_eq!(offsets(&ownership.commit_list()), vec![(0, 10)]);
        assert!(!ownership.owns(&p(1), e1));
    }

    #[test]
    fn revocation_commits_the_acknowledged_prefix_of_in_flight_batches() {
        let ownership = Arc::new(Ownership::default());
        ownership.assigned([p(0)]);
        let e = ownership.epoch(&p(0)).unwrap();
        let first = ownership.dispatched(BatchOffsets::from([(p(0), (5, e))]));
        let second = ownership.dispatched(BatchOffsets::from([(p(0), (9, e))]));
        let third = ownership.dispatched(BatchOffsets::from([(p(0), (12, e))]));
        let settle = {
            let ownership = ownership.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                ownership.delivered(first, true);
                ownership.delivered(second, false);
                ownership.delivered(third, true);
            })
        };
        // Waits for all three; commits up to the first failed batch only.
        assert_eq!(
            offsets(&ownership.revoke(&[p(0)], REVOKE_DRAIN_LIMIT)),
            vec![(0, 5)]
        );
        settle.join().unwrap();
        assert_eq!(ownership.epoch(&p(0)), None);
        assert_eq!(ownership.commit_list().count(), 0);
    }

    #[test]
    fn acknowledged_offsets_only_move_forward() {
        let ownership = Ownership::default();
        ownership.assigned([p(0)]);
        let e = ownership.epoch(&p(0)).unwrap();
        let newer = ownership.dispatched(BatchOffsets::from([(p(0), (50, e))]));
        ownership.delivered(newer, true);
        ownership.completed(newer, true);
        let older = ownership.dispatched(BatchOffsets::from([(p(0), (40, e))]));
        ownership.delivered(older, true);
        ownership.completed(older, true);
        assert_eq!(offsets(&ownership.commit_list()), vec![(0, 50)]);
    }
}
