//! Bytes per task in a leader's memory: `cargo bench -p manager --bench task_bytes`
//! (`SKIFF_BYTES_NODES`, `SKIFF_BYTES_TASKS` size it; 1,000 and 100,000 by default, as the
//! services bench). Heap bytes are counted by a global allocator that wraps the system's, so
//! the figures are what the structures asked for (malloc adds its own few bytes per block:
//! the live block count is printed too). Single-threaded: every byte counted is this
//! measurement's.
//!
//! It builds the leader's store as the services bench makes it converge, through the store's
//! real apply path and in batches of 1,000 as the leader commits them: the nodes, one small
//! service of 1,000 replicas and one of the rest, each with Docker's defaults
//! (`controlapi::service::with_defaults`); tasks created as the orchestrator makes them,
//! placed by the real scheduler, then reported running. Then it measures what the leader
//! keeps beside the store for them (the dispatcher's per-node state, the events' tracker),
//! what passes through transiently (a watch batch, a node's complete assignment message, the
//! objects a snapshot takes), and what sled, configured as the Raft store is, holds after the
//! run's log entries were written to it, and after ten times as many.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use manager::controlapi::service::with_defaults;
use manager::dispatcher::NodeAssignments;
use manager::events::describe::Tracker;
use manager::orchestrator::new_task;
use manager::scheduler::{schedule_placed, Decision};
use manager::store::{create, update, ObjectStore, StoredObject};
use prost::Message;
use proto::service_spec::Mode;
use proto::{
    ContainerSpec, Meta, Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, Platform, ReplicatedService, Resources, Service, ServiceSpec, SharedTaskSpec,
    StoreAction, StoreBatch, Task, TaskSpec, TaskState, TaskStatus,
};

/// Counts the bytes and blocks the program holds.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Heap bytes and blocks held now.
fn held() -> (isize, isize) {
    (
        BYTES.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    )
}

/// The bytes and blocks `make` leaves held, with what it made.
fn measure<T>(make: impl FnOnce() -> T) -> (T, isize, isize) {
    let (bytes, blocks) = held();
    let made = make();
    let (bytes_after, blocks_after) = held();
    (made, bytes_after - bytes, blocks_after - blocks)
}

/// The bytes and blocks dropping `value` gives back.
fn freed<T>(value: T) -> (isize, isize) {
    let (bytes, blocks) = held();
    drop(value);
    let (bytes_after, blocks_after) = held();
    (bytes - bytes_after, blocks - blocks_after)
}

/// Changes per proposal, as the leader's loops commit them.
const BATCH: usize = 1000;

