//! The user scenarios on test hosts: each host a network namespace with its own address on a
//! switch of the test's own, a real `skiffd` in each, driven only through the CLI. Faults are
//! real: a host's processes killed, a host cut off from the others and joined again.

use std::collections::BTreeSet;
use std::time::Duration;

use integration_tests::{task_state, wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// 3 managers (hosts 1-3) and 2 workers (hosts 4-5) formed with `swarm init` and the tokens
/// `swarm join-token` prints.
fn five_hosts() -> Cluster {
    let mut cluster = Cluster::on_network(5);
    cluster.form(3);
    cluster
}

/// A manager that does not lead.
fn follower(cluster: &Cluster) -> usize {
    let leader = cluster.leader_host(1);
    (1..=3).find(|m| *m != leader).expect("a follower")
}

fn node_id(cluster: &Cluster, host: usize, hostname: &str) -> String {
    let out = cluster.ok(host, &["node", "inspect", "--format", "{{.ID}}", hostname]);
    out.trim().to_owned()
}

fn create(cluster: &Cluster, host: usize, name: &str, replicas: &str, extra: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        replicas,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "100000"]);
    cluster.ok(host, &args);
}

/// What a manager says about the nodes: (ID, hostname, role, state, availability).
fn node_view(cluster: &Cluster, host: usize) -> BTreeSet<(String, String, String, String, String)> {
    cluster
        .nodes(host)
        .iter()
        .map(|n| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                s(&n["meta"]["id"]),
                s(&n["description"]["hostname"]),
                s(&n["spec"]["desired_role"]),
                s(&n["status"]["state"]),
                s(&n["spec"]["availability"]),
            )
        })
        .collect()
}

/// What a manager says about a service's tasks: (ID, slot, node, desired, observed).
fn task_view(
    cluster: &Cluster,
    host: usize,
    service: &str,
) -> BTreeSet<(String, u64, String, String, String)> {
    cluster
        .tasks(host, service)
        .iter()
        .map(|t| {
            (
                t["meta"]["id"].as_str().unwrap_or("").to_owned(),
                t["slot"].as_u64().unwrap_or(0),
                t["node_id"].as_str().unwrap_or("").to_owned(),
                task_state(t, "desired"),
                task_state(t, "observed"),
            )
        })
        .collect()
}

#[test]
fn hosts_join_with_tokens_and_every_manager_agrees() {
    let cluster = five_hosts();
    let view = node_view(&cluster, 1);
    assert_eq!(view.len(), 5, "{view:?}");
    assert_eq!(
        view.iter().filter(|n| n.2 == "NODE_ROLE_MANAGER").count(),
        3,
        "{view:?}"
    );
    for m in 2..=3 {
        wait_until(&format!("host {m} to agree on the nodes"), CONVERGE, || {
            (node_view(&cluster, m) == view).then_some(())
        });
    }
    for m in 1..=3 {
        wait_until(
            &format!("host {m} to show one leader and two reachable managers"),
            CONVERGE,
            || {
                let statuses = cluster.manager_statuses(m);
                let count = |what: &str| statuses.iter().filter(|(_, s)| s == what).count();
                ((count("Leader"), count("Reachable")) == (1, 2)).then_some(())
            },
        );
    }
    // A worker answers with a clear sentence, not a gRPC status.
    let err = cluster.fails(4, &["node", "ls"]);
    assert!(err.contains("not a manager"), "{err}");
}

#[test]
fn services_made_on_a_follower_look_the_same_on_every_manager() {
    let cluster = five_hosts();
    let via = follower(&cluster);
    create(&cluster, via, "web", "3", &[]);
    cluster.wait_running(via, "web", 3, CONVERGE);
    cluster.ok(via, &["service", "scale", "--detach", "web=7"]);
    cluster.wait_running(via, "web", 7, CONVERGE);
    let tasks = task_view(&cluster, via, "web");
    for m in 1..=3 {
        wait_until(
            &format!("host {m} to show the same tasks"),
            CONVERGE,
            || (task_view(&cluster, m, "web") == tasks).then_some(()),
        );
        let ls = cluster.ok(m, &["service", "ls"]);
        assert!(ls.contains("web") && ls.contains("7/7"), "host {m}: {ls}");
    }
}

#[test]
fn a_killed_leader_host_and_a_killed_worker_host_are_survived() {
    let mut cluster = five_hosts();
    create(
        &cluster,
        1,
        "web",
        "4",
        &["--constraint", "node.role==worker"],
    );
    cluster.wait_running(1, "web", 4, CONVERGE);

    let leader = cluster.leader_host(1);
    cluster.kill_host(leader);
    let other = (1..=3).find(|m| *m != leader).expect("another manager");
    cluster.eventually_ok(
        other,
        &[
            "service", "create", "--detach", "--name", "after", "busybox", "sleep", "100000",
        ],
        CONVERGE,
    );
    cluster.wait_running(other, "after", 1, CONVERGE);

    // The worker host 4 dies: its tasks come back on host 5.
    let survivor = node_id(&cluster, other, "host5");
    cluster.kill_host(4);
    wait_until(
        "the tasks of host 4 to come back on host 5",
        CONVERGE,
        || {
            let running = cluster.running(other, "web");
            (running.len() == 4 && running.iter().all(|(_, node)| *node == survivor)).then_some(())
        },
    );
}

