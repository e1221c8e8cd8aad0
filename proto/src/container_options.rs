//! The rules of a task's container options (`--ulimit`, `--cap-add/--cap-drop`, `--sysctl`,
//! `--dns*`, `--host`, `--group`, `--oom-score-adj`, `--network host`), in one place so
//! that the CLI, the control API and the node refuse the same values with the same
//! sentence, each naming the flag to fix.
//!
//! The forms are Docker's: `NAME=SOFT[:HARD]` ulimits, capability names with or without
//! `CAP_` and Docker's `ALL` logic, only namespaced sysctls (a task must not change its
//! node's kernel), hosts as `NAME:IP` stored as swarmkit stores them (`IP NAME`).

use std::net::IpAddr;

use crate::{
    ContainerSpec, DnsConfig, EndpointSpec, NetworkAttachmentConfig, PublishMode, TaskSpec, Ulimit,
};

/// The network name that means "the node's own network namespace" (`--network host`).
pub const HOST_NETWORK: &str = "host";

/// Whether a task spec asks for the node's network namespace (`--network host`).
pub fn uses_host_network(spec: &TaskSpec) -> bool {
    is_host_network(&spec.networks)
}

/// Whether these attachments are `--network host`.
pub fn is_host_network(networks: &[NetworkAttachmentConfig]) -> bool {
    networks.iter().any(|n| n.target == HOST_NETWORK)
}

