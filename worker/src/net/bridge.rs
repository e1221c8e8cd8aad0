//! Node-local bridges, so that every task has a network namespace of its own and still
//! reaches beyond the node, as Docker's tasks do:
//!
//! - a task without networks joins [`DEFAULT_BRIDGE`] (172.17.0.0/16 unless `skiffd
//!   --bridge-subnet` says otherwise; Docker's `bridge`): its only interface and its
//!   default route;
//! - a task on overlays keeps its overlay interfaces, which carry the cluster's traffic
//!   (published ports still arrive through `ingress`), and gets one more on
//!   [`GATEWAY_BRIDGE`] (172.18.0.0/16, `--gwbridge-subnet`; Docker's `docker_gwbridge`)
//!   as its default route, so it reaches the outside too.
//!
//! Without this, a task without networks ran in the node's own namespace (it saw every
//! interface of the node, and could bind, or be kept from, any port of it: three replicas
//! of a server on port 80 could not share a node), and a task on overlays had no route out
//! of them.
//!
//! What leaves a bridge's subnet by another interface is masqueraded, by one nftables
//! table of skiff's own ([`NAT_TABLE`]), with `ip_forward` on. The same table's forward
//! chain lets nothing forwarded open a connection *into* either bridge: tasks are reached
//! through their overlays (the routing mesh, VIPs, host-mode ports all DNAT to `ingress`
//! addresses), never through these, so a task without networks cannot reach the tasks of
//! an overlay around the overlay's isolation, nor can a host outside that happens to route
//! to the subnet. Ports on the gateway bridge are isolated from each other (bridge port
//! isolation, as Docker turns off inter-container traffic on `docker_gwbridge`): tasks of
//! different overlays must not meet there. Tasks on the default bridge may talk to each
//! other, as on Docker's default bridge.
//!
//! Addresses are leased per task, lowest free first, and each lease is kept in a file of
//! its own under the node's state directory: a task adopted after a restart of `skiffd`
//! keeps its address, and no new task gets it meanwhile. A lease whose task namespace is
//! gone (the task was removed while skiffd was down) is dropped when the leases are read.
//! An interface's MAC follows from its address (as on overlays), so an address that passes
//! to another task never meets a neighbour entry with the old task's MAC.
//!
//! A bridge is made (idempotently) when the first task needs it, after checking that its
//! subnet overlaps no route of the node: a bridge on the node's own underlay subnet would
//! cut the node off. Both go with the node's other network state when it leaves its
//! cluster ([`Bridges::remove_all`]). Without nftables the bridges work but nothing is
//! masqueraded, so tasks reach only the node itself.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use super::commands::{Commands, Missing, NamespaceFile};
use super::overlay::{self, NetError};

/// The bridge of tasks without networks (Docker's `bridge`, there `docker0`).
pub const DEFAULT_BRIDGE: &str = "skiff0";
/// The bridge that gives tasks on overlays their way out (Docker's `docker_gwbridge`).
pub const GATEWAY_BRIDGE: &str = "skiff_gwbridge";
/// The nftables table masquerading the bridges' traffic.
pub const NAT_TABLE: &str = "skiffnat";
/// Docker's subnet for its default bridge.
pub const DEFAULT_SUBNET: Subnet = Subnet {
    base: Ipv4Addr::new(172, 17, 0, 0),
    prefix: 16,
};
/// Docker's usual subnet for `docker_gwbridge`.
pub const GATEWAY_SUBNET: Subnet = Subnet {
    base: Ipv4Addr::new(172, 18, 0, 0),
    prefix: 16,
};

/// A subnet given as a flag is not one a bridge can use.
#[derive(Debug, thiserror::Error)]
#[error("invalid subnet {0:?}: give an IPv4 network with room for tasks, such as 172.17.0.0/16 (a prefix of /8 to /29, no host bits set)")]
pub struct SubnetError(String);

/// An IPv4 subnet of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The bridge's own address, the tasks' gateway: the first host.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// Whether `address` is in the subnet.
    pub fn contains(self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.base)
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(self, other: Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.base) & mask == u32::from(other.base) & mask
    }

    /// The addresses tasks may get: all hosts but the gateway.
    fn task_addresses(self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.base) + 2;
        let broadcast = u32::from(self.base) | !self.mask();
        (first..broadcast).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SubnetError(s.to_owned());
        let (base, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let base: Ipv4Addr = base.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=29).contains(&prefix) {
            return Err(invalid());
        }
        let subnet = Subnet { base, prefix };
        if u32::from(base) & !subnet.mask() != 0 {
            return Err(invalid());
        }
        Ok(subnet)
    }
}

