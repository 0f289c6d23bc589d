//! What a running pipeline counts: the progress line `run` logs, and the pipeline's part
//! of the Prometheus exposition at `/metrics` ([`crate::admin`]).
//!
//! The instruments are `prometheus-client` atomics, and the progress line reads the very
//! same ones, so the log and the scrape always agree. Other components (the Vault
//! client, envelopes, the policy switch) own their instruments and register them beside
//! these.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Why records went to the dead-letter topic (`invalid-input`, `policy-error`,
/// `sink-rejected`): the `kafka-transit.error.kind` header's values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

/// Buckets from 0.5 ms to about 16 s: a batch's work spans that range, from an idle
/// passthrough to a batch that waited on a slow Vault.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Shared, lock-free counters. Readers get a [`Snapshot`].
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    records_in: Counter,
    bytes_in: Counter,
    records_out: Counter,
    bytes_out: Counter,
    dead_lettered: Family<ReasonLabels, Counter>,
    /// The sum over reasons, for the progress line.
    dead_lettered_total: AtomicU64,
    batches: Counter,
    batch_retries: Counter,
    committed_batches: Counter,
    batch_duration: Histogram,
    transform_duration: Histogram,
    in_flight: Gauge,
    partitions_assigned: Gauge,
    /// Source partitions taken away from this runner by consumer-group rebalances.
    partitions_revoked: Counter,
    transactions_committed: Counter,
    /// Exactly-once: partition transactions aborted (and their records read again).
    transactions_aborted: Counter,
    /// Exactly-once: positions in the offsets topic that failed authentication.
    positions_refused: Counter,
    lag: Family<PartitionLabels, Gauge>,
    /// The partitions `lag` has, to drop those librdkafka stops reporting.
    lag_partitions: Mutex<Vec<PartitionLabels>>,
    /// Sum of the consumer lag over assigned partitions; -1 until librdkafka reports.
    lag_total: AtomicI64,
    /// Milliseconds since `started` when the pipeline loop last went round.
    heartbeat_ms: AtomicU64,
}

/// The `kafka-transit.error.kind` values, each exposed from the start (at 0) so that
/// `rate()` and alerts see a series before the first dead letter.
const DEAD_LETTER_REASONS: [&str; 4] = [
    "invalid-input",
    "policy-error",
    "sink-rejected",
    "unroutable",
];

impl Default for Metrics {
    fn default() -> Self {
        let dead_lettered = Family::<ReasonLabels, Counter>::default();
        for reason in DEAD_LETTER_REASONS {
            let _ = dead_lettered.get_or_create(&ReasonLabels { reason });
        }
        Metrics {
            started: Instant::now(),
            records_in: Counter::default(),
            bytes_in: Counter::default(),
            records_out: Counter::default(),
            bytes_out: Counter::default(),
            dead_lettered,
            dead_lettered_total: AtomicU64::new(0),
            batches: Counter::default(),
            batch_retries: Counter::default(),
            committed_batches: Counter::default(),
            batch_duration: duration_histogram(),
            transform_duration: duration_histogram(),
            in_flight: Gauge::default(),
            partitions_assigned: Gauge::default(),
            partitions_revoked: Counter::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Counter::default(),
            positions_refused: Counter::default(),
            lag: Family::default(),
            lag_partitions: Mutex::default(),
            lag_total: AtomicI64::new(-1),
            heartbeat_ms: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    pub batch_retries: u64,
    pub committed_batches: u64,
    /// Batches handed to the producers and not yet fully acknowledged.
    pub batches_in_flight: u64,
    pub partitions_revoked: u64,
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    pub positions_refused: u64,
    pub lag: Option<u64>,
}

impl Metrics {
    pub fn consumed(&self, records: u64, bytes: u64) {
        self.records_in.inc_by(records);
        self.bytes_in.inc_by(bytes);
        self.batches.inc();
    }
    pub fn produced(&self, bytes: u64) {
        self.records_out.inc();
        self.bytes_out.inc_by(bytes);
    }
    /// A dead letter was acknowledged; `reason` is its `kafka-transit.error.kind`.
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&ReasonLabels { reason })
            .inc();
        self.dead_lettered_total.fetch_add(1, Relaxed);
    }
    pub fn batch_retried(&self) {
        self.batch_retries.inc();
    }
    pub fn committed(&self) {
        self.committed_batches.inc();
    }
    /// From a batch being read to its outputs acknowledged (at least once) or written
    /// into the partitions' transactions (exactly once).
    pub fn batch_finished(&self, took: Duration) {
        self.batch_duration.observe(took.as_secs_f64());
    }
    /// One run of the policy over a batch, its Vault calls included.
    pub fn transformed(&self, took: Duration) {
        self.transform_duration.observe(took.as_secs_f64());
    }
    pub fn set_in_flight(&self, batches: usize) {
        self.in_flight.set(batches as i64);
    }
    pub fn set_assigned(&self, partitions: usize) {
        self.partitions_assigned.set(partitions as i64);
    }
    pub fn revoked(&self, partitions: u64) {
        self.partitions_revoked.inc_by(partitions);
    }
    pub fn transaction_committed(&self) {
        self.transactions_committed.inc();
    }
    pub fn transaction_aborted(&self) {
        self.transactions_aborted.inc();
    }
    pub fn position_refused(&self) {
        self.positions_refused.inc();
    }

