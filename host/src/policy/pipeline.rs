//! What a policy may know of the pipeline it runs in: the WIT `pipeline` interface
//! (0.2.1), and the limits the host applies on its behalf. The policy learns where its
//! outputs go, because ciphertexts are bound to that stream by default
//! (docs/protected-records.md); it learns nothing else of the configuration. The
//! pipeline's Schema Registry (`[schema_registry]`) is reached through this view too:
//! the `schema-registry` import (0.2.2) answers from it.

use std::sync::Arc;

use crate::config::{ConfigError, PipelineConfig, TuningConfig};
use crate::forget::ForgottenKeys;
use crate::schema_registry::SchemaRegistry;
use crate::topics::Route;

/// Room for a record's headers on top of its value, in a decompressed envelope.
const HEADERS_ALLOWANCE: usize = 64 * 1024;

/// A pipeline as its policy sees it.
#[derive(Debug)]
pub struct PipelineView {
    sink: Route,
    max_record_bytes: usize,
    schema_registry: Option<Arc<SchemaRegistry>>,
    /// The forgotten data subjects' keys, with `[forget]` (docs/forgetting.md).
    forgotten: Option<Arc<ForgottenKeys>>,
}

impl PipelineView {
    pub fn of(config: &PipelineConfig) -> Result<Arc<PipelineView>, ConfigError> {
        let schema_registry = match &config.schema_registry {
            None => None,
            Some(settings) => Some(Arc::new(SchemaRegistry::new(settings).map_err(
                |(field, message)| ConfigError::Invalid {
                    field: field.to_string(),
                    message,
                },
            )?)),
        };
        Ok(Arc::new(PipelineView {
            sink: config.sink_route()?,
            max_record_bytes: config.pipeline.max_record_bytes,
            schema_registry,
            forgotten: config
                .forget
                .as_ref()
                .map(|_| Arc::new(ForgottenKeys::default())),
        }))
    }

    /// Adds the Schema Registry client's instruments to `/metrics` (at 0 without
    /// `[schema_registry]`, so every runner exposes the same series).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        match &self.schema_registry {
            Some(client) => client.register_metrics(registry),
            None => SchemaRegistry::register_idle_metrics(registry),
        }
    }

    /// The keys of forgotten data subjects, filled by the forget topic's watcher, if
    /// `[forget]` is configured.
    pub fn forgotten(&self) -> Option<&Arc<ForgottenKeys>> {
        self.forgotten.as_ref()
    }

    /// The pipeline's Schema Registry, if `[schema_registry]` configures one.
    pub fn schema_registry(&self) -> Option<&Arc<SchemaRegistry>> {
        self.schema_registry.as_ref()
    }

    /// `sink.topic` rendered for records of `source_topic`.
    pub fn sink_topic(&self, source_topic: &str) -> Result<Arc<str>, String> {
        self.sink.topic_for(source_topic)
    }

    /// The most bytes an opened envelope may decompress to.
    pub fn max_plaintext(&self) -> usize {
        self.max_record_bytes + HEADERS_ALLOWANCE
    }
}

/// [`PipelineView::max_plaintext`] outside a pipeline (`validate`, tests).
pub fn default_max_plaintext() -> usize {
    TuningConfig::default().max_record_bytes + HEADERS_ALLOWANCE
}
