//! The admin listener on a running pipeline (librdkafka's mock cluster, an in-process
//! vault-dev): `/metrics` counts what the pipeline moved, and the probes follow Vault.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::Message;
use support::admin::{post_json, request, request_with, start_admin, Exposition};
use support::kafka::{guest_component, PipelineSpec, RunningPipeline, TestKafka, TestRecord};

const WAIT: Duration = Duration::from_secs(60);

fn spec<'a>(kafka: &'a TestKafka, vault: &'a str, policy: String) -> PipelineSpec<'a> {
    PipelineSpec::in_to_out(kafka, vault, "operations", policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_pipeline_moved_and_agree_with_the_progress_counters() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("in", 3), ("out", 3), ("dlq", 1)]);
    let pipeline = RunningPipeline::start(
        spec(&kafka, &url, "builtin = \"encrypt-value\"".into()).config(),
        vault.clone(),
    )
    .await;
    // Vault is checked once, at start: later probes would race the request count below.
    let admin = start_admin(&pipeline, &vault, Duration::from_secs(3600)).await;
    let address = admin.local_addr();

    let records: Vec<TestRecord> = (0..3000)
        .map(|i| TestRecord::new(&format!("k{i}"), &format!("secret {i}")))
        .collect();
    let (first, rest) = records.split_at(1000);
    kafka.produce("in", first).await;
    pipeline.wait_until(WAIT, |m| m.records_out >= 1).await;
    let during = Exposition::scrape(address).await;
    kafka.produce("in", rest).await;
    let done = pipeline
        .wait_until(WAIT, |m| m.records_out == 3000 && m.lag == Some(0))
        .await;
    let after = Exposition::scrape(address).await;
    let snapshot = pipeline.metrics.snapshot();

    let consumed_during = during.single("kafka_transit_records_consumed_total");
    assert!(
        (1.0..=3000.0).contains(&consumed_during),
        "mid-run scrape saw {consumed_during} records consumed"
    );
    assert_eq!(after.single("kafka_transit_records_consumed_total"), 3000.0);
    assert_eq!(after.single("kafka_transit_records_produced_total"), 3000.0);
    assert_eq!(after.sum("kafka_transit_records_dead_lettered_total"), 0.0);
    // The progress line reads the same counters.
    assert_eq!(
        after.single("kafka_transit_records_consumed_total") as u64,
        snapshot.records_in
    );
    assert_eq!(
        after.single("kafka_transit_consumed_bytes_total") as u64,
        snapshot.bytes_in
    );
    assert_eq!(
        after.single("kafka_transit_produced_bytes_total") as u64,
        snapshot.bytes_out
    );
    assert_eq!(
        after.single("kafka_transit_batches_total") as u64,
        snapshot.batches
    );
    assert_eq!(
        after.single("kafka_transit_batches_committed_total") as u64,
        snapshot.committed_batches
    );
    assert!(done.batches >= 2, "3000 records in batches of at most 200");

    // Histograms: one batch duration per committed batch, one transform per batch run.
    assert_eq!(
        after.types["kafka_transit_batch_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        after.single("kafka_transit_batch_duration_seconds_count") as u64,
        snapshot.committed_batches
    );
    assert!(
        after.single("kafka_transit_policy_transform_duration_seconds_count") as u64
            >= snapshot.batches
    );
    let inf = after
        .value("kafka_transit_batch_duration_seconds_bucket", "le=\"+Inf\"")
        .expect("a +Inf bucket");
    assert_eq!(
        inf,
        after.single("kafka_transit_batch_duration_seconds_count")
    );

    // Every request vault-dev received is counted once, by operation and outcome.
    let encrypts = after
        .value(
            "kafka_transit_vault_requests_total",
            "operation=\"encrypt\",outcome=\"success\"",
        )
        .expect("encrypt requests");
    assert!(
        encrypts >= done.batches as f64 / 2.0,
        "{encrypts} encrypt requests"
    );
    assert_eq!(
        after.sum("kafka_transit_vault_requests_total") as u64,
        support::server_requests(&vault_server),
        "{}",
        after.text
    );
    assert!(after
        .value(
            "kafka_transit_vault_request_duration_seconds_count",
            "operation=\"encrypt\""
        )
        .is_some());

    for partition in 0..3 {
        assert_eq!(
            after.value(
                "kafka_transit_consumer_lag",
                &format!("topic=\"in\",partition=\"{partition}\"")
            ),
            Some(0.0),
            "{}",
            after.text
        );
    }
    assert_eq!(after.single("kafka_transit_partitions_assigned"), 3.0);
    assert_eq!(after.single("kafka_transit_ready"), 1.0);
    assert_eq!(after.single("kafka_transit_batches_in_flight"), 0.0);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_counted_by_reason() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let values = ["a", "invalid", "b", "trap", "invalid", "c"];
    let records: Vec<TestRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| TestRecord::new(&format!("k{i}"), v))
        .collect();
    kafka.produce("in", &records).await;
    let mut spec = spec(&kafka, &url, String::new());
    spec.policy = format!("path = \"{}\"", guest_component("fault-test").display());
    spec.policy_config = "";
    let pipeline = RunningPipeline::start(spec.config(), vault.clone()).await;
    let admin = start_admin(&pipeline, &vault, Duration::from_secs(3600)).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 3 && m.dead_lettered == 3)
        .await;
    let scraped = Exposition::scrape(admin.local_addr()).await;
    let reason = |r: &str| {
        scraped.value(
            "kafka_transit_records_dead_lettered_total",
            &format!("reason=\"{r}\""),
        )
    };
    assert_eq!(reason("invalid-input"), Some(2.0), "{}", scraped.text);
    assert_eq!(reason("policy-error"), Some(1.0), "{}", scraped.text);
    assert_eq!(scraped.single("kafka_transit_records_produced_total"), 3.0);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_vault_seal_while_no_record_is_lost_or_leaked() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("dlq", 1)]);
    let pipeline = RunningPipeline::start(
        spec(&kafka, &url, "builtin = \"encrypt-value\"".into()).config(),
        vault.clone(),
    )
    .await;
    let admin = start_admin(&pipeline, &vault, Duration::from_millis(100)).await;
    let address = admin.local_addr();
    let ready = || async move { request(address, "GET", "/health/ready").await };

    let records: Vec<TestRecord> = (0..200)
        .map(|i| TestRecord::new(&format!("k{i}"), "top secret"))
        .collect();
    kafka.produce("in", &records[..100]).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 100).await;
    wait_for(|| async { ready().await.0 == 200 }).await;
    assert_eq!(request(address, "GET", "/health/live").await.0, 200);

    vault_server.faults().seal();
    wait_for(|| async { ready().await.0 == 503 }).await;
    let (_, body) = ready().await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["not_ready"], serde_json::json!(["vault: sealed"]));
    kafka.produce("in", &records[100..]).await;
    pipeline.wait_until(WAIT, |m| m.batch_retries >= 1).await;
    assert_eq!(pipeline.metrics.snapshot().records_out, 100);
    assert_eq!(
        request(address, "GET", "/health/live").await.0,
        200,
        "waiting for Vault is not a stall"
    );
    let sealed = Exposition::scrape(address).await;
    assert_eq!(sealed.single("kafka_transit_ready"), 0.0);

    vault_server.faults().unseal();
    wait_for(|| async { ready().await.0 == 200 }).await;
    let done = pipeline.wait_until(WAIT, |m| m.records_out == 200).await;
    assert_eq!(done.dead_lettered, 0);
    pipeline.stop().await.unwrap();
    let out = kafka.read("out", 200, WAIT).await;
    assert_eq!(out.len(), 200);
    assert!(out
        .iter()
        .all(|m| m.payload().unwrap().starts_with(b"vault:v1:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_names_its_endpoints_and_methods() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let pipeline = RunningPipeline::start(
        spec(&kafka, &url, "builtin = \"passthrough\"".into()).config(),
        vault.clone(),
    )
    .await;
    let admin = start_admin(&pipeline, &vault, Duration::from_secs(3600)).await;
    let address = admin.local_addr();
    let (status, body) = request(address, "GET", "/nothing").await;
    assert_eq!(status, 404);
    assert!(body.contains("/health/ready"), "{body}");
    assert_eq!(request(address, "POST", "/metrics").await.0, 405);
    assert_eq!(request(address, "GET", "/admin/policy/reload").await.0, 405);
    let config = kafka_transit::config::AdminConfig {
        listen: address,
        stall_timeout: Duration::from_secs(60),
        vault_check_interval: Duration::from_secs(5),
        reload_token_file: None,
        reload_token_env: None,
    };
    let error = kafka_transit::admin::Admin::start(&config)
        .await
        .err()
        .expect("the port is taken");
    assert!(error.to_string().starts_with("admin.listen:"), "{error}");
    pipeline.stop().await.unwrap();
}

fn admin_config(
    reload_token_file: Option<std::path::PathBuf>,
) -> kafka_transit::config::AdminConfig {
    kafka_transit::config::AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        stall_timeout: Duration::from_secs(60),
        vault_check_interval: Duration::from_secs(5),
        reload_token_file,
        reload_token_env: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_needs_the_reload_token_and_is_off_without_one() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let reloads = Arc::new(AtomicU32::new(0));
    let counting: kafka_transit::admin::Reload = {
        let reloads = reloads.clone();
        Arc::new(move || {
            reloads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(serde_json::json!({"name": "passthrough"})) })
        })
    };

    // No credential configured: the endpoint is off, metrics and probes are not.
    let open = kafka_transit::admin::Admin::start(&admin_config(None))
        .await
        .unwrap();
    open.on_reload(counting.clone());
    let (status, body) = request(open.local_addr(), "POST", "/admin/policy/reload").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin.reload_token_file"), "{body}");
    assert_eq!(request(open.local_addr(), "GET", "/metrics").await.0, 200);

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("reload-token");
    std::fs::write(&token_file, "3c2f0d1e9a8b7c6d5e4f\n").unwrap();
    let admin = kafka_transit::admin::Admin::start(&admin_config(Some(token_file)))
        .await
        .unwrap();
    admin.on_reload(counting);
    let address = admin.local_addr();
    for refused in [
        None,
        Some("Bearer wrong-token-0000000000"),
        Some("Basic 3c2f0d1e9a8b7c6d5e4f"),
    ] {
        let (status, body) = request_with(address, "POST", "/admin/policy/reload", refused).await;
        assert_eq!(status, 401, "{refused:?}: {body}");
        assert!(!body.contains("3c2f0d1e"), "{body}");
    }
    assert_eq!(
        reloads.load(Ordering::SeqCst),
        0,
        "no refused request reloaded"
    );
    let (status, body) = request_with(
        address,
        "POST",
        "/admin/policy/reload",
        Some("Bearer 3c2f0d1e9a8b7c6d5e4f"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reloads.load(Ordering::SeqCst), 1);

    // A token file that cannot be read refuses to start, naming the field.
    let error = kafka_transit::admin::Admin::start(&admin_config(Some(dir.path().join("none"))))
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().starts_with("admin.reload_token_file:"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_needs_the_token_and_a_subject_and_never_echoes_the_subject() {
    use std::sync::Mutex;
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let recording: kafka_transit::admin::Forget = {
        let asked = asked.clone();
        Arc::new(move |subject: String| {
            asked.lock().unwrap().push(subject);
            Box::pin(async { Ok(serde_json::json!({"key": "customers-00ff"})) })
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "9f8e7d6c5b4a39281706\n").unwrap();
    let admin = kafka_transit::admin::Admin::start(&admin_config(Some(token_file)))
        .await
        .unwrap();
    let address = admin.local_addr();
    let token = Some("Bearer 9f8e7d6c5b4a39281706");
    let subject = r#"{"subject": "customer-4711"}"#;

    // A runner whose policy does not seal per subject has no forget.
    let (status, body) = post_json(address, "/admin/forget", token, subject).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("policy.config.subject"), "{body}");

    admin.on_forget(recording);
    let (status, _) = post_json(address, "/admin/forget", None, subject).await;
    assert_eq!(status, 401);
    for bad in [
        "",
        "{}",
        r#"{"subject": ""}"#,
        r#"{"subject": "a", "more": 1}"#,
        "[1]",
    ] {
        let (status, body) = post_json(address, "/admin/forget", token, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = post_json(address, "/admin/forget", token, &"x".repeat(2000)).await;
    assert!(status == 400 || status == 413, "{status}: {body}");
    assert!(
        asked.lock().unwrap().is_empty(),
        "nothing refused reached the hook"
    );

    let (status, body) = post_json(address, "/admin/forget", token, subject).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("customers-00ff"), "{body}");
    assert!(!body.contains("4711"), "the subject is not echoed: {body}");
    assert_eq!(*asked.lock().unwrap(), ["customer-4711"]);
    assert_eq!(request(address, "GET", "/admin/forget").await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin = kafka_transit::admin::Admin::start(&admin_config(None))
        .await
        .unwrap();
    let mut slow = tokio::net::TcpStream::connect(admin.local_addr())
        .await
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        kafka_transit::admin::HEADER_READ_TIMEOUT + Duration::from_secs(10),
        slow.read_to_end(&mut answer),
    )
    .await
    .expect("the listener closes a connection whose request head never ends");
    assert!(read.is_ok());
    assert!(
        started.elapsed() >= kafka_transit::admin::HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    // Meanwhile, and afterwards, others are served.
    assert_eq!(
        request(admin.local_addr(), "GET", "/health/live").await.0,
        200
    );

    // A request head beyond the limit is refused rather than buffered.
    let mut big = tokio::net::TcpStream::connect(admin.local_addr())
        .await
        .unwrap();
    let header = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(header.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), big.read_to_end(&mut answer))
        .await
        .expect("answered or closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

/// Polls `condition` until it holds (panics after a minute).
async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
