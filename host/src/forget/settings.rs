//! `[forget]`: where runners learn of forgotten data subjects.

use std::time::Duration;

use serde::Deserialize;

/// `[forget]` of a pipeline file. Required by policies that seal or open per data
/// subject (`subject`, `subject_keys` in `[policy.config]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetSettings {
    /// A compacted topic on the source cluster: one record per forgotten subject (its
    /// key's name as the record key, never the subject's id). Created by the runner (or
    /// `forget`) when missing.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// How long `forget` waits between writing the marker and deleting the key, so that
    /// running runners stop sealing under it first.
    #[serde(default = "default_grace", with = "crate::config::duration_text")]
    pub grace: Duration,
}

fn default_topic() -> String {
    "kafka-transit.forgotten".into()
}

fn default_grace() -> Duration {
    Duration::from_secs(5)
}

impl Default for ForgetSettings {
    fn default() -> Self {
        ForgetSettings {
            topic: default_topic(),
            grace: default_grace(),
        }
    }
}

impl ForgetSettings {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        kafka_transit_names::check_name(&self.topic).map_err(|reason| {
            (
                "forget.topic",
                format!("\"{}\" is not a topic name: {reason}", self.topic),
            )
        })?;
        if self.grace > Duration::from_secs(600) {
            return Err((
                "forget.grace",
                "at most 10 minutes: runners see a marker within a second or two".into(),
            ));
        }
        Ok(())
    }
}
