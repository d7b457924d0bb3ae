//! Reading and validating rule files.
//!
//! Rule files are parsed with `toml_edit` (which keeps byte spans) and
//! walked by hand rather than through serde: serde stops at the first
//! problem, and a person fixing a rule file wants every problem, each with
//! file, line and rule name, in one go.
//!
//! # File format
//!
//! ```toml
//! [defaults]                # optional, in at most one file of the set
//! action = "hold"           # for effects no rule matches; default "hold"
//! # message = "..."         # deny message when action = "deny"
//! # channel / approvers / quorum / timeout: hold settings when action = "hold"
//!
//! [[rule]]
//! name = "hold-ddl"         # unique across all files: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
//! description = "Schema changes need a human"   # required, shown in Slack and explain
//! action = "hold"           # allow | log | hold | deny
//! # Conditions (all optional; each a string or a list; a list matches
//! # when any entry matches; all given conditions must hold for one effect):
//! categories = ["ddl"]      # transaction session read write destructive export ddl procedural privilege unknown
//! tables = ["billing.*"]    # globs over `name` or `schema.name`, see `pattern`
//! schemas = ["billing"]     # globs over the schema of any table the effect touches
//! functions = ["pg_read_file"]  # globs like tables
//! agents = ["billing-*"]    # globs over the agent name (case-sensitive)
//! application_names = ["psql"]  # globs over application_name (client-controlled!)
//! databases = ["prod"]      # globs over the database name
//! # action = "deny" only:
//! message = "..."           # text the client gets; default names the rule
//! # action = "hold" only (all optional):
//! channel = "#db-approvals" # default: the approval subsystem's channel
//! approvers = ["U012AB3CD", "S0614TZR7"]   # Slack user / user-group ids; default anyone but the owner
//! quorum = 1                # >= 1, <= number of listed users when only users are listed
//! timeout = "60s"           # h/m/s parts in order: "90s", "2m", "1m30s"; 1s..24h; default 60s
//!
//! [[function]]              # add a function to the classifier's side-effect list
//! name = "app.purge_all"    # exact name (no globs), normalised like SQL identifiers
//! category = "destructive"
//!
//! [[setting]]               # a setting whose SET / set_config is a privilege change
//! name = "app.tenant_id"    # case-insensitive; one `*` at the start or end: "rls.*"
//! ```
//!
//! Refused: unknown keys (with a suggestion), wrong types, unknown actions
//! and categories, bad globs, empty lists and strings, hold settings on a
//! rule that does not hold, `message` on a rule that does not deny, quorum
//! 0 or above the listed users, malformed approver ids, bad durations,
//! duplicate rule names across files, `[defaults]` in two files, and one
//! function declared with two categories.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml_edit::{ImDocument, Item, Table, Value};

use super::pattern::{self, ObjectPattern, SchemaPattern, TextPattern};
use super::{Action, Conditions, Defaults, Error, ErrorKind, HoldSettings, Origin, Rule, RuleSet};
use crate::classify::Category;

const TOP_KEYS: &[&str] = &["defaults", "rule", "function", "setting"];
const RULE_KEYS: &[&str] = &[
    "name",
    "description",
    "action",
    "categories",
    "tables",
    "schemas",
    "functions",
    "agents",
    "application_names",
    "databases",
    "message",
    "channel",
    "approvers",
    "quorum",
    "timeout",
];
const DEFAULTS_KEYS: &[&str] = &[
    "action",
    "message",
    "channel",
    "approvers",
    "quorum",
    "timeout",
];
const FUNCTION_KEYS: &[&str] = &["name", "category"];
const SETTING_KEYS: &[&str] = &["name"];
const HOLD_KEYS: &[&str] = &["channel", "approvers", "quorum", "timeout"];

