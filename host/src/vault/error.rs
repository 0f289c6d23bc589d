//! Errors of the Vault client. Messages name the mount and key and say what to change;
//! they never contain a token or any plaintext.

use std::fmt;

/// A whole-request failure.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault could not be reached or kept failing with a retryable status (connection
    /// error, timeout, 412, 429, 5xx, sealed) after all retries. When no attempt got any
    /// answer, `detail` starts with "Vault unreachable" ([`VaultError::is_unreachable`]).
    #[error("Vault transit mount `{mount}`{} is unavailable: {detail} (check that Vault is reachable at vault.address and unsealed; retries are set by vault.max_retries and vault.request_timeout)", KeySuffix(.key))]
    Unavailable {
        mount: String,
        key: Option<String>,
        detail: String,
    },
    /// Vault answered 403: the token is missing, expired or not allowed on `path`.
    #[error("permission denied by Vault for `{path}` (transit mount `{mount}`{}): grant the token's policy access to this path, or check that the token has not expired", KeySuffix(.key))]
    PermissionDenied {
        mount: String,
        key: Option<String>,
        path: String,
    },
    /// The transit key does not exist.
    #[error("transit key `{key}` not found on mount `{mount}`: create it (vault write {mount}/keys/{key}) or fix the key name in the policy")]
    KeyNotFound { mount: String, key: String },
    /// Nothing is mounted at the transit path (404 "no handler for route").
    #[error("no transit engine is mounted at `{mount}`: enable it (vault secrets enable -path={mount} transit) or fix vault.mount")]
    MountNotFound { mount: String },
    /// Vault rejected the request as invalid (400), e.g. an invalid ciphertext.
    #[error("Vault rejected the request for key `{key}` on transit mount `{mount}`: {message}")]
    InvalidRequest {
        mount: String,
        key: String,
        message: String,
    },
    /// The key of a data subject `kafka-transit forget` forgot (docs/forgetting.md): the
    /// runner refuses it without asking Vault. The message names no key: the record's
    /// subject chose it.
    #[error("subject forgotten: this record's data subject was forgotten (kafka-transit forget); nothing of theirs is sealed again")]
    SubjectForgotten,
    /// Authentication problem: token source, AppRole login, token rejected, TLS trust
    /// configuration.
    #[error("Vault authentication/configuration problem: {detail}")]
    Auth { detail: String },
    /// Vault's answer did not have the expected shape.
    #[error("unexpected response from Vault: {detail}")]
    Protocol { detail: String },
}

impl VaultError {
    /// How the detail of an [`VaultError::Unavailable`] starts when no attempt got any
    /// HTTP answer (every one a connection error or a timeout).
    pub const UNREACHABLE_PREFIX: &'static str = "Vault unreachable: ";

    /// Whether trying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, VaultError::Unavailable { .. })
    }

    /// Whether the client gave up without any answer from Vault: down, blackholed, or
    /// not at `vault.address`, rather than sealed, rate limited or failing.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, VaultError::Unavailable { detail, .. } if detail.starts_with(Self::UNREACHABLE_PREFIX))
    }
}

struct KeySuffix<'a>(&'a Option<String>);

impl fmt::Display for KeySuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(k) => write!(f, " (key `{k}`)"),
            None => Ok(()),
        }
    }
}

/// The error of one item of a batch, as Vault reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub message: String,
}

impl ItemError {
    pub fn new(message: impl Into<String>) -> Self {
        ItemError {
            message: message.into(),
        }
    }

    /// True for Vault's 400-class item errors: the item itself is bad (invalid
    /// ciphertext, message authentication failed, bad base64, missing context, version
    /// disallowed ...) and retrying it will not help.
    pub fn is_invalid_input(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        const SERVER_SIDE: [&str; 6] = [
            "internal error",
            "permission denied",
            "sealed",
            "unavailable",
            "timeout",
            "timed out",
        ];
        !SERVER_SIDE.iter().any(|p| m.contains(p))
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ItemError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_mount_and_key() {
        let e = VaultError::Unavailable {
            mount: "team/transit".into(),
            key: Some("orders".into()),
            detail: "Vault is sealed".into(),
        };
        let s = e.to_string();
        assert!(s.contains("team/transit") && s.contains("orders") && s.contains("sealed"));
        assert!(e.is_retryable());
        assert!(!e.is_unreachable());
        let e = VaultError::Unavailable {
            mount: "transit".into(),
            key: None,
            detail: format!("{}cannot connect", VaultError::UNREACHABLE_PREFIX),
        };
        assert!(e.is_unreachable() && e.is_retryable());
        assert!(e.to_string().contains("Vault unreachable: cannot connect"));

        let e = VaultError::KeyNotFound {
            mount: "transit".into(),
            key: "k1".into(),
        };
        assert!(e.to_string().contains("transit") && e.to_string().contains("k1"));
        assert!(!e.is_retryable());

        let e = VaultError::MountNotFound {
            mount: "nope".into(),
        };
        assert!(e.to_string().contains("vault.mount"));

        let e = VaultError::PermissionDenied {
            mount: "transit".into(),
            key: Some("k".into()),
            path: "transit/encrypt/k".into(),
        };
        assert!(e.to_string().contains("transit/encrypt/k"));
    }

    #[test]
    fn item_error_classification() {
        for m in [
            "cipher: message authentication failed",
            "invalid ciphertext: no prefix",
            "illegal base64 data at input byte 0",
            "ciphertext or signature version is disallowed by policy (too old)",
        ] {
            assert!(ItemError::new(m).is_invalid_input(), "{m}");
        }
        assert!(!ItemError::new("internal error").is_invalid_input());
        assert!(!ItemError::new("permission denied").is_invalid_input());
    }
}
