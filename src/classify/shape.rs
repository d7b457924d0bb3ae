//! The literal-free *shape* of a statement: the key under which statements
//! that differ only in their literal values share one classification.
//!
//! Why: agents and drivers that do not use bind parameters send texts such
//! as `SELECT ... WHERE id = 42`, each one new to an exact-text cache, and
//! parsing one costs 8-150 us. Their shapes repeat.
//!
//! Safety argument (the cache must never hand a statement another
//! statement's classification):
//! - The scanner is deliberately narrow. It accepts one statement (an
//!   optional trailing `;`), copies every byte verbatim except plain string
//!   literals `'...'` and unsigned integers/decimals of at most 9 digits per
//!   part, and gives up (`None`, the text is then classified on its own) on
//!   anything whose lexing it does not model exactly: comments, dollar
//!   quotes, `E''`/`U&''`/`B''`/`X''`/`N''` prefixes (any letter, digit,
//!   `_`, `$`, `&` or non-ASCII byte right before a quote), backslashes,
//!   backticks, control characters, `$` other than a `$n` parameter, numbers
//!   glued to letters, `_`, `.` or exponents, strings followed by another
//!   string (Postgres concatenates those).
//! - Placeholders are NUL-prefixed and kind-specific (`\0i`, `\0d`, `\0s`);
//!   NUL cannot occur in a protocol text, so two texts have the same key only
//!   if they are byte-identical outside literals of the same kinds.
//! - A shape's classification is cached only after the classifier confirmed,
//!   on a text of that shape, that sqlparser's tokenizer found exactly these
//!   literal tokens, that the parser turned each one into exactly one
//!   literal value node, and that the walk never looked at a literal's value
//!   (see `Trace` in the parent module). Otherwise only the exact text is
//!   cached.

/// Kind of a literal the scanner replaced. Distinct kinds get distinct
/// placeholders: parsers treat `LIMIT 1` and `LIMIT 'a'` differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LitKind {
    Int,
    Decimal,
    Str,
}

/// One replaced literal: its byte range in the text, and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Literal {
    pub start: usize,
    pub end: usize,
    pub kind: LitKind,
}

/// What [`scan`] learned besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    /// Byte range of the statement (leading whitespace, trailing `;` and
    /// whitespace excluded): what the classifier reports as its span.
    pub span: (usize, usize),
    /// Number of literals replaced; 0 means the key is the text itself.
    pub literals: usize,
}

/// A shape key printed with every placeholder as `?`: the text of every
/// statement of that shape with its literals redacted. The audit trail's
/// redaction (`audit::redact`) is this for every text `scan` accepts, so a
/// shape's redacted text is computed once and shared by its statements.
pub fn redacted(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    // The key starts with a NUL; each placeholder is NUL + an ASCII kind
    // letter. NUL never occurs inside a multi-byte UTF-8 sequence, so the
    // pieces between placeholders are whole characters.
    let mut pieces = key.get(1..).unwrap_or("").split('\0');
    out.push_str(pieces.next().unwrap_or(""));
    for piece in pieces {
        out.push('?');
        out.push_str(piece.get(1..).unwrap_or(""));
    }
    out
}

/// Longest digit run replaced by a placeholder. Longer numbers stay in the
/// key: parsers convert some to machine integers, where size can matter.
const MAX_DIGITS: usize = 9;

