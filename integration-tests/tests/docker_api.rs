//! The Docker Engine API end to end: the real `docker` client (and raw HTTP for what it
//! cannot send) against `skiffd` processes on loopback. `SKIFF_DOCKER` picks the client;
//! otherwise `/usr/local/bin/docker`, then `/usr/bin/docker` (Debian's `docker.io`). No
//! dockerd is ever started.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);

/// The docker client to drive skiff with.
fn docker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SKIFF_DOCKER") {
        return PathBuf::from(path);
    }
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no docker client: install Debian's docker.io (deploy/test.sh does) or set SKIFF_DOCKER")
}

/// The docker client pointed at one daemon's Engine API.
struct Docker {
    host: String,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Docker {
    fn on(cluster: &Cluster, i: usize) -> Self {
        let config = cluster.dir().join(format!("docker-config-{i}"));
        std::fs::create_dir_all(&config).expect("docker config dir");
        Self {
            host: cluster.host(i).docker_host(),
            config,
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_bin());
        c.env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("DOCKER_HOST", &self.host)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    fn run_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("docker output")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`docker {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`docker {}` should have failed but printed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn eventually(&self, args: &[&str], want: impl Fn(&str) -> bool) -> String {
        wait_until(&format!("`docker {}`", args.join(" ")), SETTLE, || {
            let out = self.run(args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && want(&text)).then_some(text)
        })
    }
}

/// One HTTP/1.1 request over a unix socket: the status and the body.
fn http(docker_host: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let socket = docker_host.strip_prefix("unix://").expect("a unix socket");
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A server may answer (say 501) without reading the body and close: the answer counts.
    match stream.write_all(request.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("write request: {e}"),
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"));
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The header `name` of the answer to a HEAD request.
fn head_header(docker_host: &str, path: &str, name: &str) -> Option<String> {
    let socket = docker_host.strip_prefix("unix://").expect("a unix socket");
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("not a Docker error body: {body}"))
}

/// A two-node swarm formed through the docker client: host 1 manager, host 2 worker.
fn docker_swarm(cluster: &mut Cluster) -> (Docker, Docker) {
    cluster.start_all();
    let (d1, d2) = (Docker::on(cluster, 1), Docker::on(cluster, 2));
    let a1 = cluster.host(1).addr.clone();
    let a2 = cluster.host(2).addr.clone();
    let out = d1.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        &a1,
        "--listen-addr",
        &a1,
    ]);
    assert!(out.contains("Swarm initialized"), "{out}");
    let token = d1.ok(&["swarm", "join-token", "-q", "worker"]);
    let out = d2.ok(&[
        "swarm",
        "join",
        "--token",
        token.trim(),
        "--advertise-addr",
        &a2,
        "--listen-addr",
        &a2,
        &a1,
    ]);
    assert!(
        out.contains("This node joined a swarm as a worker"),
        "{out}"
    );
    d1.eventually(
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |t| t.lines().filter(|l| l.ends_with("Ready")).count() == 2,
    );
    (d1, d2)
}

#[test]
fn version_info_and_ping_answer_as_dockerd_does() {
    let mut cluster = Cluster::new(1);
    cluster.start_all();
    let docker = Docker::on(&cluster, 1);
    let socket = cluster.host(1).docker_host();
    let mode = std::fs::metadata(socket.strip_prefix("unix://").unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o660,
        "the Docker API socket is root's and its group's"
    );

    let out = docker.ok(&[
        "version",
        "--format",
        "{{.Server.Platform.Name}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
    ]);
    assert_eq!(out.trim(), "skiff 1.50 1.24");
    let out = docker.ok(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ]);
    assert_eq!(out.trim(), "inactive false");
    let out = docker.ok(&["info", "--format", "{{.Name}} {{.OSType}}"]);
    assert_eq!(out.trim(), "host1 linux");

    let (status, body) = http(&socket, "GET", "/_ping", None);
    assert_eq!((status, body.as_str()), (200, "OK"));
    assert_eq!(
        head_header(&socket, "/_ping", "Api-Version").as_deref(),
        Some("1.50")
    );
    assert_eq!(
        head_header(&socket, "/_ping", "Ostype").as_deref(),
        Some("linux")
    );
    assert_eq!(
        head_header(&socket, "/v1.41/_ping", "Swarm").as_deref(),
        Some("inactive")
    );
    let (status, body) = http(&socket, "GET", "/v1.12/version", None);
    assert_eq!(status, 400);
    assert_eq!(
        message(&body),
        "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
    let (status, body) = http(&socket, "GET", "/v1.99/version", None);
    assert_eq!(status, 400);
    assert_eq!(
        message(&body),
        "client version 1.99 is too new. Maximum supported API version is 1.50"
    );
    let (status, body) = http(&socket, "GET", "/v1.41/version", None);
    assert_eq!(status, 200, "{body}");

    // Outside a swarm, manager requests get dockerd's 503 and text.
    let err = docker.fails(&["node", "ls"]);
    assert!(
        err.contains(
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\""
        ),
        "{err}"
    );
    let (status, _) = http(&socket, "GET", "/v1.41/nodes", None);
    assert_eq!(status, 503);
    let err = docker.fails(&["swarm", "leave"]);
    assert!(err.contains("This node is not part of a swarm"), "{err}");
}

#[test]
fn swarm_and_nodes_through_the_docker_client() {
    let mut cluster = Cluster::new(2);
    let (d1, d2) = docker_swarm(&mut cluster);
    let h1 = cluster.host(1).docker_host();

    // The ping's Swarm header, docker info and node ls as a manager, and the worker's refusal.
    assert_eq!(
        head_header(&h1, "/_ping", "Swarm").as_deref(),
        Some("active/manager")
    );
    assert_eq!(
        head_header(&cluster.host(2).docker_host(), "/_ping", "Swarm").as_deref(),
        Some("active/worker")
    );
    let out = d1.ok(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Swarm.Managers}}"]);
    assert_eq!(out.trim(), "active true 2 1");
    let out = d1.ok(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.ManagerStatus}} {{.Self}}",
    ]);
    assert!(out.contains("host1 Leader true"), "{out}");
    assert!(out.contains("host2  false"), "{out}");
    let err = d2.fails(&["node", "ls"]);
    assert!(
        err.contains("Worker nodes can't be used to view or modify cluster state"),
        "{err}"
    );
    let out = d2.ok(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ]);
    assert_eq!(out.trim(), "active false");
    let err = d1.fails(&["swarm", "init"]);
    assert!(
        err.contains("This node is already part of a swarm"),
        "{err}"
    );

    // Filters, inspect with templates, labels and availability.
    let out = d1.ok(&[
        "node",
        "ls",
        "--filter",
        "role=worker",
        "--format",
        "{{.Hostname}}",
    ]);
    assert_eq!(out.trim(), "host2");
    d1.ok(&[
        "node",
        "update",
        "--label-add",
        "zone=a",
        "--availability",
        "drain",
        "host2",
    ]);
    let out = d1.ok(&[
        "node",
        "inspect",
        "host2",
        "--format",
        "{{index .Spec.Labels \"zone\"}} {{.Spec.Availability}} {{.Spec.Role}}",
    ]);
    assert_eq!(out.trim(), "a drain worker");
    let out = d1.ok(&[
        "node",
        "ls",
        "--filter",
        "node.label=zone=a",
        "--format",
        "{{.Hostname}}",
    ]);
    assert_eq!(out.trim(), "host2");
    let out = d1.ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{.Description.Hostname}} {{.ManagerStatus.Leader}}",
    ]);
    assert_eq!(out.trim(), "host1 true");
    d1.ok(&["node", "update", "--availability", "active", "host2"]);

    // Promote and demote.
    d1.ok(&["node", "promote", "host2"]);
    d1.eventually(
        &[
            "node",
            "inspect",
            "host2",
            "--format",
            "{{.ManagerStatus.Reachability}}",
        ],
        |t| t.trim() == "reachable",
    );
    d2.eventually(&["node", "ls", "--format", "{{.Hostname}}"], |t| {
        t.lines().count() == 2
    });
    d1.ok(&["node", "demote", "host2"]);
    d1.eventually(
        &[
            "node",
            "inspect",
            "host2",
            "--format",
            "{{.Spec.Role}} {{.ManagerStatus}}",
        ],
        |t| t.trim() == "worker <nil>",
    );

    // Swarm settings and join-token rotation.
    d1.ok(&[
        "swarm",
        "update",
        "--task-history-limit",
        "7",
        "--cert-expiry",
        "48h",
    ]);
    let out = d1.ok(&["info", "--format", "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}} {{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}"]);
    assert_eq!(out.trim(), "7 48h0m0s");
    let before = d1.ok(&["swarm", "join-token", "-q", "worker"]);
    d1.ok(&["swarm", "join-token", "--rotate", "-q", "worker"]);
    let after = d1.ok(&["swarm", "join-token", "-q", "worker"]);
    assert_ne!(before, after, "the worker token was rotated");
    let manager = d1.ok(&["swarm", "join-token", "-q", "manager"]);
    assert_ne!(manager.trim(), after.trim());

    // Bad requests: refused with Docker's status and a sentence, nothing changed.
    let node: Value =
        serde_json::from_str(&http(&h1, "GET", "/v1.41/nodes/host2", None).1).unwrap();
    let version = node["Version"]["Index"].as_u64().unwrap();
    let cases = [
        (
            format!("/v1.41/nodes/host2/update?version={version}"),
            r#"{"Role":"worker","Availability":"active","Bogus":1}"#,
            400,
            "unknown field \"Bogus\"",
        ),
        (
            format!("/v1.41/nodes/host2/update?version={version}"),
            r#"{"Role":"worker","Availability":"active","Labels":[1]}"#,
            400,
            "Labels",
        ),
        (
            format!("/v1.41/nodes/host2/update?version={version}"),
            r#"{"Name":"x","Role":"worker","Availability":"active"}"#,
            400,
            "Spec.Name is not supported",
        ),
        (
            format!("/v1.41/nodes/host2/update?version={version}"),
            r#"{"Role":"boss","Availability":"active"}"#,
            400,
            "boss",
        ),
        (
            format!("/v1.41/nodes/host2/update?version={}", version - 1),
            r#"{"Role":"worker","Availability":"pause"}"#,
            500,
            "update out of sequence",
        ),
        (
            format!("/v1.41/nodes/nosuchnode/update?version={version}"),
            r#"{"Role":"worker","Availability":"active"}"#,
            404,
            "",
        ),
        (
            "/v1.41/nodes/host2/update?version=x".to_string(),
            r#"{}"#,
            400,
            "invalid version",
        ),
    ];
    for (path, body, status, text) in cases {
        let (got, answer) = http(&h1, "POST", &path, Some(body));
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(message(&answer).contains(text), "{path} {body}: {answer}");
    }
    let (status, _) = http(&h1, "GET", "/v1.41/nodes/nosuchnode", None);
    assert_eq!(status, 404);
    let (status, answer) = http(
        &h1,
        "GET",
        "/v1.41/nodes?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(status, 400, "{answer}");
    let again: Value =
        serde_json::from_str(&http(&h1, "GET", "/v1.41/nodes/host2", None).1).unwrap();
    assert_eq!(
        again["Version"]["Index"].as_u64(),
        Some(version),
        "nothing changed"
    );
    assert_eq!(again["Spec"]["Availability"], "active");

    // Leave and remove.
    let err = d1.fails(&["node", "rm", "host2"]);
    assert!(!err.is_empty());
    d2.ok(&["swarm", "leave"]);
    d1.eventually(
        &[
            "node",
            "ls",
            "--filter",
            "name=host2",
            "--format",
            "{{.Status}}",
        ],
        |t| t.trim() == "Down",
    );
    d1.ok(&["node", "rm", "host2"]);
    let out = d1.ok(&["node", "ls", "--format", "{{.Hostname}}"]);
    assert_eq!(out.trim(), "host1");
    let out = d2.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(out.trim(), "inactive");
}

#[test]
fn autolock_and_unlock_through_the_docker_client() {
    let mut cluster = Cluster::new(1);
    cluster.start_all();
    let docker = Docker::on(&cluster, 1);
    let addr = cluster.host(1).addr.clone();
    let out = docker.ok(&[
        "swarm",
        "init",
        "--autolock",
        "--advertise-addr",
        &addr,
        "--listen-addr",
        &addr,
    ]);
    let key = docker.ok(&["swarm", "unlock-key", "-q"]);
    let key = key.trim().to_string();
    assert!(!key.is_empty());
    assert!(out.contains(&key), "init prints the unlock key: {out}");
    // Only /swarm/unlockkey shows it.
    let h1 = cluster.host(1).docker_host();
    for path in ["/v1.41/swarm", "/v1.41/info", "/v1.41/nodes"] {
        let (_, body) = http(&h1, "GET", path, None);
        assert!(!body.contains(&key), "{path} shows the unlock key");
        assert!(!body.contains("PRIVATE KEY"), "{path} shows a private key");
    }
    docker.ok(&["swarm", "unlock-key", "--rotate"]);
    let rotated = docker.ok(&["swarm", "unlock-key", "-q"]).trim().to_string();
    assert_ne!(rotated, key);

    cluster.stop(1);
    cluster.start(1);
    let out = docker.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(out.trim(), "locked");
    let err = docker.fails(&["node", "ls"]);
    assert!(err.contains("Swarm is encrypted and locked"), "{err}");
    let out = docker.run_input(&["swarm", "unlock"], &format!("{key}\n"));
    assert!(!out.status.success(), "the old key no longer unlocks");
    let out = docker.run_input(&["swarm", "unlock"], &format!("{rotated}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    docker.eventually(&["node", "ls", "--format", "{{.Hostname}}"], |t| {
        t.trim() == "host1"
    });
    docker.ok(&["swarm", "update", "--autolock=false"]);
    let out = docker.ok(&[
        "info",
        "--format",
        "{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}",
    ]);
    assert_eq!(out.trim(), "false");
}

#[test]
fn services_tasks_and_logs_through_the_docker_client() {
    let mut cluster = Cluster::new(2);
    let (d1, d2) = docker_swarm(&mut cluster);
    let h1 = cluster.host(1).docker_host();

    // Create with the live progress, as a user would (no registry holds `busybox` here:
    // the client must not ask one for its digest).
    let out = d1.ok(&[
        "service",
        "create",
        "--no-resolve-image",
        "--name",
        "web",
        "--replicas",
        "3",
        "--env",
        "GREETING=hello",
        "--label",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING from the task; exec sleep 600",
    ]);
    assert!(out.contains("converged"), "{out}");
    let out = d1.eventually(
        &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        |t| t.trim() == "web 3/3",
    );
    assert_eq!(out.trim(), "web 3/3");
    let out = d1.ok(&[
        "service",
        "ps",
        "web",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Name}} {{.CurrentState}}",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("Running")).count(),
        3,
        "{out}"
    );
    let out = d1.ok(&["service", "inspect", "web", "--format", "{{.Spec.Name}} {{.Spec.Mode.Replicated.Replicas}} {{index .Spec.Labels \"tier\"}} {{.Spec.UpdateConfig.Parallelism}}"]);
    assert_eq!(out.trim(), "web 3 front 1");
    let out = d1.ok(&["service", "inspect", "--pretty", "web"]);
    assert!(out.contains("Replicas:\t3"), "{out}");
    let out = d1.ok(&["node", "ps", "host1", "--format", "{{.Name}}"]);
    assert!(out.contains("web."), "{out}");

    // Logs, with the task context the client prints.
    let out = d1.eventually(&["service", "logs", "web"], |t| {
        t.lines()
            .filter(|l| l.contains("hello from the task"))
            .count()
            == 3
    });
    assert!(out.lines().all(|l| l.starts_with("web.")), "{out}");
    let task = d1.ok(&[
        "service",
        "ps",
        "-q",
        "--filter",
        "desired-state=running",
        "web",
    ]);
    let task = task.lines().next().unwrap().to_string();
    let out = d1.ok(&["service", "logs", "--raw", &task]);
    assert_eq!(out.trim(), "hello from the task");

    // The worker's own task containers, as `docker ps`, `inspect` and `logs` see them.
    let out = d2.ok(&[
        "ps",
        "--format",
        "{{.Names}} {{.Label \"com.docker.swarm.service.name\"}} {{.State}}",
    ]);
    assert!(!out.trim().is_empty(), "host2 runs a task of web");
    assert!(
        out.lines()
            .all(|l| l.starts_with("web.") && l.ends_with(" web running")),
        "{out}"
    );
    let name = out
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let out = d2.ok(&[
        "inspect",
        &name,
        "--format",
        "{{.State.Status}} {{index .Config.Labels \"com.docker.swarm.task.name\"}}",
    ]);
    assert_eq!(out.trim(), format!("running {name}"));
    let out = d2.eventually(&["logs", &name], |t| t.contains("hello from the task"));
    assert_eq!(out.trim(), "hello from the task");
    let err = d2.fails(&["rm", "-f", &name]);
    assert!(err.contains("tasks of services"), "{err}");
    let (status, _) = http(
        &cluster.host(2).docker_host(),
        "POST",
        "/v1.41/containers/create",
        Some("{}"),
    );
    assert_eq!(status, 501);

    // Scale, update, rollback.
    let out = d1.ok(&["service", "scale", "web=2"]);
    assert!(out.contains("converged"), "{out}");
    d1.eventually(
        &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        |t| t.trim() == "web 2/2",
    );
    d1.ok(&["service", "update", "--env-add", "EXTRA=1", "web"]);
    let out = d1.ok(&[
        "service",
        "inspect",
        "web",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Env}} {{.UpdateStatus.State}}",
    ]);
    // The docker client orders the variables as its map gives them.
    assert!(
        [
            "[GREETING=hello EXTRA=1] completed",
            "[EXTRA=1 GREETING=hello] completed"
        ]
        .contains(&out.trim()),
        "{out}"
    );
    d1.ok(&["service", "rollback", "web"]);
    let out = d1.ok(&[
        "service",
        "inspect",
        "web",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Env}} {{.UpdateStatus.State}}",
    ]);
    assert_eq!(out.trim(), "[GREETING=hello] rollback_completed");

    // Bad requests: Docker's status and a sentence, nothing changed.
    let service: Value =
        serde_json::from_str(&http(&h1, "GET", "/v1.41/services/web", None).1).unwrap();
    let version = service["Version"]["Index"].as_u64().unwrap();
    let spec = service["Spec"].clone();
    let with = |path: &[&str], value: Value| {
        let mut s = spec.clone();
        let mut at = &mut s;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        s.to_string()
    };
    let update = format!("/v1.41/services/web/update?version={version}");
    let cases = [
        (
            update.clone(),
            with(
                &["TaskTemplate", "ContainerSpec", "Bogus"],
                Value::Bool(true),
            ),
            400,
            "unknown field \"Bogus\" in TaskTemplate.ContainerSpec",
        ),
        (
            update.clone(),
            with(
                &["Mode", "Replicated", "Replicas"],
                Value::String("many".into()),
            ),
            400,
            "Mode.Replicated.Replicas",
        ),
        (
            update.clone(),
            with(
                &["TaskTemplate", "ContainerSpec", "OpenStdin"],
                Value::Bool(true),
            ),
            400,
            "TaskTemplate.ContainerSpec.OpenStdin is not supported",
        ),
        (
            format!("/v1.41/services/web/update?version={}", version - 1),
            with(&["Mode", "Replicated", "Replicas"], Value::from(5)),
            500,
            "update out of sequence",
        ),
        (
            format!("/v1.41/services/nosuch/update?version={version}"),
            spec.to_string(),
            404,
            "",
        ),
        (
            "/v1.41/services/create".to_string(),
            spec.to_string(),
            409,
            "",
        ),
        (
            "/v1.41/services/create".to_string(),
            with(&["Name"], Value::from(5)),
            400,
            "invalid type: integer `5`, expected a string at Name",
        ),
    ];
    for (path, body, status, text) in cases {
        let (got, answer) = http(&h1, "POST", &path, Some(&body));
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(message(&answer).contains(text), "{path}: {answer}");
    }
    let (status, _) = http(&h1, "GET", "/v1.41/services/nosuch", None);
    assert_eq!(status, 404);
    let again: Value =
        serde_json::from_str(&http(&h1, "GET", "/v1.41/services/web", None).1).unwrap();
    assert_eq!(
        again["Version"]["Index"].as_u64(),
        Some(version),
        "nothing changed"
    );
    let out = d1.ok(&["service", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out.trim(), "web", "no other service was created");

    d1.ok(&["service", "rm", "web"]);
    let out = d1.ok(&["service", "ls", "-q"]);
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn secrets_configs_networks_and_stacks_through_the_docker_client() {
    let mut cluster = Cluster::new(2);
    let (d1, _d2) = docker_swarm(&mut cluster);
    let h1 = cluster.host(1).docker_host();

    let out = d1.run_input(
        &["secret", "create", "--label", "k=v", "db-password", "-"],
        "SUPER-SECRET-VALUE",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `docker events` sees configs come, as a stream of its own.
    let mut events = d1
        .command(&[
            "events",
            "--filter",
            "type=config",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker events");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = events.stdout.take().expect("events stdout");
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The client may connect after a first create: create until one is reported.
    let mut probes = 0;
    let seen = wait_until("docker events to report a config", SETTLE, || {
        probes += 1;
        let out = d1.run_input(&["config", "create", &format!("probe-{probes}"), "-"], "x");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines.recv_timeout(Duration::from_secs(3)).ok()
    });
    let _ = events.kill();
    let _ = events.wait();
    assert!(seen.starts_with("config create probe-"), "{seen}");
    // `--since` replays what the manager remembers; with `--until` the stream ends. The
    // client rounds durations down to whole seconds: until is now, to the nanosecond.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let until = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let out = d1.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        &until,
        "--filter",
        "type=secret",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(out.trim(), "secret create db-password");
    let err = d1.fails(&["events", "--filter", "nonsense=1"]);
    assert!(err.contains("nonsense"), "{err}");
    for id in d1.ok(&["config", "ls", "-q"]).lines() {
        d1.ok(&["config", "rm", id]);
    }
    let out = d1.run_input(&["config", "create", "app-conf", "-"], "setting=1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d1.ok(&["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out.trim(), "db-password");
    let out = d1.ok(&[
        "secret",
        "ls",
        "--filter",
        "label=k=v",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(out.trim(), "db-password");
    let out = d1.ok(&[
        "config",
        "inspect",
        "app-conf",
        "--format",
        "{{printf \"%s\" .Spec.Data}}",
    ]);
    assert_eq!(out.trim(), "setting=1");
    // A secret's data never comes back, in any form.
    for path in ["/v1.41/secrets", "/v1.41/secrets/db-password"] {
        let (status, body) = http(&h1, "GET", path, None);
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains("SUPER-SECRET-VALUE") && !body.contains("U1VQRVItU0VDUkVULVZBTFVF"),
            "{path}: {body}"
        );
        assert!(!body.contains("\"Data\""), "{path}: {body}");
    }
    let err = d1.fails(&["secret", "create", "db-password", "/etc/hostname"]);
    assert!(!err.is_empty());
    let (status, _) = http(
        &h1,
        "POST",
        "/v1.41/secrets/create",
        Some(r#"{"Name":"x","Data":"aGk=","Driver":{"Name":"vault"}}"#),
    );
    assert_eq!(status, 400);
    // Docker's label-only updates, at the version read: a stale version is "out of
    // sequence", new data is refused with what to do, and neither changes anything.
    let version = |path: &str| {
        let (_, body) = http(&h1, "GET", path, None);
        let v: Value = serde_json::from_str(&body).unwrap();
        v["Version"]["Index"].as_u64().unwrap()
    };
    let v = version("/v1.41/secrets/db-password");
    let update = |query: String, body: &str| {
        http(
            &h1,
            "POST",
            &format!("/v1.41/secrets/db-password/update?{query}"),
            Some(body),
        )
    };
    let relabel = r#"{"Name":"db-password","Labels":{"k":"w"}}"#;
    let (status, body) = update(format!("version={}", v + 100), relabel);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("update out of sequence"), "{body}");
    let (status, body) = update(
        format!("version={v}"),
        r#"{"Name":"db-password","Labels":{"k":"w"},"Data":"b3RoZXI="}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("give the new data a new name"), "{body}");
    assert_eq!(version("/v1.41/secrets/db-password"), v);
    let (status, body) = update(format!("version={v}"), relabel);
    assert_eq!(status, 200, "{body}");
    let out = d1.ok(&[
        "secret",
        "inspect",
        "db-password",
        "--format",
        "{{.Spec.Labels.k}}",
    ]);
    assert_eq!(out.trim(), "w");
    let v = version("/v1.41/secrets/db-password");
    let (status, body) = update(
        format!("version={v}"),
        r#"{"Name":"db-password","Labels":{"k":"v"}}"#,
    );
    assert_eq!(status, 200, "{body}");

    d1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.44.0.0/24",
        "back",
    ]);
    let out = d1.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]);
    assert!(out.contains("back overlay swarm"), "{out}");
    let out = d1.ok(&[
        "network",
        "inspect",
        "back",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
    ]);
    assert_eq!(out.trim(), "10.44.0.0/24");
    let err = d1.fails(&["network", "create", "-d", "bridge", "local"]);
    assert!(err.contains("not supported by skiff"), "{err}");

    // A stack of two services on a network of its own, with the secret.
    let compose = cluster.dir().join("compose.yml");
    std::fs::write(
        &compose,
        r#"version: "3.8"
services:
  api:
    image: busybox
    command: ["sh", "-c", "exec sleep 600"]
    deploy:
      replicas: 2
    networks: [front]
    secrets: [db-password]
  worker:
    image: busybox
    command: ["sleep", "600"]
    networks: [front]
networks:
  front:
    driver: overlay
secrets:
  db-password:
    external: true
"#,
    )
    .unwrap();
    // No registry holds `busybox` here: the client must not ask one for its digest.
    d1.ok(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        compose.to_str().unwrap(),
        "demo",
    ]);
    let out = d1.ok(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"]);
    assert_eq!(out.trim(), "demo 2");
    d1.eventually(
        &[
            "stack",
            "services",
            "demo",
            "--format",
            "{{.Name}} {{.Replicas}}",
        ],
        |t| {
            let mut lines: Vec<&str> = t.lines().collect();
            lines.sort();
            lines == ["demo_api 2/2", "demo_worker 1/1"]
        },
    );
    let out = d1.ok(&["stack", "ps", "demo", "--format", "{{.Name}}"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let err = d1.fails(&["secret", "rm", "db-password"]);
    assert!(err.contains("in use"), "{err}");
    d1.ok(&["stack", "rm", "demo"]);
    d1.eventually(&["network", "ls", "--format", "{{.Name}}"], |t| {
        !t.contains("demo_front")
    });
    let out = d1.ok(&["service", "ls", "-q"]);
    assert!(out.trim().is_empty(), "{out}");

    // An ID prefix two objects share: 400 with what to do, nothing removed. 37 IDs over 36
    // first characters share one for sure.
    let mut by_first: std::collections::HashMap<char, String> = Default::default();
    let ambiguous = (0..37)
        .find_map(|i| {
            let body = format!(r#"{{"Name":"many-{i}","Data":"eA=="}}"#);
            let (status, answer) = http(&h1, "POST", "/v1.41/secrets/create", Some(&body));
            assert_eq!(status, 201, "{answer}");
            let id: Value = serde_json::from_str(&answer).unwrap();
            let id = id["ID"].as_str().unwrap().to_string();
            let first = id.chars().next().unwrap();
            by_first.insert(first, id).map(|_| first)
        })
        .expect("two of 37 IDs share a first character");
    let before = d1.ok(&["secret", "ls", "-q"]).lines().count();
    for method in ["GET", "DELETE"] {
        let (status, answer) = http(&h1, method, &format!("/v1.41/secrets/{ambiguous}"), None);
        assert_eq!(status, 400, "{method}: {answer}");
        assert!(!message(&answer).is_empty());
    }
    assert_eq!(
        d1.ok(&["secret", "ls", "-q"]).lines().count(),
        before,
        "nothing removed"
    );
    for i in 0..37 {
        let _ = d1.run(&["secret", "rm", &format!("many-{i}")]);
    }

    d1.ok(&["secret", "rm", "db-password"]);
    d1.ok(&["config", "rm", "app-conf"]);
    d1.ok(&["network", "rm", "back"]);
    let out = d1.ok(&["secret", "ls", "-q"]);
    assert!(out.trim().is_empty());
    let out = d1.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(out.trim(), "ingress");
}

/// A CA and what it signs, written as PEM files.
struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate (PEM) and its key (PEM) for `ip` as a server, or as a client.
    fn leaf(&self, ip: Option<&str>, client: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(ip.map(|i| vec![i.to_string()]).unwrap_or_default())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            if client { "client" } else { "server" },
        );
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A `DOCKER_CERT_PATH` directory: this CA, and a client certificate from `signer`.
    fn client_dir(&self, dir: &std::path::Path, signer: &Pki) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = signer.leaf(None, true);
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        dir.to_path_buf()
    }
}

/// A port on `ip` nobody listens on now.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_with_mutual_tls_admits_only_clients_of_its_ca() {
    let probe = Cluster::new(1);
    let ip = probe.host(1).addr.split(':').next().unwrap().to_string();
    drop(probe);
    let port = free_port(&ip);
    let pki = Pki::new("docker-api-ca");
    let other = Pki::new("another-ca");
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = pki.leaf(Some(&ip), false);
    for (name, text) in [
        ("ca.pem", pki.ca_pem.as_str()),
        ("server.pem", server_cert.as_str()),
        ("server-key.pem", server_key.as_str()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let tcp = format!("tcp://{ip}:{port}");
    let mut cluster = Cluster::new(1).with_daemon_args(
        1,
        &[
            "--docker-host",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &p("ca.pem"),
            "--tlscert",
            &p("server.pem"),
            "--tlskey",
            &p("server-key.pem"),
        ],
    );
    cluster.start_all();

    let tls_docker = |cert_dir: &std::path::Path| {
        let mut d = Docker::on(&cluster, 1);
        d.host = tcp.clone();
        d.env = vec![
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            ("DOCKER_CERT_PATH".into(), cert_dir.to_str().unwrap().into()),
        ];
        d
    };
    // The right CA: served, swarm commands included.
    let good = tls_docker(&pki.client_dir(&dir.path().join("good"), &pki));
    let out = good.ok(&["version", "--format", "{{.Server.Platform.Name}}"]);
    assert_eq!(out.trim(), "skiff");
    let addr = cluster.host(1).addr.clone();
    good.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        &addr,
        "--listen-addr",
        &addr,
    ]);
    let out = good.ok(&["node", "ls", "--format", "{{.Hostname}}"]);
    assert_eq!(out.trim(), "host1");

    // A client certificate from another CA: refused at the handshake.
    let wrong = tls_docker(&pki.client_dir(&dir.path().join("wrong"), &other));
    let err = wrong.fails(&["version", "--format", "{{.Server.Platform.Name}}"]);
    assert!(err.contains("tls") || err.contains("certificate"), "{err}");
    // No client certificate at all: refused too.
    let mut none = Docker::on(&cluster, 1);
    none.host = tcp.clone();
    let err = none.run(&[
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "version",
        "--format",
        "{{.Server.Platform.Name}}",
    ]);
    assert!(
        !err.status.success(),
        "{}",
        String::from_utf8_lossy(&err.stdout)
    );
    let text = String::from_utf8_lossy(&err.stderr);
    assert!(
        text.contains("tls") || text.contains("certificate"),
        "{text}"
    );
    // Plain HTTP on the TLS port gets no answer from the API.
    let mut plain = Docker::on(&cluster, 1);
    plain.host = tcp.clone();
    let err = plain.fails(&["version", "--format", "{{.Server.Platform.Name}}"]);
    assert!(!err.contains("skiff"), "{err}");
    // The unix socket is served beside it.
    let out = Docker::on(&cluster, 1).ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(out.trim(), "active");
}

#[test]
fn plain_tcp_is_refused_at_start_unless_declared_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(integration_tests::bin("skiffd"))
        .args(["--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args([
            "--docker-host",
            "tcp://127.0.0.1:2375",
            "--runtime",
            "process",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--docker-tcp-insecure"), "{err}");
    assert!(!dir.path().join("s.sock").exists(), "nothing was started");

    let probe = Cluster::new(1);
    let ip = probe.host(1).addr.split(':').next().unwrap().to_string();
    drop(probe);
    let tcp = format!("tcp://{ip}:{}", free_port(&ip));
    let mut cluster =
        Cluster::new(1).with_daemon_args(1, &["--docker-host", &tcp, "--docker-tcp-insecure"]);
    cluster.start_all();
    let mut docker = Docker::on(&cluster, 1);
    docker.host = tcp;
    let out = docker.ok(&["version", "--format", "{{.Server.Platform.Name}}"]);
    assert_eq!(out.trim(), "skiff");
}

/// docker-py's script: initialises a swarm, creates a service and reads its tasks.
const DOCKER_PY: &str = r#"
import sys, time
import docker
client = docker.DockerClient(base_url=sys.argv[1])
addr = sys.argv[2]
client.swarm.init(advertise_addr=addr, listen_addr=addr)
service = client.services.create(
    "busybox", command=["sleep", "600"], name="py",
    mode=docker.types.ServiceMode("replicated", replicas=2))
deadline = time.time() + 30
running = []
while time.time() < deadline:
    running = [t for t in service.tasks(filters={"desired-state": "running"})
               if t["Status"]["State"] == "running"]
    if len(running) == 2:
        break
    time.sleep(0.2)
service.reload()
print(client.info()["Swarm"]["LocalNodeState"], service.name,
      service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"], len(running))
"#;

#[test]
fn docker_py_initialises_a_swarm_and_runs_a_service() {
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        eprintln!("skipped: no python3 here to run docker-py with");
        return;
    };
    let mut cluster = Cluster::new(1);
    let venv = cluster.dir().join("venv");
    let made = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    let pip = venv.join("bin/pip");
    let installed = made.status.success()
        && Command::new(&pip)
            .args(["install", "-q", "docker"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("skipped: cannot install docker-py (PyPI `docker`) into a venv here");
        return;
    }
    cluster.start_all();
    let script = cluster.dir().join("docker_py.py");
    std::fs::write(&script, DOCKER_PY).unwrap();
    let addr = cluster.host(1).addr.clone();
    let out = Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(cluster.host(1).docker_host())
        .arg(&addr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-py failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "active py 2 2");
}

#[test]
fn service_create_pins_the_image_to_the_digest_its_registry_gives() {
    use integration_tests::containerd::{busybox_in_registry, registry};
    let image = busybox_in_registry();
    let mut cluster =
        Cluster::new(1).with_daemon_args(1, &["--insecure-registry", &registry().addr]);
    cluster.start_all();
    let docker = Docker::on(&cluster, 1);
    let addr = cluster.host(1).addr.clone();
    docker.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        &addr,
        "--listen-addr",
        &addr,
    ]);

    let (status, body) = http(
        &cluster.host(1).docker_host(),
        "GET",
        &format!("/v1.41/distribution/{image}/json"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let digest = answer["Descriptor"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{body}");

    docker.ok(&[
        "service", "create", "--detach", "--name", "pinned", image, "sleep", "600",
    ]);
    let out = docker.ok(&[
        "service",
        "inspect",
        "pinned",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_eq!(out.trim(), format!("{image}@{digest}"));

    let (status, _) = http(
        &cluster.host(1).docker_host(),
        "GET",
        &format!("/v1.41/distribution/{}/nosuch:tag/json", registry().addr),
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = http(
        &cluster.host(1).docker_host(),
        "GET",
        "/v1.41/distribution/Bad..Name/json",
        None,
    );
    assert_eq!(status, 400);
}

#[test]
fn with_registry_auth_the_docker_clients_login_reaches_the_pull() {
    use integration_tests::containerd::{busybox_in_auth_registry, REGISTRY_LOGIN};
    let image = busybox_in_auth_registry();
    let registry = image.split('/').next().expect("registry").to_string();
    let mut cluster = Cluster::new(1).with_containerd();
    cluster.start_all();
    let docker = Docker::on(&cluster, 1);
    let addr = cluster.host(1).addr.clone();
    docker.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        &addr,
        "--listen-addr",
        &addr,
    ]);
    // `docker login`'s credentials, where the docker client keeps them.
    std::fs::write(
        docker.config.join("config.json"),
        serde_json::json!({"auths": {&registry: {"auth": REGISTRY_LOGIN}}}).to_string(),
    )
    .unwrap();

    docker.ok(&[
        "service", "create", "--detach", "--name", "anon", image, "sleep", "1000",
    ]);
    let err = docker.eventually(
        &[
            "service",
            "ps",
            "anon",
            "--no-trunc",
            "--format",
            "{{.Error}}",
        ],
        |t| t.contains("wants credentials"),
    );
    assert!(err.contains("--with-registry-auth"), "{err}");

    docker.ok(&[
        "service",
        "create",
        "--detach",
        "--with-registry-auth",
        "--name",
        "private",
        image,
        "sleep",
        "1000",
    ]);
    docker.eventually(
        &[
            "service",
            "ls",
            "--filter",
            "name=private",
            "--format",
            "{{.Replicas}}",
        ],
        |t| t.trim() == "1/1",
    );
    // Pinned to the digest the registry gave for those credentials; the credentials
    // themselves are never shown.
    let out = docker.ok(&["service", "inspect", "private"]);
    assert!(out.contains("@sha256:"), "{out}");
    assert!(!out.contains(REGISTRY_LOGIN), "{out}");
}

#[test]
fn container_options_and_the_logging_driver_through_the_docker_client() {
    let mut cluster = Cluster::new(1);
    cluster.start_all();
    let d1 = Docker::on(&cluster, 1);
    let a1 = cluster.host(1).addr.clone();
    d1.ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        &a1,
        "--listen-addr",
        &a1,
    ]);
    // The process runtime cannot run these options: only the spec is looked at.
    d1.ok(&[
        "service",
        "create",
        "--detach",
        "--no-resolve-image",
        "--name",
        "opts",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--ulimit",
        "nofile=1024:2048",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "--init",
        "--tty",
        "--host",
        "db:10.0.0.9",
        "--dns",
        "10.0.0.2",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:2",
        "--sysctl",
        "net.core.somaxconn=1024",
        "--group",
        "audio",
        "--oom-score-adj",
        "-500",
        "--health-cmd",
        "true",
        "--health-start-interval",
        "2s",
        "busybox",
        "sleep",
        "600",
    ]);
    let inspect = |field: &str| -> Value {
        let out = d1.ok(&[
            "service",
            "inspect",
            "opts",
            "--format",
            &format!("{{{{json .Spec.TaskTemplate.{field}}}}}"),
        ]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let (c, log) = (inspect("ContainerSpec"), inspect("LogDriver"));
    assert!(c["CapabilityAdd"].to_string().contains("NET_ADMIN"), "{c}");
    assert!(c["CapabilityDrop"].to_string().contains("MKNOD"), "{c}");
    assert_eq!(
        c["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}]),
        "{c}"
    );
    assert_eq!(
        (&c["Init"], &c["TTY"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(c["Hosts"], serde_json::json!(["10.0.0.9 db"]), "{c}");
    assert_eq!(
        c["DNSConfig"],
        serde_json::json!({"Nameservers": ["10.0.0.2"], "Search": ["example.org"],
            "Options": ["ndots:2"]}),
        "{c}"
    );
    assert_eq!(c["Sysctls"]["net.core.somaxconn"], "1024", "{c}");
    assert_eq!(c["Groups"], serde_json::json!(["audio"]), "{c}");
    assert_eq!(c["OomScoreAdj"], -500, "{c}");
    assert_eq!(c["Healthcheck"]["StartInterval"], 2_000_000_000i64, "{c}");
    assert_eq!(
        log,
        serde_json::json!({"Name": "json-file", "Options": {"max-size": "1m"}})
    );

    // The control API's rules apply, in its words (the client would refuse this one).
    let (status, answer) = http(
        &cluster.host(1).docker_host(),
        "POST",
        "/v1.41/services/create",
        Some(
            r#"{"Name": "bad", "TaskTemplate": {"ContainerSpec": {"Image": "busybox",
                "Ulimits": [{"Name": "nofile", "Soft": 2048, "Hard": 1024}]}}}"#,
        ),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(message(&answer).contains("nofile"), "{answer}");

    // An update through Docker's read-modify-write keeps every one of them.
    let before = cluster.ok(1, &["service", "inspect", "--format", "json", "opts"]);
    d1.ok(&[
        "service",
        "update",
        "--detach",
        "--no-resolve-image",
        "--env-add",
        "X=1",
        "opts",
    ]);
    let after = cluster.ok(1, &["service", "inspect", "--format", "json", "opts"]);
    let template = |text: &str| -> Value {
        let v: Value = serde_json::from_str(text).unwrap();
        v[0]["Spec"]["TaskTemplate"].clone()
    };
    let (mut before, after) = (template(&before), template(&after));
    assert!(before["ContainerSpec"]["Init"] == true, "{before}");
    before["ContainerSpec"]["Env"] = serde_json::json!(["X=1"]);
    assert_eq!(after["ContainerSpec"], before["ContainerSpec"]);
    assert_eq!(after["LogDriver"], before["LogDriver"]);
}
