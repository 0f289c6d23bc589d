//! Helpers shared by the host's integration tests: an in-process vault-dev server,
//! clients for it, raw HTTP access and TLS material.
//!
//! Use from a test file with `mod support;`.
#![allow(dead_code)]

pub mod kafka;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_transit::vault::{VaultClient, VaultSettings, VaultToken};
pub use vault_dev::{RunningServer, ServerConfig};

/// Starts an in-process vault-dev with the default configuration.
pub async fn start_vault() -> RunningServer {
    start_vault_with(ServerConfig::default()).await
}

/// Starts an in-process vault-dev with `config`.
pub async fn start_vault_with(config: ServerConfig) -> RunningServer {
    vault_dev::Server::start(config)
        .await
        .expect("start vault-dev")
}

/// A process-unique name (for env vars, keys, mounts).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for `server`, with the root token in a fresh env var and short retry delays
/// so that tests run fast.
pub fn settings_for(server: &RunningServer) -> VaultSettings {
    let var = unique_name("KT_TEST_VAULT_TOKEN");
    std::env::set_var(&var, server.root_token());
    let mut s = VaultSettings::for_token(server.url(), var);
    s.request_timeout = Duration::from_secs(10);
    s.retry_initial_backoff = Duration::from_millis(20);
    s.retry_max_backoff = Duration::from_millis(500);
    s
}

/// A client for `server` using its root token (no I/O).
pub fn client_for(server: &RunningServer) -> VaultClient {
    client_with(server, settings_for(server))
}

/// A client with custom `settings`, using the root token of `server` (no I/O).
pub fn client_with(server: &RunningServer, settings: VaultSettings) -> VaultClient {
    VaultClient::with_token(&settings, VaultToken::new(server.root_token().to_string()))
        .expect("vault client")
}

/// A raw request to `server` with its root token: returns the status and the JSON body
/// (`Null` when empty).
pub async fn raw_request(
    server: &RunningServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("{}/v1/{}", server.url().trim_end_matches('/'), path);
    let http = reqwest::Client::new();
    let mut rb = http
        .request(method, url)
        .header("X-Vault-Token", server.root_token());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("raw request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("raw body");
    let v = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    (status, v)
}

/// Creates (or updates) a transit key with the given options, e.g.
/// `json!({"exportable": true})`.
pub async fn create_key(
    server: &RunningServer,
    mount: &str,
    name: &str,
    options: serde_json::Value,
) {
    let (status, body) = raw_request(
        server,
        reqwest::Method::POST,
        &format!("{mount}/keys/{name}"),
        Some(options),
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "creating key {mount}/{name}: {status} {body}"
    );
}

/// Exports the raw encryption key `version` of an exportable key.
pub async fn export_key(server: &RunningServer, mount: &str, name: &str, version: u64) -> Vec<u8> {
    use base64::Engine as _;
    let (status, body) = raw_request(
        server,
        reqwest::Method::GET,
        &format!("{mount}/export/encryption-key/{name}/{version}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "export: {body}");
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
