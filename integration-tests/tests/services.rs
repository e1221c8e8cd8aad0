//! Services end to end on loopback clusters with the `process` runtime: placement, scaling,
//! failures, restart policy, jobs, global services, logs and bad input, all through the CLI.

use std::collections::HashMap;
use std::time::Duration;

use integration_tests::{task_state, wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(40);

fn wait_running(cluster: &Cluster, host: usize, service: &str, n: usize) -> Vec<(u64, String)> {
    cluster.wait_running(host, service, n, CONVERGE)
}

fn per_node(placed: &[(u64, String)]) -> Vec<usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, node) in placed {
        *counts.entry(node).or_default() += 1;
    }
    let mut v: Vec<usize> = counts.into_values().collect();
    v.sort();
    v
}

fn node_id(cluster: &Cluster, host: usize, hostname: &str) -> String {
    let out = cluster.ok(host, &["node", "inspect", "--format", "json", hostname]);
    let v: Value = serde_json::from_str(&out).expect("node inspect JSON");
    v[0]["ID"].as_str().expect("node id").to_owned()
}

#[test]
fn replicas_spread_scale_and_survive_a_leader_change_mid_scale() {
    let mut cluster = Cluster::new(5);
    cluster.form(3);
    cluster.ok(
        2,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "5",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let placed = wait_running(&cluster, 1, "web", 5);
    assert_eq!(per_node(&placed), vec![1, 1, 1, 1, 1], "{placed:?}");

    cluster.ok(3, &["service", "scale", "--detach", "web=10"]);
    let placed = wait_running(&cluster, 2, "web", 10);
    assert_eq!(per_node(&placed), vec![2, 2, 2, 2, 2], "{placed:?}");
    cluster.ok(1, &["service", "scale", "--detach", "web=3"]);
    wait_running(&cluster, 1, "web", 3);

    // Kill the leader right after asking for more replicas.
    let leader = (1..=3)
        .find(|i| {
            cluster
                .ok(*i, &["node", "ls"])
                .lines()
                .any(|l| l.contains(&format!("host{i}")) && l.contains("Leader") && l.contains('*'))
        })
        .expect("a leader");
    let other = (1..=3).find(|i| *i != leader).unwrap();
    cluster.ok(other, &["service", "scale", "--detach", "web=8"]);
    cluster.kill(leader);
    let placed = wait_running(&cluster, other, "web", 8);
    let mut slots: Vec<u64> = placed.iter().map(|(s, _)| *s).collect();
    slots.sort();
    assert_eq!(
        slots,
        (1..=8).collect::<Vec<_>>(),
        "no lost or duplicated slots"
    );
}

#[test]
fn twenty_concurrent_scales_all_succeed_and_one_of_them_wins() {
    let mut cluster = Cluster::new(2);
    cluster.form(2);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "0",
            "busybox",
            "sleep",
            "600",
        ],
    );
    // Each call sets an absolute count: none may fail because another changed the
    // service first (before, 13 of 20 failed with "changed by someone else").
    let cluster = &cluster;
    std::thread::scope(|scope| {
        let calls: Vec<_> = (1..=20)
            .map(|n| {
                let host = 1 + n % 2;
                let call = scope.spawn(move || {
                    cluster.skiff(host, &["service", "scale", "--detach", &format!("web={n}")])
                });
                (host, call)
            })
            .collect();
        for (host, call) in calls {
            let out = call.join().unwrap();
            assert!(
                out.status.success(),
                "scale on host {host}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    let out = cluster.ok(1, &["service", "inspect", "--format", "json", "web"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let replicas = v[0]["Spec"]["Mode"]["Replicated"]["Replicas"]
        .as_u64()
        .unwrap();
    assert!((1..=20).contains(&replicas), "{replicas}");
}

#[test]
fn a_dead_worker_is_replaced_and_drain_moves_tasks() {
    let mut cluster = Cluster::new(4);
    cluster.form(1);
    // Keep tasks off the manager so the workers carry them.
    cluster.ok(1, &["node", "update", "--availability", "drain", "host1"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "app",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let placed = wait_running(&cluster, 1, "app", 3);
    let host4 = node_id(&cluster, 1, "host4");
    assert!(placed.iter().any(|(_, n)| *n == host4));

    cluster.kill(4);
    wait_until("the dead worker's task running elsewhere", CONVERGE, || {
        let placed = wait_running(&cluster, 1, "app", 3);
        placed.iter().all(|(_, n)| *n != host4).then_some(())
    });

    let host3 = node_id(&cluster, 1, "host3");
    cluster.ok(1, &["node", "update", "--availability", "drain", "host3"]);
    wait_until(
        "the drained worker's tasks running elsewhere",
        CONVERGE,
        || {
            let placed = wait_running(&cluster, 1, "app", 3);
            placed
                .iter()
                .all(|(_, n)| *n != host3 && *n != host4)
                .then_some(())
        },
    );
}

#[test]
fn constraints_reservations_and_pending_reasons() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "east",
            "--constraint",
            "node.labels.zone==east",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let reason = wait_until("a pending reason", CONVERGE, || {
        let t = cluster.tasks(1, "east");
        let err = t.first()?["status"]["err"].as_str()?.to_owned();
        err.contains("no suitable node").then_some(err)
    });
    assert!(reason.contains("node.labels.zone==east"), "{reason}");
    let ps = cluster.ok(1, &["service", "ps", "east"]);
    assert!(ps.contains("no suitable node"), "{ps}");

    cluster.ok(1, &["node", "update", "--label-add", "zone=east", "host2"]);
    let placed = wait_running(&cluster, 1, "east", 1);
    assert_eq!(placed[0].1, node_id(&cluster, 1, "host2"));

    // More memory than any node has.
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "big",
            "--reserve-memory",
            "100000G",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let reason = wait_until("an insufficient-memory reason", CONVERGE, || {
        let t = cluster.tasks(1, "big");
        let err = t.first()?["status"]["err"].as_str()?.to_owned();
        err.contains("memory").then_some(err)
    });
    assert!(reason.contains("no suitable node"), "{reason}");
}

#[test]
fn restart_policy_limits_and_jobs_run_to_completion() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "flaky",
            "--restart-condition",
            "on-failure",
            "--restart-max-attempts",
            "2",
            "--restart-delay",
            "100ms",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    // One run and two restarts, then the slot stays empty.
    wait_until("three failed attempts", CONVERGE, || {
        let t = cluster.tasks(1, "flaky");
        let failed = t
            .iter()
            .filter(|t| task_state(t, "observed") == "TASK_STATE_FAILED")
            .count();
        (failed == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let t = cluster.tasks(1, "flaky");
    assert_eq!(t.len(), 3, "no fourth attempt: {t:?}");
    assert!(
        t.iter().all(|t| t["status"]["err"]
            .as_str()
            .unwrap_or("")
            .contains("exit (3)")),
        "{t:?}"
    );

    // A changed spec starts afresh, as in Docker: `update --force` gives the slot a run and
    // two restarts again.
    cluster.ok(1, &["service", "update", "--detach", "--force", "flaky"]);
    let failed_of = |version: u64| {
        let t = cluster.tasks(1, "flaky");
        t.iter()
            .filter(|t| {
                t["spec_version"].as_u64() == Some(version)
                    && task_state(t, "observed") == "TASK_STATE_FAILED"
            })
            .count()
    };
    wait_until("three failed attempts of the new spec", CONVERGE, || {
        (failed_of(2) == 3).then_some(())
    });
    // Scaled to none, the slot goes away with its tasks; scaled back, it starts afresh too.
    cluster.ok(1, &["service", "scale", "--detach", "flaky=0"]);
    wait_until("the slot gone", CONVERGE, || {
        cluster.tasks(1, "flaky").is_empty().then_some(())
    });
    cluster.ok(1, &["service", "scale", "--detach", "flaky=1"]);
    wait_until("three failed attempts after scaling up", CONVERGE, || {
        (failed_of(2) == 3).then_some(())
    });

    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "batch",
            "--mode",
            "replicated-job",
            "--replicas",
            "4",
            "--max-concurrent",
            "2",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2",
        ],
    );
    wait_until("four completed job tasks", CONVERGE, || {
        let t = cluster.tasks(1, "batch");
        let done = t
            .iter()
            .filter(|t| task_state(t, "observed") == "TASK_STATE_COMPLETE")
            .count();
        (done == 4).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cluster.tasks(1, "batch").len(),
        4,
        "completed jobs are not restarted"
    );
}

#[test]
fn global_services_follow_nodes() {
    let mut cluster = Cluster::new(4);
    cluster.start_all();
    cluster.init(1);
    cluster.join(2, "worker", 1);
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "agent", "--mode", "global", "busybox",
            "sleep", "600",
        ],
    );
    wait_running(&cluster, 1, "agent", 2);

    for i in 3..=4 {
        cluster.join(i, "worker", 1);
    }
    wait_running(&cluster, 1, "agent", 4);
    cluster.ok(1, &["node", "update", "--availability", "drain", "host3"]);
    wait_running(&cluster, 1, "agent", 3);
    cluster.ok(4, &["swarm", "leave"]);
    wait_until("host4 down", CONVERGE, || {
        let out = cluster.ok(1, &["node", "ls"]);
        out.lines()
            .any(|l| l.contains("host4") && l.contains("Down"))
            .then_some(())
    });
    wait_running(&cluster, 1, "agent", 2);
}

#[test]
fn service_logs_come_from_every_node() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "talker",
            "--replicas",
            "3",
            "busybox",
            "sh",
            "-c",
            "echo hello from $(hostname) task; sleep 600",
        ],
    );
    let placed = wait_running(&cluster, 1, "talker", 3);
    assert_eq!(per_node(&placed), vec![1, 1, 1]);
    let logs = wait_until("logs of three tasks", CONVERGE, || {
        let out = cluster.ok(1, &["service", "logs", "talker"]);
        (out.lines().filter(|l| l.contains("hello from")).count() == 3).then_some(out)
    });
    for host in ["host1", "host2", "host3"] {
        assert!(
            logs.contains(&format!("@{host}")),
            "a line from {host}: {logs}"
        );
    }
    assert!(logs.lines().all(|l| l.starts_with("talker.")), "{logs}");
}

