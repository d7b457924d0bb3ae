//! From one parsed statement to its effects.
//!
//! Two passes over the AST, both needed:
//! 1. `own_effects`: an explicit, exhaustive-by-intent `match` on the
//!    statement kind. It names the statement's own category and its target
//!    objects (DROP, COPY, GRANT, COMMENT, TRIGGER, VACUUM targets: exactly
//!    the names sqlparser's visitor helpers miss, DESIGN-NOTES section 3).
//!    Any kind not listed there is `Unknown`.
//! 2. A [`Visitor`] over the whole tree (its derive reaches every field, so
//!    coverage does not depend on this file listing every AST type) that
//!    collects relations read, every function called (also in `FROM` and
//!    `LATERAL`, where sqlparser stores them as table factors), `SELECT INTO`,
//!    row locks, and nested statements (data-modifying CTEs, PREPARE bodies,
//!    EXPLAIN ANALYZE targets), each of which gets pass 1 too.
//!
//! Over-approximation is the rule where the tree is ambiguous: a name that
//! may be a table is listed, a WHERE that may match every row is destructive.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, CopySource, CopyTarget, DescribeAlias, DiscardObject, Expr, FromTable,
    Function, FunctionArg, FunctionArgExpr, FunctionArguments, GrantObjects, Ident, MergeAction,
    MergeClauseKind, ObjectName, ObjectNamePart, ObjectType, Query, Reset, SchemaName, Select, Set,
    SetExpr, Statement, TableFactor, TableObject, UpdateTableFromKind, UtilityOption, Value, Visit,
    Visitor,
};

use super::functions::{self, base_name, is_privileged_setting};
use super::restrict::{Targets, restricts, subquery_restricts};
use super::{Category, Effect, Options, PreparedOp};

/// What one statement amounts to.
pub(super) struct Outcome {
    pub effects: Vec<Effect>,
    pub prepared: Option<PreparedOp>,
}

pub(super) fn effect(category: Category, tables: Vec<String>, why: impl Into<String>) -> Effect {
    Effect {
        category,
        tables,
        functions: Vec::new(),
        why: why.into(),
    }
}

pub(super) fn unknown(why: impl Into<String>) -> Effect {
    effect(Category::Unknown, Vec::new(), why)
}

/// Postgres' lexical name resolution: unquoted identifiers fold ASCII
/// letters to lower case, quoted ones are kept verbatim, and both are
/// truncated to NAMEDATALEN-1 = 63 bytes.
pub(super) fn normalize_ident(id: &Ident) -> String {
    let value = if id.quote_style.is_none() {
        id.value.to_ascii_lowercase()
    } else {
        id.value.clone()
    };
    truncate_identifier(value)
}

fn truncate_identifier(mut s: String) -> String {
    if s.len() > 63 {
        let mut cut = 63;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

thread_local! {
    /// Set when the walk looks at a literal's value (or prints a node that
    /// may contain one). A classification that depends on literal values
    /// must not be shared between texts of one shape (`shape`).
    static LITERAL_READ: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(super) fn note_literal_read() {
    LITERAL_READ.with(|c| c.set(true));
}

/// Whether a literal was read since the last call; resets the flag.
pub(super) fn take_literal_read() -> bool {
    LITERAL_READ.with(|c| c.replace(false))
}

pub(super) fn normalize_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(id) => out.push_str(&normalize_ident(id)),
            other => {
                note_literal_read();
                out.push_str(&other.to_string().to_ascii_lowercase())
            }
        }
    }
    out
}

/// A setting's name as Postgres looks it up: every part, dotted, in
/// lowercase (quoted or not, `"Role"` and `role` are one setting).
fn setting_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(id) => out.push_str(&id.value),
            other => {
                note_literal_read();
                out.push_str(&other.to_string());
            }
        }
    }
    out.make_ascii_lowercase();
    out
}

