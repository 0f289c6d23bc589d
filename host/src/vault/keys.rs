//! Transit key administration that `kafka-transit forget` needs: whether a key exists
//! (and its versions), and deleting it (docs/forgetting.md). Pipelines never call these:
//! their tokens need no `read` or `delete` on `transit/keys`.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use super::client::VaultClient;
use super::error::VaultError;
use super::transport::{parse_json, Secrecy, Target};
use super::wire;

impl VaultClient {
    /// `GET <mount>/keys/<name>`: the key's versions, or `None` when Vault has no such
    /// key.
    pub async fn key_versions(&self, name: &str) -> Result<Option<Vec<u64>>, VaultError> {
        #[derive(serde::Deserialize)]
        struct Key {
            #[serde(default)]
            keys: BTreeMap<String, serde_json::Value>,
        }
        let transport = &self.inner.transport;
        let path = transport.op_path("keys", name)?;
        let target = Target {
            path: &path,
            key: Some(name),
            auth: true,
            secrecy: Secrecy::Public,
        };
        let raw = transport.send(Method::GET, target, None).await?;
        if raw.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !raw.status.is_success() {
            return Err(transport.error_for(&raw, target));
        }
        let answer: wire::Envelope<Key> = parse_json(&raw.body, &path)?;
        let data = answer.data.ok_or_else(|| VaultError::Protocol {
            detail: format!("{path} response has no data"),
        })?;
        Ok(Some(
            data.keys
                .keys()
                .filter_map(|version| version.parse().ok())
                .collect(),
        ))
    }

    /// Deletes transit key `name` and every version of it. Vault refuses to delete a key
    /// until its `deletion_allowed` is set, so this sets it first.
    pub async fn delete_key(&self, name: &str) -> Result<(), VaultError> {
        let transport = &self.inner.transport;
        let key_path = transport.op_path("keys", name)?;
        let config_path = format!("{key_path}/config");
        for (method, path, body) in [
            (
                Method::POST,
                &config_path,
                Some(serde_json::json!({"deletion_allowed": true})),
            ),
            (Method::DELETE, &key_path, None),
        ] {
            let target = Target {
                path,
                key: Some(name),
                auth: true,
                secrecy: Secrecy::Public,
            };
            let body = body.map(|body| body.to_string().into());
            let raw = transport.send(method, target, body).await?;
            if !raw.status.is_success() {
                return Err(transport.error_for(&raw, target));
            }
        }
        Ok(())
    }
}
