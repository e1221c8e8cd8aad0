//! What changed since the orchestrator's last round, so a round reconciles only that.
//!
//! A round used to walk every task of the store; with a million tasks that made the leader
//! CPU-bound although most rounds follow a handful of status reports. The tracker reads the
//! watch stream (`crate::leader` hands it every event) and keeps a dirty set: whole services
//! (created, updated or deleted), slots `(service, slot)` of replicated services and
//! `(service, node)` of global ones whose tasks changed, and nodes that changed (then every
//! global service's slot on that node, and the slots of the node's tasks: a node's change
//! decides nothing elsewhere, so a global service is not walked whole for each of 10,000
//! nodes joining or going down). A service-level set would not do: one service of a
//! million replicas has all its tasks changing.
//!
//! Time changes things too (a restart delay or an update delay ends): a round says which
//! slot or service must be looked at again when ([`Wake`]), and the round after that time
//! covers it. So does a round that ran out of room for new tasks: the next one, at once,
//! fills the service's empty slots from the one where it stopped, reading only the tasks
//! there (a walk over the service's tasks for each round of filling one of a million
//! replicas took 2-4 s of the leader's CPU, 39 s in all). Everything is reconciled
//! ([`Scope::All`]) when what changed is unknown or anything may depend on it: on becoming
//! leader, after the stream lagged or a snapshot replaced the store, when the cluster
//! object changed (the task history retention limit), and every [`SAFETY_NET_MS`] in case
//! some dependency was missed. `plan::reconcile_in`
//! widens the set where one slot depends on others (a rollout in progress, a replicated
//! job's concurrency limit): those services are reconciled in full.
//!
//! A task event dirties the slot the task is in now. Its previous slot needs no entry: a
//! task's service and slot never change after it is made, nor the node of a global task (the
//! orchestrator makes it for that node; the scheduler assigns only tasks without one), and the
//! event carries only the object as written, so a different slot could not be known anyway.

use std::collections::{BTreeMap, BTreeSet};

use proto::store_object::Object;
use proto::Task;

use crate::store::{StoredObject, WatchEvent};

/// The longest time between two full rounds: whatever a change missed, this catches.
pub const SAFETY_NET_MS: i64 = 60_000;

/// A slot of a service, owned: its number (replicated) or its node (global).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotId {
    /// A replicated service's slot, from 1.
    Slot(u64),
    /// A global service's node.
    Node(String),
}

impl SlotId {
    /// The slot `task` is in.
    pub fn of(task: &Task) -> Self {
        if task.slot > 0 {
            SlotId::Slot(task.slot)
        } else {
            SlotId::Node(task.node_id.clone())
        }
    }
}

/// What changed since the last round.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Services to reconcile in full (created, updated, deleted).
    pub services: BTreeSet<String>,
    /// Slots whose tasks changed, by service ID (each ID held once: a million changed
    /// slots of one service must not cost a million copies of it).
    pub slots: BTreeMap<String, BTreeSet<SlotId>>,
    /// Nodes that changed.
    pub nodes: BTreeSet<String>,
    /// Replicated services whose empty slots from this one on are still to be filled (a
    /// round ran out of room there): the next round reads only the tasks of those slots,
    /// not a walk over the service's tasks for each round of filling it.
    pub fill_from: BTreeMap<String, u64>,
}

impl Dirty {
    fn merge(&mut self, other: Dirty) {
        self.services.extend(other.services);
        for (service_id, slots) in other.slots {
            self.slots.entry(service_id).or_default().extend(slots);
        }
        self.nodes.extend(other.nodes);
        for (service_id, from) in other.fill_from {
            self.fill_from_slot(service_id, from);
        }
    }

    fn fill_from_slot(&mut self, service_id: String, from: u64) {
        let first = self.fill_from.entry(service_id).or_insert(from);
        *first = (*first).min(from);
    }
}

/// A slot, or a whole service, to reconcile again at a time even if nothing changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// When (Unix ms).
    pub at: i64,
    /// The service.
    pub service_id: String,
    /// What of the service.
    pub again: Again,
}

/// What of a service a wake-up looks at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Again {
    /// All of it (its rollout waits for a delay to end).
    Service,
    /// One slot (its restart delay ends).
    Slot(SlotId),
    /// Its slots from this one on (the round ran out of room there).
    SlotsFrom(u64),
}

/// What a round reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every service, slot and task of the store.
    All,
    /// Only what changed.
    Dirty(Dirty),
}

