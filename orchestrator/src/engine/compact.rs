//! Keeping the file backend's journal small: finished runs leave the live
//! `journal.jsonl` for archive files in `journal.archive/`, or are dropped
//! once older than the retention.
//!
//! The live journal holds what `recover`, `rolling --resume` and `watch`
//! read: every run not finished (no `end`, or its process still alive
//! here), the last run of each rolling plan (and, when it did not end
//! `ok`, the runs it resumes), and the runs finished since the last
//! compaction. Compaction runs under the state directory's lock once the
//! live journal passes [`COMPACT_AT`] bytes, with appends held off by an
//! exclusive `flock` on the journal (every append takes a shared one, and
//! opens the journal again when it was replaced). It is crash-safe: the
//! archive file is written to a temporary name, synced and renamed, then
//! the new live journal the same way; a crash in between leaves runs in
//! both, and the next compaction (which reads the newest archive file's
//! run ids) and `history` (which reads each run once) take each once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::records::{EndStatus, Event, Record};
use super::shared::{shared_dir, shared_file};
use crate::error::{Error, Result};

/// The live journal's size past which the next lock compacts it.
pub const COMPACT_AT: u64 = 1 << 20;

/// The archive's folder in the state directory.
pub(crate) const ARCHIVE: &str = "journal.archive";

/// How long finished runs are kept: `[coordination]`'s `retention` and
/// `keep_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished runs whose last record is older are dropped (default 30
    /// days; zero keeps none past the live journal).
    pub retention: Duration,
    /// At most about this many finished runs are archived (the archive's
    /// files are removed whole: up to one compaction's worth more stay).
    /// Default: no limit but the retention.
    pub keep_runs: Option<usize>,
}

impl Retention {
    /// The default retention: 30 days.
    pub const DEFAULT_AGE: Duration = Duration::from_secs(30 * 86_400);

