//! Helpers shared by the vault-dev integration tests.
//!
//! [`start`] gives the server a conformance test runs against: an in-process vault-dev,
//! or, when `KAFKA_TRANSIT_TEST_VAULT_ADDR` and `KAFKA_TRANSIT_TEST_VAULT_TOKEN` are
//! both set, that external server (an OpenBao or Vault `-dev` server and its root
//! token; `KAFKA_TRANSIT_TEST_VAULT_CACERT` names a CA for an https address), used as
//! the oracle vault-dev is checked against. A server named but not reachable fails the
//! test: there is no fallback to vault-dev. Before each test the
//! external server is reset to what a fresh vault-dev has: a `transit/` mount with no
//! keys, an `approle/` auth mount with no roles, and no mount a test created. Tests on
//! the external server take a process-wide lock, so they never overlap (run them with
//! `--test-threads=1` anyway, for readable output).
//!
//! Tests that need vault-dev internals use [`start_vault_dev`] / [`start_vault_dev_with`],
//! which always start an in-process vault-dev.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use vault_dev::{AppRole, RunningServer, Server, ServerConfig};

pub const ADDR_VAR: &str = "KAFKA_TRANSIT_TEST_VAULT_ADDR";
pub const TOKEN_VAR: &str = "KAFKA_TRANSIT_TEST_VAULT_TOKEN";
pub const CACERT_VAR: &str = "KAFKA_TRANSIT_TEST_VAULT_CACERT";

/// The policy AppRole tokens get; on vault-dev it is built in (and reported under
/// this name), on an external server [`start_with_approles`] writes it.
pub const APPROLE_POLICY: &str = "vault-dev-transit";
const APPROLE_POLICY_HCL: &str = r#"
path "transit/encrypt/*" { capabilities = ["create", "update"] }
path "transit/decrypt/*" { capabilities = ["update"] }
path "transit/rewrap/*"  { capabilities = ["update"] }
path "transit/datakey/*" { capabilities = ["update"] }
path "transit/hmac/*"    { capabilities = ["update"] }
path "transit/keys/*"    { capabilities = ["read"] }
path "transit/keys"      { capabilities = ["list"] }
"#;

/// A server under test plus an HTTP client for it.
pub struct Vault {
    pub client: reqwest::Client,
    pub url: String,
    token: String,
    /// The in-process server, or `None` for an external one.
    dev: Option<RunningServer>,
    /// Held while a test uses the (shared) external server.
    _exclusive: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// A response: status, JSON body (`Null` when empty) and headers.
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The `errors` array as strings (empty when absent).
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single error message; panics unless exactly one.
    pub fn error(&self) -> String {
        let e = self.errors();
        assert_eq!(
            e.len(),
            1,
            "expected one error, got {:?} (status {})",
            self.body,
            self.status
        );
        e[0].clone()
    }
}

/// The external server from the environment, if both variables are set.
fn external_target() -> Option<(String, String)> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var(ADDR_VAR), var(TOKEN_VAR)) {
        (Some(addr), Some(token)) => Some((
            addr.trim().trim_end_matches('/').to_string(),
            token.trim().to_string(),
        )),
        (None, None) => None,
        _ => {
            panic!("set both {ADDR_VAR} and {TOKEN_VAR} (external server), or neither (vault-dev)")
        }
    }
}

/// The server a portable conformance test runs against (see the module docs).
pub async fn start() -> Vault {
    match external_target() {
        Some((url, token)) => connect_external(url, token).await,
        None => {
            let v = start_vault_dev().await;
            announce(&v, "in-process vault-dev").await;
            v
        }
    }
}

