//! The Vault transit client against a real server: `support::TestVault::target()`, an
//! in-process vault-dev by default, or the OpenBao (or Vault) server named by
//! `KAFKA_TRANSIT_TEST_VAULT_ADDR` / `_TOKEN` (and `KAFKA_TRANSIT_TEST_VAULT_TLS_*` for
//! the TLS test); see `support` for the variables.
//!
//! vault-dev only, and why (they need its fault injection, `server.faults()`):
//! - `sealed_then_unsealed_mid_retry`, `sealed_too_long_is_unavailable`: seal and unseal
//!   at a chosen moment. Sealing a shared external server would fail the tests running
//!   beside it, and unsealing it needs its unseal key.
//! - `rate_limit_honours_retry_after`: a 429 with `Retry-After` on demand.
//! - `internal_errors_are_retried`: the next two requests fail with 500.
//! - `client_errors_are_not_retried`: a 400, 403 and 404 on demand for the same request.
//!   Real ones are not retried either, on every server: `mount_not_found_vs_key_not_found`,
//!   `wrong_key_gives_item_error`, `bad_token_is_permission_denied` count the requests.
//! - `latency_beyond_timeout_is_unavailable`: answers slower than the request timeout.
//! - `dropping_calls_mid_flight_leaves_the_client_whole`: latency on demand, to drop calls
//!   while Vault holds them.
//! - the sealed part of `giving_up_without_any_answer_says_unreachable` (its refused and
//!   blackholed parts need no Vault at all).
//!
//! Also vault-dev only: `namespace_setting_is_accepted` (vault-dev ignores namespaces;
//! it shows that the setting and its header do no harm there).
//!
//! External server only, skipped (saying so) on vault-dev, which implements neither
//! namespaces nor ACL policies: `namespace_isolates_keys`,
//! `limited_token_is_permission_denied`.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_transit::vault::{
    AppRoleSettings, DecryptInput, EncryptInput, VaultClient, VaultError, VaultSettings, VaultToken,
};
use reqwest::Method;
use serde_json::json;
use support::*;

fn items(plaintexts: &[Vec<u8>]) -> Vec<EncryptInput<'_>> {
    plaintexts.iter().map(|p| EncryptInput::new(p)).collect()
}

