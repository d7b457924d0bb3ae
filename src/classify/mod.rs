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
mod restrict;
pub(crate) mod shape;
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Extra settings whose change is a privilege action (a tenant id read
    /// by row-level security policies, say): lowercase names, dotted for
    /// custom settings, a `*` allowed at the start or end. Added to the
    /// built-in list (`role`, `pgaudit.*`, ...).
    pub privileged_settings: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_len: 64 * 1024,
            extra_functions: Vec::new(),
            privileged_settings: Vec::new(),
        }
    }
}

/// How deep `EXPLAIN EXPLAIN ...` fallback recursion may go before the
/// statement is `Unknown` (Postgres itself accepts no nesting at all).
const MAX_EXPLAIN_NESTING: usize = 4;

/// Classifies one message (a simple-protocol Query or a Parse).
pub fn classify(sql: &str, opts: &Options) -> Classification {
    classify_traced(sql, opts, &mut Trace::default())
}

/// What the classifier saw of a text's literals, for the shape cache: a
/// classification may be shared by every text of the same shape only if
/// literals were lexed and parsed as plain values and never looked at.
#[derive(Default)]
struct Trace {
    /// A part went to the keyword fallback, failed, or panicked: the
    /// outcome may hinge on literal text (a parse error, say).
    not_parsed: bool,
    /// Byte offsets of the literal tokens (any kind), in order.
    literal_tokens: Vec<(usize, Option<shape::LitKind>)>,
    /// Start locations of the literal value nodes of every parsed part.
    value_starts: Vec<sqlparser::tokenizer::Location>,
    /// Start locations of the literal tokens, for matching `value_starts`.
    token_starts: Vec<sqlparser::tokenizer::Location>,
}

fn classify_traced(sql: &str, opts: &Options, trace: &mut Trace) -> Classification {
    let whole = |why: String| Classification {
        statements: vec![StatementClass {
            span: (0, sql.len()),
            effects: Arc::from([unknown(why)]),
            prepared: None,
        }],
    };
    if sql.len() > opts.max_len {
        trace.not_parsed = true;
        return whole(format!(
            "message is {} bytes, over the {} byte limit",
            sql.len(),
            opts.max_len
        ));
    }
    if lex::dollar_tag_diverges(sql) {
        trace.not_parsed = true;
        return whole(
            "a dollar-quote tag with characters PostgreSQL and the parser read differently".into(),
        );
    }
    let mut tokens = match lex::tokenize(sql) {
        Ok(t) => t,
        Err(why) => {
            trace.not_parsed = true;
            return whole(why);
        }
    };
    if lex::operator_swallows_comment(&tokens) {
        trace.not_parsed = true;
        return whole("an operator runs into a comment (`|/*`, `<--`): PostgreSQL and the parser split the text differently".into());
    }
    if let Err(why) = lex::fold_unicode_identifiers(&mut tokens) {
        trace.not_parsed = true;
        return whole(why);
    }
    let offsets = lex::ByteOffsets::new(sql);
    for t in &tokens {
        if let Some(kind) = lex::literal_kind(&t.token) {
            trace
                .literal_tokens
                .push((offsets.offset(t.span.start), kind));
            trace.token_starts.push(t.span.start);
        }
    }
    let statements = lex::split_statements(tokens)
        .into_iter()
        .map(|part| {
            let first = part.iter().find(|t| !lex::is_trivia(&t.token));
            let last = part.iter().rev().find(|t| !lex::is_trivia(&t.token));
            let span = match (first, last) {
                (Some(f), Some(l)) => (offsets.offset(f.span.start), offsets.offset(l.span.end)),
                _ => (0, sql.len()),
            };
            let outcome = classify_part(part, opts, 0, trace);
            StatementClass {
                span,
                effects: outcome.effects.into(),
                prepared: outcome.prepared,
            }
        })
        .collect();
    Classification { statements }
}

/// Classify `sql` and say whether the result holds for every text of its
/// shape (see [`shape`]): the literals `scan` replaced are exactly the
/// tokenizer's literal tokens, each became exactly one literal value in the
/// parse tree, every part parsed, the walk never read a literal's value,
/// and the statement span is the one `scan` computes.
fn classify_for_shape(
    sql: &str,
    opts: &Options,
    literals: &[shape::Literal],
    span: (usize, usize),
) -> (Classification, bool) {
    let mut trace = Trace::default();
    walk::take_literal_read();
    let class = classify_traced(sql, opts, &mut trace);
    let read = walk::take_literal_read();
    let mut values = std::mem::take(&mut trace.value_starts);
    values.sort_unstable_by_key(|l| (l.line, l.column));
    let invariant = !read
        && !trace.not_parsed
        && class.statements.len() == 1
        && class.statements[0].span == span
        && trace.literal_tokens.len() == literals.len()
        && trace
            .literal_tokens
            .iter()
            .zip(literals)
            .all(|(&(at, kind), l)| at == l.start && kind == Some(l.kind))
        && values == trace.token_starts;
    (class, invariant)
}

