//! Exactly-once delivery (`pipeline.delivery = "exactly-once"`): Kafka transactions on
//! the sink cluster.
//!
//! Each source partition gets its own transactional producer, with `transactional.id =
//! <source.group_id>.<topic>.<partition>`. A batch's outputs for the partition and a
//! record of the partition's next source offset commit in one transaction. That record
//! goes to the *offsets topic* on the sink cluster (`pipeline.offsets_topic`, compacted,
//! keyed by group, topic and partition), because a transaction can only write to the
//! cluster of its producer, and the sink cluster refuses offset commits for topics it
//! does not have (so the consumer-group offsets of the sink cluster cannot hold them).
//! Kafka Connect's exactly-once sources keep their positions the same way. A runner that
//! gets the partition resumes from the last committed record. The source cluster still
//! assigns partitions, and gets a copy of the positions after each commit, for lag
//! monitoring (and as the start of a partition the offsets topic does not know yet).
//!
//! Fencing comes from the transactional id, not from group generations: the sink's
//! group coordinator cannot check a generation of the source cluster's group (KIP-447
//! works within one cluster). Whoever takes a partition initialises its id first,
//! which aborts the previous owner's open transaction and makes every later commit of
//! the previous owner fail: a zombie can never commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};

use crate::config::{PipelineConfig, SinkConfig, TuningConfig};
use crate::kafka;
use crate::metrics::Metrics;
use crate::vault::VaultClient;

use authentication::PositionAuthenticator;

use super::ownership::{Epoch, Ownership, Partition};
use super::PipelineError;

mod authentication;
mod commit;
mod positions;

/// Longest wait for a producer's first initialisation (which waits for the previous
/// owner's transaction to be aborted), for a commit, and for metadata.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Partitions whose producers are initialised at the same time.
const OPEN_PARALLELISM: usize = 16;

/// A delivery handed to a transactional producer; it counts once its transaction
/// commits.
pub(crate) struct Sent {
    pub offset: i64,
    /// A dead letter, with its failure kind; `None` for a transformed output.
    pub dead_letter: Option<&'static str>,
    pub bytes: u64,
    pub delivery: DeliveryFuture,
}

/// Where to read a partition again after its transaction was aborted.
pub(crate) struct Rewind {
    pub partition: Partition,
    pub epoch: Epoch,
    pub offset: i64,
}

/// A partition's transaction, open across batches until `pipeline.transaction_interval`
/// has passed (or something needs it committed now).
struct OpenTransaction {
    producer: Arc<FutureProducer>,
    epoch: Epoch,
    /// The first offset it holds: where an abort rewinds to.
    first: i64,
    /// The offset after the last record it holds: the position it commits.
    next: i64,
    began: Instant,
    sent: Vec<Sent>,
    /// Why it must abort (a delivery failed, so librdkafka will not commit it).
    doomed: Option<String>,
}

pub(crate) struct Transactions {
    sink: SinkConfig,
    tuning: TuningConfig,
    group_id: String,
    offsets_topic: String,
    /// Signs the positions written to the offsets topic and checks those read back.
    authenticator: PositionAuthenticator,
    interval: Duration,
    /// Held while transactions commit, so that a revocation waits for a round of
    /// commits in progress before it lets partitions go.
    committing: Mutex<()>,
    producers: Mutex<HashMap<Partition, Arc<FutureProducer>>>,
    open: Mutex<HashMap<Partition, OpenTransaction>>,
    /// Records the sink refused (too large, no key for a compacted topic...), and why:
    /// dead-lettered when read again.
    refused: Mutex<HashMap<(Partition, i64), String>>,
    /// Transactions aborted in a row, per partition.
    aborts: Mutex<HashMap<Partition, u32>>,
    /// Why partitions assigned in a rebalance could not be opened; the pipeline stops on
    /// it before it reads further.
    failure: Mutex<Option<PipelineError>>,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
}

