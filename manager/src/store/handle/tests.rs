use std::cell::Cell;

use proto::{Cluster, ManagerStatus, Meta, Node, Service, StoreBatch};

use super::*;
use crate::store::fake::{FakeProposer, ME};
use crate::store::tests::service;
use crate::store::{create, update, ApplyError, Kind};

/// A store holding the service `s1` ("web"), and its handle.
fn with_service() -> (Arc<FakeProposer>, Store) {
    let fake = FakeProposer::new();
    fake.commit(&batch(create(service("s1", "web", 0))))
        .expect("create");
    let store = fake.store();
    (fake, store)
}

fn batch(action: StoreAction) -> StoreBatch {
    StoreBatch {
        actions: vec![action],
        ..Default::default()
    }
}

/// Someone else's change to `s1`, made from what the store holds now.
fn labelled(store: &Store, label: &str) -> StoreAction {
    let mut s1 = store.read().get::<Service>("s1").cloned().expect("s1");
    let spec = s1.spec.get_or_insert_with(Default::default);
    spec.labels.insert(label.into(), "yes".into());
    update(s1)
}

#[tokio::test]
async fn a_modification_reads_again_and_retries_when_someone_else_wrote_in_between() {
    let (fake, store) = with_service();
    fake.race(batch(labelled(&store, "theirs")));
    let calls = Cell::new(0);
    let changed = store
        .modify::<Service>("s1", |s| {
            calls.set(calls.get() + 1);
            s.spec_version += 1;
        })
        .await
        .expect("modified")
        .expect("s1 exists");

    assert_eq!(
        calls.get(),
        2,
        "the change is made again on the new version"
    );
    assert_eq!(fake.proposed().len(), 2);
    let stored = store.read().get::<Service>("s1").cloned().expect("s1");
    assert_eq!(stored.spec_version, 1);
    assert!(stored.spec.expect("spec").labels.contains_key("theirs"));
    assert_eq!(changed.spec_version, 1);
}

#[tokio::test]
async fn a_modification_of_a_missing_object_writes_nothing() {
    let (fake, store) = with_service();
    let changed = store
        .modify::<Service>("s9", |_| panic!("nothing to change"))
        .await
        .expect("no error");
    assert!(changed.is_none());
    assert!(fake.proposed().is_empty());
}

#[tokio::test]
async fn a_modification_gives_up_at_once_on_anything_but_a_conflict() {
    let (fake, store) = with_service();
    fake.fail_write(StoreError::NoQuorum {
        quorum: 2,
        managers: 3,
    });
    let calls = Cell::new(0);
    let failed = store
        .modify::<Service>("s1", |_| calls.set(calls.get() + 1))
        .await;
    assert!(
        matches!(failed, Err(StoreError::NoQuorum { .. })),
        "{failed:?}"
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(
        store.read().get::<Service>("s1").map(|s| s.version()),
        Some(1)
    );
}

#[tokio::test]
async fn a_removal_picks_again_after_a_barrier_when_someone_else_wrote_in_between() {
    let (fake, store) = with_service();
    fake.race(batch(labelled(&store, "theirs")));
    let picks = Cell::new(0);
    store
        .remove(|s| {
            picks.set(picks.get() + 1);
            Ok::<_, StoreError>(s.get::<Service>("s1").cloned().expect("s1"))
        })
        .await
        .expect("removed despite the write in between");
    assert_eq!(picks.get(), 2);
    assert_eq!(fake.barriers(), 2, "each pick reads after a barrier");
    assert!(store.read().get::<Service>("s1").is_none());
}

#[tokio::test]
async fn a_removal_commits_what_the_pick_adds_in_the_same_batch() {
    let (fake, store) = with_service();
    let cluster = Cluster {
        meta: Some(Meta {
            id: "c".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    fake.commit(&batch(create(cluster))).expect("cluster");
    store
        .remove_with(|s| {
            let target = s.get::<Service>("s1").cloned().expect("s1");
            let cluster = s.cluster().cloned().expect("cluster");
            Ok::<_, StoreError>((target, vec![update(cluster)]))
        })
        .await
        .expect("removed");
    let proposed = fake.proposed();
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].actions.len(), 2);
    let after = store.read();
    assert!(after.get::<Service>("s1").is_none());
    assert_eq!(after.cluster().map(|c| c.version()), Some(3));
}

#[tokio::test]
async fn a_removal_the_pick_refuses_deletes_nothing() {
    let (fake, store) = with_service();
    let refused = store
        .remove(|_| Err::<Service, _>(StoreError::Apply(ApplyError::Invalid("no".into()))))
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Apply(ApplyError::Invalid(_)))
    ));
    assert!(fake.proposed().is_empty());
    assert!(store.read().get::<Service>("s1").is_some());
}

#[tokio::test]
async fn a_conflicting_write_is_reported_as_a_conflict_and_not_retried() {
    let (fake, store) = with_service();
    let stale = store.read().get::<Service>("s1").cloned().expect("s1");
    fake.commit(&batch(labelled(&store, "theirs")))
        .expect("theirs");
    let failed = store
        .write(vec![update(stale)])
        .await
        .expect_err("conflict");
    assert!(failed.is_conflict());
    assert!(matches!(
        failed,
        StoreError::Apply(ApplyError::Conflict {
            kind: Kind::Service,
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert_eq!(fake.proposed().len(), 1);
}

#[tokio::test]
async fn a_read_that_cannot_pass_the_barrier_reads_nothing() {
    let (fake, store) = with_service();
    fake.fail_barrier(StoreError::Joining);
    let read = store
        .read_latest(|_| panic!("read before the barrier"))
        .await;
    assert!(matches!(read, Err(StoreError::Joining)));
    let count = store.read_latest(|s| s.count::<Service>()).await;
    assert_eq!(count.expect("read"), 1);
    assert_eq!(fake.barriers(), 2);
}

#[tokio::test]
async fn a_leader_only_write_fails_once_another_manager_leads() {
    let (fake, store) = with_service();
    fake.set_leader(Some(ME + 1));
    let refused = store.write_as_leader(vec![labelled(&store, "mine")]).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    assert!(fake.proposed().is_empty());
    // An ordinary write goes to whoever leads.
    store
        .write(vec![labelled(&store, "mine")])
        .await
        .expect("forwarded");
}

#[tokio::test]
async fn the_leader_is_the_node_whose_manager_status_names_the_leading_member() {
    let (fake, store) = with_service();
    let manager = |id: &str, raft_id: u64| Node {
        meta: Some(Meta {
            id: id.into(),
            ..Default::default()
        }),
        manager_status: Some(ManagerStatus {
            raft_id,
            ..Default::default()
        }),
        ..Default::default()
    };
    store
        .write(vec![
            create(manager("n1", ME)),
            create(manager("n2", ME + 1)),
        ])
        .await
        .expect("nodes");
    assert_eq!(store.leader_node_id().as_deref(), Some("n1"));
    assert!(store.is_leader());
    fake.set_leader(Some(ME + 1));
    assert_eq!(store.leader_node_id().as_deref(), Some("n2"));
    assert_eq!(store.leader_raft_id(), Some(ME + 1));
    assert!(!store.is_leader());
    fake.set_leader(None);
    assert_eq!(store.leader_node_id(), None);
}

#[tokio::test]
async fn waiting_for_leadership_ends_when_this_manager_leads() {
    let (fake, store) = with_service();
    fake.set_leader(None);
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.until_leader().await }
    });
    fake.set_leader(Some(ME));
    waiting.await.expect("joined").expect("leads");
}
