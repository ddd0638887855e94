//! The parser the driver runs on the balancer-manager's answer, for the
//! fuzz target in the workspace's `fuzz/` folder and the test that replays
//! its corpus. Not part of the API: hidden from the docs, and it may
//! change with any release.

use crate::xml;

/// `bytes` read as the driver reads the answer (lossy UTF-8), parsed, and
/// every member read as `members` reads it. Returns how many members it
/// held.
///
/// # Errors
///
/// The parser's message when `bytes` is not a balancer-manager answer.
pub fn manager_xml(bytes: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(bytes);
    let manager = xml::parse(&text).map_err(|e| e.to_string())?;
    let mut n = 0;
    for b in &manager.balancers {
        let pool = b.pool();
        assert!(manager.balancer(pool).is_some(), "{pool} is found again");
        for w in &b.workers {
            let _ = (w.member_name(), w.address(), w.weight());
            let _ = (w.status.admin(), w.status.health(), w.status.to_string());
            n += 1;
        }
    }
    Ok(n)
}
