//! The Raft state machine: the in-memory [`ObjectStore`] plus the last snapshot, in a file of its own.
//!
//! The state itself is not written to disk on apply: a restarted manager loads its last
//! snapshot and openraft replays the log after it. That keeps apply cheap and the disk format
//! simple (one snapshot record).

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StoredMembership,
};
use prost::Message;

use super::at_rest::{Keyring, SNAPSHOT_TREE};
use super::format::{self, NewerFormat};
use super::types::{CommandResult, LogId, StorageError, TypeConfig};
use crate::store::{Applier, ApplyError, LocalStore, ObjectStore, StoreObjects, WatchEvent};
use snapshot_file::{Record, SnapshotFile, StoredSnapshot, SNAPSHOT_FILE};

mod snapshot_file;

/// The state machine openraft drives.
pub struct StateMachine {
    /// Shared with the blocking thread each apply runs on.
    applier: Arc<Applier>,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    disk: SnapshotFile,
    /// The newest entry format this manager reads ([`format::NEWEST`] but in tests of
    /// upgrades, which simulate the previous release).
    understood: u32,
}

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

impl StateMachine {
    /// Opens the state machine of the Raft directory `dir`, whose store is `db`, restoring
    /// the last snapshot if there is one; snapshots are sealed with `key`. It applies
    /// entries of formats up to `understood` and stops at a newer one.
    pub fn open(
        dir: &Path,
        db: &sled::Db,
        key: Arc<Keyring>,
        understood: u32,
    ) -> Result<Self, StorageError> {
        let tree = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        let disk = SnapshotFile::new(dir.join(SNAPSHOT_FILE), tree, key);
        let mut sm = StateMachine {
            applier: Arc::new(Applier::new()),
            last_applied: None,
            membership: StoredMembership::default(),
            disk,
            understood,
        };
        if let Some(stored) = sm.disk.load()? {
            sm.restore(&stored.meta, &stored.data)?;
        }
        Ok(sm)
    }

    /// Read access for the rest of the manager.
    pub fn local(&self) -> LocalStore {
        self.applier.local()
    }

    /// Replaces the state with a snapshot's and tells watchers to re-read it.
    fn restore(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        restore_into(&self.applier, meta, data)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }
}

/// Decodes a snapshot and puts its store in place of the one `applier` writes, telling
/// watchers to re-read it. Blocking: decoding takes a second or more at 100,000 tasks, and
/// the swap waits for the store's readers.
fn restore_into(
    applier: &Applier,
    meta: &SnapshotMeta<u64, openraft::BasicNode>,
    data: &[u8],
) -> Result<(), StorageError> {
    let failed = |e: &dyn ToString| {
        io_error(
            ErrorSubject::Snapshot(Some(meta.signature())),
            ErrorVerb::Read,
            e.to_string(),
        )
    };
    let started = std::time::Instant::now();
    let mut snapshot = proto::StoreSnapshot::decode(data).map_err(|e| failed(&e))?;
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let declared = format::declared(snapshot.format);
    if declared > format::SNAPSHOT {
        let newer = NewerFormat::snapshot(format::SNAPSHOT, index, declared);
        tracing::error!("{newer}");
        return Err(failed(&newer));
    }
    let outcomes = std::mem::take(&mut snapshot.outcomes);
    let restored = ObjectStore::from_snapshot(snapshot);
    let replaced = {
        let mut applying = applier.lock();
        applying.restore_outcomes(outcomes);
        let replaced = std::mem::replace(applying.store(), restored);
        applying.publish(WatchEvent::Reset { index });
        replaced
    };
    // Freed after the write lock is given back: dropping a large store takes a while too.
    drop(replaced);
    applier.applied(index);
    crate::metrics::METRICS
        .snapshot_bytes
        .set(data.len() as i64);
    tracing::info!(
        index,
        bytes = data.len(),
        ms = started.elapsed().as_millis() as u64,
        "restored the store from a snapshot"
    );
    Ok(())
}