/// `pg_catalog.x` (also `db.pg_catalog.x`, which PostgreSQL accepts for
/// the current database), or an unqualified `pg_x`: the implicit
/// `pg_catalog` comes first in every search path, so that is where it
/// resolves.
fn is_catalog_relation(normalized: &str) -> bool {
    match normalized.rsplit_once('.') {
        Some((qualifier, _)) => qualifier.rsplit('.').next() == Some("pg_catalog"),
        None => normalized.starts_with("pg_"),
    }
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

/// Classifies one parsed statement.
pub(super) fn classify_statement(stmt: &Statement, opts: &Options) -> Outcome {
    if let Statement::Explain {
        describe_alias,
        analyze,
        statement,
        options,
        ..
    } = stmt
    {
        if *describe_alias != DescribeAlias::Explain {
            return Outcome {
                effects: vec![unknown("DESCRIBE is not PostgreSQL")],
                prepared: None,
            };
        }
        let explainable = matches!(
            **statement,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Merge(_)
                | Statement::Execute { .. }
                | Statement::Declare { .. }
                | Statement::CreateTable(_)
                | Statement::CreateView(_)
        );
        if !explainable {
            let why = "EXPLAIN of a statement kind Postgres cannot explain";
            return Outcome {
                effects: vec![unknown(why)],
                prepared: None,
            };
        }
        let runs = *analyze || options.as_deref().is_some_and(options_say_analyze);
        let inner = classify_statement(statement, opts);
        if !runs && matches!(**statement, Statement::Execute { .. }) {
            // EXPLAIN EXECUTE evaluates the arguments (the plan is made for
            // their values), so their effects are real; the prepared
            // statement itself is only planned.
            let mut out = explain(
                Outcome {
                    effects: Vec::new(),
                    prepared: None,
                },
                false,
            );
            out.effects.extend(inner.effects);
            return out;
        }
        return explain(inner, runs);
    }
    let mut c = Collector::new(stmt, opts);
    c.own_effects(stmt);
    let _ = stmt.visit(&mut c);
    c.finish()
}

/// EXPLAIN ANALYZE runs its statement: the inner effects stand. Plain
/// EXPLAIN only plans it: one read of the same objects, except that an
/// inner `Unknown` stays unknown (EXPLAIN accepts few statement kinds).
pub(super) fn explain(inner: Outcome, runs: bool) -> Outcome {
    if runs {
        return inner;
    }
    let mut read = effect(
        Category::Read,
        Vec::new(),
        "EXPLAIN without ANALYZE plans the statement without running it",
    );
    let mut effects = Vec::new();
    for e in inner.effects {
        if e.category == Category::Unknown {
            effects.push(e);
        } else {
            read.tables.extend(e.tables);
            read.functions.extend(e.functions);
        }
    }
    dedup(&mut read.tables);
    dedup(&mut read.functions);
    effects.insert(0, read);
    Outcome {
        effects,
        prepared: None,
    }
}

/// `EXPLAIN (ANALYZE)`, `(ANALYSE on)`, `(analyze true, ...)`: Postgres'
/// boolean option parser accepts no argument, true/false/on/off and 1/0.
/// Anything other than an explicit false counts as on (fail closed).
fn options_say_analyze(options: &[UtilityOption]) -> bool {
    options.iter().any(|o| {
        let name = o.name.value.to_ascii_lowercase();
        (name == "analyze" || name == "analyse") && !o.arg.as_ref().is_some_and(is_false_literal)
    })
}

fn is_false_literal(e: &Expr) -> bool {
    note_literal_read();
    let text = match e {
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => return !*b,
            Value::Number(..) => v.value.to_string(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return false,
        },
        Expr::Identifier(id) => id.value.clone(),
        _ => return false,
    };
    matches!(text.to_ascii_lowercase().as_str(), "false" | "off" | "0")
}

/// Visibility of CTE names inside one query (see `Collector::is_cte`).
struct CteScope {
    names: Vec<(String, *const Query)>,
    recursive: bool,
    /// Index of the CTE whose body is being visited, if any.
    current: Option<usize>,
}

struct Collector<'o, 'a> {
    opts: &'o Options,
    root: &'a Statement,
    /// CTE lookups left to `restrict` judgements of this statement.
    lookups: std::cell::Cell<usize>,
    effects: Vec<Effect>,
    reads: Vec<String>,
    functions: Vec<String>,
    /// Addresses of DML target names, so they are not also listed as reads.
    targets: HashSet<usize>,
    scopes: Vec<CteScope>,
    prepared: Option<PreparedOp>,
    /// The root is a query (or cursor work): emit a read effect even when
    /// it names no table (`SELECT 1`).
    read_root: bool,
}

fn addr<T>(x: &T) -> usize {
    x as *const T as usize
}

impl<'o, 'a> Collector<'o, 'a> {
    fn new(root: &'a Statement, opts: &'o Options) -> Self {
        Collector {
            opts,
            root,
            lookups: std::cell::Cell::new(0),
            effects: Vec::new(),
            reads: Vec::new(),
            functions: Vec::new(),
            targets: HashSet::new(),
            scopes: Vec::new(),
            prepared: None,
            read_root: false,
        }
    }

    fn push(&mut self, category: Category, tables: Vec<String>, why: impl Into<String>) {
        self.effects.push(effect(category, tables, why));
    }

    fn push_functions(
        &mut self,
        category: Category,
        functions: Vec<String>,
        why: impl Into<String>,
    ) {
        self.effects.push(Effect {
            category,
            tables: Vec::new(),
            functions,
            why: why.into(),
        });
    }

    fn finish(mut self) -> Outcome {
        dedup(&mut self.reads);
        dedup(&mut self.functions);
        if self.read_root || !self.reads.is_empty() || !self.functions.is_empty() {
            let why = if self.read_root {
                "query"
            } else {
                "reads tables / calls functions"
            };
            let read = Effect {
                category: Category::Read,
                tables: std::mem::take(&mut self.reads),
                functions: std::mem::take(&mut self.functions),
                why: why.into(),
            };
            self.effects.insert(0, read);
        }
        Outcome {
            effects: self.effects,
            prepared: self.prepared,
        }
    }

    /// Is an unqualified relation name a reference to a CTE in scope?
    /// Non-recursive CTEs see only the CTEs listed before them; the main
    /// query sees all. A name that is not certainly a CTE is a table.
    fn is_cte(&self, name: &ObjectName) -> bool {
        if name.0.len() != 1 {
            return false;
        }
        let n = normalize_name(name);
        self.scopes.iter().any(|s| {
            let visible = match s.current {
                Some(i) if !s.recursive => &s.names[..i],
                _ => &s.names[..],
            };
            visible.iter().any(|(c, _)| *c == n)
        })
    }

    fn mark_target(&mut self, name: &ObjectName) {
        self.targets.insert(addr(name));
    }

    /// The target of UPDATE / DELETE / MERGE: normalised name and the alias
    /// that qualifies its columns.
    fn target(&mut self, tf: &TableFactor) -> Option<(String, Option<Ident>)> {
        match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                self.mark_target(name);
                match (is_only(name), alias) {
                    (false, _) => {
                        Some((normalize_name(name), alias.as_ref().map(|a| a.name.clone())))
                    }
                    (true, Some(a)) if a.columns.is_empty() => {
                        Some((normalize_ident(&a.name), Some(a.name.clone())))
                    }
                    (true, _) => None,
                }
            }
            _ => None,
        }
    }

    /// A function's own `SET setting = ...` clause: every call of the
    /// function runs with it (`SET role`, a tenant id), so naming a
    /// privileged setting there is that privilege change, to come.
    fn function_setting(&mut self, function: &str, p: &sqlparser::ast::FunctionDefinitionSetParam) {
        let setting = setting_name(&p.name);
        if is_privileged_setting(&setting, &self.opts.privileged_settings) {
            self.push_functions(
                Category::Privilege,
                vec![function.to_string()],
                format!("function {function} sets privileged setting {setting} for its calls"),
            );
        }
    }

    /// `x.f` where `f` may be a function of the rule files (see
    /// `pre_visit_expr`).
    fn attribute_call(&mut self, id: &Ident) {
        let n = normalize_ident(id);
        if let Some((category, why)) = functions::lookup_extra(&n, &self.opts.extra_functions)
            && category != Category::Read
        {
            self.push_functions(category, vec![n], format!("{why} (attribute notation)"));
        }
    }

    fn call(&mut self, name: &ObjectName, args: Option<&[FunctionArg]>) {
        let n = normalize_name(name);
        if base_name(&n) == "set_config"
            && functions::lookup(&n, &self.opts.extra_functions).is_none()
        {
            let (category, why) = set_config_effect(args, &self.opts.privileged_settings);
            self.push_functions(category, vec![n.clone()], why);
        } else if let Some((category, why)) = functions::lookup(&n, &self.opts.extra_functions) {
            if category != Category::Read {
                self.push_functions(category, vec![n.clone()], why);
            }
        }
        self.functions.push(n);
    }

    /// `INSERT INTO t SELECT ... FROM t ... ON CONFLICT DO UPDATE`: every
    /// row the source returns conflicts with itself, so when the source may
    /// return all of `t` (`restrict::subquery_restricts`) and the DO UPDATE
    /// has no restricting WHERE, every row may be updated.
    fn upsert_may_update_all(&self, ins: &sqlparser::ast::Insert, n: &str) -> bool {
        use sqlparser::ast::{OnConflictAction, OnInsert};
        let Some(OnInsert::OnConflict(c)) = &ins.on else {
            return false;
        };
        let OnConflictAction::DoUpdate(du) = &c.action else {
            return false;
        };
        let Some(source) = &ins.source else {
            return false;
        };
        let alias = ins.table_alias.as_ref().map(|a| a.alias.clone());
        let t = Targets::new(&[(n.to_string(), alias)], true, self.root, &self.lookups);
        !subquery_restricts(source, &t, false)
            && !du
                .selection
                .as_ref()
                .is_some_and(|w| restricts(w, &t, false))
    }

    fn write_target(&mut self, verb: &str, n: &str) -> Category {
        if is_catalog_relation(n) {
            self.push(
                Category::Privilege,
                vec![n.to_string()],
                format!("{verb} a system catalog (UPDATE pg_settings is set_config in disguise)"),
            );
            return Category::Privilege;
        }
        Category::Write
    }

    /// Pass 1: the statement's own category and targets.
    fn own_effects(&mut self, stmt: &Statement) {
        use Category::*;
        let is_root = std::ptr::eq(stmt, self.root);
        match stmt {
            // Nested queries too (`PREPARE p AS SELECT 1` must not be empty).
            Statement::Query(_) => self.read_root = true,
            Statement::Insert(ins) => match &ins.table {
                TableObject::TableName(name) => {
                    let n = normalize_name(name);
                    if self.write_target("INSERT into", &n) != Write {
                        return;
                    }
                    if self.upsert_may_update_all(ins, &n) {
                        self.push(
                            Destructive,
                            vec![n],
                            "INSERT ... SELECT from the table itself ... ON CONFLICT DO UPDATE may update every row",
                        );
                    } else {
                        self.push(Write, vec![n], "INSERT");
                    }
                }
                _ => self
                    .effects
                    .push(unknown("INSERT into a table function or query")),
            },
            Statement::Update(u) => {
                let Some((n, alias)) = self.target(&u.table.relation) else {
                    self.effects
                        .push(unknown("UPDATE of something other than a table"));
                    return;
                };
                if self.write_target("UPDATE of", &n) != Write {
                    return;
                }
                let others = !u.table.joins.is_empty()
                    || matches!(&u.from, Some(UpdateTableFromKind::BeforeSet(v) | UpdateTableFromKind::AfterSet(v)) if !v.is_empty());
                let mut t = Targets::new(&[(n.clone(), alias)], !others, self.root, &self.lookups);
                for j in &u.table.joins {
                    t.join(&j.relation);
                }
                if let Some(UpdateTableFromKind::BeforeSet(v) | UpdateTableFromKind::AfterSet(v)) =
                    &u.from
                {
                    for twj in v {
                        t.join(&twj.relation);
                        for j in &twj.joins {
                            t.join(&j.relation);
                        }
                    }
                }
                let restricted = u.selection.as_ref().map(|w| restricts(w, &t, false));
                match restricted {
                    None => self.push(
                        Destructive,
                        vec![n],
                        "UPDATE without WHERE changes every row",
                    ),
                    Some(false) => self.push(
                        Destructive,
                        vec![n],
                        "UPDATE whose WHERE is always true or does not depend on the table",
                    ),
                    Some(_) => self.push(Write, vec![n], "UPDATE with WHERE"),
                }
            }
            Statement::Delete(d) => {
                let from = match &d.from {
                    FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                };
                let mut names = Vec::new();
                for twj in from {
                    match self.target(&twj.relation) {
                        Some(target) => names.push(target),
                        None => {
                            self.effects
                                .push(unknown("DELETE from something other than a table"));
                            return;
                        }
                    }
                }
                for name in &d.tables {
                    self.mark_target(name);
                    names.push((normalize_name(name), None));
                }
                for (n, _) in &names {
                    if self.write_target("DELETE from", n) != Write {
                        return;
                    }
                }
                let others = d.using.as_ref().is_some_and(|u| !u.is_empty())
                    || from.iter().any(|f| !f.joins.is_empty())
                    || names.len() > 1;
                let mut t = Targets::new(&names, !others, self.root, &self.lookups);
                // FROM items are targets already; their joins and USING
                // may name the target again.
                for j in from.iter().flat_map(|f| &f.joins) {
                    t.join(&j.relation);
                }
                for twj in d.using.iter().flatten() {
                    t.join(&twj.relation);
                    for j in &twj.joins {
                        t.join(&j.relation);
                    }
                }
                let restricted = d.selection.as_ref().map(|w| restricts(w, &t, false));
                let tables: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
                match restricted {
                    None => self.push(
                        Destructive,
                        tables,
                        "DELETE without WHERE removes every row",
                    ),
                    Some(false) => self.push(
                        Destructive,
                        tables,
                        "DELETE whose WHERE is always true or does not depend on the table",
                    ),
                    Some(_) => self.push(Write, tables, "DELETE with WHERE"),
                }
            }
            Statement::Merge(m) => {
                let Some((n, alias)) = self.target(&m.table) else {
                    self.effects
                        .push(unknown("MERGE into something other than a table"));
                    return;
                };
                if self.write_target("MERGE into", &n) != Write {
                    return;
                }
                let mut t = Targets::new(&[(n.clone(), alias)], false, self.root, &self.lookups);
                t.join(&m.source);
                let on_restricts = restricts(&m.on, &t, false);
                let wipes = m.clauses.iter().any(|c| {
                    let changes = matches!(
                        c.action,
                        MergeAction::Delete { .. } | MergeAction::Update(_)
                    );
                    let by_source = matches!(c.clause_kind, MergeClauseKind::NotMatchedBySource);
                    let pred_restricts = c
                        .predicate
                        .as_ref()
                        .is_some_and(|p| restricts(p, &t, false));
                    changes && (by_source || (!on_restricts && !pred_restricts))
                });
                if wipes {
                    self.push(
                        Destructive,
                        vec![n],
                        "MERGE that may update or delete every row (ON always true, or NOT MATCHED BY SOURCE)",
                    );
                } else {
                    self.push(Write, vec![n], "MERGE");
                }
            }
            Statement::Truncate(t) => {
                let tables = t
                    .table_names
                    .iter()
                    .map(|x| normalize_name(&x.name))
                    .collect();
                self.push(Destructive, tables, "TRUNCATE removes every row");
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                let tables = match source {
                    CopySource::Table { table_name, .. } => vec![normalize_name(table_name)],
                    CopySource::Query(_) => Vec::new(),
                };
                // COPY into a catalog is INSERT into it: its effect is added
                // to whatever the direction and source below add.
                if !to {
                    for t in tables.iter().filter(|t| is_catalog_relation(t)) {
                        self.write_target("COPY into", t);
                    }
                }
                match (to, target) {
                    (true, CopyTarget::Stdout) => {
                        self.push(Export, tables, "COPY TO STDOUT copies data out")
                    }
                    (true, CopyTarget::File { .. }) => {
                        self.push(Export, tables, "COPY TO a server file")
                    }
                    (false, CopyTarget::Stdin) => {
                        self.prepared = Some(PreparedOp::CopyFromStdin);
                        self.push(Write, tables, "COPY FROM STDIN loads rows")
                    }
                    (false, CopyTarget::File { .. }) => {
                        self.push(Write, tables.clone(), "COPY FROM loads rows");
                        self.push(Export, tables, "COPY FROM reads a server file");
                    }
                    (_, CopyTarget::Program { .. }) => {
                        self.push(
                            Export,
                            tables,
                            "COPY ... PROGRAM moves data through a server program",
                        );
                        self.push(
                            Procedural,
                            Vec::new(),
                            "COPY ... PROGRAM runs an OS command on the server",
                        );
                    }
                    (true, CopyTarget::Stdin) | (false, CopyTarget::Stdout) => self
                        .effects
                        .push(unknown("COPY with an impossible direction")),
                }
            }
            Statement::Call(f) => {
                let n = normalize_name(&f.name);
                self.push_functions(Procedural, vec![n.clone()], "CALL runs a procedure");
                self.call(&f.name, fn_args(f));
            }
            Statement::Declare { stmts } => {
                if stmts
                    .iter()
                    .all(|d| d.for_query.is_some() && d.assignment.is_none())
                {
                    self.read_root |= is_root;
                    self.push(Read, Vec::new(), "DECLARE CURSOR");
                } else {
                    self.effects.push(unknown("DECLARE other than a cursor"));
                }
            }
            Statement::Fetch {
                name, into: None, ..
            } => {
                self.prepared = Some(PreparedOp::Fetch {
                    portal: normalize_ident(name),
                });
                self.push(Read, Vec::new(), "FETCH from a cursor")
            }
            Statement::Close { .. } => self.push(Session, Vec::new(), "CLOSE cursor"),
            Statement::Lock(l) => {
                let tables = l.tables.iter().map(|x| normalize_name(&x.name)).collect();
                // SHARE and stronger conflict with ROW EXCLUSIVE, the lock
                // every INSERT/UPDATE/DELETE takes: the table stops taking
                // writes (ACCESS EXCLUSIVE, the mode of a bare `LOCK t`,
                // stops reads too) until the transaction ends, as a schema
                // change would; an agent that then idles holds production
                // hostage. The weaker modes only conflict with DDL-level locks.
                use sqlparser::ast::LockTableMode as M;
                match l.lock_mode {
                    None | Some(M::Share | M::ShareRowExclusive | M::Exclusive | M::AccessExclusive) => {
                        self.push(
                            Ddl,
                            tables,
                            "LOCK TABLE in SHARE mode or stronger (a bare LOCK is ACCESS EXCLUSIVE) blocks other sessions' writes, or all access, until the transaction ends",
                        )
                    }
                    Some(M::AccessShare | M::RowShare | M::RowExclusive | M::ShareUpdateExclusive) => {
                        self.push(
                            Write,
                            tables,
                            "LOCK TABLE in a weak mode blocks only schema changes and maintenance until the transaction ends",
                        )
                    }
                }
            }
            Statement::Analyze(a) => {
                if a.partitions.is_some()
                    || a.for_columns
                    || a.cache_metadata
                    || a.noscan
                    || a.compute_statistics
                {
                    self.effects
                        .push(unknown("ANALYZE form that is not PostgreSQL"));
                } else {
                    let tables = a.table_name.iter().map(normalize_name).collect();
                    self.push(Write, tables, "ANALYZE updates planner statistics");
                }
            }
            Statement::Vacuum(v) => {
                if v.sort_only
                    || v.delete_only
                    || v.reindex
                    || v.recluster
                    || v.boost
                    || v.threshold.is_some()
                {
                    self.effects
                        .push(unknown("VACUUM form that is not PostgreSQL"));
                } else {
                    let tables = v.table_name.iter().map(normalize_name).collect();
                    if v.full {
                        self.push(
                            Ddl,
                            tables,
                            "VACUUM FULL rewrites the table under an exclusive lock",
                        );
                    } else {
                        self.push(Write, tables, "VACUUM");
                    }
                }
            }

            // Session state.
            Statement::Set(set) => self.set(set),
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => self.push(
                    Privilege,
                    Vec::new(),
                    "RESET ALL also resets role and session authorization",
                ),
                Reset::SessionAuthorization => {
                    self.push(Privilege, Vec::new(), "RESET SESSION AUTHORIZATION")
                }
                Reset::ConfigurationParameter(name) => {
                    let setting = setting_name(name);
                    if is_privileged_setting(&setting, &self.opts.privileged_settings) {
                        self.push(
                            Privilege,
                            Vec::new(),
                            format!("RESET of privileged setting {setting}"),
                        );
                    } else {
                        self.push(
                            Session,
                            Vec::new(),
                            format!("RESET {}", normalize_name(name)),
                        );
                    }
                }
            },
            Statement::ShowVariable { .. } => self.push(Session, Vec::new(), "SHOW"),
            Statement::Discard { object_type } => match object_type {
                DiscardObject::ALL => {
                    self.prepared = Some(PreparedOp::DeallocateAll);
                    self.push(
                        Privilege,
                        Vec::new(),
                        "DISCARD ALL also resets role and session authorization",
                    );
                }
                _ => self.push(Session, Vec::new(), "DISCARD"),
            },
            Statement::LISTEN { .. } => self.push(Session, Vec::new(), "LISTEN"),
            Statement::UNLISTEN { .. } => self.push(Session, Vec::new(), "UNLISTEN"),
            Statement::NOTIFY { .. } => self.push(Session, Vec::new(), "NOTIFY"),
            Statement::Load { .. } => self.push(
                Privilege,
                Vec::new(),
                "LOAD loads a shared library into the server",
            ),

            // Prepared statements: classify is pure, the session keeps the state.
            Statement::Prepare { name, .. } => {
                // The inner statement is reached by the visitor as a nested statement.
                self.prepared = Some(PreparedOp::Prepare {
                    name: normalize_ident(name),
                });
            }
            Statement::Execute {
                name: Some(name),
                immediate: false,
                into,
                using,
                output: false,
                default: false,
                ..
            } if into.is_empty() && using.is_empty() => {
                // Effects stay empty unless the parameters themselves call
                // functions or read tables (the visitor adds those).
                self.prepared = Some(PreparedOp::Execute {
                    name: normalize_name(name),
                });
            }
            Statement::Deallocate { name, .. } => {
                self.prepared = Some(
                    if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                        PreparedOp::DeallocateAll
                    } else {
                        PreparedOp::Deallocate {
                            name: normalize_ident(name),
                        }
                    },
                );
                self.push(Session, Vec::new(), "DEALLOCATE");
            }
            // A nested EXPLAIN (only reachable through PREPARE, which Postgres
            // rejects): its statement is visited at full danger.
            Statement::Explain { .. } => {}

            // Transactions.
            Statement::StartTransaction {
                statements,
                exception: None,
                has_end_keyword: false,
                ..
            } if statements.is_empty() => self.push(Transaction, Vec::new(), "BEGIN"),
            Statement::Commit { .. } => self.push(Transaction, Vec::new(), "COMMIT"),
            Statement::Rollback { .. } => self.push(Transaction, Vec::new(), "ROLLBACK"),
            Statement::Savepoint { .. } => self.push(Transaction, Vec::new(), "SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => {
                self.push(Transaction, Vec::new(), "RELEASE SAVEPOINT")
            }

            // Privileges and roles.
            Statement::Grant(g) => {
                let (tables, funcs) = grant_objects(g.objects.as_ref());
                self.effects.push(Effect {
                    category: Privilege,
                    tables,
                    functions: funcs,
                    why: "GRANT".into(),
                });
            }
            Statement::Revoke(r) => {
                let (tables, funcs) = grant_objects(r.objects.as_ref());
                self.effects.push(Effect {
                    category: Privilege,
                    tables,
                    functions: funcs,
                    why: "REVOKE".into(),
                });
            }
            Statement::CreateRole(_) => self.push(Privilege, Vec::new(), "CREATE ROLE"),
            Statement::AlterRole { .. } => self.push(Privilege, Vec::new(), "ALTER ROLE"),
            Statement::CreateUser(_) => self.push(Privilege, Vec::new(), "CREATE USER"),
            Statement::AlterUser(_) => self.push(Privilege, Vec::new(), "ALTER USER"),
            Statement::CreatePolicy(p) => self.push(
                Privilege,
                vec![normalize_name(&p.table_name)],
                "CREATE POLICY changes row-level access",
            ),
            Statement::AlterPolicy(p) => self.push(
                Privilege,
                vec![normalize_name(&p.table_name)],
                "ALTER POLICY changes row-level access",
            ),
            Statement::DropPolicy(p) => self.push(
                Privilege,
                vec![normalize_name(&p.table_name)],
                "DROP POLICY changes row-level access",
            ),

            // DDL.
            Statement::CreateTable(ct) => {
                let n = normalize_name(&ct.name);
                self.push(Ddl, vec![n.clone()], "CREATE TABLE");
                if ct.query.is_some() {
                    self.push(
                        Export,
                        vec![n],
                        "CREATE TABLE AS copies query results into a new table",
                    );
                }
            }
            Statement::CreateView(v) => {
                let n = normalize_name(&v.name);
                self.push(
                    Ddl,
                    vec![n.clone()],
                    if v.materialized {
                        "CREATE MATERIALIZED VIEW"
                    } else {
                        "CREATE VIEW"
                    },
                );
                if v.materialized {
                    self.push(Export, vec![n], "a materialized view copies query results");
                }
            }
            Statement::CreateIndex(ci) => {
                let mut tables = vec![normalize_name(&ci.table_name)];
                tables.extend(ci.name.iter().map(normalize_name));
                self.push(Ddl, tables, "CREATE INDEX");
            }
            Statement::CreateFunction(f) => {
                let n = normalize_name(&f.name);
                self.push_functions(Ddl, vec![n.clone()], "CREATE FUNCTION");
                for p in &f.set_params {
                    self.function_setting(&n, p);
                }
            }
            Statement::CreateProcedure { name, .. } => {
                self.push_functions(Ddl, vec![normalize_name(name)], "CREATE PROCEDURE")
            }
            Statement::CreateTrigger(tr) => {
                let funcs = tr
                    .exec_body
                    .iter()
                    .map(|b| normalize_name(&b.func_desc.name))
                    .collect();
                self.effects.push(Effect {
                    category: Ddl,
                    tables: vec![normalize_name(&tr.table_name), normalize_name(&tr.name)],
                    functions: funcs,
                    why: "CREATE TRIGGER".into(),
                });
            }
            Statement::DropTrigger(tr) => {
                let mut tables: Vec<String> = tr.table_name.iter().map(normalize_name).collect();
                tables.push(normalize_name(&tr.trigger_name));
                self.push(Ddl, tables, "DROP TRIGGER");
            }
            Statement::CreateSchema { schema_name, .. } => {
                let n = match schema_name {
                    SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => {
                        normalize_name(n)
                    }
                    SchemaName::UnnamedAuthorization(id) => normalize_ident(id),
                };
                self.push(Ddl, vec![n], "CREATE SCHEMA")
            }
            Statement::CreateDatabase { db_name, .. } => {
                self.push(Ddl, vec![normalize_name(db_name)], "CREATE DATABASE")
            }
            Statement::CreateExtension(e) => self.push(
                Ddl,
                vec![normalize_ident(&e.name)],
                "CREATE EXTENSION runs the extension's script",
            ),
            Statement::DropExtension(e) => self.push(
                Ddl,
                e.names.iter().map(normalize_ident).collect(),
                "DROP EXTENSION",
            ),
            Statement::CreateSequence { name, .. } => {
                self.push(Ddl, vec![normalize_name(name)], "CREATE SEQUENCE")
            }
            Statement::CreateDomain(d) => {
                self.push(Ddl, vec![normalize_name(&d.name)], "CREATE DOMAIN")
            }
            Statement::CreateType { name, .. } => {
                self.push(Ddl, vec![normalize_name(name)], "CREATE TYPE")
            }
            Statement::CreateServer(s) => self.push(
                Ddl,
                vec![normalize_name(&s.name)],
                "CREATE SERVER (foreign data)",
            ),
            Statement::CreateCollation(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_) => {
                self.push(Ddl, Vec::new(), "CREATE (catalog object)")
            }
            Statement::AlterTable(at) => {
                let n = normalize_name(&at.name);
                let privileged = at.operations.iter().any(|op| {
                    matches!(
                        op,
                        AlterTableOperation::OwnerTo { .. }
                            | AlterTableOperation::DisableRowLevelSecurity
                            | AlterTableOperation::EnableRowLevelSecurity
                            | AlterTableOperation::ForceRowLevelSecurity
                            | AlterTableOperation::NoForceRowLevelSecurity
                    )
                });
                if privileged {
                    self.push(
                        Privilege,
                        vec![n],
                        "ALTER TABLE changes ownership or row-level security",
                    );
                } else {
                    self.push(Ddl, vec![n], "ALTER TABLE");
                }
            }
            Statement::AlterIndex { name, .. } => {
                self.alter(stmt, vec![normalize_name(name)], "ALTER INDEX")
            }
            Statement::AlterView { name, .. } => {
                self.alter(stmt, vec![normalize_name(name)], "ALTER VIEW")
            }
            Statement::AlterSchema(s) => {
                self.alter(stmt, vec![normalize_name(&s.name)], "ALTER SCHEMA")
            }
            Statement::AlterType(t) => {
                self.alter(stmt, vec![normalize_name(&t.name)], "ALTER TYPE")
            }
            Statement::AlterFunction(f) => {
                let n = normalize_name(&f.function.name);
                self.alter(stmt, Vec::new(), "ALTER FUNCTION");
                if let Some(last) = self.effects.last_mut() {
                    last.functions.push(n.clone());
                }
                if let sqlparser::ast::AlterFunctionOperation::Actions { actions, .. } =
                    &f.operation
                {
                    for a in actions {
                        if let sqlparser::ast::AlterFunctionAction::Set(p) = a {
                            self.function_setting(&n, p);
                        }
                    }
                }
            }
            Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_) => {
                self.alter(stmt, Vec::new(), "ALTER (catalog object)")
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                let mut tables: Vec<String> = names.iter().map(normalize_name).collect();
                tables.extend(table.iter().map(normalize_name));
                match object_type {
                    ObjectType::Role | ObjectType::User => {
                        self.push(Privilege, tables, "DROP ROLE")
                    }
                    ObjectType::Stage | ObjectType::Stream | ObjectType::Warehouse => self
                        .effects
                        .push(unknown("DROP of an object kind that is not PostgreSQL")),
                    other => self.push(Ddl, tables, format!("DROP {other}")),
                }
            }
            Statement::DropFunction(d) => {
                let funcs = d
                    .func_desc
                    .iter()
                    .map(|f| normalize_name(&f.name))
                    .collect();
                self.push_functions(Ddl, funcs, "DROP FUNCTION");
            }
            Statement::DropProcedure { proc_desc, .. } => {
                let funcs = proc_desc.iter().map(|f| normalize_name(&f.name)).collect();
                self.push_functions(Ddl, funcs, "DROP PROCEDURE");
            }
            Statement::DropDomain(d) => {
                self.push(Ddl, vec![normalize_name(&d.name)], "DROP DOMAIN")
            }
            Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_) => self.push(Ddl, Vec::new(), "DROP OPERATOR"),
            Statement::Comment { object_name, .. } => {
                self.push(Ddl, vec![normalize_name(object_name)], "COMMENT ON")
            }

            other => self.effects.push(unknown(format!(
                "statement kind {} is not handled by the classifier",
                variant_name(other)
            ))),
        }
    }

    /// ALTER of a non-table object: DDL, or privilege when it hands the
    /// object to another owner.
    fn alter(&mut self, stmt: &Statement, tables: Vec<String>, what: &str) {
        // sqlparser prints keywords in upper case and identifiers as
        // written; a false hit (an identifier spelled OWNER TO) only raises.
        note_literal_read();
        if stmt.to_string().contains("OWNER TO") {
            self.push(
                Category::Privilege,
                tables,
                format!("{what} OWNER TO changes ownership"),
            );
        } else {
            self.push(Category::Ddl, tables, what.to_string());
        }
    }

    fn set(&mut self, set: &Set) {
        use Category::*;
        match set {
            Set::SingleAssignment {
                hivevar: false,
                variable,
                ..
            } => {
                let setting = setting_name(variable);
                if is_privileged_setting(&setting, &self.opts.privileged_settings) {
                    self.push(
                        Privilege,
                        Vec::new(),
                        format!("SET of privileged setting {setting}"),
                    );
                } else {
                    self.push(
                        Session,
                        Vec::new(),
                        format!("SET {}", normalize_name(variable)),
                    );
                }
            }
            Set::SetRole { .. } => self.push(Privilege, Vec::new(), "SET ROLE"),
            Set::SetSessionAuthorization(_) => {
                self.push(Privilege, Vec::new(), "SET SESSION AUTHORIZATION")
            }
            Set::SetNames { .. } | Set::SetNamesDefault {} => self.push(
                Privilege,
                Vec::new(),
                "SET NAMES changes client_encoding, which changes how SQL text is split",
            ),
            Set::SetTimeZone { .. } => self.push(Session, Vec::new(), "SET TIME ZONE"),
            Set::SetTransaction { session: false, .. } => {
                self.push(Transaction, Vec::new(), "SET TRANSACTION")
            }
            Set::SetTransaction { session: true, .. } => {
                self.push(Session, Vec::new(), "SET SESSION CHARACTERISTICS")
            }
            _ => self
                .effects
                .push(unknown("SET form that is not PostgreSQL")),
        }
    }

    fn select_into(&mut self, s: &Select) {
        let Some(into) = &s.into else { return };
        let tables: Vec<String> = into
            .targets
            .iter()
            .map(|e| match e {
                Expr::Identifier(id) => normalize_ident(id),
                Expr::CompoundIdentifier(ids) => ids
                    .iter()
                    .map(normalize_ident)
                    .collect::<Vec<_>>()
                    .join("."),
                other => {
                    note_literal_read();
                    other.to_string()
                }
            })
            .collect();
        self.push(Category::Ddl, tables.clone(), "SELECT INTO creates a table");
        self.push(
            Category::Export,
            tables,
            "SELECT INTO copies query results into a new table",
        );
    }

    /// `TABLE t` inside set operations (`SELECT ... UNION TABLE t`) is stored
    /// as plain strings, which no visitor hook sees.
    fn set_expr_tables(&mut self, e: &SetExpr) {
        match e {
            SetExpr::Table(t) => {
                let mut parts = Vec::new();
                parts.extend(t.schema_name.iter().map(|s| Ident::new(s.clone())));
                parts.extend(t.table_name.iter().map(|s| Ident::new(s.clone())));
                if parts.is_empty() {
                    self.effects.push(unknown("TABLE without a name"));
                } else {
                    // The strings lost their quoting: fold them as if unquoted.
                    let n = parts
                        .iter()
                        .map(normalize_ident)
                        .collect::<Vec<_>>()
                        .join(".");
                    self.reads.push(n);
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left);
                self.set_expr_tables(right);
            }
            _ => {}
        }
    }
}

