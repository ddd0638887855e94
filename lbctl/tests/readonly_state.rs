//! Read-only commands (`status`, every `--dry-run`, `history`) need no
//! writable state: a state directory on a read-only file system (a
//! read-only bind mount) or one that cannot be created.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, admin_bits, haproxy_section, stderr};
use lb_lab::{Backend, Haproxy, Pools};

/// `dir` bind-mounted read-only onto itself, unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    /// `None` where this process may not mount (not root, no
    /// CAP_SYS_ADMIN).
    fn mount(dir: &Path) -> Option<ReadOnly> {
        let ok = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let d = dir.to_str().unwrap();
        if !ok(&["--bind", d, d]) {
            return None;
        }
        let ro = ReadOnly(dir.to_owned());
        assert!(ok(&["-o", "remount,ro,bind", d]), "remount {d} read-only");
        assert!(
            std::fs::write(dir.join("probe"), "").is_err(),
            "{d} is read-only"
        );
        Some(ro)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn inventory(backends: &[Backend], hap: &Haproxy) -> String {
    let mut s = String::from("[defaults]\npoll_interval = \"50ms\"\n\n");
    for b in backends {
        let _ = writeln!(s, "[nodes.{}]\naddress = \"{}\"\n", b.id(), b.addr());
    }
    s + &haproxy_section("edge", &hap.admin_socket())
}

const PLAN: &str = r#"[[group]]
name = "app"
nodes = ["node1", "node2"]

[group.hooks]
upgrade = "true"
"#;

/// Every read-only command succeeds; a changing one fails naming the state
/// directory, and nothing changed on the balancer.
fn read_only_commands_work(env: &Env, hap: &Haproxy, state: &str) {
    let with = |args: &[&str]| {
        let mut a = vec!["--state-dir", state];
        a.extend(args);
        env.run(&a)
    };
    let plan = env.plan();
    for args in [
        vec!["status"],
        vec!["drain", "node2", "--dry-run"],
        vec!["undrain", "node2", "--dry-run"],
        vec!["recover", "--dry-run"],
        vec!["history"],
        vec!["rolling", "--plan", plan.to_str().unwrap(), "--dry-run"],
        vec!["rebalance", "--dry-run", "--window", "500ms"],
    ] {
        let out = with(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "lbctl {args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(admin_bits(hap, "node2"), 0, "nothing changed");

    let out = with(&["drain", "node2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(state), "names the state directory: {err}");
    assert_eq!(
        admin_bits(hap, "node2"),
        0,
        "a failed drain changes nothing"
    );
}

#[test]
fn a_state_directory_on_a_read_only_file_system_serves_status_dry_runs_and_history() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::with_plan(&inventory(&backends, &hap), PLAN);
    // A journal with a run in it, then the file system goes read-only.
    env.ok(&["drain", "node1", "--no-wait"]);
    env.ok(&["undrain", "node1", "--no-wait"]);
    let state = env.state();
    let Some(_ro) = ReadOnly::mount(&state) else {
        // Without the right to mount: a state directory that cannot be
        // created stands in (the same path through lbctl).
        read_only_commands_work(&env, &hap, "/proc/self/lbctl-state");
        return;
    };
    read_only_commands_work(&env, &hap, state.to_str().unwrap());
    let out = env.ok(&["history", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        2,
        "the journal is read: {v}"
    );
}

#[test]
fn a_state_directory_that_cannot_be_created_serves_status_dry_runs_and_history() {
    let backends = Backend::start_many(3);
    let hap = Haproxy::start(&Pools::new().pool("app", &backends));
    let env = Env::with_plan(&inventory(&backends, &hap), PLAN);
    read_only_commands_work(&env, &hap, "/proc/self/lbctl-state");
}
