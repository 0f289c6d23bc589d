//! What a policy instance can reach: the host imports (`transit`, `log`) and an empty
//! WASI context (no files, no environment, no arguments, no sockets). The guest sees
//! only what the imports return: never a token, never key material.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::kafka_transit::policy::envelope::{
    Compression as WitCompression, SealOptions as WitSealOptions,
};
use super::bindings::kafka_transit::policy::envelope::{OpenItem, SealItem};
use super::bindings::kafka_transit::policy::pipeline;
use super::bindings::kafka_transit::policy::schema_registry::{
    self, RegistryError, Schema as WitSchema, SchemaType as WitSchemaType,
};
use super::bindings::kafka_transit::policy::transit::{BoundDecryptItem, BoundEncryptItem};
use super::bindings::kafka_transit::policy::{envelope, log, transit, types};
use super::bindings::{DecryptItem, EncryptItem, Level, TransitError};
use super::pipeline::{default_max_plaintext, PipelineView};
use super::sandbox::InstanceLimits;
use crate::envelope::{Envelopes, SealOptions};
use crate::vault::{DecryptInput, EncryptInput, ItemError, VaultClient, VaultError};
use kafka_transit_envelope_format::record::{Compression, Flags};

/// Longest log message a policy may emit; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

pub struct GuestState {
    policy: String,
    vault: Option<VaultClient>,
    envelopes: Option<Arc<Envelopes>>,
    pipeline: Option<Arc<PipelineView>>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: InstanceLimits,
    /// When the current batch started, and how long of it was spent in host calls:
    /// the guest's own time is the difference.
    batch_started: Instant,
    host_time: Duration,
    deadline: Duration,
    /// When the current batch must stop waiting on Vault, and the budget it was given.
    vault_deadline: tokio::time::Instant,
    vault_budget: Duration,
}

impl GuestState {
    pub fn new(
        policy: String,
        vault: Option<VaultClient>,
        envelopes: Option<Arc<Envelopes>>,
        pipeline: Option<Arc<PipelineView>>,
        memory_bytes: usize,
    ) -> Self {
        GuestState {
            policy,
            vault,
            envelopes,
            pipeline,
            // Deliberately empty: no preopened directories, env, args or network.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: InstanceLimits::new(memory_bytes),
            batch_started: Instant::now(),
            host_time: Duration::ZERO,
            deadline: Duration::MAX,
            vault_deadline: tokio::time::Instant::now(),
            vault_budget: Duration::ZERO,
        }
    }

    pub fn limits(&mut self) -> &mut InstanceLimits {
        &mut self.limits
    }

    pub fn start_batch(&mut self, limits: &super::Limits) {
        self.batch_started = Instant::now();
        self.host_time = Duration::ZERO;
        self.deadline = limits.batch_deadline;
        self.vault_budget = limits.vault_deadline;
        self.vault_deadline = tokio::time::Instant::now() + limits.vault_deadline;
    }

    /// Whether the guest has used more CPU time than its batch deadline allows.
    pub fn deadline_passed(&self) -> bool {
        self.batch_started.elapsed().saturating_sub(self.host_time) > self.deadline
    }

    /// Runs a host call that waits on Vault: its time is kept off the guest's CPU
    /// deadline, and counted against the batch's `policy.vault_deadline` instead. A
    /// call still waiting when that passes is dropped (the Vault client is
    /// cancellation-safe) and fails as unavailable, so does every later call of the
    /// batch: the pipeline pauses and retries the batch, rather than wait out each
    /// request's timeouts and retries (minutes, against a Vault that accepts
    /// connections but never answers).
    async fn vault_call<T, F>(&mut self, call: F) -> Result<T, TransitError>
    where
        F: Future<Output = Result<T, VaultError>>,
    {
        match self.waited(call).await {
            Some(result) => result.map_err(transit_error),
            None => Err(TransitError::Unavailable(format!(
                "Vault unreachable: this batch has waited on Vault for its whole \
                 policy.vault_deadline ({}) without an answer",
                humantime::format_duration(self.vault_budget)
            ))),
        }
    }

    /// Awaits a host call that waits on a server (Vault, the schema registry): its time
    /// is the host's, not the guest's, and counts against the batch's wait budget;
    /// `None` when that budget ran out first.
    async fn waited<T>(&mut self, call: impl Future<Output = T>) -> Option<T> {
        let started = Instant::now();
        let output = tokio::time::timeout_at(self.vault_deadline, call).await;
        self.host_time += started.elapsed();
        output.ok()
    }

    fn vault(&self) -> Result<VaultClient, TransitError> {
        self.vault.clone().ok_or_else(no_vault)
    }

