//! Kafka transactions on the sink cluster, for exactly-once delivery.
//!
//! **Source and sink on different clusters** (the usual case: the sink is someone
//! else's): each source partition gets its own transactional producer, with
//! `transactional.id = <source.group_id>.<topic>.<partition>`. A batch's outputs for the
//! partition and a record of the partition's next source offset commit in one
//! transaction. That record goes to the *offsets topic* on the sink cluster
//! (`pipeline.offsets_topic`, compacted, keyed by group, topic and partition), because a
//! transaction can only write to the cluster of its producer, and the sink cluster
//! refuses offset commits for topics it does not have. Kafka Connect's exactly-once
//! sources keep their positions the same way. A runner that gets the partition resumes
//! from the last committed record. The source cluster still assigns partitions, and gets
//! a copy of the positions after each commit, for lag monitoring (and as the start of a
//! partition the offsets topic does not know yet). Fencing comes from the transactional
//! id, not from group generations: the sink's group coordinator cannot check a
//! generation of the source cluster's group (KIP-447 works within one cluster). Whoever
//! takes a partition initialises its id first, which aborts the previous owner's open
//! transaction and makes every later commit of the previous owner fail.
//!
//! **Source and sink on one cluster** (`sink.bootstrap_servers` =
//! `source.bootstrap_servers`): one transactional producer per runner, one transaction
//! for every partition it owns, and the source offsets committed to `source.group_id`
//! inside it (`send_offsets_to_transaction` with the consumer's group metadata), as Kafka
//! Streams' exactly-once v2 does. Fencing is KIP-447's: the group coordinator refuses
//! offsets sent with a generation older than the group's, so a runner that lost a
//! partition in a rebalance cannot commit for it, and a new owner's offset fetch waits
//! for a transaction still open on it. A commit per interval instead of one per
//! partition, and no offsets topic to write or sign.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use crate::config::{PipelineConfig, SinkConfig, TuningConfig};
use crate::kafka::{self, AckingProducer, Acks};
use crate::metrics::Metrics;
use crate::vault::VaultClient;

use authentication::PositionAuthenticator;
use positions::OffsetsTopic;

use crate::pipeline::error::PipelineError;
use crate::pipeline::ownership::{Epoch, Handover, Ownership, Partition};

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
    /// The source record's partition, by its place in [`OpenTransaction::spans`] (set by
    /// [`Transactions::sent`]).
    pub span: usize,
    pub offset: i64,
    /// A dead letter, with its failure kind; `None` for a transformed output.
    pub dead_letter: Option<&'static str>,
    pub bytes: u64,
    /// Its ticket's number in the transaction's [`Acks`].
    pub ticket: usize,
}

/// Where to read a partition again after its transaction was aborted.
pub(crate) struct Rewind {
    pub partition: Partition,
    pub epoch: Epoch,
    pub offset: i64,
}

/// What one transaction covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    /// One source partition (source and sink on different clusters).
    Partition(Partition),
    /// Every partition the runner owns (one cluster).
    Runner,
}

/// Where the source positions go, which decides the producers and what fences them.
enum Placement {
    /// Different clusters: a producer per partition; positions in the offsets topic,
    /// signed.
    OffsetsTopic {
        positions: Box<OffsetsTopic>,
        producers: Mutex<HashMap<Partition, Arc<AckingProducer>>>,
    },
    /// One cluster: one producer; positions committed to the source group in the
    /// transaction, fenced by the group's generation.
    SourceGroup {
        transactional_id: String,
        producer: Mutex<Option<Arc<AckingProducer>>>,
        /// The consumer's group metadata as of the last rebalance or batch.
        group: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
    },
}

/// A part of a source partition held by an open transaction.
struct Span {
    partition: Partition,
    epoch: Epoch,
    /// The first offset it holds: where an abort rewinds to.
    first: i64,
    /// The offset after the last record it holds: the position it commits.
    next: i64,
}

/// The transactions taking records, and those a round of commits is ending.
#[derive(Default)]
struct Open {
    transactions: HashMap<Scope, OpenTransaction>,
    /// Taken by the round of commits in progress: records for them wait until it ends.
    committing: std::collections::HashSet<Scope>,
}

