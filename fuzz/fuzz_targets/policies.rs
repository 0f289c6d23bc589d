//! The record path: raw Kafka fields (any topic, key, value and header bytes; header
//! names that are not UTF-8 refused as the host refuses them) through the built-in
//! policies, natively, against the SDK's stand-in host.
//!
//! Oracles: no panic; one result per record and one output per transformed record; a
//! protecting policy's Ok output holds no plaintext of what it protects (whole values:
//! the value is a ciphertext or envelope the host issued for exactly that plaintext;
//! fields: every value a JSON reader finds at a selected pointer, duplicates included,
//! is a ciphertext of that value), and key and headers are the input's plus the stamps;
//! protect -> (rotate, rewrap) -> unprotect restores every record that was protected.
//! The unprotecting policies also run on the raw records (arbitrary ciphertexts,
//! envelopes, field values).

#![no_main]

use kafka_transit_fuzz::json_model::{self, Json, Token};
use kafka_transit_fuzz::policies::{
    DecryptFields, DecryptValue, EncryptFields, EncryptValue, EnvelopeOpen, EnvelopeRewrap,
    EnvelopeSeal, RewrapFields, RewrapValue,
};
use kafka_transit_fuzz::records::{admit, Admitted, Input};
use kafka_transit_policy_sdk::testing::Host;
use kafka_transit_policy_sdk::transit::{self, DecryptItem};
use kafka_transit_policy_sdk::{
    envelope_format, forward, without_stamps, Header, OutputRecord, Policy, SourceRecord,
    TransformResult, KEY_HEADER, POLICY_HEADER,
};
use libfuzzer_sys::fuzz_target;

/// Transit keys the stand-in host has: templates may name others, which then fail.
const KEYS: [&str; 5] = ["customers", "orders", "tenant-a", "tenant-b", "raw.orders"];

#[derive(Clone, Copy)]
enum Flow {
    Fields,
    Value,
    Envelope,
}

/// `config N` in the input picks one (modulo the count).
const CONFIGS: &[(Flow, &str)] = &[
    (Flow::Fields, r#"{"key":"customers","fields":["/ssn"]}"#),
    (
        Flow::Fields,
        r#"{"key":"customers","fields":["/ssn","/card/number","/orders/*/iban"],"on_missing_field":"fail"}"#,
    ),
    (
        Flow::Fields,
        r#"{"key":"tenant-{header:tenant}","fields":["/*"],"on_invalid_json":"pass","allowed_keys":["tenant-a","tenant-b"]}"#,
    ),
    (
        Flow::Fields,
        r#"{"key":"customers","fields":[""],"context_from":"record-key"}"#,
    ),
    (
        Flow::Fields,
        r#"{"key":"{topic}","fields":["/a~1b","/0","/*/x","/ssn/x","/ssn"],"on_invalid_json":"pass"}"#,
    ),
    (Flow::Value, r#"{"key":"customers"}"#),
    (
        Flow::Value,
        r#"{"key":"tenant-{header:tenant}","allowed_keys":["tenant-a","tenant-b"]}"#,
    ),
    (
        Flow::Value,
        r#"{"key":"customers","context_from":"record-key"}"#,
    ),
    (Flow::Envelope, r#"{"key":"customers"}"#),
    (
        Flow::Envelope,
        r#"{"key":"{topic|strip_prefix:raw.}","context":"ctx"}"#,
    ),
];

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let host = Host::install();
    for key in KEYS {
        host.create_key(key);
    }
    let (flow, config) = CONFIGS[input.config % CONFIGS.len()];
    let batch: Vec<SourceRecord> = input
        .records
        .iter()
        .zip(0..)
        .filter_map(|(raw, offset)| match admit(raw, offset) {
            Admitted::Record(record) => Some(record),
            Admitted::Refused(_) => None,
        })
        .collect();
    let run = Run {
        host,
        config,
        rotate: input.rotate,
        context_from_key: config.contains("record-key"),
    };
    match flow {
        Flow::Fields => {
            run_policy::<DecryptFields>(config, batch.clone());
            run_policy::<RewrapFields>(config, batch.clone());
            run.fields(batch);
        }
        Flow::Value => {
            run_policy::<DecryptValue>(config, batch.clone());
            run_policy::<RewrapValue>(config, batch.clone());
            run.value(batch);
        }
        Flow::Envelope => {
            run_policy::<EnvelopeOpen>(config, batch.clone());
            run_policy::<EnvelopeRewrap>(config, batch.clone());
            run.envelope(batch);
        }
    }
});

/// Initialises policy `P` with `config` and runs it on `batch`: one result per record,
/// one output per transformed record, for every built-in policy.
fn run_policy<P: Policy>(config: &str, batch: Vec<SourceRecord>) -> Vec<TransformResult> {
    P::init(config.to_string()).expect("the fuzz configurations are valid");
    let count = batch.len();
    let results = P::transform(batch);
    assert_eq!(results.len(), count, "one result per record");
    for outputs in results.iter().flatten() {
        assert_eq!(outputs.len(), 1, "one output per transformed record");
        assert_eq!(outputs[0].topic, None, "the built-in policies never route");
    }
    results
}

/// The headers an unprotecting policy gives back: the original ones without stamps, or
/// as they were when the protecting policy passed the record on untouched (a tombstone,
/// invalid JSON with `on_invalid_json = "pass"`), which the unprotecting one does too.
fn restored_headers(original: &SourceRecord, protected: &SourceRecord) -> Vec<Header> {
    if protected.headers == original.headers && protected.value == original.value {
        original.headers.clone()
    } else {
        without_stamps(original.headers.clone())
    }
}

/// The record a later policy reads: what an earlier one produced.
fn consumed(source: &SourceRecord, output: &OutputRecord) -> SourceRecord {
    SourceRecord {
        topic: source.topic.clone(),
        partition: source.partition,
        offset: source.offset,
        timestamp: source.timestamp,
        key: output.key.clone(),
        value: output.value.clone(),
        headers: output.headers.clone(),
    }
}

/// The records of `batch` whose results are Ok, paired with their one output.
fn transformed<'a>(
    batch: &'a [SourceRecord],
    results: &'a [TransformResult],
) -> impl Iterator<Item = (&'a SourceRecord, &'a OutputRecord)> {
    batch
        .iter()
        .zip(results)
        .filter_map(|(record, result)| Some((record, &result.as_ref().ok()?[0])))
}

