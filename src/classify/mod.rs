//! SQL text -> [`Classification`]: what every statement of a message does.
//!
//! Place in the flow: `wire::Session` hands each simple `Query` text and
//! each `Parse` text to [`Classifier::classify`] (cached) and passes the
//! result to `rules`. Pure: no I/O, no session state, never panics.
//!
//! How a message is read:
//! 1. Longer than [`Options::max_len`]: `Unknown` without further work.
//! 2. sqlparser's tokenizer splits it at every `;` (strings, comments and
//!    dollar quotes are single tokens, so they cannot hide or fake a `;`), and
//!    `U&"..."` identifiers are decoded as Postgres does. Each part is
//!    classified alone, so one unparsable part cannot drag its neighbours
//!    down to `Unknown`, nor hide them.
//! 3. Each part is parsed (PostgreSqlDialect) and walked (`walk`). Parts
//!    sqlparser rejects go to a keyword fallback (`recognise`) that answers
//!    only when the answer is certain and not less dangerous than the truth;
//!    everything else is `Unknown` with a `why`. Parse failure never passes.
//!
//! Choices callers must know:
//! - A function the classifier does not know (user functions included) counts
//!   as `Read`, and is listed in the effects' `functions` so rules can name it.
//! - `PREPARE name AS stmt` carries the effects of `stmt` and
//!   `PreparedOp::Prepare`; the session remembers them per name.
//! - `EXECUTE name` carries `PreparedOp::Execute` and normally no effects
//!   (so `StatementClass::category()` is `Unknown`). The session must append
//!   the effects remembered for `name` to the statement's own effects (these
//!   are non-empty only when the parameters call functions or read tables),
//!   and treat an unknown name as `Unknown`. Same for `EXPLAIN ANALYZE
//!   EXECUTE name`, which runs it; plain `EXPLAIN EXECUTE` is a read.
//! - `DEALLOCATE [ALL]` and `DISCARD ALL` carry the matching `PreparedOp`.

mod functions;
mod lex;
mod model;
mod recognise;
mod walk;

#[cfg(test)]
mod tests;

pub use model::*;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use recognise::Recognised;
use walk::{Outcome, unknown};

/// Classifier settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Messages longer than this (bytes) are `Unknown` without parsing:
    /// parse time grows with length, and a cap keeps it bounded.
    pub max_len: usize,
    /// Extra functions with side effects, as (normalised name, category);
    /// see [`normalize_function_name`]. A schema-qualified entry `s.f`
    /// matches calls to `s.f` and to an unqualified `f`; an unqualified
    /// entry matches `f` in any schema. They take precedence over the
    /// built-in list.
    pub extra_functions: Vec<(String, Category)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_len: 64 * 1024,
            extra_functions: Vec::new(),
        }
    }
}

/// How deep `EXPLAIN EXPLAIN ...` fallback recursion may go before the
/// statement is `Unknown` (Postgres itself accepts no nesting at all).
const MAX_EXPLAIN_NESTING: usize = 4;

/// Classifies one message (a simple-protocol Query or a Parse).
pub fn classify(sql: &str, opts: &Options) -> Classification {
    let whole = |why: String| Classification {
        statements: vec![StatementClass {
            span: (0, sql.len()),
            effects: vec![unknown(why)],
            prepared: None,
        }],
    };
    if sql.len() > opts.max_len {
        return whole(format!(
            "message is {} bytes, over the {} byte limit",
            sql.len(),
            opts.max_len
        ));
    }
    let mut tokens = match lex::tokenize(sql) {
        Ok(t) => t,
        Err(why) => return whole(why),
    };
    if let Err(why) = lex::fold_unicode_identifiers(&mut tokens) {
        return whole(why);
    }
    let offsets = lex::ByteOffsets::new(sql);
    let statements = lex::split_statements(tokens)
        .into_iter()
        .map(|part| {
            let first = part.iter().find(|t| !lex::is_trivia(&t.token));
            let last = part.iter().rev().find(|t| !lex::is_trivia(&t.token));
            let span = match (first, last) {
                (Some(f), Some(l)) => (offsets.offset(f.span.start), offsets.offset(l.span.end)),
                _ => (0, sql.len()),
            };
            let outcome = classify_part(part, opts, 0);
            StatementClass {
                span,
                effects: outcome.effects,
                prepared: outcome.prepared,
            }
        })
        .collect();
    Classification { statements }
}

fn classify_part(part: Vec<TokenWithSpan>, opts: &Options, nesting: usize) -> Outcome {
    let fail = |why: String| Outcome {
        effects: vec![unknown(why)],
        prepared: None,
    };
    let operators = lex::operator_count(&part);
    if operators > lex::MAX_OPERATORS {
        return fail(format!(
            "statement has {operators} operators, over the {} limit for safe analysis",
            lex::MAX_OPERATORS
        ));
    }
    // sqlparser and the walk are not expected to panic, but a proxy that
    // dies on a crafted statement is worse than one that asks a human.
    catch_unwind(AssertUnwindSafe(|| parse_and_walk(part, opts, nesting)))
        .unwrap_or_else(|_| fail("classifier panicked on this statement".into()))
}

fn parse_and_walk(part: Vec<TokenWithSpan>, opts: &Options, nesting: usize) -> Outcome {
    let fail = |why: String| Outcome {
        effects: vec![unknown(why)],
        prepared: None,
    };
    let mut parser = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(part.clone());
    let error = match parser.parse_statements() {
        Ok(stmts) if stmts.len() == 1 => return walk::classify_statement(&stmts[0], opts),
        Ok(stmts) => return fail(format!("expected one statement, parsed {}", stmts.len())),
        Err(e) => e,
    };
    match recognise::recognise(&part) {
        Some(Recognised::Effects(effects)) => Outcome {
            effects,
            prepared: None,
        },
        Some(Recognised::Explain { runs, inner }) if nesting < MAX_EXPLAIN_NESTING => {
            walk::explain(classify_part(inner, opts, nesting + 1), runs)
        }
        _ => fail(format!("sqlparser could not parse it: {error}")),
    }
}

