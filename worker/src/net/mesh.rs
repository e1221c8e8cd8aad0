//! The kernel routing mesh: on every node, a published port accepts connections addressed to
//! any of the node's own addresses and sends each new one to the next running task of the
//! service, round-robin, wherever the task runs — nftables DNAT over a `numgen` map, with
//! conntrack carrying the rest of the flow. Never IPVS, which many kernels lack.
//!
//! The node reaches task addresses through its *leg* into the ingress overlay: a veth pair
//! from the node's namespace to the ingress bridge, holding the node's own ingress address.
//! Forwarded connections leave through the leg masqueraded to that address, so replies come
//! back through this node whichever node the task is on.
//!
//! Conntrack carries each connection after its first packet, so a connection lives as long
//! as its conntrack entry: were it to expire while the connection is quiet (five days by
//! default, less where the node's settings say so), the next packet would start a new
//! entry, be sent to the *next* task and be reset. The mesh gives the connections it
//! forwards a timeout policy of its own ([`CONNTRACK_TABLE`], twenty days of quiet, whatever
//! the node's sysctls say), in a table of its own that is made once and never rebuilt:
//! deleting a policy makes the entries that use it fall back to the node's defaults. Swarm's
//! IPVS mesh drops quiet connections after fifteen minutes.
//!
//! The overlays' VXLAN packets stay untracked here too: their `notrack` table is the
//! overlays' own ([`overlay::untracked_ruleset`]), applied in both mesh modes, since the
//! NAT the mesh needs turns conntrack on for every packet of the node's namespace.
//!
//! The cluster's own traffic is never the mesh's: before any DNAT, both NAT chains let
//! through, untouched, whatever goes to or comes from a node's cluster address on the
//! cluster's ports (every node's cluster port, TCP, and the data path port, UDP) — see
//! [`Protected`]. The control API refuses to publish those ports; this holds even for a
//! port that got past it, which would otherwise take every manager's Raft and session
//! traffic to a task and cost the cluster its quorum.
//!
//! The whole table is rebuilt in one `nft -f` transaction per change, so no stale rule
//! survives and no half-applied state is ever visible.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::commands::Commands;
use super::overlay::{self, NetError, Node, Overlay};

/// The nftables table that holds the mesh.
pub const TABLE: &str = "skiffmesh";

/// The nftables table holding the conntrack timeout policy of forwarded connections.
pub const CONNTRACK_TABLE: &str = "skiffconntrack";

/// How long a forwarded TCP connection may stay quiet (twenty days; the kernel's default is
/// five). Conntrack counts in jiffies as a signed 32-bit difference, so this stays well
/// below the 24.8 days that allows at 1000 Hz.
pub const ESTABLISHED_TIMEOUT_SECS: u32 = 20 * 24 * 3600;

/// The conntrack table's script: every connection this namespace DNATs (the mesh, ports
/// published in host mode, a task's VIPs) gets the long established timeout, set on its
/// first packet, after NAT chose its destination and before the entry is confirmed.
pub fn conntrack_ruleset() -> String {
    let rule = "ct state new ct status dnat ct timeout set \"forwarded\"";
    format!(
        "table ip {CONNTRACK_TABLE} {{\n  ct timeout forwarded {{\n    protocol tcp;\n    l3proto ip;\n    policy = {{ established: {ESTABLISHED_TIMEOUT_SECS} }}\n  }}\n  chain prerouting {{\n    type filter hook prerouting priority filter; policy accept;\n    {rule}\n  }}\n  chain output {{\n    type filter hook output priority filter; policy accept;\n    {rule}\n  }}\n}}\n"
    )
}

/// Makes the conntrack table in `home` (or the caller's namespace) unless it is there.
/// Never replaced: connections keep the policy for their whole life, across restarts of the
/// node's daemon and changes of the mesh.
pub fn ensure_conntrack(commands: &dyn Commands, home: Option<&str>) -> Result<(), NetError> {
    let list = ["list", "table", "ip", CONNTRACK_TABLE];
    let present = match home {
        Some(ns) => commands.output("ip", &[&["netns", "exec", ns, "nft"][..], &list].concat()),
        None => commands.output("nft", &list),
    };
    if present.is_ok() {
        return Ok(());
    }
    commands.nft(home, &conntrack_ruleset())
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn keyword(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port and the tasks behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on every node.
    pub port: u16,
    /// The port the tasks listen on.
    pub target_port: u16,
    /// The ingress addresses of the running (and healthy) tasks, on any node.
    pub backends: Vec<Ipv4Addr>,
}

/// A port published in host mode by a task on this node: the node's port goes to that
/// task alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on this node.
    pub port: u16,
    /// The task's ingress address and target port.
    pub target: SocketAddrV4,
}

