//! `explain`: a readable account of how the rules judge one message, for
//! people writing rules (the CLI's `explain` subcommand prints it).
//!
//! It renders the same trace `evaluate` decides on, so the explanation and
//! the decision cannot drift apart.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Action, DEFAULT_RULE, Decision, HoldSettings, RuleSet, Source, Subject};
use crate::classify::{Category, Classification};

/// Longest statement excerpt shown per statement.
const MAX_EXCERPT: usize = 300;

/// Render each statement's effects, the objects they touch, the rules each
/// effect matched, and the decision.
pub fn render_explain(sql: &str, c: &Classification, s: &Subject, rules: &RuleSet) -> String {
    let trace = rules.trace(c, s);
    let decision = rules.decide(&trace);
    let mut out = String::new();
    let w = &mut out;

    let _ = writeln!(w, "policy version {}", rules.version());
    let _ = writeln!(
        w,
        "subject: agent {:?}, application_name {:?}, database {:?}",
        s.agent, s.application_name, s.database
    );
    for (n, st) in trace.iter().enumerate() {
        let _ = writeln!(w);
        let _ = writeln!(w, "statement {}: {}", n + 1, excerpt(sql, st.span));
        for (m, et) in st.effects.iter().enumerate() {
            let e = &et.effect;
            let synthetic = if et.synthetic { " (assumed)" } else { "" };
            let _ = writeln!(
                w,
                "  effect {}: {}{synthetic} - {}",
                m + 1,
                e.category,
                e.why
            );
            if !e.tables.is_empty() {
                let _ = writeln!(w, "    tables: {}", e.tables.join(", "));
            }
            if !e.functions.is_empty() {
                let _ = writeln!(w, "    functions: {}", e.functions.join(", "));
            }
            for src in &et.sources {
                match *src {
                    Source::Rule(i) => {
                        let r = &rules.rules()[i];
                        let _ = writeln!(
                            w,
                            "    matched {} -> {} ({})",
                            r.name(),
                            r.action(),
                            r.origin()
                        );
                    }
                    Source::Default(a) => {
                        let from = match &rules.defaults.origin {
                            Some(o) => format!("[defaults] at {o}"),
                            None => "built-in default".to_string(),
                        };
                        let raised = if a != rules.defaults.action {
                            format!(
                                "; the default {} never lets {} through",
                                rules.defaults.action,
                                Category::Unknown
                            )
                        } else {
                            String::new()
                        };
                        let _ = writeln!(w, "    no rule matched -> {a} ({from}{raised})");
                    }
                }
            }
        }
    }
    let _ = writeln!(w);
    render_decision(w, &decision, rules);
    out
}

fn render_decision(w: &mut String, d: &Decision, rules: &RuleSet) {
    let _ = writeln!(w, "decision: {}", d.action.as_str().to_uppercase());
    for name in d.rules.iter() {
        match rules.rule(name) {
            Some(r) => {
                let _ = writeln!(w, "  by {name} ({}): {}", r.origin(), r.description());
                let _ = writeln!(w, "     when {}", r.conditions());
            }
            None if name == DEFAULT_RULE => {
                let _ = writeln!(w, "  by {DEFAULT_RULE}: no rule matched an effect");
            }
            None => {
                let _ = writeln!(w, "  by {name}");
            }
        }
    }
    if let Some(m) = &d.message {
        let _ = writeln!(w, "  message: {m}");
    }
    if let Some(h) = &d.hold {
        let _ = writeln!(w, "  approval: {}", describe_hold(h));
    }
    if d.action == Action::Allow && d.rules.is_empty() {
        let _ = writeln!(w, "  (no rules)");
    }
}

/// One-line summary of hold settings, e.g. for the CLI and Slack.
pub(crate) fn describe_hold(h: &HoldSettings) -> String {
    let who = if h.approvers.is_empty() {
        "anyone except the agent's owner".to_string()
    } else {
        format!("one of {}", h.approvers.join(", "))
    };
    let channel = h
        .channel
        .as_deref()
        .unwrap_or("the configured approval channel");
    format!(
        "{} approval(s) from {who}, in {channel}, refused after {}",
        h.quorum,
        format_duration(h.timeout)
    )
}

/// `90s` -> "1m30s", the inverse of `parse_duration` for whole seconds.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

/// The statement's text on one line, shortened; the whole message when
/// the span does not fit it (classification of a different text).
fn excerpt(sql: &str, span: (usize, usize)) -> String {
    let text = sql
        .get(span.0..span.1)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(sql);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_EXCERPT {
        let cut: String = one_line.chars().take(MAX_EXCERPT).collect();
        format!("{cut}…")
    } else if one_line.is_empty() {
        "(empty)".to_string()
    } else {
        one_line
    }
}
