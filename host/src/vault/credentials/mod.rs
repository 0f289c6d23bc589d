//! The token: where it comes from (`source`), the requests that obtain and check it
//! (`login`), and the background task that keeps it valid (`renewal`).
//!
//! Built on the transport alone: a login is a request without a token, and a new token
//! goes into the transport's slot. The client above only asks for a first token and the
//! counters, so logins and renewal can change without touching the transit API, and
//! the renewal task needs nothing of the client to outlive any one call.

mod login;
mod renewal;
mod source;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use renewal::RenewalTask;
pub(crate) use source::{check_credentials, TokenSource};

use super::error::VaultError;
use super::token::VaultToken;
use super::transport::Transport;

/// Counters of the token lifecycle (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Successful logins (AppRole, JWT, Kubernetes) or token re-reads after the first.
    pub logins: u64,
    /// Successful `renew-self` calls.
    pub renewals: u64,
}

/// Where the token comes from, and what has been done to keep it.
pub(crate) struct Credentials {
    source: TokenSource,
    logins: AtomicU64,
    renewals: AtomicU64,
}

impl Credentials {
    pub(crate) fn new(source: TokenSource) -> Self {
        Credentials {
            source,
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> AuthStats {
        AuthStats {
            logins: self.logins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }

    /// The token to start with: read from its variable or file, or empty when a login
    /// will provide it ([`Credentials::establish`]).
    pub(crate) fn initial_token(&self) -> Result<VaultToken, VaultError> {
        match &self.source {
            TokenSource::Login(_) => Ok(VaultToken::new(String::new())),
            other => other.read_token(),
        }
    }

    /// Logs in when that is the source, checks the token with `lookup-self`, and starts
    /// keeping it alive. Dropped halfway, it leaves at most a fresh token in the slot
    /// and no task behind.
    pub(crate) async fn establish(
        self: &Arc<Self>,
        transport: &Arc<Transport>,
    ) -> Result<Option<RenewalTask>, VaultError> {
        let login = if matches!(self.source, TokenSource::Login(_)) {
            let auth = login::login(transport, &self.source).await?;
            let lease = (auth.lease_duration, auth.renewable);
            transport.set_token(auth.client_token)?;
            self.logins.fetch_add(1, Ordering::Relaxed);
            Some(lease)
        } else {
            None
        };
        let look = login::lookup_self(transport, &self.source).await?;
        let (ttl, renewable) = login.unwrap_or((look.ttl, look.renewable));
        Ok(renewal::start(
            transport,
            self,
            Duration::from_secs(ttl),
            renewable,
        ))
    }
}
