//! `kafka-transit run`: the pipeline, its admin listener and hot swap, and how a stop
//! signal ends it within a bound.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::access::check;
use crate::admin::Admin;
use crate::config::PipelineConfig;
use crate::forget;
use crate::pipeline::Pipeline;
use crate::policy::pipeline::PipelineView;
use crate::policy::swap::PolicySwitch;
use crate::policy::{PolicyRunner, PolicyRuntime};
use crate::vault::VaultClient;

pub(super) async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    // First, so that probes answer (not ready) while Vault and the policy come up.
    let mut admin = match &config.admin {
        Some(admin) => Some(Admin::start(admin).await?),
        None => None,
    };
    let vault = VaultClient::connect(&config.vault)
        .await
        .with_context(|| format!("connecting to Vault at {}", config.vault.address))?;
    if config.vault.check_permissions {
        check::verify_pipeline(&vault, &config).await?;
    }
    if let Some(admin) = &mut admin {
        admin.watch_vault(&vault);
    }
    let view = PipelineView::of(&config)?;
    if let Some(admin) = &admin {
        admin.register(|registry| view.register_metrics(registry));
    }
    let runtime =
        PolicyRuntime::from_config(&config.policy, Some(vault.clone()))?.with_pipeline(view);
    let runner = PolicyRunner::start(Arc::new(runtime)).await?;
    // Hot swap: policy.path changes, SIGHUP and POST /admin/policy/reload load a new
    // policy while this runs.
    let (switch, updates) = PolicySwitch::new(
        path.clone(),
        config.policy.clone(),
        vault.clone(),
        runner.runtime(),
    );
    let _triggers = switch.spawn_triggers();
    let shutdown_timeout = config.pipeline.shutdown_timeout;
    // The forget endpoint runs where the sealing pipeline runs (it names subjects' keys).
    let forget_hook = match (&config.forget, forget::SubjectNaming::of(&config)) {
        (Some(settings), Ok(naming)) => Some(forget_endpoint(
            vault.clone(),
            config.source.clone(),
            settings.clone(),
            naming,
        )),
        _ => None,
    };
    let pipeline = Pipeline::new(config, runner, vault)?.with_policy_updates(updates);
    if let Some(admin) = &admin {
        admin.policy_loaded();
        admin.register(|registry| switch.register(registry));
        admin.watch_pipeline(pipeline.metrics());
        admin.on_reload(reload_endpoint(switch.clone()));
        if let Some(hook) = forget_hook {
            admin.on_forget(hook);
        }
    }
    let grace = shutdown_timeout + HARD_STOP_MARGIN;
    let summary = pipeline.run(shutdown_signal(grace)).await?;
    tracing::info!(
        records_in = summary.records_in,
        records_out = summary.records_out,
        dead_lettered = summary.dead_lettered,
        "stopped cleanly"
    );
    Ok(())
}

/// `POST /admin/policy/reload`: what SIGHUP does, with the outcome in the answer.
fn reload_endpoint(switch: PolicySwitch) -> crate::admin::Reload {
    Arc::new(move || {
        let switch = switch.clone();
        Box::pin(async move {
            match switch.reload_from_config().await {
                Ok(loaded) => Ok(serde_json::json!(loaded)),
                Err(refused) => Err(refused.to_string()),
            }
        })
    })
}

/// `POST /admin/forget`: `kafka-transit forget` from inside the runner.
fn forget_endpoint(
    vault: crate::vault::VaultClient,
    source: crate::config::SourceConfig,
    settings: forget::ForgetSettings,
    naming: forget::SubjectNaming,
) -> crate::admin::Forget {
    Arc::new(move |subject: String| {
        let (vault, source, settings, naming) = (
            vault.clone(),
            source.clone(),
            settings.clone(),
            naming.clone(),
        );
        Box::pin(async move {
            forget::forget(&vault, &source, &settings, &naming, &subject)
                .await
                .map(|report| serde_json::json!(report))
                .map_err(|error| error.to_string())
        })
    })
}

/// How long past pipeline.shutdown_timeout a stopping process may take before it is
/// ended regardless (closing the consumer, the producers, the last commit).
const HARD_STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on SIGINT or SIGTERM. From then on the process ends within `grace` whatever
/// the pipeline waits on, and at once on a second signal: offsets are only ever
/// committed for what the sink acknowledged, so ending early repeats records, never
/// loses them.
async fn shutdown_signal(grace: std::time::Duration) {
    stop_signal().await;
    tracing::info!(
        "stop requested: finishing in-flight batches and committing (at most {}; a second signal ends the process at once)",
        humantime::format_duration(grace)
    );
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!(
            "error: the pipeline did not stop within {} of the stop signal; exiting without \
             committing anything the sink did not acknowledge",
            humantime::format_duration(grace)
        );
        std::process::exit(1);
    });
    tokio::spawn(async {
        stop_signal().await;
        eprintln!(
            "error: second stop signal; exiting at once (nothing unacknowledged was committed)"
        );
        std::process::exit(1);
    });
}

async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
}
