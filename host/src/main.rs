//! The `kafka-transit` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

/// See host/Cargo.toml: large record buffers are reused instead of faulted in anew.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use kafka_transit::admin::Admin;
use kafka_transit::config::PipelineConfig;
use kafka_transit::pipeline::Pipeline;
use kafka_transit::policy::pipeline::PipelineView;
use kafka_transit::policy::swap::PolicySwitch;
use kafka_transit::policy::{PolicyRunner, PolicyRuntime};
use kafka_transit::vault::VaultClient;

/// Encrypts Kafka records with HashiCorp Vault's transit engine before they reach a
/// cluster you do not control.
///
/// The process refuses core dumps (they would hold data keys and the Vault token);
/// --core-dumps allows them, for debugging.
///
/// kafka-transit consumes records from a source cluster, passes them in batches through
/// a data-protection policy (a WebAssembly component: encrypt-value, encrypt-fields,
/// envelope-seal, their decrypting twins, their rewrapping twins for key rotation,
/// passthrough, or your own .wasm), and produces
/// the result to a sink cluster. Vault holds the keys; records that cannot be protected
/// never reach the sink.
#[derive(Parser)]
#[command(name = "kafka-transit", version, propagate_version = true)]
struct Cli {
    /// Log format: readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KAFKA_TRANSIT_LOG_FORMAT")]
    log_format: LogFormat,

    /// Allow core dumps of this process. Off by default: a core dump holds whatever was
    /// in memory, data keys, the Vault token and records included.
    #[arg(long, global = true, env = "KAFKA_TRANSIT_CORE_DUMPS")]
    core_dumps: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until SIGINT/SIGTERM (then finish in-flight work, commit, exit 0).
    ///
    /// On SIGINT or SIGTERM the runner stops reading, waits up to
    /// pipeline.shutdown_timeout (20 s by default) for the sink to acknowledge what is in
    /// flight, commits what was acknowledged and exits; the process ends within that
    /// timeout plus 10 s whatever it waits on, and at once on a second signal. Nothing the
    /// sink did not acknowledge is ever committed: it is consumed again after a restart.
    ///
    /// Logs progress (records in/out, dead-lettered, Vault requests, lag) every
    /// pipeline.progress_interval. Set RUST_LOG (e.g. RUST_LOG=debug) for more detail.
    Run {
        /// The pipeline file (see README: "Configuration reference").
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a pipeline file and its policy, without touching Kafka or Vault.
    ///
    /// Checks every field, that the Vault token (or AppRole IDs) can be read from the
    /// variable or file the config names, and that the CA bundle loads; then loads,
    /// type-checks (against the data-policy world) and initialises the policy with its
    /// [policy.config]. Exits non-zero with a message naming the field to fix.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The three demonstrations in one process, with nothing to install.
    ///
    /// Starts an in-process Kafka cluster and Vault-compatible server and runs the three
    /// demonstrations: a Kafka administrator reads plaintext;
    /// with kafka-transit in front (whole-value and field-level) the same administrator
    /// sees only ciphertext while the authorised consumer gets the records back; and
    /// multi-megabyte records through envelope encryption. Exits non-zero unless every
    /// round trip is byte-identical and nothing personal is visible to the administrator.
    Demo {
        /// How many customer records to send through.
        #[arg(long, default_value_t = 2000)]
        records: usize,
    },
    /// Ask a running runner's admin listener whether it is live (or ready); exit 0 if so.
    ///
    /// For container health checks where no HTTP client is installed: GETs
    /// /health/live (or /health/ready with --ready) on [admin] listen and prints the
    /// answer. Exits 1 on any answer but 200, or when nothing answers within 5 s.
    Health {
        /// The admin listener's address ([admin] listen).
        #[arg(long, default_value = "127.0.0.1:9464")]
        address: String,
        /// Readiness (policy loaded, Vault usable, partitions assigned) instead of liveness.
        #[arg(long)]
        ready: bool,
    },
    /// Write your own policy: `policy new` scaffolds a crate, `policy wit` prints the WIT.
    #[command(subcommand)]
    Policy(kafka_transit::scaffold::PolicyCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo's transcript is the point; its pipelines' progress lines would bury it.
    let default_filter = match cli.command {
        Command::Demo { .. } | Command::Health { .. } => "warn",
        _ => "info,librdkafka=warn,rdkafka=warn",
    };
    init_logging(cli.log_format, default_filter);
    if !cli.core_dumps {
        if let Err(error) = kafka_transit::process::disable_core_dumps() {
            tracing::warn!(
                "could not disable core dumps ({error}); a crash may write key material to disk"
            );
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(execute(cli.command));
    // Blocking work still running (a transaction commit the stop gave up on) must not
    // hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => run(config).await,
        Command::Validate { config } => validate(config).await,
        Command::Policy(command) => kafka_transit::scaffold::run(command),
        Command::Health { address, ready } => health(&address, ready).await,
        Command::Demo { records } => demo(records).await,
    }
}

#[cfg(feature = "demo")]
async fn demo(records: usize) -> anyhow::Result<()> {
    let report = kafka_transit::demo::run(records).await?;
    anyhow::ensure!(
        report.round_trip_identical,
        "the decrypted records differ from the originals"
    );
    Ok(())
}

#[cfg(not(feature = "demo"))]
async fn demo(_records: usize) -> anyhow::Result<()> {
    anyhow::bail!(
        "this kafka-transit was built without the demo (and its in-process Vault server); \
         from a checkout, run `cargo run --release -p kafka-transit -- demo`"
    )
}

async fn validate(path: PathBuf) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    // What `run` would refuse before contacting Vault: an unset token variable, a
    // missing token file, an unreadable CA bundle.
    VaultClient::preflight(&config.vault).context("[vault]")?;
    let runtime =
        PolicyRuntime::from_config(&config.policy, None)?.with_pipeline(PipelineView::of(&config)?);
    PolicyRunner::start(Arc::new(runtime)).await?;
    println!(
        "{}: configuration valid; policy {} loaded and initialised",
        path.display(),
        config.policy.builtin.as_deref().map_or_else(
            || config
                .policy
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            str::to_string
        )
    );
    Ok(())
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&path)?;
    // First, so that probes answer (not ready) while Vault and the policy come up.
    let mut admin = match &config.admin {
        Some(admin) => Some(Admin::start(admin).await?),
        None => None,
    };
    let vault = VaultClient::connect(&config.vault)
        .await
        .with_context(|| format!("connecting to Vault at {}", config.vault.address))?;
    if let Some(admin) = &mut admin {
        admin.watch_vault(&vault);
    }
    let runtime = PolicyRuntime::from_config(&config.policy, Some(vault.clone()))?
        .with_pipeline(PipelineView::of(&config)?);
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
    let pipeline = Pipeline::new(config, runner, vault)?.with_policy_updates(updates);
    if let Some(admin) = &admin {
        admin.policy_loaded();
        admin.register(|registry| switch.register(registry));
        admin.watch_pipeline(pipeline.metrics());
        admin.on_reload(reload_endpoint(switch.clone()));
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

async fn health(address: &str, ready: bool) -> anyhow::Result<()> {
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

/// `POST /admin/policy/reload`: what SIGHUP does, with the outcome in the answer.
fn reload_endpoint(switch: PolicySwitch) -> kafka_transit::admin::Reload {
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

fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
