use std::net::SocketAddr;

use crate::Backend;

/// One member of a pool, as a daemon's configuration writes it.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// Its name: HAProxy's server name, Apache's route (nginx names members
    /// by address). For Apache, an empty name writes the member without a
    /// route.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its weight (HAProxy `weight`, Apache `loadfactor`, nginx `weight=`).
    pub weight: Option<u32>,
    /// Further parameters written verbatim on its server line.
    pub extra: String,
}

/// One pool: an HAProxy backend, an Apache balancer, an nginx upstream.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    /// The pool's name.
    pub name: String,
    /// Its members, in order.
    pub members: Vec<MemberSpec>,
    /// Further directives written verbatim inside the pool's block.
    pub extra: Vec<String>,
}

impl PoolSpec {
    /// An empty pool.
    pub fn new(name: &str) -> Self {
        PoolSpec {
            name: name.into(),
            members: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Adds a member.
    pub fn member(mut self, name: &str, addr: SocketAddr) -> Self {
        self.members.push(MemberSpec {
            name: name.into(),
            addr,
            weight: None,
            extra: String::new(),
        });
        self
    }

    /// Adds a member with a weight.
    pub fn weighted(mut self, name: &str, addr: SocketAddr, weight: u32) -> Self {
        self.members.push(MemberSpec {
            name: name.into(),
            addr,
            weight: Some(weight),
            extra: String::new(),
        });
        self
    }

    /// Adds every backend, named by its id.
    pub fn backends(mut self, backends: &[Backend]) -> Self {
        for b in backends {
            self = self.member(b.id(), b.addr());
        }
        self
    }

    /// Adds a directive inside the pool's block.
    pub fn directive(mut self, d: &str) -> Self {
        self.extra.push(d.into());
        self
    }

    /// HAProxy cookie persistence (`cookie SERVERID insert indirect
    /// nocache`, each server `cookie NAME`), as Confluence Data Center
    /// needs: a user stays on the server that first answered it while that
    /// server takes requests, DRAIN included. Call after adding members.
    pub fn haproxy_cookies(mut self) -> Self {
        for m in &mut self.members {
            m.extra = format!("{} cookie {}", m.extra, m.name).trim().to_string();
        }
        self.directive("cookie SERVERID insert indirect nocache")
    }

    /// Apache sticky sessions by a route cookie, as mod_proxy_balancer
    /// documents (`stickysession=ROUTEID`, the cookie set by mod_headers,
    /// which the lab loads): a user stays on the worker that first answered
    /// it while that worker takes requests, Drain included.
    pub fn apache_sticky(self) -> Self {
        self.directive("ProxySet stickysession=ROUTEID").directive(
            "Header add Set-Cookie \"ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/\" env=BALANCER_ROUTE_CHANGED",
        )
    }
}

/// The pools a daemon is started with; each gets a frontend of its own.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    /// The pools, in order.
    pub pools: Vec<PoolSpec>,
}

impl Pools {
    /// No pools yet.
    pub fn new() -> Self {
        Pools::default()
    }

    /// Adds a pool named `name` holding every backend.
    pub fn pool(mut self, name: &str, backends: &[Backend]) -> Self {
        self.pools.push(PoolSpec::new(name).backends(backends));
        self
    }

    /// Adds a pool described in full.
    pub fn with(mut self, p: PoolSpec) -> Self {
        self.pools.push(p);
        self
    }
}
