//! The transport on every node's cluster port (default 2377): mutual TLS with rustls and
//! certificates from the cluster's own CA (`manager::ca`).
//!
//! - Servers ([`server_config`], [`tls_incoming`]) verify client certificates against the
//!   root CA but do not require one, because a joining node calls the CA service before it
//!   has a certificate. What a caller may do is decided per RPC from its certificate
//!   (`manager::ca::identity::tls_caller`), not here.
//! - Clients ([`TlsConnector`]) verify the server against the root CA *and* require the DNS
//!   name `skiff-manager`, which only manager certificates carry, so a worker (or anything
//!   else signed by another CA) can never pose as a manager.
//! - Node certificates are short-lived and renewed while running: [`ReloadableIdentity`] is
//!   shared by the server and client configs and swapped in place.
//!
//! Every config here is built with rustls' ring provider explicitly, so nothing depends on
//! the process-wide default; [`install_crypto_provider`] exists for other rustls users in
//! the process.
//!
//! # Layout
//!
//! One file per concern, as swarmkit's `ca/keyreadwriter.go` and `ca/transport.go`:
//!
//! - `credentials`: the node's key, certificate and root CA on disk, and the key and CSR
//!   it asks the CA to sign.
//! - `identity`: the certificate and key it presents, swapped in place on renewal.
//! - `config`: who trusts whom: the server's and each client's rustls config and verifier.
//! - `listener`: TCP in, finished TLS streams out, for the cluster port's server.
//! - `channel`: tonic channels and their dialer, for each kind of client.
//!
//! Renewal (swarmkit's `ca/renewer.go`) stays in the daemon (`daemon::renewal`): deciding
//! when is one line, but renewing is a call to the cluster's CA through the node's
//! membership, serialised with joining, leaving and role changes under the daemon's
//! membership lock. Here it needs nothing but [`NodeCredentials`] and
//! [`ReloadableIdentity::replace`], so this module knows no cluster RPC and no daemon state.

mod channel;
mod config;
mod credentials;
mod identity;
mod listener;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tokio::net::TcpStream;

pub use channel::{anonymous_channel, unverified_channel, TlsConnector};
pub use config::server_config;
pub use credentials::{generate_key_and_csr, NodeCredentials};
pub use identity::ReloadableIdentity;
pub use listener::{tls_incoming, tls_incoming_on};

/// The cluster port when an address names none, as Docker's.
pub const DEFAULT_PORT: u16 = 2377;

/// TCP keepalive keeps NAT and firewall state alive and eventually kills dead sockets on the
/// server side, where no HTTP/2 pings are sent.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Why TLS could not be set up. Messages include their cause (there is no separate
/// `source`, so `{:#}` chains do not repeat it).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credentials file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// A credentials file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        error: io::Error,
    },
    /// PEM text holds no usable certificate.
    #[error("the {0} contains no PEM certificate")]
    NoCertificate(&'static str),
    /// PEM text could not be parsed.
    #[error("the {what} is not valid PEM: {reason}")]
    InvalidPem {
        /// Which input.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// The node key does not match the node certificate, or cannot be used.
    #[error("the node key cannot be used with the node certificate: {0}")]
    KeyMismatch(rustls::Error),
    /// The root CA certificate cannot be used as a trust anchor.
    #[error("the root CA certificate cannot be trusted: {0}")]
    InvalidRootCa(rustls::Error),
    /// Building the client certificate verifier failed.
    #[error("cannot verify client certificates against the root CA: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(rustls::Error),
    /// Making a key pair or CSR failed.
    #[error("cannot generate a key and certificate request: {0}")]
    KeyGeneration(rcgen::Error),
}

/// Installs ring as the process-wide rustls crypto provider. Call it first thing in `main`
/// (and in tests) so that any library building rustls configs from the default does not
/// panic when several providers are compiled in. Harmless if a provider is already
/// installed.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already; that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The provider every config in this module is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Only TLS 1.3: both ends are always skiff, and 1.3 encrypts the client certificate.
const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// No Nagle delay (gRPC messages are small and latency matters for Raft) and TCP keepalive.
fn configure_socket(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE)
        .with_interval(TCP_KEEPALIVE);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}
