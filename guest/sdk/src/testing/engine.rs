//! The in-memory engine behind the stand-in: transit keys and their versions,
//! ciphertexts and envelopes looked up by what they stand for.

use std::collections::HashMap;

use super::{Answer, Call, Handlers, ItemMatcher};
use crate::envelope_format;
use crate::envelope_format::record::{Compression, Flags};
use crate::kafka_transit::policy::envelope::{
    Compression as WitCompression, OpenItem, SealItem, SealOptions,
};
use crate::kafka_transit::policy::transit::TransitError;
use crate::Level;

/// What a ciphertext or envelope stands for.
#[derive(Clone)]
pub(super) struct Secret {
    pub(super) key: String,
    pub(super) context: Option<Vec<u8>>,
    /// Vault's `associated_data` of a ciphertext; for an envelope, its authenticated
    /// header followed by the caller's `aad`, as AES-GCM's associated data is.
    pub(super) aad: Vec<u8>,
    pub(super) plaintext: Vec<u8>,
}

/// A transit key and a derivation context: what one data key serves.
pub(super) type SealingSlot = (String, Option<Vec<u8>>);

/// How a key was created: `derived = true`, and `convergent_encryption = true`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KeyKind {
    pub(super) derived: bool,
    pub(super) convergent: bool,
}

#[derive(Default)]
pub(super) struct State {
    /// Transit key name -> latest version.
    pub(super) keys: HashMap<String, u32>,
    /// Keys created derived (and perhaps convergent); the others are plain.
    pub(super) kinds: HashMap<String, KeyKind>,
    /// Transit key name -> `min_decryption_version`, where a test set one.
    pub(super) min_decryption: HashMap<String, u32>,
    pub(super) ciphertexts: HashMap<String, Secret>,
    /// The data key in use per transit key and context: the version that wrapped it,
    /// and its wrapped text.
    pub(super) data_keys: HashMap<SealingSlot, (u32, String)>,
    /// (data key, envelope body) -> what was sealed.
    pub(super) envelopes: HashMap<(Vec<u8>, Vec<u8>), Secret>,
    /// Source topic -> sink topic, for `pipeline::sink_topic`.
    pub(super) sink_topics: HashMap<String, String>,
    /// Schema id -> schema, for `schema_registry::schema_by_id`.
    pub(super) schemas: HashMap<u32, crate::schema_registry::Schema>,
    /// What every `schema_by_id` answers instead, while set.
    pub(super) registry_failure: Option<crate::schema_registry::RegistryError>,
    pub(super) schema_lookups: usize,
    pub(super) issued: u64,
    pub(super) failing_calls: Option<TransitError>,
    pub(super) denied_keys: std::collections::HashSet<String>,
    pub(super) failing_items: Vec<(ItemMatcher, TransitError)>,
    pub(super) handlers: Handlers,
    pub(super) calls: Vec<Call>,
    pub(super) logs: Vec<(Level, String)>,
    /// `encrypt` creates a key it does not have, as Vault does for a token with
    /// `create` on the path.
    pub(super) upsert: bool,
    /// Keys `kafka-transit forget` deleted: the host refuses to seal under them.
    pub(super) forgotten: std::collections::HashSet<String>,
}

/// What the host answers a seal under a forgotten subject's key.
pub(super) const FORGOTTEN: &str = "subject forgotten: this record's data subject was forgotten \
     (kafka-transit forget); nothing of theirs is sealed again";

/// Vault's own text when a ciphertext does not open under the key, context and
/// associated data given.
pub(super) const AUTHENTICATION_FAILED: &str = "cipher: message authentication failed";
/// Vault's own text for a ciphertext older than the key's `min_decryption_version`.
pub(super) const TOO_OLD: &str =
    "ciphertext or signature version is disallowed by policy (too old)";
/// Vault's own text for a derived key used without a context.
pub(super) const MISSING_CONTEXT: &str = "missing 'context' for key derivation; the key was \
     created using a derived key, which means additional, per-request information must be \
     included in order to perform operations with the key";
/// The host's words outside a pipeline (host/src/policy/host.rs).
pub(super) const NO_PIPELINE: &str =
    "the policy runs outside a pipeline (kafka-transit validate): there is no sink topic";