/// Longest hold we accept: a held statement may keep a transaction (and its
/// locks) open upstream, so "wait forever" is not an option.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Resolve the configured paths into files (directories give their
/// non-hidden `*.toml` files) and read them, sorted by path.
pub(crate) fn read_sources(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, Vec<Error>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match list_dir(path) {
                Ok(found) if found.is_empty() => {
                    errors.push(Error::NoRuleFiles { path: path.clone() })
                }
                Ok(found) => files.extend(found),
                Err(source) => errors.push(Error::Io {
                    path: path.clone(),
                    source,
                }),
            },
            Ok(_) => files.push(path.clone()),
            Err(source) => errors.push(Error::Io {
                path: path.clone(),
                source,
            }),
        }
    }
    files.sort();
    files.dedup();
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push((file, text)),
            Err(source) => errors.push(Error::Io { path: file, source }),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Hidden files are editor droppings (`.#x.toml` lock links, swap
        // files); loading them would load half-written rules.
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        if std::fs::metadata(&path)?.is_file() {
            out.push(path);
        }
    }
    Ok(out)
}

/// Policy version: SHA-256 over each file's name and contents, in path
/// order, length-framed so that no two different file sets hash alike.
pub(crate) fn version_of(sources: &[(PathBuf, String)]) -> String {
    let mut sorted: Vec<&(PathBuf, String)> = sources.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (path, text) in sorted {
        let name = path.to_string_lossy();
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Parse and validate all sources into one rule set.
pub(crate) fn build(sources: &[(PathBuf, String)]) -> Result<RuleSet, Vec<Error>> {
    let mut errors = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut names: Vec<(String, Origin)> = Vec::new();
    let mut defaults: Option<Defaults> = None;
    let mut functions: Vec<(String, Category, Origin)> = Vec::new();
    let mut settings: Vec<String> = Vec::new();

    let mut sorted: Vec<&(PathBuf, String)> = sources.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, text) in sorted {
        let mut cx = Cx::new(path, text, &mut errors);
        let doc = match ImDocument::parse(text.as_str()) {
            Ok(doc) => doc,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let line = cx.line_of(offset);
                let column = text
                    .get(cx.line_starts[line - 1]..offset.min(text.len()))
                    .map_or(1, |t| t.chars().count() + 1);
                cx.errors.push(Error::Syntax {
                    path: path.clone(),
                    line,
                    column,
                    message: e.message().trim().to_string(),
                });
                continue;
            }
        };
        parse_file(
            &mut cx,
            doc.as_table(),
            &mut rules,
            &mut names,
            &mut defaults,
            &mut functions,
            &mut settings,
        );
    }

    // Names are unique across the whole set: decisions and the audit trail
    // identify rules by name alone. Checked over every named [[rule]], also
    // those with other problems, so one run reports everything.
    for (i, (name, origin)) in names.iter().enumerate() {
        if let Some((_, first)) = names[..i].iter().find(|(n, _)| n == name) {
            errors.push(Error::Invalid {
                path: origin.file.clone(),
                line: origin.line,
                rule: Some(name.clone()),
                kind: Box::new(ErrorKind::DuplicateRule {
                    first: first.to_string(),
                }),
            });
        }
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));

    if !errors.is_empty() {
        errors.sort_by(|a, b| (a.path(), a.line()).cmp(&(b.path(), b.line())));
        return Err(errors);
    }
    let mut files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
    files.sort();
    // A hold rule without its own timeout uses the [defaults] timeout, so
    // one line sets the policy-wide wait.
    let defaults = defaults.unwrap_or_default();
    for r in &mut rules {
        if let Some(h) = r.hold.as_mut()
            && r.inherits_timeout
        {
            h.timeout = defaults.hold.timeout;
        }
    }
    Ok(RuleSet {
        rules,
        defaults,
        functions: functions.into_iter().map(|(n, c, _)| (n, c)).collect(),
        settings,
        files,
        version: version_of(sources),
    })
}

struct Cx<'a> {
    path: &'a Path,
    line_starts: Vec<usize>,
    errors: &'a mut Vec<Error>,
}

impl<'a> Cx<'a> {
    fn new(path: &'a Path, text: &str, errors: &'a mut Vec<Error>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Cx {
            path,
            line_starts,
            errors,
        }
    }

    /// 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    fn origin(&self, span: &Option<Range<usize>>) -> Origin {
        Origin {
            file: self.path.to_path_buf(),
            line: span.as_ref().map_or(1, |s| self.line_of(s.start)),
        }
    }

    fn push(&mut self, span: &Option<Range<usize>>, rule: Option<&str>, kind: ErrorKind) {
        let line = span.as_ref().map_or(1, |s| self.line_of(s.start));
        self.errors.push(Error::Invalid {
            path: self.path.to_path_buf(),
            line,
            rule: rule.map(str::to_string),
            kind: Box::new(kind),
        });
    }
}

