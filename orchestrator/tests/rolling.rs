//! The rolling run's contract on in-memory balancers: the order of steps
//! around each node, batches and the guard, deploy nodes, unbalanced
//! groups, failures that leave the node out, resume, stop, dry run.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_core::{AdminState, Balancer, Error as LbError, InMemoryBalancer, MemberRef};
use orchestrator::journal::{Event, Run, Setting, StepStatus};
use orchestrator::plan::Plan;
use orchestrator::rebalance::PoolOutcome;
use orchestrator::rolling::{ProgressEvent, RunResult, Step, StepResult};
use orchestrator::{
    ExitCode, Fleet, Node, Rolling, RollingError, RollingOptions, RollingProgress, Settings,
};

fn lb() -> Arc<InMemoryBalancer> {
    Arc::new(
        InMemoryBalancer::new("edge")
            .with_member("app", "node1", "10.0.0.1:8080")
            .with_member("app", "node2", "10.0.0.2:8080")
            .with_member("app", "node3", "10.0.0.3:8080"),
    )
}

fn fleet(edge: &Arc<InMemoryBalancer>, state: &Path) -> Fleet {
    let mut b = Fleet::builder()
        .settings(Settings {
            poll_interval: Duration::from_millis(10),
            drain_timeout: Duration::from_secs(5),
            undrain_timeout: Duration::from_secs(5),
            ..Settings::default()
        })
        .state_dir(state)
        .balancer("memory", edge.clone() as Arc<dyn Balancer>);
    for i in 1..=3 {
        b = b.node(Node::new(&format!("node{i}"), &format!("10.0.0.{i}:8080")));
    }
    for (n, a) in [("db1", "10.0.1.1:5432"), ("db2", "10.0.1.2:5432")] {
        b = b.node(Node::new(n, a));
    }
    b.build().unwrap()
}

fn admin(edge: &InMemoryBalancer, m: &str) -> AdminState {
    edge.member(&MemberRef::new("app", m)).unwrap().admin
}

/// Records, as each step begins, the node's state on the balancer.
#[derive(Debug)]
struct Watch {
    edge: Arc<InMemoryBalancer>,
    seen: Mutex<Vec<String>>,
}

impl RollingProgress for Watch {
    fn step(&self, e: &ProgressEvent<'_>) {
        if e.finished.is_some() {
            return;
        }
        let state = if e.node.starts_with("node") {
            admin(&self.edge, e.node).to_string()
        } else {
            "-".into()
        };
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {} {state}", e.node, e.step));
    }
}

fn watch(edge: &Arc<InMemoryBalancer>) -> Arc<Watch> {
    Arc::new(Watch {
        edge: edge.clone(),
        seen: Mutex::new(Vec::new()),
    })
}

struct T {
    dir: tempfile::TempDir,
}

