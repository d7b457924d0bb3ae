//! The rules engine: TOML rule files -> validated [`RuleSet`] -> a
//! [`Decision`] for each classified message.
//!
//! Place in the flow: `wire` classifies a message (`classify`), then asks
//! [`RuleStore::current`] for the live rule set and calls
//! [`RuleSet::evaluate`]; the decision's action picks relay / deny / hold,
//! `audit` records the decision with [`RuleSet::version`], and `approval`
//! takes the [`HoldSettings`] of a hold.
//!
//! # Evaluation
//!
//! Evaluation never depends on rule order (rules are kept sorted by name,
//! only for stable output). For every *effect* of every statement in the
//! message, all rules whose conditions match are collected:
//!
//! - a rule matches an effect when the subject (agent, application name,
//!   database) and the effect satisfy every condition the rule gives; a
//!   list condition holds when any listed pattern matches, and a table /
//!   function condition holds when any table / function of the effect
//!   matches. A rule without conditions matches everything;
//! - an effect that no rule matches gets the rule set's default action
//!   (`[defaults] action`, `hold` when no file sets it), reported as the
//!   rule [`DEFAULT_RULE`]. Coverage is per effect, so `SELECT 1; DROP
//!   TABLE t` cannot ride on an `allow` rule for reads when nothing covers
//!   the DROP;
//! - category `unknown` is never let through implicitly: `allow` and `log`
//!   rules only match an `unknown` effect when their `categories` name
//!   `unknown`, and a default of `allow` or `log` becomes `hold` for it.
//!   A statement with no recorded effects counts as `unknown`; an empty
//!   message (only comments) counts as one `session` effect, as
//!   [`Classification::category`] does.
//!
//! The decision is the most restrictive action collected
//! (`deny > hold > log > allow`) and names every rule that produced it.
//!
//! # Several hold rules
//!
//! When the decision is `hold` and several hold rules produced it, their
//! settings merge toward the stricter: the highest `quorum`, the shortest
//! `timeout` (an expired hold is refused), the `channel` of the first rule
//! by name that sets one, and as approvers the people every rule accepts
//! (the intersection of the non-empty approver lists; an empty list means
//! "anyone except the agent's owner" and adds no constraint). If no one is
//! left who may approve, or fewer named users remain than the quorum
//! needs, the hold could never be granted and the statement is denied with
//! a message that says why.
//!
//! # Rule files
//!
//! See `rules/default.toml` for a commented example; `load.rs` documents
//! every key and what is refused, `pattern.rs` how table and function
//! globs treat schemas (a pattern without a schema matches the name in any
//! schema; `schema.name` patterns take unqualified names as `public`).

mod cases;
mod explain;
mod load;
mod pattern;
mod store;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::classify::{Category, Classification, Effect};

pub use cases::{CaseOutcome, CasesReport, run_cases};
pub use explain::render_explain;
pub use load::parse_duration;
pub use pattern::normalize_name;
pub use store::{ReloadOutcome, RuleStore};

use pattern::{ObjectPattern, SchemaPattern, TextPattern};

/// Name reported in [`Decision::rules`] when the rule set's default action
/// decided (no rule matched some effect). Rule names cannot contain
/// parentheses, so it never collides with a real rule.
pub const DEFAULT_RULE: &str = "(default)";

/// Hold timeout when neither the rule nor `[defaults]` sets one.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do with a statement. The order is restrictiveness, so the
/// decision over several rules is `max()`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Relay to the upstream.
    Allow,
    /// Relay, and mark the audit record as flagged by a rule.
    Log,
    /// Wait for human approval with the decision's [`HoldSettings`].
    Hold,
    /// Refuse with SQLSTATE 42501 and the decision's message.
    Deny,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Allow, Action::Log, Action::Hold, Action::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Hold => "hold",
            Action::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the statement runs without a human (`allow`, `log`).
    fn lets_through(self) -> bool {
        self <= Action::Log
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Approval settings of a hold, consumed by the approval subsystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HoldSettings {
    /// Slack channel to post the request in; `None` = the approval
    /// subsystem's configured channel.
    pub channel: Option<String>,
    /// Slack user ids ("U…", "W…") or user-group ids ("S…"); empty = anyone
    /// except the agent's owner.
    pub approvers: Vec<String>,
    /// Distinct approvals needed, >= 1.
    pub quorum: u32,
    /// How long to wait before the hold is refused.
    pub timeout: Duration,
}

impl Default for HoldSettings {
    fn default() -> Self {
        HoldSettings {
            channel: None,
            approvers: Vec::new(),
            quorum: 1,
            timeout: DEFAULT_HOLD_TIMEOUT,
        }
    }
}

/// Who sent the statement, as the session knows it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The authenticated agent (proxy user).
    pub agent: &'a str,
    /// Client-chosen `application_name`. The client controls it, so it is
    /// only trustworthy for narrowing rules, never as proof of identity.
    pub application_name: &'a str,
    pub database: &'a str,
}