/// The transit key a protecting policy stamped on `output`, after checking that its
/// key and headers are the input's with the stamps; `None` if the record was forwarded
/// unchanged.
fn stamped_key(input: &SourceRecord, output: &OutputRecord, policy: &str) -> Option<String> {
    assert_eq!(output.key, input.key, "{policy} keeps the record's key");
    if *output == forward(input.clone()) {
        return None;
    }
    let count = output.headers.len();
    assert!(count >= 2, "{policy} stamps its records: {output:?}");
    assert_eq!(
        output.headers[..count - 2],
        without_stamps(input.headers.clone())[..],
        "{policy} keeps the record's headers"
    );
    assert_eq!(
        output.headers[count - 2],
        Header {
            key: POLICY_HEADER.into(),
            value: Some(policy.as_bytes().to_vec()),
        }
    );
    assert_eq!(output.headers[count - 1].key, KEY_HEADER);
    let key = output.headers[count - 1].value.clone().expect("a key name");
    Some(String::from_utf8(key).expect("key names are text"))
}

struct Run {
    host: Host,
    config: &'static str,
    rotate: bool,
    context_from_key: bool,
}

impl Run {
    fn context(&self, record: &SourceRecord) -> Option<Vec<u8>> {
        if self.context_from_key {
            record.key.clone()
        } else {
            None
        }
    }

    /// What a Vault client holding `key` reads from `ciphertext`, if the host issued it.
    fn decrypt(&self, key: &str, ciphertext: &str, record: &SourceRecord) -> Option<Vec<u8>> {
        let item = DecryptItem {
            ciphertext: ciphertext.to_string(),
            context: self.context(record),
        };
        transit::decrypt(key, &[item]).ok()?.pop()?.ok()
    }

    fn rotate_keys(&self) {
        for key in KEYS {
            self.host.rotate_key(key);
        }
    }

