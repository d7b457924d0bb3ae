//! Audit trail: typed, hash-chained records of everything an agent attempted
//! and what humans and rules decided, plus the auditor's tools.
//!
//! Place in the flow: the session loop builds an [`Event`] for each session
//! start/end, statement, approval step, policy load, admin action and refused
//! login, and hands it to [`Auditor::record`] (ordinary records) or
//! [`Auditor::record_durable`] (approval requests and decisions, which must be
//! on disk before an approved statement goes upstream).
//!
//! Writing: one dedicated OS thread ("audit-writer", with its own
//! single-threaded tokio runtime) owns the sinks. Callers move the event
//! into a bounded queue; the writer applies the text policy, assigns `seq`,
//! chains `prev`, serialises, and group-commits. Statement records, one per
//! relayed statement, are the exception: [`Auditor::statement`] applies the
//! same text policy and encoding on the caller's thread from borrowed
//! fields and queues the bytes (same output, tested), so the writer only
//! chains, hashes and stores them. It writes and fsyncs when the oldest
//! unflushed record is `flush_interval` old (default 50 ms), at once when a
//! durable record or flush is waiting, or when 4 MiB are buffered.
//!
//! Crash-loss window: records passed to `record` and not yet fsynced, i.e. at
//! most `flush_interval` plus the writer's 2 ms linger plus up to two
//! fsyncs' duration (a record that arrives during an fsync waits it out) of ordinary statement
//! records (plus whatever sits in the queue if a sink is stalled). Records
//! acknowledged by `record_durable` or followed by a completed `flush` are
//! never lost. A torn last line after a crash is cut off at the next start
//! and the cut is itself recorded (`audit_started.recovered`).
//!
//! Sinks (`sink`): the chained JSON Lines file with rotation and a `.head`
//! sidecar, stdout, and a PostgreSQL table with the same lines and hashes.
//! Durable means: stored by every configured sink (file fsynced, stdout
//! flushed, PostgreSQL committed).
//!
//! One writer per file: there is no cross-process lock, so two proxies must
//! not share an audit file (each gets its own chain, file and table).
//!
//! Under `on_sink_failure = "refuse"`, `record` never waits: a full queue is
//! an error the session turns into a refused statement, even during a burst
//! with healthy sinks (the queue holds `queue_capacity` records, 65536 by
//! default).
//!
//! `audit.enabled = false` starts no writer at all: every record is accepted
//! and dropped, approvals included (see [`Auditor::start`]). It exists to
//! measure what the trail costs.
//!
//! Tools for auditors: [`verify()`](verify::verify), [`search`](query::search),
//! [`session_timeline`](query::session_timeline), [`report`](report::report).

pub mod chain;
pub mod config;
mod encode;
pub mod event;
pub mod query;
pub mod redact;
pub mod report;
pub mod sink;
pub mod verify;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use chain::{GENESIS, Record};
pub use config::{AuditConfig, FailurePolicy, RawAuditConfig, TextMode, validate};
pub use event::{Event, EventKind, Outcome, Timestamp};
pub use query::{Filter, search, session_timeline};
pub use redact::{redact, scrub_secrets};
pub use report::{ReportFormat, report};
pub use verify::{Problem, VerifyReport, trail_files, verify};

pub use encode::OutcomeRef;

use chain::Hash;
use sink::{FileSink, Line, Pending, PgSink, StdoutSink};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit file {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("audit file {path} line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "audit file {path} ends at seq {found} but its .head sidecar records seq {expected}: records were removed; run verify and move the files aside before starting"
    )]
    TailBehindHead {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("audit sink {sink} is failing: {reason}")]
    SinkFailing { sink: &'static str, reason: String },
    #[error("audit queue is full ({capacity} records waiting for the writer)")]
    QueueFull { capacity: usize },
    #[error("audit event could not be encoded: {0}")]
    Encode(String),
    #[error("the auditor has shut down")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: &Path, op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// Counters for `/metrics`. All monotonic except `records_pending`.
#[derive(Debug, Default)]
pub struct AuditMetrics {
    /// Records stored by every sink.
    pub records_written: AtomicU64,
    /// Records accepted by `record*` and not yet stored by every sink.
    pub records_pending: AtomicU64,
    /// Failed sink writes (each retry that fails counts).
    pub write_errors: AtomicU64,
    /// Successful fsyncs of the audit file.
    pub fsyncs: AtomicU64,
    /// Records the caller was told could not be accepted (queue full or
    /// sinks failing under `refuse`). Never silently dropped: the caller got
    /// an `Err` for each.
    pub records_refused: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Test hook: make file writes fail (root ignores permissions, so
    /// tests cannot make a file unwritable by chmod).
    #[cfg(test)]
    pub(crate) fail_writes: AtomicBool,
}

impl AuditMetrics {
    /// The most recent sink error, if any since start.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_error(&self, e: &Error) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    pub(crate) fn inc_fsync(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
}

enum Msg {
    /// Boxed: an `Event` is several times the size of the other variants,
    /// and every statement's `Encoded` message would otherwise be copied
    /// at that size into and out of the queue.
    Event(Box<Event>, Option<oneshot::Sender<Result<(), Error>>>),
    /// A record already encoded on the caller's thread (see
    /// [`Auditor::statement`]): the writer only chains, hashes and stores it.
    Encoded(Encoded),
    Flush(oneshot::Sender<Result<(), Error>>),
    Shutdown(oneshot::Sender<Result<(), Error>>),
}

/// A record's fields as JSON, without the opening brace (what follows the
/// chain prefix `{"seq":..,"prev":"..",`).
struct Encoded {
    ts: Timestamp,
    kind: &'static str,
    body: Vec<u8>,
}

/// A statement as the session knows it when its result arrives, borrowed
/// from the session's own state. [`Auditor::statement`] applies the text
/// policy and encodes it on the caller's thread.
#[derive(Debug, Clone, Copy)]
pub struct StatementRecord<'a> {
    pub session: &'a str,
    pub agent: &'a str,
    /// `session` and `agent` as [`identity_fields`] encodes them, if the
    /// caller keeps that; the record is the same either way.
    pub identity: Option<&'a [u8]>,
    /// Statement number within the session, from 1.
    pub statement: u64,
    /// The raw text; the text policy decides what is recorded. May be
    /// left out when `redacted` is given and the record does not need it
    /// ([`Auditor::records_raw_text`]).
    pub sql: Option<&'a str>,
    /// `sql` as [`redact::redact`] returns it, when the caller already has
    /// it (the classifier keeps it with a statement shape): recorded under
    /// `redacted` instead of scanning the text again. Never recorded for a
    /// held statement or under `full` (the raw text is), nor under `none`.
    pub redacted: Option<&'a str>,
    /// Bound values; recorded only under `log_parameters`
    /// ([`Auditor::logs_parameters`]), so a caller that renders them on
    /// demand may pass none otherwise.
    pub parameters: &'a [Option<String>],
    /// How many values were bound (recorded either way).
    pub parameter_count: usize,
    /// Each list sorted, without duplicates.
    pub categories: &'a [&'a str],
    pub tables: &'a [&'a str],
    pub functions: &'a [&'a str],
    pub decision: &'a str,
    pub rules: &'a [&'a str],
    pub ruleset: Option<&'a str>,
    /// `categories` to `ruleset` as [`judged_fields`] encodes them, if the
    /// caller keeps that (a session does, per statement shape): copied
    /// instead, and those six fields are then not read.
    pub judged: Option<&'a [u8]>,
    /// Set for a held statement: its text is then recorded in full.
    pub request_id: Option<&'a str>,
    pub outcome: OutcomeRef<'a>,
    pub duration_us: u64,
}

