//! Compose fixtures in the shapes real projects use, loaded, read and translated as
//! `stack deploy` does, and checked against the whole specs they must produce; then every
//! kind of bad input, each refused with its path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use manager::controlapi::service::{validate, with_defaults};
use proto::service_spec::Mode as M;
use proto::*;

use super::load::{self, interpolate::Variables, Source};
use super::model;
use super::translate::{translate, Desired, IMAGE_LABEL, NAMESPACE_LABEL};

const DIR: &str = "/srv/app";

fn fixture(name: &str) -> Source {
    let text = match name {
        "voting.yml" => include_str!("fixtures/voting.yml"),
        "voting.override.yml" => include_str!("fixtures/voting.override.yml"),
        "webdb.yml" => include_str!("fixtures/webdb.yml"),
        "monitoring.yml" => include_str!("fixtures/monitoring.yml"),
        other => panic!("no fixture {other}"),
    };
    Source {
        name: name.into(),
        text: text.into(),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Variables {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The files a stack reads, as a fake file system.
fn files() -> HashMap<PathBuf, Vec<u8>> {
    [
        ("/srv/app/web.env", "LOG_LEVEL=warn\nWORKERS=4\n"),
        ("/srv/app/db_password.txt", "s3cret\n"),
        ("/srv/app/web.conf", "server {}\n"),
        ("/srv/app/Corefile", ".:53 {}\n"),
    ]
    .into_iter()
    .map(|(p, d)| (PathBuf::from(p), d.as_bytes().to_vec()))
    .collect()
}

fn read_stack(sources: Vec<Source>, vars: &Variables) -> Result<(model::Stack, Desired), String> {
    let tree = load::load(&sources, vars)?;
    let stack = model::read(&tree, Path::new(DIR), vars)?;
    let fs = files();
    let read = |p: &Path| -> Result<Vec<u8>, String> {
        fs.get(p)
            .cloned()
            .ok_or_else(|| format!("cannot read {}: No such file or directory", p.display()))
    };
    let desired = translate("app", &stack, &read)?;
    Ok((stack, desired))
}

fn deploy(names: &[&str], v: &Variables) -> (model::Stack, Desired) {
    read_stack(names.iter().map(|n| fixture(n)).collect(), v).unwrap()
}

fn ns() -> HashMap<String, String> {
    [(NAMESPACE_LABEL.to_string(), "app".to_string())].into()
}

fn labelled(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut l = ns();
    l.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

/// The service named `name`, after checking that it carries its image as written in
/// [`IMAGE_LABEL`]; returned without that label.
fn service(d: &Desired, name: &str) -> ServiceSpec {
    let mut s = d
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
        .clone();
    let image = &s
        .task_template
        .as_ref()
        .unwrap()
        .container
        .as_ref()
        .unwrap()
        .image;
    assert_eq!(s.labels.get(IMAGE_LABEL), Some(image), "{name}");
    s.labels.remove(IMAGE_LABEL);
    s
}

fn attach(target: &str, aliases: &[&str]) -> NetworkAttachmentConfig {
    NetworkAttachmentConfig {
        target: target.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    }
}

fn container(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        labels: ns(),
        ..Default::default()
    }
}

/// Every spec the manager would accept, after its defaults.
fn all_valid(d: &Desired) {
    for s in &d.services {
        validate(&with_defaults(s.clone()))
            .unwrap_or_else(|e| panic!("{}: {}", s.name, e.message()));
    }
}

#[test]
fn a_voting_app_of_five_services_on_two_networks() {
    let (stack, d) = deploy(&["voting.yml"], &vars(&[]));
    all_valid(&d);
    assert_eq!(
        super::ignored_warning(&stack).as_deref(),
        Some("Ignoring unsupported options: depends_on")
    );
    let names: Vec<&str> = d.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["app_backend", "app_frontend"]);
    for n in &d.networks {
        assert_eq!((n.driver.as_str(), &n.labels), ("overlay", &ns()));
    }
    assert!(d.secrets.is_empty() && d.configs.is_empty());
    assert_eq!(
        service(&d, "app_vote"),
        ServiceSpec {
            name: "app_vote".into(),
            labels: ns(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    args: vec!["python".into(), "app.py".into()],
                    ..container("example/vote:latest")
                }),
                restart: Some(RestartPolicy {
                    condition: RestartCondition::OnFailure as i32,
                    ..Default::default()
                }),
                networks: vec![attach("app_frontend", &["vote"])],
                ..Default::default()
            }),
            mode: Some(M::Replicated(ReplicatedService { replicas: 2 })),
            update_config: Some(UpdateConfig {
                parallelism: Some(2),
                delay_ms: 10_000,
                order: UpdateOrder::StartFirst as i32,
                ..Default::default()
            }),
            rollback_config: None,
            endpoint: Some(EndpointSpec {
                mode: ResolutionMode::Vip as i32,
                ports: vec![PortConfig {
                    target_port: 80,
                    published_port: 5000,
                    ..Default::default()
                }],
            }),
        }
    );
    assert_eq!(
        service(&d, "app_worker"),
        ServiceSpec {
            name: "app_worker".into(),
            labels: labelled(&[("APP", "VOTING")]),
            task_template: Some(TaskSpec {
                container: Some(container("example/worker:latest")),
                restart: Some(RestartPolicy {
                    condition: RestartCondition::OnFailure as i32,
                    delay_ms: Some(10_000),
                    max_attempts: 3,
                    window_ms: 120_000,
                }),
                placement: Some(Placement {
                    constraints: vec!["node.role==manager".into()],
                    ..Default::default()
                }),
                networks: vec![
                    attach("app_frontend", &["worker"]),
                    attach("app_backend", &["worker", "processor"]),
                ],
                ..Default::default()
            }),
            mode: Some(M::Replicated(ReplicatedService { replicas: 1 })),
            ..Default::default()
        }
    );
    let db = service(&d, "app_db");
    let t = db.task_template.as_ref().unwrap();
    let c = t.container.as_ref().unwrap();
    assert_eq!(
        c.env,
        ["POSTGRES_PASSWORD=postgres", "POSTGRES_USER=postgres"]
    );
    assert_eq!(
        c.mounts,
        [Mount {
            r#type: MountType::Volume as i32,
            source: "app_db-data".into(),
            target: "/var/lib/postgresql/data".into(),
            ..Default::default()
        }]
    );
    assert_eq!(t.networks, [attach("app_backend", &["db"])]);
    assert_eq!(
        db.endpoint, None,
        "no ports: the manager's default endpoint"
    );
    let result = service(&d, "app_result");
    assert_eq!(
        result.endpoint.as_ref().unwrap().ports[0].published_port,
        5001
    );
    assert_eq!(
        result.mode,
        Some(M::Replicated(ReplicatedService { replicas: 1 }))
    );
}

