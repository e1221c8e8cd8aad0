//! A service converging (`service create`, `service scale`): where it stands, from its
//! tasks, and the wait for it.
//!
//! [`progress`] is a pure function of the service and its tasks: the lines to show and
//! whether the service converged, failed (and why) or is still on its way (with the tasks
//! that are stuck, e.g. pending for want of a suitable node). [`wait`] follows it, decides
//! how long "stuck" may last and, once converged, watches for the monitor period that the
//! tasks stay up.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow::{Break, Continue};
use std::time::{Duration, Instant};

use agent_runtime::progress::PULL_MESSAGE_PREFIX;
use anyhow::anyhow;
use proto::service_spec::Mode;
use proto::{RestartCondition, Service, Task, TaskState};

use super::screen::Screen;
use super::{follow, Following};
use crate::client::service::render::{self, created_at, short_id, state, state_word, task_err};
use crate::client::Client;

/// Services with more slots than this show only the overall line (as Docker).
const MAX_BARS: u64 = 100;
/// Width of a progress bar.
const BAR_WIDTH: i64 = 50;
/// How long a task may stay stuck (pending with an error, e.g. no suitable node) before
/// the command gives up waiting.
pub const STUCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Failures in a row of one slot (or node) after which waiting is pointless.
const MAX_FAILURES: usize = 3;
/// Longest stability check after convergence.
const MAX_VERIFY: Duration = Duration::from_secs(30);

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every task runs (jobs: every completion is done).
    Converged,
    /// Not there yet; `stuck` lists tasks waiting with an error, by key, with the reason.
    Pending { stuck: Vec<(String, String)> },
    /// It will not converge without the user's help.
    Failed(String),
}

/// The lines to show and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub lines: Vec<String>,
    pub outcome: Outcome,
}

/// Docker's progress bar for a task state: full at `running`.
pub fn bar(s: TaskState) -> String {
    let step: i64 = match s {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        _ => 9,
    };
    let filled = ((step * 100 / 9) / 2).min(BAR_WIDTH) as usize;
    format!(
        "[{}>{}]",
        "=".repeat(filled),
        " ".repeat(BAR_WIDTH as usize - filled)
    )
}

/// `state   [bar]`, or the task's error in place of both.
fn task_text(t: &Task) -> String {
    let err = task_err(t);
    if !err.is_empty() && state(t) != TaskState::Running {
        return err.to_string();
    }
    let s = state(t);
    if s > TaskState::Running {
        return state_word(s).to_string();
    }
    match pull_progress(t) {
        Some(pulled) => format!("{:<9} {} {pulled}", state_word(s), bar(s)),
        None => format!("{:<9} {}", state_word(s), bar(s)),
    }
}

/// The bytes of its image a PREPARING task has pulled, as its node reports them in its
/// status message (`pulling image: 1.2MB/5.7MB`).
fn pull_progress(t: &Task) -> Option<&str> {
    let msg = t.status.as_ref()?.message.trim();
    (state(t) == TaskState::Preparing && msg.starts_with(PULL_MESSAGE_PREFIX)).then_some(msg)
}

/// The tasks as a screen shows them: a pull's bytes change every second, so only a
/// terminal, which redraws in place, gets them; a pipe or a log gets each state once.
pub(super) fn for_screen(screen: &Screen, tasks: &[Task]) -> Vec<Task> {
    let mut tasks = tasks.to_vec();
    if !screen.is_terminal() {
        for t in &mut tasks {
            if pull_progress(t).is_some() {
                if let Some(status) = t.status.as_mut() {
                    status.message.clear();
                }
            }
        }
    }
    tasks
}

/// The task to show for a slot (or node): the newest one still meant to run, else the
/// newest one if it failed (its error is worth showing while its replacement waits out the
/// restart delay); a slot whose tasks were all shut down shows nothing.
fn current<'a>(group: &[&'a Task]) -> Option<&'a Task> {
    let newest = |ts: &mut dyn Iterator<Item = &'a Task>| {
        ts.max_by(|a, b| created_at(a).cmp(&created_at(b)).then(a.id().cmp(b.id())))
    };
    newest(&mut group.iter().copied().filter(|t| render::is_live(t))).or_else(|| {
        newest(&mut group.iter().copied())
            .filter(|t| matches!(state(t), TaskState::Failed | TaskState::Rejected))
    })
}

