//! Tests of the rules engine. Classifications are built by hand (or, for the
//! shipped case files, by a small keyword classifier below): `rules` must be
//! testable without `classify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::classify::{Category, Classification, Effect, StatementClass};

// ----------------------------------------------------------------- helpers

fn eff(category: Category, tables: &[&str], functions: &[&str]) -> Effect {
    Effect {
        category,
        tables: tables.iter().map(|s| s.to_string()).collect(),
        functions: functions.iter().map(|s| s.to_string()).collect(),
        why: format!("test {category}"),
    }
}

/// One statement per inner vec.
fn class(statements: Vec<Vec<Effect>>) -> Classification {
    Classification {
        statements: statements
            .into_iter()
            .map(|effects| StatementClass {
                span: (0, 0),
                effects: effects.into(),
                prepared: None,
            })
            .collect(),
    }
}

fn one(category: Category, tables: &[&str]) -> Classification {
    class(vec![vec![eff(category, tables, &[])]])
}

const AGENT: Subject<'static> = Subject {
    agent: "billing-bot",
    application_name: "psql",
    database: "app",
};

fn set(text: &str) -> RuleSet {
    match RuleSet::from_sources(&[(PathBuf::from("test.toml"), text.to_string())]) {
        Ok(s) => s,
        Err(errs) => panic!("rules did not load:\n{}", format_errors(&errs)),
    }
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    match RuleSet::from_sources(&sources) {
        Ok(_) => panic!("rules loaded but should not have"),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn rule(name: &str, action: &str, extra: &str) -> String {
    format!("[[rule]]\nname = \"{name}\"\ndescription = \"d\"\naction = \"{action}\"\n{extra}\n")
}

fn repo_path(rel: &str) -> PathBuf {
    // The crate root; helpers' scratch crates include this module from the
    // repository, so fall back to it when the crate root lacks the file.
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if here.exists() {
        here
    } else {
        Path::new("/work/main").join(rel)
    }
}

/// A temporary directory under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "airlock-rules-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        // Write-then-rename, like editors do, so a reader never sees half.
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// -------------------------------------------------------------- evaluation

#[test]
fn decision_does_not_depend_on_rule_order_or_file_split() {
    let blocks = [
        rule("allow-reads", "allow", "categories = [\"read\", \"write\"]"),
        rule("log-orders", "log", "tables = [\"orders\"]"),
        rule("hold-ddl", "hold", "categories = [\"ddl\"]\nquorum = 2"),
        rule(
            "hold-billing",
            "hold",
            "schemas = [\"billing\"]\ntimeout = \"30s\"",
        ),
        rule(
            "deny-privilege",
            "deny",
            "categories = [\"privilege\"]\nmessage = \"no\"",
        ),
    ];
    let inputs = [
        one(Category::Read, &["orders"]),
        one(Category::Read, &["billing.invoices"]),
        one(Category::Ddl, &["billing.invoices"]),
        one(Category::Write, &["customers"]),
        class(vec![
            vec![eff(Category::Read, &["orders"], &[])],
            vec![eff(Category::Privilege, &[], &[])],
        ]),
        one(Category::Export, &[]),
    ];
    let reference = set(&blocks.concat());
    let expected: Vec<Decision> = inputs
        .iter()
        .map(|c| reference.evaluate(c, &AGENT))
        .collect();
    // Every rotation and its reverse, as one file and split over two files.
    for shift in 0..blocks.len() {
        let mut order: Vec<&String> = blocks
            .iter()
            .cycle()
            .skip(shift)
            .take(blocks.len())
            .collect();
        for reversed in [false, true] {
            if reversed {
                order.reverse();
            }
            let text: String = order.iter().map(|s| s.as_str()).collect();
            let one_file = set(&text);
            let (a, b) = order.split_at(shift.min(order.len()));
            let two_files = RuleSet::from_sources(&[
                (
                    PathBuf::from("z.toml"),
                    a.iter().map(|s| s.as_str()).collect(),
                ),
                (
                    PathBuf::from("a.toml"),
                    b.iter().map(|s| s.as_str()).collect(),
                ),
            ])
            .unwrap();
            for (c, want) in inputs.iter().zip(&expected) {
                assert_eq!(
                    &one_file.evaluate(c, &AGENT),
                    want,
                    "order {shift} reversed={reversed}"
                );
                assert_eq!(
                    &two_files.evaluate(c, &AGENT),
                    want,
                    "split {shift} reversed={reversed}"
                );
            }
        }
    }
    // And the reference decisions are the intended ones, not just stable.
    let actions: Vec<Action> = expected.iter().map(|d| d.action).collect();
    use Action::*;
    assert_eq!(actions, [Log, Hold, Hold, Allow, Deny, Hold]);
}

#[test]
fn most_restrictive_action_wins_and_names_its_rules() {
    let s = set(&[
        rule("a-allow", "allow", "tables = [\"orders\"]"),
        rule("b-log", "log", "tables = [\"orders\"]"),
        rule("c-hold", "hold", "categories = [\"destructive\"]"),
        rule(
            "d-hold",
            "hold",
            "tables = [\"orders\"]\ncategories = [\"destructive\", \"ddl\"]",
        ),
        rule("e-deny", "deny", "categories = [\"privilege\"]"),
    ]
    .concat());
    let d = s.evaluate(&one(Category::Read, &["orders"]), &AGENT);
    assert_eq!(
        (d.action, d.rules.to_vec()),
        (Action::Log, vec!["b-log".to_string()])
    );
    assert_eq!((d.message, d.hold), (None, None));

    let d = s.evaluate(&one(Category::Destructive, &["public.orders"]), &AGENT);
    assert_eq!(d.action, Action::Hold);
    assert_eq!(*d.rules, ["c-hold", "d-hold"]);
    assert_eq!(d.hold.as_deref(), Some(&HoldSettings::default()));

    // A deny anywhere in the message beats the holds.
    let c = class(vec![
        vec![eff(Category::Destructive, &["orders"], &[])],
        vec![eff(Category::Privilege, &[], &[])],
    ]);
    let d = s.evaluate(&c, &AGENT);
    assert_eq!(
        (d.action, d.rules.to_vec()),
        (Action::Deny, vec!["e-deny".to_string()])
    );
    assert_eq!(
        d.message.as_deref(),
        Some("statement denied by policy rule e-deny")
    );
}

#[test]
fn each_effect_needs_its_own_rule_else_default_applies() {
    let s = set(&rule("allow-reads", "allow", "categories = [\"read\"]"));
    // `SELECT 1; DROP TABLE t`: the read is allowed, the DROP is covered by
    // nothing, so the built-in default (hold) decides.
    let c = class(vec![
        vec![eff(Category::Read, &[], &[])],
        vec![eff(Category::Ddl, &["t"], &[])],
    ]);
    let d = s.evaluate(&c, &AGENT);
    assert_eq!(d.action, Action::Hold);
    assert_eq!(*d.rules, [DEFAULT_RULE]);
    assert_eq!(d.hold.unwrap().timeout, Duration::from_secs(60));

    // Only the read: allowed by the rule.
    let d = s.evaluate(&one(Category::Read, &[]), &AGENT);
    assert_eq!(
        (d.action, d.rules.to_vec()),
        (Action::Allow, vec!["allow-reads".to_string()])
    );
}

#[test]
fn configured_default_action_and_its_settings_apply() {
    let s = set(&format!(
        "[defaults]\naction = \"deny\"\nmessage = \"not covered by policy\"\n{}",
        rule("allow-reads", "allow", "categories = [\"read\"]")
    ));
    let d = s.evaluate(&one(Category::Write, &["t"]), &AGENT);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(*d.rules, [DEFAULT_RULE]);
    assert_eq!(d.message.as_deref(), Some("not covered by policy"));
    assert_eq!(s.default_action(), Action::Deny);

    let s =
        set("[defaults]\naction = \"hold\"\nquorum = 2\ntimeout = \"2m\"\nchannel = \"#ops\"\n");
    let hold = s.evaluate(&one(Category::Read, &[]), &AGENT).hold.unwrap();
    assert_eq!(hold.quorum, 2);
    assert_eq!(hold.timeout, Duration::from_secs(120));
    assert_eq!(hold.channel.as_deref(), Some("#ops"));
}

#[test]
fn unknown_is_never_allowed_implicitly() {
    // A catch-all allow does not cover unknown...
    let s = set(&rule("allow-all", "allow", ""));
    let d = s.evaluate(&one(Category::Unknown, &[]), &AGENT);
    assert_eq!(
        (d.action, d.rules.to_vec()),
        (Action::Hold, vec![DEFAULT_RULE.to_string()])
    );
    // ...nor does a log rule, nor a default of allow.
    let s = set(&format!(
        "[defaults]\naction = \"allow\"\n{}",
        rule("log-all", "log", "")
    ));
    let d = s.evaluate(&one(Category::Unknown, &[]), &AGENT);
    assert_eq!(
        (d.action, d.rules.to_vec()),
        (Action::Hold, vec![DEFAULT_RULE.to_string()])
    );
    // The same default still allows known categories.
    let d = set("[defaults]\naction = \"allow\"\n").evaluate(&one(Category::Write, &[]), &AGENT);
    assert_eq!(d.action, Action::Allow);
    // Naming `unknown` explicitly allows it.
    let s = set(&rule(
        "allow-unknown",
        "allow",
        "categories = [\"unknown\"]",
    ));
    assert_eq!(
        s.evaluate(&one(Category::Unknown, &[]), &AGENT).action,
        Action::Allow
    );
    // Restricting rules without a category list do cover unknown.
    let s = set(&rule("deny-all", "deny", ""));
    assert_eq!(
        s.evaluate(&one(Category::Unknown, &[]), &AGENT).action,
        Action::Deny
    );
}

#[test]
fn statements_without_effects_count_as_unknown_and_empty_messages_as_session() {
    let s = set(&rule("allow-all", "allow", ""));
    let no_effects = class(vec![vec![]]);
    assert_eq!(s.evaluate(&no_effects, &AGENT).action, Action::Hold);
    let empty = class(vec![]);
    assert_eq!(s.evaluate(&empty, &AGENT).action, Action::Allow);
}

#[test]
fn table_globs_follow_documented_schema_semantics() {
    let s = set(&[
        rule("hold-public-orders", "hold", "tables = [\"public.orders\"]"),
        rule("hold-billing", "hold", "tables = [\"billing.*\"]"),
        rule("hold-secrets", "hold", "tables = [\"*secret*\"]"),
        rule("allow-rest", "allow", ""),
    ]
    .concat());
    let held = |t: &str| {
        s.evaluate(&one(Category::Read, &[t]), &AGENT)
            .rules
            .to_vec()
    };
    assert_eq!(held("orders"), ["hold-public-orders"]);
    assert_eq!(held("public.orders"), ["hold-public-orders"]);
    assert_eq!(held("archive.orders"), ["allow-rest"]);
    assert_eq!(held("billing.invoices"), ["hold-billing"]);
    assert_eq!(held("invoices"), ["allow-rest"]);
    assert_eq!(held("app.api_secrets"), ["hold-secrets"]);
    assert_eq!(held("secret"), ["hold-secrets"]);
    // Restricting rules ignore case: a quoted upper-case name is caught.
    assert_eq!(held("Top_SECRET"), ["hold-secrets"]);
    // Any table of the effect is enough.
    let c = class(vec![vec![eff(
        Category::Read,
        &["orders_archive", "billing.x"],
        &[],
    )]]);
    assert_eq!(*s.evaluate(&c, &AGENT).rules, ["hold-billing"]);
}

#[test]
fn allow_rules_match_names_exactly() {
    let s = set(&rule("allow-orders", "allow", "tables = [\"orders\"]"));
    assert_eq!(
        s.evaluate(&one(Category::Write, &["orders"]), &AGENT)
            .action,
        Action::Allow
    );
    // `"ORDERS"` is a different table in Postgres.
    assert_eq!(
        s.evaluate(&one(Category::Write, &["ORDERS"]), &AGENT)
            .action,
        Action::Hold
    );
    // A table condition never matches an effect without tables.
    assert_eq!(
        s.evaluate(&one(Category::Write, &[]), &AGENT).action,
        Action::Hold
    );
}

#[test]
fn function_and_subject_conditions() {
    let s = set(&[
        rule(
            "hold-file-read",
            "hold",
            "functions = [\"pg_read_file\", \"Pg_Catalog.lo_*\"]",
        ),
        rule(
            "deny-prod-bots",
            "deny",
            "agents = [\"*-bot\"]\ndatabases = [\"prod\"]\ncategories = [\"ddl\"]",
        ),
        rule(
            "log-psql",
            "log",
            "application_names = \"psql\"\ncategories = [\"read\"]",
        ),
        rule("allow-rest", "allow", "categories = [\"read\", \"ddl\"]"),
    ]
    .concat());
    let call = |f: &str| class(vec![vec![eff(Category::Read, &[], &[f])]]);
    assert_eq!(
        s.evaluate(&call("pg_catalog.pg_read_file"), &AGENT).action,
        Action::Hold
    );
    assert_eq!(
        s.evaluate(&call("pg_read_file"), &AGENT).action,
        Action::Hold
    );
    assert_eq!(
        s.evaluate(&call("pg_catalog.lo_export"), &AGENT).action,
        Action::Hold
    );
    // Qualified pattern: unqualified call counts as public.lo_export.
    assert_eq!(*s.evaluate(&call("lo_export"), &AGENT).rules, ["log-psql"]);

    let prod = Subject {
        database: "prod",
        ..AGENT
    };
    let ddl = one(Category::Ddl, &["t"]);
    assert_eq!(s.evaluate(&ddl, &prod).action, Action::Deny);
    assert_eq!(s.evaluate(&ddl, &AGENT).action, Action::Allow);
    let human = Subject {
        agent: "alice",
        ..prod
    };
    assert_eq!(s.evaluate(&ddl, &human).action, Action::Allow);
    let other_app = Subject {
        application_name: "app",
        ..AGENT
    };
    assert_eq!(
        s.evaluate(&one(Category::Read, &[]), &other_app).action,
        Action::Allow
    );
    assert_eq!(
        s.evaluate(&one(Category::Read, &[]), &AGENT).action,
        Action::Log
    );
}

#[test]
fn hold_settings_merge_toward_the_stricter() {
    let s = set(&[
        rule("h1", "hold", "tables = [\"t\"]\nquorum = 1\ntimeout = \"5m\"\napprovers = [\"UAAA\", \"UBBB\", \"SGRP\"]"),
        rule("h2", "hold", "categories = [\"ddl\"]\nchannel = \"#ddl\"\nquorum = 2\ntimeout = \"90s\"\napprovers = [\"UBBB\", \"SGRP\"]"),
        rule("h3", "hold", "categories = [\"ddl\"]\nchannel = \"#zzz\"\ntimeout = \"10m\""),
    ]
    .concat());
    let d = s.evaluate(&one(Category::Ddl, &["t"]), &AGENT);
    assert_eq!(*d.rules, ["h1", "h2", "h3"]);
    assert_eq!(
        d.hold.as_deref(),
        Some(&HoldSettings {
            channel: Some("#ddl".into()),
            approvers: vec!["UBBB".into(), "SGRP".into()],
            quorum: 2,
            timeout: Duration::from_secs(90),
        })
    );
}

#[test]
fn holds_nobody_can_grant_become_denials() {
    let disjoint = set(&[
        rule("h1", "hold", "tables = [\"t\"]\napprovers = [\"UAAA\"]"),
        rule(
            "h2",
            "hold",
            "categories = [\"ddl\"]\napprovers = [\"UBBB\"]",
        ),
    ]
    .concat());
    let d = disjoint.evaluate(&one(Category::Ddl, &["t"]), &AGENT);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(*d.rules, ["h1", "h2"]);
    assert!(
        d.message
            .unwrap()
            .contains("no approver is accepted by every one")
    );

    let too_few = set(&[
        rule(
            "h1",
            "hold",
            "tables = [\"t\"]\napprovers = [\"UAAA\", \"UBBB\"]\nquorum = 2",
        ),
        rule(
            "h2",
            "hold",
            "categories = [\"ddl\"]\napprovers = [\"UBBB\", \"UCCC\"]",
        ),
    ]
    .concat());
    let d = too_few.evaluate(&one(Category::Ddl, &["t"]), &AGENT);
    assert_eq!(d.action, Action::Deny);
    assert!(
        d.message.unwrap().contains("only 1 approver(s)"),
        "quorum 2 with one common user"
    );
    // Each alone is grantable.
    assert_eq!(
        too_few
            .evaluate(&one(Category::Read, &["t"]), &AGENT)
            .action,
        Action::Hold
    );
}

#[test]
fn deny_messages_are_collected() {
    let s = set(&[
        rule(
            "d1",
            "deny",
            "categories = [\"privilege\"]\nmessage = \"no grants\"",
        ),
        rule(
            "d2",
            "deny",
            "tables = [\"pg_authid\"]\nmessage = \"no catalog\"",
        ),
        rule(
            "d3",
            "deny",
            "tables = [\"pg_authid\"]\nmessage = \"no grants\"",
        ),
    ]
    .concat());
    let d = s.evaluate(&one(Category::Privilege, &["pg_catalog.pg_authid"]), &AGENT);
    assert_eq!(*d.rules, ["d1", "d2", "d3"]);
    assert_eq!(d.message.as_deref(), Some("no grants; no catalog"));
}

#[test]
fn extra_functions_are_normalised() {
    let s = set(
        "[[function]]\nname = \"App.Purge_All\"\ncategory = \"destructive\"\n\
         [[function]]\nname = '\"Mixed\".fn'\ncategory = \"export\"\n",
    );
    assert_eq!(
        s.extra_functions(),
        [
            ("app.purge_all".to_string(), Category::Destructive),
            ("Mixed.fn".to_string(), Category::Export)
        ]
    );
}

#[test]
fn privileged_settings_are_lowercased_once_each_and_checked() {
    let s = set("[[setting]]\nname = \"App.Tenant_Id\"\n\
         [[setting]]\nname = \"rls.*\"\n\
         [[setting]]\nname = \"app.tenant_id\"\n\
         [[setting]]\nname = \"Mandant.Kennung_$1\"\n");
    assert_eq!(
        s.privileged_settings(),
        ["app.tenant_id", "rls.*", "mandant.kennung_$1"]
    );
    let errs = errors(&[(
        "s.toml",
        "[[setting]]\nname = \"a*b\"\n[[setting]]\nname = \"*\"\n\
         [[setting]]\nname = \"app tenant\"\n[[setting]]\nname = \"*x*\"\n\
         [[setting]]\nname = \"ok\"\ncategory = \"privilege\"\n\
         [[setting]]\nname = \"app.\"\n[[setting]]\nname = \"a**\"\n",
    )]);
    let text = errs.join("\n");
    assert_eq!(errs.len(), 7, "{text}");
    for (line, what) in [
        (2, "a*b"),
        (4, "`*`"),
        (6, "app tenant"),
        (8, "*x*"),
        (11, "category"),
        (13, "dotted part"),
        (15, "one `*` at most"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!("s.toml:{line}")) && e.contains(what)),
            "no error for {what} at line {line}:\n{text}"
        );
    }
}

