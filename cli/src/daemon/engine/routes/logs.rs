//! Task logs as Docker streams them: the multiplexed stream (an 8-byte header per frame:
//! the stream, 1 stdout or 2 stderr, then the length), one frame per line, each line
//! prefixed with its time (`timestamps`) and with the `details` the `docker` CLI reads its
//! context from (`com.docker.swarm.node.id=...,com.docker.swarm.service.id=...,
//! com.docker.swarm.task.id=...`).

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use crate::daemon::engine::backend::Backend;
use crate::daemon::engine::decode::Query;
use crate::daemon::engine::error::{ApiError, ApiResult};

/// What a request asked of the stream.
#[derive(Debug, Clone, Copy)]
struct Options {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    details: bool,
}

/// Where the logs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cluster: the manager gathers them from the nodes that run the tasks.
    Cluster,
    /// This node's own tasks only (`docker logs`; workers too).
    ThisNode,
}

/// Streams the logs `selector` picks, as `query` asks (`follow`, `tail`, `timestamps`,
/// `details`, `stdout`, `stderr`).
pub async fn stream(
    backend: &Backend,
    selector: proto::LogSelector,
    query: &Query,
    source: Source,
) -> ApiResult<Response> {
    let options = Options {
        stdout: query.bool("stdout"),
        stderr: query.bool("stderr"),
        timestamps: query.bool("timestamps"),
        details: query.bool("details"),
    };
    if !options.stdout && !options.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    for unsupported in ["since", "until"] {
        if query
            .get(unsupported)
            .is_some_and(|v| !v.is_empty() && v != "0")
        {
            return Err(ApiError::bad_request(format!(
                "{unsupported} is not supported by skiff's logs; use tail instead"
            )));
        }
    }
    let tail = match query.get("tail").unwrap_or("all") {
        "" | "all" => -1,
        n => n.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid tail \"{n}\": give a number of lines or all"
            ))
        })?,
    };
    let mut request = tonic::Request::new(proto::SubscribeLogsRequest {
        selector: Some(selector),
        follow: query.bool("follow"),
        tail,
    });
    if source == Source::ThisNode {
        request
            .metadata_mut()
            .insert(manager::logs::NODE_LOGS, "1".parse().expect("ascii"));
    }
    let stream = match backend.logs().await?.subscribe_logs(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    let frames = stream
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let out = item.ok().map(|batch| {
                let mut bytes = Vec::new();
                for message in &batch.messages {
                    frames(message, options, &mut bytes);
                }
                Ok::<_, std::io::Error>(Bytes::from(bytes))
            });
            std::future::ready(out)
        });
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )],
        Body::from_stream(frames),
    )
        .into_response())
}

/// Appends the frames of one message (one per line) to `out`.
fn frames(message: &proto::LogMessage, options: Options, out: &mut Vec<u8>) {
    let stderr = message.stream == proto::LogStream::Stderr as i32;
    if (stderr && !options.stderr) || (!stderr && !options.stdout) {
        return;
    }
    let context = message.context.clone().unwrap_or_default();
    let data = message.data.strip_suffix(b"\n").unwrap_or(&message.data);
    for line in data.split(|b| *b == b'\n') {
        let mut payload = Vec::with_capacity(line.len() + 160);
        if options.timestamps {
            payload.extend_from_slice(timestamp(message.timestamp).as_bytes());
            payload.push(b' ');
        }
        if options.details {
            let details = format!(
                "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
                escape(&context.node_id),
                escape(&context.service_id),
                escape(&context.task_id)
            );
            payload.extend_from_slice(details.as_bytes());
            payload.push(b' ');
        }
        payload.extend_from_slice(line);
        payload.push(b'\n');
        out.push(if stderr { 2 } else { 1 });
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
}

/// Go's `url.QueryEscape`, which the CLI undoes on each detail.
fn escape(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// RFC 3339 with nanoseconds, as Docker writes log times.
fn timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(stream: proto::LogStream, data: &[u8]) -> proto::LogMessage {
        proto::LogMessage {
            context: Some(proto::LogContext {
                service_id: "s1".into(),
                node_id: "n1".into(),
                task_id: "t1".into(),
            }),
            timestamp: 1_700_000_000_123,
            stream: stream as i32,
            data: data.to_vec(),
        }
    }

    /// Splits a multiplexed stream into (stream, payload) frames.
    fn split(mut bytes: &[u8]) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        while bytes.len() >= 8 {
            let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            out.push((
                bytes[0],
                String::from_utf8_lossy(&bytes[8..8 + len]).into_owned(),
            ));
            bytes = &bytes[8 + len..];
        }
        out
    }

    #[test]
    fn each_line_is_a_frame_with_the_details_the_cli_reads() {
        let options = Options {
            stdout: true,
            stderr: true,
            timestamps: true,
            details: true,
        };
        let mut out = Vec::new();
        frames(
            &message(proto::LogStream::Stdout, b"one\ntwo\n"),
            options,
            &mut out,
        );
        frames(
            &message(proto::LogStream::Stderr, b"oops"),
            options,
            &mut out,
        );
        let got = split(&out);
        let details = "com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1";
        assert_eq!(
            got,
            vec![
                (1, format!("2023-11-14T22:13:20.123000000Z {details} one\n")),
                (1, format!("2023-11-14T22:13:20.123000000Z {details} two\n")),
                (
                    2,
                    format!("2023-11-14T22:13:20.123000000Z {details} oops\n")
                ),
            ]
        );
    }

    #[test]
    fn streams_not_asked_for_are_left_out() {
        let options = Options {
            stdout: true,
            stderr: false,
            timestamps: false,
            details: false,
        };
        let mut out = Vec::new();
        frames(
            &message(proto::LogStream::Stderr, b"err"),
            options,
            &mut out,
        );
        frames(
            &message(proto::LogStream::Stdout, b"out"),
            options,
            &mut out,
        );
        assert_eq!(split(&out), vec![(1, "out\n".to_string())]);
    }
}
