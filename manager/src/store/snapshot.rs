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

    /// The snapshot [`ObjectStore::to_snapshot`] makes, with its `format` and `outcomes`,
    /// encoded one object at a time: the same bytes as encoding the whole message, without
    /// holding a copy of every object beside them while it is built (2.7 KB per task of the
    /// services bench, BENCHMARKS.md "bytes per task").
    pub fn encode_snapshot(&self, format: u32, outcomes: &[proto::ProposalOutcome]) -> Vec<u8> {
        use prost::encoding::{message, uint32};
        // Fields in tag order, each as prost's derived encoder writes it.
        let mut buf = Vec::new();
        fn add<T: StoredObject>(store: &ObjectStore, buf: &mut Vec<u8>) {
            for object in store.list::<T>() {
                message::encode(1, &object.clone().wrap(), buf);
            }
        }
        add::<proto::Cluster>(self, &mut buf);
        add::<proto::Node>(self, &mut buf);
        add::<proto::Service>(self, &mut buf);
        add::<proto::Task>(self, &mut buf);
        add::<proto::Network>(self, &mut buf);
        add::<proto::Secret>(self, &mut buf);
        add::<proto::Config>(self, &mut buf);
        if format != 0 {
            uint32::encode(2, &format, &mut buf);
        }
        for outcome in outcomes {
            message::encode(3, outcome, &mut buf);
        }
        buf.shrink_to_fit();
        buf
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
