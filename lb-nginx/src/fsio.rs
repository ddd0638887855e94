//! Locked, atomic rewrites of the upstream file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An exclusive `flock` on the file a path names, held until dropped.
///
/// `flock` locks belong to an open file description, so two tasks of one
/// process exclude each other exactly like two processes do.
#[derive(Debug)]
pub(crate) struct Locked {
    _file: File,
}

/// Locks `path` exclusively, waiting for any other holder.
///
/// The file is replaced by a rename on every write, so a lock taken on the
/// old inode is worthless once the rename happened: after locking, the path
/// is checked to still name the locked inode, and the lock is taken again
/// when it does not.
pub(crate) fn lock(path: &Path) -> io::Result<Locked> {
    loop {
        let file = File::open(path)?;
        file.lock()?;
        let held = file.metadata()?;
        let now = fs::metadata(path)?;
        if (held.dev(), held.ino()) == (now.dev(), now.ino()) {
            return Ok(Locked { _file: file });
        }
    }
}

/// Replaces the contents of `path` with `bytes`: a temp file in the same
/// directory (named `.NAME.XXXXXX.lbctl-tmp`, which no `include *.conf`
/// picks up), with the original's mode and owner, written and fsynced,
/// renamed over the original, then the directory fsynced. A reader sees
/// either the old bytes or the new ones, never a mix; a crash leaves at
/// worst a stray temp file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes)?;
    sync_dir(path)
}

/// [`write_atomic`] without the final fsync of the directory, which the
/// caller makes with [`sync_dir`] (while doing something else).
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".lbctl-tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(meta.permissions())?;
    // Keep the owner when we may (as root); otherwise the file is ours.
    let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()));
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Makes a rename in the directory of `path` durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_keeping_the_mode_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("up.conf");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let _l = lock(&p).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["up.conf"]);
    }

    #[test]
    fn a_second_locker_waits_and_then_sees_the_new_inode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("up.conf");
        fs::write(&p, "0").unwrap();
        let first = lock(&p).unwrap();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            let _l = lock(&p2).unwrap();
            fs::read_to_string(&p2).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        write_atomic(&p, b"1").unwrap();
        drop(first);
        assert_eq!(t.join().unwrap(), "1");
    }
}
