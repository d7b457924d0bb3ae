//! "What it will change": estimates shown to a reviewer before they
//! approve a held statement.
//!
//! Runs on a separate upstream connection, inside `BEGIN READ ONLY` with a
//! short `statement_timeout`, and only ever through the extended protocol
//! (one statement per Parse, so a crafted multi-statement text cannot run
//! anything). UPDATE/DELETE/MERGE get the planner's row estimate from
//! `EXPLAIN` (never `ANALYZE`: the statement is not executed); tables that
//! would be dropped, truncated or exported get their estimated row count
//! and size from the catalog. Any failure yields a line saying so: an
//! estimate is advice, never a reason to block or allow.
//!
//! `EXPLAIN` does not execute the statement, but planning it can call
//! functions: IMMUTABLE ones are folded on constant arguments, STABLE ones
//! are evaluated for selectivity estimates, and an operator's function is
//! called over the column's most common values. Built-in and C functions
//! (which only a superuser can create) and extension members are trusted;
//! if the database has any other function that planning could call
//! (SQL, PL/pgSQL, ... marked IMMUTABLE/STABLE, or behind an operator), the
//! planner estimate is skipped and the reviewer told why: such a function
//! could have an effect outside the read-only transaction (dblink, a
//! server-side write) before anyone approved anything. A function a domain's
//! CHECK calls counts too, whatever its volatility: estimating a prepared
//! statement coerces its arguments (NULLs included) to the parameter types.
//!
//! `EXECUTE name(...)` is estimated from the text the session prepared
//! (the sidecar prepares the same text, then EXPLAINs the EXECUTE), and
//! only when the arguments are plain literals: EXPLAIN EXECUTE evaluates
//! them, and an argument expression could call any function.

use crate::audit::event::PreparedText;
use crate::classify::{Category, Classification, PreparedOp};
use crate::wire::frame::Body;
use crate::wire::io::read_frame;
use crate::wire::upstream::{Connector, parse_error};
use bytes::{BufMut, BytesMut};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Lines of text for the approval message.
///
/// `params` is the number of bound parameters (`$n`) of an extended-protocol
/// statement: the row estimate then comes from its generic plan. `prepared`
/// holds what the names `sql` EXECUTEs were prepared as.
pub async fn estimate(
    connector: &Connector,
    database: &str,
    sql: &str,
    params: usize,
    class: &Classification,
    prepared: &[PreparedText],
) -> Vec<String> {
    let dml = class
        .effects()
        .any(|e| matches!(e.category, Category::Destructive | Category::Write))
        && class.statements.len() == 1;
    let mut tables: Vec<&str> = class
        .effects()
        .filter(|e| {
            matches!(
                e.category,
                Category::Destructive | Category::Ddl | Category::Export
            )
        })
        .flat_map(|e| e.tables.iter().map(String::as_str))
        .collect();
    tables.sort();
    tables.dedup();
    tables.truncate(5);
    if !dml && tables.is_empty() {
        return vec![];
    }
    let plan = if !dml {
        None
    } else {
        match class.statements.first().and_then(|s| s.prepared.as_ref()) {
            Some(PreparedOp::Execute { name }) => Some(executed(sql, name, prepared)),
            _ => Some(Ok(Plan::Text { params })),
        }
    };
    match crate::timers::timeout(
        Duration::from_secs(5),
        run(connector, database, sql, plan, &tables),
    )
    .await
    {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => vec![format!("(no estimate: {e})")],
        Err(_) => vec!["(no estimate: the database did not answer in time)".into()],
    }
}

const BEGIN: &str = "BEGIN READ ONLY; SET LOCAL statement_timeout = '2s'";

/// Up to three functions planning could call that are neither built in,
/// nor C, nor part of an extension (see the module comment).
const PLANNER_CALLABLE: &str = "SELECT format('%I.%I', n.nspname, p.proname) \
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND l.lanname NOT IN ('internal', 'c') \
       AND (p.provolatile IN ('i', 's') OR EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprcode = p.oid) \
            OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_constraint c ON c.oid = d.objid \
                       WHERE d.classid = 'pg_constraint'::regclass AND d.refclassid = 'pg_proc'::regclass \
                         AND d.refobjid = p.oid AND c.contypid <> 0)) \
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') \
     ORDER BY 1 LIMIT 3";

