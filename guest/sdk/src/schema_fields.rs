//! Field-level protection of schema'd records: Avro, Protobuf and JSON Schema records
//! in Confluent's wire format, their schemas from the pipeline's Schema Registry (the
//! `schema-registry` import, WIT 0.2.2), the fields walked by the
//! `kafka-transit-schema-fields` crate.
//!
//! Fields are chosen by tag (`tags`, default `["PII"]`: Confluent's `confluent:tags`
//! in the schema) and by path (`fields`, JSON Pointers over the record's shape,
//! `/customer/ssn`, `*` for every element, value or field). Only string and bytes
//! fields are protected: a string field holds the ciphertext (`vault:v1:...`), a bytes
//! field its UTF-8 bytes, so the record keeps its schema id and every consumer with the
//! ordinary deserializer reads it. A schema that selects a field of another type fails
//! the record, never passes it in clear.
//!
//! **What fails how.** A value not in the wire format, an unknown schema id, a schema
//! that cannot be used or a body that does not decode under it: invalid input
//! (dead-lettered or the pipeline stops, as configured). The registry unreachable:
//! retryable (the pipeline pauses and retries the record). Reasons name the schema id
//! and schema paths, never record data.
//!
//! **Deterministic fields** (`deterministic = true`): each field is encrypted with its
//! located path (`/customer/ssn`) as the derivation context, under a key created with
//! `derived = true` and `convergent_encryption = true`. The same value in the same
//! place then always gives the same ciphertext, so two topics can be joined on it; it
//! also tells whoever reads the sink which records share a value (see
//! docs/security-model.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use kafka_transit_schema_fields::{wire, Pattern, Schema, SchemaText, Selection};
use serde::Deserialize;

pub use kafka_transit_schema_fields::{Field, FieldType};

use crate::protection::{Protected, Role, Shape};
use crate::schema_registry::{self, RegistryError, SchemaType as WitSchemaType};
use crate::transit::{DecryptItem, EncryptItem};
use crate::{
    parse_config, with_allowed_keys, ContextSource, Failure, KeyName, Prepared, ResolvedKey,
    SourceRecord, TransitKeyConfig,
};

/// Parsed schemas kept per instance, beyond which the cache starts again.
const MAX_CACHED_SCHEMAS: usize = 256;

/// The configuration of `encrypt-schema-fields` and `decrypt-schema-fields`.
#[derive(Debug)]
pub struct SchemaFieldsConfig {
    pub transit: TransitKeyConfig,
    pub selection: Selection,
    pub deterministic: bool,
    /// Schemas by id, parsed for `selection` (a registry never changes an id's schema).
    schemas: RefCell<HashMap<u32, Rc<Schema>>>,
}

/// A record's protected fields, and what is needed to write its value again.
#[derive(Debug)]
pub struct Located {
    /// The value's header (and for Protobuf its message indexes), copied as it came.
    prefix: Vec<u8>,
    body: Vec<u8>,
    located: kafka_transit_schema_fields::Located,
    /// The record's transit key; `None` when no field is present.
    pub key: Option<ResolvedKey>,
    context: Option<Vec<u8>>,
    deterministic: bool,
}

