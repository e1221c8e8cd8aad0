//! The node's data path, driven by its assignments: the overlay networks of its tasks (and
//! `ingress`) with their peers, each task's namespace joined to its networks with its DNS
//! server and VIPs ([`super::discovery`]), and the routing mesh through the node's leg into
//! `ingress` — in the kernel (nftables) or, where nftables is missing or the node is told
//! so, in userspace ([`super::proxy`]). Every task gets a namespace of its own, on a
//! node-local bridge ([`super::bridge`]): its only network without overlays, its way out
//! beside them. The calls block (they run iproute2 and nft): the agent calls them on the
//! blocking pool.
//!
//! A node without a data path (`skiffd --network-data-path off`, where several nodes share
//! one namespace) has no `DataPath`: its tasks run in the node's own namespace.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use proto::{
    assignment, AssignmentAction, AssignmentsMessage, AssignmentsType, DiscoveryState, MeshState,
    Network, PortConfig, PortProtocol, Task,
};

use super::bridge::{Bridge, BridgeSubnets, Bridges};
use super::commands::{Commands, HostCommands};
use super::discovery::{self, TaskDns};
use super::host_ports::{self, HostPort};
use super::mesh::{self, HostForward, Protected, Protocol, Published};
use super::overlay::{self, NetError, Node, Overlay};
use super::proxy::{self, Backends};

/// Where the routing mesh runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshMode {
    /// nftables DNAT (the default).
    Kernel,
    /// The userspace proxy, for nodes without nftables.
    Userspace,
}

/// One published port served by the userspace proxy.
struct PortProxy {
    backends: Backends,
    serving: tokio::task::JoinHandle<()>,
}

/// A network as the node sets it up.
struct NodeNetwork {
    overlay: Overlay,
    /// Whether it is `ingress`, the routing mesh's network: the node's leg is on it, and
    /// host-mode ports go to the tasks' addresses there.
    ingress: bool,
}

/// What the node has set up, as the dispatcher last described it.
#[derive(Default)]
struct State {
    /// Networks by ID.
    networks: HashMap<String, NodeNetwork>,
    /// Networks to set up (or check again), by ID: those just sent, and those that could
    /// not be set up yet, tried again with every message and before a task joins them, since
    /// the dispatcher sends a network again only when it changes.
    pending: HashMap<String, NodeNetwork>,
    /// Peer VTEPs by network ID.
    peers: HashMap<String, Peers>,
    /// The last mesh applied.
    mesh: Option<MeshState>,
    /// The last service discovery received.
    discovery: DiscoveryState,
    /// The cluster's VXLAN port, once the dispatcher has said it (0: not yet).
    data_path_port: u16,
    /// The cluster's own addresses and ports the mesh was last programmed to leave alone.
    protected: Protected,
    /// The data path port whose VXLAN packets the node's namespace leaves untracked (0: not
    /// yet).
    untracked_port: u16,
}

impl State {
    /// The ingress network, once set up here.
    fn ingress(&self) -> Option<&Overlay> {
        self.networks
            .values()
            .find(|n| n.ingress)
            .map(|n| &n.overlay)
    }
}

/// Who else is on one network.
#[derive(Default, Clone)]
struct Peers {
    /// The other nodes' VTEPs.
    vteps: Vec<Ipv4Addr>,
    /// Addresses held on other nodes, with their node's VTEP.
    endpoints: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// The other nodes' cluster ports.
    cluster_ports: Vec<u16>,
}

/// Whether the task runs in the node's own network namespace (`--network host`).
fn uses_host_network(task: &Task) -> bool {
    task.spec
        .as_deref()
        .is_some_and(proto::container_options::uses_host_network)
}

/// The servers a task's DNS server forwards names it does not know to: the task's `--dns`
/// servers (its resolv.conf keeps naming the embedded server, as Docker does), else the
/// node's resolvers.
fn task_upstreams(task: &Task, node: &[SocketAddr]) -> Vec<SocketAddr> {
    let own: Vec<SocketAddr> = task
        .spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .and_then(|c| c.dns_config.as_ref())
        .map(|d| {
            d.nameservers
                .iter()
                .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        })
        .unwrap_or_default();
    if own.is_empty() {
        node.to_vec()
    } else {
        own
    }
}

