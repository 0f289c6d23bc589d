//! Readiness: is Vault reachable, unsealed and active, and does it accept the token?
//! One attempt each, without the retries of ordinary requests: a probe reports the
//! state now; the pipeline's own requests are the ones that wait Vault out.

use std::time::Duration;

use reqwest::StatusCode;

use super::client::VaultClient;
use super::metrics::probe_outcome;
use super::transport::{X_VAULT_REQUEST, X_VAULT_TOKEN};

/// A probe never waits longer than this, whatever `vault.request_timeout` says.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl VaultClient {
    /// `Ok` when `sys/health` says initialised, unsealed and active (or a standby, which
    /// forwards) and `auth/token/lookup-self` accepts the token; otherwise what is wrong,
    /// in a few words for a readiness body (never the token).
    pub async fn check_ready(&self) -> Result<(), String> {
        let transport = &self.inner.transport;
        let health = transport
            .http
            .get(format!(
                "{}/v1/sys/health?standbyok=true&perfstandbyok=true",
                transport.base
            ))
            .header(X_VAULT_REQUEST, "true");
        match self.probe("sys/health", health).await {
            Some(StatusCode::NOT_IMPLEMENTED) => return Err("vault: not initialised".into()),
            other => self.answered("sys/health", other)?,
        }
        let lookup = transport
            .http
            .get(format!("{}/v1/auth/token/lookup-self", transport.base))
            .headers(transport.common_headers.clone())
            .header(X_VAULT_TOKEN, transport.token_header());
        match self.probe("auth/token/lookup-self", lookup).await {
            Some(StatusCode::FORBIDDEN) => {
                Err("vault: the token was rejected (expired or revoked)".into())
            }
            other => self.answered("auth/token/lookup-self", other),
        }
    }

    /// Sends one probe request (no retries), counts it, and returns its status: `None`
    /// when nothing answered.
    async fn probe(&self, path: &str, request: reqwest::RequestBuilder) -> Option<StatusCode> {
        let transport = &self.inner.transport;
        // Counted once even if the caller stops waiting (then as `cancelled`).
        let timing = transport.metrics.start("", path);
        let status = request
            .timeout(transport.settings.request_timeout.min(PROBE_TIMEOUT))
            .send()
            .await
            .ok()
            .map(|response| response.status());
        timing.finish(probe_outcome(status));
        status
    }

    /// What every probe's status means: success, unreachable, sealed, or another answer.
    fn answered(&self, path: &str, status: Option<StatusCode>) -> Result<(), String> {
        match status {
            None => Err(format!(
                "vault: unreachable at {}",
                self.inner.transport.base
            )),
            Some(StatusCode::SERVICE_UNAVAILABLE) => Err("vault: sealed".into()),
            Some(status) if !status.is_success() => {
                Err(format!("vault: {path} answered HTTP {}", status.as_u16()))
            }
            Some(_) => Ok(()),
        }
    }
}
