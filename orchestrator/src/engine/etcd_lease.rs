//! The etcd backend's lease: granted with a command's first lock or
//! claim, kept alive by a task of its own until dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;

/// The lease this process's lock and claims are bound to, kept alive by a
/// task; granted on the first lock or claim (a command that only reads
/// takes none).
pub(super) struct Lease {
    /// Its id.
    pub(super) id: i64,
    /// Why the lease was lost, once it is.
    pub(super) lost: Arc<Mutex<Option<String>>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Lease {
    /// Keeps lease `id` (of `ttl` seconds) alive through `client`, a
    /// keep-alive every third of its TTL; records why it was lost, once
    /// it is.
    pub(super) fn keep_alive(mut client: Client, id: i64, ttl: i64) -> Lease {
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
        // The keep-alive stream opens in its own task: nothing waits for
        // it (the lease is good for its TTL from the grant).
        let keeper = tokio::spawn(async move {
            let (mut keeper, mut stream) = match client.lease_keep_alive(id).await {
                Ok(ks) => ks,
                Err(e) => {
                    *flag.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("cannot keep the lease alive: {e}"));
                    return;
                }
            };
            loop {
                tokio::time::sleep(every).await;
                let alive = match keeper.keep_alive().await {
                    Ok(()) => match stream.message().await {
                        Ok(Some(r)) if r.ttl() > 0 => Ok(()),
                        Ok(Some(_)) => Err("the lease expired".to_string()),
                        Ok(None) => Err("the keep-alive stream ended".to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = alive {
                    *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        });
        Lease { id, lost, keeper }
    }
}
