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

/// The identity every record of a session carries, and the trail its
/// records go to (shared by its drafts: a draft waiting for its result
/// holds no auditor of its own, whose clone and drop were six atomic
/// operations per statement).
pub struct Who {
    pub session: String,
    pub agent: String,
    /// Both as every statement record writes them (`audit::identity_fields`).
    pub json: Vec<u8>,
    pub audit: Auditor,
}

impl Who {
    pub fn new(session: String, agent: String, audit: Auditor) -> Who {
        let json = crate::audit::identity_fields(&session, &agent);
        Who {
            session,
            agent,
            json,
            audit,
        }
    }
}

impl std::fmt::Debug for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Who")
            .field("session", &self.session)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

pub struct Draft {
    pub who: Arc<Who>,
    /// Statement number within the session, from 1.
    pub statement: u64,
    /// `None` when the record will not show it: the trail records the
    /// redaction (`redacted`), or no text (`Auditor::records_raw_text`).
    pub sql: Option<Arc<str>>,
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
    /// The record's judged fields, encoded, from the session's
    /// [`JudgedMemo`] (a one-statement unit that runs as it is, with the
    /// trail on).
    pub judged: Option<Judged>,
}

/// What the rules made of a statement (categories, tables, functions,
/// decision, rules, rule set) as its record carries it
/// (`audit::judged_fields`), for the decision it was encoded with.
#[derive(Clone)]
pub struct Judged {
    decision: &'static str,
    json: Arc<[u8]>,
}

/// Effects, rule ids and rule set version, compared by pointer.
type JudgedKey = (Arc<[Effect]>, Arc<[String]>, Arc<str>);

/// Entries a session's [`JudgedMemo`] keeps (as `wire::decided`'s).
const JUDGED_ENTRIES: usize = 16;

/// A session's encoded judged fields by statement shape: they depend only
/// on the statement's effects (shared by every text of a shape), the
/// decision, its rules and the rule set, so the sorted lists and their JSON
/// (about a tenth of a session thread's work per statement with the trail
/// on) are built once per shape, not per statement.
#[derive(Default)]
pub struct JudgedMemo {
    /// By the effects, rules and rule set they were encoded for.
    entries: Vec<(JudgedKey, Judged)>,
    next: usize,
}

impl JudgedMemo {
    /// `draft`'s judged fields, if it executes one statement.
    pub fn get(&mut self, draft: &Draft) -> Option<Judged> {
        let [class] = draft.executed.as_slice() else {
            return None;
        };
        let [st] = class.statements.as_slice() else {
            return None;
        };
        if let Some((_, j)) = self.entries.iter().find(|((e, r, v), j)| {
            Arc::ptr_eq(e, &st.effects)
                && Arc::ptr_eq(r, &draft.rules)
                && Arc::ptr_eq(v, &draft.ruleset)
                && j.decision == draft.decision
        }) {
            return Some(j.clone());
        }
        let j = Judged {
            decision: draft.decision,
            json: draft.judged_json().into(),
        };
        let entry = (
            (
                Arc::clone(&st.effects),
                Arc::clone(&draft.rules),
                Arc::clone(&draft.ruleset),
            ),
            j.clone(),
        );
        if self.entries.len() < JUDGED_ENTRIES {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % JUDGED_ENTRIES;
        }
        Some(j)
    }
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

    /// The four lists a record names, in one vector: categories, tables,
    /// functions (each sorted, unique) and rule ids (in the order they
    /// decided); with where the last three start.
    fn names(&self) -> (Vec<&str>, usize, usize, usize) {
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
        (names, tables_at, functions_at, rules_at)
    }

    /// The record's judged fields, encoded.
    fn judged_json(&self) -> Vec<u8> {
        let (names, tables_at, functions_at, rules_at) = self.names();
        crate::audit::judged_fields(
            &names[..tables_at],
            &names[tables_at..functions_at],
            &names[functions_at..rules_at],
            self.decision,
            &names[rules_at..],
            Some(&self.ruleset),
        )
    }