impl T {
    fn new() -> T {
        T {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
    fn plan(&self, text: &str) -> Plan {
        let path = self.dir.path().join("plan.toml");
        std::fs::write(
            &path,
            text.replace("DIR", &self.dir.path().display().to_string()),
        )
        .unwrap();
        Plan::load(&path).unwrap()
    }
    fn lines(&self, f: &str) -> Vec<String> {
        std::fs::read_to_string(self.p(f))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const BASIC: &str = r#"
finally = "echo finally >> DIR/trace"

[[group]]
name = "db"
nodes = ["db1"]
balanced = false
[group.hooks]
upgrade = "echo $LBCTL_GROUP $LBCTL_NODE $LBCTL_ADDRESS upgrade >> DIR/trace"

[[group]]
name = "app"
nodes = ["node1", "node2", "node3"]
[group.hooks]
before = "echo {group} {node} {address} before >> DIR/trace"
upgrade = "echo {node} upgrade >> DIR/trace"
after = "echo {node} after >> DIR/trace"
after_group = "echo {group} after_group >> DIR/trace"
[group.gate]
command = "test -n {node}"
interval = "10ms"
timeout = "2s"
"#;

/// Each step with its result, in order.
fn results(steps: &[orchestrator::rolling::StepReport]) -> Vec<(Step, StepResult)> {
    steps.iter().map(|s| (s.step, s.result)).collect()
}

#[tokio::test]
async fn each_node_is_out_of_rotation_for_its_hooks_and_gate_and_back_after() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(BASIC);
    let w = watch(&edge);
    let report = Rolling::new(&f, &plan)
        .progress(w.clone())
        .run()
        .await
        .unwrap();

    assert_eq!(
        t.lines("trace"),
        [
            "db db1 10.0.1.1:5432 upgrade",
            "app node1 10.0.0.1:8080 before",
            "node1 upgrade",
            "node1 after",
            "app node2 10.0.0.2:8080 before",
            "node2 upgrade",
            "node2 after",
            "app node3 10.0.0.3:8080 before",
            "node3 upgrade",
            "node3 after",
            "app after_group",
            "finally",
        ]
    );
    let seen = w.seen.lock().unwrap().clone();
    let node2: Vec<&String> = seen.iter().filter(|s| s.starts_with("node2 ")).collect();
    assert_eq!(
        node2,
        [
            "node2 drain ready",
            "node2 before maint",
            "node2 upgrade maint",
            "node2 after maint",
            "node2 gate maint",
            "node2 undrain maint",
        ],
        "drained (maint) for every hook and the gate: {seen:?}"
    );
    assert!(
        seen.contains(&"node3 drain ready".to_string()),
        "node2 was back before node3 left: {seen:?}"
    );
    for n in ["node1", "node2", "node3"] {
        assert_eq!(admin(&edge, n), AdminState::Ready);
    }
    assert_eq!(report.result, RunResult::Ok);
    assert_eq!((report.nodes_done, report.nodes_total), (4, 4));
    let db = &report.nodes[0];
    assert!(!db.balanced);
    assert_eq!(
        db.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        [Step::Upgrade],
        "no drain for an unbalanced node, no gate configured"
    );
    let n1 = &report.nodes[1];
    assert_eq!(
        n1.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        [
            Step::Drain,
            Step::Before,
            Step::Upgrade,
            Step::After,
            Step::Gate,
            Step::Undrain
        ]
    );
    assert!(
        n1.steps
            .iter()
            .all(|s| s.result == StepResult::Ok && s.ms.is_some())
    );
    assert_eq!(
        n1.steps[1].command.as_deref(),
        Some(format!("echo app node1 10.0.0.1:8080 before >> {}", t.p("trace")).as_str())
    );
    assert_eq!(n1.steps[1].exit_code, Some(0));
    assert!(n1.steps[0].waited_ms.is_some());
    let gate = n1.steps[4].gate.as_ref().unwrap();
    assert_eq!((gate.kind.as_str(), gate.passed), ("command", true));
    assert_eq!(
        report.steps.iter().map(|s| s.step).collect::<Vec<_>>(),
        [Step::AfterGroup, Step::Finally]
    );
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["nodes"][1]["steps"][0]["step"], "drain");
    assert!(v["timing"]["overhead_per_node_ms"].is_u64());
    let log = std::fs::read_to_string(report.hook_log.as_ref().unwrap()).unwrap();
    assert!(log.contains("[app/node2 before] $ echo app node2"), "{log}");
}

#[tokio::test]
async fn a_failed_hook_stops_the_run_leaves_the_node_out_and_resume_continues_there() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(
        r#"
[[group]]
name = "app"
nodes = ["node1", "node2", "node3"]
[group.hooks]
before = "echo {node} before >> DIR/trace"
upgrade = "echo {node} upgrade >> DIR/trace; for i in 1 2 3; do echo output $i; done; test -e DIR/fixed-{node} || { echo broken package >&2; exit 7; }"
"#,
    );
    std::fs::write(t.p("fixed-node1"), "").unwrap();
    let e = Rolling::new(&f, &plan).run().await.unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failed);
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    assert_eq!(r.result, RunResult::Failed);
    let fail = r.failure.as_ref().unwrap();
    assert_eq!(
        (fail.node.as_deref(), fail.step),
        (Some("node2"), Step::Upgrade)
    );
    assert_eq!(fail.output_tail.last().unwrap(), "broken package");
    assert!(fail.message.contains("exit 7"), "{}", fail.message);
    let text = e.to_string();
    assert!(
        text.contains("app/node2: failed at step upgrade")
            && text.contains("node2 is left out of rotation")
            && text.contains("output 3")
            && text.contains("--resume"),
        "{text}"
    );
    assert_eq!(admin(&edge, "node2"), AdminState::Maint, "left out");
    assert_eq!(admin(&edge, "node1"), AdminState::Ready);
    assert_eq!(admin(&edge, "node3"), AdminState::Ready, "never touched");
    assert_eq!(r.nodes[2].result, RunResult::Pending);
    assert_eq!(r.nodes_done, 1);

