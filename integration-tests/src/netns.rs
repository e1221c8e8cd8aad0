//! Test hosts as network namespaces: each host gets its own namespace and address, joined by
//! a veth pair to a bridge in a "switch" namespace that only this test owns. The hosts have
//! no route beyond that bridge, so test traffic never leaves the machine, and a link can be
//! cut (a host or a set of hosts partitioned from the rest) with a filter on the switch.
//!
//! Names carry the test process's PID, so namespaces left behind by an interrupted run are
//! recognised and removed by the next one ([`sweep_leftovers`]).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the harness makes.
const PREFIX: &str = "skh";
/// Where `ip netns exec` finds the files it mounts over /etc for a namespace's processes.
const ETC_NETNS: &str = "/etc/netns";
/// Subnet of the test hosts (inside their own namespaces, so parallel tests may all use it).
const SUBNET: &str = "10.77.0";
/// The nftables table of the switch that holds partitions.
const CUT_TABLE: &str = "skiffcut";
/// An address on the test hosts' network that no host holds: the switch's own, standing
/// for a machine outside the cluster (see [`TestNetwork::outside`]).
pub const OUTSIDE: &str = "10.77.0.254";

/// Runs `ip ARGS`, panicking with its error output if it fails.
fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2 and nftables): {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces of test processes that no longer run; removes them with their processes.
pub fn sweep_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// Removes the namespaces the daemon with data directory `data_dir` made for its networks
/// and tasks (names derived from its node ID and its saved assignments), with the
/// processes in them: the daemon itself may have been killed before it could.
pub fn remove_node_namespaces(data_dir: &std::path::Path) {
    if let Ok(tasks) = std::fs::read_dir(data_dir.join("agent")) {
        for task in tasks.flatten() {
            let id = task.file_name().to_string_lossy().into_owned();
            remove_namespace(&agent_runtime::task_netns_name(&id));
        }
    }
    for name in network_namespaces(data_dir) {
        remove_namespace(&name);
    }
}

/// The namespaces that the daemon with data directory `data_dir` made for its networks
/// and that exist now; none before it joined a cluster.
pub fn network_namespaces(data_dir: &std::path::Path) -> Vec<String> {
    let node_id = std::fs::read(data_dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["node_id"].as_str().map(str::to_owned));
    let Some(node_id) = node_id else {
        return Vec::new();
    };
    let prefix = worker::net::overlay::namespace_prefix(&node_id);
    std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|ns| ns.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Runs `f` on a new thread inside the network namespace at `netns` (a file under
/// /var/run/netns): the sockets it makes belong to that namespace.
pub fn inside<T: Send + 'static>(
    netns: std::path::PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
        // SAFETY: moves only this thread into the namespace.
        let entered =
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(
            entered,
            0,
            "setns {}: {}",
            netns.display(),
            std::io::Error::last_os_error()
        );
        f()
    })
}

/// Kills every process in namespace `name`, then removes it.
fn remove_namespace(name: &str) {
    kill_processes(name);
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(name));
}

/// Kills every process in namespace `name` with SIGKILL (a host losing power).
pub fn kill_processes(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: sending SIGKILL to a process in a namespace this harness made.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// The mount namespace of process `pid` (as `mnt:[inode]`). `ip netns exec` gives each
/// daemon on a test host a mount namespace of its own, which its shims and tasks inherit,
/// and in which the daemon's `ip netns add` mounts live.
pub fn mount_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A mount namespace of a test host's daemon, held open: while it is held, its inode (the
/// number in its name) cannot go to a namespace made later, say by the `ip` of a test that
/// runs beside this one, which the harness would then kill as if it were this host's.
pub struct MountNamespace {
    name: String,
    _held: std::fs::File,
}

impl MountNamespace {
    /// The mount namespace process `pid` is in now.
    pub fn of(pid: u32) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let held = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
        let name = format!("mnt:[{}]", held.metadata().ok()?.ino());
        Some(Self { name, _held: held })
    }

    /// `mnt:[inode]`, as [`mount_namespace`] gives it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A process in mount namespace `mnt`, if one is left.
pub fn process_in(mnt: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| mount_namespace(*pid).as_deref() == Some(mnt))
}

