//! The transit client: HTTP transport with retries and redirects, batch operations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::auth::{self, TokenSource};
use super::backoff::{parse_retry_after, retry_delay};
use super::error::{ItemError, VaultError};
use super::metrics::{self, VaultMetrics};
use super::settings::VaultSettings;
use super::token::{DataKey, VaultToken};
use super::wire::{self, *};

pub(crate) const X_VAULT_TOKEN: HeaderName = HeaderName::from_static("x-vault-token");
pub(crate) const X_VAULT_REQUEST: HeaderName = HeaderName::from_static("x-vault-request");
const X_VAULT_NAMESPACE: HeaderName = HeaderName::from_static("x-vault-namespace");

/// How many chunks of one large batch call are in flight at once.
const CHUNK_CONCURRENCY: usize = 4;

/// A client of one transit mount. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct VaultClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.base)
            .field("mount", &self.inner.mount)
            .field("token", &"<redacted>")
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// Address without trailing '/'.
    pub(crate) base: String,
    /// Mount path without leading/trailing '/'.
    pub(crate) mount: String,
    pub(crate) settings: VaultSettings,
    /// Headers sent with every request (X-Vault-Request, namespace, content type).
    pub(crate) common_headers: HeaderMap,
    token: RwLock<TokenSlot>,
    pub(crate) source: TokenSource,
    requests: AtomicU64,
    pub(crate) metrics: VaultMetrics,
    pub(crate) logins: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct TokenSlot {
    token: VaultToken,
    header: HeaderValue,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut g) = self.renewer.lock() {
            if let Some(h) = g.take() {
                h.abort();
            }
        }
    }
}

/// Counters of the token lifecycle (for tests and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Successful logins (AppRole, JWT, Kubernetes) or token re-reads after the first.
    pub logins: u64,
    /// Successful `renew-self` calls.
    pub renewals: u64,
}

/// A response that was not retried: its status and body.
pub(crate) struct Raw {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// What a request is about, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Path after `/v1/`.
    pub path: &'a str,
    pub key: Option<&'a str>,
    /// Send the token?
    pub auth: bool,
}

impl VaultClient {
    /// Reads the token (or logs in with AppRole, a JWT or Kubernetes and starts renewing
    /// the token in the background), then checks the token with `lookup-self`.
    pub async fn connect(settings: &VaultSettings) -> Result<VaultClient, VaultError> {
        settings
            .validate()
            .map_err(|detail| VaultError::Auth { detail })?;
        let source = TokenSource::from_settings(settings);
        // The first token: read it, or log in (a request without token).
        let (token, needs_login) = match &source {
            TokenSource::Login(_) => (VaultToken::new(String::new()), true),
            other => (other.read_token()?, false),
        };
        let client = Self::build(settings, token, source)?;
        let login_auth = if needs_login {
            let a = auth::login(&client.inner, &client.inner.source).await?;
            client
                .inner
                .set_token(VaultToken::new(a.client_token.clone()))?;
            client.inner.logins.fetch_add(1, Ordering::Relaxed);
            Some(a)
        } else {
            None
        };
        let look = auth::lookup_self(&client.inner).await?;
        let (ttl, renewable) = match &login_auth {
            Some(a) => (a.lease_duration, a.renewable),
            None => (look.ttl, look.renewable),
        };
        auth::start_renewal(&client.inner, Duration::from_secs(ttl), renewable);
        Ok(client)
    }

    /// Everything `connect` checks before it talks to Vault: the settings, that the
    /// token (or the AppRole IDs, or the JWT) can be read from the variable or file they name, and
    /// that the CA bundle loads. Reads each secret and drops it at once.
    pub fn preflight(settings: &VaultSettings) -> Result<(), VaultError> {
        settings
            .validate()
            .map_err(|detail| VaultError::Auth { detail })?;
        auth::check_credentials(settings)?;
        Self::build(settings, VaultToken::new(String::new()), TokenSource::Fixed).map(drop)
    }

    /// A client using `token` as is: no I/O, no renewal.
    pub fn with_token(
        settings: &VaultSettings,
        token: VaultToken,
    ) -> Result<VaultClient, VaultError> {
        Self::build(settings, token, TokenSource::Fixed)
    }