/// One item to encrypt, with or without associated data (empty for none, as Vault
/// treats an absent `associated_data`).
pub(super) struct Plain<'a> {
    pub(super) plaintext: &'a [u8],
    pub(super) context: Option<&'a [u8]>,
    pub(super) aad: &'a [u8],
}

/// One ciphertext to decrypt or rewrap.
pub(super) struct Sealed<'a> {
    pub(super) ciphertext: &'a str,
    pub(super) context: Option<&'a [u8]>,
    pub(super) aad: &'a [u8],
}

impl State {
    pub(super) fn version(&self, key: &str) -> Result<u32, TransitError> {
        self.keys.get(key).copied().ok_or_else(|| {
            TransitError::KeyNotFound(format!(
                "transit key {key:?} not found (the test never called Host::create_key({key:?}))"
            ))
        })
    }

    fn kind(&self, key: &str) -> KeyKind {
        self.kinds.get(key).copied().unwrap_or_default()
    }

    pub(super) fn item_failure(&self, input: &[u8]) -> Option<TransitError> {
        self.failing_items
            .iter()
            .find(|(matching, _)| matching(input))
            .map(|(_, error)| error.clone())
    }

    /// A name for the next secret: `stand-in:<n>`, never anything of the plaintext.
    pub(super) fn next_name(&mut self) -> String {
        self.issued += 1;
        format!("stand-in:{}", self.issued)
    }

    pub(super) fn issue_ciphertext(&mut self, version: u32, secret: Secret) -> String {
        let kind = self.kind(&secret.key);
        let name = if kind.convergent {
            // Convergent: the same plaintext, context and version give the same text,
            // as Vault's do; the name is a digest, never the plaintext.
            let input = [
                secret.context.as_deref().unwrap_or_default(),
                &[0xff],
                &secret.aad,
                &[0xff],
                &secret.plaintext,
            ]
            .concat();
            format!(
                "convergent:{}",
                base64(&digest(&secret.key, version, &input))
            )
        } else {
            self.next_name()
        };
        let ciphertext = format!("vault:v{version}:{}", base64(name.as_bytes()));
        self.ciphertexts.insert(ciphertext.clone(), secret);
        ciphertext
    }

    pub(super) fn find_ciphertext(
        &self,
        key: &str,
        item: &Sealed<'_>,
    ) -> Result<Secret, TransitError> {
        if self.kind(key).derived && item.context.is_none_or(<[u8]>::is_empty) {
            return Err(TransitError::InvalidInput(MISSING_CONTEXT.into()));
        }
        let version = item
            .ciphertext
            .strip_prefix("vault:v")
            .and_then(|rest| rest.split(':').next())
            .and_then(|version| version.parse::<u32>().ok());
        let minimum = self.min_decryption.get(key).copied().unwrap_or(1);
        if version.is_some_and(|version| version < minimum) {
            return Err(TransitError::InvalidInput(TOO_OLD.into()));
        }
        match self.ciphertexts.get(item.ciphertext) {
            None => Err(TransitError::InvalidInput(
                "invalid ciphertext: not one that transit::encrypt or rewrap returned".into(),
            )),
            Some(secret)
                if secret.key != key
                    || secret.context.as_deref() != item.context
                    || secret.aad != item.aad =>
            {
                Err(TransitError::InvalidInput(AUTHENTICATION_FAILED.into()))
            }
            Some(secret) => Ok(secret.clone()),
        }
    }

    pub(super) fn encrypt(&mut self, key: &str, items: &[Plain<'_>]) -> Answer<String> {
        if self.upsert && !self.forgotten.contains(key) {
            self.keys.entry(key.into()).or_insert(1);
        }
        let version = self.version(key)?;
        let derived = self.kind(key).derived;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(match self.item_failure(item.plaintext) {
                Some(error) => Err(error),
                None if derived && item.context.is_none_or(<[u8]>::is_empty) => {
                    Err(TransitError::InvalidInput(MISSING_CONTEXT.into()))
                }
                None => Ok(self.issue_ciphertext(
                    version,
                    Secret {
                        key: key.into(),
                        context: item.context.map(<[u8]>::to_vec),
                        aad: item.aad.to_vec(),
                        plaintext: item.plaintext.to_vec(),
                    },
                )),
            });
        }
        Ok(results)
    }

