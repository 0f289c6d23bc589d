//! Client of HashiCorp Vault's transit secrets engine.
//!
//! - [`VaultSettings`]: the `[vault]` table (token from env/file, or an AppRole, JWT or
//!   Kubernetes login; CA bundle;
//!   namespace; retries; batch limits).
//! - [`VaultClient`]: batch encrypt/decrypt/rewrap/hmac with per-item errors, chunked to
//!   Vault's limits; single-item encrypt/decrypt; data keys. Retries connection errors,
//!   timeouts, 412/429/5xx (jittered exponential backoff, `Retry-After`), follows one 307,
//!   renews (or re-obtains) the token in the background.
//!
//! Secrets (token, plaintext, data keys) never appear in `Debug` output, logs or errors.

mod auth;
mod backoff;
mod client;
mod error;
mod health;
mod metrics;
mod settings;
mod token;
mod wire;

pub use client::{AuthStats, VaultClient};
pub use error::{ItemError, VaultError};
pub use settings::{
    AppRoleSettings, JwtKind, JwtLoginSettings, VaultSettings, KUBERNETES_TOKEN_PATH,
    VAULT_MAX_BATCH_ITEMS, VAULT_MAX_REQUEST_BYTES,
};
pub use token::{DataKey, VaultToken};
pub use wire::{DecryptInput, EncryptInput};