    // Without --resume, a second run refuses rather than starting over.
    let e = Rolling::new(&f, &plan).run().await.unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    assert!(
        e.to_string()
            .contains("stopped at app/node2 upgrade (failed)")
            && e.to_string().contains("--resume"),
        "{e}"
    );

    // The operator fixes node2 and resumes: the run goes on at upgrade.
    std::fs::write(t.p("fixed-node2"), "").unwrap();
    std::fs::write(t.p("fixed-node3"), "").unwrap();
    let opts = RollingOptions {
        resume: true,
        ..RollingOptions::default()
    };
    let planned = Rolling::new(&f, &plan)
        .options(RollingOptions {
            dry_run: true,
            ..opts.clone()
        })
        .run()
        .await
        .unwrap();
    let r = Rolling::new(&f, &plan)
        .options(opts.clone())
        .run()
        .await
        .unwrap();
    // The dry run of the resume showed what the resume then did.
    assert_eq!(planned.nodes[0].result, RunResult::Skipped);
    for i in 1..3 {
        let will: Vec<_> = results(&planned.nodes[i].steps)
            .into_iter()
            .map(|(s, res)| match res {
                StepResult::Planned => (s, StepResult::Ok),
                _ => (s, res),
            })
            .collect();
        assert_eq!(will, results(&r.nodes[i].steps), "{}", r.nodes[i].node);
    }
    assert_eq!(
        t.lines("trace"),
        [
            "node1 before",
            "node1 upgrade",
            "node2 before",
            "node2 upgrade",
            "node2 upgrade",
            "node3 before",
            "node3 upgrade"
        ],
        "node1 not again, node2's before not again"
    );
    assert!(r.resumes.is_some());
    assert_eq!(r.nodes[0].result, RunResult::Skipped);
    let n2 = results(&r.nodes[1].steps);
    assert_eq!(
        n2,
        [
            (Step::Drain, StepResult::Ok),
            (Step::Before, StepResult::Skipped),
            (Step::Upgrade, StepResult::Ok),
            (Step::Undrain, StepResult::Ok)
        ]
    );
    assert_eq!((r.nodes_done, r.nodes_total), (3, 3));
    for n in ["node1", "node2", "node3"] {
        assert_eq!(admin(&edge, n), AdminState::Ready);
    }
    let e = Rolling::new(&f, &plan)
        .options(opts)
        .run()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing to resume"), "{e}");
}

