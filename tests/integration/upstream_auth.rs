//! The proxy's own login to the database: trust, md5 and cleartext
//! password methods, and upstream TLS (prefer / require / verify-full).
//! The shared test cluster only speaks SCRAM without TLS, so these tests
//! run against a second throwaway cluster with TLS on and one role per
//! authentication method (pg_hba.conf below).

use crate::harness::{UPSTREAM_PASSWORD, code, fixture, proxy};
use pg_airlock::pgcluster::Cluster;
use std::sync::OnceLock;

struct AuthPg {
    cluster: Cluster,
    _tls: tempfile::TempDir,
}

/// One role per method; `up_tls` may only log in over TLS.
const HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all up_trust 127.0.0.0/8 trust
host all up_md5 127.0.0.0/8 md5
host all up_password 127.0.0.0/8 password
hostssl all up_tls 127.0.0.0/8 scram-sha-256
hostnossl all up_tls 127.0.0.0/8 reject
";

fn auth_pg() -> &'static AuthPg {
    static PG: OnceLock<AuthPg> = OnceLock::new();
    PG.get_or_init(|| {
        // The server's key must belong to the server's OS user, mode 0600.
        let tls = tempfile::tempdir().unwrap();
        for f in ["server.crt", "server.key"] {
            std::fs::copy(fixture(&format!("tls/{f}")), tls.path().join(f)).unwrap();
        }
        set_mode(&tls.path().join("server.key"), 0o600);
        chown_to_postgres(tls.path());
        let cert = format!("ssl_cert_file={}", tls.path().join("server.crt").display());
        let key = format!("ssl_key_file={}", tls.path().join("server.key").display());
        let cluster = Cluster::start(
            "airlock-test-pg-auth",
            HBA,
            // 127.0.0.2 too: a name the server certificate does not cover.
            &[
                "fsync=off",
                "ssl=on",
                &cert,
                &key,
                "listen_addresses=127.0.0.1,127.0.0.2",
            ],
        )
        .unwrap_or_else(|e| panic!("cannot start the TLS test PostgreSQL: {e}"));
        cluster.watchdog(std::process::id()).expect("watchdog");
        cluster
            .psql(
                "postgres",
                &format!(
                    "SET password_encryption = 'md5';
                     CREATE ROLE up_md5 LOGIN PASSWORD '{UPSTREAM_PASSWORD}';
                     RESET password_encryption;
                     CREATE ROLE up_password LOGIN PASSWORD '{UPSTREAM_PASSWORD}';
                     CREATE ROLE up_tls LOGIN PASSWORD '{UPSTREAM_PASSWORD}';
                     CREATE ROLE up_trust LOGIN;"
                ),
            )
            .unwrap();
        let stored = cluster
            .psql(
                "postgres",
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'up_md5'",
            )
            .unwrap();
        assert!(
            stored.trim().starts_with("md5"),
            "up_md5 must have an md5 verifier, got {stored}"
        );
        AuthPg { cluster, _tls: tls }
    })
}

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_to_postgres(dir: &std::path::Path) {
    // As root the server runs as `postgres` (pgcluster); otherwise as us.
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        let ok = std::process::Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "chown {}", dir.display());
    }
}

/// `[upstream]` keys for role `user` on the auth cluster.
fn upstream(host: &str, user: &str, password: bool, tls: &str, ca: Option<&str>) -> String {
    let mut s = format!(
        "host = {host:?}\nport = {}\nuser = {user:?}\ntls = {tls:?}\n",
        auth_pg().cluster.port
    );
    if password {
        s.push_str("password_file = \"upstream.pw\"\n");
    }
    if let Some(ca) = ca {
        s.push_str(&format!("tls_ca = {:?}\n", fixture(ca)));
    }
    s
}

