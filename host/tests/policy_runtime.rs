//! The wasmtime side of the host, against real components built from guest/: traps,
//! deadlines, memory limits, miscounted results and ambient authority. No Kafka here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_transit::config::PolicySource;
use kafka_transit::policy::{
    Failure, Limits, PolicyError, PolicyRunner, PolicyRuntime, SourceRecord,
};

fn component(file: &str) -> PolicySource {
    PolicySource::File(PathBuf::from(env!("OUT_DIR")).join(file))
}

fn record(offset: i64, value: &str) -> SourceRecord {
    SourceRecord {
        topic: "in".into(),
        partition: 0,
        offset,
        timestamp: Some(1_700_000_000_000),
        key: Some(format!("k{offset}").into_bytes()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![],
    }
}

async fn runner(
    source: PolicySource,
    config: &str,
    limits: Limits,
) -> Result<PolicyRunner, PolicyError> {
    let runtime = PolicyRuntime::load(&source, config.to_string(), limits, None)?;
    PolicyRunner::start(Arc::new(runtime)).await
}

/// The error a policy that must not start gives.
async fn start_error(source: PolicySource, config: &str) -> PolicyError {
    match runner(source, config, Limits::default()).await {
        Ok(_) => panic!("the policy started"),
        Err(error) => error,
    }
}

async fn fault_test(limits: Limits) -> PolicyRunner {
    runner(component("fault_test.wasm"), "{}", limits)
        .await
        .unwrap()
}

fn value_of(result: &kafka_transit::policy::TransformResult) -> Vec<u8> {
    result.as_ref().unwrap()[0].value.clone().unwrap()
}

#[tokio::test]
async fn passthrough_returns_records_unchanged() {
    let mut runner = runner(
        PolicySource::Builtin("passthrough".into()),
        "{}",
        Limits::default(),
    )
    .await
    .unwrap();
    let mut tombstone = record(2, "");
    tombstone.value = None;
    tombstone.headers = vec![kafka_transit::policy::Header {
        key: "h".into(),
        value: None,
    }];
    let batch = vec![record(0, "a"), record(1, "b"), tombstone];
    let results = runner.transform(&batch).await.unwrap();
    assert_eq!(results.len(), 3);
    for (input, result) in batch.iter().zip(&results) {
        let output = &result.as_ref().unwrap()[0];
        assert_eq!(output.topic, None);
        assert_eq!(output.key, input.key);
        assert_eq!(output.value, input.value);
        assert_eq!(output.headers, input.headers);
    }
}

#[tokio::test]
async fn a_trap_fails_only_the_record_that_caused_it() {
    let mut runner = fault_test(Limits::default()).await;
    let batch = vec![record(0, "a"), record(1, "trap"), record(2, "c")];
    let results = runner.transform(&batch).await.unwrap();
    assert_eq!(value_of(&results[0]), b"a");
    match &results[1] {
        Err(Failure::PolicyError(message)) => assert!(message.contains("trap"), "{message}"),
        other => panic!("expected a policy error, got {other:?}"),
    }
    assert_eq!(value_of(&results[2]), b"c");
    assert!(
        runner.replaced_instances >= 2,
        "trapped instances are replaced"
    );

    // The runner is healthy afterwards.
    let results = runner.transform(&[record(3, "d")]).await.unwrap();
    assert_eq!(value_of(&results[0]), b"d");
}

#[tokio::test]
async fn a_runaway_guest_is_stopped_by_the_batch_deadline() {
    let limits = Limits {
        batch_deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let mut runner = fault_test(limits).await;
    let started = Instant::now();
    let results = runner
        .transform(&[record(0, "ok"), record(1, "spin")])
        .await
        .unwrap();
    assert_eq!(value_of(&results[0]), b"ok");
    match &results[1] {
        Err(Failure::PolicyError(message)) => assert!(message.contains("deadline"), "{message}"),
        other => panic!("expected a deadline failure, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn memory_is_limited_per_instance() {
    let limits = Limits {
        memory_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let mut runner = fault_test(limits).await;
    let results = runner
        .transform(&[record(0, "hog"), record(1, "fine")])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(Failure::PolicyError(_))),
        "{:?}",
        results[0]
    );
    assert_eq!(value_of(&results[1]), b"fine");
}

#[tokio::test]
async fn a_policy_that_miscounts_fails_its_records_instead_of_misaligning_them() {
    let mut runner = runner(
        component("fault_test.wasm"),
        r#"{"miscount":true}"#,
        Limits::default(),
    )
    .await
    .unwrap();
    let results = runner
        .transform(&[record(0, "a"), record(1, "b")])
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    for result in &results {
        match result {
            Err(Failure::PolicyError(message)) => assert!(message.contains("results"), "{message}"),
            other => panic!("expected a policy error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn guests_have_no_ambient_authority() {
    let mut runner = fault_test(Limits::default()).await;
    let results = runner.transform(&[record(0, "probe")]).await.unwrap();
    assert_eq!(
        String::from_utf8(value_of(&results[0])).unwrap(),
        "env=0 args=0 fs=false"
    );
}

/// The `pipeline` import (WIT 0.2.1): `sink.topic` rendered for the record's topic when
/// the runtime runs in a pipeline, an error outside one (`kafka-transit validate`).
#[tokio::test]
async fn the_pipeline_import_answers_the_rendered_sink_topic_and_an_error_outside_one() {
    let config = kafka_transit::config::PipelineConfig::parse(
        r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["in", "orders.raw"]
group_id = "g"
[sink]
bootstrap_servers = "127.0.0.1:9092"
topic = "{topic|strip_suffix:.raw}.protected"
[vault]
address = "http://127.0.0.1:8200"
token_env = "VAULT_TOKEN"
[policy]
builtin = "passthrough"
[errors]
on_failure = "stop"
"#,
    )
    .expect("a pipeline");
    let view = kafka_transit::policy::pipeline::PipelineView::of(&config).expect("a sink route");
    let runtime = PolicyRuntime::load(
        &component("fault_test.wasm"),
        "{}".into(),
        Limits::default(),
        None,
    )
    .unwrap()
    .with_pipeline(view);
    let mut runner = PolicyRunner::start(Arc::new(runtime)).await.unwrap();
    let mut raw = record(1, "sink-topic");
    raw.topic = "orders.raw".into();
    let results = runner
        .transform(&[record(0, "sink-topic"), raw])
        .await
        .unwrap();
    assert_eq!(value_of(&results[0]), b"in.protected");
    assert_eq!(value_of(&results[1]), b"orders.protected");

    let mut outside = fault_test(Limits::default()).await;
    let results = outside.transform(&[record(0, "sink-topic")]).await.unwrap();
    let answer = String::from_utf8(value_of(&results[0])).unwrap();
    assert!(answer.contains("outside a pipeline"), "{answer}");
}

#[tokio::test]
async fn invalid_input_and_retryable_failures_reach_the_host() {
    let mut runner = fault_test(Limits::default()).await;
    let results = runner
        .transform(&[record(0, "invalid"), record(1, "retry-once")])
        .await
        .unwrap();
    assert!(matches!(&results[0], Err(Failure::InvalidInput(_))));
    assert!(matches!(&results[1], Err(Failure::Retryable(_))));
    let again = runner.transform(&[record(1, "retry-once")]).await.unwrap();
    assert_eq!(value_of(&again[0]), b"retry-once");
}

#[tokio::test]
async fn configuration_errors_surface_at_start() {
    let error = start_error(component("fault_test.wasm"), r#"{"reject":1}"#).await;
    assert!(matches!(error, PolicyError::Init { .. }));
    assert!(
        error.to_string().contains("policy.config.reject"),
        "{error}"
    );

    let error = start_error(PolicySource::Builtin("encrypt-value".into()), "{}").await;
    assert!(error.to_string().contains("missing field `key`"), "{error}");
}

#[tokio::test]
async fn bad_components_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let error = start_error(PolicySource::File(junk), "{}").await;
    assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");

    let error = start_error(PolicySource::File(dir.path().join("missing.wasm")), "{}").await;
    assert!(
        error.to_string().starts_with("policy.path: cannot read"),
        "{error}"
    );

    let error = start_error(PolicySource::Builtin("encrypt-everything".into()), "{}").await;
    assert!(
        error.to_string().contains("encrypt-value"),
        "lists the built-ins: {error}"
    );
}

#[tokio::test]
async fn encrypt_value_without_vault_is_retryable_not_a_leak() {
    let mut runner = runner(
        PolicySource::Builtin("encrypt-value".into()),
        r#"{"key":"customers"}"#,
        Limits::default(),
    )
    .await
    .unwrap();
    let results = runner.transform(&[record(0, "secret")]).await.unwrap();
    match &results[0] {
        Err(Failure::Retryable(message)) => assert!(!message.contains("secret")),
        other => panic!("expected retryable, got {other:?}"),
    }
}

/// The reason a component written as WAT text is refused.
async fn refusal(wat: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, wat::parse_str(wat).expect("valid WAT")).unwrap();
    let error = start_error(PolicySource::File(path), "{}").await;
    assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
    error.to_string()
}

fn host_package() -> &'static str {
    kafka_transit::policy::world::package()
}

#[tokio::test]
async fn a_core_module_is_refused_with_how_to_build_a_component() {
    let message = refusal("(module)").await;
    assert!(message.contains("core WebAssembly module"), "{message}");
    assert!(message.contains("--target wasm32-wasip2"), "{message}");
    assert!(message.contains("cargo component build"), "{message}");
}

#[tokio::test]
async fn a_component_without_the_policy_export_is_told_what_to_export() {
    let message = refusal(
        r#"(component
             (instance $nothing)
             (export "wasi:cli/run@0.2.0" (instance $nothing)))"#,
    )
    .await;
    let export = format!(
        "does not export {}",
        host_package().replace('@', "/policy@")
    );
    assert!(message.contains(&export), "{message}");
    assert!(
        message.contains("exports only wasi:cli/run@0.2.0"),
        "{message}"
    );
    assert!(message.contains("configured_policy!"), "{message}");
}

#[tokio::test]
async fn a_component_built_against_another_wit_version_is_told_to_rebuild() {
    let message = refusal(
        r#"(component
             (import "kafka-transit:policy/transit@0.1.0"
               (instance (export "hmac" (func (param "key" string)))))
             (instance $policy)
             (export "kafka-transit:policy/policy@0.1.0" (instance $policy)))"#,
    )
    .await;
    assert!(
        message.contains(&format!(
            "built against kafka-transit:policy@0.1.0, but this host implements {}",
            host_package()
        )),
        "{message}"
    );
    assert!(message.contains("kafka-transit policy wit"), "{message}");
    assert_eq!(
        message.matches("0.1.0").count(),
        1,
        "one rebuild: {message}"
    );
}

#[tokio::test]
async fn imports_the_host_does_not_grant_are_each_named() {
    let version = host_package().split_once('@').unwrap().1;
    let message = refusal(&format!(
        r#"(component
             (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
             (import "kafka-transit:policy/kms@{version}" (instance (export "unwrap" (func))))
             (import "acme:vault/client@1.0.0" (instance (export "read" (func))))
             (instance $policy)
             (export "kafka-transit:policy/policy@{version}" (instance $policy)))"#
    ))
    .await;
    assert!(
        message.contains(
            "imports wasi:http/outgoing-handler@0.2.0, and policies are not granted wasi:http"
        ),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "imports kafka-transit:policy/kms@{version}, which"
        )),
        "{message}"
    );
    assert!(
        message.contains("imports acme:vault/client@1.0.0, which this host does not provide"),
        "{message}"
    );
    assert!(!message.contains("does not export"), "{message}");
}

