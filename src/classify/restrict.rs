//! Can a WHERE leave some of its target's rows alone?
//!
//! `UPDATE` / `DELETE` / `MERGE` whose condition is (or may be) true for
//! every row are destructive, not ordinary writes. Syntax alone decides
//! here, so the judgement over-approximates towards "always true" wherever
//! the tree is ambiguous:
//! - a condition that does not read a target column, compares a value with
//!   itself, or is `OR`ed with such a branch;
//! - a subquery (`IN`, `= ANY`, `<> ALL`) that reads the target table
//!   itself restricts only through its own WHERE, judged the same way
//!   (`id IN (SELECT id FROM users)` is every row); CTEs and derived tables
//!   it reads are followed; joins and set operations there are not;
//! - a subquery correlated with the target row (`EXISTS`, `id = (SELECT
//!   u.id FROM users u WHERE u.id = users.id)`) is not analysed;
//! - a relation joined in again (`UPDATE users ... FROM users u2`, `DELETE
//!   ... USING`, `MERGE ... USING users s`) qualifies target columns too,
//!   so `users.id = u2.id` compares a value with itself.
//!
//! Value tautologies (`id > 0`, `id IS NOT NULL` on a NOT NULL column, a
//! view of the same table) need the schema or the data and are not seen.

use std::cell::Cell;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, Query, SetExpr, Statement, TableFactor, UnaryOperator,
    Value, Visit, Visitor,
};

use super::functions::base_name;
use super::walk::{is_only, normalize_ident, normalize_name, note_literal_read};

/// How deep subqueries, CTEs and derived tables are followed; deeper is
/// judged "always true".
const MAX_DEPTH: usize = 6;
/// How many CTE lookups (each a walk of the whole statement) one judgement
/// may make: a statement of many CTEs naming each other cannot make it
/// quadratic. Past it, every relation is taken to read the target.
const CTE_LOOKUPS: usize = 64;

/// Which relations a WHERE must reference to restrict the target rows.
pub(super) struct Targets<'a> {
    /// Accepted qualifiers of target columns (alias, or table name and
    /// schema-qualified name), normalised.
    qualifiers: Vec<String>,
    /// Whether an unqualified column counts as a target column: only when
    /// no other relation is in scope (no USING / FROM / MERGE source).
    unqualified: bool,
    /// Unqualified names of the target tables: a subquery that reads one
    /// of them may return every target row.
    tables: Vec<String>,
    /// The whole statement, where CTE names are looked up.
    root: &'a Statement,
    depth: usize,
    lookups: &'a Cell<usize>,
}

impl<'a> Targets<'a> {
    /// `relations`: each target's normalised name and its alias, if any.
    pub(super) fn new(
        relations: &[(String, Option<Ident>)],
        unqualified: bool,
        root: &'a Statement,
        lookups: &'a Cell<usize>,
    ) -> Self {
        let mut t = Targets {
            qualifiers: Vec::new(),
            unqualified,
            tables: relations
                .iter()
                .map(|(n, _)| base_name(n).to_string())
                .collect(),
            root,
            depth: 0,
            lookups,
        };
        for (full, alias) in relations {
            t.qualify(full, alias.as_ref());
        }
        t
    }

