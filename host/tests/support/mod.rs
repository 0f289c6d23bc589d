//! Helpers shared by the host's integration tests: the Vault server a test runs
//! against, clients for it, raw HTTP access and TLS material.
//!
//! A test that works on any Vault-compatible server asks for the *target*,
//! [`TestVault::target`]: a fresh in-process vault-dev by default, or the external server
//! (OpenBao, Vault) named by the environment:
//!
//! - `KAFKA_TRANSIT_TEST_VAULT_ADDR` and `KAFKA_TRANSIT_TEST_VAULT_TOKEN` (a root token),
//!   optionally `KAFKA_TRANSIT_TEST_VAULT_CACERT` for an https address;
//! - for [`TestVault::target_tls`], an https server: `KAFKA_TRANSIT_TEST_VAULT_TLS_ADDR`,
//!   `KAFKA_TRANSIT_TEST_VAULT_TLS_TOKEN` and `KAFKA_TRANSIT_TEST_VAULT_TLS_CACERT`
//!   (without them: vault-dev with a fresh test CA).
//!
//! On an external server each test works in a transit mount of its own, so tests run in
//! parallel; [`TestVault::shutdown`] deletes it, and whatever else the test created there
//! with these helpers. On vault-dev the mount is `transit`. A server named by the environment that does not answer fails the test:
//! there is no silent fallback to vault-dev. Tests that need vault-dev itself (fault
//! injection, request counters) start one with [`start_vault_dev`].
//!
//! Use from a test file with `mod support;`.
#![allow(dead_code)]

pub mod admin;
pub mod kafka;
pub mod registry;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_transit::vault::{VaultClient, VaultError, VaultSettings, VaultToken};
use serde_json::{json, Value};
pub use vault_dev::{RunningServer, ServerConfig};

/// Prefix of the variables naming the external server.
pub const EXTERNAL_ENV: &str = "KAFKA_TRANSIT_TEST_VAULT";
/// Prefix of the variables naming the external https server.
pub const EXTERNAL_TLS_ENV: &str = "KAFKA_TRANSIT_TEST_VAULT_TLS";

