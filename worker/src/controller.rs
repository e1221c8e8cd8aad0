//! One task's controller: walks the task through its states with the runtime and reports
//! each transition (DESIGN §3). It follows the desired state the manager sends: a task whose
//! desired state moves past RUNNING is stopped.

use std::sync::Arc;
use std::time::Duration;

use agent_runtime::progress::{PullProgress, Throttle};
use agent_runtime::{Exit, Runtime, RuntimeError, RuntimeState};
use proto::{ContainerStatus, HealthState, PortConfig, Task, TaskState, TaskStatus};
use tokio::sync::watch;

use crate::health::{self, Monitor};
use crate::reporter::Reporter;

/// How a controller begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A task the runtime has never seen.
    Fresh,
    /// A task the runtime already has (adopted after an agent restart).
    Adopt(RuntimeState),
}

/// How long a task on networks keeps running after it is told to stop, while the routing
/// meshes of all nodes take it out of their rotation.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a pull's progress may change the task's status message.
const PULL_PROGRESS_PERIOD: Duration = Duration::from_secs(1);

/// Reports the progress of the task's image pull in its PREPARING status message, at most
/// once per [`PULL_PROGRESS_PERIOD`]; runs until dropped (when preparing ends).
async fn report_pull_progress(
    reporter: &Reporter,
    task_id: &str,
    mut pulled: watch::Receiver<PullProgress>,
) -> std::convert::Infallible {
    let mut throttle = Throttle::new(PULL_PROGRESS_PERIOD);
    loop {
        if pulled.changed().await.is_err() {
            // The runtime is done with the sender: nothing more will come.
            std::future::pending::<()>().await;
        }
        let progress = *pulled.borrow_and_update();
        if throttle.ready(std::time::Instant::now()) {
            reporter.report(
                task_id,
                TaskStatus {
                    timestamp: proto::now_ms(),
                    state: TaskState::Preparing as i32,
                    message: progress.message(),
                    ..Default::default()
                },
            );
        }
    }
}

fn wants_stop(task: &Task) -> bool {
    task.desired_state > TaskState::Running as i32
}

/// What the node's network made of a task before it starts.
pub struct Network {
    /// The ports it publishes on this node (host mode), as bound; they can change while it
    /// runs (bound again after a restart of the node's daemon).
    pub ports: watch::Receiver<Vec<PortConfig>>,
    /// Why the task cannot start here, if it cannot (its network could not be set up, or
    /// its secrets and configs written): what failed, and the error.
    pub refused: Option<(&'static str, String)>,
}

struct Controller {
    task_id: String,
    runtime: Arc<dyn Runtime>,
    reporter: Reporter,
    task: watch::Receiver<Task>,
    /// The task's health, for tasks with a health check.
    health: HealthState,
    network: Network,
}

impl Controller {
    fn report(&self, state: TaskState, message: &str, err: &str, exit: Option<&Exit>) {
        self.reporter.report(
            &self.task_id,
            TaskStatus {
                timestamp: proto::now_ms(),
                state: state as i32,
                message: message.into(),
                err: err.into(),
                container: exit.map(|e| ContainerStatus {
                    exit_code: e.code,
                    ..Default::default()
                }),
                health: self.health as i32,
                ports: self.network.ports.borrow().clone(),
                ..Default::default()
            },
        );
    }

    /// Waits until the manager wants the task stopped.
    async fn stop_requested(&mut self) {
        let _ = self.task.wait_for(wants_stop).await;
    }

    /// Retries a runtime call while its errors are transient, unless a stop comes first.
    async fn retry<T, F, Fut>(&mut self, mut call: F) -> Option<Result<T, RuntimeError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RuntimeError>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            let result = tokio::select! {
                r = call() => r,
                _ = self.stop_requested() => return None,
            };
            match result {
                Err(e) if !e.is_permanent() => {
                    tracing::debug!(task = %self.task_id, error = %e, "runtime call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return Some(other),
            }
        }
    }

