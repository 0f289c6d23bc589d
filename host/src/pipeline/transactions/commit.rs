//! A partition's transaction: begun by the first batch after the last commit, fed by
//! the batches that follow, and committed with the partition's position (or aborted
//! and read again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot::Canceled;
use futures::FutureExt;
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::pipeline::ownership::{Epoch, Partition};
use crate::pipeline::refusal::refused_by_sink;
use crate::pipeline::PipelineError;

use super::{lock, OpenTransaction, Rewind, Sent, Transactions, TRANSACTION_TIMEOUT};

/// A partition whose transactions abort this many times in a row (with growing pauses)
/// stops the pipeline instead of spinning.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;

/// How a partition's transaction ended.
pub(crate) enum Outcome {
    Committed,
    /// Aborted (why): nothing of it is visible to `read_committed` consumers; the
    /// partition must be read again from its last committed offset.
    Aborted(String),
}

/// One attempt at aborting a transaction; [`Transactions::abort`] tries again until
/// [`TRANSACTION_TIMEOUT`].
const ABORT_ATTEMPT: Duration = Duration::from_secs(10);

/// A delivery's answer.
type Answer = Result<OwnedDeliveryResult, Canceled>;

/// Waits (at most [`TRANSACTION_TIMEOUT`]) until every delivery of a transaction was
/// acknowledged, or one failed: then librdkafka holds the rest until the transaction is
/// aborted, and flushing (which rdkafka's `commit_transaction` does first) would wait out
/// its whole timeout. Returns why the transaction must abort, if it must.
fn wait_for_deliveries(
    producer: &FutureProducer,
    sent: &mut [Sent],
    answers: &mut [Option<Answer>],
) -> Option<String> {
    let deadline = Instant::now() + TRANSACTION_TIMEOUT;
    loop {
        let flushed = producer.flush(Duration::from_millis(100)).is_ok();
        for (s, answer) in sent.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                *answer = (&mut s.delivery).now_or_never();
            }
        }
        let failed = answers.iter().find_map(|answer| match answer {
            Some(Ok(Err((error, _)))) => Some(format!("a record was not delivered: {error}")),
            Some(Err(Canceled)) => Some("a delivery was cancelled".to_string()),
            _ => None,
        });
        if failed.is_some() {
            return failed;
        }
        if flushed {
            return None;
        }
        if Instant::now() > deadline {
            return Some(format!(
                "the sink did not acknowledge the transaction's records within {TRANSACTION_TIMEOUT:?}"
            ));
        }
    }
}

impl Transactions {
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
    /// Why the sink refused the record at `offset` in an aborted transaction, if it did.
    pub(crate) fn refused(&self, partition: &Partition, offset: i64) -> Option<String> {
        lock(&self.refused)
            .get(&(partition.clone(), offset))
            .cloned()
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
            mut sent,
            doomed,
            ..
        } = transaction;
        let record = match doomed {
            Some(reason) => Err(reason),
            // A position that cannot be signed is not written: the transaction aborts
            // and its records are read again once Vault answers.
            None => self
                .position_record(&partition, next)
                .map_err(|error| error.to_string()),
        };
        let mut answers: Vec<Option<Answer>> = sent.iter().map(|_| None).collect();
        let recorded = match &record {
            Err(reason) => Err(reason.clone()),
            Ok((key, value)) => producer
                .send_result(
                    FutureRecord::<str, str>::to(&self.offsets_topic)
                        .key(key)
                        .payload(value),
                )
                .map(drop)
                .map_err(|(error, _)| format!("recording the source position failed: {error}"))
                .and_then(
                    |()| match wait_for_deliveries(&producer, &mut sent, &mut answers) {
                        Some(reason) => Err(reason),
                        None => Ok(()),
                    },
                ),
        };
        let outcome = match recorded {
            Ok(()) => self.commit(&producer, &partition)?,
            // Never commit a transaction without its position, or with a failed send.
            Err(reason) => {
                self.usable(&producer, &partition, None)?;
                self.abort(&producer, &partition)?;
                Outcome::Aborted(reason)
            }
        };
        // Every delivery has its answer once the transaction ended.
        let answers: Vec<(i64, Option<&'static str>, u64, Answer)> = sent
            .into_iter()
            .zip(answers)
            .map(|(s, answer)| {
                let answer = answer.unwrap_or_else(|| futures::executor::block_on(s.delivery));
                (s.offset, s.dead_letter, s.bytes, answer)
            })
            .collect();
        match outcome {
            Outcome::Committed => {
                for (_, dead_letter, bytes, _) in answers {
                    match dead_letter {
                        Some(kind) => self.metrics.dead_lettered(kind),
                        None => self.metrics.produced(bytes),
                    }
                }
                self.metrics.committed();
                self.metrics.transaction_committed();
                lock(&self.aborts).remove(&partition);
                self.ownership
                    .committed_in_transaction(partition, next, epoch);
                Ok(None)
            }
            Outcome::Aborted(error) => {
                self.metrics.transaction_aborted();
                let refusals: Vec<(i64, String)> = answers
                    .into_iter()
                    .filter_map(|(offset, dead_letter, _, answer)| match answer {
                        Ok(Err((e, _))) if dead_letter.is_none() => {
                            refused_by_sink(&e).map(|reason| (offset, reason))
                        }
                        _ => None,
                    })
                    .collect();
                let newly_refused = {
                    let mut refused = lock(&self.refused);
                    refusals
                        .into_iter()
                        .filter(|(offset, reason)| {
                            refused
                                .insert((partition.clone(), *offset), reason.clone())
                                .is_none()
                        })
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
    ///
    /// An abort first waits for the delivery reports of the records it purges; when that
    /// times out (seen on CI with a transaction the sink had refused a record of), the
    /// reports are served here and the abort is tried again, as librdkafka allows for a
    /// retriable abort error.
    fn abort(&self, producer: &FutureProducer, partition: &Partition) -> Result<(), PipelineError> {
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            let error = match producer.abort_transaction(ABORT_ATTEMPT) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            self.check_fatal(producer, partition, &error)?;
            let retriable = matches!(&error, KafkaError::Transaction(e) if e.is_retriable());
            if !retriable || Instant::now() > deadline {
                return Err(self.error(partition, "aborting a transaction", error));
            }
            tracing::warn!("aborting a transaction: {error}; trying again");
            producer.poll(Duration::from_millis(100));
        }
    }
}
