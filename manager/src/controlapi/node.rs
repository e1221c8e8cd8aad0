//! Node changes: availability, labels, role, removal, with the safety checks that keep the
//! Raft group able to elect a leader.

use proto::{Cluster, Node, NodeAvailability, NodeRole, NodeSpec, NodeState, Reachability};
use tonic::Status;

use crate::status::{invalid, refused};
use crate::store::{ObjectStore, StoredObject};

/// Checks a requested node spec on its own.
pub fn validate_spec(spec: &NodeSpec) -> Result<(), Status> {
    if NodeAvailability::try_from(spec.availability).is_err() {
        return Err(invalid(format!(
            "unknown availability {}: use active, pause or drain",
            spec.availability
        )));
    }
    match NodeRole::try_from(spec.desired_role) {
        Ok(NodeRole::Worker | NodeRole::Manager) => {}
        _ => return Err(invalid("a node's role must be worker or manager")),
    }
    if let Some(key) = spec.labels.keys().find(|k| k.trim().is_empty()) {
        return Err(invalid(format!(
            "invalid label key {key:?}: a key cannot be empty"
        )));
    }
    Ok(())
}

/// Whether `node` is (or is becoming) a manager.
pub fn is_manager(node: &Node) -> bool {
    node.role == NodeRole::Manager as i32
        || node
            .spec
            .as_ref()
            .is_some_and(|s| s.desired_role == NodeRole::Manager as i32)
}

/// Refuses a demotion that would remove the last manager or cost the group its quorum.
pub fn check_demotion(
    store: &ObjectStore,
    target: &Node,
    leader_raft_id: Option<u64>,
) -> Result<(), Status> {
    let managers: Vec<&Node> = store
        .list::<Node>()
        .filter(|n| n.manager_status.as_ref().is_some_and(|m| m.raft_id != 0))
        .collect();
    let remaining: Vec<&&Node> = managers.iter().filter(|n| n.id() != target.id()).collect();
    if remaining.is_empty() {
        return Err(refused(format!(
            "cannot demote {}: it is the last manager of the cluster; promote another node first",
            display_name(target)
        )));
    }
    let reachable = remaining
        .iter()
        .filter(|n| {
            let status = n.manager_status.as_ref().expect("filtered above");
            Some(status.raft_id) == leader_raft_id
                || status.reachability == Reachability::Reachable as i32
        })
        .count();
    let quorum = remaining.len() / 2 + 1;
    if reachable < quorum {
        return Err(refused(format!(
            "cannot demote {}: the {} remaining managers would need {quorum} reachable to keep a quorum, but only {reachable} are; bring the unreachable managers back or remove them first",
            display_name(target),
            remaining.len()
        )));
    }
    Ok(())
}

/// Refuses removing a manager, or a node that is still up unless forced. What counts is
/// the role the cluster wants and the Raft group, not the node's certificate: a demotion
/// the node never finished (it kept its manager certificate) must not block removal.
pub fn check_removal(node: &Node, force: bool) -> Result<(), Status> {
    let desired_manager = node
        .spec
        .as_ref()
        .is_some_and(|s| s.desired_role == NodeRole::Manager as i32);
    if desired_manager {
        return Err(refused(format!(
            "node {} is a manager; demote it first with `skiff node demote {}`",
            display_name(node),
            node.id()
        )));
    }
    if node.manager_status.as_ref().is_some_and(|m| m.raft_id != 0) {
        return Err(Status::unavailable(format!(
            "node {} was demoted and is still leaving the managers' Raft group; retry in a few seconds",
            display_name(node)
        )));
    }
    let down = node
        .status
        .as_ref()
        .is_some_and(|s| s.state == NodeState::Down as i32);
    if !down && !force {
        return Err(refused(format!(
            "node {} is not down and can't be removed; stop skiffd on it (or run `skiff swarm leave` there) first, or use --force",
            display_name(node)
        )));
    }
    Ok(())
}

/// The cluster object with `node` added to its deny-list (until its certificate would have
/// expired; entries whose certificates have expired by `now` are dropped), to be written in
/// the batch that removes the node: from then on no copy of its certificate is accepted.
pub fn deny(store: &ObjectStore, node: &Node, now: i64) -> Result<Cluster, Status> {
    let mut cluster = store
        .cluster()
        .cloned()
        .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
    cluster.removed_nodes.retain(|_, expiry| *expiry > now);
    // A node without a recorded certificate: keep it denied for the longest lifetime a
    // certificate can have been given.
    let expiry = node
        .certificate
        .as_ref()
        .map(|c| c.not_after)
        .filter(|t| *t > 0)
        .unwrap_or(i64::MAX);
    cluster.removed_nodes.insert(node.id().to_owned(), expiry);
    Ok(cluster)
}

fn display_name(node: &Node) -> String {
    match node.name() {
        Some(h) if !h.is_empty() => format!("{h} ({})", proto::id::short(node.id())),
        _ => node.id().to_owned(),
    }
}
