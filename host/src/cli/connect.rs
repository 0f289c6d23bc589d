//! `validate --connect`: after the offline checks, what only the servers can say. The
//! Vault token is accepted and holds every permission the pipeline needs; each source
//! topic exists and the consumer group's offsets can be read; each sink and dead-letter
//! topic exists, or will be created (`sink.create_topics`), with how many partitions;
//! the Schema Registry, when one is configured, answers Confluent's API.
//! Nothing is written: Kafka cannot be asked whether a principal may write a topic
//! without writing to it, so that is said rather than tried.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::TopicPartitionList;

use crate::access::check;
use crate::config::{DeadLetterCluster, DeliveryGuarantee, PipelineConfig};
use crate::kafka::{self, TopicState};
use crate::schema_registry::SchemaRegistry;
use crate::vault::VaultClient;

const TIMEOUT: Duration = Duration::from_secs(10);

type Admin = AdminClient<DefaultClientContext>;

/// What a cluster says of a topic; a lookup that fails is a refusal too.
fn state(admin: &Admin, topic: &str) -> TopicState {
    kafka::topic_state(admin.inner(), topic, TIMEOUT)
        .unwrap_or_else(|error| TopicState::Refused(error.to_string()))
}

/// Prints what it finds; fails when anything would stop the pipeline.
pub(super) async fn connect(config: &PipelineConfig) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    check_vault(config, &mut problems).await;
    check_registry(config, &mut problems).await;
    tokio::task::block_in_place(|| check_kafka(config, &mut problems))?;
    if problems.is_empty() {
        println!(
            "connected: Vault, the clusters and any schema registry answer as this pipeline needs"
        );
        return Ok(());
    }
    anyhow::bail!(
        "{} problem(s) found:\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}

async fn check_vault(config: &PipelineConfig, problems: &mut Vec<String>) {
    let address = &config.vault.address;
    let vault = match VaultClient::connect(&config.vault).await {
        Ok(vault) => vault,
        Err(error) => {
            println!("vault {address}: {error}");
            problems.push(format!("Vault at {address}: {error}"));
            return;
        }
    };
    println!("vault {address}: the token is accepted");
    match check::verify_pipeline(&vault, config).await {
        Ok(()) => println!(
            "  it holds every permission this pipeline needs (`kafka-transit vault-policy` lists them)"
        ),
        Err(error) => {
            println!("  {error}");
            problems.push(format!("Vault permissions: {error}"));
        }
    }
}

async fn check_registry(config: &PipelineConfig, problems: &mut Vec<String>) {
    let Some(settings) = &config.schema_registry else {
        return;
    };
    let url = &settings.url;
    let answer = match SchemaRegistry::new(settings) {
        Ok(registry) => registry.subjects().await.map_err(|e| e.to_string()),
        Err((field, message)) => Err(format!("{field}: {message}")),
    };
    match answer {
        Ok(subjects) => println!(
            "schema registry {url}: answers, {} subject(s) visible to these credentials",
            subjects.len()
        ),
        Err(error) => {
            println!("schema registry {url}: {error}");
            problems.push(format!("Schema Registry at {url}: {error}"));
        }
    }
}

fn check_kafka(config: &PipelineConfig, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let source = kafka::lookup_admin(&config.source.bootstrap_servers, &config.source.properties)?;
    let sink = kafka::lookup_admin(&config.sink.bootstrap_servers, &config.sink.properties)?;
    let topics = config.source_topics()?;
    let mut listed: Vec<String> = topics.names().to_vec();
    if topics.has_patterns() {
        let metadata = source.inner().fetch_metadata(None, TIMEOUT)?;
        let matching: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|name| topics.consumes(name) && !listed.contains(name))
            .collect();
        listed.extend(matching);
    }
    let sink_route = config.sink_route()?;
    let dead_letters = config.dead_letter_route()?;
    let dead_letters_on_source = config.errors.dead_letter_cluster == DeadLetterCluster::Source;
    println!(
        "source cluster {} (group {}):",
        config.source.bootstrap_servers, config.source.group_id
    );
    let mut outputs = Vec::new();
    for topic in &listed {
        let partitions = match state(&source, topic) {
            TopicState::Partitions(n) => n,
            TopicState::Missing => {
                println!("  {topic}: does not exist");
                problems.push(format!("source topic {topic} does not exist"));
                continue;
            }
            TopicState::Refused(why) => {
                println!("  {topic}: {why}");
                problems.push(format!("source topic {topic}: {why}"));
                continue;
            }
        };
        match group_offsets(config, topic, partitions) {
            Ok(group) => println!("  {topic}: {partitions} partition(s); {group}"),
            Err(group) => {
                println!("  {topic}: {partitions} partition(s); {group}");
                problems.push(format!("source topic {topic}: {group}"));
            }
        }
        if let Ok(sink_topic) = sink_route.topic_for(topic) {
            outputs.push((false, "sink cluster", sink_topic.to_string(), partitions));
        }
        if let Some(route) = &dead_letters {
            if let Ok(dead_letter_topic) = route.topic_for(topic) {
                let place = if dead_letters_on_source {
                    "dead letters, source cluster"
                } else {
                    "dead letters, sink cluster"
                };
                outputs.push((
                    dead_letters_on_source,
                    place,
                    dead_letter_topic.to_string(),
                    partitions,
                ));
            }
        }
    }
    if topics.has_patterns() {
        println!("  (and topics created later that match the patterns)");
    }
    println!("output topics:");
    outputs.sort();
    outputs.dedup();
    for (on_source, role, topic, partitions) in outputs {
        let admin = if on_source { &source } else { &sink };
        match state(admin, &topic) {
            TopicState::Partitions(n) => {
                println!("  {topic} ({role}): exists, {n} partition(s)");
                if role == "sink cluster" && config.sink.preserve_partitions && n < partitions {
                    let problem = format!(
                        "sink topic {topic} has {n} partition(s), fewer than the {partitions} of \
                         its source, and sink.preserve_partitions is on: add partitions"
                    );
                    println!("    {problem}");
                    problems.push(problem);
                }
            }
            TopicState::Missing if config.sink.create_topics => println!(
                "  {topic} ({role}): does not exist; the runner creates it with {partitions} \
                 partition(s) when its first record is due (sink.create_topics)"
            ),
            TopicState::Missing => {
                println!("  {topic} ({role}): does not exist, and sink.create_topics = false");
                problems.push(format!(
                    "{topic} ({role}) does not exist: create it, or set sink.create_topics = true"
                ));
            }
            TopicState::Refused(why) => {
                println!("  {topic} ({role}): {why}");
                problems.push(format!("{topic} ({role}): {why}"));
            }
        }
    }
    if config.pipeline.delivery == DeliveryGuarantee::ExactlyOnce && !config.one_cluster() {
        let topic = &config.pipeline.offsets_topic;
        match state(&sink, topic) {
            TopicState::Partitions(_) => println!("  {topic} (exactly-once offsets, sink cluster): exists"),
            TopicState::Missing => println!(
                "  {topic} (exactly-once offsets, sink cluster): does not exist; the runner creates it (compacted)"
            ),
            TopicState::Refused(why) => {
                println!("  {topic} (exactly-once offsets): {why}");
                problems.push(format!("{topic} (exactly-once offsets): {why}"));
            }
        }
    }
    println!(
        "writes are not tried (Kafka cannot be asked without writing a record): the runner's \
         principals need WRITE on the topics above (CREATE where they are to be created), and \
         IDEMPOTENT_WRITE on the sink cluster before Kafka 2.8"
    );
    Ok(())
}

/// How many of the consumer group's offsets for `topic` are committed, or why they
/// cannot be read.
fn group_offsets(
    config: &PipelineConfig,
    topic: &str,
    partitions: usize,
) -> Result<String, String> {
    let unreadable =
        |error: rdkafka::error::KafkaError| format!("the group's offsets cannot be read: {error}");
    let consumer = kafka::group_reader(&config.source).map_err(unreadable)?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, i32::try_from(partition).unwrap_or(i32::MAX));
    }
    // Retries while the coordinator moves or loads (a broker just started), as the
    // pipeline itself does.
    let committed = kafka::committed_offsets(&consumer, &list, TIMEOUT).map_err(unreadable)?;
    let count = committed
        .elements()
        .iter()
        .filter(|e| e.offset().to_raw().is_some_and(|o| o >= 0))
        .count();
    Ok(format!(
        "the group has committed offsets for {count} of them"
    ))
}
