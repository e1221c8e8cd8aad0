//! What this node can run of a task's container options, checked before the container is
//! made: a task the node cannot run is rejected with the option named, instead of failing
//! in runc with a message about a file under `/proc`.
//!
//! The control API has already refused what no node can run (`proto::container_options`);
//! what is left depends on the node: its kernel's sysctls and `fs.nr_open`, the privileges
//! skiffd (and so containerd and runc) has, and whether it has an init for `--init`.

use std::path::{Path, PathBuf};

use proto::container_options as rules;
use proto::ContainerSpec;

use crate::RuntimeError;

/// The inits `--init` can use, in order of preference: statically linked builds only, since
/// the binary is bound into images that may have no C library.
const INITS: &[&str] = &["tini-static", "docker-init", "catatonit"];

/// Where the inits are looked for.
const INIT_DIRS: &[&str] = &[
    "/usr/local/bin",
    "/usr/bin",
    "/usr/local/sbin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/libexec/docker",
    "/usr/libexec/podman",
];

/// The facts about this node the checks need (read once per task; tests make their own).
#[derive(Debug, Clone)]
pub(crate) struct NodeFacts {
    /// The capabilities skiffd may hand on (its bounding set).
    pub bounding: Vec<String>,
    /// Whether skiffd holds CAP_SYS_RESOURCE (lower OOM scores, raise hard limits).
    pub sys_resource: bool,
    /// `fs.nr_open`: the most open files a process may be allowed.
    pub nr_open: u64,
    /// skiffd's own hard limits, by ulimit name (what may be set without CAP_SYS_RESOURCE).
    pub hard_limits: Vec<(String, u64)>,
}

impl NodeFacts {
    /// Reads the facts of the node's runtime: process `pid`'s (containerd's, whose shims
    /// and runc inherit its privileges and limits) when given and readable, else skiffd's.
    pub(crate) fn read(pid: Option<u32>) -> NodeFacts {
        let proc_file = |name: &str| {
            pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/{name}")).ok())
                .or_else(|| std::fs::read_to_string(format!("/proc/self/{name}")).ok())
                .unwrap_or_default()
        };
        let status = proc_file("status");
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        let (bounding, effective) = (mask("CapBnd:"), mask("CapEff:"));
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1 << 20);
        NodeFacts {
            bounding: caps_in(bounding),
            sys_resource: effective & (1 << 24) != 0,
            nr_open,
            hard_limits: hard_limits(&proc_file("limits")),
        }
    }
}

/// The hard limits of a `/proc/PID/limits` table, by ulimit name ("unlimited" is the
/// largest value).
fn hard_limits(table: &str) -> Vec<(String, u64)> {
    const ROWS: &[(&str, &str)] = &[
        ("Max open files", "nofile"),
        ("Max processes", "nproc"),
        ("Max locked memory", "memlock"),
        ("Max core file size", "core"),
        ("Max stack size", "stack"),
        ("Max file size", "fsize"),
        ("Max data size", "data"),
        ("Max address space", "as"),
        ("Max msgqueue size", "msgqueue"),
        ("Max pending signals", "sigpending"),
    ];
    table
        .lines()
        .filter_map(|line| {
            let (title, name) = ROWS.iter().find(|(t, _)| line.starts_with(t))?;
            let hard = line[title.len()..].split_whitespace().nth(1)?;
            let hard = match hard {
                "unlimited" => u64::MAX,
                n => n.parse().ok()?,
            };
            Some((name.to_string(), hard))
        })
        .collect()
}

