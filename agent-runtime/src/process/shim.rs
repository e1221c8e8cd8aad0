//! The shim: a small supervisor between skiffd and one task process.
//!
//! skiffd starts it in a session of its own, so it outlives skiffd: it owns the task's
//! output pipes, writes the log, and records the exit status, none of which can wait for a
//! skiffd that crashed. Whatever skiffd later runs over the same state directory finds the
//! task through the files the shim writes.
//!
//! Protocol with the runtime: the shim's stdout is a pipe to `start`, which gets one line,
//! `ok <pid>` once the task process runs or `err <reason>` when it could not start. The
//! shim's stderr is `shim.log` in the task directory.
//!
//! The shim forwards no signals: `stop` signals the task process directly (it knows its PID
//! and start time from `child.pid`). When the task process ends, the shim kills what is left
//! of its process group, as the end of a container's init ends the container.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use super::spec::ProcessSpec;
use super::task_dir::{ProcessId, TaskDir, CHILD_PID, EXIT, SHIM_PID};
use crate::log_file::capture;
use crate::signal::signal_name;
use crate::{Exit, LogSource};

/// How long the shim waits for the last output after the task process ended (its children
/// may hold the pipes open; they were just killed, so this is only a safety net).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the shim for one task and exits. `args` are the arguments after `shim`: the task's
/// state directory. skiffd calls this when invoked as `skiffd shim <dir>`.
pub fn shim_main(args: &[String]) -> ! {
    let code = match args {
        [dir] => run(Path::new(dir)),
        _ => {
            eprintln!("usage: skiffd shim <task-state-dir> (skiffd runs this itself; there is no need to)");
            2
        }
    };
    std::process::exit(code)
}

/// Tells `start` how it went. A runtime that is gone makes this fail, which is fine.
fn report(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn run(dir: &Path) -> i32 {
    let task_dir = TaskDir::new(dir.to_path_buf());
    let spec = match task_dir.spec() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("shim: {e}");
            report(&format!("err the shim cannot read the task spec: {e}"));
            return 1;
        }
    };
    if let Err(e) = ProcessId::of(std::process::id() as i32)
        .ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))
        .and_then(|me| task_dir.write(SHIM_PID, &me))
    {
        eprintln!("shim: cannot record its pid: {e}");
        report(&format!(
            "err the shim cannot write to {}: {e}",
            dir.display()
        ));
        return 1;
    }

    let mut child = match spawn(&spec) {
        Ok(child) => child,
        Err(e) => {
            let exit = exec_failure(&spec, &e);
            report(&format!("err {}", exit.message));
            if let Err(e) = task_dir.write(EXIT, &exit) {
                eprintln!("shim: cannot record the exit status: {e}");
            }
            return 0;
        }
    };
    let pid = child.id() as i32;
    // The process exists until we reap it, so its /proc entry is there to read.
    let identity = ProcessId::of(pid).unwrap_or(ProcessId { pid, start_time: 0 });
    if let Err(e) = task_dir.write(CHILD_PID, &identity) {
        // Without child.pid nobody can stop the task: do not leave it running.
        eprintln!("shim: cannot record the task's pid: {e}");
        let _ = child.kill();
        let _ = child.wait();
        report(&format!("err cannot write to {}: {e}", dir.display()));
        return 1;
    }
    report(&format!("ok {pid}"));

    let drained = capture_output(&mut child, dir);
    let exit = wait_for_task(&mut child);
    if drained.recv_timeout(DRAIN_TIMEOUT).is_err() {
        eprintln!("shim: the task's output did not close within {DRAIN_TIMEOUT:?}; the log may miss its end");
    }
    if let Err(e) = task_dir.write(EXIT, &exit) {
        eprintln!("shim: cannot record the exit status: {e}");
        return 1;
    }
    0
}

fn spawn(spec: &ProcessSpec) -> io::Result<Child> {
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().filter_map(|e| e.split_once('=')))
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that SIGKILL reaches whatever it started too.
        .process_group(0);
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own mask.
    // skiffd (and so this shim) creates its files for root alone; the task gets the
    // conventional mask a container gets from runc.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    if let Some(user) = &spec.user {
        // std does setgroups/setgid/setuid between fork and exec, dropping supplementary
        // groups when it can.
        command.uid(user.uid).gid(user.gid);
    }
    if let Some(path) = &spec.netns {
        let netns = std::fs::File::open(path)?;
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; setns is
        // a plain system call on a descriptor opened before the fork.
        unsafe {
            command.pre_exec(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)
            });
        }
    }
    command.spawn()
}

/// Exit status and message for a task process that could not be started (codes as a shell
/// gives them: 127 not found, 126 not executable).
fn exec_failure(spec: &ProcessSpec, e: &io::Error) -> Exit {
    let program = &spec.argv[0];
    let (code, message) = match e.kind() {
        io::ErrorKind::NotFound => (
            127,
            format!("cannot run '{program}': no such file in the task's PATH or working directory"),
        ),
        io::ErrorKind::PermissionDenied => {
            (126, format!("cannot run '{program}': permission denied"))
        }
        _ => (126, format!("cannot run '{program}': {e}")),
    };
    Exit {
        code,
        signal: None,
        oom_killed: false,
        message,
    }
}

/// Starts threads that log the task's stdout and stderr. The receiver gets a message once
/// both outputs are closed and everything is written.
fn capture_output(child: &mut Child, dir: &Path) -> mpsc::Receiver<()> {
    let mut outputs: Vec<(Box<dyn Read + Send>, LogSource)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        outputs.push((Box::new(out), LogSource::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        outputs.push((Box::new(err), LogSource::Stderr));
    }
    capture(outputs, dir)
}

/// Waits for the task process, kills what is left of its process group, and reaps it.
fn wait_for_task(child: &mut Child) -> Exit {
    let pid = Pid::from_raw(child.id() as i32);
    // Wait without reaping: while the process is a zombie its PID, and so its group ID,
    // cannot be reused, so the group kill below cannot hit a stranger.
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("shim: waitid: {e}");
                break;
            }
            Ok(_) => break,
        }
    }
    match killpg(pid, Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => eprintln!("shim: cannot kill the task's leftover processes: {e}"),
    }
    match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Exit {
                code,
                signal: None,
                oom_killed: false,
                message: format!("exited with code {code}"),
            },
            (None, Some(signal)) => Exit {
                code: 128 + signal,
                signal: Some(signal),
                oom_killed: false,
                message: format!("killed by {}", signal_name(signal)),
            },
            (None, None) => Exit {
                code: -1,
                signal: None,
                oom_killed: false,
                message: format!("ended with status {status}"),
            },
        },
        Err(e) => Exit {
            code: -1,
            signal: None,
            oom_killed: false,
            message: format!("cannot tell how the task ended: {e}"),
        },
    }
}
