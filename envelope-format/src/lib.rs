//! The kafka-transit envelope format (docs/envelope-format.md), without its cryptography:
//! the constants, the header parser and the header writer. The host seals and opens
//! envelopes with it; the policy SDK reads and rewrites headers with it (`envelope-rewrap`
//! replaces the wrapped data key without opening anything). One parser, so that both read
//! every record the same way.
//!
//! ```text
//! version (1) = 0x02 (0x01 is still read)
//! key name length (u16 BE) | key name        the transit key that wrapped the data key
//! wrapped key length (u16 BE) | wrapped key  Vault's ciphertext of the data key, "vault:vN:..."
//! nonce (12) | ciphertext || tag (16)         AES-256-GCM
//! ```
//!
//! Version 3 adds a flags byte after the version and a 32-byte key commitment after the
//! key name (both authenticated); [`record`] holds what format 3 says of the rest of the
//! record (flags, the protection header, binding data, sealed headers, padding).
//!
//! The key name comes from the record, and a reader puts it in a Vault request path
//! (`transit/decrypt/<key name>`). So it must be a transit key name by the project's one
//! rule ([`kafka_transit_names::check_name`]): `..` or `/` would steer the request
//! elsewhere. [`parse`] refuses any other name, and its errors never quote it.

use std::fmt;

pub mod record;

/// The version written. Its tag covers the version byte and the key name but not the
/// wrapped key, so that the data key can be rewrapped in place (`transit/rewrap`).
pub const FORMAT_VERSION: u8 = 2;
/// The first version, still read: its tag also covers the wrapped key, which therefore
/// cannot be replaced without the data key.
pub const FORMAT_VERSION_1: u8 = 1;
/// Format 3 (docs/protected-records.md): a flags byte and a key commitment; written when
/// a record is bound, has sealed headers, or is compressed or padded.
pub const FORMAT_VERSION_3: u8 = 3;
/// The key commitment of a version 3 envelope: HMAC-SHA256 under the data key of
/// [`COMMITMENT_MESSAGE`].
pub const COMMITMENT_LEN: usize = 32;
/// What the key commitment is the HMAC of.
pub const COMMITMENT_MESSAGE: &[u8] = b"kafka-transit/3 key commitment";
/// AES-GCM's nonce, random per record.
pub const NONCE_LEN: usize = 12;
/// AES-GCM's tag, after the ciphertext.
pub const TAG_LEN: usize = 16;
/// The longest key name an envelope may carry (Kafka's longest topic name, too).
pub const MAX_KEY_NAME_LEN: usize = kafka_transit_names::MAX_NAME_LEN;

/// What Vault's ciphertext text starts with; the wrapped key is one.
const WRAPPED_KEY_PREFIX: &str = "vault:v";

/// An envelope's header, borrowing from the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// [`FORMAT_VERSION_3`], [`FORMAT_VERSION`] or [`FORMAT_VERSION_1`].
    pub version: u8,
    /// The flags byte of version 3 ([`record::Flags`]); empty before it.
    pub flags: record::Flags,
    /// Version 3's key commitment; `None` before it.
    pub commitment: Option<&'a [u8; COMMITMENT_LEN]>,
    /// A valid transit key name (see [`check_key_name`]).
    pub key_name: &'a str,
    /// Vault's ciphertext of the data key, `vault:vN:...`.
    pub wrapped_key: &'a str,
    /// The prefix of the envelope that the tag covers, the start of the associated data:
    /// version byte, flags, key name and commitment (version 3), version byte and key
    /// name (version 2), the whole header (version 1).
    pub authenticated: &'a [u8],
    /// Everything after the header: nonce, ciphertext and tag.
    pub body: &'a [u8],
}

