//! HTTP plumbing: Vault's JSON envelope and error bodies, request parsing, and
//! routing of `/v1/<path>` to the sys, auth and transit handlers.
//!
//! Handlers are synchronous functions over [`Request`]: everything async (latency,
//! body reading) happens here, so no handler can hold a lock across an await.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::faults::Injected;
use crate::server::Shared;
use crate::{auth, sys, transit};

/// Vault's default `max_request_size`.
pub const MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;

/// A response before it is serialised.
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub retry_after: Option<u64>,
}

impl Reply {
    /// 200 with the standard envelope around `data`.
    pub fn data(data: Value, mount_type: &str) -> Self {
        Self::envelope(data, Value::Null, mount_type)
    }

    /// 200 with `auth` set and `data: null` (logins, renewals).
    pub fn auth(auth: Value, mount_type: &str) -> Self {
        Self::envelope(Value::Null, auth, mount_type)
    }

    fn envelope(data: Value, auth: Value, mount_type: &str) -> Self {
        Self {
            status: 200,
            body: Some(json!({
                "request_id": uuid::Uuid::new_v4().to_string(),
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": data,
                "wrap_info": null,
                "warnings": null,
                "auth": auth,
                "mount_type": mount_type,
            })),
            retry_after: None,
        }
    }

    /// Add warnings (left `null` when there are none, like Vault).
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        if let (false, Some(body)) = (warnings.is_empty(), self.body.as_mut()) {
            body["warnings"] = json!(warnings);
        }
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// 204, empty body.
    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            retry_after: None,
        }
    }

    /// A body that is not an envelope (sys/health, sys/unseal, ...).
    pub fn raw(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut builder = Response::builder()
            .status(status)
            .header(header::CACHE_CONTROL, "no-store");
        if let Some(secs) = self.retry_after {
            builder = builder.header(header::RETRY_AFTER, secs.to_string());
        }
        let body = match self.body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

/// Vault wraps internal errors in a go-multierror text.
pub fn multierror(msg: &str) -> String {
    format!("1 error occurred:\n\t* {msg}\n\n")
}

/// Error responses, each with Vault's status and `errors` text.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with the message as is.
    #[error("{0}")]
    BadRequest(String),
    /// 500, multierror-wrapped.
    #[error("{0}")]
    Internal(String),
    /// 403: no token, unknown or expired token.
    #[error("permission denied")]
    PermissionDenied,
    /// 403: valid token whose policy does not cover the path.
    #[error("permission denied (policy)")]
    PolicyDenied,
    /// 404: nothing mounted at the path.
    #[error("no handler for route")]
    NoHandler(String),
    /// 404 with `errors: []` (e.g. reading a missing key).
    #[error("not found")]
    NotFound,
    /// 404: a mount exists but has no such path.
    #[error("unsupported path")]
    UnsupportedPath,
    /// 405: path exists, method does not.
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// 503.
    #[error("Vault is sealed")]
    Sealed,
    /// 413.
    #[error("request too large")]
    TooLarge,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn into_reply(self) -> Reply {
        let (status, errors): (u16, Vec<String>) = match self {
            Self::BadRequest(m) => (400, vec![m]),
            Self::Internal(m) => (500, vec![multierror(&m)]),
            Self::PermissionDenied => (403, vec!["permission denied".into()]),
            Self::PolicyDenied => (403, vec![multierror("permission denied")]),
            Self::NoHandler(path) => (
                404,
                vec![format!(
                    "no handler for route \"{path}\". route entry not found."
                )],
            ),
            Self::NotFound => (404, vec![]),
            Self::UnsupportedPath => (404, vec![multierror("unsupported path")]),
            Self::UnsupportedOperation => (405, vec![multierror("unsupported operation")]),
            Self::Sealed => (503, vec!["Vault is sealed".into()]),
            Self::TooLarge => (413, vec!["error parsing JSON".into()]),
        };
        Reply::raw(status, json!({ "errors": errors }))
    }
}

/// Vault's logical operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    List,
    Delete,
}

/// A parsed request as handlers see it.
pub struct Request {
    pub op: Op,
    /// The path after `/v1/`.
    pub path: String,
    pub body: Map<String, Value>,
    pub caller: Caller,
}

// ---- field access with Vault's lenient type conversion ----

fn conversion_error(name: &str, v: &Value) -> ApiError {
    ApiError::bad(format!("error converting input {v} for field \"{name}\""))
}

/// A string field; numbers and booleans are accepted as their text.
pub fn get_str(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(v) => Err(conversion_error(name, v)),
    }
}

/// A boolean field; `"true"`/`"false"`/`1`/`0` are accepted too.
pub fn get_bool(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.as_str() {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(Some(true)),
            "false" | "0" | "f" | "F" | "FALSE" | "False" | "" => Ok(Some(false)),
            _ => Err(conversion_error(name, &Value::String(s.clone()))),
        },
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
        Some(v) => Err(conversion_error(name, v)),
    }
}

