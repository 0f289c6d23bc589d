//! Records any producer on a source topic can write, and surroundings that fail: the
//! runner never crashes, stalls, leaks or commits past what the sink acknowledged.
//! Each test here was written against a defect and failed before its fix (issue 21).

mod support;

use std::time::Duration;

use kafka_transit::pipeline::dead_letter_headers;
use rdkafka::message::Message;
use support::kafka::{header_text, PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_not_a_crash() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    kafka
        .produce("in", &[TestRecord::new("k0", "before")])
        .await;
    kafka.produce_raw_headers("in", b"k1", b"hostile", &[(b"\xff\xfe", b"x")]);
    kafka.produce("in", &[TestRecord::new("k2", "after")]).await;

    let pipeline = RunningPipeline::start(
        PipelineSpec::in_to_out(
            &kafka,
            &url,
            "hostile-header",
            "builtin = \"passthrough\"".into(),
        )
        .config(),
        support::client_for(&vault_server),
    )
    .await;
    pipeline
        .wait_until(WAIT, |m| {
            m.records_out == 2 && m.dead_lettered == 1 && m.committed_batches > 0
        })
        .await;
    pipeline.stop().await.expect("the pipeline stops cleanly");

    let out = kafka.read("out", 2, WAIT).await;
    let values: Vec<&[u8]> = out.iter().filter_map(|m| m.payload()).collect();
    assert_eq!(values, [&b"before"[..], b"after"]);
    let dead = kafka.read("dlq", 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload(), Some(&b"hostile"[..]));
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::ERROR_KIND),
        "invalid-input"
    );
    let reason = header_text(&dead[0], dead_letter_headers::ERROR);
    assert!(reason.contains("not UTF-8"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_on_vault_for_its_deadline_then_says_vault_is_unreachable() {
    use kafka_transit::config::PolicySource;
    use kafka_transit::policy::{Failure, Limits, PolicyRunner, PolicyRuntime, SourceRecord};
    let vault_server = support::start_vault().await;
    vault_server.faults().set_latency(Duration::from_secs(3600));
    let limits = Limits {
        vault_deadline: Duration::from_secs(1),
        ..Limits::default()
    };
    let runtime = PolicyRuntime::load(
        &PolicySource::Builtin("envelope-seal".into()),
        r#"{"key":"customers"}"#.into(),
        limits,
        Some(support::client_for(&vault_server)),
    )
    .expect("policy loads");
    let mut runner = PolicyRunner::start(std::sync::Arc::new(runtime))
        .await
        .expect("policy starts");
    let record = SourceRecord {
        topic: "in".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: Some(b"k".to_vec()),
        value: Some(b"top secret".to_vec()),
        headers: vec![],
    };
    let started = std::time::Instant::now();
    let results = runner.transform(&[record]).await.expect("a result");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &results[0] {
        Err(Failure::Retryable(reason)) => assert!(
            reason.contains("Vault unreachable") && reason.contains("policy.vault_deadline"),
            "{reason}"
        ),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_that_never_answers_costs_a_batch_its_vault_deadline_not_minutes() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let records: Vec<TestRecord> = (0..20)
        .map(|i| TestRecord::new(&format!("k{i}"), "top secret"))
        .collect();
    kafka.produce("in", &records).await;
    // Connections are accepted, answers never come (within any retry budget).
    vault_server.faults().set_latency(Duration::from_secs(3600));

    let mut spec = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "blackholed-vault",
        "builtin = \"encrypt-value\"\nvault_deadline = \"2s\"".into(),
    );
    spec.errors =
        "on_failure = \"dead-letter\"\ndead_letter_topic = \"dlq\"\nmax_retry_backoff = \"500ms\"";
    let pipeline = RunningPipeline::start(spec.config(), support::client_for(&vault_server)).await;
    // Each attempt gives up after the 2 s deadline (the client alone would wait 30 s
    // per request, 7 times): several retries fit in 15 s.
    pipeline
        .wait_until(Duration::from_secs(15), |m| m.batch_retries >= 3)
        .await;
    assert!(
        kafka
            .read("out", 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "nothing reaches the sink while Vault is away"
    );
    vault_server.faults().clear();
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out == 20 && m.committed_batches > 0)
        .await;
    assert_eq!(
        done.dead_lettered, 0,
        "an unreachable Vault is no record's fault"
    );
    pipeline.stop().await.expect("the pipeline stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_pipeline_while_the_sink_is_down_and_commits_nothing_unacknowledged() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let source = TestKafka::start(&[("in", 1), ("dlq", 1)]);
    let sink = TestKafka::start(&[("out", 1)]);
    let records: Vec<TestRecord> = (0..500)
        .map(|i| TestRecord::new(&format!("k{i}"), "value"))
        .collect();
    source.produce("in", &records).await;
    sink.brokers(false);

    let mut spec = PipelineSpec::in_to_out(
        &source,
        &url,
        "sink-down",
        "builtin = \"passthrough\"".into(),
    );
    spec.sink_bootstrap = &sink.bootstrap;
    let text = spec.text().replace(
        "[vault]",
        "[sink.properties]\n\"queue.buffering.max.messages\" = \"50\"\n\n[vault]",
    ) + "shutdown_timeout = \"3s\"\n";
    let config = kafka_transit::config::PipelineConfig::parse(&text).expect("config");
    let pipeline = RunningPipeline::start(config, support::client_for(&vault_server)).await;
    // The producer's queue fills and stays full: the sink takes nothing.
    pipeline.wait_until(WAIT, |m| m.records_in >= 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), pipeline.stop())
        .await
        .expect("a stop ends the pipeline while the sink is down");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(
        stopped.is_err(),
        "stopping with records unacknowledged is reported"
    );
    assert_eq!(
        source.committed("sink-down", "in", 1),
        vec![-1],
        "nothing the sink did not acknowledge is committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_cannot_be_routed_fails_its_records_not_the_pipeline() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in.a", 1), ("in.in.x", 1), ("a.out", 1), ("dlq", 1)]);
    kafka
        .produce("in.a", &[TestRecord::new("k0", "routable")])
        .await;
    // "{topic|strip_prefix:in.}.out" sends in.in.x to in.x.out, which the pattern
    // consumes too: that topic's records must not loop, nor stop in.a's.
    kafka
        .produce("in.in.x", &[TestRecord::new("k1", "loops")])
        .await;
    let mut spec = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "unroutable",
        "builtin = \"passthrough\"".into(),
    );
    spec.source_topic = "^in\\\\..*";
    spec.sink_topic = "{topic|strip_prefix:in.}.out";
    let pipeline = RunningPipeline::start(spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 1 && m.dead_lettered == 1)
        .await;
    pipeline.stop().await.expect("the pipeline stops cleanly");
    let out = kafka.read("a.out", 1, WAIT).await;
    assert_eq!(out[0].payload(), Some(&b"routable"[..]));
    let dead = kafka.read("dlq", 1, WAIT).await;
    assert_eq!(dead[0].payload(), Some(&b"loops"[..]));
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::ERROR_KIND),
        "unroutable"
    );
    let reason = header_text(&dead[0], dead_letter_headers::ERROR);
    assert!(reason.contains("consume its own output"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_a_policy_chooses_gets_the_loop_checks_of_a_template() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("elsewhere", 1), ("dlq", 1)]);
    kafka
        .produce(
            "in",
            &[
                TestRecord::new("k0", "route:elsewhere"),
                TestRecord::new("k1", "route:in"),
                TestRecord::new("k2", "route:bad topic"),
                TestRecord::new("k3", "plain"),
            ],
        )
        .await;
    let mut spec = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "policy-routes",
        format!(
            "path = \"{}\"",
            support::kafka::guest_component("fault-test").display()
        ),
    );
    spec.policy_config = "";
    let pipeline = RunningPipeline::start(spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 2 && m.dead_lettered == 2)
        .await;
    pipeline.stop().await.expect("the pipeline stops cleanly");
    let elsewhere = kafka.read("elsewhere", 1, WAIT).await;
    assert_eq!(elsewhere[0].key(), Some(&b"k0"[..]));
    let out = kafka.read("out", 1, WAIT).await;
    assert_eq!(out[0].key(), Some(&b"k3"[..]));
    let dead = kafka.read("dlq", 2, WAIT).await;
    let keys: Vec<_> = dead.iter().map(|m| m.key().unwrap().to_vec()).collect();
    assert_eq!(keys, [b"k1".to_vec(), b"k2".to_vec()]);
    for message in &dead {
        assert_eq!(
            header_text(message, dead_letter_headers::ERROR_KIND),
            "unroutable"
        );
    }
    assert_eq!(
        kafka.read("in", 5, Duration::from_secs(2)).await.len(),
        4,
        "nothing was written back into the source topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_coordinator_never_confirms_gives_up_within_its_bound() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let kafka = TestKafka::start(&[("in", 1)]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", "unanswered-commit")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("in", 0, Offset::Offset(1))
        .unwrap();
    consumer.assign(&list).unwrap();
    // Every broker, the group coordinator included, answers only after a minute: what
    // librdkafka's synchronous commit (which revocations used) would wait out.
    kafka.slow_brokers(Duration::from_secs(60));
    let (result, took) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let result = kafka_transit::kafka::commit_within(&consumer, &list, Duration::from_secs(2));
        let took = started.elapsed();
        // Closing the consumer waits for its requests to the slow brokers: not measured,
        // and left to a thread of its own so the test does not wait for it either.
        std::thread::spawn(move || drop(consumer));
        (result, took)
    })
    .await
    .unwrap();
    let error = result.expect_err("the commit was not confirmed");
    assert!(error.contains("did not confirm"), "{error}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_bytes_count_toward_the_batch_size() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    // Tiny values, 6 KB of headers each: by keys and values alone all ten fit in one
    // batch of pipeline.max_batch_bytes = 10000; with their headers, two at most do.
    let records: Vec<TestRecord> = (0..10)
        .map(|i| TestRecord {
            headers: vec![("bulk".into(), Some(vec![b'h'; 6000]))],
            ..TestRecord::new(&format!("k{i}"), "v")
        })
        .collect();
    kafka.produce("in", &records).await;
    let spec = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "header-bytes",
        "builtin = \"passthrough\"".into(),
    );
    let text = spec.text() + "max_batch_bytes = 10000\nbatch_timeout = \"2s\"\n";
    let config = kafka_transit::config::PipelineConfig::parse(&text).expect("config");
    let pipeline = RunningPipeline::start(config, support::client_for(&vault_server)).await;
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out == 10 && m.committed_batches > 0)
        .await;
    pipeline.stop().await.expect("the pipeline stops cleanly");
    assert!(
        done.batches >= 5,
        "10 records of 6 KB of headers went in {} batch(es) of at most 10000 bytes",
        done.batches
    );
}
