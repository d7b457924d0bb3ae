//! The audit event model: what one line of the audit trail says.
//!
//! Types here depend on no other module of the proxy: categories, decisions
//! and rule ids are plain strings that the session code maps from the
//! classifier and rule engine. The vocabulary the report understands is in
//! [`decision`]. Serialised as JSON with an internal `"type"` tag; the writer
//! adds `seq` and `prev` in front (see `chain`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decision strings the report and search know about. The session may use
/// others; they are recorded verbatim and shown as-is.
pub mod decision {
    /// Statement passed the rules and was relayed.
    pub const ALLOW: &str = "allow";
    /// Statement refused by a rule, never sent upstream.
    pub const DENY: &str = "deny";
    /// Statement held for approval and approved (then relayed).
    pub const APPROVED: &str = "approved";
    /// Statement held for approval and refused by a human.
    pub const DENIED: &str = "denied";
    /// Approval request timed out.
    pub const EXPIRED: &str = "expired";
    /// Approval request withdrawn (client cancel or disconnect).
    pub const WITHDRAWN: &str = "withdrawn";
}

/// A point in time, microseconds since the Unix epoch, UTC.
///
/// Formatted by hand as RFC 3339 with exactly six fractional digits and a
/// `Z` (`2026-11-22T04:29:57.123456Z`) so the text form sorts like the value
/// and no date crate is needed. Parsing accepts any RFC 3339 offset, an
/// optional fraction, and a bare `YYYY-MM-DD` (midnight UTC) for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_micros() as i64),
            Err(e) => Timestamp(-(e.duration().as_micros() as i64)),
        }
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Days since the epoch (floor), for per-day buckets.
    pub fn day(self) -> i64 {
        self.0.div_euclid(86_400_000_000)
    }

    /// `YYYY-MM-DD` of the given epoch day.
    pub fn format_day(day: i64) -> String {
        let (y, m, d) = civil_from_days(day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    pub fn parse(s: &str) -> Result<Timestamp, String> {
        parse_rfc3339(s).ok_or_else(|| format!("invalid RFC 3339 time {s:?}"))
    }
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` written digit by digit: every audit
    /// record carries one, and `write!` with padded integers cost about a
    /// tenth of the writer thread's time. `None` outside years 0..=9999.
    /// The date and time of day are the same for every record of a second:
    /// each thread keeps its last second's, and writes only the micros.
    pub(crate) fn ascii(self) -> Option<[u8; 27]> {
        thread_local! {
            static LAST: std::cell::Cell<(i64, [u8; 27])> =
                const { std::cell::Cell::new((i64::MIN, [0; 27])) };
        }
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let mut b = match LAST.try_with(|l| l.get()) {
            Ok((at, b)) if at == secs => b,
            _ => {
                let b = Self::second_ascii(secs)?;
                let _ = LAST.try_with(|l| l.set((secs, b)));
                b
            }
        };
        // Three pairs of digits from a table: no division per digit.
        for (i, pair) in [micros / 10_000, (micros / 100) % 100, micros % 100]
            .into_iter()
            .enumerate()
        {
            let at = 20 + 2 * i;
            b[at..at + 2].copy_from_slice(&PAIRS[pair as usize]);
        }
        Some(b)
    }

    /// [`Timestamp::ascii`] of the start of second `secs`.
    fn second_ascii(secs: i64) -> Option<[u8; 27]> {
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
        let sod = secs.rem_euclid(86_400) as u32;
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut b[0..4], y);
        put_digits(&mut b[5..7], mo);
        put_digits(&mut b[8..10], d);
        put_digits(&mut b[11..13], sod / 3600);
        put_digits(&mut b[14..16], (sod / 60) % 60);
        put_digits(&mut b[17..19], sod % 60);
        Some(b)
    }
}

/// `00` to `99`.
const PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The last `to.len()` decimal digits of `v`, zero-padded.
fn put_digits(to: &mut [u8], mut v: u32) {
    for c in to.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.ascii() {
            return f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?);
        }
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.ascii() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

// Howard Hinnant's days-from-civil / civil-from-days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(Timestamp(days * 86_400_000_000));
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 6)];
        micros = frac.parse::<i64>().ok()? * 10i64.pow(6 - frac.len() as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(Timestamp(secs * 1_000_000 + micros))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// One audit event: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the event happened (not when it was written).
    pub ts: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event stamped with the current wall-clock time.
    pub fn now(kind: EventKind) -> Event {
        Event {
            ts: Timestamp::now(),
            kind,
        }
    }

    /// The `"type"` tag of this event, as written.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// The session this event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        match &self.kind {
            EventKind::SessionStart(s) => Some(&s.session),
            EventKind::SessionEnd(s) => Some(&s.session),
            EventKind::Statement(s) => Some(&s.session),
            EventKind::ApprovalRequested(a) => Some(&a.session),
            EventKind::ApprovalDecided(a) => a.session.as_deref(),
            EventKind::ApprovalExpired(a) | EventKind::ApprovalWithdrawn(a) => a.session.as_deref(),
            _ => None,
        }
    }
}

/// Everything the audit trail records. Payloads are structs so that the
/// session code builds them by name, and new optional fields stay readable
/// by older verifiers (unknown fields are ignored on read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Written by the auditor itself when it starts (first event of a run).
    AuditStarted(AuditStarted),
    /// Written by the auditor itself on clean shutdown (last event of a run).
    AuditStopped(AuditStopped),
    /// Last record of a file before rotation; names the file it was renamed to.
    Rotated(Rotated),
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Statement(Statement),
    ApprovalRequested(ApprovalRequested),
    ApprovalDecided(ApprovalDecided),
    ApprovalExpired(ApprovalClosed),
    ApprovalWithdrawn(ApprovalClosed),
    /// Rules or config (re)loaded; `ruleset` names the policy version that
    /// later decisions cite.
    PolicyLoaded(PolicyLoaded),
    /// A reload was attempted and rejected; the previous policy stays.
    PolicyReloadFailed(PolicyReloadFailed),
    AdminAction(AdminAction),
    LoginRefused(LoginRefused),
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::AuditStarted(_) => "audit_started",
            EventKind::AuditStopped(_) => "audit_stopped",
            EventKind::Rotated(_) => "rotated",
            EventKind::SessionStart(_) => "session_start",
            EventKind::SessionEnd(_) => "session_end",
            EventKind::Statement(_) => "statement",
            EventKind::ApprovalRequested(_) => "approval_requested",
            EventKind::ApprovalDecided(_) => "approval_decided",
            EventKind::ApprovalExpired(_) => "approval_expired",
            EventKind::ApprovalWithdrawn(_) => "approval_withdrawn",
            EventKind::PolicyLoaded(_) => "policy_loaded",
            EventKind::PolicyReloadFailed(_) => "policy_reload_failed",
            EventKind::AdminAction(_) => "admin_action",
            EventKind::LoginRefused(_) => "login_refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStarted {
    /// pg-airlock version that wrote the trail.
    pub version: String,
    /// Recording policy in force for this run (`full`/`redacted`/`none`),
    /// so readers know what the statement text can and cannot show.
    #[serde(default)]
    pub statement_text: String,
    #[serde(default)]
    pub log_parameters: bool,
    /// Set when startup had to repair the active file: a partial last line
    /// (never fsynced, so never acknowledged) was cut off. Says how many
    /// bytes and their sha256 so the repair itself is on the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStopped {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rotated {
    /// File name (no directory) the current file is renamed to.
    pub archived_as: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionStart {
    pub session: String,
    /// Agent identity as authenticated (user name, or cert-derived name).
    pub agent: String,
    pub client_addr: String,
    pub client_port: u16,
    pub tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_subject: Option<String>,
    pub database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionEnd {
    pub session: String,
    pub agent: String,
    pub started_at: Option<Timestamp>,
    pub statements: u64,
    /// e.g. "client_terminate", "client_disconnect", "upstream_error", "shutdown".
    pub reason: String,
}

/// What the server answered, if the statement was sent at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// CommandComplete; `rows` parsed from the tag where it carries a count.
    Ok {
        command_tag: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<u64>,
    },
    /// ErrorResponse from the server (or synthesized by the proxy).
    Error { sqlstate: String, message: String },
    /// Never sent upstream (denied, expired, withdrawn).
    NotSent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub session: String,
    /// Denormalised from the session so a single line stands on its own.
    pub agent: String,
    /// Statement number within the session, from 1.
    pub statement: u64,
    /// Give the raw statement text: the audit writer replaces it according
    /// to `audit.statement_text` (held statements, those with a
    /// `request_id`, are kept in full minus secrets). Recorded `None` in mode
    /// `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Set by the writer: `full`, `redacted` or `none`, how `sql` was produced.
    #[serde(default)]
    pub text_mode: String,
    /// Give the raw bound values; the writer drops them unless
    /// `audit.log_parameters` is on (the count stays in `parameter_count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub parameter_count: usize,
    pub categories: Vec<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
    /// See [`decision`].
    pub decision: String,
    /// Rule ids that produced the decision.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Hash of the rule set in force (see `PolicyLoaded::ruleset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub outcome: Outcome,
    pub duration_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub request_id: String,
    pub session: String,
    pub agent: String,
    pub statement: u64,
    /// Always the full text: the approvers saw it, so the record must too
    /// (secrets such as PASSWORD literals are still scrubbed).
    pub sql: String,
    /// The prepared statements the text EXECUTEs, as the approvers saw
    /// them (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared: Vec<PreparedText>,
    pub categories: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<String>,
    /// Who may approve.
    pub approvers: Vec<String>,
    pub quorum: u32,
    /// e.g. "slack:#db-approvals".
    pub channel: String,
    pub timeout_ms: u64,
}

/// A statement prepared earlier in the session (SQL `PREPARE` or protocol
/// Parse) that a held text executes by name: its text, for approvers who
/// would otherwise see only `EXECUTE name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedText {
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `approved` or `denied`.
    pub decision: String,
    /// Who decided (all votes that made the quorum, or the refuser).
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub channel: String,
    pub latency_ms: u64,
}

