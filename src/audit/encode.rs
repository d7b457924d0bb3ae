//! JSON for the record the relay writes most: a `statement` event.
//!
//! The derived serialiser goes through serde's `flatten` machinery (the
//! event's fields are flattened into the line, the kind is an internally
//! tagged enum): every field becomes a map entry whose key is escaped at run
//! time. For statements, about one record per relayed statement, that was
//! the largest share of the writer thread after SHA-256. Here the keys are
//! constants and only values are escaped, by serde_json itself, so the bytes
//! are the derived serialiser's exactly (`tests::matches_serde` holds the two
//! together; the chain hashes those bytes, so they must not drift).
//!
//! Every other event kind is rare and keeps the derived serialiser.

use serde::Serialize;

use super::event::{Event, EventKind, Outcome, Statement, Timestamp};

/// A statement record's fields, borrowed from wherever they live: an owned
/// [`Statement`] (any caller of `record`/`emit`), or the session's own
/// state when it records a statement through `Auditor::statement` (no
/// `Statement` is built there: its strings would be so many allocations,
/// freed again on the writer thread). `L` is the list element type.
pub(crate) struct Fields<'a, L> {
    pub session: &'a str,
    pub agent: &'a str,
    /// `session` and `agent` as [`identity`] encodes them, when the caller
    /// keeps that (a session does, for all its records): copied instead.
    pub identity: Option<&'a [u8]>,
    pub statement: u64,
    pub sql: Option<&'a str>,
    pub text_mode: &'a str,
    pub parameters: Option<&'a [Option<String>]>,
    pub parameter_count: usize,
    pub categories: &'a [L],
    pub tables: &'a [L],
    pub functions: &'a [L],
    pub decision: &'a str,
    pub rules: &'a [L],
    pub ruleset: Option<&'a str>,
    /// The six fields above as [`judged`] encodes them, when the caller
    /// keeps that: copied instead (the lists are then not read).
    pub judged: Option<&'a [u8]>,
    pub request_id: Option<&'a str>,
    pub outcome: OutcomeRef<'a>,
    pub duration_us: u64,
}

/// [`Outcome`], borrowed.
#[derive(Debug, Clone, Copy)]
pub enum OutcomeRef<'a> {
    Ok {
        command_tag: &'a str,
        rows: Option<u64>,
    },
    Error {
        sqlstate: &'a str,
        message: &'a str,
    },
    NotSent,
}

impl<'a> From<&'a Outcome> for OutcomeRef<'a> {
    fn from(o: &'a Outcome) -> Self {
        match o {
            Outcome::Ok { command_tag, rows } => OutcomeRef::Ok {
                command_tag,
                rows: *rows,
            },
            Outcome::Error { sqlstate, message } => OutcomeRef::Error { sqlstate, message },
            Outcome::NotSent => OutcomeRef::NotSent,
        }
    }
}

impl<'a> Fields<'a, String> {
    pub fn of(s: &'a Statement) -> Self {
        Fields {
            session: &s.session,
            agent: &s.agent,
            identity: None,
            statement: s.statement,
            sql: s.sql.as_deref(),
            text_mode: &s.text_mode,
            parameters: s.parameters.as_deref(),
            parameter_count: s.parameter_count,
            categories: &s.categories,
            tables: &s.tables,
            functions: &s.functions,
            decision: &s.decision,
            rules: &s.rules,
            ruleset: s.ruleset.as_deref(),
            judged: None,
            request_id: s.request_id.as_deref(),
            outcome: (&s.outcome).into(),
            duration_us: s.duration_us,
        }
    }
}

/// Append the event's JSON object without its opening brace (the caller has
/// written `{"seq":..,"prev":"..",`). `false` if this kind is not handled
/// here and nothing was written.
pub(crate) fn statement_fields(out: &mut Vec<u8>, ev: &Event) -> bool {
    let EventKind::Statement(s) = &ev.kind else {
        return false;
    };
    statement(out, ev.ts, &Fields::of(s));
    true
}

