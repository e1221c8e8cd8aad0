//! `GET /events`: the swarm's events (services, nodes, networks, secrets, configs created,
//! updated and removed) as Docker streams them, one JSON object per line.
//!
//! They come from the control API's `Control.Events` stream: `since` replays what the
//! manager remembers (since it started), `until` ends the stream, and the `type` and
//! `event` filters go to the manager; the others (`service=`, `node=`, ... by ID prefix or
//! name, `label`, `scope`) are applied here, as dockerd applies them.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::State;
use crate::daemon::engine::decode::{Filters, Query};
use crate::daemon::engine::error::{ApiError, ApiResult};

/// The kinds of swarm objects Docker reports events of (skiff's task events are not Docker's).
const KINDS: [&str; 5] = ["service", "node", "network", "secret", "config"];

/// The actions of swarm events.
const ACTIONS: [&str; 3] = ["create", "update", "remove"];

/// `Actor` of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Actor {
    /// The object's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name, and what changed (`replicas.old`, `replicas.new`, ...).
    pub attributes: HashMap<String, String>,
}

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// "service", "node", "network", "secret" or "config".
    #[serde(rename = "Type")]
    pub kind: String,
    /// "create", "update" or "remove".
    #[serde(rename = "Action")]
    pub action: String,
    /// What it happened to.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always "swarm".
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// Docker's view of a cluster event.
    fn from_proto(e: &proto::ClusterEvent) -> Self {
        let mut attributes = e.attributes.clone();
        attributes.insert("name".into(), e.name.clone());
        Self {
            kind: e.r#type.clone(),
            action: e.action.clone(),
            actor: Actor {
                id: e.id.clone(),
                attributes,
            },
            scope: "swarm".into(),
            time: e.time_unix_nano.div_euclid(1_000_000_000),
            time_nano: e.time_unix_nano,
        }
    }
}

/// Whether `event` passes Docker's event filters (`type`, `event`, `scope`, `label`, and per
/// kind `service=`, `node=`, ... by ID prefix or name; a filter on containers, images and
/// the like matches no swarm event).
fn wanted(filters: &Filters, event: &Event) -> bool {
    let name = event.actor.attributes.get("name").map(String::as_str);
    let other_kinds = ["container", "image", "volume", "plugin", "daemon"]
        .iter()
        .any(|k| !filters.values(k).is_empty());
    !other_kinds
        && KINDS.contains(&event.kind.as_str())
        && filters.labels_match("label", &event.actor.attributes)
        && filters.matches("type", |v| v == event.kind)
        && filters.matches("event", |v| v == event.action)
        && filters.matches("scope", |v| v == "swarm")
        && KINDS.iter().all(|kind| {
            filters.values(kind).is_empty()
                || (event.kind == *kind
                    && filters.values(kind).iter().any(|v| {
                        event.actor.id.starts_with(v.as_str()) || Some(v.as_str()) == name
                    }))
        })
}

/// A Docker timestamp (`since`, `until`): Unix seconds with an optional fraction, as the
/// docker client sends them (`1700000000.000000000`), as Unix nanoseconds; empty: 0.
fn unix_nanos(param: &str, value: Option<&str>) -> ApiResult<i64> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "invalid {param} \"{value}\": give Unix seconds, such as 1700000000 or 1700000000.5"
        ))
    };
    let (secs, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if secs < 0 {
        return Err(bad());
    }
    let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(bad)
}

/// The `Control.Events` request a Docker query makes: times, and the `type` and `event`
/// filters when the manager can apply them (every value one it knows).
fn request(query: &Query, filters: &Filters) -> ApiResult<proto::EventsRequest> {
    let since = unix_nanos("since", query.get("since"))?;
    let until = unix_nanos("until", query.get("until"))?;
    if until != 0 && since > until {
        return Err(ApiError::bad_request(
            "since is after until: give a since that comes first",
        ));
    }
    let only = |name: &str, known: &[&str]| {
        let values = filters.values(name);
        if values.iter().all(|v| known.contains(&v.as_str())) {
            values.to_vec()
        } else {
            Vec::new()
        }
    };
    Ok(proto::EventsRequest {
        since_unix_nano: since,
        until_unix_nano: until,
        types: only("type", &KINDS),
        actions: only("event", &ACTIONS),
        names: Vec::new(),
    })
}

