//! Hold-and-approve end to end: a real PostgreSQL, the real proxy, and the
//! reviewer's side driven the way a person would drive it (raw HTTP to the
//! admin API, signed Slack clicks to the interactions endpoint, Socket Mode
//! envelopes from a fake Slack).
//!
//! Each test looks from three places: what the client got (result, SQLSTATE,
//! message, notice), what the database holds (checked over a direct
//! connection, never through the proxy), and what the reviewer sees (the
//! pending list, one request's view, the Slack message and its edits, the
//! audit trail).

use crate::fake_slack::{self, FakeSlack};
use crate::harness::*;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// API tokens and the identities they speak for. `U0OWNER` is the default
/// agent's owner in the harness config; the others are ordinary reviewers.
const ALICE: (&str, &str, &str) = (
    "AIRLOCK_IT_TOKEN_ALICE",
    "alice-token-7f3a9c21e8d4b605",
    "U0ALICE",
);
const BOB: (&str, &str, &str) = (
    "AIRLOCK_IT_TOKEN_BOB",
    "bob-token-51c2e9a0d7b3f418",
    "U0BOB",
);
const OWNER: (&str, &str, &str) = (
    "AIRLOCK_IT_TOKEN_OWNER",
    "owner-token-c0ffee4d2a9b1e77",
    "U0OWNER",
);

const SLACK_BOT: (&str, &str) = ("AIRLOCK_IT_SLACK_BOT", "xoxb-it-bot-token");
const SLACK_SIGNING: (&str, &str) = ("AIRLOCK_IT_SLACK_SIGNING", "it-signing-secret-5d1e0b9a77c3");
const SLACK_APP: (&str, &str) = ("AIRLOCK_IT_SLACK_APP", "xapp-it-app-token");
const CHANNEL: &str = "C0APPROVALS";

/// Generous waits: they bound failures, successes return at once.
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Setup

/// The shipped default rules with every hold timeout set to `timeout`, and,
/// when `ddl_quorum` is given, the `hold-ddl` rule needing that many
/// approvals. The directory must outlive the proxy (the rules reload).
fn rules(timeout: &str, ddl_quorum: Option<u32>) -> (tempfile::TempDir, Vec<PathBuf>) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"),
    )
    .unwrap();
    assert!(
        text.contains("name = \"hold-ddl\""),
        "rules/default.toml has no hold-ddl rule"
    );
    let mut out = Vec::new();
    let mut replaced = 0;
    for line in text.lines() {
        if line.trim_start().starts_with("timeout = ") {
            out.push(format!("timeout = \"{timeout}\""));
            replaced += 1;
        } else {
            out.push(line.to_string());
        }
        if let (Some(q), "name = \"hold-ddl\"") = (ddl_quorum, line.trim()) {
            out.push(format!("quorum = {q}"));
        }
    }
    assert!(replaced > 0, "rules/default.toml has no timeout to shorten");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, out.join("\n")).unwrap();
    (dir, vec![path])
}

fn token_toml() -> String {
    [ALICE, BOB, OWNER]
        .iter()
        .map(|(env, _, id)| format!("[[api_token]]\ntoken_env = \"{env}\"\nidentity = \"{id}\"\n"))
        .collect()
}

fn token_secrets() -> Vec<(&'static str, &'static str)> {
    [ALICE, BOB, OWNER]
        .iter()
        .map(|(env, tok, _)| (*env, *tok))
        .collect()
}

/// A proxy with the default rules (hold timeout `timeout`) and the API
/// tokens; approvals go through the admin API only (no Slack).
async fn api_proxy(timeout: &str, ddl_quorum: Option<u32>) -> (tempfile::TempDir, TestProxy) {
    let (rules_dir, paths) = rules(timeout, ddl_quorum);
    let p = proxy()
        .rules(&paths)
        .extra(&token_toml())
        .start_with_secrets(&token_secrets())
        .await;
    (rules_dir, p)
}

/// `t` with ten rows, `other` to drop, and `counter` whose value counts how
/// many times a held `UPDATE counter SET n = n + 1` ran.
async fn setup(db: &str) {
    pg().direct(db)
        .await
        .batch_execute(
            "CREATE TABLE t (id int primary key, v text);
             INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i;
             CREATE TABLE other (x int);
             CREATE TABLE counter (n int NOT NULL);
             INSERT INTO counter VALUES (0);",
        )
        .await
        .unwrap();
}

/// Checked directly, bypassing the proxy.
async fn table_exists(db: &str, name: &str) -> bool {
    let d = pg().direct(db).await;
    let r = d
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap();
    r.get(0)
}

async fn counter(db: &str) -> i32 {
    pg().direct(db)
        .await
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0)
}

async fn t_rows(db: &str) -> i64 {
    pg().direct(db)
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

/// A client through the proxy whose NoticeResponses arrive on a channel,
/// and the handle of the task that drives its socket (abort it to cut the
/// connection as a crashed client would).
async fn connect_with_notices(
    p: &TestProxy,
    db: &str,
) -> (
    Arc<tokio_postgres::Client>,
    mpsc::UnboundedReceiver<String>,
    JoinHandle<()>,
) {
    let (client, mut conn) = p
        .config(AGENT, AGENT_PASSWORD, db)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect through proxy");
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n.message().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (Arc::new(client), rx, driver)
}

/// Runs `sql` (simple protocol) on a task, so the test can act while it is held.
fn spawn_query(
    c: &Arc<tokio_postgres::Client>,
    sql: &str,
) -> JoinHandle<Result<(), tokio_postgres::Error>> {
    let (c, sql) = (c.clone(), sql.to_string());
    tokio::spawn(async move { c.batch_execute(&sql).await })
}

async fn finish<T>(h: JoinHandle<T>) -> T {
    tokio::time::timeout(WAIT, h)
        .await
        .expect("held query finishes after the decision")
        .expect("query task")
}

fn assert_sqlstate(r: Result<(), tokio_postgres::Error>, want: &str) -> String {
    let e = r.expect_err("the statement must fail");
    assert_eq!(code(&e), want, "{e}");
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The admin API, spoken over a raw socket so no product code is on the
// reviewer's side of the test.

pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect admin port");
        let body = body.unwrap_or("");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let text = String::from_utf8(resp).expect("UTF-8 response");
        let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    };
    tokio::time::timeout(WAIT, go)
        .await
        .expect("admin API answers")
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

struct Api(SocketAddr);

impl Api {
    fn of(p: &TestProxy) -> Api {
        Api(p.running.admin_addr.expect("admin port"))
    }

    async fn pending(&self) -> Vec<Value> {
        let (s, v) = http(self.0, "GET", "/approvals", Some(ALICE.1), None).await;
        assert_eq!(s, 200, "{v}");
        v["pending"].as_array().cloned().expect("pending list")
    }

    async fn show(&self, id: &str) -> Value {
        let (s, v) = http(
            self.0,
            "GET",
            &format!("/approvals/{id}"),
            Some(ALICE.1),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn approve(&self, id: &str, token: &str) -> (u16, Value) {
        http(
            self.0,
            "POST",
            &format!("/approvals/{id}/approve"),
            Some(token),
            None,
        )
        .await
    }

    async fn deny(&self, id: &str, token: &str, reason: &str) -> (u16, Value) {
        let body = json!({ "reason": reason }).to_string();
        http(
            self.0,
            "POST",
            &format!("/approvals/{id}/deny"),
            Some(token),
            Some(&body),
        )
        .await
    }

    /// Waits until a request for exactly `sql` is pending; returns its view.
    async fn held(&self, sql: &str) -> Value {
        let found = Mutex::new(None);
        let ok = eventually(WAIT, || async {
            let v = self.pending().await.into_iter().find(|v| v["sql"] == sql);
            let hit = v.is_some();
            *found.lock().unwrap() = v;
            hit
        })
        .await;
        assert!(
            ok,
            "no pending approval request for {sql:?}: {:#?}",
            self.pending().await
        );
        found.into_inner().unwrap().unwrap()
    }

    /// Waits for the one pending request (a raw-protocol client cannot be
    /// matched by text), which must be destructive, with nothing of it run
    /// yet: `t` still has its 10 rows. Returns its view.
    async fn pending_destructive(&self, db: &str) -> Value {
        let held = eventually(WAIT, || async { !self.pending().await.is_empty() }).await;
        assert!(held, "nothing was held");
        assert_eq!(t_rows(db).await, 10, "nothing ran while held");
        let view = self.pending().await.remove(0);
        assert!(
            strings(&view["categories"]).contains(&"destructive".to_string()),
            "{view:#}"
        );
        view
    }

    /// Waits until request `id` has left the pending list with `status`.
    async fn settled(&self, id: &str, status: &str) -> Value {
        let last = Mutex::new(Value::Null);
        let ok = eventually(WAIT, || async {
            let v = self.show(id).await;
            let hit = v["status"] == status && !self.pending().await.iter().any(|p| p["id"] == id);
            *last.lock().unwrap() = v;
            hit
        })
        .await;
        let last = last.into_inner().unwrap();
        assert!(ok, "request {id} did not become {status}: {last:#}");
        last
    }
}

fn id_of(view: &Value) -> String {
    view["id"].as_str().expect("request id").to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The audit trail the proxy wrote (`airlock-audit.jsonl` beside its config).

fn audit_records(p: &TestProxy) -> Vec<Value> {
    let path = p.dir.path().join("airlock-audit.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for an audit record of type `ty` about request `id` that satisfies `pred`.
async fn audit_record(p: &TestProxy, ty: &str, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let found = Mutex::new(None);
    let ok = eventually(WAIT, || async {
        let v = audit_records(p)
            .into_iter()
            .find(|r| r["type"] == ty && r["request_id"] == id && pred(r));
        let hit = v.is_some();
        *found.lock().unwrap() = v;
        hit
    })
    .await;
    assert!(
        ok,
        "no {ty} record for request {id}; trail:\n{:#?}",
        audit_records(p)
    );
    found.into_inner().unwrap().unwrap()
}

// ---------------------------------------------------------------------------
// 1. Approval through the admin API.

#[tokio::test]
async fn api_approval_runs_the_held_statement_exactly_once() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, mut notices, _driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let held = api.held("DROP TABLE t").await;
    let id = id_of(&held);
    assert_eq!(held["status"], "pending");
    assert_eq!(held["agent"], AGENT);
    assert_eq!(held["owner"], "U0OWNER");
    assert_eq!(held["database"], db.as_str());
    assert!(
        strings(&held["rules"]).contains(&"hold-ddl".to_string()),
        "{held:#}"
    );
    assert!(
        strings(&held["categories"]).contains(&"ddl".to_string()),
        "{held:#}"
    );
    assert!(
        strings(&held["impact"])
            .iter()
            .any(|l| l.starts_with("table t") || l.starts_with("table public.t")),
        "the reviewer is told what would be lost: {held:#}"
    );
    assert_eq!(held["quorum"], 1);

    // The client was told it waits, and under which request id.
    let notice = tokio::time::timeout(WAIT, notices.recv())
        .await
        .expect("a notice while held")
        .expect("notice channel");
    assert!(
        notice.contains("held for approval") && notice.contains(&id),
        "{notice}"
    );

    // Nothing ran yet, and the reviewer's API needs a token.
    assert!(table_exists(&db, "t").await);
    assert!(
        !q.is_finished(),
        "the client's query waits for the decision"
    );
    assert_eq!(http(api.0, "GET", "/approvals", None, None).await.0, 401);
    assert_eq!(
        http(
            api.0,
            "GET",
            "/approvals",
            Some("not-a-configured-token"),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(api.approve(&id, "not-a-configured-token").await.0, 401);
    assert!(
        table_exists(&db, "t").await,
        "an unauthenticated approve changed nothing"
    );

    let (s, v) = api.approve(&id, ALICE.1).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("approved")), "{v}");
    finish(q)
        .await
        .expect("the approved statement succeeds for the client");
    assert!(!table_exists(&db, "t").await, "the approved DROP ran");

    // A decided request refuses further votes; the view shows who and what happened.
    assert_eq!(api.approve(&id, BOB.1).await.0, 409);
    assert_eq!(api.deny(&id, BOB.1, "too late").await.0, 409);
    let view = Mutex::new(Value::Null);
    let reported = eventually(WAIT, || async {
        let v = api.show(&id).await;
        let hit = v["execution"]["ok"] == true;
        *view.lock().unwrap() = v;
        hit
    })
    .await;
    let view = view.into_inner().unwrap();
    assert!(reported, "execution result reported: {view:#}");
    assert_eq!(view["status"], "approved");
    assert_eq!(view["decision"]["by"][0]["id"], "U0ALICE");
    assert_eq!(view["decision"]["by"][0]["via"], "api");
    assert_eq!(view["execution"]["detail"], "DROP TABLE");

    // Exactly once: a held increment, approved, bumps the counter by one,
    // and a replayed approval cannot make it run again.
    let q = spawn_query(&c, "UPDATE counter SET n = n + 1");
    let id2 = id_of(&api.held("UPDATE counter SET n = n + 1").await);
    assert_eq!(counter(&db).await, 0);
    assert_eq!(api.approve(&id2, BOB.1).await.0, 200);
    finish(q).await.unwrap();
    assert_eq!(api.approve(&id2, ALICE.1).await.0, 409);
    // Anything the proxy forwarded for this session went before this query.
    let n: i32 = c
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_eq!(counter(&db).await, 1, "ran exactly once");
    p.shutdown().await;
}

// 2. Denial with a reason.

#[tokio::test]
async fn api_denial_with_reason_reaches_the_client_and_runs_nothing() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    // The reason travels to the client inside SQL the proxy sends upstream
    // (DO ... RAISE): quotes and dollar-quote tags must stay text.
    const REASON: &str =
        "not during month-end close: it's 100% wrong'; $airlock_refusal$ END; DROP TABLE t; -- ✓";
    let (s, v) = api.deny(&id, BOB.1, REASON).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("denied")), "{v}");
    let msg = assert_sqlstate(finish(q).await, "42501");
    assert!(msg.contains("U0BOB") && msg.contains(&id), "{msg}");
    assert!(
        msg.ends_with(&REASON.replace("$airlock_refusal$", "$ airlock_refusal$")),
        "reason kept as text: {msg}"
    );
    assert!(
        table_exists(&db, "t").await,
        "a denied statement never runs"
    );

    let view = api.settled(&id, "denied").await;
    assert_eq!(view["decision"]["reason"], REASON);
    assert_eq!(view["decision"]["by"][0]["id"], "U0BOB");
    assert_eq!(
        api.approve(&id, ALICE.1).await.0,
        409,
        "no approval after a denial"
    );

    // The session carries on.
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    c.batch_execute("INSERT INTO t VALUES (11, 'after denial')")
        .await
        .unwrap();
    assert_eq!(t_rows(&db).await, 11);

    let decided = audit_record(&p, "approval_decided", &id, |r| r["decision"] == "denied").await;
    assert_eq!(decided["reason"], REASON);
    assert_eq!(strings(&decided["approvers"]), ["api:U0BOB"]);
    let stmt = audit_record(&p, "statement", &id, |_| true).await;
    assert_eq!(stmt["decision"], "denied");
    assert_eq!(stmt["outcome"]["status"], "not_sent");
    p.shutdown().await;
}

// 3. Nobody decides.

#[tokio::test]
async fn timeout_refuses_with_57014_and_runs_nothing() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("300ms", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    let started = Instant::now();
    let msg = assert_sqlstate(c.batch_execute("DROP TABLE t").await, "57014");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "refused before the timeout: {:?}",
        started.elapsed()
    );
    assert!(
        msg.contains("timed out") && msg.contains("nothing was run"),
        "{msg}"
    );
    let id = msg
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap_or_else(|| panic!("no request id in {msg:?}"))
        .to_string();
    assert!(table_exists(&db, "t").await);
    let view = api.settled(&id, "expired").await;
    assert!(view["execution"].is_null(), "{view:#}");
    assert_eq!(
        api.approve(&id, ALICE.1).await.0,
        409,
        "an expired request cannot be approved"
    );
    assert!(table_exists(&db, "t").await);
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );
    audit_record(&p, "approval_expired", &id, |_| true).await;
    p.shutdown().await;
}