/// Which node-local bridge a task joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bridge {
    /// [`DEFAULT_BRIDGE`]: tasks without networks.
    Default,
    /// [`GATEWAY_BRIDGE`]: the way out of tasks on overlays.
    Gateway,
}

impl Bridge {
    /// The bridge's device in the node's namespace.
    pub fn device(self) -> &'static str {
        match self {
            Bridge::Default => DEFAULT_BRIDGE,
            Bridge::Gateway => GATEWAY_BRIDGE,
        }
    }

    fn from_device(device: &str) -> Option<Self> {
        [Bridge::Default, Bridge::Gateway]
            .into_iter()
            .find(|b| b.device() == device)
    }
}

/// The subnets of the two bridges (`skiffd --bridge-subnet`, `--gwbridge-subnet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeSubnets {
    /// The default bridge's.
    pub default: Subnet,
    /// The gateway bridge's.
    pub gateway: Subnet,
}

impl Default for BridgeSubnets {
    fn default() -> Self {
        Self {
            default: DEFAULT_SUBNET,
            gateway: GATEWAY_SUBNET,
        }
    }
}

impl BridgeSubnets {
    fn of(&self, bridge: Bridge) -> Subnet {
        match bridge {
            Bridge::Default => self.default,
            Bridge::Gateway => self.gateway,
        }
    }
}

/// The nftables script of [`NAT_TABLE`] for bridges with these `subnets`: masquerade what
/// leaves a bridge's subnet by another interface, and let nothing forwarded open a
/// connection into a bridge (replies to the tasks' own connections pass).
pub fn nat_ruleset(subnets: &BridgeSubnets) -> String {
    let masquerade: String = [Bridge::Default, Bridge::Gateway]
        .into_iter()
        .map(|b| {
            format!(
                "    ip saddr {} oifname != \"{}\" masquerade\n",
                subnets.of(b),
                b.device()
            )
        })
        .collect();
    // Delete-then-add makes the transaction replace the table whether or not it exists.
    format!(
        "table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    oifname {{ \"{DEFAULT_BRIDGE}\", \"{GATEWAY_BRIDGE}\" }} ct state new drop\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n{masquerade}  }}\n}}\n"
    )
}

/// The first route of `routes` (as `ip -4 route show` prints them) that overlaps `subnet`,
/// other than those through `device` itself (the bridge's own, made earlier).
fn overlapping_route<'a>(routes: &'a str, subnet: Subnet, device: &str) -> Option<&'a str> {
    routes.lines().map(str::trim).find(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.windows(2).any(|w| w == ["dev", device]) {
            return false;
        }
        // "10.0.0.0/8 dev eth0 ...", "192.0.2.1 via ...", "blackhole 10.1.0.0/16", "default ...".
        let destination = words.iter().take(2).find_map(|w| match w.split_once('/') {
            Some((addr, prefix)) => Some((addr.parse().ok()?, prefix.parse().ok()?)),
            None => Some((w.parse().ok()?, 32)),
        });
        destination.is_some_and(|(base, prefix): (Ipv4Addr, u8)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let route = Subnet {
                base: Ipv4Addr::from(u32::from(base) & mask),
                prefix,
            };
            prefix > 0 && route.overlaps(subnet)
        })
    })
}

/// The lowest address of `subnet` for a task that no lease in `taken` holds.
fn first_free(subnet: Subnet, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    subnet.task_addresses().find(|a| !taken.contains(a))
}

/// One task's address on a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    bridge: Bridge,
    address: Ipv4Addr,
}

impl Lease {
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let bridge = Bridge::from_device(words.next()?)?;
        let address = words.next()?.parse().ok()?;
        Some(Self { bridge, address })
    }

    fn text(self) -> String {
        format!("{} {}\n", self.bridge.device(), self.address)
    }
}

