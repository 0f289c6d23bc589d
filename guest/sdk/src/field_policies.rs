//! The batch steps of the field policies, written once for JSON fields (`encrypt-fields`,
//! `decrypt-fields`, `rewrap-fields`: [`FieldsConfig`]) and schema'd ones
//! (`encrypt-schema-fields`, `decrypt-schema-fields`, `rewrap-schema-fields`:
//! [`SchemaFieldsConfig`]). What differs between them is how a record's fields are found
//! and written back ([`FieldPolicy`], [`FieldSet`]); what a field policy does with them
//! (one Vault batch request per batch and key, format 3 record keys and bindings,
//! `require_binding`, stamps) is the same, and lives here.

use crate::batch::{Batch, Start};
use crate::envelope_format::record::RecordKeys as KeyFlags;
use crate::fields::{FieldsConfig, Selected};
use crate::protection::{
    is_protected, protect_keys, restore_keys, rewrap_keys, Protected, Streams,
};
use crate::schema_fields::{Located, SchemaFieldsConfig};
use crate::transit::{self, BoundDecryptItem, BoundEncryptItem, DecryptItem, EncryptItem};
use crate::{
    forward, stamped, through_vault_keyed, ContextSource, Failure, OutputRecord, Prepared,
    ResolvedKey, SourceRecord, TransformResult, TransitKeyConfig,
};

/// How a field policy's configuration finds a record's fields.
pub trait FieldPolicy {
    type Fields: FieldSet;

    /// The record's fields and their contents to encrypt, under the record's transit
    /// key. `Forward`: a tombstone, or a value passed on unexamined.
    fn plaintext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Self::Fields, Vec<EncryptItem>)>;

    /// The record's fields and their ciphertexts to decrypt or rewrap; a field that is
    /// not a ciphertext fails the record.
    fn ciphertext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Self::Fields, Vec<DecryptItem>)>;

    fn transit(&self) -> &TransitKeyConfig;

    /// The key to name in the record's `kafka-transit.key` header.
    fn stamp_key(&self, fields: &Self::Fields) -> String;
}

/// A record's fields as found, ready to be written back.
pub trait FieldSet {
    /// Each field's located path, in item order: what a format 3 ciphertext of it is
    /// bound to besides its record.
    fn paths(&self) -> Vec<&str>;

    /// The value with each field replaced, in order, by its ciphertext text.
    fn with_ciphertexts(self, ciphertexts: Vec<String>) -> Result<Vec<u8>, Failure>;

    /// The value with each field replaced, in order, by its plaintext.
    fn with_plaintexts(self, plaintexts: Vec<Vec<u8>>) -> Result<Vec<u8>, Failure>;
}

impl FieldPolicy for FieldsConfig {
    type Fields = Selected;

    fn plaintext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Selected, Vec<EncryptItem>)> {
        FieldsConfig::plaintext_items(self, record)
    }

    fn ciphertext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Selected, Vec<DecryptItem>)> {
        FieldsConfig::ciphertext_items(self, record)
    }

    fn transit(&self) -> &TransitKeyConfig {
        &self.transit
    }

    fn stamp_key(&self, fields: &Selected) -> String {
        fields.key_or(self).to_string()
    }
}

impl FieldSet for Selected {
    fn paths(&self) -> Vec<&str> {
        self.located_pointers()
    }

    fn with_ciphertexts(self, ciphertexts: Vec<String>) -> Result<Vec<u8>, Failure> {
        Ok(Selected::with_ciphertexts(self, ciphertexts))
    }

    fn with_plaintexts(self, plaintexts: Vec<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        Selected::with_plaintexts(self, plaintexts)
    }
}

impl FieldPolicy for SchemaFieldsConfig {
    type Fields = Located;

    fn plaintext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Located, Vec<EncryptItem>)> {
        SchemaFieldsConfig::plaintext_items(self, record)
    }

    fn ciphertext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Located, Vec<DecryptItem>)> {
        SchemaFieldsConfig::ciphertext_items(self, record)
    }

    fn transit(&self) -> &TransitKeyConfig {
        &self.transit
    }

    fn stamp_key(&self, fields: &Located) -> String {
        fields.key_name(self).to_string()
    }
}

