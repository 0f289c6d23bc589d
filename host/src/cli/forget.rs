//! `kafka-transit forget --subject ID --config FILE`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::config::PipelineConfig;
use crate::forget::{self, SubjectNaming};
use crate::vault::VaultClient;

pub(super) async fn forget(subject: &str, path: PathBuf) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    let Some(settings) = &config.forget else {
        bail!(
            "{}: forget: this pipeline has no [forget] table; give the file of the pipeline \
             that seals per data subject",
            path.display()
        );
    };
    let naming = SubjectNaming::of(&config).with_context(|| path.display().to_string())?;
    let subject = if subject == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the subject's id from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        subject.to_string()
    };
    if subject.is_empty() {
        bail!("--subject: the subject's id is empty");
    }
    let vault = VaultClient::connect(&config.vault)
        .await
        .with_context(|| format!("connecting to Vault at {}", config.vault.address))?;
    let report = forget::forget(&vault, &config.source, settings, &naming, &subject)
        .await
        .context("forget (it is safe to run again)")?;
    println!("forgot a data subject: {report}");
    Ok(())
}
