//! Services: defaults and validation of a spec, and the rules of changing one.

use proto::service_spec::Mode;
use proto::{
    ContainerSpec, FailureAction, PortConfig, PortProtocol, PublishMode, ReplicatedJob,
    ReplicatedService, ResolutionMode, RestartCondition, RestartPolicy, Service, ServiceSpec,
    ServiceStatus, TaskSpec, UpdateConfig, UpdateOrder,
};
use tonic::Status;

use crate::allocator::ports::protocol_name;
use crate::allocator::publishes_ingress;
use crate::scheduler::constraint;
use crate::status::invalid;
use crate::store::{ObjectStore, StoredObject};

/// Docker's defaults (DESIGN §9).
const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
const DEFAULT_RESTART_DELAY_MS: u64 = 5_000;
const DEFAULT_MONITOR_MS: u64 = 5_000;
/// Largest replica count accepted: far beyond any cluster, small enough to catch typos.
const MAX_REPLICAS: u64 = 1_000_000;

/// Fills in what the user left out, as Docker does: the one place Swarm's defaults live,
/// so every front end (`service create`, `stack deploy`) sends only what it was told and
/// gets the same service for the same intent.
pub fn with_defaults(mut spec: ServiceSpec) -> ServiceSpec {
    if spec.mode.is_none() {
        spec.mode = Some(Mode::Replicated(ReplicatedService { replicas: 1 }));
    }
    let is_job = matches!(spec.mode, Some(Mode::ReplicatedJob(_) | Mode::GlobalJob(_)));
    if let Some(Mode::ReplicatedJob(job)) = spec.mode.as_mut() {
        if job.max_concurrent == 0 {
            job.max_concurrent = 1;
        }
        if job.total_completions == 0 {
            job.total_completions = job.max_concurrent;
        }
    }
    let template = spec.task_template.get_or_insert_with(TaskSpec::default);
    let container = template
        .container
        .get_or_insert_with(ContainerSpec::default);
    container
        .stop_grace_period_ms
        .get_or_insert(DEFAULT_STOP_GRACE_MS);
    let restart = template.restart.get_or_insert_with(|| RestartPolicy {
        // Jobs must not run again once they succeed.
        condition: if is_job {
            RestartCondition::OnFailure as i32
        } else {
            RestartCondition::Any as i32
        },
        ..Default::default()
    });
    restart.delay_ms.get_or_insert(DEFAULT_RESTART_DELAY_MS);
    // A job is not rolled out but runs to completion: it has no update or rollback policy
    // (Docker leaves them out too).
    if !is_job {
        for config in [&mut spec.update_config, &mut spec.rollback_config] {
            let c = config.get_or_insert_with(UpdateConfig::default);
            c.parallelism.get_or_insert(1);
            c.monitor_ms.get_or_insert(DEFAULT_MONITOR_MS);
        }
    }
    // Endpoint mode vip, no ports.
    spec.endpoint.get_or_insert_with(Default::default);
    spec
}

