//! The pipeline configuration loader (`PipelineConfig::parse`) on any text.
//!
//! Oracles: no panic; an error never quotes the file. Every `$$` in the input becomes a
//! marker of 16 characters that no message of the loader holds on its own, so the
//! marker in an error (in any letter case: a URL's scheme comes back lowercased) is text
//! copied from the input. That is allowed only where it is a field name: a key
//! somewhere in the TOML (`unknown field ...`); a value, a comment or a line around a
//! syntax error is not. Built with `--features config` (the host crate, with wasmtime
//! and librdkafka).

#![no_main]

use kafka_transit::config::PipelineConfig;
use libfuzzer_sys::fuzz_target;

const MARKER: &str = "Zq7xMarkerKq3vW9";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.replace("$$", MARKER);
    let Err(error) = PipelineConfig::parse(&text) else {
        return;
    };
    for message in [error.to_string(), format!("{error:?}")] {
        if message
            .to_ascii_lowercase()
            .contains(&MARKER.to_ascii_lowercase())
            && !marker_is_a_key(&text)
        {
            panic!("the error quotes the input:\n{message}\n--- input ---\n{text}");
        }
    }
});

/// Whether the marker (in any letter case) is in a key of the TOML document, at any depth.
fn marker_is_a_key(text: &str) -> bool {
    fn in_value(value: &toml::Value) -> bool {
        match value {
            toml::Value::Table(table) => in_table(table),
            toml::Value::Array(values) => values.iter().any(in_value),
            _ => false,
        }
    }
    fn in_table(table: &toml::Table) -> bool {
        table.iter().any(|(key, value)| {
            key.to_ascii_lowercase()
                .contains(&MARKER.to_ascii_lowercase())
                || in_value(value)
        })
    }
    text.parse::<toml::Table>()
        .is_ok_and(|table| in_table(&table))
}
