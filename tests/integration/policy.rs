//! Classified, rule-checked statements: what a rule stops never reaches
//! the database, in any protocol path; ordinary work still works.

use crate::harness::*;
use futures::future::join_all;
use std::path::PathBuf;
use std::time::Duration;

/// A shipped rule file with its hold timeout cut to 250 ms, so a held
/// statement nobody approves is refused quickly. Kept alive by the caller.
fn fast(name: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules")
            .join(name),
    )
    .unwrap();
    assert!(
        text.contains("timeout = \"60s\""),
        "{name} has no 60s default timeout to shorten"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    // Every timeout, the default and any rule's own.
    let fast: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("timeout = ") {
                "timeout = \"250ms\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, fast).unwrap();
    (dir, vec![path])
}

async fn setup(db: &str) {
    let d = pg().direct(db).await;
    d.batch_execute(
        "CREATE TABLE t (id int primary key, v text);
         INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i;",
    )
    .await
    .unwrap();
}

async fn rows(db: &str) -> i64 {
    let d = pg().direct(db).await;
    match d.query_one("SELECT count(*) FROM t", &[]).await {
        Ok(r) => r.get(0),
        Err(_) => -1, // table gone
    }
}

/// Held, nobody decided, refused at the timeout: 57014 naming the request.
fn assert_held(e: &tokio_postgres::Error) {
    assert_eq!(code(e), "57014", "{e}");
    let msg = e.as_db_error().unwrap().message();
    assert!(
        msg.contains("approval request") && msg.contains("timed out"),
        "{msg}"
    );
}

#[tokio::test]
async fn held_statements_never_reach_the_database_in_the_simple_protocol() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, paths) = fast("default.toml");
    let p = proxy().rules(&paths).start().await;
    let c = p.connect(&db).await;
    for sql in [
        "DROP TABLE t",
        "/* cleanup */ DROP TABLE t",
        "SELECT 1; DROP TABLE t",
        "select 1;drop table t;select 2",
        "TRUNCATE t",
        "DELETE FROM t",
        "DELETE FROM t WHERE 1 = 1",
        "UPDATE t SET v = 'x'",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
        "EXPLAIN (ANALYZE) DELETE FROM t",
        "EXPLAIN ANALYZE DELETE FROM t",
        "COPY t TO STDOUT",
        "COPY (SELECT * FROM t) TO STDOUT",
        "SET ROLE postgres",
        "SET role TO postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT set_config('role', 'postgres', false)",
        "SET standard_conforming_strings = off",
        "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
        "GRANT ALL ON t TO PUBLIC",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_catalog . pg_read_file('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/x')",
        "CREATE TABLE copy_of_t AS SELECT * FROM t",
        "SELECT * INTO copy_of_t FROM t",
        "ALTER TABLE t ADD COLUMN w int",
        "this is not sql at all",
    ] {
        let e = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql:?} was not stopped"));
        assert_held(&e);
        assert_eq!(rows(&db).await, 10, "{sql:?} changed the table");
    }
    // The session is still usable and ordinary work passes.
    c.batch_execute("INSERT INTO t VALUES (11, 'eleven')")
        .await
        .unwrap();
    c.execute("UPDATE t SET v = 'x' WHERE id = $1", &[&11i32])
        .await
        .unwrap();
    c.execute("DELETE FROM t WHERE id = 11", &[]).await.unwrap();
    let msgs = c
        .simple_query("SELECT 'DROP TABLE t' AS harmless, \"grant\" FROM (SELECT 1 AS \"grant\") x")
        .await
        .unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(rows(&db).await, 10);
    assert!(p.running.proxy.metrics.statements_held.get() >= 27);
    p.shutdown().await;
}

#[tokio::test]
async fn held_statements_never_reach_the_database_in_the_extended_protocol() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, paths) = fast("default.toml");
    let p = proxy().rules(&paths).start().await;
    let c = p.connect(&db).await;
    // Parse/Describe alone runs nothing and is allowed; Execute is judged.
    let stmt = c
        .prepare("DROP TABLE t")
        .await
        .expect("preparing runs nothing");
    assert_held(&c.execute(&stmt, &[]).await.unwrap_err());
    assert_held(&c.execute("DELETE FROM t", &[]).await.unwrap_err());
    assert_held(
        &c.query("SELECT pg_read_file($1)", &[&"/etc/passwd"])
            .await
            .unwrap_err(),
    );
    assert_eq!(rows(&db).await, 10);
    // A pipeline mixing allowed and held statements: answers stay in order
    // and only the allowed ones run.
    let ins = c
        .prepare("INSERT INTO t VALUES ($1, 'p') RETURNING id")
        .await
        .unwrap();
    let del = c.prepare("DELETE FROM t").await.unwrap();
    let futs = (100..130).map(|i| {
        let (c, ins, del) = (&c, &ins, &del);
        async move {
            if i % 3 == 0 {
                c.execute(del, &[]).await.map(|_| -1)
            } else {
                c.query_one(ins, &[&i]).await.map(|r| r.get::<_, i32>(0))
            }
        }
    });
    let results = join_all(futs).await;
    for (i, r) in (100..130).zip(results) {
        if i % 3 == 0 {
            assert_held(&r.unwrap_err());
        } else {
            assert_eq!(r.unwrap(), i);
        }
    }
    assert_eq!(rows(&db).await, 10 + 20);
    p.shutdown().await;
}