pub(super) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Refuses a spec the cluster cannot run, with the reason.
pub fn validate(spec: &ServiceSpec) -> Result<(), Status> {
    if !valid_name(&spec.name) {
        return Err(invalid(format!(
            "invalid service name {:?}: use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit",
            spec.name
        )));
    }
    match &spec.mode {
        Some(Mode::Replicated(r)) if r.replicas > MAX_REPLICAS => {
            return Err(invalid(format!(
                "{} replicas is too many (at most {MAX_REPLICAS})",
                r.replicas
            )))
        }
        Some(Mode::ReplicatedJob(ReplicatedJob {
            total_completions,
            max_concurrent,
        })) if *total_completions > MAX_REPLICAS || *max_concurrent > MAX_REPLICAS => {
            return Err(invalid(format!(
                "a job of more than {MAX_REPLICAS} tasks is too large"
            )))
        }
        _ => {}
    }
    let template = spec
        .task_template
        .as_ref()
        .ok_or_else(|| invalid("a service needs a task template"))?;
    let container = template
        .container
        .as_ref()
        .ok_or_else(|| invalid("a service needs a container spec"))?;
    if container.image.trim().is_empty() {
        return Err(invalid("a service needs an image"));
    }
    // Refused here, once, rather than by every node the task lands on, every few seconds.
    proto::reference::ImageRef::parse(&container.image).map_err(|e| invalid(e.to_string()))?;
    if let Some(env) = container
        .env
        .iter()
        .find(|e| e.split('=').next().is_none_or(|k| k.is_empty()))
    {
        return Err(invalid(format!(
            "invalid environment variable {env:?}: use KEY=VALUE"
        )));
    }
    proto::container_options::check(container, &template.networks).map_err(invalid)?;
    proto::container_options::check_host_network(&template.networks, spec.endpoint.as_ref())
        .map_err(invalid)?;
    if let Some(placement) = template.placement.as_ref() {
        for c in &placement.constraints {
            constraint::parse(c).map_err(|e| invalid(e.to_string()))?;
        }
        for p in &placement.preferences {
            constraint::parse_spread(&p.spread).map_err(|e| invalid(e.to_string()))?;
        }
    }
    if let Some(resources) = template.resources.as_ref() {
        for r in [&resources.limits, &resources.reservations]
            .into_iter()
            .flatten()
        {
            if r.nano_cpus < 0 || r.memory_bytes < 0 {
                return Err(invalid("CPU and memory amounts cannot be negative"));
            }
        }
        if let Some(limit) = resources.limits.as_ref().map(|l| l.memory_bytes) {
            if limit > 0 && limit < MIN_MEMORY_LIMIT {
                return Err(invalid(format!(
                    "a memory limit of {limit} bytes is too small to start a container: the minimum is 6MiB (as Docker's)"
                )));
            }
        }
    }
    check_durations(spec)?;
    if let Some(log) = template.log_driver.as_ref().filter(|d| !d.name.is_empty()) {
        let options = log
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        proto::log_driver::Driver::parse(&log.name, &options)
            .map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(restart) = template.restart.as_ref() {
        if RestartCondition::try_from(restart.condition).is_err() {
            return Err(invalid(
                "unknown restart condition: use none, on-failure or any",
            ));
        }
    }
    if let Some(endpoint) = spec.endpoint.as_ref() {
        for port in &endpoint.ports {
            if port.target_port == 0 || port.target_port > 65535 || port.published_port > 65535 {
                return Err(invalid(format!(
                    "invalid port mapping {}:{}: ports are 1 to 65535",
                    port.published_port, port.target_port
                )));
            }
            match PortProtocol::try_from(port.protocol) {
                Ok(PortProtocol::Tcp | PortProtocol::Udp) => {}
                // The mesh and host-mode ports carry TCP and UDP; an SCTP port would be
                // published as something it is not.
                Ok(PortProtocol::Sctp) => {
                    return Err(invalid(format!(
                        "cannot publish port {}/sctp: skiff publishes tcp and udp ports only; reach an SCTP service over its overlay network instead",
                        port.target_port
                    )))
                }
                Err(_) => return Err(invalid("unknown port protocol: use tcp or udp")),
            }
        }
    }
    for (which, config) in [
        ("update", &spec.update_config),
        ("rollback", &spec.rollback_config),
    ] {
        if let Some(c) = config {
            validate_update_config(which, c)?;
        }
    }
    if let Some(endpoint) = spec.endpoint.as_ref() {
        match ResolutionMode::try_from(endpoint.mode) {
            Err(_) => return Err(invalid("unknown endpoint mode: use vip or dnsrr")),
            Ok(ResolutionMode::Dnsrr) if publishes_ingress(Some(endpoint)) => {
                return Err(invalid(
                    "ports published through the routing mesh need endpoint mode vip; use --endpoint-mode vip or publish with mode=host",
                ))
            }
            Ok(_) => {}
        }
        let mut seen = Vec::new();
        for port in endpoint.ports.iter().filter(|p| p.published_port != 0) {
            if seen.contains(&(port.published_port, port.protocol)) {
                return Err(invalid(format!(
                    "port {}/{} is published twice; publish each port once",
                    port.published_port,
                    protocol_name(port.protocol)
                )));
            }
            seen.push((port.published_port, port.protocol));
        }
    }
    Ok(())
}

/// The smallest memory limit a container starts with (Docker refuses less, too).
const MIN_MEMORY_LIMIT: i64 = 6 * 1024 * 1024;

/// The longest duration a spec may hold: what Docker's (Go's) durations hold, about 292
/// years. Longer ones are typos, and overflow where a delay is added to a time.
const MAX_DURATION_MS: u64 = i64::MAX as u64 / 1_000_000;

/// Refuses durations no one means (see [`MAX_DURATION_MS`]).
fn check_durations(spec: &ServiceSpec) -> Result<(), Status> {
    let template = spec.task_template.as_ref();
    let restart = template.and_then(|t| t.restart.as_ref());
    let health = template
        .and_then(|t| t.container.as_ref())
        .and_then(|c| c.healthcheck.as_ref());
    let updates = [&spec.update_config, &spec.rollback_config];
    let durations = [
        ("restart delay", restart.and_then(|r| r.delay_ms)),
        ("restart window", restart.map(|r| r.window_ms)),
        (
            "stop grace period",
            template
                .and_then(|t| t.container.as_ref())
                .and_then(|c| c.stop_grace_period_ms),
        ),
        ("health interval", health.map(|h| h.interval_ms)),
        ("health timeout", health.map(|h| h.timeout_ms)),
        ("health start period", health.map(|h| h.start_period_ms)),
    ]
    .into_iter()
    .chain(updates.iter().flat_map(|c| {
        [
            ("update delay", c.as_ref().map(|c| c.delay_ms)),
            ("update monitor", c.as_ref().and_then(|c| c.monitor_ms)),
        ]
    }));
    for (what, ms) in durations {
        if ms.is_some_and(|ms| ms > MAX_DURATION_MS) {
            return Err(invalid(format!(
                "the {what} is too long: the longest is 2562047h (about 292 years)"
            )));
        }
    }
    Ok(())
}

/// Refuses an update (or rollback) policy the updater cannot follow.
fn validate_update_config(which: &str, c: &UpdateConfig) -> Result<(), Status> {
    if !(0.0..=1.0).contains(&c.max_failure_ratio) {
        return Err(invalid(format!(
            "invalid {which} max failure ratio {}: use a number from 0 to 1",
            c.max_failure_ratio
        )));
    }
    match FailureAction::try_from(c.failure_action) {
        Ok(FailureAction::Rollback) if which == "rollback" => {
            return Err(invalid(
                "a rollback cannot roll back: use pause or continue as the rollback failure action",
            ))
        }
        Ok(_) => {}
        Err(_) => {
            return Err(invalid(format!(
                "unknown {which} failure action: use pause, continue or rollback"
            )))
        }
    }
    if UpdateOrder::try_from(c.order).is_err() {
        return Err(invalid(format!(
            "unknown {which} order: use stop-first or start-first"
        )));
    }
    Ok(())
}

/// Resolves the networks a spec names and refuses published ports taken elsewhere: the
/// checks of a service spec that need the rest of the cluster.
pub fn check_against_store(
    store: &ObjectStore,
    spec: &mut ServiceSpec,
    own_id: &str,
) -> Result<(), Status> {
    super::network::resolve_service_networks(store, spec)?;
    resolve_secrets_and_configs(store, spec)?;
    check_reserved_ports(store, spec)?;
    check_ports(store, spec, own_id)
}

/// Resolves the secrets and configs a spec refers to (by ID or name: both are filled in)
/// and checks their targets, so that a reference to nothing, or two files at one target,
/// fails before anything is written.
fn resolve_secrets_and_configs(store: &ObjectStore, spec: &mut ServiceSpec) -> Result<(), Status> {
    use proto::task_files::{config_target, secret_target};
    let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container.as_mut())
    else {
        return Ok(());
    };
    let mut targets = std::collections::BTreeSet::new();
    for r in &mut container.secrets {
        let reference = if r.secret_id.is_empty() {
            &r.secret_name
        } else {
            &r.secret_id
        };
        let secret = store.resolve::<proto::Secret>(reference).map_err(|_| {
            invalid(format!(
                "secret {reference} not found: create it first with `skiff secret create {reference} FILE`"
            ))
        })?;
        r.secret_id = secret.id().to_owned();
        r.secret_name = secret.name().unwrap_or_default().to_owned();
        let target = secret_target(r).map_err(|e| invalid(e.to_string()))?;
        if !targets.insert(target.clone()) {
            return Err(invalid(format!(
                "two secrets or configs would be written to {}: give each its own target",
                target.display()
            )));
        }
    }
    for r in &mut container.configs {
        let reference = if r.config_id.is_empty() {
            &r.config_name
        } else {
            &r.config_id
        };
        let config = store.resolve::<proto::Config>(reference).map_err(|_| {
            invalid(format!(
                "config {reference} not found: create it first with `skiff config create {reference} FILE`"
            ))
        })?;
        r.config_id = config.id().to_owned();
        r.config_name = config.name().unwrap_or_default().to_owned();
        let target = config_target(r).map_err(|e| invalid(e.to_string()))?;
        if !targets.insert(target.clone()) {
            return Err(invalid(format!(
                "two secrets or configs would be written to {}: give each its own target",
                target.display()
            )));
        }
    }
    Ok(())
}

