//! Control-plane benchmark: a 3-manager cluster of real `skiffd` processes on loopback, with
//! real fsync. Measures committed writes per second and commit latency at 1 and 64
//! concurrent clients, and leader failover time (kill -9 of the leader to the first
//! acknowledged write on another manager), over several runs.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench control_plane`
//!
//! The 64-client rows come in `BENCH_PAIRS` pairs (default 3), one through the leader and
//! one through a follower, alternating, and end with the follower's rate as a share of the
//! leader's in each pair and its median: one pair on this shared machine spreads by 20% or
//! more, and rows run one after the other meet a larger store each time.
//!
//! `BENCH_METRICS=1` starts each manager with `--metrics-addr` and scrapes all three every
//! second while the writes run (a Prometheus at its fastest usual interval), to compare with
//! a run without: the cost of serving metrics. The counters a write moves are compiled in
//! either way.
//!
//! Leader changes are counted from the Raft term every manager reports (`skiff info`):
//! during the write rows, where there should be none, and in a soak of `BENCH_SOAK_SECS`
//! seconds (default 0: none) at the end, in which one client keeps writing through a
//! follower. `BENCH_LOAD=1` loads the machine during the soak with one busy thread per core
//! of the benchmark's own, so the soak shows whether a loaded machine makes leaders
//! change (issue 20: none in 10 minutes, `BENCH_LOAD=1 BENCH_SOAK_SECS=600`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::metrics::cpu_time;
use integration_tests::{wait_until, Cluster};
use manager::transport::Connector;
use proto::control_client::ControlClient;
use proto::{ConfigSpec, CreateConfigRequest};
use tonic::transport::Channel;

