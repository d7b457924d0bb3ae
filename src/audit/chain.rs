//! The hash chain: how a record line is built, hashed and read back.
//!
//! A line is `{"seq":N,"prev":"<64 hex>",` followed by the event's own JSON
//! fields, with no trailing whitespace; lines end in `\n`. `prev` is the hex
//! sha256 of the previous line's bytes (without its `\n`); the first record
//! ever has `prev` = 64 zeros and `seq` = 1. Hashing raw bytes (not a
//! re-serialisation) makes verification independent of JSON formatting:
//! any changed byte in line N breaks `prev` of line N+1.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::Event;

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One parsed line of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    #[serde(flatten)]
    pub event: Event,
}

/// Hex sha256 of a line's bytes (without the newline).
pub fn hash_line(line: &[u8]) -> String {
    Hash::of(line).as_str().to_owned()
}

/// A line's hash as the writer keeps it: the 64 lowercase hex digits,
/// inline. The writer hashes every record and writes the previous hash into
/// the next; a `String` for each would be two allocations per record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hash([u8; 64]);

impl Hash {
    pub fn of(line: &[u8]) -> Hash {
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 digits.
        let _ = hex::encode_to_slice(Sha256::digest(line), &mut hex);
        Hash(hex)
    }

    /// `None` unless `s` is 64 lowercase hex digits (what `of` produces).
    pub fn parse(s: &str) -> Option<Hash> {
        let b: [u8; 64] = s.as_bytes().try_into().ok()?;
        b.iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(Hash(b))
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or(GENESIS)
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Hash {
    fn eq(&self, other: &str) -> bool {
        self.0.as_slice() == other.as_bytes()
    }
}

/// Decimal digits of `v`, as `{}` formats it. Records carry several small
/// numbers (counts, rows, durations): a single digit is one push, others
/// go through `itoa`'s two-digit table.
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

/// Write `{"seq":N,"prev":"<hash>",` into `out`.
pub(crate) fn write_prefix(out: &mut Vec<u8>, seq: u64, prev: &Hash) {
    out.extend_from_slice(b"{\"seq\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.extend_from_slice(b"\",");
}

/// Build the line for `ev` at position `seq` after a record hashing to `prev`.
pub fn encode(ev: &Event, seq: u64, prev: &str) -> Result<String, serde_json::Error> {
    use std::io::Write as _;
    let mut line = Vec::with_capacity(768);
    let _ = write!(line, "{{\"seq\":{seq},\"prev\":\"{prev}\",");
    body(&mut line, ev)?;
    String::from_utf8(line).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Append the event's fields without their opening brace: what follows
/// the chain prefix.
pub(crate) fn body(out: &mut Vec<u8>, ev: &Event) -> Result<(), serde_json::Error> {
    if !super::encode::statement_fields(out, ev) {
        let at = out.len();
        serde_json::to_writer(&mut *out, ev)?;
        // `Event` always serialises as a non-empty object (`ts`, `type`):
        // drop its opening brace, ours is already open.
        debug_assert!(out[at..].starts_with(b"{\""));
        out.remove(at);
    }
    Ok(())
}

/// Read every record of `files` (in the order given), failing on the first
/// line that is not a record. For search and reports; `verify` does the
/// integrity checking.
pub fn read_records(files: &[PathBuf]) -> Result<Vec<Record>, super::Error> {
    let mut out = Vec::new();
    for path in files {
        for_each_line(path, |lineno, line, _complete| {
            let rec: Record = serde_json::from_slice(line).map_err(|e| super::Error::Corrupt {
                path: path.clone(),
                line: lineno,
                reason: e.to_string(),
            })?;
            out.push(rec);
            Ok(())
        })?;
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// Call `f(line_number_from_1, bytes_without_newline, ended_with_newline)`
/// for each line of `path`.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &[u8], bool) -> Result<(), super::Error>,
) -> Result<(), super::Error> {
    let file = File::open(path).map_err(|e| super::Error::io(path, "open", e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| super::Error::io(path, "read", e))?;
        if n == 0 {
            return Ok(());
        }
        lineno += 1;
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        f(lineno, &buf, complete)?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_written_as_display_writes_them() {
        let mut v: u64 = 1;
        let mut values = vec![0, 9, 10, 99, 100, u64::MAX];
        while let Some(next) = v.checked_mul(7) {
            values.extend([next - 1, next]);
            v = next;
        }
        for n in values {
            let mut out = b"x".to_vec();
            super::write_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
