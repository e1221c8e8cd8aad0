//! Property tests of entry and snapshot decoding: entries and snapshots arrive from peers,
//! so any bytes must apply as an error or restore as some store, never panic; and an entry
//! of gathered batches must apply exactly as the same batches one entry each.

use proptest::prelude::*;
use prost::Message;
use proto::{
    store_object, Config, ConfigSpec, Meta, Secret, SecretSpec, StoreAction, StoreActionKind,
    StoreBatch, StoreEntry, StoreObject, StoreSnapshot,
};

use super::apply_entry;
use crate::raft::format;
use crate::store::ObjectStore;

/// A create, update or delete of a secret or config, IDs from a small pool so that actions
/// meet the same objects (and fail their version checks) often.
fn actions() -> impl Strategy<Value = StoreAction> {
    (
        0..3i32,
        any::<bool>(),
        0..4u8,
        0..3u64,
        "[a-z]{0,3}",
        any::<Vec<u8>>(),
    )
        .prop_map(|(kind, is_secret, id, version, name, data)| {
            let meta = Some(Meta {
                id: format!("id{id}"),
                version,
                ..Default::default()
            });
            let object = if is_secret {
                store_object::Object::Secret(Secret {
                    meta,
                    spec: Some(SecretSpec {
                        name,
                        data,
                        ..Default::default()
                    }),
                })
            } else {
                store_object::Object::Config(Config {
                    meta,
                    spec: Some(ConfigSpec {
                        name,
                        data,
                        ..Default::default()
                    }),
                })
            };
            StoreAction {
                kind: StoreActionKind::try_from(kind).unwrap() as i32,
                object: Some(StoreObject {
                    object: Some(object),
                }),
            }
        })
}

fn batches() -> impl Strategy<Value = Vec<StoreBatch>> {
    proptest::collection::vec(
        proptest::collection::vec(actions(), 0..4).prop_map(|actions| StoreBatch {
            actions,
            ..Default::default()
        }),
        1..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_entry_bytes_apply_or_fail_without_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut store = ObjectStore::default();
        match apply_entry(&mut store, &bytes, 1, format::NEWEST) {
            Ok((results, _)) => prop_assert!(!results.is_empty()),
            // An entry that says it is of a newer format is refused whole.
            Err(_) => prop_assert_eq!(store.to_snapshot(), ObjectStore::default().to_snapshot()),
        }
    }

    #[test]
    fn any_snapshot_bytes_restore_a_store_that_snapshots_the_same_again(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(snapshot) = StoreSnapshot::decode(bytes.as_slice()) {
            let store = ObjectStore::from_snapshot(snapshot);
            let again = store.to_snapshot();
            let decoded = StoreSnapshot::decode(again.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(ObjectStore::from_snapshot(decoded).to_snapshot(), again);
        }
    }

    #[test]
    fn an_entry_of_batches_applies_as_the_batches_one_entry_each(batches in batches()) {
        let gathered = StoreEntry {
            actions: Vec::new(),
            batches: batches.clone(),
            format: format::GATHERED,
            ..Default::default()
        };
        let bytes = gathered.encode_to_vec();
        prop_assert_eq!(&StoreEntry::decode(bytes.as_slice()).unwrap(), &gathered);

        let mut together = ObjectStore::default();
        let (results, _) = apply_entry(&mut together, &bytes, 7, format::NEWEST).unwrap();

        let mut apart = ObjectStore::default();
        let mut one_by_one = Vec::new();
        for batch in &batches {
            // The format every entry had before batches were gathered.
            let single = StoreEntry {
                actions: batch.actions.clone(),
                batches: Vec::new(),
                format: format::SINGLE_BATCH,
                ..Default::default()
            };
            let (mut result, _) =
                apply_entry(&mut apart, &single.encode_to_vec(), 7, format::NEWEST).unwrap();
            prop_assert_eq!(result.len(), 1);
            one_by_one.push(result.remove(0));
        }
        prop_assert_eq!(results, one_by_one);
        prop_assert_eq!(together.to_snapshot(), apart.to_snapshot());
        // And the store's snapshot restores to itself.
        let restored = ObjectStore::from_snapshot(together.to_snapshot());
        prop_assert_eq!(restored.to_snapshot(), together.to_snapshot());
    }
}
