//! The updater: rolls a changed task template through a service's tasks, a few slots at a
//! time, and rolls it back when the new version fails.
//!
//! Pure, like the rest of the orchestrator: [`decide`] reads one service and its slots and
//! says which outdated tasks to replace now and what the service's update status becomes;
//! `plan.rs` turns that into store changes. Every fact it needs is in the store (each
//! task's `spec_version` and `created_at`, the service's `update_status` with the time the
//! rollout started), so a new leader carries on exactly where the old one was.
//!
//! Like swarmkit, parallelism is a sliding window rather than strict batches: a slot is
//! "busy" from the moment its old task is told to stop until its new task runs (and is
//! healthy, where it reports health) and the update delay after that has passed; at most
//! `parallelism` slots are busy at once, so never more than that many tasks are down.
//!
//! A new task that fails to start, or ends within the monitor window after it started
//! running (`TaskStatus.running_since`, kept by the dispatcher), counts as a failure. Once
//! the failures exceed `max_failure_ratio` of the slots, the failure action applies; below
//! it (or with `continue`), a failed slot is left to the restart policy and no longer holds
//! the rollout up. After the last slot, the rollout waits out one monitor window before it
//! says "completed".

use proto::{
    FailureAction, HealthState, Service, ServiceSpec, Task, TaskState, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus,
};

use super::task::{exited, status_time};
use crate::lifecycle::observed;
use crate::store::StoredObject;

/// Parallelism when the spec sets none (Docker's).
const DEFAULT_PARALLELISM: u64 = 1;
/// Monitor window when the spec sets none (Docker's).
const DEFAULT_MONITOR_MS: u64 = 5_000;

/// What the orchestrator knows about one slot (replicated) or node (global).
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a, K> {
    /// The slot number or node ID.
    pub key: K,
    /// The newest task meant to run there, if any (none: the slot is down, its old task
    /// stopping or a new one on its way).
    pub live: Option<&'a Task>,
    /// Every task of the slot, for counting failures.
    pub history: &'a [&'a Task],
}

/// What the updater decided for one service.
#[derive(Debug)]
pub struct Rollout<'a, K> {
    /// Outdated tasks to replace now, with their slots.
    pub replace: Vec<(K, &'a Task)>,
    /// Replace stop-first (stop the old, then start the new) or start-first.
    pub order: UpdateOrder,
    /// The update status to store, when it changes.
    pub status: Option<UpdateStatus>,
    /// Go back to the previous spec (the failure action was `rollback`).
    pub rollback: bool,
    /// When to look again even if nothing changes (a delay or monitor window ends), Unix ms.
    pub wake_at: Option<i64>,
}

/// Whether the update status says a rollout is in progress, and whether it is a rollback.
fn rolling(service: &Service) -> Option<bool> {
    match service.update_status.as_ref().map(|s| s.state()) {
        Some(UpdateState::Updating) => Some(false),
        Some(UpdateState::RollbackStarted) => Some(true),
        _ => None,
    }
}

/// Whether a rollout (or a rollback) is in progress: its next step looks at every slot.
pub fn in_progress(service: &Service) -> bool {
    rolling(service).is_some()
}

/// The policy of the rollout in progress: the update config, or for a rollback the rollback
/// config of the spec being rolled back from (what the user set along with the bad change).
pub fn config(service: &Service, rollback: bool) -> UpdateConfig {
    let spec = service.spec.as_ref();
    let chosen = if rollback {
        service
            .previous_spec
            .as_ref()
            .and_then(|p| p.rollback_config.as_ref())
            .or_else(|| spec.and_then(|s| s.rollback_config.as_ref()))
    } else {
        spec.and_then(|s| s.update_config.as_ref())
    };
    chosen.cloned().unwrap_or_default()
}

/// Whether a task runs, and is healthy if it reports its health: what a rollout waits for
/// before it calls a slot done.
pub fn ready(task: &Task) -> bool {
    let health = task.status.as_ref().map_or(0, |s| s.health);
    observed(task) == TaskState::Running as i32
        && (health == HealthState::None as i32 || health == HealthState::Healthy as i32)
}

