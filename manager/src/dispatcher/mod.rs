//! The dispatcher (leader only): one session per node, heartbeats, and the node status that
//! follows from them. A node that misses three heartbeat periods is marked down, so its
//! tasks can be replaced within seconds. The period is the cluster's setting, stretched in
//! a cluster so large that the leader would otherwise handle more than
//! [`MAX_HEARTBEATS_PER_SECOND`]; each node is judged by the period it was last told, so a
//! period that shrinks never catches a node still beating at the longer one.
//!
//! After a leader change every node gets a grace period to find the new leader before it
//! can be marked down (as SwarmKit does): twice its deadline, counted from when this manager
//! began to lead, never from a heartbeat an earlier leader, or this manager in an earlier
//! term, last saw; a node the check first sees later gets the same from then. A new
//! leadership is a new Raft term, so a leadership lost and won back between two rounds of
//! the check is still a new one. A node that joined and never opened a session stays
//! unknown rather than down: it has not been up yet.

mod assignments;
mod discovery;
mod fanout;
#[cfg(test)]
mod fanout_tests;
mod mesh;
mod networks;
mod secrets;
mod sent;
mod status;

pub use assignments::NodeAssignments;
pub use fanout::{AssignmentsFeed, Fanout, Next, SessionFeed};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{Node, NodeDescription, NodeState, NodeStatus};
use tokio::sync::watch;
// Tokio's clock, so that tests of the deadlines run on paused time.
use tokio::time::Instant;

use proto::now_ms;

use crate::leader;
use crate::settings::{DEFAULT_HEARTBEAT_PERIOD, MAX_HEARTBEATS_PER_SECOND};
use crate::store::{update, Store, StoreError, StoredObject};

/// Missed periods after which a node is down.
const MISSED_PERIODS: u32 = 3;
/// How many deadlines a node the leader has not heard from yet (since it began leading, or
/// since the node joined) has to open its session.
const UNKNOWN_GRACE_FACTOR: u32 = 2;

struct Session {
    id: String,
    last_seen: Instant,
    /// The period the node was last told to heartbeat at.
    period: Duration,
}

impl Session {
    /// Whether the node heartbeat within its deadline as of `now`.
    fn alive(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < self.period * MISSED_PERIODS
    }
}

/// Why the dispatcher refused a node or could not record what it reported.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatcherError {
    /// The store could not commit it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `swarm init` opens its own session before the cluster's first entry commits.
    #[error("the cluster is still being initialised; retry")]
    Initialising,
    /// The node is not in the store.
    #[error("this node was removed from the cluster; run `skiff swarm leave --force` on it, then join again")]
    Removed,
    /// The manager stopped before the report was committed.
    #[error("the manager stopped; report again")]
    Stopped,
}

/// Status reports waiting for the next batch, with who to tell when it is committed.
struct PendingStatus {
    node_id: String,
    updates: Vec<proto::TaskStatusUpdate>,
    done: tokio::sync::oneshot::Sender<Result<(), DispatcherError>>,
}

/// How long status reports gather before they are committed together: thousands of nodes
/// reporting at once then cost a few Raft entries, not thousands.
const STATUS_BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A leadership of this manager, as the liveness check first saw it.
#[derive(Clone, Copy)]
struct Leadership {
    /// The Raft term it leads in.
    term: u64,
    /// When the check first saw it lead in that term: the start of the grace period.
    since: Instant,
}

/// Session and liveness bookkeeping of the leader.
pub struct Dispatcher {
    store: Store,
    sessions: Mutex<HashMap<String, Session>>,
    pending_status: Mutex<Vec<PendingStatus>>,
    status_ready: tokio::sync::Notify,
    /// This manager's current leadership: the start of the grace period.
    leading: Mutex<Option<Leadership>>,
    /// When the liveness check of the current leadership first saw each node.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Routes each committed batch to the streams of the nodes it concerns.
    fanout: Fanout,
    /// The heartbeat period last computed (ms), which heartbeats tell nodes: a heartbeat
    /// takes no store lock, so it can be answered on Raft's runtime however busy the rest
    /// of the manager is (see `cli/src/daemon/server.rs`).
    period_ms: AtomicU64,
}

