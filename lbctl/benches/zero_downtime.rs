//! The zero-downtime proof, measured: per balancer, several runs of a
//! rolling upgrade of three application nodes (processes that the hooks
//! really stop and start again on the same port) under a keep-alive load,
//! once with `lbctl rolling` and once naively (the same hooks, no
//! balancer involved); for nginx also the same number of bare reloads
//! under the same load, which is what a reload costs by itself.
//!
//! ```text
//! cargo bench -p lbctl --bench zero_downtime            # 5 runs per balancer
//! cargo bench -p lbctl --bench zero_downtime -- --runs 10 --only haproxy,apache
//! ```
//!
//! The upgrade hook takes 4 s (an upgrade is never instant; it is also
//! longer than HAProxy's connect retries, 3 × 1 s, can paper over).
//! Overhead = lbctl's wall time − time in hooks − time waiting for real
//! connections to finish (both from lbctl's own JSON report): process
//! start, reading balancers, the drain/maint/ready writes, gates and the
//! waits for balancers to see a node healthy.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use lb_lab::{Apache, AppNodes, Haproxy, Load, LoadOptions, LoadReport, Nginx, PoolSpec, Pools};

const NODES: usize = 3;
const UPGRADE_SECS: u32 = 4;

enum Lb {
    Haproxy(Haproxy),
    Apache(Apache),
    Nginx(Nginx),
}

impl Lb {
    fn start(kind: &str, apps: &AppNodes) -> Lb {
        let mut p = PoolSpec::new("app");
        for id in apps.ids() {
            p = p.member(id, apps.addr(id));
        }
        let pools = Pools::new().with(p);
        match kind {
            "haproxy" => Lb::Haproxy(Haproxy::start(&pools)),
            "apache" => Lb::Apache(Apache::start(&pools)),
            "nginx" => Lb::Nginx(Nginx::start(&pools)),
            other => panic!("no balancer {other} in this benchmark"),
        }
    }

    fn section(&self) -> String {
        match self {
            Lb::Haproxy(h) => format!(
                "[balancers.edge]\nkind = \"haproxy\"\nsocket = \"{}\"\n",
                h.admin_socket().display()
            ),
            // The load's requests are short and stream at once: 5 s of
            // counters standing still is a stuck busy count, not a request.
            Lb::Apache(a) => format!(
                "[balancers.web]\nkind = \"apache\"\nurl = \"{}\"\nbusy_settle = \"5s\"\n",
                a.manager_url()
            ),
            Lb::Nginx(n) => format!(
                "[balancers.front]\nkind = \"nginx\"\nupstream_file = \"{}\"\nconf = \"{}\"\npid_file = \"{}\"\nprefix = \"{}\"\n",
                n.upstream_file().display(),
                n.conf().display(),
                n.pid_file().display(),
                n.prefix()
            ),
        }
    }

    fn url(&self) -> String {
        match self {
            Lb::Haproxy(h) => h.frontend_url("app"),
            Lb::Apache(a) => a.frontend_url("app"),
            Lb::Nginx(n) => n.frontend_url("app"),
        }
    }

    /// What lbctl's run costs the balancer in reloads (nginx: drain and
    /// undrain of each node), done bare.
    fn reloads(&self) -> Option<usize> {
        match self {
            Lb::Haproxy(_) | Lb::Apache(_) => None,
            Lb::Nginx(_) => Some(2 * NODES),
        }
    }

    fn reload(&self) {
        if let Lb::Nginx(n) = self {
            n.reload();
        }
    }
}

fn hook(apps: &AppNodes, action: &str) -> String {
    apps.hook(action).replace('\'', "")
}

fn plan(apps: &AppNodes, version: u32) -> String {
    let nodes: Vec<String> = apps.ids().iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[[group]]\nname = \"app\"\nnodes = [{}]\n\n[group.hooks]\nbefore = \"{}\"\nupgrade = \"{} && sleep {UPGRADE_SECS}\"\nafter = \"{}\"\n\n[group.gate]\nhttp = \"http://{{address}}/-/readiness\"\ninterval = \"100ms\"\ntimeout = \"30s\"\n",
        nodes.join(", "),
        hook(apps, "stop"),
        hook(apps, &format!("install --version {version}")),
        hook(apps, "start")
    )
}

fn load(url: &str) -> Load {
    let l = Load::start(url, LoadOptions::default());
    l.wait_for_ok(200);
    l
}

struct Run {
    lbctl: LoadReport,
    naive: LoadReport,
    bare: Option<LoadReport>,
    /// `None` when lbctl stopped (then `stopped` says why).
    overhead: Option<Duration>,
    stopped: Option<String>,
}