    async fn run(mut self, start: Start) {
        let (monitor, starting) = match start {
            Start::Adopt(RuntimeState::Exited(exit)) => return self.exited(&exit),
            Start::Adopt(RuntimeState::Running { .. }) => {
                let monitor = self.health_monitor().await;
                if monitor.is_some() {
                    self.health = HealthState::Healthy;
                }
                self.report(
                    TaskState::Running,
                    "running (adopted after an agent restart)",
                    "",
                    None,
                );
                (monitor, false)
            }
            Start::Adopt(RuntimeState::Created) | Start::Fresh => {
                // Boxed, so its state is freed once the task runs: a running task's
                // controller then holds only what supervising needs, about half of what it
                // held before (a node keeps one per task; the bench's simulated nodes a
                // million).
                let Some(monitor) = Box::pin(self.start()).await else {
                    return;
                };
                if monitor.is_some() {
                    // A task with a health check is RUNNING only once the check passes.
                    self.health = HealthState::Starting;
                    self.report(
                        TaskState::Starting,
                        "started; waiting for its health check to pass",
                        "",
                        None,
                    );
                } else {
                    self.report(TaskState::Running, "running", "", None);
                }
                let starting = monitor.is_some();
                (monitor, starting)
            }
        };
        self.supervise(monitor, starting).await;
    }

    /// Takes a new task through its states up to started: its health check, if it has one,
    /// or `None` if it ended before it started (as reported).
    async fn start(&mut self) -> Option<Option<Monitor>> {
        self.report(TaskState::Accepted, "accepted", "", None);
        if wants_stop(&self.task.borrow()) {
            self.report(TaskState::Shutdown, "stopped before it started", "", None);
            return None;
        }
        if let Some((what, err)) = self.network.refused.clone() {
            self.report(TaskState::Rejected, what, &err, None);
            return None;
        }
        self.report(TaskState::Preparing, "preparing", "", None);
        let task = self.task.borrow().clone();
        let runtime = self.runtime.clone();
        let (progress, pulled) = watch::channel(PullProgress::default());
        let (reporter, id) = (self.reporter.clone(), self.task_id.clone());
        let prepared = async {
            let prepared = self.retry(|| runtime.prepare_with_progress(&task, &progress));
            tokio::select! {
                r = prepared => r,
                never = report_pull_progress(&reporter, &id, pulled) => match never {},
            }
        };
        match prepared.await {
            None => {
                self.report(TaskState::Shutdown, "stopped before it started", "", None);
                return None;
            }
            Some(Err(e)) => {
                self.report(
                    TaskState::Rejected,
                    "preparing failed",
                    &e.to_string(),
                    None,
                );
                return None;
            }
            Some(Ok(())) => {}
        }
        self.report(TaskState::Ready, "ready", "", None);
        self.report(TaskState::Starting, "starting", "", None);
        let id = self.task_id.clone();
        match self.retry(|| runtime.start(&id)).await {
            None => {
                let _ = self.runtime.stop(&self.task_id, None).await;
                self.report(TaskState::Shutdown, "stopped before it started", "", None);
                return None;
            }
            // A spec the node cannot run (an option it refused) is rejected, as in
            // preparing: the same spec fails here every time.
            Some(Err(e @ RuntimeError::InvalidSpec(_))) => {
                self.report(TaskState::Rejected, "starting failed", &e.to_string(), None);
                return None;
            }
            Some(Err(e)) => {
                self.report(TaskState::Failed, "starting failed", &e.to_string(), None);
                return None;
            }
            Some(Ok(())) => {}
        }
        Some(self.health_monitor().await)
    }

    /// The task's health check, running, if it has one.
    async fn health_monitor(&self) -> Option<Monitor> {
        let task = self.task.borrow().clone();
        let check = health::check_for(&self.runtime, &task, &self.task_id).await?;
        Some(health::monitor(
            self.runtime.clone(),
            self.task_id.clone(),
            check,
        ))
    }

