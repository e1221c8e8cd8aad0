//! Task facts every orchestrator shares (those other subsystems share too are in
//! `crate::lifecycle`).

use proto::{now_ms, Service, Task, TaskState, TaskStatus};

use crate::lifecycle::observed;
use crate::store::StoredObject;

/// Whether the task ran and exited by itself (as opposed to being stopped or lost).
pub fn exited(task: &Task) -> bool {
    matches!(
        TaskState::try_from(observed(task)),
        Ok(TaskState::Complete | TaskState::Failed | TaskState::Rejected)
    )
}

/// When the task last changed state.
pub fn status_time(task: &Task) -> i64 {
    task.status
        .as_ref()
        .map_or(task.meta().created_at, |s| s.timestamp)
}

/// A new task of `service` for `slot` (replicated) or `node_id` (global), made from the
/// service's current template.
pub fn new_task(service: &Service, slot: u64, node_id: Option<&str>) -> Task {
    let (state, message) = match node_id {
        Some(_) => (TaskState::Assigned, "assigned to its node"),
        None => (TaskState::Pending, "waiting for the scheduler"),
    };
    Task {
        meta: Some(proto::Meta {
            id: proto::id::new_id(),
            ..Default::default()
        }),
        service_id: service.id().to_owned(),
        slot,
        node_id: node_id.unwrap_or_default().to_owned(),
        spec: service
            .spec
            .as_ref()
            .and_then(|s| s.task_template.clone())
            .map(Into::into),
        spec_version: service.spec_version,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            timestamp: now_ms(),
            state: state as i32,
            message: message.into(),
            ..Default::default()
        }),
        networks: Vec::new(),
        endpoint: service.endpoint.clone(),
        service_name: service.name().unwrap_or_default().to_owned(),
        job_iteration: service.job_status.as_ref().map_or(0, |j| j.job_iteration),
    }
}

/// `task` with a new desired state.
pub fn with_desired(task: &Task, desired: TaskState) -> Task {
    let mut t = task.clone();
    t.desired_state = desired as i32;
    t
}
