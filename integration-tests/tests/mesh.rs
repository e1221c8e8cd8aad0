//! The routing mesh end to end on test hosts: a published port answers on every host,
//! including hosts that run no task of the service, and spreads connections round-robin
//! over the tasks, which run in their own network namespaces on the ingress overlay; tasks
//! join the rotation as they start and leave it as they end.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::netns::TestNetwork;
use integration_tests::{task_state, wait_until, Cluster};

const CONVERGE: Duration = Duration::from_secs(60);

/// Each task serves a page with its own process ID on port 80.
const SERVE: &str = "d=$(mktemp -d); echo $$ > $d/index.html; exec busybox httpd -f -p 80 -h $d";

/// Creates service `name` of tasks that serve `SERVE`, with `options` before the image.
fn serve(cluster: &Cluster, name: &str, options: &[&str]) {
    let mut args = vec!["service", "create", "--detach", "--name", name];
    args.extend_from_slice(options);
    args.extend_from_slice(&["busybox", "sh", "-c", SERVE]);
    cluster.ok(1, &args);
}

fn get(cluster: &Cluster, from: usize, to: SocketAddr) -> Option<String> {
    cluster.http_get(from, to)
}

fn published(host: usize) -> SocketAddr {
    format!("{}:8080", TestNetwork::address(host))
        .parse()
        .expect("address")
}

#[test]
fn a_published_port_answers_on_every_host_and_spreads_over_the_tasks() {
    published_port_answers_everywhere("kernel");
}

#[test]
fn the_userspace_mesh_serves_the_same() {
    published_port_answers_everywhere("userspace");
}

/// The kernel variant runs its overlays on a data path port of its own.
const DATA_PATH_PORT: u16 = 7789;

fn published_port_answers_everywhere(mode: &'static str) {
    let mut cluster = Cluster::on_network(3).with_data_path(mode);
    let kernel = mode == "kernel";
    let port = DATA_PATH_PORT.to_string();
    let init: &[&str] = if kernel {
        &["--data-path-port", &port]
    } else {
        &[]
    };
    cluster.form_with(1, init);
    // Three tasks on hosts 2 and 3: host 1 runs none.
    serve(
        &cluster,
        "web",
        &[
            "--replicas",
            "3",
            "--constraint",
            "node.hostname!=host1",
            "-p",
            "8080:80",
        ],
    );
    cluster.wait_running(1, "web", 3, CONVERGE);
    for (from, to) in [(1, 1), (2, 1), (1, 2), (3, 2), (2, 3), (1, 3)] {
        wait_until(
            &format!("host {to}:8080 to answer host {from}"),
            CONVERGE,
            || get(&cluster, from, published(to)),
        );
    }
    // 3,000 requests, a third to each host: every task gets its share.
    wait_until(
        "every host's mesh to reach all three tasks",
        CONVERGE,
        || (spread(&cluster, 30).len() == 3).then_some(()),
    );
    let pages = spread(&cluster, 3000);
    assert_eq!(pages.len(), 3, "three tasks answer: {pages:?}");
    assert!(
        pages.values().all(|n| n.abs_diff(1000) <= 100),
        "within 10% of even: {pages:?}"
    );
    // The mesh ran where it was told to: nftables rules only for the kernel path.
    let has_rules = in_host(&cluster, 2, &["nft", "list", "tables"]).contains("skiffmesh");
    assert_eq!(has_rules, mode == "kernel", "mesh rules in {mode} mode");
    // The overlays carried all that over the cluster's data path port: the hosts' VXLAN
    // sockets are bound to it.
    let udp = in_host(&cluster, 2, &["cat", "/proc/net/udp"]);
    let bound = |port: u16| {
        udp.lines()
            .any(|l| l.contains(&format!(":{port:04X} 00000000:0000")))
    };
    let expected = if kernel { DATA_PATH_PORT } else { 4789 };
    assert!(bound(expected), "VXLAN on port {expected}: {udp}");
    assert!(!bound(if kernel { 4789 } else { DATA_PATH_PORT }));

    // A new task joins the rotation.
    cluster.ok(1, &["service", "scale", "--detach", "web=4"]);
    cluster.wait_running(1, "web", 4, CONVERGE);
    let pages = wait_until("the new task in the rotation", CONVERGE, || {
        let pages = spread(&cluster, 36);
        (pages.len() == 4).then_some(pages)
    });

    // A killed task leaves it: soon every request is answered again, never by the dead one.
    let victim: String = pages.keys().next().expect("a page").clone();
    let pid: i32 = victim.parse().expect("a page is its task's process ID");
    // SAFETY: SIGKILL to a task process this test's cluster started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    wait_until("the killed task out of the rotation", CONVERGE, || {
        let answered: Option<Vec<String>> = (0..30)
            .map(|i| get(&cluster, 1, published(i % 3 + 1)))
            .collect();
        answered.filter(|pages| !pages.contains(&victim))
    });
}

