//! The admin HTTP listener (`[admin] listen`): what operators and their tools ask a
//! running pipeline, from outside the data flow.
//!
//! - `GET /metrics`: Prometheus/OpenMetrics text, every metric prefixed `kafka_transit_`.
//! - `GET /health/live`: 200 while the pipeline loop goes round ([`health`]).
//! - `GET /health/ready`: 200 when the policy is loaded, Vault answers and accepts the
//!   token, and partitions are assigned; 503 with `{"ready":false,"not_ready":[...]}`.
//! - `POST /admin/policy/reload`: re-reads the config file's `[policy]` and swaps the
//!   policy in; 200 with the new policy, or 422 with why it was refused.
//!
//! The listener starts before Vault and the policy, so probes answer during start-up;
//! each component joins the registry and the probes as it comes up.

mod health;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::AdminConfig;
use crate::metrics::Metrics;
use crate::vault::VaultClient;

use health::{Answer, Health};

/// What `POST /admin/policy/reload` runs: `Ok` with a JSON description of the policy
/// now queued for the pipeline, or why the new one was refused.
pub type Reload = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>
        + Send
        + Sync,
>;

struct State {
    registry: RwLock<Registry>,
    health: Arc<Health>,
    reload: OnceLock<Reload>,
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
        let state = Arc::new(State {
            registry: RwLock::new(registry),
            health,
            reload: OnceLock::new(),
        });
        let server = tokio::spawn(serve(listener, state.clone()));
        tracing::info!(address = %local_addr, "admin listener: /metrics, /health/live, /health/ready, /admin/policy/reload");
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
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("admin listener: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("admin listener: connection ended: {error}");
            }
        });
    }
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => metrics(state),
        (&Method::GET, "/health/live") => json(state.health.live()),
        (&Method::GET, "/health/ready") => json(state.health.ready()),
        (&Method::POST, "/admin/policy/reload") => reload(state).await,
        (_, "/metrics" | "/health/live" | "/health/ready") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        (_, "/admin/policy/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /health/live, /health/ready or POST /admin/policy/reload\n",
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
