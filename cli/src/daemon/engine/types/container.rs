//! The node's task containers as Docker shows containers: the summary of
//! `GET /containers/json` and the detail of `GET /containers/{id}/json`, with the
//! `com.docker.swarm.*` labels dockerd gives a swarm task's container.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::service::PortConfig;
use super::time;

/// The container's name, as swarm names a task's: `SERVICE.SLOT.TASK` (global services:
/// `SERVICE.NODE.TASK`).
pub fn name(task: &proto::Task) -> String {
    let id = task.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("");
    if task.slot != 0 {
        format!("{}.{}.{}", task.service_name, task.slot, id)
    } else {
        format!("{}.{}.{}", task.service_name, task.node_id, id)
    }
}

/// The container's ID: the runtime's, or the task's while it has none.
pub fn id(task: &proto::Task) -> String {
    task.status
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .map(|c| c.container_id.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| task.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default())
}

/// The labels dockerd puts on a swarm task's container, over the spec's own.
pub fn labels(task: &proto::Task) -> HashMap<String, String> {
    let container = task
        .spec
        .as_ref()
        .and_then(|s| s.container.clone())
        .unwrap_or_default();
    let mut labels = container.labels;
    let task_id = task.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
    for (k, v) in [
        ("com.docker.swarm.node.id", task.node_id.clone()),
        ("com.docker.swarm.service.id", task.service_id.clone()),
        ("com.docker.swarm.service.name", task.service_name.clone()),
        ("com.docker.swarm.task", String::new()),
        ("com.docker.swarm.task.id", task_id),
        ("com.docker.swarm.task.name", name(task)),
    ] {
        labels.insert(k.to_string(), v);
    }
    labels
}

/// Docker's container state for a task's observed state.
pub fn state(task: &proto::Task) -> &'static str {
    use proto::TaskState as S;
    let observed = task.status.as_ref().map_or(0, |s| s.state);
    match S::try_from(observed) {
        Ok(S::Running) => "running",
        Ok(S::Complete | S::Shutdown | S::Failed | S::Rejected | S::Remove | S::Orphaned) => {
            "exited"
        }
        _ => "created",
    }
}

fn command(task: &proto::Task) -> Vec<String> {
    let c = task
        .spec
        .as_ref()
        .and_then(|s| s.container.clone())
        .unwrap_or_default();
    c.command.into_iter().chain(c.args).collect()
}

fn image(task: &proto::Task) -> String {
    task.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .map(|c| c.image.clone())
        .unwrap_or_default()
}

/// Go's `units.HumanDuration`, as `docker ps` words ages.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=2699 => format!("{} minutes", s / 60),
        2700..=5399 => "About an hour".into(),
        5400..=172_799 => format!("{} hours", (s + 1800) / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86_400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

/// `GET /containers/json[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Summary {
    /// The container's ID.
    pub id: String,
    /// `/NAME`.
    pub names: Vec<String>,
    /// The image.
    pub image: String,
    /// The image's ID (not known: the reference).
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// The command line.
    pub command: String,
    /// Unix seconds.
    pub created: i64,
    /// Host-mode ports.
    pub ports: Vec<Value>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// "created", "running" or "exited".
    pub state: String,
    /// "Up 5 minutes", "Exited (1) 2 seconds ago".
    pub status: String,
}

impl Summary {
    /// The summary of a task's container, `now_ms` being the time now.
    pub fn from_task(task: &proto::Task, now_ms: i64) -> Self {
        let status = task.status.clone().unwrap_or_default();
        let state = state(task);
        let age = |since: i64| human_duration((now_ms - since) / 1000);
        let words = match state {
            "running" => format!(
                "Up {}",
                age(if status.running_since != 0 {
                    status.running_since
                } else {
                    status.timestamp
                })
            ),
            "exited" => format!(
                "Exited ({}) {} ago",
                status.container.as_ref().map_or(0, |c| c.exit_code),
                age(status.timestamp)
            ),
            _ => "Created".into(),
        };
        Self {
            id: id(task),
            names: vec![format!("/{}", name(task))],
            image: image(task),
            image_id: String::new(),
            command: command(task).join(" "),
            created: task.meta.as_ref().map_or(0, |m| m.created_at / 1000),
            ports: status
                .ports
                .iter()
                .map(|p| {
                    let p = PortConfig::from_proto(p);
                    serde_json::json!({
                        "PrivatePort": p.target_port,
                        "PublicPort": p.published_port,
                        "Type": p.protocol,
                    })
                })
                .collect(),
            labels: labels(task),
            state: state.into(),
            status: words,
        }
    }
}

