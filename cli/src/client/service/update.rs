//! `skiff service update` and `skiff service rollback`: the flags, and the new spec they make
//! from the service's current one (built and validated here, before the daemon is asked).

use anyhow::{bail, Context as _};
use clap::Args;
use proto::{Resources, Service, ServiceSpec};

use super::parse;
use super::rollout_flags::update_and_rollback_flags;

/// `skiff service update`.
#[derive(Debug, Default, Args)]
pub struct UpdateArgs {
    /// Service image tag
    #[arg(long)]
    pub image: Option<String>,
    /// Service command args (replaces them; "" for none)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub args: Option<String>,
    /// Add or update an environment variable
    #[arg(long, value_name = "KEY=VALUE")]
    pub env_add: Vec<String>,
    /// Remove an environment variable
    #[arg(long, value_name = "KEY")]
    pub env_rm: Vec<String>,
    /// Add or update a service label
    #[arg(long, value_name = "KEY=VALUE")]
    pub label_add: Vec<String>,
    /// Remove a service label
    #[arg(long, value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Add a placement constraint
    #[arg(long, value_name = "EXPR")]
    pub constraint_add: Vec<String>,
    /// Remove a placement constraint
    #[arg(long, value_name = "EXPR")]
    pub constraint_rm: Vec<String>,
    /// Add a published port, as --publish of `service create`
    #[arg(long, value_name = "PORT")]
    pub publish_add: Vec<String>,
    /// Remove a published port, by its published or target port (PORT[/PROTOCOL])
    #[arg(long, value_name = "PORT")]
    pub publish_rm: Vec<String>,
    /// Add or change a secret, as --secret of `service create`
    #[arg(long, value_name = "SECRET")]
    pub secret_add: Vec<String>,
    /// Remove a secret, by name
    #[arg(long, value_name = "SECRET")]
    pub secret_rm: Vec<String>,
    /// Add or change a config, as --config of `service create`
    #[arg(long, value_name = "CONFIG")]
    pub config_add: Vec<String>,
    /// Remove a config, by name
    #[arg(long, value_name = "CONFIG")]
    pub config_rm: Vec<String>,
    /// Number of tasks
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<String>,
    /// Limit CPUs
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub limit_cpu: Option<String>,
    /// Limit memory
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub limit_memory: Option<String>,
    /// Most processes a task may run at once (0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit_pids: Option<String>,
    /// Reserve CPUs
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub reserve_cpu: Option<String>,
    /// Reserve memory
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub reserve_memory: Option<String>,
    /// Replace every task even if nothing changed
    #[arg(long)]
    pub force: bool,
    /// Tasks updated at once (0: all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub update_parallelism: Option<String>,
    /// Delay between updates
    #[arg(long, value_name = "DURATION")]
    pub update_delay: Option<String>,
    /// Action on update failure: pause, continue or rollback
    #[arg(long, value_name = "ACTION")]
    pub update_failure_action: Option<String>,
    /// How long to watch each new task for failure
    #[arg(long, value_name = "DURATION")]
    pub update_monitor: Option<String>,
    /// Failure rate tolerated during an update
    #[arg(long, value_name = "RATIO")]
    pub update_max_failure_ratio: Option<String>,
    /// Update order: stop-first or start-first
    #[arg(long, value_name = "ORDER")]
    pub update_order: Option<String>,
    /// Tasks rolled back at once (0: all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rollback_parallelism: Option<String>,
    /// Delay between rollbacks
    #[arg(long, value_name = "DURATION")]
    pub rollback_delay: Option<String>,
    /// Action on rollback failure: pause or continue
    #[arg(long, value_name = "ACTION")]
    pub rollback_failure_action: Option<String>,
    /// How long to watch each rolled-back task for failure
    #[arg(long, value_name = "DURATION")]
    pub rollback_monitor: Option<String>,
    /// Failure rate tolerated during a rollback
    #[arg(long, value_name = "RATIO")]
    pub rollback_max_failure_ratio: Option<String>,
    /// Rollback order: stop-first or start-first
    #[arg(long, value_name = "ORDER")]
    pub rollback_order: Option<String>,
    /// Return at once instead of following the rollout
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Do not show progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Service ID, ID prefix or name
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

/// `skiff service rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Return at once instead of following the rollback
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Do not show progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Service ID, ID prefix or name
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

/// `service`'s spec with the changes `args` ask for; `lookup_env` reads this shell's
/// environment (for `--env-add KEY`).
pub fn updated_spec(
    service: &Service,
    args: &UpdateArgs,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ServiceSpec> {
    let name = super::render::service_name(service);
    let mut spec = service.spec.clone().unwrap_or_default();
    if let Some(v) = &args.replicas {
        let n = parse::count("--replicas", v)?;
        spec.mode = super::scaled_spec(service, name, n)?.mode;
    }
    for l in &args.label_rm {
        spec.labels.remove(l.trim());
    }
    for l in &args.label_add {
        let (k, v) = parse::label("--label-add", l)?;
        spec.labels.insert(k, v);
    }

    let template = spec.task_template.get_or_insert_with(Default::default);
    let c = template.container.get_or_insert_with(Default::default);
    if let Some(image) = &args.image {
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            bail!("invalid image \"{image}\" for --image: an image reference has no spaces, e.g. nginx:alpine");
        }
        c.image = image.clone();
    }
    if let Some(a) = &args.args {
        c.args = parse::shell_words("--args", a)?;
    }
    for key in &args.env_rm {
        let key = key.trim();
        c.env
            .retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    }
    for e in &args.env_add {
        let e = parse::env(e, &lookup_env)?;
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string();
        c.env
            .retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
        c.env.push(e);
    }
    // Removed by name or ID (as Docker); an added one replaces any of the same name.
    for name in &args.secret_rm {
        let name = name.trim();
        c.secrets
            .retain(|r| r.secret_name != name && r.secret_id != name);
    }
    for v in &args.secret_add {
        let r = parse::secret("--secret-add", v)?;
        c.secrets.retain(|old| old.secret_name != r.secret_name);
        c.secrets.push(r);
    }
    for name in &args.config_rm {
        let name = name.trim();
        c.configs
            .retain(|r| r.config_name != name && r.config_id != name);
    }
    for v in &args.config_add {
        let r = parse::config("--config-add", v)?;
        c.configs.retain(|old| old.config_name != r.config_name);
        c.configs.push(r);
    }

    let resources = template.resources.get_or_insert_with(Default::default);
    for (cpu_flag, cpu, mem_flag, mem, target) in [
        (
            "--limit-cpu",
            &args.limit_cpu,
            "--limit-memory",
            &args.limit_memory,
            &mut resources.limits,
        ),
        (
            "--reserve-cpu",
            &args.reserve_cpu,
            "--reserve-memory",
            &args.reserve_memory,
            &mut resources.reservations,
        ),
    ] {
        if let Some(v) = cpu {
            target.get_or_insert_with(Resources::default).nano_cpus = parse::cpus(cpu_flag, v)?;
        }
        if let Some(v) = mem {
            target.get_or_insert_with(Resources::default).memory_bytes =
                parse::memory(mem_flag, v)?;
        }
    }
    if let Some(v) = &args.limit_pids {
        let pids = parse::pids("--limit-pids", v)?;
        resources.limits.get_or_insert_with(Resources::default).pids = pids;
    }
    if resources.limits == Some(Resources::default()) {
        resources.limits = None;
    }
    if let (Some(r), Some(l)) = (&resources.reservations, &resources.limits) {
        if l.memory_bytes > 0 && r.memory_bytes > l.memory_bytes {
            bail!("the memory reservation is larger than the memory limit: a task could never use what it reserves");
        }
        if l.nano_cpus > 0 && r.nano_cpus > l.nano_cpus {
            bail!("the CPU reservation is larger than the CPU limit: a task could never use what it reserves");
        }
    }
    if template.resources == Some(Default::default()) {
        template.resources = None;
    }

    let placement = template.placement.get_or_insert_with(Default::default);
    for expr in &args.constraint_rm {
        let expr = parse::constraint(expr)?;
        placement.constraints.retain(|c| c != &expr);
    }
    for expr in &args.constraint_add {
        let expr = parse::constraint(expr)?;
        if !placement.constraints.contains(&expr) {
            placement.constraints.push(expr);
        }
    }
    if template.placement == Some(Default::default()) {
        template.placement = None;
    }
    if args.force {
        template.force_update += 1;
    }

    let endpoint = spec.endpoint.get_or_insert_with(Default::default);
    for p in &args.publish_rm {
        let (port, protocol) = match p.trim().split_once('/') {
            Some((port, protocol)) => (port, Some(protocol)),
            None => (p.trim(), None),
        };
        let port: u32 = port.parse().ok().filter(|n| (1..=65535).contains(n)).with_context(|| {
            format!("invalid port \"{p}\" for --publish-rm: use PORT or PORT/PROTOCOL, e.g. 8080 or 53/udp")
        })?;
        let protocol = protocol
            .map(|pr| parse::publish(&format!("{port}:{port}/{pr}")))
            .transpose()?
            .and_then(|ports| ports.first().map(|p| p.protocol));
        let before = endpoint.ports.len();
        endpoint.ports.retain(|c| {
            let same_port = c.published_port == port || c.target_port == port;
            !(same_port && protocol.is_none_or(|pr| pr == c.protocol))
        });
        if endpoint.ports.len() == before {
            bail!("service {name} does not publish port {p}; see `skiff service inspect --pretty {name}`");
        }
    }
    for p in &args.publish_add {
        for port in parse::publish(p)? {
            endpoint.ports.retain(|c| {
                port.published_port == 0
                    || (c.published_port, c.protocol) != (port.published_port, port.protocol)
            });
            endpoint.ports.push(port);
        }
    }

    let (update, rollback) = update_and_rollback_flags!(args);
    for (flags, config) in [
        (update, &mut spec.update_config),
        (rollback, &mut spec.rollback_config),
    ] {
        if flags.any() {
            *config = Some(flags.apply(config.unwrap_or_default())?);
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
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
}