/// Refuses what `--network host` cannot go with: other networks (the task joins none),
/// aliases (the node's network has no service discovery), ports through the routing mesh
/// (no VIP, no mesh) and host-mode ports published under another number (the task's ports
/// are the node's own).
pub fn check_host_network(
    networks: &[NetworkAttachmentConfig],
    endpoint: Option<&EndpointSpec>,
) -> Result<(), String> {
    if !is_host_network(networks) {
        return Ok(());
    }
    if networks.len() > 1 {
        return Err(
            "--network host cannot be combined with other networks: a task on the node's network joins no overlay; drop one of them"
                .into(),
        );
    }
    if networks.iter().any(|n| !n.aliases.is_empty()) {
        return Err(
            "--network host takes no alias: the node's network has no service discovery; drop the alias"
                .into(),
        );
    }
    for p in endpoint.map(|e| e.ports.as_slice()).unwrap_or_default() {
        if p.publish_mode() != PublishMode::Host {
            return Err(format!(
                "port {} cannot be published through the routing mesh with --network host: publish it with mode=host,published={0},target={0}",
                p.target_port
            ));
        }
        if p.published_port != p.target_port {
            return Err(format!(
                "port {}:{} cannot be published with --network host: the task listens on the node's own ports, so publish it as itself (published={1},target={1})",
                p.published_port, p.target_port
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// --ulimit
// ---------------------------------------------------------------------------------------

/// The limits `--ulimit` knows, by the name `ulimit` gives them, with their OCI type.
const ULIMITS: &[(&str, &str)] = &[
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// The OCI `process.rlimits` type of a ulimit name (`nofile` is `RLIMIT_NOFILE`).
pub fn rlimit_type(name: &str) -> Option<&'static str> {
    ULIMITS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A limit as the OCI spec takes it: -1 (unlimited) is the largest value.
pub fn rlimit_value(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Parses `NAME=SOFT[:HARD]` (`nofile=1024:2048`; the hard limit is the soft one when not
/// given; -1 is unlimited) for `flag`.
pub fn parse_ulimit(flag: &str, value: &str) -> Result<Ulimit, String> {
    let bad = |why: &str| format!("invalid ulimit \"{value}\" for {flag}: {why}");
    let (name, limits) = value
        .trim()
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let number = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| bad("a limit is a whole number, or -1 for unlimited"))
    };
    let ulimit = Ulimit {
        name: name.trim().to_ascii_lowercase(),
        soft: number(soft)?,
        hard: number(hard)?,
    };
    check_ulimit(flag, &ulimit)?;
    Ok(ulimit)
}

/// Refuses a ulimit no node can set: an unknown name, a limit below -1, a soft limit above
/// the hard one.
pub fn check_ulimit(flag: &str, u: &Ulimit) -> Result<(), String> {
    let shown = format_ulimit(u);
    if rlimit_type(&u.name).is_none() {
        let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "invalid ulimit \"{shown}\" for {flag}: unknown limit \"{}\"; use one of {}",
            u.name,
            names.join(", ")
        ));
    }
    if u.soft < -1 || u.hard < -1 {
        return Err(format!(
            "invalid ulimit \"{shown}\" for {flag}: a limit is 0 or more, or -1 for unlimited"
        ));
    }
    if rlimit_value(u.soft) > rlimit_value(u.hard) {
        return Err(format!(
            "invalid ulimit \"{shown}\" for {flag}: the soft limit is above the hard limit; use NAME=SOFT:HARD with SOFT at most HARD"
        ));
    }
    Ok(())
}

/// `NAME=SOFT:HARD`, as `--ulimit` takes it back.
pub fn format_ulimit(u: &Ulimit) -> String {
    format!("{}={}:{}", u.name, u.soft, u.hard)
}

// ---------------------------------------------------------------------------------------
// --cap-add, --cap-drop
// ---------------------------------------------------------------------------------------

/// Every capability Linux defines, in the order of their numbers (so the position of one
/// is its bit in `/proc/PID/status`).
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set, which `--cap-add` and `--cap-drop` change.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `ALL`, in `--cap-add` or `--cap-drop`.
pub const ALL: &str = "ALL";

/// A capability name as given (`net_admin`, `CAP_NET_ADMIN`, `all`) in the form stored:
/// `CAP_NET_ADMIN`, or `ALL`.
pub fn normalize_capability(flag: &str, name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == ALL {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!(
            "unknown capability \"{name}\" for {flag}: use a Linux capability such as NET_ADMIN or SYS_PTRACE (with or without CAP_), or ALL"
        ))
    }
}

/// The capabilities a task gets: Docker's default set changed by `add` and `drop`, with
/// Docker's logic for `ALL` (added: every capability but those dropped; dropped: only
/// those added).
pub fn capabilities(add: &[String], drop: &[String]) -> Vec<String> {
    let has = |list: &[String], c: &str| list.iter().any(|x| x == c);
    let caps: Vec<String> = if has(add, ALL) {
        ALL_CAPABILITIES
            .iter()
            .filter(|c| !has(drop, c))
            .map(|c| c.to_string())
            .collect()
    } else if has(drop, ALL) {
        add.to_vec()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| !has(drop, c))
            .map(|c| c.to_string())
            .chain(add.iter().cloned())
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    for c in caps {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// --sysctl
// ---------------------------------------------------------------------------------------

/// Parses `NAME=VALUE` for `flag`.
pub fn parse_sysctl(flag: &str, value: &str) -> Result<(String, String), String> {
    let (name, v) = value.split_once('=').ok_or_else(|| {
        format!(
            "invalid sysctl \"{value}\" for {flag}: use NAME=VALUE, e.g. net.core.somaxconn=1024"
        )
    })?;
    let (name, v) = (name.trim().to_string(), v.trim().to_string());
    check_sysctl(flag, &name, &v, false)?;
    Ok((name, v))
}

/// Refuses a sysctl a task may not set: only those the kernel keeps per namespace (`net.*`,
/// `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`), so a task cannot change its
/// node; `net.*` not with `--network host`, where the namespace is the node's.
pub fn check_sysctl(flag: &str, name: &str, value: &str, host_network: bool) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !well_formed {
        return Err(format!(
            "invalid sysctl name \"{name}\" for {flag}: use a dotted name such as net.core.somaxconn"
        ));
    }
    let namespaced = name.starts_with("net.")
        || name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.");
    if !namespaced {
        return Err(format!(
            "sysctl \"{name}\" for {flag} is not namespaced, so it would change the node itself: a task may set net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.*"
        ));
    }
    if host_network && name.starts_with("net.") {
        return Err(format!(
            "sysctl \"{name}\" for {flag} cannot be set with --network host: the task shares the node's network namespace"
        ));
    }
    if value.is_empty() || value.contains(['\n', '\r']) {
        return Err(format!(
            "invalid value \"{value}\" for sysctl {name} ({flag}): give one line, e.g. {name}=1"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// --dns, --dns-search, --dns-option
// ---------------------------------------------------------------------------------------

/// A `--dns` server: an IP address.
pub fn check_dns_server(flag: &str, value: &str) -> Result<String, String> {
    value
        .trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            format!("invalid DNS server \"{value}\" for {flag}: use an IP address, e.g. 8.8.8.8")
        })
}

/// A `--dns-search` domain.
pub fn check_dns_search(flag: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').filter(|l| !l.is_empty()).all(|l| {
            l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
        && !v.starts_with('.');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "invalid DNS search domain \"{value}\" for {flag}: use a domain name such as example.com"
        ))
    }
}

/// A `--dns-option`, as resolv.conf's `options` takes it (`ndots:2`, `edns0`).
pub fn check_dns_option(flag: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid DNS option \"{value}\" for {flag}: use one resolv.conf option, e.g. ndots:2 or edns0"
        ));
    }
    Ok(v.to_string())
}

