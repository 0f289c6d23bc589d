//! Tokens: the root token (never expires) and tokens issued by AppRole and JWT logins
//! (real TTLs; expired ones are rejected). No policy language: a login's token may use
//! transit data operations and read/list keys, nothing else, whatever policies it
//! names.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

use crate::fields::{self, Fields, Kind, Schema};
use crate::http::{ApiError, Op, Reply, Request};
use crate::server::Shared;

/// Vault's default (system) TTLs, used when a role leaves them at zero.
const DEFAULT_TTL: Duration = Duration::from_secs(32 * 24 * 3600);

/// Policies reported for AppRole tokens (informational only).
const APPROLE_POLICIES: [&str; 2] = ["default", "vault-dev-transit"];

/// An AppRole that may log in.
#[derive(Debug, Clone)]
pub struct AppRole {
    pub role_id: String,
    pub secret_id: String,
    /// TTL of issued tokens (zero means Vault's default, 768h).
    pub token_ttl: Duration,
    /// Hard limit on a token's life, renewals included (zero means 768h).
    pub token_max_ttl: Duration,
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Root,
    /// A token issued by a login.
    Token(String),
}

/// What a login hands to [`TokenStore::issue`].
pub(crate) struct Grant {
    /// Identifies the entity: Vault gives each alias (AppRole role, JWT user claim
    /// value) an identity entity of its own, reused by later logins.
    pub alias: String,
    pub policies: Vec<String>,
    pub metadata: Value,
    pub ttl: Duration,
    pub max_ttl: Duration,
    /// The login path (`auth/approle/login`) and the token's display name.
    pub path: String,
    pub display_name: String,
}

struct TokenEntry {
    accessor: String,
    policies: Vec<String>,
    metadata: Value,
    path: String,
    display_name: String,
    entity_id: String,
    issued: SystemTime,
    creation_ttl: Duration,
    max_ttl: Duration,
    expires: Instant,
}

pub(crate) struct TokenStore {
    root: String,
    root_accessor: String,
    approles: Vec<AppRole>,
    tokens: HashMap<String, TokenEntry>,
    entity_ids: HashMap<String, String>,
}

fn random_string(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// RFC 3339 UTC text for a time (no chrono in the dependency set).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn or_default(d: Duration) -> Duration {
    if d.is_zero() {
        DEFAULT_TTL
    } else {
        d
    }
}

impl TokenStore {
    pub fn new(root: String, approles: Vec<AppRole>) -> Self {
        Self {
            root,
            root_accessor: random_string(24),
            approles,
            tokens: HashMap::new(),
            entity_ids: HashMap::new(),
        }
    }

    /// Identify a token; unknown and expired tokens are anonymous.
    pub fn authenticate(&mut self, token: Option<&str>) -> Caller {
        let Some(token) = token else {
            return Caller::Anonymous;
        };
        if token == self.root {
            return Caller::Root;
        }
        let now = Instant::now();
        self.tokens.retain(|_, e| e.expires > now);
        if self.tokens.contains_key(token) {
            Caller::Token(token.to_string())
        } else {
            Caller::Anonymous
        }
    }

    /// Log in with Vault's checks and texts.
    fn login(&mut self, role_id: &str, secret_id: &str) -> Result<(String, Duration), ApiError> {
        let invalid = || ApiError::bad("invalid role or secret ID");
        let role = self
            .approles
            .iter()
            .find(|r| r.role_id == role_id)
            .ok_or_else(invalid)?;
        if secret_id.is_empty() {
            return Err(ApiError::bad("missing secret_id"));
        }
        if role.secret_id != secret_id {
            return Err(invalid());
        }
        Ok(self.issue(Grant {
            alias: format!("approle/{role_id}"),
            policies: APPROLE_POLICIES.map(String::from).to_vec(),
            metadata: json!({ "role_name": role_id }),
            ttl: role.token_ttl,
            max_ttl: role.token_max_ttl,
            path: "auth/approle/login".into(),
            display_name: "approle".into(),
        }))
    }

    /// Issue a token for a successful login; zero TTLs mean Vault's default.
    pub(crate) fn issue(&mut self, grant: Grant) -> (String, Duration) {
        let max_ttl = or_default(grant.max_ttl);
        let ttl = or_default(grant.ttl).min(max_ttl);
        let token = format!("hvs.{}", random_string(24));
        let entity_id = self
            .entity_ids
            .entry(grant.alias)
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        self.tokens.insert(
            token.clone(),
            TokenEntry {
                accessor: random_string(24),
                policies: grant.policies,
                metadata: grant.metadata,
                path: grant.path,
                display_name: grant.display_name,
                entity_id,
                issued: SystemTime::now(),
                creation_ttl: ttl,
                max_ttl,
                expires: Instant::now() + ttl,
            },
        );
        (token, ttl)
    }

    pub(crate) fn auth_block(&self, token: &str, lease: Duration) -> Value {
        let entry = &self.tokens[token];
        json!({
            "client_token": token,
            "accessor": entry.accessor,
            "policies": entry.policies,
            "token_policies": entry.policies,
            "metadata": entry.metadata,
            "lease_duration": lease.as_secs(),
            "renewable": true,
            "entity_id": entry.entity_id,
            "token_type": "service",
            "orphan": true,
            "mfa_requirement": null,
            "num_uses": 0,
        })
    }
}