fn is_failure(t: &Task, job: bool) -> bool {
    match state(t) {
        TaskState::Failed | TaskState::Rejected => true,
        // A service's task is meant to run forever: one that completes has stopped.
        TaskState::Complete => !job,
        _ => false,
    }
}

/// What went wrong with a stopped task, for people.
fn failure_text(t: &Task) -> String {
    let err = task_err(t);
    if !err.is_empty() {
        return err.to_string();
    }
    let msg = t.status.as_ref().map(|s| s.message.trim()).unwrap_or("");
    match (state(t), msg.is_empty()) {
        (TaskState::Complete, _) => "the task exited (a service's task must keep running)".into(),
        (s, true) => format!("the task is {}", state_word(s)),
        (_, false) => msg.to_string(),
    }
}

/// Why a task that should be on its way waits with an error, if it does.
fn stuck_reason(t: &Task) -> Option<String> {
    if !render::is_live(t) || state(t) >= TaskState::Running {
        return None;
    }
    let err = task_err(t);
    if !err.is_empty() {
        return Some(err.to_string());
    }
    let msg = t.status.as_ref().map(|s| s.message.trim()).unwrap_or("");
    msg.starts_with("no suitable node").then(|| msg.to_string())
}

/// The stuck entry of task `t` (called what `who` says), keyed by its ID, if it waits
/// with an error.
fn stuck_entry(t: &Task, who: impl FnOnce() -> String) -> Option<(String, String)> {
    stuck_reason(t).map(|r| (t.id().to_string(), format!("{} is waiting: {r}", who())))
}

/// The stuck entry of a global service that no node may run (keyed by nothing: it
/// concerns no task).
fn no_eligible_node(name: &str) -> (String, String) {
    (
        String::new(),
        format!("no node is eligible to run a task of {name} (check its constraints and the nodes' availability)"),
    )
}

