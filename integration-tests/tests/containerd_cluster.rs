//! skiffd with the containerd runtime: services from a registry image, `service logs`,
//! health checks deciding a task's fate, a pull's progress in its task's status, `skiff
//! image load`, clear failures for missing images, private images with `--with-registry-auth`, a killed skiffd whose containers
//! keep running and are adopted on restart, and tasks in namespaces of their own with a way
//! out of the cluster (containers, and host processes under the process runtime too).

use std::time::Duration;

use integration_tests::containerd::{
    busybox_image, busybox_in_auth_registry, busybox_in_registry, REGISTRY_LOGIN,
};
use integration_tests::netns::TestNetwork;
use integration_tests::{task_state, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

fn one_node() -> Cluster {
    let mut cluster = Cluster::new(1).with_containerd();
    cluster.form(1);
    cluster
}

/// `ctr tasks ls` in host 1's namespace: task IDs, PIDs and states.
fn containerd_tasks(cluster: &Cluster) -> String {
    let out = std::process::Command::new("ctr")
        .arg("-a")
        .arg(integration_tests::containerd::socket())
        .args(["-n", &cluster.containerd_namespace(1), "tasks", "ls"])
        .output()
        .expect("ctr");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn services_run_as_containers_and_survive_a_daemon_restart() {
    let mut cluster = one_node();
    let image = busybox_in_registry();
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "--detach",
            image,
            "sh",
            "-c",
            "echo started in $(hostname); while true; do sleep 1; done",
        ],
    );
    cluster.wait_running(1, "web", 2, WAIT);
    let logs = cluster.eventually_ok(1, &["service", "logs", "web"], WAIT);
    assert_eq!(logs.matches("started in").count(), 2, "{logs}");
    let before: Vec<String> = cluster
        .tasks(1, "web")
        .iter()
        .map(|t| t["meta"]["id"].as_str().unwrap_or("").to_owned())
        .collect();

    cluster.kill(1);
    // The containers run on without skiffd.
    let listing = containerd_tasks(&cluster);
    assert_eq!(listing.matches("RUNNING").count(), 2, "{listing}");

    cluster.start(1);
    cluster.eventually_ok(1, &["service", "ps", "web"], WAIT);
    cluster.wait_running(1, "web", 2, WAIT);
    let after: Vec<String> = cluster
        .tasks(1, "web")
        .iter()
        .map(|t| t["meta"]["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        before, after,
        "the same tasks run after the restart (adopted, not replaced)"
    );
    assert_eq!(
        containerd_tasks(&cluster),
        listing,
        "the same containers (same PIDs) run on"
    );
}

#[test]
fn a_failing_health_check_fails_the_task_and_a_passing_one_lets_it_run() {
    let cluster = one_node();
    let image = busybox_in_registry();
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "fine",
            "--detach",
            "--health-cmd",
            "test -d /www",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            image,
            "sleep",
            "1000",
        ],
    );
    cluster.wait_running(1, "fine", 1, WAIT);
    let fine = cluster.tasks(1, "fine");
    assert_eq!(
        fine[0]["status"]["health"], "HEALTH_STATE_HEALTHY",
        "{fine:?}"
    );

    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "sick",
            "--detach",
            "--health-cmd",
            "exit 1",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            "--restart-condition",
            "none",
            image,
            "sleep",
            "1000",
        ],
    );
    let failed = wait_until("the unhealthy task fails", WAIT, || {
        cluster
            .tasks(1, "sick")
            .into_iter()
            .find(|t| task_state(t, "observed") == "TASK_STATE_FAILED")
    });
    let err = failed["status"]["err"].as_str().unwrap_or("");
    assert!(err.contains("unhealthy"), "{failed}");
    assert_eq!(
        failed["status"]["health"], "HEALTH_STATE_UNHEALTHY",
        "{failed}"
    );
}

