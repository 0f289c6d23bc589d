//! Tokens and data keys: secrets that must never be printed.

use std::fmt;

use zeroize::Zeroizing;

/// A Vault token. Wiped from memory when dropped; `Debug` never shows it and there is no
/// `Display`.
#[derive(Clone)]
pub struct VaultToken(Zeroizing<String>);

impl VaultToken {
    pub fn new(token: String) -> Self {
        VaultToken(Zeroizing::new(token))
    }

    /// The token itself, for the `X-Vault-Token` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Builds the `X-Vault-Token` header value (marked sensitive so that reqwest/hyper
    /// never log it).
    pub(crate) fn header_value(&self) -> Result<reqwest::header::HeaderValue, ()> {
        let mut v = reqwest::header::HeaderValue::from_str(self.expose()).map_err(|_| ())?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultToken(<redacted>)")
    }
}

/// A data key from `datakey/plaintext`: the raw key bytes (wiped on drop) and the same
/// key encrypted under the transit key.
pub struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext: String,
    pub key_version: u64,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field(
                "plaintext",
                &format_args!("<redacted {} bytes>", self.plaintext.len()),
            )
            .field("ciphertext", &self.ciphertext)
            .field("key_version", &self.key_version)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = VaultToken::new("hvs.CAESIsecretsecret".into());
        let s = format!("{t:?} {:#?}", t);
        assert!(!s.contains("secret"));
        assert!(s.contains("VaultToken(<redacted>)"));
        assert!(t.header_value().unwrap().is_sensitive());
    }

    #[test]
    fn datakey_debug_hides_plaintext() {
        let dk = DataKey {
            plaintext: Zeroizing::new(vec![0xAB; 32]),
            ciphertext: "vault:v1:abc".into(),
            key_version: 1,
        };
        let s = format!("{dk:?}");
        assert!(s.contains("vault:v1:abc"));
        assert!(s.contains("redacted 32 bytes"));
        assert!(!s.contains("171") && !s.to_lowercase().contains("abab"));
    }
}
