//! Token-level work done before (and instead of) parsing.
//!
//! Splitting a message into statements, spotting `U&"..."` identifiers,
//! bounding expression depth and the keyword fallback all need to know where
//! strings, comments and dollar quotes begin and end. They use sqlparser's
//! own tokenizer so that they agree with the parser, never a regex.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Word};

/// Binary/postfix operators per statement above which the statement is
/// `Unknown`. sqlparser builds left-deep trees for operator chains
/// (`1+1+...`, `a OR b OR ...`, `x::t::t...`, `UNION` chains) without
/// counting them against its recursion limit, and walking, cloning or
/// dropping such a tree recurses once per operator: about 3,000 of them
/// overflow a 2 MiB thread stack in a debug build, which aborts the whole
/// proxy. Counting tokens bounds that depth from above.
pub(super) const MAX_OPERATORS: usize = 1_000;

/// Whether `sql` holds a dollar-quote tag that PostgreSQL and sqlparser
/// read differently. PostgreSQL takes any byte from 0x80 up as a tag
/// character; sqlparser only Unicode letters and digits. In
/// `SELECT $x—$ -- $x—$; DROP TABLE t` PostgreSQL sees a string and then a
/// DROP; sqlparser a parameter `$x`, an identifier `—$` and a comment to the
/// end of the line: one harmless statement. Such a tag anywhere in the text
/// (inside a string too: where strings end is what is in doubt) makes the
/// text unreadable, so it is judged `unknown`.
pub(super) fn dollar_tag_diverges(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'$') {
        let start = i + at + 1;
        // A PostgreSQL tag: a letter, `_` or high byte first, then also digits.
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_alphabetic()
                || b[end] == b'_'
                || b[end] >= 0x80
                || (end > start && b[end].is_ascii_digit()))
        {
            end += 1;
        }
        if end < b.len()
            && b[end] == b'$'
            && sql
                .get(start..end)
                .is_some_and(|tag| tag.chars().any(|c| !c.is_ascii() && !c.is_alphanumeric()))
        {
            return true;
        }
        i = start;
    }
    false
}

/// Whether a token sqlparser read as an operator holds `--` or `/*`.
/// PostgreSQL ends an operator where a comment starts; sqlparser keeps
/// reading operator characters, so in `SELECT 1 |/* ' */ 2; DROP TABLE t;
/// SELECT 1 -- '` it sees one operator `|/*`, then a string running to the
/// last quote: one SELECT, where PostgreSQL runs three statements.
pub(super) fn operator_swallows_comment(tokens: &[TokenWithSpan]) -> bool {
    tokens.iter().any(|t| {
        !matches!(t.token, Token::Word(_) | Token::Whitespace(_))
            && literal_kind(&t.token).is_none()
            && {
                let text = t.token.to_string();
                text.contains("--") || text.contains("/*")
            }
    })
}

pub(super) fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, String> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| format!("tokenizer error: {e}"))
}

/// `Some` for a literal token: its kind as the shape scanner names it, or
/// `Some(None)` for literal kinds the scanner never replaces.
pub(super) fn literal_kind(token: &Token) -> Option<Option<super::shape::LitKind>> {
    use super::shape::LitKind;
    match token {
        Token::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit()) => Some(Some(LitKind::Int)),
        Token::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            Some(Some(LitKind::Decimal))
        }
        Token::SingleQuotedString(_) => Some(Some(LitKind::Str)),
        Token::Number(..)
        | Token::DollarQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DoubleQuotedString(_) => Some(None),
        _ => None,
    }
}