#[test]
fn images_load_from_archives_and_missing_ones_fail_clearly() {
    let cluster = one_node();
    let archive = cluster.dir().join("app.tar");
    busybox_image(
        &archive,
        "docker.io/library/app:2",
        serde_json::json!({"Cmd": ["sleep", "1000"]}),
    );
    let out = cluster.ok(1, &["image", "load", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: docker.io/library/app:2"),
        "{out}"
    );
    cluster.ok(
        1,
        &[
            "service", "create", "--name", "app", "--detach", "--pull", "never", "app:2",
        ],
    );
    cluster.wait_running(1, "app", 1, WAIT);

    let garbage = cluster.dir().join("garbage.tar");
    std::fs::write(&garbage, "no image here").unwrap();
    let err = cluster.fails(1, &["image", "load", garbage.to_str().unwrap()]);
    assert!(err.contains("docker save"), "{err}");

    let missing = format!(
        "{}/no/such:image",
        integration_tests::containerd::registry().addr
    );
    cluster.ok(
        1,
        &["service", "create", "--name", "ghost", "--detach", &missing],
    );
    let rejected = wait_until("the task is rejected", WAIT, || {
        cluster
            .tasks(1, "ghost")
            .into_iter()
            .find(|t| task_state(t, "observed") == "TASK_STATE_REJECTED")
    });
    let err = rejected["status"]["err"].as_str().unwrap_or("");
    assert!(
        err.contains("pulling image") && err.contains("no/such"),
        "{rejected}"
    );
    let ps = cluster.ok(1, &["service", "ps", "--no-trunc", "ghost"]);
    assert!(ps.contains("pulling image"), "{ps}");
}

#[test]
fn containers_on_test_hosts_serve_through_the_mesh_and_resolve_services() {
    let mut cluster = Cluster::on_network(2).with_containerd();
    cluster.form(1);
    // Test hosts cannot reach the registry on the machine's loopback: load the image on
    // each, as on nodes without a registry.
    let archive = cluster.dir().join("busybox.tar");
    busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    for i in 1..=2 {
        cluster.ok(i, &["image", "load", archive.to_str().unwrap()]);
    }
    let image = "busybox:test";
    cluster.ok(1, &["network", "create", "front"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--network",
            "front",
            "--name",
            "web",
            "--replicas",
            "2",
            "--detach",
            "--constraint",
            "node.hostname!=host1",
            "-p",
            "8080:80",
            image,
            "sh",
            "-c",
            "echo served by $(hostname) > /www/index.html; exec httpd -f -p 80 -h /www",
        ],
    );
    cluster.wait_running(1, "web", 2, WAIT);
    let host = |i: usize| -> std::net::SocketAddr {
        format!("{}:8080", integration_tests::netns::TestNetwork::address(i))
            .parse()
            .unwrap()
    };
    // Host 1 runs no task and still answers; both containers take turns.
    let pages = wait_until("both containers to answer through host 1", WAIT, || {
        let pages: std::collections::BTreeSet<String> = (0..8)
            .filter_map(|_| cluster.http_get(1, host(1)))
            .collect();
        (pages.len() == 2).then_some(pages)
    });
    assert!(
        pages.iter().all(|p| p.starts_with("served by ")),
        "{pages:?}"
    );
    assert!(cluster.http_get(2, host(2)).is_some());

    // Inside a container: its resolver is the network's DNS server.
    let task = cluster
        .tasks(1, "web")
        .into_iter()
        .find(|t| task_state(t, "observed") == "TASK_STATE_RUNNING")
        .expect("a running task");
    let id = task["meta"]["id"].as_str().unwrap_or("").to_owned();
    // (the name appears once every node has the service's addresses).
    let text = wait_until("tasks.web to resolve inside a container", WAIT, || {
        let out = std::process::Command::new("ctr")
            .arg("-a")
            .arg(integration_tests::containerd::socket())
            .args(["-n", &cluster.containerd_namespace(2), "tasks", "exec"])
            .args(["--exec-id", &format!("lookup{}", std::process::id()), &id])
            .args(["sh", "-c", "cat /etc/resolv.conf; nslookup tasks.web."])
            .output()
            .expect("ctr exec");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let tasks = text
            .lines()
            .filter_map(|l| l.strip_prefix("Address:"))
            .filter(|a| !a.trim().starts_with("127.0.0.11"))
            .count();
        (tasks == 2).then_some(text)
    });
    assert!(text.contains("nameserver 127.0.0.11"), "{text}");
}

#[test]
fn a_private_image_runs_with_registry_auth_and_fails_clearly_without() {
    let image = busybox_in_auth_registry();
    let cluster = one_node();
    let rejection = |service: &str| -> String {
        let rejected = wait_until("the task rejected", WAIT, || {
            cluster
                .tasks(1, service)
                .into_iter()
                .find(|t| task_state(t, "observed") == "TASK_STATE_REJECTED")
        });
        rejected["status"]["err"].as_str().unwrap_or("").to_owned()
    };
    cluster.ok(
        1,
        &[
            "service", "create", "--name", "anon", "--detach", image, "sleep", "1000",
        ],
    );
    let err = rejection("anon");
    assert!(
        err.contains("wants credentials") && err.contains("--with-registry-auth"),
        "{err}"
    );

    // `docker login`'s credentials, with a wrong password and then the right one.
    let registry = image.split('/').next().expect("registry");
    let login = |auth: &str| {
        std::fs::create_dir_all(cluster.docker_config()).expect("docker config dir");
        std::fs::write(
            cluster.docker_config().join("config.json"),
            serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string(),
        )
        .expect("config.json");
    };
    login("c2tpZmY6d3Jvbmc="); // skiff:wrong
    let create = |name: &str| {
        cluster.ok(
            1,
            &[
                "service",
                "create",
                "--with-registry-auth",
                "--name",
                name,
                "--detach",
                image,
                "sleep",
                "1000",
            ],
        );
    };
    create("wrong");
    let err = rejection("wrong");
    assert!(
        err.contains("refused the service's credentials") && err.contains("docker login"),
        "{err}"
    );
    login(REGISTRY_LOGIN);
    create("private");
    cluster.wait_running(1, "private", 1, WAIT);
    let inspect = cluster.ok(1, &["service", "inspect", "private"]);
    assert!(!inspect.contains(REGISTRY_LOGIN), "{inspect}");
}

/// What each task of [`own_namespaces_and_a_way_out`] runs: it tells the machine outside the
/// cluster (`ADDR PORT`) who it is (`NAME`, its hostname and shell PID: containers differ
/// by hostname, host processes by PID), retrying until it gets through, then serves that
/// same line on port 80.
const CALL_OUT_THEN_SERVE: &str = "me=\"NAME $(hostname)-$$\"; \
    until echo \"$me\" | busybox nc -w 3 ADDR PORT; do sleep 1; done; \
    d=$(mktemp -d); echo \"$me\" > $d/index.html; exec busybox httpd -f -p 80 -h $d";

#[test]
fn containers_get_namespaces_of_their_own_and_reach_outside_the_cluster() {
    let mut cluster = Cluster::on_network(1).with_containerd();
    cluster.form(1);
    let archive = cluster.dir().join("busybox.tar");
    busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    cluster.ok(1, &["image", "load", archive.to_str().unwrap()]);
    own_namespaces_and_a_way_out(&mut cluster, "busybox:test", false);
}

#[test]
fn host_processes_get_namespaces_of_their_own_and_keep_their_addresses_across_a_restart() {
    let mut cluster = Cluster::on_network(1);
    cluster.form(1);
    // The process runtime ignores the image.
    own_namespaces_and_a_way_out(&mut cluster, "busybox", true);
}

/// Three replicas of a server on port 80 run on one node, without networks and on an
/// overlay (publishing its port through the mesh): each in a namespace of its own, which
/// shows none of the node's interfaces, each with a way out to a machine on the test's
/// network outside the cluster. With `restart`, the node's daemon is killed and started
/// again: the tasks keep their addresses and a new task gets another.
fn own_namespaces_and_a_way_out(cluster: &mut Cluster, image: &str, restart: bool) {
    let outside = cluster.outside_server();
    cluster.ok(1, &["network", "create", "front"]);
    let services: [(&str, &[&str]); 2] = [
        ("alone", &[]),
        ("linked", &["--network", "front", "-p", "8080:80"]),
    ];
    for (name, options) in services {
        let command = CALL_OUT_THEN_SERVE
            .replace("NAME", name)
            .replace("ADDR", &outside.addr.ip().to_string())
            .replace("PORT", &outside.addr.port().to_string());
        let mut args = vec!["service", "create", "--detach", "--name", name];
        args.extend_from_slice(&["--replicas", "3"]);
        args.extend_from_slice(options);
        args.extend_from_slice(&[image, "sh", "-c", &command]);
        cluster.ok(1, &args);
    }
    for (name, _) in services {
        cluster.wait_running(1, name, 3, WAIT);
    }
    let called = wait_until("every task to reach the outside machine", WAIT, || {
        let lines: std::collections::BTreeSet<String> = outside.lines().into_iter().collect();
        services
            .iter()
            .all(|(name, _)| {
                let prefix = format!("{name} ");
                lines.iter().filter(|l| l.starts_with(&prefix)).count() == 3
            })
            .then_some(lines)
    });

    let host_address = format!("{}/", TestNetwork::address(1));
    let mut addresses = Vec::new();
    for (name, _) in services {
        let tasks = cluster.tasks(1, name);
        assert_eq!(tasks.len(), 3, "no task of {name} failed: {tasks:?}");
        for task in &tasks {
            assert_eq!(
                task_state(task, "observed"),
                "TASK_STATE_RUNNING",
                "{task:?}"
            );
            let id = task["meta"]["id"].as_str().unwrap_or("");
            let shown = in_task(cluster, id, &["ip", "-o", "addr"]);
            for node_only in [host_address.as_str(), "skiff0", "skiff_gwbridge", "skin0"] {
                assert!(
                    !shown.contains(node_only),
                    "task {id} sees {node_only}: {shown}"
                );
            }
            addresses.push(bridge_address(cluster, id, name));
            // Its own server on port 80, the one that called out.
            let page = in_task(
                cluster,
                id,
                &["busybox", "wget", "-q", "-O", "-", "http://127.0.0.1/"],
            );
            assert!(called.contains(page.trim()), "{page:?} in {called:?}");
        }
    }
    let distinct: std::collections::BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(distinct.len(), 6, "{addresses:?}");
    let published = format!("{}:8080", TestNetwork::address(1)).parse().unwrap();
    let page = wait_until("the published port", WAIT, || {
        cluster.http_get(1, published)
    });
    assert!(page.starts_with("linked "), "{page}");

    if restart {
        let before: Vec<(String, String)> = cluster
            .tasks(1, "alone")
            .iter()
            .map(|t| {
                let id = t["meta"]["id"].as_str().unwrap_or("").to_owned();
                let address = bridge_address(cluster, &id, "alone");
                (id, address)
            })
            .collect();
        cluster.kill(1);
        cluster.start(1);
        cluster.eventually_ok(1, &["service", "scale", "--detach", "alone=4"], WAIT);
        cluster.wait_running(1, "alone", 4, WAIT);
        let after: Vec<(String, String)> = cluster
            .tasks(1, "alone")
            .iter()
            .map(|t| {
                let id = t["meta"]["id"].as_str().unwrap_or("").to_owned();
                let address = bridge_address(cluster, &id, "alone");
                (id, address)
            })
            .collect();
        for kept in &before {
            assert!(after.contains(kept), "{kept:?} kept in {after:?}");
        }
        let distinct: std::collections::BTreeSet<&String> = after.iter().map(|(_, a)| a).collect();
        assert_eq!(distinct.len(), 4, "{after:?}");
    }
}

/// `ARGS` run in task `id`'s namespace on host 1; its output.
fn in_task(cluster: &Cluster, id: &str, args: &[&str]) -> String {
    let out = cluster.in_task(1, id, args);
    assert!(
        out.status.success(),
        "`{}` in task {id}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Task `id`'s address on its node-local bridge (the interface of its default route),
/// checked to be on the bridge its service's tasks join.
fn bridge_address(cluster: &Cluster, id: &str, service: &str) -> String {
    let route = in_task(cluster, id, &["ip", "-4", "route", "show", "default"]);
    let gateway = if service == "alone" {
        "172.17.0.1"
    } else {
        "172.18.0.1"
    };
    assert!(route.contains(&format!("via {gateway} ")), "{route}");
    let device = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_else(|| panic!("a device in {route:?}"))
        .to_owned();
    let shown = in_task(
        cluster,
        id,
        &["ip", "-4", "-o", "addr", "show", "dev", &device],
    );
    shown
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("an address in {shown:?}"))
        .to_owned()
}

/// `skiff info --format json` on host `i`: the secrets the node holds (IDs).
fn secrets_held(cluster: &Cluster, i: usize) -> Vec<String> {
    let info: serde_json::Value =
        serde_json::from_str(&cluster.ok(i, &["info", "--format", "json"])).unwrap();
    info["secrets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            todo.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            return true;
        }
    }
    false
}

#[test]
fn secrets_and_configs_reach_only_their_task_on_a_tmpfs_with_their_modes() {
    let mut cluster = Cluster::on_network(2).with_containerd();
    cluster.form(1);
    let archive = cluster.dir().join("busybox.tar");
    busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    cluster.ok(2, &["image", "load", archive.to_str().unwrap()]);
    let files = [
        ("db-password", b"s3cr3t-db-value-42".as_slice()),
        ("tls-key", b"-----BEGIN KEY----- k3y-bytes-77".as_slice()),
        ("app-conf", b"listen 80".as_slice()),
    ];
    for (name, data) in files {
        let path = cluster.dir().join(name);
        std::fs::write(&path, data).unwrap();
        let kind = if name == "app-conf" {
            "config"
        } else {
            "secret"
        };
        cluster.ok(1, &[kind, "create", name, path.to_str().unwrap()]);
    }
    // The container checks what it sees against digests and prints only the verdicts: the
    // bytes must not be in its command (the spec is served) nor in its log (on disk).
    let digest = |data: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(data))
    };
    let script = format!(
        r#"
check() {{ got=$(sha256sum < "$1" | cut -c1-64); mode=$(stat -c %a "$1");
  if [ "$got" = "$2" ] && [ "$mode" = "$3" ] && grep -q " $1 tmpfs ro" /proc/mounts;
  then echo "ok $1 uid=$(stat -c %u "$1")"; else echo "bad $1 mode=$mode"; fi; }}
check /run/secrets/db-password {} 444
check /etc/ssl/key.pem {} 400
check /etc/app/app.conf {} 444
exec sleep 600"#,
        digest(files[0].1),
        digest(files[1].1),
        digest(files[2].1)
    );
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "app",
            "--detach",
            "--constraint",
            "node.hostname==host2",
            "--secret",
            "db-password",
            "--secret",
            "source=tls-key,target=/etc/ssl/key.pem,uid=1000,mode=0400",
            "--config",
            "source=app-conf,target=/etc/app/app.conf",
            "busybox:test",
            "sh",
            "-c",
            &script,
        ],
    );
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster.wait_running(1, "app", 1, WAIT)
    }))
    .is_err()
    {
        panic!("{}", cluster.ok(1, &["service", "ps", "--no-trunc", "app"]));
    }
    let logs = wait_until("the task's verdicts", WAIT, || {
        let logs = cluster.ok(1, &["service", "logs", "app"]);
        (logs.matches("ok /").count() + logs.matches("bad /").count() == 3).then_some(logs)
    });
    for target in [
        "/run/secrets/db-password",
        "/etc/ssl/key.pem",
        "/etc/app/app.conf",
    ] {
        assert!(logs.contains(&format!("ok {target}")), "{logs}");
    }
    assert!(logs.contains("ok /etc/ssl/key.pem uid=1000"), "{logs}");
    let inspect = cluster.ok(1, &["service", "inspect", "--pretty", "app"]);
    assert!(
        inspect.contains("db-password") && inspect.contains("/etc/ssl/key.pem"),
        "{inspect}"
    );
    let json = cluster.ok(1, &["service", "inspect", "--format", "json", "app"]);
    for (name, data) in files {
        assert!(
            !json.contains(std::str::from_utf8(data).unwrap()),
            "{name}: {json}"
        );
    }

    // Only the node running the task holds its secrets, and no disk holds their bytes.
    assert_eq!(secrets_held(&cluster, 2).len(), 2);
    assert!(secrets_held(&cluster, 1).is_empty());
    for i in 1..=2 {
        for (name, data) in files {
            assert!(
                !any_file_holds(cluster.host(i).data_dir(), data),
                "host {i}'s data directory holds {name}"
            );
        }
    }

    // The task gone, its node holds nothing and its files are unmounted.
    let task = cluster.tasks(1, "app")[0]["meta"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster.ok(1, &["service", "rm", "app"]);
    wait_until("the secrets dropped from host 2", WAIT, || {
        secrets_held(&cluster, 2).is_empty().then_some(())
    });
    wait_until("the task's files removed", WAIT, || {
        (!agent_runtime::task_files_dir(&task).exists()).then_some(())
    });
}

