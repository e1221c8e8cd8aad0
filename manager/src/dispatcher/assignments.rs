//! What each node is told to run: its tasks, first all of them, then the changes.

use std::collections::HashMap;

use proto::store_object::Object;
use proto::{
    assignment, Assignment, AssignmentAction, AssignmentChange, AssignmentsMessage,
    AssignmentsType, StoreActionKind, StoreEvent, Task,
};

use crate::allocator;
use crate::orchestrator::{is_active, is_terminal, observed};
use crate::store::{ObjectStore, StoredObject};

/// Whether `task` is still the node's business: to run, to stop, or to report on.
pub fn assigned_to(task: &Task, node_id: &str) -> bool {
    task.node_id == node_id && (is_active(task) || !is_terminal(observed(task)))
}

/// Whether to send `task` to `node_id` now: it is the node's business and, if the node has
/// not taken it yet, it has its network addresses (a global service's task is assigned to
/// its node before the allocator has run).
fn deliverable(store: &ObjectStore, task: &Task, node_id: &str) -> bool {
    assigned_to(task, node_id)
        && (!allocator::not_delivered(task) || allocator::is_allocated(store, task))
}

/// The tasks last sent to one node, to send only what changed.
#[derive(Default)]
pub struct NodeAssignments {
    sent: HashMap<String, u64>,
}

fn change(action: AssignmentAction, task: Task) -> AssignmentChange {
    AssignmentChange {
        action: action as i32,
        assignment: Some(Assignment {
            item: Some(assignment::Item::Task(task)),
        }),
    }
}

impl NodeAssignments {
    /// Everything assigned to `node_id` now.
    pub fn complete(&mut self, store: &ObjectStore, node_id: &str) -> AssignmentsMessage {
        self.sent.clear();
        let changes = store
            .list::<Task>()
            .filter(|t| deliverable(store, t, node_id))
            .map(|t| {
                self.sent.insert(t.id().to_owned(), t.version());
                change(AssignmentAction::Update, t.clone())
            })
            .collect();
        AssignmentsMessage {
            r#type: AssignmentsType::Complete as i32,
            changes,
            peers: Vec::new(),
        }
    }

    /// The changes `events` make to `node_id`'s assignments, if any.
    pub fn incremental(
        &mut self,
        store: &ObjectStore,
        events: &[StoreEvent],
        node_id: &str,
    ) -> Option<AssignmentsMessage> {
        let mut changes = Vec::new();
        for event in events {
            let Some(Object::Task(task)) = event.object.as_ref().and_then(|o| o.object.as_ref())
            else {
                continue;
            };
            let deleted = event.kind == StoreActionKind::Delete as i32;
            let known = self.sent.contains_key(task.id());
            if !deleted && deliverable(store, task, node_id) {
                if self.sent.insert(task.id().to_owned(), task.version()) != Some(task.version()) {
                    changes.push(change(AssignmentAction::Update, task.clone()));
                }
            } else if known {
                self.sent.remove(task.id());
                changes.push(change(AssignmentAction::Remove, task.clone()));
            }
        }
        (!changes.is_empty()).then_some(AssignmentsMessage {
            r#type: AssignmentsType::Incremental as i32,
            changes,
            peers: Vec::new(),
        })
    }
}
