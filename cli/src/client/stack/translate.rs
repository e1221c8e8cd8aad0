//! The stack's model as the cluster's objects, named and labelled as Swarm names and
//! labels a stack's: `<stack>_<name>`, `com.docker.stack.namespace=<stack>` on every object
//! (the same key, so Docker's tools recognise them), a `<stack>_default` overlay network
//! for services that name none, and each service reachable by its short name on every
//! network of the stack (a DNS alias).
//!
//! Only translation: no defaults are filled in here (the manager's `with_defaults` does
//! that for every front end alike). Pure but for reading the files the stack names, which
//! goes through the `read` function the caller gives.

use std::collections::BTreeMap;
use std::path::Path;

use proto::service_spec::Mode as SpecMode;
use proto::{
    ConfigReference, ConfigSpec, ContainerSpec, EndpointSpec, GlobalJob, GlobalService, MountType,
    NetworkAttachmentConfig, NetworkSpec, Placement, ReplicatedJob, ReplicatedService,
    ResourceRequirements, SecretReference, SecretSpec, ServiceSpec, TaskSpec,
};

use super::load::interpolate::parse_env_file;
use super::model::{External, Mode, Stack};

/// The label that marks a stack's objects, Docker's key.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The label with a service's image as the Compose file wrote it (Docker's key): the spec's
/// image may be pinned to a digest, and `--resolve-image changed` compares with this.
pub const IMAGE_LABEL: &str = "com.docker.stack.image";

/// Reads a file the stack names (a secret's, a config's, an `env_file`).
pub type Read<'a> = &'a dyn Fn(&Path) -> Result<Vec<u8>, String>;

/// What a stack should be in the cluster.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Desired {
    /// The stack's networks, to create unless they exist.
    pub networks: Vec<NetworkSpec>,
    /// Names of networks made elsewhere that must exist.
    pub external_networks: Vec<String>,
    pub secrets: Vec<SecretSpec>,
    pub external_secrets: Vec<String>,
    pub configs: Vec<ConfigSpec>,
    pub external_configs: Vec<String>,
    pub services: Vec<ServiceSpec>,
}

