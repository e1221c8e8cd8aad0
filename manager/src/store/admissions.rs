//! What the cluster port asks of the store on every call: whether the caller is a member,
//! removed, meant to be a manager, a Raft member. Kept beside the store under a lock of its
//! own, updated as batches apply. The port's check runs before Raft's calls and nodes'
//! heartbeats; reading the store there meant waiting for its lock behind apply, which waits
//! for a long leader round to drop its read guard: both of Raft's threads stopped in that
//! check and the followers stood for election (issue 20).

use std::collections::{HashMap, HashSet};

use proto::store_object::Object;
use proto::{Node, NodeRole, StoreEvent};

use super::{ObjectStore, StoredObject};

/// The facts the cluster port admits callers by, for every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admissions {
    /// Whether the store holds the cluster object: before it does (a manager still
    /// joining), callers are admitted by their certificate alone.
    pub cluster: bool,
    /// The nodes removed from the cluster, whose certificates are refused.
    pub removed: HashSet<String>,
    /// Every node of the cluster, by ID.
    pub nodes: HashMap<String, Admitted>,
}

/// What the cluster grants one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The cluster wants it to be a manager.
    pub desired_manager: bool,
    /// It is a member of the Raft group.
    pub raft_member: bool,
}

impl Admitted {
    fn of(node: &Node) -> Self {
        Self {
            desired_manager: node
                .spec
                .as_ref()
                .is_some_and(|s| s.desired_role == NodeRole::Manager as i32),
            raft_member: node.manager_status.as_ref().is_some_and(|m| m.raft_id != 0),
        }
    }
}

/// Whether `event` may change the admissions: a node's or the cluster's.
pub(super) fn concerns(event: &StoreEvent) -> bool {
    matches!(
        event.object.as_ref().and_then(|o| o.object.as_ref()),
        Some(Object::Node(_) | Object::Cluster(_))
    )
}

impl Admissions {
    /// The facts of `store`, read in full (a new or replaced store).
    pub fn of(store: &ObjectStore) -> Self {
        let cluster = store.cluster();
        Self {
            cluster: cluster.is_some(),
            removed: cluster
                .map(|c| c.removed_nodes.keys().cloned().collect())
                .unwrap_or_default(),
            nodes: store
                .list::<Node>()
                .map(|n| (n.id().to_owned(), Admitted::of(n)))
                .collect(),
        }
    }

    /// Learns what `events` changed, reading the objects they name from `store` (the state
    /// right after them): only nodes and the cluster matter.
    pub fn learn(&mut self, store: &ObjectStore, events: &[StoreEvent]) {
        for event in events {
            match event.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Node(node)) => match store.get::<Node>(node.id()) {
                    Some(now) => {
                        self.nodes.insert(now.id().to_owned(), Admitted::of(now));
                    }
                    None => {
                        self.nodes.remove(node.id());
                    }
                },
                Some(Object::Cluster(_)) => {
                    let cluster = store.cluster();
                    self.cluster = cluster.is_some();
                    self.removed = cluster
                        .map(|c| c.removed_nodes.keys().cloned().collect())
                        .unwrap_or_default();
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{create, delete, update};
    use proto::{Cluster, ManagerStatus, Meta, NodeSpec, StoreBatch};

    fn meta(id: &str, version: u64) -> Option<Meta> {
        Some(Meta {
            id: id.into(),
            version,
            ..Default::default()
        })
    }

    fn node(id: &str, version: u64, manager: bool, raft_id: u64) -> Node {
        Node {
            meta: meta(id, version),
            spec: Some(NodeSpec {
                desired_role: if manager {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                } as i32,
                ..Default::default()
            }),
            manager_status: (raft_id != 0).then(|| ManagerStatus {
                raft_id,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Every step learnt from its events equals the facts read from the whole store.
    #[test]
    fn learning_from_events_gives_what_reading_the_store_gives() {
        let mut cluster = Cluster {
            meta: meta("c", 0),
            ..Default::default()
        };
        let steps: Vec<Vec<proto::StoreAction>> = vec![
            vec![create(node("m1", 0, true, 7))],
            vec![create(cluster.clone()), create(node("w1", 0, false, 0))],
            vec![
                update(node("w1", 2, true, 0)),
                create(node("w2", 0, false, 0)),
            ],
            vec![update(node("m1", 1, false, 7))],
            vec![delete(node("w2", 0, false, 0)), {
                cluster.meta = meta("c", 2);
                cluster
                    .removed_nodes
                    .insert("w2".into(), Default::default());
                update(cluster.clone())
            }],
            vec![delete(Cluster {
                meta: meta("c", 0),
                ..Default::default()
            })],
        ];
        let mut store = ObjectStore::default();
        let mut learnt = Admissions::of(&store);
        for (i, actions) in steps.into_iter().enumerate() {
            let index = i as u64 + 1;
            let batch = StoreBatch {
                actions,
                ..Default::default()
            };
            let events = store.apply(&batch, index).expect("applies");
            learnt.learn(&store, &events);
            assert_eq!(learnt, Admissions::of(&store), "after batch {index}");
        }
        assert!(!learnt.cluster);
        assert_eq!(learnt.nodes.len(), 2);
    }
}
