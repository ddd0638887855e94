//! `lbctl discover` against the lab's real HAProxy, Apache and nginx: it
//! proposes the inventory's `[nodes.*]` the lab would be written with, and
//! `--write` appends it leaving every other byte as it was.

mod common;

use std::collections::BTreeMap;

use common::{Env, apache_section, haproxy_section, nginx_section, stderr, text};
use lb_lab::{Apache, Backend, Haproxy, Nginx, PoolSpec, Pools};

/// The three balancers of the lab in front of the same three backends.
struct Lab {
    backends: Vec<Backend>,
    hap: Haproxy,
    apache: Apache,
    nginx: Nginx,
}

impl Lab {
    fn start() -> Lab {
        let backends = Backend::start_many(3);
        let pools = Pools::new().pool("app", &backends);
        Lab {
            hap: Haproxy::start(&pools),
            apache: Apache::start(&pools),
            nginx: Nginx::start(&pools),
            backends,
        }
    }

    /// `[balancers.*]` as the lab's inventory writes them.
    fn balancers(&self) -> String {
        haproxy_section("edge", &self.hap.admin_socket())
            + &apache_section("web", &self.apache.manager_url())
            + &nginx_section("front", &self.nginx)
    }

    /// The lab inventory's nodes: name → address.
    fn nodes(&self) -> BTreeMap<String, String> {
        self.backends
            .iter()
            .map(|b| (b.id().to_string(), b.addr().to_string()))
            .collect()
    }
}

/// The `[nodes.*]` of a TOML document: name → (address, members table).
fn proposed(doc: &str) -> BTreeMap<String, (String, Option<toml::Table>)> {
    let v: toml::Table = doc
        .parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{doc}"));
    v.get("nodes")
        .and_then(|n| n.as_table())
        .unwrap_or_else(|| panic!("no [nodes.*] in\n{doc}"))
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (
                    t["address"].as_str().unwrap().to_string(),
                    t.get("members").and_then(|m| m.as_table()).cloned(),
                ),
            )
        })
        .collect()
}

fn addresses_only(p: &BTreeMap<String, (String, Option<toml::Table>)>) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, (a, m))| {
            assert!(m.is_none(), "{k}: no members override needed: {m:?}");
            (k.clone(), a.clone())
        })
        .collect()
}

