//! The containerd backend's logger: containerd's shim starts it for each container (stdio
//! URI `binary://<skiffd>?logger=<task dir>`) with the container's stdout on fd 3, its
//! stderr on fd 4, and fd 5 to close once it is ready. It writes the task's log in the
//! same rotated format as the process backend, and lives exactly as long as the container's
//! outputs, whatever happens to skiffd.
//!
//! It ignores SIGTERM, which the shim sends when the container's IO closes, perhaps before
//! the pipes are drained, and ends in one of three ways:
//! - end of file on both outputs: every process that could write to them (the shim, the
//!   container) has closed them, and all they wrote is logged. The normal way.
//! - [`END_SIGNAL`] from the runtime ([`end`]), once the pipes are empty: sent after a
//!   failed start, when containerd has no process for the task. The shim starts the logger
//!   before runc creates the container, and when the create fails the pipes' write ends
//!   may stay open in a shim containerd's cleanup gave up on (under load), so end of file
//!   never comes. What was written before (runc's error) is logged first.
//! - its task directory is removed: the runtime removes a task only once containerd has no
//!   process for it (containerd refuses to delete a running one), and nobody can read a log
//!   whose directory is gone. The backstop for a logger the signal missed (skiffd died
//!   in between, or containerd did not answer).
//!
//! None of these can end the logger of a container that still runs, so none loses its lines.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

use crate::log_file::capture;
use crate::LogSource;

/// The file in the task directory that says how large its log may grow before rotating.
/// Written by the logger once the container's outputs closed and all is logged.
pub(crate) const LOG_DONE: &str = "log.done";
/// The logger's PID, so a reader can tell a logger that died from one still at work.
pub(crate) const LOGGER_PID: &str = "logger.pid";
/// The argument before the task directory on the logger's command line.
const LOGGER_ARG: &str = "logger";
/// How often the logger looks whether its task directory is still there.
const TASK_DIR_CHECK: Duration = Duration::from_secs(1);
/// Asks a logger to finish once its pipes are empty: nothing will write to them again.
pub(crate) const END_SIGNAL: Signal = Signal::SIGUSR1;

/// The logger's entry point: `skiffd logger <task dir>`. Never returns.
pub fn logger_main(args: &[String]) -> ! {
    let [dir] = args else {
        eprintln!(
            "usage: skiffd logger <task-dir> (containerd runs this itself; there is no need to)"
        );
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    // containerd's shim sends SIGTERM when the container's IO closes, possibly before
    // the pipes are drained: finish on end of file instead.
    // SAFETY: setting a signal to ignored has no handler to be unsafe about.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGTERM, SigHandler::SigIgn);
    }
    // Before the PID is written: a request may come as soon as the runtime can read it.
    let end_requested = end_requests()
        .inspect_err(|e| {
            eprintln!("log: cannot take end requests, only end of file ends the log: {e}")
        })
        .ok()
        .map(Arc::new);
    // Held open, so a removed directory is told apart from one that is still there by its
    // link count, whatever its path comes to name later.
    let task_dir = File::open(dir).ok();
    let _ = std::fs::write(dir.join(LOGGER_PID), std::process::id().to_string());
    // SAFETY: containerd's shim starts us with these descriptors open and ours alone.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from_raw_fd(3),
            File::from_raw_fd(4),
            File::from_raw_fd(5),
        )
    };
    let output = |pipe| Output {
        pipe,
        end_requested: end_requested.clone(),
    };
    let outputs: Vec<(Box<dyn Read + Send>, LogSource)> = vec![
        (Box::new(output(stdout)), LogSource::Stdout),
        (Box::new(output(stderr)), LogSource::Stderr),
    ];
    let done = capture(outputs, dir);
    drop(ready);
    if let Ending::OutputsClosed = wait_for_outputs(&done, task_dir.as_ref()) {
        let _ = std::fs::write(dir.join(LOG_DONE), b"");
    }
    // The reader threads may still block on pipes someone holds open: exiting ends them.
    std::process::exit(0);
}

/// The write end of the end-request pipe, for the signal handler.
static END_REQUEST: AtomicI32 = AtomicI32::new(-1);

