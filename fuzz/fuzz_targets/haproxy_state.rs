//! HAProxy's `show servers state`, alone and joined with `show stat`.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = lb_haproxy::fuzzing::show_servers_state(data);
    });
}