fn parse_file(
    cx: &mut Cx,
    root: &Table,
    rules: &mut Vec<Rule>,
    names: &mut Vec<(String, Origin)>,
    defaults: &mut Option<Defaults>,
    functions: &mut Vec<(String, Category, Origin)>,
    settings: &mut Vec<String>,
) {
    let mut top = Section::new(cx, root, None);
    top.check_keys(TOP_KEYS, "the top level of a rule file");
    let cx = top.cx;

    if let Some((key_span, item)) = entry(root, "defaults") {
        match item.as_table() {
            Some(t) => {
                let mut sec = Section::new(cx, t, None);
                if let Some(d) = parse_defaults(&mut sec) {
                    match defaults {
                        Some(first) => {
                            let first = first
                                .origin
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default();
                            cx.push(&t.span(), None, ErrorKind::DuplicateDefaults { first });
                        }
                        None => *defaults = Some(d),
                    }
                }
            }
            None => cx.push(
                &key_span,
                None,
                shape("`defaults` must be a table: write [defaults]"),
            ),
        }
    }

    if let Some((key_span, item)) = entry(root, "rule") {
        match item.as_array_of_tables() {
            Some(array) => {
                for t in array.iter() {
                    let name = t.get("name").and_then(Item::as_str).map(str::to_string);
                    if let Some(n) = &name {
                        names.push((n.clone(), cx.origin(&t.span())));
                    }
                    let mut sec = Section::new(cx, t, name);
                    if let Some(rule) = parse_rule(&mut sec) {
                        rules.push(rule);
                    }
                }
            }
            None => cx.push(
                &key_span,
                None,
                shape("`rule` must be a list of tables: write [[rule]]"),
            ),
        }
    }

    if let Some((key_span, item)) = entry(root, "function") {
        match item.as_array_of_tables() {
            Some(array) => {
                for t in array.iter() {
                    let mut sec = Section::new(cx, t, None);
                    if let Some((name, category, origin)) = parse_function(&mut sec) {
                        match functions.iter().find(|(n, _, _)| *n == name) {
                            Some((_, c, _)) if *c == category => {}
                            Some((_, c, first)) => cx.push(
                                &t.span(),
                                None,
                                ErrorKind::ConflictingFunction {
                                    name,
                                    first_category: *c,
                                    first: first.to_string(),
                                },
                            ),
                            None => functions.push((name, category, origin)),
                        }
                    }
                }
            }
            None => cx.push(
                &key_span,
                None,
                shape("`function` must be a list of tables: write [[function]]"),
            ),
        }
    }

    if let Some((key_span, item)) = entry(root, "setting") {
        match item.as_array_of_tables() {
            Some(array) => {
                for t in array.iter() {
                    let mut sec = Section::new(cx, t, None);
                    if let Some(name) = parse_setting(&mut sec)
                        && !settings.contains(&name)
                    {
                        settings.push(name);
                    }
                }
            }
            None => cx.push(
                &key_span,
                None,
                shape("`setting` must be a list of tables: write [[setting]]"),
            ),
        }
    }
}

fn shape(what: &str) -> ErrorKind {
    ErrorKind::Shape {
        what: what.to_string(),
    }
}

/// A key's item and the span to blame for it (the value, else the key).
fn entry<'t>(t: &'t Table, key: &str) -> Option<(Option<Range<usize>>, &'t Item)> {
    let (k, item) = t.get_key_value(key)?;
    Some((item.span().or_else(|| k.span()), item))
}

/// One table being validated ([defaults], one [[rule]], one [[function]]),
/// with the rule name for error messages.
struct Section<'c, 'a, 't> {
    cx: &'c mut Cx<'a>,
    table: &'t Table,
    rule: Option<String>,
    header: Option<Range<usize>>,
    errors_before: usize,
}

impl<'c, 'a, 't> Section<'c, 'a, 't> {
    fn new(cx: &'c mut Cx<'a>, table: &'t Table, rule: Option<String>) -> Self {
        let errors_before = cx.errors.len();
        Section {
            cx,
            table,
            rule,
            header: table.span(),
            errors_before,
        }
    }

