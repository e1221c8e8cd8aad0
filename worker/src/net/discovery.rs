//! Service discovery inside each task's network namespace, from what the dispatcher sends
//! (`DiscoveryState`):
//!
//! - an embedded DNS server ([`super::dns`]) at 127.0.0.11:53, UDP and TCP, answering the
//!   names of the services on the task's networks (and only those) and forwarding every
//!   other name to the node's resolvers. In the kernel data path it listens on ports of its
//!   own and 127.0.0.11:53 is DNATed to them (as Docker does), so the task may still listen
//!   on port 53 of every address itself (a DNS service);
//! - in the kernel data path, an nftables table in the task's namespace that spreads
//!   connections to a service's VIP over its running tasks (`numgen` round-robin DNAT in the
//!   output hook, so it applies to what the task itself sends). Every port of the VIP is
//!   balanced, as Swarm does: the VIP stands for the service, not for some of its ports.
//!   Connections to a VIP get the mesh's long conntrack timeout
//!   ([`super::mesh::ensure_conntrack`]), so a quiet one is not sent to another task.
//!
//! Without nftables (the userspace data path) nothing would carry a VIP, so `SERVICE`
//! resolves to the addresses of its tasks instead (as in endpoint mode `dnsrr`): names
//! still work, spread by the order resolvers pick.
//!
//! The sockets are made by a thread of their own that enters the task's namespace; a socket
//! stays in the namespace it was made in, so tokio then serves them from any thread, and no
//! tokio worker ever changes namespace.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use proto::DiscoveryState;
use tokio::task::JoinHandle;

use super::dns::{self, Records, ServiceRecord};

/// Where the embedded DNS server listens in every task's namespace (Docker's address).
pub const DNS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// The nftables table of a task's namespace: its VIPs and its DNS server's ports.
pub const TASK_TABLE: &str = "skifftask";

/// The names a task on `networks` (IDs, in attachment order) resolves, by service name and
/// alias. A name found on two networks answers as on the first. With `vips` false, a
/// service's name resolves to its tasks (nothing would carry the VIP).
pub fn records_for(
    networks: &[String],
    discovery: &DiscoveryState,
    vips: bool,
) -> HashMap<String, ServiceRecord> {
    let mut records = HashMap::new();
    for id in networks {
        let Some(network) = discovery.networks.iter().find(|n| &n.network_id == id) else {
            continue;
        };
        for service in &network.services {
            let record = ServiceRecord {
                vip: service.vip.parse().ok().filter(|_| vips),
                tasks: service
                    .tasks
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect(),
            };
            for name in std::iter::once(&service.name).chain(&service.aliases) {
                records
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| record.clone());
            }
        }
    }
    records
}

/// One VIP on a task's networks and the tasks its connections go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// The service's virtual IP.
    pub addr: Ipv4Addr,
    /// Its running tasks' addresses on the VIP's network.
    pub backends: Vec<Ipv4Addr>,
}

/// The VIPs a task on `networks` balances.
pub fn vips_for(networks: &[String], discovery: &DiscoveryState) -> Vec<Vip> {
    let mut vips: Vec<Vip> = Vec::new();
    for network in discovery
        .networks
        .iter()
        .filter(|n| networks.contains(&n.network_id))
    {
        for service in &network.services {
            let Ok(addr) = service.vip.parse() else {
                continue;
            };
            if vips.iter().any(|v| v.addr == addr) {
                continue;
            }
            vips.push(Vip {
                addr,
                backends: service
                    .tasks
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect(),
            });
        }
    }
    vips
}

/// The ports the DNS server of a task listens on, where not on [`DNS_ADDR`] itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsPorts {
    /// UDP port at 127.0.0.11.
    pub udp: u16,
    /// TCP port at 127.0.0.11.
    pub tcp: u16,
}

