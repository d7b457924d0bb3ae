//! Functions whose call is more than a read: the built-in list and its matching.
//!
//! A `SELECT` can export files (`pg_read_file`), open connections (`dblink`),
//! run SQL hidden in a string (`query_to_xml`), kill sessions or change the
//! role (`set_config('role', ...)`). The walker reports every call it sees;
//! this module says which of them raise the statement's category.
//! Functions not listed (user functions included) stay `Read`, but every
//! called function is listed in the statement's effects so rules can name them.

use super::Category;

/// Settings whose change is a privilege action rather than a session tweak:
/// the role and session user, and the settings that change how the proxy and
/// the server split SQL text into statements (see DESIGN-NOTES section 1).
/// Postgres looks up setting names case-insensitively, whatever the quoting.
pub(super) const PRIVILEGED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "standard_conforming_strings",
    "client_encoding",
    "backslash_quote",
    "session_replication_role",
];

pub(super) fn is_privileged_setting(name: &str) -> bool {
    PRIVILEGED_SETTINGS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// One entry of the built-in list: a pattern on the function's own name
/// (schema ignored, so `pg_catalog.pg_read_file` and a look-alike
/// `public.pg_read_file` both match: over-approximation is the safe side),
/// with `*` as an optional wildcard at the start or end.
struct Builtin {
    pattern: &'static str,
    category: Category,
    why: &'static str,
}

const fn b(pattern: &'static str, category: Category, why: &'static str) -> Builtin {
    Builtin {
        pattern,
        category,
        why,
    }
}

use Category::{Ddl, Destructive, Export, Privilege, Session, Write};

static BUILTINS: &[Builtin] = &[
    // Server files and directories.
    b("pg_read_file", Export, "reads a server file"),
    b("pg_read_binary_file", Export, "reads a server file"),
    b("pg_stat_file", Export, "inspects a server file"),
    b("pg_hba_file_rules", Export, "reads pg_hba.conf"),
    b("pg_ident_file_mappings", Export, "reads pg_ident.conf"),
    b(
        "pg_show_all_file_settings",
        Export,
        "reads the server's configuration files",
    ),
    b("brin_summarize_range", Write, "changes a BRIN index"),
    b("brin_summarize_new_values", Write, "changes a BRIN index"),
    b("brin_desummarize_range", Write, "changes a BRIN index"),
    b("gin_clean_pending_list", Write, "changes a GIN index"),
    b("pg_ls_*", Export, "lists a server directory"),
    b(
        "pg_file_*",
        Export,
        "writes or moves a server file (adminpack)",
    ),
    b(
        "pg_logdir_ls",
        Export,
        "lists the server log directory (adminpack)",
    ),
    // Large objects: lo_import/lo_export touch server files, the rest move data.
    b("lo_*", Export, "large-object I/O"),
    b("loread", Export, "large-object I/O"),
    b("lowrite", Export, "large-object I/O"),
    // Other databases and servers.
    b(
        "dblink*",
        Export,
        "dblink: connects to a database and moves data",
    ),
    // Run a query given as text (read-only, but invisible to table rules).
    b(
        "query_to_xml*",
        Export,
        "runs a query given as text and exports its rows",
    ),
    b("query_to_xmlschema", Export, "runs a query given as text"),
    b(
        "ts_stat",
        Export,
        "runs a query given as text (any function call in it runs too)",
    ),
    b("ts_rewrite", Export, "runs a query given as text"),
    b("crosstab*", Export, "tablefunc: runs a query given as text"),
    b(
        "connectby",
        Export,
        "tablefunc: runs a query built from text arguments",
    ),
    b("cursor_to_xml*", Export, "exports the rows of a cursor"),
    b("table_to_xml*", Export, "exports a table named by a string"),
    b("schema_to_xml*", Export, "exports every table of a schema"),
    b(
        "database_to_xml*",
        Export,
        "exports every table of the database",
    ),
    // Logical decoding reads every change of every table.
    b(
        "pg_logical_slot_*",
        Export,
        "reads changes from a replication slot",
    ),
    b(
        "pg_create_*_replication_slot",
        Ddl,
        "creates a replication slot",
    ),
    b(
        "pg_copy_*_replication_slot",
        Ddl,
        "creates a replication slot",
    ),
    b("pg_drop_replication_slot", Ddl, "drops a replication slot"),
    b(
        "pg_replication_slot_advance",
        Ddl,
        "advances a replication slot",
    ),
    b("pg_import_system_collations", Ddl, "creates collations"),
    // Server administration.
    b(
        "pg_terminate_backend",
        Privilege,
        "terminates another session",
    ),
    b(
        "pg_cancel_backend",
        Privilege,
        "cancels another session's query",
    ),
    b("pg_signal_backend", Privilege, "signals another session"),
    b(
        "pg_reload_conf",
        Privilege,
        "reloads the server configuration",
    ),
    b("pg_rotate_logfile*", Privilege, "rotates the server log"),
    b("pg_promote", Privilege, "promotes a standby"),
    b("pg_switch_wal", Privilege, "forces a WAL switch"),
    b(
        "pg_create_restore_point",
        Privilege,
        "creates a restore point",
    ),
    b("pg_backup_*", Privilege, "controls a base backup"),
    b("pg_start_backup", Privilege, "controls a base backup"),
    b("pg_stop_backup", Privilege, "controls a base backup"),
    b("pg_wal_replay_*", Privilege, "controls WAL replay"),
    b(
        "pg_replication_origin_*",
        Privilege,
        "manages replication origins",
    ),
    b(
        "pg_log_backend_memory_contexts",
        Privilege,
        "makes another session log",
    ),
    b(
        "binary_upgrade_*",
        Privilege,
        "binary-upgrade support function",
    ),
    b(
        "pg_truncate_visibility_map",
        Destructive,
        "truncates a visibility map",
    ),
    // Writes outside tables.
    b("nextval", Write, "advances a sequence"),
    b("setval", Write, "sets a sequence"),
    b(
        "pg_logical_emit_message",
        Write,
        "writes a message into the WAL",
    ),
    b("pg_stat_reset*", Write, "resets statistics"),
    b("pg_stat_statements_reset", Write, "resets statistics"),
    b("pg_notify", Session, "sends a notification"),
];

fn glob_match(pattern: &str, name: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(suffix), _) if !suffix.contains('*') => name.ends_with(suffix),
        (_, Some(prefix)) if !prefix.contains('*') => name.starts_with(prefix),
        _ => match pattern.split_once('*') {
            Some((pre, post)) => {
                name.len() >= pre.len() + post.len()
                    && name.starts_with(pre)
                    && name.ends_with(post)
            }
            None => pattern == name,
        },
    }
}

