//! The vocabulary of classification: what a statement does, as data.
//!
//! These types are the contract between `classify` (which produces them),
//! `rules` (which decides on them), the session (which resolves PREPARE /
//! EXECUTE state) and `audit` (which records them).

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What kind of effect a statement has. The order is the danger rank:
/// a later variant is more dangerous, and `Unknown` (anything we could not
/// classify with certainty) ranks above all, so fail-closed is `max()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Transaction,
    Session,
    Read,
    Write,
    Destructive,
    Export,
    Ddl,
    Procedural,
    Privilege,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::Transaction,
        Category::Session,
        Category::Read,
        Category::Write,
        Category::Destructive,
        Category::Export,
        Category::Ddl,
        Category::Procedural,
        Category::Privilege,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transaction => "transaction",
            Category::Session => "session",
            Category::Read => "read",
            Category::Write => "write",
            Category::Destructive => "destructive",
            Category::Export => "export",
            Category::Ddl => "ddl",
            Category::Procedural => "procedural",
            Category::Privilege => "privilege",
            Category::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One effect of one statement: a category and the objects it touches.
/// Names are normalised as Postgres would resolve them lexically
/// (unquoted identifiers folded to lower case, quotes removed), and keep
/// their schema when the SQL gave one (`public.users`, `pg_catalog.pg_read_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub category: Category,
    /// Tables / views / sequences / other relations touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Functions called anywhere in the statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// Why this effect was assigned, for humans (`explain`, Slack, audit).
    pub why: String,
}

/// Session-level prepared-statement bookkeeping a statement asks for.
/// `classify` is pure, so it only reports these; the session applies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreparedOp {
    /// `PREPARE name AS <stmt>`: remember the inner statement's effects.
    Prepare { name: String },
    /// `EXECUTE name`: effects are those remembered for `name`
    /// (unknown name -> `Unknown`).
    Execute { name: String },
    /// `DEALLOCATE name`
    Deallocate { name: String },
    /// `DEALLOCATE ALL`, `DISCARD ALL`
    DeallocateAll,
    /// `FETCH ... FROM name`: SQL cursors and protocol portals share one
    /// namespace, and a FETCH from a portal bound to `DELETE ... RETURNING`
    /// runs the DELETE. The session judges it as the portal it knows under
    /// `name` (a SQL cursor's query was judged at DECLARE).
    Fetch { portal: String },
    /// `COPY ... FROM STDIN`: the server may enter copy-in mode, in which
    /// it ignores the client's Sync and Flush; the session must know.
    CopyFromStdin,
}

/// The classification of one statement of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementClass {
    /// Byte range of this statement in the message text (best effort;
    /// the whole text when the parse failed).
    pub span: (usize, usize),
    /// Shared: texts of one shape share their effects (only the span
    /// differs), so a shape-cache hit copies no names.
    pub effects: Arc<[Effect]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedOp>,
}

impl StatementClass {
    pub fn category(&self) -> Category {
        self.effects
            .iter()
            .map(|e| e.category)
            .max()
            .unwrap_or(Category::Unknown)
    }
}

/// The classification of a whole message (one simple Query, or one Parse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    pub statements: Vec<StatementClass>,
}

impl Classification {
    /// The most dangerous category in the message; an empty message
    /// (only comments / whitespace) is a `Session` no-op.
    pub fn category(&self) -> Category {
        self.statements
            .iter()
            .map(StatementClass::category)
            .max()
            .unwrap_or(Category::Session)
    }

    pub fn effects(&self) -> impl Iterator<Item = &Effect> {
        self.statements.iter().flat_map(|s| s.effects.iter())
    }

    /// An equal classification sharing nothing with this one (`clone`
    /// shares the effects).
    pub fn own_copy(&self) -> Classification {
        Classification {
            statements: self
                .statements
                .iter()
                .map(|s| StatementClass {
                    span: s.span,
                    effects: Arc::from(s.effects.to_vec()),
                    prepared: s.prepared.clone(),
                })
                .collect(),
        }
    }
}

/// Shared, immutable classification as handed out by the cache.
pub type SharedClassification = Arc<Classification>;