pub(super) fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Converts tokenizer locations (1-based line, 1-based column counted in
/// chars) to byte offsets into the original text.
///
/// Columns count chars, so on a line with multi-byte text the offset takes
/// a walk along the line. Callers ask for the locations of a statement's
/// tokens in order, so the walk resumes from the last answer: one pass
/// over the text in all, where walking from the line start each time made
/// a long one-line statement (a 2,000-row INSERT) quadratic. ASCII lines
/// need no walk at all.
pub(super) struct ByteOffsets<'a> {
    sql: &'a str,
    /// Byte offset where each line starts, and whether the line is ASCII.
    lines: Vec<(usize, bool)>,
    /// The last non-ASCII answer: (line index, column, byte offset).
    cursor: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> ByteOffsets<'a> {
    pub(super) fn new(sql: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for line in sql.split_inclusive('\n') {
            lines.push((start, line.is_ascii()));
            start += line.len();
        }
        if lines.is_empty() || sql.ends_with('\n') {
            lines.push((start, true));
        }
        ByteOffsets {
            sql,
            lines,
            cursor: std::cell::Cell::new((usize::MAX, 0, 0)),
        }
    }

    pub(super) fn offset(&self, loc: Location) -> usize {
        let Some((line, &(start, ascii))) = usize::try_from(loc.line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| Some((l, self.lines.get(l)?)))
        else {
            return self.sql.len();
        };
        let col = usize::try_from(loc.column)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        let end = self
            .lines
            .get(line + 1)
            .map_or(self.sql.len(), |&(next, _)| next);
        if ascii && col < end - start {
            return start + col;
        }
        // (A column past its line walks on into the next, as it always did.)
        let (c_line, c_col, c_byte) = self.cursor.get();
        let (from_col, from_byte) = if c_line == line && c_col <= col {
            (c_col, c_byte)
        } else {
            (0, start)
        };
        let found = self.sql[from_byte..]
            .char_indices()
            .nth(col - from_col)
            .map(|(i, _)| from_byte + i);
        match found {
            Some(at) => {
                self.cursor.set((line, col, at));
                at
            }
            None => self.sql.len(),
        }
    }
}

fn adjacent(a: &Span, b: &Span) -> bool {
    a.end == b.start
}

/// sqlparser reads `U&"d\0061t"` as the `&` operator between a column `U`
/// and an identifier. Postgres reads one identifier with Unicode escapes.
/// Fold such triples into the single quoted identifier Postgres sees, so
/// names are checked as the server will resolve them.
///
/// # Errors
/// An escape Postgres would reject, or any `UESCAPE` clause (which changes
/// the escape character and is not modelled): the caller fails closed.
pub(super) fn fold_unicode_identifiers(tokens: &mut Vec<TokenWithSpan>) -> Result<(), String> {
    if tokens.iter().any(|t| {
        matches!(&t.token, Token::Word(w) if w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case("uescape"))
    }) {
        return Err("UESCAPE clause is not supported".into());
    }
    let mut i = 0;
    while i + 2 < tokens.len() {
        let is_u = matches!(&tokens[i].token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"));
        let is_amp = matches!(tokens[i + 1].token, Token::Ampersand);
        let quoted = match &tokens[i + 2].token {
            Token::Word(w) if w.quote_style == Some('"') => Some(w.value.clone()),
            _ => None,
        };
        if let (true, true, Some(raw)) = (is_u, is_amp, quoted) {
            if adjacent(&tokens[i].span, &tokens[i + 1].span)
                && adjacent(&tokens[i + 1].span, &tokens[i + 2].span)
            {
                let value = decode_unicode_escapes(&raw)?;
                let span = Span::new(tokens[i].span.start, tokens[i + 2].span.end);
                let word = Word {
                    value,
                    quote_style: Some('"'),
                    keyword: Keyword::NoKeyword,
                };
                tokens.splice(i..i + 3, [TokenWithSpan::new(Token::Word(word), span)]);
            }
        }
        i += 1;
    }
    Ok(())
}

/// Decodes Postgres Unicode escapes with the default escape character:
/// `\\`, `\XXXX`, `\+XXXXXX`, UTF-16 surrogate pairs allowed.
pub(super) fn decode_unicode_escapes(raw: &str) -> Result<String, String> {
    let bad = || format!("invalid Unicode escape in U&\"{raw}\"");
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            if pending_high.is_some() {
                return Err(bad());
            }
            out.push(c);
            continue;
        }
        let digits = match chars.peek() {
            Some('\\') => {
                chars.next();
                if pending_high.is_some() {
                    return Err(bad());
                }
                out.push('\\');
                continue;
            }
            Some('+') => {
                chars.next();
                6
            }
            _ => 4,
        };
        let mut code = 0u32;
        for _ in 0..digits {
            let d = chars.next().and_then(|c| c.to_digit(16)).ok_or_else(bad)?;
            code = code * 16 + d;
        }
        match (pending_high.take(), code) {
            (None, 0xD800..=0xDBFF) => pending_high = Some(code),
            (Some(high), 0xDC00..=0xDFFF) => {
                let combined = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00);
                out.push(char::from_u32(combined).ok_or_else(bad)?);
            }
            (Some(_), _) | (None, 0xDC00..=0xDFFF) | (None, 0) => return Err(bad()),
            (None, code) => out.push(char::from_u32(code).ok_or_else(bad)?),
        }
    }
    if pending_high.is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// Splits the token stream at every `;`. Postgres accepts a `;` only
