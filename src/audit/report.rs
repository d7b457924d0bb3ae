//! Evidence pack for an audit period: `report(files, since, until, format)`.
//!
//! Contents: chain verification result (over all files given, not only the
//! period, since a break anywhere weakens everything after it); rule-set
//! versions in force; every approval request (privileged action) with
//! requester, approvers, outcome, timing and what the server then did;
//! statements refused by rule; approval latency distribution; approvals per
//! day. HTML is self-contained: inline CSS and SVG, no script, and a
//! Content-Security-Policy that forbids any network fetch. CSV is one row per
//! privileged action or refusal, with spreadsheet formula injection defused.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::Error;
use super::chain::{Record, read_records};
use super::event::{EventKind, Outcome, Timestamp, decision};
use super::query::Joins;
use super::verify::verify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Csv,
    Json,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated_at: Timestamp,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub chain: ChainResult,
    pub rulesets: Vec<RulesetUse>,
    pub privileged: Vec<PrivilegedAction>,
    pub by_category: BTreeMap<String, OutcomeCounts>,
    pub refused_by_rule: Vec<Refusal>,
    pub refusals_per_rule: BTreeMap<String, u64>,
    pub latency: Latency,
    pub per_day: Vec<DayCounts>,
    pub statements: u64,
    pub sessions: u64,
    pub logins_refused: u64,
    pub admin_actions: u64,
    pub policy_reload_failures: u64,
}

