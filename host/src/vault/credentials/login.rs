//! The token requests: a login (without a token), `lookup-self`, `renew-self`. Their
//! answers are read as secrets: a login's and a renewal's carry the token, and
//! `lookup-self`'s carries it too (as `data.id`, which is not parsed).

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};

use super::source::{describe_source, TokenSource};
use crate::vault::error::VaultError;
use crate::vault::transport::{parse_json, Secrecy, Target, Transport};
use crate::vault::wire::{self, AuthInfo, Envelope, LookupData};

/// Logs in (`auth/<mount>/login`, without a token) with the source's auth method.
pub(super) async fn login(
    transport: &Transport,
    source: &TokenSource,
) -> Result<AuthInfo, VaultError> {
    let TokenSource::Login(method) = source else {
        return Err(VaultError::Auth {
            detail: "login without [vault.approle], [vault.jwt] or [vault.kubernetes] settings"
                .into(),
        });
    };
    // The credentials go out in a buffer wiped when reqwest drops its last handle on it.
    let body = Bytes::from_owner(method.body()?);
    let (name, mount) = (method.name(), method.mount());
    let path = format!("auth/{mount}/login");
    let target = Target {
        path: &path,
        key: None,
        auth: false,
        secrecy: Secrecy::Secret,
    };
    let raw = transport.send(Method::POST, target, Some(body)).await?;
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
    if auth.client_token.expose().is_empty() {
        return Err(VaultError::Protocol {
            detail: format!("{name} login response from {path} has an empty client_token"),
        });
    }
    Ok(auth)
}

/// `auth/token/lookup-self`: checks that the token is accepted.
pub(super) async fn lookup_self(
    transport: &Transport,
    source: &TokenSource,
) -> Result<LookupData, VaultError> {
    let path = "auth/token/lookup-self";
    let target = Target {
        path,
        key: None,
        auth: true,
        secrecy: Secrecy::Secret,
    };
    let raw = transport.send(Method::GET, target, None).await?;
    if raw.status == StatusCode::FORBIDDEN {
        return Err(VaultError::Auth {
            detail: format!(
                "Vault rejected the token ({}; permission denied on {path}): it is invalid or expired, or its policies do not allow `read` on {path}: provide a valid token via {}",
                wire::error_message(&raw.body).unwrap_or_default(),
                describe_source(source)
            ),
        });
    }
    if !raw.status.is_success() {
        return Err(transport.error_for(&raw, target));
    }
    let env: Envelope<LookupData> = parse_json(&raw.body, path)?;
    env.data.ok_or_else(|| VaultError::Protocol {
        detail: format!("{path} response has no data"),
    })
}

/// Renews the token; also says whether Vault warned that it capped the TTL.
pub(super) async fn renew_self(
    transport: &Transport,
    increment: Duration,
) -> Result<(AuthInfo, bool), VaultError> {
    let path = "auth/token/renew-self";
    let target = Target {
        path,
        key: None,
        auth: true,
        secrecy: Secrecy::Secret,
    };
    let body = serde_json::to_vec(
        &serde_json::json!({ "increment": format!("{}s", increment.as_secs().max(1)) }),
    )
    .expect("serializing renew");
    let raw = transport
        .send(Method::POST, target, Some(Bytes::from(body)))
        .await?;
    if !raw.status.is_success() {
        return Err(transport.error_for(&raw, target));
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
