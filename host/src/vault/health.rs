//! Readiness: is Vault reachable, unsealed and active, and does it accept the token?
//! One attempt each, without the retries of ordinary requests: a probe reports the
//! state now; the pipeline's own requests are the ones that wait Vault out.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::client::{VaultClient, X_VAULT_REQUEST, X_VAULT_TOKEN};

/// A probe never waits longer than this, whatever `vault.request_timeout` says.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl VaultClient {
    /// `Ok` when `sys/health` says initialised, unsealed and active (or a standby, which
    /// forwards) and `auth/token/lookup-self` accepts the token; otherwise what is wrong,
    /// in a few words for a readiness body (never the token).
    pub async fn check_ready(&self) -> Result<(), String> {
        let inner = &self.inner;
        let timeout = inner.settings.request_timeout.min(PROBE_TIMEOUT);
        let health = format!(
            "{}/v1/sys/health?standbyok=true&perfstandbyok=true",
            inner.base
        );
        let started = Instant::now();
        let answer = inner
            .http
            .get(&health)
            .header(X_VAULT_REQUEST, "true")
            .timeout(timeout)
            .send()
            .await;
        let status = answer.as_ref().ok().map(|response| response.status());
        inner
            .metrics
            .observe_probe("sys/health", status, started.elapsed());
        match status {
            None => return Err(format!("vault: unreachable at {}", inner.base)),
            Some(StatusCode::SERVICE_UNAVAILABLE) => return Err("vault: sealed".into()),
            Some(StatusCode::NOT_IMPLEMENTED) => return Err("vault: not initialised".into()),
            Some(status) if !status.is_success() => {
                return Err(format!(
                    "vault: sys/health answered HTTP {}",
                    status.as_u16()
                ))
            }
            Some(_) => {}
        }

        let lookup = format!("{}/v1/auth/token/lookup-self", inner.base);
        let started = Instant::now();
        let answer = inner
            .http
            .get(&lookup)
            .headers(inner.common_headers.clone())
            .header(X_VAULT_TOKEN, inner.token_header())
            .timeout(timeout)
            .send()
            .await;
        let status = answer.as_ref().ok().map(|response| response.status());
        inner
            .metrics
            .observe_probe("auth/token/lookup-self", status, started.elapsed());
        match status {
            None => Err(format!("vault: unreachable at {}", inner.base)),
            Some(StatusCode::FORBIDDEN) => {
                Err("vault: the token was rejected (expired or revoked)".into())
            }
            Some(StatusCode::SERVICE_UNAVAILABLE) => Err("vault: sealed".into()),
            Some(status) if !status.is_success() => Err(format!(
                "vault: auth/token/lookup-self answered HTTP {}",
                status.as_u16()
            )),
            Some(_) => Ok(()),
        }
    }
}