#[test]
fn logging_drivers_rotate_json_files_send_syslog_and_keep_nothing_with_none() {
    let cluster = one_node();
    let image = busybox_in_registry();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let syslog_address = format!("syslog-address=udp://{}", syslog.local_addr().unwrap());
    let chatty = "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done; exec sleep 600";
    for (name, log_args) in [
        (
            "json",
            vec![
                "--log-driver",
                "json-file",
                "--log-opt",
                "max-size=2k",
                "--log-opt",
                "max-file=3",
            ],
        ),
        (
            "sys",
            vec![
                "--log-driver",
                "syslog",
                "--log-opt",
                &syslog_address,
                "--log-opt",
                "tag=web-tag",
            ],
        ),
        ("quiet", vec!["--log-driver", "none"]),
    ] {
        let mut args = vec!["service", "create", "--detach", "--name", name];
        args.extend(log_args);
        args.extend([image, "sh", "-c", chatty]);
        cluster.ok(1, &args);
    }
    // An unknown driver or option is refused where it is written.
    let err = cluster.fails(
        1,
        &[
            "service",
            "create",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-sise=1k",
            image,
        ],
    );
    assert!(err.contains("unknown option \"max-sise\""), "{err}");
    for name in ["json", "sys", "quiet"] {
        cluster.wait_running(1, name, 1, WAIT);
    }
    let task_dir = |service: &str| {
        let id = cluster.tasks(1, service)[0]["meta"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        cluster.host(1).data_dir().join("containers/tasks").join(id)
    };

    // json-file: Docker's records, at most three files of at most 2 KiB.
    let dir = task_dir("json");
    let logs = wait_until("the json task's last line", WAIT, || {
        let logs = cluster.ok(1, &["service", "logs", "json"]);
        logs.contains("line 399").then_some(logs)
    });
    assert!(!logs.contains("line 0\n"), "rotated away: {logs}");
    let files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("task-json.log"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|(_, size)| *size <= 2048), "{files:?}");
    let current = std::fs::read_to_string(dir.join("task-json.log")).unwrap();
    assert!(
        current.contains("\"log\":\"line 399\\n\",\"stream\":\"stdout\""),
        "{current}"
    );

    // syslog: the lines arrive at the test's listener with the tag.
    let mut buf = [0u8; 2048];
    let (n, _) = syslog.recv_from(&mut buf).expect("a syslog message");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.contains(" web-tag: line "), "{message}");
    let err = cluster.fails(1, &["service", "logs", "sys"]);
    assert!(err.contains("syslog driver"), "{err}");

    // none: nothing is kept, and logs says why there is nothing to read.
    let dir = task_dir("quiet");
    let err = cluster.fails(1, &["service", "logs", "quiet"]);
    assert!(err.contains("none driver"), "{err}");
    assert!(!dir.join("task.log").exists() && !dir.join("task-json.log").exists());
}

