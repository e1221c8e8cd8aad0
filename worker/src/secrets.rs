//! The secrets and configs of the node's tasks: held in memory as the dispatcher sends them
//! (only those of tasks assigned here, dropped when the last such task ends), and written
//! for each task into a directory of its own ([`agent_runtime::task_files_dir`]) just
//! before it starts, with the owner and mode each reference asks for; the runtime binds
//! each file read-only at its target. Nothing of a secret is ever written to a disk or a
//! log: the directories are on a tmpfs ([`agent_runtime::TASK_FILES_ROOT`]), the
//! assignments saved to disk carry only references, and errors name secrets, never bytes.
//!
//! The tmpfs is mounted once, in the runtime's mount namespace, where containerd's runc
//! binds from ([`agent_runtime::Runtime::mount_namespace_pid`]): a mount made in a
//! namespace of skiffd's own (under `ip netns exec`) would be invisible to runc, and the
//! kernel refuses to bind from another namespace's mount. skiffd then writes there through
//! that process's `/proc/PID/root`.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, MsFlags};
use proto::{assignment, AssignmentAction, AssignmentsMessage, AssignmentsType, Task};

/// Why a task's files could not be written; the task is rejected with it.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A reference names a secret or config this node was not sent.
    #[error("{what} {name} was not sent to this node; it may have been removed: update the service to refer to one that exists")]
    Missing {
        /// "secret" or "config".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A target Docker's rules refuse.
    #[error("{0}")]
    Target(#[from] agent_runtime::RuntimeError),
    /// Mounting the tmpfs or writing a file failed.
    #[error("cannot write the task's secrets and configs to {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the node holds, by ID.
#[derive(Default)]
struct Held {
    secrets: HashMap<String, proto::Secret>,
    configs: HashMap<String, proto::Config>,
}

/// The node's secrets and configs.
#[derive(Default)]
pub struct TaskFiles {
    held: Mutex<Held>,
    /// The process in whose mount namespace the files go, if not this one.
    namespace: Option<u32>,
}

impl TaskFiles {
    /// Secrets and configs written in the mount namespace of process `namespace` (`None`:
    /// this process's), where the runtime binds from.
    pub fn new(namespace: Option<u32>) -> Self {
        Self {
            held: Mutex::default(),
            namespace,
        }
    }

    /// `path` (absolute, in the runtime's mount namespace) as this process reaches it.
    fn here(&self, path: &Path) -> PathBuf {
        match self.namespace {
            Some(pid) => {
                Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
            }
            None => path.to_owned(),
        }
    }

    /// Removes a task's files (a no-op for a task without any). Blocking. A container
    /// still binding a file keeps it until it ends.
    pub fn remove(&self, task_id: &str) {
        let _ = std::fs::remove_dir_all(self.here(&agent_runtime::task_files_dir(task_id)));
    }

    /// Takes in the secrets and configs of an assignments message: added, removed, or (in a
    /// complete message) exactly those listed.
    pub fn apply(&self, message: &AssignmentsMessage) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if message.r#type == AssignmentsType::Complete as i32 {
            *held = Held::default();
        }
        for change in &message.changes {
            let remove = change.action == AssignmentAction::Remove as i32;
            match change.assignment.as_ref().and_then(|a| a.item.as_ref()) {
                Some(assignment::Item::Secret(s)) => {
                    let id = s.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
                    if remove {
                        held.secrets.remove(&id);
                    } else {
                        held.secrets.insert(id, s.clone());
                    }
                }
                Some(assignment::Item::Config(c)) => {
                    let id = c.meta.as_ref().map(|m| m.id.clone()).unwrap_or_default();
                    if remove {
                        held.configs.remove(&id);
                    } else {
                        held.configs.insert(id, c.clone());
                    }
                }
                _ => {}
            }
        }
    }

    /// The IDs of the secrets the node holds (never their data), sorted.
    pub fn secret_ids(&self) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = held.secrets.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Writes `task`'s secrets and configs onto a fresh tmpfs of its own, each at its
    /// target's path with the reference's owner and mode. Does nothing for a task without
    /// any. Blocking (mount, file writes).
    pub fn write(&self, task: &Task) -> Result<(), FilesError> {
        let Some(container) = task
            .spec
            .as_ref()
            .and_then(|s| s.container.as_ref())
            .filter(|_| has_files(task))
        else {
            return Ok(());
        };
        let files = agent_runtime::task_files(task.id(), container)?;
        // (path, data, uid, gid, mode), in the order of `files`: secrets, then configs.
        let contents: Vec<(Vec<u8>, u32, u32, u32)> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let secrets = container.secrets.iter().map(|r| {
                let data = held
                    .secrets
                    .get(&r.secret_id)
                    .and_then(|s| s.spec.as_ref())
                    .map(|s| s.data.clone())
                    .ok_or_else(|| FilesError::Missing {
                        what: "secret",
                        name: r.secret_name.clone(),
                    })?;
                Ok((data, r.uid, r.gid, proto::task_files::mode(r.mode)))
            });
            let configs = container.configs.iter().map(|r| {
                let data = held
                    .configs
                    .get(&r.config_id)
                    .and_then(|c| c.spec.as_ref())
                    .map(|c| c.data.clone())
                    .ok_or_else(|| FilesError::Missing {
                        what: "config",
                        name: r.config_name.clone(),
                    })?;
                Ok((data, r.uid, r.gid, proto::task_files::mode(r.mode)))
            });
            secrets.chain(configs).collect::<Result<_, FilesError>>()?
        };
        let root = agent_runtime::task_files_dir(task.id());
        let dir = self.here(&root);
        self.ensure_tmpfs()?;
        self.remove(task.id());
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        let written =
            files
                .iter()
                .zip(&contents)
                .try_for_each(|((path, _), (data, uid, gid, mode))| {
                    let here = dir.join(path.strip_prefix(&root).unwrap_or(path));
                    write_file(&here, data, *uid, *gid, *mode)
                });
        if written.is_err() {
            self.remove(task.id());
        }
        written
    }
}

