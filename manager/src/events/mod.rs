//! The cluster's events (`skiff events`, as `docker events` for swarm objects): every manager
//! turns its store's watch into events ([`describe`]), remembers the last
//! [`REMEMBERED`] of them for `--since`, and streams them to subscribers through filters.
//!
//! Each manager keeps its own memory from the moment it started: a manager started an hour
//! ago cannot replay the day before (nor can dockerd, which keeps 256).

pub mod describe;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use proto::{ClusterEvent, EventsRequest};
use tokio::sync::{broadcast, watch};
use tonic::Status;

use crate::store::{Store, WatchEvent};
use describe::Tracker;

/// How many events a manager remembers for `--since`.
pub const REMEMBERED: usize = 10_000;

/// Events live subscribers have not taken yet, before the slowest is cut off.
const LIVE_BUFFER: usize = 4096;

/// This manager's events: the remembered ones and a channel of new ones.
pub struct EventLog {
    remembered: Mutex<VecDeque<Arc<ClusterEvent>>>,
    live: broadcast::Sender<Arc<ClusterEvent>>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            remembered: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }
}

impl EventLog {
    fn push(&self, event: ClusterEvent) {
        let event = Arc::new(event);
        let mut remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if remembered.len() == REMEMBERED {
            remembered.pop_front();
        }
        remembered.push_back(event.clone());
        // Sent under the lock, so a subscriber sees each event once: remembered or live.
        let _ = self.live.send(event);
    }

    /// The remembered events at or after `since_unix_nano` (none when 0) and a receiver of
    /// every later one, taken together so none falls between.
    fn subscribe(
        &self,
        since_unix_nano: i64,
    ) -> (
        Vec<Arc<ClusterEvent>>,
        broadcast::Receiver<Arc<ClusterEvent>>,
    ) {
        let remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        let past = if since_unix_nano == 0 {
            Vec::new()
        } else {
            remembered
                .iter()
                .filter(|e| e.time_unix_nano >= since_unix_nano)
                .cloned()
                .collect()
        };
        (past, self.live.subscribe())
    }
}

