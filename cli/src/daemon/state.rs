//! What a node keeps in its data directory to rejoin its cluster after a restart.

use std::path::{Path, PathBuf};

use manager::raft::at_rest::{KeyEncryptionKey, KEY_LEN};
use serde::{Deserialize, Serialize};

/// The node's membership, persisted as `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeState {
    /// This node's ID.
    pub node_id: String,
    /// The cluster's ID.
    pub cluster_id: String,
    /// Whether this node runs a manager.
    pub manager: bool,
    /// This node's Raft ID while it is a manager.
    pub raft_id: u64,
    /// Where the cluster port listens.
    pub listen_addr: String,
    /// The address other nodes reach this node at.
    pub advertise_addr: String,
    /// Managers' cluster addresses, to find the leader after a restart.
    pub managers: Vec<String>,
}

/// The files of a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where the node's certificates live.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// Where the key-encryption key is kept, when autolock is off.
    pub fn kek_file(&self) -> PathBuf {
        self.certs().join("raft.kek")
    }

    /// The key that opens the Raft store's data key (`manager::raft::at_rest`), kept
    /// beside the node's TLS key (`certs/raft.kek`, 0600); made on first use.
    pub fn key_encryption_key(&self) -> anyhow::Result<KeyEncryptionKey> {
        use anyhow::Context as _;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.kek_file();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is damaged (not a {KEY_LEN}-byte key); restore it from a backup, or remove this node's data directory and join again",
                        path.display()
                    )
                })?;
                Ok(KeyEncryptionKey::from_bytes(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kek = KeyEncryptionKey::generate()?;
                std::fs::create_dir_all(self.certs())
                    .with_context(|| format!("cannot create {}", self.certs().display()))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                file.write_all(kek.bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(kek)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Where the manager's Raft storage lives.
    pub fn raft(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// Where the agent keeps the node's assignments.
    pub fn agent(&self) -> PathBuf {
        self.root.join("agent")
    }

    /// Where the node-local bridges keep the tasks' address leases.
    pub fn bridges(&self) -> PathBuf {
        self.root.join("bridges")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The saved state, if this node is part of a cluster.
    pub fn load(&self) -> anyhow::Result<Option<NodeState>> {
        use anyhow::Context;
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is corrupt; remove the data directory to start afresh",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves the state atomically (write, fsync, rename).
    pub fn save(&self, state: &NodeState) -> anyhow::Result<()> {
        use anyhow::Context;
        use std::io::Write;
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let tmp = self.root.join("state.json.tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(state)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.state_file()).context("cannot save the node state")?;
        Ok(())
    }

    /// Makes the data directory (0700) if it is missing, and tightens anything in it that
    /// other local users could read or write to what skiffd creates today (see
    /// [`tighten`]); returns the paths it changed, which the caller logs. The CA key, the
    /// join tokens and secrets are in the Raft store here, so a world-readable file left by
    /// an older skiffd, a restore or a careless `cp` must not stay that way.
    pub fn secure(&self) -> std::io::Result<Vec<PathBuf>> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        let mut changed = Vec::new();
        tighten(&self.root, &mut changed)?;
        Ok(changed)
    }

    /// Forgets the cluster: state, certificates and Raft data.
    pub fn wipe(&self) -> anyhow::Result<()> {
        for path in [
            self.state_file(),
            self.certs(),
            self.raft(),
            self.agent(),
            self.bridges(),
        ] {
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow::anyhow!("cannot remove {}: {e}", path.display())),
            }
        }
        Ok(())
    }
}

/// Files a container reads as whatever user it runs as: they keep the modes the runtime
/// gave them (`hosts`, `hostname` and `resolv.conf` of a container's task directory).
const CONTAINER_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// Clears the group and other bits of `path` and everything below it, except what
/// containers use: the contents of named volumes (`containers/volumes/NAME/_data`: the
/// container's own data, with the modes it chose) and [`CONTAINER_FILES`]. Symbolic links
/// are not followed.
fn tighten(path: &Path, changed: &mut Vec<PathBuf>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Removed meanwhile (a task ending): nothing to tighten.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_volumes = path
        .parent()
        .and_then(Path::parent)
        .is_some_and(|p| p.ends_with("containers/volumes"));
    if meta.is_file() && CONTAINER_FILES.contains(&name) || name == "_data" && in_volumes {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))?;
        changed.push(path.to_owned());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), changed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_wipes() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert_eq!(data.load().unwrap(), None);
        let state = NodeState {
            node_id: "n".into(),
            cluster_id: "c".into(),
            manager: true,
            raft_id: 7,
            listen_addr: "127.0.0.2:2377".into(),
            advertise_addr: "127.0.0.2:2377".into(),
            managers: vec!["127.0.0.2:2377".into()],
        };
        data.save(&state).unwrap();
        assert_eq!(data.load().unwrap(), Some(state));
        std::fs::create_dir_all(data.raft()).unwrap();
        data.wipe().unwrap();
        assert_eq!(data.load().unwrap(), None);
        assert!(!data.raft().exists());
    }

    #[test]
    fn a_corrupt_state_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let err = DataDir::new(dir.path()).load().unwrap_err();
        assert!(format!("{err:#}").contains("remove the data directory"));
    }

    #[test]
    fn secure_tightens_what_others_could_read_but_leaves_containers_their_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let data = DataDir::new(&root);
        assert!(data.secure().unwrap().is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        std::fs::create_dir_all(root.join("raft")).unwrap();
        std::fs::write(root.join("raft/db"), b"x").unwrap();
        let task = root.join("containers/t1");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(task.join("resolv.conf"), b"nameserver 1.1.1.1").unwrap();
        std::fs::write(task.join("log"), b"out").unwrap();
        let volume = root.join("containers/volumes/v/_data");
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(volume.join("page.html"), b"hi").unwrap();
        for p in [&root, &root.join("raft"), &task] {
            set(p, 0o755);
        }
        for p in [
            root.join("raft/db"),
            task.join("resolv.conf"),
            task.join("log"),
        ] {
            set(&p, 0o644);
        }
        set(&volume, 0o755);
        set(&volume.join("page.html"), 0o644);

        let changed = data.secure().unwrap();
        assert!(changed.contains(&root.join("raft/db")), "{changed:?}");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("raft")), 0o700);
        assert_eq!(mode(&root.join("raft/db")), 0o600);
        assert_eq!(mode(&task.join("log")), 0o600);
        // What containers read keeps its modes.
        assert_eq!(mode(&task.join("resolv.conf")), 0o644);
        assert_eq!(mode(&volume), 0o755);
        assert_eq!(mode(&volume.join("page.html")), 0o644);
        assert!(data.secure().unwrap().is_empty());
    }
}