    /// Queue the statement's record with its outcome.
    pub fn record(&self, outcome: OutcomeRef<'_>, duration_us: u64) {
        let audit = &self.who.audit;
        if !audit.is_enabled() {
            return;
        }
        // Encoded for the decision the draft still has (a hold changes it).
        let judged = self
            .judged
            .as_ref()
            .filter(|j| j.decision == self.decision && self.request_id.is_none());
        debug_assert!(
            judged.is_none_or(|j| *j.json == *self.judged_json()),
            "a draft's judged fields differ"
        );
        let (names, tables_at, functions_at, rules_at) = match judged {
            Some(_) => (Vec::new(), 0, 0, 0),
            None => self.names(),
        };
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
            sql: self.sql.as_deref(),
            redacted: self.redacted.as_deref(),
            parameters: &rendered,
            parameter_count: self.params.len(),
            categories: &names[..tables_at],
            tables: &names[tables_at..functions_at],
            functions: &names[functions_at..rules_at],
            decision: self.decision,
            rules: &names[rules_at..],
            ruleset: Some(&self.ruleset),
            judged: judged.map(|j| &*j.json),
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
    use super::*;

    fn draft(
        who: &Arc<Who>,
        ruleset: &Arc<str>,
        class: &SharedClassification,
        decision: &'static str,
        rules: &Arc<[String]>,
    ) -> Draft {
        Draft {
            who: Arc::clone(who),
            statement: 1,
            sql: Some(Arc::from("SELECT 1")),
            redacted: None,
            params: Default::default(),
            executed: smallvec::smallvec![Arc::clone(class)],
            decision,
            rules: Arc::clone(rules),
            ruleset: Arc::clone(ruleset),
            request_id: None,
            judged: None,
        }
    }

    /// Statements of one shape share one encoding; another decision, other
    /// effects or a unit of two statements do not.
    #[tokio::test]
    async fn judged_fields_are_encoded_once_per_shape_and_decision() {
        let mut cfg = crate::audit::AuditConfig::with_file("unused.jsonl");
        cfg.enabled = false;
        let (audit, _task) = Auditor::start(cfg).await.unwrap();
        let who = Arc::new(Who::new("s-1".into(), "bot".into(), audit));
        let ruleset: Arc<str> = Arc::from("v1");
        let draft = |class: &SharedClassification, decision, rules: &Arc<[String]>| {
            draft(&who, &ruleset, class, decision, rules)
        };
        let rules: Arc<[String]> = Arc::from(["r1".to_string()]);
        let a = crate::wire::policy::unknown("a");
        let b = crate::wire::policy::unknown("b");
        let mut memo = JudgedMemo::default();
        let first = memo.get(&draft(&a, "allow", &rules)).unwrap();
        let again = draft(&a, "allow", &rules);
        let second = memo.get(&again).unwrap();
        assert!(Arc::ptr_eq(&first.json, &second.json), "same shape: shared");
        assert_eq!(*first.json, *again.judged_json());
        let logged = memo.get(&draft(&a, "log", &rules)).unwrap();
        assert!(!Arc::ptr_eq(&first.json, &logged.json));
        assert!(String::from_utf8_lossy(&logged.json).contains(r#""decision":"log""#));
        // Another rule set in force: encoded again, naming its version.
        let reloaded = Draft {
            ruleset: Arc::from("v2"),
            ..draft(&a, "allow", &rules)
        };
        let v2 = memo.get(&reloaded).unwrap();
        assert!(!Arc::ptr_eq(&first.json, &v2.json));
        assert!(String::from_utf8_lossy(&v2.json).contains(r#""ruleset":"v2""#));
        let other = memo.get(&draft(&b, "allow", &rules)).unwrap();
        assert!(!Arc::ptr_eq(&first.json, &other.json));
        let mut two = draft(&a, "allow", &rules);
        two.executed.push(Arc::clone(&b));
        assert!(
            memo.get(&two).is_none(),
            "two classifications: not by shape"
        );
    }

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
