//! The container runtime interface the worker agent drives, and its backends.
//!
//! The agent holds one `Arc<dyn Runtime>` and runs one controller per task, walking it through
//! `PREPARING -> READY -> STARTING -> RUNNING -> COMPLETE|FAILED|SHUTDOWN` with the calls below.
//! Backends (`skiffd --runtime`, see [`RuntimeChoice`]):
//! - [`containerd::ContainerdRuntime`] (production): each task a container run by containerd
//!   and runc from an OCI image, isolated by namespaces and cgroups; the one backend with
//!   images, health checks and OOM detection;
//! - [`process::ProcessRuntime`]: the task's command as a plain host process, supervised by a
//!   small shim so it outlives a crash of skiffd (development, control-plane tests);
//! - [`fake::FakeRuntime`]: no processes at all (scale simulations).
//!
//! Where the node's data path made the task a network namespace ([`task_netns_name`]), every
//! backend that runs something starts the task inside it. Stop signals are read from specs
//! and named in exit messages the same way by all of them (`signal`).
//!
//! Every backend is restart-safe in the sense the agent needs: after skiffd restarts, a new
//! runtime object over the same state reports through [`Runtime::list`] what still runs, and
//! accepts `wait`, `stop`, `logs` and `remove` for those tasks as if it had started them.

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};

pub mod containerd;
pub mod fake;
mod log_file;
mod log_sink;
pub mod progress;

pub use log_sink::LogDefaults;
pub mod process;
pub(crate) mod signal;

/// The stop grace period when the task spec gives none (Docker's default).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// A container runtime backend, driven by the worker agent's task controllers.
///
/// Calls are keyed by task ID and safe to repeat: the agent retries after transient errors
/// (see [`RuntimeError::is_permanent`]) and replays its controllers after a restart.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Checks that the task can run here and readies it (validates the spec, pulls the
    /// image on backends that have images, records the task). Idempotent.
    async fn prepare(&self, task: &proto::Task) -> Result<(), RuntimeError>;

    /// [`Runtime::prepare`], publishing an image pull's progress on `progress` while it
    /// pulls. Backends that pull nothing prepare as usual and publish nothing.
    async fn prepare_with_progress(
        &self,
        task: &proto::Task,
        progress: &progress::ProgressSender,
    ) -> Result<(), RuntimeError> {
        let _ = progress;
        self.prepare(task).await
    }

    /// Starts a prepared task. Returns once it runs (or failed to start). Starting a task
    /// that was already started is a no-op.
    async fn start(&self, task_id: &str) -> Result<(), RuntimeError>;

    /// Resolves when the task has ended, with how it ended. Works for tasks started by an
    /// earlier incarnation of the runtime; may be called before `start`, and by many callers.
    async fn wait(&self, task_id: &str) -> Result<Exit, RuntimeError>;

    /// Stops the task: its stop signal (SIGTERM unless the spec names one), then SIGKILL
    /// when it is still running after `grace`. `None` takes the spec's
    /// `stop_grace_period_ms` (default [`DEFAULT_STOP_GRACE`]). Returns once the task has
    /// ended. Stopping a task that never started ends it without running it; stopping an
    /// ended task is a no-op.
    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<(), RuntimeError>;

    /// Forgets the task and frees what it holds, logs included. Refuses a running task (stop
    /// it first). Removing an unknown task is a no-op, so cleanup can be repeated.
    async fn remove(&self, task_id: &str) -> Result<(), RuntimeError>;

    /// Every task this backend knows: prepared, running, or ended but not removed. An agent
    /// that restarts adopts the running ones and removes the ones it no longer wants.
    async fn list(&self) -> Result<Vec<RuntimeTask>, RuntimeError>;

    /// The task's output, oldest first: the last `tail` lines (all with `None`), then, with
    /// `follow`, new lines as they come until the task ends. Dropping the stream stops it.
    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<LogStream, RuntimeError>;

    /// Runs `command` inside the running task, as its main process runs (a health check),
    /// killing it after `timeout`. Backends that cannot say so.
    async fn exec(
        &self,
        task_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let _ = (task_id, command, timeout);
        Err(RuntimeError::InvalidSpec(
            "this node's runtime cannot run commands inside tasks, so it has no health checks: \
             run the service on nodes with the containerd runtime, or drop --health-cmd"
                .into(),
        ))
    }

    /// The process whose mount namespace the runtime makes its tasks' mounts in, when it
    /// is not this process's own (containerd's, when skiffd runs in a namespace of its own
    /// under `ip netns exec`): secrets and configs must be on a mount there, since the
    /// kernel refuses to bind from another namespace's mount. `None`: this process's.
    fn mount_namespace_pid(&self) -> Option<u32> {
        None
    }

    /// Loads the images in a `docker save` or OCI-layout archive onto this node; returns
    /// their names. Backends without images say so.
    async fn load_image(&self, archive: &std::path::Path) -> Result<Vec<String>, RuntimeError> {
        let _ = archive;
        Err(RuntimeError::InvalidSpec(
            "this node's runtime runs no images: start skiffd with --runtime containerd to load images"
                .into(),
        ))
    }

    /// The health check the task's image defines, if any (the service's own comes first).
    async fn image_healthcheck(&self, task_id: &str) -> Option<proto::HealthConfig> {
        let _ = task_id;
        None
    }
}

