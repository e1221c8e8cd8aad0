//! The `fake` backend: tasks that exist only as entries in a map, for scale simulations with
//! thousands of agents in one process.
//!
//! Nothing runs and nothing is spawned per task: a start delay is a timer in the `start` call,
//! and a job's end (`run_for`) is a deadline that `wait` sleeps until and that every other
//! call applies lazily when it looks at the task. A task costs one map entry and one watch
//! channel.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{
    check_task_id, Exit, LogLine, LogSource, LogStream, Runtime, RuntimeError, RuntimeState,
    RuntimeTask,
};

/// How fake tasks behave.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeConfig {
    /// How long `start` takes.
    pub start_delay: Duration,
    /// The chance (0.0 to 1.0) that `start` fails; the task then ends with code 1.
    pub fail_probability: f64,
    /// Tasks end by themselves with code 0 this long after they start (jobs); `None` runs
    /// them until stopped (services).
    pub run_for: Option<Duration>,
    /// Seeds the failure draws, so a simulation can be replayed; `None` draws from entropy.
    pub seed: Option<u64>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            start_delay: Duration::ZERO,
            fail_probability: 0.0,
            run_for: None,
            seed: None,
        }
    }
}

/// Parses the options of `--runtime fake:<options>`: comma-separated `delay=<duration>`,
/// `fail=<probability>`, `run=<duration>` and `seed=<integer>`, each optional, e.g.
/// `delay=100ms,fail=0.1,run=2s`.
impl FromStr for FakeConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut config = FakeConfig::default();
        for option in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').ok_or_else(|| {
                format!("fake runtime option '{option}' has no value: write it as key=value")
            })?;
            let duration = || {
                humantime::parse_duration(value)
                    .map_err(|e| format!("fake runtime option {key}: '{value}' is not a duration like 100ms or 2s ({e})"))
            };
            match key {
                "delay" => config.start_delay = duration()?,
                "run" => config.run_for = Some(duration()?),
                "fail" => {
                    config.fail_probability = value
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=1.0).contains(p))
                        .ok_or_else(|| format!("fake runtime option fail: '{value}' is not a probability between 0 and 1"))?
                }
                "seed" => {
                    config.seed = Some(
                        value
                            .parse()
                            .map_err(|_| format!("fake runtime option seed: '{value}' is not a whole number"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown fake runtime option '{key}': use delay=<duration>, fail=<probability>, run=<duration>, seed=<n>"
                    ))
                }
            }
        }
        Ok(config)
    }
}

/// The `fake` backend. Cheap to clone; clones share their tasks.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: FakeConfig,
    rng: Mutex<StdRng>,
    tasks: Mutex<HashMap<String, FakeTask>>,
}

struct FakeTask {
    state: FakeState,
    /// The signal number `stop` "sends" (the spec's stop signal), which sets the exit code.
    stop_signal: i32,
    /// Carries the exit to waiters; dropping it (remove) tells them the task is gone.
    exit_tx: watch::Sender<Option<Exit>>,
    log: Vec<LogLine>,
}

#[derive(Clone)]
enum FakeState {
    Created,
    Starting,
    Running { ends_at: Option<Instant> },
    Exited(Exit),
}

impl FakeTask {
    /// Applies a job's end if its deadline has passed.
    fn refresh(&mut self, now: Instant) {
        if let FakeState::Running {
            ends_at: Some(ends_at),
        } = self.state
        {
            if ends_at <= now {
                self.exit(Exit {
                    code: 0,
                    signal: None,
                    oom_killed: false,
                    message: "exited with code 0".into(),
                });
            }
        }
    }

    fn exit(&mut self, exit: Exit) {
        self.log.push(LogLine {
            timestamp_ms: proto::now_ms(),
            stream: LogSource::Stdout,
            data: format!("fake task: {}\n", exit.message).into_bytes(),
        });
        self.state = FakeState::Exited(exit.clone());
        self.exit_tx.send_replace(Some(exit));
    }
}

