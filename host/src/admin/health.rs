//! What `/health/live` and `/health/ready` answer.
//!
//! Liveness is about this process: the pipeline loop went round within
//! `admin.stall_timeout`. Readiness is about doing the job: the policy is loaded, Vault
//! is reachable, unsealed and accepts the token, and the runner owns partitions. A
//! runner beyond the partition count is therefore not ready, which is the truth: it
//! moves nothing until a rebalance gives it work.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::vault::VaultClient;

/// The probes' view of the runner; each part is filled in as start-up gets there.
#[derive(Debug)]
pub(crate) struct Health {
    stall_timeout: Duration,
    policy: OnceLock<()>,
    pipeline: OnceLock<Arc<Metrics>>,
    /// The last Vault check: `None` until the first one answered.
    vault: Mutex<Option<Result<(), String>>>,
    /// 1 while ready: `kafka_transit_ready`.
    pub(crate) ready_gauge: Gauge,
}

/// A probe's answer: HTTP status and JSON body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Health {
    pub(crate) fn new(stall_timeout: Duration) -> Self {
        Health {
            stall_timeout,
            policy: OnceLock::new(),
            pipeline: OnceLock::new(),
            vault: Mutex::new(None),
            ready_gauge: Gauge::default(),
        }
    }

    pub(crate) fn policy_loaded(&self) {
        let _ = self.policy.set(());
    }

    pub(crate) fn pipeline_started(&self, metrics: Arc<Metrics>) {
        let _ = self.pipeline.set(metrics);
    }

    /// Asks Vault every `interval` until the returned task is aborted.
    pub(crate) fn watch_vault(
        self: &Arc<Self>,
        vault: VaultClient,
        interval: Duration,
    ) -> JoinHandle<()> {
        let health = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let checked = vault.check_ready().await;
                let changed = {
                    let mut last = health.vault.lock().expect("health lock");
                    let changed = last.as_ref() != Some(&checked);
                    *last = Some(checked.clone());
                    changed
                };
                if changed {
                    match &checked {
                        Ok(()) => {
                            tracing::info!("readiness: Vault reachable, unsealed, token accepted")
                        }
                        Err(problem) => tracing::warn!("readiness: {problem}"),
                    }
                }
                health.ready();
            }
        })
    }

    pub(crate) fn live(&self) -> Answer {
        let Some(metrics) = self.pipeline.get() else {
            return Answer {
                status: 200,
                body: json!({"live": true, "detail": "starting"}),
            };
        };
        let quiet = metrics.since_heartbeat();
        if quiet < self.stall_timeout {
            Answer {
                status: 200,
                body: json!({"live": true}),
            }
        } else {
            Answer {
                status: 503,
                body: json!({
                    "live": false,
                    "detail": format!(
                        "the pipeline loop has not gone round for {}s (admin.stall_timeout)",
                        quiet.as_secs()
                    ),
                }),
            }
        }
    }

    pub(crate) fn ready(&self) -> Answer {
        let mut not_ready = Vec::new();
        if self.policy.get().is_none() {
            not_ready.push("policy: not loaded yet".to_string());
        }
        match &*self.vault.lock().expect("health lock") {
            None => not_ready.push("vault: not checked yet".to_string()),
            Some(Err(problem)) => not_ready.push(problem.clone()),
            Some(Ok(())) => {}
        }
        match self.pipeline.get() {
            None => not_ready.push("pipeline: not started yet".to_string()),
            Some(metrics) if metrics.partitions_assigned() == 0 => {
                not_ready.push("partitions: none assigned to this runner".to_string())
            }
            Some(_) => {}
        }
        let ready = not_ready.is_empty();
        self.ready_gauge.set(i64::from(ready));
        if ready {
            Answer {
                status: 200,
                body: json!({"ready": true}),
            }
        } else {
            Answer {
                status: 503,
                body: json!({"ready": false, "not_ready": not_ready}),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_part_is() {
        let health = Health::new(Duration::from_secs(60));
        let answer = health.ready();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.body["not_ready"].as_array().unwrap().len(), 3);
        health.policy_loaded();
        *health.vault.lock().unwrap() = Some(Err("vault: sealed".into()));
        let metrics = Arc::new(Metrics::default());
        health.pipeline_started(metrics.clone());
        let answer = health.ready();
        assert_eq!(
            answer.body["not_ready"],
            json!(["vault: sealed", "partitions: none assigned to this runner"])
        );
        metrics.set_assigned(2);
        *health.vault.lock().unwrap() = Some(Ok(()));
        assert_eq!(health.ready().status, 200);
        assert_eq!(health.ready_gauge.get(), 1);
    }

    #[test]
    fn live_until_the_loop_stalls() {
        let health = Health::new(Duration::from_millis(50));
        assert_eq!(health.live().status, 200, "starting up is alive");
        let metrics = Arc::new(Metrics::default());
        metrics.heartbeat();
        health.pipeline_started(metrics.clone());
        assert_eq!(health.live().status, 200);
        std::thread::sleep(Duration::from_millis(80));
        let answer = health.live();
        assert_eq!(answer.status, 503);
        assert!(answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("admin.stall_timeout"));
        metrics.heartbeat();
        assert_eq!(health.live().status, 200);
    }
}
