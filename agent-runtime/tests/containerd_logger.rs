//! The containerd backend's logger (`skiff-shim logger <task dir>`) started as containerd's
//! shim starts it: the container's stdout and stderr on fds 3 and 4, fd 5 to close once it
//! is ready. No containerd or root needed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Upper bound for anything a test waits on, so a bug fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(20);

/// A logger and the write ends of its pipes, as the shim holds them. Killed when dropped,
/// so a failing test leaves no process behind.
struct Logger {
    child: Child,
    stdout: Option<File>,
    stderr: Option<File>,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    // Close-on-exec: children other tests start meanwhile must not hold our ends.
    nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe")
}

impl Logger {
    /// Starts a logger for `dir` and returns once it is ready.
    fn start(dir: &Path) -> Logger {
        let (stdout_r, stdout_w) = pipe();
        let (stderr_r, stderr_w) = pipe();
        let (ready_r, ready_w) = pipe();
        let fds = [
            stdout_r.as_raw_fd(),
            stderr_r.as_raw_fd(),
            ready_w.as_raw_fd(),
        ];
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff-shim"));
        command
            .arg("logger")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: only fcntl and dup2, which are async-signal-safe, run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Out of the way of 3..=5 first, then into place (dup2's copy stays open
                // across exec).
                let mut high = [0; 3];
                for (slot, fd) in high.iter_mut().zip(fds) {
                    *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                    if *slot < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (target, fd) in (3..).zip(high) {
                    if libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the logger");
        drop((stdout_r, stderr_r, ready_w));
        // End of file once the logger closed fd 5 (or died).
        let _ = File::from(ready_r).read_to_end(&mut Vec::new());
        Logger {
            child,
            stdout: Some(File::from(stdout_w)),
            stderr: Some(File::from(stderr_w)),
        }
    }

    /// Waits up to [`DEADLINE`] for the logger to exit.
    fn exited(&mut self) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The task's log as (stream, data) records, in file order.
fn records(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("task.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(' ')?;
            let (tag, data) = rest.split_once(' ')?;
            Some((tag.to_owned(), data.to_owned()))
        })
        .collect()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_logger_logs_everything_until_its_pipes_close_and_sigterm_does_not_cut_it_short() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = Logger::start(dir.path());
    let (mut stdout, mut stderr) = (logger.stdout.take().unwrap(), logger.stderr.take().unwrap());
    stdout.write_all(b"one\n").unwrap();
    stderr.write_all(b"two\n").unwrap();
    // The shim sends SIGTERM when the container's IO closes, perhaps before it is drained.
    kill(Pid::from_raw(logger.child.id() as i32), Signal::SIGTERM).unwrap();
    stdout.write_all(b"three").unwrap();
    drop((stdout, stderr));
    ended_with(
        &mut logger,
        dir.path(),
        &[("eF", "two"), ("oF", "one"), ("oP", "three")],
    );
}

/// Asserts that `logger` exits successfully, having logged `want` (tag, data; in any
/// order) into `dir` and marked its log done.
fn ended_with(logger: &mut Logger, dir: &Path, want: &[(&str, &str)]) {
    let status = logger.exited().expect("the logger exits");
    assert!(status.success(), "{status:?}");
    let mut got = records(dir);
    got.sort();
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(tag, data)| (tag.to_string(), data.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(dir.join("log.done").exists());
}

#[test]
fn a_logger_whose_task_directory_is_removed_exits_though_its_pipes_stay_open() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("task");
    std::fs::create_dir(&dir).unwrap();
    let mut logger = Logger::start(&dir);
    // The write ends stay open, as in a shim that outlived a failed create.
    logger
        .stdout
        .as_mut()
        .unwrap()
        .write_all(b"logged\n")
        .unwrap();
    wait_for("the line to be logged", || {
        records(&dir) == [("oF".to_owned(), "logged".to_owned())]
    });
    std::fs::remove_dir_all(&dir).unwrap();
    let status = logger
        .exited()
        .expect("the logger of a removed task exits without end of file");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_logger_asked_to_end_logs_what_its_pipes_hold_and_exits_though_they_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = Logger::start(dir.path());
    // Written before the request, as runc's error is before the runtime asks; the write
    // ends stay open, as in a shim that outlived a failed create.
    logger.stdout.as_mut().unwrap().write_all(b"out\n").unwrap();
    logger.stderr.as_mut().unwrap().write_all(b"err\n").unwrap();
    kill(Pid::from_raw(logger.child.id() as i32), Signal::SIGUSR1).unwrap();
    // It ends once its pipes are empty, though they stay open.
    ended_with(&mut logger, dir.path(), &[("eF", "err"), ("oF", "out")]);
}
