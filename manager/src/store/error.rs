//! Why the store could not serve a read or a write. Subsystems see only this type; the gRPC
//! services turn it into a status in one place (`crate::status`).

use super::ApplyError;

/// Why a write or a read barrier failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The batch was committed but refused by the state machine.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// No leader could be reached, or the leader could not reach a quorum, in time.
    #[error("no quorum: this manager cannot reach a leader that has a majority of managers (the cluster needs {quorum} of {managers} managers); check that the other managers are running and reachable, then retry")]
    NoQuorum {
        /// Managers needed.
        quorum: usize,
        /// Managers in the group.
        managers: usize,
    },
    /// This manager is not (yet) in the group it knows of: it is still joining.
    #[error("this manager is still joining the managers' Raft group; retry in a moment")]
    Joining,
    /// A write only the leader may commit, on a manager that no longer leads.
    #[error("this manager is no longer the leader; retry")]
    NotLeader,
    /// The leader refused a write or read this manager forwarded. Its code and message go
    /// back to the caller as the leader gave them.
    #[error("{message}")]
    Remote {
        /// The leader's gRPC code.
        code: tonic::Code,
        /// The leader's message.
        message: String,
    },
    /// Replication itself stopped.
    #[error("the Raft node has stopped: {0}")]
    Stopped(String),
}

impl StoreError {
    /// Whether someone else wrote an object the batch read: reading again may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Apply(ApplyError::Conflict { .. }))
    }
}