/// A transaction, open across batches until `pipeline.transaction_interval` has passed
/// (or something needs it committed now).
struct OpenTransaction {
    producer: Arc<AckingProducer>,
    /// The acknowledgements of every record handed to it.
    acks: Acks,
    /// Records are being handed to it ([`Transactions::begin`] until
    /// [`Transactions::sent`]): a round of commits leaves it for the next round.
    handing_over: bool,
    spans: Vec<Span>,
    began: Instant,
    sent: Vec<Sent>,
    /// Why it must abort (a delivery failed, so librdkafka will not commit it).
    doomed: Option<String>,
}

pub(crate) struct Transactions {
    sink: SinkConfig,
    tuning: TuningConfig,
    group_id: String,
    placement: Placement,
    interval: Duration,
    /// Held while transactions commit, so that a revocation waits for a round of
    /// commits in progress before it lets partitions go.
    committing: Mutex<()>,
    open: Mutex<Open>,
    /// Records the sink refused (too large, no key for a compacted topic...), and why:
    /// dead-lettered when read again.
    refused: Mutex<HashMap<(Partition, i64), String>>,
    /// Where to read partitions again after a transaction committed in a rebalance
    /// aborted (one cluster: it held partitions that stay).
    pending_rewinds: Mutex<Vec<Rewind>>,
    /// Transactions aborted in a row, per scope.
    aborts: Mutex<HashMap<Scope, u32>>,
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
        let group_id = config.source.group_id.clone();
        let placement = if config.one_cluster() {
            Placement::SourceGroup {
                transactional_id: runner_transactional_id(config),
                producer: Mutex::default(),
                group: Mutex::default(),
            }
        } else {
            Placement::OffsetsTopic {
                positions: Box::new(OffsetsTopic {
                    topic: config.pipeline.offsets_topic.clone(),
                    authenticator: PositionAuthenticator::new(
                        vault,
                        config.pipeline.offsets_key.clone(),
                        group_id.clone(),
                        tokio::runtime::Handle::current(),
                    ),
                    sink: config.sink.clone(),
                    group_id: group_id.clone(),
                    metrics: metrics.clone(),
                }),
                producers: Mutex::default(),
            }
        };
        Transactions {
            sink: config.sink.clone(),
            tuning: config.pipeline.clone(),
            group_id,
            placement,
            interval: config.pipeline.transaction_interval,
            committing: Mutex::default(),
            open: Mutex::default(),
            refused: Mutex::default(),
            pending_rewinds: Mutex::default(),
            aborts: Mutex::default(),
            failure: Mutex::default(),
            ownership,
            metrics,
        }
    }

    /// The transaction `partition`'s records go into.
    fn scope_of(&self, partition: &Partition) -> Scope {
        match self.placement {
            Placement::OffsetsTopic { .. } => Scope::Partition(partition.clone()),
            Placement::SourceGroup { .. } => Scope::Runner,
        }
    }

    fn transactional_id(&self, scope: &Scope) -> String {
        match (&self.placement, scope) {
            (
                Placement::SourceGroup {
                    transactional_id, ..
                },
                _,
            ) => transactional_id.clone(),
            (_, Scope::Partition((topic, partition))) => {
                format!("{}.{topic}.{partition}", self.group_id)
            }
            (_, Scope::Runner) => format!("{}.*", self.group_id),
        }
    }

    /// The consumer's group metadata changed (a rebalance) or may have (a batch): the
    /// one-cluster transactions send offsets with it.
    pub(crate) fn set_group(&self, metadata: Option<ConsumerGroupMetadata>) {
        if let (Placement::SourceGroup { group, .. }, Some(metadata)) = (&self.placement, metadata)
        {
            *lock(group) = Some(Arc::new(metadata));
        }
    }

    /// Takes `partitions`: across clusters, initialises a producer for each (fencing the
    /// previous owner and aborting its open transaction), then reads their last
    /// committed positions from the offsets topic; on one cluster, initialises the
    /// runner's producer the first time (the source group holds the positions).
    /// Blocking.
    pub(crate) fn open(
        &self,
        partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        let (positions, producers) = match &self.placement {
            Placement::OffsetsTopic {
                positions,
                producers,
            } => (positions, producers),
            Placement::SourceGroup { producer, .. } => {
                let mut producer = lock(producer);
                if producer.is_none() {
                    *producer = Some(Arc::new(self.open_one(&Scope::Runner)?));
                }
                return Ok(HashMap::new());
            }
        };
        let mut first_error = None;
        for chunk in partitions.chunks(OPEN_PARALLELISM) {
            let opened: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|partition| {
                        scope.spawn(move || self.open_one(&Scope::Partition(partition.clone())))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().expect("opening a producer panicked"))
                    .collect()
            });
            let mut producers = lock(producers);
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
        positions.read(partitions)
    }

    fn open_one(&self, scope: &Scope) -> Result<AckingProducer, PipelineError> {
        let id = self.transactional_id(scope);
        let producer = kafka::transactional_producer(&self.sink, &self.tuning, &id)
            .map_err(|error| self.error(scope, "creating the producer", error))?;
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|error| self.error(scope, "initialising transactions", error))?;
        tracing::debug!(transactional_id = id, "transactional producer ready");
        Ok(producer)
    }

    /// Lets `partitions` go, after [`Transactions::commit_revoked`] ended their
    /// transactions.
    pub(crate) fn close(&self, partitions: &[Partition]) {
        if let Placement::OffsetsTopic { producers, .. } = &self.placement {
            let mut producers = lock(producers);
            for partition in partitions {
                producers.remove(partition);
            }
        }
    }

    /// The producer of `scope`'s transactions, if it was opened.
    fn producer(&self, scope: &Scope) -> Option<Arc<AckingProducer>> {
        match (&self.placement, scope) {
            (Placement::OffsetsTopic { producers, .. }, Scope::Partition(partition)) => {
                lock(producers).get(partition).cloned()
            }
            (Placement::SourceGroup { producer, .. }, _) => lock(producer).clone(),
            (Placement::OffsetsTopic { .. }, Scope::Runner) => None,
        }
    }

    pub(crate) fn take_failure(&self) -> Option<PipelineError> {
        lock(&self.failure).take()
    }

    /// `Err` when `producer` can no longer be used after `error`: fenced by a newer
    /// owner of its transactional id, or another fatal error.
    fn check_fatal(
        &self,
        producer: &AckingProducer,
        scope: &Scope,
        error: &KafkaError,
    ) -> Result<(), PipelineError> {
        self.usable(producer, scope, error.rdkafka_error_code())
    }

    /// `Err` when `producer` is fenced (by its own state, or by the `code` of an error
    /// it returned) or in another fatal state.
    fn usable(
        &self,
        producer: &AckingProducer,
        scope: &Scope,
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
            let (topic, partition) = match scope {
                Scope::Partition((topic, partition)) => (topic.clone(), *partition),
                Scope::Runner => ("*".to_string(), -1),
            };
            return Err(PipelineError::Fenced {
                transactional_id: self.transactional_id(scope),
                topic,
                partition,
            });
        }
        match fatal {
            Some((_, reason)) => Err(self.error(scope, "a fatal producer error", reason)),
            None => Ok(()),
        }
    }

    fn error(
        &self,
        scope: &Scope,
        context: &'static str,
        detail: impl std::fmt::Display,
    ) -> PipelineError {
        PipelineError::Transaction {
            context,
            transactional_id: self.transactional_id(scope),
            detail: detail.to_string(),
        }
    }
}

