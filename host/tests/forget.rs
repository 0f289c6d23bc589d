//! Forgetting a data subject through pipelines (docs/forgetting.md), on the mock cluster
//! with an in-process vault-dev: records sealed per subject, one subject forgotten while
//! the sealing runner runs. Its transit key is gone from Vault; the sealing runner
//! refuses its new records; the opening pipeline dead-letters its old ones as forgotten
//! and restores every other subject's byte for byte.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_transit::config::PipelineConfig;
use kafka_transit::forget::{self, SubjectNaming};
use rdkafka::message::Message;
use serde_json::json;
use support::kafka::{header_text, PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);
const SUBJECTS: usize = 4;

/// `spec`'s file with a `[forget]` table on topic `forgotten`.
fn with_forget(spec: &PipelineSpec<'_>) -> PipelineConfig {
    let text = format!(
        "{}\n[forget]\ntopic = \"forgotten\"\ngrace = \"1s\"\n",
        spec.text()
    );
    PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn record(subject: usize, n: usize) -> TestRecord {
    TestRecord::new(
        &format!("subject-{subject}"),
        &format!(r#"{{"n": {n}, "secret": "of subject {subject}"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_subjects_records_open_nowhere_and_the_others_are_untouched() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    support::create_key(&vault_server, "transit", "subject-ids", json!({})).await;
    let kafka = TestKafka::start(&[
        ("in", 2),
        ("out", 2),
        ("back", 2),
        ("dlq", 1),
        ("dlq-open", 1),
        // The mock cluster does not take CreateTopics: the runners' own creation of the
        // forget topic runs against Apache Kafka in .ci/e2e/forget.sh.
        ("forgotten", 1),
    ]);
    let originals: Vec<TestRecord> = (0..40).map(|n| record(n % SUBJECTS, n)).collect();
    kafka.produce("in", &originals).await;

    let mut seal = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "forget-seal",
        "builtin = \"envelope-seal\"".into(),
    );
    seal.policy_config =
        "subject = \"{key}\"\nsubject_keys = \"customers-\"\nsubject_hmac_key = \"subject-ids\"";
    let seal = with_forget(&seal);
    let settings = seal.forget.clone().expect("[forget]");
    let naming = SubjectNaming::of(&seal).expect("the sealing pipeline names subjects' keys");
    let source = seal.source.clone();
    let sealing = RunningPipeline::start(seal, vault.clone()).await;
    sealing.wait_until(WAIT, |m| m.records_out == 40).await;

    // Forgotten while the runner runs.
    let report = forget::forget(&vault, &source, &settings, &naming, "subject-1")
        .await
        .expect("forget");
    assert!(report.key.starts_with("customers-"), "{report}");
    assert!(!report.key.contains("subject"), "the name is a pseudonym");
    assert_eq!(report.versions_deleted, [1]);
    assert_eq!(vault.key_versions(&report.key).await.unwrap(), None);
    let other = naming.key_of(&vault, "subject-2").await.unwrap();
    assert!(vault.key_versions(&other).await.unwrap().is_some());
    // Again: nothing left to delete, and it says so.
    let again = forget::forget(&vault, &source, &settings, &naming, "subject-1")
        .await
        .expect("forget is idempotent");
    assert!(again.versions_deleted.is_empty(), "{again}");

    // A forgotten subject stays forgotten: its new record is refused, not sealed under a
    // key made again.
    let late: Vec<TestRecord> = (0..SUBJECTS).map(|s| record(s, 100 + s)).collect();
    kafka.produce("in", &late).await;
    sealing
        .wait_until(WAIT, |m| m.records_out == 43 && m.dead_lettered == 1)
        .await;
    sealing.stop().await.expect("clean stop");
    assert_eq!(vault.key_versions(&report.key).await.unwrap(), None);
    let refused = kafka.read("dlq", 1, WAIT).await;
    assert_eq!(refused[0].key(), Some(&b"subject-1"[..]));
    assert!(header_text(&refused[0], "kafka-transit.error").starts_with("subject forgotten"));

    let mut open = PipelineSpec::from_to(
        &kafka,
        &url,
        "out",
        "back",
        "builtin = \"envelope-open\"".into(),
    );
    open.policy_config = "subject_keys = \"customers-\"";
    open.errors = "on_failure = \"dead-letter\"\ndead_letter_topic = \"dlq-open\"";
    let opening = RunningPipeline::start(with_forget(&open), vault.clone()).await;
    opening
        .wait_until(WAIT, |m| m.records_out == 33 && m.dead_lettered == 10)
        .await;
    opening.stop().await.expect("clean stop");

    let mut expected: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for r in originals.iter().chain(&late) {
        if r.key.as_deref() != Some(&b"subject-1"[..]) {
            let values = expected.entry(r.key.clone().unwrap()).or_default();
            values.push(r.value.clone().unwrap());
        }
    }
    let mut restored: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for m in kafka.read("back", 33, WAIT).await {
        let values = restored.entry(m.key().unwrap().to_vec()).or_default();
        values.push(m.payload().unwrap().to_vec());
    }
    for values in restored.values_mut().chain(expected.values_mut()) {
        values.sort();
    }
    assert_eq!(
        restored, expected,
        "every other subject's records, byte for byte"
    );
    let dead = kafka.read("dlq-open", 10, WAIT).await;
    assert_eq!(dead.len(), 10);
    for message in dead {
        assert_eq!(message.key(), Some(&b"subject-1"[..]));
        let reason = header_text(&message, "kafka-transit.error");
        assert!(reason.starts_with("subject forgotten"), "{reason}");
    }
}
