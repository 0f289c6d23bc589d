//! The start-up check: does the runner's token have every permission the pipeline
//! needs? Asked once with `sys/capabilities-self`; keys that records name (header
//! templates) are left to the records.

use super::{Access, Grant, Token};
use crate::config::PipelineConfig;
use crate::vault::{VaultClient, VaultError};

/// Why the token will not do.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "the Vault token lacks {} this pipeline needs:\n{}\nGrant them in the token's Vault \
         policy (`kafka-transit vault-policy --config FILE` prints the whole policy this \
         pipeline needs), or set vault.check_permissions = false to skip this check",
        if .missing.len() == 1 { "a permission" } else { "permissions" },
        list(.missing)
    )]
    Missing { missing: Vec<Grant> },
    /// `sys/capabilities-self` itself failed (denied, or Vault unavailable).
    #[error("checking the Vault token's permissions (sys/capabilities-self): {0}")]
    Vault(#[from] VaultError),
}

fn list(missing: &[Grant]) -> String {
    missing
        .iter()
        .map(|g| {
            format!(
                "  `{}` on {} ({})",
                g.capability.as_str(),
                g.path,
                g.reasons.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `run` checks at start: the access `config` needs, with what `vault` knows of its
/// token (whether it renews it).
pub async fn verify_pipeline(
    vault: &VaultClient,
    config: &PipelineConfig,
) -> Result<(), CheckError> {
    let token = Token {
        renewed: vault.renews_token(),
    };
    verify(vault, &Access::of(config, token)).await
}

/// Checks the paths of `access` that do not depend on records, with the token of `vault`.
pub async fn verify(vault: &VaultClient, access: &Access) -> Result<(), CheckError> {
    let exact: Vec<&Grant> = access.grants.iter().filter(|g| !g.per_record).collect();
    let paths: Vec<&str> = exact.iter().map(|g| g.path.as_str()).collect();
    let granted = vault.capabilities_self(&paths).await?;
    let missing: Vec<Grant> = exact
        .into_iter()
        .filter(|grant| {
            !granted.get(&grant.path).is_some_and(|capabilities| {
                capabilities
                    .iter()
                    .any(|c| c == "root" || c == grant.capability.as_str())
            })
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Missing { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Capability;
    use super::*;

    #[test]
    fn the_message_names_each_path_its_capability_and_why() {
        let error = CheckError::Missing {
            missing: vec![Grant {
                path: "transit/encrypt/k".into(),
                capability: Capability::Update,
                reasons: vec!["encrypt-value: encrypt values".into()],
                per_record: false,
            }],
        };
        let text = error.to_string();
        assert!(
            text.contains("`update` on transit/encrypt/k (encrypt-value: encrypt values)"),
            "{text}"
        );
        assert!(text.contains("kafka-transit vault-policy"), "{text}");
    }
}
