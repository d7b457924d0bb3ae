//! Durations as written in config and rule files: `250ms`, `30s`, `5m`,
//! `1m30s`, `2h`, `7d`. One parser for every file; each caller applies its
//! own bounds.

use std::time::Duration;

/// Parse a duration: one or more `<number><unit>` parts, units `d`, `h`,
/// `m`, `s`, `ms`, each at most once, largest first, no spaces.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty; write e.g. \"90s\" or \"2m\"".into());
    }
    if s.contains(char::is_whitespace) {
        return Err("no spaces allowed; write e.g. \"90s\", \"5m\" or \"1m30s\"".into());
    }
    let mut total: u64 = 0; // milliseconds
    let mut last_rank = u8::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "expected a number at `{rest}`; write e.g. \"90s\" or \"2m\""
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let (unit_ms, rank, len) = if rest.starts_with("ms") {
            (1, 0, 2)
        } else {
            match rest.chars().next() {
                Some('d') => (86_400_000, 4, 1),
                Some('h') => (3_600_000, 3, 1),
                Some('m') => (60_000, 2, 1),
                Some('s') => (1_000, 1, 1),
                Some(c) => return Err(format!("unknown unit `{c}`; use d, h, m, s or ms")),
                None => return Err("missing unit; use h, m or s, e.g. \"90s\"".into()),
            }
        };
        if rank >= last_rank {
            return Err("units must appear once each, largest first (e.g. \"1m30s\")".into());
        }
        last_rank = rank;
        rest = &rest[len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit_and_compounds() {
        for (s, ms) in [
            ("250ms", 250),
            ("90s", 90_000),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1h0m5s", 3_605_000),
            ("7d", 604_800_000),
            ("1s500ms", 1_500),
            (" 30s ", 30_000),
        ] {
            assert_eq!(parse(s), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for s in [
            "",
            "90",
            "s",
            "ms",
            "2 minutes",
            "1s1m",
            "1m1m",
            "-5s",
            "1.5m",
            "5x",
            "99999999999999999999s",
        ] {
            assert!(parse(s).is_err(), "{s} should be refused");
        }
    }
}
