//! `pipeline.delivery = "exactly-once"` on two Apache Kafka clusters (source and sink)
//! with an in-process vault-dev: positions live on the sink cluster and a restart
//! resumes from them, a transaction the sink cannot take is aborted and repeated, and a
//! second runner for the same partitions fences the first. Also, in either delivery
//! mode, a record a compacted sink topic cannot take (it has no key) is dead-lettered.
//! With source and sink on one cluster: offsets committed to the source group inside the
//! runner's transaction, a restart and a rebalance without a record lost or repeated,
//! partitions held back while a crashed runner's transaction holds their offsets, and
//! fencing of a second static runner.
//!
//! librdkafka's mock cluster cannot show these (it neither stores transactional offset
//! commits nor hides aborted records from `read_committed` readers), so the tests are
//! ignored by default and `.ci/run` runs them with `--ignored` against two clusters it
//! starts: `KAFKA_TRANSIT_TEST_KAFKA_SOURCE` and `KAFKA_TRANSIT_TEST_KAFKA_SINK` hold
//! their bootstrap addresses. The same properties under SIGKILL:
//! `.ci/e2e/exactly-once.sh`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kafka_transit::config::{Assignment, DeliveryGuarantee, PipelineConfig};
use kafka_transit::pipeline::PipelineError;
use rdkafka::Message;
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 3;

/// Two clusters and topic and group names of this test's own.
struct Setup {
    source: TestKafka,
    sink: TestKafka,
    input: String,
    output: String,
    group: String,
}

impl Setup {
    async fn new(sink_topic_config: &[(&str, &str)]) -> Setup {
        Setup::on(TestKafka::external("SINK"), sink_topic_config).await
    }

    /// Source and sink on one cluster (the source one).
    async fn one_cluster() -> Setup {
        Setup::on(TestKafka::external("SOURCE"), &[]).await
    }

    async fn on(sink: TestKafka, sink_topic_config: &[(&str, &str)]) -> Setup {
        let setup = Setup {
            source: TestKafka::external("SOURCE"),
            sink,
            input: support::unique_name("eos-in"),
            output: support::unique_name("eos-out"),
            group: support::unique_name("eos"),
        };
        setup
            .source
            .create_topics(&[(&setup.input, PARTITIONS)], &[])
            .await;
        setup
            .sink
            .create_topics(
                &[(&setup.output, PARTITIONS), (&setup.dead_letters(), 1)],
                sink_topic_config,
            )
            .await;
        setup
    }

    fn dead_letters(&self) -> String {
        format!("{}.dlq", self.output)
    }

    fn config(&self, vault: &str) -> PipelineConfig {
        self.config_to(vault, &self.output)
    }

    /// The pipeline writing to `sink_topic` of the sink cluster instead.
    fn config_to(&self, vault: &str, sink_topic: &str) -> PipelineConfig {
        let errors = format!(
            "on_failure = \"dead-letter\"\ndead_letter_topic = \"{}\"\ndead_letter_cluster = \"sink\"",
            self.dead_letters()
        );
        let mut config = PipelineSpec {
            source_bootstrap: &self.source.bootstrap,
            sink_bootstrap: &self.sink.bootstrap,
            source_topic: &self.input,
            sink_topic,
            group: &self.group,
            policy: "builtin = \"encrypt-value\"".into(),
            policy_config: "key = \"customers\"",
            errors: &errors,
            vault_address: vault,
            schema_registry: None,
        }
        .config();
        config.pipeline.delivery = DeliveryGuarantee::ExactlyOnce;
        config
    }

    /// The next offsets committed under the test's group on the source cluster, summed.
    fn committed_on_source(&self) -> i64 {
        self.source
            .committed(&self.group, &self.input, PARTITIONS)
            .iter()
            .map(|&o| o.max(0))
            .sum()
    }

