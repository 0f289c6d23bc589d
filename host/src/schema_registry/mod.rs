//! A client for a Confluent-compatible Schema Registry (Confluent's, Apicurio Registry's
//! `/apis/ccompat/v7`, Redpanda's, Karapace): what the WIT `schema-registry` import
//! (0.2.2) answers from.
//!
//! A schema id never changes its schema, so schemas are cached by id without expiry (up
//! to `cache_capacity`, the oldest dropped first). Ids the registry does not know are
//! remembered for [`NOT_FOUND_TTL`]: a producer writing garbage ids costs the registry
//! one request per id and half a minute, not one per record. References are resolved
//! through `/subjects/{subject}/versions/{version}`, depth first, each name once.

mod metrics;
mod settings;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use serde::Deserialize;
use zeroize::Zeroizing;

use metrics::RegistryMetrics;
pub use settings::RegistrySettings;

/// How long an id the registry said it does not have is answered from memory.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// Most references one schema may pull in, directly or not.
const MAX_REFERENCES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

/// A schema with every schema it references, each under the name it is referenced by.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub schema_type: SchemaType,
    pub text: String,
    pub references: Vec<(String, String)>,
}

/// Why a schema could not be had. Only `NotFound` is the record's fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("the schema registry has no schema with id {id}")]
    NotFound { id: u32 },
    /// Unreachable, timing out, answering 5xx or 429, or refusing our credentials: the
    /// pipeline pauses and retries.
    #[error("schema registry unavailable: {reason}")]
    Unavailable { reason: String },
    /// An answer that is not a schema.
    #[error("schema registry answered something unexpected: {reason}")]
    Protocol { reason: String },
}

pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    headers: HeaderMap,
    cache: Mutex<Cache>,
    metrics: RegistryMetrics,
}

impl std::fmt::Debug for SchemaRegistry {
    // The headers hold the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

struct Cache {
    capacity: usize,
    schemas: HashMap<u32, Arc<Schema>>,
    order: VecDeque<u32>,
    missing: HashMap<u32, Instant>,
}

impl SchemaRegistry {
    /// The client `settings` describe: credentials are read now, from where the settings
    /// name them. No I/O besides that.
    pub fn new(settings: &RegistrySettings) -> Result<SchemaRegistry, (&'static str, String)> {
        settings.validate()?;
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            // Credentials go in every request: never follow a registry elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kafka-transit/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_cert {
            let field = "schema_registry.ca_cert";
            let certs = crate::secrets::ca_bundle(path, field, "the schema registry")
                .map_err(|e| (field, e))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            (
                "schema_registry",
                format!("cannot set up the HTTP client: {e}"),
            )
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.schemaregistry.v1+json, application/json"),
        );
        if let Some(authorization) = authorization(settings)? {
            headers.insert(AUTHORIZATION, authorization);
        }
        Ok(SchemaRegistry {
            http,
            base: settings.url.trim().trim_end_matches('/').to_string(),
            headers,
            cache: Mutex::new(Cache {
                capacity: settings.cache_capacity,
                schemas: HashMap::new(),
                order: VecDeque::new(),
                missing: HashMap::new(),
            }),
            metrics: RegistryMetrics::default(),
        })
    }

    /// Adds the client's request counts and latencies to a registry prefixed
    /// `kafka_transit`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// The instruments of a pipeline without `[schema_registry]`: the same series, at 0.
    pub fn register_idle_metrics(registry: &mut prometheus_client::registry::Registry) {
        RegistryMetrics::default().register(registry);
    }