/// Logs in through a proxy configured with `body` and reports the upstream
/// role and whether the upstream connection is encrypted.
async fn who(body: String) -> Result<(String, bool), tokio_postgres::Error> {
    let p = proxy().upstream(&body).start().await;
    let r = async {
        let c = p
            .try_connect(
                crate::harness::AGENT,
                crate::harness::AGENT_PASSWORD,
                "postgres",
            )
            .await?;
        let row = c
            .query_one(
                "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        Ok((row.get::<_, String>(0), row.get::<_, bool>(1)))
    }
    .await;
    p.shutdown().await;
    r
}

/// Starts a proxy with `[upstream]` = `body`; the error an agent with the
/// right password gets, and the proxy's `upstream_errors` count after it.
async fn refused(body: &str) -> (tokio_postgres::Error, u64) {
    let p = proxy().upstream(body).start().await;
    let e = p
        .try_connect(
            crate::harness::AGENT,
            crate::harness::AGENT_PASSWORD,
            "postgres",
        )
        .await
        .expect_err("login refused");
    let n = p.running.proxy.metrics.upstream_errors.get();
    p.shutdown().await;
    (e, n)
}

#[tokio::test]
async fn upstream_trust_md5_and_cleartext_logins() {
    for (user, password) in [("up_trust", false), ("up_md5", true), ("up_password", true)] {
        let got = who(upstream("127.0.0.1", user, password, "disable", None)).await;
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{user}: {e}")),
            (user.to_string(), false),
            "{user}"
        );
    }
}

#[tokio::test]
async fn a_refused_upstream_login_is_the_operators_problem_not_the_agents() {
    // Wrong upstream password (md5): the agent's own password was right, so
    // it must not see 28P01 or the upstream role's name.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong.pw"), "not-the-password").unwrap();
    let wrong_pw = upstream("127.0.0.1", "up_md5", false, "disable", None)
        + &format!("password_file = {:?}\n", dir.path().join("wrong.pw"));
    // pg_hba.conf refusal (TLS-only role over plain TCP): same answer.
    let hba_reject = upstream("127.0.0.1", "up_tls", true, "disable", None);
    for body in [wrong_pw, hba_reject] {
        let (e, upstream_errors) = refused(&body).await;
        assert_eq!(code(&e), "08004", "{e}\n{body}");
        let text = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(
            text.contains("[upstream]") && !text.contains("up_"),
            "{text}"
        );
        // Counted for the operator's dashboards (airlock_upstream_errors_total).
        assert_eq!(upstream_errors, 1, "{body}");
    }
    // The server wants a password the config does not have: the proxy
    // cannot log in at all (57P03, as when the server is unreachable).
    let (e, upstream_errors) =
        refused(&upstream("127.0.0.1", "up_md5", false, "disable", None)).await;
    assert_eq!(code(&e), "57P03", "{e}");
    assert_eq!(upstream_errors, 1);
}

#[tokio::test]
async fn upstream_tls_modes() {
    // verify-full with the CA that signed the server's certificate.
    let got = who(upstream(
        "127.0.0.1",
        "up_tls",
        true,
        "verify-full",
        Some("tls/ca.crt"),
    ))
    .await;
    assert_eq!(got.unwrap(), ("up_tls".to_string(), true));
    // prefer and require encrypt when the server offers TLS (no verification).
    for mode in ["prefer", "require"] {
        let got = who(upstream("127.0.0.2", "up_tls", true, mode, None)).await;
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{mode}: {e}")),
            ("up_tls".to_string(), true),
            "{mode}"
        );
    }
    // verify-full refuses a certificate from another issuer, and a host name
    // the certificate does not cover; it never falls back to plain TCP.
    for (host, ca, why) in [
        ("127.0.0.1", "tls/client.crt", "untrusted issuer"),
        ("127.0.0.2", "tls/ca.crt", "name not in the certificate"),
    ] {
        let (e, upstream_errors) =
            refused(&upstream(host, "up_tls", true, "verify-full", Some(ca))).await;
        assert_eq!(code(&e), "57P03", "{why}: {e}");
        assert_eq!(upstream_errors, 1, "{why}");
    }
}
