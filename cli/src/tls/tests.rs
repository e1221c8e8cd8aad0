//! The transport end to end: a server on port 0 with the real configs and listener, and
//! clients of every kind, checking who gets in as whom and who is refused.
//!
//! Apart from the modules they cover because each case needs all of them at once; the
//! cases about one part alone (credentials on disk, PEM parsing) sit beside that part.

use std::net::SocketAddr;
use std::time::Duration;

use manager::ca::identity::{caller, tls_caller, Caller};
use manager::ca::RootCa;
use manager::transport::Connector as _;
use proto::ca_client::CaClient;
use proto::ca_server::{Ca, CaServer};
use proto::{
    GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse,
    NodeRole, RenewNodeCertificateRequest, RenewNodeCertificateResponse,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::*;
use std::io;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint};

pub(super) const CLUSTER: &str = "testcluster";
pub(super) const DAY: Duration = Duration::from_secs(24 * 60 * 60);
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

pub(super) fn creds(root: &RootCa, node_id: &str, role: NodeRole) -> NodeCredentials {
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
