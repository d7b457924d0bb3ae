//! The audit writer on its own (no proxy): writing, rotation, durability,
//! restart and tamper detection of the JSON Lines file.

use std::time::{Duration, Instant};

use crate::audit_common::*;
use pg_airlock::audit::chain::hash_line;
use pg_airlock::audit::verify::ProblemKind;
use pg_airlock::audit::*;

#[tokio::test]
async fn written_trail_verifies_from_genesis_with_tail_check() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 25, cfg(dir.path())).await;
    assert_eq!(files.len(), 1);
    let rep = verify(&files);
    assert!(rep.ok, "{rep}");
    assert_eq!(
        rep.records, 27,
        "25 statements + audit_started + audit_stopped"
    );
    assert!(rep.from_genesis);
    assert!(rep.head.is_some(), "head sidecar found");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let l = lines(&files[0]);
    assert!(
        l[0].starts_with(&format!("{{\"seq\":1,\"prev\":\"{GENESIS}\",\"ts\":\"")),
        "{}",
        l[0]
    );
    assert!(l[0].contains("\"type\":\"audit_started\""));
    for w in l.windows(2) {
        let next: Record = serde_json::from_str(&w[1]).unwrap();
        assert_eq!(next.prev, hash_line(w[0].as_bytes()));
    }
}

fn kind(files: &[std::path::PathBuf]) -> (ProblemKind, usize, Option<u64>) {
    let rep = verify(files);
    assert!(!rep.ok, "tampering not detected:\n{rep}");
    assert_eq!(rep.exit_code(), 1);
    let p = rep.problem.unwrap();
    (p.kind, p.line, p.seq)
}

#[tokio::test]
async fn edited_byte_is_caught_at_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let mut l = lines(&files[0]);
    // Keep the JSON valid: change one digit inside the statement text.
    assert!(l[9].contains("id = ?"), "{}", l[9]);
    l[9] = l[9].replacen("\"statement\":9", "\"statement\":8", 1);
    write_lines(&files[0], &l);
    assert_eq!(kind(&files), (ProblemKind::PrevMismatch, 11, Some(11)));
}

#[tokio::test]
async fn edited_byte_that_breaks_json_is_caught_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let l = lines(&files[0]);
    let off: usize = l[..4].iter().map(|x| x.len() + 1).sum::<usize>() + 2; // inside line 5's `"seq"`
    bytes[off] = b'X';
    std::fs::write(&files[0], bytes).unwrap();
    assert_eq!(kind(&files).0, ProblemKind::NotARecord);
    assert_eq!(kind(&files).1, 5);
}

#[tokio::test]
async fn dropped_line_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let mut l = lines(&files[0]);
    l.remove(6); // seq 7
    write_lines(&files[0], &l);
    assert_eq!(kind(&files), (ProblemKind::RecordsMissing, 7, Some(8)));
}

#[tokio::test]
async fn swapped_lines_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let mut l = lines(&files[0]);
    l.swap(6, 7);
    write_lines(&files[0], &l);
    let (k, line, seq) = kind(&files);
    assert_eq!((line, seq), (7, Some(8)));
    assert_eq!(k, ProblemKind::RecordsMissing);
}

#[tokio::test]
async fn forged_line_is_caught_even_when_chained_to_its_predecessor() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let mut l = lines(&files[0]);
    // A careful forger: correct next seq and prev = hash of line 5.
    let prev = hash_line(l[4].as_bytes());
    let forged = l[5]
        .replacen(
            &l[5][l[5].find("\"prev\":\"").unwrap()..l[5].find("\",\"ts\"").unwrap()],
            &format!("\"prev\":\"{prev}"),
            1,
        )
        .replace("SELECT", "DROP TABLE t; SELECT");
    l.insert(5, forged);
    write_lines(&files[0], &l);
    // The real seq 6 now follows the forged seq 6.
    assert_eq!(kind(&files), (ProblemKind::OutOfOrder, 7, Some(6)));
}

#[tokio::test]
async fn recomputed_chain_after_an_edit_is_caught_by_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 10, cfg(dir.path())).await;
    let l = lines(&files[0]);
    // Rewrite record 4 and re-hash everything after it consistently.
    let mut out: Vec<String> = l[..3].to_vec();
    for (i, line) in l[3..].iter().enumerate() {
        let mut rec: serde_json::Value = serde_json::from_str(line).unwrap();
        rec["prev"] = hash_line(out.last().unwrap().as_bytes()).into();
        if i == 0 {
            rec["decision"] = "allow-edited".into();
        }
        out.push(serde_json::to_string(&rec).unwrap());
    }
    write_lines(&files[0], &out);
    assert_eq!(kind(&files).0, ProblemKind::HeadMismatch);
    // Without the head the rewrite is invisible: that is the documented limit.
    assert!(pg_airlock::audit::verify::verify_with_head(&files, None).ok);
}

