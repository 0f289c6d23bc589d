//! Data-protection policies: WebAssembly components run by wasmtime.
//!
//! - [`PolicyRuntime`] holds one compiled policy (compiled once per process, with the
//!   machine code cached on disk) and an `InstancePre`, so making an instance is cheap.
//! - [`PolicyRunner`] owns a live instance and transforms batches. A trap, a deadline
//!   or a malformed answer never kills the host: the batch is retried on a fresh
//!   instance, then records are isolated one at a time so that only the record that
//!   breaks the policy fails.
//!
//! Guests get no filesystem, network, environment or arguments: their only way out is
//! the `transit` and `log` imports, implemented in [`host`]. [`world`] holds the WIT the
//! host implements and explains components that do not match it.

mod bindings;
pub mod builtin;
mod cache;
mod host;
pub mod pipeline;
mod sandbox;
pub mod swap;
pub mod world;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use bindings::{DataPolicy, DataPolicyPre};
pub use bindings::{Failure, Header, OutputRecord, SourceRecord, TransformResult};
use host::GuestState;

use crate::config::{ConfigError, PolicyConfig, PolicySource};
use crate::envelope::{DataKeyPolicy, Envelopes};
use crate::vault::VaultClient;

/// Why a policy could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy.builtin: no built-in policy \"{name}\" (built-in: {known})")]
    UnknownBuiltin { name: String, known: String },
    #[error("policy.path: cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("policy {name} is not a valid kafka-transit policy component: {detail}")]
    Invalid { name: String, detail: String },
    #[error("policy {name} rejected its configuration: {message}")]
    Init { name: String, message: String },
    #[error("policy {name} failed: {detail}")]
    Runtime { name: String, detail: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Limits applied to every instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Guest CPU time per batch; time waiting on host calls does not count.
    pub batch_deadline: Duration,
    /// Time per batch spent waiting on Vault (all host calls together); past it, the
    /// batch's Vault calls fail as unavailable.
    pub vault_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 * 1024 * 1024,
            batch_deadline: Duration::from_secs(10),
            vault_deadline: Duration::from_secs(20),
        }
    }
}

/// How often the engine's epoch advances: the granularity of batch deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process's one engine. Epoch interruption lets a deadline stop a runaway guest.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).expect("wasmtime engine configuration is valid");
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch thread");
        engine
    })
}

/// A compiled policy, ready to instantiate.
pub struct PolicyRuntime {
    name: String,
    digest: String,
    config_json: String,
    limits: Limits,
    vault: Option<VaultClient>,
    /// Shared by every instance, so data keys are cached across instances.
    envelopes: Option<Arc<Envelopes>>,
    /// When the envelopes' data keys are retired.
    data_keys: DataKeyPolicy,
    /// The pipeline the policy runs in (`None`: `validate`, tests).
    pipeline: Option<Arc<pipeline::PipelineView>>,
    pre: DataPolicyPre<GuestState>,
}

impl PolicyRuntime {
    /// The runtime a pipeline's `[policy]` table describes: the component, its
    /// `[policy.config]`, its limits and when its envelope data keys are retired.
    pub fn from_config(
        policy: &PolicyConfig,
        vault: Option<VaultClient>,
    ) -> Result<Self, PolicyError> {
        let limits = Limits {
            memory_bytes: (policy.memory_limit_mib * 1024 * 1024) as usize,
            batch_deadline: policy.batch_deadline,
            vault_deadline: policy.vault_deadline,
        };
        let runtime = Self::load(&policy.source()?, policy.config_json(), limits, vault)?;
        Ok(runtime.with_data_keys(policy.data_keys))
    }

