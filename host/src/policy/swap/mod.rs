//! Hot swap: a new data-protection policy replaces the running one between two batches,
//! without a restart, without losing a record or transforming one twice.
//!
//! Three triggers ask for a new policy: the file at `policy.path` changing (polled every
//! `policy.watch_interval`, through symlinks, so Kubernetes ConfigMap updates count),
//! SIGHUP, and the admin endpoint, which calls [`PolicySwitch::reload_from_config`]. The
//! last two re-read the pipeline file's `[policy]` table, so a new component can come
//! with a new `[policy.config]`; the file trigger keeps the table in force.
//!
//! Whatever the trigger, the component is compiled, type-checked and initialised here,
//! away from the pipeline; one that fails is refused (logged, counted) and the running
//! policy stays. A loaded policy waits in a one-slot mailbox that the pipeline empties
//! before it transforms a batch ([`PolicyUpdates::apply`]). So every record is
//! transformed by exactly one policy version, batches already handed to the producer
//! complete as they are, and each partition keeps its order across the swap.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod triggers;

pub use triggers::Triggers;
use triggers::{listen_for_hangup, watch_file};

use super::{PolicyError, PolicyRunner, PolicyRuntime};
use crate::config::{ConfigError, PipelineConfig, PolicyConfig};
use crate::vault::VaultClient;

/// Why a reload was refused. The running policy keeps transforming records either way.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pipeline file no longer loads; the error names the field to fix.
    #[error("re-reading the pipeline file: {0}")]
    Config(#[from] ConfigError),
    /// The component does not load, match the data-policy world, or accept its
    /// `[policy.config]`.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("compiling the policy was interrupted: {0}")]
    Interrupted(String),
}

/// A policy that loaded and initialised, by the names logs and metrics use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    /// The built-in name or the file path.
    pub name: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}

/// What asked for a reload, for the log lines.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    File,
    Hangup,
    Request,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::File => "policy.path changed",
            Trigger::Hangup => "SIGHUP",
            Trigger::Request => "reload request",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

const APPLIED: Outcome = Outcome { outcome: "applied" };
const REFUSED: Outcome = Outcome { outcome: "refused" };

/// The newest policy loaded, in use or still queued.
#[derive(Clone)]
struct Latest {
    policy: PolicyConfig,
    digest: String,
}

struct Shared {
    config_path: PathBuf,
    vault: VaultClient,
    /// What new policies may know of the pipeline: that of the policy it started with
    /// (only `[policy]` is reloaded).
    pipeline: Option<Arc<crate::policy::pipeline::PipelineView>>,
    /// The pipeline file without `[policy]`, as the process started with it: only
    /// `[policy]` is reloaded, so a change elsewhere deserves a warning.
    other_tables: Option<toml::Table>,
    /// What the file trigger reloads with, and what the watcher compares files against.
    latest: Mutex<Latest>,
    /// One reload at a time, so the last trigger's policy is the one that ends up queued.
    reloading: tokio::sync::Mutex<()>,
    /// Loaded and waiting for the pipeline; a newer one supersedes it.
    queued: Mutex<Option<PolicyRunner>>,
    in_use: Arc<Mutex<Loaded>>,
    reloads: Family<Outcome, Counter>,
}

impl Shared {
    fn latest(&self) -> Latest {
        self.latest.lock().unwrap().clone()
    }

    fn in_use(&self) -> Loaded {
        self.in_use.lock().unwrap().clone()
    }
}

/// Loads new policies and hands them to the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct PolicySwitch {
    shared: Arc<Shared>,
}

/// The pipeline's end of a [`PolicySwitch`]: see [`crate::pipeline::Pipeline::with_policy_updates`].
pub struct PolicyUpdates {
    shared: Arc<Shared>,
}