// ------------------------------------------------------------------ errors

#[test]
fn all_problems_are_reported_with_file_line_and_rule() {
    let bad = r##"[defaults]
action = "maybe"

[[rule]]
name = "bad-one"
description = "x"
action = "hold"
categories = ["ddl", "dll"]
tables = ["[oops"]
quorum = 0
timeout = "90"
colour = "red"

[[rule]]
name = "no-hold"
description = "y"
action = "allow"
channel = "#x"
category = "read"

[[rule]]
name = "bad-one"
action = "deny"
categories = []
approvers = ["alice"]

[[rule]]
name = "q"
description = "z"
action = "hold"
approvers = ["U1AAA", "U2BBB"]
quorum = 3
timeout = 60

[[function]]
name = "app.*"
category = "nasty"
"##;
    let got = errors(&[("rules/bad.toml", bad)]);
    let want = [
        "rules/bad.toml:2: `action`: unknown action `maybe` (expected allow, log, hold or deny)",
        "rules/bad.toml:8: rule `bad-one`: unknown category `dll` (expected one of transaction, session, read, write, destructive, export, ddl, procedural, privilege, unknown)",
        "rules/bad.toml:9: rule `bad-one`: `tables`: bad pattern `[oops`: unclosed character class; missing ']'",
        "rules/bad.toml:10: rule `bad-one`: `quorum` must be at least 1",
        "rules/bad.toml:11: rule `bad-one`: `timeout`: bad duration `90`: missing unit; use h, m or s, e.g. \"90s\"",
        "rules/bad.toml:12: rule `bad-one`: unknown key `colour` in [[rule]]",
        "rules/bad.toml:18: rule `no-hold`: `channel` only applies to action \"hold\", not \"allow\"",
        "rules/bad.toml:19: rule `no-hold`: unknown key `category` in [[rule]] (did you mean `categories`?)",
        "rules/bad.toml:21: rule `bad-one`: missing key `description`",
        "rules/bad.toml:21: rule `bad-one`: duplicate rule name, first defined at rules/bad.toml:4",
        "rules/bad.toml:24: rule `bad-one`: `categories` is an empty list, which would match nothing; remove the key to match anything",
        "rules/bad.toml:25: rule `bad-one`: `approvers` only applies to action \"hold\", not \"deny\"",
        "rules/bad.toml:32: rule `q`: `quorum` is 3 but only 2 approver(s) are listed",
        "rules/bad.toml:33: rule `q`: `timeout` must be a duration string such as \"90s\" or \"2m\"",
        "rules/bad.toml:36: `name`: bad function name `app.*`: globs are not allowed here; name one function",
        "rules/bad.toml:37: unknown category `nasty` (expected one of transaction, session, read, write, destructive, export, ddl, procedural, privilege, unknown)",
    ];
    assert_eq!(got, want, "got:\n{}", got.join("\n"));
}