/// Kills (SIGKILL) every process in mount namespace `mnt`: a test host's daemon with its
/// shims and tasks, which run in namespaces of their own (`skt-*`) where the host's network
/// namespace does not find them. Never the test process's own namespace.
pub fn kill_mount_namespace(mnt: &str) {
    if mount_namespace(std::process::id()).as_deref() == Some(mnt) {
        return;
    }
    // Twice: a process may have forked while the first pass ran.
    for _ in 0..2 {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if mount_namespace(pid as u32).as_deref() == Some(mnt) {
                // SAFETY: SIGKILL to a process of a test host this harness started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// A switch and the host namespaces attached to it; removed (with every process inside)
/// when dropped.
pub struct TestNetwork {
    switch: String,
    hosts: Vec<String>,
}

impl TestNetwork {
    /// `n` hosts on a fresh switch. Panics with a clear message when namespaces cannot be
    /// made (the tests need root and iproute2).
    pub fn new(n: usize) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_leftovers();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{base}-sw");
        let mut net = Self {
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let host = format!("{base}-h{i}");
            ip(&["netns", "add", &host]);
            net.hosts.push(host.clone());
            let port = format!("h{i}");
            ip(&[
                "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", Self::address(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &host, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// Gives every host `nameserver` as its only resolver, in the resolv.conf that
    /// `ip netns exec` mounts over /etc/resolv.conf for the daemons started afterwards.
    pub fn set_resolver(&self, nameserver: &str) {
        for host in &self.hosts {
            let dir = Path::new(ETC_NETNS).join(host);
            std::fs::create_dir_all(&dir).expect("make /etc/netns/HOST");
            std::fs::write(
                dir.join("resolv.conf"),
                format!("nameserver {nameserver}\n"),
            )
            .expect("write the test host's resolv.conf");
        }
    }

    /// Gives the switch [`OUTSIDE`] on the hosts' network, as a machine outside the cluster
    /// that the hosts reach directly; returns the path of the switch's namespace, where the
    /// test makes that machine's sockets ([`inside`]).
    pub fn outside(&self) -> std::path::PathBuf {
        ip(&[
            "-n",
            &self.switch,
            "addr",
            "replace",
            &format!("{OUTSIDE}/24"),
            "dev",
            "br0",
        ]);
        Path::new("/var/run/netns").join(&self.switch)
    }

    /// Host `i`'s address (1-based).
    pub fn address(i: usize) -> String {
        format!("{SUBNET}.{}", i + 1)
    }

    /// Host `i`'s namespace name.
    pub fn namespace(&self, i: usize) -> &str {
        &self.hosts[i - 1]
    }

    /// Cuts the hosts in `side` off from every other host (traffic within each side still
    /// flows); replaces any earlier partition.
    pub fn partition(&self, side: &[usize]) {
        let ports: Vec<String> = side.iter().map(|i| format!("\"h{i}\"")).collect();
        let set = format!("{{ {} }}", ports.join(", "));
        self.drop_on_switch(&format!(
            "  iifname {set} oifname != {set} drop\n  iifname != {set} oifname {set} drop\n"
        ));
    }

    /// Drops every frame host `from` sends to host `to`, for each `(from, to)` in `links`:
    /// one direction only, so `(a, b)` alone is a one-way partition, and cutting `a`-`c` both
    /// ways while `b` still reaches both is a bridge. Replaces any earlier partition.
    pub fn cut(&self, links: &[(usize, usize)]) {
        let rules: String = links
            .iter()
            .map(|(from, to)| format!("  iifname \"h{from}\" oifname \"h{to}\" drop\n"))
            .collect();
        self.drop_on_switch(&rules);
    }

    /// Replaces any earlier partition with the switch's forward chain of `rules`.
    fn drop_on_switch(&self, rules: &str) {
        self.heal();
        let script = format!(
            "table bridge {CUT_TABLE} {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n{rules} }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("{}-cut.nft", self.switch));
        std::fs::write(&path, script).expect("write the partition rules");
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "nft",
                "-f",
                &path.to_string_lossy(),
            ],
        );
        let _ = std::fs::remove_file(path);
    }

    /// Removes any partition.
    pub fn heal(&self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.switch,
                "nft",
                "delete",
                "table",
                "bridge",
                CUT_TABLE,
            ])
            .output();
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for host in &self.hosts {
            remove_namespace(host);
        }
        remove_namespace(&self.switch);
    }
}
