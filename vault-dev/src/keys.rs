//! Named transit keys ("policies" in Vault's code): their versions, settings and
//! the symmetric crypto done with them.
//!
//! Formats follow Vault's `keysutil` so that ciphertexts are interchangeable in
//! shape: payload = nonce(12) || ciphertext || tag(16); derived keys use
//! HKDF-SHA256(raw key, no salt, info = context); convergent keys (scheme version 3)
//! read 32 extra HKDF bytes as an HMAC key and take the nonce from
//! HMAC-SHA256(that key, plaintext).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Sha224, Sha256, Sha384, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::ciphertext;
use crate::gobase64;

const NONCE_LEN: usize = 12;
/// What `GET keys/<name>` reports for a convergent key: Vault keeps the scheme
/// version (3) per key version and sets the policy-wide value to -1.
const POLICY_CONVERGENT_VERSION: i32 = -1;

/// Vault's text for a derived key used without a context.
pub const MISSING_CONTEXT: &str = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";

/// An error from a key operation: `User` ones become 400 (or a batch item's
/// `error`), `Internal` ones a 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    User(String),
    #[error("{0}")]
    Internal(String),
}

fn user(msg: impl Into<String>) -> KeyError {
    KeyError::User(msg.into())
}

/// Decode `associated_data`. Vault decodes it late (after the key checks) and
/// reports a failure as an internal error.
fn decode_aad(text: &str) -> Result<Vec<u8>, KeyError> {
    gobase64::decode(text).map_err(|e| {
        KeyError::Internal(format!(
            "unable to get associated_data/additional_data from factory[0]: {e}"
        ))
    })
}

/// The symmetric key types vault-dev implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[serde(rename = "aes128-gcm96")]
    Aes128Gcm96,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256Gcm96 => "aes256-gcm96",
            Self::Aes128Gcm96 => "aes128-gcm96",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Length of the raw (and derived) encryption key.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm96 => 16,
            _ => 32,
        }
    }
}

/// HMAC algorithms accepted by `hmac/<name>[/<algorithm>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HmacAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha2-224" => Some(Self::Sha224),
            "sha2-256" => Some(Self::Sha256),
            "sha2-384" => Some(Self::Sha384),
            "sha2-512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

fn hmac_bytes(alg: HmacAlgorithm, key: &[u8], input: &[u8]) -> Vec<u8> {
    // new_from_slice never fails for HMAC (any key length is valid).
    macro_rules! mac {
        ($h:ty) => {{
            let mut m =
                <Hmac<$h> as Mac>::new_from_slice(key).expect("hmac accepts any key length");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        HmacAlgorithm::Sha224 => mac!(Sha224),
        HmacAlgorithm::Sha256 => mac!(Sha256),
        HmacAlgorithm::Sha384 => mac!(Sha384),
        HmacAlgorithm::Sha512 => mac!(Sha512),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod b64_bytes {
    //! Key bytes as base64 in the JSON state file.
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::gobase64::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        crate::gobase64::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// One version of a key: random key bytes, an independent random HMAC key, and
/// the creation time. Key material is wiped when dropped.
#[derive(Serialize, Deserialize)]
pub struct KeyVersion {
    #[serde(with = "b64_bytes")]
    key: Vec<u8>,
    #[serde(with = "b64_bytes")]
    hmac_key: Vec<u8>,
    created_ms: i64,
}

impl Drop for KeyVersion {
    fn drop(&mut self) {
        self.key.zeroize();
        self.hmac_key.zeroize();
    }
}

impl KeyVersion {
    fn generate(key_type: KeyType) -> Self {
        let mut key = vec![0u8; key_type.key_len()];
        let mut hmac_key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        rand::rngs::OsRng.fill_bytes(&mut hmac_key);
        Self {
            key,
            hmac_key,
            created_ms: now_ms(),
        }
    }
}

/// Settings accepted when a key is created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub key_type: KeyType,
    pub derived: bool,
    pub convergent: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub auto_rotate_period_secs: u64,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            key_type: KeyType::Aes256Gcm96,
            derived: false,
            convergent: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period_secs: 0,
        }
    }
}

/// A named key with all its versions.
#[derive(Serialize, Deserialize)]
pub struct KeyPolicy {
    pub name: String,
    pub key_type: KeyType,
    pub derived: bool,
    pub convergent_encryption: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub deletion_allowed: bool,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub latest_version: u32,
    pub auto_rotate_period_secs: u64,
    versions: BTreeMap<u32, KeyVersion>,
}

/// The AEAD for one working key.
pub enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    fn new(key_type: KeyType, key: &[u8]) -> Result<Self, KeyError> {
        let bad = |_| KeyError::Internal("invalid key length".into());
        Ok(match key_type {
            KeyType::Aes128Gcm96 => {
                Self::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?))
            }
            KeyType::Aes256Gcm96 => {
                Self::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?))
            }
            KeyType::ChaCha20Poly1305 => Self::ChaCha(Box::new(
                ChaCha20Poly1305::new_from_slice(key).map_err(bad)?,
            )),
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let payload = Payload { msg, aad };
        let nonce = aes_gcm::Nonce::from_slice(nonce);
        let sealed = match self {
            Self::Aes128(c) => c.encrypt(nonce, payload),
            Self::Aes256(c) => c.encrypt(nonce, payload),
            Self::ChaCha(c) => c.encrypt(nonce, payload),
        };
        sealed.map_err(|_| KeyError::Internal("encryption failed".into()))
    }

    fn open(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let payload = Payload { msg, aad };
        let nonce = aes_gcm::Nonce::from_slice(nonce);
        let opened = match self {
            Self::Aes128(c) => c.decrypt(nonce, payload),
            Self::Aes256(c) => c.decrypt(nonce, payload),
            Self::ChaCha(c) => c.decrypt(nonce, payload),
        };
        // Go's crypto/cipher error text, which Vault passes through.
        opened.map_err(|_| user("cipher: message authentication failed"))
    }
}