    /// The source positions the committed transactions recorded in the offsets topic
    /// on the sink cluster (the last record per partition), summed.
    async fn positions_on_sink(&self) -> i64 {
        let records = self
            .sink
            .read("kafka-transit-offsets", usize::MAX, Duration::from_secs(5))
            .await;
        let mut last = HashMap::new();
        for record in &records {
            let key: serde_json::Value = serde_json::from_slice(record.key().unwrap()).unwrap();
            if key[0] == self.group.as_str() && key[1] == self.input.as_str() {
                let value: serde_json::Value =
                    serde_json::from_slice(record.payload().unwrap()).unwrap();
                last.insert(key[2].as_i64().unwrap(), value["offset"].as_i64().unwrap());
            }
        }
        last.values().sum()
    }

    /// Produces `count` records numbered from `from`, then runs a new runner until it
    /// has written at least `count` (and 2 s more, to show nothing else comes); its
    /// final counters.
    async fn resume_with(
        &self,
        vault: &support::RunningServer,
        from: usize,
        count: usize,
    ) -> kafka_transit::metrics::Snapshot {
        self.source
            .produce(&self.input, &records(from, count))
            .await;
        let second =
            RunningPipeline::start(self.config(&vault.url()), support::client_for(vault)).await;
        second
            .wait_until(WAIT, |m| m.records_out >= count as u64)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        second.stop().await.unwrap()
    }

    /// After 1,000 records went through and the runner stopped: 500 more, and a new
    /// runner must write exactly those, so that the sink has each of the 1,500 once.
    async fn restart_after_500_more(&self, vault: &support::RunningServer) {
        let end = self.resume_with(vault, 1000, 500).await;
        assert_eq!(
            end.records_out, 500,
            "resumed where the transactions left off"
        );
        assert_each_once(&self.sink_keys(&self.output, 1500).await, 1500);
    }

    /// How many times each key is on `topic` of the sink for a `read_committed` reader
    /// (librdkafka's default), reading a little past `expected` so duplicates show.
    async fn sink_keys(&self, topic: &str, expected: usize) -> HashMap<String, usize> {
        let messages = self
            .sink
            .read(topic, expected + 1, Duration::from_secs(8))
            .await;
        let mut counts = HashMap::new();
        for message in &messages {
            let key = String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap();
            *counts.entry(key).or_default() += 1;
        }
        counts
    }
}

/// A vault-dev with the transit key that signs positions (`pipeline.offsets_key`).
async fn eos_vault() -> support::RunningServer {
    let vault = support::start_vault_dev().await;
    support::create_key(
        &vault,
        "transit",
        "kafka-transit-offsets",
        serde_json::json!({}),
    )
    .await;
    vault
}

fn records(from: usize, count: usize) -> Vec<TestRecord> {
    (from..from + count)
        .map(|i| TestRecord::new(&format!("k{i:05}"), &format!("v{i}")))
        .collect()
}

fn assert_each_once(counts: &HashMap<String, usize>, expected: usize) {
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "on the sink more than once: {twice:?}");
    assert_eq!(counts.len(), expected, "records missing from the sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK (.ci/run sets them)"]
async fn positions_live_on_the_sink_cluster_and_a_restart_resumes_from_them() {
    let vault = eos_vault().await;
    let setup = Setup::new(&[]).await;
    setup.source.produce(&setup.input, &records(0, 1000)).await;

    let first =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    first.wait_until(WAIT, |m| m.records_out >= 1000).await;
    first.stop().await.unwrap();
    assert_eq!(
        setup.positions_on_sink().await,
        1000,
        "the transactions recorded the source positions on the sink cluster"
    );

    // An operator rewinds the source group: the exactly-once positions are elsewhere.
    setup
        .source
        .commit(&setup.group, &setup.input, PARTITIONS, 0);
    setup.restart_after_500_more(&vault).await;
    assert_eq!(setup.positions_on_sink().await, 1500);
    // The source group gets a copy of the positions, for lag monitoring.
    assert_eq!(setup.committed_on_source(), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK (.ci/run sets them)"]
async fn a_record_the_sink_refuses_aborts_the_transaction_which_repeats_without_it() {
    let vault = eos_vault().await;
    // The sink topic takes record batches of at most 1 MiB; one record's ciphertext is
    // larger (the producer's own limit, sized from pipeline.max_record_bytes, lets it go,
    // and it is larger than batch.size, so it travels alone).
    let setup = Setup::new(&[("max.message.bytes", "1048576")]).await;
    let mut input = records(0, 600);
    input[250].value = Some(vec![b'x'; 1_100_000]);
    setup.source.produce(&setup.input, &input).await;

    let pipeline =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out + m.dead_lettered >= 600)
        .await;
    let end = pipeline.stop().await.unwrap();
    assert!(end.transactions_aborted >= 1, "{end:?}");
    assert_eq!(end.dead_lettered, 1, "{end:?}");
    let outputs = setup.sink_keys(&setup.output, 599).await;
    assert_each_once(&outputs, 599);
    assert!(!outputs.contains_key("k00250"));
    // The dead letter joined the transaction on the sink cluster: there once, no contents.
    let dead = setup
        .sink
        .read(&setup.dead_letters(), 2, Duration::from_secs(8))
        .await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].payload().is_none() && dead[0].key().is_none());
    assert_eq!(setup.positions_on_sink().await, 600);
}

