//! `/secrets`: create, list (filters `id`, `name`, `names`, `label`), inspect and remove; a
//! secret's data is never shown, and a secret cannot be changed (skiff keeps none of
//! Docker's label-only updates).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;

use super::{empty, json, ok, State};
use crate::daemon::engine::decode::{self, Filters, Query};
use crate::daemon::engine::error::{ApiError, ApiResult};
use crate::daemon::engine::types::secret::{Blob, BlobSpec, Created};

/// Whether `blob` passes Docker's secret and config filters.
pub fn matches(filters: &Filters, blob: &Blob) -> bool {
    filters.matches("id", |v| blob.id.starts_with(v))
        && filters.matches("name", |v| blob.spec.name.starts_with(v))
        && filters.matches("names", |v| blob.spec.name == v)
        && filters.labels_match("label", &blob.spec.labels)
}

/// `POST /secrets/create`.
pub async fn create(state: State, body: Bytes) -> ApiResult<Response> {
    let spec: BlobSpec = decode::body(&body)?;
    let (name, labels, data) = spec.parts()?;
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .create_secret(proto::CreateSecretRequest {
            spec: Some(proto::SecretSpec { name, labels, data }),
        })
        .await
    {
        Ok(r) => json(
            StatusCode::CREATED,
            &Created {
                id: r
                    .into_inner()
                    .secret
                    .and_then(|s| s.meta)
                    .map(|m| m.id)
                    .unwrap_or_default(),
            },
        ),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /secrets?filters=`.
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&["id", "label", "name", "names"])?;
    let backend = state.0.backend();
    let secrets = match backend
        .control()
        .await?
        .list_secrets(proto::ListSecretsRequest {})
        .await
    {
        Ok(r) => r.into_inner().secrets,
        Err(s) => return Err(backend.control_error(s).await),
    };
    let out: Vec<Blob> = secrets
        .iter()
        .map(Blob::from_secret)
        .filter(|b| matches(&filters, b))
        .collect();
    ok(&out)
}

/// `GET /secrets/{id}`.
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .get_secret(proto::GetSecretRequest { secret: id })
        .await
    {
        Ok(r) => ok(&Blob::from_secret(
            &r.into_inner().secret.unwrap_or_default(),
        )),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `DELETE /secrets/{id}`.
pub async fn remove(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .remove_secret(proto::RemoveSecretRequest { secret: id })
        .await
    {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `POST /secrets/{id}/update` and `/configs/{id}/update`: refused.
pub async fn update() -> ApiError {
    ApiError::bad_request(
        "skiff cannot change a secret or config; create a new one and move the services to it with service update",
    )
}
