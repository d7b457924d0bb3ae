//! Statement text for the audit trail: literal redaction and secret scrubbing.
//!
//! `redact` keeps the shape of a statement (keywords, identifiers, operators,
//! `$n` placeholders) and replaces every literal with `?`, so the trail shows
//! *what* was done to *which* objects without the data. `scrub_secrets` is
//! applied to text recorded in full (held statements, `text_mode = "full"`):
//! it removes only what is a credential by construction.
//!
//! Choices, and why:
//! - Comments are dropped (replaced by one space). They are free text and
//!   agents put anything there, including values; keeping them would leak
//!   what literal redaction hides.
//! - Whitespace is kept as written, so multi-line statements stay readable.
//! - Tokenizing uses `PostgreSqlDialect` without unescaping, so quoted
//!   identifiers round-trip byte for byte.
//! - If the tokenizer fails, nothing of the text is kept: the whole text
//!   becomes [`UNREADABLE`]. A statement we cannot lex is one we cannot
//!   safely cut literals out of.
//! - Limit: a value an agent spells as an identifier (`"4111-1111-..."`) or
//!   inside a function name stays. Redaction removes literals, not meaning.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Recorded instead of a statement that could not be tokenized.
pub const UNREADABLE: &str = "<redacted: statement could not be tokenized>";

/// Recorded in place of a secret literal in full-text mode.
pub const SECRET: &str = "'<secret>'";

/// Replace every literal in `sql` with `?`; drop comments.
///
/// ```text
/// SELECT * FROM t WHERE a = 'x' AND b > 10   ->  SELECT * FROM t WHERE a = ? AND b > ?
/// ```
pub fn redact(sql: &str) -> String {
    redact_plain(sql).unwrap_or_else(|| redact_tokens(sql))
}

/// Fast path for the common statement, one the classifier's shape scanner
/// models exactly (no comments, only plain `'...'` strings and numbers as
/// literals): its shape with every placeholder printed as `?`. The result
/// equals the tokenizer's (`redact_tokens`) for every such text; a test
/// holds the two together over the classifier corpus.
fn redact_plain(sql: &str) -> Option<String> {
    let mut shape = String::with_capacity(sql.len() + 8);
    crate::classify::shape::scan(sql, &mut shape, None)?;
    Some(crate::classify::shape::redacted(&shape))
}

fn redact_tokens(sql: &str) -> String {
    let Some(tokens) = tokenize(sql) else {
        return UNREADABLE.to_string();
    };
    let mut out = String::with_capacity(sql.len());
    for tok in &tokens {
        match tok {
            t if is_literal(t) => out.push('?'),
            // The comment token holds its terminating newline (if any); keep
            // the line break so the statement's layout survives.
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => {
                if comment.ends_with('\n') {
                    out.push('\n');
                }
            }
            Token::Whitespace(Whitespace::MultiLineComment(_)) => out.push(' '),
            Token::EOF => {}
            t => out.push_str(&t.to_string()),
        }
    }
    out
}

/// Text recorded in full, minus credentials: the string literal after a
/// `PASSWORD` keyword (`CREATE ROLE .. PASSWORD '..'`, user mappings) and any
/// string literal that looks like a connection string holding a password
/// (`dblink('host=.. password=..')`, `CREATE SUBSCRIPTION .. CONNECTION`).
///
/// If the text cannot be tokenized it is kept unless it mentions "password"
/// at all, in which case it is fully redacted: we cannot locate the secret.
pub fn scrub_secrets(sql: &str) -> String {
    let Some(tokens) = tokenize(sql) else {
        return if sql.to_ascii_lowercase().contains("password") {
            UNREADABLE.to_string()
        } else {
            sql.to_string()
        };
    };
    let mut out = String::with_capacity(sql.len());
    let mut after_password = false;
    for tok in &tokens {
        match tok {
            Token::EOF => {}
            Token::Whitespace(w) => {
                out.push_str(&w.to_string());
            }
            t if is_literal(t) && (after_password || looks_like_credential(t)) => {
                out.push_str(SECRET);
                after_password = false;
            }
            Token::Word(w)
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("password") =>
            {
                out.push_str(&w.to_string());
                after_password = true;
            }
            t => {
                out.push_str(&t.to_string());
                // `PASSWORD = 'x'` (options syntax) keeps the flag across `=`.
                after_password = after_password && matches!(t, Token::Eq);
            }
        }
    }
    out
}

