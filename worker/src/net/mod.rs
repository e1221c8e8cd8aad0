//! The node's share of the network: overlay networks and the routing mesh's data paths.
//!
//! The kernel path (nftables DNAT over a round-robin `numgen` map) is the default; where
//! nftables is missing, [`proxy`] carries the same traffic in userspace.

pub mod datapath;
pub mod dns;
pub mod mesh;
pub mod overlay;
pub mod proxy;
