//! The part of the Compose Specification that Swarm deploys, read from the merged and
//! interpolated YAML tree into types, with every value checked where it is read: an error
//! names its path (`services.web.deploy.replicas: ...`), so a user finds the line.
//!
//! Keys that Swarm ignores (or that skiff cannot honour yet) are collected for one warning
//! line and left out; keys the Compose Specification does not have are refused, since a
//! typo (`replicaz`) would otherwise deploy something else than meant. `x-` keys are the
//! user's own and pass silently.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proto::{
    HealthConfig, Mount, MountType, PlacementPreference, PortConfig, PortProtocol, PublishMode,
    ResolutionMode, RestartCondition, RestartPolicy, UpdateConfig,
};
use yaml_serde::{Mapping, Value};

use super::load::interpolate::Variables;
use crate::client::duration;
use crate::client::service::parse;

/// A Compose file as Swarm reads it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stack {
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, External>,
    pub secrets: BTreeMap<String, FileObject>,
    pub configs: BTreeMap<String, FileObject>,
    /// Keys left out, for one warning line.
    pub ignored: BTreeSet<String>,
}

/// A top-level network.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Network {
    pub external: External,
    pub attachable: bool,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub subnets: Vec<proto::IpamConfig>,
    pub driver_opts: BTreeMap<String, String>,
}

/// Whether an object is the stack's own or made elsewhere, and the name it has in the
/// cluster when the file gives one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct External {
    pub external: bool,
    pub name: Option<String>,
}

/// A top-level secret or config.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileObject {
    pub external: External,
    /// The file its data comes from (relative to the first Compose file's directory).
    pub file: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
}

/// A service.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Service {
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// `KEY=VALUE`, sorted by key, `env_file` first and `environment` over it (the files
    /// are read by `translate`).
    pub environment: BTreeMap<String, String>,
    pub env_files: Vec<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortConfig>,
    /// Network keys with their extra aliases; empty when the service names none.
    pub networks: Vec<(String, Vec<String>)>,
    /// Mounts, a named volume's source still its key in the file.
    pub volumes: Vec<Mount>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    pub healthcheck: Option<HealthConfig>,
    pub stop_grace_period_ms: Option<u64>,
    pub stop_signal: String,
    pub user: String,
    pub working_dir: String,
    pub hostname: String,
    pub read_only: bool,
    pub options: ContainerOptions,
    pub deploy: Deploy,
}

/// The container options Swarm passes on (`cap_add`, `sysctls`, `ulimits`, `dns`, ...):
/// checked by the manager's own rules (`proto::container_options`) at deploy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ContainerOptions {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<proto::Ulimit>,
    pub init: bool,
    pub dns: Option<proto::DnsConfig>,
    /// `IP NAME` lines.
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    pub tty: bool,
    pub oom_score_adj: i64,
    pub log_driver: Option<proto::LogDriver>,
}

/// A service's reference to a secret or config.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileRef {
    pub source: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

/// The service's mode as Compose names it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

/// A service's `deploy` section.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Deploy {
    pub mode: Mode,
    pub replicas: Option<u64>,
    pub endpoint_mode: Option<ResolutionMode>,
    pub labels: BTreeMap<String, String>,
    pub constraints: Vec<String>,
    pub preferences: Vec<PlacementPreference>,
    pub max_replicas_per_node: u64,
    pub limits: Option<proto::Resources>,
    pub reservations: Option<proto::Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
}

/// What reading a file may say: an error with its path.
pub type Result<T> = std::result::Result<T, String>;

/// Service keys Swarm ignores (or skiff cannot honour yet): left out with a warning.
const IGNORED_SERVICE_KEYS: &[&str] = &[
    "build",
    "cgroup",
    "cgroup_parent",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "device_cgroup_rules",
    "devices",
    "domainname",
    "expose",
    "extends",
    "external_links",
    "ipc",
    "isolation",
    "links",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "oom_kill_disable",
    "pid",
    "pids_limit",
    "platform",
    "privileged",
    "profiles",
    "pull_policy",
    "restart",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "tmpfs",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// A mapping's keys, checked: known ones returned, ignored ones noted, others refused.
struct Fields<'a> {
    path: String,
    known: BTreeMap<&'a str, &'a Value>,
}

impl<'a> Fields<'a> {
    fn read(
        value: &'a Value,
        path: &str,
        known: &[&str],
        ignored: &[&str],
        noted: &mut BTreeSet<String>,
    ) -> Result<Fields<'a>> {
        let map = mapping(value, path)?;
        let mut fields = Fields {
            path: path.to_string(),
            known: BTreeMap::new(),
        };
        for (k, v) in map {
            let key = k
                .as_str()
                .ok_or_else(|| format!("{path}: every key must be a string"))?;
            if known.contains(&key) {
                fields.known.insert(key, v);
            } else if ignored.contains(&key) {
                noted.insert(key.to_string());
            } else if !key.starts_with("x-") {
                return Err(format!(
                    "{}: unknown key; check its spelling (the keys here are {})",
                    join(path, key),
                    known.join(", ")
                ));
            }
        }
        Ok(fields)
    }

    fn get(&self, key: &str) -> Option<(&'a Value, String)> {
        self.known
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (*v, join(&self.path, key)))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn mapping<'a>(value: &'a Value, path: &str) -> Result<&'a Mapping> {
    match value {
        Value::Mapping(m) => Ok(m),
        _ => Err(format!("{path}: expected a mapping (KEY: VALUE lines)")),
    }
}

