//! The `jwt` auth method (workload identity, Kubernetes projected service account
//! tokens, CI job tokens): mounts enabled with `sys/auth/<path>`, a `config` holding
//! PEM public keys (`jwt_validation_pubkeys`, optionally `bound_issuer`), roles, and
//! `login`, whose checks, order and error texts follow OpenBao's.
//!
//! Not implemented: JWKS and OIDC discovery URLs, the OIDC flow, leeway settings (the
//! default leeway of 60 s applies to `exp`, `nbf` and `iat`), claim mappings, groups.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use serde_json::{json, Map, Value};

use crate::auth::{Caller, Grant};
use crate::fields::{self, Fields, Kind, Schema};
use crate::http::{ApiError, Op, Reply, Request};
use crate::server::Shared;

/// go-jose's default leeway for `exp`, `nbf` and `iat`, which OpenBao uses when a
/// role leaves its leeways at zero.
const LEEWAY_SECS: f64 = 60.0;

/// The enabled `jwt` auth mounts, by path (no slashes at either end).
#[derive(Default)]
pub(crate) struct JwtAuth {
    mounts: BTreeMap<String, JwtMount>,
}

struct JwtMount {
    accessor: String,
    uuid: String,
    config: Option<Config>,
    roles: BTreeMap<String, Role>,
}

struct Config {
    pems: Vec<String>,
    keys: Vec<PublicKey>,
    bound_issuer: String,
}

#[derive(Clone, Default)]
struct Role {
    role_type: String,
    bound_audiences: Vec<String>,
    bound_claims: Map<String, Value>,
    bound_subject: String,
    user_claim: String,
    token_ttl: u64,
    token_max_ttl: u64,
    token_policies: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

struct PublicKey {
    kind: KeyKind,
    /// What ring verifies with: PKCS#1 `RSAPublicKey`, an uncompressed EC point, or
    /// the raw Ed25519 key.
    bytes: Vec<u8>,
}

// ---- keys ----

/// One DER element: tag, contents, and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A `SubjectPublicKeyInfo` of a key type JWTs are signed with.
fn parse_spki(der: &[u8]) -> Option<PublicKey> {
    let (0x30, spki, _) = der_next(der)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_next(spki)? else {
        return None;
    };
    let (0x03, bits, _) = der_next(rest)? else {
        return None;
    };
    let (0x06, oid, params) = der_next(algorithm)? else {
        return None;
    };
    let kind = match oid {
        OID_RSA => KeyKind::Rsa,
        OID_ED25519 => KeyKind::Ed25519,
        OID_EC => match der_next(params)? {
            (0x06, OID_P256, _) => KeyKind::P256,
            (0x06, OID_P384, _) => KeyKind::P384,
            _ => return None,
        },
        _ => return None,
    };
    // A BIT STRING's first byte counts unused bits: keys use whole bytes.
    let bytes = bits.strip_prefix(&[0])?.to_vec();
    Some(PublicKey { kind, bytes })
}

/// A `jwt_validation_pubkeys` entry: one PEM public key.
fn parse_pem(pem: &str) -> Option<PublicKey> {
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).ok()?;
    parse_spki(der.as_ref())
}

