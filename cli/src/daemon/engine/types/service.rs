//! Services: `ServiceSpec` with its `TaskTemplate` (`ContainerSpec`, `Resources`,
//! `RestartPolicy`, `Placement`, networks), `Mode`, `UpdateConfig`, `EndpointSpec`, and
//! `Service` as `GET /services` shows it.
//!
//! A spec read back from skiff and sent again unchanged (`docker service update`,
//! `scale`) gives the same proto spec: pointers (`Replicas`, `StopGracePeriod`, restart
//! `Delay`) stay unset when skiff's are, and what Docker cannot carry (registry
//! credentials, pull policy) is kept from the current spec by the update handler.

use std::collections::HashMap;

use proto::service_spec::Mode as ProtoMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{meta, millis, nanos, time, Version};
use crate::daemon::engine::decode::refuse_unsupported;
use crate::daemon::engine::error::{ApiError, ApiResult};

type Labels = HashMap<String, String>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn opt_millis(field: &str, ns: Option<i64>) -> ApiResult<Option<u64>> {
    ns.map(|n| millis(field, n)).transpose()
}

// ---------------------------------------------------------------------------------------
// ContainerSpec
// ---------------------------------------------------------------------------------------

/// `Mount.TmpfsOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    /// Size in bytes (0: unlimited).
    pub size_bytes: i64,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

/// `ContainerSpec.Mounts[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    /// "bind", "volume" or "tmpfs".
    #[serde(rename = "Type")]
    pub kind: String,
    /// Host path or volume name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<Value>,
    /// tmpfs size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_options: Option<Value>,
}

/// `ContainerSpec.Healthcheck`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", cmd]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub interval: i64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timeout: i64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub start_period: i64,
    /// Nanoseconds between checks during the start period (0: the interval).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub start_interval: i64,
    /// Failures in a row before unhealthy.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub retries: u64,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// `SecretReference.File` / `ConfigReference.File`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FileTarget {
    /// File name (secrets) or path (configs).
    pub name: String,
    /// Owner, as a string (Docker's).
    #[serde(rename = "UID")]
    pub uid: String,
    /// Group, as a string.
    #[serde(rename = "GID")]
    pub gid: String,
    /// Permission bits.
    pub mode: u32,
}

/// `ContainerSpec.Secrets[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecretRef {
    /// Where it goes.
    pub file: Option<FileTarget>,
    /// The secret's ID.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// The secret's name.
    pub secret_name: String,
}

/// `ContainerSpec.Configs[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigRef {
    /// Where it goes.
    pub file: Option<FileTarget>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Value>,
    /// The config's ID.
    #[serde(rename = "ConfigID")]
    pub config_id: String,
    /// The config's name.
    pub config_name: String,
}

fn id_number(field: &str, s: &str) -> ApiResult<u32> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse()
        .map_err(|_| bad(format!("invalid {field} \"{s}\": give a numeric ID")))
}

/// `TaskTemplate.ContainerSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSpec {
    /// The image reference.
    pub image: String,
    /// Labels of the container.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub labels: Labels,
    /// Overrides the entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Overrides the image's cmd.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Hostname.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Environment, `KEY=VALUE`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    /// User.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Stop signal.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Nanoseconds; unset means the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    /// Read-only root file system.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigRef>,
    /// Supplementary groups (`--group`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Value>,
    /// Run an init as PID 1 (`--init`); unset: the node's default (none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Give the task a terminal (`--tty`).
    #[serde(rename = "TTY", skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_stdin: Option<Value>,
    /// Extra /etc/hosts lines, `IP NAME` (`--host NAME:IP`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// resolv.conf settings (`--dns*`).
    #[serde(rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Value>,
    /// Namespaced kernel parameters (`--sysctl`).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub sysctls: Labels,
    /// Capabilities added (`--cap-add`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    /// Capabilities dropped (`--cap-drop`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
    /// Resource limits per process (`--ulimit`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// OOM score adjustment (`--oom-score-adj`).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub oom_score_adj: i64,
}

/// `ContainerSpec.DNSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    /// Name servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `ContainerSpec.Ulimits[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    /// As `ulimit` names it: nofile, nproc, ...
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