/// A scalar as text (numbers and booleans as written).
fn string(value: &Value, path: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{path}: expected a string")),
    }
}

fn number(value: &Value, path: &str) -> Result<u64> {
    let text = string(value, path)?;
    text.trim()
        .parse()
        .map_err(|_| format!("{path}: {text:?} is not a whole number, 0 or more"))
}

fn boolean(value: &Value, path: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(format!("{path}: expected true or false")),
    }
}

fn duration_ms(value: &Value, path: &str) -> Result<u64> {
    let text = string(value, path)?;
    reuse(path, "FLAG", duration::parse_flag_ms("FLAG", &text))
}

/// A parser of flag values used for a key: its error without the flag, after the path.
fn reuse<T>(path: &str, flag: &str, r: anyhow::Result<T>) -> Result<T> {
    r.map_err(|e| {
        format!(
            "{path}: {}",
            e.to_string().replace(&format!(" for {flag}"), "")
        )
    })
}

fn strings(value: &Value, path: &str) -> Result<Vec<String>> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, &format!("{path}[{i}]")))
            .collect(),
        _ => Err(format!("{path}: expected a list")),
    }
}

/// A command: a list, or a string split as a shell would.
fn command(value: &Value, path: &str) -> Result<Vec<String>> {
    match value {
        Value::Sequence(_) => strings(value, path),
        _ => {
            let text = string(value, path)?;
            reuse(path, "FLAG", parse::shell_words("FLAG", &text))
        }
    }
}

/// A map written as a mapping or as `KEY=VALUE` items; a bare `KEY` (or a null value) is
/// `None`.
fn key_values(value: &Value, path: &str) -> Result<Vec<(String, Option<String>)>> {
    match value {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let key = string(k, path)?;
                let v = match v {
                    Value::Null => None,
                    v => Some(string(v, &join(path, &key))?),
                };
                Ok((key, v))
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let item = string(v, &format!("{path}[{i}]"))?;
                Ok(match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
            })
            .collect(),
        _ => Err(format!(
            "{path}: expected a mapping or a list of KEY=VALUE items"
        )),
    }
}

