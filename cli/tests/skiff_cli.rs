//! Runs the built `skiff` binary on bad input and on unreachable daemons: it must fail with
//! a non-zero exit code and one clear sentence on stderr, never a raw gRPC status.

mod common;

use common::{fails_with_one_sentence, ok, run, skiff};
use std::process::Command;

#[test]
fn bad_host_scheme() {
    let line = fails_with_one_sentence(&["-H", "http://10.0.0.1:2377", "node", "ls"]);
    assert_eq!(
        line,
        "Error: invalid host \"http://10.0.0.1:2377\": use unix:///path/to/skiffd.sock or tcp://HOST[:PORT]"
    );
}

#[test]
fn bad_host_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["swarm", "inspect"])
        .env("SKIFF_HOST", "tcp://host:notaport")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid port \"notaport\""), "{stderr}");
}

#[test]
fn missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("skiffd.sock");
    let host = format!("unix://{}", sock.display());
    let line = fails_with_one_sentence(&["-H", &host, "node", "ls"]);
    assert_eq!(
        line,
        format!("Error: cannot reach skiffd at {host}: no such socket; is skiffd running? (start it with `skiffd` or `systemctl start skiffd`)")
    );
}

#[test]
fn socket_without_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("skiffd.sock");
    // Bind and drop: the socket file stays, nothing listens.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let host = format!("unix://{}", sock.display());
    let line = fails_with_one_sentence(&["-H", &host, "swarm", "inspect"]);
    assert!(
        line.contains("nothing is listening on the socket; is skiffd running?"),
        "{line}"
    );
}

#[test]
fn tcp_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("no-certs");
    let line = fails_with_one_sentence(&[
        "-H",
        "tcp://127.0.0.1:1",
        "--tls-dir",
        tls.to_str().unwrap(),
        "node",
        "ls",
    ]);
    assert!(line.contains("--tls-dir"), "{line}");
}

#[test]
fn bad_duration() {
    // Validation happens before connecting: no daemon needed.
    let line = fails_with_one_sentence(&[
        "-H",
        "unix:///nonexistent/skiffd.sock",
        "swarm",
        "update",
        "--heartbeat-period",
        "abc",
    ]);
    assert_eq!(
        line,
        "Error: invalid duration \"abc\" for --heartbeat-period: use a form like 5s or 1m30s"
    );
    let line = fails_with_one_sentence(&["swarm", "update", "--cert-expiry", "90 parsecs"]);
    assert!(line.contains("for --cert-expiry"), "{line}");
}

#[test]
fn bad_availability() {
    let line = fails_with_one_sentence(&[
        "-H",
        "unix:///nonexistent/skiffd.sock",
        "node",
        "update",
        "--availability",
        "sleepy",
        "node-1",
    ]);
    assert_eq!(
        line,
        "Error: invalid availability \"sleepy\": use one of active, pause, drain"
    );
}

#[test]
fn bad_local_input() {
    let cases: &[&[&str]] = &[
        &["node", "update", "--label-add", "=v", "n1"],
        &["node", "ls", "--filter", "role=boss"],
        &["node", "ls", "--format", "{{.ID"],
        &["swarm", "join", "--token", "nope", "10.0.0.1"],
        &["swarm", "join-token", "boss"],
        &["swarm", "init", "--advertise-addr", "10.0.0.1:99999"],
        &["swarm", "init", "--default-addr-pool", "10.0.0.0"],
    ];
    for args in cases {
        let mut full = vec!["-H", "unix:///nonexistent/skiffd.sock"];
        full.extend_from_slice(args);
        let line = fails_with_one_sentence(&full);
        assert!(!line.contains("cannot reach"), "{args:?}: {line}");
    }
}

#[test]
fn join_validates_the_manager_address() {
    let token = format!("SKTKN-1-{}-{}", "a".repeat(64), "b".repeat(25));
    let line = fails_with_one_sentence(&[
        "-H",
        "unix:///nonexistent/skiffd.sock",
        "swarm",
        "join",
        "--token",
        &token,
        "10.0.0.1:port",
    ]);
    assert!(
        line.starts_with("Error: invalid manager address \"10.0.0.1:port\""),
        "{line}"
    );
}

#[test]
fn version_without_daemon() {
    let out = skiff(&["-H", "unix:///nonexistent/skiffd.sock", "version"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Client:\n Version:"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Error: cannot reach skiffd"), "{stderr}");
}