#[test]
fn bad_approvers_and_channels_are_refused() {
    let got = errors(&[(
        "a.toml",
        &rule(
            "h",
            "hold",
            "approvers = [\"@alice\", \"U1\", \"UABC\", \"UABC\"]\nchannel = \"db approvals\"",
        ),
    )]);
    assert_eq!(
        got,
        [
            "a.toml:5: rule `h`: `approvers`: `@alice` is not a Slack user id (U…/W…) or user-group id (S…)",
            "a.toml:5: rule `h`: `approvers`: `U1` is not a Slack user id (U…/W…) or user-group id (S…)",
            "a.toml:5: rule `h`: `approvers`: `UABC` is listed twice",
            "a.toml:6: rule `h`: `channel` must be a non-empty Slack channel name or id without spaces",
        ]
    );
}

#[test]
fn duplicate_names_and_defaults_across_files_are_refused() {
    let got = errors(&[
        ("b.toml", &format!("\n\n{}", rule("same", "allow", ""))),
        (
            "a.toml",
            &format!(
                "[defaults]\naction = \"hold\"\n{}",
                rule("same", "deny", "")
            ),
        ),
        ("c.toml", "# more\n[defaults]\naction = \"deny\"\n"),
    ]);
    assert_eq!(
        got,
        [
            "b.toml:3: rule `same`: duplicate rule name, first defined at a.toml:3",
            "c.toml:2: [defaults] is already set at a.toml:1; set it in one file only",
        ]
    );
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let got = errors(&[
        ("s.toml", "[[rule]]\nname = \"x\"\naction = hold\n"),
        ("t.toml", "# fine\n"),
    ]);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("s.toml:3:10: invalid TOML:"),
        "{}",
        got[0]
    );
}

