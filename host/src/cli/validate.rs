//! `validate` (a pipeline file and its policy, offline), `vault-policy` (the Vault ACL a
//! pipeline needs) and `health` (ask a running runner): the commands that check rather
//! than run.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::access::hcl::{self, Heading};
use crate::access::{Access, Token};
use crate::config::PipelineConfig;
use crate::policy::pipeline::PipelineView;
use crate::policy::{PolicyRunner, PolicyRuntime};
use crate::vault::VaultClient;

pub(super) async fn validate(
    path: PathBuf,
    skip_credentials: bool,
    connect: bool,
) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    // What `run` would refuse before contacting Vault: an unset token variable, a
    // missing token file, an unreadable CA bundle.
    if !skip_credentials {
        VaultClient::preflight(&config.vault).context("[vault]")?;
    }
    initialise_policy(&config).await?;
    println!(
        "{}: configuration valid; policy {} loaded and initialised",
        path.display(),
        policy_name(&config)
    );
    if connect {
        super::connect::connect(&config).await?;
    }
    Ok(())
}

/// Loads the policy and initialises it with its `[policy.config]`, which checks that.
async fn initialise_policy(config: &PipelineConfig) -> anyhow::Result<()> {
    let runtime =
        PolicyRuntime::from_config(&config.policy, None)?.with_pipeline(PipelineView::of(config)?);
    PolicyRunner::start(Arc::new(runtime)).await?;
    Ok(())
}

fn policy_name(config: &PipelineConfig) -> String {
    config.policy.builtin.clone().unwrap_or_else(|| {
        config
            .policy
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    })
}

/// `vault-policy`: the ACL, once the file and its policy's options are known good (a
/// mistyped option would otherwise print a policy for a pipeline that does not start).
pub(super) async fn vault_policy(path: PathBuf) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    initialise_policy(&config).await?;
    let access = Access::of(&config, Token { renewed: true });
    let heading = Heading {
        file: &path.display().to_string(),
        policy: &policy_name(&config),
        namespace: config.vault.namespace.as_deref(),
    };
    print!("{}", hcl::render(&access, &heading));
    Ok(())
}

pub(super) async fn health(address: &str, ready: bool) -> anyhow::Result<()> {
    let path = if ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    let url = format!("http://{address}{path}");
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("no answer from {url}: is [admin] listen set to {address}?"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{}", body.trim());
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}
