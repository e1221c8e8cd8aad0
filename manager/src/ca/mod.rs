//! The cluster's own certificate authority.
//!
//! `swarm init` makes a root CA ([`RootCa::generate`]); every node then gets a certificate
//! from it ([`RootCa::issue`]) whose subject says who the node is (CN = node ID,
//! OU = role, O = cluster ID). Those certificates are the only credentials on the cluster
//! port: [`access::intercept`] turns the peer's certificate into an [`identity::Caller`] for
//! each RPC, with the rights the cluster grants that node today (a removed node none, a
//! demoted one a worker's), and [`identity::require_manager`] / [`identity::require_node`]
//! decide what it may do.
//!
//! Nothing here touches the network or the disk; the TLS transport lives in `cli::tls`.

pub mod access;
pub mod identity;
mod root;
#[cfg(test)]
mod tests;

// Re-exported so callers can write `manager::ca::Caller` as well as the full path.
pub use identity::{
    caller, cert_not_after, identity_from_der, identity_from_pem, local_caller, require_manager,
    require_node, tls_caller, Caller, NodeIdentity,
};
pub use root::{cert_digest, IssuedCertificate, RootCa};

/// DNS name (SAN) and OU of manager certificates. Clients dial managers with this as the TLS
/// server name, so a worker's certificate can never pass as a manager's.
pub const MANAGER_NAME: &str = "skiff-manager";
/// DNS name (SAN) and OU of worker certificates.
pub const WORKER_NAME: &str = "skiff-worker";

/// Why a CA operation failed. The messages are meant to be shown to an operator as they are;
/// they include their cause, so no variant reports a separate `source` (which would print
/// the cause twice in `{:#}` chains).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The crypto library could not make a key pair.
    #[error("could not generate a key pair: {0}")]
    KeyGeneration(rcgen::Error),
    /// Building or signing a certificate failed.
    #[error("could not sign the certificate: {0}")]
    Signing(rcgen::Error),
    /// The CSR could not be parsed, its signature is wrong, or it asks for something
    /// skiff does not understand.
    #[error("the certificate signing request is not valid ({0}); let skiff generate a fresh one and try again")]
    InvalidCsr(String),
    /// A stored or supplied root CA certificate/key pair is unusable.
    #[error("the cluster's root CA is not usable: {0}; its certificate and key must be the pair made by `swarm init`")]
    InvalidRootCa(String),
    /// A certificate is not a well-formed skiff node certificate.
    #[error("not a skiff node certificate: {0}")]
    InvalidCertificate(String),
    /// Certificates exist only for workers and managers.
    #[error("cannot issue a certificate for role {0:?}: a node is either a worker or a manager")]
    InvalidRole(proto::NodeRole),
    /// A required identifier was empty.
    #[error("cannot issue a certificate with an empty {0}")]
    EmptyField(&'static str),
    /// A node ID that cannot be written into a certificate's DNS names.
    #[error("{0:?} cannot be used as a certificate name: it must be 1 to 63 ASCII letters, digits or '-'")]
    InvalidName(String),
    /// The requested validity does not fit in a certificate.
    #[error("certificate validity {0:?} is too long")]
    ValidityTooLong(std::time::Duration),
}

/// The role name carried in certificates (OU and SAN) for `role`, or `None` for roles that
/// get no certificate.
fn role_name(role: proto::NodeRole) -> Option<&'static str> {
    match role {
        proto::NodeRole::Manager => Some(MANAGER_NAME),
        proto::NodeRole::Worker => Some(WORKER_NAME),
        proto::NodeRole::Unspecified => None,
    }
}

/// The inverse of [`role_name`].
fn role_from_name(name: &str) -> Option<proto::NodeRole> {
    match name {
        MANAGER_NAME => Some(proto::NodeRole::Manager),
        WORKER_NAME => Some(proto::NodeRole::Worker),
        _ => None,
    }
}
