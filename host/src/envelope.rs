//! Envelope encryption: records are encrypted locally with AES-256-GCM under a data key
//! that Vault generated and wrapped (`transit/datakey/plaintext`), so a stream costs one
//! Vault request per data key instead of one per record, and values of any size work.
//!
//! The wire format is published in `docs/envelope-format.md`:
//!
//! ```text
//! version (1 byte) = 0x02 (0x01 is still opened)
//! key name length (u16, big endian) | key name (ASCII)          the transit key
//! wrapped key length (u16, big endian) | wrapped key (ASCII)    Vault's "vault:vN:..."
//! nonce (12 bytes)
//! ciphertext || tag (16 bytes)
//! ```
//!
//! AES-GCM authenticates the version byte and the key name (as associated data, followed
//! by the caller's own). Version 2 leaves the wrapped key out of it, so that rotation can
//! rewrap the data key (`transit/rewrap`) without the data key and without touching the
//! ciphertext; a wrapped key that unwraps to any other data key still fails the tag.
//! Version 1 authenticated the whole header. Any Vault client can unwrap the data key
//! with `transit/decrypt/<key name>` and open the record with any AES-GCM library.
//!
//! The header's parser and writer are the `kafka-transit-envelope-format` crate's, the
//! policy SDK's too: one reading of the format. It refuses a key name that is not a
//! transit key name, since readers put it in a Vault request path.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use kafka_transit_envelope_format::{check_key_name, header};
pub use kafka_transit_envelope_format::{
    FormatError, WriteError, FORMAT_VERSION, FORMAT_VERSION_1,
};
use zeroize::Zeroizing;

use crate::vault::{DecryptInput, VaultClient, VaultError};

const NONCE_LEN: usize = kafka_transit_envelope_format::NONCE_LEN;
const TAG_LEN: usize = kafka_transit_envelope_format::TAG_LEN;

/// Why an envelope could not be made or opened. Only [`EnvelopeError::Vault`] is about
/// Vault; the others are about the record. Messages go to logs and dead-letter headers,
/// so they never quote the record's own data (its key name included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Malformed(#[from] FormatError),
    #[error(
        "envelope was sealed with another Vault key than the one this policy opens, \"{expected}\""
    )]
    WrongKey { expected: String },
    #[error(
        "envelope failed authentication (tampered, truncated, or wrong context or associated data)"
    )]
    Authentication,
    #[error("the envelope's data key could not be unwrapped by Vault: {0}")]
    Unwrap(String),
}

/// A parsed envelope, borrowing from the record.
pub type Parsed<'a> = kafka_transit_envelope_format::Header<'a>;

/// Splits an envelope into its parts without decrypting (the published format's one
/// parser, shared with the policy SDK): refuses a key name that is not a transit key
/// name, since it names the key that unwraps the data key.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    Ok(kafka_transit_envelope_format::parse(bytes)?)
}

fn associated_data<'a>(authenticated: &'a [u8], aad: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    if aad.is_empty() {
        authenticated.into()
    } else {
        [authenticated, aad].concat().into()
    }
}

