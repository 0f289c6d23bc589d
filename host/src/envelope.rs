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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use kafka_transit_envelope_format::record::{Compression, Flags};
use kafka_transit_envelope_format::{check_key_name, header, header_v3, COMMITMENT_LEN};
pub use kafka_transit_envelope_format::{
    FormatError, WriteError, FORMAT_VERSION, FORMAT_VERSION_1, FORMAT_VERSION_3,
};
use zeroize::Zeroizing;

use crate::forget::ForgottenKeys;
use crate::vault::{DecryptInput, VaultClient, VaultError};

/// A forgotten data subject's key was asked for.
struct Forgotten;

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
        "message authentication failed: the envelope was tampered with, truncated, or moved \
         (another stream or record key: wrong context or associated data)"
    )]
    Authentication,
    #[error("the envelope's data key could not be unwrapped by Vault: {0}")]
    Unwrap(String),
    #[error(
        "envelope's key commitment does not match its data key (its wrapped key was swapped \
         for another data key's)"
    )]
    Commitment,
    #[error("envelope's plaintext cannot be read: {0}")]
    Body(String),
}

/// How a version 3 envelope's plaintext is compressed and padded (the policy's choice:
/// `[policy.config] compression`, `pad_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealOptions {
    /// The record's flags (stream, key, headers, record keys); the compression and
    /// padding bits are set from the fields below.
    pub flags: Flags,
    pub compression: Compression,
    /// Pad to a multiple of this many bytes; 0 for none.
    pub pad_to: u32,
}

impl SealOptions {
    fn header_flags(&self) -> Flags {
        self.flags.with_body(self.compression, self.pad_to > 0)
    }
}

/// HMAC-SHA256 of the commitment message under the data key: what a version 3 envelope
/// carries so that it opens under one data key only.
fn commitment_of(data_key: &[u8; 32]) -> [u8; COMMITMENT_LEN] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(data_key)
        .expect("HMAC takes a key of any length");
    mac.update(kafka_transit_envelope_format::COMMITMENT_MESSAGE);
    mac.finalize().into_bytes().into()
}

/// Compression and padding of a version 3 plaintext, and their reversal.
mod body {
    use super::{Compression, EnvelopeError, SealOptions};
    use kafka_transit_envelope_format::record;
    use std::borrow::Cow;

    /// zstd's default level: a good ratio at a speed far above the AEAD's.
    const ZSTD_LEVEL: i32 = 3;

    thread_local! {
        /// One zstd context per thread, kept: making one (its tables and window) costs
        /// several times more than compressing a 1 KiB record with it.
        static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }

    fn zstd_compress(plaintext: &[u8]) -> Vec<u8> {
        ZSTD.with(|cell| {
            let mut slot = cell.borrow_mut();
            let compressor = match &mut *slot {
                Some(compressor) => compressor,
                None => slot.insert(
                    zstd::bulk::Compressor::new(ZSTD_LEVEL)
                        .expect("a zstd context at the default level"),
                ),
            };
            compressor
                .compress(plaintext)
                .expect("zstd compression of an in-memory buffer cannot fail")
        })
    }

    /// The body to encrypt: `plaintext` itself when there is nothing to compress or pad
    /// (sealing copies it into the envelope anyway; a copy here would be a second one).
    pub(super) fn encode<'a>(plaintext: &'a [u8], options: &SealOptions) -> Cow<'a, [u8]> {
        let compressed = match options.compression {
            Compression::None => None,
            Compression::Zstd => Some(zstd_compress(plaintext)),
            Compression::Lz4 => {
                use std::io::Write;
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder
                    .write_all(plaintext)
                    .expect("writing to a Vec cannot fail");
                Some(encoder.finish().expect("finishing an LZ4 frame in memory"))
            }
        };
        match (compressed, options.pad_to) {
            (None, 0) => Cow::Borrowed(plaintext),
            (Some(compressed), 0) => Cow::Owned(compressed),
            (compressed, pad_to) => Cow::Owned(record::pad(
                compressed.as_deref().unwrap_or(plaintext),
                pad_to as usize,
            )),
        }
    }

    /// The plaintext of an opened version 3 envelope, unpadded and decompressed, at most
    /// `limit` bytes (a small envelope must not expand without bound).
    pub(super) fn decode(
        opened: Vec<u8>,
        flags: record::Flags,
        limit: usize,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let fail = |error: &dyn std::fmt::Display| EnvelopeError::Body(error.to_string());
        let data = if flags.padded() {
            record::unpad(&opened).map_err(|e| fail(&e))?
        } else {
            &opened[..]
        };
        let too_large =
            || EnvelopeError::Body(format!("it decompresses to more than {limit} bytes"));
        match flags.compression() {
            Compression::None if flags.padded() => Ok(data.to_vec()),
            Compression::None => Ok(opened),
            Compression::Zstd => {
                use std::io::Read;
                let mut out = Vec::new();
                let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| fail(&e))?;
                decoder
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| fail(&format!("zstd: {e}")))?;
                if out.len() > limit {
                    return Err(too_large());
                }
                Ok(out)
            }
            Compression::Lz4 => {
                use std::io::Read;
                let mut out = Vec::new();
                lz4_flex::frame::FrameDecoder::new(data)
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| fail(&format!("lz4: {e}")))?;
                if out.len() > limit {
                    return Err(too_large());
                }
                Ok(out)
            }
        }
    }
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