#[test]
fn help_lists_the_commands() {
    let out = skiff(&["--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for cmd in ["swarm", "node", "version"] {
        assert!(stdout.contains(cmd), "{stdout}");
    }
}

// ---------------------------------------------------------------------------------------
// Against a fake daemon on a unix socket
// ---------------------------------------------------------------------------------------

mod fake {
    //! A stand-in daemon serving the Swarm and Control methods the CLI uses, routed by
    //! method name (so new RPCs in the proto need no change here), recording what it got.

    use std::sync::Arc;

    use proto::*;
    use tonic::body::Body;
    use tonic::Status;

    use crate::common::{find_node, read_nodes, unary, Daemon, Reply, State};
    pub use crate::common::{SELF_ID, WORKER_ID};

    pub const OTHER_ID: &str = "othermanager0000000000003";

    fn node(id: &str, host: &str, manager: Option<(bool, Reachability)>) -> Node {
        let role = if manager.is_some() {
            NodeRole::Manager
        } else {
            NodeRole::Worker
        };
        Node {
            meta: Some(Meta {
                id: id.into(),
                version: 7,
                created_at: 1_700_000_000_000,
                updated_at: 0,
            }),
            spec: Some(NodeSpec {
                labels: Default::default(),
                desired_role: role as i32,
                availability: NodeAvailability::Active as i32,
            }),
            description: Some(NodeDescription {
                hostname: host.into(),
                engine_version: "0.1.0".into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                addr: "10.0.0.9".into(),
                ..Default::default()
            }),
            manager_status: manager.map(|(leader, r)| ManagerStatus {
                raft_id: 1,
                addr: "10.0.0.1:2377".into(),
                leader,
                reachability: r as i32,
            }),
            role: role as i32,
            certificate: None,
            ingress: None,
        }
    }

    pub fn nodes() -> Vec<Node> {
        vec![
            node(WORKER_ID, "worker-1", None),
            node(SELF_ID, "manager-1", Some((true, Reachability::Reachable))),
            node(
                OTHER_ID,
                "manager-2",
                Some((false, Reachability::Unreachable)),
            ),
        ]
    }

    fn cluster(worker_token: &str) -> Cluster {
        Cluster {
            meta: Some(Meta {
                id: "cluster0000000000000000001".into(),
                version: 42,
                ..Default::default()
            }),
            spec: Some(ClusterSpec {
                name: "default".into(),
                orchestration: Some(OrchestrationConfig {
                    task_history_retention_limit: 5,
                }),
                ..Default::default()
            }),
            join_tokens: Some(JoinTokens {
                worker: worker_token.into(),
                manager: "SKTKN-MANAGER".into(),
            }),
            root_ca: Some(RootCa {
                cert_pem: "CERT".into(),
                key_pem: "-----BEGIN PRIVATE KEY----- leaked".into(),
                digest: "abc".into(),
            }),
            ..Default::default()
        }
    }

    /// Starts a daemon with these answers.
    pub fn start() -> Daemon<()> {
        Daemon::start((), answer)
    }

    fn answer(state: Arc<State<()>>, method: String, req: http::Request<Body>) -> Reply {
        Box::pin(async move {
            let (s, m) = (&state, method.as_str());
            let resp = match m {
                "Info" => {
                    unary(s, m, req, |_, _: InfoRequest| {
                        Ok(InfoResponse {
                            state: LocalNodeState::Active as i32,
                            node_id: SELF_ID.into(),
                            advertise_addr: "10.0.0.1:2377".into(),
                            version: "9.9.9".into(),
                            role: NodeRole::Manager as i32,
                            ..Default::default()
                        })
                    })
                    .await
                }
                "Init" => {
                    unary(s, m, req, |_, _: InitRequest| {
                        Ok(InitResponse {
                            node_id: SELF_ID.into(),
                            cluster_id: "c".into(),
                            worker_token: "SKTKN-WORKER".into(),
                            manager_token: "SKTKN-MANAGER".into(),
                            advertise_addr: "10.0.0.1:2377".into(),
                        })
                    })
                    .await
                }
                "Join" => {
                    unary(s, m, req, |_, _: JoinRequest| {
                        Ok(JoinResponse {
                            node_id: WORKER_ID.into(),
                            role: NodeRole::Manager as i32,
                        })
                    })
                    .await
                }
                "Leave" => {
                    unary(s, m, req, |_, r: LeaveRequest| {
                        if r.force {
                            Ok(LeaveResponse {})
                        } else {
                            Err(Status::failed_precondition(
                                "this node is the last manager; leaving would lose the cluster state. Use --force to leave anyway",
                            ))
                        }
                    })
                    .await
                }
                "GetCluster" => {
                    unary(s, m, req, |_, _: GetClusterRequest| {
                        Ok(GetClusterResponse {
                            cluster: Some(cluster("SKTKN-WORKER")),
                        })
                    })
                    .await
                }
                "UpdateCluster" => {
                    unary(s, m, req, |_, r: UpdateClusterRequest| {
                        if r.version != 42 {
                            return Err(Status::aborted("the cluster changed meanwhile; retry"));
                        }
                        let token = if r.rotate_worker_token {
                            "SKTKN-ROTATED"
                        } else {
                            "SKTKN-WORKER"
                        };
                        Ok(UpdateClusterResponse {
                            cluster: Some(cluster(token)),
                        })
                    })
                    .await
                }
                "ListNodes" | "GetNode" => read_nodes(s, m, req, nodes()).await,
                "UpdateNode" => {
                    unary(s, m, req, |_, r: UpdateNodeRequest| {
                        let mut n = find_node(nodes(), &r.node)?;
                        let spec = r.spec.unwrap_or_default();
                        if r.node == SELF_ID && spec.desired_role() == NodeRole::Worker {
                            return Err(Status::failed_precondition(
                                "cannot demote manager-1: it is the leader and the only reachable manager; promote another node first",
                            ));
                        }
                        n.spec = Some(spec);
                        Ok(UpdateNodeResponse { node: Some(n) })
                    })
                    .await
                }
                "RemoveNode" => {
                    unary(s, m, req, |_, r: RemoveNodeRequest| {
                        find_node(nodes(), &r.node).map(|_| RemoveNodeResponse {})
                    })
                    .await
                }
                _ => Status::unimplemented("").into_http(),
            };
            Ok(resp)
        })
    }
}

#[test]
fn node_ls_against_a_daemon() {
    let d = fake::start();
    let table = ok(&d, &["node", "ls"]);
    assert_eq!(
        table,
        format!(
            "ID                            HOSTNAME    STATUS   AVAILABILITY   MANAGER STATUS   VERSION\n\
             {} *   manager-1   Ready    Active         Leader           0.1.0\n\
             {}     manager-2   Ready    Active         Unreachable      0.1.0\n\
             {}     worker-1    Ready    Active                          0.1.0\n",
            fake::SELF_ID,
            fake::OTHER_ID,
            fake::WORKER_ID
        )
    );
    assert_eq!(
        ok(&d, &["node", "ls", "-q"]),
        format!(
            "{}\n{}\n{}\n",
            fake::SELF_ID,
            fake::OTHER_ID,
            fake::WORKER_ID
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["node", "ls", "--format", "json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["spec"]["desired_role"], "NODE_ROLE_MANAGER");
    assert_eq!(arr[2]["spec"]["availability"], "NODE_AVAILABILITY_ACTIVE");
    // The role reaches the daemon; names match as prefixes, as Docker's.
    ok(
        &d,
        &[
            "node",
            "ls",
            "--filter",
            "role=manager",
            "-f",
            "name=manager-1",
        ],
    );
    let calls = d.state.calls("ListNodes");
    assert!(
        calls
            .last()
            .unwrap()
            .contains("roles: [\"manager\"], names: []"),
        "{calls:?}"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "node",
                "ls",
                "--filter",
                "name=manager",
                "--format",
                "{{.Hostname}}"
            ]
        ),
        "manager-1\nmanager-2\n"
    );
}

#[test]
fn node_ls_and_inspect_take_go_templates() {
    let d = fake::start();
    assert_eq!(
        ok(
            &d,
            &[
                "node",
                "ls",
                "--format",
                "{{.Hostname}}{{if .Self}} *{{end}} {{.ManagerStatus}}"
            ]
        ),
        "manager-1 * Leader\nmanager-2 Unreachable\nworker-1 \n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "node",
                "ls",
                "--format",
                r"table {{.Hostname}}\t{{.Status}}"
            ]
        ),
        "HOSTNAME    STATUS\nmanager-1   Ready\nmanager-2   Ready\nworker-1    Ready\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "node",
                "inspect",
                "--format",
                "{{.Description.Hostname}} {{.Spec.Role}}",
                "self",
                "worker-1"
            ]
        ),
        "manager-1 manager\nworker-1 worker\n"
    );
}