fn verifies(alg: &str, key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    let algorithm: &dyn signature::VerificationAlgorithm = match (alg, key.kind) {
        ("RS256", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("RS384", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
        ("RS512", KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA512,
        ("PS256", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA256,
        ("PS384", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA384,
        ("PS512", KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA512,
        ("ES256", KeyKind::P256) => &signature::ECDSA_P256_SHA256_FIXED,
        ("ES384", KeyKind::P384) => &signature::ECDSA_P384_SHA384_FIXED,
        ("EdDSA", KeyKind::Ed25519) => &signature::ED25519,
        _ => return false,
    };
    signature::UnparsedPublicKey::new(algorithm, &key.bytes)
        .verify(message, sig)
        .is_ok()
}

// ---- sys/auth ----

impl JwtAuth {
    /// `sys/auth/<path>` with `type`: only `jwt` can be enabled here.
    pub(crate) fn enable(&mut self, path: &str, kind: &str) -> Result<(), ApiError> {
        crate::sys::check_path_free(self.mounts.keys(), path)?;
        if matches!(path.split('/').next(), Some("token" | "approle")) {
            return Err(ApiError::bad(format!("path is already in use at {path}/")));
        }
        if kind != "jwt" {
            return Err(ApiError::bad(format!(
                "vault-dev only implements the jwt auth method (and a fixed approle/); cannot enable type \"{kind}\" at {path}/"
            )));
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        self.mounts.insert(
            path.to_string(),
            JwtMount {
                accessor: format!("auth_jwt_{}", &uuid[..8]),
                uuid,
                config: None,
                roles: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub(crate) fn disable(&mut self, path: &str) {
        self.mounts.remove(path);
    }

    /// The `sys/auth` table's entries for the jwt mounts.
    pub(crate) fn table(&self) -> Map<String, Value> {
        self.mounts
            .iter()
            .map(|(path, m)| {
                (
                    format!("{path}/"),
                    json!({
                        "type": "jwt",
                        "accessor": m.accessor,
                        "uuid": m.uuid,
                        "description": "",
                        "local": false,
                        "seal_wrap": false,
                        "config": { "default_lease_ttl": 0, "max_lease_ttl": 0, "token_type": "default-service" },
                    }),
                )
            })
            .collect()
    }

    /// The jwt mount `path` (after `auth/`) is in, and the rest of the path.
    fn find<'p>(&self, path: &'p str) -> Option<(String, &'p str)> {
        self.mounts
            .keys()
            .filter_map(|m| {
                let rest = path.strip_prefix(m.as_str())?.strip_prefix('/')?;
                Some((m.clone(), rest))
            })
            .max_by_key(|(m, _)| m.len())
    }
}

/// Whether `path` (after `/v1/`) is a login at a jwt mount, which needs no token.
pub(crate) fn is_login(shared: &Shared, path: &str) -> bool {
    path.strip_prefix("auth/")
        .and_then(|p| shared.jwt().find(p).map(|(_, rest)| rest == "login"))
        .unwrap_or(false)
}

/// `auth/<jwt mount>/...`; `None` when the path is in no jwt mount.
pub(crate) fn route(shared: &Shared, req: &Request) -> Option<Result<Reply, ApiError>> {
    let (mount, rest) = {
        let auth = shared.jwt();
        let (mount, rest) = auth.find(req.path.strip_prefix("auth/")?)?;
        (mount, rest.to_string())
    };
    if rest == "login" {
        return Some(login(shared, &mount, req));
    }
    if req.caller != Caller::Root {
        return Some(Err(ApiError::PolicyDenied));
    }
    Some(match (rest.as_str(), req.op) {
        ("config", Op::Write) => write_config(shared, &mount, req),
        ("config", Op::Read) => Ok(read_config(shared, &mount)),
        ("config", _) => Err(ApiError::UnsupportedOperation),
        ("role" | "role/", Op::List) => Ok(list_roles(shared, &mount)),
        _ => match rest.strip_prefix("role/").filter(|n| !n.contains('/')) {
            Some(name) if !name.is_empty() => role_op(shared, &mount, name, req),
            _ => Err(ApiError::UnsupportedPath),
        },
    })
}

// ---- config ----

/// The auth method's field validation: its errors carry no prefix, unlike transit's.
fn validate<'r>(req: &'r Request, schema: Schema) -> Result<Fields<'r>, ApiError> {
    fields::validate(&req.body, schema).map_err(ApiError::BadRequest)?;
    Ok(Fields(&req.body))
}

const CONFIG_FIELDS: Schema = &[
    ("jwt_validation_pubkeys", Kind::Slice),
    ("bound_issuer", Kind::Str),
    ("default_role", Kind::Str),
];

fn with_mount<T>(
    shared: &Shared,
    mount: &str,
    f: impl FnOnce(&mut JwtMount) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut auth = shared.jwt();
    // The mount was found a moment ago; it may have been disabled since.
    let m = auth
        .mounts
        .get_mut(mount)
        .ok_or_else(|| ApiError::NoHandler(format!("auth/{mount}")))?;
    f(m)
}

fn write_config(shared: &Shared, mount: &str, req: &Request) -> Result<Reply, ApiError> {
    let f = validate(req, CONFIG_FIELDS)?;
    let pems = f.comma_list("jwt_validation_pubkeys").unwrap_or_default();
    if pems.is_empty() {
        return Err(ApiError::bad(
            "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set",
        ));
    }
    let keys = pems
        .iter()
        .map(|p| parse_pem(p))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ApiError::bad("error parsing public key: data does not contain any valid public keys")
        })?;
    let config = Config {
        pems,
        keys,
        bound_issuer: f.str("bound_issuer").unwrap_or_default(),
    };
    with_mount(shared, mount, |m| {
        m.config = Some(config);
        Ok(Reply::no_content())
    })
}

fn read_config(shared: &Shared, mount: &str) -> Reply {
    let auth = shared.jwt();
    match auth.mounts.get(mount).and_then(|m| m.config.as_ref()) {
        None => Reply::no_content(),
        Some(c) => Reply::data(
            json!({
                "bound_issuer": c.bound_issuer,
                "default_role": "",
                "jwks_ca_pem": "",
                "jwks_url": "",
                "jwt_supported_algs": [],
                "jwt_validation_pubkeys": c.pems,
                "oidc_client_id": "",
                "oidc_discovery_url": "",
                "provider_config": {},
                "status": "valid",
            }),
            "jwt",
        ),
    }
}

// ---- roles ----

const ROLE_FIELDS: Schema = &[
    ("role_type", Kind::Str),
    ("bound_audiences", Kind::Slice),
    ("bound_claims", Kind::Map),
    ("bound_subject", Kind::Str),
    ("user_claim", Kind::Str),
    ("token_ttl", Kind::Duration),
    ("token_max_ttl", Kind::Duration),
    ("token_policies", Kind::Slice),
    ("policies", Kind::Slice),
];

fn role_op(shared: &Shared, mount: &str, name: &str, req: &Request) -> Result<Reply, ApiError> {
    match req.op {
        Op::Write => write_role(shared, mount, name, req),
        Op::Read => with_mount(shared, mount, |m| {
            Ok(m.roles.get(name).map_or_else(Reply::no_content, role_json))
        }),
        Op::Delete => with_mount(shared, mount, |m| {
            m.roles.remove(name);
            Ok(Reply::no_content())
        }),
        Op::List => Err(ApiError::UnsupportedOperation),
    }
}

fn role_json(r: &Role) -> Reply {
    Reply::data(
        json!({
            "role_type": r.role_type,
            "bound_audiences": r.bound_audiences,
            "bound_claims": if r.bound_claims.is_empty() { Value::Null } else { Value::Object(r.bound_claims.clone()) },
            "bound_claims_type": "string",
            "bound_subject": r.bound_subject,
            "user_claim": r.user_claim,
            "clock_skew_leeway": 0,
            "expiration_leeway": 0,
            "not_before_leeway": 0,
            "token_ttl": r.token_ttl,
            "token_max_ttl": r.token_max_ttl,
            "token_policies": r.token_policies,
            "token_type": "default",
        }),
        "jwt",
    )
}

fn list_roles(shared: &Shared, mount: &str) -> Reply {
    let auth = shared.jwt();
    let keys: Vec<&String> = auth
        .mounts
        .get(mount)
        .map(|m| m.roles.keys().collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return ApiError::NotFound.into_reply();
    }
    Reply::data(json!({ "keys": keys }), "jwt")
}

fn write_role(shared: &Shared, mount: &str, name: &str, req: &Request) -> Result<Reply, ApiError> {
    let f = validate(req, ROLE_FIELDS)?;
    let existing = shared
        .jwt()
        .mounts
        .get(mount)
        .and_then(|m| m.roles.get(name).cloned());
    // An update keeps what it does not name, like Vault's.
    let mut role = existing.unwrap_or_default();
    if let Some(t) = f.str("role_type") {
        role.role_type = t;
    }
    if let Some(list) = f.comma_list("bound_audiences") {
        role.bound_audiences = list;
    }
    if let Some(Value::Object(claims)) = f.raw("bound_claims") {
        role.bound_claims = claims.clone();
    }
    if let Some(s) = f.str("bound_subject") {
        role.bound_subject = s;
    }
    if let Some(c) = f.str("user_claim") {
        role.user_claim = c;
    }
    if let Some(t) = f.duration_secs("token_ttl") {
        role.token_ttl = t;
    }
    if let Some(t) = f.duration_secs("token_max_ttl") {
        role.token_max_ttl = t;
    }
    if let Some(p) = f
        .comma_list("token_policies")
        .or_else(|| f.comma_list("policies"))
    {
        role.token_policies = p;
    }
    match role.role_type.as_str() {
        "jwt" => {}
        "" | "oidc" => {}
        other => return Err(ApiError::bad(format!("invalid 'role_type': {other}"))),
    }
    if role.bound_audiences.is_empty()
        && role.bound_claims.is_empty()
        && role.bound_subject.is_empty()
    {
        return Err(ApiError::bad(
            "must have at least one bound constraint when creating/updating a role",
        ));
    }
    if role.user_claim.is_empty() {
        return Err(ApiError::bad("a user claim must be defined on the role"));
    }
    if role.role_type != "jwt" {
        return Err(ApiError::bad(
            "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.",
        ));
    }
    if role.token_max_ttl > 0 && role.token_ttl > role.token_max_ttl {
        return Err(ApiError::bad("ttl should not be greater than max ttl"));
    }
    with_mount(shared, mount, |m| {
        m.roles.insert(name.to_string(), role);
        Ok(Reply::no_content())
    })
}

// ---- login ----

const LOGIN_FIELDS: Schema = &[("role", Kind::Str), ("jwt", Kind::Str)];

fn token_error(detail: &str) -> ApiError {
    ApiError::bad(format!("error validating token: {detail}"))
}

/// `exp`, `nbf`, `iat`: a JSON number, or absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(token_error(
            "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate",
        )),
    }
}

/// The header's `alg` and the claims, once the signature checks out with one of the
/// configured keys.
fn verified_claims(config: &Config, jwt: &str) -> Result<Map<String, Value>, ApiError> {
    let sig_error =
        |detail: &str| token_error(&format!("error verifying token signature: {detail}"));
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, sig] = parts[..] else {
        return Err(sig_error(
            "go-jose/go-jose: compact JWS format must have three parts",
        ));
    };
    let no_key = || sig_error("no known key successfully validated the token signature");
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Value = decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(no_key)?;
    let alg = header["alg"].as_str().unwrap_or_default();
    let sig = decode(sig).map_err(|_| no_key())?;
    let signed = &jwt[..jwt.len() - parts[2].len() - 1];
    if !config
        .keys
        .iter()
        .any(|k| verifies(alg, k, signed.as_bytes(), &sig))
    {
        return Err(no_key());
    }
    match decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
    {
        Some(Value::Object(claims)) => Ok(claims),
        _ => Err(token_error(
            "go-jose/go-jose/jwt: error unmarshalling claims",
        )),
    }
}

