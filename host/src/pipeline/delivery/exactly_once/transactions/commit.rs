//! A transaction's life: begun by the first batch after the last commit, fed by the
//! batches that follow, and committed with the source positions it passes (or aborted,
//! and its partitions read again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{AckingProducer, Acks};
use crate::pipeline::error::PipelineError;
use crate::pipeline::ownership::{Epoch, Partition};
use crate::pipeline::sink::refused_by_sink;

use super::{
    lock, OpenTransaction, Placement, Rewind, Scope, Sent, Span, Transactions, TRANSACTION_TIMEOUT,
};

/// A transaction (of a partition, or of a runner) that aborts this many times in a row
/// (with growing pauses) stops the pipeline instead of spinning.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;

/// How a transaction ended.
pub(crate) enum Outcome {
    Committed,
    /// Aborted (why): nothing of it is visible to `read_committed` consumers; its
    /// partitions must be read again from their last committed offsets.
    Aborted(String),
}

/// One attempt at aborting a transaction; [`Transactions::abort`] tries again until
/// [`TRANSACTION_TIMEOUT`].
const ABORT_ATTEMPT: Duration = Duration::from_secs(10);

/// Waits (at most [`TRANSACTION_TIMEOUT`]) until every delivery of a transaction was
/// acknowledged, or one failed: then librdkafka holds the rest until the transaction is
/// aborted, and flushing (which rdkafka's `commit_transaction` does first) would wait out
/// its whole timeout. Returns why the transaction must abort, if it must.
fn wait_for_deliveries(producer: &AckingProducer, acks: &Acks) -> Option<String> {
    let deadline = Instant::now() + TRANSACTION_TIMEOUT;
    loop {
        let flushed = producer.flush(Duration::from_millis(100)).is_ok();
        if let Some(error) = acks.first_failure() {
            return Some(format!("a record was not delivered: {error}"));
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
    /// The producer of the transaction `partition`'s records go into, to hand records
    /// to until [`Transactions::sent`]; begins one if none is open, and starts holding
    /// `partition` from `first` on if it does not yet. `None` while a round of commits is
    /// ending that transaction: the records wait for it.
    pub(crate) fn begin(
        &self,
        partition: &Partition,
        epoch: Epoch,
        first: i64,
    ) -> Result<Option<(Arc<AckingProducer>, Acks)>, PipelineError> {
        let scope = self.scope_of(partition);
        let mut open = lock(&self.open);
        if open.committing.contains(&scope) {
            return Ok(None);
        }
        if !open.transactions.contains_key(&scope) {
            let Some(producer) = self.producer(&scope) else {
                // Opening it failed in a rebalance: that error says why.
                return Err(self.take_failure().unwrap_or_else(|| {
                    self.error(
                        &scope,
                        "finding the partition's producer",
                        "the partition is assigned but has no producer",
                    )
                }));
            };
            producer.begin_transaction().map_err(|error| {
                self.check_fatal(&producer, &scope, &error)
                    .err()
                    .unwrap_or_else(|| self.error(&scope, "beginning a transaction", error))
            })?;
            open.transactions.insert(
                scope.clone(),
                OpenTransaction {
                    producer,
                    acks: Acks::new(),
                    handing_over: false,
                    spans: Vec::new(),
                    began: Instant::now(),
                    sent: Vec::new(),
                    doomed: None,
                },
            );
        }
        let transaction = open.transactions.get_mut(&scope).expect("just opened");
        transaction.handing_over = true;
        if !transaction
            .spans
            .iter()
            .any(|span| &span.partition == partition)
        {
            transaction.spans.push(Span {
                partition: partition.clone(),
                epoch,
                first,
                next: first,
            });
        }
        Ok(Some((
            transaction.producer.clone(),
            transaction.acks.clone(),
        )))
    }

    /// Records what a batch handed to the open transaction of `partition` (and, with
    /// `doomed`, that it must abort: a send into it failed; its records are read again).
    pub(crate) fn sent(
        &self,
        partition: &Partition,
        next: i64,
        sent: Vec<Sent>,
        doomed: Option<String>,
    ) {
        let scope = self.scope_of(partition);
        let mut open = lock(&self.open);
        let Some(transaction) = open.transactions.get_mut(&scope) else {
            return;
        };
        transaction.handing_over = false;
        if let Some(reason) = doomed {
            transaction.doomed.get_or_insert(reason);
        }
        let Some(span) = transaction
            .spans
            .iter()
            .position(|span| &span.partition == partition)
        else {
            return;
        };
        transaction.spans[span].next = next;
        transaction
            .sent
            .extend(sent.into_iter().map(|sent| Sent { span, ..sent }));
    }

    /// Why the sink refused the record at `offset` of `partition` in an aborted
    /// transaction, if it did.
    pub(crate) fn refused(&self, partition: &Partition, offset: i64) -> Option<String> {
        lock(&self.refused)
            .get(&(partition.clone(), offset))
            .cloned()
    }

    /// Aborts the open transaction of `partition`, if any. Blocking.
    pub(crate) fn abort_open(&self, partition: &Partition) -> Result<(), PipelineError> {
        let scope = self.scope_of(partition);
        let transaction = lock(&self.open).transactions.remove(&scope);
        match transaction {
            Some(transaction) => self.abort(&transaction.producer, &scope),
            None => Ok(()),
        }
    }

    /// Commits the open transactions that have been open for
    /// `pipeline.transaction_interval`, or all of them with `force`, side by side.
    /// Returns where to read aborted ones again. Blocking; records for the transactions
    /// it commits wait ([`Transactions::begin`]), others go on.
    pub(crate) fn commit_due(&self, force: bool) -> Result<Vec<Rewind>, PipelineError> {
        let _committing = lock(&self.committing);
        let due: Vec<(Scope, OpenTransaction)> = {
            let mut open = lock(&self.open);
            let scopes: Vec<Scope> = open
                .transactions
                .iter()
                .filter(|(_, t)| !t.handing_over)
                .filter(|(_, t)| force || t.doomed.is_some() || t.began.elapsed() >= self.interval)
                .map(|(scope, _)| scope.clone())
                .collect();
            open.committing.extend(scopes.iter().cloned());
            scopes
                .into_iter()
                .filter_map(|scope| open.transactions.remove_entry(&scope))
                .collect()
        };
        let scopes: Vec<Scope> = due.iter().map(|(scope, _)| scope.clone()).collect();
        let outcomes: Vec<_> = match due.len() {
            0 => return Ok(Vec::new()),
            // One cluster: one transaction; no thread of its own needed.
            1 => due
                .into_iter()
                .map(|(scope, transaction)| self.finish(scope, transaction))
                .collect(),
            _ => std::thread::scope(|threads| {
                let handles: Vec<_> = due
                    .into_iter()
                    .map(|(scope, transaction)| {
                        threads.spawn(move || self.finish(scope, transaction))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().expect("committing a transaction panicked"))
                    .collect()
            }),
        };
        {
            let mut open = lock(&self.open);
            for scope in &scopes {
                open.committing.remove(scope);
            }
        }
        let mut rewinds = Vec::new();
        for outcome in outcomes {
            rewinds.extend(outcome?);
        }
        Ok(rewinds)
    }

    /// Commits the open transactions holding `partitions` before they are revoked (on
    /// one cluster, the runner's, with every partition in it); an aborted one is left to
    /// the next owner, who reads from the last committed position. Blocking.
    pub(crate) fn commit_revoked(&self, partitions: &[Partition]) {
        let mut scopes: Vec<Scope> = partitions.iter().map(|p| self.scope_of(p)).collect();
        scopes.dedup();
        self.commit_now(Some(&scopes), "revoked partitions");
    }

    /// Commits every open transaction now (the rebalance callback is about to wait, up
    /// to a crashed runner's `transaction.timeout.ms`, and an open transaction of this
    /// runner would time out meanwhile and fence it). Blocking.
    pub(crate) fn commit_open(&self) {
        self.commit_now(None, "open transactions, before waiting in a rebalance");
    }

    /// Commits the open transactions of `scopes` (all, with `None`), the rewinds of an
    /// abort left for the pipeline.
    fn commit_now(&self, scopes: Option<&[Scope]>, what: &str) {
        let _committing = lock(&self.committing);
        let due: Vec<(Scope, OpenTransaction)> = {
            let mut open = lock(&self.open);
            match scopes {
                Some(scopes) => scopes
                    .iter()
                    .filter_map(|scope| open.transactions.remove_entry(scope))
                    .collect(),
                None => open.transactions.drain().collect(),
            }
        };
        for (scope, transaction) in due {
            // Its partitions that stay are read again from the last commit, if it aborts.
            match self.finish(scope, transaction) {
                Ok(rewinds) => lock(&self.pending_rewinds).extend(rewinds),
                Err(error) => {
                    tracing::warn!("committing the transaction of {what} failed: {error}")
                }
            }
        }
    }

    /// Rewinds owed from commits made in a rebalance, for the pipeline to apply.
    pub(crate) fn take_rewinds(&self) -> Vec<Rewind> {
        std::mem::take(&mut *lock(&self.pending_rewinds))
    }

    /// Records the source positions in `transaction` and commits it; on an abort, says
    /// where to read its partitions again.
    fn finish(
        &self,
        scope: Scope,
        transaction: OpenTransaction,
    ) -> Result<Vec<Rewind>, PipelineError> {
        let OpenTransaction {
            producer,
            acks,
            spans,
            sent,
            doomed,
            ..
        } = transaction;
        let recorded = match doomed {
            Some(reason) => Err(reason),
            None => self
                .record_positions(&producer, &acks, &spans)
                .and_then(|()| match wait_for_deliveries(&producer, &acks) {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                }),
        };
        let outcome = match recorded {
            Ok(()) => self.commit(&producer, &scope)?,
            // Never commit a transaction without its positions, or with a failed send.
            Err(reason) => {
                self.usable(&producer, &scope, None)?;
                self.abort(&producer, &scope)?;
                Outcome::Aborted(reason)
            }
        };
        // Every delivery has its answer once the transaction ended (and it was taken out
        // of the open transactions: nothing more is handed to it).
        acks.close();
        let failed = acks.wait();
        let error = match outcome {
            Outcome::Committed => {
                for sent in &sent {
                    match sent.dead_letter {
                        Some(kind) => self.metrics.dead_lettered(kind),
                        None => self.metrics.produced(sent.bytes),
                    }
                }
                self.metrics.committed();
                self.metrics.transaction_committed();
                lock(&self.aborts).remove(&scope);
                // Across clusters the source group gets a copy of the positions (lag
                // monitoring); on one cluster the transaction committed them there.
                if let Placement::OffsetsTopic { .. } = self.placement {
                    for span in spans {
                        self.ownership.committed_in_transaction(
                            span.partition,
                            span.next,
                            span.epoch,
                        );
                    }
                }
                return Ok(Vec::new());
            }
            Outcome::Aborted(error) => error,
        };
        self.metrics.transaction_aborted();
        // `sent` is in ticket order.
        let refusals: Vec<((Partition, i64), String)> = failed
            .iter()
            .filter_map(|failed| {
                let at = sent
                    .binary_search_by_key(&failed.number, |sent| sent.ticket)
                    .ok()?;
                let sent = &sent[at];
                if sent.dead_letter.is_some() {
                    return None;
                }
                refused_by_sink(&failed.error)
                    .map(|reason| ((spans[sent.span].partition.clone(), sent.offset), reason))
            })
            .collect();
        let newly_refused = {
            let mut refused = lock(&self.refused);
            refusals
                .into_iter()
                .filter(|(at, reason)| refused.insert(at.clone(), reason.clone()).is_none())
                .count()
        };
        // A refused record is dead-lettered when read again: not a repeat.
        let aborts = if newly_refused > 0 {
            0
        } else {
            let mut aborts = lock(&self.aborts);
            let count = aborts.entry(scope.clone()).or_default();
            *count += 1;
            *count
        };
        let at = spans
            .iter()
            .map(|span| format!("{}/{}@{}", span.partition.0, span.partition.1, span.first))
            .collect::<Vec<_>>()
            .join(", ");
        if aborts > MAX_CONSECUTIVE_ABORTS {
            return Err(self.error(
                &scope,
                "committing a transaction",
                format!("aborted {aborts} times in a row at {at}: {error}"),
            ));
        }
        tracing::warn!(
            partitions = at,
            "transaction aborted ({error}); reading its partitions again from their last commit"
        );
        std::thread::sleep(Duration::from_millis(50 << aborts));
        Ok(spans
            .into_iter()
            .map(|span| Rewind {
                partition: span.partition,
                epoch: span.epoch,
                offset: span.first,
            })
            .collect())
    }

    /// Puts the positions the transaction passes into it: a signed record per partition
    /// in the offsets topic, or (one cluster) the source group's offsets, sent with the
    /// consumer's group metadata so that the coordinator refuses them from a runner a
    /// rebalance left behind. Blocking.
    fn record_positions(
        &self,
        producer: &AckingProducer,
        acks: &Acks,
        spans: &[Span],
    ) -> Result<(), String> {
        match &self.placement {
            Placement::OffsetsTopic { positions, .. } => {
                for span in spans {
                    // A position that cannot be signed is not written: the transaction
                    // aborts and its records are read again once Vault answers.
                    let (key, value) = positions
                        .position_record(&span.partition, span.next)
                        .map_err(|error| error.to_string())?;
                    // Counted with the transaction's records: a position that is not
                    // delivered aborts it.
                    producer
                        .send(
                            BaseRecord::with_opaque_to(&positions.topic, acks.ticket())
                                .key(&key)
                                .payload(&value),
                        )
                        .map_err(|(error, _)| {
                            format!("recording the source position failed: {error}")
                        })?;
                }
                Ok(())
            }
            Placement::SourceGroup { group, .. } => {
                let Some(group) = lock(group).clone() else {
                    return Err("the source consumer has no group metadata yet".into());
                };
                let mut offsets = TopicPartitionList::new();
                for span in spans {
                    offsets
                        .add_partition_offset(
                            &span.partition.0,
                            span.partition.1,
                            Offset::Offset(span.next),
                        )
                        .map_err(|error| error.to_string())?;
                }
                producer
                    .send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
                    .map_err(|error| {
                        format!(
                            "committing the source offsets in the transaction failed \
                             (a rebalance may have moved the partitions): {error}"
                        )
                    })
            }
        }
    }

    /// Commits the open transaction of `scope` (its outputs and its positions), or
    /// aborts it. Fencing and other fatal errors stop the pipeline.
    /// Blocking.
    fn commit(&self, producer: &AckingProducer, scope: &Scope) -> Result<Outcome, PipelineError> {
        match self.commit_retrying(producer) {
            Ok(()) => Ok(Outcome::Committed),
            Err(error) => {
                self.check_fatal(producer, scope, &error)?;
                self.abort(producer, scope)?;
                Ok(Outcome::Aborted(error.to_string()))
            }
        }
    }

    fn commit_retrying(&self, producer: &AckingProducer) -> Result<(), KafkaError> {
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

    /// Aborts the open transaction of `scope`. Blocking.
    ///
    /// An abort first waits for the delivery reports of the records it purges; when that
    /// times out (seen on CI with a transaction the sink had refused a record of), the
    /// reports are served here and the abort is tried again, as librdkafka allows for a
    /// retriable abort error.
    fn abort(&self, producer: &AckingProducer, scope: &Scope) -> Result<(), PipelineError> {
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            let error = match producer.abort_transaction(ABORT_ATTEMPT) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            self.check_fatal(producer, scope, &error)?;
            let retriable = matches!(&error, KafkaError::Transaction(e) if e.is_retriable());
            if !retriable || Instant::now() > deadline {
                return Err(self.error(scope, "aborting a transaction", error));
            }
            tracing::warn!("aborting a transaction: {error}; trying again");
            producer.poll(Duration::from_millis(100));
        }
    }
}
