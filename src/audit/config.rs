//! `[audit]` configuration: the serde mirror of the file and its validation.
//!
//! `RawAuditConfig` mirrors the TOML table (unknown keys are errors); only the
//! validated `AuditConfig` reaches the auditor. Validation reports every
//! problem at once, each message naming its key (`audit.rotate_bytes: ...`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// How statement text is recorded for ordinary (not held) statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// As sent, minus credentials (`redact::scrub_secrets`).
    Full,
    /// Literals replaced by `?` (`redact::redact`). Default.
    Redacted,
    /// No text at all; effects, objects and decision are still recorded.
    None,
}

impl TextMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TextMode::Full => "full",
            TextMode::Redacted => "redacted",
            TextMode::None => "none",
        }
    }
}

/// What the proxy does while a sink cannot take records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Callers wait (queue full -> `record` waits; `record_durable` waits
    /// until the record is stored). Statements stall, nothing is lost.
    Block,
    /// `is_healthy()` turns false so sessions refuse new statements;
    /// `record_durable` fails at once; `record` fails when the queue is full.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// False: no trail at all. The auditor starts no writer and accepts
    /// every record without storing it, so approvals are not durably
    /// recorded either. For measuring the trail's cost, not for production.
    pub enabled: bool,
    /// Active JSON Lines file; rotated files sit beside it.
    pub file: Option<PathBuf>,
    /// Rotate when the active file would exceed this many bytes.
    pub rotate_bytes: u64,
    /// Rotate when the active file is older than this.
    pub rotate_interval: Option<Duration>,
    /// Group-commit interval: the longest an ordinary record waits for fsync.
    pub flush_interval: Duration,
    pub statement_text: TextMode,
    pub log_parameters: bool,
    pub stdout: bool,
    pub postgres_url: Option<String>,
    /// Table the PostgreSQL sink creates and appends to (may be schema-qualified).
    pub postgres_table: String,
    pub on_sink_failure: FailurePolicy,
    /// Bound of the queue between `record` and the writer task.
    pub queue_capacity: usize,
}

impl AuditConfig {
    /// A file-only configuration with defaults, handy for tests and tools.
    pub fn with_file(file: impl Into<PathBuf>) -> AuditConfig {
        validate(RawAuditConfig {
            file: Some(file.into()),
            ..RawAuditConfig::default()
        })
        .expect("defaults are valid")
    }
}

/// Serde mirror of `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuditConfig {
    /// `false` turns the trail off; the other keys are still validated.
    pub enabled: bool,
    pub file: Option<PathBuf>,
    pub rotate_bytes: u64,
    /// Duration string: `90s`, `15m`, `24h`, `7d`; absent = size only.
    pub rotate_interval: Option<String>,
    pub flush_interval: String,
    pub statement_text: String,
    pub log_parameters: bool,
    pub stdout: bool,
    /// Connection string inline (avoid: it usually holds a password).
    pub postgres_url: Option<String>,
    /// Name of an environment variable holding the connection string.
    pub postgres_url_env: Option<String>,
    pub postgres_table: String,
    pub on_sink_failure: String,
    pub queue_capacity: usize,
}

impl Default for RawAuditConfig {
    fn default() -> Self {
        RawAuditConfig {
            enabled: true,
            file: None,
            rotate_bytes: 256 * 1024 * 1024,
            rotate_interval: None,
            flush_interval: "50ms".into(),
            statement_text: "redacted".into(),
            log_parameters: false,
            stdout: false,
            postgres_url: None,
            postgres_url_env: None,
            postgres_table: "airlock_audit".into(),
            on_sink_failure: "block".into(),
            queue_capacity: 65_536,
        }
    }
}

/// Check `raw` and build the validated config; every problem is reported.
pub fn validate(raw: RawAuditConfig) -> Result<AuditConfig, Vec<String>> {
    validate_with_env(raw, |k| std::env::var(k).ok())
}

