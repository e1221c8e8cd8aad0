//! `skiff events` against a loopback cluster: a live stream sees a service's create, scale
//! and remove in order through its filters, `--since`/`--until` replay what a manager
//! remembers, and no event carries a secret's data or an environment value.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use integration_tests::{bin, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A `skiff events` process, killed when dropped.
struct Follower {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(cluster: &Cluster, host: usize, args: &[&str]) -> Self {
        let mut child = Command::new(bin("skiff"))
            .args([
                "-H",
                &cluster.host(host).host_arg(),
                "events",
                "--format",
                "json",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run skiff events");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next event, as (type, action, attributes).
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .expect("an event within the wait");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_seconds(t: SystemTime) -> String {
    format!("{:.3}", t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64())
}

#[test]
fn events_follow_a_service_through_filters_and_replay_with_since_and_until() {
    let mut cluster = Cluster::new(2);
    cluster.form(1);
    let started = SystemTime::now() - Duration::from_secs(1);
    // --since from before the first change: the stream cannot miss what happens while it
    // connects, since the manager replays what it remembers.
    let since = unix_seconds(started);
    let services = Follower::start(
        &cluster,
        1,
        &[
            "--since",
            &since,
            "--filter",
            "type=service",
            "--filter",
            "name=web",
        ],
    );

    let secret = cluster.dir().join("secret");
    std::fs::write(&secret, "s3cr3t-bytes").unwrap();
    cluster.ok(1, &["secret", "create", "pw", secret.to_str().unwrap()]);
    let create = [
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "--env",
        "TOKEN=env-value-42",
        "--secret",
        "pw",
        "busybox",
        "sleep",
        "600",
    ];
    cluster.ok(1, &create);
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "other", "busybox", "sleep", "600",
        ],
    );
    cluster.ok(1, &["service", "scale", "--detach", "web=5"]);
    cluster.ok(1, &["service", "rm", "web"]);

    let e = services.next();
    assert_eq!(
        (e["Type"].as_str(), e["Action"].as_str()),
        (Some("service"), Some("create")),
        "{e}"
    );
    assert_eq!(e["Actor"]["Attributes"]["name"], "web", "{e}");
    assert_eq!(e["Actor"]["Attributes"]["replicas"], "2", "{e}");
    assert_eq!(e["scope"], "swarm");
    let web_id = e["Actor"]["ID"].as_str().unwrap().to_owned();
    // The scale, then the remove; updates without a visible change are no events, and
    // the rollout's own state changes come as updates too: skip to the replicas change.
    let scaled = loop {
        let e = services.next();
        assert_eq!(
            e["Actor"]["ID"],
            web_id.as_str(),
            "only web passes the filter: {e}"
        );
        assert_ne!(
            e["Action"], "remove",
            "the scale came before the remove: {e}"
        );
        if e["Actor"]["Attributes"]["replicas.new"] == "5" {
            break e;
        }
    };
    assert_eq!(scaled["Action"], "update");
    assert_eq!(scaled["Actor"]["Attributes"]["replicas.old"], "2");
    let removed = loop {
        let e = services.next();
        if e["Action"] == "remove" {
            break e;
        }
    };
    assert_eq!(removed["Actor"]["ID"], web_id.as_str());

    // Replay: only the updates between then and now, and the stream ends at --until.
    let until = unix_seconds(SystemTime::now());
    let replay = cluster.ok(
        1,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=update",
            "--filter",
            "type=service",
            "--format",
            "json",
        ],
    );
    let replayed: Vec<Value> = replay
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!replayed.is_empty(), "the scale was an update");
    assert!(
        replayed
            .iter()
            .all(|e| e["Action"] == "update" && e["Type"] == "service"),
        "{replay}"
    );

    // Every kind of event, as text: no secret data, no environment value.
    let all = cluster.ok(1, &["events", "--since", &since, "--until", &until]);
    for kind in [
        "secret create",
        "service create",
        "task create",
        "task update",
        "service remove",
    ] {
        assert!(all.contains(kind), "no {kind} in {all}");
    }
    assert!(
        !all.contains("s3cr3t-bytes") && !all.contains("env-value-42"),
        "{all}"
    );

    // Bad input: one sentence, before anything is streamed.
    let err = cluster.fails(1, &["events", "--filter", "type=container"]);
    assert!(err.contains("unknown event type \"container\""), "{err}");
    let err = cluster.fails(1, &["events", "--since", "last tuesday"]);
    assert!(err.contains("invalid --since"), "{err}");
}
