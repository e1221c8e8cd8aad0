//! Replication of the store with openraft: sled-backed log, the state machine over the
//! object store, the gRPC network between managers, and the node that ties them together.

mod log_store;
mod state_machine;
mod types;

pub use log_store::LogStore;
pub use state_machine::{StateMachine, StoreHandle, WatchEvent};
pub use types::{Command, CommandResult, LogId, StorageError, TypeConfig};
