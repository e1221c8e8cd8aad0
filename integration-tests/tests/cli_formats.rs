//! skiff's own CLI in Docker's shapes against a real loopback cluster (`process` runtime):
//! Go templates on `ls`, `ps` and `inspect`, `table` formats, Docker's JSON from `inspect`,
//! `--filter name=` prefixes and a bad template refused in one sentence.

use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(40);

#[test]
fn ls_ps_and_inspect_speak_dockers_formats_against_a_cluster() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    cluster.ok(
        1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "600",
        ],
    );
    cluster.wait_running(1, "web", 3, CONVERGE);

    // `service ls` with a template, once the three replicas show as running.
    let line = wait_until("service ls to show web 3/3", CONVERGE, || {
        let out = cluster.ok(1, &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]);
        (out == "web 3/3\n").then_some(out)
    });
    assert_eq!(line, "web 3/3\n");
    assert_eq!(
        cluster.ok(
            1,
            &[
                "service",
                "ls",
                "--format",
                r"table {{.Name}}\t{{.Replicas}}"
            ]
        ),
        "NAME      REPLICAS\nweb       3/3\n"
    );

    // inspect: Docker's JSON, and templates on it.
    assert_eq!(
        cluster.ok(
            1,
            &["service", "inspect", "--format", "{{.Spec.Name}}", "web"]
        ),
        "web\n"
    );
    assert_eq!(
        cluster.ok(
            1,
            &[
                "service",
                "inspect",
                "--format",
                "{{json .Spec.Mode}}",
                "web"
            ]
        ),
        "{\"Replicated\":{\"Replicas\":3}}\n"
    );
    let json: Value = serde_json::from_str(&cluster.ok(1, &["service", "inspect", "web"]))
        .expect("service inspect JSON");
    assert_eq!(json[0]["Spec"]["Name"], "web", "{json}");
    assert!(
        json[0]["Version"]["Index"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );

    // Task rows and task inspect.
    let ps = cluster.ok(
        1,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.DesiredState}}",
            "web",
        ],
    );
    let mut names: Vec<&str> = ps.lines().collect();
    names.sort();
    assert_eq!(names, ["web.1 Running", "web.2 Running", "web.3 Running"]);
    let ids = cluster.ok(
        1,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            "web",
        ],
    );
    let id = ids.lines().next().expect("a task ID");
    assert_eq!(
        cluster.ok(1, &["task", "inspect", "--format", "{{.Status.State}}", id]),
        "running\n"
    );

    // node ls rows, with `.Self`.
    assert_eq!(
        cluster.ok(1, &["node", "ls", "--format", "{{.Self}} {{.Status}}"]),
        "true Ready\n"
    );

    // name= is a prefix, as Docker matches it.
    assert_eq!(
        cluster
            .ok(1, &["service", "ls", "--filter", "name=we", "-q"])
            .lines()
            .count(),
        1
    );

    // A bad template: one sentence, nothing on stdout, nothing changed.
    let out = cluster.skiff(1, &["service", "ls", "--format", "{{.Name"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("template parsing error: "), "{err}");
}
