//! Where encoded lines go: the chained JSON Lines file, stdout, PostgreSQL.
//!
//! Every sink receives the same lines (same bytes, same hashes) in `seq`
//! order and remembers the last `seq` it has stored (`acked`), so after a
//! failure each sink resumes exactly where it stopped. Sinks run on the
//! audit writer thread only; nothing here is shared.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{self, GENESIS, Hash};
use super::{AuditMetrics, Error};

/// A line ready for the sinks. Its bytes are in [`Pending`].
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub seq: u64,
    pub hash: Hash,
    pub prev: Hash,
    /// Formatted only by the sink that needs it (PostgreSQL's `ts` column).
    pub ts: super::event::Timestamp,
    pub kind: &'static str,
    /// Where the line's bytes start in the pending text (an offset that
    /// counts every byte ever appended, so it survives draining the front).
    start: usize,
    len: usize,
    /// This is a `rotated` record: the file sink renames its file to this
    /// name after storing it.
    pub rotate_to: Option<String>,
}

/// Lines that have a seq but are not yet stored by every sink, their text
/// in one buffer, each followed by its newline.
///
/// One buffer instead of a `String` per line: the writer allocates nothing
/// per record once the buffer has grown to a batch, and the file sink
/// writes a batch straight from it.
#[derive(Default)]
pub(crate) struct Pending {
    lines: std::collections::VecDeque<Line>,
    text: Vec<u8>,
    /// Offset (in appended bytes) of `text[0]`.
    base: usize,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Bytes held, newlines included.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Lines after `seq`, in order.
    pub fn after(&self, seq: u64) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.seq > seq).collect()
    }

    /// A line's bytes, without its newline.
    pub fn text(&self, l: &Line) -> &[u8] {
        &self.text[l.start - self.base..][..l.len]
    }

    /// The bytes of `first` through `last` (consecutive lines), newlines
    /// included.
    pub fn run(&self, first: &Line, last: &Line) -> &[u8] {
        &self.text[first.start - self.base..last.start - self.base + last.len + 1]
    }

    /// Where the next line will start; build it by appending to
    /// [`Pending::buf`], then [`Pending::commit`] or [`Pending::abandon`].
    pub fn mark(&self) -> usize {
        self.text.len()
    }

    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Forget what was appended since `mark`.
    pub fn abandon(&mut self, mark: usize) {
        self.text.truncate(mark);
    }

    /// The bytes appended since `mark`, without a newline yet.
    pub fn since(&self, mark: usize) -> &[u8] {
        &self.text[mark..]
    }

    /// Seal what was appended since `mark` as the line `seq` and return
    /// its hash.
    pub fn commit(
        &mut self,
        mark: usize,
        seq: u64,
        prev: Hash,
        ts: super::event::Timestamp,
        kind: &'static str,
        rotate_to: Option<String>,
    ) -> Hash {
        let hash = Hash::of(&self.text[mark..]);
        let len = self.text.len() - mark;
        self.text.push(b'\n');
        self.lines.push_back(Line {
            seq,
            hash,
            prev,
            ts,
            kind,
            start: self.base + mark,
            len,
            rotate_to,
        });
        hash
    }

    /// Drop lines up to and including `seq`; returns how many.
    pub fn release(&mut self, seq: u64) -> u64 {
        let mut n = 0;
        while self.lines.front().is_some_and(|l| l.seq <= seq) {
            self.lines.pop_front();
            n += 1;
        }
        match self.lines.front() {
            None => {
                self.base += self.text.len();
                self.text.clear();
            }
            Some(l) => {
                let cut = l.start - self.base;
                self.text.drain(..cut);
                self.base = l.start;
            }
        }
        // A burst (a long sink outage) must not pin its peak for good.
        if self.text.is_empty() && self.text.capacity() > 16 * 1024 * 1024 {
            self.text = Vec::new();
        }
        n
    }
}

/// The `.head` sidecar: the last record known to be on disk.
///
/// Rewritten (write temp, fsync, rename) after every fsync of the log, so it
/// never claims more than the log holds. `verify` uses it to detect a cut
/// tail. Limit: it is not signed; someone who can rewrite the log can rewrite
/// the head too. Its value is against accidental truncation, careless
/// editing, and as the hash to copy elsewhere (ticket, second system) as an
/// external anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    /// Name of the active file when written.
    pub file: String,
    pub ts: String,
}