// 4. The client goes away while its statement waits.

#[tokio::test]
async fn client_disconnect_withdraws_the_request_for_good() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    // Cut the socket as a crashed client would: no Terminate, no cancel.
    q.abort();
    driver.abort();
    drop(c);
    let view = api.settled(&id, "withdrawn").await;
    assert!(
        view["decision"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("disconnected"),
        "{view:#}"
    );
    let (s, v) = api.approve(&id, ALICE.1).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("withdrawn"),
        "{v}"
    );
    assert!(
        table_exists(&db, "t").await,
        "a withdrawn statement never runs"
    );
    audit_record(&p, "approval_withdrawn", &id, |_| true).await;

    // libpq's PQfinish while a query waits: Terminate, then close.
    let mut s = raw_session(&p, &db).await;
    s.write_all(&query_frame("DROP TABLE other")).await.unwrap();
    let id = id_of(&api.held("DROP TABLE other").await);
    s.write_all(&TERMINATE).await.unwrap();
    drop(s);
    api.settled(&id, "withdrawn").await;
    assert_eq!(api.approve(&id, ALICE.1).await.0, 409);
    assert!(table_exists(&db, "other").await);
    p.shutdown().await;
}

/// PRODUCT BUG (fails until fixed; see the helper's report): a client that
/// sends Terminate while its statement is held has said it is gone, but
/// the proxy only notices a closed socket. If the socket stays open (a
/// pooler, a half-closed connection), the request stays pending, and an
/// approval then runs the statement for a client that left.
#[tokio::test]
async fn terminate_while_held_withdraws_even_if_the_socket_stays_open() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let mut s = raw_session(&p, &db).await;
    s.write_all(&query_frame("DROP TABLE t")).await.unwrap();
    let id = id_of(&api.held("DROP TABLE t").await);
    s.write_all(&TERMINATE).await.unwrap();
    // Let the proxy read the Terminate (a decision before it arrived would
    // be legitimate), then approve as a reviewer who did not notice.
    let withdrawn = eventually(Duration::from_secs(3), || async {
        api.show(&id).await["status"] == "withdrawn"
    })
    .await;
    let (status, v) = api.approve(&id, ALICE.1).await;
    let ran = eventually(Duration::from_secs(2), || async {
        !table_exists(&db, "t").await
    })
    .await;
    drop(s);
    p.shutdown().await;
    assert!(
        withdrawn,
        "Terminate while held did not withdraw request {id} (approve then answered {status}: {v}; DROP ran: {ran})"
    );
    assert!(!ran, "the DROP ran for a client that had sent Terminate");
}

const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// One frontend message: tag, length, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Parse of `sql` as statement `name` (no parameter types).
fn parse_frame(name: &str, sql: &str) -> Vec<u8> {
    frame(
        b'P',
        &[name.as_bytes(), b"\0", sql.as_bytes(), b"\0\0\0"].concat(),
    )
}

/// Bind of statement `stmt` to the unnamed portal, no values, then
/// Execute of that portal (all rows).
fn bind_execute_frames(stmt: &str) -> Vec<u8> {
    [
        frame(b'B', &[b"\0", stmt.as_bytes(), b"\0\0\0\0\0\0\0"].concat()),
        frame(b'E', b"\0\0\0\0\0"),
    ]
    .concat()
}

fn query_frame(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

async fn read_msg(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut h))
        .await
        .expect("message in time")
        .expect("message");
    let mut body = vec![0u8; i32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize - 4];
    s.read_exact(&mut body).await.unwrap();
    (h[0], body)
}

/// Sends `msgs` and reads the answer up to ReadyForQuery: each message's
/// tag (an ErrorResponse's followed by its SQLSTATE, as `E42P03`), and the
/// transaction status.
async fn exchange(s: &mut tokio::net::TcpStream, msgs: &[u8]) -> (Vec<String>, char) {
    s.write_all(msgs).await.unwrap();
    let mut out = Vec::new();
    loop {
        let (tag, body) = read_msg(s).await;
        if tag == b'Z' {
            return (out, body[0] as char);
        }
        let code = body
            .split(|&b| b == 0)
            .find_map(|f| f.strip_prefix(b"C"))
            .filter(|_| tag == b'E')
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        out.push(format!("{}{code}", tag as char));
    }
}

async fn raw_session(p: &TestProxy, db: &str) -> tokio::net::TcpStream {
    use pgwire::api::auth::sasl::scram::ScramClientAuth;
    fn password_message(parts: &[&[u8]]) -> Vec<u8> {
        let mut m = vec![b'p', 0, 0, 0, 0];
        for part in parts {
            m.extend_from_slice(part);
        }
        let n = (m.len() - 1) as i32;
        m[1..5].copy_from_slice(&n.to_be_bytes());
        m
    }
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port()))
        .await
        .unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    for (k, v) in [("user", AGENT), ("database", db)] {
        startup.extend_from_slice(format!("{k}\0{v}\0").as_bytes());
    }
    startup.push(0);
    let n = startup.len() as i32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    s.write_all(&startup).await.unwrap();
    let (first, st) = ScramClientAuth::new(AGENT.into(), AGENT_PASSWORD.into())
        .build_client_first()
        .unwrap();
    assert_eq!(read_msg(&mut s).await.0, b'R', "AuthenticationSASL");
    s.write_all(&password_message(&[
        b"SCRAM-SHA-256\0",
        &(first.len() as i32).to_be_bytes(),
        first.as_bytes(),
    ]))
    .await
    .unwrap();
    let (_, cont) = read_msg(&mut s).await;
    let (fin, st2) = st.build_client_final(&cont[4..]).unwrap();
    s.write_all(&password_message(&[fin.as_bytes()]))
        .await
        .unwrap();
    let (_, fin_msg) = read_msg(&mut s).await;
    st2.verify_server_final(&fin_msg[4..]).unwrap();
    while read_msg(&mut s).await.0 != b'Z' {}
    s
}

