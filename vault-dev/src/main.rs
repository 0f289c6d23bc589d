//! `vault-dev`: run the development transit server as a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vault_dev::{AppRole, Server, ServerConfig, TlsFiles};

/// A Vault-compatible transit server for DEVELOPMENT AND TESTS ONLY.
///
/// This is not HashiCorp Vault and must not protect real secrets: state is kept in
/// memory (or, with --data-dir, in an unencrypted JSON file), sealing is a switch
/// without unseal keys, there is no policy language and no audit log.
///
/// On start it prints one line, `vault-dev ready on <url>`, then serves until
/// SIGINT or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "vault-dev", version, about, long_about)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8200")]
    listen: SocketAddr,

    /// Root token; every path is allowed with it and it never expires.
    #[arg(
        long,
        env = "VAULT_DEV_ROOT_TOKEN",
        default_value = "root",
        hide_env_values = true
    )]
    root_token: String,

    /// Persist mounts and keys in this directory (keys are stored UNENCRYPTED).
    /// Without it, everything is lost when the process ends.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Allow an AppRole login: ROLE_ID:SECRET_ID[:TTL[:MAX_TTL]] (TTL default 1h,
    /// MAX_TTL default 768h; durations like 30s, 15m, 1h). Repeatable.
    #[arg(long = "approle", value_name = "ROLE_ID:SECRET_ID[:TTL[:MAX_TTL]]", value_parser = parse_approle)]
    approles: Vec<AppRole>,

    /// Smallest non-zero auto_rotate_period accepted for keys (Vault's is 1h);
    /// lower it to see auto-rotation in tests and demos.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    min_auto_rotate_period: Duration,

    /// Do not mount a transit engine at `transit/` on start.
    #[arg(long)]
    no_transit_mount: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    vault_dev::parse_duration(text)
        .ok_or_else(|| format!("invalid duration {text:?} (use e.g. 30s, 15m, 1h)"))
}

fn parse_approle(text: &str) -> Result<AppRole, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=4).contains(&parts.len()) || parts[0].is_empty() || parts[1].is_empty() {
        return Err("expected ROLE_ID:SECRET_ID[:TTL[:MAX_TTL]]".into());
    }
    let token_ttl = parts.get(2).map(|t| parse_duration(t)).transpose()?;
    let token_max_ttl = parts.get(3).map(|t| parse_duration(t)).transpose()?;
    Ok(AppRole {
        role_id: parts[0].to_string(),
        secret_id: parts[1].to_string(),
        token_ttl: token_ttl.unwrap_or(Duration::from_secs(3600)),
        token_max_ttl: token_max_ttl.unwrap_or(Duration::ZERO),
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let tls = match (cli.tls_cert, cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let config = ServerConfig {
        listen: cli.listen,
        root_token: cli.root_token,
        data_dir: cli.data_dir,
        tls,
        approles: cli.approles,
        min_auto_rotate_period: cli.min_auto_rotate_period,
        transit_mount: (!cli.no_transit_mount).then(|| "transit".to_string()),
    };
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vault-dev: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The one line scripts wait for; never print the token.
    println!("vault-dev ready on {}", server.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();

    wait_for_signal().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
