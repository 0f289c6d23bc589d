//! Source topic → policy → sink topic, at least once or exactly once.
//!
//! One loop: gather a batch from the consumer ([`source`]), run the policy on the whole
//! batch, hand every output to the idempotent sink producer or a failed record to the
//! dead-letter topic ([`delivery`], [`dead_letter`]), and keep the batch "in flight"
//! until every one of its deliveries is acknowledged. Batches complete strictly in
//! order, and a batch's offsets are committed only once it and every batch before it
//! are acknowledged, so a crash at any point re-delivers (never loses) records. While
//! batch N is being acknowledged, batch N+1 is already in the policy: up to
//! `pipeline.max_in_flight_batches` overlap. Rebalances go through [`ownership`]: a
//! runner finishes and commits the in-flight work of partitions it loses before it lets
//! them go, and never commits for a partition it no longer owns.
//!
//! With `pipeline.delivery = "exactly-once"` outputs go instead into Kafka
//! transactions, one open per source partition across batches, committed with a record
//! of the partition's source position every `pipeline.transaction_interval`, when the
//! source goes quiet, before waiting on Vault, and before a partition is revoked
//! ([`transactions`]).

//!
//! Fail closed: a record the policy could not transform never goes to the sink. It goes
//! to the dead-letter topic, which lives on the source cluster unless configured
//! otherwise (and then carries no record contents), or the pipeline stops.

mod dead_letter;
mod delivery;
mod ownership;
mod produce;
mod refusal;
mod sink_topics;
mod source;
mod stopping;
mod topic_creation;
mod transactions;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use tokio::task::JoinHandle;

use crate::config::{DeliveryGuarantee, PipelineConfig};
use crate::metrics::{Metrics, Snapshot};
use crate::policy::swap::PolicyUpdates;
use crate::policy::{Failure, PolicyError, PolicyRunner, SourceRecord, TransformResult};
use crate::vault::VaultClient;

pub use dead_letter::headers as dead_letter_headers;

use delivery::{Delivery, InFlight};
use ownership::Ownership;
use source::{Batch, Source};
use stopping::Stopping;
use transactions::{Rewind, Transactions};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        source: KafkaError,
    },
    #[error("source.topics: {0}")]
    SourceTopic(String),
    #[error("forget.topic: {0}")]
    Forget(#[from] crate::forget::ForgetError),
    /// A topic template gave no usable topic for a source topic (the message names the
    /// field and what to change).
    #[error("{0}")]
    Route(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "record {topic}/{partition}@{offset} failed ({kind}: {reason}) and errors.on_failure = \"stop\"; \
         it was not committed, so a restart retries it"
    )]
    StoppedOnFailure {
        topic: String,
        partition: i32,
        offset: i64,
        kind: &'static str,
        reason: String,
    },
    #[error(
        "{target} did not acknowledge the output of {topic}/{partition}@{offset}: {detail}; \
         nothing from that batch on was committed"
    )]
    Delivery {
        target: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        detail: String,
    },
    #[error(
        "another runner took over {topic}/{partition}: it initialised transactional.id \
         \"{transactional_id}\" and so fenced this runner, which stops rather than write \
         a duplicate (nothing it had not committed is visible to read_committed consumers); \
         with source.assignment = \"static\" run one runner per group"
    )]
    Fenced {
        transactional_id: String,
        topic: String,
        partition: i32,
    },
    #[error(
        "exactly-once: {context} for transactional.id \"{transactional_id}\" failed: {detail}; \
         the sink cluster must support transactions (transaction.state.log.* broker settings) \
         and, with ACLs, allow WRITE and DESCRIBE on TransactionalId prefix \
         \"<source.group_id>.\""
    )]
    Transaction {
        context: &'static str,
        transactional_id: String,
        detail: String,
    },
    #[error(
        "exactly-once: the offsets topic \"{topic}\" (pipeline.offsets_topic, on the sink \
         cluster): {context} failed: {detail}"
    )]
    OffsetsTopic {
        topic: String,
        context: &'static str,
        detail: String,
    },
    #[error(
        "stopped before the sink acknowledged everything within pipeline.shutdown_timeout \
         ({timeout:?}; {in_flight} batch(es) in flight): what was not acknowledged was not \
         committed, so those records are consumed again after a restart (is the sink \
         cluster reachable?)"
    )]
    ShutdownTimedOut { in_flight: usize, timeout: Duration },
}

