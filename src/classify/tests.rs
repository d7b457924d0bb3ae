//! Table tests over `fixtures/classify/corpus.toml`, robustness tests
//! (no panic on any prefix or random input) and fail-closed tests.

use super::*;
use serde::Deserialize;

const CORPUS: &str = include_str!("../../fixtures/classify/corpus.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorpus {
    case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    sql: String,
    category: String,
    pg_valid: bool,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    functions: Vec<String>,
}

fn corpus() -> Vec<RawCase> {
    let raw: RawCorpus = toml::from_str(CORPUS).expect("fixtures/classify/corpus.toml must parse");
    raw.case
}

fn short(sql: &str) -> String {
    let s: String = sql.chars().take(120).collect();
    if s.len() < sql.len() {
        format!("{s}... ({} bytes)", sql.len())
    } else {
        s
    }
}

fn cat(sql: &str) -> Category {
    classify(sql, &Options::default()).category()
}

#[test]
fn corpus_cases_classify_as_expected() {
    let cases = corpus();
    let opts = Options::default();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let Some(expected) = Category::parse(&case.category) else {
            failures.push(format!(
                "case #{i} {:?}: unknown category {:?}",
                short(&case.sql),
                case.category
            ));
            continue;
        };
        let class = classify(&case.sql, &opts);
        let got = class.category();
        let tables: Vec<&String> = class.effects().flat_map(|e| e.tables.iter()).collect();
        let functions: Vec<&String> = class.effects().flat_map(|e| e.functions.iter()).collect();
        let mut problems = Vec::new();
        if got != expected {
            problems.push(format!("category {got}, expected {expected}"));
        }
        for t in &case.tables {
            if !tables.contains(&t) {
                problems.push(format!("table {t:?} missing (got {tables:?})"));
            }
        }
        for f in &case.functions {
            if !functions.contains(&f) {
                problems.push(format!("function {f:?} missing (got {functions:?})"));
            }
        }
        if !problems.is_empty() {
            let whys: Vec<String> = class
                .effects()
                .map(|e| format!("{}: {}", e.category, e.why))
                .collect();
            failures.push(format!(
                "case #{i} {:?}: {}\n      effects: {whys:?}",
                short(&case.sql),
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases mismatch:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn corpus_is_large_and_covers_every_category() {
    let cases = corpus();
    assert!(cases.len() >= 400, "corpus has only {} cases", cases.len());
    for c in Category::ALL {
        let n = cases.iter().filter(|x| x.category == c.as_str()).count();
        assert!(n >= 5, "category {c} has only {n} corpus cases");
    }
    let valid = cases.iter().filter(|c| c.pg_valid).count();
    assert!(
        valid * 2 > cases.len(),
        "most cases should be valid Postgres ({valid} are)"
    );
}

/// Prefixes at every char boundary (a sample for long cases) exercise the
/// tokenizer's and parser's error paths: nothing may panic, and a prefix is
/// deterministic.
#[test]
fn no_panic_on_any_prefix_of_any_corpus_case() {
    let opts = Options::default();
    let mut checked = 0usize;
    for case in corpus() {
        let sql = case.sql.as_str();
        let bounds: Vec<usize> = (0..=sql.len())
            .filter(|&i| sql.is_char_boundary(i))
            .collect();
        let step = (bounds.len() / 300).max(1);
        for &end in bounds.iter().step_by(step) {
            let prefix = &sql[..end];
            let a = classify(prefix, &opts);
            for s in &a.statements {
                assert!(
                    s.span.0 <= s.span.1 && s.span.1 <= prefix.len(),
                    "span {:?} outside {prefix:?}",
                    s.span
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} prefixes checked");
}

/// Deterministic pseudo-random input: SQL fragments, quotes, comment
/// markers and arbitrary characters glued together.
#[test]
fn no_panic_on_random_input() {
    const PIECES: &[&str] = &[
        "SELECT",
        "DELETE",
        "FROM",
        "WHERE",
        "users",
        "(",
        ")",
        ";",
        "'",
        "\"",
        "$$",
        "$a$",
        "--",
        "/*",
        "*/",
        "U&\"",
        "\\",
        "1",
        "=",
        "OR",
        "true",
        " ",
        "\n",
        "\r",
        "E'",
        "::",
        "[",
        "]",
        ",",
        ".",
        "EXPLAIN",
        "ANALYZE",
        "(ANALYZE)",
        "WITH",
        "AS",
        "PREPARE",
        "EXECUTE",
        "SET",
        "ROLE",
        "TO",
        "GRANT",
        "DO",
        "pg_read_file",
        "LATERAL",
        "UESCAPE",
        "\u{a0}",
        "é",
        "\0",
        "+",
        "-",
        "*",
        "TABLE",
        "COPY",
        "MERGE",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let opts = Options::default();
    for _ in 0..4000 {
        let len = (next() % 40) as usize;
        let mut sql = String::new();
        for _ in 0..len {
            let r = next();
            if r % 7 == 0 {
                sql.push(char::from_u32((r >> 8) as u32 % 0x3000).unwrap_or('?'));
            } else {
                sql.push_str(PIECES[(r >> 8) as usize % PIECES.len()]);
            }
        }
        let a = classify(&sql, &opts);
        let b = classify(&sql, &opts);
        assert_eq!(a, b, "classification of {sql:?} is not deterministic");
    }
}

#[test]
fn parse_errors_are_unknown_never_pass() {
    for sql in [
        "SELEC 1",
        "DELETE users",
        "SELECT 'unterminated",
        "SELECT * FROM users WHERE",
        "COPY",
    ] {
        assert_eq!(cat(sql), Category::Unknown, "{sql}");
    }
    let c = classify("SELEC 1", &Options::default());
    assert!(
        c.statements[0].effects[0].why.contains("could not parse"),
        "{:?}",
        c
    );
}

#[test]
fn one_bad_part_makes_the_message_unknown_but_keeps_the_others() {
    let c = classify(
        "SELECT 1; NOT SQL AT ALL; DELETE FROM users WHERE id = 1",
        &Options::default(),
    );
    assert_eq!(c.category(), Category::Unknown);
    let cats: Vec<Category> = c.statements.iter().map(StatementClass::category).collect();
    assert_eq!(cats, [Category::Read, Category::Unknown, Category::Write]);
}

#[test]
fn over_long_messages_are_unknown_without_parsing() {
    let opts = Options {
        max_len: 16,
        ..Options::default()
    };
    let c = classify("SELECT 1 FROM users", &opts);
    assert_eq!(c.category(), Category::Unknown);
    assert!(c.statements[0].effects[0].why.contains("limit"));
    assert_eq!(classify("SELECT 1", &opts).category(), Category::Read);
}

#[test]
fn unhandled_statement_kinds_are_unknown() {
    for sql in [
        "SHOW TABLES",
        "USE db",
        "DESCRIBE users",
        "KILL 1",
        "CACHE TABLE users",
    ] {
        assert_eq!(cat(sql), Category::Unknown, "{sql}");
    }
}

#[test]
fn recursion_limit_is_unknown() {
    let sql = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(cat(&sql), Category::Unknown);
}

/// The operator limit exists to keep the walk inside a 2 MiB stack (tokio's
/// default for worker threads): the worst case just under the limit must
/// classify there, just over it must be refused without a walk.
#[test]
fn operator_chains_stay_within_a_small_stack() {
    let n = lex::MAX_OPERATORS;
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let under = format!(
                "DELETE FROM users WHERE id = 1{}",
                " OR id = 1".repeat(n / 2 - 2)
            );
            let cast = format!("SELECT 1{}", "::int".repeat(n - 1));
            let over = format!("SELECT 1{}", "+1".repeat(n + 1));
            let opts = Options::default();
            (
                classify(&under, &opts).category(),
                classify(&cast, &opts).category(),
                classify(&over, &opts).category(),
            )
        })
        .unwrap();
    let (under, cast, over) = handle
        .join()
        .expect("classification overflowed a 2 MiB stack");
    assert_eq!(under, Category::Write);
    assert_eq!(cast, Category::Read);
    assert_eq!(over, Category::Unknown);
}

#[test]
fn spans_point_into_the_message() {
    let sql = "SELECT 'é';  /* x */ DELETE FROM users ; -- end";
    let c = classify(sql, &Options::default());
    let texts: Vec<&str> = c
        .statements
        .iter()
        .map(|s| &sql[s.span.0..s.span.1])
        .collect();
    assert_eq!(texts, ["SELECT 'é'", "DELETE FROM users"]);
}

#[test]
fn prepared_statement_ops_are_reported() {
    let opts = Options::default();
    let c = classify("PREPARE Q1(int) AS DELETE FROM users WHERE id = $1", &opts);
    assert_eq!(
        c.statements[0].prepared,
        Some(PreparedOp::Prepare { name: "q1".into() })
    );
    assert_eq!(c.category(), Category::Write);

    let c = classify("EXECUTE q1(5)", &opts);
    assert_eq!(
        c.statements[0].prepared,
        Some(PreparedOp::Execute { name: "q1".into() })
    );
    assert!(
        c.statements[0].effects.is_empty(),
        "the session substitutes EXECUTE's effects"
    );
    assert_eq!(
        c.category(),
        Category::Unknown,
        "unresolved EXECUTE fails closed"
    );

    let c = classify("EXECUTE q1(pg_read_file('x'))", &opts);
    assert!(
        c.effects().any(|e| e.category == Category::Export),
        "parameters are still classified"
    );

    let c = classify("DEALLOCATE q1", &opts);
    assert_eq!(
        c.statements[0].prepared,
        Some(PreparedOp::Deallocate { name: "q1".into() })
    );
    for sql in ["DEALLOCATE ALL", "DEALLOCATE PREPARE ALL", "DISCARD ALL"] {
        let c = classify(sql, &opts);
        assert_eq!(
            c.statements[0].prepared,
            Some(PreparedOp::DeallocateAll),
            "{sql}"
        );
    }
    let c = classify("DEALLOCATE \"ALL\"", &opts);
    assert_eq!(
        c.statements[0].prepared,
        Some(PreparedOp::Deallocate { name: "ALL".into() })
    );

    let c = classify("EXPLAIN ANALYZE EXECUTE q1(1)", &opts);
    assert_eq!(
        c.statements[0].prepared,
        Some(PreparedOp::Execute { name: "q1".into() })
    );
    let c = classify("EXPLAIN EXECUTE q1(1)", &opts);
    assert_eq!(c.statements[0].prepared, None);
    assert_eq!(c.category(), Category::Read);
}

#[test]
fn extra_functions_raise_the_category() {
    let opts = Options {
        extra_functions: vec![
            ("billing.charge".into(), Category::Write),
            ("wipe".into(), Category::Destructive),
            ("pg_read_file".into(), Category::Read),
        ],
        ..Options::default()
    };
    assert_eq!(
        classify("SELECT billing.charge(1)", &opts).category(),
        Category::Write
    );
    assert_eq!(
        classify("SELECT charge(1)", &opts).category(),
        Category::Write
    );
    assert_eq!(
        classify("SELECT other.charge(1)", &opts).category(),
        Category::Read
    );
    assert_eq!(
        classify("SELECT * FROM x.wipe()", &opts).category(),
        Category::Destructive
    );
    assert_eq!(
        classify("SELECT pg_read_file('a')", &opts).category(),
        Category::Read,
        "extras override built-ins"
    );
    assert_eq!(
        classify("SELECT wipe()", &Options::default()).category(),
        Category::Read
    );
}

#[test]
fn unknown_functions_are_read_but_listed() {
    let c = classify(
        "SELECT * FROM users, LATERAL Audit.Fetch_All(users.id) f WHERE my_func(id) > 0",
        &Options::default(),
    );
    assert_eq!(c.category(), Category::Read);
    let functions: Vec<&String> = c.effects().flat_map(|e| &e.functions).collect();
    assert!(
        functions.contains(&&"audit.fetch_all".to_string()),
        "{functions:?}"
    );
    assert!(functions.contains(&&"my_func".to_string()), "{functions:?}");
    let tables: Vec<&String> = c.effects().flat_map(|e| &e.tables).collect();
    assert!(
        !tables.iter().any(|t| t.contains("fetch_all")),
        "a function in FROM is not a table: {tables:?}"
    );
}

#[test]
fn normalize_function_name_matches_postgres_folding() {
    assert_eq!(normalize_function_name("PG_READ_FILE"), "pg_read_file");
    assert_eq!(
        normalize_function_name(" pg_catalog . Pg_Read_File "),
        "pg_catalog.pg_read_file"
    );
    assert_eq!(normalize_function_name("\"MyFunc\""), "MyFunc");
    assert_eq!(normalize_function_name("\"my.schema\".f"), "my.schema.f");
    assert_eq!(normalize_function_name("U&\"\\0070g_ls_dir\""), "pg_ls_dir");
    assert_eq!(normalize_function_name("not a name"), "not a name");
    let long = "a".repeat(70);
    assert_eq!(
        normalize_function_name(&long).len(),
        63,
        "identifiers truncate to 63 bytes"
    );
}

#[test]
fn reasons_come_from_comments_only() {
    assert_eq!(
        extract_reason("/* reason: nightly cleanup */ DELETE FROM t").as_deref(),
        Some("nightly cleanup")
    );
    assert_eq!(
        extract_reason("DELETE FROM t -- Reason:  ticket 42\n").as_deref(),
        Some("ticket 42")
    );
    assert_eq!(
        extract_reason("/* REASON: multi\n   line */ SELECT 1").as_deref(),
        Some("multi line")
    );
    assert_eq!(
        extract_reason("/** reason: doc style */ SELECT 1").as_deref(),
        Some("doc style")
    );
    assert_eq!(extract_reason("SELECT '/* reason: fake */'"), None);
    assert_eq!(extract_reason("SELECT 1 -- no reason here"), None);
    assert_eq!(extract_reason("/* reason: */ SELECT 1"), None);
    assert_eq!(
        extract_reason(&format!("-- reason: {}", "x".repeat(2000))).map(|r| r.len()),
        Some(500)
    );
}

#[test]
fn classifier_caches_by_text() {
    let classifier = Classifier::new(Options::default(), 1 << 20);
    // Cached on the second sighting, so the third lookup is a hit (this
    // thread's own copy of the cached classification, kept from then on).
    let first = classifier.classify("DELETE FROM users");
    let a = classifier.classify("DELETE FROM users");
    assert!(!Arc::ptr_eq(&first, &a), "a text seen once is not cached");
    let b = classifier.classify("DELETE FROM users");
    assert_eq!(*a, *b);
    let b2 = classifier.classify("DELETE FROM users");
    assert!(
        Arc::ptr_eq(&b, &b2),
        "lookups from the third on must be cache hits"
    );
    assert_eq!(a.category(), Category::Destructive);
    let c = classifier.classify("DELETE FROM users WHERE id = 1");
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.category(), Category::Write);

    let small = Classifier::new(
        Options {
            max_len: 8,
            ..Options::default()
        },
        1 << 20,
    );
    let _ = small.classify("SELECT 1 FROM users");
    let x = small.classify("SELECT 1 FROM users");
    let y = small.classify("SELECT 1 FROM users");
    assert_eq!(x.category(), Category::Unknown);
    assert!(!Arc::ptr_eq(&x, &y), "over-long texts are not cached");
}

fn shape_entry(c: &Classifier, sql: &str) -> Option<&'static str> {
    let mut key = String::new();
    shape::scan(sql, &mut key, None)?;
    c.cache.get(key.as_str()).map(|e| match e {
        Entry::Shape(..) => "shape",
        Entry::Varies => "varies",
        Entry::Text(_) => "text",
    })
}

#[test]
fn a_cached_shape_hands_out_the_texts_redaction() {
    let c = Classifier::new(Options::default(), 1 << 20);
    let q = |v: &str| format!("  UPDATE t SET note = {v}, n = 12 WHERE id = 7 ;\n");
    // Not cached yet: no redaction to hand out (the trail scans itself).
    assert_eq!(c.classify_redacting(&q("'a'")).1, None);
    assert_eq!(c.classify_redacting(&q("'b'")).1, None);
    for v in ["'it''s'", "'ünï'", "''"] {
        let (class, redacted) = c.classify_redacting(&q(v));
        assert_eq!(*class, classify(&q(v), &Options::default()));
        assert_eq!(
            redacted.as_deref(),
            Some(crate::audit::redact(&q(v)).as_str()),
            "{v}"
        );
    }
    assert_eq!(
        c.classify_redacting(&q("'x'")).1.as_deref(),
        Some("  UPDATE t SET note = ?, n = ? WHERE id = ? ;\n")
    );
    // A text that is its own shape (no literals) carries none.
    let p = "SELECT * FROM t WHERE id = $1";
    for _ in 0..3 {
        assert_eq!(c.classify_redacting(p).1, None);
    }
}

#[test]
fn classifier_shares_a_classification_across_literal_values() {
    let c = Classifier::new(Options::default(), 1 << 20);
    let q = |aid: &str| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
    let _ = c.classify(&q("1"));
    let _ = c.classify(&q("2"));
    assert_eq!(
        shape_entry(&c, &q("3")),
        Some("shape"),
        "second sighting of the shape caches it"
    );
    let hit = c.classify(&q("123456"));
    assert_eq!(
        *hit,
        classify(&q("123456"), &Options::default()),
        "span follows this text"
    );
    assert_eq!(hit.statements[0].span, (0, q("123456").len() - 1));
    let long = "SELECT * FROM users WHERE name = 'it''s' AND id IN (1, 2, 3) LIMIT 10";
    let _ = c.classify(long);
    let _ = c.classify(long);
    let other = c.classify("SELECT * FROM users WHERE name = 'x' AND id IN (7, 8, 9) LIMIT 5000");
    assert_eq!(shape_entry(&c, long), Some("shape"));
    assert_eq!(other.category(), Category::Read);
    // Restricted writes too: `aid = 5` is compared with literals masked.
    let u = |d: &str, aid: &str| {
        format!("UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {aid};")
    };
    let _ = c.classify(&u("-12", "5"));
    let _ = c.classify(&u("-4000", "77"));
    assert_eq!(shape_entry(&c, &u("-1", "1")), Some("shape"));
    assert_eq!(c.classify(&u("1", "1")).category(), Category::Write);
}

#[test]
fn a_literal_never_matches_an_identifier_that_prints_alike() {
    // Column "5" compared with 5 restricts the rows; it is no tautology.
    let c = classify(r#"DELETE FROM users WHERE "5" = 5"#, &Options::default());
    assert_eq!(c.category(), Category::Write);
    let c = classify(
        "DELETE FROM users WHERE id + 1 = id + 2",
        &Options::default(),
    );
    assert_eq!(
        c.category(),
        Category::Destructive,
        "same shape both sides: counted as unrestricted"
    );
}

#[test]
fn literal_dependent_classifications_are_not_shared() {
    // Each pair: the first text, seen twice, must not decide the second.
    let pairs = [
        (
            "SELECT set_config('search_path', 'x', false)",
            "SELECT set_config('role', 'x', false)",
        ),
        (
            "DELETE FROM users WHERE name LIKE 'a%'",
            "DELETE FROM users WHERE name LIKE '%'",
        ),
        (
            "EXPLAIN (ANALYZE 0) DELETE FROM users",
            "EXPLAIN (ANALYZE 1) DELETE FROM users",
        ),
    ];
    for (seen, probe) in pairs {
        let c = Classifier::new(Options::default(), 1 << 20);
        let _ = c.classify(seen);
        let _ = c.classify(seen);
        assert_eq!(shape_entry(&c, seen), Some("varies"), "{seen}");
        assert_eq!(
            *c.classify(probe),
            classify(probe, &Options::default()),
            "{probe}"
        );
    }
    // A literal the walk never looks at is shared safely: `1 = 2` restricts
    // nothing either (no target column), so the answer is the same.
    let c = Classifier::new(Options::default(), 1 << 20);
    let _ = c.classify("DELETE FROM users WHERE 1 = 2");
    let _ = c.classify("DELETE FROM users WHERE 1 = 2");
    let probe = "DELETE FROM users WHERE 1 = 1";
    assert_eq!(*c.classify(probe), classify(probe, &Options::default()));
    assert_eq!(c.classify(probe).category(), Category::Destructive);
}

/// The cache's one promise: a cached answer equals a fresh one. Every
/// corpus text is seen twice (so its shape is cached if it may be), then
/// variants with other literal values, chosen to hit every literal-value
/// check the walk makes, must classify exactly as without the cache.
#[test]
fn shape_cache_never_changes_a_classification() {
    let strings = [
        "'%'",
        "'role'",
        "'session_authorization'",
        "'off'",
        "'0'",
        "'false'",
        "'OWNER TO'",
        "''",
        "'x''y'",
        "'a'",
    ];
    let ints = ["0", "1", "999999999", "7"];
    let decimals = ["0.0", "1.5"];
    let opts = Options::default();
    let c = Classifier::new(opts.clone(), 64 << 20);
    let (mut checked, mut shaped) = (0, 0);
    for case in corpus() {
        let mut key = String::new();
        let mut lits = Vec::new();
        // Long generated texts add time, not coverage.
        if case.sql.len() > 2000
            || shape::scan(&case.sql, &mut key, Some(&mut lits)).is_none()
            || lits.is_empty()
        {
            continue;
        }
        let _ = c.classify(&case.sql);
        let _ = c.classify(&case.sql);
        shaped += usize::from(shape_entry(&c, &case.sql) == Some("shape"));
        let pick = |kind: shape::LitKind, n: usize| match kind {
            shape::LitKind::Str => strings[n % strings.len()],
            shape::LitKind::Int => ints[n % ints.len()],
            shape::LitKind::Decimal => decimals[n % decimals.len()],
        };
        let variant = |choose: &dyn Fn(usize, shape::LitKind) -> Option<&'static str>| {
            let mut out = String::new();
            let mut at = 0;
            for (i, l) in lits.iter().enumerate() {
                out.push_str(&case.sql[at..l.start]);
                match choose(i, l.kind) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&case.sql[l.start..l.end]),
                }
                at = l.end;
            }
            out.push_str(&case.sql[at..]);
            out
        };
        let mut variants: Vec<String> = (0..strings.len())
            .map(|n| variant(&|_, kind| Some(pick(kind, n))))
            .collect();
        for i in 0..lits.len().min(4) {
            for n in 0..strings.len() {
                variants.push(variant(&|j, kind| (j == i).then(|| pick(kind, n))));
            }
        }
        for v in variants {
            let fresh = classify(&v, &opts);
            assert_eq!(
                *c.classify(&v),
                fresh,
                "cached answer differs for {v:?} (seen: {:?})",
                case.sql
            );
            checked += 1;
        }
    }
    eprintln!("shape cache: {checked} variants checked, {shaped} corpus shapes cacheable");
    assert!(checked > 1000, "only {checked} variants checked");
    assert!(shaped > 50, "only {shaped} corpus shapes were cacheable");
}

#[test]
fn cte_names_shadow_tables_only_where_visible() {
    let tables = |sql: &str| -> Vec<String> {
        classify(sql, &Options::default())
            .effects()
            .flat_map(|e| e.tables.clone())
            .collect()
    };
    assert!(tables("WITH customer_pii AS (SELECT 1) SELECT * FROM customer_pii").is_empty());
    assert_eq!(
        tables("WITH a AS (SELECT * FROM customer_pii), customer_pii AS (SELECT 1) SELECT 1"),
        ["customer_pii"]
    );
    assert_eq!(
        tables(
            "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r, app_secrets"
        ),
        ["app_secrets"]
    );
}

#[test]
fn a_thread_front_never_answers_for_another_classifier() {
    // Same texts, two classifiers that judge a function differently (as
    // after a rule reload that names it): each answers with its own view,
    // however warm this thread's front is for the other.
    let plain = Classifier::new(Options::default(), 1 << 20);
    let opts = Options {
        extra_functions: vec![("audit_purge".into(), Category::Destructive)],
        ..Options::default()
    };
    let named = Classifier::new(opts, 1 << 20);
    let q = |n: u32| format!("SELECT audit_purge({n})");
    for round in 0..3 {
        for n in 0..4 {
            assert_eq!(
                plain.classify(&q(n)).category(),
                Category::Read,
                "round {round}, plain"
            );
            assert_eq!(
                named.classify(&q(n)).category(),
                Category::Destructive,
                "round {round}, named"
            );
            assert_eq!(plain.classify("BEGIN").category(), Category::Transaction);
        }
    }
    // And the front agrees with the shared cache it fronts.
    let hit = named.classify(&q(99));
    assert_eq!(*hit, classify(&q(99), named.options()));
}

/// A rule-file function called in attribute notation (`t.f` is `f(t)`
/// when `t` has no column `f`) is the call it is; columns named like a
/// built-in function are not calls.
#[test]
fn rule_file_functions_are_seen_in_attribute_notation() {
    let opts = Options {
        extra_functions: vec![("app.purge".into(), Category::Destructive)],
        ..Options::default()
    };
    for sql in [
        "SELECT t.purge FROM t",
        "SELECT (t).purge FROM t",
        "SELECT x.t.purge FROM x.t",
        "SELECT count(*) FROM t WHERE t.purge > 0",
    ] {
        assert_eq!(
            classify(sql, &opts).category(),
            Category::Destructive,
            "{sql}"
        );
    }
    for sql in [
        "SELECT j.schedule, j.http FROM jobs j",
        "SELECT purge FROM t",
    ] {
        assert_eq!(classify(sql, &opts).category(), Category::Read, "{sql}");
    }
}

/// A setting the rule files name (`[[setting]]`) is a privilege change
/// however it is changed; other custom settings stay `session`.
#[test]
fn rule_file_settings_are_privileged_however_they_are_set() {
    let opts = Options {
        privileged_settings: vec!["app.tenant_id".into()],
        ..Options::default()
    };
    for sql in [
        "SET app.tenant_id = '5'",
        "SET LOCAL App.Tenant_Id TO 5",
        "SET \"app\".\"tenant_id\" = '5'",
        "RESET app.tenant_id",
        "SELECT set_config('app.tenant_id', '5', false)",
        "SELECT set_config('APP.TENANT_ID', '5', true)",
    ] {
        assert_eq!(
            classify(sql, &opts).category(),
            Category::Privilege,
            "{sql}"
        );
        assert!(
            classify(sql, &Options::default()).category() < Category::Privilege,
            "{sql} without the rule file"
        );
    }
    assert_eq!(
        classify("SET app.other = '5'", &opts).category(),
        Category::Session
    );
}

/// CTEs are followed by name through a walk of the whole statement: a
/// chain or a fan-out of CTEs naming each other stays bounded (`restrict`'s
/// depth and lookup budget) and, past the bound, counts as reading the
/// target, never as restricting.
#[test]
fn cte_chains_are_followed_within_a_budget_and_fail_closed_past_it() {
    let chain = |n: usize, body: &dyn Fn(usize) -> String| {
        let ctes: Vec<String> = (1..=n).map(|i| format!("c{i} AS ({})", body(i))).collect();
        format!(
            "WITH c0 AS (SELECT id FROM users), {} DELETE FROM users WHERE id IN (SELECT id FROM c{n})",
            ctes.join(", ")
        )
    };
    let linear = |i: usize| format!("SELECT id FROM c{}", i - 1);
    let fan = |i: usize| {
        format!(
            "SELECT id FROM c{} UNION SELECT id FROM c{}",
            i - 1,
            i.saturating_sub(2)
        )
    };
    // Short chains are followed to the end.
    assert_eq!(cat(&chain(2, &linear)), Category::Destructive);
    // Long ones end at the bound, on the safe side, and quickly.
    for sql in [chain(300, &linear), chain(300, &fan)] {
        let started = std::time::Instant::now();
        assert_eq!(cat(&sql), Category::Destructive);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    // A restricting CTE at the start of a short chain keeps it a write.
    let restricted = "WITH c0 AS (SELECT id FROM users WHERE id < 10), c1 AS (SELECT id FROM c0) \
                      DELETE FROM users WHERE id IN (SELECT id FROM c1)";
    assert_eq!(cat(restricted), Category::Write);
}

/// COPY into a catalog adds privilege to what its direction and source
/// already say: a PROGRAM source stays procedural and export too.
#[test]
fn copy_into_a_catalog_keeps_its_other_effects() {
    let class = classify(
        "COPY pg_catalog.pg_authid FROM PROGRAM 'cat /tmp/x'",
        &Options::default(),
    );
    let cats: Vec<Category> = class.effects().map(|e| e.category).collect();
    for c in [Category::Privilege, Category::Procedural, Category::Export] {
        assert!(cats.contains(&c), "{c:?} missing from {cats:?}");
    }
}

#[test]
fn parse_texts_are_answered_exactly_as_the_shape_path_answers() {
    // Literal-free (found by text), literal (found by shape), and texts
    // whose literals the classifier reads (their shape varies).
    let texts = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
        "UPDATE t SET note = 'x' WHERE id = 7",
        "SET statement_timeout = 5",
        "SET search_path = 'public'",
        "DELETE FROM t",
    ];
    let by_shape = Classifier::new(Options::default(), 1 << 20);
    let exact_first = Classifier::new(Options::default(), 1 << 20);
    // Several rounds: first sightings, doorkeeper, cache and front hits.
    for round in 0..4 {
        for sql in texts {
            let (a, ra) = by_shape.classify_redacting(sql);
            // As a Parse is classified (`wire::policy::classify`).
            let (b, rb) = match exact_first.exactly(sql) {
                Some((class, text)) => {
                    assert_eq!(&*text, sql);
                    (class, None)
                }
                None => exact_first.classify_redacting(sql),
            };
            assert_eq!(*a, *b, "round {round}: {sql}");
            assert_eq!(ra, rb, "round {round}: {sql}");
            assert_eq!(*a, classify(sql, &Options::default()), "{sql}");
        }
    }
}
