//! The header of the published envelope format (docs/envelope-format.md), for policies
//! that move envelopes along without opening them: `envelope-rewrap` reads the wrapped
//! data key and puts its rewrapped text in its place. Only the host holds data keys;
//! the header holds none, only Vault's ciphertext of one.
//!
//! ```text
//! version (1) | key name length (u16 BE) | key name | wrapped key length (u16 BE) |
//! wrapped key ("vault:vN:...") | nonce (12) | ciphertext || tag (16)
//! ```

/// The version the host writes. Its tag covers the version byte and the key name but
/// not the wrapped key, so the wrapped key can be rewrapped in place.
pub const FORMAT_VERSION: u8 = 2;
/// The first version: its tag also covers the wrapped key, which therefore cannot be
/// replaced without the data key.
pub const FORMAT_VERSION_1: u8 = 1;

/// Nonce and tag: what follows the header at the least.
const BODY_MIN: usize = 12 + 16;

/// Where the parts of an envelope's header are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub version: u8,
    pub key_name: &'a str,
    pub wrapped_key: &'a str,
    /// Everything after the header: nonce, ciphertext and tag.
    pub body: &'a [u8],
}

/// Reads an envelope's header; the error says what is wrong with the record.
pub fn parse(envelope: &[u8]) -> Result<Header<'_>, String> {
    let version = match envelope.first() {
        Some(&v @ (FORMAT_VERSION | FORMAT_VERSION_1)) => v,
        Some(other) => {
            return Err(format!(
                "not a kafka-transit envelope: unknown format version 0x{other:02x}"
            ))
        }
        None => return Err("not a kafka-transit envelope: empty value".into()),
    };
    let mut rest = &envelope[1..];
    let mut text = |what: &str| -> Result<&[u8], String> {
        let truncated = || format!("not a kafka-transit envelope: truncated in the {what}");
        let (length, after) = rest.split_first_chunk::<2>().ok_or_else(truncated)?;
        let length = usize::from(u16::from_be_bytes(*length));
        let field = after.get(..length).ok_or_else(truncated)?;
        rest = &after[length..];
        Ok(field)
    };
    let key_name = std::str::from_utf8(text("key name")?)
        .map_err(|_| "not a kafka-transit envelope: key name is not UTF-8".to_string())?;
    let wrapped_key = std::str::from_utf8(text("wrapped key")?)
        .ok()
        .filter(|w| w.starts_with("vault:v"))
        .ok_or("not a kafka-transit envelope: wrapped key is not a Vault ciphertext")?;
    if rest.len() < BODY_MIN {
        return Err("not a kafka-transit envelope: truncated before the tag".into());
    }
    Ok(Header {
        version,
        key_name,
        wrapped_key,
        body: rest,
    })
}

/// The header of `envelope` if it was sealed under transit key `key`, else the record's
/// failure. The reason never quotes the key name the header carries: the producer wrote
/// it.
pub fn sealed_under<'a>(
    envelope: &'a [u8],
    key: &crate::ResolvedKey,
) -> Result<Header<'a>, crate::Failure> {
    let header = parse(envelope).map_err(crate::Failure::InvalidInput)?;
    if header.key_name != key.name() {
        return Err(crate::Failure::InvalidInput(format!(
            "envelope was sealed under another Vault transit key than {}",
            key.describe()
        )));
    }
    Ok(header)
}

/// A version 2 envelope: the header for `key_name` and `wrapped_key`, then `body`.
pub fn assemble(key_name: &str, wrapped_key: &str, body: &[u8]) -> Vec<u8> {
    let mut envelope = Vec::with_capacity(5 + key_name.len() + wrapped_key.len() + body.len());
    envelope.push(FORMAT_VERSION);
    for field in [key_name, wrapped_key] {
        let length = u16::try_from(field.len()).expect("key names and wrapped keys are short");
        envelope.extend_from_slice(&length.to_be_bytes());
        envelope.extend_from_slice(field.as_bytes());
    }
    envelope.extend_from_slice(body);
    envelope
}

impl Header<'_> {
    /// The same envelope with its data key wrapped as `wrapped_key` (a rewrap of the
    /// same data key): nonce, ciphertext and tag unchanged, and still valid, because a
    /// version 2 tag does not cover the wrapped key.
    pub fn rewrapped(&self, wrapped_key: &str) -> Result<Vec<u8>, String> {
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "envelope format version {} authenticates its wrapped data key, so it cannot \
                 be rewrapped without the data key; envelopes sealed by kafka-transit since \
                 format version {FORMAT_VERSION} can (docs/envelope-format.md)",
                self.version
            ));
        }
        Ok(assemble(self.key_name, wrapped_key, self.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vectors were made by Python's `cryptography`, not by this code.
    fn published(version: u64) -> Vec<(Vec<u8>, String, String)> {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/envelope-test-vectors.json")).unwrap();
        vectors["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["format_version"] == version)
            .map(|v| {
                let hex = v["envelope_hex"].as_str().unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let text = |name: &str| v[name].as_str().unwrap().to_string();
                (bytes, text("key_name"), text("wrapped_key"))
            })
            .collect()
    }

    #[test]
    fn reads_the_published_vectors_and_reassembles_them_byte_for_byte() {
        let v2 = published(2);
        assert!(!v2.is_empty());
        for (envelope, key_name, wrapped_key) in v2 {
            let header = parse(&envelope).unwrap();
            assert_eq!(
                (header.version, header.key_name, header.wrapped_key),
                (2, key_name.as_str(), wrapped_key.as_str())
            );
            assert_eq!(
                assemble(header.key_name, header.wrapped_key, header.body),
                envelope
            );
        }
    }

    #[test]
    fn a_rewrapped_vector_is_the_published_rewrapped_one() {
        let v2 = published(2);
        let hello = &v2[0].0;
        let rewrapped_vector = v2.last().unwrap(); // "hello (v2), data key rewrapped ..."
        let rewrapped = parse(hello)
            .unwrap()
            .rewrapped(&rewrapped_vector.2)
            .unwrap();
        assert_eq!(&rewrapped, &rewrapped_vector.0);
    }

    #[test]
    fn version_1_cannot_be_rewrapped_and_bad_input_is_named() {
        let (v1, ..) = &published(1)[0];
        let error = parse(v1).unwrap().rewrapped("vault:v2:AAAA").unwrap_err();
        assert!(error.contains("version 1 authenticates"), "{error}");
        assert!(parse(br#"{"a":1}"#).unwrap_err().contains("0x7b"));
        assert!(parse(&v1[..40]).unwrap_err().contains("truncated"));
        assert!(parse(&assemble("k", "not-vault", &[0; 28]))
            .unwrap_err()
            .contains("not a Vault ciphertext"));
        assert!(parse(&assemble("k", "vault:v1:x", &[0; 27]))
            .unwrap_err()
            .contains("before the tag"));
    }
}
