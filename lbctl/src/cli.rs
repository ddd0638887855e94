//! Parsing (clap), resolution into library calls, and exit codes.

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PathBufValueParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use orchestrator::{
    DrainOptions, Error, Fleet, HistoryFilter, Inventory, Plan, Progress, RebalanceOptions,
    RecoverOptions, Rolling, RollingOptions, Strategy, UndrainOptions, parse_duration,
};

use crate::error::CliError;
use crate::progress::{ProgressLine, RollingDisplay};
use crate::render::{self, Output};
use crate::signals::{on_signal, stop_on_signal};
use crate::{discover, man, watch};

/// Take nodes out of load-balancer rotation and put them back, on every
/// balancer at once (HAProxy, Apache httpd, NGINX, NGINX Plus, Azure
/// Application Gateway, AWS ELBv2 target groups).
///
/// Exit codes: 0 done; 1 failed, or stopped by SIGINT or SIGTERM (nothing
/// new begins, what is out of rotation stays out, the message says what to
/// run next); 2 bad usage, bad configuration or unknown node; 3 timed out
/// waiting; 4 refused by a safety guard, by another run's claim on a node,
/// or by a hook of a killed lbctl that still runs (nothing changed); 5
/// partially applied, then rolled back.
#[derive(Debug, Parser)]
#[command(
    name = "lbctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Args {
    /// The inventory [default: ./lbctl.toml]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "LBCTL_CONFIG",
        hide_env_values = true,
        value_parser = PathArg
    )]
    config: Option<PathBuf>,
    /// Where the journal and the lock live [default:
    /// /var/lib/lbctl, shared by the machine's users]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "LBCTL_STATE_DIR",
        hide_env_values = true,
        value_parser = PathArg
    )]
    state_dir: Option<PathBuf>,
    /// `json` prints exactly one JSON document on stdout
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// How long to wait for another lbctl's claim on a node (or the state
    /// directory's lock); 0: do not wait [default: the inventory's
    /// lock_timeout, else 1m]
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    lock_timeout: Option<Duration>,
    /// Why: kept with the run in the journal and with its claims, shown by
    /// `history` and to anyone the run makes wait
    #[arg(long, global = true, value_name = "TEXT", env = "LBCTL_REASON")]
    reason: Option<String>,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less output: errors only on stderr, no progress line
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Drain,
    Weight,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every node (or the named ones) on every balancer: admin state,
    /// health, active connections, weight
    Status {
        /// Nodes to show (default: all)
        nodes: Vec<String>,
    },
    /// Take nodes out of rotation everywhere: guard, drain, wait until
    /// their connections are gone, then maint
    Drain {
        /// Inventory node names
        #[arg(required = true)]
        nodes: Vec<String>,
        /// How long to wait for connections to end [default: the
        /// inventory's drain_timeout, else 5m]
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        timeout: Option<Duration>,
        /// Set drain and return at once (no wait, so no maint either)
        #[arg(long)]
        no_wait: bool,
        /// Stop after the wait: leave the members draining, not in maint
        #[arg(long)]
        soft: bool,
        /// Drain even when a pool would keep fewer than min_active members
        /// (the output says so)
        #[arg(long)]
        force: bool,
        /// Print what would change; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Put nodes back into rotation everywhere and wait until the
    /// balancers see them healthy
    Undrain {
        /// Inventory node names
        #[arg(required = true)]
        nodes: Vec<String>,
        /// How long to wait for health [default: the inventory's
        /// undrain_timeout, else 2m]
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        timeout: Option<Duration>,
        /// Set ready and return at once
        #[arg(long)]
        no_wait: bool,
        /// Print what would change; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Upgrade a cluster node by node from a plan: preflight checks, then
    /// per node drain, hooks, health gate, undrain. Stops at the first
    /// failure, leaving that node out of rotation, and at the plan's pause
    /// points (exit 0); --resume continues there
    Rolling {
        /// The plan (groups, hooks, gates; see the README)
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        /// Continue the last run of this plan at the step where it stopped
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Start from the beginning although the last run of this plan
        /// stopped half way
        #[arg(long)]
        restart: bool,
        /// With --resume: go on without NODE (or GROUP/NODE), a node the
        /// last run stopped on; it stays as it is (out of rotation), named
        /// in a warning. Repeatable
        #[arg(long, value_name = "NODE", requires = "resume")]
        skip: Vec<String>,
        /// With --resume: kill (SIGKILL) a hook of the stopped run that
        /// still runs although its lbctl was killed, instead of refusing
        /// (exit 4)
        #[arg(long, requires = "resume")]
        kill_stale_hooks: bool,
        /// Print the whole ordered plan (every node, step and hook
        /// command); change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Even out uneven load: measure each pool's per-member connections
    /// over a window; where max/mean is above the threshold, briefly take
    /// the busiest members out of rotation (drain) or lower their weights
    /// for a while (weight). Exit 0 balanced, 1 stopped by SIGINT or
    /// SIGTERM (everything put back first), 3 still skewed at the deadline,
    /// 4 the guard prevented action
    Rebalance {
        /// Only this pool (default: every pool of every balancer)
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
        /// Act when the busiest member's load over the mean is above this
        #[arg(long, default_value_t = 1.5)]
        threshold: f64,
        /// Act only when the busiest member carries more than this many
        /// connections
        #[arg(long, value_name = "N", default_value_t = 1.0)]
        min_load: f64,
        /// drain: the busiest member out of rotation (maint, which unlike
        /// drain also moves cookie-persistent users) in short measured
        /// pulses, one member at a time; weight: lower weights for a while,
        /// then restore them exactly
        #[arg(long, value_enum, default_value_t = StrategyArg::Drain)]
        strategy: StrategyArg,
        /// Each measurement averages a read every 100 ms (at least five)
        /// over this long
        #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "2s")]
        window: Duration,
        /// drain: the longest one member is out of rotation, all its
        /// pulses together
        #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "30s")]
        max_drain: Duration,
        /// Deadline per pool (weight: how long lowered weights are held at
        /// most)
        #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "2m")]
        duration: Duration,
        /// Measure and print what would be done; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Put back what an interrupted lbctl left out of rotation (from the
    /// journal)
    Recover {
        /// List what would be put back; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Kill (SIGKILL) a hook of an interrupted rolling run that still
        /// runs although its lbctl was killed, instead of refusing (exit 4)
        #[arg(long)]
        kill_stale_hooks: bool,
    },
    /// List runs from the journal: when, who (user@host), command, reason,
    /// result and the members each changed
    History {
        /// Only runs that changed this node or name it
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Only runs started this long ago or less (e.g. 24h)
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        since: Option<Duration>,
    },
    /// A live full-screen view of every member on every balancer; changes
    /// nothing
    ///
    /// Every member of every node (or of the named nodes) on every
    /// balancer: admin, health, active connections with their recent
    /// history, weight, read again every poll interval; rows that change
    /// are highlighted for 3 s. A header shows each run in progress from
    /// the journal (a rolling run's plan, group, node and step, the elapsed
    /// time, the nodes it claims). Keys: q (or Esc) quits, s switches the
    /// order between node and balancer. It only reads: no journal record,
    /// no change to any balancer. Without a
    /// terminal use --once
    Watch {
        /// Nodes to show (default: all)
        nodes: Vec<String>,
        /// Print one snapshot and exit (with --output json, exactly the
        /// `status` document); for scripts and pipes
        #[arg(long)]
        once: bool,
        /// The rows' order at start
        #[arg(long, value_enum, default_value_t = SortArg::Node)]
        sort: SortArg,
        /// How often to read the balancers [default: the inventory's
        /// poll_interval, else 100ms]
        #[arg(long, value_parser = duration, value_name = "DURATION")]
        interval: Option<Duration>,
    },
    /// Propose the inventory's [nodes.*] from what the balancers hold
    ///
    /// One node per distinct server address, named after the server
    /// (HAProxy) or route (Apache) where there is one, with `members`
    /// overrides only where names and addresses disagree across balancers,
    /// and comments for members it could not attribute. Reads the
    /// inventory's balancers (members of nodes already in the inventory
    /// are left out), or only those given with --haproxy, --apache and
    /// --nginx. Prints TOML (with --output json: {"balancers", "nodes",
    /// "unattributed", "written"})
    Discover {
        /// Read this HAProxy runtime API socket instead of the inventory's
        /// balancers (repeatable)
        #[arg(long, value_name = "SOCKET")]
        haproxy: Vec<PathBuf>,
        /// Read this Apache balancer-manager URL instead of the
        /// inventory's balancers (repeatable)
        #[arg(long, value_name = "URL")]
        apache: Vec<String>,
        /// Read this nginx upstream file instead of the inventory's
        /// balancers (repeatable)
        #[arg(long, value_name = "UPSTREAM_FILE")]
        nginx: Vec<PathBuf>,
        /// Append the proposal to the inventory file (checked first as a
        /// whole inventory; every byte already there stays as it was)
        #[arg(long)]
        write: bool,
    },
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the man pages (lbctl.1 and lbctl-COMMAND.1) into DIR
    #[command(hide = true)]
    Manpages {
        /// Where to write them
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SortArg {
    Node,
    Balancer,
}

/// The command line that continues this run: the same arguments, with
/// `--resume` instead of `--restart` or `--dry-run`.
fn resume_hint() -> String {
    let mut words: Vec<String> = std::iter::once("lbctl".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--restart" && a != "--dry-run" && a != "--resume"),
        )
        .collect();
    words.push("--resume".into());
    words.join(" ")
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// `--config` and `--state-dir`: a path from the command line or from the
/// environment (`LBCTL_CONFIG`, `LBCTL_STATE_DIR`). A variable set but
/// empty reads as the empty path, which [`given`] treats as unset, so the
/// default applies; an empty path on the command line is an error, as for
/// any path.
#[derive(Debug, Clone, Copy)]
struct PathArg;

impl TypedValueParser for PathArg {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<PathBuf, clap::Error> {
        PathBufValueParser::new().parse_ref(cmd, arg, value)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<PathBuf, clap::Error> {
        if source == ValueSource::EnvVariable && value.is_empty() {
            return Ok(PathBuf::new());
        }
        self.parse_ref(cmd, arg, value)
    }
}

/// A [`PathArg`] that was given: not absent, not an empty variable.
fn given(path: Option<&PathBuf>) -> Option<&Path> {
    path.map(PathBuf::as_path)
        .filter(|p| !p.as_os_str().is_empty())
}

/// Parses, runs, renders, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    let out = Output {
        json: args.output == Format::Json,
        quiet: args.quiet,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args, out)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            render::error(&out, &e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_logging(args: &Args) {
    let level = if args.quiet {
        "error"
    } else {
        match args.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn fleet(args: &Args, out: &Output) -> Result<Fleet, Error> {
    let progress = (!out.quiet && !out.json && std::io::stderr().is_terminal())
        .then(|| Arc::new(ProgressLine::new()) as Arc<dyn Progress>);
    fleet_with(args, progress)
}

/// The inventory's path: `--config`, `LBCTL_CONFIG`, else `./lbctl.toml`.
fn config_path(args: &Args) -> &Path {
    given(args.config.as_ref()).unwrap_or(Path::new("lbctl.toml"))
}

fn fleet_with(args: &Args, progress: Option<Arc<dyn Progress>>) -> Result<Fleet, Error> {
    let inv = Inventory::load(config_path(args))?;
    let state_dir = given(args.state_dir.as_ref())
        .map_or_else(orchestrator::journal::default_state_dir, Path::to_path_buf);
    let mut b = Fleet::from_inventory(&inv, Some(&state_dir))?;
    if let Some(t) = args.lock_timeout {
        b = b.lock_timeout(t);
    }
    if let Some(r) = &args.reason {
        b = b.reason(r);
    }
    if let Some(p) = progress {
        b = b.progress(p);
    }
    b.build()
}

async fn run(args: Args, out: Output) -> Result<u8, CliError> {
    if let Command::Rebalance {
        pool,
        threshold,
        min_load,
        strategy,
        window,
        max_drain,
        duration,
        dry_run,
    } = &args.command
    {
        let opts = RebalanceOptions {
            pool: pool.clone(),
            threshold: *threshold,
            min_load: *min_load,
            strategy: match strategy {
                StrategyArg::Drain => Strategy::Drain,
                StrategyArg::Weight => Strategy::Weight,
            },
            window: *window,
            max_drain: *max_drain,
            duration: *duration,
            dry_run: *dry_run,
            ..RebalanceOptions::default()
        };
        let (stop, signals) = stop_on_signal(
            out.quiet,
            "the member out of rotation is put back and lowered weights are restored",
        );
        let f = fleet(&args, &out)?;
        let res = f.rebalance_until(&opts, stop).await;
        f.close().await;
        signals.abort();
        let report = res?;
        render::rebalance(&out, &report);
        return Ok(report.exit_code() as u8);
    }
    run_other(args, out).await.map(|()| 0)
}

async fn run_other(args: Args, out: Output) -> Result<(), CliError> {
    match &args.command {
        Command::Rebalance { .. } => unreachable!("handled in run"),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "lbctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Manpages { dir } => man::write(Args::command(), dir).map_err(|e| {
            Error::State(format!("cannot write man pages in {}: {e}", dir.display())).into()
        }),
        Command::Watch {
            nodes, once: true, ..
        } => {
            let report = fleet_with(&args, None)?.status(nodes).await?;
            render::status(&out, &report);
            Ok(())
        }
        Command::Watch {
            nodes,
            sort,
            interval,
            ..
        } => {
            if out.json {
                return Err(Error::Usage(
                    "watch --output json prints one snapshot: add --once".into(),
                )
                .into());
            }
            if *interval == Some(Duration::ZERO) {
                return Err(Error::Usage("watch --interval must be more than 0".into()).into());
            }
            let sort = match sort {
                SortArg::Node => watch::Sort::Node,
                SortArg::Balancer => watch::Sort::Balancer,
            };
            let fleet = fleet_with(&args, None)?;
            let res = watch::run(&fleet, nodes, sort, *interval).await;
            fleet.close().await;
            res?;
            Ok(())
        }
        Command::Discover {
            haproxy,
            apache,
            nginx,
            write,
        } => {
            let sources = discover::Sources {
                haproxy: haproxy.clone(),
                apache: apache.clone(),
                nginx: nginx.clone(),
            };
            let d = discover::run(config_path(&args), &sources, *write).await?;
            render::discover(&out, &d);
            Ok(())
        }
        Command::Status { nodes } => {
            let report = fleet(&args, &out)?.status(nodes).await?;
            render::status(&out, &report);
            Ok(())
        }
        Command::Drain {
            nodes,
            timeout,
            no_wait,
            soft,
            force,
            dry_run,
        } => {
            let opts = DrainOptions {
                timeout: *timeout,
                no_wait: *no_wait,
                soft: *soft,
                force: *force,
                dry_run: *dry_run,
            };
            let (stop, signals) = stop_on_signal(
                out.quiet,
                "nothing new begins, the wait is abandoned, what is draining stays draining",
            );
            let f = fleet(&args, &out)?;
            let res = f.drain_until(nodes, &opts, stop).await;
            f.close().await;
            signals.abort();
            let report = res?;
            render::change(&out, &report);
            Ok(())
        }
        Command::Undrain {
            nodes,
            timeout,
            no_wait,
            dry_run,
        } => {
            let opts = UndrainOptions {
                timeout: *timeout,
                no_wait: *no_wait,
                dry_run: *dry_run,
            };
            let (stop, signals) = stop_on_signal(
                out.quiet,
                "nothing new begins, the wait for health is abandoned",
            );
            let f = fleet(&args, &out)?;
            let res = f.undrain_until(nodes, &opts, stop).await;
            f.close().await;
            signals.abort();
            let report = res?;
            render::change(&out, &report);
            Ok(())
        }
        Command::Rolling {
            plan,
            resume,
            restart,
            skip,
            kill_stale_hooks,
            dry_run,
        } => {
            let plan = Plan::load(plan)?;
            let display = (!out.quiet && !out.json)
                .then(|| Arc::new(RollingDisplay::new(std::io::stderr().is_terminal())));
            let fleet = fleet_with(
                &args,
                display
                    .clone()
                    .filter(|d| d.live())
                    .map(|d| d as Arc<dyn Progress>),
            )?;
            let opts = RollingOptions {
                resume: *resume,
                restart: *restart,
                dry_run: *dry_run,
                hook_log: None,
                resume_hint: Some(resume_hint()),
                skip: skip.clone(),
                kill_stale_hooks: *kill_stale_hooks,
            };
            let mut rolling = Rolling::new(&fleet, &plan).options(opts);
            if let Some(d) = &display {
                rolling = rolling.progress(d.clone());
            }
            let stop = rolling.stop_handle();
            let signals = on_signal(
                out.quiet,
                "nothing new begins, the running hook is stopped, \
                 the current node stays out of rotation",
                move || stop.stop(),
            );
            let res = rolling.run().await;
            fleet.close().await;
            signals.abort();
            if let Some(d) = &display {
                d.done();
            }
            let report = res?;
            render::rolling(&out, &report);
            Ok(())
        }
        Command::Recover {
            dry_run,
            kill_stale_hooks,
        } => {
            let opts = RecoverOptions {
                dry_run: *dry_run,
                kill_stale_hooks: *kill_stale_hooks,
            };
            let (stop, signals) = stop_on_signal(
                out.quiet,
                "nothing more is put back; what was put back stays back",
            );
            let f = fleet(&args, &out)?;
            let res = f.recover_until(&opts, stop).await;
            f.close().await;
            signals.abort();
            let report = res?;
            render::recover(&out, &report);
            Ok(())
        }
        Command::History { node, since } => {
            let filter = HistoryFilter {
                node: node.clone(),
                since: *since,
            };
            let f = fleet(&args, &out)?;
            let res = f.history(&filter).await;
            f.close().await;
            let report = res?;
            render::history(&out, &report);
            Ok(())
        }
    }
}
