//! The offsets topic: where each transaction records its partition's next source
//! offset, and where a new owner reads it back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message, Offset, TopicPartitionList};

use std::sync::Arc;

use crate::config::SinkConfig;
use crate::kafka;
use crate::metrics::Metrics;
use crate::pipeline::error::PipelineError;
use crate::pipeline::ownership::Partition;

use super::authentication::PositionAuthenticator;
use super::TRANSACTION_TIMEOUT;

/// Longest wait for the offsets topic to be readable to its end: an open transaction
/// of a runner that died holds it until a new owner fences that runner, or until the
/// broker aborts it after `transaction.timeout.ms` (librdkafka's default: 60 s).
const POSITIONS_TIMEOUT: Duration = Duration::from_secs(150);

/// The offsets topic of the sink cluster (`pipeline.offsets_topic`).
pub(super) struct OffsetsTopic {
    pub(super) topic: String,
    /// Signs the positions written to it and checks those read back.
    pub(super) authenticator: PositionAuthenticator,
    pub(super) sink: SinkConfig,
    pub(super) group_id: String,
    pub(super) metrics: Arc<Metrics>,
}

impl OffsetsTopic {
    /// The offsets-topic key of `partition`: `["<group>","<topic>",<partition>]`.
    fn position_key(&self, (topic, partition): &Partition) -> String {
        serde_json::json!([self.group_id, topic, partition]).to_string()
    }

    /// The offsets-topic record saying `partition` continues at `next`: key
    /// `["<group>","<topic>",<partition>]`, value `{"offset":<next>,"hmac":"...",
    /// "data_key":"vault:v1:..."}` (JSON, readable with any Kafka tool; see
    /// [`authentication`](super::authentication)). Blocking (a Vault request once an
    /// hour for a new signing key).
    pub(super) fn position_record(
        &self,
        partition: &Partition,
        next: i64,
    ) -> Result<(String, String), PipelineError> {
        let signed = self.authenticator.sign(partition, next).map_err(|error| {
            self.topic_error(
                "signing a position",
                format!(
                    "{error}; exactly-once signs positions with data keys of \
                     pipeline.offsets_key (\"{}\"): create that transit key and allow \
                     datakey/plaintext and decrypt on it",
                    self.authenticator.key()
                ),
            )
        })?;
        Ok((
            self.position_key(partition),
            serde_json::to_string(&signed).expect("a position serializes"),
        ))
    }

    /// The last committed positions of `partitions` in the offsets topic (partitions
    /// without one are left out: they start where the source group says). Reads the
    /// topic as `read_committed` up to the end it had when called, so that every
    /// transaction open then (a fenced owner's, another runner's) has ended first.
    /// Creates the topic if it does not exist. Blocking.
    pub(super) fn read(
        &self,
        partitions: &[Partition],
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        let topic = self.topic.as_str();
        let failed = |context: &'static str| {
            move |error: KafkaError| self.topic_error(context, error.to_string())
        };
        let watermarks = kafka::sink_reader(&self.sink, "read_uncommitted")
            .map_err(failed("creating a reader"))?;
        let count = kafka::partition_count(&watermarks, topic, TRANSACTION_TIMEOUT)
            .map_err(failed("reading its metadata"))? as i32;
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
            .map(|partition| (self.position_key(partition), partition))
            .collect();
        // The last record of each partition, authenticated below.
        let mut found: HashMap<Partition, Vec<u8>> = HashMap::new();
        if end.is_empty() {
            return Ok(HashMap::new());
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
                    found.insert(
                        partition.clone(),
                        message.payload().unwrap_or_default().to_vec(),
                    );
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
        self.authenticated(found)
    }

    /// The positions that pass authentication. One that fails is refused and reported:
    /// its partition starts from the source group's committed offset (the copy each
    /// commit leaves on the source cluster), which may repeat records but never skips
    /// any. Vault being unavailable is an error (the assignment is retried), not a
    /// refusal.
    fn authenticated(
        &self,
        found: HashMap<Partition, Vec<u8>>,
    ) -> Result<HashMap<Partition, i64>, PipelineError> {
        let found: Vec<(Partition, Vec<u8>)> = found.into_iter().collect();
        if found.is_empty() {
            return Ok(HashMap::new());
        }
        let verdicts = self.authenticator.verify(&found).map_err(|error| {
            self.topic_error(
                "authenticating its positions",
                format!(
                    "{error} (pipeline.offsets_key = \"{}\")",
                    self.authenticator.key()
                ),
            )
        })?;
        let mut positions = HashMap::new();
        for ((partition, _), verdict) in found.into_iter().zip(verdicts) {
            match verdict {
                Ok(offset) => {
                    positions.insert(partition, offset);
                }
                Err(refusal) => {
                    self.metrics.position_refused();
                    tracing::error!(
                        offsets_topic = self.topic,
                        topic = partition.0,
                        partition = partition.1,
                        "refusing the position of a source partition in the offsets topic: \
                         {refusal}; starting from the source group's committed offset \
                         instead (records may be repeated, none is skipped)"
                    );
                }
            }
        }
        Ok(positions)
    }

    fn create_offsets_topic(&self) -> Result<(), PipelineError> {
        let admin = kafka::sink_admin(&self.sink)
            .map_err(|error| self.topic_error("creating it", error.to_string()))?;
        // One partition, compacted: one small record per source partition survives.
        let topic = NewTopic::new(&self.topic, 1, TopicReplication::Fixed(-1))
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
        tracing::info!(topic = self.topic, "created the exactly-once offsets topic");
        Ok(())
    }

    fn topic_error(&self, context: &'static str, detail: String) -> PipelineError {
        PipelineError::OffsetsTopic {
            topic: self.topic.clone(),
            context,
            detail,
        }
    }
}