/// `GET /events?since=&until=&filters=`.
pub async fn events(state: State, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let query = Query::parse(query.as_deref());
    let filters = query.filters()?;
    filters.allow_only(&[
        "type",
        "event",
        "scope",
        "service",
        "node",
        "network",
        "secret",
        "config",
        "container",
        "image",
        "volume",
        "plugin",
        "daemon",
        "label",
    ])?;
    let request = request(&query, &filters)?;
    let backend = state.0.backend();
    let stream = match backend.control().await?.events(request).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(backend.control_error(s).await),
    };
    // The stream ends when the manager ends it (`until`, or it stopped being a manager),
    // as dockerd's does.
    let lines = stream
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let line = item.ok().map(|e| Event::from_proto(&e)).and_then(|event| {
                if !wanted(&filters, &event) {
                    return None;
                }
                let mut line = serde_json::to_vec(&event).ok()?;
                line.push(b'\n');
                Some(Ok::<_, std::io::Error>(Bytes::from(line)))
            });
            std::future::ready(line)
        });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, action: &str, name: &str) -> Event {
        Event::from_proto(&proto::ClusterEvent {
            r#type: kind.into(),
            action: action.into(),
            id: format!("{name}-id"),
            name: name.into(),
            attributes: [("replicas.new".to_string(), "5".to_string())].into(),
            time_unix_nano: 1_700_000_000_500_000_000,
            index: 7,
        })
    }

    #[test]
    fn cluster_events_become_dockers_events() {
        let e = event("service", "update", "web");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["Type"], "service");
        assert_eq!(json["Action"], "update");
        assert_eq!(json["Actor"]["ID"], "web-id");
        assert_eq!(json["Actor"]["Attributes"]["name"], "web");
        assert_eq!(json["Actor"]["Attributes"]["replicas.new"], "5");
        assert_eq!(json["scope"], "swarm");
        assert_eq!(json["time"], 1_700_000_000);
        assert_eq!(json["timeNano"], 1_700_000_000_500_000_000i64);
        let back: Event = crate::daemon::engine::decode::value_as(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn filters_pick_by_type_action_and_object() {
        let events = [event("service", "create", "web")];
        let f = |raw: &str| Filters::parse(raw).unwrap();
        assert!(wanted(&f(r#"{"type":["service"]}"#), &events[0]));
        assert!(!wanted(&f(r#"{"type":["node"]}"#), &events[0]));
        assert!(wanted(
            &f(r#"{"service":["web"],"event":["create"]}"#),
            &events[0]
        ));
        assert!(wanted(&f(r#"{"service":["web-i"]}"#), &events[0]));
        assert!(!wanted(&f(r#"{"service":["db"]}"#), &events[0]));
        // Events of containers, images, ... never come from the swarm, nor do skiff's tasks'.
        assert!(!wanted(&f(r#"{"container":["x"]}"#), &events[0]));
        assert!(!wanted(&f(r#"{"type":["container"]}"#), &events[0]));
        assert!(!wanted(&f("{}"), &event("task", "update", "web.1")));
    }

    #[test]
    fn since_and_until_are_dockers_unix_seconds_and_filters_go_to_the_manager() {
        let q = Query::parse(Some(
            "since=1700000000.5&until=1700000060&filters=%7B%22type%22%3A%5B%22service%22%5D%2C%22event%22%3A%5B%22start%22%5D%7D",
        ));
        let r = request(&q, &q.filters().unwrap()).unwrap();
        assert_eq!(r.since_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(r.until_unix_nano, 1_700_000_060_000_000_000);
        assert_eq!(r.types, ["service"]);
        // An action the manager does not know is left to the filter here (it matches nothing).
        assert!(r.actions.is_empty());
        let none = Query::parse(None);
        let r = request(&none, &none.filters().unwrap()).unwrap();
        assert_eq!((r.since_unix_nano, r.until_unix_nano), (0, 0));
        assert_eq!(
            unix_nanos("since", Some("1700000000.000000001")).unwrap(),
            1_700_000_000_000_000_001
        );
        for bad in ["yesterday", "-5", "1.1234567890", "1.x"] {
            let e = unix_nanos("since", Some(bad)).unwrap_err();
            assert!(e.message.starts_with("invalid since"), "{e}");
        }
        let q = Query::parse(Some("since=20&until=10"));
        let e = request(&q, &q.filters().unwrap()).unwrap_err();
        assert!(e.message.starts_with("since is after until"), "{e}");
    }
}