/// A role of a `jwt` auth method made by [`TestVault::target_with_jwt`], and the key
/// whose JWTs it accepts.
pub struct JwtRole {
    pub mount: String,
    pub role: String,
    pub signer: vault_dev::JwtSigner,
    /// The file the settings name, holding a JWT the role accepts until a test
    /// writes another one with [`JwtRole::write_jwt`].
    pub jwt_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl JwtRole {
    /// The audience and claim the role is bound to.
    pub const AUDIENCE: &'static str = "kafka-transit";
    pub const TEAM: &'static str = "data";

    async fn create(vault: &TestVault, token_ttl: Duration, token_max_ttl: Duration) -> JwtRole {
        let signer = vault_dev::JwtSigner::generate().expect("a signing key");
        let mount = unique_name("kt_jwt");
        vault
            .create(
                reqwest::Method::POST,
                &format!("sys/auth/{mount}"),
                json!({ "type": "jwt" }),
            )
            .await;
        let config = json!({ "jwt_validation_pubkeys": [signer.public_key_pem()] });
        request_ok(
            vault,
            reqwest::Method::POST,
            &format!("auth/{mount}/config"),
            config,
        )
        .await;
        // vault-dev has no policy language: its login tokens may use transit anyway.
        let policy = match vault.dev() {
            Some(_) => "kt-transit".to_string(),
            None => {
                vault
                    .create_policy(&format!(
                        r#"path "{}/*" {{ capabilities = ["create", "read", "update"] }}"#,
                        vault.mount
                    ))
                    .await
            }
        };
        let role = "kafka-transit".to_string();
        let seconds = |d: Duration| format!("{}s", d.as_secs());
        request_ok(
            vault,
            reqwest::Method::POST,
            &format!("auth/{mount}/role/{role}"),
            json!({
                "role_type": "jwt",
                "bound_audiences": [Self::AUDIENCE],
                "bound_claims": { "team": Self::TEAM },
                "user_claim": "sub",
                "token_ttl": seconds(token_ttl),
                "token_max_ttl": seconds(token_max_ttl),
                "token_policies": [policy],
            }),
        )
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let jwt_role = JwtRole {
            mount,
            role,
            signer,
            jwt_file: dir.path().join("token"),
            _dir: dir,
        };
        jwt_role.write_jwt(&jwt_role.jwt());
        jwt_role
    }

    /// Replaces the JWT file the way the kubelet rotates a projected token: a new
    /// file renamed over the old one.
    pub fn write_jwt(&self, jwt: &str) {
        let tmp = self.jwt_file.with_extension("new");
        std::fs::write(&tmp, jwt).expect("write the JWT");
        std::fs::rename(&tmp, &self.jwt_file).expect("rename the JWT into place");
    }

    /// A client logging in with this role and the JWT file.
    pub async fn connect(&self, vault: &TestVault) -> Result<VaultClient, VaultError> {
        VaultClient::connect(&self.settings(vault)).await
    }

    /// A JWT the role accepts, valid for ten minutes, with `changes` merged into its
    /// claims.
    pub fn jwt_with(&self, changes: Value) -> String {
        let now = vault_dev::unix_now();
        let mut claims = json!({
            "iss": "kafka-transit-tests",
            "sub": "system:serviceaccount:streams:kafka-transit",
            "aud": [Self::AUDIENCE],
            "team": Self::TEAM,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        if let (Some(claims), Value::Object(changes)) = (claims.as_object_mut(), changes) {
            claims.extend(changes);
        }
        self.signer.sign(&claims)
    }

    pub fn jwt(&self) -> String {
        self.jwt_with(json!({}))
    }

    /// Settings logging in with this role (`[vault.jwt]`) and the JWT file.
    pub fn settings(&self, vault: &TestVault) -> VaultSettings {
        let mut s = settings_for(vault);
        s.token_env = None;
        s.jwt = Some(kafka_transit::vault::JwtLoginSettings {
            mount: Some(self.mount.clone()),
            role: self.role.clone(),
            jwt_file: Some(self.jwt_file.clone()),
        });
        s
    }
}

/// Starts an in-process vault-dev with the default configuration.
pub async fn start_vault_dev() -> RunningServer {
    start_vault_dev_with(ServerConfig::default()).await
}

/// Starts an in-process vault-dev with `config`.
pub async fn start_vault_dev_with(config: ServerConfig) -> RunningServer {
    vault_dev::Server::start(config)
        .await
        .expect("start vault-dev")
}

/// [`start_vault_dev`], by the name the pipeline and envelope tests use (they count
/// vault-dev's requests and seal it).
pub async fn start_vault() -> RunningServer {
    start_vault_dev().await
}

/// A name unique to this run of this process (for env vars, keys, mounts, roles): on a
/// long-lived external server, names from earlier runs must not collide.
pub fn unique_name(prefix: &str) -> String {
    static RUN: LazyLock<String> = LazyLock::new(|| {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        format!("{}_{:x}", std::process::id(), millis & 0xff_ffff)
    });
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}_{}_{}", *RUN, N.fetch_add(1, Ordering::Relaxed))
}

/// A Vault-compatible server the helpers below reach with its root token.
pub trait VaultEndpoint {
    fn url(&self) -> String;
    fn root_token(&self) -> &str;
    /// The CA bundle to trust, for an https server.
    fn ca_cert(&self) -> Option<&Path> {
        None
    }
    /// The transit mount the test uses.
    fn mount(&self) -> &str {
        "transit"
    }
}

impl VaultEndpoint for RunningServer {
    fn url(&self) -> String {
        RunningServer::url(self)
    }
    fn root_token(&self) -> &str {
        RunningServer::root_token(self)
    }
}

/// The server a test runs against: an in-process vault-dev, or the external server
/// named by the environment (see the module documentation).
pub struct TestVault {
    url: String,
    token: String,
    ca_cert: Option<PathBuf>,
    mount: String,
    /// The in-process server; `None` for an external one.
    dev: Option<RunningServer>,
    /// Keeps the TLS material of an https vault-dev.
    _tls_dir: Option<tempfile::TempDir>,
    /// What the test created on an external server (API paths), for `shutdown` to
    /// delete, newest first.
    created: Mutex<Vec<String>>,
}

impl VaultEndpoint for TestVault {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn root_token(&self) -> &str {
        &self.token
    }
    fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }
    fn mount(&self) -> &str {
        &self.mount
    }
}

impl TestVault {
    /// The external server if the environment names one, else a fresh vault-dev.
    pub async fn target() -> TestVault {
        match TestVault::external().await {
            Some(vault) => vault,
            None => TestVault::start_dev(ServerConfig::default(), None).await,
        }
    }

    /// The external server, if the environment names one: for tests of what vault-dev
    /// does not implement (namespaces, ACL policies, token creation).
    pub async fn external() -> Option<TestVault> {
        TestVault::on_external(EXTERNAL_ENV, false).await
    }

