//! What a refusal or a transport failure means, as a [`VaultError`] or a detail naming
//! the mount and key and saying what to change; never a header (so never the token).

use std::time::Duration;

use reqwest::StatusCode;

use super::{Raw, Target, Transport};
use crate::vault::error::VaultError;
use crate::vault::wire;

impl Transport {
    /// Maps a non-success response to an error.
    pub(crate) fn error_for(&self, raw: &Raw, target: Target<'_>) -> VaultError {
        let msg = wire::error_message(&raw.body).unwrap_or_default();
        let mount = self.mount.clone();
        let key = target.key.map(str::to_owned);
        match raw.status {
            StatusCode::FORBIDDEN => VaultError::PermissionDenied {
                mount,
                key,
                path: target.path.to_string(),
            },
            StatusCode::NOT_FOUND => {
                // A namespace that does not exist (Vault Enterprise, OpenBao) is a
                // configuration error, not a missing key.
                if msg.contains("namespace not found") {
                    VaultError::Auth {
                        detail: format!(
                            "Vault has no namespace `{}` ({msg}): create it or fix vault.namespace",
                            self.settings
                                .namespace
                                .as_deref()
                                .unwrap_or_default()
                                .trim_matches('/')
                        ),
                    }
                } else if msg.contains("no handler for route") || msg.contains("unsupported path") {
                    VaultError::MountNotFound { mount }
                } else if let Some(key) = key {
                    VaultError::KeyNotFound { mount, key }
                } else {
                    VaultError::Protocol {
                        detail: format!("{} returned 404 {msg}", target.path),
                    }
                }
            }
            StatusCode::BAD_REQUEST
                if msg.contains("encryption key not found") && key.is_some() =>
            {
                VaultError::KeyNotFound {
                    mount,
                    key: key.unwrap_or_default(),
                }
            }
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => VaultError::InvalidRequest {
                mount,
                key: key.unwrap_or_default(),
                message: if raw.status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("request too large ({msg}); lower vault.max_batch_bytes")
                } else if msg.is_empty() {
                    "bad request".to_string()
                } else {
                    msg
                },
            },
            other => VaultError::Protocol {
                detail: format!(
                    "{} returned HTTP {}{}{}",
                    target.path,
                    other.as_u16(),
                    if msg.is_empty() { "" } else { ": " },
                    msg
                ),
            },
        }
    }
}

/// A transport error, with its causes, without the URL's query (there is none) or any
/// header.
pub(super) fn transport_detail(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "no response within {} (vault.request_timeout)",
            humantime::format_duration(timeout)
        );
    }
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "error reading the response"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
        depth += 1;
        if depth > 4 {
            break;
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::super::tests::transport;
    use super::super::{ResponseBody, Secrecy};
    use super::*;
    use crate::vault::settings::VaultSettings;
    use crate::vault::token::VaultToken;

    fn raw(status: u16, body: &str) -> Raw {
        Raw {
            status: StatusCode::from_u16(status).unwrap(),
            body: ResponseBody::Public(bytes::Bytes::copy_from_slice(body.as_bytes())),
        }
    }

    #[test]
    fn error_mapping_names_mount_and_key_not_token() {
        let c = transport();
        let t = Target {
            path: "team/transit/decrypt/orders",
            key: Some("orders"),
            auth: true,
            secrecy: Secrecy::Secret,
        };
        let cases = [
            (
                raw(
                    404,
                    r#"{"errors":["no handler for route \"team/transit/decrypt/orders\". route entry not found."]}"#,
                ),
                "MountNotFound",
            ),
            (raw(404, r#"{"errors":[]}"#), "KeyNotFound"),
            (
                raw(400, r#"{"errors":["encryption key not found"]}"#),
                "KeyNotFound",
            ),
            (
                raw(400, r#"{"errors":["invalid ciphertext: no prefix"]}"#),
                "InvalidRequest",
            ),
            (
                raw(
                    403,
                    r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
                ),
                "PermissionDenied",
            ),
            (raw(418, "teapot"), "Protocol"),
        ];
        for (r, variant) in cases {
            let e = c.error_for(&r, t);
            let dbg = format!("{e:?}");
            let msg = e.to_string();
            assert!(dbg.starts_with(variant), "{dbg} should be {variant}");
            assert!(!msg.contains("secret-token-value") && !dbg.contains("secret-token-value"));
            assert!(msg.contains("team/transit"), "{msg}");
            if variant != "MountNotFound" {
                assert!(msg.contains("orders"), "{msg}");
            }
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn missing_namespace_is_a_configuration_error() {
        let mut s = VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        s.namespace = Some("team-a/".into());
        let c = Transport::new(&s, VaultToken::new("hvs.t".into())).unwrap();
        let t = Target {
            path: "transit/encrypt/orders",
            key: Some("orders"),
            auth: true,
            secrecy: Secrecy::Public,
        };
        let e = c.error_for(&raw(404, r#"{"errors":["namespace not found"]}"#), t);
        assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("`team-a`") && msg.contains("vault.namespace"),
            "{msg}"
        );
    }
}
