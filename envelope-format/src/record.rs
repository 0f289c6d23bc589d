//! Format 3 beyond the envelope bytes (docs/protected-records.md): the flags byte, the
//! `kafka-transit.protection` header that carries it in clear, the binding data every
//! ciphertext authenticates, the frame that carries sealed headers, and padding.
//! Readers and writers in every language implement exactly this; the host and the
//! policy SDK use this module.

use std::fmt;

/// The header every format 3 record carries in clear: `3;<flags as two hex digits>`.
pub const PROTECTION_HEADER: &str = "kafka-transit.protection";
/// What binding data starts with.
pub const BINDING_PREFIX: &[u8] = b"kafka-transit/3";

/// The flags byte of a format 3 record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

/// How the record key on the sink relates to the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKeys {
    Kept,
    /// Vault convergent encryption: reversible, deterministic.
    Encrypted,
    /// Vault HMAC: one-way, deterministic.
    Hmac,
}

/// Compression of an envelope's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Lz4,
}

impl Flags {
    pub const NONE: Flags = Flags(0);
    pub const STREAM: u8 = 0x01;
    pub const KEY: u8 = 0x02;
    pub const HEADERS: u8 = 0x04;
    pub const PADDED: u8 = 0x08;
    const COMPRESSION: u8 = 0x30;
    const ZSTD: u8 = 0x10;
    const LZ4: u8 = 0x20;
    const RECORD_KEYS: u8 = 0xc0;
    const KEYS_ENCRYPTED: u8 = 0x40;
    const KEYS_HMAC: u8 = 0x80;

    /// The flags of `byte`, or the byte back when it has a meaning no version gives.
    pub fn parse(byte: u8) -> Result<Flags, u8> {
        if byte & Self::COMPRESSION == Self::COMPRESSION
            || byte & Self::RECORD_KEYS == Self::RECORD_KEYS
        {
            return Err(byte);
        }
        Ok(Flags(byte))
    }

    pub fn new(
        stream: bool,
        key: bool,
        headers: bool,
        record_keys: RecordKeys,
        compression: Compression,
        padded: bool,
    ) -> Flags {
        let mut byte = 0;
        for (set, bit) in [
            (stream, Self::STREAM),
            (key, Self::KEY),
            (headers, Self::HEADERS),
            (padded, Self::PADDED),
        ] {
            if set {
                byte |= bit;
            }
        }
        byte |= match compression {
            Compression::None => 0,
            Compression::Zstd => Self::ZSTD,
            Compression::Lz4 => Self::LZ4,
        };
        byte |= match record_keys {
            RecordKeys::Kept => 0,
            RecordKeys::Encrypted => Self::KEYS_ENCRYPTED,
            RecordKeys::Hmac => Self::KEYS_HMAC,
        };
        Flags(byte)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn stream(self) -> bool {
        self.0 & Self::STREAM != 0
    }

    pub fn key(self) -> bool {
        self.0 & Self::KEY != 0
    }

    pub fn headers(self) -> bool {
        self.0 & Self::HEADERS != 0
    }

    pub fn padded(self) -> bool {
        self.0 & Self::PADDED != 0
    }

    pub fn compression(self) -> Compression {
        match self.0 & Self::COMPRESSION {
            Self::ZSTD => Compression::Zstd,
            Self::LZ4 => Compression::Lz4,
            _ => Compression::None,
        }
    }

    pub fn record_keys(self) -> RecordKeys {
        match self.0 & Self::RECORD_KEYS {
            Self::KEYS_ENCRYPTED => RecordKeys::Encrypted,
            Self::KEYS_HMAC => RecordKeys::Hmac,
            _ => RecordKeys::Kept,
        }
    }

    /// These flags with compression and padding as given (what the host sets when it
    /// seals; a policy chooses the rest).
    pub fn with_body(self, compression: Compression, padded: bool) -> Flags {
        let mut byte = self.0 & !(Self::COMPRESSION | Self::PADDED);
        byte |= match compression {
            Compression::None => 0,
            Compression::Zstd => Self::ZSTD,
            Compression::Lz4 => Self::LZ4,
        };
        if padded {
            byte |= Self::PADDED;
        }
        Flags(byte)
    }

    /// The value of the [`PROTECTION_HEADER`]: `3;0b`.
    pub fn header_value(self) -> String {
        format!("3;{:02x}", self.0)
    }

    /// Reads a [`PROTECTION_HEADER`] value.
    pub fn from_header_value(value: &[u8]) -> Result<Flags, ProtectionError> {
        let hex = value
            .strip_prefix(b"3;")
            .ok_or(ProtectionError::UnknownFormat)?;
        let text = std::str::from_utf8(hex).map_err(|_| ProtectionError::Malformed)?;
        if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProtectionError::Malformed);
        }
        let byte = u8::from_str_radix(text, 16).map_err(|_| ProtectionError::Malformed)?;
        Flags::parse(byte).map_err(ProtectionError::UnknownFlags)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags(0x{:02x})", self.0)
    }
}

