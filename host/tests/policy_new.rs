//! `kafka-transit policy new` and `policy wit` as an author runs them: the crate they
//! write, and what they refuse. Building and running that crate needs the wasm
//! toolchain, cargo component, Kafka and OpenBao: .ci/e2e/policy-new.sh does it, in a
//! directory outside the checkout, with the SDK `policy new` vendors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kafka_transit::config::PipelineConfig;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn kafka_transit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafka-transit"))
        .args(args)
        .output()
        .expect("run kafka-transit")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn manifest(dir: &Path) -> toml::Table {
    read(dir.join("Cargo.toml"))
        .parse()
        .expect("Cargo.toml is TOML")
}

fn sdk_dependency(manifest: &toml::Table) -> &toml::Table {
    manifest["dependencies"]["kafka-transit-policy-sdk"]
        .as_table()
        .expect("the SDK is a dependency")
}

#[test]
fn policy_new_writes_a_standalone_crate_on_the_sdk_path() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("hash-keys");
    let sdk = repository_root().join("guest/sdk");
    let output = kafka_transit(&[
        "policy",
        "new",
        "hash-keys",
        "--dir",
        dir.to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cargo test"), "{stdout}");
    assert!(
        stdout.contains("target/wasm32-wasip2/release/hash_keys.wasm"),
        "{stdout}"
    );

    let root = repository_root();
    assert_eq!(
        read(dir.join("wit/policy.wit")),
        read(root.join("wit/policy.wit"))
    );
    assert_eq!(
        read(dir.join("src/lib.rs")),
        read(root.join("host/templates/policy/src/lib.rs")),
        "the example is the template the SDK's tests compile and run"
    );
    assert!(read(dir.join(".gitignore")).contains("/target"));
    assert!(read(dir.join("README.md")).contains("# hash-keys"));

    let manifest = manifest(&dir);
    assert_eq!(manifest["package"]["name"].as_str(), Some("hash-keys"));
    assert_eq!(
        manifest["lib"]["crate-type"].as_array().unwrap(),
        &vec![toml::Value::from("cdylib")]
    );
    assert_eq!(
        sdk_dependency(&manifest)["path"].as_str(),
        Some(sdk.canonicalize().unwrap().to_str().unwrap())
    );
    let component = &manifest["package"]["metadata"]["component"];
    assert_eq!(component["target"]["path"].as_str(), Some("wit"));
    assert_eq!(component["target"]["world"].as_str(), Some("data-policy"));
    assert!(
        manifest["workspace"].is_table(),
        "a workspace of its own, wherever it sits"
    );

    let pipeline = PipelineConfig::load(&dir.join("pipeline.toml")).expect("a valid pipeline");
    let policy = pipeline.policy.path.expect("policy.path");
    assert!(
        policy.ends_with("target/wasm32-wasip2/release/hash_keys.wasm"),
        "{}",
        policy.display()
    );
    assert_eq!(pipeline.policy.config["key"].as_str(), Some("customers"));
}

#[test]
fn without_sdk_path_the_crate_carries_the_sdk_it_was_made_for() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("mask");
    let output = kafka_transit(&["policy", "new", "mask", "--dir", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest = manifest(&dir);
    assert_eq!(
        sdk_dependency(&manifest)["path"].as_str(),
        Some("vendor/guest/sdk"),
        "a path inside the crate: no checkout, no git"
    );
    // The SDK and the crates it uses by path, as the checkout has them, so that the
    // SDK's own `path = "../../names"` resolves inside vendor/.
    let root = repository_root();
    let mut compared = 0;
    for crate_dir in ["guest/sdk", "names", "envelope-format"] {
        let mut pending = vec![root.join(crate_dir).join("src")];
        while let Some(directory) = pending.pop() {
            for entry in std::fs::read_dir(&directory).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let relative = path.strip_prefix(&root).unwrap();
                    assert_eq!(
                        read(dir.join("vendor").join(relative)),
                        read(&path),
                        "{}",
                        relative.display()
                    );
                    compared += 1;
                }
            }
        }
        assert_eq!(
            read(dir.join("vendor").join(crate_dir).join("Cargo.toml")),
            read(root.join(crate_dir).join("Cargo.toml"))
        );
    }
    assert!(compared > 10, "only {compared} sources compared");
    assert_eq!(
        read(dir.join("vendor/guest/sdk/wit/policy.wit")),
        read(root.join("wit/policy.wit"))
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("vendor/"), "{stdout}");
}

#[test]
fn policy_new_refuses_a_directory_that_is_not_empty_and_names_it() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let output = kafka_transit(&["policy", "new", "taken", "--dir", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains(dir.to_str().unwrap()), "{message}");
    assert!(message.contains("not empty"), "{message}");
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing was written");
    assert_eq!(read(dir.join("notes.txt")), "mine");

    // An empty directory is fine.
    let empty = temporary.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = kafka_transit(&["policy", "new", "fine", "--dir", empty.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(empty.join("Cargo.toml").is_file());
}

#[test]
fn policy_new_refuses_bad_names_and_sdk_paths_before_writing() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().join("crate");
    let output = kafka_transit(&["policy", "new", "Hash_Keys", "--dir", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("\"Hash_Keys\""),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("hash-keys"), "gives an example");

    let nowhere = temporary.path().join("no-sdk-here");
    let output = kafka_transit(&[
        "policy",
        "new",
        "hash-keys",
        "--dir",
        dir.to_str().unwrap(),
        "--sdk-path",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("--sdk-path"), "{message}");
    assert!(message.contains(nowhere.to_str().unwrap()), "{message}");
    assert!(!dir.exists(), "nothing was written");
}

#[test]
fn policy_wit_prints_the_wit_the_host_implements() {
    let output = kafka_transit(&["policy", "wit"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        read(repository_root().join("wit/policy.wit"))
    );
}

#[test]
fn the_sdk_ships_the_wit_the_host_implements() {
    // The SDK generates its bindings from its own copy, so that it works as a path, git
    // or crates.io dependency; the copy must stay the host's contract.
    assert!(
        read(repository_root().join("guest/sdk/wit/policy.wit"))
            == kafka_transit::policy::world::WIT,
        "guest/sdk/wit/policy.wit differs from wit/policy.wit: copy wit/policy.wit there"
    );
}
