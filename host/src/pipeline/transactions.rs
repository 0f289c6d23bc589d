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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::{PipelineConfig, SinkConfig, TuningConfig};
use crate::kafka;
use crate::metrics::Metrics;

use super::ownership::{Epoch, Ownership, Partition};
use super::PipelineError;

/// Longest wait for a producer's first initialisation (which waits for the previous
/// owner's transaction to be aborted), for a commit, and for metadata.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the offsets topic to be readable to its end: an open transaction
/// of a runner that died holds it until a new owner fences that runner, or until the
/// broker aborts it after `transaction.timeout.ms` (librdkafka's default: 60 s).
const POSITIONS_TIMEOUT: Duration = Duration::from_secs(150);
/// Partitions whose producers are initialised at the same time.
const OPEN_PARALLELISM: usize = 16;
/// A partition whose transactions abort this many times in a row (with growing pauses)
/// stops the pipeline instead of spinning.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;

/// A delivery handed to a transactional producer; it counts once its transaction
/// commits.
pub(crate) struct Sent {
    pub offset: i64,
    pub dead_letter: bool,
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
    interval: Duration,
    /// Held while transactions commit, so that a revocation waits for a round of
    /// commits in progress before it lets partitions go.
    committing: Mutex<()>,
    producers: Mutex<HashMap<Partition, Arc<FutureProducer>>>,
    open: Mutex<HashMap<Partition, OpenTransaction>>,
    /// Records the sink refused as too large: dead-lettered when read again.
    refused: Mutex<HashSet<(Partition, i64)>>,
    /// Transactions aborted in a row, per partition.
    aborts: Mutex<HashMap<Partition, u32>>,
    /// Why partitions assigned in a rebalance could not be opened; the pipeline stops on
    /// it before it reads further.
    failure: Mutex<Option<PipelineError>>,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
}

/// How a partition's transaction ended.
pub(crate) enum Outcome {
    Committed,
    /// Aborted (why): nothing of it is visible to `read_committed` consumers; the
    /// partition must be read again from its last committed offset.
    Aborted(String),
}

