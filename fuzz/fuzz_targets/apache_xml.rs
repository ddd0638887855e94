//! Apache httpd's balancer-manager XML (`?xml=1`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = lb_apache::fuzzing::manager_xml(data);
    });
}
