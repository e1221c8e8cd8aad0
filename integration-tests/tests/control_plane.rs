//! The control plane on loopback: cluster formation, leader failover, restarts, security,
//! promotion and demotion, log compaction, and bad input. Real `skiffd` processes, driven
//! through the `skiff` CLI.

use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(30);

fn field<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    field(v, path).as_str().unwrap_or("")
}

fn hostname(node: &Value) -> &str {
    str_field(node, &["description", "hostname"])
}

fn count(statuses: &[(String, String)], what: &str) -> usize {
    statuses.iter().filter(|(_, s)| s == what).count()
}

/// Waits until every running manager shows `total` nodes, one leader and `reachable`
/// reachable followers.
fn wait_for_managers(cluster: &Cluster, managers: &[usize], total: usize, reachable: usize) {
    for &m in managers {
        wait_until(&format!("node ls on host {m} to settle"), SETTLE, || {
            let out = cluster.skiff(m, &["node", "ls"]);
            if !out.status.success() {
                return None;
            }
            let s = cluster.manager_statuses(m);
            (s.len() == total && count(&s, "Leader") == 1 && count(&s, "Reachable") == reachable)
                .then_some(())
        });
    }
}

#[test]
fn three_managers_and_two_workers_form_a_cluster() {
    let mut cluster = Cluster::new(5);
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 5, 2);
    for m in 1..=3 {
        let nodes = cluster.nodes(m);
        assert_eq!(nodes.len(), 5);
        let ready = nodes
            .iter()
            .filter(|n| str_field(n, &["status", "state"]) == "NODE_STATE_READY")
            .count();
        assert_eq!(ready, 5, "every node is ready: {nodes:?}");
    }
    // A worker is not a manager: a clear sentence, not a gRPC status.
    let err = cluster.fails(4, &["node", "ls"]);
    assert!(err.contains("not a manager"), "{err}");
    assert!(!err.contains("status:") && !err.contains("code:"), "{err}");
    // `*` marks the node asked.
    let out = cluster.ok(2, &["node", "ls"]);
    let starred: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" * ") || l.contains("* "))
        .collect();
    assert_eq!(starred.len(), 1, "{out}");
    assert!(starred[0].contains("host2"), "{out}");
}

/// `swarm join` through a follower: it forwards the Raft join to the leader with its own
/// certificate, which the leader must accept for the joining manager (it once refused it as
/// "a manager can only join Raft as itself").
#[test]
fn a_manager_joins_through_a_follower() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    cluster.init(1);
    cluster.join(2, "manager", 1);
    wait_for_managers(&cluster, &[1, 2], 2, 1);
    let statuses = cluster.manager_statuses(2);
    assert!(
        statuses.contains(&("host1".to_owned(), "Leader".to_owned())),
        "host 2 is a follower: {statuses:?}"
    );
    cluster.join(3, "manager", 2);
    wait_for_managers(&cluster, &[1, 2, 3], 3, 2);
}

#[test]
fn a_killed_leader_is_replaced_and_rejoins_as_a_follower() {
    let mut cluster = Cluster::new(3);
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 3, 2);
    let leader = cluster.leader_host(1);
    let others: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
    cluster.ok(
        others[0],
        &["node", "update", "--label-add", "before=failover", "host1"],
    );

    cluster.kill(leader);
    // Another manager leads; the old one is unreachable; writes go on.
    wait_until("a new leader and the old one unreachable", SETTLE, || {
        let out = cluster.skiff(others[0], &["node", "ls"]);
        if !out.status.success() {
            return None;
        }
        let s = cluster.manager_statuses(others[0]);
        let old = s.iter().find(|(h, _)| *h == format!("host{leader}"))?;
        (count(&s, "Leader") == 1 && old.1 == "Unreachable").then_some(())
    });
    cluster.eventually_ok(
        others[1],
        &["node", "update", "--label-add", "after=failover", "host2"],
        SETTLE,
    );

    // The old leader comes back as a follower with everything.
    cluster.start(leader);
    wait_for_managers(&cluster, &[leader], 3, 2);
    assert_ne!(cluster.leader_host(leader), leader);
    let node = cluster.eventually_ok(leader, &["node", "inspect", "host2"], SETTLE);
    assert!(node.contains("after"), "{node}");
    let node = cluster.ok(leader, &["node", "inspect", "host1"]);
    assert!(node.contains("before"), "{node}");
}

