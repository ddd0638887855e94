//! What the end-to-end tests share: a scratch dir with an inventory and a
//! state dir, the lbctl binary run in it, and inventory sections for the
//! lab's balancers.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::fmt::Write as _;

use lb_lab::{
    AppNodes, Backend, FakeZdu, Haproxy, Load, LoadOptions, LoadReport, MOTO_REGION, Moto, Nginx,
    PoolSpec, Pools,
};

/// A scratch dir with `lbctl.toml`, other files the test writes, and a
/// state dir; runs the lbctl binary there.
pub struct Env {
    dir: tempfile::TempDir,
    path: Option<String>,
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn new(inventory: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lbctl.toml"), inventory).unwrap();
        Env {
            dir,
            path: None,
            vars: Vec::new(),
        }
    }

    /// An inventory and a rolling plan (`plan.toml`).
    pub fn with_plan(inventory: &str, plan: &str) -> Env {
        let env = Env::new(inventory);
        std::fs::write(env.plan(), plan).unwrap();
        env
    }

    /// Puts `dir` first on lbctl's (and so the hooks') PATH.
    pub fn with_path(mut self, dir: &Path) -> Env {
        self.path = Some(format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ));
        self
    }

    /// Sets the fake AWS credentials moto takes ([`lb_lab::AWS_TEST_ENV`]).
    pub fn with_aws(mut self) -> Env {
        for (k, v) in lb_lab::AWS_TEST_ENV {
            self = self.with_var(k, v);
        }
        self
    }

    /// Sets an environment variable for lbctl.
    pub fn with_var(mut self, k: &str, v: &str) -> Env {
        self.vars.push((k.into(), v.into()));
        self
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state(&self) -> PathBuf {
        self.file("state")
    }

    pub fn plan(&self) -> PathBuf {
        self.file("plan.toml")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lbctl"));
        c.args(args)
            .env("LBCTL_CONFIG", self.file("lbctl.toml"))
            .env("LBCTL_STATE_DIR", self.state())
            .env_remove("RUST_LOG");
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run lbctl")
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "lbctl {args:?}: {}",
            stderr(&out)
        );
        out
    }

    /// Runs with `--output json`; returns the exit code and the document.
    pub fn json_code(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.run(&a);
        (out.status.code().unwrap_or(-1), json(&out))
    }

    /// Runs with `--output json`, asserts exit 0, returns the document.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let (code, v) = self.json_code(args);
        assert_eq!(code, 0, "lbctl {args:?}: {v}");
        v
    }

    pub fn rolling(&self, extra: &[&str]) -> Output {
        let plan = self.plan();
        let mut args = vec!["rolling", "--plan", plan.to_str().unwrap()];
        args.extend(extra);
        self.run(&args)
    }

    pub fn spawn_rolling(&self) -> Child {
        let plan = self.plan();
        self.cmd(&["rolling", "--plan", plan.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Keeps `busy` serving three 20 s requests through `hap`'s pool `app`,
/// then starts `lbctl drain NODE`, which waits for them (output dropped).
pub fn drain_while_busy(env: &Env, hap: &Haproxy, busy: &Backend, node: &str) -> Child {
    let url = format!("{}slow?ms=20000", hap.frontend_url("app"));
    for _ in 0..3 {
        let u = url.clone();
        std::thread::spawn(move || lb_lab::http::get(&u));
    }
    while busy.in_flight() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    env.cmd(&["drain", node])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Standard output as one JSON document.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

pub fn haproxy_section(name: &str, socket: &Path) -> String {
    format!(
        "[balancers.{name}]\nkind = \"haproxy\"\nsocket = \"{}\"\ntimeout = \"2s\"\n\n",
        socket.display()
    )
}

pub fn nginx_section(name: &str, n: &Nginx) -> String {
    format!(
        "[balancers.{name}]\nkind = \"nginx\"\nupstream_file = \"{}\"\nconf = \"{}\"\npid_file = \"{}\"\nprefix = \"{}\"\n\n",
        n.upstream_file().display(),
        n.conf().display(),
        n.pid_file().display(),
        n.prefix()
    )
}

/// An `aws-elbv2` balancer of `target_groups` on the lab's moto.
pub fn aws_section(name: &str, moto: &Moto, target_groups: &[&str]) -> String {
    format!(
        "[balancers.{name}]\nkind = \"aws-elbv2\"\ntarget_groups = {target_groups:?}\nregion = \"{MOTO_REGION}\"\nendpoint_url = \"{}\"\n\n",
        moto.endpoint()
    )
}

pub fn apache_section(name: &str, manager_url: &str) -> String {
    format!("[balancers.{name}]\nkind = \"apache\"\nurl = \"{manager_url}\"\n\n")
}

/// `srv_admin_state` of one server of pool `app` (1 = forced maint,
/// 8 = forced drain).
pub fn admin_bits(h: &Haproxy, server: &str) -> u32 {
    h.command("show servers state app")
        .lines()
        .find(|l| l.split(' ').nth(3) == Some(server))
        .and_then(|l| l.split(' ').nth(6).and_then(|b| b.parse().ok()))
        .unwrap_or_else(|| panic!("no {server} in show servers state"))
}

/// `show servers state app`: each server's name and the value of
/// `column`, found by the header's names.
pub fn servers_state(h: &Haproxy, column: &str) -> Vec<(String, String)> {
    let text = h.command("show servers state app");
    let header: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("# "))
        .expect("show servers state has a header")
        .trim_start_matches("# ")
        .split(' ')
        .collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("no {n} in {header:?}"))
    };
    let (pool, name, value) = (col("be_name"), col("srv_name"), col(column));
    text.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > value && f[pool] == "app")
        .map(|f| (f[name].to_string(), f[value].to_string()))
        .collect()
}

