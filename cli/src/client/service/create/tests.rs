//! `service create` command lines, parsed by clap as the binary parses them, through
//! [`build_spec`] and then the manager's `with_defaults` (as the daemon receives them):
//! the defaults, every flag at once, each mode, and one sentence per mistake.

use clap::Parser;
use proto::service_spec::Mode as M;
use proto::{
    ContainerSpec, FailureAction, GlobalJob, GlobalService, MountType, PortProtocol, PublishMode,
    ReplicatedJob, ReplicatedService, ResolutionMode, RestartCondition, ServiceSpec, UpdateOrder,
};

use super::*;
use manager::controlapi::service::with_defaults;

#[derive(Debug, Parser)]
struct T {
    #[command(flatten)]
    args: CreateArgs,
}

fn args(line: &[&str]) -> CreateArgs {
    let mut full = vec!["create"];
    full.extend_from_slice(line);
    T::try_parse_from(full).unwrap().args
}

/// The spec as the manager keeps it: what the CLI sends, with the manager's defaults.
fn spec(line: &[&str]) -> ServiceSpec {
    with_defaults(sent(line))
}

/// The spec as the CLI sends it.
fn sent(line: &[&str]) -> ServiceSpec {
    build_spec(&args(line), |_| None).unwrap()
}

fn err(line: &[&str]) -> String {
    build_spec(&args(line), |_| None).unwrap_err().to_string()
}

fn container(s: &ServiceSpec) -> &ContainerSpec {
    s.task_template
        .as_ref()
        .unwrap()
        .container
        .as_ref()
        .unwrap()
}

#[test]
fn defaults_follow_swarm() {
    let s = spec(&["nginx:alpine"]);
    assert_eq!(s.name, "");
    assert_eq!(
        s.mode,
        Some(M::Replicated(ReplicatedService { replicas: 1 }))
    );
    let c = container(&s);
    assert_eq!(c.image, "nginx:alpine");
    assert!(c.command.is_empty() && c.args.is_empty());
    assert_eq!(c.stop_grace_period_ms, Some(10_000));
    let t = s.task_template.as_ref().unwrap();
    let r = t.restart.as_ref().unwrap();
    assert_eq!(r.condition(), RestartCondition::Any);
    assert_eq!(r.delay_ms, Some(5_000));
    assert_eq!((r.max_attempts, r.window_ms), (0, 0));
    assert!(t.resources.is_none() && t.placement.is_none());
    for u in [
        s.update_config.as_ref().unwrap(),
        s.rollback_config.as_ref().unwrap(),
    ] {
        assert_eq!(u.parallelism, Some(1));
        assert_eq!(u.delay_ms, 0);
        assert_eq!(u.failure_action(), FailureAction::Pause);
        assert_eq!(u.monitor_ms, Some(5_000));
        assert_eq!(u.order(), UpdateOrder::StopFirst);
    }
    assert_eq!(s.endpoint.as_ref().unwrap().mode(), ResolutionMode::Vip);
}

#[test]
fn what_no_flag_sets_is_sent_unset_for_the_manager_to_fill_in() {
    let s = sent(&["nginx:alpine"]);
    let t = s.task_template.as_ref().unwrap();
    assert_eq!(container(&s).stop_grace_period_ms, None);
    assert!(t.restart.is_none());
    assert!(s.update_config.is_none() && s.rollback_config.is_none());
    assert!(s.endpoint.is_none());
    // One flag of a part sends that part, the rest of it still unset.
    let s = sent(&["--restart-max-attempts", "3", "--update-delay", "1s", "img"]);
    let r = s.task_template.as_ref().unwrap().restart.as_ref().unwrap();
    assert_eq!((r.max_attempts, r.delay_ms), (3, None));
    let u = s.update_config.as_ref().unwrap();
    assert_eq!(
        (u.delay_ms, u.parallelism, u.monitor_ms),
        (1_000, None, None)
    );
    assert!(s.rollback_config.is_none());
    let s = with_defaults(s);
    assert_eq!(s.update_config.unwrap().parallelism, Some(1));
    assert_eq!(
        s.task_template.unwrap().restart.unwrap().delay_ms,
        Some(5_000)
    );
}

