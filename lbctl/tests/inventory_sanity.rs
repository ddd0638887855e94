//! The inventory is checked before anything reaches a balancer: two nodes
//! with one address, a HAProxy `socket` that is not a socket, names shown
//! escaped once.

mod common;

use common::{Env, haproxy_section, stderr};
use lb_lab::{Backend, Haproxy, Pools};

#[test]
fn two_nodes_with_the_same_address_after_resolving_names_are_an_error_naming_both() {
    let backends = Backend::start_many(2);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let port = backends[0].port();
    let inv = format!(
        "[nodes.web1]\naddress = \"127.0.0.1:{port}\"\n\n[nodes.web2]\naddress = \"localhost:{port}\"\n\n{}",
        haproxy_section("edge", &hap.admin_socket())
    );
    let env = Env::new(&inv);
    for args in [vec!["status"], vec!["drain", "web1"]] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "lbctl {args:?}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("[nodes.web1]") && err.contains("[nodes.web2]"),
            "names both: {err}"
        );
        assert!(err.contains(&format!("localhost:{port}")), "{err}");
    }
    assert_eq!(
        common::admin_bits(&hap, "node1"),
        0,
        "nothing reached the balancer"
    );
}

#[test]
fn a_haproxy_socket_path_that_is_a_regular_file_is_named_as_such() {
    let env = Env::new("[nodes.web1]\naddress = \"127.0.0.1:1\"\n\n");
    let file = env.file("haproxy.sock");
    std::fs::write(&file, "").unwrap();
    std::fs::write(
        env.file("lbctl.toml"),
        format!(
            "[nodes.web1]\naddress = \"127.0.0.1:1\"\n\n{}",
            haproxy_section("edge", &file)
        ),
    )
    .unwrap();
    let out = env.run(&["status"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not a socket") && err.contains("regular file"),
        "{err}"
    );
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(!err.contains("Connection refused"), "{err}");
}

#[test]
fn a_name_with_a_newline_is_shown_escaped_once() {
    let env = Env::new("[nodes.web1]\naddress = \"127.0.0.1:1\"\n");
    let out = env.run(&["drain", "web2\n"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(r#"unknown node "web2\n""#), "{err}");
    let (code, v) = env.json_code(&["drain", "web2\n"]);
    assert_eq!(code, 2);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(r#"unknown node "web2\n""#), "{msg}");

    // In the inventory: the section is named on one line, escaped once.
    std::fs::write(
        env.file("lbctl.toml"),
        "[nodes.\"web2\\n\"]\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(r#"[nodes.web2\n]"#), "{err}");
}
