//! Kafka clients (librdkafka through rdkafka): the settings kafka-transit needs for
//! at-least-once delivery ([`mod@self`]), delivery acknowledgements counted per batch
//! ([`acks`]), the consumer group's offsets, rebalances and close ([`group`]), and
//! conversions between Kafka messages and policy records ([`records`]).
//!
//! User properties from `[source.properties]` / `[sink.properties]` are applied last,
//! so they win over these defaults (except the commit settings, which `config` refuses).

mod acks;
mod group;
mod records;

pub use acks::{AckingProducer, Acknowledging, Acks, Ticket};
pub use group::{answer_rebalance, close_within, commit_within, committed_offsets, leave_group};
pub use records::{owned_headers, record_bytes, source_record, source_record_bytes, Consumed};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::ClientConfig;

use crate::config::{Properties, SinkConfig, SourceConfig, TuningConfig};

/// Room for record headers and protocol framing on top of the largest value.
const FRAMING_ALLOWANCE: usize = 64 * 1024;

/// The settings of `properties` that say how to reach and authenticate to a cluster
/// (security, SASL, SSL, sockets, client id): what a producer to the source cluster
/// (for dead letters) shares with the consumer, without its consumer-only properties.
pub fn connection_properties(properties: &Properties) -> Properties {
    const CONNECTION: &[&str] = &[
        "security.",
        "sasl.",
        "ssl.",
        "ssl_",
        "enable.ssl",
        "socket.",
        "client.",
        "broker.",
        "metadata.",
        "reconnect.",
        "connections.",
        "api.version",
        "allow.auto.create.topics",
    ];
    Properties(
        properties
            .0
            .iter()
            .filter(|(name, _)| CONNECTION.iter().any(|prefix| name.starts_with(prefix)))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

fn apply(config: &mut ClientConfig, properties: &Properties) {
    for (name, value) in &properties.0 {
        config.set(name, value);
    }
}

/// Sizes that let records of `max_record_bytes` through, grown by `growth` (a policy
/// may enlarge values: Vault's base64 ciphertext is about 4/3 of the plaintext).
fn message_limit(tuning: &TuningConfig, growth: f64) -> usize {
    (tuning.max_record_bytes as f64 * growth) as usize + FRAMING_ALLOWANCE
}

/// How often a pattern subscription looks for new matching topics, unless the source's
/// own `topic.metadata.refresh.interval.ms` says otherwise.
pub const PATTERN_REFRESH_MS: &str = "10000";

/// The source consumer; `context` sees its rebalances and statistics.
pub fn consumer<C: ConsumerContext + 'static>(
    source: &SourceConfig,
    tuning: &TuningConfig,
    context: C,
) -> rdkafka::error::KafkaResult<StreamConsumer<C>> {
    let fetch_limit = message_limit(tuning, 1.5).max(50 * 1024 * 1024);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.bootstrap_servers)
        .set("group.id", &source.group_id)
        .set("client.id", "kafka-transit")
        // Offsets are committed by the pipeline, only after the sink acknowledged.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts from the beginning: protect what is already there.
        .set("auto.offset.reset", "earliest")
        // Runners of one group hand over only the partitions that move, so the others
        // keep working through a rebalance. Every member of a group must use the same
        // strategy: set it explicitly when a group still has older runners.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("fetch.max.bytes", fetch_limit.to_string())
        .set(
            "max.partition.fetch.bytes",
            message_limit(tuning, 1.5).to_string(),
        )
        .set(
            "receive.message.max.bytes",
            (fetch_limit + FRAMING_ALLOWANCE).to_string(),
        )
        .set(
            "statistics.interval.ms",
            tuning
                .progress_interval
                .as_millis()
                .clamp(1000, 60_000)
                .to_string(),
        );
    if source.topics.iter().any(|topic| topic.starts_with('^')) {
        // librdkafka matches patterns against the metadata it refreshes, every 5 minutes
        // by default: a topic created now would wait that long to be consumed.
        config.set("topic.metadata.refresh.interval.ms", PATTERN_REFRESH_MS);
    }
    apply(&mut config, &source.properties);
    config.create_with_context(context)
}

/// Whether the source consumer rebalances cooperatively (incrementally): the strategy
/// kafka-transit sets, `cooperative-sticky`, unless `[source.properties]` names another.
pub fn cooperative_assignment(properties: &Properties) -> bool {
    properties
        .0
        .get("partition.assignment.strategy")
        .is_none_or(|strategy| strategy.trim() == "cooperative-sticky")
}

/// The sink producer: idempotent, so retries neither duplicate nor reorder records
/// within a partition.
pub fn producer(
    bootstrap_servers: &str,
    properties: &Properties,
    tuning: &TuningConfig,
) -> rdkafka::error::KafkaResult<AckingProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "kafka-transit")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The pipeline hands records over a batch at a time: waiting longer for more
        // (librdkafka's default is 5 ms) would add to every record's latency at low
        // rates, while under load requests fill anyway behind those in flight.
        .set("linger.ms", "1")
        .set("message.max.bytes", message_limit(tuning, 1.5).to_string());
    apply(&mut config, properties);
    config.create_with_context(Acknowledging)
}

pub fn sink_producer(
    sink: &SinkConfig,
    tuning: &TuningConfig,
) -> rdkafka::error::KafkaResult<AckingProducer> {
    producer(&sink.bootstrap_servers, &sink.properties, tuning)
}

