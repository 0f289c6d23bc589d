//! The `kafka-transit` binary as a user runs it: `validate` refuses what `run` would
//! refuse, naming the variable or file to fix, and with `--connect` reports the Vault
//! token and every topic; `policy export` writes a built-in.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::kafka::{PipelineSpec, TestKafka};

fn config_with_vault(vault: &str) -> String {
    format!(
        r#"
[source]
bootstrap_servers = "127.0.0.1:9092"
topics = ["customers.raw"]
group_id = "kafka-transit-cli-test"

[sink]
bootstrap_servers = "127.0.0.1:9092"
topic = "customers.protected"

[vault]
address = "http://127.0.0.1:8200"
{vault}

[policy]
builtin = "encrypt-value"
[policy.config]
key = "customers"

[errors]
on_failure = "stop"
"#
    )
}

fn validate(dir: &Path, vault: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, config_with_vault(vault)).unwrap();
    kafka_transit(
        &["validate".as_ref(), "--config".as_ref(), path.as_os_str()],
        env,
    )
}

/// Runs `kafka-transit` with `args` (and the variables `env`) and waits for it.
fn kafka_transit<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-transit"));
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run kafka-transit")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn validate_refuses_an_unset_token_variable_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let unset = "KT_CLI_TEST_TOKEN_THAT_IS_NOT_SET";
    let output = validate(dir.path(), &format!("token_env = \"{unset}\""), &[]);
    assert!(
        !output.status.success(),
        "validate accepted an unset token variable"
    );
    let message = stderr(&output);
    assert!(message.contains(unset), "{message}");
    assert!(message.contains("vault.token_env"), "{message}");

    let output = validate(
        dir.path(),
        &format!("token_env = \"{unset}\""),
        &[(unset, "s.a-token-for-the-test")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("s.a-token-for-the-test")
            && !String::from_utf8_lossy(&output.stdout).contains("s.a-token-for-the-test"),
        "the token was echoed"
    );
}

