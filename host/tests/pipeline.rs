//! The pipeline against real Kafka protocol (librdkafka's in-process mock cluster), a
//! real Vault-compatible server (vault-dev, in process) and real policy components.

mod support;

use std::time::Duration;

use base64::Engine as _;
use kafka_transit::pipeline::{dead_letter_headers, PipelineError};
use kafka_transit::vault::DecryptInput;
use rdkafka::message::{Headers, Message, OwnedMessage};
use support::kafka::{
    guest_component, header_text, PipelineSpec, RunningPipeline, TestKafka, TestRecord,
};

const WAIT: Duration = Duration::from_secs(60);

fn spec<'a>(
    kafka: &'a TestKafka,
    vault: &'a str,
    from: &'a str,
    to: &'a str,
    policy: String,
) -> PipelineSpec<'a> {
    PipelineSpec::from_to(kafka, vault, from, to, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypts_every_value_and_decrypts_back_to_identical_records() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("raw", 3), ("protected", 3), ("clear", 3), ("dlq", 1)]);

    let mut records: Vec<TestRecord> = (0..1000)
        .map(|i| {
            let mut r = TestRecord::new(&format!("k{i}"), &format!(r#"{{"ssn":"123-45-{i:04}"}}"#));
            r.headers = vec![
                ("trace".into(), Some(format!("t{i}").into_bytes())),
                ("empty".into(), None),
            ];
            r
        })
        .collect();
    records.push(TestRecord {
        key: Some(b"deleted".to_vec()),
        value: None,
        headers: vec![],
        timestamp: None,
    });
    records.push(TestRecord::new("empty-value", ""));
    let total = records.len();
    kafka.produce("raw", &records).await;

    let encrypt = RunningPipeline::start(
        spec(
            &kafka,
            &url,
            "raw",
            "protected",
            "builtin = \"encrypt-value\"".into(),
        )
        .config(),
        vault.clone(),
    )
    .await;
    let decrypt = RunningPipeline::start(
        spec(
            &kafka,
            &url,
            "protected",
            "clear",
            "builtin = \"decrypt-value\"".into(),
        )
        .config(),
        vault.clone(),
    )
    .await;
    encrypt
        .wait_until(WAIT, |m| {
            m.records_out as usize == total && m.committed_batches > 0
        })
        .await;
    decrypt
        .wait_until(WAIT, |m| {
            m.records_out as usize == total && m.committed_batches > 0
        })
        .await;
    let encrypted = encrypt.stop().await.unwrap();
    assert_eq!(encrypted.dead_lettered, 0);
    decrypt.stop().await.unwrap();

    // What the Kafka admin sees: Vault ciphertext only, keys and headers kept, stamps added.
    let protected = kafka.read("protected", total, WAIT).await;
    assert_eq!(protected.len(), total);
    let mut ciphertexts = Vec::new();
    for message in &protected {
        let key = message.key().unwrap();
        if key == b"deleted" {
            assert!(message.payload().is_none(), "a tombstone stays a tombstone");
            continue;
        }
        let value = std::str::from_utf8(message.payload().unwrap()).unwrap();
        assert!(value.starts_with("vault:v1:"), "{value}");
        assert!(!value.contains("123-45"));
        assert_eq!(
            header_text(message, "kafka-transit.policy"),
            "encrypt-value"
        );
        assert_eq!(header_text(message, "kafka-transit.key"), "customers");
        ciphertexts.push((key.to_vec(), value.to_string()));
    }

    // Any Vault client can decrypt what the pipeline wrote, with transit/decrypt alone.
    let inputs: Vec<DecryptInput<'_>> = ciphertexts
        .iter()
        .map(|(_, c)| DecryptInput {
            ciphertext: c,
            context: None,
            associated_data: None,
        })
        .collect();
    let plaintexts = vault.decrypt_batch("customers", &inputs).await.unwrap();
    for ((key, _), plaintext) in ciphertexts.iter().zip(plaintexts) {
        let original = records
            .iter()
            .find(|r| r.key.as_deref() == Some(key))
            .unwrap();
        assert_eq!(Some(plaintext.unwrap()), original.value);
    }

    // The decrypt pipeline gives back the records exactly: value, key and headers.
    let clear = kafka.read("clear", total, WAIT).await;
    assert_eq!(clear.len(), total);
    for message in &clear {
        let original = records
            .iter()
            .find(|r| r.key.as_deref() == message.key())
            .expect("known key");
        assert_eq!(message.payload().map(<[u8]>::to_vec), original.value);
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            headers, original.headers,
            "stamps removed, original headers intact"
        );
    }
    assert!(kafka
        .read("dlq", 1, Duration::from_secs(2))
        .await
        .is_empty());
    // One Vault request per batch, not per record.
    let vault_requests = vault_server.stats().requests;
    assert!(
        vault_requests < 40,
        "{vault_requests} Vault requests for {total} records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_are_dead_lettered_on_the_source_cluster_never_the_sink() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let source = TestKafka::start(&[("in", 1), ("dlq", 1)]);
    let sink = TestKafka::start(&[("out", 1), ("dlq", 1)]);
    let values = ["a", "invalid", "b", "trap", "c"];
    let records: Vec<TestRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| TestRecord::new(&format!("k{i}"), v))
        .collect();
    source.produce("in", &records).await;

    let mut pipeline_spec = spec(&source, &url, "in", "out", String::new());
    pipeline_spec.sink_bootstrap = &sink.bootstrap;
    pipeline_spec.policy = format!("path = \"{}\"", guest_component("fault-test").display());
    pipeline_spec.policy_config = "";
    let pipeline =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| {
            m.records_out == 3 && m.dead_lettered == 2 && m.committed_batches > 0
        })
        .await;
    pipeline.stop().await.unwrap();

    let out: Vec<Vec<u8>> = sink
        .read("out", 3, WAIT)
        .await
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(
        sink.read("dlq", 1, Duration::from_secs(2)).await.is_empty(),
        "nothing failed goes to the sink cluster"
    );

    let dead = source.read("dlq", 2, WAIT).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload(), Some(&b"invalid"[..]));
    assert_eq!(dead[0].key(), Some(&b"k1"[..]));
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::ERROR_KIND),
        "invalid-input"
    );
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::SOURCE_TOPIC),
        "in"
    );
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::SOURCE_PARTITION),
        "0"
    );
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::SOURCE_OFFSET),
        "1"
    );
    assert!(header_text(&dead[0], dead_letter_headers::POLICY_DIGEST).starts_with("sha256:"));
    assert_eq!(dead[1].payload(), Some(&b"trap"[..]));
    assert_eq!(
        header_text(&dead[1], dead_letter_headers::ERROR_KIND),
        "policy-error"
    );
    assert!(header_text(&dead[1], dead_letter_headers::ERROR).contains("trap"));
    assert_eq!(
        header_text(&dead[1], dead_letter_headers::SOURCE_OFFSET),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_placed_on_the_sink_cluster_carry_no_record_contents() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let source = TestKafka::start(&[("in", 1)]);
    let sink = TestKafka::start(&[("out", 1), ("dlq", 1)]);
    source
        .produce("in", &[TestRecord::new("secret-key", "invalid")])
        .await;

    let mut pipeline_spec = spec(&source, &url, "in", "out", String::new());
    pipeline_spec.sink_bootstrap = &sink.bootstrap;
    pipeline_spec.policy = format!("path = \"{}\"", guest_component("fault-test").display());
    pipeline_spec.policy_config = "";
    pipeline_spec.errors = "dead_letter_topic = \"dlq\"\ndead_letter_cluster = \"sink\"";
    let pipeline =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| m.dead_lettered == 1 && m.committed_batches > 0)
        .await;
    pipeline.stop().await.unwrap();

    let dead = sink.read("dlq", 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), None);
    assert_eq!(dead[0].payload(), None);
    assert_eq!(
        header_text(&dead[0], dead_letter_headers::SOURCE_OFFSET),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_failure_leaves_the_failed_record_uncommitted_for_the_next_run() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let fault_test = format!("path = \"{}\"", guest_component("fault-test").display());
    kafka
        .produce(
            "in",
            &[TestRecord::new("k0", "a"), TestRecord::new("k1", "b")],
        )
        .await;

    let mut stop_spec = spec(&kafka, &url, "in", "out", fault_test.clone());
    stop_spec.policy_config = "";
    stop_spec.errors = "on_failure = \"stop\"";
    let pipeline =
        RunningPipeline::start(stop_spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 2 && m.committed_batches > 0)
        .await;
    kafka
        .produce(
            "in",
            &[TestRecord::new("k2", "invalid"), TestRecord::new("k3", "d")],
        )
        .await;
    match pipeline.finished(WAIT).await {
        Err(PipelineError::StoppedOnFailure { offset, kind, .. }) => {
            assert_eq!(offset, 2);
            assert_eq!(kind, "invalid-input");
        }
        other => panic!("expected a stop on the invalid record, got {other:?}"),
    }

    // The next run (dead-lettering this time) starts at the failed record, not before
    // it (a and b were committed) and not after it (nothing was skipped).
    let mut dlq_spec = spec(&kafka, &url, "in", "out", fault_test);
    dlq_spec.policy_config = "";
    let pipeline =
        RunningPipeline::start(dlq_spec.config(), support::client_for(&vault_server)).await;
    let done = pipeline
        .wait_until(WAIT, |m| {
            m.dead_lettered == 1 && m.records_out == 1 && m.committed_batches > 0
        })
        .await;
    assert_eq!(done.records_in, 2, "resumed exactly at the failed record");
    pipeline.stop().await.unwrap();
    let out: Vec<Vec<u8>> = kafka
        .read("out", 3, WAIT)
        .await
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_vault_pauses_the_pipeline_without_losing_or_leaking_records() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("dlq", 1)]);
    let records: Vec<TestRecord> = (0..100)
        .map(|i| TestRecord::new(&format!("k{i}"), "top secret"))
        .collect();
    kafka.produce("in", &records).await;
    vault_server.faults().seal();

    let pipeline = RunningPipeline::start(
        spec(
            &kafka,
            &url,
            "in",
            "out",
            "builtin = \"encrypt-value\"".into(),
        )
        .config(),
        support::client_for(&vault_server),
    )
    .await;
    pipeline.wait_until(WAIT, |m| m.batch_retries >= 2).await;
    assert!(
        kafka
            .read("out", 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing reaches the sink while Vault is sealed"
    );
    vault_server.faults().unseal();
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out == 100 && m.committed_batches > 0)
        .await;
    assert_eq!(done.dead_lettered, 0);
    pipeline.stop().await.unwrap();
    let out = kafka.read("out", 100, WAIT).await;
    assert_eq!(out.len(), 100);
    assert!(out
        .iter()
        .all(|m| m.payload().unwrap().starts_with(b"vault:v1:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_policy_file_changes_behaviour_without_rebuilding_the_host() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("plain", 1), ("sealed", 1), ("dlq", 1)]);
    kafka.produce("in", &[TestRecord::new("k", "hello")]).await;

    for (sink, component) in [("plain", "passthrough"), ("sealed", "encrypt-value")] {
        let mut pipeline_spec = spec(&kafka, &url, "in", sink, String::new());
        pipeline_spec.policy = format!("path = \"{}\"", guest_component(component).display());
        pipeline_spec.group = sink;
        let pipeline =
            RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server))
                .await;
        pipeline
            .wait_until(WAIT, |m| m.records_out == 1 && m.committed_batches > 0)
            .await;
        pipeline.stop().await.unwrap();
    }
    let plain = kafka.read("plain", 1, WAIT).await;
    assert_eq!(plain[0].payload(), Some(&b"hello"[..]));
    let sealed = kafka.read("sealed", 1, WAIT).await;
    let text = std::str::from_utf8(sealed[0].payload().unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(text.strip_prefix("vault:v1:").expect("Vault ciphertext"))
        .unwrap();
    assert_eq!(
        payload.len(),
        "hello".len() + 28,
        "nonce + ciphertext + tag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_commits_so_the_next_run_repeats_nothing() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 3), ("out", 3), ("dlq", 1)]);
    let batch = |from: usize| -> Vec<TestRecord> {
        (from..from + 300)
            .map(|i| TestRecord::new(&format!("k{i}"), &format!("v{i}")))
            .collect()
    };
    kafka.produce("in", &batch(0)).await;
    let pipeline_spec = spec(
        &kafka,
        &url,
        "in",
        "out",
        "builtin = \"passthrough\"".into(),
    );

    let first =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    first.wait_until(WAIT, |m| m.records_out == 300).await;
    first.stop().await.unwrap();

    kafka.produce("in", &batch(300)).await;
    let second =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    let done = second
        .wait_until(WAIT, |m| m.records_out == 300 && m.committed_batches > 0)
        .await;
    second.stop().await.unwrap();
    assert_eq!(
        done.records_in, 300,
        "the second run starts where the first stopped"
    );
    let out = kafka.read("out", 601, Duration::from_secs(5)).await;
    assert_eq!(out.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_level_encryption_hides_only_the_selected_fields() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("raw", 1), ("protected", 1), ("clear", 1), ("dlq", 1)]);
    let ada = r#"{"name": "Ada", "ssn": "123-45-6789", "card": {"number": "4111111111111111", "exp": "12/29"}}"#;
    kafka.produce("raw", &[TestRecord::new("ada", ada)]).await;

    let fields = "key = \"customers\"\nfields = [\"/ssn\", \"/card/number\"]";
    for (from, to, policy) in [
        ("raw", "protected", "encrypt-fields"),
        ("protected", "clear", "decrypt-fields"),
    ] {
        let mut pipeline_spec = spec(&kafka, &url, from, to, format!("builtin = \"{policy}\""));
        pipeline_spec.policy_config = fields;
        let pipeline = RunningPipeline::start(pipeline_spec.config(), vault.clone()).await;
        pipeline
            .wait_until(WAIT, |m| m.records_out == 1 && m.committed_batches > 0)
            .await;
        pipeline.stop().await.unwrap();
    }

    let protected = kafka.read("protected", 1, WAIT).await;
    let seen: serde_json::Value = serde_json::from_slice(protected[0].payload().unwrap()).unwrap();
    assert_eq!(seen["name"], "Ada", "unselected fields stay readable");
    assert_eq!(seen["card"]["exp"], "12/29");
    for field in [&seen["ssn"], &seen["card"]["number"]] {
        assert!(field.as_str().unwrap().starts_with("vault:v1:"), "{field}");
    }
    assert!(!String::from_utf8_lossy(protected[0].payload().unwrap()).contains("4111"));

    let clear = kafka.read("clear", 1, WAIT).await;
    let restored: serde_json::Value = serde_json::from_slice(clear[0].payload().unwrap()).unwrap();
    assert_eq!(
        restored,
        serde_json::from_str::<serde_json::Value>(ada).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_policies_round_trip_with_a_handful_of_vault_requests() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    support::create_key(&vault_server, "transit", "customers", serde_json::json!({})).await;
    let kafka = TestKafka::start(&[("raw", 3), ("sealed", 3), ("opened", 3), ("dlq", 1)]);
    let records: Vec<TestRecord> = (0..600)
        .map(|i| {
            TestRecord::new(
                &format!("k{i}"),
                &format!("secret-{i}-{}", "x".repeat(i * 10)),
            )
        })
        .collect();
    kafka.produce("raw", &records).await;
    let before = vault_server.stats().requests;

    for (from, to, policy) in [
        ("raw", "sealed", "envelope-seal"),
        ("sealed", "opened", "envelope-open"),
    ] {
        let pipeline = RunningPipeline::start(
            spec(&kafka, &url, from, to, format!("builtin = \"{policy}\"")).config(),
            vault.clone(),
        )
        .await;
        pipeline
            .wait_until(WAIT, |m| m.records_out == 600 && m.committed_batches > 0)
            .await;
        pipeline.stop().await.unwrap();
    }
    let requests = vault_server.stats().requests - before;
    assert!(
        requests <= 2,
        "{requests} Vault requests for 600 records sealed and opened"
    );

    for message in kafka.read("sealed", 600, WAIT).await {
        let value = message.payload().unwrap();
        assert_eq!(value[0], 2, "envelope format version 2");
        assert!(!String::from_utf8_lossy(value).contains("secret-"));
        assert_eq!(
            header_text(&message, "kafka-transit.policy"),
            "envelope-seal"
        );
    }
    let opened = kafka.read("opened", 600, WAIT).await;
    assert_eq!(opened.len(), 600);
    for message in &opened {
        let original = records
            .iter()
            .find(|r| r.key.as_deref() == message.key())
            .unwrap();
        assert_eq!(message.payload().map(<[u8]>::to_vec), original.value);
        assert!(
            message.headers().is_none_or(|h| h.count() == 0),
            "stamps removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypting_policies_dead_letter_plaintext_instead_of_passing_it_on() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    support::create_key(&vault_server, "transit", "customers", serde_json::json!({})).await;
    let kafka = TestKafka::start(&[
        ("raw", 1),
        ("out-value", 1),
        ("out-envelope", 1),
        ("dlq", 1),
    ]);
    kafka
        .produce(
            "raw",
            &[
                TestRecord::new("k0", r#"{"ssn":"123-45-6789"}"#),
                TestRecord::new("k1", "vault:v1:AAAA"),
            ],
        )
        .await;

    for (sink, policy) in [
        ("out-value", "decrypt-value"),
        ("out-envelope", "envelope-open"),
    ] {
        let mut pipeline_spec = spec(&kafka, &url, "raw", sink, format!("builtin = \"{policy}\""));
        pipeline_spec.group = sink;
        let pipeline =
            RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server))
                .await;
        pipeline
            .wait_until(WAIT, |m| m.dead_lettered == 2 && m.committed_batches > 0)
            .await;
        pipeline.stop().await.unwrap();
        assert!(
            kafka.read(sink, 1, Duration::from_secs(1)).await.is_empty(),
            "{policy} passed a record on"
        );
    }
    let dead = kafka.read("dlq", 4, WAIT).await;
    assert_eq!(dead.len(), 4);
    for message in &dead {
        assert_eq!(
            header_text(message, dead_letter_headers::ERROR_KIND),
            "invalid-input"
        );
    }
    assert!(header_text(&dead[0], dead_letter_headers::ERROR)
        .contains("not a Vault transit ciphertext"));
    assert!(
        header_text(&dead[1], dead_letter_headers::ERROR).contains("invalid ciphertext"),
        "Vault's own reason"
    );
    assert!(
        header_text(&dead[2], dead_letter_headers::ERROR).contains("not a kafka-transit envelope")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_every_acknowledgement_then_commits() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let records: Vec<TestRecord> = (0..200)
        .map(|i| TestRecord::new(&format!("k{i}"), "v"))
        .collect();
    kafka.produce("in", &records).await;
    // Acknowledgements now take long enough that a stop always finds some in flight.
    kafka.slow_brokers(Duration::from_millis(400));
    let mut pipeline_spec = spec(
        &kafka,
        &url,
        "in",
        "out",
        "builtin = \"passthrough\"".into(),
    );
    pipeline_spec.group = "stop-drains";

    let first =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    // A stop while the batch is still in the policy leaves it unsent (and uncommitted);
    // this test is about a stop that finds acknowledgements outstanding.
    first.wait_until(WAIT, |m| m.batches_in_flight > 0).await;
    let stopped = first.stop().await.unwrap();
    assert!(stopped.records_in > 0);
    assert_eq!(
        stopped.records_out, stopped.records_in,
        "every record handed to the producer was acknowledged before the stop returned"
    );

    let second =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    let rest = 200 - stopped.records_in;
    if rest > 0 {
        let done = second
            .wait_until(WAIT, |m| m.records_out >= rest && m.committed_batches > 0)
            .await;
        assert_eq!(
            done.records_in, rest,
            "the second run starts exactly after the first"
        );
    }
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_assignment_resumes_from_committed_offsets_without_group_membership() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 3), ("out", 3), ("dlq", 1)]);
    let batch = |from: usize| -> Vec<TestRecord> {
        (from..from + 150)
            .map(|i| TestRecord::new(&format!("k{i}"), &format!("v{i}")))
            .collect()
    };
    kafka.produce("in", &batch(0)).await;
    let mut config = spec(
        &kafka,
        &url,
        "in",
        "out",
        "builtin = \"passthrough\"".into(),
    )
    .config();
    config.source.assignment = kafka_transit::config::Assignment::Static;

    let first = RunningPipeline::start(config.clone(), support::client_for(&vault_server)).await;
    first.wait_until(WAIT, |m| m.records_out == 150).await;
    first.stop().await.unwrap();

    kafka.produce("in", &batch(150)).await;
    let second = RunningPipeline::start(config.clone(), support::client_for(&vault_server)).await;
    let done = second
        .wait_until(WAIT, |m| m.records_out == 150 && m.committed_batches > 0)
        .await;
    second.stop().await.unwrap();
    assert_eq!(
        done.records_in, 150,
        "resumed from the committed offsets of every partition"
    );
    assert_eq!(
        kafka.read("out", 301, Duration::from_secs(5)).await.len(),
        300
    );

    config.source.topics = vec!["missing".into()];
    let missing = RunningPipeline::start(config, support::client_for(&vault_server)).await;
    match missing.finished(WAIT).await {
        Err(PipelineError::SourceTopic(message)) => {
            assert!(message.contains("\"missing\""), "{message}")
        }
        other => panic!("expected a missing-topic error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_data_keys_settings_reach_the_envelope_import() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    support::create_key(&vault_server, "transit", "customers", serde_json::json!({})).await;
    let kafka = TestKafka::start(&[("raw", 1), ("sealed", 1), ("dlq", 1)]);
    let records: Vec<TestRecord> = (0..300)
        .map(|i| TestRecord::new(&format!("k{i}"), "secret"))
        .collect();
    kafka.produce("raw", &records).await;

    let mut pipeline_spec = spec(
        &kafka,
        &url,
        "raw",
        "sealed",
        "builtin = \"envelope-seal\"".into(),
    );
    pipeline_spec.policy_config = "key = \"customers\"\n[policy.data_keys]\nmax_records = 100";
    let pipeline =
        RunningPipeline::start(pipeline_spec.config(), support::client_for(&vault_server)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 300 && m.committed_batches > 0)
        .await;
    pipeline.stop().await.unwrap();

    let data_keys = vault_server
        .stats()
        .by_operation
        .get("datakey")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        data_keys, 3,
        "a new data key every 100 records, as [policy.data_keys] says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_keep_their_source_timestamps_unless_the_sink_stamps_them() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let kafka = TestKafka::start(&[("in", 2), ("kept", 2), ("stamped", 2), ("dlq", 1)]);
    // Event times of a day ago, a second apart.
    let day_ago = chrono_free_now_millis() - 86_400_000;
    let records: Vec<TestRecord> = (0..20)
        .map(|i| TestRecord {
            timestamp: Some(day_ago + i * 1000),
            ..TestRecord::new(&format!("k{i}"), &format!("v{i}"))
        })
        .collect();
    kafka.produce("in", &records).await;

    for (sink, setting) in [("kept", ""), ("stamped", "produce")] {
        let mut config =
            spec(&kafka, &url, "in", sink, "builtin = \"passthrough\"".into()).config();
        config.source.group_id = sink.to_string();
        if !setting.is_empty() {
            config.sink.timestamp = kafka_transit::config::TimestampSource::Produce;
        }
        let pipeline = RunningPipeline::start(config, support::client_for(&vault_server)).await;
        pipeline
            .wait_until(WAIT, |m| m.records_out == 20 && m.committed_batches > 0)
            .await;
        pipeline.stop().await.unwrap();
    }
    let expected: std::collections::HashMap<String, i64> = records
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                r.timestamp.unwrap(),
            )
        })
        .collect();
    let timestamp_of = |m: &OwnedMessage| m.timestamp().to_millis().expect("a timestamp");
    for message in kafka.read("kept", 20, WAIT).await {
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        assert_eq!(
            timestamp_of(&message),
            expected[&key],
            "{key} lost its event time"
        );
    }
    let stamped = kafka.read("stamped", 20, WAIT).await;
    assert_eq!(stamped.len(), 20);
    for message in stamped {
        assert!(
            timestamp_of(&message) > day_ago + 3_600_000,
            "sink.timestamp = \"produce\" stamps the time of production"
        );
    }
}

fn chrono_free_now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
