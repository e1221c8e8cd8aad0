//! The `Dispatcher` gRPC service. Workers (and managers, which run an agent too) open a
//! session with the leader; other managers answer with the leader's address so the agent
//! can go there directly. It serves through the manager running on this node, so it lives
//! above `crate::manager`, outside `crate::dispatcher`, which the manager is built on.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::dispatcher_server::Dispatcher as DispatcherApi;
use proto::{
    AssignmentsMessage, AssignmentsRequest, HeartbeatRequest, HeartbeatResponse, Node, NodeRole,
    SessionMessage, SessionRequest, UpdateTaskStatusRequest, UpdateTaskStatusResponse,
    WeightedPeer,
};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::ca::identity::{caller, Caller};
use crate::dispatcher::NodeAssignments;
use crate::manager::{Manager, RunningManager};
use crate::store::{ObjectStore, StoredObject, WatchEvent};

/// Metadata naming the leader's address on a "not the leader" answer.
pub const LEADER_HINT: &str = "x-skiff-leader";

/// Serves the dispatcher through whichever manager runs on this node.
pub struct DispatcherService {
    running: Arc<RunningManager>,
}

impl DispatcherService {
    /// A service over the manager `running` holds.
    pub fn new(running: Arc<RunningManager>) -> Self {
        Self { running }
    }

    /// The manager, if it leads; otherwise an `Unavailable` status pointing at the leader.
    async fn leader(&self) -> Result<Arc<Manager>, Status> {
        let manager = self.running.get()?;
        if manager.store().is_leader() {
            return Ok(manager);
        }
        let mut status = Status::unavailable("this manager is not the leader");
        if let Ok(Some(addr)) = manager.raft().leader_addr().await {
            if let Ok(value) = addr.parse() {
                status.metadata_mut().insert(LEADER_HINT, value);
            }
        }
        Err(status)
    }
}

/// The node a request speaks for: a node may speak only for itself.
fn node_of<T>(req: &Request<T>) -> Result<String, Status> {
    match caller(req) {
        Caller::Node(identity) => Ok(identity.node_id),
        _ => Err(Status::permission_denied(
            "the dispatcher serves nodes only: call it with a node certificate",
        )),
    }
}

/// What a session tells its node: the managers to fall back on, and the node's role.
fn session_view(store: &ObjectStore, node_id: &str, leader: Option<String>) -> SessionMessage {
    let managers = store
        .list::<Node>()
        .filter_map(|n| {
            let status = n.manager_status.as_ref()?;
            (!status.addr.is_empty()).then(|| WeightedPeer {
                node_id: n.id().to_owned(),
                addr: status.addr.clone(),
                ..Default::default()
            })
        })
        .collect();
    let desired_role = store
        .get::<Node>(node_id)
        .and_then(|n| n.spec.as_ref().map(|s| s.desired_role))
        .unwrap_or(NodeRole::Worker as i32);
    SessionMessage {
        session_id: String::new(),
        managers,
        desired_role,
        leader_node_id: leader.unwrap_or_default(),
    }
}

/// Whether a committed change concerns nodes (or replaced the whole store).
fn touches_nodes(event: &WatchEvent) -> bool {
    match event {
        WatchEvent::Reset { .. } => true,
        WatchEvent::Changes { events, .. } => events.iter().any(|e| {
            matches!(
                e.object.as_ref().and_then(|o| o.object.as_ref()),
                Some(proto::store_object::Object::Node(_))
            )
        }),
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;
type AssignmentsStream = Pin<Box<dyn Stream<Item = Result<AssignmentsMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DispatcherApi for DispatcherService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<SessionStream>, Status> {
        let node_id = node_of(&req)?;
        let manager = self.leader().await?;
        let body = req.into_inner();
        manager
            .dispatcher()
            .node_ready(&node_id, body.description, &body.addr)
            .await?;
        let session_id = manager.dispatcher().open_session(&node_id);
        // Asked for before the view is taken: it reads the store itself.
        let leader = manager.store().leader_node_id();
        let (mut last, mut events) = manager
            .store()
            .subscribe(|store| session_view(store, &node_id, leader));
        let first = SessionMessage {
            session_id: session_id.clone(),
            ..last.clone()
        };
        let stream = async_stream(move |tx| async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                // Any committed change may move a manager or change this node's role; the
                // timer notices a lost leadership or a replaced session without one.
                tokio::select! {
                    r = events.recv() => match r {
                        // Only node changes can move a manager or change this node's role.
                        Ok(event) if !touches_nodes(&event) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    },
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
                if !manager.store().is_leader()
                    || !manager.dispatcher().is_current(&node_id, &session_id)
                {
                    return;
                }
                // The leader's node ID takes the store's read lock itself: asked for while
                // this round's guard is held, it would wait behind a waiting writer, which
                // waits for that guard (the leader deadlocked so, with 1,000 nodes joining).
                let leader = manager.store().leader_node_id();
                let now = session_view(&manager.store().read(), &node_id, leader);
                if now != last {
                    last = now.clone();
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let node_id = node_of(&req)?;
        let manager = self.leader().await?;
        let Some(period) = manager
            .dispatcher()
            .heartbeat(&node_id, &req.get_ref().session_id)
        else {
            return Err(Status::not_found(
                "the session has expired (the leader changed or the node was marked down); open a new session",
            ));
        };
        Ok(Response::new(HeartbeatResponse {
            period_ms: period.as_millis() as u64,
        }))
    }

    type AssignmentsStream = AssignmentsStream;

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<AssignmentsStream>, Status> {
        let node_id = node_of(&req)?;
        let manager = self.leader().await?;
        let session_id = req.into_inner().session_id;
        if !manager.dispatcher().is_current(&node_id, &session_id) {
            return Err(Status::not_found(
                "the session has expired; open a new session",
            ));
        }
        let mut tracker = NodeAssignments::default();
        let (first, mut events) = manager
            .store()
            .subscribe(|store| tracker.complete(store, &node_id));
        let stream = async_stream(move |tx| async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let message = tokio::select! {
                    event = events.recv() => match event {
                        Ok(event) => match event.as_ref() {
                            WatchEvent::Changes { events, .. } => tracker.incremental(&manager.store().read(), events, &node_id),
                            WatchEvent::Reset { .. } => Some(tracker.complete(&manager.store().read(), &node_id)),
                        },
                        // Fell behind: start over with the full set.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            Some(tracker.complete(&manager.store().read(), &node_id))
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => None,
                };
                if !manager.store().is_leader()
                    || !manager.dispatcher().is_current(&node_id, &session_id)
                {
                    return;
                }
                if let Some(message) = message {
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn update_task_status(
        &self,
        req: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let node_id = node_of(&req)?;
        let manager = self.leader().await?;
        let body = req.into_inner();
        if !manager.dispatcher().is_current(&node_id, &body.session_id) {
            return Err(Status::not_found(
                "the session has expired; open a new session",
            ));
        }
        manager
            .dispatcher()
            .submit_status(&node_id, body.updates)
            .await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }
}

/// A response stream fed by a task that owns its sender; the task ends when the client goes.
pub fn async_stream<T, F, Fut>(body: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    // In the request's span (`rpc{method}` under the node's), which a spawned task would
    // not inherit: what the stream's task logs says which call it serves.
    tokio::spawn(body(tx).in_current_span());
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
