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

/// Takes a snapshot (which compacts the log) once per the cluster's snapshot interval of
/// entries. Every manager compacts its own log, each at its own point in the interval (see
/// [`snapshot_due`]).
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
        let voters = raft.voters();
        let offset = interval * voters.iter().position(|v| *v == raft.id()).unwrap_or(0) as u64
            / voters.len().max(1) as u64;
        if snapshot_due(applied, snapshot.max(asked_at), interval, offset) {
            asked_at = applied;
            raft.trigger_snapshot().await;
        }
    }
}

/// Whether a snapshot is due at `applied`, the last one made or asked for at `last`: at
/// this manager's next point (`offset` plus a multiple of `interval`) at least half an
/// interval after `last`. The managers' offsets spread them over the interval by their
/// place among the voters: all snapshotting at the same index meant building and saving
/// at the same moment, which on one machine (or one disk) is three times the CPU, memory
/// and writes at once; at a million tasks it cost an election. Asking again only after
/// half an interval keeps a snapshot that takes seconds from being asked for twice, and a
/// manager that has just installed one from the leader from making its own at once.
fn snapshot_due(applied: u64, last: u64, interval: u64, offset: u64) -> bool {
    let after = last + interval / 2;
    // The first point past `after`, and never the point at `offset` itself: the first
    // snapshot comes after at least one interval.
    let k = (after.saturating_sub(offset) / interval + 1).max(1);
    applied >= k * interval + offset
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
        // 10,000 entries: due.
        assert!(snapshot_due(10_000, 0, 10_000, 0));
        assert!(!snapshot_due(9_999, 0, 10_000, 0));
        // Asked for at 10,001 and still being built (the snapshot index has not moved):
        // not again 143 entries later, nor before the next point.
        assert!(!snapshot_due(10_144, 10_001, 10_000, 0));
        assert!(!snapshot_due(19_999, 10_001, 10_000, 0));
        assert!(snapshot_due(20_000, 10_001, 10_000, 0));
        // A snapshot installed from the leader just before a point: not again at once.
        assert!(!snapshot_due(20_000, 19_990, 10_000, 0));
        assert!(snapshot_due(30_000, 19_990, 10_000, 0));
    }

    /// Where each of three managers snapshots, applying the same entries: one interval
    /// apart each, and never two within a third of an interval of each other.
    #[test]
    fn managers_snapshot_at_points_of_their_own() {
        let interval = 300;
        let mut points: Vec<Vec<u64>> = Vec::new();
        for position in 0..3 {
            let offset = interval * position / 3;
            let mut last = 0;
            let mut made = Vec::new();
            for applied in 1..=10 * interval {
                if snapshot_due(applied, last, interval, offset) {
                    made.push(applied);
                    last = applied;
                }
            }
            assert!(made.windows(2).all(|w| w[1] - w[0] == interval), "{made:?}");
            assert!(made[0] >= interval, "{made:?}");
            points.push(made);
        }
        let mut all: Vec<u64> = points.concat();
        all.sort();
        assert!(
            all.windows(2).all(|w| w[1] - w[0] >= interval / 3),
            "{all:?}"
        );
    }
}