// 5. The client cancels while its statement waits.

#[tokio::test]
async fn cancel_while_held_withdraws_and_answers_57014() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    let msg = assert_sqlstate(finish(q).await, "57014");
    assert!(msg.contains("withdrawn") && msg.contains(&id), "{msg}");
    api.settled(&id, "withdrawn").await;
    assert_eq!(api.approve(&id, ALICE.1).await.0, 409);
    assert!(table_exists(&db, "t").await);

    // The session is usable, and an old cancel does not hit the next hold.
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );
    let q = spawn_query(&c, "DROP TABLE other");
    let id2 = id_of(&api.held("DROP TABLE other").await);
    assert_eq!(api.approve(&id2, ALICE.1).await.0, 200);
    finish(q).await.unwrap();
    assert!(!table_exists(&db, "other").await);
    assert!(table_exists(&db, "t").await);
    audit_record(&p, "approval_withdrawn", &id, |_| true).await;
    p.shutdown().await;
}

// 6. Who may approve, and how many must.

#[tokio::test]
async fn owner_cannot_approve_and_quorum_needs_distinct_approvers() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", Some(2)).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let held = api.held("DROP TABLE t").await;
    let id = id_of(&held);
    assert_eq!(held["quorum"], 2);

    let (s, v) = api.approve(&id, OWNER.1).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("owns this agent"),
        "{v}"
    );

    let (s, v) = api.approve(&id, ALICE.1).await;
    assert_eq!(
        (s, v["result"].as_str(), v["votes"].as_u64()),
        (200, Some("recorded"), Some(1)),
        "{v}"
    );
    let (s, v) = api.approve(&id, ALICE.1).await;
    assert_eq!(s, 409, "the same approver twice counts once: {v}");
    assert!(
        table_exists(&db, "t").await,
        "one approval of two runs nothing"
    );
    assert!(!q.is_finished());
    let view = api.show(&id).await;
    assert_eq!(view["status"], "pending");
    assert_eq!(view["votes"].as_array().map(Vec::len), Some(1), "{view:#}");

    let (s, v) = api.approve(&id, BOB.1).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("approved")), "{v}");
    finish(q)
        .await
        .expect("runs after the second distinct approval");
    assert!(!table_exists(&db, "t").await);
    let view = api.show(&id).await;
    let voters: Vec<&str> = view["votes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(voters, ["U0ALICE", "U0BOB"]);

    // The owner may still deny (stopping their own agent is always allowed).
    let q = spawn_query(&c, "DROP TABLE other");
    let id2 = id_of(&api.held("DROP TABLE other").await);
    assert_eq!(
        api.deny(&id2, OWNER.1, "my agent should not do this")
            .await
            .0,
        200
    );
    assert_sqlstate(finish(q).await, "42501");
    assert!(table_exists(&db, "other").await);
    p.shutdown().await;
}

// 7. Extended protocol: the reviewer sees the bound values.

/// A string sent in the text wire format (tokio-postgres sends binary by
/// default), as libpq-based clients do.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl tokio_postgres::types::ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }
    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &tokio_postgres::types::Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }
    tokio_postgres::types::to_sql_checked!();
}

#[tokio::test]
async fn extended_protocol_hold_shows_parameter_values() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    // No real WHERE: destructive, held. $2 goes in binary (int4), $1 as text.
    const SQL: &str = "UPDATE t SET v = $1 WHERE $2::int > 0";
    let q = tokio::spawn({
        let c = c.clone();
        async move { c.execute(SQL, &[&TextParam("approved-value"), &7i32]).await }
    });
    let held = api.held(SQL).await;
    let id = id_of(&held);
    assert_eq!(
        held["params"],
        json!(["approved-value", "\\x00000007"]),
        "{held:#}"
    );
    assert_eq!(api.show(&id).await["params"], held["params"]);
    assert!(
        strings(&held["categories"]).contains(&"destructive".to_string()),
        "{held:#}"
    );
    let untouched: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM t WHERE v = 'approved-value'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(untouched, 0);

    assert_eq!(api.approve(&id, ALICE.1).await.0, 200);
    let n = finish(q).await.expect("approved extended statement runs");
    assert_eq!(n, 10, "rows updated, reported to the client");
    let done: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM t WHERE v = 'approved-value'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 10, "ran with the values the reviewer saw");

    // Same text, other values: a new request, bound to the new values.
    let q = tokio::spawn({
        let c = c.clone();
        async move { c.execute(SQL, &[&TextParam("second"), &8i32]).await }
    });
    let held2 = api.held(SQL).await;
    assert_ne!(id_of(&held2), id);
    assert_eq!(held2["params"], json!(["second", "\\x00000008"]));
    assert_ne!(
        held2["binding"], held["binding"],
        "the binding covers the values"
    );
    assert_eq!(api.deny(&id_of(&held2), ALICE.1, "no").await.0, 200);
    assert_eq!(code(&finish(q).await.unwrap_err()), "42501");
    let second: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM t WHERE v = 'second'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(second, 0);
    p.shutdown().await;
}

/// Runs `sql` (a statement the policy holds), denies the request and
/// returns the impact lines the reviewer saw; the client got 42501.
async fn denied_impact(api: &Api, c: &Arc<tokio_postgres::Client>, sql: &str) -> Vec<String> {
    let q = spawn_query(c, sql);
    let held = api.held(sql).await;
    let impact = strings(&held["impact"]);
    assert_eq!(
        api.deny(&id_of(&held), ALICE.1, "estimate check").await.0,
        200
    );
    assert_eq!(code(&finish(q).await.unwrap_err()), "42501");
    impact
}

/// A held statement with `$n` placeholders is estimated from its generic
/// plan (EXPLAIN without values would fail and abort the estimator's
/// transaction, taking the table lines with it).
#[tokio::test]
async fn held_statement_with_parameters_gets_an_impact_estimate() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    const SQL: &str = "UPDATE t SET v = $1 WHERE $2::int > 0";
    let q = tokio::spawn({
        let c = c.clone();
        async move { c.execute(SQL, &[&TextParam("x"), &7i32]).await }
    });
    let held = api.held(SQL).await;
    let impact = strings(&held["impact"]);
    assert_eq!(
        api.deny(&id_of(&held), ALICE.1, "estimate check").await.0,
        200
    );
    assert_eq!(code(&finish(q).await.unwrap_err()), "42501");
    assert!(
        impact.iter().any(|l| l.starts_with("planner estimate")),
        "no row estimate for a parameterized UPDATE: {impact:?}"
    );
    assert!(
        !impact.iter().any(|l| l.contains("no estimate")),
        "an estimate failed: {impact:?}"
    );
    p.shutdown().await;
}

/// `EXECUTE name(...)` is estimated from what the session prepared: the
/// estimator's own connection has no such statement, so EXPLAIN of the
/// EXECUTE alone could only fail. Arguments that are not literals are not
/// evaluated for an estimate.
#[tokio::test]
async fn held_execute_of_a_prepared_statement_gets_an_impact_estimate() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    c.batch_execute("PREPARE wipe(int) AS UPDATE t SET v = 'z' WHERE $1 > 0")
        .await
        .unwrap();

    let impact = denied_impact(&api, &c, "EXECUTE wipe(1)").await;
    assert!(
        impact.iter().any(|l| l.starts_with("planner estimate")),
        "no row estimate for EXECUTE of a prepared UPDATE: {impact:?}"
    );
    assert!(
        !impact
            .iter()
            .any(|l| l.contains("no estimate") || l.contains("no row estimate")),
        "an estimate failed: {impact:?}"
    );

    let sql = "EXECUTE wipe(length(current_user))";
    let impact = denied_impact(&api, &c, sql).await;
    assert!(
        impact.iter().any(|l| l.contains("not plain literals")),
        "{impact:?}"
    );
    assert!(
        !impact.iter().any(|l| l.starts_with("planner estimate")),
        "{impact:?}"
    );
    let untouched: i64 = pg()
        .direct(&db)
        .await
        .query_one("SELECT count(*) FROM t WHERE v = 'z'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(untouched, 0);
    p.shutdown().await;
}

/// Estimating a prepared statement coerces its arguments to the parameter
/// types, and a domain's CHECK then calls its function, whatever its
/// volatility: such a function also turns the planner estimate off.
#[tokio::test]
async fn impact_estimate_never_runs_a_domain_check_function() {
    let db = pg().create_db();
    setup(&db).await;
    pg().direct(&db)
        .await
        .batch_execute(
            "CREATE FUNCTION boom(int) RETURNS bool LANGUAGE plpgsql VOLATILE AS
             $$ BEGIN RAISE EXCEPTION 'boom() called before approval'; END $$;
             CREATE DOMAIN guarded AS int CHECK (boom(VALUE));",
        )
        .await
        .unwrap();
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    c.batch_execute("PREPARE g(guarded) AS UPDATE t SET v = 'z' WHERE $1 IS NOT NULL")
        .await
        .unwrap();
    let impact = denied_impact(&api, &c, "EXECUTE g(1)").await;
    assert!(
        !impact.iter().any(|l| l.contains("boom() called")),
        "the estimate ran the domain's check: {impact:?}"
    );
    assert!(
        impact
            .iter()
            .any(|l| l.contains("no planner estimate") && l.contains("public.boom")),
        "{impact:?}"
    );
    p.shutdown().await;
}

