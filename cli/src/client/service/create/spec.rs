//! The spec `service create` sends, from its flags: one function per part of the spec
//! (name, image, mode, labels, container, resources, restart policy, placement, networks,
//! rollout configs, endpoint), each validating its own flags, as swarmkit's control API
//! validates a spec part by part.
//!
//! Apart from the flags so that each part reads alone; [`build_spec`] only calls them in
//! order and puts the spec together. What no flag sets is sent unset: the manager fills in
//! Swarm's defaults (`manager::controlapi::service::with_defaults`), the same for every
//! front end (`stack deploy` too).

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use proto::{
    ContainerSpec, EndpointSpec, GlobalJob, GlobalService, HealthConfig, NetworkAttachmentConfig,
    Placement, PlacementPreference, PublishMode, ReplicatedJob, ReplicatedService, ResolutionMode,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, ServiceSpec, TaskSpec,
    UpdateConfig,
};

use super::{CreateArgs, Mode};
use crate::client::duration;
use crate::client::service::rollout_flags::update_and_rollback_flags;
use crate::client::service::{container_flags, parse};

/// Whether `name` can name a service (the daemon's rule: 1 to 63 letters, digits, `-`,
/// `_` or `.`, starting with a letter or digit).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn ms(flag: &str, value: &Option<String>) -> anyhow::Result<Option<u64>> {
    value
        .as_deref()
        .map(|v| duration::parse_flag_ms(flag, v))
        .transpose()
}

/// Builds the spec `service create` sends, validating every flag; `lookup_env` reads this
/// shell's environment (for `--env KEY`).
///
/// One function per part of the spec, called in the order of the spec, so that of several
/// bad flags the first one in that order is the one reported.
pub fn build_spec(
    args: &CreateArgs,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ServiceSpec> {
    let name = service_name(args)?;
    let (image, command_args) = image_and_command(args)?;
    let (mode, spec_mode) = service_mode(args)?;
    let labels = labels("--label", &args.label)?;
    let container = container(args, image, command_args, lookup_env)?;
    let resources = resources(args)?;
    let restart = restart_policy(args, mode)?;
    let placement = placement(args, mode)?;
    let networks = networks(args)?;
    // What needs the networks too (no net.* sysctl with --network host).
    container_flags::check(&container, &networks)?;
    let (update_config, rollback_config) = rollout_configs(args, mode)?;
    let endpoint = endpoint(args)?;
    container_flags::check_host_network(&networks, &endpoint.clone().unwrap_or_default())?;
    let log_driver = log_driver(args.log_driver.as_deref(), &args.log_opt)?;
    Ok(ServiceSpec {
        name,
        labels,
        mode: Some(spec_mode),
        task_template: Some(TaskSpec {
            container: Some(container),
            resources,
            restart,
            placement,
            networks,
            force_update: 0,
            log_driver,
        }),
        update_config,
        rollback_config,
        endpoint,
    })
}

/// `--log-driver` and `--log-opt`: none given leaves the node's default. The control API
/// checks the driver and its options.
pub(crate) fn log_driver(
    driver: Option<&str>,
    options: &[String],
) -> anyhow::Result<Option<proto::LogDriver>> {
    let Some(name) = driver else {
        if !options.is_empty() {
            bail!("--log-opt needs --log-driver: say which driver the options are for");
        }
        return Ok(None);
    };
    let options = options
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow::anyhow!("invalid --log-opt \"{o}\": use KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(proto::LogDriver {
        name: name.trim().to_owned(),
        options,
    }))
}

/// `--name`, checked against the daemon's rule; empty when not given (the daemon names
/// the service).
fn service_name(args: &CreateArgs) -> anyhow::Result<String> {
    let Some(name) = &args.name else {
        return Ok(String::new());
    };
    if !valid_name(name) {
        bail!(
            "invalid service name \"{name}\" for --name: use 1 to 63 letters, digits, -, _ or ., starting with a letter or digit"
        );
    }
    Ok(name.clone())
}

/// The image and the command's arguments after it. A flag in the image's place was meant
/// for `skiff` but came after the image.
fn image_and_command(args: &CreateArgs) -> anyhow::Result<(&String, &[String])> {
    let (image, command_args) = args
        .image_and_command
        .split_first()
        .ok_or_else(|| anyhow!("give the image to run, e.g. skiff service create nginx:alpine"))?;
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
        bail!("invalid image \"{image}\": an image reference has no spaces, e.g. nginx:alpine");
    }
    if image.starts_with('-') {
        bail!("unknown flag \"{image}\": see `skiff service create --help` (the flags come before the image)");
    }
    Ok((image, command_args))
}

