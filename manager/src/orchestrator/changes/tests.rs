use proto::{
    Cluster, Meta, Network, Node, Service, StoreActionKind, StoreEvent, StoreObject, Task,
};

use super::*;

fn meta(id: &str) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        ..Default::default()
    })
}

fn event(object: Object) -> StoreEvent {
    StoreEvent {
        kind: StoreActionKind::Update as i32,
        object: Some(StoreObject {
            object: Some(object),
        }),
        index: 1,
    }
}

fn changes(objects: Vec<Object>) -> WatchEvent {
    WatchEvent::Changes {
        index: 1,
        events: objects.into_iter().map(event).collect(),
    }
}

fn task(id: &str, service: &str, slot: u64, node: &str) -> Object {
    Object::Task(Task {
        meta: meta(id),
        service_id: service.into(),
        slot,
        node_id: node.into(),
        ..Default::default()
    })
}

/// A tracker past its first (full) round.
fn settled() -> Changes {
    let mut changes = Changes::default();
    assert_eq!(
        changes.take(1_000),
        Scope::All,
        "the first round covers everything"
    );
    changes.done(&Scope::All, &[]);
    changes
}

#[test]
fn task_changes_dirty_their_slots_and_service_changes_the_whole_service() {
    let mut tracker = settled();
    tracker.observe(&changes(vec![
        task("t1", "web", 3, "n1"),
        task("t2", "web", 3, "n2"),
        task("t3", "agent", 0, "n1"),
        Object::Service(
            Service {
                meta: meta("db"),
                ..Default::default()
            }
            .into(),
        ),
        task("t4", "db", 1, "n1"),
        Object::Node(
            Node {
                meta: meta("n9"),
                ..Default::default()
            }
            .into(),
        ),
        Object::Network(Network {
            meta: meta("net"),
            ..Default::default()
        }),
    ]));
    let Scope::Dirty(dirty) = tracker.take(1_001) else {
        panic!("a partial round");
    };
    assert_eq!(dirty.services, BTreeSet::from(["db".to_string()]));
    assert_eq!(
        dirty.slots,
        BTreeMap::from([
            (
                "agent".to_string(),
                BTreeSet::from([SlotId::Node("n1".into())])
            ),
            ("web".to_string(), BTreeSet::from([SlotId::Slot(3)])),
        ])
    );
    assert_eq!(dirty.nodes, BTreeSet::from(["n9".to_string()]));
    // Taken: the next round has nothing to do.
    assert_eq!(tracker.take(1_002), Scope::Dirty(Dirty::default()));
}

/// Why a round must cover everything, and how the tracker hears it.
type Unknown = (&'static str, Box<dyn Fn(&mut Changes)>);

#[test]
fn the_next_round_covers_everything_when_what_changed_is_unknown() {
    let cases: Vec<Unknown> = vec![
        ("lagged", Box::new(|c| c.everything())),
        (
            "snapshot installed",
            Box::new(|c| c.observe(&WatchEvent::Reset { index: 9 })),
        ),
        (
            "cluster changed",
            Box::new(|c| {
                c.observe(&changes(vec![Object::Cluster(
                    Cluster {
                        meta: meta("c"),
                        ..Default::default()
                    }
                    .into(),
                )]))
            }),
        ),
        (
            "a failed full round",
            Box::new(|c| {
                c.everything();
                let scope = c.take(1_001);
                c.failed(scope);
            }),
        ),
    ];
    for (why, change) in cases {
        let mut tracker = settled();
        tracker.observe(&changes(vec![task("t1", "web", 1, "")]));
        change(&mut tracker);
        assert_eq!(tracker.take(1_002), Scope::All, "{why}");
        assert_eq!(
            tracker.take(1_003),
            Scope::Dirty(Dirty::default()),
            "{why}: once"
        );
    }
}

fn wake(at: i64, service: &str, slot: Option<u64>) -> Wake {
    let again = slot.map_or(Again::Service, |slot| Again::Slot(SlotId::Slot(slot)));
    Wake {
        at,
        service_id: service.into(),
        again,
    }
}

fn fill(at: i64, service: &str, from: u64) -> Wake {
    Wake {
        at,
        service_id: service.into(),
        again: Again::SlotsFrom(from),
    }
}

fn slots(service: &str, slots: &[u64]) -> BTreeMap<String, BTreeSet<SlotId>> {
    BTreeMap::from([(
        service.to_string(),
        slots.iter().map(|s| SlotId::Slot(*s)).collect(),
    )])
}

#[test]
fn a_wake_up_covers_what_asked_for_it_and_the_safety_net_everything() {
    let mut tracker = settled();
    tracker.observe(&changes(vec![task("t1", "web", 1, "")]));
    let scope = tracker.take(2_000);
    assert!(matches!(scope, Scope::Dirty(_)));
    // A partial round's wake-ups add to the full round's.
    tracker.done(&scope, &[wake(5_000, "web", Some(1))]);
    assert_eq!(tracker.wake_at(), Some(5_000));
    let scope = tracker.take(3_000);
    tracker.done(
        &scope,
        &[
            wake(9_000, "web", Some(2)),
            wake(5_000, "db", None),
            fill(5_000, "api", 40),
            fill(4_000, "api", 30),
        ],
    );
    assert_eq!(tracker.wake_at(), Some(4_000));
    assert_eq!(tracker.take(3_999), Scope::Dirty(Dirty::default()));
    let Scope::Dirty(due) = tracker.take(4_000) else {
        panic!("a wake-up makes a partial round");
    };
    assert_eq!(due.fill_from, BTreeMap::from([("api".to_string(), 30)]));
    assert_eq!(tracker.wake_at(), Some(5_000), "the earlier wake-up stands");
    assert_eq!(tracker.take(4_999), Scope::Dirty(Dirty::default()));
    let Scope::Dirty(due) = tracker.take(5_000) else {
        panic!("a wake-up makes a partial round");
    };
    assert_eq!(due.slots, slots("web", &[1]));
    assert_eq!(due.services, BTreeSet::from(["db".to_string()]));
    assert_eq!(
        due.fill_from,
        BTreeMap::from([("api".to_string(), 40)]),
        "each wake-up in its own round"
    );
    assert_eq!(tracker.wake_at(), Some(9_000));
    // A full round says all wake-ups there are.
    tracker.everything();
    let scope = tracker.take(6_000);
    assert_eq!(scope, Scope::All);
    tracker.done(&scope, &[wake(7_000, "web", Some(3))]);
    assert_eq!(tracker.wake_at(), Some(7_000));
    let Scope::Dirty(due) = tracker.take(10_000) else {
        panic!("a partial round");
    };
    assert_eq!(due.slots, slots("web", &[3]), "the full round's only");
    assert!(matches!(
        tracker.take(6_000 + SAFETY_NET_MS - 1),
        Scope::Dirty(_)
    ));
    assert_eq!(tracker.take(6_000 + SAFETY_NET_MS), Scope::All);
}

#[test]
fn a_failed_partial_round_is_covered_again() {
    let mut tracker = settled();
    tracker.observe(&changes(vec![task("t1", "web", 1, "")]));
    let first = tracker.take(2_000);
    tracker.observe(&changes(vec![task("t2", "web", 2, "")]));
    tracker.failed(first);
    let Scope::Dirty(dirty) = tracker.take(2_001) else {
        panic!("a partial round");
    };
    assert_eq!(dirty.slots, slots("web", &[1, 2]));
}
