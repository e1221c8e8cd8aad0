//! Background loops of a manager that keep derived state current.

use std::sync::Arc;
use std::time::Duration;

use proto::{Node, Reachability};
use tokio::sync::watch;

use crate::manager::{update, Manager};
use crate::store::StoredObject;

/// Snapshot interval when the cluster sets none.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
/// A manager the leader has not heard from for this long is unreachable.
const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

async fn tick(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = stop.changed() => false,
    }
}

/// Takes a snapshot (which compacts the log) whenever the cluster's snapshot interval of
/// entries has been applied since the last one. Every manager compacts its own log.
pub async fn snapshots(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    while tick(&mut stop, Duration::from_millis(500)).await {
        let interval = manager
            .store()
            .read()
            .cluster()
            .and_then(|c| c.spec.as_ref()?.raft.as_ref().map(|r| r.snapshot_interval))
            .filter(|i| *i > 0)
            .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL);
        let (applied, snapshot) = {
            let m = manager.raft().metrics();
            let m = m.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        if applied.saturating_sub(snapshot) >= interval {
            manager.raft().trigger_snapshot().await;
        }
    }
}

/// On the leader, records in each manager's node object whether the leader reaches it, so
/// every manager shows the same `MANAGER STATUS`.
pub async fn manager_reachability(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    while tick(&mut stop, Duration::from_millis(500)).await {
        if !manager.raft().is_leader() {
            continue;
        }
        let voters = manager.raft().voters();
        let changes: Vec<_> = manager
            .store()
            .read()
            .list::<Node>()
            .filter_map(|node| {
                let status = node.manager_status.as_ref()?;
                let reachable = voters.contains(&status.raft_id)
                    && manager
                        .raft()
                        .peer_answered_within(status.raft_id, REACHABLE_WITHIN);
                let want = if reachable {
                    Reachability::Reachable
                } else {
                    Reachability::Unreachable
                };
                (status.reachability != want as i32).then(|| {
                    let mut node = node.clone();
                    if let Some(s) = node.manager_status.as_mut() {
                        s.reachability = want as i32;
                    }
                    update(node)
                })
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        if let Err(e) = manager.write(changes).await {
            tracing::debug!(error = %e.message(), "could not record manager reachability");
        }
    }
}

/// How long a demoted manager, now a learner, may take to see that it no longer votes
/// before the leader removes it anyway (it is down, or stopped without waiting).
const LEARNER_GRACE: Duration = Duration::from_secs(10);

/// On the leader, takes out of the Raft group every member whose node was demoted or
/// removed (a voter becomes a learner; a learner that has seen that, or had
/// [`LEARNER_GRACE`] to, is removed), then clears the manager status of demoted nodes that
/// are out of the group (a leader that demoted itself left the voters before stopping, so
/// nobody else would). Done by a loop rather than by the demoting request so that a change
/// half done when the leader changed is finished by the next one.
pub async fn raft_membership(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    let mut learners_since: std::collections::HashMap<u64, tokio::time::Instant> =
        Default::default();
    while tick(&mut stop, Duration::from_millis(500)).await {
        if !manager.raft().is_leader() {
            learners_since.clear();
            continue;
        }
        let members = raft_members(&manager);
        let (stale, left) = {
            let store = manager.store().read();
            let wanted: Vec<u64> = store
                .list::<Node>()
                .filter(|n| wants_manager(n))
                .filter_map(|n| n.manager_status.as_ref().map(|m| m.raft_id))
                .collect();
            // Never act on an empty view (a store still loading): that would remove everyone.
            if wanted.is_empty() {
                continue;
            }
            let stale: Vec<u64> = members
                .iter()
                .copied()
                .filter(|id| !wanted.contains(id))
                .collect();
            let left: Vec<String> = store
                .list::<Node>()
                .filter(|n| !wants_manager(n))
                .filter(|n| {
                    n.manager_status
                        .as_ref()
                        .is_some_and(|m| !members.contains(&m.raft_id))
                })
                .map(|n| n.id().to_owned())
                .collect();
            (stale, left)
        };
        let voters = manager.raft().voters();
        learners_since.retain(|id, _| stale.contains(id));
        for id in stale {
            if !voters.contains(&id) {
                let since = *learners_since
                    .entry(id)
                    .or_insert_with(tokio::time::Instant::now);
                if !manager.raft().learner_caught_up(id) && since.elapsed() < LEARNER_GRACE {
                    continue;
                }
            }
            tracing::info!(
                raft_id = id,
                "taking a demoted or removed manager out of Raft"
            );
            if let Err(e) = manager.raft().remove_member(id).await {
                tracing::warn!(raft_id = id, error = %e.message(), "could not remove the manager from Raft");
            }
        }
        for node_id in left {
            let cleared = manager
                .modify::<Node>(&node_id, |node| {
                    let out = node
                        .manager_status
                        .as_ref()
                        .is_some_and(|m| !raft_members(&manager).contains(&m.raft_id));
                    if out && !wants_manager(node) {
                        node.manager_status = None;
                    }
                })
                .await;
            if let Err(e) = cleared {
                tracing::debug!(node = %node_id, error = %e.message(), "could not record that a demoted manager left Raft");
            }
        }
    }
}

/// The Raft IDs of the group's members (voters and learners).
fn raft_members(manager: &Manager) -> Vec<u64> {
    manager.raft().members().into_keys().collect()
}

fn wants_manager(node: &Node) -> bool {
    node.spec
        .as_ref()
        .is_some_and(|s| s.desired_role == proto::NodeRole::Manager as i32)
}