impl FieldSet for Located {
    fn paths(&self) -> Vec<&str> {
        self.located_paths()
    }

    fn with_ciphertexts(self, ciphertexts: Vec<String>) -> Result<Vec<u8>, Failure> {
        self.with_contents(ciphertexts.into_iter().map(String::into_bytes).collect())
    }

    fn with_plaintexts(self, plaintexts: Vec<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        self.with_contents(plaintexts)
    }
}

/// A record's fields with their transit key and items, between the steps of a batch.
struct Work<F, I> {
    key: ResolvedKey,
    fields: F,
    items: Vec<I>,
}

/// `encrypt-fields`, `encrypt-schema-fields`: each record's fields encrypted, the record
/// stamped with `policy` and its key. Formats 1/2 unless a format 3 option is set; then
/// record keys are protected first, and each field is bound to the record (as on the
/// sink) and its place.
pub fn protect<P: FieldPolicy>(
    config: &Protected<P>,
    batch: Vec<SourceRecord>,
    policy: &str,
) -> Vec<TransformResult> {
    let (fields, protection) = (&config.config, &config.protection);
    if !protection.is_format3() {
        return through_vault_keyed(
            batch,
            "vault encrypt",
            |record| fields.plaintext_items(record),
            transit::encrypt,
            |record, found, ciphertexts| {
                let headers = stamped(record.headers, policy, &fields.stamp_key(&found));
                Ok(OutputRecord {
                    topic: None,
                    key: record.key,
                    value: Some(found.with_ciphertexts(ciphertexts)?),
                    headers,
                })
            },
        );
    }
    let flags = protection.flags();
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let work = match fields.plaintext_items(&mut record) {
            // A tombstone, or a value passed on unexamined: its key is still protected.
            Prepared::Forward => None,
            Prepared::Item((key, found, items)) => Some(Work {
                key,
                fields: found,
                items,
            }),
            Prepared::Fail(failure) => return Start::Fail(failure),
        };
        let stamp = work.as_ref().map(|work| fields.stamp_key(&work.fields));
        match protection.outgoing(record, &mut streams, Sealing { work, stamp }) {
            Ok(out) => Start::Work(out),
            Err(failure) => Start::Fail(failure),
        }
    });
    protect_keys(&mut batch, protection);
    batch.vault(
        "vault encrypt",
        |out| {
            // Bound to the record key as it will be on the sink (protected above).
            let bindings = match &out.extra.work {
                Some(work) => {
                    field_bindings(&work.fields, |path| Some(out.binding(flags, Some(path))))
                }
                None => Vec::new(),
            };
            let Some(work) = out.extra.work.as_mut().filter(|w| !w.items.is_empty()) else {
                return Ok(None);
            };
            let items = std::mem::take(&mut work.items)
                .into_iter()
                .zip(bindings)
                .map(|(item, associated_data)| BoundEncryptItem {
                    plaintext: item.plaintext,
                    context: item.context,
                    associated_data,
                })
                .collect();
            Ok(Some((work.key.clone(), items)))
        },
        transit::encrypt_bound,
        |out, ciphertexts| {
            if let Some(work) = out.extra.work.take() {
                out.value = Some(work.fields.with_ciphertexts(ciphertexts)?);
            }
            Ok(())
        },
    );
    batch.finish(|mut out| {
        // Fields looked for, none present: the value as it came.
        if let Some(work) = out.extra.work.take() {
            out.value = Some(work.fields.with_ciphertexts(Vec::new())?);
        }
        let stamp = out.extra.stamp.take();
        Ok(out.output(protection, stamp.as_deref().map(|key| (policy, key))))
    })
}

/// A record being protected in format 3: its fields (`None`: a tombstone, or a value
/// passed on unexamined) and the key its stamp names (stamped when it had fields to
/// look at).
struct Sealing<F> {
    work: Option<Work<F, EncryptItem>>,
    stamp: Option<String>,
}