impl ContainerSpec {
    fn from_proto(c: &proto::ContainerSpec) -> Self {
        Self {
            image: c.image.clone(),
            labels: c.labels.clone(),
            command: c.command.clone(),
            args: c.args.clone(),
            hostname: c.hostname.clone(),
            env: c.env.clone(),
            dir: c.dir.clone(),
            user: c.user.clone(),
            stop_signal: c.stop_signal.clone(),
            stop_grace_period: c.stop_grace_period_ms.map(nanos),
            read_only: c.read_only,
            mounts: c
                .mounts
                .iter()
                .map(|m| {
                    let kind = proto::MountType::try_from(m.r#type).unwrap_or_default();
                    Mount {
                        kind: match kind {
                            proto::MountType::Bind => "bind",
                            proto::MountType::Volume => "volume",
                            proto::MountType::Tmpfs => "tmpfs",
                        }
                        .into(),
                        source: m.source.clone(),
                        target: m.target.clone(),
                        read_only: m.read_only,
                        tmpfs_options: (kind == proto::MountType::Tmpfs && m.tmpfs_size_bytes != 0)
                            .then(|| TmpfsOptions {
                                size_bytes: m.tmpfs_size_bytes as i64,
                                ..Default::default()
                            }),
                        ..Default::default()
                    }
                })
                .collect(),
            healthcheck: c.healthcheck.as_ref().map(|h| Healthcheck {
                test: h.test.clone(),
                interval: nanos(h.interval_ms),
                timeout: nanos(h.timeout_ms),
                start_period: nanos(h.start_period_ms),
                retries: u64::from(h.retries),
                start_interval: nanos(h.start_interval_ms),
            }),
            secrets: c
                .secrets
                .iter()
                .map(|s| SecretRef {
                    file: Some(FileTarget {
                        name: s.target.clone(),
                        uid: s.uid.to_string(),
                        gid: s.gid.to_string(),
                        mode: s.mode,
                    }),
                    secret_id: s.secret_id.clone(),
                    secret_name: s.secret_name.clone(),
                })
                .collect(),
            configs: c
                .configs
                .iter()
                .map(|s| ConfigRef {
                    file: Some(FileTarget {
                        name: s.target.clone(),
                        uid: s.uid.to_string(),
                        gid: s.gid.to_string(),
                        mode: s.mode,
                    }),
                    runtime: None,
                    config_id: s.config_id.clone(),
                    config_name: s.config_name.clone(),
                })
                .collect(),
            groups: c.groups.clone(),
            init: c.init.then_some(true),
            tty: c.tty,
            hosts: c.hosts.clone(),
            dns_config: c.dns_config.as_ref().map(|d| DnsConfig {
                nameservers: d.nameservers.clone(),
                search: d.search.clone(),
                options: d.options.clone(),
            }),
            sysctls: c.sysctls.clone(),
            capability_add: c.cap_add.clone(),
            capability_drop: c.cap_drop.clone(),
            ulimits: c
                .ulimits
                .iter()
                .map(|u| Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            oom_score_adj: c.oom_score_adj,
            ..Default::default()
        }
    }

    fn to_proto(&self) -> ApiResult<proto::ContainerSpec> {
        let p = "TaskTemplate.ContainerSpec";
        refuse_unsupported(&[
            (&format!("{p}.Privileges"), &self.privileges),
            (&format!("{p}.OpenStdin"), &self.open_stdin),
        ])?;
        match self.isolation.as_ref().and_then(Value::as_str) {
            None | Some("") | Some("default") => {}
            Some(other) => {
                return Err(bad(format!(
                    "{p}.Isolation \"{other}\" is not supported by skiff; remove it"
                )))
            }
        }
        let mut mounts = Vec::new();
        for (i, m) in self.mounts.iter().enumerate() {
            let at = format!("{p}.Mounts[{i}]");
            refuse_unsupported(&[
                (&format!("{at}.Consistency"), &m.consistency),
                (&format!("{at}.BindOptions"), &m.bind_options),
                (&format!("{at}.VolumeOptions"), &m.volume_options),
                (&format!("{at}.ClusterOptions"), &m.cluster_options),
            ])?;
            let kind = match m.kind.as_str() {
                "bind" => proto::MountType::Bind,
                "volume" | "" => proto::MountType::Volume,
                "tmpfs" => proto::MountType::Tmpfs,
                other => {
                    return Err(bad(format!(
                        "{at}.Type \"{other}\" is not supported by skiff: use bind, volume or tmpfs"
                    )))
                }
            };
            let tmpfs = m.tmpfs_options.clone().unwrap_or_default();
            refuse_unsupported(&[
                (&format!("{at}.TmpfsOptions.Mode"), &tmpfs.mode),
                (&format!("{at}.TmpfsOptions.Options"), &tmpfs.options),
            ])?;
            if tmpfs.size_bytes < 0 {
                return Err(bad(format!(
                    "{at}.TmpfsOptions.SizeBytes cannot be negative"
                )));
            }
            mounts.push(proto::Mount {
                r#type: kind as i32,
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                tmpfs_size_bytes: tmpfs.size_bytes as u64,
            });
        }
        let healthcheck = match &self.healthcheck {
            None => None,
            Some(h) => Some(proto::HealthConfig {
                test: h.test.clone(),
                interval_ms: millis("Healthcheck.Interval", h.interval)?,
                timeout_ms: millis("Healthcheck.Timeout", h.timeout)?,
                retries: u32::try_from(h.retries)
                    .map_err(|_| bad("Healthcheck.Retries is too large"))?,
                start_period_ms: millis("Healthcheck.StartPeriod", h.start_period)?,
                start_interval_ms: millis("Healthcheck.StartInterval", h.start_interval)?,
            }),
        };
        let mut secrets = Vec::new();
        for s in &self.secrets {
            let file = s.file.clone().ok_or_else(|| {
                bad(format!(
                    "secret \"{}\" has no File: give File.Name, the file under /run/secrets",
                    s.secret_name
                ))
            })?;
            secrets.push(proto::SecretReference {
                secret_id: s.secret_id.clone(),
                secret_name: s.secret_name.clone(),
                target: file.name,
                uid: id_number("File.UID", &file.uid)?,
                gid: id_number("File.GID", &file.gid)?,
                mode: file.mode,
            });
        }
        let mut configs = Vec::new();
        for c in &self.configs {
            refuse_unsupported(&[(&format!("{p}.Configs.Runtime"), &c.runtime)])?;
            let file = c.file.clone().ok_or_else(|| {
                bad(format!(
                    "config \"{}\" has no File: give File.Name, its path in the container",
                    c.config_name
                ))
            })?;
            configs.push(proto::ConfigReference {
                config_id: c.config_id.clone(),
                config_name: c.config_name.clone(),
                target: file.name,
                uid: id_number("File.UID", &file.uid)?,
                gid: id_number("File.GID", &file.gid)?,
                mode: file.mode,
            });
        }
        Ok(proto::ContainerSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            dir: self.dir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            mounts,
            stop_signal: self.stop_signal.clone(),
            stop_grace_period_ms: opt_millis("StopGracePeriod", self.stop_grace_period)?,
            read_only: self.read_only,
            healthcheck,
            secrets,
            configs,
            pull_policy: 0,
            registry_auth: String::new(),
            ulimits: self
                .ulimits
                .iter()
                .map(|u| proto::Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            cap_add: self.capability_add.clone(),
            cap_drop: self.capability_drop.clone(),
            sysctls: self.sysctls.clone(),
            init: self.init.unwrap_or(false),
            // An empty DNSConfig (Docker's clients always send one) sets nothing.
            dns_config: self
                .dns_config
                .as_ref()
                .filter(|d| {
                    !d.nameservers.is_empty() || !d.search.is_empty() || !d.options.is_empty()
                })
                .map(|d| proto::DnsConfig {
                    nameservers: d.nameservers.clone(),
                    search: d.search.clone(),
                    options: d.options.clone(),
                }),
            hosts: self.hosts.clone(),
            groups: self.groups.clone(),
            tty: self.tty,
            oom_score_adj: self.oom_score_adj,
        })
    }
}

// ---------------------------------------------------------------------------------------
// TaskTemplate
// ---------------------------------------------------------------------------------------

/// `Resources.Limits` / `Resources.Reservations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Limit {
    /// Billionths of a CPU.
    #[serde(rename = "NanoCPUs", skip_serializing_if = "is_zero_i64")]
    pub nano_cpus: i64,
    /// Bytes.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub memory_bytes: i64,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generic_resources: Option<Value>,
}

impl Limit {
    fn to_proto(&self, at: &str) -> ApiResult<Option<proto::Resources>> {
        refuse_unsupported(&[
            (&format!("{at}.Pids"), &self.pids),
            (&format!("{at}.GenericResources"), &self.generic_resources),
        ])?;
        if self.nano_cpus < 0 || self.memory_bytes < 0 {
            return Err(bad(format!("{at} cannot be negative")));
        }
        Ok(
            (self.nano_cpus != 0 || self.memory_bytes != 0).then_some(proto::Resources {
                nano_cpus: self.nano_cpus,
                memory_bytes: self.memory_bytes,
                ..Default::default()
            }),
        )
    }

