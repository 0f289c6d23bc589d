//! Runners in one consumer group (librdkafka's mock cluster, in-process vault-dev):
//! partitions move between them without loss and without a runner committing for a
//! partition it gave away, and a long Vault outage does not throw a runner out of its
//! group.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use kafka_transit::config::PipelineConfig;
use rdkafka::Message;
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(90);

fn config(
    kafka: &TestKafka,
    vault: &str,
    policy: &str,
    properties: &[(&str, &str)],
) -> PipelineConfig {
    let mut config = PipelineSpec {
        source_bootstrap: &kafka.bootstrap,
        sink_bootstrap: &kafka.bootstrap,
        source_topic: "in",
        sink_topic: "out",
        group: "shared",
        policy: format!("builtin = \"{policy}\""),
        policy_config: "key = \"customers\"",
        errors: "on_failure = \"dead-letter\"\ndead_letter_topic = \"dlq\"",
        vault_address: vault,
        schema_registry: None,
    }
    .config();
    for (name, value) in properties {
        config
            .source
            .properties
            .0
            .insert(name.to_string(), value.to_string());
    }
    config
}

fn records(from: usize, count: usize) -> Vec<TestRecord> {
    (from..from + count)
        .map(|i| TestRecord::new(&format!("k{i:05}"), &format!("v{i}")))
        .collect()
}

/// Short group timings, so that joins and departures settle in seconds.
const QUICK_GROUP: &[(&str, &str)] = &[
    ("session.timeout.ms", "3000"),
    ("heartbeat.interval.ms", "500"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_between_runners_without_loss_or_rewinding_commits() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 6), ("out", 6), ("dlq", 1)]);
    kafka.produce("in", &records(0, 3000)).await;
    // Slow Vault down so that batches are in flight while partitions move.
    vault_server
        .faults()
        .set_latency(Duration::from_millis(300));

    let first = RunningPipeline::start(
        config(&kafka, &url, "encrypt-value", QUICK_GROUP),
        support::client_for(&vault_server),
    )
    .await;
    first.wait_until(WAIT, |m| m.records_out >= 500).await;
    // A second runner joins mid-stream: the first gives some partitions away.
    let second = RunningPipeline::start(
        config(&kafka, &url, "encrypt-value", QUICK_GROUP),
        support::client_for(&vault_server),
    )
    .await;
    let revoked_at = first.wait_until(WAIT, |m| m.partitions_revoked > 0).await;
    assert!(
        revoked_at.records_out < 3000,
        "the move happened mid-stream ({} of 3000 out)",
        revoked_at.records_out
    );
    vault_server.faults().clear();
    kafka.produce("in", &records(3000, 3000)).await;
    // Wait for every record by its key, not by the runners' counts: at least once
    // allows a record twice, and a count with duplicates in it can reach 6000 while
    // records are still to come.
    let keys_out = |out: &[rdkafka::message::OwnedMessage]| -> HashSet<Vec<u8>> {
        out.iter().map(|m| m.key().unwrap().to_vec()).collect()
    };
    let everything = usize::MAX;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = kafka.read("out", everything, Duration::from_secs(2)).await;
        let (a, b) = (first.metrics.snapshot(), second.metrics.snapshot());
        if keys_out(&out).len() == 6000 && b.committed_batches > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled with {} of 6000 records out: {a:?} / {b:?}",
            keys_out(&out).len()
        );
    }
    let first_done = first.stop().await.unwrap();
    let second_done = second.stop().await.unwrap();
    assert!(
        second_done.records_out > 0,
        "the second runner got partitions"
    );

    let out = kafka.read("out", everything, Duration::from_secs(3)).await;
    assert_eq!(keys_out(&out).len(), 6000, "every record arrived");
    eprintln!(
        "rebalance: {} deliveries for 6000 records ({} duplicates); first runner {} out, second {}",
        out.len(),
        out.len() - 6000,
        first_done.records_out,
        second_done.records_out
    );

    // Had a runner committed an old offset for a partition the other owned, a new
    // runner would read those records again.
    let third = RunningPipeline::start(
        config(&kafka, &url, "passthrough", QUICK_GROUP),
        support::client_for(&vault_server),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let third_done = third.stop().await.unwrap();
    assert_eq!(
        third_done.records_in, 0,
        "the group's committed offsets are at the end of every partition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_outage_longer_than_the_poll_interval_keeps_the_runner_in_its_group() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 3), ("out", 3), ("dlq", 1)]);
    kafka.produce("in", &records(0, 300)).await;
    // librdkafka leaves the group when the application does not poll for
    // max.poll.interval.ms; the outage below lasts more than twice as long.
    let properties = [
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "500"),
        ("max.poll.interval.ms", "4000"),
    ];
    let pipeline = RunningPipeline::start(
        config(&kafka, &url, "encrypt-value", &properties),
        support::client_for(&vault_server),
    )
    .await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 300 && m.committed_batches > 0)
        .await;

    vault_server.faults().seal();
    kafka.produce("in", &records(300, 300)).await;
    pipeline.wait_until(WAIT, |m| m.batch_retries >= 1).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        pipeline.metrics.snapshot().records_out,
        300,
        "nothing is produced while Vault is sealed"
    );
    vault_server.faults().unseal();
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out == 600 && m.committed_batches > 0)
        .await;
    assert_eq!(
        done.partitions_revoked, 0,
        "the runner stayed in its group through the outage"
    );
    assert_eq!(done.dead_lettered, 0);
    pipeline.stop().await.unwrap();
    let out = kafka.read("out", 600, WAIT).await;
    assert_eq!(out.len(), 600, "no record lost, none repeated");
}
