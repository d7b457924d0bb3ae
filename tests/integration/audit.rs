//! The audit trail as the real proxy writes it: what one scripted session
//! leaves on the record, tampering caught on that trail, unwritable audit
//! paths refusing the start. (Crash safety with a killed proxy process is in
//! `audit_crash`; the PostgreSQL sink in `audit_pg`.)

use std::path::{Path, PathBuf};

use crate::audit_common::*;
use crate::harness::*;
use pg_airlock::audit::event::*;
use pg_airlock::audit::verify::ProblemKind;
use pg_airlock::audit::*;

/// A temp copy of rules/default.toml with every hold timeout cut to 250 ms,
/// plus strict.toml's `deny-privilege` rule (copied verbatim) in a second
/// file. GRANT then matches both `hold-privilege` and `deny-privilege`; the
/// stricter (deny) wins.
pub fn scenario_rules() -> (tempfile::TempDir, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let default = std::fs::read_to_string(root.join("default.toml")).unwrap();
    assert!(
        default.contains("timeout = \"60s\""),
        "default.toml has no 60s timeout to shorten"
    );
    let fast: String = default
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("timeout = ") {
                "timeout = \"250ms\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let strict = std::fs::read_to_string(root.join("strict.toml")).unwrap();
    let start = strict
        .find("[[rule]]\nname = \"deny-privilege\"")
        .expect("strict.toml has the deny-privilege rule");
    let len = strict[start..]
        .find("\n# ---")
        .expect("deny-privilege is followed by a section rule");
    let deny = &strict[start..start + len];
    assert!(
        deny.contains("action = \"deny\"") && deny.contains("categories = [\"privilege\"]"),
        "{deny}"
    );
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("default-fast.toml");
    let b = dir.path().join("deny-privilege.toml");
    std::fs::write(&a, fast).unwrap();
    std::fs::write(&b, deny).unwrap();
    (dir, vec![a, b])
}

async fn setup(db: &str) {
    pg().direct(db)
        .await
        .batch_execute("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i;")
        .await
        .unwrap();
}

fn ok_tag(o: &Outcome) -> (&str, Option<u64>) {
    match o {
        Outcome::Ok { command_tag, rows } => (command_tag.as_str(), *rows),
        other => panic!("expected a command tag, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_session_is_on_the_record_statement_by_statement() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, paths) = scenario_rules();
    let p = proxy().rules(&paths).start().await;

    let bad = match p.try_connect(AGENT, "wrong-password", &db).await {
        Ok(_) => panic!("wrong password accepted"),
        Err(e) => e,
    };
    assert_eq!(code(&bad), "28P01", "{bad}");

    let mut cfg = p.config(AGENT, AGENT_PASSWORD, &db);
    cfg.application_name("audit-e2e");
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    let conn = tokio::spawn(conn);

    // 1: a read with literals (must not reach the trail by default).
    let r = c
        .simple_query("SELECT id, v FROM t WHERE id = 4242 OR v = 'needle-literal'")
        .await
        .unwrap();
    assert_eq!(r.len(), 2, "0 rows: RowDescription + CommandComplete");
    // 2: a write.
    c.simple_query("INSERT INTO t VALUES (11, 'eleven-literal')")
        .await
        .unwrap();
    // 3: a server error.
    assert_eq!(
        code(&c.simple_query("SELECT 1/0").await.unwrap_err()),
        "22012"
    );
    // 4: denied by strict.toml's deny-privilege.
    let e = c
        .simple_query("GRANT ALL ON t TO PUBLIC")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("deny-privilege"),
        "{e}"
    );
    // 5: held, nobody decides, refused at the 250 ms timeout.
    let e = c.simple_query("DROP TABLE t").await.unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    // 6: extended protocol with a bound parameter and a literal.
    let rows = c
        .query("SELECT v FROM t WHERE id = $1 AND v <> 'hidden'", &[&3i32])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "v3");

    drop(c);
    conn.await.unwrap().unwrap();
    let ended = eventually(std::time::Duration::from_secs(5), || async {
        p.running.proxy.metrics.sessions_active.get() == 0
    })
    .await;
    assert!(ended, "session did not end after the client terminated");
    let dir = p.shutdown_keep_dir().await;

    let active = dir.path().join("airlock-audit.jsonl");
    let files = trail(&active);
    let rep = assert_verifies(&files);
    assert!(rep.from_genesis && rep.head.is_some(), "{rep}");
    let recs = records(&files);
    let text = std::fs::read_to_string(&active).unwrap();
    for secret in [
        "needle-literal",
        "eleven-literal",
        UPSTREAM_PASSWORD,
        AGENT_PASSWORD,
        "wrong-password",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the audit trail:\n{text}"
        );
    }
    // A bare number can occur inside any hex hash of the file, so look for
    // it where SQL text is recorded.
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(sql) = v.get("sql").and_then(|s| s.as_str()) {
            assert!(
                !sql.contains("4242"),
                "a numeric literal reached the audit trail: {line}"
            );
        }
    }

    let kinds: Vec<&str> = recs.iter().map(|r| r.event.type_name()).collect();
    assert_eq!(kinds.first(), Some(&"audit_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"audit_stopped"), "{kinds:?}");
    let EventKind::AuditStarted(st) = &recs[0].event.kind else {
        unreachable!()
    };
    assert_eq!(
        (st.statement_text.as_str(), st.log_parameters),
        ("redacted", false)
    );

    // policy_loaded at start names the rule files and the version decisions cite.
    let policy: Vec<&PolicyLoaded> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::PolicyLoaded(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(policy.len(), 1, "{kinds:?}");
    let policy = policy[0];
    assert_eq!(policy.trigger, "startup");
    assert_eq!(policy.ruleset.len(), 64, "{}", policy.ruleset);
    for p in &paths {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            policy.sources.iter().any(|s| s.contains(&name)),
            "{name} not in {:?}",
            policy.sources
        );
    }
    assert_eq!(
        policy.rule_count, 8,
        "7 rules of default.toml + deny-privilege"
    );

    // The refused login: who, from where, why; never the password.
    let refused: Vec<&LoginRefused> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::LoginRefused(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{kinds:?}");
    assert_eq!(refused[0].client_addr, "127.0.0.1");
    assert_ne!(refused[0].client_port, 0);
    assert!(!refused[0].tls);
    assert_eq!(refused[0].user.as_deref(), Some(AGENT));
    assert_eq!(refused[0].database.as_deref(), Some(db.as_str()));
    assert!(!refused[0].reason.is_empty());

    let starts: Vec<&SessionStart> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::SessionStart(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "the refused login opened no session: {kinds:?}"
    );
    let s = starts[0];
    assert_eq!(s.agent, AGENT);
    assert_eq!(s.client_addr, "127.0.0.1");
    assert_ne!(s.client_port, 0);
    assert_ne!(
        s.client_port, refused[0].client_port,
        "two connections, two source ports"
    );
    assert!(!s.tls);
    assert_eq!(s.client_cert_subject, None);
    assert_eq!(s.database, db);
    assert_eq!(s.application_name.as_deref(), Some("audit-e2e"));
    let session = s.session.clone();

    let st = statements(&recs, &session);
    assert_eq!(st.len(), 6, "one record per statement: {st:#?}");
    for (i, s) in st.iter().enumerate() {
        assert_eq!(s.statement, i as u64 + 1, "statement numbers in order");
        assert_eq!(s.agent, AGENT);
        assert_eq!(
            s.ruleset.as_deref(),
            Some(policy.ruleset.as_str()),
            "statement {}",
            s.statement
        );
        assert!(
            !s.categories.is_empty(),
            "statement {} has no categories",
            s.statement
        );
        assert_eq!(s.parameters, None, "parameters are not logged by default");
    }
    let seqs: Vec<u64> = recs
        .iter()
        .filter(|r| matches!(&r.event.kind, EventKind::Statement(_)))
        .map(|r| r.seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // 1: redacted by default, literals replaced.
    assert_eq!(st[0].text_mode, "redacted");
    assert_eq!(
        st[0].sql.as_deref(),
        Some("SELECT id, v FROM t WHERE id = ? OR v = ?")
    );
    assert_eq!(st[0].categories, ["read"]);
    assert_eq!(st[0].decision, "allow");
    assert_eq!(st[0].rules, ["allow-routine"]);
    assert!(
        st[0].tables.iter().any(|t| t.ends_with('t')),
        "{:?}",
        st[0].tables
    );
    assert_eq!(ok_tag(&st[0].outcome), ("SELECT 0", Some(0)));
    // 2
    assert_eq!(st[1].sql.as_deref(), Some("INSERT INTO t VALUES (?, ?)"));
    assert_eq!(st[1].categories, ["write"]);
    assert_eq!(ok_tag(&st[1].outcome), ("INSERT 0 1", Some(1)));
    // 3: the server's error, by SQLSTATE.
    assert_eq!(st[2].decision, "allow");
    match &st[2].outcome {
        Outcome::Error { sqlstate, message } => {
            assert_eq!(sqlstate, "22012");
            assert!(message.contains("division by zero"), "{message}");
        }
        o => panic!("statement 3: {o:?}"),
    }
    for s in [st[0], st[1], st[2], st[5]] {
        assert!(
            s.duration_us > 0,
            "statement {} that ran has no duration",
            s.statement
        );
    }
    // 4: denied by rule, never sent.
    assert_eq!(st[3].decision, "deny");
    assert_eq!(st[3].rules, ["deny-privilege"]);
    assert_eq!(st[3].categories, ["privilege"]);
    assert_eq!(st[3].outcome, Outcome::NotSent);
    assert_eq!(st[3].request_id, None);
    // 5: held, expired, recorded in full (approvers saw the text).
    assert_eq!(st[4].decision, "expired");
    assert_eq!(st[4].rules, ["hold-ddl"]);
    assert_eq!(st[4].categories, ["ddl"]);
    assert_eq!(st[4].outcome, Outcome::NotSent);
    assert_eq!(
        (st[4].text_mode.as_str(), st[4].sql.as_deref()),
        ("full", Some("DROP TABLE t"))
    );
    let req = st[4]
        .request_id
        .clone()
        .expect("held statement names its approval request");
    // 6: extended protocol: the text with its placeholder and literals
    // redacted (the Parse's cached shape), the count of parameters, not
    // their values.
    assert_eq!(
        st[5].sql.as_deref(),
        Some("SELECT v FROM t WHERE id = $1 AND v <> ?")
    );
    assert_eq!(st[5].parameter_count, 1);
    assert_eq!(ok_tag(&st[5].outcome), ("SELECT 1", Some(1)));

    // The approval request and its expiry, in order, before the statement record.
    let pos = |pred: &dyn Fn(&EventKind) -> bool| recs.iter().position(|r| pred(&r.event.kind));
    let requested = pos(&|k| matches!(k, EventKind::ApprovalRequested(a) if a.request_id == req))
        .expect("approval_requested");
    let expired = pos(&|k| matches!(k, EventKind::ApprovalExpired(a) if a.request_id == req))
        .expect("approval_expired");
    let stmt5 =
        pos(&|k| matches!(k, EventKind::Statement(s) if s.session == session && s.statement == 5))
            .unwrap();
    assert!(
        requested < expired && expired < stmt5,
        "{requested} {expired} {stmt5}"
    );
    let EventKind::ApprovalRequested(ar) = &recs[requested].event.kind else {
        unreachable!()
    };
    assert_eq!(
        (ar.session.as_str(), ar.statement, ar.sql.as_str()),
        (session.as_str(), 5, "DROP TABLE t")
    );
    assert_eq!(ar.timeout_ms, 250);
    assert_eq!(ar.ruleset.as_deref(), Some(policy.ruleset.as_str()));
    let EventKind::ApprovalExpired(ae) = &recs[expired].event.kind else {
        unreachable!()
    };
    assert_eq!(ae.session.as_deref(), Some(session.as_str()));
    assert!(ae.latency_ms >= 200, "expired after {} ms", ae.latency_ms);

    let ends: Vec<&SessionEnd> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::SessionEnd(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].session, session);
    assert_eq!(ends[0].statements, 6);
    assert_eq!(ends[0].reason, "client terminated");
    assert!(ends[0].started_at.is_some());
    let EventKind::AuditStopped(stop) = &recs.last().unwrap().event.kind else {
        unreachable!()
    };
    assert_eq!(stop.reason, "shutdown");

    // The auditor's tools read the proxy's trail.
    let timeline = session_timeline(&files, &session).unwrap();
    for want in [
        "statement 4: deny",
        "statement 5: expired",
        "session end: client terminated",
    ] {
        assert!(timeline.contains(want), "{want:?} missing from\n{timeline}");
    }
    let denied = search(
        &files,
        &Filter {
            decision: Some("deny".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(denied.len(), 1);
}

/// Copy the trail `stem*` (rotated files, active file, head) to a new dir.
fn copy_trail(from: &Path, stem: &str) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with(stem) {
            std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    to
}

fn problem(files: &[PathBuf]) -> pg_airlock::audit::Problem {
    let rep = verify(files);
    assert!(
        !rep.ok && rep.exit_code() == 1,
        "tampering not detected:\n{rep}"
    );
    rep.problem.unwrap()
}

/// A proxy trail of several rotated files, tampered in each way an insider
/// might, is refused by `verify`; the CLI agrees; a proxy will not start on
/// a trail whose tail was cut.
#[tokio::test(flavor = "multi_thread")]
async fn tampering_with_the_proxy_trail_is_caught() {
    let db = pg().create_db();
    setup(&db).await;
    let p = proxy()
        .extra("[audit]\nfile = \"trail.jsonl\"\nrotate_bytes = 4096\nstatement_text = \"full\"\nflush_interval = \"10ms\"\n")
        .start()
        .await;
    let c = p.connect(&db).await;
    for i in 0..60 {
        c.simple_query(&format!(
            "SELECT v, '{}' AS pad FROM t WHERE id = {}",
            "x".repeat(40),
            i % 10 + 1
        ))
        .await
        .unwrap();
    }
    drop(c);
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            p.running.proxy.metrics.sessions_active.get() == 0
        })
        .await
    );
    let dir = p.shutdown_keep_dir().await;
    let active = dir.path().join("trail.jsonl");
    let good = trail(&active);
    assert!(
        good.len() >= 4,
        "rotate_bytes = 4096 should give several files: {good:?}"
    );
    let rep = assert_verifies(&good);
    assert!(rep.records >= 65, "{rep}");
    for f in &good[..good.len() - 1] {
        assert!(
            std::fs::metadata(f).unwrap().len() <= 4096 + 600,
            "{} larger than rotate_bytes allows",
            f.display()
        );
    }

    let bin = env!("CARGO_BIN_EXE_pg-airlock");
    let cli = |file: &Path| {
        std::process::Command::new(bin)
            .args(["audit", "verify"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = cli(&active);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("PASS"));

    // Tampered copies; `mid` is a rotated file in the middle of the chain.
    let tampered = |f: &dyn Fn(&[PathBuf])| -> (tempfile::TempDir, Vec<PathBuf>) {
        let d = copy_trail(dir.path(), "trail.jsonl");
        let files = trail(&d.path().join("trail.jsonl"));
        assert_eq!(files.len(), good.len());
        f(&files);
        (d, files)
    };

    // One edited byte that keeps the JSON valid: the next line's prev breaks.
    let (_d, files) = tampered(&|files| {
        let mut b = std::fs::read(&files[1]).unwrap();
        let l = lines(&files[1]);
        let at =
            l[..2].iter().map(|x| x.len() + 1).sum::<usize>() + l[2].find("SELECT").unwrap() + 5;
        assert_eq!(b[at], b'T');
        b[at] = b'X';
        std::fs::write(&files[1], b).unwrap();
    });
    let pr = problem(&files);
    assert_eq!(
        (pr.kind, pr.file.clone(), pr.line),
        (ProblemKind::PrevMismatch, files[1].clone(), 4),
        "{}",
        pr.detail
    );
    let out = cli(&files[files.len() - 1]);
    assert_eq!(out.status.code(), Some(1), "CLI passes a tampered trail");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("FAIL: PrevMismatch"));

    // An edited byte in the very last record: only the head can tell.
    let (_d, files) = tampered(&|files| {
        let last = files.last().unwrap();
        let mut l = lines(last);
        let n = l.len() - 1;
        l[n] = l[n].replacen("\"reason\":\"shutdown\"", "\"reason\":\"shutdowN\"", 1);
        assert!(l[n].contains("shutdowN"), "{}", l[n]);
        write_lines(last, &l);
    });
    assert_eq!(problem(&files).kind, ProblemKind::HeadMismatch);

    // A dropped line.
    let (_d, files) = tampered(&|files| {
        let mut l = lines(&files[1]);
        l.remove(3);
        write_lines(&files[1], &l);
    });
    let pr = problem(&files);
    assert_eq!(
        (pr.kind, pr.line),
        (ProblemKind::RecordsMissing, 4),
        "{}",
        pr.detail
    );

    // Two lines swapped.
    let (_d, files) = tampered(&|files| {
        let mut l = lines(&files[2]);
        l.swap(1, 2);
        write_lines(&files[2], &l);
    });
    let pr = problem(&files);
    assert_eq!(
        (pr.kind, pr.file.clone(), pr.line),
        (ProblemKind::RecordsMissing, files[2].clone(), 2),
        "{}",
        pr.detail
    );

    // The tail cut by whole lines (caught by the head) ...
    let (cut_dir, files) = tampered(&|files| {
        let last = files.last().unwrap();
        let l = lines(last);
        assert!(l.len() >= 3, "active file too short to cut: {l:?}");
        write_lines(last, &l[..l.len() - 2]);
    });
    assert_eq!(problem(&files).kind, ProblemKind::TruncatedTail);
    // ... and a proxy refuses to chain onto it, naming the file and the gap.
    let trail_path = cut_dir.path().join("trail.jsonl");
    match proxy()
        .extra(&format!(
            "[audit]\nfile = {:?}\n",
            trail_path.display().to_string()
        ))
        .try_start()
        .await
    {
        Ok(p) => {
            p.shutdown().await;
            panic!("proxy started on a trail with records cut from its tail");
        }
        Err((msg, _)) => assert!(
            msg.contains(&trail_path.display().to_string()) && msg.contains("records were removed"),
            "{msg}"
        ),
    }
    // ... and mid-line.
    let (_d, files) = tampered(&|files| {
        let last = files.last().unwrap();
        let b = std::fs::read(last).unwrap();
        std::fs::write(last, &b[..b.len() - 7]).unwrap();
    });
    assert_eq!(problem(&files).kind, ProblemKind::PartialLine);

    // A rotated file cut out of the middle, then the first one (retention
    // is allowed, but the chain no longer starts at genesis).
    let (_d, files) = tampered(&|files| std::fs::remove_file(&files[1]).unwrap());
    let files = trail(&files[files.len() - 1]);
    let pr = problem(&files);
    assert_eq!(
        (pr.kind, pr.line),
        (ProblemKind::FileMissing, 1),
        "{}",
        pr.detail
    );
    let (_d, files) = tampered(&|files| std::fs::remove_file(&files[0]).unwrap());
    let rep = verify(&trail(&files[files.len() - 1]));
    assert!(rep.ok && !rep.from_genesis, "{rep}");
}

#[tokio::test]
async fn unwritable_audit_paths_refuse_the_start_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let under_file = not_a_dir.join("audit.jsonl");
    for (path, must_name) in [
        (
            under_file.display().to_string(),
            not_a_dir.display().to_string(),
        ),
        ("/dev/full".to_string(), "/dev/full".to_string()),
        (
            "/nonexistent-airlock-dir/audit.jsonl".to_string(),
            "/nonexistent-airlock-dir".to_string(),
        ),
    ] {
        match proxy()
            .extra(&format!("[audit]\nfile = {path:?}\n"))
            .try_start()
            .await
        {
            Ok(p) => {
                p.shutdown().await;
                panic!("proxy started with audit file {path}");
            }
            Err((msg, _)) => assert!(
                msg.contains("audit") && msg.contains(&must_name),
                "{path}: {msg}"
            ),
        }
    }
    // The real binary: exits non-zero before listening, saying why.
    let d = tempfile::tempdir().unwrap();
    let text = proxy()
        .extra("[audit]\nfile = \"/dev/full\"\n")
        .config_text(d.path());
    std::fs::write(d.path().join("airlock.toml"), text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg-airlock"))
        .args(["run", "--config"])
        .arg(d.path().join("airlock.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pg-airlock run started with /dev/full as its audit file"
    );
    assert!(err.contains("/dev/full"), "{err}");
}

/// `GET /metrics` on the proxy's admin port, body only.
async fn scrape_metrics(p: &TestProxy) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.running.admin_addr.expect("admin port"))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// `[audit] enabled = false`: sessions work as usual, /metrics says the
/// trail is off, and nothing is written where the default trail would go.
/// The same session with the default config is the control: it leaves
/// `airlock-audit.jsonl` beside the config.
#[tokio::test(flavor = "multi_thread")]
async fn audit_disabled_serves_sessions_and_writes_no_trail() {
    let db = pg().create_db();
    setup(&db).await;
    for enabled in [false, true] {
        let b = proxy();
        let p = if enabled {
            b
        } else {
            b.extra("[audit]\nenabled = false\nstatement_text = \"full\"")
        }
        .start()
        .await;
        let c = p.connect(&db).await;
        c.simple_query(&format!(
            "INSERT INTO t VALUES ({}, 'x')",
            100 + enabled as i32
        ))
        .await
        .unwrap();
        let rows = c
            .query("SELECT v FROM t WHERE id = $1", &[&3i32])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, &str>(0), "v3");
        let m = scrape_metrics(&p).await;
        assert!(
            m.contains(&format!("\nairlock_audit_enabled {}\n", enabled as u8)),
            "{m}"
        );
        drop(c);
        assert!(
            eventually(std::time::Duration::from_secs(5), || async {
                p.running.proxy.metrics.sessions_active.get() == 0
            })
            .await
        );
        assert_eq!(p.running.proxy.metrics.statements_total.get(), 2);
        let dir = p.shutdown_keep_dir().await;
        let trail: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("airlock-audit"))
            .collect();
        if enabled {
            assert!(
                trail.contains(&"airlock-audit.jsonl".to_string()),
                "control run wrote no trail: {trail:?}"
            );
            let text = std::fs::read_to_string(dir.path().join("airlock-audit.jsonl")).unwrap();
            assert!(text.contains("\"type\":\"statement\""), "{text}");
        } else {
            assert!(
                trail.is_empty(),
                "audit disabled but files were written: {trail:?}"
            );
        }
    }
}

/// A statement prepared once and executed later is recorded with its own
/// text, not the text the session parsed last (the record is evidence of
/// what ran). Two prepared statements, executed interleaved, each with
/// a bound value.
#[tokio::test(flavor = "multi_thread")]
async fn executions_of_prepared_statements_carry_their_own_text() {
    let db = pg().create_db();
    setup(&db).await;
    let p = proxy().start().await;
    let (c, conn) = p
        .config(AGENT, AGENT_PASSWORD, &db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let a_sql = "SELECT v FROM t WHERE id = $1";
    let b_sql = "SELECT count(*) FROM t WHERE id < $1";
    let a = c.prepare(a_sql).await.unwrap();
    let b = c.prepare(b_sql).await.unwrap();
    assert_eq!(
        c.query_one(&a, &[&3i32]).await.unwrap().get::<_, String>(0),
        "v3"
    );
    assert_eq!(c.query_one(&b, &[&5i32]).await.unwrap().get::<_, i64>(0), 4);
    assert_eq!(
        c.query_one(&a, &[&4i32]).await.unwrap().get::<_, String>(0),
        "v4"
    );
    drop(c);
    conn.await.unwrap().unwrap();
    let ended = eventually(std::time::Duration::from_secs(5), || async {
        p.running.proxy.metrics.sessions_active.get() == 0
    })
    .await;
    assert!(ended, "session did not end");
    let dir = p.shutdown_keep_dir().await;
    let recs = records(&trail(&dir.path().join("airlock-audit.jsonl")));
    let ran: Vec<(&str, usize)> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::Statement(s) => Some((s.sql.as_deref().unwrap_or(""), s.parameter_count)),
            _ => None,
        })
        .collect();
    assert_eq!(ran, [(a_sql, 1), (b_sql, 1), (a_sql, 1)]);
}