#[tokio::test]
async fn sql_level_prepare_is_judged_at_execute() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, paths) = fast("default.toml");
    let p = proxy().rules(&paths).start().await;
    let c = p.connect(&db).await;
    c.batch_execute("PREPARE wipe AS DELETE FROM t")
        .await
        .expect("PREPARE runs nothing");
    assert_held(&c.simple_query("EXECUTE wipe").await.unwrap_err());
    assert_held(
        &c.simple_query("explain analyze execute wipe")
            .await
            .unwrap_err(),
    );
    c.batch_execute("PREPARE one(int) AS SELECT v FROM t WHERE id = $1")
        .await
        .unwrap();
    c.batch_execute("EXECUTE one(3)").await.unwrap();
    // Re-using a name after DEALLOCATE: the new meaning counts.
    c.batch_execute("DEALLOCATE one; PREPARE one AS DELETE FROM t")
        .await
        .unwrap();
    assert_held(&c.simple_query("EXECUTE one").await.unwrap_err());
    // EXECUTE of a name the proxy never saw prepared fails closed.
    assert_held(&c.simple_query("EXECUTE never_seen").await.unwrap_err());
    assert_eq!(rows(&db).await, 10);
    p.shutdown().await;
}

#[tokio::test]
async fn refusal_inside_a_transaction_aborts_it_as_the_client_is_told() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, paths) = fast("default.toml");
    let p = proxy().rules(&paths).start().await;
    let c = p.connect(&db).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO t VALUES (50, 'in txn')", &[])
        .await
        .unwrap();
    assert_held(&c.simple_query("DROP TABLE t").await.unwrap_err());
    // The server's transaction is aborted, exactly as the client now believes.
    assert_eq!(
        code(&c.simple_query("SELECT 1").await.unwrap_err()),
        "25P02"
    );
    c.batch_execute("COMMIT").await.unwrap(); // reported as ROLLBACK by the server
    assert_eq!(
        rows(&db).await,
        10,
        "the insert before the refusal was rolled back"
    );
    // A fresh transaction works.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (51, 'ok'); COMMIT")
        .await
        .unwrap();
    assert_eq!(rows(&db).await, 11);
    p.shutdown().await;
}

#[tokio::test]
async fn deny_rules_answer_with_their_message() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, strict) = fast("strict.toml");
    let p = proxy().rules(&strict).start().await;
    let c = p.connect(&db).await;
    let e = c
        .simple_query("GRANT SELECT ON t TO PUBLIC")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("denied by rule"),
        "{e}"
    );
    // strict also holds reads of *pii* / *secret* tables.
    pg().direct(&db)
        .await
        .batch_execute("CREATE TABLE customer_pii (ssn text)")
        .await
        .unwrap();
    assert_held(
        &c.simple_query("SELECT * FROM customer_pii")
            .await
            .unwrap_err(),
    );
    c.simple_query("SELECT * FROM t").await.unwrap();
    p.shutdown().await;
}

/// A rule file that allows routine work and holds the rest, for 200 ms:
/// the reload tests start from it and add to it.
const ROUTINE_ONLY: &str = "[defaults]\naction = \"hold\"\ntimeout = \"200ms\"\n\n[[rule]]\nname = \"routine\"\ndescription = \"d\"\naction = \"allow\"\ncategories = [\"read\", \"write\", \"session\", \"transaction\"]\n";

