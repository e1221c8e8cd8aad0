//! Indexes of the tasks, kept as tasks change, so the leader's loops and the API find one
//! service's, slot's, node's or state's tasks without walking every task (a million of them
//! at C1M scale), `service ls` reads each service's task counts instead of every task, and
//! the scheduler starts from what each node already holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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
    /// Those of a replicated service's slots from this one (> 0) on.
    SlotsFrom(u64),
    /// Those of a global service on one node.
    Node(&'a str),
}

/// A task's, service's or node's ID as the indexes hold it: one allocation, shared by every
/// entry that names it ([`TaskIndex::ids`]), instead of a `String` each (a task's ID was in
/// three indexes, a service's and a node's in every entry of their tasks).
type Id = Arc<str>;

/// A task's place in [`TaskIndex::by_slot`]: service, slot (0 for a global service's task),
/// node (only for slot 0: a global service's tasks are keyed by node), task ID.
type SlotKey = (Id, u64, Id, Id);

/// The indexes. Every task the store holds is in each of them exactly once, under the
/// fields it has now (`ObjectStore::put` and `take` keep them in step).
#[derive(Clone, Debug, Default)]
pub(super) struct TaskIndex {
    by_slot: BTreeSet<SlotKey>,
    /// (node, task) for tasks with a node.
    by_node: BTreeSet<(Id, Id)>,
    /// Task IDs by observed state.
    by_state: BTreeMap<i32, BTreeSet<Id>>,
    /// Tasks with network attachments (what the allocator counts as in use).
    attached: BTreeSet<Id>,
    /// Every ID an entry above holds, so each is allocated once; an ID leaves when no entry
    /// holds it any more.
    ids: HashSet<Id>,
    /// Per service with tasks; a service whose counts are all zero is absent.
    tallies: HashMap<String, TaskTally>,
    /// What the tasks occupying nodes hold there: the scheduler's per-node state.
    placed: Placed,
}

/// The node a task is keyed by in [`TaskIndex::by_slot`]: its own for a global service's
/// task, none for a replicated one's.
fn slot_node(task: &Task) -> &str {
    if task.slot == 0 {
        &task.node_id
    } else {
        ""
    }
}

impl TaskIndex {
    /// The shared `Arc` of `id`, made if no entry holds one yet.
    fn id(&mut self, id: &str) -> Id {
        if let Some(shared) = self.ids.get(id) {
            return shared.clone();
        }
        let shared: Id = id.into();
        self.ids.insert(shared.clone());
        shared
    }

    /// Forgets `id` once no entry holds it (call it after the entries and every other
    /// clone are dropped).
    fn release(&mut self, id: &str) {
        if self
            .ids
            .get(id)
            .is_some_and(|shared| Arc::strong_count(shared) == 1)
        {
            self.ids.remove(id);
        }
    }

    fn slot_key(&mut self, task: &Task, id: &str) -> SlotKey {
        (
            self.id(&task.service_id),
            task.slot,
            self.id(slot_node(task)),
            self.id(id),
        )
    }

    pub(super) fn insert(&mut self, task: &Task, id: &str) {
        let key = self.slot_key(task, id);
        let task_id = key.3.clone();
        self.by_slot.insert(key);
        if !task.node_id.is_empty() {
            let node = self.id(&task.node_id);
            self.by_node.insert((node, task_id.clone()));
        }
        if !task.networks.is_empty() {
            self.attached.insert(task_id.clone());
        }
        self.by_state
            .entry(observed(task))
            .or_default()
            .insert(task_id);
        self.placed.add(task);
        self.count(task);
    }