    /// librdkafka's view of the lag of each partition it fetches; a partition it stopped
    /// reporting (revoked) drops out.
    pub fn set_lag<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        let mut total = 0;
        let mut reported = Vec::new();
        for (topic, partition, lag) in partitions {
            let labels = PartitionLabels {
                topic: topic.to_string(),
                partition,
            };
            self.lag.get_or_create(&labels).set(lag);
            reported.push(labels);
            total += lag;
        }
        // Partitions no longer reported are gone from this runner.
        let mut previous = self.lag_partitions.lock().expect("lag lock");
        for gone in previous.iter().filter(|labels| !reported.contains(labels)) {
            self.lag.remove(gone);
        }
        // No partition with a known lag (none assigned, none fetched yet): unknown, not 0.
        let total = if reported.is_empty() { -1 } else { total };
        *previous = reported;
        self.lag_total.store(total, Relaxed);
    }

    /// The pipeline loop is going round (read by the liveness probe).
    pub fn heartbeat(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(now, Relaxed);
    }

    /// How long since the pipeline loop last went round.
    pub fn since_heartbeat(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub fn partitions_assigned(&self) -> usize {
        usize::try_from(self.partitions_assigned.get()).unwrap_or(0)
    }

    pub fn snapshot(&self) -> Snapshot {
        let lag = self.lag_total.load(Relaxed);
        Snapshot {
            elapsed: self.started.elapsed(),
            records_in: self.records_in.get(),
            bytes_in: self.bytes_in.get(),
            records_out: self.records_out.get(),
            bytes_out: self.bytes_out.get(),
            dead_lettered: self.dead_lettered_total.load(Relaxed),
            batches: self.batches.get(),
            batch_retries: self.batch_retries.get(),
            committed_batches: self.committed_batches.get(),
            batches_in_flight: u64::try_from(self.in_flight.get()).unwrap_or(0),
            partitions_revoked: self.partitions_revoked.get(),
            transactions_committed: self.transactions_committed.get(),
            transactions_aborted: self.transactions_aborted.get(),
            positions_refused: self.positions_refused.get(),
            lag: u64::try_from(lag).ok(),
        }
    }

    /// Adds the pipeline's instruments to a registry prefixed `kafka_transit`.
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            ("records_consumed", "Records read from the source topics", &self.records_in),
            ("records_produced", "Records the sink acknowledged (transformed outputs)", &self.records_out),
            ("batches", "Batches read from the source", &self.batches),
            ("batch_retries", "Times a batch waited (Vault sealed, unreachable or rate limiting) and was transformed again", &self.batch_retries),
            ("batches_committed", "Batches whose source offsets were committed (exactly once: partition transactions committed)", &self.committed_batches),
            ("partitions_revoked", "Source partitions taken away by consumer-group rebalances", &self.partitions_revoked),
            ("transactions_committed", "Exactly-once: partition transactions committed", &self.transactions_committed),
            ("transactions_aborted", "Exactly-once: partition transactions aborted (their records are read again)", &self.transactions_aborted),
            ("positions_refused", "Exactly-once: source positions in the offsets topic that failed authentication (the partition started from the source group's offset instead)", &self.positions_refused),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register_with_unit(
            "consumed",
            "Bytes (keys and values) read from the source topics",
            Unit::Bytes,
            self.bytes_in.clone(),
        );
        registry.register_with_unit(
            "produced",
            "Bytes (keys and values) the sink acknowledged",
            Unit::Bytes,
            self.bytes_out.clone(),
        );
        registry.register(
            "records_dead_lettered",
            "Records acknowledged by the dead-letter topic, by the reason they could not be protected",
            self.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "batch_duration",
            "From a batch being read to every output acknowledged by the sink (exactly once: written into its transactions)",
            Unit::Seconds,
            self.batch_duration.clone(),
        );
        registry.register_with_unit(
            "policy_transform_duration",
            "One run of the policy over a batch, its Vault calls included",
            Unit::Seconds,
            self.transform_duration.clone(),
        );
        registry.register(
            "batches_in_flight",
            "Batches handed to the sink and not yet acknowledged",
            self.in_flight.clone(),
        );
        registry.register(
            "partitions_assigned",
            "Source partitions this runner owns",
            self.partitions_assigned.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records between this runner's position and the end of each source partition (librdkafka statistics)",
            self.lag.clone(),
        );
    }
}

