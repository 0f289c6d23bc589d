//! Authenticated positions. Exactly-once keeps each source partition's next offset in
//! the offsets topic on the *sink* cluster, and a runner that takes the partition
//! resumes from it: whoever operates the sink cluster could rewrite it and make the
//! runner skip source records unseen. So each position carries an HMAC-SHA256 under a
//! data key that only runners hold: Vault generates it under `pipeline.offsets_key`
//! (`datakey/plaintext`), and its wrapped form travels with the position, so a runner
//! started later unwraps it (Vault `decrypt`, once per data key) and checks the position.
//! A position that fails is refused, reported, and the partition starts from the
//! source group's committed offset instead (the copy each commit leaves on the source
//! cluster): at worst records are repeated, never skipped.
//!
//! What it does not stop: the sink operator can replay an older authentic position or
//! delete the latest one, which makes the runner repeat records (not skip them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::Mac;
use zeroize::Zeroizing;

use crate::pipeline::ownership::Partition;
use crate::vault::{DecryptInput, VaultClient, VaultError};

/// How long one data key signs positions before a new one is asked for.
const SIGNING_KEY_LIFETIME: Duration = Duration::from_secs(3600);

/// A position as the offsets topic holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SignedPosition {
    pub offset: i64,
    /// HMAC-SHA256 (hex) of [`message`] under the data key.
    pub hmac: String,
    /// The data key, wrapped by `pipeline.offsets_key`: `vault:vN:...`.
    pub data_key: String,
}

/// Why a position was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a signed position (written by a runner before positions were authenticated,
    /// or by someone else).
    Unsigned,
    /// Vault did not unwrap its data key under `pipeline.offsets_key`.
    UnknownKey(String),
    /// The HMAC does not match: written by someone without the data key.
    Forged,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str(
                "it carries no authentication (written by a kafka-transit before 0.2.1 positions \
                 were signed, or by someone else)",
            ),
            Refusal::UnknownKey(detail) => write!(
                f,
                "its data key is not one of pipeline.offsets_key's ({detail})"
            ),
            Refusal::Forged => {
                f.write_str("its HMAC does not match (written by someone without the runners' key)")
            }
        }
    }
}

struct SigningKey {
    material: Zeroizing<[u8; 32]>,
    wrapped: String,
    created: Instant,
}

/// Signs and checks positions; shared by the partitions' commits.
pub(crate) struct PositionAuthenticator {
    vault: VaultClient,
    key: String,
    group: String,
    /// Vault's futures are driven from the blocking threads commits run on.
    runtime: tokio::runtime::Handle,
    signing: Mutex<Option<SigningKey>>,
}

/// What is authenticated: the group, the source partition and its offset, so that a
/// position cannot be moved to another partition or group.
fn message(group: &str, (topic, partition): &Partition, offset: i64) -> Vec<u8> {
    format!("kafka-transit/offsets/1\0{group}\0{topic}\0{partition}\0{offset}").into_bytes()
}

