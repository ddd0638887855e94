//! State shared by the users of one machine: directories lbctl creates
//! are group-writable and set-group-id, its files group-writable.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and its parents) for every user of its group: the
/// directories lbctl creates are group-writable and set-group-id, so the
/// files in them belong to that group.
pub(crate) fn shared_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o2775)
        .create(dir)
        .map_err(|e| {
            Error::State(format!(
                "cannot create state dir {}: {e} (create it once for the operators' group: \
                 `install -d -m 2775 -g GROUP {}`, or choose another with --state-dir)",
                dir.display(),
                dir.display()
            ))
        })?;
    // The umask may have taken the group's write and set-group-id bits.
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o2775));
    Ok(())
}

/// Makes a file lbctl created writable by its group (what the umask took).
pub(crate) fn shared_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::metadata(path)
        && m.permissions().mode() & 0o020 == 0
    {
        // Only the owner may; another user's file stays as it is.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o664));
    }
}