#[test]
fn all_managers_restarted_keep_every_object() {
    let mut cluster = Cluster::new(4);
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 4, 2);
    cluster.ok(
        2,
        &[
            "node",
            "update",
            "--label-add",
            "zone=east",
            "--availability",
            "drain",
            "host4",
        ],
    );
    cluster.ok(1, &["swarm", "update", "--task-history-limit", "9"]);
    for i in 1..=4 {
        cluster.stop(i);
    }
    for i in 1..=4 {
        cluster.start(i);
    }
    wait_for_managers(&cluster, &[1, 2, 3], 4, 2);
    for m in 1..=3 {
        let nodes = cluster.nodes(m);
        let host4 = nodes
            .iter()
            .find(|n| hostname(n) == "host4")
            .expect("host4 listed");
        assert_eq!(str_field(host4, &["spec", "labels", "zone"]), "east");
        assert_eq!(
            str_field(host4, &["spec", "availability"]),
            "NODE_AVAILABILITY_DRAIN"
        );
        let swarm: Value = serde_json::from_str(&cluster.ok(m, &["swarm", "inspect"]))
            .expect("swarm inspect JSON");
        let swarm = if swarm.is_array() {
            swarm[0].clone()
        } else {
            swarm
        };
        assert_eq!(
            field(
                &swarm,
                &["Spec", "Orchestration", "TaskHistoryRetentionLimit"]
            ),
            &Value::from(9),
            "{swarm}"
        );
    }
    // The worker came back too.
    wait_until("host4 ready again", SETTLE, || {
        let nodes = cluster.nodes(1);
        nodes
            .iter()
            .any(|n| {
                hostname(n) == "host4" && str_field(n, &["status", "state"]) == "NODE_STATE_READY"
            })
            .then_some(())
    });
}

