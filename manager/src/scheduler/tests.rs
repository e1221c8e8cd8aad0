use std::collections::{BTreeMap, BTreeSet};

use proto::{
    Endpoint, Meta, Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, Placement, PlacementPreference, Platform, PortConfig, PortProtocol, PublishMode,
    ResourceRequirements, Resources, Task, TaskSpec, TaskState, TaskStatus,
};

use super::constraint::{self, Attribute, Operator};
use super::{schedule, schedule_placed, Decision};
use crate::store::Placed;

const CPU: i64 = 1_000_000_000;
const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

/// A ready, active worker on linux/x86_64 with 4 CPUs and 8 GiB, hostname `host-ID`.
fn node(id: &str) -> Node {
    Node {
        meta: Some(Meta {
            id: id.to_string(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            labels: Default::default(),
            desired_role: NodeRole::Worker as i32,
            availability: NodeAvailability::Active as i32,
        }),
        description: Some(NodeDescription {
            hostname: format!("host-{id}"),
            platform: Some(Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
            }),
            resources: Some(Resources {
                nano_cpus: 4 * CPU,
                memory_bytes: 8 * GIB,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            ..Default::default()
        }),
        role: NodeRole::Worker as i32,
        ..Default::default()
    }
}

fn labeled(mut n: Node, labels: &[(&str, &str)]) -> Node {
    let spec = n.spec.get_or_insert_with(Default::default);
    for (k, v) in labels {
        spec.labels.insert(k.to_string(), v.to_string());
    }
    n
}

fn in_state(mut n: Node, state: NodeState) -> Node {
    n.status.get_or_insert_with(Default::default).state = state as i32;
    n
}

fn available(mut n: Node, availability: NodeAvailability) -> Node {
    n.spec.get_or_insert_with(Default::default).availability = availability as i32;
    n
}

fn manager(mut n: Node) -> Node {
    n.role = NodeRole::Manager as i32;
    n.spec.get_or_insert_with(Default::default).desired_role = NodeRole::Manager as i32;
    n
}

fn sized(mut n: Node, nano_cpus: i64, memory_bytes: i64) -> Node {
    n.description.get_or_insert_with(Default::default).resources = Some(Resources {
        nano_cpus,
        memory_bytes,
        ..Default::default()
    });
    n
}

fn platform(mut n: Node, os: &str, arch: &str) -> Node {
    n.description.get_or_insert_with(Default::default).platform = Some(Platform {
        os: os.into(),
        arch: arch.into(),
    });
    n
}

/// A pending task of `service` with a default spec.
fn task(id: &str, service: &str) -> Task {
    Task {
        meta: Some(Meta {
            id: id.to_string(),
            ..Default::default()
        }),
        service_id: service.to_string(),
        spec: Some(TaskSpec::default().into()),
        spec_version: 1,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tasks(prefix: &str, service: &str, n: usize, spec: &TaskSpec) -> Vec<Task> {
    (0..n)
        .map(|i| {
            let mut t = task(&format!("{prefix}{i}"), service);
            t.spec = Some(spec.clone().into());
            t
        })
        .collect()
}

/// A task of `service` running on `node`.
fn running(id: &str, service: &str, node: &str, spec: &TaskSpec) -> Task {
    let mut t = task(id, service);
    t.node_id = node.to_string();
    t.spec = Some(spec.clone().into());
    t.status = Some(TaskStatus {
        state: TaskState::Running as i32,
        ..Default::default()
    });
    t
}

fn placement(p: Placement) -> TaskSpec {
    TaskSpec {
        placement: Some(p),
        ..Default::default()
    }
}

fn constrained(constraints: &[&str]) -> TaskSpec {
    placement(Placement {
        constraints: constraints.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    })
}

fn reserving(nano_cpus: i64, memory_bytes: i64) -> TaskSpec {
    TaskSpec {
        resources: Some(ResourceRequirements {
            limits: None,
            reservations: Some(Resources {
                nano_cpus,
                memory_bytes,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn spread(descriptors: &[&str]) -> TaskSpec {
    placement(Placement {
        preferences: descriptors
            .iter()
            .map(|d| PlacementPreference {
                spread: d.to_string(),
            })
            .collect(),
        ..Default::default()
    })
}

/// Schedules `pending` with `existing` in the store (the pending tasks are in the store too,
/// as they are for the real caller). Every test through here also checks that starting
/// from what the store keeps placed decides exactly what a walk over the tasks decides.
fn run(nodes: &[Node], existing: &[Task], pending: &[Task]) -> Vec<Decision> {
    let store: Vec<Task> = existing.iter().chain(pending).cloned().collect();
    let refs: Vec<&Task> = pending.iter().collect();
    let decisions = schedule(nodes, &store, &refs);
    assert_eq!(
        schedule_placed(nodes, &Placed::of_tasks(&store), &refs),
        decisions,
        "from the store's placed counts as from a walk over the tasks"
    );
    assert_eq!(
        decisions.len(),
        pending.len(),
        "one decision per pending task"
    );
    for (d, t) in decisions.iter().zip(pending) {
        assert_eq!(d.task_id(), t.id(), "decisions keep the pending order");
    }
    decisions
}

/// Tasks assigned per node (nodes that got none are absent).
fn per_node(decisions: &[Decision]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in decisions {
        if let Decision::Assign { node_id, .. } = d {
            *counts.entry(node_id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

fn reasons(decisions: &[Decision]) -> BTreeSet<String> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Unplaceable { reason, .. } => Some(reason.clone()),
            Decision::Assign { .. } => None,
        })
        .collect()
}

fn unplaced(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| matches!(d, Decision::Unplaceable { .. }))
        .count()
}

/// Expected tasks per node, as written in the tables.
type Expected = &'static [(&'static str, usize)];

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// ---------------------------------------------------------------------------------------
// Spreading over equal nodes
// ---------------------------------------------------------------------------------------

#[test]
fn spreads_evenly_over_equal_nodes() {
    // (nodes, tasks, expected per node)
    let cases: &[(&[&str], usize, Expected)] = &[
        (&["a", "b", "c"], 10, &[("a", 4), ("b", 3), ("c", 3)]),
        (&["a", "b", "c"], 6, &[("a", 2), ("b", 2), ("c", 2)]),
        (&["a", "b", "c"], 1, &[("a", 1)]),
        (&["c", "b", "a"], 2, &[("a", 1), ("b", 1)]),
        (&["a"], 5, &[("a", 5)]),
    ];
    for (ids, n, want) in cases {
        let nodes: Vec<Node> = ids.iter().map(|id| node(id)).collect();
        let decisions = run(&nodes, &[], &tasks("t", "svc", *n, &TaskSpec::default()));
        assert_eq!(per_node(&decisions), counts(want), "{n} tasks on {ids:?}");
    }
}

#[test]
fn prefers_nodes_with_fewer_tasks_of_the_service_then_fewer_tasks() {
    let nodes = [node("a"), node("b"), node("c")];
    let spec = TaskSpec::default();
    // a already runs 2 tasks of svc; c runs 3 tasks of another service.
    let existing = [
        running("x1", "svc", "a", &spec),
        running("x2", "svc", "a", &spec),
        running("y1", "other", "c", &spec),
        running("y2", "other", "c", &spec),
        running("y3", "other", "c", &spec),
    ];
    // First b (no tasks at all), then b and c level with a at 2 each... b before c each time.
    let cases: &[(usize, Expected)] = &[
        (1, &[("b", 1)]),
        (2, &[("b", 1), ("c", 1)]),
        (3, &[("b", 2), ("c", 1)]),
        (4, &[("b", 2), ("c", 2)]),
        (5, &[("a", 1), ("b", 2), ("c", 2)]),
    ];
    for (n, want) in cases {
        let decisions = run(&nodes, &existing, &tasks("t", "svc", *n, &spec));
        assert_eq!(per_node(&decisions), counts(want), "{n} tasks");
    }
}

#[test]
fn stopped_tasks_do_not_occupy_their_node() {
    let nodes = [node("a"), node("b")];
    let spec = TaskSpec::default();
    let mut failed = running("f", "svc", "a", &spec);
    failed.status = Some(TaskStatus {
        state: TaskState::Failed as i32,
        ..Default::default()
    });
    let mut shutting_down = running("s", "svc", "a", &spec);
    shutting_down.desired_state = TaskState::Shutdown as i32;
    let mut complete = running("c", "svc", "a", &spec);
    complete.status = Some(TaskStatus {
        state: TaskState::Complete as i32,
        ..Default::default()
    });
    let assigned = {
        let mut t = running("as", "svc", "b", &spec);
        t.status = Some(TaskStatus {
            state: TaskState::Assigned as i32,
            ..Default::default()
        });
        t
    };
    let decisions = run(
        &nodes,
        &[failed, shutting_down, complete, assigned],
        &tasks("t", "svc", 1, &spec),
    );
    assert_eq!(
        per_node(&decisions),
        counts(&[("a", 1)]),
        "only the assigned task on b counts"
    );
}

// ---------------------------------------------------------------------------------------
// Availability and readiness
// ---------------------------------------------------------------------------------------

#[test]
fn unavailable_nodes_get_nothing() {
    let nodes = [
        node("ok"),
        available(node("drained"), NodeAvailability::Drain),
        available(node("paused"), NodeAvailability::Pause),
        in_state(node("down"), NodeState::Down),
        in_state(node("disconnected"), NodeState::Disconnected),
        in_state(node("unknown"), NodeState::Unknown),
    ];
    let decisions = run(&nodes, &[], &tasks("t", "svc", 12, &TaskSpec::default()));
    assert_eq!(per_node(&decisions), counts(&[("ok", 12)]));

    let decisions = run(
        &nodes[1..],
        &[],
        &tasks("t", "svc", 2, &TaskSpec::default()),
    );
    assert_eq!(unplaced(&decisions), 2);
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 3 nodes not ready, 1 node paused, 1 node drained".to_string()
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------------------

#[test]
fn constraints_select_nodes() {
    let nodes = [
        labeled(manager(node("m1")), &[("zone", "east"), ("disk", "ssd")]),
        labeled(node("w1"), &[("zone", "west")]),
        node("w2"),
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (&["node.role==manager"], &["m1"]),
        (&["node.role == MANAGER"], &["m1"]),
        (&["node.role!=manager"], &["w1", "w2"]),
        (&["node.role==worker"], &["w1", "w2"]),
        (&["node.labels.zone==east"], &["m1"]),
        (&["node.labels.zone!=east"], &["w1", "w2"]),
        (
            &["node.labels.zone != west", "node.labels.disk==ssd"],
            &["m1"],
        ),
        (&["node.labels.zone==East"], &[]),
        (&["node.labels.missing==x"], &[]),
        (&["node.labels.missing!=x"], &["m1", "w1", "w2"]),
        (&["node.hostname==host-w1"], &["w1"]),
        (&["node.hostname!=host-w1"], &["m1", "w2"]),
        (&["node.id==w2"], &["w2"]),
        (&["node.id!=w2", "node.role==worker"], &["w1"]),
        (&["node.platform.os==Linux"], &["m1", "w1", "w2"]),
        (&["node.platform.arch==amd64"], &["m1", "w1", "w2"]),
        (&["node.platform.arch==x86_64"], &["m1", "w1", "w2"]),
        (&["node.platform.arch==arm64"], &[]),
    ];
    for (constraints, want) in cases {
        let decisions = run(
            &nodes,
            &[],
            &tasks("t", "svc", 9, &constrained(constraints)),
        );
        let used: Vec<String> = per_node(&decisions).into_keys().collect();
        assert_eq!(
            used,
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{constraints:?}"
        );
        assert_eq!(
            unplaced(&decisions),
            if want.is_empty() { 9 } else { 0 },
            "{constraints:?}"
        );
    }
}

#[test]
fn role_falls_back_to_the_desired_role_before_a_certificate_is_issued() {
    let mut fresh = manager(node("m"));
    fresh.role = NodeRole::Unspecified as i32;
    let decisions = run(
        &[fresh, node("w")],
        &[],
        &tasks("t", "svc", 2, &constrained(&["node.role==manager"])),
    );
    assert_eq!(per_node(&decisions), counts(&[("m", 2)]));
}

#[test]
fn invalid_constraint_makes_the_task_unplaceable_with_the_parse_error() {
    let decisions = run(
        &[node("a")],
        &[],
        &tasks("t", "svc", 2, &constrained(&["node.lables.zone==east"])),
    );
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "invalid constraint \"node.lables.zone==east\": unknown attribute node.lables.zone; use node.id, \
             node.hostname, node.role, node.labels.KEY, node.platform.os or node.platform.arch"
                .to_string()
        ])
    );
    let decisions = run(
        &[node("a")],
        &[],
        &tasks("t", "svc", 1, &spread(&["node.lables.zone"])),
    );
    assert_eq!(unplaced(&decisions), 1);
    assert!(reasons(&decisions)
        .iter()
        .all(|r| r.contains("unknown attribute node.lables.zone")));
}

// ---------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------

#[test]
fn resources_account_for_placed_tasks_and_earlier_decisions() {
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        existing: Vec<Task>,
        spec: TaskSpec,
        pending: usize,
        want: &'static [(&'static str, usize)],
        reason: Option<&'static str>,
    }
    let cases = vec![
        Case {
            name: "cpu fills up within one call",
            nodes: vec![sized(node("a"), 4 * CPU, 8 * GIB)],
            existing: vec![],
            spec: reserving(CPU, 0),
            pending: 5,
            want: &[("a", 4)],
            reason: Some("no suitable node: 1 node has insufficient CPU (needs 1 CPU, 0 CPUs free)"),
        },
        Case {
            name: "cpu of running tasks is taken",
            nodes: vec![sized(node("a"), 2 * CPU, 8 * GIB), sized(node("b"), CPU, 8 * GIB)],
            existing: vec![running("x", "other", "a", &reserving(CPU + CPU / 2, 0))],
            spec: reserving(CPU, 0),
            pending: 3,
            want: &[("b", 1)],
            reason: Some("no suitable node: 2 nodes have insufficient CPU (needs 1 CPU, at most 0.5 CPUs free)"),
        },
        Case {
            name: "memory",
            nodes: vec![sized(node("a"), 4 * CPU, 712 * MIB), sized(node("b"), 4 * CPU, GIB)],
            existing: vec![running("x", "other", "a", &reserving(0, 512 * MIB))],
            spec: reserving(0, 512 * MIB),
            pending: 3,
            want: &[("b", 2)],
            reason: Some("no suitable node: 2 nodes have insufficient memory (needs 512 MiB, at most 200 MiB free)"),
        },
        Case {
            name: "memory, one node",
            nodes: vec![sized(node("a"), 4 * CPU, 712 * MIB)],
            existing: vec![running("x", "other", "a", &reserving(0, 512 * MIB))],
            spec: reserving(0, 512 * MIB),
            pending: 1,
            want: &[],
            reason: Some("no suitable node: 1 node has insufficient memory (needs 512 MiB, 200 MiB free)"),
        },
        Case {
            name: "both needed, cpu reported first",
            nodes: vec![sized(node("a"), CPU, GIB)],
            existing: vec![],
            spec: reserving(2 * CPU, 2 * GIB),
            pending: 1,
            want: &[],
            reason: Some("no suitable node: 1 node has insufficient CPU (needs 2 CPUs, 1 CPU free)"),
        },
        Case {
            name: "no reservation fits anywhere, even on a full node",
            nodes: vec![sized(node("a"), 0, 0)],
            existing: vec![],
            spec: TaskSpec::default(),
            pending: 3,
            want: &[("a", 3)],
            reason: None,
        },
        Case {
            name: "the bigger node takes more",
            nodes: vec![sized(node("a"), 4 * CPU, 8 * GIB), sized(node("b"), CPU, 8 * GIB)],
            existing: vec![],
            spec: reserving(CPU, GIB),
            pending: 5,
            want: &[("a", 4), ("b", 1)],
            reason: None,
        },
    ];
    for case in cases {
        let decisions = run(
            &case.nodes,
            &case.existing,
            &tasks("t", "svc", case.pending, &case.spec),
        );
        assert_eq!(per_node(&decisions), counts(case.want), "{}", case.name);
        let want_reasons: BTreeSet<String> = case.reason.iter().map(|r| r.to_string()).collect();
        assert_eq!(reasons(&decisions), want_reasons, "{}", case.name);
    }
}

#[test]
fn earlier_groups_in_the_same_call_use_up_resources() {
    let nodes = [sized(node("a"), 3 * CPU, 8 * GIB)];
    let mut pending = tasks("a", "svc-a", 2, &reserving(CPU, 0));
    pending.extend(tasks("b", "svc-b", 2, &reserving(CPU, 0)));
    let decisions = run(&nodes, &[], &pending);
    assert_eq!(per_node(&decisions), counts(&[("a", 3)]));
    assert!(matches!(&decisions[3], Decision::Unplaceable { task_id, .. } if task_id == "b1"));
}

// ---------------------------------------------------------------------------------------
// Max replicas per node
// ---------------------------------------------------------------------------------------

#[test]
fn max_replicas_per_node() {
    let nodes = [node("a"), node("b"), node("c")];
    let spec = placement(Placement {
        max_replicas: 2,
        ..Default::default()
    });
    let decisions = run(&nodes, &[], &tasks("t", "svc", 7, &spec));
    assert_eq!(
        per_node(&decisions),
        counts(&[("a", 2), ("b", 2), ("c", 2)])
    );
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 3 nodes already run the maximum of 2 tasks of this service per node"
                .into()
        ])
    );

    // Tasks already running count, those of other services do not.
    let existing = [
        running("x1", "svc", "a", &spec),
        running("x2", "svc", "a", &spec),
        running("y1", "other", "b", &spec),
        running("y2", "other", "b", &spec),
    ];
    let decisions = run(&nodes, &existing, &tasks("t", "svc", 5, &spec));
    assert_eq!(per_node(&decisions), counts(&[("b", 2), ("c", 2)]));
    assert_eq!(unplaced(&decisions), 1);

    let one = placement(Placement {
        max_replicas: 1,
        ..Default::default()
    });
    let decisions = run(&nodes[..1], &[], &tasks("t", "svc", 2, &one));
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 1 node already runs the maximum of 1 task of this service per node"
                .into()
        ])
    );
}