/// Path of the head sidecar for an active file `audit.jsonl`: `audit.jsonl.head`.
pub fn head_path(active: &Path) -> PathBuf {
    let mut s = active.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

/// Name a rotated file gets: `<active name>.<first seq, 12 digits>`.
pub(crate) fn archive_name(active: &Path, first_seq: u64) -> String {
    let name = active
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}.{first_seq:012}")
}

/// Where the chain stands in the active file when the auditor starts.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub last_seq: u64,
    pub last_hash: String,
    /// First seq in the active file, and its timestamp (for time rotation).
    pub file_first: Option<(u64, String)>,
    pub file_len: u64,
    /// Description of a repair made at open, for the `audit_started` event.
    pub recovered: Option<String>,
}

pub(crate) struct FileSink {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Length of the file up to the last successful fsync. After a failed
    /// write or fsync the file is cut back to this and the lines rewritten:
    /// after an fsync error the kernel may have dropped the dirty pages, so
    /// a retried fsync proves nothing about the earlier writes.
    good_len: u64,
    pub acked: u64,
    /// Records were fsynced after the head sidecar was last written.
    head_stale: bool,
    /// A rotation whose `rotated` record is stored but whose rename failed.
    pending_rename: Option<String>,
    last_hash: String,
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

impl FileSink {
    /// Open (or create) the active file and find where the chain stands.
    ///
    /// A last line without `\n` can only be a write that never completed its
    /// fsync (lines are written whole, then fsynced), so no caller was told it
    /// was stored: it is cut off and the cut is reported in `Resume`. If the
    /// head sidecar claims a later record than the file holds, records were
    /// removed: refuse to start rather than chain onto a damaged trail.
    pub fn open(path: &Path) -> Result<(FileSink, Resume), Error> {
        let dir = dir_of(path);
        if !dir.is_dir() {
            return Err(Error::io(
                &dir,
                "open directory",
                std::io::Error::new(std::io::ErrorKind::NotFound, "directory does not exist"),
            ));
        }
        let head = read_head(&head_path(path))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| Error::io(path, "open for append", e))?;
        sync_dir(&dir)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        let (mut resume, cut) = scan_tail(&mut file, path, len)?;
        if let Some(cut_at) = cut {
            file.set_len(cut_at)
                .map_err(|e| Error::io(path, "truncate partial last line", e))?;
            file.sync_all().map_err(|e| Error::io(path, "fsync", e))?;
            resume.file_len = cut_at;
        }
        if resume.file_first.is_none() {
            // Empty active file (fresh, or just rotated): continue from the head.
            if let Some(h) = &head {
                resume.last_seq = h.seq;
                resume.last_hash = h.hash.clone();
            } else if let Some(archive) = find_archive(&dir, path) {
                // Rotated files but no head: starting at genesis would fork
                // the chain (two records with seq 1). Make a human decide.
                return Err(Error::Corrupt {
                    path: head_path(path),
                    line: 0,
                    reason: format!(
                        "missing, but rotated file {} exists: cannot tell where the chain stands; restore the .head file or move the old files aside",
                        archive.display()
                    ),
                });
            }
        } else if let Some(h) = &head {
            if h.seq > resume.last_seq {
                return Err(Error::TailBehindHead {
                    path: path.to_path_buf(),
                    found: resume.last_seq,
                    expected: h.seq,
                });
            }
        }
        let sink = FileSink {
            path: path.to_path_buf(),
            dir,
            file,
            good_len: resume.file_len,
            acked: resume.last_seq,
            head_stale: false,
            pending_rename: None,
            last_hash: resume.last_hash.clone(),
        };
        Ok((sink, resume))
    }

