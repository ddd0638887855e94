//! Azure Application Gateway ARM JSON: the gateway, backend health, and the drain/restore plans.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = lb_azure::fuzzing::gateway(data);
    });
}
