//! A partial round over what changed decides exactly what a full round decides: checked on
//! random stores and random changes, fed to the tracker as the leader's loop feeds it.

use prost::Message;
use proto::{
    ContainerSpec, GlobalJob, GlobalService, Meta, NodeSpec, NodeStatus, Placement, ReplicatedJob,
    ReplicatedService, RestartCondition, ServiceSpec, StoreActionKind, StoreBatch, TaskSpec,
    TaskStatus, UpdateConfig, UpdateState, UpdateStatus,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::orchestrator::changes::Changes;
use crate::store::WatchEvent;

/// The clock of every round: fixed, and after every timestamp the rounds themselves write
/// (`create` and `new_task` stamp the real time), so both rounds see the same time.
fn now() -> i64 {
    proto::now_ms() + 3_600_000
}

fn meta(id: String) -> Option<Meta> {
    Some(Meta {
        id,
        ..Default::default()
    })
}

/// The service "big": `replicas` replicas of an empty template, at spec version 1.
fn big(replicas: u64) -> Service {
    Service {
        meta: meta("big".into()),
        spec: Some(ServiceSpec {
            name: "big".into(),
            mode: Some(Mode::Replicated(ReplicatedService { replicas })),
            task_template: Some(TaskSpec::default()),
            ..Default::default()
        }),
        spec_version: 1,
        ..Default::default()
    }
}

const STATES: [TaskState; 7] = [
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Failed,
    TaskState::Shutdown,
    TaskState::Rejected,
];

/// A store and what has been written to it.
struct World {
    store: ObjectStore,
    index: u64,
    now: i64,
    next_id: usize,
    rng: StdRng,
}

impl World {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:04}", self.next_id)
    }

    /// Applies `actions` as one committed batch and returns its event.
    fn commit(&mut self, actions: Vec<StoreAction>) -> WatchEvent {
        self.index += 1;
        let batch = StoreBatch {
            actions,
            ..Default::default()
        };
        let events = self
            .store
            .apply(&batch, self.index)
            .expect("the batch applies");
        WatchEvent::Changes {
            index: self.index,
            events,
        }
    }

    fn node(&mut self) -> Node {
        let state = if self.rng.gen_bool(0.8) {
            NodeState::Ready
        } else {
            NodeState::Down
        };
        let availability = if self.rng.gen_bool(0.85) {
            NodeAvailability::Active
        } else {
            NodeAvailability::Drain
        };
        let zone = ["a", "b"].choose(&mut self.rng).unwrap().to_string();
        Node {
            meta: meta(self.id("node")),
            spec: Some(NodeSpec {
                labels: [("zone".to_string(), zone)].into(),
                availability: availability as i32,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(&mut self) -> Service {
        let rng = &mut self.rng;
        let mode = match rng.gen_range(0..6) {
            0..=2 => Mode::Replicated(ReplicatedService {
                replicas: rng.gen_range(0..7),
            }),
            3 => Mode::Global(GlobalService {}),
            4 => Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: rng.gen_range(1..4),
                total_completions: rng.gen_range(0..6),
            }),
            _ => Mode::GlobalJob(GlobalJob {}),
        };
        let condition = *[
            RestartCondition::Any,
            RestartCondition::OnFailure,
            RestartCondition::None,
        ]
        .choose(rng)
        .unwrap();
        let restart = RestartPolicy {
            condition: condition as i32,
            delay_ms: Some(*[0, 0, 5_000].choose(rng).unwrap()),
            max_attempts: rng.gen_range(0..3),
            window_ms: *[0, 8_000, 8_000].choose(rng).unwrap(),
        };
        let constraints = if rng.gen_bool(0.2) {
            vec!["node.labels.zone==a".to_string()]
        } else {
            Vec::new()
        };
        let version = rng.gen_range(1..3);
        let updating = rng.gen_bool(0.15);
        let order = if rng.gen_bool(0.5) {
            UpdateOrder::StopFirst
        } else {
            UpdateOrder::StartFirst
        };
        let now = self.now;
        self.next_id += 1;
        let id = format!("svc{:04}", self.next_id);
        Service {
            spec: Some(ServiceSpec {
                name: id.clone(),
                mode: Some(mode),
                task_template: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: format!("v{version}"),
                        ..Default::default()
                    }),
                    restart: Some(restart),
                    placement: Some(Placement {
                        constraints,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_config: Some(UpdateConfig {
                    order: order as i32,
                    delay_ms: *[0, 10_000].choose(rng).unwrap(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            meta: meta(id),
            spec_version: version,
            update_status: updating.then(|| UpdateStatus {
                state: UpdateState::Updating as i32,
                started_at: now - 60_000,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A task of `service_id` in a random slot or on a random node, in a random state.
    fn task(&mut self, service_id: &str) -> Task {
        let nodes: Vec<String> = self
            .store
            .list::<Node>()
            .map(|n| n.id().to_owned())
            .collect();
        let global = self.store.get::<Service>(service_id).is_some_and(is_global);
        let version = self
            .store
            .get::<Service>(service_id)
            .map_or(1, |s| s.spec_version);
        let rng = &mut self.rng;
        let node = nodes.choose(rng).cloned().unwrap_or_default();
        let (slot, node_id) = if global {
            (0, node)
        } else if rng.gen_bool(0.3) {
            (rng.gen_range(1..6), String::new())
        } else {
            (rng.gen_range(1..6), node)
        };
        let state = *STATES.choose(rng).unwrap();
        let desired = if rng.gen_bool(0.7) {
            TaskState::Running
        } else {
            TaskState::Shutdown
        };
        let spec_version = rng.gen_range(version.saturating_sub(1).max(1)..=version);
        let stamp = self.now - rng.gen_range(0..12_000);
        let created_at = stamp - rng.gen_range(0..5_000);
        let running_since = if rng.gen_bool(0.5) { stamp - 10_000 } else { 0 };
        Task {
            meta: Some(Meta {
                id: self.id("task"),
                created_at,
                ..Default::default()
            }),
            service_id: service_id.to_owned(),
            slot,
            node_id,
            spec: Some(
                TaskSpec {
                    container: Some(ContainerSpec {
                        image: format!("v{spec_version}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            spec_version,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: stamp,
                running_since,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A random store: nodes, services, their tasks and tasks of a service that is gone.
    fn new(seed: u64) -> Self {
        let mut world = World {
            store: ObjectStore::default(),
            index: 0,
            now: now(),
            next_id: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        let mut actions = Vec::new();
        for _ in 0..world.rng.gen_range(2..6) {
            actions.push(create(world.node()));
        }
        world.commit(actions);
        let mut actions = Vec::new();
        for _ in 0..world.rng.gen_range(1..5) {
            actions.push(create(world.service()));
        }
        world.commit(actions);
        let mut services: Vec<String> = world
            .store
            .list::<Service>()
            .map(|s| s.id().to_owned())
            .collect();
        services.push("gone".into());
        let mut actions = Vec::new();
        for _ in 0..world.rng.gen_range(0..30) {
            let service = services.choose(&mut world.rng).unwrap().clone();
            actions.push(create(world.task(&service)));
        }
        world.commit(actions);
        world
    }

    fn full(&self, history: usize) -> Plan {
        reconcile_in(&self.store, &Scope::All, self.now, history, usize::MAX)
    }

    /// Commits full rounds until one decides nothing; whether that happened.
    fn settle(&mut self, history: usize, tracker: &mut Changes) -> bool {
        for _ in 0..30 {
            let plan = self.full(history);
            if plan.actions.is_empty() {
                return true;
            }
            let event = self.commit(plan.actions);
            tracker.observe(&event);
        }
        false
    }

    /// A random batch of changes, each to a different object, as the cluster makes them:
    /// status reports, nodes going down or drained, scaling, services created and removed,
    /// tasks assigned, history written.
    fn changes(&mut self) -> Vec<StoreAction> {
        let mut touched = HashSet::new();
        let mut actions = Vec::new();
        for _ in 0..self.rng.gen_range(1..6) {
            let tasks: Vec<Task> = self.store.list::<Task>().cloned().collect();
            let nodes: Vec<Node> = self.store.list::<Node>().cloned().collect();
            let services: Vec<Service> = self.store.list::<Service>().cloned().collect();
            let rng = &mut self.rng;
            let action = match rng.gen_range(0..11) {
                0..=2 => tasks.choose(rng).map(|t| {
                    let mut t = t.clone();
                    let status = t.status.get_or_insert_with(Default::default);
                    status.state = *[
                        TaskState::Running,
                        TaskState::Running,
                        TaskState::Failed,
                        TaskState::Complete,
                        TaskState::Shutdown,
                        TaskState::Rejected,
                    ]
                    .choose(rng)
                    .unwrap() as i32;
                    status.timestamp = self.now - rng.gen_range(0..10_000);
                    update(t)
                }),
                3 => nodes.choose(rng).map(|n| {
                    let mut n = n.clone();
                    if rng.gen_bool(0.5) {
                        let status = n.status.get_or_insert_with(Default::default);
                        status.state = if status.state == NodeState::Down as i32 {
                            NodeState::Ready as i32
                        } else {
                            NodeState::Down as i32
                        };
                    } else {
                        let spec = n.spec.get_or_insert_with(Default::default);
                        spec.availability = if spec.availability == NodeAvailability::Drain as i32 {
                            NodeAvailability::Active as i32
                        } else {
                            NodeAvailability::Drain as i32
                        };
                    }
                    update(n)
                }),
                4 => {
                    if rng.gen_bool(0.5) {
                        Some(create(self.node()))
                    } else {
                        nodes.choose(rng).map(|n| delete(n.clone()))
                    }
                }
                5 => services.choose(rng).and_then(|s| {
                    let mut s = s.clone();
                    match s.spec.as_mut()?.mode.as_mut()? {
                        Mode::Replicated(r) => r.replicas = rng.gen_range(0..8),
                        Mode::ReplicatedJob(j) => j.total_completions = rng.gen_range(0..8),
                        _ => return None,
                    }
                    Some(update(s))
                }),
                6 => Some(create(self.service())),
                7 => services.choose(rng).map(|s| delete(s.clone())),
                8 => {
                    let mut ids: Vec<String> = services.iter().map(|s| s.id().to_owned()).collect();
                    ids.push("gone".into());
                    let service = ids.choose(rng).unwrap().clone();
                    let mut task = self.task(&service);
                    task.desired_state = TaskState::Shutdown as i32;
                    Some(create(task))
                }
                9 => tasks
                    .iter()
                    .filter(|t| t.node_id.is_empty())
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .zip(nodes.choose(rng))
                    .map(|(t, n)| {
                        let mut t = (*t).clone();
                        t.node_id = n.id().to_owned();
                        t.status.get_or_insert_with(Default::default).state =
                            TaskState::Assigned as i32;
                        update(t)
                    }),
                _ => tasks.choose(rng).map(|t| delete(t.clone())),
            };
            let Some(action) = action else { continue };
            let id = match action.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Task(t)) => t.id().to_owned(),
                Some(Object::Node(n)) => n.id().to_owned(),
                Some(Object::Service(s)) => s.id().to_owned(),
                _ => continue,
            };
            if touched.insert(id) {
                actions.push(action);
            }
        }
        actions
    }
}

/// A plan's actions, comparable: each encoded without what the real clock or a fresh ID
/// decides, sorted.
fn normalized(plan: &Plan) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = plan
        .actions
        .iter()
        .map(|action| {
            let mut action = action.clone();
            let created = action.kind == StoreActionKind::Create as i32;
            match action.object.as_mut().and_then(|o| o.object.as_mut()) {
                Some(Object::Task(t)) => {
                    let meta = t.meta.get_or_insert_with(Default::default);
                    meta.updated_at = 0;
                    if created {
                        meta.id.clear();
                        meta.created_at = 0;
                        t.status.get_or_insert_with(Default::default).timestamp = 0;
                    }
                }
                Some(Object::Service(s)) => {
                    s.meta.get_or_insert_with(Default::default).updated_at = 0;
                }
                _ => {}
            }
            action.encode_to_vec()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_round_over_what_changed_or_asked_to_be_woken_decides_what_a_full_round_decides() {
    let (mut cases, mut unsettled, mut nonempty, mut woken) = (0, 0, 0, 0);
    for seed in 0..400 {
        let mut world = World::new(seed);
        let history = world.rng.gen_range(0..4);
        let mut tracker = Changes::default();
        assert_eq!(tracker.take(world.now), Scope::All);
        if !world.settle(history, &mut tracker) {
            unsettled += 1;
            continue;
        }
        // The full round that found the store settled.
        let settled = world.full(history);
        tracker.everything();
        let scope = tracker.take(world.now);
        tracker.done(&scope, &settled.wakes);
        // Time alone changes only what asked to be woken by then, and nothing before the
        // first wake-up.
        for later in [1, 999, 4_999, 7_999, 15_000, 30_000] {
            let at = world.now + later;
            let scope = tracker.clone().take(at);
            let full = reconcile_in(&world.store, &Scope::All, at, history, usize::MAX);
            let partial = reconcile_in(&world.store, &scope, at, history, usize::MAX);
            assert_eq!(
                normalized(&partial),
                normalized(&full),
                "seed {seed}: at now + {later} ms: {scope:?}"
            );
            if settled.wake_at.is_none_or(|w| at < w) {
                assert!(full.actions.is_empty(), "seed {seed}: at now + {later} ms");
            } else {
                woken += usize::from(!full.actions.is_empty());
            }
        }
        for step in 0..6 {
            // The clock moves on between rounds (less than the safety net in all).
            world.now += *[0, 0, 1, 999, 4_999, 8_001].choose(&mut world.rng).unwrap();
            let changes = world.changes();
            if !changes.is_empty() {
                let event = world.commit(changes);
                tracker.observe(&event);
            }
            let scope = tracker.take(world.now);
            assert!(
                matches!(scope, Scope::Dirty(_)),
                "seed {seed} step {step}: a partial round"
            );
            let full = world.full(history);
            let partial = reconcile_in(&world.store, &scope, world.now, history, usize::MAX);
            assert_eq!(
                normalized(&partial),
                normalized(&full),
                "seed {seed} step {step}: {scope:?}"
            );
            tracker.done(&scope, &partial.wakes);
            cases += 1;
            nonempty += usize::from(!full.actions.is_empty());
            // The leader commits what it decided; its own changes come back as events.
            if !partial.actions.is_empty() {
                let event = world.commit(partial.actions);
                tracker.observe(&event);
            }
        }
    }
    assert!(unsettled < 40, "{unsettled} of 400 stores never settled");
    assert!(cases > 1_000, "only {cases} cases");
    assert!(
        nonempty > cases / 3,
        "only {nonempty} of {cases} changed anything"
    );
    assert!(woken > 50, "only {woken} wake-ups changed anything");
}

#[test]
fn a_round_after_a_small_change_reads_only_the_changed_slots_and_after_a_large_one_the_service_once(
) {
    let service = big(10_000);
    let node = Node {
        meta: meta("n1".into()),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let tasks = (1..=10_000u64).map(|slot| {
        create(Task {
            meta: meta(format!("t{slot:05}")),
            service_id: "big".into(),
            slot,
            node_id: "n1".into(),
            spec: Some(TaskSpec::default().into()),
            spec_version: 1,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Running as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let mut store = ObjectStore::default();
    let mut actions = vec![create(node), create(service)];
    actions.extend(tasks);
    store
        .apply(
            &StoreBatch {
                actions,
                ..Default::default()
            },
            1,
        )
        .unwrap();
    let now = now();
    let full = reconcile_in(&store, &Scope::All, now, 5, usize::MAX);
    assert!(full.actions.is_empty(), "settled");
    assert_eq!(full.tasks_read, 10_000);

    // Slot 7's task fails.
    let mut failed = store.get::<Task>("t00007").unwrap().clone();
    failed.status.as_mut().unwrap().state = TaskState::Failed as i32;
    let events = store
        .apply(
            &StoreBatch {
                actions: vec![update(failed)],
                ..Default::default()
            },
            2,
        )
        .unwrap();
    let mut tracker = Changes::default();
    tracker.take(now);
    tracker.observe(&WatchEvent::Changes { index: 2, events });
    let scope = tracker.take(now);
    let partial = reconcile_in(&store, &scope, now, 5, usize::MAX);
    assert_eq!(partial.tasks_read, 1, "only slot 7's task");
    assert_eq!(
        normalized(&partial),
        normalized(&reconcile_in(&store, &Scope::All, now, 5, usize::MAX))
    );
    assert_eq!(
        partial.actions.len(),
        2,
        "stop the failed task, start another"
    );

    // Most slots changed (as after a large scale-up): one pass over the service instead of
    // a lookup per slot, deciding the same.
    let actions = (1..=6_000u64)
        .filter(|slot| *slot != 7)
        .map(|slot| {
            let mut task = store.get::<Task>(&format!("t{slot:05}")).unwrap().clone();
            task.status.as_mut().unwrap().running_since = 1;
            update(task)
        })
        .collect();
    let events = store
        .apply(
            &StoreBatch {
                actions,
                ..Default::default()
            },
            3,
        )
        .unwrap();
    tracker.observe(&WatchEvent::Changes { index: 3, events });
    let scope = tracker.take(now);
    let partial = reconcile_in(&store, &scope, now, 5, usize::MAX);
    assert_eq!(partial.tasks_read, 10_000, "the whole service, once");
    assert_eq!(
        normalized(&partial),
        normalized(&reconcile_in(&store, &Scope::All, now, 5, usize::MAX))
    );
}

/// Rounds that may make only a few tasks each, fed to the tracker as the leader's loop feeds
/// it, with random changes between the first few (a service filled in part scaled, removed,
/// its nodes gone), end where full rounds without a limit end: nothing is left for a full
/// round to do.
#[test]
fn rounds_with_little_room_end_where_rounds_without_a_limit_end() {
    let (mut checked, mut limited) = (0, 0);
    for seed in 0..300 {
        let mut world = World::new(seed);
        let history = world.rng.gen_range(0..4);
        let room = world.rng.gen_range(1..4);
        let mut tracker = Changes::default();
        let mut quiet = false;
        for round in 0..60 {
            if round % 2 == 1 && round < 10 {
                let changes = world.changes();
                if !changes.is_empty() {
                    let event = world.commit(changes);
                    tracker.observe(&event);
                }
            }
            let scope = tracker.take(world.now);
            let plan = reconcile_in(&world.store, &scope, world.now, history, room);
            limited += usize::from(plan.wakes.iter().any(|w| w.at == world.now));
            tracker.done(&scope, &plan.wakes);
            if plan.actions.is_empty() && tracker.wake_at().is_none_or(|at| at > world.now) {
                quiet = true;
                break;
            }
            if !plan.actions.is_empty() {
                let event = world.commit(plan.actions);
                tracker.observe(&event);
            }
        }
        // Some random stores never settle, with or without a limit (see above).
        if !quiet {
            continue;
        }
        let full = world.full(history);
        assert!(
            full.actions.is_empty(),
            "seed {seed}, room {room}: a full round still decides {} changes",
            full.actions.len()
        );
        checked += 1;
    }
    assert!(checked > 250, "only {checked} of 300 stores settled");
    assert!(limited > 50, "only {limited} rounds ran out of room");
}

/// A service of 2,500 replicas is filled 1,000 tasks a round: each round asks for the next
/// at once, from the slot where it stopped, and the last one asks for nothing. The rounds
/// after the first read the tasks the round before made (their slots changed), not the
/// service's, and fill what a full round would.
#[test]
fn a_round_makes_at_most_its_room_of_tasks_and_asks_for_the_rest_at_once() {
    let mut world = World {
        store: ObjectStore::default(),
        index: 0,
        now: now(),
        next_id: 0,
        rng: StdRng::seed_from_u64(0),
    };
    let node = create(world.node());
    let service = big(2_500);
    let service_id = service.id().to_owned();
    world.commit(vec![node, create(service)]);
    let of_service = |world: &World| {
        world
            .store
            .list::<Task>()
            .filter(|t| t.service_id == service_id)
            .count()
    };
    let mut tracker = Changes::default();
    for (made, asks_from, read) in [
        (1_000, Some(1_001), 0),
        (1_000, Some(2_001), 1_000),
        (500, None, 1_000),
    ] {
        let before = of_service(&world);
        let scope = tracker.take(world.now);
        let plan = reconcile_in(&world.store, &scope, world.now, 5, 1_000);
        let full = reconcile_in(&world.store, &Scope::All, world.now, 5, 1_000);
        assert_eq!(normalized(&plan), normalized(&full), "{scope}");
        let from = plan.wakes.iter().find_map(|w| match w.again {
            Again::SlotsFrom(from) if w.at == world.now && w.service_id == service_id => Some(from),
            _ => None,
        });
        assert_eq!(from, asks_from);
        assert_eq!(plan.tasks_read, read, "{scope}");
        tracker.done(&scope, &plan.wakes);
        let event = world.commit(plan.actions);
        tracker.observe(&event);
        assert_eq!(of_service(&world) - before, made);
    }
}

/// Prints how long a full round and a partial round after 100 status reports take on one
/// service of 100,000 tasks (a figure, not a test: timings belong to the benchmarks, issue
/// 20). `cargo test -p manager --lib round_times -- --ignored --nocapture`
#[test]
#[ignore = "prints a timing (issue 20); not a test"]
fn round_times() {
    const TASKS: u64 = 100_000;
    let mut store = ObjectStore::default();
    let mut actions = vec![
        create(Node {
            meta: meta("n1".into()),
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        create(big(TASKS)),
    ];
    actions.extend((1..=TASKS).map(|slot| {
        create(Task {
            meta: meta(format!("t{slot:07}")),
            service_id: "big".into(),
            slot,
            node_id: "n1".into(),
            spec: Some(TaskSpec::default().into()),
            spec_version: 1,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Running as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    }));
    store
        .apply(
            &StoreBatch {
                actions,
                ..Default::default()
            },
            1,
        )
        .unwrap();
    let now = now();
    let started = std::time::Instant::now();
    let full = reconcile_in(&store, &Scope::All, now, 5, usize::MAX);
    let full_time = started.elapsed();
    let reports = (1..=100u64)
        .map(|i| {
            let mut task = store
                .get::<Task>(&format!("t{:07}", i * 997))
                .unwrap()
                .clone();
            task.status.as_mut().unwrap().running_since = 1;
            update(task)
        })
        .collect();
    let events = store
        .apply(
            &StoreBatch {
                actions: reports,
                ..Default::default()
            },
            2,
        )
        .unwrap();
    let mut tracker = Changes::default();
    tracker.take(now);
    tracker.observe(&WatchEvent::Changes { index: 2, events });
    let scope = tracker.take(now);
    let started = std::time::Instant::now();
    let partial = reconcile_in(&store, &scope, now, 5, usize::MAX);
    let partial_time = started.elapsed();
    println!(
        "{TASKS} tasks: full round {full_time:?} ({} tasks read), partial round after 100 reports {partial_time:?} ({} tasks read)",
        full.tasks_read, partial.tasks_read
    );
}
