//! One copy of a service version's task spec for all of its tasks.
//!
//! Tasks reach the store decoded from Raft entries and snapshots, each with a copy of its
//! spec (about 1 KB), though every task of one service version has the same one. Before a
//! task is stored, [`SharedSpecs::share`] gives it an equal spec the store already holds: the
//! one of the task it replaces (a status update), else the one other tasks of its service
//! version hold (a new task, or any task as a snapshot is restored). Every clone of the
//! stored task (a watch event, a node's assignments, the objects a snapshot is encoded
//! from) then shares that copy too. Only memory changes: a task's spec is the same value
//! whichever copy it points to.

use std::collections::{BTreeMap, HashMap};

use proto::{Task, WeakTaskSpec};

/// The specs tasks hold, by service ID and spec version; weak, so a spec goes when its last
/// task does.
#[derive(Clone, Debug, Default)]
pub(super) struct SharedSpecs {
    by_service: HashMap<String, BTreeMap<u64, WeakTaskSpec>>,
    /// How many entries there are, and how many to allow (at least [`FIRST_PRUNE`]) before
    /// dropping the dead ones.
    entries: usize,
    prune_at: usize,
}

/// Entries allowed before the first pruning.
const FIRST_PRUNE: usize = 64;

impl SharedSpecs {
    /// Points `task`'s spec at an equal one already held: `replaced`'s (the stored task it
    /// replaces), else that of its service version's other tasks; otherwise its spec becomes
    /// the one its service version's next tasks share.
    pub(super) fn share(&mut self, task: &mut Task, replaced: Option<&Task>) {
        let Some(spec) = task.spec.as_mut() else {
            return;
        };
        if let Some(old) = replaced.and_then(|t| t.spec.as_ref()) {
            if *old == *spec {
                *spec = old.clone();
                return;
            }
        }
        let versions = match self.by_service.get_mut(task.service_id.as_str()) {
            Some(versions) => versions,
            None => self.by_service.entry(task.service_id.clone()).or_default(),
        };
        if let Some(held) = versions
            .get(&task.spec_version)
            .and_then(WeakTaskSpec::upgrade)
        {
            if held == *spec {
                *spec = held;
                return;
            }
        }
        if versions
            .insert(task.spec_version, spec.downgrade())
            .is_none()
        {
            self.entries += 1;
            if self.entries > self.prune_at.max(FIRST_PRUNE) {
                self.prune();
            }
        }
    }

    /// Drops the entries whose specs no task holds any more; the next pruning waits until
    /// the table has doubled, so the walks cost O(1) per insertion.
    fn prune(&mut self) {
        self.by_service.retain(|_, versions| {
            versions.retain(|_, spec| !spec.is_dead());
            !versions.is_empty()
        });
        self.entries = self.by_service.values().map(BTreeMap::len).sum();
        self.prune_at = 2 * self.entries;
    }
}