#[test]
fn an_override_file_and_variables_change_only_what_they_say() {
    let (_, d) = deploy(
        &["voting.yml", "voting.override.yml"],
        &vars(&[("TAG", "v2")]),
    );
    all_valid(&d);
    let vote = service(&d, "app_vote");
    let c = vote
        .task_template
        .as_ref()
        .unwrap()
        .container
        .as_ref()
        .unwrap();
    assert_eq!(c.image, "example/vote:v2-debug");
    assert_eq!(c.env, ["DEBUG=1"]);
    assert_eq!(c.args, ["python", "app.py"], "kept from the first file");
    assert_eq!(
        vote.mode,
        Some(M::Replicated(ReplicatedService { replicas: 3 }))
    );
    let ports: Vec<(u32, u32)> = vote
        .endpoint
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .map(|p| (p.published_port, p.target_port))
        .collect();
    assert_eq!(ports, [(5000, 80), (5005, 5005)]);
    assert_eq!(
        vote.update_config.as_ref().unwrap().parallelism,
        Some(2),
        "kept from the first file"
    );
    let redis = service(&d, "app_redis");
    let limits = redis
        .task_template
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits.memory_bytes, 64 << 20);
    let (_, untouched) = deploy(&["voting.yml"], &vars(&[("TAG", "v2")]));
    assert_eq!(service(&d, "app_db"), service(&untouched, "app_db"));
}