impl FakeRuntime {
    /// A fake backend whose tasks behave as `config` says.
    pub fn new(config: FakeConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let config = FakeConfig {
            fail_probability: config.fail_probability.clamp(0.0, 1.0),
            ..config
        };
        FakeRuntime {
            inner: Arc::new(Inner {
                config,
                rng: Mutex::new(rng),
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    fn tasks(&self) -> MutexGuard<'_, HashMap<String, FakeTask>> {
        // A panic while holding the lock leaves the map consistent (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fails(&self) -> bool {
        let p = self.config.fail_probability;
        p > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .gen_bool(p)
    }

    /// The task's exit, or what to wait on for it: the exit channel and a job's deadline.
    #[allow(clippy::type_complexity)]
    fn poll_exit(
        &self,
        task_id: &str,
    ) -> Result<Result<Exit, (watch::Receiver<Option<Exit>>, Option<Instant>)>, RuntimeError> {
        let mut tasks = self.tasks();
        let task = tasks
            .get_mut(task_id)
            .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?;
        task.refresh(Instant::now());
        Ok(match &task.state {
            FakeState::Exited(exit) => Ok(exit.clone()),
            FakeState::Running { ends_at } => Err((task.exit_tx.subscribe(), *ends_at)),
            FakeState::Created | FakeState::Starting => Err((task.exit_tx.subscribe(), None)),
        })
    }

    async fn wait(&self, task_id: &str) -> Result<Exit, RuntimeError> {
        loop {
            let (mut rx, ends_at) = match self.poll_exit(task_id)? {
                Ok(exit) => return Ok(exit),
                Err(pending) => pending,
            };
            // Also wake when a starting task begins running, to pick up its deadline.
            let deadline = async {
                match ends_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(RuntimeError::NotFound(task_id.to_string()));
                    }
                }
                () = deadline => {}
            }
        }
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn prepare(&self, task: &proto::Task) -> Result<(), RuntimeError> {
        let task_id = task
            .meta
            .as_ref()
            .map(|m| m.id.as_str())
            .unwrap_or_default();
        check_task_id(task_id)?;
        let container = task.spec.as_ref().and_then(|s| s.container.as_ref());
        let stop_signal =
            crate::signal::parse_signal(container.map(|c| c.stop_signal.as_str()).unwrap_or(""))?;
        self.inner
            .tasks()
            .entry(task_id.to_string())
            .or_insert_with(|| FakeTask {
                state: FakeState::Created,
                stop_signal: stop_signal as i32,
                exit_tx: watch::Sender::new(None),
                log: Vec::new(),
            });
        Ok(())
    }

    async fn start(&self, task_id: &str) -> Result<(), RuntimeError> {
        {
            let mut tasks = self.inner.tasks();
            let task = tasks
                .get_mut(task_id)
                .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?;
            match task.state {
                FakeState::Created => task.state = FakeState::Starting,
                FakeState::Exited(ref exit)
                    if exit.signal.is_none() && exit.message == STOPPED_BEFORE_START =>
                {
                    return Err(RuntimeError::InvalidState(format!(
                        "task {task_id} was stopped before it started; it cannot start any more"
                    )))
                }
                _ => return Ok(()),
            }
        }
        // A zero sleep would still wait for the next timer tick (about 1 ms).
        if !self.inner.config.start_delay.is_zero() {
            tokio::time::sleep(self.inner.config.start_delay).await;
        }
        let fails = self.inner.fails();
        let mut tasks = self.inner.tasks();
        let task = tasks
            .get_mut(task_id)
            .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?;
        if !matches!(task.state, FakeState::Starting) {
            // Stopped while starting: the stop already decided the outcome.
            return Ok(());
        }
        if fails {
            let message = "simulated start failure (fake runtime)".to_string();
            task.exit(Exit {
                code: 1,
                signal: None,
                oom_killed: false,
                message: message.clone(),
            });
            return Err(RuntimeError::StartFailed(message));
        }
        task.log.push(LogLine {
            timestamp_ms: proto::now_ms(),
            stream: LogSource::Stdout,
            data: b"fake task: started\n".to_vec(),
        });
        let ends_at = self.inner.config.run_for.map(|d| Instant::now() + d);
        task.state = FakeState::Running { ends_at };
        // Wake waiters so they learn the job's deadline.
        task.exit_tx.send_replace(None);
        Ok(())
    }

    async fn wait(&self, task_id: &str) -> Result<Exit, RuntimeError> {
        self.inner.wait(task_id).await
    }

    /// A fake task obeys its stop signal at once, so the grace period never runs out.
    async fn stop(&self, task_id: &str, _grace: Option<Duration>) -> Result<(), RuntimeError> {
        let mut tasks = self.inner.tasks();
        let task = tasks
            .get_mut(task_id)
            .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?;
        task.refresh(Instant::now());
        let exit = match task.state {
            FakeState::Exited(_) => return Ok(()),
            FakeState::Created | FakeState::Starting => Exit {
                code: 0,
                signal: None,
                oom_killed: false,
                message: STOPPED_BEFORE_START.into(),
            },
            FakeState::Running { .. } => Exit {
                code: 128 + task.stop_signal,
                signal: Some(task.stop_signal),
                oom_killed: false,
                message: format!(
                    "stopped with {}",
                    crate::signal::signal_name(task.stop_signal)
                ),
            },
        };
        task.exit(exit);
        Ok(())
    }

    async fn remove(&self, task_id: &str) -> Result<(), RuntimeError> {
        let mut tasks = self.inner.tasks();
        if let Some(task) = tasks.get_mut(task_id) {
            task.refresh(Instant::now());
            if matches!(task.state, FakeState::Running { .. } | FakeState::Starting) {
                return Err(RuntimeError::InvalidState(format!(
                    "task {task_id} is still running: stop it before removing it"
                )));
            }
            tasks.remove(task_id);
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<RuntimeTask>, RuntimeError> {
        let now = Instant::now();
        let mut tasks = self.inner.tasks();
        Ok(tasks
            .iter_mut()
            .map(|(task_id, task)| {
                task.refresh(now);
                let state = match &task.state {
                    FakeState::Created => RuntimeState::Created,
                    FakeState::Starting | FakeState::Running { .. } => {
                        RuntimeState::Running { pid: None }
                    }
                    FakeState::Exited(exit) => RuntimeState::Exited(exit.clone()),
                };
                RuntimeTask {
                    task_id: task_id.clone(),
                    state,
                }
            })
            .collect())
    }

    /// A fake task's log is one line when it starts and one when it ends.
    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<LogStream, RuntimeError> {
        let (lines, exited) = {
            let mut tasks = self.inner.tasks();
            let task = tasks
                .get_mut(task_id)
                .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?;
            task.refresh(Instant::now());
            let skip = tail.map_or(0, |n| task.log.len().saturating_sub(n));
            (
                task.log[skip..].to_vec(),
                matches!(task.state, FakeState::Exited(_)),
            )
        };
        let head = futures::stream::iter(lines);
        if !follow || exited {
            return Ok(head.boxed());
        }
        let inner = self.inner.clone();
        let task_id = task_id.to_string();
        // The start line may be missed if the task starts after this call; the exit line,
        // the one a follower waits for, is not.
        let last = futures::stream::once(async move {
            inner.wait(&task_id).await.ok()?;
            inner
                .tasks()
                .get(&task_id)
                .and_then(|t| t.log.last().cloned())
        })
        .filter_map(futures::future::ready);
        Ok(head.chain(last).boxed())
    }
}

const STOPPED_BEFORE_START: &str = "stopped before it started";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    fn task(id: &str) -> proto::Task {
        proto::Task {
            meta: Some(proto::Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(
                proto::TaskSpec {
                    container: Some(Default::default()),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    async fn run(rt: &FakeRuntime, id: &str) -> Result<(), RuntimeError> {
        rt.prepare(&task(id)).await?;
        rt.start(id).await
    }

    #[test]
    fn config_parses_every_option() {
        let config: FakeConfig = "delay=100ms, fail=0.1,run=2s,seed=7".parse().unwrap();
        assert_eq!(
            config,
            FakeConfig {
                start_delay: Duration::from_millis(100),
                fail_probability: 0.1,
                run_for: Some(Duration::from_secs(2)),
                seed: Some(7),
            }
        );
        assert_eq!("".parse::<FakeConfig>().unwrap(), FakeConfig::default());
        for bad in [
            "delay",
            "delay=soon",
            "fail=1.5",
            "fail=x",
            "seed=-1",
            "speed=3",
        ] {
            let err = bad.parse::<FakeConfig>().unwrap_err();
            assert!(err.contains("fake runtime option"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn start_takes_the_configured_delay() {
        let delay = Duration::from_millis(200);
        let rt = FakeRuntime::new(FakeConfig {
            start_delay: delay,
            ..Default::default()
        });
        rt.prepare(&task("t1")).await.unwrap();
        let began = StdInstant::now();
        rt.start("t1").await.unwrap();
        assert!(began.elapsed() >= delay);
        assert_eq!(
            rt.list().await.unwrap()[0].state,
            RuntimeState::Running { pid: None }
        );
    }

    #[tokio::test]
    async fn failures_follow_the_probability_and_the_seed() {
        async fn failed_ids(seed: u64) -> Vec<usize> {
            let rt = FakeRuntime::new(FakeConfig {
                fail_probability: 0.3,
                seed: Some(seed),
                ..Default::default()
            });
            let mut failed = Vec::new();
            for i in 0..1000 {
                match run(&rt, &format!("t{i}")).await {
                    Ok(()) => {}
                    Err(RuntimeError::StartFailed(_)) => failed.push(i),
                    Err(e) => panic!("{e}"),
                }
            }
            failed
        }
        let a = failed_ids(42).await;
        assert!(
            (200..400).contains(&a.len()),
            "{} of 1000 failed at p=0.3",
            a.len()
        );
        assert_eq!(a, failed_ids(42).await, "same seed, same failures");
        assert_ne!(a, failed_ids(43).await);

        let never = FakeRuntime::new(FakeConfig {
            fail_probability: 0.0,
            ..Default::default()
        });
        let always = FakeRuntime::new(FakeConfig {
            fail_probability: 1.0,
            ..Default::default()
        });
        for i in 0..100 {
            run(&never, &format!("t{i}")).await.unwrap();
            assert!(run(&always, &format!("t{i}")).await.is_err());
        }
        let exit = always.wait("t0").await.unwrap();
        assert_eq!(exit.code, 1);
    }

    #[tokio::test]
    async fn jobs_end_after_run_for_and_services_when_stopped() {
        let rt = FakeRuntime::new(FakeConfig {
            run_for: Some(Duration::from_millis(50)),
            ..Default::default()
        });
        run(&rt, "job").await.unwrap();
        let exit = rt.wait("job").await.unwrap();
        assert!(exit.is_success(), "{exit:?}");

        let rt = FakeRuntime::new(FakeConfig::default());
        run(&rt, "svc").await.unwrap();
        let waiter = tokio::spawn({
            let rt = rt.clone();
            async move { rt.wait("svc").await }
        });
        assert!(
            rt.remove("svc").await.is_err(),
            "a running task cannot be removed"
        );
        rt.stop("svc", None).await.unwrap();
        let exit = waiter.await.unwrap().unwrap();
        assert_eq!((exit.code, exit.signal), (143, Some(15)));
        let lines: Vec<LogLine> = rt.logs("svc", None, false).await.unwrap().collect().await;
        assert_eq!(lines.len(), 2);
        rt.remove("svc").await.unwrap();
        assert!(matches!(
            rt.wait("svc").await,
            Err(RuntimeError::NotFound(_))
        ));
        rt.remove("svc").await.unwrap();
    }

    #[tokio::test]
    async fn stopping_before_start_ends_the_task_and_blocks_start() {
        let rt = FakeRuntime::new(FakeConfig::default());
        rt.prepare(&task("t")).await.unwrap();
        rt.stop("t", None).await.unwrap();
        assert_eq!(rt.wait("t").await.unwrap().code, 0);
        assert!(matches!(
            rt.start("t").await,
            Err(RuntimeError::InvalidState(_))
        ));
    }

    #[tokio::test]
    async fn follow_ends_with_the_task() {
        let rt = FakeRuntime::new(FakeConfig {
            run_for: Some(Duration::from_millis(100)),
            ..Default::default()
        });
        run(&rt, "job").await.unwrap();
        let lines: Vec<LogLine> = rt.logs("job", None, true).await.unwrap().collect().await;
        let text: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.data).into_owned())
            .collect();
        assert_eq!(
            text,
            ["fake task: started\n", "fake task: exited with code 0\n"]
        );
    }

    #[tokio::test]
    async fn ten_thousand_tasks_start_together() {
        let rt = FakeRuntime::new(FakeConfig {
            start_delay: Duration::from_millis(50),
            ..Default::default()
        });
        let starts = (0..10_000).map(|i| {
            let rt = rt.clone();
            async move { run(&rt, &format!("task-{i}")).await }
        });
        // The delays overlap: a generous deadline, not a benchmark.
        let results =
            tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(starts))
                .await
                .expect("10,000 fake starts should not take 20 s");
        assert!(results.iter().all(Result::is_ok));
        let running = rt.list().await.unwrap();
        assert_eq!(running.len(), 10_000);
        assert!(running
            .iter()
            .all(|t| t.state == RuntimeState::Running { pid: None }));
    }
}
