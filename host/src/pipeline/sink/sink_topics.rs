//! What the pipeline must know of a sink topic's configuration before it produces: a
//! compacted topic (`cleanup.policy` with `compact`) takes no record without a key. The
//! broker would refuse such a record, and with it every other record of its produce
//! request (`InvalidDifferentRecord`), which librdkafka then hands back after records it
//! sent later: so the record is dead-lettered here, before it is produced, and the order
//! of the others is kept. Any producer on a source topic can write a record without a key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::config::SinkConfig;
use crate::kafka;
use crate::policy::OutputRecord;

/// How long a topic's configuration is trusted before it is described again: an
/// operator may turn compaction on while the pipeline runs.
const REFRESH: Duration = Duration::from_secs(60);
/// A broker that does not answer (or does not allow DescribeConfigs) holds no batch for
/// long: the record then goes to the broker, whose refusal is handled on delivery.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct SinkTopics {
    admin: Option<AdminClient<DefaultClientContext>>,
    compacted: Mutex<HashMap<Arc<str>, (bool, Instant)>>,
}

impl SinkTopics {
    pub(crate) fn new(sink: &SinkConfig) -> SinkTopics {
        let admin = kafka::sink_admin(sink)
            .inspect_err(|error| {
                tracing::warn!(
                    "no admin client for the sink cluster ({error}): records without a key \
                     for a compacted topic are found by the broker's refusal only"
                )
            })
            .ok();
        SinkTopics {
            admin,
            compacted: Mutex::default(),
        }
    }

    /// Why `topic` cannot take `output`, if it cannot.
    pub(crate) async fn refusal(&self, topic: &Arc<str>, output: &OutputRecord) -> Option<String> {
        if output.key.is_some() || !self.is_compacted(topic).await {
            return None;
        }
        Some(format!(
            "the sink topic \"{topic}\" is compacted (cleanup.policy=compact) and takes no \
             record without a key: produce keys, or use a sink topic that is not compacted"
        ))
    }

    async fn is_compacted(&self, topic: &Arc<str>) -> bool {
        if let Some((compacted, at)) = self.lock().get(topic) {
            if at.elapsed() < REFRESH {
                return *compacted;
            }
        }
        let compacted = self.describe(topic).await;
        self.lock()
            .insert(Arc::clone(topic), (compacted, Instant::now()));
        compacted
    }

    async fn describe(&self, topic: &str) -> bool {
        let Some(admin) = &self.admin else {
            return false;
        };
        let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await;
        match described.as_ref().map(|results| results.first()) {
            Ok(Some(Ok(resource))) => resource
                .get("cleanup.policy")
                .and_then(|entry| entry.value.as_deref())
                .is_some_and(is_compaction),
            outcome => {
                let error = match outcome {
                    Ok(Some(Err(code))) => format!("{code}"),
                    Ok(_) => "no answer".to_string(),
                    Err(error) => error.to_string(),
                };
                tracing::debug!(
                    topic,
                    "the sink topic's configuration could not be read ({error}); \
                     a record without a key goes to the broker, which decides"
                );
                false
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, (bool, Instant)>> {
        self.compacted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `cleanup.policy` is a list: `compact`, `delete`, or `compact,delete`.
fn is_compaction(policy: &str) -> bool {
    policy.split(',').any(|p| p.trim() == "compact")
}

#[cfg(test)]
mod tests {
    use super::is_compaction;

    #[test]
    fn cleanup_policies_with_compaction() {
        assert!(is_compaction("compact"));
        assert!(is_compaction("compact,delete"));
        assert!(is_compaction("delete, compact"));
        assert!(!is_compaction("delete"));
        assert!(!is_compaction(""));
    }
}
