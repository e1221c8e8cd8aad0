//! `skiff service create`: the flags, and the [`ServiceSpec`] they make (built and validated
//! here, before the daemon is contacted).

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use clap::Args;
use proto::{
    ContainerSpec, EndpointSpec, FailureAction, GlobalJob, GlobalService, HealthConfig, Placement,
    PlacementPreference, PublishMode, ReplicatedJob, ReplicatedService, ResolutionMode,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, ServiceSpec, TaskSpec,
    UpdateConfig, UpdateOrder,
};

use super::parse;
use crate::client::duration;

/// Stop grace period unless `--stop-grace-period` says otherwise (DESIGN §9).
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
/// Restart delay unless `--restart-delay` says otherwise.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 5_000;
/// Update (and rollback) monitor period unless `--update-monitor` says otherwise.
pub const DEFAULT_MONITOR_MS: u64 = 5_000;

/// `skiff service create`.
#[derive(Debug, Default, Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long)]
    pub name: Option<String>,
    /// replicated, global, replicated-job or global-job
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Number of tasks (replicated), or of completions (replicated-job); default 1
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<String>,
    /// Tasks of a replicated job run at once (default: --replicas)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this shell's value)
    #[arg(short = 'e', long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Service label
    #[arg(short = 'l', long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Container label
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label: Vec<String>,
    /// Placement constraint, e.g. node.role==manager or node.labels.zone!=east
    #[arg(long, value_name = "EXPR")]
    pub constraint: Vec<String>,
    /// Placement preference: spread=node.labels.KEY
    #[arg(long, value_name = "PREF")]
    pub placement_pref: Vec<String>,
    /// Most tasks of this service on one node (default 0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas_max_per_node: Option<String>,
    /// CPUs reserved for each task, e.g. 0.5
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub reserve_cpu: Option<String>,
    /// Memory reserved for each task, e.g. 256M
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub reserve_memory: Option<String>,
    /// Most CPUs a task may use
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub limit_cpu: Option<String>,
    /// Most memory a task may use
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub limit_memory: Option<String>,
    /// When to restart a task: none, on-failure or any (default any; on-failure for jobs)
    #[arg(long, value_name = "CONDITION")]
    pub restart_condition: Option<String>,
    /// Wait between restarts (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// Restarts before giving up (default 0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub restart_max_attempts: Option<String>,
    /// Window in which restarts are counted (default: forever)
    #[arg(long, value_name = "DURATION")]
    pub restart_window: Option<String>,
    /// Container hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: NAME|UID[:GROUP|GID]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Signal that stops a task (default SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Wait before killing a task that does not stop (default 10s)
    #[arg(long, value_name = "DURATION")]
    pub stop_grace_period: Option<String>,
    /// Replace the image's entrypoint (the command the task runs)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// When nodes pull the image: missing (default: only when the node lacks it), always,
    /// or never (load it with `skiff image load`)
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Publish a port: PUBLISHED:TARGET[/PROTOCOL] or published=P,target=T[,protocol=udp][,mode=host]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub publish: Vec<String>,
    /// vip (the default) or dnsrr
    #[arg(long, value_name = "MODE")]
    pub endpoint_mode: Option<String>,
    /// Attach to a network: NAME or name=NAME,alias=ALIAS
    #[arg(long, value_name = "NETWORK")]
    pub network: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=SRC,target=/PATH[,readonly]
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
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
    /// Disable the image's health check
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Tasks updated at once (default 1; 0 updates all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub update_parallelism: Option<String>,
    /// Wait between updating groups of tasks (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub update_delay: Option<String>,
    /// When an update fails: pause, continue or rollback (default pause)
    #[arg(long, value_name = "ACTION")]
    pub update_failure_action: Option<String>,
    /// Watch each updated task this long for a failure (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub update_monitor: Option<String>,
    /// Share of failed tasks an update tolerates, 0 to 1 (default 0)
    #[arg(long, value_name = "RATIO")]
    pub update_max_failure_ratio: Option<String>,
    /// stop-first (the default) or start-first
    #[arg(long, value_name = "ORDER")]
    pub update_order: Option<String>,
    /// Tasks rolled back at once (default 1; 0 rolls back all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rollback_parallelism: Option<String>,
    /// Wait between rolling back groups of tasks (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub rollback_delay: Option<String>,
    /// When a rollback fails: pause or continue (default pause)
    #[arg(long, value_name = "ACTION")]
    pub rollback_failure_action: Option<String>,
    /// Watch each rolled-back task this long for a failure (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub rollback_monitor: Option<String>,
    /// Share of failed tasks a rollback tolerates, 0 to 1 (default 0)
    #[arg(long, value_name = "RATIO")]
    pub rollback_max_failure_ratio: Option<String>,
    /// stop-first (the default) or start-first
    #[arg(long, value_name = "ORDER")]
    pub rollback_order: Option<String>,
    /// Send this client's registry credentials (from ~/.docker/config.json) to the nodes
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Return at once instead of waiting for the service to converge
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Only print the service ID (and show no progress)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The image, then the command and its arguments (everything after the image)
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

/// The four service modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

impl Mode {
    /// Parses `--mode`.
    pub fn parse(value: &str) -> anyhow::Result<Mode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "replicated" => Ok(Mode::Replicated),
            "global" => Ok(Mode::Global),
            "replicated-job" => Ok(Mode::ReplicatedJob),
            "global-job" => Ok(Mode::GlobalJob),
            _ => bail!(
                "invalid mode \"{value}\" for --mode: use replicated, global, replicated-job or global-job"
            ),
        }
    }

    /// Whether tasks run to completion.
    pub fn is_job(self) -> bool {
        matches!(self, Mode::ReplicatedJob | Mode::GlobalJob)
    }
}

