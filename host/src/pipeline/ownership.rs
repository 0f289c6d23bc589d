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
//! go, the source consumer's context (`source::context`) waits (bounded) for the
//! in-flight batches to be acknowledged, commits what was acknowledged for the revoked
//! partitions, and forgets them. Records of those partitions still in a batch are then
//! dropped before they reach the sink: the new owner reads them again from the committed
//! offset.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::{Offset, TopicPartitionList};

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

    /// The rebalance callback is about to wait for the assigned partitions' stable
    /// offsets, up to a crashed runner's `transaction.timeout.ms`: end whatever of this
    /// runner's would time out meanwhile.
    fn before_waiting(&self) {}

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
    pub(crate) fn revoke(
        &self,
        revoked: &[Partition],
        drain_limit: Duration,
    ) -> TopicPartitionList {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
            offsets(&ownership.revoke(&[p(0)], Duration::from_secs(30))),
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
