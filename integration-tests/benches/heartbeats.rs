//! Heartbeats as the cluster grows: 3 managers (real `skiffd` processes), one real worker
//! `skiffd` and N simulated workers (each a real node with its own certificate, TLS session
//! and heartbeats, in this process). Per size: the heartbeats the leader accepts per second
//! (its `skiff_dispatcher_heartbeats_total` over a quiet window), the leader's CPU meanwhile,
//! and the time from kill -9 of the real worker to the leader marking it down.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench heartbeats`
//! (`SKIFF_BENCH_SIZES=1000,10000` sets the simulated workers per row, `BENCH_WINDOW_SECS`
//! the counting window, 20 s by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::metrics::{cpu_time, metrics_addr, sample, scrape};
use integration_tests::simulated::SimulatedWorkers;
use integration_tests::{wait_until, Cluster};
use manager::transport::Connector;
use proto::control_client::ControlClient;
use proto::{GetNodeRequest, NodeState};

const HEARTBEATS: &str = "skiff_dispatcher_heartbeats_total";

/// One row: `simulated` workers beside the real one.
fn row(rt: &tokio::runtime::Runtime, simulated: usize, window: Duration) {
    let mut cluster = Cluster::new(4);
    let addrs: Vec<String> = (1..=4)
        .map(|i| metrics_addr(&cluster.host(i).addr))
        .collect();
    for (i, addr) in addrs.iter().enumerate() {
        cluster = cluster.with_daemon_args(i + 1, &["--metrics-addr", addr]);
    }
    cluster.form(3);
    let total = simulated + 4;
    let _workers = SimulatedWorkers::join(rt, &cluster, 1, simulated);
    let joined = Instant::now();
    wait_until("every node ready", Duration::from_secs(1800), || {
        (cluster.ready_nodes(1)? >= total).then_some(())
    });
    let ready_after = joined.elapsed();
    let leader = (0..3)
        .find(|i| sample(&scrape(&addrs[*i]).1, "skiff_raft_is_leader") == 1.0)
        .expect("one manager leads");
    let leader_pid = cluster.pid(leader + 1).expect("leader pid");

    // Let every node hear its period at least once, then count over a quiet window.
    std::thread::sleep(Duration::from_secs((total as u64 / 1000).max(1) * 2));
    let (beats_before, cpu_before, started) = (
        sample(&scrape(&addrs[leader]).1, HEARTBEATS),
        cpu_time(leader_pid).as_secs_f64(),
        Instant::now(),
    );
    std::thread::sleep(window);
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (sample(&scrape(&addrs[leader]).1, HEARTBEATS) - beats_before) / elapsed;
    let cpu = (cpu_time(leader_pid).as_secs_f64() - cpu_before) / elapsed * 100.0;

    // Kill the real worker and wait for the leader to mark it down.
    let connector = Arc::new(cluster.connector(leader + 1));
    let mut control = ControlClient::new(connector.channel(&cluster.host(leader + 1).addr));
    let killed = Instant::now();
    cluster.kill(4);
    let detected = rt.block_on(async {
        loop {
            let node = control
                .get_node(GetNodeRequest {
                    node: "host4".into(),
                })
                .await
                .expect("get node")
                .into_inner()
                .node
                .expect("node");
            if node
                .status
                .is_some_and(|s| s.state == NodeState::Down as i32)
            {
                return killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    println!(
        "{total:>8} {:>10.1} {rate:>14.0} {cpu:>14.1} {:>12.2}",
        ready_after.as_secs_f64(),
        detected.as_secs_f64()
    );
}

fn main() {
    cli::tls::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Channels spawn their connection tasks on the current runtime.
    let _guard = rt.enter();
    let sizes: Vec<usize> = std::env::var("SKIFF_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("SKIFF_BENCH_SIZES: numbers separated by commas")
        })
        .collect();
    let window = Duration::from_secs(
        std::env::var("BENCH_WINDOW_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    println!(
        "skiff heartbeats: 3 managers + 1 real worker (skiffd) + N simulated workers, on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>8} {:>10} {:>14} {:>14} {:>12}",
        "nodes", "ready s", "heartbeats/s", "leader CPU %", "lost node s"
    );
    for simulated in sizes {
        row(&rt, simulated, window);
    }
    println!("(heartbeats/s and CPU over {} s at the leader; lost node: kill -9 of the real worker to the leader marking it down)", window.as_secs());
    println!(
        "rerun: cargo build --release --bins && cargo bench -p integration-tests --bench heartbeats"
    );
}
