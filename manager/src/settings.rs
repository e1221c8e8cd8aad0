//! The cluster's settings (`ClusterSpec`) and Docker's defaults for them. Every part of the
//! manager that reads a setting takes its default from here, so `swarm init`, `swarm
//! update` and the loops that use a setting agree on what "not set" means.

use std::time::Duration;

use proto::{CaConfig, ClusterSpec, DispatcherConfig, OrchestrationConfig, RaftConfig};

/// Node certificates live this long unless the cluster says otherwise (Docker's default).
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The UDP port of VXLAN traffic unless `swarm init --data-path-port` says otherwise.
pub const DEFAULT_DATA_PATH_PORT: u32 = 4789;
/// Snapshot interval (entries) when the cluster sets none.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
/// Heartbeat period when the cluster sets none.
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);
/// Heartbeats per second the leader is asked to handle at most: a cluster larger than
/// this many nodes gets a longer period than its setting (`nodes / this` seconds), so the
/// leader's heartbeat load stays bounded as the cluster grows, as Nomad does. At 1,000 nodes
/// or fewer the setting (1 s by default) stands, and a lost node is down within 3.5 periods.
pub const MAX_HEARTBEATS_PER_SECOND: u32 = 1_000;
/// Task history kept per slot when the cluster sets none.
pub const DEFAULT_TASK_HISTORY: u64 = 5;

/// The settings of a new cluster; anything the user set in `requested` wins.
pub fn default_spec(requested: Option<ClusterSpec>) -> ClusterSpec {
    let mut spec = requested.unwrap_or_default();
    if spec.name.is_empty() {
        spec.name = "default".into();
    }
    let raft = spec.raft.get_or_insert_with(RaftConfig::default);
    if raft.snapshot_interval == 0 {
        raft.snapshot_interval = DEFAULT_SNAPSHOT_INTERVAL;
    }
    if raft.log_entries_for_slow_followers == 0 {
        raft.log_entries_for_slow_followers = 128;
    }
    let dispatcher = spec
        .dispatcher
        .get_or_insert_with(DispatcherConfig::default);
    if dispatcher.heartbeat_period_ms == 0 {
        dispatcher.heartbeat_period_ms = DEFAULT_HEARTBEAT_PERIOD.as_millis() as u64;
    }
    let ca = spec.ca_config.get_or_insert_with(CaConfig::default);
    if ca.node_cert_expiry_ms == 0 {
        ca.node_cert_expiry_ms = DEFAULT_CERT_EXPIRY.as_millis() as u64;
    }
    let orchestration = spec
        .orchestration
        .get_or_insert_with(OrchestrationConfig::default);
    if orchestration.task_history_retention_limit == 0 {
        orchestration.task_history_retention_limit = DEFAULT_TASK_HISTORY;
    }
    if spec.default_addr_pool.is_empty() {
        spec.default_addr_pool = vec!["10.0.0.0/8".into()];
    }
    if spec.subnet_size == 0 {
        spec.subnet_size = 24;
    }
    if spec.data_path_port == 0 {
        spec.data_path_port = DEFAULT_DATA_PATH_PORT;
    }
    spec
}
