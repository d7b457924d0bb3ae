//! Auditor tools over the trail: `search` and `session_timeline`.
//!
//! Both read records in `seq` order and join what single lines do not carry:
//! approval decisions name only the request id, so their session, agent and
//! categories come from the matching `approval_requested`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::Error;
use super::chain::{Record, read_records};
use super::event::{EventKind, Outcome, Timestamp};

/// All set fields must match (AND). Strings match exactly except `text`,
/// which is a case-insensitive substring of the record's JSON.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub agent: Option<String>,
    pub session: Option<String>,
    pub category: Option<String>,
    /// Statement decision (`allow`, `deny`, ...) or approval outcome
    /// (`approved`, `denied`, `expired`, `withdrawn`).
    pub decision: Option<String>,
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    pub text: Option<String>,
}

/// Facts joined across records.
#[derive(Default)]
pub(crate) struct Joins {
    pub session_agent: HashMap<String, String>,
    /// request id -> (session, agent, categories)
    pub requests: HashMap<String, (String, String, Vec<String>)>,
}

impl Joins {
    pub fn build(records: &[Record]) -> Joins {
        let mut j = Joins::default();
        for r in records {
            match &r.event.kind {
                EventKind::SessionStart(s) => {
                    j.session_agent.insert(s.session.clone(), s.agent.clone());
                }
                EventKind::Statement(s) => {
                    j.session_agent
                        .entry(s.session.clone())
                        .or_insert_with(|| s.agent.clone());
                }
                EventKind::ApprovalRequested(a) => {
                    j.requests.insert(
                        a.request_id.clone(),
                        (a.session.clone(), a.agent.clone(), a.categories.clone()),
                    );
                    j.session_agent
                        .entry(a.session.clone())
                        .or_insert_with(|| a.agent.clone());
                }
                _ => {}
            }
        }
        j
    }

    fn request_id(r: &Record) -> Option<&str> {
        match &r.event.kind {
            EventKind::ApprovalRequested(a) => Some(&a.request_id),
            EventKind::ApprovalDecided(a) => Some(&a.request_id),
            EventKind::ApprovalExpired(a) | EventKind::ApprovalWithdrawn(a) => Some(&a.request_id),
            EventKind::Statement(s) => s.request_id.as_deref(),
            _ => None,
        }
    }

    pub fn session_of<'a>(&'a self, r: &'a Record) -> Option<&'a str> {
        r.event.session().or_else(|| {
            Self::request_id(r)
                .and_then(|id| self.requests.get(id))
                .map(|x| x.0.as_str())
        })
    }

    pub fn agent_of<'a>(&'a self, r: &'a Record) -> Option<&'a str> {
        match &r.event.kind {
            EventKind::SessionStart(s) => Some(&s.agent),
            EventKind::SessionEnd(s) => Some(&s.agent),
            EventKind::Statement(s) => Some(&s.agent),
            EventKind::ApprovalRequested(a) => Some(&a.agent),
            EventKind::AdminAction(a) => Some(&a.actor),
            EventKind::LoginRefused(l) => l.user.as_deref(),
            _ => self
                .session_of(r)
                .and_then(|s| self.session_agent.get(s))
                .map(String::as_str),
        }
    }

    pub fn categories_of<'a>(&'a self, r: &'a Record) -> &'a [String] {
        match &r.event.kind {
            EventKind::Statement(s) => &s.categories,
            EventKind::ApprovalRequested(a) => &a.categories,
            _ => Self::request_id(r)
                .and_then(|id| self.requests.get(id))
                .map_or(&[], |x| x.2.as_slice()),
        }
    }
}

pub(crate) fn decision_of(r: &Record) -> Option<&str> {
    match &r.event.kind {
        EventKind::Statement(s) => Some(&s.decision),
        EventKind::ApprovalDecided(a) => Some(&a.decision),
        EventKind::ApprovalExpired(_) => Some(super::event::decision::EXPIRED),
        EventKind::ApprovalWithdrawn(_) => Some(super::event::decision::WITHDRAWN),
        _ => None,
    }
}

