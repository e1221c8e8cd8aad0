//! `GET /events`: the swarm's events (services, nodes, networks, secrets, configs created,
//! updated and removed) as Docker streams them, one JSON object per line.
//!
//! The control API has no watch for clients, so this is a front end's view: it reads the
//! cluster's objects every half second and reports what changed since the last read, as
//! dockerd's swarm events do (one `update` for several changes made between two reads).
//! Events start now: `since` (a replay) is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::State;
use crate::daemon::engine::decode::{Filters, Query};
use crate::daemon::engine::error::{ApiError, ApiResult};
use crate::daemon::engine::Engine;

/// How often the objects are read.
const POLL: Duration = Duration::from_millis(500);

/// One object as the diff sees it: its kind, ID, name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    name: String,
    version: u64,
}

type Snapshot = HashMap<String, Seen>;

/// `Actor` of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Actor {
    /// The object's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name.
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

fn meta_of(meta: &Option<proto::Meta>) -> (String, u64) {
    let m = meta.clone().unwrap_or_default();
    (m.id, m.version)
}

/// Reads every kind of object once.
async fn snapshot(engine: &Engine) -> ApiResult<Snapshot> {
    let backend = engine.backend();
    let mut control = backend.control().await?;
    let mut out = Snapshot::new();
    macro_rules! read {
        ($call:ident, $req:expr, $field:ident, $kind:literal, $name:expr) => {
            match control.$call($req).await {
                Ok(r) => {
                    for o in r.into_inner().$field {
                        let (id, version) = meta_of(&o.meta);
                        #[allow(clippy::redundant_closure_call)]
                        let name = ($name)(&o);
                        out.insert(
                            id,
                            Seen {
                                kind: $kind,
                                name,
                                version,
                            },
                        );
                    }
                }
                Err(s) => return Err(backend.control_error(s).await),
            }
        };
    }
    read!(
        list_services,
        proto::ListServicesRequest::default(),
        services,
        "service",
        |s: &proto::Service| s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default()
    );
    read!(
        list_nodes,
        proto::ListNodesRequest::default(),
        nodes,
        "node",
        |n: &proto::Node| n
            .description
            .as_ref()
            .map(|d| d.hostname.clone())
            .unwrap_or_default()
    );
    read!(
        list_networks,
        proto::ListNetworksRequest {},
        networks,
        "network",
        |n: &proto::Network| n.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default()
    );
    read!(
        list_secrets,
        proto::ListSecretsRequest {},
        secrets,
        "secret",
        |s: &proto::Secret| s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default()
    );
    read!(
        list_configs,
        proto::ListConfigsRequest {},
        configs,
        "config",
        |c: &proto::Config| c.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default()
    );
    Ok(out)
}

/// The events that turn `before` into `after`, at `now_ms`.
fn diff(before: &Snapshot, after: &Snapshot, now_ms: i64) -> Vec<Event> {
    let event = |id: &str, seen: &Seen, action: &str| Event {
        kind: seen.kind.into(),
        action: action.into(),
        actor: Actor {
            id: id.into(),
            attributes: [("name".to_string(), seen.name.clone())].into(),
        },
        scope: "swarm".into(),
        time: now_ms / 1000,
        time_nano: now_ms.saturating_mul(1_000_000),
    };
    let mut events: Vec<Event> = Vec::new();
    for (id, seen) in after {
        match before.get(id) {
            None => events.push(event(id, seen, "create")),
            Some(old) if old.version != seen.version => events.push(event(id, seen, "update")),
            Some(_) => {}
        }
    }
    for (id, seen) in before {
        if !after.contains_key(id) {
            events.push(event(id, seen, "remove"));
        }
    }
    // Creations first, removals last, as they happened.
    let order = |a: &str| match a {
        "create" => 0,
        "update" => 1,
        _ => 2,
    };
    events.sort_by_key(|e| (order(&e.action), e.kind.clone(), e.actor.id.clone()));
    events
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
        && filters.labels_match("label", &event.actor.attributes)
        && filters.matches("type", |v| v == event.kind)
        && filters.matches("event", |v| v == event.action)
        && filters.matches("scope", |v| v == "swarm")
        && ["service", "node", "network", "secret", "config"]
            .iter()
            .all(|kind| {
                filters.values(kind).is_empty()
                    || (event.kind == *kind
                        && filters.values(kind).iter().any(|v| {
                            event.actor.id.starts_with(v.as_str()) || Some(v.as_str()) == name
                        }))
            })
}

