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
mod apply;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod handle;
mod local;
mod object;
mod proposer;
mod snapshot;

pub use action::{create, delete, update};
pub use apply::ApplyError;
pub use error::StoreError;
pub use handle::Store;
pub use local::{Applier, Applying, LocalStore, WatchEvent};
pub use object::{Kind, StoredObject};
pub use proposer::Proposer;

use std::collections::{BTreeMap, HashMap};

use proto::{Cluster, Config, Network, Node, Secret, Service, Task};

/// Every object of the cluster, by kind and ID.
#[derive(Clone, Debug, Default)]
pub struct ObjectStore {
    clusters: BTreeMap<String, Cluster>,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, Task>,
    networks: BTreeMap<String, Network>,
    secrets: BTreeMap<String, Secret>,
    configs: BTreeMap<String, Config>,
    /// ID by name, for the kinds whose names are unique: checking a new name and resolving
    /// a name must not walk a whole table (that made every write O(objects)).
    names: HashMap<(Kind, String), String>,
    /// How many tasks are in each state (absent: none), kept as tasks change, so a metrics
    /// scrape reads it instead of walking every task under the read guard.
    task_states: BTreeMap<i32, usize>,
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
        T::table(self).get(id)
    }

    /// All objects of type `T`, in ID order.
    pub fn list<T: StoredObject>(&self) -> impl Iterator<Item = &T> {
        T::table(self).values()
    }

    /// How many objects of type `T` there are.
    pub fn count<T: StoredObject>(&self) -> usize {
        T::table(self).len()
    }

    /// How many tasks are in each state (`proto::TaskState` as `i32`; states with none are
    /// absent).
    pub fn tasks_by_state(&self) -> &BTreeMap<i32, usize> {
        &self.task_states
    }

    /// The cluster object; present from `swarm init` on.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.clusters.values().next()
    }

    /// The object of a uniquely named kind that has this exact name.
    pub fn named<T: StoredObject>(&self, name: &str) -> Option<&T> {
        let id = self.names.get(&(T::KIND, name.to_owned()))?;
        T::table(self).get(id)
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
            let mut by_name = table.values().filter(|o| o.name() == Some(reference));
            if let Some(found) = by_name.next() {
                if by_name.next().is_none() {
                    return Ok(found);
                }
            }
        }
        let mut matches = table
            .range(reference.to_owned()..)
            .take_while(|(id, _)| id.starts_with(reference))
            .map(|(_, o)| o);
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

    /// The object of type `T` whose unique name is `name`.
    pub fn find_by_name<T: StoredObject>(&self, name: &str) -> Option<&T> {
        T::table(self).values().find(|o| o.name() == Some(name))
    }
}

#[cfg(test)]
pub(crate) mod tests;
