//! The relay is transparent: every protocol feature a real client uses
//! works through pg-airlock as it does directly.

use crate::harness::*;
use futures::{StreamExt, future::join_all};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn simple_and_extended_queries_and_transactions_work() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let c = p.connect(&db).await;
    c.batch_execute(
        "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')",
    )
    .await
    .unwrap();
    let rows = c
        .query("SELECT id, v FROM t WHERE id > $1 ORDER BY id", &[&0i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].get::<_, &str>(1), "b");

    // An error leaves the session usable, in and out of transactions.
    let e = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(code(&e), "42601");
    c.batch_execute("BEGIN").await.unwrap();
    c.execute("INSERT INTO t VALUES (3, 'c')", &[])
        .await
        .unwrap();
    assert_eq!(
        code(
            &c.execute("INSERT INTO t VALUES (3, 'dup')", &[])
                .await
                .unwrap_err()
        ),
        "23505"
    );
    assert_eq!(code(&c.query("SELECT 1", &[]).await.unwrap_err()), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    p.shutdown().await;
}

#[tokio::test]
async fn pipelined_extended_queries_keep_order() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let c = p.connect(&db).await;
    let stmt = c
        .prepare("SELECT $1::int * 2, pg_backend_pid()")
        .await
        .unwrap();
    // tokio-postgres pipelines concurrent requests on one connection:
    // hundreds of Bind/Execute/Sync batches are in flight at once.
    let futs = (0..500).map(|i| {
        let c = &c;
        let stmt = &stmt;
        async move { c.query_one(stmt, &[&i]).await.unwrap().get::<_, i32>(0) }
    });
    let got = join_all(futs).await;
    assert_eq!(got, (0..500).map(|i| i * 2).collect::<Vec<_>>());
    // The Parse/Describe/Sync of `prepare` executes nothing: counted in
    // neither total (they used to disagree by one per prepare).
    let m = &p.running.proxy.metrics;
    assert_eq!(m.statements_total.get(), 500);
    assert_eq!(m.statements_allowed.get(), 500);
    p.shutdown().await;
}

#[tokio::test]
async fn binary_and_text_values_survive_byte_for_byte() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let c = p.connect(&db).await;
    c.batch_execute("CREATE TABLE b (id int, data bytea, t text)")
        .await
        .unwrap();
    let all: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let text = "naïve ☃ 𝄞 \u{7f} tab\tnewline\n 'quote' \"dq\" \\backslash";
    c.execute("INSERT INTO b VALUES (1, $1, $2)", &[&all, &text])
        .await
        .unwrap();
    // Binary result format (tokio-postgres default for typed queries).
    let row = c
        .query_one("SELECT data, t FROM b WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), all);
    assert_eq!(row.get::<_, &str>(1), text);
    // Text result format through the simple protocol: bytea hex output.
    let msgs: Vec<_> = c
        .simple_query("SELECT encode(sha256(data), 'hex'), t FROM b")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .collect();
    let direct = pg().direct(&db).await;
    let want: String = direct
        .query_one("SELECT encode(sha256(data), 'hex') FROM b", &[])
        .await
        .unwrap()
        .get(0);
    match &msgs[0] {
        tokio_postgres::SimpleQueryMessage::Row(r) => {
            assert_eq!(r.get(0), Some(want.as_str()));
            assert_eq!(r.get(1), Some(text));
        }
        other => panic!("expected a row, got {other:?}"),
    }
    p.shutdown().await;
}

#[tokio::test]
async fn copy_in_and_out_work() {
    use bytes::Bytes;
    use futures::SinkExt;
    let db = pg().create_db();
    let p = proxy().start().await;
    let c = p.connect(&db).await;
    c.batch_execute("CREATE TABLE c (id int, v text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!("{i}\tvalue {i}\n"));
    }
    for chunk in data.as_bytes().chunks(7919) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 20_000);

    let out = c
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.map(|r| r.unwrap()).collect().await;
    let got: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(got).unwrap(), data);
    // A failed COPY leaves the session usable. (tokio-postgres's copy_in
    // itself cannot continue after a failed COPY, even directly, so use
    // the simple protocol here.)
    let e = c.simple_query("COPY nope FROM STDIN").await.unwrap_err();
    assert_eq!(code(&e), "42P01");
    assert_eq!(
        c.query_one("SELECT count(*) FROM c", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        20_000
    );
    p.shutdown().await;
}

