//! Client of HashiCorp Vault's transit secrets engine.
//!
//! - [`VaultSettings`]: the `[vault]` table (token from env/file, or an AppRole, JWT or
//!   Kubernetes login; CA bundle;
//!   namespace; retries; batch limits).
//! - [`VaultClient`]: batch encrypt/decrypt/rewrap/hmac with per-item errors, chunked to
//!   Vault's limits; single-item encrypt/decrypt; data keys. Retries connection errors,
//!   timeouts, 412/429/5xx (jittered exponential backoff, `Retry-After`), follows one 307
//!   within `vault.address`'s origin, renews (or re-obtains) the token in the background.
//!
//! Secrets (token, plaintext, data keys) never appear in `Debug` output, logs or errors;
//! answers that carry them are read, parsed and decoded in memory wiped on drop.
//!
//! # Layers
//!
//! Each module uses only those below it:
//!
//! 1. `client` (and `health`, its readiness probes): [`VaultClient`], the public API.
//! 2. `batch`: the one chunked batch call; encrypt, decrypt, rewrap and hmac are four
//!    descriptions of it.
//! 3. `credentials`: where the token comes from, logins, `lookup-self`, renewal.
//! 4. `transport`: one logical HTTP request (retries, backoff, redirects, the token
//!    slot, response bodies, refusals as [`VaultError`]).
//! 5. leaves: `settings`, `error`, `token`, `wire` (JSON shapes), `backoff`, `metrics`.
//!
//! Why this order: what is retried, where the token goes and how an answer is read are
//! decided once, in the transport, for transit calls and logins alike; credentials need
//! only "send this without a token" and "put this token in the slot", so the renewal
//! task holds the transport (weakly) and nothing of the client; and the public API is a
//! thin layer whose changes cannot reach the retry loop.

mod backoff;
mod batch;
mod client;
mod credentials;
mod error;
mod health;
mod keys;
mod metrics;
mod settings;
mod token;
mod transport;
mod wire;

pub use client::VaultClient;
pub use credentials::AuthStats;
pub use error::{ItemError, VaultError};
pub use settings::{
    AppRoleSettings, JwtKind, JwtLoginSettings, VaultSettings, KUBERNETES_TOKEN_PATH,
    VAULT_MAX_BATCH_ITEMS, VAULT_MAX_REQUEST_BYTES,
};
pub use token::{DataKey, VaultToken};
pub use wire::{DecryptInput, EncryptInput};
