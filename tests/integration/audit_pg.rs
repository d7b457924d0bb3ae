//! The PostgreSQL sink: the table holds exactly the lines of the file (same
//! bytes, same hashes), refuses edits, refuses to mix chains, and under
//! `on_sink_failure = "refuse"` a failing table stops the proxy from running
//! statements it could not record. Uses the harness's shared cluster, one
//! database per test.

use std::path::PathBuf;
use std::time::Duration;

use crate::audit_common::*;
use crate::harness::*;
use pg_airlock::audit::*;

/// The superuser over loopback (trusted by the harness's pg_hba).
fn sink_url(db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=5",
        pg().port
    )
}

async fn superuser(db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(&sink_url(db), tokio_postgres::NoTls)
        .await
        .expect("superuser connection");
    tokio::spawn(conn);
    c
}

/// Every row of `table` equals the same-seq line of the file trail, and
/// there is one row per line.
async fn assert_table_matches_files(
    client: &tokio_postgres::Client,
    table: &str,
    files: &[PathBuf],
) -> usize {
    let mut file_lines = Vec::new();
    for f in files {
        file_lines.extend(lines(f));
    }
    let mut by_seq: Vec<(u64, String)> = file_lines
        .into_iter()
        .map(|l| (serde_json::from_str::<Record>(&l).unwrap().seq, l))
        .collect();
    by_seq.sort_by_key(|(s, _)| *s);
    let rows = client
        .query(
            &format!(
                "SELECT seq, prev, hash, line, event->>'type', type FROM {table} ORDER BY seq"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        by_seq.len(),
        "table {table} and the file trail hold different numbers of records"
    );
    for (row, (seq, line)) in rows.iter().zip(&by_seq) {
        let rec: Record = serde_json::from_str(line).unwrap();
        assert_eq!(row.get::<_, i64>(0) as u64, *seq);
        assert_eq!(row.get::<_, String>(1), rec.prev, "seq {seq}");
        assert_eq!(
            row.get::<_, String>(2),
            chain::hash_line(line.as_bytes()),
            "seq {seq}"
        );
        assert_eq!(&row.get::<_, String>(3), line, "seq {seq}");
        assert_eq!(row.get::<_, String>(4), rec.event.type_name());
        assert_eq!(row.get::<_, String>(5), rec.event.type_name());
    }
    rows.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_sink_holds_the_same_lines_and_refuses_edits() {
    let db = pg().create_db();
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.postgres_url = Some(sink_url(&db));
    c.postgres_table = "audit.trail".into();
    let client = superuser(&db).await;
    client.batch_execute("CREATE SCHEMA audit").await.unwrap();

    let files = write_trail(dir.path(), 300, c.clone()).await;
    // A second run continues the chain in both places.
    let files2 = write_trail(dir.path(), 10, c.clone()).await;
    assert_eq!(files, files2);
    assert_verifies(&files);
    assert_eq!(
        assert_table_matches_files(&client, "audit.trail", &files).await,
        314
    );

    for sql in [
        "UPDATE audit.trail SET line = 'x' WHERE seq = 2",
        "DELETE FROM audit.trail WHERE seq = 2",
        "TRUNCATE audit.trail",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }

    // A different chain (fresh file) must not write into this table.
    let other = tempfile::tempdir().unwrap();
    let mut c2 = cfg(other.path());
    c2.postgres_url = Some(sink_url(&db));
    c2.postgres_table = "audit.trail".into();
    let err = Auditor::start(c2)
        .await
        .err()
        .expect("foreign chain refused");
    assert!(err.to_string().contains("another chain"), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.postgres_url = Some(format!(
        "host=127.0.0.1 port={} user=x connect_timeout=2",
        free_port()
    ));
    let err = Auditor::start(c).await.err().expect("must fail");
    assert!(err.to_string().contains("postgres"), "{err}");
}

/// A failing insert must say why: the server's message, not only
/// tokio-postgres's "db error" (operators read this in /metrics and logs).
#[tokio::test(flavor = "multi_thread")]
async fn postgres_sink_errors_carry_the_servers_message() {
    let db = pg().create_db();
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.postgres_url = Some(sink_url(&db));
    c.on_sink_failure = FailurePolicy::Refuse;
    let (a, task) = Auditor::start(c).await.unwrap();
    let su = superuser(&db).await;
    su.batch_execute(
        "CREATE FUNCTION audit_outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated audit outage'; END $$;
         CREATE TRIGGER audit_outage BEFORE INSERT ON airlock_audit FOR EACH ROW EXECUTE FUNCTION audit_outage();",
    )
    .await
    .unwrap();
    a.record(stmt("s", 1, "SELECT 1", "allow")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), a.flush())
        .await
        .expect("flush under refuse answers while the sink fails")
        .expect_err("flush succeeded although every insert fails")
        .to_string();
    assert!(!a.is_healthy());
    let last = a.metrics().last_error().unwrap_or_default();
    // Let the writer finish cleanly before judging the messages.
    su.batch_execute("DROP TRIGGER audit_outage ON airlock_audit")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), a.shutdown())
        .await
        .expect("shutdown after recovery")
        .unwrap();
    task.join().await.unwrap();
    assert_verifies(&dir_files(dir.path()));

    // At start: a wrong password must say so (and not echo the password).
    let dir2 = tempfile::tempdir().unwrap();
    let mut c = cfg(dir2.path());
    c.postgres_url = Some(format!(
        "host=127.0.0.1 port={} user={UPSTREAM_USER} password=wrong-pw-4711 dbname=postgres connect_timeout=5",
        pg().port
    ));
    let start = Auditor::start(c)
        .await
        .err()
        .expect("wrong password accepted")
        .to_string();
    assert!(!start.contains("wrong-pw-4711"), "password echoed: {start}");

    let hidden: Vec<&String> = [
        (&err, "simulated audit outage"),
        (&last, "simulated audit outage"),
        (&start, "password authentication failed"),
    ]
    .into_iter()
    .filter(|(msg, cause)| !msg.contains(cause))
    .map(|(msg, _)| msg)
    .collect();
    assert!(
        hidden.is_empty(),
        "PostgreSQL sink errors hide their cause: {hidden:#?}"
    );
}

