//! The Vault client's instruments: requests by operation and outcome, and their latency.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::error::VaultError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Durations = Family<OperationLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UseLabels {
    operation: &'static str,
}

/// Counts logical requests (retries of one request are one request), so the rate of
/// `outcome="unavailable"` is the rate of requests Vault never answered usefully. Also
/// the life of envelope data keys, which come from this client: the counts outlive any
/// one policy (a hot swap starts a new data key cache, not new counters).
#[derive(Clone, Debug)]
pub(crate) struct VaultMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
    data_keys_minted: Counter,
    data_keys_retired: Counter,
    data_key_cache_hits: Family<UseLabels, Counter>,
}

impl Default for VaultMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 0.5 ms (a local dev server) to about 16 s (retries through an outage).
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        }
        let data_key_cache_hits = Family::<UseLabels, Counter>::default();
        // Both series exist from the start, so a ratio over them is defined at once.
        for operation in ["seal", "open"] {
            let _ = data_key_cache_hits.get_or_create(&UseLabels { operation });
        }
        VaultMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(histogram),
            data_keys_minted: Counter::default(),
            data_keys_retired: Counter::default(),
            data_key_cache_hits,
        }
    }
}

/// How a request ended: `success` (2xx), `error` (Vault answered with an error, or the
/// request was refused before sending), `unavailable` (no useful answer after retries:
/// unreachable, sealed, rate limited, timing out). A fourth, `cancelled`, is counted by
/// [`InFlight`] when the caller stops waiting.
pub(crate) fn outcome<T>(result: &Result<T, VaultError>, status: Option<u16>) -> &'static str {
    match (result, status) {
        (Ok(_), Some(200..=299)) => "success",
        (Err(VaultError::Unavailable { .. }), _) => "unavailable",
        _ => "error",
    }
}

/// A readiness probe's outcome: one attempt, so a missing answer is `unavailable`.
pub(crate) fn probe_outcome(status: Option<reqwest::StatusCode>) -> &'static str {
    match status {
        Some(status) if status.is_success() => "success",
        Some(_) => "error",
        None => "unavailable",
    }
}

/// A request being timed. [`InFlight::finish`] counts it with its outcome; dropped
/// unfinished (the caller stopped waiting, e.g. the pipeline's deadline around a Vault
/// call), it counts once as `cancelled`, with the time waited, so that the slowest
/// requests do not vanish from the counts and the latency histogram.
pub(crate) struct InFlight<'a> {
    metrics: &'a VaultMetrics,
    mount: &'a str,
    path: &'a str,
    started: Instant,
    finished: bool,
}

impl InFlight<'_> {
    pub(crate) fn finish(mut self, outcome: &'static str) {
        self.finished = true;
        self.metrics
            .observe(self.mount, self.path, outcome, self.started.elapsed());
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics
                .observe(self.mount, self.path, "cancelled", self.started.elapsed());
        }
    }
}

impl VaultMetrics {
    /// Starts timing a request to `path` (`mount` tells transit operations apart).
    pub(crate) fn start<'a>(&'a self, mount: &'a str, path: &'a str) -> InFlight<'a> {
        InFlight {
            metrics: self,
            mount,
            path,
            started: Instant::now(),
            finished: false,
        }
    }

    pub(crate) fn observe(&self, mount: &str, path: &str, outcome: &'static str, took: Duration) {
        let operation = operation(mount, path);
        self.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .inc();
        self.durations
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Vault generated a data key for sealing.
    pub(crate) fn data_key_minted(&self) {
        self.data_keys_minted.inc();
    }

    /// A sealing data key reached its record or age limit and was replaced.
    pub(crate) fn data_key_retired(&self) {
        self.data_keys_retired.inc();
    }

    /// A data key came from the cache, not from Vault: `seal` reused the active key,
    /// `open` found the unwrapped key.
    pub(crate) fn data_key_cache_hit(&self, operation: &'static str) {
        self.data_key_cache_hits
            .get_or_create(&UseLabels { operation })
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "vault_requests",
            "Vault requests by operation and outcome (success, error, unavailable, cancelled); retries of one request count once",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "vault_request_duration",
            "Vault request latency by operation, retries included",
            Unit::Seconds,
            self.durations.clone(),
        );
        registry.register(
            "envelope_data_keys_minted",
            "Envelope data keys generated by Vault (transit datakey) for sealing",
            self.data_keys_minted.clone(),
        );
        registry.register(
            "envelope_data_keys_retired",
            "Envelope data keys replaced after policy.data_keys.max_records, max_age or rotation_check_interval",
            self.data_keys_retired.clone(),
        );
        registry.register(
            "envelope_data_key_cache_hits",
            "Envelope data keys served from the cache (seal: the active key; open: an unwrapped key) instead of Vault",
            self.data_key_cache_hits.clone(),
        );
    }
}

/// The operation a request path is for, in Vault's own terms; never the key name, so
/// the label set stays small.
fn operation(mount: &str, path: &str) -> &'static str {
    if let Some(rest) = path
        .strip_prefix(mount)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return match rest.split('/').next() {
            Some("encrypt") => "encrypt",
            Some("decrypt") => "decrypt",
            Some("rewrap") => "rewrap",
            Some("hmac") => "hmac",
            Some("datakey") => "datakey",
            Some("keys") => "keys",
            _ => "other",
        };
    }
    match path {
        "auth/token/lookup-self" => "lookup-self",
        "auth/token/renew-self" => "renew-self",
        "sys/health" => "health",
        p if p.starts_with("auth/") && p.ends_with("/login") => "login",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &VaultMetrics) -> String {
        let mut registry = Registry::with_prefix("kafka_transit");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_request_counts_once_finished_or_dropped() {
        let m = VaultMetrics::default();
        m.start("transit", "transit/encrypt/k").finish("success");
        drop(m.start("transit", "transit/encrypt/k"));
        let text = scrape(&m);
        for outcome in ["success", "cancelled"] {
            let series = format!(
                "kafka_transit_vault_requests_total{{operation=\"encrypt\",outcome=\"{outcome}\"}} 1"
            );
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
        assert!(text
            .lines()
            .any(|l| l
                == "kafka_transit_vault_request_duration_seconds_count{operation=\"encrypt\"} 2"));
    }

    #[test]
    fn operations_are_vaults_terms_without_key_names() {
        assert_eq!(operation("transit", "transit/encrypt/orders"), "encrypt");
        assert_eq!(
            operation("team/transit", "team/transit/datakey/wrapped/k"),
            "datakey"
        );
        assert_eq!(operation("transit", "auth/approle/login"), "login");
        assert_eq!(operation("transit", "auth/token/renew-self"), "renew-self");
        assert_eq!(operation("transit", "sys/health"), "health");
        assert_eq!(operation("transit", "transitx/encrypt/k"), "other");
    }
}
