//! The OCI runtime spec of a task's container: the image's defaults overridden by the task's
//! container spec, Docker's default confinement (namespaces, capabilities, masked paths,
//! devices), the task's mounts and its resource limits.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::image::RunConfig;
use crate::RuntimeError;

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The CPU period limits are expressed against (Docker's: 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Who the container's process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
}

/// What the spec is built from.
pub(crate) struct Inputs<'a> {
    pub task_id: &'a str,
    pub container: &'a proto::ContainerSpec,
    pub limits: Option<&'a proto::Resources>,
    pub image: &'a RunConfig,
    pub user: User,
    /// The task's network namespace; `None` shares the node's.
    pub netns: Option<PathBuf>,
    /// The task's directory, holding `hosts`, `hostname` and `resolv.conf`.
    pub task_dir: &'a Path,
    /// Where named volumes live on this node.
    pub volumes_dir: &'a Path,
    /// The cgroup the container gets (runc's cgroupfs path).
    pub cgroup: String,
    /// The capabilities the task gets (`node::capabilities`: Docker's set changed by
    /// `--cap-add/--cap-drop`, as far as this node can grant them).
    pub capabilities: Vec<String>,
    /// Supplementary groups (`--group`), as numbers.
    pub additional_gids: Vec<u32>,
    /// The node's statically linked init binary, for `--init` (bound at [`INIT_PATH`]).
    pub init: Option<PathBuf>,
    /// The container's hostname ([`hostname`], or the node's with `--network host`).
    pub hostname: String,
}

/// Where a task's init is bound and run from (Docker's path, so images that look for it
/// find it there).
pub(crate) const INIT_PATH: &str = "/sbin/docker-init";

/// The command a container runs: the spec's command replaces the image's entrypoint (and
/// then drops the image's cmd, as Docker does), the spec's args replace the image's cmd.
pub(crate) fn command(container: &proto::ContainerSpec, image: &RunConfig) -> Vec<String> {
    let entrypoint = if container.command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        container.command.clone()
    };
    let args = if !container.args.is_empty() {
        container.args.clone()
    } else if container.command.is_empty() {
        image.cmd.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    entrypoint.into_iter().chain(args).collect()
}

/// The image's environment with the spec's entries on top (same name: the spec wins).
pub(crate) fn environment(
    container: &proto::ContainerSpec,
    image: &RunConfig,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={hostname}"),
    ];
    for entry in image.env.iter().flatten().chain(&container.env) {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(entry.clone());
    }
    env
}

/// The container's hostname: the spec's, or the first 12 characters of the task ID (as a
/// Docker container's short ID).
pub(crate) fn hostname(task_id: &str, container: &proto::ContainerSpec) -> String {
    if container.hostname.is_empty() {
        task_id.chars().take(12).collect()
    } else {
        container.hostname.clone()
    }
}

/// A named volume's directory on this node.
pub(crate) fn volume_dir(volumes_dir: &Path, name: &str) -> Result<PathBuf, RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !name.starts_with(['.', '-']);
    if !ok {
        return Err(RuntimeError::InvalidSpec(format!(
            "volume name '{name}' is not valid: use letters, digits, '_', '.' and '-'"
        )));
    }
    Ok(volumes_dir.join(name).join("_data"))
}

/// The task's secrets and configs, each bound read-only at its target from the task's
/// directory on the node's tmpfs ([`crate::task_files_dir`], as runc sees it), which the
/// worker filled with each reference's owner and mode.
fn task_file_mounts(inputs: &Inputs<'_>) -> Result<Vec<Value>, RuntimeError> {
    crate::task_files(inputs.task_id, inputs.container).map(|files| {
        files
            .into_iter()
            .map(|(source, target)| {
                json!({"destination": target, "type": "bind", "source": source,
                       "options": ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]})
            })
            .collect()
    })
}