    /// Store `lines` (all with seq > acked, in order) and fsync; the head
    /// is then stale until [`FileSink::write_head_if_stale`].
    pub fn write(
        &mut self,
        pending: &Pending,
        lines: &[&Line],
        metrics: &AuditMetrics,
    ) -> Result<(), Error> {
        #[cfg(test)]
        if metrics
            .fail_writes
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::io(
                &self.path,
                "write",
                std::io::Error::other("injected failure"),
            ));
        }
        if let Some(name) = self.pending_rename.clone() {
            self.rotate(&name)?;
        }
        let mut i = 0;
        while i < lines.len() {
            // A chunk ends at a `rotated` record (inclusive) or at the end.
            let end = lines[i..]
                .iter()
                .position(|l| l.rotate_to.is_some())
                .map_or(lines.len(), |p| i + p + 1);
            let chunk = &lines[i..end];
            let last = chunk.last().expect("chunk is non-empty");
            // Lines after `acked` are consecutive in the pending text.
            let buf = pending.run(chunk[0], last);
            let res = self
                .file
                .write_all(buf)
                .map_err(|e| Error::io(&self.path, "write", e))
                .and_then(|_| {
                    self.file
                        .sync_data()
                        .map_err(|e| Error::io(&self.path, "fsync", e))
                });
            if let Err(e) = res {
                // Cut back to what is known durable; the same lines are
                // written again on retry, so the chain stays gap-free.
                let _ = self.file.set_len(self.good_len);
                return Err(e);
            }
            metrics.inc_fsync();
            self.good_len += buf.len() as u64;
            self.acked = last.seq;
            self.last_hash = last.hash.as_str().to_owned();
            if let Some(name) = &last.rotate_to {
                self.pending_rename = Some(name.clone());
                self.rotate(name)?;
            }
            i = end;
        }
        self.head_stale = true;
        Ok(())
    }

    /// Rewrite the `.head` sidecar if records were stored since it was
    /// last written.
    pub fn write_head_if_stale(&mut self) -> Result<(), Error> {
        if self.head_stale {
            self.write_head()?;
            self.head_stale = false;
        }
        Ok(())
    }

    fn rotate(&mut self, archive: &str) -> Result<(), Error> {
        let target = self.dir.join(archive);
        if target.exists() {
            return Err(Error::io(
                &target,
                "rotate",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "archive file already exists; refusing to overwrite",
                ),
            ));
        }
        std::fs::rename(&self.path, &target)
            .map_err(|e| Error::io(&self.path, "rename for rotation", e))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, "create after rotation", e))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.good_len = 0;
        self.pending_rename = None;
        tracing::info!(archived = %target.display(), "audit file rotated");
        Ok(())
    }

    fn write_head(&self) -> Result<(), Error> {
        let head = Head {
            seq: self.acked,
            hash: self.last_hash.clone(),
            file: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ts: super::event::Timestamp::now().to_string(),
        };
        let hp = head_path(&self.path);
        let mut tmp = hp.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let body = serde_json::to_vec(&head).expect("head serialises");
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_data()?;
            std::fs::rename(&tmp, &hp)
        })();
        res.map_err(|e| Error::io(&hp, "write head", e))
    }
}

/// Any rotated file of `active` in `dir`.
fn find_archive(dir: &Path, active: &Path) -> Option<PathBuf> {
    let name = active.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| {
                    n.strip_prefix(&format!("{name}."))
                        .map(|s| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()))
                })
                .unwrap_or(false)
        })
}

pub(crate) fn read_head(path: &Path) -> Result<Option<Head>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                line: 1,
                reason: format!("head sidecar unreadable: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read head", e)),
    }
}

