//! A policy for testing the host, not for production: it misbehaves on command so the
//! host's trap recovery, deadlines and memory limits can be exercised for real.
//!
//! Records pass through unchanged, except a record whose value is exactly
//! - `trap`: the policy panics (a wasm trap);
//! - `spin`: the policy loops forever (the host's batch deadline must stop it);
//! - `hog`:  the policy allocates until it hits the host's memory limit;
//! - `invalid`: the record fails as invalid input;
//! - `retry-once`: the first time, the whole batch fails as retryable;
//! - `probe`: the value becomes a report of the ambient authority the guest has
//!   (environment variables, arguments, whether `/` can be listed);
//! - `route:<topic>`: the record goes to `<topic>` (`output-record.topic`) instead of
//!   the sink's topic;
//! - `sink-topic`: the value becomes what the host's `pipeline.sink-topic` answers for
//!   the record's topic: the sink topic, or the error's text.
//!
//! Config: `{"miscount": true}` makes it return one result too few for every batch.

use std::cell::Cell;

use kafka_transit_policy_sdk::{
    export_policy, forward, log, pipeline, Failure, Level, OutputRecord, Policy, SourceRecord,
    TransformResult,
};

thread_local! {
    static MISCOUNT: Cell<bool> = const { Cell::new(false) };
    static RETRIED: Cell<bool> = const { Cell::new(false) };
}

struct FaultTest;

impl Policy for FaultTest {
    fn init(config: String) -> Result<(), String> {
        if config.contains("\"miscount\":true") {
            MISCOUNT.with(|m| m.set(true));
        }
        if config.contains("\"reject\"") {
            return Err(
                "policy.config.reject: this policy was asked to refuse its configuration".into(),
            );
        }
        log(Level::Info, "fault-test policy initialised");
        Ok(())
    }

    fn transform(batch: Vec<SourceRecord>) -> Vec<TransformResult> {
        let mut results: Vec<TransformResult> = batch.into_iter().map(one).collect();
        if MISCOUNT.with(Cell::get) {
            results.pop();
        }
        results
    }
}

fn one(record: SourceRecord) -> TransformResult {
    match record.value.as_deref() {
        Some(b"trap") => panic!("asked to trap"),
        Some(b"spin") => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some(b"hog") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 * 1024 * 1024]);
                std::hint::black_box(&hoard);
            }
        }
        Some(b"probe") => {
            let report = format!(
                "env={} args={} fs={}",
                std::env::vars().count(),
                std::env::args().count(),
                std::fs::read_dir("/").is_ok()
            );
            let mut record = forward(record);
            record.value = Some(report.into_bytes());
            Ok(vec![record])
        }
        Some(b"sink-topic") => {
            let answer = pipeline::sink_topic(&record.topic).unwrap_or_else(|error| error);
            let mut record = forward(record);
            record.value = Some(answer.into_bytes());
            Ok(vec![record])
        }
        Some(b"invalid") => Err(Failure::InvalidInput("asked to be invalid".into())),
        Some(value) if value.starts_with(b"route:") => {
            let topic = String::from_utf8_lossy(&value[b"route:".len()..]).into_owned();
            Ok(vec![OutputRecord {
                topic: Some(topic),
                ..forward(record)
            }])
        }
        Some(b"retry-once") if !RETRIED.with(|r| r.replace(true)) => {
            Err(Failure::Retryable("asked to be retried once".into()))
        }
        _ => Ok(vec![forward(record)]),
    }
}

export_policy!(FaultTest);
