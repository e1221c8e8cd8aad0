//! Rolling update benchmark: how long `skiff service update` takes to roll 10 replicas, from
//! the command's start to its exit (it follows the rollout until the manager says
//! "completed", after the final monitor window), on a loopback cluster (1 manager, 2
//! workers, runtime `process`).
//!
//! The tasks ignore SIGTERM (as busybox httpd does as PID 1), so each stop waits out the stop
//! grace period: the case Docker Swarm was measured on. One more row uses tasks that stop
//! at once, to show the updater's own overhead.
//!
//! Run: `cargo build --bins && cargo bench --profile dev -p integration-tests --bench updates`
//! (the times are dominated by grace periods, monitor windows and process starts, not CPU).

use std::time::Instant;

use integration_tests::{wait_until, Cluster};

const REPLICAS: &str = "10";
/// A task that ignores SIGTERM, so it stops only at the end of its grace period.
const STUBBORN: &[&str] = &["sh", "-c", "trap '' TERM; sleep 600; :"];
const STUBBORN_V2: &str = "sh -c \"trap '' TERM; sleep 601; :\"";

struct Case {
    label: &'static str,
    parallelism: &'static str,
    order: &'static str,
    grace: &'static str,
    v1: &'static [&'static str],
    v2: &'static str,
}

fn running(cluster: &Cluster, name: &str) -> usize {
    let out = cluster.ok(
        1,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "json",
            name,
        ],
    );
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&out).expect("service ps JSON");
    tasks
        .iter()
        .filter(|t| t["status"]["state"] == "TASK_STATE_RUNNING")
        .count()
}

fn main() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    println!("skiff rolling update benchmark: 1 manager + 2 workers on loopback, runtime process");
    println!("{REPLICAS} replicas; time from `service update` to its exit (update completed)");
    println!();
    println!("{:<44} {:>10} {:>10}", "case", "seconds", "floor s");
    let cases = [
        Case {
            label: "parallelism 1, stop-first, SIGTERM ignored",
            parallelism: "1",
            order: "stop-first",
            grace: "10s",
            v1: STUBBORN,
            v2: STUBBORN_V2,
        },
        Case {
            label: "parallelism 2, start-first, SIGTERM ignored",
            parallelism: "2",
            order: "start-first",
            grace: "10s",
            v1: STUBBORN,
            v2: STUBBORN_V2,
        },
        Case {
            label: "parallelism 1, stop-first, stops at once",
            parallelism: "1",
            order: "stop-first",
            grace: "10s",
            v1: &["sleep", "600"],
            v2: "sleep 601",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let name = format!("roll{i}");
        let mut create = vec![
            "service",
            "create",
            "--detach",
            "--name",
            &name,
            "--replicas",
            REPLICAS,
            "--stop-grace-period",
            case.grace,
            "--update-parallelism",
            case.parallelism,
            "--update-order",
            case.order,
            "busybox",
        ];
        create.extend_from_slice(case.v1);
        cluster.ok(1, &create);
        wait_until(
            "every replica running",
            std::time::Duration::from_secs(120),
            || (running(&cluster, &name) == 10).then_some(()),
        );
        let started = Instant::now();
        cluster.ok(
            1,
            &["service", "update", "--quiet", "--args", case.v2, &name],
        );
        let took = started.elapsed();
        // Stop-first: every slot waits for its old task's stop; then one monitor window.
        // Start-first: the old tasks stop in the background; each batch waits for a start.
        let slots: f64 = 10.0 / case.parallelism.parse::<f64>().unwrap();
        let stop = if case.order == "stop-first" && case.v1 == STUBBORN {
            10.0
        } else {
            0.0
        };
        let floor = slots * stop + 5.0;
        println!(
            "{:<44} {:>10.1} {:>10.1}",
            case.label,
            took.as_secs_f64(),
            floor
        );
        cluster.ok(1, &["service", "rm", &name]);
    }
}
