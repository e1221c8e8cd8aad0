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

impl Cluster {
    /// `service ps --format json SERVICE` on host `host`.
    pub fn tasks(&self, host: usize, service: &str) -> Vec<Value> {
        let out = self.ok(host, &["service", "ps", "--format", "json", service]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("service ps JSON: {e}: {out}"))
    }

    /// Tasks that are meant to run and do, as (slot, node ID) pairs.
    pub fn running(&self, host: usize, service: &str) -> Vec<(u64, String)> {
        self.tasks(host, service)
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

    /// Waits until exactly `n` tasks of `service` are meant to run and all of them do.
    pub fn wait_running(
        &self,
        host: usize,
        service: &str,
        n: usize,
        within: Duration,
    ) -> Vec<(u64, String)> {
        wait_until(&format!("{n} running tasks of {service}"), within, || {
            let running = self.running(host, service);
            let active = self
                .tasks(host, service)
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