/// between statements (inside `BEGIN ATOMIC` bodies too, where splitting
/// makes the parts fail to parse, i.e. fail closed), so every `;` token the
/// tokenizer reports ends a statement. Parts holding only whitespace and
/// comments are dropped.
pub(super) fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    for t in tokens {
        if matches!(t.token, Token::SemiColon) {
            if current.iter().any(|t: &TokenWithSpan| !is_trivia(&t.token)) {
                parts.push(std::mem::take(&mut current));
            } else {
                current.clear();
            }
        } else if !matches!(t.token, Token::EOF) {
            current.push(t);
        }
    }
    if current.iter().any(|t| !is_trivia(&t.token)) {
        parts.push(current);
    }
    parts
}

/// Over-estimate of how many binary/postfix operators a statement holds
/// (see [`MAX_OPERATORS`]). `+`/`-` right after `(`, `,` or an operator
/// are unary signs (bulk `VALUES (-1, -2, ...)`) and do not nest.
pub(super) fn operator_count(tokens: &[TokenWithSpan]) -> usize {
    let mut count = 0;
    let mut prev_operand = false;
    for t in tokens.iter().filter(|t| !is_trivia(&t.token)) {
        let (counts, operand) = match &t.token {
            Token::Word(w) => match w.keyword {
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::NOTNULL
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::AT
                | Keyword::COLLATE
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::OVERLAPS
                | Keyword::OPERATOR
                    if w.quote_style.is_none() =>
                {
                    (true, false)
                }
                _ => (false, true),
            },
            t if literal_kind(t).is_some() => (false, true),
            Token::Placeholder(_) | Token::RParen | Token::RBracket => (false, true),
            Token::Comma | Token::LParen | Token::Period | Token::SemiColon | Token::EOF => {
                (false, false)
            }
            Token::Plus | Token::Minus => (prev_operand, false),
            _ => (true, false),
        };
        if counts {
            count += 1;
        }
        prev_operand = operand;
    }
    count
}

