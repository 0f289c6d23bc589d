//! The source consumer's context: librdkafka's rebalances go through [`Ownership`] and
//! the delivery mode's [`Handover`]; lag and revocations feed the metrics.
//!
//! On revocation, inside librdkafka's rebalance callback and so before the partitions
//! go, it waits (bounded) for the in-flight batches to be acknowledged, commits what was
//! acknowledged for the revoked partitions, and forgets them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka;
use crate::metrics::Metrics;
use crate::pipeline::error::PipelineError;
use crate::pipeline::ownership::{Handover, Ownership, Partition};

/// How long a revocation waits for in-flight batches before it lets the partitions go
/// with what was acknowledged so far (the rest is repeated by the new owner).
const REVOKE_DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long a revocation waits for the group coordinator to confirm its commit.
const REVOKE_COMMIT_LIMIT: Duration = Duration::from_secs(10);

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
    /// (see [`PipelineContext::cooperative`]) and librdkafka's refusals reported.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            other => Rebalance::Error(rdkafka::error::KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if let Err(refusal) =
            kafka::answer_rebalance(consumer, assign, self.cooperative, partitions)
        {
            tracing::warn!("consumer group rebalance: {refusal}");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.handover
            .group_changed(Consumer::group_metadata(consumer));
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
                    self.handover.before_waiting();
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
                        kafka::commit_within(consumer, &commit, REVOKE_COMMIT_LIMIT)
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
    let committed =
        kafka::committed_offsets(consumer, partitions, STABLE_OFFSETS_LIMIT).map_err(|source| {
            PipelineError::Kafka {
                context:
                    "reading the committed offsets of the assigned source partitions (a runner \
                      that crashed inside a transaction holds them until the sink's \
                      transaction.timeout.ms ends it)",
                source,
            }
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

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}
