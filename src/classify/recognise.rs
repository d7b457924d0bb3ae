//! Keyword fallback for valid Postgres that sqlparser cannot parse.
//!
//! Runs only after a parse error, on the statement's tokens (so comments,
//! quotes and dollar quotes are already out of the way). Each rule answers
//! only when the leading keywords settle the category with certainty and the
//! answer is at least as dangerous as the truth: e.g. `GRANT role TO user`
//! is privilege whatever follows, `DROP <anything>` evaluates no expression.
//! Kinds that can run expressions while sqlparser cannot show us which
//! (`CREATE TABLE ... AS`, `ALTER TABLE ... USING`, any DML) get no rule and
//! stay `Unknown`.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::functions::is_privileged_setting;
use super::lex::keyword_text;
use super::walk::{effect, normalize_ident};
use super::{Category, Effect};

pub(super) enum Recognised {
    Effects(Vec<Effect>),
    /// `EXPLAIN [ANALYZE|ANALYSE] [VERBOSE] stmt` or `EXPLAIN (options) stmt`
    /// where sqlparser failed (e.g. on the `ANALYSE` spelling): the caller
    /// classifies `inner` (the tokens of `stmt`) and applies EXPLAIN rules.
    Explain {
        runs: bool,
        inner: Vec<TokenWithSpan>,
    },
}

const NOTE: &str = "recognised by leading keywords after sqlparser could not parse it";

fn one(category: Category, tables: Vec<String>, what: &str) -> Option<Recognised> {
    Some(Recognised::Effects(vec![effect(
        category,
        tables,
        format!("{what} ({NOTE})"),
    )]))
}

/// Kinds whose CREATE evaluates no user expression at that time (unlike
/// `CREATE TABLE ... AS`, `CREATE MATERIALIZED VIEW`, `CREATE INDEX`).
const CREATE_KINDS: &[&str] = &[
    "FUNCTION",
    "PROCEDURE",
    "AGGREGATE",
    "OPERATOR",
    "CAST",
    "RULE",
    "EVENT",
    "CONVERSION",
    "LANGUAGE",
    "TRANSFORM",
    "ACCESS",
    "PUBLICATION",
    "SUBSCRIPTION",
    "FOREIGN",
    "SERVER",
    "TEXT",
    "STATISTICS",
    "TABLESPACE",
    "COLLATION",
    "TRIGGER",
    "EXTENSION",
    "TYPE",
    "DOMAIN",
];

/// Kinds whose ALTER evaluates no user expression. Not TABLE (`ALTER COLUMN
/// TYPE ... USING expr` runs on every row) and not DOMAIN (`ADD CHECK`
/// validates existing rows).
const ALTER_KINDS: &[&str] = &[
    "FUNCTION",
    "PROCEDURE",
    "ROUTINE",
    "AGGREGATE",
    "OPERATOR",
    "RULE",
    "EVENT",
    "CONVERSION",
    "LANGUAGE",
    "PUBLICATION",
    "SUBSCRIPTION",
    "FOREIGN",
    "SERVER",
    "TEXT",
    "STATISTICS",
    "TABLESPACE",
    "COLLATION",
    "TRIGGER",
    "EXTENSION",
    "TYPE",
    "VIEW",
    "MATERIALIZED",
    "SEQUENCE",
    "INDEX",
    "SCHEMA",
    "LARGE",
];

/// Words that may precede the object kind in CREATE.
const CREATE_MODIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "CONSTRAINT",
    "TRUSTED",
    "PROCEDURAL",
    "DEFAULT",
];