    fn from_proto(r: &Option<proto::Resources>) -> Option<Self> {
        r.map(|r| Self {
            nano_cpus: r.nano_cpus,
            memory_bytes: r.memory_bytes,
            ..Default::default()
        })
    }
}

/// `TaskTemplate.Resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    /// Limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limit>,
    /// Reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Limit>,
}

/// `TaskTemplate.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// "none", "on-failure" or "any".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Nanoseconds; unset means 5 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// Zero: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

/// `Placement.Preferences[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Preference {
    /// Spread over a node attribute.
    pub spread: Spread,
}

/// `Preference.Spread`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    /// e.g. `node.labels.zone`.
    pub spread_descriptor: String,
}

/// `Placement.Platforms[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Platform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    #[serde(rename = "OS")]
    pub os: String,
}

/// `TaskTemplate.Placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Placement {
    /// Constraints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Spread preferences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<Preference>,
    /// Zero: unlimited.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub max_replicas: u64,
    /// Platforms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

/// `TaskTemplate.Networks[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkAttachment {
    /// Network ID or name.
    pub target: String,
    /// Aliases on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<Value>,
}

/// `TaskTemplate` (also a task's `Spec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskSpec {
    /// The container.
    pub container_spec: Option<ContainerSpec>,
    /// Limits and reservations.
    pub resources: Option<Resources>,
    /// Restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Placement.
    pub placement: Option<Placement>,
    /// Networks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Bumped to replace tasks with an unchanged spec.
    pub force_update: u64,
    /// "container" (or empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// Where the task's output goes (`--log-driver`, `--log-opt`); unset: the node's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<LogDriver>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_spec: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_attachment_spec: Option<Value>,
}

/// `TaskTemplate.LogDriver`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogDriver {
    /// The driver, as Docker names it (`json-file`, `local`, `syslog`, `none`, ...).
    pub name: String,
    /// Its options (`--log-opt`).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub options: Labels,
}

impl TaskSpec {
    /// The Docker view of a task template.
    pub fn from_proto(t: &proto::TaskSpec) -> Self {
        let resources = t.resources.unwrap_or_default();
        let placement = t.placement.clone().unwrap_or_default();
        Self {
            container_spec: Some(ContainerSpec::from_proto(
                &t.container.clone().unwrap_or_default(),
            )),
            resources: Some(Resources {
                limits: Limit::from_proto(&resources.limits),
                reservations: Limit::from_proto(&resources.reservations),
            }),
            restart_policy: t.restart.map(|r| RestartPolicy {
                condition: match proto::RestartCondition::try_from(r.condition) {
                    Ok(proto::RestartCondition::None) => "none",
                    Ok(proto::RestartCondition::OnFailure) => "on-failure",
                    _ => "any",
                }
                .into(),
                delay: r.delay_ms.map(nanos),
                max_attempts: Some(r.max_attempts),
                window: Some(nanos(r.window_ms)),
            }),
            placement: Some(Placement {
                constraints: placement.constraints.clone(),
                preferences: placement
                    .preferences
                    .iter()
                    .map(|p| Preference {
                        spread: Spread {
                            spread_descriptor: p.spread.clone(),
                        },
                    })
                    .collect(),
                max_replicas: placement.max_replicas,
                platforms: placement
                    .platforms
                    .iter()
                    .map(|p| Platform {
                        architecture: p.arch.clone(),
                        os: p.os.clone(),
                    })
                    .collect(),
            }),
            networks: t
                .networks
                .iter()
                .map(|n| NetworkAttachment {
                    target: n.target.clone(),
                    aliases: n.aliases.clone(),
                    driver_opts: None,
                })
                .collect(),
            force_update: t.force_update,
            runtime: "container".into(),
            log_driver: t.log_driver.as_ref().map(|l| LogDriver {
                name: l.name.clone(),
                options: l.options.clone(),
            }),
            ..Default::default()
        }
    }

