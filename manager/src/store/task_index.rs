//! Indexes of the tasks, kept as tasks change, so the leader's loops and the API find one
//! service's, slot's, node's or state's tasks without walking every task (a million of them
//! at C1M scale), `service ls` reads each service's task counts instead of every task, and
//! the scheduler starts from what each node already holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proto::{Task, TaskState};

use super::placed::Placed;
use crate::lifecycle::{is_active, observed};

/// A service's task counts, as `docker service ls` and the Engine API's `ServiceStatus`
/// count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskTally {
    /// Tasks the orchestrator wants running that report running.
    pub running: u64,
    /// Tasks the orchestrator wants running (desired state RUNNING or earlier).
    pub active: u64,
    /// Tasks that completed (observed COMPLETE).
    pub completed: u64,
}

impl TaskTally {
    fn of(task: &Task) -> Self {
        let state = observed(task);
        Self {
            running: u64::from(
                task.desired_state == TaskState::Running as i32
                    && state == TaskState::Running as i32,
            ),
            active: u64::from(is_active(task)),
            completed: u64::from(state == TaskState::Complete as i32),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Which of a service's tasks [`TaskIndex::of_service`] lists.
#[derive(Clone, Copy, Debug)]
pub(super) enum Within<'a> {
    /// All of them.
    Service,
    /// Those of one slot of a replicated service (slot > 0).
    Slot(u64),
    /// Those of a global service on one node.
    Node(&'a str),
}

/// A task's place in [`TaskIndex::by_slot`]: service, slot (0 for a global service's task),
/// node (only for slot 0: a global service's tasks are keyed by node), task ID.
type SlotKey = (String, u64, String, String);

/// The indexes. Every task the store holds is in each of them exactly once, under the
/// fields it has now (`ObjectStore::put` and `take` keep them in step).
#[derive(Clone, Debug, Default)]
pub(super) struct TaskIndex {
    by_slot: BTreeSet<SlotKey>,
    /// (node, task) for tasks with a node.
    by_node: BTreeSet<(String, String)>,
    /// Task IDs by observed state.
    by_state: BTreeMap<i32, BTreeSet<String>>,
    /// Tasks with network attachments (what the allocator counts as in use).
    attached: BTreeSet<String>,
    /// Per service with tasks; a service whose counts are all zero is absent.
    tallies: HashMap<String, TaskTally>,
    /// What the tasks occupying nodes hold there: the scheduler's per-node state.
    placed: Placed,
}

fn slot_key(task: &Task) -> SlotKey {
    let node = if task.slot == 0 {
        task.node_id.clone()
    } else {
        String::new()
    };
    (
        task.service_id.clone(),
        task.slot,
        node,
        task.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
    )
}

impl TaskIndex {
    pub(super) fn insert(&mut self, task: &Task, id: &str) {
        self.by_slot.insert(slot_key(task));
        if !task.node_id.is_empty() {
            self.by_node.insert((task.node_id.clone(), id.to_owned()));
        }
        self.by_state
            .entry(observed(task))
            .or_default()
            .insert(id.to_owned());
        if !task.networks.is_empty() {
            self.attached.insert(id.to_owned());
        }
        self.placed.add(task);
        let tally = TaskTally::of(task);
        if !tally.is_empty() {
            let t = self.tallies.entry(task.service_id.clone()).or_default();
            t.running += tally.running;
            t.active += tally.active;
            t.completed += tally.completed;
        }
    }

    pub(super) fn remove(&mut self, task: &Task, id: &str) {
        self.by_slot.remove(&slot_key(task));
        if !task.node_id.is_empty() {
            self.by_node.remove(&(task.node_id.clone(), id.to_owned()));
        }
        if let std::collections::btree_map::Entry::Occupied(mut ids) =
            self.by_state.entry(observed(task))
        {
            ids.get_mut().remove(id);
            if ids.get().is_empty() {
                ids.remove();
            }
        }
        if !task.networks.is_empty() {
            self.attached.remove(id);
        }
        self.placed.remove(task);
        let tally = TaskTally::of(task);
        if let Some(t) = self.tallies.get_mut(&task.service_id) {
            t.running -= tally.running;
            t.active -= tally.active;
            t.completed -= tally.completed;
            if t.is_empty() {
                self.tallies.remove(&task.service_id);
            }
        }
    }

    /// IDs of the service's tasks `within` a part of it, in (slot, node, ID) order.
    pub(super) fn of_service<'a>(
        &'a self,
        service: &'a str,
        within: Within<'a>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let (slot, node) = match within {
            Within::Service => (0, ""),
            Within::Slot(slot) => (slot, ""),
            Within::Node(node) => (0, node),
        };
        self.by_slot
            .range((service.to_owned(), slot, node.to_owned(), String::new())..)
            .take_while(move |(s, sl, n, _)| {
                s == service
                    && match within {
                        Within::Service => true,
                        Within::Slot(want) => *sl == want,
                        Within::Node(want) => *sl == 0 && n == want,
                    }
            })
            .map(|(_, _, _, id)| id.as_str())
    }

    /// IDs of the tasks on `node`, in ID order.
    pub(super) fn on_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_node
            .range((node.to_owned(), String::new())..)
            .take_while(move |(n, _)| n == node)
            .map(|(_, id)| id.as_str())
    }

    /// IDs of the tasks in observed state `state`, in ID order.
    pub(super) fn in_state(&self, state: i32) -> impl Iterator<Item = &str> {
        self.by_state
            .get(&state)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// IDs of the tasks in an observed state up to `last`, by state then ID.
    pub(super) fn up_to_state(&self, last: i32) -> impl Iterator<Item = &str> {
        self.by_state
            .range(..=last)
            .flat_map(|(_, ids)| ids)
            .map(String::as_str)
    }

    /// IDs of the tasks with network attachments, in ID order.
    pub(super) fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(String::as_str)
    }

    /// How many tasks are in each observed state (states with none are absent).
    pub(super) fn state_counts(&self) -> impl Iterator<Item = (i32, usize)> + '_ {
        self.by_state.iter().map(|(s, ids)| (*s, ids.len()))
    }

    /// The service's task counts.
    pub(super) fn tally(&self, service: &str) -> TaskTally {
        self.tallies.get(service).copied().unwrap_or_default()
    }

    /// The indexes, each named (see `ObjectStore::into_parts`).
    pub(super) fn into_parts(self) -> Vec<(&'static str, Box<dyn std::any::Any>)> {
        vec![
            ("index by service and slot", Box::new(self.by_slot)),
            ("index by node", Box::new(self.by_node)),
            ("index by state", Box::new(self.by_state)),
            ("index of attached tasks", Box::new(self.attached)),
            ("service tallies", Box::new(self.tallies)),
            ("placed (scheduler's per-node state)", Box::new(self.placed)),
        ]
    }

    /// What the tasks occupying nodes hold there.
    pub(super) fn placed(&self) -> &Placed {
        &self.placed
    }
}
