//! `kafka-transit vault-policy` on OpenBao. For every built-in policy, the ACL the
//! command prints is written to OpenBao as it is, and a token holding that policy and
//! nothing else (not even Vault's `default` policy) runs the pipeline: records go
//! through, protected records are opened again. Then each path of the printed policy is
//! taken out in turn, and the runner refuses to start, naming the path it lacks.
//!
//! Needs a server with ACL policies, named by `KAFKA_TRANSIT_TEST_VAULT_ADDR` (`.ci/run`
//! starts OpenBao); vault-dev has no policy language. Kafka is librdkafka's mock cluster.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kafka_transit::access::check;
use kafka_transit::config::PipelineConfig;
use kafka_transit::vault::VaultClient;
use serde_json::json;
use support::kafka::{PipelineSpec, RunningPipeline, TestKafka, TestRecord};
use support::{create_key, settings_for, unique_name, TestVault, VaultEndpoint};

const RECORDS: usize = 40;
const WAIT: Duration = Duration::from_secs(60);

/// One pipeline of the chain: a built-in policy from one topic to another.
struct Step {
    builtin: &'static str,
    from: &'static str,
    to: &'static str,
    config: &'static str,
}

const PROTECTED_KEYS: &str = "key = \"customers\"\nbind = [\"stream\", \"key\"]\n\
                              record_keys = \"encrypt\"\nrecord_keys_key = \"record-keys\"";
const REWRAP_KEYS: &str =
    "key = \"customers\"\nrecord_keys = \"encrypt\"\nrecord_keys_key = \"record-keys\"";
const FIELDS: &str = "key = \"customers\"\nfields = [\"/ssn\"]";

/// Each protecting policy, and each opening and rewrapping one on what it wrote.
const STEPS: &[Step] = &[
    Step {
        builtin: "passthrough",
        from: "plain",
        to: "copied",
        config: "",
    },
    Step {
        builtin: "encrypt-value",
        from: "plain",
        to: "ev",
        config: PROTECTED_KEYS,
    },
    Step {
        builtin: "decrypt-value",
        from: "ev",
        to: "ev.opened",
        config: "key = \"customers\"\nrecord_keys_key = \"record-keys\"",
    },
    Step {
        builtin: "rewrap-value",
        from: "ev",
        to: "ev.rewrapped",
        config: REWRAP_KEYS,
    },
    Step {
        builtin: "encrypt-value",
        from: "plain",
        to: "ev.hmac",
        config: "key = \"customers\"\nrecord_keys = \"hmac\"\nrecord_keys_key = \"record-hmac\"",
    },
    Step {
        builtin: "encrypt-fields",
        from: "plain",
        to: "ef",
        config: FIELDS,
    },
    Step {
        builtin: "decrypt-fields",
        from: "ef",
        to: "ef.opened",
        config: FIELDS,
    },
    Step {
        builtin: "rewrap-fields",
        from: "ef",
        to: "ef.rewrapped",
        config: FIELDS,
    },
    Step {
        builtin: "envelope-seal",
        from: "plain",
        to: "es",
        config: PROTECTED_KEYS,
    },
    Step {
        builtin: "envelope-open",
        from: "es",
        to: "es.opened",
        config: "key = \"customers\"\nrecord_keys_key = \"record-keys\"",
    },
    Step {
        builtin: "envelope-rewrap",
        from: "es",
        to: "es.rewrapped",
        config: REWRAP_KEYS,
    },
];

fn plaintexts() -> Vec<TestRecord> {
    (0..RECORDS)
        .map(|i| {
            TestRecord::new(
                &format!("customer-{i}"),
                &format!(r#"{{"name":"Customer {i}","ssn":"{i:03}-45-6789"}}"#),
            )
        })
        .collect()
}

/// The pipeline file of `step`, with the test's mount and a token from `token_env`.
fn pipeline_file(
    step: &Step,
    kafka: &TestKafka,
    vault: &TestVault,
    token_env: &str,
) -> (String, PipelineConfig) {
    let url = vault.url();
    let spec = PipelineSpec {
        policy_config: step.config,
        ..PipelineSpec::from_to(
            kafka,
            &url,
            step.from,
            step.to,
            format!("builtin = \"{}\"", step.builtin),
        )
    };
    let text = spec
        .text()
        .replace(
            "token_env = \"KAFKA_TRANSIT_TEST_UNUSED\"",
            &format!("token_env = \"{token_env}\"\nmount = \"{}\"", vault.mount()),
        )
        .replace("group_id = \"", &format!("group_id = \"{}-", step.to));
    let config = PipelineConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, config)
}

/// What `kafka-transit vault-policy --config FILE` prints.
fn printed_policy(file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(["vault-policy", "--config"])
        .arg(file)
        .output()
        .expect("run kafka-transit vault-policy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vault-policy failed: {stderr}");
    String::from_utf8(output.stdout).expect("UTF-8 policy")
}

/// The `path "..." { ... }` blocks of a printed policy, with their comments.
fn blocks(policy: &str) -> Vec<&str> {
    policy
        .split("\n\n")
        .filter(|block| block.contains("path \""))
        .collect()
}

