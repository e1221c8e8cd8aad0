//! skiffd with the containerd runtime: services from a registry image, `service logs`,
//! health checks deciding a task's fate, `skiff image load`, clear failures for missing
//! images, private images with `--with-registry-auth`, and a killed skiffd whose containers
//! keep running and are adopted on restart.

use std::time::Duration;

use integration_tests::containerd::{
    busybox_image, busybox_in_auth_registry, busybox_in_registry, REGISTRY_LOGIN,
};
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