#[tokio::test]
async fn batches_are_drained_together_and_guarded_together() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(
        r#"
[[group]]
name = "app"
nodes = ["node1", "node2", "node3"]
batch = 2
[group.hooks]
upgrade = "echo {node} start >> DIR/trace; sleep 0.3; echo {node} end >> DIR/trace"
"#,
    );
    let w = watch(&edge);
    Rolling::new(&f, &plan)
        .progress(w.clone())
        .run()
        .await
        .unwrap();
    let trace = t.lines("trace");
    assert_eq!(
        &trace[..2].iter().filter(|l| l.ends_with("start")).count(),
        &2,
        "{trace:?}"
    );
    assert_eq!(trace[4..], ["node3 start", "node3 end"]);
    let seen = w.seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"node2 upgrade maint".to_string()),
        "{seen:?}"
    );

    // All three at once would leave the pool empty: the guard refuses and
    // nothing changes.
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(
        "[[group]]\nname = \"app\"\nnodes = [\"node1\", \"node2\", \"node3\"]\nbatch = 3\n[group.hooks]\nupgrade = \"true\"\n",
    );
    let e = Rolling::new(&f, &plan).run().await.unwrap_err();
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    let fail = r.failure.as_ref().unwrap();
    assert_eq!(fail.step, Step::Drain);
    assert!(
        fail.message.contains("refused by the guard"),
        "{}",
        fail.message
    );
    assert_eq!(edge.writes(), 0, "nothing changed");
}

#[tokio::test]
async fn the_first_node_runs_its_own_hook_alone_before_the_others() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(
        r#"
[[group]]
name = "app"
nodes = ["node1", "node2", "node3"]
batch = 2
[group.hooks]
upgrade = "echo {node} upgrade >> DIR/trace"
first_node = "echo {node} migrations >> DIR/trace"
"#,
    );
    let w = watch(&edge);
    let r = Rolling::new(&f, &plan)
        .progress(w.clone())
        .run()
        .await
        .unwrap();
    let trace = t.lines("trace");
    assert_eq!(trace[0], "node1 migrations");
    assert_eq!(trace.len(), 3);
    assert!(
        trace[1..].contains(&"node2 upgrade".to_string())
            && trace[1..].contains(&"node3 upgrade".to_string())
    );
    assert_eq!(r.nodes[0].steps[1].step, Step::FirstNode);
    let seen = w.seen.lock().unwrap().clone();
    let undrain1 = seen
        .iter()
        .position(|s| s == "node1 undrain maint")
        .unwrap();
    let drain2 = seen
        .iter()
        .position(|s| s.starts_with("node2 drain"))
        .unwrap();
    assert!(
        undrain1 < drain2,
        "the deploy node is back before the others leave: {seen:?}"
    );
}

#[tokio::test]
async fn a_gate_that_does_not_pass_fails_the_node_and_it_stays_out() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let plan = t.plan(&format!(
        "[[group]]\nname = \"app\"\nnodes = [\"node1\", \"node2\"]\n[group.gate]\ntcp = \"{closed}\"\ntimeout = \"300ms\"\ninterval = \"50ms\"\n"
    ));
    let e = Rolling::new(&f, &plan).run().await.unwrap_err();
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    let fail = r.failure.as_ref().unwrap();
    assert_eq!(
        (fail.node.as_deref(), fail.step),
        (Some("node1"), Step::Gate)
    );
    assert!(
        fail.message.contains("did not pass within 300ms"),
        "{}",
        fail.message
    );
    let gate = r.nodes[0].steps[1].gate.as_ref().unwrap();
    assert!(!gate.passed && gate.attempts >= 2, "{gate:?}");
    assert!(gate.last.to_lowercase().contains("refused"), "{gate:?}");
    assert_eq!(admin(&edge, "node1"), AdminState::Maint);
    assert_eq!(admin(&edge, "node2"), AdminState::Ready);
}

