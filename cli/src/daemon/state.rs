//! What a node keeps in its data directory to rejoin its cluster after a restart.

use std::path::PathBuf;

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

    /// Where the manager's Raft storage lives.
    pub fn raft(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// Where the agent keeps the node's assignments.
    pub fn agent(&self) -> PathBuf {
        self.root.join("agent")
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

    /// Forgets the cluster: state, certificates and Raft data.
    pub fn wipe(&self) -> anyhow::Result<()> {
        for path in [self.state_file(), self.certs(), self.raft(), self.agent()] {
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
}