    /// `retention` and `keep_runs` as the inventory gives them (none:
    /// the defaults).
    pub fn from_keys(retention: Option<Duration>, keep_runs: Option<usize>) -> Retention {
        Retention {
            retention: retention.unwrap_or(Self::DEFAULT_AGE),
            keep_runs,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::from_keys(None, None)
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Finished runs moved to the archive.
    pub archived: usize,
    /// Finished runs dropped (past the retention or `keep_runs`).
    pub dropped: usize,
    /// Runs left in the live journal.
    pub kept: usize,
    /// Archive files removed (past the retention or `keep_runs`).
    pub removed_files: usize,
}

/// Where each line of the live journal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Keep,
    Archive,
    Drop,
}

#[derive(Default)]
struct RunFacts {
    /// The process that runs it: alive on this machine.
    alive: bool,
    started: bool,
    ended: Option<EndStatus>,
    last_ts: String,
    /// Runs whose `end … recovered` this run wrote.
    closes: Vec<String>,
    /// For a rolling run: its plan and the run it resumes.
    plan: Option<(String, Option<String>)>,
}

/// Decides each line's fate. `lines` are the live journal's (none where a
/// line cannot be read: archived, so `history` still counts it);
/// `archived` the runs already in the archive (a compaction a crash cut
/// short), whose lines are dropped.
pub(crate) fn plan(
    lines: &[Option<Record>],
    retention: &Retention,
    now: time::OffsetDateTime,
    archived: &BTreeSet<String>,
    alive: impl Fn(u32, &str) -> bool,
) -> (Vec<Fate>, Compacted) {
    let mut facts: BTreeMap<&str, RunFacts> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut plans: BTreeMap<&str, &str> = BTreeMap::new();
    for r in lines.iter().flatten() {
        let f = facts.entry(&r.run).or_insert_with(|| {
            order.push(&r.run);
            RunFacts::default()
        });
        f.last_ts.clone_from(&r.ts);
        match &r.event {
            Event::Start { pid, host, .. } => {
                f.started = true;
                f.alive = alive(*pid, host);
            }
            Event::End { status, recovered } => {
                f.ended = Some(*status);
                f.closes.extend(recovered.clone());
            }
            Event::Rolling { plan, resumes } => {
                f.plan = Some((plan.clone(), resumes.clone()));
                plans.insert(plan, &r.run);
            }
            _ => {}
        }
    }
    // Finished: ended (or closed by a finished `recover`), and its process
    // is not alive here. Records without a `start` belong to no run.
    let own = |id: &str| facts.get(id).is_some_and(|f| f.ended.is_some() && !f.alive);
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    let mut closed_by: BTreeMap<&str, &str> = BTreeMap::new();
    for (id, f) in &facts {
        for c in &f.closes {
            closed_by.insert(c.as_str(), id);
        }
    }
    for (id, f) in &facts {
        let finished =
            !f.started || own(id) || (!f.alive && closed_by.get(id).is_some_and(|x| own(x)));
        if !finished {
            keep.insert(id);
        }
    }
    // A plan's last rolling run, and the runs it resumes unless it ended
    // `ok`: `--resume` reads them.
    for last in plans.values() {
        let mut at = Some(*last);
        let ok = facts[last].ended == Some(EndStatus::Ok);
        while let Some(id) = at {
            keep.insert(id);
            at = if ok {
                None
            } else {
                facts
                    .get(id)
                    .and_then(|f| f.plan.as_ref())
                    .and_then(|(_, r)| r.as_deref())
                    .and_then(|r| facts.get_key_value(r).map(|(k, _)| *k))
            };
            if at.is_some_and(|a| keep.contains(a)) {
                break;
            }
        }
    }
    // A kept run that a `recover` closed keeps that `recover` with it.
    for (closed, by) in &closed_by {
        if keep.contains(closed) {
            keep.insert(by);
        }
    }
    let cutoff = now - retention.retention;
    let mut out = Compacted::default();
    let mut fate: BTreeMap<&str, Fate> = BTreeMap::new();
    let mut to_archive: Vec<&str> = Vec::new();
    for id in &order {
        let f = &facts[id];
        let old =
            time::OffsetDateTime::parse(&f.last_ts, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|t| t < cutoff);
        let to = if keep.contains(id) {
            out.kept += 1;
            Fate::Keep
        } else if archived.contains(*id) {
            Fate::Drop
        } else if old || retention.retention.is_zero() {
            out.dropped += 1;
            Fate::Drop
        } else {
            to_archive.push(id);
            Fate::Archive
        };
        fate.insert(id, to);
    }
    if let Some(n) = retention.keep_runs
        && to_archive.len() > n
    {
        for id in &to_archive[..to_archive.len() - n] {
            fate.insert(id, Fate::Drop);
        }
        out.dropped += to_archive.len() - n;
        to_archive.drain(..to_archive.len() - n);
    }
    out.archived = to_archive.len();
    let fates = lines
        .iter()
        .map(|l| match l {
            Some(r) => fate[r.run.as_str()],
            None => Fate::Archive,
        })
        .collect();
    (fates, out)
}

/// An archive file: `SEQ-RUNS.jsonl` (its number, the runs it holds).
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub seq: u64,
    pub runs: usize,
    pub path: PathBuf,
}

