//! Service convergence benchmarks.
//!
//! 1. A real loopback cluster (3 managers, 4 workers, runtime `process`): time from
//!    `CreateService --replicas N` to N tasks running, N = 100 and 1,000.
//! 2. Scale: 3 managers (real `skiffd` processes) and many simulated workers in this process
//!    (each a real node: its own certificate, TLS session, heartbeats, assignments and status
//!    reports, with the `fake` runtime): time until all tasks run, tasks per second, and the
//!    leader's CPU time and memory; then a fourth manager joins and catches up from a
//!    snapshot of that store (its size, the time to restore it, the time to catch up).
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench services`
//! (`SKIFF_BENCH_WORKERS` and `SKIFF_BENCH_TASKS` change the scale run's size, `SKIFF_BENCH_LOG` its
//! managers' `RUST_LOG`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::metrics::{metrics_addr, sample, scrape};
use integration_tests::simulated::SimulatedWorkers;
use integration_tests::{wait_until, Cluster};
use manager::transport::Connector;
use proto::control_client::ControlClient;
use proto::service_spec::Mode;
use proto::{
    ContainerSpec, CreateServiceRequest, ListServicesRequest, ListTasksRequest,
    RemoveServiceRequest, ReplicatedService, ServiceSpec, TaskSpec,
};
use tonic::transport::Channel;

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
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
    }
}

/// Creates a service and returns how long until `n` of its tasks run, following the
/// service's task counts (`service ls`'s REPLICAS), as a user would: no task list crosses
/// the wire while it converges.
async fn converge(control: &mut ControlClient<Channel>, name: &str, n: u64) -> Duration {
    let started = Instant::now();
    control
        .create_service(CreateServiceRequest {
            spec: Some(spec(name, n)),
        })
        .await
        .expect("create service");
    let mut refused = 0;
    loop {
        // A busy leader may refuse a read now and then: counted, and asked again.
        match control
            .list_services(ListServicesRequest {
                names: vec![name.into()],
                status: true,
                ..Default::default()
            })
            .await
        {
            Ok(reply) => {
                let statuses = reply.into_inner().statuses;
                if statuses.first().is_some_and(|s| s.running_tasks >= n) {
                    if refused > 0 {
                        println!("   ({refused} status reads refused while {name} converged)");
                    }
                    return started.elapsed();
                }
            }
            Err(status) => {
                refused += 1;
                if refused == 1 {
                    println!("   a status read was refused: {}", status.message());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(if n > 10_000 { 200 } else { 20 })).await;
    }
}

async fn remove(control: &mut ControlClient<Channel>, name: &str) {
    control
        .remove_service(RemoveServiceRequest {
            service: name.into(),
        })
        .await
        .expect("remove service");
    loop {
        let left = control
            .list_tasks(ListTasksRequest::default())
            .await
            .expect("list")
            .into_inner()
            .tasks
            .len();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn process_runtime_convergence(rt: &tokio::runtime::Runtime) {
    let mut cluster = Cluster::new(7);
    cluster.form(3);
    wait_until("7 ready nodes", Duration::from_secs(30), || {
        let nodes = cluster.nodes(1);
        (nodes
            .iter()
            .filter(|n| n["status"]["state"] == "NODE_STATE_READY")
            .count()
            == 7)
            .then_some(())
    });
    let connector = Arc::new(cluster.connector(1));
    let mut control = ControlClient::new(connector.channel(&cluster.host(1).addr))
        .max_decoding_message_size(proto::MAX_RESPONSE_BYTES);
    println!(
        "1. convergence, runtime process: 3 managers + 4 workers on loopback, `sleep 600` tasks"
    );
    println!("{:>8} {:>12} {:>12}", "replicas", "seconds", "tasks/s");
    for n in [100u64, 1000] {
        let took = rt.block_on(converge(&mut control, &format!("conv{n}"), n));
        println!(
            "{n:>8} {:>12.2} {:>12.0}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        rt.block_on(remove(&mut control, &format!("conv{n}")));
    }
    println!();
}

/// A skiffd's CPU seconds, resident memory and peak resident memory (MiB), from /proc.
fn usage(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mib = |field: &str| {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (
        integration_tests::metrics::cpu_time(pid).as_secs_f64(),
        mib("VmRSS:"),
        mib("VmHWM:"),
    )
}

fn scale(rt: &tokio::runtime::Runtime, workers: usize, tasks: u64) {
    // Three managers, and a fourth host that joins as a manager at the end (item 5).
    let mut cluster = Cluster::new(4);
    if let Ok(filter) = std::env::var("SKIFF_BENCH_LOG") {
        // The managers' `RUST_LOG` (say `info,manager::orchestrator=debug`).
        cluster = cluster.with_log_filter(filter.leak());
    }
    for i in 1..=4 {
        let addr = metrics_addr(&cluster.host(i).addr);
        cluster = cluster.with_daemon_args(i, &["--metrics-addr", &addr]);
    }
    cluster.start_all();
    cluster.init(1);
    for i in 2..=3 {
        cluster.join(i, "manager", 1);
    }
    // Tasks go to the simulated workers only.
    for i in 1..=3 {
        cluster.ok(
            1,
            &[
                "node",
                "update",
                "--availability",
                "drain",
                &format!("host{i}"),
            ],
        );
    }
    let connector = Arc::new(cluster.connector(1));
    let addr = cluster.host(1).addr.clone();
    let joined = Instant::now();
    let _workers = SimulatedWorkers::join(rt, &cluster, 1, workers);
    wait_until("simulated workers ready", Duration::from_secs(1800), || {
        (cluster.ready_nodes(1)? >= workers + 3).then_some(())
    });
    let join_time = joined.elapsed();
    let leader = cluster.leader_host(1);
    let term_before = cluster.raft_term(leader);
    let leader_pid = cluster.pid(leader).expect("leader pid");
    let (cpu_before, _, _) = usage(leader_pid);
    let mut control = ControlClient::new(connector.channel(&addr))
        .max_decoding_message_size(proto::MAX_RESPONSE_BYTES);
    println!("2. scale, runtime fake: 3 managers (real skiffd) + {workers} simulated workers in the bench process");
    println!(
        "   {workers} workers joined and ready in {:.1} s",
        join_time.as_secs_f64()
    );
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>14} {:>12}",
        "workers", "tasks", "seconds", "tasks/s", "leader CPU s", "leader MiB"
    );
    let mut cpu_before = cpu_before;
    let mut last = None;
    for (name, n) in [("small", SMALL), ("scale", tasks)] {
        let took = rt.block_on(converge(&mut control, name, n));
        let (cpu_after, rss, _) = usage(leader_pid);
        println!(
            "{workers:>8} {n:>8} {:>12.2} {:>12.0} {:>14.1} {:>12.0}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            cpu_after - cpu_before,
            rss
        );
        last = Some((n, took, cpu_after - cpu_before));
        cpu_before = cpu_after;
    }
    let still = cluster.leader_host(1);
    if still != leader {
        println!("   leadership moved from host{leader} to host{still} during the run");
    }
    println!(
        "   stability: Raft term {term_before} -> {}, {} nodes marked down for a missed heartbeat (the managers' logs)",
        cluster.raft_term(still),
        missed_heartbeats(&cluster)
    );
    let (bytes, restore_ms, caught_up) = catch_up(&cluster, still, 4);
    println!(
        "3. a manager joins with {} tasks in the store: snapshot {:.1} MiB, restored in {:.2} s, caught up {:.1} s after `swarm join`",
        SMALL + tasks,
        bytes as f64 / (1 << 20) as f64,
        restore_ms as f64 / 1000.0,
        caught_up
    );
    println!();
    let (_, _, peak) = usage(leader_pid);
    let (n, took, cpu) = last.expect("the scale row ran");
    println!(
        "converged {n} tasks on {workers} nodes in {:.1} s ({:.0} tasks/s), leader peak RSS {peak:.0} MiB, leader CPU {cpu:.1} s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
    );
}

/// How many times the managers marked a node down for a missed heartbeat, from their logs:
/// a saturated manager punishes its nodes for its own slowness (issue 20, item 3).
fn missed_heartbeats(cluster: &Cluster) -> usize {
    (1..=3)
        .filter_map(|i| {
            std::fs::read_to_string(cluster.dir().join(format!("host{i}/skiffd.log"))).ok()
        })
        .map(|log| log.matches("missed its heartbeat").count())
        .sum()
}

/// Item 5: a new manager joins the converged cluster and catches up from a snapshot. The
/// leader is told to snapshot every 100 entries first, so the joiner cannot replay the log,
/// and back to the default once it has: at a million tasks a snapshot takes each manager
/// ten seconds of CPU, and one every 100 entries kept all three busy building them.
/// Returns (snapshot bytes, restore ms, seconds from `swarm join` to caught up).
fn catch_up(cluster: &Cluster, leader: usize, joiner: usize) -> (u64, u64, f64) {
    let snapshots = |i: usize| cluster.log(i).matches("built and saved a snapshot").count();
    let before = snapshots(leader);
    cluster.ok(leader, &["swarm", "update", "--snapshot-interval", "100"]);
    wait_until("the leader snapshots", Duration::from_secs(600), || {
        (snapshots(leader) > before).then_some(())
    });
    let default = manager::settings::DEFAULT_SNAPSHOT_INTERVAL.to_string();
    cluster.ok(
        leader,
        &["swarm", "update", "--snapshot-interval", &default],
    );
    let applied = |i: usize| {
        let (_, samples) = scrape(&metrics_addr(&cluster.host(i).addr));
        sample(&samples, "skiff_raft_applied_index") as u64
    };
    let target = applied(leader);
    let started = Instant::now();
    cluster.join(joiner, "manager", leader);
    wait_until(
        "the new manager catches up",
        Duration::from_secs(1800),
        || (applied(joiner) >= target).then_some(()),
    );
    let took = started.elapsed().as_secs_f64();
    let log = cluster.log(joiner);
    let line = log
        .lines()
        .find(|l| l.contains("restored the store from a snapshot"))
        .expect("the new manager restored a snapshot");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("bytes"), field("ms"), took)
}

/// Tasks of the scale run's first, small row.
const SMALL: u64 = 1000;

fn main() {
    cli::tls::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Channels spawn their connection tasks on the current runtime.
    let _guard = rt.enter();
    println!(
        "skiff service benchmarks on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    if std::env::var("SKIFF_BENCH_SKIP_PROCESS").is_err() {
        process_runtime_convergence(&rt);
    }
    let workers = std::env::var("SKIFF_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tasks = std::env::var("SKIFF_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "rerun: cargo build --release --bins && cargo bench -p integration-tests --bench services"
    );
    println!();
    scale(&rt, workers, tasks);
}
