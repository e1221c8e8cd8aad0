//! The containerd backend's logger: containerd's shim starts it for each container (stdio
//! URI `binary://<skiffd>?logger=<task dir>`) with the container's stdout on fd 3, its
//! stderr on fd 4, and fd 5 to close once it is ready. It writes the task's log in the
//! same rotated format as the process backend, and lives exactly as long as the container's
//! outputs, whatever happens to skiffd.
//!
//! It ignores SIGTERM, which the shim sends when the container's IO closes, perhaps before
//! the pipes are drained, and ends in one of two ways:
//! - end of file on both outputs: every process that could write to them (the shim, the
//!   container) has closed them, and all they wrote is logged. The normal way.
//! - its task directory is removed: the runtime removes a task only once containerd has no
//!   process for it (containerd refuses to delete a running one), and nobody can read a log
//!   whose directory is gone. Without this, a logger whose pipes are never closed would
//!   live forever: the shim starts the logger before runc creates the container, and when
//!   the create fails the pipes' write ends may stay open in a shim containerd's cleanup
//!   gave up on (under load), so end of file never comes.
//!
//! Neither can end the logger of a container that still runs, so neither loses its lines.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigHandler, Signal};

use crate::log_file::capture;
use crate::LogSource;

/// The file in the task directory that says how large its log may grow before rotating.
pub(crate) const LOG_MAX_BYTES: &str = "log-max-bytes";
/// Written by the logger once the container's outputs closed and all is logged.
pub(crate) const LOG_DONE: &str = "log.done";
/// The logger's PID, so a reader can tell a logger that died from one still at work.
pub(crate) const LOGGER_PID: &str = "logger.pid";
/// How often the logger looks whether its task directory is still there.
const TASK_DIR_CHECK: Duration = Duration::from_secs(1);
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
    // Held open, so a removed directory is told apart from one that is still there by its
    // link count, whatever its path comes to name later.
    let task_dir = File::open(dir).ok();
    let _ = std::fs::write(dir.join(LOGGER_PID), std::process::id().to_string());
    let max_bytes = std::fs::read_to_string(dir.join(LOG_MAX_BYTES))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(crate::process::DEFAULT_LOG_MAX_BYTES);
    // SAFETY: containerd's shim starts us with these descriptors open and ours alone.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from_raw_fd(3),
            File::from_raw_fd(4),
            File::from_raw_fd(5),
        )
    };
    let outputs: Vec<(Box<dyn Read + Send>, LogSource)> = vec![
        (Box::new(stdout), LogSource::Stdout),
        (Box::new(stderr), LogSource::Stderr),
    ];
    let done = capture(outputs, dir, max_bytes);
    drop(ready);
    if let Ending::OutputsClosed = wait_for_outputs(&done, task_dir.as_ref()) {
        let _ = std::fs::write(dir.join(LOG_DONE), b"");
    }
    // The reader threads may still block on pipes someone holds open: exiting ends them.
    std::process::exit(0);
}

/// Why a logger stops.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Both outputs reached end of file and everything is written.
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
}