/// `t` publishing `port` (TCP) in `mode`.
fn publishing(mut t: Task, port: u32, mode: PublishMode) -> Task {
    t.endpoint = Some(Endpoint {
        ports: vec![PortConfig {
            protocol: PortProtocol::Tcp as i32,
            target_port: 80,
            published_port: port,
            publish_mode: mode as i32,
            ..Default::default()
        }],
        ..Default::default()
    });
    t
}

#[test]
fn a_node_publishes_a_host_port_once() {
    let nodes = [node("a"), node("b"), node("c")];
    let spec = TaskSpec::default();
    let host = |t: Task| publishing(t, 8081, PublishMode::Host);
    let pending: Vec<Task> = tasks("t", "svc", 4, &spec).into_iter().map(host).collect();
    let decisions = run(&nodes, &[], &pending);
    assert_eq!(
        per_node(&decisions),
        counts(&[("a", 1), ("b", 1), ("c", 1)])
    );
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 3 nodes already publish port 8081/tcp in host mode".into()
        ])
    );

    // Another service's task holds the port on a; tasks publishing it through the mesh, as
    // a dynamic host port or not at all take nothing.
    let existing = [
        host(running("x", "other", "a", &spec)),
        publishing(running("y", "mesh", "b", &spec), 8081, PublishMode::Ingress),
        publishing(running("z", "any", "b", &spec), 0, PublishMode::Host),
    ];
    let decisions = run(&nodes[..2], &existing, &pending[..2]);
    assert_eq!(per_node(&decisions), counts(&[("b", 1)]));
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 2 nodes already publish port 8081/tcp in host mode".into()
        ])
    );
    // A task bound to its node is told which port is in the way.
    let mut bound = host(task("g", "global"));
    bound.node_id = "a".into();
    let decisions = run(&nodes, &existing, &[bound]);
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: node a already publishes port 8081/tcp in host mode".into()
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Platform
// ---------------------------------------------------------------------------------------

