//! Confluence Data Center's zero-downtime upgrade (ZDU): a client for its
//! REST API (`/rest/zdu/cluster/zdu/…`: the cluster state, start, one
//! node's state, approve, cancel), its states as enums, and the protocol a
//! rolling run follows with it:
//!
//! 1. before anything changes, [`Zdu::check_ready`]: no node in `ERROR`,
//!    the cluster `STABLE` or `READY_TO_UPGRADE` (or, on resume, already
//!    `MIXED` / `READY_TO_RUN_UPGRADE_TASKS`);
//! 2. the `zdu_start` step, [`Zdu::start`]: enable upgrade mode;
//! 3. each node's `zdu` gate waits for its [`NodeState::Active`];
//! 4. the `zdu_approve` step, [`Zdu::approve`]: wait for
//!    `READY_TO_RUN_UPGRADE_TASKS`, approve, wait for `STABLE`;
//! 5. a run abandoned before any node's upgrade began leaves upgrade mode
//!    again, [`Zdu::cancel_if_ready`] (never once the cluster is `MIXED`).

use std::fmt;

use serde::Deserialize;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::plan::ZduConfig;
use crate::wait::{WaitError, await_condition};

/// Writes the enums' names as the API does, and reads them back; a name
/// this lbctl does not know is kept verbatim in `Other`.
macro_rules! api_names {
    ($ty:ident { $($variant:ident => $name:literal,)* }) => {
        impl $ty {
            /// The name, as the API writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($ty::$variant => $name,)*
                    $ty::Other(s) => s,
                }
            }
        }

        impl From<String> for $ty {
            fn from(s: String) -> $ty {
                match s.as_str() {
                    $($name => $ty::$variant,)*
                    _ => $ty::Other(s),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The cluster's upgrade state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(crate) enum ClusterState {
    /// Every node runs one version; no upgrade under way.
    Stable,
    /// Upgrade mode is on; no node runs the new version yet.
    ReadyToUpgrade,
    /// Some nodes run the new version.
    Mixed,
    /// Every node runs the new version; the upgrade tasks wait for approval.
    ReadyToRunUpgradeTasks,
    /// Approved; the upgrade tasks run.
    RunningUpgradeTasks,
    /// The upgrade tasks failed.
    UpgradeTasksFailed,
    /// A state this lbctl does not know, as the API wrote it.
    Other(String),
}

api_names!(ClusterState {
    Stable => "STABLE",
    ReadyToUpgrade => "READY_TO_UPGRADE",
    Mixed => "MIXED",
    ReadyToRunUpgradeTasks => "READY_TO_RUN_UPGRADE_TASKS",
    RunningUpgradeTasks => "RUNNING_UPGRADE_TASKS",
    UpgradeTasksFailed => "UPGRADE_TASKS_FAILED",
});

/// One node's state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub(crate) enum NodeState {
    /// Serving.
    Active,
    /// Starting up.
    Starting,
    /// Shutting down.
    Terminating,
    /// Not in the cluster.
    Offline,
    /// Failed.
    Error,
    /// A state this lbctl does not know, as the API wrote it.
    Other(String),
}

api_names!(NodeState {
    Active => "ACTIVE",
    Starting => "STARTING",
    Terminating => "TERMINATING",
    Offline => "OFFLINE",
    Error => "ERROR",
});

/// The cluster as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Cluster {
    /// Its upgrade state.
    pub state: ClusterState,
    /// Its nodes, where the answer lists them.
    #[serde(default)]
    pub nodes: Vec<ClusterNode>,
}

/// One node as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ClusterNode {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its name, where given.
    #[serde(default)]
    pub name: Option<String>,
    /// Its state.
    pub state: NodeState,
}

impl Cluster {
    /// The nodes in `ERROR`, as `id (name)`.
    pub fn nodes_in_error(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.state == NodeState::Error)
            .map(|n| match &n.name {
                Some(name) if *name != n.id => format!("{} ({name})", n.id),
                _ => n.id.clone(),
            })
            .collect()
    }
}

/// Why a protocol step did not complete.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The run was stopped while it waited.
    Stopped,
    /// What went wrong.
    Failed(String),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Halt {
        Halt::Failed(e.to_string())
    }
}

/// The API of one cluster.
pub(crate) struct Zdu {
    cfg: ZduConfig,
    client: reqwest::Client,
    auth: Option<lb_http::BasicAuth>,
}

impl fmt::Debug for Zdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zdu")
            .field("url", &self.cfg.url)
            .field("username", &self.cfg.username)
            .finish_non_exhaustive()
    }
}

