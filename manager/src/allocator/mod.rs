//! The allocator (leader only): VNIs and subnets for networks, VIPs and published ports for
//! services, addresses for tasks. Everything it hands out is committed through Raft before
//! anyone uses it, and it rebuilds what is in use from the store (see `plan.rs`), so a
//! leader change never hands one address out twice. A round looks only at what changed
//! since the last one (`changes.rs`), everything when that is unknown.
//!
//! Tasks wait for their addresses: the scheduler places only tasks for which
//! [`is_allocated`] holds.

mod changes;
pub mod ipam;
mod plan;
pub mod ports;
pub mod vni;

pub use plan::{allocate, allocate_in, Allocation, Objects, Scope};

use std::time::Duration;

use proto::{now_ms, EndpointSpec, Network, PublishMode, Service, Task, TaskSpec, TaskState};
use tokio::sync::watch;

use self::changes::Changes;
use crate::leader::{self, Rounds};
use crate::lifecycle::{is_active, is_terminal, observed};
use crate::store::{ObjectStore, Store, StoredObject, WatchEvent};

/// How long to wait before retrying a round that failed (a conflicting write).
const RETRY: Duration = Duration::from_millis(100);
/// The longest wait between rounds when nothing changes.
const IDLE: Duration = Duration::from_secs(5);

/// The `ingress` network, if the cluster has one.
pub fn ingress_network(store: &ObjectStore) -> Option<&Network> {
    store
        .list::<Network>()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
}

/// Whether the endpoint publishes a port through the routing mesh.
pub fn publishes_ingress(endpoint: Option<&EndpointSpec>) -> bool {
    endpoint.is_some_and(|e| {
        e.ports
            .iter()
            .any(|p| p.publish_mode == PublishMode::Ingress as i32)
    })
}

/// Whether the endpoint publishes any port, through the routing mesh or on the nodes that
/// run its tasks (host mode).
pub fn publishes(endpoint: Option<&EndpointSpec>) -> bool {
    endpoint.is_some_and(|e| !e.ports.is_empty())
}

/// The networks (IDs) a service's tasks attach to: those of its template, plus `ingress`
/// when it publishes ports: the routing mesh reaches its tasks there, and so does a node
/// that publishes a task's port in host mode (its leg into `ingress` is its way into the
/// task's namespace). In order, without repeats.
pub fn networks_of(
    template: Option<&TaskSpec>,
    endpoint: Option<&EndpointSpec>,
    ingress: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // `--network host`: the task runs in its node's own network namespace, joins no network
    // (not even ingress: it publishes host-mode ports only) and needs no address or VIP.
    if template.is_some_and(proto::container_options::uses_host_network) {
        return out;
    }
    let targets = template
        .iter()
        .flat_map(|t| &t.networks)
        .map(|n| n.target.as_str());
    let ingress = ingress.filter(|_| publishes(endpoint));
    for id in targets.chain(ingress) {
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    out
}

/// The networks `task` needs an address on: from its frozen spec, plus `ingress` if its
/// service publishes ports.
pub fn task_networks(task: &Task, service: Option<&Service>, ingress: Option<&str>) -> Vec<String> {
    networks_of(
        task.spec.as_deref(),
        service.and_then(|s| s.spec.as_ref()?.endpoint.as_ref()),
        ingress,
    )
}

/// Whether the task may be using its addresses: it has not ended, and it was not stopped
/// before ever reaching a node.
pub fn holds_addresses(task: &Task) -> bool {
    !is_terminal(observed(task)) && (!task.node_id.is_empty() || is_active(task))
}

/// Whether the task's node has not taken it yet, so its attachments can still change.
pub fn not_delivered(task: &Task) -> bool {
    observed(task) <= TaskState::Assigned as i32
}

/// Whether `task` has an address on every network it needs: only then may it be scheduled
/// and sent to a node.
pub fn is_allocated(store: &ObjectStore, task: &Task) -> bool {
    let service = store.get::<Service>(&task.service_id);
    let ingress = ingress_network(store).map(|n| n.id());
    task_networks(task, service, ingress).iter().all(|id| {
        task.networks
            .iter()
            .any(|a| &a.network_id == id && !a.addresses.is_empty())
    })
}

/// Runs on every manager; allocates only while this manager leads.
pub async fn run(store: Store, stop: watch::Receiver<bool>) {
    leader::run(store, stop, Allocator::default()).await
}

/// The allocation rounds of a leader.
#[derive(Default)]
struct Allocator {
    /// What changed since the last round.
    changes: Changes,
}

impl Rounds for Allocator {
    /// Apply everything earlier leaders committed before reading what is in use.
    const BARRIER: bool = true;

    fn start(&mut self) {
        self.changes = Changes::default();
    }

    fn observe(&mut self, event: &WatchEvent) {
        self.changes.observe(event);
    }

    fn lagged(&mut self) {
        self.changes.everything();
    }

    async fn round(&mut self, store: &Store) -> Duration {
        let Allocation { actions, wanting } = {
            let store = store.read();
            match self.changes.take(&store, now_ms()) {
                Some(scope) => allocate_in(&store, &scope),
                None => return IDLE,
            }
        };
        // As the leader only, never forwarded: a deposed leader's allocations must not land
        // after the new leader has read what is in use.
        match leader::commit_as_leader(store, actions).await {
            Ok(()) => {
                self.changes.done(wanting);
                IDLE
            }
            Err(e) => {
                tracing::debug!(error = %e, "allocation round failed; retrying");
                self.changes.failed();
                RETRY
            }
        }
    }
}

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tests;
