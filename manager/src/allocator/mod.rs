//! The allocator (leader only): VNIs and subnets for networks, VIPs and published ports for
//! services, addresses for tasks. Everything it hands out is committed through Raft before
//! anyone uses it, and it rebuilds what is in use from the store (see `plan.rs`), so a
//! leader change never hands one address out twice.
//!
//! Tasks wait for their addresses: the scheduler places only tasks for which
//! [`is_allocated`] holds.

pub mod ipam;
mod plan;
pub mod ports;
pub mod vni;

pub use plan::{allocate, Allocation};

use std::sync::Arc;
use std::time::Duration;

use proto::{
    EndpointSpec, Network, PublishMode, Service, StoreAction, StoreBatch, Task, TaskSpec, TaskState,
};
use tokio::sync::watch;

use crate::manager::Manager;
use crate::orchestrator::{is_active, is_terminal, observed};
use crate::store::{ObjectStore, StoredObject};

/// Changes per Raft entry (as the orchestrator).
const BATCH: usize = 1000;
/// How long to gather changes before a round.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// How long to wait before retrying a round that failed (a conflicting write).
const RETRY: Duration = Duration::from_millis(100);

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
        task.spec.as_ref(),
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
pub async fn run(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    let mut leading = manager.raft().metrics();
    loop {
        tokio::select! {
            r = leading.wait_for(|m| m.current_leader == Some(m.id) && m.state == openraft::ServerState::Leader) => {
                if r.is_err() { return; }
            }
            _ = stop.changed() => return,
        }
        let (_, mut events) = manager.store().subscribe();
        // Apply everything earlier leaders committed before reading what is in use.
        if let Err(e) = manager.raft().read_barrier().await {
            tracing::debug!(error = %e, "allocator: read barrier failed; waiting");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        while manager.raft().is_leader() {
            let wait = match round(&manager).await {
                Ok(()) => Duration::from_secs(5),
                Err(e) => {
                    tracing::debug!(error = %e.message(), "allocation round failed; retrying");
                    RETRY
                }
            };
            tokio::select! {
                r = events.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r { return; }
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn round(manager: &Manager) -> Result<(), tonic::Status> {
    let Allocation { mut actions } = allocate(&manager.store().read());
    while !actions.is_empty() {
        let rest = actions.split_off(actions.len().min(BATCH));
        commit(manager, actions).await?;
        actions = rest;
    }
    Ok(())
}

/// Commits as the leader only, never forwarded: a deposed leader's allocations must not
/// land after the new leader has read what is in use.
async fn commit(manager: &Manager, actions: Vec<StoreAction>) -> Result<(), tonic::Status> {
    manager
        .raft()
        .propose_as_leader(&StoreBatch { actions })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests;