    /// An https server and the CA bundle that trusts it (`ca_cert()`): the external one
    /// named by `KAFKA_TRANSIT_TEST_VAULT_TLS_*`, else vault-dev with a fresh test CA.
    pub async fn target_tls() -> TestVault {
        if let Some(vault) = TestVault::on_external(EXTERNAL_TLS_ENV, true).await {
            return vault;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = make_tls(dir.path());
        let config = ServerConfig {
            tls: Some(vault_dev::TlsFiles {
                cert: tls.cert_pem,
                key: tls.key_pem,
            }),
            ..Default::default()
        };
        TestVault::start_dev(config, Some((dir, tls.ca_pem))).await
    }

    /// The target with an AppRole at `approle/` whose tokens live `token_ttl`, are
    /// renewable up to `token_max_ttl` and may use the test's mount. Returns the role ID
    /// and a secret ID too.
    pub async fn target_with_approle(
        token_ttl: Duration,
        token_max_ttl: Duration,
    ) -> (TestVault, String, String) {
        let Some(vault) = TestVault::external().await else {
            let config = ServerConfig {
                approles: vec![vault_dev::AppRole {
                    role_id: "role-1".into(),
                    secret_id: "secret-1".into(),
                    token_ttl,
                    token_max_ttl,
                }],
                ..Default::default()
            };
            let vault = TestVault::start_dev(config, None).await;
            return (vault, "role-1".into(), "secret-1".into());
        };
        let policy = vault
            .create_policy(&format!(
                r#"path "{}/*" {{ capabilities = ["create", "read", "update"] }}"#,
                vault.mount
            ))
            .await;
        let role = format!("auth/approle/role/{}", unique_name("kt_role"));
        let seconds = |d: Duration| format!("{}s", d.as_secs());
        vault
            .create(
                reqwest::Method::POST,
                &role,
                json!({
                    "token_ttl": seconds(token_ttl),
                    "token_max_ttl": seconds(token_max_ttl),
                    "token_policies": [policy],
                }),
            )
            .await;
        let get = |reply: Value, field: &str| {
            reply["data"][field]
                .as_str()
                .unwrap_or_else(|| panic!("no data.{field} in {reply}"))
                .to_string()
        };
        let role_id_path = format!("{role}/role-id");
        let reply = request_ok(&vault, reqwest::Method::GET, &role_id_path, Value::Null).await;
        let role_id = get(reply, "role_id");
        let secret_id_path = format!("{role}/secret-id");
        let reply = request_ok(&vault, reqwest::Method::POST, &secret_id_path, json!({})).await;
        let secret_id = get(reply, "secret_id");
        (vault, role_id, secret_id)
    }

    /// The target with the `jwt` auth method enabled at a mount of its own, trusting a
    /// key made for the test, and a role whose tokens live `token_ttl`, are renewable
    /// up to `token_max_ttl` and may use the test's mount. The same API calls set it up
    /// on vault-dev and on OpenBao.
    pub async fn target_with_jwt(
        token_ttl: Duration,
        token_max_ttl: Duration,
    ) -> (TestVault, JwtRole) {
        let vault = TestVault::target().await;
        let role = JwtRole::create(&vault, token_ttl, token_max_ttl).await;
        (vault, role)
    }

    async fn start_dev(
        config: ServerConfig,
        tls: Option<(tempfile::TempDir, PathBuf)>,
    ) -> TestVault {
        let server = start_vault_dev_with(config).await;
        let (tls_dir, ca_cert) = tls.unzip();
        let vault = TestVault {
            url: server.url(),
            token: server.root_token().to_string(),
            ca_cert,
            mount: "transit".into(),
            dev: Some(server),
            _tls_dir: tls_dir,
            created: Mutex::default(),
        };
        vault.check_health("in-process vault-dev").await;
        vault
    }

    /// The server named by `{prefix}_ADDR`, `_TOKEN` and `_CACERT` (required when
    /// `ca_required`), with a fresh transit mount; `None` when `{prefix}_ADDR` is unset.
    async fn on_external(prefix: &str, ca_required: bool) -> Option<TestVault> {
        let var = |name: &str| {
            std::env::var(format!("{prefix}_{name}"))
                .ok()
                .filter(|v| !v.trim().is_empty())
        };
        let url = var("ADDR")?;
        let token = var("TOKEN")
            .unwrap_or_else(|| panic!("{prefix}_ADDR is set but {prefix}_TOKEN is not"));
        let ca_cert = var("CACERT").map(PathBuf::from);
        assert!(
            ca_cert.is_some() || !ca_required,
            "{prefix}_ADDR is set but {prefix}_CACERT is not"
        );
        let vault = TestVault {
            url,
            token: token.trim().to_string(),
            ca_cert,
            mount: unique_name("kt_transit"),
            dev: None,
            _tls_dir: None,
            created: Mutex::default(),
        };
        vault
            .check_health(&format!("external server from {prefix}_ADDR"))
            .await;
        vault.mount_transit(&vault.mount, None).await;
        Some(vault)
    }

    /// Fails loudly unless the server is up, active and unsealed; says once per process
    /// which server `what` is and its version. Written to stderr directly, not with
    /// `eprintln!`, which the test harness would capture.
    async fn check_health(&self, what: &str) {
        let health = async {
            let resp = http_client(self)
                .get(format!("{}/v1/sys/health", self.url.trim_end_matches('/')))
                .send()
                .await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await?))
        };
        let (status, body) = health.await.unwrap_or_else(|e| {
            panic!(
                "{what} at {} is not reachable: {e:?} (tests never fall back to another server)",
                self.url
            )
        });
        assert_eq!(
            status, 200,
            "{what} at {} is not active and unsealed: {body}",
            self.url
        );
        static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        if SEEN.lock().unwrap().insert(what.to_string()) {
            let health: Value = serde_json::from_str(&body).unwrap_or_default();
            let version = health["version"].as_str().unwrap_or("unknown");
            let _ = writeln!(
                std::io::stderr(),
                "vault tests run against {what} at {}, version {version}",
                self.url
            );
        }
    }

