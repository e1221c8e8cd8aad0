//! What each node is told to run: its tasks, the networks they use (with their peers) and
//! the secrets and configs they refer to, the routing mesh it serves and the service
//! discovery of its tasks' networks; first all of it, then the changes.

use std::collections::{HashMap, HashSet};

use proto::store_object::Object;
use proto::{
    assignment, Assignment, AssignmentAction, AssignmentChange, AssignmentsMessage,
    AssignmentsType, DiscoveryState, MeshState, Network, StoreEvent, Task, WeightedPeer,
};

use super::networks::{self, NetworkView};
use super::secrets::{self, SecretsView};
use super::sent::SentTask;
use super::{discovery, mesh};
use crate::allocator;
use crate::lifecycle::{is_active, is_terminal, observed};
use crate::store::{ObjectStore, StoredObject};

/// Whether `task` is still the node's business: to run, to stop, or to report on.
pub fn assigned_to(task: &Task, node_id: &str) -> bool {
    task.node_id == node_id && (is_active(task) || !is_terminal(observed(task)))
}

/// Whether to send `task` to `node_id` now: it is the node's business and, if the node has
/// not taken it yet, it has its network addresses (a global service's task is assigned to
/// its node before the allocator has run).
fn deliverable(store: &ObjectStore, task: &Task, node_id: &str) -> bool {
    assigned_to(task, node_id)
        && (!allocator::not_delivered(task) || allocator::is_allocated(store, task))
}

/// The tasks and networks last sent to one node, to send only what changed.
#[derive(Default)]
pub struct NodeAssignments {
    sent: HashMap<String, SentTask>,
    /// Tasks assigned to the node that it has not taken yet: whether they are sent depends
    /// on their network addresses, which a change of their service or of the networks may
    /// decide without a change of their own.
    pending: HashSet<String>,
    networks: NetworkView,
    secrets: SecretsView,
    mesh: Option<MeshState>,
    discovery: Option<DiscoveryState>,
}

fn network_change(action: AssignmentAction, network: Network) -> AssignmentChange {
    AssignmentChange {
        action: action as i32,
        assignment: Some(Assignment {
            item: Some(assignment::Item::Network(network)),
        }),
    }
}

fn change(action: AssignmentAction, task: Task) -> AssignmentChange {
    AssignmentChange {
        action: action as i32,
        assignment: Some(Assignment {
            item: Some(assignment::Item::Task(task)),
        }),
    }
}

impl NodeAssignments {
    /// Everything assigned to `node_id` now.
    pub fn complete(&mut self, store: &ObjectStore, node_id: &str) -> AssignmentsMessage {
        self.sent.clear();
        self.pending.clear();
        let mut changes = Vec::new();
        for task in store
            .tasks_on_node(node_id)
            .filter(|t| assigned_to(t, node_id))
        {
            if allocator::not_delivered(task) {
                self.pending.insert(task.id().to_owned());
            }
            if deliverable(store, task, node_id) {
                self.sent.insert(task.id().to_owned(), SentTask::of(task));
                changes.push(change(AssignmentAction::Update, task.clone()));
            }
        }
        let mut message = AssignmentsMessage {
            r#type: AssignmentsType::Complete as i32,
            changes,
            data_path_port: store
                .cluster()
                .and_then(|c| c.spec.as_ref())
                .map_or(0, |s| s.data_path_port),
            ..Default::default()
        };
        self.networks = NetworkView::default();
        self.network_changes(store, node_id, &mut message);
        self.secrets = SecretsView::default();
        self.secret_changes(store, node_id, &mut message);
        self.mesh = None;
        self.mesh_change(store, node_id, &mut message);
        self.discovery = None;
        self.discovery_change(store, node_id, &mut message);
        message
    }

