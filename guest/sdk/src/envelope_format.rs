//! The header of the published envelope format (docs/envelope-format.md), for policies
//! that move envelopes along without opening them: `envelope-rewrap` reads the wrapped
//! data key and puts its rewrapped text in its place. Only the host holds data keys;
//! the header holds none, only Vault's ciphertext of one.
//!
//! ```text
//! version (1) | key name length (u16 BE) | key name | wrapped key length (u16 BE) |
//! wrapped key ("vault:vN:...") | nonce (12) | ciphertext || tag (16)
//! ```
//!
//! This is the `kafka-transit-envelope-format` crate, the parser the host opens envelopes
//! with, so that a policy and the host read every record alike: [`parse`] refuses a key
//! name that is not a transit key name (`..`, `a/b`, ...) without quoting it, and the
//! writers ([`assemble`], [`Header::rewrapped`]) refuse to write one.

pub use kafka_transit_envelope_format::*;

/// The header of `envelope` if it was sealed under transit key `key`, else the record's
/// failure. The reason never quotes the key name the header carries: the producer wrote
/// it.
pub fn sealed_under<'a>(
    envelope: &'a [u8],
    key: &crate::ResolvedKey,
) -> Result<Header<'a>, crate::Failure> {
    let header = parse(envelope).map_err(|e| crate::Failure::InvalidInput(e.to_string()))?;
    if header.key_name != key.name() {
        return Err(crate::Failure::InvalidInput(format!(
            "envelope was sealed under another Vault transit key than {}",
            key.describe()
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope's key name is the path of the Vault request that unwraps its data key:
    /// every published "key name" case is refused for that reason, without quoting it.
    #[test]
    fn the_published_key_name_cases_are_refused() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/envelope-test-vectors.json")).unwrap();
        let cases: Vec<_> = vectors["tampered"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|case| case["expect"] == "key name")
            .collect();
        assert!(cases.len() >= 5);
        for case in cases {
            let hex = case["envelope_hex"].as_str().unwrap();
            let envelope: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let message = parse(&envelope)
                .map(|header| header.key_name.to_string())
                .map_err(|error| error.to_string());
            assert!(
                message
                    .as_ref()
                    .is_err_and(|m| m.contains("key name is not a transit key name")
                        && !m.contains("tenant")
                        && !m.contains("sys")),
                "{}: {message:?}",
                case["name"]
            );
        }
    }
}