impl SchemaFieldsConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            key: KeyName,
            #[serde(default)]
            context: Option<String>,
            #[serde(default)]
            context_from: ContextSource,
            #[serde(default)]
            allowed_keys: Option<Vec<String>>,
            #[serde(default = "default_tags")]
            tags: Vec<String>,
            #[serde(default)]
            fields: Vec<String>,
            #[serde(default)]
            deterministic: bool,
        }
        fn default_tags() -> Vec<String> {
            vec!["PII".into()]
        }
        let raw: Raw = parse_config(json)?;
        if raw.tags.is_empty() && raw.fields.is_empty() {
            return Err(
                "policy.config: `tags` and `fields` are both empty, so no field would \
                        be protected; list tags (default [\"PII\"]) or field paths"
                    .into(),
            );
        }
        if raw.deterministic
            && (raw.context.is_some() || matches!(raw.context_from, ContextSource::RecordKey))
        {
            return Err(
                "policy.config: `deterministic = true` makes each field's path its \
                        derivation context; remove `context` and `context_from`"
                    .into(),
            );
        }
        let patterns = raw
            .fields
            .iter()
            .map(|text| Pattern::parse(text).map_err(|e| format!("policy.config.fields: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let transit = TransitKeyConfig {
            key: with_allowed_keys(raw.key, raw.allowed_keys)?,
            context: raw.context,
            context_from: raw.context_from,
        }
        .validated()?;
        Ok(SchemaFieldsConfig {
            transit,
            selection: Selection::new(raw.tags, patterns),
            deterministic: raw.deterministic,
            schemas: RefCell::new(HashMap::new()),
        })
    }

    /// The configuration with its format 3 options (`bind`, `record_keys`, `stream`,
    /// `require_binding`, ...), for a policy of `role`.
    pub fn parse_protected(json: &str, role: Role) -> Result<Protected<Self>, String> {
        let config = Protected::parse(json, role, Shape::Fields, Self::parse)?;
        config
            .protection
            .check_context_from(&config.config.transit)?;
        if config.config.deterministic && config.protection.bind.any() {
            // Vault's convergent nonce comes from the plaintext and the context alone: equal
            // values in one place under different associated data (another stream or
            // record key) would share a nonce, and two GCM tags under one nonce give away
            // the authentication key, so the binding could be forged.
            return Err(format!(
                "policy.config.bind: deterministic fields cannot be bound to {} (equal \
                 values would be encrypted under one nonce with different associated data, \
                 which lets the sink's operator forge the binding); remove `bind`, or \
                 `deterministic = true` (record_keys may stay)",
                config.protection.bind.describe()
            ));
        }
        Ok(config)
    }

    /// Finds a record's fields: unframes its value, gets its schema (once per id per
    /// instance), walks it. `Prepared::Forward` for a tombstone.
    pub fn locate(&self, record: &mut SourceRecord) -> Prepared<Located> {
        let Some(value) = record.value.as_deref() else {
            return Prepared::Forward;
        };
        match self.locate_value(value) {
            Ok((prefix_len, located)) => {
                let (key, context) = if located.is_empty() {
                    (None, None)
                } else {
                    match self.transit.key_and_context(record) {
                        Ok(resolved) => resolved,
                        Err(failure) => return Prepared::Fail(failure),
                    }
                };
                let mut value = record.value.take().unwrap_or_default();
                let body = value.split_off(prefix_len);
                Prepared::Item(Located {
                    prefix: value,
                    body,
                    located,
                    key,
                    context,
                    deterministic: self.deterministic,
                })
            }
            Err(failure) => Prepared::Fail(failure),
        }
    }

    fn locate_value(
        &self,
        value: &[u8],
    ) -> Result<(usize, kafka_transit_schema_fields::Located), Failure> {
        let invalid = |e: kafka_transit_schema_fields::Error| Failure::InvalidInput(e.to_string());
        let (id, body) = wire::unframe(value).map_err(invalid)?;
        let schema = self.schema(id)?;
        let in_schema = |e: kafka_transit_schema_fields::Error| {
            Failure::InvalidInput(format!("value (schema id {id}) {e}"))
        };
        let (message, message_body) = match schema.schema_type() {
            kafka_transit_schema_fields::SchemaType::Protobuf => {
                wire::message_indexes(body).map_err(in_schema)?
            }
            _ => (Vec::new(), body),
        };
        let prefix_len = value.len() - message_body.len();
        let located = schema.locate(message_body, &message).map_err(in_schema)?;
        Ok((prefix_len, located))
    }

    fn schema(&self, id: u32) -> Result<Rc<Schema>, Failure> {
        if let Some(schema) = self.schemas.borrow().get(&id) {
            return Ok(schema.clone());
        }
        let registered = schema_registry::schema_by_id(id).map_err(|error| match error {
            RegistryError::NotFound(reason) => Failure::InvalidInput(reason),
            RegistryError::Unavailable(reason) => Failure::Retryable(reason),
            RegistryError::Other(reason) => Failure::PolicyError(reason),
        })?;
        let text = SchemaText {
            schema_type: match registered.schema_type {
                WitSchemaType::Avro => kafka_transit_schema_fields::SchemaType::Avro,
                WitSchemaType::Protobuf => kafka_transit_schema_fields::SchemaType::Protobuf,
                WitSchemaType::Json => kafka_transit_schema_fields::SchemaType::Json,
            },
            text: registered.text,
            references: registered
                .references
                .into_iter()
                .map(|r| kafka_transit_schema_fields::Reference {
                    name: r.name,
                    text: r.text,
                })
                .collect(),
        };
        let schema = Rc::new(
            Schema::parse(&text, &self.selection)
                .map_err(|e| Failure::InvalidInput(format!("schema id {id}: {e}")))?,
        );
        let mut schemas = self.schemas.borrow_mut();
        if schemas.len() >= MAX_CACHED_SCHEMAS {
            schemas.clear();
        }
        schemas.insert(id, schema.clone());
        Ok(schema)
    }

    /// [`SchemaFieldsConfig::locate`], then the fields' contents as items to encrypt.
    pub fn plaintext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Located, Vec<EncryptItem>)> {
        self.locate(record).and_then(|located| {
            let items = located.encrypt_items();
            Prepared::Item((located.key_or(self), located, items))
        })
    }

    /// [`SchemaFieldsConfig::locate`], then the fields' ciphertexts as items to
    /// decrypt. A present field that is not a ciphertext fails the record.
    pub fn ciphertext_items(
        &self,
        record: &mut SourceRecord,
    ) -> Prepared<(ResolvedKey, Located, Vec<DecryptItem>)> {
        self.locate(record)
            .and_then(|located| match located.decrypt_items() {
                Ok(items) => Prepared::Item((located.key_or(self), located, items)),
                Err(failure) => Prepared::Fail(failure),
            })
    }
}

