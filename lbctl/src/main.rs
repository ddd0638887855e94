//! `lbctl`: take nodes out of load-balancer rotation and put them back.

mod cli;
mod discover;
mod error;
mod man;
mod progress;
mod render;
mod signals;
mod watch;

fn main() -> std::process::ExitCode {
    cli::main()
}