/// `decrypt-fields`, `decrypt-schema-fields`: each record's fields decrypted, format 3
/// ones with the binding rebuilt from the record as received; encrypted record keys
/// restored; `require_binding` enforced. The kafka-transit headers are dropped.
pub fn open<P: FieldPolicy>(
    config: &Protected<P>,
    batch: Vec<SourceRecord>,
) -> Vec<TransformResult> {
    let (fields, protection) = (&config.config, &config.protection);
    let key_context = matches!(fields.transit().context_from, ContextSource::RecordKey);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let protected = is_protected(&record);
        let work = match fields.ciphertext_items(&mut record) {
            // Formats 1/2 pass on as they always did.
            Prepared::Forward if !protected && !protection.require_binding.any() => {
                return Start::Output(forward(record))
            }
            Prepared::Forward => None,
            Prepared::Item((key, found, items)) => Some(Work {
                key,
                fields: found,
                items,
            }),
            Prepared::Fail(failure) => return Start::Fail(failure),
        };
        match protection.incoming(record, &mut streams, work) {
            Ok(incoming)
                if key_context
                    && incoming
                        .flags
                        .is_some_and(|flags| flags.record_keys() != KeyFlags::Kept)
                    && incoming
                        .extra
                        .as_ref()
                        .is_some_and(|work| !work.items.is_empty()) =>
            {
                Start::Fail(Failure::InvalidInput(
                    "policy.config.context_from = \"record-key\" cannot open a record whose \
                     key is encrypted or HMAC'd (its kafka-transit.protection header says so)"
                        .into(),
                ))
            }
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    restore_keys(&mut batch, protection);
    // Formats 1/2: no associated data.
    batch.vault(
        "vault decrypt",
        |incoming| match (&mut incoming.extra, incoming.flags) {
            (Some(work), None) => Ok(Some((work.key.clone(), std::mem::take(&mut work.items)))),
            _ => Ok(None),
        },
        transit::decrypt,
        |incoming, plaintexts| {
            if let Some(work) = incoming.extra.take() {
                incoming.value = Some(work.fields.with_plaintexts(plaintexts)?);
            }
            Ok(())
        },
    );
    // Format 3: each field's binding rebuilt from the record as received.
    batch.vault(
        "vault decrypt",
        |incoming| {
            if incoming.flags.is_none() {
                return Ok(None);
            }
            let bindings = match &incoming.extra {
                Some(work) => field_bindings(&work.fields, |path| incoming.binding(Some(path))),
                None => Vec::new(),
            };
            let Some(work) = &mut incoming.extra else {
                return Ok(None);
            };
            Ok(Some((
                work.key.clone(),
                bound(std::mem::take(&mut work.items), bindings),
            )))
        },
        transit::decrypt_bound,
        |incoming, plaintexts| {
            if let Some(work) = incoming.extra.take() {
                incoming.value = Some(work.fields.with_plaintexts(plaintexts)?);
            }
            Ok(())
        },
    );
    batch.finish(|incoming| {
        Ok(OutputRecord {
            topic: None,
            key: incoming.key,
            // Fields looked for, none present: the value as it came.
            value: match incoming.extra {
                Some(work) => Some(work.fields.with_plaintexts(Vec::new())?),
                None => incoming.value,
            },
            headers: incoming.headers,
        })
    })
}

/// A record being rewrapped: its fields, and the contexts and plaintexts its format 3
/// fields are sealed again with.
struct Rewrap<F> {
    work: Work<F, DecryptItem>,
    contexts: Vec<Option<Vec<u8>>>,
    plaintexts: Vec<Vec<u8>>,
}

/// `rewrap-fields`, `rewrap-schema-fields`: each record's fields moved to the transit
/// key's latest version, inside Vault (`transit/rewrap`) for formats 1/2. Format 3 fields
/// were encrypted with associated data, which Vault's rewrap does not take: they are
/// decrypted and encrypted again with their binding (the key as it leaves: encrypted
/// record keys are rewrapped with `record_keys = "encrypt"`).
pub fn rewrap<P: FieldPolicy>(
    config: &Protected<P>,
    batch: Vec<SourceRecord>,
) -> Vec<TransformResult> {
    let (fields, protection) = (&config.config, &config.protection);
    let mut streams = Streams::new(protection);
    let mut batch = Batch::new(batch, |mut record| {
        let protected = is_protected(&record);
        let rewrap = match fields.ciphertext_items(&mut record) {
            Prepared::Forward if !protected => return Start::Output(forward(record)),
            Prepared::Forward => None,
            Prepared::Item((key, found, items)) => Some(Rewrap {
                contexts: items.iter().map(|item| item.context.clone()).collect(),
                work: Work {
                    key,
                    fields: found,
                    items,
                },
                plaintexts: Vec::new(),
            }),
            Prepared::Fail(failure) => return Start::Fail(failure),
        };
        match protection.incoming(record, &mut streams, rewrap) {
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    rewrap_keys(&mut batch, protection);
    // Formats 1/2: inside Vault.
    batch.vault(
        "vault rewrap",
        |incoming| match (&mut incoming.extra, incoming.flags) {
            (Some(rewrap), None) => Ok(Some((
                rewrap.work.key.clone(),
                std::mem::take(&mut rewrap.work.items),
            ))),
            _ => Ok(None),
        },
        transit::rewrap,
        |incoming, ciphertexts| {
            if let Some(rewrap) = incoming.extra.take() {
                incoming.value = Some(rewrap.work.fields.with_ciphertexts(ciphertexts)?);
            }
            Ok(())
        },
    );
    // Format 3: open each field with its binding, encrypt it with the binding it leaves
    // with (the record's key may have been rewrapped).
    batch.vault(
        "vault decrypt",
        |incoming| {
            if incoming.flags.is_none() {
                return Ok(None);
            }
            let bindings = match &incoming.extra {
                Some(rewrap) => {
                    field_bindings(&rewrap.work.fields, |path| incoming.binding(Some(path)))
                }
                None => Vec::new(),
            };
            let Some(rewrap) = &mut incoming.extra else {
                return Ok(None);
            };
            let items = std::mem::take(&mut rewrap.work.items);
            Ok(Some((rewrap.work.key.clone(), bound(items, bindings))))
        },
        transit::decrypt_bound,
        |incoming, plaintexts| {
            if let Some(rewrap) = &mut incoming.extra {
                rewrap.plaintexts = plaintexts;
            }
            Ok(())
        },
    );
    batch.vault(
        "vault encrypt",
        |incoming| {
            if incoming.flags.is_none() {
                return Ok(None);
            }
            let bindings = match &incoming.extra {
                Some(rewrap) => {
                    field_bindings(&rewrap.work.fields, |path| incoming.rebinding(Some(path)))
                }
                None => Vec::new(),
            };
            let Some(rewrap) = &mut incoming.extra else {
                return Ok(None);
            };
            let items = std::mem::take(&mut rewrap.plaintexts)
                .into_iter()
                .zip(std::mem::take(&mut rewrap.contexts))
                .zip(bindings)
                .map(|((plaintext, context), associated_data)| BoundEncryptItem {
                    plaintext,
                    context,
                    associated_data,
                })
                .collect();
            Ok(Some((rewrap.work.key.clone(), items)))
        },
        transit::encrypt_bound,
        |incoming, ciphertexts| {
            if let Some(rewrap) = incoming.extra.take() {
                incoming.value = Some(rewrap.work.fields.with_ciphertexts(ciphertexts)?);
            }
            Ok(())
        },
    );
    batch.finish(|incoming| {
        Ok::<_, Failure>(OutputRecord {
            topic: None,
            key: incoming.key,
            // Fields looked for, none present: the value as it came.
            value: match incoming.extra {
                Some(rewrap) => Some(rewrap.work.fields.with_ciphertexts(Vec::new())?),
                None => incoming.value,
            },
            headers: incoming.headers,
        })
    })
}

/// Decrypt items with their associated data.
fn bound(items: Vec<DecryptItem>, bindings: Vec<Vec<u8>>) -> Vec<BoundDecryptItem> {
    items
        .into_iter()
        .zip(bindings)
        .map(|(item, associated_data)| BoundDecryptItem {
            ciphertext: item.ciphertext,
            context: item.context,
            associated_data,
        })
        .collect()
}

/// The binding data of each field, made by `binding` with the field's located path.
fn field_bindings(
    fields: &impl FieldSet,
    binding: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<Vec<u8>> {
    fields.paths().into_iter().map_while(binding).collect()
}
