//! The Raft log, vote and committed index in sled.
//!
//! Durability is the point: `append` reports completion and `save_vote` returns only after
//! sled has flushed, so an acknowledged write survives a crash of every manager. Flushes run
//! on the blocking pool, one at a time (concurrent sled flushes can deadlock), and are shared:
//! one flush covers every write made before it started, so a burst of appends waits for one
//! or two flushes instead of one each (group commit).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, Mutex};

use super::at_rest::{Class, Keyring, LOG_TREE, META_TREE};
use super::types::{LogId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// How much a purge removes or seals again in one sled batch. sled applies a batch under a
/// lock that every other write in the process waits for, Raft's appends among them, and
/// with them the Raft loop: in one batch, the ten thousand entries (2 GB) that the first
/// snapshot of a million tasks purges would hold a manager's Raft loop for seconds.
struct PerBatch {
    entries: usize,
    bytes: usize,
}

const PER_BATCH: PerBatch = PerBatch {
    entries: 64,
    bytes: 1 << 20,
};

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

/// The sled-backed log storage; cheap to clone (readers share it). Entries are sealed with
/// the store's current log key ([`super::at_rest`]), and sealed again with a fresh one at
/// every purge, so that the purged ones' key can be retired.
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    key: Arc<Keyring>,
    flusher: Arc<Flusher>,
    /// Appends waiting for a flush, in order; the queue's task starts with the first append
    /// (inside the runtime) and ends when the last clone of the store is dropped.
    pending: Arc<OnceLock<mpsc::UnboundedSender<LogFlushed<TypeConfig>>>>,
    /// One past the last purged index: reads start there, whether or not the entries below
    /// are gone from sled yet (they go in the background, see [`LogStore::purge`]).
    purged: Arc<AtomicU64>,
    /// Held while entries are written or sealed again, so that a purge's resealing never
    /// puts back an entry truncated meanwhile, nor misses one appended under the old key.
    writing: Arc<std::sync::Mutex<()>>,
    /// Purges run one after another.
    purging: Arc<Mutex<()>>,
    /// How far the last purge got, for tests to wait on.
    #[cfg(test)]
    purged_through: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Flushes sled, one flush at a time, sharing flushes between concurrent callers.
struct Flusher {
    db: sled::Db,
    /// Serialises flushes.
    lock: Mutex<()>,
    /// Callers are numbered as they ask for a flush (after their writes); `flushed` is the
    /// highest number a completed flush covers.
    requested: AtomicU64,
    flushed: AtomicU64,
}

impl Flusher {
    /// Makes everything written so far durable. Returns at once if a flush that started
    /// after this call has already completed, since it covered this caller's writes too.
    async fn flush(&self) -> Result<(), StorageError> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = self.lock.lock().await;
        if self.flushed.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        // Every request numbered up to here was made after its writes: this flush covers them.
        let covers = self.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.flushed.store(covers, Ordering::SeqCst);
        Ok(())
    }

    /// Acknowledges appends in order, each batch of waiting appends after one flush.
    async fn acknowledge(
        self: Arc<Self>,
        mut pending: mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>,
    ) {
        while let Some(first) = pending.recv().await {
            let mut batch = vec![first];
            while let Ok(next) = pending.try_recv() {
                batch.push(next);
            }
            let flushed = self.flush().await;
            for callback in batch {
                callback.log_io_completed(
                    flushed
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::other(e.to_string())),
                );
            }
        }
    }
}

