//! A rollout (`service update`, `service rollback`): where it stands, from the update
//! status the manager keeps, and the wait for it to end.
//!
//! Apart from converging because a rollout ends when the manager says so (completed,
//! paused, rolled back), not when the tasks look right: the tasks shown are only those on
//! the new spec, and the exit code follows the update status, so scripts can trust it.

use std::ops::ControlFlow::{Break, Continue};

use anyhow::anyhow;
use proto::{Service, Task};

use super::converge::progress;
use super::screen::Screen;
use super::{follow, Following};
use crate::client::service::render;
use crate::client::Client;

/// Where a rollout stands, from the update status the manager keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Still rolling (forward or back).
    Rolling,
    /// The rollout the command started finished.
    Done,
    /// It stopped short of what the command asked: paused, or rolled back.
    Failed(String),
}

/// The update status as Docker's progress words it: `rollback: manually requested
/// rollback`, `update: update paused due to failure or early termination of task ...`:
/// the manager's message under `update` or `rollback`, or, without one, what the state
/// means in words (never the raw state name). `None` before any rollout.
pub fn status_line(state: proto::UpdateState, message: &str, rollback: bool) -> Option<String> {
    use proto::UpdateState as S;
    let (label, words) = match state {
        S::Unknown => return None,
        S::Updating => ("update", "update in progress"),
        S::Paused => ("update", "update paused"),
        S::Completed => ("update", "update completed"),
        S::RollbackStarted => ("rollback", "rollback in progress"),
        S::RollbackPaused => ("rollback", "rollback paused"),
        S::RollbackCompleted => ("rollback", "rollback completed"),
    };
    let label = if rollback { "rollback" } else { label };
    let text = if message.is_empty() { words } else { message };
    Some(format!("{label}: {text}"))
}

/// The lines of a rollout (the slots on the new spec as [`progress`] shows them, and the
/// update status) and where it stands; `rollback` says whether the command
/// asked for a rollback.
pub fn rollout(service: &Service, tasks: &[Task], rollback: bool) -> (Vec<String>, Rollout) {
    let name = render::service_name(service);
    // The slots as they reach the new spec: tasks on an older one are not shown.
    let template = service.spec.as_ref().and_then(|s| s.task_template.as_ref());
    let current: Vec<Task> = tasks
        .iter()
        .filter(|t| t.spec_version == service.spec_version || t.spec.as_deref() == template)
        .cloned()
        .collect();
    let mut lines = progress(service, &current, i64::MAX).lines;
    let status = service.update_status.clone().unwrap_or_default();
    let state = proto::UpdateState::try_from(status.state).unwrap_or_default();
    use proto::UpdateState as S;
    if let Some(line) = status_line(state, &status.message, rollback) {
        lines.push(line);
    }
    let message = status.message;
    let outcome = match (state, rollback) {
        (S::Completed, false) | (S::RollbackCompleted, true) => Rollout::Done,
        (S::Paused, _) | (S::RollbackPaused, _) => Rollout::Failed(format!(
            "the rollout of service {name} is paused: {message}; fix the service and run `skiff service update {name}` to resume, or `skiff service rollback {name}`"
        )),
        (S::RollbackCompleted, false) => Rollout::Failed(format!(
            "service {name} was rolled back to its previous spec: {}",
            message.strip_prefix("rollback completed: ").unwrap_or(&message)
        )),
        (S::Updating | S::Completed, true) => Rollout::Failed(format!(
            "the rollback of service {name} was replaced by a new update; see `skiff service inspect --pretty {name}`"
        )),
        _ => Rollout::Rolling,
    };
    (lines, outcome)
}

/// Polls until the rollout of service `id` (called `name`) ends, showing its progress
/// unless `quiet`; fails with the reason when it pauses or rolls back, so that scripts can
/// trust the exit code.
pub async fn wait_rollout(
    client: &Client,
    id: &str,
    name: &str,
    rollback: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(quiet);
    let following = Following {
        name,
        removed: "was removed during its rollout",
        what: "rollout",
    };
    follow(client, id, following, |service, tasks| {
        let tasks = super::converge::for_screen(&screen, &tasks);
        let (lines, outcome) = rollout(&service, &tasks, rollback);
        screen.show(&lines);
        match outcome {
            Rollout::Done => Break(Ok(())),
            Rollout::Failed(reason) => Break(Err(anyhow!(reason))),
            Rollout::Rolling => Continue(()),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use proto::TaskState;

    use super::*;
    use crate::client::service::progress::converge::tests::{replicated, task};

    #[test]
    fn rollouts_end_as_the_update_status_says() {
        use proto::{UpdateState, UpdateStatus};
        let mut s = replicated(2);
        s.spec_version = 2;
        let status = |state: UpdateState, message: &str| {
            Some(UpdateStatus {
                state: state as i32,
                message: message.into(),
                ..Default::default()
            })
        };
        let mut new = task("n", 1, TaskState::Running, 5);
        new.spec_version = 2;
        let old = task("o", 2, TaskState::Running, 1);
        s.update_status = status(UpdateState::Updating, "update in progress");
        let (lines, outcome) = rollout(&s, &[new, old], false);
        assert_eq!(lines[0], "overall progress: 1 out of 2 tasks");
        assert_eq!(lines.last().unwrap(), "update: update in progress");
        assert_eq!(outcome, Rollout::Rolling);
        s.update_status = status(UpdateState::Completed, "update completed");
        assert_eq!(rollout(&s, &[], false).1, Rollout::Done);
        s.update_status = status(
            UpdateState::Paused,
            "update paused due to failure of task x: boom",
        );
        assert!(
            matches!(rollout(&s, &[], false).1, Rollout::Failed(r) if r.contains("paused: update paused due to failure of task x: boom"))
        );
        s.update_status = status(
            UpdateState::RollbackStarted,
            "update rolled back due to failure",
        );
        assert_eq!(rollout(&s, &[], false).1, Rollout::Rolling);
        s.update_status = status(
            UpdateState::RollbackCompleted,
            "rollback completed: update rolled back due to failure",
        );
        assert_eq!(
            rollout(&s, &[], false).1,
            Rollout::Failed(
                "service web was rolled back to its previous spec: update rolled back due to failure"
                    .into()
            )
        );
        assert_eq!(rollout(&s, &[], true).1, Rollout::Done);
    }

    #[test]
    fn the_status_line_says_what_docker_says_never_the_raw_state() {
        use proto::UpdateState as S;
        for (state, message, rollback, want) in [
            (
                S::RollbackStarted,
                "manually requested rollback",
                true,
                Some("rollback: manually requested rollback"),
            ),
            (
                S::RollbackStarted,
                "update paused due to failure or early termination of task x",
                false,
                Some("rollback: update paused due to failure or early termination of task x"),
            ),
            (
                S::Paused,
                "update paused due to failure or early termination of task x",
                false,
                Some("update: update paused due to failure or early termination of task x"),
            ),
            (
                S::RollbackPaused,
                "",
                false,
                Some("rollback: rollback paused"),
            ),
            (S::Updating, "", false, Some("update: update in progress")),
            (S::Unknown, "", false, None),
        ] {
            let line = status_line(state, message, rollback);
            assert_eq!(line.as_deref(), want, "{state:?}");
            if let Some(line) = line {
                assert!(!line.contains('_'), "{line}");
            }
        }
    }
}
