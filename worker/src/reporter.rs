//! Task status on its way to the manager: the latest status per task, marked dirty until a
//! session sends it. Controllers never wait on the network; the session sends in batches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use proto::{TaskStatus, TaskStatusUpdate};
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    latest: HashMap<String, TaskStatus>,
    dirty: HashSet<String>,
}

/// Shared between the controllers (which report) and the session (which sends).
#[derive(Clone, Default)]
pub struct Reporter {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

impl Reporter {
    /// Records a task's new status.
    pub fn report(&self, task_id: &str, status: TaskStatus) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.insert(task_id.to_owned(), status);
        inner.dirty.insert(task_id.to_owned());
        drop(inner);
        self.notify.notify_one();
    }

    /// The latest status reported for `task_id`, sent yet or not.
    pub fn latest(&self, task_id: &str) -> Option<TaskStatus> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.get(task_id).cloned()
    }

    /// How many of the tasks the node still reports on are in each state (for metrics).
    pub fn count_by_state(&self) -> HashMap<i32, usize> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts = HashMap::new();
        for status in inner.latest.values() {
            *counts.entry(status.state).or_default() += 1;
        }
        counts
    }

    /// Forgets a task the manager no longer assigns.
    pub fn forget(&self, task_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.remove(task_id);
        inner.dirty.remove(task_id);
    }

    /// Marks every known status for sending again (a new session with a new leader).
    pub fn resend_all(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<String> = inner.latest.keys().cloned().collect();
        inner.dirty.extend(ids);
        drop(inner);
        self.notify.notify_one();
    }

    /// Waits until something is to be sent, then takes it.
    pub async fn next_batch(&self) -> Vec<TaskStatusUpdate> {
        loop {
            let notified = self.notify.notified();
            let batch = self.take();
            if !batch.is_empty() {
                return batch;
            }
            notified.await;
        }
    }

    fn take(&self) -> Vec<TaskStatusUpdate> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<String> = inner.dirty.drain().collect();
        ids.into_iter()
            .filter_map(|id| {
                let status = inner.latest.get(&id)?.clone();
                Some(TaskStatusUpdate {
                    task_id: id,
                    status: Some(status),
                })
            })
            .collect()
    }

    /// Puts a batch that could not be sent back, unless newer statuses replaced it.
    pub fn requeue(&self, batch: Vec<TaskStatusUpdate>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for update in batch {
            if inner.latest.contains_key(&update.task_id) {
                inner.dirty.insert(update.task_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_only_the_latest_status_and_resends_on_request() {
        let r = Reporter::default();
        for state in [1, 2, 3] {
            r.report(
                "t1",
                TaskStatus {
                    state,
                    ..Default::default()
                },
            );
        }
        let batch = r.next_batch().await;
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].status.as_ref().unwrap().state, 3);
        r.requeue(batch);
        assert_eq!(r.next_batch().await.len(), 1);
        r.resend_all();
        assert_eq!(r.next_batch().await.len(), 1);
        r.forget("t1");
        r.resend_all();
        assert!(r.take().is_empty());
    }
}