#[test]
fn a_web_server_and_its_database_with_a_secret_a_config_and_health_checks() {
    let (stack, d) = deploy(&["webdb.yml"], &vars(&[("WEB_IMAGE", "nginx:1.25-alpine")]));
    all_valid(&d);
    assert_eq!(super::ignored_warning(&stack), None);
    assert_eq!(
        d.secrets,
        [SecretSpec {
            name: "app_db_password".into(),
            labels: ns(),
            data: b"s3cret\n".to_vec(),
        }]
    );
    assert_eq!(
        d.configs,
        [ConfigSpec {
            name: "app_web_conf".into(),
            labels: ns(),
            data: b"server {}\n".to_vec(),
        }]
    );
    let names: Vec<&str> = d.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["app_default"]);
    assert_eq!(
        service(&d, "app_web"),
        ServiceSpec {
            name: "app_web".into(),
            labels: ns(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    env: vec![
                        "DB_HOST=db".into(),
                        "LOG_LEVEL=warn".into(),
                        "WORKERS=4".into()
                    ],
                    dir: "/srv".into(),
                    user: "101:101".into(),
                    hostname: "web".into(),
                    labels: labelled(&[("role", "frontend")]),
                    stop_signal: "SIGQUIT".into(),
                    stop_grace_period_ms: Some(30_000),
                    read_only: true,
                    healthcheck: Some(HealthConfig {
                        test: ["CMD", "wget", "-q", "-O-", "http://localhost/"]
                            .map(String::from)
                            .to_vec(),
                        interval_ms: 10_000,
                        timeout_ms: 3_000,
                        retries: 3,
                        start_period_ms: 5_000,
                        start_interval_ms: 1_000,
                    }),
                    secrets: vec![SecretReference {
                        secret_name: "app_db_password".into(),
                        target: "db_password".into(),
                        mode: 0o444,
                        ..Default::default()
                    }],
                    configs: vec![ConfigReference {
                        config_name: "app_web_conf".into(),
                        target: "/etc/nginx/conf.d/default.conf".into(),
                        mode: 0o440,
                        ..Default::default()
                    }],
                    ..container("nginx:1.25-alpine")
                }),
                networks: vec![attach("app_default", &["web"])],
                ..Default::default()
            }),
            mode: Some(M::Replicated(ReplicatedService { replicas: 1 })),
            endpoint: Some(EndpointSpec {
                mode: ResolutionMode::Vip as i32,
                ports: vec![PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    publish_mode: PublishMode::Host as i32,
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }
    );
    assert_eq!(
        service(&d, "app_db"),
        ServiceSpec {
            name: "app_db".into(),
            labels: ns(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    command: vec!["docker-entrypoint.sh".into()],
                    args: ["postgres", "-c", "max_connections=50"]
                        .map(String::from)
                        .to_vec(),
                    env: vec!["POSTGRES_PASSWORD_FILE=/run/secrets/pg_pass".into()],
                    mounts: vec![
                        Mount {
                            r#type: MountType::Volume as i32,
                            source: "shared-pg-data".into(),
                            target: "/var/lib/postgresql/data".into(),
                            ..Default::default()
                        },
                        Mount {
                            r#type: MountType::Tmpfs as i32,
                            target: "/tmp".into(),
                            tmpfs_size_bytes: 64 << 20,
                            ..Default::default()
                        },
                    ],
                    healthcheck: Some(HealthConfig {
                        test: vec!["CMD-SHELL".into(), "pg_isready -U postgres".into()],
                        ..Default::default()
                    }),
                    secrets: vec![SecretReference {
                        secret_name: "app_db_password".into(),
                        target: "pg_pass".into(),
                        uid: 999,
                        gid: 999,
                        mode: 0o400,
                        ..Default::default()
                    }],
                    ..container("postgres:15-alpine")
                }),
                resources: Some(ResourceRequirements {
                    limits: Some(Resources {
                        nano_cpus: 500_000_000,
                        memory_bytes: 256 << 20,
                        pids: 200,
                    }),
                    reservations: Some(Resources {
                        memory_bytes: 128 << 20,
                        ..Default::default()
                    }),
                }),
                networks: vec![attach("app_default", &["db"])],
                ..Default::default()
            }),
            mode: Some(M::Replicated(ReplicatedService { replicas: 1 })),
            rollback_config: Some(UpdateConfig {
                parallelism: Some(0),
                failure_action: FailureAction::Continue as i32,
                ..Default::default()
            }),
            endpoint: Some(EndpointSpec {
                mode: ResolutionMode::Dnsrr as i32,
                ports: Vec::new(),
            }),
            ..Default::default()
        }
    );
}