struct Shared {
    cfg: AuditConfig,
    healthy: AtomicBool,
    metrics: AuditMetrics,
    /// Rung after queueing a durable record, flush or shutdown: ends the
    /// writer's linger at once, so waiting for disk never includes it.
    urgent: tokio::sync::Notify,
    /// The runtime `start` ran on (the proxy's main one). A record that
    /// must wait for queue room waits in a task there, not on a session
    /// thread, which stops as soon as its sessions have ended: the record
    /// would die with it.
    spawner: tokio::runtime::Handle,
}

/// Handle to the audit writer. Cheap to clone; all clones feed one chain.
#[derive(Clone)]
pub struct Auditor {
    /// `None` when the trail is disabled (`audit.enabled = false`): there is
    /// no writer, and every call accepts its record and drops it.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
}

/// The writer thread. Await [`AuditTask::join`] after [`Auditor::shutdown`]
/// (or after dropping every `Auditor`, which also flushes and stops it).
pub struct AuditTask {
    done: oneshot::Receiver<Result<(), Error>>,
}

impl AuditTask {
    /// Wait for the writer to finish; returns its final error, if any.
    pub async fn join(self) -> Result<(), Error> {
        self.done.await.unwrap_or(Err(Error::Closed))
    }
}

impl Auditor {
    /// Open the sinks and start the writer thread.
    ///
    /// # Errors
    /// The file or its directory cannot be opened or written (the error names
    /// the path), the file's tail is damaged beyond a torn last line, the
    /// `.head` sidecar shows records were removed, or PostgreSQL cannot be
    /// reached or its table belongs to another chain.
    ///
    /// With `cfg.enabled == false` nothing is opened and no thread starts:
    /// the auditor stays healthy and `emit`, `record`, `try_record`,
    /// `record_durable`, `flush` and `shutdown` return at once without
    /// storing anything, so approvals are then NOT durably recorded. The
    /// caller's event construction still runs: turning the trail off
    /// removes the writer's work (redaction, JSON, hashing, I/O) and the
    /// queue hand-off, not the session's.
    pub async fn start(cfg: AuditConfig) -> Result<(Auditor, AuditTask), Error> {
        let enabled = cfg.enabled;
        let capacity = cfg.queue_capacity;
        let shared = Arc::new(Shared {
            cfg,
            healthy: AtomicBool::new(true),
            metrics: AuditMetrics::default(),
            urgent: tokio::sync::Notify::new(),
            spawner: tokio::runtime::Handle::current(),
        });
        if !enabled {
            let (done_tx, done_rx) = oneshot::channel();
            let _ = done_tx.send(Ok(()));
            return Ok((Auditor { tx: None, shared }, AuditTask { done: done_rx }));
        }
        let (tx, rx) = mpsc::channel(capacity);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                // However the writer ends (shutdown, error, panic), nothing
                // is audited any more: sessions must see that.
                let unhealthy_on_exit = UnhealthyOnDrop(sh.clone());
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::SinkFailing {
                            sink: "writer",
                            reason: format!("runtime: {e}"),
                        }));
                        return;
                    }
                };
                let res = rt.block_on(async move {
                    let mut w = match Writer::open(sh).await {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    w.run(rx).await
                });
                // Unhealthy before `join` returns (on panic the guard, a
                // local, drops before the captured `done_tx`).
                drop(unhealthy_on_exit);
                let _ = done_tx.send(res);
            })
            .map_err(|e| Error::SinkFailing {
                sink: "writer",
                reason: format!("spawn thread: {e}"),
            })?;
        ready_rx.await.unwrap_or(Err(Error::Closed))?;
        let auditor = Auditor {
            tx: Some(tx),
            shared,
        };
        Ok((auditor, AuditTask { done: done_rx }))
    }

    /// Queue an ordinary record. Returns at once unless the queue is full:
    /// then it waits (`block`) or fails with `QueueFull` (`refuse`). Never
    /// does I/O on the caller's task.
    ///
    /// # Cancel safety
    /// Cancelling while waiting for queue space drops the event; the caller
    /// then knows it was not recorded.
    pub async fn record(&self, ev: Event) -> Result<(), Error> {
        self.send(Msg::Event(Box::new(ev), None)).await
    }

    /// Queue a record without ever waiting; `QueueFull` if there is no room
    /// (under either policy), for contexts that cannot await.
    pub fn try_record(&self, ev: Event) -> Result<(), Error> {
        self.try_send(Msg::Event(Box::new(ev), None))
    }

    /// Queue a record from a context that cannot await (the relay's hot
    /// path). Never drops it under `block`: if the queue is full, a task
    /// waits for room (the record may land slightly later than its
    /// neighbours; its timestamp is kept). Under `refuse` a full queue
    /// refuses it, counted in `records_refused`, and sessions stop taking
    /// new statements while `is_healthy()` is false.
    pub fn emit(&self, ev: Event) {
        self.emit_msg(Msg::Event(Box::new(ev), None));
    }

    /// Record a statement, as [`Auditor::emit`] would record the
    /// equivalent `Statement` event (same bytes: the writer's text policy
    /// and encoding, applied here). The work happens on the caller's
    /// thread, from borrowed data: the writer receives one buffer instead
    /// of a dozen strings to free, and does not redact or escape anything.
    /// With the trail disabled nothing is encoded.
    pub fn statement(&self, r: &StatementRecord<'_>) {
        if self.tx.is_none() {
            return;
        }
        let ts = Timestamp::now();
        let body = statement_body(&self.shared.cfg, ts, r);
        self.emit_msg(Msg::Encoded(Encoded {
            ts,
            kind: "statement",
            body,
        }));
    }

    fn emit_msg(&self, msg: Msg) {
        let Some(queue) = &self.tx else { return };
        self.shared
            .metrics
            .records_pending
            .fetch_add(1, Ordering::Relaxed);
        match queue.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) if self.policy() == FailurePolicy::Block => {
                let tx = queue.clone();
                let shared = self.shared.clone();
                self.shared.spawner.spawn(async move {
                    if tx.send(msg).await.is_err() {
                        shared
                            .metrics
                            .records_pending
                            .fetch_sub(1, Ordering::Relaxed);
                        tracing::error!("audit writer gone; record lost");
                    }
                });
            }
            Err(e) => {
                self.shared
                    .metrics
                    .records_pending
                    .fetch_sub(1, Ordering::Relaxed);
                self.shared
                    .metrics
                    .records_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "audit record refused");
            }
        }
    }

    /// Record and return only once every sink has stored it (file fsynced).
    /// Use for approval requests and decisions, before acting on them.
    ///
    /// # Errors
    /// Under `refuse`, fails at once while sinks are failing. Under `block`,
    /// waits until the sinks recover.
    pub async fn record_durable(&self, ev: Event) -> Result<(), Error> {
        if !self.is_enabled() {
            return Ok(());
        }
        if self.shared.cfg.on_sink_failure == FailurePolicy::Refuse && !self.is_healthy() {
            self.shared
                .metrics
                .records_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(self.failing());
        }
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Event(Box::new(ev), Some(tx))).await?;
        self.shared.urgent.notify_one();
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Wait until every record queued before this call is stored.
    pub async fn flush(&self) -> Result<(), Error> {
        if !self.is_enabled() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.send_ctl(Msg::Flush(tx)).await?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// False while a sink is failing; sessions should refuse new statements
    /// when the policy is `refuse`.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// A statement record needs the raw text under this trail's text
    /// policy, given whether the caller has the text's redaction: under
    /// `redacted` that is what is recorded, under `none` nothing is. (A
    /// held statement is recorded in full: its caller keeps the text.)
    pub fn records_raw_text(&self, has_redaction: bool) -> bool {
        self.tx.is_some()
            && match self.shared.cfg.statement_text {
                TextMode::Full => true,
                TextMode::Redacted => !has_redaction,
                TextMode::None => false,
            }
    }

    /// Statement records carry bound values (`log_parameters`).
    pub fn logs_parameters(&self) -> bool {
        self.shared.cfg.log_parameters
    }

    /// False when `audit.enabled = false`: nothing is recorded.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn policy(&self) -> FailurePolicy {
        self.shared.cfg.on_sink_failure
    }

    pub fn metrics(&self) -> &AuditMetrics {
        &self.shared.metrics
    }

    /// Write `audit_stopped`, flush and fsync everything, stop the writer.
    /// Under `block` with a failing sink this waits for the sink: wrap it in
    /// the shutdown deadline.
    pub async fn shutdown(&self) -> Result<(), Error> {
        if !self.is_enabled() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.send_ctl(Msg::Shutdown(tx)).await?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    fn failing(&self) -> Error {
        Error::SinkFailing {
            sink: "audit",
            reason: self
                .shared
                .metrics
                .last_error()
                .unwrap_or_else(|| "unknown".into()),
        }
    }

    async fn send(&self, msg: Msg) -> Result<(), Error> {
        let Some(queue) = &self.tx else { return Ok(()) };
        if self.shared.cfg.on_sink_failure == FailurePolicy::Refuse {
            return self.try_send(msg);
        }
        self.shared
            .metrics
            .records_pending
            .fetch_add(1, Ordering::Relaxed);
        queue.send(msg).await.map_err(|_| {
            self.shared
                .metrics
                .records_pending
                .fetch_sub(1, Ordering::Relaxed);
            Error::Closed
        })
    }

    fn try_send(&self, msg: Msg) -> Result<(), Error> {
        let Some(queue) = &self.tx else { return Ok(()) };
        self.shared
            .metrics
            .records_pending
            .fetch_add(1, Ordering::Relaxed);
        queue.try_send(msg).map_err(|e| {
            self.shared
                .metrics
                .records_pending
                .fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.shared
                        .metrics
                        .records_refused
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        capacity = self.shared.cfg.queue_capacity,
                        "audit queue full; record refused"
                    );
                    Error::QueueFull {
                        capacity: self.shared.cfg.queue_capacity,
                    }
                }
                mpsc::error::TrySendError::Closed(_) => Error::Closed,
            }
        })
    }

    /// Control messages wait for room under either policy: they carry no
    /// event, and a shutdown must get through.
    async fn send_ctl(&self, msg: Msg) -> Result<(), Error> {
        let Some(queue) = &self.tx else { return Ok(()) };
        let r = queue.send(msg).await.map_err(|_| Error::Closed);
        self.shared.urgent.notify_one();
        r
    }
}