    fn envelopes(&self) -> Result<Arc<Envelopes>, TransitError> {
        self.envelopes.clone().ok_or_else(no_vault)
    }
}

fn no_vault() -> TransitError {
    TransitError::Unavailable("no Vault is configured for this run (policy validation only)".into())
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How a Vault failure looks to a policy.
fn transit_error(error: VaultError) -> TransitError {
    let message = error.to_string();
    match error {
        VaultError::KeyNotFound { .. } => TransitError::KeyNotFound(message),
        VaultError::PermissionDenied { .. } => TransitError::PermissionDenied(message),
        VaultError::InvalidRequest { .. } | VaultError::SubjectForgotten => {
            TransitError::InvalidInput(message)
        }
        // A missing mount or a refused login is an operator's fix, not the record's
        // fault: the pipeline pauses (and says why) rather than dead-letter everything.
        VaultError::Unavailable { .. }
        | VaultError::MountNotFound { .. }
        | VaultError::Auth { .. } => TransitError::Unavailable(message),
        VaultError::Protocol { .. } => TransitError::Other(message),
    }
}

fn item_error(error: ItemError) -> TransitError {
    if error.is_invalid_input() {
        TransitError::InvalidInput(error.message)
    } else {
        TransitError::Other(error.message)
    }
}

fn per_item<T>(results: Vec<Result<T, ItemError>>) -> Vec<Result<T, TransitError>> {
    results
        .into_iter()
        .map(|result| result.map_err(item_error))
        .collect()
}

impl types::Host for GuestState {}

impl transit::Host for GuestState {
    async fn encrypt(
        &mut self,
        key: String,
        items: Vec<EncryptItem>,
    ) -> Result<Vec<Result<String, TransitError>>, TransitError> {
        let inputs: Vec<EncryptInput<'_>> = items
            .iter()
            .map(|item| EncryptInput::new(&item.plaintext).with_context(item.context.as_deref()))
            .collect();
        let vault = self.vault()?;
        self.vault_call(vault.encrypt_batch(&key, &inputs))
            .await
            .map(per_item)
    }

    async fn encrypt_bound(
        &mut self,
        key: String,
        items: Vec<BoundEncryptItem>,
    ) -> Result<Vec<Result<String, TransitError>>, TransitError> {
        let inputs: Vec<EncryptInput<'_>> = items
            .iter()
            .map(|item| {
                EncryptInput::new(&item.plaintext)
                    .with_context(item.context.as_deref())
                    .with_associated_data(Some(&item.associated_data))
            })
            .collect();
        let vault = self.vault()?;
        self.vault_call(vault.encrypt_batch(&key, &inputs))
            .await
            .map(per_item)
    }

    async fn decrypt_bound(
        &mut self,
        key: String,
        items: Vec<BoundDecryptItem>,
    ) -> Result<Vec<Result<Vec<u8>, TransitError>>, TransitError> {
        let inputs: Vec<DecryptInput<'_>> = items
            .iter()
            .map(|item| {
                DecryptInput::new(&item.ciphertext)
                    .with_context(item.context.as_deref())
                    .with_associated_data(Some(&item.associated_data))
            })
            .collect();
        let vault = self.vault()?;
        self.vault_call(vault.decrypt_batch(&key, &inputs))
            .await
            .map(per_item)
    }

    async fn decrypt(
        &mut self,
        key: String,
        items: Vec<DecryptItem>,
    ) -> Result<Vec<Result<Vec<u8>, TransitError>>, TransitError> {
        let inputs = decrypt_inputs(&items);
        let vault = self.vault()?;
        self.vault_call(vault.decrypt_batch(&key, &inputs))
            .await
            .map(per_item)
    }

    async fn rewrap(
        &mut self,
        key: String,
        items: Vec<DecryptItem>,
    ) -> Result<Vec<Result<String, TransitError>>, TransitError> {
        let inputs = decrypt_inputs(&items);
        let vault = self.vault()?;
        self.vault_call(vault.rewrap_batch(&key, &inputs))
            .await
            .map(per_item)
    }

    async fn hmac(
        &mut self,
        key: String,
        inputs: Vec<Vec<u8>>,
    ) -> Result<Vec<Result<String, TransitError>>, TransitError> {
        let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let vault = self.vault()?;
        self.vault_call(vault.hmac_batch(&key, &inputs))
            .await
            .map(per_item)
    }
}

fn decrypt_inputs(items: &[DecryptItem]) -> Vec<DecryptInput<'_>> {
    items
        .iter()
        .map(|item| DecryptInput::new(&item.ciphertext).with_context(item.context.as_deref()))
        .collect()
}