/// Planning can call user functions (constant folding, selectivity
/// estimates): with one in the database the planner estimate is skipped,
/// and the function never runs before approval.
#[tokio::test]
async fn impact_estimate_never_lets_the_planner_run_user_functions() {
    let db = pg().create_db();
    setup(&db).await;
    // IMMUTABLE, so planning `v = pick()` folds it by calling it; a call
    // shows as this error in the estimate (EXPLAIN fails with it).
    pg().direct(&db)
        .await
        .batch_execute(
            "CREATE FUNCTION pick() RETURNS text LANGUAGE plpgsql IMMUTABLE AS
             $$ BEGIN RAISE EXCEPTION 'pick() called at plan time'; END $$;",
        )
        .await
        .unwrap();
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    // No WHERE: destructive, so held.
    let impact = denied_impact(&api, &c, "UPDATE t SET v = pick()").await;
    assert!(
        !impact.iter().any(|l| l.contains("called at plan time")),
        "planning ran the user function: {impact:?}"
    );
    assert!(
        impact
            .iter()
            .any(|l| l.contains("no planner estimate") && l.contains("public.pick")),
        "{impact:?}"
    );
    // Without such functions the estimate is back (the function is gone).
    pg().direct(&db)
        .await
        .batch_execute("DROP FUNCTION pick()")
        .await
        .unwrap();
    let impact = denied_impact(&api, &c, "UPDATE t SET v = 'x'").await;
    assert!(
        impact.iter().any(|l| l.starts_with("planner estimate")),
        "{impact:?}"
    );
    p.shutdown().await;
}

/// An approval is for one execution: a prepared statement executed again
/// waits again, with its new values, whichever protocol prepared it. The
/// request shows the text of the statement executed, even when another
/// was parsed after it.
#[tokio::test]
async fn approval_covers_one_execution_of_a_prepared_statement() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    // Extended protocol: one Parse, two Bind/Execute.
    const SQL: &str = "UPDATE counter SET n = n + $1";
    let stmt = c
        .prepare(SQL)
        .await
        .expect("Parse/Describe runs nothing and passes");
    // Parsed after it and harmless: the reviewer must still see the text
    // of the statement that runs, not the session's last Parse.
    let _decoy = c.prepare("SELECT 1").await.unwrap();
    let run = |by: i32| {
        let (c, stmt) = (c.clone(), stmt.clone());
        tokio::spawn(async move { c.execute(&stmt, &[&by]).await })
    };
    let q = run(1);
    let first = api.held(SQL).await;
    assert_eq!(first["params"], json!(["\\x00000001"]));
    assert_eq!(api.approve(&id_of(&first), ALICE.1).await.0, 200);
    assert_eq!(finish(q).await.unwrap(), 1);
    assert_eq!(counter(&db).await, 1);
    let q = run(100);
    let second = api.held(SQL).await;
    assert_ne!(
        id_of(&second),
        id_of(&first),
        "a second execution is a new request"
    );
    assert_eq!(second["params"], json!(["\\x00000064"]));
    assert_eq!(
        api.deny(&id_of(&second), ALICE.1, "once was enough")
            .await
            .0,
        200
    );
    assert_eq!(code(&finish(q).await.unwrap_err()), "42501");
    assert_eq!(
        counter(&db).await,
        1,
        "the first approval did not cover the second execution"
    );

    // SQL-level PREPARE / EXECUTE: PREPARE runs nothing and passes; each
    // EXECUTE is judged as what it runs.
    c.batch_execute("PREPARE bump AS UPDATE counter SET n = n + 10")
        .await
        .expect("PREPARE runs nothing");
    assert_eq!(counter(&db).await, 1);
    for round in 0..2 {
        let q = spawn_query(&c, "EXECUTE bump");
        let view = api.held("EXECUTE bump").await;
        // `EXECUTE bump` alone hides what runs: the request shows it.
        assert_eq!(
            view["prepared"],
            json!([{ "name": "bump", "sql": "PREPARE bump AS UPDATE counter SET n = n + 10" }])
        );
        let id = id_of(&view);
        if round == 0 {
            assert_eq!(api.approve(&id, BOB.1).await.0, 200);
            finish(q).await.unwrap();
        } else {
            assert_eq!(api.deny(&id, BOB.1, "no second run").await.0, 200);
            assert_sqlstate(finish(q).await, "42501");
        }
        assert_eq!(counter(&db).await, 11, "round {round}");
    }
    p.shutdown().await;
}

/// Slack unreachable when the request is made: the statement fails closed
/// at once (57P03) instead of waiting for a decision nobody can make.
#[tokio::test]
async fn slack_down_fails_closed_end_to_end() {
    let SlackCase {
        fake,
        db,
        _rules,
        p,
        api,
        c,
        _notices,
        _driver,
    } = slack_case("http").await;
    fake.set_down(true);
    let msg = assert_sqlstate(c.batch_execute("DROP TABLE t").await, "57P03");
    assert!(
        msg.contains("approval channel is down") && msg.contains("nothing was run"),
        "{msg}"
    );
    assert!(api.pending().await.is_empty(), "no request left waiting");
    assert!(table_exists(&db, "t").await);
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );
    // Back up: holds work again.
    fake.set_down(false);
    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    let post = posted(&fake, &id).await;
    assert_eq!(
        click(
            &p,
            "U0ALICE",
            &post,
            pg_airlock::approval::ACTION_APPROVE,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    finish(q).await.unwrap();
    assert!(!table_exists(&db, "t").await);
    p.shutdown().await;
}

/// Shutting down while a statement waits denies it; it never runs.
#[tokio::test]
async fn shutdown_while_held_denies_and_runs_nothing() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    let q = spawn_query(&c, "DROP TABLE t");
    api.held("DROP TABLE t").await;
    let started = Instant::now();
    p.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for the hold: {:?}",
        started.elapsed()
    );
    let e = finish(q)
        .await
        .expect_err("a held statement is refused at shutdown");
    assert!(matches!(code(&e).as_str(), "42501" | "57P01"), "{e}");
    if code(&e) == "42501" {
        // (tokio-postgres's Display of a server error is only "db error".)
        let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
        assert!(message.contains("shutting down"), "{message}");
    }
    assert!(table_exists(&db, "t").await);
}

/// An approved statement that fails in the database: the client gets the
/// database's error, and the reviewer's view and the trail say it failed.
#[tokio::test]
async fn approved_statement_that_fails_reports_the_failure() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    let q = spawn_query(&c, "DROP TABLE no_such_table");
    let id = id_of(&api.held("DROP TABLE no_such_table").await);
    assert_eq!(api.approve(&id, ALICE.1).await.0, 200);
    let msg = assert_sqlstate(finish(q).await, "42P01");
    assert!(msg.contains("no_such_table"), "{msg}");
    let view = Mutex::new(Value::Null);
    let reported = eventually(WAIT, || async {
        let v = api.show(&id).await;
        let hit = v["execution"]["ok"] == false;
        *view.lock().unwrap() = v;
        hit
    })
    .await;
    let view = view.into_inner().unwrap();
    assert!(reported, "{view:#}");
    assert!(
        view["execution"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("no_such_table"),
        "{view:#}"
    );
    let stmt = audit_record(&p, "statement", &id, |_| true).await;
    assert_eq!(stmt["decision"], "approved");
    assert_eq!(stmt["outcome"]["status"], "error");
    assert_eq!(stmt["outcome"]["sqlstate"], "42P01");
    p.shutdown().await;
}

/// Queries the client pipelines behind a held one wait behind it and run
/// in order after the decision; a denial refuses only the held one.
#[tokio::test]
async fn pipelined_queries_wait_behind_a_hold_in_order() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    // tokio-postgres writes all three before any answer arrives.
    let run = {
        let c = c.clone();
        tokio::spawn(async move {
            let a = c.batch_execute("INSERT INTO t VALUES (11, 'before')");
            let b = c.batch_execute("DROP TABLE t");
            let d = c.query_one("SELECT count(*) FROM t", &[]);
            let (a, b, d) = tokio::join!(a, b, d);
            (a, b, d.map(|r| r.get::<_, i64>(0)))
        })
    };
    let id = id_of(&api.held("DROP TABLE t").await);
    // The INSERT was forwarded before the DROP was held, but the request
    // can be listed before the server has finished the INSERT: wait for
    // it (while the DROP stays held) rather than race it.
    assert!(
        eventually(WAIT, || async { t_rows(&db).await == 11 }).await,
        "the INSERT before the hold ran"
    );
    assert!(!run.is_finished(), "the SELECT after the hold waits for it");
    assert_eq!(api.deny(&id, ALICE.1, "keep it").await.0, 200);
    let (a, b, d) = finish(run).await;
    a.unwrap();
    assert_sqlstate(b, "42501");
    assert_eq!(
        d.unwrap(),
        11,
        "the SELECT after the denied DROP ran, in order"
    );
    assert!(table_exists(&db, "t").await);
    p.shutdown().await;
}

// 8. Holds inside a transaction.

#[tokio::test]
async fn approved_hold_inside_a_transaction_commits_with_it() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (11, 'in txn')")
        .await
        .unwrap();
    let q = spawn_query(&c, "DROP TABLE other");
    let id = id_of(&api.held("DROP TABLE other").await);
    assert_eq!(api.approve(&id, ALICE.1).await.0, 200);
    finish(q).await.unwrap();
    // Not committed yet: the direct view still has the old state.
    assert!(table_exists(&db, "other").await);
    assert_eq!(t_rows(&db).await, 10);
    c.batch_execute("COMMIT").await.unwrap();
    assert!(
        !table_exists(&db, "other").await,
        "the approved DROP committed"
    );
    assert_eq!(t_rows(&db).await, 11, "the INSERT before it committed too");
    p.shutdown().await;
}

#[tokio::test]
async fn denied_hold_inside_a_transaction_rolls_it_all_back() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("INSERT INTO t VALUES (11, 'in txn')")
        .await
        .unwrap();
    let q = spawn_query(&c, "DROP TABLE other");
    let id = id_of(&api.held("DROP TABLE other").await);
    assert_eq!(
        api.deny(&id, ALICE.1, "not in this transaction").await.0,
        200
    );
    assert_sqlstate(finish(q).await, "42501");
    // The transaction is aborted, as the client was told.
    assert_eq!(
        code(&c.batch_execute("SELECT 1").await.unwrap_err()),
        "25P02"
    );
    c.batch_execute("COMMIT")
        .await
        .expect("COMMIT of an aborted transaction rolls back");
    assert!(table_exists(&db, "other").await);
    assert_eq!(
        t_rows(&db).await,
        10,
        "the INSERT was rolled back with the transaction"
    );
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );
    p.shutdown().await;
}

// 9. Slack, HTTP interactivity mode.

fn slack_toml(fake: &FakeSlack, mode: &str) -> String {
    let mode_secret = match mode {
        "http" => format!("signing_secret_env = \"{}\"", SLACK_SIGNING.0),
        _ => format!("app_token_env = \"{}\"", SLACK_APP.0),
    };
    format!(
        "[slack]\nbot_token_env = \"{}\"\n{mode_secret}\ndefault_channel = \"{CHANNEL}\"\napi_url = \"{}\"\nmode = \"{mode}\"\n\n{}",
        SLACK_BOT.0,
        fake.api_url(),
        token_toml()
    )
}