/// A compacted topic takes no record without a key: the broker refuses it (and with it
/// the rest of its produce batch). That is this record's failure, not the pipeline's: it
/// is dead-lettered as `sink-rejected`, naming the topic's cleanup.policy, and the other
/// records arrive, in either delivery mode. (Any producer on the source topic can write
/// a record without a key; a pipeline that stopped on it would stop again on restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK (.ci/run sets them)"]
async fn a_record_without_a_key_for_a_compacted_sink_topic_is_dead_lettered_in_either_mode() {
    let vault = eos_vault().await;
    for delivery in [
        DeliveryGuarantee::AtLeastOnce,
        DeliveryGuarantee::ExactlyOnce,
    ] {
        let setup = Setup::new(&[]).await;
        let compacted = format!("{}.compacted", setup.output);
        setup
            .sink
            .create_topics(
                &[(&compacted, PARTITIONS)],
                &[("cleanup.policy", "compact")],
            )
            .await;
        let mut input = records(0, 300);
        for keyless in [40, 150, 299] {
            input[keyless].key = None;
        }
        setup.source.produce(&setup.input, &input).await;

        let mut config = setup.config_to(&vault.url(), &compacted);
        config.pipeline.delivery = delivery;
        let pipeline = RunningPipeline::start(config, support::client_for(&vault)).await;
        pipeline
            .wait_until(WAIT, |m| m.records_out + m.dead_lettered >= 300)
            .await;
        let end = pipeline
            .stop()
            .await
            .unwrap_or_else(|e| panic!("{delivery:?}: the pipeline stopped: {e}"));
        assert_eq!(
            (end.records_out, end.dead_lettered),
            (297, 3),
            "{delivery:?}: {end:?}"
        );
        let outputs = setup.sink_keys(&compacted, 297).await;
        assert_each_once(&outputs, 297);
        let dead = setup
            .sink
            .read(&setup.dead_letters(), 4, Duration::from_secs(8))
            .await;
        assert_eq!(dead.len(), 3, "{delivery:?}");
        for letter in &dead {
            assert_eq!(
                support::kafka::header(letter, "kafka-transit.error.kind"),
                Some(&b"sink-rejected"[..])
            );
            let reason = support::kafka::header_text(letter, "kafka-transit.error");
            assert!(reason.contains("cleanup.policy"), "{reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK (.ci/run sets them)"]
async fn a_second_runner_for_the_same_partitions_fences_the_first() {
    let vault = eos_vault().await;
    // Slow Vault so that the first runner is mid-stream when the second starts.
    vault.faults().set_latency(Duration::from_millis(100));
    let setup = Setup::new(&[]).await;
    setup.source.produce(&setup.input, &records(0, 3000)).await;
    let static_config = || {
        let mut config = setup.config(&vault.url());
        // No group to keep them apart: both take every partition.
        config.source.assignment = Assignment::Static;
        config
    };

    let first = RunningPipeline::start(static_config(), support::client_for(&vault)).await;
    first.wait_until(WAIT, |m| m.records_out >= 300).await;
    let second = RunningPipeline::start(static_config(), support::client_for(&vault)).await;
    match first.finished(WAIT).await {
        Err(PipelineError::Fenced {
            transactional_id, ..
        }) => assert!(
            transactional_id.starts_with(&format!("{}.{}.", setup.group, setup.input)),
            "{transactional_id}"
        ),
        other => panic!("the first runner was not fenced: {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while setup.positions_on_sink().await < 3000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second runner stalled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await.unwrap();
    assert_each_once(&setup.sink_keys(&setup.output, 3000).await, 3000);
}

/// The sink cluster's operator writes a position far ahead into the offsets topic: the
/// runner must not skip the records in between. Positions are signed with a key only
/// runners hold; the forged one is refused and the partition starts from the source
/// group's committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE and _SINK (.ci/run sets them)"]
async fn a_position_forged_on_the_sink_is_refused_and_nothing_is_skipped() {
    let vault = eos_vault().await;
    let setup = Setup::new(&[]).await;
    setup.source.produce(&setup.input, &records(0, 600)).await;
    let first =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    first.wait_until(WAIT, |m| m.records_out >= 600).await;
    first.stop().await.unwrap();

    // Plain records (not in a transaction) are what read_committed readers see too.
    let forged = |partition: i32| TestRecord {
        key: Some(
            serde_json::json!([setup.group, setup.input, partition])
                .to_string()
                .into_bytes(),
        ),
        value: Some(
            serde_json::json!({"offset": 1_000_000, "hmac": "00", "data_key": "vault:v1:AAAA"})
                .to_string()
                .into_bytes(),
        ),
        ..TestRecord::default()
    };
    let unsigned = TestRecord {
        value: Some(br#"{"offset": 1000000}"#.to_vec()),
        ..forged(1)
    };
    setup
        .sink
        .produce("kafka-transit-offsets", &[forged(0), unsigned])
        .await;
    let end = setup.resume_with(&vault, 600, 300).await;
    assert_eq!(
        end.positions_refused, 2,
        "the forged and the unsigned position"
    );
    assert_eq!(end.records_out, 300, "nothing skipped, nothing repeated");
    assert_each_once(&setup.sink_keys(&setup.output, 900).await, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE (.ci/run sets it)"]
async fn on_one_cluster_the_source_group_offsets_commit_in_the_transaction() {
    let vault = support::start_vault_dev().await;
    let setup = Setup::one_cluster().await;
    setup.source.produce(&setup.input, &records(0, 1000)).await;
    let first =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    first.wait_until(WAIT, |m| m.records_out >= 1000).await;
    let end = first.stop().await.unwrap();
    assert!(end.transactions_committed > 0);
    assert_eq!(
        setup.committed_on_source(),
        1000,
        "the transactions committed the source group's offsets"
    );
    // Nothing needs the offsets key (this vault-dev has none) or the offsets topic.
    assert_eq!(end.positions_refused, 0);

    setup.restart_after_500_more(&vault).await;
    assert_eq!(setup.committed_on_source(), 1500);
}

/// Partitions move to a runner that joins mid-stream while the first has a transaction
/// open: the generation fences what the first can still commit, the second starts from
/// what committed, and a `read_committed` reader sees every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE (.ci/run sets it)"]
async fn on_one_cluster_a_rebalance_mid_stream_neither_loses_nor_repeats_a_record() {
    let vault = support::start_vault_dev().await;
    vault.faults().set_latency(Duration::from_millis(100));
    let setup = Setup::one_cluster().await;
    setup.source.produce(&setup.input, &records(0, 3000)).await;
    let quick = |mut config: PipelineConfig| {
        for (name, value) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ] {
            config
                .source
                .properties
                .0
                .insert(name.to_string(), value.to_string());
        }
        config
    };
    let first = RunningPipeline::start(
        quick(setup.config(&vault.url())),
        support::client_for(&vault),
    )
    .await;
    first.wait_until(WAIT, |m| m.records_out >= 300).await;
    let second = RunningPipeline::start(
        quick(setup.config(&vault.url())),
        support::client_for(&vault),
    )
    .await;
    first.wait_until(WAIT, |m| m.partitions_revoked > 0).await;
    vault.faults().clear();
    let deadline = tokio::time::Instant::now() + WAIT;
    while setup.committed_on_source() < 3000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {} of 3000 committed",
            setup.committed_on_source()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (a, b) = (first.stop().await.unwrap(), second.stop().await.unwrap());
    assert!(b.records_out > 0, "the second runner got partitions");
    assert_each_once(&setup.sink_keys(&setup.output, 3000).await, 3000);
    eprintln!(
        "one cluster, rebalance: first {} out ({} aborted), second {} out ({} aborted)",
        a.records_out, a.transactions_aborted, b.records_out, b.transactions_aborted
    );
}

/// A runner killed between sending its transaction's offsets and committing it leaves
/// them pending until the broker ends the transaction. The partitions' next owner must
/// wait for that, even when the group rebalances meanwhile (a runner joining), and then
/// start at what committed: librdkafka 2.12's own fetch at assignment starts such a
/// partition at `auto.offset.reset` instead, which repeated every committed record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE (.ci/run sets it)"]
async fn on_one_cluster_offsets_a_crashed_runners_transaction_holds_are_waited_for() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    const COMMITTED: i64 = 10;
    let vault = support::start_vault_dev().await;
    let setup = Setup::one_cluster().await;
    setup.source.produce(&setup.input, &records(0, 300)).await;

    // The crashed runner: a member of the group that committed COMMITTED records of
    // every partition, then sent further offsets in a transaction it never ends.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.source.bootstrap)
        .set("group.id", &setup.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&[&setup.input]).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while member.assignment().unwrap().count() < PARTITIONS as usize {
        assert!(std::time::Instant::now() < deadline, "no assignment");
        member.poll(Duration::from_millis(100));
    }
    let crashed: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &setup.source.bootstrap)
        .set("transactional.id", support::unique_name("crashed"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    crashed.init_transactions(timeout).unwrap();
    let offsets = |next: i64| {
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition_offset(&setup.input, partition, Offset::Offset(next))
                .unwrap();
        }
        list
    };
    let metadata = member.group_metadata().unwrap();
    for (next, commit) in [(COMMITTED, true), (COMMITTED * 2, false)] {
        crashed.begin_transaction().unwrap();
        crashed
            .send_offsets_to_transaction(&offsets(next), &metadata, timeout)
            .unwrap();
        if commit {
            crashed.commit_transaction(timeout).unwrap();
        }
    }
    drop(member);

    // The next owner, and a runner joining while it waits: the group rebalances.
    let first =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second =
        RunningPipeline::start(setup.config(&vault.url()), support::client_for(&vault)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    crashed.abort_transaction(timeout).unwrap();

    let expected = 300 - COMMITTED * i64::from(PARTITIONS);
    let deadline = tokio::time::Instant::now() + WAIT;
    while setup.committed_on_source() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {} of 300 committed",
            setup.committed_on_source()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (a, b) = (first.stop().await.unwrap(), second.stop().await.unwrap());
    assert_eq!(
        a.records_out + b.records_out,
        expected as u64,
        "every partition resumed at the committed offset {COMMITTED}, not before it"
    );
    assert_each_once(
        &setup.sink_keys(&setup.output, expected as usize).await,
        expected as usize,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: KAFKA_TRANSIT_TEST_KAFKA_SOURCE (.ci/run sets it)"]
async fn on_one_cluster_a_second_static_runner_fences_the_first() {
    let vault = support::start_vault_dev().await;
    vault.faults().set_latency(Duration::from_millis(100));
    let setup = Setup::one_cluster().await;
    setup.source.produce(&setup.input, &records(0, 3000)).await;
    let static_config = || {
        let mut config = setup.config(&vault.url());
        config.source.assignment = Assignment::Static;
        config
    };
    let first = RunningPipeline::start(static_config(), support::client_for(&vault)).await;
    first.wait_until(WAIT, |m| m.records_out >= 300).await;
    let second = RunningPipeline::start(static_config(), support::client_for(&vault)).await;
    match first.finished(WAIT).await {
        Err(PipelineError::Fenced {
            transactional_id, ..
        }) => assert_eq!(transactional_id, format!("{}.runner", setup.group)),
        other => panic!("the first runner was not fenced: {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while setup.committed_on_source() < 3000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second runner stalled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await.unwrap();
    assert_each_once(&setup.sink_keys(&setup.output, 3000).await, 3000);
}
