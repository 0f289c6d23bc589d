//! The `[vault]` table of `pipeline.toml`.
//!
//! Secrets are never written inline in the configuration: the token, the AppRole role ID
//! and secret ID, and the JWT of a JWT or Kubernetes login are always read from an
//! environment variable or a file whose *name* is configured here. That keeps the derived
//! `Debug` of these structs harmless.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Largest number of items Vault accepts in one batch request.
pub const VAULT_MAX_BATCH_ITEMS: usize = 10_000;
/// Vault's default `max_request_size` (32 MiB).
pub const VAULT_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Connection settings for Vault's transit engine (the `[vault]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// Base address, e.g. `http://127.0.0.1:8200` or `https://vault.example.com:8200`.
    pub address: String,
    /// Path the transit engine is mounted at (may contain `/`).
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace is trimmed).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Log in with AppRole instead of using a fixed token.
    #[serde(default)]
    pub approle: Option<AppRoleSettings>,
    /// Log in with a JWT (the `jwt` auth method, e.g. workload identity tokens).
    #[serde(default)]
    pub jwt: Option<JwtLoginSettings>,
    /// Log in with the pod's service account token (the `kubernetes` auth method).
    #[serde(default)]
    pub kubernetes: Option<JwtLoginSettings>,
    /// PEM bundle whose certificates are added to the trusted roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Timeout of every HTTP request (connect + response), e.g. `"10s"`.
    #[serde(default = "default_request_timeout", with = "humantime_serde_opt")]
    pub request_timeout: Duration,
    /// Retries after the first attempt for retryable failures.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First retry delay (before jitter); doubles each retry.
    #[serde(default = "default_initial_backoff", with = "humantime_serde_opt")]
    pub retry_initial_backoff: Duration,
    /// Upper bound of one retry delay (also caps `Retry-After`).
    #[serde(default = "default_max_backoff", with = "humantime_serde_opt")]
    pub retry_max_backoff: Duration,
    /// Most items per batch request (1..=10000).
    #[serde(default = "default_max_batch_items")]
    pub max_batch_items: usize,
    /// Most JSON strings (keys and values) in one request body: OpenBao's listener
    /// setting of the same name, 1000 by default, refuses larger bodies. With the
    /// default a request carries at most 499 items (249 with a context); raise it to
    /// what your server allows.
    #[serde(default = "default_max_request_json_strings")]
    pub max_request_json_strings: usize,
    /// Largest estimated JSON size of one batch request, in bytes (<= 32 MiB).
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// `run` checks at start (`sys/capabilities-self`) that the token may do what the
    /// pipeline needs, and stops naming what is missing (see `crate::access`).
    #[serde(default = "default_check_permissions")]
    pub check_permissions: bool,
}

fn default_check_permissions() -> bool {
    true
}

/// AppRole login settings (`[vault.approle]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleSettings {
    /// Mount path of the AppRole auth method (`auth/<mount>/login`).
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    #[serde(default)]
    pub role_id_env: Option<String>,
    #[serde(default)]
    pub role_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_id_env: Option<String>,
    #[serde(default)]
    pub secret_id_file: Option<PathBuf>,
}

/// A login that sends a role and a JWT read from a file (`[vault.jwt]` and
/// `[vault.kubernetes]`, whose defaults differ: see [`JwtKind`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtLoginSettings {
    /// Mount path of the auth method (`auth/<mount>/login`); default `jwt` or
    /// `kubernetes`.
    #[serde(default)]
    pub mount: Option<String>,
    /// The role to log in as.
    #[serde(default)]
    pub role: String,
    /// File holding the JWT, read again at every login because Kubernetes rotates
    /// projected tokens in place. Required for `[vault.jwt]`; `[vault.kubernetes]`
    /// defaults to the service account token.
    #[serde(default)]
    pub jwt_file: Option<PathBuf>,
}

/// Which of the two role-and-JWT logins a [`JwtLoginSettings`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtKind {
    Jwt,
    Kubernetes,
}