/// `,"name":` (every field here follows another), one constant copy.
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// A `statement` event's fields without the opening brace, exactly as the
/// derived serialiser writes them.
pub(crate) fn statement<L: AsRef<str>>(out: &mut Vec<u8>, ts: Timestamp, s: &Fields<'_, L>) {
    // Keys, constants and the usual values in one reservation, so the
    // many small appends below rarely grow the buffer.
    out.reserve(384 + s.sql.map_or(0, str::len));
    out.extend_from_slice(b"\"ts\":");
    match ts.ascii() {
        // Digits and `-:.TZ`: nothing to escape.
        Some(b) => {
            out.push(b'"');
            out.extend_from_slice(&b);
            out.push(b'"');
        }
        None => value(out, &ts),
    }
    out.extend_from_slice(b",\"type\":\"statement\"");
    match s.identity {
        Some(pre) => {
            debug_assert_eq!(
                pre,
                identity(s.session, s.agent),
                "a caller's identity differs"
            );
            out.extend_from_slice(pre);
        }
        None => write_identity(out, s.session, s.agent),
    }
    key!(out, "statement");
    super::chain::write_u64(out, s.statement);
    if let Some(sql) = s.sql {
        key!(out, "sql");
        string(out, sql);
    }
    // The three modes' fields as constants (the usual values need no
    // escaping); anything else is escaped.
    match s.text_mode {
        "redacted" => out.extend_from_slice(b",\"text_mode\":\"redacted\""),
        "full" => out.extend_from_slice(b",\"text_mode\":\"full\""),
        "none" => out.extend_from_slice(b",\"text_mode\":\"none\""),
        other => {
            key!(out, "text_mode");
            string(out, other);
        }
    }
    if let Some(p) = s.parameters {
        key!(out, "parameters");
        value(out, p);
    }
    key!(out, "parameter_count");
    super::chain::write_u64(out, s.parameter_count as u64);
    match s.judged {
        Some(pre) => out.extend_from_slice(pre),
        None => write_judged(
            out,
            s.categories,
            s.tables,
            s.functions,
            s.decision,
            s.rules,
            s.ruleset,
        ),
    }
    if let Some(r) = s.request_id {
        key!(out, "request_id");
        string(out, r);
    }
    key!(out, "outcome");
    match s.outcome {
        OutcomeRef::Ok { command_tag, rows } => {
            out.extend_from_slice(b"{\"status\":\"ok\",\"command_tag\":");
            string(out, command_tag);
            if let Some(n) = rows {
                out.extend_from_slice(b",\"rows\":");
                super::chain::write_u64(out, n);
            }
            out.push(b'}');
        }
        OutcomeRef::Error { sqlstate, message } => {
            out.extend_from_slice(b"{\"status\":\"error\",\"sqlstate\":");
            string(out, sqlstate);
            out.extend_from_slice(b",\"message\":");
            string(out, message);
            out.push(b'}');
        }
        OutcomeRef::NotSent => out.extend_from_slice(b"{\"status\":\"not_sent\"}"),
    }
    key!(out, "duration_us");
    super::chain::write_u64(out, s.duration_us);
    out.push(b'}');
}

/// `,"categories":..` to `,"ruleset":..` as a statement record writes
/// them: what the rules made of a statement, the same for every statement
/// of a shape under one rule set, so a session encodes it once per shape.
pub(crate) fn write_judged<L: AsRef<str>>(
    out: &mut Vec<u8>,
    categories: &[L],
    tables: &[L],
    functions: &[L],
    decision: &str,
    rules: &[L],
    ruleset: Option<&str>,
) {
    key!(out, "categories");
    strings(out, categories);
    key!(out, "tables");
    strings(out, tables);
    key!(out, "functions");
    strings(out, functions);
    key!(out, "decision");
    string(out, decision);
    key!(out, "rules");
    strings(out, rules);
    if let Some(r) = ruleset {
        key!(out, "ruleset");
        string(out, r);
    }
}

/// `,"session":..,"agent":..` as a statement record writes them: the same
/// for every record of a session, so a session encodes it once.
pub(crate) fn identity(session: &str, agent: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + session.len() + agent.len());
    write_identity(&mut out, session, agent);
    out
}

fn write_identity(out: &mut Vec<u8>, session: &str, agent: &str) {
    key!(out, "session");
    string(out, session);
    key!(out, "agent");
    string(out, agent);
}

fn string(out: &mut Vec<u8>, s: &str) {
    // Most values (ids, names, tags, redacted SQL) need no escaping: copy
    // them as serde_json writes them. Its escapes are `"`, `\` and the
    // control characters below 0x20; every other byte goes out as is.
    // Skipping a serializer per value was a tenth of the record's cost.
    if needs_no_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        value(out, s);
    }
}

/// No byte of `b` is one serde_json escapes. Sixteen bytes at a time with
/// SSE2 (the x86_64 baseline), else eight: the record's texts (SQL, ids,
/// names, the rule set's hash) are a few hundred bytes, and a
/// byte-at-a-time test was half the cost of encoding a record.
fn needs_no_escape(b: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut chunks = b.chunks_exact(16);
        for c in &mut chunks {
            if sse2::escapes(c.try_into().expect("sixteen bytes")) {
                return false;
            }
        }
        words_need_no_escape(chunks.remainder())
    }
    #[cfg(not(target_arch = "x86_64"))]
    words_need_no_escape(b)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// Some byte of `c` is below 0x20, `"` or `\`.
    #[inline]
    pub(super) fn escapes(c: &[u8; 16]) -> bool {
        // SAFETY: SSE2 is part of the x86_64 baseline; the load is
        // unaligned and reads exactly the sixteen bytes of `c`.
        unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            // min(v, 0x1f) == v exactly for the bytes <= 0x1f.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) != 0
        }
    }
}

