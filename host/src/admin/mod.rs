//! The admin HTTP listener (`[admin] listen`): what operators and their tools ask a
//! running pipeline, from outside the data flow.
//!
//! - `GET /metrics`: Prometheus/OpenMetrics text, every metric prefixed `kafka_transit_`.
//! - `GET /health/live`: 200 while the pipeline loop goes round ([`health`]).
//! - `GET /health/ready`: 200 when the policy is loaded, Vault answers and accepts the
//!   token, and partitions are assigned; 503 with `{"ready":false,"not_ready":[...]}`.
//! - `POST /admin/policy/reload`: re-reads the config file's `[policy]` and swaps the
//!   policy in; 200 with the new policy, or 422 with why it was refused. It needs
//!   `Authorization: Bearer <token>` with the token of `admin.reload_token_file` (or
//!   `_env`) and is off without one ([`credential`]).
//! - `POST /admin/forget` with `{"subject": "<id>"}`: forgets a data subject
//!   (docs/forgetting.md), as `kafka-transit forget` does; 200 with what was removed. On
//!   runners whose policy seals per subject, behind the same token.
//!
//! Metrics and probes need no credential: they carry no record data, and Prometheus
//! and the kubelet must reach them. Connections are bounded ([`server`]).
//!
//! The listener starts before Vault and the policy, so probes answer during start-up;
//! each component joins the registry and the probes as it comes up.

mod credential;
mod health;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::AdminConfig;
use crate::metrics::Metrics;
use crate::vault::VaultClient;

use credential::ReloadCredential;
use health::{Answer, Health};

pub use server::HEADER_READ_TIMEOUT;

/// What `POST /admin/policy/reload` runs: `Ok` with a JSON description of the policy
/// now queued for the pipeline, or why the new one was refused.
pub type Reload = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>
        + Send
        + Sync,
>;

/// What `POST /admin/forget` runs with the subject's id: `Ok` with a JSON report.
pub type Forget = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>
        + Send
        + Sync,
>;

struct State {
    registry: RwLock<Registry>,
    health: Arc<Health>,
    reload: OnceLock<Reload>,
    forget: OnceLock<Forget>,
    /// `None`: the reload endpoint is off.
    reload_credential: Option<ReloadCredential>,
}

/// A running admin listener; stops when dropped.
pub struct Admin {
    state: Arc<State>,
    config: AdminConfig,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Admin {
    /// Binds `admin.listen` and starts answering.
    pub async fn start(config: &AdminConfig) -> anyhow::Result<Admin> {
        let reload_credential = match (&config.reload_token_file, &config.reload_token_env) {
            (Some(path), None) => Some(ReloadCredential::File(path.clone())),
            (None, Some(name)) => Some(ReloadCredential::Env(name.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => anyhow::bail!(
                "admin.reload_token_file: set either admin.reload_token_file or admin.reload_token_env, not both"
            ),
        };
        // A credential that cannot be read now would refuse every reload later.
        if let Some(credential) = &reload_credential {
            credential.read().map_err(anyhow::Error::msg)?;
        }
        let listener = TcpListener::bind(config.listen).await.map_err(|error| {
            anyhow::anyhow!(
                "admin.listen: cannot listen on {}: {error}; choose a free address and port",
                config.listen
            )
        })?;
        let local_addr = listener.local_addr()?;
        let health = Arc::new(Health::new(config.stall_timeout));
        let mut registry = Registry::with_prefix("kafka_transit");
        registry.register(
            "ready",
            "1 while /health/ready answers 200 (policy loaded, Vault usable, partitions assigned)",
            health.ready_gauge.clone(),
        );
        let reload_enabled = reload_credential.is_some();
        let state = Arc::new(State {
            registry: RwLock::new(registry),
            health,
            reload: OnceLock::new(),
            forget: OnceLock::new(),
            reload_credential,
        });
        let server = tokio::spawn(server::serve(listener, {
            let state = state.clone();
            move |request| {
                let state = state.clone();
                async move { route(&state, request).await }
            }
        }));
        tracing::info!(
            address = %local_addr,
            reload = if reload_enabled { "on (bearer token)" } else { "off (no admin.reload_token_file)" },
            "admin listener: /metrics, /health/live, /health/ready, POST /admin/policy/reload"
        );
        Ok(Admin {
            state,
            config: config.clone(),
            local_addr,
            tasks: vec![server],
        })
    }

    /// Where it listens (the port is the system's choice when `listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a component's instruments to `/metrics`.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self.state.registry.write().expect("registry lock"));
    }

    /// Vault is connected: its requests join `/metrics`, and readiness checks it every
    /// `admin.vault_check_interval`.
    pub fn watch_vault(&mut self, vault: &VaultClient) {
        self.register(|registry| vault.register_metrics(registry));
        let task = self
            .state
            .health
            .watch_vault(vault.clone(), self.config.vault_check_interval);
        self.tasks.push(task);
    }

    /// The policy is compiled and initialised.
    pub fn policy_loaded(&self) {
        self.state.health.policy_loaded();
    }

    /// The pipeline exists: its counters join `/metrics`, and its loop and partitions
    /// feed the probes.
    pub fn watch_pipeline(&self, metrics: Arc<Metrics>) {
        self.register(|registry| metrics.register(registry));
        self.state.health.pipeline_started(metrics);
    }

    /// Enables `POST /admin/policy/reload`.
    pub fn on_reload(&self, reload: Reload) {
        let _ = self.state.reload.set(reload);
    }

    /// Enables `POST /admin/forget`.
    pub fn on_forget(&self, forget: Forget) {
        let _ = self.state.forget.set(forget);
    }
}

/// Largest request body accepted: only `POST /admin/forget` takes one, a subject's id.
const MAX_BODY_BYTES: u64 = 1024;

async fn route(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body_bytes = hyper::body::Body::size_hint(request.body()).lower();
    if body_bytes > MAX_BODY_BYTES {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the admin listener takes request bodies of at most 1 KiB\n",
        );
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => metrics(state),
        (&Method::GET, "/health/live") => json(state.health.live()),
        (&Method::GET, "/health/ready") => json(state.health.ready()),
        (&Method::POST, "/admin/policy/reload") => {
            let authorization = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|value| value.as_bytes());
            match authorized(state, authorization) {
                Ok(()) => reload(state).await,
                Err(refusal) => refusal,
            }
        }
        (&Method::POST, "/admin/forget") => {
            let authorization = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|value| value.as_bytes().to_vec());
            match authorized(state, authorization.as_deref()) {
                Ok(()) => forget(state, request.into_body()).await,
                Err(refusal) => refusal,
            }
        }
        (_, "/admin/forget") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        (_, "/metrics" | "/health/live" | "/health/ready") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        (_, "/admin/policy/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /health/live, /health/ready, POST /admin/policy/reload or \
             POST /admin/forget\n",
        ),
    }
}

