//! nginx configuration: the upstream parser and the byte-preserving edit (`down`, `drain`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = lb_nginx::fuzzing::upstream_file(data);
    });
}