fn labels(value: &Value, path: &str) -> Result<BTreeMap<String, String>> {
    Ok(key_values(value, path)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn external(fields: &Fields<'_>, noted: &mut BTreeSet<String>) -> Result<External> {
    let mut e = External::default();
    if let Some((v, path)) = fields.get("external") {
        match v {
            // The old form `external: {name: X}`.
            Value::Mapping(_) => {
                let f = Fields::read(v, &path, &["name"], &[], noted)?;
                e.external = true;
                if let Some((n, p)) = f.get("name") {
                    e.name = Some(string(n, &p)?);
                }
            }
            v => e.external = boolean(v, &path)?,
        }
    }
    if let Some((v, path)) = fields.get("name") {
        e.name = Some(string(v, &path)?);
    }
    Ok(e)
}

/// Reads the merged tree. `dir` is the first file's directory (relative paths start
/// there), `vars` the variables (a bare `KEY` in `environment` takes its value there).
pub fn read(tree: &Value, dir: &Path, vars: &Variables) -> Result<Stack> {
    let mut stack = Stack::default();
    let noted = &mut stack.ignored;
    let top = Fields::read(
        tree,
        "",
        &[
            "version", "name", "services", "networks", "volumes", "secrets", "configs",
        ],
        &[],
        noted,
    )
    .map_err(|e| e.replace(": unknown key", ": unknown top-level key"))?;
    if let Some((v, path)) = top.get("networks") {
        for (k, v) in mapping(v, &path)? {
            let name = string(k, &path)?;
            let p = join(&path, &name);
            stack.networks.insert(name, network(v, &p, noted)?);
        }
    }
    if let Some((v, path)) = top.get("volumes") {
        for (k, v) in mapping(v, &path)? {
            let name = string(k, &path)?;
            let p = join(&path, &name);
            let f = match v {
                Value::Null => None,
                v => Some(Fields::read(
                    v,
                    &p,
                    &["external", "name", "driver", "labels"],
                    &["driver_opts"],
                    noted,
                )?),
            };
            let mut ext = External::default();
            if let Some(f) = &f {
                ext = external(f, noted)?;
                if let Some((d, dp)) = f.get("driver") {
                    let d = string(d, &dp)?;
                    if d != "local" {
                        return Err(format!("{dp}: skiff's volumes are local to each node; use driver local or leave driver out"));
                    }
                }
            }
            stack.volumes.insert(name, ext);
        }
    }
    for (key, target) in [
        ("secrets", &mut stack.secrets),
        ("configs", &mut stack.configs),
    ] {
        if let Some((v, path)) = top.get(key) {
            for (k, v) in mapping(v, &path)? {
                let name = string(k, &path)?;
                let p = join(&path, &name);
                target.insert(name, file_object(v, &p, dir, noted)?);
            }
        }
    }
    let Some((services, path)) = top.get("services") else {
        return Err("the file defines no services: add a services section".into());
    };
    for (k, v) in mapping(services, &path)? {
        let name = string(k, &path)?;
        let p = join(&path, &name);
        if !valid_name(&name) {
            return Err(format!("{p}: invalid service name; use letters, digits, '-', '_' or '.', starting with a letter or digit"));
        }
        let s = service(v, &p, dir, vars, noted)?;
        stack.services.insert(name, s);
    }
    if stack.services.is_empty() {
        return Err("services: the file defines no services; add at least one".into());
    }
    check_references(&stack)?;
    Ok(stack)
}

/// `rel` from `dir`, without the `.` components a `./` path leaves inside.
fn relative_to(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel).components().collect()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn network(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<Network> {
    if v.is_null() {
        return Ok(Network::default());
    }
    let f = Fields::read(
        v,
        path,
        &[
            "driver",
            "attachable",
            "internal",
            "external",
            "name",
            "labels",
            "ipam",
            "driver_opts",
        ],
        &["enable_ipv6"],
        noted,
    )?;
    let mut n = Network {
        external: external(&f, noted)?,
        ..Default::default()
    };
    if let Some((d, p)) = f.get("driver") {
        let d = string(d, &p)?;
        if d != "overlay" {
            return Err(format!(
                "{p}: a stack's networks are overlay networks; use driver overlay or leave driver out"
            ));
        }
    }
    if let Some((v, p)) = f.get("attachable") {
        n.attachable = boolean(v, &p)?;
    }
    if let Some((v, p)) = f.get("internal") {
        n.internal = boolean(v, &p)?;
    }
    if let Some((v, p)) = f.get("labels") {
        n.labels = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("driver_opts") {
        n.driver_opts = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("ipam") {
        let ipam = Fields::read(v, &p, &["driver", "config"], &["options"], noted)?;
        if let Some((d, dp)) = ipam.get("driver") {
            if string(d, &dp)? != "default" {
                return Err(format!(
                    "{dp}: only the default IPAM driver is supported; leave driver out"
                ));
            }
        }
        if let Some((c, cp)) = ipam.get("config") {
            let Value::Sequence(items) = c else {
                return Err(format!("{cp}: expected a list of subnets"));
            };
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{cp}[{i}]");
                let f = Fields::read(
                    item,
                    &ip,
                    &["subnet", "gateway", "ip_range"],
                    &["aux_addresses"],
                    noted,
                )?;
                let get = |k: &str| -> Result<String> {
                    f.get(k).map_or(Ok(String::new()), |(v, p)| string(v, &p))
                };
                n.subnets.push(proto::IpamConfig {
                    subnet: get("subnet")?,
                    gateway: get("gateway")?,
                    range: get("ip_range")?,
                });
            }
        }
    }
    Ok(n)
}

fn file_object(
    v: &Value,
    path: &str,
    dir: &Path,
    noted: &mut BTreeSet<String>,
) -> Result<FileObject> {
    let f = Fields::read(
        v,
        path,
        &["file", "external", "name", "labels"],
        &["driver", "driver_opts", "template_driver"],
        noted,
    )?;
    let mut o = FileObject {
        external: external(&f, noted)?,
        ..Default::default()
    };
    if let Some((v, p)) = f.get("labels") {
        o.labels = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("file") {
        o.file = Some(relative_to(dir, &string(v, &p)?));
    }
    if o.external.external && o.file.is_some() {
        return Err(format!(
            "{path}: an external object has no file; remove file or external"
        ));
    }
    if !o.external.external && o.file.is_none() {
        return Err(format!(
            "{path}: give the file its data comes from (file: ./PATH), or mark it external: true"
        ));
    }
    Ok(o)
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "cap_add",
    "cap_drop",
    "sysctls",
    "ulimits",
    "init",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "group_add",
    "tty",
    "oom_score_adj",
    "logging",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "ports",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "healthcheck",
    "stop_grace_period",
    "stop_signal",
    "user",
    "working_dir",
    "hostname",
    "read_only",
    "deploy",
];

fn service(
    v: &Value,
    path: &str,
    dir: &Path,
    vars: &Variables,
    noted: &mut BTreeSet<String>,
) -> Result<Service> {
    let f = Fields::read(v, path, SERVICE_KEYS, IGNORED_SERVICE_KEYS, noted)?;
    let mut s = Service::default();
    match f.get("image") {
        Some((v, p)) => s.image = string(v, &p)?,
        None => {
            return Err(format!(
                "{}: a service needs the image to run (skiff does not build images)",
                join(path, "image")
            ))
        }
    }
    if s.image.trim().is_empty() || s.image.chars().any(char::is_whitespace) {
        return Err(format!(
            "{}: invalid image {:?}; an image reference has no spaces, e.g. nginx:alpine",
            join(path, "image"),
            s.image
        ));
    }
    if let Some((v, p)) = f.get("entrypoint") {
        s.entrypoint = Some(command(v, &p)?);
    }
    if let Some((v, p)) = f.get("command") {
        s.command = Some(command(v, &p)?);
    }
    if let Some((v, p)) = f.get("env_file") {
        let files = match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| env_file(v, &format!("{p}[{i}]"), noted))
                .collect::<Result<Vec<_>>>()?,
            v => vec![env_file(v, &p, noted)?],
        };
        s.env_files = files.into_iter().map(|f| relative_to(dir, &f)).collect();
    }
    if let Some((v, p)) = f.get("environment") {
        for (k, value) in key_values(v, &p)? {
            // A bare KEY takes this shell's value, and is left out when it has none.
            if let Some(value) = value.or_else(|| vars.get(&k).cloned()) {
                s.environment.insert(k, value);
            }
        }
    }
    if let Some((v, p)) = f.get("labels") {
        s.labels = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("ports") {
        let Value::Sequence(items) = v else {
            return Err(format!("{p}: expected a list of ports"));
        };
        for (i, item) in items.iter().enumerate() {
            s.ports.extend(port(item, &format!("{p}[{i}]"), noted)?);
        }
    }
    if let Some((v, p)) = f.get("networks") {
        s.networks = service_networks(v, &p, noted)?;
    }
    if let Some((v, p)) = f.get("volumes") {
        let Value::Sequence(items) = v else {
            return Err(format!("{p}: expected a list of volumes"));
        };
        for (i, item) in items.iter().enumerate() {
            s.volumes
                .push(volume(item, &format!("{p}[{i}]"), dir, noted)?);
        }
    }
    for (key, target) in [("secrets", &mut s.secrets), ("configs", &mut s.configs)] {
        if let Some((v, p)) = f.get(key) {
            let Value::Sequence(items) = v else {
                return Err(format!("{p}: expected a list"));
            };
            for (i, item) in items.iter().enumerate() {
                target.push(file_ref(item, &format!("{p}[{i}]"), noted)?);
            }
        }
    }
    if let Some((v, p)) = f.get("healthcheck") {
        s.healthcheck = Some(healthcheck(v, &p, noted)?);
    }
    if let Some((v, p)) = f.get("stop_grace_period") {
        s.stop_grace_period_ms = Some(duration_ms(v, &p)?);
    }
    if let Some((v, p)) = f.get("stop_signal") {
        s.stop_signal = reuse(&p, "FLAG", parse::signal(&string(v, &p)?))?;
    }
    for (key, target) in [
        ("user", &mut s.user),
        ("working_dir", &mut s.working_dir),
        ("hostname", &mut s.hostname),
    ] {
        if let Some((v, p)) = f.get(key) {
            *target = string(v, &p)?;
        }
    }
    if let Some((v, p)) = f.get("read_only") {
        s.read_only = boolean(v, &p)?;
    }
    s.options = container_options(&f, noted)?;
    if let Some((v, p)) = f.get("deploy") {
        s.deploy = deploy(v, &p, noted)?;
    }
    Ok(s)
}

/// A string or a list of strings.
fn one_or_more(value: &Value, path: &str) -> Result<Vec<String>> {
    match value {
        Value::Sequence(_) => strings(value, path),
        v => Ok(vec![string(v, path)?]),
    }
}

fn container_options(f: &Fields<'_>, noted: &mut BTreeSet<String>) -> Result<ContainerOptions> {
    let mut o = ContainerOptions::default();
    for (key, target) in [("cap_add", &mut o.cap_add), ("cap_drop", &mut o.cap_drop)] {
        if let Some((v, p)) = f.get(key) {
            for (i, name) in strings(v, &p)?.iter().enumerate() {
                let ip = format!("{p}[{i}]");
                target.push(
                    proto::container_options::normalize_capability("FLAG", name)
                        .map_err(|e| format!("{ip}: {}", e.replace(" for FLAG", "")))?,
                );
            }
        }
    }
    if let Some((v, p)) = f.get("sysctls") {
        o.sysctls = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("ulimits") {
        for (k, limit) in mapping(v, &p)? {
            let name = string(k, &p)?;
            let lp = join(&p, &name);
            let (soft, hard) = match limit {
                Value::Mapping(_) => {
                    let lf = Fields::read(limit, &lp, &["soft", "hard"], &[], noted)?;
                    let get = |k: &str| -> Result<String> {
                        lf.get(k)
                            .map(|(v, p)| string(v, &p))
                            .unwrap_or_else(|| Err(format!("{lp}: give both soft and hard")))
                    };
                    (get("soft")?, get("hard")?)
                }
                v => {
                    let n = string(v, &lp)?;
                    (n.clone(), n)
                }
            };
            o.ulimits.push(
                proto::container_options::parse_ulimit("FLAG", &format!("{name}={soft}:{hard}"))
                    .map_err(|e| format!("{lp}: {}", e.replace(" for FLAG", "")))?,
            );
        }
    }
    if let Some((v, p)) = f.get("init") {
        o.init = boolean(v, &p)?;
    }
    if let Some((v, p)) = f.get("tty") {
        o.tty = boolean(v, &p)?;
    }
    if let Some((v, p)) = f.get("oom_score_adj") {
        let text = string(v, &p)?;
        o.oom_score_adj = text
            .trim()
            .parse()
            .map_err(|_| format!("{p}: {text:?} is not a whole number from -1000 to 1000"))?;
    }
    let mut dns = proto::DnsConfig::default();
    for (key, target) in [
        ("dns", &mut dns.nameservers),
        ("dns_search", &mut dns.search),
        ("dns_opt", &mut dns.options),
    ] {
        if let Some((v, p)) = f.get(key) {
            *target = one_or_more(v, &p)?;
        }
    }
    o.dns = (dns != proto::DnsConfig::default()).then_some(dns);
    if let Some((v, p)) = f.get("extra_hosts") {
        let entries: Vec<(String, String)> = match v {
            Value::Mapping(_) => key_values(v, &p)?
                .into_iter()
                .map(|(k, ip)| (k.clone(), format!("{k}:{}", ip.unwrap_or_default())))
                .collect(),
            _ => strings(v, &p)?
                .into_iter()
                .enumerate()
                .map(|(i, e)| (format!("[{i}]"), e))
                .collect(),
        };
        for (at, entry) in entries {
            let ep = if at.starts_with('[') {
                format!("{p}{at}")
            } else {
                join(&p, &at)
            };
            o.hosts.push(
                proto::container_options::parse_host("FLAG", &entry)
                    .map_err(|e| format!("{ep}: {}", e.replace(" for FLAG", "")))?,
            );
        }
    }
    if let Some((v, p)) = f.get("group_add") {
        o.groups = strings(v, &p)?;
    }
    if let Some((v, p)) = f.get("logging") {
        let lf = Fields::read(v, &p, &["driver", "options"], &[], noted)?;
        let (d, dp) = lf
            .get("driver")
            .ok_or_else(|| format!("{p}: give the driver (driver: json-file)"))?;
        let mut driver = proto::LogDriver {
            name: string(d, &dp)?,
            ..Default::default()
        };
        if let Some((opts, op)) = lf.get("options") {
            driver.options = labels(opts, &op)?.into_iter().collect();
        }
        o.log_driver = Some(driver);
    }
    Ok(o)
}

fn env_file(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<String> {
    match v {
        Value::Mapping(_) => {
            let f = Fields::read(v, path, &["path"], &["required", "format"], noted)?;
            let (p, pp) = f
                .get("path")
                .ok_or_else(|| format!("{path}: give the file's path (path: ./FILE)"))?;
            string(p, &pp)
        }
        v => string(v, path),
    }
}

fn port(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<Vec<PortConfig>> {
    if let Value::Mapping(_) = v {
        let f = Fields::read(
            v,
            path,
            &["target", "published", "protocol", "mode", "name"],
            &["host_ip", "app_protocol"],
            noted,
        )?;
        let (t, tp) = f
            .get("target")
            .ok_or_else(|| format!("{path}: give the container's port (target: 80)"))?;
        let mut p = PortConfig {
            target_port: u32::try_from(number(t, &tp)?).unwrap_or(u32::MAX),
            ..Default::default()
        };
        if let Some((v, pp)) = f.get("published") {
            p.published_port = u32::try_from(number(v, &pp)?).unwrap_or(u32::MAX);
        }
        if let Some((v, pp)) = f.get("protocol") {
            p.protocol = match string(v, &pp)?.as_str() {
                "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                "sctp" => PortProtocol::Sctp,
                other => return Err(format!("{pp}: unknown protocol {other:?}; use tcp or udp")),
            } as i32;
        }
        if let Some((v, pp)) = f.get("mode") {
            p.publish_mode = match string(v, &pp)?.as_str() {
                "ingress" => PublishMode::Ingress,
                "host" => PublishMode::Host,
                other => return Err(format!("{pp}: unknown mode {other:?}; use ingress or host")),
            } as i32;
        }
        if let Some((v, pp)) = f.get("name") {
            p.name = string(v, &pp)?;
        }
        if p.target_port == 0 || p.target_port > 65535 || p.published_port > 65535 {
            return Err(format!("{path}: ports are 1 to 65535"));
        }
        return Ok(vec![p]);
    }
    let text = string(v, path)?;
    if text.matches(':').count() > 1 {
        return Err(format!(
            "{path}: {text:?} binds a host address, which Swarm does not; publish PUBLISHED:TARGET"
        ));
    }
    reuse(path, "--publish", parse::publish(&text))
        .map_err(|e| e.replace("invalid port", "invalid port mapping"))
}

fn service_networks(
    v: &Value,
    path: &str,
    noted: &mut BTreeSet<String>,
) -> Result<Vec<(String, Vec<String>)>> {
    match v {
        Value::Sequence(_) => Ok(strings(v, path)?
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let name = string(k, path)?;
                let p = join(path, &name);
                let mut aliases = Vec::new();
                if !v.is_null() {
                    let f = Fields::read(
                        v,
                        &p,
                        &["aliases"],
                        &[
                            "ipv4_address",
                            "ipv6_address",
                            "priority",
                            "link_local_ips",
                            "driver_opts",
                            "mac_address",
                        ],
                        noted,
                    )?;
                    if let Some((a, ap)) = f.get("aliases") {
                        aliases = strings(a, &ap)?;
                    }
                }
                Ok((name, aliases))
            })
            .collect(),
        _ => Err(format!("{path}: expected a list of network names")),
    }
}

fn volume(v: &Value, path: &str, dir: &Path, noted: &mut BTreeSet<String>) -> Result<Mount> {
    let mut m = Mount::default();
    match v {
        Value::Mapping(_) => {
            let f = Fields::read(
                v,
                path,
                &["type", "source", "target", "read_only", "tmpfs"],
                &["bind", "volume", "consistency"],
                noted,
            )?;
            let get = |k: &str| -> Result<String> {
                f.get(k).map_or(Ok(String::new()), |(v, p)| string(v, &p))
            };
            m.r#type = match get("type")?.as_str() {
                "volume" | "" => MountType::Volume,
                "bind" => MountType::Bind,
                "tmpfs" => MountType::Tmpfs,
                other => {
                    return Err(format!(
                        "{}: unknown type {other:?}; use volume, bind or tmpfs",
                        join(path, "type")
                    ))
                }
            } as i32;
            m.source = get("source")?;
            m.target = get("target")?;
            if let Some((v, p)) = f.get("read_only") {
                m.read_only = boolean(v, &p)?;
            }
            if let Some((v, p)) = f.get("tmpfs") {
                let t = Fields::read(v, &p, &["size"], &["mode"], noted)?;
                if let Some((s, sp)) = t.get("size") {
                    let size = reuse(&sp, "FLAG", parse::memory("FLAG", &string(s, &sp)?))?;
                    m.tmpfs_size_bytes = size.max(0) as u64;
                }
            }
        }
        v => {
            let text = string(v, path)?;
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => ("", *target, ""),
                [source, target] => (*source, *target, ""),
                [source, target, mode] => (*source, *target, *mode),
                _ => return Err(format!("{path}: {text:?} is not SOURCE:TARGET[:ro]")),
            };
            for option in mode.split(',').filter(|o| !o.is_empty()) {
                match option {
                    "ro" => m.read_only = true,
                    "rw" => {}
                    "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" => {
                        noted.insert(option.to_string());
                    }
                    other => {
                        return Err(format!(
                            "{path}: unknown volume option {other:?}; use ro or rw"
                        ))
                    }
                }
            }
            let bind =
                source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
            m.r#type = if bind {
                MountType::Bind
            } else {
                MountType::Volume
            } as i32;
            m.source = source.to_string();
            m.target = target.to_string();
        }
    }
    if !m.target.starts_with('/') {
        return Err(format!(
            "{path}: the target must be an absolute path in the container, e.g. /data"
        ));
    }
    match m.r#type() {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(format!("{path}: a bind mount needs the host path as its source"));
            }
            if let Some(rest) = m.source.strip_prefix('~') {
                return Err(format!(
                    "{path}: ~{rest} depends on the user's home; write the host path in full"
                ));
            }
            // Relative to the first file's directory, as Compose.
            if !m.source.starts_with('/') {
                m.source = relative_to(dir, &m.source).display().to_string();
            }
        }
        MountType::Volume if m.source.is_empty() => {
            return Err(format!(
                "{path}: an anonymous volume is not supported; name it (NAME:{}) and declare it under volumes",
                m.target
            ))
        }
        MountType::Tmpfs if !m.source.is_empty() => {
            return Err(format!("{path}: a tmpfs mount has no source; remove it"));
        }
        _ => {}
    }
    Ok(m)
}

