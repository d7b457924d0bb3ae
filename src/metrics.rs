//! Process-wide counters, rendered in the Prometheus text format on the
//! admin port.
//!
//! A counter is sharded by thread, each shard on its own cache line: the
//! relay counts every statement and every read and write, from every
//! session thread, and one shared atomic per counter (all of them packed
//! into a few cache lines) made those lines bounce between the cores on
//! every statement. Reading sums the shards (only `/metrics` reads).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Shards per counter; threads beyond this share shards (still correct).
const SHARDS: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Shard(AtomicU64);

#[derive(Default)]
pub struct Counter([Shard; SHARDS]);

thread_local! {
    /// This thread's shard, assigned in order of first use.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        let i = SHARD.with(|s| *s);
        self.0[i].0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub sessions_active: Gauge,
    pub sessions_total: Counter,
    pub logins_refused: Counter,
    pub connections_rejected: Counter,
    pub upstream_errors: Counter,
    pub protocol_errors: Counter,
    pub statements_total: Counter,
    pub statements_allowed: Counter,
    pub statements_logged: Counter,
    pub statements_denied: Counter,
    pub statements_held: Counter,
    pub classified_off_thread: Counter,
    pub holds_approved: Counter,
    pub holds_refused: Counter,
    pub cancels_forwarded: Counter,
    pub cancels_rejected: Counter,
    pub bytes_from_clients: Counter,
    pub bytes_to_clients: Counter,
    pub rules_reloads: Counter,
    pub rules_reload_failures: Counter,
}

impl Metrics {
    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(2048);
        let counters: [(&str, &str, &Counter); 19] = [
            (
                "airlock_sessions_total",
                "Client sessions established",
                &self.sessions_total,
            ),
            (
                "airlock_logins_refused_total",
                "Logins refused (bad password, unknown agent, database not allowed)",
                &self.logins_refused,
            ),
            (
                "airlock_connections_rejected_total",
                "Connections dropped before login (limits, malformed startup, timeouts)",
                &self.connections_rejected,
            ),
            (
                "airlock_upstream_errors_total",
                "Failures to reach the upstream database",
                &self.upstream_errors,
            ),
            (
                "airlock_protocol_errors_total",
                "Sessions ended for malformed protocol messages",
                &self.protocol_errors,
            ),
            (
                "airlock_statements_total",
                "Statement units that execute something (a Query, or an extended batch up to Sync with an Execute)",
                &self.statements_total,
            ),
            (
                "airlock_statements_allowed_total",
                "Statement units passed through (counted like statements_total)",
                &self.statements_allowed,
            ),
            (
                "airlock_statements_logged_total",
                "Statement units passed through under a log rule",
                &self.statements_logged,
            ),
            (
                "airlock_statements_denied_total",
                "Statement units refused by a deny rule",
                &self.statements_denied,
            ),
            (
                "airlock_statements_held_total",
                "Statement units held for approval",
                &self.statements_held,
            ),
            (
                "airlock_classified_off_thread_total",
                "Large statement texts classified on the blocking pool, not on a session thread",
                &self.classified_off_thread,
            ),
            (
                "airlock_holds_approved_total",
                "Held statements approved and executed",
                &self.holds_approved,
            ),
            (
                "airlock_holds_refused_total",
                "Held statements denied, expired, withdrawn or failed closed",
                &self.holds_refused,
            ),
            (
                "airlock_cancels_forwarded_total",
                "Cancel requests forwarded upstream",
                &self.cancels_forwarded,
            ),
            (
                "airlock_cancels_rejected_total",
                "Cancel requests with an unknown key",
                &self.cancels_rejected,
            ),
            (
                "airlock_client_bytes_total",
                "Bytes received from clients",
                &self.bytes_from_clients,
            ),
            (
                "airlock_server_bytes_total",
                "Bytes relayed to clients",
                &self.bytes_to_clients,
            ),
            (
                "airlock_rules_reloads_total",
                "Successful rule reloads",
                &self.rules_reloads,
            ),
            (
                "airlock_rules_reload_failures_total",
                "Rule reloads refused (old rules kept)",
                &self.rules_reload_failures,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP airlock_sessions_active Client sessions open now\n# TYPE airlock_sessions_active gauge\nairlock_sessions_active {}",
            self.sessions_active.get()
        );
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod counter_tests {
    use super::Counter;

    #[test]
    fn a_sharded_counter_sums_every_thread() {
        let c = Counter::default();
        std::thread::scope(|s| {
            for t in 0..(super::SHARDS * 2 + 3) {
                let c = &c;
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                    c.add(t as u64);
                });
            }
        });
        let threads = (super::SHARDS * 2 + 3) as u64;
        assert_eq!(c.get(), threads * 1000 + (0..threads).sum::<u64>());
    }
}