fn now_unix_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Turns the store's committed changes into events in `log`, until `stop` changes.
pub async fn run(store: Store, log: Arc<EventLog>, mut stop: watch::Receiver<bool>) {
    loop {
        let (mut tracker, mut changes) = store.subscribe(Tracker::new);
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = stop.changed() => return,
            };
            match change {
                Ok(change) => match change.as_ref() {
                    WatchEvent::Changes { index, events } => {
                        let time_unix_nano = now_unix_nano();
                        for described in events.iter().filter_map(|e| tracker.observe(e)) {
                            log.push(ClusterEvent {
                                r#type: described.kind.to_string(),
                                action: described.action.into(),
                                id: described.id,
                                name: described.name,
                                attributes: described.attributes.into_iter().collect(),
                                time_unix_nano,
                                index: *index,
                            });
                        }
                    }
                    // A snapshot replaced the store: start again from what it holds.
                    WatchEvent::Reset { .. } => break,
                },
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the event log fell behind the store; re-reading it");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Which events a subscriber wants.
struct Filter {
    types: Vec<String>,
    actions: Vec<String>,
    names: Vec<String>,
}

impl Filter {
    fn matches(&self, e: &ClusterEvent) -> bool {
        (self.types.is_empty() || self.types.contains(&e.r#type))
            && (self.actions.is_empty() || self.actions.contains(&e.action))
            && (self.names.is_empty() || self.names.iter().any(|n| *n == e.name || *n == e.id))
    }
}

/// The kinds of events there are, and their actions.
const TYPES: [&str; 6] = ["service", "node", "task", "network", "secret", "config"];
const ACTIONS: [&str; 3] = ["create", "update", "remove"];

/// A stream of events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ClusterEvent, Status>> + Send>>;

/// The events `request` asks for from `log`: remembered ones since its `since`, then new
/// ones until its `until` (forever when 0).
pub fn stream(log: &EventLog, request: EventsRequest) -> Result<EventStream, Status> {
    if let Some(t) = request.types.iter().find(|t| !TYPES.contains(&t.as_str())) {
        return Err(Status::invalid_argument(format!(
            "unknown event type {t:?}: use {}",
            TYPES.join(", ")
        )));
    }
    if let Some(a) = request
        .actions
        .iter()
        .find(|a| !ACTIONS.contains(&a.as_str()))
    {
        return Err(Status::invalid_argument(format!(
            "unknown event {a:?}: use {}",
            ACTIONS.join(", ")
        )));
    }
    let until = request.until_unix_nano;
    if until != 0 && request.since_unix_nano > until {
        return Err(Status::invalid_argument(
            "--since is after --until: give a since that comes first",
        ));
    }
    let filter = Filter {
        types: request.types,
        actions: request.actions,
        names: request.names,
    };
    let (past, live) = log.subscribe(request.since_unix_nano);
    let state = (past.into_iter(), live, filter);
    let events = futures::stream::unfold(Some(state), move |state| async move {
        let (mut past, mut live, filter) = state?;
        loop {
            let event = match past.next() {
                Some(e) => e,
                None => {
                    let wait = if until == 0 {
                        Duration::MAX
                    } else {
                        let left = until - now_unix_nano();
                        if left <= 0 {
                            return None;
                        }
                        Duration::from_nanos(left as u64)
                    };
                    match tokio::time::timeout(wait, live.recv()).await {
                        Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                        Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                            let status = Status::resource_exhausted(format!(
                                "this client fell {missed} events behind the cluster and was cut off: read events faster, or run skiff events again with --since"
                            ));
                            return Some((Err(status), None));
                        }
                        Ok(Ok(e)) => e,
                    }
                }
            };
            if until != 0 && event.time_unix_nano > until {
                return None;
            }
            if filter.matches(&event) {
                return Some((Ok(event.as_ref().clone()), Some((past, live, filter))));
            }
        }
    });
    Ok(Box::pin(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn event(r#type: &str, action: &str, name: &str, time_unix_nano: i64) -> ClusterEvent {
        ClusterEvent {
            r#type: r#type.into(),
            action: action.into(),
            id: format!("id-{name}"),
            name: name.into(),
            time_unix_nano,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn since_replays_remembered_events_and_filters_and_until_end_the_stream() {
        let log = EventLog::default();
        log.push(event("service", "create", "web", 10));
        log.push(event("node", "update", "n1", 20));
        log.push(event("service", "update", "web", 30));
        log.push(event("service", "create", "db", 40));
        let now = now_unix_nano();
        let got: Vec<_> = stream(
            &log,
            EventsRequest {
                since_unix_nano: 15,
                until_unix_nano: now,
                types: vec!["service".into()],
                names: vec!["web".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.action, e.time_unix_nano)
        })
        .collect()
        .await;
        assert_eq!(got, vec![("update".to_owned(), 30)]);
    }

    #[tokio::test]
    async fn new_events_reach_a_live_subscriber_through_its_filter() {
        let log = EventLog::default();
        let mut events = stream(
            &log,
            EventsRequest {
                actions: vec!["remove".into()],
                ..Default::default()
            },
        )
        .unwrap();
        log.push(event("service", "create", "web", now_unix_nano()));
        log.push(event("service", "remove", "web", now_unix_nano()));
        let e = events.next().await.unwrap().unwrap();
        assert_eq!((e.action.as_str(), e.name.as_str()), ("remove", "web"));
    }

    #[test]
    fn unknown_types_and_events_are_refused_with_the_known_ones() {
        let log = EventLog::default();
        let err = stream(
            &log,
            EventsRequest {
                types: vec!["container".into()],
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(
            err.message().contains("use service, node"),
            "{}",
            err.message()
        );
        let err = stream(
            &log,
            EventsRequest {
                actions: vec!["die".into()],
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.message().contains("create, update, remove"));
    }
}
