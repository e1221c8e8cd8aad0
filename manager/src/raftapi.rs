//! The `Raft` gRPC service: openraft's RPCs between managers, plus joining, forwarded writes
//! and read barriers. Managers only. It serves through the manager running on this node, so
//! it lives above `crate::manager`, outside `crate::raft`, which the manager is built on.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use proto::raft_server::Raft as RaftApi;
use proto::{
    JoinRaftRequest, JoinRaftResponse, Node, ProposeManyRequest, ProposeManyResponse,
    ProposeOutcome, ProposeRequest, ProposeResponse, RaftPayload, ReadIndexRequest,
    ReadIndexResponse, WeightedPeer,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::ca::identity::{caller, require_manager, require_raft_peer, Caller};
use crate::manager::{Manager, RunningManager};
use crate::raft::{was_forwarded, TypeConfig};

/// Serves Raft through whichever manager runs on this node.
pub struct RaftService {
    running: Arc<RunningManager>,
}

impl RaftService {
    /// A service over the manager `running` holds.
    pub fn new(running: Arc<RunningManager>) -> Self {
        Self { running }
    }

    /// For the calls that act on the cluster (join, forwarded writes and reads): managers
    /// the cluster still wants as managers.
    fn manager<T>(&self, req: &Request<T>) -> Result<Arc<Manager>, Status> {
        require_manager(req)?;
        self.running.get()
    }

    /// For Raft's own messages: members of the Raft group, including one being demoted,
    /// which must still replicate the change that takes it out (and hand over leadership).
    fn peer<T>(&self, req: &Request<T>) -> Result<Arc<Manager>, Status> {
        require_raft_peer(req)?;
        self.running.get()
    }
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    bincode::deserialize(&payload.data)
        .map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

/// A reply, reporting the newest Raft entry format this manager reads
/// (`manager::raft::format`): the leader writes no newer one than every member reports.
fn encode<T: Serialize>(value: &T, manager: &Manager) -> Result<Response<RaftPayload>, Status> {
    payload(value, manager.raft().entry_format_understood()).map(Response::new)
}

/// `value` as the payload of a Raft message that reports `entry_format`.
fn payload<T: Serialize>(value: &T, entry_format: u32) -> Result<RaftPayload, Status> {
    bincode::serialize(value)
        .map(|data| RaftPayload { data, entry_format })
        .map_err(|e| Status::internal(format!("cannot encode Raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftApi for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let manager = self.peer(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        encode(&manager.raft().raft().append_entries(rpc).await, &manager)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let manager = self.peer(&req)?;
        let rpc: VoteRequest<u64> = decode(req.get_ref())?;
        encode(&manager.raft().raft().vote(rpc).await, &manager)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let manager = self.peer(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        encode(&manager.raft().raft().install_snapshot(rpc).await, &manager)
    }

    async fn join(
        &self,
        req: Request<JoinRaftRequest>,
    ) -> Result<Response<JoinRaftResponse>, Status> {
        let manager = self.manager(&req)?;
        // A manager may only add itself. A follower forwards a join with its own certificate
        // and speaks for the manager it checked; a Raft peer may already replicate anything,
        // so trusting it with this adds no right.
        let forwarded = was_forwarded(&req);
        if forwarded {
            require_raft_peer(&req)?;
        } else if let Caller::Node(identity) = caller(&req) {
            if identity.node_id != req.get_ref().node_id {
                return Err(Status::permission_denied(
                    "a manager can only join Raft as itself",
                ));
            }
        }
        let body = req.into_inner();
        if body.raft_id == 0 || body.addr.is_empty() || body.node_id.is_empty() {
            return Err(Status::invalid_argument(
                "a Raft join needs a node ID, a Raft ID and an address",
            ));
        }
        if !manager.raft().is_leader() {
            if forwarded {
                return Err(Status::unavailable(
                    "this manager is no longer the leader; retry",
                ));
            }
            let Some(addr) = manager.raft().leader_addr().await? else {
                return Err(Status::unavailable("the leader changed; retry"));
            };
            let mut fwd = Request::new(body);
            fwd.metadata_mut()
                .insert("x-skiff-forwarded", "1".parse().expect("ascii"));
            return manager.raft().client_for(&addr).join(fwd).await;
        }
        record_manager(&manager, &body).await?;
        manager.raft().add_voter(body.raft_id, &body.addr).await?;
        let members = manager
            .raft()
            .members()
            .into_iter()
            .map(|(id, addr)| WeightedPeer {
                node_id: id.to_string(),
                addr,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(JoinRaftResponse { members }))
    }

    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let manager = self.manager(&req)?;
        let batch = req
            .into_inner()
            .batch
            .ok_or_else(|| Status::invalid_argument("a proposal needs a batch"))?;
        let index = manager.raft().propose_as_leader(&batch).await?;
        Ok(Response::new(ProposeResponse { index }))
    }

    async fn propose_many(
        &self,
        req: Request<ProposeManyRequest>,
    ) -> Result<Response<ProposeManyResponse>, Status> {
        let manager = self.manager(&req)?;
        let batches = req.into_inner().batches;
        if batches.len() > crate::raft::MAX_FORWARDED_BATCHES {
            return Err(Status::invalid_argument(format!(
                "a forwarded call carries at most {} writes",
                crate::raft::MAX_FORWARDED_BATCHES
            )));
        }
        // Proposed all at once, in order: they reach the proposal queue together and
        // share entries, as concurrent writes on the leader do.
        let raft = manager.raft();
        let results =
            futures::future::join_all(batches.iter().map(|b| raft.propose_as_leader(b))).await;
        let outcomes = results
            .into_iter()
            .map(|result| match result {
                Ok(index) => ProposeOutcome {
                    index,
                    ..Default::default()
                },
                Err(e) => {
                    let status = Status::from(e);
                    ProposeOutcome {
                        index: 0,
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }
                }
            })
            .collect();
        Ok(Response::new(ProposeManyResponse { outcomes }))
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let manager = self.manager(&req)?;
        let index = manager.raft().read_index_as_leader().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}

/// Records the joining manager's Raft ID and address in its node object, so the rest of the
/// cluster can map Raft members to nodes.
async fn record_manager(manager: &Manager, join: &JoinRaftRequest) -> Result<(), Status> {
    let recorded = manager
        .store()
        .modify::<Node>(&join.node_id, |node| {
            let status = node.manager_status.get_or_insert_with(Default::default);
            status.raft_id = join.raft_id;
            status.addr = join.addr.clone();
            // The leader has just heard from it; `node ls` should not say "unknown" until
            // the reachability loop's next round.
            status.reachability = proto::Reachability::Reachable as i32;
            node.role = proto::NodeRole::Manager as i32;
        })
        .await?;
    match recorded {
        Some(_) => Ok(()),
        None => Err(Status::not_found(format!(
            "node {} is not part of this cluster; join it with a manager token first",
            join.node_id
        ))),
    }
}

#[cfg(test)]
mod proptests;