/// Where the service stands, from its tasks; `since_ms` is when the change being watched
/// was made (tasks that failed before it do not count against it).
pub fn progress(service: &Service, tasks: &[Task], since_ms: i64) -> Progress {
    let spec = service.spec.clone().unwrap_or_default();
    let name = spec.name.clone();
    let mode = spec.mode;
    let job = matches!(
        mode,
        Some(Mode::ReplicatedJob(_)) | Some(Mode::GlobalJob(_))
    );
    let global = matches!(mode, Some(Mode::Global(_)) | Some(Mode::GlobalJob(_)));
    let restart = spec
        .task_template
        .as_ref()
        .and_then(|t| t.restart)
        .unwrap_or_default();
    let iteration = service.job_status.as_ref().map(|j| j.job_iteration);
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service_id.is_empty() || t.service_id == render::service_id(service))
        .filter(|t| !job || iteration.is_none_or(|i| t.job_iteration == i))
        .collect();

    // Group by slot (replicated) or node (global).
    let mut groups: BTreeMap<(u64, String), Vec<&Task>> = BTreeMap::new();
    for t in &mine {
        let key = if global {
            (0, t.node_id.clone())
        } else {
            (t.slot, String::new())
        };
        groups.entry(key).or_default().push(t);
    }
    let label = |key: &(u64, String), total: u64| -> String {
        if global {
            short_id(&key.1).to_string()
        } else {
            format!("{}/{total}", key.0)
        }
    };

    // Give up early on repeated failures.
    let threshold = match restart.condition() {
        RestartCondition::None => 1,
        _ if restart.max_attempts > 0 => MAX_FAILURES.min(restart.max_attempts as usize + 1),
        _ => MAX_FAILURES,
    };
    for (key, group) in &groups {
        let mut failures: Vec<&Task> = group
            .iter()
            .copied()
            .filter(|t| created_at(t) >= since_ms && is_failure(t, job))
            .collect();
        failures.sort_by_key(|t| created_at(t));
        let Some(last) = failures.last() else {
            continue;
        };
        let who = if global {
            format!("the task of {name} on node {}", short_id(&key.1))
        } else {
            format!("task {name}.{}", key.0)
        };
        let why = failure_text(last);
        let exited_ok = state(last) == TaskState::Complete;
        if restart.condition() == RestartCondition::None
            || (exited_ok && restart.condition() == RestartCondition::OnFailure)
        {
            return Progress {
                lines: Vec::new(),
                outcome: Outcome::Failed(format!(
                    "{who} stopped and its restart condition will not restart it: {why}"
                )),
            };
        }
        if failures.len() >= threshold {
            return Progress {
                lines: Vec::new(),
                outcome: Outcome::Failed(format!(
                    "{who} failed {} times, last with: {why}",
                    failures.len()
                )),
            };
        }
    }

    let mut lines = Vec::new();
    let mut stuck = Vec::new();
    let converged;
    match &mode {
        Some(Mode::ReplicatedJob(_)) | Some(Mode::GlobalJob(_)) => {
            let total = match &mode {
                Some(Mode::ReplicatedJob(j)) => j.total_completions,
                _ => groups.len() as u64,
            };
            let mut completed = 0;
            let mut running = 0;
            let mut active = 0;
            let mut slot_lines = Vec::new();
            for (key, group) in &groups {
                let done = group.iter().any(|t| state(t) == TaskState::Complete);
                if done {
                    completed += 1;
                }
                let Some(t) = current(group) else { continue };
                if !done && render::is_live(t) {
                    active += 1;
                    if state(t) == TaskState::Running {
                        running += 1;
                    }
                }
                stuck.extend(stuck_entry(t, || render::task_name(t)));
                let text = if done {
                    format!("{:<9} {}", "complete", bar(TaskState::Running))
                } else {
                    task_text(t)
                };
                slot_lines.push(format!("{}: {text}", label(key, total)));
            }
            let completed = completed.min(total);
            lines.push(format!("job progress: {completed} out of {total} complete"));
            lines.push(format!("active tasks: {running} out of {active} tasks"));
            if total <= MAX_BARS {
                lines.extend(slot_lines);
            }
            converged = if global {
                total > 0 && completed == total
            } else {
                completed >= total
            };
            if global && total == 0 {
                stuck.push(no_eligible_node(&name));
            }
        }
        Some(Mode::Global(_)) => {
            let mut running = 0;
            let mut desired = 0;
            let mut node_lines = Vec::new();
            for (key, group) in &groups {
                let Some(t) = current(group) else { continue };
                if !render::is_live(t) {
                    continue;
                }
                desired += 1;
                if state(t) == TaskState::Running {
                    running += 1;
                }
                stuck.extend(stuck_entry(t, || render::task_name(t)));
                node_lines.push(format!("{}: {}", label(key, 0), task_text(t)));
            }
            lines.push(format!(
                "overall progress: {running} out of {desired} tasks"
            ));
            if desired <= MAX_BARS {
                lines.extend(node_lines);
            }
            converged = desired > 0 && running == desired;
            if desired == 0 {
                stuck.push(no_eligible_node(&name));
            }
        }
        Some(Mode::Replicated(_)) | None => {
            let replicas = match &mode {
                Some(Mode::Replicated(r)) => r.replicas,
                _ => 0,
            };
            let mut running = 0;
            let mut slot_lines = Vec::new();
            let mut extra_running = false;
            for (key, group) in &groups {
                if key.0 == 0 || key.0 > replicas {
                    // Scaled away: converged once it has stopped.
                    extra_running |= group.iter().any(|t| state(t) == TaskState::Running);
                    continue;
                }
                let Some(t) = current(group) else { continue };
                if render::is_live(t) && state(t) == TaskState::Running {
                    running += 1;
                }
                stuck.extend(stuck_entry(t, || format!("task {name}.{}", key.0)));
                slot_lines.push(format!("{}: {}", label(key, replicas), task_text(t)));
            }
            lines.push(format!(
                "overall progress: {running} out of {replicas} tasks"
            ));
            if replicas <= MAX_BARS {
                lines.extend(slot_lines);
            }
            converged = running == replicas && !extra_running;
        }
    }
    let outcome = if converged {
        Outcome::Converged
    } else {
        Outcome::Pending { stuck }
    };
    Progress { lines, outcome }
}