/// Like [`start`], with AppRoles that may log in: given at start to vault-dev,
/// created over the API (role, fixed role ID, custom secret ID, policy
/// [`APPROLE_POLICY`]) on an external server.
pub async fn start_with_approles(roles: &[AppRole]) -> Vault {
    if external_target().is_none() {
        let v = start_vault_dev_with(ServerConfig {
            approles: roles.to_vec(),
            ..ServerConfig::default()
        })
        .await;
        announce(&v, "in-process vault-dev").await;
        return v;
    }
    let v = start().await;
    let r = v
        .write(
            &format!("sys/policies/acl/{APPROLE_POLICY}"),
            json!({ "policy": APPROLE_POLICY_HCL }),
        )
        .await;
    assert_eq!(r.status, 204, "writing the AppRole policy: {:?}", r.body);
    for role in roles {
        let name = &role.role_id;
        let steps = [
            (
                format!("auth/approle/role/{name}"),
                json!({
                    "token_ttl": role.token_ttl.as_secs(),
                    "token_max_ttl": role.token_max_ttl.as_secs(),
                    "token_policies": [APPROLE_POLICY],
                }),
            ),
            (
                format!("auth/approle/role/{name}/role-id"),
                json!({ "role_id": role.role_id }),
            ),
            (
                format!("auth/approle/role/{name}/custom-secret-id"),
                json!({ "secret_id": role.secret_id }),
            ),
        ];
        for (path, body) in steps {
            let r = v.write(&path, body).await;
            assert!(matches!(r.status, 200 | 204), "{path}: {:?}", r.body);
        }
    }
    v
}

/// An in-process vault-dev with the default configuration, whatever the environment.
pub async fn start_vault_dev() -> Vault {
    start_vault_dev_with(ServerConfig::default()).await
}

/// An in-process vault-dev, whatever the environment (for vault-dev-only tests).
pub async fn start_vault_dev_with(config: ServerConfig) -> Vault {
    let server = Server::start(config).await.expect("server starts");
    Vault::from_dev(server, reqwest::Client::new())
}

/// Print once per test binary which server the portable tests target, with its version.
async fn announce(v: &Vault, what: &str) {
    static ONCE: OnceLock<()> = OnceLock::new();
    if ONCE.get().is_some() {
        return;
    }
    let r = v.call_as(None, "GET", "sys/health", None).await;
    if ONCE.set(()).is_ok() {
        // Straight to stderr: the test harness captures `eprintln!`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "conformance target: {what} at {} (sys/health: {} version {})",
            v.url,
            r.status,
            r.body["version"]
        );
    }
}

/// Mounts present when the external server was first reached (other than transit
/// ones); anything else is removed between tests.
struct Baseline {
    mounts: BTreeSet<String>,
    auth: BTreeSet<String>,
}

/// One test at a time on the external server. (An async mutex: each test has its
/// own runtime; a test that panics just releases it, the next test resets the server.)
async fn exclusive() -> tokio::sync::OwnedMutexGuard<()> {
    static LOCK: OnceLock<Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    LOCK.get_or_init(Default::default)
        .clone()
        .lock_owned()
        .await
}

async fn connect_external(url: String, token: String) -> Vault {
    let guard = exclusive().await;
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(60));
    if let Some(path) = std::env::var_os(CACERT_VAR).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{CACERT_VAR}={}: {e}", path.to_string_lossy()));
        let ca = reqwest::Certificate::from_pem(&pem).expect("CA certificate");
        client = client.add_root_certificate(ca);
    }
    let client = client.build().expect("HTTP client");
    let health = client
        .get(format!("{url}/v1/sys/health"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("{ADDR_VAR}={url} is set but the server cannot be reached: {e}")
        });
    assert_eq!(
        health.status().as_u16(),
        200,
        "{ADDR_VAR}={url}: sys/health is not 200 (sealed or standby?)"
    );
    let v = Vault {
        client,
        url,
        token,
        dev: None,
        _exclusive: Some(guard),
    };
    announce(&v, "external server").await;
    let r = v.read("auth/token/lookup-self").await;
    assert!(
        r.status == 200 && r.body["data"]["policies"] == json!(["root"]),
        "{TOKEN_VAR} is not a root token for {}: {} {:?}",
        v.url,
        r.status,
        r.body
    );
    v.reset().await;
    v
}

/// Paths (`name/`) of a `sys/mounts` or `sys/auth` listing, with their types.
fn listing(r: &Resp, what: &str) -> Vec<(String, String)> {
    assert_eq!(r.status, 200, "listing {what}: {:?}", r.body);
    r.body["data"]
        .as_object()
        .unwrap_or_else(|| panic!("listing {what}: {:?}", r.body))
        .iter()
        .map(|(path, m)| (path.clone(), m["type"].as_str().unwrap_or("").to_string()))
        .collect()
}

