//! The `pg-airlock` command: parse arguments, install logging, call into
//! the library, map errors to exit codes. Nothing else lives here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pg_airlock::classify::Classifier;
use pg_airlock::rules::{RuleSet, Subject};
use std::path::PathBuf;
use std::process::ExitCode;

// Sessions allocate a few small objects per statement on the tokio workers
// and the audit writer thread frees them; with glibc malloc those
// cross-thread frees contend on arena locks and malloc/free were the
// largest user-space cost in the relay profile. mimalloc frees into the
// owning thread's lists without a lock. (ripgrep swaps its allocator for
// the same kind of reason.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pg-airlock",
    version,
    about = "Postgres proxy that holds dangerous statements for human approval"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "AIRLOCK_LOG_FORMAT"
    )]
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
    /// Show how the rules judge SQL: each statement's effects, objects,
    /// the matching rules and the decision.
    Explain {
        #[arg(long, short, env = "AIRLOCK_CONFIG")]
        config: PathBuf,
        /// Judge as this agent (default: the first configured agent).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value = "")]
        application_name: String,
        #[arg(long)]
        database: Option<String>,
        /// The SQL text (one message; may hold several statements).
        sql: String,
    },
    /// Run policy test cases (SQL, agent, expected decision) against the
    /// configured rules; exit 1 if any case fails.
    TestRules {
        #[arg(long, short, env = "AIRLOCK_CONFIG")]
        config: PathBuf,
        cases: Vec<PathBuf>,
    },
    /// Tools for auditors: verify the chain, search, timelines, evidence packs.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Review held statements through the admin API (`[[api_token]]`).
    #[command(subcommand)]
    Approvals(ApprovalsCmd),
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

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain of an audit trail (all files of a rotation, in
    /// any order); exit 0 if intact, 1 at the first edited, removed,
    /// inserted or reordered record.
    Verify {
        /// The active trail file; rotated files beside it are found automatically.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print matching records (JSON Lines).
    Search {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// allow, deny, held, approved, denied, expired, withdrawn...
        #[arg(long)]
        decision: Option<String>,
        /// RFC 3339 time or YYYY-MM-DD (inclusive).
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time or YYYY-MM-DD (exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Case-insensitive text anywhere in the record.
        #[arg(long)]
        text: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// One session's timeline, readable.
    Session {
        id: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evidence pack for a period: html (with charts), csv or json.
    Report {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "html")]
        format: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Admin address of the running proxy.
    #[arg(
        long,
        env = "AIRLOCK_ADMIN_URL",
        default_value = "http://127.0.0.1:9187"
    )]
    admin: String,
    /// Bearer token of an `[[api_token]]` (its identity is the approver).
    #[arg(long, env = "AIRLOCK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum ApprovalsCmd {
    /// Held statements waiting for a decision.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One request: SQL, parameters, rules, impact, votes.
    Show {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Approve {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
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

/// Expand each named trail file to its whole rotation.
fn trail(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for f in files {
        let found = pg_airlock::audit::trail_files(f)
            .with_context(|| format!("reading {}", f.display()))?;
        if found.is_empty() {
            all.push(f.clone());
        }
        for p in found {
            if !all.contains(&p) {
                all.push(p);
            }
        }
    }
    Ok(all)
}

fn time_arg(
    s: &Option<String>,
    name: &str,
) -> anyhow::Result<Option<pg_airlock::audit::Timestamp>> {
    s.as_deref()
        .map(|t| {
            pg_airlock::audit::Timestamp::parse(t)
                .map_err(|e| anyhow::anyhow!("--{name} {t:?}: {e}"))
        })
        .transpose()
}

fn audit_cmd(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    use pg_airlock::audit;
    match cmd {
        AuditCmd::Verify { files } => {
            let report = audit::verify(&trail(&files)?);
            println!("{report}");
            Ok(ExitCode::from(report.exit_code() as u8))
        }
        AuditCmd::Search {
            agent,
            session,
            category,
            decision,
            since,
            until,
            text,
            files,
        } => {
            let filter = audit::Filter {
                agent,
                session,
                category,
                decision,
                since: time_arg(&since, "since")?,
                until: time_arg(&until, "until")?,
                text,
            };
            for r in audit::search(&trail(&files)?, &filter)? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Session { id, files } => {
            print!("{}", audit::session_timeline(&trail(&files)?, &id)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Report {
            since,
            until,
            format,
            files,
        } => {
            let format = match format.as_str() {
                "html" => audit::ReportFormat::Html,
                "csv" => audit::ReportFormat::Csv,
                "json" => audit::ReportFormat::Json,
                other => anyhow::bail!("--format {other:?}: expected html, csv or json"),
            };
            print!(
                "{}",
                audit::report(
                    &trail(&files)?,
                    time_arg(&since, "since")?,
                    time_arg(&until, "until")?,
                    format
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Config, rules and a classifier built for them (for the rule tools).
fn load_policy(
    config: &std::path::Path,
) -> anyhow::Result<(pg_airlock::config::Config, RuleSet, Classifier)> {
    let cfg = pg_airlock::config::Config::load(config)?;
    let rules = RuleSet::load(&cfg.rules.paths)
        .map_err(|e| anyhow::anyhow!("{}", pg_airlock::rules::format_errors(&e)))?;
    let opts = rules.classifier_options(cfg.limits.max_statement_bytes);
    let classifier = Classifier::new(opts, 1 << 20);
    Ok((cfg, rules, classifier))
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            rt.block_on(pg_airlock::app::run(
                cfg,
                pg_airlock::app::shutdown_signal(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckConfig { config } => {
            let cfg = match pg_airlock::config::Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            };
            match RuleSet::load(&cfg.rules.paths) {
                Ok(rules) => {
                    println!(
                        "{}: ok ({} agents, listening on {}, {} rules, policy version {})",
                        config.display(),
                        cfg.agents.len(),
                        cfg.listen.address,
                        rules.rules().len(),
                        &rules.version()[..12]
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!("{}", pg_airlock::rules::format_errors(&errors));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Explain {
            config,
            agent,
            application_name,
            database,
            sql,
        } => {
            let (cfg, rules, classifier) = load_policy(&config)?;
            let agent = match agent {
                Some(a) => a,
                None => cfg.agents.keys().min().cloned().unwrap_or_default(),
            };
            let database = database.unwrap_or_else(|| "postgres".into());
            let subject = Subject {
                agent: &agent,
                application_name: &application_name,
                database: &database,
            };
            // Judged as a fresh session would: PREPARE runs nothing, EXECUTE
            // of a name prepared elsewhere is unknown.
            let class =
                pg_airlock::wire::policy::resolve_prepared(&classifier.classify(&sql), |_| None);
            print!(
                "{}",
                pg_airlock::rules::render_explain(&sql, &class, &subject, &rules)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::TestRules { config, cases } => {
            let (_cfg, rules, classifier) = load_policy(&config)?;
            let mut ok = true;
            for path in &cases {
                let judge = |sql: &str| {
                    (*pg_airlock::wire::policy::resolve_prepared(&classifier.classify(sql), |_| {
                        None
                    }))
                    .clone()
                };
                let report = pg_airlock::rules::run_cases(path, &rules, &judge)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{report}");
                ok &= report.all_passed();
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Demo {
            rules,
            listen,
            admin,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            rt.block_on(pg_airlock::demo::run(
                rules.as_deref(),
                &listen,
                &admin,
                pg_airlock::app::shutdown_signal(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit(cmd) => audit_cmd(cmd),
        Cmd::Approvals(cmd) => {
            use pg_airlock::approval::cli;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting tokio")?;
            let out = rt.block_on(async {
                match cmd {
                    ApprovalsCmd::List { admin } => cli::cli_list(&admin.admin, &admin.token).await,
                    ApprovalsCmd::Show { id, admin } => {
                        cli::cli_show(&admin.admin, &admin.token, &id).await
                    }
                    ApprovalsCmd::Approve { id, admin } => {
                        cli::cli_approve(&admin.admin, &admin.token, &id).await
                    }
                    ApprovalsCmd::Deny { id, reason, admin } => {
                        cli::cli_deny(&admin.admin, &admin.token, &id, reason.as_deref()).await
                    }
                }
            });
            match out {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("pg-airlock approvals: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::HashPassword => {
            let mut pw = String::new();
            std::io::stdin()
                .read_line(&mut pw)
                .context("reading password from stdin")?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!pw.is_empty(), "empty password");
            println!("{}", pg_airlock::wire::auth::hash_password(pw));
            Ok(ExitCode::SUCCESS)
        }
    }
}