fn file_ref(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<FileRef> {
    match v {
        Value::Mapping(_) => {
            let f = Fields::read(
                v,
                path,
                &["source", "target", "uid", "gid", "mode"],
                &[],
                noted,
            )?;
            let (s, sp) = f
                .get("source")
                .ok_or_else(|| format!("{path}: give the source (source: NAME)"))?;
            let mut r = FileRef {
                source: string(s, &sp)?,
                ..Default::default()
            };
            if let Some((v, p)) = f.get("target") {
                r.target = string(v, &p)?;
            }
            for (key, target) in [("uid", &mut r.uid), ("gid", &mut r.gid)] {
                if let Some((v, p)) = f.get(key) {
                    *target = u32::try_from(number(v, &p)?)
                        .map_err(|_| format!("{p}: the ID is too large"))?;
                }
            }
            if let Some((v, p)) = f.get("mode") {
                r.mode = Some(file_mode(v, &p)?);
            }
            Ok(r)
        }
        v => Ok(FileRef {
            source: string(v, path)?,
            ..Default::default()
        }),
    }
}

/// A file mode: `0440` (octal, as written with a leading zero, or `0o440`) or a decimal
/// number.
fn file_mode(v: &Value, path: &str) -> Result<u32> {
    let mode = match v {
        Value::String(s) if s.starts_with('0') => {
            let digits = s.trim_start_matches("0o").trim_start_matches('0');
            u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 8).ok()
        }
        v => number(v, path).ok().and_then(|n| u32::try_from(n).ok()),
    };
    match mode {
        Some(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{path}: invalid file mode; use an octal mode such as 0440"
        )),
    }
}