fn metrics(state: &State) -> Response<Full<Bytes>> {
    // Readiness is also a gauge: bring it up to date for this scrape.
    state.health.ready();
    let mut body = String::new();
    let registry = state.registry.read().expect("registry lock");
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding metrics failed: {error}\n"),
        );
    }
    Response::builder()
        .header(
            hyper::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Whether a reload request carries the reload token; the refusal to send otherwise.
#[allow(clippy::result_large_err)]
fn authorized(state: &State, authorization: Option<&[u8]>) -> Result<(), Response<Full<Bytes>>> {
    let Some(credential) = &state.reload_credential else {
        return Err(text(
            StatusCode::FORBIDDEN,
            "POST /admin/policy/reload is off: set admin.reload_token_file (or \
             admin.reload_token_env) to enable it; SIGHUP and changes to policy.path reload \
             the policy without it\n",
        ));
    };
    match credential.admits(authorization) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!("admin listener: a policy reload without the reload token was refused");
            let mut refusal = text(
                StatusCode::UNAUTHORIZED,
                "POST /admin/policy/reload needs `Authorization: Bearer <token>`, the token of \
                 admin.reload_token_file (or admin.reload_token_env)\n",
            );
            refusal.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            Err(refusal)
        }
        Err(error) => {
            tracing::error!("admin listener: cannot check a reload request: {error}");
            Err(text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot check the reload token: {error}\n"),
            ))
        }
    }
}

async fn forget(state: &State, body: Incoming) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let Some(forget) = state.forget.get() else {
        return text(
            StatusCode::NOT_FOUND,
            "POST /admin/forget is on runners whose policy seals per data subject \
             (policy.config.subject) and that have a [forget] table\n",
        );
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY_BYTES as usize)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body must be at most 1 KiB\n"),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        subject: String,
    }
    let subject = match serde_json::from_slice::<Request>(&body) {
        Ok(request) if !request.subject.is_empty() => request.subject,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "send {\"subject\": \"<the data subject's id>\"}\n",
            )
        }
    };
    match forget(subject).await {
        Ok(report) => json(Answer {
            status: 200,
            body: serde_json::json!({"forgotten": true, "report": report}),
        }),
        Err(error) => json(Answer {
            status: 502,
            body: serde_json::json!({"forgotten": false, "error": error}),
        }),
    }
}

async fn reload(state: &State) -> Response<Full<Bytes>> {
    let Some(reload) = state.reload.get() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline has not started yet; try again shortly\n",
        );
    };
    match reload().await {
        Ok(loaded) => json(Answer {
            status: 200,
            body: serde_json::json!({"reloaded": true, "policy": loaded}),
        }),
        Err(refused) => json(Answer {
            status: 422,
            body: serde_json::json!({"reloaded": false, "error": refused}),
        }),
    }
}

fn json(answer: Answer) -> Response<Full<Bytes>> {
    Response::builder()
        .status(answer.status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(format!("{}\n", answer.body))))
        .expect("a valid response")
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
