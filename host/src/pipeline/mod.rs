//! Source topic → policy → sink topic, at least once or exactly once.
//!
//! One loop, data flowing one way: gather a batch from the consumer ([`source`]), run
//! the policy on the whole batch, hand every output (or a failed record's dead letter)
//! to the sink ([`sink`]) in the [`delivery`] mode chosen once at start-up, which decides
//! when the source position moves past the batch. Rebalances go through [`ownership`]: a
//! runner finishes and commits the in-flight work of partitions it loses before it lets
//! them go, and never commits for a partition it no longer owns.
//!
//! Fail closed: a record the policy could not transform never goes to the sink. It goes
//! to the dead-letter topic, which lives on the source cluster unless configured
//! otherwise (and then carries no record contents), or the pipeline stops.

mod delivery;
mod error;
mod ownership;
mod sink;
mod source;
mod stopping;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use tokio::task::JoinHandle;

use crate::config::PipelineConfig;
use crate::metrics::{Metrics, Snapshot};
use crate::policy::swap::PolicyUpdates;
use crate::policy::{Failure, PolicyError, PolicyRunner, SourceRecord, TransformResult};
use crate::vault::VaultClient;

pub use error::PipelineError;
pub use sink::dead_letter_headers;

use delivery::Delivery;
use ownership::Ownership;
use sink::Sink;
use source::{Batch, Source};
use stopping::Stopping;

pub struct Pipeline {
    config: PipelineConfig,
    runner: PolicyRunner,
    source: Source,
    delivery: Delivery,
    metrics: Arc<Metrics>,
    vault: VaultClient,
    /// Policies loaded while running (hot swap); taken between batches only.
    policy_updates: Option<PolicyUpdates>,
    stopping: Stopping,
}

impl Pipeline {
    /// Connects the Kafka clients (lazily: librdkafka connects on first use) around a
    /// started policy. Needs a tokio runtime.
    pub fn new(
        config: PipelineConfig,
        runner: PolicyRunner,
        vault: VaultClient,
    ) -> Result<Self, PipelineError> {
        let metrics = Arc::new(Metrics::default());
        let ownership = Arc::new(Ownership::default());
        let stopping = Stopping::default();
        let sink = Sink::new(&config, metrics.clone(), stopping.clone())?;
        let delivery = Delivery::new(
            &config,
            sink,
            ownership.clone(),
            metrics.clone(),
            vault.clone(),
        )?;
        let source = Source::new(
            &config.source,
            &config.pipeline,
            ownership,
            delivery.handover(),
            metrics.clone(),
        )?;
        Ok(Pipeline {
            config,
            runner,
            source,
            delivery,
            metrics,
            vault,
            policy_updates: None,
            stopping,
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
            one_cluster = self.config.one_cluster(),
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
        let outcome = loop {
            self.metrics.heartbeat();
            let batch = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                batch = self.source.next_batch(&self.config.pipeline) => batch,
            };
            if let Some(failure) = self.delivery.take_failure() {
                break Err(failure);
            }
            // Between batches, so each batch sees one policy, retries included.
            if let Some(updates) = &self.policy_updates {
                updates.apply(&mut self.runner);
            }
            if batch.records.is_empty() {
                // Quiet source: finish what is open rather than wait for more.
                if let Err(error) = self.delivery.flush(&mut self.source).await {
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
            let policy = self.runner.shared_runtime();
            let delivered = {
                let deliver = self
                    .delivery
                    .deliver(batch, results, &policy, &mut self.source);
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
        // than pipeline.shutdown_timeout, past which it is given up.
        let timeout = self.config.pipeline.shutdown_timeout;
        let finished = tokio::time::timeout(
            timeout,
            self.delivery.finish(&mut self.source, outcome.is_err()),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(PipelineError::ShutdownTimedOut {
                in_flight: self.delivery.abandon(),
                timeout,
            })
        });
        self.source.commit(CommitMode::Sync);
        self.source.leave_group().await;
        outcome.and(finished)
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
            self.delivery.flush(&mut self.source).await?;
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
