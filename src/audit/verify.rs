//! `verify`: check the hash chain across rotated files and report the first
//! break.
//!
//! What is detected, and how:
//! - an edited byte: the edited line's hash no longer equals `prev` of the
//!   next line (or the line stops being JSON);
//! - a removed line: `seq` jumps; an inserted or forged line: `seq` repeats or
//!   goes back, or its `prev` does not match; reordered lines: `seq` order;
//! - a file missing from the middle of a rotation: `seq` jumps between files;
//! - a cut tail: the last line is partial, or the `.head` sidecar (written
//!   after every fsync) names a later record than the trail holds, or names
//!   a record whose hash differs.
//!
//! Limits, stated plainly: a chain of plain hashes proves order and
//! integrity only relative to a trusted anchor. Someone able to rewrite the
//! files *and* the `.head` sidecar can recompute a consistent chain. Anchor
//! it elsewhere: the PostgreSQL sink (other host, other credentials), a log
//! shipper fed by the stdout sink, or the `last_hash` of this report copied
//! into the evidence pack. Without the head file, records cut from the end
//! of the last file are not detectable (reported as a warning). Files handed
//! over without the first one (retention) verify from their first record
//! (`from_genesis = false`).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{self, GENESIS, Record};
use super::event::EventKind;
use super::sink::{self, Head};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// File could not be read.
    Unreadable,
    /// A line is not a JSON audit record (edited, forged or garbage).
    NotARecord,
    /// Last line has no newline: cut mid-record.
    PartialLine,
    /// `seq` skipped ahead within a file: lines removed (or moved later).
    RecordsMissing,
    /// `seq` jumped between two files: a rotated file is missing.
    FileMissing,
    /// `seq` repeated or went back: lines inserted, duplicated or reordered.
    OutOfOrder,
    /// `prev` is not the hash of the previous line: a line was edited or forged.
    PrevMismatch,
    /// First record (`seq` 1) does not chain to genesis.
    BadGenesis,
    /// The `.head` sidecar names a record the trail no longer holds.
    TruncatedTail,
    /// The `.head` sidecar's hash differs from the record at its seq.
    HeadMismatch,
    /// A `rotated` marker that is not its file's last line.
    MisplacedRotation,
    /// No records at all.
    Empty,
}