/// The capability names of a `/proc/PID/status` mask.
fn caps_in(mask: u64) -> Vec<String> {
    rules::ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Whether this node's kernel has the sysctl (per network namespace ones of an interface,
/// `net.ipv4.conf.eth0.*`, exist only in the task's namespace and are not looked for).
pub(crate) fn kernel_has_sysctl(name: &str) -> bool {
    if name.starts_with("net.ipv4.conf.") || name.starts_with("net.ipv6.conf.") {
        return true;
    }
    Path::new("/proc/sys").join(name.replace('.', "/")).exists()
}

fn rejected(msg: String) -> RuntimeError {
    RuntimeError::InvalidSpec(msg)
}

/// Checks the task's container options against this node; returns the capabilities the
/// task gets (`--cap-add ALL` means all this node has).
pub(crate) fn check(
    c: &ContainerSpec,
    node: &NodeFacts,
    has_sysctl: impl Fn(&str) -> bool,
) -> Result<Vec<String>, RuntimeError> {
    for name in c.sysctls.keys() {
        if !has_sysctl(name) {
            return Err(rejected(format!(
                "--sysctl {name}: this node's kernel has no such sysctl; drop it or constrain the service to nodes that have it"
            )));
        }
    }
    for u in &c.ulimits {
        let hard = rules::rlimit_value(u.hard);
        if u.name == "nofile" && hard > node.nr_open {
            return Err(rejected(format!(
                "--ulimit {}: this node allows at most {} open files (fs.nr_open); use a lower hard limit",
                rules::format_ulimit(u),
                node.nr_open
            )));
        }
        let own = node.hard_limits.iter().find(|(n, _)| *n == u.name);
        if let Some((_, own)) = own.filter(|(_, own)| !node.sys_resource && hard > *own) {
            return Err(rejected(format!(
                "--ulimit {}: this node's runtime lacks CAP_SYS_RESOURCE, so it cannot raise a hard limit above its own ({own}); use a lower hard limit",
                rules::format_ulimit(u)
            )));
        }
    }
    if c.oom_score_adj < 0 && !node.sys_resource {
        return Err(rejected(format!(
            "--oom-score-adj {}: this node's runtime lacks CAP_SYS_RESOURCE, which lowering an OOM score needs; use 0 to 1000",
            c.oom_score_adj
        )));
    }
    let has = |c: &str| node.bounding.iter().any(|b| b == c);
    if let Some(missing) = c.cap_add.iter().find(|cap| *cap != rules::ALL && !has(cap)) {
        return Err(rejected(format!(
            "--cap-add {missing}: this node's runtime does not hold that capability, so it cannot grant it; drop it or run the service on nodes that can"
        )));
    }
    Ok(rules::capabilities(&c.cap_add, &c.cap_drop)
        .into_iter()
        .filter(|cap| has(cap))
        .collect())
}

/// The node's first statically linked init (`tini-static`, `docker-init`, `catatonit`),
/// for `--init`.
pub(crate) fn find_init() -> Result<PathBuf, RuntimeError> {
    find_init_in(INIT_DIRS.iter().map(Path::new))
}

fn find_init_in<'a>(dirs: impl Iterator<Item = &'a Path> + Clone) -> Result<PathBuf, RuntimeError> {
    let mut dynamic = Vec::new();
    for name in INITS {
        for dir in dirs.clone() {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) if is_static_elf(&bytes) => return Ok(path),
                Ok(_) => dynamic.push(path.display().to_string()),
                Err(_) => {}
            }
        }
    }
    let found = if dynamic.is_empty() {
        "it has none".to_string()
    } else {
        format!("only dynamically linked ones ({})", dynamic.join(", "))
    };
    Err(rejected(format!(
        "--init: this node has no statically linked init ({found}); install one on the node (`apt-get install tini` gives tini-static) or drop --init"
    )))
}