/// Read the first and last complete lines. Returns the resume point and, if
/// the file ends in a partial line, the offset to cut it at.
fn scan_tail(file: &mut File, path: &Path, len: u64) -> Result<(Resume, Option<u64>), Error> {
    let mut resume = Resume {
        last_seq: 0,
        last_hash: GENESIS.to_string(),
        file_first: None,
        file_len: len,
        recovered: None,
    };
    if len == 0 {
        return Ok((resume, None));
    }
    // Grow a window from the end until it holds the last complete line.
    let mut window = 64 * 1024u64;
    let tail = loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0u8; (len - start) as usize];
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, "seek", e))?;
        file.read_exact(&mut buf)
            .map_err(|e| Error::io(path, "read", e))?;
        let body_end = buf.iter().rposition(|&b| b == b'\n');
        let found = match body_end {
            Some(e) => start == 0 || buf[..e].contains(&b'\n'),
            None => start == 0,
        };
        if found {
            break (start, buf);
        }
        window *= 4;
    };
    let (start, buf) = tail;
    let mut cut = None;
    let complete_end = match buf.iter().rposition(|&b| b == b'\n') {
        Some(e) => e,
        None => {
            // No complete line at all: the whole file is one partial write.
            cut = Some(0);
            resume.recovered = Some(partial_note(path, &buf));
            resume.file_len = 0;
            return Ok((resume, cut));
        }
    };
    if complete_end + 1 < buf.len() {
        let partial = &buf[complete_end + 1..];
        cut = Some(start + complete_end as u64 + 1);
        resume.recovered = Some(partial_note(path, partial));
        tracing::warn!(path = %path.display(), bytes = partial.len(), "audit file ended in a partial line; cut it off");
    }
    let line_start = buf[..complete_end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let last_line = &buf[line_start..complete_end];
    let last_lineno_hint = "last complete line";
    let rec: chain::Record = serde_json::from_slice(last_line).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        line: 0,
        reason: format!("{last_lineno_hint} is not an audit record: {e}"),
    })?;
    resume.last_seq = rec.seq;
    resume.last_hash = chain::hash_line(last_line);
    // First line, for the file's first seq and age.
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, "seek", e))?;
    let mut first = Vec::new();
    let mut reader = std::io::BufReader::new(&mut *file);
    std::io::BufRead::read_until(&mut reader, b'\n', &mut first)
        .map_err(|e| Error::io(path, "read", e))?;
    if first.last() == Some(&b'\n') {
        first.pop();
    }
    let frec: chain::Record = serde_json::from_slice(&first).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        line: 1,
        reason: format!("not an audit record: {e}"),
    })?;
    resume.file_first = Some((frec.seq, frec.event.ts.to_string()));
    Ok((resume, cut))
}

fn partial_note(path: &Path, partial: &[u8]) -> String {
    format!(
        "cut a partial last line of {} bytes (sha256 {}) from {}",
        partial.len(),
        hex::encode(Sha256::digest(partial)),
        path.display()
    )
}

/// Lines to stdout, for log shippers. Not durable: acked once written and
/// flushed to the pipe.
pub(crate) struct StdoutSink {
    pub acked: u64,
}

impl StdoutSink {
    pub fn write(&mut self, pending: &Pending, lines: &[&Line]) -> Result<(), Error> {
        let out = std::io::stdout();
        let mut lock = out.lock();
        let res = (|| {
            if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
                lock.write_all(pending.run(first, last))?;
            }
            lock.flush()
        })();
        res.map_err(|e| Error::SinkFailing {
            sink: "stdout",
            reason: e.to_string(),
        })?;
        if let Some(l) = lines.last() {
            self.acked = l.seq;
        }
        Ok(())
    }
}

/// Batched inserts into a table holding the same lines and hashes.
///
/// Table (created if missing, one per proxy instance):
/// `seq bigint primary key, ts timestamptz, type text, prev text, hash text,
/// line text, event jsonb` plus a trigger that rejects UPDATE, DELETE and
/// TRUNCATE. A superuser can still drop the trigger; the hashes let anyone
/// re-check the rows against the chain.
pub(crate) struct PgSink {
    url: String,
    table: String,
    client: Option<tokio_postgres::Client>,
    pub acked: u64,
}

impl PgSink {
    pub fn new(url: String, table: String, acked: u64) -> PgSink {
        PgSink {
            url,
            table,
            client: None,
            acked,
        }
    }

