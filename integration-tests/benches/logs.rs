//! Log throughput benchmark: how fast a task can write lines through each logging driver of
//! the containerd runtime, against the same task writing to `/dev/null`, and the CPU the
//! logger (skiffd, started by containerd's shim for each container) spends per 10,000 lines.
//!
//! Each run is one container of the busybox image running `seq 1 N`: the task ends once its
//! last line is in the pipe, which holds at most 64 KiB, so its time from start to exit is
//! the time the logger took to take in (and write, or send) the lines. The `/dev/null` row
//! is `seq 1 N > /dev/null` in the same container; the `true` row is a container that writes
//! nothing, the start and exit every row pays, subtracted before lines per second. The
//! logger's CPU is read from `/proc/PID/stat` (user + system) while it runs, last seen just
//! before it exits (sampled every 10 ms: a run of 500,000 lines takes seconds, so the last
//! sample misses well under 1%). syslog goes to a UDP listener of the benchmark on
//! loopback that counts what arrives.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench logs`
//! (needs root, containerd, runc, docker-registry and skopeo, as the tests do; `LOG_LINES`
//! sets N, 500000 by default).

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_runtime::containerd::{ContainerdConfig, ContainerdRuntime, RegistryOptions};
use agent_runtime::{LogDefaults, Runtime};
use integration_tests::containerd::{busybox_in_registry, registry, socket, unique_namespace};

const RUNS: usize = 3;

/// The logger's CPU so far, in seconds, if a logger of `task_dir` runs.
fn logger_cpu(task_dir: &Path) -> Option<f64> {
    let needle = task_dir.to_string_lossy().into_owned();
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains("logger") || !cmdline.contains(&needle) {
            return None;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / ticks)
    })
}

struct Run {
    seconds: f64,
    logger_cpu: f64,
}

async fn run_once(
    runtime: &ContainerdRuntime,
    state_dir: &Path,
    n: usize,
    id: &str,
    script: &str,
) -> Run {
    let task = proto::Task {
        meta: Some(proto::Meta {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(
            proto::TaskSpec {
                container: Some(proto::ContainerSpec {
                    image: busybox_in_registry().into(),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        script.replace("{N}", &n.to_string()),
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    };
    runtime.prepare(&task).await.expect("prepare");
    let task_dir = state_dir.join("tasks").join(id);
    let started = Instant::now();
    runtime.start(id).await.expect("start");
    let waiting = runtime.wait(id);
    tokio::pin!(waiting);
    let mut cpu = 0.0f64;
    let exit = loop {
        tokio::select! {
            exit = &mut waiting => break exit.expect("wait"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                if let Some(c) = logger_cpu(&task_dir) {
                    cpu = cpu.max(c);
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(exit.code, 0, "{}", exit.message);
    // The logger drains the pipe's last 64 KiB after the exit; keep sampling until it ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(c) = logger_cpu(&task_dir) {
        cpu = cpu.max(c);
        assert!(Instant::now() < deadline, "the logger of {id} did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.remove(id).await.expect("remove");
    Run {
        seconds,
        logger_cpu: cpu,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    cli::tls::install_crypto_provider();
    let n: usize = std::env::var("LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let listener = UdpSocket::bind("127.0.0.1:0").expect("a UDP port on loopback");
    let syslog_address = format!("udp://{}", listener.local_addr().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while listener.recv_from(&mut buf).is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let opts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // (row, driver, options, script): every row but the first two writes N lines to its log.
    let rows: Vec<(&str, &str, BTreeMap<String, String>, &str)> = vec![
        (
            "nothing written (start and exit)",
            "none",
            opts(&[]),
            "true",
        ),
        (
            "/dev/null inside the task",
            "none",
            opts(&[]),
            "seq 1 {N} > /dev/null",
        ),
        ("none", "none", opts(&[]), "seq 1 {N}"),
        (
            "local (10m x 2)",
            "local",
            opts(&[("max-size", "10m")]),
            "seq 1 {N}",
        ),
        (
            "json-file (10m x 3)",
            "json-file",
            opts(&[("max-size", "10m"), ("max-file", "3")]),
            "seq 1 {N}",
        ),
        (
            "syslog (UDP, loopback)",
            "syslog",
            opts(&[("syslog-address", &syslog_address)]),
            "seq 1 {N}",
        ),
    ];

    println!(
        "log throughput: {n} lines (`seq 1 {n}`) from one busybox container, containerd runtime,"
    );
    println!(
        "median of {RUNS} runs; {} cores; `cargo bench -p integration-tests --bench logs`\n",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("| driver | task s | lines/s | logger CPU s | CPU ms per 10k lines |");
    println!("|---|---:|---:|---:|---:|");
    let mut start_cost = 0.0;
    for (i, (row, driver, options, script)) in rows.into_iter().enumerate() {
        let namespace = unique_namespace("bench-logs");
        let dir = tempfile::tempdir().expect("state dir");
        let config = ContainerdConfig {
            socket: socket(),
            namespace: namespace.clone(),
            state_dir: dir.path().join("containers"),
            log: LogDefaults {
                driver: driver.into(),
                options,
            },
            registries: RegistryOptions {
                insecure: vec![registry().addr.clone()],
            },
            logger: integration_tests::bin("skiffd"),
        };
        let runtime = ContainerdRuntime::connect(config.clone())
            .await
            .expect("connect to containerd");
        let before = received.load(Ordering::Relaxed);
        let mut seconds = Vec::new();
        let mut cpu = Vec::new();
        for r in 0..RUNS {
            let run = run_once(
                &runtime,
                &config.state_dir,
                n,
                &format!("logs-{i}-{r}-{}", std::process::id()),
                script,
            )
            .await;
            seconds.push(run.seconds);
            cpu.push(run.logger_cpu);
        }
        let (seconds, cpu) = (median(seconds), median(cpu));
        let writes = script.starts_with("seq");
        if i == 0 {
            start_cost = seconds;
        }
        let lines_per_s = if writes {
            format!("{:.0}", n as f64 / (seconds - start_cost).max(1e-3))
        } else {
            "-".into()
        };
        let per_10k = if script == "seq 1 {N}" {
            format!("{:.1}", cpu * 1000.0 * 10_000.0 / n as f64)
        } else {
            "-".into()
        };
        println!("| {row} | {seconds:.3} | {lines_per_s} | {cpu:.3} | {per_10k} |");
        if driver == "syslog" {
            // Let the last datagrams arrive, then say how many did (UDP may drop).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let got = received.load(Ordering::Relaxed) - before;
            println!(
                "|   syslog datagrams received | | {} of {} | | |",
                got,
                n * RUNS
            );
        }
        integration_tests::containerd::clean_namespace(&namespace);
    }
}
