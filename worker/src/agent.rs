//! The agent: the node's tasks, as the manager assigns them. It keeps the assignments on disk
//! so that after a restart it adopts what still runs and cleans up what is no longer wanted.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_runtime::{Runtime, RuntimeState};
use proto::{
    assignment, AssignmentAction, AssignmentsMessage, AssignmentsType, PortConfig, Task, TaskState,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::controller::{self, Start};
use crate::net::datapath::DataPath;
use crate::reporter::Reporter;
use crate::saved::SavedTasks;
use crate::secrets::{self, TaskFiles};

struct Running {
    task: watch::Sender<Task>,
    /// Its networks were refused here (it never runs), so later updates must not publish
    /// its ports or start its DNS server either.
    refused: bool,
    /// Its host-mode ports as bound, which its controller reports.
    ports: watch::Sender<Vec<PortConfig>>,
    controller: JoinHandle<()>,
}

/// The node's task agent.
pub struct Agent {
    runtime: Arc<dyn Runtime>,
    /// The node's networks and routing mesh; `None` where the node does not set them up.
    net: Option<Arc<DataPath>>,
    reporter: Reporter,
    saved: SavedTasks,
    tasks: Mutex<HashMap<String, Running>>,
    /// The secrets and configs of the node's tasks, in memory only.
    files: Arc<TaskFiles>,
}

/// Whether an update of a task the agent has serves its network (DNS server, VIPs, host
/// ports): not where its networks were `refused` here (it never runs), nor once it has
/// ended as reported (say before a restart of this daemon). Either would hold a host port
/// for a task that does not run, which its replacement on this node then could not get.
fn serves_network(refused: bool, task: &Task) -> bool {
    let ended = task
        .status
        .as_ref()
        .is_some_and(|s| s.state > TaskState::Running as i32);
    !refused && !ended
}

impl Agent {
    /// An agent running tasks with `runtime`, keeping assignments under `dir`, setting up
    /// the node's networks with `net`.
    pub fn new(runtime: Arc<dyn Runtime>, dir: PathBuf, net: Option<Arc<DataPath>>) -> Arc<Self> {
        let namespace = runtime.mount_namespace_pid();
        Arc::new(Self {
            runtime,
            net,
            reporter: Reporter::default(),
            saved: SavedTasks::new(dir),
            tasks: Mutex::new(HashMap::new()),
            files: Arc::new(TaskFiles::new(namespace)),
        })
    }

    /// The IDs of the secrets this node holds now (never their data).
    pub fn secret_ids(&self) -> Vec<String> {
        self.files.secret_ids()
    }

    /// Where task status waits for the session to send it.
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The runtime (for logs).
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// After a restart: adopts the saved assignments the runtime still has, and removes from
    /// the runtime whatever is not assigned.
    pub async fn recover(self: &Arc<Self>) -> std::io::Result<()> {
        let mut saved = self.saved.load().await?;
        let known = self.runtime.list().await.map_err(std::io::Error::other)?;
        for rt in known {
            match saved.remove(&rt.task_id) {
                Some(task) => {
                    tracing::info!(task = %rt.task_id, "adopting a task after restart");
                    if let (Some(net), RuntimeState::Running { pid: Some(pid) }) =
                        (&self.net, &rt.state)
                    {
                        let (net, adopted, pid) = (net.clone(), task.clone(), *pid);
                        match tokio::task::spawn_blocking(move || net.adopt(&adopted, pid)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::error!(task = %rt.task_id, error = %e, "cannot find the adopted task's network namespace")
                            }
                            Err(e) => {
                                tracing::error!(task = %rt.task_id, error = %e, "network adoption failed")
                            }
                        }
                    }
                    // Its ports are bound again when the assignments come.
                    self.spawn(task, Start::Adopt(rt.state), Vec::new(), None);
                }
                None => self.clean_up(&rt.task_id).await,
            }
        }
        // Saved but unknown to the runtime: never started (skiffd stopped while it set up
        // the task's network or pulled its image). One that may still run starts afresh
        // when the manager assigns it again, as every new task does, its network first
        // (the node's networks are not set up before the assignments come, and the runtime
        // would start it in the node's own namespace without one); the others have nothing
        // to start.
        for (id, task) in saved {
            if self.net.is_some() && serves_network(false, &task) || secrets::has_files(&task) {
                self.saved.remove(&id);
            } else {
                self.spawn(task, Start::Fresh, Vec::new(), None);
            }
        }
        Ok(())
    }

    /// Runs a controller for `task`, with the host ports its network setup bound, or why
    /// it cannot start here (`refused`: what failed and the error; the task is rejected).
    fn spawn(
        self: &Arc<Self>,
        task: Task,
        start: Start,
        ports: Vec<PortConfig>,
        refused: Option<(&'static str, String)>,
    ) {
        let id = task.id().to_owned();
        let refused_here = refused.is_some();
        let (tx, rx) = watch::channel(task);
        let (ports, ports_rx) = watch::channel(ports);
        // Under the span of the caller (the session, under the node's span): a spawned
        // task would otherwise log without saying which node or task it is.
        let span = tracing::info_span!("task", id = %id);
        let controller = tokio::spawn(
            controller::run(
                self.runtime.clone(),
                self.reporter.clone(),
                rx,
                start,
                controller::Network {
                    ports: ports_rx,
                    refused,
                },
            )
            .instrument(span),
        );
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.insert(
            id,
            Running {
                task: tx,
                refused: refused_here,
                ports,
                controller,
            },
        );
    }

    /// Applies what the dispatcher sent: networks, secrets and configs first, so that new
    /// tasks find theirs.
    pub async fn apply(self: &Arc<Self>, message: AssignmentsMessage) {
        self.files.apply(&message);
        if let Some(net) = &self.net {
            let (net, networks) = (net.clone(), message.clone());
            let _ = tokio::task::spawn_blocking(move || net.apply(&networks)).await;
        }
        let mut assigned = Vec::new();
        for change in message.changes {
            let Some(assignment::Item::Task(task)) = change.assignment.and_then(|a| a.item) else {
                continue;
            };
            if change.action == AssignmentAction::Remove as i32 {
                self.remove_in_background(task.id());
            } else {
                assigned.push(task);
            }
        }
        self.saved.save(&assigned).await;
        let complete = message.r#type == AssignmentsType::Complete as i32;
        let keep: HashSet<String> = match complete {
            true => assigned.iter().map(|t| t.id().to_owned()).collect(),
            false => HashSet::new(),
        };
        for task in assigned {
            self.assign(task).await;
        }
        if complete {
            let stale: Vec<String> = {
                let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                tasks
                    .keys()
                    .filter(|id| !keep.contains(*id))
                    .cloned()
                    .collect()
            };
            for id in stale {
                self.remove_in_background(&id);
            }
        }
    }

    /// Forgets the task at once and cleans up after it without holding up the assignments
    /// behind it (a stop may wait out a grace period).
    fn remove_in_background(self: &Arc<Self>, id: &str) {
        self.forget(id);
        let (agent, id) = (self.clone(), id.to_owned());
        tokio::spawn(async move { agent.clean_up(&id).await }.in_current_span());
    }

    async fn assign(self: &Arc<Self>, task: Task) {
        let id = task.id().to_owned();
        let existing = {
            let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks
                .get(&id)
                .map(|r| (r.task.clone(), r.ports.clone(), r.refused))
        };
        match existing {
            Some((tx, ports, refused)) => {
                if let Some(net) = self.net.as_ref().filter(|_| serves_network(refused, &task)) {
                    // A no-op once it serves; after a restart, adopted tasks get their DNS
                    // server, VIPs and host ports back here.
                    let (net, served) = (net.clone(), task.clone());
                    match tokio::task::spawn_blocking(move || net.serve(&served)).await {
                        Ok(Ok(bound)) => {
                            ports
                                .send_if_modified(|p| std::mem::replace(p, bound.clone()) != bound);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(task = %id, error = %e, "cannot serve the task's network")
                        }
                        Err(e) => tracing::error!(task = %id, error = %e, "network setup failed"),
                    }
                }
                tx.send_replace(task);
            }
            None => {
                let (mut ports, mut refused) = (Vec::new(), None);
                const NETWORK: &str = "setting up the task's network failed";
                if let Some(net) = &self.net {
                    let (net, attached) = (net.clone(), task.clone());
                    match tokio::task::spawn_blocking(move || net.attach(&attached)).await {
                        Ok(Ok(bound)) => ports = bound,
                        Ok(Err(e)) => {
                            tracing::error!(task = %id, error = %e, "cannot attach the task to its networks");
                            refused = Some((NETWORK, e.to_string()));
                        }
                        Err(e) => {
                            tracing::error!(task = %id, error = %e, "network attachment failed");
                            refused = Some((NETWORK, format!("network attachment failed: {e}")));
                        }
                    }
                }
                if refused.is_none() {
                    let (files, written) = (self.files.clone(), task.clone());
                    let result = tokio::task::spawn_blocking(move || files.write(&written))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    if let Err(e) = result {
                        tracing::error!(task = %id, error = %e, "cannot write the task's secrets and configs");
                        refused = Some(("writing the task's secrets and configs failed", e));
                    }
                }
                self.spawn(task, Start::Fresh, ports, refused)
            }
        }
    }

    /// The manager no longer assigns the task: stop it if needed and clean up.
    async fn remove(self: &Arc<Self>, id: &str) {
        self.forget(id);
        self.clean_up(id).await;
    }

    /// Stops the task's controller and drops what the agent keeps of it.
    fn forget(&self, id: &str) {
        let running = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(running) = running {
            running.controller.abort();
        }
        self.reporter.forget(id);
        self.saved.remove(id);
    }

    async fn clean_up(&self, id: &str) {
        // Stopping an ended task is a no-op, and an unknown one answers NotFound.
        let _ = self.runtime.stop(id, None).await;
        if let Err(e) = self.runtime.remove(id).await {
            tracing::warn!(task = id, error = %e, "cannot remove a task from the runtime");
        }
        if let Some(net) = &self.net {
            let (net, id) = (net.clone(), id.to_owned());
            let _ = tokio::task::spawn_blocking(move || net.detach(&id)).await;
        }
        let (files, id) = (self.files.clone(), id.to_owned());
        let _ = tokio::task::spawn_blocking(move || files.remove(&id)).await;
    }

    /// The number of tasks the agent runs (or still has to clean up after).
    pub fn task_count(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops and removes every task (the node leaves its cluster), all at once: each may
    /// wait out its stop grace period, and one after another a node of ten tasks that
    /// ignore SIGTERM took ten of them to leave.
    pub async fn shut_down_all(self: &Arc<Self>) {
        let ids: Vec<String> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        tracing::info!(tasks = ids.len(), "stopping the node's tasks");
        futures::future::join_all(ids.iter().map(|id| self.remove(id))).await;
        if let Some(net) = &self.net {
            let net = net.clone();
            let _ = tokio::task::spawn_blocking(move || net.remove_all()).await;
        }
    }

    /// The tasks this agent runs (or still has to clean up after), as last assigned, each
    /// with the status this node last reported for it: the managers do not send a node its
    /// own reports back (`manager::dispatcher`).
    pub fn tasks(&self) -> Vec<Task> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .values()
            .map(|r| {
                let mut task = r.task.borrow().clone();
                if let Some(status) = self.reporter.latest(task.id()) {
                    task.status = Some(status);
                }
                task
            })
            .collect()
    }

    /// The service of a task this agent runs.
    pub fn service_of(&self, task_id: &str) -> Option<String> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .get(task_id)
            .map(|r| r.task.borrow().service_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::TaskStatus;

    fn reported(state: TaskState) -> Task {
        Task {
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_local_tasks_carry_the_status_this_node_reported() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(agent_runtime::fake::FakeRuntime::new(Default::default()));
        let agent = Agent::new(runtime, dir.path().to_owned(), None);
        let mut task = reported(TaskState::Assigned);
        task.meta = Some(proto::Meta {
            id: "t1".into(),
            ..Default::default()
        });
        task.desired_state = TaskState::Running as i32;
        agent
            .apply(AssignmentsMessage {
                r#type: AssignmentsType::Complete as i32,
                changes: vec![proto::AssignmentChange {
                    action: AssignmentAction::Update as i32,
                    assignment: Some(proto::Assignment {
                        item: Some(assignment::Item::Task(task)),
                    }),
                }],
                ..Default::default()
            })
            .await;
        // The manager never sends the node's own reports back: the list says what the
        // node reported, not the ASSIGNED it was sent.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = agent.tasks()[0].status.as_ref().map(|s| s.state);
            if state == Some(TaskState::Running as i32) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task never listed as running: {state:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            agent.reporter().latest("t1").map(|s| s.state),
            Some(TaskState::Running as i32)
        );
    }

    #[test]
    fn only_a_task_that_may_run_here_serves_its_network() {
        for state in [TaskState::Assigned, TaskState::Starting, TaskState::Running] {
            assert!(serves_network(false, &reported(state)), "{state:?}");
            assert!(
                !serves_network(true, &reported(state)),
                "refused, {state:?}"
            );
        }
        for state in [
            TaskState::Complete,
            TaskState::Shutdown,
            TaskState::Failed,
            TaskState::Rejected,
        ] {
            assert!(!serves_network(false, &reported(state)), "{state:?}");
        }
    }
}
