//! skiffd's log lines say where they come from: the node's ID and the loop or RPC, as
//! `tracing` spans, in the text and the JSON formats (`skiffd --log-format`).

use std::time::Duration;

use integration_tests::{wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(30);

/// Host `i`'s node ID, as `skiff info` shows it.
fn node_id(cluster: &Cluster, i: usize) -> String {
    let info = cluster.ok(i, &["info"]);
    info.lines()
        .find_map(|l| l.trim().strip_prefix("NodeID: "))
        .unwrap_or_else(|| panic!("no NodeID in `skiff info`: {info}"))
        .trim()
        .to_owned()
}

/// The first line of host `i`'s text log that contains `message`, once there is one.
fn text_line(cluster: &Cluster, i: usize, message: &str) -> String {
    wait_until(&format!("host {i} to log {message:?}"), WAIT, || {
        cluster
            .log(i)
            .lines()
            .find(|l| l.contains(message))
            .map(str::to_owned)
    })
}

/// The first line of host `i`'s JSON log whose message is `message`, once there is one.
/// Every line must be JSON.
fn json_line(cluster: &Cluster, i: usize, message: &str) -> serde_json::Value {
    wait_until(&format!("host {i} to log {message:?}"), WAIT, || {
        cluster.log(i).lines().find_map(|l| {
            let line: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a JSON log line is not JSON ({e}): {l}"));
            (line["fields"]["message"] == message).then_some(line)
        })
    })
}

#[test]
fn log_lines_name_the_node_and_the_loop_or_rpc_they_come_from_in_text_and_json() {
    let mut cluster = Cluster::new(2).with_daemon_args(2, &["--log-format", "json"]);
    cluster.form(1);
    let (first, second) = (node_id(&cluster, 1), node_id(&cluster, 2));
    assert_ne!(first, second);

    // Text, on the manager: a manager loop, the worker session's loop, and a request on
    // the cluster port (host 2 asking for its certificate).
    let allocated = text_line(&cluster, 1, "network allocated");
    assert!(
        allocated.contains(&format!("node{{id={first}}}:allocator:")),
        "{allocated}"
    );
    let session = text_line(&cluster, 1, "session open");
    assert!(
        session.contains(&format!("node{{id={first}}}:session:")),
        "{session}"
    );
    let issued = text_line(&cluster, 1, "issued a certificate to a joining node");
    assert!(
        issued.contains(&format!(
            "node{{id={first}}}:rpc{{method=/skiff.v1.Ca/IssueNodeCertificate}}:"
        )),
        "{issued}"
    );

    // JSON, on the worker: the session's loop, and a request on the local socket.
    let session = json_line(&cluster, 2, "session open");
    assert_eq!(session["span"]["name"], "session", "{session}");
    assert_eq!(session["spans"][0]["name"], "node", "{session}");
    assert_eq!(session["spans"][0]["id"], second.as_str(), "{session}");
    cluster.ok(2, &["swarm", "leave", "--force"]);
    let left = json_line(&cluster, 2, "left the cluster");
    assert_eq!(left["span"]["name"], "rpc", "{left}");
    assert_eq!(left["span"]["method"], "/skiff.v1.Swarm/Leave", "{left}");
    assert_eq!(left["spans"][0]["name"], "node", "{left}");
    assert_eq!(left["spans"][0]["id"], second.as_str(), "{left}");
}
