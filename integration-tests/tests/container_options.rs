//! Container options on a real containerd (issue 18): each option seen from inside the
//! task (PID 1's limits, the capability mask, a sysctl, PID 1 the init, `/etc/hosts`,
//! `/etc/resolv.conf`, `id`, the terminal, the OOM score, an alias resolving), host
//! networking seeing the node's interfaces without a VIP, bad input refused at `service
//! create` or REJECTED naming the flag, and a table of `service update` forms each changing
//! the running service.

use std::time::Duration;

use integration_tests::containerd::busybox_image;
use integration_tests::netns::TestNetwork;
use integration_tests::{task_state, wait_until, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// The image the tests run, loaded onto the host (a test host's namespace does not reach
/// the test registry on the machine's loopback).
const IMAGE: &str = "busybox:test";

fn one_host() -> Cluster {
    let mut cluster = Cluster::on_network(1).with_containerd();
    cluster.form(1);
    let archive = cluster.dir().join("busybox.tar");
    busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    cluster.ok(1, &["image", "load", archive.to_str().unwrap()]);
    cluster
}

/// The ID of the running task of `service` (one replica, desired running).
fn running_task(cluster: &Cluster, service: &str) -> String {
    wait_until(&format!("a running task of {service}"), WAIT, || {
        cluster
            .tasks(1, service)
            .into_iter()
            .find(|t| {
                task_state(t, "observed") == "TASK_STATE_RUNNING"
                    && task_state(t, "desired") == "TASK_STATE_RUNNING"
            })
            .map(|t| t["meta"]["id"].as_str().unwrap_or("").to_owned())
    })
}

/// `sh -c SCRIPT` run inside task `id`'s container (as its main process runs: same user,
/// capabilities, working directory, and limits but for the race below); its output, stdout
/// and stderr.
///
/// The output goes through a file in the container's `/dev/shm`, read back through its main
/// process's root, not through `ctr`'s own streams: under load `ctr tasks exec` now and then
/// printed nothing for a probe that ran and succeeded (seen with markers echoed around the
/// script: none of them came through).
///
/// Limits are read from the task's PID 1, not from the exec'd process: runc 1.1's `exec`
/// sets the open-files limit of the process it starts racily (opencontainers/runc#4195),
/// and now and then a probe came up with its soft limit at the hard one.
fn exec(cluster: &Cluster, id: &str, script: &str) -> String {
    let n = rand_suffix();
    let file = format!("/dev/shm/.probe-{n}");
    let ns = cluster.containerd_namespace(1);
    let ctr = || {
        let mut c = std::process::Command::new("ctr");
        c.arg("-a")
            .arg(integration_tests::containerd::socket())
            .args(["-n", &ns]);
        c
    };
    let out = ctr()
        .args(["tasks", "exec", "--exec-id", &format!("t{n}"), id])
        .args(["sh", "-c", &format!("exec >{file} 2>&1; {script}")])
        .output()
        .expect("ctr tasks exec");
    let tasks = ctr().args(["tasks", "ls"]).output().expect("ctr tasks ls");
    let pid = String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(id)).then(|| words.next().unwrap_or("").to_owned())
        })
        .unwrap_or_else(|| panic!("task {id} is not running"));
    let path = format!("/proc/{pid}/root{file}");
    // A probe that did not run proves nothing, least of all that something is absent.
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "`{script}` did not run in task {id} ({path}: {e}); ctr {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&path);
    text
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// The capability mask (`CapEff`) a process with these capabilities shows.
fn mask(caps: &[String]) -> u64 {
    caps.iter()
        .filter_map(|c| {
            proto::container_options::ALL_CAPABILITIES
                .iter()
                .position(|x| x == c)
        })
        .fold(0, |m, bit| m | (1 << bit))
}

/// The task's REJECTED status error, once it is rejected.
fn rejected_err(cluster: &Cluster, service: &str) -> String {
    let task = wait_until(&format!("a task of {service} to be rejected"), WAIT, || {
        cluster
            .tasks(1, service)
            .into_iter()
            .find(|t| task_state(t, "observed") == "TASK_STATE_REJECTED")
    });
    task["status"]["err"].as_str().unwrap_or("").to_owned()
}

