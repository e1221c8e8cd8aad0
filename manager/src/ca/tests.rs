use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use tonic::{Code, Request};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use super::identity::*;
use super::root::pem_certificate_der;
use super::*;

const CLUSTER: &str = "cluster0123456789abcdefghi";
const NODE: &str = "node0123456789abcdefghijk";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh key and a CSR for it that asks for everything it should not get.
fn greedy_csr() -> (KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![
        "skiff-manager".to_string(),
        "evil.example".to_string(),
    ])
    .unwrap();
    params.distinguished_name.push(DnType::CommonName, "admin");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "skiff-manager");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "other-cluster");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .extended_key_usages
        .push(ExtendedKeyUsagePurpose::CodeSigning);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn der_of(pem: &str) -> Vec<u8> {
    pem_certificate_der(pem).unwrap()
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn root_is_a_p256_ca_valid_for_twenty_years() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let der = der_of(root.cert_pem());
    let cert = parse(&der);
    let subject = cert.subject();
    assert_eq!(
        subject.iter_common_name().next().unwrap().as_str().unwrap(),
        "skiff-root-ca"
    );
    assert_eq!(
        subject
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        CLUSTER
    );
    assert!(cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let twenty_years = 20 * 365 * 24 * 3600;
    let left = cert.validity().not_after.timestamp() - now_secs();
    assert!((twenty_years - 5..=twenty_years).contains(&left), "{left}");
    assert!(cert.validity().not_before.timestamp() < now_secs());
    cert.verify_signature(None).unwrap();
    // ECDSA P-256 key.
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    // Random serials: two roots for the same cluster differ.
    let other = RootCa::generate(CLUSTER).unwrap();
    let other_der = der_of(other.cert_pem());
    assert_ne!(cert.raw_serial(), parse(&other_der).raw_serial());
    assert!(matches!(RootCa::generate(""), Err(CaError::EmptyField(_))));
}

#[test]
fn issued_certificate_carries_the_ca_decision_not_the_request() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let (key, csr) = greedy_csr();
    let issued = root
        .issue(&csr, NODE, proto::NodeRole::Worker, CLUSTER, 90 * DAY)
        .unwrap();

    let der = der_of(&issued.cert_pem);
    assert_eq!(
        identity_from_der(&der).unwrap(),
        NodeIdentity {
            node_id: NODE.into(),
            role: proto::NodeRole::Worker,
            cluster_id: CLUSTER.into(),
        }
    );
    let cert = parse(&der);
    assert_eq!(dns_names(&cert), vec!["skiff-worker", NODE]);
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());

    // The public key is the requester's, and nothing else from the CSR survived.
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(
        cert.subject().iter_common_name().count(),
        1,
        "requested CN must not be added"
    );

    // Chains to the root: issuer name, authority key identifier and signature.
    let root_der = der_of(root.cert_pem());
    let root_cert = parse(&root_der);
    assert_eq!(cert.issuer().as_raw(), root_cert.subject().as_raw());
    cert.verify_signature(Some(root_cert.public_key())).unwrap();
    let ski = root_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);

    // Serial and validity as reported.
    assert_eq!(issued.serial, hex::encode(cert.raw_serial()));
    assert_eq!(issued.serial.len(), 32);
    assert_eq!(cert_not_after(&issued.cert_pem).unwrap(), issued.not_after);
    let expected = (now_secs() + (90 * DAY).as_secs() as i64) * 1000;
    assert!((issued.not_after - expected).abs() <= 2000);
    let backdate = now_secs() - cert.validity().not_before.timestamp();
    assert!((59..=62).contains(&backdate), "backdated {backdate}s");
}

#[test]
fn manager_certificate_names_the_manager_role() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let (_, csr) = greedy_csr();
    let issued = root
        .issue(&csr, NODE, proto::NodeRole::Manager, CLUSTER, DAY)
        .unwrap();
    let der = der_of(&issued.cert_pem);
    assert_eq!(
        identity_from_der(&der).unwrap().role,
        proto::NodeRole::Manager
    );
    assert_eq!(dns_names(&parse(&der)), vec!["skiff-manager", NODE]);
    let again = root
        .issue(&csr, NODE, proto::NodeRole::Manager, CLUSTER, DAY)
        .unwrap();
    assert_ne!(issued.serial, again.serial, "serials must be random");
}

