//! `/nodes`: list (with Docker's filters), inspect, update, remove.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::response::Response;

use super::{empty, ok, State};
use crate::daemon::engine::decode::{self, Query};
use crate::daemon::engine::error::ApiResult;
use crate::daemon::engine::types::node::{Node, NodeSpec};

/// The cluster's root certificate, which every node's description names as its trust root.
async fn root_ca(state: &State) -> String {
    let Ok(mut control) = state.0.backend().control().await else {
        return String::new();
    };
    control
        .get_cluster(proto::GetClusterRequest {})
        .await
        .ok()
        .and_then(|c| c.into_inner().cluster)
        .and_then(|c| c.root_ca)
        .map(|r| r.cert_pem)
        .unwrap_or_default()
}

/// `GET /nodes?filters=`: `id` (prefix), `name` (hostname prefix), `role`, `membership`,
/// `label` (engine labels) and `node.label` (the node's own labels).
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&["id", "label", "membership", "name", "node.label", "role"])?;
    let backend = state.0.backend();
    let nodes = match backend
        .control()
        .await?
        .list_nodes(proto::ListNodesRequest::default())
        .await
    {
        Ok(r) => r.into_inner().nodes,
        Err(s) => return Err(backend.control_error(s).await),
    };
    let root = root_ca(&state).await;
    let nodes: Vec<Node> = nodes
        .iter()
        .map(|n| Node::from_proto(n, &root))
        .filter(|n| {
            filters.matches("id", |v| n.id.starts_with(v))
                && filters.matches("name", |v| n.description.hostname.starts_with(v))
                && filters.matches("role", |v| n.spec.role == v)
                && filters.matches("membership", |v| v == "accepted")
                && filters.labels_match("node.label", &n.spec.labels)
                && filters.labels_match("label", &n.description.engine.labels)
        })
        .collect();
    ok(&nodes)
}

/// `GET /nodes/{id}` (ID, ID prefix or hostname).
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    let node = match backend
        .control()
        .await?
        .get_node(proto::GetNodeRequest { node: id })
        .await
    {
        Ok(r) => r.into_inner().node.unwrap_or_default(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    ok(&Node::from_proto(&node, &root_ca(&state).await))
}

/// `POST /nodes/{id}/update?version=`.
pub async fn update(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let version = Query::parse(query.as_deref()).version()?;
    let spec: NodeSpec = decode::body(&body)?;
    let spec = spec.to_proto()?;
    let backend = state.0.backend();
    let updated = backend
        .control()
        .await?
        .update_node(proto::UpdateNodeRequest {
            node: id,
            version,
            spec: Some(spec),
        })
        .await;
    match updated {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.update_error(s).await),
    }
}

/// `DELETE /nodes/{id}?force=`.
pub async fn remove(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let force = Query::parse(query.as_deref()).bool("force");
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .remove_node(proto::RemoveNodeRequest { node: id, force })
        .await
    {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.control_error(s).await),
    }
}
