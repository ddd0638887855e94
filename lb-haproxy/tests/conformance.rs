//! The lb-core conformance suite, against a real HAProxy, over both kinds
//! of runtime API socket.

mod common;

use common::{mref, on_tcp, on_unix};
use lb_core::conformance;
use lb_lab::{Backend, Pools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_the_unix_socket() {
    let backends = Backend::start_many(3);
    let lab = lb_lab::Haproxy::start(&Pools::new().pool("app", &backends));
    let lb = on_unix(&lab);
    conformance::run_all(
        &lb,
        &mref("app", "node2"),
        &[mref("app", "node1"), mref("app", "node3")],
    )
    .await
    .expect("the driver conforms over a unix socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_the_tcp_socket() {
    let backends = Backend::start_many(3);
    let pools = Pools::new()
        .pool("app", &backends)
        .pool("api", &backends[..2]);
    let lab = lb_lab::Haproxy::start(&pools);
    let lb = on_tcp(&lab);
    conformance::run_all(
        &lb,
        &mref("api", "node1"),
        &[
            mref("api", "node2"),
            mref("app", "node1"),
            mref("app", "node3"),
        ],
    )
    .await
    .expect("the driver conforms over a TCP socket");
}