/// Whether `task` runs something other than the service's current template. A task of an
/// older version with the same template (the untouched slots of a rollback) is up to date.
pub fn outdated(service: &Service, task: &Task) -> bool {
    task.spec_version != service.spec_version
        && task.spec.as_deref() != service.spec.as_ref().and_then(|s| s.task_template.as_ref())
}

/// Whether `task` was made by the rollout in progress.
fn of_rollout(service: &Service, task: &Task, started_at: i64) -> bool {
    task.spec_version == service.spec_version && task.meta().created_at >= started_at
}

/// Whether a task of the rollout failed to start, or ended within the monitor window after
/// it started running.
fn failed_early(task: &Task, monitor_ms: i64) -> bool {
    let since = task.status.as_ref().map_or(0, |s| s.running_since);
    exited(task) && (since == 0 || status_time(task) - since <= monitor_ms)
}

/// Decides the next step of the rollout of `service`, if one is in progress.
pub fn decide<'a, K: Copy>(service: &Service, slots: &[Slot<'a, K>], now: i64) -> Rollout<'a, K> {
    let Some(rolling_back) = rolling(service) else {
        return Rollout::new(UpdateOrder::StopFirst);
    };
    let cfg = config(service, rolling_back);
    let mut out = Rollout::new(cfg.order());
    let status = service.update_status.clone().unwrap_or_default();
    let started_at = status.started_at;
    let monitor = cfg.monitor_ms.unwrap_or(DEFAULT_MONITOR_MS) as i64;
    let delay = cfg.delay_ms as i64;

    // Failures so far, and the failure action once there are too many.
    let failures: Vec<&Task> = slots
        .iter()
        .flat_map(|s| s.history.iter().copied())
        .filter(|t| of_rollout(service, t, started_at) && failed_early(t, monitor))
        .collect();
    let total = slots.len().max(1) as f32;
    if let Some(last) = failures.iter().max_by_key(|t| status_time(t)) {
        if failures.len() as f32 / total > cfg.max_failure_ratio {
            let why = failure_text(last);
            match (cfg.failure_action(), rolling_back) {
                (FailureAction::Continue, _) => {}
                (FailureAction::Rollback, false) => {
                    out.rollback = true;
                    out.status = Some(UpdateStatus {
                        state: UpdateState::RollbackStarted as i32,
                        started_at: now,
                        completed_at: 0,
                        message: format!(
                            "update rolled back due to failure or early termination of task {why}"
                        ),
                    });
                    return out;
                }
                (_, _) => {
                    let (state, what) = if rolling_back {
                        (UpdateState::RollbackPaused, "rollback")
                    } else {
                        (UpdateState::Paused, "update")
                    };
                    out.status = Some(UpdateStatus {
                        state: state as i32,
                        message: format!(
                            "{what} paused due to failure or early termination of task {why}"
                        ),
                        ..status
                    });
                    return out;
                }
            }
        }
    }

    // Which slots are busy, which wait for their turn.
    let mut busy = 0usize;
    let mut waiting = Vec::new();
    let mut last_ready = None::<i64>;
    for slot in slots {
        // A slot whose new task failed (and the failures are tolerated) no longer holds the
        // rollout up: the restart policy retries it, and an old task left there stays.
        let failed_here = slot
            .history
            .iter()
            .any(|t| of_rollout(service, t, started_at) && exited(t));
        let Some(task) = slot.live else {
            // Down: its old task is stopping, or a new one is on its way.
            if !failed_here {
                busy += 1;
            }
            continue;
        };
        if outdated(service, task) {
            if !failed_here {
                waiting.push((slot.key, task));
            }
            continue;
        }
        if !ready(task) {
            if !failed_here {
                busy += 1;
            }
            continue;
        }
        if of_rollout(service, task, started_at) {
            let ready_at = status_time(task);
            last_ready = Some(last_ready.map_or(ready_at, |l| l.max(ready_at)));
            if now < ready_at + delay {
                busy += 1;
                out.wake(ready_at + delay);
            }
        }
    }

    if waiting.is_empty() && busy == 0 {
        // Every slot is on the new spec: done once the last new task has been watched for
        // a monitor window.
        let done_at = last_ready.map_or(now, |l| l + monitor);
        if now < done_at {
            out.wake(done_at);
            return out;
        }
        // A rollback keeps saying why it happened.
        let (state, message) = if rolling_back {
            (
                UpdateState::RollbackCompleted,
                format!("rollback completed: {}", status.message),
            )
        } else {
            (UpdateState::Completed, "update completed".to_string())
        };
        out.status = Some(UpdateStatus {
            state: state as i32,
            completed_at: now,
            message,
            ..status
        });
        return out;
    }
    let parallelism = cfg.parallelism.unwrap_or(DEFAULT_PARALLELISM) as usize;
    let room = if parallelism == 0 {
        waiting.len()
    } else {
        parallelism.saturating_sub(busy)
    };
    waiting.truncate(room);
    out.replace = waiting;
    out
}

