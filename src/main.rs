//! The `pg-airlock` command: parse arguments, install logging, call into
//! the library, map errors to exit codes. Nothing else lives here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pg-airlock", version, about = "Postgres proxy that holds dangerous statements for human approval")]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "AIRLOCK_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Run {
        #[arg(long, short, env = "AIRLOCK_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print every problem found.
    CheckConfig {
        #[arg(long, short, env = "AIRLOCK_CONFIG")]
        config: PathBuf,
    },
    /// Try it: a throwaway PostgreSQL with sample data behind a proxy
    /// running the default rules. No config file needed.
    Demo {
        /// Rules file (default: the embedded rules/default.toml).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9187")]
        admin: String,
    },
    /// Print a SCRAM-SHA-256 verifier for a password read from stdin
    /// (paste it into an agent's `scram = "..."`).
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pg-airlock: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run { config } => {
            let cfg = pg_airlock::config::Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
            rt.block_on(pg_airlock::app::run(cfg, pg_airlock::app::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig { config } => match pg_airlock::config::Config::load(&config) {
            Ok(cfg) => {
                println!("{}: ok ({} agents, listening on {})", config.display(), cfg.agents.len(), cfg.listen.address);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Cmd::Demo { rules, listen, admin } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
            rt.block_on(pg_airlock::demo::run(rules.as_deref(), &listen, &admin, pg_airlock::app::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::HashPassword => {
            let mut pw = String::new();
            std::io::stdin().read_line(&mut pw).context("reading password from stdin")?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!pw.is_empty(), "empty password");
            println!("{}", pg_airlock::wire::auth::hash_password(pw));
            Ok(ExitCode::SUCCESS)
        }
    }
}