/// `n` requests from host 1, in turn to hosts 1, 2 and 3: the count per page. Panics if
/// one fails.
fn spread(cluster: &Cluster, n: usize) -> HashMap<String, usize> {
    let mut pages: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let page = get(cluster, 1, published(i % 3 + 1))
            .unwrap_or_else(|| panic!("request {i} to host {} failed", i % 3 + 1));
        *pages.entry(page).or_default() += 1;
    }
    pages
}

#[test]
fn a_start_first_rollout_under_load_through_the_mesh_fails_no_request() {
    let mut cluster = Cluster::on_network(3);
    cluster.form(1);
    let create = [
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--update-order",
        "start-first",
        "--update-parallelism",
        "1",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        "d=$(mktemp -d); echo $VERSION > $d/index.html; exec busybox httpd -f -p 80 -h $d",
    ];
    cluster.ok(1, &create);
    cluster.wait_running(1, "web", 3, CONVERGE);
    wait_until("the mesh to answer", CONVERGE, || {
        get(&cluster, 2, published(1))
    });
    // Requests run all along, from host 2 to host 1's published port.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        cluster.on_host(2, move || {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let attempt = (|| {
                    let timeout = Duration::from_secs(3);
                    let mut conn = std::net::TcpStream::connect_timeout(&published(1), timeout)?;
                    conn.set_read_timeout(Some(timeout))?;
                    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut reply = String::new();
                    conn.read_to_string(&mut reply)?;
                    if reply.starts_with("HTTP/1.") && reply.contains(" 200 ") {
                        Ok(())
                    } else {
                        Err(std::io::Error::other(format!("bad reply: {reply:?}")))
                    }
                })();
                match attempt {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.ok(
        1,
        &[
            "service",
            "update",
            "--env-add",
            "VERSION=v2",
            "--update-monitor",
            "1s",
            "web",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().expect("load thread");
    assert!(ok > 50, "the load ran ({ok} requests)");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    let pages: Vec<String> = (0..6)
        .filter_map(|_| get(&cluster, 2, published(1)))
        .collect();
    assert!(
        pages.iter().all(|p| p == "v2"),
        "every task on v2: {pages:?}"
    );
}

#[test]
fn a_host_mode_port_answers_only_where_its_task_runs() {
    host_mode("kernel");
}

#[test]
fn host_mode_in_the_userspace_data_path() {
    host_mode("userspace");
}

fn host_mode(mode: &'static str) {
    let mut cluster = Cluster::on_network(3).with_data_path(mode);
    cluster.form(1);
    let create = |name: &str, constraint: &str, publish: &str| {
        serve(
            &cluster,
            name,
            &["--replicas", "2", "--constraint", constraint, "-p", publish],
        );
    };
    create(
        "fixed",
        "node.hostname!=host1",
        "published=8081,target=80,mode=host",
    );
    // A port asked as 0 in host mode: each node picks one and reports it.
    create("any", "node.hostname==host1", "target=80,mode=host");
    cluster.wait_running(1, "fixed", 2, CONVERGE);
    let at = |host: usize, port: u16| -> SocketAddr {
        format!("{}:{port}", TestNetwork::address(host))
            .parse()
            .expect("address")
    };
    let fixed = cluster.running_tasks(1, "fixed");
    let mut pages = Vec::new();
    for task in &fixed {
        assert_eq!(task.ports, [8081], "the bound port in the task's status");
        // Its own node answers with it, every time, from any host.
        let page = wait_until(
            &format!("host {}:8081 to answer", task.host),
            CONVERGE,
            || get(&cluster, 1, at(task.host, 8081)),
        );
        for from in [2, 3] {
            assert_eq!(get(&cluster, from, at(task.host, 8081)), Some(page.clone()));
        }
        pages.push(page);
    }
    assert_ne!(pages[0], pages[1], "each node its own task");
    // Host 1 runs none: its port 8081 is closed.
    assert_eq!(get(&cluster, 2, at(1, 8081)), None);

    // A node's daemon restarts; its task runs on, and its port is published (and reported)
    // again.
    let restarted = fixed[0].host;
    cluster.stop(restarted);
    cluster.start(restarted);
    wait_until("the adopted task's port answering again", CONVERGE, || {
        let task = cluster
            .running_tasks(1, "fixed")
            .into_iter()
            .find(|t| t.id == fixed[0].id)?;
        (task.ports == [8081]).then_some(())?;
        get(&cluster, 3, at(restarted, 8081)).filter(|p| *p == pages[0])
    });

    // Two tasks of `any` on host 1, each on a port of its own.
    let any = wait_until("both tasks of any running with a port", CONVERGE, || {
        let tasks = cluster.running_tasks(1, "any");
        (tasks.len() == 2 && tasks.iter().all(|t| t.ports.len() == 1)).then_some(tasks)
    });
    assert_ne!(any[0].ports, any[1].ports);
    for task in &any {
        assert_eq!(task.host, 1);
        let port = task.ports[0] as u16;
        assert_ne!(port, 0);
        wait_until(&format!("host 1:{port} to answer"), CONVERGE, || {
            get(&cluster, 3, at(1, port))
        });
    }

    // A third task of `fixed` has nowhere to go: both nodes it may use publish 8081.
    cluster.ok(1, &["service", "scale", "--detach", "fixed=3"]);
    let reason = wait_until("the third task to wait with a reason", CONVERGE, || {
        cluster
            .tasks(1, "fixed")
            .iter()
            .filter(|t| task_state(t, "observed") == "TASK_STATE_PENDING")
            .find_map(|t| {
                let err = t["status"]["err"].as_str().unwrap_or("");
                let message = t["status"]["message"].as_str().unwrap_or("");
                [err, message]
                    .into_iter()
                    .find(|m| m.contains("no suitable node"))
                    .map(str::to_owned)
            })
    });
    assert!(
        reason.contains("2 nodes already publish port 8081/tcp in host mode"),
        "{reason}"
    );
}

#[test]
fn an_idle_connection_through_the_mesh_outlives_the_conntrack_timeout() {
    idle_connection("kernel");
}

#[test]
fn an_idle_connection_through_the_userspace_mesh_too() {
    idle_connection("userspace");
}

/// Connects from host `from` to `to`, reads the task's greeting, stays quiet for `idle`,
/// then sends a line and reads it back: (greeting, echo).
fn converse(
    cluster: &Cluster,
    from: usize,
    to: SocketAddr,
    idle: Duration,
) -> std::io::Result<(String, String)> {
    use std::io::BufRead;
    cluster
        .on_host(from, move || {
            let conn = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            conn.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut lines = std::io::BufReader::new(conn.try_clone()?).lines();
            let greeting = lines.next().transpose()?.unwrap_or_default();
            // The quiet time is what is under test, not a wait for something to happen.
            std::thread::sleep(idle);
            (&conn).write_all(b"still there?\n")?;
            let echo = lines.next().transpose()?.unwrap_or_default();
            Ok((greeting, echo))
        })
        .join()
        .expect("connection thread")
}

fn idle_connection(mode: &'static str) {
    let mut cluster = Cluster::on_network(3).with_data_path(mode);
    // An established connection's conntrack entry lives five days without traffic by
    // default; two seconds here, on every host, so that the test does not take days. The
    // mesh must not depend on it.
    for i in 1..=3 {
        let ns = cluster.namespace(i).expect("test host").to_owned();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "sysctl", "-w"])
            .arg("net.netfilter.nf_conntrack_tcp_timeout_established=2")
            .output()
            .expect("sysctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.form(1);
    // Two tasks on host 3, greeting every connection with a process ID of its own and
    // echoing what it is sent.
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "echo",
            "--replicas",
            "2",
            "--constraint",
            "node.hostname==host3",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            "exec busybox nc -ll -p 80 -e sh -c 'echo $$; exec cat'",
        ],
    );
    cluster.wait_running(1, "echo", 2, CONVERGE);
    wait_until("the mesh to carry a conversation", CONVERGE, || {
        converse(&cluster, 1, published(2), Duration::ZERO).ok()
    });
    // Host 2 forwards the connection (it runs no task); it stays quiet past the timeout.
    let (greeting, echo) = converse(&cluster, 1, published(2), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the idle connection broke: {e}"));
    assert!(!greeting.is_empty());
    assert_eq!(
        echo, "still there?",
        "the same task answers after the quiet time"
    );
}

/// Runs `ARGS` in test host `host`'s network namespace and returns its output.
fn in_host(cluster: &Cluster, host: usize, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", cluster.namespace(host).expect("test host")])
        .args(args)
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_node_that_leaves_removes_its_network_state() {
    let mut cluster = Cluster::on_network(2);
    cluster.form(1);
    serve(
        &cluster,
        "web",
        &["--constraint", "node.hostname==host2", "-p", "8080:80"],
    );
    cluster.wait_running(1, "web", 1, CONVERGE);
    let task = cluster.running_tasks(1, "web")[0].id.clone();
    wait_until("host 2's published port", CONVERGE, || {
        get(&cluster, 1, published(2))
    });
    let mut made = cluster.network_namespaces(2);
    assert!(
        !made.is_empty(),
        "host 2 has the ingress network's namespace"
    );
    made.push(agent_runtime::task_netns_name(&task));
    assert!(in_host(&cluster, 2, &["nft", "list", "tables"]).contains(worker::net::mesh::TABLE));
    let links = in_host(&cluster, 2, &["ip", "-o", "link"]);
    assert!(
        links.contains(worker::net::bridge::GATEWAY_BRIDGE),
        "the task's way out: {links}"
    );

    cluster.ok(2, &["swarm", "leave"]);
    wait_until("host 2's network state gone", CONVERGE, || {
        let listed = String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["netns", "list"])
                .output()
                .expect("ip netns list")
                .stdout,
        )
        .into_owned();
        let names: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        made.iter()
            .all(|ns| !names.contains(&ns.as_str()))
            .then_some(())
    });
    let tables = in_host(&cluster, 2, &["nft", "list", "tables"]);
    assert!(
        !tables.contains("skiff"),
        "skiff's nftables tables are gone: {tables}"
    );
    let links = in_host(&cluster, 2, &["ip", "-o", "link"]);
    assert!(
        !links.contains("skiff"),
        "skiff's bridges are gone: {links}"
    );
    assert_eq!(
        get(&cluster, 1, published(2)),
        None,
        "host 2 no longer publishes 8080"
    );
}

