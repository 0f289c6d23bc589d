//! Keys a record chooses (`key = "tenant-{header:tenant}"`), through the built-in
//! policies and the host's Vault client, against vault-dev: a tenant whose key Vault
//! refuses is that tenant's failure (dead-lettered), never a retry that stalls every
//! tenant; and `allowed_keys` keeps producers from making Vault create keys. No Kafka.

mod support;

use std::sync::Arc;

use kafka_transit::config::PolicySource;
use kafka_transit::envelope;
use kafka_transit::policy::{
    Failure, Header, Limits, PolicyRunner, PolicyRuntime, SourceRecord, TransformResult,
};
use serde_json::json;

const TEMPLATE: &str = "tenant-{header:tenant}";

async fn runner(
    builtin: &str,
    config: serde_json::Value,
    vault: &support::RunningServer,
) -> PolicyRunner {
    let runtime = PolicyRuntime::load(
        &PolicySource::Builtin(builtin.into()),
        config.to_string(),
        Limits::default(),
        Some(support::client_for(vault)),
    )
    .unwrap();
    PolicyRunner::start(Arc::new(runtime)).await.unwrap()
}

fn for_tenant(offset: i64, tenant: &str) -> SourceRecord {
    SourceRecord {
        topic: "in".into(),
        partition: 0,
        offset,
        timestamp: None,
        key: Some(b"k".to_vec()),
        value: Some(format!("secret of {tenant} #{offset}").into_bytes()),
        headers: vec![Header {
            key: "tenant".into(),
            value: Some(tenant.as_bytes().to_vec()),
        }],
    }
}

fn assert_set_aside(result: &TransformResult, tenant: &str) {
    match result {
        Err(Failure::InvalidInput(reason)) => {
            assert!(reason.contains(TEMPLATE), "{reason}");
            assert!(!reason.contains(tenant), "{tenant:?} leaks: {reason}");
        }
        other => panic!("{tenant}: expected invalid input, got {other:?}"),
    }
}

async fn key_exists(vault: &support::RunningServer, name: &str) -> bool {
    let (status, _) = support::raw_request(
        vault,
        reqwest::Method::GET,
        &format!("transit/keys/{name}"),
        None,
    )
    .await;
    status == 200
}

#[tokio::test]
async fn a_tenant_whose_key_vault_refuses_is_dead_lettered_and_the_others_go_on() {
    let batch: Vec<SourceRecord> = ["acme", "evil", "globex", "evil", "ghost", "acme"]
        .iter()
        .enumerate()
        .map(|(i, tenant)| for_tenant(i as i64, tenant))
        .collect();

    for builtin in ["encrypt-value", "envelope-seal"] {
        // A Vault of its own each: encrypt-value's upsert creates tenant-ghost.
        let vault = support::start_vault_dev().await;
        for key in ["tenant-acme", "tenant-globex", "tenant-evil"] {
            support::create_key(&vault, "transit", key, json!({})).await;
        }
        vault.faults().deny_key("tenant-evil");
        let mut runner = runner(builtin, json!({ "key": TEMPLATE }), &vault).await;
        let results = runner.transform(&batch).await.unwrap();
        for (i, tenant) in [(0, "acme"), (2, "globex"), (5, "acme")] {
            let value = results[i]
                .as_ref()
                .unwrap_or_else(|f| panic!("{builtin} {tenant}: {f:?}"))[0]
                .value
                .clone()
                .unwrap();
            match builtin {
                "encrypt-value" => assert!(value.starts_with(b"vault:v1:")),
                _ => assert_eq!(
                    envelope::parse(&value).unwrap().key_name,
                    format!("tenant-{tenant}")
                ),
            }
        }
        assert_set_aside(&results[1], "evil");
        assert_set_aside(&results[3], "evil");
        if builtin == "envelope-seal" {
            // Vault's datakey never creates a key: a missing one is the record's too.
            assert_set_aside(&results[4], "ghost");
        }
    }
}

#[tokio::test]
async fn a_fixed_key_vault_refuses_is_retried_for_the_operator_to_fix() {
    let vault = support::start_vault_dev().await;
    support::create_key(&vault, "transit", "customers", json!({})).await;
    vault.faults().deny_key("customers");
    for builtin in ["encrypt-value", "envelope-seal"] {
        let mut runner = runner(builtin, json!({ "key": "customers" }), &vault).await;
        let results = runner.transform(&[for_tenant(0, "acme")]).await.unwrap();
        assert!(
            matches!(&results[0], Err(Failure::Retryable(m)) if m.contains("customers")),
            "{builtin}: {results:?}"
        );
    }
}

#[tokio::test]
async fn allowed_keys_keeps_producers_from_making_vault_create_keys() {
    let vault = support::start_vault_dev().await;
    support::create_key(&vault, "transit", "tenant-acme", json!({})).await;

    // Without a list, a root token's encrypt creates whatever key a header names.
    let mut open = runner("encrypt-value", json!({ "key": TEMPLATE }), &vault).await;
    let results = open.transform(&[for_tenant(0, "made-up")]).await.unwrap();
    assert!(results[0].is_ok());
    assert!(key_exists(&vault, "tenant-made-up").await, "Vault's upsert");

    let mut listed = runner(
        "encrypt-value",
        json!({ "key": TEMPLATE, "allowed_keys": ["tenant-acme"] }),
        &vault,
    )
    .await;
    let before = support::server_requests(&vault);
    let results = listed
        .transform(&[for_tenant(0, "acme"), for_tenant(1, "invented")])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert_set_aside(&results[1], "invented");
    assert_eq!(
        support::server_requests(&vault) - before,
        1,
        "acme's request only"
    );
    assert!(!key_exists(&vault, "tenant-invented").await);
}