#[tokio::test]
async fn stopping_kills_the_hook_leaves_the_node_out_and_resume_finishes() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(
        r#"
[[group]]
name = "app"
nodes = ["node1", "node2"]
[group.hooks]
upgrade = "echo {node} >> DIR/trace; test -e DIR/quick || sleep 30"
"#,
    );
    let rolling = Rolling::new(&f, &plan);
    let stop = rolling.stop_handle();
    let trace = t.p("trace");
    let stopper = tokio::spawn(async move {
        while !Path::new(&trace).exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.stop();
    });
    let t0 = std::time::Instant::now();
    let e = rolling.run().await.unwrap_err();
    stopper.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the 30 s hook was killed"
    );
    assert_eq!(e.kind(), "interrupted");
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    assert_eq!(r.result, RunResult::Interrupted);
    let fail = r.failure.as_ref().unwrap();
    assert!(fail.interrupted);
    assert_eq!(
        (fail.node.as_deref(), fail.step),
        (Some("node1"), Step::Upgrade)
    );
    assert!(
        e.to_string().contains("interrupted during step upgrade"),
        "{e}"
    );
    assert_eq!(
        admin(&edge, "node1"),
        AdminState::Maint,
        "left out of rotation"
    );
    assert_eq!(admin(&edge, "node2"), AdminState::Ready);

    std::fs::write(t.p("quick"), "").unwrap();
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            resume: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.nodes_done, 2);
    assert_eq!(t.lines("trace"), ["node1", "node1", "node2"]);
    assert_eq!(admin(&edge, "node1"), AdminState::Ready);
}

#[tokio::test]
async fn a_dry_run_lists_every_step_and_command_and_changes_nothing() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(BASIC);
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            dry_run: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(edge.writes(), 0);
    assert!(!Path::new(&t.p("trace")).exists(), "no hook ran");
    assert_eq!(r.result, RunResult::Planned);
    let n2 = &r.nodes[2];
    assert_eq!(n2.members, ["edge app/node2"]);
    assert!(n2.steps.iter().all(|s| s.result == StepResult::Planned));
    assert_eq!(
        n2.steps[2].command.as_deref(),
        Some(format!("echo node2 upgrade >> {}", t.p("trace")).as_str())
    );
    assert_eq!(
        n2.steps[4].command.as_deref(),
        Some("command test -n node2")
    );
    assert_eq!(r.steps.len(), 2);
    assert!(
        f.journal().unwrap().records().await.unwrap().is_empty(),
        "nothing journaled"
    );
}

#[tokio::test]
async fn plans_that_do_not_fit_the_inventory_are_refused_naming_the_line() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let cases = [
        (
            "[[group]]\nname = \"app\"\nnodes = [\"node1\",\n  \"node9\"]\n",
            "plan.toml: line 4: group app: node \"node9\" is not in the inventory",
        ),
        (
            "[[group]]\nname = \"db\"\nnodes = [\"db1\"]\n",
            "line 3: group db: node db1 matches no member on any balancer",
        ),
        (
            "[[group]]\nname = \"app\"\nbalanced = false\nnodes = [\"node1\"]\n",
            "line 4: group app has balanced = false, but node node1 is in rotation on edge app/node1",
        ),
    ];
    for (text, want) in cases {
        let plan = t.plan(text);
        let e = Rolling::new(&f, &plan).run().await.unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::Usage, "{e}");
        assert!(e.to_string().contains(want), "{e}");
    }
    assert_eq!(edge.writes(), 0);
}

/// On the begin of the `rebalance` step, runs `f` once (the load a real
/// pool would carry by then, a balancer that breaks), and records the
/// plan steps as they begin.
struct AtRebalance<F: Fn() + Send + Sync> {
    f: F,
    began: Mutex<Vec<Step>>,
}

impl<F: Fn() + Send + Sync> std::fmt::Debug for AtRebalance<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRebalance")
    }
}

impl<F: Fn() + Send + Sync> RollingProgress for AtRebalance<F> {
    fn step(&self, e: &ProgressEvent<'_>) {
        if e.finished.is_some() || !e.node.is_empty() {
            return;
        }
        if e.step == Step::Rebalance {
            assert_eq!(e.nodes_done, e.nodes_total, "every node is back first");
            (self.f)();
        }
        self.began.lock().unwrap().push(e.step);
    }
}

fn at_rebalance<F: Fn() + Send + Sync>(f: F) -> Arc<AtRebalance<F>> {
    Arc::new(AtRebalance {
        f,
        began: Mutex::new(Vec::new()),
    })
}

/// The short windows keep the in-memory runs quick; the knobs are those
/// of `lbctl rebalance`.
const REBALANCED: &str = r#"
finally = "echo finally >> DIR/trace"
rebalance = { window = "50ms", max_drain = "100ms", duration = "600ms" }