#[test]
fn wrong_shapes_are_refused() {
    let got = errors(&[(
        "w.toml",
        "rule = { name = \"x\" }\ndefaults = 3\nextra = 1\n",
    )]);
    assert_eq!(
        got,
        [
            "w.toml:1: `rule` must be a list of tables: write [[rule]]",
            "w.toml:2: `defaults` must be a table: write [defaults]",
            "w.toml:3: unknown key `extra` in the top level of a rule file",
        ]
    );
    let got = errors(&[(
        "n.toml",
        &rule("has space", "allow", "tables = 3\nagents = [\"a\", 1]"),
    )]);
    assert_eq!(
        got,
        [
            "n.toml:2: rule `has space`: bad rule name `has space`: use 1-64 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
            "n.toml:5: rule `has space`: `tables` must be a string or a list of strings",
            "n.toml:6: rule `has space`: `agents` must be a list of strings",
        ]
    );
}

#[test]
fn conflicting_function_declarations_are_refused() {
    let got = errors(&[
        (
            "a.toml",
            "[[function]]\nname = \"app.f\"\ncategory = \"write\"\n",
        ),
        (
            "b.toml",
            "[[function]]\nname = \"APP.F\"\ncategory = \"write\"\n[[function]]\nname = \"app.f\"\ncategory = \"ddl\"\n",
        ),
    ]);
    assert_eq!(
        got,
        ["b.toml:4: function `app.f` is already declared as write at a.toml:1"]
    );
}