#[test]
fn node_inspect_against_a_daemon() {
    let d = fake::start();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["node", "inspect", "manager-1", "worker-1"])).unwrap();
    // Docker's JSON, as `docker node inspect` prints it.
    assert_eq!(json[0]["ID"], fake::SELF_ID);
    assert_eq!(json[0]["Description"]["Hostname"], "manager-1");
    assert_eq!(json[1]["Spec"]["Role"], "worker");
    let pretty = ok(&d, &["node", "inspect", "--pretty", "self"]);
    assert!(pretty.contains("Hostname:\t\tmanager-1\n"), "{pretty}");
    assert!(pretty.contains(" Leader:\t\tYes\n"), "{pretty}");
    // One missing node: the others are still printed, the error is one line, exit 1.
    let r = run(&d, &["node", "inspect", "worker-1", "ghost"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr, "Error: no such node: ghost\n");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
}

#[test]
fn promote_demote_update_rm_against_a_daemon() {
    let d = fake::start();
    assert_eq!(
        ok(&d, &["node", "promote", "worker-1"]),
        "Node worker-1 promoted to a manager in the swarm.\n"
    );
    let update = d.state.calls("UpdateNode").pop().unwrap();
    assert!(
        update.contains(&format!("node: \"{}\"", fake::WORKER_ID)),
        "{update}"
    );
    assert!(update.contains("version: 7"), "{update}");
    assert!(update.contains("desired_role: Manager"), "{update}");
    assert_eq!(
        ok(&d, &["node", "promote", "manager-2"]),
        "Node manager-2 is already a manager.\n"
    );
    assert_eq!(
        ok(&d, &["node", "demote", "manager-2"]),
        "Manager manager-2 demoted in the swarm.\n"
    );
    // The daemon refuses: its sentence is printed as is.
    let r = run(&d, &["node", "demote", "manager-1"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "Error: cannot demote manager-1: it is the leader and the only reachable manager; promote another node first\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "node",
                "update",
                "--availability",
                "drain",
                "--label-add",
                "zone=east",
                "worker-1"
            ]
        ),
        "worker-1\n"
    );
    let update = d.state.calls("UpdateNode").pop().unwrap();
    assert!(update.contains("availability: Drain"), "{update}");
    assert!(update.contains("\"zone\": \"east\""), "{update}");
    let r = run(&d, &["node", "update", "--label-rm", "nope", "worker-1"]);
    assert_eq!(
        r.stderr,
        "Error: label \"nope\" is not set on node worker-1\n"
    );
    assert_eq!(ok(&d, &["node", "rm", "--force", "worker-1"]), "worker-1\n");
    assert!(d.state.calls("RemoveNode")[0].contains("force: true"));
    let r = run(&d, &["node", "rm", "ghost", "worker-1"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "worker-1\n");
    assert_eq!(r.stderr, "Error: no such node: ghost\n");
}

