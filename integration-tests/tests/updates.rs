//! Rolling updates and rollbacks end to end on loopback clusters with the `process` runtime:
//! parallelism, start-first, failure actions (rollback, pause and resume) and a leader
//! failover in the middle of a rollout, all through the CLI.
//!
//! The process runtime ignores the image, so versions differ by their command (`sleep 600`
//! against `sleep 601`), and a bad version is one whose command exits at once (`false`).

use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// The service as skiff's own JSON shows it (`service ls --format json`: `update_status`,
/// `spec_version`; `service inspect` prints Docker's JSON).
fn service(cluster: &Cluster, host: usize, name: &str) -> Value {
    let filter = format!("name={name}");
    let out = cluster.ok(
        host,
        &["service", "ls", "--format", "json", "--filter", &filter],
    );
    let all: Vec<Value> = serde_json::from_str(&out).expect("service ls JSON");
    all.into_iter()
        .find(|s| s["spec"]["name"] == name)
        .unwrap_or_else(|| panic!("service {name} listed: {out}"))
}

fn update_state(cluster: &Cluster, host: usize, name: &str) -> (String, String) {
    let s = service(cluster, host, name);
    (
        s["update_status"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        s["update_status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

fn args(task: &Value) -> Vec<String> {
    task["spec"]["container"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn is(task: &Value, field: &str, state: &str) -> bool {
    let v = match field {
        "desired" => &task["desired_state"],
        _ => &task["status"]["state"],
    };
    v.as_str() == Some(state)
}

/// The args of the tasks meant to run that do, by slot.
fn running(tasks: &[Value]) -> Vec<(u64, Vec<String>)> {
    let mut r: Vec<(u64, Vec<String>)> = tasks
        .iter()
        .filter(|t| {
            is(t, "desired", "TASK_STATE_RUNNING") && is(t, "observed", "TASK_STATE_RUNNING")
        })
        .map(|t| (t["slot"].as_u64().unwrap_or(0), args(t)))
        .collect();
    r.sort();
    r
}

/// Waits until exactly `n` tasks are meant to run, and all run `want`.
fn wait_all_on(cluster: &Cluster, host: usize, name: &str, n: usize, want: &[&str]) {
    wait_until(
        &format!("{n} tasks of {name} running {want:?}"),
        CONVERGE,
        || {
            let all = cluster.tasks(host, name);
            let active = all
                .iter()
                .filter(|t| is(t, "desired", "TASK_STATE_RUNNING"))
                .count();
            let r = running(&all);
            (active == n && r.len() == n && r.iter().all(|(_, a)| a == want)).then_some(())
        },
    );
}

fn create(cluster: &Cluster, host: usize, name: &str, replicas: &str, extra: &[&str]) {
    let mut a = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        replicas,
        "--restart-delay",
        "1s",
    ];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["busybox", "sleep", "600"]);
    cluster.ok(host, &a);
    let n: usize = replicas.parse().unwrap();
    wait_all_on(cluster, host, name, n, &["sleep", "600"]);
}

/// Samples the tasks until the rollout ends; returns the fewest running tasks seen.
fn fewest_running_during_rollout(cluster: &Cluster, host: usize, name: &str) -> usize {
    let mut fewest = usize::MAX;
    wait_until("the rollout to complete", CONVERGE, || {
        fewest = fewest.min(running(&cluster.tasks(host, name)).len());
        let (state, _) = update_state(cluster, host, name);
        (state == "UPDATE_STATE_COMPLETED").then_some(())
    });
    fewest
}

/// A task's last status time (proto3 JSON writes 64-bit numbers as strings).
fn status_time(task: &Value) -> i64 {
    let t = &task["status"]["timestamp"];
    t.as_i64()
        .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// From the task history: the most slots down at once, a slot being down at least from
/// when its `old` task stopped to when its `new` one started running; and how many slots
/// had both tasks.
fn most_down_at_once(all: &[Value], old: &[&str], new: &[&str]) -> (usize, usize) {
    let mut edges = Vec::new();
    for slot in 1..=6 {
        let at = |want: &[&str], state: &str| {
            all.iter()
                .find(|t| {
                    t["slot"].as_u64() == Some(slot) && args(t) == want && is(t, "observed", state)
                })
                .map(status_time)
        };
        if let (Some(stopped), Some(running)) = (
            at(old, "TASK_STATE_SHUTDOWN"),
            at(new, "TASK_STATE_RUNNING"),
        ) {
            edges.push((stopped, 1i32));
            edges.push((running, -1));
        }
    }
    let seen = edges.len() / 2;
    // Ends sort before starts at the same instant.
    edges.sort();
    let (mut down, mut most) = (0, 0);
    for (_, d) in edges {
        down += d;
        most = most.max(down);
    }
    (most as usize, seen)
}

#[test]
fn parallelism_bounds_the_tasks_down_and_history_keeps_the_old_ones() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    create(
        &cluster,
        1,
        "web",
        "6",
        &["--update-parallelism", "2", "--update-monitor", "1s"],
    );
    cluster.ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "busybox:v2",
            "--args",
            "sleep 601",
            "web",
        ],
    );
    let fewest = fewest_running_during_rollout(&cluster, 1, "web");
    assert!(fewest >= 4, "{fewest} of 6 tasks ran at one point");
    wait_all_on(&cluster, 1, "web", 6, &["sleep", "601"]);

    // Every slot's history holds its old task, shut down.
    let all = cluster.tasks(1, "web");
    let (most, seen) = most_down_at_once(&all, &["sleep", "600"], &["sleep", "601"]);
    assert_eq!(seen, 6, "every slot's old and new task are in the history");
    assert!(most <= 2, "{most} slots were down at once");
    for slot in 1..=6 {
        let old: Vec<&Value> = all
            .iter()
            .filter(|t| t["slot"].as_u64() == Some(slot) && args(t) == ["sleep", "600"])
            .collect();
        assert!(
            !old.is_empty()
                && old.iter().all(|t| is(t, "desired", "TASK_STATE_SHUTDOWN")
                    && is(t, "observed", "TASK_STATE_SHUTDOWN")),
            "slot {slot}: {old:?}"
        );
    }
    let pretty = cluster.ok(1, &["service", "inspect", "--pretty", "web"]);
    assert!(
        pretty.contains("completed") && pretty.contains("busybox:v2"),
        "{pretty}"
    );

    // `service rollback` goes back to the previous spec, and follows it to the end.
    cluster.ok(1, &["service", "rollback", "web"]);
    assert_eq!(
        update_state(&cluster, 1, "web").0,
        "UPDATE_STATE_ROLLBACK_COMPLETED"
    );
    wait_all_on(&cluster, 1, "web", 6, &["sleep", "600"]);
}

#[test]
fn start_first_keeps_every_replica_running() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    create(&cluster, 1, "api", "3", &["--update-order", "start-first"]);
    cluster.ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--args",
            "sleep 601",
            "--update-monitor",
            "1s",
            "api",
        ],
    );
    let fewest = fewest_running_during_rollout(&cluster, 1, "api");
    assert!(fewest >= 3, "only {fewest} of 3 tasks ran at one point");
    wait_all_on(&cluster, 1, "api", 3, &["sleep", "601"]);
}