/// `GET /events?filters=&until=`.
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
    if query.get("since").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "since is not supported: skiff's events start when you ask for them; leave out --since",
        ));
    }
    let until_ms = match query.get("until").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .map(|secs| (secs * 1000.0) as i64)
                .map_err(|_| {
                    ApiError::bad_request(format!("invalid until \"{v}\": give Unix seconds"))
                })?,
        ),
    };
    let engine: Arc<Engine> = state.0.clone();
    let first = snapshot(&engine).await?;
    let stream = futures::stream::unfold(
        (engine, first, filters, false),
        move |(engine, before, filters, done)| async move {
            if done {
                return None;
            }
            tokio::time::sleep(POLL).await;
            let now = proto::now_ms();
            let finished = until_ms.is_some_and(|u| now >= u);
            let after = match snapshot(&engine).await {
                Ok(s) => s,
                // The node stopped being a manager: the stream ends, as dockerd's does.
                Err(_) => return None,
            };
            let mut bytes = Vec::new();
            for event in diff(&before, &after, now) {
                if wanted(&filters, &event) {
                    if let Ok(line) = serde_json::to_vec(&event) {
                        bytes.extend_from_slice(&line);
                        bytes.push(b'\n');
                    }
                }
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(bytes)),
                (engine, after, filters, finished),
            ))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(kind: &'static str, name: &str, version: u64) -> Seen {
        Seen {
            kind,
            name: name.into(),
            version,
        }
    }

    #[test]
    fn changes_between_two_reads_become_dockers_events() {
        let before: Snapshot = [
            ("s1".to_string(), seen("service", "web", 3)),
            ("n1".to_string(), seen("network", "front", 2)),
        ]
        .into();
        let after: Snapshot = [
            ("s1".to_string(), seen("service", "web", 5)),
            ("c1".to_string(), seen("config", "conf", 6)),
        ]
        .into();
        let events = diff(&before, &after, 1_700_000_000_500);
        let got: Vec<(String, String, String)> = events
            .iter()
            .map(|e| {
                (
                    e.kind.clone(),
                    e.action.clone(),
                    e.actor.attributes["name"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("config".into(), "create".into(), "conf".into()),
                ("service".into(), "update".into(), "web".into()),
                ("network".into(), "remove".into(), "front".into()),
            ]
        );
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["Type"], "config");
        assert_eq!(json["scope"], "swarm");
        assert_eq!(json["time"], 1_700_000_000);
        assert_eq!(json["timeNano"], 1_700_000_000_500_000_000i64);
        let back: Event = crate::daemon::engine::decode::value_as(json).unwrap();
        assert_eq!(back, events[0]);
        assert!(diff(&after, &after, 0).is_empty());
    }

    #[test]
    fn filters_pick_by_type_action_and_object() {
        let events = diff(
            &Snapshot::new(),
            &[("s1".to_string(), seen("service", "web", 1))].into(),
            0,
        );
        let f = |raw: &str| Filters::parse(raw).unwrap();
        assert!(wanted(&f(r#"{"type":["service"]}"#), &events[0]));
        assert!(!wanted(&f(r#"{"type":["node"]}"#), &events[0]));
        assert!(wanted(
            &f(r#"{"service":["web"],"event":["create"]}"#),
            &events[0]
        ));
        assert!(!wanted(&f(r#"{"service":["db"]}"#), &events[0]));
        // Events of containers, images, ... never come from the swarm.
        assert!(!wanted(&f(r#"{"container":["x"]}"#), &events[0]));
        assert!(!wanted(&f(r#"{"type":["container"]}"#), &events[0]));
    }
}
