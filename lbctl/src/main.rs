//! `lbctl`: take nodes out of load-balancer rotation and put them back.

mod cli;
mod error;
mod progress;
mod render;

fn main() -> std::process::ExitCode {
    cli::main()
}
