//! Overlay networks on one node: per network, a namespace holding a bridge and a VXLAN
//! device, so that tasks on different nodes share one layer-2 segment; per task, a namespace
//! joined to that bridge by a veth pair, with the address the allocator gave the task.
//!
//! Forwarding is programmed from what the dispatcher sends, not learnt by gossip: each peer
//! node (a VTEP) gets an all-zero FDB entry, so broadcast and unknown traffic (ARP first)
//! reaches every node of the network, and the local bridge learns where replies come from.
//! The VXLAN device is made in the node's own namespace, where its UDP socket stays bound to
//! the node's underlay address, then moved into the network's namespace.
//!
//! Every operation is idempotent, so the agent can re-apply its whole state after a restart.
//! The links are made with iproute2 (`ip`, `bridge`), which the node needs anyway.

use std::net::Ipv4Addr;
use std::process::Command;

/// The default VXLAN port (IANA), as Docker's.
pub const VXLAN_PORT: u16 = 4789;
/// Room for the VXLAN header inside a 1500-byte underlay.
const MTU: &str = "1450";

/// What went wrong setting up the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        message: String,
    },
    /// An address from the allocator is not one.
    #[error("invalid address {0:?} (expected CIDR such as 10.0.1.5/24)")]
    Address(String),
    /// A port to publish on this node is taken.
    #[error("cannot publish port {port}/{protocol} on this node: {source}; another task or program holds it, so publish another port or free it")]
    Port {
        /// The port asked for (0: any).
        port: u16,
        /// "tcp" or "udp".
        protocol: &'static str,
        /// The socket error.
        source: std::io::Error,
    },
}

/// One overlay network as the node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The network's ID.
    pub id: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// The gateway in CIDR form (10.0.1.1/24): the bridge's own address.
    pub gateway: String,
}

/// The node's side of its overlays.
#[derive(Debug, Clone)]
pub struct Node {
    /// Short node identity, part of every name so that several nodes can share a machine.
    tag: String,
    /// The node's underlay address, the local VTEP.
    underlay: Ipv4Addr,
    /// The namespace the node itself lives in (`None`: the current one).
    home: Option<String>,
}

impl Node {
    /// `node_id`'s overlays, with `underlay` as the VTEP address. `home` names the network
    /// namespace the node runs in when it is not the caller's own (test hosts).
    pub fn new(node_id: &str, underlay: Ipv4Addr, home: Option<String>) -> Self {
        Self {
            tag: node_id.chars().take(8).collect(),
            underlay,
            home,
        }
    }

    /// The namespace holding `network`'s bridge on this node.
    pub fn network_namespace(&self, network: &Overlay) -> String {
        format!("{}{}", namespace_prefix(&self.tag), short(&network.id))
    }

    /// Makes (or keeps) the namespace, bridge and VXLAN device of `network`.
    pub fn ensure_network(&self, network: &Overlay) -> Result<String, NetError> {
        let ns = self.network_namespace(network);
        if namespace_exists(&ns) {
            return Ok(ns);
        }
        run("ip", &["netns", "add", &ns])?;
        let made = self.build_network(network, &ns);
        if made.is_err() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
        made.map(|()| ns)
    }

    fn build_network(&self, network: &Overlay, ns: &str) -> Result<(), NetError> {
        let vni = network.vni.to_string();
        let vxlan = format!("vx{}", network.vni);
        let port = VXLAN_PORT.to_string();
        let local = self.underlay.to_string();
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        run(
            "ip",
            &["-n", ns, "addr", "add", &network.gateway, "dev", "br0"],
        )?;
        run("ip", &["-n", ns, "link", "set", "br0", "mtu", MTU, "up"])?;
        let home = self.home_args();
        let mut add = home.clone();
        add.extend([
            "link",
            "add",
            &vxlan,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dstport",
            &port,
            "nolearning",
        ]);
        run("ip", &add)?;
        let mut mv = home.clone();
        mv.extend(["link", "set", &vxlan, "netns", ns]);
        run("ip", &mv)?;
        run(
            "ip",
            &[
                "-n", ns, "link", "set", &vxlan, "mtu", MTU, "master", "br0", "up",
            ],
        )
    }

