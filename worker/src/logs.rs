//! The logs of this node's tasks, for a manager's `service logs`.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use proto::{LogContext, LogMessage, SubscribeLogsResponse};

use crate::agent::Agent;

/// Streams the logs of the given tasks that run (or ran) here, each line with its context.
/// Tasks this node does not know are skipped: the manager asked every node it thought
/// relevant. When none of them can be read because their logging driver keeps nothing to
/// read (syslog, none), says so instead of answering with nothing.
pub async fn local(
    agent: &Arc<Agent>,
    node_id: &str,
    task_ids: &[String],
    tail: Option<usize>,
    follow: bool,
) -> Result<impl Stream<Item = SubscribeLogsResponse> + Send + 'static, String> {
    let mut streams = Vec::new();
    let mut unreadable = None;
    for task_id in task_ids {
        let Some(service_id) = agent.service_of(task_id) else {
            continue;
        };
        let lines = match agent.runtime().logs(task_id, tail, follow).await {
            Ok(lines) => lines,
            Err(e @ agent_runtime::RuntimeError::InvalidSpec(_)) => {
                unreadable = Some(e.to_string());
                continue;
            }
            Err(_) => continue,
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
    match unreadable {
        Some(why) if streams.is_empty() => Err(why),
        _ => Ok(futures::stream::select_all(streams)),
    }
}
