//! Background loops of a manager that keep Raft and what the store says about it in step:
//! log compaction, managers' reachability, and membership after a demotion or removal. They
//! are the subsystems that legitimately name the Raft node; they still write through the
//! store handle.

use std::sync::Arc;
use std::time::Duration;

use proto::{Node, Reachability, StoreAction};
use tokio::sync::watch;

use crate::leader::{self, Rounds};
use crate::raft::RaftNode;
use crate::settings::DEFAULT_SNAPSHOT_INTERVAL;
use crate::store::{update, ObjectStore, Store, StoredObject};

/// A manager the leader has not heard from for this long is unreachable.
const REACHABLE_WITHIN: Duration = Duration::from_secs(2);
/// How often the loops here look again.
const CHECK_PERIOD: Duration = Duration::from_millis(500);

async fn tick(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = stop.changed() => false,
    }
}

/// Takes a snapshot (which compacts the log) whenever the cluster's snapshot interval of
/// entries has been applied since the last one. Every manager compacts its own log.
pub async fn snapshots(raft: Arc<RaftNode>, store: Store, mut stop: watch::Receiver<bool>) {
    // Where the last snapshot was asked for: one takes seconds at a million tasks, and asking
    // again every check until it is done made a second one right after the first.
    let mut asked_at = 0;
    while tick(&mut stop, CHECK_PERIOD).await {
        let interval = store
            .read()
            .cluster()
            .and_then(|c| c.spec.as_ref()?.raft.as_ref().map(|r| r.snapshot_interval))
            .filter(|i| *i > 0)
            .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL);
        let (applied, snapshot) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        if snapshot_due(applied, snapshot, asked_at, interval) {
            asked_at = applied;
            raft.trigger_snapshot().await;
        }
    }
}

/// Whether `interval` entries were applied since the last snapshot and since one was last
/// asked for.
fn snapshot_due(applied: u64, snapshot: u64, asked_at: u64, interval: u64) -> bool {
    applied.saturating_sub(snapshot.max(asked_at)) >= interval
}

/// On the leader, records in each manager's node object whether the leader reaches it, so
/// every manager shows the same `MANAGER STATUS`.
pub async fn manager_reachability(raft: Arc<RaftNode>, store: Store, stop: watch::Receiver<bool>) {
    let rounds = ReachabilityRounds {
        raft,
        judged: false,
    };
    leader::run(store, stop, rounds).await
}

/// The reachability checks of one leader.
struct ReachabilityRounds {
    raft: Arc<RaftNode>,
    /// Whether this term has given the managers a period to answer the new leader.
    judged: bool,
}

impl Rounds for ReachabilityRounds {
    fn start(&mut self) {
        self.judged = false;
    }

    async fn round(&mut self, store: &Store) -> Duration {
        // A new leader has heard only from the managers that voted for it: judging at once
        // would call the others unreachable for a moment.
        if !std::mem::replace(&mut self.judged, true) {
            return CHECK_PERIOD;
        }
        let changes = reachability_changes(&self.raft, &store.read());
        if !changes.is_empty() {
            if let Err(e) = store.write(changes).await {
                tracing::debug!(error = %e, "could not record manager reachability");
            }
        }
        CHECK_PERIOD
    }
}

/// The node updates that record what the leader reaches now.
fn reachability_changes(raft: &RaftNode, store: &ObjectStore) -> Vec<StoreAction> {
    let voters = raft.voters();
    store
        .list::<Node>()
        .filter_map(|node| {
            let status = node.manager_status.as_ref()?;
            let reachable = voters.contains(&status.raft_id)
                && raft.peer_answered_within(status.raft_id, REACHABLE_WITHIN);
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
        .collect()
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
pub async fn raft_membership(raft: Arc<RaftNode>, store: Store, mut stop: watch::Receiver<bool>) {
    let mut learners_since: std::collections::HashMap<u64, tokio::time::Instant> =
        Default::default();
    while tick(&mut stop, CHECK_PERIOD).await {
        if !raft.is_leader() {
            learners_since.clear();
            continue;
        }
        let members = raft_members(&raft);
        let (stale, left) = {
            let store = store.read();
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
        let voters = raft.voters();
        learners_since.retain(|id, _| stale.contains(id));
        for id in stale {
            if !voters.contains(&id) {
                let since = *learners_since
                    .entry(id)
                    .or_insert_with(tokio::time::Instant::now);
                if !raft.learner_caught_up(id) && since.elapsed() < LEARNER_GRACE {
                    continue;
                }
            }
            tracing::info!(
                raft_id = id,
                "taking a demoted or removed manager out of Raft"
            );
            if let Err(e) = raft.remove_member(id).await {
                tracing::warn!(raft_id = id, error = %e.message(), "could not remove the manager from Raft");
            }
        }
        for node_id in left {
            let cleared = store
                .modify::<Node>(&node_id, |node| {
                    let out = node
                        .manager_status
                        .as_ref()
                        .is_some_and(|m| !raft_members(&raft).contains(&m.raft_id));
                    if out && !wants_manager(node) {
                        node.manager_status = None;
                    }
                })
                .await;
            if let Err(e) = cleared {
                tracing::debug!(node = %node_id, error = %e, "could not record that a demoted manager left Raft");
            }
        }
    }
}

/// The Raft IDs of the group's members (voters and learners).
fn raft_members(raft: &RaftNode) -> Vec<u64> {
    raft.members().into_keys().collect()
}

fn wants_manager(node: &Node) -> bool {
    node.spec
        .as_ref()
        .is_some_and(|s| s.desired_role == proto::NodeRole::Manager as i32)
}

#[cfg(test)]
mod tests {
    use super::snapshot_due;

    #[test]
    fn a_snapshot_is_asked_for_once_per_interval_while_the_last_one_is_being_built() {
        // 10,000 entries since the last snapshot: due.
        assert!(snapshot_due(10_001, 1, 0, 10_000));
        // Asked for at 10,001 and still being built (the snapshot index has not moved):
        // not again 143 entries later.
        assert!(!snapshot_due(10_144, 1, 10_001, 10_000));
        // Built at 10,001: due again after another interval.
        assert!(!snapshot_due(20_000, 10_001, 10_001, 10_000));
        assert!(snapshot_due(20_001, 10_001, 10_001, 10_000));
        // A snapshot asked for that never came is asked for again after an interval.
        assert!(snapshot_due(20_001, 1, 10_001, 10_000));
    }
}