async fn slack_proxy(fake: &FakeSlack, mode: &str) -> (tempfile::TempDir, TestProxy) {
    let (rules_dir, paths) = rules("20s", None);
    let mut secrets = token_secrets();
    secrets.extend([SLACK_BOT, SLACK_SIGNING, SLACK_APP]);
    let p = proxy()
        .rules(&paths)
        .extra(&slack_toml(fake, mode))
        .start_with_secrets(&secrets)
        .await;
    (rules_dir, p)
}

/// A fake Slack, a database with the test tables, a proxy in Slack `mode`
/// in front of it, its admin API, and an agent connected with notices.
struct SlackCase {
    fake: FakeSlack,
    db: String,
    _rules: tempfile::TempDir,
    p: TestProxy,
    api: Api,
    c: Arc<tokio_postgres::Client>,
    _notices: mpsc::UnboundedReceiver<String>,
    _driver: JoinHandle<()>,
}

async fn slack_case(mode: &str) -> SlackCase {
    let fake = FakeSlack::start().await;
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = slack_proxy(&fake, mode).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    SlackCase {
        fake,
        db,
        _rules,
        p,
        api,
        c,
        _notices,
        _driver,
    }
}

/// The request message for request `id` (not a thread reply).
async fn posted(fake: &FakeSlack, id: &str) -> fake_slack::Call {
    let id = id.to_string();
    fake.wait_for(
        "chat.postMessage",
        move |c| c.text().contains(&id) && c.body["thread_ts"].is_null(),
        WAIT,
    )
    .await
}

async fn edited(fake: &FakeSlack, id: &str, needle: &str) -> fake_slack::Call {
    let (id, needle) = (id.to_string(), needle.to_string());
    fake.wait_for(
        "chat.update",
        move |c| c.text().contains(&id) && c.text().contains(&needle),
        WAIT,
    )
    .await
}

/// Signs and POSTs a button click to the proxy's admin port, as Slack does.
async fn click(
    p: &TestProxy,
    user: &str,
    post: &fake_slack::Call,
    action: &str,
    secret: &str,
) -> u16 {
    click_typed(p, user, post, action, secret, None).await
}

/// A click with `reason` typed into the message's reason input, if given.
async fn click_typed(
    p: &TestProxy,
    user: &str,
    post: &fake_slack::Call,
    action: &str,
    secret: &str,
    reason: Option<&str>,
) -> u16 {
    let value = post.button_value(action).expect("button on the message");
    let mut payload = fake_slack::block_actions(user, CHANNEL, "1700000000.000001", action, &value);
    if let Some(r) = reason {
        payload = fake_slack::with_input(
            payload,
            pg_airlock::slack::REASON_BLOCK,
            pg_airlock::slack::REASON_ACTION,
            r,
        );
    }
    let body = fake_slack::form_body(&payload);
    let (ts, sig) = fake_slack::signed(secret, fake_slack::now_unix(), &body);
    let url = format!(
        "http://{}{}",
        p.running.admin_addr.unwrap(),
        pg_airlock::slack::INTERACTIONS_PATH
    );
    tokio::time::timeout(WAIT, fake_slack::post_signed(&url, &body, &ts, &sig))
        .await
        .expect("interactions endpoint answers")
}

