//! The `vault:v<version>:<base64>` text form shared by ciphertexts and HMACs.

/// The prefix every ciphertext starts with.
pub const PREFIX: &str = "vault:v";

/// Why a ciphertext's text form was rejected (Vault's exact messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid ciphertext: no prefix")]
    NoPrefix,
    #[error("invalid ciphertext: wrong number of fields")]
    WrongFields,
    #[error("invalid ciphertext: version number could not be decoded")]
    BadVersion,
}

/// A ciphertext split into its version and (still base64) payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// As written; Vault treats 0 as 1 and checks the range against the key later.
    pub version: i64,
    pub payload: &'a str,
}

/// Split a ciphertext. Like Vault, only the first `:` after the version separates
/// the payload, so a payload holding `:` fails later, at base64 decoding.
pub fn parse(text: &str) -> Result<Parsed<'_>, ParseError> {
    let rest = text.strip_prefix(PREFIX).ok_or(ParseError::NoPrefix)?;
    let (version, payload) = rest.split_once(':').ok_or(ParseError::WrongFields)?;
    // Go's strconv.Atoi: optional sign, decimal digits, 64-bit range.
    let version = version.parse::<i64>().map_err(|_| ParseError::BadVersion)?;
    Ok(Parsed { version, payload })
}

/// Format a payload under a key version.
pub fn format(version: u32, payload: &[u8]) -> String {
    format!("{PREFIX}{version}:{}", crate::gobase64::encode(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid() {
        assert_eq!(
            parse("vault:v12:AAAA"),
            Ok(Parsed {
                version: 12,
                payload: "AAAA"
            })
        );
        // The payload keeps any further colons.
        assert_eq!(parse("vault:v1:a:b").unwrap().payload, "a:b");
    }

    #[test]
    fn rejects_like_vault() {
        assert_eq!(parse("abc"), Err(ParseError::NoPrefix));
        assert_eq!(parse("vault:1:AAAA"), Err(ParseError::NoPrefix));
        assert_eq!(parse("vault:v1"), Err(ParseError::WrongFields));
        assert_eq!(parse("vault:vx:AAAA"), Err(ParseError::BadVersion));
        assert_eq!(parse("vault:v:AAAA"), Err(ParseError::BadVersion));
        assert_eq!(
            ParseError::BadVersion.to_string(),
            "invalid ciphertext: version number could not be decoded"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format(3, &[0, 0, 0]), "vault:v3:AAAA");
    }
}
