//! The running manager: its Raft member, the store handle its subsystems share, and its
//! background loops. This is where the manager is wired; nothing it wires imports it.

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tracing::Instrument as _;

use crate::dispatcher::Dispatcher;
use crate::events::EventLog;
use crate::raft::RaftNode;
use crate::store::Store;

/// One manager inside `skiffd`.
pub struct Manager {
    node_id: String,
    addr: String,
    raft: Arc<RaftNode>,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    events: Arc<EventLog>,
    stop: watch::Sender<bool>,
    loops: Mutex<Vec<JoinHandle<()>>>,
}

impl Manager {
    /// Starts the manager's loops around an open Raft member.
    pub fn start(node_id: String, addr: String, raft: RaftNode) -> Arc<Self> {
        let raft = Arc::new(raft);
        let store = Store::new(raft.local().clone(), raft.clone());
        let (stop, _) = watch::channel(false);
        // Spawned tasks do not inherit the caller's span: each loop gets its own, under
        // one naming this node, so every line a loop logs says where it comes from.
        let node = tracing::info_span!(parent: None, "node", id = %node_id);
        let manager = Arc::new(Self {
            node_id,
            addr,
            dispatcher: Arc::new(Dispatcher::new(store.clone())),
            events: Arc::default(),
            store,
            raft,
            stop,
            loops: Mutex::new(Vec::new()),
        });
        let loops = vec![
            tokio::spawn(
                crate::loops::snapshots(
                    manager.raft.clone(),
                    manager.store.clone(),
                    manager.stop.subscribe(),
                )
                .instrument(tracing::info_span!(parent: &node, "snapshots")),
            ),
            tokio::spawn(
                crate::loops::manager_reachability(
                    manager.raft.clone(),
                    manager.store.clone(),
                    manager.stop.subscribe(),
                )
                .instrument(tracing::info_span!(parent: &node, "manager_reachability")),
            ),
            tokio::spawn(
                crate::loops::raft_membership(
                    manager.raft.clone(),
                    manager.store.clone(),
                    manager.stop.subscribe(),
                )
                .instrument(tracing::info_span!(parent: &node, "raft_membership")),
            ),
            tokio::spawn(
                crate::orchestrator::run(manager.store.clone(), manager.stop.subscribe())
                    .instrument(tracing::info_span!(parent: &node, "orchestrator")),
            ),
            tokio::spawn(
                crate::allocator::run(manager.store.clone(), manager.stop.subscribe())
                    .instrument(tracing::info_span!(parent: &node, "allocator")),
            ),
            tokio::spawn(
                crate::dispatcher::status_writer(
                    manager.dispatcher.clone(),
                    manager.stop.subscribe(),
                )
                .instrument(tracing::info_span!(parent: &node, "status_writer")),
            ),
            tokio::spawn(
                crate::dispatcher::fanout(manager.dispatcher.clone(), manager.stop.subscribe())
                    .instrument(tracing::info_span!(parent: &node, "fanout")),
            ),
            tokio::spawn(
                crate::dispatcher::liveness(manager.dispatcher.clone(), manager.stop.subscribe())
                    .instrument(tracing::info_span!(parent: &node, "liveness")),
            ),
            tokio::spawn(
                crate::metrics::watch_leader(manager.raft.clone(), manager.stop.subscribe())
                    .instrument(tracing::info_span!(parent: &node, "watch_leader")),
            ),
            tokio::spawn(
                crate::events::run(
                    manager.store.clone(),
                    manager.events.clone(),
                    manager.stop.subscribe(),
                )
                .instrument(tracing::info_span!(parent: &node, "events")),
            ),
        ];
        *manager.loops.lock().unwrap_or_else(|e| e.into_inner()) = loops;
        manager
    }

    /// Stops the loops and Raft. In-flight RPCs fail with "not a manager" afterwards.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|e| e.into_inner()));
        for l in loops {
            l.abort();
        }
        self.raft.shutdown().await;
    }

    /// This manager's node ID.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This manager's cluster address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The Raft member: for membership changes and the Raft service. Subsystems use
    /// [`Manager::store`].
    pub fn raft(&self) -> &Arc<RaftNode> {
        &self.raft
    }

    /// The store handle every subsystem shares.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The cluster's events as this manager saw them committed.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// A channel to the node `node_id`'s cluster port, with this manager's certificate.
    pub fn node_channel(&self, addr: &str, node_id: &str) -> tonic::transport::Channel {
        self.raft.node_channel(addr, node_id)
    }
}

/// What every command but `swarm unlock` hears from a locked manager.
pub const LOCKED: &str = "this manager is locked (the cluster has autolock on and the node restarted): run `skiff swarm unlock` and give it the cluster's unlock key";

/// The manager running on this node, if any: `skiffd` sets it when this node becomes a
/// manager and clears it when it stops being one. Every service holds it, so one gRPC
/// server serves managers and workers alike.
#[derive(Default)]
pub struct RunningManager {
    inner: RwLock<Option<Arc<Manager>>>,
    /// The node is a manager of an autolocked cluster, restarted and not unlocked yet.
    locked: std::sync::atomic::AtomicBool,
}

impl RunningManager {
    /// The running manager, or the error a worker (or a locked manager) gives.
    pub fn get(&self) -> Result<Arc<Manager>, Status> {
        if let Some(m) = self.current() {
            return Ok(m);
        }
        Err(Status::failed_precondition(if self.is_locked() {
            LOCKED
        } else {
            "this node is not a manager; run the command on a manager or pass --host"
        }))
    }

    /// Says whether this node waits for `swarm unlock`.
    pub fn set_locked(&self, locked: bool) {
        self.locked
            .store(locked, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this node waits for `swarm unlock`.
    pub fn is_locked(&self) -> bool {
        self.locked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The running manager, if any.
    pub fn current(&self) -> Option<Arc<Manager>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs (or with `None`, removes) the manager; returns the previous one.
    pub fn set(&self, manager: Option<Arc<Manager>>) -> Option<Arc<Manager>> {
        std::mem::replace(
            &mut *self.inner.write().unwrap_or_else(|e| e.into_inner()),
            manager,
        )
    }
}