impl envelope::Host for GuestState {
    async fn seal(
        &mut self,
        key: String,
        context: Option<Vec<u8>>,
        items: Vec<SealItem>,
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        let envelopes = self.envelopes()?;
        let inputs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|item| (item.plaintext.as_slice(), item.aad.as_slice()))
            .collect();
        self.vault_call(envelopes.seal(&key, context.as_deref(), &inputs))
            .await
    }

    async fn seal_v3(
        &mut self,
        key: String,
        context: Option<Vec<u8>>,
        options: WitSealOptions,
        items: Vec<SealItem>,
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        let envelopes = self.envelopes()?;
        let flags = Flags::parse(options.flags).map_err(|bits| {
            TransitError::InvalidInput(format!(
                "seal-options.flags 0x{bits:02x} has bits no envelope format gives a meaning"
            ))
        })?;
        let options = SealOptions {
            flags,
            compression: match options.compression {
                WitCompression::None => Compression::None,
                WitCompression::Zstd => Compression::Zstd,
                WitCompression::Lz4 => Compression::Lz4,
            },
            pad_to: options.pad_to,
        };
        let inputs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|item| (item.plaintext.as_slice(), item.aad.as_slice()))
            .collect();
        self.vault_call(envelopes.seal_v3(&key, context.as_deref(), options, &inputs))
            .await
    }

    async fn open(
        &mut self,
        key: String,
        context: Option<Vec<u8>>,
        items: Vec<OpenItem>,
    ) -> Result<Vec<Result<Vec<u8>, TransitError>>, TransitError> {
        let envelopes = self.envelopes()?;
        let max_plaintext = self
            .pipeline
            .as_ref()
            .map_or_else(default_max_plaintext, |view| view.max_plaintext());
        let inputs: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|item| (item.envelope.as_slice(), item.aad.as_slice()))
            .collect();
        let results = self
            .vault_call(envelopes.open(&key, context.as_deref(), &inputs, max_plaintext))
            .await?;
        // Every per-envelope failure is about the record: malformed, tampered, or
        // sealed under a key this policy does not open.
        Ok(results
            .into_iter()
            .map(|result| result.map_err(|error| TransitError::InvalidInput(error.to_string())))
            .collect())
    }
}

impl pipeline::Host for GuestState {
    async fn sink_topic(&mut self, source_topic: String) -> Result<String, String> {
        match &self.pipeline {
            Some(view) => view
                .sink_topic(&source_topic)
                .map(|topic| topic.to_string()),
            None => Err(
                "the policy runs outside a pipeline (kafka-transit validate): there is no \
                 sink topic"
                    .into(),
            ),
        }
    }
}

impl schema_registry::Host for GuestState {
    async fn schema_by_id(&mut self, id: u32) -> Result<WitSchema, RegistryError> {
        use crate::schema_registry::{RegistryError as Error, SchemaType};
        let Some(registry) = self
            .pipeline
            .as_ref()
            .and_then(|view| view.schema_registry())
            .cloned()
        else {
            return Err(RegistryError::Other(
                "no schema registry is configured: add a [schema_registry] table with its \
                 url to the pipeline's configuration"
                    .into(),
            ));
        };
        let schema = match self.waited(registry.schema_by_id(id)).await {
            None => {
                return Err(RegistryError::Unavailable(format!(
                    "the schema registry did not answer within this batch's \
                     policy.vault_deadline ({})",
                    humantime::format_duration(self.vault_budget)
                )))
            }
            Some(Err(error @ Error::NotFound { .. })) => {
                return Err(RegistryError::NotFound(error.to_string()))
            }
            Some(Err(error @ Error::Unavailable { .. })) => {
                return Err(RegistryError::Unavailable(error.to_string()))
            }
            Some(Err(error @ Error::Protocol { .. })) => {
                return Err(RegistryError::Other(error.to_string()))
            }
            Some(Ok(schema)) => schema,
        };
        Ok(WitSchema {
            schema_type: match schema.schema_type {
                SchemaType::Avro => WitSchemaType::Avro,
                SchemaType::Protobuf => WitSchemaType::Protobuf,
                SchemaType::Json => WitSchemaType::Json,
            },
            text: schema.text.clone(),
            references: schema
                .references
                .iter()
                .map(|(name, text)| schema_registry::Reference {
                    name: name.clone(),
                    text: text.clone(),
                })
                .collect(),
        })
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let policy = self.policy.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            Level::Error => tracing::error!(target: "policy", policy, "{message}"),
        }
    }
}