#[test]
fn command_after_the_image_is_args() {
    let s = spec(&["--name", "web", "busybox", "sleep", "--replicas", "-x"]);
    assert_eq!(s.name, "web");
    assert_eq!(container(&s).args, ["sleep", "--replicas", "-x"]);
    // Flags before the image still count.
    assert_eq!(
        s.mode,
        Some(M::Replicated(ReplicatedService { replicas: 1 }))
    );
    let s = spec(&["--entrypoint", "/bin/sh -c", "alpine", "echo hi"]);
    assert_eq!(container(&s).command, ["/bin/sh", "-c"]);
    assert_eq!(container(&s).args, ["echo hi"]);
}

#[test]
fn everything_at_once() {
    let s = spec(&[
        "--name",
        "api",
        "--replicas",
        "3",
        "-e",
        "A=1",
        "--env",
        "B=x=y",
        "-l",
        "tier=web",
        "--container-label",
        "c=d",
        "--constraint",
        "node.role == worker",
        "--placement-pref",
        "spread=node.labels.zone",
        "--replicas-max-per-node",
        "2",
        "--reserve-cpu",
        "0.25",
        "--reserve-memory",
        "128M",
        "--limit-cpu",
        "1.5",
        "--limit-memory",
        "1g",
        "--limit-pids",
        "64",
        "--restart-condition",
        "on-failure",
        "--restart-delay",
        "2s",
        "--restart-max-attempts",
        "4",
        "--restart-window",
        "1m",
        "--hostname",
        "h",
        "-w",
        "/srv",
        "-u",
        "1000:1000",
        "--stop-signal",
        "INT",
        "--stop-grace-period",
        "30s",
        "-p",
        "8080:80",
        "-p",
        "published=53,target=53,protocol=udp,mode=host",
        "--network",
        "backend",
        "--mount",
        "type=tmpfs,target=/tmp",
        "--health-cmd",
        "true",
        "--health-interval",
        "10s",
        "--health-retries",
        "2",
        "--health-start-interval",
        "1s",
        "--update-parallelism",
        "2",
        "--update-delay",
        "10s",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "1m",
        "--update-max-failure-ratio",
        "0.5",
        "--update-order",
        "start-first",
        "--rollback-parallelism",
        "0",
        "--read-only",
        "img",
        "serve",
    ]);
    assert_eq!(
        s.mode,
        Some(M::Replicated(ReplicatedService { replicas: 3 }))
    );
    assert_eq!(s.labels.get("tier").unwrap(), "web");
    let t = s.task_template.as_ref().unwrap();
    let c = t.container.as_ref().unwrap();
    assert_eq!(c.env, ["A=1", "B=x=y"]);
    assert_eq!(c.labels.get("c").unwrap(), "d");
    assert_eq!(
        (c.hostname.as_str(), c.dir.as_str(), c.user.as_str()),
        ("h", "/srv", "1000:1000")
    );
    assert_eq!(c.stop_signal, "SIGINT");
    assert_eq!(c.stop_grace_period_ms, Some(30_000));
    assert!(c.read_only);
    assert_eq!(c.mounts[0].r#type(), MountType::Tmpfs);
    let h = c.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, ["CMD-SHELL", "true"]);
    assert_eq!(
        (h.interval_ms, h.retries, h.start_interval_ms),
        (10_000, 2, 1_000)
    );
    let p = t.placement.as_ref().unwrap();
    assert_eq!(p.constraints, ["node.role==worker"]);
    assert_eq!(p.preferences[0].spread, "node.labels.zone");
    assert_eq!(p.max_replicas, 2);
    let r = t.resources.as_ref().unwrap();
    assert_eq!(r.reservations.as_ref().unwrap().nano_cpus, 250_000_000);
    assert_eq!(r.reservations.as_ref().unwrap().memory_bytes, 128 << 20);
    assert_eq!(r.limits.as_ref().unwrap().nano_cpus, 1_500_000_000);
    assert_eq!(r.limits.as_ref().unwrap().memory_bytes, 1 << 30);
    assert_eq!(r.limits.as_ref().unwrap().pids, 64);
    assert_eq!(r.reservations.as_ref().unwrap().pids, 0);
    let rp = t.restart.as_ref().unwrap();
    assert_eq!(rp.condition(), RestartCondition::OnFailure);
    assert_eq!(
        (rp.delay_ms, rp.max_attempts, rp.window_ms),
        (Some(2_000), 4, 60_000)
    );
    assert_eq!(t.networks[0].target, "backend");
    let u = s.update_config.as_ref().unwrap();
    assert_eq!(
        (u.parallelism, u.delay_ms, u.monitor_ms),
        (Some(2), 10_000, Some(60_000))
    );
    assert_eq!(u.failure_action(), FailureAction::Rollback);
    assert_eq!(u.max_failure_ratio, 0.5);
    assert_eq!(u.order(), UpdateOrder::StartFirst);
    assert_eq!(s.rollback_config.as_ref().unwrap().parallelism, Some(0));
    let e = s.endpoint.as_ref().unwrap();
    assert_eq!(e.ports.len(), 2);
    assert_eq!(e.ports[1].protocol(), PortProtocol::Udp);
    assert_eq!(e.ports[1].publish_mode(), PublishMode::Host);
    assert_eq!(container(&s).args, ["serve"]);
}

