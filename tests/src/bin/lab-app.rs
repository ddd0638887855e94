//! `lab-app`: a lab application node as a process of its own, and the
//! commands that stop, start and upgrade it (see `lb_lab::app`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(lb_lab::app::main_from_args(&args));
}
