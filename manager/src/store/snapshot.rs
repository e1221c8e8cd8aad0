//! The whole store as one protobuf message, for Raft snapshots.

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

    /// The store a snapshot describes.
    pub fn from_snapshot(snapshot: StoreSnapshot) -> Self {
        let mut store = ObjectStore::default();
        for object in snapshot.objects {
            store.insert_raw(object);
        }
        store
    }
}
