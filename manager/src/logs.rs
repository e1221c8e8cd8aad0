//! `service logs` across nodes: a manager finds where the selected tasks run and asks each
//! of those nodes for its part, then merges the streams.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use proto::logs_client::LogsClient;
use proto::{LogSelector, SubscribeLogsRequest, SubscribeLogsResponse, Task};
use tonic::Status;

use crate::manager::Manager;

/// Metadata asking a node for the logs of its own tasks (sent by managers only).
pub const NODE_LOGS: &str = "x-skiff-node-logs";

/// The merged log stream of a subscription.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<SubscribeLogsResponse, Status>> + Send>>;

/// Resolves the selector to tasks, and streams their logs from the nodes that run them.
pub async fn subscribe(
    manager: Arc<Manager>,
    request: SubscribeLogsRequest,
) -> Result<LogStream, Status> {
    let selector = request.selector.clone().unwrap_or_default();
    if selector.service_ids.is_empty()
        && selector.task_ids.is_empty()
        && selector.node_ids.is_empty()
    {
        return Err(Status::invalid_argument(
            "select a service or a task to show the logs of",
        ));
    }
    let by_node: HashMap<String, (String, Vec<String>)> = manager
        .store()
        .read_latest(|store| {
            let mut by_node: HashMap<String, (String, Vec<String>)> = HashMap::new();
            for task in store.list::<Task>().filter(|t| selected(t, &selector)) {
                let Some(node) = store.get::<proto::Node>(&task.node_id) else {
                    continue;
                };
                let addr = node
                    .status
                    .as_ref()
                    .map(|s| s.addr.clone())
                    .unwrap_or_default();
                if addr.is_empty() {
                    continue;
                }
                by_node
                    .entry(task.node_id.clone())
                    .or_insert_with(|| (addr, Vec::new()))
                    .1
                    .push(task.id().to_owned());
            }
            by_node
        })
        .await?;
    let mut streams = Vec::new();
    for (node_id, (addr, task_ids)) in by_node {
        let mut req = tonic::Request::new(SubscribeLogsRequest {
            selector: Some(LogSelector {
                task_ids,
                ..Default::default()
            }),
            follow: request.follow,
            tail: request.tail,
        });
        req.metadata_mut()
            .insert(NODE_LOGS, "1".parse().expect("ascii"));
        match LogsClient::new(manager.node_channel(&addr, &node_id))
            .subscribe_logs(req)
            .await
        {
            Ok(stream) => streams.push(stream.into_inner().boxed()),
            Err(e) => {
                // One unreachable node must not hide the others' logs.
                tracing::debug!(node = %node_id, error = %e.message(), "cannot get logs from a node");
                let message = format!(
                    "logs of node {} are unavailable: {}",
                    proto::id::short(&node_id),
                    e.message()
                );
                streams.push(
                    futures::stream::once(async move { Err(Status::unavailable(message)) }).boxed(),
                );
            }
        }
    }
    Ok(futures::stream::select_all(streams).boxed())
}

fn selected(task: &Task, selector: &LogSelector) -> bool {
    !task.node_id.is_empty()
        && (selector.service_ids.contains(&task.service_id)
            || selector.task_ids.iter().any(|t| t == task.id())
            || selector.node_ids.contains(&task.node_id))
}