impl PolicySwitch {
    /// `config_path` is the pipeline file, `policy` its `[policy]` table in force and
    /// `current` the policy the pipeline starts with; new policies get `vault`.
    pub fn new(
        config_path: PathBuf,
        policy: PolicyConfig,
        vault: VaultClient,
        current: &PolicyRuntime,
    ) -> (PolicySwitch, PolicyUpdates) {
        let other_tables = match other_tables(&config_path) {
            Ok(tables) => Some(tables),
            Err(error) => {
                tracing::debug!("cannot keep the pipeline file's other tables to compare: {error}");
                None
            }
        };
        let in_use = Loaded {
            name: current.name().to_string(),
            digest: current.digest().to_string(),
        };
        let reloads = Family::<Outcome, Counter>::default();
        // Both series exist from the start, so a rate over them is defined.
        drop(reloads.get_or_create(&APPLIED));
        drop(reloads.get_or_create(&REFUSED));
        let shared = Arc::new(Shared {
            config_path,
            vault,
            pipeline: current.pipeline(),
            other_tables,
            latest: Mutex::new(Latest {
                policy,
                digest: in_use.digest.clone(),
            }),
            reloading: tokio::sync::Mutex::new(()),
            queued: Mutex::new(None),
            in_use: Arc::new(Mutex::new(in_use)),
            reloads,
        });
        let updates = PolicyUpdates {
            shared: shared.clone(),
        };
        (PolicySwitch { shared }, updates)
    }

    /// Re-reads the pipeline file's `[policy]` table, then loads, type-checks and
    /// initialises its policy and queues it for the pipeline, which switches to it
    /// before its next batch. `Err` means refused: the running policy stays. Either
    /// way the outcome is logged and counted.
    pub async fn reload_from_config(&self) -> Result<Loaded, ReloadError> {
        self.reload_from_config_by(Trigger::Request).await
    }

    async fn reload_from_config_by(&self, trigger: Trigger) -> Result<Loaded, ReloadError> {
        let path = &self.shared.config_path;
        match PipelineConfig::load(path) {
            Ok(config) => {
                self.warn_about_other_changes();
                self.reload(trigger, config.policy).await
            }
            Err(error) => Err(self.refuse(trigger, error.into())),
        }
    }

    /// Starts the triggers that run by themselves: the watcher of `policy.path` (idle
    /// while the policy is a built-in; it follows a path a reload switches to) and, on
    /// unix, the SIGHUP listener. They stop when the returned value is dropped. Needs a
    /// tokio runtime.
    pub fn spawn_triggers(&self) -> Triggers {
        let mut tasks = vec![tokio::spawn(watch_file(self.clone()))];
        #[cfg(unix)]
        tasks.push(tokio::spawn(listen_for_hangup(self.clone())));
        Triggers { tasks }
    }

