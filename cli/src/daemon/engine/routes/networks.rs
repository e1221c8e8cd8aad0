//! `/networks`: the swarm's overlays: create, list (filters `driver`, `id`, `label`,
//! `name`, `scope`, `type`), inspect and remove.
//!
//! `docker stack rm` removes a stack's networks right after its services, while their
//! tasks are still stopping on the nodes; the control API refuses that ("still has tasks
//! attached"), so removal waits a bounded while for them to go, as dockerd's does.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;

use super::{empty, json, ok, State};
use crate::daemon::engine::decode::{self, Query};
use crate::daemon::engine::error::ApiResult;
use crate::daemon::engine::types::network::{CreateRequest, Created, Network};

/// How long `DELETE /networks/{id}` waits for stopping tasks to leave the network.
const REMOVE_PATIENCE: Duration = Duration::from_secs(20);
/// How often it asks again meanwhile.
const REMOVE_RETRY: Duration = Duration::from_millis(250);

/// `POST /networks/create`.
pub async fn create(state: State, body: Bytes) -> ApiResult<Response> {
    let request: CreateRequest = decode::body(&body)?;
    let spec = request.to_proto()?;
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .create_network(proto::CreateNetworkRequest { spec: Some(spec) })
        .await
    {
        Ok(r) => json(
            StatusCode::CREATED,
            &Created {
                id: r
                    .into_inner()
                    .network
                    .and_then(|n| n.meta)
                    .map(|m| m.id)
                    .unwrap_or_default(),
                warning: String::new(),
            },
        ),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /networks?filters=`.
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&["dangling", "driver", "id", "label", "name", "scope", "type"])?;
    let backend = state.0.backend();
    let networks = match backend
        .control()
        .await?
        .list_networks(proto::ListNetworksRequest {})
        .await
    {
        Ok(r) => r.into_inner().networks,
        Err(s) => return Err(backend.control_error(s).await),
    };
    let out: Vec<Network> = networks
        .iter()
        .map(Network::from_proto)
        .filter(|n| {
            filters.matches("id", |v| n.id.starts_with(v))
                && filters.matches("name", |v| n.name.contains(v))
                && filters.matches("driver", |v| n.driver == v)
                && filters.matches("scope", |v| v == "swarm")
                && filters.matches("type", |v| v == "custom")
                && filters.labels_match("label", &n.labels)
        })
        .collect();
    ok(&out)
}

/// `GET /networks/{id}`.
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .get_network(proto::GetNetworkRequest { network: id })
        .await
    {
        Ok(r) => ok(&Network::from_proto(
            &r.into_inner().network.unwrap_or_default(),
        )),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `DELETE /networks/{id}`.
pub async fn remove(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    let deadline = tokio::time::Instant::now() + REMOVE_PATIENCE;
    loop {
        let removed = backend
            .control()
            .await?
            .remove_network(proto::RemoveNetworkRequest {
                network: id.clone(),
            })
            .await;
        match removed {
            Ok(_) => return Ok(empty()),
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains("stopping")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(REMOVE_RETRY).await;
            }
            Err(s) => return Err(backend.control_error(s).await),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn removal_waits_on_the_control_apis_stopping_tasks_message() {
        // The retry keys on this word of `check_removable`'s refusal; keep them together.
        let source = include_str!("../../../../../manager/src/controlapi/network.rs");
        assert!(source.contains("task(s) attached that are stopping"));
    }
}