/// Whether `task` has secrets or configs: it can start only once they are written, from
/// what the dispatcher sends (never from the assignment saved on disk).
pub fn has_files(task: &Task) -> bool {
    task.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .is_some_and(|c| !c.secrets.is_empty() || !c.configs.is_empty())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl TaskFiles {
    /// Makes sure [`agent_runtime::TASK_FILES_ROOT`] is a tmpfs for root alone in the
    /// runtime's mount namespace, mounting one if it is not (several skiffd on one machine,
    /// as in tests, take turns through a lock file, so that no tmpfs is mounted over
    /// another's files).
    fn ensure_tmpfs(&self) -> Result<(), FilesError> {
        let here = self.here(Path::new(agent_runtime::TASK_FILES_ROOT));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&here)
            .map_err(io(&here))?;
        let is_tmpfs = |p: &Path| {
            nix::sys::statfs::statfs(p)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        };
        if is_tmpfs(&here) {
            return Ok(());
        }
        let lock_path = here.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(&lock_path)(std::io::Error::from(e)))?;
        if is_tmpfs(&here) {
            return Ok(());
        }
        let namespace = self.namespace;
        std::thread::spawn(move || mount_tmpfs(namespace))
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the mount thread panicked")))
            .map_err(io(Path::new(agent_runtime::TASK_FILES_ROOT)))
    }
}

/// Mounts the task files' tmpfs, in the mount namespace of process `namespace` if given.
/// Runs on a thread of its own, which leaves skiffd's filesystem context before entering
/// that namespace (the kernel requires it) and ends right after, so no thread that goes on
/// running ever changes namespace.
fn mount_tmpfs(namespace: Option<u32>) -> std::io::Result<()> {
    use nix::sched::{setns, unshare, CloneFlags};
    if let Some(pid) = namespace {
        unshare(CloneFlags::CLONE_FS)?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
        setns(&ns, CloneFlags::CLONE_NEWNS)?;
    }
    mount(
        Some("tmpfs"),
        agent_runtime::TASK_FILES_ROOT,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )?;
    Ok(())
}

/// Writes one file with its owner and mode (its directories root's, 0755, so that the
/// owner can reach it wherever the task looks for it through the bind).
fn write_file(path: &Path, data: &[u8], uid: u32, gid: u32, mode: u32) -> Result<(), FilesError> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io(parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(data).map_err(io(path))?;
    nix::unistd::fchown(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| io(path)(std::io::Error::from(e)))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Assignment, AssignmentChange, Meta, Secret, SecretSpec};

    fn secret_change(id: &str, action: AssignmentAction) -> AssignmentChange {
        AssignmentChange {
            action: action as i32,
            assignment: Some(Assignment {
                item: Some(assignment::Item::Secret(Secret {
                    meta: Some(Meta {
                        id: id.into(),
                        ..Default::default()
                    }),
                    spec: Some(SecretSpec {
                        name: id.into(),
                        data: b"bytes".to_vec(),
                        ..Default::default()
                    }),
                })),
            }),
        }
    }

    fn message(kind: AssignmentsType, changes: Vec<AssignmentChange>) -> AssignmentsMessage {
        AssignmentsMessage {
            r#type: kind as i32,
            changes,
            ..Default::default()
        }
    }

    #[test]
    fn the_node_holds_exactly_what_it_was_sent() {
        let files = TaskFiles::default();
        files.apply(&message(
            AssignmentsType::Complete,
            vec![
                secret_change("a", AssignmentAction::Update),
                secret_change("b", AssignmentAction::Update),
            ],
        ));
        assert_eq!(files.secret_ids(), ["a", "b"]);
        files.apply(&message(
            AssignmentsType::Incremental,
            vec![secret_change("a", AssignmentAction::Remove)],
        ));
        assert_eq!(files.secret_ids(), ["b"]);
        // A complete message replaces everything.
        files.apply(&message(AssignmentsType::Complete, vec![]));
        assert!(files.secret_ids().is_empty());
    }

    #[test]
    fn a_task_naming_a_secret_the_node_lacks_is_refused_by_name() {
        let files = TaskFiles::new(None);
        let task = Task {
            meta: Some(Meta {
                id: "t1".into(),
                ..Default::default()
            }),
            spec: Some(
                proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        secrets: vec![proto::SecretReference {
                            secret_id: "gone".into(),
                            secret_name: "db-password".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        };
        let err = files.write(&task).unwrap_err().to_string();
        assert!(err.contains("secret db-password was not sent"), "{err}");
        assert!(!agent_runtime::task_files_dir("t1").exists());
    }
}