fn classify_part(
    part: Vec<TokenWithSpan>,
    opts: &Options,
    nesting: usize,
    trace: &mut Trace,
) -> Outcome {
    let fail = |why: String| Outcome {
        effects: vec![unknown(why)],
        prepared: None,
    };
    let operators = lex::operator_count(&part);
    if operators > lex::MAX_OPERATORS {
        trace.not_parsed = true;
        return fail(format!(
            "statement has {operators} operators, over the {} limit for safe analysis",
            lex::MAX_OPERATORS
        ));
    }
    // sqlparser and the walk are not expected to panic, but a proxy that
    // dies on a crafted statement is worse than one that asks a human.
    catch_unwind(AssertUnwindSafe(|| {
        parse_and_walk(part, opts, nesting, trace)
    }))
    .unwrap_or_else(|_| {
        trace.not_parsed = true;
        fail("classifier panicked on this statement".into())
    })
}

fn parse_and_walk(
    part: Vec<TokenWithSpan>,
    opts: &Options,
    nesting: usize,
    trace: &mut Trace,
) -> Outcome {
    let fail = |why: String| Outcome {
        effects: vec![unknown(why)],
        prepared: None,
    };
    let mut parser = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(part.clone());
    let error = match parser.parse_statements() {
        Ok(stmts) if stmts.len() == 1 => {
            collect_value_starts(&stmts[0], &mut trace.value_starts);
            return walk::classify_statement(&stmts[0], opts);
        }
        Ok(stmts) => {
            trace.not_parsed = true;
            return fail(format!("expected one statement, parsed {}", stmts.len()));
        }
        Err(e) => e,
    };
    trace.not_parsed = true;
    match recognise::recognise(&part) {
        Some(Recognised::Effects(effects)) => Outcome {
            effects,
            prepared: None,
        },
        Some(Recognised::Explain { runs, inner }) if nesting < MAX_EXPLAIN_NESTING => {
            walk::explain(classify_part(inner, opts, nesting + 1, trace), runs)
        }
        _ => fail(format!("sqlparser could not parse it: {error}")),
    }
}

/// Start locations of every literal value node (strings and numbers of any
/// kind; not `TRUE`/`NULL`/placeholders, which are not literal tokens).
fn collect_value_starts(
    stmt: &sqlparser::ast::Statement,
    out: &mut Vec<sqlparser::tokenizer::Location>,
) {
    use sqlparser::ast::{Value, ValueWithSpan, Visit, Visitor};
    use std::ops::ControlFlow;
    struct Values<'a>(&'a mut Vec<sqlparser::tokenizer::Location>);
    impl Visitor for Values<'_> {
        type Break = ();
        fn pre_visit_value(&mut self, v: &ValueWithSpan) -> ControlFlow<()> {
            if !matches!(
                v.value,
                Value::Boolean(_) | Value::Null | Value::Placeholder(_)
            ) {
                self.0.push(v.span.start);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Values(out));
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

/// [`classify`] behind a size-bounded cache.
///
/// Agents and drivers repeat the same texts, or the same statements with
/// other literal values. Two kinds of key share one cache: the text itself,
/// and its literal-free shape ([`shape`], NUL-prefixed, so the two never
/// collide). A hit costs a scan of the text, a hash and a lookup: no parse.
pub struct Classifier {
    opts: Options,
    cache: moka::sync::Cache<Arc<str>, Entry>,
    doorkeeper: Doorkeeper,
    /// Tells this classifier's entries in a thread's [`Front`] from those
    /// of the one it replaced (a rule reload builds a new classifier).
    id: u64,
}

#[derive(Clone)]
enum Entry {
    /// Classification of exactly this text (key: the text).
    Text(Arc<Classification>),
    /// Classification shared by every text of this shape (key: the shape);
    /// its span is that of the text it was computed on. With the shape's
    /// redacted text (`shape::redacted`), which the audit trail records.
    Shape(Arc<Classification>, Arc<str>),
    /// The classifier read literal values for this shape (or could not
    /// confirm it lexes as scanned): look the text up by itself.
    Varies,
}

/// Reused buffers for one shape scan: a lookup allocates nothing, and a
/// miss reuses the literal positions the lookup's scan already found.
#[derive(Default)]
struct ShapeScratch {
    key: String,
    literals: Vec<shape::Literal>,
}

thread_local! {
    static SHAPE_SCRATCH: std::cell::RefCell<ShapeScratch> = std::cell::RefCell::new(ShapeScratch::default());
    static FRONT: std::cell::RefCell<Front> = std::cell::RefCell::new(Front::default());
}

/// Slots of a thread's [`Front`].
const FRONT_SLOTS: usize = 256;

/// A thread's last answers from the shared cache, in front of it: a
/// session thread serves many sessions repeating the same few shapes, and
/// a shared-cache lookup (SipHash, a concurrent map, recording the read
/// for the eviction policy) cost several times a lookup here (a hash of
/// the key, one comparison). Direct-mapped by key hash; a collision only
/// sends the lookup on to the shared cache. It only ever answers what the
/// shared cache answered for that key under the same classifier (`owner`
/// tells classifiers apart, so a rule reload starts it afresh); entries
/// are immutable, and one the shared cache has since evicted is still
/// right. Not counted in `cache_bytes`: at most 256 entries a thread, each
/// the thread's own copy of a cached classification (see `cached`), so a
/// thread whose hot shapes collide in a slot pays a copy per miss.
struct Front {
    owner: u64,
    slots: Vec<Option<(Arc<str>, Entry)>>,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            owner: 0,
            slots: vec![None; FRONT_SLOTS],
        }
    }
}