    /// Waits for the running task to end, or stops it when asked; with a health check, it
    /// reports the task RUNNING once healthy (when `starting`) and fails it when unhealthy;
    /// it reports a running task again when its published ports change.
    async fn supervise(mut self, mut monitor: Option<Monitor>, mut starting: bool) {
        let runtime = self.runtime.clone();
        let id = self.task_id.clone();
        let mut task = self.task.clone();
        let mut ports = self.network.ports.clone();
        loop {
            let health_change = async {
                match monitor.as_mut() {
                    Some(m) if starting => m.settled().await,
                    Some(m) => m.unhealthy().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = runtime.wait(&id) => {
                    return match exit {
                        Ok(exit) => self.exited(&exit),
                        Err(e) => self.report(TaskState::Failed, "lost track of the task", &e.to_string(), None),
                    }
                }
                health = health_change => {
                    self.health = health.state;
                    if health.state == HealthState::Healthy {
                        starting = false;
                        self.report(TaskState::Running, "running (healthy)", "", None);
                        continue;
                    }
                    drop(monitor);
                    let _ = self.runtime.stop(&self.task_id, None).await;
                    let exit = self.runtime.wait(&self.task_id).await.ok();
                    let err = format!("task unhealthy: {}", health.output.trim());
                    return self.report(TaskState::Failed, "unhealthy", &err, exit.as_ref());
                }
                // The guard wait_for returns must not live across the awaits above.
                () = async { let _ = task.wait_for(wants_stop).await; } => break,
                Ok(()) = ports.changed(), if !starting => {
                    self.report(TaskState::Running, "running", "", None)
                }
            }
        }
        if !self.task.borrow().networks.is_empty() {
            // Every node's routing mesh drops the task as soon as it is told to stop; it
            // keeps answering a moment longer, so that no new connection reaches it after it
            // stops (open ones finish meanwhile).
            let _ = tokio::time::timeout(DRAIN, runtime.wait(&id)).await;
        }
        match self.runtime.stop(&self.task_id, None).await {
            Ok(()) => {
                let exit = self.runtime.wait(&self.task_id).await.ok();
                self.report(TaskState::Shutdown, "shut down", "", exit.as_ref());
            }
            Err(e) => self.report(TaskState::Failed, "stopping failed", &e.to_string(), None),
        }
    }

    fn exited(&self, exit: &Exit) {
        if exit.is_success() {
            self.report(TaskState::Complete, "finished", "", Some(exit));
        } else {
            let err = if exit.oom_killed {
                "task ran out of memory: the kernel's OOM killer ended it (raise --limit-memory)"
                    .to_owned()
            } else {
                format!("task: non-zero exit ({}): {}", exit.code, exit.message)
            };
            self.report(TaskState::Failed, "failed", &err, Some(exit));
        }
    }
}

/// Runs a controller for `task` until the task ends.
pub async fn run(
    runtime: Arc<dyn Runtime>,
    reporter: Reporter,
    task: watch::Receiver<Task>,
    start: Start,
    network: Network,
) {
    let task_id = task
        .borrow()
        .meta
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default();
    Controller {
        task_id,
        runtime,
        reporter,
        task,
        health: HealthState::None,
        network,
    }
    .run(start)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pull_s_progress_shows_in_the_preparing_task_s_status_message() {
        let reporter = Reporter::default();
        let (progress, pulled) = watch::channel(PullProgress::default());
        let forwarding = tokio::spawn({
            let reporter = reporter.clone();
            async move { report_pull_progress(&reporter, "t1", pulled).await }
        });
        progress.send_replace(PullProgress {
            done: 1_000_000,
            total: 2_000_000,
        });
        let batch = reporter.next_batch().await;
        forwarding.abort();
        assert_eq!(batch.len(), 1, "{batch:?}");
        assert_eq!(batch[0].task_id, "t1");
        let status = batch[0].status.as_ref().unwrap();
        assert_eq!(status.state, TaskState::Preparing as i32);
        assert_eq!(status.message, "pulling image: 1.00MB/2.00MB");
    }
}