impl Transactions {
    pub(crate) fn new(
        config: &PipelineConfig,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
    ) -> Transactions {
        Transactions {
            sink: config.sink.clone(),
            tuning: config.pipeline.clone(),
            group_id: config.source.group_id.clone(),
            offsets_topic: config.pipeline.offsets_topic.clone(),
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

    /// The offsets-topic record saying `partition` continues at `next`: key
    /// `["<group>","<topic>",<partition>]`, value `{"offset":<next>}` (JSON, readable
    /// with any Kafka tool).
    pub(crate) fn position_record(
        &self,
        (topic, partition): &Partition,
        next: i64,
    ) -> (String, String) {
        (
            serde_json::json!([self.group_id, topic, partition]).to_string(),
            serde_json::json!({ "offset": next }).to_string(),
        )
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

    /// The last committed positions of `partitions` in the offsets topic (partitions
    /// without one are left out: they start where the source group says). Reads the
    /// topic as `read_committed` up to the end it had when called, so that every
    /// transaction open then (a fenced owner's, another runner's) has ended first.
    /// Creates the topic if it does not exist. Blocking.
    fn positions(
        &self,
        partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        let topic = self.offsets_topic.as_str();
        let failed = |context: &'static str| {
            move |error: KafkaError| self.topic_error(context, error.to_string())
        };
        let watermarks = kafka::sink_reader(&self.sink, "read_uncommitted")
            .map_err(failed("creating a reader"))?;
        let metadata = watermarks
            .fetch_metadata(Some(topic), TRANSACTION_TIMEOUT)
            .map_err(failed("reading its metadata"))?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        if count == 0 {
            self.create_offsets_topic()?;
            return Ok(HashMap::new());
        }
        let mut end: HashMap<i32, i64> = HashMap::new();
        let mut start = TopicPartitionList::new();
        for partition in 0..count {
            let (low, high) = watermarks
                .fetch_watermarks(topic, partition, TRANSACTION_TIMEOUT)
                .map_err(failed("reading its end offsets"))?;
            if high > low {
                end.insert(partition, high);
                start
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .map_err(failed("assigning its partitions"))?;
            }
        }
        let wanted: HashMap<String, &Partition> = partitions
            .iter()
            .map(|partition| (self.position_record(partition, 0).0, partition))
            .collect();
        let mut found = HashMap::new();
        if end.is_empty() {
            return Ok(found);
        }
        let reader = kafka::sink_reader(&self.sink, "read_committed")
            .map_err(failed("creating a reader"))?;
        reader
            .assign(&start)
            .map_err(failed("assigning its partitions"))?;
        let deadline = Instant::now() + POSITIONS_TIMEOUT;
        while !end.is_empty() {
            if Instant::now() > deadline {
                return Err(self.topic_error(
                    "reading it to its end",
                    format!(
                        "still behind after {POSITIONS_TIMEOUT:?}: a transaction stays open \
                         (a stopped runner's is aborted after the producer's \
                         transaction.timeout.ms)"
                    ),
                ));
            }
            if let Some(message) = reader.poll(Duration::from_millis(200)) {
                let message = message.map_err(failed("reading it"))?;
                let key = message.key().map(String::from_utf8_lossy);
                if let Some(partition) = key.and_then(|key| wanted.get(key.as_ref()).copied()) {
                    let offset = message
                        .payload()
                        .and_then(|value| serde_json::from_slice::<serde_json::Value>(value).ok())
                        .and_then(|value| value["offset"].as_i64())
                        .ok_or_else(|| {
                            self.topic_error(
                                "reading it",
                                format!(
                                    "the record at {}@{} is not {{\"offset\": <number>}}",
                                    message.partition(),
                                    message.offset()
                                ),
                            )
                        })?;
                    found.insert(partition.clone(), offset);
                }
            }
            // The position moves past transaction markers too, which end a partition.
            let positions = reader.position().map_err(failed("reading it"))?;
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset() {
                    if end
                        .get(&element.partition())
                        .is_some_and(|&e| position >= e)
                    {
                        end.remove(&element.partition());
                    }
                }
            }
        }
        Ok(found)
    }

    fn create_offsets_topic(&self) -> Result<(), PipelineError> {
        let admin = kafka::sink_admin(&self.sink)
            .map_err(|error| self.topic_error("creating it", error.to_string()))?;
        // One partition, compacted: one small record per source partition survives.
        let topic = NewTopic::new(&self.offsets_topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(TRANSACTION_TIMEOUT));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .map_err(|error| self.topic_error("creating it", error.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(self.topic_error(
                        "creating it",
                        format!(
                            "{code}: create it yourself (compacted: cleanup.policy=compact) \
                             or let the runner's principal CREATE it"
                        ),
                    ))
                }
            }
        }
        tracing::info!(
            topic = self.offsets_topic,
            "created the exactly-once offsets topic"
        );
        Ok(())
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

    /// The producer of `partition`'s open transaction; begins one (holding records from
    /// `first` on) if none is open.
    pub(crate) fn begin(
        &self,
        partition: &Partition,
        epoch: Epoch,
        first: i64,
    ) -> Result<Arc<FutureProducer>, PipelineError> {
        let mut open = lock(&self.open);
        if let Some(transaction) = open.get(partition) {
            return Ok(transaction.producer.clone());
        }
        let Some(producer) = self.producer(partition) else {
            // Opening it failed in a rebalance: that error says why.
            return Err(self.take_failure().unwrap_or_else(|| {
                self.error(
                    partition,
                    "finding the partition's producer",
                    "the partition is assigned but has no producer",
                )
            }));
        };
        producer.begin_transaction().map_err(|error| {
            self.check_fatal(&producer, partition, &error)
                .err()
                .unwrap_or_else(|| self.error(partition, "beginning a transaction", error))
        })?;
        open.insert(
            partition.clone(),
            OpenTransaction {
                producer: producer.clone(),
                epoch,
                first,
                next: first,
                began: Instant::now(),
                sent: Vec::new(),
                doomed: None,
            },
        );
        Ok(producer)
    }

    /// Records what a batch handed to `partition`'s open transaction.
    pub(crate) fn sent(&self, partition: &Partition, next: i64, sent: Vec<Sent>) {
        if let Some(transaction) = lock(&self.open).get_mut(partition) {
            transaction.next = next;
            transaction.sent.extend(sent);
        }
    }

    /// Marks `partition`'s open transaction to be aborted at the next commit (a send
    /// into it failed; its records are read again).
    pub(crate) fn doom(&self, partition: &Partition, reason: String) {
        if let Some(transaction) = lock(&self.open).get_mut(partition) {
            transaction.doomed.get_or_insert(reason);
        }
    }

    /// Whether the sink refused the record at `offset` of `partition` as too large.
    pub(crate) fn refused(&self, partition: &Partition, offset: i64) -> bool {
        lock(&self.refused).contains(&(partition.clone(), offset))
    }

    /// Aborts `partition`'s open transaction, if any. Blocking.
    pub(crate) fn abort_open(&self, partition: &Partition) -> Result<(), PipelineError> {
        let transaction = lock(&self.open).remove(partition);
        match transaction {
            Some(transaction) => self.abort(&transaction.producer, partition),
            None => Ok(()),
        }
    }

    /// Commits the open transactions that have been open for
    /// `pipeline.transaction_interval`, or all of them with `force`, side by side.
    /// Returns where to read aborted ones again. Blocking.
    pub(crate) fn commit_due(&self, force: bool) -> Result<Vec<Rewind>, PipelineError> {
        let _committing = lock(&self.committing);
        let due: Vec<(Partition, OpenTransaction)> = {
            let mut open = lock(&self.open);
            let partitions: Vec<Partition> = open
                .iter()
                .filter(|(_, t)| force || t.doomed.is_some() || t.began.elapsed() >= self.interval)
                .map(|(partition, _)| partition.clone())
                .collect();
            partitions
                .into_iter()
                .filter_map(|partition| open.remove_entry(&partition))
                .collect()
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = due
                .into_iter()
                .map(|(partition, transaction)| {
                    scope.spawn(move || self.finish(partition, transaction))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("committing a transaction panicked"))
                .collect()
        });
        let mut rewinds = Vec::new();
        for outcome in outcomes {
            rewinds.extend(outcome?);
        }
        Ok(rewinds)
    }

    /// Commits the open transactions of `partitions` before they are revoked; an aborted
    /// one is left to the next owner, who reads from the last committed position.
    /// Blocking.
    pub(crate) fn commit_revoked(&self, partitions: &[Partition]) {
        let _committing = lock(&self.committing);
        let due: Vec<(Partition, OpenTransaction)> = {
            let mut open = lock(&self.open);
            partitions
                .iter()
                .filter_map(|partition| open.remove_entry(partition))
                .collect()
        };
        for (partition, transaction) in due {
            if let Err(error) = self.finish(partition, transaction) {
                tracing::warn!("committing a revoked partition's transaction failed: {error}");
            }
        }
    }

    /// Writes the position record into `transaction` and commits it; on an abort, says
    /// where to read again.
    fn finish(
        &self,
        partition: Partition,
        transaction: OpenTransaction,
    ) -> Result<Option<Rewind>, PipelineError> {
        let OpenTransaction {
            producer,
            epoch,
            first,
            next,
            sent,
            doomed,
            ..
        } = transaction;
        let (key, value) = self.position_record(&partition, next);
        let position = FutureRecord::<str, str>::to(&self.offsets_topic)
            .key(&key)
            .payload(&value);
        let recorded = match doomed {
            Some(reason) => Err(reason),
            None => producer
                .send_result(position)
                .map(drop)
                .map_err(|(error, _)| format!("recording the source position failed: {error}")),
        };
        let outcome = match recorded {
            Ok(()) => self.commit(&producer, &partition)?,
            // Never commit a transaction without its position, or with a failed send.
            Err(reason) => {
                if let Some((_, fatal)) = producer.client().fatal_error() {
                    return Err(self.error(&partition, "a fatal producer error", fatal));
                }
                self.abort(&producer, &partition)?;
                Outcome::Aborted(reason)
            }
        };
        // Every delivery has its answer once the transaction ended.
        let answers = futures::executor::block_on(futures::future::join_all(
            sent.into_iter()
                .map(|s| async move { (s.offset, s.dead_letter, s.bytes, s.delivery.await) }),
        ));
        match outcome {
            Outcome::Committed => {
                for (_, dead_letter, bytes, _) in answers {
                    if dead_letter {
                        self.metrics.dead_lettered();
                    } else {
                        self.metrics.produced(bytes);
                    }
                }
                self.metrics.committed();
                lock(&self.aborts).remove(&partition);
                self.ownership
                    .committed_in_transaction(partition, next, epoch);
                Ok(None)
            }
            Outcome::Aborted(error) => {
                self.metrics.transaction_aborted();
                let too_large: Vec<i64> = answers
                    .into_iter()
                    .filter(|(_, dead_letter, _, answer)| {
                        !dead_letter
                            && matches!(answer, Ok(Err((e, _))) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge))
                    })
                    .map(|(offset, ..)| offset)
                    .collect();
                let newly_refused = {
                    let mut refused = lock(&self.refused);
                    too_large
                        .into_iter()
                        .filter(|&offset| refused.insert((partition.clone(), offset)))
                        .count()
                };
                // A refused record is dead-lettered when read again: not a repeat.
                let aborts = if newly_refused > 0 {
                    0
                } else {
                    let mut aborts = lock(&self.aborts);
                    let count = aborts.entry(partition.clone()).or_default();
                    *count += 1;
                    *count
                };
                if aborts > MAX_CONSECUTIVE_ABORTS {
                    return Err(self.error(
                        &partition,
                        "committing a transaction",
                        format!("aborted {aborts} times in a row at offset {first}: {error}"),
                    ));
                }
                tracing::warn!(
                    topic = partition.0,
                    partition = partition.1,
                    offset = first,
                    "transaction aborted ({error}); reading the partition again from its last commit"
                );
                std::thread::sleep(Duration::from_millis(50 << aborts));
                Ok(Some(Rewind {
                    partition,
                    epoch,
                    offset: first,
                }))
            }
        }
    }