impl Snapshot {
    /// Records per second since the previous snapshot.
    pub fn rate_since(&self, earlier: &Snapshot) -> f64 {
        let seconds = self.elapsed.saturating_sub(earlier.elapsed).as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        (self.records_in - earlier.records_in) as f64 / seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let metrics = Metrics::default();
        let before = metrics.snapshot();
        metrics.consumed(10, 1000);
        metrics.produced(1300);
        metrics.dead_lettered("invalid-input");
        let after = metrics.snapshot();
        assert_eq!(after.records_in, 10);
        assert_eq!(after.bytes_in, 1000);
        assert_eq!(after.records_out, 1);
        assert_eq!(after.dead_lettered, 1);
        assert_eq!(after.lag, None);
        metrics.set_lag([("t", 0, 40), ("t", 1, 2)]);
        assert_eq!(metrics.snapshot().lag, Some(42));
        assert!(after.rate_since(&before) > 0.0);
    }

    #[test]
    fn exposition_has_conventional_names_and_drops_revoked_partitions() {
        let metrics = Metrics::default();
        metrics.consumed(3, 300);
        metrics.dead_lettered("policy-error");
        metrics.transformed(Duration::from_millis(3));
        metrics.set_lag([("orders", 0, 5), ("orders", 1, 7)]);
        metrics.set_lag([("orders", 1, 6)]);
        let mut registry = Registry::with_prefix("kafka_transit");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "kafka_transit_records_consumed_total 3",
            "kafka_transit_consumed_bytes_total 300",
            "kafka_transit_records_dead_lettered_total{reason=\"policy-error\"} 1",
            // Exposed before the first dead letter of its kind.
            "kafka_transit_records_dead_lettered_total{reason=\"sink-rejected\"} 0",
            "kafka_transit_policy_transform_duration_seconds_count 1",
            "kafka_transit_consumer_lag{topic=\"orders\",partition=\"1\"} 6",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("partition=\"0\""),
            "a revoked partition's lag stayed:\n{text}"
        );
    }
}