fn one_run(kind: &str, dir: &std::path::Path) -> Run {
    let apps = AppNodes::start_many(NODES);
    let lb = Lb::start(kind, &apps);
    let mut inv = String::from("[defaults]\ndrain_timeout = \"15s\"\nundrain_timeout = \"1m\"\n\n");
    inv.push_str(&lb.section());
    for id in apps.ids() {
        let _ = writeln!(inv, "\n[nodes.{id}]\naddress = \"{}\"", apps.addr(id));
    }
    std::fs::write(dir.join("lbctl.toml"), inv).unwrap();
    std::fs::write(dir.join("plan.toml"), plan(&apps, 2)).unwrap();

    // With lbctl.
    let traffic = load(&lb.url());
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(["rolling", "--plan"])
        .arg(dir.join("plan.toml"))
        .args(["--output", "json"])
        .env("LBCTL_CONFIG", dir.join("lbctl.toml"))
        .env("LBCTL_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    let wall = t0.elapsed();
    traffic.wait_for_ok(200);
    let lbctl = traffic.stop();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (overhead, stopped) = if out.status.success() {
        let ms = |k: &str| Duration::from_millis(v["timing"][k].as_u64().unwrap());
        (
            Some(wall.saturating_sub(ms("hooks_ms") + ms("drain_wait_ms"))),
            None,
        )
    } else {
        // Counted, not hidden: the run stopped (the table says how often);
        // put everything back for the naive phase.
        let why = v["error"]["message"]
            .as_str()
            .unwrap_or("?")
            .lines()
            .next()
            .unwrap_or("?")
            .to_string();
        let ids = apps.ids();
        let mut undrain = vec!["undrain"];
        undrain.extend(&ids);
        let _ = Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(&undrain)
            .env("LBCTL_CONFIG", dir.join("lbctl.toml"))
            .env("LBCTL_STATE_DIR", dir.join("state"))
            .output();
        for id in ids {
            let cmd = hook(&apps, "start").replace("{node}", id);
            let _ = Command::new("sh").args(["-c", &cmd]).output();
        }
        (None, Some(why))
    };

    // Naive: the same hooks, node after node, no balancer involved.
    let traffic = load(&lb.url());
    for id in apps.ids() {
        for action in ["stop", "install --version 3"] {
            let cmd = hook(&apps, action).replace("{node}", id);
            assert!(
                Command::new("sh")
                    .args(["-c", &cmd])
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
        }
        std::thread::sleep(Duration::from_secs(UPGRADE_SECS.into()));
        let cmd = hook(&apps, "start").replace("{node}", id);
        assert!(
            Command::new("sh")
                .args(["-c", &cmd])
                .output()
                .unwrap()
                .status
                .success()
        );
    }
    traffic.wait_for_ok(200);
    let naive = traffic.stop();

    // Bare reloads: what the balancer's own mechanics cost.
    let bare = lb.reloads().map(|n| {
        let traffic = load(&lb.url());
        for _ in 0..n {
            lb.reload();
            std::thread::sleep(Duration::from_millis(500));
        }
        traffic.wait_for_ok(200);
        traffic.stop()
    });
    Run {
        lbctl,
        naive,
        bare,
        overhead,
        stopped,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    let only = flag("--only").unwrap_or_else(|| "haproxy,apache,nginx".into());
    let mut table = String::from(
        "| balancer | runs | lbctl runs completed | requests with lbctl | failed with lbctl | of which reload closes | naive: requests / failed | bare reloads: requests / failed | overhead per run (mean) | per node (mean / max) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for kind in only.split(',') {
        let mut rs = Vec::new();
        for i in 1..=runs {
            let dir = tempfile::tempdir().unwrap();
            let r = one_run(kind, dir.path());
            eprintln!(
                "{kind} run {i}/{runs}: lbctl {} requests, {} failed ({} idle closes); naive {} requests, {} failed; {}{}",
                r.lbctl.requests,
                r.lbctl.failed,
                r.lbctl.idle_close,
                r.naive.requests,
                r.naive.failed,
                match (&r.overhead, &r.stopped) {
                    (Some(o), _) => format!("overhead {} ms", o.as_millis()),
                    (None, Some(why)) => format!("lbctl stopped: {why}"),
                    _ => String::new(),
                },
                r.bare.as_ref().map_or(String::new(), |b| format!(
                    "; bare reloads {} requests, {} failed",
                    b.requests, b.failed
                ))
            );
            for s in r.lbctl.samples.iter().chain(&r.naive.samples).take(3) {
                eprintln!("    {s}");
            }
            rs.push(r);
        }
        let sum = |f: &dyn Fn(&Run) -> u64| rs.iter().map(f).sum::<u64>();
        let overheads: Vec<u128> = rs
            .iter()
            .filter_map(|r| r.overhead.map(|o| o.as_millis()))
            .collect();
        let per_node: Vec<u128> = overheads.iter().map(|o| o / NODES as u128).collect();
        let done = overheads.len();
        let mean = |v: &[u128]| {
            if v.is_empty() {
                0
            } else {
                v.iter().sum::<u128>() / v.len() as u128
            }
        };
        let bare = if rs.iter().all(|r| r.bare.is_some()) {
            format!(
                "{} / {}",
                sum(&|r| r.bare.as_ref().map_or(0, |b| b.requests)),
                sum(&|r| r.bare.as_ref().map_or(0, |b| b.failed))
            )
        } else {
            "none (lbctl reloads nothing)".into()
        };
        let _ = writeln!(
            table,
            "| {kind} | {runs} | {done} | {} | {} | {} | {} / {} | {bare} | {} ms | {} / {} ms |",
            sum(&|r| r.lbctl.requests),
            sum(&|r| r.lbctl.failed),
            sum(&|r| r.lbctl.idle_close),
            sum(&|r| r.naive.requests),
            sum(&|r| r.naive.failed),
            mean(&overheads),
            mean(&per_node),
            per_node.iter().max().copied().unwrap_or(0)
        );
    }
    println!("\n{table}");
    println!(
        "{NODES} nodes, upgrade hook {UPGRADE_SECS} s, load: {} keep-alive connections; naive = the same hooks without lbctl.",
        LoadOptions::default().connections
    );
}