[[group]]
name = "app"
nodes = ["node1", "node2", "node3"]
[group.hooks]
upgrade = "echo {node} upgrade >> DIR/trace"
"#;

fn skew(edge: &InMemoryBalancer, loads: [u64; 3]) {
    for (i, l) in loads.into_iter().enumerate() {
        edge.set_active(&MemberRef::new("app", format!("node{}", i + 1)), l);
    }
}

#[tokio::test]
async fn the_rebalance_runs_once_after_the_last_node_and_a_pool_left_skewed_is_a_warning() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(REBALANCED);
    // In memory, users never move: the pool stays skewed whatever is done.
    let e2 = edge.clone();
    let p = at_rebalance(move || skew(&e2, [9, 0, 0]));
    let r = Rolling::new(&f, &plan)
        .progress(p.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(r.result, RunResult::Ok, "a skewed pool does not fail it");
    assert_eq!(*p.began.lock().unwrap(), [Step::Rebalance, Step::Finally]);
    assert_eq!(
        results(&r.steps),
        [
            (Step::Rebalance, StepResult::Ok),
            (Step::Finally, StepResult::Ok)
        ]
    );
    assert_eq!(
        r.steps[0].message.as_deref(),
        Some("edge pool app: still skewed")
    );
    assert_eq!(t.lines("trace").last().unwrap(), "finally");
    let rb = r.rebalance.as_ref().unwrap();
    assert_eq!(rb.pools.len(), 1);
    let pool = &rb.pools[0];
    assert_eq!(pool.outcome, PoolOutcome::StillSkewed);
    assert_eq!(pool.before.as_ref().unwrap().skew, 3.0);
    assert_eq!(pool.actions[0].member, "node1", "the busiest was drained");
    assert!(
        r.warnings.iter().any(|w| w
            .starts_with("rebalance: edge pool app: still skewed (skew 3.00) after")
            && w.ends_with("the upgrade itself is done")),
        "{:?}",
        r.warnings
    );
    for n in ["node1", "node2", "node3"] {
        assert_eq!(admin(&edge, n), AdminState::Ready, "{n} back in rotation");
    }
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["rebalance"]["pools"][0]["outcome"], "still_skewed");
    assert_eq!(v["rebalance"]["strategy"], "drain");
    assert!(v["timing"]["rebalance_ms"].as_u64().unwrap() > 0);

    // Done: a resume has nothing left, and the step is journaled.
    let e = Rolling::new(&f, &plan)
        .options(RollingOptions {
            resume: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing to resume"), "{e}");
    let records = f.journal().unwrap().records().await.unwrap();
    assert!(records.iter().any(|x| matches!(
        &x.event,
        Event::Step { step, status, .. }
            if *step == Step::Rebalance && *status == StepStatus::Ok
    )));
}

#[tokio::test]
async fn a_balancer_failing_during_the_rebalance_fails_that_step_and_resume_runs_it_again() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(REBALANCED);
    let e2 = edge.clone();
    let p = at_rebalance(move || {
        skew(&e2, [9, 0, 0]);
        e2.fail_writes(Some(LbError::unavailable("edge", "connection refused")));
    });
    let e = Rolling::new(&f, &plan)
        .progress(p.clone())
        .run()
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failed);
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    let fail = r.failure.as_ref().unwrap();
    assert_eq!((fail.node.as_deref(), fail.step), (None, Step::Rebalance));
    assert!(
        fail.message.contains("connection refused") && fail.message.contains("lbctl recover"),
        "{}",
        fail.message
    );
    assert!(e.to_string().contains("failed at step rebalance"), "{e}");
    assert_eq!((r.nodes_done, r.nodes_total), (3, 3), "the upgrade is done");
    assert!(r.rebalance.is_none());
    assert!(
        !t.lines("trace").contains(&"finally".to_string()),
        "the run stopped before finally"
    );

    // The balancer answers again; the pool has evened out meanwhile.
    edge.fail_writes(None);
    skew(&edge, [3, 3, 3]);
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            resume: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert!(r.nodes.iter().all(|n| n.result == RunResult::Skipped));
    assert_eq!(
        results(&r.steps),
        [
            (Step::Rebalance, StepResult::Ok),
            (Step::Finally, StepResult::Ok)
        ],
        "the failed step runs again, then finally"
    );
    let pool = &r.rebalance.as_ref().unwrap().pools[0];
    assert_eq!(pool.outcome, PoolOutcome::Balanced);
    assert!(pool.actions.is_empty());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        t.lines("trace").iter().filter(|l| *l == "finally").count(),
        1
    );
}

