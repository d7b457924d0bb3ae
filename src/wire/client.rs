//! The client side of a new connection, up to ReadyForQuery: TLS
//! negotiation (SSLRequest, PG17 direct TLS; GSSENC refused), the
//! StartupMessage, agent authentication, database allow-list, and the
//! upstream login. Cancel requests end here too.
//!
//! Startup parameters are an attack surface: PostgreSQL treats any unknown
//! startup parameter as a setting (`role=postgres` would set the role), so
//! only an allow-list of harmless settings is passed on, from plain
//! parameters and from `options=-c ...` alike.

use super::Proxy;
use super::auth::{self, AuthError};
use super::messages::{self, Severity};
use super::sqlstate;
use crate::identity::{SessionInfo, new_session_id};
use bytes::BytesMut;
use futures::StreamExt;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{MaybeTls, negotiate_tls};
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A client that has logged in, with its upstream session open.
pub struct Established {
    pub info: SessionInfo,
    pub client: MaybeTls,
    /// Bytes the client sent after its last startup message.
    pub client_buf: BytesMut,
    pub upstream: super::upstream::Login,
}

/// Why a connection ended before becoming a session. Not all are errors:
/// cancel requests and silent health checks end here by design.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("cancel request handled")]
    Cancel,
    #[error("connection closed before startup completed")]
    Closed,
    #[error("startup timed out")]
    Timeout,
    #[error("{0}")]
    Fatal(String),
    #[error("i/o during startup: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings a client may pass at startup (lower-case names).
const ALLOWED_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "bytea_output",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "work_mem",
    "jit",
];

/// Encodings we accept from clients. The upstream session is pinned to
/// UTF8 (DESIGN-NOTES 1) and bytes are relayed unchanged, so a client that
/// wants another encoding would get UTF-8 bytes it misreads.
const ALLOWED_ENCODINGS: &[&str] = &["utf8", "utf-8", "unicode", "sql_ascii"];

