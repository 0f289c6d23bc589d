//! Counters a running pipeline keeps, and the progress line `run` logs from them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Shared, lock-free counters. Readers get a [`Snapshot`].
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    bytes_out: AtomicU64,
    dead_lettered: AtomicU64,
    batches: AtomicU64,
    batch_retries: AtomicU64,
    committed_batches: AtomicU64,
    /// Source partitions taken away from this runner by consumer-group rebalances.
    partitions_revoked: AtomicU64,
    /// Exactly-once: partition transactions aborted (and their records read again).
    transactions_aborted: AtomicU64,
    /// Sum of the consumer lag over assigned partitions; -1 until librdkafka reports.
    lag: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            records_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_retries: AtomicU64::new(0),
            committed_batches: AtomicU64::new(0),
            partitions_revoked: AtomicU64::new(0),
            transactions_aborted: AtomicU64::new(0),
            lag: AtomicI64::new(-1),
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
    pub partitions_revoked: u64,
    pub transactions_aborted: u64,
    pub lag: Option<u64>,
}

impl Metrics {
    pub fn consumed(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Relaxed);
        self.bytes_in.fetch_add(bytes, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }
    pub fn produced(&self, bytes: u64) {
        self.records_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Relaxed);
    }
    pub fn batch_retried(&self) {
        self.batch_retries.fetch_add(1, Relaxed);
    }
    pub fn committed(&self) {
        self.committed_batches.fetch_add(1, Relaxed);
    }
    pub fn revoked(&self, partitions: u64) {
        self.partitions_revoked.fetch_add(partitions, Relaxed);
    }
    pub fn transaction_aborted(&self) {
        self.transactions_aborted.fetch_add(1, Relaxed);
    }
    pub fn set_lag(&self, lag: i64) {
        self.lag.store(lag, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let lag = self.lag.load(Relaxed);
        Snapshot {
            elapsed: self.started.elapsed(),
            records_in: self.records_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            records_out: self.records_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batch_retries: self.batch_retries.load(Relaxed),
            committed_batches: self.committed_batches.load(Relaxed),
            partitions_revoked: self.partitions_revoked.load(Relaxed),
            transactions_aborted: self.transactions_aborted.load(Relaxed),
            lag: u64::try_from(lag).ok(),
        }
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
        metrics.dead_lettered();
        let after = metrics.snapshot();
        assert_eq!(after.records_in, 10);
        assert_eq!(after.bytes_in, 1000);
        assert_eq!(after.records_out, 1);
        assert_eq!(after.dead_lettered, 1);
        assert_eq!(after.lag, None);
        metrics.set_lag(42);
        assert_eq!(metrics.snapshot().lag, Some(42));
        assert!(after.rate_since(&before) > 0.0);
    }
}