/// Write the shape key of `sql` into `key` (cleared first) and return its
/// span, or `None` when the text is not one the scanner models exactly.
/// `literals`, when given, receives every replaced literal in order.
///
/// Runs on every simple-protocol statement, so it is written for speed:
/// bytes that need no decision (letters, whitespace, most punctuation:
/// [`PLAIN`]) are skipped in a tight loop, and only the few that open a
/// literal, a quote, a comment or a refusal are looked at one by one.
pub(crate) fn scan(
    sql: &str,
    key: &mut String,
    mut literals: Option<&mut Vec<Literal>>,
) -> Option<Scanned> {
    let b = sql.as_bytes();
    key.clear();
    key.push('\0');
    if let Some(l) = literals.as_deref_mut() {
        l.clear();
    }
    let mut count = 0;
    let mut i = 0;
    // Start of the bytes not yet copied into `key`.
    let mut copied = 0;
    // End of the statement: the text's, or its trailing `;`'s position.
    let mut stmt_end = b.len();
    loop {
        i = skip_plain(b, i);
        let Some(&c) = b.get(i) else { break };
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        let start = i;
        match c {
            b';' => {
                // One statement: only whitespace may follow.
                if !b[i + 1..].iter().all(|&c| is_space(c)) {
                    return None;
                }
                stmt_end = i;
                break;
            }
            b'\'' => {
                if glues(prev) {
                    return None;
                }
                i = string_end(b, i)?;
                // `'a'\n'b'` is one literal to Postgres.
                let next = b[i..].iter().position(|&c| !is_space(c)).map(|n| b[i + n]);
                if next == Some(b'\'') {
                    return None;
                }
                emit(key, sql, &mut copied, start, i, "\0s");
                push(&mut literals, start, i, LitKind::Str);
                count += 1;
            }
            b'0'..=b'9' => {
                if prev == b'.' {
                    // `.5`, `t.1`: not modelled.
                    return None;
                }
                if glues(prev) {
                    // Part of an identifier (`t1`) or a parameter: verbatim.
                    i += 1;
                } else {
                    let int_end = digits_end(b, i);
                    let mut end = int_end;
                    let mut kind = LitKind::Int;
                    if b.get(end) == Some(&b'.') {
                        let frac_end = digits_end(b, end + 1);
                        if frac_end == end + 1 || frac_end - (end + 1) > MAX_DIGITS {
                            return None;
                        }
                        end = frac_end;
                        kind = LitKind::Decimal;
                    }
                    if int_end - start > MAX_DIGITS
                        || b.get(end).is_some_and(|&c| glues(c) || c == b'.')
                    {
                        return None;
                    }
                    i = end;
                    emit(
                        key,
                        sql,
                        &mut copied,
                        start,
                        i,
                        if kind == LitKind::Int { "\0i" } else { "\0d" },
                    );
                    push(&mut literals, start, i, kind);
                    count += 1;
                }
            }
            b'"' => {
                i = quoted_ident_end(b, i)?;
            }
            b'$' => {
                // `$1` parameters only; `$$`/`$tag$` open dollar quotes.
                if glues(prev) || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                i = digits_end(b, i + 1);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'-' | b'/' => i += 1,
            // Backslashes, backticks, control characters; nothing else
            // leaves `PLAIN` (see its test).
            _ => return None,
        }
    }
    let start = b.iter().position(|&c| !is_space(c))?;
    if start >= stmt_end {
        // Nothing but whitespace and a `;`.
        return None;
    }
    let end = stmt_end
        - b[..stmt_end]
            .iter()
            .rev()
            .take_while(|&&c| is_space(c))
            .count();
    key.push_str(&sql[copied..]);
    Some(Scanned {
        span: (start, end),
        literals: count,
    })
}

/// Bytes `scan` passes over without a decision: everything but what opens
/// a literal, quote, parameter, comment or statement end, and what it
/// refuses (backslash, backtick, control characters other than
/// whitespace). Non-ASCII bytes are identifier characters to Postgres.
static PLAIN: [bool; 256] = {
    let mut t = [true; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = !(matches!(
            b,
            b';' | b'\'' | b'"' | b'$' | b'-' | b'/' | b'\\' | b'`' | 0x7f
        ) || b.is_ascii_digit()
            || (b < 0x20 && !matches!(b, b' ' | b'\t' | b'\n' | b'\r')));
        c += 1;
    }
    t
};

/// The first index at or after `i` whose byte is not [`PLAIN`] (or
/// `b.len()`). Most of a statement is plain (keywords, names, spaces), so
/// this loop is most of the scan: sixteen bytes per step where SSE2 is
/// there (every x86_64), byte by byte elsewhere and for the tail.
#[inline]
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        while i + 16 <= b.len() {
            // SAFETY: `i + 16 <= b.len()`: the 16 bytes read are in `b`.
            let mask = unsafe { sse2::not_plain(b.as_ptr().add(i)) };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while i < b.len() && PLAIN[b[i] as usize] {
        i += 1;
    }
    i
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Bit n set: byte n of the 16 at `p` is not [`super::PLAIN`]. The
    /// same set as the table, as comparisons (the test `simd_skip_agrees_
    /// with_the_table` checks every byte value at every lane).
    ///
    /// # Safety
    /// `p` must be valid for reading 16 bytes.
    #[inline]
    pub(super) unsafe fn not_plain(p: *const u8) -> u32 {
        // SAFETY: the caller guarantees 16 readable bytes; SSE2 is part of
        // the x86_64 baseline, so these intrinsics are always available.
        unsafe {
            let x = _mm_loadu_si128(p as *const __m128i);
            let eq = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
            let special = _mm_or_si128(
                _mm_or_si128(
                    _mm_or_si128(eq(b';'), eq(b'\'')),
                    _mm_or_si128(eq(b'"'), eq(b'$')),
                ),
                _mm_or_si128(
                    _mm_or_si128(eq(b'-'), eq(b'/')),
                    _mm_or_si128(_mm_or_si128(eq(b'\\'), eq(b'`')), eq(0x7f)),
                ),
            );
            // Unsigned x - '0' <= 9: a digit.
            let d = _mm_sub_epi8(x, _mm_set1_epi8(b'0' as i8));
            let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
            // x <= 0x1f and not tab, newline or carriage return.
            let low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
            let ws = _mm_or_si128(_mm_or_si128(eq(b'\t'), eq(b'\n')), eq(b'\r'));
            let control = _mm_andnot_si128(ws, low);
            let all = _mm_or_si128(_mm_or_si128(special, digit), control);
            _mm_movemask_epi8(all) as u32
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that join with a following quote or digit into something other
/// than a plain literal: identifier characters (and so the `E`/`B`/`X`/`N`
/// string prefixes), `$` (parameters, dollar quotes), `&` (`U&'...'`) and
/// any non-ASCII byte (identifier characters in Postgres).
fn glues(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'&' || c >= 0x80
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// End (exclusive) of the `'...'` literal opening at `i`; `''` is a quote
/// inside it. `None` if unterminated or if it holds a backslash (only
/// meaningful in strings we refuse to model, but never guess).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\'' if b.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return Some(j + 1),
            b'\\' => return None,
            _ => j += 1,
        }
    }
}

/// End (exclusive) of the `"..."` identifier opening at `i`; `""` inside.
fn quoted_ident_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' if b.get(j + 1) == Some(&b'"') => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

fn emit(
    key: &mut String,
    sql: &str,
    copied: &mut usize,
    start: usize,
    end: usize,
    placeholder: &str,
) {
    key.push_str(&sql[*copied..start]);
    key.push_str(placeholder);
    *copied = end;
}

fn push(literals: &mut Option<&mut Vec<Literal>>, start: usize, end: usize, kind: LitKind) {
    if let Some(l) = literals.as_deref_mut() {
        l.push(Literal { start, end, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<String> {
        let mut k = String::new();
        scan(sql, &mut k, None).map(|_| k.replace('\0', "#"))
    }

    #[test]
    fn literals_become_kind_placeholders() {
        assert_eq!(
            key("SELECT a FROM t WHERE id = 42 AND name = 'it''s' AND p > 1.50;").as_deref(),
            Some("#SELECT a FROM t WHERE id = #i AND name = #s AND p > #d;")
        );
        assert_eq!(key("SELECT 1").as_deref(), Some("#SELECT #i"));
    }

    #[test]
    fn identifiers_parameters_and_casts_stay() {
        assert_eq!(
            key(r#"SELECT t1.c2, "x'1", $1::int FROM t1 WHERE "a""b" = '7'::text"#).as_deref(),
            Some(r#"#SELECT t1.c2, "x'1", $1::int FROM t1 WHERE "a""b" = #s::text"#)
        );
    }

    #[test]
    fn span_excludes_whitespace_and_semicolon() {
        let mut k = String::new();
        let s = scan("  SELECT 'x' ;  \n", &mut k, None).unwrap();
        assert_eq!(s.span, (2, 12));
        assert_eq!(s.literals, 1);
    }

    #[test]
    fn literal_positions_are_reported() {
        let mut k = String::new();
        let mut lits = Vec::new();
        scan("SELECT 1, 'a', 2.5", &mut k, Some(&mut lits)).unwrap();
        assert_eq!(
            lits,
            vec![
                Literal {
                    start: 7,
                    end: 8,
                    kind: LitKind::Int
                },
                Literal {
                    start: 10,
                    end: 13,
                    kind: LitKind::Str
                },
                Literal {
                    start: 15,
                    end: 18,
                    kind: LitKind::Decimal
                },
            ]
        );
    }

    #[test]
    fn refuses_what_it_does_not_model() {
        for sql in [
            "SELECT E'\\''",
            "SELECT e'x'",
            "SELECT U&'x'",
            "SELECT x'1f'",
            "SELECT B'101'",
            "SELECT N'x'",
            "SELECT 'a'\n'b'",
            "SELECT 'a\\'",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT $$x$$",
            "SELECT $tag$x$tag$",
            "SELECT 1 -- c",
            "SELECT /* c */ 1",
            "SELECT 1e5",
            "SELECT 0x1f",
            "SELECT 1_000",
            "SELECT .5",
            "SELECT 1.",
            "SELECT 1.2.3",
            "SELECT 1234567890",
            "SELECT 1; SELECT 2",
            "SELECT `x`",
            "SELECT 1\x0c",
            "",
            " ; ",
        ] {
            assert_eq!(key(sql), None, "{sql:?}");
        }
    }

    /// The scanner before its fast path (one decision per byte), kept as
    /// the specification the fast one must match exactly.
    fn reference_scan(
        sql: &str,
        key: &mut String,
        mut literals: Option<&mut Vec<Literal>>,
    ) -> Option<Scanned> {
        let b = sql.as_bytes();
        key.clear();
        key.push('\0');
        if let Some(l) = literals.as_deref_mut() {
            l.clear();
        }
        let mut count = 0;
        let mut i = 0;
        // Start of the bytes not yet copied into `key`.
        let mut copied = 0;
        let mut first_significant = None;
        let mut end_significant = 0;
        let mut ended = false; // a `;` was seen: only whitespace may follow
        while i < b.len() {
            let c = b[i];
            if is_space(c) {
                i += 1;
                continue;
            }
            if ended {
                return None;
            }
            let prev = if i > 0 { b[i - 1] } else { b' ' };
            let start = i;
            match c {
                b';' => {
                    ended = true;
                    i += 1;
                    continue;
                }
                b'\'' => {
                    if glues(prev) {
                        return None;
                    }
                    i = string_end(b, i)?;
                    // `'a'\n'b'` is one literal to Postgres.
                    let next = b[i..].iter().position(|&c| !is_space(c)).map(|n| b[i + n]);
                    if next == Some(b'\'') {
                        return None;
                    }
                    emit(key, sql, &mut copied, start, i, "\0s");
                    push(&mut literals, start, i, LitKind::Str);
                    count += 1;
                }
                b'0'..=b'9' => {
                    if prev == b'.' {
                        // `.5`, `t.1`: not modelled.
                        return None;
                    }
                    if glues(prev) {
                        // Part of an identifier (`t1`) or a parameter: verbatim.
                        i += 1;
                    } else {
                        let int_end = digits_end(b, i);
                        let mut end = int_end;
                        let mut kind = LitKind::Int;
                        if b.get(end) == Some(&b'.') {
                            let frac_end = digits_end(b, end + 1);
                            if frac_end == end + 1 || frac_end - (end + 1) > MAX_DIGITS {
                                return None;
                            }
                            end = frac_end;
                            kind = LitKind::Decimal;
                        }
                        if int_end - start > MAX_DIGITS
                            || b.get(end).is_some_and(|&c| glues(c) || c == b'.')
                        {
                            return None;
                        }
                        i = end;
                        emit(
                            key,
                            sql,
                            &mut copied,
                            start,
                            i,
                            if kind == LitKind::Int { "\0i" } else { "\0d" },
                        );
                        push(&mut literals, start, i, kind);
                        count += 1;
                    }
                }
                b'"' => {
                    i = quoted_ident_end(b, i)?;
                }
                b'$' => {
                    // `$1` parameters only; `$$`/`$tag$` open dollar quotes.
                    if glues(prev) || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        return None;
                    }
                    i = digits_end(b, i + 1);
                }
                b'-' if b.get(i + 1) == Some(&b'-') => return None,
                b'/' if b.get(i + 1) == Some(&b'*') => return None,
                b'\\' | b'`' => return None,
                c if c < 0x20 || c == 0x7f => return None,
                _ => i += 1,
            }
            first_significant.get_or_insert(start);
            end_significant = i;
        }
        let start = first_significant?;
        key.push_str(&sql[copied..]);
        Some(Scanned {
            span: (start, end_significant),
            literals: count,
        })
    }

    #[test]
    fn simd_skip_agrees_with_the_table() {
        // Every byte value, at every lane of a 16-byte step and in the
        // byte-by-byte tail, in a run of plain bytes.
        let lens = [1usize, 15, 16, 17, 31, 32, 33, 47, 70];
        crate::testing::each_byte_at_each_offset(&lens, b'a', |b, at, v| {
            let len = b.len();
            let want = if PLAIN[v as usize] { len } else { at };
            assert_eq!(skip_plain(b, 0), want, "byte {v:#04x} at {at} of {len}");
            assert_eq!(skip_plain(b, at), want, "from {at}: byte {v:#04x} of {len}");
        });
        assert_eq!(skip_plain(b"", 0), 0);
        assert_eq!(skip_plain(b"abc", 3), 3);
    }

    #[test]
    fn fast_scan_matches_the_byte_by_byte_reference() {
        // Fragments chosen to hit every branch: literals of each kind,
        // refusals, quotes, parameters, comments, `;` placement.
        const PARTS: &[&str] = &[
            "SELECT",
            " ",
            "  ",
            "\n",
            "\t",
            "a",
            "t1",
            "_x",
            "é",
            ".",
            ",",
            "(",
            ")",
            "=",
            "-",
            "--",
            "/",
            "/*",
            "*",
            "'s'",
            "'it''s'",
            "'",
            "''",
            "E'x'",
            "\"id\"",
            "\"a\"\"b\"",
            "\"",
            "$1",
            "$$",
            "$",
            "1",
            "42",
            "1.5",
            "1.",
            ".5",
            "1234567890",
            "123456789",
            "1e5",
            ";",
            " ;",
            "; ",
            "\\",
            "`",
            "\x0c",
            "\x7f",
            "::int",
            "'a' 'b'",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut fast_key, mut ref_key) = (String::new(), String::new());
        let (mut fast_lits, mut ref_lits) = (Vec::new(), Vec::new());
        let mut accepted = 0;
        for _ in 0..200_000 {
            let n = (next() % 9) as usize;
            let sql: String = (0..n)
                .map(|_| PARTS[(next() % PARTS.len() as u64) as usize])
                .collect();
            let fast = scan(&sql, &mut fast_key, Some(&mut fast_lits));
            let reference = reference_scan(&sql, &mut ref_key, Some(&mut ref_lits));
            assert_eq!(fast, reference, "{sql:?}");
            if fast.is_some() {
                accepted += 1;
                assert_eq!(fast_key, ref_key, "{sql:?}");
                assert_eq!(fast_lits, ref_lits, "{sql:?}");
            }
        }
        // Both outcomes are exercised, not only refusals.
        assert!(accepted > 20_000, "{accepted}");
    }

    #[test]
    fn same_key_only_for_same_structure() {
        assert_eq!(key("SELECT 1"), key("SELECT 22"));
        assert_eq!(key("SELECT 'a'"), key("SELECT 'b''c'"));
        assert_ne!(key("SELECT 1"), key("SELECT '1'"));
        assert_ne!(key("SELECT 1"), key("SELECT 1.0"));
        assert_ne!(key("SELECT 1"), key("SELECT 1 "));
        // Text that spells a placeholder cannot collide: NUL never occurs.
        assert_ne!(key("SELECT a ? 'k'"), key("SELECT a ? ?s"));
    }
}
