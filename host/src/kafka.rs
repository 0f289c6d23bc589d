//! Kafka clients (librdkafka through rdkafka): the settings kafka-transit needs for
//! at-least-once delivery, and conversions between Kafka messages and policy records.
//!
//! User properties from `[source.properties]` / `[sink.properties]` are applied last,
//! so they win over these defaults (except the commit settings, which `config` refuses).

use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};

use crate::config::{Properties, SinkConfig, SourceConfig, TuningConfig};
use crate::policy::{Header, SourceRecord};

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

/// The source consumer; `context` sees its rebalances and statistics.
/// How often a pattern subscription looks for new matching topics, unless the source's
/// own `topic.metadata.refresh.interval.ms` says otherwise.
pub const PATTERN_REFRESH_MS: &str = "10000";

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
) -> rdkafka::error::KafkaResult<FutureProducer> {
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
    config.create()
}

pub fn sink_producer(
    sink: &SinkConfig,
    tuning: &TuningConfig,
) -> rdkafka::error::KafkaResult<FutureProducer> {
    producer(&sink.bootstrap_servers, &sink.properties, tuning)
}

/// A transactional sink producer (exactly-once): `init_transactions` on it fences every
/// earlier producer with the same `transactional_id`.
pub fn transactional_producer(
    sink: &SinkConfig,
    tuning: &TuningConfig,
    transactional_id: &str,
) -> rdkafka::error::KafkaResult<FutureProducer> {
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

/// The group's committed offsets of `partitions`, stable: a cluster that has just
/// started (or is moving the group's coordinator) answers "not coordinator" or "loading"
/// for a while, and the offsets a still-open transaction sent (exactly once on one
/// cluster; a crashed runner's until the broker aborts it) are "unstable"; both are
/// asked again until `timeout`. A partition is never answered as uncommitted while a
/// transaction holds its offsets: librdkafka's own fetch at assignment can do that
/// (2.12: when the assignment changes while it waits on an open transaction, it starts
/// the partition at `auto.offset.reset`), which would repeat what was committed.
pub fn committed_offsets<C: ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    partitions: &rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<rdkafka::TopicPartitionList> {
    use rdkafka::error::RDKafkaErrorCode;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let answer = consumer.committed_offsets(partitions.clone(), left);
        let unstable = match &answer {
            Ok(list) => list
                .elements()
                .iter()
                .find_map(|element| element.error().err()),
            Err(error) => Some(error.clone()),
        };
        let retriable = unstable.as_ref().is_some_and(|error| {
            matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::NotCoordinator
                        | RDKafkaErrorCode::CoordinatorNotAvailable
                        | RDKafkaErrorCode::CoordinatorLoadInProgress
                        | RDKafkaErrorCode::UnstableOffsetCommit
                )
            )
        });
        match unstable {
            Some(error) if retriable && !left.is_zero() => {
                tracing::debug!("committed offsets not readable yet ({error}); retrying");
                std::thread::sleep(std::time::Duration::from_millis(200).min(left));
            }
            // A partition's own error (after the deadline, an open transaction's
            // offsets still unstable) is the answer's error: never read as "no offset".
            Some(error) if answer.is_ok() => return Err(error),
            _ => return answer,
        }
    }
}

/// Commits `offsets` for `consumer`'s group and waits for the coordinator's answer, at
/// most `timeout`. librdkafka's synchronous commit has no timeout of its own: a
/// coordinator that never answers would hold a rebalance (or a stop) for ever. Returns
/// why the commit failed or was not confirmed; either way the records are consumed
/// again by whoever owns the partitions next, so nothing is lost.
pub fn commit_within<C: ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    offsets: &rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use rdkafka::bindings as rd;
    let client = consumer.client().native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `client` is the consumer's live handle and `offsets` a valid list, which
    // librdkafka copies. The queue is ours: the commit's answer is delivered to it as an
    // event, which is destroyed once read; destroying the queue afterwards is safe even
    // if the answer has not come (librdkafka keeps its own reference until then).
    unsafe {
        let queue = rd::rd_kafka_queue_new(client);
        let err =
            rd::rd_kafka_commit_queue(client, offsets.ptr(), queue, None, std::ptr::null_mut());
        let result = if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string())
        } else {
            let event = rd::rd_kafka_queue_poll(queue, timeout_ms);
            if event.is_null() {
                Err(format!(
                    "the group coordinator did not confirm the commit within {timeout:?}"
                ))
            } else {
                let err = rd::rd_kafka_event_error(event);
                let result = if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(rdkafka::error::RDKafkaErrorCode::from(err).to_string())
                };
                rd::rd_kafka_event_destroy(event);
                result
            }
        };
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

/// A consumed record, and why the policy must not be given it, if it must not.
pub struct Consumed {
    pub record: SourceRecord,
    /// Set when the record cannot be represented faithfully to a policy (a header
    /// name that is not UTF-8): the record is refused as invalid input, and `record`
    /// holds a lossy copy for the dead letter.
    pub refused: Option<String>,
}

/// Copies a consumed message into the policy's record type.
///
/// Header names and values are bytes on the wire. rdkafka's `Headers` API panics on a
/// name that is not UTF-8, which any producer can write (`kcat -H $'\xff=x'`), so the
/// headers are read through librdkafka's raw header API instead.
pub fn source_record(message: &BorrowedMessage<'_>) -> Consumed {
    let (headers, refused) = raw_headers(message);
    Consumed {
        record: SourceRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        },
        refused,
    }
}