    fn failed(&self) -> bool {
        self.cx.errors.len() > self.errors_before
    }

    fn err(&mut self, span: &Option<Range<usize>>, kind: ErrorKind) {
        let span = span.clone().or_else(|| self.header.clone());
        self.cx.push(&span, self.rule.as_deref(), kind);
    }

    fn check_keys(&mut self, allowed: &'static [&'static str], place: &'static str) {
        for (key, _) in self.table.iter() {
            if !allowed.contains(&key) {
                let span = self.table.key(key).and_then(|k| k.span());
                let suggestion = suggest(key, allowed);
                self.err(
                    &span,
                    ErrorKind::UnknownKey {
                        key: key.to_string(),
                        place,
                        suggestion,
                    },
                );
            }
        }
    }

    fn present(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.key(key).and_then(|k| k.span())
    }

    fn string(
        &mut self,
        key: &'static str,
        required: bool,
    ) -> Option<(String, Option<Range<usize>>)> {
        let Some((span, item)) = entry(self.table, key) else {
            if required {
                self.err(&None, ErrorKind::MissingKey { key });
            }
            return None;
        };
        match item.as_str() {
            Some("") => {
                self.err(&span, ErrorKind::EmptyString { key });
                None
            }
            Some(s) => Some((s.to_string(), span)),
            None => {
                self.err(
                    &span,
                    ErrorKind::WrongType {
                        key: key.to_string(),
                        expected: "a string",
                    },
                );
                None
            }
        }
    }

    /// A string or a non-empty list of strings.
    fn strings(&mut self, key: &'static str) -> Option<Vec<(String, Option<Range<usize>>)>> {
        let (span, item) = entry(self.table, key)?;
        let wrong = |s: &mut Self| {
            s.err(
                &span,
                ErrorKind::WrongType {
                    key: key.to_string(),
                    expected: "a string or a list of strings",
                },
            );
            None
        };
        match item.as_value() {
            Some(Value::String(s)) => Some(vec![(s.value().clone(), span.clone())]),
            Some(Value::Array(array)) => {
                if array.is_empty() {
                    self.err(&span, ErrorKind::EmptyList { key });
                    return None;
                }
                let mut out = Vec::with_capacity(array.len());
                let mut ok = true;
                for v in array.iter() {
                    match v.as_str() {
                        Some(s) => out.push((s.to_string(), v.span().or_else(|| span.clone()))),
                        None => {
                            ok = false;
                            self.err(
                                &v.span().or_else(|| span.clone()),
                                ErrorKind::WrongType {
                                    key: key.to_string(),
                                    expected: "a list of strings",
                                },
                            );
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => wrong(self),
        }
    }

    fn action(&mut self, required: bool) -> Option<Action> {
        let (value, span) = self.string("action", required)?;
        let action = Action::parse(&value);
        if action.is_none() {
            self.err(
                &span,
                ErrorKind::UnknownAction {
                    key: "action",
                    value,
                },
            );
        }
        action
    }

    fn categories(&mut self, key: &'static str) -> Option<Vec<Category>> {
        let list = self.strings(key)?;
        let mut out = Vec::with_capacity(list.len());
        for (value, span) in list {
            match Category::parse(&value) {
                Some(c) if !out.contains(&c) => out.push(c),
                Some(_) => {}
                None => self.err(&span, ErrorKind::UnknownCategory { value }),
            }
        }
        Some(out)
    }

    fn patterns<P>(
        &mut self,
        key: &'static str,
        compile: impl Fn(&str) -> Result<P, String>,
    ) -> Option<Vec<P>> {
        let list = self.strings(key)?;
        let mut out = Vec::with_capacity(list.len());
        for (value, span) in list {
            match compile(&value) {
                Ok(p) => out.push(p),
                Err(reason) => self.err(
                    &span,
                    ErrorKind::BadPattern {
                        key,
                        pattern: value,
                        reason,
                    },
                ),
            }
        }
        Some(out)
    }

    /// Deny message and hold settings, checked against the action they
    /// would apply to. Returns the hold settings for `hold`.
    fn action_settings(&mut self, action: Action) -> (Option<String>, Option<HoldSettings>) {
        let message = match self.string("message", false) {
            Some((_, span)) if action != Action::Deny => {
                self.err(&span, ErrorKind::MessageWithoutDeny { action });
                None
            }
            other => other.map(|(m, _)| m),
        };
        if action != Action::Hold {
            for key in HOLD_KEYS {
                if self.present(key) {
                    let span = self.key_span(key);
                    self.err(
                        &span,
                        ErrorKind::HoldSettingWithoutHold {
                            key: key.to_string(),
                            action,
                        },
                    );
                }
            }
            return (message, None);
        }
        (message, Some(self.hold_settings()))
    }

    fn hold_settings(&mut self) -> HoldSettings {
        let mut hold = HoldSettings::default();
        if let Some((channel, span)) = self.string("channel", false) {
            if channel.chars().any(char::is_whitespace) {
                self.err(&span, ErrorKind::BadChannel);
            }
            hold.channel = Some(channel);
        }
        if let Some(list) = self.strings("approvers") {
            for (value, span) in list {
                if !is_slack_id(&value) {
                    self.err(&span, ErrorKind::BadApprover { value });
                } else if hold.approvers.contains(&value) {
                    self.err(&span, ErrorKind::DuplicateApprover { value });
                } else {
                    hold.approvers.push(value);
                }
            }
        }
        if let Some((span, item)) = entry(self.table, "quorum") {
            match item.as_integer() {
                Some(q) if q < 1 => self.err(&span, ErrorKind::QuorumZero),
                Some(q) => {
                    let users = hold.approvers.iter().all(|a| !a.starts_with('S'));
                    if users && !hold.approvers.is_empty() && q as u64 > hold.approvers.len() as u64
                    {
                        self.err(
                            &span,
                            ErrorKind::QuorumExceedsApprovers {
                                quorum: q,
                                approvers: hold.approvers.len(),
                            },
                        );
                    }
                    hold.quorum = u32::try_from(q).unwrap_or(u32::MAX);
                }
                None => self.err(
                    &span,
                    ErrorKind::WrongType {
                        key: "quorum".into(),
                        expected: "an integer (number of approvals)",
                    },
                ),
            }
        }
        if let Some((span, item)) = entry(self.table, "timeout") {
            match item.as_str() {
                Some(s) => match parse_duration(s) {
                    Ok(d) => hold.timeout = d,
                    Err(reason) => self.err(
                        &span,
                        ErrorKind::BadTimeout {
                            value: s.to_string(),
                            reason,
                        },
                    ),
                },
                None => self.err(
                    &span,
                    ErrorKind::WrongType {
                        key: "timeout".into(),
                        expected: "a duration string such as \"90s\" or \"2m\"",
                    },
                ),
            }
        }
        hold
    }
}

fn parse_defaults(sec: &mut Section) -> Option<Defaults> {
    sec.check_keys(DEFAULTS_KEYS, "[defaults]");
    let action = sec.action(false).unwrap_or(Action::Hold);
    let (message, hold) = sec.action_settings(action);
    let origin = sec.cx.origin(&sec.header);
    (!sec.failed()).then(|| Defaults {
        action,
        message,
        hold: hold.unwrap_or_default(),
        origin: Some(origin),
    })
}

fn parse_rule(sec: &mut Section) -> Option<Rule> {
    sec.check_keys(RULE_KEYS, "[[rule]]");
    let name = sec.string("name", true).map(|(name, span)| {
        if !valid_rule_name(&name) {
            sec.err(&span, ErrorKind::BadRuleName { name: name.clone() });
        }
        name
    });
    let description = sec.string("description", true);
    let action = sec.action(true);
    // Restricting rules match names case-insensitively (see `pattern`).
    let ci = action != Some(Action::Allow);
    let when = Conditions {
        categories: sec.categories("categories"),
        tables: sec.patterns("tables", |p| ObjectPattern::new(p, ci)),
        schemas: sec.patterns("schemas", |p| SchemaPattern::new(p, ci)),
        functions: sec.patterns("functions", |p| ObjectPattern::new(p, ci)),
        agents: sec.patterns("agents", TextPattern::new),
        application_names: sec.patterns("application_names", TextPattern::new),
        databases: sec.patterns("databases", TextPattern::new),
    };
    let (message, hold) = match action {
        Some(a) => sec.action_settings(a),
        None => (None, None),
    };
    let inherits_timeout = entry(sec.table, "timeout").is_none();
    if sec.failed() {
        return None;
    }
    Some(Rule {
        inherits_timeout,
        name: name?,
        description: description?.0,
        action: action?,
        origin: sec.cx.origin(&sec.header),
        when,
        message,
        hold,
    })
}

fn parse_function(sec: &mut Section) -> Option<(String, Category, Origin)> {
    sec.check_keys(FUNCTION_KEYS, "[[function]]");
    let name = sec.string("name", true).and_then(|(raw, span)| {
        let checked = if raw.contains(['*', '?', '[', '{']) {
            Err("globs are not allowed here; name one function".to_string())
        } else {
            pattern::normalize_name(&raw)
        };
        match checked {
            Ok(n) => Some(n),
            Err(reason) => {
                sec.err(
                    &span,
                    ErrorKind::BadFunction {
                        key: "name",
                        name: raw,
                        reason,
                    },
                );
                None
            }
        }
    });
    let category =
        sec.string("category", true)
            .and_then(|(value, span)| match Category::parse(&value) {
                Some(c) => Some(c),
                None => {
                    sec.err(&span, ErrorKind::UnknownCategory { value });
                    None
                }
            });
    if sec.failed() {
        return None;
    }
    Some((name?, category?, sec.cx.origin(&sec.header)))
}

/// A `[[setting]]` name: lowercased (Postgres ignores the case of setting
/// names), dotted parts of letters, digits, `_` and `$`, with at most one
/// `*` at its start or end (the classifier's glob).
fn parse_setting(sec: &mut Section) -> Option<String> {
    sec.check_keys(SETTING_KEYS, "[[setting]]");
    let name = sec.string("name", true).and_then(|(raw, span)| {
        let stars = raw.matches('*').count();
        // The star stands for at least one character of a part: `app.*`.
        let parts = raw.replace('*', "x");
        let reason = if raw == "*" {
            Some("name a setting (`app.tenant_id`) or a family of them (`app.*`)")
        } else if stars > 1 || (stars == 1 && !raw.starts_with('*') && !raw.ends_with('*')) {
            Some("one `*` at most, at the start or the end")
        } else if parts.split('.').any(str::is_empty) {
            Some("every dotted part needs a name (`app.tenant_id`)")
        } else if !parts
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '.'))
        {
            Some("setting names are letters, digits, `_`, `$` and `.`")
        } else {
            None
        };
        match reason {
            None => Some(raw.to_ascii_lowercase()),
            Some(reason) => {
                sec.err(
                    &span,
                    ErrorKind::BadSetting {
                        name: raw,
                        reason: reason.to_string(),
                    },
                );
                None
            }
        }
    });
    if sec.failed() {
        return None;
    }
    name
}

fn valid_rule_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Slack member ids start with U (or W on Enterprise Grid), user-group ids
/// with S; the rest is upper-case alphanumeric. Display names ("@alice")
/// are refused: they are not unique and can be changed by their owner.
fn is_slack_id(s: &str) -> bool {
    s.len() >= 3
        && s.starts_with(['U', 'W', 'S'])
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Parse a duration written as h/m/s parts in descending order without
/// spaces: `"90s"`, `"2m"`, `"1h30m"`, `"1m30s"`. Bounded to 1 s..=24 h,
/// the range that makes sense for a human approval.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(s)?;
    if d < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    if d > MAX_TIMEOUT {
        return Err("must be at most 24h".into());
    }
    Ok(d)
}

/// The allowed key closest to a misspelt one, if any is close.
fn suggest(key: &str, allowed: &[&'static str]) -> Option<&'static str> {
    // Close in spelling, or sharing all but the last two characters
    // (`category` -> `categories`).
    let prefix = |a: &str| {
        key.chars()
            .zip(a.chars())
            .take_while(|(x, y)| x == y)
            .count()
    };
    allowed
        .iter()
        .map(|&a| (a, edit_distance(key, a)))
        .filter(|&(a, d)| d <= 2 || (prefix(a) >= 4 && prefix(a) + 2 >= key.len().min(a.len())))
        .min_by_key(|&(_, d)| d)
        .map(|(a, _)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
