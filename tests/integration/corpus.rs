//! The classifier corpus is real SQL: every case marked `pg_valid = true`
//! is run against PostgreSQL, as a non-superuser, in a transaction that is
//! rolled back (or, for cases with their own transaction control, in a
//! throwaway database), so the corpus cannot drift into SQL Postgres would
//! reject.

use crate::harness::*;

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    sql: String,
    #[serde(default)]
    pg_valid: bool,
}

const SCHEMA: &str = r#"
CREATE TABLE users (id serial primary key, name text, email text, "grant" text, created_at timestamptz default now());
CREATE TABLE orders (id serial primary key, user_id int references users(id), amount numeric, status text);
CREATE TABLE delete_log (id serial, note text);
CREATE SCHEMA billing; CREATE TABLE billing.invoices (id serial primary key, total numeric);
CREATE TABLE customer_pii (id serial, ssn text); CREATE TABLE app_secrets (k text, v text);
CREATE FUNCTION my_func(int) RETURNS int LANGUAGE sql AS 'select $1';
"#;

/// Errors that show the statement was understood by the server: it is
/// valid SQL that this non-superuser may not run, or may not run in a
/// transaction block.
const ACCEPTED: &[&str] = &["25001", "25P01", "42501", "2BP01", "55006", "0A000"];

fn own_transaction_control(sql: &str) -> bool {
    let l = sql.to_ascii_lowercase();
    [
        "commit",
        "rollback",
        "begin",
        "start transaction",
        "end",
        "abort",
        "savepoint",
        "release",
        "prepare transaction",
    ]
    .iter()
    .any(|k| l.contains(k))
}

#[tokio::test]
async fn corpus_statements_marked_valid_are_valid_postgres() {
    let text = std::fs::read_to_string(fixture("classify/corpus.toml"))
        .expect("fixtures/classify/corpus.toml");
    let corpus: Corpus = toml::from_str(&text).expect("corpus parses");
    let pg = pg();
    let runner = "corpus_runner";
    let _ = pg.cluster.psql("postgres", &format!("DO $$ BEGIN CREATE ROLE {runner} LOGIN PASSWORD 'x'; EXCEPTION WHEN duplicate_object THEN NULL; END $$"));
    let _ = pg.cluster.psql("postgres", "DO $$ BEGIN CREATE ROLE readonly NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    let template = pg.create_db();
    pg.psql(
        &template,
        &format!(
            "ALTER DATABASE {template} OWNER TO {runner}; ALTER SCHEMA public OWNER TO {runner}"
        ),
    );
    pg.psql(&template, &format!("SET ROLE {runner}; {SCHEMA}"));

    let connect = |db: String| async move {
        let (c, conn) = tokio_postgres::Config::new()
            .host(pg.cluster.socket_dir.to_str().unwrap())
            .port(pg.port)
            .user("corpus_runner")
            .dbname(&db)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect as corpus_runner");
        tokio::spawn(conn);
        c
    };
    let work = format!("{template}_work");
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE {work} TEMPLATE {template} OWNER {runner}"),
    );
    let shared = connect(work).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in corpus.case.iter().filter(|c| c.pg_valid) {
        checked += 1;
        let result = if own_transaction_control(&case.sql) {
            let db = format!("{template}_c{checked}");
            pg.psql(
                "postgres",
                &format!("CREATE DATABASE {db} TEMPLATE {template} OWNER {runner}"),
            );
            let c = connect(db.clone()).await;
            let r = c.simple_query(&case.sql).await.map(|_| ());
            drop(c);
            pg.psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
            r
        } else {
            shared.batch_execute("BEGIN").await.unwrap();
            let r = shared.simple_query(&case.sql).await.map(|_| ());
            shared.batch_execute("ROLLBACK").await.unwrap();
            r
        };
        if let Err(e) = result {
            let code = code(&e);
            if !ACCEPTED.contains(&code.as_str()) {
                failures.push(format!(
                    "{:?}: {} ({code})",
                    case.sql,
                    e.as_db_error().map(|d| d.message()).unwrap_or("?")
                ));
            }
        }
    }
    assert!(
        checked >= 200,
        "only {checked} corpus cases are marked pg_valid"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} pg_valid corpus cases are not valid PostgreSQL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