#[tokio::test]
async fn slack_http_mode_message_click_and_update() {
    let SlackCase {
        fake,
        db,
        _rules,
        p,
        api,
        c,
        _notices,
        _driver,
    } = slack_case("http").await;

    let q = spawn_query(&c, "DROP TABLE t");
    let held = api.held("DROP TABLE t").await;
    let id = id_of(&held);
    let post = posted(&fake, &id).await;
    assert_eq!(
        post.auth.as_deref(),
        Some(format!("Bearer {}", SLACK_BOT.1).as_str())
    );
    assert_eq!(post.body["channel"], CHANNEL);
    let text = post.text();
    let session = held["session_id"].as_str().unwrap();
    for needle in [
        AGENT,
        "U0OWNER",
        session,
        db.as_str(),
        "DROP TABLE t",
        "hold-ddl",
        "table t",
        "airlock_approve",
        "airlock_deny",
    ] {
        assert!(text.contains(needle), "message lacks {needle:?}: {text}");
    }
    assert_eq!(
        post.button_value(pg_airlock::approval::ACTION_APPROVE)
            .unwrap(),
        format!("{id}:{}", held["binding"].as_str().unwrap())
    );

    // A click signed with the wrong secret is rejected and changes nothing.
    assert_eq!(
        click(
            &p,
            "U0ALICE",
            &post,
            pg_airlock::approval::ACTION_APPROVE,
            "not-the-signing-secret"
        )
        .await,
        401
    );
    // The owner's genuine click is refused (ephemerally) and changes nothing.
    assert_eq!(
        click(
            &p,
            "U0OWNER",
            &post,
            pg_airlock::approval::ACTION_APPROVE,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    fake.wait_for(
        "chat.postEphemeral",
        |c| c.body["user"] == "U0OWNER" && c.text().contains("cannot approve"),
        WAIT,
    )
    .await;
    assert_eq!(api.show(&id).await["status"], "pending");
    assert!(table_exists(&db, "t").await);
    assert!(!q.is_finished());

    assert_eq!(
        click(
            &p,
            "U0ALICE",
            &post,
            pg_airlock::approval::ACTION_APPROVE,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    finish(q)
        .await
        .expect("approved from Slack, the statement runs");
    assert!(!table_exists(&db, "t").await);
    let upd = edited(&fake, &id, "*Approved* by <@U0ALICE>").await;
    assert_eq!(upd.body["channel"], CHANNEL);
    // The fake hands out message timestamps "1700000000.NNNNNN": the edit
    // targets a posted message, not a new one.
    assert!(
        upd.body["ts"]
            .as_str()
            .is_some_and(|t| t.starts_with("1700000000.")),
        "{:?}",
        upd.body
    );
    edited(&fake, &id, "*Executed:* `DROP TABLE`").await;

    // Second statement: a planner estimate in the message; the click is
    // replayed after the decision and must not run it again.
    let q = spawn_query(&c, "UPDATE counter SET n = n + 1");
    let id2 = id_of(&api.held("UPDATE counter SET n = n + 1").await);
    let post2 = posted(&fake, &id2).await;
    assert!(
        post2.text().contains("planner estimate"),
        "{}",
        post2.text()
    );
    assert_eq!(
        click(
            &p,
            "U0BOB",
            &post2,
            pg_airlock::approval::ACTION_APPROVE,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    finish(q).await.unwrap();
    assert_eq!(
        click(
            &p,
            "U0BOB",
            &post2,
            pg_airlock::approval::ACTION_APPROVE,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    assert_eq!(
        click(
            &p,
            "U0ALICE",
            &post2,
            pg_airlock::approval::ACTION_DENY,
            SLACK_SIGNING.1
        )
        .await,
        200
    );
    fake.wait_for(
        "chat.postEphemeral",
        |c| c.body["user"] == "U0BOB" && c.text().contains("already approved"),
        WAIT,
    )
    .await;
    fake.wait_for(
        "chat.postEphemeral",
        |c| c.body["user"] == "U0ALICE" && c.text().contains("already approved"),
        WAIT,
    )
    .await;
    let n: i32 = c
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "a replayed click runs nothing");
    assert_eq!(api.show(&id2).await["status"], "approved");
    p.shutdown().await;
}

#[tokio::test]
async fn slack_deny_carries_the_typed_reason_to_the_agent() {
    let SlackCase {
        fake,
        db,
        _rules,
        p,
        api,
        c,
        _notices,
        _driver,
    } = slack_case("http").await;

    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    let post = posted(&fake, &id).await;
    // Typed into the message's reason input, sent by Slack with the click;
    // quotes and a dollar-quote tag must stay text on the way upstream.
    const REASON: &str = "not before the backup; it's $$ risky";
    let deny = pg_airlock::approval::ACTION_DENY;
    assert_eq!(
        click_typed(&p, "U0ALICE", &post, deny, SLACK_SIGNING.1, Some(REASON)).await,
        200
    );

    let msg = assert_sqlstate(finish(q).await, "42501");
    assert!(
        msg.contains("denied by u0alice") && msg.ends_with(REASON),
        "{msg}"
    );
    assert!(
        table_exists(&db, "t").await,
        "a denied statement never runs"
    );
    assert_eq!(
        api.settled(&id, "denied").await["decision"]["reason"],
        REASON
    );
    edited(&fake, &id, "not before the backup").await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10, "the session carries on");
    p.shutdown().await;
}

// 10. Slack Socket Mode.

#[tokio::test]
async fn slack_socket_mode_approval_runs_the_statement() {
    let SlackCase {
        fake,
        db,
        _rules,
        p,
        api,
        c,
        _notices,
        _driver,
    } = slack_case("socket").await;
    fake.wait_sockets(1, WAIT).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let id = id_of(&api.held("DROP TABLE t").await);
    let post = posted(&fake, &id).await;
    let value = post
        .button_value(pg_airlock::approval::ACTION_APPROVE)
        .unwrap();

    // An owner's click over the socket is acknowledged and refused.
    let env = fake.send_interactive(fake_slack::block_actions(
        "U0OWNER",
        CHANNEL,
        "1",
        pg_airlock::approval::ACTION_APPROVE,
        &value,
    ));
    fake.wait_ack(&env, WAIT).await;
    fake.wait_for("chat.postEphemeral", |c| c.body["user"] == "U0OWNER", WAIT)
        .await;
    assert!(table_exists(&db, "t").await);
    assert_eq!(api.show(&id).await["status"], "pending");

    let env = fake.send_interactive(fake_slack::block_actions(
        "U0ALICE",
        CHANNEL,
        "1",
        pg_airlock::approval::ACTION_APPROVE,
        &value,
    ));
    fake.wait_ack(&env, WAIT).await;
    finish(q)
        .await
        .expect("approved over Socket Mode, the statement runs");
    assert!(!table_exists(&db, "t").await);
    edited(&fake, &id, "*Approved* by <@U0ALICE>").await;
    p.shutdown().await;
}

// 11. Many holds at once do not slow anyone else.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_holds_do_not_slow_other_sessions() {
    const HELD: usize = 200;
    let db = pg().create_db();
    setup(&db).await;
    let (rules_dir, paths) = rules("30s", None);
    let p = proxy()
        .rules(&paths)
        .extra(&token_toml())
        .limit("startup_timeout", "\"20s\"")
        .start_with_secrets(&token_secrets())
        .await;
    let api = Api::of(&p);

    // Connect in waves: logins are SCRAM on both sides, CPU-bound on 2 cores.
    let mut clients = Vec::with_capacity(HELD);
    for _ in 0..HELD / 25 {
        let wave = join_all((0..25).map(|_| p.connect(&db))).await;
        clients.extend(wave.into_iter().map(Arc::new));
    }
    let holds: Vec<_> = clients
        .iter()
        .map(|c| spawn_query(c, "DROP TABLE t"))
        .collect();
    let all_held = eventually(Duration::from_secs(40), || async {
        api.pending().await.len() == HELD
    })
    .await;
    assert!(
        all_held,
        "only {} of {HELD} held",
        api.pending().await.len()
    );

    // Ordinary work on another session runs at normal speed meanwhile.
    let other = p.connect(&db).await;
    let started = Instant::now();
    for i in 0..500i32 {
        let r = other.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i + 1);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "500 SELECTs took {took:?} beside {HELD} holds"
    );
    assert_eq!(
        api.pending().await.len(),
        HELD,
        "the holds were pending throughout"
    );
    assert!(table_exists(&db, "t").await);

    // Deny them all; every client hears 42501 and nothing ran.
    let ids: Vec<String> = api.pending().await.iter().map(id_of).collect();
    let denials = join_all(ids.iter().map(|id| api.deny(id, ALICE.1, "bulk drill"))).await;
    assert!(denials.iter().all(|(s, _)| *s == 200), "{denials:?}");
    for h in holds {
        let msg = assert_sqlstate(finish(h).await, "42501");
        assert!(msg.contains("bulk drill"), "{msg}");
    }
    assert!(api.pending().await.is_empty());
    assert!(table_exists(&db, "t").await, "no held DROP ran");
    assert_eq!(t_rows(&db).await, 10);
    drop(clients);
    p.shutdown().await;
    drop(rules_dir);
}

// 12. The audit trail of an approved statement.

#[tokio::test]
async fn audit_trail_records_request_decision_and_statement() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;

    let q = spawn_query(&c, "DROP TABLE t");
    let held = api.held("DROP TABLE t").await;
    let id = id_of(&held);
    // The request is on the record before anyone can decide.
    let requested = audit_record(&p, "approval_requested", &id, |_| true).await;
    assert_eq!(requested["sql"], "DROP TABLE t");
    assert_eq!(requested["agent"], AGENT);
    assert_eq!(requested["session"], held["session_id"]);
    assert!(
        strings(&requested["rules"]).contains(&"hold-ddl".to_string()),
        "{requested:#}"
    );
    assert_eq!(requested["quorum"], 1);

    assert_eq!(api.approve(&id, ALICE.1).await.0, 200);
    finish(q).await.unwrap();
    let decided = audit_record(&p, "approval_decided", &id, |_| true).await;
    assert_eq!(decided["decision"], "approved");
    assert_eq!(strings(&decided["approvers"]), ["api:U0ALICE"]);
    assert_eq!(decided["session"], held["session_id"]);
    let stmt = audit_record(&p, "statement", &id, |_| true).await;
    assert_eq!(stmt["decision"], "approved");
    assert_eq!(stmt["sql"], "DROP TABLE t");
    assert_eq!(stmt["outcome"]["status"], "ok", "{stmt:#}");
    assert_eq!(stmt["outcome"]["command_tag"], "DROP TABLE");

    // The decision was written before the statement's result.
    let records = audit_records(&p);
    let pos = |ty: &str| {
        records
            .iter()
            .position(|r| r["type"] == ty && r["request_id"] == id.as_str())
            .unwrap()
    };
    assert!(pos("approval_requested") < pos("approval_decided"));
    assert!(pos("approval_decided") < pos("statement"));
    p.shutdown().await;
}

/// A name re-prepared inside the unit that executes it: `EXECUTE x` runs
/// what the unit itself prepared, not what `x` meant before, so it is
/// judged (and shown) as the new statement, whether the unit is one
/// simple-protocol string or one pipelined extended-protocol segment.
#[tokio::test]
async fn a_name_reprepared_in_the_same_unit_is_judged_as_the_new_statement() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    c.batch_execute("PREPARE x AS SELECT 1")
        .await
        .expect("a harmless statement under the name");
    const SWAP: &str = "DEALLOCATE x; PREPARE x AS DELETE FROM t; EXECUTE x";
    let q = spawn_query(&c, SWAP);
    let view = api.held(SWAP).await;
    assert_eq!(t_rows(&db).await, 10, "nothing ran while held");
    assert!(
        strings(&view["categories"]).contains(&"destructive".to_string()),
        "{view:#}"
    );
    assert_eq!(
        view["prepared"],
        json!([{ "name": "x", "sql": "PREPARE x AS DELETE FROM t" }]),
        "{view:#}"
    );
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    assert_sqlstate(finish(q).await, "42501");
    assert_eq!(t_rows(&db).await, 10);
    p.shutdown().await;
}

/// The same swap in one pipelined extended-protocol segment (three
/// Parse/Bind/Execute before one Sync): the last Execute runs the DELETE
/// the segment prepared, so the segment is held.
#[tokio::test]
async fn a_name_reprepared_in_one_segment_is_judged_as_the_new_statement() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let mut s = raw_session(&p, &db).await;
    s.write_all(&query_frame("PREPARE x AS SELECT 1"))
        .await
        .unwrap();
    let mut seg = Vec::new();
    for sql in ["DEALLOCATE x", "PREPARE x AS DELETE FROM t", "EXECUTE x"] {
        seg.extend(parse_frame("", sql));
        seg.extend(bind_execute_frames(""));
    }
    seg.extend(frame(b'S', b""));
    s.write_all(&seg).await.unwrap();
    let view = api.pending_destructive(&db).await;
    assert_eq!(
        view["prepared"],
        json!([{ "name": "x", "sql": "PREPARE x AS DELETE FROM t" }]),
        "{view:#}"
    );
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    api.settled(&id_of(&view), "denied").await;
    assert_eq!(t_rows(&db).await, 10);
    let _ = s.write_all(&TERMINATE).await;
    p.shutdown().await;
}

/// A DEALLOCATE (or Close) that the server never ran, because the unit
/// failed before it, leaves the statement in the server. A later PREPARE of
/// the name is then refused (42P05) and the old statement stays: the proxy,
/// which decides before the server answers, must not take the name for the
/// new text until the server has confirmed the drop.
#[tokio::test]
async fn a_drop_the_server_never_ran_cannot_launder_a_name() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    c.batch_execute("PREPARE x AS DELETE FROM t").await.unwrap();
    let e = c
        .batch_execute("SELECT 1/0; DEALLOCATE x")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22012", "{e}");
    let e = c.batch_execute("PREPARE x AS SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "42P05", "the server still has x: {e}");
    let q = spawn_query(&c, "EXECUTE x");
    let view = api.held("EXECUTE x").await;
    assert_eq!(t_rows(&db).await, 10, "nothing ran while held");
    assert!(
        strings(&view["categories"]).contains(&"destructive".to_string()),
        "{view:#}"
    );
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    assert_sqlstate(finish(q).await, "42501");
    assert_eq!(t_rows(&db).await, 10);
    // A drop the server confirmed is forgotten: the name is new again.
    c.batch_execute("DEALLOCATE x").await.unwrap();
    c.batch_execute("PREPARE x AS SELECT 1").await.unwrap();
    let rows = c.simple_query("EXECUTE x").await.expect("not held");
    assert!(!rows.is_empty());

    // Protocol level: a Close skipped after an error in its segment.
    let mut s = raw_session(&p, &db).await;
    let sync = frame(b'S', b"");
    let answer = |tags: &[&str]| (tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(), 'I');
    let define = [parse_frame("s1", "DELETE FROM t"), sync.clone()].concat();
    assert_eq!(exchange(&mut s, &define).await, answer(&["1"]));
    let failing = [
        parse_frame("", "SELECT 1/0"),
        bind_execute_frames(""),
        frame(b'C', b"Ss1\0"),
        sync.clone(),
    ]
    .concat();
    assert_eq!(exchange(&mut s, &failing).await, answer(&["1", "E22012"]));
    let again = [parse_frame("s1", "SELECT 1"), sync.clone()].concat();
    assert_eq!(exchange(&mut s, &again).await, answer(&["E42P05"]));
    s.write_all(&[bind_execute_frames("s1"), sync.clone()].concat())
        .await
        .unwrap();
    let view = api.pending_destructive(&db).await;
    assert_eq!(t_rows(&db).await, 10, "nothing ran while held");
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    api.settled(&id_of(&view), "denied").await;
    assert_eq!(t_rows(&db).await, 10);
    let _ = s.write_all(&TERMINATE).await;
    p.shutdown().await;
}

/// A database with `t`, a proxy with the admin API over it, and a raw
/// protocol session through the proxy (keep the rules directory alive).
struct Raw;

impl Raw {
    async fn open() -> (
        String,
        Api,
        tokio::net::TcpStream,
        TestProxy,
        tempfile::TempDir,
    ) {
        let db = pg().create_db();
        setup(&db).await;
        let (rules, p) = api_proxy("20s", None).await;
        let api = Api::of(&p);
        let s = raw_session(&p, &db).await;
        (db, api, s, p, rules)
    }

    /// Ends the session and the proxy.
    async fn close(mut s: tokio::net::TcpStream, p: TestProxy) {
        let _ = s.write_all(&TERMINATE).await;
        p.shutdown().await;
    }
}

/// Raw-protocol pieces for the tests of the proxy's model of server state.
fn bind_frame(portal: &str, stmt: &str) -> Vec<u8> {
    frame(
        b'B',
        &[portal.as_bytes(), b"\0", stmt.as_bytes(), b"\0\0\0\0\0\0\0"].concat(),
    )
}

fn execute_frame(portal: &str) -> Vec<u8> {
    frame(b'E', &[portal.as_bytes(), b"\0\0\0\0\0"].concat())
}

fn close_frame(kind: u8, name: &str) -> Vec<u8> {
    frame(b'C', &[&[kind][..], name.as_bytes(), b"\0"].concat())
}

fn sync_frame() -> Vec<u8> {
    frame(b'S', b"")
}

fn answer(tags: &[&str], status: char) -> (Vec<String>, char) {
    (tags.iter().map(|t| t.to_string()).collect(), status)
}

/// BEGIN, then statement `d` prepared as `sql` and bound to portal `p`
/// (nothing executed).
async fn begin_with_portal(s: &mut tokio::net::TcpStream, sql: &str) {
    assert_eq!(
        exchange(s, &query_frame("BEGIN")).await,
        answer(&["C"], 'T')
    );
    let msgs = [parse_frame("d", sql), bind_frame("p", "d"), sync_frame()].concat();
    assert_eq!(exchange(s, &msgs).await, answer(&["1", "2"], 'T'));
}

/// Sends `msgs`, which the policy must hold as destructive, denies the
/// request, checks that `t` kept its rows and that the client was refused
/// (42501); returns the transaction status after the refusal.
async fn held_and_denied(api: &Api, s: &mut tokio::net::TcpStream, db: &str, msgs: &[u8]) -> char {
    s.write_all(msgs).await.unwrap();
    let view = api.pending_destructive(db).await;
    assert_eq!(t_rows(db).await, 10, "nothing ran while held");
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    api.settled(&id_of(&view), "denied").await;
    let (tags, status) = exchange(s, &[]).await;
    assert!(tags.contains(&"E42501".to_string()), "{tags:?}");
    assert_eq!(t_rows(db).await, 10);
    status
}

/// SQL PREPARE and protocol Parse share one namespace. A protocol Close
/// of an SQL-prepared name, then a Parse of the name as a DELETE: the
/// proxy kept the two kinds in separate maps and looked the name up in
/// the stale one, judging the DELETE as the old SELECT.
#[tokio::test]
async fn one_namespace_for_sql_and_protocol_prepared_statements() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let q = query_frame("PREPARE x AS SELECT 1");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'I'));
    let msgs = [
        close_frame(b'S', "x"),
        parse_frame("x", "DELETE FROM t"),
        bind_execute_frames("x"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &msgs).await, 'I');
    // A PREPARE the server refused defines nothing there; a protocol
    // statement of that name is then whatever its Parse says.
    let q = query_frame("PREPARE y AS SELECT * FROM no_such_table");
    assert_eq!(exchange(&mut s, &q).await, answer(&["E42P01"], 'I'));
    let msgs = [
        parse_frame("y", "DELETE FROM t"),
        bind_execute_frames("y"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &msgs).await, 'I');
    Raw::close(s, p).await;
}

