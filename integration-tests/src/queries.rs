//! What tests ask a cluster through the CLI, as a user would read it: tasks of a service,
//! which of them run, who leads. Shared by every test file.

use std::time::Duration;

use serde_json::Value;

use crate::{wait_until, Cluster};

/// The observed or desired state of a task from `service ps --format json`.
pub fn task_state(task: &Value, which: &str) -> String {
    match which {
        "desired" => task["desired_state"].as_str().unwrap_or("").to_owned(),
        _ => task["status"]["state"].as_str().unwrap_or("").to_owned(),
    }
}

/// A running task as tests use it: where it runs and its addresses.
#[derive(Debug, Clone)]
pub struct RunningTask {
    /// The task ID (its namespace is `skt-<id>`).
    pub id: String,
    /// The number of the test host whose node runs it.
    pub host: usize,
    /// (network ID, address without prefix length), in attachment order.
    pub addresses: Vec<(String, String)>,
    /// The host ports it reports bound (host-mode publishing).
    pub ports: Vec<u64>,
}

impl RunningTask {
    /// Its address on `network_id`.
    pub fn address_on(&self, network_id: &str) -> &str {
        self.addresses
            .iter()
            .find(|(n, _)| n == network_id)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("task {} has no address on {network_id}", self.id))
    }
}

