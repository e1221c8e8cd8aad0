//! The Raft state machine: the in-memory [`ObjectStore`] plus the last snapshot, kept in sled.
//!
//! The state itself is not written to disk on apply: a restarted manager loads its last
//! snapshot and openraft replays the log after it. That keeps apply cheap and the disk format
//! simple (one snapshot record).

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StoredMembership,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::types::{CommandResult, LogId, StorageError, TypeConfig};
use crate::store::{ApplyError, ObjectStore};

const SNAPSHOT_KEY: &[u8] = b"snapshot";
/// Watch events a slow subscriber may fall behind by before it must resynchronise.
const WATCH_BUFFER: usize = 4096;

/// A change the watch stream publishes, in commit order.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The changes one committed batch made.
    Changes {
        /// The batch's log index.
        index: u64,
        /// What changed, in order.
        events: Vec<proto::StoreEvent>,
    },
    /// The whole store was replaced (a snapshot was installed): re-read it.
    Reset {
        /// The index the store now reflects.
        index: u64,
    },
}

struct Shared {
    store: RwLock<ObjectStore>,
    applied: watch::Sender<u64>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

/// Read access to the replicated store and its watch stream, for every manager component.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
}

impl StoreHandle {
    /// The current state. Hold the guard briefly: apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ObjectStore> {
        self.shared.store.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current state and a receiver of every change after it, taken atomically.
    pub fn subscribe(&self) -> (ObjectStore, broadcast::Receiver<Arc<WatchEvent>>) {
        let store = self.read();
        (store.clone(), self.shared.events.subscribe())
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Waits until the entry at `index` has been applied here.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.shared.applied.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }
}

/// What is kept on disk for the last snapshot.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// Where the last snapshot lives on disk.
#[derive(Clone)]
struct StateMachineDisk {
    tree: sled::Tree,
}

impl StateMachineDisk {
    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let Some(bytes) = self
            .tree
            .get(SNAPSHOT_KEY)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let stored = bincode::deserialize(&bytes)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(Some(stored))
    }

    /// Blocking: writes and flushes the snapshot record.
    fn save(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let subject = ErrorSubject::Snapshot(Some(stored.meta.signature()));
        let bytes = bincode::serialize(stored)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.tree
            .insert(SNAPSHOT_KEY, bytes)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.tree
            .flush()
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))?;
        Ok(())
    }
}

/// The state machine openraft drives.
pub struct StateMachine {
    handle: StoreHandle,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    disk: StateMachineDisk,
}

fn io_error(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

impl StateMachine {
    /// Opens the state machine in `db`, restoring the last snapshot if there is one.
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        let disk = StateMachineDisk {
            tree: db
                .open_tree("state_machine")
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?,
        };
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let (applied, _) = watch::channel(0);
        let mut sm = StateMachine {
            handle: StoreHandle {
                shared: Arc::new(Shared {
                    store: RwLock::new(ObjectStore::default()),
                    applied,
                    events,
                }),
            },
            last_applied: None,
            membership: StoredMembership::default(),
            disk,
        };
        if let Some(stored) = sm.load_snapshot()? {
            sm.restore(&stored.meta, &stored.data)?;
        }
        Ok(sm)
    }

    /// Read access for the rest of the manager.
    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        self.disk.load()
    }

    /// Replaces the state with a snapshot's and tells watchers to re-read it.
    fn restore(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let snapshot = proto::StoreSnapshot::decode(data).map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        {
            let mut store = self
                .handle
                .shared
                .store
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *store = ObjectStore::from_snapshot(snapshot);
            let _ = self
                .handle
                .shared
                .events
                .send(Arc::new(WatchEvent::Reset { index }));
        }
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.handle.shared.applied.send_replace(index);
        Ok(())
    }
}

/// A consistent copy of the state taken when openraft asks for a snapshot; it is encoded and
/// saved while apply goes on.
pub struct SnapshotBuilder {
    store: ObjectStore,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    writer: StateMachineDisk,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self.store.to_snapshot().encode_to_vec();
        let last = self.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), rand::random::<u32>()),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let writer = self.writer.clone();
        let stored = tokio::task::spawn_blocking(move || writer.save(&stored).map(|()| stored))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))??;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, openraft::BasicNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let mut store = self
            .handle
            .shared
            .store
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(())
                }
                EntryPayload::Normal(command) => {
                    match proto::StoreBatch::decode(command.0.as_slice()) {
                        Err(e) => Err(ApplyError::Invalid(e.to_string())),
                        Ok(batch) => store.apply(&batch, index).map(|events| {
                            // Sent under the write lock, so subscribers see events in commit
                            // order and exactly after the state they copied.
                            let _ = self
                                .handle
                                .shared
                                .events
                                .send(Arc::new(WatchEvent::Changes { index, events }));
                        }),
                    }
                }
            };
            results.push(CommandResult(result));
        }
        drop(store);
        if let Some(last) = self.last_applied {
            self.handle.shared.applied.send_replace(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.handle.read().clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            writer: self.disk.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.restore(meta, &data)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.save(&stored))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.load_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
