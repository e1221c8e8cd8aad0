use proto::{Meta, Service, ServiceSpec, StoreAction, StoreActionKind, StoreBatch, Task};

use super::*;

/// A service object with `id`, `name` and `version`, for tests here and elsewhere.
pub(crate) fn service(id: &str, name: &str, version: u64) -> Service {
    Service {
        meta: Some(Meta {
            id: id.into(),
            version,
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn task(id: &str) -> Task {
    Task {
        meta: Some(Meta {
            id: id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn batch(actions: Vec<(StoreActionKind, proto::StoreObject)>) -> StoreBatch {
    StoreBatch {
        actions: actions
            .into_iter()
            .map(|(kind, object)| StoreAction {
                kind: kind as i32,
                object: Some(object),
            })
            .collect(),
        ..Default::default()
    }
}

use StoreActionKind::{Create, Delete, Update};

#[test]
fn create_sets_version_to_the_log_index() {
    let mut store = ObjectStore::default();
    let events = store
        .apply(&batch(vec![(Create, service("s1", "web", 0).wrap())]), 7)
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].index, 7);
    assert_eq!(store.get::<Service>("s1").unwrap().version(), 7);
}

#[test]
fn stale_update_is_a_conflict_and_changes_nothing() {
    let mut store = ObjectStore::default();
    store
        .apply(&batch(vec![(Create, service("s1", "web", 0).wrap())]), 3)
        .unwrap();
    store
        .apply(&batch(vec![(Update, service("s1", "web2", 3).wrap())]), 4)
        .unwrap();
    let err = store
        .apply(&batch(vec![(Update, service("s1", "web3", 3).wrap())]), 5)
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict {
            kind: Kind::Service,
            id: "s1".into(),
            expected: 3,
            actual: 4
        }
    );
    assert!(err.to_string().contains("read it again and retry"));
    assert_eq!(store.get::<Service>("s1").unwrap().name(), Some("web2"));
}

#[test]
fn a_failing_action_rolls_back_the_whole_batch() {
    let mut store = ObjectStore::default();
    store
        .apply(&batch(vec![(Create, service("s1", "web", 0).wrap())]), 1)
        .unwrap();
    let err = store
        .apply(
            &batch(vec![
                (Create, task("t1").wrap()),
                (Update, service("s1", "renamed", 1).wrap()),
                (Delete, task("missing").wrap()),
            ]),
            2,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ApplyError::NotFound {
            kind: Kind::Task,
            ..
        }
    ));
    assert!(store.get::<Task>("t1").is_none());
    let s = store.get::<Service>("s1").unwrap();
    assert_eq!((s.name(), s.version()), (Some("web"), 1));
}

#[test]
fn names_are_unique_per_kind() {
    let mut store = ObjectStore::default();
    store
        .apply(&batch(vec![(Create, service("s1", "web", 0).wrap())]), 1)
        .unwrap();
    let err = store
        .apply(&batch(vec![(Create, service("s2", "web", 0).wrap())]), 2)
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::NameTaken {
            kind: Kind::Service,
            name: "web".into()
        }
    );
    let err = store
        .apply(&batch(vec![(Create, service("s1", "other", 0).wrap())]), 3)
        .unwrap_err();
    assert!(matches!(err, ApplyError::AlreadyExists { .. }));
}

#[test]
fn renames_removals_and_rollbacks_keep_names_in_step() {
    let mut store = ObjectStore::default();
    store
        .apply(&batch(vec![(Create, service("s1", "web", 0).wrap())]), 1)
        .unwrap();
    // A rename frees the old name and takes the new one.
    store
        .apply(&batch(vec![(Update, service("s1", "api", 1).wrap())]), 2)
        .unwrap();
    assert!(store.named::<Service>("web").is_none());
    assert_eq!(store.resolve::<Service>("api").unwrap().id(), "s1");
    store
        .apply(&batch(vec![(Create, service("s2", "web", 0).wrap())]), 3)
        .unwrap();
    // A batch that fails after renaming rolls the rename back, index included.
    let failing = batch(vec![
        (Update, service("s1", "db", 2).wrap()),
        (Create, service("s3", "web", 0).wrap()),
    ]);
    assert!(store.apply(&failing, 4).is_err());
    assert!(store.named::<Service>("db").is_none());
    assert_eq!(store.named::<Service>("api").unwrap().id(), "s1");
    // A removal frees the name at once.
    store
        .apply(&batch(vec![(Delete, service("s2", "web", 3).wrap())]), 5)
        .unwrap();
    store
        .apply(&batch(vec![(Create, service("s4", "web", 0).wrap())]), 6)
        .unwrap();
    assert_eq!(store.resolve::<Service>("web").unwrap().id(), "s4");
}

#[test]
fn delete_with_version_zero_deletes_any_version() {
    let mut store = ObjectStore::default();
    store
        .apply(&batch(vec![(Create, task("t1").wrap())]), 1)
        .unwrap();
    let events = store
        .apply(&batch(vec![(Delete, task("t1").wrap())]), 2)
        .unwrap();
    assert_eq!(events[0].kind, Delete as i32);
    assert_eq!(store.count::<Task>(), 0);
}

#[test]
fn resolve_by_id_name_and_unique_prefix() {
    let mut store = ObjectStore::default();
    store
        .apply(
            &batch(vec![
                (Create, service("abc111", "web", 0).wrap()),
                (Create, service("abc222", "db", 0).wrap()),
            ]),
            1,
        )
        .unwrap();
    assert_eq!(store.resolve::<Service>("abc111").unwrap().id(), "abc111");
    assert_eq!(store.resolve::<Service>("db").unwrap().id(), "abc222");
    assert_eq!(store.resolve::<Service>("abc2").unwrap().id(), "abc222");
    assert!(matches!(
        store.resolve::<Service>("abc"),
        Err(LookupError::Ambiguous { count: 2, .. })
    ));
    assert!(matches!(
        store.resolve::<Service>("zzz"),
        Err(LookupError::NotFound { .. })
    ));
    assert!(store.resolve::<Service>("").is_err());
}

#[test]
fn snapshot_round_trips() {
    let mut store = ObjectStore::default();
    store
        .apply(
            &batch(vec![
                (Create, service("s1", "web", 0).wrap()),
                (Create, task("t1").wrap()),
            ]),
            4,
        )
        .unwrap();
    let restored = ObjectStore::from_snapshot(store.to_snapshot());
    assert_eq!(restored.get::<Service>("s1"), store.get::<Service>("s1"));
    assert_eq!(restored.get::<Task>("t1").unwrap().version(), 4);
}

/// Encoding a snapshot object by object gives the bytes of the whole message, for an empty
/// store and for one with several kinds, with and without a format and outcomes.
#[test]
fn a_snapshot_encoded_object_by_object_is_the_whole_message_s_bytes() {
    use prost::Message;
    let mut store = ObjectStore::default();
    let outcomes = [proto::ProposalOutcome {
        proposal: "p1".into(),
        index: 3,
        refusal: String::new(),
    }];
    let encoded = |store: &ObjectStore, format: u32, outcomes: &[proto::ProposalOutcome]| {
        let mut buf = Vec::new();
        store.objects().encode_snapshot(format, outcomes, &mut buf);
        buf
    };
    let whole = |store: &ObjectStore, format: u32, outcomes: &[proto::ProposalOutcome]| {
        let mut snapshot = store.to_snapshot();
        snapshot.format = format;
        snapshot.outcomes = outcomes.to_vec();
        snapshot.encode_to_vec()
    };
    for (format, outcomes) in [(0, &[][..]), (2, &outcomes[..])] {
        assert_eq!(
            encoded(&store, format, outcomes),
            whole(&store, format, outcomes)
        );
    }
    store
        .apply(
            &batch(vec![
                (Create, service("s1", "web", 0).wrap()),
                (Create, task("t1").wrap()),
                (Create, task("t2").wrap()),
                (
                    Create,
                    proto::Node {
                        meta: Some(Meta {
                            id: "n1".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .wrap(),
                ),
            ]),
            4,
        )
        .unwrap();
    for (format, outcomes) in [(0, &[][..]), (2, &outcomes[..])] {
        let encoded = encoded(&store, format, outcomes);
        assert_eq!(encoded, whole(&store, format, outcomes));
        let decoded = proto::StoreSnapshot::decode(encoded.as_slice()).unwrap();
        assert_eq!(ObjectStore::from_snapshot(decoded).count::<Task>(), 2);
    }
}

#[test]
fn malformed_batches_are_refused() {
    let mut store = ObjectStore::default();
    let empty_id = batch(vec![(Create, task("").wrap())]);
    assert!(matches!(
        store.apply(&empty_id, 1),
        Err(ApplyError::Invalid(_))
    ));
    let no_object = StoreBatch {
        actions: vec![StoreAction {
            kind: 0,
            object: None,
        }],
        ..Default::default()
    };
    assert!(matches!(
        store.apply(&no_object, 1),
        Err(ApplyError::Invalid(_))
    ));
}

/// The task indexes kept as tasks change (by service and slot, by node, by state, each
/// service's counts, and what tasks hold on each node) are what a walk over every task
/// gives, after random creates, moves between services, slots, nodes and states, changes of
/// state alone, removals and failed (rolled back) batches,
/// and after a snapshot round trip.
#[test]
fn the_task_indexes_match_a_walk_over_every_task() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut store = ObjectStore::default();
    let random_task = |rng: &mut rand::rngs::StdRng, id: &str, version: u64| {
        let mut t = task(id);
        t.meta.as_mut().unwrap().version = version;
        t.service_id = format!("s{}", rng.gen_range(0..3));
        t.slot = rng.gen_range(0..3);
        t.node_id = ["", "n0", "n1", "n2"][rng.gen_range(0..4)].into();
        t.desired_state = rng.gen_range(0..14);
        let state = rng.gen_range(0..14);
        t.status = (state > 0).then(|| proto::TaskStatus {
            state,
            ..Default::default()
        });
        if rng.gen_bool(0.5) {
            t.spec = Some(
                proto::TaskSpec {
                    resources: Some(proto::ResourceRequirements {
                        reservations: Some(proto::Resources {
                            nano_cpus: rng.gen_range(-1..3) * 500_000_000,
                            memory_bytes: rng.gen_range(0..3) << 20,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            );
        }
        if rng.gen_bool(0.3) {
            t.networks = vec![proto::NetworkAttachment {
                network_id: "net".into(),
                ..Default::default()
            }];
        }
        if rng.gen_bool(0.3) {
            t.endpoint = Some(proto::Endpoint {
                ports: vec![proto::PortConfig {
                    publish_mode: proto::PublishMode::Host as i32,
                    published_port: rng.gen_range(8080..8082),
                    target_port: 80,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        t
    };
    for index in 1..3000u64 {
        let id = format!("t{}", rng.gen_range(0..60));
        let version = store.get::<Task>(&id).map(|t| t.version());
        let action = match version {
            None => (Create, random_task(&mut rng, &id, 0).wrap()),
            Some(v) if rng.gen_bool(0.2) => (Delete, random_task(&mut rng, &id, v).wrap()),
            Some(v) => {
                let mut t = random_task(&mut rng, &id, v);
                if rng.gen_bool(0.5) {
                    // As a status report: the service, slot, node and networks kept.
                    let now = store.get::<Task>(&id).unwrap();
                    t.service_id.clone_from(&now.service_id);
                    t.slot = now.slot;
                    t.node_id.clone_from(&now.node_id);
                    t.networks.clone_from(&now.networks);
                }
                (Update, t.wrap())
            }
        };
        let mut actions = vec![action];
        if rng.gen_bool(0.1) {
            // A duplicate create makes the whole batch fail and roll back.
            actions.push((Create, random_task(&mut rng, "t0", 0).wrap()));
            actions.push((Create, random_task(&mut rng, "t0", 0).wrap()));
        }
        let _ = store.apply(&batch(actions), index);
        assert_indexes_match(&store, index);
    }
    let restored = ObjectStore::from_snapshot(store.to_snapshot());
    assert_indexes_match(&restored, 0);
}

fn assert_indexes_match(store: &ObjectStore, index: u64) {
    let ids = |tasks: &mut dyn Iterator<Item = &Task>| -> Vec<String> {
        tasks.map(|t| t.id().to_owned()).collect()
    };
    let walk = |keep: &dyn Fn(&Task) -> bool| -> Vec<String> {
        ids(&mut store.list::<Task>().filter(|t| keep(t)))
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut counted = BTreeMap::new();
    for t in store.list::<Task>() {
        *counted
            .entry(t.status.as_ref().map_or(0, |s| s.state))
            .or_insert(0usize) += 1;
    }
    assert_eq!(store.tasks_by_state(), counted, "after entry {index}");
    // The indexes share each ID once, and forget those no entry holds any more.
    let mut named = std::collections::BTreeSet::new();
    for t in store.list::<Task>() {
        named.insert(t.id());
        named.insert(t.service_id.as_str());
        named.insert(if t.slot == 0 { t.node_id.as_str() } else { "" });
        if !t.node_id.is_empty() {
            named.insert(t.node_id.as_str());
        }
    }
    assert_eq!(
        store.task_index.shared_ids(),
        named.len(),
        "IDs the indexes share after entry {index}"
    );
    assert_eq!(
        store.placed(),
        &Placed::of_tasks(store.list::<Task>()),
        "what tasks hold on nodes after entry {index}"
    );
    for state in 0..14 {
        let state = proto::TaskState::try_from(state).unwrap_or_default();
        assert_eq!(
            ids(&mut store.tasks_in_state(state)),
            walk(&|t| crate::lifecycle::observed(t) == state as i32),
            "tasks in state {state:?} after entry {index}"
        );
    }
    for last in 0..14 {
        let last = proto::TaskState::try_from(last).unwrap_or_default();
        assert_eq!(
            sorted(ids(&mut store.tasks_up_to_state(last))),
            walk(&|t| crate::lifecycle::observed(t) <= last as i32),
            "tasks up to state {last:?} after entry {index}"
        );
    }
    assert_eq!(
        ids(&mut store.tasks_with_networks()),
        walk(&|t| !t.networks.is_empty()),
        "tasks with networks after entry {index}"
    );
    for node in ["n0", "n1", "n2"] {
        assert_eq!(
            ids(&mut store.tasks_on_node(node)),
            walk(&|t| t.node_id == node),
            "tasks on {node} after entry {index}"
        );
    }
    for service in ["s0", "s1", "s2"] {
        let of_service = ids(&mut store.tasks_of_service(service));
        assert_eq!(
            sorted(of_service.clone()),
            walk(&|t| t.service_id == service),
            "tasks of {service} after entry {index}"
        );
        let in_slot_order: Vec<u64> = store.tasks_of_service(service).map(|t| t.slot).collect();
        assert!(in_slot_order.is_sorted(), "{service} in slot order");
        for slot in 1..3 {
            assert_eq!(
                sorted(ids(&mut store.tasks_in_slot(service, slot))),
                walk(&|t| t.service_id == service && t.slot == slot),
                "slot {service}.{slot} after entry {index}"
            );
        }
        for node in ["", "n0", "n1", "n2"] {
            assert_eq!(
                sorted(ids(&mut store.tasks_of_service_on_node(service, node))),
                walk(&|t| t.service_id == service && t.slot == 0 && t.node_id == node),
                "{service} on {node:?} after entry {index}"
            );
        }
        let mut want = TaskTally::default();
        for t in store.list::<Task>().filter(|t| t.service_id == service) {
            let state = crate::lifecycle::observed(t);
            want.running += u64::from(
                t.desired_state == proto::TaskState::Running as i32
                    && state == proto::TaskState::Running as i32,
            );
            want.active += u64::from(crate::lifecycle::is_active(t));
            want.completed += u64::from(state == proto::TaskState::Complete as i32);
        }
        assert_eq!(
            store.task_tally(service),
            want,
            "{service}'s counts after entry {index}"
        );
    }
}

#[test]
fn the_managers_index_follows_promotions_demotions_removals_and_rollbacks() {
    let node = |id: &str, version: u64, manager: bool| proto::Node {
        meta: Some(Meta {
            id: id.into(),
            version,
            ..Default::default()
        }),
        manager_status: manager.then(proto::ManagerStatus::default),
        ..Default::default()
    };
    let managers = |store: &ObjectStore| -> Vec<String> {
        store.managers().map(|n| n.id().to_owned()).collect()
    };
    let mut store = ObjectStore::default();
    store
        .apply(
            &batch(vec![
                (Create, node("m1", 0, true).wrap()),
                (Create, node("w1", 0, false).wrap()),
                (Create, node("w2", 0, false).wrap()),
            ]),
            1,
        )
        .unwrap();
    assert_eq!(managers(&store), ["m1"]);
    store
        .apply(
            &batch(vec![
                (Update, node("w2", 1, true).wrap()),
                (Update, node("m1", 1, false).wrap()),
            ]),
            2,
        )
        .unwrap();
    assert_eq!(managers(&store), ["w2"], "a promotion and a demotion");
    // A batch that fails halfway leaves the index as it was.
    let failed = store.apply(
        &batch(vec![
            (Update, node("w1", 1, true).wrap()),
            (Update, node("w2", 1, false).wrap()),
        ]),
        3,
    );
    assert!(failed.is_err(), "w2's version is 2 now");
    assert_eq!(managers(&store), ["w2"]);
    assert_eq!(
        managers(&ObjectStore::from_snapshot(store.to_snapshot())),
        ["w2"]
    );
    store
        .apply(&batch(vec![(Delete, node("w2", 0, true).wrap())]), 4)
        .unwrap();
    assert!(managers(&store).is_empty());
}

/// What Raft hands the store: a task decoded from its own bytes, so its spec is its own copy.
fn decoded(task: &Task) -> Task {
    use prost::Message;
    Task::decode(task.encode_to_vec().as_slice()).expect("a task decodes")
}

#[test]
fn tasks_of_a_service_version_share_one_spec_and_read_back_as_written() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let spec = |service: usize, version: u64| proto::TaskSpec {
        container: Some(proto::ContainerSpec {
            image: format!("img{service}:{version}"),
            env: vec![format!("V={version}")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut current = [1u64; 3];
    let mut store = ObjectStore::default();
    let mut written: BTreeMap<String, Task> = BTreeMap::new();
    for index in 1..3000u64 {
        let n = rng.gen_range(0..80usize);
        let (id, service) = (format!("t{n}"), n % 3);
        // Often enough that the table of shared specs outgrows its first pruning.
        if rng.gen_bool(0.05) {
            current[service] += 1;
        }
        let mut t = match written.get(&id) {
            // A status update keeps the task's spec; a rollout gives it the service's newest.
            Some(old) => {
                let mut t = old.clone();
                if rng.gen_bool(0.3) {
                    t.spec_version = current[service];
                    t.spec = Some(spec(service, current[service]).into());
                }
                t
            }
            None => Task {
                service_id: format!("s{service}"),
                spec_version: current[service],
                spec: Some(spec(service, current[service]).into()),
                ..task(&id)
            },
        };
        t.desired_state = rng.gen_range(0..14);
        let kind = match written.contains_key(&id) {
            false => Create,
            true if rng.gen_bool(0.1) => Delete,
            true => Update,
        };
        let mut actions = vec![(kind, decoded(&t).wrap())];
        if rng.gen_bool(0.1) {
            // A duplicate create makes the whole batch fail and roll back.
            let dup = written.keys().next().cloned().unwrap_or_else(|| id.clone());
            actions.push((Create, decoded(&task(&dup)).wrap()));
            actions.push((Create, decoded(&task(&dup)).wrap()));
        }
        if store.apply(&batch(actions), index).is_ok() {
            if kind == Delete {
                written.remove(&id);
            } else {
                t.meta.as_mut().unwrap().version = index;
                written.insert(id, t);
            }
        }
        assert_shared_and_as_written(&store, &written);
    }
    let restored = ObjectStore::from_snapshot(decoded_snapshot(&store));
    assert_shared_and_as_written(&restored, &written);
}

fn decoded_snapshot(store: &ObjectStore) -> proto::StoreSnapshot {
    use prost::Message;
    proto::StoreSnapshot::decode(store.to_snapshot().encode_to_vec().as_slice())
        .expect("a snapshot decodes")
}

/// Every stored task is what was last written for it, and the tasks of one service version
/// point at one copy of their spec.
fn assert_shared_and_as_written(store: &ObjectStore, written: &BTreeMap<String, Task>) {
    let stored: Vec<&Task> = store.list::<Task>().collect();
    assert_eq!(stored, written.values().collect::<Vec<_>>());
    let mut first: BTreeMap<(&str, u64), &proto::SharedTaskSpec> = BTreeMap::new();
    for t in stored {
        let spec = t.spec.as_ref().expect("every task here has a spec");
        let shared = first
            .entry((t.service_id.as_str(), t.spec_version))
            .or_insert(spec);
        assert!(
            shared.ptr_eq(spec),
            "task {} has a copy of its spec",
            t.id()
        );
    }
}

#[test]
fn a_spec_changed_under_the_same_version_is_not_shared() {
    let mut store = ObjectStore::default();
    let with_image = |id: &str, image: &str| Task {
        service_id: "s".into(),
        spec_version: 1,
        spec: Some(
            proto::TaskSpec {
                container: Some(proto::ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .into(),
        ),
        ..task(id)
    };
    for (index, (id, image)) in [("a", "one"), ("b", "two"), ("c", "two")]
        .iter()
        .enumerate()
    {
        let t = decoded(&with_image(id, image));
        store
            .apply(&batch(vec![(Create, t.wrap())]), index as u64 + 1)
            .unwrap();
    }
    let spec = |id: &str| store.get::<Task>(id).unwrap().spec.clone().unwrap();
    assert_eq!(spec("a").container.as_ref().unwrap().image, "one");
    assert_eq!(spec("b").container.as_ref().unwrap().image, "two");
    assert!(spec("b").ptr_eq(&spec("c")));
    assert!(!spec("a").ptr_eq(&spec("b")));
    // Changing one task's spec copies it: the other task keeps its own.
    let mut changed = spec("b");
    changed.container.as_mut().unwrap().image = "three".into();
    assert_eq!(spec("c").container.as_ref().unwrap().image, "two");
}