#[test]
fn bad_service_input_is_refused_and_changes_nothing() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "ok", "busybox", "sleep", "600",
        ],
    );
    let cases: &[&[&str]] = &[
        &["service", "scale", "nosuch=3"],
        &["service", "scale", "ok=-1"],
        &["service", "scale", "ok=many"],
        &["service", "create", "--replicas", "-2", "busybox"],
        &[
            "service",
            "create",
            "--constraint",
            "node.labels.zone=east",
            "busybox",
        ],
        &[
            "service",
            "create",
            "--constraint",
            "node.lables.zone==east",
            "busybox",
        ],
        &["service", "create", "--restart-delay", "soon", "busybox"],
        &["service", "create", "--name", "ok", "busybox"],
        &["service", "create", "--name", "bad name!", "busybox"],
        &["service", "rm", "nosuch"],
        &["service", "ps", "nosuch"],
        &["service", "inspect", "nosuch"],
        &["service", "logs", "nosuch"],
        // The cluster's own ports, and references no registry could serve.
        &["service", "create", "-p", "2377:80", "busybox"],
        &["service", "create", "-p", "4789:80/udp", "busybox"],
        &["service", "update", "--publish-add", "2377:80", "ok"],
        &["service", "create", "UPPER/Case:tag"],
        &["service", "create", "BAD//ref"],
        &["service", "create", "busybox@sha256:abc"],
        &["service", "update", "--image", "UPPER/Case:tag", "ok"],
        &[
            "service",
            "create",
            "--restart-delay",
            "99999999999h",
            "busybox",
        ],
        &["service", "create", "--limit-memory", "1k", "busybox"],
    ];
    for args in cases {
        let err = cluster.fails(1, args);
        assert!(
            !err.contains("status:") && !err.contains("code:"),
            "`skiff {}` said: {err}",
            args.join(" ")
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one sentence from `skiff {}`: {err}",
            args.join(" ")
        );
    }
    let out = cluster.ok(1, &["service", "ls", "-q"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    wait_running(&cluster, 1, "ok", 1);
}

#[test]
fn secrets_and_configs_are_stored_and_secret_data_never_shown() {
    let mut cluster = Cluster::new(2);
    cluster.form(2);
    let file = cluster.dir().join("payload");
    std::fs::write(&file, b"s3cr3t-value").unwrap();
    let path = file.to_str().unwrap();
    let id = cluster.ok(1, &["secret", "create", "db-password", path]);
    assert_eq!(id.trim().len(), 25, "{id}");
    cluster.ok(
        2,
        &[
            "config",
            "create",
            "--label",
            "env=prod",
            "app-config",
            path,
        ],
    );
    // Both managers see them; a secret's data never comes back.
    for host in 1..=2 {
        let ls = cluster.ok(host, &["secret", "ls"]);
        assert!(ls.contains("db-password"), "{ls}");
        let inspect = cluster.ok(host, &["secret", "inspect", "db-password"]);
        assert!(
            !inspect.contains("s3cr3t") && !inspect.contains("czNjcjN0"),
            "{inspect}"
        );
        let configs = cluster.ok(host, &["config", "ls", "--format", "json"]);
        assert!(
            configs.contains("app-config") && configs.contains("prod"),
            "{configs}"
        );
    }
    for (args, expect) in [
        (
            vec!["secret", "create", "db-password", path],
            "already exists",
        ),
        (
            vec!["secret", "create", "bad name", path],
            "invalid secret name",
        ),
        (
            vec!["config", "create", "empty", "/nonexistent/file"],
            "cannot read",
        ),
        (vec!["secret", "rm", "nosuch"], "not found"),
    ] {
        let err = cluster.fails(1, &args);
        assert!(
            err.contains(expect),
            "`skiff {}` said: {err}",
            args.join(" ")
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    cluster.ok(1, &["secret", "rm", "db-password"]);
    cluster.ok(2, &["config", "rm", "app-config"]);
    assert_eq!(cluster.ok(1, &["secret", "ls", "-q"]).trim(), "");
    assert_eq!(cluster.ok(1, &["config", "ls", "-q"]).trim(), "");
}

#[test]
fn a_worker_leaves_in_one_grace_period_however_many_tasks_ignore_sigterm() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    // Ten tasks on the worker that ignore SIGTERM: each is killed only at the end of its
    // grace period.
    let grace = Duration::from_secs(5);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "stubborn",
            "--replicas",
            "10",
            "--constraint",
            "node.hostname==host2",
            "--stop-grace-period",
            "5s",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 1; done",
        ],
    );
    wait_running(&cluster, 1, "stubborn", 10);
    let started = std::time::Instant::now();
    let out = cluster.skiff(2, &["swarm", "leave"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Stopped together, not one grace period after another (ten of them before).
    assert!(took >= grace, "the tasks had their grace period: {took:?}");
    assert!(took < 2 * grace, "left in {took:?}");
    assert!(
        stderr.contains("Stopping 10 task(s)"),
        "says what it waits for: {stderr}"
    );
}

#[test]
fn secrets_roll_with_the_service_and_are_refused_when_unknown_in_use_or_too_big() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    for (name, data) in [("first", b"one-1".as_slice()), ("second", b"two-2")] {
        let file = cluster.dir().join(name);
        std::fs::write(&file, data).unwrap();
        cluster.ok(1, &["secret", "create", name, file.to_str().unwrap()]);
    }
    let big = cluster.dir().join("big");
    std::fs::write(&big, vec![b'x'; 600 * 1024]).unwrap();
    let err = cluster.fails(1, &["secret", "create", "big", big.to_str().unwrap()]);
    assert!(err.contains("500 KiB"), "{err}");
    let err = cluster.fails(
        1,
        &[
            "service", "create", "--detach", "--name", "app", "--secret", "nosuch", "busybox",
            "sleep", "600",
        ],
    );
    assert!(err.contains("secret nosuch not found"), "{err}");
    assert!(cluster.ok(1, &["service", "ls", "-q"]).trim().is_empty());

    // A process task finds its secrets below SKIFF_TASK_FILES, at their targets' paths.
    let script = "for s in first second; do [ -f \"$SKIFF_TASK_FILES/run/secrets/$s\" ] && echo has-$s; done; exec sleep 600";
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "app", "--secret", "first", "busybox", "sh",
            "-c", script,
        ],
    );
    wait_running(&cluster, 1, "app", 1);
    let first = cluster.running_tasks(1, "app")[0].id.clone();
    let files = |task: &str, secret: &str| {
        agent_runtime::task_files_dir(task)
            .join("run/secrets")
            .join(secret)
            .exists()
    };
    assert!(files(&first, "first") && !files(&first, "second"));
    wait_until("the task's report", CONVERGE, || {
        cluster
            .ok(1, &["service", "logs", "app"])
            .contains("has-first")
            .then_some(())
    });
    let err = cluster.fails(1, &["secret", "rm", "first"]);
    assert!(err.contains("in use by service app"), "{err}");

    // Swapping one secret for another rolls the task.
    cluster.ok(
        1,
        &[
            "service",
            "update",
            "--detach",
            "--secret-rm",
            "first",
            "--secret-add",
            "second",
            "app",
        ],
    );
    let second = wait_until("a new task with the second secret", CONVERGE, || {
        let running = cluster.running_tasks(1, "app");
        (running.len() == 1 && running[0].id != first).then(|| running[0].id.clone())
    });
    assert!(files(&second, "second") && !files(&second, "first"));
    wait_until("the old task's files removed", CONVERGE, || {
        (!agent_runtime::task_files_dir(&first).exists()).then_some(())
    });
    cluster.ok(1, &["secret", "rm", "first"]);
}

