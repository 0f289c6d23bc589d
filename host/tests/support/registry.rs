//! The Schema Registry a test runs against: the external one named by
//! `KAFKA_TRANSIT_TEST_SCHEMA_REGISTRY_URL` (Apicurio Registry's Confluent API in CI,
//! `.ci/schema-registry/registry.sh`), or else a minimal in-process registry that
//! speaks the part of Confluent's REST API the runner uses (register, `/schemas/ids`,
//! `/subjects/{s}/versions/{v}`), and can be made to fail like a registry that is down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const EXTERNAL_ENV: &str = "KAFKA_TRANSIT_TEST_SCHEMA_REGISTRY_URL";

pub struct TestRegistry {
    pub url: String,
    /// `None` for an external registry.
    local: Option<Arc<Local>>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Local {
    /// (schema type, text, references) by id, ids from 1.
    schemas: Mutex<Vec<(String, String, Value)>>,
    /// subject -> ids of its versions.
    subjects: Mutex<HashMap<String, Vec<usize>>>,
    down: AtomicBool,
    lookups: AtomicUsize,
}

impl TestRegistry {
    /// The external registry if the environment names one, else an in-process one.
    pub async fn target() -> TestRegistry {
        match std::env::var(EXTERNAL_ENV) {
            Ok(url) if !url.is_empty() => TestRegistry {
                url: url.trim_end_matches('/').to_string(),
                local: None,
                http: reqwest::Client::new(),
            },
            _ => TestRegistry::start_local().await,
        }
    }

    /// The in-process registry, whatever the environment says (for fault injection).
    pub async fn start_local() -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let local = Arc::new(Local::default());
        let serving = local.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let local = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let local = local.clone();
                        async move { Ok::<_, Infallible>(local.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestRegistry {
            url,
            local: Some(local),
            http: reqwest::Client::new(),
        }
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Registers a schema under `subject`; its id.
    pub async fn register(&self, subject: &str, schema_type: &str, schema: &str) -> u32 {
        let response = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.url))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&json!({ "schemaType": schema_type, "schema": schema }))
            .send()
            .await
            .expect("the registry answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON answer");
        assert!(
            status.is_success(),
            "registering under {subject}: {status} {body}"
        );
        body["id"].as_u64().expect("an id") as u32
    }

    /// The in-process registry answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.local().down.store(down, Ordering::SeqCst);
    }

    /// How many schema lookups (`GET /schemas/ids/...`) the in-process registry served.
    pub fn lookups(&self) -> usize {
        self.local().lookups.load(Ordering::SeqCst)
    }

    fn local(&self) -> &Local {
        self.local
            .as_deref()
            .expect("fault injection needs the in-process registry (TestRegistry::start_local)")
    }
}

impl Local {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if self.down.load(Ordering::SeqCst) {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error_code": 50301}),
            );
        }
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_found = |code| answer(StatusCode::NOT_FOUND, json!({"error_code": code}));
        match (method, segments.as_slice()) {
            (Method::POST, ["subjects", subject, "versions"]) => {
                let Ok(body) = body else {
                    return answer(StatusCode::BAD_REQUEST, json!({}));
                };
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let schema_type = request["schemaType"].as_str().unwrap_or("AVRO").to_string();
                let text = request["schema"].as_str().unwrap_or_default().to_string();
                let references = request.get("references").cloned().unwrap_or(json!([]));
                let mut schemas = self.schemas.lock().unwrap();
                let existing = schemas
                    .iter()
                    .position(|(t, s, _)| *t == schema_type && *s == text);
                let id = existing.unwrap_or_else(|| {
                    schemas.push((schema_type, text, references));
                    schemas.len() - 1
                }) + 1;
                let mut subjects = self.subjects.lock().unwrap();
                let versions = subjects.entry(subject.to_string()).or_default();
                if !versions.contains(&id) {
                    versions.push(id);
                }
                answer(StatusCode::OK, json!({ "id": id }))
            }
            (Method::GET, ["schemas", "ids", id]) => {
                self.lookups.fetch_add(1, Ordering::SeqCst);
                let schemas = self.schemas.lock().unwrap();
                match id
                    .parse::<usize>()
                    .ok()
                    .and_then(|id| schemas.get(id.wrapping_sub(1)))
                {
                    Some(found) => answer(StatusCode::OK, schema_json(found)),
                    None => not_found(40403),
                }
            }
            (Method::GET, ["subjects", subject, "versions", version]) => {
                let subjects = self.subjects.lock().unwrap();
                let schemas = self.schemas.lock().unwrap();
                let id = subjects.get(*subject).and_then(|versions| match *version {
                    "latest" => versions.last().copied(),
                    v => v
                        .parse::<usize>()
                        .ok()
                        .and_then(|v| versions.get(v.wrapping_sub(1)).copied()),
                });
                match id.and_then(|id| schemas.get(id - 1).map(|s| (id, s))) {
                    Some((id, found)) => {
                        let mut body = schema_json(found);
                        body["id"] = json!(id);
                        body["subject"] = json!(subject);
                        answer(StatusCode::OK, body)
                    }
                    None => not_found(40402),
                }
            }
            _ => not_found(404),
        }
    }
}

fn schema_json((schema_type, text, references): &(String, String, Value)) -> Value {
    json!({ "schemaType": schema_type, "schema": text, "references": references })
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}