fn validate_with_env(
    raw: RawAuditConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AuditConfig, Vec<String>> {
    let mut errs = Vec::new();
    if raw.rotate_bytes == 0 {
        errs.push("audit.rotate_bytes: must be > 0".to_string());
    } else if raw.rotate_bytes < 4096 {
        errs.push(format!(
            "audit.rotate_bytes: {} is below the 4096-byte minimum",
            raw.rotate_bytes
        ));
    }
    let rotate_interval = match raw.rotate_interval.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d >= Duration::from_secs(1) => Some(d),
        Some(Ok(_)) => {
            errs.push("audit.rotate_interval: must be at least 1s".into());
            None
        }
        Some(Err(e)) => {
            errs.push(format!("audit.rotate_interval: {e}"));
            None
        }
    };
    let flush_interval = match parse_duration(&raw.flush_interval) {
        Ok(d) if d.is_zero() => {
            errs.push("audit.flush_interval: must be > 0".into());
            Duration::from_millis(50)
        }
        Ok(d) if d > Duration::from_secs(10) => {
            errs.push(
                "audit.flush_interval: must be at most 10s (it bounds the crash-loss window)"
                    .into(),
            );
            d
        }
        Ok(d) => d,
        Err(e) => {
            errs.push(format!("audit.flush_interval: {e}"));
            Duration::from_millis(50)
        }
    };
    let statement_text = match raw.statement_text.as_str() {
        "full" => TextMode::Full,
        "redacted" => TextMode::Redacted,
        "none" => TextMode::None,
        other => {
            errs.push(format!(
                "audit.statement_text: {other:?} is not one of \"full\", \"redacted\", \"none\""
            ));
            TextMode::Redacted
        }
    };
    let on_sink_failure = match raw.on_sink_failure.as_str() {
        "block" => FailurePolicy::Block,
        "refuse" => FailurePolicy::Refuse,
        other => {
            errs.push(format!(
                "audit.on_sink_failure: {other:?} is not one of \"block\", \"refuse\""
            ));
            FailurePolicy::Block
        }
    };
    let postgres_url = match (raw.postgres_url, raw.postgres_url_env) {
        (Some(_), Some(_)) => {
            errs.push(
                "audit.postgres_url_env: set either postgres_url or postgres_url_env, not both"
                    .into(),
            );
            None
        }
        (Some(u), None) => Some(u),
        (None, Some(var)) => match env(&var) {
            Some(u) if !u.trim().is_empty() => Some(u),
            _ => {
                errs.push(format!(
                    "audit.postgres_url_env: environment variable {var} is not set or empty"
                ));
                None
            }
        },
        (None, None) => None,
    };
    if let Some(u) = &postgres_url {
        if let Err(e) = u.parse::<tokio_postgres::Config>() {
            // The parser's message can quote the string; do not echo a password.
            errs.push(format!(
                "audit.postgres_url: not a valid connection string ({})",
                redact_conn_error(&e.to_string(), u)
            ));
        }
    }
    let table_ok = !raw.postgres_table.is_empty()
        && raw.postgres_table.split('.').count() <= 2
        && raw.postgres_table.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !p.as_bytes()[0].is_ascii_digit()
        });
    if !table_ok {
        errs.push(format!(
            "audit.postgres_table: {:?} must be [schema.]name of lowercase letters, digits and _",
            raw.postgres_table
        ));
    }
    if raw.queue_capacity < 16 {
        errs.push("audit.queue_capacity: must be at least 16".into());
    }
    if let Some(f) = &raw.file {
        if f.as_os_str().is_empty() || f.file_name().is_none() {
            errs.push(format!(
                "audit.file: {:?} does not name a file",
                f.display().to_string()
            ));
        }
    }
    if raw.file.is_none() && postgres_url.is_none() && !raw.stdout && errs.is_empty() {
        errs.push(
            "audit: no sink configured; set audit.file, audit.postgres_url(_env) or audit.stdout"
                .into(),
        );
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(AuditConfig {
        enabled: raw.enabled,
        file: raw.file,
        rotate_bytes: raw.rotate_bytes,
        rotate_interval,
        flush_interval,
        statement_text,
        log_parameters: raw.log_parameters,
        stdout: raw.stdout,
        postgres_url,
        postgres_table: raw.postgres_table,
        on_sink_failure,
        queue_capacity: raw.queue_capacity,
    })
}

fn redact_conn_error(msg: &str, url: &str) -> String {
    if url.is_empty() {
        msg.to_string()
    } else {
        msg.replace(url, "<url>")
    }
}

/// `250ms`, `5s`, `15m`, `24h`, `7d` (see [`crate::duration::parse`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<AuditConfig, Vec<String>> {
        let raw: RawAuditConfig = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        validate_with_env(raw, |k| {
            (k == "AUDIT_PG").then(|| "host=localhost user=x".to_string())
        })
    }

    #[test]
    fn defaults_apply() {
        let c = parse("file = '/var/log/a.jsonl'").unwrap();
        assert_eq!(c.flush_interval, Duration::from_millis(50));
        assert_eq!(c.statement_text, TextMode::Redacted);
        assert_eq!(c.on_sink_failure, FailurePolicy::Block);
        assert!(!c.log_parameters);
        assert!(c.enabled);
    }

    #[test]
    fn enabled_key_turns_the_trail_off_but_other_keys_are_still_checked() {
        let c = parse("enabled = false\nfile = 'a.jsonl'\nstatement_text = 'none'").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.statement_text, TextMode::None);
        assert!(parse("enabled = true\nfile = 'a.jsonl'").unwrap().enabled);
        let errs = parse("enabled = false\nfile = 'a.jsonl'\nflush_interval = '0s'").unwrap_err();
        assert_eq!(errs, vec!["audit.flush_interval: must be > 0".to_string()]);
        let err = parse("enabled = 'no'\nfile = 'a.jsonl'").unwrap_err();
        assert!(err[0].contains("enabled"), "{err:?}");
    }

    #[test]
    fn all_problems_are_reported_with_their_key() {
        let errs = parse(
            "file = 'a'\nrotate_bytes = 0\nflush_interval = '50'\nstatement_text = 'raw'\non_sink_failure = 'drop'\nrotate_interval = '0s'\npostgres_table = 'Bad-Name'",
        )
        .unwrap_err();
        let joined = errs.join("\n");
        for key in [
            "audit.rotate_bytes: must be > 0",
            "audit.flush_interval",
            "audit.statement_text",
            "audit.on_sink_failure",
            "audit.rotate_interval",
            "audit.postgres_table",
        ] {
            assert!(joined.contains(key), "missing {key} in {joined}");
        }
        assert_eq!(errs.len(), 6);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse("file = 'a'\nrotate_byte = 10").unwrap_err();
        assert!(err[0].contains("rotate_byte"), "{err:?}");
    }

    #[test]
    fn postgres_url_from_env_and_sink_required() {
        let c = parse("postgres_url_env = 'AUDIT_PG'").unwrap();
        assert_eq!(c.postgres_url.as_deref(), Some("host=localhost user=x"));
        let e = parse("postgres_url_env = 'NOPE'").unwrap_err();
        assert!(e[0].contains("NOPE"));
        let e = parse("").unwrap_err();
        assert!(e[0].contains("no sink"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