#[test]
fn a_manager_cut_off_refuses_writes_and_catches_up_after_the_link_heals() {
    let cluster = five_hosts();
    let cut = follower(&cluster);
    let majority = (1..=3)
        .find(|m| *m != cut)
        .expect("a manager in the majority");
    cluster.partition(&[cut]);

    let err = wait_until("the cut-off manager to refuse a write", CONVERGE, || {
        let out = cluster.skiff(
            cut,
            &[
                "service", "create", "--detach", "--name", "lost", "busybox", "sleep", "1",
            ],
        );
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(err.contains("quorum"), "the refusal should say why: {err}");
    assert!(!err.contains("status:"), "no raw gRPC status: {err}");

    // The majority goes on.
    cluster.eventually_ok(
        majority,
        &[
            "service", "create", "--detach", "--name", "during", "busybox", "sleep", "100000",
        ],
        CONVERGE,
    );

    cluster.heal();
    wait_until("the healed manager to catch up", CONVERGE, || {
        let out = cluster.skiff(cut, &["service", "ls"]);
        let text = String::from_utf8_lossy(&out.stdout);
        (out.status.success() && text.contains("during")).then_some(())
    });
    let ls = cluster.ok(cut, &["service", "ls"]);
    assert!(
        !ls.contains("lost"),
        "a refused write must not appear later: {ls}"
    );
    cluster.eventually_ok(cut, &["service", "scale", "--detach", "during=2"], CONVERGE);
    cluster.wait_running(majority, "during", 2, CONVERGE);
}

#[test]
fn every_host_restarted_brings_the_cluster_and_its_services_back() {
    let mut cluster = five_hosts();
    create(&cluster, 1, "web", "5", &[]);
    cluster.wait_running(1, "web", 5, CONVERGE);
    let nodes: BTreeSet<String> = node_view(&cluster, 1).into_iter().map(|n| n.0).collect();

    for i in 1..=5 {
        cluster.kill_host(i);
    }
    cluster.start_all();

    wait_until("every node to be ready again", CONVERGE, || {
        let out = cluster.skiff(1, &["node", "ls", "--format", "json"]);
        let nodes_now: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let ready: BTreeSet<String> = nodes_now
            .iter()
            .filter(|n| n["status"]["state"] == "NODE_STATE_READY")
            .filter_map(|n| n["meta"]["id"].as_str().map(str::to_owned))
            .collect();
        (ready == nodes).then_some(())
    });
    cluster.wait_running(2, "web", 5, CONVERGE);
}

/// `deploy/local-cluster.sh` with the given command, on a cluster of this test's own
/// (state, addresses, namespace and bridge names), with the binaries this test run built.
fn local_cluster(
    state: &std::path::Path,
    name: &str,
    net: &str,
    args: &[&str],
) -> std::process::Output {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh");
    let bin_dir = integration_tests::bin("skiffd")
        .parent()
        .unwrap()
        .to_owned();
    std::process::Command::new(script)
        .args(args)
        .env("SKIFF_LOCAL_STATE", state)
        .env("SKIFF_LOCAL_NAME", name)
        .env("SKIFF_LOCAL_BRIDGE", name)
        .env("SKIFF_LOCAL_NET", net)
        .env("SKIFF_BIN", bin_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run deploy/local-cluster.sh")
}

#[test]
fn the_local_cluster_with_one_manager_serves_its_demo() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let name = format!("sklc{}", std::process::id() % 100_000);
    let net = format!("10.79.{}", std::process::id() % 250 + 1);
    struct Down<'a>(&'a std::path::Path, &'a str, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let out = local_cluster(self.0, self.1, self.2, &["down"]);
            if std::thread::panicking() {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
                for n in 1..=3 {
                    let log = self.0.join(format!("host{n}/skiffd.log"));
                    eprintln!(
                        "----- host {n} -----\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
        }
    }
    let _down = Down(&state, &name, &net);
    let out = local_cluster(
        &state,
        &name,
        &net,
        &[
            "up",
            "--managers",
            "1",
            "--workers",
            "2",
            "--runtime",
            "process",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every host answers on the demo's port, through the mesh.
    for host in 2..=4 {
        let addr: std::net::SocketAddr = format!("{net}.{host}:8080").parse().unwrap();
        wait_until(&format!("the demo on {addr}"), CONVERGE, || {
            integration_tests::http_get(addr).filter(|body| body.contains("hello from skiff task"))
        });
    }
}