/// Under `refuse` the writer gives up on a failing sink at shutdown rather
/// than wait for it (`Auditor::shutdown` says only `block` waits).
#[tokio::test(flavor = "multi_thread")]
async fn refuse_policy_shutdown_does_not_wait_for_a_failing_sink() {
    let db = pg().create_db();
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.postgres_url = Some(sink_url(&db));
    c.on_sink_failure = FailurePolicy::Refuse;
    let (a, task) = Auditor::start(c).await.unwrap();
    let su = superuser(&db).await;
    su.batch_execute(
        "CREATE FUNCTION audit_outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated audit outage'; END $$;
         CREATE TRIGGER audit_outage BEFORE INSERT ON airlock_audit FOR EACH ROW EXECUTE FUNCTION audit_outage();",
    )
    .await
    .unwrap();
    a.record(stmt("s", 1, "SELECT 1", "allow")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { !a.is_healthy() }).await);
    let res = tokio::time::timeout(Duration::from_secs(8), a.shutdown()).await;
    // Whatever happened, let the writer end so the test leaks nothing.
    su.batch_execute("DROP TRIGGER audit_outage ON airlock_audit")
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(15), a.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), task.join()).await;
    match res {
        Ok(r) => assert!(
            r.is_err(),
            "shutdown reported success with records not stored"
        ),
        Err(_) => panic!("shutdown under on_sink_failure = refuse waited 8s for a failing sink"),
    }
}

fn audit_section(db: &str, extra: &str) -> String {
    format!(
        "[audit]\nfile = \"audit.jsonl\"\npostgres_url = \"{}\"\nflush_interval = \"20ms\"\n{extra}",
        sink_url(db)
    )
}

async fn make_table(db: &str) {
    pg().direct(db)
        .await
        .batch_execute("CREATE TABLE t (id int primary key, v text)")
        .await
        .unwrap();
}

