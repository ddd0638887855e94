//! Parsers for the two runtime API reads the driver joins into members:
//! `show stat` (CSV, read by header names with the `csv` crate) and
//! `show servers state` (format version 1, space-separated, read by the
//! names in its `#` header line).
//!
//! They are public so that tools holding a captured answer can read it the
//! same way the driver does. Every function takes the balancer's name for
//! its errors; every error is [`lb_core::Error::Protocol`], and no input
//! makes them panic.
//!
//! ```
//! use lb_core::{AdminState, Health};
//!
//! let stat = "# pxname,svname,scur,status,weight,type,addr,\n\
//!             app,node1,3,UP,100,2,10.0.0.1:8080,\n\
//!             app,BACKEND,3,UP,100,1,,\n";
//! let state = "1\n\
//!              ## be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_port\n\
//!              3 app 1 node1 10.0.0.1 2 8 100 100 8080\n";
//! let members = lb_haproxy::parse::members("edge", stat, state).unwrap();
//! assert_eq!(members.len(), 1);
//! assert_eq!(members[0].address, "10.0.0.1:8080");
//! assert_eq!(members[0].admin, AdminState::Drain);
//! assert_eq!(members[0].health, Health::Up);
//! assert_eq!(members[0].active, Some(3));
//! ```

use std::collections::HashMap;

use lb_core::{AdminState, Health, Member};

use crate::error::HapError;

/// `srv_admin_state` bit: forced into maintenance (`set server … state maint`).
pub const ADMIN_FORCED_MAINT: u32 = 0x01;
/// `srv_admin_state` bit: maintenance inherited from a tracked server.
pub const ADMIN_INHERITED_MAINT: u32 = 0x02;
/// `srv_admin_state` bit: the server was `disabled` in the configuration.
///
/// HAProxy keeps this bit after `set server … state ready` puts the server
/// back in service: it records where the maintenance came from, it is not
/// one by itself (HAProxy's own `SRV_ADMF_MAINT` mask leaves it out).
pub const ADMIN_CONFIG_MAINT: u32 = 0x04;
/// `srv_admin_state` bit: forced into drain (`set server … state drain`).
pub const ADMIN_FORCED_DRAIN: u32 = 0x08;
/// `srv_admin_state` bit: drain inherited from a tracked server.
pub const ADMIN_INHERITED_DRAIN: u32 = 0x10;
/// `srv_admin_state` bit: down because its address could not be resolved.
pub const ADMIN_RESOLUTION_MAINT: u32 = 0x20;
/// `srv_admin_state` bit: its FQDN was set through the runtime API (a
/// marker, not a maintenance state).
pub const ADMIN_HOSTNAME_SET: u32 = 0x40;

/// The bits that put a server in maintenance (HAProxy's `SRV_ADMF_MAINT`).
pub const ADMIN_MAINT_MASK: u32 =
    ADMIN_FORCED_MAINT | ADMIN_INHERITED_MAINT | ADMIN_RESOLUTION_MAINT;
/// The bits that make a server drain (HAProxy's `SRV_ADMF_DRAIN`).
pub const ADMIN_DRAIN_MASK: u32 = ADMIN_FORCED_DRAIN | ADMIN_INHERITED_DRAIN;

/// `srv_op_state`: stopped (down, or in maintenance).
pub const OP_STOPPED: u32 = 0;

/// The state an `srv_admin_state` bitmask stands for: any maintenance bit
/// → `Maint`, else any drain bit → `Drain`, else `Ready`.
pub fn admin_state(bits: u32) -> AdminState {
    if bits & ADMIN_MAINT_MASK != 0 {
        AdminState::Maint
    } else if bits & ADMIN_DRAIN_MASK != 0 {
        AdminState::Drain
    } else {
        AdminState::Ready
    }
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    /// `pxname`: the backend.
    pub pool: String,
    /// `svname`: the server.
    pub name: String,
    /// `scur`: its current sessions (`None` when the field is empty).
    pub scur: Option<u64>,
    /// `status`: `UP`, `UP 1/3`, `DOWN`, `DRAIN`, `MAINT`, `NOLB`,
    /// `no check`, …
    pub status: String,
    /// `addr`: `host:port` (`None` when the column is absent or empty).
    pub addr: Option<String>,
}

