//! The cluster state: an in-memory, indexed object store that is the Raft state machine.
//!
//! The store changes only by applying committed Raft entries ([`ObjectStore::apply`]); every
//! other component reads it and learns of changes from the watch stream. A batch applies all
//! or nothing, and every object it writes gets the batch's log index as its version.
//!
//! Layout:
//! - [`ObjectStore`]: the objects and their indexes; `apply.rs` changes them.
//! - [`LocalStore`] / [`Applier`] (`local.rs`): this manager's copy and its watch stream,
//!   written only by the state machine.
//! - [`Store`] (`handle.rs`): what subsystems hold: reads with or without a read barrier,
//!   writes of [`create`] / [`update`] / [`delete`] actions, retried modifications and
//!   removals, the watch stream and leadership, all over a [`Proposer`] (`proposer.rs`),
//!   which the Raft node implements and `fake.rs` imitates in tests. Its errors are
//!   [`StoreError`]s; only the gRPC services turn them into statuses.

mod action;
mod admissions;
mod apply;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod handle;
mod local;
mod object;
mod placed;
mod proposer;
mod shared_specs;
mod snapshot;
mod task_index;

pub use action::{create, delete, update};
pub use admissions::{Admissions, Admitted};
pub use apply::ApplyError;
pub use error::StoreError;
pub use handle::Store;
pub use local::{Applier, Applying, LocalStore, WatchEvent};
pub use object::{Kind, StoredObject};
pub use placed::{host_ports, occupies_node, reservations, HostPort, NodeLoad, Placed};
pub use proposer::Proposer;
pub use snapshot::StoreObjects;
pub use task_index::TaskTally;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use shared_specs::SharedSpecs;
use task_index::{TaskIndex, Within};

use proto::{Cluster, Config, Network, Node, Secret, Service, Task};

/// Every object of the cluster, by kind and ID.
///
/// Each object is kept behind an `Arc`: a B-tree holds its values inline, and a task is
/// 1,344 bytes (a prost message holds its spec inline), so nodes a third empty cost more
/// than a pointer; and a snapshot's view of the store ([`StoreObjects`]) shares the objects
/// instead of copying every one of them.
#[derive(Clone, Debug, Default)]
pub struct ObjectStore {
    clusters: BTreeMap<String, Arc<Cluster>>,
    nodes: BTreeMap<String, Arc<Node>>,
    services: BTreeMap<String, Arc<Service>>,
    tasks: BTreeMap<String, Arc<Task>>,
    networks: BTreeMap<String, Arc<Network>>,
    secrets: BTreeMap<String, Arc<Secret>>,
    configs: BTreeMap<String, Arc<Config>>,
    /// ID by name, for the kinds whose names are unique: checking a new name and resolving
    /// a name must not walk a whole table (that made every write O(objects)).
    names: HashMap<(Kind, String), String>,
    /// The IDs of the nodes that are managers: every node's network view names them, and a
    /// walk over ten thousand nodes per view made a join cost O(nodes^2).
    managers: BTreeSet<String>,
    /// The tasks by service and slot, by node and by state, and each service's task counts,
    /// kept as tasks change (`task_index.rs`).
    task_index: TaskIndex,
    /// The spec each service's tasks share (`shared_specs.rs`).
    shared_specs: SharedSpecs,
}

/// Why a reference (ID, ID prefix or name) names no single object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matches.
    #[error("{kind} {reference:?} not found")]
    NotFound {
        /// What was looked for.
        kind: Kind,
        /// The reference given.
        reference: String,
    },
    /// An ID prefix matches several objects.
    #[error("{kind} {reference:?} is ambiguous: it matches {count} {kind}s; give more of the ID")]
    Ambiguous {
        /// What was looked for.
        kind: Kind,
        /// The reference given.
        reference: String,
        /// How many matched.
        count: usize,
    },
}

impl ObjectStore {
    /// The object of type `T` with this exact ID.
    pub fn get<T: StoredObject>(&self, id: &str) -> Option<&T> {
        T::table(self).get(id).map(|o| &**o)
    }

    /// All objects of type `T`, in ID order.
    pub fn list<T: StoredObject>(&self) -> impl Iterator<Item = &T> {
        T::table(self).values().map(|o| &**o)
    }

