//! The last snapshot on disk: one file in the Raft directory, sealed with the snapshot key.
//!
//! The record is a bincode [`StoredSnapshot`] (the meta, the data's length, the data), as
//! earlier releases wrote it whole into sled. It is put together, sealed and opened in one
//! buffer: at a million tasks the data is ~180 MB, and each copy of it (the sealed one beside
//! the plain one, sled's own, the one read back) was that much more of a manager's memory
//! while it saved or sent a snapshot. Releases before this one kept the record in sled;
//! it is read from there until the first snapshot saved here replaces it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::storage::SnapshotMeta;
use openraft::{ErrorSubject, ErrorVerb};
#[cfg(test)]
use serde::Serialize;

use super::io_error;
use crate::raft::at_rest::{replace_file, Class, Keyring, SEALED_PREFIX};
use crate::raft::types::StorageError;

/// The file in the Raft directory holding the last snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot";

/// Where releases before the snapshot file kept the record, in the state machine's tree.
const SLED_KEY: &[u8] = b"snapshot";

/// The last snapshot, as its record holds it.
#[cfg_attr(test, derive(Serialize))]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta<u64, openraft::BasicNode>,
    pub data: Vec<u8>,
}

/// A snapshot record put together in the buffer it is then sealed in: room for the seal,
/// the meta, the data's length, then the data.
pub struct Record {
    buf: Vec<u8>,
    data_start: usize,
    signature: openraft::storage::SnapshotSignature<u64>,
}

impl Record {
    /// A record of `meta` whose data, of about `capacity` bytes, is then appended to
    /// [`Record::data`].
    pub fn new(
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        capacity: usize,
    ) -> Result<Self, StorageError> {
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(SEALED_PREFIX, 0);
        bincode::serialize_into(&mut buf, meta).map_err(|e| {
            io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        buf.extend_from_slice(&[0; 8]);
        Ok(Record {
            data_start: buf.len(),
            buf,
            signature: meta.signature(),
        })
    }

    /// The record of `stored`, put together in its data's own buffer (a snapshot received).
    pub fn of(stored: StoredSnapshot) -> Result<Self, StorageError> {
        let mut record = Record::new(&stored.meta, 0)?;
        let mut data = stored.data;
        let head = record.buf.len();
        let len = data.len();
        data.resize(head + len, 0);
        data.copy_within(..len, head);
        data[..head].copy_from_slice(&record.buf);
        record.buf = data;
        Ok(record)
    }

    /// The buffer the data is appended to (after what the record already holds).
    pub fn data(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn data_len(&self) -> usize {
        self.buf.len() - self.data_start
    }

    /// The record, its data's length filled in, with the room for its seal in front.
    fn finish(mut self) -> Vec<u8> {
        let len = (self.data_len() as u64).to_le_bytes();
        self.buf[self.data_start - len.len()..self.data_start].copy_from_slice(&len);
        self.buf
    }
}

/// Where the last snapshot lives: [`SNAPSHOT_FILE`] in the Raft directory, and the tree of
/// the store where earlier releases kept it.
#[derive(Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    tree: sled::Tree,
    key: Arc<Keyring>,
    /// The size of the last record saved or read.
    last_len: Arc<AtomicUsize>,
}

impl SnapshotFile {
    pub fn new(path: PathBuf, tree: sled::Tree, key: Arc<Keyring>) -> Self {
        Self {
            path,
            tree,
            key,
            last_len: Arc::default(),
        }
    }

    /// Room for the next snapshot's record: the last one's size and an eighth more. A
    /// buffer grown as the store is encoded into it was copied into one of twice the size
    /// on the way (about 256 MB beside 128 at a million tasks); room not written to costs
    /// no memory.
    pub fn next_capacity(&self) -> usize {
        let last = self.last_len.load(Ordering::Relaxed);
        last + last / 8 + (64 << 10)
    }

    /// Blocking: the saved snapshot, if any, read and opened in one buffer.
    pub fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let failed =
            |e: &dyn ToString| io_error(ErrorSubject::Store, ErrorVerb::Read, e.to_string());
        let sealed = match std::fs::read(&self.path) {
            Ok(sealed) => sealed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match self.tree.get(SLED_KEY).map_err(|e| failed(&e))? {
                    Some(sealed) => sealed.to_vec(),
                    None => return Ok(None),
                }
            }
            Err(e) => return Err(failed(&format!("cannot read {}: {e}", self.path.display()))),
        };
        self.open(sealed).map(Some)
    }

    /// Blocking: writes `record` sealed with a fresh snapshot key and makes it the last
    /// snapshot durably; the key of the one it replaces is then retired (what is left of
    /// that one on disk, sled's files included, no key opens any more). Returns the sealed
    /// record.
    pub fn save(&self, record: Record) -> Result<Vec<u8>, StorageError> {
        let subject = ErrorSubject::Snapshot(Some(record.signature.clone()));
        let failed = |e: &dyn ToString| io_error(subject.clone(), ErrorVerb::Write, e.to_string());
        let mut buf = record.finish();
        self.key.rotate(Class::Snapshot).map_err(|e| failed(&e))?;
        self.key
            .seal_in_place(Class::Snapshot, &mut buf)
            .map_err(|e| failed(&e))?;
        replace_file(&self.path, &buf)
            .map_err(|e| failed(&format!("cannot write {}: {e}", self.path.display())))?;
        self.last_len.store(buf.len(), Ordering::Relaxed);
        if self
            .tree
            .remove(SLED_KEY)
            .map_err(|e| failed(&e))?
            .is_some()
        {
            self.tree.flush().map_err(|e| failed(&e))?;
        }
        self.key.retire(Class::Snapshot).map_err(|e| failed(&e))?;
        Ok(buf)
    }

