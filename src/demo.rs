//! `pg-airlock demo`: one command, no config file, nothing left behind.
//! Starts a throwaway PostgreSQL, loads a small sample schema, runs the
//! proxy with the shipped default rules, and prints what to try.

use crate::app;
use crate::config::Config;
use crate::pgcluster::Cluster;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("demo database: {0}")]
    Cluster(#[from] crate::pgcluster::Error),
    #[error("demo config: {0}")]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    App(#[from] app::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

const SCHEMA: &str = "
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), amount numeric(10,2), status text);
CREATE TABLE customer_pii (customer_id int REFERENCES customers(id), ssn text);
INSERT INTO customers (name, email) SELECT 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 200) i;
INSERT INTO orders (customer_id, amount, status) SELECT 1 + i % 200, (i % 97) * 1.5, CASE WHEN i % 5 = 0 THEN 'refunded' ELSE 'paid' END FROM generate_series(1, 2000) i;
INSERT INTO customer_pii SELECT id, lpad(id::text, 9, '0') FROM customers;
-- Statistics now, not when autovacuum gets round to it: reviewers' row
-- estimates for the first held DROP or DELETE come from them.
ANALYZE customers, orders, customer_pii;
";

pub const AGENT: &str = "demo-agent";
pub const AGENT_PASSWORD: &str = "demo-password";

/// The shipped default rules, embedded so the demo needs no files.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// A running demo: the throwaway cluster and the proxy in front of it.
/// [`Demo::stop`] (or dropping it) stops both and removes every file.
pub struct Demo {
    pub running: app::Running,
    cluster: Cluster,
    /// The admin-API reviewer token (identity `api:demo-reviewer`).
    pub token: String,
    /// Connection string for the agent.
    pub url: String,
}

impl Demo {
    /// The demo's directory (cluster, config, audit trail), removed on stop.
    pub fn dir(&self) -> &Path {
        &self.cluster.dir
    }

    /// The audit trail file.
    pub fn audit_file(&self) -> std::path::PathBuf {
        self.dir().join("airlock").join("airlock-audit.jsonl")
    }

    /// Shut the proxy down gracefully, stop PostgreSQL, remove the files.
    pub async fn stop(mut self) {
        self.running.shutdown().await;
        self.cluster.stop();
    }
}

/// Run the demo until `signal` resolves. `rules`: a rules file, or `None`
/// for the embedded default.
pub async fn run(
    rules: Option<&Path>,
    listen: &str,
    admin: &str,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let demo = start(rules, listen, admin).await?;
    let admin = demo
        .running
        .admin_addr
        .map(|a| a.to_string())
        .unwrap_or_default();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pg-airlock".into());
    println!(
        "\npg-airlock demo is running (Ctrl-C stops it and removes everything).\n\n  \
         connect:   psql \"{url}\"\n  \
         try:       SELECT count(*) FROM orders;            -- passes straight through\n  \
         then:      DROP TABLE orders;                      -- held: waits for a reviewer\n\n  \
         review (another terminal):\n    \
         export AIRLOCK_ADMIN_URL=http://{admin} AIRLOCK_ADMIN_TOKEN={token}\n    \
         {exe} approvals list\n    \
         {exe} approvals approve <id>        # or: deny <id> --reason \"...\"\n\n  \
         audit:     {exe} audit verify {audit}\n  \
         metrics:   curl http://{admin}/metrics\n",
        url = demo.url,
        token = demo.token,
        audit = demo.audit_file().display(),
    );
    signal.await;
    eprintln!("stopping...");
    demo.stop().await;
    Ok(())
}

/// Start the throwaway cluster (sample schema loaded, statistics taken)
/// and the proxy with the given (or embedded default) rules.
pub async fn start(rules: Option<&Path>, listen: &str, admin: &str) -> Result<Demo, Error> {
    eprintln!("starting a throwaway PostgreSQL...");
    let cluster = Cluster::start(
        "airlock-demo",
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &["fsync=off"],
    )?;
    let upstream_pw: String = format!("{:032x}", rand::random::<u128>());
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE airlock LOGIN PASSWORD '{upstream_pw}'"),
    )?;
    cluster.psql("postgres", "CREATE DATABASE demo OWNER airlock")?;
    // Load the schema as the upstream role so it owns the tables.
    cluster.psql("demo", &format!("SET ROLE airlock; {SCHEMA}"))?;

    let dir = cluster.dir.join("airlock");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("upstream.pw"), &upstream_pw)?;
    std::fs::write(dir.join("agent.pw"), AGENT_PASSWORD)?;
    // The reviewer's admin-API token, in the secrets dir (not the environment).
    let token: String = format!("demo-{:032x}", rand::random::<u128>());
    std::fs::create_dir_all(dir.join("secrets"))?;
    std::fs::write(
        dir.join("secrets").join("AIRLOCK_DEMO_REVIEWER_TOKEN"),
        &token,
    )?;
    let rules = match rules {
        Some(r) => std::fs::canonicalize(r)?,
        None => {
            let p = dir.join("default-rules.toml");
            std::fs::write(&p, DEFAULT_RULES)?;
            p
        }
    };
    let text = format!(
        r#"secrets_dir = "secrets"
[listen]
address = "{listen}"
[upstream]
host = "127.0.0.1"
port = {port}
user = "airlock"
password_file = "upstream.pw"
tls = "disable"
[admin]
address = "{admin}"
[rules]
paths = [{rules:?}]
[[api_token]]
token_env = "AIRLOCK_DEMO_REVIEWER_TOKEN"
identity = "api:demo-reviewer"
[[agent]]
name = "{AGENT}"
password_file = "agent.pw"
owner = "U0DEMOOWNER"
"#,
        port = cluster.port,
    );
    let path = dir.join("airlock.toml");
    std::fs::write(&path, &text)?;
    let cfg = Config::load(&path)?;
    let running = app::start(cfg).await?;
    let url = format!(
        "postgresql://{AGENT}:{AGENT_PASSWORD}@127.0.0.1:{}/demo",
        running.addr.port()
    );
    Ok(Demo {
        running,
        cluster,
        token,
        url,
    })
}
