use std::io::Write;
use std::sync::{Arc, Mutex};

use lb_core::{AdminState, Balancer, MemberRef};
use lb_lab::PutFault;

use crate::common::{self, CLIENT, GW, RG, SECRET, SUB, TENANT, lab};

/// Where the captured log goes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole client-secret flow (token request, reads, writes, a failed
/// update, a refused secret) logged at TRACE level for every crate: the
/// secret appears in no log line, no error message and no `Debug`, and
/// neither does any bearer token. The token was asked for the endpoint's
/// scope, once (it is cached).
#[test]
fn the_client_secret_never_appears_in_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // Process-wide, so that every thread's events are captured (under
    // `cargo test` other tests' events land here too: they must not hold
    // the secret either). No other test sets a subscriber.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let lab = lab();
    let mut seen = Vec::new();
    rt.block_on(async {
        let m = MemberRef::new("app", "10.1.0.4");
        lab.lb.members().await.unwrap();
        lab.lb.set_state(&m, AdminState::Drain).await.unwrap();
        lab.lb.set_state(&m, AdminState::Ready).await.unwrap();
        lab.arm.push_put_fault(PutFault::Failed {
            code: "InternalServerError".into(),
            message: "An error occurred.".into(),
            keep: false,
        });
        seen.push(
            lab.lb
                .set_state(&m, AdminState::Drain)
                .await
                .unwrap_err()
                .to_string(),
        );
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "Wr0ng~Secret-Also-Never-Logged").unwrap();
        let bad = common::builder(&lab.arm, "agw", SUB, RG, GW, &wrong)
            .build()
            .unwrap();
        seen.push(format!("{bad:?}"));
        seen.push(bad.members().await.unwrap_err().to_string());
    });
    seen.push(format!("{:?}", lab.lb));
    seen.push(format!(
        "{:?}",
        common::builder(&lab.arm, "agw", SUB, RG, GW, &lab.secret_file)
    ));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("ARM answered"), "the capture works: {log}");
    assert!(log.contains("gateway update accepted"), "{log}");
    assert!(log.lines().count() > 20, "{log}");
    for text in seen.iter().chain([&log]) {
        for secret in [SECRET, "Wr0ng~Secret-Also-Never-Logged", "fake-arm-token-"] {
            assert!(!text.contains(secret), "{secret:?} leaked into: {text}");
        }
        // The form-encoded spelling of the secret too.
        assert!(!text.contains("Qx8%7Es3cr3t"), "{text}");
    }

    let tokens = lab.arm.token_requests();
    assert_eq!(tokens[0].tenant, TENANT);
    assert_eq!(tokens[0].client_id, CLIENT);
    assert_eq!(tokens[0].scope, format!("{}/.default", lab.arm.endpoint()));
    assert_eq!(
        tokens.iter().filter(|t| t.status == 200).count(),
        1,
        "one token for the whole run: {tokens:?}"
    );
}