#[test]
fn platform_filter() {
    let nodes = [
        platform(node("x86"), "linux", "x86_64"),
        platform(node("arm"), "linux", "aarch64"),
        platform(node("win"), "windows", "amd64"),
    ];
    let p = |os: &str, arch: &str| Platform {
        os: os.into(),
        arch: arch.into(),
    };
    let cases: &[(Vec<Platform>, &[&str])] = &[
        (vec![], &["arm", "win", "x86"]),
        (vec![p("linux", "amd64")], &["x86"]),
        (vec![p("linux", "arm64")], &["arm"]),
        (vec![p("linux", "")], &["arm", "x86"]),
        (vec![p("", "amd64")], &["win", "x86"]),
        (
            vec![p("Windows", "x86_64"), p("linux", "arm64")],
            &["arm", "win"],
        ),
        (vec![p("darwin", "arm64")], &[]),
    ];
    for (platforms, want) in cases {
        let spec = placement(Placement {
            platforms: platforms.clone(),
            ..Default::default()
        });
        let decisions = run(&nodes, &[], &tasks("t", "svc", 6, &spec));
        let used: Vec<String> = per_node(&decisions).into_keys().collect();
        assert_eq!(
            used,
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{platforms:?}"
        );
    }
    let spec = placement(Placement {
        platforms: vec![p("linux", "arm64"), p("", "s390x")],
        ..Default::default()
    });
    let decisions = run(&nodes[..1], &[], &tasks("t", "svc", 1, &spec));
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 1 node does not match platform linux/arm64 or */s390x".into()
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Spread preferences
// ---------------------------------------------------------------------------------------

fn zone(id: &str, zone: &str) -> Node {
    labeled(node(id), &[("zone", zone)])
}

#[test]
fn spread_evens_out_label_values_not_nodes() {
    // east has one node, west three: the tasks split per zone.
    let nodes = [
        zone("e1", "east"),
        zone("w1", "west"),
        zone("w2", "west"),
        zone("w3", "west"),
    ];
    let cases: &[(usize, Expected)] = &[
        (8, &[("e1", 4), ("w1", 2), ("w2", 1), ("w3", 1)]),
        (2, &[("e1", 1), ("w1", 1)]),
        (1, &[("e1", 1)]),
    ];
    for (n, want) in cases {
        let decisions = run(
            &nodes,
            &[],
            &tasks("t", "svc", *n, &spread(&["node.labels.zone"])),
        );
        assert_eq!(per_node(&decisions), counts(want), "{n} tasks");
    }
}

#[test]
fn spread_hands_out_the_remainder_one_per_value() {
    let nodes = [zone("a", "z1"), zone("b", "z2"), zone("c", "z3")];
    let cases: &[(usize, Expected)] = &[
        (4, &[("a", 2), ("b", 1), ("c", 1)]),
        (5, &[("a", 2), ("b", 2), ("c", 1)]),
        (7, &[("a", 3), ("b", 2), ("c", 2)]),
    ];
    for (n, want) in cases {
        let decisions = run(
            &nodes,
            &[],
            &tasks("t", "svc", *n, &spread(&["node.labels.zone"])),
        );
        assert_eq!(per_node(&decisions), counts(want), "{n} tasks");
    }
}

#[test]
fn spread_counts_running_tasks_and_groups_nodes_without_the_label() {
    let nodes = [
        zone("e1", "east"),
        zone("w1", "west"),
        zone("w2", "west"),
        node("n1"),
    ];
    let pref = spread(&["node.labels.zone"]);
    // east already has 3 tasks: the next 3 go to the other two groups first.
    let existing: Vec<Task> = (0..3)
        .map(|i| running(&format!("x{i}"), "svc", "e1", &pref))
        .collect();
    let decisions = run(&nodes, &existing, &tasks("t", "svc", 6, &pref));
    assert_eq!(
        per_node(&decisions),
        counts(&[("n1", 3), ("w1", 2), ("w2", 1)])
    );

    // The stored form may carry the CLI's `spread=` prefix.
    let decisions = run(
        &nodes,
        &[],
        &tasks("t", "svc", 3, &spread(&["spread=node.labels.zone"])),
    );
    assert_eq!(
        per_node(&decisions),
        counts(&[("e1", 1), ("n1", 1), ("w1", 1)])
    );
}

#[test]
fn spread_fills_other_values_when_one_is_full() {
    // east's single node takes at most 3 (max replicas): what east cannot take goes west.
    let nodes = [zone("e1", "east"), zone("w1", "west"), zone("w2", "west")];
    let spec = placement(Placement {
        max_replicas: 3,
        preferences: vec![PlacementPreference {
            spread: "node.labels.zone".into(),
        }],
        ..Default::default()
    });
    let decisions = run(&nodes, &[], &tasks("t", "svc", 8, &spec));
    assert_eq!(
        per_node(&decisions),
        counts(&[("e1", 3), ("w1", 3), ("w2", 2)])
    );

    // A value whose nodes all fail a constraint still counts its tasks but takes no more.
    let spec = placement(Placement {
        constraints: vec!["node.labels.zone==west".into()],
        preferences: vec![PlacementPreference {
            spread: "node.labels.zone".into(),
        }],
        ..Default::default()
    });
    let decisions = run(&nodes, &[], &tasks("t", "svc", 4, &spec));
    assert_eq!(per_node(&decisions), counts(&[("w1", 2), ("w2", 2)]));
}

#[test]
fn spread_preferences_apply_hierarchically() {
    let n = |id: &str, zone: &str, rack: &str| labeled(node(id), &[("zone", zone), ("rack", rack)]);
    let nodes = [
        n("e-r1-a", "east", "r1"),
        n("e-r1-b", "east", "r1"),
        n("e-r1-c", "east", "r1"),
        n("e-r2-a", "east", "r2"),
        n("w-r3-a", "west", "r3"),
    ];
    let spec = spread(&["node.labels.zone", "node.labels.rack"]);
    let decisions = run(&nodes, &[], &tasks("t", "svc", 8, &spec));
    // 4 per zone; in east 2 per rack.
    assert_eq!(
        per_node(&decisions),
        counts(&[("e-r1-a", 1), ("e-r1-b", 1), ("e-r2-a", 2), ("w-r3-a", 4)])
    );
}

// ---------------------------------------------------------------------------------------
// Reasons
// ---------------------------------------------------------------------------------------

#[test]
fn unplaceable_reason_counts_the_first_filter_that_rejected_each_node() {
    let nodes = [
        in_state(node("down"), NodeState::Down),
        in_state(
            available(node("down-and-drained"), NodeAvailability::Drain),
            NodeState::Down,
        ),
        available(node("drained"), NodeAvailability::Drain),
        labeled(
            sized(node("small"), 4 * CPU, 200 * MIB),
            &[("zone", "east")],
        ),
        labeled(sized(node("west"), 4 * CPU, 200 * MIB), &[("zone", "west")]),
    ];
    let spec = TaskSpec {
        placement: Some(Placement {
            constraints: vec!["node.labels.zone==east".into()],
            ..Default::default()
        }),
        ..reserving(0, 512 * MIB)
    };
    let decisions = run(&nodes, &[], &tasks("t", "svc", 1, &spec));
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from([
            "no suitable node: 2 nodes not ready, 1 node drained, 1 node does not satisfy constraint \
             node.labels.zone==east, 1 node has insufficient memory (needs 512 MiB, 200 MiB free)"
                .to_string()
        ])
    );
}