#[test]
fn bad_requests_are_refused() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let (_, csr) = greedy_csr();
    let issue =
        |csr: &str, node: &str, role, cluster: &str| root.issue(csr, node, role, cluster, DAY);
    assert!(matches!(
        issue("not a csr", NODE, proto::NodeRole::Worker, CLUSTER),
        Err(CaError::InvalidCsr(_))
    ));
    // A certificate is not a CSR.
    assert!(matches!(
        issue(root.cert_pem(), NODE, proto::NodeRole::Worker, CLUSTER),
        Err(CaError::InvalidCsr(_))
    ));
    assert!(matches!(
        issue(&csr, NODE, proto::NodeRole::Unspecified, CLUSTER),
        Err(CaError::InvalidRole(proto::NodeRole::Unspecified))
    ));
    assert!(matches!(
        issue(&csr, "", proto::NodeRole::Worker, CLUSTER),
        Err(CaError::EmptyField(_))
    ));
    assert!(matches!(
        issue(&csr, NODE, proto::NodeRole::Worker, ""),
        Err(CaError::EmptyField(_))
    ));
    assert!(matches!(
        issue(&csr, "a b", proto::NodeRole::Worker, CLUSTER),
        Err(CaError::InvalidName(_))
    ));
    assert!(matches!(
        root.issue(&csr, NODE, proto::NodeRole::Worker, CLUSTER, Duration::MAX),
        Err(CaError::ValidityTooLong(_))
    ));
}

/// A CSR is accepted only if it is signed by the key it carries: swapping in another public
/// key (so the holder of key A would get a certificate for key B) breaks the signature.
#[test]
fn csr_must_be_signed_by_the_key_it_carries() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let (key_a, csr_a) = greedy_csr();
    let key_b = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();

    let pem_a = x509_parser::pem::parse_x509_pem(csr_a.as_bytes())
        .unwrap()
        .1;
    let mut der = pem_a.contents.clone();
    let raw_a = key_a.public_key_raw();
    let at = der
        .windows(raw_a.len())
        .position(|w| w == raw_a)
        .expect("public key inside the CSR");
    der[at..at + raw_a.len()].copy_from_slice(key_b.public_key_raw());
    let forged = pem_encode("CERTIFICATE REQUEST", &der);
    match root.issue(&forged, NODE, proto::NodeRole::Worker, CLUSTER, DAY) {
        Err(CaError::InvalidCsr(msg)) => assert!(msg.contains("signature"), "{msg}"),
        other => panic!("forged CSR accepted: {other:?}"),
    }

    // The genuine CSR yields a certificate for key A.
    let issued = root
        .issue(&csr_a, NODE, proto::NodeRole::Worker, CLUSTER, DAY)
        .unwrap();
    let der = der_of(&issued.cert_pem);
    assert_eq!(
        parse(&der).public_key().subject_public_key.data.as_ref(),
        raw_a
    );
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // Base64 by hand keeps the test free of another dependency.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn pem_round_trip_keeps_digest_and_signing_ability() {
    let root = RootCa::generate(CLUSTER).unwrap();
    let digest = root.digest();
    assert_eq!(digest.len(), 64);
    assert!(digest
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(cert_digest(root.cert_pem()).unwrap(), digest);
    // The token's digest format is what `proto::token` expects.
    let token = proto::token::JoinToken::generate(&digest);
    assert_eq!(token.ca_digest, digest);

    let loaded = RootCa::from_pem(root.cert_pem(), &root.key_pem()).unwrap();
    assert_eq!(loaded.digest(), digest);
    assert_eq!(loaded.cert_pem(), root.cert_pem());

    // Certificates from the reloaded CA chain to the original root, with a matching AKI.
    let (_, csr) = greedy_csr();
    let issued = loaded
        .issue(&csr, NODE, proto::NodeRole::Worker, CLUSTER, DAY)
        .unwrap();
    let fresh = root
        .issue(&csr, NODE, proto::NodeRole::Worker, CLUSTER, DAY)
        .unwrap();
    let root_der = der_of(root.cert_pem());
    let root_cert = parse(&root_der);
    let (d1, d2) = (der_of(&issued.cert_pem), der_of(&fresh.cert_pem));
    let (c1, c2) = (parse(&d1), parse(&d2));
    c1.verify_signature(Some(root_cert.public_key())).unwrap();
    assert_eq!(c1.issuer().as_raw(), c2.issuer().as_raw());
    let aki = |c: &X509Certificate<'_>| {
        c.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(aki(&c1), aki(&c2));
}

