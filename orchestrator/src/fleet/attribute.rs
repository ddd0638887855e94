//! Which member is which node beyond names and literal addresses: a host
//! name that resolves to the node's address is the node; a member lbctl
//! cannot attribute at all (a unix socket, a name that does not resolve,
//! what a driver reports as unattributed) is never silently left out.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Mutex;

use lb_core::Member;

use super::Node;

/// Host-name lookups, each made once per command.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    cache: Mutex<HashMap<String, Vec<IpAddr>>>,
}

/// `host` and `port` of `host:port`, `[v6]:port` or a bare host.
fn split(addr: &str) -> (&str, Option<u16>) {
    if let Some(rest) = addr.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (h, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (addr, None),
        },
        _ => (addr, None),
    }
}

/// Whether `host` is a name (not an address literal) lbctl may look up.
fn is_name(host: &str) -> bool {
    host.parse::<IpAddr>().is_err()
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl Resolver {
    /// The addresses `host` stands for (itself when it is an address;
    /// none when it does not resolve).
    fn lookup(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        if !is_name(host) {
            return Vec::new();
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(host.to_owned())
            .or_insert_with(|| {
                (host, 0)
                    .to_socket_addrs()
                    .map(|a| a.map(|s| s.ip()).collect())
                    .unwrap_or_default()
            })
            .clone()
    }

    /// Whether `m`, named by a host name, resolves to `node`'s address
    /// (same port, where the member has one).
    pub(crate) fn same_host(&self, node: &Node, m: &Member) -> bool {
        let (mh, mp) = split(&m.address);
        let (nh, np) = split(&node.address);
        if !is_name(mh) || (mp.is_some() && mp != np) {
            return false;
        }
        let theirs = self.lookup(nh);
        self.lookup(mh).iter().any(|a| theirs.contains(a))
    }

    /// Why no node can be told from `m`'s address, if none can: a unix
    /// socket, or a host name that does not resolve.
    pub(crate) fn unattributable(&self, m: &Member) -> Option<String> {
        if m.address.starts_with("unix:") {
            return Some("a unix socket".into());
        }
        let (h, _) = split(&m.address);
        (is_name(h) && self.lookup(h).is_empty()).then(|| format!("host name {h} does not resolve"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::{AdminState, Health};

    fn member(address: &str) -> Member {
        Member {
            pool: "app".into(),
            name: address.into(),
            address: address.into(),
            admin: AdminState::Ready,
            health: Health::Unknown,
            active: None,
            weight: None,
        }
    }

    #[test]
    fn a_name_that_resolves_to_the_node_s_address_is_the_node() {
        let r = Resolver::default();
        let node = Node::new("web-02", "127.0.0.1:8080");
        assert!(r.same_host(&node, &member("localhost:8080")));
        assert!(!r.same_host(&node, &member("localhost:8081")));
        assert!(r.same_host(&node, &member("localhost")));
        assert!(
            !r.same_host(&node, &member("127.0.0.1:8080")),
            "literals match as before"
        );
    }

    #[test]
    fn unix_sockets_and_names_that_do_not_resolve_cannot_be_attributed() {
        let r = Resolver::default();
        assert_eq!(
            r.unattributable(&member("unix:/run/app.sock")).as_deref(),
            Some("a unix socket")
        );
        assert!(
            r.unattributable(&member("no-such-host.invalid:80"))
                .unwrap()
                .contains("does not resolve")
        );
        assert_eq!(r.unattributable(&member("10.0.0.1:80")), None);
        assert_eq!(r.unattributable(&member("localhost:80")), None);
        assert_eq!(split("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split("10.0.0.1"), ("10.0.0.1", None));
    }
}
