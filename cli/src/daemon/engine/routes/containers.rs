//! `/containers`: the node's own task containers, read-only, as `docker ps`, `docker
//! inspect` and `docker logs` on a node see them (on workers too). Every other container
//! verb answers 501 pointing to services: on a swarm node, containers are tasks.

use axum::extract::{Path, RawQuery};
use axum::response::Response;

use super::{ok, State};
use crate::daemon::engine::decode::Query;
use crate::daemon::engine::error::{ApiError, ApiResult};
use crate::daemon::engine::types::container::{self, Summary};

/// What every container verb but list, inspect and logs answers.
pub const NOT_IMPLEMENTED: &str = "skiff runs containers only as tasks of services: use `docker service create`, `service update`, `service scale` and `service rm` instead";

/// The node's task whose container `reference` names: container ID or task ID (or a
/// prefix of either), or its name (with or without the leading `/`).
async fn find(state: &State, reference: &str) -> ApiResult<proto::Task> {
    let local = state.0.backend().local_tasks().await?;
    let reference = reference.trim_start_matches('/');
    let matches: Vec<proto::Task> = local
        .tasks
        .into_iter()
        .filter(|t| {
            let task_id = t.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("");
            container::name(t) == reference
                || (!reference.is_empty()
                    && (container::id(t).starts_with(reference) || task_id.starts_with(reference)))
        })
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        0 => Err(ApiError::not_found(format!(
            "No such container: {reference}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{reference} names more than one container on this node; give more of its ID"
        ))),
    }
}

/// `GET /containers/json?all=&filters=`: running ones unless `all`; filters `id`, `name`,
/// `label`, `status`.
pub async fn list(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let filters = query.filters()?;
    filters.allow_only(&["id", "label", "name", "status"])?;
    let all = query.bool("all");
    let local = state.0.backend().local_tasks().await?;
    let now = proto::now_ms();
    let mut out: Vec<Summary> = local
        .tasks
        .iter()
        .map(|t| Summary::from_task(t, now))
        .filter(|c| {
            (all || c.state == "running" || !filters.values("status").is_empty())
                && filters.matches("id", |v| c.id.starts_with(v))
                && filters.matches("name", |v| c.names.iter().any(|n| n.contains(v)))
                && filters.matches("status", |v| c.state == v)
                && filters.labels_match("label", &c.labels)
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.created));
    ok(&out)
}

/// `GET /containers/{id}/json`.
pub async fn inspect(state: State, Path(id): Path<String>) -> ApiResult<Response> {
    let task = find(&state, &id).await?;
    ok(&container::detail(&task))
}

/// `GET /containers/{id}/logs`: from this node, as `docker logs` reads them.
pub async fn logs(
    state: State,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let task = find(&state, &id).await?;
    let selector = proto::LogSelector {
        task_ids: vec![task.meta.map(|m| m.id).unwrap_or_default()],
        ..Default::default()
    };
    super::logs::stream(
        state.0.backend(),
        selector,
        &query,
        super::logs::Source::ThisNode,
    )
    .await
}