/// A claim by name, or by JSON pointer when the name starts with `/`.
fn claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut parts = pointer
            .split('/')
            .map(|p| p.replace("~1", "/").replace("~0", "~"));
        let mut v = claims.get(&parts.next()?)?;
        for part in parts {
            v = match v {
                Value::Object(m) => m.get(&part)?,
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    } else {
        claims.get(name)
    }
}

fn as_texts(v: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        Value::Array(list) => list.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    }
}

/// The registered claims, in go-jose's and OpenBao's order.
fn check_registered(
    config: &Config,
    role: &Role,
    claims: &Map<String, Value>,
) -> Result<(), ApiError> {
    let exp = numeric_date(claims, "exp")?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if !config.bound_issuer.is_empty()
        && claims.get("iss").and_then(Value::as_str) != Some(config.bound_issuer.as_str())
    {
        return Err(token_error("invalid issuer (iss) claim"));
    }
    if !role.bound_subject.is_empty()
        && claims.get("sub").and_then(Value::as_str) != Some(role.bound_subject.as_str())
    {
        return Err(token_error("invalid subject (sub) claim"));
    }
    if !role.bound_audiences.is_empty() {
        let aud = claims.get("aud").map(as_texts).unwrap_or_default();
        if !aud.iter().any(|a| role.bound_audiences.contains(a)) {
            return Err(token_error(
                "invalid audience (aud) claim: audience claim does not match any expected audience",
            ));
        }
    }
    let now = crate::keys::now_ms() as f64 / 1000.0;
    if exp.is_some_and(|exp| now > exp + LEEWAY_SECS) {
        return Err(token_error(
            "invalid expiration time (exp) claim: token is expired",
        ));
    }
    if nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
        return Err(token_error(
            "invalid not before (nbf) claim: token not yet valid",
        ));
    }
    if iat.is_some_and(|iat| now + LEEWAY_SECS < iat) {
        return Err(token_error(
            "invalid issued at (iat) claim: token issued in the future",
        ));
    }
    Ok(())
}

