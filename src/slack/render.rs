//! Block Kit rendering of an approval request: what a reviewer sees.
//!
//! Everything that comes from the agent or the database (names, reason, SQL,
//! parameter values) is escaped, so it cannot mention `@channel`, forge a link
//! or close the code block it sits in. Long texts are cut on character
//! boundaries to Slack's per-block limits, and the message says where the full
//! text is (thread reply and `GET /approvals/{id}`).

use crate::approval::{ACTION_APPROVE, ACTION_DENY, Decider, PendingView, button_value};
use slack_morphism::prelude::*;

/// Room for text in one section (Slack's limit is 3000 characters).
const SECTION_BUDGET: usize = 2800;
/// Room for one field (limit 2000).
const FIELD_BUDGET: usize = 1800;
/// One parameter value.
const PARAM_BUDGET: usize = 300;
/// Full SQL in the thread reply (message text limit is 40 000).
pub(crate) const THREAD_BUDGET: usize = 38_000;

/// Escapes `&`, `<`, `>` (Slack's control characters) and stops before
/// `budget` characters of output. Returns the text and whether it was cut.
pub(crate) fn esc_limit(s: &str, budget: usize) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(budget));
    let mut n = 0;
    for c in s.chars() {
        let piece = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let w = if piece.is_empty() { 1 } else { piece.len() };
        if n + w > budget {
            return (out, true);
        }
        if piece.is_empty() {
            out.push(c)
        } else {
            out.push_str(piece)
        }
        n += w;
    }
    (out, false)
}

pub(crate) fn esc(s: &str) -> String {
    esc_limit(s, usize::MAX).0
}

/// A code block that the content cannot close early: runs of three backticks
/// get a zero-width space.
pub(crate) fn code_block(s: &str, budget: usize) -> (String, bool) {
    let s = s.replace("```", "``\u{200b}`");
    let (body, cut) = esc_limit(&s, budget);
    (format!("```{body}```"), cut)
}

fn who(d: &Decider) -> String {
    if d.via == "slack" && is_slack_id(&d.id) {
        format!("<@{}>", d.id)
    } else {
        format!("`{}`", esc(&d.id))
    }
}