impl Front {
    fn slot(key: &str) -> usize {
        // FxHash-style: a few multiply-rotates over the key's words.
        // Whole words are read as words: a short copy into a zeroed
        // buffer per word compiled to a `memcpy` call each.
        fn mix(h: u64, word: u64) -> u64 {
            (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
        }
        let mut h: u64 = key.len() as u64;
        let words = key.as_bytes().chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            h = mix(h, u64::from_le_bytes(w.try_into().expect("eight bytes")));
        }
        if !tail.is_empty() {
            let word = tail
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            h = mix(h, word);
        }
        (h >> 40) as usize % FRONT_SLOTS
    }
}

static NEXT_CLASSIFIER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Classifier {
    /// Unique among the classifiers this process built (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `cache_bytes` bounds the cache by the total weight of its entries:
    /// the key plus an estimate of the classification's size.
    pub fn new(opts: Options, cache_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|key: &Arc<str>, entry: &Entry| {
                let class = match entry {
                    Entry::Text(c) => estimated_size(c),
                    Entry::Shape(c, r) => estimated_size(c) + r.len(),
                    Entry::Varies => 0,
                };
                // + the cache's own per-entry overhead (keys, nodes, Arcs).
                u32::try_from(key.len() + class + 256).unwrap_or(u32::MAX)
            })
            .build();
        let id = NEXT_CLASSIFIER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Classifier {
            opts,
            cache,
            doorkeeper: Doorkeeper::default(),
            id,
        }
    }

    /// What `pick` takes from this thread's [`Front`] slot for `key`, if
    /// the slot holds `key` (a front left by another classifier is
    /// emptied first).
    fn in_front<R>(
        &self,
        key: &str,
        pick: impl FnOnce(&Arc<str>, &Entry) -> Option<R>,
    ) -> Option<R> {
        FRONT.with(|f| {
            let mut f = f.try_borrow_mut().ok()?;
            if f.owner != self.id {
                f.owner = self.id;
                f.slots.iter_mut().for_each(|s| *s = None);
                return None;
            }
            match &f.slots[Front::slot(key)] {
                Some((k, e)) if **k == *key => pick(k, e),
                _ => None,
            }
        })
    }

    /// This thread's [`Front`] entry for `key`, if it has one.
    fn front(&self, key: &str) -> Option<Entry> {
        self.in_front(key, |_, e| Some(e.clone()))
    }

    /// The cache's entry for `key`, through this thread's [`Front`].
    fn cached(&self, key: &str) -> Option<Entry> {
        if let Some(e) = self.front(key) {
            return Some(e);
        }
        let entry = self.cache.get(key)?;
        // The front keeps this thread's own copy: the reference counts a
        // hit bumps are then this thread's, not a cache line every session
        // thread bouncing between cores on every statement.
        let own = match &entry {
            Entry::Text(c) => Entry::Text(Arc::new(c.own_copy())),
            Entry::Shape(c, r) => Entry::Shape(Arc::new(c.own_copy()), Arc::from(&**r)),
            Entry::Varies => Entry::Varies,
        };
        FRONT.with(|f| {
            if let Ok(mut f) = f.try_borrow_mut()
                && f.owner == self.id
            {
                f.slots[Front::slot(key)] = Some((Arc::from(key), own.clone()));
            }
        });
        Some(own)
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        self.classify_redacting(sql).0
    }

    /// For texts that usually repeat exactly (a Parse: drivers bind
    /// parameters rather than inline literals), asked before
    /// [`Classifier::classify_redacting`]: the classification and this
    /// thread's copy of the text, when its [`Front`] holds the text itself.
    /// The caller keeps that copy rather than copying the text again. Same
    /// answer: a text found there is one the shape path also classifies by
    /// itself (no literals, or a shape that varies), which has no shared
    /// redacted form. Not for simple-protocol texts, whose inline literals
    /// would make this probe a miss each time.
    pub fn exactly(&self, sql: &str) -> Option<(Arc<Classification>, Arc<str>)> {
        if sql.len() > self.opts.max_len {
            return None;
        }
        self.in_front(sql, |k, e| match e {
            Entry::Text(class) => Some((Arc::clone(class), Arc::clone(k))),
            _ => None,
        })
    }

    /// [`Classifier::classify`], and the text with its literals redacted
    /// when a cached shape already has it (what `audit::redact::redact`
    /// returns for `sql`): the trail then skips its own scan of the text.
    pub fn classify_redacting(&self, sql: &str) -> (Arc<Classification>, Option<Arc<str>>) {
        if sql.len() > self.opts.max_len {
            // Cheap (a length check) and would only evict useful entries.
            return (Arc::new(classify(sql, &self.opts)), None);
        }
        let by_shape = SHAPE_SCRATCH.with(|k| {
            let Ok(mut scratch) = k.try_borrow_mut() else {
                return None;
            };
            let ShapeScratch { key, literals } = &mut *scratch;
            let scanned = shape::scan(sql, key, Some(literals))?;
            if scanned.literals == 0 {
                // The shape is the text: one key kind is enough.
                return None;
            }
            Some(match self.cached(key.as_str()) {
                Some(Entry::Shape(class, redacted)) => {
                    Ok((with_span(class, scanned.span), Some(redacted)))
                }
                Some(_) => Err(()),
                None => Ok((self.classify_shape(sql, key, literals, scanned.span), None)),
            })
        });
        match by_shape {
            Some(Ok(found)) => found,
            // `Varies`, or a shape the classifier would not vouch for.
            Some(Err(())) | None => (self.classify_text(sql), None),
        }
    }

    /// Shape miss: classify this text, then cache the result under its
    /// shape if it holds for every text of the shape, else remember that it
    /// does not. Both on the shape's second sighting (doorkeeper).
    fn classify_shape(
        &self,
        sql: &str,
        key: &str,
        literals: &[shape::Literal],
        span: (usize, usize),
    ) -> Arc<Classification> {
        let (class, invariant) = classify_for_shape(sql, &self.opts, literals, span);
        let class = Arc::new(class);
        if self.doorkeeper.seen_before(key) {
            let entry = if invariant {
                Entry::Shape(Arc::clone(&class), Arc::from(shape::redacted(key)))
            } else {
                Entry::Varies
            };
            self.cache.insert(Arc::from(key), entry);
        }
        // Either way it is this text's classification.
        class
    }

    fn classify_text(&self, sql: &str) -> Arc<Classification> {
        if let Some(Entry::Text(hit)) = self.cached(sql) {
            return hit;
        }
        let class = Arc::new(classify(sql, &self.opts));
        // A text is cached the second time it is seen: texts with inline
        // literals the shape key cannot absorb are mostly unique, and
        // inserting each one would cost an insert and an eviction per
        // statement for no hit.
        if self.doorkeeper.seen_before(sql) {
            self.cache
                .insert(Arc::from(sql), Entry::Text(Arc::clone(&class)));
        }
        class
    }
}

/// A shape's classification with this text's span (texts of one shape
/// differ in literal lengths, so spans differ).
fn with_span(class: Arc<Classification>, span: (usize, usize)) -> Arc<Classification> {
    match class.statements.as_slice() {
        [st] if st.span != span => Arc::new(Classification {
            statements: vec![StatementClass {
                span,
                effects: Arc::clone(&st.effects),
                prepared: st.prepared.clone(),
            }],
        }),
        _ => class,
    }
}

/// A lossy "seen this text before?" filter: one hash per slot, newest wins.
/// False answers only delay caching; they never change a classification.
struct Doorkeeper {
    slots: Box<[std::sync::atomic::AtomicU64]>,
}

impl Default for Doorkeeper {
    fn default() -> Self {
        Doorkeeper {
            slots: (0..8192)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
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
