//! The session's policy step: turns a unit of client messages into a
//! verdict. The relay loop only orchestrates; everything about *what* a
//! unit does and whether it may run lives here.
//!
//! Per session it remembers what each prepared statement does, so that a
//! later EXECUTE (SQL level) or Bind/Execute (protocol level) is judged by
//! the statement it really runs:
//! - protocol level: Parse classifies and records `name -> class`, Bind
//!   maps `portal -> class`, Execute is enforced; the unnamed statement and
//!   portal are replaced by the next unnamed Parse/Bind; Close removes.
//! - SQL level: `PREPARE name AS stmt` records `name -> class of stmt`;
//!   `EXECUTE name` is judged as that class; DEALLOCATE / DISCARD ALL forget.
//!
//! Bookkeeping of a unit is applied only if the unit is forwarded: a refused
//! unit never reached the server, so it must not change what we believe
//! the server has prepared.

use super::Proxy;
use super::frame::{Body, FrameError};
use super::params::Params;
use super::record::{Draft, JudgedMemo, Who};
use super::sqlstate;
use crate::audit::FailurePolicy;
use crate::audit::event::decision;
use crate::classify::{
    Category, Classification, Classifier, Effect, PreparedOp, SharedClassification, StatementClass,
};
use crate::identity::SessionInfo;
use crate::rules::{Action, Decision, HoldSettings, Subject};
use bytes::BytesMut;
use smallvec::smallvec;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::mpsc;

/// The session's name maps (prepared statements, portals), looked up on
/// every extended-protocol frame: foldhash, several times cheaper than
/// SipHash on short names. Still seeded per map, and a map only ever holds
/// one session's own names, so a client that picks colliding names slows
/// only itself.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What the relay asks about: one simple Query, or one extended-protocol
/// segment (Parse/Bind/Describe/Execute/Close... up to Sync or Flush).
pub enum Unit<'a> {
    Query { frame: &'a [u8] },
    Segment { bytes: &'a [u8], sync: bool },
}

impl Unit<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Unit::Query { frame } => frame,
            Unit::Segment { bytes, .. } => bytes,
        }
    }

    /// ReadyForQuery messages the server will send for this unit.
    pub fn ready_for_query_count(&self) -> u32 {
        match self {
            Unit::Query { .. } => 1,
            Unit::Segment { sync, .. } => *sync as u32,
        }
    }
}

pub enum Verdict {
    Forward,
    Refuse {
        code: &'static str,
        message: String,
    },
    /// A rule requires a human decision first.
    Hold(Box<Held>),
}

/// Everything about a held unit that an approval request needs.
pub struct Held {
    pub sql: String,
    /// What the statements `sql` EXECUTEs by name were prepared as.
    pub prepared: Vec<crate::audit::event::PreparedText>,
    pub params: Vec<Option<String>>,
    pub decision: Decision,
    pub settings: HoldSettings,
    pub categories: Vec<Category>,
    pub classification: Classification,
    /// As classified, for the session's PREPARE bookkeeping.
    raw: Units<Known>,
    /// A simple Query: its PREPAREs and DEALLOCATEs are applied once it is
    /// decided (a segment's were applied at each Execute, in order).
    query: bool,
}

/// What one unit runs: nearly always one statement (a Query of one
/// statement, a segment of one Execute), kept inline rather than in a
/// heap block allocated and freed per statement.
pub type Units<T> = smallvec::SmallVec<[T; 1]>;

/// The judgement of one unit, before bookkeeping.
struct Judgement {
    decision: Decision,
    /// The classifications the unit executes, as judged (EXECUTE resolved
    /// to what it runs, PREPARE to a no-op).
    executed: Units<SharedClassification>,
    /// The same, as classified (PREPARE still carries the effects of the
    /// statement it prepares), with their texts: the source of bookkeeping.
    raw: Units<Known>,
    /// See [`Held::query`].
    query: bool,
    /// Version of the rules that decided (the audit record names it).
    ruleset: Arc<str>,
}

/// One pending bookkeeping change, with what it replaced (for undo).
enum Undo {
    Statement(String, Option<Known>),
    Portal(String, Option<Bound>),
}

/// A statement the session knows: what it does, and its text. The text
/// goes with the statement, not with the session's last Parse: an Execute
/// of a statement prepared earlier is recorded, estimated and shown to
/// approvers with the text that statement was prepared from.
#[derive(Clone)]
struct Known {
    class: SharedClassification,
    /// Empty for a statement the proxy has not seen (its class says so).
    sql: Arc<str>,
    /// `sql` with its literals redacted, when the classifier's cached
    /// shape had it: the audit record of each Execute without a rescan.
    redacted: Option<Arc<str>>,
    /// The classifier that judged `class` from `sql` alone (a protocol
    /// Parse, an SQL-level PREPARE), reclassified with its successor after
    /// a rule reload that changed the classifier's lists (see `rejudged`);
    /// 0 for a class not made that way (unknown, redefined), which keeps
    /// its class.
    by: u64,
}

impl Known {
    /// A class not judged from `sql` alone (unknown, redefined, a Query's
    /// bookkeeping): no redaction, kept as it is across reloads.
    fn fixed(class: SharedClassification, sql: Arc<str>) -> Known {
        Known {
            class,
            sql,
            redacted: None,
            by: 0,
        }
    }
}

/// What the server answered a forwarded unit, as far as the session
/// knows (set from the unit's in-flight entry, see `take_outcome`).
pub const ANSWER_PENDING: u8 = 0;
/// Answered without an error: every message of the unit ran.
pub const ANSWER_CLEAN: u8 = 1;
/// Answered with an error, or its answer cannot be told apart: any of its
/// messages may have been skipped.
pub const ANSWER_FAILED: u8 = 2;

/// The names a forwarded unit changed, while its answer is unknown.
///
/// The proxy applies a unit's PREPARE / Parse / DEALLOCATE / Close / Bind
/// as it reads them (the unit's own later messages see them, which is
/// right: after an error the server skips the rest). But the server may
/// not have run them: an error earlier in the unit skips the rest of it
/// (`SELECT 1/0; DEALLOCATE x`, or a Parse after a failed Bind), the
/// second definition of an existing name is refused (42P05, 42P03), and a
/// savepoint rollback revives a portal. So from the moment it is
/// forwarded until the server answers it cleanly, each changed name stands
/// for every value it had during the unit (`redefined`: the stricter
/// decides; a name that was dropped keeps its last definition). A clean
/// answer puts back the unit's final values; a failure keeps the union.
struct Unsettled {
    answer: Arc<AtomicU8>,
    /// Name, the unit's final value, and the class of the union put in
    /// its place (the final value returns only if nothing changed it since).
    statements: Vec<(String, Option<Known>, SharedClassification)>,
    portals: Vec<(String, Option<Bound>, SharedClassification)>,
}