fn hmac_hex(key: &[u8; 32], message: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

impl PositionAuthenticator {
    pub(crate) fn new(
        vault: VaultClient,
        key: String,
        group: String,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        PositionAuthenticator {
            vault,
            key,
            group,
            runtime,
            signing: Mutex::new(None),
        }
    }

    /// The transit key positions are signed under (`pipeline.offsets_key`).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// `next` for `partition`, signed. Blocking (asks Vault for a data key once an hour).
    pub(crate) fn sign(
        &self,
        partition: &Partition,
        next: i64,
    ) -> Result<SignedPosition, VaultError> {
        let mut signing = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let stale = signing
            .as_ref()
            .is_none_or(|key| key.created.elapsed() > SIGNING_KEY_LIFETIME);
        if stale {
            let fresh = self
                .runtime
                .block_on(self.vault.generate_data_key(&self.key, None))?;
            let material: [u8; 32] =
                fresh
                    .plaintext
                    .as_slice()
                    .try_into()
                    .map_err(|_| VaultError::Protocol {
                        detail: "Vault returned a data key that is not 256 bits".into(),
                    })?;
            *signing = Some(SigningKey {
                material: Zeroizing::new(material),
                wrapped: fresh.ciphertext.clone(),
                created: Instant::now(),
            });
        }
        let key = signing.as_ref().expect("just made");
        Ok(SignedPosition {
            offset: next,
            hmac: hmac_hex(&key.material, &message(&self.group, partition, next)),
            data_key: key.wrapped.clone(),
        })
    }

    /// Checks each position read back (its raw JSON value); one Vault request for the
    /// data keys of all of them. The outer error is Vault's (unavailable, refused).
    /// Blocking.
    pub(crate) fn verify(
        &self,
        positions: &[(Partition, Vec<u8>)],
    ) -> Result<Vec<Result<i64, Refusal>>, VaultError> {
        let parsed: Vec<Option<SignedPosition>> = positions
            .iter()
            .map(|(_, value)| serde_json::from_slice(value).ok())
            .collect();
        let mut wrapped: Vec<&str> = parsed
            .iter()
            .flatten()
            .map(|position| position.data_key.as_str())
            .collect();
        wrapped.sort_unstable();
        wrapped.dedup();
        let mut keys: HashMap<&str, Result<Zeroizing<[u8; 32]>, String>> = HashMap::new();
        if !wrapped.is_empty() {
            let inputs: Vec<DecryptInput<'_>> =
                wrapped.iter().map(|w| DecryptInput::new(w)).collect();
            let answers = self
                .runtime
                .block_on(self.vault.decrypt_batch(&self.key, &inputs))?;
            for (wrapped, answer) in wrapped.iter().zip(answers) {
                let key = match answer {
                    Ok(raw) => {
                        let raw = Zeroizing::new(raw);
                        <[u8; 32]>::try_from(raw.as_slice())
                            .map(Zeroizing::new)
                            .map_err(|_| "not a 256-bit data key".to_string())
                    }
                    Err(error) => Err(error.message),
                };
                keys.insert(wrapped, key);
            }
        }
        Ok(positions
            .iter()
            .zip(&parsed)
            .map(|((partition, _), position)| {
                let position = position.as_ref().ok_or(Refusal::Unsigned)?;
                let key = keys
                    .get(position.data_key.as_str())
                    .expect("every data key was looked up")
                    .as_ref()
                    .map_err(|detail| Refusal::UnknownKey(detail.clone()))?;
                let expected = hmac_hex(key, &message(&self.group, partition, position.offset));
                if constant_time_eq(expected.as_bytes(), position.hmac.as_bytes()) {
                    Ok(position.offset)
                } else {
                    Err(Refusal::Forged)
                }
            })
            .collect())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(n: i32) -> Partition {
        ("orders".to_string(), n)
    }

    #[test]
    fn signed_positions_verify_and_any_change_is_refused() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime
            .block_on(vault_dev::Server::start(vault_dev::ServerConfig::default()))
            .unwrap();
        let settings = crate::vault::VaultSettings::for_token(server.url(), "UNUSED");
        let vault = VaultClient::with_token(
            &settings,
            crate::vault::VaultToken::new(server.root_token().to_string()),
        )
        .unwrap();
        runtime
            .block_on(vault.encrypt("kafka-transit-offsets", b"create", None))
            .unwrap();
        let signer = PositionAuthenticator::new(
            vault.clone(),
            "kafka-transit-offsets".into(),
            "group-a".into(),
            runtime.handle().clone(),
        );
        let signed = signer.sign(&partition(0), 42).unwrap();
        let value = |p: &SignedPosition| serde_json::to_vec(p).unwrap();

        let mut moved = signed.clone();
        moved.offset = 1_000_000;
        let mut other_key = signer.sign(&partition(1), 7).unwrap();
        other_key.data_key = "vault:v1:bm90LWEta2V5".into();
        let other_group = PositionAuthenticator::new(
            vault,
            "kafka-transit-offsets".into(),
            "group-b".into(),
            runtime.handle().clone(),
        );
        let answers = signer
            .verify(&[
                (partition(0), value(&signed)),
                (partition(0), value(&moved)),
                // A position copied to another partition.
                (partition(2), value(&signed)),
                (partition(1), value(&other_key)),
                (partition(3), br#"{"offset": 5}"#.to_vec()),
            ])
            .unwrap();
        assert_eq!(answers[0], Ok(42));
        assert_eq!(answers[1], Err(Refusal::Forged), "a skipped-ahead offset");
        assert_eq!(
            answers[2],
            Err(Refusal::Forged),
            "another partition's position"
        );
        assert!(
            matches!(answers[3], Err(Refusal::UnknownKey(_))),
            "{:?}",
            answers[3]
        );
        assert_eq!(
            answers[4],
            Err(Refusal::Unsigned),
            "an unsigned (old) position"
        );
        // Another group's runners do not accept this group's positions.
        assert_eq!(
            other_group
                .verify(&[(partition(0), value(&signed))])
                .unwrap()[0],
            Err(Refusal::Forged)
        );
        drop(server);
    }
}
