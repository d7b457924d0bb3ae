//! Crash safety of the audit trail: the proxy runs as its own process
//! (`pg-airlock run`) and is killed with SIGKILL while statements flow.
//!
//! What the audit module promises (src/audit/mod.rs): approval requests and
//! decisions are fsynced before the proxy acts on them; ordinary statement
//! records may be lost only within the group-commit window (`flush_interval`,
//! 50 ms by default, plus one fsync); a torn last line is cut off at the next
//! start and the cut itself is recorded.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pg_airlock::audit::chain::Record;
use pg_airlock::audit::event::*;
use pg_airlock::audit::verify::ProblemKind;

use crate::audit_common::*;
use crate::harness::*;

const APPROVER_TOKEN_ENV: &str = "AIRLOCK_AUDIT_CRASH_TEST_TOKEN";
const APPROVER_TOKEN: &str = "crash-test-approver-token-0123456789";

/// The proxy as a child process; killed (SIGKILL) if the test fails first.
struct ProxyProcess {
    child: Child,
    port: u16,
    admin: u16,
    stderr: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    fn spawn(dir: &Path, rules: &[PathBuf]) -> ProxyProcess {
        let port = free_port();
        let admin = free_port();
        let text = proxy()
            .rules(rules)
            .extra(&format!(
                "[[api_token]]\ntoken_env = \"{APPROVER_TOKEN_ENV}\"\nidentity = \"api:alice\"\n"
            ))
            .config_text(dir);
        // The harness listens on port 0 (listen first, admin second); a
        // separate process must be told its ports.
        let text = text
            .replacen(
                "address = \"127.0.0.1:0\"",
                &format!("address = \"127.0.0.1:{port}\""),
                1,
            )
            .replacen(
                "address = \"127.0.0.1:0\"",
                &format!("address = \"127.0.0.1:{admin}\""),
                1,
            );
        let config = dir.join("airlock.toml");
        std::fs::write(&config, text).unwrap();
        let stderr = dir.join("proxy.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_pg-airlock"))
            .args(["run", "--config"])
            .arg(&config)
            .env(APPROVER_TOKEN_ENV, APPROVER_TOKEN)
            .env("AIRLOCK_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        ProxyProcess {
            child,
            port,
            admin,
            stderr,
        }
    }

    async fn wait_listening(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("pg-airlock exited with {st}: {}", self.log());
            }
            assert!(
                Instant::now() < end,
                "pg-airlock did not listen within 20s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.stderr).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(AGENT)
            .password(AGENT_PASSWORD)
            .dbname(db);
        c.connect_timeout(Duration::from_secs(10));
        c
    }

    /// SIGKILL: no shutdown path, no final flush.
    fn kill9(&mut self) -> Instant {
        let t = Instant::now();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        t
    }
}

