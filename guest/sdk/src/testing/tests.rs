use super::engine::{base64, AUTHENTICATION_FAILED, TOO_OLD};
use super::*;
use crate::{envelope, transit, Failure, OutputRecord, Prepared};

fn encrypt_item(plaintext: &str, context: Option<&str>) -> EncryptItem {
    EncryptItem {
        plaintext: plaintext.as_bytes().to_vec(),
        context: context.map(|c| c.as_bytes().to_vec()),
    }
}

fn decrypt_item(ciphertext: &str, context: Option<&str>) -> DecryptItem {
    DecryptItem {
        ciphertext: ciphertext.into(),
        context: context.map(|c| c.as_bytes().to_vec()),
    }
}

#[test]
fn ciphertexts_decrypt_only_under_their_key_and_context() {
    let host = Host::install();
    host.create_key("a");
    host.create_key("b");
    let items = [
        encrypt_item("secret", None),
        encrypt_item("secret", Some("t1")),
    ];
    let ciphertexts: Vec<String> = transit::encrypt("a", &items)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_ne!(
        ciphertexts[0], ciphertexts[1],
        "a fresh ciphertext each time"
    );
    for ciphertext in &ciphertexts {
        assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
        assert!(!ciphertext.contains("secret"));
    }

    let results = transit::decrypt(
        "a",
        &[
            decrypt_item(&ciphertexts[0], None),
            decrypt_item(&ciphertexts[1], Some("t1")),
            decrypt_item(&ciphertexts[1], Some("t2")),
            decrypt_item("vault:v1:bm90IG9uZSBvZiBvdXJz", None),
        ],
    )
    .unwrap();
    assert_eq!(results[0], Ok(b"secret".to_vec()));
    assert_eq!(results[1], Ok(b"secret".to_vec()));
    assert!(
        matches!(&results[2], Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED)
    );
    assert!(matches!(&results[3], Err(TransitError::InvalidInput(_))));

    let under_b = transit::decrypt("b", &[decrypt_item(&ciphertexts[0], None)]).unwrap();
    assert!(matches!(&under_b[0], Err(TransitError::InvalidInput(_))));
    assert!(matches!(
        transit::encrypt("missing", &items),
        Err(TransitError::KeyNotFound(m)) if m.contains("missing")
    ));
}

#[test]
fn rotation_rewraps_to_the_latest_version_and_hmacs_follow_it() {
    let host = Host::install();
    host.create_key("k");
    let old = transit::encrypt("k", &[encrypt_item("x", None)]).unwrap()[0]
        .clone()
        .unwrap();
    let hmac_v1 = transit::hmac("k", &[b"x".to_vec(), b"x".to_vec(), b"y".to_vec()]).unwrap();
    assert_eq!(hmac_v1[0], hmac_v1[1], "stable per input");
    assert_ne!(hmac_v1[0], hmac_v1[2], "distinct between inputs");
    host.rotate_key("k");
    let rewrapped = transit::rewrap("k", &[decrypt_item(&old, None)]).unwrap()[0]
        .clone()
        .unwrap();
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    for ciphertext in [&old, &rewrapped] {
        let plaintext = transit::decrypt("k", &[decrypt_item(ciphertext, None)]).unwrap();
        assert_eq!(plaintext[0], Ok(b"x".to_vec()));
    }
    let hmac_v2 = transit::hmac("k", &[b"x".to_vec()]).unwrap();
    assert!(hmac_v2[0].as_ref().unwrap().starts_with("vault:v2:"));
    assert_ne!(hmac_v2[0], hmac_v1[0]);
}

