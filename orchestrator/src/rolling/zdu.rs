//! A client for Confluence Data Center's zero-downtime-upgrade REST API
//! (`/rest/zdu/cluster/zdu/…`): the cluster state, start, one node's
//! state, approve, cancel.

use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::plan::ZduConfig;

/// The cluster as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ClusterState {
    /// `STABLE`, `READY_TO_UPGRADE`, `MIXED`, `READY_TO_RUN_UPGRADE_TASKS`,
    /// `RUNNING_UPGRADE_TASKS`, `UPGRADE_TASKS_FAILED`.
    pub state: String,
    /// Its nodes, where the answer lists them.
    #[serde(default)]
    pub nodes: Vec<NodeState>,
}

/// One node as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct NodeState {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its name, where given.
    #[serde(default)]
    pub name: Option<String>,
    /// `ACTIVE`, `STARTING`, `TERMINATING`, `OFFLINE`, `ERROR`.
    pub state: String,
}

impl ClusterState {
    /// The nodes in `ERROR`, as `id (name)`.
    pub fn nodes_in_error(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.state == "ERROR")
            .map(|n| match &n.name {
                Some(name) if *name != n.id => format!("{} ({name})", n.id),
                _ => n.id.clone(),
            })
            .collect()
    }
}

/// The API of one cluster.
pub(crate) struct Zdu {
    cfg: ZduConfig,
    client: reqwest::Client,
    password: Option<String>,
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
    /// [`Error::Config`] when the variable is unset.
    pub fn new(cfg: &ZduConfig) -> Result<Zdu> {
        let password = match &cfg.password_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "[zdu]: the environment variable {var} (password_env) is not set"
                ))
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| Error::Config(format!("[zdu]: cannot build an HTTP client: {e}")))?;
        Ok(Zdu {
            cfg: cfg.clone(),
            client,
            password,
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
        if let Some(u) = &self.cfg.username {
            req = req.basic_auth(u, self.password.as_deref());
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
    pub async fn state(&self) -> Result<ClusterState> {
        self.call(false, &self.cfg.state_path).await
    }

    /// `POST start`, then the state.
    pub async fn start(&self) -> Result<ClusterState> {
        self.send(true, &self.url(&self.cfg.start_path)).await?;
        self.state().await
    }

    /// `POST approve`, then the state.
    pub async fn approve(&self) -> Result<ClusterState> {
        self.send(true, &self.url(&self.cfg.approve_path)).await?;
        self.state().await
    }

    /// `POST cancel`, then the state.
    pub async fn cancel(&self) -> Result<ClusterState> {
        self.send(true, &self.url(&self.cfg.cancel_path)).await?;
        self.state().await
    }

    /// `GET nodes/{id}`.
    pub async fn node(&self, id: &str) -> Result<NodeState> {
        let path = self.cfg.node_path.replace("{id}", id);
        self.call(false, &path).await
    }

    /// The configuration's node-id template.
    pub fn node_id_template(&self) -> &str {
        &self.cfg.node_id
    }

    /// How long to wait for a cluster state, and how often to look.
    pub fn waits(&self) -> crate::wait::WaitOptions {
        crate::wait::WaitOptions {
            timeout: self.cfg.timeout,
            poll: self.cfg.interval,
        }
    }
}