impl Transactions {
    /// Needs a tokio runtime (commits run on blocking threads and reach Vault through
    /// its handle).
    pub(crate) fn new(
        config: &PipelineConfig,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
        vault: VaultClient,
    ) -> Transactions {
        Transactions {
            sink: config.sink.clone(),
            tuning: config.pipeline.clone(),
            group_id: config.source.group_id.clone(),
            offsets_topic: config.pipeline.offsets_topic.clone(),
            authenticator: PositionAuthenticator::new(
                vault,
                config.pipeline.offsets_key.clone(),
                config.source.group_id.clone(),
                tokio::runtime::Handle::current(),
            ),
            interval: config.pipeline.transaction_interval,
            committing: Mutex::default(),
            producers: Mutex::default(),
            open: Mutex::default(),
            refused: Mutex::default(),
            aborts: Mutex::default(),
            failure: Mutex::default(),
            ownership,
            metrics,
        }
    }

    fn producers(&self) -> MutexGuard<'_, HashMap<Partition, Arc<FutureProducer>>> {
        lock(&self.producers)
    }

    pub(crate) fn transactional_id(&self, (topic, partition): &Partition) -> String {
        format!("{}.{topic}.{partition}", self.group_id)
    }

    /// Takes `partitions`: initialises a producer for each (fencing the previous owner
    /// and aborting its open transaction), then reads their last committed positions
    /// from the offsets topic. Blocking.
    pub(crate) fn open(
        &self,
        partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        let mut first_error = None;
        for chunk in partitions.chunks(OPEN_PARALLELISM) {
            let opened: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|partition| scope.spawn(move || self.open_one(partition)))
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().expect("opening a producer panicked"))
                    .collect()
            });
            let mut producers = self.producers();
            for (partition, result) in chunk.iter().zip(opened) {
                match result {
                    Ok(producer) => {
                        producers.insert(partition.clone(), Arc::new(producer));
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        self.positions(partitions)
    }

    fn open_one(&self, partition: &Partition) -> Result<FutureProducer, PipelineError> {
        let id = self.transactional_id(partition);
        let producer = kafka::transactional_producer(&self.sink, &self.tuning, &id)
            .map_err(|error| self.error(partition, "creating the producer", error))?;
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|error| self.error(partition, "initialising transactions", error))?;
        tracing::debug!(transactional_id = id, "transactional producer ready");
        Ok(producer)
    }

    /// Lets `partitions` go, after [`Transactions::commit_revoked`] ended their
    /// transactions.
    pub(crate) fn close(&self, partitions: &[Partition]) {
        let mut producers = self.producers();
        for partition in partitions {
            producers.remove(partition);
        }
    }

    pub(crate) fn producer(&self, partition: &Partition) -> Option<Arc<FutureProducer>> {
        self.producers().get(partition).cloned()
    }

    /// Records why an assignment could not be opened (from the rebalance callback).
    pub(crate) fn failed(&self, error: PipelineError) {
        lock(&self.failure).get_or_insert(error);
    }

    pub(crate) fn take_failure(&self) -> Option<PipelineError> {
        lock(&self.failure).take()
    }

    /// `Err` when `producer` can no longer be used after `error`: fenced by a newer
    /// owner of its transactional id, or another fatal error.
    pub(crate) fn check_fatal(
        &self,
        producer: &FutureProducer,
        partition: &Partition,
        error: &KafkaError,
    ) -> Result<(), PipelineError> {
        self.usable(producer, partition, error.rdkafka_error_code())
    }

    /// `Err` when `producer` is fenced (by its own state, or by the `code` of an error
    /// it returned) or in another fatal state.
    pub(crate) fn usable(
        &self,
        producer: &FutureProducer,
        partition: &Partition,
        code: Option<RDKafkaErrorCode>,
    ) -> Result<(), PipelineError> {
        let is_fence = |code: Option<RDKafkaErrorCode>| {
            matches!(
                code,
                Some(
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                )
            )
        };
        let fatal = producer.client().fatal_error();
        if is_fence(fatal.as_ref().map(|(code, _)| *code)) || is_fence(code) {
            return Err(PipelineError::Fenced {
                transactional_id: self.transactional_id(partition),
                topic: partition.0.clone(),
                partition: partition.1,
            });
        }
        match fatal {
            Some((_, reason)) => Err(self.error(partition, "a fatal producer error", reason)),
            None => Ok(()),
        }
    }

    fn error(
        &self,
        partition: &Partition,
        context: &'static str,
        detail: impl std::fmt::Display,
    ) -> PipelineError {
        PipelineError::Transaction {
            context,
            transactional_id: self.transactional_id(partition),
            detail: detail.to_string(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
