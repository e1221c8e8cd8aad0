//! The handle every subsystem gets: reads, writes with version checks, the watch stream and
//! leadership, over a [`Proposer`]. Subsystems depend on this and never on the Raft node or
//! on the manager that wires them (DESIGN.md section 4), so the retry rules below are
//! written once and tested without a cluster.

use std::sync::{Arc, RwLockReadGuard};

use proto::{StoreAction, StoreActionKind, StoreBatch};
use tokio::sync::broadcast;

use super::action::action;
use super::{delete, LocalStore, ObjectStore, Proposer, StoreError, StoredObject, WatchEvent};

/// The store as a subsystem sees it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    local: LocalStore,
    proposer: Arc<dyn Proposer>,
}

impl Store {
    /// A handle over this manager's copy of the store and the proposer that writes it.
    pub fn new(local: LocalStore, proposer: Arc<dyn Proposer>) -> Self {
        Self { local, proposer }
    }

    /// This manager's copy as it is, without a read barrier: what the leader's loops read
    /// (they write it themselves), and possibly behind the leader elsewhere. Hold the guard
    /// briefly: apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ObjectStore> {
        self.local.read()
    }

    /// Who the cluster port admits: kept beside the store, read without its lock.
    pub fn admissions(&self) -> RwLockReadGuard<'_, super::Admissions> {
        self.local.admissions()
    }

    /// Reads after a read barrier: never older than any acknowledged write. What API reads
    /// use.
    pub async fn read_latest<R>(&self, f: impl FnOnce(&ObjectStore) -> R) -> Result<R, StoreError> {
        self.read_barrier().await?;
        Ok(f(&self.read()))
    }

    /// Waits until this manager has applied everything committed anywhere before the call.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        self.proposer.read_barrier().await
    }

    /// Reads right after this manager's own write: [`Store::write`] returns only once the
    /// write is applied here, so no read barrier is needed to see it.
    pub fn read_own_write<R>(&self, f: impl FnOnce(&ObjectStore) -> R) -> R {
        f(&self.read())
    }

    /// A receiver of every change from now on and what `view` makes of the state they
    /// follow, taken atomically (see [`LocalStore::subscribe`]).
    pub fn subscribe<R>(
        &self,
        view: impl FnOnce(&ObjectStore) -> R,
    ) -> (R, broadcast::Receiver<Arc<WatchEvent>>) {
        self.local.subscribe(view)
    }

    /// Commits `actions` as one batch (forwarded to the leader if need be); returns its log
    /// index, the version of everything it wrote.
    pub async fn write(&self, actions: Vec<StoreAction>) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let written = self
            .proposer
            .propose(&StoreBatch {
                actions,
                ..Default::default()
            })
            .await;
        crate::metrics::METRICS
            .proposal_seconds
            .observe(started.elapsed().as_secs_f64());
        written
    }

    /// Commits `actions` as one batch only while this manager leads (see
    /// [`Proposer::propose_as_leader`]).
    pub async fn write_as_leader(&self, actions: Vec<StoreAction>) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let written = self
            .proposer
            .propose_as_leader(&StoreBatch {
                actions,
                ..Default::default()
            })
            .await;
        crate::metrics::METRICS
            .proposal_seconds
            .observe(started.elapsed().as_secs_f64());
        written
    }

    /// Changes the object `id` with `change` and commits it, reading it again and retrying
    /// if someone else wrote it in between. `None` if the object does not exist.
    pub async fn modify<T: StoredObject>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut T),
    ) -> Result<Option<T>, StoreError> {
        loop {
            let Some(mut object) = self.read().get::<T>(id).cloned() else {
                return Ok(None);
            };
            change(&mut object);
            object.meta_mut().updated_at = proto::now_ms();
            let action = action(StoreActionKind::Update, object.clone());
            match self.write(vec![action]).await {
                Ok(_) => return Ok(Some(object)),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes the object `pick` chooses after a read barrier, reading and choosing again if
    /// someone else wrote it in between. A removal the user asked for must not fail because
    /// the allocator or orchestrator touched the object meanwhile, while `pick`'s checks (a
    /// node is down, a network is unused) still hold for the version deleted.
    pub async fn remove<T: StoredObject, E: From<StoreError>>(
        &self,
        pick: impl Fn(&ObjectStore) -> Result<T, E>,
    ) -> Result<(), E> {
        self.remove_with(|store| pick(store).map(|target| (target, Vec::new())))
            .await
    }

    /// [`Store::remove`], with other actions `pick` derives from the same read committed
    /// in the same batch (a removed node goes into the cluster's deny-list with it).
    pub async fn remove_with<T: StoredObject, E: From<StoreError>>(
        &self,
        pick: impl Fn(&ObjectStore) -> Result<(T, Vec<StoreAction>), E>,
    ) -> Result<(), E> {
        loop {
            self.read_barrier().await?;
            let (target, also) = pick(&self.read())?;
            let mut actions = vec![delete(target)];
            actions.extend(also);
            match self.write(actions).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether this manager leads now.
    pub fn is_leader(&self) -> bool {
        self.proposer.is_leader()
    }

    /// The Raft term this manager leads in, if it leads now (see [`Proposer::leader_term`]).
    pub fn leader_term(&self) -> Option<u64> {
        self.proposer.leader_term()
    }

    /// Resolves once this manager leads; fails once replication stops.
    pub async fn until_leader(&self) -> Result<(), StoreError> {
        self.proposer.until_leader().await
    }

    /// The Raft ID of the leader this manager knows of.
    pub fn leader_raft_id(&self) -> Option<u64> {
        self.proposer.leader_raft_id()
    }

    /// The node ID of the leader this manager knows of, if its node object names it. Every
    /// node's session asks each second, so this looks among the managers only: a walk of
    /// every node made 10,000 sessions cost 10^8 steps a second (a quarter of the leader's
    /// CPU in the million-task bench).
    pub fn leader_node_id(&self) -> Option<String> {
        let leader = self.leader_raft_id()?;
        let store = self.read();
        let id = store
            .managers()
            .find(|n| {
                n.manager_status
                    .as_ref()
                    .is_some_and(|m| m.raft_id == leader)
            })
            .map(|n| n.id().to_owned());
        id
    }

    /// This manager's copy of the store.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }
}

#[cfg(test)]
mod tests;
