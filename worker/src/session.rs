//! The session with the leader's dispatcher. Finds the leader from the managers it knows
//! (following the leader hint a follower gives), heartbeats at the period the leader asks for,
//! and reports what the leader says about the node's role and the managers. After a leader
//! failover it simply opens a new session: nothing else on the node restarts.

use std::time::Duration;

use proto::dispatcher_client::DispatcherClient;
use proto::{
    AssignmentsRequest, HeartbeatRequest, NodeDescription, NodeRole, SessionMessage,
    SessionRequest, UpdateTaskStatusRequest, WeightedPeer,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use tonic::Code;

use crate::Dialer;

/// Metadata naming the leader on a follower's "not the leader" answer.
const LEADER_HINT: &str = "x-skiff-leader";

/// What the session learns, for the daemon to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A session is open with the leader at this address.
    Connected {
        /// The leader's cluster address.
        leader_addr: String,
    },
    /// The managers of the cluster (the fallback list for the next reconnection).
    Managers(Vec<WeightedPeer>),
    /// The role the cluster wants this node to have.
    DesiredRole(NodeRole),
    /// The cluster no longer knows this node.
    Removed,
}

/// What the session needs to know about the node.
#[derive(Clone)]
pub struct SessionConfig {
    /// The node's cluster address.
    pub addr: String,
    /// What the node reports about itself.
    pub description: NodeDescription,
    /// Managers to try, in order.
    pub managers: Vec<String>,
    /// The node's task agent.
    pub agent: std::sync::Arc<crate::agent::Agent>,
}

/// Runs the session until `stop` turns true.
pub async fn run(
    config: SessionConfig,
    dial: Dialer,
    events: mpsc::Sender<SessionEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut managers = config.managers.clone();
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Backoff::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let addr = match hint.take() {
            Some(a) => a,
            None if managers.is_empty() => {
                tracing::warn!("no manager address known; cannot open a session");
                if !backoff.wait(&mut stop).await {
                    return;
                }
                continue;
            }
            None => {
                next = (next + 1) % managers.len();
                managers[next].clone()
            }
        };
        let outcome = tokio::select! {
            o = session_with(&addr, &config, &dial, &events, &mut managers) => o,
            _ = stop.changed() => return,
        };
        match outcome {
            Outcome::Redirect(leader) => {
                hint = leader;
                backoff.reset();
                if hint.is_none() && !backoff.wait(&mut stop).await {
                    return;
                }
            }
            Outcome::Removed => {
                let _ = events.send(SessionEvent::Removed).await;
                if !backoff.wait_long(&mut stop).await {
                    return;
                }
            }
            Outcome::Lost => {
                if !backoff.wait(&mut stop).await {
                    return;
                }
            }
        }
    }
}

enum Outcome {
    /// The manager is not the leader; maybe it named one.
    Redirect(Option<String>),
    /// The cluster refused the node.
    Removed,
    /// The connection or the session broke.
    Lost,
}

async fn session_with(
    addr: &str,
    config: &SessionConfig,
    dial: &Dialer,
    events: &mpsc::Sender<SessionEvent>,
    managers: &mut Vec<String>,
) -> Outcome {
    let mut client = DispatcherClient::new(dial(addr));
    let request = SessionRequest {
        description: Some(config.description.clone()),
        addr: config.addr.clone(),
    };
    let mut stream = match client.session(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return classify(addr, &status),
    };
    let first: SessionMessage = match stream.message().await {
        Ok(Some(m)) => m,
        Ok(None) => return Outcome::Lost,
        Err(status) => return classify(addr, &status),
    };
    let session_id = first.session_id.clone();
    tracing::info!(leader = addr, "session open");
    let _ = events
        .send(SessionEvent::Connected {
            leader_addr: addr.to_owned(),
        })
        .await;
    report(&first, events, managers).await;
    let mut assignments = match client
        .assignments(AssignmentsRequest {
            session_id: session_id.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return classify(addr, &status),
    };
    let agent = &config.agent;
    // A new leader may not have seen the latest statuses.
    agent.reporter().resend_all();
    // Heartbeats go on their own task: a status report or an assignment being applied
    // must not hold them back. A manager slow to commit status reports (saturated, or
    // waiting on its store) otherwise saw no heartbeat either, marked the node down and
    // rescheduled its tasks, which made it slower still (issue 20).
    let mut heartbeats = tokio::spawn(heartbeat(client.clone(), session_id.clone()));
    let _abort = AbortOnDrop(heartbeats.abort_handle());
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(m)) => report(&m, events, managers).await,
                Ok(None) => return Outcome::Lost,
                Err(status) => return classify(addr, &status),
            },
            message = assignments.message() => match message {
                Ok(Some(m)) => agent.apply(m).await,
                Ok(None) => return Outcome::Lost,
                Err(status) => return classify(addr, &status),
            },
            updates = agent.reporter().next_batch() => {
                let request = UpdateTaskStatusRequest { session_id: session_id.clone(), updates: updates.clone() };
                if let Err(status) = client.update_task_status(request).await {
                    agent.reporter().requeue(updates);
                    return classify(addr, &status);
                }
            }
            refused = &mut heartbeats => return match refused {
                Ok(status) => classify(addr, &status),
                Err(_) => Outcome::Lost,
            },
        }
    }
}