#[test]
fn swarm_commands_against_a_daemon() {
    let d = fake::start();
    let init = ok(
        &d,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            "10.0.0.1",
            "--default-addr-pool",
            "10.20.0.0/16",
        ],
    );
    assert_eq!(
        init,
        format!(
            "Swarm initialized: current node ({}) is now a manager.\n\n\
             To add a worker to this swarm, run the following command:\n\n    \
             skiff swarm join --token SKTKN-WORKER 10.0.0.1:2377\n\n\
             To add a manager to this swarm, run 'skiff swarm join-token manager' and follow the instructions.\n\n",
            fake::SELF_ID
        )
    );
    let call = d.state.calls("Init").pop().unwrap();
    assert!(call.contains("advertise_addr: \"10.0.0.1\""), "{call}");
    assert!(
        call.contains("default_addr_pool: [\"10.20.0.0/16\"]"),
        "{call}"
    );

    let token = format!("SKTKN-1-{}-{}", "a".repeat(64), "b".repeat(25));
    assert_eq!(
        ok(&d, &["swarm", "join", "--token", &token, "10.0.0.1"]),
        "This node joined a swarm as a manager.\n"
    );
    assert!(d.state.calls("Join")[0].contains("remote_addr: \"10.0.0.1:2377\""));

    assert_eq!(
        ok(&d, &["swarm", "join-token", "worker"]),
        "To add a worker to this swarm, run the following command:\n\n    skiff swarm join --token SKTKN-WORKER 10.0.0.1:2377\n\n"
    );
    assert_eq!(
        ok(&d, &["swarm", "join-token", "-q", "manager"]),
        "SKTKN-MANAGER\n"
    );
    assert_eq!(
        ok(&d, &["swarm", "join-token", "--rotate", "-q", "worker"]),
        "SKTKN-ROTATED\n"
    );
    let call = d.state.calls("UpdateCluster").pop().unwrap();
    assert!(call.contains("version: 42"), "{call}");
    assert!(call.contains("rotate_worker_token: true"), "{call}");
    assert!(call.contains("rotate_manager_token: false"), "{call}");

    let inspect = ok(&d, &["swarm", "inspect"]);
    assert!(
        !inspect.contains("key_pem") && !inspect.contains("PRIVATE KEY"),
        "{inspect}"
    );
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json[0]["JoinTokens"]["Worker"], "SKTKN-WORKER");
    assert_eq!(
        ok(
            &d,
            &["swarm", "inspect", "--format", "{{.JoinTokens.Worker}}"]
        ),
        "SKTKN-WORKER\n"
    );

    assert_eq!(
        ok(
            &d,
            &[
                "swarm",
                "update",
                "--task-history-limit",
                "3",
                "--dispatcher-heartbeat",
                "2s"
            ]
        ),
        "Swarm updated.\n"
    );
    let call = d.state.calls("UpdateCluster").pop().unwrap();
    assert!(call.contains("task_history_retention_limit: 3"), "{call}");
    assert!(call.contains("heartbeat_period_ms: 2000"), "{call}");
    assert!(call.contains("name: \"default\""), "spec kept: {call}");

    let r = run(&d, &["swarm", "leave"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("Error: this node is the last manager;"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ok(&d, &["swarm", "leave", "--force"]),
        "Node left the swarm.\n"
    );

    let version = ok(&d, &["version"]);
    assert!(version.contains("Server:\n Version:\t9.9.9"), "{version}");
}

#[test]
fn the_daemon_is_named_with_h_anywhere_or_host_before_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", dir.path().join("skiffd.sock").display());
    let want = format!("Error: cannot reach skiffd at {host}: no such socket");
    for line in [
        vec!["-H", host.as_str(), "node", "ls"],
        vec!["node", "ls", "-H", host.as_str()],
        vec!["--host", host.as_str(), "node", "ls"],
    ] {
        let got = fails_with_one_sentence(&line);
        assert!(got.starts_with(&want), "{line:?}: {got}");
    }
    // After `service create`, --host is a line of the task's /etc/hosts, checked before
    // the daemon is asked.
    let got =
        fails_with_one_sentence(&["-H", &host, "service", "create", "--host", "db", "busybox"]);
    assert!(
        got.contains("invalid host \"db\" for --host: use NAME:IP"),
        "{got}"
    );
    let got = fails_with_one_sentence(&[
        "-H",
        &host,
        "service",
        "create",
        "--host",
        "db:10.0.0.5",
        "busybox",
    ]);
    assert!(
        got.starts_with(&want),
        "a good hosts entry gets as far as the daemon: {got}"
    );
}

