//! Bad input, TLS, real command-line clients, shutdown: the edges of the relay.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the server closes; return everything it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("server closes the connection");
    out
}

/// A logged-in raw session (SCRAM done by tokio-postgres is not reusable
/// here, so log in with a tiny SCRAM client built on the same crates).
async fn raw_session(p: &TestProxy, db: &str) -> TcpStream {
    use pgwire::api::auth::sasl::scram::ScramClientAuth;
    let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    for (k, v) in [("user", AGENT), ("database", db)] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    let n = startup.len() as i32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&startup).await.unwrap();
    let scram = ScramClientAuth::new(AGENT.into(), AGENT_PASSWORD.into());
    let (first, st) = scram.build_client_first().unwrap();
    let _ = read_msg(&mut s).await; // AuthenticationSASL
    let mut m = vec![b'p', 0, 0, 0, 0];
    m.extend_from_slice(b"SCRAM-SHA-256\0");
    m.extend_from_slice(&(first.len() as i32).to_be_bytes());
    m.extend_from_slice(first.as_bytes());
    fix_len(&mut m);
    s.write_all(&m).await.unwrap();
    let (_, cont) = read_msg(&mut s).await;
    let (fin, st2) = st.build_client_final(&cont[4..]).unwrap();
    let mut m = vec![b'p', 0, 0, 0, 0];
    m.extend_from_slice(fin.as_bytes());
    fix_len(&mut m);
    s.write_all(&m).await.unwrap();
    let (_, fin_msg) = read_msg(&mut s).await;
    st2.verify_server_final(&fin_msg[4..]).unwrap();
    loop {
        let (tag, _) = read_msg(&mut s).await;
        if tag == b'Z' {
            return s;
        }
    }
}

fn fix_len(m: &mut [u8]) {
    let n = (m.len() - 1) as i32;
    m[1..5].copy_from_slice(&n.to_be_bytes());
}

async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h))
        .await
        .expect("message in time")
        .expect("message");
    let len = i32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize - 4;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (h[0], body)
}

fn sqlstate_in(bytes: &[u8]) -> Option<String> {
    let pos = bytes.windows(2).position(|w| w == b"\0C")?;
    let code = &bytes[pos + 2..pos + 7];
    Some(String::from_utf8_lossy(code).into_owned())
}

#[tokio::test]
async fn malformed_frames_end_only_that_connection() {
    let db = pg().create_db();
    let p = proxy().limit("max_message_bytes", "65536").start().await;
    let healthy = p.connect(&db).await;

    // Garbage before startup.
    let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let _ = read_to_close(&mut s).await;

    // A startup packet claiming to be huge.
    let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        .await
        .unwrap();
    let _ = read_to_close(&mut s).await;

    // After login: a negative length.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&[b'Q', 0xff, 0xff, 0xff, 0xf0]).await.unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(sqlstate_in(&out).as_deref(), Some("08P01"), "{out:?}");

    // After login: a message over the cap.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&[b'Q', 0, 0x10, 0, 0]).await.unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(sqlstate_in(&out).as_deref(), Some("54000"), "{out:?}");

    // After login: an unknown message type.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&[b'?', 0, 0, 0, 4]).await.unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(sqlstate_in(&out).as_deref(), Some("08P01"), "{out:?}");

    // FunctionCall is refused with a clear error.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&[b'F', 0, 0, 0, 12, 0, 0, 0x04, 0xd2, 0, 0, 0, 0])
        .await
        .unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(sqlstate_in(&out).as_deref(), Some("0A000"), "{out:?}");
    assert!(String::from_utf8_lossy(&out).contains("function-call protocol"));

    // A truncated message, then the client vanishes.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&[b'Q', 0, 0, 0, 100, b'S', b'E'])
        .await
        .unwrap();
    drop(s);

    // The healthy session never noticed.
    let v: i32 = healthy
        .query_one("SELECT 41 + 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    assert!(p.running.proxy.metrics.protocol_errors.get() >= 4);
    p.shutdown().await;
}

#[tokio::test]
async fn silent_clients_time_out_at_startup() {
    let p = proxy().limit("startup_timeout", "\"500ms\"").start().await;
    let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    let start = std::time::Instant::now();
    let _ = read_to_close(&mut s).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        start.elapsed()
    );
    p.shutdown().await;
}

