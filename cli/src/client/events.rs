//! `skiff events`: the cluster's events as a manager sees them committed, in `docker
//! events`'s words and shapes: one line per event (`TIME TYPE ACTION ID (name=web,
//! replicas.new=5, replicas.old=2)`) or, with `--format json`, Docker's JSON message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use clap::Args;
use proto::{ClusterEvent, EventsRequest};

use super::{out, GlobalOpts, ListFormat};

/// `skiff events [OPTIONS]`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show the events the manager remembers from this time on: RFC 3339 (2026-12-03T10:00:00Z),
    /// Unix seconds, or a duration before now (10m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop at this time (same forms as --since); without it, stream until interrupted
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Filter: type=service|node|task|network|secret|config, event=create|update|remove,
    /// name=NAME|ID; repeat a key for any of its values
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Output format: json (Docker's event messages, one per line)
    #[arg(long)]
    pub format: Option<String>,
}

/// Runs `skiff events`.
pub async fn run(global: &GlobalOpts, args: EventsArgs) -> anyhow::Result<()> {
    let request = request(&args, SystemTime::now())?;
    let format = super::list_format(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut events = client
        .control()
        .events(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    while let Some(event) = events.message().await.map_err(|s| client.error(s))? {
        out(match format {
            ListFormat::Json => serde_json::to_string(&docker_json(&event))?,
            ListFormat::Table => line(&event),
        });
    }
    Ok(())
}

/// The request `args` make, checked, with times relative to `now`.
fn request(args: &EventsArgs, now: SystemTime) -> anyhow::Result<EventsRequest> {
    let mut request = EventsRequest {
        since_unix_nano: args
            .since
            .as_deref()
            .map(|t| time("--since", t, now))
            .transpose()?
            .unwrap_or(0),
        until_unix_nano: args
            .until
            .as_deref()
            .map(|t| time("--until", t, now))
            .transpose()?
            .unwrap_or(0),
        ..Default::default()
    };
    for filter in &args.filter {
        let (key, value) = filter.split_once('=').ok_or_else(|| {
            anyhow!("invalid filter {filter:?}: use KEY=VALUE, e.g. type=service")
        })?;
        let value = value.trim().to_owned();
        match key.trim() {
            "type" => request.types.push(value),
            "event" => request.actions.push(value),
            "name" | "id" => request.names.push(value),
            other => bail!("unknown filter {other:?}: use type, event or name"),
        }
    }
    if request.until_unix_nano != 0 && request.since_unix_nano > request.until_unix_nano {
        bail!("--since is after --until: give a since that comes first");
    }
    Ok(request)
}

/// `value` of `flag` as Unix nanoseconds: RFC 3339, Unix seconds (with a fraction), or a
/// duration before `now`.
fn time(flag: &str, value: &str, now: SystemTime) -> anyhow::Result<i64> {
    let value = value.trim();
    let invalid = || {
        anyhow!("invalid {flag} {value:?}: use a time such as 2026-12-03T10:00:00Z, Unix seconds, or a duration before now such as 10m")
    };
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        t
    } else if let Ok(seconds) = value.parse::<f64>() {
        // `inf`, `1e300`: no time at all, where a panic used to be.
        Duration::try_from_secs_f64(seconds.max(0.0))
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .ok_or_else(invalid)?
    } else if let Ok(ago) = super::duration::parse_duration(value) {
        now.checked_sub(ago).unwrap_or(UNIX_EPOCH)
    } else {
        return Err(invalid());
    };
    // Past 2262 the nanoseconds do not fit: the latest time there is, not a wrapped one.
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
}

/// One event as `docker events` prints it.
fn line(e: &ClusterEvent) -> String {
    let time =
        humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(e.time_unix_nano as u64));
    let mut attributes: Vec<_> = e.attributes.iter().collect();
    attributes.sort();
    let attributes: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{time} {} {} {} ({})",
        e.r#type,
        e.action,
        e.id,
        attributes.join(", ")
    )
}

/// Docker's events message (`Type`, `Action`, `Actor`, `scope`, `time`, `timeNano`).
fn docker_json(e: &ClusterEvent) -> serde_json::Value {
    serde_json::json!({
        "Type": e.r#type,
        "Action": e.action,
        "Actor": {
            "ID": e.id,
            "Attributes": e.attributes,
        },
        "scope": "swarm",
        "time": e.time_unix_nano / 1_000_000_000,
        "timeNano": e.time_unix_nano,
    })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: Option<&str>, until: Option<&str>, filter: &[&str]) -> EventsArgs {
        EventsArgs {
            since: since.map(Into::into),
            until: until.map(Into::into),
            filter: filter.iter().map(|f| (*f).to_owned()).collect(),
            format: None,
        }
    }

    #[test]
    fn times_filters_and_their_mistakes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = request(
            &args(
                Some("10m"),
                Some("2026-12-03T10:00:00Z"),
                &["type=service", "event=update", "name=web"],
            ),
            now,
        )
        .unwrap();
        assert_eq!(r.since_unix_nano, 999_400 * 1_000_000_000);
        assert_eq!(r.until_unix_nano, 1_796_292_000 * 1_000_000_000);
        assert_eq!(
            (r.types, r.actions, r.names),
            (
                vec!["service".to_owned()],
                vec!["update".to_owned()],
                vec!["web".to_owned()]
            )
        );
        assert_eq!(
            request(&args(Some("1700000000.5"), None, &[]), now)
                .unwrap()
                .since_unix_nano,
            1_700_000_000_500_000_000
        );
        for (a, want) in [
            (args(Some("yesterday"), None, &[]), "invalid --since"),
            (args(None, None, &["color=red"]), "unknown filter \"color\""),
            (args(None, None, &["type"]), "use KEY=VALUE"),
            (
                args(Some("1m"), Some("2m"), &[]),
                "--since is after --until",
            ),
        ] {
            let err = request(&a, now).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn an_event_reads_as_docker_prints_it() {
        let e = ClusterEvent {
            r#type: "service".into(),
            action: "update".into(),
            id: "abc".into(),
            name: "web".into(),
            attributes: [
                ("name".to_owned(), "web".to_owned()),
                ("replicas.old".to_owned(), "2".to_owned()),
                ("replicas.new".to_owned(), "5".to_owned()),
            ]
            .into(),
            time_unix_nano: 1_796_292_000_000_000_001,
            index: 7,
        };
        assert_eq!(
            line(&e),
            "2026-12-03T10:00:00.000000001Z service update abc (name=web, replicas.new=5, replicas.old=2)"
        );
        let json = docker_json(&e);
        assert_eq!(json["Actor"]["Attributes"]["replicas.new"], "5");
        assert_eq!(json["time"], 1_796_292_000);
    }
}