    /// Registers `policy_reloads{outcome="applied"|"refused"}` and `policy` (an info
    /// metric naming the policy in use and its digest).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "policy_reloads",
            "Policy reloads: applied (the pipeline switched to the new policy) or refused \
             (it failed to load or initialise; the running policy stayed)",
            self.shared.reloads.clone(),
        );
        registry.register_collector(Box::new(InUse(self.shared.in_use.clone())));
    }

    /// Name and digest of the policy the pipeline transforms records with.
    pub fn current(&self) -> (String, String) {
        let Loaded { name, digest } = self.shared.in_use();
        (name, digest)
    }

    /// Loads `policy` and queues it.
    async fn reload(&self, trigger: Trigger, policy: PolicyConfig) -> Result<Loaded, ReloadError> {
        let _one_at_a_time = self.shared.reloading.lock().await;
        self.reload_locked(trigger, policy).await
    }

    /// Reloads the file at `path` with the `[policy]` table in force, read only once no
    /// other reload runs: one that started meanwhile may have changed the table (then
    /// its table is the one to keep) or moved away from `path` (then `None`).
    async fn reload_file(&self, path: &Path) -> Option<Result<Loaded, ReloadError>> {
        let _one_at_a_time = self.shared.reloading.lock().await;
        let policy = self.shared.latest().policy;
        if policy.path.as_deref() != Some(path) {
            return None;
        }
        Some(self.reload_locked(Trigger::File, policy).await)
    }

    /// The one path every trigger takes; the caller holds `reloading`.
    async fn reload_locked(
        &self,
        trigger: Trigger,
        policy: PolicyConfig,
    ) -> Result<Loaded, ReloadError> {
        match self.load(&policy).await {
            Ok(runner) => {
                let loaded = Loaded {
                    name: runner.runtime().name().to_string(),
                    digest: runner.runtime().digest().to_string(),
                };
                *self.shared.latest.lock().unwrap() = Latest {
                    policy,
                    digest: loaded.digest.clone(),
                };
                let superseded = self.shared.queued.lock().unwrap().replace(runner);
                if let Some(superseded) = superseded {
                    tracing::info!(
                        policy = superseded.runtime().name(),
                        digest = superseded.runtime().digest(),
                        "policy superseded by a newer one before the pipeline switched to it"
                    );
                }
                tracing::info!(
                    %trigger,
                    policy = loaded.name,
                    digest = loaded.digest,
                    "policy loaded and initialised; the pipeline switches to it before its next batch"
                );
                Ok(loaded)
            }
            Err(error) => Err(self.refuse(trigger, error)),
        }
    }

    /// Compiles off the async threads (compilation is CPU-heavy), then runs `init`.
    async fn load(&self, policy: &PolicyConfig) -> Result<PolicyRunner, ReloadError> {
        let vault = self.shared.vault.clone();
        let config = policy.clone();
        let pipeline = self.shared.pipeline.clone();
        let runtime = tokio::task::spawn_blocking(move || {
            let runtime = PolicyRuntime::from_config(&config, Some(vault))?;
            Ok::<_, crate::policy::PolicyError>(match pipeline {
                Some(view) => runtime.with_pipeline(view),
                None => runtime,
            })
        })
        .await
        .map_err(|e| ReloadError::Interrupted(e.to_string()))??;
        Ok(PolicyRunner::start(Arc::new(runtime)).await?)
    }

    fn refuse(&self, trigger: Trigger, error: ReloadError) -> ReloadError {
        self.shared.reloads.get_or_create(&REFUSED).inc();
        let running = self.shared.in_use();
        tracing::warn!(
            %trigger,
            running = running.name,
            digest = running.digest,
            "policy reload refused, the running policy stays: {error}"
        );
        error
    }

    fn warn_about_other_changes(&self) {
        let Some(started_with) = &self.shared.other_tables else {
            return;
        };
        let Ok(now) = other_tables(&self.shared.config_path) else {
            return;
        };
        let changed: BTreeSet<&String> = started_with
            .keys()
            .chain(now.keys())
            .filter(|table| started_with.get(*table) != now.get(*table))
            .collect();
        if !changed.is_empty() {
            let tables = changed
                .iter()
                .map(|table| format!("[{table}]"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(
                config = %self.shared.config_path.display(),
                "{tables} changed too: only [policy] is reloaded, the rest takes effect after a restart"
            );
        }
    }
}

/// The pipeline file's tables other than `[policy]`.
fn other_tables(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    table.remove("policy");
    Ok(table)
}

impl PolicyUpdates {
    /// Switches `runner` to the newest loaded policy, if one is waiting. The pipeline
    /// calls it between batches only, never while a batch is being transformed.
    pub fn apply(&self, runner: &mut PolicyRunner) {
        let Some(next) = self.shared.queued.lock().unwrap().take() else {
            return;
        };
        let old = std::mem::replace(runner, next);
        let new = Loaded {
            name: runner.runtime().name().to_string(),
            digest: runner.runtime().digest().to_string(),
        };
        tracing::info!(
            old_policy = old.runtime().name(),
            old_digest = old.runtime().digest(),
            policy = new.name,
            digest = new.digest,
            "policy swapped: records from the next batch on are transformed by the new policy"
        );
        *self.shared.in_use.lock().unwrap() = new;
        self.shared.reloads.get_or_create(&APPLIED).inc();
    }
}

/// Emits `policy_info{name, digest} 1` for the policy in use, read at each scrape.
struct InUse(Arc<Mutex<Loaded>>);

impl fmt::Debug for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InUse")
            .field(&*self.0.lock().unwrap())
            .finish()
    }
}

impl Collector for InUse {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Loaded { name, digest } = self.0.lock().unwrap().clone();
        let info = Info::new(vec![
            ("name".to_string(), name),
            ("digest".to_string(), digest),
        ]);
        let metric = encoder.encode_descriptor(
            "policy",
            "The policy records are transformed with: its name and component digest",
            None,
            info.metric_type(),
        )?;
        info.encode(metric)
    }
}
