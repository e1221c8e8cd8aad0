//! `GET /version` and `GET /info` (its `Swarm` section is what the swarm commands read).

use serde::{Deserialize, Serialize};

/// The newest API version served.
pub const API_VERSION: &str = "1.50";
/// The oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";

/// `Version.Components[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Component {
    /// "Engine".
    pub name: String,
    /// skiffd's version.
    pub version: String,
    /// What `docker version` prints of the engine (`ApiVersion`, `MinAPIVersion`, `Os`,
    /// `Arch`, `KernelVersion`, ...).
    pub details: std::collections::BTreeMap<String, String>,
}

/// `Version.Platform`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlatformName {
    /// "skiff".
    pub name: String,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Version {
    /// The product.
    pub platform: PlatformName,
    /// skiffd.
    pub components: Vec<Component>,
    /// skiffd's version.
    pub version: String,
    /// The newest API version.
    pub api_version: String,
    /// The oldest API version.
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    /// Empty: skiff is not built from Docker's tree.
    pub git_commit: String,
    /// Empty: skiffd is not a Go program.
    pub go_version: String,
    /// "linux".
    pub os: String,
    /// Docker's name of the CPU architecture.
    pub arch: String,
    /// The kernel's release.
    pub kernel_version: String,
}

impl Version {
    /// This daemon's version.
    pub fn current() -> Self {
        let version = env!("CARGO_PKG_VERSION").to_string();
        let details = [
            ("ApiVersion", API_VERSION.to_string()),
            ("MinAPIVersion", MIN_API_VERSION.to_string()),
            ("Os", std::env::consts::OS.to_string()),
            ("Arch", arch().to_string()),
            ("KernelVersion", kernel_release()),
            ("Experimental", "false".to_string()),
            ("GitCommit", String::new()),
            ("GoVersion", String::new()),
            ("BuildTime", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            platform: PlatformName {
                name: "skiff".into(),
            },
            components: vec![Component {
                name: "Engine".into(),
                version: version.clone(),
                details,
            }],
            version,
            api_version: API_VERSION.into(),
            min_api_version: MIN_API_VERSION.into(),
            git_commit: String::new(),
            go_version: String::new(),
            os: std::env::consts::OS.into(),
            arch: arch().into(),
            kernel_version: kernel_release(),
        }
    }
}

/// Docker's (Go's) name of this CPU architecture.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `Info.Swarm.RemoteManagers[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Peer {
    /// The manager's node ID (empty when only its address is known).
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Its cluster address.
    pub addr: String,
}

/// `Info.Swarm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmInfo {
    /// This node's ID.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Its address (without port).
    pub node_addr: String,
    /// "inactive", "pending", "active", "error" or "locked".
    pub local_node_state: String,
    /// Whether this node is a manager.
    pub control_available: bool,
    /// Why membership failed.
    pub error: String,
    /// Managers this node knows.
    pub remote_managers: Vec<Peer>,
    /// Nodes in the cluster (managers only).
    pub nodes: u64,
    /// Managers in the cluster (managers only).
    pub managers: u64,
    /// The cluster (managers only): `Swarm` without its join tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<serde_json::Value>,
}

/// `GET /info`: what a Docker client reads of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Info {
    /// The node's ID, or empty outside a swarm.
    #[serde(rename = "ID")]
    pub id: String,
    /// The host's name.
    pub name: String,
    /// skiffd's version.
    pub server_version: String,
    /// "linux".
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// The host's OS name.
    pub operating_system: String,
    /// Docker's architecture name.
    pub architecture: String,
    /// The kernel release.
    pub kernel_version: String,
    /// CPUs.
    #[serde(rename = "NCPU")]
    pub ncpu: u64,
    /// Memory in bytes.
    pub mem_total: u64,
    /// The task runtime backend.
    pub default_runtime: String,
    /// Containers (tasks) on this node.
    pub containers: u64,
    /// The data directory.
    pub docker_root_dir: String,
    /// The swarm section.
    pub swarm: SwarmInfo,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    #[test]
    fn version_and_info_round_trip_through_dockers_json() {
        let v = Version::current();
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["ApiVersion"], API_VERSION);
        assert_eq!(json["MinAPIVersion"], MIN_API_VERSION);
        assert_eq!(decode::value_as::<Version>(json).unwrap(), v);
        let info = Info {
            id: "n1".into(),
            ncpu: 2,
            swarm: SwarmInfo {
                node_id: "n1".into(),
                local_node_state: "active".into(),
                control_available: true,
                remote_managers: vec![Peer {
                    node_id: "n1".into(),
                    addr: "10.0.0.1:2377".into(),
                }],
                cluster: Some(serde_json::json!({"ID": "c"})),
                ..Default::default()
            },
            ..Default::default()
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["Swarm"]["NodeID"], "n1");
        assert_eq!(json["NCPU"], 2);
        assert_eq!(decode::value_as::<Info>(json).unwrap(), info);
    }
}
