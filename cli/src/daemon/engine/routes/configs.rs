//! `/configs`: create, list (filters `id`, `name`, `names`, `label`), inspect (with the
//! data, as Docker shows it) and remove.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;

use super::secrets::matches;
use super::{empty, json, ok, State};
use crate::daemon::engine::decode::{self, Query};
use crate::daemon::engine::error::ApiResult;
use crate::daemon::engine::types::secret::{Blob, BlobSpec, Created};

/// `POST /configs/create`.
pub async fn create(state: State, body: Bytes) -> ApiResult<Response> {
    let spec: BlobSpec = decode::body(&body)?;
    let (name, labels, data) = spec.parts()?;
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .create_config(proto::CreateConfigRequest {
            spec: Some(proto::ConfigSpec { name, labels, data }),
        })
        .await
    {
        Ok(r) => json(
            StatusCode::CREATED,
            &Created {
                id: r
                    .into_inner()
                    .config
                    .and_then(|c| c.meta)
                    .map(|m| m.id)
                    .unwrap_or_default(),
            },
        ),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /configs?filters=`.
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&["id", "label", "name", "names"])?;
    let backend = state.0.backend();
    let configs = match backend
        .control()
        .await?
        .list_configs(proto::ListConfigsRequest {})
        .await
    {
        Ok(r) => r.into_inner().configs,
        Err(s) => return Err(backend.control_error(s).await),
    };
    let out: Vec<Blob> = configs
        .iter()
        .map(Blob::from_config)
        .filter(|b| matches(&filters, b))
        .collect();
    ok(&out)
}

/// `GET /configs/{id}`.
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .get_config(proto::GetConfigRequest { config: id })
        .await
    {
        Ok(r) => ok(&Blob::from_config(
            &r.into_inner().config.unwrap_or_default(),
        )),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `DELETE /configs/{id}`.
pub async fn remove(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .remove_config(proto::RemoveConfigRequest { config: id })
        .await
    {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.control_error(s).await),
    }
}
