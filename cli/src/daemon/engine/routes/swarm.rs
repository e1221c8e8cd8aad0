//! `/swarm`: init, join, leave, inspect, update (with token and unlock-key rotation),
//! the unlock key and unlocking.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::response::Response;
use proto::LocalNodeState;

use super::{empty, ok, State};
use crate::daemon::engine::decode::{self, Query};
use crate::daemon::engine::error::{self, ApiError, ApiResult};
use crate::daemon::engine::types::swarm::{InitRequest, JoinRequest, Swarm, UnlockKey};

/// dockerd's answer to init or join on a node already in a swarm.
const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";

/// Refuses init and join on a node already in a swarm, in dockerd's words.
async fn outside_any_swarm(state: &State) -> ApiResult<()> {
    let info = state.0.backend().info().await?;
    match LocalNodeState::try_from(info.state) {
        Ok(LocalNodeState::Inactive) | Ok(LocalNodeState::Error) => Ok(()),
        Ok(LocalNodeState::Locked) => Err(ApiError::unavailable(error::LOCKED)),
        _ => Err(ApiError::unavailable(ALREADY_IN_SWARM)),
    }
}

/// `GET /swarm`.
pub async fn inspect(state: State) -> ApiResult<Response> {
    let backend = state.0.backend();
    let cluster = match backend
        .control()
        .await?
        .get_cluster(proto::GetClusterRequest {})
        .await
    {
        Ok(c) => c.into_inner().cluster.unwrap_or_default(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    ok(&Swarm::from_proto(&cluster))
}

/// `POST /swarm/init`: the new node's ID, as a JSON string.
pub async fn init(state: State, body: Bytes) -> ApiResult<Response> {
    let request: InitRequest = decode::body(&body)?;
    let request = request.to_proto()?;
    if !request.force_new_cluster {
        outside_any_swarm(&state).await?;
    }
    let backend = state.0.backend();
    let response = backend
        .swarm()
        .await?
        .init(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    ok(&response.node_id)
}

/// `POST /swarm/join`.
pub async fn join(state: State, body: Bytes) -> ApiResult<Response> {
    let request: JoinRequest = decode::body(&body)?;
    let request = request.to_proto()?;
    outside_any_swarm(&state).await?;
    state
        .0
        .backend()
        .swarm()
        .await?
        .join(request)
        .await
        .map_err(|s| ApiError::from_status(&s))?;
    Ok(empty())
}

/// `POST /swarm/leave?force=`.
pub async fn leave(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let backend = state.0.backend();
    let info = backend.info().await?;
    if info.state == LocalNodeState::Inactive as i32 {
        return Err(ApiError::unavailable(error::NOT_IN_SWARM));
    }
    backend
        .swarm()
        .await?
        .leave(proto::LeaveRequest {
            force: query.bool("force"),
        })
        .await
        .map_err(|s| ApiError::from_status(&s))?;
    Ok(empty())
}

/// `POST /swarm/update?version=&rotateWorkerToken=&rotateManagerToken=&rotateManagerUnlockKey=`.
pub async fn update(state: State, RawQuery(query): RawQuery, body: Bytes) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let version = query.version()?;
    let spec: crate::daemon::engine::types::swarm::SwarmSpec = decode::body(&body)?;
    let backend = state.0.backend();
    let mut control = backend.control().await?;
    let current = match control.get_cluster(proto::GetClusterRequest {}).await {
        Ok(c) => c.into_inner().cluster.unwrap_or_default(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    let spec = spec.to_proto(current.spec.unwrap_or_default())?;
    let updated = control
        .update_cluster(proto::UpdateClusterRequest {
            version,
            spec: Some(spec),
            rotate_worker_token: query.bool("rotateWorkerToken"),
            rotate_manager_token: query.bool("rotateManagerToken"),
            rotate_unlock_key: query.bool("rotateManagerUnlockKey"),
        })
        .await;
    match updated {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.update_error(s).await),
    }
}

/// `GET /swarm/unlockkey`: the only answer that carries the unlock key.
pub async fn unlock_key(state: State) -> ApiResult<Response> {
    let backend = state.0.backend();
    let key = match backend
        .control()
        .await?
        .get_unlock_key(proto::GetUnlockKeyRequest {})
        .await
    {
        Ok(r) => r.into_inner().unlock_key,
        Err(s) => return Err(backend.control_error(s).await),
    };
    ok(&UnlockKey { unlock_key: key })
}

/// `POST /swarm/unlock`.
pub async fn unlock(state: State, body: Bytes) -> ApiResult<Response> {
    let key: UnlockKey = decode::body(&body)?;
    state
        .0
        .backend()
        .swarm()
        .await?
        .unlock(proto::UnlockRequest {
            unlock_key: key.unlock_key,
        })
        .await
        .map_err(|s| ApiError::from_status(&s))?;
    Ok(empty())
}