pub async fn accept(
    proxy: &Proxy,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Established, Refused> {
    let timeout = proxy.config.limits.startup_timeout;
    match crate::timers::timeout(timeout, handshake(proxy, tcp, peer)).await {
        Ok(r) => r,
        Err(_) => Err(Refused::Timeout),
    }
}

async fn handshake(
    proxy: &Proxy,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Established, Refused> {
    let mut framed = match negotiate_tls::<()>(tcp, proxy.tls_acceptor.clone()).await {
        Ok(Some(f)) => f,
        // Direct TLS attempted but we have no certificate: nothing to say
        // in plaintext to a TLS client, so just close.
        Ok(None) => {
            return Err(Refused::Fatal(
                "direct TLS attempted but TLS is not configured".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Refused::Closed),
        Err(e) => return Err(Refused::Io(e)),
    };
    let secure = matches!(framed.get_ref(), MaybeTls::Tls(_));
    let startup = match framed.next().await {
        Some(Ok(PgWireFrontendMessage::Startup(s))) => s,
        Some(Ok(PgWireFrontendMessage::CancelRequest(c))) => {
            if let Some(secret) = c.secret_key.as_i32() {
                proxy.cancel_query(c.pid, secret).await;
            }
            return Err(Refused::Cancel);
        }
        Some(Ok(other)) => {
            return Err(fatal(
                framed.get_mut(),
                sqlstate::PROTOCOL_VIOLATION,
                &format!("expected a startup message, got {other:?}"),
            )
            .await);
        }
        Some(Err(e)) => {
            return Err(fatal(
                framed.get_mut(),
                sqlstate::PROTOCOL_VIOLATION,
                &format!("invalid startup packet: {e}"),
            )
            .await);
        }
        None => return Err(Refused::Closed),
    };
    let parts = framed.into_parts();
    let mut io = parts.io;
    let mut rbuf = parts.read_buf;

    if proxy.config.listen.require_tls && !secure {
        return Err(fatal(
            &mut io,
            sqlstate::INVALID_AUTHORIZATION,
            "this pg-airlock requires TLS (sslmode=require)",
        )
        .await);
    }
    if startup.protocol_number_major != 3 {
        return Err(fatal(
            &mut io,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "unsupported frontend protocol",
        )
        .await);
    }

    // Split and check parameters before authentication so a refused
    // parameter costs no SCRAM round trips.
    let mut agent = None;
    let mut database = None;
    let mut app_name = String::new();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut pq_options = Vec::new();
    for (k, v) in &startup.parameters {
        match k.as_str() {
            "user" => agent = Some(v.clone()),
            "database" => database = Some(v.clone()),
            "replication" => {
                return Err(fatal(
                    &mut io,
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "replication connections are not supported through pg-airlock",
                )
                .await);
            }
            "options" => match parse_options(v) {
                Ok(pairs) => settings.extend(pairs),
                Err(e) => return Err(fatal(&mut io, sqlstate::INVALID_PARAMETER_VALUE, &e).await),
            },
            k if k.starts_with("_pq_.") => pq_options.push(k.to_string()),
            _ => settings.push((k.clone(), v.clone())),
        }
    }
    for (k, v) in &mut settings {
        *k = k.to_ascii_lowercase();
        if !ALLOWED_SETTINGS.contains(&k.as_str()) {
            let msg = format!("startup parameter \"{k}\" is not allowed through pg-airlock");
            return Err(fatal(&mut io, sqlstate::INVALID_PARAMETER_VALUE, &msg).await);
        }
        if k == "client_encoding" && !ALLOWED_ENCODINGS.contains(&v.to_ascii_lowercase().as_str()) {
            let msg =
                format!("client_encoding \"{v}\" is not supported: pg-airlock sessions are UTF8");
            return Err(fatal(&mut io, sqlstate::INVALID_PARAMETER_VALUE, &msg).await);
        }
    }
    settings.retain(|(k, v)| {
        if k == "application_name" {
            app_name = v.clone();
        }
        // Pinned below; never passed from the client.
        k != "client_encoding" && k != "application_name"
    });
    let Some(agent) = agent.filter(|a| !a.is_empty()) else {
        return Err(fatal(
            &mut io,
            sqlstate::INVALID_AUTHORIZATION,
            "no user name given in the startup message",
        )
        .await);
    };
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| agent.clone());

    let mut out = BytesMut::new();
    if startup.protocol_number_minor > 0 || !pq_options.is_empty() {
        let opts: Vec<&str> = pq_options.iter().map(String::as_str).collect();
        messages::negotiate_protocol_version(&mut out, 0, &opts);
        io.write_all(&out).await?;
    }

    // Authenticate. Unknown agents run the same exchange against a mock
    // verifier and fail at the same step, with the same message.
    let known = proxy.config.agents.get(&agent);
    let verifier = match known {
        Some(_) => proxy
            .verifiers
            .get(&agent)
            .cloned()
            .expect("every agent has a verifier"),
        None => proxy.mock.for_name(&agent),
    };
    let scram = if secure {
        &proxy.scram_tls
    } else {
        &proxy.scram_plain
    };
    match auth::scram_exchange(&mut io, &mut rbuf, scram, &verifier, known.is_some()).await {
        Ok(()) => {}
        Err(AuthError::Failed) => {
            proxy.metrics.logins_refused.inc();
            tracing::warn!(%peer, agent = %agent, "authentication failed");
            let why = if known.is_some() {
                "wrong password"
            } else {
                "unknown agent"
            };
            refused_login(proxy, peer, secure, Some(&agent), Some(&database), why);
            let msg = format!("password authentication failed for user \"{agent}\"");
            return Err(fatal(&mut io, sqlstate::INVALID_PASSWORD, &msg).await);
        }
        Err(AuthError::Read(_)) => return Err(Refused::Closed),
        Err(e) => {
            proxy.metrics.logins_refused.inc();
            return Err(fatal(&mut io, sqlstate::PROTOCOL_VIOLATION, &e.to_string()).await);
        }
    }
    let agent_cfg = known.expect("authentication succeeded only for known agents");
    if let Some(dbs) = &agent_cfg.databases
        && !dbs.iter().any(|d| d == &database)
    {
        proxy.metrics.logins_refused.inc();
        refused_login(
            proxy,
            peer,
            secure,
            Some(&agent),
            Some(&database),
            "database not allowed for this agent",
        );
        let msg = format!("agent \"{agent}\" is not allowed to connect to database \"{database}\"");
        return Err(fatal(&mut io, sqlstate::INVALID_AUTHORIZATION, &msg).await);
    }

    // Upstream session, tagged with the agent so `pg_stat_activity` shows
    // who is behind each proxied backend.
    let tagged: String = format!("airlock:{agent}:{app_name}")
        .chars()
        .take(63)
        .collect();
    let mut params: Vec<(&str, &str)> = vec![
        ("database", database.as_str()),
        ("application_name", tagged.as_str()),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ];
    params.extend(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let upstream = match proxy.connector.login(&params).await {
        Ok(u) => u,
        // Class 28 here is about the proxy's own role (wrong upstream
        // password, pg_hba.conf): relaying 28P01 would tell the agent its
        // own, accepted, password is wrong and name the upstream role.
        // Everything else (3D000 no such database, 53300 too many
        // connections...) is the client's business and passes verbatim.
        Err(super::upstream::Error::Server { code, message }) if code.starts_with("28") => {
            proxy.metrics.upstream_errors.inc();
            tracing::error!(%peer, agent = %agent, %code, %message, "the database refused pg-airlock's own login: check [upstream] user, password and the server's pg_hba.conf");
            let msg = "the database refused pg-airlock's login (its [upstream] credentials); the operator has the details in the proxy log";
            return Err(fatal(&mut io, sqlstate::SERVER_REJECTED_CONNECTION, msg).await);
        }
        Err(super::upstream::Error::Server { code, message }) => {
            return Err(fatal(&mut io, &code, &message).await);
        }
        Err(e) => {
            proxy.metrics.upstream_errors.inc();
            tracing::error!(%peer, agent = %agent, error = %e, "upstream login failed");
            let msg = "pg-airlock cannot reach the database right now";
            return Err(fatal(&mut io, sqlstate::CANNOT_CONNECT_NOW, msg).await);
        }
    };

    let client_cert_subject = match &io {
        MaybeTls::Tls(s) => s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| cert_subject(c)),
        _ => None,
    };
    let info = SessionInfo {
        id: new_session_id(),
        agent: agent.clone(),
        owner: agent_cfg.owner.clone(),
        client_addr: peer,
        tls: secure,
        client_cert_subject,
        database,
        application_name: app_name,
        started_at: SystemTime::now(),
    };
    Ok(Established {
        info,
        client: io,
        client_buf: rbuf,
        upstream,
    })
}

/// Audit a refused login (who tried, from where, why).
fn refused_login(
    proxy: &Proxy,
    peer: SocketAddr,
    tls: bool,
    user: Option<&str>,
    database: Option<&str>,
    reason: &str,
) {
    use crate::audit::event::{Event, EventKind, LoginRefused};
    proxy
        .audit
        .emit(Event::now(EventKind::LoginRefused(LoginRefused {
            client_addr: peer.ip().to_string(),
            client_port: peer.port(),
            tls,
            user: user.map(str::to_string),
            database: database.map(str::to_string),
            reason: reason.to_string(),
        })));
}

fn cert_subject(der: &[u8]) -> String {
    match x509_certificate::X509Certificate::from_der(der) {
        Ok(c) => c
            .subject_name()
            .user_friendly_str()
            .unwrap_or_else(|_| "<unreadable subject>".into()),
        Err(_) => "<unparseable certificate>".into(),
    }
}

/// Send a FATAL error and give back the reason, for logging.
async fn fatal<S: tokio::io::AsyncWrite + Unpin>(io: &mut S, code: &str, message: &str) -> Refused {
    let mut out = BytesMut::new();
    messages::error(&mut out, Severity::Fatal, code, message, None, None);
    let _ = io.write_all(&out).await;
    let _ = io.flush().await;
    Refused::Fatal(format!("{message} ({code})"))
}

/// Parse the `options` startup parameter (`-c name=value`, `--name=value`,
/// with backslash-escaped spaces, as libpq writes it).
pub fn parse_options(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next().ok_or("options: -c needs name=value")?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else {
            return Err(format!(
                "options: only -c name=value settings are allowed, got {w:?}"
            ));
        };
        let (k, v) = setting
            .split_once('=')
            .ok_or_else(|| format!("options: {setting:?} is not name=value"))?;
        out.push((k.replace('-', "_"), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_parsed_like_libpq_writes_them() {
        assert_eq!(
            parse_options(
                "-c search_path=a,b --statement-timeout=5s -cwork_mem=4MB -c DateStyle=ISO,\\ MDY"
            )
            .unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "4MB".into()),
                ("DateStyle".into(), "ISO, MDY".into()),
            ]
        );
        assert!(parse_options("-d 5").is_err());
        assert!(parse_options("-c").is_err());
        assert!(parse_options("-c noequals").is_err());
    }
}
