//! `/tasks`: list (with Docker's filters, `_up-to-date` among them), inspect, and logs.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery};
use axum::response::Response;

use super::{ok, State};
use crate::daemon::engine::decode::Query;
use crate::daemon::engine::error::{ApiError, ApiResult};
use crate::daemon::engine::types::task::{state_from_name, Task};

/// `GET /tasks?filters=`: `service` and `node` (ID, prefix or name), `desired-state`,
/// `id` (prefix), `name` (`SERVICE.SLOT` prefix), `label` (the service's, as swarmkit
/// matches it), and `_up-to-date` (tasks of the
/// service's current spec, which `docker service create`'s progress reads).
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let filters = Query::parse(query.as_deref()).filters()?;
    filters.allow_only(&[
        "desired-state",
        "id",
        "label",
        "name",
        "node",
        "service",
        "_up-to-date",
    ])?;
    let backend = state.0.backend();
    let mut control = backend.control().await?;
    let mut service_ids = Vec::new();
    for reference in filters.values("service") {
        match control
            .get_service(proto::GetServiceRequest {
                service: reference.clone(),
            })
            .await
        {
            Ok(r) => service_ids.extend(r.into_inner().service.and_then(|s| s.meta).map(|m| m.id)),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(backend.control_error(s).await),
        }
    }
    let mut node_ids = Vec::new();
    for reference in filters.values("node") {
        match control
            .get_node(proto::GetNodeRequest {
                node: reference.clone(),
            })
            .await
        {
            Ok(r) => node_ids.extend(r.into_inner().node.and_then(|n| n.meta).map(|m| m.id)),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(backend.control_error(s).await),
        }
    }
    // A filter naming nothing that exists matches no task.
    if (!filters.values("service").is_empty() && service_ids.is_empty())
        || (!filters.values("node").is_empty() && node_ids.is_empty())
    {
        return ok(&Vec::<Task>::new());
    }
    let mut desired = Vec::new();
    for name in filters.values("desired-state") {
        let state = state_from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid desired-state filter \"{name}\": use running, shutdown or accepted"
            ))
        })?;
        desired.push(state as i32);
    }
    let tasks = match control
        .list_tasks(proto::ListTasksRequest {
            service_ids,
            node_ids,
            desired_states: desired,
        })
        .await
    {
        Ok(r) => r.into_inner().tasks,
        Err(s) => return Err(backend.control_error(s).await),
    };
    let up_to_date = !filters.values("_up-to-date").is_empty();
    // Both need the tasks' services: their current spec version, and their labels (a
    // task's `label` filter matches its service's labels, as swarmkit's).
    let mut services: HashMap<String, proto::Service> = HashMap::new();
    if up_to_date || !filters.values("label").is_empty() {
        match control
            .list_services(proto::ListServicesRequest::default())
            .await
        {
            Ok(r) => {
                for s in r.into_inner().services {
                    if let Some(m) = &s.meta {
                        services.insert(m.id.clone(), s.clone());
                    }
                }
            }
            Err(s) => return Err(backend.control_error(s).await),
        }
    }
    let no_labels = HashMap::new();
    let out: Vec<Task> = tasks
        .iter()
        .filter(|t| {
            let id = t.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("");
            let name = format!("{}.{}", t.service_name, t.slot);
            let service = services.get(&t.service_id);
            let labels = service
                .and_then(|s| s.spec.as_ref())
                .map_or(&no_labels, |s| &s.labels);
            filters.matches("id", |v| id.starts_with(v))
                && filters.matches("name", |v| name.starts_with(v))
                && filters.labels_match("label", labels)
                && (!up_to_date || service.map(|s| s.spec_version) == Some(t.spec_version))
        })
        .map(Task::from_proto)
        .collect();
    ok(&out)
}

/// `GET /tasks/{id}`.
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let backend = state.0.backend();
    match backend
        .control()
        .await?
        .get_task(proto::GetTaskRequest { task: id })
        .await
    {
        Ok(r) => ok(&Task::from_proto(&r.into_inner().task.unwrap_or_default())),
        Err(s) => Err(backend.control_error(s).await),
    }
}

/// `GET /tasks/{id}/logs`.
pub async fn logs(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let backend = state.0.backend();
    let task = match backend
        .control()
        .await?
        .get_task(proto::GetTaskRequest { task: id })
        .await
    {
        Ok(r) => r.into_inner().task.unwrap_or_default(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    let selector = proto::LogSelector {
        task_ids: vec![task.meta.map(|m| m.id).unwrap_or_default()],
        ..Default::default()
    };
    super::logs::stream(backend, selector, &query, super::logs::Source::Cluster).await
}