/// Polls until the service `id` (called `name` in messages) converges, showing progress
/// unless `quiet`. Fails with the reason when it will not converge; returns early, with a
/// note, on Ctrl-C (the service carries on converging).
pub async fn wait(
    client: &Client,
    id: &str,
    name: &str,
    since_ms: i64,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(quiet);
    let mut stuck_since: HashMap<String, Instant> = HashMap::new();
    let mut verifying: Option<Instant> = None;
    let hint = format!(
        "it keeps trying in the background: see `skiff service ps {name}`, or remove it with `skiff service rm {name}`"
    );
    let following = Following {
        name,
        removed: "was removed while waiting for it to converge",
        what: "progress",
    };
    follow(client, id, following, |service, tasks| {
        let job = matches!(
            service.spec.as_ref().and_then(|s| s.mode.as_ref()),
            Some(Mode::ReplicatedJob(_)) | Some(Mode::GlobalJob(_))
        );
        let monitor = service
            .spec
            .as_ref()
            .and_then(|s| s.update_config.as_ref())
            .and_then(|u| u.monitor_ms)
            .map_or(Duration::from_secs(5), Duration::from_millis)
            .min(MAX_VERIFY);
        let p = progress(&service, &for_screen(&screen, &tasks), since_ms);
        let mut lines = p.lines;
        match p.outcome {
            Outcome::Failed(reason) => {
                screen.show(&lines);
                return Break(Err(anyhow!(
                    "service {name} did not converge: {reason}; {hint}"
                )));
            }
            Outcome::Converged if job => {
                lines.push("verify: Job complete".into());
                screen.show(&lines);
                return Break(Ok(()));
            }
            Outcome::Converged => {
                let started = *verifying.get_or_insert_with(Instant::now);
                if started.elapsed() >= monitor {
                    lines.push("verify: Service converged".into());
                    screen.show(&lines);
                    return Break(Ok(()));
                }
                // A countdown on a terminal; one line otherwise.
                let left = if screen.is_terminal() {
                    monitor.saturating_sub(started.elapsed())
                } else {
                    monitor
                };
                lines.push(format!(
                    "verify: Waiting {} seconds to verify that tasks are stable...",
                    left.as_secs_f64().ceil()
                ));
                stuck_since.clear();
            }
            Outcome::Pending { stuck } => {
                if verifying.take().is_some() {
                    lines.push("verify: Detected task failure".into());
                }
                let now = Instant::now();
                stuck_since.retain(|k, _| stuck.iter().any(|(key, _)| key == k));
                for (key, reason) in &stuck {
                    let since = *stuck_since.entry(key.clone()).or_insert(now);
                    if now.duration_since(since) >= STUCK_TIMEOUT {
                        screen.show(&lines);
                        return Break(Err(anyhow!(
                            "service {name} did not converge: {reason} (for more than {}s); {hint}",
                            STUCK_TIMEOUT.as_secs()
                        )));
                    }
                }
            }
        }
        screen.show(&lines);
        Continue(())
    })
    .await
}

#[cfg(test)]
pub(super) mod tests {
    use proto::{
        GlobalJob, GlobalService, Meta, ReplicatedJob, ReplicatedService, RestartPolicy,
        ServiceSpec, TaskSpec, TaskStatus,
    };

    use super::*;