/// One row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// `be_name`: the backend.
    pub pool: String,
    /// `srv_name`: the server.
    pub name: String,
    /// `srv_addr`: its IP address (`-` when unresolved).
    pub addr: String,
    /// `srv_port`, where reported and not 0.
    pub port: Option<u16>,
    /// `srv_fqdn`, where reported and not `-`.
    pub fqdn: Option<String>,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_admin_state`: the bitmask (`ADMIN_*`).
    pub admin_bits: u32,
    /// `srv_uweight`: the current (user-set) weight.
    pub weight: u32,
}

impl ServerState {
    /// Its administrative state, from the bitmask (see [`admin_state`]).
    pub fn admin(&self) -> AdminState {
        admin_state(self.admin_bits)
    }

    /// `addr:port` (`[addr]:port` for IPv6), the FQDN where the address is
    /// unresolved, the bare address where there is no port.
    pub fn address(&self) -> String {
        address(&self.addr, self.port, self.fqdn.as_deref())
    }
}

fn address(addr: &str, port: Option<u16>, fqdn: Option<&str>) -> String {
    let host = match (fqdn, addr) {
        (Some(f), "-" | "") => f,
        _ => addr,
    };
    match port {
        Some(p) if host.contains(':') => format!("[{host}]:{p}"),
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// HAProxy's view of a server's health: unknown while in maintenance
/// (checks are suspended) or without checks (`no check`), down when its
/// `srv_op_state` is stopped, up otherwise.
pub fn health(state: &ServerState, stat: Option<&StatRow>) -> Health {
    health_of(
        state.admin_bits,
        state.op_state,
        stat.is_some_and(|s| unchecked(&s.status)),
    )
}

fn unchecked(status: &str) -> bool {
    status.starts_with("no check")
}

fn health_of(admin_bits: u32, op_state: u32, unchecked: bool) -> Health {
    if admin_state(admin_bits) == AdminState::Maint {
        Health::Unknown
    } else if op_state == OP_STOPPED {
        Health::Down
    } else if unchecked {
        Health::Unknown
    } else {
        Health::Up
    }
}

/// Parses the answer to `show stat`, keeping server rows only (not
/// `FRONTEND`, `BACKEND` or listener rows).
///
/// # Errors
///
/// [`lb_core::Error::Protocol`] for anything that is not `show stat` CSV
/// with at least the `pxname`, `svname`, `scur` and `status` columns.
pub fn show_stat(balancer: &str, text: &str) -> lb_core::Result<Vec<StatRow>> {
    stat_rows(text).map_err(|e| e.into_core(balancer, ""))
}

/// Parses the answer to `show servers state [backend]`.
///
/// # Errors
///
/// [`lb_core::Error::Protocol`] for anything that is not format version 1
/// with at least the `be_name`, `srv_name`, `srv_addr`, `srv_op_state`,
/// `srv_admin_state` and `srv_uweight` columns.
pub fn show_servers_state(balancer: &str, text: &str) -> lb_core::Result<Vec<ServerState>> {
    state_rows(text).map_err(|e| e.into_core(balancer, ""))
}

/// Joins both answers into members, in `show servers state` order: one
/// member per server line per backend. `active` is `scur`, `weight` is
/// `srv_uweight`, `admin` comes from the bitmask, `health` from
/// [`health`], `address` from the `addr` column of `show stat` (else
/// from `show servers state`).
///
/// A server missing from `show stat` is still a member, with `active`
/// `None`.
///
/// # Errors
///
/// As [`show_stat`] and [`show_servers_state`].
pub fn members(
    balancer: &str,
    show_stat: &str,
    show_servers_state: &str,
) -> lb_core::Result<Vec<Member>> {
    join(show_stat, show_servers_state).map_err(|e| e.into_core(balancer, ""))
}

/// What `show stat` adds to a `show servers state` row.
#[derive(Default, Clone)]
struct Live {
    scur: Option<u64>,
    unchecked: bool,
    addr: Option<String>,
}

pub(crate) fn join(show_stat: &str, show_servers_state: &str) -> Result<Vec<Member>, HapError> {
    let states = state_refs(show_servers_state)?;
    let mut live = vec![Live::default(); states.len()];
    // Both answers list the servers in the same order (proxies, then
    // servers in configuration order), so the next row is almost always
    // the one wanted; a map serves the rest.
    let mut next = 0usize;
    let mut index: Option<HashMap<(&str, &str), usize>> = None;
    stat_each(show_stat, |r| {
        let i = if states
            .get(next)
            .is_some_and(|s| s.pool == r.pool && s.name == r.name)
        {
            Some(next)
        } else {
            index
                .get_or_insert_with(|| {
                    states
                        .iter()
                        .enumerate()
                        .map(|(i, s)| ((s.pool, s.name), i))
                        .collect()
                })
                .get(&(r.pool, r.name))
                .copied()
        };
        if let Some(i) = i {
            next = i + 1;
            live[i] = Live {
                scur: r.scur,
                unchecked: unchecked(r.status),
                addr: r.addr.map(str::to_owned),
            };
        }
        Ok(())
    })?;
    Ok(states
        .iter()
        .zip(live)
        .map(|(s, l)| Member {
            pool: s.pool.to_owned(),
            name: s.name.to_owned(),
            address: l.addr.unwrap_or_else(|| address(s.addr, s.port, s.fqdn)),
            admin: admin_state(s.admin_bits),
            health: health_of(s.admin_bits, s.op_state, l.unchecked),
            active: l.scur,
            weight: Some(s.weight),
        })
        .collect())
}

const STAT: &str = "show stat";
const STATE: &str = "show servers state";

/// One server row of `show stat`, borrowed from the CSV reader.
struct StatFields<'r> {
    pool: &'r str,
    name: &'r str,
    scur: Option<u64>,
    status: &'r str,
    addr: Option<&'r str>,
}

pub(crate) fn stat_rows(text: &str) -> Result<Vec<StatRow>, HapError> {
    let mut rows = Vec::new();
    stat_each(text, |r| {
        rows.push(StatRow {
            pool: r.pool.to_owned(),
            name: r.name.to_owned(),
            scur: r.scur,
            status: r.status.to_owned(),
            addr: r.addr.map(str::to_owned),
        });
        Ok(())
    })?;
    Ok(rows)
}

/// Calls `f` with every server row of a `show stat` answer.
fn stat_each(
    text: &str,
    mut f: impl FnMut(StatFields<'_>) -> Result<(), HapError>,
) -> Result<(), HapError> {
    let err = |d: String| HapError::parse(STAT, d);
    let body = text.strip_prefix("# ").ok_or_else(|| {
        err(format!(
            "no \"# pxname,…\" header: \"{}\"",
            first_line(text)
        ))
    })?;
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(body.as_bytes());
    let header = rd
        .byte_headers()
        .map_err(|e| err(format!("bad header: {e}")))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name.as_bytes());
    let need = |name: &'static str| {
        col(name).ok_or_else(|| err(format!("the header has no {name} column")))
    };
    let (px, sv, scur, status) = (
        need("pxname")?,
        need("svname")?,
        need("scur")?,
        need("status")?,
    );
    let (addr, kind) = (col("addr"), col("type"));
    let mut rec = csv::ByteRecord::new();
    let mut line = 1usize;
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(err(format!("bad CSV: {e}"))),
        }
        line += 1;
        if rec.len() == 1 && rec.get(0).is_some_and(<[u8]>::is_empty) {
            continue; // an empty line
        }
        let field = |i: usize| -> Result<&str, HapError> {
            let b = rec.get(i).ok_or_else(|| {
                err(format!(
                    "line {line} has {} fields, the header {}",
                    rec.len(),
                    header.len()
                ))
            })?;
            std::str::from_utf8(b).map_err(|_| err(format!("line {line} is not UTF-8")))
        };
        let name = field(sv)?;
        if name == "FRONTEND" || name == "BACKEND" {
            continue;
        }
        if let Some(k) = kind
            && field(k)? != "2"
        {
            continue; // not a server (a listener, with `option socket-stats`)
        }
        let pool = field(px)?;
        if pool.is_empty() || name.is_empty() {
            return Err(err(format!("line {line} has no pxname or svname")));
        }
        let scur = match field(scur)? {
            "" => None,
            v => Some(
                v.parse::<u64>()
                    .map_err(|_| err(format!("line {line}: scur {v:?} is not a number")))?,
            ),
        };
        let addr = match addr {
            Some(a) => Some(field(a)?).filter(|s| !s.is_empty()),
            None => None,
        };
        f(StatFields {
            pool,
            name,
            scur,
            status: field(status)?,
            addr,
        })?;
    }
}

/// One row of `show servers state`, borrowed from the answer.
pub(crate) struct StateRef<'a> {
    pool: &'a str,
    name: &'a str,
    addr: &'a str,
    port: Option<u16>,
    fqdn: Option<&'a str>,
    op_state: u32,
    admin_bits: u32,
    weight: u32,
}

impl StateRef<'_> {
    fn owned(&self) -> ServerState {
        ServerState {
            pool: self.pool.to_owned(),
            name: self.name.to_owned(),
            addr: self.addr.to_owned(),
            port: self.port,
            fqdn: self.fqdn.map(str::to_owned),
            op_state: self.op_state,
            admin_bits: self.admin_bits,
            weight: self.weight,
        }
    }
}

pub(crate) fn state_rows(text: &str) -> Result<Vec<ServerState>, HapError> {
    Ok(state_refs(text)?.iter().map(StateRef::owned).collect())
}

/// The row of `pool/name` in a `show servers state` answer, if any.
pub(crate) fn state_row(
    text: &str,
    pool: &str,
    name: &str,
) -> Result<Option<ServerState>, HapError> {
    Ok(state_refs(text)?
        .iter()
        .find(|r| r.pool == pool && r.name == name)
        .map(StateRef::owned))
}

fn state_refs(text: &str) -> Result<Vec<StateRef<'_>>, HapError> {
    let err = |d: String| HapError::parse(STATE, d);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or("").trim();
    if version != "1" {
        return Err(err(format!(
            "expected format version 1, got \"{}\"",
            first_line(text)
        )));
    }
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .ok_or_else(|| err("no \"# be_id be_name …\" header".into()))?;
    let names: Vec<&str> = header.split_ascii_whitespace().collect();
    let col = |name: &str| names.iter().position(|h| *h == name);
    let need = |name: &'static str| {
        col(name).ok_or_else(|| err(format!("the header has no {name} column")))
    };
    let be = need("be_name")?;
    let srv = need("srv_name")?;
    let addr = need("srv_addr")?;
    let op = need("srv_op_state")?;
    let admin = need("srv_admin_state")?;
    let weight = need("srv_uweight")?;
    let port = col("srv_port");
    let fqdn = col("srv_fqdn");
    let last = [be, srv, addr, op, admin, weight]
        .into_iter()
        .chain(port)
        .chain(fqdn)
        .max()
        .unwrap_or(0);
    let mut rows = Vec::new();
    let mut fields: Vec<&str> = Vec::with_capacity(names.len());
    for (i, l) in lines.enumerate() {
        let line = i + 3;
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        fields.clear();
        fields.extend(l.split_ascii_whitespace().take(last + 1));
        if fields.len() <= last {
            return Err(err(format!(
                "line {line} has {} fields, expected at least {}",
                fields.len(),
                last + 1
            )));
        }
        let num = |i: usize, what: &str| -> Result<u32, HapError> {
            fields[i].parse::<u32>().map_err(|_| {
                err(format!(
                    "line {line}: {what} {:?} is not a number",
                    fields[i]
                ))
            })
        };
        let port = match port {
            Some(p) => match fields[p] {
                "0" | "-" => None,
                v => Some(
                    v.parse::<u16>()
                        .map_err(|_| err(format!("line {line}: srv_port {v:?} is not a port")))?,
                ),
            },
            None => None,
        };
        rows.push(StateRef {
            pool: fields[be],
            name: fields[srv],
            addr: fields[addr],
            port,
            fqdn: fqdn.map(|f| fields[f]).filter(|f| *f != "-"),
            op_state: num(op, "srv_op_state")?,
            admin_bits: num(admin, "srv_admin_state")?,
            weight: num(weight, "srv_uweight")?,
        });
    }
    Ok(rows)
}

fn first_line(text: &str) -> String {
    crate::error::shown(text.lines().next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from HAProxy 2.6 (`show stat -1 4 -1`, trimmed to the
    /// columns that matter plus a few around them).
    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,type,check_status,addr,\n\
        app,node1,0,0,0,0,,0,DOWN,1,2,L4CON,127.0.0.1:29911,\n\
        app,node2,0,0,4,7,,9,DRAIN,50,2,,127.0.0.1:29912,\n\
        app,BACKEND,0,0,4,7,999,9,UP,50,1,,,\n\
        other,node1,0,0,0,0,,0,no check,1,2,,127.0.0.1:29911,\n\
        other,node3,0,0,0,0,,0,MAINT,1,2,,127.0.0.1:29913,\n";

    const STATE: &str = "1\n\
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
        3 app 1 node1 127.0.0.1 0 0 1 1 1 8 2 0 6 0 0 0 - 29911 - 0 0 - - 0\n\
        3 app 2 node2 127.0.0.1 2 8 50 50 1 1 0 2 0 0 0 0 - 29912 - 0 0 - - 0\n\
        4 other 1 node1 127.0.0.1 2 0 1 1 1 1 0 2 0 0 0 0 - 29911 - 0 0 - - 0\n\
        4 other 2 node3 127.0.0.1 0 1 1 1 1 1 0 2 0 0 0 0 - 29913 - 0 0 - - 0\n";

    #[test]
    fn joins_stat_and_state_by_name() {
        let m = join(STAT, STATE).unwrap();
        let short: Vec<_> = m
            .iter()
            .map(|m| {
                (
                    format!("{}/{}", m.pool, m.name),
                    m.admin,
                    m.health,
                    m.active,
                    m.weight,
                )
            })
            .collect();
        use AdminState::*;
        use Health::*;
        assert_eq!(
            short,
            vec![
                ("app/node1".into(), Ready, Down, Some(0), Some(1)),
                ("app/node2".into(), Drain, Up, Some(4), Some(50)),
                ("other/node1".into(), Ready, Unknown, Some(0), Some(1)),
                ("other/node3".into(), Maint, Unknown, Some(0), Some(1)),
            ]
        );
        assert_eq!(m[1].address, "127.0.0.1:29912");
    }

    #[test]
    fn the_bitmask_decides_the_admin_state() {
        assert_eq!(admin_state(0), AdminState::Ready);
        assert_eq!(admin_state(ADMIN_CONFIG_MAINT), AdminState::Ready);
        assert_eq!(admin_state(ADMIN_HOSTNAME_SET), AdminState::Ready);
        assert_eq!(
            admin_state(ADMIN_FORCED_MAINT | ADMIN_CONFIG_MAINT),
            AdminState::Maint
        );
        assert_eq!(admin_state(ADMIN_INHERITED_MAINT), AdminState::Maint);
        assert_eq!(admin_state(ADMIN_RESOLUTION_MAINT), AdminState::Maint);
        assert_eq!(admin_state(ADMIN_FORCED_DRAIN), AdminState::Drain);
        assert_eq!(admin_state(ADMIN_INHERITED_DRAIN), AdminState::Drain);
        assert_eq!(
            admin_state(ADMIN_FORCED_DRAIN | ADMIN_INHERITED_MAINT),
            AdminState::Maint
        );
    }

    #[test]
    fn a_member_missing_from_show_stat_has_no_active_count() {
        let m = join("# pxname,svname,scur,status,\n", STATE).unwrap();
        assert_eq!(m.len(), 4);
        assert!(m.iter().all(|m| m.active.is_none()));
        assert_eq!(m[0].address, "127.0.0.1:29911", "from show servers state");
    }

    #[test]
    fn addresses_without_stat_column() {
        let s = ServerState {
            pool: "p".into(),
            name: "n".into(),
            addr: "::1".into(),
            port: Some(80),
            fqdn: None,
            op_state: 2,
            admin_bits: 0,
            weight: 1,
        };
        assert_eq!(s.address(), "[::1]:80");
        let s = ServerState {
            addr: "-".into(),
            fqdn: Some("app.example".into()),
            port: None,
            ..s
        };
        assert_eq!(s.address(), "app.example");
    }

    #[test]
    fn errors_are_protocol_errors_naming_the_answer() {
        for (stat, state, needle) in [
            ("", STATE, "no \"# pxname"),
            ("No such backend.\n", STATE, "No such backend."),
            ("# pxname,svname,status,\n", STATE, "no scur column"),
            (
                "# pxname,svname,scur,status,\napp,n1,x,UP,\n",
                STATE,
                "scur \"x\"",
            ),
            (
                "# pxname,svname,scur,status,\napp,n1\n",
                STATE,
                "line 2 has 2 fields",
            ),
            (STAT, "", "format version 1"),
            (STAT, "Can't find backend.\n", "Can't find backend."),
            (STAT, "1\n", "no \"# be_id"),
            (STAT, "1\n# be_id be_name\n", "no srv_name column"),
            (
                STAT,
                &STATE.replace(" 50 50 ", " x 50 "),
                "srv_uweight \"x\"",
            ),
            (
                STAT,
                &STATE.replace(" 29912 ", " 99999 "),
                "srv_port \"99999\"",
            ),
            (
                STAT,
                "1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight\napp n1 1.2.3.4 2\n",
                "line 3 has 4 fields",
            ),
        ] {
            let e = members("edge", stat, state).unwrap_err();
            assert!(matches!(e, lb_core::Error::Protocol { .. }), "{e}");
            assert_eq!(e.balancer(), "edge");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn is_protocol(r: &lb_core::Result<impl Sized>) -> bool {
        match r {
            Ok(_) => true,
            Err(e) => matches!(e, lb_core::Error::Protocol { .. }) && e.balancer() == "edge",
        }
    }

    /// Text that looks enough like either answer to get past the first
    /// checks: headers, separators, digits and names in random order.
    fn answer_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("# ".to_owned()),
            Just("1\n".to_owned()),
            Just("pxname,svname,scur,status,type,addr,".to_owned()),
            Just("be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port srv_fqdn".to_owned()),
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\"".to_owned()),
            Just("FRONTEND".to_owned()),
            Just("-".to_owned()),
            "[0-9]{1,12}",
            "[a-z]{1,6}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    #[derive(Debug, Clone)]
    struct Srv {
        pool: String,
        name: String,
        port: u16,
        op: u32,
        bits: u32,
        weight: u32,
        scur: u64,
        checked: bool,
    }

    fn server() -> impl Strategy<Value = Srv> {
        (
            "[a-z][a-z0-9_.-]{0,8}",
            "[a-z][a-z0-9_.:-]{0,8}",
            1u16..,
            0u32..4,
            0u32..128,
            0u32..=256,
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(pool, name, port, op, bits, weight, scur, checked)| Srv {
                pool,
                name,
                port,
                op,
                bits,
                weight,
                scur,
                checked,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_and_errors_are_protocol(a in any::<String>(), b in any::<String>()) {
            prop_assert!(is_protocol(&show_stat("edge", &a)));
            prop_assert!(is_protocol(&show_servers_state("edge", &b)));
            prop_assert!(is_protocol(&members("edge", &a, &b)));
        }

        #[test]
        fn answer_like_text_never_panics_and_errors_are_protocol(a in answer_like(), b in answer_like()) {
            prop_assert!(is_protocol(&show_stat("edge", &a)));
            prop_assert!(is_protocol(&show_servers_state("edge", &b)));
            prop_assert!(is_protocol(&members("edge", &a, &b)));
        }

        #[test]
        fn well_formed_answers_read_back_every_server(servers in proptest::collection::vec(server(), 0..30)) {
            // Names are unique per pool in HAProxy.
            let mut seen = std::collections::HashSet::new();
            let servers: Vec<Srv> = servers
                .into_iter()
                .filter(|s| seen.insert((s.pool.clone(), s.name.clone())))
                .collect();
            let mut stat = String::from("# pxname,svname,qcur,scur,status,weight,type,addr,\n");
            let mut state = String::from(
                "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_fqdn srv_port\n",
            );
            for (i, s) in servers.iter().enumerate() {
                let status = if !s.checked { "no check" } else if s.op == 0 { "DOWN" } else { "UP" };
                stat.push_str(&format!(
                    "{},{},0,{},{status},{},2,10.0.0.{}:{},\n",
                    s.pool, s.name, s.scur, s.weight, i % 250, s.port
                ));
                stat.push_str(&format!("{},BACKEND,0,0,UP,1,1,,\n", s.pool));
                state.push_str(&format!(
                    "3 {} {i} {} 10.0.0.{} {} {} {} 1 - {}\n",
                    s.pool, s.name, i % 250, s.op, s.bits, s.weight, s.port
                ));
            }
            let got = members("edge", &stat, &state).unwrap();
            prop_assert_eq!(got.len(), servers.len());
            for (i, (m, s)) in got.iter().zip(&servers).enumerate() {
                prop_assert_eq!(&m.pool, &s.pool);
                prop_assert_eq!(&m.name, &s.name);
                prop_assert_eq!(&m.address, &format!("10.0.0.{}:{}", i % 250, s.port));
                prop_assert_eq!(m.admin, admin_state(s.bits));
                prop_assert_eq!(m.active, Some(s.scur));
                prop_assert_eq!(m.weight, Some(s.weight));
                let want = if m.admin == AdminState::Maint {
                    Health::Unknown
                } else if s.op == 0 {
                    Health::Down
                } else if !s.checked {
                    Health::Unknown
                } else {
                    Health::Up
                };
                prop_assert_eq!(m.health, want);
            }
        }
    }
}