#[test]
fn a_daemon_restarted_in_a_mount_namespace_of_its_own_serves_the_mesh_and_new_tasks() {
    let mut cluster = Cluster::on_network(3);
    cluster.form(1);
    // The service's only task runs on host 2: every host's mesh goes through host 2's
    // ingress overlay to reach it.
    serve(
        &cluster,
        "web",
        &["--constraint", "node.hostname==host2", "-p", "8080:80"],
    );
    cluster.wait_running(1, "web", 1, CONVERGE);
    let page = wait_until("the mesh to answer", CONVERGE, || {
        get(&cluster, 1, published(2))
    });
    let at = |host: usize, port: u16| -> SocketAddr {
        format!("{}:{port}", TestNetwork::address(host))
            .parse()
            .expect("address")
    };
    for (round, killed) in [(1u16, true), (2, false)] {
        // As `deploy/local-cluster.sh` restarts a host: the new daemon does not see the
        // namespaces its predecessor mounted; the task runs on.
        if killed {
            cluster.kill(2);
        } else {
            cluster.stop(2);
        }
        cluster.start_in_own_mounts(2);
        let how = if killed { "SIGKILL" } else { "SIGTERM" };
        for to in 1..=3 {
            wait_until(
                &format!("host {to}'s mesh to reach the adopted task after a {how}"),
                CONVERGE,
                || get(&cluster, 1 + to % 3, published(to)).filter(|p| *p == page),
            );
        }
        // A new task on host 2 starts on its networks and every host's mesh reaches it.
        let name = format!("new{round}");
        let port = 8080 + round;
        serve(
            &cluster,
            &name,
            &[
                "--constraint",
                "node.hostname==host2",
                "-p",
                &format!("{port}:80"),
            ],
        );
        cluster.wait_running(1, &name, 1, CONVERGE);
        for to in 1..=3 {
            wait_until(
                &format!("host {to}:{port} to answer after a {how}"),
                CONVERGE,
                || get(&cluster, 1 + to % 3, at(to, port)),
            );
        }
        // Nothing is left over in the node's own namespace: the VXLAN devices are all
        // inside the networks' namespaces.
        let vxlan = in_host(&cluster, 2, &["ip", "-d", "link", "show", "type", "vxlan"]);
        assert!(vxlan.trim().is_empty(), "after a {how}: {vxlan}");
    }
}