/// What the node serves in one task's namespace.
struct TaskNet {
    /// The task's networks (IDs), in attachment order.
    networks: Vec<String>,
    /// Its DNS server (none if it could not start).
    dns: Option<TaskDns>,
    /// The rules (DNS ports, VIPs) last applied in the namespace (kernel data path).
    rules: Option<String>,
    /// The ports it publishes on this node (host mode).
    ports: Vec<HostPort>,
}

/// Where the host-mode ports of the node's tasks go.
fn host_forwards(tasks: &HashMap<String, TaskNet>) -> Vec<HostForward> {
    let mut forwards: Vec<HostForward> = tasks
        .values()
        .flat_map(|t| t.ports.iter().map(|p| p.forward))
        .collect();
    forwards.sort_by_key(|f| (f.protocol, f.port));
    forwards
}

/// One node's data path.
pub struct DataPath {
    /// How it changes the node's network (shared with `node` and `bridges`).
    commands: Arc<dyn Commands>,
    node: Node,
    state: Mutex<State>,
    mode: MeshMode,
    /// The runtime the userspace proxies run on.
    runtime: tokio::runtime::Handle,
    proxies: Mutex<HashMap<(Protocol, u16), PortProxy>>,
    /// Tasks whose namespaces have their DNS server (and VIPs), by task ID. Locked after
    /// `state` when both are needed.
    tasks: Mutex<HashMap<String, TaskNet>>,
    /// The node's resolvers, for names outside the cluster.
    upstreams: Vec<SocketAddr>,
    /// The node-local bridges every task has an interface on.
    bridges: Bridges,
    /// Whether `nft` is there (for the overlays' untracked table).
    has_nft: bool,
    /// The node's own cluster addresses (where skiffd listens, and what it advertises),
    /// which the mesh never captures.
    cluster: Vec<SocketAddr>,
}

/// Where the node-local bridges are and keep their leases.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The bridges' subnets.
    pub subnets: BridgeSubnets,
    /// Where the tasks' leases on them are kept (the node's state directory).
    pub state_dir: std::path::PathBuf,
}

/// A network as the node programs it, with its VXLAN traffic on UDP `port`.
fn node_network(network: &Network, port: u16) -> Option<NodeNetwork> {
    let ipam = network.ipam.first()?;
    let prefix = ipam.subnet.split_once('/')?.1;
    Some(NodeNetwork {
        overlay: Overlay {
            id: network.meta.as_ref()?.id.clone(),
            vni: network.vni,
            gateway: format!("{}/{prefix}", ipam.gateway),
            port,
        },
        ingress: network.spec.as_ref().is_some_and(|s| s.ingress),
    })
}

impl DataPath {
    /// The data path of node `node_id`, whose underlay (VTEP) address is `underlay`, with
    /// the mesh in `mode` (the kernel's falls back to userspace where `nft` is missing), the
    /// tasks' bridges as `bridges` says.
    /// Call it inside the tokio runtime, which the userspace proxies then run on.
    pub fn new(node_id: &str, underlay: Ipv4Addr, mode: MeshMode, bridges: BridgeConfig) -> Self {
        Self::with_commands(Arc::new(HostCommands), node_id, underlay, mode, bridges)
    }

    /// [`DataPath::new`], changing the node's network through `commands` (a fake in tests).
    pub fn with_commands(
        commands: Arc<dyn Commands>,
        node_id: &str,
        underlay: Ipv4Addr,
        mode: MeshMode,
        bridges: BridgeConfig,
    ) -> Self {
        let has_nft = commands.output("nft", &["--version"]).is_ok();
        let mode = if mode == MeshMode::Kernel && !has_nft {
            tracing::warn!("nftables is not installed: the routing mesh runs in userspace");
            MeshMode::Userspace
        } else {
            mode
        };
        Self {
            node: Node::new(node_id, underlay, None, commands.clone()),
            state: Mutex::default(),
            mode,
            runtime: tokio::runtime::Handle::current(),
            proxies: Mutex::default(),
            tasks: Mutex::default(),
            upstreams: discovery::host_upstreams(),
            bridges: Bridges::new(
                bridges.subnets,
                &bridges.state_dir,
                has_nft,
                commands.clone(),
            ),
            has_nft,
            commands,
            cluster: Vec::new(),
        }
    }

    /// The data path of a node whose skiffd listens on, and advertises, `addrs`: the mesh
    /// leaves traffic to and from them alone.
    pub fn with_cluster_addrs(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.cluster = addrs;
        self
    }