/// Where Kubernetes mounts a pod's service account token.
pub const KUBERNETES_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl JwtKind {
    /// The settings table, for messages: `vault.jwt` or `vault.kubernetes`.
    pub fn field(self) -> &'static str {
        match self {
            JwtKind::Jwt => "vault.jwt",
            JwtKind::Kubernetes => "vault.kubernetes",
        }
    }

    /// The auth method's name in Vault, and its usual mount path.
    pub fn method(self) -> &'static str {
        match self {
            JwtKind::Jwt => "jwt",
            JwtKind::Kubernetes => "kubernetes",
        }
    }
}

impl JwtLoginSettings {
    /// The mount path without surrounding slashes.
    pub fn mount_path(&self, kind: JwtKind) -> &str {
        self.mount
            .as_deref()
            .map_or(kind.method(), |m| m.trim_matches('/'))
    }

    /// The JWT file: the configured one, else Kubernetes' default.
    pub fn jwt_path(&self, kind: JwtKind) -> Option<PathBuf> {
        match (&self.jwt_file, kind) {
            (Some(p), _) => Some(p.clone()),
            (None, JwtKind::Kubernetes) => Some(PathBuf::from(KUBERNETES_TOKEN_PATH)),
            (None, JwtKind::Jwt) => None,
        }
    }

    fn validate(&self, kind: JwtKind) -> Result<(), String> {
        let field = kind.field();
        check_auth_mount(
            &format!("{field}.mount"),
            self.mount_path(kind),
            kind.method(),
        )?;
        let role = self.role.trim();
        if role.is_empty() || role != self.role || role.contains('/') {
            return Err(format!(
                "{field}.role: must name a role of the {} auth method, without '/' or surrounding spaces (e.g. role = \"kafka-transit\"); it is {:?}",
                kind.method(),
                self.role
            ));
        }
        match &self.jwt_file {
            Some(p) if p.as_os_str().is_empty() => Err(format!(
                "{field}.jwt_file is empty; set it to the path of the file holding the JWT"
            )),
            None if kind == JwtKind::Jwt => Err(format!(
                "{field}.jwt_file is not set; set it to the file holding the JWT (e.g. a projected service account token), never the JWT itself"
            )),
            _ => Ok(()),
        }
    }
}

