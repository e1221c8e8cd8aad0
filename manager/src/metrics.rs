//! The manager's Prometheus metrics (`skiffd --metrics-addr`): counters and histograms the
//! manager's code moves as things happen (leader changes, proposals, control API calls),
//! and gauges read from Raft and the store when a scrape asks ([`sample`]), so a quiet
//! cluster costs nothing between scrapes.
//!
//! What is never here: object names beyond a kind or a state, and nothing from a spec, so
//! no secret, environment value or token can reach a scrape.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::raft::RaftNode;
use crate::store::{Kind, StoredObject};
use crate::Manager;

/// A metric's labels: fixed names, values from a small known set.
pub type Labels = Vec<(&'static str, String)>;

/// Latency histograms: 100 µs to about 26 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every metric of the manager.
pub struct ManagerMetrics {
    /// Times this manager saw the leader change to another member.
    pub leader_changes: Counter,
    /// How long a store write took to commit (proposal to applied on a quorum).
    pub proposal_seconds: Histogram,
    /// Heartbeats this manager accepted as the leader: the load the heartbeat period bounds.
    pub heartbeats: Counter,
    /// The encoded size of this manager's latest snapshot, built here or installed.
    pub snapshot_bytes: Gauge,
    /// Control API calls by method and gRPC code.
    pub control_requests: Family<Labels, Counter>,
    /// Control API latency by method.
    pub control_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    raft_term: Gauge,
    raft_is_leader: Gauge,
    raft_last_log_index: Gauge,
    raft_applied_index: Gauge,
    raft_snapshot_index: Gauge,
    store_objects: Family<Labels, Gauge>,
    store_tasks: Family<Labels, Gauge>,
    /// One sample at a time: each clears and refills its families.
    sampling: Mutex<()>,
}

/// The manager's metrics, one set per process.
pub static METRICS: LazyLock<ManagerMetrics> = LazyLock::new(|| ManagerMetrics {
    leader_changes: Counter::default(),
    proposal_seconds: latency(),
    heartbeats: Counter::default(),
    snapshot_bytes: Gauge::default(),
    control_requests: Family::default(),
    control_seconds: Family::new_with_constructor(latency),
    raft_term: Gauge::default(),
    raft_is_leader: Gauge::default(),
    raft_last_log_index: Gauge::default(),
    raft_applied_index: Gauge::default(),
    raft_snapshot_index: Gauge::default(),
    store_objects: Family::default(),
    store_tasks: Family::default(),
    sampling: Mutex::new(()),
});

impl ManagerMetrics {
    /// Registers every metric under `registry`'s prefix.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(
            "raft_leader_changes",
            "Times this manager saw the Raft leader change",
            self.leader_changes.clone(),
        );
        registry.register(
            "dispatcher_heartbeats",
            "Node heartbeats accepted while leading",
            self.heartbeats.clone(),
        );
        registry.register(
            "raft_proposal_seconds",
            "Time from proposing a store write to its commit",
            self.proposal_seconds.clone(),
        );
        registry.register(
            "control_requests",
            "Control API calls by method and gRPC code",
            self.control_requests.clone(),
        );
        registry.register(
            "control_request_seconds",
            "Control API latency by method",
            self.control_seconds.clone(),
        );
        registry.register("raft_term", "The current Raft term", self.raft_term.clone());
        registry.register(
            "raft_is_leader",
            "1 while this manager leads",
            self.raft_is_leader.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "The index of the last entry in this manager's log",
            self.raft_last_log_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "The index of the last entry applied to this manager's store",
            self.raft_applied_index.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "The last index of this manager's latest snapshot",
            self.raft_snapshot_index.clone(),
        );
        registry.register(
            "raft_snapshot_bytes",
            "The encoded size of this manager's latest snapshot, built or installed",
            self.snapshot_bytes.clone(),
        );
        registry.register(
            "store_objects",
            "Objects in the store by kind",
            self.store_objects.clone(),
        );
        registry.register(
            "store_tasks",
            "Tasks in the store by state",
            self.store_tasks.clone(),
        );
    }

    /// Records one control API call.
    pub fn control_call(&self, method: &str, code: &str, took: Duration) {
        let method = method.to_owned();
        self.control_requests
            .get_or_create(&vec![("method", method.clone()), ("code", code.to_owned())])
            .inc();
        self.control_seconds
            .get_or_create(&vec![("method", method)])
            .observe(took.as_secs_f64());
    }
}

/// Reads Raft's and the store's gauges from `manager` (all zero on a node that runs none).
pub fn sample(manager: Option<&Manager>) {
    let m = &*METRICS;
    let _one = m.sampling.lock().unwrap_or_else(|e| e.into_inner());
    m.store_objects.clear();
    m.store_tasks.clear();
    let Some(manager) = manager else {
        for g in [
            &m.raft_term,
            &m.raft_is_leader,
            &m.raft_last_log_index,
            &m.raft_applied_index,
            &m.raft_snapshot_index,
        ] {
            g.set(0);
        }
        return;
    };
    let raft = manager.raft().metrics().borrow().clone();
    let index = |i: Option<u64>| i.map_or(0, |i| i as i64);
    m.raft_term.set(raft.current_term as i64);
    m.raft_is_leader
        .set(i64::from(raft.current_leader == Some(raft.id)));
    m.raft_last_log_index.set(index(raft.last_log_index));
    m.raft_applied_index
        .set(index(raft.last_applied.map(|l| l.index)));
    m.raft_snapshot_index
        .set(index(raft.snapshot.map(|l| l.index)));

    let store = manager.store().read();
    // The tables' sizes and the store's tally of tasks by state, not a walk over them: the
    // store's read guard holds off the applying of committed writes while it is held.
    let counts = [
        (Kind::Node, proto::Node::table(&store).len()),
        (Kind::Service, proto::Service::table(&store).len()),
        (Kind::Task, proto::Task::table(&store).len()),
        (Kind::Network, proto::Network::table(&store).len()),
        (Kind::Secret, proto::Secret::table(&store).len()),
        (Kind::Config, proto::Config::table(&store).len()),
    ];
    for (kind, n) in counts {
        m.store_objects
            .get_or_create(&vec![("kind", kind.to_string())])
            .set(n as i64);
    }
    let by_state = store.tasks_by_state();
    for state in (0..32).filter_map(|i| proto::TaskState::try_from(i).ok()) {
        let n = by_state.get(&(state as i32)).copied().unwrap_or(0);
        m.store_tasks
            .get_or_create(&vec![("state", state_word(state))])
            .set(n as i64);
    }
}

/// A task state as a label: `TASK_STATE_RUNNING` -> `running`.
pub fn state_word(state: proto::TaskState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
}

/// Counts leader changes as this manager's Raft sees them, until `stop` changes.
pub async fn watch_leader(raft: Arc<RaftNode>, mut stop: watch::Receiver<bool>) {
    let mut metrics = raft.metrics();
    let mut leader = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let now = metrics.borrow().current_leader;
        if now.is_some() && now != leader {
            if leader.is_some() {
                METRICS.leader_changes.inc();
            }
            leader = now;
        }
    }
}