#[tokio::test]
async fn a_policy_export_of_the_wrong_shape_gets_wasmtimes_words_and_the_way_out() {
    let message = refusal(&format!(
        r#"(component
             (instance $policy)
             (export "{}" (instance $policy)))"#,
        host_package().replace('@', "/policy@")
    ))
    .await;
    assert!(
        message.contains("init"),
        "wasmtime names the function: {message}"
    );
    assert!(message.contains("kafka-transit policy wit"), "{message}");
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, "fn main() {}").unwrap();
    let error = start_error(PolicySource::File(path), "{}").await;
    assert!(
        error.to_string().contains("not a WebAssembly file"),
        "{error}"
    );
}

/// Policies built against WIT 0.2.0, before 0.2.1 added `pipeline`, `seal-v3` and bound
/// transit items, keep running: the host links 0.2.x by semver. The fixtures are the
/// built-in `passthrough` and `envelope-seal` as built at commit 59a06bd (WIT 0.2.0).
#[tokio::test]
async fn components_built_against_wit_0_2_0_still_run() {
    let fixture = |name: &str| {
        PolicySource::File(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
    };
    let wasm = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passthrough-wit-0.2.0.wasm"),
    )
    .unwrap();
    assert!(
        wasm.windows(33)
            .any(|w| w == b"kafka-transit:policy/policy@0.2.0"),
        "the fixture is a 0.2.0 component"
    );
    let mut passthrough = runner(
        fixture("passthrough-wit-0.2.0.wasm"),
        "{}",
        Limits::default(),
    )
    .await
    .expect("a 0.2.0 component loads on this host");
    let results = passthrough.transform(&[record(0, "a")]).await.unwrap();
    assert_eq!(value_of(&results[0]), b"a");

    // One that imports 0.2.0's envelope interface links too (no Vault here: sealing
    // fails as unavailable, which shows the import was reached).
    let mut seal = runner(
        fixture("envelope-seal-wit-0.2.0.wasm"),
        r#"{"key":"customers"}"#,
        Limits::default(),
    )
    .await
    .expect("a 0.2.0 component importing envelope loads on this host");
    let results = seal.transform(&[record(0, "a")]).await.unwrap();
    assert!(
        matches!(&results[0], Err(Failure::Retryable(m)) if m.contains("no Vault")),
        "{:?}",
        results[0]
    );
}
