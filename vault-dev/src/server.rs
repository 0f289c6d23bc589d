//! Server start-up, the accept loop (plain TCP or TLS), auto-rotation, shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::{AppRole, Caller, TokenStore};
use crate::faults::{Counters, Faults, Stats};
use crate::http::ApiError;
use crate::jwt::JwtAuth;
use crate::state::{Mount, State};
use crate::store::Store;

/// PEM files for serving HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How to run a vault-dev server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The root token (never expires). Default `"root"`.
    pub root_token: String,
    /// Where to persist mounts and keys; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// AppRoles that may log in at `auth/approle/login`.
    pub approles: Vec<AppRole>,
    /// Smallest non-zero `auto_rotate_period` accepted (Vault: 1h). Tests lower it.
    pub min_auto_rotate_period: Duration,
    /// A transit engine mounted at start, like `vault secrets enable transit`.
    /// Default `Some("transit")`.
    pub transit_mount: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            root_token: "root".into(),
            data_dir: None,
            tls: None,
            approles: Vec::new(),
            min_auto_rotate_period: Duration::from_secs(3600),
            transit_mount: Some("transit".into()),
        }
    }
}

/// State shared by all connections.
pub(crate) struct Shared {
    state: RwLock<State>,
    store: Option<Store>,
    tokens: Mutex<TokenStore>,
    /// Auth methods enabled through `sys/auth` (not persisted, like tokens).
    jwt: Mutex<JwtAuth>,
    pub faults: Faults,
    pub counters: Counters,
    pub min_auto_rotate_period: Duration,
    pub cluster_id: String,
    pub started_unix: u64,
}

impl Shared {
    pub fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the state under the write lock and persist it (with `--data-dir`)
    /// before anyone can observe the change. Errors leave nothing persisted.
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut state)?;
        if let Some(store) = &self.store {
            store.save(&state).map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "persisting state failed");
                ApiError::Internal(format!("failed to persist state: {e:#}"))
            })?;
        }
        Ok(out)
    }

    pub fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn jwt(&self) -> MutexGuard<'_, JwtAuth> {
        self.jwt.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn authenticate(&self, token: Option<&str>) -> Caller {
        self.tokens().authenticate(token)
    }

    /// The operation name a request is counted under in [`Stats`].
    pub fn classify(&self, path: &str) -> String {
        if path.starts_with("auth/") && path.ends_with("/login") {
            return "login".into();
        }
        if path.starts_with("auth/token/") {
            return "token".into();
        }
        if let Some(rest) = path.strip_prefix("sys/") {
            return rest.split('/').next().unwrap_or("sys").to_string();
        }
        match self.read_state().find_mount(path) {
            Some((_, rest)) => rest.split('/').next().unwrap_or("").to_string(),
            None => "unknown".into(),
        }
    }

    /// Rotate every key whose `auto_rotate_period` has passed since its latest
    /// version was created.
    fn auto_rotate(&self) {
        let due = |p: &crate::keys::KeyPolicy, now: i64| {
            p.auto_rotate_period_secs > 0
                && now - p.latest_created_ms() >= (p.auto_rotate_period_secs as i64) * 1000
        };
        let now = crate::keys::now_ms();
        let any_due = self
            .read_state()
            .mounts
            .values()
            .any(|m| m.keys.values().any(|p| due(p, now)));
        if !any_due {
            return;
        }
        let result = self.mutate(|state| {
            for mount in state.mounts.values_mut() {
                for p in mount.keys.values_mut() {
                    if due(p, now) {
                        p.rotate();
                        tracing::info!(key = %p.name, version = p.latest_version, "auto-rotated key");
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "auto-rotation failed");
        }
    }
}

fn load_tls(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = std::fs::read(&files.cert)
        .with_context(|| format!("cannot read TLS certificate {}", files.cert.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in TLS certificate {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate found in {}",
        files.cert.display()
    );
    let key_pem = zeroize::Zeroizing::new(
        std::fs::read(&files.key)
            .with_context(|| format!("cannot read TLS key {}", files.key.display()))?,
    );
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("bad PEM in TLS key {}", files.key.display()))?
        .with_context(|| format!("no private key found in {}", files.key.display()))?;
    // Choose the ring provider explicitly: no reliance on a process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Entry point: `Server::start(config)`.
pub struct Server;

impl Server {
    /// Bind, load state, and serve in a background task.
    pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let store = config.data_dir.as_deref().map(Store::open).transpose()?;
        let mut state = match &store {
            Some(s) => s.load()?.unwrap_or_default(),
            None => State::default(),
        };
        if let Some(path) = &config.transit_mount {
            let path = path.trim_matches('/');
            anyhow::ensure!(!path.is_empty(), "transit mount path is empty");
            state
                .mounts
                .entry(path.to_string())
                .or_insert_with(Mount::transit);
        }
        if let Some(s) = &store {
            s.save(&state)?;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let url = if tls.is_some() {
            // Certificates for tests are issued to "localhost", not to an IP.
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            store,
            tokens: Mutex::new(TokenStore::new(
                config.root_token.clone(),
                config.approles.clone(),
            )),
            jwt: Mutex::default(),
            faults: Faults::default(),
            counters: Counters::default(),
            min_auto_rotate_period: config.min_auto_rotate_period,
            cluster_id: uuid::Uuid::new_v4().to_string(),
            started_unix: (crate::keys::now_ms() / 1000) as u64,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, tls, shared.clone(), stop_rx));
        tracing::info!(%url, "vault-dev listening");
        Ok(RunningServer {
            addr,
            url,
            root_token: config.root_token,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                shared.auto_rotate();
                while connections.try_join_next().is_some() {}
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, tls.clone(), shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Dropping the set aborts open connections: a stopped server answers nothing.
    connections.shutdown().await;
}

async fn connection(stream: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(crate::http::handle(shared, req).await) }
    });
    let result = match tls {
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls_stream) => {
                http1::Builder::new()
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .await
            }
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
        },
        None => {
            http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A server started by [`Server::start`]. Dropping it also stops the server.
pub struct RunningServer {
    addr: SocketAddr,
    url: String,
    root_token: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Fault injection handle.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// **Development/test only.** Replace the HMAC key of one version of a key, so
    /// tests can check HMAC output against known-answer vectors (e.g. Vault's own
    /// test vector). Real Vault has no such operation.
    pub fn import_hmac_key_for_tests(
        &self,
        mount: &str,
        key: &str,
        version: u32,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        self.shared
            .mutate(|state| {
                let p = state
                    .mounts
                    .get_mut(mount.trim_matches('/'))
                    .and_then(|m| m.keys.get_mut(key))
                    .ok_or_else(|| ApiError::bad(format!("no key {key} at mount {mount}")))?;
                p.set_hmac_key(version, bytes)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))
            })
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Stop accepting, close open connections, and wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