fn healthcheck(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<HealthConfig> {
    let f = Fields::read(
        v,
        path,
        &[
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ],
        &[],
        noted,
    )?;
    let mut h = HealthConfig::default();
    if let Some((v, p)) = f.get("disable") {
        if boolean(v, &p)? {
            h.test = vec!["NONE".into()];
            return Ok(h);
        }
    }
    if let Some((v, p)) = f.get("test") {
        h.test = match v {
            Value::Sequence(_) => {
                let test = strings(v, &p)?;
                match test.first().map(String::as_str) {
                    Some("CMD" | "CMD-SHELL" | "NONE") => test,
                    _ => {
                        return Err(format!(
                            "{p}: a test list starts with CMD, CMD-SHELL or NONE, e.g. [\"CMD\", \"curl\", \"-f\", \"http://localhost\"]"
                        ))
                    }
                }
            }
            v => vec!["CMD-SHELL".into(), string(v, &p)?],
        };
    }
    for (key, target) in [
        ("interval", &mut h.interval_ms),
        ("timeout", &mut h.timeout_ms),
        ("start_period", &mut h.start_period_ms),
        ("start_interval", &mut h.start_interval_ms),
    ] {
        if let Some((v, p)) = f.get(key) {
            *target = duration_ms(v, &p)?;
        }
    }
    if let Some((v, p)) = f.get("retries") {
        h.retries =
            u32::try_from(number(v, &p)?).map_err(|_| format!("{p}: the number is too large"))?;
    }
    Ok(h)
}

fn deploy(v: &Value, path: &str, noted: &mut BTreeSet<String>) -> Result<Deploy> {
    let f = Fields::read(
        v,
        path,
        &[
            "mode",
            "replicas",
            "endpoint_mode",
            "labels",
            "placement",
            "resources",
            "restart_policy",
            "update_config",
            "rollback_config",
        ],
        &[],
        noted,
    )?;
    let mut d = Deploy::default();
    if let Some((v, p)) = f.get("mode") {
        d.mode = match string(v, &p)?.as_str() {
            "replicated" => Mode::Replicated,
            "global" => Mode::Global,
            "replicated-job" => Mode::ReplicatedJob,
            "global-job" => Mode::GlobalJob,
            other => {
                return Err(format!(
                "{p}: unknown mode {other:?}; use replicated, global, replicated-job or global-job"
            ))
            }
        };
    }
    if let Some((v, p)) = f.get("replicas") {
        if matches!(d.mode, Mode::Global | Mode::GlobalJob) {
            return Err(format!(
                "{p}: a global service runs one task on every eligible node; remove replicas"
            ));
        }
        d.replicas = Some(number(v, &p)?);
    }
    if let Some((v, p)) = f.get("endpoint_mode") {
        d.endpoint_mode = Some(match string(v, &p)?.as_str() {
            "vip" => ResolutionMode::Vip,
            "dnsrr" => ResolutionMode::Dnsrr,
            other => {
                return Err(format!(
                    "{p}: unknown endpoint mode {other:?}; use vip or dnsrr"
                ))
            }
        });
    }
    if let Some((v, p)) = f.get("labels") {
        d.labels = labels(v, &p)?;
    }
    if let Some((v, p)) = f.get("placement") {
        let pf = Fields::read(
            v,
            &p,
            &["constraints", "preferences", "max_replicas_per_node"],
            &[],
            noted,
        )?;
        if let Some((c, cp)) = pf.get("constraints") {
            for (i, expr) in strings(c, &cp)?.iter().enumerate() {
                let ip = format!("{cp}[{i}]");
                d.constraints
                    .push(reuse(&ip, "--constraint", parse::constraint(expr))?);
            }
        }
        if let Some((c, cp)) = pf.get("preferences") {
            let Value::Sequence(items) = c else {
                return Err(format!(
                    "{cp}: expected a list of preferences (- spread: node.labels.zone)"
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{cp}[{i}]");
                let f = Fields::read(item, &ip, &["spread"], &[], noted)?;
                let (s, sp) = f
                    .get("spread")
                    .ok_or_else(|| format!("{ip}: give spread: node.labels.KEY"))?;
                let spread = string(s, &sp)?;
                let spread = reuse(
                    &sp,
                    "--placement-pref",
                    parse::placement_pref(&format!("spread={spread}")),
                )?;
                d.preferences.push(PlacementPreference { spread });
            }
        }
        if let Some((m, mp)) = pf.get("max_replicas_per_node") {
            d.max_replicas_per_node = number(m, &mp)?;
        }
    }
    if let Some((v, p)) = f.get("resources") {
        let rf = Fields::read(v, &p, &["limits", "reservations"], &[], noted)?;
        if let Some((l, lp)) = rf.get("limits") {
            d.limits = Some(resources(l, &lp, true, noted)?);
        }
        if let Some((r, rp)) = rf.get("reservations") {
            d.reservations = Some(resources(r, &rp, false, noted)?);
        }
    }
    if let Some((v, p)) = f.get("restart_policy") {
        let rf = Fields::read(
            v,
            &p,
            &["condition", "delay", "max_attempts", "window"],
            &[],
            noted,
        )?;
        let jobs = matches!(d.mode, Mode::ReplicatedJob | Mode::GlobalJob);
        let mut r = RestartPolicy {
            condition: if jobs {
                RestartCondition::OnFailure
            } else {
                RestartCondition::Any
            } as i32,
            ..Default::default()
        };
        if let Some((c, cp)) = rf.get("condition") {
            let c = reuse(
                &cp,
                "--restart-condition",
                parse::restart_condition(&string(c, &cp)?),
            )?;
            if jobs && c == RestartCondition::Any {
                return Err(format!("{cp}: a job's tasks cannot restart on any exit (a completed task would run again); use on-failure or none"));
            }
            r.condition = c as i32;
        }
        if let Some((v, vp)) = rf.get("delay") {
            r.delay_ms = Some(duration_ms(v, &vp)?);
        }
        if let Some((v, vp)) = rf.get("max_attempts") {
            r.max_attempts = number(v, &vp)?;
        }
        if let Some((v, vp)) = rf.get("window") {
            r.window_ms = duration_ms(v, &vp)?;
        }
        d.restart_policy = Some(r);
    }
    for (key, target) in [
        ("update_config", &mut d.update_config),
        ("rollback_config", &mut d.rollback_config),
    ] {
        if let Some((v, p)) = f.get(key) {
            if matches!(d.mode, Mode::ReplicatedJob | Mode::GlobalJob) {
                return Err(format!(
                    "{p}: a job is not rolled out but runs to completion; remove {key}"
                ));
            }
            *target = Some(update_config(v, &p, key == "rollback_config", noted)?);
        }
    }
    Ok(d)
}

fn resources(
    v: &Value,
    path: &str,
    limits: bool,
    noted: &mut BTreeSet<String>,
) -> Result<proto::Resources> {
    let known: &[&str] = if limits {
        &["cpus", "memory", "pids"]
    } else {
        &["cpus", "memory"]
    };
    let f = Fields::read(v, path, known, &["generic_resources", "devices"], noted)?;
    let mut r = proto::Resources::default();
    if let Some((c, p)) = f.get("cpus") {
        r.nano_cpus = reuse(&p, "FLAG", parse::cpus("FLAG", &string(c, &p)?))?;
    }
    if let Some((m, p)) = f.get("memory") {
        r.memory_bytes = reuse(&p, "FLAG", parse::memory("FLAG", &string(m, &p)?))?;
    }
    if let Some((n, p)) = f.get("pids") {
        r.pids =
            i64::try_from(number(n, &p)?).map_err(|_| format!("{p}: the number is too large"))?;
    }
    Ok(r)
}

fn update_config(
    v: &Value,
    path: &str,
    rollback: bool,
    noted: &mut BTreeSet<String>,
) -> Result<UpdateConfig> {
    let f = Fields::read(
        v,
        path,
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
        &[],
        noted,
    )?;
    let mut c = UpdateConfig::default();
    if let Some((v, p)) = f.get("parallelism") {
        c.parallelism = Some(number(v, &p)?);
    }
    if let Some((v, p)) = f.get("delay") {
        c.delay_ms = duration_ms(v, &p)?;
    }
    if let Some((v, p)) = f.get("monitor") {
        c.monitor_ms = Some(duration_ms(v, &p)?);
    }
    if let Some((v, p)) = f.get("failure_action") {
        c.failure_action = match (string(v, &p)?.as_str(), rollback) {
            ("pause", _) => proto::FailureAction::Pause,
            ("continue", _) => proto::FailureAction::Continue,
            ("rollback", false) => proto::FailureAction::Rollback,
            (other, false) => {
                return Err(format!(
                    "{p}: unknown action {other:?}; use pause, continue or rollback"
                ))
            }
            (other, true) => {
                return Err(format!(
                "{p}: unknown action {other:?}; a rollback's failure action is pause or continue"
            ))
            }
        } as i32;
    }
    if let Some((v, p)) = f.get("max_failure_ratio") {
        let text = string(v, &p)?;
        c.max_failure_ratio = reuse(&p, "FLAG", parse::ratio("FLAG", &text))?;
    }
    if let Some((v, p)) = f.get("order") {
        c.order = match string(v, &p)?.as_str() {
            "stop-first" => proto::UpdateOrder::StopFirst,
            "start-first" => proto::UpdateOrder::StartFirst,
            other => {
                return Err(format!(
                    "{p}: unknown order {other:?}; use stop-first or start-first"
                ))
            }
        } as i32;
    }
    Ok(c)
}

/// Refuses a service's reference to a network, volume, secret or config the file does not
/// declare (as Compose), before anything is created.
fn check_references(stack: &Stack) -> Result<()> {
    for (name, s) in &stack.services {
        let path = format!("services.{name}");
        for (n, _) in &s.networks {
            if n != "default" && !stack.networks.contains_key(n) {
                return Err(format!(
                    "{path}.networks: network {n} is not declared; add it under the top-level networks"
                ));
            }
        }
        for m in s.volumes.iter().filter(|m| m.r#type() == MountType::Volume) {
            if !stack.volumes.contains_key(&m.source) {
                return Err(format!(
                    "{path}.volumes: volume {} is not declared; add it under the top-level volumes",
                    m.source
                ));
            }
        }
        for (what, refs, declared) in [
            ("secret", &s.secrets, &stack.secrets),
            ("config", &s.configs, &stack.configs),
        ] {
            for r in refs {
                if !declared.contains_key(&r.source) {
                    return Err(format!(
                        "{path}.{what}s: {what} {} is not declared; add it under the top-level {what}s",
                        r.source
                    ));
                }
            }
        }
    }
    Ok(())
}
