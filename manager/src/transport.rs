//! How the manager reaches other managers. The composition root (`skiffd`) supplies the
//! implementation (mutual TLS with the node's certificate), so this crate stays free of
//! transport setup and tests can supply their own.

use tonic::transport::Channel;

/// Opens channels to other managers' cluster ports.
pub trait Connector: Send + Sync + 'static {
    /// A lazily connecting channel to `addr` (`host:port`). Must not connect eagerly: the
    /// first RPC connects, and a failure surfaces as an `Unavailable` status there.
    fn channel(&self, addr: &str) -> Channel;

    /// A lazily connecting channel to the node `node_id` (manager or worker) at `addr`; the
    /// server must prove it is that node.
    fn node_channel(&self, addr: &str, node_id: &str) -> Channel;
}
