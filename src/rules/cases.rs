//! `test-rules`: run example statements against a rule set and compare
//! the decisions with what the rule author expects.
//!
//! Case file format (`fixtures/rules/*-cases.toml`):
//!
//! ```toml
//! [[case]]
//! name = "drop needs approval"   # optional, for the report
//! sql = "DROP TABLE orders"
//! agent = "billing-bot"          # optional, default ""
//! application_name = "psql"      # optional, default ""
//! database = "app"               # optional, default ""
//! expect = "hold"                # allow | log | hold | deny
//! expect_rules = ["hold-ddl"]    # optional: exactly these rules decided
//! ```
//!
//! The classifier is passed in as a function, so this module stays
//! independent of `classify` and tests can supply hand-made results.

use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Value};

use super::{Action, Decision, Error, ErrorKind, RuleSet, Subject};
use crate::classify::Classification;

const CASE_KEYS: &[&str] = &[
    "name",
    "sql",
    "agent",
    "application_name",
    "database",
    "expect",
    "expect_rules",
];

/// One case as written in the file.
#[derive(Debug, Clone)]
struct Case {
    name: Option<String>,
    line: usize,
    sql: String,
    agent: String,
    application_name: String,
    database: String,
    expect: Action,
    expect_rules: Option<Vec<String>>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub name: Option<String>,
    /// Line of the `[[case]]` header.
    pub line: usize,
    pub sql: String,
    pub expected: Action,
    /// Sorted, when the case gives `expect_rules`.
    pub expected_rules: Option<Vec<String>>,
    pub actual: Decision,
    pub passed: bool,
}

/// All case results of one file; `Display` lists pass/fail per case and a
/// summary line.
#[derive(Debug, Clone)]
pub struct CasesReport {
    pub path: PathBuf,
    pub version: String,
    pub cases: Vec<CaseOutcome>,
}

impl CasesReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn all_passed(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for CasesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let label = c
                .name
                .as_deref()
                .map(|n| format!("{n}: "))
                .unwrap_or_default();
            let sql: String = c.sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let mark = if c.passed { "PASS" } else { "FAIL" };
            writeln!(f, "{mark} {}:{} {label}{sql}", self.path.display(), c.line)?;
            let actual = describe(c.actual.action, Some(&c.actual.rules));
            if c.passed {
                writeln!(f, "       -> {actual}")?;
            } else {
                let expected = describe(c.expected, c.expected_rules.as_deref());
                writeln!(f, "       expected {expected}")?;
                writeln!(f, "       actual   {actual}")?;
                if let Some(m) = &c.actual.message {
                    writeln!(f, "       message  {m}")?;
                }
            }
        }
        writeln!(
            f,
            "{} case(s): {} passed, {} failed (policy version {})",
            self.cases.len(),
            self.passed(),
            self.failed(),
            self.version
        )
    }
}

fn describe(action: Action, rules: Option<&[String]>) -> String {
    match rules {
        Some(r) => format!("{action} by [{}]", r.join(", ")),
        None => action.to_string(),
    }
}

/// Run every case of the file at `path` against `rules`, classifying each
/// statement with `classify`.
///
/// # Errors
///
/// The file cannot be read or is malformed (all problems, with lines).
/// Failing cases are not errors: they are in the report.
pub fn run_cases(
    path: &Path,
    rules: &RuleSet,
    classify: &dyn Fn(&str) -> Classification,
) -> Result<CasesReport, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let cases = parse_cases(path, &text)?;
    let outcomes = cases
        .into_iter()
        .map(|case| {
            let subject = Subject {
                agent: &case.agent,
                application_name: &case.application_name,
                database: &case.database,
            };
            let actual = rules.evaluate(&classify(&case.sql), &subject);
            let expected_rules = case.expect_rules.map(|mut r| {
                r.sort();
                r
            });
            // `Decision::rules` is sorted except that the default comes
            // last; compare as sorted sets.
            let mut actual_rules = actual.rules.to_vec();
            actual_rules.sort();
            let passed = actual.action == case.expect
                && expected_rules.as_ref().is_none_or(|r| *r == actual_rules);
            CaseOutcome {
                name: case.name,
                line: case.line,
                sql: case.sql,
                expected: case.expect,
                expected_rules,
                actual,
                passed,
            }
        })
        .collect();
    Ok(CasesReport {
        path: path.to_path_buf(),
        version: rules.version().to_string(),
        cases: outcomes,
    })
}

