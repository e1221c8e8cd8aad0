//! Nodes: `Node` and its `Spec` (`GET /nodes`, `POST /nodes/{id}/update`).

use std::collections::HashMap;

use proto::{NodeAvailability, NodeRole, NodeState, Reachability};
use serde::{Deserialize, Serialize};

use super::{meta, Version};
use crate::daemon::engine::error::{ApiError, ApiResult};

/// `Node.Spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeSpec {
    /// Docker's node name; skiff has none, so only empty is taken.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// "worker" or "manager".
    pub role: String,
    /// "active", "pause" or "drain".
    pub availability: String,
}

/// Docker's name of a role.
pub fn role_name(role: i32) -> &'static str {
    match NodeRole::try_from(role) {
        Ok(NodeRole::Manager) => "manager",
        _ => "worker",
    }
}

fn availability_name(a: i32) -> &'static str {
    match NodeAvailability::try_from(a) {
        Ok(NodeAvailability::Pause) => "pause",
        Ok(NodeAvailability::Drain) => "drain",
        _ => "active",
    }
}

impl NodeSpec {
    /// The Docker view.
    pub fn from_proto(spec: &proto::NodeSpec) -> Self {
        Self {
            name: String::new(),
            labels: spec.labels.clone(),
            role: role_name(spec.desired_role).into(),
            availability: availability_name(spec.availability).into(),
        }
    }

    /// skiff's node spec.
    pub fn to_proto(&self) -> ApiResult<proto::NodeSpec> {
        if !self.name.is_empty() {
            return Err(ApiError::bad_request(
                "Spec.Name is not supported by skiff (nodes are named by their hostname); remove it",
            ));
        }
        let role = match self.role.to_ascii_lowercase().as_str() {
            "worker" => NodeRole::Worker,
            "manager" => NodeRole::Manager,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid Role \"{other}\": use worker or manager"
                )))
            }
        };
        let availability = match self.availability.to_ascii_lowercase().as_str() {
            "active" => NodeAvailability::Active,
            "pause" => NodeAvailability::Pause,
            "drain" => NodeAvailability::Drain,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid Availability \"{other}\": use active, pause or drain"
                )))
            }
        };
        Ok(proto::NodeSpec {
            labels: self.labels.clone(),
            desired_role: role as i32,
            availability: availability as i32,
        })
    }
}

/// `Node.Description.Platform`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Platform {
    /// The CPU architecture.
    pub architecture: String,
    /// The operating system.
    #[serde(rename = "OS")]
    pub os: String,
}

/// `Resources` as a node describes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    /// Billionths of a CPU.
    #[serde(rename = "NanoCPUs")]
    pub nano_cpus: i64,
    /// Bytes.
    pub memory_bytes: i64,
}

/// `Node.Description.Engine`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Engine {
    /// skiffd's version.
    pub engine_version: String,
    /// The node's runtime backend, as a label.
    pub labels: HashMap<String, String>,
}

/// `Node.Description`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Description {
    /// The node's hostname.
    pub hostname: String,
    /// OS and architecture.
    pub platform: Platform,
    /// CPU and memory.
    pub resources: Resources,
    /// skiffd.
    pub engine: Engine,
    /// The node's root of trust (the cluster's root certificate).
    #[serde(rename = "TLSInfo")]
    pub tls_info: super::swarm::TlsInfo,
}

/// `Node.Status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Status {
    /// "unknown", "down", "ready" or "disconnected".
    pub state: String,
    /// Why.
    pub message: String,
    /// Where the node was last seen.
    pub addr: String,
}

/// `Node.ManagerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManagerStatus {
    /// Whether it leads.
    pub leader: bool,
    /// "unknown", "unreachable" or "reachable".
    pub reachability: String,
    /// Its Raft address.
    pub addr: String,
}

/// `Node`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// The node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its version.
    pub version: Version,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// What the user controls.
    pub spec: NodeSpec,
    /// What the node reports.
    pub description: Description,
    /// Its state.
    pub status: Status,
    /// Managers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