    /// The in-process vault-dev, if that is the server.
    pub fn dev(&self) -> Option<&RunningServer> {
        self.dev.as_ref()
    }

    /// Requests the server has handled so far, if it counts them (vault-dev does).
    pub fn server_requests(&self) -> Option<u64> {
        self.dev.as_ref().map(server_requests)
    }

    /// Enables a transit engine at `path`, in `namespace` if given (removed with it).
    pub async fn mount_transit(&self, path: &str, namespace: Option<&str>) {
        let mount = format!("sys/mounts/{path}");
        let body = json!({"type": "transit"});
        if namespace.is_none() {
            self.create(reqwest::Method::POST, &mount, body).await;
        } else {
            request_in_ok(self, namespace, reqwest::Method::POST, &mount, body).await;
        }
    }

    /// A request creating `path`, which `shutdown` deletes on an external server.
    async fn create(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let reply = request_ok(self, method, path, body).await;
        self.created.lock().unwrap().push(path.to_string());
        reply
    }

    /// Creates a namespace (external servers only; vault-dev has none); returns its name.
    pub async fn create_namespace(&self) -> String {
        let name = unique_name("kt_ns");
        let path = format!("sys/namespaces/{name}");
        self.create(reqwest::Method::POST, &path, json!({})).await;
        name
    }

    /// Creates an ACL policy from `hcl` (external servers only); returns its name.
    pub async fn create_policy(&self, hcl: &str) -> String {
        let name = unique_name("kt_policy");
        let path = format!("sys/policies/acl/{name}");
        self.create(reqwest::Method::PUT, &path, json!({"policy": hcl}))
            .await;
        name
    }

    /// A new token with `policies` (and `default`), valid for an hour (external servers
    /// only).
    pub async fn create_token(&self, policies: &[&str]) -> String {
        self.token_with(json!({"policies": policies, "ttl": "1h"}))
            .await
    }

    /// A new renewable token with `policies` and nothing else, not even Vault's
    /// `default` policy (its own lookup and renewal), valid for an hour.
    pub async fn create_token_without_default(&self, policies: &[&str]) -> String {
        self.token_with(json!({"policies": policies, "ttl": "1h", "no_default_policy": true}))
            .await
    }

