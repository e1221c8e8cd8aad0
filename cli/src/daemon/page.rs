//! The live cluster page on the metrics address (`/`): one column per node (hostname,
//! role, leader, status, availability) with the tasks it runs (service, slot, state,
//! image), coloured by state, redrawn every second from `/api/cluster`. Plain HTML, CSS and
//! JavaScript in `page/`, built into the binary: no JavaScript toolchain.
//!
//! Security: read-only, to whoever reaches `--metrics-addr`, like the metrics. The JSON
//! holds names, images and states only: never an environment value, a secret's or
//! config's data, a label, a token or a key. The script sets every value as text, and the
//! page's Content-Security-Policy allows scripts, styles and fetches from this server only,
//! so a hostile service name cannot run as code in the reader's browser. A worker has no
//! cluster state: its `/api/cluster` answers 503 and says to open a manager's page.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use manager::RunningManager;
use proto::{Node, Service, Task, TaskState};
use serde::Serialize;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");

/// Scripts, styles and fetches from this server only; nothing framed, nothing posted.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes, over the manager `running` holds.
pub fn routes(running: Arc<RunningManager>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/page.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/api/cluster",
            get(move || {
                let running = running.clone();
                async move { cluster(&running) }
            }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The cluster as the page shows it.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    nodes: Vec<NodeView>,
    /// Tasks not placed on a node yet (or that no node can take).
    unassigned: Vec<TaskView>,
}

#[derive(Debug, Serialize)]
struct NodeView {
    id: String,
    hostname: String,
    role: String,
    leader: bool,
    status: String,
    availability: String,
    tasks: Vec<TaskView>,
}

#[derive(Debug, Serialize)]
struct TaskView {
    id: String,
    /// `service.slot`, or `service.nodeID` for a global service's task.
    name: String,
    service: String,
    slot: u64,
    state: String,
    image: String,
}

fn cluster(running: &RunningManager) -> Response {
    let Some(manager) = running.current() else {
        let message = "this node is not a manager and has no view of the cluster: open the page on a manager's --metrics-addr";
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "message": message }),
        );
    };
    let leader = manager.store().leader_raft_id();
    let view = view(&manager.store().read(), leader);
    json(StatusCode::OK, &view)
}

/// `value` as a JSON answer that no cache keeps.
fn json(status: StatusCode, value: &impl Serialize) -> Response {
    // Plain structs of strings and numbers always encode.
    let body = serde_json::to_string(value).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A lowercase word for an enum's name: `NODE_STATE_READY` -> `ready`.
fn word(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// What the page shows of `store`: every node, and each task meant to run.
pub fn view(store: &manager::store::ObjectStore, leader_raft_id: Option<u64>) -> ClusterView {
    let services: BTreeMap<&str, &Service> = store
        .list::<Service>()
        .map(|s| (s.meta.as_ref().map_or("", |m| m.id.as_str()), s))
        .collect();
    let mut by_node: BTreeMap<String, Vec<TaskView>> = BTreeMap::new();
    for task in store
        .list::<Task>()
        .filter(|t| t.desired_state <= TaskState::Running as i32)
    {
        by_node
            .entry(task.node_id.clone())
            .or_default()
            .push(task_view(task, &services));
    }
    for tasks in by_node.values_mut() {
        tasks.sort_by(|a, b| (&a.service, a.slot, &a.name).cmp(&(&b.service, b.slot, &b.name)));
    }
    let mut nodes: Vec<NodeView> = store
        .list::<Node>()
        .map(|n| {
            let id = n.meta.as_ref().map_or(String::new(), |m| m.id.clone());
            let spec = n.spec.clone().unwrap_or_default();
            NodeView {
                tasks: by_node.remove(&id).unwrap_or_default(),
                id,
                hostname: n
                    .description
                    .as_ref()
                    .map_or(String::new(), |d| d.hostname.clone()),
                role: word(
                    proto::NodeRole::try_from(n.role)
                        .unwrap_or_default()
                        .as_str_name(),
                    "NODE_ROLE_",
                ),
                leader: n
                    .manager_status
                    .as_ref()
                    .is_some_and(|m| Some(m.raft_id) == leader_raft_id),
                status: word(
                    proto::NodeState::try_from(n.status.as_ref().map_or(0, |s| s.state))
                        .unwrap_or_default()
                        .as_str_name(),
                    "NODE_STATE_",
                ),
                availability: word(
                    proto::NodeAvailability::try_from(spec.availability)
                        .unwrap_or_default()
                        .as_str_name(),
                    "NODE_AVAILABILITY_",
                ),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    ClusterView {
        nodes,
        unassigned: by_node.into_values().flatten().collect(),
    }
}

fn task_view(task: &Task, services: &BTreeMap<&str, &Service>) -> TaskView {
    let service = services
        .get(task.service_id.as_str())
        .and_then(|s| s.spec.as_ref())
        .map_or_else(|| task.service_name.clone(), |s| s.name.clone());
    let state =
        TaskState::try_from(task.status.as_ref().map_or(0, |s| s.state)).unwrap_or_default();
    TaskView {
        id: task.meta.as_ref().map_or(String::new(), |m| m.id.clone()),
        name: if task.slot != 0 {
            format!("{service}.{}", task.slot)
        } else {
            format!("{service}.{}", task.node_id)
        },
        service,
        slot: task.slot,
        state: word(state.as_str_name(), "TASK_STATE_"),
        image: task
            .spec
            .as_ref()
            .and_then(|s| s.container.as_ref())
            .map_or(String::new(), |c| c.image.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_outside_a_cluster_says_where_the_page_is() {
        let response = cluster(&RunningManager::default());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn the_page_only_runs_its_own_script_and_styles() {
        let response = asset("text/html; charset=utf-8", INDEX);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        // Values reach the page as text only.
        assert!(!SCRIPT.contains("innerHTML") && SCRIPT.contains("textContent"));
    }
}