#[test]
fn min_decryption_version_refuses_older_ciphertexts_and_envelopes() {
    let host = Host::install();
    host.create_key("k");
    let old = transit::encrypt("k", &[encrypt_item("x", None)]).unwrap()[0]
        .clone()
        .unwrap();
    let seal = SealItem {
        plaintext: b"big".to_vec(),
        aad: Vec::new(),
    };
    let sealed_v1 = envelope::seal("k", None, &[seal.clone(), seal.clone()]).unwrap();
    let header = |sealed: &[u8]| {
        crate::envelope_format::parse(sealed)
            .unwrap()
            .wrapped_key
            .to_string()
    };
    assert_eq!(header(&sealed_v1[0]), header(&sealed_v1[1]), "one data key");
    host.rotate_key("k");
    let sealed_v2 = envelope::seal("k", None, &[seal]).unwrap().remove(0);
    assert!(
        header(&sealed_v2).starts_with("vault:v2:"),
        "a rotation mints a new data key"
    );
    let rewrapped_key = transit::rewrap("k", &[decrypt_item(&header(&sealed_v1[0]), None)])
        .unwrap()
        .remove(0)
        .unwrap();
    let rewrapped = crate::envelope_format::parse(&sealed_v1[0])
        .unwrap()
        .rewrapped(&rewrapped_key)
        .unwrap();

    host.set_min_decryption_version("k", 2);
    let refused = transit::decrypt("k", &[decrypt_item(&old, None)]).unwrap();
    assert!(matches!(&refused[0], Err(TransitError::InvalidInput(m)) if m == TOO_OLD));
    let open = |envelope: &Vec<u8>| OpenItem {
        envelope: envelope.clone(),
        aad: Vec::new(),
    };
    let opened = envelope::open(
        "k",
        None,
        &[open(&sealed_v1[1]), open(&sealed_v2), open(&rewrapped)],
    )
    .unwrap();
    assert!(matches!(&opened[0], Err(TransitError::InvalidInput(m)) if m.contains(TOO_OLD)));
    assert_eq!(opened[1], Ok(b"big".to_vec()));
    assert_eq!(opened[2], Ok(b"big".to_vec()));
}

#[test]
fn envelopes_open_only_with_their_key_context_and_aad() {
    let host = Host::install();
    host.create_key("k");
    host.create_key("other");
    let seal = |plaintext: &str, aad: &str| SealItem {
        plaintext: plaintext.as_bytes().to_vec(),
        aad: aad.as_bytes().to_vec(),
    };
    let sealed = envelope::seal("k", Some(b"ctx"), &[seal("big", ""), seal("big", "h")]).unwrap();
    assert_eq!(sealed[0][0], 2, "version byte");
    assert!(!sealed[0].windows(3).any(|w| w == b"big"));
    let open = |envelope: &[u8], aad: &str| OpenItem {
        envelope: envelope.to_vec(),
        aad: aad.as_bytes().to_vec(),
    };
    let opened = envelope::open(
        "k",
        Some(b"ctx"),
        &[
            open(&sealed[0], ""),
            open(&sealed[1], "h"),
            open(&sealed[1], ""),
            open(b"junk", ""),
        ],
    )
    .unwrap();
    assert_eq!(opened[0], Ok(b"big".to_vec()));
    assert_eq!(opened[1], Ok(b"big".to_vec()));
    assert!(matches!(&opened[2], Err(TransitError::InvalidInput(_))));
    assert!(matches!(&opened[3], Err(TransitError::InvalidInput(_))));
    let elsewhere = envelope::open("other", Some(b"ctx"), &[open(&sealed[0], "")]).unwrap();
    // Like the host: the configured key is named, the envelope's (the record's) is not.
    assert!(matches!(&elsewhere[0], Err(TransitError::InvalidInput(m))
        if m.contains("another Vault key") && m.contains("\"other\"") && !m.contains("\"k\"")));
    assert_eq!(
        host.calls().iter().map(|c| c.operation).collect::<Vec<_>>(),
        [Operation::Seal, Operation::Open, Operation::Open]
    );
}