    /// Connect and prepare the table; returns the table's last `(seq, hash)`.
    /// Called at start (so a wrong URL fails startup) and after any error.
    pub async fn connect(&mut self) -> Result<Option<(u64, String)>, Error> {
        self.client = None;
        let (client, conn) = crate::timers::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| pg_err("connect timed out after 10s"))?
        .map_err(|e| pg_err(format!("connect: {}", pg_cause(&e))))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(cause = %e, "audit postgres connection ended");
            }
        });
        let t = &self.table;
        let trig_fn = format!("{}_append_only", t.replace('.', "_"));
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                seq bigint PRIMARY KEY, ts timestamptz NOT NULL, type text NOT NULL,
                prev text NOT NULL, hash text NOT NULL, line text NOT NULL, event jsonb NOT NULL);
             CREATE OR REPLACE FUNCTION {trig_fn}() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN RAISE EXCEPTION 'audit table {t} is append-only'; END $f$;
             DO $d$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{trig_fn}_row' AND tgrelid = '{t}'::regclass) THEN
                 CREATE TRIGGER {trig_fn}_row BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION {trig_fn}();
                 CREATE TRIGGER {trig_fn}_trunc BEFORE TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {trig_fn}();
               END IF;
             END $d$;"
        );
        client
            .batch_execute(&ddl)
            .await
            .map_err(|e| pg_err(format!("create table {t}: {}", pg_cause(&e))))?;
        let row = client
            .query_opt(
                &format!("SELECT seq, hash FROM {t} ORDER BY seq DESC LIMIT 1"),
                &[],
            )
            .await
            .map_err(|e| pg_err(format!("read last row of {t}: {}", pg_cause(&e))))?;
        self.client = Some(client);
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
    }

    /// Start-time check: the table must not be ahead of the file's chain,
    /// and where they meet they must agree.
    pub async fn check_start(&mut self, last_seq: u64, last_hash: &str) -> Result<(), Error> {
        match self.connect().await? {
            Some((seq, hash)) if seq > last_seq || (seq == last_seq && hash != last_hash) => {
                Err(pg_err(format!(
                    "table {} holds seq {seq} (hash {hash}) but this chain is at seq {last_seq} (hash {last_hash}): it belongs to another chain",
                    self.table
                )))
            }
            Some((seq, _)) if seq < last_seq => {
                tracing::warn!(table = %self.table, table_seq = seq, chain_seq = last_seq, "audit table is behind the file chain; earlier records are only in the file");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub async fn write(&mut self, pending: &Pending, lines: &[&Line]) -> Result<(), Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            // Our previous insert may have committed although we saw an
            // error; the table's last row then is one of the pending lines.
            if let Some((seq, hash)) = self.connect().await? {
                if seq > self.acked {
                    match lines.iter().find(|l| l.seq == seq) {
                        Some(l) if l.hash == *hash.as_str() => self.acked = seq,
                        _ => {
                            self.client = None;
                            return Err(pg_err(format!(
                                "table {} holds seq {seq} (hash {hash}) that this chain did not write",
                                self.table
                            )));
                        }
                    }
                }
            }
        }
        let lines: Vec<&&Line> = lines.iter().filter(|l| l.seq > self.acked).collect();
        if lines.is_empty() {
            return Ok(());
        }
        let client = self.client.as_ref().expect("connected above");
        let seqs: Vec<i64> = lines.iter().map(|l| l.seq as i64).collect();
        let ts: Vec<String> = lines.iter().map(|l| l.ts.to_string()).collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l.kind).collect();
        let prevs: Vec<&str> = lines.iter().map(|l| l.prev.as_str()).collect();
        let hashes: Vec<&str> = lines.iter().map(|l| l.hash.as_str()).collect();
        let texts = lines
            .iter()
            .map(|l| std::str::from_utf8(pending.text(l)))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|e| Error::Encode(format!("audit line is not UTF-8: {e}")))?;
        let sql = format!(
            "INSERT INTO {} (seq, ts, type, prev, hash, line, event)
             SELECT s, t::timestamptz, k, p, h, l, l::jsonb
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(s, t, k, p, h, l)",
            self.table
        );
        match client
            .execute(&sql, &[&seqs, &ts, &kinds, &prevs, &hashes, &texts])
            .await
        {
            Ok(_) => {
                self.acked = lines.last().expect("non-empty").seq;
                Ok(())
            }
            Err(e) => {
                // Drop the connection: the next attempt reconnects and resyncs.
                self.client = None;
                Err(pg_err(format!(
                    "insert into {}: {}",
                    self.table,
                    pg_cause(&e)
                )))
            }
        }
    }
}

/// The server's message and SQLSTATE, or the underlying cause: tokio-postgres's
/// own Display says only "db error".
fn pg_cause(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    }
}

fn pg_err(reason: impl Into<String>) -> Error {
    Error::SinkFailing {
        sink: "postgres",
        reason: reason.into(),
    }
}
