//! The bottom layer: one logical HTTP request to Vault. Retries (connection errors,
//! timeouts, 412/429/5xx) with jittered backoff or `Retry-After`, one redirect within
//! `vault.address`'s origin, the token slot and its `X-Vault-Token` header, response
//! bodies (wiped when they can carry a secret), and what a refusal means as a
//! [`VaultError`].
//!
//! It knows HTTP and Vault's answer shapes, not where the token comes from nor what a
//! transit operation is: credentials (logins, renewal) and the transit API are built on
//! top of it, so the retry loop is the one place that decides what is retried, and the
//! token slot the one place that holds the token being sent.

mod body;
mod errors;
mod redirect;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::backoff::{parse_retry_after, retry_delay};
use super::error::VaultError;
use super::metrics::{self, VaultMetrics};
use super::settings::VaultSettings;
use super::token::VaultToken;
use super::wire::{self, Envelope};

pub(crate) use body::{ResponseBody, Secrecy};

pub(crate) const X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
pub(crate) const X_VAULT_REQUEST: HeaderName = HeaderName::from_static("x-vault-request");
const X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");

/// The HTTP side of one Vault client: connection pool, address, token slot, counters.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    /// Address without trailing '/'.
    pub(crate) base: String,
    /// `vault.address` parsed: the origin a redirect may lead back to.
    address: Url,
    /// Mount path without leading/trailing '/'.
    pub(crate) mount: String,
    pub(crate) settings: VaultSettings,
    /// Headers sent with every request (X-Vault-Request, namespace, content type).
    pub(crate) common_headers: HeaderMap,
    token: RwLock<TokenSlot>,
    requests: AtomicU64,
    pub(crate) metrics: VaultMetrics,
}

/// The token and its header, replaced together under one write lock: a request sees
/// either the old pair or the new one. No lock is held across an await, so a dropped
/// request future cannot leave it locked or half-written.
struct TokenSlot {
    token: VaultToken,
    header: HeaderValue,
}

/// A response that was not retried: its status and body.
pub(crate) struct Raw {
    pub status: StatusCode,
    pub body: ResponseBody,
}

/// What a request is about, for error messages, and how to treat it.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Path after `/v1/`.
    pub path: &'a str,
    pub key: Option<&'a str>,
    /// Send the token?
    pub auth: bool,
    /// Can the answer carry a secret (token, data key, plaintext)?
    pub secrecy: Secrecy,
}

/// How one attempt ended when it is not an answer to return.
struct Failure {
    detail: String,
    retry_after: Option<Duration>,
    /// Vault (or something at its address) answered with a status line.
    answered: bool,
}

impl Transport {
    /// The HTTP client for `settings` (timeouts, CA bundle, no automatic redirects) and
    /// the token slot holding `token`. No I/O.
    pub(crate) fn new(settings: &VaultSettings, token: VaultToken) -> Result<Self, VaultError> {
        settings
            .validate_except_token_source()
            .map_err(|detail| VaultError::Auth { detail })?;
        let mut builder = reqwest::Client::builder()
            // Redirects are followed by hand (see `redirect`): reqwest's policy would
            // carry the token header to wherever Vault points.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("kafka-transit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_cert {
            let certs = crate::secrets::ca_bundle(path, "vault.ca_cert", "Vault")
                .map_err(|detail| VaultError::Auth { detail })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| VaultError::Auth {
            detail: format!("cannot set up the HTTP client: {e}"),
        })?;

