//! Overlay networks on one node: per network, a namespace holding a bridge and a VXLAN
//! device, so that tasks on different nodes share one layer-2 segment; per task, a namespace
//! joined to that bridge by a veth pair, with the address the allocator gave the task.
//!
//! Forwarding is programmed from what the dispatcher sends, not learnt by gossip: each peer
//! node (a VTEP) gets an all-zero FDB entry, so broadcast and unknown traffic (ARP first)
//! reaches every node of the network, and each address held on another node gets an FDB
//! entry for its MAC pointing at that node alone. Without those, every unicast frame would
//! go to every peer (the VXLAN device learns nothing), so each node of a network would
//! carry, and drop, the traffic of all the others. A MAC follows from its IPv4 address
//! ([`mac_of`], as Docker's), so that nodes can name each other's MACs without asking.
//! Frames for the network's other addresses still reach the right node through the local
//! bridge, which learns where replies come from.
//! The VXLAN device is made in the node's own namespace, where its UDP socket stays bound to
//! the node's underlay address, then moved into the network's namespace.
//!
//! A network's namespace holds no firewall rules, so bridged frames skip netfilter there
//! (`bridge-nf-call-*` off where br_netfilter is loaded): otherwise every frame would be
//! handed to the IP hooks, with a route lookup, twice per node on its way. Overlays carry
//! IPv4 only, so IPv6 is off on their interfaces (as Docker's): its router solicitations
//! and multicast reports would otherwise be flooded to every node of the network.
//!
//! The overlays' VXLAN packets are left untracked ([`untracked_ruleset`], `notrack` on the
//! data path port, in a table of their own applied whatever the routing mesh's mode): the
//! connections inside them are tracked where they start and end, while the outer UDP flows
//! get a source port per inner connection, so tracking them would cost a conntrack lookup
//! per packet and an entry per inner connection on every node they cross, wherever anything
//! else (the mesh, the bridges' NAT) has turned conntrack on in the node's namespace.
//!
//! Every operation is idempotent, so the agent can re-apply its whole state after a restart.
//! The links are made with iproute2 (`ip`, `bridge`), which the node needs anyway, through
//! [`Commands`].
//!
//! A namespace's name under /var/run/netns is a bind mount, and mounts belong to a mount
//! namespace: a skiffd started under `ip netns exec` (as `deploy/local-cluster.sh` runs
//! every host's) gets one of its own, so a skiffd started again after it sees the names its
//! predecessor made as plain empty files ([`NamespaceFile::Stale`]). The namespaces behind
//! them are gone with that mount namespace (so are their bridges, VXLAN devices and the
//! veth pairs into them), or live on where nobody can reach them (held by the process
//! runtime's shims, still in the old mount namespace). Either way the restarted daemon
//! rebuilds: it removes the name, which also drops the old mount wherever it is (so an
//! orphaned namespace goes and frees its VNI), makes the network again, mounts each adopted
//! task's namespace again from its process ([`adopt_task_namespace`]) and joins it to the new
//! bridge. Under systemd the mounts stay visible and all of this is a no-op.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::commands::{Commands, Missing, NamespaceFile};

/// The default VXLAN port (IANA), as Docker's.
pub const VXLAN_PORT: u16 = 4789;
/// Room for the VXLAN header inside a 1500-byte underlay.
const MTU: &str = "1450";
/// How long a new VXLAN device waits for its VNI and port to be freed by the device of a
/// namespace the kernel is still tearing down (the kernel frees namespaces asynchronously,
/// usually within a second).
const VNI_RELEASE: Duration = Duration::from_secs(10);

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
    /// The UDP port of its VXLAN traffic (the cluster's data path port).
    pub port: u16,
}

impl Overlay {
    /// The name of its VXLAN device inside the network's namespace.
    fn vxlan_device(&self) -> String {
        format!("vx{}", self.vni)
    }
}