#[tokio::test]
async fn a_weight_left_lowered_by_a_killed_rebalance_is_refused_until_recover_puts_it_back() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(REBALANCED);
    // A rebalance killed while it held node1's weight down (weight 1 → 0)
    // left an open run in the journal.
    let node1 = MemberRef::new("app", "node1");
    let killed = Run::start(f.journal().unwrap(), "rebalance").await.unwrap();
    let seq = killed
        .intent(
            Some("node1"),
            "edge",
            &node1,
            Setting::Weight { from: 1, to: 0 },
        )
        .await
        .unwrap();
    let res = edge.set_weight(&node1, 0).await;
    killed.done(seq, &res).await.unwrap();

    let e = Rolling::new(&f, &plan).run().await.unwrap_err();
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    let fail = r.failure.as_ref().unwrap();
    assert_eq!(fail.step, Step::Rebalance);
    assert!(
        fail.message
            .contains("an interrupted rebalance left edge app/node1 weight (was 1) changed")
            && fail.message.contains("lbctl recover"),
        "{}",
        fail.message
    );
    assert_eq!(
        edge.member(&node1).unwrap().weight,
        Some(0),
        "not taken for the original"
    );

    let rec = f.recover(false).await.unwrap();
    assert_eq!(rec.recovered.len(), 1);
    assert_eq!(edge.member(&node1).unwrap().weight, Some(1));
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            resume: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.steps[0].step, Step::Rebalance);
    assert_eq!(r.steps[0].result, StepResult::Ok);
    assert_eq!(
        r.rebalance.as_ref().unwrap().pools[0].outcome,
        PoolOutcome::Balanced
    );
}

#[tokio::test]
async fn a_dry_run_lists_the_rebalance_before_finally_and_changes_nothing() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(&REBALANCED.replace(
        "rebalance = { window = \"50ms\", max_drain = \"100ms\", duration = \"600ms\" }",
        "rebalance = { strategy = \"weight\", threshold = 1.3 }",
    ));
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            dry_run: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(
        results(&r.steps),
        [
            (Step::Rebalance, StepResult::Planned),
            (Step::Finally, StepResult::Planned)
        ]
    );
    assert_eq!(
        r.steps[0].command.as_deref(),
        Some(
            "rebalance all measurable pools, threshold 1.3, strategy weight \
             (min_load 1, window 2s, duration 2m per pool)"
        )
    );
    assert!(r.rebalance.is_none(), "nothing measured");
    assert_eq!(edge.writes(), 0);
}