/// A transactional sink producer (exactly-once): `init_transactions` on it fences every
/// earlier producer with the same `transactional_id`.
pub fn transactional_producer(
    sink: &SinkConfig,
    tuning: &TuningConfig,
    transactional_id: &str,
) -> rdkafka::error::KafkaResult<AckingProducer> {
    let mut properties = sink.properties.clone();
    properties
        .0
        .insert("transactional.id".into(), transactional_id.into());
    // A transaction that must abort waits for its records still in flight, which a
    // refused record's successors retry until this timeout (librdkafka caps it at
    // transaction.timeout.ms, 60 s by default): keep the wait short.
    properties
        .0
        .entry("message.timeout.ms".into())
        .or_insert_with(|| "30000".into());
    producer(&sink.bootstrap_servers, &properties, tuning)
}

/// A consumer of the sink cluster without a group, for reading the exactly-once
/// offsets topic: `read_committed` sees only what committed transactions wrote.
pub fn sink_reader(
    sink: &SinkConfig,
    isolation_level: &str,
) -> rdkafka::error::KafkaResult<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &sink.bootstrap_servers)
        .set("client.id", "kafka-transit")
        // librdkafka assigns partitions only with a group id; this one never joins or
        // commits.
        .set("group.id", "kafka-transit-offsets-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", isolation_level);
    apply(&mut config, &connection_properties(&sink.properties));
    config.create()
}

/// An admin client of the sink cluster (creating the exactly-once offsets topic).
pub fn sink_admin(
    sink: &SinkConfig,
) -> rdkafka::error::KafkaResult<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>>
{
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &sink.bootstrap_servers);
    apply(&mut config, &connection_properties(&sink.properties));
    config.create()
}

/// An admin client of a cluster that looks topics up without creating them (a metadata
/// request may otherwise create a topic on a broker with `auto.create.topics.enable`).
pub fn lookup_admin(
    bootstrap_servers: &str,
    properties: &Properties,
) -> rdkafka::error::KafkaResult<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>>
{
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    apply(&mut config, &connection_properties(properties));
    config.set("allow.auto.create.topics", "false");
    config.create()
}

/// A consumer of the pipeline's group that joins nothing: it reads the group's committed
/// offsets (`validate --connect`).
pub fn group_reader(
    source: &SourceConfig,
) -> rdkafka::error::KafkaResult<rdkafka::consumer::BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &source.bootstrap_servers)
        .set("group.id", &source.group_id)
        .set("allow.auto.create.topics", "false");
    apply(&mut config, &connection_properties(&source.properties));
    config.create()
}

/// What a cluster's metadata says of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    Partitions(usize),
    Missing,
    /// The cluster answered with another error for it (not authorised, say).
    Refused(String),
}

/// `topic` as `client`'s cluster sees it. Whether the lookup may create the topic is the
/// client's `allow.auto.create.topics` (see [`lookup_admin`]).
pub fn topic_state<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<TopicState> {
    use rdkafka::types::RDKafkaErrorCode;
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(match metadata.topics().iter().find(|t| t.name() == topic) {
        None => TopicState::Missing,
        Some(t) => match t.error().map(RDKafkaErrorCode::from) {
            None => TopicState::Partitions(t.partitions().len()),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => TopicState::Missing,
            Some(code) => TopicState::Refused(code.to_string()),
        },
    })
}

/// How many partitions `topic` has (0 if it does not exist or cannot be described), from
/// `client`'s metadata.
pub fn partition_count<C: ConsumerContext>(
    client: &impl rdkafka::consumer::Consumer<C>,
    topic: &str,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<usize> {
    Ok(match topic_state(client.client(), topic, timeout)? {
        TopicState::Partitions(count) => count,
        TopicState::Missing | TopicState::Refused(_) => 0,
    })
}

/// Reads a topic from the beginning the way an operator would (no consumer group, all
/// partitions), until `expected` records arrived or `timeout` passed. Blocking: call it
/// from `spawn_blocking` in async code.
pub fn read_topic(
    bootstrap_servers: &str,
    topic: &str,
    expected: usize,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", "kafka-transit-inspector")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "104857600")
        .set("receive.message.max.bytes", "105000000")
        .create()?;
    let deadline = std::time::Instant::now() + timeout;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut messages = Vec::with_capacity(expected.min(100_000));
    while messages.len() < expected {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.poll(left.min(std::time::Duration::from_millis(200))) {
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(error)) => tracing::debug!("reading {topic}: {error}"),
            None => {}
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_rebalance_protocol_is_known_from_the_configuration() {
        let with = |strategy: Option<&str>| {
            Properties(
                strategy
                    .map(|s| ("partition.assignment.strategy".to_string(), s.to_string()))
                    .into_iter()
                    .collect(),
            )
        };
        assert!(cooperative_assignment(&with(None)));
        assert!(cooperative_assignment(&with(Some("cooperative-sticky"))));
        assert!(!cooperative_assignment(&with(Some("range,roundrobin"))));
        assert!(!cooperative_assignment(&with(Some("range"))));
    }

    #[test]
    fn connection_properties_keep_security_and_drop_consumer_settings() {
        let properties = Properties(
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("ssl.ca.location", "/etc/ca.pem"),
                ("auto.offset.reset", "earliest"),
                ("fetch.min.bytes", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let kept: Vec<String> = connection_properties(&properties).0.into_keys().collect();
        assert_eq!(
            kept,
            ["sasl.mechanism", "security.protocol", "ssl.ca.location"]
        );
    }
}
