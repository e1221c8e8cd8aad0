//! Property tests of the log's entry encoding at rest: an entry (of gathered batches or
//! not) sealed and opened again is the same entry, and bytes that are not a sealed entry,
//! or a sealed entry changed by one byte, read as an error, never a panic or another entry.

use std::sync::Arc;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use prost::Message;
use proto::{StoreBatch, StoreEntry};

use super::LogStore;
use crate::raft::at_rest::Keyring;
use crate::raft::{Command, TypeConfig};

fn store() -> (tempfile::TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let store = LogStore::open(&db, Arc::new(Keyring::in_memory())).unwrap();
    (dir, store)
}

fn entries() -> impl Strategy<Value = Entry<TypeConfig>> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(0..4usize),
    )
        .prop_map(|(term, node, index, batches)| Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, node), index),
            payload: match batches {
                // Batches of opaque actions: only the framing is under test here.
                Some(batches) => EntryPayload::Normal(Command(
                    StoreEntry {
                        actions: Vec::new(),
                        batches: vec![StoreBatch::default(); batches],
                        format: crate::raft::format::GATHERED,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )),
                None => EntryPayload::Blank,
            },
        })
}

#[test]
fn a_sealed_entry_opens_as_itself_and_a_changed_one_not_at_all() {
    // One store for every case: opening sled is what would take the time.
    let (_dir, store) = store();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let inputs = (
        entries(),
        any::<prop::sample::Index>(),
        1..=255u8,
        proptest::collection::vec(any::<u8>(), 0..200),
    );
    runner
        .run(&inputs, |(entry, at, xor, noise)| {
            let sealed = store.encode(&entry).unwrap();
            prop_assert!(store.decode(&sealed).unwrap() == entry);
            let mut changed = sealed.clone();
            let at = at.index(changed.len());
            changed[at] ^= xor;
            prop_assert!(store.decode(&changed).is_err());
            prop_assert!(store.decode(&sealed[..sealed.len() - 1]).is_err());
            // Whatever else is found under a log key.
            let _ = store.decode(&noise);
            Ok(())
        })
        .unwrap();
}