/// The outcome of [`RuleSet::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// Names of the rules that produced `action`, sorted; [`DEFAULT_RULE`]
    /// when the default action did. Shared: a session's repeated
    /// statements reuse one decision (`wire::policy`), and each audit record
    /// names these rules.
    pub rules: Arc<[String]>,
    /// For `deny`: the message for the client. Always set for `deny`.
    pub message: Option<String>,
    /// For `hold`: merged approval settings. Always set for `hold`.
    /// Boxed: a hold is rare, and a decision is built and moved for every
    /// statement.
    pub hold: Option<Box<HoldSettings>>,
}

/// Where a rule (or `[defaults]`) was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What a rule matches. `None` = no condition on that aspect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub categories: Option<Vec<Category>>,
    pub tables: Option<Vec<ObjectPattern>>,
    pub schemas: Option<Vec<SchemaPattern>>,
    pub functions: Option<Vec<ObjectPattern>>,
    pub agents: Option<Vec<TextPattern>>,
    pub application_names: Option<Vec<TextPattern>>,
    pub databases: Option<Vec<TextPattern>>,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) action: Action,
    pub(crate) origin: Origin,
    pub(crate) when: Conditions,
    pub(crate) message: Option<String>,
    pub(crate) hold: Option<HoldSettings>,
    /// The rule sets no `timeout`: it takes `[defaults]`'s.
    pub(crate) inherits_timeout: bool,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The rule's conditions as written, e.g.
    /// `categories = [ddl], tables = [billing.*]`.
    pub fn conditions(&self) -> String {
        fn list<T>(
            out: &mut Vec<String>,
            key: &str,
            items: &Option<Vec<T>>,
            show: impl Fn(&T) -> &str,
        ) {
            if let Some(items) = items {
                let shown: Vec<&str> = items.iter().map(show).collect();
                out.push(format!("{key} = [{}]", shown.join(", ")));
            }
        }
        let w = &self.when;
        let mut out = Vec::new();
        list(&mut out, "categories", &w.categories, |c| c.as_str());
        list(&mut out, "tables", &w.tables, |p| p.as_str());
        list(&mut out, "schemas", &w.schemas, |p| p.as_str());
        list(&mut out, "functions", &w.functions, |p| p.as_str());
        list(&mut out, "agents", &w.agents, |p| p.as_str());
        list(&mut out, "application_names", &w.application_names, |p| {
            p.as_str()
        });
        list(&mut out, "databases", &w.databases, |p| p.as_str());
        if out.is_empty() {
            "any statement".to_string()
        } else {
            out.join(", ")
        }
    }

    fn matches_subject(&self, s: &Subject) -> bool {
        fn any(list: &Option<Vec<TextPattern>>, value: &str) -> bool {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|p| p.matches(value)))
        }
        any(&self.when.agents, s.agent)
            && any(&self.when.application_names, s.application_name)
            && any(&self.when.databases, s.database)
    }

    fn matches_effect(&self, e: &Effect) -> bool {
        let w = &self.when;
        let category_ok = match &w.categories {
            Some(list) => list.contains(&e.category),
            // Unknown is never let through implicitly: an allow/log rule
            // must list `unknown` to cover it.
            None => !(e.category == Category::Unknown && self.action.lets_through()),
        };
        category_ok
            && w.tables
                .as_ref()
                .is_none_or(|pats| e.tables.iter().any(|t| pats.iter().any(|p| p.matches(t))))
            && w.schemas
                .as_ref()
                .is_none_or(|pats| e.tables.iter().any(|t| pats.iter().any(|p| p.matches(t))))
            && w.functions.as_ref().is_none_or(|pats| {
                e.functions
                    .iter()
                    .any(|f| pats.iter().any(|p| p.matches(f)))
            })
    }
}

