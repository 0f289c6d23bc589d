//! Keeping the token alive: a background task renews it at about 2/3 of its lease, and
//! gets a new one (a login, or the variable or file read again) when renewal is refused,
//! capped near the max TTL, or not possible.
//!
//! The task holds the transport weakly and is aborted when the client goes: it never
//! keeps a dropped client alive, and no caller's future (dropped or not) takes part in
//! it. It replaces the token through the transport's slot, in one step.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::login::{login, lookup_self, renew_self};
use super::source::{describe_source, TokenSource};
use super::Credentials;
use crate::vault::backoff::backoff_delay;
use crate::vault::error::VaultError;
use crate::vault::transport::Transport;

/// The renewal task; aborted when dropped (with the last clone of the client).
pub(crate) struct RenewalTask(JoinHandle<()>);

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task keeping the token alive; `None` when there is nothing to do (a token
/// without TTL, or one that can be neither renewed nor replaced).
pub(super) fn start(
    transport: &Arc<Transport>,
    credentials: &Arc<Credentials>,
    ttl: Duration,
    renewable: bool,
) -> Option<RenewalTask> {
    if ttl.is_zero() {
        return None;
    }
    let can_relogin = !matches!(credentials.source, TokenSource::Fixed);
    if !renewable && !can_relogin {
        return None;
    }
    Some(RenewalTask(tokio::spawn(renewal_loop(
        Arc::downgrade(transport),
        credentials.clone(),
        ttl,
        renewable,
    ))))
}

/// Gets a new token: a login, or re-reading the token file / env var.
async fn relogin(
    transport: &Transport,
    credentials: &Credentials,
) -> Result<(Duration, bool), VaultError> {
    let source = &credentials.source;
    match source {
        TokenSource::Login(_) => {
            let a = login(transport, source).await?;
            transport.set_token(a.client_token)?;
            Ok((Duration::from_secs(a.lease_duration), a.renewable))
        }
        TokenSource::Env(_) | TokenSource::File(_) => {
            let t = source.read_token()?;
            if t.expose() == transport.current_token().expose() {
                return Err(VaultError::Auth {
                    detail: format!(
                        "the token can no longer be renewed and {} still holds the same token; provide a new one",
                        describe_source(source)
                    ),
                });
            }
            transport.set_token(t)?;
            let look = lookup_self(transport, source).await?;
            Ok((Duration::from_secs(look.ttl), look.renewable))
        }
        TokenSource::Fixed => Err(VaultError::Auth {
            detail:
                "the token can no longer be renewed and was given directly; no way to get a new one"
                    .into(),
        }),
    }
}

/// Renews at ~2/3 of the lease; logs in again when renewal is refused, the token is not
/// renewable, or Vault capped the renewal (near the token's max TTL).
async fn renewal_loop(
    transport: Weak<Transport>,
    credentials: Arc<Credentials>,
    ttl: Duration,
    renewable: bool,
) {
    // The TTL each renewal asks for: the TTL the token had when obtained.
    let mut increment = ttl;
    let mut lease = ttl;
    let mut renewable = renewable;
    let mut obtained = Instant::now();
    // Set when Vault granted less than asked: the next step is a re-login.
    let mut capped = false;
    let mut failures: u32 = 0;
    loop {
        let due = if failures == 0 {
            obtained + lease * 2 / 3
        } else {
            // Retry sooner, but not in a tight loop.
            let expires = obtained + lease;
            let now = Instant::now();
            let left = expires.saturating_duration_since(now);
            let d = backoff_delay(
                failures - 1,
                Duration::from_millis(200),
                Duration::from_secs(30),
            );
            let d = if left.is_zero() { d } else { d.min(left / 2) };
            now + d.max(Duration::from_millis(100))
        };
        tokio::time::sleep_until(due).await;
        let Some(transport) = transport.upgrade() else {
            return;
        };

        let mut done = false;
        if renewable && !capped {
            let started = Instant::now();
            match renew_self(&transport, increment).await {
                Ok((a, warned_capped)) => {
                    credentials.renewals.fetch_add(1, Ordering::Relaxed);
                    let (granted, renewable_now) = (a.lease_duration, a.renewable);
                    let token = a.client_token;
                    if !token.expose().is_empty()
                        && token.expose() != transport.current_token().expose()
                    {
                        let _ = transport.set_token(token);
                    }
                    let granted = Duration::from_secs(granted);
                    tracing::debug!(lease = ?granted, "renewed the Vault token");
                    obtained = started;
                    lease = granted;
                    renewable = renewable_now;
                    // Less than asked for (minus rounding): the max TTL is near.
                    capped = warned_capped || granted < increment || !renewable_now;
                    // Nothing granted: get a new token right away.
                    done = !granted.is_zero();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the Vault token failed; logging in again");
                }
            }
        }
        if !done {
            let started = Instant::now();
            match relogin(&transport, &credentials).await {
                Ok((new_lease, new_renewable)) => {
                    credentials.logins.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(lease = ?new_lease, "obtained a new Vault token");
                    obtained = started;
                    lease = new_lease;
                    if !new_lease.is_zero() {
                        increment = new_lease;
                    }
                    renewable = new_renewable;
                    capped = false;
                    done = true;
                    if new_lease.is_zero() {
                        return; // a token without TTL needs no care
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not obtain a new Vault token; will retry");
                }
            }
        }
        failures = if done { 0 } else { failures.saturating_add(1) };
        if !done && Instant::now() >= obtained + lease {
            tracing::error!("the Vault token has expired and could not be renewed or replaced");
        }
    }
}