#[test]
fn empty_cluster() {
    let decisions = run(&[], &[], &tasks("t", "svc", 2, &TaskSpec::default()));
    assert_eq!(
        reasons(&decisions),
        BTreeSet::from(["no suitable node: the cluster has no nodes".to_string()])
    );
}

// ---------------------------------------------------------------------------------------
// Tasks bound to a node (global services)
// ---------------------------------------------------------------------------------------

#[test]
fn bound_tasks_are_checked_against_their_node_only() {
    let nodes = [
        sized(node("a"), CPU, GIB),
        available(node("b"), NodeAvailability::Drain),
        node("c"),
    ];
    let bound = |id: &str, node: &str| {
        let mut t = task(id, "global");
        t.spec = Some(reserving(CPU, 0).into());
        t.node_id = node.to_string();
        t
    };
    // The free task of another service comes first in `pending` but bound tasks claim their
    // node's CPU first.
    let mut free = task("free", "svc");
    free.spec = Some(
        TaskSpec {
            placement: Some(Placement {
                constraints: vec!["node.id==a".into()],
                ..Default::default()
            }),
            ..reserving(CPU, 0)
        }
        .into(),
    );
    let pending = [
        free,
        bound("g-a", "a"),
        bound("g-b", "b"),
        bound("g-c", "c"),
        bound("g-x", "gone"),
    ];
    let decisions = run(&nodes, &[], &pending);
    assert_eq!(
        decisions,
        vec![
            Decision::Unplaceable {
                task_id: "free".into(),
                reason: "no suitable node: 1 node drained, 1 node does not satisfy constraint node.id==a, 1 node \
                         has insufficient CPU (needs 1 CPU, 0 CPUs free)"
                    .into(),
            },
            Decision::Assign { task_id: "g-a".into(), node_id: "a".into() },
            Decision::Unplaceable { task_id: "g-b".into(), reason: "no suitable node: node b is drained".into() },
            Decision::Assign { task_id: "g-c".into(), node_id: "c".into() },
            Decision::Unplaceable {
                task_id: "g-x".into(),
                reason: "no suitable node: node gone is not in the cluster".into(),
            },
        ]
    );
}

