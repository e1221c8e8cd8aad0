//! `skiffd`: the composition root. It owns the node's membership in a cluster (data dir,
//! certificates, cluster port, session with the leader) and, on managers, the manager.
//!
//! A daemon starts outside any cluster and waits for `swarm init` or `swarm join` on its
//! local socket; with a saved state it rejoins its cluster by itself.

mod autolock;
pub mod engine;
mod host;
mod logs;
mod measured;
mod membership;
pub mod metrics;
mod page;
mod renewal;
mod server;
mod state;
mod swarm;

use std::path::PathBuf;
use std::sync::Arc;

use manager::raft::RaftSettings;
use manager::RunningManager;
use tokio::sync::Mutex;

pub use server::{serve_local_socket, Running};
pub use swarm::SwarmService;

use membership::Membership;
use state::DataDir;

/// Makes the data directory for root alone (0700), tightening what an older skiffd or an
/// operator left readable by others, and says what it changed. Call it before anything
/// else writes there.
pub fn secure_data_dir(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let changed = DataDir::new(path).secure().with_context(|| {
        format!(
            "cannot restrict the data directory {} to root",
            path.display()
        )
    })?;
    if !changed.is_empty() {
        tracing::warn!(
            data_dir = %path.display(),
            count = changed.len(),
            first = %changed[0].display(),
            "files in the data directory were readable or writable by other users; they are now root's alone"
        );
    }
    Ok(())
}

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// Overrides the reported hostname (several test hosts on one machine).
    pub hostname: Option<String>,
    /// The task runtime backend.
    pub runtime: String,
    /// Cluster port listen address when `swarm init`/`join` give none.
    pub listen_addr: String,
    /// Advertise address when `swarm init`/`join` give none.
    pub advertise_addr: Option<String>,
    /// Raft timing.
    pub raft: RaftSettings,
    /// Where the routing mesh runs; `None`: this node sets up no overlay networks or mesh
    /// (only where several nodes share one network namespace, as on loopback development
    /// clusters).
    pub data_path: Option<worker::net::datapath::MeshMode>,
    /// The subnets of the node-local bridges tasks join (with a data path).
    pub bridges: worker::net::bridge::BridgeSubnets,
    /// How this node reaches registries when it inspects an image's distribution
    /// (`--insecure-registry`).
    pub registries: agent_runtime::containerd::RegistryOptions,
}

/// The daemon's state, shared by its RPC handlers and background tasks.
pub struct Daemon {
    opts: DaemonOptions,
    data: DataDir,
    slot: Arc<RunningManager>,
    runtime: Arc<dyn agent_runtime::Runtime>,
    agent: logs::AgentSlot,
    /// Serialises init, join, leave and role changes.
    membership: Mutex<Option<Membership>>,
    /// Why resuming the saved membership failed, for `skiff swarm inspect`/`info`.
    error: std::sync::Mutex<Option<String>>,
    /// Under autolock, the key-encryption key the unlock key gave (in memory only).
    unlocked: std::sync::Mutex<Option<manager::raft::at_rest::KeyEncryptionKey>>,
    /// Serialises re-sealing the node's keys.
    keys: Mutex<()>,
}

impl Daemon {
    /// A daemon running tasks with `runtime`; call [`Daemon::resume`] to rejoin a saved
    /// cluster.
    pub fn new(opts: DaemonOptions, runtime: Arc<dyn agent_runtime::Runtime>) -> Arc<Self> {
        Arc::new(Self {
            data: DataDir::new(&opts.data_dir),
            opts,
            slot: Arc::new(RunningManager::default()),
            runtime,
            agent: Default::default(),
            membership: Mutex::new(None),
            error: std::sync::Mutex::new(None),
            unlocked: std::sync::Mutex::new(None),
            keys: Mutex::new(()),
        })
    }

    /// The manager slot every service reads.
    pub fn slot(&self) -> Arc<RunningManager> {
        self.slot.clone()
    }

    /// The agent slot the logs service reads.
    pub fn agent_slot(&self) -> logs::AgentSlot {
        self.agent.clone()
    }

    /// Rejoins the cluster saved in the data directory, if any.
    pub async fn resume(self: &Arc<Self>) {
        let saved = match self.data.load() {
            Ok(saved) => saved,
            Err(e) => return self.record_error(format!("{e:#}")),
        };
        let Some(state) = saved else {
            tracing::info!(
                "not part of a cluster; waiting for `skiff swarm init` or `skiff swarm join`"
            );
            return;
        };
        if self.data.is_locked()
            && self
                .unlocked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
        {
            self.slot.set_locked(true);
            tracing::warn!("this manager is locked (autolock): it waits for `skiff swarm unlock`");
            return;
        }
        let mut guard = self.membership.lock().await;
        match Membership::resume(self, state).await {
            Ok(m) => {
                tracing::info!(node = %m.state().node_id, manager = m.state().manager, "rejoined the cluster");
                *guard = Some(m);
            }
            Err(e) => self.record_error(format!("cannot rejoin the cluster: {e:#}")),
        }
    }

    fn record_error(&self, message: String) {
        tracing::error!("{message}");
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    /// Stops everything (the cluster state stays on disk).
    pub async fn shutdown(&self) {
        if let Some(m) = self.membership.lock().await.take() {
            m.stop(&self.slot).await;
        }
    }
}