/// The node's leases by task ID, each kept in a file of its own under `dir` (named after
/// the task) so that they outlive the daemon.
#[derive(Debug)]
struct Leases {
    dir: PathBuf,
    held: HashMap<String, Lease>,
}

impl Leases {
    /// The leases kept under `dir`, but those whose task is not `alive` (their files go).
    fn load(dir: &Path, alive: impl Fn(&str) -> bool) -> Self {
        let mut held = HashMap::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let task = entry.file_name().to_string_lossy().into_owned();
            let lease = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| Lease::parse(&t));
            match lease {
                Some(lease) if alive(&task) => {
                    held.insert(task, lease);
                }
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Self {
            dir: dir.to_owned(),
            held,
        }
    }

    /// `task`'s address on `bridge` of `subnet`: the one it holds, else the lowest free one,
    /// kept on disk before it is handed out.
    fn take(&mut self, task: &str, bridge: Bridge, subnet: Subnet) -> Result<Ipv4Addr, NetError> {
        if let Some(lease) = self.held.get(task) {
            if lease.bridge == bridge && subnet.contains(lease.address) {
                return Ok(lease.address);
            }
        }
        let taken: HashSet<Ipv4Addr> = self
            .held
            .iter()
            .filter(|(t, l)| l.bridge == bridge && t.as_str() != task)
            .map(|(_, l)| l.address)
            .collect();
        let address = first_free(subnet, &taken).ok_or_else(|| NetError::Command {
            command: format!("lease an address on {}", bridge.device()),
            message: format!("every address of {subnet} is taken; give the bridge a larger subnet (skiffd --bridge-subnet or --gwbridge-subnet)"),
        })?;
        let lease = Lease { bridge, address };
        let path = self.dir.join(task);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, lease.text()))
            .map_err(|e| NetError::Command {
                command: format!("write {}", path.display()),
                message: e.to_string(),
            })?;
        self.held.insert(task.to_owned(), lease);
        Ok(address)
    }

    /// Frees `task`'s address.
    fn release(&mut self, task: &str) {
        if self.held.remove(task).is_some() {
            let _ = std::fs::remove_file(self.dir.join(task));
        }
    }

    /// Frees every address (the node leaves its cluster).
    fn clear(&mut self) {
        self.held.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The node's two bridges, their NAT and their leases. The calls block (iproute2, nft).
#[derive(Debug)]
pub struct Bridges {
    /// How they change the node's network.
    commands: Arc<dyn Commands>,
    subnets: BridgeSubnets,
    /// Whether `nft` is there to masquerade.
    nat: bool,
    leases: Mutex<Leases>,
    /// The bridges this process has made or checked (with the NAT table).
    ready: Mutex<HashSet<Bridge>>,
}

impl Bridges {
    /// The bridges of `subnets`, their leases kept under `state_dir`, made with `commands`;
    /// `nat`: whether nftables is there to masquerade them.
    pub fn new(
        subnets: BridgeSubnets,
        state_dir: &Path,
        nat: bool,
        commands: Arc<dyn Commands>,
    ) -> Self {
        let leases = Leases::load(state_dir, |task| {
            commands.namespace(&overlay::task_namespace(task)) != NamespaceFile::Missing
        });
        Self {
            commands,
            subnets,
            nat,
            leases: Mutex::new(leases),
            ready: Mutex::default(),
        }
    }

    /// Makes (or keeps) `bridge` in the node's namespace, with forwarding and the NAT table.
    fn ensure(&self, bridge: Bridge) -> Result<(), NetError> {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if ready.contains(&bridge) {
            return Ok(());
        }
        let (device, subnet) = (bridge.device(), self.subnets.of(bridge));
        if self
            .commands
            .output("ip", &["link", "show", device])
            .is_err()
        {
            let routes = self.commands.output("ip", &["-4", "route", "show"])?;
            if let Some(route) = overlapping_route(&routes, subnet, device) {
                let flag = match bridge {
                    Bridge::Default => "--bridge-subnet",
                    Bridge::Gateway => "--gwbridge-subnet",
                };
                return Err(NetError::Command {
                    command: format!("make bridge {device}"),
                    message: format!("its subnet {subnet} overlaps this node's route `{route}`; give skiffd {flag} a subnet the node does not use"),
                });
            }
            self.commands
                .run("ip", &["link", "add", device, "type", "bridge"])?;
        }
        let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix);
        self.commands
            .run("ip", &["addr", "replace", &gateway, "dev", device])?;
        self.commands.run("ip", &["link", "set", device, "up"])?;
        self.commands
            .write_sysctl(None, "net.ipv4.ip_forward", "1", Missing::Error)?;
        if ready.is_empty() {
            if self.nat {
                self.commands
                    .nft(None, &nat_ruleset(&self.subnets))
                    .map_err(|e| NetError::Command {
                        command: format!("nft -f - (table {NAT_TABLE})"),
                        message: e.to_string(),
                    })?;
            } else {
                tracing::warn!(
                    "nftables is not installed: tasks reach only this node, nothing beyond it"
                );
            }
        }
        ready.insert(bridge);
        Ok(())
    }

    /// Joins the task namespace `task_ns` of `task_id` to `bridge` as interface `ifname`,
    /// with the task's leased address and its default route through the bridge.
    /// Idempotent: a task attached already keeps its address.
    pub fn attach(
        &self,
        task_id: &str,
        task_ns: &str,
        bridge: Bridge,
        ifname: &str,
    ) -> Result<(), NetError> {
        self.ensure(bridge)?;
        let subnet = self.subnets.of(bridge);
        let address = self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(task_id, bridge, subnet)?;
        let port = overlay::veth_name(task_ns, ifname);
        if self
            .commands
            .output("ip", &["link", "show", &port])
            .is_err()
        {
            let mac = overlay::mac_of(address);
            self.commands.run(
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", ifname, "address", &mac,
                    "netns", task_ns,
                ],
            )?;
        }
        self.commands.run(
            "ip",
            &["link", "set", &port, "master", bridge.device(), "up"],
        )?;
        if bridge == Bridge::Gateway {
            self.commands.run(
                "ip",
                &[
                    "link",
                    "set",
                    &port,
                    "type",
                    "bridge_slave",
                    "isolated",
                    "on",
                ],
            )?;
        }
        let cidr = format!("{address}/{}", subnet.prefix);
        let gateway = subnet.gateway().to_string();
        self.commands
            .run("ip", &["-n", task_ns, "link", "set", "lo", "up"])?;
        self.commands.run(
            "ip",
            &["-n", task_ns, "addr", "replace", &cidr, "dev", ifname],
        )?;
        self.commands
            .run("ip", &["-n", task_ns, "link", "set", ifname, "up"])?;
        self.commands.run(
            "ip",
            &[
                "-n", task_ns, "route", "replace", "default", "via", &gateway,
            ],
        )
    }

    /// Frees `task_id`'s address (its namespace, with its end of the veth pair, is gone).
    pub fn release(&self, task_id: &str) {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(task_id);
    }

    /// Removes the bridges, the NAT table and every lease (the node leaves its cluster).
    pub fn remove_all(&self) {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        if self.nat {
            let script = format!("table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
            if let Err(e) = self.commands.nft(None, &script) {
                tracing::warn!(error = %e, "cannot remove the bridges' NAT table");
            }
        }
        for bridge in [Bridge::Default, Bridge::Gateway] {
            let _ = self.commands.run("ip", &["link", "del", bridge.device()]);
        }
        ready.clear();
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_parse_only_as_networks_with_room_for_tasks() {
        assert_eq!(subnet("172.17.0.0/16"), DEFAULT_SUBNET);
        assert_eq!(DEFAULT_SUBNET.to_string(), "172.17.0.0/16");
        assert_eq!(GATEWAY_SUBNET.gateway(), Ipv4Addr::new(172, 18, 0, 1));
        for bad in [
            "172.17.0.1/16",
            "172.17.0.0",
            "10.0.0.0/30",
            "10.0.0.0/4",
            "x/16",
        ] {
            let err = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("172.17.0.0/16"), "{err}");
        }
    }

    #[test]
    fn a_task_gets_the_lowest_free_address_but_never_the_gateway_or_broadcast() {
        let net = subnet("10.9.0.0/29");
        let mut taken = HashSet::new();
        assert_eq!(first_free(net, &taken), Some(Ipv4Addr::new(10, 9, 0, 2)));
        taken.extend([2, 3, 5].map(|d| Ipv4Addr::new(10, 9, 0, d)));
        assert_eq!(first_free(net, &taken), Some(Ipv4Addr::new(10, 9, 0, 4)));
        taken.extend([4, 6].map(|d| Ipv4Addr::new(10, 9, 0, d)));
        assert_eq!(first_free(net, &taken), None, ".7 is the broadcast");
    }

    #[test]
    fn leases_survive_a_restart_and_go_with_their_task() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("bridges");
        let mut leases = Leases::load(&state, |_| true);
        let a = leases.take("a", Bridge::Default, DEFAULT_SUBNET).unwrap();
        let b = leases.take("b", Bridge::Default, DEFAULT_SUBNET).unwrap();
        let c = leases.take("c", Bridge::Gateway, GATEWAY_SUBNET).unwrap();
        assert_eq!(
            (a, b, c),
            (
                Ipv4Addr::new(172, 17, 0, 2),
                Ipv4Addr::new(172, 17, 0, 3),
                Ipv4Addr::new(172, 18, 0, 2)
            )
        );
        assert_eq!(
            leases.take("a", Bridge::Default, DEFAULT_SUBNET).unwrap(),
            a
        );

        // The daemon restarts; task "b" was removed meanwhile.
        let mut again = Leases::load(&state, |task| task != "b");
        assert_eq!(again.take("a", Bridge::Default, DEFAULT_SUBNET).unwrap(), a);
        assert_eq!(again.take("c", Bridge::Gateway, GATEWAY_SUBNET).unwrap(), c);
        assert_eq!(
            again.take("d", Bridge::Default, DEFAULT_SUBNET).unwrap(),
            b,
            "b's address is free again"
        );
        assert!(!state.join("b").exists());

        again.release("a");
        assert!(!state.join("a").exists());
        assert_eq!(again.take("e", Bridge::Default, DEFAULT_SUBNET).unwrap(), a);
        again.clear();
        assert!(!state.exists());
    }

    #[test]
    fn the_nat_table_masquerades_each_subnet_leaving_by_another_interface() {
        let subnets = BridgeSubnets {
            default: subnet("192.168.100.0/24"),
            gateway: GATEWAY_SUBNET,
        };
        let script = nat_ruleset(&subnets);
        assert!(script.starts_with("table ip skiffnat\ndelete table ip skiffnat\n"));
        assert!(
            script.contains("ip saddr 192.168.100.0/24 oifname != \"skiff0\" masquerade"),
            "{script}"
        );
        assert!(
            script.contains("ip saddr 172.18.0.0/16 oifname != \"skiff_gwbridge\" masquerade"),
            "{script}"
        );
        assert!(
            script.contains("oifname { \"skiff0\", \"skiff_gwbridge\" } ct state new drop"),
            "nothing forwarded opens connections into the bridges: {script}"
        );
    }

    #[test]
    fn a_bridge_must_not_cover_a_route_of_the_node() {
        let routes = "default via 10.1.0.1 dev eth0\n\
                      10.1.0.0/24 dev eth0 proto kernel scope link src 10.1.0.7\n\
                      172.17.0.0/16 dev skiff0 proto kernel scope link src 172.17.0.1\n\
                      blackhole 172.18.5.0/24\n\
                      192.168.7.9 via 10.1.0.1 dev eth0\n";
        assert_eq!(
            overlapping_route(routes, DEFAULT_SUBNET, "skiff0"),
            None,
            "the bridge's own route and the default route do not count"
        );
        assert_eq!(
            overlapping_route(routes, GATEWAY_SUBNET, "skiff_gwbridge"),
            Some("blackhole 172.18.5.0/24")
        );
        assert_eq!(
            overlapping_route(routes, subnet("10.0.0.0/8"), "skiff0"),
            Some("10.1.0.0/24 dev eth0 proto kernel scope link src 10.1.0.7")
        );
        assert_eq!(
            overlapping_route(routes, subnet("192.168.0.0/16"), "skiff0"),
            Some("192.168.7.9 via 10.1.0.1 dev eth0")
        );
        assert_eq!(
            overlapping_route(routes, subnet("172.17.0.0/16"), "skiff_gwbridge"),
            Some("172.17.0.0/16 dev skiff0 proto kernel scope link src 172.17.0.1"),
            "the gateway bridge may not reuse the default bridge's subnet"
        );
    }
}
