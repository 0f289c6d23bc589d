//! Where the token comes from, logins (AppRole, JWT, Kubernetes), and background renewal.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::backoff::backoff_delay;
use super::client::{parse_json, Inner, Target};
use super::error::VaultError;
use super::settings::{AppRoleSettings, JwtKind, JwtLoginSettings, VaultSettings};
use super::token::VaultToken;
use super::wire::{self, AuthInfo, Envelope, LookupData};

/// Where the client's token comes from.
pub(crate) enum TokenSource {
    /// Given by the caller (`with_token`); cannot be refreshed.
    Fixed,
    Env(String),
    File(PathBuf),
    /// Logs in (without a token) and logs in again when the token runs out.
    Login(LoginMethod),
}

/// An auth method the client logs in with.
pub(crate) enum LoginMethod {
    AppRole(AppRoleSettings),
    /// `[vault.jwt]` or `[vault.kubernetes]`: a role and a JWT read from a file.
    Jwt(JwtKind, JwtLoginSettings),
}

/// Borrowed, so that no unzeroized copy of a credential is made on the way.
#[derive(Serialize)]
#[serde(untagged)]
enum LoginBody<'a> {
    AppRole {
        role_id: &'a str,
        secret_id: &'a str,
    },
    Jwt {
        role: &'a str,
        jwt: &'a str,
    },
}

impl LoginMethod {
    /// The method's name, for messages.
    fn name(&self) -> &'static str {
        match self {
            LoginMethod::AppRole(_) => "AppRole",
            LoginMethod::Jwt(JwtKind::Jwt, _) => "JWT",
            LoginMethod::Jwt(JwtKind::Kubernetes, _) => "Kubernetes",
        }
    }

    fn mount(&self) -> &str {
        match self {
            LoginMethod::AppRole(ar) => ar.mount.trim_matches('/'),
            LoginMethod::Jwt(kind, j) => j.mount_path(*kind),
        }
    }

    /// The settings table and the field naming the mount, for messages.
    fn fields(&self) -> (&'static str, String) {
        let table = match self {
            LoginMethod::AppRole(_) => "vault.approle",
            LoginMethod::Jwt(kind, _) => kind.field(),
        };
        (table, format!("{table}.mount"))
    }

    /// The login request's body, with the credentials read afresh (a rotated JWT or
    /// secret ID file is picked up at the next login).
    fn body(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let body = match self {
            LoginMethod::AppRole(ar) => {
                let (role_id, secret_id) = read_approle_credentials(ar)?;
                serde_json::to_vec(&LoginBody::AppRole {
                    role_id: &role_id,
                    secret_id: &secret_id,
                })
            }
            LoginMethod::Jwt(kind, j) => {
                let jwt = read_jwt(*kind, j)?;
                serde_json::to_vec(&LoginBody::Jwt {
                    role: &j.role,
                    jwt: &jwt,
                })
            }
        };
        Ok(Zeroizing::new(body.expect("serializing login")))
    }

    /// What to check when Vault refuses the credentials.
    fn refused_hint(&self) -> String {
        match self {
            LoginMethod::AppRole(_) => {
                "check the role ID and secret ID named by vault.approle".into()
            }
            LoginMethod::Jwt(kind, j) => format!(
                "check {field}.role and the JWT in {}: its signature, audience, claims and expiry must satisfy the role",
                j.jwt_path(*kind).unwrap_or_default().display(),
                field = kind.field()
            ),
        }
    }
}

impl TokenSource {
    pub(crate) fn from_settings(s: &VaultSettings) -> TokenSource {
        if let Some(ar) = &s.approle {
            TokenSource::Login(LoginMethod::AppRole(ar.clone()))
        } else if let Some(j) = &s.jwt {
            TokenSource::Login(LoginMethod::Jwt(JwtKind::Jwt, j.clone()))
        } else if let Some(k) = &s.kubernetes {
            TokenSource::Login(LoginMethod::Jwt(JwtKind::Kubernetes, k.clone()))
        } else if let Some(f) = &s.token_file {
            TokenSource::File(f.clone())
        } else if let Some(e) = &s.token_env {
            TokenSource::Env(e.clone())
        } else {
            TokenSource::Fixed
        }
    }

