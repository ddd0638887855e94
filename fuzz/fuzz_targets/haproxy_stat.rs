//! HAProxy's `show stat` CSV, alone and joined with `show servers state`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = lb_haproxy::fuzzing::show_stat(data);
    });
}