#[tokio::test]
async fn truncated_tail_is_caught_by_head_and_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 20, cfg(dir.path())).await;
    let l = lines(&files[0]);
    write_lines(&files[0], &l[..l.len() - 3]);
    let (k, _, seq) = kind(&files);
    assert_eq!(k, ProblemKind::TruncatedTail);
    assert_eq!(seq, Some(19));

    let whole = l.join("\n") + "\n";
    std::fs::write(&files[0], &whole[..whole.len() - 10]).unwrap();
    let (k, line, _) = kind(&files);
    assert_eq!((k, line), (ProblemKind::PartialLine, 22));
}

#[tokio::test]
async fn rotation_keeps_the_chain_and_a_missing_file_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.rotate_bytes = 4096;
    let files = write_trail(dir.path(), 120, c).await;
    assert!(files.len() >= 4, "expected several files, got {files:?}");
    let discovered = pg_airlock::audit::trail_files(&dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(discovered.len(), files.len());
    assert_eq!(discovered.last().unwrap(), &dir.path().join("audit.jsonl"));
    println!("{}", verify(&discovered));
    let rep = verify(&files);
    assert!(rep.ok, "{rep}");
    assert_eq!(
        rep.records,
        122 + rep.files.len() as u64 - 1,
        "one rotated marker per rotation"
    );
    // Each archived file ends with a marker naming it; the next file chains to it.
    let ordered: Vec<_> = rep.files.iter().map(|f| f.path.clone()).collect();
    for w in ordered.windows(2) {
        let a = lines(&w[0]);
        let last: Record = serde_json::from_str(a.last().unwrap()).unwrap();
        let EventKind::Rotated(r) = &last.event.kind else {
            panic!("{} does not end in rotated", w[0].display())
        };
        assert_eq!(r.archived_as, w[0].file_name().unwrap().to_string_lossy());
        assert!(std::fs::metadata(&w[0]).unwrap().len() <= 4096 + 300);
        let first: Record = serde_json::from_str(&lines(&w[1])[0]).unwrap();
        assert_eq!(first.prev, hash_line(a.last().unwrap().as_bytes()));
        assert_eq!(first.seq, last.seq + 1);
    }
    // Cut a file out of the middle.
    let mut cut = ordered.clone();
    cut.remove(1);
    let rep = verify(&cut);
    let p = rep.problem.expect("gap detected");
    assert_eq!(p.kind, ProblemKind::FileMissing, "{}", p.detail);
    assert_eq!(p.file, ordered[2]);
    assert_eq!(p.line, 1);
    // Cut the active (last) file: the head says more exists.
    let mut cut = ordered.clone();
    cut.pop();
    let rep = verify(&cut);
    assert_eq!(
        rep.problem.expect("cut tail detected").kind,
        ProblemKind::TruncatedTail
    );
}

#[tokio::test]
async fn restart_continues_the_chain_and_cuts_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 5, cfg(dir.path())).await;
    // Simulate a crash mid-write: a partial line after the last fsync.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":8,\"prev\":\"ab").unwrap();
    drop(f);
    let files = write_trail(dir.path(), 5, cfg(dir.path())).await;
    let rep = verify(&files);
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.records, 14);
    let recs = search(
        &files,
        &Filter {
            text: Some("partial last line".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].seq, 8);
}

#[tokio::test]
async fn start_refuses_when_records_were_cut_from_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_trail(dir.path(), 5, cfg(dir.path())).await;
    let l = lines(&files[0]);
    write_lines(&files[0], &l[..4]);
    let err = Auditor::start(cfg(dir.path()))
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("audit.jsonl") && msg.contains("seq 4") && msg.contains("seq 7"),
        "{msg}"
    );
}

#[tokio::test]
async fn group_commit_batches_many_records_into_few_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.flush_interval = Duration::from_millis(50);
    let (a, task) = Auditor::start(c).await.unwrap();
    let base = a
        .metrics()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..5000 {
        a.record(stmt("s", i, "SELECT 1", "allow")).await.unwrap();
    }
    let enqueue = t.elapsed();
    a.flush().await.unwrap();
    let m = a.metrics();
    let fsyncs = m.fsyncs.load(std::sync::atomic::Ordering::Relaxed) - base;
    assert!(
        (1..=10).contains(&fsyncs),
        "{fsyncs} fsyncs for 5000 records"
    );
    assert_eq!(
        m.records_written.load(std::sync::atomic::Ordering::Relaxed),
        5001
    );
    assert_eq!(
        m.records_pending.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    eprintln!(
        "5000 record() calls took {enqueue:?} ({:?} each), {fsyncs} fsyncs",
        enqueue / 5000
    );
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
    assert!(verify(&dir_files(dir.path())).ok);
}

