//! The engine's way into skiff: the daemon's own `Swarm`, `Control` and `Logs` services,
//! called over its local socket exactly as the `skiff` CLI calls them, so defaults,
//! validation and access checks apply unchanged. Handlers never read the store.

use std::path::PathBuf;

use proto::control_client::ControlClient;
use proto::logs_client::LogsClient;
use proto::swarm_client::SwarmClient;
use proto::LocalNodeState;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

use super::error::{self, ApiError, ApiResult};
use crate::client::{Client, Host};

/// A client of the daemon's local socket, connected at the first request.
pub struct Backend {
    socket: PathBuf,
    client: OnceCell<Client>,
}

impl Backend {
    /// The daemon whose local API listens on `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> ApiResult<&Client> {
        self.client
            .get_or_try_init(|| async {
                Client::connect(&Host::Unix(self.socket.clone()), std::path::Path::new(""))
                    .await
                    .map_err(|e| ApiError::unavailable(format!("{e:#}")))
            })
            .await
    }

    /// The daemon's own operations (init, join, leave, info, unlock).
    pub async fn swarm(&self) -> ApiResult<SwarmClient<Channel>> {
        Ok(self.client().await?.swarm())
    }

    /// The cluster API.
    pub async fn control(&self) -> ApiResult<ControlClient<Channel>> {
        Ok(self.client().await?.control())
    }

    /// Task logs.
    pub async fn logs(&self) -> ApiResult<LogsClient<Channel>> {
        let channel = self.client().await?.channel();
        Ok(LogsClient::new(channel).max_decoding_message_size(proto::MAX_MESSAGE_BYTES))
    }

    /// The node's membership.
    pub async fn info(&self) -> ApiResult<proto::InfoResponse> {
        self.swarm()
            .await?
            .info(proto::InfoRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ApiError::from_status(&s))
    }

    /// The tasks this node runs, with its node ID and hostname.
    pub async fn local_tasks(&self) -> ApiResult<proto::ListLocalTasksResponse> {
        self.swarm()
            .await?
            .list_local_tasks(proto::ListLocalTasksRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| ApiError::from_status(&s))
    }

    /// The error for a failed control call: when the node cannot serve the cluster API
    /// (outside a swarm, a worker, locked), dockerd's 503 for that state; otherwise the
    /// status mapped as dockerd maps swarmkit's.
    pub async fn control_error(&self, status: tonic::Status) -> ApiError {
        if status.code() == tonic::Code::FailedPrecondition {
            if let Some(e) = self.not_a_manager().await {
                return e;
            }
        }
        ApiError::from_status(&status)
    }

    /// As [`Backend::control_error`], for updates that name a version (a stale one is
    /// "update out of sequence").
    pub async fn update_error(&self, status: tonic::Status) -> ApiError {
        if status.code() == tonic::Code::FailedPrecondition {
            if let Some(e) = self.not_a_manager().await {
                return e;
            }
        }
        ApiError::from_update_status(&status)
    }

    /// dockerd's 503 when this node cannot serve the cluster API, if it cannot.
    pub async fn not_a_manager(&self) -> Option<ApiError> {
        let info = self.info().await.ok()?;
        manager_state_error(&info)
    }
}

/// dockerd's 503 for a node in `info`'s state, if it cannot serve the cluster API.
pub fn manager_state_error(info: &proto::InfoResponse) -> Option<ApiError> {
    match LocalNodeState::try_from(info.state) {
        Ok(LocalNodeState::Locked) => Some(ApiError::unavailable(error::LOCKED)),
        Ok(LocalNodeState::Active) if info.role == proto::NodeRole::Manager as i32 => None,
        Ok(LocalNodeState::Active) => Some(ApiError::unavailable(error::NOT_A_MANAGER)),
        _ => Some(ApiError::unavailable(error::NO_SWARM)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swarm_state_gives_dockerds_503_texts() {
        let info = |state: LocalNodeState, role: proto::NodeRole| proto::InfoResponse {
            state: state as i32,
            role: role as i32,
            ..Default::default()
        };
        let e = manager_state_error(&info(
            LocalNodeState::Inactive,
            proto::NodeRole::Unspecified,
        ))
        .unwrap();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (503, error::NO_SWARM)
        );
        let e =
            manager_state_error(&info(LocalNodeState::Active, proto::NodeRole::Worker)).unwrap();
        assert_eq!(e.message, error::NOT_A_MANAGER);
        let e =
            manager_state_error(&info(LocalNodeState::Locked, proto::NodeRole::Manager)).unwrap();
        assert_eq!(e.message, error::LOCKED);
        assert!(
            manager_state_error(&info(LocalNodeState::Active, proto::NodeRole::Manager)).is_none()
        );
    }
}
