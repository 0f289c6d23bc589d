//! The admin listener from a test's side: HTTP requests to it, and a strict parser of
//! its OpenMetrics text (a malformed line fails the test, so the format is checked too).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_transit::admin::Admin;
use kafka_transit::config::AdminConfig;
use kafka_transit::vault::VaultClient;

use super::kafka::RunningPipeline;

/// An admin listener on a free loopback port, wired to `pipeline` as `run` wires it.
pub async fn start_admin(
    pipeline: &RunningPipeline,
    vault: &VaultClient,
    vault_check_interval: Duration,
) -> Admin {
    let config = AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        stall_timeout: Duration::from_secs(60),
        vault_check_interval,
        reload_token_file: None,
        reload_token_env: None,
    };
    let mut admin = Admin::start(&config).await.expect("admin listener starts");
    admin.watch_vault(vault);
    admin.policy_loaded();
    admin.watch_pipeline(Arc::clone(&pipeline.metrics));
    admin
}

/// `GET` (or `POST`) a path: status and body.
pub async fn request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_with(address, method, path, None).await
}

/// [`request`] with an `Authorization` header.
pub async fn request_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("http://{address}{path}");
    let mut builder = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    };
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("a text body"))
}

/// A POST of `body` (JSON), with an `Authorization` header if given.
pub async fn post_json(
    address: SocketAddr,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String) {
    let url = format!("http://{address}{path}");
    let mut builder = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("a text body"))
}

/// One scrape: samples by name, then by their labels rendered `k="v",...`.
#[derive(Debug)]
pub struct Exposition {
    pub samples: BTreeMap<String, BTreeMap<String, f64>>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Exposition {
    pub async fn scrape(address: SocketAddr) -> Exposition {
        let (status, text) = request(address, "GET", "/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        Exposition::parse(&text)
    }

    /// Parses OpenMetrics text: `# HELP`/`# TYPE`/`# UNIT` lines, samples
    /// `name{label="value",...} number`, and the closing `# EOF`.
    pub fn parse(text: &str) -> Exposition {
        let mut samples: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut ended = false;
        for line in text.lines() {
            assert!(!ended, "a line after # EOF: {line:?}");
            if line == "# EOF" {
                ended = true;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (
                    name,
                    labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}")),
                ),
                None => (series, ""),
            };
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad metric name in {line:?}"
            );
            let previous = samples
                .entry(name.to_string())
                .or_default()
                .insert(labels.to_string(), value);
            assert!(previous.is_none(), "a series twice: {line:?}");
        }
        assert!(ended, "no # EOF at the end of the exposition");
        Exposition {
            samples,
            types,
            text: text.to_string(),
        }
    }

    /// The value of `name` with exactly `labels` (`k="v",...`, in exposition order).
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples.get(name)?.get(labels).copied()
    }

    /// The sum of `name` over every label set; 0 when absent.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .get(name)
            .map_or(0.0, |series| series.values().sum())
    }

    /// The value of `name`, which must have one series without labels.
    pub fn single(&self, name: &str) -> f64 {
        self.value(name, "")
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text))
    }
}