/// Every distinct value, in order, as one (`redefined`); `None` if none.
fn union_of(values: impl Iterator<Item = Known>) -> Option<Known> {
    values.fold(None, |acc: Option<Known>, v| match acc {
        None => Some(v),
        // The later value when it covers the earlier (same effects: the
        // text is the later one's).
        Some(a) if includes(&v, &a) => Some(v),
        Some(a) if includes(&a, &v) => Some(a),
        Some(a) => Some(redefined(&a, v)),
    })
}

/// Whether `a` already stands for everything `b` does.
fn includes(a: &Known, b: &Known) -> bool {
    Arc::ptr_eq(&a.class, &b.class)
        || b.class.statements.iter().all(|s| {
            a.class
                .statements
                .iter()
                .any(|t| Arc::ptr_eq(&t.effects, &s.effects))
        })
}

/// A bound portal: its statement and the values bound to it.
#[derive(Clone)]
struct Bound {
    stmt: Known,
    params: Params,
}

/// One Execute of the current segment.
struct Exec {
    /// As classified (bookkeeping), with its text and bound values.
    raw: Known,
    params: Params,
    /// As judged (EXECUTE resolved).
    judged: SharedClassification,
}

pub struct Policy {
    proxy: Arc<Proxy>,
    info: SessionInfo,
    who: Arc<Who>,
    pub cancel: Arc<super::cancel::Signal>,
    pub inject: mpsc::Sender<BytesMut>,
    pub statements: u64,
    /// Prepared statements, from SQL PREPARE (text: the PREPARE
    /// statement's) and protocol Parse alike: PostgreSQL has one namespace
    /// for both, and so must the proxy (with two maps, a name defined in
    /// one and closed or redefined in the other was looked up in the
    /// stale one).
    prepared: HashMap<String, Known>,
    portals: HashMap<String, Bound>,
    /// Forwarded units whose answers are not in yet, oldest first: see
    /// [`Unsettled`].
    unsettled: std::collections::VecDeque<Unsettled>,
    /// The answer flag of the unit decided last, for its in-flight entry.
    answer: Option<Arc<AtomicU8>>,
    /// The unit decided last runs `COPY ... FROM STDIN`.
    copies_in: bool,
    /// Bookkeeping done by the current segment, undone if it is refused.
    undo: Vec<Undo>,
    /// Portals executed by the current segment.
    executed: Vec<Exec>,
    /// What those Executes' PREPARE / DEALLOCATE statements did to the
    /// names, for the segment's later Executes.
    segment_names: UnitNames<Arc<[Effect]>>,
    /// The current unit's text and bound values (every Execute's, in
    /// order), for its record and reviewers.
    last_params: Params,
    /// Shared with the unit's draft (and, for one Execute, with its
    /// prepared statement): no copy per statement. `None`: the current
    /// unit's Query text, not copied out of its frame yet
    /// ([`Policy::unit_sql`]).
    last_sql: Option<Arc<str>>,
    /// `last_sql` with its literals redacted, when the classifier's cached
    /// shape had it (a simple Query or one Execute of one statement): the
    /// audit record's text without a second scan.
    last_redacted: Option<Arc<str>>,
    /// Shared by units without text: no allocation for them.
    no_sql: Arc<str>,
    /// The next text's classification, computed off the session thread
    /// (see [`Policy::preclassified`]).
    pre: Option<Pre>,
    /// Decisions already reached for this session's statement shapes.
    decided: super::decided::Decided,
    /// Encoded judged fields of the statement records, by shape.
    judged: JudgedMemo,
    /// The rules and classifier in force, as of this session's last
    /// statement (`Engine::refresh`), and their version as this session's
    /// own string: a statement's draft names it without touching a
    /// reference count that other sessions' threads share.
    snap: Arc<crate::engine::Snapshot>,
    ruleset: Arc<str>,
}

struct Pre {
    sql: String,
    classifier: Arc<Classifier>,
    class: SharedClassification,
}

impl Policy {
    pub fn new(
        proxy: Arc<Proxy>,
        info: SessionInfo,
        cancel: Arc<super::cancel::Signal>,
        inject: mpsc::Sender<BytesMut>,
    ) -> Policy {
        let snap = proxy.engine.snapshot();
        let ruleset = Arc::from(snap.rules.version());
        let who = Who::new(info.id.clone(), info.agent.clone(), proxy.audit.clone());
        Policy {
            proxy,
            who: Arc::new(who),
            info,
            cancel,
            inject,
            statements: 0,
            prepared: HashMap::default(),
            portals: HashMap::default(),
            unsettled: std::collections::VecDeque::new(),
            answer: None,
            copies_in: false,
            undo: Vec::new(),
            executed: Vec::new(),
            segment_names: UnitNames::default(),
            last_params: Params::default(),
            last_sql: None,
            last_redacted: None,
            no_sql: Arc::from(""),
            pre: None,
            decided: Default::default(),
            judged: JudgedMemo::default(),
            snap,
            ruleset,
        }
    }

    /// Hand over the classification of the text the next Query or Parse
    /// carries, computed elsewhere by `classifier` (a large text, on the
    /// blocking pool: see `session::Inbound::preclassify`). Used only if
    /// that frame carries exactly this text and the rules in force still
    /// use this classifier; otherwise the text is classified as usual.
    pub fn preclassified(
        &mut self,
        sql: String,
        classifier: Arc<Classifier>,
        class: SharedClassification,
    ) {
        self.pre = Some(Pre {
            sql,
            classifier,
            class,
        });
    }