fn default_mount() -> String {
    "transit".to_string()
}
fn default_approle_mount() -> String {
    "approle".to_string()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_retries() -> u32 {
    6
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_max_batch_items() -> usize {
    VAULT_MAX_BATCH_ITEMS
}
fn default_max_request_json_strings() -> usize {
    1000
}
fn default_max_batch_bytes() -> usize {
    16 * 1024 * 1024
}

impl VaultSettings {
    /// Settings with every default, reading the token from the environment variable
    /// `token_env_name`.
    pub fn for_token(address: impl Into<String>, token_env_name: impl Into<String>) -> Self {
        VaultSettings {
            address: address.into(),
            mount: default_mount(),
            namespace: None,
            token_env: Some(token_env_name.into()),
            token_file: None,
            approle: None,
            jwt: None,
            kubernetes: None,
            ca_cert: None,
            request_timeout: default_request_timeout(),
            max_retries: default_max_retries(),
            retry_initial_backoff: default_initial_backoff(),
            retry_max_backoff: default_max_backoff(),
            max_batch_items: default_max_batch_items(),
            max_request_json_strings: default_max_request_json_strings(),
            max_batch_bytes: default_max_batch_bytes(),
            check_permissions: default_check_permissions(),
        }
    }

    /// Checks the settings; the message names the field (`vault.<field>`) and says what
    /// to change.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_except_token_source()?;
        let sources = [
            self.token_env.is_some(),
            self.token_file.is_some(),
            self.approle.is_some(),
            self.jwt.is_some(),
            self.kubernetes.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            return Err(format!(
                "exactly one of vault.token_env, vault.token_file, [vault.approle], [vault.jwt] and [vault.kubernetes] must be set ({sources} are); \
                 e.g. token_env = \"VAULT_TOKEN\" (secrets are never written inline in the config)"
            ));
        }
        Ok(())
    }

    /// Everything `validate` checks except that exactly one token source is set (for
    /// `VaultClient::with_token`, which is handed its token).
    pub(crate) fn validate_except_token_source(&self) -> Result<(), String> {
        let address = self.address.trim();
        if address.is_empty() {
            return Err(
                "vault.address is empty; set it to Vault's URL, e.g. \"http://127.0.0.1:8200\""
                    .into(),
            );
        }
        match reqwest::Url::parse(address) {
            Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!(
                        "vault.address {address:?} has no host; use e.g. \"http://127.0.0.1:8200\""
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(format!(
                        "vault.address {address:?} must not contain a query or fragment; use only scheme, host and port"
                    ));
                }
            }
            Ok(url) => {
                return Err(format!(
                    "vault.address {address:?} uses scheme {:?}; use http:// or https://",
                    url.scheme()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "vault.address {address:?} is not a valid URL ({e}); use e.g. \"http://127.0.0.1:8200\""
                ))
            }
        }
        let mount = self.mount.trim_matches('/');
        if mount.is_empty() {
            return Err(
                "vault.mount is empty; set it to the transit engine's mount path, e.g. \"transit\""
                    .into(),
            );
        }
        if let Some(bad) = mount
            .split('/')
            .find(|seg| seg.is_empty() || !seg.chars().all(is_path_char))
        {
            return Err(format!(
                "vault.mount {:?} has an invalid path segment {bad:?}; use letters, digits, '-', '_', '.' separated by '/'",
                self.mount
            ));
        }
        if let Some(ns) = &self.namespace {
            let ns_trim = ns.trim_matches('/');
            if ns_trim.is_empty() {
                return Err("vault.namespace is empty; remove it or set it to a namespace path such as \"team-a\"".into());
            }
            if reqwest::header::HeaderValue::from_str(ns).is_err() {
                return Err(format!(
                    "vault.namespace {ns:?} contains characters not allowed in an HTTP header; use a plain namespace path"
                ));
            }
        }
        if let Some(name) = &self.token_env {
            check_env_name("vault.token_env", name)?;
        }
        if let Some(path) = &self.token_file {
            if path.as_os_str().is_empty() {
                return Err(
                    "vault.token_file is empty; set it to the path of a file holding the token"
                        .into(),
                );
            }
        }
        if let Some(ar) = &self.approle {
            ar.validate()?;
        }
        if let Some(j) = &self.jwt {
            j.validate(JwtKind::Jwt)?;
        }
        if let Some(k) = &self.kubernetes {
            k.validate(JwtKind::Kubernetes)?;
        }
        if let Some(path) = &self.ca_cert {
            if path.as_os_str().is_empty() {
                return Err(
                    "vault.ca_cert is empty; remove it or set it to a PEM bundle file".into(),
                );
            }
        }
        if self.request_timeout.is_zero() {
            return Err(
                "vault.request_timeout is 0; set it to a positive duration such as \"30s\"".into(),
            );
        }
        if self.max_retries > 100 {
            return Err(format!(
                "vault.max_retries is {}; use at most 100 (retries are also bounded by vault.retry_max_backoff)",
                self.max_retries
            ));
        }
        if self.retry_initial_backoff.is_zero() {
            return Err(
                "vault.retry_initial_backoff is 0; set it to a positive duration such as \"100ms\""
                    .into(),
            );
        }
        if self.retry_max_backoff < self.retry_initial_backoff {
            return Err(format!(
                "vault.retry_max_backoff ({}) is less than vault.retry_initial_backoff ({}); raise it",
                humantime::format_duration(self.retry_max_backoff),
                humantime::format_duration(self.retry_initial_backoff)
            ));
        }
        if self.max_batch_items == 0 || self.max_batch_items > VAULT_MAX_BATCH_ITEMS {
            return Err(format!(
                "vault.max_batch_items is {}; it must be between 1 and {VAULT_MAX_BATCH_ITEMS} (Vault's batch limit)",
                self.max_batch_items
            ));
        }
        if self.max_request_json_strings < 10 {
            return Err(format!(
                "vault.max_request_json_strings is {}; use at least 10 (OpenBao's default is 1000)",
                self.max_request_json_strings
            ));
        }
        if self.max_batch_bytes < 1024 || self.max_batch_bytes > VAULT_MAX_REQUEST_BYTES {
            return Err(format!(
                "vault.max_batch_bytes is {}; it must be between 1024 and {VAULT_MAX_REQUEST_BYTES} (Vault's 32 MiB request limit)",
                self.max_batch_bytes
            ));
        }
        Ok(())
    }

    /// The mount path without leading or trailing slashes.
    pub(crate) fn mount_path(&self) -> &str {
        self.mount.trim_matches('/')
    }
}