#[test]
fn modes() {
    let s = spec(&["--mode", "global", "img"]);
    assert_eq!(s.mode, Some(M::Global(GlobalService {})));
    let s = spec(&["--mode", "replicated-job", "--replicas", "5", "img"]);
    assert_eq!(
        s.mode,
        Some(M::ReplicatedJob(ReplicatedJob {
            max_concurrent: 5,
            total_completions: 5
        }))
    );
    assert_eq!(
        s.task_template
            .as_ref()
            .unwrap()
            .restart
            .as_ref()
            .unwrap()
            .condition(),
        RestartCondition::OnFailure
    );
    assert!(s.update_config.is_none());
    let s = spec(&[
        "--mode",
        "replicated-job",
        "--replicas",
        "5",
        "--max-concurrent",
        "2",
        "img",
    ]);
    assert_eq!(
        s.mode,
        Some(M::ReplicatedJob(ReplicatedJob {
            max_concurrent: 2,
            total_completions: 5
        }))
    );
    let s = spec(&["--mode", "global-job", "img"]);
    assert_eq!(s.mode, Some(M::GlobalJob(GlobalJob {})));
    let s = spec(&["--replicas", "0", "img"]);
    assert_eq!(
        s.mode,
        Some(M::Replicated(ReplicatedService { replicas: 0 }))
    );
}

