//! Routing mesh and overlay benchmark, on 3 test hosts (network namespaces on a switch of
//! the bench's own), runtime `process`, both data paths.
//!
//! - HTTP: a small page from one `busybox httpd` task on host 2, a new connection per
//!   request, 8 client threads for 5 s each: straight to the task's overlay address from
//!   another task's namespace (host 3, across VXLAN), then through the mesh from host 1's
//!   namespace to host 1 (a node without the task: DNAT into ingress, across VXLAN) and to
//!   host 2 (the node with it). The three targets take turns for several rounds, each round
//!   in a different order, and each figure is the median over the rounds: on a shared
//!   2-core machine one quiet or busy stretch would otherwise decide a comparison.
//! - TCP throughput: 1 GiB from a task on host 3 to a task on host 2 over the overlay, and
//!   from host 1 to host 2 over the underlay (veth and bridge, no VXLAN), taking turns for
//!   as many rounds; the share is the median of the per-round ratios. Beside the rates, the
//!   CPU time the sending and receiving threads used per GiB (the kernel runs the whole
//!   path, both namespaces' stacks, VXLAN and bridges, in those threads' system time).
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench mesh`
//! (root; iproute2, nftables and busybox-static, as the tests). `MESH_BENCH_PATHS=kernel`
//! (or `userspace`) runs one data path; `MESH_BENCH_ROUNDS` (default 5) sets the rounds;
//! `MESH_BENCH_TCP_ONLY=1` skips the HTTP rows.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use integration_tests::netns::{inside, TestNetwork};
use integration_tests::{wait_until, Cluster};

const THREADS: usize = 8;
const RUN: Duration = Duration::from_secs(5);
const BYTES: u64 = 1 << 30;

fn rounds() -> usize {
    std::env::var("MESH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5)
}

fn host_ns(cluster: &Cluster, i: usize) -> PathBuf {
    PathBuf::from(format!(
        "/var/run/netns/{}",
        cluster.namespace(i).expect("test host")
    ))
}

fn get(to: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).ok()?;
    reply.starts_with(b"HTTP/1.").then(|| started.elapsed())
}

struct Load {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of each figure over the rounds, and the spread of the rate.
fn summary(rounds: &[Load]) -> (Load, f64, f64) {
    let of = |f: fn(&Load) -> f64| median(rounds.iter().map(f).collect());
    let rates: Vec<f64> = rounds.iter().map(|l| l.requests_per_s).collect();
    let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let high = rates.iter().copied().fold(0.0, f64::max);
    (
        Load {
            requests_per_s: of(|l| l.requests_per_s),
            p50_ms: of(|l| l.p50_ms),
            p99_ms: of(|l| l.p99_ms),
            failed: rounds.iter().map(|l| l.failed).sum(),
        },
        low,
        high,
    )
}

fn load(netns: PathBuf, to: SocketAddr) -> Load {
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            inside(netns.clone(), move || {
                let deadline = Instant::now() + RUN;
                let (mut ok, mut failed) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    match get(to) {
                        Some(d) => ok.push(d.as_secs_f64() * 1000.0),
                        None => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in threads {
        let (ok, f) = t.join().expect("client thread");
        all.extend(ok);
        failed += f;
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    Load {
        requests_per_s: all.len() as f64 / RUN.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        failed,
    }
}

/// The CPU time the calling thread has used: its system time includes the network stack's
/// work done on its behalf (a send runs the receiving namespaces' softirq work inline).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(ok, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// One transfer: its rate, and the CPU time its sender and sink threads used per GiB.
#[derive(Clone, Copy)]
struct Transfer {
    mib_per_s: f64,
    cpu_s_per_gib: f64,
}

/// Sends `BYTES` from `from` to a sink listening in `sink_ns` at `addr`.
fn throughput(from: PathBuf, sink_ns: PathBuf, addr: SocketAddr) -> Transfer {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = inside(sink_ns, move || {
        let listener =
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port()))).expect("bind sink");
        ready_tx.send(()).expect("ready");
        let (mut conn, _) = listener.accept().expect("accept");
        // Read as the sender writes, 1 MiB at a time: with `io::copy`'s 8 KiB the per-read
        // cost, the same on both paths, hid part of what the overlay costs.
        let mut buf = vec![0u8; 1 << 20];
        let cpu = thread_cpu();
        let mut got = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("drain: {e}"),
            }
        }
        (got, thread_cpu() - cpu)
    });
    ready_rx.recv().expect("sink ready");
    let sender = inside(from, move || {
        let mut conn = TcpStream::connect(addr).expect("connect to sink");
        let chunk = vec![0u8; 1 << 20];
        let started = Instant::now();
        let cpu = thread_cpu();
        let mut left = BYTES;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            conn.write_all(&chunk[..n]).expect("send");
            left -= n as u64;
        }
        drop(conn);
        (started, thread_cpu() - cpu)
    });
    let (started, sender_cpu) = sender.join().expect("sender");
    let (got, sink_cpu) = sink.join().expect("sink");
    assert_eq!(got, BYTES);
    let gib = BYTES as f64 / (1u64 << 30) as f64;
    Transfer {
        mib_per_s: (BYTES as f64 / (1 << 20) as f64) / started.elapsed().as_secs_f64(),
        cpu_s_per_gib: (sender_cpu + sink_cpu).as_secs_f64() / gib,
    }
}

fn run(mode: &'static str) {
    let mut cluster = Cluster::on_network(3).with_data_path(mode);
    cluster.form(1);
    cluster.ok(1, &["network", "create", "bench"]);
    let pid_file = cluster.dir().join("client.pid");
    let serve = "d=$(mktemp -d); echo $$ > $d/index.html; exec busybox httpd -f -p 80 -h $d";
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--network",
            "bench",
            "--constraint",
            "node.hostname==host2",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            serve,
        ],
    );
    let client_cmd = format!("echo $$ > {}; exec sleep 100000", pid_file.display());
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "client",
            "--network",
            "bench",
            "--constraint",
            "node.hostname==host3",
            "busybox",
            "sh",
            "-c",
            &client_cmd,
        ],
    );
    cluster.wait_running(1, "web", 1, Duration::from_secs(60));
    cluster.wait_running(1, "client", 1, Duration::from_secs(60));
    let network = cluster.network_id(1, "bench");
    let web = cluster.running_tasks(1, "web").remove(0);
    let web_addr: SocketAddr = format!("{}:80", web.address_on(&network))
        .parse()
        .expect("address");
    let mesh = |i: usize| -> SocketAddr {
        format!("{}:8080", TestNetwork::address(i))
            .parse()
            .expect("address")
    };
    // The page is the task's PID: its namespace is that process's.
    let web_pid = wait_until("the mesh to answer", Duration::from_secs(60), || {
        cluster.http_get(1, mesh(1))
    });
    let client_pid = wait_until("the client task's PID", Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|s| !s.trim().is_empty())
    });
    let task_ns = |pid: &str| PathBuf::from(format!("/proc/{}/ns/net", pid.trim()));
    let client_ns = task_ns(&client_pid);

    let targets = [
        (
            "direct to the task (overlay, from a task)",
            client_ns.clone(),
            web_addr,
        ),
        ("mesh, node without the task", host_ns(&cluster, 1), mesh(1)),
        ("mesh, node with the task", host_ns(&cluster, 1), mesh(2)),
    ];
    // results[target][round]; round r starts at target r mod 3.
    let mut results: Vec<Vec<Load>> = targets.iter().map(|_| Vec::new()).collect();
    let http_rounds = if std::env::var_os("MESH_BENCH_TCP_ONLY").is_some() {
        0
    } else {
        rounds()
    };
    for round in 0..http_rounds {
        for k in 0..targets.len() {
            let t = (round + k) % targets.len();
            let (_, ns, to) = &targets[t];
            results[t].push(load(ns.clone(), *to));
        }
    }
    let rounds_of_direct = &results[0];
    for ((label, _, _), rounds) in targets.iter().zip(&results) {
        if rounds.is_empty() {
            continue;
        }
        let (l, low, high) = summary(rounds);
        // The share of direct is taken round by round, then the median of those.
        let share = median(
            rounds
                .iter()
                .zip(rounds_of_direct)
                .map(|(l, d)| 100.0 * l.requests_per_s / d.requests_per_s)
                .collect(),
        );
        println!(
            "{mode:<9} {label:<44} {:>9.0} {:>13} {:>8.2} {:>8.2} {:>6} {:>8.0}%",
            l.requests_per_s,
            format!("{low:.0}-{high:.0}"),
            l.p50_ms,
            l.p99_ms,
            l.failed,
            share
        );
    }
    // The two transfers take turns, as the HTTP targets do, and the share is the median of
    // the per-round ratios: one transfer alone moves with whatever else the machine runs.
    let mut pairs = Vec::new();
    for round in 0..rounds() {
        let overlay = || {
            throughput(
                client_ns.clone(),
                task_ns(&web_pid),
                SocketAddr::new(web_addr.ip(), 9000),
            )
        };
        let underlay = || {
            throughput(
                host_ns(&cluster, 1),
                host_ns(&cluster, 2),
                format!("{}:9001", TestNetwork::address(2))
                    .parse()
                    .expect("address"),
            )
        };
        let pair = if round % 2 == 0 {
            let o = overlay();
            (o, underlay())
        } else {
            let u = underlay();
            (overlay(), u)
        };
        pairs.push(pair);
    }
    let of = |f: fn(&(Transfer, Transfer)) -> f64| median(pairs.iter().map(f).collect());
    let (overlay, underlay) = (of(|p| p.0.mib_per_s), of(|p| p.1.mib_per_s));
    let share = of(|(o, u)| 100.0 * o.mib_per_s / u.mib_per_s);
    let (overlay_cpu, underlay_cpu) = (of(|p| p.0.cpu_s_per_gib), of(|p| p.1.cpu_s_per_gib));
    let each: Vec<String> = pairs
        .iter()
        .map(|(o, u)| format!("{:.0}/{:.0}", o.mib_per_s, u.mib_per_s))
        .collect();
    println!(
        "{mode:<9} TCP 1 GiB: overlay {overlay:.0} MiB/s, underlay {underlay:.0} MiB/s, overlay/underlay {share:.0}% (median of rounds: {})",
        each.join(" ")
    );
    // On a machine other work shares, the CPU the transfer itself used is the steadier
    // figure: the rate follows the share of the cores the bench gets.
    println!(
        "{mode:<9} TCP 1 GiB: CPU s per GiB (sender and sink threads): overlay {overlay_cpu:.2}, underlay {underlay_cpu:.2} ({:.0}% of the overlay's cost)",
        100.0 * underlay_cpu / overlay_cpu
    );
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "routing mesh: 3 test hosts, runtime process, busybox httpd, {THREADS} client threads x {}s, new connection per request, {} rounds (medians), {cores} cores",
        RUN.as_secs(),
        rounds()
    );
    println!(
        "{:<9} {:<44} {:>9} {:>13} {:>8} {:>8} {:>6} {:>9}",
        "path", "target", "req/s", "range", "p50 ms", "p99 ms", "failed", "of direct"
    );
    let paths = std::env::var("MESH_BENCH_PATHS").unwrap_or_else(|_| "kernel,userspace".into());
    for mode in ["kernel", "userspace"] {
        if paths.split(',').any(|p| p.trim() == mode) {
            run(mode);
        }
    }
    println!(
        "rerun: cargo build --release --bins && cargo bench -p integration-tests --bench mesh"
    );
}