#[test]
fn failures_and_handlers_are_the_tests_to_set() {
    let host = Host::install();
    host.create_key("k");
    host.fail_items(
        |input| input == b"poison",
        TransitError::InvalidInput("refused".into()),
    );
    let results = transit::hmac("k", &[b"ok".to_vec(), b"poison".to_vec()]).unwrap();
    assert!(results[0].is_ok());
    assert_eq!(
        results[1],
        Err(TransitError::InvalidInput("refused".into()))
    );
    let poisoned = SealItem {
        plaintext: b"poison".to_vec(),
        aad: Vec::new(),
    };
    assert!(envelope::seal("k", None, &[poisoned]).is_err());

    host.fail_calls(TransitError::PermissionDenied("no".into()));
    assert_eq!(
        transit::hmac("k", &[b"ok".to_vec()]),
        Err(TransitError::PermissionDenied("no".into()))
    );
    host.clear_failures();
    assert!(transit::hmac("k", &[b"poison".to_vec()]).unwrap()[0].is_ok());

    // A handler replaces the engine, and may look at the host while it answers.
    let inside = host.clone();
    host.on_hmac(move |key, inputs| {
        Ok(inputs
            .iter()
            .map(|_| Ok(format!("{key}:{}", inside.calls().len())))
            .collect())
    });
    let answers = transit::hmac("k", &[b"a".to_vec()]).unwrap();
    assert_eq!(answers[0], Ok("k:5".into()));
    assert_eq!(host.calls().len(), 5);
    assert!(host.calls().iter().all(|c| c.key == "k"));
}

#[test]
fn a_denied_key_fails_every_call_naming_it_and_only_those() {
    let host = Host::install();
    host.create_key("open");
    host.create_key("closed");
    host.deny_key("closed");
    assert!(transit::hmac("open", &[b"x".to_vec()]).is_ok());
    let item = [encrypt_item("x", None)];
    assert!(matches!(
        transit::encrypt("closed", &item),
        Err(TransitError::PermissionDenied(m)) if m.contains("transit/encrypt/closed")
    ));
    let seal = SealItem {
        plaintext: b"x".to_vec(),
        aad: Vec::new(),
    };
    assert!(matches!(
        envelope::seal("closed", None, std::slice::from_ref(&seal)),
        Err(TransitError::PermissionDenied(_))
    ));
    // Denial comes before existence, as an ACL check comes before the key lookup.
    host.deny_key("never-created");
    assert!(matches!(
        transit::encrypt("never-created", &item),
        Err(TransitError::PermissionDenied(_))
    ));
    host.clear_failures();
    assert!(envelope::seal("closed", None, &[seal]).is_ok());
}

#[test]
fn a_policy_helper_maps_the_stand_ins_failures_like_the_hosts() {
    let host = Host::install();
    host.create_key("k");
    host.fail_items(
        |input| input == b"bad",
        TransitError::InvalidInput("bad".into()),
    );
    let hash = |batch| {
        crate::through_vault(
            batch,
            "vault hmac",
            |record: &mut SourceRecord| Prepared::Item(record.value.take().unwrap()),
            |inputs| transit::hmac("k", inputs),
            |record, hmac| OutputRecord {
                value: Some(hmac.into_bytes()),
                ..crate::forward(record)
            },
        )
    };
    let results = hash(vec![record("1", "good"), record("2", "bad")]);
    assert!(results[0].is_ok());
    assert!(matches!(&results[1], Err(Failure::InvalidInput(_))));
    host.fail_calls(TransitError::Unavailable("sealed".into()));
    let results = hash(vec![record("1", "good")]);
    assert!(matches!(&results[0], Err(Failure::Retryable(_))));
}

#[test]
fn logs_are_kept_and_base64_is_standard() {
    let host = Host::install();
    crate::log(Level::Warn, "careful");
    assert_eq!(host.logs(), [(Level::Warn, "careful".to_string())]);
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"stand-in:1"), "c3RhbmQtaW46MQ==");
}

#[test]
#[should_panic(expected = "Host::install()")]
fn an_import_without_a_host_says_how_to_install_one() {
    let _ = transit::hmac("k", &[]);
}

fn bound(plaintext: &str, context: Option<&str>, aad: &[u8]) -> transit::BoundEncryptItem {
    transit::BoundEncryptItem {
        plaintext: plaintext.as_bytes().to_vec(),
        context: context.map(|c| c.as_bytes().to_vec()),
        associated_data: aad.to_vec(),
    }
}

