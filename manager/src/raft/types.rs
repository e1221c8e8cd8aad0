//! The types openraft is instantiated with.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::store::ApplyError;

/// A log entry's payload: a protobuf-encoded [`proto::StoreEntry`] (one writer's batch, or
/// the batches of several). Kept encoded so the log and the wire carry the schema's own,
/// evolvable encoding.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

/// Its size only: an entry may carry a secret, and openraft logs entries at debug level.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

/// What applying a [`Command`] gave: one result per batch it held, in order (none for
/// entries openraft makes itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult(pub Vec<Result<(), ApplyError>>);

openraft::declare_raft_types!(
    /// skiff's Raft: u64 node IDs, the cluster address as node data, snapshots in memory.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log ID of this Raft.
pub type LogId = openraft::LogId<u64>;
/// A storage error of this Raft.
pub type StorageError = openraft::StorageError<u64>;