/// What applying one entry gave: one result per batch, with the batch's proposal ID, and,
/// if any batch applied, the changes they made (all at the entry's index, in order) for the
/// watch stream.
type Applied = (
    Vec<(String, Result<(), ApplyError>)>,
    Option<Vec<proto::StoreEvent>>,
);

/// Applies a [`proto::StoreEntry`] committed at `index`: its batches in order, each all or
/// nothing on its own. An entry of a format newer than `understood` is not applied at all.
fn apply_entry(
    store: &mut ObjectStore,
    bytes: &[u8],
    index: u64,
    understood: u32,
) -> Result<Applied, NewerFormat> {
    let entry = match proto::StoreEntry::decode(bytes) {
        Err(e) => {
            let invalid = ApplyError::Invalid(e.to_string());
            return Ok((vec![(String::new(), Err(invalid))], None));
        }
        Ok(entry) => entry,
    };
    let held = entry.batches.len();
    let batches = match format::batches(entry, index, understood)? {
        Ok(batches) => batches,
        Err(malformed) => {
            let invalid = (String::new(), Err(ApplyError::Invalid(malformed)));
            return Ok((vec![invalid; held], None));
        }
    };
    let mut changes: Option<Vec<proto::StoreEvent>> = None;
    let results = batches
        .into_iter()
        .map(|batch| {
            let result = store.apply(&batch, index).map(|events| {
                changes.get_or_insert_with(Vec::new).extend(events);
            });
            (batch.proposal, result)
        })
        .collect();
    Ok((results, changes))
}