/// Ciphers for non-derived keys, built once per version and reused across the
/// items of one batch (key schedule setup is not free).
#[derive(Default)]
pub struct CipherCache {
    ciphers: HashMap<u32, Cipher>,
}

/// HKDF-SHA256 with no salt and `info = context`, `len` bytes.
pub fn derive(raw_key: &[u8], context: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, raw_key);
    let mut out = Zeroizing::new(vec![0u8; len]);
    hk.expand(context, &mut out)
        .map_err(|_| KeyError::Internal("unable to read enough derived bytes".into()))?;
    Ok(out)
}

impl KeyPolicy {
    /// A new key with version 1.
    pub fn new(name: &str, opts: &CreateOptions) -> Self {
        let mut policy = Self {
            name: name.to_string(),
            key_type: opts.key_type,
            derived: opts.derived,
            convergent_encryption: opts.convergent,
            exportable: opts.exportable,
            allow_plaintext_backup: opts.allow_plaintext_backup,
            deletion_allowed: false,
            min_decryption_version: 1,
            min_encryption_version: 0,
            latest_version: 0,
            auto_rotate_period_secs: opts.auto_rotate_period_secs,
            versions: BTreeMap::new(),
        };
        policy.rotate();
        policy
    }

    /// Add a new latest version.
    pub fn rotate(&mut self) {
        self.latest_version += 1;
        self.versions
            .insert(self.latest_version, KeyVersion::generate(self.key_type));
    }

    /// Creation time (ms) of the latest version, for auto-rotation.
    pub fn latest_created_ms(&self) -> i64 {
        self.versions
            .get(&self.latest_version)
            .map(|v| v.created_ms)
            .unwrap_or(0)
    }

    /// A usable version. Like Vault, versions below `min_decryption_version` are
    /// archived: they cannot be used, exported or listed until the minimum is
    /// lowered again.
    fn version(&self, ver: u32) -> Result<&KeyVersion, KeyError> {
        self.versions
            .get(&ver)
            .filter(|_| ver >= self.min_decryption_version)
            .ok_or_else(|| user("no such key version"))
    }

    /// The versions that are not archived.
    fn live_versions(&self) -> impl Iterator<Item = (&u32, &KeyVersion)> {
        self.versions
            .iter()
            .filter(|(v, _)| **v >= self.min_decryption_version)
    }