/// The records of a trail that may end in a torn line: complete lines
/// parsed, plus whether a partial last line was found.
fn read_crashed(files: &[PathBuf]) -> (Vec<Record>, bool) {
    let mut out = Vec::new();
    let mut torn = false;
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        let complete = text.ends_with('\n') || text.is_empty();
        let mut ls: Vec<&str> = text.lines().collect();
        if !complete {
            assert_eq!(
                i,
                files.len() - 1,
                "partial line in rotated file {}",
                f.display()
            );
            ls.pop();
            torn = true;
        }
        for l in ls {
            out.push(
                serde_json::from_str::<Record>(l)
                    .unwrap_or_else(|e| panic!("{}: {e}: {l}", f.display())),
            );
        }
    }
    out.sort_by_key(|r| r.seq);
    (out, torn)
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_proxy_keeps_durable_decisions_and_loses_at_most_the_flush_window() {
    let db = pg().create_db();
    pg().direct(&db)
        .await
        .batch_execute("CREATE TABLE victim (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rules = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")];
    let mut px = ProxyProcess::spawn(dir.path(), &rules);
    px.wait_listening().await;
    let active = dir.path().join("airlock-audit.jsonl");
    let flush_interval = Duration::from_millis(50); // the documented default, not configured here

    // Client A: a steady stream of statements; the test notes when each
    // result arrived.
    let (a, conn) = px.config(&db).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let stream = {
        let received = received.clone();
        tokio::spawn(async move {
            for n in 1u64.. {
                if a.simple_query("SELECT 1").await.is_err() {
                    return;
                }
                received.lock().unwrap().push((n, Instant::now()));
            }
        })
    };

    // Client B: a held statement. Its NOTICE comes after the request is
    // recorded durably, so the request must be in the file at that moment.
    let (b, mut conn) = px.config(&db).connect(tokio_postgres::NoTls).await.unwrap();
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut msgs = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = msgs.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                let _ = ntx.send(n.message().to_string());
            }
        }
    });
    let held = tokio::spawn(async move { b.simple_query("DROP TABLE victim").await.map(|_| ()) });
    let notice = tokio::time::timeout(Duration::from_secs(10), nrx.recv())
        .await
        .expect("held notice")
        .unwrap();
    let id = notice
        .split("(request ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("{notice}"))
        .to_string();
    let on_disk = std::fs::read_to_string(&active).unwrap();
    assert!(
        on_disk
            .lines()
            .any(|l| l.contains("\"type\":\"approval_requested\"") && l.contains(&id)),
        "approval request {id} not on disk when the client was told it is held"
    );

    // Approve through the CLI; the DROP runs; kill as soon as its result is in.
    let out = Command::new(env!("CARGO_BIN_EXE_pg-airlock"))
        .args([
            "approvals",
            "approve",
            &id,
            "--admin",
            &format!("http://127.0.0.1:{}", px.admin),
            "--token",
            APPROVER_TOKEN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "approve: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("approved statement finished")
        .unwrap()
        .expect("approved DROP ran");
    // Let the stream run a little longer so the kill lands mid-stream.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let n_before = received.lock().unwrap().len();
    assert!(
        n_before >= 10,
        "only {n_before} statements went through before the kill"
    );
    let killed_at = px.kill9();
    tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("stream ends with the proxy")
        .unwrap();
    let received = received.lock().unwrap().clone();
    let dropped = pg()
        .direct(&db)
        .await
        .query_opt("SELECT to_regclass('victim')::text", &[])
        .await
        .unwrap()
        .unwrap()
        .get::<_, Option<String>>(0);
    assert_eq!(dropped, None, "the approved DROP ran");

    // The file after the crash: a valid chain, at most a torn last line.
    let files = trail(&active);
    let rep = pg_airlock::audit::verify(&files);
    if !rep.ok {
        let p = rep.problem.as_ref().unwrap();
        assert_eq!(
            p.kind,
            ProblemKind::PartialLine,
            "crash left more than a torn last line:\n{rep}"
        );
        assert_eq!(p.file, active);
    }
    let (recs, torn) = read_crashed(&files);

    // Durable records: request and decision precede the approved statement.
    let decided = recs
        .iter()
        .find_map(|r| match &r.event.kind {
            EventKind::ApprovalDecided(d) if d.request_id == id => Some(d.clone()),
            _ => None,
        })
        .expect("approval decision lost although the approved statement ran");
    assert_eq!(decided.decision, "approved");
    assert_eq!(decided.approvers, ["api:alice"]);

    // Ordinary records: every result the client got more than the window
    // before the kill is on the record.
    let session_a = {
        let starts: Vec<&SessionStart> = recs
            .iter()
            .filter_map(|r| match &r.event.kind {
                EventKind::SessionStart(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 2, "two sessions were started");
        // A ran many statements, B one.
        let counts: Vec<usize> = starts
            .iter()
            .map(|s| statements(&recs, &s.session).len())
            .collect();
        if counts[0] >= counts[1] {
            starts[0].session.clone()
        } else {
            starts[1].session.clone()
        }
    };
    let recorded: std::collections::HashSet<u64> = statements(&recs, &session_a)
        .iter()
        .map(|s| s.statement)
        .collect();
    let lost: Vec<(u64, Duration)> = received
        .iter()
        .filter(|(n, _)| !recorded.contains(n))
        .map(|(n, t)| (*n, killed_at.saturating_duration_since(*t)))
        .collect();
    let oldest_lost = lost.iter().map(|(_, age)| *age).max().unwrap_or_default();
    eprintln!(
        "crash: {} results received, {} recorded, {} lost (oldest lost result arrived {:?} before SIGKILL), torn last line: {torn}",
        received.len(),
        recorded.len(),
        lost.len(),
        oldest_lost
    );
    // The lost ones are a suffix: records are written in order.
    if let Some((first_lost, _)) = lost.first() {
        assert!(
            received
                .iter()
                .filter(|(n, _)| n > first_lost)
                .all(|(n, _)| !recorded.contains(n)),
            "a hole in the trail: {lost:?}"
        );
    }
    // Bound: flush_interval + one fsync + scheduling on a loaded 2-core box.
    let bound = flush_interval + Duration::from_millis(200);
    assert!(
        oldest_lost <= bound,
        "a result received {oldest_lost:?} before the crash is not on the record (bound {bound:?}): {lost:?}"
    );

    // Restart on the crashed trail: the torn line is cut (and the cut
    // recorded), the chain continues and verifies across both runs.
    let p = proxy()
        .extra(&format!(
            "[audit]\nfile = {:?}\n",
            active.display().to_string()
        ))
        .start()
        .await;
    p.shutdown().await;
    let files = trail(&active);
    let rep = assert_verifies(&files);
    let recs = records(&files);
    let starts: Vec<&AuditStarted> = recs
        .iter()
        .filter_map(|r| match &r.event.kind {
            EventKind::AuditStarted(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{rep}");
    assert_eq!(
        starts[1].recovered.is_some(),
        torn,
        "{:?}",
        starts[1].recovered
    );
}