/// The rule set's fallback for effects no rule matches.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub action: Action,
    pub message: Option<String>,
    pub hold: HoldSettings,
    /// Where `[defaults]` was set; `None` = built-in (`hold`).
    pub origin: Option<Origin>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            action: Action::Hold,
            message: None,
            hold: HoldSettings::default(),
            origin: None,
        }
    }
}

impl Defaults {
    /// The default action for one effect, with the unknown guard applied.
    fn action_for(&self, category: Category) -> Action {
        if category == Category::Unknown && self.action.lets_through() {
            Action::Hold
        } else {
            self.action
        }
    }
}

/// A validated, immutable set of rules loaded from one or more files.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Sorted by name (names are unique).
    rules: Vec<Rule>,
    defaults: Defaults,
    functions: Vec<(String, Category)>,
    /// `[[setting]]` names, lowercase, in file order without duplicates.
    settings: Vec<String>,
    files: Vec<PathBuf>,
    version: String,
}

/// Which source produced an action for one effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Index into `RuleSet::rules`.
    Rule(usize),
    Default(Action),
}

/// How one effect was judged; shared by `evaluate` and `explain` so the
/// explanation can never disagree with the decision. Borrows the
/// classification's effects: `evaluate` runs for every statement.
#[derive(Debug, Clone)]
pub(crate) struct EffectTrace<'c> {
    pub effect: Cow<'c, Effect>,
    /// Synthetic effect standing in for a statement without effects or an
    /// empty message.
    pub synthetic: bool,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone)]
pub(crate) struct StatementTrace<'c> {
    pub span: (usize, usize),
    pub effects: Vec<EffectTrace<'c>>,
}