    /// Every output of `results` is Ok, and its records feed the next policy.
    fn all_ok(
        &self,
        what: &str,
        batch: &[SourceRecord],
        results: &[TransformResult],
    ) -> Vec<SourceRecord> {
        batch
            .iter()
            .zip(results)
            .map(|(record, result)| match result {
                Ok(outputs) => consumed(record, &outputs[0]),
                Err(failure) => panic!("{what} failed a record it should take: {failure:?}"),
            })
            .collect()
    }

    fn value(&self, batch: Vec<SourceRecord>) {
        let results = run_policy::<EncryptValue>(self.config, batch.clone());
        let mut originals = Vec::new();
        let mut protected = Vec::new();
        for (input, output) in transformed(&batch, &results) {
            match (&input.value, stamped_key(input, output, "encrypt-value")) {
                (None, None) => {}
                (Some(plaintext), Some(key)) => {
                    let value = output.value.as_deref().expect("a value");
                    let text = std::str::from_utf8(value).expect("a ciphertext is text");
                    // No plaintext: the value is a ciphertext issued for exactly this one.
                    assert_eq!(
                        self.decrypt(&key, text, input).as_ref(),
                        Some(plaintext),
                        "encrypt-value's output is not a ciphertext of its input"
                    );
                }
                (value, key) => panic!("encrypt-value: value {value:?} with stamp {key:?}"),
            }
            originals.push(input.clone());
            protected.push(consumed(input, output));
        }
        let first = protected.clone();
        let protected = if self.rotate {
            self.rotate_keys();
            let results = run_policy::<RewrapValue>(self.config, protected.clone());
            let rewrapped = self.all_ok("rewrap-value", &protected, &results);
            for (before, after) in protected.iter().zip(&rewrapped) {
                if before.value.is_some() {
                    assert!(after.value.as_ref().unwrap().starts_with(b"vault:v2:"));
                    assert_eq!(after.headers, before.headers);
                }
            }
            rewrapped
        } else {
            protected
        };
        let results = run_policy::<DecryptValue>(self.config, protected.clone());
        let restored = self.all_ok("decrypt-value", &protected, &results);
        for ((original, protected), restored) in originals.iter().zip(&first).zip(&restored) {
            assert_eq!(restored.value, original.value, "the value round trip");
            assert_eq!(restored.key, original.key);
            assert_eq!(restored.headers, restored_headers(original, protected));
        }
    }

    fn envelope(&self, batch: Vec<SourceRecord>) {
        let results = run_policy::<EnvelopeSeal>(self.config, batch.clone());
        let mut originals = Vec::new();
        let mut sealed = Vec::new();
        for (input, output) in transformed(&batch, &results) {
            match (&input.value, stamped_key(input, output, "envelope-seal")) {
                (None, None) => {}
                (Some(_), Some(key)) => {
                    let envelope = output.value.as_deref().expect("a value");
                    let header = envelope_format::parse(envelope).expect("an envelope");
                    assert_eq!(header.key_name, key, "sealed under the stamped key");
                    // Nothing but the header and the stand-in's body: the plaintext is
                    // not in it (the open below shows the body stands for it).
                    assert_eq!(
                        envelope_format::assemble(&key, header.wrapped_key, header.body).unwrap(),
                        envelope
                    );
                    assert_eq!(header.body.len(), 28, "the stand-in's body");
                }
                (value, key) => panic!("envelope-seal: value {value:?} with stamp {key:?}"),
            }
            originals.push(input.clone());
            sealed.push(consumed(input, output));
        }
        let first = sealed.clone();
        let sealed = if self.rotate {
            self.rotate_keys();
            let results = run_policy::<EnvelopeRewrap>(self.config, sealed.clone());
            let rewrapped = self.all_ok("envelope-rewrap", &sealed, &results);
            for (before, after) in sealed.iter().zip(&rewrapped) {
                let (Some(before), Some(after)) = (&before.value, &after.value) else {
                    continue;
                };
                let (before, after) = (
                    envelope_format::parse(before).unwrap(),
                    envelope_format::parse(after).unwrap(),
                );
                assert!(after.wrapped_key.starts_with("vault:v2:"));
                assert_eq!((after.key_name, after.body), (before.key_name, before.body));
            }
            rewrapped
        } else {
            sealed
        };
        let results = run_policy::<EnvelopeOpen>(self.config, sealed.clone());
        let opened = self.all_ok("envelope-open", &sealed, &results);
        for ((original, sealed), opened) in originals.iter().zip(&first).zip(&opened) {
            assert_eq!(
                opened.value, original.value,
                "seal -> open restores the value"
            );
            assert_eq!(opened.key, original.key);
            assert_eq!(opened.headers, restored_headers(original, sealed));
        }
    }

