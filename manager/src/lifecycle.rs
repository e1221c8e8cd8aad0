//! Where a task is in its life: the facts the orchestrators, the allocator and the
//! dispatcher read the same way (a task that holds addresses, one to deliver, one to
//! replace). Below all of them, so none needs another to ask.

use proto::{Task, TaskState};

/// Whether an observed state is final: the task will never run again.
pub fn is_terminal(state: i32) -> bool {
    state >= TaskState::Complete as i32
}

/// The task's observed state.
pub fn observed(task: &Task) -> i32 {
    task.status
        .as_ref()
        .map_or(TaskState::New as i32, |s| s.state)
}

/// Whether the orchestrator still wants the task to run.
pub fn is_active(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}