pub(super) fn recognise(tokens: &[TokenWithSpan]) -> Option<Recognised> {
    let sig: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let kw = |i: usize| {
        sig.get(i)
            .and_then(|t| keyword_text(&t.token))
            .unwrap_or_default()
    };
    let any_word = |pred: &dyn Fn(&str) -> bool| {
        sig.iter()
            .any(|t| matches!(&t.token, Token::Word(w) if pred(&w.value)))
    };
    use Category::*;
    match kw(0).as_str() {
        "DO" => one(Procedural, Vec::new(), "DO block runs procedural code"),
        "GRANT" | "REVOKE" => one(Privilege, Vec::new(), "GRANT/REVOKE"),
        "REASSIGN" => one(Privilege, Vec::new(), "REASSIGN OWNED"),
        "SECURITY" if kw(1) == "LABEL" => one(Privilege, Vec::new(), "SECURITY LABEL"),
        "DROP" if kw(1) == "OWNED" => one(Privilege, Vec::new(), "DROP OWNED"),
        "ALTER" if kw(1) == "DEFAULT" && kw(2) == "PRIVILEGES" => {
            one(Privilege, Vec::new(), "ALTER DEFAULT PRIVILEGES")
        }
        "CREATE" | "ALTER" | "DROP" if matches!(kw(1).as_str(), "ROLE" | "USER" | "GROUP") => {
            one(Privilege, Vec::new(), "role or user management")
        }
        // A SET/RESET can at most change the role; sqlparser rejects e.g.
        // `SET role TO x`, so count it as that.
        "SET" | "RESET" => {
            let what = if any_word(&|w| {
                is_privileged_setting(w, &[]) || w.eq_ignore_ascii_case("authorization")
            }) {
                "SET/RESET of a privileged setting"
            } else {
                "SET/RESET that sqlparser cannot parse: counted as the most a SET can do"
            };
            one(Privilege, Vec::new(), what)
        }
        // The server's configuration, for every session.
        "ALTER" if kw(1) == "SYSTEM" => one(
            Privilege,
            Vec::new(),
            "ALTER SYSTEM changes the server's configuration",
        ),
        // A database's settings are every new session's defaults, `role`
        // and custom settings (read by row-level security) included, and
        // dotted names arrive here as separate words: any SET / RESET is
        // judged a privileged one.
        "ALTER" if kw(1) == "DATABASE" => {
            let privileged = any_word(&|w| {
                is_privileged_setting(w, &[])
                    || ["owner", "all", "set", "reset"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k))
            });
            if privileged {
                one(
                    Privilege,
                    Vec::new(),
                    "ALTER DATABASE changing a setting or the owner",
                )
            } else {
                one(Ddl, Vec::new(), "ALTER DATABASE")
            }
        }
        "TABLE" => {
            let mut i = 1;
            if kw(i) == "ONLY" {
                i += 1;
            }
            let (name, next) = dotted_name(&sig, i)?;
            let next = if matches!(sig.get(next).map(|t| &t.token), Some(Token::Mul)) {
                next + 1
            } else {
                next
            };
            (next == sig.len()).then_some(())?;
            one(Read, vec![name], "TABLE")
        }
        "PREPARE" | "COMMIT" | "ROLLBACK"
            if sig.len() == 3
                && matches!(sig[2].token, Token::SingleQuotedString(_))
                && (kw(1) == "TRANSACTION" && kw(0) == "PREPARE"
                    || kw(1) == "PREPARED" && kw(0) != "PREPARE") =>
        {
            // COMMIT/ROLLBACK PREPARED finish any session's prepared
            // transaction; PREPARE TRANSACTION keeps this one's locks
            // past the session's end.
            one(Privilege, Vec::new(), "two-phase commit")
        }
        "EXPLAIN" => explain(&sig, tokens),
        "CREATE" => {
            let mut i = 1;
            while CREATE_MODIFIERS.contains(&kw(i).as_str()) {
                i += 1;
            }
            if CREATE_KINDS.contains(&kw(i).as_str()) {
                one(
                    Ddl,
                    Vec::new(),
                    &format!("CREATE {} (objects not extracted)", kw(i)),
                )
            } else {
                None
            }
        }
        "ALTER" if ALTER_KINDS.contains(&kw(1).as_str()) => {
            if any_word(&|w| w.eq_ignore_ascii_case("owner")) {
                one(
                    Privilege,
                    Vec::new(),
                    "ALTER ... OWNER TO changes ownership",
                )
            } else {
                one(
                    Ddl,
                    Vec::new(),
                    &format!("ALTER {} (objects not extracted)", kw(1)),
                )
            }
        }
        "DROP" => one(
            Ddl,
            Vec::new(),
            &format!("DROP {} (objects not extracted)", kw(1)),
        ),
        "COMMENT" if kw(1) == "ON" => one(Ddl, Vec::new(), "COMMENT ON (objects not extracted)"),
        "IMPORT" if kw(1) == "FOREIGN" => one(Ddl, Vec::new(), "IMPORT FOREIGN SCHEMA"),
        "REFRESH" if kw(1) == "MATERIALIZED" && kw(2) == "VIEW" => {
            let mut i = 3;
            if kw(i) == "CONCURRENTLY" {
                i += 1;
            }
            let (name, mut next) = dotted_name(&sig, i)?;
            if kw(next) == "WITH" {
                next += 1;
                if kw(next) == "NO" {
                    next += 1;
                }
                (kw(next) == "DATA").then_some(())?;
                next += 1;
            }
            (next == sig.len()).then_some(())?;
            one(
                Ddl,
                vec![name],
                "REFRESH MATERIALIZED VIEW rewrites its data",
            )
        }
        "CLUSTER" => {
            let mut i = 1;
            if kw(i) == "VERBOSE" {
                i += 1;
            }
            if i == sig.len() {
                return one(
                    Ddl,
                    Vec::new(),
                    "CLUSTER (every previously clustered table)",
                );
            }
            let (name, mut next) = dotted_name(&sig, i)?;
            if kw(next) == "USING" {
                next = dotted_name(&sig, next + 1)?.1;
            }
            (next == sig.len()).then_some(())?;
            one(
                Ddl,
                vec![name],
                "CLUSTER rewrites the table under an exclusive lock",
            )
        }
        "REINDEX" => one(Ddl, Vec::new(), "REINDEX (objects not extracted)"),
        "VACUUM" | "ANALYZE" | "ANALYSE" => {
            let full = any_word(&|w| w.eq_ignore_ascii_case("full"));
            let tables = maintenance_targets(&sig)?;
            if kw(0) == "VACUUM" && full {
                one(
                    Ddl,
                    tables,
                    "VACUUM FULL rewrites the table under an exclusive lock",
                )
            } else {
                one(Write, tables, "VACUUM/ANALYZE")
            }
        }
        _ => None,
    }
}