extern "C" fn request_end(_: libc::c_int) {
    let fd = END_REQUEST.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe and the byte is a constant. The pipe does not
        // block: when it is full, an earlier request stands.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Turns [`END_SIGNAL`] into a readable pipe (the returned read end) that readers poll
/// beside their output.
fn end_requests() -> io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The handler may run at any time from now on: the write end stays open for good.
    END_REQUEST.store(write.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(request_end),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only loads an atomic and calls write(2), both async-signal-safe.
    unsafe { sigaction(END_SIGNAL, &action) }?;
    Ok(read)
}

/// One of the container's outputs: read to end of file, or, once an end is requested
/// (`end_requested` readable), until it is empty.
struct Output {
    pipe: File,
    end_requested: Option<Arc<OwnedFd>>,
}

impl Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(end_requested) = &self.end_requested else {
            return self.pipe.read(buf);
        };
        loop {
            let mut fds = [
                PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN),
                PollFd::new(end_requested.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Data, end of file or an error: the read says which.
            let output_ready = fds[0].any().unwrap_or(true);
            let end = fds[1].any().unwrap_or(true);
            if output_ready {
                return (&self.pipe).read(buf);
            }
            if end {
                return Ok(0);
            }
        }
    }
}

/// Why a logger stops.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Both outputs ended (end of file, or empty once an end was requested) and everything
    /// is written.
    OutputsClosed,
    /// The task directory is gone: the task was removed.
    TaskRemoved,
}

/// Waits until the outputs are logged to their end or the task directory is removed.
fn wait_for_outputs(done: &mpsc::Receiver<()>, task_dir: Option<&File>) -> Ending {
    loop {
        match done.recv_timeout(TASK_DIR_CHECK) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ending::OutputsClosed,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if task_dir.is_some_and(removed) {
                    return Ending::TaskRemoved;
                }
            }
        }
    }
}

/// A directory (held open) that was removed has no links left.
fn removed(dir: &File) -> bool {
    dir.metadata().is_ok_and(|m| m.nlink() == 0)
}

/// The logger of the task in `dir`, if it runs: the PID in its `logger.pid`, if that
/// process is alive and a logger of this very directory (a PID file outlives its process,
/// whose PID may then be reused; a zombie has no command line).
pub(crate) fn running(dir: &Path) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(dir.join(LOGGER_PID))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|&b| b == 0).skip(1);
    let is_ours = args.next() == Some(LOGGER_ARG.as_bytes())
        && args.next() == Some(dir.as_os_str().as_encoded_bytes());
    is_ours.then_some(Pid::from_raw(pid))
}

/// Asks the logger of the task in `dir`, if it runs, to finish once its pipes are empty:
/// for a container nothing will run in through this logger (its start failed, and
/// containerd has no process for it), so whatever was written is already in the pipes.
pub(crate) fn end(dir: &Path) {
    if let Some(pid) = running(dir) {
        let _ = kill(pid, END_SIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logger_stops_when_its_outputs_close_or_its_task_directory_goes() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("task");
        std::fs::create_dir(&dir).unwrap();
        let held = File::open(&dir).unwrap();

        let (tx, rx) = mpsc::channel();
        tx.send(()).unwrap();
        assert_eq!(wait_for_outputs(&rx, Some(&held)), Ending::OutputsClosed);

        // The outputs stay open (their writer is kept elsewhere): only the removal ends it.
        let (_writer, rx) = mpsc::channel::<()>();
        assert!(!removed(&held));
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(wait_for_outputs(&rx, Some(&held)), Ending::TaskRemoved);
    }

    #[test]
    fn an_output_is_read_to_its_end_or_until_empty_once_an_end_is_requested() {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (requests, request) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut output = Output {
            pipe: File::from(read),
            end_requested: Some(Arc::new(requests)),
        };
        let mut buf = [0u8; 16];
        nix::unistd::write(&write, b"before").unwrap();
        nix::unistd::write(&request, b"x").unwrap();
        // What was written before the request is read first; then the writer, still
        // there, no longer counts.
        assert_eq!(output.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"before");
        assert_eq!(output.read(&mut buf).unwrap(), 0);
        drop(write);
    }

    #[test]
    fn only_a_live_logger_of_the_same_directory_counts_as_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None, "no PID file");
        // This test process is alive but no logger.
        std::fs::write(dir.path().join(LOGGER_PID), std::process::id().to_string()).unwrap();
        assert_eq!(running(dir.path()), None);
        std::fs::write(dir.path().join(LOGGER_PID), "not a pid").unwrap();
        assert_eq!(running(dir.path()), None);
    }
}
