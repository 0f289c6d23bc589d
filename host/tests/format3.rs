//! Format 3 (docs/protected-records.md) through the real built-in policies and the
//! host's imports, against vault-dev: record keys encrypted under a convergent key,
//! headers sealed, ciphertexts bound to their stream and key; the opening policies give
//! back every record byte for byte, and refuse a value moved to another key or stream.
//! Mostly without Kafka (the protecting runner's outputs are read back as records of the
//! sink topic); one test runs the pipelines through librdkafka's mock cluster, to show
//! that a moved value is dead-lettered.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kafka_transit::config::{PipelineConfig, PolicySource};
use kafka_transit::policy::pipeline::PipelineView;
use kafka_transit::policy::{
    Failure, Header, Limits, OutputRecord, PolicyRunner, PolicyRuntime, SourceRecord,
};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Value};
use support::kafka::{
    header as kafka_header, PipelineSpec, RunningPipeline, TestKafka, TestRecord,
};

const SOURCE: &str = "orders";
const SINK: &str = "orders.protected";

/// The pipeline a protecting policy runs in: `orders` to `orders.protected`.
fn pipeline() -> Arc<PipelineView> {
    let text = format!(
        r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["{SOURCE}"]
group_id = "format3"
[sink]
bootstrap_servers = "127.0.0.1:9092"
topic = "{{topic}}.protected"
[vault]
address = "http://127.0.0.1:8200"
token_env = "VAULT_TOKEN"
[policy]
builtin = "encrypt-value"
[policy.config]
key = "customers"
[errors]
on_failure = "stop"
"#
    );
    PipelineView::of(&PipelineConfig::parse(&text).expect("a pipeline")).expect("a sink route")
}

async fn runner(
    builtin: &str,
    config: Value,
    vault: &support::RunningServer,
    view: Option<Arc<PipelineView>>,
) -> PolicyRunner {
    let mut runtime = PolicyRuntime::load(
        &PolicySource::Builtin(builtin.into()),
        config.to_string(),
        Limits::default(),
        Some(support::client_for(vault)),
    )
    .unwrap_or_else(|e| panic!("{builtin}: {e}"));
    if let Some(view) = view {
        runtime = runtime.with_pipeline(view);
    }
    PolicyRunner::start(Arc::new(runtime)).await.unwrap()
}

/// vault-dev with `customers` (values) and `record-keys` (convergent, for keys).
async fn vault() -> support::RunningServer {
    let vault = support::start_vault_dev().await;
    support::create_key(&vault, "transit", "customers", json!({})).await;
    support::create_key(
        &vault,
        "transit",
        "record-keys",
        json!({"derived": true, "convergent_encryption": true}),
    )
    .await;
    vault
}

fn header(key: &str, value: Option<&[u8]>) -> Header {
    Header {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
    }
}

fn source(
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Vec<Header>,
) -> SourceRecord {
    SourceRecord {
        topic: SOURCE.into(),
        partition: 0,
        offset,
        timestamp: Some(1_700_000_000_000),
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers,
    }
}

/// A protecting runner's output as the opening pipeline reads it from `topic`.
fn as_read(output: &OutputRecord, topic: &str, offset: i64) -> SourceRecord {
    SourceRecord {
        topic: topic.into(),
        partition: 0,
        offset,
        timestamp: Some(1_700_000_000_000),
        key: output.key.clone(),
        value: output.value.clone(),
        headers: output.headers.clone(),
    }
}

fn protecting(key: &str) -> Value {
    json!({
        "key": key,
        "record_keys": "encrypt",
        "record_keys_key": "record-keys",
        "headers": "seal",
        "keep_headers": ["traceparent"],
        "bind": ["stream", "key"],
    })
}

fn opening() -> Value {
    json!({
        "key": "customers",
        "record_keys_key": "record-keys",
        "require_binding": ["stream", "key"],
    })
}

async fn protect(runner: &mut PolicyRunner, batch: &[SourceRecord]) -> Vec<OutputRecord> {
    runner
        .transform(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|result| result.expect("protected").remove(0))
        .collect()
}

/// The pairs of built-ins that protect and open whole values.
const PAIRS: [(&str, &str); 2] = [
    ("envelope-seal", "envelope-open"),
    ("encrypt-value", "decrypt-value"),
];

