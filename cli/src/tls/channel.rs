//! The client side of the cluster port: lazily connecting tonic channels whose dialer
//! runs TCP and the TLS handshake itself, for each kind of caller (a node with its
//! certificate, a joining node with only the root CA, a joining node with nothing yet).
//!
//! The dialer is ours, not tonic's TLS, because tonic's TLS settings take PEM, not a
//! rustls config with a reloadable identity or a custom verifier, and because the server
//! name checked is not the address dialled: `skiff-manager` for any manager, or a node ID
//! to reach exactly that node. Channels are lazy, so a bad address or an unreachable node
//! is reported by the first RPC, as the `manager::transport::Connector` contract asks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use manager::ca::MANAGER_NAME;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::config::{anonymous_client_config, client_config, unverified_client_config};
use super::{configure_socket, ReloadableIdentity, TlsError};

/// Dialling plus the TLS handshake; cluster peers are on a LAN, so this is generous.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on idle connections notice a dead peer (e.g. a powered-off manager) long
/// before TCP would.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection, and every call on it, fails.
/// gRPC's own default: a manager saturated by a large reconciliation answered later than
/// the 5 s this was, and a 100,000-task `ListTasks` died with it (issue 20). A dead peer is
/// still noticed within half a minute, and Raft does not wait for this: its own deadlines
/// (heartbeats, elections) notice a lost manager in under a second.
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Client side of the cluster port: verifies that the server holds a *manager* certificate
/// of this cluster and presents this node's certificate. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// A connector trusting only `root_ca_pem` and authenticating as `identity` (which may
    /// later be [`replace`](ReloadableIdentity::replace)d).
    pub fn new(root_ca_pem: &str, identity: ReloadableIdentity) -> Result<TlsConnector, TlsError> {
        Ok(TlsConnector {
            config: client_config(root_ca_pem, identity)?,
        })
    }
}

impl manager::transport::Connector for TlsConnector {
    fn channel(&self, addr: &str) -> Channel {
        lazy_channel(addr, Ok(self.config.clone()))
    }

    fn node_channel(&self, addr: &str, node_id: &str) -> Channel {
        // Every node certificate names its node ID, so this reaches exactly that node.
        lazy_channel_to(addr, node_id, Ok(self.config.clone()))
    }
}

/// A channel to `addr` that verifies the server against `root_ca_pem` (it must be a manager)
/// but presents no certificate. For the join RPC (`IssueNodeCertificate`), which a node
/// makes before it has a certificate.
pub fn anonymous_channel(addr: &str, root_ca_pem: &str) -> Result<Channel, TlsError> {
    Ok(lazy_channel(
        addr,
        Ok(anonymous_client_config(root_ca_pem)?),
    ))
}

/// A channel to `addr` that accepts **any** server certificate.
///
/// **Only** for fetching the root CA at join time (`GetRootCa`), when the joining node does
/// not know the root yet. The server is not authenticated, so anything received is
/// untrusted until the caller has compared the root CA's digest (`manager::ca::cert_digest`)
/// with the digest in the join token, and nothing secret (such as the join token) may be
/// sent over this channel. Every later call must use [`anonymous_channel`] or
/// [`TlsConnector`].
pub fn unverified_channel(addr: &str) -> Channel {
    lazy_channel(addr, unverified_client_config())
}

/// A lazily connecting channel to `addr` whose connections are TLS with `config` and the
/// server name `skiff-manager`. A config that could not be built is reported by the first
/// RPC, like any other connection failure.
fn lazy_channel(addr: &str, config: Result<Arc<ClientConfig>, rustls::Error>) -> Channel {
    lazy_channel_to(addr, MANAGER_NAME, config)
}

/// A channel to `addr` that accepts only a server whose certificate names `server_name`.
fn lazy_channel_to(
    addr: &str,
    server_name: &str,
    config: Result<Arc<ClientConfig>, rustls::Error>,
) -> Channel {
    // The URI only supplies the HTTP/2 authority; the dialer connects to `addr` itself. An
    // address that is not a valid authority therefore still yields a channel, whose first
    // RPC fails with the dialer's "invalid address" error, as the `Connector` contract asks.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Endpoint::from_static("http://skiff-manager"))
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    endpoint.connect_with_connector_lazy(Dialer {
        addr: addr.into(),
        server_name: server_name.into(),
        tls: config.map(tokio_rustls::TlsConnector::from),
    })
}

/// Dials TCP and runs the TLS handshake for tonic (a `tower::Service<Uri>`).
#[derive(Clone)]
struct Dialer {
    addr: Arc<str>,
    server_name: Arc<str>,
    tls: Result<tokio_rustls::TlsConnector, rustls::Error>,
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<Uri> for Dialer {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr.clone();
        let name = self.server_name.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            // TLS errors travel as `rustls::Error` inside the `io::Error`, so callers can
            // tell a certificate problem from an unreachable host.
            let tls = tls.map_err(io::Error::other)?;
            let server_name = ServerName::try_from(name.to_string()).map_err(io::Error::other)?;
            let tcp = TcpStream::connect(&*addr).await?;
            configure_socket(&tcp)?;
            let stream = tls.connect(server_name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