#[test]
fn discover_proposes_the_lab_inventorys_nodes_and_write_appends_them_byte_for_byte() {
    let lab = Lab::start();
    let before = format!(
        "# the lab, balancers only\n[defaults]\npoll_interval = \"50ms\"\n\n{}",
        lab.balancers()
    );
    let env = Env::new(&before);

    let out = env.ok(&["discover"]);
    let doc = text(&out.stdout);
    assert_eq!(addresses_only(&proposed(&doc)), lab.nodes(), "{doc}");
    assert_eq!(
        std::fs::read(env.file("lbctl.toml")).unwrap(),
        before.as_bytes(),
        "without --write the inventory is not touched"
    );

    let out = env.ok(&["discover", "--write"]);
    let after = std::fs::read(env.file("lbctl.toml")).unwrap();
    assert!(
        after.starts_with(before.as_bytes()),
        "every byte before stays as it was"
    );
    let added = String::from_utf8(after[before.len()..].to_vec()).unwrap();
    assert_eq!(
        added,
        text(&out.stdout),
        "what was appended is what was shown"
    );
    assert!(
        stderr(&out).contains("3 node(s) appended"),
        "{}",
        stderr(&out)
    );

    // The written inventory works: every node has its member on all three.
    let v = env.json(&["status"]);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{v}");
    for n in nodes {
        let bals: Vec<&str> = n["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["balancer"].as_str().unwrap())
            .collect();
        assert_eq!(bals, ["edge", "front", "web"], "{n}");
    }

    // Everything is attributed now: nothing more to propose or write.
    let v = env.json(&["discover", "--write"]);
    assert_eq!(v["nodes"], serde_json::json!([]), "{v}");
    assert_eq!(v["written"], false);
    assert_eq!(std::fs::read(env.file("lbctl.toml")).unwrap(), after);
}

#[test]
fn discover_reads_balancers_given_on_the_command_line_without_an_inventory() {
    let lab = Lab::start();
    let env = Env::new("");
    std::fs::remove_file(env.file("lbctl.toml")).unwrap();
    let socket = lab.hap.admin_socket();
    let upstream = lab.nginx.upstream_file();
    let url = lab.apache.manager_url();
    let out = env.ok(&[
        "discover",
        "--haproxy",
        socket.to_str().unwrap(),
        "--apache",
        &url,
        "--nginx",
        upstream.to_str().unwrap(),
    ]);
    let doc = text(&out.stdout);
    assert!(
        doc.starts_with("# [nodes.*] proposed by lbctl discover from haproxy, apache, nginx\n"),
        "{doc}"
    );
    assert_eq!(addresses_only(&proposed(&doc)), lab.nodes(), "{doc}");
    assert!(!env.file("lbctl.toml").exists(), "no inventory was created");
}

#[test]
fn where_names_and_addresses_disagree_across_balancers_discover_writes_members_overrides() {
    let backends = Backend::start_many(2);
    let (a, b) = (backends[0].addr(), backends[1].addr());
    // HAProxy calls the server at a node1; Apache routes the worker at a
    // node2, and the other way round.
    let hap = Haproxy::start(
        &Pools::new().with(PoolSpec::new("app").member("node1", a).member("node2", b)),
    );
    let apache = Apache::start(
        &Pools::new().with(PoolSpec::new("app").member("node2", a).member("node1", b)),
    );
    let env = Env::new(
        &(haproxy_section("edge", &hap.admin_socket())
            + &apache_section("web", &apache.manager_url())),
    );
    let before = std::fs::read(env.file("lbctl.toml")).unwrap();

    // From the command line the balancers are `haproxy` and `apache`: an
    // override for `apache` is no use to this inventory, whose balancers
    // are edge and web. Refused, nothing written.
    let socket = hap.admin_socket();
    let url = apache.manager_url();
    let out = env.run(&[
        "discover",
        "--haproxy",
        socket.to_str().unwrap(),
        "--apache",
        &url,
        "--write",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing written") && stderr(&out).contains("no balancer \"apache\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(env.file("lbctl.toml")).unwrap(), before);

    let out = env.ok(&["discover"]);
    let doc = text(&out.stdout);
    let p = proposed(&doc);
    let web = |m: &str| {
        let mut t = toml::Table::new();
        t.insert(
            "web".into(),
            toml::Value::Array(vec![toml::Value::String(m.into())]),
        );
        Some(t)
    };
    assert_eq!(
        p,
        BTreeMap::from([
            ("node1".to_string(), (a.to_string(), web("app/node2"))),
            ("node2".to_string(), (b.to_string(), web("app/node1"))),
        ]),
        "named after the first balancer's servers, with an override where the \
         other balancer's names point elsewhere:\n{doc}"
    );

    env.ok(&["discover", "--write"]);
    let v = env.json(&["status"]);
    let members = |i: usize| -> Vec<String> {
        v["nodes"][i]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["balancer"].as_str().unwrap(),
                    m["member"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(v["nodes"][0]["address"], a.to_string());
    assert_eq!(members(0), ["edge:node1", "web:node2"], "{v}");
    assert_eq!(members(1), ["edge:node2", "web:node1"], "{v}");
}

#[test]
fn discover_with_a_balancer_that_cannot_be_read_names_it_and_writes_nothing() {
    let env = Env::new(
        "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"/tmp/lbctl-no-such.sock\"\ntimeout = \"1s\"\n",
    );
    let before = std::fs::read(env.file("lbctl.toml")).unwrap();
    let (code, v) = env.json_code(&["discover", "--write"]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("edge"),
        "the message names the balancer: {v}"
    );
    assert_eq!(std::fs::read(env.file("lbctl.toml")).unwrap(), before);
}
