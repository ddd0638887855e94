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
    DrainOptions, Error, Fleet, Inventory, Plan, Progress, RebalanceOptions, Rolling,
    RollingOptions, Strategy, UndrainOptions, parse_duration,
};

use crate::error::CliError;
use crate::progress::{ProgressLine, RollingDisplay};
use crate::render::{self, Output};

/// Take nodes out of load-balancer rotation and put them back, on every
/// balancer at once (HAProxy, Apache httpd, NGINX, NGINX Plus, Azure
/// Application Gateway, AWS ELBv2 target groups).
///
/// Exit codes: 0 done; 1 failed; 2 bad usage, bad configuration or unknown
/// node; 3 timed out waiting; 4 refused by a safety guard (nothing
/// changed); 5 partially applied, then rolled back.
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
    /// $XDG_STATE_HOME/lbctl or ~/.local/state/lbctl]
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
    /// How long to wait for another lbctl's lock [default: the inventory's
    /// lock_timeout, else 1m]
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    lock_timeout: Option<Duration>,
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
    /// Upgrade a cluster node by node from a plan: drain, hooks, health
    /// gate, undrain. Stops at the first failure, leaving that node out of
    /// rotation; --resume continues there
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
    },
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
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

fn fleet_with(args: &Args, progress: Option<Arc<dyn Progress>>) -> Result<Fleet, Error> {
    let path = given(args.config.as_ref()).unwrap_or(Path::new("lbctl.toml"));
    let inv = Inventory::load(path)?;
    let state_dir = given(args.state_dir.as_ref())
        .map_or_else(orchestrator::journal::default_state_dir, Path::to_path_buf);
    let mut b = Fleet::from_inventory(&inv, Some(&state_dir))?;
    if let Some(t) = args.lock_timeout {
        b = b.lock_timeout(t);
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
        let (tx, stop) = tokio::sync::watch::channel(false);
        let signals = on_signal(
            out.quiet,
            "the member out of rotation is put back and lowered weights are restored",
            move || {
                let _ = tx.send(true);
            },
        );
        let res = fleet(&args, &out)?.rebalance_until(&opts, stop).await;
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
            let report = fleet(&args, &out)?.drain(nodes, &opts).await?;
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
            let report = fleet(&args, &out)?.undrain(nodes, &opts).await?;
            render::change(&out, &report);
            Ok(())
        }
        Command::Rolling {
            plan,
            resume,
            restart,
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
            signals.abort();
            if let Some(d) = &display {
                d.done();
            }
            let report = res?;
            render::rolling(&out, &report);
            Ok(())
        }
        Command::Recover { dry_run } => {
            let report = fleet(&args, &out)?.recover(*dry_run).await?;
            render::recover(&out, &report);
            Ok(())
        }
    }
}

/// On the first SIGINT or SIGTERM, says what stopping means and calls
/// `stop`; abort the handle when the work is over.
fn on_signal(
    quiet: bool,
    what: &'static str,
    stop: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if !quiet {
            eprintln!("lbctl: stopping: {what}");
        }
        stop();
    })
}