    /// The key to encrypt/decrypt with: the raw key, or for derived keys HKDF output
    /// of `key_len + extra` bytes.
    fn working_key(
        &self,
        ver: u32,
        context: &[u8],
        extra: usize,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if self.derived && context.is_empty() {
            return Err(user(MISSING_CONTEXT));
        }
        let entry = self.version(ver)?;
        if !self.derived {
            return Ok(Zeroizing::new(entry.key.clone()));
        }
        derive(&entry.key, context, self.key_type.key_len() + extra)
    }

    fn with_cipher<T>(
        &self,
        ver: u32,
        context: &[u8],
        cache: &mut CipherCache,
        f: impl FnOnce(&Cipher) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        if self.derived {
            let key = self.working_key(ver, context, 0)?;
            return f(&Cipher::new(self.key_type, &key)?);
        }
        let entry = self.version(ver)?;
        let cipher = match cache.ciphers.entry(ver) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Cipher::new(self.key_type, &entry.key)?)
            }
        };
        f(cipher)
    }

    /// Resolve a requested encryption version (0 = latest) with Vault's checks.
    pub fn encryption_version(&self, requested: i64) -> Result<u32, KeyError> {
        match requested {
            0 => Ok(self.latest_version),
            v if v < 0 => Err(user("requested version for encryption is negative")),
            v if v > i64::from(self.latest_version) => Err(user(
                "requested version for encryption is higher than the latest key version",
            )),
            v if v < i64::from(self.min_encryption_version) => Err(user(
                "requested version for encryption is less than the minimum encryption key version",
            )),
            v => Ok(v as u32),
        }
    }

    /// Encrypt; returns the ciphertext text and the version used. `aad` is the
    /// base64 `associated_data` (empty for none).
    pub fn encrypt(
        &self,
        requested_version: i64,
        context: &[u8],
        plaintext: &[u8],
        aad: &str,
        cache: &mut CipherCache,
    ) -> Result<(String, u32), KeyError> {
        let ver = self.encryption_version(requested_version)?;
        let mut nonce = [0u8; NONCE_LEN];
        let sealed = if self.convergent_encryption {
            // Convergent v3: one HKDF read gives the encryption key then the nonce key.
            let material = self.working_key(ver, context, 32)?;
            let aad = decode_aad(aad)?;
            let (enc_key, nonce_key) = material.split_at(self.key_type.key_len());
            let mac = hmac_bytes(HmacAlgorithm::Sha256, nonce_key, plaintext);
            nonce.copy_from_slice(&mac[..NONCE_LEN]);
            Cipher::new(self.key_type, enc_key)?.seal(&nonce, plaintext, &aad)?
        } else {
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            self.with_cipher(ver, context, cache, |c| {
                c.seal(&nonce, plaintext, &decode_aad(aad)?)
            })?
        };
        let mut payload = Vec::with_capacity(NONCE_LEN + sealed.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        Ok((ciphertext::format(ver, &payload), ver))
    }

    /// Decrypt a `vault:vN:...` ciphertext, with Vault's checks in Vault's order.
    /// `aad` is the base64 `associated_data` (empty for none).
    pub fn decrypt(
        &self,
        text: &str,
        context: &[u8],
        aad: &str,
        cache: &mut CipherCache,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let parsed = ciphertext::parse(text).map_err(|e| user(e.to_string()))?;
        // Vault's first implementation numbered versions from 0, so 0 means 1.
        let ver = if parsed.version == 0 {
            1
        } else {
            parsed.version
        };
        if ver > i64::from(self.latest_version) {
            return Err(user("invalid ciphertext: version is too new"));
        }
        if ver < i64::from(self.min_decryption_version) {
            return Err(user(
                "ciphertext or signature version is disallowed by policy (too old)",
            ));
        }
        let payload = gobase64::decode(parsed.payload)
            .map_err(|_| user("invalid ciphertext: could not decode base64"))?;
        // Then, like Vault: the key (a derived key needs its context), the
        // associated data, the length.
        let plain = self.with_cipher(ver as u32, context, cache, |c| {
            let aad = decode_aad(aad)?;
            if payload.len() < NONCE_LEN {
                return Err(user("invalid ciphertext length"));
            }
            let (nonce, sealed) = payload.split_at(NONCE_LEN);
            c.open(nonce, sealed, &aad)
        })?;
        Ok(Zeroizing::new(plain))
    }

    /// HMAC of `input` under version `ver`'s HMAC key, as `vault:vN:<base64>`.
    pub fn hmac(&self, ver: u32, alg: HmacAlgorithm, input: &[u8]) -> Result<String, KeyError> {
        let entry = self.version(ver)?;
        Ok(ciphertext::format(
            ver,
            &hmac_bytes(alg, &entry.hmac_key, input),
        ))
    }

    /// Resolve the version for an HMAC request (Vault's `HMACKey` checks).
    pub fn hmac_version(&self, requested: i64) -> Result<u32, KeyError> {
        if requested == 0 {
            return Ok(self.latest_version);
        }
        if requested != i64::from(self.latest_version)
            && self.min_encryption_version > 0
            && requested < i64::from(self.min_encryption_version)
        {
            return Err(user(
                "cannot generate HMAC: version is too old (disallowed by policy)",
            ));
        }
        if requested < 0 {
            return Err(user("key version does not exist (cannot be negative)"));
        }
        if requested > i64::from(self.latest_version) {
            return Err(user(format!(
                "key version does not exist; latest key version is {}",
                self.latest_version
            )));
        }
        let ver = requested as u32;
        self.version(ver)?;
        Ok(ver)
    }

    /// Replace a version's HMAC key (test hook for Vault's known-answer vector).
    pub fn set_hmac_key(&mut self, ver: u32, bytes: &[u8]) -> Result<(), KeyError> {
        let entry = self
            .versions
            .get_mut(&ver)
            .ok_or_else(|| user("no such key version"))?;
        entry.hmac_key.zeroize();
        entry.hmac_key = bytes.to_vec();
        Ok(())
    }

    /// Raw key bytes (encryption or HMAC) per live version, for `export/`.
    pub fn export(&self, hmac: bool, only: Option<u32>) -> BTreeMap<String, String> {
        self.live_versions()
            .filter(|(v, _)| only.is_none_or(|o| o == **v))
            .map(|(v, k)| {
                let bytes = if hmac { &k.hmac_key } else { &k.key };
                (v.to_string(), gobase64::encode(bytes))
            })
            .collect()
    }

    /// Whether a version exists and is not archived.
    pub fn has_version(&self, ver: u32) -> bool {
        self.version(ver).is_ok()
    }

    /// The key as `GET keys/<name>` shows it.
    pub fn to_json(&self) -> Value {
        let keys: serde_json::Map<String, Value> = self
            .live_versions()
            .map(|(v, k)| (v.to_string(), json!(k.created_ms / 1000)))
            .collect();
        let mut data = json!({
            "name": self.name,
            "type": self.key_type.as_str(),
            "derived": self.derived,
            "exportable": self.exportable,
            "allow_plaintext_backup": self.allow_plaintext_backup,
            "deletion_allowed": self.deletion_allowed,
            "latest_version": self.latest_version,
            "min_available_version": 0,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "supports_encryption": true,
            "supports_decryption": true,
            "supports_derivation": true,
            "supports_signing": false,
            "auto_rotate_period": self.auto_rotate_period_secs,
            "imported_key": false,
            "keys": keys,
        });
        if self.derived {
            data["kdf"] = json!("hkdf_sha256");
            data["convergent_encryption"] = json!(self.convergent_encryption);
            if self.convergent_encryption {
                data["convergent_encryption_version"] = json!(POLICY_CONVERGENT_VERSION);
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(opts: CreateOptions) -> KeyPolicy {
        KeyPolicy::new("k", &opts)
    }

    #[test]
    fn hkdf_matches_rfc5869_case_3() {
        // RFC 5869 test case 3: SHA-256, no salt, empty info.
        let ikm = [0x0bu8; 22];
        let okm = derive(&ikm, b"", 42).unwrap();
        assert_eq!(
            hex::encode(&*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn derived_keys_depend_on_context() {
        let raw = [7u8; 32];
        let a = derive(&raw, b"ctx-a", 32).unwrap();
        let b = derive(&raw, b"ctx-b", 32).unwrap();
        assert_ne!(*a, *b);
        assert_eq!(*a, *derive(&raw, b"ctx-a", 32).unwrap());
        // A longer read extends the shorter one (convergent keys rely on this).
        assert_eq!(&derive(&raw, b"ctx-a", 64).unwrap()[..32], &a[..]);
    }

    #[test]
    fn round_trip_all_types() {
        for key_type in [
            KeyType::Aes256Gcm96,
            KeyType::Aes128Gcm96,
            KeyType::ChaCha20Poly1305,
        ] {
            let k = key(CreateOptions {
                key_type,
                ..Default::default()
            });
            let mut cache = CipherCache::default();
            let (ct, ver) = k.encrypt(0, b"", b"hello", "", &mut cache).unwrap();
            assert_eq!(ver, 1);
            let payload = gobase64::decode(ciphertext::parse(&ct).unwrap().payload).unwrap();
            assert_eq!(payload.len(), 5 + 28);
            assert_eq!(&k.decrypt(&ct, b"", "", &mut cache).unwrap()[..], b"hello");
        }
    }

    #[test]
    fn derived_requires_context() {
        let k = key(CreateOptions {
            derived: true,
            ..Default::default()
        });
        let mut cache = CipherCache::default();
        let err = k.encrypt(0, b"", b"x", "", &mut cache).unwrap_err();
        assert_eq!(err, KeyError::User(MISSING_CONTEXT.into()));
        let (ct, _) = k.encrypt(0, b"c1", b"x", "", &mut cache).unwrap();
        assert_eq!(&k.decrypt(&ct, b"c1", "", &mut cache).unwrap()[..], b"x");
        assert_eq!(
            k.decrypt(&ct, b"c2", "", &mut cache).unwrap_err(),
            KeyError::User("cipher: message authentication failed".into())
        );
    }

    #[test]
    fn convergent_is_deterministic() {
        let k = key(CreateOptions {
            derived: true,
            convergent: true,
            ..Default::default()
        });
        let mut cache = CipherCache::default();
        let a = k.encrypt(0, b"c", b"same", "", &mut cache).unwrap().0;
        let b = k.encrypt(0, b"c", b"same", "", &mut cache).unwrap().0;
        let c = k.encrypt(0, b"d", b"same", "", &mut cache).unwrap().0;
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&k.decrypt(&a, b"c", "", &mut cache).unwrap()[..], b"same");
    }

    #[test]
    fn version_checks() {
        let mut k = key(CreateOptions::default());
        let mut cache = CipherCache::default();
        let (v1, _) = k.encrypt(0, b"", b"x", "", &mut cache).unwrap();
        k.rotate();
        let (v2, ver) = k.encrypt(0, b"", b"x", "", &mut cache).unwrap();
        assert_eq!(ver, 2);
        assert!(v2.starts_with("vault:v2:"));
        k.min_decryption_version = 2;
        assert!(k
            .decrypt(&v1, b"", "", &mut cache)
            .unwrap_err()
            .to_string()
            .contains("too old"));
        let v3 = v2.replacen("vault:v2:", "vault:v3:", 1);
        assert_eq!(
            k.decrypt(&v3, b"", "", &mut cache).unwrap_err().to_string(),
            "invalid ciphertext: version is too new"
        );
        assert_eq!(
            k.decrypt("vault:v2:AAAA", b"", "", &mut cache)
                .unwrap_err()
                .to_string(),
            "invalid ciphertext length"
        );
        // Versions below the minimum are archived, as in Vault.
        assert_eq!(
            k.encrypt(1, b"", b"x", "", &mut cache).unwrap_err(),
            KeyError::User("no such key version".into())
        );
        assert!(k.hmac_version(1).is_err());
        assert!(k.to_json()["keys"].get("1").is_none());
        assert!(!k.export(false, None).contains_key("1"));
        k.min_decryption_version = 1;
        assert!(k.to_json()["keys"].get("1").is_some());
    }

    #[test]
    fn bad_associated_data_is_an_internal_error() {
        let k = key(CreateOptions::default());
        let mut cache = CipherCache::default();
        let expected = KeyError::Internal(
            "unable to get associated_data/additional_data from factory[0]: illegal base64 data at input byte 0".into(),
        );
        assert_eq!(
            k.encrypt(0, b"", b"x", "%", &mut cache).unwrap_err(),
            expected
        );
        let (ct, _) = k.encrypt(0, b"", b"x", "aGRy", &mut cache).unwrap();
        assert_eq!(k.decrypt(&ct, b"", "%", &mut cache).unwrap_err(), expected);
        assert_eq!(&k.decrypt(&ct, b"", "aGRy", &mut cache).unwrap()[..], b"x");
    }
}