/// The last component of a normalised, possibly schema-qualified name.
/// Quoted identifiers may contain dots; normalised names keep them as is, so
/// this may cut inside such a name: harmless, as it can only make a quoted
/// `"a.pg_read_file"` match the list (over-approximation).
pub(super) fn base_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// What calling `name` does, if it is more than a read.
/// `extra` entries (from `Options::extra_functions`) win over the built-ins.
/// A schema-qualified extra entry `s.f` matches calls to `s.f` and to an
/// unqualified `f` (the search path may resolve to it); an unqualified entry
/// `f` matches `f` in any schema.
pub(super) fn lookup(name: &str, extra: &[(String, Category)]) -> Option<(Category, String)> {
    let base = base_name(name);
    let qualified = name.len() != base.len();
    for (entry, category) in extra {
        let hit = if entry.contains('.') {
            // `db.s.f` names `s.f` in the current database.
            let within = name.len() > entry.len()
                && name.ends_with(entry.as_str())
                && name.as_bytes()[name.len() - entry.len() - 1] == b'.';
            entry == name || within || (!qualified && base_name(entry) == base)
        } else {
            entry == base
        };
        if hit {
            return Some((
                *category,
                format!("calls {name}: listed in extra_functions"),
            ));
        }
    }
    BUILTINS
        .iter()
        .find(|b| glob_match(b.pattern, base))
        .map(|b| (b.category, format!("calls {name}: {}", b.why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_forms() {
        assert!(glob_match("lo_*", "lo_import"));
        assert!(!glob_match("lo_*", "log"));
        assert!(glob_match(
            "pg_create_*_replication_slot",
            "pg_create_logical_replication_slot"
        ));
        assert!(!glob_match(
            "pg_create_*_replication_slot",
            "pg_create_restore_point"
        ));
        assert!(glob_match("*_x", "a_x"));
        assert!(glob_match("nextval", "nextval"));
        assert!(!glob_match("nextval", "nextvalx"));
    }

    #[test]
    fn schema_is_ignored_for_builtins_but_not_for_qualified_extras() {
        assert_eq!(lookup("pg_catalog.pg_read_file", &[]).unwrap().0, Export);
        assert_eq!(lookup("public.pg_read_file", &[]).unwrap().0, Export);
        assert!(lookup("my_func", &[]).is_none());
        let extra = vec![("billing.charge".to_string(), Write)];
        assert_eq!(lookup("billing.charge", &extra).unwrap().0, Write);
        assert_eq!(lookup("charge", &extra).unwrap().0, Write);
        assert!(lookup("other.charge", &extra).is_none());
        assert_eq!(lookup("appdb.billing.charge", &extra).unwrap().0, Write);
        assert!(lookup("appdb.xbilling.charge", &extra).is_none());
        let extra = vec![("charge".to_string(), Destructive)];
        assert_eq!(lookup("other.charge", &extra).unwrap().0, Destructive);
    }
}
