//! Missing output topics (`sink.create_topics`, on by default). A sink or dead-letter
//! topic that does not exist when its first record is due is created with the partition
//! count of the source topic the record came from, as MirrorMaker 2 does: so that
//! `preserve_partitions` finds every partition, and so that a managed cluster with
//! automatic topic creation off needs no manual step. Topics are looked up once each;
//! whether a topic exists is asked without letting the broker create it.
//!
//! A topic that cannot be created (no CreateTopics permission, a broker that refuses) is
//! reported once, saying what to do, and the record is produced anyway: the broker may
//! create topics on first use, and if it does not, the producer's error stops the
//! pipeline as before.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{PipelineConfig, Properties};
use crate::kafka::{self, TopicState};

/// A lookup or creation that takes longer fails (and is reported), rather than hold a
/// batch.
const TIMEOUT: Duration = Duration::from_secs(10);

type Admin = Arc<AdminClient<DefaultClientContext>>;

/// What a created topic gets: `sink.replication_factor` and `[sink.topic_config]`.
#[derive(Debug, Clone)]
struct Shape {
    replication_factor: i32,
    config: Properties,
}

/// Which cluster a topic is created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cluster {
    Source,
    Sink,
}

/// Creates missing topics on either cluster (the sink's, or the source's for dead
/// letters kept there), sized after their source topics. One per pipeline: its admin
/// clients serve the sink and the dead letters alike.
pub(crate) struct TopicCreation {
    /// Admin clients of the source and sink clusters; `None` when creation is off or
    /// one could not be made (reported once, at start). The source's also gives the
    /// partition counts.
    clients: Option<(Admin, Admin)>,
    shape: Shape,
    /// Topics known to exist, or already reported as not creatable.
    settled: Mutex<HashSet<(Cluster, String)>>,
}

impl TopicCreation {
    pub(crate) fn new(config: &PipelineConfig) -> TopicCreation {
        let shape = Shape {
            replication_factor: config.sink.replication_factor,
            config: config.sink.topic_config.clone(),
        };
        let admin = |what: &str, bootstrap: &str, properties: &Properties| {
            kafka::lookup_admin(bootstrap, properties)
                .inspect_err(|error| {
                    tracing::warn!(
                        "no admin client for the {what} cluster ({error}): missing output \
                         topics are not created (sink.create_topics)"
                    )
                })
                .ok()
                .map(Arc::new)
        };
        let clients = config.sink.create_topics.then(|| {
            let source = admin(
                "source",
                &config.source.bootstrap_servers,
                &config.source.properties,
            )?;
            let sink = admin(
                "sink",
                &config.sink.bootstrap_servers,
                &config.sink.properties,
            )?;
            Some((source, sink))
        });
        TopicCreation {
            clients: clients.flatten(),
            shape,
            settled: Mutex::default(),
        }
    }

    /// Makes sure `topic` exists on `cluster` before a record of `source_topic` is
    /// produced to it. Never fails: what goes wrong is reported, and the producer has
    /// the last word.
    pub(crate) async fn ensure(&self, cluster: Cluster, topic: &str, source_topic: &str) {
        let Some((source, sink)) = &self.clients else {
            return;
        };
        let key = (cluster, topic.to_string());
        if self.lock().contains(&key) {
            return;
        }
        let target = match cluster {
            Cluster::Source => source,
            Cluster::Sink => sink,
        };
        match self
            .create_if_missing(target, source, topic, source_topic)
            .await
        {
            Ok(None) => {}
            Ok(Some((partitions, replication))) => tracing::info!(
                topic,
                partitions,
                replication_factor = replication,
                source_topic,
                "created a missing output topic with the source topic's partition count \
                 (sink.create_topics)"
            ),
            Err(reason) => tracing::warn!(
                topic,
                "the output topic does not exist and could not be created ({reason}): \
                 create it, let the runner's principal CREATE topics on that cluster, or set \
                 sink.create_topics = false; producing anyway, in case the broker creates \
                 topics on first use"
            ),
        }
        self.lock().insert(key);
    }

    /// `Some((partitions, replication factor))` when it created the topic.
    async fn create_if_missing(
        &self,
        target: &Admin,
        source: &Admin,
        topic: &str,
        source_topic: &str,
    ) -> Result<Option<(usize, i32)>, String> {
        if partitions(target, topic).await? > 0 {
            return Ok(None);
        }
        let count = partitions(source, source_topic).await?;
        if count == 0 {
            return Err(format!(
                "the source topic \"{source_topic}\" has no partitions to copy"
            ));
        }
        let replication = self.shape.replication_factor;
        let mut new = NewTopic::new(
            topic,
            i32::try_from(count).unwrap_or(i32::MAX),
            TopicReplication::Fixed(replication),
        );
        for (name, value) in &self.shape.config.0 {
            new = new.set(name, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = target
            .create_topics([&new], &options)
            .await
            .map_err(|error| error.to_string())?;
        for result in results {
            match result {
                Ok(_) => {}
                // Another runner was first.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(None),
                Err((_, code)) => return Err(code.to_string()),
            }
        }
        Ok(Some((count, replication)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(Cluster, String)>> {
        self.settled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many partitions `topic` has on `admin`'s cluster (0: it does not exist).
async fn partitions(admin: &Admin, topic: &str) -> Result<usize, String> {
    let admin = Arc::clone(admin);
    let topic = topic.to_string();
    let state =
        tokio::task::spawn_blocking(move || kafka::topic_state(admin.inner(), &topic, TIMEOUT))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| format!("looking the topic up: {error}"))?;
    match state {
        TopicState::Partitions(count) => Ok(count),
        TopicState::Missing => Ok(0),
        TopicState::Refused(why) => Err(format!("looking the topic up: {why}")),
    }
}