#[test]
fn from_pem_refuses_mismatched_or_broken_input() {
    let a = RootCa::generate(CLUSTER).unwrap();
    let b = RootCa::generate(CLUSTER).unwrap();
    assert!(matches!(
        RootCa::from_pem(a.cert_pem(), &b.key_pem()),
        Err(CaError::InvalidRootCa(_))
    ));
    assert!(matches!(
        RootCa::from_pem("garbage", &a.key_pem()),
        Err(CaError::InvalidRootCa(_))
    ));
    assert!(matches!(
        RootCa::from_pem(a.cert_pem(), "garbage"),
        Err(CaError::InvalidRootCa(_))
    ));
    // A node certificate is not a CA.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let leaf = a
        .issue(&csr, NODE, proto::NodeRole::Manager, CLUSTER, DAY)
        .unwrap();
    assert!(matches!(
        RootCa::from_pem(&leaf.cert_pem, &key.serialize_pem()),
        Err(CaError::InvalidRootCa(_))
    ));
    assert!(matches!(
        cert_digest("garbage"),
        Err(CaError::InvalidCertificate(_))
    ));
    // Debug output never contains the key.
    assert!(!format!("{a:?}").contains("PRIVATE"));
}

#[test]
fn identity_of_foreign_certificates_is_refused() {
    // The root itself has no OU: not a node certificate.
    let root = RootCa::generate(CLUSTER).unwrap();
    assert!(matches!(
        identity_from_der(&der_of(root.cert_pem())),
        Err(CaError::InvalidCertificate(_))
    ));
    assert!(matches!(
        identity_from_der(b"junk"),
        Err(CaError::InvalidCertificate(_))
    ));
}

fn request_from(caller: Option<Caller>) -> Request<()> {
    let mut req = Request::new(());
    if let Some(c) = caller {
        req.extensions_mut().insert(c);
    }
    req
}

fn node(role: proto::NodeRole) -> Caller {
    Caller::Node(NodeIdentity {
        node_id: NODE.into(),
        role,
        cluster_id: CLUSTER.into(),
    })
}

#[test]
fn permission_checks() {
    let local = local_caller(Request::new(())).unwrap();
    assert!(matches!(caller(&local), Caller::Local));
    assert!(matches!(require_manager(&local), Ok(Caller::Local)));
    assert!(matches!(require_node(&local), Ok(Caller::Local)));

    let manager = request_from(Some(node(proto::NodeRole::Manager)));
    assert!(matches!(require_manager(&manager), Ok(Caller::Node(_))));
    assert!(matches!(require_node(&manager), Ok(Caller::Node(_))));

    let worker = request_from(Some(node(proto::NodeRole::Worker)));
    let err = require_manager(&worker).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains(NODE) && err.message().contains("worker"));
    match require_node(&worker) {
        Ok(Caller::Node(id)) => assert_eq!(id.role, proto::NodeRole::Worker),
        other => panic!("{other:?}"),
    }

    // No interceptor ran: treated as anonymous, never trusted.
    let bare = request_from(None);
    assert!(matches!(caller(&bare), Caller::Anonymous));
    assert_eq!(
        require_manager(&bare).unwrap_err().code(),
        Code::PermissionDenied
    );
    let err = require_node(&bare).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("join the cluster first"));

    // Without TLS connection info there are no peer certificates: anonymous.
    let plain = tls_caller(Request::new(())).unwrap();
    assert!(matches!(caller(&plain), Caller::Anonymous));
}

#[test]
fn root_ca_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RootCa>();
}