    /// Commits the open transaction of `partition` (its outputs and its position
    /// record), or aborts it. Fencing and other fatal errors stop the pipeline.
    /// Blocking.
    fn commit(
        &self,
        producer: &FutureProducer,
        partition: &Partition,
    ) -> Result<Outcome, PipelineError> {
        match self.commit_retrying(producer) {
            Ok(()) => Ok(Outcome::Committed),
            Err(error) => {
                self.check_fatal(producer, partition, &error)?;
                self.abort(producer, partition)?;
                Ok(Outcome::Aborted(error.to_string()))
            }
        }
    }

    fn commit_retrying(&self, producer: &FutureProducer) -> Result<(), KafkaError> {
        let mut attempts = 0;
        loop {
            match producer.commit_transaction(TRANSACTION_TIMEOUT) {
                Err(KafkaError::Transaction(error)) if error.is_retriable() && attempts < 3 => {
                    attempts += 1;
                    tracing::warn!("committing a transaction: {error}; retrying");
                }
                other => return other,
            }
        }
    }

    /// Aborts the open transaction of `partition`. Blocking.
    fn abort(&self, producer: &FutureProducer, partition: &Partition) -> Result<(), PipelineError> {
        producer
            .abort_transaction(TRANSACTION_TIMEOUT)
            .map_err(|error| {
                if let Err(fatal) = self.check_fatal(producer, partition, &error) {
                    return fatal;
                }
                self.error(partition, "aborting a transaction", error)
            })
    }

    /// `Err` when `producer` can no longer be used: fenced by a newer owner of its
    /// transactional id, or another fatal error.
    pub(crate) fn check_fatal(
        &self,
        producer: &FutureProducer,
        partition: &Partition,
        error: &KafkaError,
    ) -> Result<(), PipelineError> {
        let fatal = producer.client().fatal_error();
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
        let fenced =
            is_fence(fatal.as_ref().map(|(code, _)| *code)) || is_fence(error.rdkafka_error_code());
        if fenced {
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

    fn topic_error(&self, context: &'static str, detail: String) -> PipelineError {
        PipelineError::OffsetsTopic {
            topic: self.offsets_topic.clone(),
            context,
            detail,
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