    /// The rules in force, brought up to date. A new classifier (the
    /// rules changed its function or setting lists) also judges the
    /// statements this session prepared before, from their text: a
    /// `[[function]]` added to close a hole closes it for them too.
    fn refresh(&mut self) {
        let before = Arc::as_ptr(&self.snap.rules);
        self.proxy.engine.refresh(&mut self.snap);
        if Arc::as_ptr(&self.snap.rules) != before {
            self.ruleset = Arc::from(self.snap.rules.version());
            let classifier = &self.snap.classifier;
            let stale = |k: &Known| k.by != 0 && k.by != classifier.id();
            let portals = self.portals.values_mut().map(|b| &mut b.stmt);
            for k in self
                .prepared
                .values_mut()
                .chain(portals)
                .filter(|k| stale(k))
            {
                let (class, redacted) = classifier.classify_redacting(&k.sql);
                k.class = rejudged(&k.class, class);
                k.redacted = redacted;
                k.by = classifier.id();
            }
        }
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Inspect one extended-protocol frame as it arrives; the verdict
    /// comes for the whole segment at Sync/Flush.
    pub fn extended(&mut self, frame: &[u8]) -> Result<(), FrameError> {
        if !self.unsettled.is_empty() {
            self.settle();
        }
        // A reload since the last frame may have changed what a prepared
        // statement or portal is (see `refresh`): every frame judges with
        // the rules in force.
        self.refresh();
        let mut b = Body::new(frame);
        match frame[0] {
            b'P' => {
                let name = b.name()?;
                let sql = b.cstr()?;
                let known = match super::frame::text(sql) {
                    Some(sql) => {
                        let c = classify(&mut self.pre, &self.snap.classifier, sql, Text::Parse);
                        Known {
                            class: c.class,
                            sql: c.text.unwrap_or_else(|| Arc::from(sql)),
                            redacted: c.redacted,
                            by: self.snap.classifier.id(),
                        }
                    }
                    // The session is UTF8; invalid text cannot be judged.
                    None => Known::fixed(
                        unknown("statement text is not valid UTF-8"),
                        self.no_sql.clone(),
                    ),
                };
                // The unnamed statement is replaced by every Parse; a named
                // one that exists is not (see `redefined`).
                let known = match self.named(name) {
                    Some(old) if !name.is_empty() => redefined(old, known),
                    _ => known,
                };
                let old = self.prepared.insert(name.to_string(), known);
                self.undo.push(Undo::Statement(name.to_string(), old));
                // This Parse now defines the name, whatever the segment did to it.
                self.segment_names.forget(name);
            }
            b'B' => {
                let portal = b.name()?;
                let stmt = b.name()?;
                let stmt = self.bind_target(stmt);
                // A malformed Bind is the server's to refuse; its values
                // are then none.
                let params = Params::read(&mut b).unwrap_or_default();
                let old = self
                    .portals
                    .insert(portal.to_string(), Bound { stmt, params });
                self.undo.push(Undo::Portal(portal.to_string(), old));
            }
            b'E' => {
                let portal = b.name()?;
                let bound = self.portals.get(portal).cloned().unwrap_or_else(|| Bound {
                    stmt: Known::fixed(
                        unknown("Execute of a portal the proxy has not seen"),
                        self.no_sql.clone(),
                    ),
                    params: Params::default(),
                });
                let judged = self.resolve(&bound.stmt.class);
                for s in &bound.stmt.class.statements {
                    self.segment_names.note(s, &s.effects);
                }
                // In message order: a Parse after this Execute must find
                // what its PREPARE / DEALLOCATE did.
                self.apply_sql_prepared(&bound.stmt);
                self.executed.push(Exec {
                    raw: bound.stmt,
                    params: bound.params,
                    judged,
                });
            }
            b'C' => {
                let kind = b.bytes(1)?[0];
                let name = b.name()?.to_string();
                match kind {
                    b'S' => {
                        self.segment_names.dropped(&name);
                        let old = self.prepared.remove(&name);
                        self.undo.push(Undo::Statement(name, old));
                    }
                    b'P' => {
                        let old = self.portals.remove(&name);
                        self.undo.push(Undo::Portal(name, old));
                    }
                    _ => {
                        return Err(FrameError::BadBody {
                            tag: super::frame::Tag(b'C'),
                            what: "Close of unknown kind",
                        });
                    }
                }
            }
            _ => {} // Describe: no effect
        }
        Ok(())
    }

    /// Whether the session has named portals (cleared by
    /// `transaction_ended`).
    pub fn has_named_portals(&self) -> bool {
        self.portals.len() > usize::from(self.portals.contains_key(""))
    }

    /// The server reported no transaction open, with nothing of the
    /// session's pending: PostgreSQL has closed every protocol portal
    /// (they live until the end of their transaction).
    pub fn transaction_ended(&mut self) {
        self.portals.retain(|name, _| name.is_empty());
    }

    /// The statement the session knows under `name`.
    fn named(&self, name: &str) -> Option<&Known> {
        self.prepared.get(name)
    }

    /// The statement a Bind of `name` binds. This segment's earlier
    /// Executes may have run `PREPARE` / `DEALLOCATE` on the name: their
    /// effect comes first, as for `EXECUTE` (`resolve`). (They are also
    /// applied to the session's names at each Execute, in order, so this
    /// mostly agrees with `named`; it differs after DEALLOCATE ALL, where
    /// it stays unknown.)
    fn bind_target(&self, name: &str) -> Known {
        let unseen = |why| Known::fixed(unknown(why), self.no_sql.clone());
        match self.segment_names.touched(name) {
            Some(Some(effects)) => {
                let class = Arc::new(Classification {
                    statements: vec![StatementClass {
                        span: (0, 0),
                        effects,
                        prepared: None,
                    }],
                });
                let here = Known::fixed(class, self.no_sql.clone());
                // If the name existed, the server refused that PREPARE.
                match self.named(name) {
                    Some(old) => redefined(old, here),
                    None => here,
                }
            }
            Some(None) => unseen("Bind to a prepared statement this segment deallocated"),
            None => self
                .named(name)
                .cloned()
                .unwrap_or_else(|| unseen("Bind to a prepared statement the proxy has not seen")),
        }
    }

    /// Whether the unit just decided runs `COPY ... FROM STDIN` (the
    /// session then follows the server into copy-in mode).
    pub fn copies_in(&self) -> bool {
        self.copies_in
    }

    /// The answer flag of the unit just decided (`None` if it changed no
    /// names): the session sets it from the unit's answer.
    pub fn take_outcome(&mut self) -> Option<Arc<AtomicU8>> {
        self.answer.take()
    }

    /// Turn the decided unit's changes into the union of every value the
    /// names had during it, until its answer comes (see [`Unsettled`]).
    fn seal(&mut self) {
        // The common unit (a Parse and Bind of the unnamed statement and
        // portal, of one shape) replaced values with ones that cover them:
        // nothing to stand for, and nothing allocated.
        let covered = self.undo.iter().all(|u| match u {
            Undo::Statement(n, Some(old)) => self.prepared.get(n).is_some_and(|l| includes(l, old)),
            Undo::Portal(n, Some(old)) => self
                .portals
                .get(n)
                .is_some_and(|l| includes(&l.stmt, &old.stmt)),
            // Created by the unit: the server has it, or nothing.
            Undo::Statement(_, None) | Undo::Portal(_, None) => true,
        });
        if covered {
            self.undo.clear();
            return;
        }
        let mut statements: Vec<(String, Vec<Known>)> = Vec::new();
        let mut portals: Vec<(String, Vec<Bound>)> = Vec::new();
        for u in std::mem::take(&mut self.undo) {
            match u {
                Undo::Statement(name, old) => {
                    let i = match statements.iter().position(|(n, _)| *n == name) {
                        Some(i) => i,
                        None => {
                            statements.push((name, Vec::new()));
                            statements.len() - 1
                        }
                    };
                    statements[i].1.extend(old);
                }
                Undo::Portal(name, old) => {
                    let i = match portals.iter().position(|(n, _)| *n == name) {
                        Some(i) => i,
                        None => {
                            portals.push((name, Vec::new()));
                            portals.len() - 1
                        }
                    };
                    portals[i].1.extend(old);
                }
            }
        }
        let answer = Arc::new(AtomicU8::new(ANSWER_PENDING));
        let mut u = Unsettled {
            answer: answer.clone(),
            statements: Vec::new(),
            portals: Vec::new(),
        };
        for (name, olds) in statements {
            let last = self.prepared.get(&name).cloned();
            let Some(all) = union_of(olds.into_iter().chain(last.clone())) else {
                continue;
            };
            if last
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.class, &all.class))
            {
                continue;
            }
            u.statements.push((name.clone(), last, all.class.clone()));
            self.prepared.insert(name, all);
        }
        for (name, olds) in portals {
            let last = self.portals.get(&name).cloned();
            let params = last
                .as_ref()
                .or(olds.last())
                .map(|b| b.params.clone())
                .unwrap_or_default();
            let stmts = olds.into_iter().chain(last.clone()).map(|b| b.stmt);
            let Some(all) = union_of(stmts) else {
                continue;
            };
            if last
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.stmt.class, &all.class))
            {
                continue;
            }
            u.portals.push((name.clone(), last, all.class.clone()));
            self.portals.insert(name, Bound { stmt: all, params });
        }
        if !u.statements.is_empty() || !u.portals.is_empty() {
            self.unsettled.push_back(u);
            self.answer = Some(answer);
        }
    }

    /// Apply the answers that came in, oldest unit first.
    fn settle(&mut self) {
        while let Some(u) = self.unsettled.front() {
            match u.answer.load(Ordering::Acquire) {
                ANSWER_PENDING => break,
                ANSWER_CLEAN => {
                    let u = self.unsettled.pop_front().expect("front exists");
                    for (name, last, all) in u.statements {
                        if self
                            .prepared
                            .get(&name)
                            .is_some_and(|k| Arc::ptr_eq(&k.class, &all))
                        {
                            match last {
                                Some(k) => self.prepared.insert(name, k),
                                None => self.prepared.remove(&name),
                            };
                        }
                    }
                    for (name, last, all) in u.portals {
                        if self
                            .portals
                            .get(&name)
                            .is_some_and(|b| Arc::ptr_eq(&b.stmt.class, &all))
                        {
                            match last {
                                Some(b) => self.portals.insert(name, b),
                                None => self.portals.remove(&name),
                            };
                        }
                    }
                }
                _ => {
                    self.unsettled.pop_front();
                }
            }
        }
    }

    /// Substitute remembered classes for SQL-level EXECUTE statements.
    fn resolve(&self, class: &SharedClassification) -> SharedClassification {
        let resolved = self.resolve_statements(class);
        if !resolved
            .statements
            .iter()
            .any(|s| matches!(s.prepared, Some(PreparedOp::Fetch { .. })))
        {
            return resolved;
        }
        // A FETCH from a protocol portal runs that portal: judged as what
        // it is bound to (one level: a portal that is itself a FETCH is
        // unknown). A name the proxy has no portal for is a SQL cursor,
        // whose query was judged at DECLARE.
        let statements = resolved
            .statements
            .iter()
            .map(|s| match &s.prepared {
                Some(PreparedOp::Fetch { portal }) => match self.portals.get(portal) {
                    Some(b) => {
                        let inner = self.resolve_statements(&b.stmt.class);
                        let mut effects: Vec<Effect> = s.effects.to_vec();
                        for t in &inner.statements {
                            if matches!(t.prepared, Some(PreparedOp::Fetch { .. })) {
                                effects.push(unknown_effect(
                                    "FETCH from a portal that is itself a FETCH",
                                ));
                            }
                            effects.extend(t.effects.iter().cloned());
                        }
                        StatementClass {
                            span: s.span,
                            effects: effects.into(),
                            prepared: None,
                        }
                    }
                    None => s.clone(),
                },
                _ => s.clone(),
            })
            .collect();
        Arc::new(Classification { statements })
    }

    /// `EXECUTE name` resolved to what the prepared statement does.
    fn resolve_statements(&self, class: &SharedClassification) -> SharedClassification {
        // Names this segment's earlier Executes prepared or deallocated
        // come first: the session's are updated only once it is decided.
        resolve_prepared(class, |name| {
            self.segment_names.resolve(name, |n| {
                self.named(n).map(|k| {
                    // A redefined name repeats effects (a capped one, eight
                    // times the same unknown): judged and recorded once.
                    let mut effects: Vec<Effect> = k.class.effects().cloned().collect();
                    effects.dedup();
                    effects.into()
                })
            })
        })
    }

    /// The current unit's text, copied out of its Query frame the first
    /// time something keeps it (a PREPARE, a hold, a record that shows the
    /// raw text): most statements need no copy.
    fn unit_sql(&mut self, unit: &Unit<'_>) -> Arc<str> {
        if let Some(sql) = &self.last_sql {
            return Arc::clone(sql);
        }
        let text = match unit {
            Unit::Query { frame } => Body::new(frame).str().ok(),
            Unit::Segment { .. } => None,
        };
        let sql = text.map_or_else(|| self.no_sql.clone(), Arc::from);
        self.last_sql = Some(Arc::clone(&sql));
        sql
    }

    fn judge(&mut self, unit: &Unit<'_>) -> Result<Judgement, (&'static str, String)> {
        if !self.unsettled.is_empty() {
            self.settle();
        }
        self.refresh();
        let (raw, executed): (Units<_>, Units<_>) = match unit {
            Unit::Query { frame } => {
                let mut b = Body::new(frame);
                let sql = b
                    .cstr()
                    .map_err(|e| (sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
                let class = match super::frame::text(sql) {
                    Some(sql) => {
                        self.last_sql = None;
                        let c = classify(&mut self.pre, &self.snap.classifier, sql, Text::Query);
                        self.last_redacted = c.redacted;
                        c.class
                    }
                    None => {
                        self.last_sql = Some(self.no_sql.clone());
                        self.last_redacted = None;
                        unknown("statement text is not valid UTF-8")
                    }
                };
                self.last_params = Params::default();
                let judged = self.resolve(&class);
                // The text is kept for bookkeeping only if it PREPAREs.
                let prepares = class
                    .statements
                    .iter()
                    .any(|s| matches!(s.prepared, Some(PreparedOp::Prepare { .. })));
                let sql = if prepares {
                    self.unit_sql(unit)
                } else {
                    self.no_sql.clone()
                };
                (smallvec![Known::fixed(class, sql)], smallvec![judged])
            }
            Unit::Segment { .. } => {
                self.segment_names = UnitNames::default();
                let execs = std::mem::take(&mut self.executed);
                let text = segment_text(&execs).unwrap_or_else(|| SegmentText {
                    sql: self.no_sql.clone(),
                    redacted: None,
                    params: Params::default(),
                });
                self.last_sql = Some(text.sql);
                self.last_redacted = text.redacted;
                self.last_params = text.params;
                execs.into_iter().map(|e| (e.raw, e.judged)).unzip()
            }
        };
        self.copies_in = raw.iter().any(|k| {
            k.class
                .statements
                .iter()
                .any(|s| s.prepared == Some(PreparedOp::CopyFromStdin))
        });
        let subject = Subject {
            agent: &self.info.agent,
            application_name: &self.info.application_name,
            database: &self.info.database,
        };
        let mut decision: Option<Decision> = None;
        for class in &executed {
            let d = self.decided.evaluate(&self.snap.rules, class, &subject);
            decision = Some(match decision {
                None => d,
                Some(prev) => merge(prev, d),
            });
        }
        // A segment that executes nothing (Parse/Describe only) runs nothing.
        // (Lazily: an empty `Arc<[_]>` is still an allocation.)
        let decision = decision.unwrap_or_else(|| Decision {
            action: Action::Allow,
            rules: Arc::from([]),
            message: None,
            hold: None,
        });
        Ok(Judgement {
            decision,
            executed,
            raw,
            query: matches!(unit, Unit::Query { .. }),
            ruleset: Arc::clone(&self.ruleset),
        })
    }

    /// Judge a unit. Also returns the draft of its audit record (outcome
    /// still to fill in), or `None` for a unit that executes nothing.
    pub fn decide(&mut self, unit: &Unit<'_>) -> (Verdict, Option<Draft>) {
        if self.proxy.audit.policy() == FailurePolicy::Refuse && !self.proxy.audit.is_healthy() {
            // The trail cannot record what would happen: run nothing.
            self.rollback();
            let message = "pg-airlock: the audit trail is unavailable; statements are refused until it recovers".to_string();
            return (
                Verdict::Refuse {
                    code: sqlstate::CANNOT_CONNECT_NOW,
                    message,
                },
                None,
            );
        }
        let mut judgement = match self.judge(unit) {
            Ok(j) => j,
            Err((code, message)) => {
                self.rollback();
                return (Verdict::Refuse { code, message }, None);
            }
        };
        let executes = !judgement.executed.is_empty();
        let draft = if executes {
            self.statements += 1;
            self.proxy.metrics.statements_total.inc();
            Some(self.draft(&mut judgement, unit))
        } else {
            None
        };
        (self.verdict(judgement, executes, unit), draft)
    }

    /// The unit's audit draft. A unit that runs as it is (allow, log)
    /// hands over what only its record still needs; a refusal or hold
    /// still needs the decision's rules and the values itself.
    fn draft(&mut self, j: &mut Judgement, unit: &Unit<'_>) -> Draft {
        let runs = matches!(j.decision.action, Action::Allow | Action::Log);
        // A held or refused statement's record shows its text in full.
        let sql = (!runs
            || self
                .proxy
                .audit
                .records_raw_text(self.last_redacted.is_some()))
        .then(|| self.unit_sql(unit));
        let d = &mut j.decision;
        let mut draft = Draft {
            who: Arc::clone(&self.who),
            statement: self.statements,
            sql,
            redacted: self.last_redacted.take(),
            params: self.last_params.clone(),
            executed: if runs {
                std::mem::take(&mut j.executed)
            } else {
                j.executed.clone()
            },
            decision: match d.action {
                Action::Allow => decision::ALLOW,
                Action::Log => "log",
                Action::Deny => decision::DENY,
                Action::Hold => "held",
            },
            rules: Arc::clone(&d.rules),
            ruleset: Arc::clone(&j.ruleset),
            request_id: None,
            judged: None,
        };
        if runs && self.proxy.audit.is_enabled() {
            draft.judged = self.judged.get(&draft);
        }
        draft
    }

    /// `executes`: the unit runs something (its `executed` may have been
    /// handed to the draft already).
    fn verdict(&mut self, judgement: Judgement, executes: bool, unit: &Unit<'_>) -> Verdict {
        let m = &self.proxy.metrics;
        let d = &judgement.decision;
        match d.action {
            Action::Allow | Action::Log => {
                // Counted like `statements_total`: units that execute
                // something (a Parse/Describe/Sync batch does not).
                match (executes, d.action) {
                    (false, _) => {}
                    (true, Action::Log) => m.statements_logged.inc(),
                    (true, _) => m.statements_allowed.inc(),
                }
                self.commit(&judgement);
                Verdict::Forward
            }
            Action::Deny => {
                m.statements_denied.inc();
                self.rollback();
                let why = d
                    .message
                    .clone()
                    .unwrap_or_else(|| "refused by policy".into());
                tracing::info!(session = %self.info.id, rules = ?d.rules, "statement denied");
                Verdict::Refuse {
                    code: sqlstate::INSUFFICIENT_PRIVILEGE,
                    message: format!("pg-airlock: denied by rule {}: {why}", d.rules.join(", ")),
                }
            }
            Action::Hold => {
                m.statements_held.inc();
                let classification = Classification {
                    statements: judgement
                        .executed
                        .iter()
                        .flat_map(|c| c.statements.iter().cloned())
                        .collect(),
                };
                let mut categories: Vec<Category> =
                    classification.effects().map(|e| e.category).collect();
                categories.sort();
                categories.dedup();
                let prepared = self.prepared_texts(&judgement.raw);
                Verdict::Hold(Box::new(Held {
                    sql: self.unit_sql(unit).to_string(),
                    prepared,
                    params: self.last_params.render(),
                    settings: d.hold.as_deref().cloned().unwrap_or_default(),
                    decision: judgement.decision,
                    categories,
                    classification,
                    raw: judgement.raw,
                    query: judgement.query,
                }))
            }
        }
    }

    /// The texts of the prepared statements `raw` EXECUTEs by name (SQL
    /// level; a protocol Execute's text is the unit's own), each once, as
    /// they are when each EXECUTE runs: a name the unit itself prepares
    /// shows the unit's text (as `resolve_prepared` judges it).
    fn prepared_texts(&self, raw: &[Known]) -> Vec<crate::audit::event::PreparedText> {
        let mut out: Vec<crate::audit::event::PreparedText> = Vec::new();
        let mut names: UnitNames<Arc<str>> = UnitNames::default();
        for k in raw {
            for s in &k.class.statements {
                if let Some(PreparedOp::Execute { name }) = &s.prepared {
                    let sql = names.resolve(name, |n| self.named(n).map(|k| k.sql.clone()));
                    if let Some(sql) = sql
                        && !out.iter().any(|p| p.name == *name && *p.sql == *sql)
                    {
                        out.push(crate::audit::event::PreparedText {
                            name: name.clone(),
                            sql: sql.to_string(),
                        });
                    }
                }
                let text: Arc<str> = Arc::from(k.sql.get(s.span.0..s.span.1).unwrap_or(&k.sql));
                names.note(s, &text);
            }
        }
        out
    }

    /// The unit was held and then approved: apply its bookkeeping.
    pub fn approved(&mut self, held: &Held) {
        if held.query {
            for k in &held.raw {
                self.apply_sql_prepared(k);
            }
        }
        self.seal();
    }

    /// The unit was held and then refused: forget its bookkeeping.
    pub fn refused(&mut self) {
        self.rollback();
    }

    fn commit(&mut self, j: &Judgement) {
        if j.query {
            for k in &j.raw {
                self.apply_sql_prepared(k);
            }
        }
        self.seal();
    }

    fn apply_sql_prepared(&mut self, k: &Known) {
        for s in &k.class.statements {
            match &s.prepared {
                Some(PreparedOp::Prepare { name }) => {
                    let inner = Arc::new(Classification {
                        statements: vec![StatementClass {
                            span: s.span,
                            effects: Arc::clone(&s.effects),
                            prepared: None,
                        }],
                    });
                    let sql = Arc::from(k.sql.get(s.span.0..s.span.1).unwrap_or(&k.sql));
                    let known = Known {
                        class: inner,
                        sql,
                        redacted: None,
                        by: self.snap.classifier.id(),
                    };
                    let known = match self.named(name) {
                        Some(old) => redefined(old, known),
                        None => known,
                    };
                    let old = self.prepared.insert(name.clone(), known);
                    self.undo.push(Undo::Statement(name.clone(), old));
                }
                Some(PreparedOp::Deallocate { name }) => {
                    let old = self.prepared.remove(name);
                    self.undo.push(Undo::Statement(name.clone(), old));
                }
                Some(PreparedOp::DeallocateAll) => {
                    // Protocol-level statements too. Portals stay: they keep
                    // their plans (DISCARD ALL, which closes them, cannot run
                    // inside the transaction a portal lives in).
                    let all: Vec<(String, Known)> = self.prepared.drain().collect();
                    for (name, old) in all {
                        self.undo.push(Undo::Statement(name, Some(old)));
                    }
                }
                Some(
                    PreparedOp::Execute { .. }
                    | PreparedOp::Fetch { .. }
                    | PreparedOp::CopyFromStdin,
                )
                | None => {}
            }
        }
    }

    fn rollback(&mut self) {
        self.executed.clear();
        self.segment_names = UnitNames::default();
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Statement(name, Some(old)) => {
                    self.prepared.insert(name, old);
                }
                Undo::Statement(name, None) => {
                    self.prepared.remove(&name);
                }
                Undo::Portal(name, Some(old)) => {
                    self.portals.insert(name, old);
                }
                Undo::Portal(name, None) => {
                    self.portals.remove(&name);
                }
            }
        }
    }
}