/// What a command run inside a task gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code; -1 when it was killed for running past its timeout.
    pub code: i32,
    /// The start of its output (stdout and stderr together).
    pub output: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code; 128 + the signal number when a signal ended it (as a shell reports it).
    pub code: i32,
    /// The signal that ended the task, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (only backends with memory limits can tell).
    pub oom_killed: bool,
    /// What happened, for people: "exited with code 3", "killed by SIGKILL after ...".
    pub message: String,
}

impl Exit {
    /// The task ended by itself with code 0.
    pub fn is_success(&self) -> bool {
        self.code == 0 && self.signal.is_none() && !self.oom_killed
    }
}

/// A task as a backend sees it, for [`Runtime::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeTask {
    /// The task ID the agent prepared it under.
    pub task_id: String,
    /// Where it stands.
    pub state: RuntimeState,
}

/// Where a task stands in its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeState {
    /// Prepared, not started.
    Created,
    /// Running; `pid` is the host PID of its main process where there is one.
    Running {
        /// Host PID of the task's main process (none on the fake backend).
        pid: Option<i32>,
    },
    /// Ended (by itself or stopped).
    Exited(Exit),
}

/// One line of a task's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was read, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Which output it came from.
    pub stream: LogSource,
    /// The line including its `\n`. The last line of an output may lack one, and lines
    /// longer than a backend's limit (16 KiB for `process`) arrive in pieces without one.
    pub data: Vec<u8>,
}

/// Which output of a task a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl From<LogSource> for proto::LogStream {
    fn from(source: LogSource) -> Self {
        match source {
            LogSource::Stdout => proto::LogStream::Stdout,
            LogSource::Stderr => proto::LogStream::Stderr,
        }
    }
}

/// A reference the runtime cannot pull is a spec that fails the same way every time.
impl From<proto::reference::ReferenceError> for RuntimeError {
    fn from(e: proto::reference::ReferenceError) -> Self {
        RuntimeError::InvalidSpec(e.to_string())
    }
}

/// A task's log lines, oldest first.
pub type LogStream = Pin<Box<dyn Stream<Item = LogLine> + Send>>;

/// Why a runtime call failed. Each message is one sentence a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The task spec cannot run on this backend or this node; the same spec fails again.
    #[error("{0}")]
    InvalidSpec(String),
    /// The runtime has no such task.
    #[error("task {0} is unknown to this runtime: it was never prepared on this node, or it was removed")]
    NotFound(String),
    /// The call does not fit the task's state (for example, removing a running task).
    #[error("{0}")]
    InvalidState(String),
    /// The task's process could not be started (command not found, permission denied...).
    #[error("{0}")]
    StartFailed(String),
    /// The backend's service (containerd) does not answer; the message says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// The host failed us (disk, process table, a timeout); trying again may work.
    #[error("{context}: {error}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// What the OS said.
        error: std::io::Error,
    },
}

impl RuntimeError {
    /// True when retrying the same call cannot help: the task should fail instead.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RuntimeError::Io { .. } | RuntimeError::Unavailable(_))
    }

    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            error,
        }
    }
}

/// The name of a task's own network namespace, which the node's network code makes for
/// every task; a runtime starts the task inside it when it exists (it does not on a node
/// without a data path, `skiffd --network-data-path off`, whose tasks share the node's).
pub fn task_netns_name(task_id: &str) -> String {
    format!("skt-{task_id}")
}

/// The path of a task's network namespace (see [`task_netns_name`]).
pub fn task_netns_path(task_id: &str) -> std::path::PathBuf {
    std::path::Path::new("/var/run/netns").join(task_netns_name(task_id))
}

/// Where a task's secrets and configs are, as the runtime's mount namespace sees it:
/// under [`TASK_FILES_ROOT`], a tmpfs the worker mounts there, each file at its path inside
/// the task (`/run/secrets/db` is `DIR/run/secrets/db`), so nothing of them touches a disk.
/// Outside the data directory on purpose: nothing under it may hold a secret's bytes. From
/// another mount namespace it is reached through `/proc/PID/root` of a process in that one
/// (see [`Runtime::mount_namespace_pid`]).
pub fn task_files_dir(task_id: &str) -> std::path::PathBuf {
    std::path::Path::new(TASK_FILES_ROOT).join(task_id)
}

/// The tmpfs under which the [`task_files_dir`]s are.
pub const TASK_FILES_ROOT: &str = "/run/skiff/files";

/// The environment variable that tells a task of the `process` runtime where its secrets
/// and configs are (a host process has no mount namespace to put them at their targets).
pub const TASK_FILES_ENV: &str = "SKIFF_TASK_FILES";

