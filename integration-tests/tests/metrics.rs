//! `skiffd --metrics-addr` on a loopback cluster of three managers and a worker: `/metrics`
//! parses as Prometheus text on every node, tasks by state follow a scale, control API
//! calls are counted, a killed leader counts as a leader change, nothing secret appears,
//! and anything but a read of `/metrics` is refused.

use std::time::Duration;

use integration_tests::metrics::{http, metrics_addr, sample, scrape};
use integration_tests::{wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(40);

#[test]
fn metrics_follow_a_scale_and_a_leader_change_and_show_nothing_secret() {
    let mut cluster = Cluster::new(4);
    let addrs: Vec<String> = cluster
        .hosts
        .iter()
        .map(|h| metrics_addr(&h.addr))
        .collect();
    for (i, addr) in addrs.iter().enumerate() {
        cluster = cluster.with_daemon_args(i + 1, &["--metrics-addr", addr]);
    }
    cluster.form(3);

    let secret = cluster.dir().join("secret");
    std::fs::write(&secret, "metrics-secret-bytes").unwrap();
    cluster.ok(1, &["secret", "create", "pw", secret.to_str().unwrap()]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "2",
            "--env",
            "TOKEN=metrics-env-value",
            "--secret",
            "pw",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let running = "skiff_store_tasks{state=\"running\"}";
    wait_until("2 running tasks in the store's metrics", WAIT, || {
        (sample(&scrape(&addrs[0]).1, running) == 2.0).then_some(())
    });
    cluster.ok(1, &["service", "scale", "--detach", "web=5"]);
    wait_until(
        "5 running tasks, in the store and on the nodes",
        WAIT,
        || {
            let on_nodes: f64 = addrs
                .iter()
                .map(|a| sample(&scrape(a).1, "skiff_node_tasks{state=\"running\"}"))
                .sum();
            (sample(&scrape(&addrs[0]).1, running) == 5.0 && on_nodes == 5.0).then_some(())
        },
    );

    let (_, first) = scrape(&addrs[0]);
    assert!(sample(&first, "skiff_store_objects{kind=\"service\"}") == 1.0);
    assert!(sample(&first, "skiff_store_objects{kind=\"node\"}") == 4.0);
    assert!(
        sample(
            &first,
            "skiff_control_requests_total{method=\"CreateService\",code=\"Ok\"}"
        ) >= 1.0,
        "the create was counted"
    );
    assert!(sample(&first, "skiff_raft_term") >= 1.0);
    assert!(sample(&first, "skiff_raft_applied_index") >= 1.0);
    assert!(sample(&first, "process_resident_memory_bytes") > 0.0);
    // The worker serves its own metrics: no Raft, its tasks.
    let (_, worker) = scrape(&addrs[3]);
    assert_eq!(sample(&worker, "skiff_raft_is_leader"), 0.0);
    assert!(worker.contains_key("skiff_node_tasks{state=\"running\"}"));

    // A killed leader: another manager counts the change.
    let leader = (0..3)
        .find(|i| sample(&scrape(&addrs[*i]).1, "skiff_raft_is_leader") == 1.0)
        .expect("one manager leads");
    // The leader counts the nodes' heartbeats it accepts.
    let heartbeats = "skiff_dispatcher_heartbeats_total";
    wait_until("the leader counts heartbeats", WAIT, || {
        (sample(&scrape(&addrs[leader]).1, heartbeats) > 0.0).then_some(())
    });
    let witness = (0..3).find(|i| *i != leader).unwrap();
    let changes = "skiff_raft_leader_changes_total";
    let before = sample(&scrape(&addrs[witness]).1, changes);
    cluster.kill(leader + 1);
    wait_until("the witness counts a leader change", WAIT, || {
        (sample(&scrape(&addrs[witness]).1, changes) > before).then_some(())
    });

    // Nothing secret in any scrape: no secret data, environment value or join token.
    let token = cluster.ok(witness + 1, &["swarm", "join-token", "-q", "worker"]);
    for (i, addr) in addrs.iter().enumerate().filter(|(i, _)| *i != leader) {
        let (body, _) = scrape(addr);
        for secret in ["metrics-secret-bytes", "metrics-env-value", token.trim()] {
            assert!(!body.contains(secret), "host {} shows {secret:?}", i + 1);
        }
    }

    // Only reads of /metrics.
    let (status, _) = http(&addrs[witness], "POST", "/metrics");
    assert!(status.contains(" 405 "), "{status}");
    let (status, _) = http(&addrs[witness], "GET", "/debug");
    assert!(status.contains(" 404 "), "{status}");
}

/// The page at `url` as headless Chromium renders it after its script ran (and a
/// screenshot of it in `shot`).
fn rendered(url: &str, profile: &std::path::Path, shot: &std::path::Path) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "the page tests need Debian's chromium: apt-get install chromium (deploy/test.sh does)",
        );
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=3000",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[&format!("--screenshot={}", shot.display())]);
    run(&["--dump-dom"])
}

/// The `data-task` elements of a rendered page with their `data-state`.
fn tasks_in(dom: &str) -> Vec<String> {
    dom.match_indices("data-task=\"")
        .map(|(i, _)| {
            let rest = &dom[i..];
            let state = rest.find("data-state=\"").map_or("", |j| {
                let v = &rest[j + 12..];
                &v[..v.find('"').unwrap_or(0)]
            });
            state.to_owned()
        })
        .collect()
}

#[test]
fn the_cluster_page_shows_every_node_and_task_and_follows_a_scale() {
    let mut cluster = Cluster::new(2);
    let addrs: Vec<String> = cluster
        .hosts
        .iter()
        .map(|h| metrics_addr(&h.addr))
        .collect();
    for (i, addr) in addrs.iter().enumerate() {
        cluster = cluster.with_daemon_args(i + 1, &["--metrics-addr", addr]);
    }
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "2",
            "--env",
            "TOKEN=page-env-value",
            "busybox",
            "sleep",
            "600",
        ],
    );
    cluster.wait_running(1, "web", 2, WAIT);
    let url = format!("http://{}/", addrs[0]);
    let profile = cluster.dir().join("chromium");
    let dom = rendered(&url, &profile, &cluster.dir().join("page-2.png"));
    for host in ["host1", "host2"] {
        assert!(dom.contains(host), "{host} is on the page: {dom}");
    }
    assert_eq!(tasks_in(&dom), vec!["running"; 2], "{dom}");
    assert!(dom.contains("web.1") && dom.contains("web.2") && dom.contains("busybox"));

    cluster.ok(1, &["service", "scale", "--detach", "web=4"]);
    cluster.wait_running(1, "web", 4, WAIT);
    let dom = rendered(&url, &profile, &cluster.dir().join("page-4.png"));
    assert_eq!(tasks_in(&dom), vec!["running"; 4], "{dom}");
    assert!(
        cluster.dir().join("page-4.png").exists(),
        "the screenshot is kept"
    );

    // Nothing secret in the page or its JSON; a worker has no view and says so.
    let (_, json) = http(&addrs[0], "GET", "/api/cluster");
    assert!(!json.contains("page-env-value") && !dom.contains("page-env-value"));
    let (status, body) = http(&addrs[1], "GET", "/api/cluster");
    assert!(
        status.contains(" 503 ") && body.contains("not a manager"),
        "{status} {body}"
    );
    let (status, _) = http(&addrs[0], "POST", "/api/cluster");
    assert!(status.contains(" 405 "), "{status}");
}
