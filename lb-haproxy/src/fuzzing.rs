//! The parsers the driver runs on what HAProxy answers, for the fuzz
//! targets in the workspace's `fuzz/` folder and the tests that replay
//! their corpus. Not part of the API: hidden from the docs, and it may
//! change with any release.

use crate::parse;

/// A `show stat` answer of HAProxy 2.6 (the columns the driver reads).
const STAT: &str = "# pxname,svname,scur,status,addr\n\
                    app,FRONTEND,0,OPEN,\n\
                    app,node1,0,UP,127.0.0.1:29872\n\
                    app,node2,3,DRAIN,127.0.0.1:29873\n\
                    app,BACKEND,3,UP,\n";

/// A `show servers state` answer of HAProxy 2.6 for the same servers.
const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n\
                     3 app 1 node1 127.0.0.1 2 0 1 1 2 8 2 0 6 0 0 0 - 29872 -\n\
                     3 app 2 node2 127.0.0.1 2 8 50 50 1 8 2 0 6 0 0 0 - 29873 -\n";

/// `bytes` read as the driver reads the socket (lossy UTF-8) and parsed as
/// a `show stat` answer, alone and joined with a `show servers state`
/// answer as `members` does. Returns how many server rows it held.
///
/// # Errors
///
/// The driver's message when `bytes` is not `show stat` CSV.
pub fn show_stat(bytes: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(bytes);
    let rows = parse::show_stat("fuzz", &text).map_err(|e| e.to_string())?;
    parse::members("fuzz", &text, STATE).map_err(|e| e.to_string())?;
    Ok(rows.len())
}

/// `bytes` read as the driver reads the socket (lossy UTF-8) and parsed as
/// a `show servers state` answer, alone and joined with a `show stat`
/// answer as `members` does. Returns how many servers it held.
///
/// # Errors
///
/// The driver's message when `bytes` is not a `show servers state` answer.
pub fn show_servers_state(bytes: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(bytes);
    let rows = parse::show_servers_state("fuzz", &text).map_err(|e| e.to_string())?;
    let members = parse::members("fuzz", STAT, &text).map_err(|e| e.to_string())?;
    assert_eq!(
        members.len(),
        rows.len(),
        "members lists one member per server of `show servers state`"
    );
    Ok(rows.len())
}