/// Why bytes are not an envelope. The messages never quote the record's key name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    Empty,
    /// The first byte, which is neither version (`0x7b`: a JSON record, not sealed).
    UnknownVersion(u8),
    /// Where the envelope ends too soon: "in the key name", "in the wrapped key" or
    /// "before the tag".
    Truncated(&'static str),
    /// The key name is not a transit key name; the reason is the rule's, not the name.
    InvalidKeyName(&'static str),
    WrappedKeyNotVault,
    /// A version 3 flags byte with bits no version of the format gives a meaning.
    UnknownFlags(u8),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a kafka-transit envelope: ")?;
        match self {
            FormatError::Empty => f.write_str("empty value"),
            FormatError::UnknownVersion(byte) => write!(f, "unknown format version 0x{byte:02x}"),
            FormatError::Truncated(where_) => write!(f, "truncated {where_}"),
            FormatError::InvalidKeyName(reason) => {
                write!(f, "its key name is not a transit key name ({reason})")
            }
            FormatError::WrappedKeyNotVault => {
                f.write_str("its wrapped key is not a Vault ciphertext (vault:v...)")
            }
            FormatError::UnknownFlags(flags) => write!(f, "unknown flags 0x{flags:02x}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Why a header could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The key name is not a transit key name; readers would refuse the envelope.
    InvalidKeyName(&'static str),
    /// The wrapped key is not Vault's ciphertext text, or longer than 65,535 bytes.
    InvalidWrappedKey(&'static str),
    /// The envelope is of a version whose tag covers its wrapped key.
    NotRewrappable { version: u8 },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::InvalidKeyName(reason) => write!(
                f,
                "an envelope's key name must be a transit key name: {reason}"
            ),
            WriteError::InvalidWrappedKey(reason) => {
                write!(f, "an envelope's wrapped key must be {reason}")
            }
            WriteError::NotRewrappable { version } => write!(
                f,
                "envelope format version {version} authenticates its wrapped data key, so it \
                 cannot be rewrapped without the data key; envelopes sealed by kafka-transit \
                 since format version {FORMAT_VERSION} can (docs/envelope-format.md)"
            ),
        }
    }
}

impl std::error::Error for WriteError {}

/// `name` as text, if it is a transit key name: 1 to 249 of `A-Z a-z 0-9 . _ -`, not `.`
/// or `..` (the one rule, [`kafka_transit_names::check_name`]). The reason never quotes
/// the name.
pub fn check_key_name(name: &[u8]) -> Result<&str, &'static str> {
    match std::str::from_utf8(name) {
        Ok(text) => kafka_transit_names::check_name(text).map(|()| text),
        // Bytes that are not UTF-8 become U+FFFD, which the rule refuses like any other
        // character it does not allow (or the name is too long, or empty: its reason).
        Err(_) => Err(
            kafka_transit_names::check_name(&String::from_utf8_lossy(name))
                .err()
                .unwrap_or("only letters, digits, '.', '_' and '-' are allowed"),
        ),
    }
}

/// Reads an envelope's header without decrypting. Checks, in this order: the version
/// byte, the key name (its length, then that it is a transit key name), the wrapped key
/// (its length, then that it is Vault's ciphertext text), and room for nonce and tag.
pub fn parse(envelope: &[u8]) -> Result<Header<'_>, FormatError> {
    let version = match envelope.first() {
        None => return Err(FormatError::Empty),
        Some(&version @ (FORMAT_VERSION_3 | FORMAT_VERSION | FORMAT_VERSION_1)) => version,
        Some(&other) => return Err(FormatError::UnknownVersion(other)),
    };
    let (flags, rest) = if version == FORMAT_VERSION_3 {
        let flags = *envelope
            .get(1)
            .ok_or(FormatError::Truncated("in the flags"))?;
        let flags = record::Flags::parse(flags).map_err(FormatError::UnknownFlags)?;
        (flags, &envelope[2..])
    } else {
        (record::Flags::NONE, &envelope[1..])
    };
    let (key_name, after_key_name) = field(rest, "in the key name")?;
    let key_name = check_key_name(key_name).map_err(FormatError::InvalidKeyName)?;
    let (commitment, after_commitment) = if version == FORMAT_VERSION_3 {
        let (commitment, rest) = after_key_name
            .split_first_chunk::<COMMITMENT_LEN>()
            .ok_or(FormatError::Truncated("in the key commitment"))?;
        (Some(commitment), rest)
    } else {
        (None, after_key_name)
    };
    let (wrapped_key, body) = field(after_commitment, "in the wrapped key")?;
    let wrapped_key = std::str::from_utf8(wrapped_key)
        .ok()
        .filter(|w| w.starts_with(WRAPPED_KEY_PREFIX))
        .ok_or(FormatError::WrappedKeyNotVault)?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(FormatError::Truncated("before the tag"));
    }
    let header_len = envelope.len() - body.len();
    let authenticated = match version {
        FORMAT_VERSION_1 => &envelope[..header_len],
        FORMAT_VERSION_3 => &envelope[..envelope.len() - after_commitment.len()],
        _ => &envelope[..3 + key_name.len()],
    };
    Ok(Header {
        version,
        flags,
        commitment,
        key_name,
        wrapped_key,
        authenticated,
        body,
    })
}