    /// Reads the token from the environment or a file.
    pub(crate) fn read_token(&self) -> Result<VaultToken, VaultError> {
        match self {
            TokenSource::Env(name) => read_env(name, "vault.token_env", "use vault.token_file")
                .map(|t| VaultToken::new(t.to_string())),
            TokenSource::File(path) => {
                read_file(path, "vault.token_file").map(|t| VaultToken::new(t.to_string()))
            }
            TokenSource::Fixed | TokenSource::Login(_) => Err(VaultError::Auth {
                detail: "no token source to read (set vault.token_env or vault.token_file)".into(),
            }),
        }
    }
}

fn read_env(name: &str, field: &str, alternative: &str) -> Result<Zeroizing<String>, VaultError> {
    match std::env::var(name) {
        Ok(v) => {
            let v = Zeroizing::new(v);
            let t = v.trim();
            if t.is_empty() {
                Err(VaultError::Auth {
                    detail: format!(
                        "env var {name} (from {field}) is empty; set it or {alternative}"
                    ),
                })
            } else {
                Ok(Zeroizing::new(t.to_string()))
            }
        }
        Err(std::env::VarError::NotPresent) => Err(VaultError::Auth {
            detail: format!(
                "env var {name} is not set; set it or {alternative} (named by {field})"
            ),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(VaultError::Auth {
            detail: format!("env var {name} (from {field}) is not valid UTF-8; fix its value"),
        }),
    }
}

fn read_file(path: &Path, field: &str) -> Result<Zeroizing<String>, VaultError> {
    let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| VaultError::Auth {
        detail: format!(
            "cannot read {field} {}: {e}; make the file readable or fix the path",
            path.display()
        ),
    })?);
    let t = raw.trim();
    if t.is_empty() {
        return Err(VaultError::Auth {
            detail: format!(
                "{field} {} is empty; write the secret into it",
                path.display()
            ),
        });
    }
    Ok(Zeroizing::new(t.to_string()))
}

/// Reads the AppRole role ID and secret ID from where `[vault.approle]` says they are.
fn read_approle_credentials(
    ar: &AppRoleSettings,
) -> Result<(Zeroizing<String>, Zeroizing<String>), VaultError> {
    let role_id = match (&ar.role_id_env, &ar.role_id_file) {
        (Some(e), _) => read_env(
            e,
            "vault.approle.role_id_env",
            "use vault.approle.role_id_file",
        )?,
        (None, Some(f)) => read_file(f, "vault.approle.role_id_file")?,
        (None, None) => {
            return Err(VaultError::Auth {
                detail: "set vault.approle.role_id_env or vault.approle.role_id_file".into(),
            })
        }
    };
    let secret_id = match (&ar.secret_id_env, &ar.secret_id_file) {
        (Some(e), _) => read_env(
            e,
            "vault.approle.secret_id_env",
            "use vault.approle.secret_id_file",
        )?,
        (None, Some(f)) => read_file(f, "vault.approle.secret_id_file")?,
        (None, None) => {
            return Err(VaultError::Auth {
                detail: "set vault.approle.secret_id_env or vault.approle.secret_id_file".into(),
            })
        }
    };
    Ok((role_id, secret_id))
}

/// Reads the JWT of a `[vault.jwt]` or `[vault.kubernetes]` login from its file.
fn read_jwt(kind: JwtKind, j: &JwtLoginSettings) -> Result<Zeroizing<String>, VaultError> {
    let field = format!("{}.jwt_file", kind.field());
    let path = j.jwt_path(kind).ok_or_else(|| VaultError::Auth {
        detail: format!("{field} is not set; set it to the file holding the JWT"),
    })?;
    read_file(&path, &field)
}

/// Reads every credential the settings name (token, AppRole role and secret IDs, or
/// the JWT) and drops it at once: what `kafka-transit validate` checks, so that a
/// config it accepts is not refused by `run` for an unset variable or a missing file.
pub(crate) fn check_credentials(settings: &VaultSettings) -> Result<(), VaultError> {
    match TokenSource::from_settings(settings) {
        TokenSource::Login(method) => method.body().map(drop),
        TokenSource::Fixed => Ok(()),
        source => source.read_token().map(drop),
    }
}

