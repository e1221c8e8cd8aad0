//! `skiff service logs`: the logs of a service's tasks (or of one task), each line prefixed
//! as Docker does: `web.1.abcdef123456@host1    | line`.

use std::collections::HashMap;
use std::io::Write as _;

use anyhow::{anyhow, bail};
use clap::Args;
use proto::logs_client::LogsClient;
use proto::{
    GetServiceRequest, GetTaskRequest, ListNodesRequest, ListTasksRequest, LogMessage, LogSelector,
    LogStream, SubscribeLogsRequest, Task,
};

use super::render::short_id;
use crate::client::format::log_time;
use crate::client::{Client, GlobalOpts, Reply as _};

/// `skiff service logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they come
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show from the end of each task's log, or all
    #[arg(short = 'n', long, value_name = "N|all", allow_negative_numbers = true)]
    pub tail: Option<String>,
    /// Show when each line was written
    #[arg(short, long)]
    pub timestamps: bool,
    /// Leave the task IDs out of the prefix
    #[arg(long)]
    pub no_task_ids: bool,
    /// Show full task IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Show service and node IDs instead of names
    #[arg(long)]
    pub no_resolve: bool,
    /// Print the lines only, without the prefix
    #[arg(long)]
    pub raw: bool,
    /// Only lines written since then: a time (2026-01-02T15:04:05Z, Unix seconds) or a
    /// duration before now (10m, 1h30m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only lines written before then: a time or a duration before now, as --since
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show the extra attributes of each line (skiff's logs carry none, so the lines are
    /// as without it; accepted for Docker's scripts)
    #[arg(long)]
    pub details: bool,
    /// Service (ID, ID prefix or name) or task ID
    #[arg(value_name = "SERVICE|TASK")]
    pub target: String,
}

/// Parses `--tail`: a number of lines, or `all` (-1).
pub fn parse_tail(value: Option<&str>) -> anyhow::Result<i64> {
    match value.map(str::trim) {
        None | Some("all") => Ok(-1),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<i64>()
            .map_err(|_| anyhow!("invalid value \"{v}\" for --tail: the number is too large")),
        Some(v) => bail!("invalid value \"{v}\" for --tail: use a number of lines or all"),
    }
}

/// Parses a `--since`/`--until` value into Unix milliseconds: an RFC 3339 time
/// (`2026-01-02T15:04:05Z`, the zone optional, meaning UTC), Unix seconds (`1767366245`,
/// with an optional fraction), or a duration before `now_ms` (`10m`, `1h30m`), as Docker
/// takes them.
pub fn parse_time(flag: &str, value: &str, now_ms: i64) -> anyhow::Result<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok((secs * 1000.0) as i64);
        }
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(v) {
        if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
            return Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        }
    }
    if let Ok(ms) = crate::client::duration::parse_flag_ms(flag, v) {
        return Ok(now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)));
    }
    bail!("invalid time \"{value}\" for {flag}: use a time such as 2026-01-02T15:04:05Z, Unix seconds, or a duration before now such as 10m")
}

/// How a task's lines are prefixed.
#[derive(Debug, Clone, Copy)]
pub struct PrefixOpts {
    pub task_ids: bool,
    pub no_trunc: bool,
    pub resolve: bool,
}

/// The context of a task's lines: `service.slot.taskid@host` (`service.node` for global).
pub fn context(task: &Task, hostname: Option<&str>, opts: PrefixOpts) -> String {
    let service = if opts.resolve && !task.service_name.is_empty() {
        task.service_name.clone()
    } else {
        task.service_id.clone()
    };
    let mut name = if task.slot != 0 {
        format!("{service}.{}", task.slot)
    } else if opts.no_trunc {
        format!("{service}.{}", task.node_id)
    } else {
        format!("{service}.{}", short_id(&task.node_id))
    };
    if opts.task_ids {
        let id = task.id();
        name.push('.');
        name.push_str(if opts.no_trunc { id } else { short_id(id) });
    }
    let node = match hostname {
        Some(h) if opts.resolve && !h.is_empty() => h.to_string(),
        _ => task.node_id.clone(),
    };
    format!("{name}@{node}")
}

