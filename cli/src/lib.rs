//! `skiff`, the command line, and `skiffd`, the daemon: the composition root of skiff.
//!
//! The binaries are thin: `skiff` parses arguments and calls [`client`]; `skiffd` builds a
//! [`daemon::Daemon`]. [`tls`] is the cluster port's mutual-TLS transport both use.

pub mod client;
pub mod daemon;
pub mod logging;
pub mod tls;
