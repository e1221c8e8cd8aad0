//! The leader's reconciliation loop: orchestrators (replicated, global, jobs, with the restart
//! policy and the task reaper) then the scheduler, run whenever the store changes, each
//! committing its decisions in batches.
//!
//! The loop reacts to the watch stream (nothing polls) as every leader loop does
//! (`crate::leader`); it also wakes when a restart delay or an update delay ends. A round
//! reconciles only the services, slots and nodes touched since the last one and the slots
//! whose wake-up time came (`changes.rs`); everything when what changed is unknown.

mod changes;
mod plan;
mod restart;
mod task;

pub use task::new_task;
mod update;

pub use update::apply_spec;

use std::time::Duration;

use proto::{now_ms, Node, StoreAction, Task, TaskState};
use tokio::sync::watch;

use self::changes::{Changes, Scope, Wake};
use crate::leader::{self, Rounds};
use crate::lifecycle::is_active;
use crate::scheduler::{self, Decision};
use crate::settings::DEFAULT_TASK_HISTORY;
use crate::store::{update, ObjectStore, Store, StoreError, WatchEvent};

/// The longest wait between rounds: a missed wake-up costs at most this.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// How many tasks one round makes for empty slots, at most: a few seconds of commits, after
/// which the loop reads what was committed meanwhile and the next round goes on.
const NEW_TASKS_PER_ROUND: usize = 50 * leader::BATCH;

/// Runs on every manager; acts only while this manager leads.
pub async fn run(store: Store, stop: watch::Receiver<bool>) {
    leader::run(store, stop, Reconciler::default()).await
}

/// The reconciliation rounds of one leader.
#[derive(Default)]
struct Reconciler {
    /// What changed since the last round, and when a round asked to run again.
    changes: Changes,
}

impl Rounds for Reconciler {
    fn start(&mut self) {
        self.changes = Changes::default();
    }

    fn observe(&mut self, event: &WatchEvent) {
        self.changes.observe(event);
    }

    fn lagged(&mut self) {
        self.changes.everything();
    }

    async fn round(&mut self, store: &Store) -> Duration {
        let scope = self.changes.take(now_ms());
        match round(store, &scope).await {
            Ok(wakes) => self.changes.done(&scope, &wakes),
            Err(e) => {
                tracing::debug!(error = %e, "reconciliation round failed; retrying");
                self.changes.failed(scope);
            }
        }
        self.changes.wake_at().map_or(MAX_WAIT, |at| {
            Duration::from_millis((at - now_ms()).clamp(0, MAX_WAIT.as_millis() as i64) as u64)
        })
    }
}

/// One reconciliation of `scope`: orchestrate, then schedule. Returns what to look at again
/// when.
async fn round(store: &Store, scope: &Scope) -> Result<Vec<Wake>, StoreError> {
    let (actions, wakes) = {
        let store = store.read();
        let history = store
            .cluster()
            .and_then(|c| c.spec.as_ref()?.orchestration.as_ref())
            .map(|o| o.task_history_retention_limit)
            .filter(|h| *h > 0)
            .unwrap_or(DEFAULT_TASK_HISTORY) as usize;
        let started = std::time::Instant::now();
        let plan = plan::reconcile_in(&store, scope, now_ms(), history, NEW_TASKS_PER_ROUND);
        tracing::debug!(
            scope = %scope,
            tasks_read = plan.tasks_read,
            actions = plan.actions.len(),
            wakes = plan.wakes.len(),
            ms = started.elapsed().as_millis() as u64,
            "planned a reconciliation round"
        );
        (plan.actions, plan.wakes)
    };
    leader::commit(store, actions).await?;
    let placements = schedule(&store.read());
    leader::commit(store, placements).await?;
    Ok(wakes)
}

/// Places pending tasks; records why the others cannot be placed. The store's indexes give
/// the pending tasks and what each node already holds: no walk over every task.
fn schedule(store: &ObjectStore) -> Vec<StoreAction> {
    let pending: Vec<&Task> = store
        .tasks_in_state(TaskState::Pending)
        .filter(|t| {
            is_active(t) && t.node_id.is_empty() && crate::allocator::is_allocated(store, t)
        })
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    let now = now_ms();
    scheduler::schedule_placed(store.list::<Node>(), store.placed(), &pending)
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
