//! The credential `POST /admin/policy/reload` asks for: a bearer token read from a
//! file or an environment variable (`admin.reload_token_file`, `admin.reload_token_env`),
//! never written in the configuration. Without one configured the endpoint is off: the
//! listener usually faces more of the network than the policy file does (a pod's port,
//! scraped by Prometheus), and a reload is an operator's act.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Where the reload token comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ReloadCredential {
    File(PathBuf),
    Env(String),
}

impl std::fmt::Debug for ReloadCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadCredential::File(path) => write!(f, "File({})", path.display()),
            ReloadCredential::Env(name) => write!(f, "Env({name})"),
        }
    }
}

impl ReloadCredential {
    /// The token as configured now, read afresh (a rotated secret file is picked up at
    /// the next request). The error names the field to fix, never the token.
    pub(crate) fn read(&self) -> Result<Zeroizing<String>, String> {
        let raw = match self {
            ReloadCredential::File(path) => std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .map_err(|e| {
                    format!(
                        "admin.reload_token_file: cannot read {}: {e}",
                        path.display()
                    )
                })?,
            ReloadCredential::Env(name) => {
                std::env::var(name).map(Zeroizing::new).map_err(|_| {
                    format!("admin.reload_token_env: environment variable {name} is not set")
                })?
            }
        };
        let token = Zeroizing::new(raw.trim().to_string());
        if token.len() < 16 {
            return Err(format!(
                "{}: the reload token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                self.field()
            ));
        }
        Ok(token)
    }

    fn field(&self) -> &'static str {
        match self {
            ReloadCredential::File(_) => "admin.reload_token_file",
            ReloadCredential::Env(_) => "admin.reload_token_env",
        }
    }

    /// Whether an `Authorization` header value carries the token. Compares SHA-256
    /// digests in constant time, so neither the token's bytes nor its length show in
    /// how long a refusal takes.
    pub(crate) fn admits(&self, authorization: Option<&[u8]>) -> Result<bool, String> {
        let expected = self.read()?;
        let Some(presented) = authorization.and_then(|value| value.strip_prefix(b"Bearer ")) else {
            return Ok(false);
        };
        Ok(constant_time_eq(
            &Sha256::digest(presented.trim_ascii()),
            &Sha256::digest(expected.as_bytes()),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_bearer_token_is_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let credential = ReloadCredential::File(file.clone());
        assert!(credential
            .admits(Some(b"Bearer 0123456789abcdef0123"))
            .unwrap());
        for refused in [
            None,
            Some(&b"Bearer 0123456789abcdef0124"[..]),
            Some(b"Bearer 0123456789abcdef012"),
            Some(b"Basic 0123456789abcdef0123"),
            Some(b"0123456789abcdef0123"),
            Some(b"Bearer "),
        ] {
            assert!(!credential.admits(refused).unwrap(), "{refused:?}");
        }
        // Rotated in place: the next request sees the new token.
        std::fs::write(&file, "fedcba9876543210fedc").unwrap();
        assert!(credential
            .admits(Some(b"Bearer fedcba9876543210fedc"))
            .unwrap());
    }

    #[test]
    fn errors_name_the_field_never_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "short-SECRET").unwrap();
        let error = ReloadCredential::File(file).read().unwrap_err();
        assert!(error.starts_with("admin.reload_token_file:"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
        let error = ReloadCredential::Env("KAFKA_TRANSIT_TEST_NO_SUCH_VAR".into())
            .read()
            .unwrap_err();
        assert!(error.starts_with("admin.reload_token_env:"), "{error}");
        let missing = ReloadCredential::File(dir.path().join("missing"));
        assert!(missing.read().unwrap_err().contains("cannot read"));
    }
}