/// Seals one record: header ‖ nonce ‖ ciphertext ‖ tag, encrypted from `plaintext`
/// straight into the output buffer (one allocation, one pass over the plaintext; zeroing
/// the buffer first costs less than copying the plaintext in to encrypt it in place).
fn seal_into(
    cipher: &LessSafeKey,
    (header, authenticated): (&[u8], usize),
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let body = header.len() + NONCE_LEN;
    let mut envelope = vec![0; body + plaintext.len() + TAG_LEN];
    envelope[..header.len()].copy_from_slice(header);
    envelope[header.len()..body].copy_from_slice(nonce);
    let (ciphertext, tag) = envelope[body..].split_at_mut(plaintext.len());
    cipher
        .seal_out_of_place_scatter(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(associated_data(&header[..authenticated], aad)),
            plaintext,
            ciphertext,
            &[],
            tag,
        )
        .expect("AES-GCM encryption into buffers of the right lengths cannot fail");
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

/// [`seal_with`] in format version 3: the body compressed and padded as `options` say.
/// Deterministic for a given nonce (zstd and LZ4 are deterministic for one library
/// version; the test vectors use no compression).
pub fn seal_with_v3(
    data_key: &[u8; 32],
    key_name: &str,
    wrapped_key: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
    options: SealOptions,
) -> Result<Vec<u8>, WriteError> {
    let (header, authenticated) = header_v3(
        options.header_flags(),
        key_name,
        &commitment_of(data_key),
        wrapped_key,
    )?;
    Ok(seal_into(
        &cipher_for(data_key),
        (&header, authenticated),
        nonce,
        &body::encode(plaintext, &options),
        aad,
    ))
}

/// Opens a parsed envelope with its (unwrapped) data key: checks a version 3 envelope's
/// key commitment, then its tag, then unpads and decompresses (without bound: see
/// [`open_with_limit`]).
pub fn open_with(
    data_key: &[u8],
    parsed: &Parsed<'_>,
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    open_with_limit(data_key, parsed, aad, usize::MAX - 1)
}

/// [`open_with`], refusing a version 3 plaintext that decompresses to more than
/// `max_plaintext` bytes.
pub fn open_with_limit(
    data_key: &[u8],
    parsed: &Parsed<'_>,
    aad: &[u8],
    max_plaintext: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    let data_key: &[u8; 32] = data_key
        .try_into()
        .map_err(|_| EnvelopeError::Unwrap("the unwrapped data key is not 256 bits".into()))?;
    if let Some(commitment) = parsed.commitment {
        if !constant_time_eq(commitment, &commitment_of(data_key)) {
            return Err(EnvelopeError::Commitment);
        }
    }
    let opened = open_parsed(&cipher_for(data_key), parsed, aad)?;
    match parsed.version {
        FORMAT_VERSION_3 => body::decode(opened, parsed.flags, max_plaintext),
        _ => Ok(opened),
    }
}

fn open_parsed(
    cipher: &LessSafeKey,
    parsed: &Parsed<'_>,
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let nonce = Nonce::try_assume_unique_for_key(parsed.nonce())
        .expect("parse() splits off exactly one nonce");
    // Decrypted from the envelope straight into the plaintext's buffer (as sealing does:
    // no copy of the ciphertext to open in place).
    let (ciphertext, tag) = parsed
        .sealed()
        .split_last_chunk::<TAG_LEN>()
        .ok_or(EnvelopeError::Authentication)?;
    let mut plaintext = vec![0; ciphertext.len()];
    cipher
        .open_separate_gather(
            nonce,
            Aad::from(associated_data(parsed.authenticated, aad)),
            ciphertext,
            tag.as_slice(),
            &mut plaintext,
        )
        .map_err(|_| EnvelopeError::Authentication)?;
    Ok(plaintext)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    /// Data keys in use for sealing kept in memory: one per transit key (and context),
    /// so one per tenant or data subject; the least recently used goes beyond this.
    #[serde(default = "default_seal_cache")]
    pub seal_cache_entries: usize,
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
fn default_seal_cache() -> usize {
    10_000
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
            seal_cache_entries: default_seal_cache(),
            rotation_check_interval: default_rotation_check_interval(),
        }
    }
}