/// `<stack>_<name>`.
pub fn scoped(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn cluster_name(stack: &str, key: &str, e: &External) -> String {
    match &e.name {
        Some(n) => n.clone(),
        None if e.external => key.to_string(),
        None => scoped(stack, key),
    }
}

fn with_namespace(
    stack: &str,
    labels: &BTreeMap<String, String>,
) -> std::collections::HashMap<String, String> {
    let mut l: std::collections::HashMap<String, String> =
        labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    l.insert(NAMESPACE_LABEL.into(), stack.into());
    l
}

/// Translates `model` for the stack named `stack`.
pub fn translate(stack: &str, model: &Stack, read: Read<'_>) -> Result<Desired, String> {
    let mut d = Desired::default();
    let mut networks = model.networks.clone();
    let uses_default = model
        .services
        .values()
        .any(|s| s.networks.is_empty() || s.networks.iter().any(|(n, _)| n == "default"));
    if uses_default {
        networks.entry("default".into()).or_default();
    }
    // Network key to its name in the cluster.
    let mut network_names = BTreeMap::new();
    for (key, n) in &networks {
        let name = cluster_name(stack, key, &n.external);
        network_names.insert(key.clone(), name.clone());
        if n.external.external {
            d.external_networks.push(name);
            continue;
        }
        d.networks.push(NetworkSpec {
            name,
            labels: with_namespace(stack, &n.labels),
            driver: "overlay".into(),
            attachable: n.attachable,
            internal: n.internal,
            ipam: n.subnets.clone(),
            driver_opts: n.driver_opts.clone().into_iter().collect(),
            ingress: false,
        });
    }
    let mut secret_names = BTreeMap::new();
    for (key, s) in &model.secrets {
        let name = cluster_name(stack, key, &s.external);
        secret_names.insert(key.clone(), name.clone());
        match &s.file {
            None => d.external_secrets.push(name),
            Some(file) => d.secrets.push(SecretSpec {
                name,
                labels: with_namespace(stack, &s.labels),
                data: read(file).map_err(|e| format!("secrets.{key}.file: {e}"))?,
            }),
        }
    }
    let mut config_names = BTreeMap::new();
    for (key, c) in &model.configs {
        let name = cluster_name(stack, key, &c.external);
        config_names.insert(key.clone(), name.clone());
        match &c.file {
            None => d.external_configs.push(name),
            Some(file) => d.configs.push(ConfigSpec {
                name,
                labels: with_namespace(stack, &c.labels),
                data: read(file).map_err(|e| format!("configs.{key}.file: {e}"))?,
            }),
        }
    }
    for (key, s) in &model.services {
        let path = format!("services.{key}");
        let mut env = BTreeMap::new();
        for file in &s.env_files {
            let data = read(file).map_err(|e| format!("{path}.env_file: {e}"))?;
            let text = String::from_utf8(data)
                .map_err(|_| format!("{path}.env_file: {} is not text", file.display()))?;
            for (k, v) in parse_env_file(&text, &file.display().to_string())
                .map_err(|e| format!("{path}.env_file: {e}"))?
            {
                env.insert(k, v);
            }
        }
        env.extend(s.environment.clone());
        let mounts = s
            .volumes
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if m.r#type() == MountType::Volume {
                    let declared = model.volumes.get(&m.source).cloned().unwrap_or_default();
                    m.source = cluster_name(stack, &m.source, &declared);
                }
                m
            })
            .collect();
        let container = ContainerSpec {
            image: s.image.clone(),
            command: s.entrypoint.clone().unwrap_or_default(),
            args: s.command.clone().unwrap_or_default(),
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            dir: s.working_dir.clone(),
            user: s.user.clone(),
            hostname: s.hostname.clone(),
            labels: with_namespace(stack, &s.labels),
            mounts,
            stop_signal: s.stop_signal.clone(),
            stop_grace_period_ms: s.stop_grace_period_ms,
            read_only: s.read_only,
            healthcheck: s.healthcheck.clone(),
            secrets: s
                .secrets
                .iter()
                .map(|r| SecretReference {
                    secret_id: String::new(),
                    secret_name: secret_names[&r.source].clone(),
                    // Docker's default target is the file's key, not its scoped name.
                    target: if r.target.is_empty() {
                        r.source.clone()
                    } else {
                        r.target.clone()
                    },
                    uid: r.uid,
                    gid: r.gid,
                    mode: proto::task_files::mode(r.mode.unwrap_or(0)),
                })
                .collect(),
            configs: s
                .configs
                .iter()
                .map(|r| ConfigReference {
                    config_id: String::new(),
                    config_name: config_names[&r.source].clone(),
                    target: if r.target.is_empty() {
                        format!("/{}", r.source)
                    } else {
                        r.target.clone()
                    },
                    uid: r.uid,
                    gid: r.gid,
                    mode: proto::task_files::mode(r.mode.unwrap_or(0)),
                })
                .collect(),
            pull_policy: proto::PullPolicy::Missing as i32,
            registry_auth: String::new(),
            ulimits: s.options.ulimits.clone(),
            cap_add: s.options.cap_add.clone(),
            cap_drop: s.options.cap_drop.clone(),
            sysctls: s.options.sysctls.clone().into_iter().collect(),
            init: s.options.init,
            dns_config: s.options.dns.clone(),
            hosts: s.options.hosts.clone(),
            groups: s.options.groups.clone(),
            tty: s.options.tty,
            oom_score_adj: s.options.oom_score_adj,
        };
        let attached: Vec<(String, Vec<String>)> = if s.networks.is_empty() {
            vec![("default".into(), Vec::new())]
        } else {
            s.networks.clone()
        };
        let networks = attached
            .into_iter()
            .map(|(n, extra)| {
                let mut aliases = vec![key.clone()];
                aliases.extend(extra.into_iter().filter(|a| a != key));
                NetworkAttachmentConfig {
                    target: network_names[&n].clone(),
                    aliases,
                }
            })
            .collect();
        let dp = &s.deploy;
        let placement = Placement {
            constraints: dp.constraints.clone(),
            preferences: dp.preferences.clone(),
            max_replicas: dp.max_replicas_per_node,
            platforms: Vec::new(),
        };
        let resources = ResourceRequirements {
            limits: dp.limits,
            reservations: dp.reservations,
        };
        let mode = match dp.mode {
            Mode::Replicated => SpecMode::Replicated(ReplicatedService {
                replicas: dp.replicas.unwrap_or(1),
            }),
            Mode::Global => SpecMode::Global(GlobalService {}),
            // As Docker: the replicas run at once.
            Mode::ReplicatedJob => SpecMode::ReplicatedJob(ReplicatedJob {
                max_concurrent: dp.replicas.unwrap_or(1),
                total_completions: dp.replicas.unwrap_or(1),
            }),
            Mode::GlobalJob => SpecMode::GlobalJob(GlobalJob {}),
        };
        let endpoint = (dp.endpoint_mode.is_some() || !s.ports.is_empty()).then(|| EndpointSpec {
            mode: dp.endpoint_mode.unwrap_or_default() as i32,
            ports: s.ports.clone(),
        });
        let mut labels = with_namespace(stack, &dp.labels);
        labels.insert(IMAGE_LABEL.into(), container.image.clone());
        d.services.push(ServiceSpec {
            name: scoped(stack, key),
            labels,
            task_template: Some(TaskSpec {
                container: Some(container),
                resources: (resources != ResourceRequirements::default()).then_some(resources),
                restart: dp.restart_policy,
                placement: (placement != Placement::default()).then_some(placement),
                networks,
                force_update: 0,
                log_driver: s.options.log_driver.clone(),
            }),
            mode: Some(mode),
            update_config: dp.update_config,
            rollback_config: dp.rollback_config,
            endpoint,
        });
    }
    Ok(d)
}