    /// A sealed record opened where it lies: the meta read off its front, the buffer left
    /// holding the data alone.
    pub fn open(&self, mut sealed: Vec<u8>) -> Result<StoredSnapshot, StorageError> {
        let failed =
            |e: &dyn ToString| io_error(ErrorSubject::Store, ErrorVerb::Read, e.to_string());
        self.last_len.store(sealed.len(), Ordering::Relaxed);
        let plain = self
            .key
            .open_in_place(&mut sealed)
            .map_err(|e| failed(&e))?;
        sealed.truncate(plain.end);
        let mut rest = &sealed[plain.start..];
        let meta: SnapshotMeta<u64, openraft::BasicNode> =
            bincode::deserialize_from(&mut rest).map_err(|e| failed(&e))?;
        let len: u64 = bincode::deserialize_from(&mut rest).map_err(|e| failed(&e))?;
        if len != rest.len() as u64 {
            return Err(failed(&format!(
                "the saved snapshot holds {} bytes of data, not the {len} it declares",
                rest.len()
            )));
        }
        let start = sealed.len() - rest.len();
        sealed.drain(..start);
        Ok(StoredSnapshot { meta, data: sealed })
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;
    use openraft::StoredMembership;

    use super::*;
    use crate::raft::at_rest::SNAPSHOT_TREE;

    fn stored() -> StoredSnapshot {
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 1, 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "42-7".into(),
            },
            data: b"the store's objects".to_vec(),
        }
    }

    fn file(dir: &tempfile::TempDir) -> SnapshotFile {
        let db = sled::open(dir.path().join("db")).expect("sled");
        SnapshotFile::new(
            dir.path().join(SNAPSHOT_FILE),
            db.open_tree(SNAPSHOT_TREE).expect("tree"),
            Arc::new(Keyring::in_memory()),
        )
    }

    /// The record is still the bincode `StoredSnapshot` that earlier releases wrote whole,
    /// whether put together as it is encoded or around a received snapshot's data; it is
    /// sealed, and read back as it was.
    #[test]
    fn the_snapshot_record_is_a_bincode_stored_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = file(&dir);
        let stored = stored();
        let whole = bincode::serialize(&stored).unwrap();
        let mut built = Record::new(&stored.meta, file.next_capacity()).unwrap();
        built.data().extend_from_slice(&stored.data);
        let received = Record::of(stored).unwrap();
        for record in [built, received] {
            let sealed = file.save(record).expect("save");
            assert_eq!(std::fs::read(&file.path).unwrap(), sealed);
            assert!(file.next_capacity() > sealed.len(), "room for the next one");
            assert!(!sealed.windows(7).any(|w| w == b"objects"), "sealed");
            assert_eq!(file.key.open(&sealed).unwrap(), whole);
            let loaded = file.load().expect("load").expect("a snapshot");
            assert_eq!(bincode::serialize(&loaded).unwrap(), whole);
            let opened = file.open(sealed).expect("open");
            assert_eq!(bincode::serialize(&opened).unwrap(), whole);
        }
        // A record shorter or longer than it declares is refused, not read as another.
        for bad in [
            &whole[..whole.len() - 1],
            &[whole.as_slice(), b"!"].concat(),
        ] {
            let sealed = file.key.seal(Class::Snapshot, bad).unwrap();
            std::fs::write(&file.path, sealed).unwrap();
            assert!(file.load().is_err());
        }
    }

    /// A manager upgraded in place loads the snapshot an earlier release kept in sled; the
    /// first snapshot saved in the file takes its place there, and its key is retired.
    #[test]
    fn a_snapshot_kept_in_sled_is_read_until_one_is_saved_in_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = file(&dir);
        assert!(file.load().expect("load").is_none());
        let old = stored();
        let sealed = file
            .key
            .seal(Class::Snapshot, &bincode::serialize(&old).unwrap())
            .unwrap();
        file.tree.insert(SLED_KEY, sealed.as_slice()).unwrap();
        let loaded = file.load().expect("load").expect("the old snapshot");
        assert_eq!(loaded.meta, old.meta);
        assert_eq!(loaded.data, old.data);

        let mut new = stored();
        new.meta.snapshot_id = "50-1".into();
        new.data = b"newer objects".to_vec();
        file.save(Record::of(new).unwrap()).expect("save");
        assert!(file.tree.get(SLED_KEY).unwrap().is_none());
        let loaded = file.load().expect("load").expect("the new snapshot");
        assert_eq!(loaded.meta.snapshot_id, "50-1");
        assert_eq!(loaded.data, b"newer objects");
        assert!(matches!(
            file.key.open(&sealed),
            Err(crate::raft::at_rest::AtRestError::Retired)
        ));
    }
}
