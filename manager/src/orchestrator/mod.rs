//! The leader's reconciliation loop: orchestrators (replicated, global, jobs, with the restart
//! policy and the task reaper) then the scheduler, run whenever the store changes, each
//! committing its decisions in batches.
//!
//! The loop reacts to the watch stream (nothing polls); a short debounce gathers a burst of
//! changes (a node's worth of status updates) into one round.

mod plan;
mod restart;
mod task;
mod update;

pub use task::{is_active, is_terminal, observed};
pub use update::apply_spec;

use std::sync::Arc;
use std::time::Duration;

use proto::{Node, StoreAction, Task, TaskState};
use tokio::sync::watch;

use crate::manager::{now_ms, update, Manager};
use crate::scheduler::{self, Decision};
use crate::store::ObjectStore;

/// Changes committed per Raft entry: large enough to place thousands of tasks a second,
/// small enough to stay far below the message size limit.
const BATCH: usize = 1000;
/// How long to gather changes before a round.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Task history per slot when the cluster sets none.
const DEFAULT_HISTORY: usize = 5;

/// Runs on every manager; acts only while this manager leads.
pub async fn run(manager: Arc<Manager>, mut stop: watch::Receiver<bool>) {
    let mut leading = manager.raft().metrics();
    loop {
        // Wait for leadership.
        tokio::select! {
            r = leading.wait_for(|m| m.current_leader == Some(m.id) && m.state == openraft::ServerState::Leader) => {
                if r.is_err() { return; }
            }
            _ = stop.changed() => return,
        }
        let (_, mut events) = manager.store().subscribe();
        let mut wake_at: Option<i64> = None;
        while manager.raft().is_leader() {
            match round(&manager).await {
                Ok(next) => wake_at = next,
                Err(e) => {
                    tracing::debug!(error = %e.message(), "reconciliation round failed; retrying")
                }
            }
            let sleep = wake_at.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64)
            });
            tokio::select! {
                r = events.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r { return; }
                    tokio::time::sleep(DEBOUNCE).await;
                    // Drain what arrived meanwhile: one round covers it all.
                    while events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// One reconciliation: orchestrate, then schedule. Returns when to wake up at the latest.
async fn round(manager: &Manager) -> Result<Option<i64>, tonic::Status> {
    let (actions, wake_at) = {
        let store = manager.store().read();
        let history = store
            .cluster()
            .and_then(|c| c.spec.as_ref()?.orchestration.as_ref())
            .map(|o| o.task_history_retention_limit as usize)
            .filter(|h| *h > 0)
            .unwrap_or(DEFAULT_HISTORY);
        let plan = plan::reconcile(&store, now_ms(), history);
        (plan.actions, plan.wake_at)
    };
    commit(manager, actions).await?;
    let placements = schedule(&manager.store().read());
    commit(manager, placements).await?;
    Ok(wake_at)
}

async fn commit(manager: &Manager, actions: Vec<StoreAction>) -> Result<(), tonic::Status> {
    let mut actions = actions;
    while !actions.is_empty() {
        let rest = actions.split_off(actions.len().min(BATCH));
        manager.write(actions).await?;
        actions = rest;
    }
    Ok(())
}

/// Places pending tasks; records why the others cannot be placed.
fn schedule(store: &ObjectStore) -> Vec<StoreAction> {
    let pending: Vec<&Task> = store
        .list::<Task>()
        .filter(|t| {
            is_active(t)
                && t.node_id.is_empty()
                && observed(t) == TaskState::Pending as i32
                && crate::allocator::is_allocated(store, t)
        })
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    let now = now_ms();
    scheduler::schedule(store.list::<Node>(), store.list::<Task>(), &pending)
        .into_iter()
        .filter_map(|decision| match decision {
            Decision::Assign { task_id, node_id } => {
                let mut task = store.get::<Task>(&task_id)?.clone();
                task.node_id = node_id;
                let status = task.status.get_or_insert_with(Default::default);
                status.state = TaskState::Assigned as i32;
                status.timestamp = now;
                status.message = "assigned to a node by the scheduler".into();
                status.err.clear();
                Some(update(task))
            }
            Decision::Unplaceable { task_id, reason } => {
                let task = store.get::<Task>(&task_id)?;
                let status = task.status.clone().unwrap_or_default();
                if status.err == reason {
                    return None;
                }
                let mut task = task.clone();
                let status = task.status.get_or_insert_with(Default::default);
                status.err = reason;
                status.message = "pending task scheduling".into();
                Some(update(task))
            }
        })
        .collect()
}