/// [`needs_no_escape`], eight bytes at a time.
fn words_need_no_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Nonzero iff some byte of `w` is below `n` (n <= 128): the borrow of
    // a byte's subtraction reaches its top bit only if it was below `n`
    // and its own top bit was clear.
    fn has_below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * n as u64) & !w & HIGH
    }
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // A byte equal to `"` or `\` is a zero byte after the XOR.
        if has_below(w, 0x20)
            | has_below(w ^ (ONES * b'"' as u64), 1)
            | has_below(w ^ (ONES * b'\\' as u64), 1)
            != 0
        {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn strings<L: AsRef<str>>(out: &mut Vec<u8>, v: &[L]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s.as_ref());
    }
    out.push(b']');
}

/// serde_json's own formatting of one value (string escaping, integers).
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a Vec cannot fail, and these types always serialise.
    let _ = v.serialize(&mut serde_json::Serializer::new(out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Timestamp;

    fn derived(ev: &Event) -> Vec<u8> {
        let mut v = serde_json::to_vec(ev).unwrap();
        v.remove(0);
        v
    }

    fn fast(ev: &Event) -> Vec<u8> {
        let mut v = Vec::new();
        assert!(statement_fields(&mut v, ev));
        v
    }

    /// Strings that exercise every escaping rule serde_json has.
    const NASTY: &[&str] = &[
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "control \u{0} \u{1} \u{8} \u{c} \u{1f} \u{7f}",
        "tab\tnew\nline\rcr",
        "unicode é 漢字 🦀 \u{2028} \u{2029}",
        "SELECT * FROM t WHERE a = ? AND b = $1",
    ];

    fn statement(i: usize) -> Event {
        let pick = |k: usize| NASTY[(i + k) % NASTY.len()].to_string();
        let some = |k: usize| ((i >> k) & 1 == 1).then(|| pick(k));
        let outcome = match i % 4 {
            0 => Outcome::Ok {
                command_tag: pick(1),
                rows: Some(i as u64 * 7919),
            },
            1 => Outcome::Ok {
                command_tag: pick(2),
                rows: None,
            },
            2 => Outcome::Error {
                sqlstate: "42501".into(),
                message: pick(3),
            },
            _ => Outcome::NotSent,
        };
        Event {
            ts: Timestamp(
                1_796_000_000_000_000 + (i as i64) * 1_234_567
                    - 5_000_000_000_000_000 * (i as i64 % 2),
            ),
            kind: EventKind::Statement(Statement {
                session: pick(0),
                agent: pick(4),
                statement: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                sql: some(1),
                text_mode: pick(5),
                parameters: ((i >> 2) & 1 == 1).then(|| vec![Some(pick(6)), None, Some(pick(2))]),
                parameter_count: i % 5,
                categories: (0..i % 3).map(pick).collect(),
                tables: (0..i % 4).map(|k| pick(k + 3)).collect(),
                functions: (0..(i / 3) % 3).map(pick).collect(),
                decision: pick(2),
                rules: (0..i % 3).map(|k| pick(k + 1)).collect(),
                ruleset: some(3),
                request_id: some(4),
                outcome,
                duration_us: i as u64 * 31,
            }),
        }
    }

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}b", b as char)).collect();
        cases.extend(NASTY.iter().map(|s| s.to_string()));
        cases.extend(["é", "\u{2028}", "\u{ffff}", "🦀\"", "\u{80}"].map(String::from));
        // Every ASCII byte at every place of a text longer than the
        // eight-byte steps, and next to non-ASCII ones.
        for b in 0u8..=0x7f {
            for at in 0..17 {
                let (head, tail) = ("x".repeat(at), "y".repeat(16 - at));
                cases.push(format!("{head}{}{tail}", b as char));
                cases.push(format!("é{head}{}{tail}🦀", b as char));
            }
        }
        for s in &cases {
            let mut fast = Vec::new();
            string(&mut fast, s);
            assert_eq!(fast, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    /// Every byte value at every offset of the vector part and of the
    /// tail, against the byte-at-a-time rule.
    #[test]
    fn the_escape_test_agrees_byte_by_byte() {
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        let lens = [1, 7, 8, 15, 16, 17, 31, 40];
        crate::testing::each_byte_at_each_offset(&lens, b'a', |buf, at, byte| {
            assert_eq!(
                needs_no_escape(buf),
                plain(byte),
                "len {} at {at} byte {byte:#x}",
                buf.len()
            );
        });
        assert!(needs_no_escape(b""));
    }

    #[test]
    fn matches_serde() {
        for i in 0..2_000 {
            let ev = statement(i);
            assert_eq!(
                String::from_utf8(fast(&ev)).unwrap(),
                String::from_utf8(derived(&ev)).unwrap(),
                "case {i}"
            );
        }
    }

    #[test]
    fn other_kinds_are_left_to_serde() {
        let ev = Event::now(EventKind::AuditStopped(crate::audit::event::AuditStopped {
            reason: "x".into(),
        }));
        let mut v = Vec::new();
        assert!(!statement_fields(&mut v, &ev));
        assert!(v.is_empty());
    }
}
