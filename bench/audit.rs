//! What one audit record costs, by step, for the record the relay writes
//! most (an allowed pgbench-style SELECT). The relay's path: the session
//! encodes it from borrowed fields (`audit::statement_body`: text policy,
//! JSON), the writer adds the chain fields and hashes it (SHA-256). The
//! event path (every other kind, and a statement handed over as an
//! `Event`): the writer redacts, encodes and hashes an owned event. Run:
//! `cargo bench --bench audit` (median of batches, ns per record; compare
//! runs on the same machine).

use pg_airlock::audit::{
    AuditConfig, Event, EventKind, Outcome, OutcomeRef, StatementRecord, Timestamp, chain, event,
    redact, statement_body,
};
use std::hint::black_box;

// As in the binary (src/main.rs): the cross-thread numbers depend on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "timing.rs"]
mod timing;

fn median_ns(batches: usize, per_batch: usize, f: impl FnMut(usize)) -> f64 {
    timing::median_secs(batches, per_batch, f) * 1e9
}

fn statement(i: usize) -> Event {
    Event {
        ts: Timestamp(1_796_000_000_000_000 + i as i64),
        kind: EventKind::Statement(event::Statement {
            session: "s-1a232c29e91-0-ee76b42f".into(),
            agent: "bench-agent".into(),
            statement: i as u64,
            sql: Some(format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                1 + i % 1_000_000
            )),
            text_mode: String::new(),
            parameters: None,
            parameter_count: 0,
            categories: vec!["read".into()],
            tables: vec!["pgbench_accounts".into()],
            functions: vec![],
            decision: "allow".into(),
            rules: vec!["allow-routine".into()],
            ruleset: Some(
                "68d12d09b54a347108e571c5ed6771791d385071b5af458c1480fd940b2fce3c".into(),
            ),
            request_id: None,
            outcome: Outcome::Ok {
                command_tag: "SELECT 1".into(),
                rows: Some(1),
            },
            duration_us: 87,
        }),
    }
}

/// What the writer does with one record: redact, encode with the chain
/// fields, hash, and (on return) drop it.
fn writer_job(mut ev: Event, seq: u64, prev: &str) {
    if let EventKind::Statement(s) = &mut ev.kind {
        s.sql = s.sql.take().map(|q| redact(&q));
    }
    let line = chain::encode(&ev, seq, prev).unwrap();
    black_box(chain::hash_line(line.as_bytes()));
}

fn main() {
    let prev = chain::GENESIS.to_string();
    let events: Vec<Event> = (0..4096).map(statement).collect();
    let sql = |i: usize| match &events[i % events.len()].kind {
        EventKind::Statement(s) => s.sql.clone().unwrap_or_default(),
        _ => unreachable!(),
    };
    let build = median_ns(15, 20_000, |i| {
        black_box(statement(black_box(i)));
    });
    let red = median_ns(15, 20_000, |i| {
        black_box(redact(black_box(&sql(i))));
    });
    let enc = median_ns(15, 20_000, |i| {
        black_box(chain::encode(black_box(&events[i % events.len()]), i as u64, &prev).unwrap());
    });
    let line = chain::encode(&events[0], 1, &prev).unwrap();
    let hash = median_ns(15, 20_000, |_| {
        black_box(chain::hash_line(black_box(line.as_bytes())));
    });
    // The writer's whole job for one record, in one thread (the events
    // built beforehand) and as in the proxy: built on one thread, encoded,
    // hashed and dropped on another, so its strings arrive from another
    // core and are freed remotely.
    let local = median_ns(15, 4096, |i| {
        writer_job(events[i % events.len()].clone(), i as u64, &prev)
    });
    let n = 400_000;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(65_536);
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(statement(i)).unwrap();
        }
    });
    let t = std::time::Instant::now();
    for (seq, ev) in rx.into_iter().enumerate() {
        writer_job(ev, seq as u64 + 1, &prev);
    }
    let remote = t.elapsed().as_secs_f64() * 1e9 / n as f64;
    producer.join().unwrap();
    let cfg = AuditConfig::with_file("unused.jsonl");
    let sqls: Vec<String> = (0..4096).map(sql).collect();
    let session_path = median_ns(15, 20_000, |i| {
        let rec = StatementRecord {
            session: "s-1a232c29e91-0-ee76b42f",
            agent: "bench-agent",
            identity: None,
            statement: i as u64,
            sql: Some(&sqls[i % sqls.len()]),
            redacted: None,
            parameters: &[],
            parameter_count: 0,
            categories: &["read"],
            tables: &["pgbench_accounts"],
            functions: &[],
            decision: "allow",
            rules: &["allow-routine"],
            ruleset: Some("68d12d09b54a347108e571c5ed6771791d385071b5af458c1480fd940b2fce3c"),
            judged: None,
            request_id: None,
            outcome: OutcomeRef::Ok {
                command_tag: "SELECT 1",
                rows: Some(1),
            },
            duration_us: 87,
        };
        black_box(statement_body(
            &cfg,
            Timestamp(1_796_000_000_000_000 + i as i64),
            black_box(&rec),
        ));
    });
    println!(
        "event path, writer job, same thread {local:.0} ns; events from another thread {remote:.0} ns (bounded by the slower side)"
    );
    println!(
        "| step (one allowed SELECT, {} bytes of JSON) | ns per record |",
        line.len()
    );
    println!("|---|---:|");
    println!(
        "| relay path, session side: text policy + JSON from borrowed fields | {session_path:.0} |"
    );
    println!("| event path: build the event (owned strings) | {build:.0} |");
    println!("| event path: redact the SQL (includes cloning it) | {red:.0} |");
    println!("| event path: encode the line (JSON + seq + prev) | {enc:.0} |");
    println!("| SHA-256 of the line, hex (writer, both paths) | {hash:.0} |");
}
