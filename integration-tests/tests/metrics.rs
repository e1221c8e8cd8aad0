//! `skiffd --metrics-addr` on a loopback cluster of three managers and a worker: `/metrics`
//! parses as Prometheus text on every node, tasks by state follow a scale, control API
//! calls are counted, a killed leader counts as a leader change, nothing secret appears,
//! and anything but a read of `/metrics` is refused.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use integration_tests::{wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(40);

/// Host `i`'s metrics address: its own loopback address, the port after its cluster port.
fn metrics_addr(cluster_addr: &str) -> String {
    let (ip, port) = cluster_addr.rsplit_once(':').unwrap();
    format!("{ip}:{}", port.parse::<u16>().unwrap() + 1)
}

/// The status line and body of `METHOD PATH` on `addr`.
fn http(addr: &str, method: &str, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(WAIT)).unwrap();
    // HTTP/1.0: the body comes whole, without chunks.
    write!(conn, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Every sample of a scrape, `name{labels}` to value, after checking each line is
/// Prometheus text: a comment, or a sample with a number.
fn scrape(addr: &str) -> (String, HashMap<String, f64>) {
    let (status, body) = http(addr, "GET", "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let mut samples = HashMap::new();
    let mut saw_eof = false;
    for line in body.lines().filter(|l| !l.is_empty()) {
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        samples.insert(series.to_owned(), value);
    }
    assert!(saw_eof, "the scrape ends with # EOF: {body}");
    (body, samples)
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

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
