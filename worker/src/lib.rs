//! The node agent: keeps a session with the cluster's leader (heartbeats, role and manager
//! list changes) and, from it, runs the node's tasks.
//!
//! It talks to managers only through the `proto` services, over channels the composition
//! root (`skiffd`) dials with the node's certificate.

pub mod agent;
mod controller;
pub mod health;
pub mod logs;
pub mod net;
pub mod reporter;
mod saved;
pub mod secrets;
pub mod session;

use std::sync::Arc;

use tonic::transport::Channel;

/// Opens a (lazy) channel to a manager's cluster address.
pub type Dialer = Arc<dyn Fn(&str) -> Channel + Send + Sync>;