/// Normalises a function name as Postgres reads it: unquoted parts folded to
/// lower case, quotes removed, `U&"..."` decoded, schema kept
/// (`PG_CATALOG."pg_read_file"` -> `pg_catalog.pg_read_file`). Text that is
/// not a (dotted) name is trimmed and lower-cased.
pub fn normalize_function_name(raw: &str) -> String {
    let fallback = || raw.trim().to_ascii_lowercase();
    let Ok(mut tokens) = lex::tokenize(raw) else {
        return fallback();
    };
    if lex::fold_unicode_identifiers(&mut tokens).is_err() {
        return fallback();
    }
    let sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !lex::is_trivia(t))
        .collect();
    let mut parts = Vec::new();
    for (i, t) in sig.iter().enumerate() {
        match (i % 2, t) {
            (0, Token::Word(w)) => parts.push(walk::normalize_ident(&sqlparser::ast::Ident {
                value: w.value.clone(),
                quote_style: w.quote_style,
                span: sqlparser::tokenizer::Span::empty(),
            })),
            (1, Token::Period) => {}
            _ => return fallback(),
        }
    }
    if parts.is_empty() || sig.len() % 2 == 0 {
        return fallback();
    }
    parts.join(".")
}

/// Longest reason kept from a comment: it ends up in Slack and the audit log.
const MAX_REASON_CHARS: usize = 500;

/// The agent's stated reason, from the first comment of the form
/// `/* reason: nightly cleanup */` or `-- reason: ...` (case-insensitive
/// `reason:`). Only real comments count (not text inside strings); whitespace
/// runs collapse to one space and the text is capped at 500 characters.
pub fn extract_reason(sql: &str) -> Option<String> {
    use sqlparser::tokenizer::Whitespace;
    let tokens = lex::tokenize(sql).ok()?;
    tokens.iter().find_map(|t| {
        let text = match &t.token {
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => comment.as_str(),
            Token::Whitespace(Whitespace::MultiLineComment(c)) => c.as_str(),
            _ => return None,
        };
        let text = text.trim().trim_start_matches('*').trim_start();
        let head = text.get(..7)?;
        if !head.eq_ignore_ascii_case("reason:") {
            return None;
        }
        let reason: String = text[7..].split_whitespace().collect::<Vec<_>>().join(" ");
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        (!reason.is_empty()).then_some(reason)
    })
}

/// [`classify`] behind a size-bounded cache keyed by the SQL text.
///
/// Agents and drivers repeat the same texts; a hit costs one hash of the
/// text and a lookup, with no allocation and no parse.
pub struct Classifier {
    opts: Options,
    cache: moka::sync::Cache<Arc<str>, Arc<Classification>>,
    doorkeeper: Doorkeeper,
}

impl Classifier {
    /// `cache_bytes` bounds the cache by the total weight of its entries:
    /// the SQL text plus an estimate of the classification's size.
    pub fn new(opts: Options, cache_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|sql: &Arc<str>, class: &Arc<Classification>| {
                // + the cache's own per-entry overhead (keys, nodes, Arcs).
                u32::try_from(sql.len() + estimated_size(class) + 256).unwrap_or(u32::MAX)
            })
            .build();
        Classifier { opts, cache, doorkeeper: Doorkeeper::default() }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        if let Some(hit) = self.cache.get(sql) {
            return hit;
        }
        let class = Arc::new(classify(sql, &self.opts));
        // Over-long texts are cheap to classify (length check) and would
        // only evict useful entries. A text is cached the second time it is
        // seen: statements with inline literals (`WHERE id = 42`) are
        // mostly unique, and inserting each one would cost an insert and
        // an eviction per statement for no hit.
        if sql.len() <= self.opts.max_len && self.doorkeeper.seen_before(sql) {
            self.cache.insert(Arc::from(sql), Arc::clone(&class));
        }
        class
    }
}

/// A lossy "seen this text before?" filter: one hash per slot, newest wins.
/// False answers only delay caching; they never change a classification.
struct Doorkeeper {
    slots: Box<[std::sync::atomic::AtomicU64]>,
}

impl Default for Doorkeeper {
    fn default() -> Self {
        Doorkeeper { slots: (0..8192).map(|_| std::sync::atomic::AtomicU64::new(0)).collect() }
    }
}

impl Doorkeeper {
    fn seen_before(&self, sql: &str) -> bool {
        use std::hash::Hasher;
        use std::sync::atomic::Ordering::Relaxed;
        // Fixed keys: the same text must land in the same slot every time.
        // Collisions only cost a parse, never a wrong classification.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(sql.as_bytes());
        let hash = h.finish() | 1;
        let slot = &self.slots[(hash as usize) % self.slots.len()];
        slot.swap(hash, Relaxed) == hash
    }
}

fn estimated_size(class: &Classification) -> usize {
    class
        .statements
        .iter()
        .map(|s| {
            64 + s
                .effects
                .iter()
                .map(|e| {
                    96 + e.why.len()
                        + e.tables.iter().map(|t| t.len() + 24).sum::<usize>()
                        + e.functions.iter().map(|f| f.len() + 24).sum::<usize>()
                })
                .sum::<usize>()
        })
        .sum()
}