/// `GET /containers/{id}/json`: what `docker inspect` reads most.
pub fn detail(task: &proto::Task) -> Value {
    let status = task.status.clone().unwrap_or_default();
    let container = task
        .spec
        .as_ref()
        .and_then(|s| s.container.clone())
        .unwrap_or_default();
    let state = state(task);
    let cmd = command(task);
    serde_json::json!({
        "Id": id(task),
        "Created": time(task.meta.as_ref().map_or(0, |m| m.created_at)),
        "Path": cmd.first().cloned().unwrap_or_default(),
        "Args": cmd.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": state,
            "Running": state == "running",
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": status.container.as_ref().map_or(0, |c| c.pid),
            "ExitCode": status.container.as_ref().map_or(0, |c| c.exit_code),
            "Error": status.err,
            "StartedAt": time(status.running_since),
            "FinishedAt": if state == "exited" { time(status.timestamp) } else { time(0) },
        },
        "Image": container.image,
        "Name": format!("/{}", name(task)),
        "RestartCount": 0,
        "Platform": "linux",
        "HostConfig": {},
        "Mounts": [],
        "Config": {
            "Hostname": container.hostname,
            "User": container.user,
            "Env": container.env,
            "Cmd": container.args,
            "Entrypoint": if container.command.is_empty() { Value::Null } else { serde_json::json!(container.command) },
            "Image": image(task),
            "WorkingDir": container.dir,
            "Labels": labels(task),
            "StopSignal": container.stop_signal,
        },
        "NetworkSettings": {
            "Networks": task.networks.iter().map(|n| (n.network_id.clone(), serde_json::json!({
                "NetworkID": n.network_id,
                "IPAddress": n.addresses.first().map(|a| a.split('/').next().unwrap_or("").to_string()).unwrap_or_default(),
                "Aliases": n.aliases,
            }))).collect::<serde_json::Map<_, _>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    fn task() -> proto::Task {
        proto::Task {
            meta: Some(proto::Meta {
                id: "t1".into(),
                created_at: 1_700_000_000_000,
                ..Default::default()
            }),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            node_id: "n1".into(),
            spec: Some(
                proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image: "busybox".into(),
                        args: vec!["sleep".into(), "9".into()],
                        labels: [("mine".to_string(), "x".to_string())].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            status: Some(proto::TaskStatus {
                state: proto::TaskState::Running as i32,
                running_since: 1_700_000_000_000,
                timestamp: 1_700_000_000_000,
                container: Some(proto::ContainerStatus {
                    container_id: "c1".into(),
                    pid: 9,
                    exit_code: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_container_carries_swarms_labels_and_round_trips() {
        let summary = Summary::from_task(&task(), 1_700_000_300_000);
        assert_eq!(summary.id, "c1");
        assert_eq!(summary.names, ["/web.2.t1"]);
        assert_eq!(summary.status, "Up 5 minutes");
        assert_eq!(summary.labels["com.docker.swarm.service.name"], "web");
        assert_eq!(summary.labels["com.docker.swarm.task.id"], "t1");
        assert_eq!(summary.labels["com.docker.swarm.task.name"], "web.2.t1");
        assert_eq!(summary.labels["mine"], "x");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(decode::value_as::<Summary>(json).unwrap(), summary);
        let detail = detail(&task());
        assert_eq!(detail["State"]["Status"], "running");
        assert_eq!(detail["Name"], "/web.2.t1");
        assert_eq!(detail["Config"]["Labels"]["com.docker.swarm.node.id"], "n1");
    }

    #[test]
    fn ages_read_as_dockers() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(45), "45 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
    }
}
