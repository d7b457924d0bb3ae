//! Test harness: a real throwaway PostgreSQL cluster shared by the test
//! binary, and the real proxy running in-process on 127.0.0.1:0.
//!
//! The cluster is started once (initdb in a temp dir, a free loopback
//! port, as the `postgres` OS user when the tests run as root) and a
//! watchdog process stops it and removes its files when this test process
//! exits, however it exits. Each test gets its own database.

use pg_airlock::app::{self, Running};
use pg_airlock::config::Config;
use pg_airlock::pgcluster::Cluster;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const UPSTREAM_USER: &str = "airlock";
pub const UPSTREAM_PASSWORD: &str = "upstream-secret-pw";
pub const AGENT: &str = "billing-bot";
pub const AGENT_PASSWORD: &str = "agent-pw-1";
pub const OTHER_AGENT: &str = "report-bot";
pub const OTHER_PASSWORD: &str = "agent-pw-2";

pub struct TestPg {
    pub cluster: Cluster,
    pub port: u16,
    pub bin: PathBuf,
}

static PG: OnceLock<TestPg> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn free_port() -> u16 {
    pg_airlock::pgcluster::free_port().unwrap()
}

pub fn pg() -> &'static TestPg {
    PG.get_or_init(|| {
        let cluster = Cluster::start(
            "airlock-test-pg",
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            &["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=700", "shared_buffers=64MB"],
        )
        .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
        cluster.watchdog(std::process::id()).expect("watchdog");
        let pg = TestPg { port: cluster.port, bin: cluster.bin.clone(), cluster };
        pg.psql("postgres", &format!("CREATE ROLE {UPSTREAM_USER} LOGIN SUPERUSER PASSWORD '{UPSTREAM_PASSWORD}'"));
        pg
    })
}

impl TestPg {
    /// Run SQL as the superuser over the Unix socket (not through the proxy).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.cluster.psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh database for one test, owned by the upstream user.
    pub fn create_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {UPSTREAM_USER}"),
        );
        name
    }

    /// A direct connection (bypassing the proxy) as the upstream user.
    pub async fn direct(&self, db: &str) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(UPSTREAM_USER)
            .password(UPSTREAM_PASSWORD)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("direct connection");
        tokio::spawn(conn);
        c
    }
}

/// Builds a proxy config as TOML text (so tests exercise the real config
/// loader) with secrets in files.
pub struct ProxyBuilder {
    extra: String,
    listen_extra: String,
    upstream_port: Option<u16>,
    /// Replaces the `[upstream]` keys (host, port, user, password, tls).
    upstream_body: Option<String>,
    rules: Vec<PathBuf>,
    limits: std::collections::BTreeMap<String, String>,
}

pub fn proxy() -> ProxyBuilder {
    let limits = [
        ("startup_timeout", "\"3s\""),
        ("shutdown_timeout", "\"2s\""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ProxyBuilder {
        extra: String::new(),
        listen_extra: String::new(),
        upstream_port: None,
        upstream_body: None,
        rules: vec![fixture("rules/allow-all.toml")],
        limits,
    }
}

pub struct TestProxy {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

pub fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(p)
}

impl ProxyBuilder {
    /// Extra top-level TOML appended to the config (sections, agents...).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn tls(mut self) -> Self {
        self.listen_extra = format!(
            "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n",
            fixture("tls/server.crt"),
            fixture("tls/server.key"),
            fixture("tls/ca.crt")
        );
        self
    }

    pub fn require_tls(mut self) -> Self {
        self = self.tls();
        self.listen_extra.push_str("require_tls = true\n");
        self
    }

    /// Rule files (default: allow everything, for wire tests).
    pub fn rules(mut self, paths: &[PathBuf]) -> Self {
        self.rules = paths.to_vec();
        self
    }

    pub fn upstream_port(mut self, port: u16) -> Self {
        self.upstream_port = Some(port);
        self
    }

    /// Replace the `[upstream]` keys other than `connect_timeout` (relative
    /// paths resolve against the proxy's temp dir, where `upstream.pw`
    /// holds [`UPSTREAM_PASSWORD`]).
    pub fn upstream(mut self, body: &str) -> Self {
        self.upstream_body = Some(body.to_string());
        self
    }

    /// Override one `[limits]` key, e.g. `limit("startup_timeout", "\"1s\"")`.
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.insert(key.to_string(), value.to_string());
        self
    }

    pub fn config_text(&self, dir: &Path) -> String {
        std::fs::write(dir.join("upstream.pw"), UPSTREAM_PASSWORD).unwrap();
        std::fs::write(dir.join("agent.pw"), AGENT_PASSWORD).unwrap();
        std::fs::write(dir.join("other.pw"), OTHER_PASSWORD).unwrap();
        let upstream = match &self.upstream_body {
            Some(body) => body.clone(),
            None => {
                let port = self.upstream_port.unwrap_or_else(|| pg().port);
                format!(
                    "host = \"127.0.0.1\"\nport = {port}\nuser = \"{UPSTREAM_USER}\"\npassword_file = \"upstream.pw\"\ntls = \"disable\"\n"
                )
            }
        };
        format!(
            r#"
[listen]
address = "127.0.0.1:0"
{listen_extra}
[upstream]
{upstream}
connect_timeout = "2s"

[admin]
address = "127.0.0.1:0"

[rules]
paths = {rules:?}
reload_interval = "200ms"

[limits]
{limits}

[[agent]]
name = "{AGENT}"
password_file = "agent.pw"
owner = "U0OWNER"

[[agent]]
name = "{OTHER_AGENT}"
password_file = "other.pw"
databases = ["only_this_db"]

{extra}
"#,
            listen_extra = self.listen_extra,
            rules = self.rules,
            limits = self
                .limits
                .iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>(),
            extra = self.extra,
        )
    }

    pub async fn start(self) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let text = self.config_text(dir.path());
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &text).unwrap();
        let cfg =
            Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let running = app::start(cfg).await.expect("proxy starts");
        TestProxy { running, dir }
    }
}