/// The node's side of its overlays.
#[derive(Debug)]
pub struct Node {
    /// How it changes the node's network.
    commands: Arc<dyn Commands>,
    /// Short node identity, part of every name so that several nodes can share a machine.
    tag: String,
    /// The node's underlay address, the local VTEP.
    underlay: Ipv4Addr,
    /// The namespace the node itself lives in (`None`: the current one).
    home: Option<String>,
    /// The UDP port of each network's VXLAN device (by namespace) as this process made or
    /// checked it, so that [`Node::ensure_network`], called on every change, looks at the
    /// device only when it may be on another port.
    ports: Mutex<HashMap<String, u16>>,
}

impl Node {
    /// `node_id`'s overlays, with `underlay` as the VTEP address, made with `commands`.
    /// `home` names the network namespace the node runs in when it is not the caller's own
    /// (test hosts).
    pub fn new(
        node_id: &str,
        underlay: Ipv4Addr,
        home: Option<String>,
        commands: Arc<dyn Commands>,
    ) -> Self {
        Self {
            commands,
            tag: node_id.chars().take(8).collect(),
            underlay,
            home,
            ports: Mutex::default(),
        }
    }

    /// The namespace holding `network`'s bridge on this node.
    pub fn network_namespace(&self, network: &Overlay) -> String {
        format!("{}{}", namespace_prefix(&self.tag), short(&network.id))
    }

    /// Makes (or keeps) the namespace, bridge and VXLAN device of `network`; a name left by
    /// an earlier skiffd without a namespace this process can use is made again.
    pub fn ensure_network(&self, network: &Overlay) -> Result<String, NetError> {
        let ns = self.network_namespace(network);
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        match self.commands.namespace(&ns) {
            NamespaceFile::Live => {
                if ports.get(&ns) != Some(&network.port) {
                    self.keep_port(network, &ns)?;
                    ports.insert(ns.clone(), network.port);
                }
                return Ok(ns);
            }
            NamespaceFile::Stale => {
                tracing::info!(network = %network.id, namespace = %ns, "the network's namespace was made by an earlier skiffd in a mount namespace this one does not see; making it again");
                self.commands.run("ip", &["netns", "del", &ns])?;
            }
            NamespaceFile::Missing => {}
        }
        self.commands.run("ip", &["netns", "add", &ns])?;
        if let Err(e) = self.build_network(network, &ns) {
            let _ = self.commands.run("ip", &["netns", "del", &ns]);
            return Err(e);
        }
        ports.insert(ns.clone(), network.port);
        Ok(ns)
    }