impl RuleSet {
    /// Load rule files. Each path is a file, or a directory whose `*.toml`
    /// files (not hidden ones, not recursively) are loaded.
    ///
    /// # Errors
    ///
    /// Every problem found in every file, each naming file, line and rule.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, Vec<Error>> {
        let sources = load::read_sources(paths)?;
        load::build(&sources)
    }

    /// Build from in-memory `(file name, contents)` pairs, as if read from
    /// those files.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<RuleSet, Vec<Error>> {
        load::build(sources)
    }

    /// Hex SHA-256 over the sorted file names and contents: the policy
    /// version the audit trail records with each decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Functions the rule files add to the classifier's side-effect list
    /// (`[[function]]`), names normalised like the classifier's.
    pub fn extra_functions(&self) -> Vec<(String, Category)> {
        self.functions.clone()
    }

    /// Settings the rule files add to the classifier's privileged list
    /// (`[[setting]]`).
    pub fn privileged_settings(&self) -> &[String] {
        &self.settings
    }

    /// The classifier options these rules call for: every place that
    /// builds a classifier for a rule set (the proxy, the rule tools,
    /// tests) takes them from here, so none forgets a list.
    pub fn classifier_options(&self, max_len: usize) -> crate::classify::Options {
        crate::classify::Options {
            max_len,
            extra_functions: self.extra_functions(),
            privileged_settings: self.settings.clone(),
        }
    }

    /// Rules sorted by name.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this name (e.g. from [`Decision::rules`]).
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.rules[i])
    }

    /// The files this set was loaded from, sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The action for effects no rule matches.
    pub fn default_action(&self) -> Action {
        self.defaults.action
    }

    /// Decide on a classified message. Pure and order-independent; see the
    /// module docs for the semantics.
    pub fn evaluate(&self, c: &Classification, s: &Subject) -> Decision {
        self.decide(&self.trace(c, s))
    }

    pub(crate) fn trace<'c>(&self, c: &'c Classification, s: &Subject) -> Vec<StatementTrace<'c>> {
        let eligible: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].matches_subject(s))
            .collect();
        let judge = |effect: Cow<'c, Effect>, synthetic: bool| {
            let mut sources: Vec<Source> = eligible
                .iter()
                .copied()
                .filter(|&i| self.rules[i].matches_effect(&effect))
                .map(Source::Rule)
                .collect();
            if sources.is_empty() {
                sources.push(Source::Default(self.defaults.action_for(effect.category)));
            }
            EffectTrace {
                effect,
                synthetic,
                sources,
            }
        };
        if c.statements.is_empty() {
            let effect = synthetic_effect(
                Category::Session,
                "empty message (comments or whitespace only)",
            );
            return vec![StatementTrace {
                span: (0, 0),
                effects: vec![judge(Cow::Owned(effect), true)],
            }];
        }
        c.statements
            .iter()
            .map(|st| {
                let effects = if st.effects.is_empty() {
                    let e =
                        synthetic_effect(Category::Unknown, "statement has no recorded effects");
                    vec![judge(Cow::Owned(e), true)]
                } else {
                    st.effects
                        .iter()
                        .map(|e| judge(Cow::Borrowed(e), false))
                        .collect()
                };
                StatementTrace {
                    span: st.span,
                    effects,
                }
            })
            .collect()
    }

    pub(crate) fn source_action(&self, src: Source) -> Action {
        match src {
            Source::Rule(i) => self.rules[i].action,
            Source::Default(a) => a,
        }
    }

    pub(crate) fn decide(&self, trace: &[StatementTrace]) -> Decision {
        let all = trace
            .iter()
            .flat_map(|st| &st.effects)
            .flat_map(|e| &e.sources)
            .copied();
        let action = all
            .clone()
            .map(|s| self.source_action(s))
            .max()
            .unwrap_or(Action::Hold);
        // Rules in name order (their index order), the default last.
        let mut rule_idx: Vec<usize> = all
            .clone()
            .filter(|&s| self.source_action(s) == action)
            .filter_map(|s| match s {
                Source::Rule(i) => Some(i),
                Source::Default(_) => None,
            })
            .collect();
        rule_idx.sort_unstable();
        rule_idx.dedup();
        let by_default = all
            .clone()
            .any(|s| matches!(s, Source::Default(a) if a == action));
        let mut names: Vec<String> = rule_idx
            .iter()
            .map(|&i| self.rules[i].name.clone())
            .collect();
        if by_default {
            names.push(DEFAULT_RULE.to_string());
        }

        match action {
            Action::Allow | Action::Log => Decision {
                action,
                rules: names.into(),
                message: None,
                hold: None,
            },
            Action::Deny => {
                let mut messages: Vec<&str> = Vec::new();
                let candidates = rule_idx.iter().map(|&i| self.rules[i].message.as_deref());
                let default = by_default.then_some(self.defaults.message.as_deref());
                for m in candidates.chain(default).flatten() {
                    if !messages.contains(&m) {
                        messages.push(m);
                    }
                }
                let message = if messages.is_empty() {
                    format!("statement denied by policy rule {}", names.join(", "))
                } else {
                    messages.join("; ")
                };
                Decision {
                    action,
                    rules: names.into(),
                    message: Some(message),
                    hold: None,
                }
            }
            Action::Hold => {
                // Loading gives every hold rule settings; the fallback only
                // keeps this path panic-free.
                let mut settings: Vec<&HoldSettings> = rule_idx
                    .iter()
                    .map(|&i| self.rules[i].hold.as_ref().unwrap_or(&self.defaults.hold))
                    .collect();
                if by_default {
                    settings.push(&self.defaults.hold);
                }
                match merge_holds(&settings) {
                    Ok(hold) => Decision {
                        action,
                        rules: names.into(),
                        message: None,
                        hold: Some(Box::new(hold)),
                    },
                    Err(why) => Decision {
                        action: Action::Deny,
                        message: Some(format!(
                            "statement needs approval under rules {}, but {why}",
                            names.join(", ")
                        )),
                        rules: names.into(),
                        hold: None,
                    },
                }
            }
        }
    }
}

fn synthetic_effect(category: Category, why: &str) -> Effect {
    Effect {
        category,
        tables: Vec::new(),
        functions: Vec::new(),
        why: why.to_string(),
    }
}

/// Merge the settings of several hold sources (given in rule-name order)
/// toward the stricter; `Err` when the merged hold could never be granted.
fn merge_holds(settings: &[&HoldSettings]) -> Result<HoldSettings, String> {
    let mut merged = HoldSettings {
        channel: settings.iter().find_map(|h| h.channel.clone()),
        approvers: Vec::new(),
        quorum: settings.iter().map(|h| h.quorum).max().unwrap_or(1),
        timeout: settings
            .iter()
            .map(|h| h.timeout)
            .min()
            .unwrap_or(DEFAULT_HOLD_TIMEOUT),
    };
    let mut named = settings.iter().filter(|h| !h.approvers.is_empty());
    if let Some(first) = named.next() {
        let mut approvers = first.approvers.clone();
        for h in named {
            approvers.retain(|a| h.approvers.contains(a));
        }
        if approvers.is_empty() {
            return Err("no approver is accepted by every one of them".to_string());
        }
        // Groups can have any number of members; only a list of individual
        // users has a countable size.
        let all_users = approvers.iter().all(|a| !a.starts_with('S'));
        if all_users && (approvers.len() as u64) < u64::from(merged.quorum) {
            return Err(format!(
                "only {} approver(s) are accepted by every one of them and the quorum is {}",
                approvers.len(),
                merged.quorum
            ));
        }
        merged.approvers = approvers;
    }
    Ok(merged)
}

