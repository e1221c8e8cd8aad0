//! The routes of the Engine API, one module per resource, and what their handlers share.

pub mod blobs;
pub mod containers;
pub mod distribution;
pub mod events;
pub mod logs;
pub mod networks;
pub mod nodes;
pub mod services;
pub mod swarm;
pub mod system;
pub mod tasks;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::Engine;

/// The state every handler gets.
pub type State = axum::extract::State<Arc<Engine>>;

/// Every route of the API (unversioned: `App::handle` strips the version first).
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/distribution/{*rest}", get(distribution::inspect))
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(services::logs))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/tasks/{id}/logs", get(tasks::logs))
        .merge(blobs::Blobs::Secrets.routes())
        .merge(blobs::Blobs::Configs.routes())
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/logs", get(containers::logs))
        .fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    if uri.path() == "/containers" || uri.path().starts_with("/containers/") {
        return ApiError::not_implemented(containers::NOT_IMPLEMENTED);
    }
    ApiError::not_found(format!(
        "page not found: skiff serves the swarm part of the Docker API, and {} is not part of it",
        uri.path()
    ))
}

/// `value` as a JSON answer with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response())
}

/// `200 OK` with `value` as JSON.
pub fn ok<T: Serialize>(value: &T) -> ApiResult<Response> {
    json(StatusCode::OK, value)
}

/// An empty `200 OK`.
pub fn empty() -> Response {
    StatusCode::OK.into_response()
}