    fn service(mode: Mode) -> Service {
        Service {
            meta: Some(Meta {
                id: "svc".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: "web".into(),
                mode: Some(mode),
                task_template: Some(TaskSpec::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(in crate::client::service::progress) fn replicated(n: u64) -> Service {
        service(Mode::Replicated(ReplicatedService { replicas: n }))
    }

    pub(in crate::client::service::progress) fn task(
        id: &str,
        slot: u64,
        state: TaskState,
        at: i64,
    ) -> Task {
        Task {
            meta: Some(Meta {
                id: id.into(),
                created_at: at,
                ..Default::default()
            }),
            service_id: "svc".into(),
            service_name: "web".into(),
            slot,
            node_id: format!("node{slot}aaaaaaaaaaaaaaaaaaaa"),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: at,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn failed(id: &str, slot: u64, at: i64, err: &str) -> Task {
        let mut t = task(id, slot, TaskState::Failed, at);
        t.desired_state = TaskState::Shutdown as i32;
        t.status.as_mut().unwrap().err = err.into();
        t
    }

    /// Gives `s`'s tasks `restart` as their restart policy.
    fn set_restart(s: &mut Service, restart: RestartPolicy) {
        s.spec
            .as_mut()
            .unwrap()
            .task_template
            .as_mut()
            .unwrap()
            .restart = Some(restart);
    }

    const FULL: &str = "[==================================================>]";

    #[test]
    fn bars_fill_up_to_running() {
        assert_eq!(bar(TaskState::Running), FULL);
        assert_eq!(bar(TaskState::Running).len(), 53);
        assert_eq!(
            bar(TaskState::Pending),
            format!("[{}>{}]", "=".repeat(16), " ".repeat(34))
        );
        assert_eq!(
            bar(TaskState::New),
            format!("[{}>{}]", "=".repeat(5), " ".repeat(45))
        );
    }

    #[test]
    fn a_preparing_task_shows_the_bytes_of_its_pull() {
        let mut t = task("t1", 1, TaskState::Preparing, 1);
        t.status.as_mut().unwrap().message = "pulling image: 1.20MB/5.70MB".into();
        let lines = progress(&replicated(1), &[t.clone()], 0).lines;
        assert!(
            lines.iter().any(|l| l.starts_with("1/1: preparing ")
                && l.ends_with("] pulling image: 1.20MB/5.70MB")),
            "{lines:?}"
        );
        // Any other message of a preparing task is not progress.
        t.status.as_mut().unwrap().message = "preparing".into();
        let lines = progress(&replicated(1), &[t], 0).lines;
        let slot = lines.iter().find(|l| l.starts_with("1/1: ")).unwrap();
        assert!(slot.ends_with(']'), "{lines:?}");
    }

    #[test]
    fn converging() {
        let s = replicated(3);
        let tasks = [
            task("a", 1, TaskState::Running, 1),
            task("b", 2, TaskState::Preparing, 1),
            task("c", 3, TaskState::Pending, 1),
        ];
        let p = progress(&s, &tasks, 0);
        assert_eq!(p.lines[0], "overall progress: 1 out of 3 tasks");
        assert_eq!(p.lines[1], format!("1/3: running   {FULL}"));
        assert!(
            p.lines[2].starts_with("2/3: preparing [="),
            "{}",
            p.lines[2]
        );
        assert!(
            p.lines[3].starts_with("3/3: pending   [="),
            "{}",
            p.lines[3]
        );
        assert_eq!(p.outcome, Outcome::Pending { stuck: vec![] });

        let tasks = [
            task("a", 1, TaskState::Running, 1),
            task("b", 2, TaskState::Running, 1),
            task("c", 3, TaskState::Running, 1),
        ];
        let p = progress(&s, &tasks, 0);
        assert_eq!(p.lines[0], "overall progress: 3 out of 3 tasks");
        assert_eq!(p.lines.len(), 4);
        assert_eq!(p.outcome, Outcome::Converged);
        // Zero replicas converge at once.
        assert_eq!(progress(&replicated(0), &[], 0).outcome, Outcome::Converged);
    }

    #[test]
    fn a_replaced_task_shows_the_new_one() {
        let s = replicated(1);
        let tasks = [
            failed("old", 1, 1, "boom"),
            task("new", 1, TaskState::Running, 2),
        ];
        let p = progress(&s, &tasks, 0);
        assert_eq!(p.lines[1], format!("1/1: running   {FULL}"));
        assert_eq!(p.outcome, Outcome::Converged);
    }

    #[test]
    fn scaled_down_tasks_must_stop() {
        let s = replicated(1);
        let mut extra = task("b", 2, TaskState::Running, 1);
        extra.desired_state = TaskState::Shutdown as i32;
        let tasks = [task("a", 1, TaskState::Running, 1), extra.clone()];
        let p = progress(&s, &tasks, 0);
        assert_eq!(p.lines.len(), 2);
        assert!(matches!(p.outcome, Outcome::Pending { .. }));
        extra.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
        let p = progress(&s, &[task("a", 1, TaskState::Running, 1), extra], 0);
        assert_eq!(p.outcome, Outcome::Converged);
    }

    #[test]
    fn a_slot_whose_tasks_were_shut_down_shows_nothing() {
        let s = replicated(2);
        let mut old = task("old", 2, TaskState::Shutdown, 1);
        old.desired_state = TaskState::Shutdown as i32;
        let p = progress(&s, &[task("a", 1, TaskState::Running, 5), old], 0);
        assert_eq!(p.lines.len(), 2, "{:?}", p.lines);
        assert!(matches!(p.outcome, Outcome::Pending { .. }));
    }

    #[test]
    fn pending_with_a_reason() {
        let s = replicated(2);
        let mut t = task("a", 1, TaskState::Pending, 1);
        t.status.as_mut().unwrap().err =
            "no suitable node (1 node not available for new tasks)".into();
        let mut u = task("b", 2, TaskState::Pending, 1);
        u.status.as_mut().unwrap().message = "no suitable node: insufficient memory".into();
        let p = progress(&s, &[t, u], 0);
        assert_eq!(
            p.lines[1],
            "1/2: no suitable node (1 node not available for new tasks)"
        );
        assert_eq!(
            p.outcome,
            Outcome::Pending {
                stuck: vec![
                    ("a".into(), "task web.1 is waiting: no suitable node (1 node not available for new tasks)".into()),
                    ("b".into(), "task web.2 is waiting: no suitable node: insufficient memory".into()),
                ]
            }
        );
    }

    #[test]
    fn repeated_failures_fail() {
        let s = replicated(2);
        let mut tasks = vec![
            task("ok", 1, TaskState::Running, 1),
            failed("f1", 2, 10, "exit 1"),
            failed("f2", 2, 20, "exit 2"),
            task("n", 2, TaskState::Starting, 30),
        ];
        assert!(matches!(
            progress(&s, &tasks, 0).outcome,
            Outcome::Pending { .. }
        ));
        tasks.push(failed("f3", 2, 25, "exec: \"nginxx\": not found"));
        assert_eq!(
            progress(&s, &tasks, 0).outcome,
            Outcome::Failed(
                "task web.2 failed 3 times, last with: exec: \"nginxx\": not found".into()
            )
        );
        // Failures before the change being watched do not count.
        assert!(matches!(
            progress(&s, &tasks, 15).outcome,
            Outcome::Pending { .. }
        ));
    }

    #[test]
    fn no_restart_means_first_failure_is_final() {
        let mut s = replicated(1);
        set_restart(
            &mut s,
            RestartPolicy {
                condition: RestartCondition::None as i32,
                ..Default::default()
            },
        );
        let p = progress(&s, &[failed("f", 1, 1, "oops")], 0);
        assert_eq!(
            p.outcome,
            Outcome::Failed(
                "task web.1 stopped and its restart condition will not restart it: oops".into()
            )
        );
        // max attempts lowers the threshold
        set_restart(
            &mut s,
            RestartPolicy {
                condition: RestartCondition::Any as i32,
                max_attempts: 1,
                ..Default::default()
            },
        );
        let p = progress(&s, &[failed("f", 1, 1, "a"), failed("g", 1, 2, "b")], 0);
        assert!(matches!(p.outcome, Outcome::Failed(ref r) if r.contains("failed 2 times")));
    }

    #[test]
    fn global_services() {
        let s = service(Mode::Global(GlobalService {}));
        let p = progress(&s, &[], 0);
        assert_eq!(p.lines, ["overall progress: 0 out of 0 tasks"]);
        assert!(
            matches!(p.outcome, Outcome::Pending { ref stuck } if stuck[0].1.contains("no node is eligible"))
        );
        let mut a = task("a", 0, TaskState::Running, 1);
        a.node_id = "aaaaaaaaaaaaaaaaaaaaaaaaa".into();
        let mut b = task("b", 0, TaskState::Assigned, 1);
        b.node_id = "bbbbbbbbbbbbbbbbbbbbbbbbb".into();
        let p = progress(&s, &[a.clone(), b.clone()], 0);
        assert_eq!(p.lines[0], "overall progress: 1 out of 2 tasks");
        assert_eq!(p.lines[1], format!("aaaaaaaaaaaa: running   {FULL}"));
        assert!(p.lines[2].starts_with("bbbbbbbbbbbb: assigned  ["));
        b.status.as_mut().unwrap().state = TaskState::Running as i32;
        assert_eq!(progress(&s, &[a, b], 0).outcome, Outcome::Converged);
    }

    #[test]
    fn jobs_converge_when_complete() {
        let s = service(Mode::ReplicatedJob(ReplicatedJob {
            max_concurrent: 2,
            total_completions: 3,
        }));
        let mut done = task("a", 1, TaskState::Complete, 1);
        done.desired_state = TaskState::Complete as i32;
        let mut running = task("b", 2, TaskState::Running, 1);
        running.desired_state = TaskState::Complete as i32;
        let p = progress(&s, &[done.clone(), running.clone()], 0);
        assert_eq!(p.lines[0], "job progress: 1 out of 3 complete");
        assert_eq!(p.lines[1], "active tasks: 1 out of 1 tasks");
        assert_eq!(p.lines[2], format!("1/3: complete  {FULL}"));
        assert!(matches!(p.outcome, Outcome::Pending { .. }));
        let mut third = done.clone();
        third.slot = 3;
        third.meta.as_mut().unwrap().id = "c".into();
        let mut second = done.clone();
        second.slot = 2;
        let p = progress(&s, &[done, second, third], 0);
        assert_eq!(p.outcome, Outcome::Converged);

        let g = service(Mode::GlobalJob(GlobalJob {}));
        let mut t = task("x", 0, TaskState::Complete, 1);
        t.desired_state = TaskState::Complete as i32;
        assert_eq!(progress(&g, &[t], 0).outcome, Outcome::Converged);
        // A job's task that completes is not a failure; one that fails is.
        let mut f = failed("f", 1, 1, "exit 3");
        f.desired_state = TaskState::Shutdown as i32;
        let mut s2 = s.clone();
        set_restart(
            &mut s2,
            RestartPolicy {
                condition: RestartCondition::None as i32,
                ..Default::default()
            },
        );
        assert!(matches!(progress(&s2, &[f], 0).outcome, Outcome::Failed(_)));
    }

    #[test]
    fn a_service_task_that_exits_is_a_failure() {
        let mut s = replicated(1);
        set_restart(
            &mut s,
            RestartPolicy {
                condition: RestartCondition::OnFailure as i32,
                ..Default::default()
            },
        );
        let mut t = task("a", 1, TaskState::Complete, 1);
        t.desired_state = TaskState::Shutdown as i32;
        let p = progress(&s, &[t], 0);
        assert!(
            matches!(p.outcome, Outcome::Failed(ref r) if r.contains("a service's task must keep running")),
            "{p:?}"
        );
    }

    #[test]
    fn many_replicas_show_only_the_total() {
        let s = replicated(101);
        let tasks: Vec<Task> = (1..=101)
            .map(|i| task(&i.to_string(), i, TaskState::Running, 1))
            .collect();
        let p = progress(&s, &tasks, 0);
        assert_eq!(p.lines, ["overall progress: 101 out of 101 tasks"]);
        assert_eq!(p.outcome, Outcome::Converged);
    }
}
