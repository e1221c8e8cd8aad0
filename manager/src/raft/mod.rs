//! Replication of the store with openraft: sled-backed log, the state machine over the
//! object store, the gRPC network between managers, and the node that ties them together.

// openraft's storage and network traits fix these error types; boxing them is not ours to do.
#![allow(clippy::result_large_err)]

pub mod at_rest;
pub mod format;
mod forwarding;
mod log_store;
mod network;
mod node;
mod proposals;
mod state_machine;
mod types;

pub use forwarding::MAX_FORWARDED_BATCHES;
pub use log_store::LogStore;
pub use network::PeerHealth;
pub use node::{was_forwarded, RaftNode, RaftSettings, QUORUM_TIMEOUT};
pub use state_machine::StateMachine;
pub use types::{Command, CommandResult, LogId, StorageError, TypeConfig};

/// Raft messages may carry many entries or a snapshot chunk: allow more than the default.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