/// A Bind binds what the segment's own earlier Executes made of the name:
/// `DEALLOCATE x` and `PREPARE x AS DELETE ...` run as protocol Executes,
/// then x is bound and executed, all before one Sync.
#[tokio::test]
async fn a_bind_sees_what_its_segment_prepared() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let q = query_frame("PREPARE x AS SELECT 1");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'I'));
    let msgs = [
        parse_frame("", "DEALLOCATE x"),
        bind_execute_frames(""),
        parse_frame("", "PREPARE x AS DELETE FROM t"),
        bind_execute_frames(""),
        bind_execute_frames("x"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &msgs).await, 'I');
    Raw::close(s, p).await;
}

/// A Close skipped after an error in a Flush-ended segment: its error came
/// while nothing waited for an answer, and a later clean Sync must not
/// count as the server confirming the drop.
#[tokio::test]
async fn a_drop_in_a_failed_flush_segment_stays_unconfirmed() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let define = [parse_frame("x", "DELETE FROM t"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &define).await, answer(&["1"], 'I'));
    let failing = [
        parse_frame("", "SELECT 1/0"),
        bind_execute_frames(""),
        close_frame(b'S', "x"),
        frame(b'H', b""),
    ]
    .concat();
    s.write_all(&failing).await.unwrap();
    let mut tags = Vec::new();
    while tags.last() != Some(&b'E') {
        tags.push(read_msg(&mut s).await.0);
    }
    // 1/0 is folded, and fails, when the Bind plans it.
    assert_eq!(tags, b"1E", "the error arrives before any Sync");
    assert_eq!(exchange(&mut s, &sync_frame()).await, answer(&[], 'I'));
    let again = [parse_frame("x", "SELECT 1"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &again).await, answer(&["E42P05"], 'I'));
    let run = [bind_execute_frames("x"), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'I');
    Raw::close(s, p).await;
}

/// A named portal bound again (refused by the server, 42P03, which keeps
/// the old portal) and revived by ROLLBACK TO SAVEPOINT: the proxy must
/// take it for either statement. The same after a Close the error skipped.
#[tokio::test]
async fn a_named_portal_revived_by_a_savepoint_rollback_is_still_judged() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    for close_first in [false, true] {
        assert_eq!(
            exchange(&mut s, &query_frame("BEGIN")).await,
            answer(&["C"], 'T')
        );
        let msgs = [
            parse_frame("sdel", "DELETE FROM t"),
            bind_frame("p", "sdel"),
            sync_frame(),
        ]
        .concat();
        assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "2"], 'T'));
        let q = query_frame("SAVEPOINT s");
        assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'T'));
        let mut msgs = vec![parse_frame("ssel", "SELECT 1")];
        if close_first {
            // The failing Bind (1/0 is folded when it is planned) makes
            // the server skip the Close.
            msgs.extend([
                parse_frame("", "SELECT 1/0"),
                bind_execute_frames(""),
                close_frame(b'P', "p"),
            ]);
        }
        msgs.extend([bind_frame("p", "ssel"), sync_frame()]);
        let refused = if close_first { "E22012" } else { "E42P03" };
        let expect = if close_first {
            vec!["1", "1", refused]
        } else {
            vec!["1", refused]
        };
        assert_eq!(exchange(&mut s, &msgs.concat()).await, answer(&expect, 'E'));
        let q = query_frame("ROLLBACK TO SAVEPOINT s");
        assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'T'));
        let run = [execute_frame("p"), sync_frame()].concat();
        assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'E');
        assert_eq!(
            exchange(&mut s, &query_frame("ROLLBACK")).await,
            answer(&["C"], 'I')
        );
        let q = query_frame("DEALLOCATE ALL");
        assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'I'));
    }
    Raw::close(s, p).await;
}

/// A Parse the server skipped (an earlier message of its segment failed)
/// left the unnamed statement as it was: the DELETE, not the SELECT the
/// proxy read. After a clean Parse the unnamed statement is the new one.
#[tokio::test]
async fn a_skipped_parse_leaves_the_unnamed_statement_judged_as_before() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let msgs = [parse_frame("", "DELETE FROM t"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1"], 'I'));
    let msgs = [
        parse_frame("z", "SELEC"),
        parse_frame("", "SELECT 1"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["E42601"], 'I'));
    let run = [bind_execute_frames(""), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'I');
    let msgs = [
        parse_frame("", "SELECT 1"),
        bind_execute_frames(""),
        sync_frame(),
    ]
    .concat();
    assert_eq!(
        exchange(&mut s, &msgs).await,
        answer(&["1", "2", "D", "C"], 'I'),
        "not held"
    );
    Raw::close(s, p).await;
}

/// After a Flush-ended segment failed, the server skips a Close in the next
/// segment; that segment's answer is clean (the error came before it) and
/// must not count as the drop having run.
#[tokio::test]
async fn the_first_answer_after_a_failed_flush_segment_vouches_for_nothing() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let q = query_frame("PREPARE x AS DELETE FROM t");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'I'));
    let failing = [
        parse_frame("", "SELECT 1/0"),
        bind_execute_frames(""),
        frame(b'H', b""),
    ]
    .concat();
    s.write_all(&failing).await.unwrap();
    let mut tags = Vec::new();
    while tags.last() != Some(&b'E') {
        tags.push(read_msg(&mut s).await.0);
    }
    let close = [close_frame(b'S', "x"), sync_frame()].concat();
    assert_eq!(
        exchange(&mut s, &close).await,
        answer(&[], 'I'),
        "skipped: no CloseComplete"
    );
    let q = query_frame("PREPARE x AS SELECT 1");
    assert_eq!(exchange(&mut s, &q).await, answer(&["E42P05"], 'I'));
    assert_eq!(
        held_and_denied(&api, &mut s, &db, &query_frame("EXECUTE x")).await,
        'I'
    );
    Raw::close(s, p).await;
}

/// A segment's Executes change names in message order: DEALLOCATE ALL run
/// by an Execute, then a Parse of x, leaves x defined (it was applied after
/// the Parse, wiping x from the proxy's model).
#[tokio::test]
async fn an_executed_deallocate_all_does_not_wipe_a_later_parse() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let msgs = [
        parse_frame("", "DEALLOCATE ALL"),
        bind_execute_frames(""),
        parse_frame("x", "DELETE FROM t"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(
        exchange(&mut s, &msgs).await,
        answer(&["1", "2", "C", "1"], 'I')
    );
    let msgs = [parse_frame("x", "SELECT 1"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["E42P05"], 'I'));
    let run = [bind_execute_frames("x"), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'I');
    Raw::close(s, p).await;
}

/// Portals outlive DEALLOCATE ALL (they keep their plans), and a failed
/// Bind of the unnamed portal leaves the old one, which a savepoint
/// rollback makes runnable: both stay judged as the DELETE.
#[tokio::test]
async fn portals_survive_deallocate_all_and_failed_binds() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    begin_with_portal(&mut s, "DELETE FROM t").await;
    let q = query_frame("DEALLOCATE ALL");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'T'));
    let q = query_frame("SAVEPOINT s");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'T'));
    let msgs = [
        parse_frame("e", "SELECT 1"),
        bind_frame("p", "e"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "E42P03"], 'E'));
    let q = query_frame("ROLLBACK TO SAVEPOINT s");
    assert_eq!(exchange(&mut s, &q).await, answer(&["C"], 'T'));
    let run = [execute_frame("p"), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'E');
    assert_eq!(
        exchange(&mut s, &query_frame("ROLLBACK")).await,
        answer(&["C"], 'I')
    );

    // The unnamed portal; savepoint statements through named portals (a
    // simple Query would drop the unnamed portal).
    assert_eq!(
        exchange(&mut s, &query_frame("BEGIN")).await,
        answer(&["C"], 'T')
    );
    let msgs = [
        parse_frame("d2", "DELETE FROM t"),
        bind_frame("", "d2"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "2"], 'T'));
    let via_portal = |name: &str, sql: &str| {
        [
            parse_frame(name, sql),
            bind_frame(name, name),
            execute_frame(name),
            sync_frame(),
        ]
        .concat()
    };
    let msgs = via_portal("sp", "SAVEPOINT s");
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "2", "C"], 'T'));
    // One parameter expected, none bound: refused before the portal is made.
    let msgs = [
        parse_frame("e2", "SELECT $1::int"),
        bind_frame("", "e2"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "E08P01"], 'E'));
    let msgs = via_portal("rb", "ROLLBACK TO SAVEPOINT s");
    assert_eq!(exchange(&mut s, &msgs).await, answer(&["1", "2", "C"], 'T'));
    let run = [execute_frame(""), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'E');
    assert_eq!(
        exchange(&mut s, &query_frame("ROLLBACK")).await,
        answer(&["C"], 'I')
    );
    Raw::close(s, p).await;
}