/// Whether skiffd (this test's process, as root) may lower OOM scores: CAP_SYS_RESOURCE.
fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << 24) != 0)
}

#[test]
fn each_container_option_is_seen_from_inside_the_task() {
    let cluster = one_host();
    let image = IMAGE;
    cluster.ok(1, &["network", "create", "front"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "opts",
            "--network",
            "name=front,alias=optalias",
            "--ulimit",
            "nofile=1024:2048",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "chown",
            "--sysctl",
            "net.core.somaxconn=321",
            "--init",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.com",
            "--dns-option",
            "timeout:2",
            "--host",
            "db.local:10.9.8.7",
            "--group",
            "web",
            "--tty",
            "--oom-score-adj",
            "200",
            image,
            "sh",
            "-c",
            "echo started on $(tty); exec sleep 100000",
        ],
    );
    let id = running_task(&cluster, "opts");

    let limits = exec(&cluster, &id, "grep 'Max open files' /proc/1/limits");
    let words: Vec<&str> = limits.split_whitespace().collect();
    assert_eq!(words[3..5], ["1024", "2048"], "{limits}");

    let caps =
        proto::container_options::capabilities(&["CAP_NET_ADMIN".into()], &["CAP_CHOWN".into()]);
    let status = exec(&cluster, &id, "grep CapEff /proc/self/status");
    assert_eq!(
        status.split_whitespace().nth(1),
        Some(format!("{:016x}", mask(&caps)).as_str()),
        "{status}"
    );

    assert_eq!(
        exec(&cluster, &id, "cat /proc/sys/net/core/somaxconn").trim(),
        "321"
    );
    let init = exec(&cluster, &id, "tr '\\0' ' ' < /proc/1/cmdline");
    assert!(init.starts_with("/sbin/docker-init -- sh -c"), "{init}");

    let resolv = exec(&cluster, &id, "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    assert!(
        !resolv.contains("192.0.2.53"),
        "forwarded, not named: {resolv}"
    );
    assert!(resolv.contains("search example.com"), "{resolv}");
    assert!(resolv.contains("options ndots:0 timeout:2"), "{resolv}");

    let hosts = exec(&cluster, &id, "cat /etc/hosts");
    assert!(hosts.contains("10.9.8.7 db.local"), "{hosts}");
    let id_out = exec(&cluster, &id, "id");
    assert!(id_out.contains("1000(web)"), "{id_out}");
    assert_eq!(
        exec(&cluster, &id, "cat /proc/1/oom_score_adj").trim(),
        "200"
    );
    let tty = exec(
        &cluster,
        &id,
        "readlink /proc/1/fd/1; tr '\\0' '\\n' < /proc/1/environ",
    );
    assert!(tty.contains("/dev/pts/"), "{tty}");
    assert!(tty.contains("TERM=xterm"), "{tty}");
    // The terminal's output still reaches the logs.
    let logs = wait_until("the task's first line in its logs", WAIT, || {
        let logs = cluster.ok(1, &["service", "logs", "opts"]);
        logs.contains("started on /dev/pts/").then_some(logs)
    });
    assert!(logs.contains("started on"), "{logs}");
    // A network a service names is not dangling.
    let used = cluster.ok(1, &["network", "ls", "--filter", "dangling=false"]);
    assert!(
        used.contains(" front ") && used.contains(" ingress "),
        "{used}"
    );
    let dangling = cluster.ok(1, &["network", "ls", "--filter", "dangling=true"]);
    assert!(!dangling.contains(" front "), "{dangling}");
    // The alias resolves on the network.
    let found = wait_until("the alias to resolve", WAIT, || {
        let out = exec(&cluster, &id, "nslookup optalias 127.0.0.11");
        (out.lines().filter(|l| l.starts_with("Address")).count() >= 2).then_some(out)
    });
    assert!(found.contains("optalias"), "{found}");
}