/// A simulated worker's node as the services bench's workers describe themselves.
fn node(i: usize) -> Node {
    Node {
        meta: Some(Meta {
            id: proto::id::new_id(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            desired_role: NodeRole::Worker as i32,
            availability: NodeAvailability::Active as i32,
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: format!("sim{i}"),
            platform: Some(Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
            }),
            resources: Some(Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 8 << 30,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            addr: format!("127.0.0.{}", 2 + i % 250),
            ..Default::default()
        }),
        role: NodeRole::Worker as i32,
        ..Default::default()
    }
}

/// The services bench's service, with the defaults the control API fills in.
fn service(name: &str, replicas: u64) -> Service {
    let spec = with_defaults(ServiceSpec {
        name: name.into(),
        mode: Some(Mode::Replicated(ReplicatedService { replicas })),
        task_template: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "busybox".into(),
                args: vec!["sleep".into(), "600".into()],
                stop_grace_period_ms: Some(1000),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    Service {
        meta: Some(Meta {
            id: proto::id::new_id(),
            ..Default::default()
        }),
        endpoint: Some(proto::Endpoint {
            spec: spec.endpoint.clone(),
            ..Default::default()
        }),
        spec: Some(spec),
        spec_version: 1,
        ..Default::default()
    }
}

/// The store and every batch committed to it, in order.
struct Leader {
    store: ObjectStore,
    index: u64,
    /// Each committed batch, encoded (what the Raft log holds of it).
    log: Vec<Vec<u8>>,
}

impl Leader {
    fn commit(&mut self, actions: Vec<StoreAction>) -> Vec<proto::StoreEvent> {
        let batch = StoreBatch {
            actions,
            ..Default::default()
        };
        self.index += 1;
        let events = self.store.apply(&batch, self.index).expect("apply");
        self.log.push(batch.encode_to_vec());
        events
    }

    fn commit_all(&mut self, actions: Vec<StoreAction>) {
        let mut actions = actions.into_iter().peekable();
        while actions.peek().is_some() {
            let batch: Vec<_> = actions.by_ref().take(BATCH).collect();
            self.commit(batch);
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One row of the table: bytes per task, and the total.
fn row(what: &str, bytes: isize, blocks: isize, tasks: usize) {
    println!(
        "| {what} | {:.0} | {:.1} | {:.1} |",
        bytes as f64 / tasks as f64,
        blocks as f64 / tasks as f64,
        bytes as f64 / (1 << 20) as f64
    );
}

fn main() {
    let nodes = env("SKIFF_BYTES_NODES", 1000);
    let tasks = env("SKIFF_BYTES_TASKS", 100_000).max(1001);
    let mut leader = Leader {
        store: ObjectStore::default(),
        index: 0,
        log: Vec::new(),
    };
    leader.commit_all((0..nodes).map(|i| create(node(i))).collect());
    let services = [
        service("small", 1000),
        service("scale", tasks as u64 - 1000),
    ];
    leader.commit(services.iter().cloned().map(create).collect());

    // The orchestrator's round: every slot's task, created.
    let mut one_batch_events = None;
    let mut created = Vec::with_capacity(tasks);
    for s in &services {
        let Some(Mode::Replicated(r)) = s.spec.as_ref().and_then(|s| s.mode.as_ref()) else {
            unreachable!("replicated services")
        };
        created.extend((1..=r.replicas).map(|slot| create(new_task(s, slot, None))));
    }
    let mut created = created.into_iter().peekable();
    while created.peek().is_some() {
        let batch: Vec<_> = created.by_ref().take(BATCH).collect();
        let events = leader.commit(batch);
        if one_batch_events.is_none() {
            one_batch_events = Some(events);
        }
    }
    drop(created);
    // The scheduler's rounds, as the orchestrator loop commits their decisions.
    loop {
        let store = &leader.store;
        let pending: Vec<&Task> = store
            .tasks_in_state(TaskState::Pending)
            .take(BATCH)
            .collect();
        if pending.is_empty() {
            break;
        }
        let now = proto::now_ms();
        let actions: Vec<StoreAction> =
            schedule_placed(store.list::<Node>(), store.placed(), &pending)
                .into_iter()
                .filter_map(|decision| match decision {
                    Decision::Assign { task_id, node_id } => {
                        let mut task = store.get::<Task>(&task_id)?.clone();
                        task.node_id = node_id;
                        let status = task.status.get_or_insert_with(Default::default);
                        status.state = TaskState::Assigned as i32;
                        status.timestamp = now;
                        status.message = "assigned to a node by the scheduler".into();
                        Some(update(task))
                    }
                    Decision::Unplaceable { reason, .. } => panic!("unplaceable: {reason}"),
                })
                .collect();
        leader.commit(actions);
    }
    // The nodes' reports: running, one batch per node's report.
    let node_ids: Vec<String> = leader
        .store
        .list::<Node>()
        .map(|n| n.id().to_owned())
        .collect();
    for node_id in &node_ids {
        let now = proto::now_ms();
        let actions: Vec<StoreAction> = leader
            .store
            .tasks_on_node(node_id)
            .map(|t| {
                let mut task = t.clone();
                task.status = Some(TaskStatus {
                    timestamp: now,
                    state: TaskState::Running as i32,
                    message: "started".into(),
                    running_since: now,
                    ..Default::default()
                });
                update(task)
            })
            .collect();
        leader.commit(actions);
    }
    let running = leader.store.tasks_in_state(TaskState::Running).count();
    assert_eq!(running, tasks, "every task runs");
    let one_batch_events = one_batch_events.expect("a batch");

    println!(
        "bytes per task: {tasks} tasks (2 services) on {nodes} nodes, {} log entries; size_of Task {} B, TaskSpec {} B",
        leader.log.len(),
        std::mem::size_of::<Task>(),
        std::mem::size_of::<TaskSpec>()
    );
    println!();
    println!("| what | bytes/task | blocks/task | MiB total |");
    println!("| --- | ---: | ---: | ---: |");

    // Beside the store, per task.
    let (trackers, bytes, blocks) = measure(|| {
        node_ids
            .iter()
            .map(|id| {
                let mut tracker = NodeAssignments::default();
                drop(tracker.complete(&leader.store, id));
                tracker
            })
            .collect::<Vec<_>>()
    });
    row(
        "dispatcher: per-node state, all nodes",
        bytes,
        blocks,
        tasks,
    );
    drop(trackers);
    let (tracker, bytes, blocks) = measure(|| Tracker::new(&leader.store));
    row(
        "events: tracker (last seen of each object)",
        bytes,
        blocks,
        tasks,
    );
    drop(tracker);

    // Transient, per task it carries.
    let (message, bytes, blocks) =
        measure(|| NodeAssignments::default().complete(&leader.store, &node_ids[0]));
    let sent = message.changes.len().max(1);
    println!(
        "| transient: a node's complete assignments ({sent} tasks), per task sent | {:.0} | {:.1} | - |",
        bytes as f64 / sent as f64,
        blocks as f64 / sent as f64
    );
    drop(message);
    let (bytes, blocks) = one_batch_size(&one_batch_events);
    println!(
        "| transient: a watch batch ({} task events), per task | {:.0} | {:.1} | - |",
        one_batch_events.len(),
        bytes as f64 / one_batch_events.len() as f64,
        blocks as f64 / one_batch_events.len() as f64
    );
    drop(one_batch_events);
    let (copy, bytes, blocks) = measure(|| leader.store.clone());
    row(
        "transient: a copy of the store (what a snapshot took before)",
        bytes,
        blocks,
        tasks,
    );
    drop(copy);
    let (objects, bytes, blocks) = measure(|| leader.store.objects());
    row(
        "transient: the store's objects a snapshot takes (shared)",
        bytes,
        blocks,
        tasks,
    );
    let (snapshot, bytes, blocks) = measure(|| leader.store.to_snapshot());
    row(
        "transient: the snapshot as one message (what the builder encoded before)",
        bytes,
        blocks,
        tasks,
    );
    drop(snapshot);
    let (snapshot, bytes, blocks) = measure(|| {
        let mut buf = Vec::new();
        objects.encode_snapshot(1, &[], &mut buf);
        buf
    });
    row("transient: the encoded snapshot", bytes, blocks, tasks);
    drop((objects, snapshot));

    // The Raft log in sled, configured as the Raft store is: the run's log, then ten times
    // as much (what a million tasks write between two snapshots).
    let log_bytes: usize = leader.log.iter().map(Vec::len).sum();
    for times in [1, 10] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, bytes, blocks) = measure(|| {
            let db = manager::raft::at_rest::sled_config(dir.path())
                .open()
                .expect("open sled");
            let tree = db.open_tree("bytes_per_task").expect("tree");
            let mut key = 0u64;
            for _ in 0..times {
                for batch in &leader.log {
                    key += 1;
                    tree.insert(key.to_be_bytes(), batch.as_slice())
                        .expect("insert");
                }
                db.flush().expect("flush");
            }
            db
        });
        row(
            &format!(
                "sled after {times} x the run's log ({:.1} MiB encoded)",
                (times * log_bytes) as f64 / (1 << 20) as f64
            ),
            bytes,
            blocks,
            tasks,
        );
        drop(db);
    }

    // The specs the tasks point to: the store gives the tasks of one service version one
    // copy (`store/shared_specs.rs`); before, each task held its own (~1 KB each).
    let mut distinct: Vec<&SharedTaskSpec> = Vec::new();
    for spec in leader.store.list::<Task>().filter_map(|t| t.spec.as_ref()) {
        if !distinct.iter().any(|d| d.ptr_eq(spec)) {
            distinct.push(spec);
        }
    }
    let (copies, bytes, blocks) = measure(|| {
        distinct
            .iter()
            .map(|s| TaskSpec::clone(s))
            .collect::<Vec<_>>()
    });
    row(
        &format!(
            "of the task table: the {} distinct specs its tasks point to",
            copies.len()
        ),
        bytes,
        blocks,
        tasks,
    );
    drop((copies, distinct));

    // The store's parts, each dropped in turn.
    let (mut total_bytes, mut total_blocks) = (0, 0);
    for (name, part) in leader.store.into_parts() {
        let (bytes, blocks) = freed(part);
        row(&format!("store: {name}"), bytes, blocks, tasks);
        total_bytes += bytes;
        total_blocks += blocks;
    }
    row("store, all parts", total_bytes, total_blocks, tasks);
}

/// The heap bytes and blocks a batch of events holds (what a watch event carries).
fn one_batch_size(events: &[proto::StoreEvent]) -> (isize, isize) {
    let (copy, bytes, blocks) = measure(|| events.to_vec());
    drop(copy);
    (bytes, blocks)
}