fn is_slack_id(id: &str) -> bool {
    id.len() > 1
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn approver(a: &str) -> String {
    if is_slack_id(a) && a.starts_with('S') {
        format!("<!subteam^{a}>")
    } else if is_slack_id(a) {
        format!("<@{a}>")
    } else {
        format!("`{}`", esc(a))
    }
}

/// Slack renders `<!date^…>` in the reader's time zone; the fallback is UTC.
fn date(unix: u64) -> String {
    format!(
        "<!date^{unix}^{{date_short_pretty}} {{time_secs}}|{}>",
        utc(unix)
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` without a date crate (civil-from-days).
pub(crate) fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn md(text: String) -> SlackBlockText {
    SlackBlockMarkDownText::new(text).into()
}

fn section(text: String) -> SlackBlock {
    SlackSectionBlock::new().with_text(md(text)).into()
}

fn plain(text: &str) -> SlackBlockPlainTextOnly {
    SlackBlockPlainText::new(text.to_string()).into()
}

fn field(label: &str, value: &str) -> SlackBlockText {
    let (v, _) = esc_limit(value, FIELD_BUDGET);
    md(format!(
        "*{label}*\n{}",
        if v.is_empty() { "—".to_string() } else { v }
    ))
}

/// Whether the SQL is too long for the message (then the full text is posted
/// as a thread reply).
pub(crate) fn sql_is_truncated(view: &PendingView) -> bool {
    code_block(&view.sql, SECTION_BUDGET - 100).1
}

/// The thread reply holding the full SQL text.
pub(crate) fn full_sql_reply(view: &PendingView, admin_url: Option<&str>) -> String {
    let (block, cut) = code_block(&view.sql, THREAD_BUDGET);
    let mut text = format!("Full SQL of request `{}`:\n{block}", view.id);
    if cut {
        text.push_str(&format!(
            "\n_Still truncated; the whole text: {}_",
            full_text_pointer(view, admin_url)
        ));
    }
    text
}

fn full_text_pointer(view: &PendingView, admin_url: Option<&str>) -> String {
    match admin_url {
        Some(u) => format!(
            "<{}/approvals/{}|GET /approvals/{}>",
            esc(u),
            view.id,
            view.id
        ),
        None => format!(
            "`GET /approvals/{}` on the admin API (`pg-airlock approvals show {}`)",
            view.id, view.id
        ),
    }
}

/// Plain-text fallback (notifications, screen readers) and the blocks.
pub fn message(view: &PendingView, admin_url: Option<&str>) -> (String, Vec<SlackBlock>) {
    let headline = match view.status {
        "pending" => "⏳ Approval needed",
        "approved" => "✅ Approved",
        "denied" => "⛔ Denied",
        "expired" => "⌛ Expired — not run",
        "withdrawn" => "↩️ Withdrawn — will never run",
        _ => "⚠️ Failed",
    };
    // The fallback `text` is mrkdwn too (notifications): escaped like the rest.
    let fallback = format!(
        "pg-airlock: {headline}: {} wants to run a held statement on {} (request {})",
        esc_limit(&view.agent, 200).0,
        esc_limit(&view.database, 200).0,
        view.id
    );
    let mut blocks: Vec<SlackBlock> = Vec::new();
    // Header text is plain_text: no escaping, but a 150-character limit.
    let header: String = format!("{headline}: {} on {}", view.agent, view.database)
        .chars()
        .take(150)
        .collect();
    blocks.push(SlackHeaderBlock::new(plain(&header)).into());

    let fields = vec![
        field("Agent", &view.agent),
        field("Owner", view.owner.as_deref().unwrap_or("")),
        field("Database", &view.database),
        field("Application", &view.application_name),
        field("Client", &view.client_addr),
        field("Session", &view.session_id),
    ];
    blocks.push(SlackSectionBlock::new().with_fields(fields).into());

    let reason = view
        .reason
        .as_deref()
        .map(|r| esc_limit(r, SECTION_BUDGET - 40).0)
        .unwrap_or_else(|| "_none given_".into());
    blocks.push(section(format!("*Agent's reason:* {reason}")));
    let list = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.iter()
                .map(|s| format!("`{}`", esc(s)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    blocks.push(section(esc_limit_md(&format!(
        "*Rules:* {}\n*Categories:* {}",
        list(&view.rules),
        list(&view.categories)
    ))));

    let (sql, cut) = code_block(&view.sql, SECTION_BUDGET - 100);
    blocks.push(section(format!(
        "*SQL*{}\n{sql}",
        if cut {
            format!(" (first part of {} characters)", view.sql.chars().count())
        } else {
            String::new()
        }
    )));
    if cut {
        blocks.push(context(format!(
            "SQL truncated. Full text in the thread and at {}",
            full_text_pointer(view, admin_url)
        )));
    }

    for p in &view.prepared {
        let (sql, cut) = code_block(&p.sql, SECTION_BUDGET - 200);
        blocks.push(section(format!(
            "*`{}` was prepared as*{}\n{sql}",
            esc_limit(&p.name, 64).0,
            if cut { " (first part)" } else { "" }
        )));
    }

    if !view.params.is_empty() {
        let mut lines = String::new();
        let mut cut_any = false;
        for (i, p) in view.params.iter().enumerate() {
            let line = match p {
                None => format!("${} = NULL", i + 1),
                Some(v) => {
                    let (v, cut) = esc_limit(&v.replace("```", "``\u{200b}`"), PARAM_BUDGET);
                    format!("${} = '{}'{}", i + 1, v, if cut { "…" } else { "" })
                }
            };
            if lines.len() + line.len() + 1 > SECTION_BUDGET - 100 {
                cut_any = true;
                break;
            }
            lines.push_str(&line);
            lines.push('\n');
        }
        let more = if cut_any {
            format!(
                "\n_{} parameters in all; see the admin API for the rest_",
                view.params.len()
            )
        } else {
            String::new()
        };
        blocks.push(section(format!(
            "*Parameters*\n```{}```{more}",
            lines.trim_end()
        )));
    }

    if !view.impact.is_empty() {
        let (impact, cut) = esc_limit(&view.impact.join("\n"), SECTION_BUDGET - 60);
        blocks.push(section(format!(
            "*What it will change*\n{impact}{}",
            if cut { "\n…" } else { "" }
        )));
    }

    let approvers = if view.approvers.is_empty() {
        "anyone in this channel except the owner".to_string()
    } else {
        view.approvers
            .iter()
            .map(|a| approver(a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    blocks.push(context(format!(
        "Request `{}` · binding `{}` · requested {} · needs {} approval{} from {}",
        view.id,
        &view.binding[..view.binding.len().min(16)],
        date(view.requested_at),
        view.quorum,
        if view.quorum == 1 { "" } else { "s" },
        approvers
    )));

    match view.status {
        "pending" => {
            if !view.votes.is_empty() {
                let by: Vec<String> = view.votes.iter().map(who).collect();
                blocks.push(section(format!(
                    "*Approvals so far:* {} of {} — {}",
                    view.votes.len(),
                    view.quorum,
                    by.join(", ")
                )));
            }
            blocks.push(context(format!(
                "Expires {} ({} s after the request)",
                date(view.expires_at),
                view.timeout_secs
            )));
            blocks.push(reason_input());
            blocks.push(buttons(view));
        }
        _ => blocks.push(section(decision_text(view))),
    }
    (fallback, blocks)
}

fn esc_limit_md(s: &str) -> String {
    // Already escaped pieces; only enforce the budget.
    s.chars().take(SECTION_BUDGET).collect()
}

fn context(text: String) -> SlackBlock {
    let text: String = text.chars().take(SECTION_BUDGET).collect();
    SlackContextBlock::new(vec![SlackBlockMarkDownText::new(text).into()]).into()
}

/// Where a reviewer types why they deny. Slack sends the message's input
/// values with every button click (`state.values`), so Deny stays one
/// click: no modal, nothing extra for Socket Mode to acknowledge.
fn reason_input() -> SlackBlock {
    let input = SlackBlockPlainTextInputElement::new()
        .with_action_id(super::REASON_ACTION.into())
        .with_max_length(super::MAX_REASON_CHARS as u64)
        .with_placeholder(plain("Why not? The agent receives this with the denial."));
    SlackInputBlock::new(
        plain("Reason, if you deny"),
        SlackInputBlockElement::PlainTextInput(input),
    )
    .with_block_id(super::REASON_BLOCK.into())
    .with_optional(true)
    .into()
}

fn buttons(view: &PendingView) -> SlackBlock {
    let value = button_value(&view.id, &view.binding);
    let (db, _) = esc_limit(&view.database, 200);
    let approve = SlackBlockButtonElement::new(plain("Approve"))
        .with_action_id(ACTION_APPROVE.into())
        .with_value(value.clone())
        .with_style(SlackBlockButtonStyle::Primary)
        .with_confirm(SlackBlockConfirmItem::new(
            plain("Run this statement?"),
            md(format!(
                "It runs once, on *{db}*, as held. This cannot be undone."
            )),
            plain("Approve"),
            plain("Cancel"),
        ));
    let deny = SlackBlockButtonElement::new(plain("Deny"))
        .with_action_id(ACTION_DENY.into())
        .with_value(value)
        .with_style(SlackBlockButtonStyle::Danger);
    SlackActionsBlock::new(vec![approve.into(), deny.into()]).into()
}

fn decision_text(view: &PendingView) -> String {
    let Some(d) = &view.decision else {
        return format!("*Status:* {}", view.status);
    };
    let by: Vec<String> = d.by.iter().map(who).collect();
    let reason = d.reason.as_deref().map(|r| esc_limit(r, 1500).0);
    let mut text = match view.status {
        "approved" => format!("*Approved* by {} at {}", by.join(", "), date(d.at)),
        "denied" => format!(
            "*Denied* by {} at {}: {}",
            by.join(", "),
            date(d.at),
            reason.unwrap_or_else(|| "no reason given".into())
        ),
        "expired" => format!(
            "*Expired* at {}: no decision within {} s. The statement was not run.",
            date(d.at),
            view.timeout_secs
        ),
        "withdrawn" => format!(
            "*Withdrawn* at {}: {}. The statement will never run, whatever anyone clicks.",
            date(d.at),
            reason.unwrap_or_default()
        ),
        _ => format!("*Failed* at {}: {}", date(d.at), reason.unwrap_or_default()),
    };
    if let Some(e) = &view.execution {
        let (detail, _) = esc_limit(&e.detail, 1000);
        text.push_str(&if e.ok {
            format!("\n*Executed:* `{detail}`")
        } else {
            format!("\n*Not completed:* {detail}")
        });
    } else if view.status == "approved" {
        text.push_str("\n_Running…_");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_limits() {
        assert_eq!(
            esc("<!channel> & <@U1>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
        assert_eq!(
            esc_limit("a&b", 3),
            ("a".into(), true),
            "an entity is never split"
        );
        assert_eq!(
            esc_limit("ééé", 2),
            ("éé".into(), true),
            "cut on char boundaries"
        );
        let (cb, cut) = code_block("x```y", 100);
        assert!(!cut && !cb[3..cb.len() - 3].contains("```"), "{cb}");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
        assert_eq!(approver("S0DBA"), "<!subteam^S0DBA>");
        assert_eq!(approver("U1"), "<@U1>");
        assert_eq!(approver("api:<x>"), "`api:&lt;x&gt;`");
    }
}