#[test]
fn host_networking_sees_the_node_s_interfaces_and_has_no_vip() {
    let cluster = one_host();
    let image = IMAGE;
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "onhost",
            "--network",
            "host",
            "--host",
            "extra.local:10.2.3.4",
            image,
            "sleep",
            "100000",
        ],
    );
    let id = running_task(&cluster, "onhost");
    // The node's hostname and hosts file (with the task's line), as Docker's host network.
    let pid = cluster.pid(1).unwrap().to_string();
    let node_hostname = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-u", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        exec(&cluster, &id, "hostname").trim(),
        String::from_utf8_lossy(&node_hostname.stdout).trim()
    );
    let hosts = exec(&cluster, &id, "cat /etc/hosts");
    assert!(
        hosts.contains("localhost") && hosts.ends_with("10.2.3.4 extra.local\n"),
        "{hosts}"
    );
    let addrs = exec(&cluster, &id, "ip -o addr");
    assert!(
        addrs.contains(&format!("{}/", TestNetwork::address(1))),
        "the task sees its node's address: {addrs}"
    );
    let task = cluster
        .tasks(1, "onhost")
        .into_iter()
        .find(|t| t["meta"]["id"] == id.as_str())
        .unwrap();
    assert!(
        task["networks"].as_array().is_none_or(|n| n.is_empty()),
        "{task}"
    );
    let inspect: Value =
        serde_json::from_str(&cluster.ok(1, &["service", "inspect", "onhost"])).unwrap();
    let service = inspect.get(0).unwrap_or(&inspect);
    assert!(
        service["Endpoint"]["VirtualIPs"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "{service}"
    );
    // No namespace of its own: nothing under skt-<task>.
    assert!(!cluster.in_task(1, &id, &["true"]).status.success());

    let err = cluster.fails(1, &["network", "create", "host"]);
    assert!(err.contains("reserved"), "{err}");
}

#[test]
fn bad_options_are_refused_at_create_or_rejected_naming_the_flag() {
    let cluster = one_host();
    let image = IMAGE;
    cluster.ok(1, &["network", "create", "front"]);
    for (flags, want) in [
        (&["--ulimit", "nofile=10:5"][..], "--ulimit"),
        (
            &["--cap-add", "FLY"][..],
            "unknown capability \"FLY\" for --cap-add",
        ),
        (&["--sysctl", "vm.swappiness=1"][..], "not namespaced"),
        (
            &["--network", "host", "--network", "front"][..],
            "other networks",
        ),
        (&["--oom-score-adj", "1001"][..], "--oom-score-adj"),
    ] {
        let mut args = vec!["service", "create", "--detach"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[image, "sleep", "1000"]);
        let err = cluster.fails(1, &args);
        assert!(err.contains(want), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap();
    let above = format!("nofile=1024:{}", nr_open.trim().parse::<u64>().unwrap() + 1);
    let rejected: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "nosysctl",
            vec!["--sysctl", "net.core.no_such_thing=1"],
            "--sysctl net.core.no_such_thing",
        ),
        (
            "badvalue",
            vec!["--sysctl", "net.ipv4.ip_local_port_range=a b"],
            "--sysctl net.ipv4.ip_local_port_range",
        ),
        ("manyfiles", vec!["--ulimit", &above], "fs.nr_open"),
    ];
    for (name, flags, _) in &rejected {
        let mut args = vec!["service", "create", "--detach", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[image, "sleep", "1000"]);
        cluster.ok(1, &args);
    }
    for (name, _, want) in &rejected {
        let err = rejected_err(&cluster, name);
        assert!(err.contains(want), "{name}: {err}");
    }
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "lowoom",
            "--oom-score-adj",
            "-500",
            image,
            "sleep",
            "1000",
        ],
    );
    if has_sys_resource() {
        let id = running_task(&cluster, "lowoom");
        assert_eq!(
            exec(&cluster, &id, "cat /proc/1/oom_score_adj").trim(),
            "-500"
        );
    } else {
        let err = rejected_err(&cluster, "lowoom");
        assert!(
            err.contains("--oom-score-adj -500") && err.contains("CAP_SYS_RESOURCE"),
            "{err}"
        );
    }
}

