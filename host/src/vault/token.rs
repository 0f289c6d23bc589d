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
    /// never log it). Its bytes live in a buffer that is wiped when the last clone of
    /// the header is dropped (hyper's copy into its write buffer is beyond reach).
    pub(crate) fn header_value(&self) -> Result<reqwest::header::HeaderValue, ()> {
        // What `HeaderValue::from_str` accepts (`from_maybe_shared` would also take
        // bytes above 0x7f, which no token has).
        if !self
            .expose()
            .bytes()
            .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
        {
            return Err(());
        }
        let owned = Zeroizing::new(self.expose().as_bytes().to_vec());
        let mut v =
            reqwest::header::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(owned))
                .map_err(|_| ())?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Deserializes a token (a login's `client_token`) straight into wiped memory: the
    /// one copy made is the token's own buffer. serde_json borrows the text from the
    /// body; only a string with JSON escapes, which no token has, would pass through its
    /// unwiped scratch buffer.
    pub(crate) fn deserialize_wiped<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = VaultToken;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VaultToken, E> {
                Ok(VaultToken::new(v.to_owned()))
            }
        }
        d.deserialize_str(V)
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
    fn header_is_the_token_and_refuses_what_a_header_cannot_carry() {
        let t = VaultToken::new("hvs.CAES\tx~".into());
        assert_eq!(t.header_value().unwrap().as_bytes(), b"hvs.CAES\tx~");
        for bad in ["a\nb", "caf\u{e9}", "\u{7f}"] {
            assert!(
                VaultToken::new(bad.into()).header_value().is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn deserializes_into_wiped_memory_and_stays_hidden() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Auth {
            #[serde(deserialize_with = "VaultToken::deserialize_wiped")]
            client_token: VaultToken,
        }
        let a: Auth = serde_json::from_str(r#"{"client_token":"hvs.from-json"}"#).unwrap();
        assert_eq!(a.client_token.expose(), "hvs.from-json");
        let _: &Zeroizing<String> = &a.client_token.0;
        assert!(!format!("{a:?}").contains("from-json"));
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