/// Judge a classification as it will run: `EXECUTE name` becomes what
/// `lookup(name)` says the prepared statement does (plus the effects of its
/// own arguments), or `unknown` if the name was never seen; `PREPARE` runs
/// nothing and is a session no-op (what it prepares is judged at EXECUTE).
/// Used by the session (with its prepared statements) and by `explain`
/// (with none), so both judge alike.
pub fn resolve_prepared(
    class: &SharedClassification,
    lookup: impl Fn(&str) -> Option<Arc<[Effect]>>,
) -> SharedClassification {
    let needs = class.statements.iter().any(|s| {
        matches!(
            s.prepared,
            Some(PreparedOp::Execute { .. } | PreparedOp::Prepare { .. })
        )
    });
    if !needs {
        return class.clone();
    }
    // PostgreSQL runs a message's statements in order, so an EXECUTE runs
    // what the message itself last PREPAREd under that name, or nothing
    // after the message DEALLOCATEd it: never what the name meant before
    // (`DEALLOCATE x; PREPARE x AS DELETE ...; EXECUTE x` must be judged
    // as the DELETE).
    let mut names = UnitNames::default();
    let statements = class
        .statements
        .iter()
        .map(|s| {
            let out = match &s.prepared {
                Some(PreparedOp::Execute { name }) => match names.resolve(name, &lookup) {
                    Some(inner) => StatementClass {
                        span: s.span,
                        effects: s
                            .effects
                            .iter()
                            .cloned()
                            .chain(inner.iter().cloned())
                            .collect(),
                        prepared: s.prepared.clone(),
                    },
                    None => StatementClass {
                        span: s.span,
                        effects: Arc::from([unknown_effect(&format!(
                            "EXECUTE of {name:?}, which the proxy has not seen prepared"
                        ))]),
                        prepared: s.prepared.clone(),
                    },
                },
                Some(PreparedOp::Prepare { name }) => StatementClass {
                    span: s.span,
                    effects: vec![Effect {
                        category: Category::Session,
                        tables: vec![],
                        functions: vec![],
                        why: format!("PREPARE {name} (judged when executed)"),
                    }]
                    .into(),
                    prepared: s.prepared.clone(),
                },
                _ => s.clone(),
            };
            names.note(s, &s.effects);
            out
        })
        .collect();
    Arc::new(Classification { statements })
}