/// Whether `bytes` are a 64-bit little-endian ELF executable without a program
/// interpreter, i.e. statically linked (it runs in any image).
fn is_static_elf(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // Magic, 64-bit class, little-endian.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

/// The option a runc failure is about, as the sentence a rejected task shows
/// (`--sysctl net.core.x: ...`), when it is about one.
pub(crate) fn option_failure(runc_message: &str) -> Option<String> {
    let m = runc_message;
    if let Some(i) = m.find("/proc/sys/") {
        let path = &m[i + "/proc/sys/".len()..];
        let name: String = path
            .chars()
            .take_while(|c| !matches!(c, ':' | ' '))
            .map(|c| if c == '/' { '.' } else { c })
            .collect();
        let why = m.rsplit(": ").next().unwrap_or(m);
        return Some(format!(
            "--sysctl {name}: the node's kernel refused it ({why}); give a value it takes"
        ));
    }
    if m.contains("rlimit") {
        return Some(format!(
            "--ulimit: the node refused a limit ({m}); lower the hard limit"
        ));
    }
    if m.contains("oom_score_adj") {
        return Some(format!(
            "--oom-score-adj: the node refused it ({m}); use 0 to 1000"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeFacts {
        NodeFacts {
            bounding: rules::ALL_CAPABILITIES
                .iter()
                .filter(|c| **c != "CAP_SYS_RESOURCE")
                .map(|c| c.to_string())
                .collect(),
            sys_resource: false,
            nr_open: 1 << 20,
            hard_limits: vec![("nofile".into(), 524_288)],
        }
    }

    #[test]
    fn what_the_node_cannot_do_is_rejected_naming_the_option() {
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                ContainerSpec {
                    sysctls: [("net.core.nosuch".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
                "--sysctl net.core.nosuch",
            ),
            (
                ContainerSpec {
                    ulimits: vec![proto::Ulimit {
                        name: "nofile".into(),
                        soft: 1024,
                        hard: 1 << 21,
                    }],
                    ..Default::default()
                },
                "fs.nr_open",
            ),
            (
                ContainerSpec {
                    ulimits: vec![proto::Ulimit {
                        name: "nofile".into(),
                        soft: 1024,
                        hard: 600_000,
                    }],
                    ..Default::default()
                },
                "CAP_SYS_RESOURCE",
            ),
            (
                ContainerSpec {
                    oom_score_adj: -10,
                    ..Default::default()
                },
                "--oom-score-adj -10",
            ),
            (
                ContainerSpec {
                    cap_add: vec!["CAP_SYS_RESOURCE".into()],
                    ..Default::default()
                },
                "--cap-add CAP_SYS_RESOURCE",
            ),
        ];
        let has = |name: &str| name != "net.core.nosuch";
        for (c, want) in cases {
            let e = check(&c, &node(), has).unwrap_err();
            assert!(matches!(e, RuntimeError::InvalidSpec(_)));
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let all = ContainerSpec {
            cap_add: vec!["ALL".into()],
            oom_score_adj: 10,
            ..Default::default()
        };
        let caps = check(&all, &node(), has).unwrap();
        assert_eq!(
            caps.len(),
            rules::ALL_CAPABILITIES.len() - 1,
            "ALL is all the node has"
        );
    }

    #[test]
    fn only_statically_linked_inits_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut dynamic = elf.clone();
        dynamic[64..68].copy_from_slice(&3u32.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert!(is_static_elf(&elf) && !is_static_elf(&dynamic));
        assert!(!is_static_elf(b"#!/bin/sh\n"));

        std::fs::write(dir.path().join("docker-init"), &dynamic).unwrap();
        let e = find_init_in([dir.path()].into_iter())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only dynamically linked") && e.contains("apt-get install tini"),
            "{e}"
        );
        std::fs::write(dir.path().join("catatonit"), &elf).unwrap();
        assert_eq!(
            find_init_in([dir.path()].into_iter()).unwrap(),
            dir.path().join("catatonit")
        );
        let empty = tempfile::tempdir().unwrap();
        let e = find_init_in([empty.path()].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("it has none"), "{e}");
    }

    #[test]
    fn runc_failures_about_an_option_name_it() {
        let m = "runc create failed: unable to start container process: error during container init: write sysctl key net.core.somaxconn: write /proc/sys/net/core/somaxconn: invalid argument";
        let s = option_failure(m).unwrap();
        assert!(s.starts_with("--sysctl net.core.somaxconn: "), "{s}");
        assert!(s.contains("invalid argument"), "{s}");
        assert!(option_failure("exec: \"nope\": executable file not found in $PATH").is_none());
    }

    #[test]
    fn hard_limits_are_read_from_a_limits_table() {
        let table = "Limit                     Soft Limit           Hard Limit           Units     \n\
                     Max open files            1024                 524288               files     \n\
                     Max core file size        0                    unlimited            bytes     \n";
        assert_eq!(
            hard_limits(table),
            [
                ("nofile".to_string(), 524_288),
                ("core".to_string(), u64::MAX)
            ]
        );
    }

    #[test]
    fn this_node_s_facts_are_read() {
        let facts = NodeFacts::read(None);
        assert!(facts.nr_open > 0);
        assert!(facts.bounding.iter().any(|c| c == "CAP_CHOWN"));
    }
}
