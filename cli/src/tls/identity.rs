//! The certificate and key a node presents, on both ends of its connections.
//!
//! One [`ReloadableIdentity`] is shared by the node's server and client configs so that a
//! renewal or a role change swaps the certificate everywhere at once, without rebuilding
//! a config or restarting the cluster port. A pair that does not belong together is
//! refused when it is loaded, not in every later handshake.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::{provider, NodeCredentials, TlsError};

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
pub(super) fn parse_certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
