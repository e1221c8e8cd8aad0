//! A task's state directory: the only place the `process` backend keeps state, so a new
//! runtime (after skiffd restarts) knows exactly what the old one knew.
//!
//! ```text
//! <state_dir>/<task_id>/
//!   spec.json      what to run (written by prepare)
//!   shim.pid       the shim's PID and /proc start time (written by the shim)
//!   child.pid      the task process's PID and start time (written by the shim)
//!   stop.json      that a stop began, with which signal, and whether it escalated
//!   exit.json      how the task ended (written by the shim, or by the runtime when the
//!                  shim died without writing it)
//!   task.log       the task's output, one timestamped record per line
//!   task.log.1     the previous log file, after rotation
//!   shim.log       the shim's own complaints
//! ```
//!
//! Every file is written whole (temporary file, then rename), so a reader never sees half of
//! one. Everything here blocks: async callers use `spawn_blocking`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::spec::ProcessSpec;
use crate::signal::signal_name;
use crate::{Exit, RuntimeError};

pub(crate) const SPEC: &str = "spec.json";
pub(crate) const SHIM_PID: &str = "shim.pid";
pub(crate) const CHILD_PID: &str = "child.pid";
pub(crate) const STOP: &str = "stop.json";
pub(crate) const EXIT: &str = "exit.json";
pub(crate) const SHIM_LOG: &str = "shim.log";

/// A process, told apart from a later one that reuses its PID by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies a live process by PID; `None` when it is already gone.
    pub(crate) fn of(pid: i32) -> Option<ProcessId> {
        let (_, start_time) = proc_stat(pid)?;
        Some(ProcessId { pid, start_time })
    }

    /// True while this very process runs: same PID, same start time, not a zombie.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }
}

/// State and start time of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'; the fields
    // after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

/// A stop in progress or done, so the exit message can say what happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StopNote {
    pub signal: i32,
    pub grace_ms: u64,
    /// The grace period ran out and the task got SIGKILL.
    pub escalated: bool,
}

/// What a task directory says about its task.
#[derive(Debug, Clone)]
pub(crate) enum Observed {
    /// Prepared; no shim started yet.
    Created,
    /// Running, or at least not known to have ended. `child` is `None` while the shim is
    /// still starting it.
    Running { child: Option<ProcessId> },
    /// Ended. `started` is false when it was stopped before it ever started.
    Exited { exit: Exit, started: bool },
}

/// Handle on one task's directory.
#[derive(Debug, Clone)]
pub(crate) struct TaskDir {
    path: PathBuf,
}