#[tokio::test]
async fn notices_notifications_and_parameter_status_are_relayed() {
    use tokio_postgres::AsyncMessage;
    let db = pg().create_db();
    let p = proxy().start().await;
    let (c, mut conn) = p
        .config(AGENT, AGENT_PASSWORD, &db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            let _ = tx.send(m);
        }
    });
    c.batch_execute("LISTEN airlock_chan").await.unwrap();
    let other = p.connect(&db).await;
    other
        .batch_execute("NOTIFY airlock_chan, 'hello there'")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match m {
        AsyncMessage::Notification(n) => {
            assert_eq!(n.channel(), "airlock_chan");
            assert_eq!(n.payload(), "hello there");
        }
        other => panic!("expected a notification, got {other:?}"),
    }
    // A notice raised by the server (a CHECK on a missing object is a notice).
    c.batch_execute("DROP TABLE IF EXISTS surely_missing")
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(m, AsyncMessage::Notice(ref n) if n.message().contains("does not exist")),
        "{m:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn upstream_session_is_tagged_with_the_agent() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let mut cfg = p.config(AGENT, AGENT_PASSWORD, &db);
    cfg.application_name("nightly-job");
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let name: String = c
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "airlock:billing-bot:nightly-job");
    let pinned: String = c
        .query_one("SELECT current_setting('standard_conforming_strings')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pinned, "on");
    p.shutdown().await;
}

#[tokio::test]
async fn wrong_password_unknown_agent_and_forbidden_database_are_refused() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let e = p.try_connect(AGENT, "wrong", &db).await.unwrap_err();
    assert_eq!(code(&e), "28P01");
    let e2 = p.try_connect("nobody", "whatever", &db).await.unwrap_err();
    assert_eq!(code(&e2), "28P01");
    // Same message shape for both: no agent enumeration.
    let strip =
        |e: &tokio_postgres::Error, who: &str| e.as_db_error().unwrap().message().replace(who, "X");
    assert_eq!(strip(&e, AGENT), strip(&e2, "nobody"));
    let e = p
        .try_connect(OTHER_AGENT, OTHER_PASSWORD, &db)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "28000");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("not allowed to connect to database")
    );
    // A database that does not exist: the server's own answer.
    let e = p
        .try_connect(AGENT, AGENT_PASSWORD, "no_such_db")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "3D000");
    assert_eq!(p.running.proxy.metrics.logins_refused.get(), 3);
    p.shutdown().await;
}

#[tokio::test]
async fn dangerous_startup_parameters_are_refused() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let mut cfg = p.config(AGENT, AGENT_PASSWORD, &db);
    cfg.options("-c role=postgres");
    let e = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("role via options must be refused");
    assert_eq!(code(&e), "22023");
    let mut cfg = p.config(AGENT, AGENT_PASSWORD, &db);
    cfg.options("-c session_authorization=postgres");
    assert_eq!(
        code(&cfg.connect(tokio_postgres::NoTls).await.err().unwrap()),
        "22023"
    );
    // Harmless settings pass through.
    let mut cfg = p.config(AGENT, AGENT_PASSWORD, &db);
    cfg.options("-c statement_timeout=1234");
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let v: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "1234ms");
    p.shutdown().await;
}

#[tokio::test]
async fn cancel_reaches_the_right_query_and_forged_keys_do_nothing() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let c = p.connect(&db).await;
    let token = c.cancel_token();
    let bystander = p.connect(&db).await;
    let slow = tokio::spawn(async move {
        let r = bystander.query("SELECT pg_sleep(1.5)", &[]).await;
        r.map(|_| ())
    });
    let q = tokio::spawn(async move { c.query("SELECT pg_sleep(30)", &[]).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Forged: right pid, wrong secret (raw CancelRequest).
    let mut forged = 0;
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
        let mut msg = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
        msg.extend_from_slice(&rand_pid().to_be_bytes());
        msg.extend_from_slice(&12345i32.to_be_bytes());
        s.write_all(&msg).await.unwrap();
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf).await;
        forged += 1;
    }
    assert_eq!(forged, 3);
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&e), "57014");
    // The other session's query was not cancelled by anything above.
    tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .unwrap()
        .unwrap()
        .expect("bystander query completes");
    assert_eq!(p.running.proxy.metrics.cancels_rejected.get(), 3);
    p.shutdown().await;
}

fn rand_pid() -> i32 {
    (std::process::id() as i32) ^ 0x5a5a
}

#[tokio::test]
async fn two_hundred_concurrent_sessions() {
    let db = pg().create_db();
    let p = proxy().start().await;
    let setup = p.connect(&db).await;
    setup
        .batch_execute("CREATE TABLE hits (session int, n int)")
        .await
        .unwrap();
    let futs = (0..200).map(|i| {
        let p = &p;
        let db = &db;
        async move {
            let c = p.connect(db).await;
            for n in 0..5 {
                c.execute("INSERT INTO hits VALUES ($1, $2)", &[&i, &n])
                    .await
                    .unwrap();
            }
            c.query_one("SELECT count(*) FROM hits WHERE session = $1", &[&i])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    });
    let counts = join_all(futs).await;
    assert!(counts.iter().all(|&n| n == 5));
    let total: i64 = setup
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1000);
    p.shutdown().await;
}

#[tokio::test]
async fn upstream_down_gives_a_clean_error_quickly() {
    let dead = free_port();
    let p = proxy().upstream_port(dead).start().await;
    let start = std::time::Instant::now();
    let e = p
        .try_connect(AGENT, AGENT_PASSWORD, "postgres")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "57P03");
    assert!(start.elapsed() < Duration::from_secs(5));
    p.shutdown().await;
}