/// Logs in (`auth/<mount>/login`, without a token) with the source's auth method.
pub(crate) async fn login(inner: &Inner, source: &TokenSource) -> Result<AuthInfo, VaultError> {
    let TokenSource::Login(method) = source else {
        return Err(VaultError::Auth {
            detail: "login without [vault.approle], [vault.jwt] or [vault.kubernetes] settings"
                .into(),
        });
    };
    let body = method.body()?;
    let (name, mount) = (method.name(), method.mount());
    let path = format!("auth/{mount}/login");
    let target = Target {
        path: &path,
        key: None,
        auth: false,
    };
    let raw = inner
        .send(Method::POST, target, Some(body.to_vec()))
        .await?;
    if !raw.status.is_success() {
        let msg = wire::error_message(&raw.body).unwrap_or_default();
        let (table, mount_field) = method.fields();
        let detail = match raw.status {
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN => format!(
                "{name} login at {path} was refused ({msg}); {}",
                method.refused_hint()
            ),
            StatusCode::NOT_FOUND => format!(
                "no {name} auth method at auth/{mount} ({msg}); enable it or fix {mount_field}"
            ),
            s => format!(
                "{name} login at {path} failed with HTTP {}: {msg} (settings: {table})",
                s.as_u16()
            ),
        };
        return Err(VaultError::Auth { detail });
    }
    let env: Envelope<serde::de::IgnoredAny> = parse_json(&raw.body, &path)?;
    let auth = env.auth.ok_or_else(|| VaultError::Protocol {
        detail: format!("{name} login response from {path} has no auth block"),
    })?;
    if auth.client_token.is_empty() {
        return Err(VaultError::Protocol {
            detail: format!("{name} login response from {path} has an empty client_token"),
        });
    }
    Ok(auth)
}

/// `auth/token/lookup-self`: checks that the token is accepted.
pub(crate) async fn lookup_self(inner: &Inner) -> Result<LookupData, VaultError> {
    let path = "auth/token/lookup-self";
    let target = Target {
        path,
        key: None,
        auth: true,
    };
    let raw = inner.send(Method::GET, target, None).await?;
    if raw.status == StatusCode::FORBIDDEN {
        return Err(VaultError::Auth {
            detail: format!(
                "Vault rejected the token ({}; permission denied on {path}); it is invalid or expired: provide a valid token via {}",
                wire::error_message(&raw.body).unwrap_or_default(),
                describe_source(&inner.source)
            ),
        });
    }
    if !raw.status.is_success() {
        return Err(inner.error_for(&raw, target));
    }
    let env: Envelope<LookupData> = parse_json(&raw.body, path)?;
    env.data.ok_or_else(|| VaultError::Protocol {
        detail: format!("{path} response has no data"),
    })
}

fn describe_source(s: &TokenSource) -> String {
    match s {
        TokenSource::Fixed => "the caller".into(),
        TokenSource::Env(n) => format!("env var {n} (vault.token_env)"),
        TokenSource::File(p) => format!("{} (vault.token_file)", p.display()),
        TokenSource::Login(m) => format!("{} login at auth/{}", m.name(), m.mount()),
    }
}

/// Renews the token; also says whether Vault warned that it capped the TTL.
async fn renew_self(inner: &Inner, increment: Duration) -> Result<(AuthInfo, bool), VaultError> {
    let path = "auth/token/renew-self";
    let target = Target {
        path,
        key: None,
        auth: true,
    };
    let body = serde_json::to_vec(
        &serde_json::json!({ "increment": format!("{}s", increment.as_secs().max(1)) }),
    )
    .expect("serializing renew");
    let raw = inner.send(Method::POST, target, Some(body)).await?;
    if !raw.status.is_success() {
        return Err(inner.error_for(&raw, target));
    }
    let env: Envelope<serde::de::IgnoredAny> = parse_json(&raw.body, path)?;
    let capped = env
        .warnings
        .iter()
        .flatten()
        .any(|w| w.contains("capped") || w.contains("max_ttl"));
    let auth = env.auth.ok_or_else(|| VaultError::Protocol {
        detail: format!("{path} response has no auth block"),
    })?;
    Ok((auth, capped))
}

