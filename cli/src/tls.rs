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

use std::fmt;
use std::fs;
use std::future::Future;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use manager::ca::MANAGER_NAME;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Root CA file in a node's certificate directory.
const CA_FILE: &str = "ca.pem";
/// Node certificate file.
const CERT_FILE: &str = "node.pem";
/// Node private key file (mode 0600).
const KEY_FILE: &str = "node.key";

/// A client that has not finished its TLS handshake by then is dropped, so stalled or
/// malicious peers cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Dialling plus the TLS handshake; cluster peers are on a LAN, so this is generous.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on idle connections notice a dead peer (e.g. a powered-off manager) long
/// before TCP would.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive keeps NAT and firewall state alive and eventually kills dead sockets on the
/// server side, where no HTTP/2 pings are sent.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// After an accept error such as running out of file descriptors, wait before retrying
/// instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Connections whose handshake finished but that the server has not picked up yet.
const ACCEPTED_QUEUE: usize = 64;

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

/// A fresh ECDSA P-256 key (PKCS#8 PEM) and a CSR for it (PEM). The CSR names nothing: the
/// CA decides the certificate's names.
pub fn generate_key_and_csr() -> Result<(String, String), TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::KeyGeneration)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(TlsError::KeyGeneration)?;
    Ok((key.serialize_pem(), csr))
}

/// Everything a node needs to speak on the cluster port, as stored in its certificate
/// directory.
#[derive(Clone)]
pub struct NodeCredentials {
    /// The cluster's root CA certificate (`ca.pem`).
    pub root_ca_pem: String,
    /// This node's certificate (`node.pem`).
    pub cert_pem: String,
    /// This node's private key (`node.key`).
    pub key_pem: String,
}

impl fmt::Debug for NodeCredentials {
    /// Leaves the key out, so credentials can be logged without leaking it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("root_ca_pem", &self.root_ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// Reads `ca.pem`, `node.pem` and `node.key` from `dir`.
    pub fn load(dir: &Path) -> Result<NodeCredentials, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|error| TlsError::Read { path, error })
        };
        Ok(NodeCredentials {
            root_ca_pem: read(CA_FILE)?,
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
        })
    }

    /// Writes the three files into `dir` (created with mode 0700 if missing). Each file is
    /// written to a temporary name, synced and renamed, so a crash never leaves a truncated
    /// file; all temporary files are complete before the first rename, which keeps the
    /// window in which a crash could pair a new key with an old certificate tiny. The key
    /// is created with mode 0600 from the start, so it is never readable by others; so are
    /// the certificates.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |error| TlsError::Write { path, error }
        };
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(write_err(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(write_err(dir))?;
        }
        let files = [
            // Certificates are not secret, but nothing in a node's data directory is for
            // other local users.
            (CA_FILE, &self.root_ca_pem, 0o600),
            (CERT_FILE, &self.cert_pem, 0o600),
            (KEY_FILE, &self.key_pem, 0o600),
        ];
        let mut staged = Vec::with_capacity(files.len());
        for (name, contents, mode) in files {
            let tmp = dir.join(format!(".{name}.tmp"));
            write_synced(&tmp, contents.as_bytes(), mode).map_err(write_err(&tmp))?;
            staged.push((tmp, dir.join(name)));
        }
        for (tmp, path) in staged {
            fs::rename(&tmp, &path).map_err(write_err(&path))?;
        }
        // Make the renames themselves durable.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err(dir))
    }
}

/// Creates (or truncates) `path` with `mode`, writes `contents` and syncs it.
fn write_synced(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // `mode` applies only when the file is created; a leftover temp file keeps its old mode.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// This node's certificate and key, shared by its TLS server and clients and replaceable
/// while they run: after a renewal, [`replace`](Self::replace) makes every *new*
/// handshake use the new certificate; established connections keep the one they were
/// made with (which stays valid until it expires).
#[derive(Clone, Debug)]
pub struct ReloadableIdentity {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
}

impl ReloadableIdentity {
    /// The identity in `creds` (certificate and key; the root CA is not used here).
    pub fn new(creds: &NodeCredentials) -> Result<ReloadableIdentity, TlsError> {
        Ok(ReloadableIdentity {
            current: Arc::new(RwLock::new(certified_key(creds)?)),
        })
    }

    /// Switches to the certificate and key in `creds`. On error the old identity stays.
    pub fn replace(&self, creds: &NodeCredentials) -> Result<(), TlsError> {
        let key = certified_key(creds)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for ReloadableIdentity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for ReloadableIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Parses the node certificate (chain) and key and checks that they belong together, so a
/// mismatched pair fails here rather than in every later handshake.
fn certified_key(creds: &NodeCredentials) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = parse_certs(&creds.cert_pem, "node certificate")?;
    let key = PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).map_err(|e| {
        TlsError::InvalidPem {
            what: "node key",
            reason: e.to_string(),
        }
    })?;
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::KeyMismatch)?;
    Ok(Arc::new(certified))
}