/// Why a protection header, a frame or padding is not format 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtectionError {
    /// The protection header names another format than 3.
    UnknownFormat,
    /// The protection header is not `3;` and two hex digits.
    Malformed,
    UnknownFlags(u8),
    /// A frame or padding that ends too soon or holds what it may not.
    BadFrame(&'static str),
    BadPadding(&'static str),
}

impl fmt::Display for ProtectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtectionError::UnknownFormat => {
                write!(f, "the {PROTECTION_HEADER} header names an unknown format")
            }
            ProtectionError::Malformed => write!(
                f,
                "the {PROTECTION_HEADER} header is not \"3;\" and two hex digits"
            ),
            ProtectionError::UnknownFlags(byte) => write!(
                f,
                "the {PROTECTION_HEADER} header has unknown flags 0x{byte:02x}"
            ),
            ProtectionError::BadFrame(why) => write!(f, "the sealed headers' frame {why}"),
            ProtectionError::BadPadding(why) => write!(f, "the padding {why}"),
        }
    }
}

impl std::error::Error for ProtectionError {}

/// The binding data of a record (docs/protected-records.md, "Binding data"): what its
/// ciphertexts authenticate. `stream` and `key` are used only when `flags` bind them;
/// `key` is the record key as on the sink, `None` for a null key; `pointer` is a field
/// ciphertext's JSON Pointer.
pub fn binding(flags: Flags, stream: &str, key: Option<&[u8]>, pointer: Option<&str>) -> Vec<u8> {
    let mut data =
        Vec::with_capacity(BINDING_PREFIX.len() + 8 + stream.len() + key.map_or(0, <[u8]>::len));
    data.extend_from_slice(BINDING_PREFIX);
    data.push(flags.bits());
    data.extend_from_slice(&binding_parts(flags, stream, key, pointer));
    data
}

/// [`binding`] without its prefix and flags byte: what an envelope's associated data
/// adds to its authenticated header (which holds the flags already).
pub fn binding_parts(
    flags: Flags,
    stream: &str,
    key: Option<&[u8]>,
    pointer: Option<&str>,
) -> Vec<u8> {
    let mut data = Vec::new();
    if flags.stream() {
        // A stream is a topic name or a configured name of at most 249 characters
        // (checked where it is configured), so its length fits.
        data.extend_from_slice(&(stream.len() as u16).to_be_bytes());
        data.extend_from_slice(stream.as_bytes());
    }
    if flags.key() {
        match key {
            None => data.push(0),
            Some(key) => {
                data.push(1);
                data.extend_from_slice(&(key.len() as u32).to_be_bytes());
                data.extend_from_slice(key);
            }
        }
    }
    if let Some(pointer) = pointer {
        data.extend_from_slice(&(pointer.len() as u32).to_be_bytes());
        data.extend_from_slice(pointer.as_bytes());
    }
    data
}

/// A header sealed in a frame: its name, and its value (`None`: a header without value).
pub type FrameHeader = (String, Option<Vec<u8>>);

/// The frame that carries sealed headers and the value: `u32 count ‖ (u32 name length ‖
/// name ‖ i32 value length or -1 ‖ value)* ‖ value`.
pub fn frame(headers: &[FrameHeader], value: &[u8]) -> Vec<u8> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(4 + size + value.len());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, header_value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        match header_value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out.extend_from_slice(value);
    out
}

/// The sealed headers and the value of a frame.
pub fn unframe(frame: &[u8]) -> Result<(Vec<FrameHeader>, &[u8]), ProtectionError> {
    let short = ProtectionError::BadFrame("ends too soon");
    let (count, mut rest) = frame.split_first_chunk::<4>().ok_or(short)?;
    let count = u32::from_be_bytes(*count) as usize;
    // Each header takes at least 8 bytes: a count beyond that cannot be honest, and
    // must not size an allocation.
    if count > rest.len() / 8 {
        return Err(short);
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let (length, after) = rest.split_first_chunk::<4>().ok_or(short)?;
        let length = u32::from_be_bytes(*length) as usize;
        if after.len() < length {
            return Err(short);
        }
        let (name, after) = after.split_at(length);
        let name = std::str::from_utf8(name)
            .map_err(|_| ProtectionError::BadFrame("holds a header name that is not UTF-8"))?;
        let (length, after) = after.split_first_chunk::<4>().ok_or(short)?;
        let length = i32::from_be_bytes(*length);
        let (value, after) = match length {
            -1 => (None, after),
            length if length >= 0 && after.len() >= length as usize => {
                let (value, after) = after.split_at(length as usize);
                (Some(value.to_vec()), after)
            }
            length if length >= 0 => return Err(short),
            _ => return Err(ProtectionError::BadFrame("holds a negative value length")),
        };
        headers.push((name.to_string(), value));
        rest = after;
    }
    Ok((headers, rest))
}

/// `data` padded to a multiple of `pad_to` bytes (`pad_to` > 0): `u32 length ‖ data ‖
/// zeros`.
pub fn pad(data: &[u8], pad_to: usize) -> Vec<u8> {
    let unpadded = 4 + data.len();
    let total = unpadded.div_ceil(pad_to.max(1)) * pad_to.max(1);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(total, 0);
    out
}