impl AppRoleSettings {
    fn validate(&self) -> Result<(), String> {
        check_auth_mount(
            "vault.approle.mount",
            self.mount.trim_matches('/'),
            "approle",
        )?;
        match (&self.role_id_env, &self.role_id_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("exactly one of vault.approle.role_id_env and vault.approle.role_id_file must be set".into())
            }
            (Some(name), None) => check_env_name("vault.approle.role_id_env", name)?,
            (None, Some(_)) => {}
        }
        match (&self.secret_id_env, &self.secret_id_file) {
            (Some(_), Some(_)) | (None, None) => Err(
                "exactly one of vault.approle.secret_id_env and vault.approle.secret_id_file must be set".into(),
            ),
            (Some(name), None) => check_env_name("vault.approle.secret_id_env", name),
            (None, Some(_)) => Ok(()),
        }
    }
}

fn check_auth_mount(field: &str, mount: &str, example: &str) -> Result<(), String> {
    if mount.is_empty()
        || !mount
            .split('/')
            .all(|s| !s.is_empty() && s.chars().all(is_path_char))
    {
        return Err(format!(
            "{field} {mount:?} is not a valid auth mount path; use e.g. \"{example}\""
        ));
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn check_env_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!(
            "{field} {name:?} is not a valid environment variable name; give the variable's NAME (e.g. \"VAULT_TOKEN\"), never the secret itself"
        ));
    }
    Ok(())
}