#[test]
fn a_global_agent_and_a_global_job_with_ignored_keys_warned_once() {
    let (stack, d) = deploy(&["monitoring.yml"], &vars(&[]));
    all_valid(&d);
    assert_eq!(
        super::ignored_warning(&stack).as_deref(),
        Some("Ignoring unsupported options: build, container_name, restart")
    );
    assert_eq!(d.external_networks, ["metrics"]);
    assert_eq!(
        d.networks
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["app_default"]
    );
    assert_eq!(
        service(&d, "app_agent"),
        ServiceSpec {
            name: "app_agent".into(),
            labels: ns(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    mounts: vec![Mount {
                        r#type: MountType::Bind as i32,
                        source: "/var/run".into(),
                        target: "/host/run".into(),
                        read_only: true,
                        ..Default::default()
                    }],
                    ..container("example/agent:1.4")
                }),
                resources: Some(ResourceRequirements {
                    limits: Some(Resources {
                        nano_cpus: 250_000_000,
                        memory_bytes: 32 << 20,
                        pids: 0,
                    }),
                    reservations: None,
                }),
                placement: Some(Placement {
                    preferences: vec![PlacementPreference {
                        spread: "node.labels.zone".into(),
                    }],
                    ..Default::default()
                }),
                networks: vec![attach("app_default", &["agent"])],
                ..Default::default()
            }),
            mode: Some(M::Global(GlobalService {})),
            update_config: Some(UpdateConfig {
                failure_action: FailureAction::Rollback as i32,
                monitor_ms: Some(30_000),
                max_failure_ratio: 0.2,
                ..Default::default()
            }),
            ..Default::default()
        }
    );
    let setup = service(&d, "app_setup");
    assert_eq!(setup.mode, Some(M::GlobalJob(GlobalJob {})));
    let t = setup.task_template.as_ref().unwrap();
    assert_eq!(
        t.restart.as_ref().unwrap().condition(),
        RestartCondition::None
    );
    assert_eq!(t.networks, [attach("metrics", &["setup"])]);
    let kept = with_defaults(setup.clone());
    assert_eq!((kept.update_config, kept.rollback_config), (None, None));
}

