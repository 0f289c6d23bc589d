//! Field-level protection of schema'd records through a pipeline: Avro and JSON Schema
//! records in Confluent's wire format, their schemas in a Schema Registry (the one named
//! by `KAFKA_TRANSIT_TEST_SCHEMA_REGISTRY_URL`, else a minimal in-process one), the mock
//! cluster and an in-process vault-dev. `encrypt-schema-fields` then
//! `decrypt-schema-fields` give back every record byte for byte; on the way, the tagged
//! fields are ciphertexts and everything else (the schema id too) is as it came.

mod support;

use std::time::Duration;

use kafka_transit::vault::VaultClient;
use kafka_transit_schema_fields::{wire, Pattern, Schema, SchemaText, SchemaType, Selection};
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};
use support::registry::TestRegistry;
use support::RunningServer;

const WAIT: Duration = Duration::from_secs(60);

const JSON_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Customer",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "name": {"type": "string", "confluent:tags": ["PII"]},
    "email": {"type": ["string", "null"], "confluent:tags": ["PII"]},
    "address": {
      "type": "object",
      "properties": {
        "street": {"type": "string", "confluent:tags": ["PII"]},
        "city": {"type": "string"}
      }
    },
    "phones": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "kind": {"type": "string"},
          "number": {"type": "string", "confluent:tags": ["PII"]}
        }
      }
    }
  }
}"#;

const AVRO_SCHEMA: &str = r#"{
  "type": "record", "name": "Customer", "namespace": "example",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string", "confluent:tags": ["PII"]},
    {"name": "email", "type": ["null", "string"], "default": null, "confluent:tags": ["PII"]},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
      {"name": "street", "type": "string", "confluent:tags": ["PII"]},
      {"name": "city", "type": "string"}
    ]}},
    {"name": "phones", "type": {"type": "array", "items": {"type": "record", "name": "Phone",
      "fields": [
        {"name": "kind", "type": "string"},
        {"name": "number", "type": "string", "confluent:tags": ["PII"]}
      ]}}}
  ]
}"#;

/// Customer `i` as JSON text.
fn json_customer(i: i64) -> Vec<u8> {
    let email = if i % 3 == 0 {
        Value::Null
    } else {
        json!(format!("c{i}@example.com"))
    };
    json!({
        "id": i,
        "name": format!("Customer \"{i}\" Ünïcode"),
        "email": email,
        "address": {"street": format!("{i} Main St"), "city": "Springfield"},
        "phones": [{"kind": "home", "number": format!("+1-555-{i:04}")},
                   {"kind": "work", "number": format!("+1-555-9{i:03}")}],
    })
    .to_string()
    .into_bytes()
}

/// Customer `i` in Avro's binary encoding under [`AVRO_SCHEMA`].
fn avro_customer(i: i64) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        long(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    long(&mut out, i);
    string(&mut out, &format!("Customer {i}"));
    if i % 3 == 0 {
        long(&mut out, 0);
    } else {
        long(&mut out, 1);
        string(&mut out, &format!("c{i}@example.com"));
    }
    string(&mut out, &format!("{i} Main St"));
    string(&mut out, "Springfield");
    long(&mut out, 2);
    string(&mut out, "home");
    string(&mut out, &format!("+1-555-{i:04}"));
    string(&mut out, "work");
    string(&mut out, &format!("+1-555-9{i:03}"));
    long(&mut out, 0);
    out
}

fn pii() -> Selection {
    Selection::new(vec!["PII".into()], Vec::<Pattern>::new())
}

/// The contents of the PII fields of a framed value, under `schema`.
fn pii_contents(schema: &Schema, value: &[u8]) -> Vec<Vec<u8>> {
    let (_, body) = wire::unframe(value).expect("framed");
    schema
        .locate(body, &[])
        .expect("decodes under its schema")
        .fields()
        .iter()
        .map(|field| field.content.clone())
        .collect()
}

/// `n` customers framed under schema `id`, keyed `customer-<i>`; `body` encodes one.
fn customers(id: u32, n: i64, body: fn(i64) -> Vec<u8>) -> Vec<TestRecord> {
    (0..n)
        .map(|i| TestRecord {
            key: Some(format!("customer-{i}").into_bytes()),
            value: Some(wire::frame(id, &body(i))),
            ..TestRecord::default()
        })
        .collect()
}