#[tokio::test]
async fn replication_connections_are_refused() {
    let p = proxy().start().await;
    let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0billing-bot\0replication\0database\0\0");
    let n = startup.len() as i32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&startup).await.unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(sqlstate_in(&out).as_deref(), Some("0A000"));
    assert!(String::from_utf8_lossy(&out).contains("replication connections are not supported"));
    p.shutdown().await;
}

fn psql(url: &str, sql: &str, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("psql");
    c.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql]);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().expect("psql runs")
}

#[tokio::test]
async fn psql_over_tls_with_client_certificate() {
    let db = pg().create_db();
    let p = proxy().require_tls().start().await;
    // psql insists on 0600 key files; git does not keep modes.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.key");
    std::fs::copy(fixture("tls/client.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let url = format!(
        "postgresql://{AGENT}:{AGENT_PASSWORD}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        p.port(),
        fixture("tls/ca.crt").display(),
        fixture("tls/client.crt").display(),
        key.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        psql(
            &url,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The proxy's own TLS is to the client; upstream here is plain (tls = disable).
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");

    // Plain connections are refused when TLS is required.
    let url = p.url(&db);
    let out = tokio::task::spawn_blocking(move || psql(&url, "SELECT 1", &[]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.shutdown().await;
}

#[tokio::test]
async fn direct_tls_with_alpn_is_accepted() {
    use rustls::pki_types::ServerName;
    let p = proxy().tls().start().await;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixture("tls/ca.crt")).unwrap();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("direct TLS handshake");
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0billing-bot\0\0");
    let n = startup.len() as i32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    tls.write_all(&startup).await.unwrap();
    let mut h = [0u8; 9];
    tls.read_exact(&mut h).await.unwrap();
    // AuthenticationSASL, offering channel binding over TLS.
    assert_eq!(h[0], b'R');
    assert_eq!(&h[5..9], &10i32.to_be_bytes());
    let mut rest = vec![0u8; i32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize - 8];
    tls.read_exact(&mut rest).await.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("SCRAM-SHA-256-PLUS"));
    p.shutdown().await;
}

#[tokio::test]
async fn pgbench_runs_through_the_proxy_in_every_protocol_mode() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let url = p.url(&db);
    let bin = pg().bin.join("pgbench");
    let out = tokio::task::spawn_blocking(move || {
        let init = Command::new(&bin)
            .args(["-i", "-q", "-s", "1", &url])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut outs = Vec::new();
        for mode in ["simple", "extended", "prepared"] {
            let o = Command::new(&bin)
                .args(["-M", mode, "-c", "4", "-j", "2", "-t", "50", "-n", &url])
                .output()
                .unwrap();
            outs.push((mode, o));
        }
        outs
    })
    .await
    .unwrap();
    for (mode, o) in out {
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "pgbench -M {mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("number of transactions actually processed: 200/200"),
            "{mode}: {stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{mode}: {stdout}"
        );
    }
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_transactions_finish_then_sends_57p01() {
    let db = pg().create_db();
    let p = proxy()
        .limit("shutdown_timeout", "\"1500ms\"")
        .start()
        .await;
    let idle = p.connect(&db).await;
    let busy = p.connect(&db).await;
    busy.batch_execute("CREATE TABLE s (v int)").await.unwrap();
    busy.batch_execute("BEGIN; INSERT INTO s VALUES (1)")
        .await
        .unwrap();
    let token = p.running.token();
    token.cancel();
    // The idle session is ended promptly with 57P01...
    let closed = eventually(Duration::from_secs(3), || async { idle.is_closed() }).await;
    assert!(closed, "idle session not closed");
    // ...while the open transaction may still commit within the deadline.
    busy.batch_execute("INSERT INTO s VALUES (2); COMMIT")
        .await
        .unwrap();
    // No new connections are accepted.
    assert!(p.try_connect(AGENT, AGENT_PASSWORD, &db).await.is_err());
    tokio::time::timeout(Duration::from_secs(10), p.running.wait())
        .await
        .expect("proxy stops");
    let n: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn shutdown_deadline_ends_open_transactions_with_57p01() {
    let db = pg().create_db();
    let p = proxy().limit("shutdown_timeout", "\"300ms\"").start().await;
    let busy = p.connect(&db).await;
    busy.batch_execute("CREATE TABLE s (v int)").await.unwrap();
    busy.batch_execute("BEGIN; INSERT INTO s VALUES (1)")
        .await
        .unwrap();
    p.running.token().cancel();
    tokio::time::timeout(Duration::from_secs(10), p.running.wait())
        .await
        .expect("proxy stops");
    let e = busy.batch_execute("COMMIT").await.unwrap_err();
    // The client saw the FATAL 57P01 (tokio-postgres reports it on the next call) or a closed socket.
    assert!(e.code().map(|c| c.code() == "57P01").unwrap_or(true), "{e}");
    let n: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the unfinished transaction was rolled back");
}

/// Parse + Bind + Execute of `sql` (unnamed statement and portal), then
/// `end` (`H` Flush or `S` Sync).
fn extended_batch(sql: &str, end: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut msg = |tag: u8, body: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(body);
    };
    msg(b'P', &[b"\0", sql.as_bytes(), b"\0\0\0"].concat());
    msg(b'B', b"\0\0\0\0\0\0\0\0");
    msg(b'E', b"\0\0\0\0\0");
    msg(end, b"");
    out
}

#[tokio::test]
async fn refused_statement_in_a_flush_ended_batch_ends_the_session_with_its_own_code() {
    let db = pg().create_db();
    pg().direct(&db)
        .await
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let strict = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/strict.toml");
    let p = proxy().rules(&[strict]).start().await;

    // Allowed work in a Flush-ended batch is answered as it goes; Sync ends it.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&extended_batch("SELECT 1", b'H'))
        .await
        .unwrap();
    let tags: Vec<u8> = [
        read_msg(&mut s).await.0,
        read_msg(&mut s).await.0,
        read_msg(&mut s).await.0,
        read_msg(&mut s).await.0,
    ]
    .into();
    assert_eq!(
        tags, b"12DC",
        "ParseComplete, BindComplete, DataRow, CommandComplete before any Sync"
    );
    s.write_all(&[b'S', 0, 0, 0, 4]).await.unwrap();
    assert_eq!(read_msg(&mut s).await.0, b'Z');

    // A denied statement there has no place for an in-band refusal: the
    // session ends with the rule's SQLSTATE, and nothing ran.
    s.write_all(&extended_batch("GRANT SELECT ON t TO PUBLIC", b'H'))
        .await
        .unwrap();
    let out = read_to_close(&mut s).await;
    assert_eq!(
        sqlstate_in(&out).as_deref(),
        Some("42501"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("FATAL")
            && text.contains("denied by rule")
            && text.contains("Flush, not Sync"),
        "{text}"
    );
    let granted: bool = pg()
        .direct(&db)
        .await
        .query_one("SELECT has_table_privilege('public', 't', 'SELECT')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!granted, "the refused GRANT never reached the database");

    // The same statement with Sync is refused in place; the session lives on.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&extended_batch("GRANT SELECT ON t TO PUBLIC", b'S'))
        .await
        .unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!((tag, sqlstate_in(&body).as_deref()), (b'E', Some("42501")));
    assert_eq!(read_msg(&mut s).await.0, b'Z');
    p.shutdown().await;
}
