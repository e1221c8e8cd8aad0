//! Background loops of a manager that keep derived state current.

use std::sync::Arc;
use std::time::Duration;

use proto::{Node, Reachability};
use tokio::sync::watch;

use crate::manager::{update, Manager};

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

/// On the leader, removes from the Raft group every member whose node was demoted or
/// removed. Done by a loop rather than by the demoting request so that it happens even if the
/// leader changes in between.
pub async fn raft_membership(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    while tick(&mut stop, Duration::from_millis(500)).await {
        if !manager.raft().is_leader() {
            continue;
        }
        let members: Vec<u64> = manager
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let stale: Vec<u64> = {
            let store = manager.store().read();
            let wanted: Vec<u64> = store
                .list::<Node>()
                .filter(|n| {
                    n.spec
                        .as_ref()
                        .is_some_and(|s| s.desired_role == proto::NodeRole::Manager as i32)
                })
                .filter_map(|n| n.manager_status.as_ref().map(|m| m.raft_id))
                .collect();
            // Never act on an empty view (a store still loading): that would remove everyone.
            if wanted.is_empty() {
                continue;
            }
            members
                .into_iter()
                .filter(|id| !wanted.contains(id))
                .collect()
        };
        for id in stale {
            tracing::info!(
                raft_id = id,
                "removing a demoted or removed manager from Raft"
            );
            if let Err(e) = manager.raft().remove_member(id).await {
                tracing::warn!(raft_id = id, error = %e.message(), "could not remove the manager from Raft");
            }
        }
    }
}