/// The secrets and configs of `container` as (path of the file under [`task_files_dir`],
/// target inside the task); an error names a target Docker's rules refuse.
pub fn task_files(
    task_id: &str,
    container: &proto::ContainerSpec,
) -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>, RuntimeError> {
    let dir = task_files_dir(task_id);
    let invalid = |e: proto::task_files::TargetError| RuntimeError::InvalidSpec(e.to_string());
    let secrets = container
        .secrets
        .iter()
        .map(|r| proto::task_files::secret_target(r).map_err(invalid));
    let configs = container
        .configs
        .iter()
        .map(|r| proto::task_files::config_target(r).map_err(invalid));
    secrets
        .chain(configs)
        .map(|target| {
            let target = target?;
            let inside = target.strip_prefix("/").unwrap_or(&target);
            Ok((dir.join(inside), target))
        })
        .collect()
}

/// The stop grace period a task spec asks for: `stop_grace_period_ms`, or
/// [`DEFAULT_STOP_GRACE`] when it is unset (zero means no grace: SIGKILL at once).
pub fn stop_grace_period(spec: Option<&proto::ContainerSpec>) -> Duration {
    spec.and_then(|c| c.stop_grace_period_ms)
        .map_or(DEFAULT_STOP_GRACE, Duration::from_millis)
}

/// A `--runtime` flag value: `containerd`, `process`, `fake` or `fake:<options>` (see
/// [`fake::FakeConfig`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeChoice {
    /// [`containerd::ContainerdRuntime`].
    Containerd,
    /// [`process::ProcessRuntime`].
    Process,
    /// [`fake::FakeRuntime`] with its configuration.
    Fake(fake::FakeConfig),
}

impl FromStr for RuntimeChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "containerd" => Ok(RuntimeChoice::Containerd),
            None if s == "process" => Ok(RuntimeChoice::Process),
            None if s == "fake" => Ok(RuntimeChoice::Fake(fake::FakeConfig::default())),
            Some(("fake", options)) => options.parse().map(RuntimeChoice::Fake),
            _ => Err(format!(
                "unknown runtime '{s}': use containerd, process, fake, or fake:delay=100ms,fail=0.1,run=2s"
            )),
        }
    }
}

impl fmt::Display for RuntimeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeChoice::Containerd => f.write_str("containerd"),
            RuntimeChoice::Process => f.write_str("process"),
            RuntimeChoice::Fake(_) => f.write_str("fake"),
        }
    }
}

/// Rejects task IDs that cannot name a file or would escape a state directory.
pub(crate) fn check_task_id(task_id: &str) -> Result<(), RuntimeError> {
    let ok = !task_id.is_empty()
        && task_id.len() <= 128
        && !task_id.starts_with('.')
        && task_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "task ID '{task_id}' is not usable: it must be 1-128 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_choice_parses_flag_values() {
        assert_eq!(
            "process".parse::<RuntimeChoice>(),
            Ok(RuntimeChoice::Process)
        );
        assert_eq!(
            "fake".parse::<RuntimeChoice>(),
            Ok(RuntimeChoice::Fake(Default::default()))
        );
        let RuntimeChoice::Fake(config) = "fake:delay=100ms,fail=0.5"
            .parse::<RuntimeChoice>()
            .unwrap()
        else {
            panic!("not fake")
        };
        assert_eq!(config.start_delay, Duration::from_millis(100));
        assert_eq!(config.fail_probability, 0.5);
        assert_eq!(
            "containerd".parse::<RuntimeChoice>(),
            Ok(RuntimeChoice::Containerd)
        );
        assert!("docker".parse::<RuntimeChoice>().is_err());
        assert!("fake:bogus=1".parse::<RuntimeChoice>().is_err());
    }

    #[test]
    fn grace_period_defaults_to_ten_seconds() {
        assert_eq!(stop_grace_period(None), DEFAULT_STOP_GRACE);
        let spec = proto::ContainerSpec {
            stop_grace_period_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(stop_grace_period(Some(&spec)), Duration::from_millis(300));
        let spec = proto::ContainerSpec::default();
        assert_eq!(stop_grace_period(Some(&spec)), DEFAULT_STOP_GRACE);
        // Zero is a choice (kill at once), not "unset".
        let spec = proto::ContainerSpec {
            stop_grace_period_ms: Some(0),
            ..Default::default()
        };
        assert_eq!(stop_grace_period(Some(&spec)), Duration::ZERO);
    }

    #[test]
    fn only_io_errors_are_transient() {
        assert!(RuntimeError::InvalidSpec("x".into()).is_permanent());
        assert!(RuntimeError::NotFound("x".into()).is_permanent());
        assert!(!RuntimeError::io("reading", std::io::Error::other("disk")).is_permanent());
    }

    #[test]
    fn task_ids_stay_inside_the_state_dir() {
        assert!(check_task_id("abc123-x_y.z").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_task_id(bad).is_err(), "{bad}");
        }
    }
}