#[test]
fn relative_paths_start_at_the_first_file_s_directory() {
    let text = "services:\n  web:\n    image: web\n    volumes: ['./html:/usr/share/html:ro']\n";
    let (_, d) = read_stack(
        vec![Source {
            name: "c.yml".into(),
            text: text.into(),
        }],
        &vars(&[]),
    )
    .unwrap();
    let c = service(&d, "app_web")
        .task_template
        .as_ref()
        .unwrap()
        .container
        .clone()
        .unwrap();
    assert_eq!(c.mounts[0].source, "/srv/app/html");
    assert_eq!(c.mounts[0].r#type(), MountType::Bind);
}

#[test]
fn bad_input_is_refused_with_the_path_to_it() {
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    image: web\n    deploy:\n      replicaz: 2\n",
            "services.web.deploy.replicaz: unknown key",
        ),
        ("servics:\n  web:\n    image: web\n", "servics: unknown top-level key"),
        ("services:\n  web:\n    command: [x]\n", "services.web.image: a service needs the image"),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      replicas: lots\n",
            "services.web.deploy.replicas: \"lots\" is not a whole number",
        ),
        (
            "services:\n  web:\n    image: web\n    stop_grace_period: soon\n",
            "services.web.stop_grace_period: invalid duration \"soon\"",
        ),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      resources:\n        limits:\n          memory: 12XB\n",
            "services.web.deploy.resources.limits.memory: invalid memory size \"12XB\"",
        ),
        (
            "services:\n  web:\n    image: web\n    networks: [back]\n",
            "services.web.networks: network back is not declared",
        ),
        (
            "services:\n  web:\n    image: web\n    secrets: [key]\n",
            "services.web.secrets: secret key is not declared",
        ),
        (
            "services:\n  web:\n    image: web\n    configs: [conf]\n",
            "services.web.configs: config conf is not declared",
        ),
        (
            "services:\n  web:\n    image: web\n    volumes: ['data:/data']\n",
            "services.web.volumes: volume data is not declared",
        ),
        (
            "services:\n  web:\n    image: web\n    ports: ['8080:80:81']\n",
            "services.web.ports[0]: \"8080:80:81\" binds a host address",
        ),
        (
            "services:\n  web:\n    image: web\n    ports: ['eighty']\n",
            "services.web.ports[0]: invalid port mapping",
        ),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      mode: daemonset\n",
            "services.web.deploy.mode: unknown mode \"daemonset\"",
        ),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      mode: global\n      replicas: 2\n",
            "services.web.deploy.replicas: a global service runs one task on every eligible node",
        ),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      mode: replicated-job\n      update_config: {parallelism: 2}\n",
            "services.web.deploy.update_config: a job is not rolled out",
        ),
        (
            "services:\n  web:\n    image: web\n    deploy:\n      placement:\n        constraints: ['node.zone = x']\n",
            "services.web.deploy.placement.constraints[0]:",
        ),
        (
            "services:\n  web:\n    image: web\nsecrets:\n  key: {}\n",
            "secrets.key: give the file its data comes from",
        ),
        (
            "services:\n  web:\n    image: web\nnetworks:\n  back: {driver: bridge}\n",
            "networks.back.driver: a stack's networks are overlay networks",
        ),
        (
            "services:\n  web:\n    image: web\n    volumes: ['/data']\n",
            "services.web.volumes[0]: an anonymous volume is not supported",
        ),
        (
            "services:\n  web:\n    image: web\n    secrets: [{source: k, mode: 0999}]\nsecrets:\n  k: {file: ./k}\n",
            "services.web.secrets[0].mode: invalid file mode",
        ),
        (
            "services:\n  web:\n    image: web\n    healthcheck: {test: [curl, x]}\n",
            "services.web.healthcheck.test: a test list starts with CMD",
        ),
        ("services: {}\n", "services: the file defines no services"),
        ("version: '3'\n", "the file defines no services"),
        (
            "services:\n  web:\n    image: web:${TAG:?give the release tag}\n",
            "services.web.image: required variable TAG is empty or unset: give the release tag",
        ),
        (
            "services:\n  web:\n    image: web\n    env_file: ./missing.env\n",
            "services.web.env_file: cannot read /srv/app/missing.env",
        ),
        (
            "services:\n  web:\n    image: web\n    secrets: [k]\nsecrets:\n  k: {file: ./gone}\n",
            "secrets.k.file: cannot read /srv/app/gone",
        ),
    ];
    for (text, want) in cases {
        let e = read_stack(
            vec![Source {
                name: "c.yml".into(),
                text: text.to_string(),
            }],
            &vars(&[]),
        )
        .unwrap_err();
        let e = e.strip_prefix("c.yml: ").unwrap_or(&e);
        assert!(e.starts_with(want), "want {want:?}, got {e:?}");
    }
}

