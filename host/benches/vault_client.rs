//! Throughput of the Vault transit client against an in-process vault-dev on 127.0.0.1.
//!
//! `cargo bench -p kafka-transit --bench vault_client` (a plain binary, harness = false).
//! Measures single-item encrypt requests/s (sequential and 16 concurrent) and batch
//! encrypt/decrypt items/s (500 × 1 KiB per batch), after a warm-up.

use std::time::{Duration, Instant};

use kafka_transit::vault::{DecryptInput, EncryptInput, VaultClient, VaultSettings, VaultToken};

const SEQ_SINGLE: usize = 10_000;
const CONC_TASKS: usize = 16;
const CONC_PER_TASK: usize = 1_000;
const BATCH_ITEMS: usize = 500;
const ITEM_BYTES: usize = 1024;
const BATCHES: usize = 200;

struct Row {
    name: String,
    ops: usize,
    unit: &'static str,
    elapsed: Duration,
    bytes: usize,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let server = vault_dev::Server::start(vault_dev::ServerConfig::default())
        .await
        .expect("start vault-dev");
    let mut settings = VaultSettings::for_token(server.url(), "UNUSED_BENCH_TOKEN_ENV");
    settings.request_timeout = Duration::from_secs(30);
    let client =
        VaultClient::with_token(&settings, VaultToken::new(server.root_token().to_string()))
            .expect("client");
    let key = "bench";
    let small = vec![0x5au8; 64];
    let payloads: Vec<Vec<u8>> = (0..BATCH_ITEMS)
        .map(|i| vec![(i % 251) as u8; ITEM_BYTES])
        .collect();
    let inputs: Vec<EncryptInput> = payloads.iter().map(|p| EncryptInput::new(p)).collect();

    // Warm-up: key creation, connection pool, allocator.
    for _ in 0..200 {
        client
            .encrypt(key, &small, None)
            .await
            .expect("warm-up encrypt");
    }
    for _ in 0..3 {
        client
            .encrypt_batch(key, &inputs)
            .await
            .expect("warm-up batch");
    }

    let mut rows = Vec::new();

    // 1. sequential single-item encrypt
    let t = Instant::now();
    let mut last = String::new();
    for _ in 0..SEQ_SINGLE {
        last = client.encrypt(key, &small, None).await.expect("encrypt");
    }
    rows.push(Row {
        name: "encrypt single, sequential (64 B)".into(),
        ops: SEQ_SINGLE,
        unit: "req",
        elapsed: t.elapsed(),
        bytes: SEQ_SINGLE * small.len(),
    });

    // 2. sequential single-item decrypt
    let t = Instant::now();
    for _ in 0..SEQ_SINGLE {
        client.decrypt(key, &last, None).await.expect("decrypt");
    }
    rows.push(Row {
        name: "decrypt single, sequential (64 B)".into(),
        ops: SEQ_SINGLE,
        unit: "req",
        elapsed: t.elapsed(),
        bytes: SEQ_SINGLE * small.len(),
    });

    // 3. single-item encrypt, 16 concurrent tasks
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONC_TASKS {
        let c = client.clone();
        let pt = small.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..CONC_PER_TASK {
                c.encrypt(key, &pt, None).await.expect("encrypt");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    rows.push(Row {
        name: format!("encrypt single, {CONC_TASKS} concurrent (64 B)"),
        ops: CONC_TASKS * CONC_PER_TASK,
        unit: "req",
        elapsed: t.elapsed(),
        bytes: CONC_TASKS * CONC_PER_TASK * small.len(),
    });

    // 4. batch encrypt
    let t = Instant::now();
    let mut cts = Vec::new();
    for _ in 0..BATCHES {
        cts = client
            .encrypt_batch(key, &inputs)
            .await
            .expect("batch encrypt");
    }
    rows.push(Row {
        name: format!("encrypt batch {BATCH_ITEMS} x {ITEM_BYTES} B ({BATCHES} batches)"),
        ops: BATCHES * BATCH_ITEMS,
        unit: "item",
        elapsed: t.elapsed(),
        bytes: BATCHES * BATCH_ITEMS * ITEM_BYTES,
    });

    // 5. batch decrypt
    let cts: Vec<String> = cts.into_iter().map(|r| r.expect("item")).collect();
    let dec_inputs: Vec<DecryptInput> = cts.iter().map(|c| DecryptInput::new(c)).collect();
    let t = Instant::now();
    for _ in 0..BATCHES {
        let r = client
            .decrypt_batch(key, &dec_inputs)
            .await
            .expect("batch decrypt");
        assert_eq!(r.len(), BATCH_ITEMS);
    }
    rows.push(Row {
        name: format!("decrypt batch {BATCH_ITEMS} x {ITEM_BYTES} B ({BATCHES} batches)"),
        ops: BATCHES * BATCH_ITEMS,
        unit: "item",
        elapsed: t.elapsed(),
        bytes: BATCHES * BATCH_ITEMS * ITEM_BYTES,
    });

    println!();
    println!(
        "{:<44} {:>8} {:>10} {:>14} {:>10}",
        "vault client vs in-process vault-dev", "count", "time", "rate", "MiB/s"
    );
    println!("{}", "-".repeat(90));
    for r in &rows {
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{:<44} {:>8} {:>9.2}s {:>10.0} {}/s {:>10.2}",
            r.name,
            r.ops,
            secs,
            r.ops as f64 / secs,
            r.unit,
            r.bytes as f64 / secs / (1024.0 * 1024.0)
        );
    }
    println!("HTTP requests sent: {}", client.requests_sent());
    server.shutdown().await;
}