    /// skiff's task template.
    pub fn to_proto(&self) -> ApiResult<proto::TaskSpec> {
        refuse_unsupported(&[
            ("TaskTemplate.PluginSpec", &self.plugin_spec),
            (
                "TaskTemplate.NetworkAttachmentSpec",
                &self.network_attachment_spec,
            ),
        ])?;
        if !matches!(self.runtime.as_str(), "" | "container") {
            return Err(bad(format!(
                "TaskTemplate.Runtime \"{}\" is not supported by skiff: services run containers",
                self.runtime
            )));
        }
        let container = self
            .container_spec
            .as_ref()
            .ok_or_else(|| bad("TaskTemplate.ContainerSpec is missing: give at least its Image"))?
            .to_proto()?;
        let resources = self.resources.clone().unwrap_or_default();
        let limits = match &resources.limits {
            Some(l) => l.to_proto("TaskTemplate.Resources.Limits")?,
            None => None,
        };
        let reservations = match &resources.reservations {
            Some(l) => l.to_proto("TaskTemplate.Resources.Reservations")?,
            None => None,
        };
        let restart = match &self.restart_policy {
            None => None,
            Some(r) => Some(proto::RestartPolicy {
                condition: match r.condition.as_str() {
                    "" | "any" => proto::RestartCondition::Any,
                    "on-failure" => proto::RestartCondition::OnFailure,
                    "none" => proto::RestartCondition::None,
                    other => {
                        return Err(bad(format!(
                        "invalid RestartPolicy.Condition \"{other}\": use none, on-failure or any"
                    )))
                    }
                } as i32,
                delay_ms: opt_millis("RestartPolicy.Delay", r.delay)?,
                max_attempts: r.max_attempts.unwrap_or(0),
                window_ms: millis("RestartPolicy.Window", r.window.unwrap_or(0))?,
            }),
        };
        let placement = self.placement.clone().unwrap_or_default();
        let mut networks = Vec::new();
        for (i, n) in self.networks.iter().enumerate() {
            refuse_unsupported(&[(
                &format!("TaskTemplate.Networks[{i}].DriverOpts"),
                &n.driver_opts,
            )])?;
            networks.push(proto::NetworkAttachmentConfig {
                target: n.target.clone(),
                aliases: n.aliases.clone(),
            });
        }
        Ok(proto::TaskSpec {
            container: Some(container),
            resources: (limits.is_some() || reservations.is_some()).then_some(
                proto::ResourceRequirements {
                    limits,
                    reservations,
                },
            ),
            restart,
            placement: (!placement.constraints.is_empty()
                || !placement.preferences.is_empty()
                || placement.max_replicas != 0
                || !placement.platforms.is_empty())
            .then(|| proto::Placement {
                constraints: placement.constraints.clone(),
                preferences: placement
                    .preferences
                    .iter()
                    .map(|p| proto::PlacementPreference {
                        spread: p.spread.spread_descriptor.clone(),
                    })
                    .collect(),
                max_replicas: placement.max_replicas,
                platforms: placement
                    .platforms
                    .iter()
                    .map(|p| proto::Platform {
                        os: p.os.clone(),
                        arch: p.architecture.clone(),
                    })
                    .collect(),
            }),
            networks,
            force_update: self.force_update,
            // A driver with no name (and no options) sets nothing.
            log_driver: self
                .log_driver
                .as_ref()
                .filter(|l| !l.name.is_empty() || !l.options.is_empty())
                .map(|l| proto::LogDriver {
                    name: l.name.clone(),
                    options: l.options.clone(),
                }),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Mode, UpdateConfig, EndpointSpec
// ---------------------------------------------------------------------------------------

/// `Mode.Replicated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Replicated {
    /// Unset means 1.
    pub replicas: Option<u64>,
}

/// `Mode.ReplicatedJob`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReplicatedJob {
    /// Tasks at once.
    pub max_concurrent: Option<u64>,
    /// Completions wanted.
    pub total_completions: Option<u64>,
}

/// An empty object (`Global`, `GlobalJob`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `Mode`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mode {
    /// Replicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicated: Option<Replicated>,
    /// Global.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<Empty>,
    /// A replicated job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicated_job: Option<ReplicatedJob>,
    /// A global job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_job: Option<Empty>,
}

impl Mode {
    fn from_proto(mode: &Option<ProtoMode>) -> Self {
        match mode {
            Some(ProtoMode::Global(_)) => Self {
                global: Some(Empty {}),
                ..Default::default()
            },
            Some(ProtoMode::ReplicatedJob(j)) => Self {
                replicated_job: Some(ReplicatedJob {
                    max_concurrent: Some(j.max_concurrent),
                    total_completions: Some(j.total_completions),
                }),
                ..Default::default()
            },
            Some(ProtoMode::GlobalJob(_)) => Self {
                global_job: Some(Empty {}),
                ..Default::default()
            },
            Some(ProtoMode::Replicated(r)) => Self {
                replicated: Some(Replicated {
                    replicas: Some(r.replicas),
                }),
                ..Default::default()
            },
            None => Self::default(),
        }
    }