/// The data [`pad`] padded. Refuses a length past the end and padding that is not zeros
/// (the tag covers it anyway; a writer that pads otherwise is not this format).
pub fn unpad(padded: &[u8]) -> Result<&[u8], ProtectionError> {
    let (length, rest) = padded
        .split_first_chunk::<4>()
        .ok_or(ProtectionError::BadPadding("ends too soon"))?;
    let length = u32::from_be_bytes(*length) as usize;
    if length > rest.len() {
        return Err(ProtectionError::BadPadding("gives a length past the end"));
    }
    let (data, zeros) = rest.split_at(length);
    if zeros.iter().any(|&b| b != 0) {
        return Err(ProtectionError::BadPadding("is not zeros"));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_the_protection_header_and_unknown_bits_are_refused() {
        let flags = Flags::new(
            true,
            true,
            true,
            RecordKeys::Encrypted,
            Compression::Zstd,
            true,
        );
        assert_eq!(flags.bits(), 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x40);
        assert_eq!(flags.header_value(), "3;5f");
        assert_eq!(Flags::from_header_value(b"3;5f"), Ok(flags));
        assert!(flags.stream() && flags.key() && flags.headers() && flags.padded());
        assert_eq!(flags.compression(), Compression::Zstd);
        assert_eq!(flags.record_keys(), RecordKeys::Encrypted);
        assert_eq!(Flags::parse(0x30), Err(0x30));
        assert_eq!(Flags::parse(0xc0), Err(0xc0));
        assert_eq!(
            Flags::from_header_value(b"2;01"),
            Err(ProtectionError::UnknownFormat)
        );
        for bad in [&b"3;1"[..], b"3;001", b"3;zz", b"3;+1", b"3; 1"] {
            assert_eq!(
                Flags::from_header_value(bad),
                Err(ProtectionError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            Flags::from_header_value(b"3;f3"),
            Err(ProtectionError::UnknownFlags(0xf3))
        );
        let body = Flags::new(
            true,
            false,
            false,
            RecordKeys::Hmac,
            Compression::None,
            false,
        )
        .with_body(Compression::Lz4, true);
        assert_eq!(body.bits(), 0x01 | 0x80 | 0x20 | 0x08);
    }

    #[test]
    fn binding_data_is_as_published() {
        let flags = Flags::new(
            true,
            true,
            false,
            RecordKeys::Kept,
            Compression::None,
            false,
        );
        let data = binding(flags, "orders", Some(b"k1"), Some("/ssn"));
        let mut expected = b"kafka-transit/3".to_vec();
        expected.push(0x03);
        expected.extend_from_slice(&[0, 6]);
        expected.extend_from_slice(b"orders");
        expected.extend_from_slice(&[1, 0, 0, 0, 2]);
        expected.extend_from_slice(b"k1");
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(b"/ssn");
        assert_eq!(data, expected);
        assert_eq!(
            binding_parts(flags, "orders", Some(b"k1"), Some("/ssn")),
            &expected[16..]
        );
        // A null key and an empty one differ; unbound parts are left out.
        assert_ne!(
            binding(flags, "s", None, None),
            binding(flags, "s", Some(b""), None)
        );
        assert_eq!(
            binding(Flags::NONE, "ignored", Some(b"ignored"), None),
            b"kafka-transit/3\x00"
        );
    }

    #[test]
    fn frames_keep_order_repeats_and_valueless_headers() {
        let headers: Vec<FrameHeader> = vec![
            ("a".into(), Some(b"1".to_vec())),
            ("a".into(), Some(b"2".to_vec())),
            ("empty".into(), Some(Vec::new())),
            ("none".into(), None),
        ];
        let framed = frame(&headers, b"value");
        let (back, value) = unframe(&framed).unwrap();
        assert_eq!(back, headers);
        assert_eq!(value, b"value");
        assert_eq!(unframe(&frame(&[], b"")).unwrap(), (Vec::new(), &b""[..]));
        for cut in 0..framed.len() - 5 {
            assert!(unframe(&framed[..cut]).is_err(), "cut at {cut}");
        }
        // A huge count is refused before anything is allocated for it.
        assert!(unframe(&[0xff, 0xff, 0xff, 0xff, 0, 0]).is_err());
    }

    #[test]
    fn padding_hides_the_length_up_to_its_multiple() {
        for (data, pad_to, total) in [
            (&b""[..], 16, 16),
            (b"abc", 16, 16),
            (&[7; 12], 16, 16),
            (&[7; 13], 16, 32),
            (b"x", 1, 5),
        ] {
            let padded = pad(data, pad_to);
            assert_eq!(padded.len(), total, "{data:?} to {pad_to}");
            assert_eq!(unpad(&padded).unwrap(), data);
        }
        let mut bad = pad(b"abc", 16);
        bad[10] = 1;
        assert!(unpad(&bad).is_err());
        assert!(unpad(&[0, 0, 1, 0, 1]).is_err());
        assert!(unpad(&[0, 0]).is_err());
    }
}