impl Vault {
    /// A client for an in-process server.
    pub fn from_dev(server: RunningServer, client: reqwest::Client) -> Self {
        Self {
            client,
            url: server.url(),
            token: server.root_token().to_string(),
            dev: Some(server),
            _exclusive: None,
        }
    }

    /// Whether this is an external server rather than vault-dev.
    pub fn is_external(&self) -> bool {
        self.dev.is_none()
    }

    /// The in-process vault-dev (faults, stats, test hooks).
    pub fn dev(&self) -> &RunningServer {
        self.dev
            .as_ref()
            .expect("vault-dev internals: start this test with start_vault_dev*")
    }

    /// Take the in-process vault-dev (e.g. to shut it down).
    pub fn into_dev(self) -> RunningServer {
        self.dev
            .expect("vault-dev internals: start this test with start_vault_dev*")
    }

    /// Bring an external server to a fresh vault-dev's state.
    async fn reset(&self) {
        static BASELINE: OnceLock<Baseline> = OnceLock::new();
        let mounts = listing(&self.read("sys/mounts").await, "sys/mounts");
        let auth = listing(&self.read("sys/auth").await, "sys/auth");
        let baseline = BASELINE.get_or_init(|| Baseline {
            mounts: mounts
                .iter()
                .filter(|(_, kind)| kind != "transit")
                .map(|(p, _)| p.clone())
                .collect(),
            auth: auth.iter().map(|(p, _)| p.clone()).collect(),
        });
        for (path, kind) in &mounts {
            if kind == "transit" || !baseline.mounts.contains(path) {
                self.must("DELETE", &format!("sys/mounts/{path}"), None)
                    .await;
            }
        }
        self.must(
            "POST",
            "sys/mounts/transit",
            Some(json!({ "type": "transit" })),
        )
        .await;
        for (path, kind) in &auth {
            if kind == "approle" || !baseline.auth.contains(path) {
                self.must("DELETE", &format!("sys/auth/{path}"), None).await;
            }
        }
        self.must(
            "POST",
            "sys/auth/approle",
            Some(json!({ "type": "approle" })),
        )
        .await;
        self.must(
            "DELETE",
            &format!("sys/policies/acl/{APPROLE_POLICY}"),
            None,
        )
        .await;
    }

    /// A root request that must answer 204 (set-up and clean-up).
    async fn must(&self, method: &str, path: &str, body: Option<Value>) {
        let r = self.call(method, path, body).await;
        assert_eq!(r.status, 204, "{method} {path}: {:?}", r.body);
    }

    /// The root token.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// A request with the root token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        send(
            &self.client,
            &self.url,
            Some(&self.token),
            method,
            path,
            body.as_ref(),
        )
        .await
    }

    /// A request with any token (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        send(&self.client, &self.url, token, method, path, body.as_ref()).await
    }

    pub async fn write(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    pub async fn read(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    /// Encrypt bytes with the root token at `<mount>/encrypt/<key>`; panics on failure.
    pub async fn encrypt(&self, mount: &str, key: &str, plaintext: &[u8]) -> String {
        let r = self
            .write(
                &format!("{mount}/encrypt/{key}"),
                serde_json::json!({ "plaintext": b64(plaintext) }),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["data"]["ciphertext"].as_str().unwrap().to_string()
    }

    /// Decrypt with the root token at `<mount>/decrypt/<key>`.
    pub async fn decrypt(&self, mount: &str, key: &str, ciphertext: &str) -> Resp {
        self.write(
            &format!("{mount}/decrypt/{key}"),
            serde_json::json!({ "ciphertext": ciphertext }),
        )
        .await
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{url}/v1/{path}"));
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Resp {
        status,
        body,
        headers,
    }
}

/// `^vault:v[1-9][0-9]*:[A-Za-z0-9+/]+={0,2}$` without a regex crate.
pub fn is_well_formed(ct: &str) -> bool {
    let Some(rest) = ct.strip_prefix("vault:v") else {
        return false;
    };
    let Some((ver, payload)) = rest.split_once(':') else {
        return false;
    };
    let ver_ok = ver.starts_with(|c: char| ('1'..='9').contains(&c))
        && ver.chars().all(|c| c.is_ascii_digit());
    let body = payload.trim_end_matches('=');
    let pad = payload.len() - body.len();
    ver_ok
        && !body.is_empty()
        && pad <= 2
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
}
