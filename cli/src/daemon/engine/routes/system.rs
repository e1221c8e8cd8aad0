//! `/_ping`, `/version` and `/info`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use proto::LocalNodeState;

use super::{ok, State};
use crate::daemon::engine::error::ApiResult;
use crate::daemon::engine::types::node::role_name;
use crate::daemon::engine::types::swarm::Swarm;
use crate::daemon::engine::types::system::{arch, Info, Peer, SwarmInfo, Version};

/// Docker's name of a node's swarm state.
fn state_name(state: i32) -> &'static str {
    match LocalNodeState::try_from(state) {
        Ok(LocalNodeState::Active) => "active",
        Ok(LocalNodeState::Pending) => "pending",
        Ok(LocalNodeState::Error) => "error",
        Ok(LocalNodeState::Locked) => "locked",
        _ => "inactive",
    }
}

/// `GET|HEAD /_ping`: "OK", with the headers a client negotiates from (the `Swarm` header
/// says `inactive`, `pending`, `error`, `locked`, `active/manager` or `active/worker`).
pub async fn ping(state: State) -> Response {
    let swarm = match state.0.backend().info().await {
        Ok(info) if info.state == LocalNodeState::Active as i32 => {
            format!("active/{}", role_name(info.role))
        }
        Ok(info) => state_name(info.state).to_string(),
        Err(_) => "error".to_string(),
    };
    let mut response = (StatusCode::OK, "OK").into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&swarm) {
        headers.insert("Swarm", v);
    }
    response
}

/// `GET /version`.
pub async fn version() -> ApiResult<Response> {
    ok(&Version::current())
}

/// `GET /info`: the host, and the swarm section (with the cluster on managers).
pub async fn info(state: State) -> ApiResult<Response> {
    let backend = state.0.backend();
    let local = backend.info().await?;
    let manager = local.state == LocalNodeState::Active as i32
        && local.role == proto::NodeRole::Manager as i32;
    let mut swarm = SwarmInfo {
        node_id: local.node_id.clone(),
        node_addr: local
            .advertise_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| local.advertise_addr.clone()),
        local_node_state: state_name(local.state).into(),
        control_available: manager,
        error: local.error.clone(),
        remote_managers: local
            .managers
            .iter()
            .map(|addr| Peer {
                node_id: String::new(),
                addr: addr.clone(),
            })
            .collect(),
        ..Default::default()
    };
    if manager {
        let mut control = backend.control().await?;
        if let Ok(cluster) = control.get_cluster(proto::GetClusterRequest {}).await {
            if let Some(cluster) = cluster.into_inner().cluster {
                let mut value =
                    serde_json::to_value(Swarm::from_proto(&cluster)).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.remove("JoinTokens");
                }
                swarm.cluster = Some(value);
            }
        }
        if let Ok(nodes) = control.list_nodes(proto::ListNodesRequest::default()).await {
            let nodes = nodes.into_inner().nodes;
            swarm.nodes = nodes.len() as u64;
            swarm.managers = nodes.iter().filter(|n| n.manager_status.is_some()).count() as u64;
            swarm.remote_managers = nodes
                .iter()
                .filter_map(|n| {
                    n.manager_status.as_ref().map(|m| Peer {
                        node_id: n.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
                        addr: m.addr.clone(),
                    })
                })
                .collect();
        }
    }
    let host = Version::current();
    let info = Info {
        id: local.node_id.clone(),
        // The node's name as the swarm knows it (`skiffd --hostname`), else the host's.
        name: backend
            .local_tasks()
            .await
            .ok()
            .map(|l| l.hostname)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(hostname),
        server_version: local.version.clone(),
        os_type: "linux".into(),
        operating_system: os_name(),
        architecture: arch().into(),
        kernel_version: host.kernel_version,
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        mem_total: mem_total(),
        default_runtime: "skiff".into(),
        containers: u64::from(local.tasks),
        docker_root_dir: String::new(),
        swarm,
    };
    ok(&info)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