/// How to get the planner's row estimate of the held statement.
#[derive(Debug, PartialEq)]
enum Plan {
    /// EXPLAIN the text itself; `params` placeholders get a generic plan.
    Text { params: usize },
    /// `EXECUTE name(literals)`: prepare `define` (one statement, which
    /// creates `name`) first, then EXPLAIN the EXECUTE.
    Execute { define: String },
}

/// The plan for a held `EXECUTE name(...)`, or why there is none.
fn executed(sql: &str, name: &str, prepared: &[PreparedText]) -> Result<Plan, String> {
    use sqlparser::ast::{Expr, Statement, UnaryOperator};
    use sqlparser::dialect::PostgreSqlDialect;
    let literal = |e: &Expr| match e {
        Expr::Value(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(**expr, Expr::Value(_)),
        _ => false,
    };
    match sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).as_deref() {
        Ok(
            [
                Statement::Execute {
                    parameters,
                    using,
                    into,
                    ..
                },
            ],
        ) if using.is_empty() && into.is_empty() => {
            if !parameters.iter().all(literal) {
                return Err("the EXECUTE arguments are not plain literals, and estimating would evaluate them".into());
            }
        }
        _ => return Err("the EXECUTE could not be read for an estimate".into()),
    }
    let mut texts = prepared.iter().filter(|p| p.name == name);
    let (Some(p), None) = (texts.next(), texts.next()) else {
        return Err(format!("{name} has no single known definition"));
    };
    let is_prepare = matches!(
        sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, &p.sql).as_deref(),
        Ok([Statement::Prepare { .. }])
    );
    Ok(Plan::Execute {
        define: if is_prepare {
            p.sql.clone()
        } else {
            // Prepared through the protocol: the text is the statement itself.
            format!("PREPARE \"{}\" AS {}", name.replace('"', "\"\""), p.sql)
        },
    })
}