/// The output lines of one log message: each line of its data, prefixed.
pub fn format_message(
    msg: &LogMessage,
    ctx: Option<&str>,
    width: usize,
    timestamps: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let data = msg.data.strip_suffix(b"\n").unwrap_or(&msg.data);
    for line in data.split(|b| *b == b'\n') {
        if timestamps {
            out.extend_from_slice(log_time(msg.timestamp).as_bytes());
            out.push(b' ');
        }
        if let Some(ctx) = ctx {
            let pad = width.saturating_sub(ctx.chars().count()) + 4;
            out.extend_from_slice(ctx.as_bytes());
            out.extend(std::iter::repeat_n(b' ', pad));
            out.extend_from_slice(b"| ");
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// What is known of tasks and nodes, to prefix lines.
struct Contexts {
    tasks: HashMap<String, Task>,
    hosts: HashMap<String, String>,
    opts: PrefixOpts,
    width: usize,
}

impl Contexts {
    async fn of(&mut self, client: &Client, msg: &LogMessage) -> String {
        let ctx = msg.context.clone().unwrap_or_default();
        if !self.tasks.contains_key(&ctx.task_id) {
            let fetched = client
                .control()
                .get_task(GetTaskRequest {
                    task: ctx.task_id.clone(),
                })
                .await
                .ok()
                .and_then(|r| r.into_inner().task);
            let task = fetched.unwrap_or_else(|| Task {
                meta: Some(proto::Meta {
                    id: ctx.task_id.clone(),
                    ..Default::default()
                }),
                service_id: ctx.service_id.clone(),
                node_id: ctx.node_id.clone(),
                ..Default::default()
            });
            self.tasks.insert(ctx.task_id.clone(), task);
        }
        let task = &self.tasks[&ctx.task_id];
        let text = context(
            task,
            self.hosts.get(&task.node_id).map(String::as_str),
            self.opts,
        );
        self.width = self.width.max(text.chars().count());
        text
    }
}

/// Runs `skiff service logs`.
pub async fn logs(global: &GlobalOpts, args: LogsArgs) -> anyhow::Result<()> {
    let tail = parse_tail(args.tail.as_deref())?;
    let now = proto::now_ms();
    let since = args
        .since
        .as_deref()
        .map(|v| parse_time("--since", v, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|v| parse_time("--until", v, now))
        .transpose()?;
    let client = global.connect().await?;
    let mut control = client.control();

    // SERVICE or TASK?
    let (selector, tasks) = match control
        .get_service(GetServiceRequest {
            service: args.target.clone(),
        })
        .await
    {
        Ok(r) => {
            let service = r.into_inner().service.ok_or_else(|| {
                anyhow!("the daemon answered without service {}; retry", args.target)
            })?;
            let id = service.meta.map(|m| m.id).unwrap_or_default();
            let tasks = control
                .list_tasks(ListTasksRequest {
                    service_ids: vec![id.clone()],
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().tasks)
                .unwrap_or_default();
            (
                LogSelector {
                    service_ids: vec![id],
                    ..Default::default()
                },
                tasks,
            )
        }
        Err(s) if s.code() == tonic::Code::NotFound => {
            match control
                .get_task(GetTaskRequest {
                    task: args.target.clone(),
                })
                .await
            {
                Ok(r) => {
                    let task = r.into_inner().task.ok_or_else(|| {
                        anyhow!("the daemon answered without task {}; retry", args.target)
                    })?;
                    (
                        LogSelector {
                            task_ids: vec![task.id().to_string()],
                            ..Default::default()
                        },
                        vec![task],
                    )
                }
                Err(s) if s.code() == tonic::Code::NotFound => bail!(
                    "no such service or task: {}; see `skiff service ls` and `skiff service ps SERVICE`",
                    args.target
                ),
                Err(s) => return Err(client.error(s)),
            }
        }
        Err(s) => return Err(client.error(s)),
    };

    let opts = PrefixOpts {
        task_ids: !args.no_task_ids,
        no_trunc: args.no_trunc,
        resolve: !args.no_resolve,
    };
    let hosts: HashMap<String, String> = if opts.resolve && !args.raw {
        control
            .list_nodes(ListNodesRequest::default())
            .await
            .map(|r| r.into_inner().nodes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                let id = n.meta?.id;
                Some((id, n.description?.hostname))
            })
            .collect()
    } else {
        HashMap::new()
    };
    let mut contexts = Contexts {
        width: tasks
            .iter()
            .map(|t| {
                context(t, hosts.get(&t.node_id).map(String::as_str), opts)
                    .chars()
                    .count()
            })
            .max()
            .unwrap_or(0),
        tasks: tasks.into_iter().map(|t| (t.id().to_string(), t)).collect(),
        hosts,
        opts,
    };

    let mut logs =
        LogsClient::new(client.channel.clone()).max_decoding_message_size(proto::MAX_MESSAGE_BYTES);
    let mut stream = logs
        .subscribe_logs(SubscribeLogsRequest {
            selector: Some(selector),
            follow: args.follow,
            tail,
        })
        .await
        .reply(&client)?;
    while let Some(batch) = stream.message().await.map_err(|s| client.error(s))? {
        for msg in &batch.messages {
            if since.is_some_and(|t| msg.timestamp < t) {
                continue;
            }
            if until.is_some_and(|t| msg.timestamp >= t) {
                if args.follow {
                    // Nothing later can be before it.
                    return Ok(());
                }
                continue;
            }
            let ctx = if args.raw {
                None
            } else {
                Some(contexts.of(&client, msg).await)
            };
            let bytes = format_message(msg, ctx.as_deref(), contexts.width, args.timestamps);
            let result = if msg.stream() == LogStream::Stderr {
                let mut e = std::io::stderr().lock();
                e.write_all(&bytes).and_then(|_| e.flush())
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(&bytes).and_then(|_| o.flush())
            };
            if let Err(e) = result {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(0);
                }
                return Err(anyhow!("cannot write the logs: {e}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;
    use proto::{LogContext, Meta};

    fn task(slot: u64) -> Task {
        Task {
            meta: Some(Meta {
                id: "abcdef1234567890abcdefghi".into(),
                ..Default::default()
            }),
            service_id: "svcid".into(),
            service_name: "web".into(),
            slot,
            node_id: "nodeid1234567890nodeid123".into(),
            ..Default::default()
        }
    }

    const OPTS: PrefixOpts = PrefixOpts {
        task_ids: true,
        no_trunc: false,
        resolve: true,
    };

    #[test]
    fn prefixes() {
        assert_eq!(
            context(&task(1), Some("host1"), OPTS),
            "web.1.abcdef123456@host1"
        );
        assert_eq!(
            context(&task(1), None, OPTS),
            "web.1.abcdef123456@nodeid1234567890nodeid123"
        );
        let o = PrefixOpts {
            task_ids: false,
            ..OPTS
        };
        assert_eq!(context(&task(2), Some("host1"), o), "web.2@host1");
        let o = PrefixOpts {
            no_trunc: true,
            ..OPTS
        };
        assert_eq!(
            context(&task(1), Some("h"), o),
            "web.1.abcdef1234567890abcdefghi@h"
        );
        assert_eq!(
            context(&task(0), Some("h"), OPTS),
            "web.nodeid123456.abcdef123456@h"
        );
        let o = PrefixOpts {
            resolve: false,
            ..OPTS
        };
        assert_eq!(
            context(&task(3), Some("h"), o),
            "svcid.3.abcdef123456@nodeid1234567890nodeid123"
        );
    }

    #[test]
    fn lines_are_prefixed_and_aligned() {
        let msg = LogMessage {
            context: Some(LogContext::default()),
            timestamp: 1_700_000_000_123,
            stream: 0,
            data: b"hello\nworld\n".to_vec(),
        };
        let out = format_message(&msg, Some("web.1.abc@h1"), 12, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "web.1.abc@h1    | hello\nweb.1.abc@h1    | world\n"
        );
        let out = format_message(&msg, Some("web.1.a@h"), 12, true);
        assert_eq!(
            String::from_utf8(out).unwrap().lines().next().unwrap(),
            "2023-11-14T22:13:20.123Z web.1.a@h       | hello"
        );
        let out = format_message(&msg, None, 0, false);
        assert_eq!(out, b"hello\nworld\n");
    }

    #[test]
    fn times_are_rfc3339_unix_seconds_or_durations_before_now() {
        let now = 1_767_366_245_000;
        assert_eq!(
            parse_time("--since", "2026-01-02T15:04:05Z", now).unwrap(),
            1_767_366_245_000
        );
        assert_eq!(
            parse_time("--since", "2026-01-02T15:04:05", now).unwrap(),
            1_767_366_245_000
        );
        assert_eq!(
            parse_time("--until", "1767366245.5", now).unwrap(),
            1_767_366_245_500
        );
        assert_eq!(parse_time("--since", "10m", now).unwrap(), now - 600_000);
        let e = parse_time("--until", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid time \"yesterday\" for --until"),
            "{e}"
        );
    }

    #[test]
    fn tails() {
        assert_eq!(parse_tail(None).unwrap(), -1);
        assert_eq!(parse_tail(Some("all")).unwrap(), -1);
        assert_eq!(parse_tail(Some("20")).unwrap(), 20);
        assert_eq!(
            parse_tail(Some("-3")).unwrap_err().to_string(),
            "invalid value \"-3\" for --tail: use a number of lines or all"
        );
        assert!(parse_tail(Some("some")).is_err());
    }
}