#[test]
fn one_sentence_per_mistake() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--replicas", "-1", "img"],
            "invalid value \"-1\" for --replicas: use a whole number, 0 or more",
        ),
        (
            &["--replicas", "lots", "img"],
            "invalid value \"lots\" for --replicas",
        ),
        (
            &["--mode", "global", "--replicas", "2", "img"],
            "--replicas can only be used with replicated or replicated-job mode",
        ),
        (
            &["--mode", "daemonset", "img"],
            "invalid mode \"daemonset\"",
        ),
        (
            &["--max-concurrent", "2", "img"],
            "--max-concurrent can only be used with replicated-job mode",
        ),
        (
            &["--mode", "global", "--replicas-max-per-node", "1", "img"],
            "--replicas-max-per-node can only be used",
        ),
        (
            &["--limit-pids", "-1", "img"],
            "invalid value \"-1\" for --limit-pids: use a whole number, 0 or more",
        ),
        (
            &["--restart-delay", "soon", "img"],
            "invalid duration \"soon\" for --restart-delay",
        ),
        (
            &["--stop-grace-period", "10", "img"],
            "invalid duration \"10\" for --stop-grace-period",
        ),
        (&["--update-delay", "x", "img"], "for --update-delay"),
        (
            &["--rollback-monitor", "x", "img"],
            "for --rollback-monitor",
        ),
        (
            &["--limit-memory", "12XB", "img"],
            "invalid memory size \"12XB\" for --limit-memory",
        ),
        (
            &["--reserve-cpu", "lots", "img"],
            "invalid CPU count \"lots\" for --reserve-cpu",
        ),
        (
            &["--reserve-memory", "2g", "--limit-memory", "1g", "img"],
            "--reserve-memory is larger than --limit-memory",
        ),
        (
            &["-p", "80:80:80", "img"],
            "invalid port \"80:80:80\" for --publish",
        ),
        (
            &["-p", "8080:80", "-p", "8080:81", "img"],
            "port 8080 is published twice",
        ),
        (
            &["--endpoint-mode", "dnsrr", "-p", "8080:80", "img"],
            "ingress ports need --endpoint-mode vip",
        ),
        (
            &["--endpoint-mode", "rr", "img"],
            "for --endpoint-mode: use vip or dnsrr",
        ),
        (
            &["--mount", "type=bind,target=/x", "img"],
            "invalid mount \"type=bind,target=/x\" for --mount",
        ),
        (
            &["--constraint", "node.role=manager", "img"],
            "invalid constraint \"node.role=manager\"",
        ),
        (
            &["--env", "=1", "img"],
            "invalid environment variable \"=1\" for --env: the name must not be empty",
        ),
        (
            &["--label", "=1", "img"],
            "invalid label \"=1\" for --label",
        ),
        (
            &["--restart-condition", "always", "img"],
            "for --restart-condition",
        ),
        (
            &[
                "--mode",
                "replicated-job",
                "--restart-condition",
                "any",
                "img",
            ],
            "cannot be used with jobs",
        ),
        (
            &["--mode", "global-job", "--update-parallelism", "2", "img"],
            "cannot be used with jobs",
        ),
        (
            &["--update-failure-action", "explode", "img"],
            "use pause, continue or rollback",
        ),
        (
            &["--rollback-failure-action", "rollback", "img"],
            "for --rollback-failure-action: use pause or continue",
        ),
        (
            &["--update-order", "random", "img"],
            "use stop-first or start-first",
        ),
        (
            &["--update-max-failure-ratio", "2", "img"],
            "use a fraction from 0 to 1",
        ),
        (
            &["--no-healthcheck", "--health-cmd", "true", "img"],
            "--no-healthcheck conflicts",
        ),
        (&["--health-retries", "-2", "img"], "for --health-retries"),
        (
            &["--stop-signal", "SIGBOGUS", "img"],
            "invalid signal \"SIGBOGUS\"",
        ),
        (
            &["--entrypoint", "'sh", "img"],
            "a single quote is not closed",
        ),
        (
            &["--name", "web server", "img"],
            "invalid service name \"web server\"",
        ),
        (&["--name", "-web", "img"], "invalid service name"),
        (&["bad image"], "invalid image \"bad image\""),
        (&["--network", "", "img"], "invalid network"),
    ];
    for (line, want) in cases {
        let e = err(line);
        assert!(e.contains(want), "{line:?}: {e}");
        assert!(!e.contains('\n'), "{line:?}: {e}");
    }
}

#[test]
fn healthchecks() {
    let s = spec(&["--no-healthcheck", "img"]);
    assert_eq!(container(&s).healthcheck.as_ref().unwrap().test, ["NONE"]);
    let s = spec(&["--health-interval", "3s", "img"]);
    let h = container(&s).healthcheck.clone().unwrap();
    assert!(h.test.is_empty());
    assert_eq!(h.interval_ms, 3_000);
}

#[test]
fn env_from_the_shell() {
    let a = args(&["-e", "TOKEN", "img"]);
    let s = build_spec(&a, |k| (k == "TOKEN").then(|| "s3cret".to_string())).unwrap();
    assert_eq!(container(&s).env, ["TOKEN=s3cret"]);
}