struct UnhealthyOnDrop(Arc<Shared>);

impl Drop for UnhealthyOnDrop {
    fn drop(&mut self) {
        self.0.healthy.store(false, Ordering::Release);
    }
}

/// Buffered bytes that force a write before the flush deadline.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct Writer {
    shared: Arc<Shared>,
    last_seq: u64,
    last_hash: Hash,
    /// First seq and time of the active file's first record (rotation).
    file_first: Option<(u64, Timestamp)>,
    /// Bytes assigned to the active file, stored or not.
    file_bytes: u64,
    pending: Pending,
    /// (seq that must be stored, who waits). Control waiters use the last
    /// assigned seq.
    waiters: Vec<Waiter>,
    oldest_unflushed: Option<Instant>,
    file: Option<FileSink>,
    stdout: Option<StdoutSink>,
    pg: Option<PgSink>,
}

impl Writer {
    async fn open(shared: Arc<Shared>) -> Result<Writer, Error> {
        let cfg = &shared.cfg;
        let (file, resume) = match &cfg.file {
            Some(p) => {
                let (f, r) = FileSink::open(p)?;
                (Some(f), Some(r))
            }
            None => (None, None),
        };
        let (last_seq, last_hash) = resume.as_ref().map_or((0, GENESIS.to_string()), |r| {
            (r.last_seq, r.last_hash.clone())
        });
        let Some(last_hash_bin) = Hash::parse(&last_hash) else {
            return Err(Error::Corrupt {
                path: cfg
                    .file
                    .clone()
                    .map(|p| sink::head_path(&p))
                    .unwrap_or_default(),
                line: 0,
                reason: format!("chain hash {last_hash:?} is not 64 lowercase hex digits"),
            });
        };
        let pg = match &cfg.postgres_url {
            Some(url) => {
                let mut pg = PgSink::new(url.clone(), cfg.postgres_table.clone(), last_seq);
                pg.check_start(last_seq, &last_hash).await?;
                Some(pg)
            }
            None => None,
        };
        let file_first = resume
            .as_ref()
            .and_then(|r| r.file_first.as_ref())
            .map(|(s, ts)| (*s, Timestamp::parse(ts).unwrap_or(Timestamp::now())));
        let mut w = Writer {
            last_seq,
            last_hash: last_hash_bin,
            file_first,
            file_bytes: resume.as_ref().map_or(0, |r| r.file_len),
            pending: Pending::default(),
            waiters: Vec::new(),
            oldest_unflushed: None,
            file,
            stdout: cfg.stdout.then_some(StdoutSink { acked: last_seq }),
            pg,
            shared: shared.clone(),
        };
        let started = Event::now(EventKind::AuditStarted(event::AuditStarted {
            version: env!("CARGO_PKG_VERSION").to_string(),
            statement_text: cfg.statement_text.as_str().to_string(),
            log_parameters: cfg.log_parameters,
            recovered: resume.and_then(|r| r.recovered),
        }));
        w.shared
            .metrics
            .records_pending
            .fetch_add(1, Ordering::Relaxed);
        w.push(started)?;
        // The start record is durable before anyone can record: a failing
        // sink shows up here, as a start error naming the path.
        w.flush_sinks().await?;
        Ok(w)
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) -> Result<(), Error> {
        /// How long the writer lets ordinary records pile up between wake-ups.
        const LINGER: Duration = Duration::from_millis(2);
        let flush_interval = self.shared.cfg.flush_interval;
        let mut backoff = Duration::from_millis(50);
        let mut retry_at: Option<Instant> = None;
        let mut shutting_down = false;
        let mut closed = false;
        loop {
            let deadline = [
                retry_at,
                if retry_at.is_none() {
                    self.oldest_unflushed.map(|t| t + flush_interval)
                } else {
                    None
                },
                self.rotation_due_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            // While a sink is failing, stop taking messages so the bounded
            // queue pushes back on callers (or refuses, per policy).
            // Under `refuse` keep reading (up to the buffer cap) so shutdown,
            // flush and handle-drop messages are still seen while a sink
            // fails; under `block` stop, so callers wait.
            let refuse = self.shared.cfg.on_sink_failure == FailurePolicy::Refuse;
            let receive = (retry_at.is_none() || (refuse && self.pending.bytes() < MAX_BUFFERED))
                && !closed
                && !shutting_down;
            let mut urgent = false;
            let mut received = false;
            tokio::select! {
                m = rx.recv(), if receive => match m {
                    Some(m) => {
                        received = true;
                        urgent |= self.handle(m, &mut shutting_down);
                        // Take whatever else is queued: one batch, one fsync.
                        for _ in 0..16_384 {
                            match rx.try_recv() {
                                Ok(m) => urgent |= self.handle(m, &mut shutting_down),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        closed = true;
                        self.push_internal(EventKind::AuditStopped(event::AuditStopped { reason: "all auditor handles dropped".into() }));
                        urgent = true;
                    }
                },
                _ = sleep_until_opt(deadline) => {}
            }
            if received && !urgent && self.pending.bytes() < MAX_BUFFERED {
                // Linger briefly before listening again: records that
                // arrive meanwhile queue up without waking this thread,
                // so a busy proxy pays one wake-up per batch, not one per
                // statement. Durable records wait at most this much more.
                tokio::select! {
                    _ = crate::timers::sleep(LINGER.min(flush_interval)) => {}
                    _ = self.shared.urgent.notified() => {}
                }
            }
            if self.rotation_due_at().is_some_and(|t| t <= Instant::now()) {
                self.push_rotation();
            }
            let now = Instant::now();
            let due = urgent
                || shutting_down
                || closed
                || retry_at.is_some_and(|t| t <= now)
                || self
                    .oldest_unflushed
                    .is_some_and(|t| t + flush_interval <= now)
                || self.pending.bytes() >= MAX_BUFFERED;
            if retry_at.is_some_and(|t| t > now)
                || !due
                || (self.pending.is_empty() && self.waiters.is_empty())
            {
                continue;
            }
            match self.flush_sinks().await {
                Ok(()) => {
                    retry_at = None;
                    backoff = Duration::from_millis(50);
                    if shutting_down || closed {
                        return Ok(());
                    }
                }
                Err(e) => {
                    if self.shared.cfg.on_sink_failure == FailurePolicy::Refuse {
                        for w in self.waiters.drain(..) {
                            let _ = w.tx.send(Err(Error::SinkFailing {
                                sink: "audit",
                                reason: e.to_string(),
                            }));
                        }
                        if shutting_down || closed {
                            tracing::error!(unwritten = self.pending.len(), cause = %e, "audit writer stopping with records not stored");
                            return Err(e);
                        }
                    }
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Returns true when the message wants an immediate flush.
    fn handle(&mut self, m: Msg, shutting_down: &mut bool) -> bool {
        match m {
            Msg::Event(ev, waiter) => {
                let urgent = waiter.is_some();
                match self.push(*ev) {
                    Ok(seq) => {
                        if let Some(tx) = waiter {
                            self.waiters.push(Waiter {
                                seq,
                                tx,
                                before_head: false,
                            });
                        }
                    }
                    Err(e) => {
                        self.shared
                            .metrics
                            .records_pending
                            .fetch_sub(1, Ordering::Relaxed);
                        self.shared
                            .metrics
                            .write_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.shared.metrics.set_last_error(&e);
                        tracing::error!(cause = %e, "audit event not recorded");
                        if let Some(w) = waiter {
                            let _ = w.send(Err(e));
                        }
                    }
                }
                urgent
            }
            Msg::Encoded(e) => {
                self.push_encoded(e);
                false
            }
            Msg::Flush(tx) => {
                self.waiters.push(Waiter {
                    seq: self.last_seq,
                    tx,
                    before_head: true,
                });
                true
            }
            Msg::Shutdown(w) => {
                if !*shutting_down {
                    *shutting_down = true;
                    self.push_internal(EventKind::AuditStopped(event::AuditStopped {
                        reason: "shutdown".into(),
                    }));
                }
                self.waiters.push(Waiter {
                    seq: self.last_seq,
                    tx: w,
                    before_head: true,
                });
                true
            }
        }
    }

    fn push_internal(&mut self, kind: EventKind) {
        self.shared
            .metrics
            .records_pending
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.push(Event::now(kind)) {
            self.shared
                .metrics
                .records_pending
                .fetch_sub(1, Ordering::Relaxed);
            tracing::error!(cause = %e, "internal audit event not recorded");
        }
    }

    /// When the active file is due for time-based rotation.
    fn rotation_due_at(&self) -> Option<Instant> {
        let interval = self.shared.cfg.rotate_interval?;
        self.file.as_ref()?;
        let (_, first_ts) = self.file_first?;
        let age =
            Duration::from_micros((Timestamp::now().micros() - first_ts.micros()).max(0) as u64);
        Some(Instant::now() + interval.saturating_sub(age))
    }

    fn push_rotation(&mut self) {
        let Some((first_seq, _)) = self.file_first else {
            return;
        };
        let Some(path) = &self.shared.cfg.file else {
            return;
        };
        let name = sink::archive_name(path, first_seq);
        self.push_internal(EventKind::Rotated(event::Rotated { archived_as: name }));
    }

    /// Apply the text policy, chain, encode, queue for the sinks.
    fn push(&mut self, mut ev: Event) -> Result<u64, Error> {
        apply_text_policy(&self.shared.cfg, &mut ev);
        let rotate_to = match &ev.kind {
            EventKind::Rotated(r) => Some(r.archived_as.clone()),
            _ => None,
        };
        self.append(ev.ts, ev.type_name(), rotate_to, |buf| {
            chain::body(buf, &ev).map_err(|e| Error::Encode(e.to_string()))
        })
    }

    fn push_encoded(&mut self, e: Encoded) {
        let res = self.append(e.ts, e.kind, None, |buf| {
            buf.extend_from_slice(&e.body);
            Ok(())
        });
        // Appending bytes cannot fail; `append` only fails when encoding does.
        debug_assert!(res.is_ok());
    }

    /// Append one line: chain prefix, then `body` writes the fields. A line
    /// that would take the active file over `rotate_bytes` is written after
    /// a `rotated` record instead (so `body` may run twice).
    fn append(
        &mut self,
        ts: Timestamp,
        kind: &'static str,
        rotate_to: Option<String>,
        body: impl Fn(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let mut mark = self.write_line(&body)?;
        if rotate_to.is_none()
            && self.file.is_some()
            && self.file_first.is_some()
            && self.file_bytes + self.pending.since(mark).len() as u64 + 1
                > self.shared.cfg.rotate_bytes
        {
            self.pending.abandon(mark);
            self.push_rotation();
            mark = self.write_line(&body)?;
        }
        let len = self.pending.since(mark).len() as u64;
        let seq = self.last_seq + 1;
        if rotate_to.is_some() {
            self.file_first = None;
            self.file_bytes = 0;
        } else {
            if self.file_first.is_none() {
                self.file_first = Some((seq, ts));
            }
            self.file_bytes += len + 1;
        }
        self.oldest_unflushed.get_or_insert_with(Instant::now);
        let prev = self.last_hash;
        self.last_hash = self.pending.commit(mark, seq, prev, ts, kind, rotate_to);
        self.last_seq = seq;
        Ok(seq)
    }

    /// Write the next line's chain prefix and fields into the pending
    /// text; returns where it starts (nothing is left behind on error).
    fn write_line(
        &mut self,
        body: &impl Fn(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mark = self.pending.mark();
        chain::write_prefix(self.pending.buf(), self.last_seq + 1, &self.last_hash);
        if let Err(e) = body(self.pending.buf()) {
            self.pending.abandon(mark);
            return Err(e);
        }
        Ok(mark)
    }

    /// Bring every sink up to the last assigned seq, then release waiters.
    async fn flush_sinks(&mut self) -> Result<(), Error> {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let mut first_err = None;
        if let Some(f) = &mut self.file {
            let todo: Vec<&Line> = self.pending.after(f.acked);
            if !todo.is_empty() {
                if let Err(e) = f.write(&self.pending, &todo, metrics) {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(s) = &mut self.stdout {
            let todo: Vec<&Line> = self.pending.after(s.acked);
            if !todo.is_empty() {
                if let Err(e) = s.write(&self.pending, &todo) {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(p) = &mut self.pg {
            let todo: Vec<&Line> = self.pending.after(p.acked);
            if !todo.is_empty() {
                if let Err(e) = p.write(&self.pending, &todo).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        let stored = [
            self.file.as_ref().map(|f| f.acked),
            self.stdout.as_ref().map(|s| s.acked),
            self.pg.as_ref().map(|p| p.acked),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.last_seq);
        let done = self.pending.release(stored);
        metrics.records_written.fetch_add(done, Ordering::Relaxed);
        metrics.records_pending.fetch_sub(done, Ordering::Relaxed);
        // Durable records are released once the log is fsynced: the head
        // sidecar (a second fsync) is a truncation check that may lag the
        // log, never lead it, so an approval need not wait for it. Flush and
        // shutdown callers also get an up-to-date head. Health first, so a
        // released caller sees the sinks' state as of its own record.
        if first_err.is_none() && !self.shared.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("audit sinks recovered");
        }
        self.release_waiters(stored, false);
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_head_if_stale() {
                first_err.get_or_insert(e);
            }
        }
        if first_err.is_none() {
            self.release_waiters(stored, true);
        }
        if self.pending.is_empty() {
            self.oldest_unflushed = None;
        }
        match first_err {
            None => Ok(()),
            Some(e) => {
                self.shared.healthy.store(false, Ordering::Release);
                metrics.write_errors.fetch_add(1, Ordering::Relaxed);
                metrics.set_last_error(&e);
                tracing::error!(cause = %e, pending = self.pending.len(), "audit sink write failed; will retry");
                Err(e)
            }
        }
    }
}

/// Someone waiting for records up to `seq` to be stored.
struct Waiter {
    seq: u64,
    tx: oneshot::Sender<Result<(), Error>>,
    /// Wait for the `.head` sidecar too (flush, shutdown); approval
    /// records need only the log itself on disk.
    before_head: bool,
}

impl Writer {
    fn release_waiters(&mut self, stored: u64, head_written: bool) {
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &self.waiters[i];
            if w.seq <= stored && (head_written || !w.before_head) {
                let w = self.waiters.swap_remove(i);
                let _ = w.tx.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }
}

/// What the rules made of a statement (its categories, tables, functions,
/// decision, rules and rule set) as its record carries it (see
/// [`StatementRecord::judged`]).
pub fn judged_fields(
    categories: &[&str],
    tables: &[&str],
    functions: &[&str],
    decision: &str,
    rules: &[&str],
    ruleset: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    encode::write_judged(
        &mut out, categories, tables, functions, decision, rules, ruleset,
    );
    out
}

/// A session's identity as every one of its statement records carries it
/// (see [`StatementRecord::identity`]): encoded once per session.
pub fn identity_fields(session: &str, agent: &str) -> Vec<u8> {
    encode::identity(session, agent)
}

/// A statement record's body, as the writer would encode the equivalent
/// `Statement` event under `cfg` (text policy included): what
/// [`Auditor::statement`] queues. Public for the benchmark (`bench/audit.rs`).
pub fn statement_body(cfg: &AuditConfig, ts: Timestamp, r: &StatementRecord<'_>) -> Vec<u8> {
    let (sql, mode) = recorded_text(cfg, r.sql, r.redacted, r.request_id.is_some());
    let fields = encode::Fields {
        session: r.session,
        agent: r.agent,
        identity: r.identity,
        statement: r.statement,
        sql: sql.as_deref(),
        text_mode: mode.as_str(),
        parameters: (cfg.log_parameters && r.parameter_count > 0).then_some(r.parameters),
        parameter_count: r.parameter_count.max(r.parameters.len()),
        categories: r.categories,
        tables: r.tables,
        functions: r.functions,
        decision: r.decision,
        rules: r.rules,
        ruleset: r.ruleset,
        judged: r.judged,
        request_id: r.request_id,
        outcome: r.outcome,
        duration_us: r.duration_us,
    };
    let mut body = Vec::with_capacity(480 + sql.as_deref().map_or(0, str::len));
    encode::statement(&mut body, ts, &fields);
    body
}

/// What the trail records of a statement's text, and under which mode:
/// held statements in full (that is what was approved), others per
/// `statement_text`; secrets scrubbed either way. `redacted`: the text's
/// redaction if the caller already has it (see `StatementRecord`).
fn recorded_text<'a>(
    cfg: &AuditConfig,
    sql: Option<&str>,
    redacted: Option<&'a str>,
    held: bool,
) -> (Option<Cow<'a, str>>, TextMode) {
    let mode = if held {
        TextMode::Full
    } else {
        cfg.statement_text
    };
    let text = match (mode, sql, redacted) {
        (TextMode::None, ..) => None,
        (TextMode::Full, Some(sql), _) => Some(Cow::Owned(scrub_secrets(sql))),
        // The caller's redaction, with or without the text it came from.
        (TextMode::Redacted, sql, Some(r)) => {
            debug_assert!(
                sql.is_none_or(|sql| r == redact(sql)),
                "a caller's redaction differs"
            );
            Some(Cow::Borrowed(r))
        }
        (TextMode::Redacted, Some(sql), None) => Some(Cow::Owned(redact(sql))),
        (_, None, _) => None,
    };
    (text, mode)
}

/// The text policy for records given as events. Redaction happens inside
/// the audit module either way (here on the writer thread, or in
/// [`Auditor::statement`] on the caller's): a caller hands over raw text
/// and cannot forget to redact it.
fn apply_text_policy(cfg: &AuditConfig, ev: &mut Event) {
    match &mut ev.kind {
        EventKind::Statement(s) => {
            let (sql, mode) = recorded_text(cfg, s.sql.as_deref(), None, s.request_id.is_some());
            s.sql = sql.map(Cow::into_owned);
            s.text_mode = mode.as_str().to_string();
            if let Some(p) = &s.parameters {
                s.parameter_count = s.parameter_count.max(p.len());
            }
            if !cfg.log_parameters {
                s.parameters = None;
            }
        }
        EventKind::ApprovalRequested(a) => {
            a.sql = scrub_secrets(&a.sql);
            for p in &mut a.prepared {
                p.sql = scrub_secrets(&p.sql);
            }
        }
        _ => {}
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => crate::timers::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn ev(n: u64) -> Event {
        Event::now(EventKind::AdminAction(event::AdminAction {
            actor: "ops".into(),
            remote_addr: "127.0.0.1".into(),
            action: format!("action-{n}"),
            target: None,
            outcome: "ok".into(),
        }))
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            crate::timers::sleep(Duration::from_millis(5)).await;
        }
    }

    fn config(dir: &Path, policy: FailurePolicy) -> AuditConfig {
        let mut cfg = AuditConfig::with_file(dir.join("a.jsonl"));
        cfg.on_sink_failure = policy;
        cfg.flush_interval = Duration::from_millis(5);
        cfg.queue_capacity = 16;
        cfg
    }

    /// `Auditor::statement` (the session's path) writes exactly the bytes
    /// the writer writes for the equivalent `Statement` event, under every
    /// text policy.
    #[test]
    fn statement_records_encode_like_statement_events() {
        let params = [Some("4111 1111 1111 1111".to_string()), None];
        let texts = [
            "SELECT * FROM t WHERE card = '4111' AND n > 10",
            "ALTER ROLE bob PASSWORD 'hunter2'",
            "SELECT 'unterminated",
            "select \"Ünïcode\" from \"t\"\"q\" -- note 'x'\n where a = $1",
        ];
        let mut cases = 0;
        for mode in [TextMode::Full, TextMode::Redacted, TextMode::None] {
            for log_parameters in [false, true] {
                for held in [None, Some("r-1")] {
                    for sql in texts {
                        for parameters in [&params[..], &[]] {
                            let mut cfg = AuditConfig::with_file("unused.jsonl");
                            cfg.statement_text = mode;
                            cfg.log_parameters = log_parameters;
                            let outcome = Outcome::Ok {
                                command_tag: "UPDATE 3".into(),
                                rows: Some(3),
                            };
                            let rec = StatementRecord {
                                session: "s-1",
                                agent: "bot \"quoted\"",
                                identity: None,
                                statement: 7,
                                sql: Some(sql),
                                redacted: None,
                                parameters,
                                parameter_count: parameters.len(),
                                categories: &["read", "write"],
                                tables: &["public.t"],
                                functions: &[],
                                decision: "allow",
                                rules: &["r2", "r1"],
                                ruleset: Some("abc"),
                                judged: None,
                                request_id: held,
                                outcome: (&outcome).into(),
                                duration_us: 42,
                            };
                            let ts = Timestamp(1_796_000_000_123_456);
                            let fast = statement_body(&cfg, ts, &rec);
                            // Each variant below must encode exactly as `rec`.
                            let same_as_fast = |variant: &StatementRecord<'_>, what: &str| {
                                assert_eq!(
                                    String::from_utf8_lossy(&statement_body(&cfg, ts, variant)),
                                    String::from_utf8_lossy(&fast),
                                    "{what}: {mode:?} {sql}"
                                );
                            };
                            // The classifier's redaction, handed in, gives
                            // the same record.
                            let hint = redact(sql);
                            let ident = identity_fields(rec.session, rec.agent);
                            let judged = judged_fields(
                                rec.categories,
                                rec.tables,
                                rec.functions,
                                rec.decision,
                                rec.rules,
                                rec.ruleset,
                            );
                            let hinted = StatementRecord {
                                redacted: Some(&hint),
                                // And so does the session's own encoding
                                // of its identity, and of what the rules
                                // made of the statement (the lists are
                                // then not read).
                                identity: Some(&ident),
                                judged: Some(&judged),
                                categories: &[],
                                tables: &[],
                                rules: &[],
                                ..rec
                            };
                            same_as_fast(&hinted, "hinted");
                            if mode == TextMode::Redacted && held.is_none() {
                                // The redaction alone is enough there.
                                let textless = StatementRecord {
                                    sql: None,
                                    ..hinted
                                };
                                same_as_fast(&textless, "redaction alone");
                            }
                            if !log_parameters {
                                // A caller that renders values only for a
                                // trail that logs them passes none: the
                                // record still counts them.
                                let counted = StatementRecord {
                                    parameters: &[],
                                    ..rec
                                };
                                same_as_fast(&counted, "values counted, not given");
                            }
                            let mut ev = Event {
                                ts,
                                kind: EventKind::Statement(event::Statement {
                                    session: rec.session.into(),
                                    agent: rec.agent.into(),
                                    statement: 7,
                                    sql: Some(sql.into()),
                                    text_mode: String::new(),
                                    parameters: (!parameters.is_empty())
                                        .then(|| parameters.to_vec()),
                                    parameter_count: parameters.len(),
                                    categories: vec!["read".into(), "write".into()],
                                    tables: vec!["public.t".into()],
                                    functions: vec![],
                                    decision: "allow".into(),
                                    rules: vec!["r2".into(), "r1".into()],
                                    ruleset: Some("abc".into()),
                                    request_id: held.map(str::to_string),
                                    outcome: outcome.clone(),
                                    duration_us: 42,
                                }),
                            };
                            apply_text_policy(&cfg, &mut ev);
                            let mut derived = serde_json::to_vec(&ev).unwrap();
                            derived.remove(0);
                            assert_eq!(
                                String::from_utf8(fast).unwrap(),
                                String::from_utf8(derived).unwrap()
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 3 * 2 * 2 * 4 * 2);
    }

    /// Encoded records and events share one chain: seq, prev and hashes
    /// as `verify` checks them, across a size rotation.
    #[tokio::test]
    async fn encoded_statements_chain_with_other_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), FailurePolicy::Block);
        cfg.queue_capacity = 1024;
        cfg.rotate_bytes = 4096;
        let (auditor, task) = Auditor::start(cfg).await.unwrap();
        for i in 0..40u64 {
            if i % 3 == 0 {
                auditor.emit(ev(i));
            }
            auditor.statement(&StatementRecord {
                session: "s-1",
                agent: "bot",
                identity: None,
                statement: i,
                sql: Some("UPDATE t SET a = 'secret' WHERE id = 5"),
                redacted: None,
                parameters: &[],
                parameter_count: 0,
                categories: &["write"],
                tables: &["t"],
                functions: &[],
                decision: "allow",
                rules: &[],
                ruleset: None,
                judged: None,
                request_id: None,
                outcome: OutcomeRef::Ok {
                    command_tag: "UPDATE 1",
                    rows: Some(1),
                },
                duration_us: i,
            });
        }
        auditor.shutdown().await.unwrap();
        task.join().await.unwrap();
        let files = trail_files(&dir.path().join("a.jsonl")).unwrap();
        assert!(files.len() > 2, "rotated: {files:?}");
        let report = verify(&files);
        assert!(report.ok, "{report:?}");
        let records = chain::read_records(&files).unwrap();
        let statements: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.event.kind {
                EventKind::Statement(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(statements.len(), 40);
        assert!(
            statements
                .iter()
                .enumerate()
                .all(|(i, s)| s.statement == i as u64 && s.duration_us == i as u64)
        );
        assert_eq!(
            statements[0].sql.as_deref(),
            Some("UPDATE t SET a = ? WHERE id = ?")
        );
        assert_eq!(statements[0].text_mode, "redacted");
    }

    #[tokio::test]
    async fn refuse_policy_turns_unhealthy_and_fails_durable_records_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, task) = Auditor::start(config(dir.path(), FailurePolicy::Refuse))
            .await
            .unwrap();
        a.metrics().fail_writes.store(true, Relaxed);
        a.record(ev(1)).await.unwrap();
        eventually("unhealthy", || !a.is_healthy()).await;
        let t = Instant::now();
        let err = a.record_durable(ev(2)).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(200));
        let msg = err.to_string();
        assert!(
            msg.contains("a.jsonl") && msg.contains("injected failure"),
            "{msg}"
        );
        assert!(a.metrics().write_errors.load(Relaxed) >= 1);
        assert!(a.metrics().last_error().unwrap().contains("a.jsonl"));
        // The writer stops draining while failing, so the bounded queue fills
        // and `record` refuses instead of growing memory.
        let mut refused = None;
        for i in 0..64 {
            if let Err(e) = a.record(ev(100 + i)).await {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(refused, Some(Error::QueueFull { capacity: 16 })),
            "{refused:?}"
        );
        assert!(a.metrics().records_refused.load(Relaxed) >= 2);

        a.metrics().fail_writes.store(false, Relaxed);
        eventually("healthy again", || a.is_healthy()).await;
        a.record_durable(ev(3)).await.unwrap();
        a.shutdown().await.unwrap();
        task.join().await.unwrap();
        let files = vec![dir.path().join("a.jsonl")];
        assert!(verify(&files).ok);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("action-1\"") && text.contains("action-3\""));
        assert!(
            !text.contains("action-2\""),
            "refused record must not appear"
        );
        assert_eq!(a.metrics().records_pending.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn block_policy_holds_durable_records_until_the_sink_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, task) = Auditor::start(config(dir.path(), FailurePolicy::Block))
            .await
            .unwrap();
        a.metrics().fail_writes.store(true, Relaxed);
        let a2 = a.clone();
        let pending = tokio::spawn(async move { a2.record_durable(ev(1)).await });
        eventually("unhealthy", || !a.is_healthy()).await;
        crate::timers::sleep(Duration::from_millis(200)).await;
        assert!(
            !pending.is_finished(),
            "durable record returned while the sink fails"
        );
        a.metrics().fail_writes.store(false, Relaxed);
        crate::timers::timeout(Duration::from_secs(10), pending)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(a.is_healthy());
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert!(text.contains("action-1\""));
        a.shutdown().await.unwrap();
        task.join().await.unwrap();
        assert!(verify(&[dir.path().join("a.jsonl")]).ok);
        assert!(!a.is_healthy(), "a stopped writer audits nothing");
        assert!(matches!(a.record(ev(9)).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_disabled_auditor_accepts_everything_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), FailurePolicy::Refuse);
        cfg.enabled = false;
        let (a, task) = Auditor::start(cfg).await.unwrap();
        assert!(!a.is_enabled() && a.is_healthy());
        // More than the queue holds (16): nothing queues, nothing is refused.
        for i in 0..64 {
            a.emit(ev(i));
            a.record(ev(i)).await.unwrap();
            a.try_record(ev(i)).unwrap();
        }
        a.record_durable(ev(99)).await.unwrap();
        a.flush().await.unwrap();
        a.shutdown().await.unwrap();
        task.join().await.unwrap();
        let m = a.metrics();
        let written = m.records_written.load(Relaxed);
        let pending = m.records_pending.load(Relaxed);
        let refused = m.records_refused.load(Relaxed);
        assert_eq!((written, pending, refused), (0, 0, 0));
        assert!(!dir.path().join("a.jsonl").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn dropping_every_handle_flushes_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), FailurePolicy::Block);
        cfg.flush_interval = Duration::from_secs(10);
        let (a, task) = Auditor::start(cfg).await.unwrap();
        a.record(ev(1)).await.unwrap();
        drop(a);
        task.join().await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        assert!(text.contains("action-1\"") && text.contains("all auditor handles dropped"));
        assert!(text.contains("\"statement_text\":\"redacted\",\"log_parameters\":false"));
    }
}