#[test]
fn a_bound_pending_task_does_not_count_twice() {
    // The store's copy of the pending task already names the node: it must not occupy it.
    let nodes = [sized(node("a"), CPU, GIB)];
    let mut t = task("g", "global");
    t.spec = Some(reserving(CPU, 0).into());
    t.node_id = "a".into();
    let decisions = run(&nodes, &[], &[t]);
    assert_eq!(
        decisions,
        vec![Decision::Assign {
            task_id: "g".into(),
            node_id: "a".into()
        }]
    );
}

// ---------------------------------------------------------------------------------------
// Grouping
// ---------------------------------------------------------------------------------------

#[test]
fn tasks_of_one_service_version_with_different_placement_are_scheduled_apart() {
    let nodes = [manager(node("m")), node("w")];
    let mut pending = tasks("m", "svc", 2, &constrained(&["node.role==manager"]));
    pending.extend(tasks("w", "svc", 2, &constrained(&["node.role==worker"])));
    // Interleave so grouping by (service, version) alone would be wrong.
    pending.swap(1, 2);
    let decisions = run(&nodes, &[], &pending);
    for d in &decisions {
        let Decision::Assign { task_id, node_id } = d else {
            panic!("{d:?}")
        };
        assert_eq!(task_id[..1], node_id[..1], "{d:?}");
    }
}