/// Every server of pool `app` with its current weight (`srv_uweight`).
pub fn weights(h: &Haproxy) -> Vec<(String, String)> {
    servers_state(h, "srv_uweight")
}

/// One pool `app` of the lab's application nodes `ids`.
pub fn pool(apps: &AppNodes, ids: &[&str]) -> Pools {
    let mut p = PoolSpec::new("app");
    for id in ids {
        p = p.member(id, apps.addr(id));
    }
    Pools::new().with(p)
}

/// An inventory with `balancer`'s section and every node of `apps`.
pub fn inventory(apps: &AppNodes, balancer: &str) -> String {
    let mut s = String::from(
        "[defaults]\npoll_interval = \"50ms\"\ndrain_timeout = \"30s\"\nundrain_timeout = \"20s\"\n\n",
    );
    s.push_str(balancer);
    for id in apps.ids() {
        let _ = writeln!(s, "\n[nodes.{id}]\naddress = \"{}\"", apps.addr(id));
    }
    s
}

/// Four keep-alive connections of load on `url`, once 100 requests passed.
pub fn load(url: &str) -> Load {
    let l = Load::start(
        url,
        LoadOptions {
            connections: 4,
            ..LoadOptions::default()
        },
    );
    l.wait_for_ok(100);
    l
}

/// The load lost no request, and ran.
pub fn assert_no_failure(r: &LoadReport, what: &str) {
    assert_eq!(r.failed, 0, "{what}: {r:#?}");
    assert!(r.ok > 200, "{what}: the load ran: {r:?}");
}

/// An example plan of the repository (`examples/NAME`).
pub fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name),
    )
    .unwrap()
}

/// The Confluence example against the fake ZDU API, with the lab's `ssh`.
pub fn confluence_env(apps: &AppNodes, hap: &Haproxy, z: &FakeZdu) -> Env {
    let plan = example("confluence-plan.toml").replace("https://confluence.example.com", &z.url());
    Env::with_plan(
        &inventory(apps, &haproxy_section("edge", &hap.admin_socket())),
        &plan,
    )
    .with_path(&apps.ssh_path())
    .with_var("CONFLUENCE_PASSWORD", "secret")
}

/// The Confluence example's nodes.
pub const CONFLUENCE: [&str; 3] = ["confluence1", "confluence2", "confluence3"];

/// The Confluence nodes as the fake ZDU API knows them.
pub fn zdu_nodes(apps: &AppNodes) -> Vec<(&'static str, std::net::SocketAddr)> {
    CONFLUENCE.iter().map(|n| (*n, apps.addr(n))).collect()
}

/// A tmux server of the test's own (its socket in a temp dir), killed on
/// drop; its session `watch` is the terminal `capture` reads.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub fn new(dir: &Path) -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.as_ref().is_ok_and(|o| o.status.success()),
            "tmux is needed for this test: apt-get install tmux ({found:?})"
        );
        Tmux {
            socket: dir.join("tmux.sock"),
        }
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "tmux {args:?}: {}", stderr(&out));
        text(&out.stdout)
    }

    /// Starts `lbctl watch ARGS` for `env` in session `watch`, 110×16;
    /// its exit code goes to `exit_file` when it ends.
    pub fn start_watch(&self, env: &Env, args: &str, exit_file: &Path) {
        self.ok(&[
            "new-session",
            "-d",
            "-s",
            "watch",
            "-x",
            "110",
            "-y",
            "16",
            "-e",
            &format!("LBCTL_CONFIG={}", env.file("lbctl.toml").display()),
            "-e",
            &format!("LBCTL_STATE_DIR={}", env.state().display()),
            "sh",
            "-c",
            &format!("\"$0\" watch {args}; echo $? > \"$1\""),
            env!("CARGO_BIN_EXE_lbctl"),
            exit_file.to_str().unwrap(),
        ]);
    }

    pub fn capture(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "watch"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