/// The nftables script for a task's namespace: queries to 127.0.0.11:53 go to the DNS
/// server's own ports (`dns`); new connections to a VIP, TCP or UDP, on any port, go
/// round-robin to its tasks (same port); a VIP without tasks refuses at once.
pub fn task_ruleset(dns: Option<DnsPorts>, vips: &[Vip]) -> String {
    let mut rules = String::new();
    if let Some(DnsPorts { udp, tcp }) = dns {
        let ip = DNS_ADDR.ip();
        let port = DNS_ADDR.port();
        rules.push_str(&format!(
            "    ip daddr {ip} udp dport {port} dnat to {ip}:{udp}\n    ip daddr {ip} tcp dport {port} dnat to {ip}:{tcp}\n"
        ));
    }
    for vip in vips {
        if vip.backends.is_empty() {
            rules.push_str(&format!(
                "    ip daddr {} meta l4proto tcp reject with tcp reset\n    ip daddr {} reject\n",
                vip.addr, vip.addr
            ));
            continue;
        }
        let map: Vec<String> = vip
            .backends
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{i} : {addr}"))
            .collect();
        rules.push_str(&format!(
            "    ip daddr {} meta l4proto {{ tcp, udp }} dnat to numgen inc mod {} map {{ {} }}\n",
            vip.addr,
            vip.backends.len(),
            map.join(", ")
        ));
    }
    format!(
        "table ip {TASK_TABLE}\ndelete table ip {TASK_TABLE}\ntable ip {TASK_TABLE} {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{rules}  }}\n}}\n"
    )
}

/// The resolvers named in resolv.conf text, loopback ones left out, port 53.
pub fn upstreams_from(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            (!ip.is_loopback()).then_some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The node's resolvers for names outside the cluster: `/etc/resolv.conf` without loopback
/// addresses; where only loopback ones are left (systemd-resolved's stub at 127.0.0.53),
/// the upstreams that resolver uses itself, as Docker does.
pub fn host_upstreams() -> Vec<SocketAddr> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let upstreams = upstreams_from(&read("/etc/resolv.conf"));
    if !upstreams.is_empty() {
        return upstreams;
    }
    upstreams_from(&read("/run/systemd/resolve/resolv.conf"))
}

/// Binds the DNS server's UDP socket and TCP listener at 127.0.0.11, on `port` (0: ports of
/// the kernel's choosing), inside the network namespace at `netns` (a file under
/// /var/run/netns), on a short-lived thread of its own.
pub fn bind_in_namespace(
    netns: &Path,
    port: u16,
) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let netns: PathBuf = netns.to_owned();
    let at = SocketAddr::new(DNS_ADDR.ip(), port);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns)?;
        // Only this thread changes namespace, and it ends right after.
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let udp = std::net::UdpSocket::bind(at)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(at)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .join()
    .map_err(|_| std::io::Error::other("the thread binding the DNS server panicked"))?
}

/// The DNS server of one task's namespace; stops (and lets go of the namespace) when
/// dropped.
pub struct TaskDns {
    records: Records,
    /// The ports it listens on when not on port 53 (queries are DNATed to them).
    pub ports: Option<DnsPorts>,
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl TaskDns {
    /// Starts serving in the namespace at `netns`, on `runtime`, forwarding to `upstreams`:
    /// on ports of its own with `redirected` (the caller DNATs port 53 to [`TaskDns::ports`]),
    /// else on port 53 itself.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        netns: &Path,
        upstreams: Vec<SocketAddr>,
        redirected: bool,
    ) -> std::io::Result<Self> {
        let port = if redirected { 0 } else { DNS_ADDR.port() };
        let (udp, tcp) = bind_in_namespace(netns, port)?;
        let ports = redirected
            .then(|| -> std::io::Result<DnsPorts> {
                Ok(DnsPorts {
                    udp: udp.local_addr()?.port(),
                    tcp: tcp.local_addr()?.port(),
                })
            })
            .transpose()?;
        let _entered = runtime.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let records = Records::default();
        Ok(Self {
            ports,
            udp: runtime.spawn(dns::serve_udp(udp, records.clone(), upstreams.clone())),
            tcp: runtime.spawn(dns::serve_tcp(tcp, records.clone(), upstreams)),
            records,
        })
    }

