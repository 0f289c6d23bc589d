//! Exactly once (`pipeline.delivery = "exactly-once"`): each batch's outputs go into
//! the open Kafka transaction of their source partition, or of the runner on one
//! cluster ([`transactions`]), which commits with the source positions it passes every
//! `pipeline.transaction_interval`, when the source goes quiet, before waiting on Vault,
//! and before a partition is revoked.
//!
//! A round of commits runs on blocking threads and does not stall the pipeline: while it
//! runs, the next batches are read and transformed, records for transactions it is
//! ending wait in memory (at most `pipeline.max_in_flight_batches` batches of them), and
//! the others go into their transactions at once.

mod transactions;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rdkafka::consumer::CommitMode;
use tokio::task::JoinHandle;

use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::policy::{PolicyRuntime, SourceRecord, TransformResult};
use crate::vault::VaultClient;

use crate::pipeline::error::{joined, PipelineError};
use crate::pipeline::ownership::{Epoch, Handover, Ownership, Partition};
use crate::pipeline::sink::{DeadLetterPath, Outbox, Sink, Target};
use crate::pipeline::source::{Batch, Source};

use transactions::{Rewind, Sent, Transactions};

/// The records of one source partition in a batch, with their results.
struct PartitionBatch {
    partition: Partition,
    epoch: Epoch,
    items: Vec<(SourceRecord, TransformResult)>,
}

pub(crate) struct ExactlyOnce {
    transactions: Arc<Transactions>,
    sink: Sink,
    /// The round of commits running while the next batches are prepared.
    commit_round: Option<JoinHandle<Result<Vec<Rewind>, PipelineError>>>,
    /// Records for transactions the round is ending, in order, with the policy that
    /// transformed them; handed over once it ends.
    waiting: VecDeque<(PartitionBatch, Arc<PolicyRuntime>)>,
    /// How many batches have records in `waiting`.
    batches_waiting: usize,
    /// How many batches' records may wait for a round before the pipeline waits too.
    max_waiting: usize,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
}

impl ExactlyOnce {
    /// Needs a tokio runtime (commits run on blocking threads and reach Vault through
    /// its handle).
    pub(crate) fn new(
        config: &PipelineConfig,
        sink: Sink,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
        vault: VaultClient,
    ) -> ExactlyOnce {
        ExactlyOnce {
            transactions: Arc::new(Transactions::new(
                config,
                ownership.clone(),
                metrics.clone(),
                vault,
            )),
            sink,
            commit_round: None,
            waiting: VecDeque::new(),
            batches_waiting: 0,
            max_waiting: config.pipeline.max_in_flight_batches.max(1),
            ownership,
            metrics,
        }
    }

    pub(crate) fn handover(&self) -> Arc<dyn Handover> {
        self.transactions.clone()
    }

    /// Why partitions assigned in a rebalance could not be taken, if they could not.
    pub(crate) fn take_failure(&self) -> Option<PipelineError> {
        self.transactions.take_failure()
    }

    /// Hands the batch's outputs to the partitions' open transactions (or, for those a
    /// round of commits is ending, keeps them until it ends), then starts a round of
    /// commits if none runs.
    pub(crate) async fn deliver(
        &mut self,
        batch: Batch,
        results: Vec<TransformResult>,
        policy: &Arc<PolicyRuntime>,
        source: &mut Source,
    ) -> Result<(), PipelineError> {
        let read_at = batch.read_at;
        let round_ended = self
            .commit_round
            .as_ref()
            .is_some_and(|round| round.is_finished());
        if round_ended || self.batches_waiting >= self.max_waiting {
            // One rewound meanwhile drops the records read before (a new epoch).
            self.finish_commits(source).await?;
            self.hand_over_waiting().await?;
        }
        let mut waits = false;
        for group in by_partition(&self.ownership, batch, results) {
            let behind = self
                .waiting
                .iter()
                .any(|(waiting, _)| waiting.partition == group.partition);
            if behind {
                self.waiting.push_back((group, policy.clone()));
                waits = true;
            } else if let Some(group) = self.send(group, policy).await? {
                self.waiting.push_back((group, policy.clone()));
                waits = true;
            }
        }
        if waits {
            self.batches_waiting += 1;
        }
        self.metrics.batch_finished(read_at.elapsed());
        if self.commit_round.is_none() {
            self.start_round(source, false);
        }
        Ok(())
    }

    /// Commits every open transaction now (the source is quiet, Vault is away, the
    /// pipeline stops).
    pub(crate) async fn flush(&mut self, source: &mut Source) -> Result<(), PipelineError> {
        self.finish_commits(source).await?;
        self.hand_over_waiting().await?;
        self.start_round(source, true);
        self.finish_commits(source).await
    }

    fn start_round(&mut self, source: &Source, force: bool) {
        self.transactions.set_group(source.group_metadata());
        let transactions = self.transactions.clone();
        self.commit_round = Some(tokio::task::spawn_blocking(move || {
            transactions.commit_due(force)
        }));
    }

    /// Hands over the records that waited for the round of commits that ended, leaving
    /// out those of partitions rewound or revoked since.
    async fn hand_over_waiting(&mut self) -> Result<(), PipelineError> {
        self.batches_waiting = 0;
        while let Some((group, policy)) = self.waiting.pop_front() {
            if !self.ownership.owns(&group.partition, group.epoch) {
                continue;
            }
            if let Some(group) = self.send(group, &policy).await? {
                // Only a round in progress makes records wait, and none is.
                self.waiting.push_front((group, policy));
                break;
            }
        }
        Ok(())
    }