/// Seals one record: header ‖ nonce ‖ ciphertext ‖ tag, encrypted in place in the
/// output buffer (one allocation, one copy of the plaintext).
fn seal_into(
    cipher: &LessSafeKey,
    (header, authenticated): (&[u8], usize),
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let mut envelope = Vec::with_capacity(header.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    envelope.extend_from_slice(header);
    envelope.extend_from_slice(nonce);
    envelope.extend_from_slice(plaintext);
    let body = header.len() + NONCE_LEN;
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(associated_data(&header[..authenticated], aad)),
            &mut envelope[body..],
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    envelope.extend_from_slice(tag.as_ref());
    envelope
}

/// Seals with a given data key and nonce. Deterministic: the test vectors use it; the
/// host always passes a fresh random nonce.
pub fn seal_with(
    data_key: &[u8; 32],
    key_name: &str,
    wrapped_key: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, WriteError> {
    let (header, authenticated) = header(key_name, wrapped_key)?;
    Ok(seal_into(
        &cipher_for(data_key),
        (&header, authenticated),
        nonce,
        plaintext,
        aad,
    ))
}

/// Opens a parsed envelope with its (unwrapped) data key.
pub fn open_with(
    data_key: &[u8],
    parsed: &Parsed<'_>,
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let data_key: &[u8; 32] = data_key
        .try_into()
        .map_err(|_| EnvelopeError::Unwrap("the unwrapped data key is not 256 bits".into()))?;
    open_parsed(&cipher_for(data_key), parsed, aad)
}

fn open_parsed(
    cipher: &LessSafeKey,
    parsed: &Parsed<'_>,
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let nonce = Nonce::try_assume_unique_for_key(parsed.nonce())
        .expect("parse() splits off exactly one nonce");
    // One copy of the ciphertext, opened in place; the tag is cut off the end.
    let mut plaintext = parsed.sealed().to_vec();
    let opened = cipher
        .open_in_place(
            nonce,
            Aad::from(associated_data(parsed.authenticated, aad)),
            &mut plaintext,
        )
        .map_err(|_| EnvelopeError::Authentication)?
        .len();
    plaintext.truncate(opened);
    Ok(plaintext)
}

/// AES-256-GCM under `data_key`, from aws-lc-rs: with VAES and VPCLMULQDQ it runs
/// several times faster than a portable implementation. The key schedule lives in an
/// `EVP_AEAD_CTX` that AWS-LC allocates itself and wipes when freeing it
/// (`OPENSSL_free` cleanses the whole allocation), so dropping the returned key leaves
/// no key material behind; `data_key` itself stays the caller's to wipe.
fn cipher_for(data_key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, data_key).expect("a 32-byte key is an AES-256 key"),
    )
}

/// When a data key is retired.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeyPolicy {
    /// Records sealed under one data key, at most. Random 96-bit nonces stay safe far
    /// beyond this (NIST's bound is 2^32 messages per key).
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Age after which a data key is no longer used for sealing.
    #[serde(default = "default_max_age", with = "crate::config::duration_text")]
    pub max_age: Duration,
    /// Unwrapped data keys kept in memory for opening.
    #[serde(default = "default_open_cache")]
    pub open_cache_entries: usize,
    /// How soon a rotated transit key reaches new envelopes: a sealing data key older
    /// than this is replaced by a fresh one, which Vault wraps under the key's latest
    /// version. Minting is the check (no `read` on `transit/keys` is needed, and it costs
    /// the one request a version lookup would).
    #[serde(
        default = "default_rotation_check_interval",
        with = "crate::config::duration_text"
    )]
    pub rotation_check_interval: Duration,
}

