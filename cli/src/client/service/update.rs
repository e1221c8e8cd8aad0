//! `skiff service update` and `skiff service rollback`: the flags, and the new spec they make
//! from the service's current one (built and validated here, before the daemon is asked).

use anyhow::{bail, Context as _};
use clap::Args;
use proto::{Resources, Service, ServiceSpec};

use super::rollout_flags::update_and_rollback_flags;
use super::{container_flags, parse};

mod container;
mod task;
#[cfg(test)]
mod tests;

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
    /// Change the logging driver (its options start afresh from --log-opt)
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Logging driver option KEY=VALUE, with --log-driver; repeat for several
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
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
    /// Add or update environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Add or update a container label
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label_add: Vec<String>,
    /// Remove a container label
    #[arg(long, value_name = "KEY")]
    pub container_label_rm: Vec<String>,
    /// Replace the image's entrypoint ("" restores the image's)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// User to run as: NAME|UID[:GROUP|GID] ("" restores the image's)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container ("" restores the image's)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Container hostname ("" restores the default)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the container's root filesystem read-only (--read-only=false undoes it)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Signal that stops a task
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Wait before killing a task that does not stop
    #[arg(long, value_name = "DURATION")]
    pub stop_grace_period: Option<String>,
    /// Add or replace a mount (same target), as --mount of `service create`
    #[arg(long, value_name = "MOUNT")]
    pub mount_add: Vec<String>,
    /// Remove a mount, by its target path
    #[arg(long, value_name = "PATH")]
    pub mount_rm: Vec<String>,
    /// Health check command, run with /bin/sh -c
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub health_cmd: Option<String>,
    /// Time between health checks
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a health check may run
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failed checks in a row that make a task unhealthy
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub health_retries: Option<String>,
    /// Time a task has to start before failed checks count
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period
    #[arg(long, value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable any health check, the image's too
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Add or change a resource limit: NAME=SOFT[:HARD]
    #[arg(long, value_name = "ULIMIT", allow_negative_numbers = true)]
    pub ulimit_add: Vec<String>,
    /// Remove a resource limit, by name
    #[arg(long, value_name = "NAME")]
    pub ulimit_rm: Vec<String>,
    /// Add a Linux capability (and take it off the drop list)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (and take it off the add list)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Add or change a namespaced kernel parameter: NAME=VALUE
    #[arg(long, value_name = "NAME=VALUE")]
    pub sysctl_add: Vec<String>,
    /// Remove a kernel parameter, by name
    #[arg(long, value_name = "NAME")]
    pub sysctl_rm: Vec<String>,
    /// Run an init as PID 1 (--init=false undoes it)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Give the task a terminal (--tty=false undoes it)
    #[arg(short = 't', long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tty: Option<bool>,
    /// Add a DNS server
    #[arg(long, value_name = "IP")]
    pub dns_add: Vec<String>,
    /// Remove a DNS server
    #[arg(long, value_name = "IP")]
    pub dns_rm: Vec<String>,
    /// Add a DNS search domain
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search_add: Vec<String>,
    /// Remove a DNS search domain
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search_rm: Vec<String>,
    /// Add a DNS option
    #[arg(long, value_name = "OPTION")]
    pub dns_option_add: Vec<String>,
    /// Remove a DNS option
    #[arg(long, value_name = "OPTION")]
    pub dns_option_rm: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP
    #[arg(long, value_name = "NAME:IP")]
    pub host_add: Vec<String>,
    /// Remove lines from /etc/hosts: NAME, or NAME:IP
    #[arg(long, value_name = "NAME[:IP]")]
    pub host_rm: Vec<String>,
    /// Add a supplementary group
    #[arg(long, value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Remove a supplementary group
    #[arg(long, value_name = "GROUP")]
    pub group_rm: Vec<String>,
    /// The task's OOM score adjustment, -1000 to 1000
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub oom_score_adj: Option<String>,
    /// When to restart a task: none, on-failure or any
    #[arg(long, value_name = "CONDITION")]
    pub restart_condition: Option<String>,
    /// Wait between restarts
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// Restarts before giving up (0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub restart_max_attempts: Option<String>,
    /// Window in which restarts are counted (0: forever)
    #[arg(long, value_name = "DURATION")]
    pub restart_window: Option<String>,
    /// Add a placement preference: spread=node.labels.KEY
    #[arg(long, value_name = "PREF")]
    pub placement_pref_add: Vec<String>,
    /// Remove a placement preference: spread=node.labels.KEY
    #[arg(long, value_name = "PREF")]
    pub placement_pref_rm: Vec<String>,
    /// Most tasks of this service on one node (0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas_max_per_node: Option<String>,
    /// Tasks of a replicated job run at once
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent: Option<String>,
    /// Attach to a network: NAME or name=NAME,alias=ALIAS (host: the node's network)
    #[arg(long, value_name = "NETWORK")]
    pub network_add: Vec<String>,
    /// Detach from a network, by name or ID
    #[arg(long, value_name = "NETWORK")]
    pub network_rm: Vec<String>,
    /// vip or dnsrr
    #[arg(long, value_name = "MODE")]
    pub endpoint_mode: Option<String>,
    /// Send this client's registry credentials (from ~/.docker/config.json) to the nodes
    #[arg(long)]
    pub with_registry_auth: bool,
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
    /// Roll back to the previous spec (as `skiff service rollback`)
    #[arg(long)]
    pub rollback: bool,
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
    updated_spec_with_networks(service, args, lookup_env, &[])
}

/// Whether the flags name networks, so that [`updated_spec_with_networks`] needs the
/// cluster's networks to match names with the IDs a spec holds.
pub fn names_networks(args: &UpdateArgs) -> bool {
    !args.network_add.is_empty() || !args.network_rm.is_empty()
}

/// [`updated_spec`], with the cluster's networks for `--network-add/-rm` by name.
pub fn updated_spec_with_networks(
    service: &Service,
    args: &UpdateArgs,
    lookup_env: impl Fn(&str) -> Option<String>,
    known_networks: &[proto::Network],
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
    container::apply(c, args, &lookup_env)?;
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
    if let Some(driver) =
        super::create::spec::log_driver(args.log_driver.as_deref(), &args.log_opt)?
    {
        template.log_driver = Some(driver);
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

    task::apply(&mut spec, args, known_networks)?;
    let template = spec.task_template.get_or_insert_with(Default::default);
    if let Some(c) = &template.container {
        container_flags::check(c, &template.networks)?;
    }
    container_flags::check_host_network(
        &template.networks,
        spec.endpoint.as_ref().unwrap_or(&Default::default()),
    )?;

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