impl Node {
    /// The Docker view of a node; `root_ca` is the cluster's root certificate.
    pub fn from_proto(node: &proto::Node, root_ca: &str) -> Self {
        let (id, version, created_at, updated_at) = meta(&node.meta);
        let d = node.description.clone().unwrap_or_default();
        let platform = d.platform.clone().unwrap_or_default();
        let resources = d.resources.unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            spec: NodeSpec::from_proto(&node.spec.clone().unwrap_or_default()),
            description: Description {
                hostname: d.hostname,
                platform: Platform {
                    architecture: platform.arch,
                    os: platform.os,
                },
                resources: Resources {
                    nano_cpus: resources.nano_cpus,
                    memory_bytes: resources.memory_bytes,
                },
                engine: Engine {
                    engine_version: d.engine_version,
                    labels: [("com.skiff.runtime".to_string(), d.runtime)]
                        .into_iter()
                        .filter(|(_, v)| !v.is_empty())
                        .collect(),
                },
                tls_info: super::swarm::TlsInfo {
                    trust_root: root_ca.to_string(),
                    ..Default::default()
                },
            },
            status: Status {
                state: match NodeState::try_from(status.state) {
                    Ok(NodeState::Down) => "down",
                    Ok(NodeState::Ready) => "ready",
                    Ok(NodeState::Disconnected) => "disconnected",
                    _ => "unknown",
                }
                .into(),
                message: status.message,
                addr: status
                    .addr
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or(status.addr),
            },
            manager_status: node.manager_status.as_ref().map(|m| ManagerStatus {
                leader: m.leader,
                reachability: match Reachability::try_from(m.reachability) {
                    Ok(Reachability::Reachable) => "reachable",
                    Ok(Reachability::Unreachable) => "unreachable",
                    _ => "unknown",
                }
                .into(),
                addr: m.addr.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    #[test]
    fn a_node_round_trips_through_dockers_json() {
        let node = proto::Node {
            meta: Some(proto::Meta {
                id: "n1".into(),
                version: 4,
                ..Default::default()
            }),
            spec: Some(proto::NodeSpec {
                labels: [("zone".to_string(), "a".to_string())].into(),
                desired_role: NodeRole::Manager as i32,
                availability: NodeAvailability::Drain as i32,
            }),
            description: Some(proto::NodeDescription {
                hostname: "host1".into(),
                ..Default::default()
            }),
            status: Some(proto::NodeStatus {
                state: NodeState::Ready as i32,
                addr: "127.0.0.1:2377".into(),
                ..Default::default()
            }),
            manager_status: Some(proto::ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable as i32,
                addr: "127.0.0.1:2377".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let docker = Node::from_proto(&node, "ROOT");
        let json = serde_json::to_value(&docker).unwrap();
        assert_eq!(json["Spec"]["Role"], "manager");
        assert_eq!(json["Spec"]["Availability"], "drain");
        assert_eq!(json["Status"]["State"], "ready");
        assert_eq!(json["Status"]["Addr"], "127.0.0.1");
        assert_eq!(json["ManagerStatus"]["Leader"], true);
        let back: Node = decode::value_as(json).unwrap();
        assert_eq!(back, docker);
        assert_eq!(back.spec.to_proto().unwrap(), node.spec.unwrap());
    }

    #[test]
    fn a_node_spec_with_a_name_or_a_bad_role_is_refused() {
        let spec = NodeSpec {
            name: "x".into(),
            role: "worker".into(),
            availability: "active".into(),
            ..Default::default()
        };
        assert!(spec.to_proto().unwrap_err().message.contains("Spec.Name"));
        let spec = NodeSpec {
            role: "boss".into(),
            availability: "active".into(),
            ..Default::default()
        };
        assert!(spec.to_proto().unwrap_err().message.contains("boss"));
    }
}