    fn to_proto(&self) -> ApiResult<ProtoMode> {
        let set = [
            self.replicated.is_some(),
            self.global.is_some(),
            self.replicated_job.is_some(),
            self.global_job.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set > 1 {
            return Err(bad(
                "Mode names more than one mode: give one of Replicated, Global, ReplicatedJob, GlobalJob",
            ));
        }
        Ok(if self.global.is_some() {
            ProtoMode::Global(proto::GlobalService {})
        } else if let Some(j) = &self.replicated_job {
            // Docker's defaults: one completion, one at a time.
            let total = j.total_completions.unwrap_or(1);
            ProtoMode::ReplicatedJob(proto::ReplicatedJob {
                max_concurrent: j.max_concurrent.unwrap_or(total).max(1),
                total_completions: total,
            })
        } else if self.global_job.is_some() {
            ProtoMode::GlobalJob(proto::GlobalJob {})
        } else {
            ProtoMode::Replicated(proto::ReplicatedService {
                replicas: self
                    .replicated
                    .as_ref()
                    .and_then(|r| r.replicas)
                    .unwrap_or(1),
            })
        })
    }
}

/// `UpdateConfig` / `RollbackConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    /// Tasks at once (0: all).
    pub parallelism: u64,
    /// Nanoseconds between tasks.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub delay: i64,
    /// "pause", "continue" or "rollback".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    /// Nanoseconds a new task is watched.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub monitor: i64,
    /// Failures tolerated.
    pub max_failure_ratio: f32,
    /// "stop-first" or "start-first".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub order: String,
}

impl UpdateConfig {
    fn from_proto(u: &proto::UpdateConfig) -> Self {
        Self {
            parallelism: u.parallelism.unwrap_or(1),
            delay: nanos(u.delay_ms),
            failure_action: match proto::FailureAction::try_from(u.failure_action) {
                Ok(proto::FailureAction::Continue) => "continue",
                Ok(proto::FailureAction::Rollback) => "rollback",
                _ => "pause",
            }
            .into(),
            monitor: u.monitor_ms.map(nanos).unwrap_or(0),
            max_failure_ratio: u.max_failure_ratio,
            order: match proto::UpdateOrder::try_from(u.order) {
                Ok(proto::UpdateOrder::StartFirst) => "start-first",
                _ => "stop-first",
            }
            .into(),
        }
    }

    fn to_proto(&self, name: &str) -> ApiResult<proto::UpdateConfig> {
        Ok(proto::UpdateConfig {
            parallelism: Some(self.parallelism),
            delay_ms: millis(&format!("{name}.Delay"), self.delay)?,
            failure_action: match self.failure_action.as_str() {
                "" | "pause" => proto::FailureAction::Pause,
                "continue" => proto::FailureAction::Continue,
                "rollback" => proto::FailureAction::Rollback,
                other => {
                    return Err(bad(format!(
                        "invalid {name}.FailureAction \"{other}\": use pause, continue or rollback"
                    )))
                }
            } as i32,
            monitor_ms: match self.monitor {
                0 => None,
                m => Some(millis(&format!("{name}.Monitor"), m)?),
            },
            max_failure_ratio: self.max_failure_ratio,
            order: match self.order.as_str() {
                "" | "stop-first" => proto::UpdateOrder::StopFirst,
                "start-first" => proto::UpdateOrder::StartFirst,
                other => {
                    return Err(bad(format!(
                        "invalid {name}.Order \"{other}\": use stop-first or start-first"
                    )))
                }
            } as i32,
        })
    }
}

/// `EndpointSpec.Ports[]` and `Endpoint.Ports[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortConfig {
    /// A name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// The container's port.
    pub target_port: u32,
    /// The published port (0: the allocator picks).
    pub published_port: u32,
    /// "ingress" or "host".
    pub publish_mode: String,
}

impl PortConfig {
    /// The Docker view of a port.
    pub fn from_proto(p: &proto::PortConfig) -> Self {
        Self {
            name: p.name.clone(),
            protocol: match proto::PortProtocol::try_from(p.protocol) {
                Ok(proto::PortProtocol::Udp) => "udp",
                Ok(proto::PortProtocol::Sctp) => "sctp",
                _ => "tcp",
            }
            .into(),
            target_port: p.target_port,
            published_port: p.published_port,
            publish_mode: match proto::PublishMode::try_from(p.publish_mode) {
                Ok(proto::PublishMode::Host) => "host",
                _ => "ingress",
            }
            .into(),
        }
    }

    fn to_proto(&self) -> ApiResult<proto::PortConfig> {
        Ok(proto::PortConfig {
            name: self.name.clone(),
            protocol: match self.protocol.as_str() {
                "" | "tcp" => proto::PortProtocol::Tcp,
                "udp" => proto::PortProtocol::Udp,
                "sctp" => proto::PortProtocol::Sctp,
                other => {
                    return Err(bad(format!(
                        "invalid port Protocol \"{other}\": use tcp or udp"
                    )))
                }
            } as i32,
            target_port: self.target_port,
            published_port: self.published_port,
            publish_mode: match self.publish_mode.as_str() {
                "" | "ingress" => proto::PublishMode::Ingress,
                "host" => proto::PublishMode::Host,
                other => {
                    return Err(bad(format!(
                        "invalid port PublishMode \"{other}\": use ingress or host"
                    )))
                }
            } as i32,
        })
    }
}

