//! The `kafka-transit` command line: its definitions (clap), from which `--help`,
//! the completions and the man page are all generated, and one file per command.

mod connect;
mod demo;
mod forget;
mod reference;
mod run;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// What `run --help` and `validate --help` add: the sections of a pipeline file.
const CONFIGURATION_SUMMARY: &str = "\
The pipeline file (TOML) has these sections; every field, its default and what it does
is in docs/configuration.md:

  [source]          bootstrap_servers, topics (names or ^patterns), group_id, assignment;
  [source.properties]  any librdkafka consumer property (secrets as { env = \"NAME\" }
                    or { file = \"PATH\" })
  [sink]            bootstrap_servers, topic (or a {topic} template), preserve_partitions,
                    timestamp; [sink.properties] any librdkafka producer property
  [vault]           address, mount, namespace, ca_cert, and one of token_env, token_file,
                    [vault.approle], [vault.jwt], [vault.kubernetes]; request_timeout,
                    max_retries, batch limits
  [policy]          builtin (encrypt-value, envelope-seal, ...) or path (a .wasm),
                    batch_deadline, vault_deadline, memory_limit_mib, [policy.config]
                    (the policy's own: key, fields, bind, record_keys, headers, ...)
  [errors]          on_failure (dead-letter or stop), dead_letter_topic, dead_letter_cluster
  [pipeline]        delivery (at-least-once or exactly-once), batch_size, batch_timeout,
                    max_in_flight_batches, shutdown_timeout, offsets_topic, offsets_key
  [admin]           listen (metrics, health probes), reload_token_file
  [schema_registry] url, username and password_env, or token_env; ca_cert (for
                    encrypt-, decrypt- and rewrap-schema-fields: Avro, Protobuf and
                    JSON Schema records in Confluent's wire format)

Secrets are never written in the file: the Vault token comes from an environment
variable or a file, librdkafka passwords from { env = ... } or { file = ... }.";

/// Encrypts Kafka records with HashiCorp Vault's transit engine before they reach a
/// cluster you do not control.
///
/// The process refuses core dumps (they would hold data keys and the Vault token);
/// --core-dumps allows them, for debugging.
///
/// kafka-transit consumes records from a source cluster, passes them in batches through
/// a data-protection policy (a WebAssembly component: encrypt-value, encrypt-fields,
/// encrypt-schema-fields, envelope-seal, their decrypting twins, their rewrapping twins for key rotation,
/// passthrough, or your own .wasm), and produces
/// the result to a sink cluster. Vault holds the keys; records that cannot be protected
/// never reach the sink.
#[derive(Parser)]
#[command(name = "kafka-transit", version, propagate_version = true)]
pub struct Cli {
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
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT/SIGTERM (then finish in-flight work, commit, exit 0).
    #[command(after_long_help = CONFIGURATION_SUMMARY)]
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
        /// The pipeline file (its sections are summarised below; every field is in
        /// docs/configuration.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a pipeline file and its policy, without touching Kafka or Vault (unless
    /// --connect).
    ///
    /// Checks every field, that the Vault token (or AppRole IDs, or the JWT) can be read
    /// from the variable or file the config names, and that the CA bundle loads; then
    /// loads, type-checks (against the data-policy world) and initialises the policy with
    /// its [policy.config]. Exits non-zero with a message naming the field to fix.
    #[command(after_long_help = CONFIGURATION_SUMMARY)]
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        /// Do not read the Vault credentials the file names (the token, AppRole IDs or
        /// JWT): check the file and the policy only, e.g. on a build machine that has no
        /// secrets.
        #[arg(long, conflicts_with = "connect")]
        skip_credentials: bool,
        /// Then connect: the Vault token is accepted and holds every permission the
        /// pipeline needs; each source topic exists and the group's offsets can be read;
        /// each sink and dead-letter topic exists or will be created (with how many
        /// partitions). Writes nothing.
        #[arg(long)]
        connect: bool,
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
    /// Print the Vault ACL policy (HCL) the pipeline's token needs, and no more.
    ///
    /// Derived from the pipeline file: the transit paths of its policy (encrypt,
    /// decrypt, rewrap, hmac or datakey, for each key its key template and record_keys_key
    /// name), exactly-once's offsets key, and the token's own lookup, renewal and
    /// permission check. Each path says why it is there. `run` checks the token against
    /// the same list at start. Touches neither Kafka nor Vault:
    /// `kafka-transit vault-policy --config pipeline.toml | vault policy write kafka-transit -`.
    VaultPolicy {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Forget a data subject: delete their transit key, so that no runner or reader can
    /// open their records again (docs/forgetting.md).
    ///
    /// For pipelines that seal per data subject (envelope-seal with policy.config.subject).
    /// Give the sealing pipeline's file: its policy.config.subject_keys and
    /// subject_hmac_key name the subject's key, [vault] reaches Vault (the token needs
    /// update on <mount>/hmac/<subject_hmac_key>, and read, update and delete on
    /// <mount>/keys/<subject_keys>*, which covers each key's /config), and [forget] names the
    /// topic on the source cluster where the marker goes. In order: the key's name from
    /// Vault's HMAC of the id; a marker on [forget] topic (running runners drop the key
    /// from their caches and stop sealing under it within a second or two); [forget]
    /// grace (5 s); the key deleted in Vault. Prints what it removed; idempotent. The id
    /// is never logged or printed.
    Forget {
        /// The subject's id, as policy.config.subject reads it from a record (e.g. the
        /// record key). `-` reads it from standard input, which keeps it out of process
        /// lists and shell history.
        #[arg(long)]
        subject: String,
        /// The sealing pipeline's file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write your own policy: `policy new` scaffolds a crate, `policy wit` prints the WIT.
    #[command(subcommand)]
    Policy(crate::scaffold::PolicyCommand),
    /// Print a shell completion script: `kafka-transit completions bash > /etc/bash_completion.d/kafka-transit`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from this command line's definitions:
    /// `kafka-transit man > kafka-transit.1 && man ./kafka-transit.1`.
    Man,
}

/// The command line's entry point: parses the arguments, sets up logging and the
/// process's protections, runs the command and turns its error into an exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo's transcript is the point; its pipelines' progress lines would bury it.
    let default_filter = match cli.command {
        Command::Demo { .. } | Command::Health { .. } => "warn",
        _ => "info,librdkafka=warn,rdkafka=warn",
    };
    init_logging(cli.log_format, default_filter);
    if !cli.core_dumps {
        if let Err(error) = crate::process::disable_core_dumps() {
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
        Command::Run { config } => run::run(config).await,
        Command::Validate {
            config,
            skip_credentials,
            connect,
        } => validate::validate(config, skip_credentials, connect).await,
        Command::VaultPolicy { config } => validate::vault_policy(config).await,
        Command::Forget { subject, config } => forget::forget(&subject, config).await,
        Command::Policy(command) => crate::scaffold::run(command),
        Command::Health { address, ready } => validate::health(&address, ready).await,
        Command::Demo { records } => demo::demo(records).await,
        Command::Completions { shell } => reference::completions(shell),
        Command::Man => reference::man(),
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a terminal: a log redirected to a file or collected by a
    // container runtime would otherwise carry escape codes around every field.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
