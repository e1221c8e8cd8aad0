//! The whole store as one protobuf message, for Raft snapshots.

use std::sync::Arc;

use proto::StoreSnapshot;

use super::{ObjectStore, StoredObject};

impl ObjectStore {
    /// Every object, in a stable order (kind, then ID).
    pub fn to_snapshot(&self) -> StoreSnapshot {
        let mut objects = Vec::new();
        fn add<T: StoredObject>(store: &ObjectStore, out: &mut Vec<proto::StoreObject>) {
            out.extend(store.list::<T>().cloned().map(T::wrap));
        }
        add::<proto::Cluster>(self, &mut objects);
        add::<proto::Node>(self, &mut objects);
        add::<proto::Service>(self, &mut objects);
        add::<proto::Task>(self, &mut objects);
        add::<proto::Network>(self, &mut objects);
        add::<proto::Secret>(self, &mut objects);
        add::<proto::Config>(self, &mut objects);
        StoreSnapshot {
            objects,
            ..Default::default()
        }
    }

    /// Its objects at this moment, shared with it rather than copied, for a snapshot.
    pub fn objects(&self) -> StoreObjects {
        fn shared<T: StoredObject>(store: &ObjectStore) -> Vec<Arc<T>> {
            T::table(store).values().cloned().collect()
        }
        StoreObjects {
            clusters: shared(self),
            nodes: shared(self),
            services: shared(self),
            tasks: shared(self),
            networks: shared(self),
            secrets: shared(self),
            configs: shared(self),
        }
    }

    /// The store a snapshot describes.
    pub fn from_snapshot(snapshot: StoreSnapshot) -> Self {
        let mut store = ObjectStore::default();
        for object in snapshot.objects {
            store.insert_raw(object);
        }
        store
    }
}

/// A store's objects at one moment, each shared with the store (a pointer per object):
/// what a snapshot is encoded from while apply goes on. A copy of the store, with its
/// tables' keys and its indexes, took about half a GiB more of each manager at a million
/// tasks, at the moment all three built their snapshots.
#[derive(Default)]
pub struct StoreObjects {
    clusters: Vec<Arc<proto::Cluster>>,
    nodes: Vec<Arc<proto::Node>>,
    services: Vec<Arc<proto::Service>>,
    tasks: Vec<Arc<proto::Task>>,
    networks: Vec<Arc<proto::Network>>,
    secrets: Vec<Arc<proto::Secret>>,
    configs: Vec<Arc<proto::Config>>,
}

impl StoreObjects {
    /// The snapshot [`ObjectStore::to_snapshot`] makes, with its `format` and `outcomes`,
    /// appended to `buf` one object at a time: the same bytes as encoding the whole message,
    /// without holding a copy of every object beside them while it is built (2.7 KB per
    /// task of the services bench, BENCHMARKS.md "bytes per task").
    pub fn encode_snapshot(
        &self,
        format: u32,
        outcomes: &[proto::ProposalOutcome],
        buf: &mut Vec<u8>,
    ) {
        use prost::encoding::{message, uint32};
        // Fields in tag order, each as prost's derived encoder writes it.
        fn add<T: StoredObject>(objects: &[Arc<T>], buf: &mut Vec<u8>) {
            for object in objects {
                message::encode(1, &T::clone(object).wrap(), buf);
            }
        }
        add(&self.clusters, buf);
        add(&self.nodes, buf);
        add(&self.services, buf);
        add(&self.tasks, buf);
        add(&self.networks, buf);
        add(&self.secrets, buf);
        add(&self.configs, buf);
        if format != 0 {
            uint32::encode(2, &format, buf);
        }
        for outcome in outcomes {
            message::encode(3, outcome, buf);
        }
    }
}