/// The update (or rollback) flags of one kind, as given (`service create` and `update`).
pub(super) struct UpdateFlags<'a> {
    pub(super) prefix: &'static str,
    pub(super) parallelism: &'a Option<String>,
    pub(super) delay: &'a Option<String>,
    pub(super) failure_action: &'a Option<String>,
    pub(super) monitor: &'a Option<String>,
    pub(super) max_failure_ratio: &'a Option<String>,
    pub(super) order: &'a Option<String>,
}

impl UpdateFlags<'_> {
    pub(super) fn any(&self) -> bool {
        [
            self.parallelism,
            self.delay,
            self.failure_action,
            self.monitor,
            self.max_failure_ratio,
            self.order,
        ]
        .iter()
        .any(|v| v.is_some())
    }

    /// The config, with Swarm's defaults for what was not given.
    fn config(&self) -> anyhow::Result<UpdateConfig> {
        self.apply(UpdateConfig {
            parallelism: Some(1),
            delay_ms: 0,
            failure_action: FailureAction::Pause as i32,
            monitor_ms: Some(DEFAULT_MONITOR_MS),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst as i32,
        })
    }

    /// `base` with what the flags change.
    pub(super) fn apply(&self, base: UpdateConfig) -> anyhow::Result<UpdateConfig> {
        let p = self.prefix;
        let flag = |name: &str| format!("--{p}-{name}");
        let mut c = base;
        if let Some(v) = self.parallelism {
            c.parallelism = Some(parse::count(&flag("parallelism"), v)?);
        }
        if let Some(v) = self.delay {
            c.delay_ms = duration::parse_flag_ms(&flag("delay"), v)?;
        }
        if let Some(v) = self.failure_action {
            let f = flag("failure-action");
            c.failure_action = match (v.trim().to_ascii_lowercase().as_str(), p) {
                ("pause", _) => FailureAction::Pause,
                ("continue", _) => FailureAction::Continue,
                ("rollback", "update") => FailureAction::Rollback,
                (_, "update") => {
                    bail!("invalid value \"{v}\" for {f}: use pause, continue or rollback")
                }
                _ => bail!("invalid value \"{v}\" for {f}: use pause or continue"),
            } as i32;
        }
        if let Some(v) = self.monitor {
            c.monitor_ms = Some(duration::parse_flag_ms(&flag("monitor"), v)?);
        }
        if let Some(v) = self.max_failure_ratio {
            c.max_failure_ratio = parse::ratio(&flag("max-failure-ratio"), v)?;
        }
        if let Some(v) = self.order {
            c.order = match v.trim().to_ascii_lowercase().as_str() {
                "stop-first" => UpdateOrder::StopFirst,
                "start-first" => UpdateOrder::StartFirst,
                _ => bail!(
                    "invalid value \"{v}\" for {}: use stop-first or start-first",
                    flag("order")
                ),
            } as i32;
        }
        Ok(c)
    }
}

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
pub fn build_spec(
    args: &CreateArgs,
    lookup_env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ServiceSpec> {
    let mut spec = ServiceSpec::default();

    // Name and image.
    if let Some(name) = &args.name {
        if !valid_name(name) {
            bail!(
                "invalid service name \"{name}\" for --name: use 1 to 63 letters, digits, -, _ or ., starting with a letter or digit"
            );
        }
        spec.name = name.clone();
    }
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

    // Mode and counts.
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
    spec.mode = Some(match mode {
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
    });

    // Labels.
    for l in &args.label {
        let (k, v) = parse::label("--label", l)?;
        spec.labels.insert(k, v);
    }

    // Container.
    let mut c = ContainerSpec {
        image: image.clone(),
        args: command_args.to_vec(),
        stop_grace_period_ms: Some(DEFAULT_STOP_GRACE_MS),
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
    for e in &args.env {
        c.env.push(parse::env(e, &lookup_env)?);
    }
    for l in &args.container_label {
        let (k, v) = parse::label("--container-label", l)?;
        c.labels.insert(k, v);
    }
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
    if let Some(g) = ms("--stop-grace-period", &args.stop_grace_period)? {
        c.stop_grace_period_ms = Some(g);
    }
    for m in &args.mount {
        c.mounts.push(parse::mount(m)?);
    }
    c.healthcheck = healthcheck(args)?;

    // Resources.
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
    let resources = |(cpus, memory): (Option<i64>, Option<i64>)| {
        (cpus.is_some() || memory.is_some()).then(|| Resources {
            nano_cpus: cpus.unwrap_or(0),
            memory_bytes: memory.unwrap_or(0),
        })
    };
    let (reservations, limits) = (resources(reserve), resources(limit));
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
    let resources = (reservations.is_some() || limits.is_some()).then_some(ResourceRequirements {
        limits,
        reservations,
    });

    // Restart policy.
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
    let restart = RestartPolicy {
        condition: condition as i32,
        delay_ms: Some(
            ms("--restart-delay", &args.restart_delay)?.unwrap_or(DEFAULT_RESTART_DELAY_MS),
        ),
        max_attempts: args
            .restart_max_attempts
            .as_deref()
            .map(|v| parse::count("--restart-max-attempts", v))
            .transpose()?
            .unwrap_or(0),
        window_ms: ms("--restart-window", &args.restart_window)?.unwrap_or(0),
    };

    // Placement.
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
    let placement = (placement != Placement::default()).then_some(placement);

    // Networks.
    let networks = args
        .network
        .iter()
        .map(|n| parse::network(n))
        .collect::<anyhow::Result<Vec<_>>>()?;

    spec.task_template = Some(TaskSpec {
        container: Some(c),
        resources,
        restart: Some(restart),
        placement,
        networks,
        force_update: 0,
    });

    // Update and rollback.
    let update = UpdateFlags {
        prefix: "update",
        parallelism: &args.update_parallelism,
        delay: &args.update_delay,
        failure_action: &args.update_failure_action,
        monitor: &args.update_monitor,
        max_failure_ratio: &args.update_max_failure_ratio,
        order: &args.update_order,
    };
    let rollback = UpdateFlags {
        prefix: "rollback",
        parallelism: &args.rollback_parallelism,
        delay: &args.rollback_delay,
        failure_action: &args.rollback_failure_action,
        monitor: &args.rollback_monitor,
        max_failure_ratio: &args.rollback_max_failure_ratio,
        order: &args.rollback_order,
    };
    if mode.is_job() {
        if update.any() || rollback.any() {
            bail!("--update-* and --rollback-* flags cannot be used with jobs: a job is not rolled out, it runs to completion");
        }
    } else {
        spec.update_config = Some(update.config()?);
        spec.rollback_config = Some(rollback.config()?);
    }

    // Endpoint.
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
    spec.endpoint = Some(endpoint);
    Ok(spec)
}

fn healthcheck(args: &CreateArgs) -> anyhow::Result<Option<HealthConfig>> {
    let any = args.health_cmd.is_some()
        || args.health_interval.is_some()
        || args.health_timeout.is_some()
        || args.health_retries.is_some()
        || args.health_start_period.is_some();
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
    use clap::Parser;
    use proto::service_spec::Mode as M;
    use proto::{MountType, PortProtocol};

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

    fn spec(line: &[&str]) -> ServiceSpec {
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
        assert_eq!((h.interval_ms, h.retries), (10_000, 2));
        let p = t.placement.as_ref().unwrap();
        assert_eq!(p.constraints, ["node.role==worker"]);
        assert_eq!(p.preferences[0].spread, "node.labels.zone");
        assert_eq!(p.max_replicas, 2);
        let r = t.resources.as_ref().unwrap();
        assert_eq!(r.reservations.as_ref().unwrap().nano_cpus, 250_000_000);
        assert_eq!(r.reservations.as_ref().unwrap().memory_bytes, 128 << 20);
        assert_eq!(r.limits.as_ref().unwrap().nano_cpus, 1_500_000_000);
        assert_eq!(r.limits.as_ref().unwrap().memory_bytes, 1 << 30);
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
}
