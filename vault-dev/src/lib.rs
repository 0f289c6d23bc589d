//! # vault-dev
//!
//! A HashiCorp-Vault-compatible **transit** server for development and tests.
//! It is **not** a replacement for Vault: state is in memory unless a data
//! directory is given (and then keys are stored unencrypted), sealing is a
//! switch with no real unseal keys, there is no policy language and no audit log.
//!
//! The behaviour it matches is described in the project's
//! `vault-transit-api.md`; where that is silent, real Vault's behaviour wins.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = vault_dev::Server::start(vault_dev::ServerConfig::default()).await?;
//! println!("{} (token {})", server.url(), server.root_token());
//! server.faults().fail_next(2, 503); // the next two requests fail
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod batch;
mod ciphertext;
mod duration;
mod faults;
mod fields;
mod gobase64;
mod http;
mod jwt;
mod jwt_signer;
mod keys;
mod server;
mod state;
mod store;
mod sys;
mod transit;

pub use auth::AppRole;
pub use duration::parse as parse_duration;
pub use faults::{Faults, Stats};
pub use jwt_signer::{unix_now, JwtSigner};
pub use server::{RunningServer, Server, ServerConfig, TlsFiles};
