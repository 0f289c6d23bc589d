//! Envelope encryption: records are encrypted locally with AES-256-GCM under a data key
//! that Vault generated and wrapped (`transit/datakey/plaintext`), so a stream costs one
//! Vault request per data key instead of one per record, and values of any size work.
//!
//! The wire format is published in `docs/envelope-format.md`:
//!
//! ```text
//! version (1 byte) = 0x01
//! key name length (u16, big endian) | key name (UTF-8)          the transit key
//! wrapped key length (u16, big endian) | wrapped key (ASCII)    Vault's "vault:vN:..."
//! nonce (12 bytes)
//! ciphertext || tag (16 bytes)
//! ```
//!
//! Everything before the nonce is the header; AES-GCM authenticates it (as associated
//! data, followed by the caller's own associated data), so an edited or swapped
//! data-key reference is detected. Any Vault client can unwrap the data key with
//! `transit/decrypt/<key name>` and open the record with any AES-GCM library.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::vault::{DecryptInput, VaultClient, VaultError};

pub const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why an envelope could not be made or opened. Only [`EnvelopeError::Vault`] is about
/// Vault; the others are about the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a kafka-transit envelope: {0}")]
    Malformed(String),
    #[error(
        "envelope was sealed with Vault key \"{found}\", but this policy opens \"{expected}\""
    )]
    WrongKey { expected: String, found: String },
    #[error(
        "envelope failed authentication (tampered, truncated, or wrong context or associated data)"
    )]
    Authentication,
    #[error("the envelope's data key could not be unwrapped by Vault: {0}")]
    Unwrap(String),
}

/// A parsed envelope, borrowing from the record.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub key_name: &'a str,
    pub wrapped_key: &'a str,
    header: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

fn read_field<'a>(bytes: &'a [u8], at: &mut usize, what: &str) -> Result<&'a [u8], EnvelopeError> {
    let truncated = || EnvelopeError::Malformed(format!("truncated in the {what}"));
    let length_bytes = bytes.get(*at..*at + 2).ok_or_else(truncated)?;
    let length = u16::from_be_bytes([length_bytes[0], length_bytes[1]]) as usize;
    let field = bytes.get(*at + 2..*at + 2 + length).ok_or_else(truncated)?;
    *at += 2 + length;
    Ok(field)
}

/// Splits an envelope into its parts without decrypting.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    match bytes.first() {
        None => return Err(EnvelopeError::Malformed("empty value".into())),
        Some(&FORMAT_VERSION) => {}
        Some(other) => {
            return Err(EnvelopeError::Malformed(format!(
                "unknown format version 0x{other:02x}"
            )))
        }
    }
    let mut at = 1;
    let key_name = std::str::from_utf8(read_field(bytes, &mut at, "key name")?)
        .map_err(|_| EnvelopeError::Malformed("key name is not UTF-8".into()))?;
    let wrapped_key = std::str::from_utf8(read_field(bytes, &mut at, "wrapped key")?)
        .map_err(|_| EnvelopeError::Malformed("wrapped key is not text".into()))?;
    if !wrapped_key.starts_with("vault:v") {
        return Err(EnvelopeError::Malformed(
            "wrapped key is not a Vault ciphertext".into(),
        ));
    }
    let header = &bytes[..at];
    let rest = &bytes[at..];
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("truncated before the tag".into()));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Ok(Parsed {
        key_name,
        wrapped_key,
        header,
        nonce,
        sealed,
    })
}

fn header(key_name: &str, wrapped_key: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(5 + key_name.len() + wrapped_key.len());
    header.push(FORMAT_VERSION);
    for field in [key_name.as_bytes(), wrapped_key.as_bytes()] {
        let length = u16::try_from(field.len()).expect("key names and wrapped keys are short");
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(field);
    }
    header
}

fn associated_data<'a>(header: &'a [u8], aad: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    if aad.is_empty() {
        header.into()
    } else {
        [header, aad].concat().into()
    }
}