    /// The same target tables, seen from inside a subquery whose own
    /// relation `relation` (with `alias`) now qualifies their columns.
    fn inner(&self, relation: &str, alias: Option<&Ident>) -> Targets<'a> {
        let mut t = Targets {
            qualifiers: Vec::new(),
            unqualified: true,
            tables: self.tables.clone(),
            root: self.root,
            depth: self.depth + 1,
            lookups: self.lookups,
        };
        t.qualify(relation, alias);
        t
    }

    fn qualify(&mut self, full: &str, alias: Option<&Ident>) {
        match alias {
            Some(a) => self.qualifiers.push(normalize_ident(a)),
            None => {
                self.qualifiers.push(base_name(full).to_string());
                self.qualifiers.push(full.to_string());
            }
        }
    }

    fn is_target(&self, relation: &str) -> bool {
        self.tables.iter().any(|t| t == base_name(relation))
    }

    /// A relation joined to the target (UPDATE ... FROM, DELETE ... USING,
    /// MERGE ... USING, JOIN): when it is the target table again, or a
    /// derived table / CTE that may return all of it, its columns are the
    /// target's columns.
    pub(super) fn join(&mut self, tf: &TableFactor) {
        match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let Some((n, alias)) = relation_name(name, alias.as_ref().map(|a| &a.name)) else {
                    return;
                };
                let again =
                    self.is_target(&n) || (name.0.len() == 1 && self.cte_may_return_all(&n));
                if again {
                    self.qualify(&n, alias);
                }
            }
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } if reads_target(subquery, self) && !subquery_restricts(subquery, self, false) => {
                self.qualifiers.push(normalize_ident(&alias.name));
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.join(&table_with_joins.relation);
                for j in &table_with_joins.joins {
                    self.join(&j.relation);
                }
            }
            _ => {}
        }
    }

    /// Does some CTE named `name` read the target without restricting it?
    fn cte_may_return_all(&self, name: &str) -> bool {
        let mut all = false;
        match self.with_ctes(name, &mut |body| {
            all |= reads_target(body, self) && !subquery_restricts(body, self, false);
        }) {
            Lookup::NotACte => false,
            Lookup::Looked => all,
            Lookup::Exhausted => true,
        }
    }

    /// Calls `f` with the body of every CTE named `name` anywhere in the
    /// statement (scoping ignored: every same-named CTE must pass). Past
    /// the depth or lookup budget, calls nothing: callers then treat the
    /// name as a CTE that may return every target row.
    fn with_ctes(&self, name: &str, f: &mut dyn FnMut(&Query)) -> Lookup {
        let used = self.lookups.get();
        if used >= CTE_LOOKUPS || self.depth >= MAX_DEPTH {
            return Lookup::Exhausted;
        }
        self.lookups.set(used + 1);
        struct Finder<'n, 'f> {
            name: &'n str,
            f: &'f mut dyn FnMut(&Query),
            found: bool,
        }
        impl Visitor for Finder<'_, '_> {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                if let Some(w) = &q.with {
                    for c in &w.cte_tables {
                        if normalize_ident(&c.alias.name) == self.name {
                            self.found = true;
                            (self.f)(&c.query);
                        }
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut finder = Finder {
            name,
            f,
            found: false,
        };
        let _ = self.root.visit(&mut finder);
        if finder.found {
            Lookup::Looked
        } else {
            Lookup::NotACte
        }
    }

    /// One level deeper, for a CTE body or derived table read by a subquery.
    fn deeper(&self) -> Targets<'a> {
        Targets {
            qualifiers: self.qualifiers.clone(),
            unqualified: self.unqualified,
            tables: self.tables.clone(),
            root: self.root,
            depth: self.depth + 1,
            lookups: self.lookups,
        }
    }
}

/// What a CTE lookup by name found.
enum Lookup {
    NotACte,
    Looked,
    /// Not looked: past the depth or lookup budget.
    Exhausted,
}

/// The relation a FROM item names, normalised, and the alias qualifying
/// its columns. sqlparser reads `FROM ONLY t` as table `only` aliased `t`.
fn relation_name<'i>(
    name: &ObjectName,
    alias: Option<&'i Ident>,
) -> Option<(String, Option<&'i Ident>)> {
    if is_only(name) {
        alias.map(|a| (normalize_ident(a), None))
    } else {
        Some((normalize_name(name), alias))
    }
}