    fn fields(&self, batch: Vec<SourceRecord>) {
        let config: serde_json::Value = serde_json::from_str(self.config).unwrap();
        let pointers: Vec<Vec<Token>> = config["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| json_model::pointer(p.as_str().unwrap()).expect("a valid pointer"))
            .collect();
        let results = run_policy::<EncryptFields>(self.config, batch.clone());
        let mut originals = Vec::new();
        let mut protected = Vec::new();
        for (input, output) in transformed(&batch, &results) {
            let key = stamped_key(input, output, "encrypt-fields");
            if let Some(doc) = input.value.as_deref().and_then(Json::read) {
                self.no_selected_value_in_clear(&doc, &pointers, input, output, key.as_deref());
            }
            originals.push(input.clone());
            protected.push(consumed(input, output));
        }
        let first = protected.clone();
        let protected = if self.rotate {
            self.rotate_keys();
            let results = run_policy::<RewrapFields>(self.config, protected.clone());
            let rewrapped = self.all_ok("rewrap-fields", &protected, &results);
            for (original, after) in originals.iter().zip(&rewrapped) {
                let Some(doc) = original.value.as_deref().and_then(Json::read) else {
                    continue;
                };
                let after = Json::read(after.value.as_deref().unwrap()).expect("JSON");
                for path in json_model::outermost(&doc, &pointers) {
                    match after.at(&path) {
                        Some(Json::Str(c)) if c.starts_with("vault:v2:") => {}
                        other => panic!("rewrap-fields left {other:?} at {path:?}"),
                    }
                }
            }
            rewrapped
        } else {
            protected
        };
        let results = run_policy::<DecryptFields>(self.config, protected.clone());
        let restored = self.all_ok("decrypt-fields", &protected, &results);
        for ((original, protected), restored) in originals.iter().zip(&first).zip(&restored) {
            assert_eq!(restored.key, original.key);
            assert_eq!(restored.headers, restored_headers(original, protected));
            let (Some(before), Some(after)) = (&original.value, &restored.value) else {
                assert_eq!(restored.value, original.value, "a tombstone stays one");
                continue;
            };
            // Selected values come back minified; with no whitespace anywhere, that is
            // byte for byte.
            if !before.iter().any(|b| b" \t\r\n".contains(b)) {
                assert_eq!(after, before, "encrypt -> decrypt restores the value");
            }
            if let Some(doc) = Json::read(before) {
                assert_eq!(
                    Json::read(after),
                    Some(doc),
                    "encrypt -> decrypt restores it"
                );
            }
        }
    }

    /// Every value a JSON reader finds at a selected pointer of the input is, in the
    /// output, a ciphertext of exactly that value (or inside one, when an enclosing
    /// value was selected too).
    fn no_selected_value_in_clear(
        &self,
        doc: &Json,
        pointers: &[Vec<Token>],
        input: &SourceRecord,
        output: &OutputRecord,
        key: Option<&str>,
    ) {
        let paths = json_model::outermost(doc, pointers);
        if paths.is_empty() {
            return;
        }
        let value = output
            .value
            .as_deref()
            .expect("a JSON record keeps a value");
        let after = Json::read(value).unwrap_or_else(|| {
            panic!(
                "encrypt-fields turned JSON into something else: {}",
                String::from_utf8_lossy(value)
            )
        });
        let key = key.unwrap_or_else(|| {
            panic!("encrypt-fields passed on a record whose fields {paths:?} a JSON reader finds")
        });
        for path in paths {
            let plaintext = match after.at(&path) {
                Some(Json::Str(ciphertext)) => self.decrypt(key, ciphertext, input),
                _ => None,
            };
            let plaintext = plaintext.unwrap_or_else(|| {
                panic!(
                    "the selected value at {path:?} is in clear in encrypt-fields' output: {}",
                    String::from_utf8_lossy(value)
                )
            });
            assert_eq!(
                Json::read(&plaintext).as_ref(),
                doc.at(&path),
                "the ciphertext at {path:?} is not of the selected value"
            );
        }
    }
}
