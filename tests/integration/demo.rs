//! README's first command, `pg-airlock demo`: a throwaway PostgreSQL with
//! sample data behind the proxy, the default rules, a reviewer token; it
//! must hold a DROP until approved and leave nothing behind when stopped.

use crate::approval::http;
use crate::harness::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn demo_holds_a_drop_until_approved_and_removes_everything_on_stop() {
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let demo = pg_airlock::demo::start(None, &listen, &admin)
        .await
        .expect("demo starts");
    let dir = demo.dir().to_path_buf();
    let admin = demo.running.admin_addr.expect("admin port");

    let (c, conn) = tokio_postgres::connect(&demo.url, tokio_postgres::NoTls)
        .await
        .expect("agent connects with the printed URL");
    tokio::spawn(conn);
    let c = Arc::new(c);
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2000, "sample data loaded; reads pass straight through");

    let q = tokio::spawn({
        let c = c.clone();
        async move { c.batch_execute("DROP TABLE orders").await }
    });
    let found = std::sync::Mutex::new(serde_json::Value::Null);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (s, v) = http(admin, "GET", "/approvals", Some(&demo.token), None).await;
            *found.lock().unwrap() = v["pending"][0].clone();
            s == 200 && !v["pending"][0].is_null()
        })
        .await,
        "the DROP was not held"
    );
    let pending = found.into_inner().unwrap();
    assert_eq!(pending["sql"], "DROP TABLE orders");
    // Statistics were taken at load: the reviewer sees a real size.
    assert!(
        pending["impact"].to_string().contains("about 2000 row(s)"),
        "{pending}"
    );
    let id = pending["id"].as_str().unwrap().to_string();
    let (s, v) = http(
        admin,
        "POST",
        &format!("/approvals/{id}/approve"),
        Some(&demo.token),
        None,
    )
    .await;
    assert_eq!((s, v["result"].as_str()), (200, Some("approved")), "{v}");
    tokio::time::timeout(Duration::from_secs(10), q)
        .await
        .unwrap()
        .unwrap()
        .expect("the approved DROP ran");
    let e = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01", "the table is gone");

    demo.running.proxy.audit.flush().await.unwrap();
    let report = pg_airlock::audit::verify(&[demo.audit_file()]);
    assert!(
        report.ok && report.records > 3,
        "the demo's audit trail verifies"
    );

    drop(c);
    demo.stop().await;
    assert!(!dir.exists(), "{} left behind", dir.display());
}