impl Dispatcher {
    /// A dispatcher over the store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            sessions: Mutex::new(HashMap::new()),
            pending_status: Mutex::new(Vec::new()),
            status_ready: tokio::sync::Notify::new(),
            leading: Mutex::new(None),
            first_seen: Mutex::new(HashMap::new()),
            fanout: Fanout::default(),
            period_ms: AtomicU64::new(DEFAULT_HEARTBEAT_PERIOD.as_millis() as u64),
        }
    }

    /// Where the nodes' streams register for what concerns their node.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// The period nodes are told to heartbeat at: the cluster's setting, or longer in a
    /// cluster with more than [`MAX_HEARTBEATS_PER_SECOND`] nodes per second of it. Kept
    /// for the heartbeats that follow.
    pub fn heartbeat_period(&self) -> Duration {
        let period = self.current_period();
        self.period_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
        period
    }

    fn current_period(&self) -> Duration {
        let store = self.store.read();
        let configured = store
            .cluster()
            .and_then(|c| c.spec.as_ref()?.dispatcher.as_ref())
            .map(|d| d.heartbeat_period_ms)
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_HEARTBEAT_PERIOD, Duration::from_millis);
        let spread = Duration::from_secs_f64(
            store.count::<Node>() as f64 / f64::from(MAX_HEARTBEATS_PER_SECOND),
        );
        configured.max(spread)
    }

    /// Opens a session for `node_id`, replacing any earlier one; returns its ID.
    pub fn open_session(&self, node_id: &str) -> String {
        let id = proto::id::new_id();
        let period = self.heartbeat_period();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.insert(
            node_id.to_owned(),
            Session {
                id: id.clone(),
                last_seen: Instant::now(),
                period,
            },
        );
        id
    }

    /// Records a heartbeat and returns the period to tell the node; `None` if the session
    /// is not the node's current one.
    pub fn heartbeat(&self, node_id: &str, session_id: &str) -> Option<Duration> {
        // As last computed (a session opening and every liveness round compute it).
        let period = Duration::from_millis(self.period_ms.load(Ordering::Relaxed));
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(node_id) {
            Some(s) if s.id == session_id => {
                s.last_seen = Instant::now();
                s.period = period;
                crate::metrics::METRICS.heartbeats.inc();
                Some(period)
            }
            _ => None,
        }
    }

    /// Whether `session_id` is still `node_id`'s current session.
    pub fn is_current(&self, node_id: &str, session_id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(node_id).is_some_and(|s| s.id == session_id)
    }

    /// Marks the node ready with what it reports about itself.
    pub async fn node_ready(
        &self,
        node_id: &str,
        description: Option<NodeDescription>,
        addr: &str,
    ) -> Result<(), DispatcherError> {
        let updated = self
            .store
            .modify::<Node>(node_id, |node| {
                if description.is_some() {
                    node.description = description.clone();
                }
                node.status = Some(NodeStatus {
                    state: NodeState::Ready as i32,
                    message: String::new(),
                    addr: addr.to_owned(),
                    updated_at: now_ms(),
                });
            })
            .await?;
        match updated {
            Some(_) => Ok(()),
            // `swarm init` opens its own session before the cluster's first entry commits.
            None if self.store.read().cluster().is_none() => Err(DispatcherError::Initialising),
            None => Err(DispatcherError::Removed),
        }
    }

    /// Queues a node's status reports for the next batch; returns once they are committed.
    pub async fn submit_status(
        &self,
        node_id: &str,
        updates: Vec<proto::TaskStatusUpdate>,
    ) -> Result<(), DispatcherError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.pending_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PendingStatus {
                node_id: node_id.to_owned(),
                updates,
                done,
            });
        self.status_ready.notify_one();
        committed.await.unwrap_or(Err(DispatcherError::Stopped))
    }

    /// Commits the queued status reports together.
    async fn write_statuses(&self) {
        let pending = std::mem::take(
            &mut *self
                .pending_status
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if pending.is_empty() {
            return;
        }
        let mut result = Ok(());
        // A conflict means the orchestrator changed one of the tasks meanwhile: re-check all.
        for _ in 0..5 {
            let actions: Vec<proto::StoreAction> = {
                // One entry per node, so a task reported twice is written once.
                let mut by_node: HashMap<&str, Vec<proto::TaskStatusUpdate>> = HashMap::new();
                for p in &pending {
                    by_node
                        .entry(&p.node_id)
                        .or_default()
                        .extend(p.updates.iter().cloned());
                }
                let store = self.store.read();
                by_node
                    .into_iter()
                    .flat_map(|(node_id, updates)| status::accepted(&store, node_id, updates))
                    .collect()
            };
            match leader::commit(&self.store, actions).await {
                Err(e) if e.is_conflict() => continue,
                committed => {
                    result = committed;
                    break;
                }
            }
        }
        for p in pending {
            let _ = p.done.send(result.clone().map_err(DispatcherError::from));
        }
    }

    /// One round of the liveness check (leader only).
    async fn check(&self) {
        let now = Instant::now();
        let Some(term) = self.store.leader_term() else {
            *self.leading.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            return;
        };
        // Nodes without a session (yet) are judged by the period they will be told.
        let deadline = self.heartbeat_period() * MISSED_PERIODS;
        let since = {
            let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
            match *leading {
                Some(l) if l.term == term => l.since,
                // A new leadership, even if this check saw no gap since an earlier one: the
                // nodes went to another leader meanwhile and need the full grace to return.
                _ => {
                    self.first_seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    leading.insert(Leadership { term, since: now }).since
                }
            }
        };
        // When this leadership first saw each node: its start, or the node's joining.
        let first_seen = {
            let store = self.store.read();
            let mut first_seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
            if first_seen.len() > 2 * store.count::<Node>() {
                first_seen.retain(|id, _| store.get::<Node>(id).is_some());
            }
            for node in store.list::<Node>() {
                first_seen.entry(node.id().to_owned()).or_insert(now);
            }
            first_seen.clone()
        };
        // Every node's deadline counts from the start of this leadership at the earliest;
        // while that is nearer than a deadline, no node can have missed one.
        if now.duration_since(since) < deadline {
            return;
        }
        // A node not heard from since this leadership first saw it has twice the deadline
        // from then to open a session, as SwarmKit gives the nodes a new leader does not know
        // yet: a whole cluster looks for the new leader at once, on managers that may be busy.
        let unknown_grace = deadline * UNKNOWN_GRACE_FACTOR;
        // Whether a node is alive, and the deadline it is judged by.
        let judge = |id: &str| {
            let seen = first_seen.get(id).copied().unwrap_or(now);
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.get(id) {
                Some(s) if s.last_seen >= since => (s.alive(now), s.period * MISSED_PERIODS),
                _ => (now.duration_since(seen) < unknown_grace, unknown_grace),
            }
        };
        // Nodes that stopped heartbeating go down; nodes marked down whose session is alive
        // again (a slow moment, a partition that healed) come back.
        let changes: Vec<_> = self
            .store
            .read()
            .list::<Node>()
            .filter_map(|n| {
                let state = n
                    .status
                    .as_ref()
                    .map_or(NodeState::Unknown as i32, |s| s.state);
                // A node that joined and never opened a session has not been up to go down:
                // it stays unknown (as SwarmKit leaves it), and its first session makes it
                // ready. A thousand nodes joining at once can take longer than a deadline.
                if state == NodeState::Unknown as i32 {
                    return None;
                }
                let down = state == NodeState::Down as i32;
                let (alive, deadline) = judge(n.id());
                if down == alive {
                    if alive {
                        tracing::info!(node = n.id(), "node heartbeats again; marking it ready");
                    } else {
                        tracing::info!(
                            node = n.id(),
                            "node missed its heartbeat deadline; marking it down"
                        );
                    }
                    let mut n = n.clone();
                    let status = n.status.get_or_insert_with(Default::default);
                    if alive {
                        status.state = NodeState::Ready as i32;
                        status.message.clear();
                    } else {
                        status.state = NodeState::Down as i32;
                        status.message = format!(
                            "heartbeat failure: no heartbeat for {} s",
                            deadline.as_secs_f32()
                        );
                    }
                    status.updated_at = now_ms();
                    return Some(update(n));
                }
                None
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.store.write(changes).await {
            tracing::debug!(error = %e, "could not record node liveness");
        }
    }
}

/// Commits status reports in batches (runs on every manager; only the leader gets reports).
pub async fn status_writer(dispatcher: Arc<Dispatcher>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = dispatcher.status_ready.notified() => {
                tokio::time::sleep(STATUS_BATCH_WINDOW).await;
                dispatcher.write_statuses().await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Routes the watch stream to the nodes' streams (runs on every manager; only the leader
/// has streams).
pub async fn fanout(dispatcher: Arc<Dispatcher>, stop: watch::Receiver<bool>) {
    fanout::run(dispatcher.fanout.clone(), dispatcher.store.clone(), stop).await
}

/// Marks nodes down when they miss their heartbeat deadline (runs on every manager; acts
/// only while leading).
pub async fn liveness(dispatcher: Arc<Dispatcher>, mut stop: watch::Receiver<bool>) {
    loop {
        let period = dispatcher.heartbeat_period() / 2;
        tokio::select! {
            _ = tokio::time::sleep(period) => dispatcher.check().await,
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::{Meta, StoreBatch};

    use super::*;
    use crate::store::fake::{FakeProposer, ME};
    use crate::store::{create, Store};

    fn ready_node(id: &str) -> Node {
        Node {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn state(store: &Store, id: &str) -> NodeState {
        let store = store.read();
        let node = store.get::<Node>(id).expect("node");
        NodeState::try_from(node.status.as_ref().expect("status").state).expect("state")
    }

    /// Waits `secs` of (paused) time, then runs a round of the check.
    async fn after(dispatcher: &Dispatcher, secs: f64) {
        tokio::time::advance(Duration::from_secs_f64(secs)).await;
        dispatcher.check().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_leads_again_gives_every_node_a_full_deadline_from_then() {
        let fake = FakeProposer::new();
        let store = fake.store();
        fake.commit(&StoreBatch {
            actions: vec![create(ready_node("n1")), create(ready_node("n2"))],
            ..Default::default()
        })
        .expect("nodes");
        // The default period is 1 s: a node is down after 3 s without a heartbeat.
        let dispatcher = Dispatcher::new(store.clone());
        dispatcher.check().await;
        let s1 = dispatcher.open_session("n1");
        let s2 = dispatcher.open_session("n2");
        for _ in 0..4 {
            after(&dispatcher, 1.0).await;
            assert!(dispatcher.heartbeat("n1", &s1).is_some());
            assert!(dispatcher.heartbeat("n2", &s2).is_some());
        }
        assert_eq!(state(&store, "n1"), NodeState::Ready);

        // Leadership goes elsewhere and comes back between two rounds of the check: the
        // nodes heartbeat the other leader meanwhile, not this one.
        fake.set_leader(Some(ME + 1));
        fake.set_leader(Some(ME));
        after(&dispatcher, 5.0).await;
        assert_eq!(
            state(&store, "n1"),
            NodeState::Ready,
            "judged by a stale heartbeat"
        );
        assert_eq!(
            state(&store, "n2"),
            NodeState::Ready,
            "judged by a stale heartbeat"
        );

        // n2 finds this leader again within the grace; n1 never does. The grace of a node
        // not heard from in this leadership is two deadlines (6 s) from its start (9 s).
        after(&dispatcher, 2.0).await;
        let s2 = dispatcher.open_session("n2");
        for _ in 0..4 {
            after(&dispatcher, 0.95).await;
            assert!(dispatcher.heartbeat("n2", &s2).is_some());
        }
        assert_eq!(state(&store, "n1"), NodeState::Ready, "within its grace");
        after(&dispatcher, 0.15).await;
        assert_eq!(state(&store, "n1"), NodeState::Ready, "within its grace");
        after(&dispatcher, 0.1).await;
        assert_eq!(state(&store, "n1"), NodeState::Down);
        assert_eq!(state(&store, "n2"), NodeState::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_stops_heartbeating_goes_down_after_three_periods() {
        let fake = FakeProposer::new();
        let store = fake.store();
        fake.commit(&StoreBatch {
            actions: vec![create(ready_node("n1"))],
            ..Default::default()
        })
        .expect("node");
        let dispatcher = Dispatcher::new(store.clone());
        dispatcher.check().await;
        let s1 = dispatcher.open_session("n1");
        after(&dispatcher, 5.0).await;
        assert_eq!(
            dispatcher.heartbeat("n1", &s1),
            Some(Duration::from_secs(1))
        );
        after(&dispatcher, 2.9).await;
        assert_eq!(state(&store, "n1"), NodeState::Ready);
        after(&dispatcher, 0.2).await;
        assert_eq!(state(&store, "n1"), NodeState::Down);
        // It heartbeats again: ready.
        assert_eq!(
            dispatcher.heartbeat("n1", &s1),
            Some(Duration::from_secs(1))
        );
        after(&dispatcher, 0.1).await;
        assert_eq!(state(&store, "n1"), NodeState::Ready);
    }

    /// `count` ready nodes named n0, n1, ... in one batch.
    fn commit_nodes(fake: &FakeProposer, count: usize) {
        fake.commit(&StoreBatch {
            actions: (0..count)
                .map(|i| create(ready_node(&format!("n{i}"))))
                .collect(),
            ..Default::default()
        })
        .expect("nodes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_cluster_heartbeats_less_often_and_is_judged_by_that() {
        let fake = FakeProposer::new();
        let store = fake.store();
        // 2,500 nodes at most 1,000 heartbeats a second: a 2.5 s period, a 7.5 s deadline.
        commit_nodes(&fake, 2_500);
        let dispatcher = Dispatcher::new(store.clone());
        assert_eq!(dispatcher.heartbeat_period(), Duration::from_millis(2_500));
        dispatcher.check().await;
        let s0 = dispatcher.open_session("n0");
        after(&dispatcher, 7.0).await;
        assert_eq!(
            dispatcher.heartbeat("n0", &s0),
            Some(Duration::from_millis(2_500))
        );
        after(&dispatcher, 7.4).await;
        assert_eq!(
            state(&store, "n0"),
            NodeState::Ready,
            "within 3 periods of 2.5 s"
        );
        after(&dispatcher, 0.2).await;
        assert_eq!(state(&store, "n0"), NodeState::Down);
        let message = |id: &str| {
            let store = store.read();
            store
                .get::<Node>(id)
                .unwrap()
                .status
                .as_ref()
                .unwrap()
                .message
                .clone()
        };
        assert!(message("n0").contains("7.5 s"), "{}", message("n0"));
        // Nodes that never opened a session have two deadlines from the leadership's start.
        assert_eq!(state(&store, "n1"), NodeState::Ready);
        after(&dispatcher, 0.5).await;
        assert_eq!(state(&store, "n1"), NodeState::Down);
        assert!(message("n1").contains("15 s"), "{}", message("n1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_joins_has_two_deadlines_from_its_joining_to_open_a_session() {
        let fake = FakeProposer::new();
        let store = fake.store();
        commit_nodes(&fake, 1);
        let dispatcher = Dispatcher::new(store.clone());
        dispatcher.check().await;
        let s0 = dispatcher.open_session("n0");
        for _ in 0..10 {
            after(&dispatcher, 1.0).await;
            assert!(dispatcher.heartbeat("n0", &s0).is_some());
        }
        // n1 joins long after the leadership began; it has 6 s from the first check that
        // sees it to open its session.
        fake.commit(&StoreBatch {
            actions: vec![create(ready_node("n1"))],
            ..Default::default()
        })
        .expect("n1");
        for _ in 0..6 {
            after(&dispatcher, 0.95).await;
            assert!(dispatcher.heartbeat("n0", &s0).is_some());
            assert_eq!(state(&store, "n1"), NodeState::Ready);
        }
        // First seen by the check at 10.95 s: ready at 16.9 s, down at 17.1 s.
        after(&dispatcher, 1.2).await;
        assert_eq!(state(&store, "n1"), NodeState::Ready);
        assert!(dispatcher.heartbeat("n0", &s0).is_some());
        after(&dispatcher, 0.2).await;
        assert_eq!(state(&store, "n1"), NodeState::Down);
        assert_eq!(state(&store, "n0"), NodeState::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn a_joined_node_without_a_session_stays_unknown_until_its_first_session() {
        let fake = FakeProposer::new();
        let store = fake.store();
        let mut joining = ready_node("n1");
        joining.status = Some(NodeStatus {
            state: NodeState::Unknown as i32,
            ..Default::default()
        });
        fake.commit(&StoreBatch {
            actions: vec![create(ready_node("n0")), create(joining)],
            ..Default::default()
        })
        .expect("nodes");
        let dispatcher = Dispatcher::new(store.clone());
        dispatcher.check().await;
        // Long past every deadline: n0, which was up, is down; n1 has not been up yet.
        after(&dispatcher, 30.0).await;
        assert_eq!(state(&store, "n0"), NodeState::Down);
        assert_eq!(state(&store, "n1"), NodeState::Unknown);
        // Its first session makes it ready; from then on it is judged as any node.
        let s1 = dispatcher.open_session("n1");
        dispatcher
            .node_ready("n1", None, "127.0.0.2")
            .await
            .expect("ready");
        after(&dispatcher, 1.0).await;
        assert!(dispatcher.heartbeat("n1", &s1).is_some());
        assert_eq!(state(&store, "n1"), NodeState::Ready);
        after(&dispatcher, 3.6).await;
        assert_eq!(state(&store, "n1"), NodeState::Down);
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_keeps_the_longer_period_it_was_told_until_its_next_heartbeat() {
        let fake = FakeProposer::new();
        let store = fake.store();
        commit_nodes(&fake, 3_000);
        let dispatcher = Dispatcher::new(store.clone());
        dispatcher.check().await;
        let s0 = dispatcher.open_session("n0");
        assert_eq!(
            dispatcher.heartbeat("n0", &s0),
            Some(Duration::from_secs(3))
        );
        // The cluster shrinks to 10 nodes: the period goes back to the setting, but n0 beats
        // every 3 s until it hears so, and must not be judged by 1 s meanwhile.
        fake.commit(&StoreBatch {
            actions: (10..3_000)
                .map(|i| crate::store::delete(ready_node(&format!("n{i}"))))
                .collect(),
            ..Default::default()
        })
        .expect("removed");
        assert_eq!(dispatcher.heartbeat_period(), Duration::from_secs(1));
        after(&dispatcher, 8.9).await;
        assert_eq!(state(&store, "n0"), NodeState::Ready);
        assert_eq!(
            dispatcher.heartbeat("n0", &s0),
            Some(Duration::from_secs(1))
        );
        after(&dispatcher, 2.9).await;
        assert_eq!(state(&store, "n0"), NodeState::Ready);
        after(&dispatcher, 0.2).await;
        assert_eq!(state(&store, "n0"), NodeState::Down, "now judged by 1 s");
    }
}