#[test]
fn a_published_cluster_port_never_captures_the_cluster_s_own_traffic() {
    let mut cluster = Cluster::on_network(3);
    cluster.form(3);
    // A published service makes every host program its mesh.
    serve(&cluster, "web", &["--replicas", "0", "-p", "8080:80"]);
    let nodes = "10.77.0.2, 10.77.0.3, 10.77.0.4";
    for host in 1..=3 {
        wait_until(
            &format!("host {host}'s mesh to leave the cluster's addresses and ports alone"),
            CONVERGE,
            || {
                let table = in_host(&cluster, host, &["nft", "list", "table", "ip", "skiffmesh"]);
                (table.contains(&format!("ip daddr {{ {nodes} }} tcp dport 2377 accept"))
                    && table.contains(&format!("ip daddr {{ {nodes} }} udp dport 4789 accept")))
                .then_some(())
            },
        );
    }
    // A port 2377 that got past the control API, as the mesh publishes a port without a
    // running task, on every host: its rules come after the cluster's own.
    capture_the_cluster_port(&cluster);
    // The control plane keeps working on new connections: a follower's daemon starts
    // again (all its connections new), catches up with the leader and writes through it.
    let leader = cluster.leader_host(1);
    let follower = (1..=3).find(|h| *h != leader).expect("a follower");
    cluster.kill(follower);
    cluster.start(follower);
    cluster.eventually_ok(
        follower,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "probe",
            "--replicas",
            "0",
            "busybox",
            "true",
        ],
        CONVERGE,
    );
    wait_until(
        "the restarted manager to see both services",
        CONVERGE,
        || {
            let out = cluster.skiff(follower, &["service", "ls", "--quiet"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 2)
                .then_some(())
        },
    );
    for host in 1..=3 {
        wait_until(
            &format!("host {host} to see every manager reachable"),
            CONVERGE,
            || {
                let statuses = cluster.manager_statuses(host);
                (statuses.len() == 3
                    && statuses
                        .iter()
                        .all(|(_, s)| !s.is_empty() && s != "Unreachable"))
                .then_some(())
            },
        );
    }
    // A daemon rebuilds its whole mesh table when its mesh or the cluster's addresses
    // change (the restart above is such a change), which drops the hand-made rule; so the
    // rule goes back where it is missing, and a new connection from every host to every
    // manager's cluster port must be accepted while the rule is known to be in place on
    // every host: there before the connections and still there after them (a rebuild
    // never puts it back). A rebuild in between means another round.
    let managers: Vec<SocketAddr> = (1..=3)
        .map(|h| {
            format!("{}:2377", TestNetwork::address(h))
                .parse()
                .expect("address")
        })
        .collect();
    let checked = (0..10).any(|_| {
        capture_the_cluster_port(&cluster);
        for from in 1..=3 {
            let targets = managers.clone();
            let refused = cluster
                .on_host(from, move || {
                    targets
                        .into_iter()
                        .filter_map(|to| {
                            std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
                                .err()
                                .map(|e| format!("{to}: {e}"))
                        })
                        .collect::<Vec<_>>()
                })
                .join()
                .expect("connect from the test host");
            assert!(
                refused.is_empty(),
                "host {from}'s new connections to the cluster port failed: {refused:?}"
            );
        }
        (1..=3).all(|host| {
            NAT_CHAINS
                .iter()
                .all(|chain| captures_the_cluster_port(&cluster, host, chain))
        })
    });
    assert!(
        checked,
        "the daemons rebuilt their mesh during each of 10 rounds of connections"
    );
}

const NAT_CHAINS: [&str; 2] = ["prerouting", "output"];
const CAPTURED: &str = "fib daddr type local tcp dport 2377 reject with tcp reset";

/// Whether chain `chain` of host `host`'s mesh holds the test's rule that rejects the
/// cluster port.
fn captures_the_cluster_port(cluster: &Cluster, host: usize, chain: &str) -> bool {
    in_host(
        cluster,
        host,
        &["nft", "list", "chain", "ip", "skiffmesh", chain],
    )
    .contains("tcp dport 2377 reject")
}

/// Appends a rule rejecting the cluster port to both nat chains of every host's mesh where
/// it is missing: what a published port 2377 would look like had one got past the control
/// API.
fn capture_the_cluster_port(cluster: &Cluster) {
    for host in 1..=3 {
        for chain in NAT_CHAINS {
            if captures_the_cluster_port(cluster, host, chain) {
                continue;
            }
            let rule = format!("add rule ip skiffmesh {chain} {CAPTURED}");
            let ns = cluster.namespace(host).expect("test host").to_owned();
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "nft"])
                .args(rule.split(' '))
                .output()
                .expect("nft");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