/// A u16-length-prefixed field at the start of `bytes`, and what follows it.
fn field<'a>(bytes: &'a [u8], where_: &'static str) -> Result<(&'a [u8], &'a [u8]), FormatError> {
    let truncated = || FormatError::Truncated(where_);
    let (length, rest) = bytes.split_first_chunk::<2>().ok_or_else(truncated)?;
    let length = usize::from(u16::from_be_bytes(*length));
    if rest.len() < length {
        return Err(truncated());
    }
    Ok(rest.split_at(length))
}

/// A version 2 header for `key_name` and `wrapped_key`, and the length of its
/// authenticated prefix (version byte, key name length, key name). Refuses what
/// [`parse`] would refuse, so nothing writes an envelope that readers cannot read.
pub fn header(key_name: &str, wrapped_key: &str) -> Result<(Vec<u8>, usize), WriteError> {
    write_header(FORMAT_VERSION, None, key_name, wrapped_key)
}

/// A version 3 header: `flags`, `key_name`, the data key's `commitment` and
/// `wrapped_key`, and the length of its authenticated prefix (everything before the
/// wrapped key).
pub fn header_v3(
    flags: record::Flags,
    key_name: &str,
    commitment: &[u8; COMMITMENT_LEN],
    wrapped_key: &str,
) -> Result<(Vec<u8>, usize), WriteError> {
    write_header(
        FORMAT_VERSION_3,
        Some((flags, commitment)),
        key_name,
        wrapped_key,
    )
}

fn write_header(
    version: u8,
    v3: Option<(record::Flags, &[u8; COMMITMENT_LEN])>,
    key_name: &str,
    wrapped_key: &str,
) -> Result<(Vec<u8>, usize), WriteError> {
    check_key_name(key_name.as_bytes()).map_err(WriteError::InvalidKeyName)?;
    if !wrapped_key.starts_with(WRAPPED_KEY_PREFIX) {
        return Err(WriteError::InvalidWrappedKey(
            "Vault's ciphertext text (vault:v...)",
        ));
    }
    let wrapped_len = u16::try_from(wrapped_key.len())
        .map_err(|_| WriteError::InvalidWrappedKey("at most 65,535 bytes long"))?;
    let key_name_len = key_name.len() as u16; // checked: at most MAX_KEY_NAME_LEN bytes
    let mut header = Vec::with_capacity(6 + COMMITMENT_LEN + key_name.len() + wrapped_key.len());
    header.push(version);
    if let Some((flags, _)) = v3 {
        header.push(flags.bits());
    }
    header.extend_from_slice(&key_name_len.to_be_bytes());
    header.extend_from_slice(key_name.as_bytes());
    if let Some((_, commitment)) = v3 {
        header.extend_from_slice(commitment);
    }
    let authenticated = header.len();
    header.extend_from_slice(&wrapped_len.to_be_bytes());
    header.extend_from_slice(wrapped_key.as_bytes());
    Ok((header, authenticated))
}

/// A version 2 envelope: the header for `key_name` and `wrapped_key`, then `body`
/// (nonce, ciphertext and tag).
pub fn assemble(key_name: &str, wrapped_key: &str, body: &[u8]) -> Result<Vec<u8>, WriteError> {
    let (mut envelope, _) = header(key_name, wrapped_key)?;
    envelope.extend_from_slice(body);
    Ok(envelope)
}