    /// The nodes that are managers, in ID order.
    pub fn managers(&self) -> impl Iterator<Item = &Node> {
        self.managers
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| &**n))
    }

    /// How many objects of type `T` there are.
    pub fn count<T: StoredObject>(&self) -> usize {
        T::table(self).len()
    }

    /// How many tasks are in each observed state (`proto::TaskState` as `i32`; states with
    /// none are absent), in state order.
    pub fn tasks_by_state(&self) -> BTreeMap<i32, usize> {
        self.task_index.state_counts().collect()
    }

    /// The tasks of a service, in slot order (a global service's: in node order).
    pub fn tasks_of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> {
        self.tasks_by_id(self.task_index.of_service(service_id, Within::Service))
    }

    /// The tasks of one slot (> 0) of a replicated service, current and past.
    pub fn tasks_in_slot<'a>(
        &'a self,
        service_id: &'a str,
        slot: u64,
    ) -> impl Iterator<Item = &'a Task> {
        self.tasks_by_id(self.task_index.of_service(service_id, Within::Slot(slot)))
    }

    /// The tasks of a replicated service's slots from `from` (> 0) on, current and past.
    pub fn tasks_from_slot<'a>(
        &'a self,
        service_id: &'a str,
        from: u64,
    ) -> impl Iterator<Item = &'a Task> {
        self.tasks_by_id(
            self.task_index
                .of_service(service_id, Within::SlotsFrom(from)),
        )
    }

    /// The tasks of a global service on one node, current and past.
    pub fn tasks_of_service_on_node<'a>(
        &'a self,
        service_id: &'a str,
        node_id: &'a str,
    ) -> impl Iterator<Item = &'a Task> {
        self.tasks_by_id(
            self.task_index
                .of_service(service_id, Within::Node(node_id)),
        )
    }

    /// The tasks assigned to a node, whatever their state.
    pub fn tasks_on_node<'a>(&'a self, node_id: &'a str) -> impl Iterator<Item = &'a Task> {
        self.tasks_by_id(self.task_index.on_node(node_id))
    }

    /// The tasks whose observed state is `state`.
    pub fn tasks_in_state(&self, state: proto::TaskState) -> impl Iterator<Item = &Task> {
        self.tasks_by_id(self.task_index.in_state(state as i32))
    }

    /// The tasks whose observed state is `last` or earlier in the lifecycle, by state then ID.
    pub fn tasks_up_to_state(&self, last: proto::TaskState) -> impl Iterator<Item = &Task> {
        self.tasks_by_id(self.task_index.up_to_state(last as i32))
    }

    /// The tasks with network attachments (addresses on networks), in ID order.
    pub fn tasks_with_networks(&self) -> impl Iterator<Item = &Task> {
        self.tasks_by_id(self.task_index.attached())
    }

    /// What the tasks occupying nodes hold on each (the scheduler's starting point).
    pub fn placed(&self) -> &Placed {
        self.task_index.placed()
    }

    /// A service's task counts (running, active, completed).
    pub fn task_tally(&self, service_id: &str) -> TaskTally {
        self.task_index.tally(service_id)
    }

    fn tasks_by_id<'a>(
        &'a self,
        ids: impl Iterator<Item = &'a str> + 'a,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        ids.filter_map(|id| self.tasks.get(id).map(|t| &**t))
    }

    /// The cluster object; present from `swarm init` on.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next().map(|c| &**c)
    }

    /// The object of a uniquely named kind that has this exact name.
    pub fn named<T: StoredObject>(&self, name: &str) -> Option<&T> {
        let id = self.names.get(&(T::KIND, name.to_owned()))?;
        T::table(self).get(id).map(|o| &**o)
    }

    /// Resolves what a user typed: an exact ID, then an exact name, then a unique ID prefix.
    pub fn resolve<T: StoredObject>(&self, reference: &str) -> Result<&T, LookupError> {
        let not_found = || LookupError::NotFound {
            kind: T::KIND,
            reference: reference.to_owned(),
        };
        if reference.is_empty() {
            return Err(not_found());
        }
        if let Some(found) = self.get::<T>(reference) {
            return Ok(found);
        }
        let table = T::table(self);
        if T::UNIQUE_NAMES {
            if let Some(found) = self.named::<T>(reference) {
                return Ok(found);
            }
        } else {
            let mut by_name = table
                .values()
                .map(|o| &**o)
                .filter(|o| o.name() == Some(reference));
            if let Some(found) = by_name.next() {
                if by_name.next().is_none() {
                    return Ok(found);
                }
            }
        }
        let mut matches = table
            .range(reference.to_owned()..)
            .take_while(|(id, _)| id.starts_with(reference))
            .map(|(_, o)| &**o);
        match (matches.next(), matches.next()) {
            (Some(found), None) => Ok(found),
            (None, _) => Err(not_found()),
            (Some(_), Some(_)) => Err(LookupError::Ambiguous {
                kind: T::KIND,
                reference: reference.to_owned(),
                count: 2 + matches.count(),
            }),
        }
    }

    /// The store taken apart, each part named: a measurement drops them one at a time and
    /// counts what each held (`manager/benches/task_bytes.rs`, BENCHMARKS.md's "bytes per
    /// task").
    pub fn into_parts(self) -> Vec<(&'static str, Box<dyn std::any::Any>)> {
        let mut parts: Vec<(&'static str, Box<dyn std::any::Any>)> = vec![
            ("task table", Box::new(self.tasks)),
            (
                "the table of specs shared by tasks",
                Box::new(self.shared_specs),
            ),
            ("node table", Box::new(self.nodes)),
            ("service table", Box::new(self.services)),
            (
                "other tables, names",
                Box::new((
                    self.clusters,
                    self.networks,
                    self.secrets,
                    self.configs,
                    self.names,
                    self.managers,
                )),
            ),
        ];
        parts.extend(self.task_index.into_parts());
        parts
    }

    /// The object of type `T` whose unique name is `name`.
    pub fn find_by_name<T: StoredObject>(&self, name: &str) -> Option<&T> {
        T::table(self)
            .values()
            .map(|o| &**o)
            .find(|o| o.name() == Some(name))
    }
}

#[cfg(test)]
pub(crate) mod tests;