#[test]
fn spread_counts_carry_over_between_groups_of_one_service() {
    // During a rolling update two spec versions of a service are pending at once: the second
    // group must see the first group's placements.
    let nodes = [node("a"), node("b")];
    let mut pending = tasks("v1-", "svc", 1, &TaskSpec::default());
    let mut v2 = tasks("v2-", "svc", 1, &TaskSpec::default());
    v2[0].spec_version = 2;
    pending.extend(v2);
    let decisions = run(&nodes, &[], &pending);
    assert_eq!(per_node(&decisions), counts(&[("a", 1), ("b", 1)]));
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

#[test]
fn constraint_parsing() {
    let cases: &[(&str, Attribute, Operator, &str)] = &[
        ("node.id==abc", Attribute::Id, Operator::Eq, "abc"),
        (
            "node.hostname!=web-1",
            Attribute::Hostname,
            Operator::Ne,
            "web-1",
        ),
        (
            "node.role==manager",
            Attribute::Role,
            Operator::Eq,
            "manager",
        ),
        (
            "  Node.Role == Worker ",
            Attribute::Role,
            Operator::Eq,
            "Worker",
        ),
        (
            "node.labels.zone != east",
            Attribute::Label("zone".into()),
            Operator::Ne,
            "east",
        ),
        (
            "node.labels.Zone==East",
            Attribute::Label("Zone".into()),
            Operator::Eq,
            "East",
        ),
        (
            "node.labels.com.example.tier==db",
            Attribute::Label("com.example.tier".into()),
            Operator::Eq,
            "db",
        ),
        (
            "node.platform.os==linux",
            Attribute::PlatformOs,
            Operator::Eq,
            "linux",
        ),
        (
            "node.platform.arch==x86_64",
            Attribute::PlatformArch,
            Operator::Eq,
            "x86_64",
        ),
    ];
    for (input, attribute, operator, value) in cases {
        let c = constraint::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            (&c.attribute, c.operator, c.value.as_str()),
            (attribute, *operator, *value),
            "{input}"
        );
    }
    assert_eq!(
        constraint::parse("node.labels.zone != east")
            .unwrap()
            .to_string(),
        "node.labels.zone!=east"
    );
}