/// What a row of the update table looks at after its update.
enum Seen {
    /// The script's output inside the new task contains the text.
    Inside(&'static str, &'static str),
    /// The script's output inside the new task lacks the text.
    NotInside(&'static str, &'static str),
    /// The service's spec (inspect JSON) has the value at the pointer.
    Spec(&'static str, Value),
}

#[test]
fn every_update_form_changes_the_running_service() {
    let cluster = one_host();
    let image = IMAGE;
    cluster.ok(1, &["network", "create", "front"]);
    cluster.ok(1, &["network", "create", "back"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "up",
            "--stop-grace-period",
            "0s",
            "--update-monitor",
            "1s",
            image,
            "sh",
            "-c",
            "exec sleep 100000",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "FROM_FILE=yes\n").unwrap();
    let env_file = env_file.to_str().unwrap().to_owned();
    let table: Vec<(Vec<&str>, Seen)> = vec![
        (
            vec!["--ulimit-add", "nofile=512:1024"],
            Seen::Inside(
                "grep 'open files' /proc/1/limits | tr -s ' '",
                "files 512 1024",
            ),
        ),
        (
            vec!["--ulimit-rm", "nofile"],
            Seen::NotInside(
                "grep 'open files' /proc/1/limits | tr -s ' '",
                "files 512 1024",
            ),
        ),
        (
            vec!["--cap-add", "SYS_PTRACE"],
            Seen::Inside("grep CapEff /proc/self/status", "a80c25fb"),
        ),
        (
            vec!["--cap-drop", "SYS_PTRACE"],
            Seen::Inside("grep CapEff /proc/self/status", "a80425fb"),
        ),
        (
            vec!["--sysctl-add", "net.core.somaxconn=222"],
            Seen::Inside("cat /proc/sys/net/core/somaxconn", "222"),
        ),
        (
            vec!["--sysctl-rm", "net.core.somaxconn"],
            Seen::NotInside("cat /proc/sys/net/core/somaxconn", "222"),
        ),
        (
            vec!["--init"],
            Seen::Inside("cat /proc/1/cmdline", "docker-init"),
        ),
        (
            vec!["--init=false"],
            Seen::NotInside("cat /proc/1/cmdline", "docker-init"),
        ),
        (
            vec!["--dns-add", "192.0.2.1"],
            Seen::Inside("cat /etc/resolv.conf", "nameserver 192.0.2.1"),
        ),
        (
            vec!["--dns-rm", "192.0.2.1"],
            Seen::NotInside("cat /etc/resolv.conf", "192.0.2.1"),
        ),
        (
            vec!["--dns-search-add", "example.org"],
            Seen::Inside("cat /etc/resolv.conf", "search example.org"),
        ),
        (
            vec!["--dns-option-add", "ndots:5"],
            Seen::Inside("cat /etc/resolv.conf", "options ndots:5"),
        ),
        (
            vec!["--host-add", "h1.local:10.1.2.3"],
            Seen::Inside("cat /etc/hosts", "10.1.2.3 h1.local"),
        ),
        (
            vec!["--host-rm", "h1.local"],
            Seen::NotInside("cat /etc/hosts", "h1.local"),
        ),
        (vec!["--group-add", "web"], Seen::Inside("id", "1000(web)")),
        (vec!["--group-rm", "web"], Seen::NotInside("id", "(web)")),
        (
            vec!["--tty"],
            Seen::Inside("readlink /proc/1/fd/1", "/dev/pts/"),
        ),
        (
            vec!["--tty=false"],
            Seen::NotInside("readlink /proc/1/fd/1", "/dev/pts/"),
        ),
        (
            vec!["--oom-score-adj", "300"],
            Seen::Inside("cat /proc/1/oom_score_adj", "300"),
        ),
        (
            vec!["--entrypoint", "sh -c 'exec sleep 100002' entry"],
            Seen::Inside("cat /proc/1/cmdline", "100002"),
        ),
        (
            vec!["--entrypoint", ""],
            Seen::Inside("cat /proc/1/cmdline", "100000"),
        ),
        (
            vec!["--user", "web"],
            Seen::Inside("echo uid=$(id -u)", "uid=1000"),
        ),
        (
            vec!["--user", ""],
            Seen::Inside("echo uid=$(id -u)", "uid=0"),
        ),
        (vec!["--workdir", "/tmp"], Seen::Inside("pwd", "/tmp")),
        (
            vec!["--hostname", "renamed"],
            Seen::Inside("hostname", "renamed"),
        ),
        (
            vec!["--env-add", "ADDED=1"],
            Seen::Inside("tr '\\0' '\\n' < /proc/1/environ", "ADDED=1"),
        ),
        (
            vec!["--env-file", &env_file],
            Seen::Inside("tr '\\0' '\\n' < /proc/1/environ", "FROM_FILE=yes"),
        ),
        (
            vec!["--read-only"],
            Seen::Inside("touch /x 2>&1; echo rc=$?", "rc=1"),
        ),
        (
            vec!["--read-only=false"],
            Seen::Inside("touch /x 2>&1; echo rc=$?", "rc=0"),
        ),
        (
            vec!["--mount-add", "type=tmpfs,target=/scratch"],
            Seen::Inside("cat /proc/mounts", " /scratch tmpfs"),
        ),
        (
            vec!["--mount-rm", "/scratch"],
            Seen::NotInside("cat /proc/mounts", "/scratch"),
        ),
        (
            vec!["--container-label-add", "tier=web"],
            Seen::Spec("/Spec/TaskTemplate/ContainerSpec/Labels/tier", "web".into()),
        ),
        (
            vec!["--network-add", "name=front,alias=upalias"],
            Seen::Inside("cat /etc/resolv.conf", "nameserver 127.0.0.11"),
        ),
        (
            vec!["--network-rm", "front"],
            Seen::Spec("/Spec/TaskTemplate/Networks", Value::Null),
        ),
        (
            vec!["--stop-signal", "SIGUSR1"],
            Seen::Spec(
                "/Spec/TaskTemplate/ContainerSpec/StopSignal",
                "SIGUSR1".into(),
            ),
        ),
        (
            vec!["--stop-grace-period", "1s"],
            Seen::Spec(
                "/Spec/TaskTemplate/ContainerSpec/StopGracePeriod",
                "1000000000".into(),
            ),
        ),
        (
            vec!["--health-cmd", "true", "--health-interval", "1s"],
            Seen::Spec(
                "/Spec/TaskTemplate/ContainerSpec/Healthcheck/Interval",
                "1000000000".into(),
            ),
        ),
        (
            vec![
                "--health-start-interval",
                "300ms",
                "--health-start-period",
                "5s",
            ],
            Seen::Spec(
                "/Spec/TaskTemplate/ContainerSpec/Healthcheck/StartInterval",
                "300000000".into(),
            ),
        ),
        (
            vec!["--no-healthcheck"],
            Seen::Spec(
                "/Spec/TaskTemplate/ContainerSpec/Healthcheck/Test/0",
                "NONE".into(),
            ),
        ),
        (
            vec![
                "--restart-condition",
                "on-failure",
                "--restart-delay",
                "2s",
                "--restart-max-attempts",
                "3",
                "--restart-window",
                "1m",
            ],
            Seen::Spec("/Spec/TaskTemplate/RestartPolicy/MaxAttempts", "3".into()),
        ),
        (
            vec!["--placement-pref-add", "spread=node.labels.zone"],
            Seen::Spec(
                "/Spec/TaskTemplate/Placement/Preferences/0/Spread/SpreadDescriptor",
                "node.labels.zone".into(),
            ),
        ),
        (
            vec!["--placement-pref-rm", "spread=node.labels.zone"],
            Seen::Spec("/Spec/TaskTemplate/Placement/Preferences", Value::Null),
        ),
        (
            vec!["--replicas-max-per-node", "2"],
            Seen::Spec("/Spec/TaskTemplate/Placement/MaxReplicas", "2".into()),
        ),
        (
            vec!["--endpoint-mode", "dnsrr"],
            Seen::Spec("/Spec/EndpointSpec/Mode", "dnsrr".into()),
        ),
    ];
    for (flags, seen) in table {
        let before = running_task(&cluster, "up");
        let mut args = vec!["service", "update"];
        args.extend_from_slice(&flags);
        args.push("up");
        cluster.ok(1, &args);
        let inspect: Value =
            serde_json::from_str(&cluster.ok(1, &["service", "inspect", "up"])).unwrap();
        let service = inspect.get(0).cloned().unwrap_or(inspect);
        match seen {
            Seen::Inside(script, want) | Seen::NotInside(script, want) => {
                let id = running_task(&cluster, "up");
                assert_ne!(id, before, "{flags:?} replaced the task");
                let out = exec(&cluster, &id, script);
                let inside = matches!(seen, Seen::Inside(..));
                assert_eq!(
                    out.contains(want),
                    inside,
                    "{flags:?}: `{script}` gave {out:?}"
                );
            }
            Seen::Spec(pointer, want) => {
                let got = service.pointer(pointer).cloned().unwrap_or(Value::Null);
                let got = match got {
                    Value::Array(a) if a.is_empty() => Value::Null,
                    Value::Number(n) => Value::String(n.to_string()),
                    other => other,
                };
                assert_eq!(got, want, "{flags:?}: {pointer} in {service}");
            }
        }
    }
}

#[test]
fn host_processes_run_on_the_host_network_and_refuse_container_options() {
    // The process runtime: tasks are host processes.
    let mut cluster = Cluster::on_network(1);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "onhost",
            "--network",
            "host",
            "--restart-condition",
            "none",
            "busybox",
            "sh",
            "-c",
            "ip -o addr; sleep 100000",
        ],
    );
    let logs = wait_until("the task's interfaces in its logs", WAIT, || {
        let logs = cluster.ok(1, &["service", "logs", "--raw", "onhost"]);
        logs.contains(" lo ").then_some(logs)
    });
    assert!(
        logs.contains(&format!("{}/", TestNetwork::address(1))),
        "the host process sees its node's address: {logs}"
    );
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "limited",
            "--ulimit",
            "nofile=100",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let err = rejected_err(&cluster, "limited");
    assert!(err.starts_with("--ulimit needs a container"), "{err}");
}

