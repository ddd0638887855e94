//! The file backend (the default): in the state directory,
//! `journal.jsonl` (one JSON record a line, fsync'd before the change it
//! announces: the live journal), `journal.archive/` (finished runs,
//! [`super::compact`]), `lock` (the critical section, `flock`) and
//! `claims/` (one locked file per claimed node).

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::backend::{ClaimSet, Claimed, Coordination, Holder, LockGuard, Read};
use super::claims::Claims;
use super::compact::{self, Compacted, Retention};
use super::records::Record;
use super::shared::{shared_dir, shared_file};
use crate::error::{Error, Result};

/// Ends a torn last line (a crash or a full disk mid-write) with a newline,
/// so that the next record starts a line of its own and stays readable.
fn repair(path: &Path, mut file: &File) -> Result<()> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    let torn = File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .map(|()| last[0] != b'\n')
        .unwrap_or(false);
    if torn {
        tracing::warn!(
            "journal {}: ends in a torn line; starting a new one",
            path.display()
        );
        file.write_all(b"\n")
            .map_err(|e| Error::State(format!("cannot repair journal {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Journal, lock and claims in a state directory.
#[derive(Debug)]
pub struct FileBackend {
    dir: PathBuf,
    /// The journal, open to append; or, where the state directory cannot
    /// be written (a read-only file system, no permission), why not.
    file: std::result::Result<Mutex<File>, String>,
    claims: Claims,
    retention: Retention,
}

impl FileBackend {
    /// Opens (creating) the state directory `dir` and its journal. Where
    /// it cannot be written (a read-only file system, no permission, a
    /// path that cannot be created) it is opened read-only: the journal is
    /// read (none reads as empty), and every write fails saying why, so
    /// `status`, `--dry-run` and `history` need no writable state.
    ///
    /// # Errors
    ///
    /// None today; kept for backends that may fail to open.
    pub fn open(dir: &Path) -> Result<FileBackend> {
        match Self::open_writable(dir) {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::debug!("state directory {} opened read-only: {e}", dir.display());
                Ok(FileBackend {
                    dir: dir.to_owned(),
                    file: Err(e.to_string()),
                    claims: Claims::new(dir),
                    retention: Retention::default(),
                })
            }
        }
    }

    fn open_writable(dir: &Path) -> Result<FileBackend> {
        shared_dir(dir)?;
        let file = open_journal(&dir.join("journal.jsonl"))?;
        Ok(FileBackend {
            dir: dir.to_owned(),
            file: Ok(Mutex::new(file)),
            claims: Claims::new(dir),
            retention: Retention::default(),
        })
    }

    /// With `retention` for finished runs instead of the default (30
    /// days).
    pub fn with_retention(mut self, retention: Retention) -> FileBackend {
        self.retention = retention;
        self
    }

    /// The journal, to append to.
    ///
    /// # Errors
    ///
    /// [`Error::State`] where the state directory cannot be written.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, File>> {
        match &self.file {
            Ok(f) => Ok(f.lock().unwrap_or_else(|p| p.into_inner())),
            Err(why) => Err(Error::State(format!(
                "{why}; lbctl can only read the state directory {} (status, --dry-run and \
                 history work; a change needs it writable)",
                self.dir.display()
            ))),
        }
    }

    /// The journal file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// Every record, in order, and how many lines could not be read: a
    /// torn line (a crash or a full disk mid-write), bytes that are not
    /// UTF-8, or JSON that is not a record. Each is skipped, alone: the
    /// lines after it are read.
    ///
    /// # Errors
    ///
    /// [`Error::State`].
    fn read_now(&self) -> Result<Read> {
        let bytes = match fs::read(self.path()) {
            Err(e) if self.file.is_err() && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            r => r,
        };
        let bytes = bytes.map_err(|e| {
            Error::State(format!(
                "cannot read journal {}: {e}",
                self.path().display()
            ))
        })?;
        Ok(parse(&bytes, "journal", &self.path()))
    }
}

/// Opens (creating) the journal at `path` to append, its torn last line
/// ended.
fn open_journal(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::State(format!("cannot open journal {}: {e}", path.display())))?;
    shared_file(path);
    repair(path, &file)?;
    Ok(file)
}

/// The records of `bytes`, one a line; each unreadable line is skipped
/// and counted (`what` and `path` name it in the warning).
fn parse(bytes: &[u8], what: &str, path: &Path) -> Read {
    let mut out = Read::default();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if !line.is_empty() {
            out.add(line, || format!("{what} {} line {}", path.display(), i + 1));
        }
    }
    out
}