#[test]
fn container_options_reach_the_spec() {
    let s = spec(&[
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=-1",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "ALL",
        "--sysctl",
        "net.core.somaxconn=512",
        "--init",
        "--dns",
        "1.1.1.1",
        "--dns-search",
        "example.com",
        "--dns-option",
        "ndots:2",
        "--host",
        "db.local:10.0.0.5",
        "--group",
        "audio",
        "-t",
        "--oom-score-adj",
        "-200",
        "--network",
        "name=front,alias=api",
        "busybox",
    ]);
    let c = container(&s);
    assert_eq!(
        c.ulimits
            .iter()
            .map(|u| (u.name.as_str(), u.soft, u.hard))
            .collect::<Vec<_>>(),
        [("nofile", 1024, 2048), ("core", -1, -1)]
    );
    assert_eq!(
        (c.cap_add.as_slice(), c.cap_drop.as_slice()),
        (&["CAP_NET_ADMIN".to_string()][..], &["ALL".to_string()][..])
    );
    assert_eq!(
        c.sysctls.get("net.core.somaxconn").map(String::as_str),
        Some("512")
    );
    assert!(c.init && c.tty);
    let d = c.dns_config.as_ref().unwrap();
    assert_eq!(
        (
            d.nameservers.as_slice(),
            d.search.as_slice(),
            d.options.as_slice()
        ),
        (
            &["1.1.1.1".to_string()][..],
            &["example.com".to_string()][..],
            &["ndots:2".to_string()][..]
        )
    );
    assert_eq!(c.hosts, ["10.0.0.5 db.local"]);
    assert_eq!(c.groups, ["audio"]);
    assert_eq!(c.oom_score_adj, -200);
    let n = &s.task_template.as_ref().unwrap().networks[0];
    assert_eq!(
        (n.target.as_str(), n.aliases.as_slice()),
        ("front", &["api".to_string()][..])
    );
}

#[test]
fn env_files_come_before_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vars");
    std::fs::write(&file, "A=file\nB=file\n").unwrap();
    let s = spec(&[
        "--env-file",
        file.to_str().unwrap(),
        "-e",
        "B=flag",
        "busybox",
    ]);
    assert_eq!(container(&s).env, ["A=file", "B=flag"]);
}

#[test]
fn bad_container_options_are_refused_naming_the_flag() {
    for (line, want) in [
        (&["--ulimit", "nofile=20:10"][..], "--ulimit"),
        (&["--ulimit", "bogus=1"][..], "unknown limit"),
        (
            &["--cap-add", "fly"][..],
            "unknown capability \"fly\" for --cap-add",
        ),
        (&["--cap-drop", "x"][..], "--cap-drop"),
        (&["--sysctl", "vm.swappiness=1"][..], "not namespaced"),
        (&["--dns", "resolver"][..], "--dns"),
        (&["--dns-search", "a b"][..], "--dns-search"),
        (&["--dns-option", ""][..], "--dns-option"),
        (&["--host", "db"][..], "--host"),
        (&["--group", "a:b"][..], "--group"),
        (&["--oom-score-adj", "5000"][..], "--oom-score-adj"),
        (
            &["--network", "host", "--sysctl", "net.core.somaxconn=1"][..],
            "--network host",
        ),
        (
            &["--network", "host", "--network", "front"][..],
            "other networks",
        ),
        (&["--network", "name=host,alias=x"][..], "no alias"),
        (&["--network", "host", "-p", "8080:80"][..], "routing mesh"),
        (
            &[
                "--network",
                "host",
                "-p",
                "published=8080,target=80,mode=host",
            ][..],
            "as itself",
        ),
    ] {
        let mut full = line.to_vec();
        full.push("busybox");
        let e = err(&full);
        assert!(e.contains(want), "{line:?}: {e}");
    }
    let s = spec(&[
        "--network",
        "host",
        "-p",
        "published=80,target=80,mode=host",
        "busybox",
    ]);
    assert_eq!(s.task_template.unwrap().networks[0].target, "host");
}
