//! Who a node is, read from its certificate, and who is calling an RPC.
//!
//! An interceptor ([`local_caller`] on the root-only unix socket, [`tls_caller`] on the
//! cluster port) puts a [`Caller`] into each request's extensions; handlers then ask
//! [`require_manager`] or [`require_node`]. Keeping the decision in one place means a handler
//! cannot forget to parse the certificate, and a request that bypassed the interceptors is
//! treated as [`Caller::Anonymous`], never as trusted.

use tonic::{Request, Status};
use x509_parser::x509::AttributeTypeAndValue;

use super::root::pem_certificate_der;
use super::{role_from_name, CaError};

/// Who a node certificate says its holder is. Only meaningful for a certificate that has
/// been verified against the cluster's root CA (the TLS layer does that before an RPC
/// handler ever sees it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Subject CN.
    pub node_id: String,
    /// Subject OU ("skiff-manager" or "skiff-worker").
    pub role: proto::NodeRole,
    /// Subject O.
    pub cluster_id: String,
}

/// The identity in a DER node certificate issued by [`RootCa::issue`](super::RootCa::issue).
/// Does not verify the certificate.
pub fn identity_from_der(der: &[u8]) -> Result<NodeIdentity, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::InvalidCertificate(format!("cannot parse the certificate: {e}")))?;
    let subject = cert.subject();
    let node_id = single_attribute(subject.iter_common_name(), "CN (node ID)")?;
    let role_name = single_attribute(subject.iter_organizational_unit(), "OU (role)")?;
    let cluster_id = single_attribute(subject.iter_organization(), "O (cluster ID)")?;
    let role = role_from_name(&role_name).ok_or_else(|| {
        CaError::InvalidCertificate(format!("unknown role {role_name:?} in the subject OU"))
    })?;
    Ok(NodeIdentity {
        node_id,
        role,
        cluster_id,
    })
}

/// The identity in a PEM node certificate (the node's own, read back from disk). Does not
/// verify the certificate.
pub fn identity_from_pem(cert_pem: &str) -> Result<NodeIdentity, CaError> {
    let der = pem_certificate_der(cert_pem).map_err(CaError::InvalidCertificate)?;
    identity_from_der(&der)
}

/// Expiry of a PEM certificate, Unix milliseconds: when to renew it.
pub fn cert_not_after(cert_pem: &str) -> Result<i64, CaError> {
    let der = pem_certificate_der(cert_pem).map_err(CaError::InvalidCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CaError::InvalidCertificate(format!("cannot parse the certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp() * 1000)
}

/// The value of the one attribute `what` that `values` yields; zero or several, or one that
/// is not a non-empty string, means this is not one of our certificates.
fn single_attribute<'a>(
    mut values: impl Iterator<Item = &'a AttributeTypeAndValue<'a>>,
    what: &str,
) -> Result<String, CaError> {
    let value = values
        .next()
        .ok_or_else(|| CaError::InvalidCertificate(format!("the subject has no {what}")))?;
    if values.next().is_some() {
        return Err(CaError::InvalidCertificate(format!(
            "the subject has more than one {what}"
        )));
    }
    match value.as_str() {
        Ok(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(CaError::InvalidCertificate(format!(
            "the subject's {what} is not a non-empty string"
        ))),
    }
}

/// The authenticated origin of a request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The local unix socket, which only root can open: full rights, like a manager.
    Local,
    /// A node presenting a certificate of this cluster (verified by TLS against the root CA).
    Node(NodeIdentity),
    /// A TLS peer without a certificate: a node that is still joining.
    Anonymous,
}

/// Interceptor for the local unix socket: every request comes from [`Caller::Local`].
pub fn local_caller(mut req: Request<()>) -> Result<Request<()>, Status> {
    req.extensions_mut().insert(Caller::Local);
    Ok(req)
}

/// Interceptor for the cluster port where there is no store to check callers against (a
/// worker's): the caller is whoever the peer's TLS certificate names, or
/// [`Caller::Anonymous`] if it sent none. Managers use [`super::access::intercept`].
///
/// Relies on the TLS layer having verified the certificate chain against the cluster root
/// (`cli::tls::server_config` does); this only reads the identity out of the leaf.
pub fn tls_caller(mut req: Request<()>) -> Result<Request<()>, Status> {
    let caller = match peer_identity(&req)? {
        Some(identity) => Caller::Node(identity),
        None => Caller::Anonymous,
    };
    req.extensions_mut().insert(caller);
    Ok(req)
}

/// The identity in the peer's TLS certificate, if it sent one.
pub(super) fn peer_identity<T>(req: &Request<T>) -> Result<Option<NodeIdentity>, Status> {
    let Some(certs) = req.peer_certs() else {
        return Ok(None);
    };
    let Some(leaf) = certs.first() else {
        return Ok(None);
    };
    identity_from_der(leaf)
        .map(Some)
        .map_err(|e| Status::unauthenticated(format!("the client certificate is not usable: {e}")))
}

/// The caller recorded by the interceptor; [`Caller::Anonymous`] if there was none.
pub fn caller<T>(req: &Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

/// Admits the local socket and manager nodes (Raft, the control API); refuses everyone
/// else with `PermissionDenied`. Returns the admitted caller.
pub fn require_manager<T>(req: &Request<T>) -> Result<Caller, Status> {
    match caller(req) {
        c @ Caller::Local => Ok(c),
        Caller::Node(id) if id.role == proto::NodeRole::Manager => Ok(Caller::Node(id)),
        Caller::Node(id) => Err(Status::permission_denied(format!(
            "this call needs a manager certificate; node {} is a worker",
            id.node_id
        ))),
        Caller::Anonymous => Err(Status::permission_denied(
            "this call needs a manager certificate; the caller presented no certificate",
        )),
    }
}

/// Admits the local socket and any node of the cluster (a worker may then speak only for
/// itself: the handler compares the returned identity with the request); refuses callers
/// without a certificate with `PermissionDenied`. The result is never
/// [`Caller::Anonymous`].
pub fn require_node<T>(req: &Request<T>) -> Result<Caller, Status> {
    match caller(req) {
        Caller::Anonymous => Err(Status::permission_denied(
            "this call needs a node certificate; join the cluster first",
        )),
        c => Ok(c),
    }
}

/// Admits the local socket and managers that are still members of the Raft group, even
/// while being demoted (see [`super::access`]): the callers of Raft's own messages.
pub fn require_raft_peer<T>(req: &Request<T>) -> Result<(), Status> {
    if matches!(caller(req), Caller::Local)
        || req.extensions().get::<super::access::RaftPeer>().is_some()
    {
        return Ok(());
    }
    Err(Status::permission_denied(
        "Raft messages need the certificate of a manager in the Raft group",
    ))
}
