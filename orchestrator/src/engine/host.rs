//! This machine and its processes, as the journal names them.

use std::fs;
use std::path::Path;

/// Whether `pid` (another process than this one) runs on this machine.
pub(crate) fn process_alive(pid: u32) -> bool {
    pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process a `start` record names (`pid` on `host`) still
/// runs: on this machine, and not this process.
pub fn process_lives(pid: u32, host: &str) -> bool {
    host == hostname() && process_alive(pid)
}

/// This machine's name (read once).
pub(crate) fn hostname() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
    .clone()
}
