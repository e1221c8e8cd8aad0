//! What changed since the allocator's last round, so a round looks only at that.
//!
//! A round used to look at every network, node and service and at every task not yet
//! delivered (100,000 of them while a large service starts), and rebuilt what is in use
//! each time: in the 100,000-task bench that was a sixth of the leader's CPU, although most
//! rounds follow status reports that want nothing allocated. The tracker reads the watch
//! stream (`crate::leader` hands it every event) and names the objects a round must look at
//! (`plan::Scope::Only`): the networks, nodes and services written since the last round,
//! the tasks written since then that may still want an address (not delivered, not ended),
//! and whatever wanted something last round and may not have got it (a full subnet, a
//! network without a subnet yet, a port taken). That last part is stuck until something is
//! freed (a delete, a task that ended, a network, node or service written): until then it
//! is looked at only if the round hands out something anyway, so a full subnet does not
//! make every round read what is in use.
//!
//! What else can make an object want something without being written itself:
//! - a service that starts (or stops) publishing ports makes its undelivered tasks want an
//!   address on `ingress`: the tracker keeps which services publish, and when that changes
//!   the service's undelivered tasks join the round (a service written for any other reason
//!   costs no walk over its tasks);
//! - a different `ingress` network (created, removed) changes what every node, publishing
//!   service and its tasks want: the round covers everything;
//! - the cluster object (the default address pools): the round covers everything.
//!
//! Everything is also covered ([`Scope::All`]) when what changed is unknown: on becoming
//! leader, after the stream lagged or a snapshot replaced the store, after a failed commit
//! (part of it may have landed), and every [`SAFETY_NET_MS`] in case a dependency was
//! missed. A round with no change since the last one is skipped: the store is the same, so
//! it would decide the same (nothing, or the same failure already written).

use std::collections::BTreeSet;

use proto::store_object::Object;
use proto::{Service, StoreActionKind, Task};

use super::plan::{Objects, Scope};
use super::{holds_addresses, ingress_network, not_delivered, publishes};
use crate::store::{ObjectStore, StoredObject, WatchEvent};

/// The longest time between two full rounds: whatever a change missed, this catches.
pub const SAFETY_NET_MS: i64 = 60_000;

/// Gathers changes between rounds and decides what the next round looks at.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The next round covers everything.
    everything: bool,
    /// Anything was committed since the last round.
    changed: bool,
    /// What was written since the last round.
    written: Objects,
    /// What wanted something in the last round.
    wanting: Objects,
    /// Something may have been freed since the last round (an address, a port, a subnet)
    /// or a network written: what could not have what it wanted may have it now.
    freed: bool,
    /// The ingress network (ID) as the last round saw it.
    ingress: Option<String>,
    /// The services that publish ports, as the last round saw them.
    publishing: BTreeSet<String>,
    /// When the last full round started (Unix ms).
    last_full: i64,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            everything: true,
            changed: true,
            written: Objects::default(),
            wanting: Objects::default(),
            freed: false,
            ingress: None,
            publishing: BTreeSet::new(),
            last_full: i64::MIN,
        }
    }
}

impl Changes {
    /// What changed is unknown (leadership starts, the stream lagged, a commit failed): the
    /// next round covers everything.
    pub fn everything(&mut self) {
        self.everything = true;
        self.written = Objects::default();
        self.wanting = Objects::default();
    }

    /// Records what a committed change touched.
    pub fn observe(&mut self, event: &WatchEvent) {
        let events = match event {
            WatchEvent::Reset { .. } => return self.everything(),
            WatchEvent::Changes { events, .. } => events,
        };
        self.changed = true;
        if self.everything {
            return;
        }
        for event in events {
            if event.kind == StoreActionKind::Delete as i32 {
                self.freed = true;
            }
            match event.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Cluster(_)) => return self.everything(),
                // A network's subnet, a node's leg, a service's VIPs and ports: a write may
                // give one up (only the allocator writes them, but no need to rely on it).
                Some(Object::Network(n)) => {
                    self.written.networks.insert(n.id().to_owned());
                    self.freed = true;
                }
                Some(Object::Node(n)) => {
                    self.written.nodes.insert(n.id().to_owned());
                    self.freed = true;
                }
                Some(Object::Service(s)) => {
                    self.written.services.insert(s.id().to_owned());
                    self.freed = true;
                }
                // A task as written: one delivered or ended wants nothing, ever again (its
                // observed state only moves forward). A removed one is passed over. One
                // that holds no addresses any more gave them up; one that still holds
                // them holds what it held (a task's attachments only grow, and only until
                // it is delivered).
                Some(Object::Task(t)) => {
                    if holds_addresses(t) && not_delivered(t) {
                        self.written.tasks.insert(t.id().to_owned());
                    }
                    if !holds_addresses(t) {
                        self.freed = true;
                    }
                }
                Some(Object::Secret(_) | Object::Config(_)) | None => {}
            }
        }
    }

    /// What the round starting at `now` on `store` looks at, or `None` if nothing changed
    /// since the last one. Forgets it: the round reports back with [`Changes::done`] or
    /// [`Changes::failed`].
    pub fn take(&mut self, store: &ObjectStore, now: i64) -> Option<Scope> {
        let ingress = || ingress_network(store).map(|n| n.id().to_owned());
        let mut full = self.everything || now.saturating_sub(self.last_full) >= SAFETY_NET_MS;
        if !full && !self.changed {
            return None;
        }
        if !full && !self.written.networks.is_empty() && ingress() != self.ingress {
            full = true;
        }
        self.changed = false;
        if full {
            self.everything = false;
            self.written = Objects::default();
            self.wanting = Objects::default();
            self.freed = false;
            self.last_full = now;
            self.ingress = ingress();
            self.publishing = store
                .list::<Service>()
                .filter(|s| publishing(s))
                .map(|s| s.id().to_owned())
                .collect();
            return Some(Scope::All);
        }
        let mut only = std::mem::take(&mut self.written);
        let mut stuck = std::mem::take(&mut self.wanting);
        if std::mem::take(&mut self.freed) {
            only.merge(std::mem::take(&mut stuck));
        }
        let mut tasks = Vec::new();
        for id in &only.services {
            let now_publishing = store.get::<Service>(id).is_some_and(publishing);
            let changed = if now_publishing {
                self.publishing.insert(id.clone())
            } else {
                self.publishing.remove(id)
            };
            if changed {
                tasks.extend(
                    store
                        .tasks_of_service(id)
                        .filter(|t| holds_addresses(t) && not_delivered(t))
                        .map(|t: &Task| t.id().to_owned()),
                );
            }
        }
        only.tasks.extend(tasks);
        // What is looked at anyway is not stuck.
        stuck.remove_all(&only);
        Some(Scope::Only {
            changed: only,
            stuck,
        })
    }

    /// A round succeeded; `wanting` is what wanted something in it.
    pub fn done(&mut self, wanting: Objects) {
        if !self.everything {
            self.wanting = wanting;
        }
    }

    /// A round's commit failed (part of it may have landed): the next round covers
    /// everything.
    pub fn failed(&mut self) {
        self.everything();
    }
}

/// Whether the service publishes any port (so its tasks join `ingress`).
fn publishing(service: &Service) -> bool {
    publishes(service.spec.as_ref().and_then(|s| s.endpoint.as_ref()))
}
