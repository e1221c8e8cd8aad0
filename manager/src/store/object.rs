//! What every stored object type shares, so the store's logic is written once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use proto::{
    store_object, Cluster, Config, Meta, Network, Node, Secret, Service, StoreObject, Task,
};

use super::ObjectStore;

/// The kinds of stored objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// The one cluster object.
    Cluster,
    /// A host in the cluster.
    Node,
    /// A service.
    Service,
    /// A task of a service.
    Task,
    /// An overlay network.
    Network,
    /// A secret.
    Secret,
    /// A config.
    Config,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Cluster => "cluster",
            Kind::Node => "node",
            Kind::Service => "service",
            Kind::Task => "task",
            Kind::Network => "network",
            Kind::Secret => "secret",
            Kind::Config => "config",
        })
    }
}

static EMPTY_META: Meta = Meta {
    id: String::new(),
    version: 0,
    created_at: 0,
    updated_at: 0,
};

/// A type the store keeps: it has a [`Meta`], maybe a unique name, and a table.
pub trait StoredObject: prost::Message + Clone + Default + Sized + 'static {
    /// Which kind this is.
    const KIND: Kind;
    /// Whether no two objects of this kind may share a name.
    const UNIQUE_NAMES: bool;

    /// The object's meta (an empty one if unset).
    fn meta(&self) -> &Meta;
    /// The object's meta, created if unset.
    fn meta_mut(&mut self) -> &mut Meta;
    /// The name users know the object by, if it has one.
    fn name(&self) -> Option<&str>;
    /// The store's table of this kind.
    fn table(store: &ObjectStore) -> &BTreeMap<String, Arc<Self>>;
    /// The store's table of this kind, to change.
    fn table_mut(store: &mut ObjectStore) -> &mut BTreeMap<String, Arc<Self>>;
    /// Wraps the object for a log entry or snapshot.
    fn wrap(self) -> StoreObject;

    /// The object as a task, for the kind the store indexes beyond ID and name (so a
    /// service's, node's or state's tasks are found without a walk over every task).
    fn as_task(&self) -> Option<&Task> {
        None
    }
    /// The object as a task, to change (the store shares a new task's spec with others).
    fn as_task_mut(&mut self) -> Option<&mut Task> {
        None
    }
    /// The object as a node, for the index of managers (so finding them walks no node
    /// table of ten thousand).
    fn as_node(&self) -> Option<&Node> {
        None
    }
    /// The object's ID.
    fn id(&self) -> &str {
        &self.meta().id
    }
    /// The object's version (the log index that last wrote it).
    fn version(&self) -> u64 {
        self.meta().version
    }
}

macro_rules! stored_object {
    ($ty:ty, $kind:ident, $table:ident, $variant:ident, unique = $unique:expr, name = |$o:ident| $name:expr $(, as_task = |$s:ident| $task:expr)? $(, as_node = |$n:ident| $node:expr)?) => {
        impl StoredObject for $ty {
            const KIND: Kind = Kind::$kind;
            const UNIQUE_NAMES: bool = $unique;

            fn meta(&self) -> &Meta {
                self.meta.as_ref().unwrap_or(&EMPTY_META)
            }
            fn meta_mut(&mut self) -> &mut Meta {
                self.meta.get_or_insert_with(Meta::default)
            }
            fn name(&self) -> Option<&str> {
                let $o = self;
                $name
            }
            fn table(store: &ObjectStore) -> &BTreeMap<String, Arc<Self>> {
                &store.$table
            }
            fn table_mut(store: &mut ObjectStore) -> &mut BTreeMap<String, Arc<Self>> {
                &mut store.$table
            }
            fn wrap(self) -> StoreObject {
                StoreObject {
                    object: Some(store_object::Object::$variant(self.into())),
                }
            }
            $(
                fn as_task(&self) -> Option<&Task> {
                    let $s = self;
                    $task
                }
                fn as_task_mut(&mut self) -> Option<&mut Task> {
                    let $s = self;
                    $task
                }
            )?
            $(
                fn as_node(&self) -> Option<&Node> {
                    let $n = self;
                    $node
                }
            )?
        }
    };
}

stored_object!(
    Cluster,
    Cluster,
    clusters,
    Cluster,
    unique = true,
    name = |o| o.spec.as_ref().map(|s| s.name.as_str())
);
stored_object!(
    Node,
    Node,
    nodes,
    Node,
    unique = false,
    name = |o| o.description.as_ref().map(|d| d.hostname.as_str()),
    as_node = |n| Some(n)
);
stored_object!(
    Service,
    Service,
    services,
    Service,
    unique = true,
    name = |o| o.spec.as_ref().map(|s| s.name.as_str())
);
stored_object!(
    Task,
    Task,
    tasks,
    Task,
    unique = false,
    name = |_o| None,
    as_task = |o| Some(o)
);
stored_object!(
    Network,
    Network,
    networks,
    Network,
    unique = true,
    name = |o| o.spec.as_ref().map(|s| s.name.as_str())
);
stored_object!(
    Secret,
    Secret,
    secrets,
    Secret,
    unique = true,
    name = |o| o.spec.as_ref().map(|s| s.name.as_str())
);
stored_object!(
    Config,
    Config,
    configs,
    Config,
    unique = true,
    name = |o| o.spec.as_ref().map(|s| s.name.as_str())
);