impl TaskDir {
    pub(crate) fn new(path: PathBuf) -> Self {
        TaskDir { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn task_id(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn read<T: DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        read_json(&self.file(name))
    }

    pub(crate) fn write<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        write_json(&self.file(name), value)
    }

    /// The spec, or `NotFound` when the task was never prepared (or was removed).
    pub(crate) fn spec(&self) -> Result<ProcessSpec, RuntimeError> {
        self.read(SPEC)
            .map_err(|e| RuntimeError::io(format!("cannot read {}", self.file(SPEC).display()), e))?
            .ok_or_else(|| RuntimeError::NotFound(self.task_id()))
    }

    /// Works out where the task stands. When the shim died without recording an exit and
    /// the task process is gone too, records an exit that says so, so every later look
    /// agrees.
    pub(crate) fn observe(&self) -> Result<Observed, RuntimeError> {
        let io_err = |what: &str, e| {
            RuntimeError::io(format!("cannot read {what} in {}", self.path.display()), e)
        };
        if !self.file(SPEC).exists() {
            return Err(RuntimeError::NotFound(self.task_id()));
        }
        let shim: Option<ProcessId> = self.read(SHIM_PID).map_err(|e| io_err(SHIM_PID, e))?;
        if let Some(exit) = self.exit().map_err(|e| io_err(EXIT, e))? {
            return Ok(Observed::Exited {
                exit,
                started: shim.is_some(),
            });
        }
        let Some(shim) = shim else {
            return Ok(Observed::Created);
        };
        let child: Option<ProcessId> = self.read(CHILD_PID).map_err(|e| io_err(CHILD_PID, e))?;
        if shim.is_alive() {
            return Ok(Observed::Running { child });
        }
        // The shim writes exit.json before it exits: look again now that it is gone.
        if let Some(exit) = self.exit().map_err(|e| io_err(EXIT, e))? {
            return Ok(Observed::Exited {
                exit,
                started: true,
            });
        }
        if child.is_some_and(|c| c.is_alive()) {
            // Someone killed the shim; the task runs on (its output is lost). Stop still
            // reaches it through child.pid.
            return Ok(Observed::Running { child });
        }
        let exit = Exit {
            code: -1,
            signal: None,
            oom_killed: false,
            message: format!(
                "the task's shim (pid {}) ended without recording how the task ended; the task is gone",
                shim.pid
            ),
        };
        self.write(EXIT, &exit)
            .map_err(|e| RuntimeError::io(format!("cannot write {EXIT}"), e))?;
        Ok(Observed::Exited {
            exit,
            started: true,
        })
    }

    /// The recorded exit, its message amended when a stop caused it.
    fn exit(&self) -> io::Result<Option<Exit>> {
        let Some(mut exit) = self.read::<Exit>(EXIT)? else {
            return Ok(None);
        };
        if let (Some(signal), Some(stop)) = (exit.signal, self.read::<StopNote>(STOP)?) {
            if stop.escalated && signal == nix::libc::SIGKILL {
                exit.message = format!(
                    "killed with SIGKILL: it did not stop within {} of {}",
                    humantime::format_duration(std::time::Duration::from_millis(stop.grace_ms)),
                    signal_name(stop.signal)
                );
            } else if signal == stop.signal {
                exit.message = format!("stopped with {}", signal_name(signal));
            }
        }
        Ok(Some(exit))
    }

    /// True once the task has ended, or its shim (the only writer of its log) is gone.
    /// Cheaper than `observe` and never writes: for log followers.
    pub(crate) fn output_finished(&self) -> bool {
        if self.file(EXIT).exists() || !self.file(SPEC).exists() {
            return true;
        }
        match self.read::<ProcessId>(SHIM_PID) {
            Ok(Some(shim)) => !shim.is_alive(),
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is corrupt: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a whole file at once: to a temporary name, then renamed over the real one.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    // A name of its own per write: two writers (the shim and a runtime, or two waiters)
    // must not rename each other's half-written file into place.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(ProcessId::of(i32::MAX).is_none());
    }

    #[test]
    fn observe_walks_from_created_to_exited() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().join("t1"));
        assert!(matches!(dir.observe(), Err(RuntimeError::NotFound(id)) if id == "t1"));
        std::fs::create_dir(dir.path()).unwrap();
        std::fs::write(dir.file(SPEC), "{}").unwrap();
        assert!(matches!(dir.observe().unwrap(), Observed::Created));

        let me = ProcessId::of(std::process::id() as i32).unwrap();
        dir.write(SHIM_PID, &me).unwrap();
        assert!(matches!(
            dir.observe().unwrap(),
            Observed::Running { child: None }
        ));

        // A dead shim without an exit file: the runtime records that the exit is lost.
        dir.write(
            SHIM_PID,
            &ProcessId {
                start_time: me.start_time + 1,
                ..me
            },
        )
        .unwrap();
        let Observed::Exited {
            exit,
            started: true,
        } = dir.observe().unwrap()
        else {
            panic!("not exited")
        };
        assert_eq!(exit.code, -1);
        assert!(exit.message.contains("shim"), "{}", exit.message);
        assert!(dir.file(EXIT).exists());
    }

    #[test]
    fn stop_notes_explain_the_exit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().to_path_buf());
        let killed = Exit {
            code: 137,
            signal: Some(9),
            oom_killed: false,
            message: "killed by SIGKILL".into(),
        };
        dir.write(EXIT, &killed).unwrap();
        dir.write(
            STOP,
            &StopNote {
                signal: 15,
                grace_ms: 300,
                escalated: true,
            },
        )
        .unwrap();
        assert_eq!(
            dir.exit().unwrap().unwrap().message,
            "killed with SIGKILL: it did not stop within 300ms of SIGTERM"
        );
        let termed = Exit {
            code: 143,
            signal: Some(15),
            oom_killed: false,
            message: "killed by SIGTERM".into(),
        };
        dir.write(EXIT, &termed).unwrap();
        assert_eq!(dir.exit().unwrap().unwrap().message, "stopped with SIGTERM");
    }
}
