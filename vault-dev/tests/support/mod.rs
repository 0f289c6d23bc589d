//! Helpers shared by the vault-dev integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use base64::Engine;
use serde_json::Value;
use vault_dev::{RunningServer, Server, ServerConfig};

/// A running in-process server plus an HTTP client for it.
pub struct Vault {
    pub server: RunningServer,
    pub client: reqwest::Client,
    pub url: String,
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

pub async fn start() -> Vault {
    start_with(ServerConfig::default()).await
}

pub async fn start_with(config: ServerConfig) -> Vault {
    let server = Server::start(config).await.expect("server starts");
    let url = server.url();
    Vault {
        server,
        client: reqwest::Client::new(),
        url,
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

impl Vault {
    pub fn token(&self) -> String {
        self.server.root_token().to_string()
    }

    /// A request with the root token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let token = self.token();
        send(
            &self.client,
            &self.url,
            Some(&token),
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