fn check_bound_claims(role: &Role, claims: &Map<String, Value>) -> Result<(), ApiError> {
    let claims_error = |detail: String| ApiError::bad(format!("error validating claims: {detail}"));
    for (name, wanted) in &role.bound_claims {
        let actual = claim(claims, name)
            .ok_or_else(|| claims_error(format!("claim {name:?} is missing")))?;
        let wanted = as_texts(wanted);
        if !as_texts(actual).iter().any(|a| wanted.contains(a)) {
            return Err(claims_error(format!(
                "claim {name:?} does not match any associated bound claim values"
            )));
        }
    }
    Ok(())
}

/// `auth/<mount>/login` with `role` and `jwt`.
fn login(shared: &Shared, mount: &str, req: &Request) -> Result<Reply, ApiError> {
    if req.op != Op::Write {
        // Unauthenticated paths answer without the multierror wrapping.
        return Ok(Reply::raw(
            405,
            json!({ "errors": ["unsupported operation"] }),
        ));
    }
    let f = validate(req, LOGIN_FIELDS)?;
    let (role_name, role, accessor, claims) = {
        let auth = shared.jwt();
        let m = auth.mounts.get(mount).ok_or(ApiError::PermissionDenied)?;
        let config = m
            .config
            .as_ref()
            .ok_or_else(|| ApiError::bad("could not load configuration"))?;
        let role_name = f.str("role").unwrap_or_default();
        if role_name.is_empty() {
            return Err(ApiError::bad("missing role"));
        }
        let role = m
            .roles
            .get(&role_name)
            .ok_or_else(|| ApiError::bad(format!("role {role_name:?} could not be found")))?
            .clone();
        let jwt = f.str("jwt").unwrap_or_default();
        if jwt.is_empty() {
            return Err(ApiError::bad("missing token"));
        }
        let claims = verified_claims(config, &jwt)?;
        check_registered(config, &role, &claims)?;
        (role_name, role, m.accessor.clone(), claims)
    };
    check_bound_claims(&role, &claims)?;
    let user_claim = &role.user_claim;
    let user = match claim(&claims, user_claim) {
        None => {
            return Err(ApiError::bad(format!(
                "claim {user_claim:?} not found in token"
            )))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ApiError::bad(format!(
                "claim {user_claim:?} could not be converted to string"
            )))
        }
    };
    let mut policies: Vec<String> = std::iter::once("default".to_string())
        .chain(role.token_policies.iter().cloned())
        .collect();
    policies.sort();
    policies.dedup();
    let mut tokens = shared.tokens();
    let (token, ttl) = tokens.issue(Grant {
        alias: format!("{accessor}/{user}"),
        policies,
        metadata: json!({ "role": role_name }),
        ttl: Duration::from_secs(role.token_ttl),
        max_ttl: Duration::from_secs(role.token_max_ttl),
        path: format!("auth/{mount}/login"),
        display_name: format!("{}-{user}", mount.replace('/', "-")),
    });
    Ok(Reply::auth(tokens.auth_block(&token, ttl), "jwt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(
            der_next(&[0x30, 0x01, 0xaa, 0xbb]),
            Some((0x30, &[0xaa][..], &[0xbb][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(der_next(&long).map(|(_, c, _)| c.len()), Some(0x80));
        assert_eq!(der_next(&[0x04, 0x05, 0x00]), None);
        assert_eq!(der_next(&[0x04, 0x80]), None);
    }

    #[test]
    fn spki_of_each_key_type() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        for (kp, kind) in [
            (p256, KeyKind::P256),
            (p384, KeyKind::P384),
            (ed, KeyKind::Ed25519),
        ] {
            let key = parse_pem(&kp.public_key_pem()).expect("parses");
            assert!(key.kind == kind);
            assert_eq!(key.bytes, kp.public_key_raw());
        }
        assert!(parse_pem("garbage").is_none());
    }

    #[test]
    fn signer_output_verifies() {
        let signer = crate::JwtSigner::generate().unwrap();
        let key = parse_pem(&signer.public_key_pem()).expect("signer's PEM parses");
        let jwt = signer.sign(&json!({ "sub": "x" }));
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(verifies("ES256", &key, signed.as_bytes(), &sig));
        assert!(!verifies("ES256", &key, b"other", &sig));
        assert!(!verifies("RS256", &key, signed.as_bytes(), &sig));
    }

    /// A 2048-bit RSA public key made with `openssl genpkey`, and a JWT signed with its
    /// private key (RS256, then PS256 over the same input), which was not kept: ring
    /// cannot make RSA keys, so the RS and PS paths are checked against these.
    const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAy0JEPyXle3mNK1kSXY/x\nV79BVlm+GI7P6MFO7atN9BNlK2uPQXYyA/+gcwPhFT5SleT07dJjQUwfVLqjypf0\nwDw1VnE6EHdtVnnafNk7HB1CkIRJ6eZ+hgSa/jmgFa9ZJEHZ7hyDId/TQEpO/1u9\nZ+E6AoRj8T3c/xxeTfIJtUUhR3hB8pjocgGQoo03DplMAI4UgTNdmvD9SvOsG2DN\n3zFL/06JZI0N6uCaKqnR/+rN8F0oSskWS5jdw6kzmCuU2KWXTuNW2h5+zUOiJAgk\nmubDwCRdU8q4LRWhWaD5jScTRPPm2K7GkFcFm90rg/DAhkKXHG5qQMdO3bHGdVxL\n4wIDAQAB\n-----END PUBLIC KEY-----\n";
    const RS256_JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyczI1Ni12ZWN0b3IifQ.ZGBkxptOHyhhWeU8VjhalzUPJFXGNPj36psGJ7WpnADaqkElAFjtj8_ssTIB-ncQmoITZ6lAyQChA-LWzAYaoDd5UnwO5xaetS6Uguwak_opmG6sl4Q__gIeE7ubgiRKsFEcRNjR23_lb0XkI_ll2YsS0KtoBg65OevXj3VvxblTPHioo7z2sZL3AKv8BmUZog9pptGHK_saWhCQxXpGXT0x-zTeQKhGRL7s5B5AOIsPACohD3kHtPRrw0-G2d_2-em-D1x3K1MgJsgd38B0VQj5rDgixZ-39DifNI77oLwpjD-v3g8k61s1TgsbFOXCZTA3fXFV9wXe-jxIIeJdow";
    const PS256_SIG: &str = "QPzYMbWmGzcyQR18qPCr1q-tpc-z5uRFxAx4wE5wskrYRodDwg7xSeYIujCYiJ8ABx3gOsdG-TMYg_7tboESQcTpXaI7h1Q9T2sjRXdIvv8GKcAghw5vpgqddCOUTnKWJ6l0v0aBcnN5iMSRo7kfb0yEsEKim2OFFUVYPuIwDomtmNHaVp5Iz08NH0R89Jp_G4cRozGQFlSPfQTnoXak6QajlUjxcNfnWHIS65fQkIv_IX04w6dmyR_AO7Nc06fJTrdoDKO7yNFwPb-sy60qu7KluoQKqCtk_gBeOQnjPa908I7Q2qGsBFfTDuyW-9IZWCIEC634nPlbiYIyLxDhTA";

    #[test]
    fn rsa_signatures_verify() {
        let key = parse_pem(RSA_PUBLIC_PEM).expect("RSA SPKI parses");
        assert!(key.kind == KeyKind::Rsa);
        let (signed, sig) = RS256_JWT.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert!(verifies("RS256", &key, signed.as_bytes(), &sig));
        assert!(!verifies("RS384", &key, signed.as_bytes(), &sig));
        assert!(!verifies("RS256", &key, b"tampered", &sig));
        let pss = URL_SAFE_NO_PAD.decode(PS256_SIG).unwrap();
        assert!(verifies("PS256", &key, signed.as_bytes(), &pss));
        assert!(!verifies("RS256", &key, signed.as_bytes(), &pss));
        // The whole login path: a config holding the key accepts the token.
        let config = Config {
            pems: vec![RSA_PUBLIC_PEM.into()],
            keys: vec![key],
            bound_issuer: String::new(),
        };
        let claims = verified_claims(&config, RS256_JWT).expect("verifies");
        assert_eq!(claims["sub"], "rs256-vector");
        let tampered = RS256_JWT.replacen("eyJzdWIi", "eyJzdWJ4", 1);
        assert!(verified_claims(&config, &tampered).is_err());
    }

    #[test]
    fn claims_by_name_and_pointer() {
        let claims = json!({ "team": "data", "k8s": { "ns": "prod" } });
        let claims = claims.as_object().unwrap();
        assert_eq!(claim(claims, "team"), Some(&json!("data")));
        assert_eq!(claim(claims, "/k8s/ns"), Some(&json!("prod")));
        assert_eq!(claim(claims, "/k8s/pod"), None);
        assert_eq!(as_texts(&json!(["a", 1, true, {}])), ["a", "1", "true"]);
    }
}