/// SQL cursors and protocol portals share one namespace: FETCH from a
/// portal bound to `DELETE ... RETURNING` runs the DELETE (to completion,
/// on the first fetch). It is judged as that portal; FETCH from a SQL
/// cursor stays a read (its query was judged at DECLARE).
#[tokio::test]
async fn fetch_from_a_protocol_portal_is_judged_as_the_portal() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    begin_with_portal(&mut s, "DELETE FROM t RETURNING 1").await;
    let fetch = query_frame("FETCH ALL FROM p");
    assert_eq!(held_and_denied(&api, &mut s, &db, &fetch).await, 'E');
    assert_eq!(
        exchange(&mut s, &query_frame("ROLLBACK")).await,
        answer(&["C"], 'I')
    );
    // In one segment, the FETCH run by an Execute.
    assert_eq!(
        exchange(&mut s, &query_frame("BEGIN")).await,
        answer(&["C"], 'T')
    );
    let msgs = [
        bind_frame("p2", "d"),
        parse_frame("", "FETCH 1 FROM p2"),
        bind_execute_frames(""),
        sync_frame(),
    ]
    .concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &msgs).await, 'E');
    assert_eq!(
        exchange(&mut s, &query_frame("ROLLBACK")).await,
        answer(&["C"], 'I')
    );
    let q = query_frame("BEGIN; DECLARE c CURSOR FOR SELECT * FROM t; FETCH 2 FROM c; COMMIT");
    let (tags, status) = exchange(&mut s, &q).await;
    assert_eq!(status, 'I');
    assert_eq!(
        tags.iter().filter(|t| *t == "D").count(),
        2,
        "the cursor's rows: {tags:?}"
    );
    Raw::close(s, p).await;
}

/// In copy-in mode the server ignores Sync and Flush. An extended COPY's
/// own Sync is ignored and the Sync after CopyDone answers it (libpq and
/// tokio-postgres send one): the proxy counted both, one answer short,
/// and from then on paired each unit with the next one's answer, taking
/// a failed unit for clean.
#[tokio::test]
async fn copy_in_keeps_the_proxy_in_step_with_the_server() {
    let (db, api, mut s, p, _rules) = Raw::open().await;
    let define = [parse_frame("d", "DELETE FROM t"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &define).await, answer(&["1"], 'I'));
    // Simple Query COPY: data, CopyDone, one answer.
    s.write_all(&query_frame("COPY other FROM STDIN"))
        .await
        .unwrap();
    assert_eq!(read_msg(&mut s).await.0, b'G');
    let data = [frame(b'd', b"1\n"), frame(b'c', b"")].concat();
    assert_eq!(exchange(&mut s, &data).await, answer(&["C"], 'I'));
    // Extended COPY.
    let start = [
        parse_frame("", "COPY other FROM STDIN"),
        bind_execute_frames(""),
        sync_frame(),
    ]
    .concat();
    s.write_all(&start).await.unwrap();
    let mut tags = Vec::new();
    while tags.last() != Some(&b'G') {
        tags.push(read_msg(&mut s).await.0);
    }
    assert_eq!(tags, b"12G");
    let data = [frame(b'd', b"2\n"), frame(b'c', b""), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &data).await, answer(&["C"], 'I'));
    // A client may send its next query before a COPY's answer comes
    // (tokio-postgres does, on the ErrorResponse): until the server says
    // whether it entered copy-in mode, the proxy waits for its word.
    let pipelined = [query_frame("COPY nope FROM STDIN"), query_frame("SELECT 1")].concat();
    assert_eq!(exchange(&mut s, &pipelined).await, answer(&["E42P01"], 'I'));
    assert_eq!(exchange(&mut s, &[]).await, answer(&["T", "D", "C"], 'I'));
    let pipelined = [
        parse_frame("", "COPY nope FROM STDIN"),
        bind_execute_frames(""),
        sync_frame(),
        parse_frame("", "SELECT 1"),
        bind_execute_frames(""),
        sync_frame(),
    ]
    .concat();
    assert_eq!(
        exchange(&mut s, &pipelined).await,
        answer(&["1", "2", "E42P01"], 'I')
    );
    assert_eq!(
        exchange(&mut s, &[]).await,
        answer(&["1", "2", "D", "C"], 'I')
    );
    // Still in step: a failed unit's skipped Close is not taken for done.
    let failing = [
        parse_frame("", "SELECT 1/0"),
        bind_frame("", ""),
        close_frame(b'S', "d"),
        sync_frame(),
    ]
    .concat();
    assert_eq!(
        exchange(&mut s, &failing).await,
        answer(&["1", "E22012"], 'I')
    );
    assert_eq!(exchange(&mut s, &sync_frame()).await, answer(&[], 'I'));
    let again = [parse_frame("d", "SELECT 1"), sync_frame()].concat();
    assert_eq!(exchange(&mut s, &again).await, answer(&["E42P05"], 'I'));
    let run = [bind_execute_frames("d"), sync_frame()].concat();
    assert_eq!(held_and_denied(&api, &mut s, &db, &run).await, 'I');
    // A Sync in copy-in mode (the server would ignore it) ends the session.
    s.write_all(&query_frame("COPY other FROM STDIN"))
        .await
        .unwrap();
    assert_eq!(read_msg(&mut s).await.0, b'G');
    s.write_all(&sync_frame()).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E');
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("FATAL") && text.contains("COPY FROM STDIN"),
        "{text}"
    );
    p.shutdown().await;
}

/// A dollar-quote tag PostgreSQL accepts and sqlparser cannot read (an em
/// dash): PostgreSQL runs a string and then the DROP, sqlparser saw one
/// SELECT. Checked against the server directly, then held through the proxy.
#[tokio::test]
async fn a_dollar_tag_the_parser_misreads_cannot_hide_a_statement() {
    let db = pg().create_db();
    setup(&db).await;
    const SQL: &str = "SELECT $x\u{2014}$ -- $x\u{2014}$; DROP TABLE other";
    let direct = pg().direct(&db).await;
    direct
        .batch_execute(&format!("BEGIN; {SQL}"))
        .await
        .unwrap();
    let gone: Option<String> = direct
        .query_one("SELECT to_regclass('other')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, None, "PostgreSQL ran the DROP");
    direct.batch_execute("ROLLBACK").await.unwrap();

    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    let q = spawn_query(&c, SQL);
    let view = api.held(SQL).await;
    assert!(
        strings(&view["categories"]).contains(&"unknown".to_string()),
        "{view:#}"
    );
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    assert_sqlstate(finish(q).await, "42501");
    let kept: Option<String> = direct
        .query_one("SELECT to_regclass('other')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept.as_deref(), Some("other"));
    p.shutdown().await;
}

/// After a Flush-ended segment that failed, the server skips every message
/// up to a Sync, a simple Query included, without answering it: the proxy
/// would count a skipped PREPARE or DEALLOCATE as run and misattribute
/// every later answer. Such a Query ends the session instead.
#[tokio::test]
async fn a_query_after_an_unsynced_segment_ends_the_session() {
    let (_db, _api, mut s, p, _rules) = Raw::open().await;
    let failing = [
        parse_frame("", "SELECT 1/0"),
        bind_execute_frames(""),
        frame(b'H', b""),
    ]
    .concat();
    s.write_all(&failing).await.unwrap();
    let mut tags = Vec::new();
    while tags.last() != Some(&b'E') {
        tags.push(read_msg(&mut s).await.0);
    }
    s.write_all(&query_frame("DEALLOCATE ALL")).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E');
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("FATAL") && text.contains("08P01") && text.contains("Sync"),
        "{text}"
    );
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(n.is_ok());
    p.shutdown().await;
}

/// PostgreSQL refuses to PREPARE (or Parse) a name that exists, keeping
/// the old statement; the proxy, which decides before the server answers,
/// must not believe the new one. After `PREPARE x AS DELETE ...` a second
/// `PREPARE x AS SELECT 1` fails in the server, and `EXECUTE x` still
/// deletes: it is held, shown with both texts. Likewise for a named
/// protocol statement parsed twice.
#[tokio::test]
async fn a_second_prepare_of_a_name_cannot_launder_it() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, p) = api_proxy("20s", None).await;
    let api = Api::of(&p);
    let (c, _notices, _driver) = connect_with_notices(&p, &db).await;
    c.batch_execute("PREPARE x AS DELETE FROM t")
        .await
        .expect("PREPARE runs nothing");
    let e = c
        .batch_execute("PREPARE x AS SELECT 1")
        .await
        .expect_err("the server refuses a second PREPARE of x");
    assert_eq!(code(&e), "42P05", "{e}");
    let q = spawn_query(&c, "EXECUTE x");
    let view = api.held("EXECUTE x").await;
    assert_eq!(t_rows(&db).await, 10, "nothing ran while held");
    assert!(
        strings(&view["categories"]).contains(&"destructive".to_string()),
        "{view:#}"
    );
    let shown = view["prepared"][0]["sql"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        shown.contains("DELETE FROM t") && shown.contains("SELECT 1"),
        "{view:#}"
    );
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    assert_sqlstate(finish(q).await, "42501");
    assert_eq!(t_rows(&db).await, 10);

    // Protocol level: tokio-postgres names its statements itself, so the
    // same name is parsed twice by hand.
    let mut s = raw_session(&p, &db).await;
    for sql in ["DELETE FROM t", "SELECT 1"] {
        s.write_all(&[parse_frame("s1", sql), frame(b'S', b"")].concat())
            .await
            .unwrap();
    }
    s.write_all(&[bind_execute_frames("s1"), frame(b'S', b"")].concat())
        .await
        .unwrap();
    let view = api.pending_destructive(&db).await;
    assert_eq!(api.deny(&id_of(&view), ALICE.1, "no").await.0, 200);
    api.settled(&id_of(&view), "denied").await;
    assert_eq!(t_rows(&db).await, 10);
    let _ = s.write_all(&TERMINATE).await;
    p.shutdown().await;
}

/// PostgreSQL keys prepared statements and portals on the first 63 bytes
/// of their names: a portal bound as 64 `c`s is found by `FETCH` of 63
/// (which the proxy would judge a cursor read), and two long names that
/// share 63 bytes are one statement to the server. Longer protocol names
/// end the session before anything is forwarded.
#[tokio::test]
async fn protocol_names_over_63_bytes_are_refused() {
    for msgs in [
        [parse_frame(&"a".repeat(64), "DELETE FROM t"), sync_frame()].concat(),
        [
            parse_frame("", "DELETE FROM t RETURNING 1"),
            bind_frame(&"c".repeat(64), ""),
            sync_frame(),
        ]
        .concat(),
    ] {
        let (db, _api, mut s, p, _rules) = Raw::open().await;
        s.write_all(&msgs).await.unwrap();
        let (tag, body) = read_msg(&mut s).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(tag, b'E', "{text}");
        assert!(
            text.contains("08P01") && text.contains("63 bytes"),
            "{text}"
        );
        assert_eq!(t_rows(&db).await, 10);
        p.shutdown().await;
    }
}