/// The cluster port when a node says nothing else (Docker's).
const DEFAULT_CLUSTER_PORT: u32 = 2377;

/// Refuses a published port that the cluster itself uses: a node's cluster port (TCP, as
/// the nodes listen and advertise, and 2377, which a node joining later listens on unless
/// told otherwise) or the data path port (UDP). The mesh would otherwise take the managers'
/// Raft traffic or the overlays' VXLAN packets, and cut the cluster off from itself.
fn check_reserved_ports(store: &ObjectStore, spec: &ServiceSpec) -> Result<(), Status> {
    let mut cluster_ports = vec![DEFAULT_CLUSTER_PORT];
    for node in store.list::<proto::Node>() {
        cluster_ports.extend(node.description.iter().flat_map(|d| &d.daemon_ports));
        let addrs = node
            .status
            .iter()
            .map(|s| s.addr.as_str())
            .chain(node.manager_status.iter().map(|m| m.addr.as_str()));
        cluster_ports.extend(addrs.filter_map(|a| {
            a.parse::<std::net::SocketAddr>()
                .ok()
                .map(|a| u32::from(a.port()))
        }));
    }
    let data_path_port = store
        .cluster()
        .and_then(|c| c.spec.as_ref())
        .map(|s| s.data_path_port)
        .filter(|p| *p != 0)
        .unwrap_or(crate::settings::DEFAULT_DATA_PATH_PORT);
    let ports = spec.endpoint.iter().flat_map(|e| &e.ports);
    for port in ports.filter(|p| p.published_port != 0) {
        let tcp = port.protocol == PortProtocol::Tcp as i32;
        if tcp && cluster_ports.contains(&port.published_port) {
            return Err(invalid(format!(
                "port {}/tcp is a cluster port that skiffd listens on; publish the service on another port",
                port.published_port
            )));
        }
        if !tcp && port.published_port == data_path_port {
            return Err(invalid(format!(
                "port {}/udp is the cluster's data path port, which carries the overlay networks; publish the service on another port",
                port.published_port
            )));
        }
    }
    Ok(())
}