#[derive(Debug, Serialize)]
pub struct ChainResult {
    pub ok: bool,
    pub records: u64,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    pub from_genesis: bool,
    pub tail_checked: bool,
    pub problem: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RulesetUse {
    pub ruleset: String,
    pub loaded_at: Timestamp,
    pub trigger: String,
    pub sources: Vec<String>,
    pub rule_count: usize,
    /// Statements in the period whose decision cites this rule set.
    pub decisions: u64,
}

#[derive(Debug, Serialize)]
pub struct PrivilegedAction {
    pub request_id: String,
    pub requested_at: Timestamp,
    pub agent: String,
    pub session: String,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    pub ruleset: Option<String>,
    pub sql: String,
    pub eligible_approvers: Vec<String>,
    pub quorum: u32,
    pub channel: String,
    /// approved / denied / expired / withdrawn / pending
    pub outcome: String,
    pub decided_by: Vec<String>,
    pub reason: Option<String>,
    pub latency_ms: Option<u64>,
    /// What the server answered when the statement ran, if it did.
    pub result: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct OutcomeCounts {
    pub requested: u64,
    pub approved: u64,
    pub denied: u64,
    pub expired: u64,
    pub withdrawn: u64,
    pub pending: u64,
    pub refused_by_rule: u64,
}

#[derive(Debug, Serialize)]
pub struct Refusal {
    pub at: Timestamp,
    pub agent: String,
    pub session: String,
    pub statement: u64,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    pub ruleset: Option<String>,
    pub sql: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// Human decisions only (approved or denied).
    pub decisions: u64,
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// (bucket label, count) in increasing order.
    pub histogram: Vec<(String, u64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct DayCounts {
    pub day: String,
    pub approved: u64,
    pub denied: u64,
    pub expired: u64,
    pub withdrawn: u64,
}

const BUCKETS: [(u64, &str); 7] = [
    (10_000, "<10s"),
    (30_000, "10-30s"),
    (60_000, "30s-1m"),
    (300_000, "1-5m"),
    (900_000, "5-15m"),
    (3_600_000, "15m-1h"),
    (u64::MAX, ">1h"),
];

/// Build the evidence pack for `[since, until)` and render it.
///
/// # Errors
/// A file cannot be read or holds a line that is not a record. (Chain breaks
/// do not stop the report; they are its first finding.)
pub fn report(
    files: &[PathBuf],
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    format: ReportFormat,
) -> Result<String, Error> {
    let rep = build(files, since, until)?;
    Ok(match format {
        ReportFormat::Json => {
            serde_json::to_string_pretty(&rep).map_err(|e| Error::Encode(e.to_string()))?
        }
        ReportFormat::Csv => render_csv(&rep),
        ReportFormat::Html => render_html(&rep),
    })
}

/// The report as data, for callers that render it themselves.
pub fn build(
    files: &[PathBuf],
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<Report, Error> {
    let v = verify(files);
    let records = read_records(files)?;
    let joins = Joins::build(&records);
    let in_range =
        |r: &Record| since.is_none_or(|t| r.event.ts >= t) && until.is_none_or(|t| r.event.ts < t);

    // Rule sets: the one in force when the period starts, and any loaded in it.
    let mut rulesets: Vec<RulesetUse> = Vec::new();
    for r in &records {
        if let EventKind::PolicyLoaded(p) = &r.event.kind {
            let before = since.is_some_and(|t| r.event.ts < t);
            if until.is_some_and(|t| r.event.ts >= t) {
                continue;
            }
            if before {
                rulesets.clear(); // only the latest before the period counts
            }
            rulesets.push(RulesetUse {
                ruleset: p.ruleset.clone(),
                loaded_at: r.event.ts,
                trigger: p.trigger.clone(),
                sources: p.sources.clone(),
                rule_count: p.rule_count,
                decisions: 0,
            });
        }
    }

    let mut privileged: Vec<PrivilegedAction> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut refused = Vec::new();
    let mut refusals_per_rule = BTreeMap::new();
    let mut by_category: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
    let (mut statements, mut sessions, mut logins_refused, mut admin_actions, mut reload_failures) =
        (0, 0, 0, 0, 0);
    let mut per_day: BTreeMap<i64, DayCounts> = BTreeMap::new();
    let mut latencies = Vec::new();

    // Pass 1: requests in the period.
    for r in records.iter().filter(|r| in_range(r)) {
        if let EventKind::ApprovalRequested(a) = &r.event.kind {
            index.insert(a.request_id.clone(), privileged.len());
            privileged.push(PrivilegedAction {
                request_id: a.request_id.clone(),
                requested_at: r.event.ts,
                agent: a.agent.clone(),
                session: a.session.clone(),
                categories: a.categories.clone(),
                rules: a.rules.clone(),
                ruleset: a.ruleset.clone(),
                sql: a.sql.clone(),
                eligible_approvers: a.approvers.clone(),
                quorum: a.quorum,
                channel: a.channel.clone(),
                outcome: "pending".into(),
                decided_by: Vec::new(),
                reason: None,
                latency_ms: None,
                result: None,
            });
        }
    }
    // Pass 2: everything, joined to those requests. Decisions after `until`
    // for requests made inside still count: the request is the action.
    for r in &records {
        let inside = in_range(r);
        match &r.event.kind {
            EventKind::ApprovalDecided(a) => {
                if let Some(&i) = index.get(&a.request_id) {
                    let p = &mut privileged[i];
                    p.outcome = a.decision.clone();
                    p.decided_by = a.approvers.clone();
                    p.reason = a.reason.clone();
                    p.latency_ms = Some(a.latency_ms);
                    latencies.push(a.latency_ms);
                }
            }
            EventKind::ApprovalExpired(a) | EventKind::ApprovalWithdrawn(a) => {
                if let Some(&i) = index.get(&a.request_id) {
                    let p = &mut privileged[i];
                    p.outcome = if matches!(r.event.kind, EventKind::ApprovalExpired(_)) {
                        decision::EXPIRED
                    } else {
                        decision::WITHDRAWN
                    }
                    .into();
                    p.reason = Some(a.reason.clone());
                    p.latency_ms = Some(a.latency_ms);
                }
            }
            EventKind::Statement(s) if s.request_id.is_some() => {
                if let Some(&i) = s.request_id.as_ref().and_then(|id| index.get(id)) {
                    privileged[i].result = Some(match &s.outcome {
                        Outcome::Ok { command_tag, .. } => command_tag.clone(),
                        Outcome::Error { sqlstate, message } => {
                            format!("ERROR {sqlstate}: {message}")
                        }
                        Outcome::NotSent => "not sent".into(),
                    });
                }
                if inside {
                    statements += 1;
                    count_ruleset(&mut rulesets, s.ruleset.as_deref());
                }
            }
            EventKind::Statement(s) if inside => {
                statements += 1;
                count_ruleset(&mut rulesets, s.ruleset.as_deref());
                if s.decision == decision::DENY {
                    for rule in &s.rules {
                        *refusals_per_rule.entry(rule.clone()).or_insert(0) += 1;
                    }
                    for c in &s.categories {
                        by_category.entry(c.clone()).or_default().refused_by_rule += 1;
                    }
                    refused.push(Refusal {
                        at: r.event.ts,
                        agent: joins.agent_of(r).unwrap_or("-").to_string(),
                        session: s.session.clone(),
                        statement: s.statement,
                        categories: s.categories.clone(),
                        rules: s.rules.clone(),
                        ruleset: s.ruleset.clone(),
                        sql: s.sql.clone(),
                    });
                }
            }
            EventKind::SessionStart(_) if inside => sessions += 1,
            EventKind::LoginRefused(_) if inside => logins_refused += 1,
            EventKind::AdminAction(_) if inside => admin_actions += 1,
            EventKind::PolicyReloadFailed(_) if inside => reload_failures += 1,
            _ => {}
        }
    }
    for p in &privileged {
        let cats: Vec<String> = if p.categories.is_empty() {
            vec!["(none)".into()]
        } else {
            p.categories.clone()
        };
        for c in cats {
            let e = by_category.entry(c).or_default();
            e.requested += 1;
            match p.outcome.as_str() {
                decision::APPROVED => e.approved += 1,
                decision::DENIED => e.denied += 1,
                decision::EXPIRED => e.expired += 1,
                decision::WITHDRAWN => e.withdrawn += 1,
                _ => e.pending += 1,
            }
        }
        let d = per_day
            .entry(p.requested_at.day())
            .or_insert_with(|| DayCounts {
                day: Timestamp::format_day(p.requested_at.day()),
                ..Default::default()
            });
        match p.outcome.as_str() {
            decision::APPROVED => d.approved += 1,
            decision::DENIED => d.denied += 1,
            decision::EXPIRED => d.expired += 1,
            decision::WITHDRAWN => d.withdrawn += 1,
            _ => {}
        }
    }
    latencies.sort_unstable();
    let pct = |q: f64| -> Option<u64> {
        if latencies.is_empty() {
            return None;
        }
        // Nearest-rank percentile.
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        Some(latencies[rank - 1])
    };
    let mut histogram: Vec<(String, u64)> =
        BUCKETS.iter().map(|(_, l)| (l.to_string(), 0)).collect();
    for &l in &latencies {
        let i = BUCKETS
            .iter()
            .position(|(hi, _)| l < *hi)
            .unwrap_or(BUCKETS.len() - 1);
        histogram[i].1 += 1;
    }
    Ok(Report {
        generated_at: Timestamp::now(),
        since,
        until,
        chain: ChainResult {
            ok: v.ok,
            records: v.records,
            last_seq: v.last_seq,
            last_hash: v.last_hash.clone(),
            from_genesis: v.from_genesis,
            tail_checked: v.head.is_some(),
            problem: v.problem.as_ref().map(|p| {
                format!(
                    "{:?} at {}:{} (seq {:?}): {}",
                    p.kind,
                    p.file.display(),
                    p.line,
                    p.seq,
                    p.detail
                )
            }),
            warnings: v.warnings.clone(),
        },
        rulesets,
        privileged,
        by_category,
        refused_by_rule: refused,
        refusals_per_rule,
        latency: Latency {
            decisions: latencies.len() as u64,
            p50_ms: pct(0.5),
            p90_ms: pct(0.9),
            max_ms: latencies.last().copied(),
            histogram,
        },
        per_day: per_day.into_values().collect(),
        statements,
        sessions,
        logins_refused,
        admin_actions,
        policy_reload_failures: reload_failures,
    })
}

fn count_ruleset(rulesets: &mut [RulesetUse], cited: Option<&str>) {
    if let Some(c) = cited {
        if let Some(r) = rulesets.iter_mut().rev().find(|r| r.ruleset == c) {
            r.decisions += 1;
        }
    }
}

/// One CSV field: always quoted; a leading `= + - @` (or tab/CR) gets a `'`
/// so spreadsheets do not evaluate agent-controlled SQL as a formula.
fn csv_field(s: &str) -> String {
    let defused = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

fn render_csv(rep: &Report) -> String {
    let mut out = String::new();
    out.push_str("kind,time,request_id,agent,session,categories,rules,ruleset,outcome,decided_by,eligible_approvers,quorum,latency_ms,result,sql\r\n");
    for p in &rep.privileged {
        let row = [
            "approval".to_string(),
            p.requested_at.to_string(),
            p.request_id.clone(),
            p.agent.clone(),
            p.session.clone(),
            p.categories.join(";"),
            p.rules.join(";"),
            p.ruleset.clone().unwrap_or_default(),
            p.outcome.clone(),
            p.decided_by.join(";"),
            p.eligible_approvers.join(";"),
            p.quorum.to_string(),
            p.latency_ms.map(|l| l.to_string()).unwrap_or_default(),
            p.result.clone().unwrap_or_default(),
            p.sql.clone(),
        ];
        out.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    for r in &rep.refused_by_rule {
        let row = [
            "refused_by_rule".to_string(),
            r.at.to_string(),
            String::new(),
            r.agent.clone(),
            r.session.clone(),
            r.categories.join(";"),
            r.rules.join(";"),
            r.ruleset.clone().unwrap_or_default(),
            decision::DENY.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "not sent".to_string(),
            r.sql.clone().unwrap_or_default(),
        ];
        out.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn fmt_ms(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

const COLORS: [(&str, &str); 4] = [
    ("approved", "#2e7d32"),
    ("denied", "#c62828"),
    ("expired", "#757575"),
    ("withdrawn", "#f9a825"),
];

fn svg_per_day(days: &[DayCounts]) -> String {
    let (w, h, pad) = (640.0f64, 220.0f64, 36.0f64);
    let max = days
        .iter()
        .map(|d| d.approved + d.denied + d.expired + d.withdrawn)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = days.len().max(1) as f64;
    let bw = ((w - 2.0 * pad) / n).min(48.0);
    // The gap shrinks with the bars: a fixed 4px would make the width
    // negative (an invalid rect, drawn as nothing) past ~140 days.
    let gap = (bw * 0.1).min(4.0);
    // A "MM-DD" label is about 30px at font-size 10; label every k-th day
    // so neighbours never overlap.
    let every = (34.0 / bw).ceil().max(1.0) as usize;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="approval requests per day">"#
    );
    // Axes with the scale at both ends, so bar heights read as counts.
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{y}" stroke="#999"/><text x="{lx}" y="{ty}" font-size="11" text-anchor="end">{max}</text><text x="{lx}" y="{y}" font-size="11" text-anchor="end">0</text>"##,
        y = h - pad,
        x2 = w - pad,
        lx = pad - 4.0,
        ty = pad + 4.0,
        max = max as u64
    );
    for (i, d) in days.iter().enumerate() {
        let x = pad + i as f64 * bw + gap / 2.0;
        let mut y = h - pad;
        for (name, color) in COLORS {
            let v = match name {
                "approved" => d.approved,
                "denied" => d.denied,
                "expired" => d.expired,
                _ => d.withdrawn,
            } as f64;
            if v > 0.0 {
                let bh = v / max * (h - 2.0 * pad);
                y -= bh;
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{} {}: {}</title></rect>"#,
                    bw - gap,
                    esc(&d.day),
                    name,
                    v
                );
            }
        }
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                pad + (i as f64 + 0.5) * bw,
                h - pad + 14.0,
                esc(&d.day[5..])
            );
        }
    }
    let mut lx = pad;
    for (name, color) in COLORS {
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="4" width="10" height="10" fill="{color}"/><text x="{}" y="13" font-size="11">{name}</text>"#,
            lx + 14.0
        );
        lx += 90.0;
    }
    s.push_str("</svg>");
    s
}

fn svg_histogram(hist: &[(String, u64)]) -> String {
    let (w, h, pad) = (640.0f64, 200.0f64, 36.0f64);
    let max = hist.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / hist.len().max(1) as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="time to decision">"#
    );
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{y}" x2="{x2}" y2="{y}" stroke="#999"/>"##,
        y = h - pad,
        x2 = w - pad
    );
    for (i, (label, c)) in hist.iter().enumerate() {
        let x = pad + i as f64 * bw + 4.0;
        let bh = *c as f64 / max * (h - 2.0 * pad);
        let y = h - pad - bh;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="#1565c0"><title>{}: {c}</title></rect>"##,
            bw - 8.0,
            esc(label)
        );
        let cx = pad + (i as f64 + 0.5) * bw;
        let _ = write!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            h - pad + 14.0,
            esc(label)
        );
        if *c > 0 {
            let _ = write!(
                s,
                r#"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{c}</text>"#,
                y - 3.0
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn render_html(rep: &Report) -> String {
    let mut o = String::new();
    let period = format!(
        "{} to {}",
        rep.since.map_or("beginning".into(), |t| t.to_string()),
        rep.until.map_or("end".into(), |t| t.to_string())
    );
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>pg-airlock audit evidence: {p}</title><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}}
table{{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}
th{{background:#f0f0f0}}code{{font:12px ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}}.t{{white-space:nowrap}}
.ok{{color:#2e7d32;font-weight:bold}}.fail{{color:#c62828;font-weight:bold}}.warn{{color:#8d6e00}}
</style></head><body>
<h1>pg-airlock audit evidence</h1><p>Period: {p}<br>Generated: {g}</p>"#,
        p = esc(&period),
        g = rep.generated_at
    );
    let c = &rep.chain;
    let _ = write!(
        o,
        "<h2>Integrity of the trail</h2><p class=\"{}\">Hash chain {}</p><p>{} records checked, last seq {}, last hash <code>{}</code>; from genesis: {}; tail checked against .head: {}</p>",
        if c.ok { "ok" } else { "fail" },
        if c.ok { "verified" } else { "BROKEN" },
        c.records,
        c.last_seq.map_or("-".into(), |s| s.to_string()),
        esc(c.last_hash.as_deref().unwrap_or("-")),
        if c.from_genesis { "yes" } else { "no" },
        if c.tail_checked { "yes" } else { "no" }
    );
    if let Some(p) = &c.problem {
        let _ = write!(o, "<p class=\"fail\">{}</p>", esc(p));
    }
    for w in &c.warnings {
        let _ = write!(o, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
    let _ = write!(
        o,
        "<h2>Summary</h2><table><tr><th>Sessions</th><th>Statements</th><th>Approval requests</th><th>Refused by rule</th><th>Logins refused</th><th>Admin actions</th><th>Failed policy reloads</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        rep.sessions,
        rep.statements,
        rep.privileged.len(),
        rep.refused_by_rule.len(),
        rep.logins_refused,
        rep.admin_actions,
        rep.policy_reload_failures
    );
    o.push_str("<h2>Rule-set versions in force</h2><table><tr><th>Rule set (sha256)</th><th>Loaded</th><th>Trigger</th><th>Sources</th><th>Rules</th><th>Decisions citing it</th></tr>");
    for r in &rep.rulesets {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.ruleset),
            r.loaded_at,
            esc(&r.trigger),
            esc(&r.sources.join(", ")),
            r.rule_count,
            r.decisions
        );
    }
    o.push_str("</table><h2>Privileged actions by category</h2><table><tr><th>Category</th><th>Requested</th><th>Approved</th><th>Denied</th><th>Expired</th><th>Withdrawn</th><th>Pending</th><th>Refused by rule</th></tr>");
    for (cat, n) in &rep.by_category {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(cat),
            n.requested,
            n.approved,
            n.denied,
            n.expired,
            n.withdrawn,
            n.pending,
            n.refused_by_rule
        );
    }
    o.push_str("</table><h2>Approval requests per day</h2>");
    o.push_str(&svg_per_day(&rep.per_day));
    let l = &rep.latency;
    let _ = write!(
        o,
        "<h2>Time to decision</h2><p>{} human decisions; median {}, 90th percentile {}, longest {}</p>",
        l.decisions,
        fmt_ms(l.p50_ms),
        fmt_ms(l.p90_ms),
        fmt_ms(l.max_ms)
    );
    o.push_str(&svg_histogram(&l.histogram));
    o.push_str("<h2>Privileged actions</h2><table><tr><th>Requested</th><th>Request</th><th>Agent / session</th><th>Categories</th><th>Statement</th><th>Rules</th><th>Approvers (quorum)</th><th>Outcome</th><th>Decided by</th><th>Time to decision</th><th>Server result</th></tr>");
    for p in &rep.privileged {
        let _ = write!(
            o,
            "<tr><td class=\"t\">{}</td><td>{}<br><small>{}</small></td><td>{}<br><small>{}</small></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} ({})</td><td class=\"{}\">{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            p.requested_at,
            esc(&p.request_id),
            esc(&p.channel),
            esc(&p.agent),
            esc(&p.session),
            esc(&p.categories.join(", ")),
            esc(&p.sql),
            esc(&p.rules.join(", ")),
            esc(&p.eligible_approvers.join(", ")),
            p.quorum,
            if p.outcome == decision::APPROVED {
                "ok"
            } else {
                "fail"
            },
            esc(&p.outcome),
            esc(&p.decided_by.join(", ")),
            p.reason
                .as_deref()
                .map(|r| format!("<br><small>{}</small>", esc(r)))
                .unwrap_or_default(),
            fmt_ms(p.latency_ms),
            esc(p.result.as_deref().unwrap_or("-"))
        );
    }
    o.push_str("</table><h2>Denials and timeouts</h2><table><tr><th>Requested</th><th>Request</th><th>Agent</th><th>Outcome</th><th>By</th><th>Reason</th><th>Statement</th></tr>");
    for p in rep
        .privileged
        .iter()
        .filter(|p| p.outcome != decision::APPROVED)
    {
        let _ = write!(
            o,
            "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            p.requested_at,
            esc(&p.request_id),
            esc(&p.agent),
            esc(&p.outcome),
            esc(&p.decided_by.join(", ")),
            esc(p.reason.as_deref().unwrap_or("")),
            esc(&p.sql)
        );
    }
    o.push_str(
        "</table><h2>Statements refused by rule</h2><table><tr><th>Rule</th><th>Refusals</th></tr>",
    );
    for (rule, n) in &rep.refusals_per_rule {
        let _ = write!(o, "<tr><td>{}</td><td>{n}</td></tr>", esc(rule));
    }
    o.push_str("</table><table><tr><th>Time</th><th>Agent / session</th><th>Categories</th><th>Rules</th><th>Statement (as recorded)</th></tr>");
    for r in &rep.refused_by_rule {
        let _ = write!(
            o,
            "<tr><td class=\"t\">{}</td><td>{}<br><small>{} #{}</small></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            r.at,
            esc(&r.agent),
            esc(&r.session),
            r.statement,
            esc(&r.categories.join(", ")),
            esc(&r.rules.join(", ")),
            esc(r.sql.as_deref().unwrap_or("<text not recorded>"))
        );
    }
    o.push_str("</table></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_defuses_formulas_and_quotes() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("DROP TABLE t"), "\"DROP TABLE t\"");
    }

    /// A year of days: every bar keeps a positive width (a negative one is
    /// an invalid rect the browser drops) and day labels do not crowd.
    #[test]
    fn per_day_chart_stays_drawable_over_a_year() {
        let days: Vec<DayCounts> = (0..365)
            .map(|i| DayCounts {
                day: Timestamp::format_day(20_000 + i),
                approved: 1 + (i as u64 % 3),
                ..Default::default()
            })
            .collect();
        let svg = svg_per_day(&days);
        let widths: Vec<f64> = svg
            .split("<rect ")
            .skip(1)
            .filter(|r| !r.contains("y=\"4\"")) // legend swatches
            .map(|r| {
                let w = r.split("width=\"").nth(1).unwrap();
                w[..w.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(widths.len(), 365);
        assert!(
            widths.iter().all(|w| *w > 0.0),
            "{:?}",
            widths.iter().find(|w| **w <= 0.0)
        );
        let labels = svg.matches("font-size=\"10\"").count();
        assert!(
            (10..=20).contains(&labels),
            "{labels} day labels on a 568px axis"
        );
    }

    #[test]
    fn html_escapes_agent_text() {
        assert_eq!(
            esc("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
    }
}
