//! lbctl's usage errors: bad files, unknown keys and nodes are exit 2 with
//! a message naming what is wrong, and `--output json` prints one JSON
//! document even for errors.

use std::process::{Command, Output};

fn lbctl(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(args)
        .env("LBCTL_STATE_DIR", dir.join("state"))
        .env_remove("LBCTL_CONFIG")
        .current_dir(dir)
        .output()
        .expect("run lbctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn malformed_toml_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lbctl.toml"),
        "[nodes.node1]\naddress = \"127.0.0.1:1\"\nthis is not toml\n",
    )
    .unwrap();
    let out = lbctl(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("lbctl.toml") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"/x\"\nsocket_timeout = \"1s\"\n",
    )
    .unwrap();
    let out = lbctl(dir.path(), &["--config", inv.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("socket_timeout") && err.contains("inv.toml"),
        "{err}"
    );
}

#[test]
fn a_missing_inventory_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = lbctl(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read inventory lbctl.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_and_hostile_nodes_are_exit_2_and_json_errors_are_one_document() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lbctl.toml"),
        "[nodes.node1]\naddress = \"127.0.0.1:1\"\n[nodes.node2]\naddress = \"127.0.0.1:2\"\n",
    )
    .unwrap();
    let out = lbctl(dir.path(), &["drain", "node9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown node \"node9\"; the inventory has: node1, node2"),
        "{}",
        text(&out.stderr)
    );

    let out = lbctl(
        dir.path(),
        &["drain", "node1;show info", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["error"]["kind"], "unknown_node");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node1;show info")
    );
}

#[test]
fn global_options_stand_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.toml"),
        "[nodes.node1]\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    for args in [
        vec!["--config", "x.toml", "--output", "json", "status"],
        vec!["status", "--output", "json", "--config", "x.toml"],
    ] {
        let out = lbctl(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["nodes"][0]["node"], "node1");
        assert_eq!(v["nodes"][0]["members"], serde_json::json!([]));
    }
}

#[test]
fn bad_flags_are_exit_2_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let out = lbctl(dir.path(), &["drain", "node1", "--timeout", "5 minutes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid duration"),
        "{}",
        text(&out.stderr)
    );
    let out = lbctl(dir.path(), &["drain"]);
    assert_eq!(out.status.code(), Some(2));
    let out = lbctl(dir.path(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("lbctl"));
    let out = lbctl(dir.path(), &["--help"]);
    let help = text(&out.stdout);
    for word in [
        "status",
        "drain",
        "undrain",
        "recover",
        "Exit codes",
        "--output",
    ] {
        assert!(help.contains(word), "--help mentions {word}: {help}");
    }
}

#[test]
fn empty_env_vars_count_as_unset_and_an_empty_flag_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lbctl.toml"),
        "[nodes.node1]\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(args)
            .env("LBCTL_CONFIG", "")
            .env("LBCTL_STATE_DIR", "")
            .env("HOME", &home)
            .env_remove("XDG_STATE_HOME")
            .current_dir(dir.path())
            .output()
            .expect("run lbctl")
    };
    let out = run(&["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["node"], "node1");
    // The default, shared by every user of the machine.
    assert!(std::path::Path::new("/var/lib/lbctl/journal.jsonl").is_file());
    assert!(!home.join(".local/state/lbctl").exists());
    for flag in ["--config", "--state-dir"] {
        let out = run(&["status", flag, ""]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains("a value is required"),
            "{flag}: {}",
            text(&out.stderr)
        );
    }
}