const LOGIN_FIELDS: Schema = &[("role_id", Kind::Str), ("secret_id", Kind::Str)];
const RENEW_FIELDS: Schema = &[("token", Kind::Str), ("increment", Kind::Duration)];

/// Check a body against a schema (Vault's field validation).
fn validate(req: &Request, schema: Schema) -> Result<Fields<'_>, ApiError> {
    fields::validate(&req.body, schema)
        .map_err(|e| ApiError::BadRequest(format!("Field validation failed: {e}")))?;
    Ok(Fields(&req.body))
}

/// `auth/approle/login` (a read logs in too, like Vault).
pub(crate) fn login(shared: &Shared, req: &Request) -> Result<Reply, ApiError> {
    if !matches!(req.op, Op::Write | Op::Read) {
        return Err(ApiError::UnsupportedOperation);
    }
    let f = validate(req, LOGIN_FIELDS)?;
    let role_id = f.str("role_id").unwrap_or_default();
    if role_id.trim().is_empty() {
        // Vault's alias lookahead fails first, with a plain 500.
        return Err(ApiError::InternalPlain("missing role_id".into()));
    }
    let secret_id = f.str("secret_id").unwrap_or_default();
    let mut tokens = shared.tokens();
    let (token, ttl) = tokens.login(role_id.trim(), secret_id.trim())?;
    Ok(Reply::auth(tokens.auth_block(&token, ttl), "approle"))
}

/// `auth/token/lookup-self` and `auth/token/renew-self`.
pub(crate) fn token_route(shared: &Shared, rest: &str, req: &Request) -> Result<Reply, ApiError> {
    match (rest, req.op) {
        ("lookup-self", Op::Read | Op::Write) => Ok(lookup_self(shared, &req.caller)),
        ("renew-self", Op::Write) => renew_self(shared, req),
        ("lookup-self" | "renew-self", _) => Err(ApiError::UnsupportedOperation),
        _ if req.caller == Caller::Root => Err(ApiError::UnsupportedPath),
        _ => Err(ApiError::PolicyDenied),
    }
}

fn lookup_self(shared: &Shared, caller: &Caller) -> Reply {
    let tokens = shared.tokens();
    let data = match caller {
        Caller::Token(token) if tokens.tokens.contains_key(token) => {
            let e = &tokens.tokens[token];
            let now = Instant::now();
            let ttl = e.expires.saturating_duration_since(now);
            let expire_time = SystemTime::now() + ttl;
            let issued = e
                .issued
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            json!({
                "accessor": e.accessor,
                "creation_time": issued,
                "creation_ttl": e.creation_ttl.as_secs(),
                "display_name": e.display_name,
                "entity_id": e.entity_id,
                "expire_time": rfc3339(expire_time),
                "explicit_max_ttl": 0,
                "id": token,
                "issue_time": rfc3339(e.issued),
                "meta": e.metadata,
                "num_uses": 0,
                "orphan": true,
                "path": e.path,
                "policies": e.policies,
                "renewable": true,
                "ttl": (ttl.as_millis() + 500) / 1000, // Vault rounds to the second
                "type": "service",
            })
        }
        _ => json!({
            "accessor": tokens.root_accessor,
            "creation_time": shared.started_unix,
            "creation_ttl": 0,
            // A dev server's root token given by ID is made with auth/token/create.
            "display_name": "token",
            "entity_id": "",
            "expire_time": null,
            "explicit_max_ttl": 0,
            "id": tokens.root,
            "issue_time": rfc3339(UNIX_EPOCH + Duration::from_secs(shared.started_unix)),
            "meta": null,
            "num_uses": 0,
            "orphan": true,
            "path": "auth/token/create",
            "policies": ["root"],
            "renewable": false,
            "ttl": 0,
            "type": "service",
        }),
    };
    Reply::data(data, "token")
}

fn renew_self(shared: &Shared, req: &Request) -> Result<Reply, ApiError> {
    let increment = validate(req, RENEW_FIELDS)?.duration_secs("increment");
    let Caller::Token(token) = &req.caller else {
        // The root token has no TTL to extend.
        return Err(ApiError::bad("lease is not renewable"));
    };
    let mut tokens = shared.tokens();
    let entry = tokens
        .tokens
        .get_mut(token)
        .ok_or(ApiError::PermissionDenied)?;
    let wanted = increment
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(entry.creation_ttl);
    // Vault counts in whole seconds: what is left of the max TTL since issue.
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let max_left = Duration::from_secs(
        (unix(entry.issued) + entry.max_ttl.as_secs()).saturating_sub(unix(SystemTime::now())),
    );
    let mut warnings = Vec::new();
    let granted = if wanted > max_left {
        warnings.push(format!(
            "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
            human_duration(wanted),
            human_duration(max_left)
        ));
        max_left
    } else {
        wanted
    };
    entry.expires = Instant::now() + granted;
    let auth = tokens.auth_block(token, granted);
    Ok(Reply::auth(auth, "token").with_warnings(warnings))
}

/// Go's `Duration.String()` without zero units, as Vault prints TTLs: `1h`, `2m`,
/// `1m30s`, `1h30s`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_vault() {
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_secs(3630)), "1h30s");
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}