fn default_max_records() -> u64 {
    1_000_000
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_open_cache() -> usize {
    1024
}
fn default_rotation_check_interval() -> Duration {
    Duration::from_secs(300)
}

impl Default for DataKeyPolicy {
    fn default() -> Self {
        DataKeyPolicy {
            max_records: default_max_records(),
            max_age: default_max_age(),
            open_cache_entries: default_open_cache(),
            rotation_check_interval: default_rotation_check_interval(),
        }
    }
}

/// An unwrapped data key, ready to open with: the cipher is made once per data key, not
/// per record, and wipes its key schedule when the last user drops it.
type Opener = Arc<LessSafeKey>;
/// A data key in use is shared by every record of one transit key and context.
type SealingSlot = (String, Option<Vec<u8>>);

/// A sealing data key ready to use: the cipher (its AES key schedule and GHASH key
/// computed once, not per record) and the envelope header, which is the same for every
/// record sealed under it. The AES round keys are wiped when the last user drops it
/// (see [`cipher_for`]).
struct Sealer {
    cipher: LessSafeKey,
    header: Vec<u8>,
    authenticated: usize,
}

struct ActiveKey {
    sealer: Arc<Sealer>,
    created: Instant,
    sealed: u64,
    /// The transit key version that wrapped it.
    version: u64,
}

/// Seals and opens envelopes, fetching data keys from Vault and caching them. Shared by
/// every policy instance of a runner; key material never leaves this type.
pub struct Envelopes {
    vault: VaultClient,
    policy: DataKeyPolicy,
    /// The data key in use for sealing, per (transit key, context).
    active: Mutex<HashMap<SealingSlot, ActiveKey>>,
    /// Unwrapped data keys by their wrapped text, for opening.
    opened: Mutex<lru::LruCache<(String, String), Opener>>,
}

impl std::fmt::Debug for Envelopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelopes")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Envelopes {
    pub fn new(vault: VaultClient, policy: DataKeyPolicy) -> Self {
        let capacity = NonZeroUsize::new(policy.open_cache_entries.max(1)).expect("at least one");
        Envelopes {
            vault,
            policy,
            active: Mutex::new(HashMap::new()),
            opened: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// A data key with room for `records` more records, from the cache or from Vault.
    async fn key_for_sealing(
        &self,
        key_name: &str,
        context: Option<&[u8]>,
        records: u64,
    ) -> Result<Arc<Sealer>, VaultError> {
        let slot = (key_name.to_string(), context.map(<[u8]>::to_vec));
        {
            let mut active = self.active.lock().expect("data key cache");
            if let Some(key) = active.get_mut(&slot) {
                let age = key.created.elapsed();
                if key.sealed + records <= self.policy.max_records
                    && age < self.policy.max_age
                    && age < self.policy.rotation_check_interval
                {
                    key.sealed += records;
                    self.vault.inner.metrics.data_key_cache_hit("seal");
                    return Ok(key.sealer.clone());
                }
            }
        }
        let fresh = self.vault.generate_data_key(key_name, context).await?;
        let material: [u8; 32] =
            fresh
                .plaintext
                .as_slice()
                .try_into()
                .map_err(|_| VaultError::Protocol {
                    detail: format!(
                        "Vault returned a {}-byte data key; expected 32",
                        fresh.plaintext.len()
                    ),
                })?;
        let material = Zeroizing::new(material);
        let (header, authenticated) =
            header(key_name, &fresh.ciphertext).map_err(|error| VaultError::Protocol {
                detail: format!("Vault's data key cannot be put in an envelope: {error}"),
            })?;
        let sealer = Arc::new(Sealer {
            cipher: cipher_for(&material),
            header,
            authenticated,
        });
        tracing::debug!(key = key_name, version = fresh.key_version, "new data key");
        self.vault.inner.metrics.data_key_minted();
        let mut active = self.active.lock().expect("data key cache");
        let retired = active.insert(
            slot,
            ActiveKey {
                sealer: sealer.clone(),
                created: Instant::now(),
                sealed: records,
                version: fresh.key_version,
            },
        );
        if let Some(retired) = retired {
            self.vault.inner.metrics.data_key_retired();
            if retired.version != fresh.key_version {
                tracing::info!(
                    key = key_name,
                    from = retired.version,
                    to = fresh.key_version,
                    "transit key rotated: new envelopes carry a data key wrapped by the new version"
                );
            }
        }
        Ok(sealer)
    }

    /// Seals each (plaintext, aad) under one data key of `key_name`. A batch larger than
    /// the per-key record limit is split across data keys.
    pub async fn seal(
        &self,
        key_name: &str,
        context: Option<&[u8]>,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Vec<u8>>, VaultError> {
        // Readers refuse an envelope whose key name is not a transit key name: say so
        // before a data key is minted for it.
        check_key_name(key_name.as_bytes()).map_err(|reason| VaultError::InvalidRequest {
            mount: self.vault.mount().to_string(),
            key: key_name.to_string(),
            message: format!("an envelope's key name must be a transit key name: {reason}"),
        })?;
        let per_key = self.policy.max_records.max(1) as usize;
        let mut envelopes = Vec::with_capacity(items.len());
        for chunk in items.chunks(per_key) {
            let sealer = self
                .key_for_sealing(key_name, context, chunk.len() as u64)
                .await?;
            for (plaintext, aad) in chunk {
                let nonce: [u8; NONCE_LEN] = rand::random();
                envelopes.push(seal_into(
                    &sealer.cipher,
                    (&sealer.header, sealer.authenticated),
                    &nonce,
                    plaintext,
                    aad,
                ));
            }
        }
        Ok(envelopes)
    }

    /// Opens each (envelope, aad). Data keys not in the cache are unwrapped with one
    /// Vault batch decrypt for the whole call. The outer error is Vault's (retryable or
    /// not); the inner ones are the records'.
    pub async fn open(
        &self,
        key_name: &str,
        context: Option<&[u8]>,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, EnvelopeError>>, VaultError> {
        let parsed: Vec<Result<Parsed<'_>, EnvelopeError>> = items
            .iter()
            .map(|(bytes, _)| {
                let parsed = parse(bytes)?;
                if parsed.key_name != key_name {
                    return Err(EnvelopeError::WrongKey {
                        expected: key_name.to_string(),
                    });
                }
                Ok(parsed)
            })
            .collect();

        let mut keys: HashMap<&str, Result<Opener, EnvelopeError>> = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        {
            let mut cache = self.opened.lock().expect("open cache");
            for envelope in parsed.iter().flatten() {
                if keys.contains_key(envelope.wrapped_key) {
                    continue;
                }
                match cache.get(&(key_name.to_string(), envelope.wrapped_key.to_string())) {
                    Some(material) => {
                        self.vault.inner.metrics.data_key_cache_hit("open");
                        keys.insert(envelope.wrapped_key, Ok(material.clone()));
                    }
                    None => {
                        keys.insert(
                            envelope.wrapped_key,
                            Err(EnvelopeError::Unwrap("pending".into())),
                        );
                        missing.push(envelope.wrapped_key);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let inputs: Vec<DecryptInput<'_>> = missing
                .iter()
                .map(|wrapped| DecryptInput {
                    ciphertext: wrapped,
                    context,
                })
                .collect();
            let unwrapped = self.vault.decrypt_batch(key_name, &inputs).await?;
            let mut cache = self.opened.lock().expect("open cache");
            for (wrapped, result) in missing.iter().zip(unwrapped) {
                let entry = match result {
                    Ok(raw) => {
                        let raw = Zeroizing::new(raw);
                        match <&[u8; 32]>::try_from(raw.as_slice()) {
                            Ok(material) => {
                                let opener = Arc::new(cipher_for(material));
                                cache.put(
                                    (key_name.to_string(), wrapped.to_string()),
                                    opener.clone(),
                                );
                                Ok(opener)
                            }
                            Err(_) => Err(EnvelopeError::Unwrap("not a 256-bit data key".into())),
                        }
                    }
                    Err(error) => Err(EnvelopeError::Unwrap(error.message)),
                };
                keys.insert(wrapped, entry);
            }
        }

        Ok(parsed
            .into_iter()
            .zip(items)
            .map(|(parsed, (_, aad))| {
                let parsed = parsed?;
                let opener = keys
                    .get(parsed.wrapped_key)
                    .expect("every wrapped key was looked up")
                    .as_ref()
                    .map_err(Clone::clone)?;
                open_parsed(opener, &parsed, aad)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../docs/envelope-test-vectors.json")).unwrap()
    }

    fn hex_field(vector: &serde_json::Value, name: &str) -> Vec<u8> {
        hex::decode(vector[name].as_str().unwrap()).unwrap()
    }

    /// Version 2 vectors seal to their exact bytes; every vector, version 1 too, opens.
    #[test]
    fn published_test_vectors_seal_to_the_exact_bytes_and_open_again() {
        let vectors = vectors();
        let vectors = vectors["vectors"].as_array().unwrap();
        for version in [FORMAT_VERSION, FORMAT_VERSION_1] {
            assert!(vectors
                .iter()
                .any(|v| v["format_version"] == u64::from(version)));
        }
        for vector in vectors {
            let data_key: [u8; 32] = hex_field(vector, "data_key_hex").try_into().unwrap();
            let nonce: [u8; 12] = hex_field(vector, "nonce_hex").try_into().unwrap();
            let plaintext = hex_field(vector, "plaintext_hex");
            let aad = hex_field(vector, "aad_hex");
            let key_name = vector["key_name"].as_str().unwrap();
            let wrapped = vector["wrapped_key"].as_str().unwrap();
            let published = hex_field(vector, "envelope_hex");
            if vector["format_version"] == u64::from(FORMAT_VERSION) {
                let envelope =
                    seal_with(&data_key, key_name, wrapped, &nonce, &plaintext, &aad).unwrap();
                assert_eq!(envelope, published, "{}", vector["name"]);
            }
            let parsed = parse(&published).unwrap();
            assert_eq!(parsed.version, vector["format_version"]);
            assert_eq!(parsed.key_name, key_name);
            assert_eq!(parsed.wrapped_key, wrapped);
            assert_eq!(open_with(&data_key, &parsed, &aad).unwrap(), plaintext);
        }
    }

    #[test]
    fn published_tampered_vectors_are_rejected_even_with_the_right_data_key() {
        let vectors = vectors();
        let tampered = vectors["tampered"].as_array().unwrap();
        assert!(tampered.len() >= 10);
        for case in tampered {
            let data_key = hex_field(case, "data_key_hex");
            let aad = hex_field(case, "aad_hex");
            let envelope = hex_field(case, "envelope_hex");
            let kind = match parse(&envelope).and_then(|p| open_with(&data_key, &p, &aad)) {
                Ok(_) => panic!("tampered envelope opened: {}", case["name"]),
                Err(EnvelopeError::Authentication) => "authentication",
                Err(EnvelopeError::Malformed(FormatError::UnknownVersion(_))) => "version",
                Err(EnvelopeError::Malformed(FormatError::InvalidKeyName(_))) => "key name",
                Err(EnvelopeError::Malformed(_)) => "truncated",
                Err(other) => panic!("{}: {other}", case["name"]),
            };
            assert_eq!(kind, case["expect"].as_str().unwrap(), "{}", case["name"]);
        }
    }

    fn published(name: &str) -> Vec<u8> {
        let vectors = vectors();
        let vector = vectors["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        hex_field(vector, "envelope_hex")
    }

    fn sample() -> ([u8; 32], Vec<u8>) {
        let key = [7u8; 32];
        let envelope = seal_with(
            &key,
            "customers",
            "vault:v1:AAAA",
            &[1; 12],
            b"secret value",
            b"",
        )
        .unwrap();
        (key, envelope)
    }

    /// The bytes of the wrapped key text in `envelope`.
    fn wrapped_key_bytes(envelope: &[u8]) -> std::ops::Range<usize> {
        let parsed = parse(envelope).unwrap();
        let start = 3 + parsed.key_name.len() + 2;
        start..start + parsed.wrapped_key.len()
    }

    fn assert_flips_detected(key: &[u8], envelope: &[u8], bytes: impl Iterator<Item = usize>) {
        assert!(parse(envelope)
            .and_then(|p| open_with(key, &p, b""))
            .is_ok());
        for index in bytes {
            let mut tampered = envelope.to_vec();
            tampered[index] ^= 0x01;
            let result = parse(&tampered).and_then(|p| open_with(key, &p, b""));
            assert!(
                result.is_err(),
                "flipping a bit of byte {index} went unnoticed"
            );
        }
    }

    /// In version 2 a flipped bit of the wrapped key is Vault's to notice (it no longer
    /// unwraps, or to another data key); every other byte is the tag's.
    #[test]
    fn any_flipped_bit_outside_the_wrapped_key_is_detected() {
        let (key, envelope) = sample();
        let wrapped = wrapped_key_bytes(&envelope);
        let outside = (0..envelope.len()).filter(|i| !wrapped.contains(i));
        assert_flips_detected(&key, &envelope, outside);
    }

    #[test]
    fn version_1_authenticates_every_byte_including_the_wrapped_key() {
        let envelope = published("hello");
        let key: Vec<u8> = (0u8..32).collect(); // the vector's data key
        assert_flips_detected(&key, &envelope, 0..envelope.len());
    }

    /// What rotation relies on: a rewrapped data key (same data key, new wrapped text)
    /// opens the untouched ciphertext; a changed key name does not.
    #[test]
    fn a_replaced_wrapped_key_keeps_the_tag_and_a_swapped_key_name_does_not() {
        let (key, envelope) = sample();
        let replace = |key_name: &str, wrapped: &str| {
            let parsed = parse(&envelope).unwrap();
            let (mut forged, _) = header(key_name, wrapped).unwrap();
            forged.extend_from_slice(parsed.body);
            forged
        };
        let rewrapped = replace("customers", "vault:v2:BBBBBBBB");
        assert!(rewrapped.ends_with(&envelope[envelope.len() - 40..]));
        let parsed = parse(&rewrapped).unwrap();
        assert_eq!(parsed.wrapped_key, "vault:v2:BBBBBBBB");
        assert_eq!(open_with(&key, &parsed, b"").unwrap(), b"secret value");
        let renamed = replace("customerz", "vault:v1:AAAA");
        assert_eq!(
            open_with(&key, &parse(&renamed).unwrap(), b""),
            Err(EnvelopeError::Authentication)
        );
        assert_eq!(
            open_with(&[8u8; 32], &parse(&rewrapped).unwrap(), b""),
            Err(EnvelopeError::Authentication),
            "a wrapped key that unwraps to another data key fails the tag"
        );
    }

    #[test]
    fn truncation_and_plaintext_are_clear_errors() {
        let (key, envelope) = sample();
        for cut in [0, 1, 3, 10, envelope.len() - 17, envelope.len() - 1] {
            let result = parse(&envelope[..cut]).and_then(|p| open_with(&key, &p, b""));
            assert!(result.is_err(), "truncated to {cut} bytes");
        }
        let error = parse(br#"{"name":"Ada"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "not a kafka-transit envelope: unknown format version 0x7b"
        );
    }

    /// Reasons go to logs and to dead-letter topics that promise metadata only: the
    /// envelope's key name is the record's, so it is not quoted.
    #[tokio::test]
    async fn another_key_is_refused_without_quoting_the_envelopes_key_name() {
        let settings = crate::vault::VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        let vault =
            VaultClient::with_token(&settings, crate::vault::VaultToken::new("t".into())).unwrap();
        let envelopes = Envelopes::new(vault, DataKeyPolicy::default());
        let sealed = seal_with(
            &[7; 32],
            "tenant-secret-project",
            "vault:v1:AAAA",
            &[1; 12],
            b"x",
            b"",
        )
        .unwrap();
        let opened = envelopes
            .open("customers", None, &[(&sealed, b"")])
            .await
            .unwrap();
        let error = opened[0].as_ref().unwrap_err();
        assert!(matches!(error, EnvelopeError::WrongKey { .. }), "{error:?}");
        let message = error.to_string();
        assert!(!message.contains("tenant-secret-project"), "{message}");
        assert!(message.contains("\"customers\""), "{message}");
    }

    /// Nothing seals what readers would refuse: an invalid key name is refused before a
    /// data key is asked for (this Vault is unreachable; asking it would be Unavailable).
    #[tokio::test]
    async fn sealing_under_a_key_name_that_is_no_transit_key_name_asks_vault_nothing() {
        let mut settings = crate::vault::VaultSettings::for_token("http://127.0.0.1:1/", "UNUSED");
        settings.max_retries = 0;
        let vault =
            VaultClient::with_token(&settings, crate::vault::VaultToken::new("t".into())).unwrap();
        let envelopes = Envelopes::new(vault.clone(), DataKeyPolicy::default());
        for name in ["team/tenant-a", "a b", "", ".."] {
            let error = envelopes
                .seal(name, None, &[(b"x", b"")])
                .await
                .unwrap_err();
            assert!(
                matches!(&error, VaultError::InvalidRequest { .. }),
                "{name:?}: {error}"
            );
        }
        assert_eq!(vault.requests_sent(), 0);
    }

    #[test]
    fn wrong_associated_data_fails() {
        let key = [9u8; 32];
        let envelope = seal_with(&key, "k", "vault:v1:AAAA", &[2; 12], b"x", b"topic-a").unwrap();
        let parsed = parse(&envelope).unwrap();
        assert!(open_with(&key, &parsed, b"topic-a").is_ok());
        assert_eq!(
            open_with(&key, &parsed, b"topic-b"),
            Err(EnvelopeError::Authentication)
        );
    }
}
