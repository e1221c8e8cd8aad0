//! What a node was last sent of each task, so that its assignments leave out the updates it
//! has no use for: those that change only the task's status and meta. The status is what
//! the node itself reported; sending each of its reports (accepted, preparing, starting,
//! running) back to it as a whole task multiplied the traffic of every task start and had
//! the node save each copy to disk. SwarmKit's dispatcher leaves them out the same way.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

use prost::Message;
use proto::{Task, TaskState, WeakTaskSpec};

use crate::lifecycle::observed;
use crate::store::StoredObject;

/// One task as last sent to a node: its version, and what of it the node acts on.
#[derive(Debug)]
pub(super) struct SentTask {
    version: u64,
    /// The task's spec, compared by address first (tasks share their service version's);
    /// weak, so that a sent task does not keep a spec alive.
    spec: Option<WeakTaskSpec>,
    /// A hash of the rest of the task but its status and meta (its node, desired state,
    /// networks, endpoint, ...): 8 bytes a task where the fields themselves would be
    /// ~150, and a collision, one in 2^64 per change, would hold an update back only
    /// until the node's next session.
    rest: u64,
}

impl SentTask {
    pub(super) fn of(task: &Task) -> Self {
        let rest = Task {
            meta: None,
            status: None,
            spec: None,
            ..task.clone()
        };
        let mut hasher = DefaultHasher::new();
        hasher.write(&rest.encode_to_vec());
        Self {
            version: task.version(),
            spec: task.spec.as_ref().map(|s| s.downgrade()),
            rest: hasher.finish(),
        }
    }

    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// Whether a node that was sent `self` must be sent `now`, the record of `task`, a later
    /// version: not for a change of its status or meta alone once the node has taken it. Up
    /// to ASSIGNED the status is the managers' own, and those changes go out.
    pub(super) fn must_send(&self, now: &Self, task: &Task) -> bool {
        observed(task) <= TaskState::Assigned as i32
            || self.rest != now.rest
            || !same_spec(self.spec.as_ref(), now.spec.as_ref())
    }
}

/// Whether two sent specs are equal: the same one, or two copies alike.
fn same_spec(a: Option<&WeakTaskSpec>, b: Option<&WeakTaskSpec>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a.ptr_eq(b) => true,
        (Some(a), Some(b)) => match (a.upgrade(), b.upgrade()) {
            (Some(a), Some(b)) => *a == *b,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proto::{Meta, NetworkAttachment, SharedTaskSpec, TaskSpec, TaskStatus};

    use super::*;

    fn task(version: u64, state: TaskState, spec: &SharedTaskSpec) -> Task {
        Task {
            meta: Some(Meta {
                id: "t1".into(),
                version,
                ..Default::default()
            }),
            node_id: "n1".into(),
            spec: Some(spec.clone()),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                message: format!("{state:?}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn must_send(before: &Task, after: &Task) -> bool {
        let sent = SentTask::of(before);
        sent.version() != after.version() && sent.must_send(&SentTask::of(after), after)
    }

    #[test]
    fn a_node_s_own_status_reports_are_not_sent_back_to_it() {
        let spec = SharedTaskSpec::from(TaskSpec::default());
        let sent = task(3, TaskState::Assigned, &spec);
        for state in [TaskState::Accepted, TaskState::Starting, TaskState::Running] {
            assert!(!must_send(&sent, &task(4, state, &spec)), "{state:?}");
        }
        assert!(!must_send(&sent, &task(3, TaskState::Assigned, &spec)));
    }

    #[test]
    fn what_the_node_acts_on_is_sent() {
        let spec = SharedTaskSpec::from(TaskSpec::default());
        let sent = task(3, TaskState::Running, &spec);
        let mut stop = task(4, TaskState::Running, &spec);
        stop.desired_state = TaskState::Shutdown as i32;
        assert!(must_send(&sent, &stop));
        let mut attached = task(4, TaskState::Running, &spec);
        attached.networks.push(NetworkAttachment {
            network_id: "net".into(),
            ..Default::default()
        });
        assert!(must_send(&sent, &attached));
        let other = TaskSpec {
            force_update: 1,
            ..Default::default()
        };
        let respecified = task(4, TaskState::Running, &SharedTaskSpec::from(other));
        assert!(must_send(&sent, &respecified));
        // The managers' own states go out even when nothing else changed.
        let earlier = task(1, TaskState::Pending, &spec);
        assert!(must_send(&earlier, &task(2, TaskState::Assigned, &spec)));
    }

    #[test]
    fn an_equal_copy_of_the_spec_is_the_same_spec() {
        let spec = SharedTaskSpec::from(TaskSpec::default());
        let copy = SharedTaskSpec::from(TaskSpec::default());
        let sent = task(3, TaskState::Assigned, &spec);
        assert!(!must_send(&sent, &task(4, TaskState::Running, &copy)));
    }
}