    /// The schema registered under `id`, its references resolved.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(answer) = self.cached(id) {
            return answer;
        }
        let result = self.fetch(id).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(schema) => cache.insert(id, schema.clone()),
            Err(RegistryError::NotFound { .. }) => {
                if cache.missing.len() >= cache.capacity {
                    cache
                        .missing
                        .retain(|_, since| since.elapsed() < NOT_FOUND_TTL);
                }
                if cache.missing.len() < cache.capacity {
                    cache.missing.insert(id, Instant::now());
                }
            }
            Err(_) => {}
        }
        result
    }

    fn cached(&self, id: u32) -> Option<Result<Arc<Schema>, RegistryError>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(schema) = cache.schemas.get(&id) {
            return Some(Ok(schema.clone()));
        }
        match cache.missing.get(&id) {
            Some(since) if since.elapsed() < NOT_FOUND_TTL => {
                Some(Err(RegistryError::NotFound { id }))
            }
            Some(_) => {
                cache.missing.remove(&id);
                None
            }
            None => None,
        }
    }

    async fn fetch(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        let root: Registered = self
            .get(&format!("/schemas/ids/{id}"))
            .await?
            .ok_or(RegistryError::NotFound { id })?;
        let schema_type = root.schema_type()?;
        let mut references = Vec::new();
        let mut pending: Vec<Reference> = root.references.into_iter().rev().collect();
        while let Some(reference) = pending.pop() {
            if references.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            if references.len() == MAX_REFERENCES {
                return Err(RegistryError::Protocol {
                    reason: format!("schema {id} references more than {MAX_REFERENCES} schemas"),
                });
            }
            let path = format!(
                "/subjects/{}/versions/{}",
                encode_segment(&reference.subject),
                reference.version
            );
            let referenced: Registered =
                self.get(&path)
                    .await?
                    .ok_or_else(|| RegistryError::Protocol {
                        reason: format!(
                            "schema {id} references subject \"{}\" version {}, which the registry \
                         does not have",
                            reference.subject, reference.version
                        ),
                    })?;
            pending.extend(referenced.references.into_iter().rev());
            references.push((reference.name, referenced.schema));
        }
        Ok(Arc::new(Schema {
            schema_type,
            text: root.schema,
            references,
        }))
    }

    /// The subjects the registry lists to these credentials: that it answers, and
    /// speaks Confluent's API (for `validate --connect`).
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.get("/subjects")
            .await?
            .ok_or_else(|| RegistryError::Protocol {
                reason: format!(
                    "{} answered 404 to GET /subjects: it is not a Confluent-compatible API; \
                 check schema_registry.url (Apicurio Registry's is under /apis/ccompat/v7)",
                    self.base
                ),
            })
    }

    /// `Ok(None)` for a 404. Counted and timed.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, RegistryError> {
        let started = Instant::now();
        let result = self.get_once(path).await;
        let outcome = match &result {
            Ok(Some(_)) => metrics::SUCCESS,
            Ok(None) => metrics::NOT_FOUND,
            Err(RegistryError::Unavailable { .. }) => metrics::UNAVAILABLE,
            Err(_) => metrics::ERROR,
        };
        self.metrics.observe(outcome, started.elapsed());
        result
    }

    async fn get_once<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, RegistryError> {
        let unavailable = |reason: String| RegistryError::Unavailable { reason };
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| unavailable(format!("{} ({e})", self.base)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(unavailable(format!(
                "{} refused the credentials ({status}); check schema_registry.username and \
                 its password, or its token",
                self.base
            )));
        }
        if !status.is_success() {
            return Err(unavailable(format!("{} answered {status}", self.base)));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("{} ({e})", self.base)))?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| RegistryError::Protocol {
                reason: format!("GET {path}: {e}"),
            })
    }
}

impl Cache {
    fn insert(&mut self, id: u32, schema: Arc<Schema>) {
        if self.schemas.insert(id, schema).is_none() {
            self.order.push_back(id);
        }
        while self.schemas.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => self.schemas.remove(&oldest),
                None => break,
            };
        }
    }
}