impl TestProxy {
    pub fn port(&self) -> u16 {
        self.running.addr.port()
    }

    pub fn config(&self, agent: &str, password: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port())
            .user(agent)
            .password(password)
            .dbname(db);
        c.connect_timeout(Duration::from_secs(10));
        c
    }

    /// Connect as the default agent.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        self.try_connect(AGENT, AGENT_PASSWORD, db)
            .await
            .expect("connect through proxy")
    }

    pub async fn try_connect(
        &self,
        agent: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (c, conn) = self
            .config(agent, password, db)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(conn);
        Ok(c)
    }

    /// libpq connection string for psql / pgbench.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://{AGENT}:{AGENT_PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port()
        )
    }

    pub async fn shutdown(self) {
        tokio::time::timeout(Duration::from_secs(20), self.running.shutdown())
            .await
            .expect("proxy shuts down in time");
    }
}

/// SQLSTATE of a tokio-postgres error, for assertions.
pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("<no sqlstate: {e}>"))
}

/// Poll `f` until it returns true or `timeout` passes (no bare sleeps in
/// assertions).
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl ProxyBuilder {
    /// Start, but hand back the failure instead of panicking: the config
    /// error or start error as text, with the directory that held the
    /// config (for tests of refused starts).
    pub async fn try_start(self) -> Result<TestProxy, (String, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let text = self.config_text(dir.path());
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &text).unwrap();
        let cfg = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => return Err((format!("config: {e}"), dir)),
        };
        match app::start(cfg).await {
            Ok(running) => Ok(TestProxy { running, dir }),
            Err(e) => Err((format!("start: {e}"), dir)),
        }
    }
}

impl TestProxy {
    /// Shut down and keep the proxy's directory (its default audit trail
    /// lives there); `shutdown` would delete it with the proxy.
    pub async fn shutdown_keep_dir(self) -> tempfile::TempDir {
        let TestProxy { running, dir } = self;
        tokio::time::timeout(Duration::from_secs(20), running.shutdown())
            .await
            .expect("proxy shuts down in time");
        dir
    }
}

impl ProxyBuilder {
    /// Start with secrets in files: each `(NAME, value)` is written to the
    /// proxy's directory and the config names that directory as its
    /// top-level `secrets_dir`, so `*_env = "NAME"` keys resolve without
    /// touching the process environment, which all tests share. The key is
    /// put first: after the `[[agent]]` tables it would belong to an agent.
    pub async fn start_with_secrets(self, secrets: &[(&str, &str)]) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in secrets {
            assert!(
                std::env::var_os(name).is_none(),
                "{name} is set in the environment; the test expects the file"
            );
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        let text = format!("secrets_dir = \".\"\n{}", self.config_text(dir.path()));
        let path = dir.path().join("airlock.toml");
        std::fs::write(&path, &text).unwrap();
        let cfg =
            Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let running = app::start(cfg).await.expect("proxy starts");
        TestProxy { running, dir }
    }
}