        let mut common_headers = HeaderMap::new();
        common_headers.insert(X_VAULT_REQUEST, HeaderValue::from_static("true"));
        common_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(ns) = &settings.namespace {
            let v = HeaderValue::from_str(ns.trim_matches('/')).map_err(|_| VaultError::Auth {
                detail: "vault.namespace is not a valid HTTP header value".into(),
            })?;
            common_headers.insert(X_VAULT_NAMESPACE, v);
        }
        let base = settings.address.trim().trim_end_matches('/').to_string();
        let address = Url::parse(&base).map_err(|e| VaultError::Auth {
            detail: format!("vault.address {base:?} is not a valid URL ({e})"),
        })?;
        let header = token_header(&token)?;
        Ok(Transport {
            http,
            base,
            address,
            mount: settings.mount_path().to_string(),
            settings: settings.clone(),
            common_headers,
            token: RwLock::new(TokenSlot { token, header }),
            requests: AtomicU64::new(0),
            metrics: VaultMetrics::default(),
        })
    }

    /// HTTP requests actually sent, retries and redirects included.
    pub(crate) fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `<mount>/<op>/<key>` with the key percent-encoded where needed.
    pub(crate) fn op_path(&self, op: &str, key: &str) -> Result<String, VaultError> {
        if key.is_empty() {
            return Err(VaultError::InvalidRequest {
                mount: self.mount.clone(),
                key: String::new(),
                message: "the transit key name is empty; set a key name".into(),
            });
        }
        // Percent-encoding leaves dots alone, and a URL normalises "..": the request
        // would reach another path than the one named.
        if key == "." || key == ".." {
            return Err(VaultError::InvalidRequest {
                mount: self.mount.clone(),
                key: key.to_string(),
                message: "\".\" and \"..\" are not transit key names".into(),
            });
        }
        let mut p = String::with_capacity(self.mount.len() + op.len() + key.len() + 2);
        p.push_str(&self.mount);
        p.push('/');
        p.push_str(op);
        p.push('/');
        push_escaped(&mut p, key);
        Ok(p)
    }

    // The slot is replaced in one assignment, so even a lock poisoned by a panic
    // elsewhere holds a whole pair: recover it rather than spread the panic.
    pub(crate) fn current_token(&self) -> VaultToken {
        let slot = self.token.read().unwrap_or_else(PoisonError::into_inner);
        slot.token.clone()
    }

    pub(crate) fn set_token(&self, token: VaultToken) -> Result<(), VaultError> {
        let header = token_header(&token)?;
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = TokenSlot { token, header };
        Ok(())
    }

    pub(crate) fn token_header(&self) -> HeaderValue {
        let slot = self.token.read().unwrap_or_else(PoisonError::into_inner);
        slot.header.clone()
    }

    /// Sends one logical request, retrying retryable failures and following one
    /// same-origin redirect. Returns every response that is not retried (including 4xx)
    /// as `Raw`.
    ///
    /// Cancellation-safe: dropping the future at any await leaves no lock held and no
    /// state half-written (the only shared writes are counters), and counts the request
    /// once, as `cancelled`.
    pub(crate) async fn send(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<Bytes>,
    ) -> Result<Raw, VaultError> {
        let timing = self.metrics.start(&self.mount, target.path);
        let result = self.send_with_retries(method, target, body).await;
        let status = result.as_ref().ok().map(|raw| raw.status.as_u16());
        timing.finish(metrics::outcome(&result, status));
        result
    }

    async fn send_with_retries(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<Bytes>,
    ) -> Result<Raw, VaultError> {
        let s = &self.settings;
        let url = format!("{}/v1/{}", self.base, target.path);
        let mut rb = self
            .http
            .request(method, &url)
            .headers(self.common_headers.clone())
            .timeout(s.request_timeout);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let mut template = rb.build().map_err(|e| VaultError::Protocol {
            detail: format!("cannot build a request for {}: {e}", target.path),
        })?;
        let mut redirected = false;
        // Whether any attempt got a status line back: if none did, Vault is unreachable.
        let mut any_answer = false;
        let mut retry: u32 = 0;
        loop {
            let mut req = template
                .try_clone()
                .expect("request bodies are in memory and clonable");
            if target.auth {
                req.headers_mut().insert(X_VAULT_TOKEN, self.token_header());
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.attempt(req, target).await? {
                Err(failure) => failure,
                Ok((status, location, body)) if is_307(status) => {
                    any_answer = true;
                    if redirected {
                        return Err(VaultError::Protocol {
                            detail: format!(
                                "Vault redirected {} more than once; point vault.address at the active node",
                                target.path
                            ),
                        });
                    }
                    drop(body);
                    let next = redirect::target(
                        &self.address,
                        template.url(),
                        location.as_deref(),
                        target.path,
                    )?;
                    tracing::debug!(path = target.path, to = %next, "following Vault redirect");
                    *template.url_mut() = next;
                    redirected = true;
                    continue;
                }
                Ok((status, _, body)) if !is_retryable_status(status) => {
                    return Ok(Raw { status, body });
                }
                Ok((status, retry_after, body)) => {
                    let msg = wire::error_message(&body)
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
                    Failure {
                        detail: format!("HTTP {}: {msg}", status.as_u16()),
                        retry_after: retry_after.as_deref().and_then(parse_retry_after),
                        answered: true,
                    }
                }
            };
            any_answer |= failure.answered;

            if retry >= s.max_retries {
                tracing::warn!(
                    path = target.path,
                    attempts = retry + 1,
                    error = %failure.detail,
                    "Vault request failed; giving up"
                );
                // "Vault unreachable" leads the detail when nothing ever answered, so
                // that callers (and operators) can tell a blackholed or down Vault from
                // one that answers sealed or rate limited: see `VaultError::is_unreachable`.
                let lead = if any_answer {
                    ""
                } else {
                    VaultError::UNREACHABLE_PREFIX
                };
                return Err(VaultError::Unavailable {
                    mount: self.mount.clone(),
                    key: target.key.map(str::to_owned),
                    detail: format!(
                        "{lead}{} (gave up after {} attempts)",
                        failure.detail,
                        retry + 1
                    ),
                });
            }
            let delay = retry_delay(
                retry,
                failure.retry_after,
                s.retry_initial_backoff,
                s.retry_max_backoff,
            );
            if retry == 0 {
                tracing::debug!(path = target.path, error = %failure.detail, delay = ?delay, "retrying Vault request");
            } else {
                tracing::warn!(path = target.path, attempt = retry + 1, error = %failure.detail, delay = ?delay, "retrying Vault request");
            }
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One HTTP exchange: the status, the `Location` (for a redirect) or else the
    /// `Retry-After` header, and the body; `Ok(Err(_))` for a transport failure worth
    /// retrying, `Err(_)` for a request that cannot be sent at all.
    async fn attempt(
        &self,
        req: reqwest::Request,
        target: Target<'_>,
    ) -> Result<Result<(StatusCode, Option<String>, ResponseBody), Failure>, VaultError> {
        let timeout = self.settings.request_timeout;
        let mut answered = false;
        // The per-request reqwest timeout covers connect + headers + body; the outer
        // timeout is a safety net.
        let exchange = tokio::time::timeout(timeout + Duration::from_millis(50), async {
            let resp = self.http.execute(req).await?;
            answered = true;
            let status = resp.status();
            let header = if is_307(status) {
                LOCATION
            } else {
                RETRY_AFTER
            };
            let header = resp
                .headers()
                .get(header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = body::read(resp, target.secrecy).await?;
            Ok::<_, reqwest::Error>((status, header, body))
        })
        .await;
        let detail = match exchange {
            Ok(Ok(answer)) => return Ok(Ok(answer)),
            Ok(Err(e)) if e.is_builder() => {
                return Err(VaultError::Protocol {
                    detail: format!("invalid request for {}: {e}", target.path),
                })
            }
            Ok(Err(e)) => errors::transport_detail(&e, timeout),
            Err(_) => format!(
                "no response within {} (vault.request_timeout)",
                humantime::format_duration(timeout)
            ),
        };
        Ok(Err(Failure {
            detail,
            retry_after: None,
            answered,
        }))
    }

    /// A single-item write whose `data` is `D`.
    pub(crate) async fn write_data<D: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
        secrecy: Secrecy,
    ) -> Result<D, VaultError> {
        let target = Target {
            path,
            key: Some(key),
            auth: true,
            secrecy,
        };
        let raw = self
            .send(Method::POST, target, Some(Bytes::from(body)))
            .await?;
        if !raw.status.is_success() {
            return Err(self.error_for(&raw, target));
        }
        let env: Envelope<D> = parse_json(&raw.body, path)?;
        log_warnings(path, env.warnings.as_deref());
        env.data.ok_or_else(|| VaultError::Protocol {
            detail: format!("response of {path} has no data"),
        })
    }
}

fn token_header(token: &VaultToken) -> Result<HeaderValue, VaultError> {
    token.header_value().map_err(|_| VaultError::Auth {
        detail: "the Vault token contains characters not allowed in an HTTP header; check the token source (vault.token_env / vault.token_file)".into(),
    })
}

pub(crate) fn log_warnings(path: &str, warnings: Option<&[String]>) {
    if let Some(w) = warnings {
        if !w.is_empty() {
            tracing::debug!(path, warnings = ?w, "Vault returned warnings");
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T, VaultError> {
    serde_json::from_slice(body).map_err(|e| VaultError::Protocol {
        detail: format!("cannot parse the response of {path}: {e}"),
    })
}

fn is_307(s: StatusCode) -> bool {
    matches!(
        s,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
    )
}

fn is_retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 412 | 429 | 500 | 502 | 503 | 504)
}

/// Percent-encodes everything except unreserved characters and '@'.
fn push_escaped(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn transport() -> Transport {
        let mut s = VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        s.mount = "/team/transit/".into();
        Transport::new(&s, VaultToken::new("hvs.secret-token-value".into())).unwrap()
    }

    #[test]
    fn paths_and_escaping() {
        let t = transport();
        assert_eq!(t.mount, "team/transit");
        assert_eq!(
            t.op_path("encrypt", "orders.v1@x").unwrap(),
            "team/transit/encrypt/orders.v1@x"
        );
        assert_eq!(
            t.op_path("decrypt", "a/b?c").unwrap(),
            "team/transit/decrypt/a%2Fb%3Fc"
        );
        assert!(t.op_path("encrypt", "").is_err());
        assert!(t.op_path("encrypt", "..").is_err());
        assert_eq!(t.base, "http://127.0.0.1:1");
    }

    #[test]
    fn retryable_statuses() {
        for s in [412, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 204, 307, 400, 403, 404, 405, 413, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(s).unwrap()));
        }
    }

    #[test]
    fn token_slot_swaps_token_and_header_together() {
        let t = transport();
        assert_eq!(t.token_header().to_str().unwrap(), "hvs.secret-token-value");
        t.set_token(VaultToken::new("hvs.next".into())).unwrap();
        assert_eq!(t.current_token().expose(), "hvs.next");
        assert_eq!(t.token_header().to_str().unwrap(), "hvs.next");
        // A token a header cannot carry leaves the slot as it was.
        assert!(t.set_token(VaultToken::new("bad\ntoken".into())).is_err());
        assert_eq!(t.current_token().expose(), "hvs.next");
        assert!(t.token_header().is_sensitive());
    }

    /// Nothing ever answered (a refused connection here): the detail leads with
    /// "Vault unreachable" and the error says so.
    #[tokio::test]
    async fn no_answer_at_all_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut s = VaultSettings::for_token(format!("http://{addr}"), "UNUSED");
        s.max_retries = 1;
        s.retry_initial_backoff = Duration::from_millis(1);
        s.retry_max_backoff = Duration::from_millis(2);
        let t = Transport::new(&s, VaultToken::new("hvs.t".into())).unwrap();
        let target = Target {
            path: "transit/encrypt/k",
            key: Some("k"),
            auth: true,
            secrecy: Secrecy::Public,
        };
        let e = t.send(Method::POST, target, None).await.err().unwrap();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(e.is_retryable());
        assert!(
            e.to_string().contains("Vault unreachable: cannot connect"),
            "{e}"
        );
        assert_eq!(t.requests_sent(), 2);
    }
}