#[tokio::test]
async fn record_durable_is_on_disk_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.flush_interval = Duration::from_secs(10); // only the durable record can cause a write
    let (a, task) = Auditor::start(c).await.unwrap();
    a.record(stmt("s", 1, "SELECT 1", "allow")).await.unwrap();
    let ev = Event::now(EventKind::ApprovalDecided(event::ApprovalDecided {
        request_id: "req-42".into(),
        session: Some("s".into()),
        decision: "approved".into(),
        approvers: vec!["alice".into()],
        reason: Some("ticket OPS-1".into()),
        channel: "slack:#db".into(),
        latency_ms: 1234,
    }));
    let t = Instant::now();
    a.record_durable(ev).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "durable must not wait for the group-commit timer"
    );
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(text.contains("\"request_id\":\"req-42\""), "{text}");
    assert!(text.ends_with('\n'));
    // The head sidecar may lag the log (it is written after the durable
    // record is released), never lead it; a flush brings it up to date.
    let head = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("audit.jsonl.head")).unwrap())
            .unwrap()
    };
    assert!(head()["seq"].as_u64().unwrap() <= 3);
    a.flush().await.unwrap();
    assert_eq!(head()["seq"], 3);
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
}

#[tokio::test]
async fn unwritable_targets_fail_start_naming_the_path() {
    let err = Auditor::start(AuditConfig::with_file("/nonexistent-dir/x/audit.jsonl"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    // /dev/full accepts open but every write fails with ENOSPC.
    let err = Auditor::start(AuditConfig::with_file("/dev/full"))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("/dev/full") && msg.contains("write"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notadir"), b"").unwrap();
    let err = Auditor::start(AuditConfig::with_file(
        dir.path().join("notadir/audit.jsonl"),
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("notadir"), "{err}");
}

#[tokio::test]
async fn text_policy_is_applied_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, task) = Auditor::start(cfg(dir.path())).await.unwrap();
    let mut e = stmt(
        "s",
        1,
        "UPDATE accounts SET balance = 99999 WHERE owner = 'Alice Secret'",
        "allow",
    );
    if let EventKind::Statement(s) = &mut e.kind {
        s.parameters = Some(vec![Some("p-value-hidden".into())]);
    }
    a.record(e).await.unwrap();
    let mut held = stmt(
        "s",
        2,
        "ALTER ROLE bot PASSWORD 'hunter2'; DELETE FROM t WHERE id = 7",
        "approved",
    );
    if let EventKind::Statement(s) = &mut held.kind {
        s.request_id = Some("r-1".into());
    }
    a.record(held).await.unwrap();
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    for secret in ["99999", "Alice Secret", "p-value-hidden", "hunter2"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("UPDATE accounts SET balance = ? WHERE owner = ?"));
    assert!(text.contains("\"parameter_count\":1"));
    assert!(
        text.contains("DELETE FROM t WHERE id = 7"),
        "held statements are recorded in full"
    );
    assert!(text.contains("\"text_mode\":\"full\"") && text.contains("\"text_mode\":\"redacted\""));
}

#[tokio::test]
async fn time_based_rotation_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.rotate_interval = Some(Duration::from_secs(1));
    c.flush_interval = Duration::from_millis(5);
    let (a, task) = Auditor::start(c).await.unwrap();
    a.record(stmt("s", 1, "SELECT 1", "allow")).await.unwrap();
    a.flush().await.unwrap();
    // Poll to a deadline: the idle writer must rotate on its own timer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir_files(dir.path()).len() < 2 {
        assert!(Instant::now() < deadline, "no time-based rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.record(stmt("s", 2, "SELECT 2", "allow")).await.unwrap();
    a.shutdown().await.unwrap();
    task.join().await.unwrap();
    let files = dir_files(dir.path());
    let rep = verify(&files);
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.files.len(), 2);
    assert_eq!(rep.files[0].records, 3, "audit_started, statement, rotated");
}

#[tokio::test]
async fn start_refuses_to_fork_the_chain_when_the_head_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.rotate_bytes = 4096;
    write_trail(dir.path(), 60, c.clone()).await;
    std::fs::remove_file(dir.path().join("audit.jsonl")).unwrap();
    std::fs::remove_file(dir.path().join("audit.jsonl.head")).unwrap();
    let err = Auditor::start(c).await.err().expect("must refuse");
    assert!(
        err.to_string().contains("audit.jsonl.head") && err.to_string().contains("rotated file"),
        "{err}"
    );
}