    /// The cluster's own addresses and ports as the node knows them now: its own cluster
    /// addresses, every peer's (every other node is a peer on `ingress`), and the data path
    /// port.
    fn protected(&self, state: &State) -> Protected {
        let mut protected = Protected {
            nodes: vec![self.node.underlay()],
            ..Protected::default()
        };
        for addr in &self.cluster {
            if let std::net::IpAddr::V4(ip) = addr.ip() {
                if !ip.is_unspecified() {
                    protected.nodes.push(ip);
                }
            }
            protected.tcp.push(addr.port());
        }
        for peers in state.peers.values() {
            protected.nodes.extend(&peers.vteps);
            protected.tcp.extend(&peers.cluster_ports);
        }
        protected.udp.push(match state.data_path_port {
            0 => overlay::VXLAN_PORT,
            port => port,
        });
        protected.nodes.sort();
        protected.nodes.dedup();
        protected.tcp.sort();
        protected.tcp.dedup();
        protected
    }

    /// Applies the network part of an assignments message: networks made or removed, peers
    /// replaced, the mesh reprogrammed. Errors are logged: one bad network must not keep the
    /// others (or the tasks) from being served.
    pub fn apply(&self, message: &AssignmentsMessage) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(port @ 1..) = u16::try_from(message.data_path_port) {
            state.data_path_port = port;
        }
        let port = match state.data_path_port {
            0 => overlay::VXLAN_PORT,
            port => port,
        };
        let mut listed = Vec::new();
        for change in &message.changes {
            let Some(assignment::Item::Network(network)) =
                change.assignment.as_ref().and_then(|a| a.item.as_ref())
            else {
                continue;
            };
            let Some(network) = node_network(network, port) else {
                continue;
            };
            let id = network.overlay.id.clone();
            if change.action == AssignmentAction::Remove as i32 {
                self.node.remove_network(&network.overlay);
                state.networks.remove(&id);
                state.pending.remove(&id);
                state.peers.remove(&id);
                continue;
            }
            listed.push(id.clone());
            state.pending.insert(id, network);
        }
        if message.r#type == AssignmentsType::Complete as i32 {
            let stale: Vec<String> = state
                .networks
                .keys()
                .chain(state.pending.keys())
                .filter(|id| !listed.contains(id))
                .cloned()
                .collect();
            for id in stale {
                if let Some(network) = state.networks.remove(&id) {
                    self.node.remove_network(&network.overlay);
                }
                state.pending.remove(&id);
                state.peers.remove(&id);
            }
        }
        self.set_up_networks(&mut state);
        if self.has_nft && !state.networks.is_empty() && state.untracked_port != port {
            match self.commands.nft(None, &overlay::untracked_ruleset(port)) {
                Ok(()) => state.untracked_port = port,
                Err(e) => {
                    tracing::error!(error = %e, "cannot leave the overlays' VXLAN packets untracked")
                }
            }
        }
        for update in &message.network_peers {
            let peers = Peers {
                vteps: update
                    .peers
                    .iter()
                    .filter_map(|p| p.addr.parse().ok())
                    .collect(),
                endpoints: update
                    .endpoints
                    .iter()
                    .filter_map(|e| Some((e.address.parse().ok()?, e.vtep.parse().ok()?)))
                    .collect(),
                cluster_ports: update
                    .peers
                    .iter()
                    .filter_map(|p| u16::try_from(p.cluster_port).ok().filter(|p| *p != 0))
                    .collect(),
            };
            state.peers.insert(update.network_id.clone(), peers);
        }
        for (id, network) in &state.networks {
            let peers = state.peers.get(id).cloned().unwrap_or_default();
            if let Err(e) = self
                .node
                .set_peers(&network.overlay, &peers.vteps, &peers.endpoints)
            {
                tracing::error!(network = %id, error = %e, "cannot program the network's peers");
            }
        }
        // The mesh is programmed again when it changed, or when the cluster's own addresses
        // did (a node joined), which it must leave alone.
        let wanted = message.mesh.as_ref().or_else(|| {
            state
                .mesh
                .as_ref()
                .filter(|_| self.protected(&state) != state.protected)
        });
        if let Some(wanted) = wanted.cloned() {
            let host = host_forwards(&self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            match self.program_mesh(&state, &wanted, &host) {
                Ok(()) => {
                    state.protected = self.protected(&state);
                    state.mesh = Some(wanted);
                }
                Err(e) => tracing::error!(error = %e, "cannot program the routing mesh"),
            }
        }
        if let Some(discovery) = &message.discovery {
            state.discovery = discovery.clone();
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            for (id, net) in tasks.iter_mut() {
                self.refresh_task(id, net, &state.discovery);
            }
        }
    }

    /// Sets up the pending networks; those that fail stay pending.
    fn set_up_networks(&self, state: &mut State) {
        let pending: Vec<NodeNetwork> = state.pending.drain().map(|(_, n)| n).collect();
        for network in pending {
            let id = network.overlay.id.clone();
            match self.node.ensure_network(&network.overlay) {
                Ok(_) => {
                    state.networks.insert(id, network);
                }
                Err(e) => {
                    tracing::error!(network = %id, error = %e, "cannot set up the network");
                    state.pending.insert(id, network);
                }
            }
        }
    }

    /// Brings a task's DNS records and its namespace's rules (DNS ports, VIPs) up to date
    /// with `discovery`.
    fn refresh_task(&self, task_id: &str, net: &mut TaskNet, discovery: &DiscoveryState) {
        let kernel = self.mode == MeshMode::Kernel;
        if let Some(dns) = &net.dns {
            dns.set(discovery::records_for(&net.networks, discovery, kernel));
        }
        if !kernel {
            return;
        }
        let vips = discovery::vips_for(&net.networks, discovery);
        let dns = net.dns.as_ref().and_then(|d| d.ports);
        if vips.is_empty() && dns.is_none() && net.rules.is_none() {
            return;
        }
        let script = discovery::task_ruleset(dns, &vips);
        if net.rules.as_ref() == Some(&script) {
            return;
        }
        let ns = overlay::task_namespace(task_id);
        let applied = mesh::ensure_conntrack(&*self.commands, Some(&ns))
            .and_then(|()| self.commands.nft(Some(&ns), &script));
        match applied {
            Ok(()) => net.rules = Some(script),
            Err(e) => {
                tracing::error!(task = task_id, error = %e, "cannot program the task's DNS port and VIPs")
            }
        }
    }

    /// Makes the namespace of `task`, adopted after a restart of the node's daemon and
    /// running as process `pid`, reachable by its name again (see [`overlay`]: a daemon in a
    /// mount namespace of its own does not see its predecessor's). [`DataPath::serve`] then
    /// joins it to its networks again.
    pub fn adopt(&self, task: &Task, pid: i32) -> Result<(), NetError> {
        if uses_host_network(task) {
            return Ok(());
        }
        let id = task.id();
        overlay::adopt_task_namespace(&*self.commands, id, pid)
    }

    /// Starts service discovery in `task`'s namespace (its DNS server and VIPs) and
    /// publishes its host-mode ports, unless that is done already; returns the ports as
    /// bound. A task without networks has none of it (only its bridge).
    /// Called for tasks adopted after a restart of the node's daemon, whose servers and
    /// ports went with it, and whose links to their networks may have gone with the
    /// network namespaces of the daemon before (joined again here).
    pub fn serve(&self, task: &Task) -> Result<Vec<PortConfig>, NetError> {
        if uses_host_network(task) {
            return Ok(host_ports::wanted(task).into_iter().cloned().collect());
        }
        let id = task.id();
        if !overlay::task_namespace_is_live(&*self.commands, id) {
            return Ok(Vec::new());
        }
        if let Some(net) = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(net.ports.iter().map(|p| p.config.clone()).collect());
        }
        self.join_networks(task)?;
        if task.networks.is_empty() {
            return Ok(Vec::new());
        }
        self.start_serving(task)
    }

    /// [`DataPath::serve`] for a task joined to its networks.
    fn start_serving(&self, task: &Task) -> Result<Vec<PortConfig>, NetError> {
        let id = task.id();
        let netns = agent_runtime::task_netns_path(id);
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(net) = tasks.get(id) {
            return Ok(net.ports.iter().map(|p| p.config.clone()).collect());
        }
        let ports = if host_ports::wanted(task).is_empty() {
            Vec::new()
        } else {
            let target = state
                .ingress()
                .and_then(|ingress| {
                    let attachment = task.networks.iter().find(|a| a.network_id == ingress.id)?;
                    let addr = attachment.addresses.first()?;
                    addr.split('/').next()?.parse().ok()
                })
                .ok_or_else(|| NetError::Command {
                    command: format!("publish the ports of task {id}"),
                    message: "the task has no address on the ingress network here yet".into(),
                })?;
            let proxy_on = (self.mode == MeshMode::Userspace).then_some(&self.runtime);
            host_ports::publish(task, target, proxy_on)?
        };
        let redirected = self.mode == MeshMode::Kernel;
        let upstreams = task_upstreams(task, &self.upstreams);
        let dns = match TaskDns::start(&self.runtime, &netns, upstreams, redirected) {
            Ok(dns) => Some(dns),
            Err(e) => {
                tracing::error!(task = id, error = %e, "cannot start the task's DNS server");
                None
            }
        };
        let bound: Vec<PortConfig> = ports.iter().map(|p| p.config.clone()).collect();
        let mut net = TaskNet {
            networks: task.networks.iter().map(|a| a.network_id.clone()).collect(),
            dns,
            rules: None,
            ports,
        };
        self.refresh_task(id, &mut net, &state.discovery);
        let publishes = !net.ports.is_empty();
        tasks.insert(id.to_owned(), net);
        if publishes {
            self.reprogram_mesh(&state, &tasks);
        }
        Ok(bound)
    }

    /// Programs the last mesh again, with the host-mode ports of `tasks` (kernel path).
    fn reprogram_mesh(&self, state: &State, tasks: &HashMap<String, TaskNet>) {
        let (MeshMode::Kernel, Some(mesh)) = (self.mode, &state.mesh) else {
            return;
        };
        if let Err(e) = self.program_mesh(state, mesh, &host_forwards(tasks)) {
            tracing::error!(error = %e, "cannot program the routing mesh");
        }
    }

    fn program_mesh(
        &self,
        state: &State,
        wanted: &MeshState,
        host: &[HostForward],
    ) -> Result<(), NetError> {
        let Some(ingress) = state.ingress() else {
            return Ok(());
        };
        if wanted.leg_address.is_empty() {
            return Ok(());
        }
        let leg = mesh::ensure_leg(&self.node, ingress, &wanted.leg_address)?;
        let ports: Vec<Published> = wanted
            .services
            .iter()
            .flat_map(|service| {
                let backends: Vec<Ipv4Addr> = service
                    .backends
                    .iter()
                    .filter_map(|b| b.parse().ok())
                    .collect();
                service.ports.iter().map(move |p| Published {
                    protocol: if p.protocol == PortProtocol::Udp as i32 {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                    port: p.published_port as u16,
                    target_port: p.target_port as u16,
                    backends: backends.clone(),
                })
            })
            .collect();
        let protected = self.protected(state);
        match self.mode {
            MeshMode::Kernel => {
                mesh::ensure_conntrack(&*self.commands, None)?;
                let script = mesh::ruleset(&leg, &ports, host, &protected);
                self.commands.nft(None, &script)
            }
            MeshMode::Userspace => {
                let (refused, served): (Vec<Published>, Vec<Published>) = ports
                    .into_iter()
                    .partition(|p| protected.covers(p.protocol, p.port));
                for p in refused {
                    tracing::warn!(port = p.port, protocol = ?p.protocol, "not publishing a port of the cluster's own (its cluster or data path port) through the routing mesh");
                }
                self.program_proxies(&served)
            }
        }
    }

    /// Serves each published port with a userspace proxy over its tasks, starting and
    /// stopping proxies as ports come and go and swapping the backends of the others.
    fn program_proxies(&self, ports: &[Published]) -> Result<(), NetError> {
        let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
        proxies.retain(|key, p| {
            let kept = ports.iter().any(|w| (w.protocol, w.port) == *key);
            if !kept {
                p.serving.abort();
            }
            kept
        });
        for wanted in ports {
            let backends: Vec<std::net::SocketAddr> = wanted
                .backends
                .iter()
                .map(|ip| (*ip, wanted.target_port).into())
                .collect();
            let key = (wanted.protocol, wanted.port);
            if let Some(existing) = proxies.get(&key) {
                existing.backends.set(backends);
                continue;
            }
            let set = Backends::new(backends);
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], wanted.port));
            let failed = |e: proxy::ProxyError| NetError::Command {
                command: format!("userspace mesh on port {}", wanted.port),
                message: e.to_string(),
            };
            let serving = match wanted.protocol {
                Protocol::Tcp => {
                    let listener = self
                        .runtime
                        .block_on(proxy::bind_tcp(addr))
                        .map_err(failed)?;
                    self.runtime.spawn(proxy::serve_tcp(listener, set.clone()))
                }
                Protocol::Udp => {
                    let socket = self
                        .runtime
                        .block_on(proxy::bind_udp(addr))
                        .map_err(failed)?;
                    self.runtime.spawn(proxy::serve_udp(socket, set.clone()))
                }
            };
            proxies.insert(
                key,
                PortProxy {
                    backends: set,
                    serving,
                },
            );
        }
        Ok(())
    }

    /// Gives `task` its namespace, before the runtime starts it there: on its networks,
    /// with its DNS server, VIPs and host-mode ports ([`DataPath::serve`]), and on a
    /// node-local bridge, its default route (the gateway bridge beside overlays, the
    /// default bridge without). Returns the ports as bound.
    ///
    /// A task on `--network host` gets none of it: it runs in the node's own namespace, and
    /// its host-mode ports are the ones it listens on itself (binding them here would take
    /// them from it).
    pub fn attach(&self, task: &Task) -> Result<Vec<PortConfig>, NetError> {
        if uses_host_network(task) {
            return Ok(host_ports::wanted(task).into_iter().cloned().collect());
        }
        let id = task.id();
        overlay::create_task_namespace(&*self.commands, id)?;
        self.join_networks(task)?;
        if task.networks.is_empty() {
            return Ok(Vec::new());
        }
        self.start_serving(task)
    }

    /// Joins `task`'s namespace to each of its networks (idempotent).
    fn join_networks(&self, task: &Task) -> Result<(), NetError> {
        let id = task.id();
        let ns = overlay::task_namespace(id);
        let (bridge, ifname) = match task.networks.len() {
            0 => (Bridge::Default, "eth0".to_owned()),
            // After the overlays' eth0.. (their names stay as they were).
            n => (Bridge::Gateway, format!("eth{n}")),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if task
            .networks
            .iter()
            .any(|a| state.pending.contains_key(&a.network_id))
        {
            self.set_up_networks(&mut state);
        }
        for (i, attachment) in task.networks.iter().enumerate() {
            let Some(network) = state.networks.get(&attachment.network_id) else {
                return Err(NetError::Command {
                    command: format!("attach task {id}"),
                    message: format!(
                        "network {} is not set up on this node yet",
                        attachment.network_id
                    ),
                });
            };
            let Some(address) = attachment.addresses.first() else {
                continue;
            };
            self.node
                .attach(&network.overlay, &ns, &format!("eth{i}"), address, false)?;
        }
        drop(state);
        self.bridges.attach(id, &ns, bridge, &ifname)?;
        Ok(())
    }

    /// Stops the task's DNS server, releases its host-mode ports, removes its namespace
    /// (and so its veth pairs) and frees its address on its bridge.
    pub fn detach(&self, task_id: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(net) = tasks.remove(task_id) {
            if !net.ports.is_empty() {
                // The DNAT goes before the port is free for anyone else.
                self.reprogram_mesh(&state, &tasks);
            }
        }
        drop((tasks, state));
        overlay::remove_task_namespace(&*self.commands, task_id);
        self.bridges.release(task_id);
    }

    /// Removes everything this node set up (it leaves its cluster).
    pub fn remove_all(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for (_, p) in self
            .proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            p.serving.abort();
        }
        if self.mode == MeshMode::Kernel {
            if let Err(e) = mesh::remove(&*self.commands, None) {
                tracing::warn!(error = %e, "cannot remove the routing mesh's rules");
            }
        }
        if self.has_nft && state.untracked_port != 0 {
            let table = overlay::UNTRACKED_TABLE;
            let script = format!("table ip {table}\ndelete table ip {table}\n");
            if let Err(e) = self.commands.nft(None, &script) {
                tracing::warn!(error = %e, "cannot remove the overlays' untracked table");
            }
        }
        for network in state.networks.values() {
            self.node.remove_network(&network.overlay);
        }
        self.bridges.remove_all();
        *state = State::default();
    }
}

#[cfg(test)]
mod tests;
