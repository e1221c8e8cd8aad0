//! Task status reported by nodes: checked, then committed in one batch per report.

use proto::{StoreAction, Task, TaskState, TaskStatusUpdate};

use crate::lifecycle::observed;
use crate::store::update;
use crate::store::ObjectStore;

/// The updates of `reports` that are valid: the task exists, runs on the reporting node,
/// and its state only moves forward (reports can arrive late or twice).
pub fn accepted(
    store: &ObjectStore,
    node_id: &str,
    reports: Vec<TaskStatusUpdate>,
) -> Vec<StoreAction> {
    let mut latest: std::collections::HashMap<String, proto::TaskStatus> =
        std::collections::HashMap::new();
    for report in reports {
        let Some(status) = report.status else {
            continue;
        };
        match latest.get(&report.task_id) {
            Some(seen) if seen.state > status.state => {}
            _ => {
                latest.insert(report.task_id, status);
            }
        }
    }
    latest
        .into_iter()
        .filter_map(|(task_id, mut status)| {
            let task = store.get::<Task>(&task_id)?;
            if task.node_id != node_id || status.state < observed(task) {
                return None;
            }
            status.running_since = match task.status.as_ref().map_or(0, |s| s.running_since) {
                0 if status.state == TaskState::Running as i32 => status.timestamp,
                since => since,
            };
            if task.status.as_ref() == Some(&status) {
                return None;
            }
            let mut task = task.clone();
            task.status = Some(status);
            Some(update(task))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create;
    use proto::{Meta, StoreBatch, TaskStatus};

    fn report(state: TaskState, at: i64) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: "t".into(),
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: at,
                ..Default::default()
            }),
        }
    }

    /// Applies the accepted reports to `store`; returns the task's running_since.
    fn apply(store: &mut ObjectStore, index: u64, reports: Vec<TaskStatusUpdate>) -> i64 {
        let actions = accepted(store, "n1", reports);
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                index,
            )
            .unwrap();
        let task = store.get::<Task>("t").unwrap();
        task.status.as_ref().unwrap().running_since
    }

    #[test]
    fn the_first_running_report_is_remembered() {
        let mut store = ObjectStore::default();
        let task = Task {
            meta: Some(Meta {
                id: "t".into(),
                ..Default::default()
            }),
            node_id: "n1".into(),
            ..Default::default()
        };
        store
            .apply(
                &StoreBatch {
                    actions: vec![create(task)],
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        assert_eq!(
            apply(&mut store, 2, vec![report(TaskState::Starting, 10)]),
            0
        );
        assert_eq!(
            apply(&mut store, 3, vec![report(TaskState::Running, 20)]),
            20
        );
        // A later report (a health change, an exit) keeps it.
        let since = apply(&mut store, 4, vec![report(TaskState::Failed, 90)]);
        assert_eq!(since, 20);
        let status = store.get::<Task>("t").unwrap().status.clone().unwrap();
        assert_eq!(status.state, TaskState::Failed as i32);
    }
}