impl<'a> Header<'a> {
    /// The nonce: the first [`NONCE_LEN`] bytes of the body (fewer only in a header that
    /// [`parse`] did not make).
    pub fn nonce(&self) -> &'a [u8] {
        &self.body[..NONCE_LEN.min(self.body.len())]
    }

    /// The ciphertext followed by the tag.
    pub fn sealed(&self) -> &'a [u8] {
        &self.body[NONCE_LEN.min(self.body.len())..]
    }

    /// The same envelope with its data key wrapped as `wrapped_key` (a rewrap of the same
    /// data key): nonce, ciphertext and tag unchanged, and still valid, because the tag
    /// of versions 2 and 3 does not cover the wrapped key.
    pub fn rewrapped(&self, wrapped_key: &str) -> Result<Vec<u8>, WriteError> {
        let (mut envelope, _) = match (self.version, self.commitment) {
            (FORMAT_VERSION, _) => header(self.key_name, wrapped_key)?,
            (FORMAT_VERSION_3, Some(commitment)) => {
                header_v3(self.flags, self.key_name, commitment, wrapped_key)?
            }
            (version, _) => return Err(WriteError::NotRewrappable { version }),
        };
        envelope.extend_from_slice(self.body);
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../docs/envelope-test-vectors.json")).unwrap()
    }

    fn unhex(text: &serde_json::Value) -> Vec<u8> {
        let text = text.as_str().unwrap();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The published vectors were made by Python's `cryptography`, not by this code.
    #[test]
    fn parses_every_published_vector_and_writes_version_2_back_byte_for_byte() {
        let vectors = vectors();
        let vectors = vectors["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 7);
        for vector in vectors {
            let envelope = unhex(&vector["envelope_hex"]);
            let header = parse(&envelope).unwrap();
            assert_eq!(header.version, vector["format_version"]);
            assert_eq!(header.key_name, vector["key_name"]);
            assert_eq!(header.wrapped_key, vector["wrapped_key"]);
            assert_eq!(header.nonce(), unhex(&vector["nonce_hex"]));
            assert_eq!(
                header.authenticated.len(),
                match header.version {
                    FORMAT_VERSION => 3 + header.key_name.len(),
                    FORMAT_VERSION_3 => 4 + header.key_name.len() + COMMITMENT_LEN,
                    _ => 5 + header.key_name.len() + header.wrapped_key.len(),
                }
            );
            assert_eq!(header.sealed().len(), header.body.len() - NONCE_LEN);
            if header.version == FORMAT_VERSION {
                let (written, authenticated) =
                    super::header(header.key_name, header.wrapped_key).unwrap();
                assert_eq!(authenticated, header.authenticated.len());
                assert!(envelope.starts_with(&written));
                assert_eq!(
                    assemble(header.key_name, header.wrapped_key, header.body).unwrap(),
                    envelope
                );
            }
        }
    }

    /// Each tampered vector the format alone can refuse, for the reason it names; the
    /// others parse and are the tag's to refuse (the host's and the readers' tests).
    #[test]
    fn refuses_the_published_tampered_vectors_for_the_reason_they_name() {
        let vectors = vectors();
        let tampered = vectors["tampered"].as_array().unwrap();
        let mut key_name_cases = 0;
        for case in tampered {
            let envelope = unhex(&case["envelope_hex"]);
            let result = parse(&envelope);
            let expect = case["expect"].as_str().unwrap();
            match (expect, result) {
                ("version", Err(FormatError::UnknownVersion(_)))
                | ("truncated", Err(FormatError::Empty | FormatError::Truncated(_)))
                | ("authentication", Ok(_)) => {}
                ("key name", Err(error @ FormatError::InvalidKeyName(_))) => {
                    key_name_cases += 1;
                    let message = error.to_string();
                    assert!(!message.contains("tenant"), "{message}");
                    assert!(!message.contains("sys"), "{message}");
                }
                (_, result) => panic!("{}: expected {expect}, got {result:?}", case["name"]),
            }
        }
        assert!(key_name_cases >= 5, "{key_name_cases} key name cases");
    }

    #[test]
    fn a_key_name_that_is_no_transit_key_name_is_refused_without_being_quoted() {
        let body = [0u8; NONCE_LEN + TAG_LEN];
        let raw = |name: &[u8]| {
            let mut envelope = vec![FORMAT_VERSION];
            envelope.extend_from_slice(&(name.len() as u16).to_be_bytes());
            envelope.extend_from_slice(name);
            envelope.extend_from_slice(&13u16.to_be_bytes());
            envelope.extend_from_slice(b"vault:v1:AAAA");
            envelope.extend_from_slice(&body);
            envelope
        };
        for name in [
            &b".."[..],
            b".",
            b"",
            b"a/b",
            b"../../sys/seal",
            b"a b",
            b"k\xc3\xa9y",
            b"customers\xff",
            &[b'k'; 250],
        ] {
            let error = parse(&raw(name)).unwrap_err();
            assert!(
                matches!(error, FormatError::InvalidKeyName(_)),
                "{name:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                name.len() <= 2 || !message.contains(&*String::from_utf8_lossy(name)),
                "{message}"
            );
            assert_eq!(
                super::header(&String::from_utf8_lossy(name), "vault:v1:AAAA"),
                Err(WriteError::InvalidKeyName(
                    check_key_name(name).unwrap_err()
                ))
            );
        }
        for name in ["customers", "team.tenant-a", "a_b-C.9", &"k".repeat(249)] {
            let envelope = raw(name.as_bytes());
            assert_eq!(parse(&envelope).unwrap().key_name, name);
            assert_eq!(
                assemble(name, "vault:v1:AAAA", &body).unwrap(),
                envelope,
                "the writer writes what the parser reads"
            );
        }
    }

    #[test]
    fn other_malformed_input_is_named() {
        let good = assemble("k", "vault:v1:x", &[0; 28]).unwrap();
        assert_eq!(parse(b""), Err(FormatError::Empty));
        assert_eq!(
            parse(br#"{"a":1}"#).unwrap_err().to_string(),
            "not a kafka-transit envelope: unknown format version 0x7b"
        );
        assert_eq!(
            parse(&good[..2]),
            Err(FormatError::Truncated("in the key name"))
        );
        assert_eq!(
            parse(&good[..3]),
            Err(FormatError::Truncated("in the key name"))
        );
        assert_eq!(
            parse(&good[..4]),
            Err(FormatError::Truncated("in the wrapped key"))
        );
        assert_eq!(
            parse(&good[..6]),
            Err(FormatError::Truncated("in the wrapped key"))
        );
        assert_eq!(
            parse(&good[..good.len() - 1]),
            Err(FormatError::Truncated("before the tag"))
        );
        let mut not_vault = good.clone();
        not_vault[6] = b'V'; // "Vault:v1:x"
        assert_eq!(parse(&not_vault), Err(FormatError::WrappedKeyNotVault));
        assert!(matches!(
            assemble("k", "not-vault", &[]),
            Err(WriteError::InvalidWrappedKey(_))
        ));
        let long = format!("vault:v1:{}", "A".repeat(65_536));
        assert!(matches!(
            header("k", &long),
            Err(WriteError::InvalidWrappedKey(_))
        ));
    }

    #[test]
    fn a_rewrapped_vector_is_the_published_rewrapped_one_and_version_1_is_not_rewrapped() {
        let vectors = vectors();
        let vectors = vectors["vectors"].as_array().unwrap();
        let envelope = |name: &str| {
            let vector = vectors.iter().find(|v| v["name"] == name).unwrap();
            unhex(&vector["envelope_hex"])
        };
        let hello2 = envelope("hello (v2)");
        let published =
            envelope("hello (v2), data key rewrapped to version 2: same nonce, ciphertext and tag");
        let rewrapped_key = parse(&published).unwrap().wrapped_key;
        assert_eq!(
            parse(&hello2).unwrap().rewrapped(rewrapped_key).unwrap(),
            published
        );
        let hello1 = envelope("hello");
        let error = parse(&hello1)
            .unwrap()
            .rewrapped("vault:v2:AAAA")
            .unwrap_err();
        assert_eq!(error, WriteError::NotRewrappable { version: 1 });
        assert!(error.to_string().contains("version 1 authenticates"));
    }

    #[test]
    fn no_input_panics() {
        let good = assemble("customers", "vault:v1:AAAA", &[7; 40]).unwrap();
        for cut in 0..=good.len() {
            let _ = parse(&good[..cut]);
        }
        for at in 0..good.len() {
            for byte in [0x00, 0x01, 0x2f, 0x7f, 0xff] {
                let mut changed = good.clone();
                changed[at] = byte;
                if let Ok(header) = parse(&changed) {
                    assert_eq!(header.nonce().len(), NONCE_LEN);
                }
            }
        }
    }
}