/// `EndpointSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSpec {
    /// "vip" or "dnsrr".
    pub mode: String,
    /// Published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

impl EndpointSpec {
    fn from_proto(e: &proto::EndpointSpec) -> Self {
        Self {
            mode: match proto::ResolutionMode::try_from(e.mode) {
                Ok(proto::ResolutionMode::Dnsrr) => "dnsrr",
                _ => "vip",
            }
            .into(),
            ports: e.ports.iter().map(PortConfig::from_proto).collect(),
        }
    }

    fn to_proto(&self) -> ApiResult<proto::EndpointSpec> {
        Ok(proto::EndpointSpec {
            mode: match self.mode.as_str() {
                "" | "vip" => proto::ResolutionMode::Vip,
                "dnsrr" => proto::ResolutionMode::Dnsrr,
                other => {
                    return Err(bad(format!(
                        "invalid EndpointSpec.Mode \"{other}\": use vip or dnsrr"
                    )))
                }
            } as i32,
            ports: self
                .ports
                .iter()
                .map(PortConfig::to_proto)
                .collect::<ApiResult<_>>()?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// ServiceSpec and Service
// ---------------------------------------------------------------------------------------

/// `ServiceSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceSpec {
    /// The name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// The tasks.
    pub task_template: TaskSpec,
    /// Replicated, global or a job.
    pub mode: Mode,
    /// Rolling updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// Rollbacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// Deprecated place of the networks (old clients); taken when `TaskTemplate.Networks`
    /// is empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Ports and resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
}

impl ServiceSpec {
    /// The Docker view of a service spec.
    pub fn from_proto(s: &proto::ServiceSpec) -> Self {
        Self {
            name: s.name.clone(),
            labels: s.labels.clone(),
            task_template: TaskSpec::from_proto(&s.task_template.clone().unwrap_or_default()),
            mode: Mode::from_proto(&s.mode),
            update_config: s.update_config.as_ref().map(UpdateConfig::from_proto),
            rollback_config: s.rollback_config.as_ref().map(UpdateConfig::from_proto),
            networks: Vec::new(),
            endpoint_spec: s.endpoint.as_ref().map(EndpointSpec::from_proto),
        }
    }

    /// skiff's service spec.
    pub fn to_proto(&self) -> ApiResult<proto::ServiceSpec> {
        let mut template = self.task_template.clone();
        if template.networks.is_empty() {
            template.networks = self.networks.clone();
        }
        Ok(proto::ServiceSpec {
            name: self.name.clone(),
            labels: self.labels.clone(),
            task_template: Some(template.to_proto()?),
            mode: Some(self.mode.to_proto()?),
            update_config: self
                .update_config
                .as_ref()
                .map(|u| u.to_proto("UpdateConfig"))
                .transpose()?,
            rollback_config: self
                .rollback_config
                .as_ref()
                .map(|u| u.to_proto("RollbackConfig"))
                .transpose()?,
            endpoint: self
                .endpoint_spec
                .as_ref()
                .map(EndpointSpec::to_proto)
                .transpose()?,
        })
    }

    /// Fills in what Docker shows for unset policies (`insertDefaults=true`).
    pub fn insert_defaults(&mut self) {
        let policy = || UpdateConfig {
            parallelism: 1,
            delay: 0,
            failure_action: "pause".into(),
            monitor: 5_000_000_000,
            max_failure_ratio: 0.0,
            order: "stop-first".into(),
        };
        self.update_config.get_or_insert_with(policy);
        self.rollback_config.get_or_insert_with(policy);
        let restart = self
            .task_template
            .restart_policy
            .get_or_insert_with(Default::default);
        if restart.condition.is_empty() {
            restart.condition = "any".into();
        }
        restart.delay.get_or_insert(5_000_000_000);
        restart.max_attempts.get_or_insert(0);
        if let Some(c) = self.task_template.container_spec.as_mut() {
            c.stop_grace_period.get_or_insert(10_000_000_000);
        }
        self.endpoint_spec.get_or_insert_with(|| EndpointSpec {
            mode: "vip".into(),
            ports: Vec::new(),
        });
    }
}

/// `Endpoint.VirtualIPs[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VirtualIp {
    /// The network.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// CIDR.
    pub addr: String,
}

/// `Service.Endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    /// What was asked.
    pub spec: EndpointSpec,
    /// The ports as allocated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// Virtual IPs per network.
    #[serde(rename = "VirtualIPs", skip_serializing_if = "Vec::is_empty")]
    pub virtual_ips: Vec<VirtualIp>,
}

/// `Service.UpdateStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStatus {
    /// "updating", "paused", "completed", "rollback_started", ...
    pub state: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub completed_at: String,
    /// Why.
    pub message: String,
}

/// `Service.ServiceStatus` (`status=true`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceStatus {
    /// Tasks running.
    pub running_tasks: u64,
    /// Tasks wanted.
    pub desired_tasks: u64,
    /// Jobs: tasks completed.
    pub completed_tasks: u64,
}

/// `Service.JobStatus.JobIteration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStatus {
    /// The iteration.
    pub job_iteration: Version,
    /// When it last ran.
    pub last_execution: String,
}

