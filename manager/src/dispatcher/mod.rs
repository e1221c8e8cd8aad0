//! The dispatcher (leader only): one session per node, heartbeats, and the node status that
//! follows from them. A node that misses three heartbeat periods is marked down, so its
//! tasks can be replaced within seconds; after a leader change every node gets a grace period
//! to find the new leader before it can be marked down.

mod assignments;
mod service;
mod status;

pub use service::DispatcherService;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::{Node, NodeDescription, NodeState, NodeStatus};
use tokio::sync::watch;

use crate::manager::{now_ms, update};
use crate::raft::RaftNode;
use crate::store::StoredObject;

/// Heartbeat period when the cluster sets none.
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);
/// Missed periods after which a node is down.
const MISSED_PERIODS: u32 = 3;

struct Session {
    id: String,
    last_seen: Instant,
}

/// Session and liveness bookkeeping of the leader.
pub struct Dispatcher {
    raft: Arc<RaftNode>,
    sessions: Mutex<HashMap<String, Session>>,
    /// When this manager last became leader: the start of the grace period.
    leading_since: Mutex<Option<Instant>>,
}

impl Dispatcher {
    /// A dispatcher over the given Raft member.
    pub fn new(raft: Arc<RaftNode>) -> Self {
        Self {
            raft,
            sessions: Mutex::new(HashMap::new()),
            leading_since: Mutex::new(None),
        }
    }

    /// The cluster's heartbeat period.
    pub fn heartbeat_period(&self) -> Duration {
        self.raft
            .store()
            .read()
            .cluster()
            .and_then(|c| c.spec.as_ref()?.dispatcher.as_ref())
            .map(|d| d.heartbeat_period_ms)
            .filter(|ms| *ms > 0)
            .map_or(DEFAULT_HEARTBEAT_PERIOD, Duration::from_millis)
    }

    /// Opens a session for `node_id`, replacing any earlier one; returns its ID.
    pub fn open_session(&self, node_id: &str) -> String {
        let id = proto::id::new_id();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.insert(
            node_id.to_owned(),
            Session {
                id: id.clone(),
                last_seen: Instant::now(),
            },
        );
        id
    }

    /// Records a heartbeat; false if the session is not the node's current one.
    pub fn heartbeat(&self, node_id: &str, session_id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(node_id) {
            Some(s) if s.id == session_id => {
                s.last_seen = Instant::now();
                true
            }
            _ => false,
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
    ) -> Result<(), tonic::Status> {
        let updated = self
            .raft
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
            None => Err(tonic::Status::permission_denied(
                "this node was removed from the cluster; run `skiff swarm leave --force` on it, then join again",
            )),
        }
    }

    /// One round of the liveness check (leader only).
    async fn check(&self) {
        let now = Instant::now();
        if !self.raft.is_leader() {
            *self.leading_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return;
        }
        let deadline = self.heartbeat_period() * MISSED_PERIODS;
        let since = *self
            .leading_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(now);
        if now.duration_since(since) < deadline {
            return;
        }
        let alive = |id: &str| {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions
                .get(id)
                .is_some_and(|s| now.duration_since(s.last_seen) < deadline)
        };
        let changes: Vec<_> = self
            .raft
            .store()
            .read()
            .list::<Node>()
            .filter(|n| {
                let state = n.status.as_ref().map_or(0, |s| s.state);
                state != NodeState::Down as i32 && !alive(n.id())
            })
            .cloned()
            .map(|mut n| {
                tracing::info!(node = n.id(), "node missed its heartbeat deadline; marking it down");
                let status = n.status.get_or_insert_with(Default::default);
                status.state = NodeState::Down as i32;
                status.message = format!(
                    "heartbeat failure: no heartbeat for {} s",
                    deadline.as_secs_f32()
                );
                status.updated_at = now_ms();
                update(n)
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.raft.propose(&batch(changes)).await {
            tracing::debug!(error = %e, "could not mark nodes down");
        }
    }
}

fn batch(actions: Vec<proto::StoreAction>) -> proto::StoreBatch {
    proto::StoreBatch { actions }
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
