//! Task status reported by nodes: checked, then committed in one batch per report.

use proto::{StoreAction, Task, TaskStatusUpdate};

use crate::manager::update;
use crate::orchestrator::observed;
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
        .filter_map(|(task_id, status)| {
            let task = store.get::<Task>(&task_id)?;
            if task.node_id != node_id || status.state < observed(task) {
                return None;
            }
            if task.status.as_ref() == Some(&status) {
                return None;
            }
            let mut task = task.clone();
            task.status = Some(status);
            Some(update(task))
        })
        .collect()
}