    /// Loads and compiles a policy (from the on-disk cache when possible) and checks
    /// that it implements the `data-policy` world. `vault` may be `None` for
    /// `validate`, where a policy calling Vault gets an `unavailable` error.
    pub fn load(
        source: &PolicySource,
        config_json: String,
        limits: Limits,
        vault: Option<VaultClient>,
    ) -> Result<Self, PolicyError> {
        let (name, wasm): (String, std::borrow::Cow<'static, [u8]>) = match source {
            PolicySource::Builtin(name) => {
                let wasm = builtin::component(name).ok_or_else(|| PolicyError::UnknownBuiltin {
                    name: name.clone(),
                    known: builtin::names().collect::<Vec<_>>().join(", "),
                })?;
                (name.clone(), wasm.into())
            }
            PolicySource::File(path) => {
                let wasm = std::fs::read(path).map_err(|source| PolicyError::Read {
                    path: path.clone(),
                    source,
                })?;
                (path.display().to_string(), wasm.into())
            }
        };
        let digest = digest_of(&wasm);
        let invalid = |detail: String| PolicyError::Invalid {
            name: name.clone(),
            detail,
        };

        let engine = engine();
        world::check_format(&wasm).map_err(invalid)?;
        let component =
            cache::compile(engine, &wasm, &digest).map_err(|e| invalid(format!("{e:#}")))?;
        let mut linker = Linker::<GuestState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| invalid(format!("{e:#}")))?;
        DataPolicy::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |state| state)
            .map_err(|e| invalid(format!("{e:#}")))?;
        // Imports are checked here, exports just below; either failure is explained in
        // terms of the WIT an author builds against.
        let explain = |e: wasmtime::Error| invalid(world::explain(engine, &component, &e));
        let instance_pre = linker.instantiate_pre(&component).map_err(explain)?;
        let pre = DataPolicyPre::new(instance_pre).map_err(explain)?;
        let envelopes = vault
            .clone()
            .map(|vault| Arc::new(Envelopes::new(vault, DataKeyPolicy::default())));
        Ok(PolicyRuntime {
            name,
            digest,
            config_json,
            limits,
            vault,
            envelopes,
            data_keys: DataKeyPolicy::default(),
            pipeline: None,
            pre,
        })
    }

    /// When the envelope import retires data keys (default: 1,000,000 records or 1 h).
    pub fn with_data_keys(mut self, policy: DataKeyPolicy) -> Self {
        self.data_keys = policy;
        self.envelopes = self.new_envelopes();
        self
    }

    /// The pipeline the policy runs in: what its `pipeline` import answers from, and the
    /// forgotten data subjects its envelopes refuse.
    pub fn with_pipeline(mut self, view: Arc<pipeline::PipelineView>) -> Self {
        self.pipeline = Some(view);
        self.envelopes = self.new_envelopes();
        self
    }

    fn new_envelopes(&self) -> Option<Arc<Envelopes>> {
        let vault = self.vault.clone()?;
        let envelopes = Envelopes::new(vault, self.data_keys);
        Some(Arc::new(
            match self.pipeline.as_ref().and_then(|view| view.forgotten()) {
                Some(forgotten) => envelopes.with_forgotten(forgotten.clone()),
                None => envelopes,
            },
        ))
    }

    /// The pipeline view, for a policy that replaces this one (hot swap).
    pub fn pipeline(&self) -> Option<Arc<pipeline::PipelineView>> {
        self.pipeline.clone()
    }

    /// The policy's name (built-in name or file path), for logs and headers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:<hex>` of the component, recorded on dead-lettered records.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// A fresh instance with `init(config)` already called.
    async fn instantiate(&self) -> Result<Instance, PolicyError> {
        let state = GuestState::new(
            self.name.clone(),
            self.vault.clone(),
            self.envelopes.clone(),
            self.pipeline.clone(),
            self.limits.memory_bytes,
        );
        let mut store = Store::new(engine(), state);
        store.limiter(|state| state.limits());
        // Trap only when the guest itself has used up its CPU budget; time spent
        // awaiting Vault does not count, and long guest work yields to other tasks.
        store.epoch_deadline_callback(|context| {
            if context.data().deadline_passed() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store.data_mut().start_batch(&self.limits);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.runtime_error("instantiating", e))?;
        let init = bindings
            .kafka_transit_policy_policy()
            .call_init(&mut store, &self.config_json)
            .await
            .map_err(|e| self.runtime_error("init", e))?;
        init.map_err(|message| PolicyError::Init {
            name: self.name.clone(),
            message,
        })?;
        Ok(Instance { store, bindings })
    }

    fn runtime_error(&self, during: &str, error: wasmtime::Error) -> PolicyError {
        PolicyError::Runtime {
            name: self.name.clone(),
            detail: format!("{during}: {}", describe_trap(&error)),
        }
    }
}

