//! The Schema Registry client's instruments: requests by outcome, and their latency.
//! Registered whether or not `[schema_registry]` is configured, so dashboards and alerts
//! see the same series on every runner.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    outcome: &'static str,
}

/// Counts HTTP requests (a schema with references costs one per schema fetched); schemas
/// answered from the cache cost none.
#[derive(Clone, Debug)]
pub(crate) struct RegistryMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Histogram,
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        // The outcomes alerts look at exist from the start, at 0.
        for outcome in [SUCCESS, NOT_FOUND, ERROR, UNAVAILABLE] {
            let _ = requests.get_or_create(&RequestLabels { outcome });
        }
        RegistryMetrics {
            requests,
            // 1 ms to about 16 s (a registry timing out at request_timeout).
            durations: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

/// A 2xx answer.
pub(crate) const SUCCESS: &str = "success";
/// A 404: the registry has no such schema (the record's fault).
pub(crate) const NOT_FOUND: &str = "not_found";
/// An answer that is not what Confluent's API gives.
pub(crate) const ERROR: &str = "error";
/// No useful answer: unreachable, timing out, 5xx, 429, or credentials refused.
pub(crate) const UNAVAILABLE: &str = "unavailable";

impl RegistryMetrics {
    pub(crate) fn observe(&self, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { outcome })
            .inc();
        self.durations.observe(took.as_secs_f64());
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "schema_registry_requests",
            "Schema Registry HTTP requests by outcome (success, not_found, error, unavailable); schemas answered from the cache make none",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "schema_registry_request_duration",
            "Schema Registry request latency",
            Unit::Seconds,
            self.durations.clone(),
        );
    }

    #[cfg(test)]
    pub(crate) fn count(&self, outcome: &'static str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels { outcome })
            .get()
    }
}
