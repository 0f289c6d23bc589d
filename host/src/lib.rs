//! kafka-transit: encrypts Kafka records with HashiCorp Vault's transit engine, through
//! data-protection policies that are WebAssembly components.
//!
//! ```text
//!  source cluster            kafka-transit                          sink cluster
//! ┌────────────┐  batch  ┌──────────────────────────────┐  records ┌────────────┐
//! │ topic(s)   │ ──────▶ │ pipeline ─▶ policy (wasm)     │ ───────▶ │ sink topic │
//! └────────────┘         │              │ transit import │          └────────────┘
//!       ▲  dead letters  │              ▼                │
//!       └─────────────── │            vault client ──────┼──▶ Vault transit
//!                        └──────────────────────────────┘
//! ```
//!
//! - [`cli`] — the `kafka-transit` command line.
//! - [`config`] — `pipeline.toml`.
//! - [`pipeline`] — the consume → transform → produce → commit loop.
//! - [`kafka`] — rdkafka clients and record conversions.
//! - [`policy`] — wasmtime, the WIT bindings and the host imports.
//! - [`scaffold`] — `kafka-transit policy new` and `policy wit`, for policy authors.
//! - [`vault`] — the Vault transit client.
//! - [`access`] — the Vault paths a pipeline needs: `vault-policy`, and the check at start.
//! - [`envelope`] — envelope encryption under Vault-wrapped data keys (wire format v1).
//! - [`metrics`] — counters and progress.
//! - [`admin`] — the admin listener: `/metrics`, health probes, policy reload.
//! - [`process`] — process-wide protections (no core dumps).
//! - `demo` — the zero-setup demonstration (feature `demo`, on by default).

pub mod access;
pub mod admin;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod envelope;
pub mod forget;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod scaffold;
pub mod schema_registry;
pub mod secrets;
pub mod topics;
pub mod vault;
