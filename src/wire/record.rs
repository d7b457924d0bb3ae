//! What a session remembers about a statement until its result arrives,
//! and how that becomes the statement's audit record.
//!
//! A draft holds shared references (the classifications, the rule set) and
//! the few owned values the record needs (text, bound values, rule ids).
//! Lists the record shows (categories, tables, functions) are computed
//! from the classifications only when the record is written, borrowed, and
//! [`Auditor::statement`] encodes it on this thread: the writer thread is
//! handed one buffer, not a dozen strings to free.

use std::sync::Arc;

use crate::audit::{Auditor, OutcomeRef, StatementRecord};
use crate::classify::{Effect, SharedClassification};

/// The identity every record of a session carries.
#[derive(Debug)]
pub struct Who {
    pub session: String,
    pub agent: String,
    /// Both as every statement record writes them (`audit::identity_fields`).
    pub json: Vec<u8>,
}

impl Who {
    pub fn new(session: String, agent: String) -> Who {
        let json = crate::audit::identity_fields(&session, &agent);
        Who {
            session,
            agent,
            json,
        }
    }
}

pub struct Draft {
    pub who: Arc<Who>,
    /// Statement number within the session, from 1.
    pub statement: u64,
    pub sql: Arc<str>,
    /// `sql` with its literals redacted, when the classifier had it.
    pub redacted: Option<Arc<str>>,
    /// Shared with the portal that bound them; rendered only for a trail
    /// that logs them.
    pub params: super::params::Params,
    /// The classifications the unit executes, as judged.
    pub executed: super::policy::Units<SharedClassification>,
    /// See `audit::event::decision`; a hold sets what became of it.
    pub decision: &'static str,
    pub rules: Arc<[String]>,
    /// Version of the rule set that decided.
    pub ruleset: Arc<str>,
    /// Set once the statement is held for approval.
    pub request_id: Option<String>,
}

impl Draft {
    /// Categories of what the unit executes, sorted, without duplicates.
    pub fn categories(&self) -> Vec<String> {
        let mut names = Vec::new();
        push_unique(&mut names, self.effects().map(|e| e.category.as_str()));
        names.into_iter().map(str::to_string).collect()
    }

    fn effects(&self) -> impl Iterator<Item = &Effect> {
        self.executed.iter().flat_map(|c| c.effects())
    }

    /// Queue the statement's record with its outcome.
    pub fn record(&self, audit: &Auditor, outcome: OutcomeRef<'_>, duration_us: u64) {
        if !audit.is_enabled() {
            return;
        }
        // One vector for the four lists: categories, tables, functions
        // (each sorted, unique) and rule ids (in the order they decided).
        let mut names: Vec<&str> = Vec::with_capacity(8);
        push_unique(&mut names, self.effects().map(|e| e.category.as_str()));
        let tables_at = push_unique(
            &mut names,
            self.effects()
                .flat_map(|e| e.tables.iter().map(String::as_str)),
        );
        let functions_at = push_unique(
            &mut names,
            self.effects()
                .flat_map(|e| e.functions.iter().map(String::as_str)),
        );
        let rules_at = names.len();
        names.extend(self.rules.iter().map(String::as_str));
        let rendered = if audit.logs_parameters() {
            self.params.render()
        } else {
            Vec::new()
        };
        audit.statement(&StatementRecord {
            session: &self.who.session,
            agent: &self.who.agent,
            identity: Some(&self.who.json),
            statement: self.statement,
            sql: Some(&self.sql),
            redacted: self.redacted.as_deref(),
            parameters: &rendered,
            parameter_count: self.params.len(),
            categories: &names[..tables_at],
            tables: &names[tables_at..functions_at],
            functions: &names[functions_at..rules_at],
            decision: self.decision,
            rules: &names[rules_at..],
            ruleset: Some(&self.ruleset),
            request_id: self.request_id.as_deref(),
            outcome,
            duration_us,
        });
    }
}

/// Append `items`, sorted and without duplicates; returns where they start.
fn push_unique<'a>(names: &mut Vec<&'a str>, items: impl Iterator<Item = &'a str>) -> usize {
    let from = names.len();
    names.extend(items);
    sort_unique(names, from);
    from
}

/// Sort `v[from..]` and remove its duplicates.
fn sort_unique(v: &mut Vec<&str>, from: usize) {
    if v.len() - from < 2 {
        return;
    }
    v[from..].sort_unstable();
    let mut w = from + 1;
    for r in from + 1..v.len() {
        if v[r] != v[w - 1] {
            v[w] = v[r];
            w += 1;
        }
    }
    v.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::sort_unique;

    #[test]
    fn sort_unique_touches_only_the_tail() {
        let mut v = vec!["z", "a", "c", "b", "c", "a", "c"];
        sort_unique(&mut v, 2);
        assert_eq!(v, ["z", "a", "a", "b", "c"]);
        let mut one = vec!["x"];
        sort_unique(&mut one, 0);
        assert_eq!(one, ["x"]);
        let mut none: Vec<&str> = vec![];
        sort_unique(&mut none, 0);
        assert!(none.is_empty());
    }
}