/// Sends heartbeats at the period the leader asks for, until one fails: returns why.
async fn heartbeat(mut client: DispatcherClient<Channel>, session_id: String) -> tonic::Status {
    let mut period = Duration::from_secs(1);
    let mut beat = tokio::time::interval(period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let request = HeartbeatRequest {
            session_id: session_id.clone(),
        };
        match client.heartbeat(request).await {
            Ok(r) => {
                let asked = Duration::from_millis(r.into_inner().period_ms.max(100));
                if asked != period {
                    period = asked;
                    beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            Err(status) => return status,
        }
    }
}

/// Aborts the heartbeats when the session ends, however it ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn report(
    m: &SessionMessage,
    events: &mpsc::Sender<SessionEvent>,
    managers: &mut Vec<String>,
) {
    if !m.managers.is_empty() {
        *managers = m.managers.iter().map(|p| p.addr.clone()).collect();
        let _ = events
            .send(SessionEvent::Managers(m.managers.clone()))
            .await;
    }
    if let Ok(role) = NodeRole::try_from(m.desired_role) {
        if role != NodeRole::Unspecified {
            let _ = events.send(SessionEvent::DesiredRole(role)).await;
        }
    }
}

fn classify(addr: &str, status: &tonic::Status) -> Outcome {
    match status.code() {
        Code::PermissionDenied => {
            tracing::warn!(
                manager = addr,
                error = status.message(),
                "the cluster refused this node"
            );
            Outcome::Removed
        }
        Code::Unavailable if status.metadata().contains_key(LEADER_HINT) => {
            let leader = status
                .metadata()
                .get(LEADER_HINT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Outcome::Redirect(leader)
        }
        Code::FailedPrecondition | Code::Unavailable => {
            tracing::debug!(
                manager = addr,
                error = status.message(),
                "manager unavailable for a session"
            );
            Outcome::Redirect(None)
        }
        _ => {
            tracing::debug!(manager = addr, error = status.message(), "session lost");
            Outcome::Lost
        }
    }
}

/// Retry pacing: quick at first (a failover takes about a second), slower if it persists.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }

    async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let ms = (100u64 << self.attempt.min(4)).min(1000);
        self.attempt += 1;
        sleep_unless_stopped(Duration::from_millis(ms), stop).await
    }

    async fn wait_long(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        sleep_unless_stopped(Duration::from_secs(10), stop).await
    }
}

async fn sleep_unless_stopped(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::{Stream, StreamExt as _};
    use proto::dispatcher_server::{Dispatcher, DispatcherServer};
    use proto::{AssignmentsMessage, HeartbeatResponse, TaskStatus, UpdateTaskStatusResponse};
    use tonic::{Request, Response, Status};

    use super::*;

    type Pending<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    /// A leader that opens sessions, counts heartbeats and never answers a status report
    /// (a manager waiting on its store).
    #[derive(Default)]
    struct SlowLeader {
        beats: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl Dispatcher for SlowLeader {
        type SessionStream = Pending<SessionMessage>;
        type AssignmentsStream = Pending<AssignmentsMessage>;

        async fn session(
            &self,
            _: Request<SessionRequest>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            let first = SessionMessage {
                session_id: "s1".into(),
                ..Default::default()
            };
            let stream =
                futures::stream::once(async { Ok(first) }).chain(futures::stream::pending());
            Ok(Response::new(Box::pin(stream)))
        }

        async fn heartbeat(
            &self,
            _: Request<HeartbeatRequest>,
        ) -> Result<Response<HeartbeatResponse>, Status> {
            self.beats.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(HeartbeatResponse { period_ms: 100 }))
        }

        async fn assignments(
            &self,
            _: Request<AssignmentsRequest>,
        ) -> Result<Response<Self::AssignmentsStream>, Status> {
            Ok(Response::new(Box::pin(futures::stream::pending())))
        }

        async fn update_task_status(
            &self,
            _: Request<UpdateTaskStatusRequest>,
        ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
            futures::future::pending().await
        }
    }

    #[tokio::test]
    async fn heartbeats_go_on_while_a_status_report_waits_for_the_leader() {
        let leader = SlowLeader::default();
        let beats = leader.beats.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DispatcherServer::new(leader))
                .serve_with_incoming(incoming),
        );
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(agent_runtime::fake::FakeRuntime::new(Default::default()));
        let agent = crate::agent::Agent::new(runtime, dir.path().to_owned(), None);
        // A status to report from the start: the report hangs at the leader.
        agent.reporter().report("t1", TaskStatus::default());
        let config = SessionConfig {
            addr: "127.0.0.1:1".into(),
            description: NodeDescription::default(),
            managers: vec![addr],
            agent,
        };
        let dial: Dialer = Arc::new(|addr: &str| {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("an address")
                .connect_lazy()
        });
        let (events, mut learnt) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let session = tokio::spawn(run(config, dial, events, stopped));
        assert!(matches!(
            learnt.recv().await,
            Some(SessionEvent::Connected { .. })
        ));
        // Ten heartbeats at the 100 ms period the leader asked for, while the report waits.
        let counted = tokio::time::timeout(Duration::from_secs(30), async {
            while beats.load(Ordering::SeqCst) < 10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        stop.send(true).unwrap();
        session.await.unwrap();
        assert!(
            counted.is_ok(),
            "{} heartbeats while a status report waited",
            beats.load(Ordering::SeqCst)
        );
    }
}