#[test]
fn top_level_objects_keep_their_own_names_and_settings() {
    let text = "
services:
  dns:
    image: coredns
    ports: ['53:53/udp', '8000-8001:80-81', {target: 9090, mode: host}]
    networks: {edge: {aliases: [resolver]}, legacy: null}
    volumes:
      - {type: bind, source: ./conf, target: /etc/coredns, read_only: true}
      - cache:/cache
    secrets: [{source: tls, target: /certs/key.pem}]
    configs: [corefile]
networks:
  edge:
    attachable: true
    labels: {tier: edge}
    ipam: {config: [{subnet: 10.20.0.0/24, gateway: 10.20.0.1}]}
  legacy:
    external: {name: old-net}
volumes:
  cache: {external: true, name: dns-cache}
secrets:
  tls: {external: true, name: site-tls}
configs:
  corefile: {name: corefile-v3, file: ./Corefile}
";
    let (_, d) = read_stack(
        vec![Source {
            name: "c.yml".into(),
            text: text.into(),
        }],
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(d.external_networks, ["old-net"]);
    assert_eq!(d.external_secrets, ["site-tls"]);
    assert_eq!(
        d.networks,
        [NetworkSpec {
            name: "app_edge".into(),
            labels: labelled(&[("tier", "edge")]),
            driver: "overlay".into(),
            attachable: true,
            ipam: vec![IpamConfig {
                subnet: "10.20.0.0/24".into(),
                gateway: "10.20.0.1".into(),
                range: String::new(),
            }],
            ..Default::default()
        }]
    );
    assert_eq!(d.configs[0].name, "corefile-v3");
    let dns = service(&d, "app_dns");
    let ports: Vec<(u32, u32, PortProtocol, PublishMode)> = dns
        .endpoint
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .map(|p| {
            (
                p.published_port,
                p.target_port,
                p.protocol(),
                p.publish_mode(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (53, 53, PortProtocol::Udp, PublishMode::Ingress),
            (8000, 80, PortProtocol::Tcp, PublishMode::Ingress),
            (8001, 81, PortProtocol::Tcp, PublishMode::Ingress),
            (0, 9090, PortProtocol::Tcp, PublishMode::Host),
        ]
    );
    let t = dns.task_template.as_ref().unwrap();
    assert_eq!(
        t.networks,
        [
            attach("app_edge", &["dns", "resolver"]),
            attach("old-net", &["dns"])
        ]
    );
    let c = t.container.as_ref().unwrap();
    assert_eq!(
        c.mounts,
        [
            Mount {
                r#type: MountType::Bind as i32,
                source: "/srv/app/conf".into(),
                target: "/etc/coredns".into(),
                read_only: true,
                ..Default::default()
            },
            Mount {
                r#type: MountType::Volume as i32,
                source: "dns-cache".into(),
                target: "/cache".into(),
                ..Default::default()
            },
        ]
    );
    assert_eq!(c.secrets[0].secret_name, "site-tls");
    assert_eq!(c.secrets[0].target, "/certs/key.pem");
    assert_eq!(c.configs[0].config_name, "corefile-v3");
    assert_eq!(c.configs[0].target, "/corefile");
}

#[test]
fn container_options_pass_on_as_swarm_passes_them() {
    let text = "
services:
  app:
    image: app
    cap_add: [net_admin]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: '1024'}
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
    init: true
    tty: true
    oom_score_adj: -500
    dns: 10.0.0.53
    dns_search: [corp.example]
    dns_opt: [ndots:2]
    extra_hosts: ['db.local:10.0.0.5', 'v6:fd00::1']
    group_add: [audio]
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: '3'}
";
    let (stack, d) = read_stack(
        vec![Source {
            name: "c.yml".into(),
            text: text.into(),
        }],
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(super::ignored_warning(&stack), None);
    all_valid(&d);
    let t = service(&d, "app_app").task_template.clone().unwrap();
    assert_eq!(
        t.container.unwrap(),
        ContainerSpec {
            cap_add: vec!["CAP_NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            ulimits: vec![
                Ulimit {
                    name: "nproc".into(),
                    soft: 65535,
                    hard: 65535,
                },
                Ulimit {
                    name: "nofile".into(),
                    soft: 20000,
                    hard: 40000,
                },
            ],
            init: true,
            tty: true,
            oom_score_adj: -500,
            dns_config: Some(DnsConfig {
                nameservers: vec!["10.0.0.53".into()],
                search: vec!["corp.example".into()],
                options: vec!["ndots:2".into()],
            }),
            hosts: vec!["10.0.0.5 db.local".into(), "fd00::1 v6".into()],
            groups: vec!["audio".into()],
            ..container("app")
        }
    );
    assert_eq!(
        t.log_driver,
        Some(LogDriver {
            name: "json-file".into(),
            options: [
                ("max-size".to_string(), "10m".to_string()),
                ("max-file".to_string(), "3".to_string()),
            ]
            .into(),
        })
    );
    for (text, want) in [
        (
            "services:\n  app:\n    image: app\n    cap_add: [superpowers]\n",
            "services.app.cap_add[0]: unknown capability \"superpowers\"",
        ),
        (
            "services:\n  app:\n    image: app\n    ulimits: {nofile: {soft: 10}}\n",
            "services.app.ulimits.nofile: give both soft and hard",
        ),
        (
            "services:\n  app:\n    image: app\n    extra_hosts: [nonsense]\n",
            "services.app.extra_hosts[0]: invalid host \"nonsense\"",
        ),
    ] {
        let e = read_stack(
            vec![Source {
                name: "c.yml".into(),
                text: text.into(),
            }],
            &vars(&[]),
        )
        .unwrap_err();
        assert!(e.starts_with(want), "want {want:?}, got {e:?}");
    }
}