fn user_mounts(inputs: &Inputs<'_>) -> Result<Vec<Value>, RuntimeError> {
    let mut mounts = Vec::new();
    for m in &inputs.container.mounts {
        if !m.target.starts_with('/') {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount target '{}' must be an absolute path inside the container",
                m.target
            )));
        }
        let ro = if m.read_only { "ro" } else { "rw" };
        let mount = match proto::MountType::try_from(m.r#type).unwrap_or(proto::MountType::Bind) {
            proto::MountType::Bind => {
                if !Path::new(&m.source).is_absolute() || !Path::new(&m.source).exists() {
                    return Err(RuntimeError::InvalidSpec(format!(
                        "bind mount source '{}' does not exist on this node: create it first, or use a volume",
                        m.source
                    )));
                }
                json!({"destination": m.target, "type": "bind", "source": m.source,
                       "options": ["rbind", "rprivate", ro]})
            }
            proto::MountType::Volume => {
                let dir = if m.source.is_empty() {
                    // An anonymous volume lives and dies with the task.
                    inputs
                        .task_dir
                        .join("volumes")
                        .join(m.target.trim_start_matches('/').replace('/', "_"))
                } else {
                    volume_dir(inputs.volumes_dir, &m.source)?
                };
                // skiffd creates its files for itself alone (umask 077); the volume is the
                // container's, whatever user it runs as: the mode Docker gives it.
                std::fs::create_dir_all(&dir)
                    .and_then(|()| {
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    })
                    .map_err(|e| {
                        RuntimeError::io(format!("creating volume directory {}", dir.display()), e)
                    })?;
                json!({"destination": m.target, "type": "bind", "source": dir,
                       "options": ["rbind", "rprivate", ro]})
            }
            proto::MountType::Tmpfs => {
                let mut options = vec![
                    "nosuid".to_owned(),
                    "nodev".into(),
                    "mode=1777".into(),
                    ro.into(),
                ];
                if m.tmpfs_size_bytes > 0 {
                    options.push(format!("size={}", m.tmpfs_size_bytes));
                }
                json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        };
        mounts.push(mount);
    }
    Ok(mounts)
}

/// The spec, as the JSON runc reads.
pub(crate) fn build(inputs: &Inputs<'_>) -> Result<Value, RuntimeError> {
    let c = inputs.container;
    let args = command(c, inputs.image);
    if args.is_empty() {
        return Err(RuntimeError::InvalidSpec(
            "the image has no command and the service gives none: pass one after the image name"
                .into(),
        ));
    }
    let args = match &inputs.init {
        Some(_) => [INIT_PATH.to_string(), "--".into()]
            .into_iter()
            .chain(args)
            .collect(),
        None => args,
    };
    let hostname = inputs.hostname.clone();
    let cwd = if !c.dir.is_empty() {
        c.dir.clone()
    } else {
        inputs
            .image
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    let file = |name: &str| inputs.task_dir.join(name);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": file("hosts"), "options": ["rbind", "rprivate", "rw"]}),
        json!({"destination": "/etc/hostname", "type": "bind", "source": file("hostname"), "options": ["rbind", "rprivate", "rw"]}),
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": file("resolv.conf"), "options": ["rbind", "rprivate", "rw"]}),
    ];
    mounts.extend(user_mounts(inputs)?);
    mounts.extend(task_file_mounts(inputs)?);
    if let Some(init) = &inputs.init {
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init,
                           "options": ["rbind", "rprivate", "ro"]}),
        );
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(netns) = &inputs.netns {
        namespaces.push(json!({"type": "network", "path": netns}));
    }
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}
        ]
    });
    if let Some(limits) = inputs.limits {
        if limits.memory_bytes > 0 {
            // No extra swap beyond the limit, so the limit is what the task gets.
            resources["memory"] =
                json!({"limit": limits.memory_bytes, "swap": limits.memory_bytes});
        }
        if limits.nano_cpus > 0 {
            let quota = (limits.nano_cpus as u128 * CPU_PERIOD_US as u128 / 1_000_000_000) as i64;
            resources["cpu"] = json!({"quota": quota.max(1000), "period": CPU_PERIOD_US});
        }
        if limits.pids > 0 {
            // A fork bomb in one task stops at its own limit instead of the node's.
            resources["pids"] = json!({"limit": limits.pids});
        }
    }
    let mut env = environment(c, inputs.image, &hostname);
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut user = json!({"uid": inputs.user.uid, "gid": inputs.user.gid});
    if !inputs.additional_gids.is_empty() {
        user["additionalGids"] = json!(inputs.additional_gids);
    }
    let caps = &inputs.capabilities;
    let mut process = json!({
        "terminal": c.tty,
        "user": user,
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": false
    });
    if !c.ulimits.is_empty() {
        process["rlimits"] = c
            .ulimits
            .iter()
            .filter_map(|u| {
                let kind = proto::container_options::rlimit_type(&u.name)?;
                Some(json!({"type": kind,
                            "soft": proto::container_options::rlimit_value(u.soft),
                            "hard": proto::container_options::rlimit_value(u.hard)}))
            })
            .collect();
    }
    if c.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(c.oom_score_adj);
    }
    let mut linux = json!({
        "cgroupsPath": inputs.cgroup,
        "resources": resources,
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if !c.sysctls.is_empty() {
        linux["sysctl"] = json!(c.sysctls);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": c.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

/// Finds a user (`name`, `uid`, `name:group`, `uid:gid`) in the image's passwd and group
/// files (their contents; empty when the image has none).
pub(crate) fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<User, RuntimeError> {
    if spec.is_empty() {
        return Ok(User { uid: 0, gid: 0 });
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entry = |field: usize, value: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[field] == value)
                .then(|| (f[2].parse::<u32>().ok(), f[3].parse::<u32>().ok()))
        })
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, passwd_entry(2, user).and_then(|(_, g)| g).unwrap_or(0)),
        Err(_) => match passwd_entry(0, user) {
            Some((Some(uid), Some(gid))) => (uid, gid),
            _ => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "user '{user}' is not in the image's /etc/passwd: use a numeric uid[:gid] or a user the image has"
                )))
            }
        },
    };
    let gid = match grp {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok()).flatten()
                })
                .ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!(
                        "group '{g}' is not in the image's /etc/group: use a numeric gid or a group the image has"
                    ))
                })?,
        },
    };
    Ok(User { uid, gid })
}

