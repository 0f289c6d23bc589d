//! Interop with the reference tools: HashiCorp's Python client `hvac` and the
//! `cryptography` package's AES-GCM, against `support::TestVault::target()`: an
//! in-process vault-dev, or the OpenBao (or Vault) server named by
//! `KAFKA_TRANSIT_TEST_VAULT_ADDR` / `_TOKEN` (see `support`).
//!
//! Needs `python3` with `hvac` and `cryptography` installed; run by `.ci/run` with
//! `cargo test -p kafka-transit --test interop_hvac -- --ignored`.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kafka_transit::vault::{DecryptInput, EncryptInput};
use serde_json::{json, Value};
use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/hvac_interop.py");

/// Runs the Python side in `mode` with `request` on stdin, on the test's mount of
/// `vault`; returns its JSON answer.
async fn python(vault: &TestVault, mode: &str, mut request: Value) -> Value {
    use tokio::io::AsyncWriteExt;
    request["url"] = json!(vault.url());
    request["mount"] = json!(vault.mount());
    if let Some(ca) = vault.ca_cert() {
        request["ca_cert"] = json!(ca);
    }
    let mut child = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(mode)
        .env("VAULT_TOKEN", vault.root_token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (is it installed?)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&serde_json::to_vec(&request).unwrap())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "hvac_interop.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from hvac_interop.py")
}

fn sample_plaintexts() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"hello from kafka-transit".to_vec(),
        Vec::new(),
        (0u8..=255).collect(),
        "ünïcödé ✓".as_bytes().to_vec(),
    ];
    v.extend((0..6).map(|i| vec![b'a' + i as u8; 1 + i * 97]));
    v
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python hvac; run by .ci/run"]
async fn hvac_encrypts_we_decrypt() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let pts = sample_plaintexts();
    let b64: Vec<String> = pts.iter().map(|p| STANDARD.encode(p)).collect();
    let answer = python(
        &vault,
        "encrypt",
        json!({"key": "interop-a", "plaintexts_b64": b64}),
    )
    .await;
    let cts = strings(&answer, "ciphertexts");
    assert_eq!(cts.len(), pts.len());
    // batch
    let inputs: Vec<DecryptInput> = cts.iter().map(|c| DecryptInput::new(c)).collect();
    let dec = c.decrypt_batch("interop-a", &inputs).await.unwrap();
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }
    // single
    for (ct, p) in cts.iter().zip(&pts) {
        assert_eq!(&c.decrypt("interop-a", ct, None).await.unwrap(), p);
    }
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python hvac; run by .ci/run"]
async fn we_encrypt_hvac_decrypts() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let pts = sample_plaintexts();
    let inputs: Vec<EncryptInput> = pts.iter().map(|p| EncryptInput::new(p)).collect();
    let mut cts: Vec<String> = c
        .encrypt_batch("interop-b", &inputs)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    cts.push(
        c.encrypt("interop-b", b"single request", None)
            .await
            .unwrap(),
    );
    let answer = python(
        &vault,
        "decrypt",
        json!({"key": "interop-b", "ciphertexts": cts}),
    )
    .await;
    let got: Vec<Vec<u8>> = strings(&answer, "plaintexts_b64")
        .iter()
        .map(|s| STANDARD.decode(s).unwrap())
        .collect();
    let mut want = pts.clone();
    want.push(b"single request".to_vec());
    assert_eq!(got, want);
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Python hvac; run by .ci/run"]
async fn exported_key_decrypts_with_python_aesgcm() {
    let vault = TestVault::target().await;
    create_key(
        &vault,
        vault.mount(),
        "interop-export",
        json!({"exportable": true}),
    )
    .await;
    let c = client_for(&vault);
    let pts = sample_plaintexts();
    let inputs: Vec<EncryptInput> = pts.iter().map(|p| EncryptInput::new(p)).collect();
    let cts: Vec<String> = c
        .encrypt_batch("interop-export", &inputs)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let answer = python(
        &vault,
        "aesgcm-decrypt",
        json!({"key": "interop-export", "ciphertexts": cts}),
    )
    .await;
    let got: Vec<Vec<u8>> = strings(&answer, "plaintexts_b64")
        .iter()
        .map(|s| STANDARD.decode(s).unwrap())
        .collect();
    assert_eq!(got, pts);
    vault.shutdown().await;
}