/// The archive's files, oldest first.
pub(crate) fn segments(dir: &Path) -> Vec<Segment> {
    let Ok(rd) = fs::read_dir(dir.join(ARCHIVE)) else {
        return Vec::new();
    };
    let mut out: Vec<Segment> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let (seq, runs) = name.strip_suffix(".jsonl")?.split_once('-')?;
            Some(Segment {
                seq: seq.parse().ok()?,
                runs: runs.parse().ok()?,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|s| s.seq);
    out
}

fn state_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State(format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file that is synced and
/// renamed, then syncs the folder: `path` is either as before or
/// complete.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| state_err("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| state_err("cannot write", &tmp, e))?;
    shared_file(&tmp);
    fs::rename(&tmp, path).map_err(|e| state_err("cannot rename into", path, e))?;
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| state_err("cannot sync", parent, e))?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Removes what a compaction a crash cut short left: temporary files.
fn remove_leftovers(dir: &Path) {
    let _ = fs::remove_file(tmp_path(&dir.join("journal.jsonl")));
    if let Ok(rd) = fs::read_dir(dir.join(ARCHIVE)) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The ids of the runs that start in the archive file `path`.
fn started_in(path: &Path) -> BTreeSet<String> {
    let bytes = fs::read(path).unwrap_or_default();
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
        .filter(|r| matches!(r.event, Event::Start { .. }))
        .map(|r| r.run)
        .collect()
}

/// Whether the open `file` is still the journal at `path` (a compaction
/// replaces it).
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Compacts the journal of state directory `dir` when it has passed
/// [`COMPACT_AT`] (or always, with `force`). Call it under the state
/// directory's lock.
///
/// # Errors
///
/// [`Error::State`] naming the file that could not be read or written;
/// the journal is then as it was, or complete (runs in both the archive
/// and the live journal are read once).
pub(crate) fn compact(
    dir: &Path,
    retention: &Retention,
    force: bool,
    alive: impl Fn(u32, &str) -> bool,
) -> Result<Option<Compacted>> {
    let path = dir.join("journal.jsonl");
    let Ok(mut file) = File::open(&path) else {
        return Ok(None);
    };
    if !force && file.metadata().map(|m| m.len()).unwrap_or(0) < COMPACT_AT {
        return Ok(None);
    }
    // Appends wait (a shared lock each) while the journal is read and
    // replaced.
    file.lock()
        .map_err(|e| state_err("cannot lock journal", &path, e))?;
    if !same_file(&file, &path) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| state_err("cannot read journal", &path, e))?;
    remove_leftovers(dir);
    let segs = segments(dir);
    let archived = segs.last().map(|s| started_in(&s.path)).unwrap_or_default();
    let raw: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let lines: Vec<Option<Record>> = raw
        .iter()
        .map(|l| serde_json::from_slice::<Record>(l).ok())
        .collect();
    let (fates, mut done) = plan(
        &lines,
        retention,
        time::OffsetDateTime::now_utc(),
        &archived,
        alive,
    );
    let pick = |want: Fate| {
        let mut out = Vec::new();
        for (l, f) in raw.iter().zip(&fates) {
            if *f == want {
                out.extend_from_slice(l);
                out.push(b'\n');
            }
        }
        out
    };
    let archive = pick(Fate::Archive);
    if !archive.is_empty() {
        shared_dir(&dir.join(ARCHIVE))?;
        let seq = segs.last().map_or(1, |s| s.seq + 1);
        let seg = dir
            .join(ARCHIVE)
            .join(format!("{seq:010}-{}.jsonl", done.archived));
        write_atomic(&seg, &archive)?;
    }
    if fates.iter().any(|f| *f != Fate::Keep) {
        write_atomic(&path, &pick(Fate::Keep))?;
    }
    done.removed_files = prune(dir, retention);
    drop(file);
    Ok(Some(done))
}

/// Removes the archive files past the retention (every run in a file
/// ended before it was written) or past `keep_runs` (counted from the
/// newest); returns how many.
fn prune(dir: &Path, retention: &Retention) -> usize {
    let cutoff = SystemTime::now()
        .checked_sub(retention.retention)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut runs = 0;
    let mut removed = 0;
    for s in segments(dir).iter().rev() {
        let old = fs::metadata(&s.path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        let over = retention.keep_runs.is_some_and(|n| runs >= n);
        runs += s.runs;
        if (old || over) && fs::remove_file(&s.path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Every line of the archive, oldest file first.
pub(crate) fn read_archive(dir: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for s in segments(dir) {
        match OpenOptions::new().read(true).open(&s.path) {
            Ok(mut f) => {
                f.read_to_end(&mut out)
                    .map_err(|e| state_err("cannot read archive", &s.path, e))?;
            }
            // Removed by a compaction meanwhile: past the retention.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(state_err("cannot read archive", &s.path, e)),
        }
        if !out.ends_with(b"\n") && !out.is_empty() {
            out.push(b'\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