#[test]
fn a_network_filter_with_an_unknown_key_is_refused_before_connecting() {
    let line = fails_with_one_sentence(&[
        "-H",
        "unix:///nonexistent/skiffd.sock",
        "network",
        "ls",
        "--filter",
        "color=red",
    ]);
    assert!(
        line.starts_with("Error: invalid filter \"color=red\" for --filter: unknown key"),
        "{line}"
    );
}

#[test]
fn stack_config_prints_the_merged_file_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("compose.yml");
    let over = dir.path().join("compose.prod.yml");
    std::fs::write(
        &base,
        "services:\n  web:\n    image: web:${TAG}\n    restart: always\n    environment: [A=1]\n",
    )
    .unwrap();
    std::fs::write(&over, "services:\n  web:\n    environment: {B: '2'}\n").unwrap();
    // The shell's variables win over the .env beside the first file.
    std::fs::write(dir.path().join(".env"), "TAG=from-env-file\nOTHER=x\n").unwrap();
    let (b, o) = (base.display().to_string(), over.display().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "-H",
            "unix:///nonexistent.sock",
            "stack",
            "config",
            "-c",
            &b,
            "-c",
            &o,
        ])
        .env("TAG", "2.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "services:\n  web:\n    image: web:2.1\n    restart: always\n    environment:\n      A: '1'\n      B: '2'\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Ignoring unsupported options: restart\n"
    );
    std::fs::write(&over, "services:\n  web:\n    deploy: {replicaz: 2}\n").unwrap();
    let line = fails_with_one_sentence(&["stack", "config", "-c", &b, "-c", &o]);
    assert!(
        line.starts_with("Error: services.web.deploy.replicaz: unknown key"),
        "{line}"
    );
}