/// An unwrapped data key, ready to open with: the cipher is made once per data key, not
/// per record, and wipes its key schedule when the last user drops it; with its key
/// commitment, which version 3 envelopes are checked against.
struct OpenerKey {
    cipher: LessSafeKey,
    commitment: [u8; COMMITMENT_LEN],
}
type Opener = Arc<OpenerKey>;
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
    /// For version 3 headers, which differ by flags: the key commitment and the wrapped
    /// data key.
    commitment: [u8; COMMITMENT_LEN],
    wrapped_key: String,
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
    active: Mutex<lru::LruCache<SealingSlot, ActiveKey>>,
    /// Unwrapped data keys by their wrapped text, for opening.
    opened: Mutex<lru::LruCache<(String, String), Opener>>,
    /// Keys of forgotten data subjects (docs/forgetting.md): never sealed under, never
    /// opened with, dropped from both caches once [`ForgottenKeys::generation`] moves.
    forgotten: Option<Arc<ForgottenKeys>>,
    /// The generation of `forgotten` the caches were last purged at.
    purged: AtomicU64,
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
            active: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(policy.seal_cache_entries.max(1)).expect("at least one"),
            )),
            opened: Mutex::new(lru::LruCache::new(capacity)),
            forgotten: None,
            purged: AtomicU64::new(0),
        }
    }

    /// Refuses the keys of forgotten data subjects, as `keys` learns of them.
    pub fn with_forgotten(mut self, keys: Arc<ForgottenKeys>) -> Self {
        self.forgotten = Some(keys);
        self
    }

    /// Checks `key_name` against the forgotten subjects' keys, first dropping from the
    /// caches every data key of a subject forgotten since the last call (their material
    /// is wiped as the entries drop).
    fn check_forgotten(&self, key_name: &str) -> Result<(), Forgotten> {
        let Some(forgotten) = &self.forgotten else {
            return Ok(());
        };
        let generation = forgotten.generation();
        if self.purged.swap(generation, Ordering::AcqRel) != generation {
            let mut active = self.active.lock().expect("data key cache");
            let stale: Vec<SealingSlot> = active
                .iter()
                .filter(|((name, _), _)| forgotten.contains(name))
                .map(|(slot, _)| slot.clone())
                .collect();
            for slot in stale {
                active.pop(&slot);
            }
            drop(active);
            let mut opened = self.opened.lock().expect("open cache");
            let stale: Vec<(String, String)> = opened
                .iter()
                .filter(|((name, _), _)| forgotten.contains(name))
                .map(|(slot, _)| slot.clone())
                .collect();
            for slot in stale {
                opened.pop(&slot);
            }
        }
        if forgotten.contains(key_name) {
            return Err(Forgotten);
        }
        Ok(())
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
            commitment: commitment_of(&material),
            wrapped_key: fresh.ciphertext.clone(),
        });
        tracing::debug!(key = key_name, version = fresh.key_version, "new data key");
        self.vault.inner.metrics.data_key_minted();
        let mut active = self.active.lock().expect("data key cache");
        let retired = active.push(
            slot.clone(),
            ActiveKey {
                sealer: sealer.clone(),
                created: Instant::now(),
                sealed: records,
                version: fresh.key_version,
            },
        );
        // The key it replaces, or the least recently used one of another transit key.
        if let Some((retired_slot, retired)) = retired {
            self.vault.inner.metrics.data_key_retired();
            if retired_slot == slot && retired.version != fresh.key_version {
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
        self.check_forgotten(key_name)
            .map_err(|Forgotten| VaultError::SubjectForgotten)?;
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

    /// Seals each (plaintext, aad) in format version 3 (docs/envelope-format.md): the
    /// plaintext compressed and padded as `options` say, the flags and the data key's
    /// commitment in the authenticated header, `aad` (the record's binding parts) after
    /// it in the associated data.
    pub async fn seal_v3(
        &self,
        key_name: &str,
        context: Option<&[u8]>,
        options: SealOptions,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Vec<u8>>, VaultError> {
        check_key_name(key_name.as_bytes()).map_err(|reason| VaultError::InvalidRequest {
            mount: self.vault.mount().to_string(),
            key: key_name.to_string(),
            message: format!("an envelope's key name must be a transit key name: {reason}"),
        })?;
        self.check_forgotten(key_name)
            .map_err(|Forgotten| VaultError::SubjectForgotten)?;
        let flags = options.header_flags();
        let per_key = self.policy.max_records.max(1) as usize;
        let mut envelopes = Vec::with_capacity(items.len());
        for chunk in items.chunks(per_key) {
            let sealer = self
                .key_for_sealing(key_name, context, chunk.len() as u64)
                .await?;
            let (header, authenticated) =
                header_v3(flags, key_name, &sealer.commitment, &sealer.wrapped_key).map_err(
                    |error| VaultError::Protocol {
                        detail: format!("Vault's data key cannot be put in an envelope: {error}"),
                    },
                )?;
            for (plaintext, aad) in chunk {
                let body = body::encode(plaintext, &options);
                let nonce: [u8; NONCE_LEN] = rand::random();
                envelopes.push(seal_into(
                    &sealer.cipher,
                    (&header, authenticated),
                    &nonce,
                    &body,
                    aad,
                ));
            }
        }
        Ok(envelopes)
    }

    /// Opens each (envelope, aad). Data keys not in the cache are unwrapped with one
    /// Vault batch decrypt for the whole call. The outer error is Vault's (retryable or
    /// not); the inner ones are the records'. A version 3 envelope's plaintext comes
    /// back unpadded and decompressed, at most `max_plaintext` bytes.
    pub async fn open(
        &self,
        key_name: &str,
        context: Option<&[u8]>,
        items: &[(&[u8], &[u8])],
        max_plaintext: usize,
    ) -> Result<Vec<Result<Vec<u8>, EnvelopeError>>, VaultError> {
        // As Vault answers once `forget` deleted the key; sooner, and without asking.
        self.check_forgotten(key_name)
            .map_err(|Forgotten| VaultError::KeyNotFound {
                mount: self.vault.mount().to_string(),
                key: key_name.to_string(),
            })?;
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
                .map(|wrapped| DecryptInput::new(wrapped).with_context(context))
                .collect();
            let unwrapped = self.vault.decrypt_batch(key_name, &inputs).await?;
            let mut cache = self.opened.lock().expect("open cache");
            for (wrapped, result) in missing.iter().zip(unwrapped) {
                let entry = match result {
                    Ok(raw) => {
                        let raw = Zeroizing::new(raw);
                        match <&[u8; 32]>::try_from(raw.as_slice()) {
                            Ok(material) => {
                                let opener = Arc::new(OpenerKey {
                                    cipher: cipher_for(material),
                                    commitment: commitment_of(material),
                                });
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
                if let Some(commitment) = parsed.commitment {
                    if !constant_time_eq(commitment, &opener.commitment) {
                        return Err(EnvelopeError::Commitment);
                    }
                }
                let opened = open_parsed(&opener.cipher, &parsed, aad)?;
                match parsed.version {
                    FORMAT_VERSION_3 => body::decode(opened, parsed.flags, max_plaintext),
                    _ => Ok(opened),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_transit_envelope_format::record;

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
            .open("customers", None, &[(&sealed, b"")], 1 << 20)
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

    /// What every reader does with a format 3 record (docs/protected-records.md, "What
    /// each reader must check"), with the host's own opening: the value and the sealed
    /// headers, or the name the test vectors give the failure.
    fn open_record(
        case: &serde_json::Value,
        data_key: &[u8],
    ) -> Result<(Vec<u8>, Vec<record::FrameHeader>), &'static str> {
        let envelope = hex_field(case, "envelope_hex");
        let stream = case["stream"].as_str().unwrap();
        let key = case["record_key_hex"]
            .as_str()
            .map(|k| hex::decode(k).unwrap());
        let required: Vec<&str> = case["require_binding"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        let limit = case["max_plaintext_bytes"].as_u64().unwrap_or(1 << 20) as usize;
        let kind = |error: EnvelopeError| match error {
            EnvelopeError::Authentication => "authentication",
            EnvelopeError::Commitment => "commitment",
            EnvelopeError::Malformed(FormatError::UnknownFlags(_)) => "flags",
            EnvelopeError::Malformed(FormatError::UnknownVersion(_)) => "version",
            EnvelopeError::Malformed(FormatError::InvalidKeyName(_)) => "key name",
            EnvelopeError::Malformed(_) => "truncated",
            EnvelopeError::Body(why) if why.starts_with("the padding") => "padding",
            EnvelopeError::Body(why) if why.contains("more than") => "too large",
            EnvelopeError::Body(_) => "decompression",
            other => panic!("{}: unexpected {other}", case["name"]),
        };
        let Some(header) = case["protection_header"].as_str() else {
            if !required.is_empty() {
                return Err("unbound");
            }
            if envelope.first() == Some(&FORMAT_VERSION_3) {
                return Err("flags");
            }
            let parsed = parse(&envelope).map_err(kind)?;
            return open_with(data_key, &parsed, b"")
                .map(|v| (v, vec![]))
                .map_err(kind);
        };
        let flags = Flags::from_header_value(header.as_bytes()).map_err(|_| "flags")?;
        if (required.contains(&"stream") && !flags.stream())
            || (required.contains(&"key") && !flags.key())
        {
            return Err("unbound");
        }
        match envelope.first() {
            Some(&FORMAT_VERSION_3) => {}
            None => return Err("truncated"),
            Some(_) => return Err("flags"),
        }
        let parsed = parse(&envelope).map_err(kind)?;
        if parsed.flags != flags {
            return Err("flags");
        }
        let parts = record::binding_parts(flags, stream, key.as_deref(), None);
        let opened = open_with_limit(data_key, &parsed, &parts, limit).map_err(kind)?;
        if !flags.headers() {
            return Ok((opened, vec![]));
        }
        let (headers, value) = record::unframe(&opened).map_err(|_| "frame")?;
        Ok((value.to_vec(), headers))
    }

    /// The published format 3 vectors: uncompressed ones seal to their exact bytes, all
    /// open to their value and sealed headers, and every tampered record is refused for
    /// the reason it names (docs/gen-envelope-test-vectors.py writes them independently).
    #[test]
    fn published_format_3_vectors_open_and_tampered_ones_are_refused_for_their_reason() {
        let vectors = vectors();
        let format3 = &vectors["format3"];
        let envelopes = format3["envelopes"].as_array().unwrap();
        assert!(envelopes.len() >= 8);
        for vector in envelopes {
            let name = vector["name"].as_str().unwrap();
            let data_key: [u8; 32] = hex_field(vector, "data_key_hex").try_into().unwrap();
            let flags = Flags::parse(vector["flags"].as_u64().unwrap() as u8).unwrap();
            let key = vector["record_key_hex"]
                .as_str()
                .map(|k| hex::decode(k).unwrap());
            let stream = vector["stream"].as_str().unwrap();
            assert_eq!(
                record::binding(flags, stream, key.as_deref(), None),
                hex_field(vector, "binding_hex"),
                "{name}"
            );
            assert_eq!(flags.header_value(), vector["protection_header"], "{name}");
            let sealed: Vec<record::FrameHeader> = vector["sealed_headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let value = h[1].as_str().map(|v| hex::decode(v).unwrap());
                    (h[0].as_str().unwrap().to_string(), value)
                })
                .collect();
            let value = hex_field(vector, "value_hex");
            if flags.compression() == Compression::None {
                let plaintext = if flags.headers() {
                    record::frame(&sealed, &value)
                } else {
                    value.clone()
                };
                let envelope = seal_with_v3(
                    &data_key,
                    vector["key_name"].as_str().unwrap(),
                    vector["wrapped_key"].as_str().unwrap(),
                    &hex_field(vector, "nonce_hex").try_into().unwrap(),
                    &plaintext,
                    &record::binding_parts(flags, stream, key.as_deref(), None),
                    SealOptions {
                        flags,
                        compression: Compression::None,
                        pad_to: vector["pad_to"].as_u64().unwrap() as u32,
                    },
                )
                .unwrap();
                assert_eq!(envelope, hex_field(vector, "envelope_hex"), "{name}");
            }
            let mut case = vector.clone();
            case["require_binding"] = serde_json::json!([]);
            assert_eq!(open_record(&case, &data_key), Ok((value, sealed)), "{name}");
        }
        for frame in format3["frames"].as_array().unwrap() {
            let framed = hex_field(frame, "frame_hex");
            let (headers, value) = record::unframe(&framed).unwrap();
            assert_eq!(value, hex_field(frame, "value_hex"));
            assert_eq!(headers.len(), frame["headers"].as_array().unwrap().len());
        }
        for binding in format3["bindings"].as_array().unwrap() {
            let flags = Flags::parse(binding["flags"].as_u64().unwrap() as u8).unwrap();
            let key = binding["record_key_hex"]
                .as_str()
                .map(|k| hex::decode(k).unwrap());
            assert_eq!(
                record::binding(
                    flags,
                    binding["stream"].as_str().unwrap(),
                    key.as_deref(),
                    binding["pointer"].as_str()
                ),
                hex_field(binding, "binding_hex")
            );
        }
        let tampered = format3["tampered"].as_array().unwrap();
        assert!(tampered.len() >= 20);
        for case in tampered {
            let data_key = hex_field(case, "data_key_hex");
            match open_record(case, &data_key) {
                Ok(_) => panic!("tampered record opened: {}", case["name"]),
                Err(kind) => assert_eq!(kind, case["expect"], "{}", case["name"]),
            }
        }
    }

    /// The host's row and column of the format 3 matrix (.ci/e2e/sdk-matrix.sh), with the
    /// host's own sealing and opening (`Envelopes` and its Vault client) against OpenBao:
    /// "write" seals the matrix's records with every option on into host.jsonl; "read"
    /// opens every writer's records back to the source and refuses a moved one. The
    /// policies' row (envelope-seal with format 3 options) is the script's hook.
    #[tokio::test]
    #[ignore = "run by .ci/e2e/sdk-matrix.sh (KAFKA_TRANSIT_MATRIX_DIR, KAFKA_TRANSIT_MATRIX_MODE, VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT)"]
    async fn format_3_matrix_with_the_hosts_own_seal_and_open() {
        use crate::vault::{DecryptInput, EncryptInput, VaultSettings};
        use kafka_transit_envelope_format::record::{RecordKeys, PROTECTION_HEADER};
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
        let dir = std::path::PathBuf::from(var("KAFKA_TRANSIT_MATRIX_DIR"));
        let mut settings = VaultSettings::for_token(var("VAULT_ADDR"), "VAULT_TOKEN");
        settings.ca_cert = std::env::var_os("VAULT_CACERT").map(Into::into);
        let vault = VaultClient::connect(&settings).await.unwrap();
        let envelopes = Envelopes::new(vault.clone(), DataKeyPolicy::default());
        let unhex = |v: &serde_json::Value| v.as_str().map(|h| hex::decode(h).unwrap());
        let enhex = |b: &Option<Vec<u8>>| b.as_ref().map(hex::encode);
        let headers_of = |v: &serde_json::Value| -> Vec<record::FrameHeader> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_string(), unhex(&h[1])))
                .collect()
        };
        let sources: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("records.json")).unwrap())
                .unwrap();
        let options = SealOptions {
            flags: Flags::new(
                true,
                true,
                true,
                RecordKeys::Encrypted,
                Compression::None,
                false,
            ),
            compression: Compression::Zstd,
            pad_to: 256,
        };
        let flags = options.header_flags();
        let kept = |name: &str| name == "traceparent" || name.starts_with("kafka-transit.");
        match var("KAFKA_TRANSIT_MATRIX_MODE").as_str() {
            "write" => {
                let mut out = String::new();
                for source in &sources {
                    let stream = source["topic"].as_str().unwrap();
                    let key = unhex(&source["key"]);
                    let sink_key = match &key {
                        None => None,
                        Some(key) => {
                            let input =
                                EncryptInput::new(key).with_context(Some(stream.as_bytes()));
                            let text = vault.encrypt_batch("customer-ids", &[input]).await.unwrap();
                            Some(text[0].clone().unwrap().into_bytes())
                        }
                    };
                    let headers = headers_of(&source["headers"]);
                    let (mut clear, sealed): (Vec<_>, Vec<_>) =
                        headers.into_iter().partition(|(name, _)| kept(name));
                    clear.push((
                        PROTECTION_HEADER.to_string(),
                        Some(flags.header_value().into_bytes()),
                    ));
                    let value = match unhex(&source["value"]) {
                        None => None,
                        Some(value) => {
                            let plaintext = record::frame(&sealed, &value);
                            let parts =
                                record::binding_parts(flags, stream, sink_key.as_deref(), None);
                            let mut sealed = envelopes
                                .seal_v3("customers", None, options, &[(&plaintext, &parts)])
                                .await
                                .unwrap();
                            Some(sealed.remove(0))
                        }
                    };
                    let line = serde_json::json!({
                        "topic": stream,
                        "key": enhex(&sink_key),
                        "value": enhex(&value),
                        "headers": clear.iter().map(|(n, v)| serde_json::json!([n, enhex(v)])).collect::<Vec<_>>(),
                    });
                    out.push_str(&format!("{line}\n"));
                }
                std::fs::write(dir.join("host.jsonl"), out).unwrap();
                println!("host wrote {} records", sources.len());
            }
            "read" => {
                let mut files: Vec<_> = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                    .collect();
                files.sort();
                assert!(!files.is_empty(), "no writer's records to read");
                for file in files {
                    let text = std::fs::read_to_string(&file).unwrap();
                    let lines: Vec<&str> = text.lines().collect();
                    assert_eq!(lines.len(), sources.len(), "{file:?}");
                    for (index, (line, source)) in lines.iter().zip(&sources).enumerate() {
                        let sink: serde_json::Value = serde_json::from_str(line).unwrap();
                        let stream = sink["topic"].as_str().unwrap();
                        let headers = headers_of(&sink["headers"]);
                        let protection: Vec<_> = headers
                            .iter()
                            .filter(|(n, _)| n == PROTECTION_HEADER)
                            .collect();
                        assert_eq!(protection.len(), 1, "{file:?} {index}");
                        let read_flags =
                            Flags::from_header_value(protection[0].1.as_deref().unwrap()).unwrap();
                        assert!(read_flags.stream() && read_flags.key(), "bound");
                        let sink_key = unhex(&sink["key"]);
                        // The runner stamps what its envelope-seal wrote (the policies'
                        // row): not source headers, passed on by readers as they are.
                        let stamp =
                            |n: &str| n == "kafka-transit.policy" || n == "kafka-transit.key";
                        let mut got: Vec<record::FrameHeader> = headers
                            .iter()
                            .filter(|(n, _)| n != PROTECTION_HEADER && !stamp(n))
                            .cloned()
                            .collect();
                        let value = match unhex(&sink["value"]) {
                            None => None,
                            Some(envelope) => {
                                assert_eq!(parse(&envelope).unwrap().flags, read_flags);
                                let parts = record::binding_parts(
                                    read_flags,
                                    stream,
                                    sink_key.as_deref(),
                                    None,
                                );
                                let mut opened = envelopes
                                    .open("customers", None, &[(&envelope, &parts)], 1 << 24)
                                    .await
                                    .unwrap();
                                let opened = opened.remove(0).unwrap();
                                let (sealed, value) = record::unframe(&opened).unwrap();
                                got.extend(sealed);
                                if index == 0 {
                                    let moved = record::binding_parts(
                                        read_flags,
                                        "payments.eu",
                                        sink_key.as_deref(),
                                        None,
                                    );
                                    let refused = envelopes
                                        .open("customers", None, &[(&envelope, &moved)], 1 << 24)
                                        .await
                                        .unwrap();
                                    assert_eq!(refused[0], Err(EnvelopeError::Authentication));
                                }
                                Some(value.to_vec())
                            }
                        };
                        let key = match &sink_key {
                            None => None,
                            Some(text) => {
                                let text = std::str::from_utf8(text).unwrap();
                                let input =
                                    DecryptInput::new(text).with_context(Some(stream.as_bytes()));
                                let plain =
                                    vault.decrypt_batch("customer-ids", &[input]).await.unwrap();
                                Some(plain[0].clone().unwrap())
                            }
                        };
                        let source_headers = headers_of(&source["headers"]);
                        let mut want: Vec<_> = source_headers
                            .iter()
                            .filter(|(n, _)| kept(n))
                            .cloned()
                            .collect();
                        if value.is_some() {
                            want.extend(source_headers.iter().filter(|(n, _)| !kept(n)).cloned());
                        }
                        assert_eq!(key, unhex(&source["key"]), "{file:?} {index}");
                        assert_eq!(value, unhex(&source["value"]), "{file:?} {index}");
                        assert_eq!(got, want, "{file:?} {index}");
                    }
                    println!(
                        "host read {} records of {:?}; a moved one was refused",
                        lines.len(),
                        file.file_name().unwrap()
                    );
                }
            }
            mode => panic!("KAFKA_TRANSIT_MATRIX_MODE is write or read, not {mode:?}"),
        }
    }

    fn v3_options(compression: Compression, pad_to: u32) -> SealOptions {
        use kafka_transit_envelope_format::record::RecordKeys;
        SealOptions {
            flags: Flags::new(
                true,
                true,
                true,
                RecordKeys::Encrypted,
                Compression::None,
                false,
            ),
            compression,
            pad_to,
        }
    }

    #[test]
    fn version_3_round_trips_compressed_and_padded_with_its_flags_authenticated() {
        let key = [9u8; 32];
        let plaintext =
            br#"{"customer":"Ada","note":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let binding = b"\x00\x06orders\x01\x00\x00\x00\x02k1";
        for (compression, pad_to) in [
            (Compression::None, 0),
            (Compression::Zstd, 0),
            (Compression::Lz4, 0),
            (Compression::Zstd, 256),
            (Compression::None, 64),
        ] {
            let options = v3_options(compression, pad_to);
            let envelope = seal_with_v3(
                &key,
                "customers",
                "vault:v1:AAAA",
                &[3; 12],
                plaintext,
                binding,
                options,
            )
            .unwrap();
            let parsed = parse(&envelope).unwrap();
            assert_eq!(parsed.version, FORMAT_VERSION_3);
            assert_eq!(parsed.flags, options.header_flags());
            assert_eq!(parsed.flags.compression(), compression);
            assert_eq!(parsed.flags.padded(), pad_to > 0);
            assert_eq!(parsed.commitment, Some(&commitment_of(&key)));
            assert_eq!(open_with(&key, &parsed, binding).unwrap(), plaintext);
            if pad_to > 0 {
                assert_eq!((parsed.sealed().len() - TAG_LEN) % pad_to as usize, 0);
            }
            // Another record's binding (another stream, key or field) fails the tag.
            assert_eq!(
                open_with(&key, &parsed, b"\x00\x06orders\x01\x00\x00\x00\x02k2"),
                Err(EnvelopeError::Authentication)
            );
            // The flags are authenticated: claiming no compression, or other flags, fails.
            let mut changed = envelope.clone();
            changed[1] ^= Flags::KEY;
            assert_eq!(
                parse(&changed).and_then(|p| open_with(&key, &p, binding)),
                Err(EnvelopeError::Authentication)
            );
        }
        let small = seal_with_v3(
            &key,
            "customers",
            "vault:v1:AAAA",
            &[3; 12],
            plaintext,
            b"",
            v3_options(Compression::Zstd, 0),
        )
        .unwrap();
        assert!(
            small.len()
                < seal_with_v3(
                    &key,
                    "customers",
                    "vault:v1:AAAA",
                    &[3; 12],
                    plaintext,
                    b"",
                    v3_options(Compression::None, 0)
                )
                .unwrap()
                .len(),
            "compression shrinks a repetitive record"
        );
    }

    /// AES-GCM is not key-committing: whoever holds two data keys can make one
    /// ciphertext whose tag checks under both. The commitment ties a version 3 envelope
    /// to one data key, so a wrapped key swapped for another data key's is refused
    /// before the tag is even looked at.
    #[test]
    fn a_version_3_envelope_opens_under_its_own_data_key_only() {
        let key = [1u8; 32];
        let other = [2u8; 32];
        let envelope = seal_with_v3(
            &key,
            "customers",
            "vault:v1:AAAA",
            &[5; 12],
            b"x",
            b"",
            v3_options(Compression::None, 0),
        )
        .unwrap();
        let parsed = parse(&envelope).unwrap();
        assert_eq!(
            open_with(&other, &parsed, b""),
            Err(EnvelopeError::Commitment)
        );
        // Even with the other key's commitment written in, the tag (which covers the
        // commitment) fails.
        let mut forged = envelope.clone();
        let at = 4 + "customers".len();
        forged[at..at + COMMITMENT_LEN].copy_from_slice(&commitment_of(&other));
        assert_eq!(
            parse(&forged).and_then(|p| open_with(&other, &p, b"")),
            Err(EnvelopeError::Authentication)
        );
    }

    #[test]
    fn a_version_3_envelope_that_decompresses_without_bound_is_refused() {
        let options = v3_options(Compression::Zstd, 0);
        let huge = vec![0u8; 8 << 20];
        let body = body::encode(&huge, &options);
        assert!(body.len() < 4096, "{} bytes", body.len());
        let error = body::decode(body.into_owned(), options.header_flags(), 1 << 20).unwrap_err();
        assert!(
            error.to_string().contains("more than 1048576 bytes"),
            "{error}"
        );
        let options = v3_options(Compression::Lz4, 0);
        let body = body::encode(&huge, &options);
        assert!(body::decode(body.into_owned(), options.header_flags(), 1 << 20).is_err());
        // Padding that is not zeros, or a length past the end, is refused.
        let options = v3_options(Compression::None, 32);
        let mut body = body::encode(b"abc", &options).into_owned();
        body[20] = 1;
        assert!(body::decode(body, options.header_flags(), 1 << 20).is_err());
    }
}