/// Refuses a DNS config any node would refuse.
pub fn check_dns_config(d: &DnsConfig) -> Result<(), String> {
    for s in &d.nameservers {
        check_dns_server("--dns", s)?;
    }
    for s in &d.search {
        check_dns_search("--dns-search", s)?;
    }
    for o in &d.options {
        check_dns_option("--dns-option", o)?;
    }
    Ok(())
}

/// A task's resolv.conf: `base` (the file it would get) with the parts `dns` sets replaced.
pub fn resolv_conf(base: &str, dns: &DnsConfig) -> String {
    let mut out = String::new();
    let keep = |key: &str, replaced: bool| !replaced || key.is_empty();
    for line in base.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replaced = match key {
            "nameserver" => !dns.nameservers.is_empty(),
            "search" | "domain" => !dns.search.is_empty(),
            "options" => !dns.options.is_empty(),
            _ => false,
        };
        if keep(key, replaced) {
            out.push_str(line);
            out.push('\n');
        }
    }
    for s in &dns.nameservers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.search.is_empty() {
        out.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

// ---------------------------------------------------------------------------------------
// --host
// ---------------------------------------------------------------------------------------

fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Parses `NAME:IP` (`db:10.0.0.5`, `v6:fd00::1`) into the line stored, `IP NAME`.
pub fn parse_host(flag: &str, value: &str) -> Result<String, String> {
    let bad =
        || format!("invalid host \"{value}\" for {flag}: use NAME:IP, e.g. db.local:10.0.0.5");
    let (name, ip) = value.trim().split_once([':', '=']).ok_or_else(bad)?;
    let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
    if !valid_host_name(name.trim()) {
        return Err(bad());
    }
    Ok(format!("{ip} {}", name.trim()))
}

/// Refuses a stored hosts line that is not `IP NAME...`.
pub fn check_host_line(line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let ip_ok = words.next().is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
    let names: Vec<&str> = words.collect();
    if ip_ok && !names.is_empty() && names.iter().all(|n| valid_host_name(n)) {
        Ok(())
    } else {
        Err(format!(
            "invalid host entry \"{line}\" for --host: use NAME:IP, e.g. db.local:10.0.0.5"
        ))
    }
}

/// Whether a stored `IP NAME` line matches `--host-rm NAME[:IP]`.
pub fn host_matches(line: &str, removal: &str) -> bool {
    let (name, ip) = match removal.trim().split_once([':', '=']) {
        Some((n, ip)) => (n.trim(), Some(ip.trim())),
        None => (removal.trim(), None),
    };
    let mut words = line.split_whitespace();
    let line_ip = words.next().unwrap_or("");
    let ip_ok = ip.is_none_or(|ip| {
        ip.parse::<IpAddr>().ok() == line_ip.parse::<IpAddr>().ok() && !ip.is_empty()
    });
    ip_ok && words.any(|n| n == name)
}

// ---------------------------------------------------------------------------------------
// --group, --oom-score-adj
// ---------------------------------------------------------------------------------------

/// A `--group`: a group name or a number.
pub fn check_group(flag: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.contains(':') || v.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid group \"{value}\" for {flag}: use a group name from the image's /etc/group, or a number"
        ));
    }
    Ok(v.to_string())
}