#[tokio::test]
async fn stopped_during_the_rebalance_the_step_is_interrupted_and_resume_runs_it() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let plan = t.plan(REBALANCED);
    let rolling = Rolling::new(&f, &plan);
    let stop = rolling.stop_handle();
    let e2 = edge.clone();
    let p = at_rebalance(move || {
        skew(&e2, [9, 0, 0]);
        stop.stop();
    });
    let e = rolling.progress(p).run().await.unwrap_err();
    assert_eq!(e.kind(), "interrupted");
    let RollingError::Stopped(r) = &e else {
        panic!("{e}")
    };
    let fail = r.failure.as_ref().unwrap();
    assert!(fail.interrupted);
    assert_eq!((fail.node.as_deref(), fail.step), (None, Step::Rebalance));
    assert!(
        fail.message.contains("during the rebalance")
            && fail.message.contains("every member it had changed is back"),
        "{}",
        fail.message
    );
    assert!(!t.lines("trace").contains(&"finally".to_string()));

    skew(&edge, [3, 3, 3]);
    let r = Rolling::new(&f, &plan)
        .options(RollingOptions {
            resume: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(
        results(&r.steps),
        [
            (Step::Rebalance, StepResult::Ok),
            (Step::Finally, StepResult::Ok)
        ]
    );
    for n in ["node1", "node2", "node3"] {
        assert_eq!(admin(&edge, n), AdminState::Ready);
    }
}

#[tokio::test]
async fn a_node_stays_claimed_through_its_hooks_so_another_lbctl_waits() {
    let t = T::new();
    let edge = lb();
    let state = t.dir.path().join("state");
    let f = fleet(&edge, &state);
    let plan = t.plan(
        r#"
[[group]]
name = "app"
nodes = ["node1"]
[group.hooks]
upgrade = "touch DIR/upgrading; sleep 1"
"#,
    );
    // Another lbctl (its own fleet on the same state directory) while
    // node1 is upgraded: node1 is out of rotation but claimed.
    let other = Fleet::builder()
        .settings(Settings {
            lock_timeout: Duration::ZERO,
            ..*f.settings()
        })
        .state_dir(&state)
        .balancer("memory", edge.clone() as Arc<dyn Balancer>)
        .node(Node::new("node1", "10.0.0.1:8080"))
        .build()
        .unwrap();
    let meanwhile = async {
        while !t.dir.path().join("upgrading").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = other
            .undrain(&["node1"], &orchestrator::UndrainOptions::default())
            .await
            .unwrap_err();
        (e, admin(&edge, "node1"))
    };
    let rolling = Rolling::new(&f, &plan);
    let (run, (e, during)) = tokio::join!(rolling.run(), meanwhile);
    assert_eq!(e.exit_code(), ExitCode::Guard, "{e}");
    assert!(
        e.to_string().contains("node1 is claimed by") && e.to_string().contains("rolling --plan"),
        "{e}"
    );
    assert_eq!(during, AdminState::Maint, "node1 was out, being upgraded");
    assert_eq!(run.unwrap().result, RunResult::Ok);
    assert_eq!(admin(&edge, "node1"), AdminState::Ready);
}

#[tokio::test]
async fn a_preflight_gate_that_does_not_pass_refuses_the_run_with_exit_4_and_changes_nothing() {
    let t = T::new();
    let edge = lb();
    let f = fleet(&edge, &t.dir.path().join("state"));
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let plan = |addr: std::net::SocketAddr| {
        t.plan(&format!(
            r#"
preflight = ["true", {{ tcp = "{addr}", timeout = "300ms", interval = "50ms" }}]
[[group]]
name = "app"
nodes = ["node1"]
[group.hooks]
upgrade = "echo {{node}} >> DIR/trace"
"#
        ))
    };
    let refused = plan(closed_addr);
    let planned = Rolling::new(&f, &refused)
        .options(RollingOptions {
            dry_run: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    let pre: Vec<_> = planned
        .steps
        .iter()
        .filter(|s| s.step == Step::Preflight)
        .map(|s| s.command.clone().unwrap_or_default())
        .collect();
    assert_eq!(pre, ["true".to_string(), format!("tcp {closed_addr}")]);
    let e = Rolling::new(&f, &refused).run().await.unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Guard, "{e}");
    assert!(e.to_string().contains("preflight"), "{e}");
    assert!(t.lines("trace").is_empty(), "no hook ran");
    assert_eq!(edge.writes(), 0, "no balancer was touched");

    let passes = plan(open.local_addr().unwrap());
    let r = Rolling::new(&f, &passes)
        .options(RollingOptions {
            restart: true,
            ..RollingOptions::default()
        })
        .run()
        .await
        .unwrap();
    assert_eq!(r.result, RunResult::Ok);
    assert_eq!(t.lines("trace"), ["node1"]);
}