impl LogStore {
    /// Opens (or creates) the log in `db`, its entries sealed with `key`.
    pub fn open(db: &sled::Db, key: Arc<Keyring>) -> Result<Self, StorageError> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))
        };
        Ok(Self {
            log: open(LOG_TREE)?,
            meta: open(META_TREE)?,
            key,
            flusher: Arc::new(Flusher {
                db: db.clone(),
                lock: Mutex::new(()),
                requested: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
            }),
            pending: Arc::default(),
            purged: Arc::default(),
            writing: Arc::default(),
            purging: Arc::default(),
            #[cfg(test)]
            purged_through: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
        .and_then(|store| {
            let purged: Option<LogId> = store.get_meta(LAST_PURGED)?;
            store
                .purged
                .store(purged.map_or(0, |p| p.index + 1), Ordering::SeqCst);
            Ok(store)
        })
    }

    /// Removes the purged entries, and seals the rest again with a fresh log key, whose
    /// predecessor is then retired: what sled keeps of the purged entries in its files no
    /// key opens any more (a removed secret is gone after the next snapshot and purge).
    /// Each step is durable before the next, so a crash leaves every entry under a key that
    /// is still held, and the purge point on disk before any entry below it goes.
    async fn remove_purged(&self, upto: u64) -> Result<(), StorageError> {
        let _one = self.purging.lock().await;
        self.flush().await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store.remove_purged_entries(upto)?;
            store.reseal()
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))??;
        self.flush().await?;
        self.key
            .retire(Class::Log)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e.to_string()))?;
        #[cfg(test)]
        self.purged_through.send_replace(upto);
        Ok(())
    }

    /// Blocking: removes the entries whose keys are in `range`, in one batch.
    fn remove_entries(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError> {
        let delete =
            |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e.to_string());
        let mut batch = sled::Batch::default();
        for key in self.log.range(range).keys() {
            batch.remove(key.map_err(|e| delete(&e))?);
        }
        self.log.apply_batch(batch).map_err(|e| delete(&e))
    }

    /// Blocking: removes the entries up to `upto`, oldest first, [`PER_BATCH`] at a time.
    /// Oldest first, so that what is left at any point is still a log without a gap.
    fn remove_purged_entries(&self, upto: u64) -> Result<(), StorageError> {
        let delete =
            |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e.to_string());
        loop {
            let mut batch = sled::Batch::default();
            let mut any = false;
            for key in self
                .log
                .range(..=upto.to_be_bytes())
                .keys()
                .take(PER_BATCH.entries)
            {
                batch.remove(key.map_err(|e| delete(&e))?);
                any = true;
            }
            if !any {
                return Ok(());
            }
            self.log.apply_batch(batch).map_err(|e| delete(&e))?;
        }
    }

    /// Blocking: seals the entries left with a fresh log key, [`PER_BATCH`] at a time, each
    /// batch read and written back under `writing`. Entries appended after the rotation are
    /// sealed with the new key already, so the walk ends at the last entry before it.
    fn reseal(&self) -> Result<(), StorageError> {
        use std::ops::Bound;
        let read = |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Read, e.to_string());
        let write =
            |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Write, e.to_string());
        let last = {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            self.key.rotate(Class::Log).map_err(|e| write(&e))?;
            match self.log.last().map_err(|e| read(&e))? {
                Some((last, _)) => last,
                None => return Ok(()),
            }
        };
        let mut from = Bound::Unbounded;
        loop {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            let mut batch = sled::Batch::default();
            let (mut entries, mut bytes) = (0, 0);
            for item in self
                .log
                .range((from.clone(), Bound::Included(last.clone())))
            {
                let (index, sealed) = item.map_err(|e| read(&e))?;
                let plain = self.key.open(&sealed).map_err(|e| read(&e))?;
                batch.insert(
                    index.clone(),
                    self.key.seal(Class::Log, &plain).map_err(|e| write(&e))?,
                );
                from = Bound::Excluded(index);
                entries += 1;
                bytes += sealed.len();
                if entries == PER_BATCH.entries || bytes >= PER_BATCH.bytes {
                    break;
                }
            }
            if entries == 0 {
                return Ok(());
            }
            self.log.apply_batch(batch).map_err(|e| write(&e))?;
        }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let bytes = self
            .meta
            .get(key)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        bytes
            .map(|b| bincode::deserialize(&b))
            .transpose()
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = bincode::serialize(value)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        Ok(())
    }

    /// Makes everything written so far durable.
    async fn flush(&self) -> Result<(), StorageError> {
        self.flusher.flush().await
    }

    fn decode(&self, sealed: &[u8]) -> Result<Entry, StorageError> {
        let read = |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Read, e.to_string());
        let bytes = self.key.open(sealed).map_err(|e| read(&e))?;
        bincode::deserialize(&bytes).map_err(|e| read(&e))
    }

    fn encode(&self, entry: &Entry) -> Result<Vec<u8>, StorageError> {
        let write =
            |e: &dyn ToString| io_error(ErrorSubject::Logs, ErrorVerb::Write, e.to_string());
        let bytes = bincode::serialize(entry).map_err(|e| write(&e))?;
        self.key.seal(Class::Log, &bytes).map_err(|e| write(&e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self
            .log
            .last()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        last.map(|(_, v)| self.decode(&v).map(|e| e.log_id))
            .transpose()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(self.purged.load(Ordering::SeqCst));
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (key, value) =
                item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index =
                u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                    io_error(ErrorSubject::Logs, ErrorVerb::Read, "malformed log key")
                })?);
            if !range.contains(&index) {
                break;
            }
            out.push(self.decode(&value)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: losing it only means re-applying from the snapshot, which
        // openraft does safely once the leader tells the node the commit index again.
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            let mut batch = sled::Batch::default();
            for entry in entries {
                batch.insert(&entry.log_id.index.to_be_bytes(), self.encode(&entry)?);
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        }
        // The entries are readable now; they are acknowledged once on disk. Flushing off the
        // Raft loop lets it replicate (and batch the next writes) meanwhile. Flushes are
        // serialised and each covers everything written before it, so acknowledgements
        // never get ahead of the disk; a burst of appends shares its flushes.
        let pending = self.pending.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(self.flusher.clone().acknowledge(rx));
            tx
        });
        if let Err(mpsc::error::SendError(callback)) = pending.send(callback) {
            // The queue's task is gone (the runtime is shutting down): flush here.
            let flushed = self.flush().await;
            callback.log_io_completed(flushed.map_err(|e| std::io::Error::other(e.to_string())));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            self.remove_entries(log_id.index.to_be_bytes()..)?;
        }
        self.flush().await
    }

    /// Records the purge point and returns; the entries go in the background
    /// ([`LogStore::remove_purged`]). openraft waits for this call in its core loop, so the
    /// heartbeats wait too: after the first snapshot of a million tasks, removing ten
    /// thousand large entries and flushing sled twice here kept them from the followers long
    /// enough for one to stand for election (issue 20). Nothing reads below the purge point
    /// from the moment it is recorded.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(LAST_PURGED, &log_id)?;
        self.purged.fetch_max(log_id.index + 1, Ordering::SeqCst);
        let store = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match store.remove_purged(log_id.index).await {
                Ok(()) => tracing::info!(
                    upto = log_id.index,
                    ms = started.elapsed().as_millis() as u64,
                    "removed the purged log entries"
                ),
                // The next purge removes them (and the reads never reach them).
                Err(e) => {
                    tracing::warn!(upto = log_id.index, error = %e, "cannot remove the purged log entries")
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::raft::StateMachine;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir()
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let db = sled::open(dir.path())
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let key = Arc::new(crate::raft::at_rest::Keyring::in_memory());
            let log = LogStore::open(&db, key.clone())?;
            let sm = StateMachine::open(dir.path(), &db, key, crate::raft::format::NEWEST)?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn conforms_to_openraft_storage_suite() -> Result<(), StorageError> {
        // The suite drives its own runtime.
        Suite::test_all(SledBuilder)
    }

    #[tokio::test]
    async fn a_purged_entry_is_left_under_a_retired_key() {
        use crate::raft::at_rest::{KeyEncryptionKey, Keyring};
        use crate::raft::Command;
        use openraft::{CommittedLeaderId, EntryPayload};
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let keys = Arc::new(
            Keyring::load_or_create(dir.path(), &KeyEncryptionKey::generate().unwrap()).unwrap(),
        );
        let mut store = LogStore::open(&db, keys.clone()).unwrap();
        let id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        // Enough entries that both the removal and the resealing take several batches.
        let batch = PER_BATCH.entries as u64;
        let (last, upto) = (3 * batch + 5, 2 * batch + 1);
        for index in 1..=last {
            let entry = Entry {
                log_id: id(index),
                payload: EntryPayload::Normal(Command(format!("secret-{index}").into_bytes())),
            };
            store
                .log
                .insert(index.to_be_bytes(), store.encode(&entry).unwrap())
                .unwrap();
        }
        // What sled may keep of entry 1 after the purge.
        let left_behind = store.log.get(1u64.to_be_bytes()).unwrap().unwrap();
        store.purge(id(upto)).await.unwrap();
        // Nothing below the purge point is read from the moment it is recorded.
        let kept = store.try_get_log_entries(0..=last).await.unwrap();
        assert_eq!(kept.len() as u64, last - upto);
        store
            .purged_through
            .subscribe()
            .wait_for(|&through| through >= upto)
            .await
            .unwrap();
        assert!(matches!(
            keys.open(&left_behind),
            Err(crate::raft::at_rest::AtRestError::Retired)
        ));
        assert_eq!(
            store.log.first().unwrap().unwrap().0.as_ref(),
            (upto + 1).to_be_bytes(),
            "every purged entry is gone from sled"
        );
        let kept = store.try_get_log_entries(0..=last).await.unwrap();
        let indexes: Vec<u64> = kept.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (upto + 1..=last).collect::<Vec<_>>());
        assert_eq!(
            keys.ids().len(),
            2,
            "one current key per class, nothing older"
        );
    }
}
