//! The node's saved assignments: one append-only file per node, so that a restarted daemon
//! knows which of the runtime's tasks are its own (`Agent::recover`).
//!
//! Each save appends one record per task and each removal one small record, so the work is
//! that of the change, whatever the node runs. The file is rewritten with only the latest
//! records once more than half of it is stale. A node used to keep one file per task: a
//! tmpfs or ext4 inode and page each, which at a million tasks on one machine (the services
//! bench's simulated nodes) was 3.9 GiB of `/dev/shm` and two system calls per task saved.
//!
//! A record is `length (u32 LE) | CRC-32 of the body (u32 LE) | body`, the body a kind byte
//! and then a task's encoding or a removed task's ID. A daemon killed while it appends
//! leaves a short or damaged last record: reading stops there, and what came before stands.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use proto::Task;

/// The file's name in the agent's directory.
const LOG: &str = "assignments";
/// The end of the name of a file being written aside before it is renamed into place.
const SAVING: &str = ".saving";
/// The kinds of record.
const SAVED: u8 = 1;
const REMOVED: u8 = 2;
/// Bytes before a record's body: its length and checksum.
const HEADER: usize = 8;
/// Stale bytes the file may hold beyond its live ones before it is rewritten: a small
/// node's file is never rewritten for a few updates.
const SLACK: u64 = 64 * 1024;

/// The saved assignments of one node.
pub struct SavedTasks {
    dir: PathBuf,
    log: Arc<Mutex<Log>>,
}

/// Records to append, put together in one buffer: each task encoded in place.
#[derive(Default)]
struct Records {
    bytes: Vec<u8>,
    /// Each record's task ID, kind and size, in order.
    sizes: Vec<(String, u8, u64)>,
}

impl Records {
    /// Adds a record of `kind` whose contents `body` writes.
    fn push(&mut self, id: &str, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; HEADER]);
        self.bytes.push(kind);
        body(&mut self.bytes);
        let checked = &self.bytes[start + HEADER..];
        let (len, crc) = (checked.len() as u32, crc32fast::hash(checked));
        self.bytes[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
        let size = (self.bytes.len() - start) as u64;
        self.sizes.push((id.to_owned(), kind, size));
    }

    fn saved(tasks: impl IntoIterator<Item = impl std::borrow::Borrow<Task>>) -> Self {
        let mut records = Self::default();
        for task in tasks {
            let task = task.borrow();
            records.push(task.id(), SAVED, |buf| task.encode_raw(buf));
        }
        records
    }
}

/// What the file holds. It is opened for each append, not held open: the services bench
/// runs 10,000 nodes in one process, and a file each would take as many descriptors as
/// their connections do.
struct Log {
    path: PathBuf,
    /// Stale bytes allowed beyond the live ones ([`SLACK`], less in tests).
    slack: u64,
    /// Whether [`SavedTasks::load`] has read the file (appending before would add to a
    /// file not yet read and rewritten).
    loaded: bool,
    /// The size of each task's latest record.
    sizes: HashMap<String, u64>,
    /// Bytes in the file, and how many of them are superseded or removed records.
    total: u64,
    stale: u64,
}

impl SavedTasks {
    /// The saved assignments under `dir`; nothing is read or written until [`Self::load`].
    pub fn new(dir: PathBuf) -> Self {
        Self::with_slack(dir, SLACK)
    }

