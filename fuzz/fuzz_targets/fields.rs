//! The JSON field walker (guest/sdk/src/fields/): the span-preserving scanner and the
//! selection, with any pointer list and any document bytes.
//!
//! Input: configured pointers one per line, an empty line, then the document (no empty
//! line: the document alone, with the pointer `/ssn`).
//!
//! Oracles: no panic; the SDK accepts exactly the pointers RFC 6901 (plus `*`) allows; a
//! document `serde_json` reads is never taken for invalid JSON (which
//! `on_invalid_json = "pass"` would pass on in clear); the values selected are those an
//! independent walk over `serde_json`'s reading selects (duplicates included); encrypting
//! with a fake cipher changes no byte outside the selected values, and each plaintext is
//! its value without insignificant whitespace; decrypting restores the document byte for
//! byte (selected values minified).

#![no_main]

use kafka_transit_fuzz::json_model::{self, Json};
use kafka_transit_policy_sdk::fields::FieldsConfig;
use kafka_transit_policy_sdk::{Prepared, SourceRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pointers, doc): (Vec<String>, &[u8]) = match find(data, b"\n\n", 0) {
        Some(at) => (
            data[..at]
                .split(|&b| b == b'\n')
                .take(8)
                .map(|line| String::from_utf8_lossy(line).into_owned())
                .collect(),
            &data[at + 2..],
        ),
        None => (vec!["/ssn".to_string()], data),
    };
    let config = serde_json::json!({
        "key": "k",
        "fields": pointers,
        "on_invalid_json": "pass",
    });
    let model_pointers: Option<Vec<_>> = pointers.iter().map(|p| json_model::pointer(p)).collect();
    let config = match FieldsConfig::parse(&config.to_string()) {
        Ok(config) => {
            assert!(model_pointers.is_some(), "accepted pointers {pointers:?}");
            config
        }
        Err(_) => {
            assert!(
                pointers.is_empty() || model_pointers.is_none(),
                "refused pointers {pointers:?}"
            );
            return;
        }
    };
    let model_pointers = model_pointers.unwrap();
    let model = Json::read(doc);

    let (selected, items) = match config.plaintext_items(&mut record(doc)) {
        Prepared::Item((_, selected, items)) => (selected, items),
        // The scanner found no JSON, and `on_invalid_json = "pass"` passes it on as it is.
        Prepared::Forward => {
            assert!(
                model.is_none(),
                "JSON that serde_json reads would be passed on as invalid: {}",
                String::from_utf8_lossy(doc)
            );
            return;
        }
        // A wrong shape, or too deep.
        Prepared::Fail(_) => return,
    };
    let plaintexts: Vec<Vec<u8>> = items.into_iter().map(|item| item.plaintext).collect();
    let markers = fake_ciphertexts(doc, plaintexts.len());
    let encrypted = selected.with_ciphertexts(markers.clone());
    let gaps = split_at_markers(&encrypted, &markers);
    let squeezed = unchanged_outside(doc, &gaps, &plaintexts).unwrap_or_else(|| {
        panic!(
            "bytes outside the selected values changed:\n{}\n->\n{}",
            String::from_utf8_lossy(doc),
            String::from_utf8_lossy(&encrypted)
        )
    });

    if let Some(model) = &model {
        let paths = json_model::outermost(model, &model_pointers);
        assert_eq!(
            paths.len(),
            markers.len(),
            "selected {} values where a JSON reader finds {paths:?}",
            markers.len()
        );
        let after = Json::read(&encrypted).expect("still JSON");
        for ((path, marker), plaintext) in paths.iter().zip(&markers).zip(&plaintexts) {
            assert_eq!(
                after.at(path),
                Some(&Json::Str(marker.clone())),
                "at {path:?}"
            );
            assert_eq!(
                Json::read(plaintext).as_ref(),
                model.at(path),
                "at {path:?}"
            );
        }
    }

    let Prepared::Item((_, selected, items)) = config.ciphertext_items(&mut record(&encrypted))
    else {
        panic!(
            "the encrypted document is refused: {}",
            String::from_utf8_lossy(&encrypted)
        );
    };
    let found: Vec<&str> = items.iter().map(|item| item.ciphertext.as_str()).collect();
    assert_eq!(found, markers, "decryption selects what encryption wrote");
    let restored = selected
        .with_plaintexts(plaintexts.clone())
        .expect("each plaintext is one JSON value");
    let mut expected = gaps[0].to_vec();
    for (plaintext, gap) in plaintexts.iter().zip(&gaps[1..]) {
        expected.extend_from_slice(plaintext);
        expected.extend_from_slice(gap);
    }
    assert_eq!(restored, expected, "decryption puts the plaintexts back");
    if !squeezed {
        assert_eq!(restored, doc, "encrypt -> decrypt restores the document");
    }
});

fn record(value: &[u8]) -> SourceRecord {
    SourceRecord {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: Some(b"k".to_vec()),
        value: Some(value.to_vec()),
        headers: Vec::new(),
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + from)
}

/// One "ciphertext" per field, each a text the document does not contain: the fake
/// cipher is this table.
fn fake_ciphertexts(doc: &[u8], count: usize) -> Vec<String> {
    let tag = (0u32..)
        .map(|n| format!("fz{n}q"))
        .find(|tag| find(doc, tag.as_bytes(), 0).is_none())
        .unwrap();
    (0..count).map(|i| format!("vault:v1:{tag}{i}z")).collect()
}

/// The encrypted document around its quoted ciphertexts: count + 1 gaps, each
/// ciphertext found once, in order.
fn split_at_markers<'a>(encrypted: &'a [u8], markers: &[String]) -> Vec<&'a [u8]> {
    let mut gaps = Vec::new();
    let mut at = 0;
    for marker in markers {
        let quoted = format!("\"{marker}\"");
        let found = find(encrypted, quoted.as_bytes(), at).expect("each ciphertext is written");
        gaps.push(&encrypted[at..found]);
        at = found + quoted.len();
    }
    gaps.push(&encrypted[at..]);
    for marker in markers {
        assert_eq!(
            encrypted
                .windows(marker.len())
                .filter(|w| *w == marker.as_bytes())
                .count(),
            1,
            "each ciphertext is written once"
        );
    }
    gaps
}

/// Whether `doc` is gap, value, gap, ..., gap, where each value is its plaintext with
/// optional JSON whitespace between tokens; `Some(true)` if some was skipped.
fn unchanged_outside(doc: &[u8], gaps: &[&[u8]], plaintexts: &[Vec<u8>]) -> Option<bool> {
    let mut at = 0;
    let mut squeezed = false;
    for (i, gap) in gaps.iter().enumerate() {
        if !doc[at..].starts_with(gap) {
            return None;
        }
        at += gap.len();
        let Some(plaintext) = plaintexts.get(i) else {
            break;
        };
        let mut in_string = false;
        let mut escaped = false;
        for (n, &byte) in plaintext.iter().enumerate() {
            if !in_string && n > 0 {
                while doc.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
                    at += 1;
                    squeezed = true;
                }
            }
            if doc.get(at) != Some(&byte) {
                return None;
            }
            at += 1;
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if byte == b'"' {
                in_string = true;
            }
        }
    }
    (at == doc.len()).then_some(squeezed)
}