#[tokio::test]
async fn rules_reload_on_change_and_bad_files_keep_the_old_rules() {
    let db = pg().create_db();
    setup(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    let hold_ddl = ROUTINE_ONLY;
    std::fs::write(&file, hold_ddl).unwrap();
    let p = proxy().rules(std::slice::from_ref(&file)).start().await;
    let c = p.connect(&db).await;
    assert_held(&c.simple_query("CREATE TABLE x (a int)").await.unwrap_err());

    // A broken file is refused; the old rules stay in force.
    std::fs::write(
        &file,
        "[[rule]]\nname = \"broken\"\naction = \"sometimes\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_held(&c.simple_query("CREATE TABLE x (a int)").await.unwrap_err());
    c.simple_query("SELECT 1").await.unwrap();

    // A valid change takes effect without a restart.
    std::fs::write(&file, format!("{hold_ddl}\n[[rule]]\nname = \"ddl-ok\"\ndescription = \"d\"\naction = \"allow\"\ncategories = [\"ddl\"]\n")).unwrap();
    let ok = eventually(Duration::from_secs(5), || async {
        c.simple_query("CREATE TABLE IF NOT EXISTS x (a int)")
            .await
            .is_ok()
    })
    .await;
    assert!(ok, "new rules were not picked up");
    p.shutdown().await;
}

/// A rule reload that teaches the classifier a function or a setting
/// also re-judges the statements a session prepared before it: the
/// prepared text is classified again, not trusted from before the reload.
#[tokio::test]
async fn statements_prepared_before_a_reload_are_judged_with_its_new_lists() {
    let db = pg().create_db();
    setup(&db).await;
    pg().direct(&db)
        .await
        .batch_execute(
            "CREATE FUNCTION purge_all() RETURNS bigint LANGUAGE sql AS
             $$ WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d $$",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    let routine = ROUTINE_ONLY;
    std::fs::write(&file, routine).unwrap();
    let p = proxy().rules(std::slice::from_ref(&file)).start().await;
    let c = p.connect(&db).await;
    // Before the reload both are ordinary: a read and a session setting.
    let purge = c.prepare("SELECT purge_all()").await.unwrap();
    let tenant = c
        .prepare("SELECT set_config('app.tenant_id', $1, false)")
        .await
        .unwrap();
    c.query(&tenant, &[&"1"]).await.unwrap();
    c.simple_query("PREPARE sql_purge AS SELECT purge_all()")
        .await
        .unwrap();

    std::fs::write(
        &file,
        format!(
            "{routine}\n[[function]]\nname = \"purge_all\"\ncategory = \"destructive\"\n\
             \n[[setting]]\nname = \"app.tenant_id\"\n"
        ),
    )
    .unwrap();
    let reloaded = eventually(Duration::from_secs(5), || async {
        c.simple_query("SELECT set_config('app.tenant_id', '2', false)")
            .await
            .is_err()
    })
    .await;
    assert!(reloaded, "new rules were not picked up");

    assert_held(&c.query(&purge, &[]).await.unwrap_err());
    assert_held(&c.query(&tenant, &[&"7"]).await.unwrap_err());
    assert_held(&c.simple_query("EXECUTE sql_purge").await.unwrap_err());
    assert_eq!(rows(&db).await, 10, "the prepared DELETE never ran");
    // The session is still usable, and still knows its statements.
    c.simple_query("SELECT 1").await.unwrap();
    p.shutdown().await;
}

/// Large statement texts are classified on the blocking pool (a session
/// thread serves other sessions meanwhile) and judged exactly as small ones:
/// allowed work runs, a held one never reaches the database, through the
/// simple and the extended protocol.
#[tokio::test]
async fn large_statements_are_classified_off_the_session_thread_and_judged_alike() {
    let db = pg().create_db();
    setup(&db).await;
    let (_rules, default) = fast("default.toml");
    let p = proxy()
        .rules(&default)
        .limit("session_threads", "1")
        .start()
        .await;
    let c = p.connect(&db).await;
    let off_thread = || p.running.proxy.metrics.classified_off_thread.get();
    // About 20 KB each, past the 8 KiB threshold.
    let values: String = (100..1100)
        .map(|i| format!("({i}, 'row {i}')"))
        .collect::<Vec<_>>()
        .join(", ");
    c.simple_query(&format!("INSERT INTO t VALUES {values}"))
        .await
        .unwrap();
    assert_eq!(off_thread(), 1);
    assert_eq!(rows(&db).await, 1010);
    let ids: String = (100..4000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM t WHERE id IN ({ids}) AND v <> $1"),
            &[&"x"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    assert_eq!(off_thread(), 2, "the Parse of the extended query");
    // Destructive, with the danger at the end of a long text: held, then
    // refused at the timeout, in both protocols; nothing deleted.
    let padding = format!("/* {} */", "x".repeat(20_000));
    assert_held(
        &c.simple_query(&format!("{padding} DELETE FROM t"))
            .await
            .unwrap_err(),
    );
    assert_held(
        &c.execute(&format!("{padding} DELETE FROM t"), &[])
            .await
            .unwrap_err(),
    );
    assert_eq!(off_thread(), 4);
    assert_eq!(rows(&db).await, 1010);
    // The session is still fine, and small texts stay on the thread.
    c.simple_query("SELECT 1").await.unwrap();
    assert_eq!(off_thread(), 4);
    p.shutdown().await;
}