/// Durations as humantime strings (`"10s"`, `"250ms"`), or plain integers meaning seconds.
mod humantime_serde_opt {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                humantime::parse_duration(v.trim()).map_err(|e| {
                    E::custom(format!("invalid duration {v:?}: {e} (use e.g. \"10s\")"))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> VaultSettings {
        VaultSettings::for_token("http://127.0.0.1:8200", "VAULT_TOKEN")
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
        let s = base();
        assert_eq!(s.mount, "transit");
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.max_retries, 6);
        assert_eq!(s.max_batch_items, 10_000);
        assert_eq!(s.max_batch_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn deserializes_with_defaults_and_humantime() {
        let s: VaultSettings = serde_json::from_value(serde_json::json!({
            "address": "https://vault:8200",
            "token_file": "/run/secrets/token",
            "request_timeout": "10s",
            "retry_initial_backoff": "250ms",
            "mount": "team/transit",
        }))
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(s.retry_initial_backoff, Duration::from_millis(250));
        assert_eq!(s.retry_max_backoff, Duration::from_secs(10));
        assert_eq!(s.mount_path(), "team/transit");
    }

    #[test]
    fn unknown_fields_rejected() {
        let r: Result<VaultSettings, _> = serde_json::from_value(serde_json::json!({
            "address": "http://x:1", "token_env": "T", "token": "s.inline"
        }));
        assert!(r.is_err());
    }

    type Mutation = Box<dyn Fn(&mut VaultSettings)>;

    /// Each change to valid settings is refused with a message containing the text.
    fn assert_each_names_its_field(cases: Vec<(Mutation, &str)>) {
        for (mutate, field) in cases {
            let mut s = base();
            mutate(&mut s);
            let err = s.validate().expect_err(field);
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn validation_messages_name_the_field() {
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.address = "ftp://x".into()), "vault.address"),
            (Box::new(|s| s.address = "".into()), "vault.address"),
            (Box::new(|s| s.mount = "/".into()), "vault.mount"),
            (Box::new(|s| s.mount = "a//b".into()), "vault.mount"),
            (
                Box::new(|s| s.namespace = Some("".into())),
                "vault.namespace",
            ),
            (Box::new(|s| s.token_env = None), "vault.token_env"),
            (
                Box::new(|s| s.token_file = Some("/tmp/t".into())),
                "vault.token_file",
            ),
            (
                Box::new(|s| s.token_env = Some("".into())),
                "vault.token_env",
            ),
            (
                Box::new(|s| s.request_timeout = Duration::ZERO),
                "vault.request_timeout",
            ),
            (Box::new(|s| s.max_batch_items = 0), "vault.max_batch_items"),
            (
                Box::new(|s| s.max_batch_items = 10_001),
                "vault.max_batch_items",
            ),
            (
                Box::new(|s| s.max_batch_bytes = 33 * 1024 * 1024),
                "vault.max_batch_bytes",
            ),
            (
                Box::new(|s| s.retry_max_backoff = Duration::from_millis(1)),
                "vault.retry_max_backoff",
            ),
            (
                Box::new(|s| {
                    s.token_env = None;
                    s.approle = Some(AppRoleSettings {
                        mount: "approle".into(),
                        role_id_env: Some("R".into()),
                        role_id_file: None,
                        secret_id_env: None,
                        secret_id_file: None,
                    })
                }),
                "vault.approle.secret_id",
            ),
        ];
        assert_each_names_its_field(cases);
    }

    fn jwt_login(jwt_file: Option<&str>) -> JwtLoginSettings {
        JwtLoginSettings {
            mount: None,
            role: "kafka-transit".into(),
            jwt_file: jwt_file.map(PathBuf::from),
        }
    }

    #[test]
    fn jwt_and_kubernetes_tables() {
        let s: VaultSettings =
            toml::from_str("address = \"http://v:8200\"\n[kubernetes]\nrole = \"kt\"\n").unwrap();
        s.validate().unwrap();
        let k = s.kubernetes.as_ref().unwrap();
        assert_eq!(k.mount_path(JwtKind::Kubernetes), "kubernetes");
        assert_eq!(
            k.jwt_path(JwtKind::Kubernetes).unwrap(),
            PathBuf::from(KUBERNETES_TOKEN_PATH)
        );
        let s: VaultSettings = toml::from_str(
            "address = \"http://v:8200\"\n[jwt]\nrole = \"kt\"\nmount = \"/gitlab/jwt/\"\njwt_file = \"/run/id/token\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        let j = s.jwt.as_ref().unwrap();
        assert_eq!(j.mount_path(JwtKind::Jwt), "gitlab/jwt");
        assert_eq!(
            j.jwt_path(JwtKind::Jwt).unwrap(),
            PathBuf::from("/run/id/token")
        );
        // The JWT itself is never written in the file.
        let r: Result<VaultSettings, _> =
            toml::from_str("address = \"http://v:8200\"\n[jwt]\nrole = \"kt\"\njwt = \"eyJ\"\n");
        assert!(r.is_err());
    }

    #[test]
    fn jwt_and_kubernetes_validation_names_the_field() {
        let only = |f: fn(&mut VaultSettings)| -> Mutation {
            Box::new(move |s: &mut VaultSettings| {
                s.token_env = None;
                f(s)
            })
        };
        let cases: Vec<(Mutation, &str)> = vec![
            (only(|s| s.jwt = Some(jwt_login(None))), "vault.jwt.jwt_file"),
            (
                only(|s| s.jwt = Some(jwt_login(Some("")))),
                "vault.jwt.jwt_file",
            ),
            (
                only(|s| {
                    let mut j = jwt_login(Some("/t"));
                    j.role = String::new();
                    s.jwt = Some(j)
                }),
                "vault.jwt.role: must name a role",
            ),
            (
                only(|s| {
                    let mut j = jwt_login(None);
                    j.role = "a/b".into();
                    s.kubernetes = Some(j)
                }),
                "vault.kubernetes.role",
            ),
            (
                only(|s| {
                    let mut j = jwt_login(None);
                    j.mount = Some("a//b".into());
                    s.kubernetes = Some(j)
                }),
                "vault.kubernetes.mount",
            ),
            (
                only(|s| {
                    s.jwt = Some(jwt_login(Some("/t")));
                    s.kubernetes = Some(jwt_login(None));
                }),
                "exactly one of vault.token_env, vault.token_file, [vault.approle], [vault.jwt] and [vault.kubernetes]",
            ),
            (
                Box::new(|s| s.kubernetes = Some(jwt_login(None))),
                "(2 are)",
            ),
        ];
        assert_each_names_its_field(cases);
    }

    #[test]
    fn debug_has_no_secret_values() {
        let var = "KT_TEST_SETTINGS_DEBUG_TOKEN";
        std::env::set_var(var, "hvs.super-secret-token");
        let s = VaultSettings::for_token("http://127.0.0.1:8200", var);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("super-secret"));
        assert!(dbg.contains(var));
    }
}
