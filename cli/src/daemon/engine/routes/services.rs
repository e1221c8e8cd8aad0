//! `/services`: create (with `X-Registry-Auth`), list (with `status=true`), inspect (with
//! `insertDefaults`), update (with `version`, `rollback=previous`, `registryAuthFrom`),
//! remove, and logs.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use proto::service_spec::Mode as ProtoMode;

use super::{empty, json, ok, State};
use crate::daemon::engine::backend::Backend;
use crate::daemon::engine::decode::{self, Query};
use crate::daemon::engine::error::{ApiError, ApiResult};
use crate::daemon::engine::types::service::{CreateResponse, Service, ServiceSpec, ServiceStatus};

/// The registry credentials of `X-Registry-Auth`, as Docker's clients send them (base64 JSON),
/// unless they hold nothing (clients send `{}` without `--with-registry-auth`).
fn registry_auth(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("X-Registry-Auth")?.to_str().ok()?.trim();
    if raw.is_empty() {
        return None;
    }
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    let holds_something = value
        .as_object()
        .is_some_and(|o| o.values().any(|v| !decode::is_zero(v)));
    holds_something.then(|| raw.to_string())
}

/// The service `reference` names (ID, ID prefix or name).
pub async fn get(backend: &Backend, reference: &str) -> ApiResult<proto::Service> {
    match backend
        .control()
        .await?
        .get_service(proto::GetServiceRequest {
            service: reference.to_string(),
        })
        .await
    {
        Ok(r) => Ok(r.into_inner().service.unwrap_or_default()),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `POST /services/create`.
pub async fn create(state: State, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let spec: ServiceSpec = decode::body(&body)?;
    let mut spec = spec.to_proto()?;
    if let Some(auth) = registry_auth(&headers) {
        if let Some(c) = spec
            .task_template
            .as_mut()
            .and_then(|t| t.container.as_mut())
        {
            c.registry_auth = auth;
        }
    }
    let backend = state.0.backend();
    let created = backend
        .control()
        .await?
        .create_service(proto::CreateServiceRequest { spec: Some(spec) })
        .await;
    match created {
        Ok(r) => json(
            StatusCode::CREATED,
            &CreateResponse {
                id: r
                    .into_inner()
                    .service
                    .and_then(|s| s.meta)
                    .map(|m| m.id)
                    .unwrap_or_default(),
                warnings: Vec::new(),
            },
        ),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /services?filters=&status=`: filters `id` (prefix), `name` (prefix), `label`,
/// `mode` (`replicated`, `global`, `replicated-job`, `global-job`).
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let filters = query.filters()?;
    filters.allow_only(&["id", "label", "mode", "name"])?;
    let backend = state.0.backend();
    let (services, statuses) = match backend
        .control()
        .await?
        .list_services(proto::ListServicesRequest {
            status: query.bool("status"),
            ..Default::default()
        })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            (r.services, r.statuses)
        }
        Err(s) => return Err(backend.control_error(s).await),
    };
    // The daemon counts every service's tasks (`statuses`, in the order of `services`)
    // from the counts its store keeps.
    let mut statuses = statuses.into_iter();
    let out: Vec<Service> = services
        .into_iter()
        .map(|s| (statuses.next(), s))
        .filter(|(_, s)| {
            let id = s.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("");
            let spec = s.spec.clone().unwrap_or_default();
            let mode = match spec.mode {
                Some(ProtoMode::Global(_)) => "global",
                Some(ProtoMode::ReplicatedJob(_)) => "replicated-job",
                Some(ProtoMode::GlobalJob(_)) => "global-job",
                _ => "replicated",
            };
            filters.matches("id", |v| id.starts_with(v))
                && filters.matches("name", |v| spec.name.starts_with(v))
                && filters.matches("mode", |v| v == mode)
                && filters.labels_match("label", &spec.labels)
        })
        .map(|(status, s)| {
            let mut docker = Service::from_proto(&s);
            docker.service_status = status.map(|c| ServiceStatus {
                running_tasks: c.running_tasks,
                desired_tasks: c.desired_tasks,
                completed_tasks: c.completed_tasks,
            });
            docker
        })
        .collect();
    ok(&out)
}

/// `GET /services/{id}?insertDefaults=`.
pub async fn inspect(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let service = get(state.0.backend(), &id).await?;
    let mut docker = Service::from_proto(&service);
    if query.bool("insertDefaults") {
        docker.spec.insert_defaults();
        if let Some(previous) = docker.previous_spec.as_mut() {
            previous.insert_defaults();
        }
    }
    ok(&docker)
}

/// `POST /services/{id}/update?version=&rollback=previous&registryAuthFrom=`.
pub async fn update(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let version = query.version()?;
    let backend = state.0.backend();
    let rollback = match query.get("rollback").unwrap_or("") {
        "" => false,
        "previous" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid rollback \"{other}\": the only rollback is to the previous spec (rollback=previous)"
            )))
        }
    };
    let spec = if rollback {
        None
    } else {
        let docker: ServiceSpec = decode::body(&body)?;
        let mut spec = docker.to_proto()?;
        let current = get(backend, &id).await?;
        let current_container = current
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container.clone())
            .unwrap_or_default();
        let previous_auth = current
            .previous_spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container.as_ref())
            .map(|c| c.registry_auth.clone())
            .unwrap_or_default();
        let auth = match (registry_auth(&headers), query.get("registryAuthFrom")) {
            (Some(auth), _) => auth,
            (None, Some("previous-spec")) => previous_auth,
            (None, _) => current_container.registry_auth.clone(),
        };
        // What Docker's spec cannot carry (registry credentials, pull policy) stays as it is.
        if let Some(c) = spec
            .task_template
            .as_mut()
            .and_then(|t| t.container.as_mut())
        {
            c.registry_auth = auth;
            c.pull_policy = current_container.pull_policy;
        }
        Some(spec)
    };
    let updated = backend
        .control()
        .await?
        .update_service(proto::UpdateServiceRequest {
            service: id,
            version,
            spec,
            rollback,
        })
        .await;
    match updated {
        Ok(_) => ok(&serde_json::json!({ "Warnings": null })),
        Err(s) => Err(backend.update_error(s).await),
    }
}

/// `DELETE /services/{id}`.
pub async fn remove(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .remove_service(proto::RemoveServiceRequest { service: id })
        .await
    {
        Ok(_) => Ok(empty()),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /services/{id}/logs`.
pub async fn logs(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let service = get(state.0.backend(), &id).await?;
    let selector = proto::LogSelector {
        service_ids: vec![service.meta.map(|m| m.id).unwrap_or_default()],
        ..Default::default()
    };
    super::logs::stream(
        state.0.backend(),
        selector,
        &query,
        super::logs::Source::Cluster,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_registry_auth_is_no_registry_auth() {
        let mut headers = HeaderMap::new();
        assert_eq!(registry_auth(&headers), None);
        headers.insert("X-Registry-Auth", "e30=".parse().unwrap());
        assert_eq!(registry_auth(&headers), None);
        let auth = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"username":"u","password":"p","serveraddress":"r"}"#);
        headers.insert("X-Registry-Auth", auth.parse().unwrap());
        assert_eq!(registry_auth(&headers), Some(auth));
    }
}
