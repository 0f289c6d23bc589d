//! The `[schema_registry]` table of `pipeline.toml`: where the Confluent-compatible
//! Schema Registry is, and how to log in. As in `[vault]`, secrets are never written
//! inline: the password and the bearer token are read from an environment variable or
//! a file whose *name* is configured here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Connection settings for a Schema Registry (the `[schema_registry]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Base URL of the Confluent API: `http://registry:8081` for Confluent's, or
    /// `http://apicurio:8080/apis/ccompat/v7` for Apicurio Registry's compatible API.
    pub url: String,
    /// HTTP basic authentication: the user name (an API key on Confluent Cloud).
    #[serde(default)]
    pub username: Option<String>,
    /// The basic-auth password (API secret), from this environment variable...
    #[serde(default)]
    pub password_env: Option<String>,
    /// ...or this file (surrounding whitespace trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A bearer token (OAuth), from this environment variable...
    #[serde(default)]
    pub token_env: Option<String>,
    /// ...or this file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM bundle whose certificates are added to the trusted roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Timeout of every request (connect + response).
    #[serde(
        default = "default_request_timeout",
        with = "crate::config::duration_text"
    )]
    pub request_timeout: Duration,
    /// Most schemas kept in memory. A schema id never changes its schema, so a cached
    /// schema is never stale; the bound is only about memory.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_cache_capacity() -> usize {
    1000
}

impl RegistrySettings {
    pub fn for_url(url: impl Into<String>) -> Self {
        RegistrySettings {
            url: url.into(),
            username: None,
            password_env: None,
            password_file: None,
            token_env: None,
            token_file: None,
            ca_cert: None,
            request_timeout: default_request_timeout(),
            cache_capacity: default_cache_capacity(),
        }
    }

    /// What is wrong, as `(field, what to change)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url = reqwest::Url::parse(self.url.trim()).map_err(|e| {
            (
                "schema_registry.url",
                format!(
                    "{:?} is not a URL ({e}); write e.g. \"http://registry:8081\" or, for \
                     Apicurio Registry, \"http://apicurio:8080/apis/ccompat/v7\"",
                    self.url
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "schema_registry.url",
                format!("must be http:// or https://, not {}://", url.scheme()),
            ));
        }
        let password = self.password_env.is_some() || self.password_file.is_some();
        let token = self.token_env.is_some() || self.token_file.is_some();
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err((
                "schema_registry.password_env",
                "set password_env or password_file, not both".into(),
            ));
        }
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err((
                "schema_registry.token_env",
                "set token_env or token_file, not both".into(),
            ));
        }
        if password != self.username.is_some() {
            return Err((
                "schema_registry.username",
                "basic authentication needs both username and password_env (or \
                 password_file); set both, or neither"
                    .into(),
            ));
        }
        if password && token {
            return Err((
                "schema_registry.token_env",
                "choose basic authentication (username and password) or a bearer token, \
                 not both"
                    .into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err((
                "schema_registry.request_timeout",
                "must be positive, e.g. \"10s\"".into(),
            ));
        }
        if self.cache_capacity == 0 {
            return Err((
                "schema_registry.cache_capacity",
                "must be at least 1 (schemas kept in memory)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let mut settings = RegistrySettings::for_url("registry:8081");
        assert_eq!(settings.validate().unwrap_err().0, "schema_registry.url");
        settings.url = "http://registry:8081".into();
        settings.validate().unwrap();
        settings.username = Some("key".into());
        assert_eq!(
            settings.validate().unwrap_err().0,
            "schema_registry.username"
        );
        settings.password_env = Some("SR_SECRET".into());
        settings.validate().unwrap();
        settings.token_env = Some("SR_TOKEN".into());
        assert_eq!(
            settings.validate().unwrap_err().0,
            "schema_registry.token_env"
        );
        settings.token_env = None;
        settings.cache_capacity = 0;
        assert_eq!(
            settings.validate().unwrap_err().0,
            "schema_registry.cache_capacity"
        );
    }
}