    /// Replaces what the server answers.
    pub fn set(&self, records: HashMap<String, ServiceRecord>) {
        self.records.set(records);
    }
}

impl Drop for TaskDns {
    fn drop(&mut self) {
        self.udp.abort();
        self.tcp.abort();
    }
}

#[cfg(test)]
mod tests {
    use proto::{DiscoveryNetwork, DiscoveryService};

    use super::*;

    fn service(name: &str, vip: &str, tasks: &[&str]) -> DiscoveryService {
        DiscoveryService {
            service_id: format!("{name}-id"),
            name: name.into(),
            aliases: if name == "db" {
                vec!["Database".into()]
            } else {
                vec![]
            },
            vip: vip.into(),
            tasks: tasks.iter().map(|t| (*t).into()).collect(),
        }
    }

    fn state() -> DiscoveryState {
        DiscoveryState {
            networks: vec![
                DiscoveryNetwork {
                    network_id: "front".into(),
                    services: vec![
                        service("web", "10.0.1.2", &["10.0.1.3", "10.0.1.4"]),
                        service("db", "", &["10.0.1.6"]),
                    ],
                },
                DiscoveryNetwork {
                    network_id: "back".into(),
                    services: vec![
                        service("db", "", &["10.0.2.6"]),
                        service("cache", "10.0.2.2", &[]),
                    ],
                },
            ],
        }
    }

    #[test]
    fn a_task_resolves_the_services_of_its_own_networks() {
        let front = records_for(&["front".into()], &state(), true);
        assert_eq!(front["web"].vip, Some(Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(front["db"].vip, None, "dnsrr");
        assert_eq!(
            front["database"].tasks,
            [Ipv4Addr::new(10, 0, 1, 6)],
            "aliases, lower-cased"
        );
        assert!(!front.contains_key("cache"), "not on its network");

        let both = records_for(&["back".into(), "front".into()], &state(), true);
        assert_eq!(
            both["db"].tasks,
            [Ipv4Addr::new(10, 0, 2, 6)],
            "the first network wins"
        );
        assert!(both.contains_key("cache") && both.contains_key("web"));

        let userspace = records_for(&["front".into()], &state(), false);
        assert_eq!(
            userspace["web"].vip, None,
            "no VIP where nothing carries it"
        );
        assert_eq!(userspace["web"].tasks.len(), 2);
    }

    #[test]
    fn dns_goes_to_its_ports_and_vips_spread_over_their_tasks_an_empty_one_refusing() {
        let vips = vips_for(&["front".into(), "back".into()], &state());
        assert_eq!(vips.len(), 2, "dnsrr services have none: {vips:?}");
        let script = task_ruleset(
            Some(DnsPorts {
                udp: 40000,
                tcp: 40001,
            }),
            &vips,
        );
        assert!(
            script.contains("ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40000"),
            "{script}"
        );
        assert!(
            script.contains("ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40001"),
            "{script}"
        );
        assert!(script.contains(
            "ip daddr 10.0.1.2 meta l4proto { tcp, udp } dnat to numgen inc mod 2 map { 0 : 10.0.1.3, 1 : 10.0.1.4 }"
        ), "{script}");
        assert!(
            script.contains("ip daddr 10.0.2.2 meta l4proto tcp reject with tcp reset"),
            "{script}"
        );
        assert!(script.contains("type nat hook output"), "{script}");
        assert!(script.starts_with("table ip skifftask\ndelete table ip skifftask\n"));
    }

    #[test]
    fn upstreams_skip_loopback_resolvers() {
        let conf = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\nnameserver ::1\nnameserver 2001:db8::1\nnameserver fe80::1%eth0\n";
        let got: Vec<String> = upstreams_from(conf).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["192.0.2.1:53", "[2001:db8::1]:53", "[fe80::1]:53"]);
    }
}