/// `Service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Version.
    pub version: Version,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// The spec.
    pub spec: ServiceSpec,
    /// The spec before the last update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<ServiceSpec>,
    /// Ports and virtual IPs.
    pub endpoint: Endpoint,
    /// The last rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// Task counts (`status=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_status: Option<ServiceStatus>,
    /// Jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
}

impl Service {
    /// The Docker view of a service (registry credentials are never shown).
    pub fn from_proto(s: &proto::Service) -> Self {
        let (id, version, created_at, updated_at) = meta(&s.meta);
        let endpoint = s.endpoint.clone().unwrap_or_default();
        let spec = s.spec.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            spec: ServiceSpec::from_proto(&spec),
            previous_spec: s.previous_spec.as_ref().map(ServiceSpec::from_proto),
            endpoint: Endpoint {
                spec: EndpointSpec::from_proto(
                    &endpoint.spec.or(spec.endpoint).unwrap_or_default(),
                ),
                ports: endpoint.ports.iter().map(PortConfig::from_proto).collect(),
                virtual_ips: endpoint
                    .virtual_ips
                    .iter()
                    .map(|v| VirtualIp {
                        network_id: v.network_id.clone(),
                        addr: v.addr.clone(),
                    })
                    .collect(),
            },
            update_status: s
                .update_status
                .as_ref()
                .filter(|u| u.state != proto::UpdateState::Unknown as i32)
                .map(|u| UpdateStatus {
                    state: match proto::UpdateState::try_from(u.state) {
                        Ok(proto::UpdateState::Updating) => "updating",
                        Ok(proto::UpdateState::Paused) => "paused",
                        Ok(proto::UpdateState::Completed) => "completed",
                        Ok(proto::UpdateState::RollbackStarted) => "rollback_started",
                        Ok(proto::UpdateState::RollbackPaused) => "rollback_paused",
                        Ok(proto::UpdateState::RollbackCompleted) => "rollback_completed",
                        _ => "",
                    }
                    .into(),
                    started_at: time(u.started_at),
                    completed_at: time(u.completed_at),
                    message: u.message.clone(),
                }),
            service_status: None,
            job_status: s.job_status.map(|j| JobStatus {
                job_iteration: Version {
                    index: j.job_iteration,
                },
                last_execution: time(j.last_execution),
            }),
        }
    }
}

