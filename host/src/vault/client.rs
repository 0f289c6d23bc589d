//! The top layer: [`VaultClient`], the transit API (batch and single-item operations,
//! data keys), connecting, and the client's counters. It composes the layers below and
//! holds no HTTP or token logic of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use zeroize::Zeroizing;

use super::batch::{DECRYPT, ENCRYPT, HMAC, REWRAP};
use super::credentials::{check_credentials, AuthStats, Credentials, RenewalTask, TokenSource};
use super::error::{ItemError, VaultError};
use super::metrics::VaultMetrics;
use super::settings::VaultSettings;
use super::token::{DataKey, VaultToken};
use super::transport::{parse_json, Secrecy, Target, Transport};
use super::wire::{self, *};

/// A client of one transit mount. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct VaultClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.inner.transport.base)
            .field("mount", &self.inner.transport.mount)
            .field("token", &"<redacted>")
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) transport: Arc<Transport>,
    /// The transport's instruments (clones share them), also counting data keys.
    pub(crate) metrics: VaultMetrics,
    credentials: Arc<Credentials>,
    /// Aborted when the last clone of the client is dropped.
    renewal: Option<RenewalTask>,
}

impl VaultClient {
    /// Reads the token (or logs in with AppRole, a JWT or Kubernetes and starts renewing
    /// the token in the background), then checks the token with `lookup-self`.
    pub async fn connect(settings: &VaultSettings) -> Result<VaultClient, VaultError> {
        settings
            .validate()
            .map_err(|detail| VaultError::Auth { detail })?;
        let credentials = Arc::new(Credentials::new(TokenSource::from_settings(settings)));
        let transport = Arc::new(Transport::new(settings, credentials.initial_token()?)?);
        let renewal = credentials.establish(&transport).await?;
        Ok(Self::assemble(transport, credentials, renewal))
    }

    /// Everything `connect` checks before it talks to Vault: the settings, that the
    /// token (or the AppRole IDs, or the JWT) can be read from the variable or file they name, and
    /// that the CA bundle loads. Reads each secret and drops it at once.
    pub fn preflight(settings: &VaultSettings) -> Result<(), VaultError> {
        settings
            .validate()
            .map_err(|detail| VaultError::Auth { detail })?;
        check_credentials(settings)?;
        Transport::new(settings, VaultToken::new(String::new())).map(drop)
    }

    /// A client using `token` as is: no I/O, no renewal.
    pub fn with_token(
        settings: &VaultSettings,
        token: VaultToken,
    ) -> Result<VaultClient, VaultError> {
        let transport = Arc::new(Transport::new(settings, token)?);
        let credentials = Arc::new(Credentials::new(TokenSource::Fixed));
        Ok(Self::assemble(transport, credentials, None))
    }

    fn assemble(
        transport: Arc<Transport>,
        credentials: Arc<Credentials>,
        renewal: Option<RenewalTask>,
    ) -> VaultClient {
        VaultClient {
            inner: Arc::new(Inner {
                metrics: transport.metrics.clone(),
                transport,
                credentials,
                renewal,
            }),
        }
    }

    /// The transit mount path (without surrounding slashes).
    pub fn mount(&self) -> &str {
        &self.inner.transport.mount
    }