/// `/schemas/ids/{id}` and `/subjects/{s}/versions/{v}` answers (the latter has more
/// fields, ignored).
#[derive(Deserialize)]
struct Registered {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

impl Registered {
    fn schema_type(&self) -> Result<SchemaType, RegistryError> {
        // Confluent's API leaves schemaType out for Avro.
        match self.schema_type.as_deref().unwrap_or("AVRO") {
            "AVRO" => Ok(SchemaType::Avro),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            "JSON" => Ok(SchemaType::Json),
            other => Err(RegistryError::Protocol {
                reason: format!("unknown schemaType \"{other}\""),
            }),
        }
    }
}

#[derive(Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

/// A subject name as one URL path segment.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn authorization(
    settings: &RegistrySettings,
) -> Result<Option<HeaderValue>, (&'static str, String)> {
    use base64::Engine;
    let secret = |env: &Option<String>,
                  file: &Option<std::path::PathBuf>,
                  env_field,
                  file_field| match (env, file) {
        (Some(name), _) => crate::secrets::from_env(name, env_field, &format!("use {file_field}"))
            .map(Some)
            .map_err(|e| (env_field, e)),
        (None, Some(path)) => crate::secrets::from_file(path, file_field)
            .map(Some)
            .map_err(|e| (file_field, e)),
        (None, None) => Ok(None),
    };
    let value: Option<Zeroizing<String>> = if let Some(username) = &settings.username {
        let password = secret(
            &settings.password_env,
            &settings.password_file,
            "schema_registry.password_env",
            "schema_registry.password_file",
        )?
        .unwrap_or_default();
        let pair = Zeroizing::new(format!("{username}:{}", password.as_str()));
        Some(Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        )))
    } else {
        secret(
            &settings.token_env,
            &settings.token_file,
            "schema_registry.token_env",
            "schema_registry.token_file",
        )?
        .map(|token| Zeroizing::new(format!("Bearer {}", token.as_str())))
    };
    match value {
        None => Ok(None),
        Some(value) => {
            let mut header = HeaderValue::from_str(&value).map_err(|_| {
                (
                    "schema_registry",
                    "the registry credentials hold characters not allowed in an HTTP header"
                        .to_string(),
                )
            })?;
            header.set_sensitive(true);
            Ok(Some(header))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode_segment("orders-value"), "orders-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_cache_drops_the_oldest_beyond_its_capacity() {
        let schema = || {
            Arc::new(Schema {
                schema_type: SchemaType::Avro,
                text: "\"string\"".into(),
                references: Vec::new(),
            })
        };
        let mut cache = Cache {
            capacity: 2,
            schemas: HashMap::new(),
            order: VecDeque::new(),
            missing: HashMap::new(),
        };
        cache.insert(1, schema());
        cache.insert(2, schema());
        cache.insert(1, schema());
        cache.insert(3, schema());
        let mut ids: Vec<_> = cache.schemas.keys().copied().collect();
        ids.sort();
        assert_eq!(ids, [2, 3]);
    }

    /// A registry answering each connection with the next of `answers` (status, body).
    async fn answering(answers: Vec<(u16, &'static str)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn requests_are_counted_by_outcome_and_cached_answers_cost_none() {
        let url = answering(vec![
            (200, r#"{"schema": "\"string\""}"#),
            (404, r#"{"error_code": 40403}"#),
            (503, "{}"),
            (200, "not json"),
        ])
        .await;
        let registry = SchemaRegistry::new(&RegistrySettings::for_url(&url)).unwrap();
        assert!(registry.schema_by_id(1).await.is_ok());
        assert_eq!(
            registry.schema_by_id(2).await,
            Err(RegistryError::NotFound { id: 2 })
        );
        // From the cache and the memory of unknown ids: no request.
        assert!(registry.schema_by_id(1).await.is_ok());
        assert!(registry.schema_by_id(2).await.is_err());
        assert!(matches!(
            registry.schema_by_id(3).await,
            Err(RegistryError::Unavailable { .. })
        ));
        assert!(matches!(
            registry.schema_by_id(4).await,
            Err(RegistryError::Protocol { .. })
        ));
        let counts = [
            metrics::SUCCESS,
            metrics::NOT_FOUND,
            metrics::UNAVAILABLE,
            metrics::ERROR,
        ]
        .map(|outcome| registry.metrics.count(outcome));
        assert_eq!(counts, [1, 1, 1, 1]);
        let mut exposition = prometheus_client::registry::Registry::with_prefix("kafka_transit");
        registry.register_metrics(&mut exposition);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &exposition).unwrap();
        assert!(
            text.contains("kafka_transit_schema_registry_requests_total{outcome=\"not_found\"} 1"),
            "{text}"
        );
        assert!(text.contains("kafka_transit_schema_registry_request_duration_seconds_count 4"));
    }

    #[test]
    fn credentials_stay_out_of_debug() {
        std::env::set_var("KT_TEST_SR_SECRET", "sr-secret-value");
        let mut settings = RegistrySettings::for_url("http://registry:8081");
        settings.username = Some("key".into());
        settings.password_env = Some("KT_TEST_SR_SECRET".into());
        let registry = SchemaRegistry::new(&settings).unwrap();
        assert!(!format!("{registry:?}").contains("sr-secret"));
        let header = registry.headers.get(AUTHORIZATION).unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("a2V5"));
    }
}