impl Zdu {
    /// A client for `cfg`, reading the password from its environment
    /// variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the variable is unset or empty, or the
    /// user name cannot be sent.
    pub fn new(cfg: &ZduConfig) -> Result<Zdu> {
        let config = |e: lb_http::Error| Error::Config(format!("[zdu]: {e}"));
        let password = cfg
            .password_env
            .clone()
            .map(|v| lb_http::SecretSource::Env(v).read("password"))
            .transpose()
            .map_err(config)?;
        let auth = cfg
            .username
            .as_ref()
            .map(|u| lb_http::BasicAuth::new(u, password))
            .transpose()
            .map_err(config)?;
        let client = lb_http::ClientOptions {
            timeout: Some(cfg.request_timeout),
            ..Default::default()
        }
        .build()
        .map_err(|e| Error::Config(format!("[zdu]: cannot build an HTTP client: {e}")))?;
        Ok(Zdu {
            cfg: cfg.clone(),
            client,
            auth,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.url)
    }

    async fn call<T: for<'de> Deserialize<'de>>(&self, post: bool, path: &str) -> Result<T> {
        let url = self.url(path);
        let body = self.send(post, &url).await?;
        serde_json::from_str(&body).map_err(|e| {
            Error::Failed(format!(
                "ZDU API: {} {url}: unexpected answer ({e}): {}",
                if post { "POST" } else { "GET" },
                body.trim().chars().take(300).collect::<String>()
            ))
        })
    }

    async fn send(&self, post: bool, url: &str) -> Result<String> {
        let method = if post { "POST" } else { "GET" };
        let mut req = if post {
            // Atlassian's XSRF check wants this on every POST.
            self.client
                .post(url)
                .header("X-Atlassian-Token", "no-check")
        } else {
            self.client.get(url)
        };
        req = req.header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = a.apply(req);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Failed(format!("ZDU API: {method} {url}: {e}")))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(Error::Failed(format!(
                "ZDU API: {method} {url}: {status}: {}",
                body.trim().chars().take(300).collect::<String>()
            )));
        }
        Ok(body)
    }

    /// `GET state`.
    pub async fn state(&self) -> Result<Cluster> {
        self.call(false, &self.cfg.state_path).await
    }

    /// `POST` to `path`, then the state.
    async fn post(&self, path: &str) -> Result<Cluster> {
        self.send(true, &self.url(path)).await?;
        self.state().await
    }

    /// `GET nodes/{id}`.
    pub async fn node(&self, id: &str) -> Result<ClusterNode> {
        let path = self.cfg.node_path.replace("{id}", id);
        self.call(false, &path).await
    }

    /// The configuration's node-id template.
    pub fn node_id_template(&self) -> &str {
        &self.cfg.node_id
    }

    /// How long to wait for a cluster state, and how often to look.
    fn waits(&self) -> crate::wait::WaitOptions {
        crate::wait::WaitOptions {
            timeout: self.cfg.timeout,
            poll: self.cfg.interval,
        }
    }

    /// Before anything changes: refuses a cluster with a node in `ERROR`,
    /// or one whose upgrade is under way unless the run `resume`s it.
    ///
    /// # Errors
    ///
    /// [`Error::Guard`] naming the state; the API's errors.
    pub async fn check_ready(&self, resume: bool) -> Result<()> {
        let st = self.state().await?;
        let bad = st.nodes_in_error();
        if !bad.is_empty() {
            return Err(Error::Guard(format!(
                "Confluence reports node(s) in ERROR: {}; fix them before an upgrade",
                bad.join(", ")
            )));
        }
        let under_way = matches!(
            st.state,
            ClusterState::Mixed | ClusterState::ReadyToRunUpgradeTasks
        );
        let ok = match st.state {
            ClusterState::Stable | ClusterState::ReadyToUpgrade => true,
            _ => under_way && resume,
        };
        if !ok {
            return Err(Error::Guard(format!(
                "Confluence's cluster is in {}{}; nothing was changed",
                st.state,
                if under_way {
                    ": an upgrade is already under way (continue it with --resume)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// The `zdu_start` step: enables upgrade mode on a `STABLE` cluster;
    /// one already upgrading (a resumed run) is left as it is.
    ///
    /// Returns the step's message (`cluster READY_TO_UPGRADE`).
    pub async fn start(&self) -> std::result::Result<String, Halt> {
        let st = self.state().await?;
        let st = if st.state == ClusterState::Stable {
            self.post(&self.cfg.start_path).await?
        } else {
            st
        };
        match st.state {
            ClusterState::ReadyToUpgrade
            | ClusterState::Mixed
            | ClusterState::ReadyToRunUpgradeTasks => Ok(format!("cluster {}", st.state)),
            other => Err(Halt::Failed(format!(
                "expected READY_TO_UPGRADE after start, the cluster is {other}"
            ))),
        }
    }

    /// The `zdu_approve` step: waits for `READY_TO_RUN_UPGRADE_TASKS`,
    /// approves, waits for `STABLE`.
    ///
    /// Returns the step's message.
    pub async fn approve(&self, stop: &watch::Receiver<bool>) -> std::result::Result<String, Halt> {
        self.wait_for(ClusterState::ReadyToRunUpgradeTasks, stop)
            .await?;
        self.post(&self.cfg.approve_path).await?;
        let st = self.wait_for(ClusterState::Stable, stop).await?;
        Ok(format!("upgrade tasks approved; cluster {}", st.state))
    }

    /// Leaves upgrade mode if the cluster is still `READY_TO_UPGRADE`
    /// (no node runs the new version): for a run abandoned before any
    /// node's upgrade began.
    ///
    /// Returns the step's message, or what failed.
    pub async fn cancel_if_ready(&self) -> std::result::Result<String, String> {
        match self.state().await {
            Ok(st) if st.state == ClusterState::ReadyToUpgrade => {
                match self.post(&self.cfg.cancel_path).await {
                    Ok(after) => Ok(format!("upgrade mode cancelled; cluster {}", after.state)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Ok(st) => Ok(format!("not cancelled: the cluster is {}", st.state)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits until the cluster is in `want`; a node in `ERROR` or failed
    /// upgrade tasks end the wait at once.
    async fn wait_for(
        &self,
        want: ClusterState,
        stop: &watch::Receiver<bool>,
    ) -> std::result::Result<Cluster, Halt> {
        let mut last = String::new();
        let mut stop = stop.clone();
        let r = tokio::select! {
            r = await_condition(
                self.waits(),
                || self.state(),
                |s: &Cluster| {
                    s.state == want
                        || s.state == ClusterState::UpgradeTasksFailed
                        || !s.nodes_in_error().is_empty()
                },
                |_| true,
                |s: &Cluster| last = s.state.to_string(),
            ) => r,
            _ = stop.wait_for(|s| *s) => return Err(Halt::Stopped),
        };
        match r {
            Ok(s) if s.state == want => Ok(s),
            Ok(s) if !s.nodes_in_error().is_empty() => Err(Halt::Failed(format!(
                "Confluence reports node(s) in ERROR: {}",
                s.nodes_in_error().join(", ")
            ))),
            Ok(s) => Err(Halt::Failed(format!("the cluster is {}", s.state))),
            Err(WaitError::TimedOut(_)) | Err(WaitError::Failed(_)) => Err(Halt::Failed(format!(
                "the cluster did not reach {want} (last: {})",
                if last.is_empty() { "no answer" } else { &last }
            ))),
        }
    }
}

/// What the `zdu_start` step does, in words (`--dry-run`).
pub(crate) fn describe_start(z: &ZduConfig) -> String {
    format!(
        "GET {0}{1}; if STABLE, POST {0}{2} and expect READY_TO_UPGRADE (refuse if a node is in ERROR)",
        z.url, z.state_path, z.start_path
    )
}

/// What the `zdu_approve` step does, in words (`--dry-run`).
pub(crate) fn describe_approve(z: &ZduConfig) -> String {
    format!(
        "wait for READY_TO_RUN_UPGRADE_TASKS at {0}{1}, POST {0}{2}, wait for STABLE",
        z.url, z.state_path, z.approve_path
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_and_print_as_the_api_writes_them() {
        let c: Cluster = serde_json::from_str(
            r#"{"state":"READY_TO_RUN_UPGRADE_TASKS","nodes":[
                {"id":"n1","name":"node1","state":"ERROR"},
                {"id":"n2","name":"n2","state":"ACTIVE"},
                {"id":"n3","state":"REBOOTING"}]}"#,
        )
        .unwrap();
        assert_eq!(c.state, ClusterState::ReadyToRunUpgradeTasks);
        assert_eq!(c.state.to_string(), "READY_TO_RUN_UPGRADE_TASKS");
        assert_eq!(c.nodes[1].state, NodeState::Active);
        assert_eq!(c.nodes[2].state, NodeState::Other("REBOOTING".into()));
        assert_eq!(c.nodes[2].state.to_string(), "REBOOTING");
        assert_eq!(c.nodes_in_error(), ["n1 (node1)"]);
        let odd: Cluster = serde_json::from_str(r#"{"state":"SOMETHING_NEW"}"#).unwrap();
        assert_eq!(odd.state.to_string(), "SOMETHING_NEW");
        assert!(odd.nodes.is_empty());
        for s in [
            "STABLE",
            "READY_TO_UPGRADE",
            "MIXED",
            "READY_TO_RUN_UPGRADE_TASKS",
            "RUNNING_UPGRADE_TASKS",
            "UPGRADE_TASKS_FAILED",
        ] {
            let st = ClusterState::from(s.to_string());
            assert!(!matches!(st, ClusterState::Other(_)), "{s}");
            assert_eq!(st.as_str(), s);
        }
        for s in ["ACTIVE", "STARTING", "TERMINATING", "OFFLINE", "ERROR"] {
            let st = NodeState::from(s.to_string());
            assert!(!matches!(st, NodeState::Other(_)), "{s}");
            assert_eq!(st.as_str(), s);
        }
    }
}