/// Errors from loading rule files and test-case files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no rule files (*.toml) in this directory", path.display())]
    NoRuleFiles { path: PathBuf },
    #[error("{}:{line}:{column}: invalid TOML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}:{line}: {}{kind}", path.display(), RuleLabel(rule.as_deref()))]
    /// `kind` is boxed to keep `Result<_, Error>` small on the happy path.
    Invalid {
        path: PathBuf,
        line: usize,
        rule: Option<String>,
        kind: Box<ErrorKind>,
    },
    #[error("{}: {} problem(s):\n{}", path.display(), problems.len(), join_lines(problems))]
    Cases { path: PathBuf, problems: Vec<Error> },
}

impl Error {
    /// File the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NoRuleFiles { path }
            | Error::Syntax { path, .. }
            | Error::Invalid { path, .. }
            | Error::Cases { path, .. } => path,
        }
    }

    /// Line the error is about, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Syntax { line, .. } | Error::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

struct RuleLabel<'a>(Option<&'a str>);

impl fmt::Display for RuleLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "rule `{name}`: "),
            None => Ok(()),
        }
    }
}

fn join_lines(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Render a list of load errors one per line, for logs and `--check`.
pub fn format_errors(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with a rule file (or test-case file) entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown key `{key}` in {place}{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        key: String,
        place: &'static str,
        suggestion: Option<&'static str>,
    },
    #[error("missing key `{key}`")]
    MissingKey { key: &'static str },
    #[error("`{key}` must be {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("`{key}`: unknown action `{value}` (expected allow, log, hold or deny)")]
    UnknownAction { key: &'static str, value: String },
    #[error("unknown category `{value}` (expected one of {})", category_list())]
    UnknownCategory { value: String },
    #[error("`{key}`: bad pattern `{pattern}`: {reason}")]
    BadPattern {
        key: &'static str,
        pattern: String,
        reason: String,
    },
    #[error(
        "`{key}` is an empty list, which would match nothing; remove the key to match anything"
    )]
    EmptyList { key: &'static str },
    #[error("`timeout`: bad duration `{value}`: {reason}")]
    BadTimeout { value: String, reason: String },
    #[error("`quorum` must be at least 1")]
    QuorumZero,
    #[error("`quorum` is {quorum} but only {approvers} approver(s) are listed")]
    QuorumExceedsApprovers { quorum: i64, approvers: usize },
    #[error("`approvers`: `{value}` is not a Slack user id (U…/W…) or user-group id (S…)")]
    BadApprover { value: String },
    #[error("`approvers`: `{value}` is listed twice")]
    DuplicateApprover { value: String },
    #[error("`channel` must be a non-empty Slack channel name or id without spaces")]
    BadChannel,
    #[error("`{key}` only applies to action \"hold\", not \"{action}\"")]
    HoldSettingWithoutHold { key: String, action: Action },
    #[error("`message` only applies to action \"deny\", not \"{action}\"")]
    MessageWithoutDeny { action: Action },
    #[error("`{key}` must not be empty")]
    EmptyString { key: &'static str },
    #[error(
        "bad rule name `{name}`: use 1-64 letters, digits, `_`, `-` or `.`, starting with a letter or digit"
    )]
    BadRuleName { name: String },
    #[error("duplicate rule name, first defined at {first}")]
    DuplicateRule { first: String },
    #[error("[defaults] is already set at {first}; set it in one file only")]
    DuplicateDefaults { first: String },
    #[error("`{key}`: bad function name `{name}`: {reason}")]
    BadFunction {
        key: &'static str,
        name: String,
        reason: String,
    },
    #[error("[[setting]]: bad setting name `{name}`: {reason}")]
    BadSetting { name: String, reason: String },
    #[error("function `{name}` is already declared as {first_category} at {first}")]
    ConflictingFunction {
        name: String,
        first_category: Category,
        first: String,
    },
    #[error("{what}")]
    Shape { what: String },
}

fn category_list() -> String {
    Category::ALL
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
