//! `service update`'s flags applied to a service's spec.

use super::*;
use proto::service_spec::Mode;
use proto::UpdateConfig;
use proto::{
    ContainerSpec, EndpointSpec, FailureAction, Meta, PortConfig, ReplicatedService, TaskSpec,
    UpdateOrder,
};

fn service() -> Service {
    Service {
        meta: Some(Meta {
            id: "abc".into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            name: "web".into(),
            mode: Some(Mode::Replicated(ReplicatedService { replicas: 2 })),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "busybox:1".into(),
                    args: vec!["sleep".into(), "100".into()],
                    env: vec!["A=1".into(), "B=2".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            endpoint: Some(EndpointSpec {
                ports: vec![PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            update_config: Some(UpdateConfig {
                parallelism: Some(1),
                monitor_ms: Some(5_000),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn args(service: &str) -> UpdateArgs {
    UpdateArgs {
        service: service.into(),
        ..Default::default()
    }
}

#[test]
fn changes_only_what_the_flags_say() {
    let s = service();
    assert_eq!(
        updated_spec(&s, &args("web"), |_| None).unwrap(),
        s.spec.clone().unwrap()
    );
    let a = UpdateArgs {
        image: Some("busybox:2".into()),
        args: Some("sleep 200".into()),
        env_add: vec!["B=3".into(), "C=4".into()],
        env_rm: vec!["A".into()],
        label_add: vec!["tier=web".into()],
        constraint_add: vec!["node.role==manager".into()],
        replicas: Some("6".into()),
        limit_memory: Some("64m".into()),
        limit_pids: Some("200".into()),
        force: true,
        update_parallelism: Some("2".into()),
        update_failure_action: Some("rollback".into()),
        update_order: Some("start-first".into()),
        ..args("web")
    };
    let spec = updated_spec(&s, &a, |_| None).unwrap();
    let t = spec.task_template.clone().unwrap();
    let c = t.container.unwrap();
    assert_eq!(c.image, "busybox:2");
    assert_eq!(c.args, ["sleep", "200"]);
    assert_eq!(c.env, ["B=3", "C=4"]);
    assert_eq!(spec.labels.get("tier").map(String::as_str), Some("web"));
    assert_eq!(t.placement.unwrap().constraints, ["node.role==manager"]);
    assert_eq!(
        spec.mode,
        Some(Mode::Replicated(ReplicatedService { replicas: 6 }))
    );
    let limits = t.resources.unwrap().limits.unwrap();
    assert_eq!((limits.memory_bytes, limits.pids), (64 << 20, 200));
    assert_eq!(t.force_update, 1);
    let u = spec.update_config.unwrap();
    assert_eq!(u.parallelism, Some(2));
    assert_eq!(u.monitor_ms, Some(5_000), "what no flag changes is kept");
    assert_eq!(u.failure_action(), FailureAction::Rollback);
    assert_eq!(u.order(), UpdateOrder::StartFirst);
}

#[test]
fn ports_are_added_and_removed() {
    let s = service();
    let a = UpdateArgs {
        publish_rm: vec!["8080".into()],
        publish_add: vec!["9090:90".into()],
        ..args("web")
    };
    let ports = updated_spec(&s, &a, |_| None)
        .unwrap()
        .endpoint
        .unwrap()
        .ports;
    assert_eq!(
        ports
            .iter()
            .map(|p| (p.published_port, p.target_port))
            .collect::<Vec<_>>(),
        [(9090, 90)]
    );
    let a = UpdateArgs {
        publish_rm: vec!["7070".into()],
        ..args("web")
    };
    let err = updated_spec(&s, &a, |_| None).unwrap_err().to_string();
    assert!(err.contains("does not publish port 7070"), "{err}");
}

#[test]
fn bad_values_are_refused_with_the_flag() {
    let s = service();
    let cases: Vec<(UpdateArgs, &str)> = vec![
        (
            UpdateArgs {
                image: Some("a b".into()),
                ..args("web")
            },
            "--image",
        ),
        (
            UpdateArgs {
                replicas: Some("-1".into()),
                ..args("web")
            },
            "--replicas",
        ),
        (
            UpdateArgs {
                update_parallelism: Some("x".into()),
                ..args("web")
            },
            "--update-parallelism",
        ),
        (
            UpdateArgs {
                update_order: Some("sideways".into()),
                ..args("web")
            },
            "--update-order",
        ),
        (
            UpdateArgs {
                rollback_failure_action: Some("rollback".into()),
                ..args("web")
            },
            "--rollback-failure-action",
        ),
        (
            UpdateArgs {
                publish_rm: vec!["http".into()],
                ..args("web")
            },
            "--publish-rm",
        ),
        (
            UpdateArgs {
                env_add: vec!["=x".into()],
                ..args("web")
            },
            "=",
        ),
    ];
    for (a, want) in cases {
        let err = updated_spec(&s, &a, |_| None).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

fn parse_update(line: &[&str]) -> UpdateArgs {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: UpdateArgs,
    }
    let mut full = vec!["update"];
    full.extend_from_slice(line);
    full.push("web");
    T::try_parse_from(full).unwrap().args
}

fn updated(s: &Service, line: &[&str]) -> ServiceSpec {
    updated_spec(s, &parse_update(line), |_| None).unwrap()
}

fn update_err(s: &Service, line: &[&str]) -> String {
    updated_spec(s, &parse_update(line), |_| None)
        .unwrap_err()
        .to_string()
}

fn c_of(spec: &ServiceSpec) -> ContainerSpec {
    spec.task_template.clone().unwrap().container.unwrap()
}

#[test]
fn container_options_are_added_and_removed() {
    let s = service();
    let spec = updated(
        &s,
        &[
            "--ulimit-add",
            "nofile=100:200",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            "--sysctl-add",
            "net.core.somaxconn=99",
            "--init",
            "-t",
            "--dns-add",
            "1.1.1.1",
            "--dns-search-add",
            "example.com",
            "--dns-option-add",
            "ndots:3",
            "--host-add",
            "db:10.0.0.9",
            "--group-add",
            "audio",
            "--oom-score-adj",
            "100",
            "--entrypoint",
            "/bin/sh -c",
        ],
    );
    let c = c_of(&spec);
    assert_eq!(c.ulimits[0].hard, 200);
    assert_eq!(c.cap_add, ["CAP_NET_ADMIN"]);
    assert_eq!(c.cap_drop, ["CAP_CHOWN"]);
    assert!(c.init && c.tty);
    assert_eq!(c.dns_config.as_ref().unwrap().nameservers, ["1.1.1.1"]);
    assert_eq!(c.hosts, ["10.0.0.9 db"]);
    assert_eq!(c.groups, ["audio"]);
    assert_eq!(c.oom_score_adj, 100);
    assert_eq!(c.command, ["/bin/sh", "-c"]);

    let mut s2 = s.clone();
    s2.spec = Some(spec);
    let spec = updated(
        &s2,
        &[
            "--ulimit-rm",
            "nofile",
            "--cap-add",
            "chown",
            "--cap-drop",
            "net_admin",
            "--sysctl-rm",
            "net.core.somaxconn",
            "--init=false",
            "--tty=false",
            "--dns-rm",
            "1.1.1.1",
            "--dns-search-rm",
            "example.com",
            "--dns-option-rm",
            "ndots:3",
            "--host-rm",
            "db",
            "--group-rm",
            "audio",
            "--entrypoint",
            "",
        ],
    );
    let c = c_of(&spec);
    assert!(c.ulimits.is_empty() && c.sysctls.is_empty() && c.hosts.is_empty());
    assert!(
        c.cap_add.is_empty() && c.cap_drop.is_empty(),
        "dropping NET_ADMIN takes it off the add list, adding CHOWN (a default) off the drop list: {c:?}"
    );
    assert!(!c.init && !c.tty);
    assert_eq!(c.dns_config, None);
    assert!(c.groups.is_empty() && c.command.is_empty());
}

#[test]
fn the_missing_update_forms_change_their_part_of_the_spec() {
    let s = service();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "F=1\n").unwrap();
    let spec = updated(
        &s,
        &[
            "--mount-add",
            "type=tmpfs,target=/cache",
            "--health-cmd",
            "true",
            "--health-interval",
            "2s",
            "--health-start-interval",
            "500ms",
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "3s",
            "--restart-max-attempts",
            "4",
            "--restart-window",
            "1m",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "--hostname",
            "h1",
            "--env-file",
            env_file.to_str().unwrap(),
            "--read-only",
            "--stop-signal",
            "SIGINT",
            "--stop-grace-period",
            "3s",
            "--placement-pref-add",
            "spread=node.labels.zone",
            "--replicas-max-per-node",
            "2",
            "--endpoint-mode",
            "dnsrr",
            "--container-label-add",
            "k=v",
        ],
    );
    let t = spec.task_template.clone().unwrap();
    let c = t.container.clone().unwrap();
    assert_eq!(c.mounts[0].target, "/cache");
    let h = c.healthcheck.clone().unwrap();
    assert_eq!(
        (h.test[1].as_str(), h.interval_ms, h.start_interval_ms),
        ("true", 2_000, 500)
    );
    let r = t.restart.unwrap();
    assert_eq!(r.condition(), proto::RestartCondition::OnFailure);
    assert_eq!(
        (r.delay_ms, r.max_attempts, r.window_ms),
        (Some(3_000), 4, 60_000)
    );
    assert_eq!(
        (c.user.as_str(), c.dir.as_str(), c.hostname.as_str()),
        ("nobody", "/tmp", "h1")
    );
    assert!(c.env.contains(&"F=1".to_string()) && c.read_only);
    assert_eq!(
        (c.stop_signal.as_str(), c.stop_grace_period_ms),
        ("SIGINT", Some(3_000))
    );
    let p = t.placement.unwrap();
    assert_eq!(
        (p.preferences[0].spread.as_str(), p.max_replicas),
        ("node.labels.zone", 2)
    );
    assert_eq!(c.labels.get("k").map(String::as_str), Some("v"));
    // The endpoint publishes an ingress port, which dnsrr cannot route: the control API
    // refuses that; here only the mode is set.
    assert_eq!(
        spec.endpoint.as_ref().unwrap().mode(),
        proto::ResolutionMode::Dnsrr
    );

    let mut s2 = s.clone();
    s2.spec = Some(spec);
    let spec = updated(
        &s2,
        &[
            "--mount-rm",
            "/cache",
            "--no-healthcheck",
            "--read-only=false",
            "--placement-pref-rm",
            "spread=node.labels.zone",
            "--container-label-rm",
            "k",
        ],
    );
    let c = c_of(&spec);
    assert!(c.mounts.is_empty() && !c.read_only && c.labels.is_empty());
    assert_eq!(c.healthcheck.unwrap().test, ["NONE"]);
    assert!(spec
        .task_template
        .unwrap()
        .placement
        .unwrap()
        .preferences
        .is_empty());
}

#[test]
fn networks_are_added_and_removed_by_name_or_id() {
    let s = service();
    let known = vec![proto::Network {
        meta: Some(Meta {
            id: "netid123456".into(),
            ..Default::default()
        }),
        spec: Some(proto::NetworkSpec {
            name: "front".into(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let a = parse_update(&["--network-add", "name=front,alias=api"]);
    let spec = updated_spec_with_networks(&s, &a, |_| None, &known).unwrap();
    let mut s2 = s.clone();
    let mut stored = spec.clone();
    // As the control API stores it: by ID.
    stored.task_template.as_mut().unwrap().networks[0].target = "netid123456".into();
    s2.spec = Some(stored);
    let a = parse_update(&["--network-add", "front"]);
    let e = updated_spec_with_networks(&s2, &a, |_| None, &known)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already on network"), "{e}");
    let a = parse_update(&["--network-rm", "front"]);
    let spec = updated_spec_with_networks(&s2, &a, |_| None, &known).unwrap();
    assert!(spec.task_template.unwrap().networks.is_empty());
    let a = parse_update(&["--network-rm", "back"]);
    let e = updated_spec_with_networks(&s2, &a, |_| None, &known)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not on network \"back\""), "{e}");
}

#[test]
fn bad_update_forms_are_refused_naming_the_flag() {
    let s = service();
    for (line, want) in [
        (&["--ulimit-add", "nofile=9:1"][..], "--ulimit-add"),
        (&["--cap-add", "fly"][..], "--cap-add"),
        (&["--sysctl-add", "vm.x=1"][..], "--sysctl-add"),
        (&["--dns-add", "x"][..], "--dns-add"),
        (&["--host-add", "x"][..], "--host-add"),
        (&["--host-rm", "nothere"][..], "--host-rm"),
        (&["--mount-rm", "/nope"][..], "--mount-rm"),
        (&["--mount-add", "type=bind,target=/x"][..], "--mount-add"),
        (&["--oom-score-adj", "-5000"][..], "--oom-score-adj"),
        (&["--endpoint-mode", "x"][..], "--endpoint-mode"),
        (&["--restart-condition", "x"][..], "--restart-condition"),
        (&["--max-concurrent", "2"][..], "--max-concurrent"),
        (
            &["--no-healthcheck", "--health-cmd", "x"][..],
            "--no-healthcheck",
        ),
        (&["--network-add", "host"][..], "--network host"),
    ] {
        let e = update_err(&s, line);
        assert!(e.contains(want), "{line:?}: {e}");
    }
}