    /// Adds to `message` the secrets and configs the node's tasks now need and it lacks (or
    /// holds at another version), and the removal of those no task of it needs any more.
    fn secret_changes(
        &mut self,
        store: &ObjectStore,
        node_id: &str,
        message: &mut AssignmentsMessage,
    ) {
        let now = secrets::view(store, node_id);
        let item_change = |action: AssignmentAction, item| AssignmentChange {
            action: action as i32,
            assignment: Some(Assignment { item: Some(item) }),
        };
        for (id, secret) in &now.secrets {
            if self.secrets.secrets.get(id).map(|s| s.version()) != Some(secret.version()) {
                let item = assignment::Item::Secret(secret.clone());
                message
                    .changes
                    .push(item_change(AssignmentAction::Update, item));
            }
        }
        for (id, config) in &now.configs {
            if self.secrets.configs.get(id).map(|c| c.version()) != Some(config.version()) {
                let item = assignment::Item::Config(config.clone());
                message
                    .changes
                    .push(item_change(AssignmentAction::Update, item));
            }
        }
        // Removals name the object only: a node dropping a secret needs no bytes for it.
        for (id, secret) in &self.secrets.secrets {
            if !now.secrets.contains_key(id) {
                let item = assignment::Item::Secret(proto::Secret {
                    meta: secret.meta.clone(),
                    spec: None,
                });
                message
                    .changes
                    .push(item_change(AssignmentAction::Remove, item));
            }
        }
        for (id, config) in &self.secrets.configs {
            if !now.configs.contains_key(id) {
                let item = assignment::Item::Config(proto::Config {
                    meta: config.meta.clone(),
                    spec: None,
                });
                message
                    .changes
                    .push(item_change(AssignmentAction::Remove, item));
            }
        }
        self.secrets = now;
    }

    /// Adds the node's service discovery to `message` if it differs from what was last sent.
    fn discovery_change(
        &mut self,
        store: &ObjectStore,
        node_id: &str,
        message: &mut AssignmentsMessage,
    ) {
        let now = discovery::view(store, node_id);
        if self.discovery.as_ref() != Some(&now) {
            message.discovery = Some(now.clone());
            self.discovery = Some(now);
        }
    }

    /// Adds the node's routing mesh to `message` if it differs from what was last sent.
    fn mesh_change(
        &mut self,
        store: &ObjectStore,
        node_id: &str,
        message: &mut AssignmentsMessage,
    ) {
        let now = mesh::view(store, node_id);
        if self.mesh.as_ref() != Some(&now) {
            message.mesh = Some(now.clone());
            self.mesh = Some(now);
        }
    }

    /// Adds to `message` what changed in the node's networks and their peers, and the
    /// peers of all its networks.
    fn network_changes(
        &mut self,
        store: &ObjectStore,
        node_id: &str,
        message: &mut AssignmentsMessage,
    ) {
        let now = networks::view(store, node_id);
        for (id, network) in &now.networks {
            if self.networks.networks.get(id).map(|n| n.version()) != Some(network.version()) {
                message
                    .changes
                    .push(network_change(AssignmentAction::Update, network.clone()));
            }
        }
        for (id, network) in &self.networks.networks {
            if !now.networks.contains_key(id) {
                message
                    .changes
                    .push(network_change(AssignmentAction::Remove, network.clone()));
            }
        }
        for id in now.peers.keys() {
            if let Some(changed) = now.peers_changed_since(id, &self.networks) {
                message.network_peers.push(changed);
            }
        }
        if now != self.networks {
            let mut all: Vec<WeightedPeer> = now.peers.values().flatten().cloned().collect();
            all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            all.dedup_by(|a, b| a.node_id == b.node_id);
            message.peers = all;
        }
        self.networks = now;
    }

