//! The `Logs` service: a manager merges the logs of the selected tasks from their nodes;
//! every node serves the logs of its own tasks to managers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use manager::ca::identity::require_manager;
use manager::logs::NODE_LOGS;
use manager::RunningManager;
use proto::logs_server::Logs;
use proto::{SubscribeLogsRequest, SubscribeLogsResponse};
use tonic::{Request, Response, Status};
use worker::agent::Agent;

/// The node's agent and node ID, while the node is in a cluster.
pub type AgentSlot = Arc<Mutex<Option<(Arc<Agent>, String)>>>;

/// Serves logs for one daemon.
pub struct LogsService {
    slot: Arc<RunningManager>,
    agent: AgentSlot,
}

impl LogsService {
    /// The service over the daemon's manager and agent.
    pub fn new(slot: Arc<RunningManager>, agent: AgentSlot) -> Self {
        Self { slot, agent }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<SubscribeLogsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Logs for LogsService {
    type SubscribeLogsStream = LogStream;

    async fn subscribe_logs(
        &self,
        req: Request<SubscribeLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        require_manager(&req)?;
        if req.metadata().contains_key(NODE_LOGS) {
            let Some((agent, node_id)) =
                self.agent.lock().unwrap_or_else(|e| e.into_inner()).clone()
            else {
                return Err(Status::failed_precondition(
                    "this node is not part of a cluster",
                ));
            };
            let body = req.into_inner();
            let tail = usize::try_from(body.tail).ok();
            let task_ids = body.selector.unwrap_or_default().task_ids;
            let stream = worker::logs::local(&agent, &node_id, &task_ids, tail, body.follow)
                .await
                .map_err(Status::failed_precondition)?;
            return Ok(Response::new(stream.map(Ok).boxed()));
        }
        let manager = self.slot.get()?;
        Ok(Response::new(
            manager::logs::subscribe(manager, req.into_inner()).await?,
        ))
    }
}