/// An unquoted `only`: a reserved word in Postgres, never a relation name.
pub(super) fn is_only(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(),
        [ObjectNamePart::Identifier(id)] if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("only"))
}

fn variant_name(stmt: &Statement) -> String {
    let dbg = format!("{stmt:?}");
    dbg.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn fn_args(f: &Function) -> Option<&[FunctionArg]> {
    match &f.args {
        FunctionArguments::List(l) => Some(&l.args),
        FunctionArguments::None => Some(&[]),
        FunctionArguments::Subquery(_) => None,
    }
}

/// `set_config(name, value, is_local)`: privileged when the setting name is
/// privileged or is not a plain string literal (it could be anything).
fn set_config_effect(args: Option<&[FunctionArg]>, extra: &[String]) -> (Category, String) {
    let name_arg = args.and_then(|args| {
        args.iter()
            .find_map(|a| match a {
                FunctionArg::Named { name, arg, .. }
                    if name.value.eq_ignore_ascii_case("setting_name") =>
                {
                    Some(arg)
                }
                _ => None,
            })
            .or_else(|| match args.first() {
                Some(FunctionArg::Unnamed(arg)) => Some(arg),
                _ => None,
            })
    });
    note_literal_read();
    let literal = match name_arg {
        Some(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            _ => None,
        },
        _ => None,
    };
    match literal {
        Some(s) if !is_privileged_setting(&s, extra) => (
            Category::Session,
            format!("set_config of ordinary setting {s}"),
        ),
        Some(s) => (
            Category::Privilege,
            format!("set_config of privileged setting {s}"),
        ),
        None => (
            Category::Privilege,
            "set_config with a setting name that is not a literal".into(),
        ),
    }
}

fn grant_objects(objects: Option<&GrantObjects>) -> (Vec<String>, Vec<String>) {
    let names = |v: &Vec<ObjectName>| v.iter().map(normalize_name).collect::<Vec<_>>();
    match objects {
        None => (Vec::new(), Vec::new()),
        Some(o) => match o {
            GrantObjects::Tables(v)
            | GrantObjects::Sequences(v)
            | GrantObjects::Views(v)
            | GrantObjects::Schemas(v)
            | GrantObjects::Databases(v) => (names(v), Vec::new()),
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllMaterializedViewsInSchema { schemas }
            | GrantObjects::AllFunctionsInSchema { schemas } => (
                names(schemas)
                    .into_iter()
                    .map(|s| format!("{s}.*"))
                    .collect(),
                Vec::new(),
            ),
            GrantObjects::Function { name, .. } | GrantObjects::Procedure { name, .. } => {
                (Vec::new(), vec![normalize_name(name)])
            }
            _ => (Vec::new(), Vec::new()),
        },
    }
}

impl Visitor for Collector<'_, '_> {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if !std::ptr::eq(s, self.root) {
            self.own_effects(s);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let qp = q as *const Query;
        if let Some(scope) = self.scopes.last_mut() {
            if let Some(i) = scope.names.iter().position(|(_, p)| *p == qp) {
                scope.current = Some(i);
            }
        }
        let (names, recursive) = match &q.with {
            Some(w) => (
                w.cte_tables
                    .iter()
                    .map(|c| (normalize_ident(&c.alias.name), &*c.query as *const Query))
                    .collect(),
                w.recursive,
            ),
            None => (Vec::new(), false),
        };
        self.scopes.push(CteScope {
            names,
            recursive,
            current: None,
        });
        self.set_expr_tables(&q.body);
        if !q.locks.is_empty() {
            self.push(
                Category::Write,
                Vec::new(),
                "SELECT ... FOR UPDATE/SHARE locks rows",
            );
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        let qp = q as *const Query;
        if let Some(scope) = self.scopes.last_mut() {
            if scope.names.iter().any(|(_, p)| *p == qp) {
                scope.current = None;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        self.select_into(s);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            // `FROM f(1)`: sqlparser stores a function call as a table with args.
            TableFactor::Table {
                name, alias, args, ..
            } if is_only(name) => {
                // sqlparser reads `FROM ONLY t` as table `only` aliased `t`
                // and `FROM ONLY (t)` as a call of `only(t)`. ONLY is reserved
                // in Postgres, so recover the real relation.
                let real = match (args, alias) {
                    (None, Some(a)) if a.columns.is_empty() => Some(normalize_ident(&a.name)),
                    (Some(args), _) => match args.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(id)))] => {
                            Some(normalize_ident(id))
                        }
                        [
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::CompoundIdentifier(
                                ids,
                            ))),
                        ] => Some(
                            ids.iter()
                                .map(normalize_ident)
                                .collect::<Vec<_>>()
                                .join("."),
                        ),
                        _ => None,
                    },
                    _ => None,
                };
                match real {
                    Some(n) if self.targets.contains(&addr(name)) => drop(n),
                    Some(n) => self.reads.push(n),
                    None => self
                        .effects
                        .push(unknown("ONLY without a recognisable relation")),
                }
            }
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => self.call(name, Some(&args.args)),
            TableFactor::Table {
                name, args: None, ..
            } if !self.targets.contains(&addr(name)) && !self.is_cte(name) => {
                self.reads.push(normalize_name(name));
            }
            TableFactor::Function { name, args, .. } => self.call(name, Some(args)),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.call(&f.name, fn_args(f)),
            // Attribute notation: `t.f` and `(t).f` call `f(t)` when no
            // column `f` exists and `f` takes `t`'s row type. Only the rule
            // files' functions are checked: the built-in ones take no row
            // type, and columns named like them (`j.schedule`) are common.
            Expr::CompoundIdentifier(ids) if ids.len() >= 2 => {
                self.attribute_call(&ids[ids.len() - 1]);
            }
            Expr::CompoundFieldAccess { access_chain, .. } => {
                for a in access_chain {
                    if let sqlparser::ast::AccessExpr::Dot(Expr::Identifier(id)) = a {
                        self.attribute_call(id);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
