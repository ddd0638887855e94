//! Claims: a command that changes a node holds a claim on it for its whole
//! duration, so that no other lbctl changes that node meanwhile.
//!
//! In the state directory, each claim is a file `claims/KEY.lock` that the
//! holder keeps locked (`flock`, released by the kernel when the process
//! dies) and that says who holds it. Claims are taken, and other runs'
//! claims are listed, under the state directory's lock, so the two never
//! race.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::backend::{ClaimSet, Holder, Token};
use crate::error::{Error, Result};

/// One claim file, locked by this process while any [`ClaimSet`] holds it.
#[derive(Debug)]
struct Held {
    _file: File,
}

/// The claims of one state directory, as this process sees them.
#[derive(Debug)]
pub(crate) struct Claims {
    dir: PathBuf,
    /// Keys this process holds: a second claim of the same key by this
    /// process (a rolling run's drain inside its node's claim) shares it.
    mine: Mutex<BTreeMap<String, Weak<Held>>>,
}

/// The file name of a claim key: anything but `[A-Za-z0-9._-]` as `%XX`.
fn file_name(key: &str) -> String {
    let mut s = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s + ".lock"
}

fn open(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::State(format!("cannot open claim {}: {e}", path.display())))?;
    super::shared::shared_file(path);
    Ok(f)
}

/// Who holds the claim `path`: its first line (what follows is what a
/// longer earlier holder left).
fn holder_of(path: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().next()?.trim()).ok()
}

impl Claims {
    pub(crate) fn new(state_dir: &Path) -> Claims {
        Claims {
            dir: state_dir.join("claims"),
            mine: Mutex::new(BTreeMap::new()),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    fn held_by_me(&self, key: &str) -> Option<Arc<Held>> {
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.get(key).and_then(Weak::upgrade)
    }

    /// Tries once to claim every key (the caller holds the state
    /// directory's lock): all of them, or none and the first key another
    /// run holds.
    pub(crate) fn try_claim(
        &self,
        keys: &[String],
        holder: &Holder,
    ) -> Result<std::result::Result<ClaimSet, (String, Option<Holder>)>> {
        super::shared::shared_dir(&self.dir)?;
        let mut set = ClaimSet::default();
        let mut fresh = Vec::new();
        for key in keys {
            set.keys.push(key.clone());
            if let Some(h) = self.held_by_me(key) {
                set.held.push(h as Token);
                continue;
            }
            let path = self.path(key);
            let file = open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Ok(Err((key.clone(), holder_of(&path))));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::State(format!("cannot lock {}: {e}", path.display())));
                }
            }
            // The holder on the first line, over what an earlier holder
            // wrote (read up to the first newline): no truncation, which
            // costs ext4 a flush at close.
            let text = serde_json::to_string(holder).expect("holders serialize") + "\n";
            file.write_all_at(text.as_bytes(), 0)
                .map_err(|e| Error::State(format!("cannot write {}: {e}", path.display())))?;
            let held = Arc::new(Held { _file: file });
            fresh.push((key.clone(), Arc::downgrade(&held)));
            set.held.push(held as Token);
        }
        let mut mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.retain(|_, w| w.strong_count() > 0);
        mine.extend(fresh);
        Ok(Ok(set))
    }

    /// The claims other processes hold now (the caller holds the state
    /// directory's lock).
    pub(crate) fn others(&self) -> Result<Vec<(String, Holder)>> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".lock"))
                .map(decode)
            else {
                continue;
            };
            if self.held_by_me(&key).is_some() {
                continue;
            }
            let file = open(&path)?;
            match file.try_lock_shared() {
                // Free: nobody holds it.
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    if let Some(h) = holder_of(&path) {
                        out.push((key, h));
                    }
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::State(format!("cannot lock {}: {e}", path.display())));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn decode(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = name
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_make_file_names_and_back() {
        for k in ["node2", "member:edge/app/http://10.0.0.1:80", "a b%c"] {
            let f = file_name(k);
            assert!(!f.contains('/') && !f.contains(' '), "{f}");
            assert_eq!(decode(f.strip_suffix(".lock").unwrap()), k);
        }
    }
}