/// `--mode` with `--replicas` and `--max-concurrent`, which only some modes take.
fn service_mode(args: &CreateArgs) -> anyhow::Result<(Mode, proto::service_spec::Mode)> {
    let mode = match &args.mode {
        Some(m) => Mode::parse(m)?,
        None => Mode::Replicated,
    };
    let replicas = args
        .replicas
        .as_deref()
        .map(|v| parse::count("--replicas", v))
        .transpose()?;
    let max_concurrent = args
        .max_concurrent
        .as_deref()
        .map(|v| parse::positive("--max-concurrent", v))
        .transpose()?;
    if replicas.is_some() && matches!(mode, Mode::Global | Mode::GlobalJob) {
        bail!("--replicas can only be used with replicated or replicated-job mode: a global service runs one task on every eligible node");
    }
    if max_concurrent.is_some() && mode != Mode::ReplicatedJob {
        bail!("--max-concurrent can only be used with replicated-job mode");
    }
    let spec_mode = match mode {
        Mode::Replicated => proto::service_spec::Mode::Replicated(ReplicatedService {
            replicas: replicas.unwrap_or(1),
        }),
        Mode::Global => proto::service_spec::Mode::Global(GlobalService {}),
        Mode::ReplicatedJob => {
            let total = replicas.unwrap_or(1);
            proto::service_spec::Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: max_concurrent.unwrap_or(total.max(1)),
                total_completions: total,
            })
        }
        Mode::GlobalJob => proto::service_spec::Mode::GlobalJob(GlobalJob {}),
    };
    Ok((mode, spec_mode))
}

/// `KEY=VALUE` labels given with `flag` (`--label`, `--container-label`); a key given
/// twice keeps its last value.
fn labels(flag: &str, values: &[String]) -> anyhow::Result<HashMap<String, String>> {
    values.iter().map(|l| parse::label(flag, l)).collect()
}