/// Refuses a published port another service already publishes, as asked in its spec or as
/// the allocator gave it. Two services may share a port only if both publish it in host
/// mode (each task binds it on its own node).
fn check_ports(store: &ObjectStore, spec: &ServiceSpec, own_id: &str) -> Result<(), Status> {
    let wanted: Vec<&PortConfig> = spec
        .endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.published_port != 0)
        .collect();
    let host = PublishMode::Host as i32;
    for other in store.list::<Service>().filter(|s| s.id() != own_id) {
        let asked = other
            .spec
            .iter()
            .flat_map(|s| &s.endpoint)
            .flat_map(|e| &e.ports);
        let given = other.endpoint.iter().flat_map(|e| &e.ports);
        for p in asked.chain(given).filter(|p| p.published_port != 0) {
            let clash = wanted.iter().any(|w| {
                w.published_port == p.published_port
                    && w.protocol == p.protocol
                    && !(w.publish_mode == host && p.publish_mode == host)
            });
            if clash {
                return Err(Status::already_exists(format!(
                    "port {}/{} is already published by service {}; choose another published port",
                    p.published_port,
                    protocol_name(p.protocol),
                    other.name().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a change of mode (Docker does too: remove and create the service instead).
pub fn check_mode_change(old: &ServiceSpec, new: &ServiceSpec) -> Result<(), Status> {
    let kind = |s: &ServiceSpec| {
        std::mem::discriminant(s.mode.as_ref().unwrap_or(&Mode::Global(Default::default())))
    };
    if kind(old) != kind(new) {
        return Err(invalid(
            "a service's mode cannot change; remove the service and create it again with the new mode",
        ));
    }
    Ok(())
}

/// The service's task counts, from the counts the store keeps (`docker service ls`'s
/// REPLICAS without listing a task).
pub fn status(store: &ObjectStore, service: &Service) -> ServiceStatus {
    let tally = store.task_tally(service.id());
    let desired_tasks = match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicated(r)) => r.replicas,
        Some(Mode::ReplicatedJob(j)) => j
            .max_concurrent
            .min(j.total_completions.saturating_sub(tally.completed)),
        _ => tally.active,
    };
    ServiceStatus {
        running_tasks: tally.running,
        desired_tasks,
        completed_tasks: tally.completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, image: &str) -> ServiceSpec {
        with_defaults(ServiceSpec {
            name: name.into(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_follow_docker() {
        let s = spec("web", "busybox");
        assert!(matches!(
            s.mode,
            Some(Mode::Replicated(ReplicatedService { replicas: 1 }))
        ));
        let t = s.task_template.unwrap();
        assert_eq!(t.container.unwrap().stop_grace_period_ms, Some(10_000));
        let r = t.restart.unwrap();
        assert_eq!(
            (r.condition, r.delay_ms),
            (RestartCondition::Any as i32, Some(5_000))
        );
        assert_eq!(s.update_config.unwrap().parallelism, Some(1));
        assert_eq!(s.endpoint.unwrap().mode(), ResolutionMode::Vip);
    }

    #[test]
    fn jobs_get_no_rollout_policy_and_are_not_restarted_once_complete() {
        let mut s = spec("once", "busybox");
        s.mode = Some(Mode::GlobalJob(proto::GlobalJob {}));
        s.update_config = None;
        s.rollback_config = None;
        s.task_template.as_mut().unwrap().restart = None;
        let s = with_defaults(s);
        assert_eq!((s.update_config, s.rollback_config), (None, None));
        let restart = s.task_template.unwrap().restart.unwrap();
        assert_eq!(restart.condition(), RestartCondition::OnFailure);
    }

    #[test]
    fn zero_is_kept_and_only_unset_takes_the_default() {
        let mut s = spec("web", "busybox");
        let t = s.task_template.as_mut().unwrap();
        t.container.as_mut().unwrap().stop_grace_period_ms = Some(0);
        t.restart.as_mut().unwrap().delay_ms = Some(0);
        s.update_config.as_mut().unwrap().parallelism = Some(0);
        let s = with_defaults(s);
        let t = s.task_template.unwrap();
        assert_eq!(t.container.unwrap().stop_grace_period_ms, Some(0));
        assert_eq!(t.restart.unwrap().delay_ms, Some(0));
        assert_eq!(s.update_config.unwrap().parallelism, Some(0));
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (spec("", "busybox"), "invalid service name"),
            (spec("-web", "busybox"), "invalid service name"),
            (spec("web", ""), "needs an image"),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.endpoint = Some(proto::EndpointSpec {
                        ports: vec![proto::PortConfig {
                            protocol: PortProtocol::Sctp as i32,
                            target_port: 80,
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    s
                },
                "tcp and udp ports only",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.task_template.as_mut().unwrap().placement = Some(proto::Placement {
                        constraints: vec!["node.labels.zone=east".into()],
                        ..Default::default()
                    });
                    s
                },
                "constraint",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.task_template
                        .as_mut()
                        .unwrap()
                        .container
                        .as_mut()
                        .unwrap()
                        .env = vec!["=x".into()];
                    s
                },
                "environment",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.mode = Some(Mode::Replicated(ReplicatedService {
                        replicas: MAX_REPLICAS + 1,
                    }));
                    s
                },
                "too many",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.update_config.as_mut().unwrap().max_failure_ratio = 1.5;
                    s
                },
                "max failure ratio",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.rollback_config.as_mut().unwrap().failure_action =
                        FailureAction::Rollback as i32;
                    s
                },
                "a rollback cannot roll back",
            ),
            (
                {
                    let mut s = spec("web", "busybox");
                    s.update_config.as_mut().unwrap().order = 7;
                    s
                },
                "unknown update order",
            ),
        ];
        let tiny_memory = {
            let mut s = spec("web", "busybox");
            let t = s.task_template.as_mut().unwrap();
            t.resources = Some(proto::ResourceRequirements {
                limits: Some(proto::Resources {
                    memory_bytes: 1024,
                    ..Default::default()
                }),
                ..Default::default()
            });
            s
        };
        let endless_delay = {
            let mut s = spec("web", "busybox");
            let t = s.task_template.as_mut().unwrap();
            t.restart.get_or_insert_with(Default::default).delay_ms =
                Some(99_999_999_999 * 3_600_000);
            s
        };
        let cases = cases
            .into_iter()
            .chain(
                ["UPPER/Case:tag", "BAD//ref", "busybox@sha256:abc"]
                    .map(|image| (spec("web", image), "is not valid")),
            )
            .chain([
                (tiny_memory, "minimum is 6MiB"),
                (endless_delay, "restart delay is too long"),
            ]);
        for (s, want) in cases {
            let err = validate(&s).unwrap_err();
            assert!(err.message().contains(want), "{want}: {}", err.message());
        }
        validate(&spec("web.v2_x", "busybox")).unwrap();
    }

    #[test]
    fn container_options_and_host_networking_are_refused_naming_the_flag() {
        let with = |f: &dyn Fn(&mut ServiceSpec)| {
            let mut s = spec("web", "busybox");
            f(&mut s);
            s
        };
        fn container(s: &mut ServiceSpec) -> &mut ContainerSpec {
            s.task_template
                .as_mut()
                .unwrap()
                .container
                .as_mut()
                .unwrap()
        }
        let host = |s: &mut ServiceSpec, aliases: Vec<String>| {
            s.task_template.as_mut().unwrap().networks = vec![proto::NetworkAttachmentConfig {
                target: "host".into(),
                aliases,
            }];
        };
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (
                with(&|s| {
                    container(s).ulimits = vec![proto::Ulimit {
                        name: "nofile".into(),
                        soft: 10,
                        hard: 5,
                    }]
                }),
                "--ulimit",
            ),
            (
                with(&|s| container(s).cap_add = vec!["CAP_FLY".into()]),
                "unknown capability \"CAP_FLY\" for --cap-add",
            ),
            (
                with(&|s| container(s).sysctls = [("vm.swappiness".into(), "1".into())].into()),
                "not namespaced",
            ),
            (
                with(&|s| {
                    container(s).sysctls = [("net.core.somaxconn".into(), "9".into())].into();
                    host(s, vec![]);
                }),
                "--network host",
            ),
            (
                with(&|s| container(s).oom_score_adj = -1001),
                "--oom-score-adj",
            ),
            (
                with(&|s| container(s).hosts = vec!["db 10.0.0.1".into()]),
                "--host",
            ),
            (with(&|s| host(s, vec!["web".into()])), "no alias"),
            (
                with(&|s| {
                    host(s, vec![]);
                    s.endpoint = Some(proto::EndpointSpec {
                        ports: vec![PortConfig {
                            published_port: 8080,
                            target_port: 80,
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                }),
                "routing mesh",
            ),
        ];
        for (s, want) in cases {
            let err = validate(&s).unwrap_err();
            assert!(err.message().contains(want), "{want}: {}", err.message());
        }
        validate(&with(&|s| {
            host(s, vec![]);
            let c = container(s);
            c.cap_add = vec!["ALL".into()];
            c.sysctls = [("kernel.shmmax".into(), "9".into())].into();
        }))
        .unwrap();
    }

    fn publishing(port: u32, protocol: PortProtocol) -> ServiceSpec {
        let mut s = spec("web", "busybox");
        s.endpoint = Some(proto::EndpointSpec {
            ports: vec![PortConfig {
                published_port: port,
                target_port: 80,
                protocol: protocol as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
        s
    }

    #[test]
    fn the_cluster_s_own_ports_cannot_be_published() {
        use crate::store::create;
        let node = proto::Node {
            meta: Some(proto::Meta {
                id: "n1".into(),
                ..Default::default()
            }),
            description: Some(proto::NodeDescription {
                daemon_ports: vec![7946],
                ..Default::default()
            }),
            status: Some(proto::NodeStatus {
                addr: "10.0.0.2:3000".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cluster = proto::Cluster {
            meta: Some(proto::Meta {
                id: "c".into(),
                ..Default::default()
            }),
            spec: Some(proto::ClusterSpec {
                data_path_port: 5789,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut store = ObjectStore::default();
        store
            .apply(
                &proto::StoreBatch {
                    actions: vec![create(cluster), create(node)],
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        for (port, protocol, want) in [
            (2377, PortProtocol::Tcp, "cluster port"),
            (7946, PortProtocol::Tcp, "cluster port"),
            (3000, PortProtocol::Tcp, "cluster port"),
            (5789, PortProtocol::Udp, "data path port"),
        ] {
            let mut s = publishing(port, protocol);
            let err = check_against_store(&store, &mut s, "svc").unwrap_err();
            assert!(err.message().contains(want), "{port}: {}", err.message());
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
        // The same numbers in the other protocol, and the default VXLAN port when the
        // cluster uses another, are free.
        for (port, protocol) in [
            (2377, PortProtocol::Udp),
            (5789, PortProtocol::Tcp),
            (4789, PortProtocol::Udp),
        ] {
            let mut s = publishing(port, protocol);
            check_against_store(&store, &mut s, "svc").unwrap();
        }
    }

    /// `service ls`'s counts: running (desired and observed running), the replica count
    /// or the job's remaining concurrency, the tasks a global service wants, completions.
    #[test]
    fn status_counts_tasks_as_service_ls_shows_them() {
        use proto::{GlobalService, TaskState::*};
        let task = |id: &str, service: &str, desired: proto::TaskState, state: proto::TaskState| {
            crate::store::create(proto::Task {
                meta: Some(proto::Meta {
                    id: id.into(),
                    ..Default::default()
                }),
                service_id: service.into(),
                desired_state: desired as i32,
                status: Some(proto::TaskStatus {
                    state: state as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let service = |id: &str, mode: Mode| Service {
            meta: Some(proto::Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: id.into(),
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut store = ObjectStore::default();
        store
            .apply(
                &proto::StoreBatch {
                    actions: vec![
                        task("w1", "web", Running, Running),
                        task("w2", "web", Running, Starting),
                        task("w3", "web", Shutdown, Running),
                        task("g1", "agent", Running, Running),
                        task("g2", "agent", Running, Assigned),
                        task("g3", "agent", Shutdown, Failed),
                        task("j1", "job", Complete, Complete),
                        task("j2", "job", Complete, Complete),
                        task("j3", "job", Running, Running),
                    ],
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        let web = service("web", Mode::Replicated(ReplicatedService { replicas: 5 }));
        let agent = service("agent", Mode::Global(GlobalService {}));
        let job = service(
            "job",
            Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 2,
                total_completions: 3,
            }),
        );
        let counts = |s: &Service| {
            let c = status(&store, s);
            (c.running_tasks, c.desired_tasks, c.completed_tasks)
        };
        assert_eq!(counts(&web), (1, 5, 0));
        assert_eq!(counts(&agent), (1, 2, 0));
        assert_eq!(counts(&job), (1, 1, 2));
        let none = service("none", Mode::Replicated(ReplicatedService { replicas: 2 }));
        assert_eq!(counts(&none), (0, 2, 0));
    }
}
