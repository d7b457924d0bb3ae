//! Configuration: the TOML file as written (`Raw*`, serde) and the
//! validated [`Config`] the rest of the proxy uses.
//!
//! Loading is two steps (ripgrep's low/high args): serde turns text into
//! `Raw*` structs, then [`validate`] checks every value and collects *all*
//! problems, each pointing at `file:line: key: what is wrong`, so an
//! operator fixes a file in one round trip. Unknown keys are errors too
//! (collected with `serde_ignored`, so every typo is reported, not just the
//! first). Secrets are never inline: they come from environment variables
//! or files named in the config.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line of the offending key, when it can be located.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `upstream.port` or `agent[1].name`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// Every problem in a config file, reported together.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out = format!("{} problem(s) in config:", problems.len());
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

// ---------------------------------------------------------------------------
// Raw: mirrors the file.

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub agent: Vec<RawAgent>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub rules: RawRules,
    #[serde(default)]
    pub audit: crate::audit::RawAuditConfig,
    #[serde(default)]
    pub slack: Option<crate::approval::config::RawSlackConfig>,
    #[serde(default)]
    pub api_token: Vec<crate::approval::config::RawApiToken>,
    /// Directory of secret files: a secret named by `*_env = "NAME"` that
    /// is not in the environment is read from `<secrets_dir>/NAME`
    /// (the Docker / Kubernetes secrets convention).
    pub secrets_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListen {
    pub address: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA bundle used to verify client certificates (optional mTLS).
    pub tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    pub require_tls: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAgent {
    pub name: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub scram: Option<String>,
    pub owner: Option<String>,
    pub databases: Option<Vec<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_message_bytes: Option<u64>,
    pub startup_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub max_sessions: Option<u32>,
    pub session_threads: Option<u32>,
    pub max_statement_bytes: Option<u64>,
    pub classify_cache_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRules {
    /// Rule files or directories of `*.toml` rule files, relative to the
    /// config file.
    pub paths: Option<Vec<PathBuf>>,
    pub reload_interval: Option<String>,
}

// ---------------------------------------------------------------------------
// Validated.

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (errors and reloads name it).
    pub source: PathBuf,
    pub listen: Listen,
    pub upstream: Upstream,
    pub agents: HashMap<String, Agent>,
    pub admin_address: Option<SocketAddr>,
    pub limits: Limits,
    pub rules: Rules,
    pub audit: crate::audit::AuditConfig,
    pub approval: crate::approval::ApprovalConfig,
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub address: SocketAddr,
    pub tls: Option<ListenTls>,
    pub require_tls: bool,
}

#[derive(Debug, Clone)]
pub struct ListenTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamTls {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: UpstreamTls,
    pub tls_ca: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// A secret value read from env or file. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How an agent proves who it is.
#[derive(Clone, Debug)]
pub enum AgentCredential {
    /// Plain password (from env or file); the proxy derives a SCRAM secret.
    Password(Secret),
    /// A stored `SCRAM-SHA-256$iter:salt$stored:server` verifier.
    Scram(crate::wire::auth::ScramVerifier),
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub name: String,
    pub credential: AgentCredential,
    /// The human (Slack user id) who sponsors this agent; may not approve it.
    pub owner: Option<String>,
    /// `None` = any database.
    pub databases: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frontend message accepted (Query, Parse, Bind, ...).
    pub max_message_bytes: usize,
    /// Time a client has to finish TLS + startup + authentication.
    pub startup_timeout: Duration,
    /// Time sessions get to finish after SIGTERM before 57P01.
    pub shutdown_timeout: Duration,
    pub max_sessions: u32,
    /// Threads sessions run on (`crate::workers`); default: one per CPU.
    pub session_threads: usize,
    /// Statements longer than this are not parsed: they are `unknown`.
    pub max_statement_bytes: usize,
    pub classify_cache_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct Rules {
    pub paths: Vec<PathBuf>,
    pub reload_interval: Duration,
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parse and validate config text; `path` is used for messages and to
    /// resolve relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, Error> {
        let doc = text.parse::<toml_edit::ImDocument<String>>();
        let locator = Locator {
            doc: doc.as_ref().ok(),
            text,
            file: path,
        };
        let mut problems = Vec::new();

        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let raw: RawConfig = match serde_ignored::deserialize(de, |p| unknown.push(p.to_string())) {
            Ok(raw) => raw,
            Err(e) => {
                // A type or syntax error stops serde; report it with its line.
                let line = e.span().map(|s| line_of_offset(text, s.start));
                problems.push(Problem {
                    file: path.to_owned(),
                    line,
                    key: "toml".into(),
                    message: e.message().trim().to_string(),
                });
                return Err(Error::Invalid(problems));
            }
        };
        for key in unknown {
            problems.push(locator.problem(&key, "unknown key".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        match validate(raw, base, &locator, &mut problems) {
            Some(cfg) if problems.is_empty() => Ok(Config {
                source: path.to_owned(),
                ..cfg
            }),
            _ => Err(Error::Invalid(problems)),
        }
    }
}

/// Finds the line of a dotted key in the document, for messages.
pub struct Locator<'a> {
    doc: Option<&'a toml_edit::ImDocument<String>>,
    text: &'a str,
    file: &'a Path,
}

impl Locator<'_> {
    pub fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            file: self.file.to_owned(),
            line: self.line(key),
            key: key.to_string(),
            message,
        }
    }

    /// Resolve `a.b[2].c`-style paths (serde_ignored prints `a.b.2.c`) to
    /// the line of the deepest key that exists.
    fn line(&self, key: &str) -> Option<usize> {
        use toml_edit::{Item, Value};
        let doc = self.doc?;
        let mut cur = Node::Item(doc.as_item());
        let mut span = None;
        for part in key.split(['.', '[', ']']).filter(|s| !s.is_empty()) {
            let next = match (cur, part.parse::<usize>()) {
                (Node::Item(Item::ArrayOfTables(a)), Ok(i)) => a.get(i).map(|t| {
                    span = t.span().or(span.clone());
                    Node::Table(t)
                }),
                (
                    Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)),
                    Ok(i),
                ) => a.get(i).map(Node::Value),
                (Node::Item(Item::Table(t)) | Node::Table(t), Err(_)) => {
                    t.get_key_value(part).map(|(k, v)| {
                        span = k.span().or(span.clone());
                        Node::Item(v)
                    })
                }
                (
                    Node::Item(Item::Value(Value::InlineTable(t)))
                    | Node::Value(Value::InlineTable(t)),
                    Err(_),
                ) => t.get_key_value(part).map(|(k, v)| {
                    span = k.span().or(span.clone());
                    Node::Item(v)
                }),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        span.map(|s| line_of_offset(self.text, s.start))
    }
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse `"90s"`, `"2m"`, `"1500ms"`, `"1h"` (see [`crate::duration::parse`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Look up a secret by name: the environment first, then `secrets_dir`.
fn lookup_secret(name: &str, secrets_dir: Option<&Path>) -> Option<String> {
    if let Ok(v) = std::env::var(name) {
        return Some(v);
    }
    let dir = secrets_dir?;
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
}

/// Read a secret from `env` or `file`, naming the key on failure.
fn read_secret(
    env: &Option<String>,
    file: &Option<PathBuf>,
    key: &str,
    base: &Path,
    secrets_dir: Option<&Path>,
    at: &Locator,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problems.push(at.problem(key, "give password_env or password_file, not both".into()));
            None
        }
        (Some(var), None) => match lookup_secret(var, secrets_dir) {
            Some(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                problems.push(at.problem(
                    &format!("{key}.password_env"),
                    format!("environment variable {var} is not set"),
                ));
                None
            }
        },
        (None, Some(path)) => {
            let path = base.join(path);
            match std::fs::read_to_string(&path) {
                Ok(v) => Some(Secret(v.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) => {
                    problems.push(at.problem(
                        &format!("{key}.password_file"),
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    }
}

fn duration_or(
    raw: &Option<String>,
    default: Duration,
    key: &str,
    at: &Locator,
    problems: &mut Vec<Problem>,
) -> Duration {
    match raw {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            problems.push(at.problem(key, e));
            default
        }),
    }
}

fn validate(
    raw: RawConfig,
    base: &Path,
    at: &Locator,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let secrets_dir = raw.secrets_dir.as_ref().map(|d| base.join(d));
    let secrets_dir = secrets_dir.as_deref();
    let address = raw.listen.address.as_deref().unwrap_or("127.0.0.1:6432");
    let listen_addr = address.parse::<SocketAddr>().map_err(|e| {
        problems.push(at.problem("listen.address", format!("{address:?}: {e}")));
    });
    let tls = match (&raw.listen.tls_cert, &raw.listen.tls_key) {
        (Some(c), Some(k)) => {
            for (key, p) in [("listen.tls_cert", c), ("listen.tls_key", k)] {
                if !base.join(p).is_file() {
                    problems.push(
                        at.problem(key, format!("{} does not exist", base.join(p).display())),
                    );
                }
            }
            Some(ListenTls {
                cert: base.join(c),
                key: base.join(k),
                client_ca: raw.listen.tls_client_ca.as_ref().map(|p| base.join(p)),
            })
        }
        (None, None) => None,
        _ => {
            problems.push(at.problem("listen.tls_cert", "tls_cert and tls_key go together".into()));
            None
        }
    };
    if raw.listen.require_tls && tls.is_none() {
        problems.push(at.problem(
            "listen.require_tls",
            "require_tls needs tls_cert and tls_key".into(),
        ));
    }

    let up = &raw.upstream;
    let tls_mode = match up.tls.as_deref().unwrap_or("prefer") {
        "disable" => UpstreamTls::Disable,
        "prefer" => UpstreamTls::Prefer,
        "require" => UpstreamTls::Require,
        "verify-full" => UpstreamTls::VerifyFull,
        other => {
            problems.push(at.problem(
                "upstream.tls",
                format!("{other:?}: expected disable, prefer, require or verify-full"),
            ));
            UpstreamTls::Prefer
        }
    };
    let upstream = Upstream {
        host: up.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        port: up.port.unwrap_or(5432),
        user: up.user.clone().unwrap_or_else(|| "airlock".into()),
        password: read_secret(
            &up.password_env,
            &up.password_file,
            "upstream",
            base,
            secrets_dir,
            at,
            problems,
        ),
        tls: tls_mode,
        tls_ca: up.tls_ca.as_ref().map(|p| base.join(p)),
        connect_timeout: duration_or(
            &up.connect_timeout,
            Duration::from_secs(5),
            "upstream.connect_timeout",
            at,
            problems,
        ),
    };

    let mut agents = HashMap::new();
    let mut seen = HashSet::new();
    if raw.agent.is_empty() {
        problems.push(at.problem("agent", "at least one [[agent]] is required".into()));
    }
    for (i, a) in raw.agent.iter().enumerate() {
        let key = format!("agent[{i}]");
        let Some(name) = a.name.clone().filter(|n| !n.is_empty()) else {
            problems.push(at.problem(&key, "name is required".into()));
            continue;
        };
        if !seen.insert(name.clone()) {
            problems.push(at.problem(&format!("{key}.name"), format!("duplicate agent {name:?}")));
        }
        let credential = match (
            &a.scram,
            a.password_env.is_some() || a.password_file.is_some(),
        ) {
            (Some(_), true) => {
                problems.push(at.problem(
                    &key,
                    "give scram or password_env/password_file, not both".into(),
                ));
                None
            }
            (Some(v), false) => match crate::wire::auth::ScramVerifier::parse(v) {
                Ok(v) => Some(AgentCredential::Scram(v)),
                Err(e) => {
                    problems.push(at.problem(&format!("{key}.scram"), e));
                    None
                }
            },
            (None, true) => read_secret(
                &a.password_env,
                &a.password_file,
                &key,
                base,
                secrets_dir,
                at,
                problems,
            )
            .map(AgentCredential::Password),
            (None, false) => {
                problems.push(at.problem(
                    &key,
                    format!("agent {name:?} needs scram, password_env or password_file"),
                ));
                None
            }
        };
        if let Some(credential) = credential {
            agents.insert(
                name.clone(),
                Agent {
                    name,
                    credential,
                    owner: a.owner.clone(),
                    databases: a.databases.clone(),
                },
            );
        }
    }

    let admin_address = raw.admin.address.as_deref().and_then(|a| {
        a.parse::<SocketAddr>()
            .map_err(|e| problems.push(at.problem("admin.address", format!("{a:?}: {e}"))))
            .ok()
    });

    let l = &raw.limits;
    let limits = Limits {
        max_message_bytes: l.max_message_bytes.unwrap_or(64 << 20) as usize,
        startup_timeout: duration_or(
            &l.startup_timeout,
            Duration::from_secs(10),
            "limits.startup_timeout",
            at,
            problems,
        ),
        shutdown_timeout: duration_or(
            &l.shutdown_timeout,
            Duration::from_secs(30),
            "limits.shutdown_timeout",
            at,
            problems,
        ),
        max_sessions: l.max_sessions.unwrap_or(1000),
        session_threads: match l.session_threads {
            Some(n) => n as usize,
            None => {
                default_session_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            }
        },
        max_statement_bytes: l.max_statement_bytes.unwrap_or(256 << 10) as usize,
        classify_cache_bytes: l.classify_cache_bytes.unwrap_or(16 << 20),
    };
    if limits.max_message_bytes < 1024 {
        problems.push(at.problem("limits.max_message_bytes", "must be at least 1024".into()));
    }
    if limits.max_sessions == 0 {
        problems.push(at.problem("limits.max_sessions", "must be at least 1".into()));
    }
    if !(1..=1024).contains(&limits.session_threads) {
        problems.push(at.problem(
            "limits.session_threads",
            "must be between 1 and 1024".into(),
        ));
    }

    let rules = Rules {
        paths: raw
            .rules
            .paths
            .clone()
            .unwrap_or_else(|| vec![PathBuf::from("rules/default.toml")])
            .into_iter()
            .map(|p| base.join(p))
            .collect(),
        reload_interval: duration_or(
            &raw.rules.reload_interval,
            Duration::from_secs(2),
            "rules.reload_interval",
            at,
            problems,
        ),
    };

    // The audit trail is always on: with no sink configured, it goes to a
    // file beside the config.
    let mut raw_audit = raw.audit;
    match &raw_audit.file {
        Some(f) => raw_audit.file = Some(base.join(f)),
        None if !raw_audit.stdout
            && raw_audit.postgres_url.is_none()
            && raw_audit.postgres_url_env.is_none() =>
        {
            raw_audit.file = Some(base.join("airlock-audit.jsonl"));
        }
        None => {}
    }
    let audit = match crate::audit::validate(raw_audit) {
        Ok(a) => Some(a),
        Err(msgs) => {
            for m in msgs {
                let (key, msg) = m.split_once(": ").unwrap_or(("audit", m.as_str()));
                problems.push(at.problem(key, msg.to_string()));
            }
            None
        }
    };

    let raw_approval = crate::approval::RawApprovalConfig {
        slack: raw.slack,
        api_token: raw.api_token,
    };
    let approval = match crate::approval::config::validate_with(raw_approval, &|name| {
        lookup_secret(name, secrets_dir)
    }) {
        Ok(a) => Some(a),
        Err(msgs) => {
            for m in msgs {
                let (key, msg) = m.split_once(": ").unwrap_or(("slack", m.as_str()));
                problems.push(at.problem(key, msg.to_string()));
            }
            None
        }
    };

    Some(Config {
        source: PathBuf::new(),
        audit: audit?,
        approval: approval?,
        listen: Listen {
            address: listen_addr.ok()?,
            tls,
            require_tls: raw.listen.require_tls,
        },
        upstream,
        agents,
        admin_address,
        limits,
        rules,
    })
}

/// Session threads when the config names none: half the CPUs, at least
/// one. A relayed statement costs the proxy mostly kernel work (two sends,
/// two receives, and the wake-ups between them); a thread that serves more
/// sessions finds more of them ready per wake and sleeps less often. On a
/// 2-CPU machine shared with PostgreSQL and its clients, one thread used
/// about 20% less CPU per statement than two at the same throughput
/// (bench/RESULTS.md, stop 16); the other half of the CPUs is left to the
/// kernel's network work and to whatever shares the machine.
fn default_session_threads(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Config::from_str(text, Path::new("/tmp/airlock.toml")) {
            Ok(_) => vec![],
            Err(Error::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    /// docs/compose/airlock.toml is what `docker compose up` runs (no Docker
    /// engine here to run it): it must validate once its container paths
    /// are mapped, its rules must load, every secret it names must be set
    /// in docker-compose.yml, and the audit trail must sit on the volume.
    #[test]
    fn compose_config_is_valid_and_its_secrets_are_provided() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("docs/compose/airlock.toml")).unwrap();
        let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
        let secrets = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim().ends_with("_env")
            {
                let name = value.trim().trim_matches('"').to_string();
                assert!(
                    compose.contains(&format!("{name}:")),
                    "docker-compose.yml does not set {name}"
                );
                std::fs::write(secrets.path().join(&name), "a-secret-of-sufficient-length")
                    .unwrap();
                names.push(name);
            }
        }
        assert!(
            names.len() >= 3,
            "upstream, agent and reviewer secrets expected: {names:?}"
        );
        assert!(
            compose.contains("/var/lib/pg-airlock"),
            "the audit directory is not a volume"
        );
        let mapped = format!("secrets_dir = {:?}\n{}", secrets.path(), text)
            .replace("/etc/pg-airlock/", &format!("{}/", root.display()))
            .replace(
                "/var/lib/pg-airlock/",
                &format!("{}/", secrets.path().display()),
            );
        let cfg = Config::from_str(&mapped, &root.join("docs/compose/airlock.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.audit.file.as_deref(),
            Some(secrets.path().join("airlock-audit.jsonl").as_path())
        );
        assert_eq!(cfg.approval.api_tokens.len(), 1);
        crate::rules::RuleSet::load(&cfg.rules.paths)
            .unwrap_or_else(|e| panic!("{}", crate::rules::format_errors(&e)));
    }

    fn minimal() -> Config {
        Config::from_str(
            "[[agent]]\nname = \"bot\"\nscram = \"SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
            Path::new("x.toml"),
        )
        .unwrap()
    }

    #[test]
    fn minimal_config_is_valid() {
        let cfg = minimal();
        assert_eq!(cfg.listen.address.port(), 6432);
        assert_eq!(cfg.upstream.tls, UpstreamTls::Prefer);
        assert!(cfg.agents.contains_key("bot"));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[listen]\naddress = \"nope\"\ntypo_key = 1\n\n[upstream]\ntls = \"sometimes\"\n\n[[agent]]\nname = \"a\"\n\n[[agent]]\nname = \"b\"\nscram = \"garbage\"\ncolour = \"red\"\n";
        let p = problems(text);
        assert!(
            p.iter().any(|m| m
                == "/tmp/airlock.toml:2: listen.address: \"nope\": invalid socket address syntax"),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("/tmp/airlock.toml:3: listen.typo_key: unknown key")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("/tmp/airlock.toml:6: upstream.tls:")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("agent[0]") && m.contains("needs scram")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("/tmp/airlock.toml:13: agent[1].scram:")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("/tmp/airlock.toml:14: agent.1.colour: unknown key")),
            "{p:#?}"
        );
    }

    #[test]
    fn session_threads_default_to_half_the_cpus_and_zero_is_refused() {
        let cfg = minimal();
        assert_eq!(
            cfg.limits.session_threads,
            default_session_threads(std::thread::available_parallelism().unwrap().get())
        );
        assert_eq!(
            [1, 2, 3, 4, 8, 64].map(default_session_threads),
            [1, 1, 1, 2, 4, 32]
        );
        let p = problems("[limits]\nsession_threads = 0\n");
        assert!(
            p.iter()
                .any(|m| m
                    == "/tmp/airlock.toml:2: limits.session_threads: must be between 1 and 1024"),
            "{p:#?}"
        );
    }

    #[test]
    fn type_errors_name_the_line() {
        let p = problems("[upstream]\nport = \"five\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("/tmp/airlock.toml:2:"), "{p:?}");
    }

    #[test]
    fn missing_env_secret_is_named() {
        let p =
            problems("[[agent]]\nname = \"a\"\npassword_env = \"AIRLOCK_TEST_SURELY_UNSET_VAR\"\n");
        assert!(
            p.iter()
                .any(|m| m.contains("AIRLOCK_TEST_SURELY_UNSET_VAR is not set")),
            "{p:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
    }
}