fn raw_headers(message: &BorrowedMessage<'_>) -> (Vec<Header>, Option<String>) {
    use rdkafka::bindings::{rd_kafka_message_headers, rd_kafka_resp_err_t};
    let mut headers = std::ptr::null_mut();
    // SAFETY: `message.ptr()` is a live message owned by the consumer for the lifetime
    // of `message`; librdkafka only writes the headers pointer, which points into the
    // message and lives as long as it.
    let err = unsafe { rd_kafka_message_headers(message.ptr(), &mut headers) };
    if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        // RD_KAFKA_RESP_ERR__NOENT: the message has no headers.
        return (Vec::new(), None);
    }
    // SAFETY: `headers` was just returned by librdkafka for this message.
    unsafe { read_headers(headers) }
}

/// Every header of `headers`, in order. A name that is not UTF-8 cannot cross the WIT
/// boundary (`string`): it is kept lossily (invalid bytes as U+FFFD) and reported.
///
/// # Safety
/// `headers` must be a valid librdkafka header list that outlives this call.
unsafe fn read_headers(
    headers: *const rdkafka::bindings::rd_kafka_headers_t,
) -> (Vec<Header>, Option<String>) {
    use rdkafka::bindings::{rd_kafka_header_cnt, rd_kafka_header_get_all, rd_kafka_resp_err_t};
    let count = rd_kafka_header_cnt(headers);
    let mut out = Vec::with_capacity(count);
    let mut refused = None;
    for index in 0..count {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        let err = rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size);
        if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        let name = std::ffi::CStr::from_ptr(name).to_bytes();
        let value = (!value.is_null())
            .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
        let key = match std::str::from_utf8(name) {
            Ok(key) => key.to_string(),
            Err(_) => {
                // The name is the producer's data: say where it is, not what it is.
                refused.get_or_insert_with(|| {
                    format!(
                        "header {} of {count} has a name that is not UTF-8; policies see \
                         header names as text, so the record cannot be protected as it is",
                        index + 1
                    )
                });
                String::from_utf8_lossy(name).into_owned()
            }
        };
        out.push(Header { key, value });
    }
    (out, refused)
}

/// Kafka headers for a produced record.
pub fn owned_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |owned, header| {
            owned.insert(rdkafka::message::Header {
                key: &header.key,
                value: header.value.as_deref(),
            })
        },
    )
}

/// Bytes a record's key and value occupy, for throughput figures.
pub fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64
}

/// Bytes a source record holds in memory, headers included: what batches are sized by
/// (`pipeline.max_batch_bytes`), so that records with huge headers cannot pile up.
pub fn source_record_bytes(record: &SourceRecord) -> u64 {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    record_bytes(record.key.as_deref(), record.value.as_deref()) + headers as u64
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

    /// A librdkafka header list built from raw bytes, as a producer may send it.
    struct RawHeaders(*mut rdkafka::bindings::rd_kafka_headers_t);

    impl RawHeaders {
        fn new(headers: &[(&[u8], Option<&[u8]>)]) -> RawHeaders {
            use rdkafka::bindings::{rd_kafka_header_add, rd_kafka_headers_new};
            // SAFETY: a fresh list, filled with pointers into `headers`, which librdkafka copies.
            unsafe {
                let list = rd_kafka_headers_new(headers.len());
                for (name, value) in headers {
                    let (value, size) = value.map_or((std::ptr::null(), 0), |v| {
                        (v.as_ptr().cast::<std::ffi::c_void>(), v.len() as isize)
                    });
                    rd_kafka_header_add(
                        list,
                        name.as_ptr().cast(),
                        name.len() as isize,
                        value,
                        size,
                    );
                }
                RawHeaders(list)
            }
        }
    }

    impl Drop for RawHeaders {
        fn drop(&mut self) {
            // SAFETY: made by `rd_kafka_headers_new`, destroyed once.
            unsafe { rdkafka::bindings::rd_kafka_headers_destroy(self.0) }
        }
    }

    #[test]
    fn header_names_that_are_not_utf8_are_reported_not_panicked_on() {
        let raw = RawHeaders::new(&[
            (b"trace", Some(b"abc")),
            (b"\xff\xfe", Some(b"x")),
            (b"empty", None),
        ]);
        // SAFETY: a valid list, alive for the call.
        let (headers, refused) = unsafe { read_headers(raw.0) };
        assert_eq!(headers.len(), 3, "every header is kept, in order");
        assert_eq!(headers[0].key, "trace");
        assert_eq!(headers[0].value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(headers[1].key, "\u{fffd}\u{fffd}");
        assert_eq!(headers[1].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(headers[2].value, None);
        let refused = refused.expect("the record is refused");
        assert!(
            refused.contains("header 2 of 3") && refused.contains("not UTF-8"),
            "{refused}"
        );

        let raw = RawHeaders::new(&[(b"tenant", Some(b"\xff"))]);
        // SAFETY: as above.
        let (headers, refused) = unsafe { read_headers(raw.0) };
        assert_eq!(refused, None, "values are bytes: anything goes");
        assert_eq!(headers[0].value.as_deref(), Some(&b"\xff"[..]));
    }

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