fn parse_cases(path: &Path, text: &str) -> Result<Vec<Case>, Error> {
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map_or(1, |s| line_starts.partition_point(|&l| l <= s.start).max(1))
    };
    let doc = ImDocument::parse(text).map_err(|e| {
        let line = line_of(e.span());
        Error::Syntax {
            path: path.to_path_buf(),
            line,
            column: 1,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut problems = Vec::new();
    let mut problem = |span: Option<std::ops::Range<usize>>, kind: ErrorKind| {
        problems.push(Error::Invalid {
            path: path.to_path_buf(),
            line: line_of(span),
            rule: None,
            kind: Box::new(kind),
        });
    };
    let root = doc.as_table();
    for (key, _) in root.iter() {
        if key != "case" {
            let span = root.key(key).and_then(|k| k.span());
            problem(
                span,
                ErrorKind::UnknownKey {
                    key: key.to_string(),
                    place: "a case file",
                    suggestion: Some("case"),
                },
            );
        }
    }
    let mut cases = Vec::new();
    match root.get("case").map(|i| i.as_array_of_tables()) {
        None => problem(
            Some(0..0),
            ErrorKind::Shape {
                what: "no [[case]] entries".into(),
            },
        ),
        Some(None) => problem(
            root.key("case").and_then(|k| k.span()),
            ErrorKind::Shape {
                what: "`case` must be a list of tables: write [[case]]".into(),
            },
        ),
        Some(Some(array)) => {
            for t in array.iter() {
                let header = t.span();
                let mut ok = true;
                for (key, _) in t.iter() {
                    if !CASE_KEYS.contains(&key) {
                        ok = false;
                        problem(
                            t.key(key).and_then(|k| k.span()),
                            ErrorKind::UnknownKey {
                                key: key.to_string(),
                                place: "[[case]]",
                                suggestion: None,
                            },
                        );
                    }
                }
                let mut string = |key: &'static str, required: bool| -> Option<String> {
                    match t.get(key) {
                        None if required => {
                            ok = false;
                            problem(header.clone(), ErrorKind::MissingKey { key });
                            None
                        }
                        None => None,
                        Some(item) => match item.as_str() {
                            Some(s) => Some(s.to_string()),
                            None => {
                                ok = false;
                                problem(
                                    item.span(),
                                    ErrorKind::WrongType {
                                        key: key.into(),
                                        expected: "a string",
                                    },
                                );
                                None
                            }
                        },
                    }
                };
                let name = string("name", false);
                let sql = string("sql", true);
                let agent = string("agent", false).unwrap_or_default();
                let application_name = string("application_name", false).unwrap_or_default();
                let database = string("database", false).unwrap_or_default();
                let expect_raw = string("expect", true);
                let expect = expect_raw.as_deref().and_then(|v| {
                    let a = Action::parse(v);
                    if a.is_none() {
                        ok = false;
                        problem(
                            t.get("expect").and_then(Item::span),
                            ErrorKind::UnknownAction {
                                key: "expect",
                                value: v.to_string(),
                            },
                        );
                    }
                    a
                });
                let expect_rules = match t.get("expect_rules") {
                    None => None,
                    Some(item) => match item.as_array() {
                        Some(a) if a.iter().all(|v| v.as_str().is_some()) => Some(
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        ),
                        _ => {
                            ok = false;
                            problem(
                                item.span(),
                                ErrorKind::WrongType {
                                    key: "expect_rules".into(),
                                    expected: "a list of rule names",
                                },
                            );
                            None
                        }
                    },
                };
                if let (true, Some(sql), Some(expect)) = (ok, sql, expect) {
                    cases.push(Case {
                        name,
                        line: line_of(header),
                        sql,
                        agent,
                        application_name,
                        database,
                        expect,
                        expect_rules,
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(Error::Cases {
            path: path.to_path_buf(),
            problems,
        })
    }
}