#[tokio::test]
async fn keys_values_and_headers_come_back_byte_identical() {
    let vault = vault().await;
    let binary: Vec<u8> = (0..=255).collect();
    let batch = vec![
        source(
            0,
            Some(b"customer-1"),
            Some(br#"{"name":"Ada","card":"4111"}"#),
            vec![
                header("traceparent", Some(b"00-abc-01")),
                header("tenant", Some(b"acme")),
                header("tenant", Some(b"acme-eu")),
                header("valueless", None),
                header("empty", Some(b"")),
            ],
        ),
        source(
            1,
            Some(&binary),
            Some(&binary),
            vec![header("b", Some(&binary))],
        ),
        source(2, None, Some(b"keyless"), Vec::new()),
        source(
            3,
            Some(b"customer-1"),
            Some(b""),
            vec![header("x", Some(b"y"))],
        ),
        source(
            4,
            Some(b"customer-1"),
            None,
            vec![header("traceparent", Some(b"00-t"))],
        ),
    ];
    for (protector, opener) in PAIRS {
        let mut protector_runner =
            runner(protector, protecting("customers"), &vault, Some(pipeline())).await;
        let sink = protect(&mut protector_runner, &batch).await;
        // On the sink: keys encrypted (the same for the same source key, tombstone
        // included), the sealed headers nowhere in clear.
        let sink_key = sink[0].key.clone().unwrap();
        assert!(sink_key.starts_with(b"vault:v1:"), "{protector}");
        assert_eq!(sink[3].key.as_ref(), Some(&sink_key), "{protector}");
        assert_eq!(
            sink[4].key.as_ref(),
            Some(&sink_key),
            "{protector}: the tombstone"
        );
        assert_eq!(sink[2].key, None);
        for output in &sink {
            let names: Vec<&str> = output.headers.iter().map(|h| h.key.as_str()).collect();
            assert!(!names
                .iter()
                .any(|n| ["tenant", "valueless", "empty", "b", "x"].contains(n)));
            assert_eq!(names.last(), Some(&"kafka-transit.protection"));
        }

        let read: Vec<SourceRecord> = sink
            .iter()
            .enumerate()
            .map(|(i, output)| as_read(output, SINK, i as i64))
            .collect();
        let mut opener_runner = runner(opener, opening(), &vault, None).await;
        let opened = protect(&mut opener_runner, &read).await;
        for (original, opened) in batch.iter().zip(&opened) {
            assert_eq!(opened.key, original.key, "{opener}");
            assert_eq!(opened.value, original.value, "{opener}");
            let expected: Vec<Header> = match original.value {
                Some(_) => original.headers.clone(),
                // A tombstone has no value to carry sealed headers: the kept ones stay.
                None => original
                    .headers
                    .iter()
                    .filter(|h| h.key == "traceparent")
                    .cloned()
                    .collect(),
            };
            assert_eq!(opened.headers, expected, "{opener}");
        }
    }
}

#[tokio::test]
async fn a_value_copied_under_another_key_or_into_another_stream_is_refused() {
    let vault = vault().await;
    let batch = vec![
        source(0, Some(b"alice"), Some(b"alice's record"), Vec::new()),
        source(1, Some(b"bob"), Some(b"bob's record"), Vec::new()),
    ];
    for (protector, opener) in PAIRS {
        let mut protector_runner =
            runner(protector, protecting("customers"), &vault, Some(pipeline())).await;
        let sink = protect(&mut protector_runner, &batch).await;
        // Alice's value under Bob's key, on the same topic.
        let mut under_bob = as_read(&sink[0], SINK, 0);
        under_bob.key = sink[1].key.clone();
        // Alice's record, as it is, copied to another stream.
        let elsewhere = as_read(&sink[0], "payments.protected", 1);
        // Alice's record with its protection header edited to bind nothing.
        let mut unbound = as_read(&sink[0], SINK, 2);
        for header in &mut unbound.headers {
            if header.key == "kafka-transit.protection" {
                header.value = Some(b"3;44".to_vec());
            }
        }
        let mut opener_runner = runner(
            opener,
            json!({"key": "customers", "record_keys_key": "record-keys"}),
            &vault,
            None,
        )
        .await;
        let results = opener_runner
            .transform(&[under_bob, elsewhere, unbound, as_read(&sink[1], SINK, 3)])
            .await
            .unwrap();
        for (case, result) in ["under another key", "in another stream", "header edited"]
            .iter()
            .zip(&results)
        {
            match result {
                Err(Failure::InvalidInput(reason)) => assert!(
                    reason.contains("authentication") || reason.contains("flags differ"),
                    "{opener}, {case}: {reason}"
                ),
                other => panic!("{opener}, {case}: expected invalid input, got {other:?}"),
            }
        }
        let bob = results[3].as_ref().expect("Bob's own record opens");
        assert_eq!(bob[0].value.as_deref(), Some(&b"bob's record"[..]));
    }
}

/// docs/protected-records.md: a ciphertext moved to another stream or key fails with
/// "message authentication failed" in the runner, envelopes as much as `vault:` values,
/// so that an operator finds every forged record in the dead letters by one reason.
#[tokio::test]
async fn a_moved_ciphertext_fails_saying_message_authentication_failed_for_every_opener() {
    let vault = vault().await;
    let batch = vec![
        source(0, Some(b"alice"), Some(b"alice's record"), Vec::new()),
        source(1, Some(b"bob"), Some(b"bob's record"), Vec::new()),
    ];
    for (protector, opener) in PAIRS {
        let mut protector_runner =
            runner(protector, protecting("customers"), &vault, Some(pipeline())).await;
        let sink = protect(&mut protector_runner, &batch).await;
        let mut under_bob = as_read(&sink[0], SINK, 0);
        under_bob.key = sink[1].key.clone();
        let elsewhere = as_read(&sink[0], "payments.protected", 1);
        let mut opener_runner = runner(opener, opening(), &vault, None).await;
        let results = opener_runner
            .transform(&[under_bob, elsewhere])
            .await
            .unwrap();
        for (case, result) in ["under another key", "in another stream"]
            .iter()
            .zip(&results)
        {
            match result {
                Err(Failure::InvalidInput(reason)) => assert!(
                    reason.contains("message authentication failed"),
                    "{opener}, {case}: {reason}"
                ),
                other => panic!("{opener}, {case}: expected invalid input, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn the_same_source_key_gives_the_same_sink_key_until_the_key_rotates() {
    let vault = vault().await;
    let record = |offset| source(offset, Some(b"customer-7"), Some(b"v"), Vec::new());
    let mut encrypt = runner(
        "encrypt-value",
        protecting("customers"),
        &vault,
        Some(pipeline()),
    )
    .await;
    let first = protect(&mut encrypt, &[record(0)]).await.remove(0);
    let again = protect(&mut encrypt, &[record(1)]).await.remove(0);
    assert_eq!(first.key, again.key, "convergent: twice the same bytes");
    let v1 = first.key.clone().unwrap();
    assert!(v1.starts_with(b"vault:v1:"));

    support::request_ok(
        &vault,
        reqwest::Method::POST,
        "transit/keys/record-keys/rotate",
        Value::Null,
    )
    .await;
    let rotated = protect(&mut encrypt, &[record(2)]).await.remove(0);
    let v2 = rotated.key.clone().unwrap();
    assert!(
        v2.starts_with(b"vault:v2:"),
        "{}",
        String::from_utf8_lossy(&v2)
    );
    assert_ne!(v1, v2, "rotation changes the key bytes");

    // Both open, to the same source key.
    let mut decrypt = runner("decrypt-value", opening(), &vault, None).await;
    let opened = protect(
        &mut decrypt,
        &[as_read(&first, SINK, 0), as_read(&rotated, SINK, 1)],
    )
    .await;
    assert_eq!(opened[0].key.as_deref(), Some(&b"customer-7"[..]));
    assert_eq!(opened[1].key.as_deref(), Some(&b"customer-7"[..]));

    // rewrap-value moves the old record to the new key bytes: compaction converges.
    let mut rewrap = runner(
        "rewrap-value",
        json!({"key": "customers", "record_keys": "encrypt", "record_keys_key": "record-keys"}),
        &vault,
        None,
    )
    .await;
    let rewrapped = protect(&mut rewrap, &[as_read(&first, SINK, 0)])
        .await
        .remove(0);
    assert_eq!(rewrapped.key.as_ref(), Some(&v2));
    let opened = protect(&mut decrypt, &[as_read(&rewrapped, SINK, 0)])
        .await
        .remove(0);
    assert_eq!(opened.value.as_deref(), Some(&b"v"[..]));
}

/// What one 1 KiB JSON record costs on the sink with each option: key, value and
/// header bytes (names and values), printed as a table (`--nocapture`).
#[tokio::test]
async fn bytes_on_the_sink_for_one_1_kib_json_record() {
    let vault = vault().await;
    let mut json_value =
        String::from(r#"{"id":12345,"name":"Ada Lovelace","email":"ada@example.com","items":["#);
    let mut i = 0;
    while json_value.len() < 1000 {
        json_value.push_str(&format!(r#"{{"sku":"SKU-{i:05}","qty":{}}},"#, i % 7 + 1));
        i += 1;
    }
    json_value.pop();
    json_value.push_str("]}");
    while json_value.len() < 1024 {
        json_value.insert(json_value.len() - 1, ' ');
    }
    assert_eq!(json_value.len(), 1024);
    let input = source(
        0,
        Some(b"customer-00042"),
        Some(json_value.as_bytes()),
        vec![header(
            "traceparent",
            Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        )],
    );
    let size = |out: &OutputRecord| {
        let headers: usize = out
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        (
            out.key.as_ref().map_or(0, Vec::len),
            out.value.as_ref().map_or(0, Vec::len),
            headers,
        )
    };
    let (k, v, h) = size(&OutputRecord {
        topic: None,
        key: input.key.clone(),
        value: input.value.clone(),
        headers: input.headers.clone(),
    });
    println!(
        "{:<58} {:>5} {:>6} {:>7} {:>6}",
        "policy and options", "key", "value", "headers", "total"
    );
    println!(
        "{:<58} {k:>5} {v:>6} {h:>7} {:>6}",
        "(source record)",
        k + v + h
    );
    let cases: Vec<(&str, Value)> = vec![
        ("encrypt-value", json!({"key": "customers"})),
        (
            "encrypt-value",
            json!({"key": "customers", "bind": ["stream", "key"]}),
        ),
        (
            "encrypt-value",
            json!({"key": "customers", "headers": "seal"}),
        ),
        (
            "encrypt-value",
            json!({"key": "customers", "record_keys": "encrypt", "record_keys_key": "record-keys"}),
        ),
        (
            "encrypt-value",
            json!({"key": "customers", "record_keys": "hmac", "record_keys_key": "record-keys"}),
        ),
        ("encrypt-value", protecting("customers")),
        ("envelope-seal", json!({"key": "customers"})),
        (
            "envelope-seal",
            json!({"key": "customers", "bind": ["stream", "key"]}),
        ),
        (
            "envelope-seal",
            json!({"key": "customers", "headers": "seal"}),
        ),
        (
            "envelope-seal",
            json!({"key": "customers", "record_keys": "encrypt", "record_keys_key": "record-keys"}),
        ),
        (
            "envelope-seal",
            json!({"key": "customers", "compression": "zstd"}),
        ),
        (
            "envelope-seal",
            json!({"key": "customers", "compression": "lz4"}),
        ),
        ("envelope-seal", json!({"key": "customers", "pad_to": 256})),
        (
            "envelope-seal",
            json!({"key": "customers", "compression": "zstd", "pad_to": 256}),
        ),
        ("envelope-seal", protecting("customers")),
        (
            "encrypt-fields",
            json!({"key": "customers", "fields": ["/name", "/email"]}),
        ),
        (
            "encrypt-fields",
            json!({"key": "customers", "fields": ["/name", "/email"], "bind": ["stream", "key"]}),
        ),
    ];
    let mut totals = std::collections::HashMap::new();
    for (builtin, config) in cases {
        let mut protector = runner(builtin, config.clone(), &vault, Some(pipeline())).await;
        let out = protect(&mut protector, std::slice::from_ref(&input))
            .await
            .remove(0);
        let (k, v, h) = size(&out);
        let mut options = config.as_object().unwrap().clone();
        options.remove("key");
        let label = format!("{builtin} {}", Value::Object(options));
        println!("{label:<58} {k:>5} {v:>6} {h:>7} {:>6}", k + v + h);
        totals.insert(label, (k, v, h));
    }
    // What the numbers must show: padding to a multiple, compression of JSON, the
    // protection header's cost, sealed headers moved into the value.
    let value = |label: &str| totals[label].1;
    assert!(value(r#"envelope-seal {"compression":"zstd"}"#) < value("envelope-seal {}"));
    assert!(value(r#"envelope-seal {"compression":"lz4"}"#) < value("envelope-seal {}"));
    let headers = |label: &str| totals[label].2;
    assert_eq!(
        headers(r#"envelope-seal {"bind":["stream","key"]}"#),
        headers("envelope-seal {}") + "kafka-transit.protection".len() + 4
    );
    assert!(headers(r#"encrypt-value {"headers":"seal"}"#) < headers("encrypt-value {}"));
}

/// A consumed record, to produce again elsewhere (a copy a sink operator could make).
fn copy_of(message: &OwnedMessage) -> TestRecord {
    TestRecord {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
        timestamp: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_kafka_a_moved_value_is_dead_lettered_and_the_others_open() {
    const WAIT: Duration = Duration::from_secs(60);
    let vault = vault().await;
    let url = vault.url();
    let client = support::client_for(&vault);
    let kafka = TestKafka::start(&[
        (SOURCE, 1),
        (SINK, 1),
        ("copies.protected", 1),
        ("opened", 1),
        ("dlq", 1),
    ]);
    kafka
        .produce(
            SOURCE,
            &[
                TestRecord::new("alice", "alice's record"),
                TestRecord::new("bob", "bob's record"),
            ],
        )
        .await;
    let builtin = |name: &str| format!("builtin = \"{name}\"");
    let mut protect = PipelineSpec::from_to(&kafka, &url, SOURCE, SINK, builtin("encrypt-value"));
    protect.policy_config = "key = \"customers\"\nrecord_keys = \"encrypt\"\n\
        record_keys_key = \"record-keys\"\nbind = [\"stream\", \"key\"]";
    let pipeline = RunningPipeline::start(protect.config(), client.clone()).await;
    pipeline.wait_until(WAIT, |m| m.records_out >= 2).await;
    pipeline.stop().await.expect("protecting pipeline");
    let protected = kafka.read(SINK, 2, WAIT).await;
    assert_ne!(protected[0].key(), Some(&b"alice"[..]));

    // Alice's value under Bob's (protected) key, on the same topic; Alice's record as
    // it is, in another topic.
    let mut swapped = copy_of(&protected[0]);
    swapped.key = protected[1].key().map(<[u8]>::to_vec);
    kafka.produce(SINK, &[swapped]).await;
    kafka
        .produce("copies.protected", &[copy_of(&protected[0])])
        .await;

    let open_config = "key = \"customers\"\nrecord_keys_key = \"record-keys\"\n\
        require_binding = [\"stream\", \"key\"]";
    for (from, opened, dead) in [(SINK, 2, 1), ("copies.protected", 0, 1)] {
        let mut open =
            PipelineSpec::from_to(&kafka, &url, from, "opened", builtin("decrypt-value"));
        open.policy_config = open_config;
        let pipeline = RunningPipeline::start(open.config(), client.clone()).await;
        let counts = pipeline
            .wait_until(WAIT, |m| m.records_out + m.dead_lettered >= opened + dead)
            .await;
        pipeline.stop().await.expect("opening pipeline");
        assert_eq!(
            (counts.records_out, counts.dead_lettered),
            (opened, dead),
            "{from}"
        );
    }
    let opened = kafka.read("opened", 2, WAIT).await;
    let values: Vec<&[u8]> = opened.iter().filter_map(|m| m.payload()).collect();
    assert_eq!(values, [&b"alice's record"[..], b"bob's record"]);
    assert_eq!(opened[0].key(), Some(&b"alice"[..]));
    let dead = kafka.read("dlq", 2, WAIT).await;
    for letter in &dead {
        let reason = String::from_utf8_lossy(kafka_header(letter, "kafka-transit.error").unwrap());
        assert!(reason.contains("message authentication failed"), "{reason}");
        assert_eq!(
            kafka_header(letter, "kafka-transit.error.kind"),
            Some(&b"invalid-input"[..])
        );
    }
}
