//! Signs JWTs with a key made on the spot: for tests and demos of the `jwt` auth
//! method, against vault-dev or a real Vault/OpenBao configured with
//! [`JwtSigner::public_key_pem`].

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// `SubjectPublicKeyInfo` of a P-256 key up to the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ES256 signing key.
pub struct JwtSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSigner(ES256, <private key redacted>)")
    }
}

impl JwtSigner {
    /// A fresh P-256 key.
    pub fn generate() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("cannot load the generated P-256 key"))?;
        Ok(Self { key, rng })
    }

    /// The public key as PEM, for `jwt_validation_pubkeys`.
    pub fn public_key_pem(&self) -> String {
        let der = [&P256_SPKI_PREFIX[..], self.key.public_key().as_ref()].concat();
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// A compact JWS of `claims` (a JSON object).
    pub fn sign(&self, claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
        let signed = format!(
            "{}.{}",
            part(&json!({ "alg": "ES256", "typ": "JWT" })),
            part(claims)
        );
        let sig = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// Seconds since the Unix epoch, for `iat`, `nbf` and `exp`.
pub fn unix_now() -> i64 {
    crate::keys::now_ms() / 1000
}
