//! A record read back from a protected topic: formats 1/2 (no protection header) or 3.

use std::collections::HashMap;

use super::{ProtectionConfig, RecordKeys, Role, Shape, Streams};
use crate::batch::Batch;
use crate::envelope_format::record::{
    self, Compression, Flags, RecordKeys as KeyFlags, PROTECTION_HEADER,
};
use crate::transit::{self, DecryptItem, TransitError};
use crate::{failure_from_transit, without_stamps, Failure, Header, SourceRecord};

/// A record being opened or rewrapped. `extra` is the policy's own state.
#[derive(Debug)]
pub struct Incoming<T> {
    /// The record key as received: what the binding holds.
    pub received_key: Option<Vec<u8>>,
    /// The record key as it leaves: restored by [`restore_keys`] or rewrapped by
    /// [`rewrap_keys`], until then the received one.
    pub key: Option<Vec<u8>>,
    /// Opening: the headers without the protection header and kafka-transit's stamps,
    /// the sealed ones appended by [`Incoming::restore`]. Rewrapping: all, as received.
    pub headers: Vec<Header>,
    pub value: Option<Vec<u8>>,
    /// The protection header's flags; `None` for formats 1/2.
    pub flags: Option<Flags>,
    /// The stream name, when the flags bind it or the key is encrypted under it.
    pub stream: Option<String>,
    pub extra: T,
}

impl ProtectionConfig {
    /// A record prepared for opening or rewrapping: its protection header read and held
    /// to what the policy accepts, before any Vault call.
    pub fn incoming<T>(
        &self,
        record: SourceRecord,
        streams: &mut Streams,
        extra: T,
    ) -> Result<Incoming<T>, Failure> {
        let flags = protection_flags(&record.headers)?;
        let invalid = |why: String| Err(Failure::InvalidInput(why));
        match flags {
            None if self.require_binding.any() => {
                return invalid(format!(
                    "the record is not bound (it has no {PROTECTION_HEADER} header: format 1 \
                     or 2), and policy.config.require_binding = {}",
                    self.require_binding.describe()
                ))
            }
            Some(flags) if !self.require_binding.met_by(flags) => {
                return invalid(format!(
                    "the record is bound to less than policy.config.require_binding = {} \
                     (its {PROTECTION_HEADER} header is {:?})",
                    self.require_binding.describe(),
                    flags.header_value()
                ))
            }
            _ => {}
        }
        if let Some(flags) = flags {
            let body = flags.compression() != Compression::None || flags.padded();
            if body && self.shape != Shape::Envelope {
                return invalid(format!(
                    "the {PROTECTION_HEADER} header says the value is compressed or padded, \
                     which only envelopes are"
                ));
            }
            if flags.headers() && self.shape == Shape::Fields {
                return invalid(format!(
                    "the {PROTECTION_HEADER} header says headers are sealed in the value, \
                     which a field policy never does"
                ));
            }
        }
        let key_flags = flags.map_or(KeyFlags::Kept, Flags::record_keys);
        let restoring = match (self.role, key_flags) {
            (Role::Open, KeyFlags::Hmac) if !self.keep_hmac_keys => {
                return invalid(
                    "the record's key is an HMAC (its kafka-transit.protection header says \
                     so), which cannot be turned back into the source key; set \
                     policy.config.keep_hmac_keys = true to pass such keys on as they are"
                        .into(),
                )
            }
            (Role::Open, KeyFlags::Encrypted) => true,
            (Role::Rewrap, KeyFlags::Encrypted) => self.record_keys == RecordKeys::Encrypt,
            _ => false,
        };
        if restoring {
            if self.record_keys_key.is_none() {
                return Err(Failure::PolicyError(
                    "the record's key is encrypted (its kafka-transit.protection header says \
                     so): set policy.config.record_keys_key to the transit key that encrypted \
                     it"
                    .into(),
                ));
            }
            if record
                .key
                .as_deref()
                .is_some_and(|key| !key.starts_with(b"vault:v"))
            {
                return invalid(
                    "the record's key is not a Vault ciphertext (vault:v...), though its \
                     kafka-transit.protection header says it is encrypted"
                        .into(),
                );
            }
        }
        let stream = match flags {
            Some(flags) if flags.stream() || key_flags == KeyFlags::Encrypted => {
                Some(streams.of(&record.topic)?)
            }
            _ => None,
        };
        let headers = match self.role {
            Role::Rewrap => record.headers,
            _ => without_stamps(record.headers)
                .into_iter()
                .filter(|header| header.key != PROTECTION_HEADER)
                .collect(),
        };
        Ok(Incoming {
            received_key: record.key.clone(),
            key: record.key,
            headers,
            value: record.value,
            flags,
            stream,
            extra,
        })
    }
}

/// The flags of a record's protection header; `None` without one.
fn protection_flags(headers: &[Header]) -> Result<Option<Flags>, Failure> {
    let mut found = headers.iter().filter(|h| h.key == PROTECTION_HEADER);
    let Some(header) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(Failure::InvalidInput(format!(
            "the record has more than one {PROTECTION_HEADER} header"
        )));
    }
    let value = header.value.as_deref().ok_or_else(|| {
        Failure::InvalidInput(format!("the {PROTECTION_HEADER} header has no value"))
    })?;
    Flags::from_header_value(value)
        .map(Some)
        .map_err(|error| Failure::InvalidInput(error.to_string()))
}