fn tokenize(sql: &str) -> Option<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .ok()
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            // In PostgreSQL "..." is an identifier and lexes as a Word; a
            // DoubleQuotedString token would only come from another dialect
            // path, and then it holds a value, not a name.
            | Token::DoubleQuotedString(_)
    )
}

fn looks_like_credential(t: &Token) -> bool {
    let s = match t {
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => s.as_str(),
        Token::DollarQuotedString(d) => d.value.as_str(),
        _ => return false,
    };
    let lower = s.to_ascii_lowercase();
    // libpq keyword/value (`password=x`) and URI (`postgres://u:p@h`) forms.
    lower.contains("password") || (lower.contains("://") && lower.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_question_marks() {
        assert_eq!(
            redact("SELECT * FROM t WHERE a = 'x' AND b > 10.5 AND c = -3"),
            "SELECT * FROM t WHERE a = ? AND b > ? AND c = -?"
        );
        assert_eq!(
            redact("INSERT INTO t VALUES (1, 'it''s')"),
            "INSERT INTO t VALUES (?, ?)"
        );
    }

    #[test]
    fn identifiers_keywords_and_placeholders_are_kept() {
        assert_eq!(
            redact(r#"UPDATE "My ""T""" SET "v" = $1 WHERE id = $2"#),
            r#"UPDATE "My ""T""" SET "v" = $1 WHERE id = $2"#
        );
        assert_eq!(redact("SELECT x::text FROM s.t"), "SELECT x::text FROM s.t");
    }

    #[test]
    fn dollar_quotes_escape_strings_and_typed_literals_are_redacted() {
        assert_eq!(redact("SELECT $$secret$$, $tag$a'b$tag$"), "SELECT ?, ?");
        assert_eq!(
            redact(r"SELECT E'line\nbreak\'s', U&'d\0061t'"),
            "SELECT ?, ?"
        );
        assert_eq!(
            redact("SELECT DATE '2024-01-01' + interval '1 day'"),
            "SELECT DATE ? + interval ?"
        );
        assert_eq!(redact("SELECT X'ff', B'0101'"), "SELECT ?, ?");
    }

    #[test]
    fn fast_path_matches_the_tokenizer_on_the_corpus() {
        let corpus: toml::Value =
            toml::from_str(include_str!("../../fixtures/classify/corpus.toml")).unwrap();
        let mut fast = 0;
        for case in corpus["case"].as_array().unwrap() {
            let sql = case["sql"].as_str().unwrap();
            let extra = [
                format!("{sql};"),
                format!("  {sql} ; \n"),
                sql.replace('1', "12345"),
            ];
            for text in std::iter::once(sql).chain(extra.iter().map(String::as_str)) {
                if let Some(quick) = redact_plain(text) {
                    assert_eq!(quick, redact_tokens(text), "{text:?}");
                    fast += 1;
                }
            }
        }
        assert!(fast > 500, "fast path taken only {fast} times");
    }

    #[test]
    fn comments_are_dropped() {
        assert_eq!(redact("SELECT 1 -- card 4111\nFROM t"), "SELECT ? \nFROM t");
        assert_eq!(redact("SELECT /* ssn 123 */ a FROM t"), "SELECT   a FROM t");
    }

    #[test]
    fn untokenizable_text_is_fully_redacted() {
        assert_eq!(redact("SELECT 'unterminated"), UNREADABLE);
        assert_eq!(redact("SELECT $$never closed"), UNREADABLE);
    }

    #[test]
    fn scrub_removes_passwords_only() {
        assert_eq!(
            scrub_secrets("ALTER ROLE bot WITH PASSWORD 'hunter2' VALID UNTIL '2030-01-01'"),
            "ALTER ROLE bot WITH PASSWORD '<secret>' VALID UNTIL '2030-01-01'"
        );
        assert_eq!(
            scrub_secrets("SELECT dblink_exec('host=h password=pw', 'DELETE FROM t WHERE id = 4')"),
            "SELECT dblink_exec('<secret>', 'DELETE FROM t WHERE id = 4')"
        );
        assert_eq!(
            scrub_secrets("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'a', password 'b')"),
            "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'a', password '<secret>')"
        );
        assert_eq!(
            scrub_secrets("DELETE FROM t WHERE id = 4"),
            "DELETE FROM t WHERE id = 4"
        );
        assert_eq!(
            scrub_secrets("ALTER ROLE x PASSWORD 'unterminated"),
            UNREADABLE
        );
    }
}
