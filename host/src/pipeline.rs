//! Source topic → policy → sink topic, at least once.
//!
//! One loop: gather a batch from the consumer, run the policy on the whole batch, hand
//! every output to the idempotent sink producer (or a failed record to the dead-letter
//! topic), and keep the batch "in flight" until every one of its deliveries is
//! acknowledged. Batches complete strictly in order, and a batch's offsets are committed
//! only once it and every batch before it are acknowledged, so a crash at any point
//! re-delivers (never loses) records. While batch N is being acknowledged, batch N+1 is
//! already in the policy: up to `pipeline.max_in_flight_batches` overlap.
//!
//! Fail closed: a record the policy could not transform never goes to the sink. It goes
//! to the dead-letter topic, which lives on the source cluster unless configured
//! otherwise (and then carries no record contents), or the pipeline stops.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::config::{Assignment, DeadLetterCluster, OnFailure, PipelineConfig};
use crate::kafka::{self, SourceContext};
use crate::metrics::{Metrics, Snapshot};
use crate::policy::{Failure, Header, PolicyError, PolicyRunner, SourceRecord, TransformResult};
use crate::vault::VaultClient;

/// Headers on dead-lettered records.
pub mod dead_letter_headers {
    pub const ERROR: &str = "kafka-transit.error";
    pub const ERROR_KIND: &str = "kafka-transit.error.kind";
    pub const SOURCE_TOPIC: &str = "kafka-transit.source.topic";
    pub const SOURCE_PARTITION: &str = "kafka-transit.source.partition";
    pub const SOURCE_OFFSET: &str = "kafka-transit.source.offset";
    pub const POLICY: &str = "kafka-transit.policy";
    pub const POLICY_DIGEST: &str = "kafka-transit.policy.digest";
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        source: KafkaError,
    },
    #[error("source.topics: {0}")]
    SourceTopic(String),
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
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> PipelineError {
    move |source| PipelineError::Kafka { context, source }
}

/// Where a delivery went, to say which cluster failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Sink,
    DeadLetter,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Sink => "the sink",
            Target::DeadLetter => "the dead-letter topic",
        }
    }
}

type DeliveryOutcome = Result<(), KafkaError>;

/// A batch whose records were handed to producers and await acknowledgement.
struct InFlight {
    records: Vec<SourceRecord>,
    /// The next offset to commit per source partition once this batch is done.
    offsets: HashMap<(String, i32), i64>,
    /// Resolves when every delivery of the batch has an answer.
    deliveries: JoinHandle<Vec<(usize, Target, u64, DeliveryOutcome)>>,
}

struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    cluster: DeadLetterCluster,
}

