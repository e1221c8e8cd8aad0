//! The logs of this node's tasks, for a manager's `service logs`.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use proto::{LogContext, LogMessage, SubscribeLogsResponse};

use crate::agent::Agent;

/// Streams the logs of the given tasks that run (or ran) here, each line with its context.
/// Tasks this node does not know are skipped: the manager asked every node it thought
/// relevant.
pub async fn local(
    agent: &Arc<Agent>,
    node_id: &str,
    task_ids: &[String],
    tail: Option<usize>,
    follow: bool,
) -> impl Stream<Item = SubscribeLogsResponse> + Send + 'static {
    let mut streams = Vec::new();
    for task_id in task_ids {
        let Some(service_id) = agent.service_of(task_id) else {
            continue;
        };
        let Ok(lines) = agent.runtime().logs(task_id, tail, follow).await else {
            continue;
        };
        let context = LogContext {
            service_id,
            node_id: node_id.to_owned(),
            task_id: task_id.clone(),
        };
        streams.push(
            lines
                .map(move |line| SubscribeLogsResponse {
                    messages: vec![LogMessage {
                        context: Some(context.clone()),
                        timestamp: line.timestamp_ms,
                        stream: proto::LogStream::from(line.stream) as i32,
                        data: line.data,
                    }],
                })
                .boxed(),
        );
    }
    futures::stream::select_all(streams)
}
