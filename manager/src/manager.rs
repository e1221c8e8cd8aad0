//! The running manager: its Raft member, its background loops, and the consistent read and
//! write helpers every API handler uses.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use proto::{StoreAction, StoreActionKind, StoreBatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use crate::dispatcher::Dispatcher;
use crate::raft::{RaftNode, StoreHandle};
use crate::store::{ObjectStore, StoredObject};

/// Milliseconds since the Unix epoch: the time format of every stored object.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One manager inside `skiffd`.
pub struct Manager {
    node_id: String,
    addr: String,
    raft: Arc<RaftNode>,
    dispatcher: Arc<Dispatcher>,
    stop: watch::Sender<bool>,
    loops: Mutex<Vec<JoinHandle<()>>>,
}

impl Manager {
    /// Starts the manager's loops around an open Raft member.
    pub fn start(node_id: String, addr: String, raft: RaftNode) -> Arc<Self> {
        let raft = Arc::new(raft);
        let (stop, _) = watch::channel(false);
        let manager = Arc::new(Self {
            node_id,
            addr,
            dispatcher: Arc::new(Dispatcher::new(raft.clone())),
            raft,
            stop,
            loops: Mutex::new(Vec::new()),
        });
        let loops = vec![
            tokio::spawn(crate::loops::snapshots(
                manager.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::loops::manager_reachability(
                manager.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::loops::raft_membership(
                manager.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::orchestrator::run(
                manager.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::allocator::run(
                manager.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::dispatcher::status_writer(
                manager.dispatcher.clone(),
                manager.stop.subscribe(),
            )),
            tokio::spawn(crate::dispatcher::liveness(
                manager.dispatcher.clone(),
                manager.stop.subscribe(),
            )),
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

    /// The Raft member.
    pub fn raft(&self) -> &Arc<RaftNode> {
        &self.raft
    }

    /// The store (possibly behind the leader; use [`Manager::read`] for API reads).
    pub fn store(&self) -> &StoreHandle {
        self.raft.store()
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Reads the store after a read barrier: never older than any acknowledged write.
    pub async fn read<R>(&self, f: impl FnOnce(&ObjectStore) -> R) -> Result<R, Status> {
        self.raft.read_barrier().await?;
        Ok(f(&self.store().read()))
    }

    /// Reads the store right after this manager's own write: [`Manager::write`] returns only
    /// once the write is applied here, so no read barrier is needed to see it.
    pub fn read_own_write<R>(&self, f: impl FnOnce(&ObjectStore) -> R) -> R {
        f(&self.store().read())
    }

    /// Commits `actions` as one batch; returns the log index.
    pub async fn write(&self, actions: Vec<StoreAction>) -> Result<u64, Status> {
        Ok(self.raft.propose(&StoreBatch { actions }).await?)
    }

    /// Deletes the object `pick` chooses from a fresh read, choosing again if someone else
    /// wrote it in between (see [`RaftNode::remove`]).
    pub async fn remove<T: StoredObject>(
        &self,
        pick: impl Fn(&ObjectStore) -> Result<T, Status>,
    ) -> Result<(), Status> {
        self.raft.remove(pick).await
    }

    /// Changes the object `id` with `change`, retrying on conflicting writes; `None` if the
    /// object does not exist.
    pub async fn modify<T: StoredObject>(
        &self,
        id: &str,
        change: impl FnMut(&mut T),
    ) -> Result<Option<T>, Status> {
        Ok(self.raft.modify(id, change).await?)
    }

    /// The node ID of the current Raft leader, if known.
    pub fn leader_node_id(&self) -> Option<String> {
        let leader = self.raft.metrics().borrow().current_leader?;
        let store = self.store().read();
        let id = store
            .list::<proto::Node>()
            .find(|n| {
                n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.raft_id == leader)
            })
            .map(|n| n.id().to_owned());
        id
    }
}

/// An action creating `object`, stamped with the current time.
pub fn create<T: StoredObject>(mut object: T) -> StoreAction {
    let now = now_ms();
    let meta = object.meta_mut();
    meta.created_at = now;
    meta.updated_at = now;
    action(StoreActionKind::Create, object)
}

/// An action replacing `object`, whose meta names the version it was read at.
pub fn update<T: StoredObject>(mut object: T) -> StoreAction {
    object.meta_mut().updated_at = now_ms();
    action(StoreActionKind::Update, object)
}

/// An action deleting `object` if it is still at the version it was read at.
pub fn delete<T: StoredObject>(object: T) -> StoreAction {
    action(StoreActionKind::Delete, object)
}

fn action<T: StoredObject>(kind: StoreActionKind, object: T) -> StoreAction {
    StoreAction {
        kind: kind as i32,
        object: Some(object.wrap()),
    }
}

/// The slot `skiffd` fills when this node is a manager, and empties when it stops being one.
/// Every service holds the slot, so one gRPC server serves managers and workers alike.
#[derive(Default)]
pub struct ManagerSlot {
    inner: RwLock<Option<Arc<Manager>>>,
}

impl ManagerSlot {
    /// The running manager, or the error a worker gives.
    pub fn get(&self) -> Result<Arc<Manager>, Status> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                Status::failed_precondition(
                    "this node is not a manager; run the command on a manager or pass --host",
                )
            })
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