/// `sha256:<hex>` of a component's bytes: how logs, headers and metrics name a version.
pub fn digest_of(wasm: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(wasm)))
}

/// A trap's message without the wasm backtrace (which is noise in a log line).
fn describe_trap(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return "batch deadline exceeded (policy.batch_deadline)".into();
        }
        return format!("trap: {trap}");
    }
    error.to_string()
}

struct Instance {
    store: Store<GuestState>,
    bindings: DataPolicy,
}

impl Instance {
    async fn transform(
        &mut self,
        batch: &[SourceRecord],
        limits: &Limits,
    ) -> Result<Vec<TransformResult>, wasmtime::Error> {
        self.store.data_mut().start_batch(limits);
        self.store.set_epoch_deadline(1);
        let results = self
            .bindings
            .kafka_transit_policy_policy()
            .call_transform(&mut self.store, batch)
            .await?;
        if results.len() != batch.len() {
            return Err(wasmtime::Error::msg(format!(
                "policy returned {} results for {} records",
                results.len(),
                batch.len()
            )));
        }
        Ok(results)
    }
}

/// Transforms batches with one live instance, recovering from traps.
pub struct PolicyRunner {
    runtime: Arc<PolicyRuntime>,
    instance: Option<Instance>,
    /// Instances thrown away after a trap, deadline or bad answer.
    pub replaced_instances: u64,
}

impl PolicyRunner {
    /// Instantiates the policy and runs its `init`, so configuration errors surface
    /// before any record is consumed.
    pub async fn start(runtime: Arc<PolicyRuntime>) -> Result<Self, PolicyError> {
        let instance = runtime.instantiate().await?;
        Ok(PolicyRunner {
            runtime,
            instance: Some(instance),
            replaced_instances: 0,
        })
    }

    /// The runtime, shared: work that outlives a policy swap keeps the version that
    /// transformed it.
    pub fn shared_runtime(&self) -> Arc<PolicyRuntime> {
        self.runtime.clone()
    }

    pub fn runtime(&self) -> &PolicyRuntime {
        &self.runtime
    }

    /// One result per record, in order. A record that makes the policy trap gets a
    /// `policy-error` failure; the others are transformed normally. Errors only when
    /// a fresh instance cannot even be made.
    pub async fn transform(
        &mut self,
        batch: &[SourceRecord],
    ) -> Result<Vec<TransformResult>, PolicyError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // First on the live instance, then once more on a fresh one: a trap may come
        // from state an earlier batch left behind.
        let mut last_detail = String::new();
        for _ in 0..2 {
            match self.run(batch).await? {
                Ok(results) => return Ok(results),
                Err(detail) => {
                    tracing::warn!(
                        policy = self.runtime.name(),
                        records = batch.len(),
                        "policy failed on a batch; retrying on a fresh instance: {detail}"
                    );
                    last_detail = detail;
                }
            }
        }
        if batch.len() == 1 {
            return Ok(vec![Err(self.trap_failure(last_detail))]);
        }
        // Isolate: one record at a time, so only the culprit fails.
        let mut results = Vec::with_capacity(batch.len());
        for record in batch.chunks(1) {
            match self.run(record).await? {
                Ok(mut one) => results.push(one.remove(0)),
                Err(detail) => results.push(Err(self.trap_failure(detail))),
            }
        }
        Ok(results)
    }

    fn trap_failure(&self, detail: String) -> Failure {
        Failure::PolicyError(format!(
            "policy {} failed on this record: {detail}",
            self.runtime.name()
        ))
    }

    /// Runs a batch; the inner `Err` is a trap (the instance is then discarded).
    async fn run(
        &mut self,
        batch: &[SourceRecord],
    ) -> Result<Result<Vec<TransformResult>, String>, PolicyError> {
        let mut instance = match self.instance.take() {
            Some(instance) => instance,
            None => {
                self.replaced_instances += 1;
                self.runtime.instantiate().await?
            }
        };
        let started = Instant::now();
        match instance.transform(batch, &self.runtime.limits).await {
            Ok(results) => {
                self.instance = Some(instance);
                tracing::trace!(records = batch.len(), elapsed = ?started.elapsed(), "policy batch");
                Ok(Ok(results))
            }
            Err(error) => Ok(Err(describe_trap(&error))),
        }
    }
}
