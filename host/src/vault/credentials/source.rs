//! Where the token comes from: a variable, a file, the caller, or a login (AppRole,
//! JWT, Kubernetes) whose credentials are read afresh from their variable or file at
//! every login. Every secret read here is held in memory that is wiped on drop.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::vault::error::VaultError;
use crate::vault::settings::{AppRoleSettings, JwtKind, JwtLoginSettings, VaultSettings};
use crate::vault::token::VaultToken;
use crate::vault::wire;

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
    pub(super) fn name(&self) -> &'static str {
        match self {
            LoginMethod::AppRole(_) => "AppRole",
            LoginMethod::Jwt(JwtKind::Jwt, _) => "JWT",
            LoginMethod::Jwt(JwtKind::Kubernetes, _) => "Kubernetes",
        }
    }

    pub(super) fn mount(&self) -> &str {
        match self {
            LoginMethod::AppRole(ar) => ar.mount.trim_matches('/'),
            LoginMethod::Jwt(kind, j) => j.mount_path(*kind),
        }
    }

    /// The settings table and the field naming the mount, for messages.
    pub(super) fn fields(&self) -> (&'static str, String) {
        let table = match self {
            LoginMethod::AppRole(_) => "vault.approle",
            LoginMethod::Jwt(kind, _) => kind.field(),
        };
        (table, format!("{table}.mount"))
    }

    /// The login request's body, with the credentials read afresh (a rotated JWT or
    /// secret ID file is picked up at the next login).
    pub(super) fn body(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        Ok(match self {
            LoginMethod::AppRole(ar) => {
                let (role_id, secret_id) = read_approle_credentials(ar)?;
                serialize_wiped(
                    &LoginBody::AppRole {
                        role_id: &role_id,
                        secret_id: &secret_id,
                    },
                    &[&role_id, &secret_id],
                )
            }
            LoginMethod::Jwt(kind, j) => {
                let jwt = read_jwt(*kind, j)?;
                serialize_wiped(
                    &LoginBody::Jwt {
                        role: &j.role,
                        jwt: &jwt,
                    },
                    &[&j.role, &jwt],
                )
            }
        })
    }

    /// What to check when Vault refuses the credentials.
    pub(super) fn refused_hint(&self) -> String {
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

/// Serializes a login body into a buffer sized up front for its `strings` (escapes
/// counted) and the field names around them: a `Vec` that grew while serializing would
/// free its smaller buffers, credentials in them, unwiped.
fn serialize_wiped(body: &LoginBody<'_>, strings: &[&str]) -> Zeroizing<Vec<u8>> {
    let len = LOGIN_BODY_FRAME + strings.iter().map(|s| wire::json_str_len(s)).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    // Serializing strings into a Vec cannot fail.
    serde_json::to_writer(&mut *out, body).expect("serializing a login");
    out
}

/// Bytes of a login body besides its strings: `{"role_id":"","secret_id":""}` is 30.
const LOGIN_BODY_FRAME: usize = 64;

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
    crate::secrets::from_env(name, field, alternative).map_err(|detail| VaultError::Auth { detail })
}

fn read_file(path: &Path, field: &str) -> Result<Zeroizing<String>, VaultError> {
    crate::secrets::from_file(path, field).map_err(|detail| VaultError::Auth { detail })
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

/// Where the token came from, for messages.
pub(super) fn describe_source(s: &TokenSource) -> String {
    match s {
        TokenSource::Fixed => "the caller".into(),
        TokenSource::Env(n) => format!("env var {n} (vault.token_env)"),
        TokenSource::File(p) => format!("{} (vault.token_file)", p.display()),
        TokenSource::Login(m) => format!("{} login at auth/{}", m.name(), m.mount()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The login body never outgrows the buffer it was given, escapes and all, so no
    /// unwiped copy of a credential is left by a reallocation.
    #[test]
    fn login_body_fits_its_presized_buffer() {
        let long = "eyJ".repeat(2000);
        let escaped = "\"\\\n\u{1}".repeat(50);
        for (a, b) in [
            ("", ""),
            ("role", long.as_str()),
            (escaped.as_str(), escaped.as_str()),
        ] {
            for (body, secret_field) in [
                (
                    LoginBody::AppRole {
                        role_id: a,
                        secret_id: b,
                    },
                    "secret_id",
                ),
                (LoginBody::Jwt { role: a, jwt: b }, "jwt"),
            ] {
                let out = serialize_wiped(&body, &[a, b]);
                let presized = LOGIN_BODY_FRAME + wire::json_str_len(a) + wire::json_str_len(b);
                assert!(out.len() <= presized, "{} > {presized}", out.len());
                assert_eq!(out.capacity(), presized, "the buffer grew");
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(v[secret_field], b);
            }
        }
    }
}