    /// Hands a partition's records to its open transaction, beginning one where none
    /// is open; returns them instead if the round of commits in progress is ending that
    /// transaction. A record the sink did not take (librdkafka refuses sends once a
    /// transaction must abort) dooms the transaction: it aborts at its commit and the
    /// partition is read again.
    async fn send(
        &self,
        group: PartitionBatch,
        policy: &PolicyRuntime,
    ) -> Result<Option<PartitionBatch>, PipelineError> {
        let first = group.items.first().map_or(0, |(record, _)| record.offset);
        let next = group
            .items
            .last()
            .map_or(0, |(record, _)| record.offset + 1);
        let Some((producer, acks)) =
            self.transactions
                .begin(&group.partition, group.epoch, first)?
        else {
            return Ok(Some(group));
        };
        let outbox = Outbox {
            producer: &producer,
            acks: &acks,
        };
        let (sent, outcome) = self.hand_over(outbox, &group, policy).await;
        let doomed = match &outcome {
            Err(error @ PipelineError::Delivery { .. }) => Some(error.to_string()),
            _ => None,
        };
        self.transactions.sent(&group.partition, next, sent, doomed);
        match outcome {
            Ok(()) | Err(PipelineError::Delivery { .. }) => Ok(None),
            Err(error) => {
                let (transactions, partition) = (self.transactions.clone(), group.partition);
                tokio::task::spawn_blocking(move || transactions.abort_open(&partition))
                    .await
                    .map_err(joined("aborting a transaction"))??;
                Err(error)
            }
        }
    }

    /// Hands each record of `group` (or its dead letter) to `outbox`; returns what was
    /// handed over, also when an error stopped it.
    async fn hand_over(
        &self,
        outbox: Outbox<'_>,
        group: &PartitionBatch,
        policy: &PolicyRuntime,
    ) -> (Vec<Sent>, Result<(), PipelineError>) {
        let mut handed = Vec::new();
        let mut outcome = Ok(());
        for (index, (record, result)) in group.items.iter().enumerate() {
            let refused = self.transactions.refused(&group.partition, record.offset);
            outcome = self
                .sink
                .hand_over(
                    outbox,
                    index,
                    record,
                    result,
                    refused,
                    policy,
                    DeadLetterPath::Transaction,
                    &mut handed,
                )
                .await;
            if outcome.is_err() {
                break;
            }
        }
        let sent = handed
            .into_iter()
            .map(|handed| Sent {
                span: 0,
                offset: group.items[handed.index].0.offset,
                dead_letter: match handed.target {
                    Target::Sink => None,
                    Target::DeadLetter(kind) => Some(kind),
                },
                bytes: handed.bytes,
                ticket: handed.ticket,
            })
            .collect();
        (sent, outcome)
    }

    /// Waits for the round of commits in progress, if any; reads the partitions of
    /// aborted transactions again, and gives the source group a copy of the positions,
    /// where lag is monitored.
    async fn finish_commits(&mut self, source: &mut Source) -> Result<(), PipelineError> {
        // Owed by commits made in a rebalance (their aborted transactions).
        let mut rewinds = self.transactions.take_rewinds();
        let committed = match self.commit_round.take() {
            Some(round) => {
                rewinds.extend(round.await.map_err(joined("committing transactions"))??);
                true
            }
            None => false,
        };
        for rewind in rewinds {
            source.rewind(&rewind.partition, rewind.epoch, rewind.offset)?;
        }
        if committed {
            source.commit(CommitMode::Async);
        }
        Ok(())
    }
}

/// The batch's records by source partition, in order, leaving out those of
/// partitions revoked since they were read.
fn by_partition(
    ownership: &Ownership,
    batch: Batch,
    results: Vec<TransformResult>,
) -> Vec<PartitionBatch> {
    let mut groups: Vec<PartitionBatch> = Vec::new();
    let mut index: HashMap<Partition, usize> = HashMap::new();
    for ((record, epoch), result) in batch.records.into_iter().zip(batch.epochs).zip(results) {
        let partition = (record.topic.clone(), record.partition);
        if !ownership.owns(&partition, epoch) {
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
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> SourceRecord {
        SourceRecord {
            topic: "in".into(),
            partition,
            offset,
            timestamp: None,
            key: None,
            value: Some(offset.to_string().into_bytes()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_batch_splits_by_partition_in_order_without_revoked_partitions() {
        let ownership = Ownership::default();
        let (p0, p1, p2) = (
            ("in".to_string(), 0),
            ("in".to_string(), 1),
            ("in".to_string(), 2),
        );
        ownership.assigned([p0.clone(), p1.clone(), p2.clone()]);
        let epochs: Vec<Epoch> = [&p0, &p1, &p0, &p2, &p1]
            .iter()
            .map(|p| ownership.epoch(p).unwrap())
            .collect();
        // Partition 2 moves away and comes back after its record was read: stale.
        ownership.renew(&p2);
        let records = vec![
            record(0, 10),
            record(1, 20),
            record(0, 11),
            record(2, 30),
            record(1, 21),
        ];
        let results = records.iter().map(|_| Ok(Vec::new())).collect();
        let batch = Batch {
            records,
            epochs,
            refused: Vec::new(),
            read_at: std::time::Instant::now(),
        };
        let groups = by_partition(&ownership, batch, results);
        let seen: Vec<(i32, Vec<i64>)> = groups
            .iter()
            .map(|g| {
                (
                    g.partition.1,
                    g.items.iter().map(|(r, _)| r.offset).collect(),
                )
            })
            .collect();
        assert_eq!(seen, vec![(0, vec![10, 11]), (1, vec![20, 21])]);
    }
}
