//! The `process` backend: a task's command runs as a plain host process (for development and
//! control-plane tests, where containers add nothing).
//!
//! Each task runs under a [shim](shim_main) that skiffd starts in a session of its own, so
//! the task outlives a crash of skiffd and its exit status is recorded even with nobody
//! watching. The runtime keeps no state in memory: everything is in the task's directory
//! (see `task_dir`), which is what makes a runtime created after a restart the equal of the
//! one before it. One runtime per state directory at a time.
//!
//! What a container would give and a host process cannot is left out: the image (ignored),
//! hostname, mounts, resource limits, health checks, OOM detection. Secrets and configs are
//! on the task's own tmpfs, as for containers, at their targets' paths below the directory
//! the task finds in `SKIFF_TASK_FILES`.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{check_task_id, Exit, LogStream, Runtime, RuntimeError, RuntimeState, RuntimeTask};

mod shim;
mod spec;
mod task_dir;

pub use shim::shim_main;
use task_dir::{Observed, ProcessId, StopNote, TaskDir, EXIT, SHIM_LOG, SPEC, STOP};

/// How often `wait` and `stop` look at a task that has not ended yet.
const POLL: Duration = Duration::from_millis(50);

/// How long `start` waits for the shim to say the task runs.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `stop` waits for a task to end after SIGKILL before it gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The default log size limit per task file of the `local` driver (two files are kept).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The `process` backend.
#[derive(Debug)]
pub struct ProcessRuntime {
    state_dir: PathBuf,
    log: crate::LogDefaults,
    shim_program: PathBuf,
    shim_args: Vec<OsString>,
    /// Serialises starts with each other and with stops of unstarted tasks, so a task is
    /// never started twice nor started after it was stopped.
    start_lock: tokio::sync::Mutex<()>,
}

impl ProcessRuntime {
    /// A backend that keeps one directory per task under `state_dir` (created when needed),
    /// logging tasks that name no logging driver as `log` says.
    ///
    /// The shim is this very executable run as `<exe> shim <task dir>`, through
    /// `/proc/self/exe` so that it works even after the binary on disk was replaced by an
    /// upgrade; the binary's `main` must hand that over to [`shim_main`].
    pub fn new(state_dir: PathBuf, log: crate::LogDefaults) -> Self {
        ProcessRuntime {
            state_dir,
            log,
            shim_program: PathBuf::from("/proc/self/exe"),
            shim_args: vec!["shim".into()],
            start_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs the shim as `program args... <task dir>` instead (tests point this at the
    /// `skiff-shim` binary of this crate).
    pub fn with_shim(
        mut self,
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        self.shim_program = program.into();
        self.shim_args = args.into_iter().map(Into::into).collect();
        self
    }

    fn task_dir(&self, task_id: &str) -> Result<TaskDir, RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.to_string()))?;
        Ok(TaskDir::new(self.state_dir.join(task_id)))
    }

    async fn observe(dir: &TaskDir) -> Result<Observed, RuntimeError> {
        let dir = dir.clone();
        blocking(move || dir.observe()).await
    }

    /// Polls until the task has ended, or until `deadline` (then `None`).
    async fn wait_until(
        dir: &TaskDir,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<Exit>, RuntimeError> {
        loop {
            if let Observed::Exited { exit, .. } = Self::observe(dir).await? {
                return Ok(Some(exit));
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for a starting task's process to appear; `None` when the task ended instead.
    async fn started_child(dir: &TaskDir) -> Result<Option<ProcessId>, RuntimeError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match Self::observe(dir).await? {
                Observed::Running { child: Some(child) } => return Ok(Some(child)),
                Observed::Exited { .. } => return Ok(None),
                Observed::Created | Observed::Running { child: None } => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::io(
                    format!(
                        "the shim in {} did not start the task within {START_TIMEOUT:?}",
                        dir.path().display()
                    ),
                    io::ErrorKind::TimedOut.into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn spawn_shim(&self, dir: &TaskDir) -> Result<(), RuntimeError> {
        let log_path = dir.file(SHIM_LOG);
        let shim_log = blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| RuntimeError::io(format!("cannot open {}", log_path.display()), e))
        })
        .await?;
        let mut command = tokio::process::Command::new(&self.shim_program);
        command
            .args(&self.shim_args)
            .arg(dir.path())
            .env_clear()
            // Not skiffd's working directory: the shim must not keep a mount busy.
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log);
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; setsid is
        // one, and the closure allocates nothing.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
        }
        let mut shim = command.spawn().map_err(|e| {
            RuntimeError::io(
                format!("cannot run the shim {}", self.shim_program.display()),
                e,
            )
        })?;
        let stdout = shim.stdout.take().ok_or_else(|| {
            RuntimeError::io("starting the shim", io::Error::other("no stdout pipe"))
        })?;
        // The shim runs as long as the task. Dropping the handle leaves it running; tokio
        // reaps it when it exits (and if skiffd is gone by then, init does).
        drop(shim);
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let see_log = || format!("see {}", dir.file(SHIM_LOG).display());
        match read {
            Err(_) => Err(RuntimeError::io(
                format!(
                    "the shim did not report within {START_TIMEOUT:?}; {}",
                    see_log()
                ),
                io::ErrorKind::TimedOut.into(),
            )),
            Ok(Err(e)) => Err(RuntimeError::io("cannot read from the shim", e)),
            Ok(Ok(_)) => {
                let line = line.trim_end();
                if line.starts_with("ok ") {
                    Ok(())
                } else if let Some(reason) = line.strip_prefix("err ") {
                    Err(RuntimeError::StartFailed(reason.to_string()))
                } else {
                    Err(RuntimeError::StartFailed(format!(
                        "the shim ended before starting the task; {}",
                        see_log()
                    )))
                }
            }
        }
    }
}

/// Runs blocking file work off the tokio workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::io("a blocking runtime job failed", io::Error::other(e)))?
}