#[test]
fn a_failing_version_rolls_back_by_itself() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    create(&cluster, 1, "web", "2", &[]);
    // Without --detach the command follows the rollout and fails with the reason.
    let err = cluster.fails(
        1,
        &[
            "service",
            "update",
            "--args",
            "false",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "2s",
            "web",
        ],
    );
    assert!(err.contains("was rolled back"), "{err}");
    let (state, message) = update_state(&cluster, 1, "web");
    assert_eq!(state, "UPDATE_STATE_ROLLBACK_COMPLETED", "{message}");
    assert!(
        message.contains("rolled back due to failure or early termination of task"),
        "{message}"
    );
    wait_all_on(&cluster, 1, "web", 2, &["sleep", "600"]);
}

#[test]
fn failure_action_pause_pauses_and_an_update_resumes() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    create(&cluster, 1, "web", "2", &["--update-monitor", "2s"]);
    let err = cluster.fails(1, &["service", "update", "--args", "false", "web"]);
    assert!(err.contains("paused"), "{err}");
    let (state, message) = update_state(&cluster, 1, "web");
    assert_eq!(state, "UPDATE_STATE_PAUSED");
    assert!(message.contains("paused due to failure"), "{message}");
    let pretty = cluster.ok(1, &["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("paused due to failure"), "{pretty}");

    // A fixed version resumes the rollout, and the command succeeds.
    cluster.ok(1, &["service", "update", "--args", "sleep 601", "web"]);
    assert_eq!(update_state(&cluster, 1, "web").0, "UPDATE_STATE_COMPLETED");
    wait_all_on(&cluster, 1, "web", 2, &["sleep", "601"]);
}

#[test]
fn a_rollout_survives_a_leader_failover() {
    let mut cluster = Cluster::new(3);
    cluster.form(3);
    create(
        &cluster,
        1,
        "web",
        "4",
        &[
            "--update-parallelism",
            "1",
            "--update-delay",
            "2s",
            "--update-monitor",
            "1s",
        ],
    );
    let leader = (1..=3)
        .find(|i| {
            cluster
                .ok(*i, &["node", "ls"])
                .lines()
                .any(|l| l.contains(&format!("host{i}")) && l.contains("Leader") && l.contains('*'))
        })
        .expect("a leader");
    let other = (1..=3).find(|i| *i != leader).unwrap();
    cluster.ok(
        other,
        &[
            "service",
            "update",
            "--detach",
            "--args",
            "sleep 601",
            "web",
        ],
    );
    wait_until("the first new task running", CONVERGE, || {
        running(&cluster.tasks(other, "web"))
            .iter()
            .any(|(_, a)| a == &["sleep", "601"])
            .then_some(())
    });
    assert_eq!(
        update_state(&cluster, other, "web").0,
        "UPDATE_STATE_UPDATING",
        "the leader must die mid-rollout"
    );
    cluster.kill(leader);
    wait_until("the rollout to complete", CONVERGE, || {
        // Commands fail while a new leader is elected.
        let out = cluster.skiff(other, &["service", "inspect", "web"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        // Docker's JSON, as `service inspect` prints it.
        (v[0]["UpdateStatus"]["State"] == "completed").then_some(())
    });
    // Tasks on the killed manager's node are replaced elsewhere; all run the new version.
    wait_all_on(&cluster, other, "web", 4, &["sleep", "601"]);
}