/// Records of `files` matching `filter`, in `seq` order.
///
/// # Errors
/// A file cannot be read or holds a line that is not a record (run `verify`).
pub fn search(files: &[PathBuf], filter: &Filter) -> Result<Vec<Record>, Error> {
    let records = read_records(files)?;
    let joins = Joins::build(&records);
    let text = filter.text.as_ref().map(|t| t.to_lowercase());
    Ok(records
        .into_iter()
        .filter(|r| {
            filter.since.is_none_or(|t| r.event.ts >= t)
                && filter.until.is_none_or(|t| r.event.ts < t)
                && filter
                    .session
                    .as_deref()
                    .is_none_or(|s| joins.session_of(r) == Some(s))
                && filter
                    .agent
                    .as_deref()
                    .is_none_or(|a| joins.agent_of(r) == Some(a))
                && filter
                    .category
                    .as_deref()
                    .is_none_or(|c| joins.categories_of(r).iter().any(|x| x == c))
                && filter
                    .decision
                    .as_deref()
                    .is_none_or(|d| decision_of(r) == Some(d))
                && text.as_deref().is_none_or(|t| {
                    serde_json::to_string(&r.event)
                        .map(|j| j.to_lowercase().contains(t))
                        .unwrap_or(false)
                })
        })
        .collect())
}

/// One session, readable: header with its identity, then one line per event
/// (statements, approvals for its requests, end) with the offset from start.
///
/// # Errors
/// As [`search`]; an unknown session id yields a one-line "no records" text.
pub fn session_timeline(files: &[PathBuf], session_id: &str) -> Result<String, Error> {
    let records = read_records(files)?;
    let joins = Joins::build(&records);
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| joins.session_of(r) == Some(session_id))
        .collect();
    let mut out = String::new();
    let Some(first) = mine.first() else {
        let _ = writeln!(out, "session {session_id}: no records");
        return Ok(out);
    };
    let t0 = first.event.ts;
    let _ = writeln!(out, "Session {session_id}");
    for r in &mine {
        if let EventKind::SessionStart(s) = &r.event.kind {
            let _ = writeln!(
                out,
                "  agent {}  from {}:{}  tls {}{}  database {}  application {}",
                s.agent,
                s.client_addr,
                s.client_port,
                if s.tls { "yes" } else { "no" },
                s.client_cert_subject
                    .as_deref()
                    .map(|c| format!(" (cert {c})"))
                    .unwrap_or_default(),
                s.database,
                s.application_name.as_deref().unwrap_or("-")
            );
        }
    }
    let _ = writeln!(out);
    for r in &mine {
        let off = (r.event.ts.micros() - t0.micros()) as f64 / 1e6;
        let _ = write!(out, "{}  +{off:>9.3}s  #{:<6} ", r.event.ts, r.seq);
        let _ = match &r.event.kind {
            EventKind::SessionStart(_) => writeln!(out, "session start"),
            EventKind::SessionEnd(s) => writeln!(
                out,
                "session end: {} ({} statements)",
                s.reason, s.statements
            ),
            EventKind::Statement(s) => {
                let outcome = match &s.outcome {
                    Outcome::Ok { command_tag, .. } => format!("-> {command_tag}"),
                    Outcome::Error { sqlstate, message } => {
                        format!("-> ERROR {sqlstate} {message}")
                    }
                    Outcome::NotSent => "-> not sent".into(),
                };
                writeln!(
                    out,
                    "statement {}: {} [{}]{} {} {} ({:.1} ms)  {}",
                    s.statement,
                    s.decision,
                    s.categories.join(","),
                    if s.rules.is_empty() {
                        String::new()
                    } else {
                        format!(" rules {}", s.rules.join(","))
                    },
                    s.sql.as_deref().unwrap_or("<text not recorded>"),
                    outcome,
                    s.duration_us as f64 / 1000.0,
                    s.request_id
                        .as_deref()
                        .map(|id| format!("request {id}"))
                        .unwrap_or_default()
                )
            }
            EventKind::ApprovalRequested(a) => writeln!(
                out,
                "approval requested {} for statement {} via {}: approvers {} (quorum {}), rules {}: {}",
                a.request_id,
                a.statement,
                a.channel,
                a.approvers.join(","),
                a.quorum,
                a.rules.join(","),
                a.sql
            ),
            EventKind::ApprovalDecided(a) => writeln!(
                out,
                "approval {} {} by {} after {:.1}s{}",
                a.request_id,
                a.decision,
                a.approvers.join(","),
                a.latency_ms as f64 / 1000.0,
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            EventKind::ApprovalExpired(a) => writeln!(
                out,
                "approval {} expired after {:.1}s: {}",
                a.request_id,
                a.latency_ms as f64 / 1000.0,
                a.reason
            ),
            EventKind::ApprovalWithdrawn(a) => writeln!(
                out,
                "approval {} withdrawn after {:.1}s: {}",
                a.request_id,
                a.latency_ms as f64 / 1000.0,
                a.reason
            ),
            other => writeln!(out, "{}", other.type_name()),
        };
    }
    Ok(out)
}
