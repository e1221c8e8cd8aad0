//! The objects `inspect` prints and `--format` templates read: Docker's JSON (`ID`,
//! `Version.Index`, `Spec.TaskTemplate.ContainerSpec`, RFC 3339 times, nanosecond
//! durations), made by the very translation the Engine API answers with
//! (`daemon::engine::types`). So `skiff service inspect web` and `docker service inspect web`
//! print the same object, and a template written for one works with the other. There is
//! no second translation here: each function only picks the engine's type for a proto
//! message and turns it into a JSON value.
//!
//! Private material never reaches these values: the engine's types carry no secret data
//! and no registry credentials.

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::daemon::engine::types::{network, node, secret, service, swarm, task};

/// The cluster as Docker's `Swarm` (its join tokens, never the root CA's key).
pub fn swarm(c: &proto::Cluster) -> anyhow::Result<Value> {
    value(&swarm::Swarm::from_proto(c))
}

/// A service as Docker's `Service`.
pub fn service(s: &proto::Service) -> anyhow::Result<Value> {
    value(&service::Service::from_proto(s))
}

/// A node as Docker's `Node`; `root_ca` is the cluster's root certificate (PEM), shown
/// under `Description.TLSInfo` as Docker does (empty when unknown).
pub fn node(n: &proto::Node, root_ca: &str) -> anyhow::Result<Value> {
    value(&node::Node::from_proto(n, root_ca))
}

/// A task as Docker's `Task`.
pub fn task(t: &proto::Task) -> anyhow::Result<Value> {
    value(&task::Task::from_proto(t))
}

/// A secret as Docker's `Secret` (never its data).
pub fn secret(s: &proto::Secret) -> anyhow::Result<Value> {
    value(&secret::Blob::from_secret(s))
}

/// A config as Docker's `Config` (with its data, base64, as Docker shows it).
pub fn config(c: &proto::Config) -> anyhow::Result<Value> {
    value(&secret::Blob::from_config(c))
}

/// A network as Docker's `NetworkResource`.
pub fn network(n: &proto::Network) -> anyhow::Result<Value> {
    value(&network::Network::from_proto(n))
}

fn value<T: Serialize>(v: &T) -> anyhow::Result<Value> {
    serde_json::to_value(v).context("cannot convert the object to Docker's JSON")
}