/// `POST /services/create`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateResponse {
    /// The new service's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Always empty.
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    fn spec() -> proto::ServiceSpec {
        proto::ServiceSpec {
            name: "web".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            task_template: Some(proto::TaskSpec {
                container: Some(proto::ContainerSpec {
                    image: "busybox".into(),
                    args: vec!["sleep".into(), "60".into()],
                    env: vec!["A=1".into()],
                    stop_grace_period_ms: Some(3000),
                    mounts: vec![proto::Mount {
                        r#type: proto::MountType::Tmpfs as i32,
                        target: "/t".into(),
                        tmpfs_size_bytes: 4096,
                        ..Default::default()
                    }],
                    healthcheck: Some(proto::HealthConfig {
                        test: vec!["CMD".into(), "true".into()],
                        interval_ms: 1000,
                        retries: 3,
                        start_interval_ms: 250,
                        ..Default::default()
                    }),
                    secrets: vec![proto::SecretReference {
                        secret_id: "s1".into(),
                        secret_name: "pw".into(),
                        target: "pw".into(),
                        mode: 0o444,
                        ..Default::default()
                    }],
                    ulimits: vec![proto::Ulimit {
                        name: "nofile".into(),
                        soft: 1024,
                        hard: 2048,
                    }],
                    cap_add: vec!["CAP_NET_ADMIN".into()],
                    cap_drop: vec!["CAP_MKNOD".into()],
                    sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
                    init: true,
                    dns_config: Some(proto::DnsConfig {
                        nameservers: vec!["10.0.0.2".into()],
                        search: vec!["example.org".into()],
                        options: vec!["ndots:2".into()],
                    }),
                    hosts: vec!["10.0.0.9 db".into()],
                    groups: vec!["audio".into()],
                    tty: true,
                    oom_score_adj: -500,
                    ..Default::default()
                }),
                resources: Some(proto::ResourceRequirements {
                    limits: Some(proto::Resources {
                        nano_cpus: 500_000_000,
                        memory_bytes: 1 << 26,
                        ..Default::default()
                    }),
                    reservations: None,
                }),
                restart: Some(proto::RestartPolicy {
                    condition: proto::RestartCondition::OnFailure as i32,
                    delay_ms: Some(2000),
                    max_attempts: 3,
                    window_ms: 0,
                }),
                placement: Some(proto::Placement {
                    constraints: vec!["node.role==worker".into()],
                    ..Default::default()
                }),
                networks: vec![proto::NetworkAttachmentConfig {
                    target: "net1".into(),
                    aliases: vec!["w".into()],
                }],
                force_update: 2,
                log_driver: Some(proto::LogDriver {
                    name: "json-file".into(),
                    options: [("max-size".to_string(), "1m".to_string())].into(),
                }),
            }),
            mode: Some(ProtoMode::Replicated(proto::ReplicatedService {
                replicas: 3,
            })),
            update_config: Some(proto::UpdateConfig {
                parallelism: Some(2),
                delay_ms: 1000,
                failure_action: proto::FailureAction::Rollback as i32,
                monitor_ms: Some(4000),
                max_failure_ratio: 0.5,
                order: proto::UpdateOrder::StartFirst as i32,
            }),
            rollback_config: None,
            endpoint: Some(proto::EndpointSpec {
                mode: proto::ResolutionMode::Vip as i32,
                ports: vec![proto::PortConfig {
                    protocol: proto::PortProtocol::Tcp as i32,
                    target_port: 80,
                    published_port: 8080,
                    ..Default::default()
                }],
            }),
        }
    }

    #[test]
    fn a_service_spec_round_trips_through_dockers_json() {
        let proto_spec = spec();
        let docker = ServiceSpec::from_proto(&proto_spec);
        let json = serde_json::to_value(&docker).unwrap();
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(
            json["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
            3_000_000_000i64
        );
        assert_eq!(json["UpdateConfig"]["Order"], "start-first");
        let c = &json["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Init"], true);
        assert_eq!(c["TTY"], true);
        assert_eq!(c["Groups"], serde_json::json!(["audio"]));
        assert_eq!(c["Hosts"], serde_json::json!(["10.0.0.9 db"]));
        assert_eq!(
            c["DNSConfig"],
            serde_json::json!({"Nameservers": ["10.0.0.2"], "Search": ["example.org"],
                "Options": ["ndots:2"]})
        );
        assert_eq!(c["Sysctls"]["net.core.somaxconn"], "1024");
        assert_eq!(c["CapabilityAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
        assert_eq!(c["CapabilityDrop"], serde_json::json!(["CAP_MKNOD"]));
        assert_eq!(
            c["Ulimits"],
            serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
        );
        assert_eq!(c["OomScoreAdj"], -500);
        assert_eq!(c["Healthcheck"]["StartInterval"], 250_000_000i64);
        assert_eq!(
            json["TaskTemplate"]["LogDriver"],
            serde_json::json!({"Name": "json-file", "Options": {"max-size": "1m"}})
        );
        let back: ServiceSpec = decode::value_as(json).unwrap();
        assert_eq!(back, docker);
        assert_eq!(back.to_proto().unwrap(), proto_spec);
    }

    #[test]
    fn a_service_round_trips_and_never_shows_registry_credentials() {
        let mut spec = spec();
        spec.task_template
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap()
            .registry_auth = "REGISTRY-SECRET".into();
        let service = proto::Service {
            meta: Some(proto::Meta {
                id: "s1".into(),
                version: 9,
                ..Default::default()
            }),
            spec: Some(spec),
            update_status: Some(proto::UpdateStatus {
                state: proto::UpdateState::RollbackStarted as i32,
                message: "manually requested rollback".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let docker = Service::from_proto(&service);
        let text = serde_json::to_string(&docker).unwrap();
        assert!(!text.contains("REGISTRY-SECRET"), "{text}");
        let back: Service = decode::value_as(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, docker);
        assert_eq!(back.update_status.unwrap().state, "rollback_started");
    }

    #[test]
    fn what_a_go_client_sends_unset_is_taken_and_unsupported_settings_are_refused() {
        // As docker 28 sends a minimal `service create`.
        let minimal = serde_json::json!({
            "Name": "web", "Labels": {},
            "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Init": false, "TTY": false,
                "DNSConfig": {}, "Isolation": "default", "Privileges": {"CredentialSpec": null,
                "SELinuxContext": null, "NoNewPrivileges": false}},
                "Resources": {"Limits": {}, "Reservations": {}}, "Placement": {}, "ForceUpdate": 0},
            "Mode": {"Replicated": {}},
            "EndpointSpec": {"Mode": "vip"}
        });
        let spec: ServiceSpec = decode::value_as(minimal).unwrap();
        let p = spec.to_proto().unwrap();
        assert_eq!(
            p.mode,
            Some(ProtoMode::Replicated(proto::ReplicatedService {
                replicas: 1
            }))
        );
        let c = p
            .task_template
            .as_ref()
            .unwrap()
            .container
            .as_ref()
            .unwrap();
        assert_eq!((c.init, c.tty, &c.dns_config), (false, false, &None));
        assert_eq!(p.task_template.as_ref().unwrap().log_driver, None);
        for (field, value) in [
            ("OpenStdin", serde_json::json!(true)),
            ("Privileges", serde_json::json!({"NoNewPrivileges": true})),
        ] {
            let mut container = serde_json::json!({"Image": "busybox"});
            container[field] = value;
            let body = serde_json::json!({
                "Name": "web",
                "TaskTemplate": {"ContainerSpec": container}
            });
            let spec: ServiceSpec = decode::value_as(body).unwrap();
            let e = spec.to_proto().unwrap_err();
            assert!(
                e.message.starts_with(&format!(
                    "TaskTemplate.ContainerSpec.{field} is not supported"
                )),
                "{e}"
            );
        }
        let body = serde_json::json!({"Name": "w", "TaskTemplate": {"ContainerSpec": {"Image": "b"}},
            "Mode": {"Replicated": {"Replicas": 1}, "Global": {}}});
        let spec: ServiceSpec = decode::value_as(body).unwrap();
        assert!(spec.to_proto().is_err());
    }

    #[test]
    fn insert_defaults_shows_dockers_policies() {
        let mut spec = ServiceSpec::from_proto(&proto::ServiceSpec {
            name: "w".into(),
            ..Default::default()
        });
        spec.insert_defaults();
        assert_eq!(spec.update_config.as_ref().unwrap().parallelism, 1);
        assert_eq!(spec.update_config.as_ref().unwrap().monitor, 5_000_000_000);
        assert_eq!(
            spec.task_template
                .restart_policy
                .as_ref()
                .unwrap()
                .condition,
            "any"
        );
    }
}
