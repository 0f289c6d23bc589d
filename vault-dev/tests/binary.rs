//! Runs the real `vault-dev` binary: ready line, one request, kill.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

#[tokio::test]
async fn binary_prints_ready_line_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vault-dev"))
        .args(["--listen", "127.0.0.1:0", "--root-token", "bin-root"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("vault-dev ready on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert!(!line.contains("bin-root"), "token must not be printed");

    let client = reqwest::Client::new();
    let r = support::send(
        &client,
        &url,
        Some("bin-root"),
        "POST",
        "transit/encrypt/k",
        Some(&json!({ "plaintext": support::b64("from the binary") })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(support::is_well_formed(
        r.body["data"]["ciphertext"].as_str().unwrap()
    ));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn binary_fails_clearly_when_port_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vault-dev"))
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}