    /// Moves task `id` from the entries `old` gave it to those `new` gives it, touching
    /// only the indexes whose keys differ. Most changes are a node's status report, which
    /// moves the task to another state and leaves its service, slot, node and networks as
    /// they were: a removal and an insertion each looked up and rebuilt every key (a tenth
    /// of the leader's CPU at a million tasks).
    pub(super) fn replace(&mut self, old: &Task, new: &Task, id: &str) {
        let same_keys = old.service_id == new.service_id
            && old.slot == new.slot
            && old.node_id == new.node_id
            && old.networks.is_empty() == new.networks.is_empty();
        if !same_keys {
            self.remove(old, id);
            self.insert(new, id);
            return;
        }
        let (was, now) = (observed(old), observed(new));
        if was != now {
            let shared = match self.by_state.entry(was) {
                std::collections::btree_map::Entry::Occupied(mut ids) => {
                    let shared = ids.get_mut().take(id);
                    if ids.get().is_empty() {
                        ids.remove();
                    }
                    shared
                }
                std::collections::btree_map::Entry::Vacant(_) => None,
            };
            let shared = shared.unwrap_or_else(|| self.id(id));
            self.by_state.entry(now).or_default().insert(shared);
        }
        self.placed.remove(old);
        self.placed.add(new);
        self.uncount(old);
        self.count(new);
    }

    /// Adds the task to its service's counts.
    fn count(&mut self, task: &Task) {
        let tally = TaskTally::of(task);
        if !tally.is_empty() {
            let t = self.tallies.entry(task.service_id.clone()).or_default();
            t.running += tally.running;
            t.active += tally.active;
            t.completed += tally.completed;
        }
    }

    /// Takes the task out of its service's counts.
    fn uncount(&mut self, task: &Task) {
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

    pub(super) fn remove(&mut self, task: &Task, id: &str) {
        let key = self.slot_key(task, id);
        self.by_slot.remove(&key);
        if !task.node_id.is_empty() {
            let node = self.id(&task.node_id);
            self.by_node.remove(&(node, key.3.clone()));
        }
        drop(key);
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
        for shared in [id, &task.service_id, slot_node(task), &task.node_id] {
            self.release(shared);
        }
        self.placed.remove(task);
        self.uncount(task);
    }

    /// IDs of the service's tasks `within` a part of it, in (slot, node, ID) order.
    pub(super) fn of_service<'a>(
        &'a self,
        service: &'a str,
        within: Within<'a>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let (slot, node) = match within {
            Within::Service => (0, ""),
            Within::Slot(slot) | Within::SlotsFrom(slot) => (slot, ""),
            Within::Node(node) => (0, node),
        };
        let from: SlotKey = (service.into(), slot, node.into(), "".into());
        self.by_slot
            .range(from..)
            .take_while(move |(s, sl, n, _)| {
                &**s == service
                    && match within {
                        Within::Service => true,
                        Within::Slot(want) => *sl == want,
                        Within::SlotsFrom(_) => true,
                        Within::Node(want) => *sl == 0 && &**n == want,
                    }
            })
            .map(|(_, _, _, id)| &**id)
    }

    /// IDs of the tasks on `node`, in ID order.
    pub(super) fn on_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let from: (Id, Id) = (node.into(), "".into());
        self.by_node
            .range(from..)
            .take_while(move |(n, _)| &**n == node)
            .map(|(_, id)| &**id)
    }

    /// IDs of the tasks in observed state `state`, in ID order.
    pub(super) fn in_state(&self, state: i32) -> impl Iterator<Item = &str> {
        self.by_state
            .get(&state)
            .into_iter()
            .flatten()
            .map(|id| &**id)
    }

    /// IDs of the tasks in an observed state up to `last`, by state then ID.
    pub(super) fn up_to_state(&self, last: i32) -> impl Iterator<Item = &str> {
        self.by_state
            .range(..=last)
            .flat_map(|(_, ids)| ids)
            .map(|id| &**id)
    }

    /// IDs of the tasks with network attachments, in ID order.
    pub(super) fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|id| &**id)
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
            ("the indexes' shared IDs", Box::new(self.ids)),
            ("service tallies", Box::new(self.tallies)),
            ("placed (scheduler's per-node state)", Box::new(self.placed)),
        ]
    }

    /// How many IDs the indexes share (each service's, node's and task's once).
    #[cfg(test)]
    pub(super) fn shared_ids(&self) -> usize {
        self.ids.len()
    }

    /// What the tasks occupying nodes hold there.
    pub(super) fn placed(&self) -> &Placed {
        &self.placed
    }
}