    fn build_network(&self, network: &Overlay, ns: &str) -> Result<(), NetError> {
        self.commands
            .run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        let settings = [
            ("net.bridge.bridge-nf-call-iptables", "0"),
            ("net.bridge.bridge-nf-call-ip6tables", "0"),
            ("net.bridge.bridge-nf-call-arptables", "0"),
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ];
        for (key, value) in settings {
            if let Err(e) = self
                .commands
                .write_sysctl(Some(ns), key, value, Missing::Fine)
            {
                tracing::warn!(network = %network.id, error = %e, "cannot set {key}");
            }
        }
        self.commands
            .run("ip", &["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        self.commands.run(
            "ip",
            &["-n", ns, "addr", "add", &network.gateway, "dev", "br0"],
        )?;
        self.commands
            .run("ip", &["-n", ns, "link", "set", "br0", "mtu", MTU, "up"])?;
        self.add_vxlan(network, ns)
    }

    /// Makes the network's VXLAN device again where it is missing or on another UDP port
    /// than the network's: made by an earlier skiffd before the cluster's data path port
    /// reached this node, say.
    /// The bridge and the tasks on it stay; [`Node::set_peers`] programs the new device.
    fn keep_port(&self, network: &Overlay, ns: &str) -> Result<(), NetError> {
        let vxlan = network.vxlan_device();
        match self
            .commands
            .output("ip", &["-n", ns, "-d", "link", "show", &vxlan])
        {
            Ok(shown) if shown.contains(&format!(" dstport {} ", network.port)) => return Ok(()),
            Ok(_) => self
                .commands
                .run("ip", &["-n", ns, "link", "del", &vxlan])?,
            Err(_) => {}
        }
        tracing::info!(network = %network.id, port = network.port, "making the network's VXLAN device on the cluster's data path port");
        self.add_vxlan(network, ns)
    }

    /// Adds the network's VXLAN device, made in the node's namespace (where its UDP socket
    /// must live) and moved into the network's, to the bridge.
    fn add_vxlan(&self, network: &Overlay, ns: &str) -> Result<(), NetError> {
        let vni = network.vni.to_string();
        let vxlan = network.vxlan_device();
        let port = network.port.to_string();
        let local = self.underlay.to_string();
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
        // A device of that name in the node's namespace was left by an earlier attempt whose
        // move failed: it holds the VNI, and the name.
        let mut stale = home.clone();
        stale.extend(["link", "del", &vxlan]);
        let _ = self.commands.run("ip", &stale);
        // The VNI may still be held by the device of a namespace the kernel is tearing down
        // (an earlier skiffd's, just dropped by `ensure_network`); it is freed within moments.
        let started = Instant::now();
        let deadline = started + VNI_RELEASE;
        loop {
            match self.commands.run("ip", &add) {
                // "File exists", or with newer iproute2 "A VXLAN device with the specified
                // VNI already exists".
                Err(NetError::Command { message, .. })
                    if message.contains("exists") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        if started.elapsed() >= Duration::from_millis(100) {
            tracing::info!(network = %network.id, waited = ?started.elapsed(), "the network's VNI was freed by the namespace of an earlier skiffd");
        }
        let mut mv = home.clone();
        mv.extend(["link", "set", &vxlan, "netns", ns]);
        self.commands.run("ip", &mv)?;
        self.commands.run(
            "ip",
            &[
                "-n", ns, "link", "set", &vxlan, "mtu", MTU, "master", "br0", "up",
            ],
        )
    }

    /// Points `network`'s broadcast and unknown traffic at exactly these peer VTEPs, and the
    /// frames for each of `endpoints` (an address held on another node, and that node's
    /// VTEP) at its node alone.
    pub fn set_peers(
        &self,
        network: &Overlay,
        peers: &[Ipv4Addr],
        endpoints: &[(Ipv4Addr, Ipv4Addr)],
    ) -> Result<(), NetError> {
        let ns = self.network_namespace(network);
        let vxlan = network.vxlan_device();
        let listed = self
            .commands
            .output("bridge", &["-n", &ns, "fdb", "show", "dev", &vxlan])?;
        // "MAC dst VTEP self permanent": the entries programmed here (the bridge's own
        // learnt entries, "MAC master br0", have no dst).
        let programmed: Vec<(&str, &str)> = listed
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let mac = words.next()?;
                words.find(|w| *w == "dst")?;
                Some((mac, words.next()?))
            })
            .collect();
        self.set_flooding(&ns, &vxlan, &programmed, peers)?;
        let wanted: Vec<(String, String)> = endpoints
            .iter()
            .filter(|(_, vtep)| *vtep != self.underlay)
            .map(|(address, vtep)| (mac_of(*address), vtep.to_string()))
            .collect();
        for (mac, _) in programmed
            .iter()
            .filter(|(mac, _)| *mac != FLOOD_MAC && !wanted.iter().any(|(m, _)| m == mac))
        {
            self.commands.run(
                "bridge",
                &["-n", &ns, "fdb", "del", mac, "dev", &vxlan, "self"],
            )?;
        }
        for (mac, vtep) in wanted
            .iter()
            .filter(|(mac, vtep)| !programmed.contains(&(mac.as_str(), vtep.as_str())))
        {
            self.commands.run(
                "bridge",
                &[
                    "-n",
                    &ns,
                    "fdb",
                    "replace",
                    mac,
                    "dev",
                    &vxlan,
                    "dst",
                    vtep,
                    "self",
                    "permanent",
                ],
            )?;
        }
        Ok(())
    }

    /// Programs the all-zero entries of `vxlan` (broadcast and unknown unicast) for exactly
    /// `peers`, given what is `programmed` now.
    fn set_flooding(
        &self,
        ns: &str,
        vxlan: &str,
        programmed: &[(&str, &str)],
        peers: &[Ipv4Addr],
    ) -> Result<(), NetError> {
        let current: Vec<&str> = programmed
            .iter()
            .filter(|(mac, _)| *mac == FLOOD_MAC)
            .map(|(_, vtep)| *vtep)
            .collect();
        let wanted: Vec<String> = peers
            .iter()
            .filter(|p| **p != self.underlay)
            .map(Ipv4Addr::to_string)
            .collect();
        for stale in current.iter().filter(|c| !wanted.iter().any(|w| w == *c)) {
            self.commands.run(
                "bridge",
                &[
                    "-n", ns, "fdb", "del", FLOOD_MAC, "dev", vxlan, "dst", stale,
                ],
            )?;
        }
        for new in wanted.iter().filter(|w| !current.contains(&w.as_str())) {
            self.commands.run(
                "bridge",
                &[
                    "-n", ns, "fdb", "append", FLOOD_MAC, "dev", vxlan, "dst", new,
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
        if self
            .commands
            .output("ip", &["-n", &ns, "link", "show", &port])
            .is_ok()
        {
            return Ok(());
        }
        // An interface of that name in the task's namespace leads to the bridge of a network
        // namespace an earlier skiffd made (the task was adopted after a restart): replaced.
        let _ = self
            .commands
            .run("ip", &["-n", task_ns, "link", "del", ifname]);
        let mac = mac_for(address)?;
        self.commands.run(
            "ip",
            &[
                "-n", &ns, "link", "add", &port, "mtu", MTU, "type", "veth", "peer", "name",
                ifname, "address", &mac, "netns", task_ns,
            ],
        )?;
        self.commands.run(
            "ip",
            &["-n", &ns, "link", "set", &port, "master", "br0", "up"],
        )?;
        self.commands
            .run("ip", &["-n", task_ns, "link", "set", "lo", "up"])?;
        let key = format!("net.ipv6.conf.{ifname}.disable_ipv6");
        self.commands
            .write_sysctl(Some(task_ns), &key, "1", Missing::Fine)?;
        self.commands.run(
            "ip",
            &["-n", task_ns, "addr", "add", address, "dev", ifname],
        )?;
        self.commands.run(
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
            self.commands.run(
                "ip",
                &["-n", task_ns, "route", "replace", "default", "via", gateway],
            )?;
        }
        Ok(())
    }

    /// Removes `network` from this node (its namespace, bridge and VXLAN device).
    pub fn remove_network(&self, network: &Overlay) {
        let ns = self.network_namespace(network);
        let _ = self.commands.run("ip", &["netns", "del", &ns]);
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ns);
    }

    /// The node's underlay address (its VTEP).
    pub(crate) fn underlay(&self) -> Ipv4Addr {
        self.underlay
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
        self.commands.run("ip", &all)
    }

    /// `ip ARGS` in `network`'s namespace.
    pub(crate) fn in_network(&self, network: &Overlay, args: &[&str]) -> Result<(), NetError> {
        let ns = self.network_namespace(network);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        self.commands.run("ip", &all)
    }

    /// Sets a sysctl of the node's own namespace.
    pub(crate) fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        self.commands
            .write_sysctl(self.home.as_deref(), key, value, Missing::Error)
    }
}

/// The nftables table that leaves the overlays' VXLAN packets untracked.
pub const UNTRACKED_TABLE: &str = "skiffvxlan";

/// The script of [`UNTRACKED_TABLE`]: the node's VXLAN packets on `port`, in and out, skip
/// conntrack. Delete-then-add replaces the table whether or not it exists.
pub fn untracked_ruleset(port: u16) -> String {
    let chain = |name: &str, hook: &str| {
        format!("  chain {name} {{\n    type filter hook {hook} priority raw; policy accept;\n    udp dport {port} notrack\n  }}\n")
    };
    format!(
        "table ip {UNTRACKED_TABLE}\ndelete table ip {UNTRACKED_TABLE}\ntable ip {UNTRACKED_TABLE} {{\n{}{}}}\n",
        chain("vxlan_in", "prerouting"),
        chain("vxlan_out", "output")
    )
}

/// The FDB entry of broadcast and unknown unicast frames.
const FLOOD_MAC: &str = "00:00:00:00:00:00";

/// The MAC address of the interface holding `address` on an overlay: locally administered,
/// 02:42 and the address's four bytes, as Docker's.
pub fn mac_of(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The MAC address of the interface holding `address` (CIDR).
pub fn mac_for(address: &str) -> Result<String, NetError> {
    address
        .split('/')
        .next()
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .map(mac_of)
        .ok_or_else(|| NetError::Address(address.to_owned()))
}

/// The start of the names of `node_id`'s network namespaces (to find them all).
pub fn namespace_prefix(node_id: &str) -> String {
    format!("skn-{}-", short(node_id))
}

/// Makes the namespace a task runs in (where the runtime looks for it).
pub fn create_task_namespace(commands: &dyn Commands, task_id: &str) -> Result<(), NetError> {
    let ns = task_namespace(task_id);
    match commands.namespace(&ns) {
        NamespaceFile::Live => return Ok(()),
        // Left by an earlier skiffd for a task that never ran.
        NamespaceFile::Stale => commands.run("ip", &["netns", "del", &ns])?,
        NamespaceFile::Missing => {}
    }
    commands.run("ip", &["netns", "add", &ns])
}

/// Makes the namespace of a task adopted after a restart reachable by its name again, from
/// `pid`, a process of the task (which runs in it), where the name is not a namespace to this
/// process: an earlier skiffd mounted it in a mount namespace this one does not see.
pub fn adopt_task_namespace(
    commands: &dyn Commands,
    task_id: &str,
    pid: i32,
) -> Result<(), NetError> {
    let ns = task_namespace(task_id);
    match commands.namespace(&ns) {
        NamespaceFile::Live => return Ok(()),
        NamespaceFile::Stale => commands.run("ip", &["netns", "del", &ns])?,
        NamespaceFile::Missing => {}
    }
    commands.run("ip", &["netns", "attach", &ns, &pid.to_string()])
}

/// Whether a task's namespace is there for this process to enter.
pub fn task_namespace_is_live(commands: &dyn Commands, task_id: &str) -> bool {
    commands.namespace(&task_namespace(task_id)) == NamespaceFile::Live
}

/// Removes a task's namespace (and so its end of every veth pair).
pub fn remove_task_namespace(commands: &dyn Commands, task_id: &str) {
    let _ = commands.run("ip", &["netns", "del", &task_namespace(task_id)]);
}

/// The name of a task's namespace (the one the runtimes enter).
pub fn task_namespace(task_id: &str) -> String {
    agent_runtime::task_netns_name(task_id)
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A bridge-side veth name (at most 15 bytes) unique per task namespace and interface.
pub(crate) fn veth_name(task_ns: &str, ifname: &str) -> String {
    let mut hash: u32 = 2166136261;
    for b in task_ns.bytes().chain(ifname.bytes()) {
        hash = (hash ^ b as u32).wrapping_mul(16777619);
    }
    format!("vt{hash:08x}")
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
        let node = Node::new(
            "0123456789abcdef",
            Ipv4Addr::new(10, 0, 0, 1),
            None,
            Arc::new(super::super::commands::HostCommands),
        );
        let net = Overlay {
            id: "netid1234567".into(),
            vni: 4096,
            gateway: "10.0.1.1/24".into(),
            port: VXLAN_PORT,
        };
        assert_eq!(node.network_namespace(&net), "skn-01234567-netid123");
    }

    #[test]
    fn the_vxlan_packets_skip_conntrack_both_ways_on_the_data_path_port() {
        let script = untracked_ruleset(7789);
        assert!(
            script.starts_with("table ip skiffvxlan\ndelete table ip skiffvxlan\n"),
            "{script}"
        );
        for hook in ["prerouting", "output"] {
            assert!(
                script.contains(&format!(
                    "type filter hook {hook} priority raw; policy accept;\n    udp dport 7789 notrack\n"
                )),
                "{hook}: {script}"
            );
        }
        assert!(!script.contains("4789"), "{script}");
    }
}