/// Upper-cased text of an unquoted word, `None` for anything else.
pub(super) fn keyword_text(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags PostgreSQL accepts and sqlparser does not (non-alphanumeric
    /// characters from U+0080 up); Unicode letters and ASCII tags are read
    /// alike by both.
    #[test]
    fn dollar_tags_with_symbols_are_flagged() {
        assert!(dollar_tag_diverges(
            "SELECT $x\u{2014}$ -- $x\u{2014}$; DROP TABLE t"
        ));
        assert!(dollar_tag_diverges("SELECT $\u{a0}$ x $\u{a0}$"));
        assert!(dollar_tag_diverges("SELECT 'a$\u{1f600}$b'"));
        assert!(!dollar_tag_diverges("SELECT $q$ text $q$, $1, $$ x $$"));
        assert!(!dollar_tag_diverges(
            "SELECT $\u{e9}t\u{e9}$ x $\u{e9}t\u{e9}$"
        ));
        assert!(!dollar_tag_diverges("SELECT '\u{2014}$', '$ \u{2014}'"));
        assert!(!dollar_tag_diverges("SELECT 1 $"));
    }

    #[test]
    fn unicode_escapes_decode_like_postgres() {
        assert_eq!(decode_unicode_escapes(r"d\0061t\+000061").unwrap(), "data");
        assert_eq!(decode_unicode_escapes(r"a\\b").unwrap(), r"a\b");
        assert_eq!(decode_unicode_escapes(r"\D83D\DE00").unwrap(), "\u{1F600}");
        assert!(decode_unicode_escapes(r"\00zz").is_err());
        assert!(decode_unicode_escapes(r"\D83D").is_err());
        assert!(decode_unicode_escapes(r"\0000").is_err());
        assert!(decode_unicode_escapes(r"x\").is_err());
    }

    #[test]
    fn byte_offsets_follow_multibyte_text() {
        let sql = "SELECT 'é';\nDROP TABLE t";
        let tokens = tokenize(sql).unwrap();
        let off = ByteOffsets::new(sql);
        let drop = tokens
            .iter()
            .find(|t| keyword_text(&t.token).as_deref() == Some("DROP"))
            .unwrap();
        assert_eq!(
            &sql[off.offset(drop.span.start)..off.offset(drop.span.start) + 4],
            "DROP"
        );
    }

    #[test]
    fn byte_offsets_match_a_walk_from_the_line_start() {
        // The naive definition: the col-th char after the line's start.
        fn naive(sql: &str, line: u64, column: u64) -> usize {
            let mut starts = vec![0];
            starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
            let Some(&start) = starts.get(line as usize - 1) else {
                return sql.len();
            };
            sql[start..]
                .char_indices()
                .nth(column as usize - 1)
                .map_or(sql.len(), |(i, _)| start + i)
        }
        for sql in [
            "",
            "\n",
            "SELECT 1",
            "SELECT 'é', 'ü' FROM t\nWHERE x = 'ß'\n",
            "é\né\n\nab",
            "a\nbc\n",
        ] {
            let off = ByteOffsets::new(sql);
            let lines = sql.split('\n').count() as u64 + 1;
            // In order (as callers ask), then backwards (the cursor resets).
            let mut locs: Vec<(u64, u64)> = (1..=lines)
                .flat_map(|l| (1..=sql.len() as u64 + 2).map(move |c| (l, c)))
                .collect();
            for pass in 0..2 {
                for &(line, column) in &locs {
                    assert_eq!(
                        off.offset(Location { line, column }),
                        naive(sql, line, column),
                        "{sql:?} {line}:{column} pass {pass}"
                    );
                }
                locs.reverse();
            }
        }
        // Every token of a long multi-byte line, in order.
        let sql = format!(
            "INSERT INTO t VALUES {}",
            (0..500)
                .map(|i| format!("({i}, 'é{i}')"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let off = ByteOffsets::new(&sql);
        for t in tokenize(&sql).unwrap() {
            let (l, c) = (t.span.start.line, t.span.start.column);
            assert_eq!(off.offset(t.span.start), naive(&sql, l, c));
        }
    }

    #[test]
    fn unary_signs_do_not_count_as_operators() {
        let tokens = tokenize("INSERT INTO t VALUES (-1, -2, +3)").unwrap();
        assert_eq!(operator_count(&tokens), 0);
        let tokens = tokenize("SELECT 1 + 2 - 3 OR a::int").unwrap();
        assert_eq!(operator_count(&tokens), 4);
    }
}