fn path_of(block: &str) -> &str {
    let start = block.find("path \"").expect("path") + 6;
    let end = block[start..].find('"').expect("closing quote") + start;
    &block[start..end]
}

/// A token holding only `hcl`, in a fresh variable; the client the runner would build.
async fn connect_with(
    vault: &TestVault,
    hcl: &str,
    token_env: &str,
) -> Result<VaultClient, kafka_transit::vault::VaultError> {
    let policy = vault.create_policy(hcl).await;
    let token = vault.create_token_without_default(&[&policy]).await;
    std::env::set_var(token_env, token);
    let mut settings = settings_for(vault);
    settings.token_env = Some(token_env.to_string());
    VaultClient::connect(&settings).await
}

/// What `run` does before it reads a record: connect, then check the permissions.
async fn start_check(
    vault: &TestVault,
    hcl: &str,
    config: &PipelineConfig,
) -> Result<VaultClient, String> {
    let env = config.vault.token_env.clone().expect("token_env");
    let client = connect_with(vault, hcl, &env)
        .await
        .map_err(|e| e.to_string())?;
    check::verify_pipeline(&client, config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs OpenBao (ACL policies): KAFKA_TRANSIT_TEST_VAULT_ADDR and _TOKEN; .ci/run runs it"]
async fn every_builtin_runs_on_the_printed_policy_and_refuses_to_start_without_any_path() {
    let vault = TestVault::external()
        .await
        .expect("set KAFKA_TRANSIT_TEST_VAULT_ADDR and _TOKEN to an OpenBao (root token)");
    let mount = vault.mount().to_string();
    create_key(&vault, &mount, "customers", json!({})).await;
    let convergent = json!({"derived": true, "convergent_encryption": true});
    create_key(&vault, &mount, "record-keys", convergent).await;
    create_key(&vault, &mount, "record-hmac", json!({})).await;
    let topics: Vec<(&str, i32)> = [("plain", 1), ("dlq", 1)]
        .into_iter()
        .chain(STEPS.iter().map(|s| (s.to, 1)))
        .collect();
    let kafka = TestKafka::start(&topics);
    let plain = plaintexts();
    kafka.produce("plain", &plain).await;
    let dir = tempfile::tempdir().unwrap();

    for step in STEPS {
        let what = format!("{} ({} -> {})", step.builtin, step.from, step.to);
        let token_env = unique_name("KT_VAULT_POLICY_TOKEN");
        let (text, config) = pipeline_file(step, &kafka, &vault, &token_env);
        let file = dir.path().join(format!("{}.toml", step.to));
        std::fs::write(&file, &text).unwrap();
        let policy = printed_policy(&file);

        // The printed policy, and nothing else, runs the pipeline.
        let client = start_check(&vault, &policy, &config)
            .await
            .unwrap_or_else(|e| panic!("{what}: the printed policy is not enough: {e}\n{policy}"));
        let pipeline = RunningPipeline::start(config.clone(), client).await;
        let done = pipeline
            .wait_until(WAIT, |s| s.records_out >= RECORDS as u64)
            .await;
        assert_eq!(done.dead_lettered, 0, "{what}: {done:?}");
        pipeline.stop().await.expect("stops cleanly");
        let out = kafka.read(step.to, RECORDS, WAIT).await;
        assert_eq!(out.len(), RECORDS, "{what}");
        if step.to.ends_with(".opened") || step.to == "copied" {
            use rdkafka::Message;
            for (got, want) in out.iter().zip(&plain) {
                assert_eq!(got.payload(), want.value.as_deref(), "{what}");
                assert_eq!(got.key(), want.key.as_deref(), "{what}");
            }
        }

        // Without any one of its paths, the runner does not start, and says which.
        for block in blocks(&policy) {
            let path = path_of(block);
            let without = policy.replace(block, "");
            let refused = start_check(&vault, &without, &config).await.err();
            let refused =
                refused.unwrap_or_else(|| panic!("{what}: started without {path}:\n{without}"));
            assert!(
                refused.contains(path),
                "{what}: the refusal without {path} does not name it: {refused}"
            );
        }
    }

    // The same through the command line: `run` exits at once, naming the path.
    let step = &STEPS[1];
    let token_env = unique_name("KT_VAULT_POLICY_TOKEN");
    let (text, _) = pipeline_file(step, &kafka, &vault, &token_env);
    let file = dir.path().join("cli.toml");
    std::fs::write(&file, text).unwrap();
    let policy = printed_policy(&file);
    let block = blocks(&policy)
        .into_iter()
        .find(|b| b.contains("/encrypt/customers"))
        .expect("encrypt-value needs encrypt/customers");
    let hcl = policy.replace(block, "");
    let name = vault.create_policy(&hcl).await;
    let token = vault.create_token_without_default(&[&name]).await;
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(["run", "--config"])
        .arg(&file)
        .env(&token_env, token)
        .output()
        .expect("run kafka-transit run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("`update` on {}/encrypt/customers", vault.mount()))
            && stderr.contains("kafka-transit vault-policy"),
        "{stderr}"
    );
    vault.shutdown().await;
}
