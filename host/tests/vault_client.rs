//! The Vault transit client against an in-process vault-dev server.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_transit::vault::{
    AppRoleSettings, DecryptInput, EncryptInput, VaultClient, VaultError, VaultSettings,
};
use support::*;

fn items(plaintexts: &[Vec<u8>]) -> Vec<EncryptInput<'_>> {
    plaintexts.iter().map(|p| EncryptInput::new(p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_round_trip() {
    let server = start_vault().await;
    let c = client_for(&server);
    for pt in [&b"hello vault"[..], b"", &[0u8, 255, 10, 13][..]] {
        let ct = c.encrypt("orders", pt, None).await.unwrap();
        assert!(ct.starts_with("vault:v1:"), "{ct}");
        assert_eq!(c.decrypt("orders", &ct, None).await.unwrap(), pt);
    }
    assert_eq!(c.requests_sent(), 6);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_round_trip_rewrap_and_hmac() {
    let server = start_vault().await;
    let c = client_for(&server);
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
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batch_is_chunked_by_items() {
    let server = start_vault().await;
    let c = client_for(&server);
    let pts: Vec<Vec<u8>> = (0..25_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let before = server_requests(&server);
    let cts = c.encrypt_batch("big", &items(&pts)).await.unwrap();
    assert_eq!(cts.len(), 25_000);
    assert!(server_requests(&server) - before >= 3);
    assert_eq!(c.requests_sent(), 3);
    // results are in input order
    let dec_in: Vec<DecryptInput> = cts
        .iter()
        .map(|c| DecryptInput::new(c.as_ref().unwrap()))
        .collect();
    let dec = c.decrypt_batch("big", &dec_in).await.unwrap();
    for (i, d) in dec.iter().enumerate() {
        assert_eq!(d.as_ref().unwrap(), &(i as u32).to_be_bytes());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_chunked_by_bytes() {
    let server = start_vault().await;
    let mut s = settings_for(&server);
    s.max_batch_bytes = 4096;
    let c = client_with(&server, s);
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
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_is_per_item() {
    let server = start_vault().await;
    let c = client_for(&server);
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
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_items_failing_still_gives_item_errors() {
    let server = start_vault().await;
    let c = client_for(&server);
    c.encrypt("allbad", b"x", None).await.unwrap();
    let input = [DecryptInput::new("vault:v1:AAAA"), DecryptInput::new("abc")];
    let r = c.decrypt_batch("allbad", &input).await.unwrap();
    assert!(r.iter().all(|x| x.as_ref().unwrap_err().is_invalid_input()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_gives_item_error() {
    let server = start_vault().await;
    let c = client_for(&server);
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
    // the single-item form reports an InvalidRequest naming mount and key
    let e = c.decrypt("key-b", &ct, None).await.unwrap_err();
    assert!(matches!(e, VaultError::InvalidRequest { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("key-b") && msg.contains("transit"), "{msg}");
    assert!(!msg.contains(server.root_token()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_then_unsealed_mid_retry() {
    let server = start_vault().await;
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
    let server = start_vault().await;
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
    let server = start_vault().await;
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
    let server = start_vault().await;
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
    let server = start_vault().await;
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
    let server = start_vault().await;
    let mut s = settings_for(&server);
    s.mount = "no/such/mount".into();
    let c = client_with(&server, s);
    let e = c.encrypt("k", b"x", None).await.unwrap_err();
    assert!(
        matches!(e, VaultError::MountNotFound { ref mount } if mount == "no/such/mount"),
        "{e:?}"
    );

    let c = client_for(&server);
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
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_mount_with_slash() {
    let server = start_vault().await;
    let (status, body) = raw_request(
        &server,
        reqwest::Method::POST,
        "sys/mounts/team-a/transit",
        Some(serde_json::json!({"type": "transit"})),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let mut s = settings_for(&server);
    s.mount = "/team-a/transit/".into();
    let c = client_with(&server, s);
    assert_eq!(c.mount(), "team-a/transit");
    let ct = c.encrypt("k", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("k", &ct, None).await.unwrap(), b"x");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_timeout_is_unavailable() {
    let server = start_vault().await;
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

fn approle_settings(server: &RunningServer, role_id: &str, secret_id: &str) -> VaultSettings {
    let role_var = unique_name("KT_TEST_ROLE_ID");
    let secret_var = unique_name("KT_TEST_SECRET_ID");
    std::env::set_var(&role_var, role_id);
    std::env::set_var(&secret_var, secret_id);
    let mut s = settings_for(server);
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

fn approle_server_config(token_ttl: Duration, token_max_ttl: Duration) -> ServerConfig {
    ServerConfig {
        approles: vec![vault_dev::AppRole {
            role_id: "role-1".into(),
            secret_id: "secret-1".into(),
            token_ttl,
            token_max_ttl,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_and_renewal() {
    let server = start_vault_with(approle_server_config(
        Duration::from_secs(2),
        Duration::from_secs(60),
    ))
    .await;
    let c = VaultClient::connect(&approle_settings(&server, "role-1", "secret-1"))
        .await
        .unwrap();
    assert_eq!(c.auth_stats().logins, 1);
    c.encrypt("ar", b"x", None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ct = c.encrypt("ar", b"still works", None).await.unwrap();
    assert_eq!(c.decrypt("ar", &ct, None).await.unwrap(), b"still works");
    let st = c.auth_stats();
    assert!(st.renewals >= 1 || st.logins >= 2, "{st:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_relogin_when_renewal_refused() {
    let server = start_vault_with(approle_server_config(
        Duration::from_secs(2),
        Duration::from_secs(3),
    ))
    .await;
    let c = VaultClient::connect(&approle_settings(&server, "role-1", "secret-1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let ct = c.encrypt("ar2", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("ar2", &ct, None).await.unwrap(), b"x");
    let st = c.auth_stats();
    assert!(st.logins >= 2, "{st:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_bad_secret_is_auth_error() {
    let server = start_vault_with(approle_server_config(
        Duration::from_secs(60),
        Duration::from_secs(120),
    ))
    .await;
    let e = VaultClient::connect(&approle_settings(&server, "role-1", "wrong-secret"))
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("approle"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_custom_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let server = start_vault_with(ServerConfig {
        tls: Some(vault_dev::TlsFiles {
            cert: tls.cert_pem.clone(),
            key: tls.key_pem.clone(),
        }),
        ..Default::default()
    })
    .await;
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let mut s = settings_for(&server);
    s.ca_cert = Some(tls.ca_pem.clone());
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("tls", b"over tls", None).await.unwrap();
    assert_eq!(c.decrypt("tls", &ct, None).await.unwrap(), b"over tls");

    // Without the CA the server is not trusted.
    let mut s = settings_for(&server);
    s.max_retries = 0;
    let e = client_with(&server, s)
        .encrypt("tls", b"x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Unavailable { .. }), "{e:?}");

    // A CA file that is not PEM is a clear configuration error.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut s = settings_for(&server);
    s.ca_cert = Some(bad);
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(e.to_string().contains("vault.ca_cert"), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_is_configured() {
    let server = start_vault().await;
    let mut s = settings_for(&server);
    s.namespace = Some("team-a/".into());
    s.validate().unwrap();
    let c = VaultClient::connect(&s).await.unwrap();
    let ct = c.encrypt("ns", b"x", None).await.unwrap();
    assert_eq!(c.decrypt("ns", &ct, None).await.unwrap(), b"x");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_file() {
    let server = start_vault().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("  {}\n", server.root_token())).unwrap();
    let mut s = settings_for(&server);
    s.token_env = None;
    s.token_file = Some(path.clone());
    let c = VaultClient::connect(&s).await.unwrap();
    c.encrypt("tf", b"x", None).await.unwrap();

    s.token_file = Some(dir.path().join("missing"));
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("missing"), "{e}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_env() {
    let server = start_vault().await;
    let s = settings_for(&server);
    let c = VaultClient::connect(&s).await.unwrap();
    c.encrypt("te", b"x", None).await.unwrap();

    let unset = unique_name("KT_TEST_UNSET");
    let e = VaultClient::connect(&VaultSettings::for_token(server.url(), unset.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains(&unset) && e.to_string().contains("not set"));

    let bad = unique_name("KT_TEST_BAD_TOKEN");
    std::env::set_var(&bad, "hvs.definitely-not-valid-token");
    let mut s = VaultSettings::for_token(server.url(), bad);
    s.max_retries = 0;
    let e = VaultClient::connect(&s).await.unwrap_err();
    assert!(matches!(e, VaultError::Auth { .. }), "{e:?}");
    assert!(!e.to_string().contains("definitely-not-valid"), "{e}");
    assert!(!format!("{e:?}").contains("definitely-not-valid"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datakey_plaintext_decrypts_to_same_bytes() {
    let server = start_vault().await;
    let c = client_for(&server);
    // datakey does not create missing keys (as in Vault)
    let e = c.generate_data_key("dk", None).await.unwrap_err();
    assert!(matches!(e, VaultError::KeyNotFound { .. }), "{e:?}");
    create_key(&server, "transit", "dk", serde_json::json!({})).await;
    let dk = c.generate_data_key("dk", None).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(dk.ciphertext.starts_with("vault:v1:"));
    assert_eq!(dk.key_version, 1);
    assert!(!format!("{dk:?}").contains(&format!("{:?}", &dk.plaintext[..4])));
    let back = c.decrypt("dk", &dk.ciphertext, None).await.unwrap();
    assert_eq!(&back[..], &dk.plaintext[..]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_key_with_context() {
    let server = start_vault().await;
    create_key(
        &server,
        "transit",
        "derived",
        serde_json::json!({"derived": true}),
    )
    .await;
    let c = client_for(&server);
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
            }],
        )
        .await
        .unwrap();
    assert!(r[0].as_ref().unwrap_err().is_invalid_input());
    server.shutdown().await;
}

/// A tiny HTTP server that answers every request with a 307 to `target`.
async fn start_redirector(target: String) -> (String, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let h = h.clone();
            let target = target.clone();
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
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    h.fetch_add(1, Ordering::Relaxed);
                    let resp = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}{path}\r\nContent-Length: 0\r\n\r\n"
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_one_redirect_with_body() {
    let server = start_vault().await;
    let (redirector, hits) = start_redirector(server.url().trim_end_matches('/').to_string()).await;
    let mut s = settings_for(&server);
    s.address = redirector.clone();
    let c = client_with(&server, s);
    let pts = vec![b"one".to_vec(), b"two".to_vec()];
    let cts = c.encrypt_batch("redir", &items(&pts)).await.unwrap();
    assert_eq!(hits.load(Ordering::Relaxed), 1);
    assert_eq!(c.requests_sent(), 2);
    let ct = cts[1].as_ref().unwrap();
    assert_eq!(c.decrypt("redir", ct, None).await.unwrap(), b"two");

    // A redirect loop (redirector -> redirector) is not followed twice.
    let (loop_url, loop_hits) = start_redirector(redirector).await;
    let mut s = settings_for(&server);
    s.address = loop_url;
    let e = client_with(&server, s)
        .encrypt("redir", b"x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Protocol { .. }), "{e:?}");
    assert_eq!(loop_hits.load(Ordering::Relaxed), 1);
    server.shutdown().await;
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