#[test]
fn a_secret_s_bytes_appear_in_no_log_even_at_trace_level() {
    let mut cluster = Cluster::new(2).with_log_filter("trace");
    cluster.form(1);
    let marker = "n0-l0g-s3cr3t-5c1f";
    let file = cluster.dir().join("secret");
    std::fs::write(&file, marker).unwrap();
    let mut said = cluster.ok(1, &["secret", "create", "quiet", file.to_str().unwrap()]);
    said += &cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "app",
            "--replicas",
            "2",
            "--secret",
            "quiet",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_running(&cluster, 1, "app", 2);
    for args in [
        vec!["service", "inspect", "app"],
        vec!["service", "inspect", "--pretty", "app"],
        vec!["secret", "inspect", "quiet"],
        vec!["secret", "ls", "--format", "json"],
    ] {
        said += &cluster.ok(1, &args);
    }
    said += &cluster.fails(1, &["secret", "rm", "quiet"]);
    cluster.ok(1, &["service", "rm", "app"]);
    cluster.ok(1, &["secret", "rm", "quiet"]);
    assert!(!said.contains(marker), "the CLI printed the secret: {said}");
    // As text, or as the list of byte values a derived Debug prints.
    let as_numbers = marker
        .bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    for host in 1..=2 {
        let log = cluster.log(host);
        assert!(log.len() > 10_000, "host {host} logged at trace level");
        assert!(!log.contains(marker), "host {host}'s log holds the secret");
        assert!(
            !log.contains(&as_numbers),
            "host {host}'s log holds the secret's bytes"
        );
    }
}