/// An integer field; numeric strings are accepted too.
pub fn get_int(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    value_as_int(name, body.get(name))
}

pub fn value_as_int(name: &str, v: Option<&Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| conversion_error(name, v.unwrap_or(&Value::Null))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| conversion_error(name, &Value::String(s.clone()))),
        Some(v) => Err(conversion_error(name, v)),
    }
}

/// A duration field in seconds: a number, or a string such as `"1h"` or `"3600"`.
pub fn get_duration_secs(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| conversion_error(name, &Value::Number(n.clone()))),
        Some(Value::String(s)) => crate::duration::parse(s)
            .map(|d| Some(d.as_secs()))
            .ok_or_else(|| conversion_error(name, &Value::String(s.clone()))),
        Some(v) => Err(conversion_error(name, v)),
    }
}

// ---- dispatch ----

enum BodyError {
    TooLarge,
    Broken,
}

/// Read the body; past the limit keep draining (bounded) so the client sees the
/// 413 instead of a reset connection.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > MAX_REQUEST_SIZE {
                buf = Vec::new();
                if total > 4 * MAX_REQUEST_SIZE {
                    break;
                }
            } else {
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_REQUEST_SIZE {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf)
    }
}

fn token_of(headers: &hyper::HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        if !t.is_empty() {
            return Some(t.to_string());
        }
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

/// Serve one HTTP request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Response<Full<Bytes>> {
    dispatch(&shared, req).await.into_response()
}

async fn dispatch(shared: &Shared, req: hyper::Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let Some(path) = parts.uri.path().strip_prefix("/v1/") else {
        return ApiError::NotFound.into_reply();
    };
    let path = path.to_string();
    let list_query = parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "list=true" || kv == "list=1"));
    let op = match parts.method {
        Method::GET | Method::HEAD if list_query => Op::List,
        Method::GET | Method::HEAD => Op::Read,
        Method::POST | Method::PUT | Method::PATCH => Op::Write,
        Method::DELETE => Op::Delete,
        ref m if m.as_str() == "LIST" => Op::List,
        _ => return ApiError::UnsupportedOperation.into_reply(),
    };

    // The dev control paths are neither counted nor subject to faults, so tests
    // can always reach them.
    if !path.starts_with("sys/dev/") {
        shared.counters.record_request(&shared.classify(&path));
        let latency = shared.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match shared.faults.take() {
            Some(Injected::Fail(status)) => {
                return Reply::raw(
                    status,
                    json!({ "errors": [multierror("injected failure")] }),
                );
            }
            Some(Injected::RateLimited(retry_after)) => {
                let mut r = Reply::raw(
                    429,
                    json!({ "errors": [format!("request path \"{path}\": rate limit quota exceeded")] }),
                );
                r.retry_after = retry_after.map(|d| d.as_secs_f64().ceil() as u64);
                return r;
            }
            None => {}
        }
    }

    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return ApiError::TooLarge.into_reply(),
        Err(BodyError::Broken) => return ApiError::bad("error reading request body").into_reply(),
    };

    if path == "sys/health" {
        return sys::health(shared);
    }
    if shared.faults.is_sealed() && !matches!(path.as_str(), "sys/unseal" | "sys/seal-status") {
        return ApiError::Sealed.into_reply();
    }

    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            // Reads ignore a body they cannot use, like Vault.
            _ if matches!(op, Op::Read | Op::List) => Map::new(),
            _ => return ApiError::bad("error parsing JSON").into_reply(),
        }
    };

    let caller = shared.authenticate(token_of(&parts.headers).as_deref());
    let request = Request {
        op,
        path,
        body,
        caller,
    };
    route(shared, &request).unwrap_or_else(ApiError::into_reply)
}

fn route(shared: &Shared, req: &Request) -> Result<Reply, ApiError> {
    let path = req.path.as_str();
    // Paths that need no token.
    match path {
        "sys/unseal" => return sys::unseal(shared, req),
        "sys/seal-status" => return Ok(sys::seal_status(shared)),
        "auth/approle/login" => return auth::login(shared, req),
        _ => {}
    }
    if req.caller == Caller::Anonymous {
        return Err(ApiError::PermissionDenied);
    }
    if let Some(rest) = path.strip_prefix("sys/") {
        return sys::route(shared, rest, req);
    }
    if let Some(rest) = path.strip_prefix("auth/token/") {
        return auth::token_route(shared, rest, req);
    }
    let found = shared.read_state().find_mount(path);
    match found {
        Some((mount, rest)) => transit::handle(shared, &mount, rest, req),
        None => Err(ApiError::NoHandler(path.to_string())),
    }
}