/// Signals `target` if it is still the process we started (same start time).
fn signal(target: ProcessId, signal: Signal, group: bool) -> Result<(), RuntimeError> {
    if !target.is_alive() {
        return Ok(());
    }
    let pid = Pid::from_raw(target.pid);
    let sent = if group {
        killpg(pid, signal)
    } else {
        kill(pid, signal)
    };
    match sent {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::io(
            format!("cannot send {signal} to pid {}", target.pid),
            io::Error::from(e),
        )),
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    async fn prepare(&self, task: &proto::Task) -> Result<(), RuntimeError> {
        let task_id = task.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        check_task_id(&task_id)?;
        let container = task.spec.as_ref().and_then(|s| s.container.clone());
        let dir = TaskDir::new(self.state_dir.join(&task_id));
        let host_path = std::env::var_os("PATH");
        let (task, log) = (task.clone(), self.log.clone());
        blocking(move || {
            if dir.file(SPEC).exists() {
                return Ok(());
            }
            let spec = spec::build(&task_id, container.as_ref(), host_path)?;
            // Task logs may hold secrets: only skiffd's user may read them.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.path())
                .map_err(|e| {
                    RuntimeError::io(format!("cannot create {}", dir.path().display()), e)
                })?;
            crate::log_sink::configure(dir.path(), &task, &log)?;
            dir.write(SPEC, &spec).map_err(|e| {
                RuntimeError::io(format!("cannot write {}", dir.file(SPEC).display()), e)
            })
        })
        .await
    }

    async fn start(&self, task_id: &str) -> Result<(), RuntimeError> {
        let dir = self.task_dir(task_id)?;
        let _guard = self.start_lock.lock().await;
        match Self::observe(&dir).await? {
            Observed::Created => self.spawn_shim(&dir).await,
            Observed::Exited { started: false, .. } => Err(RuntimeError::InvalidState(format!(
                "task {task_id} was stopped before it started; it cannot start any more"
            ))),
            Observed::Running { .. } | Observed::Exited { started: true, .. } => Ok(()),
        }
    }

    async fn wait(&self, task_id: &str) -> Result<Exit, RuntimeError> {
        let dir = self.task_dir(task_id)?;
        Self::wait_until(&dir, None)
            .await?
            .ok_or_else(|| RuntimeError::io("waiting for the task", io::ErrorKind::TimedOut.into()))
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<(), RuntimeError> {
        let dir = self.task_dir(task_id)?;
        let spec = {
            let dir = dir.clone();
            blocking(move || dir.spec()).await?
        };
        // The spec's grace was resolved (default included) when the task was prepared.
        let grace = grace.unwrap_or(Duration::from_millis(spec.stop_grace_ms));
        let child = {
            let _guard = self.start_lock.lock().await;
            match Self::observe(&dir).await? {
                Observed::Exited { .. } => return Ok(()),
                Observed::Created => {
                    let exit = Exit {
                        code: 0,
                        signal: None,
                        oom_killed: false,
                        message: "stopped before it started".into(),
                    };
                    let dir = dir.clone();
                    return blocking(move || {
                        dir.write(EXIT, &exit)
                            .map_err(|e| RuntimeError::io(format!("cannot write {EXIT}"), e))
                    })
                    .await;
                }
                Observed::Running { child } => child,
            }
        };
        let child = match child {
            Some(child) => child,
            // The shim is still starting the task (a `start` that was cancelled half way
            // let go of the lock): wait until it has, or has given up.
            None => match Self::started_child(&dir).await? {
                Some(child) => child,
                None => return Ok(()),
            },
        };
        let stop_signal = Signal::try_from(spec.stop_signal).unwrap_or(Signal::SIGTERM);
        let note = StopNote {
            signal: spec.stop_signal,
            grace_ms: grace.as_millis() as u64,
            escalated: false,
        };
        let write_note = |note: StopNote| {
            let dir = dir.clone();
            blocking(move || {
                dir.write(STOP, &note)
                    .map_err(|e| RuntimeError::io(format!("cannot write {STOP}"), e))
            })
        };
        write_note(note.clone()).await?;
        signal(child, stop_signal, false)?;
        if Self::wait_until(&dir, Some(tokio::time::Instant::now() + grace))
            .await?
            .is_some()
        {
            return Ok(());
        }
        tracing::info!(
            task_id,
            ?grace,
            "task did not stop within its grace period; killing it"
        );
        write_note(StopNote {
            escalated: true,
            ..note
        })
        .await?;
        signal(child, Signal::SIGKILL, true)?;
        match Self::wait_until(&dir, Some(tokio::time::Instant::now() + KILL_TIMEOUT)).await? {
            Some(_) => Ok(()),
            None => Err(RuntimeError::io(
                format!(
                    "task {task_id} (pid {}) did not end within {KILL_TIMEOUT:?} of SIGKILL",
                    child.pid
                ),
                io::ErrorKind::TimedOut.into(),
            )),
        }
    }

    async fn remove(&self, task_id: &str) -> Result<(), RuntimeError> {
        let dir = self.task_dir(task_id)?;
        match Self::observe(&dir).await {
            Ok(Observed::Running { .. }) => Err(RuntimeError::InvalidState(format!(
                "task {task_id} is still running: stop it before removing it"
            ))),
            Ok(_) | Err(RuntimeError::NotFound(_)) => {
                blocking(move || match std::fs::remove_dir_all(dir.path()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(RuntimeError::io(
                        format!("cannot remove {}", dir.path().display()),
                        e,
                    )),
                })
                .await
            }
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<RuntimeTask>, RuntimeError> {
        let state_dir = self.state_dir.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&state_dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(RuntimeError::io(
                        format!("cannot list {}", state_dir.display()),
                        e,
                    ))
                }
            };
            let mut tasks = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    RuntimeError::io(format!("cannot list {}", state_dir.display()), e)
                })?;
                let Some(task_id) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if check_task_id(&task_id).is_err() || !entry.path().is_dir() {
                    continue;
                }
                let dir = TaskDir::new(entry.path());
                let state = match dir.observe() {
                    Ok(Observed::Created) => RuntimeState::Created,
                    Ok(Observed::Running { child }) => RuntimeState::Running {
                        pid: child.map(|c| c.pid),
                    },
                    Ok(Observed::Exited { exit, .. }) => RuntimeState::Exited(exit),
                    // A directory whose prepare did not finish: nothing to adopt.
                    Err(RuntimeError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                tasks.push(RuntimeTask { task_id, state });
            }
            tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
            Ok(tasks)
        })
        .await
    }

    /// Runs the command as a host process with the task's environment and working
    /// directory, in the task's network namespace when it has one (through `ip netns exec`).
    async fn exec(
        &self,
        task_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<crate::ExecOutput, RuntimeError> {
        let dir = self.task_dir(task_id)?;
        let spec: spec::ProcessSpec = {
            let dir = dir.clone();
            blocking(move || {
                dir.read(SPEC)
                    .map_err(|e| RuntimeError::io("reading the task's spec", e))
            })
            .await?
            .ok_or_else(|| RuntimeError::NotFound(task_id.to_string()))?
        };
        let Some((program, args)) = command.split_first() else {
            return Err(RuntimeError::InvalidSpec(
                "the health check has no command".into(),
            ));
        };
        let mut cmd = match &spec.netns {
            Some(netns) => {
                let mut c = tokio::process::Command::new("ip");
                c.arg("netns")
                    .arg("exec")
                    .arg(netns.file_name().unwrap_or_default())
                    .arg(program);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args)
            .env_clear()
            .envs(spec.env.iter().filter_map(|e| e.split_once('=')))
            .current_dir(&spec.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(Ok(out)) => {
                let mut output = out.stdout;
                output.extend_from_slice(&out.stderr);
                output.truncate(4096);
                Ok(crate::ExecOutput {
                    code: out.status.code().unwrap_or(-1),
                    output: String::from_utf8_lossy(&output).into_owned(),
                })
            }
            Ok(Err(e)) => Ok(crate::ExecOutput {
                code: 127,
                output: format!("cannot run {program}: {e}"),
            }),
            Err(_) => Ok(crate::ExecOutput {
                code: -1,
                output: format!("timed out after {}", humantime::format_duration(timeout)),
            }),
        }
    }

    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<LogStream, RuntimeError> {
        let dir = self.task_dir(task_id)?;
        let spec_path = dir.file(SPEC);
        if !tokio::fs::try_exists(&spec_path).await.unwrap_or(false) {
            return Err(RuntimeError::NotFound(task_id.to_string()));
        }
        let finished = dir.clone();
        crate::log_file::open(
            dir.path().to_path_buf(),
            tail,
            follow,
            Box::new(move || finished.output_finished()),
        )
        .await
    }
}