/// For a blocking task's `JoinError`: re-raises its panic; a task cancelled because the
/// runtime shuts down becomes an error.
fn joined(context: &'static str) -> impl FnOnce(tokio::task::JoinError) -> PipelineError {
    move |error| match error.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(error) => PipelineError::Transaction {
            context,
            transactional_id: "*".into(),
            detail: error.to_string(),
        },
    }
}

fn kafka_error(context: &'static str) -> impl FnOnce(KafkaError) -> PipelineError {
    move |source| PipelineError::Kafka { context, source }
}

pub struct Pipeline {
    config: PipelineConfig,
    runner: PolicyRunner,
    source: Source,
    delivery: Delivery,
    /// Exactly-once only.
    transactions: Option<Arc<Transactions>>,
    /// Exactly-once: the round of commits running while the next batch is prepared.
    commit_round: Option<JoinHandle<Result<Vec<Rewind>, PipelineError>>>,
    metrics: Arc<Metrics>,
    vault: VaultClient,
    /// Policies loaded while running (hot swap); taken between batches only.
    policy_updates: Option<PolicyUpdates>,
    stopping: Stopping,
    /// Shared with the source's rebalance callbacks and the deliveries.
    ownership: Arc<Ownership>,
}

impl Pipeline {
    /// Connects the Kafka clients (lazily: librdkafka connects on first use) around a
    /// started policy.
    pub fn new(
        config: PipelineConfig,
        runner: PolicyRunner,
        vault: VaultClient,
    ) -> Result<Self, PipelineError> {
        let metrics = Arc::new(Metrics::default());
        let ownership = Arc::new(Ownership::default());
        let transactions = match config.pipeline.delivery {
            DeliveryGuarantee::AtLeastOnce => None,
            DeliveryGuarantee::ExactlyOnce => Some(Arc::new(Transactions::new(
                &config,
                ownership.clone(),
                metrics.clone(),
                vault.clone(),
            ))),
        };
        let source = Source::new(
            &config.source,
            &config.pipeline,
            ownership.clone(),
            transactions.clone(),
            metrics.clone(),
        )?;
        let stopping = Stopping::default();
        let delivery = Delivery::new(
            &config,
            ownership.clone(),
            metrics.clone(),
            stopping.clone(),
        )?;
        Ok(Pipeline {
            config,
            runner,
            source,
            delivery,
            transactions,
            commit_round: None,
            metrics,
            vault,
            policy_updates: None,
            stopping,
            ownership,
        })
    }

    /// Switches to the policies `updates` delivers, each from the next batch on.
    pub fn with_policy_updates(mut self, updates: PolicyUpdates) -> Self {
        self.policy_updates = Some(updates);
        self
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `stop` resolves (then finishes in-flight work, commits and returns
    /// the final counters) or until an error that must stop the pipeline.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<Snapshot, PipelineError> {
        // Before the first batch: a runner started after a forget must know of it.
        let forgotten = self
            .runner
            .runtime()
            .pipeline()
            .and_then(|view| view.forgotten().cloned());
        let _forgotten = watch_forgotten(&self.config, forgotten).await?;
        self.source.start(&self.config.source)?;
        tracing::info!(
            policy = self.runner.runtime().name(),
            digest = self.runner.runtime().digest(),
            topics = ?self.config.source.topics,
            sink = %self.config.sink.topic,
            delivery = ?self.config.pipeline.delivery,
            "pipeline started"
        );
        let reporter = self.spawn_progress_reporter();
        let result = self.run_loop(stop).await;
        reporter.abort();
        let snapshot = self.metrics.snapshot();
        log_progress("final", &snapshot, None, self.vault.requests_sent());
        result.map(|()| snapshot)
    }

    async fn run_loop(&mut self, stop: impl Future<Output = ()>) -> Result<(), PipelineError> {
        let mut stop = std::pin::pin!(stop);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let outcome = loop {
            self.metrics.heartbeat();
            let batch = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                batch = self.source.next_batch(&self.config.pipeline) => batch,
            };
            if let Some(failure) = self.transactions.as_ref().and_then(|t| t.take_failure()) {
                break Err(failure);
            }
            // Between batches, so each batch sees one policy, retries included.
            if let Some(updates) = &self.policy_updates {
                updates.apply(&mut self.runner);
            }
            if batch.records.is_empty() {
                // Quiet source: finish what is open rather than wait for more.
                let settled = match self.settle(&mut in_flight, 0).await {
                    Ok(()) => self.commit_transactions().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = settled {
                    break Err(error);
                }
                continue;
            }
            // Nothing of the batch was produced yet: a stop may drop it.
            let results = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                results = self.transform_until_settled(&batch) => results,
            };
            let results = match results {
                Ok(results) => results,
                Err(error) => break Err(error),
            };
            // Handing the batch to the producers is not dropped half-way (a transaction
            // would hold part of it): a stop makes a full producer queue give up instead.
            let stopping = self.stopping.clone();
            let mut stopped = false;
            let delivered = {
                let deliver = self.deliver(batch, results, &mut in_flight);
                let mut deliver = std::pin::pin!(deliver);
                tokio::select! {
                    biased;
                    delivered = &mut deliver => delivered,
                    () = &mut stop => {
                        stopping.request();
                        stopped = true;
                        deliver.await
                    }
                }
            };
            match delivered {
                Err(error) => break Err(error),
                Ok(()) if stopped => break Ok(()),
                Ok(()) => {}
            }
        };
        self.stopping.request();
        // Whatever happened, what was already handed to the producers is finished and
        // committed, so a restart repeats as little as possible; but never for longer
        // than pipeline.shutdown_timeout, past which those batches are given up.
        let timeout = self.config.pipeline.shutdown_timeout;
        let drained = tokio::time::timeout(timeout, async {
            match self.settle(&mut in_flight, 0).await {
                // After an error the open transactions are left to abort: the next owner
                // of their partitions fences this runner and aborts them.
                Ok(()) if outcome.is_ok() => self.commit_transactions().await,
                other => other,
            }
        })
        .await
        .unwrap_or_else(|_elapsed| {
            let batches = in_flight.len();
            in_flight.clear();
            self.ownership.abandon_in_flight();
            Err(PipelineError::ShutdownTimedOut {
                in_flight: batches,
                timeout,
            })
        });
        self.source.commit(CommitMode::Sync);
        outcome.and(drained)
    }

