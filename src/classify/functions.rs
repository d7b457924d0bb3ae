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
/// the role and session user, the settings that change how the proxy and
/// the server split SQL text into statements (see DESIGN-NOTES section 1),
/// the server's own record of what sessions do (`log_*`, pgaudit), data
/// masking (postgresql_anonymizer) and superuser switches that bypass
/// catalog or data safety. Lowercase globs as in the function list, matched
/// against the whole, dotted name: Postgres looks setting names up
/// case-insensitively, whatever the quoting.
pub(super) const PRIVILEGED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "standard_conforming_strings",
    "client_encoding",
    "backslash_quote",
    "session_replication_role",
    "log_*",
    "pgaudit.*",
    "anon.*",
    "allow_system_table_mods",
    "zero_damaged_pages",
    "ignore_checksum_failure",
    "ignore_system_indexes",
];

/// `name`: a setting's full name, `pgaudit.log` or `role`, any case;
/// `extra`: the rule files' additions (`Options::privileged_settings`).
pub(super) fn is_privileged_setting(name: &str, extra: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    PRIVILEGED_SETTINGS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .any(|p| glob_match(p, &name))
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

use Category::{Ddl, Destructive, Export, Privilege, Procedural, Session, Write};

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
    // SQL given as text, run where the proxy does not see it: on another
    // connection (possibly to this very database), in a background worker,
    // or later by a scheduler. As opaque as a DO block, and judged so.
    b(
        "dblink*",
        Procedural,
        "dblink: runs SQL given as text on a connection the proxy does not see",
    ),
    b(
        "pg_background_*",
        Procedural,
        "pg_background: runs SQL given as text in a background worker",
    ),
    b(
        "schedule",
        Procedural,
        "pg_cron: schedules SQL given as text to run later",
    ),
    b(
        "schedule_in_database",
        Procedural,
        "pg_cron: schedules SQL given as text to run later",
    ),
    b("unschedule", Procedural, "pg_cron: removes a scheduled job"),
    b("alter_job", Procedural, "changes a scheduled job"),
    b("add_job", Procedural, "timescaledb: schedules a procedure"),
    b(
        "run_command_on_*",
        Procedural,
        "citus: runs SQL given as text on other nodes",
    ),
    // Data sent out of the database by extensions.
    b("http", Export, "pgsql-http: sends an HTTP request"),
    b(
        "http_get",
        Export,
        "pgsql-http / pg_net: sends an HTTP request",
    ),
    b(
        "http_post",
        Export,
        "pgsql-http / pg_net: sends an HTTP request",
    ),
    b("http_put", Export, "pgsql-http: sends an HTTP request"),
    b("http_patch", Export, "pgsql-http: sends an HTTP request"),
    b(
        "http_delete",
        Export,
        "pgsql-http / pg_net: sends an HTTP request",
    ),
    b("http_head", Export, "pgsql-http: sends an HTTP request"),
    b(
        "query_export_to_s3",
        Export,
        "aws_s3: exports a query's rows to S3",
    ),
    // Into a table named by a string, which table rules cannot see; COPY
    // FROM a file is `export` too.
    b("table_import_from_s3", Export, "aws_s3: loads rows from S3"),
    b("blob_put", Export, "azure_storage: writes a blob"),
    b(
        "get_raw_page",
        Export,
        "pageinspect: reads raw pages, past row-level security and column grants",
    ),
    b(
        "pg_get_wal_*",
        Export,
        "pg_walinspect: reads raw WAL records, past row-level security and column grants",
    ),
    // More SQL text run out of sight.
    b(
        "replicate_ddl_command",
        Procedural,
        "pglogical / bdr: runs SQL given as text on every node",
    ),
    b(
        "master_run_on_worker",
        Procedural,
        "citus: runs SQL given as text on other nodes",
    ),
    b("run_job", Procedural, "runs a scheduled job now"),
    b("delete_job", Procedural, "removes a scheduled job"),
    // Masking (postgresql_anonymizer): rewriting real data, or lifting masks.
    b(
        "anonymize_*",
        Destructive,
        "postgresql_anonymizer: overwrites real data with fake values",
    ),
    b(
        "stop_dynamic_masking",
        Privilege,
        "postgresql_anonymizer: lifts the masks on real data",
    ),
    b(
        "remove_masks_for_all_roles",
        Privilege,
        "postgresql_anonymizer: lifts the masks on real data",
    ),
    b(
        "citus_drop_all_shards",
        Destructive,
        "citus: drops a table's shards and their data",
    ),
    b(
        "truncate_local_data_after_distributing_table",
        Destructive,
        "citus: deletes a table's local rows",
    ),
    b(
        "undo_partition*",
        Ddl,
        "pg_partman: moves data out of partitions and drops them",
    ),
    b(
        "partition_data_*",
        Write,
        "pg_partman: moves rows between partitions",
    ),
    b("pg_restore_*_stats", Write, "writes planner statistics"),
    b("pg_clear_*_stats", Write, "clears planner statistics"),
    // Extension functions that delete or rewrite data or schema.
    b(
        "heap_force_*",
        Destructive,
        "pg_surgery: kills or freezes tuples by hand",
    ),
    b("drop_chunks", Destructive, "timescaledb: deletes data"),
    b(
        "add_retention_policy",
        Destructive,
        "timescaledb: schedules the deletion of old data",
    ),
    b(
        "drop_partition_*",
        Destructive,
        "pg_partman: drops partitions and their data",
    ),
    b(
        "run_maintenance*",
        Ddl,
        "pg_partman: creates and drops partitions",
    ),
    b("create_parent", Ddl, "pg_partman: partitions a table"),
    // Run a query given as text in this session. The server runs it
    // read-only (no INSERT/UPDATE/DELETE), but any function it calls runs
    // too (`set_config`, `nextval`, `dblink_exec`): as opaque as a DO block.
    b(
        "query_to_xml*",
        Procedural,
        "runs a query given as text (any function call in it runs too)",
    ),
    b(
        "query_to_xmlschema",
        Procedural,
        "runs a query given as text (any function call in it runs too)",
    ),
    b(
        "ts_stat",
        Procedural,
        "runs a query given as text (any function call in it runs too)",
    ),
    b(
        "ts_rewrite",
        Procedural,
        "runs a query given as text (any function call in it runs too)",
    ),
    b(
        "crosstab*",
        Procedural,
        "tablefunc: runs a query given as text (any function call in it runs too)",
    ),
    b(
        "connectby",
        Procedural,
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
    b("pg_*_reset", Write, "resets an extension's statistics"),
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
    lookup_extra(name, extra).or_else(|| {
        let base = base_name(name);
        BUILTINS
            .iter()
            .find(|b| glob_match(b.pattern, base))
            .map(|b| (b.category, format!("calls {name}: {}", b.why)))
    })
}

/// `lookup` in the rule files' entries only.
pub(super) fn lookup_extra(name: &str, extra: &[(String, Category)]) -> Option<(Category, String)> {
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
    None
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

    /// Extension functions that run SQL text out of the proxy's sight are
    /// judged as opaque as a DO block, whatever their schema; data leaving
    /// or dropped by an extension is not a read.
    #[test]
    fn extension_side_effects_are_more_than_reads() {
        for (name, category) in [
            ("dblink_exec", Procedural),
            ("public.dblink", Procedural),
            ("pg_background_launch", Procedural),
            ("cron.schedule", Procedural),
            ("cron.schedule_in_database", Procedural),
            ("cron.unschedule", Procedural),
            ("citus.run_command_on_workers", Procedural),
            ("http_post", Export),
            ("net.http_get", Export),
            ("aws_s3.query_export_to_s3", Export),
            ("heap_force_kill", Destructive),
            ("drop_chunks", Destructive),
            ("partman.run_maintenance_proc", Ddl),
            ("pg_qualstats_reset", Write),
            ("query_to_xml", Procedural),
            ("crosstab2", Procedural),
            ("aws_s3.table_import_from_s3", Export),
            ("anon.anonymize_database", Destructive),
            ("anon.stop_dynamic_masking", Privilege),
            ("pglogical.replicate_ddl_command", Procedural),
            ("pg_restore_relation_stats", Write),
        ] {
            let got = lookup(name, &[]).map(|(c, _)| c);
            assert_eq!(got, Some(category), "{name}");
        }
        for harmless in ["schedules", "http_status_label", "reset", "pg_reset_x"] {
            assert_eq!(lookup(harmless, &[]), None, "{harmless}");
        }
    }

    #[test]
    fn privileged_settings_match_whole_dotted_names_in_any_case() {
        for name in [
            "role",
            "ROLE",
            "pgaudit.log",
            "PgAudit.Log",
            "log_statement",
            "anon.restrict_to_trusted_schemas",
        ] {
            assert!(is_privileged_setting(name, &[]), "{name}");
        }
        for name in [
            "work_mem",
            "app.role",
            "myapp.pgaudit",
            "search_path",
            "catalog_log",
        ] {
            assert!(!is_privileged_setting(name, &[]), "{name}");
        }
        let extra = ["app.tenant_id".to_string(), "rls.*".to_string()];
        for name in ["app.tenant_id", "App.Tenant_Id", "rls.user"] {
            assert!(is_privileged_setting(name, &extra), "{name}");
        }
        assert!(!is_privileged_setting("app.tenant", &extra));
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