#[test]
fn validate_refuses_a_missing_token_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let vault = format!("token_file = {:?}", missing.display().to_string());
    let output = validate(dir.path(), &vault, &[]);
    assert!(
        !output.status.success(),
        "validate accepted a missing token file"
    );
    let message = stderr(&output);
    assert!(message.contains("vault.token_file"), "{message}");
    assert!(message.contains("no-such-token"), "{message}");

    std::fs::write(&missing, "s.token-in-a-file\n").unwrap();
    let output = validate(dir.path(), &vault, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn validate_refuses_unset_approle_variables_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let vault = "[vault.approle]\nrole_id_env = \"KT_CLI_ROLE\"\nsecret_id_env = \"KT_CLI_SECRET\"";
    let output = validate(dir.path(), vault, &[("KT_CLI_ROLE", "role")]);
    assert!(
        !output.status.success(),
        "validate accepted an unset secret ID"
    );
    let message = stderr(&output);
    assert!(message.contains("KT_CLI_SECRET"), "{message}");

    let output = validate(
        dir.path(),
        vault,
        &[("KT_CLI_ROLE", "role"), ("KT_CLI_SECRET", "secret")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn validate_refuses_a_missing_jwt_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("sa-token");
    let vault = format!(
        "[vault.kubernetes]\nrole = \"kafka-transit\"\njwt_file = \"{}\"",
        jwt.display()
    );
    let output = validate(dir.path(), &vault, &[]);
    assert!(!output.status.success(), "validate accepted a missing JWT");
    let message = stderr(&output);
    assert!(message.contains("vault.kubernetes.jwt_file"), "{message}");
    assert!(message.contains("sa-token"), "{message}");

    std::fs::write(&jwt, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln\n").unwrap();
    let output = validate(dir.path(), &vault, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("c2ln"));
}

#[test]
fn validate_refuses_an_unreadable_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let vault = "token_env = \"KT_CLI_TOKEN\"\nca_cert = \"/no/such/ca.pem\"";
    let output = validate(dir.path(), vault, &[("KT_CLI_TOKEN", "t")]);
    assert!(
        !output.status.success(),
        "validate accepted a missing CA bundle"
    );
    assert!(
        stderr(&output).contains("vault.ca_cert"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn policy_export_writes_the_builtin_component_and_names_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("envelope-seal.wasm");
    let exported = Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(["policy", "export", "envelope-seal", "--output"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    let wasm = std::fs::read(&output).unwrap();
    assert_eq!(
        wasm,
        kafka_transit::policy::builtin::component("envelope-seal").unwrap()
    );
    let digest = kafka_transit::policy::digest_of(&wasm);
    assert!(
        String::from_utf8_lossy(&exported.stdout).contains(&digest),
        "the digest is printed"
    );

    let unknown = Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(["policy", "export", "seal-everything", "--output"])
        .arg(dir.path().join("x.wasm"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("\"seal-everything\"")
            && stderr(&unknown).contains("envelope-seal"),
        "{}",
        stderr(&unknown)
    );
    assert!(!dir.path().join("x.wasm").exists());
}

#[test]
fn health_fails_naming_the_setting_when_nothing_listens() {
    // A port just released: nothing listens there.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(["health", "--ready", "--address", &address.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("http://{address}/health/ready"))
            && stderr.contains("[admin] listen"),
        "{stderr}"
    );
}

#[test]
fn validate_can_check_a_file_without_the_vault_credentials_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        config_with_vault("token_env = \"KT_CLI_TEST_TOKEN_THAT_IS_NOT_SET\""),
    )
    .unwrap();
    let validate = || {
        let args = [
            "validate".as_ref(),
            "--skip-credentials".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ];
        kafka_transit(&args, &[])
    };
    let output = validate();
    assert!(output.status.success(), "{}", stderr(&output));
    // The rest is still checked: a policy that refuses its configuration fails.
    std::fs::write(
        &path,
        config_with_vault("token_env = \"X\"").replace("key = \"customers\"", "key = \"\""),
    )
    .unwrap();
    let output = validate();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("policy.config.key"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn completions_man_page_and_run_help_come_from_the_command_line() {
    let run = |args: &[&str]| {
        let output = kafka_transit(args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    // bash registers its completion function for the command's name.
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.lines()
            .any(|line| line.trim().starts_with("complete -F _kafka")
                && line.trim_end().ends_with(" kafka-transit")),
        "{bash}"
    );
    assert!(run(&["completions", "zsh"]).starts_with("#compdef kafka-transit"));
    assert!(run(&["completions", "fish"]).contains("complete -c kafka-transit"));
    let page = run(&["man"]);
    assert!(page.contains(".TH kafka-transit 1"), "{page}");
    let help = run(&["run", "--help"]);
    for section in [
        "[source]",
        "[sink]",
        "[vault]",
        "[policy]",
        "[errors]",
        "[pipeline]",
        "[admin]",
    ] {
        assert!(help.contains(section), "run --help does not name {section}");
    }
}

/// `validate --connect` on librdkafka's mock cluster and vault-dev: the source topic and
/// its partitions, the output topics the runner will create, the token's permissions;
/// and a failure naming the sink topic when it is missing and may not be created.
#[tokio::test(flavor = "multi_thread")]
async fn validate_connect_reports_the_token_and_every_topic() {
    let kafka = TestKafka::start(&[("in", 3)]);
    let vault = support::start_vault().await;
    let dir = tempfile::tempdir().unwrap();
    let url = vault.url();
    let spec = PipelineSpec::in_to_out(&kafka, &url, "g", "builtin = \"encrypt-value\"".into());
    let connect = |extra: &str| {
        let path = dir.path().join("pipeline.toml");
        let text = spec
            .text()
            .replace("[sink]\n", &format!("[sink]\n{extra}\n"));
        std::fs::write(&path, text).unwrap();
        let args = [
            "validate".as_ref(),
            "--connect".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ];
        kafka_transit(&args, &[("KAFKA_TRANSIT_TEST_UNUSED", vault.root_token())])
    };
    let output = connect("");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    for line in [
        "the token is accepted",
        "it holds every permission this pipeline needs",
        "  in: 3 partition(s); the group has committed offsets for 0 of them",
        "  out (sink cluster): does not exist; the runner creates it with 3 partition(s)",
        "  dlq (dead letters, source cluster): does not exist; the runner creates it with 3",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }

    let output = connect("create_topics = false");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr(&output).contains(
            "out (sink cluster) does not exist: create it, or set sink.create_topics = true"
        ),
        "{}",
        stderr(&output)
    );
    vault.shutdown().await;
}
