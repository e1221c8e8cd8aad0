//! Tasks: `Task` as `GET /tasks` shows it, with Docker's names of its states.

use serde::{Deserialize, Serialize};

use super::service::{PortConfig, TaskSpec};
use super::{meta, time, Version};

/// Docker's name of a task state.
pub fn state_name(state: i32) -> &'static str {
    use proto::TaskState as S;
    match S::try_from(state) {
        Ok(S::New) => "new",
        Ok(S::Pending) => "pending",
        Ok(S::Assigned) => "assigned",
        Ok(S::Accepted) => "accepted",
        Ok(S::Preparing) => "preparing",
        Ok(S::Ready) => "ready",
        Ok(S::Starting) => "starting",
        Ok(S::Running) => "running",
        Ok(S::Complete) => "complete",
        Ok(S::Shutdown) => "shutdown",
        Ok(S::Failed) => "failed",
        Ok(S::Rejected) => "rejected",
        Ok(S::Remove) => "remove",
        Ok(S::Orphaned) => "orphaned",
        Err(_) => "unknown",
    }
}

/// The task state Docker's name stands for (`desired-state` filters).
pub fn state_from_name(name: &str) -> Option<proto::TaskState> {
    (0..=13)
        .find(|s| state_name(*s) == name)
        .and_then(|s| proto::TaskState::try_from(s).ok())
}

/// `Task.Status.ContainerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerStatus {
    /// The container's ID.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// Its process.
    #[serde(rename = "PID")]
    pub pid: i64,
    /// How it ended.
    pub exit_code: i64,
}

/// `Task.Status.PortStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortStatus {
    /// Host-mode ports bound.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

/// `Task.Status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskStatus {
    /// When it last changed.
    pub timestamp: String,
    /// Docker's state name.
    pub state: String,
    /// What happened.
    pub message: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub err: String,
    /// The container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    /// Bound ports.
    pub port_status: PortStatus,
}

/// `Task.NetworksAttachments[].Network` (its ID is what clients read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkRef {
    /// The network's ID.
    #[serde(rename = "ID")]
    pub id: String,
}

/// `Task.NetworksAttachments[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Attachment {
    /// The network.
    pub network: NetworkRef,
    /// The task's addresses on it.
    pub addresses: Vec<String>,
}

/// `Task`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Version.
    pub version: Version,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// Labels (none in skiff).
    pub labels: std::collections::HashMap<String, String>,
    /// The template it was made from.
    pub spec: TaskSpec,
    /// Its service.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Replicated services: 1..N.
    #[serde(skip_serializing_if = "is_zero")]
    pub slot: u64,
    /// Where it runs (empty until scheduled).
    #[serde(rename = "NodeID", skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    /// What the node reports.
    pub status: TaskStatus,
    /// What the manager wants.
    pub desired_state: String,
    /// Networks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks_attachments: Vec<Attachment>,
    /// Jobs: the iteration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_iteration: Option<Version>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Task {
    /// The Docker view of a task (registry credentials never shown).
    pub fn from_proto(t: &proto::Task) -> Self {
        let (id, version, created_at, updated_at) = meta(&t.meta);
        let status = t.status.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            labels: Default::default(),
            spec: TaskSpec::from_proto(&t.spec.clone().unwrap_or_default()),
            service_id: t.service_id.clone(),
            slot: t.slot,
            node_id: t.node_id.clone(),
            status: TaskStatus {
                timestamp: time(status.timestamp),
                state: state_name(status.state).into(),
                message: status.message.clone(),
                err: status.err.clone(),
                container_status: status.container.as_ref().map(|c| ContainerStatus {
                    container_id: c.container_id.clone(),
                    pid: i64::from(c.pid),
                    exit_code: i64::from(c.exit_code),
                }),
                port_status: PortStatus {
                    ports: status.ports.iter().map(PortConfig::from_proto).collect(),
                },
            },
            desired_state: state_name(t.desired_state).into(),
            networks_attachments: t
                .networks
                .iter()
                .map(|n| Attachment {
                    network: NetworkRef {
                        id: n.network_id.clone(),
                    },
                    addresses: n.addresses.clone(),
                })
                .collect(),
            job_iteration: (t.job_iteration != 0).then_some(Version {
                index: t.job_iteration,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    #[test]
    fn a_task_round_trips_through_dockers_json() {
        let task = proto::Task {
            meta: Some(proto::Meta {
                id: "t1".into(),
                version: 5,
                created_at: 1_700_000_000_000,
                updated_at: 1_700_000_000_500,
            }),
            service_id: "s1".into(),
            slot: 2,
            node_id: "n1".into(),
            desired_state: proto::TaskState::Running as i32,
            status: Some(proto::TaskStatus {
                timestamp: 1_700_000_000_400,
                state: proto::TaskState::Failed as i32,
                message: "started".into(),
                err: "exit 1".into(),
                container: Some(proto::ContainerStatus {
                    container_id: "c".into(),
                    pid: 7,
                    exit_code: 1,
                }),
                ..Default::default()
            }),
            networks: vec![proto::NetworkAttachment {
                network_id: "net".into(),
                addresses: vec!["10.0.0.3/24".into()],
                aliases: vec![],
            }],
            ..Default::default()
        };
        let docker = Task::from_proto(&task);
        let json = serde_json::to_value(&docker).unwrap();
        assert_eq!(json["Status"]["State"], "failed");
        assert_eq!(json["DesiredState"], "running");
        assert_eq!(json["Status"]["ContainerStatus"]["ExitCode"], 1);
        assert_eq!(json["NetworksAttachments"][0]["Network"]["ID"], "net");
        let back: Task = decode::value_as(json).unwrap();
        assert_eq!(back, docker);
    }

    #[test]
    fn state_names_are_dockers_both_ways() {
        assert_eq!(state_from_name("running"), Some(proto::TaskState::Running));
        assert_eq!(
            state_from_name("shutdown"),
            Some(proto::TaskState::Shutdown)
        );
        assert_eq!(state_from_name("bogus"), None);
    }
}
