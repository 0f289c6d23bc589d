use super::*;
use crate::batch::{Batch, Start};
use crate::envelope_format::record::{self, RecordKeys as KeyFlags};
use crate::testing::{record, Host, Operation};
use crate::transit::TransitError;
use crate::{Failure, OutputRecord};

fn config(json: &str, role: Role, shape: Shape) -> ProtectionConfig {
    ProtectionConfig::parse(json, role, shape).unwrap()
}

fn header(key: &str, value: Option<&str>) -> Header {
    Header {
        key: key.into(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn with_headers(mut source: SourceRecord, headers: &[(&str, Option<&str>)]) -> SourceRecord {
    source.headers = headers.iter().map(|(k, v)| header(k, *v)).collect();
    source
}

/// Protects the keys of records with these keys (`None`: a null key) in one batch, as
/// a protecting policy does; each result's key.
fn protect(
    config: &ProtectionConfig,
    keys: &[Option<&str>],
) -> Vec<Result<Option<Vec<u8>>, Failure>> {
    let mut streams = Streams::new(config);
    let batch = keys
        .iter()
        .map(|key| SourceRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            ..record("", "v")
        })
        .collect();
    let mut batch = Batch::new(batch, |source| {
        match config.outgoing(source, &mut streams, ()) {
            Ok(out) => Start::Work(out),
            Err(failure) => Start::Fail(failure),
        }
    });
    protect_keys(&mut batch, config);
    batch
        .finish(|out| Ok(out.output(config, None)))
        .into_iter()
        .map(|result| result.map(|mut out| out.remove(0).key))
        .collect()
}

#[test]
fn sealing_keeps_kept_and_own_headers_in_clear_and_frames_the_rest_in_order() {
    let host = Host::install();
    host.set_sink_topic("test", "sink");
    let seal = config(
        r#"{"headers":"seal","keep_headers":["traceparent"],"bind":["stream"]}"#,
        Role::Protect,
        Shape::Value,
    );
    let source = with_headers(
        record("k", "value"),
        &[
            ("a", Some("1")),
            ("traceparent", Some("00-abc")),
            ("kafka-transit.policy", Some("earlier")),
            ("a", Some("2")),
            ("valueless", None),
            (PROTECTION_HEADER, Some("3;00")),
            ("empty", Some("")),
        ],
    );
    let out = seal
        .outgoing(source.clone(), &mut Streams::new(&seal), ())
        .unwrap();
    assert_eq!(
        out.headers,
        [
            header("traceparent", Some("00-abc")),
            header("kafka-transit.policy", Some("earlier"))
        ]
    );
    assert_eq!(out.stream.as_deref(), Some("sink"));
    let (sealed, value) = record::unframe(out.value.as_deref().unwrap()).unwrap();
    assert_eq!(value, b"value");
    assert_eq!(
        sealed,
        [
            ("a".to_string(), Some(b"1".to_vec())),
            ("a".to_string(), Some(b"2".to_vec())),
            ("valueless".to_string(), None),
            ("empty".to_string(), Some(Vec::new())),
        ],
        "in order, repeats and valueless headers included; a producer's protection header never"
    );
    let output = out.output(&seal, Some(("encrypt-value", "customers")));
    let names: Vec<&str> = output.headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(
        names,
        [
            "traceparent",
            "kafka-transit.policy",
            "kafka-transit.key",
            PROTECTION_HEADER
        ]
    );
    assert_eq!(output.headers[3].value.as_deref(), Some(&b"3;05"[..]));

    // A tombstone has nowhere to seal headers: only the kept ones stay, unstamped.
    let tombstone = SourceRecord {
        value: None,
        ..source.clone()
    };
    let out = seal
        .outgoing(tombstone, &mut Streams::new(&seal), ())
        .unwrap();
    assert_eq!(out.value, None);
    let output = out.output(&seal, Some(("encrypt-value", "customers")));
    let names: Vec<&str> = output.headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(
        names,
        ["traceparent", "kafka-transit.policy", PROTECTION_HEADER]
    );

    // Without sealing, every header stays but a producer's protection header.
    let bind = config(r#"{"bind":["key"]}"#, Role::Protect, Shape::Value);
    let out = bind.outgoing(source, &mut Streams::new(&bind), ()).unwrap();
    assert_eq!(out.headers.len(), 6);
    assert!(out.headers.iter().all(|h| h.key != PROTECTION_HEADER));
    assert_eq!(out.value.as_deref(), Some(&b"value"[..]));
    assert_eq!(out.stream, None, "neither bound nor needed for keys");
}

#[test]
fn the_stream_is_configured_or_the_sink_topic_or_for_readers_the_records_topic() {
    let host = Host::install();
    let bind = config(r#"{"bind":["stream"]}"#, Role::Protect, Shape::Value);
    match Streams::new(&bind).of("test") {
        Err(Failure::PolicyError(m)) => {
            assert!(
                m.contains("policy.config.stream") && m.contains("outside a pipeline"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    host.set_sink_topic("test", "test.protected");
    assert_eq!(Streams::new(&bind).of("test"), Ok("test.protected".into()));
    let named = config(
        r#"{"bind":["stream"],"stream":"orders"}"#,
        Role::Protect,
        Shape::Value,
    );
    assert_eq!(Streams::new(&named).of("test"), Ok("orders".into()));
    let reader = config("{}", Role::Open, Shape::Value);
    assert_eq!(
        Streams::new(&reader).of("test.protected"),
        Ok("test.protected".into())
    );
    let rewrap = config(r#"{"stream":"orders"}"#, Role::Rewrap, Shape::Value);
    assert_eq!(Streams::new(&rewrap).of("anything"), Ok("orders".into()));
}

#[test]
fn encrypted_keys_are_deterministic_one_call_per_batch_and_null_stays_null() {
    let host = Host::install();
    host.create_derived_key("record-keys", true);
    let encrypt = config(
        r#"{"record_keys":"encrypt","record_keys_key":"record-keys","stream":"orders"}"#,
        Role::Protect,
        Shape::Value,
    );
    let keys = protect(&encrypt, &[Some("alice"), Some("bob"), Some("alice"), None]);
    let keys: Vec<Option<Vec<u8>>> = keys.into_iter().map(Result::unwrap).collect();
    assert!(keys[0].as_deref().unwrap().starts_with(b"vault:v1:"));
    assert_eq!(keys[0], keys[2], "the same source key, the same sink key");
    assert_ne!(keys[0], keys[1]);
    assert_eq!(keys[3], None);
    assert_eq!(
        host.items_per_call(Operation::Encrypt),
        [3],
        "two distinct keys and the convergence probe, in one call"
    );
    // The next batch gives the same keys; another stream, others.
    assert_eq!(
        protect(&encrypt, &[Some("alice")])[0].as_ref().unwrap(),
        &keys[0]
    );
    let elsewhere = config(
        r#"{"record_keys":"encrypt","record_keys_key":"record-keys","stream":"payments"}"#,
        Role::Protect,
        Shape::Value,
    );
    assert_ne!(
        protect(&elsewhere, &[Some("alice")])[0].as_ref().unwrap(),
        &keys[0]
    );
    // They decrypt under the stream as context.
    let item = crate::transit::DecryptItem {
        ciphertext: String::from_utf8(keys[0].clone().unwrap()).unwrap(),
        context: Some(b"orders".to_vec()),
    };
    assert_eq!(
        crate::transit::decrypt("record-keys", &[item]).unwrap()[0],
        Ok(b"alice".to_vec())
    );
}

#[test]
fn a_key_that_is_not_convergent_fails_the_keyed_records_as_a_policy_error() {
    let host = Host::install();
    host.create_derived_key("derived-only", false);
    let encrypt = config(
        r#"{"record_keys":"encrypt","record_keys_key":"derived-only","stream":"s"}"#,
        Role::Protect,
        Shape::Value,
    );
    let results = protect(&encrypt, &[Some("alice"), None]);
    assert!(
        matches!(&results[0], Err(Failure::PolicyError(m)) if m.contains("not a convergent key")),
        "{results:?}"
    );
    assert_eq!(results[1], Ok(None), "a null key needs no Vault");
}

#[test]
fn hmac_keys_take_stream_zero_key_and_failures_stay_with_their_records() {
    let host = Host::install();
    host.create_key("pseudonyms");
    host.on_hmac(move |key, inputs| {
        assert_eq!(key, "pseudonyms");
        assert_eq!(inputs, [b"orders\0alice".to_vec(), b"orders\0bad".to_vec()]);
        Ok(vec![
            Ok("vault:v1:aGFzaA==".into()),
            Err(TransitError::InvalidInput("refused".into())),
        ])
    });
    let hmac = config(
        r#"{"record_keys":"hmac","record_keys_key":"pseudonyms","stream":"orders"}"#,
        Role::Protect,
        Shape::Value,
    );
    let results = protect(&hmac, &[Some("alice"), Some("bad"), Some("alice")]);
    assert_eq!(results[0], Ok(Some(b"vault:v1:aGFzaA==".to_vec())));
    assert!(matches!(&results[1], Err(Failure::InvalidInput(m)) if m.contains("refused")));
    assert_eq!(results[2], results[0]);

    host.fail_calls(TransitError::Unavailable("sealed".into()));
    let results = protect(&hmac, &[Some("alice"), None]);
    assert!(matches!(&results[0], Err(Failure::Retryable(_))));
    assert_eq!(results[1], Ok(None));
}

/// A record as a protecting policy with `json` writes it (the key step only).
fn written(json: &str, source: SourceRecord) -> OutputRecord {
    let protect = config(json, Role::Protect, Shape::Envelope);
    let mut streams = Streams::new(&protect);
    let mut batch = Batch::new(vec![source], |source| {
        Start::Work(protect.outgoing(source, &mut streams, ()).unwrap())
    });
    protect_keys(&mut batch, &protect);
    batch
        .finish(|out| Ok(out.output(&protect, None)))
        .remove(0)
        .unwrap()
        .remove(0)
}

fn read(config: &ProtectionConfig, output: &OutputRecord) -> Result<Incoming<()>, Failure> {
    let source = SourceRecord {
        topic: "test".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: output.key.clone(),
        value: output.value.clone(),
        headers: output.headers.clone(),
    };
    config.incoming(source, &mut Streams::new(config), ())
}

#[test]
fn the_protection_header_is_read_strictly() {
    let _host = Host::install();
    let open = config("{}", Role::Open, Shape::Envelope);
    let at = |headers: &[(&str, Option<&str>)]| {
        open.incoming(
            with_headers(record("k", "v"), headers),
            &mut Streams::new(&open),
            (),
        )
    };
    assert_eq!(at(&[]).unwrap().flags, None, "formats 1/2");
    assert_eq!(
        at(&[(PROTECTION_HEADER, Some("3;0b"))])
            .unwrap()
            .flags
            .unwrap()
            .bits(),
        0x0b
    );
    for (headers, words) in [
        (
            &[
                (PROTECTION_HEADER, Some("3;01")),
                (PROTECTION_HEADER, Some("3;01")),
            ][..],
            "more than one",
        ),
        (&[(PROTECTION_HEADER, None)], "no value"),
        (&[(PROTECTION_HEADER, Some("3;1"))], "two hex digits"),
        (&[(PROTECTION_HEADER, Some("4;01"))], "unknown format"),
        (&[(PROTECTION_HEADER, Some("3;30"))], "unknown flags 0x30"),
        (&[(PROTECTION_HEADER, Some("3;c0"))], "unknown flags 0xc0"),
    ] {
        match at(headers) {
            Err(Failure::InvalidInput(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{headers:?}: {other:?}"),
        }
    }
    // What a vault: value or a field never is.
    for (shape, flags) in [
        (Shape::Value, "3;10"),
        (Shape::Value, "3;08"),
        (Shape::Fields, "3;04"),
    ] {
        let reader = config("{}", Role::Open, shape);
        let result = reader.incoming(
            with_headers(record("k", "v"), &[(PROTECTION_HEADER, Some(flags))]),
            &mut Streams::new(&reader),
            (),
        );
        assert!(
            matches!(result, Err(Failure::InvalidInput(_))),
            "{shape:?} {flags}"
        );
    }
}

#[test]
fn require_binding_refuses_older_and_under_bound_records() {
    let _host = Host::install();
    let strict = config(
        r#"{"require_binding":["stream","key"]}"#,
        Role::Open,
        Shape::Envelope,
    );
    let on = |headers: &[(&str, Option<&str>)]| {
        strict.incoming(
            with_headers(record("k", "v"), headers),
            &mut Streams::new(&strict),
            (),
        )
    };
    match on(&[]) {
        Err(Failure::InvalidInput(m)) => {
            assert!(
                m.contains("format 1 or 2") && m.contains(r#"["stream", "key"]"#),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    match on(&[(PROTECTION_HEADER, Some("3;01"))]) {
        Err(Failure::InvalidInput(m)) => assert!(m.contains("bound to less"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(on(&[(PROTECTION_HEADER, Some("3;03"))]).is_ok());
    assert!(on(&[(PROTECTION_HEADER, Some("3;1f"))]).is_ok());
}

#[test]
fn hmac_keys_are_refused_on_opening_unless_kept_and_encrypted_ones_need_their_key() {
    let host = Host::install();
    host.create_key("pseudonyms");
    let output = written(
        r#"{"record_keys":"hmac","record_keys_key":"pseudonyms","stream":"s"}"#,
        record("alice", "v"),
    );
    let open = config("{}", Role::Open, Shape::Envelope);
    match read(&open, &output) {
        Err(Failure::InvalidInput(m)) => {
            assert!(m.contains("HMAC") && m.contains("keep_hmac_keys"), "{m}");
            assert!(!m.contains("alice"));
        }
        other => panic!("{other:?}"),
    }
    let keep = config(r#"{"keep_hmac_keys":true}"#, Role::Open, Shape::Envelope);
    let incoming = read(&keep, &output).unwrap();
    assert_eq!(incoming.key, output.key, "kept as on the sink");
    assert!(
        incoming.headers.is_empty(),
        "the protection header is dropped"
    );

    host.create_derived_key("record-keys", true);
    let encrypted = written(
        r#"{"record_keys":"encrypt","record_keys_key":"record-keys","stream":"s"}"#,
        record("alice", "v"),
    );
    assert!(matches!(
        read(&open, &encrypted),
        Err(Failure::PolicyError(m)) if m.contains("policy.config.record_keys_key")
    ));
    let mut forged = encrypted.clone();
    forged.key = Some(b"alice".to_vec());
    let with_key = config(
        r#"{"record_keys_key":"record-keys"}"#,
        Role::Open,
        Shape::Envelope,
    );
    assert!(matches!(
        read(&with_key, &forged),
        Err(Failure::InvalidInput(m)) if m.contains("not a Vault ciphertext")
    ));
}

/// Reads `outputs` back in one batch and restores their keys (`rewrap`: rewraps them).
fn keys_back(
    config: &ProtectionConfig,
    outputs: &[OutputRecord],
    rewrap: bool,
) -> Vec<Result<Option<Vec<u8>>, Failure>> {
    let mut streams = Streams::new(config);
    let batch = outputs
        .iter()
        .map(|output| SourceRecord {
            topic: "s".into(),
            key: output.key.clone(),
            value: output.value.clone(),
            headers: output.headers.clone(),
            ..record("", "")
        })
        .collect();
    let mut batch = Batch::new(batch, |source| {
        match config.incoming(source, &mut streams, ()) {
            Ok(incoming) => Start::Work(incoming),
            Err(failure) => Start::Fail(failure),
        }
    });
    if rewrap {
        rewrap_keys(&mut batch, config);
    } else {
        restore_keys(&mut batch, config);
    }
    batch
        .finish(|incoming| {
            Ok(OutputRecord {
                topic: None,
                key: incoming.key,
                value: incoming.value,
                headers: incoming.headers,
            })
        })
        .into_iter()
        .map(|result| result.map(|mut out| out.remove(0).key))
        .collect()
}

#[test]
fn encrypted_keys_come_back_and_rewrap_to_the_latest_version() {
    let host = Host::install();
    host.create_derived_key("record-keys", true);
    let protect = r#"{"record_keys":"encrypt","record_keys_key":"record-keys"}"#;
    host.set_sink_topic("test", "s");
    let outputs: Vec<OutputRecord> = ["alice", "bob", "alice"]
        .iter()
        .map(|key| written(protect, record(key, "v")))
        .collect();
    let open = config(
        r#"{"record_keys_key":"record-keys"}"#,
        Role::Open,
        Shape::Value,
    );
    let before = host.items_per_call(Operation::Decrypt).len();
    let restored = keys_back(&open, &outputs, false);
    assert_eq!(
        restored,
        [
            Ok(Some(b"alice".to_vec())),
            Ok(Some(b"bob".to_vec())),
            Ok(Some(b"alice".to_vec()))
        ]
    );
    assert_eq!(
        host.items_per_call(Operation::Decrypt)[before..],
        [2],
        "distinct keys, one call"
    );
    // Read under another stream name, the keys do not decrypt.
    let elsewhere = config(
        r#"{"record_keys_key":"record-keys","stream":"t"}"#,
        Role::Open,
        Shape::Value,
    );
    assert!(
        matches!(&keys_back(&elsewhere, &outputs, false)[0], Err(Failure::InvalidInput(m)) if m.contains("authentication failed"))
    );

    host.rotate_key("record-keys");
    let rewrap = config(
        r#"{"record_keys":"encrypt","record_keys_key":"record-keys"}"#,
        Role::Rewrap,
        Shape::Value,
    );
    let rewrapped = keys_back(&rewrap, &outputs, true);
    let v2 = rewrapped[0].clone().unwrap().unwrap();
    assert!(v2.starts_with(b"vault:v2:"));
    assert_eq!(
        rewrapped[2].clone().unwrap().unwrap(),
        v2,
        "still convergent"
    );
    // A fresh protection after the rotation lands on the same key: compaction converges.
    assert_eq!(written(protect, record("alice", "v")).key.unwrap(), v2);
    // Without record_keys = "encrypt", a rewrap policy leaves keys alone.
    let leave = config("{}", Role::Rewrap, Shape::Value);
    assert_eq!(
        keys_back(&leave, &outputs, true)[0],
        Ok(outputs[0].key.clone())
    );
}

#[test]
fn bindings_are_the_records_as_on_the_sink_and_restore_appends_sealed_headers() {
    let host = Host::install();
    host.create_derived_key("record-keys", true);
    let json = r#"{"record_keys":"encrypt","record_keys_key":"record-keys","bind":["stream","key"],"stream":"s"}"#;
    let protect = config(json, Role::Protect, Shape::Value);
    let mut streams = Streams::new(&protect);
    let mut batch = Batch::new(vec![record("alice", "v")], |source| {
        Start::Work(protect.outgoing(source, &mut streams, ()).unwrap())
    });
    protect_keys(&mut batch, &protect);
    let out = batch.working().next().unwrap();
    let flags = protect.flags();
    let sink_key = out.key.clone().unwrap();
    assert_eq!(
        out.binding(flags, Some("/ssn")),
        record::binding(flags, "s", Some(&sink_key), Some("/ssn"))
    );
    assert_eq!(out.binding_parts(flags), out.binding(flags, None)[16..]);

    let open = config(
        r#"{"record_keys_key":"record-keys","stream":"s"}"#,
        Role::Open,
        Shape::Value,
    );
    let mut sealed_headers = with_headers(
        SourceRecord {
            key: Some(sink_key.clone()),
            ..record("", "")
        },
        &[
            ("kept", Some("1")),
            (PROTECTION_HEADER, Some("3;47")),
            ("kafka-transit.key", Some("k")),
        ],
    );
    sealed_headers.value = None;
    let mut incoming = open
        .incoming(sealed_headers, &mut Streams::new(&open), ())
        .unwrap();
    assert_eq!(
        incoming.flags.map(|f| f.record_keys()),
        Some(KeyFlags::Encrypted)
    );
    assert_eq!(
        incoming.binding(None).unwrap(),
        record::binding(incoming.flags.unwrap(), "s", Some(&sink_key), None)
    );
    assert_eq!(
        incoming.headers,
        [header("kept", Some("1"))],
        "stamps and protection dropped"
    );
    let frame = record::frame(
        &[("a".into(), Some(b"1".to_vec())), ("b".into(), None)],
        b"value",
    );
    assert_eq!(incoming.restore(frame).unwrap(), b"value");
    assert_eq!(
        incoming.headers,
        [
            header("kept", Some("1")),
            header("a", Some("1")),
            header("b", None)
        ]
    );
    assert!(
        matches!(incoming.restore(vec![0, 0, 0, 9]), Err(Failure::InvalidInput(m)) if m.contains("frame"))
    );
}

#[test]
fn an_envelope_must_match_its_records_protection_header() {
    use crate::envelope_format::{header as v2_header, header_v3, parse};
    let body = [0u8; 28];
    let flags = Flags::parse(0x03).unwrap();
    let v3 = [
        header_v3(flags, "k", &[7; 32], "vault:v1:AA").unwrap().0,
        body.to_vec(),
    ]
    .concat();
    let v2 = [v2_header("k", "vault:v1:AA").unwrap().0, body.to_vec()].concat();
    let (v3, v2) = (parse(&v3).unwrap(), parse(&v2).unwrap());
    assert!(check_envelope(&v3, Some(flags)).is_ok());
    assert!(check_envelope(&v2, None).is_ok());
    for (envelope, flags, words) in [
        (&v3, None, "without its kafka-transit.protection header"),
        (&v3, Some(Flags::parse(0x01).unwrap()), "flags differ"),
        (&v2, Some(flags), "version before 3"),
    ] {
        match check_envelope(envelope, flags) {
            Err(Failure::InvalidInput(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
