//! Classification cost, uncached and cached, for short, medium and long
//! statements, plus rule evaluation. Run: `cargo bench --bench classify`.
//! (A plain timing loop: median of several batches, reported in
//! microseconds per call; compare runs on the same machine.)

use pg_airlock::classify::{Classifier, Options, classify};
use pg_airlock::rules::{RuleSet, Subject};
use std::hint::black_box;
use std::path::PathBuf;

#[path = "timing.rs"]
mod timing;

fn median_us(batches: usize, per_batch: usize, f: impl FnMut(usize)) -> f64 {
    timing::median_secs(batches, per_batch, f) * 1e6
}

fn main() {
    let short = "SELECT abalance FROM pgbench_accounts WHERE aid = 4711".to_string();
    let medium = "WITH recent AS (SELECT o.id, o.user_id, sum(o.amount) AS total FROM orders o \
        JOIN users u ON u.id = o.user_id LEFT JOIN LATERAL (SELECT count(*) FROM delete_log d WHERE d.note = u.name) x ON true \
        WHERE o.status IN ('paid', 'refunded') AND o.amount > 10 GROUP BY o.id, o.user_id HAVING sum(o.amount) > 100) \
        SELECT u.name, r.total, coalesce(lower(u.email), 'n/a') FROM recent r JOIN users u ON u.id = r.user_id ORDER BY r.total DESC LIMIT 50"
        .to_string();
    let long = {
        let mut s = String::from("INSERT INTO orders (user_id, amount, status) VALUES ");
        for i in 0..2000 {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("({i}, {}.50, 'paid')", i % 97));
        }
        s
    };
    let rules =
        RuleSet::load(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")])
            .expect("rules");
    let subject = Subject {
        agent: "billing-bot",
        application_name: "bench",
        database: "app",
    };
    let opts = Options::default();

    println!(
        "| statement | bytes | uncached parse+classify (us) | cached lookup (us) | rules.evaluate (us) |"
    );
    println!("|---|---|---|---|---|");
    for (name, sql, batches, per) in [
        ("short", &short, 15, 2000),
        ("medium", &medium, 15, 500),
        ("long (2000-row INSERT)", &long, 7, 5),
    ] {
        let uncached = median_us(batches, per, |_| {
            black_box(classify(black_box(sql), &opts));
        });
        let cache = Classifier::new(Options::default(), 16 << 20);
        cache.classify(sql);
        cache.classify(sql);
        let cached = median_us(batches, per * 10, |_| {
            black_box(cache.classify(black_box(sql)));
        });
        let class = cache.classify(sql);
        let eval = median_us(batches, per * 10, |_| {
            black_box(rules.evaluate(black_box(&class), &subject));
        });
        println!(
            "| {name} | {} | {uncached:.2} | {cached:.3} | {eval:.3} |",
            sql.len()
        );
    }

    // What a pgbench TPC-B transaction asks of the classifier: the same
    // shapes every time, literal values (and their lengths) varying, as
    // they do for most statements agents and drivers send.
    let tpcb = |i: usize| {
        let aid = 1 + (i * 7919) % 1_000_000;
        let tid = 1 + (i * 31) % 100;
        let bid = 1 + i % 10;
        let delta = (i * 104_729 % 10_001) as i64 - 5000;
        [
            "BEGIN;".to_string(),
            format!("UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};"),
            format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"),
            format!("UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};"),
            format!("UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid};"),
            format!(
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"
            ),
            "END;".to_string(),
        ]
    };
    let texts: Vec<[String; 7]> = (0..4096).map(tpcb).collect();
    let cache = Classifier::new(Options::default(), 16 << 20);
    for t in texts.iter().take(16) {
        for sql in t {
            cache.classify(sql);
        }
    }
    let per_txn = median_us(15, 2000, |i| {
        for sql in &texts[i % texts.len()] {
            black_box(cache.classify(black_box(sql)));
        }
    });
    let classes: Vec<Vec<_>> = texts
        .iter()
        .take(256)
        .map(|t| t.iter().map(|s| cache.classify(s)).collect())
        .collect();
    let eval_txn = median_us(15, 2000, |i| {
        for class in &classes[i % classes.len()] {
            black_box(rules.evaluate(black_box(class), &subject));
        }
    });
    // As a session decides them: its memo of decisions by shared effects.
    let rules = std::sync::Arc::new(rules);
    let mut memo = pg_airlock::wire::decided::Decided::default();
    let decided_txn = median_us(15, 2000, |i| {
        for class in &classes[i % classes.len()] {
            black_box(memo.evaluate(&rules, black_box(class), &subject));
        }
    });
    println!();
    println!(
        "| TPC-B transaction, 7 statements, literals varying | cached classify (us/txn) | rules.evaluate (us/txn) | session's decision memo (us/txn) |"
    );
    println!("|---|---|---|---|");
    println!("| pgbench tpcb-like | {per_txn:.3} | {eval_txn:.3} | {decided_txn:.3} |");
}