async fn run(
    connector: &Connector,
    database: &str,
    sql: &str,
    plan: Option<Result<Plan, String>>,
    tables: &[&str],
) -> Result<Vec<String>, String> {
    let mut s = Sidecar::open(connector, database).await?;
    s.simple(BEGIN).await?;
    let mut lines = Vec::new();
    if let Some(Err(why)) = &plan {
        lines.push(format!("(no row estimate: {why})"));
    }
    if let Some(Ok(plan)) = plan
        && planner_is_safe(&mut s, &mut lines).await?
    {
        let rows = match plan {
            Plan::Execute { define } => {
                // Parse takes one statement: the definition cannot carry more.
                match s.query(&define, &[]).await {
                    Ok(_) => s.query(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[]).await,
                    Err(e) => Err(e),
                }
            }
            Plan::Text { params: 0 } => s.query(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[]).await,
            Plan::Text { params } => {
                // Values are not needed for an estimate: plan the statement
                // generically (as for unknown values) and EXPLAIN that plan.
                // PREPARE goes through Parse, so it holds one statement only.
                let nulls = vec!["NULL"; params].join(", ");
                match s
                    .simple("SET LOCAL plan_cache_mode = force_generic_plan")
                    .await
                {
                    Ok(()) => match s
                        .query(&format!("PREPARE airlock_estimate AS {sql}"), &[])
                        .await
                    {
                        Ok(_) => {
                            s.query(
                                &format!("EXPLAIN (FORMAT JSON) EXECUTE airlock_estimate({nulls})"),
                                &[],
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        if rows.is_err() {
            // The failed query aborted the transaction; start a clean one
            // so the table estimates below still run.
            s.simple("ROLLBACK").await?;
            s.simple(BEGIN).await?;
        }
        match rows {
            Ok(rows) => {
                if let Some(Some(json)) = rows.first().and_then(|r| r.first()) {
                    if let Some(n) = planned_rows(json) {
                        lines.push(format!("planner estimate: about {n} row(s) affected"));
                    }
                }
            }
            Err(e) => lines.push(format!("(no row estimate: {e})")),
        }
    }
    for t in tables {
        let q = "SELECT c.reltuples::bigint::text, pg_size_pretty(pg_total_relation_size(c.oid)) \
                 FROM pg_class c WHERE c.oid = to_regclass($1)";
        match s.query(q, &[t]).await {
            Ok(rows) => match rows.first() {
                Some(r) => {
                    let n = r.first().cloned().flatten().unwrap_or_default();
                    let n = if n == "-1" {
                        "unknown (never analyzed)".to_string()
                    } else {
                        format!("about {n}")
                    };
                    let size = r.get(1).cloned().flatten().unwrap_or_default();
                    lines.push(format!("table {t}: {n} row(s), {size}"));
                }
                None => lines.push(format!("table {t}: does not exist")),
            },
            Err(e) => lines.push(format!("table {t}: (no estimate: {e})")),
        }
    }
    let _ = s.simple("ROLLBACK").await;
    Ok(lines)
}

/// Whether planning on this database can call no user function; if it
/// can, says so in `lines` (see the module comment).
async fn planner_is_safe(s: &mut Sidecar, lines: &mut Vec<String>) -> Result<bool, String> {
    let names: Vec<String> = s
        .query(PLANNER_CALLABLE, &[])
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    if !names.is_empty() {
        lines.push(format!(
            "(no planner estimate: planning could run the database's own function(s) {} before approval)",
            names.join(", ")
        ));
    }
    Ok(names.is_empty())
}

/// Rows the planner expects the top data-modifying node to touch.
fn planned_rows(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let plan = v.get(0)?.get("Plan")?;
    let node = if plan.get("Node Type")?.as_str()? == "ModifyTable" {
        plan.get("Plans")?.get(0)?
    } else {
        plan
    };
    node.get("Plan Rows")?.as_f64().map(|n| n as u64)
}

/// A bare upstream session for a few catalog queries.
struct Sidecar {
    stream: crate::wire::upstream::Stream,
    buf: BytesMut,
}

impl Sidecar {
    async fn open(connector: &Connector, database: &str) -> Result<Sidecar, String> {
        let login = connector
            .login(&[
                ("database", database),
                ("application_name", "airlock:impact-estimate"),
                ("client_encoding", "UTF8"),
            ])
            .await
            .map_err(|e| e.to_string())?;
        Ok(Sidecar {
            stream: login.stream,
            buf: login.leftover,
        })
    }

    async fn simple(&mut self, sql: &str) -> Result<(), String> {
        let mut out = BytesMut::new();
        crate::wire::messages::query(&mut out, sql);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        self.collect().await.map(|_| ())
    }

    /// One statement through Parse/Bind/Execute/Sync, text results.
    async fn query(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut out = BytesMut::new();
        frame(&mut out, b'P', |b| {
            b.put_u8(0);
            b.extend_from_slice(sql.as_bytes());
            b.put_u8(0);
            b.put_i16(0);
        });
        frame(&mut out, b'B', |b| {
            b.put_u8(0);
            b.put_u8(0);
            b.put_i16(0);
            b.put_i16(params.len() as i16);
            for p in params {
                b.put_i32(p.len() as i32);
                b.extend_from_slice(p.as_bytes());
            }
            b.put_i16(0);
        });
        frame(&mut out, b'E', |b| {
            b.put_u8(0);
            b.put_i32(0);
        });
        frame(&mut out, b'S', |_| {});
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        self.collect().await
    }

    /// Read up to ReadyForQuery; DataRows as text, the first error as Err.
    async fn collect(&mut self) -> Result<Vec<Vec<Option<String>>>, String> {
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let f = read_frame(&mut self.stream, &mut self.buf, 64 << 20)
                .await
                .map_err(|e| e.to_string())?;
            match f[0] {
                b'D' => {
                    let mut b = Body::new(&f);
                    let n = b.i16().map_err(|e| e.to_string())?;
                    let mut row = Vec::with_capacity(n.max(0) as usize);
                    for _ in 0..n {
                        let len = b.i32().map_err(|e| e.to_string())?;
                        row.push(if len < 0 {
                            None
                        } else {
                            Some(
                                String::from_utf8_lossy(
                                    b.bytes(len as usize).map_err(|e| e.to_string())?,
                                )
                                .into_owned(),
                            )
                        });
                    }
                    rows.push(row);
                }
                b'E' => {
                    let (code, msg) = parse_error(&f);
                    err.get_or_insert(format!("{msg} ({code})"));
                }
                b'Z' => return err.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }
}

fn frame(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_rows_reads_the_modify_node_child() {
        let j = r#"[{"Plan": {"Node Type": "ModifyTable", "Plan Rows": 0, "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 2550}]}}]"#;
        assert_eq!(planned_rows(j), Some(2550));
        assert_eq!(
            planned_rows(r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 7}}]"#),
            Some(7)
        );
        assert_eq!(planned_rows("not json"), None);
    }
}
