//! Fault injection and request counters, shared between the server and the
//! [`crate::RunningServer`] handle (or the `sys/dev/*` endpoints).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct FaultState {
    fail_status: u16,
    retry_after: Option<Duration>,
    latency: Duration,
    /// Transit keys the caller may not use, as an ACL without them would answer.
    denied_keys: std::collections::BTreeSet<String>,
}

#[derive(Default)]
struct Inner {
    sealed: AtomicBool,
    fail_next: AtomicU32,
    rate_limit_next: AtomicU32,
    state: Mutex<FaultState>,
}

/// Handle to inject faults into a running vault-dev. Cheap to clone.
///
/// Faults apply to every `/v1/*` request except the `sys/dev/*` control paths.
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

/// What an injected fault turns a request into.
pub(crate) enum Injected {
    Fail(u16),
    RateLimited(Option<Duration>),
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seal the server: everything but `sys/health`, `sys/seal-status` and
    /// `sys/unseal` answers 503 `Vault is sealed`.
    pub fn seal(&self) {
        self.inner.sealed.store(true, Ordering::SeqCst);
    }

    /// Unseal the server.
    pub fn unseal(&self) {
        self.inner.sealed.store(false, Ordering::SeqCst);
    }

    /// Whether the server is sealed.
    pub fn is_sealed(&self) -> bool {
        self.inner.sealed.load(Ordering::SeqCst)
    }

    /// The next `n` requests fail with `status` and a Vault-style internal error body.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.state().fail_status = status;
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests get 429 (rate limit quota exceeded), with a
    /// `Retry-After` header in whole seconds when `retry_after` is set.
    pub fn rate_limit_next(&self, n: u32, retry_after: Option<Duration>) {
        self.state().retry_after = retry_after;
        self.inner.rate_limit_next.store(n, Ordering::SeqCst);
    }

    /// Delay added before handling every request.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Requests naming transit key `key` (`<mount>/<operation>/<key>`) get 403
    /// `permission denied`, as from a token whose policy does not cover that key.
    pub fn deny_key(&self, key: &str) {
        self.state().denied_keys.insert(key.to_string());
    }

    /// Whether `path` names a transit key that [`Faults::deny_key`] denied.
    pub(crate) fn denies(&self, path: &str) -> bool {
        let state = self.state();
        if state.denied_keys.is_empty() {
            return false;
        }
        let mut segments = path.rsplit('/');
        let (Some(key), Some(operation)) = (segments.next(), segments.next()) else {
            return false;
        };
        // datakey/plaintext/<key> and datakey/wrapped/<key>
        let operation = match operation {
            "plaintext" | "wrapped" => segments.next().unwrap_or(operation),
            other => other,
        };
        matches!(
            operation,
            "encrypt" | "decrypt" | "rewrap" | "hmac" | "datakey" | "keys"
        ) && state.denied_keys.contains(key)
    }

    /// Remove every injected fault: failures, rate limits, latency, and the seal.
    pub fn clear(&self) {
        self.inner.fail_next.store(0, Ordering::SeqCst);
        self.inner.rate_limit_next.store(0, Ordering::SeqCst);
        *self.state() = FaultState::default();
        self.unseal();
    }

    pub(crate) fn latency(&self) -> Duration {
        self.state().latency
    }

    /// Consume one pending fault, if any (failures first, then rate limits).
    pub(crate) fn take(&self) -> Option<Injected> {
        if take_one(&self.inner.fail_next) {
            let status = self.state().fail_status;
            return Some(Injected::Fail(if status == 0 { 500 } else { status }));
        }
        if take_one(&self.inner.rate_limit_next) {
            return Some(Injected::RateLimited(self.state().retry_after));
        }
        None
    }
}

/// A snapshot of request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// All `/v1` requests except `sys/dev/*`.
    pub requests: u64,
    /// Requests per operation: `encrypt`, `decrypt`, `rewrap`, `datakey`, `hmac`,
    /// `keys`, `export`, `login`, `token`, and `sys/*` names such as `mounts`.
    pub by_operation: BTreeMap<String, u64>,
    /// Items handled by encrypt/decrypt/rewrap/hmac (a single request counts 1).
    pub batch_items: u64,
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    stats: Mutex<Stats>,
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_request(&self, operation: &str) {
        let mut s = self.lock();
        s.requests += 1;
        *s.by_operation.entry(operation.to_string()).or_default() += 1;
    }

    pub fn add_items(&self, n: usize) {
        self.lock().batch_items += n as u64;
    }

    pub fn snapshot(&self) -> Stats {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_key_is_denied_on_every_transit_path_and_only_there() {
        let faults = Faults::default();
        assert!(!faults.denies("transit/encrypt/tenant-evil"));
        faults.deny_key("tenant-evil");
        for path in [
            "transit/encrypt/tenant-evil",
            "transit/decrypt/tenant-evil",
            "team/transit/rewrap/tenant-evil",
            "transit/hmac/tenant-evil",
            "transit/datakey/plaintext/tenant-evil",
            "transit/keys/tenant-evil",
        ] {
            assert!(faults.denies(path), "{path}");
        }
        for path in [
            "transit/encrypt/tenant-good",
            "transit/encrypt/tenant-evil-twin",
            "sys/mounts/tenant-evil",
            "tenant-evil",
        ] {
            assert!(!faults.denies(path), "{path}");
        }
        faults.clear();
        assert!(!faults.denies("transit/encrypt/tenant-evil"));
    }
}