pub struct Pipeline {
    config: PipelineConfig,
    runner: PolicyRunner,
    consumer: StreamConsumer<SourceContext>,
    sink: FutureProducer,
    dead_letters: Option<DeadLetters>,
    metrics: Arc<Metrics>,
    vault: VaultClient,
    /// Offsets acknowledged so far, committed asynchronously as batches complete and
    /// synchronously on shutdown.
    acknowledged: HashMap<(String, i32), i64>,
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
        let consumer = kafka::consumer(&config.source, &config.pipeline, metrics.clone())
            .map_err(kafka("creating the source consumer"))?;
        let sink = kafka::sink_producer(&config.sink, &config.pipeline)
            .map_err(kafka("creating the sink producer"))?;
        let dead_letters = match (&config.errors.on_failure, &config.errors.dead_letter_topic) {
            (OnFailure::DeadLetter, Some(topic)) => {
                let cluster = config.errors.dead_letter_cluster;
                let producer = match cluster {
                    DeadLetterCluster::Source => kafka::producer(
                        &config.source.bootstrap_servers,
                        &kafka::connection_properties(&config.source.properties),
                        &config.pipeline,
                    ),
                    DeadLetterCluster::Sink => kafka::sink_producer(&config.sink, &config.pipeline),
                }
                .map_err(kafka("creating the dead-letter producer"))?;
                Some(DeadLetters {
                    producer,
                    topic: topic.clone(),
                    cluster,
                })
            }
            _ => None,
        };
        Ok(Pipeline {
            config,
            runner,
            consumer,
            sink,
            dead_letters,
            metrics,
            vault,
            acknowledged: HashMap::new(),
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `stop` resolves (then finishes in-flight work, commits and returns
    /// the final counters) or until an error that must stop the pipeline.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<Snapshot, PipelineError> {
        let topics: Vec<&str> = self
            .config
            .source
            .topics
            .iter()
            .map(String::as_str)
            .collect();
        match self.config.source.assignment {
            Assignment::Group => self
                .consumer
                .subscribe(&topics)
                .map_err(kafka("subscribing to source.topics"))?,
            Assignment::Static => self.assign_every_partition()?,
        }
        tracing::info!(
            policy = self.runner.runtime().name(),
            digest = self.runner.runtime().digest(),
            topics = ?self.config.source.topics,
            sink = self.config.sink.topic,
            "pipeline started"
        );
        let reporter = self.spawn_progress_reporter();
        let result = self.run_loop(stop).await;
        reporter.abort();
        let snapshot = self.metrics.snapshot();
        log_progress("final", &snapshot, None, self.vault.requests_sent());
        result.map(|()| snapshot)
    }

    /// Static assignment: every partition of the source topics, from the offsets
    /// committed under the group id (or where `auto.offset.reset` says, for partitions
    /// without a commit). Runs once at start-up; the calls block briefly.
    fn assign_every_partition(&self) -> Result<(), PipelineError> {
        const TIMEOUT: Duration = Duration::from_secs(30);
        let mut partitions = TopicPartitionList::new();
        for topic in &self.config.source.topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), TIMEOUT)
                .map_err(kafka("reading the source topics' metadata"))?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if count == 0 {
                return Err(PipelineError::SourceTopic(format!(
                    "topic \"{topic}\" does not exist on the source cluster"
                )));
            }
            for partition in 0..count as i32 {
                partitions.add_partition(topic, partition);
            }
        }
        let reset = match self
            .config
            .source
            .properties
            .0
            .get("auto.offset.reset")
            .map(String::as_str)
        {
            Some("latest" | "largest" | "end") => Offset::End,
            _ => Offset::Beginning,
        };
        let committed = self
            .consumer
            .committed_offsets(partitions, TIMEOUT)
            .map_err(kafka("reading the committed offsets of source.group_id"))?;
        let mut start = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => reset,
            };
            start
                .add_partition_offset(element.topic(), element.partition(), offset)
                .map_err(kafka("assigning source partitions"))?;
        }
        tracing::info!(
            partitions = start.count(),
            "source partitions assigned (static)"
        );
        self.consumer
            .assign(&start)
            .map_err(kafka("assigning source partitions"))
    }

    async fn run_loop(&mut self, stop: impl Future<Output = ()>) -> Result<(), PipelineError> {
        let mut stop = std::pin::pin!(stop);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let outcome = loop {
            let batch = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                batch = self.next_batch() => batch,
            };
            if batch.is_empty() {
                if let Err(error) = self.settle(&mut in_flight, 0).await {
                    break Err(error);
                }
                continue;
            }
            let results = tokio::select! {
                biased;
                () = &mut stop => break Ok(()),
                results = self.transform_until_settled(&batch) => results,
            };
            let flight = match results {
                Ok(results) => self.dispatch(batch, results).await,
                Err(error) => Err(error),
            };
            match flight {
                Ok(flight) => in_flight.push_back(flight),
                Err(error) => break Err(error),
            }
            let keep = self.config.pipeline.max_in_flight_batches;
            if let Err(error) = self.settle(&mut in_flight, keep).await {
                break Err(error);
            }
        };
        // Whatever happened, what was already handed to the producers is finished and
        // committed, so a restart repeats as little as possible.
        let drained = self.settle(&mut in_flight, 0).await;
        self.commit(CommitMode::Sync);
        outcome.and(drained)
    }

    /// Up to `pipeline.batch_size` records or `pipeline.max_batch_bytes` bytes, waiting
    /// at most `pipeline.batch_timeout`.
    async fn next_batch(&mut self) -> Vec<SourceRecord> {
        let tuning = &self.config.pipeline;
        let mut batch = Vec::with_capacity(tuning.batch_size);
        let mut bytes = 0u64;
        let deadline = tokio::time::Instant::now() + tuning.batch_timeout;
        while batch.len() < tuning.batch_size && bytes < tuning.max_batch_bytes as u64 {
            let received = tokio::time::timeout_at(deadline, self.consumer.recv()).await;
            match received {
                Err(_elapsed) => break,
                Ok(Ok(message)) => {
                    let record = kafka::source_record(&message);
                    bytes += kafka::record_bytes(record.key.as_deref(), record.value.as_deref());
                    batch.push(record);
                }
                Ok(Err(error)) => {
                    tracing::warn!("consumer: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
        if !batch.is_empty() {
            self.metrics.consumed(batch.len() as u64, bytes);
        }
        batch
    }

    /// Runs the policy; while any record fails for a retryable reason (Vault sealed,
    /// rate limited, unreachable), waits and runs the whole batch again. Re-running is
    /// safe (nothing of the batch was produced yet) and keeps records in order.
    async fn transform_until_settled(
        &mut self,
        batch: &[SourceRecord],
    ) -> Result<Vec<TransformResult>, PipelineError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let results = self.runner.transform(batch).await?;
            let retryable = results.iter().find_map(|result| match result {
                Err(Failure::Retryable(reason)) => Some(reason.clone()),
                _ => None,
            });
            let Some(reason) = retryable else {
                return Ok(results);
            };
            self.metrics.batch_retried();
            tracing::warn!(
                records = batch.len(),
                "batch not transformed ({reason}); retrying in {backoff:?}"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.errors.max_retry_backoff);
        }
    }

    /// Hands the batch's outputs to the producers.
    async fn dispatch(
        &mut self,
        records: Vec<SourceRecord>,
        results: Vec<TransformResult>,
    ) -> Result<InFlight, PipelineError> {
        let mut offsets = HashMap::new();
        let mut deliveries: Vec<(usize, Target, u64, DeliveryFuture)> = Vec::new();
        for (index, (record, result)) in records.iter().zip(results).enumerate() {
            offsets.insert((record.topic.clone(), record.partition), record.offset + 1);
            let outputs = match result {
                Ok(outputs) => outputs,
                Err(failure) => {
                    let (kind, reason) = describe_failure(&failure);
                    let delivery = self.dead_letter(record, kind, &reason).await?;
                    deliveries.push((index, Target::DeadLetter, 0, delivery));
                    continue;
                }
            };
            for output in outputs {
                let topic = output.topic.as_deref().unwrap_or(&self.config.sink.topic);
                let mut message = FutureRecord::<[u8], [u8]>::to(topic)
                    .headers(kafka::owned_headers(&output.headers));
                if let Some(key) = &output.key {
                    message = message.key(key.as_slice());
                }
                if let Some(value) = &output.value {
                    message = message.payload(value.as_slice());
                }
                if self.config.sink.preserve_partitions {
                    message = message.partition(record.partition);
                }
                let bytes = kafka::record_bytes(output.key.as_deref(), output.value.as_deref());
                match enqueue(&self.sink, message).await {
                    Ok(delivery) => deliveries.push((index, Target::Sink, bytes, delivery)),
                    Err(error) if is_too_large(&error) => {
                        let delivery = self
                            .dead_letter(record, "sink-rejected", &too_large_reason(&error))
                            .await?;
                        deliveries.push((index, Target::DeadLetter, 0, delivery));
                    }
                    Err(error) => {
                        return Err(PipelineError::Delivery {
                            target: Target::Sink.name(),
                            topic: record.topic.clone(),
                            partition: record.partition,
                            offset: record.offset,
                            detail: error.to_string(),
                        })
                    }
                }
            }
        }
        let deliveries =
            tokio::spawn(async move {
                join_all(deliveries.into_iter().map(
                    |(index, target, bytes, delivery)| async move {
                        let outcome = match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((error, _message))) => Err(error),
                            Err(_canceled) => Err(KafkaError::Canceled),
                        };
                        (index, target, bytes, outcome)
                    },
                ))
                .await
            });
        Ok(InFlight {
            records,
            offsets,
            deliveries,
        })
    }

    /// Sends a failed record to the dead-letter topic, or stops if so configured.
    // `&mut self`: the pipeline holds a wasm store, which is Send but not Sync.
    async fn dead_letter(
        &mut self,
        record: &SourceRecord,
        kind: &'static str,
        reason: &str,
    ) -> Result<DeliveryFuture, PipelineError> {
        let Some(dead_letters) = &self.dead_letters else {
            return Err(PipelineError::StoppedOnFailure {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                kind,
                reason: reason.to_string(),
            });
        };
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            kind,
            dead_letter_topic = dead_letters.topic,
            "dead-lettering record: {reason}"
        );
        use dead_letter_headers as h;
        let runtime = self.runner.runtime();
        let mut headers = match dead_letters.cluster {
            DeadLetterCluster::Source => record.headers.clone(),
            // Never carry record contents to the sink cluster.
            DeadLetterCluster::Sink => Vec::new(),
        };
        for (key, value) in [
            (h::ERROR, reason.to_string()),
            (h::ERROR_KIND, kind.to_string()),
            (h::SOURCE_TOPIC, record.topic.clone()),
            (h::SOURCE_PARTITION, record.partition.to_string()),
            (h::SOURCE_OFFSET, record.offset.to_string()),
            (h::POLICY, runtime.name().to_string()),
            (h::POLICY_DIGEST, runtime.digest().to_string()),
        ] {
            headers.push(Header {
                key: key.to_string(),
                value: Some(value.into_bytes()),
            });
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(&dead_letters.topic)
            .headers(kafka::owned_headers(&headers));
        if dead_letters.cluster == DeadLetterCluster::Source {
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
        }
        enqueue(&dead_letters.producer, message)
            .await
            .map_err(|error| PipelineError::Delivery {
                target: Target::DeadLetter.name(),
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                detail: error.to_string(),
            })
    }

    /// Completes in-flight batches, oldest first, until at most `keep` remain (waiting
    /// as needed) and no finished batch is left at the front. `keep = 0` drains all.
    async fn settle(
        &mut self,
        in_flight: &mut VecDeque<InFlight>,
        keep: usize,
    ) -> Result<(), PipelineError> {
        while let Some(front) = in_flight.front() {
            if in_flight.len() <= keep && !front.deliveries.is_finished() {
                break;
            }
            let flight = in_flight.pop_front().expect("front exists");
            self.complete(flight).await?;
        }
        Ok(())
    }

    async fn complete(&mut self, flight: InFlight) -> Result<(), PipelineError> {
        // Never commit a batch whose acknowledgements were not all seen.
        let outcomes = flight
            .deliveries
            .await
            .map_err(|error| PipelineError::Delivery {
                target: Target::Sink.name(),
                topic: flight.records[0].topic.clone(),
                partition: flight.records[0].partition,
                offset: flight.records[0].offset,
                detail: format!("waiting for acknowledgements failed: {error}"),
            })?;
        for (index, target, bytes, outcome) in outcomes {
            let record = &flight.records[index];
            match (target, outcome) {
                (Target::Sink, Ok(())) => self.metrics.produced(bytes),
                (Target::DeadLetter, Ok(())) => self.metrics.dead_lettered(),
                // The broker refused the size: that is this record's failure, not the
                // pipeline's. Dead-letter it (waiting for that) or stop.
                (Target::Sink, Err(error)) if is_too_large(&error) => {
                    let delivery = self
                        .dead_letter(record, "sink-rejected", &too_large_reason(&error))
                        .await?;
                    match delivery.await {
                        Ok(Ok(_)) => self.metrics.dead_lettered(),
                        Ok(Err((error, _))) => {
                            return Err(delivery_error(Target::DeadLetter, record, error))
                        }
                        Err(_) => {
                            return Err(delivery_error(
                                Target::DeadLetter,
                                record,
                                KafkaError::Canceled,
                            ))
                        }
                    }
                }
                (target, Err(error)) => return Err(delivery_error(target, record, error)),
            }
        }
        for (partition, next) in flight.offsets {
            self.acknowledged.insert(partition, next);
        }
        self.commit(CommitMode::Async);
        self.metrics.committed();
        Ok(())
    }

    fn commit(&self, mode: CommitMode) {
        if self.acknowledged.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &self.acknowledged {
            if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::warn!("cannot commit {topic}/{partition}: {error}");
            }
        }
        // A failed commit loses nothing: the records are re-delivered after a restart.
        if let Err(error) = self.consumer.commit(&list, mode) {
            tracing::warn!("committing source offsets failed (records may be repeated after a restart): {error}");
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
        vault_requests,
        lag = now
            .lag
            .map_or_else(|| "unknown".to_string(), |lag| lag.to_string()),
        records_per_second = format!("{rate:.0}"),
        "{what}"
    );
}

fn describe_failure(failure: &Failure) -> (&'static str, String) {
    match failure {
        Failure::InvalidInput(reason) => ("invalid-input", reason.clone()),
        Failure::PolicyError(reason) => ("policy-error", reason.clone()),
        Failure::Retryable(reason) => ("retryable", reason.clone()),
    }
}

fn is_too_large(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    )
}

fn too_large_reason(error: &KafkaError) -> String {
    format!(
        "record too large for the sink ({error}): raise sink.properties.\"message.max.bytes\" \
         and the sink broker's message.max.bytes (or the topic's max.message.bytes), \
         or pipeline.max_record_bytes"
    )
}

fn delivery_error(target: Target, record: &SourceRecord, error: KafkaError) -> PipelineError {
    PipelineError::Delivery {
        target: target.name(),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        detail: error.to_string(),
    }
}

/// Hands a record to librdkafka, waiting while its local queue is full.
async fn enqueue(
    producer: &FutureProducer,
    mut message: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(message) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                message = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}
