//! A node's credentials on disk: the root CA, its certificate and its key in the
//! certificate directory, and the key and CSR it makes to get (or renew) a certificate.
//!
//! Apart from the rest of the transport because it is the one part that touches the disk:
//! `swarm init`, `swarm join` and every renewal write these files, and a restarted daemon
//! reads them before it can set up anything else. Writing is crash-safe (each file staged,
//! synced and renamed) because a node whose key and certificate do not match cannot reach
//! its cluster again.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::TlsError;

/// Root CA file in a node's certificate directory.
const CA_FILE: &str = "ca.pem";
/// Node certificate file.
const CERT_FILE: &str = "node.pem";
/// Node private key file (mode 0600).
const KEY_FILE: &str = "node.key";

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

#[cfg(test)]
mod tests {
    use manager::ca::RootCa;
    use proto::NodeRole;

    use super::*;
    use crate::tls::tests::{creds, CLUSTER, DAY};
    use crate::tls::ReloadableIdentity;

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
