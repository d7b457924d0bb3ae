//! One client session after login: two directions relayed concurrently in
//! one task.
//!
//! - client -> upstream ([`Inbound`]): frames client messages in place,
//!   groups them into *units* (a simple Query, or an extended-protocol
//!   segment up to Sync/Flush), asks the [`Policy`] for a verdict on each
//!   unit, and forwards the unit's bytes unchanged, or a refusal in its place.
//! - upstream -> client ([`outbound`]): passes server bytes through as they
//!   arrive, reading only the headers of frames it must see (ReadyForQuery
//!   for transaction state, ParameterStatus for pinned settings), never
//!   decoding rows. Synthesized messages (notices) are injected at frame
//!   boundaries.
//!
//! The two directions run concurrently so that a client pipelining a large
//! batch can never deadlock against a server streaming large results.

use super::frame::{self, Body, FrameError, Tag};
use super::gated::Gated;
use super::inflight::InFlight;
use super::inflight::UnitResult;
use super::messages::{self, Severity};
use super::policy::{self, Held, Policy, Unit, Verdict};
use super::record::Draft;
use super::sqlstate;
use super::{Proxy, client::Established};
use crate::approval;
use crate::audit::OutcomeRef;
use crate::audit::event::{self as audit, Event, EventKind, decision};
use bytes::{Buf, BytesMut};
use pgwire::tokio::server::MaybeTls;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a session ended (logged at the end of every session).
#[derive(Debug)]
pub enum End {
    ClientTerminated,
    ClientGone,
    UpstreamClosed,
    Shutdown,
    ProtocolError(FrameError),
    UnsupportedMessage(u8),
    UnsafeServerSetting(String),
    /// A refused unit ended in Flush, not Sync: there is no point in the
    /// protocol where a refusal can be answered without a Sync, so the
    /// session ends (with the refusal's own SQLSTATE) rather than run it.
    RefusedUnsynced {
        code: &'static str,
        message: String,
    },
    /// A simple Query after extended-protocol messages with no Sync since.
    /// If those failed, the server skips everything up to a Sync, this
    /// Query included, without a word: the statements it would skip (a
    /// PREPARE, a DEALLOCATE) and the answers the proxy expects would no
    /// longer match what the server did.
    QueryWithoutSync,
    /// A message other than CopyData/CopyDone/CopyFail while a COPY FROM
    /// STDIN is under way (the server ignores a Sync there and errors on
    /// the rest, so the answers the proxy expects would not come), or other
    /// than Sync right after an extended-protocol COPY.
    CopyProtocol(u8),
    Io(std::io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientTerminated => f.write_str("client terminated"),
            End::ClientGone => f.write_str("client disconnected"),
            End::UpstreamClosed => f.write_str("upstream closed the connection"),
            End::Shutdown => f.write_str("proxy shutting down"),
            End::ProtocolError(e) => write!(f, "protocol error: {e}"),
            End::UnsupportedMessage(t) => write!(f, "unsupported message {}", Tag(*t)),
            End::UnsafeServerSetting(s) => write!(f, "server reported unsafe setting {s}"),
            End::RefusedUnsynced { message, .. } => write!(
                f,
                "refused statement in an extended batch without Sync: {message}"
            ),
            End::CopyProtocol(t) => write!(
                f,
                "message {} while COPY FROM STDIN is under way (send CopyData, then CopyDone or CopyFail, then Sync if it was started with Execute)",
                Tag(*t)
            ),
            End::QueryWithoutSync => f.write_str(
                "simple Query after extended-protocol messages without Sync (send Sync first)",
            ),
            End::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// State the two directions share. Atomics, because both futures live in
/// one task but must be `Send`.
pub struct Shared {
    /// Last ReadyForQuery status: b'I', b'T' or b'E'.
    pub txn: AtomicU8,
    /// Units forwarded and not yet answered with ReadyForQuery.
    pub in_flight: InFlight,
    /// The outbound direction has written whole frames only (safe to inject).
    pub at_boundary: AtomicBool,
    /// Copy-in state (`COPY_*`): set by the client side when it forwards a
    /// `COPY ... FROM STDIN`, by the server side when the server enters
    /// copy-in mode (CopyInResponse) or answers the unit without it.
    pub copy: AtomicU8,
    /// Signalled when the server side moves `copy` on (CopyInResponse, or
    /// the answer that ends the COPY); a waiter always looks again, so a
    /// signal nobody waited for costs one extra look.
    copy_settled: tokio::sync::Notify,
    /// Set (for good) before the first notice is queued for injection.
    /// Until then the outbound direction does not poll the injection
    /// channel: a poll of an empty channel on every server read was 3% of
    /// the relay's own CPU, for a channel only a held statement uses.
    pub injecting: AtomicBool,
    /// Wakes the outbound direction, which is polled only on its own
    /// wake-ups (`gated`): an injection must reach a direction that was
    /// not watching the channel.
    wake_outbound: std::sync::OnceLock<std::task::Waker>,
}

/// No COPY FROM STDIN under way.
const COPY_NONE: u8 = 0;
/// A COPY FROM STDIN went upstream; the server has not said yet whether
/// it entered copy-in mode.
const COPY_EXPECTED: u8 = 1;
/// The server is in copy-in mode until it reads CopyDone or CopyFail.
const COPY_IN: u8 = 2;

impl Shared {
    fn idle(&self) -> bool {
        self.txn.load(Ordering::Acquire) == b'I' && self.in_flight.is_empty()
    }
}

pub async fn run(proxy: Arc<Proxy>, est: Established, shutdown: CancellationToken) {
    let Established {
        info,
        client,
        client_buf,
        upstream,
    } = est;
    // The loop below polls its shutdown branch on every wake of the
    // session. Polling a token locks its node's mutex and its `Notify`'s:
    // on the proxy-wide token every session on every thread would take
    // the same two locks per wake. A child token's are this session's own.
    let shutdown = shutdown.child_token();
    let key = proxy
        .cancel
        .register(upstream.backend_pid, upstream.backend_secret);
    let (mut client, mut upstream_stream) = (client, upstream.stream);
    let (mut cr, mut cw) = super::halves::split(&mut client, |c| match c {
        MaybeTls::Plain(tcp) => Some(tcp),
        _ => None,
    });
    let (mut ur, mut uw) = super::halves::split(&mut upstream_stream, |s| match s {
        super::upstream::Stream::Plain(tcp) => Some(tcp),
        super::upstream::Stream::Tls(_) => None,
    });

    // Finish the client's login: what the server told us, with our own key.
    let mut hello = BytesMut::with_capacity(512);
    messages::auth_ok(&mut hello);
    hello.extend_from_slice(&upstream.parameter_frames);
    messages::backend_key_data(&mut hello, key.pid, key.secret);
    messages::ready_for_query(&mut hello, b'I');
    if cw.write_all(&hello).await.is_err() {
        return;
    }

    proxy.metrics.sessions_total.inc();
    proxy.metrics.sessions_active.inc();
    tracing::info!(
        session = %info.id, agent = %info.agent, client = %info.client_addr, tls = info.tls,
        client_cert = info.client_cert_subject.as_deref().unwrap_or(""),
        database = %info.database, application_name = %info.application_name,
        upstream_tls = upstream.tls, "session started"
    );

    proxy
        .audit
        .emit(Event::now(EventKind::SessionStart(audit::SessionStart {
            session: info.id.clone(),
            agent: info.agent.clone(),
            client_addr: info.client_addr.ip().to_string(),
            client_port: info.client_addr.port(),
            tls: info.tls,
            client_cert_subject: info.client_cert_subject.clone(),
            database: info.database.clone(),
            application_name: Some(info.application_name.clone()).filter(|a| !a.is_empty()),
        })));
    let shared = Shared {
        txn: AtomicU8::new(b'I'),
        in_flight: InFlight::default(),
        at_boundary: AtomicBool::new(true),
        copy: AtomicU8::new(COPY_NONE),
        copy_settled: tokio::sync::Notify::new(),
        injecting: AtomicBool::new(false),
        wake_outbound: std::sync::OnceLock::new(),
    };
    let (inject_tx, inject_rx) = mpsc::channel::<BytesMut>(16);
    let mut inbound = Inbound {
        buf: super::io::keep_if_nonempty(client_buf),
        out: BytesMut::new(),
        read_size: super::io::ReadSize::new(),
        max: proxy.config.limits.max_message_bytes,
        unsynced: false,
        copy_from_segment: false,
        copy_sync_owed: false,
        policy: Policy::new(proxy.clone(), info.clone(), key.signal.clone(), inject_tx),
        shared: &shared,
        metrics: &proxy.metrics,
    };
    let mut statements = 0u64;

    let end = {
        let a = inbound.run(&mut cr, &mut uw);
        let b = outbound(
            &mut ur,
            &mut cw,
            upstream.leftover,
            &shared,
            inject_rx,
            &proxy.metrics,
        );
        let stop = shutdown.cancelled();
        tokio::pin!(a, b, stop);
        // Each branch polled only on its own wake-up (`gated`).
        let (mut a, mut b, mut stop) = (Gated::new(a), Gated::new(b), Gated::new(stop));
        let _ = shared.wake_outbound.set(b.waker());
        // Made only once a shutdown begins: a relaying session holds no
        // timer (and its task is smaller by two).
        let mut drain: Option<(Pin<Box<tokio::time::Sleep>>, tokio::time::Interval)> = None;
        loop {
            let draining = drain.is_some();
            tokio::select! {
                // Fixed order, relay first: no random draw per wake.
                biased;
                r = &mut a => break r,
                r = &mut b => break r,
                _ = &mut stop, if !draining => {
                    drain = Some((
                        Box::pin(crate::timers::sleep(proxy.config.limits.shutdown_timeout)),
                        crate::timers::interval(std::time::Duration::from_millis(20)),
                    ));
                }
                done = drained(&mut drain, &shared), if draining => if done { break End::Shutdown },
            }
        }
    };
    statements += inbound.policy.statements;

    if matches!(
        end,
        End::Shutdown
            | End::ProtocolError(_)
            | End::UnsupportedMessage(_)
            | End::UnsafeServerSetting(_)
            | End::RefusedUnsynced { .. }
            | End::QueryWithoutSync
            | End::CopyProtocol(_)
    ) && shared.at_boundary.load(Ordering::Acquire)
    {
        let (code, msg) = match &end {
            End::Shutdown => (
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection: pg-airlock is shutting down".to_string(),
            ),
            End::UnsupportedMessage(t) if *t == b'F' => (
                sqlstate::FEATURE_NOT_SUPPORTED,
                "the function-call protocol is not supported through pg-airlock".to_string(),
            ),
            End::UnsupportedMessage(t) => (
                sqlstate::PROTOCOL_VIOLATION,
                format!("unsupported frontend message type {}", Tag(*t)),
            ),
            End::UnsafeServerSetting(s) => (
                sqlstate::PROTOCOL_VIOLATION,
                format!("terminating connection: {s}"),
            ),
            End::RefusedUnsynced { code, message } => (
                *code,
                format!(
                    "{message} (terminating connection: the batch ended in Flush, not Sync, so the refusal cannot be answered in place)"
                ),
            ),
            End::ProtocolError(FrameError::TooLarge { .. }) => {
                (sqlstate::PROGRAM_LIMIT_EXCEEDED, end.to_string())
            }
            _ => (sqlstate::PROTOCOL_VIOLATION, end.to_string()),
        };
        let mut out = BytesMut::new();
        messages::error(&mut out, Severity::Fatal, code, &msg, None, None);
        let _ = crate::timers::timeout(std::time::Duration::from_secs(1), cw.write_all(&out)).await;
    }
    let _ = crate::timers::timeout(std::time::Duration::from_secs(1), cw.shutdown()).await;
    // Tell the server we are leaving, so its backend ends now rather than
    // when it notices the closed socket.
    let _ = crate::timers::timeout(
        std::time::Duration::from_secs(1),
        uw.write_all(&[b'X', 0, 0, 0, 4]),
    )
    .await;

    shared.in_flight.abandon(&end.to_string());
    if matches!(end, End::ProtocolError(_) | End::UnsupportedMessage(_)) {
        proxy.metrics.protocol_errors.inc();
    }
    proxy.metrics.sessions_active.dec();
    let secs = info
        .started_at
        .elapsed()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    tracing::info!(session = %info.id, agent = %info.agent, reason = %end, statements, duration_s = secs, "session ended");
    proxy
        .audit
        .emit(Event::now(EventKind::SessionEnd(audit::SessionEnd {
            session: info.id.clone(),
            agent: info.agent.clone(),
            started_at: Some(crate::audit::Timestamp::from_system(info.started_at)),
            statements,
            reason: end.to_string(),
        })));
    drop(key);
}

/// Client -> upstream direction.
pub struct Inbound<'a> {
    /// Client bytes received and not yet forwarded.
    buf: BytesMut,
    /// Bytes to send upstream after this pass (reused; released when a
    /// burst left it large).
    out: BytesMut,
    read_size: super::io::ReadSize,
    max: usize,
    /// Extended-protocol messages went upstream with no Sync since (a
    /// Flush-ended segment): the server may be in an implicit transaction,
    /// or skipping messages after an error.
    unsynced: bool,
    /// The COPY under way was started by an extended-protocol segment:
    /// the server ignored that segment's Sync, so the client's Sync after
    /// CopyDone/CopyFail answers it (`copy_sync_owed`).
    copy_from_segment: bool,
    copy_sync_owed: bool,
    pub policy: Policy,
    shared: &'a Shared,
    metrics: &'a crate::metrics::Metrics,
}

impl Inbound<'_> {
    async fn run<R, W>(&mut self, cr: &mut R, uw: &mut W) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // Frames [0, seg_end) of `buf` form an extended-protocol segment
        // that has been inspected but not yet decided (no Sync/Flush yet).
        let mut seg_end = 0usize;
        loop {
            loop {
                let h = match frame::header(&self.buf[seg_end..], self.max) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => return End::ProtocolError(e),
                };
                if self.buf.len() - seg_end < h.total {
                    self.buf.reserve(h.total - (self.buf.len() - seg_end));
                    break;
                }
                if seg_end == 0
                    && (self.copy_sync_owed
                        || self.shared.copy.load(Ordering::Acquire) != COPY_NONE)
                {
                    if !self.copy_sync_owed
                        && !matches!(h.tag, b'd' | b'c' | b'f')
                        && self.shared.copy.load(Ordering::Acquire) == COPY_EXPECTED
                    {
                        // The server has not said yet whether the COPY
                        // entered copy-in mode, and a client that saw its
                        // error may already send the next query
                        // (tokio-postgres returns on ErrorResponse, before
                        // ReadyForQuery). Wait for the server's word: in
                        // copy-in mode this frame ends the session, else it
                        // is an ordinary one. The COPY itself may still be
                        // in `out`.
                        if !self.out.is_empty() {
                            if let Err(e) = uw.write_all(&self.out).await {
                                return End::Io(e);
                            }
                            self.out.clear();
                        }
                        self.shared.copy_settled.notified().await;
                        continue;
                    }
                    match self.copy_frame(h.tag, h.total) {
                        Ok(()) => continue,
                        Err(end) => return end,
                    }
                }
                if seg_end == 0
                    && !self.unsynced
                    && self.policy.has_named_portals()
                    && self.shared.idle()
                {
                    // Every unit answered, no transaction open: the server
                    // has closed all protocol portals.
                    self.policy.transaction_ended();
                }
                let range = seg_end..seg_end + h.total;
                if (h.tag == b'P' || (h.tag == b'Q' && seg_end == 0)) && h.total > OFF_THREAD_BYTES
                {
                    self.preclassify(h.tag, range.clone()).await;
                }
                match h.tag {
                    b'P' | b'B' | b'E' | b'D' | b'C' => {
                        if let Err(e) = self.policy.extended(&self.buf[range.clone()]) {
                            return End::ProtocolError(e);
                        }
                        seg_end = range.end;
                    }
                    b'S' | b'H' => {
                        seg_end = range.end;
                        let kind = if h.tag == b'S' {
                            Kind::SyncedSegment
                        } else {
                            Kind::OpenSegment
                        };
                        if let Err(end) = self.decide(kind, seg_end, cr, uw).await {
                            return end;
                        }
                        self.buf.advance(seg_end);
                        seg_end = 0;
                    }
                    b'Q' => {
                        if seg_end > 0 || self.unsynced {
                            return End::QueryWithoutSync;
                        }
                        if let Err(end) = self.decide(Kind::Query, h.total, cr, uw).await {
                            return end;
                        }
                        self.buf.advance(h.total);
                    }
                    // COPY sub-protocol: never held or batched (no Sync follows).
                    b'd' | b'c' | b'f' => {
                        if seg_end > 0 {
                            if let Err(end) = self.settle_open_segment(seg_end, cr, uw).await {
                                return end;
                            }
                            seg_end = 0;
                            continue;
                        }
                        self.out.extend_from_slice(&self.buf[..h.total]);
                        self.buf.advance(h.total);
                    }
                    b'X' => {
                        // An unfinished segment dies with the client.
                        let _ = uw.write_all(&self.out).await;
                        return End::ClientTerminated;
                    }
                    other => return End::UnsupportedMessage(other),
                }
            }
            if !self.out.is_empty() {
                if let Err(e) = uw.write_all(&self.out).await {
                    return End::Io(e);
                }
                self.out.clear();
                super::io::release_if_large(&mut self.out);
            }
            super::io::release_if_large(&mut self.buf);
            let room = self.read_size.prepare(&mut self.buf);
            match cr.read_buf(&mut self.buf).await {
                Ok(0) => return End::ClientGone,
                Ok(n) => {
                    self.read_size.record(n, room);
                    self.metrics.bytes_from_clients.add(n as u64)
                }
                Err(e) => return End::Io(e),
            }
        }
    }

    /// Classify the text of a large Query or Parse on the blocking pool and
    /// hand the result to the policy, which uses it when it judges that
    /// frame. Parsing takes about 0.1-0.15 us per byte of SQL here (a
    /// 45 KB INSERT: 5 ms; a 256 KiB `max_statement_bytes` text: tens of
    /// ms); on the session thread that would stall every other session the
    /// thread serves. This session waits either way: the
    /// frame is judged before anything behind it is read.
    async fn preclassify(&mut self, tag: u8, frame: std::ops::Range<usize>) {
        // Malformed or not UTF-8: the policy refuses it as it stands.
        let Some(sql) = frame_sql(tag, &self.buf[frame.clone()]) else {
            return;
        };
        let sql = sql.to_string();
        let classifier = Arc::clone(&self.policy.proxy().engine.snapshot().classifier);
        let c = Arc::clone(&classifier);
        let (sql, class) = match tokio::task::spawn_blocking(move || {
            let class = c.classify(&sql);
            (sql, class)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(session = %self.policy.info().id, error = %e, "classification failed");
                let Some(sql) = frame_sql(tag, &self.buf[frame]) else {
                    return;
                };
                // Fail closed for this text.
                (
                    sql.to_string(),
                    super::policy::unknown("the classifier failed on this statement"),
                )
            }
        };
        self.policy.proxy().metrics.classified_off_thread.inc();
        self.policy.preclassified(sql, classifier, class);
    }

    /// A frame from the client while COPY FROM STDIN is under way, or right
    /// after one started by a segment (see `Shared::copy`): CopyData,
    /// CopyDone and CopyFail go through (the server leaves copy-in mode on
    /// CopyDone / CopyFail); then, after a segment's COPY, only the Sync
    /// that answers that segment, forwarded without a unit of its own.
    fn copy_frame(&mut self, tag: u8, total: usize) -> Result<(), End> {
        if self.copy_sync_owed {
            if tag != b'S' {
                return Err(End::CopyProtocol(tag));
            }
            self.copy_sync_owed = false;
        } else {
            match tag {
                b'd' => {}
                b'c' | b'f' => {
                    self.shared.copy.store(COPY_NONE, Ordering::Release);
                    self.copy_sync_owed = self.copy_from_segment;
                }
                _ => return Err(End::CopyProtocol(tag)),
            }
        }
        self.out.extend_from_slice(&self.buf[..total]);
        self.buf.advance(total);
        Ok(())
    }

    /// A forwarded unit runs COPY FROM STDIN: from now on the client's
    /// frames are copy data until the server says otherwise.
    fn begin_copy(&mut self, kind: Kind, answered: bool) -> Result<(), End> {
        if !answered {
            // Its answer would come with a Sync the server ignores in
            // copy-in mode: not supported.
            return Err(End::CopyProtocol(b'H'));
        }
        self.copy_from_segment = kind == Kind::SyncedSegment;
        self.shared.copy.store(COPY_EXPECTED, Ordering::Release);
        Ok(())
    }

    /// Decide an extended segment that ends without Sync/Flush because
    /// another kind of message follows.
    async fn settle_open_segment<R, W>(
        &mut self,
        seg_end: usize,
        cr: &mut R,
        uw: &mut W,
    ) -> Result<(), End>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.decide(Kind::OpenSegment, seg_end, cr, uw).await?;
        self.buf.advance(seg_end);
        Ok(())
    }

    /// Ask the policy about one unit and put what must go upstream into `out`.
    /// The unit is `buf[..len]`.
    async fn decide<R, W>(
        &mut self,
        kind: Kind,
        len: usize,
        cr: &mut R,
        uw: &mut W,
    ) -> Result<(), End>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let bytes = &self.buf[..len];
        let unit = match kind {
            Kind::Query => Unit::Query { frame: bytes },
            Kind::SyncedSegment => Unit::Segment { bytes, sync: true },
            Kind::OpenSegment => Unit::Segment { bytes, sync: false },
        };
        let answered = unit.ready_for_query_count() > 0;
        let (verdict, draft) = self.policy.decide(&unit);
        match verdict {
            Verdict::Forward => {
                self.out.extend_from_slice(bytes);
                self.track(answered, draft, None);
                if self.policy.copies_in() {
                    self.begin_copy(kind, answered)?;
                }
                Ok(())
            }
            Verdict::Refuse { code, message } => self.refuse(kind, code, &message, draft),
            Verdict::Hold(held) => {
                // The held bytes are copied out: the client may keep sending
                // (and we keep reading, to notice a disconnect) while a human
                // decides. Earlier units of this read go upstream first.
                let held_bytes = BytesMut::from(bytes);
                if !self.out.is_empty() {
                    uw.write_all(&self.out).await.map_err(End::Io)?;
                    self.out.clear();
                }
                let mut draft = draft.expect("a held unit executes something");
                // Boxed: a hold's state (approval, impact estimate) is
                // most of the session future's size, and holds are rare;
                // inline, every idle session's task would carry it.
                match Box::pin(self.hold(&held, len, &mut draft, cr)).await? {
                    HoldEnd::Approved(pending) => {
                        self.policy.approved(&held);
                        self.policy.proxy().metrics.holds_approved.inc();
                        self.out.extend_from_slice(&held_bytes);
                        self.track(answered, Some(draft), Some(pending));
                        if self.policy.copies_in() {
                            self.begin_copy(kind, answered)?;
                        }
                        Ok(())
                    }
                    HoldEnd::Refused { code, message } => {
                        self.policy.refused();
                        self.policy.proxy().metrics.holds_refused.inc();
                        self.refuse(kind, code, &message, Some(draft))
                    }
                }
            }
        }
    }

    /// Register a forwarded unit so its result reaches the audit trail
    /// (and the approval message, for an approved hold).
    fn track(&mut self, answered: bool, draft: Option<Draft>, pending: Option<approval::Pending>) {
        // The names the unit changed settle with its answer. A Flush-ended
        // segment has none of its own (its error may come while nothing
        // waits for it), and the first answer after one may lack that
        // error: neither can vouch for what ran.
        let answer = match self.policy.take_outcome() {
            Some(a) if !answered || self.unsynced => {
                a.store(policy::ANSWER_FAILED, Ordering::Release);
                None
            }
            a => a,
        };
        self.unsynced = !answered;
        // Without a trail, a statement nobody waits on (no approval) has
        // no record to write: track it like a unit that executes nothing.
        let audit = &self.policy.proxy().audit;
        let draft = draft.filter(|_| pending.is_some() || audit.is_enabled());
        let Some(draft) = draft else {
            if answered {
                self.shared
                    .in_flight
                    .push(answer.map(|a| -> super::inflight::Done {
                        Box::new(move |r: UnitResult| set_answer(&a, &r))
                    }));
            }
            return;
        };
        if !answered {
            // Flush-ended batch: its results come with a later Sync.
            let sent = OutcomeRef::Ok {
                command_tag: "(sent; result reported with the next Sync)",
                rows: None,
            };
            draft.record(sent, 0);
            if let Some(p) = pending {
                p.finish(Ok("sent".into()));
            }
            return;
        }
        self.shared
            .in_flight
            .push(Some(Box::new(move |r: UnitResult| {
                let outcome = match &r.error {
                    Some((code, message)) => OutcomeRef::Error {
                        sqlstate: code,
                        message,
                    },
                    None => {
                        let tag = r.tag.as_str();
                        let rows = tag.rsplit(' ').next().and_then(|n| n.parse().ok());
                        OutcomeRef::Ok {
                            command_tag: tag,
                            rows,
                        }
                    }
                };
                draft.record(outcome, r.elapsed.as_micros() as u64);
                if let Some(a) = &answer {
                    set_answer(a, &r);
                }
                if let Some(p) = pending {
                    p.finish(r.summary());
                }
            })));
    }

    /// Put a refusal where the unit would have gone. Its audit record (the
    /// statement was not sent) is written when the refusal is answered, in
    /// order with the records of the units before it: a client may see an
    /// earlier error before that unit's ReadyForQuery and send on.
    fn refuse(
        &mut self,
        kind: Kind,
        code: &'static str,
        message: &str,
        draft: Option<Draft>,
    ) -> Result<(), End> {
        // A refused unit's changes were undone; nothing to settle.
        if let Some(a) = self.policy.take_outcome() {
            a.store(policy::ANSWER_FAILED, Ordering::Release);
        }
        match kind {
            // Postgres answers the refusal with ErrorResponse +
            // ReadyForQuery, exactly what the client waits for, and aborts
            // an open transaction as the client is now told.
            // After a Flush-ended segment the server may be skipping
            // messages up to a Sync, the injected Query included: end the
            // session as for an unsynced refusal.
            Kind::Query | Kind::SyncedSegment if !self.unsynced => {
                messages::query(&mut self.out, &messages::refusal_sql(code, message));
                self.shared
                    .in_flight
                    .push(draft.map(|d| -> super::inflight::Done {
                        Box::new(move |_refusal_answered: UnitResult| {
                            d.record(OutcomeRef::NotSent, 0)
                        })
                    }));
                Ok(())
            }
            // Without a Sync there is no safe place to inject a Query:
            // end the session rather than let anything run.
            Kind::Query | Kind::SyncedSegment | Kind::OpenSegment => {
                if let Some(d) = draft {
                    d.record(OutcomeRef::NotSent, 0);
                }
                tracing::warn!(session = %self.policy.info().id, "refused statement in an extended batch without Sync: ending session");
                Err(End::RefusedUnsynced {
                    code,
                    message: message.to_string(),
                })
            }
        }
    }

    /// Wait for a human decision on a held unit, watching for the client
    /// cancelling or going away (either withdraws the request for good).
    async fn hold<R>(
        &mut self,
        held: &Held,
        unit_len: usize,
        draft: &mut Draft,
        cr: &mut R,
    ) -> Result<HoldEnd, End>
    where
        R: AsyncRead + Unpin,
    {
        let proxy = self.policy.proxy().clone();
        let info = self.policy.info().clone();
        // Listen for cancels from now on: one that arrives while we post
        // the request must still withdraw it.
        let cancel = self.policy.cancel.clone();
        let cancelled = cancel.notified();
        tokio::pin!(cancelled);
        cancelled.as_mut().enable();
        // With nothing of ours running upstream, a cancel is for the held
        // statement only and must not be forwarded (see `cancel_query`).
        let _holding = self.shared.in_flight.is_empty().then(|| cancel.holding());

        let impact = crate::impact::estimate(
            &proxy.connector,
            &info.database,
            &held.sql,
            held.params.len(),
            &held.classification,
            &held.prepared,
        )
        .await;
        let req = approval::ApprovalRequest {
            session_id: info.id.clone(),
            agent: info.agent.clone(),
            owner: info.owner.clone(),
            client_addr: info.client_addr,
            database: info.database.clone(),
            application_name: info.application_name.clone(),
            sql: held.sql.clone(),
            prepared: held.prepared.clone(),
            params: held.params.clone(),
            reason: crate::classify::extract_reason(&held.sql),
            categories: held
                .categories
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            rules: held.decision.rules.to_vec(),
            impact,
            settings: held.settings.clone(),
        };
        let mut pending = match proxy.gate.submit(req).await {
            Ok(p) => p,
            Err(outcome) => {
                draft.decision = "channel_down";
                let why = match outcome {
                    approval::Outcome::ChannelDown { error } => error,
                    other => format!("{other:?}"),
                };
                tracing::error!(session = %info.id, error = %why, "approval channel down: held statement refused");
                return Ok(HoldEnd::Refused {
                    code: sqlstate::CANNOT_CONNECT_NOW,
                    message: format!(
                        "pg-airlock: statement needs approval but the approval channel is down ({why}); nothing was run"
                    ),
                });
            }
        };
        let id = pending.id().to_string();
        draft.request_id = Some(id.clone());
        let requested = Event::now(EventKind::ApprovalRequested(audit::ApprovalRequested {
            request_id: id.clone(),
            session: info.id.clone(),
            agent: info.agent.clone(),
            statement: draft.statement,
            sql: held.sql.clone(),
            prepared: held.prepared.clone(),
            categories: draft.categories(),
            rules: held.decision.rules.to_vec(),
            ruleset: Some(draft.ruleset.to_string()),
            approvers: held.settings.approvers.clone(),
            quorum: held.settings.quorum,
            channel: held
                .settings
                .channel
                .clone()
                .unwrap_or_else(|| "default".into()),
            timeout_ms: held.settings.timeout.as_millis() as u64,
        }));
        if let Err(e) = proxy.audit.record_durable(requested).await {
            pending.withdraw("the audit trail is unavailable").await;
            draft.decision = decision::WITHDRAWN;
            return Ok(HoldEnd::Refused {
                code: sqlstate::CANNOT_CONNECT_NOW,
                message: format!(
                    "pg-airlock: cannot record the approval request ({e}); nothing was run"
                ),
            });
        }
        let mut notice = BytesMut::new();
        messages::error(
            &mut notice,
            Severity::Notice,
            "01000",
            &format!(
                "pg-airlock: statement held for approval (request {id}, rule {}); waiting up to {:?}",
                held.decision.rules.join(", "),
                held.settings.timeout
            ),
            None,
            Some(
                "the statement runs once a reviewer approves it; cancelling the query withdraws the request",
            ),
        );
        self.shared.injecting.store(true, Ordering::Release);
        let _ = self.policy.inject.send(notice).await;
        // The outbound side may be waiting without watching the channel
        // (see `Shared::injecting`): wake it, and now it looks.
        if let Some(w) = self.shared.wake_outbound.get() {
            w.wake_by_ref();
        }
        tracing::info!(session = %info.id, request = %id, rules = ?held.decision.rules, "statement held for approval");

        let started = std::time::Instant::now();
        if terminated_after(&self.buf, unit_len, self.max) {
            pending.withdraw("the client disconnected").await;
            self.closed(
                &id,
                &info.id,
                "client disconnected",
                started,
                EventKind::ApprovalWithdrawn,
            )
            .await;
            return Err(End::ClientGone);
        }
        let outcome = loop {
            tokio::select! {
                o = pending.outcome() => break o,
                _ = &mut cancelled => {
                    pending.withdraw("the client cancelled the query").await;
                    self.closed(&id, &info.id, "client cancelled", started, EventKind::ApprovalWithdrawn).await;
                    draft.decision = decision::WITHDRAWN;
                    return Ok(HoldEnd::Refused {
                        code: sqlstate::QUERY_CANCELED,
                        message: format!("canceling statement due to user request (approval request {id} withdrawn)"),
                    });
                }
                r = cr.read_buf(&mut self.buf), if self.buf.len() < self.max => match r {
                    // A Terminate behind the held unit means the client has
                    // left, even if its socket is still open: withdraw.
                    Ok(n) if n > 0 && !terminated_after(&self.buf, unit_len, self.max) => {}
                    _ => {
                        pending.withdraw("the client disconnected").await;
                        self.closed(&id, &info.id, "client disconnected", started, EventKind::ApprovalWithdrawn).await;
                        return Err(End::ClientGone);
                    }
                },
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let decided = |d: &str, approvers: Vec<String>, reason: Option<String>| {
            Event::now(EventKind::ApprovalDecided(audit::ApprovalDecided {
                request_id: id.clone(),
                session: Some(info.id.clone()),
                decision: d.to_string(),
                approvers,
                reason,
                channel: held
                    .settings
                    .channel
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                latency_ms,
            }))
        };
        match outcome {
            approval::Outcome::Approved { approvers } => {
                // Exactly what was approved, or nothing.
                let binding = approval::binding_hash(&info.id, &held.sql, &held.params);
                if binding != pending.binding() {
                    pending
                        .withdraw("internal error: approved statement does not match")
                        .await;
                    return Ok(HoldEnd::Refused {
                        code: sqlstate::INSUFFICIENT_PRIVILEGE,
                        message:
                            "pg-airlock: approval does not match this statement; nothing was run"
                                .into(),
                    });
                }
                let names: Vec<String> = approvers.iter().map(approval::Decider::label).collect();
                // The decision is on disk before the statement is sent.
                if let Err(e) = proxy
                    .audit
                    .record_durable(decided(decision::APPROVED, names, None))
                    .await
                {
                    pending.withdraw("the audit trail is unavailable").await;
                    draft.decision = decision::WITHDRAWN;
                    return Ok(HoldEnd::Refused {
                        code: sqlstate::CANNOT_CONNECT_NOW,
                        message: format!(
                            "pg-airlock: approved, but the decision cannot be recorded ({e}); nothing was run"
                        ),
                    });
                }
                draft.decision = decision::APPROVED;
                tracing::info!(session = %info.id, request = %id, "approved statement forwarded");
                Ok(HoldEnd::Approved(pending))
            }
            approval::Outcome::Denied { by, reason } => {
                let who = by.name.clone().unwrap_or_else(|| by.id.clone());
                let _ = proxy
                    .audit
                    .record_durable(decided(decision::DENIED, vec![by.label()], reason.clone()))
                    .await;
                draft.decision = decision::DENIED;
                Ok(HoldEnd::Refused {
                    code: sqlstate::INSUFFICIENT_PRIVILEGE,
                    message: format!(
                        "pg-airlock: request {id} denied by {who}: {}",
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                })
            }
            approval::Outcome::TimedOut { after } => {
                self.closed(
                    &id,
                    &info.id,
                    "timed out",
                    started,
                    EventKind::ApprovalExpired,
                )
                .await;
                draft.decision = decision::EXPIRED;
                Ok(HoldEnd::Refused {
                    code: sqlstate::QUERY_CANCELED,
                    message: format!(
                        "pg-airlock: approval request {id} timed out after {after:?}; nothing was run"
                    ),
                })
            }
            approval::Outcome::ChannelDown { error } => {
                draft.decision = "channel_down";
                Ok(HoldEnd::Refused {
                    code: sqlstate::CANNOT_CONNECT_NOW,
                    message: format!(
                        "pg-airlock: the approval channel is down ({error}); nothing was run"
                    ),
                })
            }
        }
    }

    /// Durably record that a request closed without a decision.
    async fn closed(
        &self,
        id: &str,
        session: &str,
        reason: &str,
        started: std::time::Instant,
        kind: fn(audit::ApprovalClosed) -> EventKind,
    ) {
        let ev = Event::now(kind(audit::ApprovalClosed {
            request_id: id.to_string(),
            session: Some(session.to_string()),
            reason: reason.to_string(),
            latency_ms: started.elapsed().as_millis() as u64,
        }));
        if let Err(e) = self.policy.proxy().audit.record_durable(ev).await {
            tracing::error!(error = %e, request = id, "cannot record closed approval request");
        }
    }
}

/// Whether a complete Terminate frame follows the first `pos` bytes of
/// `buf` (frames after a held unit, read while it waits).
/// While shutting down: true once the deadline has passed, or at a tick
/// that finds the session idle.
async fn drained(
    drain: &mut Option<(Pin<Box<tokio::time::Sleep>>, tokio::time::Interval)>,
    shared: &Shared,
) -> bool {
    let Some((deadline, tick)) = drain else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        _ = deadline.as_mut() => true,
        _ = tick.tick() => shared.idle(),
    }
}

fn terminated_after(buf: &[u8], mut pos: usize, max: usize) -> bool {
    while let Ok(Some(h)) = frame::header(&buf[pos..], max) {
        if h.tag == b'X' {
            return true;
        }
        if buf.len() - pos < h.total {
            return false;
        }
        pos += h.total;
    }
    false
}

enum HoldEnd {
    Approved(approval::Pending),
    Refused { code: &'static str, message: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    SyncedSegment,
    OpenSegment,
}

/// Upstream -> client direction: relay bytes, watch the few frames that matter.
async fn outbound<R, W>(
    ur: &mut R,
    cw: &mut W,
    leftover: BytesMut,
    shared: &Shared,
    mut inject: mpsc::Receiver<BytesMut>,
    metrics: &crate::metrics::Metrics,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = super::io::keep_if_nonempty(leftover);
    let mut read_size = super::io::ReadSize::new();
    // Bytes of the current frame still to pass through uninspected.
    let mut skip = 0usize;
    let mut inject_open = true;
    // Results of units completed in the bytes at hand, recorded (audit,
    // approval message) after those bytes are written to the client.
    let mut finished = super::inflight::Finished::default();
    loop {
        let mut pos = 0usize;
        loop {
            if skip > 0 {
                let n = skip.min(buf.len() - pos);
                pos += n;
                skip -= n;
                if skip > 0 {
                    break;
                }
                continue;
            }
            // Server messages can be up to 1 GB (large rows); no cap here.
            let h = match frame::header(&buf[pos..], usize::MAX >> 2) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return End::ProtocolError(e),
            };
            match h.tag {
                b'Z' | b'S' | b'C' | b'E' | b'G' => {
                    if buf.len() - pos < h.total {
                        break;
                    }
                    let f = &buf[pos..pos + h.total];
                    match h.tag {
                        b'Z' => {
                            shared
                                .txn
                                .store(f.get(5).copied().unwrap_or(b'I'), Ordering::Release);
                            shared.in_flight.on_ready(&mut finished);
                            // The COPY's unit (the last one forwarded: the
                            // client sends nothing but copy data after it)
                            // is answered: no copy-in mode any more.
                            if shared.copy.load(Ordering::Acquire) != COPY_NONE
                                && shared.in_flight.is_empty()
                            {
                                shared.copy.store(COPY_NONE, Ordering::Release);
                                shared.copy_settled.notify_one();
                            }
                        }
                        b'G' => {
                            if shared
                                .copy
                                .compare_exchange(
                                    COPY_EXPECTED,
                                    COPY_IN,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                            {
                                shared.copy_settled.notify_one();
                            }
                        }
                        b'C' => shared
                            .in_flight
                            .on_complete(f[5..].strip_suffix(&[0]).unwrap_or(&f[5..])),
                        b'E' => {
                            let (code, message) = super::upstream::parse_error(f);
                            shared.in_flight.on_error(code, message);
                        }
                        _ => {
                            if let Err(why) = check_parameter(f) {
                                return End::UnsafeServerSetting(why);
                            }
                        }
                    }
                    pos += h.total;
                }
                _ => skip = h.total,
            }
        }
        if pos > 0 {
            let written = cw.write_all(&buf[..pos]).await;
            finished.run();
            if let Err(e) = written {
                return if is_disconnect(&e) {
                    End::ClientGone
                } else {
                    End::Io(e)
                };
            }
            metrics.bytes_to_clients.add(pos as u64);
            buf.advance(pos);
        }
        shared.at_boundary.store(skip == 0, Ordering::Release);
        super::io::release_if_large(&mut buf);
        let room = read_size.prepare(&mut buf);
        tokio::select! {
            biased;
            msg = std::future::poll_fn(|cx| {
                // Checked on every poll, not once per select: the flag may
                // be set while this direction waits for the server.
                if shared.injecting.load(Ordering::Acquire) { inject.poll_recv(cx) } else { std::task::Poll::Pending }
            }), if inject_open && skip == 0 => match msg {
                Some(m) => {
                    if let Err(e) = cw.write_all(&m).await {
                        return if is_disconnect(&e) { End::ClientGone } else { End::Io(e) };
                    }
                }
                None => inject_open = false,
            },
            r = ur.read_buf(&mut buf) => match r {
                Ok(0) => return End::UpstreamClosed,
                Ok(n) => read_size.record(n, room),
                Err(e) => return End::Io(e),
            },
        }
    }
}

/// Query and Parse frames longer than this are classified on the blocking
/// pool (`Inbound::preclassify`): about 1 ms of parsing at most stays on
/// the session thread.
const OFF_THREAD_BYTES: usize = 8 * 1024;

/// The SQL text of a Query or Parse frame, if it is well formed and UTF-8.
fn frame_sql(tag: u8, frame: &[u8]) -> Option<&str> {
    let mut b = Body::new(frame);
    if tag == b'P' {
        b.str().ok()?;
    }
    b.str().ok()
}

/// A server that turns `standard_conforming_strings` off would lex strings
/// differently from the classifier; the session cannot continue safely.
fn check_parameter(frame: &[u8]) -> Result<(), String> {
    let mut b = Body::new(frame);
    let (Ok(name), Ok(value)) = (b.cstr(), b.cstr()) else {
        return Err("malformed ParameterStatus".into());
    };
    if name == b"standard_conforming_strings" && value != b"on" {
        return Err("standard_conforming_strings is off".into());
    }
    if name == b"client_encoding" && value != b"UTF8" {
        return Err(format!(
            "client_encoding changed to {}",
            String::from_utf8_lossy(value)
        ));
    }
    Ok(())
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
    )
}

/// The server answered a unit that changed prepared statements or portals
/// (see `policy::Unsettled`): without an error, every message of it ran.
fn set_answer(flag: &std::sync::atomic::AtomicU8, r: &UnitResult) {
    let answer = if r.error.is_none() {
        policy::ANSWER_CLEAN
    } else {
        policy::ANSWER_FAILED
    };
    flag.store(answer, Ordering::Release);
}
