//! SIGINT and SIGTERM: a changing command is told to stop, and says so.

/// A stop signal that turns true on the first SIGINT or SIGTERM (see
/// [`on_signal`]), and the handle to abort when the work is over.
pub fn stop_on_signal(
    quiet: bool,
    what: &'static str,
) -> (
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, stop) = tokio::sync::watch::channel(false);
    let signals = on_signal(quiet, what, move || {
        let _ = tx.send(true);
    });
    (stop, signals)
}

/// On the first SIGINT or SIGTERM, says what stopping means and calls
/// `stop`; abort the handle when the work is over.
pub fn on_signal(
    quiet: bool,
    what: &'static str,
    stop: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        let name = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        if !quiet {
            eprintln!("lbctl: stopping: {what} ({name})");
        }
        stop();
    })
}