/// Writes per row and failover runs; `BENCH_WRITES` and `BENCH_FAILOVERS` override them (a
/// longer run gives a profiler something to look at).
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn write(client: &mut ControlClient<Channel>, name: String) -> Result<(), tonic::Status> {
    client
        .create_config(CreateConfigRequest {
            spec: Some(ConfigSpec {
                name,
                data: b"benchmark".to_vec(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn throughput(
    channel: Channel,
    clients: usize,
    writes: usize,
    tag: &str,
) -> (f64, Duration, Duration) {
    let per_client = writes / clients;
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let mut client = ControlClient::new(channel.clone());
        let tag = tag.to_owned();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                write(&mut client, format!("{tag}-{c}-{i}"))
                    .await
                    .expect("write");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("client"));
    }
    let elapsed = started.elapsed();
    all.sort();
    (
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

fn leader(cluster: &Cluster) -> usize {
    wait_until("a leader", Duration::from_secs(30), || {
        (1..=3).filter(|i| cluster.host(*i).is_running()).find(|i| {
            let out = cluster.skiff(*i, &["node", "ls"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.contains('*') && l.contains("Leader"))
        })
    })
}

/// One scrape of `/metrics` at `addr`; whether it answered 200.
fn scrape(addr: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = Vec::new();
    conn.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.0 200")
}

/// The daemon's CPU time per scrape of its `/metrics`, over `n` scrapes one after another
/// on a quiet cluster: what serving metrics costs, apart from the noise of a loaded run.
fn cpu_per_scrape(pid: u32, addr: &str, n: u32) -> Duration {
    let before = cpu_time(pid);
    let answered = (0..n).filter(|_| scrape(addr)).count();
    assert_eq!(answered, n as usize, "every scrape of {addr} answers");
    (cpu_time(pid) - before) / n
}

/// The highest Raft term any running manager reports: it moves on with every election.
fn highest_term(cluster: &Cluster) -> u64 {
    (1..=3)
        .filter(|i| cluster.host(*i).is_running())
        .map(|i| cluster.raft_term(i))
        .max()
        .unwrap_or(0)
}

/// The load average over the last minute, as the kernel reports it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// One thread per core spinning until `stop`: a machine whose cores are all busy.
fn load_every_core(stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect()
}

/// Keeps one client writing through host `via` for `secs` seconds, checking the term of
/// every manager every 5 s; prints the leader changes (elections) seen.
fn soak(cluster: &Cluster, rt: &tokio::runtime::Runtime, connector: &impl Connector, secs: u64) {
    let load = setting("BENCH_LOAD", 0) == 1;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = if load {
        load_every_core(stop.clone())
    } else {
        Vec::new()
    };
    let lead = leader(cluster);
    let via = (lead % 3) + 1;
    let first = highest_term(cluster);
    let load_before = load_average();
    let mut client = ControlClient::new(connector.channel(&cluster.host(via).addr));
    let started = Instant::now();
    let (mut writes, mut failed, mut changes) = (0u64, 0u64, Vec::new());
    let mut term = first;
    let mut checked = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        match rt.block_on(write(&mut client, format!("soak-{writes}-{failed}"))) {
            Ok(()) => writes += 1,
            Err(_) => failed += 1,
        }
        if checked.elapsed() >= Duration::from_secs(5) {
            checked = Instant::now();
            let now = highest_term(cluster);
            if now != term {
                changes.push(format!(
                    "term {term} -> {now} at {:.0} s",
                    started.elapsed().as_secs_f64()
                ));
                term = now;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in busy {
        let _ = thread.join();
    }
    let last = highest_term(cluster);
    println!(
        "soak: {secs} s, one client writing through a follower, {}; load average {load_before} \
         at the start, {} at the end",
        if load {
            "plus one busy thread per core (BENCH_LOAD=1)"
        } else {
            "no extra load (BENCH_LOAD=1 adds a busy thread per core)"
        },
        load_average()
    );
    println!(
        "  {writes} writes acknowledged, {failed} failed; leader changes: {} (term {first} -> \
         {last}){}",
        last - first,
        if changes.is_empty() {
            String::new()
        } else {
            format!(": {}", changes.join(", "))
        }
    );
}

/// Scrapes `/metrics` on every address once a second until `stop`; returns the scrapes.
fn scraper(
    addrs: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut scrapes = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            scrapes += addrs.iter().filter(|addr| scrape(addr)).count();
            std::thread::sleep(Duration::from_secs(1));
        }
        scrapes
    })
}

fn main() {
    cli::tls::install_crypto_provider();
    let mut cluster = Cluster::new(3);
    let metrics = setting("BENCH_METRICS", 0) == 1;
    let mut metrics_addrs = Vec::new();
    if metrics {
        for i in 1..=3 {
            let addr = cluster.host(i).addr.clone();
            let (ip, port) = addr.rsplit_once(':').expect("IP:PORT");
            let metrics_addr = format!("{ip}:{}", port.parse::<u16>().expect("port") + 1);
            cluster = cluster.with_daemon_args(i, &["--metrics-addr", &metrics_addr]);
            metrics_addrs.push(metrics_addr);
        }
    }
    cluster.form(3);
    let stop_scraping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraping = metrics.then(|| scraper(metrics_addrs.clone(), stop_scraping.clone()));
    let writes = setting("BENCH_WRITES", 3000);
    let failovers = setting("BENCH_FAILOVERS", 5);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Channels spawn their connection tasks on the current runtime.
    let _guard = rt.enter();
    let connector = Arc::new(cluster.connector(1));
    let lead = leader(&cluster);

    println!("skiff control-plane benchmark: 3 managers on loopback, sled with fsync, mutual TLS");
    println!(
        "machine: {} CPUs, load average {}; {writes} writes (CreateConfig) per row",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let term_before_writes = highest_term(&cluster);
    println!();
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "clients / target", "writes/s", "p50 ms", "p99 ms"
    );
    // The 64-client rows alternate between the leader and a follower, pair after pair, so
    // that both meet the same store sizes and the same moments of the machine; their ratio
    // is issue 20's item 6 (writes through a follower at 90% of the leader's rate or more).
    let pairs = setting("BENCH_PAIRS", 3).max(1);
    let follower = (lead % 3) + 1;
    let mut rows = vec![(1, lead, "leader".to_owned())];
    for pair in 1..=pairs {
        rows.push((64, lead, format!("leader ({pair})")));
        rows.push((64, follower, format!("follower ({pair})")));
    }
    let mut ratios = Vec::new();
    let mut last_leader_rate = 0.0;
    for (clients, target, label) in rows {
        let channel = connector.channel(&cluster.host(target).addr);
        let tag: String = format!("w{clients}{label}")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let (rate, p50, p99) = rt.block_on(throughput(channel, clients, writes, &tag));
        println!(
            "{:<28} {:>10.0} {:>10.2} {:>10.2}",
            format!("{clients} via {label}"),
            rate,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        if clients == 64 && target == lead {
            last_leader_rate = rate;
        } else if clients == 64 {
            ratios.push(rate / last_leader_rate);
        }
    }
    let listed: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.0}%", r * 100.0))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
    println!(
        "64 via follower / 64 via leader, pair by pair: {}; median {:.0}%",
        listed.join(", "),
        median * 100.0
    );

    println!(
        "leader changes during the writes: {}",
        highest_term(&cluster) - term_before_writes
    );

    if let Some(scraping) = scraping {
        stop_scraping.store(true, std::sync::atomic::Ordering::Relaxed);
        let scrapes = scraping.join().expect("scraper");
        println!(
            "metrics served and scraped: {scrapes} scrapes of /metrics, one per manager per second"
        );
        let pid = cluster.pid(lead).expect("the leader runs");
        let n = 2000;
        let per_scrape = cpu_per_scrape(pid, &metrics_addrs[lead - 1], n);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Every manager holds the same store: one scrape a second on each of the three.
        let share = 3.0 * per_scrape.as_secs_f64() / cores as f64;
        println!(
            "a scrape costs the leader {:.3} ms of CPU ({n} scrapes one after another, {} configs \
             in the store); one a second on each manager is {:.3}% of the machine's CPU",
            per_scrape.as_secs_f64() * 1e3,
            3 * writes,
            share * 100.0
        );
    } else {
        println!("metrics not served (BENCH_METRICS=1 serves and scrapes them)");
    }

    println!();
    println!("leader failover: kill -9 of the leader to the first acknowledged write elsewhere");
    let mut times = Vec::new();
    for run in 0..failovers {
        let lead = leader(&cluster);
        let other = (lead % 3) + 1;
        let mut client = ControlClient::new(connector.channel(&cluster.host(other).addr));
        rt.block_on(write(&mut client, format!("warm-{run}")))
            .expect("warm-up write");
        let killed = Instant::now();
        cluster.kill(lead);
        let took = rt.block_on(async {
            let mut i = 0;
            loop {
                i += 1;
                if write(&mut client, format!("failover-{run}-{i}"))
                    .await
                    .is_ok()
                {
                    return killed.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        println!("  run {}: {:.0} ms", run + 1, took.as_secs_f64() * 1e3);
        times.push(took);
        cluster.start(lead);
        std::thread::sleep(Duration::from_secs(3));
    }
    times.sort();
    if let Some(worst) = times.last() {
        println!(
            "  median {:.0} ms, worst {:.0} ms (Docker Swarm with its defaults: 10-20 s)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
    println!();
    let soak_secs = setting("BENCH_SOAK_SECS", 0) as u64;
    if soak_secs > 0 {
        soak(&cluster, &rt, connector.as_ref(), soak_secs);
    } else {
        println!("no soak (BENCH_SOAK_SECS=600 BENCH_LOAD=1: 10 minutes on a loaded machine)");
    }
    println!();
    println!("rerun: cargo build --release --bins && cargo bench -p integration-tests --bench control_plane");
}
