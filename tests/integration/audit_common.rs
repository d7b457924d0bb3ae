//! Helpers shared by the audit tests: building statement events, writing a
//! finished trail with the auditor alone, reading and rewriting trail files,
//! and reading the trail the proxy wrote.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_airlock::audit::chain::Record;
use pg_airlock::audit::event::*;
use pg_airlock::audit::*;

pub fn cfg(dir: &Path) -> AuditConfig {
    AuditConfig::with_file(dir.join("audit.jsonl"))
}

pub fn stmt(session: &str, n: u64, sql: &str, decision: &str) -> Event {
    Event::now(EventKind::Statement(Statement {
        session: session.into(),
        agent: "agent-7".into(),
        statement: n,
        sql: Some(sql.into()),
        text_mode: String::new(),
        parameters: None,
        parameter_count: 0,
        categories: vec!["read".into()],
        tables: vec!["public.t".into()],
        functions: vec![],
        decision: decision.into(),
        rules: vec![],
        ruleset: Some("rs1".into()),
        request_id: None,
        outcome: Outcome::Ok {
            command_tag: "SELECT 1".into(),
            rows: Some(1),
        },
        duration_us: 1200,
    }))
}

/// All files of the trail named `stem` in `dir` (active + rotated), in name
/// order, which puts the active file first: `verify` must order them itself.
pub fn files_named(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(stem) && !n.ends_with(".head") && !n.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v
}

/// All files of the trail in `dir` written by [`cfg`].
pub fn dir_files(dir: &Path) -> Vec<PathBuf> {
    files_named(dir, "audit.jsonl")
}

/// A finished trail of `n` statements plus the auditor's own records.
pub async fn write_trail(dir: &Path, n: u64, mut cfg: AuditConfig) -> Vec<PathBuf> {
    cfg.flush_interval = Duration::from_millis(5);
    let (a, task) = Auditor::start(cfg).await.unwrap();
    for i in 1..=n {
        a.record(stmt(
            "s-1",
            i,
            &format!("SELECT * FROM t WHERE id = {i}"),
            "allow",
        ))
        .await
        .unwrap();
    }
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
    dir_files(dir)
}

pub fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(p: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(p, s).unwrap();
}

/// Every record of a trail, in chain order (`files` as `trail_files` gives them).
pub fn records(files: &[PathBuf]) -> Vec<Record> {
    pg_airlock::audit::chain::read_records(files)
        .unwrap_or_else(|e| panic!("reading {files:?}: {e}"))
}

/// The files of the trail whose active file is `active`, in chain order.
pub fn trail(active: &Path) -> Vec<PathBuf> {
    let files = trail_files(active).unwrap_or_else(|e| panic!("listing {}: {e}", active.display()));
    assert!(!files.is_empty(), "no audit trail at {}", active.display());
    files
}

/// Where a harness proxy with no `[audit]` file setting writes its trail.
pub fn default_trail(p: &crate::harness::TestProxy) -> PathBuf {
    p.dir.path().join("airlock-audit.jsonl")
}

/// The statement records of one session, in order.
pub fn statements<'a>(recs: &'a [Record], session: &str) -> Vec<&'a Statement> {
    recs.iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::Statement(s) if s.session == session => Some(s),
            _ => None,
        })
        .collect()
}

/// Assert the verify report passes, printing it when it does not.
pub fn assert_verifies(files: &[PathBuf]) -> VerifyReport {
    let rep = verify(files);
    assert!(rep.ok, "audit trail does not verify:\n{rep}");
    rep
}
