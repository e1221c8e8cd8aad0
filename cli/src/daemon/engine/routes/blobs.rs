//! `/secrets` and `/configs`, which Docker serves alike: create, list (filters `id`,
//! `name`, `names`, `label`), inspect, update (labels only, at the `version` read) and
//! remove. A secret's data is never shown; a config's is, as Docker shows it. Data cannot
//! change under a name (the control API refuses it, saying to use a new name).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use proto::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::Status;

use super::{empty, json, ok, State};
use crate::daemon::engine::decode::{self, Filters, Query};
use crate::daemon::engine::error::ApiResult;
use crate::daemon::engine::types::secret::{Blob, BlobSpec, Created};
use crate::daemon::engine::Engine;

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blobs {
    Secrets,
    Configs,
}

/// A spec's parts: name, labels and data.
type Parts = (String, HashMap<String, String>, Vec<u8>);

impl Blobs {
    async fn create(
        self,
        mut c: ControlClient<Channel>,
        (name, labels, data): Parts,
    ) -> Result<String, Status> {
        let meta = match self {
            Self::Secrets => c
                .create_secret(proto::CreateSecretRequest {
                    spec: Some(proto::SecretSpec { name, labels, data }),
                })
                .await?
                .into_inner()
                .secret
                .and_then(|s| s.meta),
            Self::Configs => c
                .create_config(proto::CreateConfigRequest {
                    spec: Some(proto::ConfigSpec { name, labels, data }),
                })
                .await?
                .into_inner()
                .config
                .and_then(|s| s.meta),
        };
        Ok(meta.map(|m| m.id).unwrap_or_default())
    }

    async fn list(self, mut c: ControlClient<Channel>) -> Result<Vec<Blob>, Status> {
        Ok(match self {
            Self::Secrets => c
                .list_secrets(proto::ListSecretsRequest {})
                .await?
                .into_inner()
                .secrets
                .iter()
                .map(Blob::from_secret)
                .collect(),
            Self::Configs => c
                .list_configs(proto::ListConfigsRequest {})
                .await?
                .into_inner()
                .configs
                .iter()
                .map(Blob::from_config)
                .collect(),
        })
    }

    async fn get(self, mut c: ControlClient<Channel>, id: String) -> Result<Blob, Status> {
        Ok(match self {
            Self::Secrets => Blob::from_secret(
                &c.get_secret(proto::GetSecretRequest { secret: id })
                    .await?
                    .into_inner()
                    .secret
                    .unwrap_or_default(),
            ),
            Self::Configs => Blob::from_config(
                &c.get_config(proto::GetConfigRequest { config: id })
                    .await?
                    .into_inner()
                    .config
                    .unwrap_or_default(),
            ),
        })
    }

    async fn update(
        self,
        mut c: ControlClient<Channel>,
        id: String,
        version: u64,
        (name, labels, data): Parts,
    ) -> Result<(), Status> {
        match self {
            Self::Secrets => c
                .update_secret(proto::UpdateSecretRequest {
                    secret: id,
                    version,
                    spec: Some(proto::SecretSpec { name, labels, data }),
                })
                .await
                .map(drop),
            Self::Configs => c
                .update_config(proto::UpdateConfigRequest {
                    config: id,
                    version,
                    spec: Some(proto::ConfigSpec { name, labels, data }),
                })
                .await
                .map(drop),
        }
    }

    async fn remove(self, mut c: ControlClient<Channel>, id: String) -> Result<(), Status> {
        match self {
            Self::Secrets => c
                .remove_secret(proto::RemoveSecretRequest { secret: id })
                .await
                .map(drop),
            Self::Configs => c
                .remove_config(proto::RemoveConfigRequest { config: id })
                .await
                .map(drop),
        }
    }

    /// The routes under `/secrets` or `/configs`.
    pub fn routes(self) -> Router<std::sync::Arc<Engine>> {
        let base = match self {
            Self::Secrets => "/secrets",
            Self::Configs => "/configs",
        };
        Router::new()
            .route(base, get(move |s, q| list(self, s, q)))
            .route(
                &format!("{base}/create"),
                post(move |s, body| create(self, s, body)),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(move |s, id| inspect(self, s, id)).delete(move |s, id| remove(self, s, id)),
            )
            .route(
                &format!("{base}/{{id}}/update"),
                post(move |s, id, q, body| update(self, s, id, q, body)),
            )
    }
}

/// Whether `blob` passes Docker's secret and config filters.
fn matches(filters: &Filters, blob: &Blob) -> bool {
    filters.matches("id", |v| blob.id.starts_with(v))
        && filters.matches("name", |v| blob.spec.name.starts_with(v))
        && filters.matches("names", |v| blob.spec.name == v)
        && filters.labels_match("label", &blob.spec.labels)
}

/// `POST /secrets/create`, `/configs/create`.
async fn create(kind: Blobs, state: State, body: Bytes) -> ApiResult<Response> {
    let spec: BlobSpec = decode::body(&body)?;
    let backend = state.0.backend();
    match kind.create(backend.control().await?, spec.parts()?).await {
        Ok(id) => json(StatusCode::CREATED, &Created { id }),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /secrets?filters=`, `/configs?filters=`.
async fn list(kind: Blobs, state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&["id", "label", "name", "names"])?;
    let backend = state.0.backend();
    match kind.list(backend.control().await?).await {
        Ok(all) => ok(&all
            .into_iter()
            .filter(|b| matches(&filters, b))
            .collect::<Vec<_>>()),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /secrets/{id}`, `/configs/{id}`.
async fn inspect(kind: Blobs, state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match kind.get(backend.control().await?, id).await {
        Ok(blob) => ok(&blob),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `POST /secrets/{id}/update?version=`, `/configs/{id}/update?version=`: Docker sends the
/// whole spec; only its labels may differ (a secret's absent data means "unchanged").
async fn update(
    kind: Blobs,
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let version = Query::parse(query.as_deref()).version()?;
    let spec: BlobSpec = decode::body(&body)?;
    let backend = state.0.backend();
    match kind
        .update(backend.control().await?, id, version, spec.parts()?)
        .await
    {
        Ok(()) => Ok(empty()),
        Err(s) => Err(backend.update_error(s).await),
    }
}

/// `DELETE /secrets/{id}`, `/configs/{id}`.
async fn remove(kind: Blobs, state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match kind.remove(backend.control().await?, id).await {
        Ok(()) => Ok(empty()),
        Err(s) => Err(backend.control_error(s).await),
    }
}