    async fn token_with(&self, body: Value) -> String {
        let created = request_ok(self, reqwest::Method::POST, "auth/token/create", body).await;
        created["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string()
    }

    /// Stops vault-dev, or deletes what the test created on the external server (its
    /// mount, namespaces, policies, roles).
    pub async fn shutdown(mut self) {
        if let Some(server) = self.dev.take() {
            return server.shutdown().await;
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        for path in created.iter().rev() {
            request_ok(&self, reqwest::Method::DELETE, path, Value::Null).await;
        }
    }
}

/// Settings for `server` and its mount, with the root token in a fresh env var and short
/// retry delays so that tests run fast.
pub fn settings_for(server: &impl VaultEndpoint) -> VaultSettings {
    let var = unique_name("KT_TEST_VAULT_TOKEN");
    std::env::set_var(&var, server.root_token());
    let mut s = VaultSettings::for_token(server.url(), var);
    s.mount = server.mount().to_string();
    s.ca_cert = server.ca_cert().map(Path::to_path_buf);
    s.request_timeout = Duration::from_secs(10);
    s.retry_initial_backoff = Duration::from_millis(20);
    s.retry_max_backoff = Duration::from_millis(500);
    s
}

/// A client for `server` using its root token (no I/O).
pub fn client_for(server: &impl VaultEndpoint) -> VaultClient {
    client_with(server, settings_for(server))
}

/// A client with custom `settings`, using the root token of `server` (no I/O).
pub fn client_with(server: &impl VaultEndpoint, settings: VaultSettings) -> VaultClient {
    VaultClient::with_token(&settings, VaultToken::new(server.root_token().to_string()))
        .expect("vault client")
}

/// An HTTP client trusting the server's CA bundle, if it has one.
fn http_client(server: &impl VaultEndpoint) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = server.ca_cert() {
        let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("reading {}: {e}", ca.display()));
        for cert in reqwest::Certificate::from_pem_bundle(&pem).expect("CA bundle") {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().expect("HTTP client")
}

/// A raw request to `server` with its root token: returns the status and the JSON body
/// (`Null` when empty).
pub async fn raw_request(
    server: &impl VaultEndpoint,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    raw_request_in(server, None, method, path, body).await
}

/// [`raw_request`] in `namespace` (the `X-Vault-Namespace` header), if given.
pub async fn raw_request_in(
    server: &impl VaultEndpoint,
    namespace: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}/v1/{}", server.url().trim_end_matches('/'), path);
    let mut rb = http_client(server)
        .request(method, url)
        .header("X-Vault-Token", server.root_token());
    if let Some(ns) = namespace {
        rb = rb.header("X-Vault-Namespace", ns);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("raw request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("raw body");
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    (status, v)
}

/// A raw request that must succeed (2xx); returns the JSON body. A `Null` body sends none.
pub async fn request_ok(
    server: &impl VaultEndpoint,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    request_in_ok(server, None, method, path, body).await
}

/// [`request_ok`] in `namespace`, if given.
pub async fn request_in_ok(
    server: &impl VaultEndpoint,
    namespace: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let what = format!("{method} {path}");
    let body = (!body.is_null()).then_some(body);
    let (status, reply) = raw_request_in(server, namespace, method, path, body).await;
    assert!((200..300).contains(&status), "{what}: {status} {reply}");
    reply
}

/// Creates (or updates) a transit key with the given options, e.g.
/// `json!({"exportable": true})`.
pub async fn create_key(server: &impl VaultEndpoint, mount: &str, name: &str, options: Value) {
    request_ok(
        server,
        reqwest::Method::POST,
        &format!("{mount}/keys/{name}"),
        options,
    )
    .await;
}

/// Exports the raw encryption key `version` of an exportable key.
pub async fn export_key(
    server: &impl VaultEndpoint,
    mount: &str,
    name: &str,
    version: u64,
) -> Vec<u8> {
    use base64::Engine as _;
    let path = format!("{mount}/export/encryption-key/{name}/{version}");
    let body = request_ok(server, reqwest::Method::GET, &path, Value::Null).await;
    let b64 = body["data"]["keys"][version.to_string()]
        .as_str()
        .expect("exported key");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("exported key base64")
}

/// TLS material signed by a fresh test CA.
pub struct TestTls {
    /// PEM of the CA (for `vault.ca_cert`).
    pub ca_pem: PathBuf,
    /// Server certificate (for `localhost` and 127.0.0.1) and key, PEM files.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// Writes a CA and a server certificate for `localhost`/`127.0.0.1` into `dir`.
pub fn make_tls(dir: &Path) -> TestTls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kafka-transit test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");

    let tls = TestTls {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server-key.pem"),
    };
    std::fs::write(&tls.ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&tls.cert_pem, cert.pem()).unwrap();
    std::fs::write(&tls.key_pem, key.serialize_pem()).unwrap();
    tls
}

/// Requests the server has handled so far.
pub fn server_requests(server: &RunningServer) -> u64 {
    server.stats().requests
}