/// The store's objects as they were when openraft asked for a snapshot (shared with the
/// store, not copied); they are encoded and saved while apply goes on.
pub struct SnapshotBuilder {
    objects: StoreObjects,
    outcomes: Vec<proto::ProposalOutcome>,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    writer: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let outcomes = std::mem::take(&mut self.outcomes);
        let objects = std::mem::take(&mut self.objects);
        let last = self.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), rand::random::<u32>()),
        };
        let writer = self.writer.clone();
        let mut record = Record::new(&meta, self.writer.next_capacity())?;
        // Encoded, sealed and saved on a blocking thread, not one of Raft's two: encoding a
        // million tasks took one of them for 8 s, and the managers stood for election
        // meanwhile. The snapshot returned is the saved one opened again in its buffer:
        // a fraction of a second, against another ~180 MB held at a million tasks.
        let stored = tokio::task::spawn_blocking(move || {
            objects.encode_snapshot(format::SNAPSHOT, &outcomes, record.data());
            drop((objects, outcomes));
            let sealed = writer.save(record)?;
            writer.open(sealed)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))??;
        crate::metrics::METRICS
            .snapshot_bytes
            .set(stored.data.len() as i64);
        tracing::info!(
            index = last.map_or(0, |l| l.index),
            bytes = stored.data.len(),
            ms = started.elapsed().as_millis() as u64,
            "built and saved a snapshot"
        );
        Ok(Snapshot {
            meta: stored.meta,
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
        // Off Raft's threads: the store's write lock waits for its readers (a leader round,
        // a node's view), and a worker of Raft's two blocked on it left votes, heartbeats
        // and appends unanswered until the followers stood for election (issue 20).
        let entries: Vec<openraft::Entry<TypeConfig>> = entries.into_iter().collect();
        let applier = self.applier.clone();
        let understood = self.understood;
        let mut membership = self.membership.clone();
        let mut last_applied = self.last_applied;
        let (results, newer, membership, last_applied) = tokio::task::spawn_blocking(move || {
            let mut results = Vec::new();
            let mut applying = applier.lock();
            let mut newer = None;
            for entry in entries {
                let index = entry.log_id.index;
                let result = match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(entry.log_id), m);
                        Vec::new()
                    }
                    EntryPayload::Normal(command) => {
                        match apply_entry(applying.store(), &command.0, index, understood) {
                            Ok((results, events)) => {
                                if let Some(events) = events {
                                    applying.publish(WatchEvent::Changes { index, events });
                                }
                                results
                                    .into_iter()
                                    .map(|(proposal, result)| {
                                        applying.record(proposal, index, &result);
                                        result
                                    })
                                    .collect()
                            }
                            Err(e) => {
                                newer = Some((entry.log_id, e));
                                break;
                            }
                        }
                    }
                };
                last_applied = Some(entry.log_id);
                results.push(CommandResult(result));
            }
            drop(applying);
            if let Some(last) = last_applied {
                applier.applied(last.index);
            }
            (results, newer, membership, last_applied)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.membership = membership;
        self.last_applied = last_applied;
        if let Some((log_id, newer)) = newer {
            // Reading it as far as this build can would silently lose writes: stop applying
            // (openraft stops this member) and say what to do.
            tracing::error!("{newer}");
            return Err(io_error(
                ErrorSubject::Apply(log_id),
                ErrorVerb::Read,
                newer,
            ));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The store's objects, a pointer each (a walk over a million tasks, under the
        // store's read lock): on a blocking thread, not one of Raft's two.
        let local = self.applier.local();
        let (objects, outcomes) =
            tokio::task::spawn_blocking(move || local.objects_with_outcomes())
                .await
                .expect("taking the store's objects does not panic");
        SnapshotBuilder {
            objects,
            outcomes,
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
        // Off Raft's threads, as `apply` is: decoding a large snapshot and swapping the
        // store (which waits for its readers) would hold one of Raft's two workers for
        // seconds, and with it the votes and appends it serves.
        let applier = self.applier.clone();
        let disk = self.disk.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        tokio::task::spawn_blocking(move || {
            restore_into(&applier, &stored.meta, &stored.data)?;
            disk.save(Record::of(stored)?).map(drop)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))??;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Off Raft's threads: reading and opening ~180 MB at a million tasks.
        let disk = self.disk.clone();
        let stored = tokio::task::spawn_blocking(move || disk.load())
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))??;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::testing::log_id;
    use openraft::Entry;
    use proto::{Service, StoreAction, StoreActionKind, StoreBatch};

    use super::*;
    use crate::raft::format::{encode, GATHERED};
    use crate::raft::types::Command;
    use crate::store::tests::service;
    use crate::store::{Kind, StoredObject};

    fn batch(actions: Vec<(StoreActionKind, Service)>) -> StoreBatch {
        StoreBatch {
            actions: actions
                .into_iter()
                .map(|(kind, object)| StoreAction {
                    kind: kind as i32,
                    object: Some(object.wrap()),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn entry(index: u64, bytes: Vec<u8>) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Command(bytes)),
        }
    }

    async fn snapshot_of(sm: &mut StateMachine) -> Snapshot<TypeConfig> {
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot")
    }

    fn open() -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path()).expect("sled");
        let key = Arc::new(crate::raft::at_rest::Keyring::in_memory());
        let sm = StateMachine::open(dir.path(), &db, key, format::NEWEST).expect("state machine");
        (dir, sm)
    }

    use StoreActionKind::{Create, Update};

    /// A write sent again after its first attempt committed (its answer lost with the
    /// leader) is refused by its own earlier write; the first outcome stays readable by the
    /// proposal ID, in either entry format, alone or gathered.
    #[tokio::test]
    async fn the_first_outcome_of_a_proposal_sent_twice_is_remembered() {
        let (_dir, mut sm) = open();
        let mut create = batch(vec![(Create, service("s1", "web", 0))]);
        create.proposal = "p1".into();
        let mut update = batch(vec![(Update, service("s1", "api", 1))]);
        update.proposal = "p2".into();
        let mut other = batch(vec![(Create, service("s2", "db", 0))]);
        other.proposal = "p3".into();
        let lone = |b: &StoreBatch| encode(format::SINGLE_BATCH, &[&b.encode_to_vec()]);
        let gathered = |bs: &[&StoreBatch]| {
            let encoded: Vec<Vec<u8>> = bs.iter().map(|b| b.encode_to_vec()).collect();
            encode(
                GATHERED,
                &encoded.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            )
        };
        sm.apply([
            entry(1, lone(&create)),
            entry(2, gathered(&[&update, &other])),
            entry(3, lone(&create)),
            entry(4, gathered(&[&other, &update])),
        ])
        .await
        .expect("apply");
        let local = sm.local();
        assert_eq!(local.first_outcome("p1"), Some((1, Ok(()))));
        assert_eq!(local.first_outcome("p2"), Some((2, Ok(()))));
        assert_eq!(local.first_outcome("p3"), Some((2, Ok(()))));
        assert_eq!(local.first_outcome("p4"), None);
        assert_eq!(local.read().get::<Service>("s1").unwrap().version(), 2);
    }

    /// A manager that learns of a proposal from a snapshot (it was behind when the proposal
    /// committed) answers the proposal's retry as the managers that applied it do.
    #[tokio::test]
    async fn first_outcomes_travel_in_snapshots() {
        let (_dir, mut leader) = open();
        let mut create = batch(vec![(Create, service("s1", "web", 0))]);
        create.proposal = "p1".into();
        let mut stale = batch(vec![(Update, service("s1", "api", 5))]);
        stale.proposal = "p2".into();
        let lone = |b: &StoreBatch| encode(format::SINGLE_BATCH, &[&b.encode_to_vec()]);
        leader
            .apply([entry(1, lone(&create)), entry(2, lone(&stale))])
            .await
            .expect("apply");
        let refused = leader.local().first_outcome("p2").expect("p2").1;
        assert!(
            matches!(refused, Err(ApplyError::Conflict { .. })),
            "{refused:?}"
        );
        let snapshot = snapshot_of(&mut leader).await;

        let (_dir, mut behind) = open();
        behind
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        let local = behind.local();
        assert_eq!(local.first_outcome("p1"), Some((1, Ok(()))));
        assert_eq!(local.first_outcome("p2"), Some((2, refused)));
        assert_eq!(local.first_outcome("p3"), None);
    }

    #[tokio::test]
    async fn a_gathered_entry_applies_each_batch_on_its_own() {
        let (_dir, mut sm) = open();
        let single = batch(vec![(Create, service("s1", "web", 0))]).encode_to_vec();
        let results = sm.apply([entry(1, single)]).await.expect("apply");
        assert_eq!(results, vec![CommandResult(vec![Ok(())])]);
        let ((), mut events) = sm.local().subscribe(|_| ());

        // Four writers' batches in one entry: the second read s1 before the first changed
        // it, and the third fails on its second action after a create that must not stay.
        let batches = [
            batch(vec![(Update, service("s1", "web-2", 1))]),
            batch(vec![(Update, service("s1", "web-3", 1))]),
            batch(vec![
                (Create, service("s3", "cache", 0)),
                (Update, service("s9", "gone", 1)),
            ]),
            batch(vec![(Create, service("s2", "db", 0))]),
        ];
        let encoded: Vec<Vec<u8>> = batches.iter().map(Message::encode_to_vec).collect();
        let gathered = encode(
            GATHERED,
            &encoded.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        let results = sm.apply([entry(2, gathered)]).await.expect("apply");

        let conflict = ApplyError::Conflict {
            kind: Kind::Service,
            id: "s1".into(),
            expected: 1,
            actual: 2,
        };
        let not_found = ApplyError::NotFound {
            kind: Kind::Service,
            id: "s9".into(),
        };
        assert_eq!(
            results,
            vec![CommandResult(vec![
                Ok(()),
                Err(conflict),
                Err(not_found),
                Ok(())
            ])]
        );
        let store = sm.local().read().clone();
        let s1 = store.get::<Service>("s1").expect("s1");
        assert_eq!(s1.name(), Some("web-2"));
        assert_eq!(s1.version(), 2);
        assert_eq!(store.get::<Service>("s2").map(|s| s.version()), Some(2));
        assert!(store.get::<Service>("s3").is_none());
        assert!(store.named::<Service>("cache").is_none());

        // One watch event for the entry: the changes of the batches that applied, in order.
        let published = events.try_recv().expect("event");
        let WatchEvent::Changes {
            index,
            events: changes,
        } = &*published
        else {
            panic!("expected changes");
        };
        assert_eq!(*index, 2);
        let changed: Vec<&str> = changes
            .iter()
            .map(
                |e| match e.object.as_ref().and_then(|o| o.object.as_ref()) {
                    Some(proto::store_object::Object::Service(s)) => s.id(),
                    _ => "?",
                },
            )
            .collect();
        assert_eq!(changed, ["s1", "s2"]);
        assert!(changes.iter().all(|e| e.index == 2));
        assert!(events.try_recv().is_err());
        assert_eq!(sm.local().applied_index(), 2);
    }

    #[tokio::test]
    async fn an_entry_with_only_failing_batches_publishes_nothing() {
        let (_dir, mut sm) = open();
        let ((), mut events) = sm.local().subscribe(|_| ());
        let batches = [
            batch(vec![(Update, service("s1", "web", 1))]),
            batch(vec![(Update, service("s2", "db", 1))]),
        ];
        let encoded: Vec<Vec<u8>> = batches.iter().map(Message::encode_to_vec).collect();
        let gathered = encode(
            GATHERED,
            &encoded.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        );
        let results = sm.apply([entry(1, gathered)]).await.expect("apply");
        assert_eq!(results[0].0.len(), 2);
        assert!(results[0].0.iter().all(Result::is_err));
        assert!(events.try_recv().is_err());
        assert_eq!(sm.local().applied_index(), 1);
    }

    #[tokio::test]
    async fn an_entry_with_both_actions_and_batches_is_refused_whole() {
        let (_dir, mut sm) = open();
        let entry_bytes = proto::StoreEntry {
            actions: batch(vec![(Create, service("s1", "web", 0))]).actions,
            batches: vec![batch(vec![(Create, service("s2", "db", 0))])],
            format: 0,
            ..Default::default()
        }
        .encode_to_vec();
        let results = sm.apply([entry(1, entry_bytes)]).await.expect("apply");
        assert!(matches!(results[0].0[..], [Err(ApplyError::Invalid(_))]));
        assert_eq!(sm.local().read().count::<Service>(), 0);
    }

    /// A snapshot received while a reader holds the store (a leader round, a node's view)
    /// must not hold the thread that installs it: on Raft's runtime that thread also
    /// answers votes and appends. Here the runtime has one thread; with the install on it,
    /// the timer below never fires until the reader lets go, which it only does after.
    #[test]
    fn installing_a_snapshot_leaves_the_thread_free_while_a_reader_holds_the_store() {
        let (_leader_dir, mut leader) = open();
        let (_dir, mut behind) = open();
        let reader_store = behind.local();
        let (took, guard_taken) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _guard = reader_store.read();
            took.send(()).expect("test waits");
            let _ = released.recv();
        });
        guard_taken.recv().expect("reader started");

        let (progressed, progress) = std::sync::mpsc::channel();
        let runtime = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let create = batch(vec![(Create, service("s1", "web", 0))]);
                let lone = encode(format::SINGLE_BATCH, &[&create.encode_to_vec()]);
                leader.apply([entry(1, lone)]).await.expect("apply");
                let snapshot = snapshot_of(&mut leader).await;
                let install = tokio::spawn(async move {
                    behind
                        .install_snapshot(&snapshot.meta, snapshot.snapshot)
                        .await
                        .expect("install");
                    behind
                });
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                progressed.send(()).expect("test waits");
                install.await.expect("install task")
            })
        });
        let free = progress.recv_timeout(Duration::from_secs(10));
        release.send(()).expect("reader waits");
        reader.join().expect("reader");
        assert!(free.is_ok(), "the install held the runtime's only thread");
        let behind = runtime.join().expect("runtime thread");
        assert_eq!(behind.local().read().count::<Service>(), 1);
    }
}