#[test]
fn constraint_parse_errors_say_what_to_write() {
    let attrs = "use node.id, node.hostname, node.role, node.labels.KEY, node.platform.os or node.platform.arch";
    let cases: Vec<(&str, String)> = vec![
        (
            "node.lables.zone==east",
            format!("invalid constraint \"node.lables.zone==east\": unknown attribute node.lables.zone; {attrs}"),
        ),
        (
            "node.role=manager",
            "invalid constraint \"node.role=manager\": missing operator; write ATTRIBUTE==VALUE or \
             ATTRIBUTE!=VALUE, e.g. node.role==manager"
                .into(),
        ),
        ("node.role", "invalid constraint \"node.role\": missing operator; write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, e.g. node.role==manager".into()),
        ("==east", format!("invalid constraint \"==east\": empty attribute before ==; {attrs}")),
        (
            "node.labels.zone!= ",
            "invalid constraint \"node.labels.zone!=\": empty value after !=; compare with a value, e.g. \
             node.labels.zone!=east"
                .into(),
        ),
        (
            "node.labels.==east",
            "invalid constraint \"node.labels.==east\": missing label name after node.labels., e.g. \
             node.labels.zone==east"
                .into(),
        ),
        (
            "node.role==boss",
            "invalid constraint \"node.role==boss\": node.role is manager or worker, not \"boss\"".into(),
        ),
        (
            "node.role===manager",
            "invalid constraint \"node.role===manager\": more than one operator; a constraint compares one \
             attribute with one value, e.g. node.labels.zone==east"
                .into(),
        ),
        ("engine.labels.x==y", format!("invalid constraint \"engine.labels.x==y\": unknown attribute engine.labels.x; {attrs}")),
        (
            "node.labels.my zone==east",
            "invalid constraint \"node.labels.my zone==east\": label name \"node.labels.my zone\" contains \
             whitespace, '=' or '!'"
                .into(),
        ),
    ];
    for (input, want) in cases {
        match constraint::parse(input) {
            Ok(c) => panic!("{input} parsed as {c}"),
            Err(e) => assert_eq!(e.to_string(), want, "{input}"),
        }
    }
}

#[test]
fn preference_parsing() {
    let zone = Attribute::Label("zone".into());
    assert_eq!(
        constraint::parse_preference("spread=node.labels.zone")
            .unwrap()
            .attribute,
        zone
    );
    assert_eq!(
        constraint::parse_preference(" Spread = node.labels.zone ")
            .unwrap()
            .attribute,
        zone
    );
    assert_eq!(
        constraint::parse_spread("node.labels.zone")
            .unwrap()
            .attribute,
        zone
    );
    assert_eq!(
        constraint::parse_spread("spread=node.labels.zone")
            .unwrap()
            .attribute,
        zone
    );
    assert_eq!(
        constraint::parse_spread("node.platform.arch")
            .unwrap()
            .attribute,
        Attribute::PlatformArch
    );
    assert_eq!(
        constraint::parse_preference("spread=node.labels.zone")
            .unwrap()
            .to_string(),
        "spread=node.labels.zone"
    );

    let cases: &[(&str, &str)] = &[
        (
            "binpack=node.labels.zone",
            "invalid placement preference \"binpack=node.labels.zone\": unknown strategy; the only strategy is \
             spread, e.g. spread=node.labels.zone",
        ),
        (
            "node.labels.zone",
            "invalid placement preference \"node.labels.zone\": unknown strategy; the only strategy is spread, \
             e.g. spread=node.labels.zone",
        ),
        (
            "spread=",
            "invalid placement preference \"spread=\": nothing to spread over; write spread=node.labels.KEY, \
             e.g. spread=node.labels.zone",
        ),
        (
            "spread=node.zone",
            "invalid placement preference \"spread=node.zone\": unknown attribute node.zone; spread over \
             node.labels.KEY (or node.id, node.hostname, node.role, node.platform.os, node.platform.arch)",
        ),
        (
            "spread=node.labels.",
            "invalid placement preference \"spread=node.labels.\": missing label name after node.labels., e.g. \
             spread=node.labels.zone",
        ),
    ];
    for (input, want) in cases {
        match constraint::parse_preference(input) {
            Ok(p) => panic!("{input} parsed as {p}"),
            Err(e) => assert_eq!(e.to_string(), *want, "{input}"),
        }
    }
}