fn bound_decrypt(ciphertext: &str, context: Option<&str>, aad: &[u8]) -> transit::BoundDecryptItem {
    transit::BoundDecryptItem {
        ciphertext: ciphertext.into(),
        context: context.map(|c| c.as_bytes().to_vec()),
        associated_data: aad.to_vec(),
    }
}

#[test]
fn bound_ciphertexts_open_only_with_their_associated_data_and_never_rewrap() {
    let host = Host::install();
    host.create_key("k");
    let ciphertext = transit::encrypt_bound("k", &[bound("secret", None, b"stream=a")])
        .unwrap()
        .remove(0)
        .unwrap();
    let opened = transit::decrypt_bound(
        "k",
        &[
            bound_decrypt(&ciphertext, None, b"stream=a"),
            bound_decrypt(&ciphertext, None, b"stream=b"),
            bound_decrypt(&ciphertext, None, b""),
        ],
    )
    .unwrap();
    assert_eq!(opened[0], Ok(b"secret".to_vec()));
    for refused in &opened[1..] {
        assert!(
            matches!(refused, Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED),
            "{refused:?}"
        );
    }
    // Vault's decrypt and rewrap take no associated data: a bound ciphertext opens in
    // neither, and an unbound one does not open with some.
    assert!(host.decrypt("k", &ciphertext).is_err());
    let rewrapped = transit::rewrap("k", &[decrypt_item(&ciphertext, None)]).unwrap();
    assert!(
        matches!(&rewrapped[0], Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED)
    );
    let plain = host.encrypt("k", b"x");
    let with_aad = transit::decrypt_bound("k", &[bound_decrypt(&plain, None, b"a")]).unwrap();
    assert!(with_aad[0].is_err());
    assert_eq!(
        host.items_per_call(Operation::EncryptBound),
        [1],
        "bound calls are told apart"
    );
    assert_eq!(host.items_per_call(Operation::DecryptBound), [3, 1]);
}

#[test]
fn derived_keys_need_a_context_and_convergent_ones_are_deterministic() {
    let host = Host::install();
    host.create_derived_key("convergent", true);
    host.create_derived_key("derived", false);
    let encrypt = |key: &str, plaintext: &str, context: Option<&str>| {
        transit::encrypt(key, &[encrypt_item(plaintext, context)])
            .unwrap()
            .remove(0)
    };
    for key in ["convergent", "derived"] {
        assert!(
            matches!(encrypt(key, "x", None), Err(TransitError::InvalidInput(m)) if m.contains("missing 'context'"))
        );
    }
    let once = encrypt("convergent", "alice", Some("orders")).unwrap();
    assert_eq!(
        encrypt("convergent", "alice", Some("orders")).unwrap(),
        once
    );
    assert_ne!(encrypt("convergent", "bob", Some("orders")).unwrap(), once);
    assert_ne!(
        encrypt("convergent", "alice", Some("payments")).unwrap(),
        once
    );
    assert!(!once.contains("alice"));
    assert_ne!(
        encrypt("derived", "alice", Some("orders")).unwrap(),
        encrypt("derived", "alice", Some("orders")).unwrap(),
        "derived but not convergent: a fresh text each time"
    );
    let decrypted = transit::decrypt(
        "convergent",
        &[
            decrypt_item(&once, Some("orders")),
            decrypt_item(&once, Some("payments")),
            decrypt_item(&once, None),
        ],
    )
    .unwrap();
    assert_eq!(decrypted[0], Ok(b"alice".to_vec()));
    assert!(
        matches!(&decrypted[1], Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED)
    );
    assert!(
        matches!(&decrypted[2], Err(TransitError::InvalidInput(m)) if m.contains("missing 'context'"))
    );

    host.rotate_key("convergent");
    let v2 = encrypt("convergent", "alice", Some("orders")).unwrap();
    assert!(v2.starts_with("vault:v2:") && v2 != once);
    let rewrapped = transit::rewrap("convergent", &[decrypt_item(&once, Some("orders"))])
        .unwrap()
        .remove(0);
    assert_eq!(
        rewrapped,
        Ok(v2),
        "a rewrap lands on the same text as a fresh encryption"
    );
}