/// What a unit's own PREPARE / DEALLOCATE statements did to the names so
/// far, in order: looked up before the session's names, which the unit's
/// bookkeeping updates only once it is decided.
#[derive(Default)]
struct UnitNames<T> {
    /// `None`: deallocated by the unit.
    names: HashMap<String, Option<T>>,
    /// DEALLOCATE ALL / DISCARD ALL ran: no earlier name exists any more.
    all_gone: bool,
}

impl<T: Clone> UnitNames<T> {
    fn note(&mut self, s: &StatementClass, prepared_as: &T) {
        match &s.prepared {
            Some(PreparedOp::Prepare { name }) => {
                self.names.insert(name.clone(), Some(prepared_as.clone()));
            }
            Some(PreparedOp::Deallocate { name }) => {
                self.names.insert(name.clone(), None);
            }
            Some(PreparedOp::DeallocateAll) => {
                self.names.clear();
                self.all_gone = true;
            }
            Some(
                PreparedOp::Execute { .. } | PreparedOp::Fetch { .. } | PreparedOp::CopyFromStdin,
            )
            | None => {}
        }
    }

    /// The name is defined outside the unit's statements (a protocol
    /// Parse): the session's entry answers for it again.
    fn forget(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// The name no longer exists (a protocol Close).
    fn dropped(&mut self, name: &str) {
        self.names.insert(name.to_string(), None);
    }

    /// What the unit's own statements made of `name`: `Some(None)` if they
    /// dropped it, `None` if they did not touch it.
    fn touched(&self, name: &str) -> Option<Option<T>> {
        match self.names.get(name) {
            Some(v) => Some(v.clone()),
            None if self.all_gone => Some(None),
            None => None,
        }
    }

    /// What `name` means now: the unit's own, else (unless the unit
    /// dropped every name) the session's.
    fn resolve(&self, name: &str, session: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        match self.names.get(name) {
            Some(v) => v.clone(),
            None if self.all_gone => None,
            None => session(name),
        }
    }
}

/// Combine the decisions for several executed statements of one unit:
/// the most restrictive action wins, with the rules behind it.
fn merge(a: Decision, b: Decision) -> Decision {
    use std::cmp::Ordering::*;
    match a.action.cmp(&b.action) {
        Greater => a,
        Less => b,
        Equal => {
            let mut rules = a.rules.to_vec();
            rules.extend(b.rules.iter().cloned());
            rules.sort();
            rules.dedup();
            let rules: Arc<[String]> = rules.into();
            let hold = match (a.hold, b.hold) {
                (Some(x), Some(y)) => Some(Box::new(HoldSettings {
                    channel: x.channel.or(y.channel),
                    approvers: if x.approvers.is_empty() {
                        y.approvers
                    } else {
                        x.approvers
                    },
                    quorum: x.quorum.max(y.quorum),
                    timeout: x.timeout.min(y.timeout),
                })),
                (x, y) => x.or(y),
            };
            Decision {
                action: a.action,
                rules,
                message: a.message.or(b.message),
                hold,
            }
        }
    }
}

fn unknown_effect(why: &str) -> Effect {
    Effect {
        category: Category::Unknown,
        tables: vec![],
        functions: vec![],
        why: why.to_string(),
    }
}

/// A prepared statement's class judged again from its text (`new`), with
/// the statement bookkeeping of the old one: an SQL-level PREPARE's text
/// classifies as the PREPARE, its name stands for the statement inside.
/// A text that no longer splits as before is unknown.
fn rejudged(old: &Classification, new: SharedClassification) -> SharedClassification {
    if old.statements.len() != new.statements.len() {
        return unknown("a prepared text judged again after a rule reload splits differently");
    }
    if old
        .statements
        .iter()
        .zip(&new.statements)
        .all(|(o, n)| o.prepared == n.prepared)
    {
        return new;
    }
    Arc::new(Classification {
        statements: old
            .statements
            .iter()
            .zip(&new.statements)
            .map(|(o, n)| StatementClass {
                prepared: o.prepared.clone(),
                ..n.clone()
            })
            .collect(),
    })
}

/// A name prepared again while it exists. PostgreSQL refuses the new
/// definition (42P05) and keeps the old one, but the proxy decides before
/// the server answers, and its view of which names exist can be stale
/// after statements the server refused: so the name is taken to be either
/// statement. Executing it is judged on both effects (the stricter wins)
/// and reviewers see both texts. Believing the new one would let
/// `PREPARE x AS SELECT 1` launder an existing `PREPARE x AS DELETE ...`.
///
/// Each refused redefinition would add to the name; past a few the name
/// is judged unknown (held everywhere) for good, keeping the texts it had,
/// so a loop of them cannot grow a session's memory.
fn redefined(old: &Known, new: Known) -> Known {
    const MAX_DEFINITIONS: usize = 8;
    if old.class.statements.len() + new.class.statements.len() > MAX_DEFINITIONS {
        // MAX_DEFINITIONS statements, so the capped entry stays capped: its
        // text (at most MAX_DEFINITIONS texts) is never extended again.
        let why = unknown("a name prepared again and again while it existed");
        let class = Arc::new(Classification {
            statements: vec![why.statements[0].clone(); MAX_DEFINITIONS],
        });
        return Known::fixed(class, old.sql.clone());
    }
    let statements = old
        .class
        .statements
        .iter()
        .chain(new.class.statements.iter())
        .cloned()
        .collect();
    Known::fixed(
        Arc::new(Classification { statements }),
        Arc::from(format!("{}\n{}", old.sql, new.sql)),
    )
}

/// A segment's text, its redaction and its bound values, for its record
/// and reviewers.
struct SegmentText {
    sql: Arc<str>,
    redacted: Option<Arc<str>>,
    params: Params,
}

/// Each Execute's statement text, in order, one per line (a portal
/// executed again, in row-limited steps, once), and their values,
/// concatenated; `None` for no Execute. When every Execute is the same
/// binding (the common case, one Execute) its text, redaction and values
/// are shared, not copied.
fn segment_text(execs: &[Exec]) -> Option<SegmentText> {
    let same = |a: &Exec, b: &Exec| Arc::ptr_eq(&a.raw.sql, &b.raw.sql) && a.params.same(&b.params);
    let distinct = || {
        execs
            .iter()
            .enumerate()
            .filter(|&(i, e)| i == 0 || !same(&execs[i - 1], e))
            .map(|(_, e)| e)
    };
    match execs {
        [] => None,
        [first, rest @ ..] if rest.iter().all(|e| same(e, first)) => Some(SegmentText {
            sql: Arc::clone(&first.raw.sql),
            redacted: first.raw.redacted.clone(),
            params: first.params.clone(),
        }),
        _ => {
            let mut sql = String::new();
            for (i, e) in distinct().enumerate() {
                if i > 0 {
                    sql.push_str(if sql.trim_end().ends_with(';') {
                        "\n"
                    } else {
                        ";\n"
                    });
                }
                sql.push_str(&e.raw.sql);
            }
            Some(SegmentText {
                sql: Arc::from(sql),
                // Joined texts are redacted by the audit trail itself.
                redacted: None,
                params: Params::concat(distinct().map(|e| &e.params)),
            })
        }
    }
}

pub(crate) fn unknown(why: &str) -> SharedClassification {
    Arc::new(Classification {
        statements: vec![StatementClass {
            span: (0, 0),
            effects: Arc::from([unknown_effect(why)]),
            prepared: None,
        }],
    })
}

/// Where a text came from, which tells the classifier what to try first.
#[derive(Clone, Copy)]
enum Text {
    /// Simple protocol: agents and tools inline their literals.
    Query,
    /// A Parse: drivers bind parameters, so the text repeats exactly.
    Parse,
}

/// What [`classify`] found for a text.
struct Classified {
    class: SharedClassification,
    /// The text with its literals redacted, when a cached shape has it.
    redacted: Option<Arc<str>>,
    /// The classifier's own copy of the text, when it holds one: kept
    /// instead of a new copy.
    text: Option<Arc<str>>,
}

/// Classify `sql`, or take the classification computed off the session
/// thread for exactly this text under this classifier (see
/// [`Policy::preclassified`]).
fn classify(
    pre: &mut Option<Pre>,
    classifier: &Arc<Classifier>,
    sql: &str,
    from: Text,
) -> Classified {
    if let Some(p) = pre.take()
        && Arc::ptr_eq(&p.classifier, classifier)
        && p.sql == sql
    {
        return Classified {
            class: p.class,
            redacted: None,
            text: None,
        };
    }
    if let Text::Parse = from
        && let Some((class, text)) = classifier.exactly(sql)
    {
        return Classified {
            class,
            redacted: None,
            text: Some(text),
        };
    }
    let (class, redacted) = classifier.classify_redacting(sql);
    Classified {
        class,
        redacted,
        text: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(sql: &Arc<str>, params: &Params) -> Exec {
        let class = unknown("test");
        Exec {
            raw: Known {
                class: class.clone(),
                sql: sql.clone(),
                redacted: Some(Arc::from(format!("redacted {sql}"))),
                by: 0,
            },
            params: params.clone(),
            judged: class,
        }
    }

    fn known(sql: &str, category: Category) -> Known {
        let effect = Effect {
            category,
            tables: Vec::new(),
            functions: Vec::new(),
            why: String::new(),
        };
        let class = Arc::new(Classification {
            statements: vec![crate::classify::StatementClass {
                span: (0, sql.len()),
                effects: Arc::from(vec![effect]),
                prepared: None,
            }],
        });
        Known::fixed(class, Arc::from(sql))
    }

    /// A name defined again while it exists stands for every definition
    /// (the server kept the first); a loop of refused redefinitions ends
    /// in `unknown` with bounded size instead of growing.
    #[test]
    fn a_redefined_name_keeps_every_definition_up_to_a_bound() {
        let delete = known("DELETE FROM t", Category::Destructive);
        let select = known("SELECT 1", Category::Read);
        let once = redefined(&delete, select.clone());
        assert_eq!(once.class.category(), Category::Destructive);
        assert_eq!(&*once.sql, "DELETE FROM t\nSELECT 1");
        let mut k = once;
        let mut most = 0;
        for _ in 0..50 {
            k = redefined(&k, select.clone());
            most = most.max(k.class.statements.len());
            assert!(
                k.class.category() >= Category::Destructive,
                "a redefinition laundered the DELETE"
            );
        }
        assert_eq!(
            k.class.category(),
            Category::Unknown,
            "past the bound the name is unknown"
        );
        assert!(most <= 8, "{most} definitions kept");
        assert!(
            k.sql.len() <= 8 * "DELETE FROM t\n".len(),
            "text grew to {} bytes",
            k.sql.len()
        );
    }

    /// A prepared text classified again after a reload takes the new
    /// effects and keeps its own statement bookkeeping (an SQL-level
    /// PREPARE's text classifies as the PREPARE; its name stands for the
    /// statement inside); a text that now splits differently is unknown.
    #[test]
    fn rejudged_takes_new_effects_keeps_bookkeeping_and_fails_closed() {
        let c = crate::classify::Classifier::new(Default::default(), 1 << 20);
        let inner = known("DELETE FROM t", Category::Read).class;
        let again = c.classify("PREPARE p AS DELETE FROM t");
        assert!(matches!(
            again.statements[0].prepared,
            Some(PreparedOp::Prepare { .. })
        ));
        let r = rejudged(&inner, again.clone());
        assert_eq!(r.statements[0].prepared, None, "still the statement inside");
        assert_eq!(r.category(), again.category());
        assert_eq!(r.category(), Category::Destructive);

        let same = c.classify("SELECT 1");
        assert!(
            Arc::ptr_eq(&rejudged(&same, same.clone()), &same),
            "nothing to change"
        );

        let two = c.classify("SELECT 1; SELECT 2");
        assert_eq!(rejudged(&same, two).category(), Category::Unknown);
    }

    /// A pipelined segment's record shows every Execute's own text and
    /// values in order; a portal executed again in row-limited steps (same
    /// binding) appears once; one Execute shares its values.
    #[test]
    fn segment_text_lists_each_execution_in_order() {
        let (a, b): (Arc<str>, Arc<str>) = (
            Arc::from("SELECT $1"),
            Arc::from("DELETE FROM t WHERE id = $1;"),
        );
        let values = |v: &str| {
            let mut section = vec![0, 0, 0, 1];
            section.extend_from_slice(&(v.len() as i32).to_be_bytes());
            section.extend_from_slice(v.as_bytes());
            let mut frame = vec![b'B'];
            frame.extend_from_slice(&(section.len() as i32 + 4).to_be_bytes());
            frame.extend_from_slice(&section);
            Params::read(&mut Body::new(&frame)).unwrap()
        };
        let (p1, p2, none) = (values("1"), values("2"), Params::default());
        assert!(segment_text(&[]).is_none());
        let one = segment_text(&[exec(&a, &p1)]).unwrap();
        assert!(Arc::ptr_eq(&one.sql, &a), "one Execute shares its text");
        assert_eq!(one.redacted.as_deref(), Some("redacted SELECT $1"));
        assert!(one.params.same(&p1), "one Execute shares its values");
        let continued = segment_text(&[exec(&a, &p1), exec(&a, &p1)]).unwrap();
        assert_eq!(&*continued.sql, "SELECT $1");
        assert!(
            continued.params.same(&p1),
            "a continued portal shares its values"
        );
        let many = segment_text(&[
            exec(&b, &p2),
            exec(&b, &p2),
            exec(&a, &p1),
            exec(&a, &none),
            exec(&b, &p1),
        ])
        .unwrap();
        assert_eq!(
            &*many.sql,
            "DELETE FROM t WHERE id = $1;\nSELECT $1;\nSELECT $1;\nDELETE FROM t WHERE id = $1;"
        );
        assert_eq!(
            many.redacted, None,
            "a joined text is redacted by the trail"
        );
        assert_eq!(
            many.params.render(),
            [Some("2".into()), Some("1".into()), Some("1".into())]
        );
    }
}