/// Seals one record: header ‖ nonce ‖ ciphertext ‖ tag, encrypted in place in the
/// output buffer (one allocation, one copy of the plaintext).
fn seal_into(
    cipher: &LessSafeKey,
    header: &[u8],
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
            Aad::from(associated_data(header, aad)),
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
) -> Vec<u8> {
    seal_into(
        &cipher_for(data_key),
        &header(key_name, wrapped_key),
        nonce,
        plaintext,
        aad,
    )
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
    let nonce = Nonce::try_assume_unique_for_key(parsed.nonce)
        .expect("parse() splits off exactly one nonce");
    // One copy of the ciphertext, opened in place; the tag is cut off the end.
    let mut plaintext = parsed.sealed.to_vec();
    let opened = cipher_for(data_key)
        .open_in_place(
            nonce,
            Aad::from(associated_data(parsed.header, aad)),
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

impl Default for DataKeyPolicy {
    fn default() -> Self {
        DataKeyPolicy {
            max_records: default_max_records(),
            max_age: default_max_age(),
            open_cache_entries: default_open_cache(),
        }
    }
}

type DataKeyBytes = Arc<Zeroizing<[u8; 32]>>;
/// A data key in use is shared by every record of one transit key and context.
type SealingSlot = (String, Option<Vec<u8>>);

/// A sealing data key ready to use: the cipher (its AES key schedule and GHASH key
/// computed once, not per record) and the envelope header, which is the same for every
/// record sealed under it. The AES round keys are wiped when the last user drops it
/// (see [`cipher_for`]).
struct Sealer {
    cipher: LessSafeKey,
    header: Vec<u8>,
}

struct ActiveKey {
    sealer: Arc<Sealer>,
    created: Instant,
    sealed: u64,
}

/// Seals and opens envelopes, fetching data keys from Vault and caching them. Shared by
/// every policy instance of a runner; key material never leaves this type.
pub struct Envelopes {
    vault: VaultClient,
    policy: DataKeyPolicy,
    /// The data key in use for sealing, per (transit key, context).
    active: Mutex<HashMap<SealingSlot, ActiveKey>>,
    /// Unwrapped data keys by their wrapped text, for opening.
    opened: Mutex<lru::LruCache<(String, String), DataKeyBytes>>,
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
                if key.sealed + records <= self.policy.max_records
                    && key.created.elapsed() < self.policy.max_age
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
        let sealer = Arc::new(Sealer {
            cipher: cipher_for(&material),
            header: header(key_name, &fresh.ciphertext),
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
            },
        );
        if retired.is_some() {
            self.vault.inner.metrics.data_key_retired();
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
                    &sealer.header,
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
                        found: parsed.key_name.to_string(),
                    });
                }
                Ok(parsed)
            })
            .collect();

        let mut keys: HashMap<&str, Result<DataKeyBytes, EnvelopeError>> = HashMap::new();
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
                    Ok(raw) => match <[u8; 32]>::try_from(raw.as_slice()) {
                        Ok(material) => {
                            let material = Arc::new(Zeroizing::new(material));
                            cache.put(
                                (key_name.to_string(), wrapped.to_string()),
                                material.clone(),
                            );
                            Ok(material)
                        }
                        Err(_) => Err(EnvelopeError::Unwrap("not a 256-bit data key".into())),
                    },
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
                let material = keys
                    .get(parsed.wrapped_key)
                    .expect("every wrapped key was looked up")
                    .clone()?;
                open_with(material.as_slice(), &parsed, aad)
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

    #[test]
    fn published_test_vectors_seal_to_the_exact_bytes_and_open_again() {
        for vector in vectors()["vectors"].as_array().unwrap() {
            let data_key: [u8; 32] = hex_field(vector, "data_key_hex").try_into().unwrap();
            let nonce: [u8; 12] = hex_field(vector, "nonce_hex").try_into().unwrap();
            let plaintext = hex_field(vector, "plaintext_hex");
            let aad = hex_field(vector, "aad_hex");
            let key_name = vector["key_name"].as_str().unwrap();
            let wrapped = vector["wrapped_key"].as_str().unwrap();
            let envelope = seal_with(&data_key, key_name, wrapped, &nonce, &plaintext, &aad);
            assert_eq!(
                hex::encode(&envelope),
                vector["envelope_hex"].as_str().unwrap(),
                "{}",
                vector["name"]
            );
            let parsed = parse(&envelope).unwrap();
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
                Err(EnvelopeError::Malformed(why)) if why.contains("version") => "version",
                Err(EnvelopeError::Malformed(_)) => "truncated",
                Err(other) => panic!("{}: {other}", case["name"]),
            };
            assert_eq!(kind, case["expect"].as_str().unwrap(), "{}", case["name"]);
        }
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
        );
        (key, envelope)
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let (key, envelope) = sample();
        for index in 0..envelope.len() {
            let mut tampered = envelope.clone();
            tampered[index] ^= 0x01;
            let result = parse(&tampered).and_then(|p| open_with(&key, &p, b""));
            assert!(
                result.is_err(),
                "flipping a bit of byte {index} went unnoticed"
            );
        }
    }

    #[test]
    fn a_swapped_wrapped_key_or_key_name_is_detected() {
        let (key, envelope) = sample();
        let swapped = {
            let parsed = parse(&envelope).unwrap();
            let mut forged = header("customers", "vault:v1:BBBB");
            forged.extend_from_slice(parsed.nonce);
            forged.extend_from_slice(parsed.sealed);
            forged
        };
        let parsed = parse(&swapped).unwrap();
        assert_eq!(
            open_with(&key, &parsed, b""),
            Err(EnvelopeError::Authentication)
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

    #[test]
    fn wrong_associated_data_fails() {
        let key = [9u8; 32];
        let envelope = seal_with(&key, "k", "vault:v1:AAAA", &[2; 12], b"x", b"topic-a");
        let parsed = parse(&envelope).unwrap();
        assert!(open_with(&key, &parsed, b"topic-a").is_ok());
        assert_eq!(
            open_with(&key, &parsed, b"topic-b"),
            Err(EnvelopeError::Authentication)
        );
    }
}