    fn with_slack(dir: PathBuf, slack: u64) -> Self {
        let log = Log {
            path: dir.join(LOG),
            slack,
            loaded: false,
            sizes: HashMap::new(),
            total: 0,
            stale: 0,
        };
        Self {
            dir,
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// Reads the saved tasks and starts a fresh file with only them. Files of the layout
    /// before this one (a file per task, named by its ID) are read too, and removed once
    /// their tasks are in the new file.
    pub async fn load(&self) -> io::Result<HashMap<String, Task>> {
        let (dir, log) = (self.dir.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let mut tasks = HashMap::new();
            let mut older = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if name == LOG {
                    continue;
                }
                if !name.ends_with(SAVING) {
                    if let Some(task) = read_one(&path) {
                        tasks.insert(task.id().to_owned(), task);
                    }
                }
                older.push(path);
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.path.exists() {
                tasks.extend(read_log(&log.path)?);
            }
            log.rewrite(tasks.values())?;
            for path in older {
                let _ = std::fs::remove_file(path);
            }
            Ok(tasks)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Saves `tasks` (new ones, or newer versions), all in one write on a blocking thread:
    /// a message brings a node's hundred tasks at once.
    pub async fn save(&self, tasks: &[Task]) {
        if tasks.is_empty() {
            return;
        }
        let records = Records::saved(tasks);
        let log = self.log.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.append(records)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        if let Err(e) = written {
            tracing::warn!(file = %self.dir.join(LOG).display(), error = %e, "cannot save the assignments");
        }
    }

    /// Forgets a task: one small record, written at once so that a later save of anything
    /// comes after it.
    pub fn remove(&self, id: &str) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if !log.sizes.contains_key(id) {
            return;
        }
        let mut tombstone = Records::default();
        tombstone.push(id, REMOVED, |buf| buf.extend_from_slice(id.as_bytes()));
        if let Err(e) = log.append(tombstone) {
            tracing::warn!(file = %self.dir.join(LOG).display(), task = id, error = %e, "cannot save a task's removal");
        }
    }
}

impl Log {
    /// Appends `records`, then rewrites the file if more than half of it (and the slack)
    /// is stale, so that it stays within twice what it holds. A removal's record is stale
    /// from the start, with the one it removes.
    fn append(&mut self, records: Records) -> io::Result<()> {
        if !self.loaded {
            return Err(io::Error::other("the saved assignments were never loaded"));
        }
        OpenOptions::new()
            .append(true)
            .open(&self.path)?
            .write_all(&records.bytes)?;
        self.total += records.bytes.len() as u64;
        for (id, kind, size) in records.sizes {
            let old = if kind == REMOVED {
                self.stale += size;
                self.sizes.remove(&id)
            } else {
                self.sizes.insert(id, size)
            };
            self.stale += old.unwrap_or(0);
        }
        if self.stale <= self.total - self.stale + self.slack {
            return Ok(());
        }
        let tasks = read_log(&self.path)?;
        self.rewrite(tasks.values())
    }

    /// Writes `tasks` aside and renames the file into place: a daemon killed meanwhile
    /// leaves the old file whole.
    fn rewrite<'a>(&mut self, tasks: impl Iterator<Item = &'a Task>) -> io::Result<()> {
        let records = Records::saved(tasks);
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(SAVING);
        std::fs::write(&aside, &records.bytes)?;
        std::fs::rename(&aside, &self.path)?;
        self.loaded = true;
        self.total = records.bytes.len() as u64;
        self.stale = 0;
        self.sizes = records
            .sizes
            .into_iter()
            .map(|(id, _, size)| (id, size))
            .collect();
        Ok(())
    }
}

/// The tasks a file holds, each as last saved and not removed since. Reading stops at the
/// first short or damaged record: the end of an append cut short.
fn read_log(path: &Path) -> io::Result<HashMap<String, Task>> {
    let bytes = std::fs::read(path)?;
    let mut tasks = HashMap::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some(body) = next_record(&mut rest) else {
            tracing::warn!(file = %path.display(), bytes = rest.len(), "ignoring the end of the saved assignments, cut short");
            break;
        };
        match (body[0], &body[1..]) {
            (SAVED, encoded) => match Task::decode(encoded) {
                Ok(task) => {
                    tasks.insert(task.id().to_owned(), task);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable saved assignment")
                }
            },
            (REMOVED, id) => {
                tasks.remove(String::from_utf8_lossy(id).as_ref());
            }
            (kind, _) => {
                tracing::warn!(file = %path.display(), kind, "ignoring a saved record of an unknown kind")
            }
        }
    }
    Ok(tasks)
}

/// The next record's body (kind and contents), or `None` where it is cut short or damaged.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let header = rest.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let body = rest.get(HEADER..HEADER + len).filter(|b| !b.is_empty())?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    *rest = &rest[HEADER + len..];
    Some(body)
}