#[test]
fn seal_v3_writes_version_3_headers_that_open_checks() {
    use crate::envelope_format::record::{Compression, Flags, RecordKeys};
    let host = Host::install();
    host.create_key("k");
    let options = |flags: u8, compression, pad_to| envelope::SealOptions {
        flags,
        compression,
        pad_to,
    };
    let item = |plaintext: &str, aad: &[u8]| SealItem {
        plaintext: plaintext.as_bytes().to_vec(),
        aad: aad.to_vec(),
    };
    let sealed = envelope::seal_v3(
        "k",
        None,
        // The policy's body bits are the host's to set: 0x08 is ignored here.
        options(0x03 | 0x08, envelope::Compression::Zstd, 0),
        &[item("big", b"parts"), item("other", b"parts")],
    )
    .unwrap();
    let header = crate::envelope_format::parse(&sealed[0]).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(
        header.flags,
        Flags::new(
            true,
            true,
            false,
            RecordKeys::Kept,
            Compression::Zstd,
            false
        )
    );
    assert!(header.commitment.is_some());
    let padded = envelope::seal_v3(
        "k",
        None,
        options(0, envelope::Compression::None, 64),
        &[item("x", b"")],
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        crate::envelope_format::parse(&padded).unwrap().flags.bits(),
        0x08
    );
    assert!(matches!(
        envelope::seal_v3("k", None, options(0x30, envelope::Compression::None, 0), &[item("x", b"")]),
        Err(TransitError::InvalidInput(m)) if m.contains("0x30")
    ));

    let open = |envelope: &[u8], aad: &[u8]| {
        envelope::open(
            "k",
            None,
            &[OpenItem {
                envelope: envelope.to_vec(),
                aad: aad.to_vec(),
            }],
        )
        .unwrap()
        .remove(0)
    };
    assert_eq!(open(&sealed[0], b"parts"), Ok(b"big".to_vec()));
    assert!(open(&sealed[0], b"other parts").is_err());
    // The flags are authenticated: changing them in the header fails the tag.
    let mut flipped = sealed[0].clone();
    flipped[1] ^= 0x02;
    assert!(
        matches!(open(&flipped, b"parts"), Err(TransitError::InvalidInput(m)) if m == AUTHENTICATION_FAILED)
    );
    // A wrapped key of another data key fails the commitment, before the tag.
    host.rotate_key("k");
    let other = envelope::seal_v3(
        "k",
        None,
        options(0x03, envelope::Compression::Zstd, 0),
        &[item("big", b"parts")],
    )
    .unwrap()
    .remove(0);
    let swapped = header
        .rewrapped(crate::envelope_format::parse(&other).unwrap().wrapped_key)
        .unwrap();
    assert!(
        matches!(open(&swapped, b"parts"), Err(TransitError::InvalidInput(m)) if m.contains("commitment"))
    );
    // A rewrap of its own data key keeps it whole.
    let rewrapped_key = transit::rewrap("k", &[decrypt_item(header.wrapped_key, None)])
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(
        open(&header.rewrapped(&rewrapped_key).unwrap(), b"parts"),
        Ok(b"big".to_vec())
    );
    assert_eq!(host.items_per_call(Operation::SealV3), [2, 1, 1, 1]);
}

#[test]
fn the_sink_topic_is_the_tests_to_set_and_an_error_outside_a_pipeline() {
    let host = Host::install();
    assert_eq!(
        crate::pipeline::sink_topic("orders"),
        Err(super::engine::NO_PIPELINE.to_string())
    );
    host.set_sink_topic("orders", "orders.protected");
    assert_eq!(
        crate::pipeline::sink_topic("orders"),
        Ok("orders.protected".into())
    );
    assert!(crate::pipeline::sink_topic("payments")
        .unwrap_err()
        .contains("payments"));
    assert!(host.calls().is_empty(), "not a Vault call");
}