    /// HTTP requests actually sent, retries and redirects included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.transport.requests_sent()
    }

    /// Adds the client's request counts and latencies to a registry prefixed
    /// `kafka_transit`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Whether the client renews (or re-obtains) its token in the background.
    pub fn renews_token(&self) -> bool {
        self.inner.renewal.is_some()
    }

    /// `sys/capabilities-self`: the token's capabilities on each of `paths` (relative to
    /// the namespace), as Vault names them (`update`, `read`, `root`, `deny`, ...).
    pub async fn capabilities_self(
        &self,
        paths: &[&str],
    ) -> Result<BTreeMap<String, Vec<String>>, VaultError> {
        let path = "sys/capabilities-self";
        let target = Target {
            path,
            key: None,
            auth: true,
            secrecy: Secrecy::Public,
        };
        let body =
            serde_json::to_vec(&serde_json::json!({ "paths": paths })).expect("serializing paths");
        let transport = &self.inner.transport;
        let raw = transport
            .send(reqwest::Method::POST, target, Some(body.into()))
            .await?;
        if !raw.status.is_success() {
            return Err(transport.error_for(&raw, target));
        }
        let answer: wire::Envelope<BTreeMap<String, serde_json::Value>> =
            parse_json(&raw.body, path)?;
        let data = answer.data.ok_or_else(|| VaultError::Protocol {
            detail: format!("{path} response has no data"),
        })?;
        Ok(paths
            .iter()
            .map(|p| {
                let granted = data
                    .get(*p)
                    .and_then(serde_json::Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                (p.to_string(), granted)
            })
            .collect())
    }

    /// Logins and renewals done so far.
    pub fn auth_stats(&self) -> AuthStats {
        self.inner.credentials.stats()
    }

    /// Encrypts many plaintexts; per-item failures are returned per item, in input order.
    pub async fn encrypt_batch(
        &self,
        key: &str,
        items: &[EncryptInput<'_>],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        ENCRYPT.run(&self.inner.transport, key, items).await
    }

    /// Decrypts many ciphertexts; per-item failures are returned per item, in input order.
    ///
    /// The plaintexts are read, parsed and decoded in wiped memory; each is handed over
    /// as the very buffer it was decoded into, so a caller that holds key material
    /// (envelope data keys) wraps it in `Zeroizing` without a copy left behind.
    pub async fn decrypt_batch(
        &self,
        key: &str,
        items: &[DecryptInput<'_>],
    ) -> Result<Vec<Result<Vec<u8>, ItemError>>, VaultError> {
        let results = DECRYPT.run(&self.inner.transport, key, items).await?;
        Ok(results.into_iter().map(|r| r.map(hand_over)).collect())
    }

    /// Re-encrypts ciphertexts with the latest key version.
    pub async fn rewrap_batch(
        &self,
        key: &str,
        items: &[DecryptInput<'_>],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        REWRAP.run(&self.inner.transport, key, items).await
    }

    /// HMAC-SHA256 of many inputs (`vault:v<n>:<base64>` per item).
    pub async fn hmac_batch(
        &self,
        key: &str,
        inputs: &[&[u8]],
    ) -> Result<Vec<Result<String, ItemError>>, VaultError> {
        HMAC.run(&self.inner.transport, key, inputs).await
    }

    /// Encrypts one plaintext with a single (non-batch) request.
    pub async fn encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<String, VaultError> {
        let transport = &self.inner.transport;
        let path = transport.op_path("encrypt", key)?;
        let item = EncryptInput::new(plaintext).with_context(context);
        let body = wire::to_json(&item, encrypt_item_len(&item));
        let d: CiphertextData = transport
            .write_data(&path, key, body, Secrecy::Public)
            .await?;
        Ok(d.ciphertext)
    }

    /// Decrypts one ciphertext with a single (non-batch) request (in wiped memory, as
    /// [`VaultClient::decrypt_batch`]).
    pub async fn decrypt(
        &self,
        key: &str,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>, VaultError> {
        let transport = &self.inner.transport;
        let path = transport.op_path("decrypt", key)?;
        let item = DecryptInput::new(ciphertext).with_context(context);
        let body = wire::to_json(&item, decrypt_item_len(&item));
        let d: PlaintextData = transport
            .write_data(&path, key, body, Secrecy::Secret)
            .await?;
        Ok(d.plaintext.map(|p| hand_over(p.0)).unwrap_or_default())
    }

    /// A fresh 256-bit data key: its plaintext and its ciphertext under `key`. The key
    /// is never outside wiped memory on this side of hyper.
    pub async fn generate_data_key(
        &self,
        key: &str,
        context: Option<&[u8]>,
    ) -> Result<DataKey, VaultError> {
        #[derive(Serialize)]
        struct Body<'a> {
            bits: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            context: Option<B64<'a>>,
        }
        let transport = &self.inner.transport;
        let path = transport.op_path("datakey/plaintext", key)?;
        let body = wire::to_json(
            &Body {
                bits: 256,
                context: context.map(B64),
            },
            64,
        );
        let d: DataKeyData = transport
            .write_data(&path, key, body, Secrecy::Secret)
            .await?;
        let plaintext = d
            .plaintext
            .ok_or_else(|| VaultError::Protocol {
                detail: format!("datakey response for key `{key}` has no plaintext"),
            })?
            .0;
        if plaintext.len() != 32 {
            return Err(VaultError::Protocol {
                detail: format!(
                    "datakey for key `{key}` is {} bytes, expected 32",
                    plaintext.len()
                ),
            });
        }
        Ok(DataKey {
            plaintext,
            ciphertext: d.ciphertext,
            key_version: d.key_version,
        })
    }
}

/// Moves a decoded plaintext out of its `Zeroizing` wrapper without copying it: the
/// caller gets the buffer itself, and the emptied wrapper has nothing left to wipe.
fn hand_over(mut plaintext: Zeroizing<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *plaintext)
}

/// Compile-time check: the client and its futures can move between threads.
#[allow(dead_code)]
fn _assert_send_sync(c: &VaultClient) {
    fn send<T: Send>(_: T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<VaultClient>();
    send(c.encrypt_batch("k", &[]));
    send(c.decrypt_batch("k", &[]));
    send(c.rewrap_batch("k", &[]));
    send(c.hmac_batch("k", &[]));
    send(c.encrypt("k", b"", None));
    send(c.decrypt("k", "", None));
    send(c.generate_data_key("k", None));
    send(VaultClient::connect(&c.inner.transport.settings));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> VaultClient {
        let mut s = VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        s.mount = "/team/transit/".into();
        VaultClient::with_token(&s, VaultToken::new("hvs.secret-token-value".into())).unwrap()
    }

    #[test]
    fn client_debug_hides_token() {
        let c = client();
        let s = format!("{c:?}");
        assert!(!s.contains("secret-token-value"));
        assert!(s.contains("team/transit"));
        assert_eq!(c.mount(), "team/transit");
    }

    /// The buffer a plaintext was decoded into is the one the caller gets.
    #[test]
    fn handing_over_a_plaintext_moves_its_buffer() {
        let decoded = Zeroizing::new(vec![7u8; 32]);
        let at = decoded.as_ptr();
        let out = hand_over(decoded);
        assert_eq!(out.as_ptr(), at);
        assert_eq!(out, vec![7u8; 32]);
    }

    /// The client's and the transport's instruments are the same ones.
    #[test]
    fn one_set_of_metrics() {
        let c = client();
        c.inner.metrics.data_key_minted();
        let mut registry = prometheus_client::registry::Registry::with_prefix("kafka_transit");
        c.inner.transport.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "kafka_transit_envelope_data_keys_minted_total 1"),
            "{text}"
        );
    }
}
