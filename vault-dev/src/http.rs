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
use crate::{auth, jwt, sys, transit};

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
    pub fn with_warnings(self, warnings: Vec<String>) -> Self {
        warnings.into_iter().fold(self, Self::add_warning)
    }

    /// Add one warning to the envelope's list.
    pub fn add_warning(mut self, warning: String) -> Self {
        if let Some(body) = self.body.as_mut() {
            match body["warnings"].as_array_mut() {
                Some(list) => list.push(json!(warning)),
                None => body["warnings"] = json!([warning]),
            }
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
    /// 500 with the message as is (errors of login requests).
    #[error("{0}")]
    InternalPlain(String),
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
    /// 405 with `errors: []`, from Vault's hand-written `sys/*` handlers.
    #[error("method not allowed")]
    MethodNotAllowed,
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
            Self::InternalPlain(m) => (500, vec![m]),
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
            Self::MethodNotAllowed => (405, vec![]),
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

/// `%XX` and `+` decoding of one query-string component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as request fields (Vault's `parseQuery`): one value is a
/// string, several a list; `help` is reserved.
fn parse_query(query: &str) -> Map<String, Value> {
    let mut fields: Map<String, Value> = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), Value::String(percent_decode(v)));
        if k == "help" {
            continue;
        }
        match fields.get_mut(&k) {
            Some(Value::Array(list)) => list.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                fields.insert(k, v);
            }
        }
    }
    fields
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
    // Reads, lists and deletes take their fields from the query string, like Vault.
    let mut query = parse_query(parts.uri.query().unwrap_or(""));
    let list_query = parts.method == Method::GET
        && query
            .get("list")
            .is_some_and(|v| crate::fields::to_bool(v).unwrap_or(false));
    if list_query {
        query.remove("list");
    }
    let op = match parts.method {
        Method::GET if list_query => Op::List,
        Method::GET => Op::Read,
        Method::HEAD if path == "sys/health" => Op::Read,
        Method::POST | Method::PUT => Op::Write,
        Method::DELETE => Op::Delete,
        ref m if m.as_str() == "LIST" => Op::List,
        // Nothing here supports PATCH; Vault checks the content type first.
        Method::PATCH => {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let media = ct.split(';').next().unwrap_or("").trim();
            return match media {
                "" => ApiError::bad("mime: no media type").into_reply(),
                "application/merge-patch+json" => ApiError::UnsupportedOperation.into_reply(),
                _ => Reply::raw(
                    415,
                    json!({ "errors": [format!("PATCH requires Content-Type of application/merge-patch+json, provided {media}")] }),
                ),
            };
        }
        _ => return ApiError::MethodNotAllowed.into_reply(),
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
        if shared.faults.denies(&path) {
            return Reply::raw(403, json!({ "errors": [multierror("permission denied")] }));
        }
    }

    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return ApiError::TooLarge.into_reply(),
        Err(BodyError::Broken) => return ApiError::bad("error reading request body").into_reply(),
    };

    if path == "sys/health" {
        return match op {
            Op::Read => sys::health(shared),
            _ => ApiError::MethodNotAllowed.into_reply(),
        };
    }
    if shared.faults.is_sealed() && !matches!(path.as_str(), "sys/unseal" | "sys/seal-status") {
        return ApiError::Sealed.into_reply();
    }

    let body = if op != Op::Write {
        query
    } else if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            // Vault's text (OpenBao reports the decoder's error instead).
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
        "sys/seal-status" if req.op == Op::Read => return Ok(sys::seal_status(shared)),
        "sys/seal-status" => return Err(ApiError::MethodNotAllowed),
        "auth/approle/login" => return auth::login(shared, req),
        _ if jwt::is_login(shared, path) => {
            return jwt::route(shared, req).unwrap_or(Err(ApiError::PermissionDenied))
        }
        _ => {}
    }
    if req.caller == Caller::Anonymous {
        return Err(ApiError::PermissionDenied);
    }
    if path == "sys/capabilities-self" {
        return sys::capabilities_self(shared, req);
    }
    if let Some(rest) = path.strip_prefix("sys/") {
        return sys::route(shared, rest, req);
    }
    if let Some(rest) = path.strip_prefix("auth/token/") {
        return auth::token_route(shared, rest, req);
    }
    if let Some(reply) = jwt::route(shared, req) {
        return reply;
    }
    let found = shared.read_state().find_mount(path);
    match found {
        Some((mount, rest)) => transit::handle(shared, &mount, rest, req),
        // Vault checks the token's policy before routing.
        None if req.caller != Caller::Root => Err(ApiError::PolicyDenied),
        None => Err(ApiError::NoHandler(path.to_string())),
    }
}