/// `GET /` sent to `to` from this thread's network namespace; the body, if any.
pub fn http_get(to: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let mut conn = std::net::TcpStream::connect_timeout(&to, timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    Some(body.trim().to_owned())
}

/// The tasks among `tasks` that are meant to run and do, as (slot, node ID) pairs.
fn running_of(tasks: &[Value]) -> Vec<(u64, String)> {
    tasks
        .iter()
        .filter(|t| {
            task_state(t, "desired") == "TASK_STATE_RUNNING"
                && task_state(t, "observed") == "TASK_STATE_RUNNING"
        })
        .map(|t| {
            (
                t["slot"].as_u64().unwrap_or(0),
                t["node_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

impl Cluster {
    /// `GET /` sent from inside test host `from`'s namespace to `to`; the body, if any.
    pub fn http_get(&self, from: usize, to: std::net::SocketAddr) -> Option<String> {
        self.namespace(from)?;
        self.on_host(from, move || http_get(to))
            .join()
            .ok()
            .flatten()
    }

    /// The tasks of `service` that are meant to run and do, with the host they run on.
    pub fn running_tasks(&self, host: usize, service: &str) -> Vec<RunningTask> {
        let hosts: std::collections::HashMap<String, usize> = self
            .nodes(host)
            .iter()
            .filter_map(|n| {
                let id = n["meta"]["id"].as_str()?.to_owned();
                let name = n["description"]["hostname"].as_str()?;
                Some((id, name.trim_start_matches("host").parse().ok()?))
            })
            .collect();
        self.tasks(host, service)
            .iter()
            .filter(|t| {
                task_state(t, "desired") == "TASK_STATE_RUNNING"
                    && task_state(t, "observed") == "TASK_STATE_RUNNING"
            })
            .map(|t| RunningTask {
                id: t["meta"]["id"].as_str().unwrap_or("").to_owned(),
                host: t["node_id"]
                    .as_str()
                    .and_then(|n| hosts.get(n).copied())
                    .unwrap_or(0),
                addresses: t["networks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        let addr = a["addresses"][0].as_str()?;
                        Some((
                            a["network_id"].as_str()?.to_owned(),
                            addr.split('/').next()?.to_owned(),
                        ))
                    })
                    .collect(),
                ports: t["status"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["published_port"].as_u64())
                    .collect(),
            })
            .collect()
    }

    /// The ID of network `name`, once the allocator has given it a VNI.
    pub fn network_id(&self, host: usize, name: &str) -> String {
        wait_until(
            &format!("network {name} allocated"),
            Duration::from_secs(30),
            || {
                let out = self.ok(host, &["network", "inspect", name]);
                let n: Value = serde_json::from_str(&out).ok()?;
                // Docker's JSON: the VNI shows as the overlay driver's VXLAN ID option.
                let vni = &n[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"];
                (vni.as_str().is_some_and(|v| v != "0"))
                    .then(|| n[0]["Id"].as_str().map(str::to_owned))
                    .flatten()
            },
        )
    }

    /// Service `name`'s VIP (without prefix length) on network `network_id`, once it has one.
    pub fn vip(&self, host: usize, name: &str, network_id: &str) -> String {
        wait_until(
            &format!("the VIP of {name}"),
            Duration::from_secs(30),
            || {
                let out = self.ok(host, &["service", "inspect", name]);
                let s: Value = serde_json::from_str(&out).ok()?;
                s[0]["Endpoint"]["VirtualIPs"]
                    .as_array()?
                    .iter()
                    .find(|v| v["NetworkID"] == network_id)?["Addr"]
                    .as_str()?
                    .split('/')
                    .next()
                    .map(str::to_owned)
            },
        )
    }

    /// `service ps --format json SERVICE` on host `host`.
    pub fn tasks(&self, host: usize, service: &str) -> Vec<Value> {
        let out = self.ok(host, &["service", "ps", "--format", "json", service]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("service ps JSON: {e}: {out}"))
    }

    /// `service ps` on host `host`, or `None` while it fails (the managers electing a
    /// leader after a fault): for waits, which must not give up on the first try.
    fn try_tasks(&self, host: usize, service: &str) -> Option<Vec<Value>> {
        let out = self.skiff(host, &["service", "ps", "--format", "json", service]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("service ps JSON"))
    }

    /// Tasks that are meant to run and do, as (slot, node ID) pairs.
    pub fn running(&self, host: usize, service: &str) -> Vec<(u64, String)> {
        running_of(&self.tasks(host, service))
    }

    /// Waits until exactly `n` tasks of `service` are meant to run and all of them do.
    pub fn wait_running(
        &self,
        host: usize,
        service: &str,
        n: usize,
        within: Duration,
    ) -> Vec<(u64, String)> {
        wait_until(&format!("{n} running tasks of {service}"), within, || {
            let tasks = self.try_tasks(host, service)?;
            let running = running_of(&tasks);
            let active = tasks
                .iter()
                .filter(|t| task_state(t, "desired") == "TASK_STATE_RUNNING")
                .count();
            (running.len() == n && active == n).then_some(running)
        })
    }

    /// (hostname, MANAGER STATUS column) for every node, from `node ls` on host `i`.
    pub fn manager_statuses(&self, i: usize) -> Vec<(String, String)> {
        let out = self.ok(i, &["node", "ls"]);
        out.lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let host = cols
                    .iter()
                    .find(|c| c.starts_with("host"))
                    .unwrap_or(&"")
                    .to_string();
                let status = ["Leader", "Reachable", "Unreachable"]
                    .into_iter()
                    .find(|s| cols.contains(s))
                    .unwrap_or("")
                    .to_owned();
                (host, status)
            })
            .collect()
    }

    /// The Raft term host `i` is in, from `skiff info` (answered by the host's own daemon,
    /// without asking the leader). Every election moves it on, so it counts leader changes.
    pub fn raft_term(&self, i: usize) -> u64 {
        let info = self.ok(i, &["info"]);
        info.split_once("Raft: term ")
            .and_then(|(_, after)| after.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|term| term.parse().ok())
            .unwrap_or_else(|| panic!("no Raft term in `skiff info` on host {i}: {info}"))
    }

    /// How many nodes `node ls` on host `i` shows ready; `None` if the read was refused (a
    /// busy leader may refuse one now and then while thousands of nodes join).
    pub fn ready_nodes(&self, i: usize) -> Option<usize> {
        let out = self.skiff(i, &["node", "ls", "--format", "json"]);
        let nodes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            nodes
                .iter()
                .filter(|n| n["status"]["state"] == "NODE_STATE_READY")
                .count(),
        )
    }

    /// The number of the host whose node leads, as `node ls` on host `i` shows it.
    pub fn leader_host(&self, i: usize) -> usize {
        let statuses = self.manager_statuses(i);
        let (host, _) = statuses
            .iter()
            .find(|(_, s)| s == "Leader")
            .unwrap_or_else(|| panic!("no leader in {statuses:?}"));
        host.trim_start_matches("host")
            .parse()
            .expect("host number")
    }
}
