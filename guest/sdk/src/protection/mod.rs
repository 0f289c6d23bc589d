//! Format 3 (docs/protected-records.md): record keys encrypted or HMAC'd on the sink,
//! headers sealed inside the protected value, every ciphertext bound to its stream, its
//! record key and (fields) its place in the document, envelopes compressed and padded;
//! and the `kafka-transit.protection` header that tells a reader how to open a record.
//!
//! The bytes (flags, binding data, the frame, padding) are the envelope-format crate's
//! [`record`](crate::envelope_format::record) module, the host's too; this module is the
//! policies' side:
//!
//! - [`ProtectionConfig`]: the options of `[policy.config]`, taken out of a policy's
//!   configuration ([`Protected::parse`]) and checked for what the policy is ([`Role`],
//!   [`Shape`]). With none set, a protecting policy writes formats 1/2 exactly as
//!   before;
//! - [`Outgoing`] and [`protect_keys`]: a record on its way to the sink (headers split
//!   into kept and sealed, the stream, the record key encrypted or HMAC'd in one Vault
//!   call for the batch's distinct keys), and the binding data of its ciphertexts;
//! - [`Incoming`], [`restore_keys`] and [`rewrap_keys`]: a record read back (its
//!   protection header checked against `require_binding`, the binding rebuilt from its
//!   flags and the key as received), its sealed headers restored, its key decrypted, or
//!   rewrapped to the key's latest version;
//! - [`Streams`]: each record's stream name, `stream` or else the sink topic
//!   (protecting: `pipeline::sink_topic`) or the record's own topic (opening and
//!   rewrapping read what a protecting pipeline wrote).
//!
//! The steps run over a [`Batch`](crate::batch::Batch), so a record that fails one is
//! decided there and the others go on.

mod config;
mod incoming;
mod outgoing;

use std::collections::HashMap;

pub use config::{
    Binding, Headers, ProtectionConfig, RecordKeys, Role, Shape, MAX_PAD_TO, OPTIONS,
};
pub use incoming::{restore_keys, rewrap_keys, Incoming};
pub use outgoing::{protect_keys, Outgoing};

use crate::envelope::{Compression as WitCompression, SealOptions};
use crate::envelope_format::record::{Compression, Flags, PROTECTION_HEADER};
use crate::envelope_format::{Header as EnvelopeHeader, FORMAT_VERSION_3};
use crate::{pipeline, Failure, Header, SourceRecord, TransitKeyConfig};

/// A policy's own configuration and its format 3 options.
#[derive(Debug, Clone)]
pub struct Protected<C> {
    pub config: C,
    pub protection: ProtectionConfig,
}

impl<C> Protected<C> {
    /// Takes the format 3 options out of `[policy.config]` (JSON text) for a policy of
    /// `role` and `shape`, and parses the rest with the policy's own `parse`.
    pub fn parse(
        json: &str,
        role: Role,
        shape: Shape,
        parse: impl FnOnce(&str) -> Result<C, String>,
    ) -> Result<Self, String> {
        let mut table = config::config_table(json)?;
        let protection = ProtectionConfig::take(&mut table, role, shape)?;
        let config = parse(&serde_json::Value::Object(table).to_string()).map_err(|error| {
            if error.contains("unknown field") {
                format!(
                    "{error} (or one of the format 3 options: {}; see docs/protected-records.md)",
                    OPTIONS.join(", ")
                )
            } else {
                error
            }
        })?;
        Ok(Protected { config, protection })
    }
}

impl ProtectionConfig {
    /// `context_from = "record-key"` takes a derived key's context from the record key,
    /// which is not the source's on the sink once record keys are encrypted or HMAC'd.
    pub fn check_context_from(&self, transit: &TransitKeyConfig) -> Result<(), String> {
        let changes_keys = match self.role {
            Role::Protect | Role::Rewrap => self.record_keys != RecordKeys::Keep,
            Role::Open => false,
        };
        if changes_keys && matches!(transit.context_from, crate::ContextSource::RecordKey) {
            return Err(
                "policy.config.context_from: \"record-key\" takes the context from the record \
                 key, which record_keys changes on the sink; use a fixed `context`, or \
                 record_keys = \"keep\""
                    .into(),
            );
        }
        Ok(())
    }
}

impl ProtectionConfig {
    /// The options of `envelope::seal_v3` for records written with `flags` (without
    /// body bits): this configuration's compression and padding.
    pub fn seal_options(&self, flags: Flags) -> SealOptions {
        seal_options(flags, self.compression, self.pad_to)
    }
}

/// `envelope::seal_v3`'s options.
pub fn seal_options(flags: Flags, compression: Compression, pad_to: u32) -> SealOptions {
    SealOptions {
        flags: flags.bits(),
        compression: match compression {
            Compression::None => WitCompression::None,
            Compression::Zstd => WitCompression::Zstd,
            Compression::Lz4 => WitCompression::Lz4,
        },
        pad_to,
    }
}

/// Whether an envelope may be opened (or rewrapped) as the record's protection header
/// says: a version 3 envelope only with a header whose flags are its own, a version 1
/// or 2 envelope only without one. Checked before any Vault call; a stripped, added or
/// edited header fails here or, being authenticated, at the tag.
pub fn check_envelope(envelope: &EnvelopeHeader<'_>, flags: Option<Flags>) -> Result<(), Failure> {
    let fail = |why: &str| Err(Failure::InvalidInput(why.into()));
    match (envelope.version, flags) {
        (FORMAT_VERSION_3, None) => fail(
            "a version 3 envelope without its kafka-transit.protection header (removed after              it was written?)",
        ),
        (FORMAT_VERSION_3, Some(flags)) if flags != envelope.flags => fail(
            "the envelope's flags differ from its record's kafka-transit.protection header",
        ),
        (FORMAT_VERSION_3, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => fail(
            "the record has a kafka-transit.protection header, but its envelope is of a              version before 3",
        ),
    }
}

/// Each record's stream name, asking the host for a source topic's sink topic once per
/// batch.
pub struct Streams {
    configured: Option<String>,
    role: Role,
    sinks: HashMap<String, Result<String, String>>,
}

impl Streams {
    pub fn new(config: &ProtectionConfig) -> Self {
        Streams {
            configured: config.stream.clone(),
            role: config.role,
            sinks: HashMap::new(),
        }
    }

    /// The stream of a record read from `topic`.
    pub fn of(&mut self, topic: &str) -> Result<String, Failure> {
        if let Some(stream) = &self.configured {
            return Ok(stream.clone());
        }
        if self.role != Role::Protect {
            return Ok(topic.to_string());
        }
        let sink = self
            .sinks
            .entry(topic.to_string())
            .or_insert_with(|| pipeline::sink_topic(topic));
        sink.clone().map_err(|why| {
            Failure::PolicyError(format!(
                "no stream to bind this record to: the sink topic is the default stream, and \
                 the host gave none ({why}); set policy.config.stream"
            ))
        })
    }
}

/// The protection header with `value`.
pub(crate) fn protection_header(value: String) -> Header {
    Header {
        key: PROTECTION_HEADER.into(),
        value: Some(value.into_bytes()),
    }
}

/// Whether `record` carries a protection header (format 3); a record without one is
/// format 1 or 2.
pub fn is_protected(record: &SourceRecord) -> bool {
    record.headers.iter().any(|h| h.key == PROTECTION_HEADER)
}

/// Whether a header is kafka-transit's own (`kafka-transit.*`): never sealed.
pub(crate) fn is_ours(name: &str) -> bool {
    name.starts_with("kafka-transit.")
}

#[cfg(test)]
mod tests;
