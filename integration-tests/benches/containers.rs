//! Container start benchmark: the containerd runtime under skiffd against `ctr run -d` of
//! the same busybox image on the same containerd (skiff's test containerd, overlayfs, runc).
//!
//! - latency: one task at a time, from the task's creation by the manager to its report
//!   of RUNNING (`Task.meta.created_at` to `TaskStatus.running_since`: scheduling,
//!   dispatch, container create and start); the baseline is one `ctr run -d` at a time,
//!   from the command's start to its exit (the container runs then).
//! - burst: 100 replicas on one node, from `service create` to all running; the baseline is
//!   100 `ctr run -d` started together.
//!
//! Run: `cargo build --release --bins && cargo bench -p integration-tests --bench containers`
//! (needs root, containerd, runc, docker-registry and skopeo, as the tests do).

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::containerd::{
    busybox_in_registry, clean_namespace, socket, unique_namespace,
};
use integration_tests::{task_state, wait_until, Cluster};

const SAMPLES: usize = 20;
const BURST: usize = 100;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ctr(namespace: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ctr");
    c.arg("-a").arg(socket()).args(["-n", namespace]).args(args);
    c
}

/// `ctr run -d` latencies and the time for a burst of them.
fn baseline(image: &str) -> (Vec<f64>, f64) {
    let namespace = unique_namespace("bench-ctr");
    let pulled = ctr(&namespace, &["images", "pull", "--plain-http", image])
        .output()
        .expect("ctr pull");
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let mut latencies = Vec::new();
    for i in 0..SAMPLES {
        let started = Instant::now();
        let out = ctr(
            &namespace,
            &["run", "-d", image, &format!("one{i}"), "sleep", "600"],
        )
        .output()
        .expect("ctr run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    clean_namespace(&namespace);
    let namespace = unique_namespace("bench-ctr");
    ctr(&namespace, &["images", "pull", "--plain-http", image])
        .output()
        .expect("ctr pull");
    let started = Instant::now();
    let children: Vec<_> = (0..BURST)
        .map(|i| {
            ctr(
                &namespace,
                &["run", "-d", image, &format!("burst{i}"), "sleep", "600"],
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ctr run")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("ctr").success());
    }
    let burst = started.elapsed().as_secs_f64();
    clean_namespace(&namespace);
    latencies.sort_by(f64::total_cmp);
    (latencies, burst)
}

fn skiff(image: &str) -> (Vec<f64>, f64) {
    let mut cluster = Cluster::new(1).with_containerd();
    cluster.form(1);
    // Warm the image in: the first task pulls it.
    cluster.ok(
        1,
        &[
            "service", "create", "--name", "warm", "--detach", image, "sleep", "600",
        ],
    );
    cluster.wait_running(1, "warm", 1, Duration::from_secs(60));
    cluster.ok(1, &["service", "rm", "warm"]);
    let mut latencies = Vec::new();
    for i in 0..SAMPLES {
        let name = format!("one{i}");
        cluster.ok(
            1,
            &[
                "service", "create", "--name", &name, "--detach", image, "sleep", "600",
            ],
        );
        let task = wait_until("the task runs", Duration::from_secs(60), || {
            cluster
                .tasks(1, &name)
                .into_iter()
                .find(|t| task_state(t, "observed") == "TASK_STATE_RUNNING")
        });
        let created = task["meta"]["created_at"].as_i64().unwrap_or(0);
        let running = task["status"]["running_since"].as_i64().unwrap_or(0);
        latencies.push((running - created) as f64);
        cluster.ok(1, &["service", "rm", &name]);
    }
    let started = Instant::now();
    let replicas = BURST.to_string();
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "burst",
            "--detach",
            "--replicas",
            &replicas,
            image,
            "sleep",
            "600",
        ],
    );
    cluster.wait_running(1, "burst", BURST, Duration::from_secs(300));
    let burst = started.elapsed().as_secs_f64();
    cluster.ok(1, &["service", "rm", "burst"]);
    latencies.sort_by(f64::total_cmp);
    (latencies, burst)
}

fn main() {
    cli::tls::install_crypto_provider();
    let image = busybox_in_registry();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("container starts: busybox image from a loopback registry, containerd 1.6 + runc, overlayfs, {cores} cores");
    let (ctr_lat, ctr_burst) = baseline(image);
    let (skiff_lat, skiff_burst) = skiff(image);
    println!(
        "{:<44} {:>10} {:>10} {:>16}",
        "",
        "p50 ms",
        "p99 ms",
        &format!("{BURST} at once s")
    );
    for (label, lat, burst) in [
        ("ctr run -d (baseline)", &ctr_lat, ctr_burst),
        (
            "skiff task: created -> RUNNING (containerd)",
            &skiff_lat,
            skiff_burst,
        ),
    ] {
        println!(
            "{label:<44} {:>10.0} {:>10.0} {:>16.2}",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            burst
        );
    }
    println!(
        "ratio skiff/ctr: p50 {:.2}x, burst {:.2}x",
        percentile(&skiff_lat, 0.5) / percentile(&ctr_lat, 0.5),
        skiff_burst / ctr_burst
    );
    println!("rerun: cargo build --release --bins && cargo bench -p integration-tests --bench containers");
}