/// Says on stderr (uncaptured) that `test` did not run, and why.
fn skipped(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{test}: skipped, {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_round_trip() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    for pt in [&b"hello vault"[..], b"", &[0u8, 255, 10, 13][..]] {
        let ct = c.encrypt("orders", pt, None).await.unwrap();
        assert!(ct.starts_with("vault:v1:"), "{ct}");
        assert_eq!(c.decrypt("orders", &ct, None).await.unwrap(), pt);
    }
    assert_eq!(c.requests_sent(), 6);
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_round_trip_rewrap_and_hmac() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let pts: Vec<Vec<u8>> = (0..200)
        .map(|i| vec![(i % 251) as u8; i * 7 % 300])
        .collect();
    let cts: Vec<String> = c
        .encrypt_batch("batchkey", &items(&pts))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(cts.len(), pts.len());
    let dec_in: Vec<DecryptInput> = cts.iter().map(|c| DecryptInput::new(c)).collect();
    let dec = c.decrypt_batch("batchkey", &dec_in).await.unwrap();
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }
    let rewrapped = c.rewrap_batch("batchkey", &dec_in).await.unwrap();
    for (r, old) in rewrapped.iter().zip(&cts) {
        let r = r.as_ref().unwrap();
        assert!(r.starts_with("vault:v1:") && r != old);
    }
    let inputs: Vec<&[u8]> = vec![b"a", b"b", b"a"];
    let h = c.hmac_batch("batchkey", &inputs).await.unwrap();
    let h: Vec<String> = h.into_iter().map(Result::unwrap).collect();
    assert!(h[0].starts_with("vault:v1:"));
    assert_eq!(h[0], h[2]);
    assert_ne!(h[0], h[1]);
    assert!(c.encrypt_batch("batchkey", &[]).await.unwrap().is_empty());
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batch_is_chunked_by_items() {
    let vault = TestVault::target().await;
    let mut s = settings_for(&vault);
    s.max_batch_items = 400;
    let c = client_with(&vault, s);
    let pts: Vec<Vec<u8>> = (0..25_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let before = vault.server_requests();
    let cts = c.encrypt_batch("big", &items(&pts)).await.unwrap();
    assert_eq!(cts.len(), 25_000);
    // 62 requests of 400 items, one of 200
    assert_eq!(c.requests_sent(), 63);
    // vault-dev counts what it received, too.
    if let (Some(before), Some(after)) = (before, vault.server_requests()) {
        assert!(after - before >= 63, "{before} -> {after}");
    }
    // results are in input order
    let dec_in: Vec<DecryptInput> = cts
        .iter()
        .map(|c| DecryptInput::new(c.as_ref().unwrap()))
        .collect();
    let dec = c.decrypt_batch("big", &dec_in).await.unwrap();
    for (i, d) in dec.iter().enumerate() {
        assert_eq!(d.as_ref().unwrap(), &(i as u32).to_be_bytes());
    }
    vault.shutdown().await;
}

/// OpenBao refuses a request body holding more than 1000 JSON strings (keys and values):
/// a request carries at most 499 items, 249 when they have a context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_chunked_by_json_strings() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let pts: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let cts = c.encrypt_batch("strings", &items(&pts)).await.unwrap();
    // 499 + 499 + 2
    assert_eq!(c.requests_sent(), 3);
    let dec_in: Vec<DecryptInput> = cts
        .iter()
        .map(|c| DecryptInput::new(c.as_ref().unwrap()))
        .collect();
    let dec = c.decrypt_batch("strings", &dec_in).await.unwrap();
    assert_eq!(c.requests_sent(), 6);
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }

    create_key(
        &vault,
        vault.mount(),
        "strings-ctx",
        json!({"derived": true}),
    )
    .await;
    let with_context: Vec<EncryptInput> = pts
        .iter()
        .map(|p| EncryptInput {
            plaintext: p,
            context: Some(b"tenant"),
            associated_data: None,
        })
        .collect();
    let cts = c.encrypt_batch("strings-ctx", &with_context).await.unwrap();
    // 4 x 249 + 4
    assert_eq!(c.requests_sent(), 11);
    let dec_in: Vec<DecryptInput> = cts
        .iter()
        .map(|c| DecryptInput {
            ciphertext: c.as_ref().unwrap(),
            context: Some(b"tenant"),
            associated_data: None,
        })
        .collect();
    let dec = c.decrypt_batch("strings-ctx", &dec_in).await.unwrap();
    assert_eq!(c.requests_sent(), 16);
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_chunked_by_bytes() {
    let vault = TestVault::target().await;
    let mut s = settings_for(&vault);
    s.max_batch_bytes = 4096;
    let c = client_with(&vault, s);
    let pts: Vec<Vec<u8>> = (0..60).map(|i| vec![i as u8; 300]).collect();
    let cts = c.encrypt_batch("bytes", &items(&pts)).await.unwrap();
    // 300 bytes -> 400 base64 chars per item: at most 9 per 4 KiB request.
    assert!(c.requests_sent() >= 7, "{}", c.requests_sent());
    let dec_in: Vec<DecryptInput> = cts
        .iter()
        .map(|c| DecryptInput::new(c.as_ref().unwrap()))
        .collect();
    let dec = c.decrypt_batch("bytes", &dec_in).await.unwrap();
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_is_per_item() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let a = c.encrypt("pf", b"first", None).await.unwrap();
    let b = c.encrypt("pf", b"third", None).await.unwrap();
    let input = [
        DecryptInput::new(&a),
        DecryptInput::new("vault:v1:AAAA"),
        DecryptInput::new(&b),
        DecryptInput::new("not a ciphertext"),
    ];
    let r = c.decrypt_batch("pf", &input).await.unwrap();
    assert_eq!(r[0].as_ref().unwrap(), b"first");
    let e1 = r[1].as_ref().unwrap_err();
    assert!(e1.is_invalid_input());
    assert!(e1.message.contains("invalid ciphertext"), "{}", e1.message);
    assert_eq!(r[2].as_ref().unwrap(), b"third");
    assert!(r[3].as_ref().unwrap_err().message.contains("no prefix"));
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_items_failing_still_gives_item_errors() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    c.encrypt("allbad", b"x", None).await.unwrap();
    let input = [DecryptInput::new("vault:v1:AAAA"), DecryptInput::new("abc")];
    let r = c.decrypt_batch("allbad", &input).await.unwrap();
    assert!(r.iter().all(|x| x.as_ref().unwrap_err().is_invalid_input()));
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_gives_item_error() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    let ct = c.encrypt("key-a", b"secret", None).await.unwrap();
    c.encrypt("key-b", b"other", None).await.unwrap();
    let r = c
        .decrypt_batch("key-b", &[DecryptInput::new(&ct)])
        .await
        .unwrap();
    let e = r[0].as_ref().unwrap_err();
    assert!(e.is_invalid_input());
    assert!(
        e.message.contains("message authentication failed"),
        "{}",
        e.message
    );
    // the single-item form reports an InvalidRequest naming mount and key, at once
    let sent = c.requests_sent();
    let e = c.decrypt("key-b", &ct, None).await.unwrap_err();
    assert!(matches!(e, VaultError::InvalidRequest { .. }), "{e:?}");
    assert_eq!(c.requests_sent(), sent + 1);
    let msg = e.to_string();
    assert!(
        msg.contains("key-b") && msg.contains(vault.mount()),
        "{msg}"
    );
    assert!(!msg.contains(vault.root_token()));
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_then_unsealed_mid_retry() {
    let server = start_vault_dev().await;
    let c = client_for(&server);
    server.faults().seal();
    let faults = server.faults().clone();
    let unsealer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        faults.unseal();
    });
    let before = server_requests(&server);
    let ct = c.encrypt("sealed", b"x", None).await.unwrap();
    unsealer.await.unwrap();
    assert!(c.requests_sent() >= 2, "{}", c.requests_sent());
    assert!(server_requests(&server) - before >= 2);
    assert_eq!(c.decrypt("sealed", &ct, None).await.unwrap(), b"x");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_too_long_is_unavailable() {
    let server = start_vault_dev().await;
    let mut s = settings_for(&server);
    s.max_retries = 2;
    let c = client_with(&server, s);
    server.faults().seal();
    let e = c.encrypt("sealed2", b"x", None).await.unwrap_err();
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("sealed") && msg.contains("sealed2"), "{msg}");
    assert_eq!(c.requests_sent(), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_honours_retry_after() {
    let server = start_vault_dev().await;
    let mut s = settings_for(&server);
    s.retry_max_backoff = Duration::from_secs(5);
    let c = client_with(&server, s);
    server
        .faults()
        .rate_limit_next(1, Some(Duration::from_secs(1)));
    let t = Instant::now();
    c.encrypt("rl", b"x", None).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(c.requests_sent(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_are_retried() {
    let server = start_vault_dev().await;
    let c = client_for(&server);
    server.faults().fail_next(2, 500);
    let before = server_requests(&server);
    let pts = vec![b"a".to_vec(), b"b".to_vec()];
    let r = c.encrypt_batch("flaky", &items(&pts)).await.unwrap();
    assert!(r.iter().all(Result::is_ok));
    assert_eq!(c.requests_sent(), 3);
    assert_eq!(server_requests(&server) - before, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let server = start_vault_dev().await;
    for status in [400u16, 403, 404] {
        let c = client_for(&server);
        server.faults().fail_next(1, status);
        let before = server_requests(&server);
        let e = c.encrypt("noretry", b"x", None).await.unwrap_err();
        assert!(!e.is_retryable(), "{status}: {e:?}");
        assert_eq!(c.requests_sent(), 1, "{status}");
        assert_eq!(server_requests(&server) - before, 1, "{status}");
        if status == 403 {
            assert!(matches!(e, VaultError::PermissionDenied { .. }), "{e:?}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_not_found_vs_key_not_found() {
    let vault = TestVault::target().await;
    let mut s = settings_for(&vault);
    s.mount = "no/such/mount".into();
    let c = client_with(&vault, s);
    let e = c.encrypt("k", b"x", None).await.unwrap_err();
    assert!(
        matches!(e, VaultError::MountNotFound { ref mount } if mount == "no/such/mount"),
        "{e:?}"
    );
    assert_eq!(c.requests_sent(), 1);

    let c = client_for(&vault);
    let e = c
        .decrypt(
            "never-created",
            "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, VaultError::KeyNotFound { ref key, .. } if key == "never-created"),
        "{e:?}"
    );
    let e = c
        .decrypt_batch("never-created", &[DecryptInput::new("vault:v1:AAAA")])
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::KeyNotFound { .. }), "{e:?}");
    assert_eq!(c.requests_sent(), 2);
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_mount_with_slash() {
    let vault = TestVault::target().await;
    let team = unique_name("team");
    vault.mount_transit(&format!("{team}/transit"), None).await;
    let mut s = settings_for(&vault);
    s.mount = format!("/{team}/transit/");
    let c = client_with(&vault, s);
    assert_eq!(c.mount(), format!("{team}/transit"));
    let ct = c.encrypt("k", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("k", &ct, None).await.unwrap(), b"x");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_timeout_is_unavailable() {
    let server = start_vault_dev().await;
    let mut s = settings_for(&server);
    s.request_timeout = Duration::from_millis(200);
    s.max_retries = 2;
    let c = client_with(&server, s);
    server.faults().set_latency(Duration::from_millis(1500));
    let t = Instant::now();
    let e = c.encrypt("slow", b"x", None).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("request_timeout"), "{e}");
    assert_eq!(c.requests_sent(), 3);
    assert!(took < Duration::from_secs(3), "{took:?}");
    server.faults().clear();
    c.encrypt("slow", b"x", None).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_is_permission_denied() {
    let vault = TestVault::target().await;
    let bad = VaultToken::new("hvs.definitely-not-valid-token".into());
    let c = VaultClient::with_token(&settings_for(&vault), bad).unwrap();
    let e = c.encrypt("k", b"x", None).await.unwrap_err();
    let path = format!("{}/encrypt/k", vault.mount());
    assert!(
        matches!(e, VaultError::PermissionDenied { path: ref p, .. } if *p == path),
        "{e:?}"
    );
    let e = c
        .decrypt_batch("k", &[DecryptInput::new("vault:v1:AAAA")])
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::PermissionDenied { .. }), "{e:?}");
    // not retried
    assert_eq!(c.requests_sent(), 2);
    assert!(!format!("{e} {e:?}").contains("definitely-not-valid"));
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_token_is_permission_denied() {
    let Some(vault) = TestVault::external().await else {
        return skipped(
            "limited_token_is_permission_denied",
            "vault-dev has no ACL policies (needs KAFKA_TRANSIT_TEST_VAULT_ADDR)",
        );
    };
    let mount = vault.mount();
    create_key(&vault, mount, "allowed", json!({})).await;
    create_key(&vault, mount, "other", json!({})).await;
    let policy = vault
        .create_policy(&format!(
            r#"path "{mount}/encrypt/allowed" {{ capabilities = ["update"] }}"#
        ))
        .await;
    let var = unique_name("KT_TEST_LIMITED_TOKEN");
    std::env::set_var(&var, vault.create_token(&[&policy]).await);
    let mut s = settings_for(&vault);
    s.token_env = Some(var);
    // lookup-self is allowed by the `default` policy
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("allowed", b"x", None).await.unwrap();

    let before = c.requests_sent();
    let denied = [
        c.encrypt("other", b"x", None).await.unwrap_err(),
        c.decrypt("allowed", &ct, None).await.unwrap_err(),
        c.decrypt_batch("allowed", &[DecryptInput::new(&ct)])
            .await
            .unwrap_err(),
        c.generate_data_key("allowed", None).await.unwrap_err(),
    ];
    let paths = [
        "encrypt/other",
        "decrypt/allowed",
        "decrypt/allowed",
        "datakey/plaintext/allowed",
    ];
    for (e, path) in denied.iter().zip(paths) {
        let want = format!("{mount}/{path}");
        assert!(
            matches!(e, VaultError::PermissionDenied { path: p, .. } if *p == want),
            "{e:?}"
        );
        assert!(e.to_string().contains(&want), "{e}");
        assert!(!e.is_retryable());
    }
    // one request each: a 403 is not retried
    assert_eq!(c.requests_sent() - before, 4);
    vault.shutdown().await;
}

fn approle_settings(vault: &TestVault, role_id: &str, secret_id: &str) -> VaultSettings {
    let role_var = unique_name("KT_TEST_ROLE_ID");
    let secret_var = unique_name("KT_TEST_SECRET_ID");
    std::env::set_var(&role_var, role_id);
    std::env::set_var(&secret_var, secret_id);
    let mut s = settings_for(vault);
    s.token_env = None;
    s.approle = Some(AppRoleSettings {
        mount: "approle".into(),
        role_id_env: Some(role_var),
        role_id_file: None,
        secret_id_env: Some(secret_var),
        secret_id_file: None,
    });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_and_renewal() {
    let (vault, role_id, secret_id) =
        TestVault::target_with_approle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let c = VaultClient::connect(&approle_settings(&vault, &role_id, &secret_id))
        .await
        .unwrap();
    assert_eq!(c.auth_stats().logins, 1);
    c.encrypt("ar", b"x", None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ct = c.encrypt("ar", b"still works", None).await.unwrap();
    assert_eq!(c.decrypt("ar", &ct, None).await.unwrap(), b"still works");
    let st = c.auth_stats();
    assert!(st.renewals >= 1 || st.logins >= 2, "{st:?}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_relogin_when_renewal_refused() {
    let (vault, role_id, secret_id) =
        TestVault::target_with_approle(Duration::from_secs(2), Duration::from_secs(3)).await;
    let c = VaultClient::connect(&approle_settings(&vault, &role_id, &secret_id))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let ct = c.encrypt("ar2", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("ar2", &ct, None).await.unwrap(), b"x");
    let st = c.auth_stats();
    assert!(st.logins >= 2, "{st:?}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_bad_secret_is_auth_error() {
    let (vault, role_id, _) =
        TestVault::target_with_approle(Duration::from_secs(60), Duration::from_secs(120)).await;
    let e = VaultClient::connect(&approle_settings(&vault, &role_id, "wrong-secret"))
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("approle"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_login() {
    let (vault, role) =
        TestVault::target_with_jwt(Duration::from_secs(60), Duration::from_secs(120)).await;
    let c = role.connect(&vault).await.unwrap();
    assert_eq!(c.auth_stats().logins, 1);
    let ct = c.encrypt("jwt", b"workload identity", None).await.unwrap();
    assert_eq!(
        c.decrypt("jwt", &ct, None).await.unwrap(),
        b"workload identity"
    );
    vault.shutdown().await;
}

/// The Kubernetes method's wire format (`role` and `jwt` posted to
/// `auth/<mount>/login`) against a jwt method standing in for it: OpenBao's
/// kubernetes method needs a Kubernetes API server to review the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_posts_role_and_service_account_jwt() {
    let (vault, role) =
        TestVault::target_with_jwt(Duration::from_secs(60), Duration::from_secs(120)).await;
    let mut s = role.settings(&vault);
    s.kubernetes = s.jwt.take();
    let c = VaultClient::connect(&s).await.unwrap();
    assert_eq!(c.auth_stats().logins, 1);
    c.encrypt("k8s", b"x", None).await.unwrap();
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_refused_is_auth_error_naming_the_role_not_the_jwt() {
    let (vault, role) =
        TestVault::target_with_jwt(Duration::from_secs(60), Duration::from_secs(120)).await;
    let now = vault_dev::unix_now();
    for (claims, server_says) in [
        (json!({ "aud": ["someone-else"] }), "audience"),
        (json!({ "team": "ops" }), "claim \"team\""),
        (json!({ "exp": now - 600 }), "expired"),
    ] {
        let jwt = role.jwt_with(claims);
        role.write_jwt(&jwt);
        let e = role.connect(&vault).await.unwrap_err();
        assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("vault.jwt.role") && msg.contains(server_says),
            "{msg}"
        );
        let signature = jwt.rsplit('.').next().unwrap();
        assert!(!msg.contains(signature) && !format!("{e:?}").contains(signature));
    }
    // Signed with a key the method does not trust.
    let stranger = vault_dev::JwtSigner::generate().unwrap();
    role.write_jwt(&stranger.sign(&json!({ "sub": "x", "aud": "kafka-transit" })));
    let e = role.connect(&vault).await.unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    vault.shutdown().await;
}

/// Records keep flowing while the token expires (3 s TTL, 4 s max TTL: renewal is
/// capped, then the client logs in again) and the JWT file is rotated under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_relogin_while_records_flow() {
    let (vault, role) =
        TestVault::target_with_jwt(Duration::from_secs(3), Duration::from_secs(4)).await;
    let c = role.connect(&vault).await.unwrap();
    let started = Instant::now();
    let mut sent = 0u32;
    let mut rotated = false;
    while started.elapsed() < Duration::from_secs(11) {
        let pt = format!("record {sent}");
        let ct = c.encrypt("flow", pt.as_bytes(), None).await.unwrap();
        assert_eq!(c.decrypt("flow", &ct, None).await.unwrap(), pt.as_bytes());
        sent += 1;
        if !rotated && started.elapsed() > Duration::from_secs(5) {
            role.write_jwt(&role.jwt_with(json!({ "sub": "rotated" })));
            rotated = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = c.auth_stats();
    assert!(
        st.logins >= 3,
        "two expiries in 11 s need two re-logins: {st:?}"
    );
    assert!(sent >= 20, "{sent}");
    vault.shutdown().await;
}

/// Each login reads the file again: a bad JWT there stops re-logins until a good one
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_file_is_read_again_at_every_login() {
    let (vault, role) =
        TestVault::target_with_jwt(Duration::from_secs(2), Duration::from_secs(3)).await;
    let c = role.connect(&vault).await.unwrap();
    role.write_jwt(&role.jwt_with(json!({ "team": "ops" })));
    let until = |ok: bool| {
        let c = &c;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.encrypt("reread", b"x", None).await.is_ok() != ok {
                assert!(Instant::now() < deadline, "encrypt never became ok={ok}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The token expires and the refused re-logins cannot replace it.
    until(false).await;
    assert_eq!(c.auth_stats().logins, 1);
    role.write_jwt(&role.jwt());
    until(true).await;
    assert!(c.auth_stats().logins >= 2, "{:?}", c.auth_stats());
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_custom_ca() {
    let vault = TestVault::target_tls().await;
    assert!(vault.url().starts_with("https://"), "{}", vault.url());
    let s = settings_for(&vault);
    assert!(s.ca_cert.is_some());
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("tls", b"over tls", None).await.unwrap();
    assert_eq!(c.decrypt("tls", &ct, None).await.unwrap(), b"over tls");

    // Without the CA the server is not trusted.
    let mut s = settings_for(&vault);
    s.ca_cert = None;
    s.max_retries = 0;
    let e = client_with(&vault, s)
        .encrypt("tls", b"x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");

    // A CA file that is not PEM is a clear configuration error.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut s = settings_for(&vault);
    s.ca_cert = Some(bad);
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(e.to_string().contains("vault.ca_cert"), "{e}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_setting_is_accepted() {
    let server = start_vault_dev().await;
    let mut s = settings_for(&server);
    s.namespace = Some("team-a/".into());
    s.validate().unwrap();
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("ns", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("ns", &ct, None).await.unwrap(), b"x");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_isolates_keys() {
    let Some(vault) = TestVault::external().await else {
        return skipped(
            "namespace_isolates_keys",
            "vault-dev has no namespaces (needs KAFKA_TRANSIT_TEST_VAULT_ADDR)",
        );
    };
    // The same mount path inside a new namespace.
    let ns = vault.create_namespace().await;
    let mount = vault.mount();
    vault.mount_transit(mount, Some(&ns)).await;
    let mut s = settings_for(&vault);
    s.namespace = Some(format!("{ns}/"));
    s.validate().unwrap();
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("ns-key", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("ns-key", &ct, None).await.unwrap(), b"x");

    // The key is in the namespace, and only there.
    let key_path = format!("{mount}/keys/ns-key");
    let (status, body) = raw_request_in(&vault, Some(&ns), Method::GET, &key_path, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw_request(&vault, Method::GET, &key_path, None).await;
    assert_eq!(status, 404, "{body}");
    let e = client_for(&vault)
        .decrypt("ns-key", &ct, None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::KeyNotFound { .. }), "{e:?}");

    // A namespace that does not exist is a configuration error, not a missing key.
    s.namespace = Some(unique_name("kt_no_such_ns"));
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("vault.namespace"), "{e}");
    let e = client_with(&vault, s)
        .encrypt("ns-key", b"x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_file() {
    let vault = TestVault::target().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("  {}\n", vault.root_token())).unwrap();
    let mut s = settings_for(&vault);
    s.token_env = None;
    s.token_file = Some(path.clone());
    let c = VaultClient::connect(&s).await.unwrap();
    c.encrypt("tf", b"x", None).await.unwrap();

    s.token_file = Some(dir.path().join("missing"));
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("missing"), "{e}");
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_env() {
    let vault = TestVault::target().await;
    let mut s = settings_for(&vault);
    let c = VaultClient::connect(&s).await.unwrap();
    c.encrypt("te", b"x", None).await.unwrap();

    let unset = unique_name("KT_TEST_UNSET");
    s.token_env = Some(unset.clone());
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains(&unset) && e.to_string().contains("not set"));

    let bad = unique_name("KT_TEST_BAD_TOKEN");
    std::env::set_var(&bad, "hvs.definitely-not-valid-token");
    s.token_env = Some(bad);
    s.max_retries = 0;
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(!e.to_string().contains("definitely-not-valid"), "{e}");
    assert!(!format!("{e:?}").contains("definitely-not-valid"));
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datakey_plaintext_decrypts_to_same_bytes() {
    let vault = TestVault::target().await;
    let c = client_for(&vault);
    // datakey does not create missing keys (as in Vault)
    let e = c.generate_data_key("dk", None).await.unwrap_err();
    assert!(matches!(e, VaultError::KeyNotFound { .. }), "{e:?}");
    create_key(&vault, vault.mount(), "dk", json!({})).await;
    let dk = c.generate_data_key("dk", None).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(dk.ciphertext.starts_with("vault:v1:"));
    assert_eq!(dk.key_version, 1);
    assert!(!format!("{dk:?}").contains(&format!("{:?}", &dk.plaintext[..4])));
    let back = c.decrypt("dk", &dk.ciphertext, None).await.unwrap();
    assert_eq!(&back[..], &dk.plaintext[..]);
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_key_with_context() {
    let vault = TestVault::target().await;
    create_key(&vault, vault.mount(), "derived", json!({"derived": true})).await;
    let c = client_for(&vault);
    let ct = c.encrypt("derived", b"x", Some(b"tenant-1")).await.unwrap();
    assert_eq!(
        c.decrypt("derived", &ct, Some(b"tenant-1")).await.unwrap(),
        b"x"
    );
    let r = c
        .decrypt_batch(
            "derived",
            &[DecryptInput {
                ciphertext: &ct,
                context: Some(b"tenant-2"),
                associated_data: None,
            }],
        )
        .await
        .unwrap();
    assert!(r[0].as_ref().unwrap_err().is_invalid_input());
    vault.shutdown().await;
}

/// One request as [`start_tiny_server`] received it.
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// A tiny HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies) whose
/// `respond` writes each whole response; returns its `http://host:port`.
async fn start_tiny_server(respond: impl Fn(Seen) -> Answer + Send + Sync + 'static) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    // read one request: headers, then Content-Length bytes
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split_whitespace();
                    let method = first.next().unwrap_or("GET").to_string();
                    let path = first.next().unwrap_or("/").to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            Some((k.trim().to_string(), v.trim().to_string()))
                        })
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    let resp = respond(Seen {
                        method,
                        path,
                        headers,
                        body,
                    })
                    .await;
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn redirect_to(location: &str) -> String {
    format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
}

/// A server standing where vault.address points (a load balancer, a standby whose
/// `api_addr` is the balancer): it redirects `/v1/...` to `/lb/v1/...` on itself, and
/// forwards `/lb/...` to `vault` with the token it received. Counts redirects.
async fn start_same_origin_redirector(vault: &TestVault) -> (String, Arc<AtomicU64>) {
    let upstream = vault.url().trim_end_matches('/').to_string();
    let redirects = Arc::new(AtomicU64::new(0));
    let counted = redirects.clone();
    let http = reqwest::Client::new();
    let address = start_tiny_server(move |seen| {
        let (upstream, counted, http) = (upstream.clone(), counted.clone(), http.clone());
        Box::pin(async move {
            let Some(path) = seen.path.strip_prefix("/lb") else {
                counted.fetch_add(1, Ordering::Relaxed);
                return redirect_to(&format!("/lb{}", seen.path));
            };
            let mut rq = http.request(
                Method::from_bytes(seen.method.as_bytes()).unwrap(),
                format!("{upstream}{path}"),
            );
            if let Some(token) = seen.header("x-vault-token") {
                rq = rq.header("x-vault-token", token);
            }
            let resp = rq.body(seen.body).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            format!(
                "HTTP/1.1 {status} Forwarded\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        })
    })
    .await;
    (address, redirects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_one_same_origin_redirect_with_body() {
    let vault = TestVault::target().await;
    let (address, redirects) = start_same_origin_redirector(&vault).await;
    let mut s = settings_for(&vault);
    s.address = address;
    let c = client_with(&vault, s);
    let pts = vec![b"one".to_vec(), b"two".to_vec()];
    let cts = c.encrypt_batch("redir", &items(&pts)).await.unwrap();
    assert_eq!(redirects.load(Ordering::Relaxed), 1);
    assert_eq!(c.requests_sent(), 2);
    let ct = cts[1].as_ref().unwrap();
    assert_eq!(c.decrypt("redir", ct, None).await.unwrap(), b"two");

    // A redirect loop (the same path again) is not followed twice.
    let loop_hits = Arc::new(AtomicU64::new(0));
    let hits = loop_hits.clone();
    let looping = start_tiny_server(move |seen| {
        hits.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { redirect_to(&seen.path) })
    })
    .await;
    let mut s = settings_for(&vault);
    s.address = looping;
    let e = client_with(&vault, s)
        .encrypt("redir", b"x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Protocol { .. }), "{e:?}");
    assert!(e.to_string().contains("more than once"), "{e}");
    assert_eq!(loop_hits.load(Ordering::Relaxed), 2);
    vault.shutdown().await;
}

/// Issue 21: a 307 to another host must not take the token there. A standby whose
/// `api_addr` is another node, or anyone who can answer for vault.address, could
/// otherwise collect the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_does_not_send_the_token() {
    let vault = TestVault::target().await;
    let elsewhere_hits = Arc::new(AtomicU64::new(0));
    let tokens_seen = Arc::new(AtomicU64::new(0));
    let (hits, tokens) = (elsewhere_hits.clone(), tokens_seen.clone());
    let elsewhere = start_tiny_server(move |seen| {
        hits.fetch_add(1, Ordering::Relaxed);
        if seen.header("x-vault-token").is_some() {
            tokens.fetch_add(1, Ordering::Relaxed);
        }
        // What Vault would answer, so that a client that follows sees success.
        let body = r#"{"data":{"ciphertext":"vault:v1:AAAA"}}"#;
        Box::pin(async move {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        })
    })
    .await;
    let target = elsewhere.clone();
    let redirector = start_tiny_server(move |seen| {
        let location = format!("{target}{}", seen.path);
        Box::pin(async move { redirect_to(&location) })
    })
    .await;
    let mut s = settings_for(&vault);
    s.address = redirector;
    let token = "hvs.redirected-token-value";
    let c = VaultClient::with_token(&s, VaultToken::new(token.into())).unwrap();
    let result = c.encrypt("redir", b"x", None).await;
    assert_eq!(
        tokens_seen.load(Ordering::Relaxed),
        0,
        "the token reached {elsewhere}"
    );
    assert_eq!(elsewhere_hits.load(Ordering::Relaxed), 0);
    let e = result.unwrap_err();
    let msg = e.to_string();
    let host_port = elsewhere.trim_start_matches("http://");
    assert!(
        msg.contains("another host") && msg.contains(host_port) && msg.contains("vault.address"),
        "{msg}"
    );
    assert!(
        !msg.contains(token) && !format!("{e:?}").contains(token),
        "{msg}"
    );
    assert_eq!(c.requests_sent(), 1);
    vault.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable_and_bounded() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let var = unique_name("KT_TEST_TOKEN_REFUSED");
    std::env::set_var(&var, "hvs.some-token-value");
    let mut s = VaultSettings::for_token(format!("http://{addr}"), var);
    s.max_retries = 3;
    s.retry_initial_backoff = Duration::from_millis(10);
    s.retry_max_backoff = Duration::from_millis(50);
    let t = Instant::now();
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(!e.to_string().contains("some-token-value"));
}

/// A listener that accepts connections and never answers: a blackholed Vault.
async fn start_blackhole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}")
}

/// Issue 21: when no attempt got any HTTP answer (refused, blackholed), the error says
/// "Vault unreachable", so the pipeline can tell operators so; a failure Vault answered
/// (sealed) does not say it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_without_any_answer_says_unreachable() {
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    };
    let blackhole = start_blackhole().await;
    for (address, why) in [(refused, "cannot connect"), (blackhole, "request_timeout")] {
        let mut s = VaultSettings::for_token(address, "UNUSED");
        s.request_timeout = Duration::from_millis(200);
        s.max_retries = 2;
        s.retry_initial_backoff = Duration::from_millis(10);
        s.retry_max_backoff = Duration::from_millis(20);
        let c = VaultClient::with_token(&s, VaultToken::new("hvs.t".into())).unwrap();
        let e = c.encrypt("k", b"x", None).await.unwrap_err();
        assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
        assert!(e.is_unreachable() && e.is_retryable(), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("Vault unreachable") && msg.contains(why),
            "{msg}"
        );
        assert!(msg.contains("gave up after 3 attempts"), "{msg}");
        assert_eq!(c.requests_sent(), 3);
    }

    let vault = TestVault::target().await;
    let Some(dev) = vault.dev() else {
        skipped(
            "giving_up_without_any_answer_says_unreachable (sealed part)",
            "it needs vault-dev's seal fault",
        );
        return vault.shutdown().await;
    };
    let mut s = settings_for(&vault);
    s.max_retries = 1;
    let c = client_with(&vault, s);
    dev.faults().seal();
    let e = c.encrypt("k", b"x", None).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");
    assert!(!e.is_unreachable(), "{e:?}");
    assert!(
        msg.contains("sealed") && !msg.contains("unreachable"),
        "{msg}"
    );
    vault.shutdown().await;
}

/// The value of one sample (`name{labels}`) in a scrape of `client`'s metrics.
fn sample(client: &VaultClient, series: &str) -> Option<f64> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("kafka_transit");
    client.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Issue 21: the pipeline bounds its wait on Vault with a timeout around the client's
/// futures. Dropping one mid-flight must leave the client whole: the next call succeeds,
/// the token and its renewal live on, and each abandoned request is counted once, as
/// `cancelled` (before, it vanished from the counts and from the latency histogram).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_calls_mid_flight_leaves_the_client_whole() {
    let (vault, role_id, secret_id) =
        TestVault::target_with_approle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let Some(dev) = vault.dev() else {
        skipped(
            "dropping_calls_mid_flight_leaves_the_client_whole",
            "it needs vault-dev's latency fault",
        );
        return vault.shutdown().await;
    };
    let mut s = approle_settings(&vault, &role_id, &secret_id);
    s.max_batch_items = 2;
    let c = VaultClient::connect(&s).await.unwrap();
    let pts: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 8]).collect();

    dev.faults().set_latency(Duration::from_secs(2));
    let t = Instant::now();
    let before = c.requests_sent();
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        c.encrypt_batch("cancel", &items(&pts)),
    )
    .await;
    assert!(cut.is_err(), "the batch should still be waiting on Vault");
    // Five chunks of two, four in flight at once.
    assert_eq!(c.requests_sent() - before, 4);
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        c.generate_data_key("cancel", None),
    )
    .await;
    assert!(
        cut.is_err(),
        "the data key should still be waiting on Vault"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    dev.faults().clear();

    let cts: Vec<String> = c
        .encrypt_batch("cancel", &items(&pts))
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let dec_in: Vec<DecryptInput> = cts.iter().map(|c| DecryptInput::new(c)).collect();
    let dec = c.decrypt_batch("cancel", &dec_in).await.unwrap();
    for (d, p) in dec.iter().zip(&pts) {
        assert_eq!(d.as_ref().unwrap(), p);
    }
    let requests = "kafka_transit_vault_requests_total";
    assert_eq!(
        sample(
            &c,
            &format!("{requests}{{operation=\"encrypt\",outcome=\"cancelled\"}}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &c,
            &format!("{requests}{{operation=\"datakey\",outcome=\"cancelled\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &c,
            &format!("{requests}{{operation=\"encrypt\",outcome=\"success\"}}")
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &c,
            "kafka_transit_vault_request_duration_seconds_count{operation=\"encrypt\"}"
        ),
        Some(9.0)
    );

    // The token outlives two of its TTLs: the renewal task kept it alive.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ct = c.encrypt("cancel", b"later", None).await.unwrap();
    assert_eq!(c.decrypt("cancel", &ct, None).await.unwrap(), b"later");
    let st = c.auth_stats();
    assert!(st.renewals >= 1 || st.logins >= 2, "{st:?}");
    vault.shutdown().await;
}
