//! The manager: replicated store, control API, CA, dispatcher, orchestrators and scheduler.
//!
//! Everything here runs inside `skiffd` on manager nodes; `worker` never imports this crate
//! and talks to it only through the `proto` services.

pub mod allocator;
pub mod bootstrap;
pub mod ca;
pub mod certificates;
pub mod controlapi;
pub mod dispatcher;
pub mod dispatcherapi;
pub mod events;
pub mod leader;
pub mod lifecycle;
pub mod logs;
mod loops;
pub mod manager;
pub mod metrics;
pub mod orchestrator;
pub mod raft;
pub mod raftapi;
pub mod scheduler;
pub mod settings;
pub mod status;
pub mod store;
pub mod transport;
pub mod units;

pub use manager::{Manager, RunningManager};
