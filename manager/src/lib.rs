//! The manager: replicated store, control API, CA, dispatcher, orchestrators and scheduler.
//!
//! Everything here runs inside `skiffd` on manager nodes; `worker` never imports this crate
//! and talks to it only through the `proto` services.

pub mod ca;
pub mod raft;
pub mod store;
pub mod transport;