/// All certificates in `pem`; at least one.
fn parse_certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::InvalidPem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    Ok(certs)
}

/// A trust store holding the cluster's root CA (every certificate in `root_ca_pem`).
fn root_store(root_ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(root_ca_pem, "root CA certificate")? {
        roots.add(cert).map_err(TlsError::InvalidRootCa)?;
    }
    Ok(Arc::new(roots))
}

/// The cluster port's TLS server config: presents `identity`, verifies client certificates
/// against the root CA when a client sends one, and admits clients without one (joining
/// nodes; the RPC handlers refuse them everything but joining). Speaks only HTTP/2.
pub fn server_config(
    root_ca_pem: &str,
    identity: ReloadableIdentity,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(root_store(root_ca_pem)?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(TlsError::Verifier)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(identity));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption: a resumed session would carry the client certificate of the original
    // handshake, so a node that was just promoted (or demoted) would keep its old role.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and yields those that complete a TLS handshake, for
/// `tonic::transport::Server::serve_with_incoming_shutdown` (tonic reads the client's
/// certificates from the stream, so `Request::peer_certs` works in handlers).
///
/// Each handshake runs in its own task with a 10 s limit, so a slow or silent client delays
/// nobody else. Failed handshakes are logged at debug and skipped; accept errors (such as
/// running out of file descriptors) are logged and retried. The stream therefore never
/// yields an error and never ends on its own; dropping it (server shutdown) closes the
/// listener. Must be called inside a Tokio runtime.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, io::Error>> + Send + 'static
{
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(accept_loop(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
        tx,
    ));
    ReceiverStream::new(rx)
}

type Accepted = Result<tokio_rustls::server::TlsStream<TcpStream>, io::Error>;

/// The task behind [`tls_incoming`]: accepts TCP connections and hands each to its own
/// handshake task, which passes the finished TLS stream to `tx`.
async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<Accepted>,
) {
    loop {
        let accepted = tokio::select! {
            // The server dropped the stream: stop listening.
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_per_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection was lost before it was accepted");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept connections on the cluster port; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(e) = configure_socket(&tcp) {
            tracing::debug!(%peer, error = %e, "cannot set socket options");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    if tx.send(Ok(tls)).await.is_err() {
                        tracing::debug!(%peer, "server shutting down; connection dropped");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// No Nagle delay (gRPC messages are small and latency matters for Raft) and TCP keepalive.
fn configure_socket(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE)
        .with_interval(TCP_KEEPALIVE);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

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
        let mut config =
            verifying_client(root_ca_pem)?.with_client_cert_resolver(Arc::new(identity));
        config.alpn_protocols = vec![b"h2".to_vec()];
        // Every connection presents the current certificate (see `server_config`).
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsConnector {
            config: Arc::new(config),
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

/// A client config, still without client authentication, that trusts only `root_ca_pem`.
fn verifying_client(
    root_ca_pem: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsError::Config)?
        .with_root_certificates(root_store(root_ca_pem)?))
}

/// A channel to `addr` that verifies the server against `root_ca_pem` (it must be a manager)
/// but presents no certificate. For the join RPC (`IssueNodeCertificate`), which a node
/// makes before it has a certificate.
pub fn anonymous_channel(addr: &str, root_ca_pem: &str) -> Result<Channel, TlsError> {
    let mut config = verifying_client(root_ca_pem)?.with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(lazy_channel(addr, Ok(Arc::new(config))))
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
    let provider = provider();
    let verifier = Arc::new(AcceptAnyServerCert {
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map(|builder| {
            let mut config = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        });
    lazy_channel(addr, config)
}

/// Accepts any server certificate, but still checks the handshake signatures: the peer must
/// hold the key of the certificate it shows, even though nobody vouches for that
/// certificate.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use manager::ca::identity::{caller, tls_caller, Caller};
    use manager::ca::RootCa;
    use manager::transport::Connector as _;
    use proto::ca_client::CaClient;
    use proto::ca_server::{Ca, CaServer};
    use proto::{
        GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest,
        IssueNodeCertificateResponse, NodeRole, RenewNodeCertificateRequest,
        RenewNodeCertificateResponse,
    };
    use tokio::io::AsyncWriteExt as _;
    use tokio::sync::oneshot;
    use tonic::{Request, Response, Status};

    use super::*;

    const CLUSTER: &str = "testcluster";
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    /// Bounds every RPC so a broken test fails instead of hanging.
    const RPC_LIMIT: Duration = Duration::from_secs(10);

    /// Answers `GetRootCa` with the caller the interceptor recorded, as text.
    struct WhoAmI;

    #[tonic::async_trait]
    impl Ca for WhoAmI {
        async fn get_root_ca(
            &self,
            req: Request<GetRootCaRequest>,
        ) -> Result<Response<GetRootCaResponse>, Status> {
            // Also check that tonic exposes the certificates to handlers directly.
            let has_certs = req.peer_certs().is_some_and(|c| !c.is_empty());
            let who = match caller(&req) {
                Caller::Node(id) => {
                    assert!(has_certs);
                    format!("{}/{}", id.node_id, id.role.as_str_name())
                }
                Caller::Anonymous => {
                    assert!(!has_certs);
                    "anonymous".to_owned()
                }
                Caller::Local => "local".to_owned(),
            };
            Ok(Response::new(GetRootCaResponse { cert_pem: who }))
        }

        async fn issue_node_certificate(
            &self,
            _: Request<IssueNodeCertificateRequest>,
        ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
            Err(Status::unimplemented("test"))
        }

        async fn renew_node_certificate(
            &self,
            _: Request<RenewNodeCertificateRequest>,
        ) -> Result<Response<RenewNodeCertificateResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
    }

    fn creds(root: &RootCa, node_id: &str, role: NodeRole) -> NodeCredentials {
        let (key_pem, csr_pem) = generate_key_and_csr().unwrap();
        let issued = root.issue(&csr_pem, node_id, role, CLUSTER, DAY).unwrap();
        NodeCredentials {
            root_ca_pem: root.cert_pem().to_owned(),
            cert_pem: issued.cert_pem,
            key_pem,
        }
    }

    struct TestServer {
        addr: SocketAddr,
        identity: ReloadableIdentity,
        _stop: oneshot::Sender<()>,
    }

    async fn serve(server_creds: &NodeCredentials) -> TestServer {
        install_crypto_provider();
        let identity = ReloadableIdentity::new(server_creds).unwrap();
        let config = server_config(&server_creds.root_ca_pem, identity.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tls_incoming(listener, config);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CaServer::with_interceptor(WhoAmI, tls_caller))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        TestServer {
            addr,
            identity,
            _stop: stop,
        }
    }

    async fn who(channel: Channel) -> Result<String, Status> {
        let mut client = CaClient::new(channel);
        let call = client.get_root_ca(GetRootCaRequest {});
        match tokio::time::timeout(RPC_LIMIT, call).await {
            Ok(reply) => reply.map(|r| r.into_inner().cert_pem),
            Err(_) => panic!("RPC did not finish within {RPC_LIMIT:?}"),
        }
    }

    fn connector(creds: &NodeCredentials) -> TlsConnector {
        TlsConnector::new(&creds.root_ca_pem, ReloadableIdentity::new(creds).unwrap()).unwrap()
    }

    /// The `rustls::Error` somewhere in the cause chain of a failed RPC.
    fn tls_error(status: &Status) -> Option<rustls::Error> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(status);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<rustls::Error>() {
                return Some(r.clone());
            }
            if let Some(r) = e
                .downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
            {
                return Some(r.clone());
            }
            cur = e.source();
        }
        None
    }

    #[tokio::test]
    async fn certified_clients_are_identified() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let server = serve(&creds(&root, "mgr1", NodeRole::Manager)).await;
        let addr = server.addr.to_string();

        let manager = connector(&creds(&root, "mgr2", NodeRole::Manager));
        assert_eq!(
            who(manager.channel(&addr)).await.unwrap(),
            "mgr2/NODE_ROLE_MANAGER"
        );
        let worker = connector(&creds(&root, "wrk1", NodeRole::Worker));
        assert_eq!(
            who(worker.channel(&addr)).await.unwrap(),
            "wrk1/NODE_ROLE_WORKER"
        );
    }

    #[tokio::test]
    async fn anonymous_and_unverified_clients_are_admitted_as_anonymous() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let server = serve(&creds(&root, "mgr1", NodeRole::Manager)).await;
        let addr = server.addr.to_string();

        let channel = anonymous_channel(&addr, root.cert_pem()).unwrap();
        assert_eq!(who(channel).await.unwrap(), "anonymous");
        assert_eq!(who(unverified_channel(&addr)).await.unwrap(), "anonymous");

        // The anonymous channel still authenticates the server: another cluster's root
        // does not vouch for it.
        let other = RootCa::generate("othercluster").unwrap();
        let channel = anonymous_channel(&addr, other.cert_pem()).unwrap();
        let err = who(channel).await.unwrap_err();
        assert!(
            matches!(
                tls_error(&err),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn certificate_from_another_ca_is_refused() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let server = serve(&creds(&root, "mgr1", NodeRole::Manager)).await;
        let addr = server.addr.to_string();

        // The attacker knows our (public) root and trusts it, but holds a manager
        // certificate from a CA of its own.
        let rogue_root = RootCa::generate(CLUSTER).unwrap();
        let rogue = creds(&rogue_root, "mgr9", NodeRole::Manager);
        let rogue_connector =
            TlsConnector::new(root.cert_pem(), ReloadableIdentity::new(&rogue).unwrap()).unwrap();
        // With TLS 1.3 the client finishes its side of the handshake before the server has
        // judged its certificate, so the refusal arrives as an alert on the first request.
        // h2 passes that error on as a plain `io::Error` holding only the message (it cannot
        // clone the original), so there is no `rustls::Error` to find, only the text.
        let err = who(rogue_connector.channel(&addr)).await.unwrap_err();
        assert!(
            format!("{err:?}").contains("received fatal alert"),
            "{err:?}"
        );

        // The server kept serving everyone else.
        let good = connector(&creds(&root, "mgr2", NodeRole::Manager));
        assert_eq!(
            who(good.channel(&addr)).await.unwrap(),
            "mgr2/NODE_ROLE_MANAGER"
        );
    }

    #[tokio::test]
    async fn a_worker_cannot_pose_as_a_manager_server() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let server = serve(&creds(&root, "wrk1", NodeRole::Worker)).await;
        let addr = server.addr.to_string();

        let client = connector(&creds(&root, "mgr1", NodeRole::Manager));
        let err = who(client.channel(&addr)).await.unwrap_err();
        assert!(
            matches!(
                tls_error(&err),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{err:?}"
        );
        let err = who(anonymous_channel(&addr, root.cert_pem()).unwrap())
            .await
            .unwrap_err();
        assert!(tls_error(&err).is_some(), "{err:?}");
    }

    #[tokio::test]
    async fn replaced_identities_are_used_by_new_connections() {
        let root = RootCa::generate(CLUSTER).unwrap();
        // A server that is still a worker: managers refuse it.
        let server = serve(&creds(&root, "node1", NodeRole::Worker)).await;
        let addr = server.addr.to_string();
        let client_identity =
            ReloadableIdentity::new(&creds(&root, "node2", NodeRole::Worker)).unwrap();
        let client = TlsConnector::new(root.cert_pem(), client_identity.clone()).unwrap();
        assert!(who(client.channel(&addr)).await.is_err());

        // Both are promoted: the server now presents a manager certificate and the client
        // a manager certificate, without rebuilding any config.
        server
            .identity
            .replace(&creds(&root, "node1", NodeRole::Manager))
            .unwrap();
        client_identity
            .replace(&creds(&root, "node2", NodeRole::Manager))
            .unwrap();
        assert_eq!(
            who(client.channel(&addr)).await.unwrap(),
            "node2/NODE_ROLE_MANAGER"
        );

        // A mismatched certificate and key are refused and the old identity stays.
        let mut broken = creds(&root, "node2", NodeRole::Worker);
        broken.key_pem = generate_key_and_csr().unwrap().0;
        assert!(matches!(
            client_identity.replace(&broken),
            Err(TlsError::KeyMismatch(_))
        ));
        assert_eq!(
            who(client.channel(&addr)).await.unwrap(),
            "node2/NODE_ROLE_MANAGER"
        );
    }

    #[tokio::test]
    async fn stalled_and_garbage_connections_block_nobody() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let server = serve(&creds(&root, "mgr1", NodeRole::Manager)).await;
        let addr = server.addr.to_string();

        // One client connects and says nothing; another sends garbage.
        let _silent = TcpStream::connect(&addr).await.unwrap();
        let mut garbage = TcpStream::connect(&addr).await.unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // A plaintext gRPC client fails, too.
        let plain = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        assert!(who(plain).await.is_err());

        let client = connector(&creds(&root, "mgr2", NodeRole::Manager));
        let start = std::time::Instant::now();
        assert_eq!(
            who(client.channel(&addr)).await.unwrap(),
            "mgr2/NODE_ROLE_MANAGER"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn unreachable_address_fails_on_first_rpc() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let client = connector(&creds(&root, "mgr2", NodeRole::Manager));
        // A closed port, and something that is not an address at all: channels are made
        // lazily either way and the RPC reports the failure.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap().to_string();
        drop(listener);
        for addr in [closed.as_str(), "not an address"] {
            let err = who(client.channel(addr)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unavailable, "{addr}: {err:?}");
        }
    }

    #[test]
    fn credentials_round_trip_through_a_directory() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let creds = creds(&root, "node1", NodeRole::Worker);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        creds.save(&dir).unwrap();
        // Saving again (renewal) replaces the files.
        let renewed = NodeCredentials {
            cert_pem: root
                .issue(
                    &generate_key_and_csr().unwrap().1,
                    "node1",
                    NodeRole::Worker,
                    CLUSTER,
                    DAY,
                )
                .unwrap()
                .cert_pem,
            ..creds.clone()
        };
        renewed.save(&dir).unwrap();
        let loaded = NodeCredentials::load(&dir).unwrap();
        assert_eq!(loaded.root_ca_pem, renewed.root_ca_pem);
        assert_eq!(loaded.cert_pem, renewed.cert_pem);
        assert_eq!(loaded.key_pem, renewed.key_pem);

        let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("node.key"), 0o600);
        assert_eq!(mode("ca.pem"), 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.pem", "node.key", "node.pem"]);
        // The key never shows up in debug output.
        assert!(!format!("{loaded:?}").contains("PRIVATE KEY"));

        match NodeCredentials::load(&tmp.path().join("missing")) {
            Err(TlsError::Read { path, .. }) => assert!(path.ends_with("ca.pem")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_pem_is_reported() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let mut bad = creds(&root, "node1", NodeRole::Worker);
        bad.cert_pem = "nothing here".into();
        assert!(matches!(
            ReloadableIdentity::new(&bad),
            Err(TlsError::NoCertificate(_))
        ));
        let good = creds(&root, "node1", NodeRole::Worker);
        let identity = ReloadableIdentity::new(&good).unwrap();
        assert!(matches!(
            server_config("nothing here", identity.clone()),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            TlsConnector::new("", identity),
            Err(TlsError::NoCertificate(_))
        ));
    }

    #[test]
    fn generated_csr_is_accepted_by_the_ca() {
        let root = RootCa::generate(CLUSTER).unwrap();
        let (key_pem, csr_pem) = generate_key_and_csr().unwrap();
        assert!(key_pem.contains("PRIVATE KEY") && csr_pem.contains("CERTIFICATE REQUEST"));
        let issued = root
            .issue(&csr_pem, "node1", NodeRole::Manager, CLUSTER, DAY)
            .unwrap();
        // The key belongs to the issued certificate.
        ReloadableIdentity::new(&NodeCredentials {
            root_ca_pem: root.cert_pem().to_owned(),
            cert_pem: issued.cert_pem,
            key_pem,
        })
        .unwrap();
    }
}
