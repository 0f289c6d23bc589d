//! `sink.create_topics` on two Apache Kafka clusters with automatic topic creation off:
//! the missing sink topic is created on the sink cluster and the missing dead-letter topic
//! on the source cluster, each with the source topic's partition count and the
//! configured replication factor and topic configs, and every record keeps its
//! partition. With `create_topics = false` nothing is created.
//!
//! librdkafka's mock cluster answers no CreateTopics request, so the test is ignored by
//! default; `.ci/run` runs it with `--ignored` against the clusters named by
//! `KAFKA_TRANSIT_TEST_KAFKA_SOURCE` and `KAFKA_TRANSIT_TEST_KAFKA_SINK`.

mod support;

use std::time::Duration;

use kafka_transit::config::PipelineConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::{ClientConfig, Message};
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 3;

fn admin(kafka: &TestKafka) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("admin client")
}

/// The topic's partition count (0: it does not exist) and its `retention.ms`.
async fn describe(kafka: &TestKafka, topic: &str) -> (usize, Option<String>) {
    let admin = admin(kafka);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return (0, None);
    }
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let retention = configs[0]
        .as_ref()
        .ok()
        .and_then(|resource| resource.get("retention.ms"))
        .and_then(|entry| entry.value.clone());
    (partitions, retention)
}

fn config(
    source: &TestKafka,
    sink: &TestKafka,
    input: &str,
    vault: &str,
    extra: &str,
) -> PipelineConfig {
    let spec = PipelineSpec {
        sink_bootstrap: &sink.bootstrap,
        // A JSON field policy: a value that is not JSON is dead-lettered.
        policy_config: "key = \"customers\"\nfields = [\"/ssn\"]",
        errors: "on_failure = \"dead-letter\"\ndead_letter_topic = \"{topic}.dlq\"\n\
                 dead_letter_cluster = \"source\"",
        ..PipelineSpec::from_to(
            source,
            vault,
            input,
            "{topic}.out",
            "builtin = \"encrypt-fields\"".into(),
        )
    };
    // After the sink's own keys, so that `extra` may open [sink.topic_config].
    let text = spec.text().replace(
        "topic = \"{topic}.out\"\n",
        &format!("topic = \"{{topic}}.out\"\npreserve_partitions = true\n{extra}\n"),
    );
    PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs two Apache Kafka clusters (KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK); .ci/run runs it"]
async fn missing_sink_and_dead_letter_topics_are_created_like_their_source() {
    let source = TestKafka::external("SOURCE");
    let sink = TestKafka::external("SINK");
    let vault = support::start_vault().await;
    let input = support::unique_name("created-in");
    let (output, dead_letters) = (format!("{input}.out"), format!("{input}.dlq"));
    source.create_topics(&[(&input, PARTITIONS)], &[]).await;
    // Every fifth value is not JSON: 3 dead letters, 12 records out.
    let records: Vec<TestRecord> = (0..15)
        .map(|i| {
            let value = if i % 5 == 4 {
                "not json".to_string()
            } else {
                format!(r#"{{"ssn":"{i}"}}"#)
            };
            TestRecord::new(&format!("k{i}"), &value)
        })
        .collect();
    source.produce(&input, &records).await;
    let source_partitions: std::collections::HashMap<Vec<u8>, i32> = source
        .read(&input, 15, WAIT)
        .await
        .iter()
        .map(|m| (m.key().unwrap().to_vec(), m.partition()))
        .collect();

    let extra = "replication_factor = 1\n[sink.topic_config]\n\"retention.ms\" = \"3600000\"\n";
    let pipeline = RunningPipeline::start(
        config(&source, &sink, &input, &vault.url(), extra),
        support::client_for(&vault),
    )
    .await;
    pipeline
        .wait_until(WAIT, |s| s.records_out >= 12 && s.dead_lettered >= 3)
        .await;
    pipeline.stop().await.expect("stops cleanly");

    assert_eq!(
        describe(&sink, &output).await,
        (PARTITIONS as usize, Some("3600000".into())),
        "the sink topic, created on the sink cluster"
    );
    assert_eq!(
        describe(&source, &dead_letters).await,
        (PARTITIONS as usize, Some("3600000".into())),
        "the dead-letter topic, created on the source cluster"
    );
    assert_eq!(
        describe(&sink, &dead_letters).await.0,
        0,
        "no dead letters on the sink"
    );
    let out = sink.read(&output, 12, WAIT).await;
    assert_eq!(out.len(), 12);
    for message in out {
        let key = message.key().unwrap();
        assert_eq!(
            source_partitions[key],
            message.partition(),
            "{} kept its partition",
            String::from_utf8_lossy(key)
        );
    }

    // Off: nothing is created (the broker does not create topics either).
    let other = support::unique_name("not-created-in");
    source.create_topics(&[(&other, PARTITIONS)], &[]).await;
    source.produce(&other, &records[..1]).await;
    let pipeline = RunningPipeline::start(
        config(
            &source,
            &sink,
            &other,
            &vault.url(),
            "create_topics = false",
        ),
        support::client_for(&vault),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = pipeline.stop().await;
    assert_eq!(describe(&sink, &format!("{other}.out")).await.0, 0);
}