    fn build(
        settings: &VaultSettings,
        token: VaultToken,
        source: TokenSource,
    ) -> Result<VaultClient, VaultError> {
        settings
            .validate_except_token_source()
            .map_err(|detail| VaultError::Auth { detail })?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("kafka-transit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_cert {
            let pem = std::fs::read(path).map_err(|e| VaultError::Auth {
                detail: format!(
                    "cannot read vault.ca_cert {}: {e}; point it to a readable PEM bundle",
                    path.display()
                ),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| VaultError::Auth {
                    detail: format!(
                        "vault.ca_cert {} is not a valid PEM certificate bundle: {e}",
                        path.display()
                    ),
                })?;
            if certs.is_empty() {
                return Err(VaultError::Auth {
                    detail: format!(
                        "vault.ca_cert {} holds no PEM certificates; point it to the CA bundle that signed Vault's certificate",
                        path.display()
                    ),
                });
            }
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
        let header = token_header(&token)?;
        Ok(VaultClient {
            inner: Arc::new(Inner {
                http,
                base: settings.address.trim().trim_end_matches('/').to_string(),
                mount: settings.mount_path().to_string(),
                settings: settings.clone(),
                common_headers,
                token: RwLock::new(TokenSlot { token, header }),
                source,
                requests: AtomicU64::new(0),
                metrics: VaultMetrics::default(),
                logins: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
                renewer: Mutex::new(None),
            }),
        })
    }

    /// The transit mount path (without surrounding slashes).
    pub fn mount(&self) -> &str {
        &self.inner.mount
    }

    /// HTTP requests actually sent, retries and redirects included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Adds the client's request counts and latencies to a registry prefixed
    /// `kafka_transit`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Logins and renewals done so far.
    pub fn auth_stats(&self) -> AuthStats {
        AuthStats {
            logins: self.inner.logins.load(Ordering::Relaxed),
            renewals: self.inner.renewals.load(Ordering::Relaxed),
        }
    }

    /// Encrypts many plaintexts; per-item failures are returned per item, in input order.
    pub async fn encrypt_batch(
        &self,
        key: &str,
        items: &[EncryptInput<'_>],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        let path = self.inner.op_path("encrypt", key)?;
        self.inner
            .run_batch::<CiphertextItem, _>(
                &path,
                key,
                items.len(),
                item_strings(items.iter().any(|i| i.context.is_some())),
                |i| encrypt_item_len(&items[i]),
                |r| &items[r],
            )
            .await
    }

    /// Decrypts many ciphertexts; per-item failures are returned per item, in input order.
    pub async fn decrypt_batch(
        &self,
        key: &str,
        items: &[DecryptInput<'_>],
    ) -> Result<Vec<Result<Vec<u8>, ItemError>>, VaultError> {
        let path = self.inner.op_path("decrypt", key)?;
        self.inner
            .run_batch::<PlaintextItem, _>(
                &path,
                key,
                items.len(),
                item_strings(items.iter().any(|i| i.context.is_some())),
                |i| decrypt_item_len(&items[i]),
                |r| &items[r],
            )
            .await
    }

    /// Re-encrypts ciphertexts with the latest key version.
    pub async fn rewrap_batch(
        &self,
        key: &str,
        items: &[DecryptInput<'_>],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        let path = self.inner.op_path("rewrap", key)?;
        self.inner
            .run_batch::<CiphertextItem, _>(
                &path,
                key,
                items.len(),
                item_strings(items.iter().any(|i| i.context.is_some())),
                |i| decrypt_item_len(&items[i]),
                |r| &items[r],
            )
            .await
    }

    /// HMAC-SHA256 of many inputs (`vault:v<n>:<base64>` per item).
    pub async fn hmac_batch(
        &self,
        key: &str,
        inputs: &[&[u8]],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        let path = self.inner.op_path("hmac", key)?;
        self.inner
            .run_batch::<HmacItem, _>(
                &path,
                key,
                inputs.len(),
                item_strings(false),
                |i| hmac_item_len(inputs[i]),
                |r| HmacItems(&inputs[r]),
            )
            .await
    }

    /// Encrypts one plaintext with a single (non-batch) request.
    pub async fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<String, VaultError> {
        let path = self.inner.op_path("encrypt", key)?;
        let item = EncryptInput { plaintext, context };
        let body = wire::to_json(&item, encrypt_item_len(&item));
        let d: CiphertextData = self.inner.call_data(&path, key, body).await?;
        Ok(d.ciphertext)
    }

    /// Decrypts one ciphertext with a single (non-batch) request.
    pub async fn decrypt(
        &self,
        key: &str,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>, VaultError> {
        let path = self.inner.op_path("decrypt", key)?;
        let item = DecryptInput {
            ciphertext,
            context,
        };
        let body = wire::to_json(&item, decrypt_item_len(&item));
        let d: PlaintextData = self.inner.call_data(&path, key, body).await?;
        Ok(d.plaintext.map(|p| p.0).unwrap_or_default())
    }

    /// A fresh 256-bit data key: its plaintext and its ciphertext under `key`.
    pub async fn generate_data_key(
        &self,
        key: &str,
        context: Option<&[u8]>,
    ) -> Result<DataKey, VaultError> {
        #[derive(Serialize)]
        struct Body<'a> {
            bits: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            context: Option<B64<'a>>,
        }
        let path = self.inner.op_path("datakey/plaintext", key)?;
        let body = wire::to_json(
            &Body {
                bits: 256,
                context: context.map(B64),
            },
            64,
        );
        let d: DataKeyData = self.inner.call_data(&path, key, body).await?;
        let plaintext = d
            .plaintext
            .ok_or_else(|| VaultError::Protocol {
                detail: format!("datakey response for key `{key}` has no plaintext"),
            })?
            .0;
        if plaintext.len() != 32 {
            return Err(VaultError::Protocol {
                detail: format!(
                    "datakey for key `{key}` is {} bytes, expected 32",
                    plaintext.len()
                ),
            });
        }
        Ok(DataKey {
            plaintext,
            ciphertext: d.ciphertext,
            key_version: d.key_version,
        })
    }
}

fn token_header(token: &VaultToken) -> Result<HeaderValue, VaultError> {
    token.header_value().map_err(|_| VaultError::Auth {
        detail: "the Vault token contains characters not allowed in an HTTP header; check the token source (vault.token_env / vault.token_file)".into(),
    })
}

impl Inner {
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

    pub(crate) fn current_token(&self) -> VaultToken {
        self.token.read().expect("token lock").token.clone()
    }

    pub(crate) fn set_token(&self, token: VaultToken) -> Result<(), VaultError> {
        let header = token_header(&token)?;
        *self.token.write().expect("token lock") = TokenSlot { token, header };
        Ok(())
    }

    pub(crate) fn token_header(&self) -> HeaderValue {
        self.token.read().expect("token lock").header.clone()
    }

    /// Sends one logical request, retrying retryable failures and following one 307.
    /// Returns every response that is not retried (including 4xx) as `Raw`.
    pub(crate) async fn send(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<Vec<u8>>,
    ) -> Result<Raw, VaultError> {
        let started = Instant::now();
        let result = self.send_with_retries(method, target, body).await;
        let status = result.as_ref().ok().map(|raw| raw.status.as_u16());
        self.metrics.observe(
            &self.mount,
            target.path,
            metrics::outcome(&result, status),
            started.elapsed(),
        );
        result
    }

    async fn send_with_retries(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<Vec<u8>>,
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
        let mut retry: u32 = 0;
        loop {
            let mut req = template
                .try_clone()
                .expect("request bodies are in memory and clonable");
            if target.auth {
                req.headers_mut().insert(X_VAULT_TOKEN, self.token_header());
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            // The per-request reqwest timeout covers connect + headers + body; the outer
            // timeout is a safety net.
            let attempt =
                tokio::time::timeout(s.request_timeout + Duration::from_millis(50), async {
                    let resp = self.http.execute(req).await?;
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let location = resp
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body = resp.bytes().await?;
                    Ok::<_, reqwest::Error>((status, retry_after, location, body))
                })
                .await;

            let (detail, retry_after) = match attempt {
                Err(_) => (
                    format!(
                        "no response within {} (vault.request_timeout)",
                        humantime::format_duration(s.request_timeout)
                    ),
                    None,
                ),
                Ok(Err(e)) if e.is_builder() => {
                    return Err(VaultError::Protocol {
                        detail: format!("invalid request for {}: {e}", target.path),
                    })
                }
                Ok(Err(e)) => (transport_detail(&e, s.request_timeout), None),
                Ok(Ok((status, retry_after, location, body))) => {
                    if matches!(
                        status,
                        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                    ) {
                        if redirected {
                            return Err(VaultError::Protocol {
                                detail: format!(
                                    "Vault redirected {} more than once; point vault.address at the active node",
                                    target.path
                                ),
                            });
                        }
                        let next = redirect_target(template.url(), location.as_deref())
                            .map_err(|detail| VaultError::Protocol { detail })?;
                        tracing::debug!(path = target.path, to = %next, "following Vault redirect");
                        *template.url_mut() = next;
                        redirected = true;
                        continue;
                    }
                    if is_retryable_status(status) {
                        let msg = wire::error_message(&body)
                            .filter(|m| !m.is_empty())
                            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
                        (format!("HTTP {}: {msg}", status.as_u16()), retry_after)
                    } else {
                        return Ok(Raw {
                            status,
                            body: Vec::from(body),
                        });
                    }
                }
            };

            if retry >= s.max_retries {
                tracing::warn!(
                    path = target.path,
                    attempts = retry + 1,
                    error = %detail,
                    "Vault request failed; giving up"
                );
                return Err(VaultError::Unavailable {
                    mount: self.mount.clone(),
                    key: target.key.map(str::to_owned),
                    detail: format!("{detail} (gave up after {} attempts)", retry + 1),
                });
            }
            let delay = retry_delay(
                retry,
                retry_after,
                s.retry_initial_backoff,
                s.retry_max_backoff,
            );
            if retry == 0 {
                tracing::debug!(path = target.path, error = %detail, delay = ?delay, "retrying Vault request");
            } else {
                tracing::warn!(path = target.path, attempt = retry + 1, error = %detail, delay = ?delay, "retrying Vault request");
            }
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Maps a non-success response to an error.
    pub(crate) fn error_for(&self, raw: &Raw, target: Target<'_>) -> VaultError {
        let msg = wire::error_message(&raw.body).unwrap_or_default();
        let mount = self.mount.clone();
        let key = target.key.map(str::to_owned);
        match raw.status {
            StatusCode::FORBIDDEN => VaultError::PermissionDenied {
                mount,
                key,
                path: target.path.to_string(),
            },
            StatusCode::NOT_FOUND => {
                // A namespace that does not exist (Vault Enterprise, OpenBao) is a
                // configuration error, not a missing key.
                if msg.contains("namespace not found") {
                    VaultError::Auth {
                        detail: format!(
                            "Vault has no namespace `{}` ({msg}): create it or fix vault.namespace",
                            self.settings
                                .namespace
                                .as_deref()
                                .unwrap_or_default()
                                .trim_matches('/')
                        ),
                    }
                } else if msg.contains("no handler for route") || msg.contains("unsupported path") {
                    VaultError::MountNotFound { mount }
                } else if let Some(key) = key {
                    VaultError::KeyNotFound { mount, key }
                } else {
                    VaultError::Protocol {
                        detail: format!("{} returned 404 {msg}", target.path),
                    }
                }
            }
            StatusCode::BAD_REQUEST
                if msg.contains("encryption key not found") && key.is_some() =>
            {
                VaultError::KeyNotFound {
                    mount,
                    key: key.unwrap_or_default(),
                }
            }
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => VaultError::InvalidRequest {
                mount,
                key: key.unwrap_or_default(),
                message: if raw.status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("request too large ({msg}); lower vault.max_batch_bytes")
                } else if msg.is_empty() {
                    "bad request".to_string()
                } else {
                    msg
                },
            },
            other => VaultError::Protocol {
                detail: format!(
                    "{} returned HTTP {}{}{}",
                    target.path,
                    other.as_u16(),
                    if msg.is_empty() { "" } else { ": " },
                    msg
                ),
            },
        }
    }

    /// A single-item write whose `data` is `D`.
    async fn call_data<D: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<D, VaultError> {
        let target = Target {
            path,
            key: Some(key),
            auth: true,
        };
        let raw = self.send(Method::POST, target, Some(body)).await?;
        if !raw.status.is_success() {
            return Err(self.error_for(&raw, target));
        }
        let env: Envelope<D> = parse_json(&raw.body, path)?;
        log_warnings(path, env.warnings.as_deref());
        env.data.ok_or_else(|| VaultError::Protocol {
            detail: format!("response of {path} has no data"),
        })
    }

    /// Runs a batch operation in chunks; results in input order. A chunk holds at most
    /// `max_batch_items` items, `max_batch_bytes` bytes and, with `strings_per_item` JSON
    /// strings per item, OpenBao's limit of JSON strings per request.
    async fn run_batch<R, B>(
        &self,
        path: &str,
        key: &str,
        n: usize,
        strings_per_item: usize,
        size_of: impl Fn(usize) -> usize,
        slice: impl Fn(std::ops::Range<usize>) -> B,
    ) -> Result<Vec<Result<R::Out, ItemError>>, VaultError>
    where
        R: ResultItem,
        B: Serialize,
    {
        if n == 0 {
            return Ok(Vec::new());
        }
        let s = &self.settings;
        let max_items = s.max_batch_items.min(wire::max_items_by_strings(
            s.max_request_json_strings,
            strings_per_item,
        ));
        let ranges = wire::chunk_ranges(n, &size_of, max_items, s.max_batch_bytes);
        let bodies = ranges.into_iter().map(|r| {
            let estimate = BATCH_ENVELOPE_BYTES + r.clone().map(&size_of).sum::<usize>();
            let len = r.len();
            let body = wire::to_json(
                &BatchBody {
                    batch_input: slice(r),
                    partial_failure_response_code: PARTIAL_FAILURE_STATUS,
                },
                estimate,
            );
            (len, body)
        });
        let mut out = Vec::with_capacity(n);
        let mut chunks = stream::iter(bodies)
            .map(|(len, body)| self.batch_chunk::<R>(path, key, len, body))
            .buffered(CHUNK_CONCURRENCY);
        while let Some(results) = chunks.try_next().await? {
            out.extend(results);
        }
        Ok(out)
    }

    async fn batch_chunk<R: ResultItem>(
        &self,
        path: &str,
        key: &str,
        expected: usize,
        body: Vec<u8>,
    ) -> Result<Vec<Result<R::Out, ItemError>>, VaultError> {
        let target = Target {
            path,
            key: Some(key),
            auth: true,
        };
        let raw = self.send(Method::POST, target, Some(body)).await?;
        let ok = raw.status.is_success();
        if !ok && raw.status != StatusCode::BAD_REQUEST {
            return Err(self.error_for(&raw, target));
        }
        // 200/207, or 400 carrying `batch_results` when every item failed.
        let env: Envelope<BatchData<R>> = match serde_json::from_slice(&raw.body) {
            Ok(env) => env,
            Err(e) if ok => {
                return Err(VaultError::Protocol {
                    detail: format!("cannot parse the batch response of {path}: {e}"),
                })
            }
            Err(_) => return Err(self.error_for(&raw, target)),
        };
        let Some(data) = env.data else {
            return Err(if ok {
                VaultError::Protocol {
                    detail: format!("batch response of {path} has no data.batch_results"),
                }
            } else {
                self.error_for(&raw, target)
            });
        };
        log_warnings(path, env.warnings.as_deref());
        if data.batch_results.len() != expected {
            return Err(VaultError::Protocol {
                detail: format!(
                    "batch response of {path} has {} results for {expected} items",
                    data.batch_results.len()
                ),
            });
        }
        data.batch_results
            .into_iter()
            .map(|item| {
                item.into_result().map_err(|d| VaultError::Protocol {
                    detail: format!("batch response of {path}: {d}"),
                })
            })
            .collect()
    }
}

fn log_warnings(path: &str, warnings: Option<&[String]>) {
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

fn is_retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 412 | 429 | 500 | 502 | 503 | 504)
}

/// Where a 307 points; never from https to http.
fn redirect_target(current: &reqwest::Url, location: Option<&str>) -> Result<reqwest::Url, String> {
    let loc = location.ok_or("Vault answered a redirect without a Location header")?;
    let next = current
        .join(loc)
        .map_err(|e| format!("Vault redirected to an invalid Location ({e})"))?;
    if current.scheme() == "https" && next.scheme() != "https" {
        return Err(format!(
            "Vault redirected from https to {}://{}; refusing to downgrade (point vault.address at the active node)",
            next.scheme(),
            next.host_str().unwrap_or("")
        ));
    }
    if next.scheme() != "https" && next.scheme() != "http" {
        return Err(format!(
            "Vault redirected to unsupported scheme {}",
            next.scheme()
        ));
    }
    Ok(next)
}

/// A transport error, with its causes, without the URL's query (there is none) or any
/// header.
fn transport_detail(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no response within {} (vault.request_timeout)",
            humantime::format_duration(timeout)
        );
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "error reading the response"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
        depth += 1;
        if depth > 4 {
            break;
        }
    }
    msg
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

/// Compile-time check: the client and its futures can move between threads.
#[allow(dead_code)]
fn _assert_send_sync(c: &VaultClient) {
    fn send<T: Send>(_: T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<VaultClient>();
    send(c.encrypt_batch("k", &[]));
    send(c.decrypt_batch("k", &[]));
    send(c.rewrap_batch("k", &[]));
    send(c.hmac_batch("k", &[]));
    send(c.encrypt("k", b"", None));
    send(c.decrypt("k", "", None));
    send(c.generate_data_key("k", None));
    send(VaultClient::connect(&c.inner.settings));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> VaultClient {
        let mut s = VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        s.mount = "/team/transit/".into();
        VaultClient::with_token(&s, VaultToken::new("hvs.secret-token-value".into())).unwrap()
    }

    #[test]
    fn paths_and_escaping() {
        let c = client();
        assert_eq!(c.mount(), "team/transit");
        assert_eq!(
            c.inner.op_path("encrypt", "orders.v1@x").unwrap(),
            "team/transit/encrypt/orders.v1@x"
        );
        assert_eq!(
            c.inner.op_path("decrypt", "a/b?c").unwrap(),
            "team/transit/decrypt/a%2Fb%3Fc"
        );
        assert!(c.inner.op_path("encrypt", "").is_err());
        assert_eq!(c.inner.base, "http://127.0.0.1:1");
    }

    #[test]
    fn client_debug_hides_token() {
        let c = client();
        let s = format!("{c:?}");
        assert!(!s.contains("secret-token-value"));
        assert!(s.contains("team/transit"));
    }

    #[test]
    fn redirects() {
        let http: reqwest::Url = "http://a:8200/v1/transit/encrypt/k".parse().unwrap();
        let https: reqwest::Url = "https://a:8200/v1/transit/encrypt/k".parse().unwrap();
        assert_eq!(
            redirect_target(&http, Some("http://b:8200/v1/transit/encrypt/k"))
                .unwrap()
                .as_str(),
            "http://b:8200/v1/transit/encrypt/k"
        );
        assert_eq!(
            redirect_target(&https, Some("/v1/x")).unwrap().as_str(),
            "https://a:8200/v1/x"
        );
        assert!(redirect_target(&https, Some("http://b:8200/v1/x")).is_err());
        assert!(redirect_target(&http, None).is_err());
    }

    #[test]
    fn error_mapping_names_mount_and_key_not_token() {
        let c = client();
        let t = Target {
            path: "team/transit/decrypt/orders",
            key: Some("orders"),
            auth: true,
        };
        let raw = |status: u16, body: &str| Raw {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        };
        let cases = [
            (
                raw(
                    404,
                    r#"{"errors":["no handler for route \"team/transit/decrypt/orders\". route entry not found."]}"#,
                ),
                "MountNotFound",
            ),
            (raw(404, r#"{"errors":[]}"#), "KeyNotFound"),
            (
                raw(400, r#"{"errors":["encryption key not found"]}"#),
                "KeyNotFound",
            ),
            (
                raw(400, r#"{"errors":["invalid ciphertext: no prefix"]}"#),
                "InvalidRequest",
            ),
            (
                raw(
                    403,
                    r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
                ),
                "PermissionDenied",
            ),
            (raw(418, "teapot"), "Protocol"),
        ];
        for (r, variant) in cases {
            let e = c.inner.error_for(&r, t);
            let dbg = format!("{e:?}");
            let msg = e.to_string();
            assert!(dbg.starts_with(variant), "{dbg} should be {variant}");
            assert!(!msg.contains("secret-token-value") && !dbg.contains("secret-token-value"));
            assert!(msg.contains("team/transit"), "{msg}");
            if variant != "MountNotFound" {
                assert!(msg.contains("orders"), "{msg}");
            }
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn missing_namespace_is_a_configuration_error() {
        let mut s = VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        s.namespace = Some("team-a/".into());
        let c = VaultClient::with_token(&s, VaultToken::new("hvs.t".into())).unwrap();
        let t = Target {
            path: "transit/encrypt/orders",
            key: Some("orders"),
            auth: true,
        };
        let raw = Raw {
            status: StatusCode::NOT_FOUND,
            body: br#"{"errors":["namespace not found"]}"#.to_vec(),
        };
        let e = c.inner.error_for(&raw, t);
        assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("`team-a`") && msg.contains("vault.namespace"),
            "{msg}"
        );
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
}