#[test]
fn bad_and_foreign_tokens_are_refused() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let addr = cluster.init(1);
    let worker = cluster
        .ok(1, &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();

    // Malformed.
    let err = cluster.fails(2, &["swarm", "join", "--token", "SKTKN-1-nonsense", &addr]);
    assert!(err.contains("malformed join token"), "{err}");
    // Well formed, right cluster, wrong secret.
    let wrong = format!(
        "{}{}",
        &worker[..worker.len() - 1],
        if worker.ends_with('a') { 'b' } else { 'a' }
    );
    let err = cluster.fails(2, &["swarm", "join", "--token", &wrong, &addr]);
    assert!(err.contains("not valid"), "{err}");
    // Rotated out.
    cluster.ok(1, &["swarm", "join-token", "--rotate", "worker"]);
    let err = cluster.fails(2, &["swarm", "join", "--token", &worker, &addr]);
    assert!(err.contains("rotated"), "{err}");
    // A token of another cluster: its CA digest does not match.
    cluster.init(3);
    let foreign = cluster
        .ok(3, &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();
    let err = cluster.fails(2, &["swarm", "join", "--token", &foreign, &addr]);
    assert!(err.contains("does not match"), "{err}");
    // Nothing changed: host 2 is still outside, cluster 1 still has one node.
    assert_eq!(cluster.nodes(1).len(), 1);
    let err = cluster.fails(2, &["node", "ls"]);
    assert!(
        err.contains("not a manager") || err.contains("not part of"),
        "{err}"
    );
    // The current token works.
    let current = cluster
        .ok(1, &["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_owned();
    cluster.ok(2, &["swarm", "join", "--token", &current, &addr]);
    assert_eq!(cluster.nodes(1).len(), 2);
}

#[test]
fn certificates_decide_who_may_call_what() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    // host 3 makes a second cluster of its own.
    let mut other = Cluster::new(1);
    other.start_all();
    other.init(1);

    let manager = format!("tcp://{}", cluster.host(1).addr);
    let manager_certs = cluster.host(1).certs_dir();
    let worker_certs = cluster.host(2).certs_dir();
    let foreign_certs = other.host(1).certs_dir();

    // A manager certificate may use the control API remotely.
    let out = cluster.skiff_with(
        &["-H", &manager, "--tls-dir", manager_certs.to_str().unwrap()],
        &["node", "ls"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A worker certificate may not.
    let out = cluster.skiff_with(
        &["-H", &manager, "--tls-dir", worker_certs.to_str().unwrap()],
        &["node", "ls"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("manager certificate"),
        "{err}"
    );
    // A certificate of another cluster is refused at the TLS handshake.
    let out = cluster.skiff_with(
        &["-H", &manager, "--tls-dir", foreign_certs.to_str().unwrap()],
        &["node", "ls"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("status:"), "{err}");

    // The Raft API refuses a worker certificate.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use manager::transport::Connector;
        let connector = cluster.connector(2);
        let mut raft =
            proto::raft_client::RaftClient::new(connector.channel(&cluster.host(1).addr));
        let err = raft
            .vote(proto::RaftPayload {
                data: vec![1, 2, 3],
                ..Default::default()
            })
            .await
            .expect_err("a worker must not vote");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        // Nor may it add a manager to Raft by posing as a follower forwarding a join.
        let mut join = tonic::Request::new(proto::JoinRaftRequest {
            node_id: "someone-else".into(),
            raft_id: 7,
            addr: "127.0.0.1:1".into(),
        });
        join.metadata_mut()
            .insert("x-skiff-forwarded", "1".parse().unwrap());
        let err = raft
            .join(join)
            .await
            .expect_err("a worker must not forward a join");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        let mut control =
            proto::control_client::ControlClient::new(connector.channel(&cluster.host(1).addr));
        let err = control
            .update_cluster(proto::UpdateClusterRequest::default())
            .await
            .expect_err("a worker must not change the cluster");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    });
}

/// Copies a node's certificate directory, as someone with root on it could.
fn copy_certs(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `node ls` on host `on`, or `None` while it fails (the managers electing a leader).
fn try_nodes(cluster: &Cluster, on: usize) -> Option<Vec<Value>> {
    let out = cluster.skiff(on, &["node", "ls", "--format", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("node ls JSON"))
}

/// Waits until `node ls` on host `on` shows `node` as a worker that has left Raft.
fn wait_demoted(cluster: &Cluster, on: usize, node: &str) {
    wait_until(&format!("{node} a worker out of Raft"), SETTLE, || {
        let nodes = try_nodes(cluster, on)?;
        let n = nodes.iter().find(|n| hostname(n) == node)?;
        (str_field(n, &["spec", "desired_role"]) == "NODE_ROLE_WORKER"
            && str_field(n, &["role"]) == "NODE_ROLE_WORKER"
            && field(n, &["manager_status"]).is_null())
        .then_some(())
    });
}

/// Waits until `node ls` on host `on` shows `node` down.
fn wait_down(cluster: &Cluster, on: usize, node: &str) {
    wait_until(&format!("{node} down"), SETTLE, || {
        let nodes = try_nodes(cluster, on)?;
        let n = nodes.iter().find(|n| hostname(n) == node)?;
        (str_field(n, &["status", "state"]) == "NODE_STATE_DOWN").then_some(())
    });
}

#[test]
fn a_copied_manager_certificate_is_limited_after_demotion_and_refused_after_removal() {
    let mut cluster = Cluster::new(3);
    cluster.form(2);
    wait_for_managers(&cluster, &[1, 2], 3, 1);
    let copy = cluster.dir().join("stolen-certs");
    copy_certs(&cluster.host(2).certs_dir(), &copy);
    let manager = format!("tcp://{}", cluster.host(1).addr);
    let with_copy = |args: &[&str]| {
        let out = cluster.skiff_with(&["-H", &manager, "--tls-dir", copy.to_str().unwrap()], args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), err)
    };
    // While host 2 is a manager, its certificate is a manager's.
    let (ok, err) = with_copy(&["node", "ls"]);
    assert!(ok, "{err}");

    // Demoted: the copy gets a worker's rights at once, whatever its certificate says.
    cluster.ok(1, &["node", "demote", "host2"]);
    let (ok, err) = with_copy(&["service", "create", "--name", "evil", "busybox"]);
    assert!(!ok && err.contains("manager certificate"), "{err}");
    assert!(!err.contains("status:"), "{err}");
    // Raft's forwarded writes are the cluster's too: a store batch is refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let propose = |certs: &std::path::Path| {
        rt.block_on(async {
            use manager::transport::Connector;
            let connector = integration_tests::connector_from(certs);
            let mut raft =
                proto::raft_client::RaftClient::new(connector.channel(&cluster.host(1).addr));
            raft.propose(proto::ProposeRequest {
                batch: Some(proto::StoreBatch::default()),
            })
            .await
        })
    };
    let err = propose(&copy).expect_err("a demoted manager must not write the store");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    wait_demoted(&cluster, 1, "host2");
    assert!(!cluster.ok(1, &["service", "ls"]).contains("evil"));

    // Removed: the copy is refused everything, even what a worker may do.
    cluster.ok(2, &["swarm", "leave"]);
    wait_down(&cluster, 1, "host2");
    cluster.ok(1, &["node", "rm", "host2"]);
    let (ok, err) = with_copy(&["node", "ls"]);
    assert!(!ok && err.contains("was removed"), "{err}");
    let err = rt
        .block_on(async {
            use manager::transport::Connector;
            let connector = integration_tests::connector_from(&copy);
            proto::dispatcher_client::DispatcherClient::new(
                connector.channel(&cluster.host(1).addr),
            )
            .heartbeat(proto::HeartbeatRequest::default())
            .await
        })
        .expect_err("a removed node must not reach the dispatcher");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("was removed"), "{err:?}");
}

#[test]
fn a_leader_that_demotes_itself_ends_a_worker_and_can_be_removed() {
    let mut cluster = Cluster::new(3);
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 3, 2);
    let leader = cluster.leader_host(1);
    let name = format!("host{leader}");
    let others: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();
    let out = cluster.ok(leader, &["node", "demote", &name]);
    assert!(out.contains("demoted"), "{out}");
    wait_demoted(&cluster, others[0], &name);
    wait_for_managers(&cluster, &others, 3, 1);
    // A second demotion says it is done; the node can leave and be removed.
    let out = cluster.ok(others[0], &["node", "demote", &name]);
    assert!(out.contains("already a worker"), "{out}");
    cluster.ok(leader, &["swarm", "leave"]);
    wait_down(&cluster, others[0], &name);
    cluster.ok(others[1], &["node", "rm", &name]);
    assert_eq!(cluster.nodes(others[0]).len(), 2);
}

/// Every path under `dir` that users other than root could read, write or enter.
fn open_to_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut open = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            open.push(format!(
                "{} {:o}",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        if meta.is_dir() {
            todo.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    open
}

#[test]
fn the_data_directory_is_root_s_alone_and_a_restart_tightens_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    let secret = cluster.dir().join("secret");
    std::fs::write(&secret, b"s3cr3t").unwrap();
    cluster.ok(
        1,
        &["secret", "create", "db-password", secret.to_str().unwrap()],
    );
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "web", "busybox", "sleep", "600",
        ],
    );
    wait_until("the task running", SETTLE, || {
        (cluster.running(1, "web").len() == 1).then_some(())
    });
    let data = cluster.host(1).data_dir().to_owned();
    let open = open_to_others(&data);
    assert!(
        open.is_empty(),
        "readable by others after swarm init: {open:?}"
    );

    // As an older skiffd or a careless copy would leave it.
    cluster.stop(1);
    let loosen = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let mut todo = vec![data.clone()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            loosen(&path, 0o755);
            todo.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if path.is_file() {
            loosen(&path, 0o644);
        }
    }
    assert!(!open_to_others(&data).is_empty());
    cluster.start(1);
    cluster.eventually_ok(1, &["node", "ls"], SETTLE);
    let open = open_to_others(&data);
    assert!(
        open.is_empty(),
        "still readable by others after a restart: {open:?}"
    );
    assert!(
        cluster.log(1).contains("now root's alone"),
        "{}",
        cluster.log(1)
    );
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut todo = vec![dir.to_owned()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            todo.extend(
                std::fs::read_dir(&path)
                    .unwrap()
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
fn a_raft_store_written_before_encryption_opens_encrypted_with_nothing_lost() {
    let mut cluster = Cluster::new(1);
    // Snapshots every 5 entries, so the store holds snapshots as well as entries.
    cluster.form_with(1, &["--snapshot-interval", "5"]);
    let marker = b"upgrade-s3cr3t-7f3a9c";
    let secret = cluster.dir().join("secret");
    std::fs::write(&secret, marker).unwrap();
    cluster.ok(
        1,
        &["secret", "create", "db-password", secret.to_str().unwrap()],
    );
    for name in ["one", "two", "three"] {
        cluster.ok(
            1,
            &[
                "service", "create", "--detach", "--name", name, "busybox", "sleep", "600",
            ],
        );
    }
    let data = cluster.host(1).data_dir().to_owned();
    assert!(!any_file_holds(&data, marker), "encrypted from the start");

    // The data directory as the release before encryption at rest left it.
    cluster.stop(1);
    let kek_file = data.join("certs/raft.kek");
    let kek: [u8; 32] = std::fs::read(&kek_file).unwrap().try_into().unwrap();
    manager::raft::at_rest::write_as_before_encryption(
        &data.join("raft"),
        &manager::raft::at_rest::KeyEncryptionKey::from_bytes(kek),
    )
    .unwrap();
    std::fs::remove_file(&kek_file).unwrap();
    assert!(
        any_file_holds(&data, marker),
        "the old release wrote secrets plain"
    );

    cluster.start(1);
    let services = cluster.eventually_ok(1, &["service", "ls"], SETTLE);
    for name in ["one", "two", "three"] {
        assert!(services.contains(name), "{services}");
    }
    assert!(cluster.ok(1, &["secret", "ls"]).contains("db-password"));
    assert!(
        cluster.log(1).contains("encrypted at rest"),
        "{}",
        cluster.log(1)
    );
    assert!(
        !any_file_holds(&data, marker),
        "no plain secret left after the upgrade"
    );
    // And the cluster goes on writing.
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "four", "busybox", "sleep", "600",
        ],
    );
}

/// The numbers of the keys host `i`'s Raft store holds now.
fn raft_key_ids(cluster: &Cluster, i: usize) -> std::collections::BTreeSet<u32> {
    use manager::raft::at_rest::{KeyEncryptionKey, Keyring};
    let data = cluster.host(i).data_dir();
    let kek: [u8; 32] = std::fs::read(data.join("certs/raft.kek"))
        .unwrap()
        .try_into()
        .unwrap();
    Keyring::load_or_create(&data.join("raft"), &KeyEncryptionKey::from_bytes(kek))
        .unwrap()
        .ids()
        .into_iter()
        .collect()
}

#[test]
fn a_removed_secret_is_gone_from_disk_after_the_next_snapshot_and_purge() {
    let mut cluster = Cluster::new(1);
    cluster.form_with(1, &["--snapshot-interval", "20"]);
    let file = cluster.dir().join("secret");
    std::fs::write(&file, b"purge-me-s3cr3t").unwrap();
    cluster.ok(
        1,
        &["secret", "create", "short-lived", file.to_str().unwrap()],
    );
    // Every key that may have sealed the secret: the log's and any snapshot's since.
    let mut sealed_it = raft_key_ids(&cluster, 1);
    cluster.ok(1, &["secret", "rm", "short-lived"]);
    // Enough writes for a snapshot past the 128 entries kept behind one, and a purge.
    let payload = cluster.dir().join("payload");
    std::fs::write(&payload, b"x").unwrap();
    for n in 0..160 {
        cluster.ok(
            1,
            &[
                "config",
                "create",
                &format!("c{n}"),
                payload.to_str().unwrap(),
            ],
        );
        if n < 20 {
            sealed_it.extend(raft_key_ids(&cluster, 1));
        }
    }
    wait_until("the keys that sealed the secret retired", SETTLE, || {
        raft_key_ids(&cluster, 1)
            .is_disjoint(&sealed_it)
            .then_some(())
    });
    // Whatever sled still keeps of the secret's entry opens with no key the node holds;
    // the store itself has no trace of it.
    assert!(!cluster.ok(1, &["secret", "ls"]).contains("short-lived"));
}

#[test]
fn an_autolocked_manager_restarts_locked_until_given_the_unlock_key() {
    let mut cluster = Cluster::new(1);
    cluster.start_all();
    cluster.init_with(1, &["--autolock"]);
    let key = cluster
        .ok(1, &["swarm", "unlock-key", "-q"])
        .trim()
        .to_owned();
    assert!(key.starts_with("SKUNLOCK-1-"), "{key}");
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "web", "busybox", "sleep", "600",
        ],
    );
    let certs = cluster.host(1).certs_dir();
    wait_until("the keys sealed by the unlock key", SETTLE, || {
        (!certs.join("raft.kek").exists()).then_some(())
    });
    assert!(cluster
        .log(1)
        .contains("sealed by the cluster's unlock key"));
    let tls_key = std::fs::read_to_string(certs.join("node.key")).unwrap();
    assert!(
        !tls_key.contains("PRIVATE KEY"),
        "the TLS key is sealed: {tls_key}"
    );

    let restart_locked = |cluster: &mut Cluster| {
        cluster.kill(1);
        cluster.start(1);
        let err = cluster.fails(1, &["node", "ls"]);
        assert!(
            err.contains("locked") && err.contains("skiff swarm unlock"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        let info = cluster.ok(1, &["info", "--format", "json"]);
        assert!(info.contains("LOCAL_NODE_STATE_LOCKED"), "{info}");
    };
    let unlock = |cluster: &Cluster, key: &str| cluster.skiff_input(1, &["swarm", "unlock"], key);
    restart_locked(&mut cluster);
    let wrong = unlock(&cluster, &format!("SKUNLOCK-1-{}", "0".repeat(64)));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && err.contains("unlock key is wrong"),
        "{err}"
    );
    let garbage = unlock(&cluster, "let me in");
    assert!(!garbage.status.success());
    assert!(unlock(&cluster, &key).status.success());
    let services = cluster.eventually_ok(1, &["service", "ls"], SETTLE);
    assert!(services.contains("web"), "{services}");

    // Rotated: the old key no longer unlocks, the new one does.
    let new_key = cluster
        .ok(1, &["swarm", "unlock-key", "--rotate", "-q"])
        .trim()
        .to_owned();
    assert_ne!(new_key, key);
    // The manager re-seals by the new key as it sees the change.
    wait_until("the keys sealed by the new key", SETTLE, || {
        let restarted_would_open =
            manager::raft::at_rest::KeyEncryptionKey::from_unlock_key(&new_key)
                .ok()
                .and_then(|kek| {
                    manager::raft::at_rest::Keyring::load_or_create(
                        &cluster.host(1).data_dir().join("raft"),
                        &kek,
                    )
                    .ok()
                });
        restarted_would_open.is_some().then_some(())
    });
    restart_locked(&mut cluster);
    let old = unlock(&cluster, &key);
    assert!(!old.status.success(), "the rotated key still unlocks");
    assert!(unlock(&cluster, &new_key).status.success());
    cluster.eventually_ok(1, &["service", "ls"], SETTLE);

    // Autolock off: the node keeps a key file again and restarts unlocked.
    cluster.ok(1, &["swarm", "update", "--autolock=false"]);
    wait_until("the keys kept by a key file again", SETTLE, || {
        let tls_key = std::fs::read_to_string(certs.join("node.key")).unwrap_or_default();
        (certs.join("raft.kek").exists() && tls_key.contains("PRIVATE KEY")).then_some(())
    });
    cluster.kill(1);
    cluster.start(1);
    let services = cluster.eventually_ok(1, &["service", "ls"], SETTLE);
    assert!(services.contains("web"), "{services}");
}

#[test]
fn promotion_and_demotion_keep_quorum() {
    let mut cluster = Cluster::new(4);
    cluster.form(1);
    wait_for_managers(&cluster, &[1], 4, 0);
    // The only manager cannot be demoted.
    let err = cluster.fails(1, &["node", "demote", "host1"]);
    assert!(err.contains("last manager"), "{err}");

    cluster.ok(1, &["node", "promote", "host2", "host3"]);
    wait_for_managers(&cluster, &[1, 2, 3], 4, 2);

    // With host 3 gone, demoting host 2 would leave 2 managers with only 1 reachable.
    cluster.kill(3);
    wait_until("host3 unreachable", SETTLE, || {
        let s = cluster.manager_statuses(1);
        s.iter()
            .any(|(h, st)| h == "host3" && st == "Unreachable")
            .then_some(())
    });
    let err = cluster.fails(1, &["node", "demote", "host2"]);
    assert!(err.contains("quorum"), "{err}");
    // Demoting the unreachable one is safe.
    cluster.ok(1, &["node", "demote", "host3"]);
    cluster.start(3);
    wait_until("host3 back as a worker", SETTLE, || {
        let nodes = cluster.nodes(1);
        let n = nodes.iter().find(|n| hostname(n) == "host3")?;
        (str_field(n, &["role"]) == "NODE_ROLE_WORKER" && field(n, &["manager_status"]).is_null())
            .then_some(())
    });
    wait_for_managers(&cluster, &[1, 2], 4, 1);
    // And a worker can be promoted and demoted again.
    cluster.ok(2, &["node", "promote", "host4"]);
    wait_for_managers(&cluster, &[1, 2, 4], 4, 2);
    cluster.ok(4, &["node", "demote", "host4"]);
    wait_for_managers(&cluster, &[1, 2], 4, 1);
}

#[test]
fn the_log_is_compacted_and_a_new_manager_catches_up_from_the_snapshot() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    cluster.init(1);
    cluster.ok(1, &["swarm", "update", "--snapshot-interval", "50"]);
    for i in 0..220 {
        cluster.ok(
            1,
            &[
                "node",
                "update",
                "--label-add",
                &format!("k{}=v{i}", i % 7),
                "host1",
            ],
        );
    }
    let info: Value = wait_until("a snapshot and a purged log", SETTLE, || {
        let out = cluster.ok(1, &["info", "--format", "json"]);
        let v: Value = serde_json::from_str(&out).ok()?;
        let purged = field(&v, &["raft", "purged_index"]).as_u64()?;
        (purged > 0).then_some(v)
    });
    assert!(
        !field(&info, &["raft", "snapshot_index"]).is_null(),
        "{info}"
    );

    cluster.join(2, "manager", 1);
    let node = cluster.eventually_ok(2, &["node", "inspect", "host1"], SETTLE);
    assert!(node.contains("v219"), "{node}");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    let before = cluster.nodes(1);
    let cases: &[(&[&str], &str)] = &[
        (&["node", "inspect", "nosuchnode"], "not found"),
        (
            &["node", "update", "--availability", "sideways", "host1"],
            "availability",
        ),
        (&["node", "update", "--label-add", "=v", "host1"], "label"),
        (&["node", "rm", "nosuchnode"], "not found"),
        (&["node", "rm", "host1"], "manager"),
        (&["node", "rm", "host2"], "not down"),
        (&["node", "promote", ""], ""),
        (
            &["swarm", "update", "--heartbeat-period", "abc"],
            "duration",
        ),
        (
            &["swarm", "update", "--heartbeat-period", "1ms"],
            "heartbeat",
        ),
        (&["swarm", "update", "--cert-expiry", "1s"], "expiry"),
        (&["swarm", "init"], "already part of a cluster"),
        (&["swarm", "join", "--token", "x", "127.0.0.1:1"], ""),
        (&["swarm", "leave"], "manager"),
    ];
    for (args, expect) in cases {
        let err = cluster.fails(1, args);
        assert!(
            err.to_lowercase().contains(expect),
            "`skiff {}` said: {err}",
            args.join(" ")
        );
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
    let after = cluster.nodes(1);
    let labels = |nodes: &[Value]| {
        nodes
            .iter()
            .map(|n| (hostname(n).to_owned(), field(n, &["spec"]).clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&before), labels(&after));

    // An oversize message is refused by the server without effect.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use manager::transport::Connector;
        let connector = cluster.connector(1);
        let mut control =
            proto::control_client::ControlClient::new(connector.channel(&cluster.host(1).addr))
                .max_encoding_message_size(64 * 1024 * 1024);
        let mut spec = proto::NodeSpec::default();
        spec.labels
            .insert("huge".into(), "x".repeat(20 * 1024 * 1024));
        let err = control
            .update_node(proto::UpdateNodeRequest {
                node: "host1".into(),
                version: 0,
                spec: Some(spec),
            })
            .await
            .expect_err("oversize");
        assert!(
            matches!(
                err.code(),
                tonic::Code::OutOfRange
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::InvalidArgument
                    | tonic::Code::Internal
            ),
            "{err:?}"
        );
    });
    assert_eq!(labels(&before), labels(&cluster.nodes(1)));
}

