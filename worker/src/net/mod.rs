//! The node's share of the network: overlay networks, the node-local bridges that give every
//! task a namespace of its own and a way out, the routing mesh's data paths, and service
//! discovery (DNS and VIPs) in each task's namespace.
//!
//! The kernel path (nftables DNAT over a round-robin `numgen` map) is the default; where
//! nftables is missing, [`proxy`] carries the same traffic in userspace.
//!
//! Every change to the node's network (iproute2, nft, sysctls) goes through
//! [`commands::Commands`], so the logic above it is unit-tested without root against the
//! recording fake beside it (`fake.rs`).

pub mod bridge;
pub mod commands;
pub mod datapath;
pub mod discovery;
pub mod dns;
#[cfg(test)]
pub(crate) mod fake;
pub mod host_ports;
pub mod mesh;
pub mod overlay;
pub mod proxy;
