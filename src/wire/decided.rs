//! The decisions a session has already reached, so that its repeated
//! statements are decided by a pointer comparison instead of a rule walk.
//!
//! A decision is a pure function of the rule set, the session's subject
//! (agent, database, application_name: fixed for the session) and, for a
//! one-statement classification, that statement's effects. The shape
//! cache hands every text of a shape the same shared effects, so a session
//! sending `... WHERE aid = 4711`, `... WHERE aid = 815`, ... meets the same
//! `Arc<[Effect]>` every time. Entries hold their effects (a pointer can
//! only repeat for the very same effects) and are dropped when the rule set
//! in force changes.

use std::sync::Arc;

use crate::classify::{Classification, Effect};
use crate::rules::{Action, Decision, RuleSet, Subject};

/// Distinct shapes remembered per session. Sessions of agents and drivers
/// repeat a handful (a pgbench TPC-B session: 11, as a negative literal
/// makes a shape of its own); a miss only costs the evaluation it would
/// have cost.
const ENTRIES: usize = 16;

/// Effects judged, the action they got and the rules behind it.
type Entry = (Arc<[Effect]>, Action, Arc<[String]>);

#[derive(Default)]
pub struct Decided {
    /// The rule set the entries were decided under.
    rules: Option<Arc<RuleSet>>,
    /// Only decisions that let the statement run (allow, log) are kept:
    /// they are the hot path and carry no message or hold settings, so an
    /// entry is 40 bytes. A refusal or a hold is evaluated every time.
    entries: Vec<Entry>,
    /// Slot the next new entry replaces once the list is full.
    next: usize,
}

impl Decided {
    /// `rules.evaluate(class, subject)`, remembered for one-statement
    /// classifications. `subject` must be the same on every call.
    pub fn evaluate(
        &mut self,
        rules: &Arc<RuleSet>,
        class: &Classification,
        subject: &Subject,
    ) -> Decision {
        let [st] = class.statements.as_slice() else {
            return rules.evaluate(class, subject);
        };
        if !self.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            self.entries.clear();
            self.next = 0;
            self.rules = Some(Arc::clone(rules));
        }
        if let Some((_, action, names)) = self
            .entries
            .iter()
            .find(|(e, ..)| Arc::ptr_eq(e, &st.effects))
        {
            return Decision {
                action: *action,
                rules: Arc::clone(names),
                message: None,
                hold: None,
            };
        }
        let d = rules.evaluate(class, subject);
        if !matches!(d.action, Action::Allow | Action::Log)
            || d.message.is_some()
            || d.hold.is_some()
        {
            return d;
        }
        let entry = (Arc::clone(&st.effects), d.action, Arc::clone(&d.rules));
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % ENTRIES;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Options};

    fn rules(toml: &str) -> Arc<RuleSet> {
        let sources = [(std::path::PathBuf::from("test.toml"), toml.to_string())];
        Arc::new(RuleSet::from_sources(&sources).unwrap_or_else(|e| panic!("rules: {e:?}")))
    }

    const SUBJECT: Subject = Subject {
        agent: "bot",
        application_name: "app",
        database: "db",
    };

    #[test]
    fn texts_of_one_shape_share_a_decision_and_a_reload_forgets_it() {
        let allow = rules(
            "[[rule]]\nname = \"reads\"\ndescription = \"d\"\naction = \"allow\"\ncategories = [\"read\"]\n",
        );
        let deny = rules(
            "[[rule]]\nname = \"no-reads\"\ndescription = \"d\"\naction = \"deny\"\ncategories = [\"read\"]\n",
        );
        let c = Classifier::new(Options::default(), 1 << 20);
        let mut memo = Decided::default();
        // Seen twice, the shape is cached: later texts share its effects.
        for sql in [
            "SELECT 1 FROM t WHERE id = 1",
            "SELECT 1 FROM t WHERE id = 2",
        ] {
            c.classify(sql);
        }
        let a = c.classify("SELECT 1 FROM t WHERE id = 31");
        let b = c.classify("SELECT 1 FROM t WHERE id = 4711");
        assert!(Arc::ptr_eq(
            &a.statements[0].effects,
            &b.statements[0].effects
        ));
        assert_eq!(memo.evaluate(&allow, &a, &SUBJECT).action, Action::Allow);
        assert_eq!(memo.entries.len(), 1);
        assert_eq!(*memo.evaluate(&allow, &b, &SUBJECT).rules, ["reads"]);
        assert_eq!(memo.entries.len(), 1, "same effects: no new entry");
        // Another rule set in force: decided afresh.
        let d = memo.evaluate(&deny, &b, &SUBJECT);
        assert_eq!(
            (d.action, d.rules.to_vec()),
            (Action::Deny, vec!["no-reads".to_string()])
        );
        assert!(d.message.is_some(), "a denial keeps its message");
        assert!(memo.entries.is_empty(), "refusals are not remembered");
    }

    #[test]
    fn a_full_memo_replaces_entries_and_stays_right() {
        let set = rules(
            "[[rule]]\nname = \"reads\"\ndescription = \"d\"\naction = \"allow\"\ncategories = [\"read\"]\n\
             [[rule]]\nname = \"writes\"\ndescription = \"d\"\naction = \"log\"\ncategories = [\"write\"]\n",
        );
        let mut memo = Decided::default();
        for round in 0..3 {
            for i in 0..(ENTRIES * 2) {
                let sql = if i % 2 == 0 {
                    format!("SELECT c{i} FROM t")
                } else {
                    format!("UPDATE t SET c{i} = 0")
                };
                let class = crate::classify::classify(&sql, &Options::default());
                let got = memo.evaluate(&set, &class, &SUBJECT);
                let want = set.evaluate(&class, &SUBJECT);
                assert_eq!(
                    (got.action, got.rules.to_vec()),
                    (want.action, want.rules.to_vec()),
                    "round {round}: {sql}"
                );
                assert!(memo.entries.len() <= ENTRIES);
            }
        }
        // Several statements in one text are evaluated, not remembered.
        let two = crate::classify::classify(
            "SELECT 1; UPDATE t SET a = 1 WHERE id = 2",
            &Options::default(),
        );
        let before = memo.entries.len();
        assert_eq!(memo.evaluate(&set, &two, &SUBJECT).action, Action::Log);
        assert_eq!(memo.entries.len(), before);
    }
}
