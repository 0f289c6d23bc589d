//! What stops a pipeline, for every part of it: one enum, each variant saying what to
//! change.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::policy::PolicyError;

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
pub(crate) fn joined(
    context: &'static str,
) -> impl FnOnce(tokio::task::JoinError) -> PipelineError {
    move |error| match error.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(error) => PipelineError::Transaction {
            context,
            transactional_id: "*".into(),
            detail: error.to_string(),
        },
    }
}

pub(crate) fn kafka_error(context: &'static str) -> impl FnOnce(KafkaError) -> PipelineError {
    move |source| PipelineError::Kafka { context, source }
}