/// `--oom-score-adj`: -1000 to 1000.
pub fn check_oom_score_adj(value: i64) -> Result<(), String> {
    if (-1000..=1000).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "invalid value {value} for --oom-score-adj: use a number from -1000 to 1000"
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The whole container
// ---------------------------------------------------------------------------------------

/// Refuses container options no node can run, naming the flag: what the control API
/// checks on every create and update (the CLI checks the same values as it parses them).
pub fn check(c: &ContainerSpec, networks: &[NetworkAttachmentConfig]) -> Result<(), String> {
    let mut seen = Vec::new();
    for u in &c.ulimits {
        check_ulimit("--ulimit", u)?;
        if seen.contains(&u.name) {
            return Err(format!(
                "ulimit \"{}\" is given twice for --ulimit: give each limit once",
                u.name
            ));
        }
        seen.push(u.name.clone());
    }
    for (flag, caps) in [("--cap-add", &c.cap_add), ("--cap-drop", &c.cap_drop)] {
        for cap in caps {
            if normalize_capability(flag, cap)? != *cap {
                return Err(format!(
                    "capability \"{cap}\" for {flag} is not in its stored form: use CAP_{} or ALL",
                    cap.trim_start_matches("CAP_").to_ascii_uppercase()
                ));
            }
        }
    }
    let host = is_host_network(networks);
    for (name, value) in &c.sysctls {
        check_sysctl("--sysctl", name, value, host)?;
    }
    if let Some(dns) = &c.dns_config {
        check_dns_config(dns)?;
    }
    for line in &c.hosts {
        check_host_line(line)?;
    }
    for g in &c.groups {
        check_group("--group", g)?;
    }
    check_oom_score_adj(c.oom_score_adj)?;
    Ok(())
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn host_networking_goes_alone_without_aliases_or_mesh_ports() {
        let net = |target: &str, alias: &[&str]| NetworkAttachmentConfig {
            target: target.into(),
            aliases: s(alias),
        };
        let port = |published: u32, target: u32, mode: PublishMode| crate::PortConfig {
            published_port: published,
            target_port: target,
            publish_mode: mode as i32,
            ..Default::default()
        };
        let endpoint = |ports| EndpointSpec {
            ports,
            ..Default::default()
        };
        check_host_network(&[net("host", &[])], None).unwrap();
        check_host_network(
            &[net("host", &[])],
            Some(&endpoint(vec![port(80, 80, PublishMode::Host)])),
        )
        .unwrap();
        check_host_network(
            &[net("front", &["a"])],
            Some(&endpoint(vec![port(8080, 80, PublishMode::Ingress)])),
        )
        .unwrap();
        let cases = [
            (
                vec![net("host", &[]), net("front", &[])],
                vec![],
                "other networks",
            ),
            (vec![net("host", &["web"])], vec![], "no alias"),
            (
                vec![net("host", &[])],
                vec![port(8080, 80, PublishMode::Ingress)],
                "routing mesh",
            ),
            (
                vec![net("host", &[])],
                vec![port(8080, 80, PublishMode::Host)],
                "as itself",
            ),
        ];
        for (networks, ports, want) in cases {
            let e = check_host_network(&networks, Some(&endpoint(ports))).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn ulimits_parse_with_the_hard_limit_defaulting_to_the_soft_one() {
        let u = parse_ulimit("--ulimit", "nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("--ulimit", "NPROC=100").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nproc", 100, 100));
        let u = parse_ulimit("--ulimit", "core=0:-1").unwrap();
        assert_eq!((u.soft, u.hard), (0, -1));
        assert_eq!(rlimit_value(-1), u64::MAX);
        assert_eq!(rlimit_type("nofile"), Some("RLIMIT_NOFILE"));
    }

    #[test]
    fn impossible_ulimits_are_refused_with_the_flag() {
        for (v, want) in [
            ("nofile", "NAME=SOFT[:HARD]"),
            ("files=10", "unknown limit \"files\""),
            ("nofile=2048:1024", "soft limit is above the hard limit"),
            ("nofile=-1:1024", "soft limit is above the hard limit"),
            ("nofile=-2", "0 or more"),
            ("nofile=lots", "whole number"),
        ] {
            let e = parse_ulimit("--ulimit-add", v).unwrap_err();
            assert!(e.contains(want) && e.contains("--ulimit-add"), "{v}: {e}");
        }
    }

    #[test]
    fn capabilities_take_names_with_or_without_cap_and_refuse_unknown_ones() {
        assert_eq!(
            normalize_capability("--cap-add", "net_admin").unwrap(),
            "CAP_NET_ADMIN"
        );
        assert_eq!(
            normalize_capability("--cap-add", "CAP_SYS_PTRACE").unwrap(),
            "CAP_SYS_PTRACE"
        );
        assert_eq!(normalize_capability("--cap-drop", "all").unwrap(), "ALL");
        let e = normalize_capability("--cap-add", "FLY").unwrap_err();
        assert!(
            e.contains("unknown capability \"FLY\" for --cap-add"),
            "{e}"
        );
        assert_eq!(ALL_CAPABILITIES[24], "CAP_SYS_RESOURCE");
        assert_eq!(ALL_CAPABILITIES.len(), 41);
    }

    #[test]
    fn capabilities_follow_docker_s_all_logic() {
        assert_eq!(capabilities(&[], &[]), s(DEFAULT_CAPABILITIES));
        let c = capabilities(&s(&["CAP_NET_ADMIN"]), &s(&["CAP_CHOWN"]));
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && !c.contains(&"CAP_CHOWN".into()));
        assert_eq!(c.len(), DEFAULT_CAPABILITIES.len());
        let c = capabilities(&s(&["ALL"]), &s(&["CAP_SYS_ADMIN"]));
        assert_eq!(c.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!c.contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(
            capabilities(&s(&["CAP_KILL"]), &s(&["ALL"])),
            s(&["CAP_KILL"])
        );
        assert!(capabilities(&[], &s(&["ALL"])).is_empty());
        assert_eq!(
            capabilities(&s(&["CAP_KILL"]), &[]).len(),
            DEFAULT_CAPABILITIES.len(),
            "a default one added again is not doubled"
        );
    }

    #[test]
    fn only_namespaced_sysctls_are_allowed() {
        for ok in [
            "net.core.somaxconn=1024",
            "kernel.shmmax=100000",
            "kernel.msgmax=8192",
            "kernel.sem=250 32000 32 128",
            "fs.mqueue.msg_max=20",
        ] {
            parse_sysctl("--sysctl", ok).unwrap();
        }
        for (v, want) in [
            ("vm.swappiness=10", "not namespaced"),
            ("kernel.hostname=x", "not namespaced"),
            ("net.core.somaxconn", "NAME=VALUE"),
            ("net..x=1", "dotted name"),
            ("net.core.somaxconn=", "give one line"),
        ] {
            let e = parse_sysctl("--sysctl-add", v).unwrap_err();
            assert!(e.contains(want) && e.contains("--sysctl-add"), "{v}: {e}");
        }
        let e = check_sysctl("--sysctl", "net.ipv4.ip_forward", "1", true).unwrap_err();
        assert!(e.contains("--network host"), "{e}");
        check_sysctl("--sysctl", "kernel.shmmax", "1", true).unwrap();
    }

    #[test]
    fn hosts_are_stored_ip_first_and_removed_by_name_or_name_and_ip() {
        assert_eq!(
            parse_host("--host", "db.local:10.0.0.5").unwrap(),
            "10.0.0.5 db.local"
        );
        assert_eq!(parse_host("--host", "v6:fd00::1").unwrap(), "fd00::1 v6");
        for bad in ["db", "db:notanip", ":10.0.0.1", "d b:10.0.0.1"] {
            let e = parse_host("--host-add", bad).unwrap_err();
            assert!(e.contains("--host-add") && e.contains("NAME:IP"), "{e}");
        }
        assert!(host_matches("10.0.0.5 db.local", "db.local"));
        assert!(host_matches("10.0.0.5 db.local", "db.local:10.0.0.5"));
        assert!(!host_matches("10.0.0.5 db.local", "db.local:10.0.0.6"));
        assert!(!host_matches("10.0.0.5 db.local", "web"));
        check_host_line("10.0.0.5 db.local").unwrap();
        assert!(check_host_line("db.local 10.0.0.5").is_err());
    }

    #[test]
    fn dns_values_are_checked_and_replace_their_parts_of_resolv_conf() {
        assert!(check_dns_server("--dns", "8.8.8.8").is_ok());
        assert!(check_dns_server("--dns-add", "dns.google")
            .unwrap_err()
            .contains("--dns-add"));
        assert!(check_dns_search("--dns-search", "example.com").is_ok());
        assert!(check_dns_search("--dns-search", "bad domain").is_err());
        assert!(check_dns_option("--dns-option", "ndots:2").is_ok());
        assert!(check_dns_option("--dns-option", "a b").is_err());
        let base = "nameserver 127.0.0.11\nsearch corp\noptions ndots:0\n";
        let dns = DnsConfig {
            nameservers: vec![],
            search: s(&["example.com", "example.org"]),
            options: s(&["timeout:2"]),
        };
        assert_eq!(
            resolv_conf(base, &dns),
            "nameserver 127.0.0.11\nsearch example.com example.org\noptions timeout:2\n"
        );
        let dns = DnsConfig {
            nameservers: s(&["1.1.1.1"]),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(base, &dns),
            "search corp\noptions ndots:0\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn a_whole_container_is_checked_flag_by_flag() {
        let ok = ContainerSpec {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            }],
            cap_add: s(&["CAP_NET_ADMIN"]),
            cap_drop: s(&["ALL"]),
            hosts: s(&["10.0.0.5 db"]),
            groups: s(&["audio", "1000"]),
            oom_score_adj: 500,
            ..Default::default()
        };
        check(&ok, &[]).unwrap();
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                ContainerSpec {
                    cap_add: s(&["net_admin"]),
                    ..Default::default()
                },
                "--cap-add",
            ),
            (
                ContainerSpec {
                    oom_score_adj: 1001,
                    ..Default::default()
                },
                "--oom-score-adj",
            ),
            (
                ContainerSpec {
                    groups: s(&["a:b"]),
                    ..Default::default()
                },
                "--group",
            ),
            (
                ContainerSpec {
                    ulimits: vec![
                        Ulimit {
                            name: "nofile".into(),
                            soft: 1,
                            hard: 1,
                        };
                        2
                    ],
                    ..Default::default()
                },
                "given twice",
            ),
            (
                ContainerSpec {
                    sysctls: [("vm.swappiness".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
                "not namespaced",
            ),
        ];
        for (c, want) in cases {
            let e = check(&c, &[]).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let host = [NetworkAttachmentConfig {
            target: HOST_NETWORK.into(),
            aliases: vec![],
        }];
        let c = ContainerSpec {
            sysctls: [("net.core.somaxconn".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        check(&c, &[]).unwrap();
        assert!(check(&c, &host).unwrap_err().contains("--network host"));
    }
}