/// The archive's records and the live journal's, in the order they were
/// written (a run kept live while later ones were archived falls in its
/// place), each run once (a compaction a crash cut short leaves some in
/// both).
fn merge(archive: Read, live: Read) -> Read {
    use std::collections::BTreeSet;
    if archive.records.is_empty() {
        return Read {
            records: live.records,
            skipped: archive.skipped + live.skipped,
        };
    }
    let archived: BTreeSet<&str> = archive
        .records
        .iter()
        .filter(|r| matches!(r.event, super::records::Event::Start { .. }))
        .map(|r| r.run.as_str())
        .collect();
    let live_records: Vec<Record> = live
        .records
        .into_iter()
        .filter(|r| !archived.contains(r.run.as_str()))
        .collect();
    let mut records = archive.records;
    records.extend(live_records);
    // Stable, by time; a record whose time cannot be read keeps the one
    // before it.
    let mut at = None;
    let mut keyed: Vec<_> = records
        .into_iter()
        .map(|r| {
            let t =
                time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .or(at);
            at = t;
            (t, r)
        })
        .collect();
    keyed.sort_by_key(|(t, _)| *t);
    Read {
        records: keyed.into_iter().map(|(_, r)| r).collect(),
        skipped: archive.skipped + live.skipped,
    }
}

#[async_trait]
impl Coordination for FileBackend {
    fn describe(&self) -> String {
        format!("state directory {}", self.dir.display())
    }

    async fn append(&self, records: &[Record], sync: bool) -> Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).expect("records serialize"));
            text.push('\n');
        }
        let mut f = self.writer()?;
        let path = self.path();
        // A shared lock while writing: a compaction (exclusive) neither
        // reads half a record nor loses one appended to the journal it
        // replaced, which is then opened again.
        loop {
            f.lock_shared().map_err(|e| {
                Error::State(format!("cannot lock journal {}: {e}", path.display()))
            })?;
            if compact::same_file(&f, &path) {
                break;
            }
            let _ = f.unlock();
            *f = open_journal(&path)?;
        }
        let r = f
            .write_all(text.as_bytes())
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| Error::State(format!("cannot write journal {}: {e}", path.display())));
        let _ = f.unlock();
        r
    }

    async fn sync(&self) -> Result<()> {
        let f = self.writer()?;
        f.sync_data().map_err(|e| {
            Error::State(format!(
                "cannot sync journal {}: {e}",
                self.path().display()
            ))
        })
    }

    async fn read(&self) -> Result<Read> {
        self.read_now()
    }

    async fn read_all(&self) -> Result<Read> {
        // The live journal first: a compaction meanwhile moves runs from
        // it to the archive, never the other way.
        let live = self.read_now()?;
        let archive = parse(
            &compact::read_archive(&self.dir)?,
            "journal archive",
            &self.dir,
        );
        Ok(merge(archive, live))
    }

    async fn compact(&self) -> Result<Option<Compacted>> {
        drop(self.writer()?);
        compact::compact(&self.dir, &self.retention, true, super::host::process_lives)
    }

    async fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        let guard = lock_file(&self.dir, "lock", "another lbctl", timeout).await?;
        if self.file.is_ok() {
            match compact::compact(
                &self.dir,
                &self.retention,
                false,
                super::host::process_lives,
            ) {
                Ok(Some(c)) => {
                    tracing::debug!("journal {} compacted: {c:?}", self.path().display())
                }
                Ok(None) => {}
                // The journal is as it was, or complete: the command goes on.
                Err(e) => tracing::warn!("journal not compacted: {e}"),
            }
        }
        Ok(guard)
    }

    async fn peek(&self, timeout: Duration) -> Result<Vec<Claimed>> {
        // The lock for a moment, so that listing never makes a claim
        // fail; a reader (`watch`) compacts nothing.
        let _lock = lock_file(&self.dir, "lock", "another lbctl", timeout).await?;
        self.claims.others()
    }

    async fn try_claim(
        &self,
        keys: &[String],
        holder: &Holder,
    ) -> Result<std::result::Result<ClaimSet, (String, Option<Holder>)>> {
        self.claims.try_claim(keys, holder)
    }

    async fn others(&self) -> Result<Vec<Claimed>> {
        self.claims.others()
    }

    async fn check(&self) -> Result<()> {
        // A claim file stays locked while this process lives.
        Ok(())
    }
}

/// Takes the advisory lock on the file `name` of the state directory
/// (`who` says in messages what holds it), waiting up to `timeout`.
///
/// # Errors
///
/// [`Error::State`] saying who holds it, when the wait runs out.
pub async fn lock_file(dir: &Path, name: &str, who: &str, timeout: Duration) -> Result<LockGuard> {
    let path = dir.join(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::State(format!("cannot open lock {}: {e}", path.display())))?;
    shared_file(&path);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match f.try_lock() {
            Ok(()) => {
                // The holder's pid, over what the last holder wrote (all
                // write the same width): no truncation, which costs ext4 a
                // flush at close.
                use std::os::unix::fs::FileExt;
                let _ = f.write_all_at(format!("{:<10}\n", std::process::id()).as_bytes(), 0);
                return Ok(LockGuard {
                    _token: Box::new(f),
                });
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::State(format!("cannot lock {}: {e}", path.display())));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::State(format!(
                "{who} (pid {}) holds the lock {} and did not release it within {}; \
                 try again later or raise --lock-timeout",
                holder.trim(),
                path.display(),
                crate::duration::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
