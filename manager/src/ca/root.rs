//! The root CA: its certificate and key, and issuing node certificates from CSRs.

use std::fmt;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{role_name, CaError};

/// Common name of every skiff root CA; the cluster ID in O tells clusters apart.
const ROOT_COMMON_NAME: &str = "skiff-root-ca";
/// How long a root CA lives. There is no root rotation yet, so it must outlive the cluster.
const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 60 * 60);
/// Certificates start this far in the past so that a node whose clock is slightly behind the
/// CA's still accepts a certificate issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(60);
/// Serial numbers are this many random bytes (RFC 5280 allows up to 20).
const SERIAL_LEN: usize = 16;

/// A certificate issued by [`RootCa::issue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// Serial number, lowercase hex (as it appears in the certificate).
    pub serial: String,
    /// Expiry, Unix milliseconds (whole seconds: X.509 has no finer resolution).
    pub not_after: i64,
}

/// The cluster's root certificate authority: a self-signed ECDSA P-256 certificate and its
/// key. Managers hold it (replicated through the store) to issue node certificates; every
/// node trusts exactly this certificate on the cluster port.
pub struct RootCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for RootCa {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// Makes a new root CA for the cluster `cluster_id` (CN "skiff-root-ca", O = cluster ID,
    /// valid for 20 years, allowed to sign certificates and CRLs, random serial).
    pub fn generate(cluster_id: &str) -> Result<RootCa, CaError> {
        if cluster_id.is_empty() {
            return Err(CaError::EmptyField("cluster ID"));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyGeneration)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ROOT_COMMON_NAME);
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        let (not_before, not_after) = validity_window(ROOT_VALIDITY)?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(CaError::Signing)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a root CA saved with [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem).
    /// Checks that the certificate is a CA and that the key belongs to it, so a mixed-up
    /// backup fails here rather than as unverifiable node certificates later.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<RootCa, CaError> {
        let cert_der = pem_certificate_der(cert_pem).map_err(CaError::InvalidRootCa)?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CaError::InvalidRootCa(format!("cannot read the CA key: {e}")))?;
        {
            let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| {
                CaError::InvalidRootCa(format!("cannot parse the CA certificate: {e}"))
            })?;
            if !cert.is_ca() {
                return Err(CaError::InvalidRootCa(
                    "the certificate is not a CA certificate".into(),
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(CaError::InvalidRootCa(
                    "the key does not belong to the certificate".into(),
                ));
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| CaError::InvalidRootCa(format!("cannot use the CA certificate: {e}")))?;
        Ok(RootCa {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The root certificate, PEM. Public: every node gets it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root key, PEM (PKCS#8). Secret: only managers may hold it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Lowercase hex SHA-256 of the root certificate's DER: the digest in join tokens.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    /// Issues a certificate for node `node_id` of cluster `cluster_id` with role `role`,
    /// valid for `validity` from now.
    ///
    /// Only the public key is taken from the CSR (after checking the CSR's signature, which
    /// proves the requester holds the private key). Everything the CSR asks for — names,
    /// extensions, CA status — is ignored: the certificate says what the CA decides.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: proto::NodeRole,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<IssuedCertificate, CaError> {
        if node_id.is_empty() {
            return Err(CaError::EmptyField("node ID"));
        }
        if cluster_id.is_empty() {
            return Err(CaError::EmptyField("cluster ID"));
        }
        let role_name = role_name(role).ok_or(CaError::InvalidRole(role))?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role_name);
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![dns_name(role_name)?, dns_name(node_id)?];
        let (not_before, not_after) = validity_window(validity)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CaError::Signing)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            serial: serial_hex,
            not_after: not_after.unix_timestamp() * 1000,
        })
    }
}

/// Lowercase hex SHA-256 of the DER of the PEM certificate `cert_pem`: what a joining node
/// compares with the digest in its join token before trusting a root CA it was handed.
pub fn cert_digest(cert_pem: &str) -> Result<String, CaError> {
    let der = pem_certificate_der(cert_pem).map_err(CaError::InvalidCertificate)?;
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CaError::InvalidCertificate(format!("cannot parse the certificate: {e}")))?;
    Ok(hex::encode(Sha256::digest(&der)))
}

/// The DER inside the first PEM block of `pem`, which must be a certificate.
pub(super) fn pem_certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "expected a PEM CERTIFICATE block, found {}",
            block.label
        ));
    }
    Ok(block.contents)
}

/// `name` as a DNS SAN. Only a single DNS label is accepted (node IDs are base-36), because
/// certificate verifiers reject certificates whose DNS names are malformed.
fn dns_name(name: &str) -> Result<SanType, CaError> {
    let is_label = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !is_label {
        return Err(CaError::InvalidName(name.to_owned()));
    }
    let ia5 = name
        .try_into()
        .map_err(|_| CaError::InvalidName(name.to_owned()))?;
    Ok(SanType::DnsName(ia5))
}

/// `[now - BACKDATE, now + validity]`, truncated to whole seconds so the returned expiry
/// equals what the certificate encodes.
fn validity_window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|_| CaError::ValidityTooLong(validity))?;
    let not_after = time::Duration::try_from(validity)
        .ok()
        .and_then(|v| now.checked_add(v))
        // X.509 GeneralizedTime ends at year 9999.
        .filter(|t| t.year() <= 9999)
        .ok_or(CaError::ValidityTooLong(validity))?;
    Ok((now - BACKDATE, not_after))
}

/// A random positive serial of [`SERIAL_LEN`] bytes. The first byte is in 1..=0x7f so the
/// DER INTEGER is exactly these bytes (no sign byte, no leading zero), which keeps the hex
/// we report identical to what tools print for the certificate.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    SerialNumber::from_slice(&bytes)
}