/// `name` or `schema.name` (words only) at `i`: the normalised name and the
/// index after it.
fn dotted_name(sig: &[&TokenWithSpan], mut i: usize) -> Option<(String, usize)> {
    let mut parts = Vec::new();
    loop {
        match sig.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => {
                parts.push(normalize_ident(&sqlparser::ast::Ident {
                    value: w.value.clone(),
                    quote_style: w.quote_style,
                    span: sig[i].span,
                }));
                i += 1;
            }
            _ => return None,
        }
        if matches!(sig.get(i).map(|t| &t.token), Some(Token::Period)) {
            i += 1;
        } else {
            return Some((parts.join("."), i));
        }
    }
}

/// `VACUUM|ANALYZE [ (options) | old-style keywords ] [name [(cols)], ...]`
fn maintenance_targets(sig: &[&TokenWithSpan]) -> Option<Vec<String>> {
    let mut i = 1;
    if matches!(sig.get(i).map(|t| &t.token), Some(Token::LParen)) {
        i = skip_parens(sig, i)?;
    } else {
        while matches!(
            sig.get(i).and_then(|t| keyword_text(&t.token)).as_deref(),
            Some("FULL" | "FREEZE" | "VERBOSE" | "ANALYZE" | "ANALYSE")
        ) {
            i += 1;
        }
    }
    let mut tables = Vec::new();
    while i < sig.len() {
        let (name, mut next) = dotted_name(sig, i)?;
        tables.push(name);
        if matches!(sig.get(next).map(|t| &t.token), Some(Token::LParen)) {
            next = skip_parens(sig, next)?;
        }
        match sig.get(next).map(|t| &t.token) {
            None => return Some(tables),
            Some(Token::Comma) => i = next + 1,
            Some(_) => return None,
        }
    }
    Some(tables)
}

/// Index after the parenthesised group opening at `i`.
fn skip_parens(sig: &[&TokenWithSpan], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in sig.iter().enumerate().skip(i) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn explain(sig: &[&TokenWithSpan], all: &[TokenWithSpan]) -> Option<Recognised> {
    let word = |i: usize| {
        sig.get(i)
            .and_then(|t| keyword_text(&t.token))
            .unwrap_or_default()
    };
    let mut i = 1;
    let mut runs = false;
    if matches!(sig.get(1).map(|t| &t.token), Some(Token::LParen)) {
        let end = skip_parens(sig, 1)?;
        // An analyze option is on unless an explicit false follows it.
        // An option name may be quoted (`("analyze")` is ANALYZE):
        // compared whatever its quoting and case, over-approximating.
        let option = |j: usize| match sig.get(j).map(|t| &t.token) {
            Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
            _ => String::new(),
        };
        for j in 2..end - 1 {
            if matches!(option(j).as_str(), "ANALYZE" | "ANALYSE") {
                let arg = sig.get(j + 1).map(|t| &t.token);
                let off = match arg {
                    Some(Token::Word(w)) => {
                        matches!(w.value.to_ascii_lowercase().as_str(), "false" | "off")
                    }
                    Some(Token::Number(n, _)) => n == "0",
                    Some(Token::SingleQuotedString(s)) => {
                        matches!(s.to_ascii_lowercase().as_str(), "false" | "off" | "0")
                    }
                    _ => false,
                };
                runs |= !off;
            }
        }
        i = end;
    } else {
        if matches!(word(i).as_str(), "ANALYZE" | "ANALYSE") {
            runs = true;
            i += 1;
        }
        if word(i) == "VERBOSE" {
            i += 1;
        }
    }
    let start = sig.get(i)?;
    let pos = all.iter().position(|t| std::ptr::eq(t, *start))?;
    Some(Recognised::Explain {
        runs,
        inner: all[pos..].to_vec(),
    })
}