/// Does `q` read a target table anywhere (CTEs it names followed)?
fn reads_target(q: &Query, t: &Targets<'_>) -> bool {
    struct Reads<'t, 'a> {
        t: &'t Targets<'a>,
    }
    impl Visitor for Reads<'_, '_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = tf
            else {
                return ControlFlow::Continue(());
            };
            let Some((n, _)) = relation_name(name, alias.as_ref().map(|a| &a.name)) else {
                // A bare `ONLY`: not recognisable, so maybe the target.
                return ControlFlow::Break(());
            };
            if self.t.is_target(&n) {
                return ControlFlow::Break(());
            }
            if name.0.len() == 1 {
                let deeper = self.t.deeper();
                let mut hit = false;
                let lookup = deeper.with_ctes(&n, &mut |body| hit |= reads_target(body, &deeper));
                if hit || matches!(lookup, Lookup::Exhausted) {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    if t.depth >= MAX_DEPTH {
        return true;
    }
    q.visit(&mut Reads { t }).is_break()
}

/// Does `q` refer to a target column of the enclosing statement (a
/// correlated subquery)? A qualifier counts unless a FROM of the subquery
/// (or one between) names a relation of that name or alias.
fn correlated(node: &impl Visit, t: &Targets<'_>) -> bool {
    struct Finder<'t, 'a> {
        t: &'t Targets<'a>,
        /// Names each enclosing subquery's FROM brings into scope.
        scopes: Vec<Vec<String>>,
    }
    impl Visitor for Finder<'_, '_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            let mut names = Vec::new();
            if let SetExpr::Select(s) = &*q.body {
                for twj in &s.from {
                    scope_names(&twj.relation, &mut names);
                    for j in &twj.joins {
                        scope_names(&j.relation, &mut names);
                    }
                }
            }
            self.scopes.push(names);
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.scopes.pop();
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.scopes.is_empty() {
                return ControlFlow::Continue(());
            }
            if let Expr::CompoundIdentifier(parts) = e {
                if parts.len() >= 2 {
                    let q = qualifier(parts);
                    let shadowed = self.scopes.iter().flatten().any(|n| *n == q);
                    if !shadowed && self.t.qualifiers.contains(&q) {
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder {
        t,
        scopes: Vec::new(),
    };
    node.visit(&mut f).is_break()
}

/// The qualifiers a FROM item brings into scope.
fn scope_names(tf: &TableFactor, out: &mut Vec<String>) {
    match tf {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => out.push(normalize_ident(&a.name)),
            None => {
                let n = normalize_name(name);
                out.push(base_name(&n).to_string());
                out.push(n);
            }
        },
        TableFactor::Derived { alias: Some(a), .. } => out.push(normalize_ident(&a.name)),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            scope_names(&table_with_joins.relation, out);
            for j in &table_with_joins.joins {
                scope_names(&j.relation, out);
            }
        }
        other => {
            if let Some(a) = table_factor_alias(other) {
                out.push(a);
            }
        }
    }
}

fn table_factor_alias(tf: &TableFactor) -> Option<String> {
    match tf {
        TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. }
        | TableFactor::TableFunction { alias, .. } => {
            alias.as_ref().map(|a| normalize_ident(&a.name))
        }
        _ => None,
    }
}

/// The rows of subquery `q`, as values a target column is compared with
/// (`IN`, `= ANY`): can they miss some target row? With `negated` (`NOT
/// IN`, `<> ALL`): can they include one? A subquery that does not read the
/// target (and is not correlated with it) gives values from elsewhere:
/// restricting, as far as syntax can tell.
pub(super) fn subquery_restricts(q: &Query, t: &Targets<'_>, negated: bool) -> bool {
    if t.depth >= MAX_DEPTH || correlated(q, t) {
        return false;
    }
    if !reads_target(q, t) {
        return true;
    }
    let SetExpr::Select(s) = &*q.body else {
        return false;
    };
    let [from] = s.from.as_slice() else {
        return false;
    };
    if !from.joins.is_empty() {
        return false;
    }
    // Over the relation (qualified by `inner`), the subquery's own WHERE:
    // none keeps every row, which misses none (IN) but includes all (NOT IN).
    let filter = |inner: &Targets<'_>| match &s.selection {
        None => negated,
        Some(w) => restricts(w, inner, negated),
    };
    // A derived table or CTE body already restricted: the WHERE over it can
    // only narrow it further (IN); NOT IN needs both to include a row.
    let over = |body_restricts: bool, inner: &Targets<'_>| {
        if negated {
            body_restricts && filter(inner)
        } else {
            body_restricts || filter(inner)
        }
    };
    match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let alias = alias.as_ref().map(|a| &a.name);
            let Some((n, alias)) = relation_name(name, alias) else {
                return false;
            };
            if t.is_target(&n) {
                return filter(&t.inner(&n, alias));
            }
            if name.0.len() != 1 {
                return false;
            }
            let deeper = t.deeper();
            let mut all = true;
            let lookup = deeper.with_ctes(&n, &mut |body| {
                all &= subquery_restricts(body, &deeper, negated)
            });
            matches!(lookup, Lookup::Looked) && over(all, &t.inner(&n, alias))
        }
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } => {
            let body = subquery_restricts(subquery, &t.deeper(), negated);
            let n = normalize_ident(&alias.name);
            over(body, &t.inner(&n, Some(&alias.name)))
        }
        _ => false,
    }
}