impl Located {
    pub fn fields(&self) -> &[Field] {
        self.located.fields()
    }

    /// Each field's located path, in the order of the items: what a format 3
    /// ciphertext is bound to besides its record.
    pub fn located_paths(&self) -> Vec<&str> {
        self.located
            .fields()
            .iter()
            .map(|field| field.path.as_str())
            .collect()
    }

    /// The fields' contents, to encrypt.
    pub fn encrypt_items(&self) -> Vec<EncryptItem> {
        self.located
            .fields()
            .iter()
            .map(|field| EncryptItem {
                plaintext: field.content.clone(),
                context: self.context_of(field),
            })
            .collect()
    }

    /// The fields' ciphertexts, to decrypt; a present field that is not one fails the
    /// record.
    pub fn decrypt_items(&self) -> Result<Vec<DecryptItem>, Failure> {
        self.located
            .fields()
            .iter()
            .map(|field| match std::str::from_utf8(&field.content) {
                Ok(text) if text.starts_with("vault:v") => Ok(DecryptItem {
                    ciphertext: text.to_string(),
                    context: self.context_of(field),
                }),
                // The path may hold map keys: record data, never in a reason.
                _ => Err(Failure::InvalidInput(
                    "a field the schema selects is not a Vault transit ciphertext \
                     (expected vault:v<N>:...)"
                        .into(),
                )),
            })
            .collect()
    }

    fn context_of(&self, field: &Field) -> Option<Vec<u8>> {
        if self.deterministic {
            Some(field.path.as_bytes().to_vec())
        } else {
            self.context.clone()
        }
    }

    /// The key the record's items go to Vault under (the configured text when it has
    /// none: nothing is sent then).
    pub fn key_or(&self, config: &SchemaFieldsConfig) -> ResolvedKey {
        self.key
            .clone()
            .unwrap_or_else(|| ResolvedKey::fixed(config.transit.key.as_str()))
    }

    /// The key to name in the record's `kafka-transit.key` header.
    pub fn key_name<'a>(&'a self, config: &'a SchemaFieldsConfig) -> &'a str {
        self.key.as_deref().unwrap_or(config.transit.key.as_str())
    }

    /// The record's value with each field's content replaced, in order, by `contents`
    /// (ciphertext texts when protecting, plaintexts when opening).
    pub fn with_contents(self, contents: Vec<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        let body = self
            .located
            .replace(&self.body, &contents)
            .map_err(|e| Failure::InvalidInput(format!("value {e}")))?;
        let mut value = self.prefix;
        value.extend_from_slice(&body);
        Ok(value)
    }
}