    /// Hands a transformed batch to the sink: at least once, into the in-flight queue
    /// (completing the oldest batches beyond `pipeline.max_in_flight_batches`); exactly
    /// once, into the partitions' open transactions, then starts a round of commits
    /// that runs while the next batch is read and transformed.
    async fn deliver(
        &mut self,
        batch: Batch,
        results: Vec<TransformResult>,
        in_flight: &mut VecDeque<InFlight>,
    ) -> Result<(), PipelineError> {
        let Some(transactions) = self.transactions.clone() else {
            let policy = self.runner.shared_runtime();
            let flight = self.delivery.dispatch(batch, results, &policy).await?;
            in_flight.push_back(flight);
            let keep = self.config.pipeline.max_in_flight_batches;
            return self.settle(in_flight, keep).await;
        };
        // A partition whose transaction is still committing cannot take records yet;
        // one rewound meanwhile drops this batch's records (a new epoch).
        self.finish_commits().await?;
        let read_at = batch.read_at;
        self.delivery
            .deliver_exactly_once(&transactions, batch, results, self.runner.runtime())
            .await?;
        self.metrics.batch_finished(read_at.elapsed());
        self.commit_round = Some(tokio::task::spawn_blocking(move || {
            transactions.commit_due(false)
        }));
        Ok(())
    }

    /// Exactly-once: commits every open transaction now (the source is quiet, Vault is
    /// away, the pipeline stops).
    async fn commit_transactions(&mut self) -> Result<(), PipelineError> {
        self.finish_commits().await?;
        if let Some(transactions) = self.transactions.clone() {
            self.commit_round = Some(tokio::task::spawn_blocking(move || {
                transactions.commit_due(true)
            }));
        }
        self.finish_commits().await
    }

    /// Waits for the round of commits in progress, if any; reads the partitions of
    /// aborted transactions again, and gives the source group a copy of the positions,
    /// where lag is monitored.
    async fn finish_commits(&mut self) -> Result<(), PipelineError> {
        let Some(round) = self.commit_round.take() else {
            return Ok(());
        };
        let rewinds = round.await.map_err(joined("committing transactions"))??;
        for rewind in rewinds {
            self.source
                .rewind(&rewind.partition, rewind.epoch, rewind.offset)?;
        }
        self.source.commit(CommitMode::Async);
        Ok(())
    }

    /// Completes finished batches and commits what they acknowledged.
    async fn settle(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
        keep: usize,
    ) -> Result<(), PipelineError> {
        let completed = self.delivery.settle(in_flight, keep).await;
        self.metrics.set_in_flight(in_flight.len());
        if completed? > 0 {
            self.source.commit(CommitMode::Async);
        }
        Ok(())
    }