/// vault-dev, and the registry with the Avro customer schema under a fresh subject.
struct Setup {
    vault_server: RunningServer,
    url: String,
    vault: VaultClient,
    registry: TestRegistry,
    avro_id: u32,
}

impl Setup {
    async fn start(subject: &str) -> Setup {
        let vault_server = support::start_vault().await;
        let registry = TestRegistry::target().await;
        let subject = support::unique_name(subject);
        let avro_id = registry
            .register(&format!("{subject}-value"), "AVRO", AVRO_SCHEMA)
            .await;
        Setup {
            url: vault_server.url(),
            vault: support::client_for(&vault_server),
            vault_server,
            registry,
            avro_id,
        }
    }

    /// A pipeline of `builtin` from `from` to `to`, with the registry.
    fn step(
        &self,
        kafka: &TestKafka,
        (from, to): (&str, &str),
        builtin: &str,
        config: &'static str,
    ) -> kafka_transit::config::PipelineConfig {
        let mut spec = PipelineSpec::from_to(
            kafka,
            &self.url,
            from,
            to,
            format!("builtin = \"{builtin}\""),
        );
        spec.policy_config = config;
        spec.schema_registry = Some(&self.registry.url);
        spec.config()
    }

    /// Runs a pipeline until it has written `records`, then stops it.
    async fn run(&self, config: kafka_transit::config::PipelineConfig, records: u64) {
        let pipeline = RunningPipeline::start(config, self.vault.clone()).await;
        pipeline
            .wait_until(WAIT, |m| m.records_out == records)
            .await;
        pipeline.stop().await.expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_fields_become_ciphertexts_in_place_and_come_back_byte_for_byte() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let registry = TestRegistry::target().await;
    let subject = support::unique_name("customers");
    let json_id = registry
        .register(&format!("{subject}-json-value"), "JSON", JSON_SCHEMA)
        .await;
    let avro_id = registry
        .register(&format!("{subject}-avro-value"), "AVRO", AVRO_SCHEMA)
        .await;
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("back", 2), ("dlq", 1)]);

    let mut originals = Vec::new();
    for i in 0..30 {
        let (id, body) = if i % 2 == 0 {
            (json_id, json_customer(i))
        } else {
            (avro_id, avro_customer(i))
        };
        originals.push(TestRecord {
            key: Some(format!("customer-{i}").into_bytes()),
            value: Some(wire::frame(id, &body)),
            ..TestRecord::default()
        });
    }
    kafka.produce("in", &originals).await;
    // What the registry cannot read: an unknown schema id, and a value that is not in
    // the wire format. Neither may reach the sink.
    kafka
        .produce(
            "in",
            &[
                TestRecord {
                    key: Some(b"unknown-id".to_vec()),
                    value: Some(wire::frame(999_999, &json_customer(1))),
                    ..TestRecord::default()
                },
                TestRecord::new("not-framed", "{\"name\": \"Plain Text\"}"),
            ],
        )
        .await;

    let mut protect = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "schema-protect",
        "builtin = \"encrypt-schema-fields\"".into(),
    );
    protect.policy_config = "key = \"customers\"";
    protect.schema_registry = Some(&registry.url);
    let pipeline = RunningPipeline::start(protect.config(), vault.clone()).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 30 && m.dead_lettered == 2)
        .await;
    pipeline.stop().await.expect("clean stop");

    let mut open = PipelineSpec::from_to(
        &kafka,
        &url,
        "out",
        "back",
        "builtin = \"decrypt-schema-fields\"".into(),
    );
    open.policy_config = "key = \"customers\"";
    open.schema_registry = Some(&registry.url);
    let pipeline = RunningPipeline::start(open.config(), vault.clone()).await;
    pipeline.wait_until(WAIT, |m| m.records_out == 30).await;
    pipeline.stop().await.expect("clean stop");

    let schema_text = |schema_type, text: &str| SchemaText {
        schema_type,
        text: text.into(),
        references: Vec::new(),
    };
    let json_schema = Schema::parse(&schema_text(SchemaType::Json, JSON_SCHEMA), &pii()).unwrap();
    let avro_schema = Schema::parse(&schema_text(SchemaType::Avro, AVRO_SCHEMA), &pii()).unwrap();
    let by_key = |messages: Vec<rdkafka::message::OwnedMessage>| {
        messages
            .into_iter()
            .map(|m| (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let protected = by_key(kafka.read("out", 30, WAIT).await);
    let restored = by_key(kafka.read("back", 30, WAIT).await);
    assert_eq!(protected.len(), 30);
    for original in &originals {
        let key = original.key.as_ref().unwrap();
        let plain = original.value.as_ref().unwrap();
        let (id, _) = wire::unframe(plain).unwrap();
        let sealed = &protected[key];
        assert_eq!(
            wire::unframe(sealed).unwrap().0,
            id,
            "the schema id is kept"
        );
        let schema = if id == json_id {
            &json_schema
        } else {
            &avro_schema
        };
        let before = pii_contents(schema, plain);
        let after = pii_contents(schema, sealed);
        assert_eq!(before.len(), after.len(), "the same PII fields are present");
        assert!(before.len() >= 4);
        for (plain_field, sealed_field) in before.iter().zip(&after) {
            assert!(
                sealed_field.starts_with(b"vault:v1:"),
                "a PII field in clear"
            );
            assert_ne!(plain_field, sealed_field);
        }
        if id == json_id {
            // Every untagged field as it was.
            let (_, body) = wire::unframe(sealed).unwrap();
            let doc: Value = serde_json::from_slice(body).unwrap();
            let (_, body) = wire::unframe(plain).unwrap();
            let orig: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(doc["id"], orig["id"]);
            assert_eq!(doc["address"]["city"], orig["address"]["city"]);
            assert_eq!(doc["phones"][1]["kind"], orig["phones"][1]["kind"]);
            assert_eq!(doc["email"].is_null(), orig["email"].is_null());
        }
        assert_eq!(&restored[key], plain, "restored byte for byte");
    }

    let dead = kafka.read("dlq", 2, WAIT).await;
    let mut dead_keys: Vec<_> = dead.iter().map(|m| m.key().unwrap().to_vec()).collect();
    dead_keys.sort();
    assert_eq!(dead_keys, [b"not-framed".to_vec(), b"unknown-id".to_vec()]);
}

/// Format 3: fields bound to their stream, record key and located path, record keys
/// encrypted. A ciphertext moved to another record on the sink is dead-lettered by the
/// opening pipeline, never opened under the wrong key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_fields_open_only_in_their_own_record_and_place() {
    let setup = Setup::start("bound").await;
    support::create_key(
        &setup.vault_server,
        "transit",
        "record-keys",
        json!({"derived": true, "convergent_encryption": true}),
    )
    .await;
    let kafka = TestKafka::start(&[("in", 2), ("out", 2), ("back", 2), ("dlq", 1)]);
    let originals = customers(setup.avro_id, 12, avro_customer);
    kafka.produce("in", &originals).await;
    let protect = setup.step(
        &kafka,
        ("in", "out"),
        "encrypt-schema-fields",
        "key = \"customers\"\nbind = [\"stream\", \"key\"]\n\
         record_keys = \"encrypt\"\nrecord_keys_key = \"record-keys\"",
    );
    setup.run(protect, 12).await;

    let sealed = kafka.read("out", 12, WAIT).await;
    for message in &sealed {
        assert!(
            message.key().unwrap().starts_with(b"vault:v1:"),
            "the key encrypted"
        );
        let protection = message
            .headers()
            .unwrap()
            .iter()
            .find(|h| h.key == "kafka-transit.protection")
            .and_then(|h| h.value);
        assert_eq!(protection, Some(&b"3;43"[..]));
    }
    // The operator's move: one record's value under another record's key.
    let (a, b) = (&sealed[0], &sealed[1]);
    let moved = TestRecord {
        key: Some(a.key().unwrap().to_vec()),
        value: Some(b.payload().unwrap().to_vec()),
        headers: vec![("kafka-transit.protection".into(), Some(b"3;43".to_vec()))],
        timestamp: None,
    };
    kafka.produce("out", &[moved]).await;

    let open = setup.step(
        &kafka,
        ("out", "back"),
        "decrypt-schema-fields",
        "key = \"customers\"\nrecord_keys_key = \"record-keys\"\n\
         require_binding = [\"stream\", \"key\"]",
    );
    let pipeline = RunningPipeline::start(open, setup.vault.clone()).await;
    pipeline
        .wait_until(WAIT, |m| m.records_out == 12 && m.dead_lettered == 1)
        .await;
    pipeline.stop().await.expect("clean stop");

    let restored: std::collections::BTreeMap<_, _> = kafka
        .read("back", 12, WAIT)
        .await
        .into_iter()
        .map(|m| (m.key().unwrap().to_vec(), m.payload().unwrap().to_vec()))
        .collect();
    for original in &originals {
        assert_eq!(
            restored.get(original.key.as_ref().unwrap()),
            original.value.as_ref(),
            "restored byte for byte, under the source key"
        );
    }
    let dead = kafka.read("dlq", 1, WAIT).await;
    assert_eq!(dead[0].key(), a.key(), "the moved record, as it was read");
}

/// Key rotation: `rewrap-schema-fields` moves every field to the key's latest version,
/// and the records open once the old version is retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrapped_fields_open_after_the_old_key_version_is_retired() {
    let setup = Setup::start("rewrap").await;
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("v2", 1), ("back", 1), ("dlq", 1)]);
    let originals = customers(setup.avro_id, 8, avro_customer);
    kafka.produce("in", &originals).await;
    let config = "key = \"customers\"";
    let vault_write = |path: &'static str, body: Value| {
        support::request_ok(&setup.vault_server, reqwest::Method::POST, path, body)
    };
    setup
        .run(
            setup.step(&kafka, ("in", "out"), "encrypt-schema-fields", config),
            8,
        )
        .await;
    vault_write("transit/keys/customers/rotate", json!({})).await;
    setup
        .run(
            setup.step(&kafka, ("out", "v2"), "rewrap-schema-fields", config),
            8,
        )
        .await;
    vault_write(
        "transit/keys/customers/config",
        json!({"min_decryption_version": 2}),
    )
    .await;
    let schema = Schema::parse(
        &SchemaText {
            schema_type: SchemaType::Avro,
            text: AVRO_SCHEMA.into(),
            references: Vec::new(),
        },
        &pii(),
    )
    .unwrap();
    for message in kafka.read("v2", 8, WAIT).await {
        for field in pii_contents(&schema, message.payload().unwrap()) {
            assert!(field.starts_with(b"vault:v2:"), "a field left at v1");
        }
    }
    setup
        .run(
            setup.step(&kafka, ("v2", "back"), "decrypt-schema-fields", config),
            8,
        )
        .await;
    let back = kafka.read("back", 8, WAIT).await;
    for (original, restored) in originals.iter().zip(&back) {
        assert_eq!(
            original.value.as_deref(),
            restored.payload(),
            "restored byte for byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_pauses_the_pipeline_and_loses_nothing() {
    let vault_server = support::start_vault().await;
    let url = vault_server.url();
    let vault = support::client_for(&vault_server);
    let registry = TestRegistry::start_local().await;
    let id = registry.register("in-value", "JSON", JSON_SCHEMA).await;
    let kafka = TestKafka::start(&[("in", 1), ("out", 1), ("dlq", 1)]);
    let records = customers(id, 20, json_customer);
    kafka.produce("in", &records).await;

    registry.set_down(true);
    let mut protect = PipelineSpec::in_to_out(
        &kafka,
        &url,
        "schema-down",
        "builtin = \"encrypt-schema-fields\"".into(),
    );
    protect.policy_config = "key = \"customers\"";
    protect.schema_registry = Some(&registry.url);
    let pipeline = RunningPipeline::start(protect.config(), vault).await;
    let paused = pipeline.wait_until(WAIT, |m| m.batch_retries >= 2).await;
    assert_eq!(
        paused.records_out, 0,
        "nothing passes while the registry is down"
    );
    assert_eq!(
        paused.dead_lettered, 0,
        "nothing is dead-lettered for it either"
    );

    registry.set_down(false);
    let done = pipeline.wait_until(WAIT, |m| m.records_out == 20).await;
    assert_eq!(done.dead_lettered, 0);
    pipeline.stop().await.expect("clean stop");
    // One schema, looked up once it answered, then from the cache.
    assert!(registry.lookups() >= 1);
    let out = kafka.read("out", 20, WAIT).await;
    assert_eq!(out.len(), 20);
}