/// Through the real proxy: sessions, statements, a refused login, policy
/// load and the auditor's own records reach the table exactly as the file.
#[tokio::test(flavor = "multi_thread")]
async fn proxy_trail_in_postgres_equals_the_file() {
    let db = pg().create_db();
    make_table(&db).await;
    let p = proxy().extra(&audit_section(&db, "")).start().await;
    assert!(p.try_connect(AGENT, "not-the-password", &db).await.is_err());
    let c = p.connect(&db).await;
    for i in 0..20 {
        c.execute("INSERT INTO t VALUES ($1, 'x')", &[&i])
            .await
            .unwrap();
    }
    assert_eq!(
        code(
            &c.simple_query("SELECT * FROM no_such_table")
                .await
                .unwrap_err()
        ),
        "42P01"
    );
    drop(c);
    let dir = p.shutdown_keep_dir().await;
    let files = trail(&dir.path().join("audit.jsonl"));
    assert_verifies(&files);
    let client = superuser(&db).await;
    let n = assert_table_matches_files(&client, "airlock_audit", &files).await;
    let types: Vec<String> = client
        .query("SELECT DISTINCT type FROM airlock_audit ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in [
        "audit_started",
        "audit_stopped",
        "login_refused",
        "policy_loaded",
        "session_end",
        "session_start",
        "statement",
    ] {
        assert!(types.iter().any(|x| x == t), "no {t} row in {types:?}");
    }
    assert!(n >= 27, "{n} rows");
}

/// `on_sink_failure = "refuse"`: once the table stops taking rows, the
/// proxy refuses new statements (57P03) rather than run them unrecorded;
/// when the table recovers, statements run again and the table catches up
/// with the file.
#[tokio::test(flavor = "multi_thread")]
async fn refuse_policy_stops_statements_while_the_postgres_sink_fails() {
    let db = pg().create_db();
    make_table(&db).await;
    let p = proxy()
        .extra(&audit_section(&db, "on_sink_failure = \"refuse\"\n"))
        .start()
        .await;
    let c = p.connect(&db).await;
    c.batch_execute("INSERT INTO t VALUES (1, 'before')")
        .await
        .unwrap();
    let su = superuser(&db).await;
    su.batch_execute(
        "CREATE FUNCTION audit_outage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'simulated audit outage'; END $$;
         CREATE TRIGGER audit_outage BEFORE INSERT ON airlock_audit FOR EACH ROW EXECUTE FUNCTION audit_outage();",
    )
    .await
    .unwrap();

    // Statements keep running until the writer's next flush fails; from
    // then on each is refused before it reaches the database.
    let mut ran = 1;
    let mut refused = None;
    for i in 2..2000 {
        match c
            .simple_query(&format!("INSERT INTO t VALUES ({i}, 'during')"))
            .await
        {
            Ok(_) => ran += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = refused.expect("statements were never refused while the audit table failed");
    assert_eq!(code(&e), "57P03", "{e}");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("audit trail is unavailable"),
        "{e}"
    );
    assert!(!p.running.proxy.audit.is_healthy());
    let last = p
        .running
        .proxy
        .audit
        .metrics()
        .last_error()
        .unwrap_or_default();
    assert!(
        last.contains("postgres") && last.contains("airlock_audit"),
        "{last}"
    );
    let count = |c: tokio_postgres::Client| async move {
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        count(pg().direct(&db).await).await,
        ran,
        "a refused statement ran"
    );
    // Still refused on the next try: the session stays usable but runs nothing.
    assert_eq!(
        code(
            &c.simple_query("INSERT INTO t VALUES (9999, 'no')")
                .await
                .unwrap_err()
        ),
        "57P03"
    );

    su.batch_execute("DROP TRIGGER audit_outage ON airlock_audit")
        .await
        .unwrap();
    let healthy = eventually(Duration::from_secs(15), || async {
        p.running.proxy.audit.is_healthy()
    })
    .await;
    assert!(
        healthy,
        "audit sink did not recover after the table was fixed"
    );
    c.batch_execute("INSERT INTO t VALUES (10000, 'after')")
        .await
        .unwrap();
    assert_eq!(count(pg().direct(&db).await).await, ran + 1);
    drop(c);
    let dir = p.shutdown_keep_dir().await;
    let files = trail(&dir.path().join("audit.jsonl"));
    assert_verifies(&files);
    // The records queued during the outage reached the table afterwards.
    assert_table_matches_files(&su, "airlock_audit", &files).await;
    let recs = records(&files);
    let inserts = recs
        .iter()
        .filter(|r| matches!(&r.event.kind, pg_airlock::audit::EventKind::Statement(s) if s.outcome != Outcome::NotSent))
        .count() as i64;
    assert_eq!(
        inserts,
        ran + 1,
        "every statement that ran is in the trail, and nothing else"
    );
}