/// The container: the image and command, and every flag about the process it runs.
fn container(
    args: &CreateArgs,
    image: &str,
    command_args: &[String],
    lookup_env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ContainerSpec> {
    let mut c = ContainerSpec {
        image: image.to_owned(),
        args: command_args.to_vec(),
        read_only: args.read_only,
        pull_policy: pull_policy(args.pull.as_deref())? as i32,
        ..Default::default()
    };
    if let Some(e) = &args.entrypoint {
        c.command = parse::shell_words("--entrypoint", e)?;
        if c.command.is_empty() {
            bail!(
                "--entrypoint is empty: give the command to run, e.g. --entrypoint \"/bin/sh -c\""
            );
        }
    }
    // The files first, so that --env wins over them.
    let from_files = container_flags::env_files("--env-file", &args.env_file, &lookup_env)?;
    container_flags::set_env(&mut c.env, from_files);
    for e in &args.env {
        let e = parse::env(e, &lookup_env)?;
        container_flags::set_env(&mut c.env, [e]);
    }
    c.labels = labels("--container-label", &args.container_label)?;
    if let Some(h) = &args.hostname {
        if h.trim().is_empty() || h.chars().any(char::is_whitespace) {
            bail!("invalid hostname \"{h}\" for --hostname: a hostname has no spaces");
        }
        c.hostname = h.clone();
    }
    c.dir = args.workdir.clone().unwrap_or_default();
    c.user = args.user.clone().unwrap_or_default();
    if let Some(s) = &args.stop_signal {
        c.stop_signal = parse::signal(s)?;
    }
    c.stop_grace_period_ms = ms("--stop-grace-period", &args.stop_grace_period)?;
    for m in &args.mount {
        c.mounts.push(parse::mount("--mount", m)?);
    }
    for v in &args.secret {
        c.secrets.push(parse::secret("--secret", v)?);
    }
    for v in &args.config {
        c.configs.push(parse::config("--config", v)?);
    }
    c.healthcheck = healthcheck(args)?;
    container_options(args, &mut c)?;
    Ok(c)
}

/// The container options: `--ulimit`, `--cap-add/--cap-drop`, `--sysctl`, `--init`,
/// `--dns*`, `--host`, `--group`, `--tty`, `--oom-score-adj`.
fn container_options(args: &CreateArgs, c: &mut ContainerSpec) -> anyhow::Result<()> {
    c.ulimits = container_flags::ulimits("--ulimit", &args.ulimit)?;
    (c.cap_add, c.cap_drop) = container_flags::create_capabilities(&args.cap_add, &args.cap_drop)?;
    c.sysctls = container_flags::sysctls("--sysctl", &args.sysctl)?;
    c.init = args.init;
    c.dns_config = container_flags::dns_config(&args.dns, &args.dns_search, &args.dns_option)?;
    c.hosts = container_flags::hosts("--host", &args.hosts)?;
    c.groups = container_flags::groups("--group", &args.group)?;
    c.tty = args.tty;
    if let Some(v) = &args.oom_score_adj {
        c.oom_score_adj = container_flags::oom_score_adj(v)?;
    }
    Ok(())
}

/// `--reserve-*` and `--limit-*`; none when neither is given. A reservation above its
/// limit could never be used, so it is refused here.
fn resources(args: &CreateArgs) -> anyhow::Result<Option<ResourceRequirements>> {
    let cpu =
        |flag: &str, v: &Option<String>| v.as_deref().map(|v| parse::cpus(flag, v)).transpose();
    let mem =
        |flag: &str, v: &Option<String>| v.as_deref().map(|v| parse::memory(flag, v)).transpose();
    let reserve = (
        cpu("--reserve-cpu", &args.reserve_cpu)?,
        mem("--reserve-memory", &args.reserve_memory)?,
    );
    let limit = (
        cpu("--limit-cpu", &args.limit_cpu)?,
        mem("--limit-memory", &args.limit_memory)?,
    );
    let pids = args
        .limit_pids
        .as_deref()
        .map(|v| parse::pids("--limit-pids", v))
        .transpose()?;
    let resources = |(cpus, memory): (Option<i64>, Option<i64>), pids: Option<i64>| {
        (cpus.is_some() || memory.is_some() || pids.is_some()).then(|| Resources {
            nano_cpus: cpus.unwrap_or(0),
            memory_bytes: memory.unwrap_or(0),
            pids: pids.unwrap_or(0),
        })
    };
    let (reservations, limits) = (resources(reserve, None), resources(limit, pids));
    if let (Some(r), Some(l)) = (&reservations, &limits) {
        if l.memory_bytes > 0 && r.memory_bytes > l.memory_bytes {
            bail!("--reserve-memory is larger than --limit-memory: a task could never use what it reserves");
        }
        if l.nano_cpus > 0 && r.nano_cpus > l.nano_cpus {
            bail!(
                "--reserve-cpu is larger than --limit-cpu: a task could never use what it reserves"
            );
        }
    }
    Ok(
        (reservations.is_some() || limits.is_some()).then_some(ResourceRequirements {
            limits,
            reservations,
        }),
    )
}

/// `--restart-*`; none when none is given (the manager's default: any, on-failure for a
/// job, whose tasks are not restarted once they completed).
fn restart_policy(args: &CreateArgs, mode: Mode) -> anyhow::Result<Option<RestartPolicy>> {
    let any = args.restart_condition.is_some()
        || args.restart_delay.is_some()
        || args.restart_max_attempts.is_some()
        || args.restart_window.is_some();
    if !any {
        return Ok(None);
    }
    let condition = match &args.restart_condition {
        Some(v) => {
            let c = parse::restart_condition(v)?;
            if mode.is_job() && c == RestartCondition::Any {
                bail!("--restart-condition any cannot be used with jobs: a completed task would run again; use on-failure or none");
            }
            c
        }
        None if mode.is_job() => RestartCondition::OnFailure,
        None => RestartCondition::Any,
    };
    Ok(Some(RestartPolicy {
        condition: condition as i32,
        delay_ms: ms("--restart-delay", &args.restart_delay)?,
        max_attempts: args
            .restart_max_attempts
            .as_deref()
            .map(|v| parse::count("--restart-max-attempts", v))
            .transpose()?
            .unwrap_or(0),
        window_ms: ms("--restart-window", &args.restart_window)?.unwrap_or(0),
    }))
}

/// `--constraint`, `--placement-pref` and `--replicas-max-per-node`; none when none is
/// given.
fn placement(args: &CreateArgs, mode: Mode) -> anyhow::Result<Option<Placement>> {
    let mut placement = Placement::default();
    for expr in &args.constraint {
        placement.constraints.push(parse::constraint(expr)?);
    }
    for p in &args.placement_pref {
        placement.preferences.push(PlacementPreference {
            spread: parse::placement_pref(p)?,
        });
    }
    if let Some(v) = &args.replicas_max_per_node {
        let n = parse::count("--replicas-max-per-node", v)?;
        if matches!(mode, Mode::Global | Mode::GlobalJob) {
            bail!(
                "--replicas-max-per-node can only be used with replicated or replicated-job mode"
            );
        }
        placement.max_replicas = n;
    }
    Ok((placement != Placement::default()).then_some(placement))
}

/// `--network`, in the order given; `host` (the node's own network) alone.
fn networks(args: &CreateArgs) -> anyhow::Result<Vec<NetworkAttachmentConfig>> {
    args.network.iter().map(|n| parse::network(n)).collect()
}

/// The update and rollback configs (`--update-*`, `--rollback-*`) as given; none for a
/// job, which is not rolled out but runs to completion.
fn rollout_configs(
    args: &CreateArgs,
    mode: Mode,
) -> anyhow::Result<(Option<UpdateConfig>, Option<UpdateConfig>)> {
    let (update, rollback) = update_and_rollback_flags!(args);
    if mode.is_job() {
        if update.any() || rollback.any() {
            bail!("--update-* and --rollback-* flags cannot be used with jobs: a job is not rolled out, it runs to completion");
        }
        return Ok((None, None));
    }
    Ok((update.config()?, rollback.config()?))
}

/// `--endpoint-mode` and `--publish`; none when neither is given. A published port may
/// appear once per protocol, and ingress ports need a virtual IP to route to.
fn endpoint(args: &CreateArgs) -> anyhow::Result<Option<EndpointSpec>> {
    if args.endpoint_mode.is_none() && args.publish.is_empty() {
        return Ok(None);
    }
    let mut endpoint = EndpointSpec::default();
    if let Some(m) = &args.endpoint_mode {
        endpoint.mode = match m.trim().to_ascii_lowercase().as_str() {
            "vip" => ResolutionMode::Vip,
            "dnsrr" => ResolutionMode::Dnsrr,
            _ => bail!("invalid value \"{m}\" for --endpoint-mode: use vip or dnsrr"),
        } as i32;
    }
    let mut seen: HashMap<(u32, i32), String> = HashMap::new();
    for p in &args.publish {
        for port in parse::publish(p)? {
            if port.published_port != 0 {
                if let Some(first) = seen.insert((port.published_port, port.protocol), p.clone()) {
                    bail!(
                        "port {} is published twice (--publish {first} and --publish {p})",
                        port.published_port
                    );
                }
            }
            if endpoint.mode() == ResolutionMode::Dnsrr
                && port.publish_mode() == PublishMode::Ingress
            {
                bail!("--publish {p}: ingress ports need --endpoint-mode vip; with dnsrr publish in host mode (mode=host)");
            }
            endpoint.ports.push(port);
        }
    }
    Ok(Some(endpoint))
}

fn healthcheck(args: &CreateArgs) -> anyhow::Result<Option<HealthConfig>> {
    let any = args.health_cmd.is_some()
        || args.health_interval.is_some()
        || args.health_timeout.is_some()
        || args.health_retries.is_some()
        || args.health_start_period.is_some()
        || args.health_start_interval.is_some();
    if args.no_healthcheck {
        if any {
            bail!("--no-healthcheck conflicts with the --health-* flags: use one or the other");
        }
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    if !any {
        return Ok(None);
    }
    let mut h = HealthConfig::default();
    if let Some(cmd) = &args.health_cmd {
        if cmd.trim().is_empty() {
            bail!("--health-cmd is empty: give the command that checks the task, e.g. --health-cmd \"curl -f http://localhost/\"");
        }
        h.test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    h.interval_ms = ms("--health-interval", &args.health_interval)?.unwrap_or(0);
    h.timeout_ms = ms("--health-timeout", &args.health_timeout)?.unwrap_or(0);
    h.start_period_ms = ms("--health-start-period", &args.health_start_period)?.unwrap_or(0);
    h.start_interval_ms = ms("--health-start-interval", &args.health_start_interval)?.unwrap_or(0);
    if let Some(r) = &args.health_retries {
        h.retries = parse::count_u32("--health-retries", r)?;
    }
    Ok(Some(h))
}

/// `--pull missing|always|never`.
fn pull_policy(value: Option<&str>) -> anyhow::Result<proto::PullPolicy> {
    Ok(match value.map(str::trim) {
        None | Some("missing") => proto::PullPolicy::Missing,
        Some("always") => proto::PullPolicy::Always,
        Some("never") => proto::PullPolicy::Never,
        Some(other) => {
            bail!("--pull \"{other}\" is not a pull policy: use missing, always or never")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_parse_and_bad_ones_say_what_to_use() {
        assert_eq!(pull_policy(None).unwrap(), proto::PullPolicy::Missing);
        assert_eq!(
            pull_policy(Some("always")).unwrap(),
            proto::PullPolicy::Always
        );
        assert_eq!(
            pull_policy(Some("never")).unwrap(),
            proto::PullPolicy::Never
        );
        let e = pull_policy(Some("sometimes")).unwrap_err().to_string();
        assert!(e.contains("missing, always or never"), "{e}");
    }
}