#[test]
fn force_new_cluster_recovers_a_cluster_that_lost_its_quorum() {
    let mut cluster = Cluster::new(4);
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 4, 2);
    cluster.ok(1, &["node", "update", "--label-add", "keep=me", "host4"]);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "survivor",
            "--replicas",
            "2",
            "busybox",
            "sleep",
            "600",
        ],
    );
    // Two of three managers gone: no quorum, writes refused with a clear error.
    cluster.kill(2);
    cluster.kill(3);
    let err = wait_until("writes refused without a quorum", SETTLE, || {
        let out = cluster.skiff(1, &["node", "update", "--label-add", "x=y", "host4"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(err.contains("quorum"), "{err}");

    let addr = cluster.host(1).addr.clone();
    cluster.ok(
        1,
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            &addr,
        ],
    );
    // Everything is still there and the cluster takes writes again.
    let node = cluster.eventually_ok(1, &["node", "inspect", "host4"], SETTLE);
    assert!(node.contains("keep"), "{node}");
    let services = cluster.ok(1, &["service", "ls"]);
    assert!(services.contains("survivor"), "{services}");
    cluster.eventually_ok(
        1,
        &["node", "update", "--label-add", "after=recovery", "host4"],
        SETTLE,
    );
    let statuses = cluster.manager_statuses(1);
    assert_eq!(count(&statuses, "Leader"), 1, "{statuses:?}");
}

/// A new leader gives every node a full heartbeat deadline to reach it before it may mark
/// one down (issue 20): with 100 simulated workers connected, the leader is killed, and the
/// new leader marks only the killed manager's node down. That node's going down is the
/// event the test waits for: the check that takes it down judges every other node too.
#[test]
fn a_new_leader_marks_none_of_the_connected_workers_down() {
    use integration_tests::simulated::SimulatedWorkers;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cluster = Cluster::new(3);
    cluster.form(3);
    let workers = SimulatedWorkers::join(&rt, &cluster, 1, 100);
    wait_until(
        "100 simulated workers ready",
        Duration::from_secs(120),
        || {
            let ready = cluster
                .nodes(1)
                .iter()
                .filter(|n| SimulatedWorkers::is_simulated(n))
                .filter(|n| n["status"]["state"] == "NODE_STATE_READY")
                .count();
            (ready == workers.count()).then_some(())
        },
    );

    cluster.kill(1);
    let nodes = wait_until("the killed leader's node marked down", SETTLE, || {
        let out = cluster.skiff(2, &["node", "ls", "--format", "json"]);
        let nodes: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        nodes
            .iter()
            .any(|n| hostname(n) == "host1" && n["status"]["state"] == "NODE_STATE_DOWN")
            .then_some(nodes)
    });
    let down: Vec<&str> = nodes
        .iter()
        .filter(|n| n["status"]["state"] != "NODE_STATE_READY")
        .map(hostname)
        .collect();
    assert_eq!(down, ["host1"], "only the killed manager's node is down");
    let marked: Vec<String> = [2, 3]
        .iter()
        .flat_map(|&i| {
            cluster
                .log(i)
                .lines()
                .filter(|l| l.contains("missed its heartbeat deadline"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(marked.len(), 1, "one node marked down, once: {marked:#?}");
    drop(workers);
}

/// A leader round that holds the store for seconds (a reconciliation over a large store)
/// makes the leader's apply wait for it. Nothing of Raft may wait with it: before apply
/// moved off Raft's threads and the cluster port's caller check stopped reading the store,
/// both Raft threads parked behind that guard and the followers elected a new leader.
#[test]
fn a_leader_round_holding_the_store_does_not_cost_the_leadership() {
    // Writes through the follower commit, and the leader's apply of each waits for the
    // guard; meanwhile the cluster port goes on answering the follower's forwarded calls.
    the_leader_keeps_its_term_while("--hold-store-when", Duration::from_secs(12));
}

/// A leader whose every thread but Raft's is busy stays leader (issue 20): openraft, its
/// RPCs and the cluster port run on threads of their own. `skiffd --saturate-when FILE`
/// (hidden, for this test) keeps every worker of the daemon's main runtime spinning, 5 s
/// at a time, while FILE exists; a Raft sharing those threads misses heartbeats for longer
/// than an election waits. Writes and reads through a follower, which the leader's Raft
/// service commits and confirms, go on meanwhile, and the term never changes.
#[test]
fn a_leader_saturated_outside_raft_stays_leader() {
    // Two busy turns of the leader's main runtime, and many election timeouts.
    the_leader_keeps_its_term_while("--saturate-when", Duration::from_secs(10));
}

/// Three managers started with the hidden test switch `knob FILE`; the leader's FILE is
/// made for `load` while a client writes through a follower: every write succeeds, the term
/// never moves and the leader stays leader.
fn the_leader_keeps_its_term_while(knob: &str, load: Duration) {
    let mut cluster = Cluster::new(3);
    let files: Vec<_> = (1..=3)
        .map(|i| cluster.dir().join(format!("load-host{i}")))
        .collect();
    for (i, file) in files.iter().enumerate() {
        let file = file.to_str().expect("UTF-8 path").to_owned();
        cluster = cluster.with_daemon_args(i + 1, &[knob, &file]);
    }
    cluster.form(3);
    wait_for_managers(&cluster, &[1, 2, 3], 3, 2);
    let leader = cluster.leader_host(1);
    let follower = (leader % 3) + 1;
    let term = cluster.raft_term(follower);

    std::fs::write(&files[leader - 1], b"").expect("load the leader");
    let started = std::time::Instant::now();
    let mut writes = 0;
    while started.elapsed() < load {
        let label = format!("loaded={writes}");
        cluster.ok(
            follower,
            &[
                "node",
                "update",
                "--label-add",
                &label,
                &format!("host{follower}"),
            ],
        );
        writes += 1;
        assert_eq!(
            cluster.raft_term(follower),
            term,
            "the term changed after {writes} writes through host{follower} ({knob})"
        );
    }
    std::fs::remove_file(&files[leader - 1]).expect("stop loading the leader");
    assert_eq!(cluster.leader_host(follower), leader);
    assert_eq!(cluster.raft_term(follower), term);
    assert!(
        writes > 1,
        "writes went on while the leader was loaded ({knob})"
    );
}