/// A DNS server on `socket` answering every A question with `answer` (and others with no
/// record), until dropped.
struct FakeDns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeDns {
    fn serve(socket: std::net::UdpSocket, answer: [u8; 4]) -> FakeDns {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                // The question: its name (labels up to a zero byte), type and class.
                let mut i = 12;
                while i < n && buf[i] != 0 {
                    i += usize::from(buf[i]) + 1;
                }
                if n < 12 || i + 5 > n {
                    continue;
                }
                let a = u16::from_be_bytes([buf[i + 1], buf[i + 2]]) == 1;
                let mut reply = buf[..2].to_vec();
                reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(a), 0, 0, 0, 0]);
                reply.extend_from_slice(&buf[12..i + 5]);
                if a {
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    reply.extend_from_slice(&answer);
                }
                let _ = socket.send_to(&reply, from);
            }
        });
        FakeDns {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_task_on_an_overlay_resolves_through_its_own_dns_servers() {
    let cluster = one_host();
    // The task's --dns server, on its node's network (where the embedded server asks from).
    let addr = TestNetwork::address(1);
    let bind = format!("{addr}:53");
    let socket = cluster
        .on_host(1, move || {
            std::net::UdpSocket::bind(bind).expect("bind the fake DNS")
        })
        .join()
        .unwrap();
    let _dns = FakeDns::serve(socket, [192, 0, 2, 99]);
    cluster.ok(1, &["network", "create", "front"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--name",
            "asks",
            "--network",
            "front",
            "--dns",
            &addr,
            IMAGE,
            "sleep",
            "100000",
        ],
    );
    let id = running_task(&cluster, "asks");
    let out = wait_until("a name to resolve through --dns", WAIT, || {
        let out = exec(&cluster, &id, "nslookup anything.example 127.0.0.11");
        out.contains("192.0.2.99").then_some(out)
    });
    assert!(out.contains("192.0.2.99"), "{out}");
    let resolv = exec(&cluster, &id, "cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 127.0.0.11") && !resolv.contains(&addr),
        "{resolv}"
    );
}