impl<T> Incoming<T> {
    /// The binding data the record's ciphertexts were made with (`pointer`: a field's):
    /// its flags, its stream, its key as received. Formats 1/2 have none.
    pub fn binding(&self, pointer: Option<&str>) -> Option<Vec<u8>> {
        let flags = self.flags?;
        Some(record::binding(
            flags,
            self.stream.as_deref().unwrap_or_default(),
            self.received_key.as_deref(),
            pointer,
        ))
    }

    /// The binding data with the key as it leaves (rewrapped): what a rewrapped
    /// ciphertext is made with.
    pub fn rebinding(&self, pointer: Option<&str>) -> Option<Vec<u8>> {
        let flags = self.flags?;
        Some(record::binding(
            flags,
            self.stream.as_deref().unwrap_or_default(),
            self.key.as_deref(),
            pointer,
        ))
    }

    /// [`Incoming::binding`] without prefix and flags: an envelope's `aad`.
    pub fn binding_parts(&self) -> Vec<u8> {
        self.parts(self.received_key.as_deref())
    }

    /// [`Incoming::rebinding`] without prefix and flags.
    pub fn rebinding_parts(&self) -> Vec<u8> {
        self.parts(self.key.as_deref())
    }

    fn parts(&self, key: Option<&[u8]>) -> Vec<u8> {
        match self.flags {
            None => Vec::new(),
            Some(flags) => {
                record::binding_parts(flags, self.stream.as_deref().unwrap_or_default(), key, None)
            }
        }
    }

    /// Whether the key leaves other than it came (rewrapped to a new version).
    pub fn key_changed(&self) -> bool {
        self.key != self.received_key
    }

    /// The value of an opened plaintext: with sealed headers, the frame's value, its
    /// headers appended, in order, after the ones that stayed in clear.
    pub fn restore(&mut self, plaintext: Vec<u8>) -> Result<Vec<u8>, Failure> {
        if !self.flags.is_some_and(Flags::headers) {
            return Ok(plaintext);
        }
        let (sealed, value) =
            record::unframe(&plaintext).map_err(|e| Failure::InvalidInput(e.to_string()))?;
        self.headers
            .extend(sealed.into_iter().map(|(key, value)| Header { key, value }));
        Ok(value.to_vec())
    }
}

/// Restores each encrypted record key (flags `0x40`): one Vault `decrypt` under
/// `record_keys_key` for the batch's distinct (stream, key) pairs, the stream as
/// context.
pub fn restore_keys<T>(batch: &mut Batch<Incoming<T>>, config: &ProtectionConfig) {
    key_step(
        batch,
        config,
        "vault decrypt (record keys)",
        transit::decrypt,
        |plain| plain,
    );
}

/// Rewraps each encrypted record key to `record_keys_key`'s latest version (with
/// `record_keys = "encrypt"`): one Vault `rewrap` for the batch's distinct keys. A
/// convergent key gives the same new key for the same source key, so compaction
/// converges again after a rotation.
pub fn rewrap_keys<T>(batch: &mut Batch<Incoming<T>>, config: &ProtectionConfig) {
    if config.record_keys != RecordKeys::Encrypt {
        return;
    }
    key_step(
        batch,
        config,
        "vault rewrap (record keys)",
        transit::rewrap,
        String::into_bytes,
    );
}

type Answer<O> = Result<Vec<Result<O, TransitError>>, TransitError>;

fn key_step<T, O: Clone>(
    batch: &mut Batch<Incoming<T>>,
    config: &ProtectionConfig,
    what: &str,
    call: impl FnOnce(&str, &[DecryptItem]) -> Answer<O>,
    into_key: impl Fn(O) -> Vec<u8>,
) {
    let Some(transit_key) = config.record_keys_key.as_deref() else {
        return;
    };
    let encrypted = |incoming: &Incoming<T>| {
        incoming
            .flags
            .is_some_and(|flags| flags.record_keys() == KeyFlags::Encrypted)
    };
    let mut index: HashMap<(String, Vec<u8>), usize> = HashMap::new();
    let mut items: Vec<DecryptItem> = Vec::new();
    for incoming in batch.working() {
        if !encrypted(incoming) {
            continue;
        }
        let (Some(key), Some(stream)) = (&incoming.received_key, &incoming.stream) else {
            continue;
        };
        index
            .entry((stream.clone(), key.clone()))
            .or_insert_with(|| {
                items.push(DecryptItem {
                    // Checked by `incoming`: "vault:v..." text.
                    ciphertext: String::from_utf8_lossy(key).into_owned(),
                    context: Some(stream.as_bytes().to_vec()),
                });
                items.len() - 1
            });
    }
    if items.is_empty() {
        return;
    }
    let answers = match call(transit_key, &items) {
        Ok(results) if results.len() == items.len() => Ok(results),
        Ok(results) => Err(Failure::PolicyError(format!(
            "{what}: host returned {} results for {} items",
            results.len(),
            items.len()
        ))),
        Err(error) => Err(failure_from_transit(error, what)),
    };
    batch.each(|incoming| {
        if !encrypted(incoming) {
            return Ok(());
        }
        let (Some(key), Some(stream)) = (&incoming.received_key, &incoming.stream) else {
            return Ok(());
        };
        let slot = index[&(stream.clone(), key.clone())];
        match &answers {
            Err(failure) => Err(failure.clone()),
            Ok(results) => match &results[slot] {
                Ok(answer) => {
                    incoming.key = Some(into_key(answer.clone()));
                    Ok(())
                }
                Err(error) => Err(failure_from_transit(error.clone(), what)),
            },
        }
    });
}