    /// Runs the policy; while any record fails for a retryable reason (Vault sealed,
    /// rate limited, unreachable), waits and runs the whole batch again. Re-running is
    /// safe (nothing of the batch was produced yet) and keeps records in order. While
    /// it waits, the source is paused but still polled, so the runner stays in its
    /// consumer group however long Vault is away.
    async fn transform_until_settled(
        &mut self,
        batch: &Batch,
    ) -> Result<Vec<TransformResult>, PipelineError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let started = Instant::now();
            let results = transform_admitted(&mut self.runner, batch).await?;
            self.metrics.transformed(started.elapsed());
            self.metrics.heartbeat();
            let retryable = results.iter().find_map(|result| match result {
                Err(Failure::Retryable(reason)) => Some(reason.clone()),
                _ => None,
            });
            let Some(reason) = retryable else {
                self.source.resume();
                return Ok(results);
            };
            self.metrics.batch_retried();
            // Nothing stays open while Vault is away (transactions time out).
            self.commit_transactions().await?;
            tracing::warn!(
                records = batch.records.len(),
                "batch not transformed ({reason}); retrying in {backoff:?}"
            );
            self.source.wait_paused(backoff).await;
            backoff = (backoff * 2).min(self.config.errors.max_retry_backoff);
        }
    }

    fn spawn_progress_reporter(&self) -> JoinHandle<()> {
        let metrics = self.metrics.clone();
        let vault = self.vault.clone();
        let interval = self.config.pipeline.progress_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            let mut last = metrics.snapshot();
            loop {
                ticker.tick().await;
                let now = metrics.snapshot();
                log_progress("progress", &now, Some(&last), vault.requests_sent());
                last = now;
            }
        })
    }
}

/// Runs the policy on the records of `batch` it may be given; the refused ones fail as
/// invalid input in their place, so there is still one result per record, in order.
async fn transform_admitted(
    runner: &mut PolicyRunner,
    batch: &Batch,
) -> Result<Vec<TransformResult>, PolicyError> {
    if batch.refused.is_empty() {
        return runner.transform(&batch.records).await;
    }
    let mut refused = batch.refused.iter().peekable();
    let admitted: Vec<SourceRecord> = batch
        .records
        .iter()
        .enumerate()
        .filter(|(index, _)| {
            batch
                .refused
                .binary_search_by_key(index, |(i, _)| *i)
                .is_err()
        })
        .map(|(_, record)| record.clone())
        .collect();
    let mut transformed = runner.transform(&admitted).await?.into_iter();
    let mut results = Vec::with_capacity(batch.records.len());
    for index in 0..batch.records.len() {
        match refused.next_if(|(i, _)| *i == index) {
            Some((_, reason)) => results.push(Err(Failure::InvalidInput(reason.clone()))),
            None => results.push(transformed.next().ok_or_else(|| PolicyError::Runtime {
                name: runner.runtime().name().to_string(),
                detail: "fewer results than records".into(),
            })?),
        }
    }
    Ok(results)
}

fn log_progress(what: &str, now: &Snapshot, last: Option<&Snapshot>, vault_requests: u64) {
    let rate = last.map_or_else(
        || now.records_in as f64 / now.elapsed.as_secs_f64().max(1e-9),
        |last| now.rate_since(last),
    );
    tracing::info!(
        records_in = now.records_in,
        records_out = now.records_out,
        dead_lettered = now.dead_lettered,
        batch_retries = now.batch_retries,
        transactions_aborted = now.transactions_aborted,
        vault_requests,
        lag = now
            .lag
            .map_or_else(|| "unknown".to_string(), |lag| lag.to_string()),
        records_per_second = format!("{rate:.0}"),
        "{what}"
    );
}

/// With `[forget]`: the forgotten data subjects' keys, read to the end of the forget
/// topic and then followed while the returned watcher lives (docs/forgetting.md).
async fn watch_forgotten(
    config: &PipelineConfig,
    keys: Option<Arc<crate::forget::ForgottenKeys>>,
) -> Result<Option<crate::forget::Watcher>, PipelineError> {
    let (Some(settings), Some(keys)) = (&config.forget, keys) else {
        return Ok(None);
    };
    Ok(Some(
        crate::forget::watch(&config.source, settings, keys).await?,
    ))
}