    pub(super) fn decrypt(&mut self, key: &str, items: &[Sealed<'_>]) -> Answer<Vec<u8>> {
        self.version(key)?;
        Ok(items
            .iter()
            .map(|item| match self.item_failure(item.ciphertext.as_bytes()) {
                Some(error) => Err(error),
                None => self
                    .find_ciphertext(key, item)
                    .map(|secret| secret.plaintext),
            })
            .collect())
    }

    /// Vault's rewrap takes no associated data: a ciphertext made with some does not
    /// open, so it cannot be rewrapped.
    pub(super) fn rewrap(&mut self, key: &str, items: &[Sealed<'_>]) -> Answer<String> {
        let version = self.version(key)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(match self.item_failure(item.ciphertext.as_bytes()) {
                Some(error) => Err(error),
                None => self
                    .find_ciphertext(key, item)
                    .map(|secret| self.issue_ciphertext(version, secret)),
            });
        }
        Ok(results)
    }

    pub(super) fn hmac(&mut self, key: &str, inputs: &[Vec<u8>]) -> Answer<String> {
        let version = self.version(key)?;
        Ok(inputs
            .iter()
            .map(|input| match self.item_failure(input) {
                Some(error) => Err(error),
                None => Ok(format!(
                    "vault:v{version}:{}",
                    base64(&digest(key, version, input))
                )),
            })
            .collect())
    }

    /// Seals in format version 2, or in version 3 with `flags` (the compression and
    /// padding bits set as the host sets them). The body stands in for nonce,
    /// ciphertext and tag; nothing is compressed or padded.
    pub(super) fn seal(
        &mut self,
        key: &str,
        context: Option<&[u8]>,
        items: &[SealItem],
        v3: Option<Flags>,
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        // As the host does: no data key for a name readers would refuse in an envelope.
        envelope_format::check_key_name(key.as_bytes()).map_err(|reason| {
            TransitError::InvalidInput(format!(
                "an envelope's key name must be a transit key name: {reason}"
            ))
        })?;
        if self.forgotten.contains(key) {
            return Err(TransitError::InvalidInput(FORGOTTEN.into()));
        }
        let version = self.version(key)?;
        if let Some(error) = items
            .iter()
            .find_map(|item| self.item_failure(&item.plaintext))
        {
            return Err(error);
        }
        let context = context.map(<[u8]>::to_vec);
        let slot = (key.to_string(), context.clone());
        let wrapped = match self.data_keys.get(&slot) {
            Some((minted, wrapped)) if *minted == version => wrapped.clone(),
            // A rotation (or a first seal): a fresh data key, wrapped by the new version.
            _ => {
                let data_key = Secret {
                    key: key.into(),
                    context: context.clone(),
                    aad: Vec::new(),
                    plaintext: self.next_name().into_bytes(),
                };
                let wrapped = self.issue_ciphertext(version, data_key);
                self.data_keys.insert(slot, (version, wrapped.clone()));
                wrapped
            }
        };
        let data_key = self.ciphertexts[&wrapped].plaintext.clone();
        let written = match v3 {
            None => envelope_format::header(key, &wrapped),
            Some(flags) => envelope_format::header_v3(flags, key, &commitment(&data_key), &wrapped),
        };
        let (header, authenticated) =
            written.map_err(|error| TransitError::Other(error.to_string()))?;
        items
            .iter()
            .map(|item| {
                // Nonce, ciphertext and tag stand in as a name, 28 bytes like the smallest.
                let body = format!("{:<28}", self.next_name()).into_bytes();
                let secret = Secret {
                    key: key.into(),
                    context: context.clone(),
                    aad: [&header[..authenticated], &item.aad].concat(),
                    plaintext: item.plaintext.clone(),
                };
                self.envelopes
                    .insert((data_key.clone(), body.clone()), secret);
                Ok([&header[..], &body].concat())
            })
            .collect()
    }

    /// The host's checks of `seal-v3`'s options: the flags it refuses, the body bits it
    /// sets itself.
    pub(super) fn seal_v3(
        &mut self,
        key: &str,
        context: Option<&[u8]>,
        options: SealOptions,
        items: &[SealItem],
    ) -> Result<Vec<Vec<u8>>, TransitError> {
        let flags = Flags::parse(options.flags).map_err(|bits| {
            TransitError::InvalidInput(format!(
                "seal-options.flags 0x{bits:02x} has bits no envelope format gives a meaning"
            ))
        })?;
        let compression = match options.compression {
            WitCompression::None => Compression::None,
            WitCompression::Zstd => Compression::Zstd,
            WitCompression::Lz4 => Compression::Lz4,
        };
        let flags = flags.with_body(compression, options.pad_to > 0);
        self.seal(key, context, items, Some(flags))
    }

    /// What an envelope holds, as the host opens it: its wrapped data key unwrapped
    /// under `key` and `context` (so `min_decryption_version` applies), the key
    /// commitment of version 3, then the body under its authenticated header and `aad`.
    pub(super) fn open_one(
        &self,
        key: &str,
        context: Option<&[u8]>,
        item: &OpenItem,
    ) -> Result<Vec<u8>, TransitError> {
        let header = envelope_format::parse(&item.envelope)
            .map_err(|error| TransitError::InvalidInput(error.to_string()))?;
        if header.key_name != key {
            // As the host says it: the envelope's key name is the record's, not quoted.
            return Err(TransitError::InvalidInput(format!(
                "envelope was sealed with another Vault key than the one this policy opens, {key:?}"
            )));
        }
        let unwrap = Sealed {
            ciphertext: header.wrapped_key,
            context,
            aad: &[],
        };
        let data_key = self.find_ciphertext(key, &unwrap).map_err(|error| {
            let TransitError::InvalidInput(message) = error else {
                return error;
            };
            TransitError::InvalidInput(format!(
                "the envelope's data key could not be unwrapped: {message}"
            ))
        })?;
        if header
            .commitment
            .is_some_and(|found| *found != commitment(&data_key.plaintext))
        {
            return Err(TransitError::InvalidInput(
                "envelope's key commitment does not match its data key (its wrapped key was \
                 swapped for another data key's)"
                    .into(),
            ));
        }
        match self
            .envelopes
            .get(&(data_key.plaintext, header.body.to_vec()))
        {
            None => Err(TransitError::InvalidInput(
                "not an envelope that envelope::seal returned (malformed, truncated or \
                 tampered with)"
                    .into(),
            )),
            Some(secret) if secret.aad != [header.authenticated, &item.aad].concat() => {
                Err(TransitError::InvalidInput(AUTHENTICATION_FAILED.into()))
            }
            Some(secret) => Ok(secret.plaintext.clone()),
        }
    }

    pub(super) fn open(
        &mut self,
        key: &str,
        context: Option<&[u8]>,
        items: &[OpenItem],
    ) -> Answer<Vec<u8>> {
        self.version(key)?;
        Ok(items
            .iter()
            .map(|item| match self.item_failure(&item.envelope) {
                Some(error) => Err(error),
                None => self.open_one(key, context, item),
            })
            .collect())
    }

    pub(super) fn sink_topic(&self, source_topic: &str) -> Result<String, String> {
        if self.sink_topics.is_empty() {
            return Err(NO_PIPELINE.into());
        }
        self.sink_topics.get(source_topic).cloned().ok_or_else(|| {
            format!(
                "sink.topic gives no topic for records of this source topic (the test never \
                 called Host::set_sink_topic({source_topic:?}, ...))"
            )
        })
    }
}

/// A stand-in key commitment: 32 bytes that depend on the (stand-in) data key.
fn commitment(data_key: &[u8]) -> [u8; envelope_format::COMMITMENT_LEN] {
    let mut out = [0; envelope_format::COMMITMENT_LEN];
    out.copy_from_slice(&digest("commitment", 0, data_key));
    out
}

/// 32 bytes that depend on every byte of the key name, the version and the input
/// (FNV-1a in four lanes): stable and distinct, as HMACs are, but not a MAC.
pub(super) fn digest(key: &str, version: u32, input: &[u8]) -> Vec<u8> {
    let version = version.to_be_bytes();
    (0u8..4)
        .flat_map(|lane| {
            let bytes = [&[lane][..], key.as_bytes(), &[0], &version, input];
            let hash = bytes
                .concat()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                    (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            hash.to_be_bytes()
        })
        .collect()
}

/// Standard base64 with padding, as Vault writes it.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (i, byte)| {
            bits | u32::from(*byte) << (16 - 8 * i)
        });
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}