/// Gets a new token: a login, or re-reading the token file / env var.
async fn relogin(inner: &Inner) -> Result<(Duration, bool), VaultError> {
    match &inner.source {
        TokenSource::Login(_) => {
            let a = login(inner, &inner.source).await?;
            inner.set_token(VaultToken::new(a.client_token.clone()))?;
            Ok((Duration::from_secs(a.lease_duration), a.renewable))
        }
        TokenSource::Env(_) | TokenSource::File(_) => {
            let t = inner.source.read_token()?;
            if t.expose() == inner.current_token().expose() {
                return Err(VaultError::Auth {
                    detail: format!(
                        "the token can no longer be renewed and {} still holds the same token; provide a new one",
                        describe_source(&inner.source)
                    ),
                });
            }
            inner.set_token(t)?;
            let look = lookup_self(inner).await?;
            Ok((Duration::from_secs(look.ttl), look.renewable))
        }
        TokenSource::Fixed => Err(VaultError::Auth {
            detail:
                "the token can no longer be renewed and was given directly; no way to get a new one"
                    .into(),
        }),
    }
}

/// Starts the background task keeping the token alive (no-op for tokens without TTL).
pub(crate) fn start_renewal(inner: &Arc<Inner>, ttl: Duration, renewable: bool) {
    if ttl.is_zero() {
        return;
    }
    let can_relogin = !matches!(inner.source, TokenSource::Fixed);
    if !renewable && !can_relogin {
        return;
    }
    let weak = Arc::downgrade(inner);
    let handle = tokio::spawn(renewal_loop(weak, ttl, renewable));
    if let Ok(mut g) = inner.renewer.lock() {
        if let Some(old) = g.replace(handle) {
            old.abort();
        }
    }
}

/// Renews at ~2/3 of the lease; logs in again when renewal is refused, the token is not
/// renewable, or Vault capped the renewal (near the token's max TTL).
async fn renewal_loop(weak: Weak<Inner>, ttl: Duration, renewable: bool) {
    // The TTL each renewal asks for: the TTL the token had when obtained.
    let mut increment = ttl;
    let mut lease = ttl;
    let mut renewable = renewable;
    let mut obtained = Instant::now();
    // Set when Vault granted less than asked: the next step is a re-login.
    let mut capped = false;
    let mut failures: u32 = 0;
    loop {
        let due = if failures == 0 {
            obtained + lease * 2 / 3
        } else {
            // Retry sooner, but not in a tight loop.
            let expires = obtained + lease;
            let now = Instant::now();
            let left = expires.saturating_duration_since(now);
            let d = backoff_delay(
                failures - 1,
                Duration::from_millis(200),
                Duration::from_secs(30),
            );
            let d = if left.is_zero() { d } else { d.min(left / 2) };
            now + d.max(Duration::from_millis(100))
        };
        tokio::time::sleep_until(due).await;
        let Some(inner) = weak.upgrade() else { return };

        let mut done = false;
        if renewable && !capped {
            let started = Instant::now();
            match renew_self(&inner, increment).await {
                Ok((a, warned_capped)) => {
                    inner.renewals.fetch_add(1, Ordering::Relaxed);
                    if !a.client_token.is_empty()
                        && a.client_token != inner.current_token().expose()
                    {
                        let _ = inner.set_token(VaultToken::new(a.client_token.clone()));
                    }
                    let granted = Duration::from_secs(a.lease_duration);
                    tracing::debug!(lease = ?granted, "renewed the Vault token");
                    obtained = started;
                    lease = granted;
                    renewable = a.renewable;
                    // Less than asked for (minus rounding): the max TTL is near.
                    capped = warned_capped || granted < increment || !a.renewable;
                    // Nothing granted: get a new token right away.
                    done = !granted.is_zero();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the Vault token failed; logging in again");
                }
            }
        }
        if !done {
            let started = Instant::now();
            match relogin(&inner).await {
                Ok((new_lease, new_renewable)) => {
                    inner.logins.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(lease = ?new_lease, "obtained a new Vault token");
                    obtained = started;
                    lease = new_lease;
                    if !new_lease.is_zero() {
                        increment = new_lease;
                    }
                    renewable = new_renewable;
                    capped = false;
                    done = true;
                    if new_lease.is_zero() {
                        return; // a token without TTL needs no care
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not obtain a new Vault token; will retry");
                }
            }
        }
        failures = if done { 0 } else { failures.saturating_add(1) };
        if !done && Instant::now() >= obtained + lease {
            tracing::error!("the Vault token has expired and could not be renewed or replaced");
        }
    }
}