/// `= ANY (subquery)` is `IN`, `<> ALL (subquery)` is `NOT IN`; other
/// comparisons with a subquery that reads the target are not analysed.
fn quantified_restricts(
    right: &Expr,
    t: &Targets<'_>,
    any: bool,
    op: &BinaryOperator,
    negated: bool,
) -> bool {
    let as_in = match (any, op) {
        (true, BinaryOperator::Eq) => Some(negated),
        (false, BinaryOperator::NotEq) => Some(!negated),
        _ => None,
    };
    struct Each<'t, 'a> {
        t: &'t Targets<'a>,
        as_in: Option<bool>,
        depth: usize,
    }
    impl Visitor for Each<'_, '_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            self.depth += 1;
            if self.depth > 1 {
                return ControlFlow::Continue(());
            }
            let ok = match self.as_in {
                Some(negated) => subquery_restricts(q, self.t, negated),
                None => !correlated(q, self.t) && !reads_target(q, self.t),
            };
            if ok {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    right.visit(&mut Each { t, as_in, depth: 0 }).is_continue()
}

/// The normalised qualifier of a column reference (`public.users` of
/// `public.users.id`).
fn qualifier(parts: &[Ident]) -> String {
    parts[..parts.len() - 1]
        .iter()
        .map(normalize_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Names that parse as bare identifiers but are SQL value functions, i.e.
/// constants per statement, not columns.
const SQL_VALUE_FUNCTIONS: &[&str] = &[
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_catalog",
    "current_schema",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

/// Does `expr` reference a column of the target (outside subqueries)?
fn depends_on_target(expr: &Expr, targets: &Targets<'_>) -> bool {
    struct Finder<'t> {
        targets: &'t Targets<'t>,
        depth: usize,
    }
    impl Visitor for Finder<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if self.depth > 0 {
                return ControlFlow::Continue(());
            }
            let hit = match e {
                Expr::Identifier(id) => {
                    self.targets.unqualified
                        && (id.quote_style.is_some()
                            || !SQL_VALUE_FUNCTIONS
                                .iter()
                                .any(|f| id.value.eq_ignore_ascii_case(f)))
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    self.targets.qualifiers.contains(&qualifier(parts))
                }
                _ => false,
            };
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    let mut f = Finder { targets, depth: 0 };
    expr.visit(&mut f).is_break()
}

/// Textual identity, quotes and case ignored: `id = id`, `"ID" = id`;
/// also through parentheses and a qualifier naming the target
/// (`(id) = id`, `users.id = id`). Over-matching only makes a WHERE count
/// as always true (the safe side).
///
/// Literal values are masked before comparing: `a + 1 = a + 2` counts as
/// the same (over-matching, safe), and the answer never depends on a
/// literal's value, so statements differing only in literals share one
/// classification (`shape`). Masking also stops a quoted identifier from
/// matching a literal that prints alike (`"5" = 5`).
fn same(a: &Expr, b: &Expr, t: &Targets<'_>) -> bool {
    let norm = |e: &Expr| {
        let mut e = e.clone();
        mask_literals(&mut e);
        unwrap_target_columns(&mut e, t);
        e.to_string().replace('"', "").to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// `(x)` becomes `x`, and `target.col` becomes `col`, everywhere in `e`.
fn unwrap_target_columns(e: &mut Expr, t: &Targets<'_>) {
    use sqlparser::ast::{VisitMut, VisitorMut};
    struct Unwrap<'t>(&'t Targets<'t>);
    impl VisitorMut for Unwrap<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            match e {
                Expr::Nested(inner) => {
                    *e = std::mem::replace(&mut **inner, Expr::value(Value::Null))
                }
                Expr::CompoundIdentifier(parts)
                    if parts.len() >= 2 && self.0.qualifiers.contains(&qualifier(parts)) =>
                {
                    let col = parts.pop().expect("two parts or more");
                    *e = Expr::Identifier(col);
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut Unwrap(t));
}

/// Replace every literal value (strings and numbers of any kind) by a NUL
/// placeholder, which no identifier or keyword can print as.
fn mask_literals(e: &mut Expr) {
    use sqlparser::ast::{ValueWithSpan, VisitMut, VisitorMut};
    struct Mask;
    impl VisitorMut for Mask {
        type Break = ();
        fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<()> {
            if !matches!(
                v.value,
                Value::Boolean(_) | Value::Null | Value::Placeholder(_)
            ) {
                v.value = Value::Placeholder("\0".into());
            }
            ControlFlow::Continue(())
        }
    }
    let _ = e.visit(&mut Mask);
}

/// `Some(b)` for a boolean literal `true` / `false`.
fn bool_literal(e: &Expr) -> Option<bool> {
    match e {
        Expr::Value(v) => match v.value {
            Value::Boolean(b) => Some(b),
            _ => None,
        },
        Expr::Nested(inner) => bool_literal(inner),
        _ => None,
    }
}

fn is_match_all_pattern(e: &Expr) -> bool {
    note_literal_read();
    matches!(e, Expr::Value(v) if matches!(&v.value,
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s)
            if !s.is_empty() && s.chars().all(|c| c == '%')))
}

/// Can this WHERE leave some target rows alone? `false` means it is (or may
/// be) always true (see the module doc). `negated` tracks De Morgan under
/// NOT: then the question is whether the condition can be true for a row.
pub(super) fn restricts(e: &Expr, t: &Targets<'_>, negated: bool) -> bool {
    use BinaryOperator as B;
    match e {
        Expr::Nested(inner) => restricts(inner, t, negated),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => restricts(expr, t, !negated),
        Expr::BinaryOp {
            left,
            op: B::And,
            right,
        } => {
            if negated {
                restricts(left, t, true) && restricts(right, t, true)
            } else {
                restricts(left, t, false) || restricts(right, t, false)
            }
        }
        Expr::BinaryOp {
            left,
            op: B::Or,
            right,
        } => {
            if negated {
                restricts(left, t, true) || restricts(right, t, true)
            } else {
                restricts(left, t, false) && restricts(right, t, false)
            }
        }
        Expr::BinaryOp {
            left,
            op: B::Xor,
            right,
        } => restricts(left, t, negated) && restricts(right, t, negated),
        // `cond = true` is `cond`, `cond = false` (or `<> true`) its negation.
        Expr::BinaryOp {
            left,
            op: op @ (B::Eq | B::NotEq),
            right,
        } if bool_literal(left).or(bool_literal(right)).is_some() => {
            let (cond, value) = match bool_literal(right) {
                Some(v) => (left, v),
                None => (right, bool_literal(left).expect("one side is a boolean")),
            };
            let flips = (*op == B::NotEq) == value;
            restricts(cond, t, negated ^ flips)
        }
        Expr::IsTrue(x) | Expr::IsNotFalse(x) => restricts(x, t, negated),
        Expr::IsFalse(x) | Expr::IsNotTrue(x) => restricts(x, t, !negated),
        // A condition on the target row through a correlated subquery is
        // not analysed (`id = (SELECT u.id FROM users u WHERE u.id = users.id)`).
        leaf if correlated(leaf, t) => false,
        leaf => leaf_restricts(leaf, t, negated),
    }
}

/// `restricts` for a condition that is not AND / OR / NOT of others.
fn leaf_restricts(e: &Expr, t: &Targets<'_>, negated: bool) -> bool {
    match e {
        Expr::BinaryOp { left, right, .. } => {
            (depends_on_target(left, t) || depends_on_target(right, t)) && !same(left, right, t)
        }
        Expr::IsNull(x) | Expr::IsNotNull(x) => {
            matches!(**x, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                && depends_on_target(x, t)
        }
        Expr::IsUnknown(_) | Expr::IsNotUnknown(_) => false,
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            (depends_on_target(a, t) || depends_on_target(b, t)) && !same(a, b, t)
        }
        Expr::InList { expr, list, .. } => {
            depends_on_target(expr, t) && !list.iter().any(|x| same(x, expr, t))
        }
        Expr::InSubquery {
            expr,
            subquery,
            negated: not_in,
        } => depends_on_target(expr, t) && subquery_restricts(subquery, t, negated ^ *not_in),
        Expr::InUnnest { expr, .. } => depends_on_target(expr, t),
        Expr::Between {
            expr, low, high, ..
        } => depends_on_target(expr, t) && !same(expr, low, t) && !same(expr, high, t),
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => {
            depends_on_target(expr, t) && !is_match_all_pattern(pattern) && !same(expr, pattern, t)
        }
        Expr::AnyOp {
            left,
            right,
            compare_op,
            ..
        } => {
            (depends_on_target(left, t) || depends_on_target(right, t))
                && quantified_restricts(right, t, true, compare_op, negated)
        }
        Expr::AllOp {
            left,
            right,
            compare_op,
        } => {
            (depends_on_target(left, t) || depends_on_target(right, t))
                && quantified_restricts(right, t, false, compare_op, negated)
        }
        // Correlation inside EXISTS is not analysed: counted as unrestricted.
        Expr::Exists { .. } | Expr::Value(_) => false,
        other => depends_on_target(other, t),
    }
}
