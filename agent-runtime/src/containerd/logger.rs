//! The containerd backend's logger: containerd's shim starts it for each container (stdio
//! URI `binary://<skiffd>?logger=<task dir>`) with the container's stdout on fd 3, its
//! stderr on fd 4, and fd 5 to close once it is ready. It writes the task's log in the
//! same rotated format as the process backend, and lives exactly as long as the container's
//! outputs, whatever happens to skiffd.

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::path::Path;

use crate::log_file::capture;
use crate::LogSource;

/// The file in the task directory that says how large its log may grow before rotating.
pub(crate) const LOG_MAX_BYTES: &str = "log-max-bytes";
/// Written by the logger once the container's outputs closed and all is logged.
pub(crate) const LOG_DONE: &str = "log.done";
/// The logger's PID, so a reader can tell a logger that died from one still at work.
pub(crate) const LOGGER_PID: &str = "logger.pid";

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
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
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
    let _ = done.recv();
    let _ = std::fs::write(dir.join(LOG_DONE), b"");
    std::process::exit(0);
}