#[test]
fn formatting_of_quantities() {
    use super::filters::{fmt_bytes, fmt_cpus};
    let cpus: &[(i64, &str)] = &[
        (CPU, "1 CPU"),
        (CPU / 2, "0.5 CPUs"),
        (CPU / 4, "0.25 CPUs"),
        (3 * CPU / 2, "1.5 CPUs"),
        (0, "0 CPUs"),
        (-5, "0 CPUs"),
    ];
    for (nano, want) in cpus {
        assert_eq!(fmt_cpus(*nano), *want);
    }
    let bytes: &[(i64, &str)] = &[
        (100, "100 B"),
        (2048, "2 KiB"),
        (512 * MIB, "512 MiB"),
        (3 * GIB / 2, "1.5 GiB"),
        (-1, "0 B"),
    ];
    for (b, want) in bytes {
        assert_eq!(fmt_bytes(*b), *want);
    }
}

// ---------------------------------------------------------------------------------------
// The fast path agrees with the obvious algorithm
// ---------------------------------------------------------------------------------------

/// xorshift64*: deterministic pseudo-random cases without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// One task at a time: run every filter on every node and take the smallest (tasks of the
/// service, tasks overall, node ID). Quadratic, obviously right.
fn reference(nodes: &[Node], store: &[Task], pending: &[&Task]) -> Vec<Option<String>> {
    use super::filters::{NodeInfo, Requirements};
    use crate::store::{occupies_node, reservations};
    let mut infos: Vec<NodeInfo<'_>> = nodes.iter().filter_map(NodeInfo::new).collect();
    infos.sort_by(|a, b| a.id.cmp(b.id));
    let mut per_service: BTreeMap<(String, usize), u32> = BTreeMap::new();
    for t in store
        .iter()
        .filter(|t| !t.node_id.is_empty() && occupies_node(t))
    {
        if let Some(i) = infos.iter().position(|n| n.id == t.node_id) {
            let (cpu, memory) = reservations(t.spec.as_deref());
            let ports = crate::store::host_ports(t.endpoint.as_ref());
            infos[i].add_task(cpu, memory, &ports);
            *per_service.entry((t.service_id.clone(), i)).or_default() += 1;
        }
    }
    pending
        .iter()
        .map(|t| {
            let req = Requirements::from_task(t.spec.as_deref(), t.endpoint.as_ref()).unwrap();
            let count = |i: usize| {
                per_service
                    .get(&(t.service_id.clone(), i))
                    .copied()
                    .unwrap_or(0)
            };
            let best = (0..infos.len())
                .filter(|&i| req.check(&infos[i], count(i)).is_ok())
                .min_by_key(|&i| (count(i), infos[i].tasks, infos[i].id))?;
            infos[best].add_task(req.cpu, req.memory, &req.host_ports);
            *per_service.entry((t.service_id.clone(), best)).or_default() += 1;
            Some(infos[best].id.to_string())
        })
        .collect()
}

#[test]
fn matches_the_reference_on_random_clusters() {
    let mut rng = Rng(0x5eed);
    let constraints = [
        "",
        "node.labels.zone==east",
        "node.labels.zone!=east",
        "node.role==manager",
    ];
    for round in 0..300 {
        let nodes: Vec<Node> = (0..1 + rng.below(8))
            .map(|i| {
                let mut n = sized(
                    node(&format!("n{i}")),
                    (1 + rng.below(4) as i64) * CPU,
                    (1 + rng.below(4) as i64) * GIB,
                );
                if rng.below(3) == 0 {
                    n = labeled(
                        n,
                        &[("zone", if rng.below(2) == 0 { "east" } else { "west" })],
                    );
                }
                if rng.below(4) == 0 {
                    n = manager(n);
                }
                match rng.below(8) {
                    0 => available(n, NodeAvailability::Drain),
                    1 => in_state(n, NodeState::Down),
                    _ => n,
                }
            })
            .collect();
        let spec = |rng: &mut Rng| {
            let c = constraints[rng.below(constraints.len() as u64) as usize];
            TaskSpec {
                placement: Some(Placement {
                    constraints: if c.is_empty() {
                        vec![]
                    } else {
                        vec![c.to_string()]
                    },
                    max_replicas: rng.below(4),
                    ..Default::default()
                }),
                ..reserving(rng.below(3) as i64 * CPU / 2, rng.below(3) as i64 * GIB / 2)
            }
        };
        let mut existing = Vec::new();
        for i in 0..rng.below(10) {
            let on = format!("n{}", rng.below(nodes.len() as u64));
            existing.push(running(
                &format!("x{i}"),
                &format!("s{}", rng.below(3)),
                &on,
                &spec(&mut rng),
            ));
        }
        let mut pending = Vec::new();
        for s in 0..1 + rng.below(3) {
            let service_spec = spec(&mut rng);
            pending.extend(tasks(
                &format!("s{s}-"),
                &format!("s{s}"),
                rng.below(12) as usize,
                &service_spec,
            ));
        }
        let store: Vec<Task> = existing.iter().chain(&pending).cloned().collect();
        let refs: Vec<&Task> = pending.iter().collect();
        let fast: Vec<Option<String>> = schedule(&nodes, &store, &refs)
            .into_iter()
            .map(|d| match d {
                Decision::Assign { node_id, .. } => Some(node_id),
                Decision::Unplaceable { .. } => None,
            })
            .collect();
        assert_eq!(fast, reference(&nodes, &store, &refs), "round {round}");
    }
}