/// The cluster's own addresses and ports, which the mesh never captures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    /// The nodes' cluster (and underlay) addresses, this node's included.
    pub nodes: Vec<Ipv4Addr>,
    /// Their cluster ports (where skiffd listens).
    pub tcp: Vec<u16>,
    /// The data path port (VXLAN).
    pub udp: Vec<u16>,
}

impl Protected {
    /// Whether a published `port` is one of the cluster's own.
    pub fn covers(&self, protocol: Protocol, port: u16) -> bool {
        match protocol {
            Protocol::Tcp => self.tcp.contains(&port),
            Protocol::Udp => self.udp.contains(&port),
        }
    }

    /// The rules that let the cluster's traffic through before any DNAT: to a node's
    /// address on a protected port, or from one.
    fn rules(&self) -> String {
        let set = |items: Vec<String>| format!("{{ {} }}", items.join(", "));
        let mut nodes: Vec<Ipv4Addr> = self.nodes.clone();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return String::new();
        }
        let nodes = set(nodes.iter().map(Ipv4Addr::to_string).collect());
        let mut rules = String::new();
        for (proto, ports) in [("tcp", &self.tcp), ("udp", &self.udp)] {
            let mut ports = ports.clone();
            ports.sort();
            ports.dedup();
            if ports.is_empty() {
                continue;
            }
            let ports = set(ports.iter().map(u16::to_string).collect());
            rules.push_str(&format!(
                "    ip daddr {nodes} {proto} dport {ports} accept
    ip saddr {nodes} {proto} sport {ports} accept
"
            ));
        }
        rules
    }
}

/// The nftables script for the mesh: `leg` is the node's interface into the ingress overlay.
/// A port whose service has no running task refuses
/// connections at once instead of letting them time out. Ports published in host mode
/// (`host`) go to their one task, through the same leg. Traffic of the cluster itself
/// (`protected`) passes before any of them.
pub fn ruleset(
    leg: &str,
    ports: &[Published],
    host: &[HostForward],
    protected: &Protected,
) -> String {
    let mut rules = protected.rules();
    for h in host {
        rules.push_str(&format!(
            "    fib daddr type local {} dport {} dnat to {}\n",
            h.protocol.keyword(),
            h.port,
            h.target
        ));
    }
    for p in ports {
        let proto = p.protocol.keyword();
        let target = if p.backends.is_empty() {
            match p.protocol {
                Protocol::Tcp => "reject with tcp reset".to_owned(),
                Protocol::Udp => "reject".to_owned(),
            }
        } else {
            let map: Vec<String> = p
                .backends
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("{i} : {addr}"))
                .collect();
            format!(
                "dnat to numgen inc mod {} map {{ {} }} : {}",
                p.backends.len(),
                map.join(", "),
                p.target_port
            )
        };
        rules.push_str(&format!(
            "    fib daddr type local {proto} dport {} {target}\n",
            p.port
        ));
    }
    // Delete-then-add makes the transaction replace the table whether or not it exists.
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{rules}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{rules}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{leg}\" masquerade\n  }}\n}}\n"
    )
}

/// Removes the mesh's tables from the node's namespace (the node leaves its cluster).
pub fn remove(commands: &dyn Commands, home: Option<&str>) -> Result<(), NetError> {
    commands.nft(
        home,
        &format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {CONNTRACK_TABLE}\ndelete table ip {CONNTRACK_TABLE}\n"),
    )
}