/// The supplementary groups of `--group` as numbers: numbers as they are, names from the
/// image's group file (its contents).
pub(crate) fn resolve_groups(groups: &[String], group: &str) -> Result<Vec<u32>, RuntimeError> {
    groups
        .iter()
        .map(|g| {
            g.parse::<u32>().or_else(|_| {
                group
                    .lines()
                    .find_map(|line| {
                        let f: Vec<&str> = line.split(':').collect();
                        (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok()).flatten()
                    })
                    .ok_or_else(|| {
                        RuntimeError::InvalidSpec(format!(
                            "--group {g}: the image's /etc/group has no such group; use a group the image has, or a number"
                        ))
                    })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            working_dir: Some("/app".into()),
            ..Default::default()
        }
    }

    #[test]
    fn command_follows_docker_rules() {
        let mut c = proto::ContainerSpec::default();
        assert_eq!(command(&c, &image()), ["/entry", "serve"]);
        c.args = vec!["other".into()];
        assert_eq!(command(&c, &image()), ["/entry", "other"]);
        c.command = vec!["sh".into()];
        c.args.clear();
        assert_eq!(
            command(&c, &image()),
            ["sh"],
            "a new entrypoint drops the image's cmd"
        );
        c.args = vec!["-c".into(), "true".into()];
        assert_eq!(command(&c, &image()), ["sh", "-c", "true"]);
    }

    #[test]
    fn spec_environment_overrides_the_image() {
        let c = proto::ContainerSpec {
            env: vec!["A=spec".into(), "B=1".into()],
            ..Default::default()
        };
        let env = environment(&c, &image(), "h");
        assert!(env.contains(&"A=spec".to_owned()));
        assert!(!env.contains(&"A=image".to_owned()));
        assert!(env.contains(&"PATH=/bin".to_owned()));
        assert!(env.contains(&"HOSTNAME=h".to_owned()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn users_resolve_from_the_image() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:\n";
        assert_eq!(
            resolve_user("", passwd, group).unwrap(),
            User { uid: 0, gid: 0 }
        );
        assert_eq!(
            resolve_user("web", passwd, group).unwrap(),
            User {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_user("web:staff", passwd, group).unwrap(),
            User { uid: 1000, gid: 50 }
        );
        assert_eq!(
            resolve_user("4242:7", passwd, group).unwrap(),
            User { uid: 4242, gid: 7 }
        );
        assert!(resolve_user("nobody", passwd, group)
            .unwrap_err()
            .to_string()
            .contains("numeric"));
        assert!(resolve_user("web:nogroup", passwd, group).is_err());
    }

    #[test]
    fn limits_reach_the_cgroup_settings() {
        let dir = tempfile::tempdir().unwrap();
        let c = proto::ContainerSpec {
            command: vec!["sh".into()],
            read_only: true,
            ..Default::default()
        };
        let limits = proto::Resources {
            nano_cpus: 500_000_000,
            memory_bytes: 64 << 20,
            pids: 100,
        };
        let spec = build(&Inputs {
            task_id: "abcdefghijklmnop",
            container: &c,
            limits: Some(&limits),
            image: &RunConfig::default(),
            user: User { uid: 0, gid: 0 },
            netns: Some("/var/run/netns/skt-x".into()),
            task_dir: dir.path(),
            volumes_dir: dir.path(),
            cgroup: "/skiff/x".into(),
            capabilities: vec![],
            additional_gids: vec![],
            init: None,
            hostname: hostname("abcdefghijklmnop", &c),
        })
        .unwrap();
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 100);
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["hostname"], "abcdefghijkl");
        assert!(spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/var/run/netns/skt-x"));
    }

    #[test]
    fn mounts_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mount = |t: proto::MountType, source: &str, target: &str| proto::Mount {
            r#type: t as i32,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let base = proto::ContainerSpec {
            command: vec!["sh".into()],
            ..Default::default()
        };
        let build_with = |mounts: Vec<proto::Mount>| {
            let c = proto::ContainerSpec {
                mounts,
                ..base.clone()
            };
            build(&Inputs {
                task_id: "t",
                container: &c,
                limits: None,
                image: &RunConfig::default(),
                user: User { uid: 0, gid: 0 },
                netns: None,
                task_dir: dir.path(),
                volumes_dir: &dir.path().join("volumes"),
                cgroup: "/skiff/t".into(),
                capabilities: vec![],
                additional_gids: vec![],
                init: None,
                hostname: "t".into(),
            })
        };
        let e =
            build_with(vec![mount(proto::MountType::Bind, "/no/such/dir", "/data")]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = build_with(vec![mount(proto::MountType::Volume, "data", "relative")]).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = build_with(vec![mount(proto::MountType::Volume, "../etc", "/data")]).unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        let spec = build_with(vec![mount(proto::MountType::Volume, "data", "/data")]).unwrap();
        assert!(dir.path().join("volumes/data/_data").is_dir());
        assert!(spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/data"));
    }

    #[test]
    fn container_options_reach_the_oci_spec() {
        let dir = tempfile::tempdir().unwrap();
        let c = proto::ContainerSpec {
            command: vec!["sleep".into()],
            args: vec!["1".into()],
            ulimits: vec![
                proto::Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048,
                },
                proto::Ulimit {
                    name: "core".into(),
                    soft: 0,
                    hard: -1,
                },
            ],
            sysctls: [("net.core.somaxconn".to_string(), "512".to_string())].into(),
            tty: true,
            oom_score_adj: 300,
            ..Default::default()
        };
        let caps = proto::container_options::capabilities(&["CAP_NET_ADMIN".into()], &[]);
        let spec = build(&Inputs {
            task_id: "t",
            container: &c,
            limits: None,
            image: &RunConfig::default(),
            user: User { uid: 0, gid: 0 },
            netns: None,
            task_dir: dir.path(),
            volumes_dir: dir.path(),
            cgroup: "/skiff/t".into(),
            capabilities: caps.clone(),
            additional_gids: vec![29, 100],
            init: Some("/usr/bin/tini-static".into()),
            hostname: "t".into(),
        })
        .unwrap();
        let p = &spec["process"];
        assert_eq!(
            p["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                   {"type": "RLIMIT_CORE", "soft": 0, "hard": u64::MAX}])
        );
        assert_eq!(p["capabilities"]["effective"], json!(caps));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert_eq!(spec["linux"]["sysctl"]["net.core.somaxconn"], "512");
        assert_eq!(p["terminal"], true);
        assert!(p["env"].as_array().unwrap().contains(&json!("TERM=xterm")));
        assert_eq!(p["oomScoreAdj"], 300);
        assert_eq!(p["user"]["additionalGids"], json!([29, 100]));
        assert_eq!(p["args"], json!([INIT_PATH, "--", "sleep", "1"]));
        assert!(spec["mounts"].as_array().unwrap().iter().any(|m| {
            m["destination"] == INIT_PATH
                && m["source"] == "/usr/bin/tini-static"
                && m["options"].as_array().unwrap().contains(&json!("ro"))
        }));
    }

    #[test]
    fn groups_resolve_by_name_from_the_image_or_as_numbers() {
        let group = "root:x:0:\naudio:x:29:\n";
        assert_eq!(
            resolve_groups(&["audio".into(), "4000".into()], group).unwrap(),
            [29, 4000]
        );
        let e = resolve_groups(&["video".into()], group).unwrap_err();
        assert!(e.to_string().contains("--group video"), "{e}");
    }
}