/// Docker's `inspect` output: the objects as one indented JSON array.
pub fn inspect_array(values: Vec<Value>) -> anyhow::Result<String> {
    serde_json::to_string_pretty(&Value::Array(values)).context("cannot format JSON output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web() -> proto::Service {
        proto::Service {
            meta: Some(proto::Meta {
                id: "svc1".into(),
                version: 12,
                created_at: 1_700_000_000_000,
                updated_at: 1_700_000_000_000,
            }),
            spec: Some(proto::ServiceSpec {
                name: "web".into(),
                task_template: Some(proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image: "nginx:1.27".into(),
                        registry_auth: "SECRET-CREDENTIALS".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(proto::service_spec::Mode::Replicated(
                    proto::ReplicatedService { replicas: 3 },
                )),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_service_has_dockers_field_names() {
        let v = service(&web()).unwrap();
        assert_eq!(v["ID"], "svc1");
        assert_eq!(v["Version"]["Index"], 12);
        assert_eq!(v["CreatedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(v["Spec"]["Name"], "web");
        assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(
            v["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            "nginx:1.27"
        );
        assert!(v.get("meta").is_none() && v.get("spec").is_none());
        assert!(!v.to_string().contains("SECRET-CREDENTIALS"));
    }

    /// The paths scripts (and `integration-tests/tests/container_options.rs`) read from
    /// `service inspect`, with the values Docker shows there: durations in nanoseconds,
    /// Docker's words for enums.
    #[test]
    fn the_spec_reads_at_dockers_paths() {
        let mut s = web();
        let spec = s.spec.as_mut().unwrap();
        spec.endpoint = Some(proto::EndpointSpec {
            mode: proto::ResolutionMode::Dnsrr as i32,
            ports: Vec::new(),
        });
        let task = spec.task_template.as_mut().unwrap();
        task.restart = Some(proto::RestartPolicy {
            max_attempts: 3,
            ..Default::default()
        });
        task.placement = Some(proto::Placement {
            preferences: vec![proto::PlacementPreference {
                spread: "node.labels.zone".into(),
            }],
            max_replicas: 2,
            ..Default::default()
        });
        let c = task.container.as_mut().unwrap();
        c.labels = [("tier".to_string(), "web".to_string())].into();
        c.stop_signal = "SIGUSR1".into();
        c.stop_grace_period_ms = Some(1000);
        c.healthcheck = Some(proto::HealthConfig {
            test: vec!["NONE".into()],
            interval_ms: 1000,
            start_interval_ms: 300,
            ..Default::default()
        });
        let v = service(&s).unwrap();
        let t = "/Spec/TaskTemplate";
        for (pointer, want) in [
            (format!("{t}/ContainerSpec/Labels/tier"), json!("web")),
            (format!("{t}/ContainerSpec/StopSignal"), json!("SIGUSR1")),
            (
                format!("{t}/ContainerSpec/StopGracePeriod"),
                json!(1_000_000_000),
            ),
            (
                format!("{t}/ContainerSpec/Healthcheck/Interval"),
                json!(1_000_000_000),
            ),
            (
                format!("{t}/ContainerSpec/Healthcheck/StartInterval"),
                json!(300_000_000),
            ),
            (
                format!("{t}/ContainerSpec/Healthcheck/Test/0"),
                json!("NONE"),
            ),
            (format!("{t}/RestartPolicy/MaxAttempts"), json!(3)),
            (
                format!("{t}/Placement/Preferences/0/Spread/SpreadDescriptor"),
                json!("node.labels.zone"),
            ),
            (format!("{t}/Placement/MaxReplicas"), json!(2)),
            ("/Spec/EndpointSpec/Mode".to_string(), json!("dnsrr")),
        ] {
            assert_eq!(v.pointer(&pointer), Some(&want), "{pointer} in {v}");
        }
        // What is not set is left out, as Docker leaves it out.
        assert!(v.pointer(&format!("{t}/Networks")).is_none(), "{v}");
    }

    #[test]
    fn a_secret_never_shows_its_data_and_a_config_does() {
        let s = proto::Secret {
            meta: Some(proto::Meta {
                id: "s1".into(),
                ..Default::default()
            }),
            spec: Some(proto::SecretSpec {
                name: "db".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
        };
        let v = secret(&s).unwrap();
        assert_eq!(v["ID"], "s1");
        assert_eq!(v["Spec"]["Name"], "db");
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
            "{text}"
        );
        let c = proto::Config {
            meta: None,
            spec: Some(proto::ConfigSpec {
                name: "app".into(),
                data: b"x=1".to_vec(),
                ..Default::default()
            }),
        };
        assert_eq!(config(&c).unwrap()["Spec"]["Data"], "eD0x");
    }

    #[test]
    fn nodes_tasks_and_networks_have_dockers_heads() {
        let n = proto::Node {
            meta: Some(proto::Meta {
                id: "n1".into(),
                ..Default::default()
            }),
            description: Some(proto::NodeDescription {
                hostname: "host1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = node(&n, "CERT").unwrap();
        assert_eq!(v["ID"], "n1");
        assert_eq!(v["Description"]["Hostname"], "host1");
        let t = proto::Task {
            meta: Some(proto::Meta {
                id: "t1".into(),
                ..Default::default()
            }),
            service_id: "svc1".into(),
            slot: 2,
            ..Default::default()
        };
        let v = task(&t).unwrap();
        assert_eq!(v["ID"], "t1");
        assert_eq!(v["ServiceID"], "svc1");
        assert_eq!(v["Slot"], 2);
        let net = proto::Network {
            meta: Some(proto::Meta {
                id: "net1".into(),
                ..Default::default()
            }),
            spec: Some(proto::NetworkSpec {
                name: "front".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = network(&net).unwrap();
        assert_eq!(v["Id"], "net1");
        assert_eq!(v["Name"], "front");
        assert_eq!(v["Scope"], "swarm");
    }
}