/// The first problem found; verification stops there because everything
/// after a break cannot be trusted relative to what came before.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file: PathBuf,
    /// 1-based line number in `file` (0 when the problem is not one line).
    pub line: usize,
    pub seq: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Files in chain order.
    pub files: Vec<FileSummary>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hash of the last record checked: copy it somewhere safe as an anchor.
    pub last_hash: Option<String>,
    /// The chain starts at seq 1 with the genesis `prev`.
    pub from_genesis: bool,
    /// The head sidecar used for the tail check, if one was found.
    pub head: Option<PathBuf>,
    pub problem: Option<Problem>,
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// CLI exit code: 0 pass, 1 fail.
    pub fn exit_code(&self) -> i32 {
        if self.ok { 0 } else { 1 }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => writeln!(
                f,
                "PASS: {} records, seq {}..{}",
                self.records,
                opt(self.first_seq),
                opt(self.last_seq)
            )?,
            Some(p) => writeln!(
                f,
                "FAIL: {:?} at {}:{} (seq {}): {}",
                p.kind,
                p.file.display(),
                p.line,
                opt(p.seq),
                p.detail
            )?,
        }
        for s in &self.files {
            writeln!(
                f,
                "  {}: seq {}..{} ({} records)",
                s.path.display(),
                opt(s.first_seq),
                opt(s.last_seq),
                s.records
            )?;
        }
        if let Some(h) = &self.last_hash {
            writeln!(f, "  last hash: {h}")?;
        }
        match &self.head {
            Some(h) => writeln!(f, "  tail checked against {}", h.display())?,
            None => writeln!(f, "  tail not checked (no .head sidecar)")?,
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Verify `files` (any order; sorted by their first seq) and discover the
/// `.head` sidecar beside them.
pub fn verify(files: &[PathBuf]) -> VerifyReport {
    let head = files
        .iter()
        .map(|f| sink::head_path(&active_path_of(f)))
        .find(|h| h.exists());
    verify_with_head(files, head.as_deref())
}

/// `audit.jsonl.000000000042` -> `audit.jsonl`; other names unchanged.
fn active_path_of(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((base, suffix)) = name.rsplit_once('.') {
        if suffix.len() >= 12 && suffix.bytes().all(|b| b.is_ascii_digit()) {
            return file.with_file_name(base);
        }
    }
    file.to_path_buf()
}

/// Verify with an explicit head sidecar (or none).
pub fn verify_with_head(files: &[PathBuf], head: Option<&Path>) -> VerifyReport {
    let mut rep = VerifyReport {
        ok: false,
        files: Vec::new(),
        records: 0,
        first_seq: None,
        last_seq: None,
        last_hash: None,
        from_genesis: false,
        head: head.map(Path::to_path_buf),
        problem: None,
        warnings: Vec::new(),
    };
    if let Err(p) = check(files, head, &mut rep) {
        rep.problem = Some(p);
    }
    rep.ok = rep.problem.is_none();
    rep
}

fn problem(
    kind: ProblemKind,
    file: &Path,
    line: usize,
    seq: Option<u64>,
    detail: String,
) -> Problem {
    Problem {
        kind,
        file: file.to_path_buf(),
        line,
        seq,
        detail,
    }
}

fn check(
    files: &[PathBuf],
    head_path: Option<&Path>,
    rep: &mut VerifyReport,
) -> Result<(), Problem> {
    // Order files by first seq; empty files go last (a fresh active file).
    let mut ordered = Vec::new();
    let mut seen = HashSet::new();
    for f in files {
        let canon = f.canonicalize().unwrap_or_else(|_| f.clone());
        if !seen.insert(canon) {
            rep.warnings
                .push(format!("{} given twice; checked once", f.display()));
            continue;
        }
        let first = first_seq(f)?;
        ordered.push((first, f.clone()));
    }
    ordered.sort_by_key(|(s, _)| s.unwrap_or(u64::MAX));
    for w in ordered.windows(2) {
        if let (Some(a), Some(b)) = (w[0].0, w[1].0) {
            if a == b {
                return Err(problem(
                    ProblemKind::OutOfOrder,
                    &w[1].1,
                    1,
                    Some(b),
                    format!(
                        "starts at seq {b}, as does {}: duplicated or forged file",
                        w[0].1.display()
                    ),
                ));
            }
        }
    }
    let head: Option<Head> = match head_path {
        Some(p) => match sink::read_head(p) {
            Ok(h) => h,
            Err(e) => return Err(problem(ProblemKind::Unreadable, p, 1, None, e.to_string())),
        },
        None => None,
    };
    let mut prev: Option<(u64, String, PathBuf, usize)> = None; // seq, hash, file, line
    let mut head_hash_at_seq: Option<String> = None;
    let mut last_was_rotation: Option<(PathBuf, usize)> = None;
    for (fi, (_, path)) in ordered.iter().enumerate() {
        let mut summary = FileSummary {
            path: path.clone(),
            first_seq: None,
            last_seq: None,
            records: 0,
        };
        let mut result = Ok(());
        let mut rotation_line: Option<usize> = None;
        let walk = chain::for_each_line(path, |lineno, bytes, complete| {
            if result.is_err() {
                return Ok(());
            }
            result = (|| {
                if let Some(rl) = rotation_line {
                    return Err(problem(
                        ProblemKind::MisplacedRotation,
                        path,
                        rl,
                        prev.as_ref().map(|p| p.0),
                        format!(
                            "`rotated` marker is followed by more lines (line {lineno}); a rotated file must end there"
                        ),
                    ));
                }
                if !complete {
                    return Err(problem(
                        ProblemKind::PartialLine,
                        path,
                        lineno,
                        prev.as_ref().map(|p| p.0 + 1),
                        format!(
                            "last line is partial ({} bytes, no newline): file cut mid-record",
                            bytes.len()
                        ),
                    ));
                }
                let rec: Record = serde_json::from_slice(bytes).map_err(|e| {
                    problem(
                        ProblemKind::NotARecord,
                        path,
                        lineno,
                        prev.as_ref().map(|p| p.0 + 1),
                        format!("not an audit record ({e}): edited or garbage line"),
                    )
                })?;
                let hash = chain::hash_line(bytes);
                match &prev {
                    None => {
                        if rec.seq == 1 {
                            if rec.prev != GENESIS {
                                return Err(problem(
                                    ProblemKind::BadGenesis,
                                    path,
                                    lineno,
                                    Some(1),
                                    "seq 1 does not chain to the genesis hash".into(),
                                ));
                            }
                            rep.from_genesis = true;
                        } else {
                            rep.warnings.push(format!(
                                "chain starts at seq {} in {}: earlier files were not supplied (or were removed); verified from there",
                                rec.seq,
                                path.display()
                            ));
                        }
                    }
                    Some((pseq, phash, pfile, pline)) => {
                        let expected = pseq + 1;
                        if rec.seq > expected {
                            let kind = if lineno == 1 && fi > 0 {
                                ProblemKind::FileMissing
                            } else {
                                ProblemKind::RecordsMissing
                            };
                            let detail = if kind == ProblemKind::FileMissing {
                                format!(
                                    "seq jumps from {pseq} (end of {}) to {}: a rotated file holding seq {expected}..{} is missing",
                                    pfile.display(),
                                    rec.seq,
                                    rec.seq - 1
                                )
                            } else {
                                format!(
                                    "seq jumps from {pseq} (line {pline}) to {}: {} record(s) removed here, or moved elsewhere",
                                    rec.seq,
                                    rec.seq - expected
                                )
                            };
                            return Err(problem(kind, path, lineno, Some(rec.seq), detail));
                        }
                        if rec.seq < expected {
                            return Err(problem(
                                ProblemKind::OutOfOrder,
                                path,
                                lineno,
                                Some(rec.seq),
                                format!(
                                    "seq {} follows seq {pseq}: record inserted, duplicated or reordered",
                                    rec.seq
                                ),
                            ));
                        }
                        if &rec.prev != phash {
                            return Err(problem(
                                ProblemKind::PrevMismatch,
                                path,
                                lineno,
                                Some(rec.seq),
                                format!(
                                    "prev does not match the hash of seq {pseq} ({}:{pline}): that record was edited, or this one forged",
                                    pfile.display()
                                ),
                            ));
                        }
                    }
                }
                if let Some(h) = &head {
                    if h.seq == rec.seq {
                        head_hash_at_seq = Some(hash.clone());
                    }
                }
                if matches!(rec.event.kind, EventKind::Rotated(_)) {
                    rotation_line = Some(lineno);
                }
                summary.first_seq.get_or_insert(rec.seq);
                summary.last_seq = Some(rec.seq);
                summary.records += 1;
                rep.records += 1;
                prev = Some((rec.seq, hash, path.clone(), lineno));
                Ok(())
            })();
            Ok(())
        });
        if let Err(e) = walk {
            return Err(problem(
                ProblemKind::Unreadable,
                path,
                0,
                None,
                e.to_string(),
            ));
        }
        rep.files.push(summary);
        result?;
        last_was_rotation = rotation_line.map(|l| (path.clone(), l));
    }
    let Some((last_seq, last_hash, last_file, last_line)) = prev else {
        let f = ordered.first().map(|(_, p)| p.clone()).unwrap_or_default();
        return Err(problem(
            ProblemKind::Empty,
            &f,
            0,
            None,
            "no audit records in the given files".into(),
        ));
    };
    rep.first_seq = rep.files.iter().find_map(|s| s.first_seq);
    rep.last_seq = Some(last_seq);
    rep.last_hash = Some(last_hash.clone());
    if let Some((file, line)) = &last_was_rotation {
        rep.warnings.push(format!(
            "{}:{line} is a `rotated` marker: the chain continues in a later file that was not supplied",
            file.display()
        ));
    }
    match (&head, head_path) {
        (Some(h), Some(hp)) => {
            if h.seq > last_seq {
                return Err(problem(
                    ProblemKind::TruncatedTail,
                    &last_file,
                    last_line,
                    Some(last_seq),
                    format!(
                        "{} says seq {} was on disk, but the trail ends at seq {last_seq}: {} record(s) cut from the tail (or a later file is missing)",
                        hp.display(),
                        h.seq,
                        h.seq - last_seq
                    ),
                ));
            }
            match &head_hash_at_seq {
                Some(hh) if *hh == h.hash => {}
                Some(hh) => {
                    return Err(problem(
                        ProblemKind::HeadMismatch,
                        &last_file,
                        0,
                        Some(h.seq),
                        format!(
                            "{} records hash {} for seq {}, the trail has {hh}",
                            hp.display(),
                            h.hash,
                            h.seq
                        ),
                    ));
                }
                None => rep.warnings.push(format!(
                    "{} names seq {}, which is before the supplied files",
                    hp.display(),
                    h.seq
                )),
            }
            if h.seq < last_seq {
                rep.warnings.push(format!(
                    "{} records after the head's seq {} (written after its last update, e.g. before a crash)",
                    last_seq - h.seq,
                    h.seq
                ));
            }
        }
        _ => rep.warnings.push(
            "no .head sidecar found: records cut from the end of the last file cannot be detected"
                .into(),
        ),
    }
    Ok(())
}

fn first_seq(path: &Path) -> Result<Option<u64>, Problem> {
    #[derive(serde::Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| {
        problem(
            ProblemKind::Unreadable,
            path,
            0,
            None,
            format!("cannot open: {e}"),
        )
    })?;
    let mut line = Vec::new();
    std::io::BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            problem(
                ProblemKind::Unreadable,
                path,
                1,
                None,
                format!("cannot read: {e}"),
            )
        })?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    serde_json::from_slice::<SeqOnly>(&line)
        .map(|s| Some(s.seq))
        .map_err(|e| {
            problem(
                ProblemKind::NotARecord,
                path,
                1,
                None,
                format!("first line is not an audit record: {e}"),
            )
        })
}

/// The files of one trail: the active file `active` plus its rotated files
/// (`<active>.<12+ digits>`) in the same directory, in name order (which is
/// seq order). For CLI commands that take the configured `audit.file`.
///
/// # Errors
/// The directory cannot be read.
pub fn trail_files(active: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = match active.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = active
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| {
                    n.strip_prefix(&prefix)
                        .map(|s| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()))
                })
                .unwrap_or(false)
        })
        .collect();
    out.sort();
    if active.exists() {
        out.push(active.to_path_buf());
    }
    Ok(out)
}