#[test]
fn durations_parse_strictly() {
    for (s, secs) in [
        ("90s", 90),
        ("2m", 120),
        ("1m30s", 90),
        ("1h", 3600),
        ("1h0m5s", 3605),
        ("24h", 86400),
    ] {
        assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
    }
    for s in [
        "",
        "90",
        "2 minutes",
        "1s1m",
        "1m1m",
        "0s",
        "25h",
        "-5s",
        "1.5m",
        "5ms",
        "99999999999999999999s",
    ] {
        assert!(parse_duration(s).is_err(), "{s} should be refused");
    }
}

// ----------------------------------------------------------------- version

#[test]
fn version_tracks_names_and_contents_only() {
    let a = ("a.toml", "[defaults]\naction = \"hold\"\n");
    let b = ("b.toml", "# nothing\n");
    let mk = |files: &[(&str, &str)]| {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        RuleSet::from_sources(&sources)
            .unwrap()
            .version()
            .to_string()
    };
    let v = mk(&[a, b]);
    assert_eq!(v.len(), 64);
    assert!(v.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(v, mk(&[b, a]), "input order must not matter");
    assert_ne!(v, mk(&[a, ("b.toml", "# nothing \n")]), "content change");
    assert_ne!(v, mk(&[a, ("c.toml", "# nothing\n")]), "file name change");
    // Framing: moving bytes between name and content changes the version.
    let raw = |p: &str, t: &str| load::version_of(&[(PathBuf::from(p), t.to_string())]);
    assert_ne!(raw("x", "ab"), raw("xa", "b"));
}

// ------------------------------------------------------------------- files

#[test]
fn directories_load_visible_toml_files_only() {
    let dir = TempDir::new("dir");
    dir.write(
        "10-base.toml",
        &rule("base", "allow", "categories = [\"read\"]"),
    );
    dir.write(
        "20-more.toml",
        &rule("more", "hold", "categories = [\"ddl\"]"),
    );
    dir.write(".#20-more.toml", "this is not toml");
    dir.write("notes.txt", "this is not toml either");
    let s = RuleSet::load(std::slice::from_ref(&dir.0)).unwrap();
    let names: Vec<&str> = s.rules().iter().map(Rule::name).collect();
    assert_eq!(names, ["base", "more"]);
    assert_eq!(s.rule("more").map(Rule::action), Some(Action::Hold));
    assert!(s.rule("missing").is_none());
    assert_eq!(s.files().len(), 2);

    let empty = TempDir::new("empty");
    let errs = RuleSet::load(std::slice::from_ref(&empty.0)).unwrap_err();
    assert!(matches!(errs[..], [Error::NoRuleFiles { .. }]));
    let errs = RuleSet::load(&[dir.0.join("missing.toml")]).unwrap_err();
    assert!(matches!(errs[..], [Error::Io { .. }]));
}

#[test]
fn reload_keeps_old_rules_when_new_ones_are_invalid() {
    let dir = TempDir::new("reload");
    let file = dir.write(
        "rules.toml",
        &rule("allow-reads", "allow", "categories = [\"read\"]"),
    );
    let store = RuleStore::load(vec![dir.0.clone()]).unwrap();
    let v1 = store.current().version().to_string();
    let read = one(Category::Read, &[]);
    assert_eq!(
        store.current().evaluate(&read, &AGENT).action,
        Action::Allow
    );
    assert_eq!(
        store.reload().unwrap(),
        ReloadOutcome::Unchanged {
            version: v1.clone()
        }
    );

    // Broken edit: reported with its line, old rules stay live.
    dir.write(
        "rules.toml",
        &rule("allow-reads", "allow", "categories = [\"reed\"]"),
    );
    let errs = store.reload().unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line(), Some(5));
    assert_eq!(errs[0].path(), file.as_path());
    assert_eq!(store.current().version(), v1);
    assert_eq!(
        store.current().evaluate(&read, &AGENT).action,
        Action::Allow
    );

    // Fixed edit: new version live.
    dir.write(
        "rules.toml",
        &rule("deny-reads", "deny", "categories = [\"read\"]"),
    );
    let ReloadOutcome::Reloaded { previous, version } = store.reload().unwrap() else {
        panic!("expected a reload");
    };
    assert_eq!(previous, v1);
    assert_ne!(version, v1);
    assert_eq!(store.current().version(), version);
    assert_eq!(store.current().evaluate(&read, &AGENT).action, Action::Deny);

    // A deleted file is a failure too, not an empty policy.
    std::fs::remove_file(&file).unwrap();
    assert!(store.reload().is_err());
    assert_eq!(store.current().version(), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_picks_up_changes_and_stops_on_cancel() {
    let dir = TempDir::new("watch");
    dir.write(
        "rules.toml",
        &rule("allow-reads", "allow", "categories = [\"read\"]"),
    );
    let store = Arc::new(RuleStore::load(vec![dir.0.clone()]).unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = Arc::clone(&store).spawn_watcher(Duration::from_millis(20), cancel.clone());
    let read = one(Category::Read, &[]);

    // An invalid file is ignored...
    dir.write("rules.toml", "[[rule]\n");
    crate::timers::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.current().evaluate(&read, &AGENT).action,
        Action::Allow
    );
    // ...a valid one is picked up.
    dir.write(
        "rules.toml",
        &rule("hold-reads", "hold", "categories = [\"read\"]"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.current().evaluate(&read, &AGENT).action != Action::Hold {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher did not reload"
        );
        crate::timers::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    crate::timers::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}

// ----------------------------------------------------- shipped rule files

/// A keyword classifier good enough for the shipped example cases, so the
/// case files are checked against the shipped rules without depending on
/// `classify`. It knows the few statement shapes the case files use; it is
/// not a model of the real classifier.
fn keyword_classify(sql: &str) -> Classification {
    let mut statements = Vec::new();
    let mut start = 0;
    let (mut in_str, mut in_dollar) = (false, false);
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i <= bytes.len() {
        let end = i == bytes.len();
        if !end && bytes[i] == b'\'' && !in_dollar {
            in_str = !in_str;
        } else if !end && !in_str && sql[i..].starts_with("$$") {
            in_dollar = !in_dollar;
            i += 1;
        } else if end || (bytes[i] == b';' && !in_str && !in_dollar) {
            let text = &sql[start..i];
            if !text.trim().is_empty() {
                statements.push(StatementClass {
                    span: (start, i),
                    effects: Arc::from([keyword_effect(text)]),
                    prepared: None,
                });
            }
            start = i + 1;
        }
        i += 1;
    }
    Classification { statements }
}

fn keyword_effect(text: &str) -> Effect {
    // Words: identifiers (quoted ones keep case), everything else dropped
    // except `(`, which marks calls.
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            let w: String = chars.by_ref().take_while(|&c| c != '"').collect();
            words.push(format!("\"{w}"));
        } else if c == '\'' {
            let _ = chars.by_ref().take_while(|&c| c != '\'').count();
            words.push("'".into());
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '$' {
            let mut w = c.to_lowercase().to_string();
            while let Some(&n) = chars
                .peek()
                .filter(|n| n.is_alphanumeric() || **n == '_' || **n == '.')
            {
                w.extend(n.to_lowercase());
                chars.next();
            }
            words.push(w);
        } else if c == '(' {
            words.push("(".into());
        }
    }
    let has = |k: &str| words.iter().any(|w| w == k);
    let name = |w: &String| w.strip_prefix('"').map_or(w.clone(), str::to_string);
    let mut tables = Vec::new();
    let mut functions = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1);
        let on_object = w == "on" && matches!(words[0].as_str(), "grant" | "revoke" | "create");
        if (on_object
            || matches!(
                w.as_str(),
                "from" | "join" | "into" | "update" | "table" | "truncate" | "copy"
            ))
            && let Some(n) = next
            && (n.starts_with('"') || n.chars().next().is_some_and(char::is_alphabetic))
            && !matches!(
                n.as_str(),
                "select" | "only" | "public" | "stdin" | "program"
            )
        {
            tables.push(name(n));
        }
        if next.is_some_and(|n| n == "(")
            && w.chars().next().is_some_and(char::is_alphabetic)
            && !tables.contains(w)
            && !matches!(
                w.as_str(),
                "as" | "values" | "in" | "exists" | "copy" | "int" | "table" | "into"
            )
        {
            functions.push(w.clone());
        }
    }
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    use Category::*;
    let category = match first {
        "select" | "table" | "values" => {
            if functions
                .iter()
                .any(|f| f == "pg_read_file" || f == "lo_export")
            {
                Export
            } else {
                Read
            }
        }
        "with" if has("delete") && !has("where") => Destructive,
        "with" => Read,
        "explain" if has("analyze") && has("delete") && !has("where") => Destructive,
        "explain" => Read,
        "insert" => Write,
        "update" | "delete" => {
            if has("where") {
                Write
            } else {
                Destructive
            }
        }
        "truncate" => Destructive,
        "create" | "alter" | "drop" if matches!(second, "role" | "user") => Privilege,
        "create" if matches!(second, "function" | "procedure") => Procedural,
        "create" | "alter" | "drop" => Ddl,
        "grant" | "revoke" => Privilege,
        "copy" if has("to") || has("program") => Export,
        "copy" => Write,
        "begin" | "commit" | "rollback" | "savepoint" | "release" => Transaction,
        "set" if second == "role" => Privilege,
        "set" | "reset" | "show" => Session,
        "do" | "call" => Procedural,
        _ => Unknown,
    };
    Effect {
        category,
        tables,
        functions,
        why: format!("keyword classifier: {first}"),
    }
}

#[test]
fn keyword_classifier_sanity() {
    let c = keyword_classify("SELECT 1; DROP TABLE \"Orders\"; DO $$ BEGIN PERFORM 1; END $$");
    let cats: Vec<Category> = c.statements.iter().map(|s| s.category()).collect();
    assert_eq!(cats, [Category::Read, Category::Ddl, Category::Procedural]);
    assert_eq!(c.statements[1].effects[0].tables, ["Orders"]);
    let e = keyword_effect(
        "SELECT o.id FROM orders o JOIN billing.customer_pii p ON p.id = o.customer_id",
    );
    assert_eq!(e.tables, ["orders", "billing.customer_pii"]);
}

fn shipped(name: &str) -> RuleSet {
    RuleSet::load(&[repo_path(&format!("rules/{name}.toml"))])
        .unwrap_or_else(|e| panic!("{}", format_errors(&e)))
}

#[test]
fn shipped_rule_files_load_and_say_what_they_promise() {
    let default = shipped("default");
    let strict = shipped("strict");
    assert_eq!(default.default_action(), Action::Hold);
    assert_eq!(strict.default_action(), Action::Hold);
    for (set, category, want) in [
        (&default, Category::Read, Action::Allow),
        (&default, Category::Write, Action::Allow),
        (&default, Category::Session, Action::Allow),
        (&default, Category::Transaction, Action::Allow),
        (&default, Category::Export, Action::Hold),
        (&default, Category::Ddl, Action::Hold),
        (&default, Category::Privilege, Action::Hold),
        (&default, Category::Destructive, Action::Hold),
        (&default, Category::Procedural, Action::Hold),
        (&default, Category::Unknown, Action::Hold),
        (&strict, Category::Read, Action::Allow),
        (&strict, Category::Privilege, Action::Deny),
        (&strict, Category::Unknown, Action::Hold),
        (&strict, Category::Export, Action::Hold),
    ] {
        let d = set.evaluate(&one(category, &["orders"]), &AGENT);
        assert_eq!(d.action, want, "{category}");
        assert!(
            !d.rules.contains(&DEFAULT_RULE.to_string()),
            "{category} must be covered by a rule"
        );
    }
    assert_eq!(
        strict
            .evaluate(&one(Category::Read, &["app.user_pii"]), &AGENT)
            .action,
        Action::Hold
    );
    assert_eq!(
        default
            .evaluate(&one(Category::Read, &["app.user_pii"]), &AGENT)
            .action,
        Action::Allow
    );
}

#[test]
fn shipped_case_files_pass_against_shipped_rules() {
    for name in ["default", "strict"] {
        let rules = shipped(name);
        let path = repo_path(&format!("fixtures/rules/{name}-cases.toml"));
        // The real classifier: the shipped cases document real behaviour.
        let opts = rules.classifier_options(crate::classify::Options::default().max_len);
        let judge = |sql: &str| {
            let class = std::sync::Arc::new(crate::classify::classify(sql, &opts));
            (*crate::wire::policy::resolve_prepared(&class, |_| None)).clone()
        };
        let report = run_cases(&path, &rules, &judge).unwrap();
        assert!(
            report.cases.len() >= 25,
            "{name}: only {} cases",
            report.cases.len()
        );
        assert!(report.all_passed(), "{report}");
    }
}

// ------------------------------------------------------ cases and explain

#[test]
fn case_report_shows_expected_and_actual_for_failures() {
    let dir = TempDir::new("cases");
    let path = dir.write(
        "cases.toml",
        r#"[[case]]
sql = "SELECT 1"
expect = "allow"

[[case]]
name = "drop"
sql = "DROP TABLE t"
expect = "allow"

[[case]]
sql = "DROP TABLE t"
expect = "hold"
expect_rules = ["wrong-rule"]
"#,
    );
    let rules = set(&[
        rule("allow-reads", "allow", "categories = [\"read\"]"),
        rule("hold-ddl", "hold", "categories = [\"ddl\"]"),
    ]
    .concat());
    let report = run_cases(&path, &rules, &keyword_classify).unwrap();
    assert_eq!((report.passed(), report.failed()), (1, 2));
    let text = report.to_string();
    let p = path.display();
    assert!(
        text.contains(&format!(
            "PASS {p}:1 SELECT 1\n       -> allow by [allow-reads]"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("FAIL {p}:5 drop: DROP TABLE t\n       expected allow\n       actual   hold by [hold-ddl]")), "{text}");
    assert!(
        text.contains("expected hold by [wrong-rule]\n       actual   hold by [hold-ddl]"),
        "{text}"
    );
    assert!(text.ends_with(&format!(
        "3 case(s): 1 passed, 2 failed (policy version {})\n",
        rules.version()
    )));
}

#[test]
fn malformed_case_files_report_every_problem() {
    let dir = TempDir::new("badcases");
    let path = dir.write(
        "cases.toml",
        "[[case]]\nsql = \"SELECT 1\"\nexpect = \"maybe\"\n\n[[case]]\nexpect = \"allow\"\nagnet = \"x\"\n",
    );
    let err = run_cases(&path, &set(""), &keyword_classify).unwrap_err();
    let Error::Cases { problems, .. } = &err else {
        panic!("{err}")
    };
    let lines: Vec<Option<usize>> = problems.iter().map(Error::line).collect();
    assert_eq!(lines, [Some(3), Some(7), Some(5)], "{err}");
}

#[test]
fn explain_shows_effects_rules_and_decision() {
    let rules = set(&[
        rule("allow-reads", "allow", "categories = [\"read\"]"),
        rule(
            "hold-ddl",
            "hold",
            "categories = [\"ddl\"]\ntables = [\"orders\"]\ntimeout = \"90s\"",
        ),
    ]
    .concat());
    let sql = "SELECT 1; DROP TABLE orders; VACUUM";
    let c = keyword_classify(sql);
    let text = render_explain(sql, &c, &AGENT, &rules);
    let expected = format!(
        "policy version {}
subject: agent \"billing-bot\", application_name \"psql\", database \"app\"

statement 1: SELECT 1
  effect 1: read - keyword classifier: select
    matched allow-reads -> allow (test.toml:1)

statement 2: DROP TABLE orders
  effect 1: ddl - keyword classifier: drop
    tables: orders
    matched hold-ddl -> hold (test.toml:6)

statement 3: VACUUM
  effect 1: unknown - keyword classifier: vacuum
    no rule matched -> hold (built-in default)

decision: HOLD
  by hold-ddl (test.toml:6): d
     when categories = [ddl], tables = [orders]
  by (default): no rule matched an effect
  approval: 1 approval(s) from anyone except the agent's owner, in the configured approval channel, refused after 1m
",
        rules.version()
    );
    assert_eq!(text, expected);
}