/// A TCP proxy to `upstream` that passes the first `limit` bytes the upstream sends (over
/// all connections) and holds the rest until the gate opens: a pull through it stops part
/// way through its first layer, for as long as the test looks.
struct HeldProxy {
    addr: String,
    gate: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl HeldProxy {
    fn start(upstream: &str, limit: usize) -> Self {
        use std::io::{Read as _, Write as _};
        use std::sync::{Arc, Condvar, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let addr = listener.local_addr().expect("addr").to_string();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sent = Arc::new(Mutex::new(0usize));
        let upstream = upstream.to_owned();
        let held = gate.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut to_server, mut from_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_client, &mut to_server);
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                let (gate, sent) = (held.clone(), sent.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match from_server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut at = 0;
                        while at < n {
                            let allowed = {
                                let mut sent = sent.lock().unwrap();
                                let open = *gate.0.lock().unwrap();
                                let room = if open {
                                    n - at
                                } else {
                                    limit.saturating_sub(*sent).min(n - at)
                                };
                                *sent += room;
                                room
                            };
                            if allowed == 0 {
                                let (lock, opened) = &*gate;
                                let _unused = opened
                                    .wait_while(lock.lock().unwrap(), |open| !*open)
                                    .unwrap();
                                continue;
                            }
                            if to_client.write_all(&buf[at..at + allowed]).is_err() {
                                return;
                            }
                            at += allowed;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { addr, gate }
    }

    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
}

impl Drop for HeldProxy {
    fn drop(&mut self) {
        self.open();
    }
}

#[test]
fn a_task_waiting_on_its_pull_reports_the_bytes_pulled_in_its_status() {
    let image = busybox_in_registry();
    let (registry, path) = image.split_once('/').expect("registry/repository");
    // The manifests and config are far smaller than this; the layer is larger.
    let proxy = HeldProxy::start(registry, 16 * 1024);
    let mut cluster = Cluster::new(1)
        .with_containerd()
        .with_daemon_args(1, &["--insecure-registry", &proxy.addr]);
    cluster.form(1);
    let through_proxy = format!("{}/{path}", proxy.addr);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "pulled",
            "--detach",
            &through_proxy,
            "sleep",
            "600",
        ],
    );
    let message = wait_until("the task to report its pull's progress", WAIT, || {
        let tasks = cluster.tasks(1, "pulled");
        tasks.iter().find_map(|t| {
            let message = t["status"]["message"].as_str().unwrap_or_default();
            (task_state(t, "observed") == "TASK_STATE_PREPARING"
                && message.starts_with("pulling image: "))
            .then(|| message.to_owned())
        })
    });
    // Some bytes of the layer came, not all of them (the proxy holds the rest).
    let (done, total) = message["pulling image: ".len()..]
        .split_once('/')
        .unwrap_or_else(|| panic!("{message}"));
    assert_ne!(done, "0B", "{message}");
    assert_ne!(done, total, "{message}");
    proxy.open();
    cluster.wait_running(1, "pulled", 1, WAIT);
}