impl<K> Rollout<'_, K> {
    fn new(order: UpdateOrder) -> Self {
        Rollout {
            replace: Vec::new(),
            order,
            status: None,
            rollback: false,
            wake_at: None,
        }
    }

    fn wake(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// `<task ID>: <why it ended>`, for the status message.
fn failure_text(task: &Task) -> String {
    let status = task.status.clone().unwrap_or_default();
    let why = if !status.err.is_empty() {
        status.err
    } else if !status.message.is_empty() {
        status.message
    } else {
        format!("it ended ({})", observed_name(task))
    };
    format!("{}: {why}", task.id())
}

fn observed_name(task: &Task) -> String {
    TaskState::try_from(observed(task))
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Gives `service` a new spec. A changed task template starts a rollout (a rollback when
/// `rollback`, i.e. the spec is the previous one): the spec version goes up, the old spec is
/// kept for a later rollback, and the update status says a rollout started at `now`. An
/// unchanged template resumes a paused rollout, as `docker service update` does.
pub fn apply_spec(service: &mut Service, spec: ServiceSpec, rollback: bool, now: i64) {
    let old = service.spec.take().unwrap_or_default();
    let rolls = matches!(
        spec.mode,
        Some(proto::service_spec::Mode::Replicated(_) | proto::service_spec::Mode::Global(_))
    );
    if spec.task_template != old.task_template {
        service.spec_version += 1;
        service.previous_spec = Some(old);
        if rolls {
            let (state, message) = if rollback {
                (UpdateState::RollbackStarted, "manually requested rollback")
            } else {
                (UpdateState::Updating, "update in progress")
            };
            service.update_status = Some(UpdateStatus {
                state: state as i32,
                started_at: now,
                completed_at: 0,
                message: message.into(),
            });
        }
    } else if let Some(status) = service.update_status.as_mut() {
        let resumed = match status.state() {
            UpdateState::Paused => Some((UpdateState::Updating, "update resumed")),
            UpdateState::RollbackPaused => Some((UpdateState::RollbackStarted, "rollback resumed")),
            _ => None,
        };
        if let Some((state, message)) = resumed {
            // Failures before the resume no longer count against it.
            *status = UpdateStatus {
                state: state as i32,
                started_at: now,
                completed_at: 0,
                message: message.into(),
            };
        }
    }
    service.spec = Some(spec);
}

/// `service` going back to its previous spec by itself (failure action `rollback`), with
/// `status` saying why.
pub fn rolled_back(service: &Service, status: UpdateStatus) -> Service {
    let mut s = service.clone();
    let previous = s.previous_spec.clone().unwrap_or_default();
    apply_spec(&mut s, previous, true, status.started_at);
    s.update_status = Some(status);
    s
}

#[cfg(test)]
mod tests;