/// Makes (or keeps) the node's leg into the ingress overlay, with the node's own ingress
/// `address` (CIDR), and lets the node forward what the mesh sends through it. Returns the
/// leg's interface name.
/// The leg's MAC follows from its address, as a task's does, for the other nodes' FDBs.
/// A leg whose other end is not on this process's ingress bridge leads to a namespace an
/// earlier skiffd made, gone or going (see [`overlay`]): it is made again.
pub fn ensure_leg(node: &Node, ingress: &Overlay, address: &str) -> Result<String, NetError> {
    let ns = node.ensure_network(ingress)?;
    let leg = node.leg_name();
    let mac = overlay::mac_for(address)?;
    let present = node.home_command(&["link", "show", &leg]).is_ok();
    if present && node.in_network(ingress, &["link", "show", "leg0"]).is_ok() {
        // Made by an older skiffd, perhaps with another MAC.
        node.home_command(&["link", "set", &leg, "address", &mac])?;
    } else {
        if present {
            node.home_command(&["link", "del", &leg])?;
        }
        node.home_command(&[
            "link", "add", &leg, "address", &mac, "mtu", "1450", "type", "veth", "peer", "name",
            "leg0", "netns", &ns,
        ])?;
        node.in_network(ingress, &["link", "set", "leg0", "master", "br0", "up"])?;
        node.home_command(&["addr", "add", address, "dev", &leg])?;
        node.home_command(&["link", "set", &leg, "up"])?;
    }
    node.sysctl("net.ipv4.ip_forward", "1")?;
    Ok(leg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_spreads_over_its_tasks_and_an_empty_one_refuses() {
        let script = ruleset(
            "skin0",
            &[
                Published {
                    protocol: Protocol::Tcp,
                    port: 8080,
                    target_port: 80,
                    backends: vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)],
                },
                Published {
                    protocol: Protocol::Udp,
                    port: 5353,
                    target_port: 53,
                    backends: vec![],
                },
            ],
            &[HostForward {
                protocol: Protocol::Tcp,
                port: 8081,
                target: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 80),
            }],
            &Protected::default(),
        );
        assert!(script.contains(
            "fib daddr type local tcp dport 8080 dnat to numgen inc mod 2 map { 0 : 10.0.0.5, 1 : 10.0.0.6 } : 80"
        ), "{script}");
        assert!(script.contains("udp dport 5353 reject"), "{script}");
        assert!(
            script.contains("fib daddr type local tcp dport 8081 dnat to 10.0.0.7:80"),
            "{script}"
        );
        assert!(script.contains("oifname \"skin0\" masquerade"), "{script}");
        // The overlays' packets are left untracked by a table of the overlays' own.
        assert!(!script.contains("notrack"), "{script}");
        // Both NAT chains carry the ports: from other hosts and from the node itself.
        assert_eq!(script.matches("tcp dport 8080").count(), 2, "{script}");
        assert!(script.starts_with("table ip skiffmesh\ndelete table ip skiffmesh\n"));
    }

    #[test]
    fn the_cluster_s_own_ports_pass_before_any_published_port() {
        // A port that got past the control API: the cluster port, and the data path port.
        let captured = |protocol, port| Published {
            protocol,
            port,
            target_port: 80,
            backends: vec![Ipv4Addr::new(10, 0, 0, 5)],
        };
        let protected = Protected {
            nodes: vec![
                Ipv4Addr::new(192, 168, 1, 12),
                Ipv4Addr::new(192, 168, 1, 11),
                Ipv4Addr::new(192, 168, 1, 12),
            ],
            tcp: vec![2377, 2400],
            udp: vec![4789],
        };
        let script = ruleset(
            "skin0",
            &[captured(Protocol::Tcp, 2377), captured(Protocol::Udp, 4789)],
            &[HostForward {
                protocol: Protocol::Tcp,
                port: 2400,
                target: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 7), 80),
            }],
            &protected,
        );
        let nodes = "{ 192.168.1.11, 192.168.1.12 }";
        let exempt = [
            format!("ip daddr {nodes} tcp dport {{ 2377, 2400 }} accept"),
            format!("ip saddr {nodes} tcp sport {{ 2377, 2400 }} accept"),
            format!("ip daddr {nodes} udp dport {{ 4789 }} accept"),
            format!("ip saddr {nodes} udp sport {{ 4789 }} accept"),
        ];
        for chain in ["prerouting", "output"] {
            let body = script
                .split(&format!("chain {chain} {{"))
                .nth(1)
                .and_then(|rest| rest.split("  }").next())
                .unwrap_or_else(|| panic!("no {chain} chain: {script}"));
            let first_dnat = body.find("dnat").expect("the DNATs");
            for rule in &exempt {
                let at = body
                    .find(rule.as_str())
                    .unwrap_or_else(|| panic!("{rule} in {chain}: {script}"));
                assert!(
                    at < first_dnat,
                    "{rule} before any DNAT in {chain}: {script}"
                );
            }
        }
        // Nothing to protect yet (no addresses known): no empty sets, which nft refuses.
        let bare = ruleset("skin0", &[], &[], &Protected::default());
        assert!(!bare.contains("accept\n"), "{bare}");
        assert!(!bare.contains("{  }"), "{bare}");
        let no_nodes = Protected {
            tcp: vec![2377],
            ..Protected::default()
        };
        assert!(!ruleset("skin0", &[], &[], &no_nodes).contains("dport {"));
        assert!(protected.covers(Protocol::Tcp, 2400));
        assert!(!protected.covers(Protocol::Udp, 2377));
    }

    #[test]
    fn forwarded_connections_get_a_long_quiet_time_from_a_table_never_rebuilt() {
        let script = conntrack_ruleset();
        assert!(
            script.contains("policy = { established: 1728000 }"),
            "{script}"
        );
        assert_eq!(
            script
                .matches("ct state new ct status dnat ct timeout set \"forwarded\"")
                .count(),
            2,
            "from other hosts and from the node itself: {script}"
        );
        assert!(!script.contains("delete"), "{script}");
    }
}