/// In a round's log line: how much it covers, not what.
impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => f.write_str("everything"),
            Scope::Dirty(d) => write!(
                f,
                "{} services, {} slots, {} nodes, {} services to fill further",
                d.services.len(),
                d.slots.values().map(BTreeSet::len).sum::<usize>(),
                d.nodes.len(),
                d.fill_from.len()
            ),
        }
    }
}

/// Gathers changes between rounds and decides what the next round covers.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The next round covers everything.
    everything: bool,
    dirty: Dirty,
    /// What rounds asked to look at again, by when (Unix ms).
    wakes: BTreeMap<i64, Dirty>,
    /// When the last full round started (Unix ms).
    last_full: i64,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            everything: true,
            dirty: Dirty::default(),
            wakes: BTreeMap::new(),
            last_full: i64::MIN,
        }
    }
}

impl Changes {
    /// What changed is unknown (leadership starts, the stream lagged): the next round covers
    /// everything.
    pub fn everything(&mut self) {
        self.everything = true;
        self.dirty = Dirty::default();
    }

    /// Records what a committed change touched.
    pub fn observe(&mut self, event: &WatchEvent) {
        let events = match event {
            WatchEvent::Reset { .. } => return self.everything(),
            WatchEvent::Changes { events, .. } => events,
        };
        if self.everything {
            return;
        }
        for event in events {
            match event.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Cluster(_)) => return self.everything(),
                Some(Object::Service(s)) => {
                    self.dirty.services.insert(s.id().to_owned());
                }
                Some(Object::Task(t)) => {
                    // A service reconciled in full covers its slots already.
                    if self.dirty.services.contains(&t.service_id) {
                        continue;
                    }
                    let slot = SlotId::of(t);
                    match self.dirty.slots.get_mut(&t.service_id) {
                        Some(slots) => {
                            slots.insert(slot);
                        }
                        None => {
                            self.dirty
                                .slots
                                .insert(t.service_id.clone(), BTreeSet::from([slot]));
                        }
                    }
                }
                Some(Object::Node(n)) => {
                    self.dirty.nodes.insert(n.id().to_owned());
                }
                // Networks, secrets and configs do not decide which tasks run.
                Some(Object::Network(_) | Object::Secret(_) | Object::Config(_)) | None => {}
            }
        }
    }

    /// What the round starting at `now` covers: what changed and what asked to be looked at
    /// again by now. Forgets it (see [`Changes::failed`]).
    pub fn take(&mut self, now: i64) -> Scope {
        let safety_net = now.saturating_sub(self.last_full) >= SAFETY_NET_MS;
        if self.everything || safety_net {
            self.everything = false;
            self.dirty = Dirty::default();
            self.last_full = now;
            return Scope::All;
        }
        let later = self.wakes.split_off(&now.saturating_add(1));
        for (_, due) in std::mem::replace(&mut self.wakes, later) {
            self.dirty.merge(due);
        }
        Scope::Dirty(std::mem::take(&mut self.dirty))
    }

    /// A round over `scope` succeeded and asked for `wakes`.
    pub fn done(&mut self, scope: &Scope, wakes: &[Wake]) {
        if *scope == Scope::All {
            // A full round says every wake-up there is; a partial one only those of what it
            // covered, and earlier ones still stand (one that is no longer needed costs a
            // look at one slot).
            self.wakes.clear();
        }
        for wake in wakes {
            let due = self.wakes.entry(wake.at).or_default();
            match &wake.again {
                Again::Service => {
                    due.services.insert(wake.service_id.clone());
                }
                Again::Slot(slot) => {
                    due.slots
                        .entry(wake.service_id.clone())
                        .or_default()
                        .insert(slot.clone());
                }
                Again::SlotsFrom(from) => due.fill_from_slot(wake.service_id.clone(), *from),
            }
        }
    }

    /// A round over `scope` failed (it may have committed part of its changes): the next
    /// round covers it again.
    pub fn failed(&mut self, scope: Scope) {
        match scope {
            Scope::All => self.everything(),
            Scope::Dirty(dirty) if !self.everything => self.dirty.merge(dirty),
            Scope::Dirty(_) => {}
        }
    }

    /// The earliest time a round asked to run again (Unix ms).
    pub fn wake_at(&self) -> Option<i64> {
        self.wakes.keys().next().copied()
    }
}

#[cfg(test)]
mod tests;