    /// Points `network`'s broadcast and unknown traffic at exactly these peer VTEPs.
    pub fn set_peers(&self, network: &Overlay, peers: &[Ipv4Addr]) -> Result<(), NetError> {
        let ns = self.network_namespace(network);
        let vxlan = format!("vx{}", network.vni);
        let listed = output("bridge", &["-n", &ns, "fdb", "show", "dev", &vxlan])?;
        let current: Vec<String> = listed
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00"))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "dst")?;
                words.next().map(str::to_owned)
            })
            .collect();
        let wanted: Vec<String> = peers
            .iter()
            .filter(|p| **p != self.underlay)
            .map(Ipv4Addr::to_string)
            .collect();
        for stale in current.iter().filter(|c| !wanted.contains(c)) {
            run(
                "bridge",
                &[
                    "-n",
                    &ns,
                    "fdb",
                    "del",
                    "00:00:00:00:00:00",
                    "dev",
                    &vxlan,
                    "dst",
                    stale,
                ],
            )?;
        }
        for new in wanted.iter().filter(|w| !current.contains(w)) {
            run(
                "bridge",
                &[
                    "-n",
                    &ns,
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &vxlan,
                    "dst",
                    new,
                ],
            )?;
        }
        Ok(())
    }

    /// Joins the task namespace `task_ns` to `network` as interface `ifname` with `address`
    /// (CIDR); with `default_route`, its default route goes through the network's gateway.
    pub fn attach(
        &self,
        network: &Overlay,
        task_ns: &str,
        ifname: &str,
        address: &str,
        default_route: bool,
    ) -> Result<(), NetError> {
        let ns = self.network_namespace(network);
        let port = veth_name(task_ns, ifname);
        if output("ip", &["-n", &ns, "link", "show", &port]).is_ok() {
            return Ok(());
        }
        run(
            "ip",
            &[
                "-n", &ns, "link", "add", &port, "mtu", MTU, "type", "veth", "peer", "name",
                ifname, "netns", task_ns,
            ],
        )?;
        run(
            "ip",
            &["-n", &ns, "link", "set", &port, "master", "br0", "up"],
        )?;
        run("ip", &["-n", task_ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", task_ns, "addr", "add", address, "dev", ifname],
        )?;
        run(
            "ip",
            &["-n", task_ns, "link", "set", ifname, "mtu", MTU, "up"],
        )?;
        if default_route {
            let gateway = network
                .gateway
                .split('/')
                .next()
                .filter(|g| g.parse::<Ipv4Addr>().is_ok())
                .ok_or_else(|| NetError::Address(network.gateway.clone()))?;
            run(
                "ip",
                &["-n", task_ns, "route", "replace", "default", "via", gateway],
            )?;
        }
        Ok(())
    }

    /// Removes `network` from this node (its namespace, bridge and VXLAN device).
    pub fn remove_network(&self, network: &Overlay) {
        let _ = run("ip", &["netns", "del", &self.network_namespace(network)]);
    }

    fn home_args(&self) -> Vec<&str> {
        match &self.home {
            Some(home) => vec!["-n", home.as_str()],
            None => Vec::new(),
        }
    }

    /// The node's interface into the ingress overlay (one per node).
    pub(crate) fn leg_name(&self) -> String {
        "skin0".to_owned()
    }

    /// `ip ARGS` in the node's own namespace.
    pub(crate) fn home_command(&self, args: &[&str]) -> Result<(), NetError> {
        let mut all = self.home_args();
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip ARGS` in `network`'s namespace.
    pub(crate) fn in_network(&self, network: &Overlay, args: &[&str]) -> Result<(), NetError> {
        let ns = self.network_namespace(network);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Sets a sysctl of the node's own namespace.
    pub(crate) fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        match &self.home {
            // /proc/sys/net shows the namespace of the process that reads it.
            Some(home) => run(
                "ip",
                &[
                    "netns",
                    "exec",
                    home,
                    "sh",
                    "-c",
                    &format!("echo {value} > {path}"),
                ],
            ),
            None => std::fs::write(&path, value).map_err(|e| NetError::Command {
                command: format!("write {path}"),
                message: e.to_string(),
            }),
        }
    }
}

/// The start of the names of `node_id`'s network namespaces (to find them all).
pub fn namespace_prefix(node_id: &str) -> String {
    format!("skn-{}-", short(node_id))
}

/// Makes the namespace a task runs in (where the runtime looks for it).
pub fn create_task_namespace(task_id: &str) -> Result<(), NetError> {
    let ns = task_namespace(task_id);
    if !namespace_exists(&ns) {
        run("ip", &["netns", "add", &ns])?;
    }
    Ok(())
}

/// Removes a task's namespace (and so its end of every veth pair).
pub fn remove_task_namespace(task_id: &str) {
    let _ = run("ip", &["netns", "del", &task_namespace(task_id)]);
}

/// The name of a task's namespace (the one the runtimes enter).
pub fn task_namespace(task_id: &str) -> String {
    agent_runtime::task_netns_name(task_id)
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A bridge-side veth name (at most 15 bytes) unique per task namespace and interface.
fn veth_name(task_ns: &str, ifname: &str) -> String {
    let mut hash: u32 = 2166136261;
    for b in task_ns.bytes().chain(ifname.bytes()) {
        hash = (hash ^ b as u32).wrapping_mul(16777619);
    }
    format!("vt{hash:08x}")
}

fn namespace_exists(ns: &str) -> bool {
    std::path::Path::new("/var/run/netns").join(ns).exists()
}

fn run(program: &str, args: &[&str]) -> Result<(), NetError> {
    output(program, args).map(drop)
}

fn output(program: &str, args: &[&str]) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetError::Command {
            command: command.clone(),
            message: format!("{e} (is iproute2 installed?)"),
        })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_differ() {
        let a = veth_name("skt-abcdefghijklmnopqrstuvwxy", "eth0");
        let b = veth_name("skt-abcdefghijklmnopqrstuvwxz", "eth0");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
        let node = Node::new("0123456789abcdef", Ipv4Addr::new(10, 0, 0, 1), None);
        let net = Overlay {
            id: "netid1234567".into(),
            vni: 4096,
            gateway: "10.0.1.1/24".into(),
        };
        assert_eq!(node.network_namespace(&net), "skn-01234567-netid123");
    }
}