/// A task saved by the layout before this one, one file per task; an empty or unreadable
/// file (a daemon killed while writing it) is no task.
fn read_one(path: &Path) -> Option<Task> {
    let bytes = std::fs::read(path).ok()?;
    match Task::decode(bytes.as_slice()) {
        Ok(task) if !task.id().is_empty() => Some(task),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable saved assignment");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task(id: &str, version: u64) -> Task {
        Task {
            meta: Some(proto::Meta {
                id: id.into(),
                version,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn versions(tasks: &HashMap<String, Task>) -> HashMap<String, u64> {
        tasks
            .iter()
            .map(|(id, t)| (id.clone(), t.meta.as_ref().unwrap().version))
            .collect()
    }

    fn file_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(LOG)).unwrap().len()
    }

    #[tokio::test]
    async fn the_latest_version_of_each_task_not_removed_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedTasks::new(dir.path().to_owned());
        assert!(saved.load().await.unwrap().is_empty());
        saved
            .save(&[task("a", 1), task("b", 1), task("c", 1)])
            .await;
        saved.save(&[task("b", 2)]).await;
        saved.remove("c");
        saved.remove("never-saved");
        let again = SavedTasks::new(dir.path().to_owned());
        let tasks = again.load().await.unwrap();
        assert_eq!(
            versions(&tasks),
            HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)])
        );
        // Loading starts a fresh file with only the live tasks.
        assert_eq!(
            file_size(dir.path()),
            [task("a", 1), task("b", 2)]
                .iter()
                .map(|t| Records::saved([t]).bytes.len() as u64)
                .sum::<u64>()
        );
    }

    #[tokio::test]
    async fn an_append_cut_short_by_a_kill_leaves_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedTasks::new(dir.path().to_owned());
        saved.load().await.unwrap();
        saved.save(&[task("a", 1)]).await;
        let whole = file_size(dir.path());
        saved.save(&[task("a", 2), task("b", 1)]).await;
        let full = std::fs::read(dir.path().join(LOG)).unwrap();
        // Every cut inside the second append reads as the records wholly before it; one
        // damaged byte in its first record reads as the first append alone.
        let second = whole as usize + Records::saved([task("a", 2)]).bytes.len();
        for cut in whole as usize + 1..full.len() {
            std::fs::write(dir.path().join(LOG), &full[..cut]).unwrap();
            let tasks = SavedTasks::new(dir.path().to_owned()).load().await.unwrap();
            let a = if cut < second { 1 } else { 2 };
            assert_eq!(
                versions(&tasks),
                HashMap::from([("a".to_owned(), a)]),
                "cut at {cut}"
            );
        }
        let mut damaged = full.clone();
        damaged[whole as usize + HEADER + 2] ^= 0xff;
        std::fs::write(dir.path().join(LOG), &damaged).unwrap();
        let again = SavedTasks::new(dir.path().to_owned());
        assert_eq!(versions(&again.load().await.unwrap()).len(), 1);
        // The file is whole again: what is saved next is read back.
        again.save(&[task("c", 1)]).await;
        let tasks = SavedTasks::new(dir.path().to_owned()).load().await.unwrap();
        assert_eq!(
            versions(&tasks),
            HashMap::from([("a".to_owned(), 1), ("c".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn a_node_saved_by_the_layout_before_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t1"), task("t1", 4).encode_to_vec()).unwrap();
        // A daemon killed while saving: the file aside, or an empty one.
        std::fs::write(dir.path().join(format!("t1{SAVING}")), b"").unwrap();
        std::fs::write(dir.path().join("t2"), b"").unwrap();
        let saved = SavedTasks::new(dir.path().to_owned());
        let tasks = saved.load().await.unwrap();
        assert_eq!(versions(&tasks), HashMap::from([("t1".to_owned(), 4)]));
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [LOG]);
        let tasks = SavedTasks::new(dir.path().to_owned()).load().await.unwrap();
        assert_eq!(versions(&tasks), HashMap::from([("t1".to_owned(), 4)]));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Save(Vec<(u8, u64)>),
        Remove(u8),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec((0u8..40, 0u64..1000), 1..30).prop_map(Op::Save),
            3 => (0u8..40).prop_map(Op::Remove),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the saves, removals and restarts, a load reads back exactly the tasks a
        /// map kept beside it holds, and the file stays within twice its live bytes and the
        /// slack (small here, so that it is rewritten often).
        #[test]
        fn loading_gives_what_a_map_of_the_same_changes_gives(ops in proptest::collection::vec(op(), 1..120)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let open = || SavedTasks::with_slack(dir.path().to_owned(), 100);
                let mut saved = open();
                saved.load().await.unwrap();
                let mut model = HashMap::new();
                for op in ops {
                    match op {
                        Op::Save(tasks) => {
                            let tasks: Vec<Task> = tasks
                                .into_iter()
                                .map(|(id, v)| task(&format!("task-{id}"), v))
                                .collect();
                            for t in &tasks {
                                model.insert(t.id().to_owned(), t.meta.as_ref().unwrap().version);
                            }
                            saved.save(&tasks).await;
                        }
                        Op::Remove(id) => {
                            let id = format!("task-{id}");
                            model.remove(&id);
                            saved.remove(&id);
                        }
                        Op::Restart => {
                            saved = open();
                            let tasks = saved.load().await.unwrap();
                            prop_assert_eq!(versions(&tasks), model.clone());
                        }
                    }
                    let log = saved.log.lock().unwrap();
                    prop_assert_eq!(log.total, file_size(dir.path()));
                    prop_assert_eq!(log.total - log.stale, log.sizes.values().sum::<u64>());
                    prop_assert!(log.stale <= log.total - log.stale + log.slack);
                }
                let tasks = SavedTasks::new(dir.path().to_owned()).load().await.unwrap();
                prop_assert_eq!(versions(&tasks), model);
                Ok(())
            })?;
        }
    }
}