/// Exactly once, partitions that come and go open and end transactions.
impl Handover for Transactions {
    fn assigned(&self, partitions: &[Partition]) -> Result<HashMap<Partition, i64>, PipelineError> {
        self.open(partitions)
    }

    fn positions_in_source_group(&self) -> bool {
        matches!(self.placement, Placement::SourceGroup { .. })
    }

    fn before_waiting(&self) {
        self.commit_open();
    }

    fn failed(&self, error: PipelineError) {
        lock(&self.failure).get_or_insert(error);
    }

    fn group_changed(&self, metadata: Option<ConsumerGroupMetadata>) {
        self.set_group(metadata);
    }

    fn revoking(&self, partitions: &[Partition]) {
        self.commit_revoked(partitions);
    }

    fn revoked(&self, partitions: &[Partition]) {
        self.close(partitions);
    }
}

/// The transactional id of a one-cluster runner: with static assignment (one runner per
/// group) always the same, so a restarted runner fences its predecessor at once; in a
/// consumer group, unique per runner process (the group's generation fences instead, and
/// a crashed runner's open transaction ends at the sink's `transaction.timeout.ms`).
fn runner_transactional_id(config: &PipelineConfig) -> String {
    match config.source.assignment {
        crate::config::Assignment::Static => format!("{}.runner", config.source.group_id),
        crate::config::Assignment::Group => format!(
            "{}.runner-{:016x}",
            config.source.group_id,
            rand::random::<u64>()
        ),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