    /// The changes `events` make to `node_id`'s assignments, if any. The events name what
    /// may have changed; what the node gets is read from `store`, so an event the last
    /// message already reflects changes nothing, and events of several batches can be taken
    /// at once. `events` must include every event of the node's own tasks (where they are
    /// and where they were) and every other event the views' `touched_by` rules look at.
    pub fn incremental<'e>(
        &mut self,
        store: &ObjectStore,
        events: impl IntoIterator<Item = &'e StoreEvent>,
        node_id: &str,
    ) -> Option<AssignmentsMessage> {
        let mut networks_changed = false;
        let mut mesh_changed = false;
        let mut discovery_changed = false;
        let mut secrets_changed = false;
        let mut pending_changed = false;
        // The node's tasks the events name, in order, each with its last object seen.
        let mut touched: Vec<(&str, &Task)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for event in events {
            networks_changed |= self.networks.touched_by(event);
            mesh_changed |= mesh::touched_by(event, node_id);
            discovery_changed |= discovery::touched_by(event);
            match event.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Secret(_) | Object::Config(_)) => secrets_changed = true,
                Some(Object::Service(_) | Object::Network(_)) => pending_changed = true,
                Some(Object::Task(task)) => {
                    let id = task.id();
                    let mine = task.node_id == node_id
                        || self.sent.contains_key(id)
                        || self.pending.contains(id);
                    if !mine {
                        continue;
                    }
                    // Only this node's tasks decide its secrets; one that lost its last
                    // reference matters only if the node holds some.
                    secrets_changed |= secrets::refers(task) || !self.secrets.is_empty();
                    match seen.get(id) {
                        Some(&at) => touched[at].1 = task,
                        None => {
                            seen.insert(id, touched.len());
                            touched.push((id, task));
                        }
                    }
                }
                _ => {}
            }
        }
        let pending: Vec<String> = if pending_changed {
            self.pending
                .iter()
                .filter(|id| !seen.contains_key(id.as_str()))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let mut changes = Vec::new();
        let named = touched
            .into_iter()
            .map(|(id, task)| (id, Some(task)))
            .chain(pending.iter().map(|id| (id.as_str(), None)));
        for (id, last_seen) in named {
            let now = store.get::<Task>(id);
            let assigned = now.is_some_and(|t| assigned_to(t, node_id));
            // A task that left the node may have been the last to need a secret. The store
            // can be ahead of the events: a pending task read here because its service
            // changed may already be elsewhere, and its own event, when it comes, no longer
            // names it as this node's.
            secrets_changed |= !assigned && !self.secrets.is_empty();
            if assigned && now.is_some_and(allocator::not_delivered) {
                self.pending.insert(id.to_owned());
            } else {
                self.pending.remove(id);
            }
            match now {
                Some(task) if deliverable(store, task, node_id) => {
                    let sent = self.sent.get(id);
                    if sent.is_some_and(|sent| sent.version() == task.version()) {
                        continue;
                    }
                    let now = SentTask::of(task);
                    let send = sent.is_none_or(|sent| sent.must_send(&now, task));
                    self.sent.insert(id.to_owned(), now);
                    if send {
                        changes.push(change(AssignmentAction::Update, task.clone()));
                    }
                }
                // A sent task deleted from the store, found through the pending set (no
                // object of it at hand), stays sent until its delete event brings the
                // object the removal carries; the event is routed here, since it was here.
                _ => {
                    if let Some(task) = now.or(last_seen) {
                        if self.sent.remove(id).is_some() {
                            changes.push(change(AssignmentAction::Remove, task.clone()));
                        }
                    }
                }
            }
        }
        let mut message = AssignmentsMessage {
            r#type: AssignmentsType::Incremental as i32,
            changes,
            ..Default::default()
        };
        if networks_changed {
            self.network_changes(store, node_id, &mut message);
        }
        if secrets_changed {
            self.secret_changes(store, node_id, &mut message);
        }
        if mesh_changed {
            self.mesh_change(store, node_id, &mut message);
        }
        if discovery_changed {
            self.discovery_change(store, node_id, &mut message);
        }
        let empty = message.changes.is_empty()
            && message.network_peers.is_empty()
            && message.mesh.is_none()
            && message.discovery.is_none();
        (!empty).then_some(message)
    }
}
