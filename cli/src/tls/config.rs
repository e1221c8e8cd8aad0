//! Who trusts whom on the cluster port: the rustls configs of its server and of each kind
//! of client, and the verifiers behind them.
//!
//! In one place because the rules only make sense together: the server admits clients
//! without a certificate (joining nodes) and leaves the decision to each RPC, so every
//! client that has a certificate must present it, and every client but the one that
//! fetches the root CA at join time must verify that it speaks to a manager. Neither end
//! resumes sessions, so a handshake always carries the certificate a node holds now.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::identity::parse_certs;
use super::{provider, ReloadableIdentity, TlsError, PROTOCOL_VERSIONS};

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

/// The config of a node's own client ([`TlsConnector`](super::TlsConnector)): trusts only
/// `root_ca_pem` and authenticates as `identity` (which may later be
/// [`replace`](ReloadableIdentity::replace)d).
pub(super) fn client_config(
    root_ca_pem: &str,
    identity: ReloadableIdentity,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = verifying_client(root_ca_pem)?.with_client_cert_resolver(Arc::new(identity));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Every connection presents the current certificate (see `server_config`).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The config of a client that trusts only `root_ca_pem` and presents no certificate
/// ([`anonymous_channel`](super::anonymous_channel)).
pub(super) fn anonymous_client_config(root_ca_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = verifying_client(root_ca_pem)?.with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
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

/// The config of a client that accepts any server certificate and presents none
/// ([`unverified_channel`](super::unverified_channel), and only there).
pub(super) fn unverified_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyServerCert {
        provider: provider.clone(),
    });
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map(|builder| {
            let mut config = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        })
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

#[cfg(test)]
mod tests {
    use manager::ca::RootCa;
    use proto::NodeRole;

    use super::*;
    use crate::tls::tests::{creds, CLUSTER};
    use crate::tls::TlsConnector;

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
}