/// Expired or withdrawn: no human decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalClosed {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub reason: String,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyLoaded {
    /// Hex sha256 of the rule set in force; decisions cite it.
    pub ruleset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    pub sources: Vec<String>,
    pub rule_count: usize,
    /// "startup", "reload", "admin_api", "signal".
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReloadFailed {
    pub sources: Vec<String>,
    pub error: String,
    /// The rule set that stays in force.
    pub ruleset_in_force: String,
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminAction {
    pub actor: String,
    pub remote_addr: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRefused {
    pub client_addr: String,
    pub client_port: u16,
    pub tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamp_format_matches_the_padded_one() {
        let reference = |t: Timestamp| {
            let secs = t.0.div_euclid(1_000_000);
            let micros = t.0.rem_euclid(1_000_000);
            let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60
            )
        };
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        let mut samples = vec![
            0,
            -1,
            1,
            86_399_999_999,
            951_782_400_000_000,
            253_402_300_799_999_999,
            -62_167_219_200_000_000,
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(x.rem_euclid(253_402_300_800_000_000));
        }
        // Runs within one second and across its end (the per-second cache),
        // and a second revisited after another.
        for base in [1_796_000_000_000_000i64, 951_782_399_000_000] {
            samples.extend([base, base + 1, base + 999_999, base + 1_000_000, base + 7]);
        }
        for m in samples {
            let t = Timestamp(m);
            assert_eq!(t.to_string(), reference(t), "{m}");
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", reference(t))
            );
        }
        // Outside 0..=9999 the padded path still answers.
        let far = Timestamp(253_402_300_800_000_000);
        assert_eq!(far.to_string(), reference(far));
    }

    #[test]
    fn timestamp_formats_and_parses_round_trip() {
        let t = Timestamp(1_795_321_797_123_456);
        let s = t.to_string();
        assert_eq!(s, "2026-11-22T04:29:57.123456Z");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert_eq!(
            Timestamp::parse("2026-11-22T05:29:57.123456+01:00").unwrap(),
            t
        );
        assert_eq!(
            Timestamp::parse("2026-11-22T04:29:57Z").unwrap(),
            Timestamp(1_795_321_797_000_000)
        );
        assert_eq!(Timestamp::parse("1970-01-01").unwrap(), Timestamp(0));
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00.5Z")
                .unwrap()
                .to_string(),
            "2024-02-29T00:00:00.500000Z"
        );
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-11-22T04:29",
            "2026-11-22T04:29:57",
            "yesterday",
            "2026-11-22T04:29:57.Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn timestamp_matches_system_clock_epoch() {
        let t = Timestamp::from_system(UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365));
        assert_eq!(t.to_string(), "1971-01-01T00:00:00.000000Z");
    }

    #[test]
    fn event_serialises_with_type_tag_and_reads_back() {
        let ev = Event {
            ts: Timestamp(0),
            kind: EventKind::LoginRefused(LoginRefused {
                client_addr: "10.0.0.1".into(),
                client_port: 5000,
                tls: false,
                user: Some("bot".into()),
                database: None,
                reason: "bad password".into(),
            }),
        };
        let s = serde_json::to_string(&ev).unwrap();
        assert!(
            s.starts_with(r#"{"ts":"1970-01-01T00:00:00.000000Z","type":"login_refused","#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), ev);
    }
}
