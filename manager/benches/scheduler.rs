//! Scheduler throughput: `cargo bench -p manager --bench scheduler`.
//!
//! SwarmKit places about 4,400 tasks/s; this prints how many tasks per second
//! `scheduler::schedule` decides for clusters of various shapes (best of a few runs, inputs
//! built outside the timed part).

use std::hint::black_box;
use std::time::{Duration, Instant};

use manager::scheduler::{schedule, Decision};
use proto::{
    Meta, Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Placement, PlacementPreference, Platform, ResourceRequirements, Resources, Task, TaskSpec,
    TaskState, TaskStatus,
};

const CPU: i64 = 1_000_000_000;
const GIB: i64 = 1 << 30;

fn node(i: usize, zones: usize) -> Node {
    let mut labels = std::collections::HashMap::new();
    labels.insert("zone".to_string(), format!("zone-{}", i % zones.max(1)));
    Node {
        meta: Some(Meta {
            id: format!("node-{i:05}"),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            labels,
            desired_role: NodeRole::Worker as i32,
            availability: NodeAvailability::Active as i32,
        }),
        description: Some(NodeDescription {
            hostname: format!("host-{i}"),
            platform: Some(Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
            }),
            resources: Some(Resources {
                nano_cpus: 64 * CPU,
                memory_bytes: 256 * GIB,
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

fn task(id: String, service: String, spec: &TaskSpec) -> Task {
    Task {
        meta: Some(Meta {
            id,
            ..Default::default()
        }),
        service_id: service,
        spec: Some(spec.clone().into()),
        spec_version: 1,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Scenario {
    nodes: Vec<Node>,
    /// The whole store: running tasks and the pending ones.
    store: Vec<Task>,
    /// Indices into `store` of the pending tasks.
    pending: Vec<usize>,
}

fn plain(nodes: usize, tasks: usize) -> Scenario {
    let spec = TaskSpec::default();
    Scenario {
        nodes: (0..nodes).map(|i| node(i, 1)).collect(),
        store: (0..tasks)
            .map(|i| task(format!("task-{i}"), "svc".into(), &spec))
            .collect(),
        pending: (0..tasks).collect(),
    }
}

fn realistic(nodes: usize, tasks: usize) -> Scenario {
    let spec = TaskSpec {
        resources: Some(ResourceRequirements {
            limits: None,
            reservations: Some(Resources {
                nano_cpus: CPU / 10,
                memory_bytes: GIB / 4,
                ..Default::default()
            }),
        }),
        placement: Some(Placement {
            constraints: vec!["node.role==worker".into(), "node.platform.os==linux".into()],
            preferences: vec![PlacementPreference {
                spread: "node.labels.zone".into(),
            }],
            max_replicas: 200,
            ..Default::default()
        }),
        ..Default::default()
    };
    Scenario {
        nodes: (0..nodes).map(|i| node(i, 10)).collect(),
        store: (0..tasks)
            .map(|i| task(format!("task-{i}"), "svc".into(), &spec))
            .collect(),
        pending: (0..tasks).collect(),
    }
}

fn many_services(nodes: usize, tasks: usize) -> Scenario {
    let spec = TaskSpec {
        placement: Some(Placement {
            constraints: vec!["node.labels.zone!=zone-3".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    Scenario {
        nodes: (0..nodes).map(|i| node(i, 10)).collect(),
        store: (0..tasks)
            .map(|i| task(format!("task-{i}"), format!("svc-{i}"), &spec))
            .collect(),
        pending: (0..tasks).collect(),
    }
}

fn busy_cluster(nodes: usize, running: usize, tasks: usize) -> Scenario {
    let spec = TaskSpec::default();
    let mut store: Vec<Task> = (0..running)
        .map(|i| {
            let mut t = task(format!("running-{i}"), format!("svc-{}", i % 100), &spec);
            t.node_id = format!("node-{:05}", i % nodes);
            t.status = Some(TaskStatus {
                state: TaskState::Running as i32,
                ..Default::default()
            });
            t
        })
        .collect();
    store.extend((0..tasks).map(|i| task(format!("task-{i}"), format!("svc-{}", i % 10), &spec)));
    Scenario {
        nodes: (0..nodes).map(|i| node(i, 1)).collect(),
        store,
        pending: (running..running + tasks).collect(),
    }
}

/// Best wall time of `runs` calls, and the decisions of the last.
fn measure(s: &Scenario, runs: usize) -> (Duration, Vec<Decision>) {
    let pending: Vec<&Task> = s.pending.iter().map(|&i| &s.store[i]).collect();
    let mut best = Duration::MAX;
    let mut decisions = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        decisions = black_box(schedule(
            black_box(&s.nodes),
            black_box(&s.store),
            black_box(&pending),
        ));
        best = best.min(start.elapsed());
    }
    (best, decisions)
}

fn main() {
    // `cargo bench --bench scheduler -- service` runs the scenarios whose name contains
    // "service". Cargo passes `--bench` when benchmarking; without it (`cargo test
    // --benches`) only the smallest scenario runs, as a smoke test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    type Make = fn() -> Scenario;
    let scenarios: [(&str, Make, usize); 5] = [
        ("one service", || plain(10, 1_000), 20),
        ("one service", || plain(1_000, 100_000), 5),
        (
            "spread over 10 zones, constraints, reservations",
            || realistic(1_000, 100_000),
            5,
        ),
        ("one task per service", || many_services(1_000, 10_000), 5),
        (
            "10 services, 100,000 tasks running",
            || busy_cluster(1_000, 100_000, 10_000),
            5,
        ),
    ];
    println!(
        "{:<48} {:>6} {:>8} {:>10} {:>12}",
        "scenario", "nodes", "tasks", "seconds", "tasks/s"
    );
    for (i, (name, make, runs)) in scenarios.into_iter().enumerate() {
        if !benchmarking && i > 0 {
            break;
        }
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let scenario = make();
        let (elapsed, decisions) = measure(&scenario, runs);
        let placed = decisions
            .iter()
            .filter(|d| matches!(d, Decision::Assign { .. }))
            .count();
        assert_eq!(placed, scenario.pending.len(), "{name}: every task fits");
        let secs = elapsed.as_secs_f64();
        let (nodes, tasks) = (scenario.nodes.len(), scenario.pending.len());
        println!(
            "{name:<48} {nodes:>6} {tasks:>8} {secs:>10.4} {:>12.0}",
            tasks as f64 / secs
        );
    }
}
