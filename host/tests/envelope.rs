//! Envelope encryption against vault-dev: data keys come from Vault, are cached and
//! retired, and opening unwraps each data key once.

mod support;

use std::time::Duration;

use kafka_transit::envelope::{parse, DataKeyPolicy, EnvelopeError, Envelopes};

fn records(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut value = format!("record {i} ").into_bytes();
            value.resize(size, b'.');
            value
        })
        .collect()
}

async fn seal_all(envelopes: &Envelopes, key: &str, values: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut sealed = Vec::with_capacity(values.len());
    for batch in values.chunks(500) {
        let items: Vec<(&[u8], &[u8])> = batch.iter().map(|v| (v.as_slice(), &b""[..])).collect();
        sealed.extend(envelopes.seal(key, None, &items).await.unwrap());
    }
    sealed
}

#[tokio::test]
async fn a_hundred_thousand_records_cost_two_vault_requests() {
    let server = support::start_vault().await;
    support::create_key(&server, "transit", "stream", serde_json::json!({})).await;
    let before = server.stats().requests;
    let envelopes = Envelopes::new(support::client_for(&server), DataKeyPolicy::default());

    let values = records(100_000, 1024);
    let sealed = seal_all(&envelopes, "stream", &values).await;
    assert_eq!(
        server.stats().requests - before,
        1,
        "one data key for the whole stream"
    );

    for (batch, originals) in sealed.chunks(500).zip(values.chunks(500)) {
        let items: Vec<(&[u8], &[u8])> = batch.iter().map(|v| (v.as_slice(), &b""[..])).collect();
        let opened = envelopes
            .open("stream", None, &items, 8 << 20)
            .await
            .unwrap();
        for (opened, original) in opened.into_iter().zip(originals) {
            assert_eq!(&opened.unwrap(), original);
        }
    }
    let requests = server.stats().requests - before;
    assert!(
        requests <= 2,
        "{requests} Vault requests for 100,000 records sealed and opened"
    );
    println!("vault requests for 100,000 x 1 KiB sealed + opened: {requests}");
}

#[tokio::test]
async fn data_keys_are_retired_by_record_count_and_by_age() {
    let server = support::start_vault().await;
    support::create_key(&server, "transit", "k", serde_json::json!({})).await;
    let by_count = Envelopes::new(
        support::client_for(&server),
        DataKeyPolicy {
            max_records: 100,
            ..DataKeyPolicy::default()
        },
    );
    let sealed = seal_all(&by_count, "k", &records(1000, 16)).await;
    let wrapped: std::collections::HashSet<String> = sealed
        .iter()
        .map(|e| parse(e).unwrap().wrapped_key.to_string())
        .collect();
    assert_eq!(wrapped.len(), 10, "a new data key every 100 records");

    let by_age = Envelopes::new(
        support::client_for(&server),
        DataKeyPolicy {
            max_age: Duration::from_millis(200),
            ..DataKeyPolicy::default()
        },
    );
    let first = seal_all(&by_age, "k", &records(1, 16)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = seal_all(&by_age, "k", &records(1, 16)).await;
    assert_ne!(
        parse(&first[0]).unwrap().wrapped_key,
        parse(&second[0]).unwrap().wrapped_key
    );
}

#[tokio::test]
async fn misuse_gives_clear_per_record_errors_never_plaintext() {
    let server = support::start_vault().await;
    for key in ["right", "other"] {
        support::create_key(&server, "transit", key, serde_json::json!({})).await;
    }
    let envelopes = Envelopes::new(support::client_for(&server), DataKeyPolicy::default());
    let sealed = seal_all(&envelopes, "right", &records(1, 64))
        .await
        .remove(0);
    let other = seal_all(&envelopes, "other", &records(1, 64))
        .await
        .remove(0);

    // The wrapped key of an envelope sealed under "other", relabelled as "right".
    let relabelled = {
        let parsed = parse(&other).unwrap();
        let mut forged = vec![kafka_transit::envelope::FORMAT_VERSION];
        for field in [&b"right"[..], parsed.wrapped_key.as_bytes()] {
            forged.extend_from_slice(&(field.len() as u16).to_be_bytes());
            forged.extend_from_slice(field);
        }
        forged.extend_from_slice(&other[other.len() - (64 + 28)..]);
        forged
    };
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x80;
    let plaintext = br#"{"name":"Ada"}"#.to_vec();
    let truncated = sealed[..sealed.len() - 20].to_vec();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped tag bit", flipped),
        ("envelope of another key", other.clone()),
        ("relabelled wrapped key", relabelled),
        ("plaintext record", plaintext),
        ("truncated", truncated),
    ];
    let items: Vec<(&[u8], &[u8])> = cases
        .iter()
        .map(|(_, v)| (v.as_slice(), &b""[..]))
        .collect();
    let results = envelopes
        .open("right", None, &items, 1 << 20)
        .await
        .unwrap();
    for ((case, _), result) in cases.iter().zip(&results) {
        assert!(result.is_err(), "{case} was opened");
    }
    assert!(matches!(results[0], Err(EnvelopeError::Authentication)));
    assert!(matches!(results[1], Err(EnvelopeError::WrongKey { .. })));
    assert!(
        matches!(results[2], Err(EnvelopeError::Unwrap(_))),
        "{:?}",
        results[2]
    );
    assert!(matches!(results[3], Err(EnvelopeError::Malformed(_))));
    assert!(matches!(
        results[4],
        Err(EnvelopeError::Malformed(_)) | Err(EnvelopeError::Authentication)
    ));

    // A good envelope in the same batch still opens.
    let good = envelopes
        .open("right", None, &[(&sealed, b"")], 1 << 20)
        .await
        .unwrap();
    assert_eq!(good[0].as_ref().unwrap().len(), 64);
}
