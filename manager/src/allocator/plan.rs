//! One allocation round: from the store as it is, the changes that give every network its
//! subnet, gateway and VNI, every node its address on the ingress network (its leg into the
//! routing mesh), every service its VIPs and published ports, and every task that has not
//! reached its node yet an address on each of its networks. Pure: the loop in
//! `mod.rs` commits what this returns.
//!
//! A round looks at a [`Scope`]: everything, or only the objects `changes.rs` says may want
//! something. It first finds which of those want anything (a network without a subnet, a
//! node without its ingress leg, a service whose endpoint does not match its spec, a task
//! missing an address), without looking at what is in use; most rounds find none and end
//! there, at a cost that follows the change, not the store. What wants something is then
//! handled in the order a full round handles it (networks, nodes, services, tasks, each in
//! ID order), so a round over a scope that holds every object that wants something decides
//! exactly what a full round decides (checked on random changes in `incremental_tests.rs`).
//!
//! What is in use is rebuilt from the store when a round has something to allocate, rather
//! than kept in long-lived bitmaps: the store is the only truth, so a new leader (or this
//! one after a failed commit) can never disagree with it, and releasing is implicit — a
//! removed task, service or network, or a task that reached a terminal state, simply holds
//! nothing in the next round. The cost is one pass over the store per round that allocates.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use proto::{
    Endpoint, IpamConfig, Network, NetworkAttachment, Node, PortConfig, PublishMode,
    ResolutionMode, Service, StoreAction, Task, TaskState, VirtualIp,
};

use super::ipam::{carve, parse_interface, AddressSpace, Cidr};
use super::ports::{protocol_name, Ports};
use super::vni::Vnis;
use super::{
    holds_addresses, ingress_network, networks_of, not_delivered, publishes_ingress, task_networks,
};
use crate::settings::default_spec;
use crate::store::update;
use crate::store::{ObjectStore, StoredObject};

/// Everything in use, rebuilt from the store.
struct InUse {
    pools: Vec<Cidr>,
    subnet_len: u8,
    subnets: Vec<Cidr>,
    spaces: HashMap<String, AddressSpace>,
    vnis: Vnis,
    ports: Ports,
    /// Whether anything asked for an address or a port: a service's endpoint computed
    /// without asking depends on nothing in use (see [`Wanting::find`]).
    consulted: bool,
}

/// Objects by ID, per kind: what a round looks at, or what still wants something.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Objects {
    /// Network IDs.
    pub networks: BTreeSet<String>,
    /// Node IDs.
    pub nodes: BTreeSet<String>,
    /// Service IDs.
    pub services: BTreeSet<String>,
    /// Task IDs.
    pub tasks: BTreeSet<String>,
}

impl Scope {
    /// Only `changed`, with nothing stuck.
    pub fn only(changed: Objects) -> Self {
        Scope::Only {
            changed,
            stuck: Objects::default(),
        }
    }
}

impl Objects {
    /// Whether it names nothing.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.nodes.is_empty()
            && self.services.is_empty()
            && self.tasks.is_empty()
    }

    /// Drops everything `other` names.
    pub fn remove_all(&mut self, other: &Objects) {
        self.networks.retain(|id| !other.networks.contains(id));
        self.nodes.retain(|id| !other.nodes.contains(id));
        self.services.retain(|id| !other.services.contains(id));
        self.tasks.retain(|id| !other.tasks.contains(id));
    }

    /// Adds everything `other` names.
    pub fn merge(&mut self, other: Objects) {
        self.networks.extend(other.networks);
        self.nodes.extend(other.nodes);
        self.services.extend(other.services);
        self.tasks.extend(other.tasks);
    }
}

/// What a round looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every object of the store.
    All,
    /// Only these (IDs of objects since removed are passed over).
    Only {
        /// Looked at.
        changed: Objects,
        /// Looked at only if something in `changed` wants something: what wanted something
        /// last round and could not have it, when nothing was freed since. Alone, each
        /// would fail again as it did (what it met then is all still taken), changing
        /// nothing; beside others, it takes its place in the order again, since it takes
        /// addresses before it fails (a task on two networks, a service's port before its
        /// VIP) and those that follow it get what a full round gives them.
        stuck: Objects,
    },
}

/// What one round decided.
#[derive(Default)]
pub struct Allocation {
    /// Changes to commit.
    pub actions: Vec<StoreAction>,
    /// What wanted something this round, whether or not it got it: the next round looks at
    /// it again (it may fail again, or need a look once its change is committed).
    pub wanting: Objects,
}

/// Allocates whatever is missing in `store`.
pub fn allocate(store: &ObjectStore) -> Allocation {
    allocate_in(store, &Scope::All)
}

/// Allocates whatever is missing among the objects of `scope`.
pub fn allocate_in(store: &ObjectStore, scope: &Scope) -> Allocation {
    let ingress = ingress_network(store).map(|n| n.id().to_owned());
    let mut wanting = Wanting::find(store, scope, ingress.as_deref());
    if let Scope::Only { stuck, .. } = scope {
        if wanting.is_empty() {
            // Not looked at: still stuck.
            return Allocation {
                actions: Vec::new(),
                wanting: stuck.clone(),
            };
        }
        wanting.merge(Wanting::find(
            store,
            &Scope::only(stuck.clone()),
            ingress.as_deref(),
        ));
    }
    let mut out = Allocation {
        actions: Vec::new(),
        wanting: wanting.ids(),
    };
    if wanting.is_empty() {
        return out;
    }
    let mut in_use = InUse::from_store(store);
    allocate_networks(&wanting.networks, &mut in_use, &mut out);
    if let Some(ingress) = ingress.as_deref() {
        allocate_nodes(&wanting.nodes, ingress, &mut in_use, &mut out);
    }
    let endpoints = allocate_services(&wanting.services, ingress.as_deref(), &mut in_use, &mut out);
    allocate_tasks(store, &wanting.tasks, &mut in_use, &endpoints, &mut out);
    out
}

/// The objects of a scope that want something, in the order a round handles them.
#[derive(Default)]
struct Wanting<'a> {
    networks: Vec<&'a Network>,
    nodes: Vec<&'a Node>,
    services: Vec<&'a Service>,
    /// Each with the networks it lacks an address on.
    tasks: Vec<(&'a Task, Vec<String>)>,
}

impl<'a> Wanting<'a> {
    fn find(store: &'a ObjectStore, scope: &Scope, ingress: Option<&str>) -> Self {
        let network_wants = |n: &&Network| n.vni == 0 || allocated_subnet(n).is_none();
        let node_wants = |n: &&Node| {
            ingress.is_some_and(|ingress| {
                !n.ingress
                    .as_ref()
                    .is_some_and(|a| a.network_id == ingress && !a.addresses.is_empty())
            })
        };
        // A service wants something unless its endpoint, computed without anything in use
        // and without asking for anything, is the one it has: then a round with everything
        // in use computes the same (it takes the same path) and changes nothing.
        let service_wants = |s: &&Service| {
            let mut dry = InUse::empty();
            let endpoint = endpoint_for(s, ingress, &mut dry);
            dry.consulted || !endpoint.is_ok_and(|e| s.endpoint.as_ref() == Some(&e))
        };
        let task_wants = |t: &'a Task| {
            if !holds_addresses(t) || !not_delivered(t) {
                return None;
            }
            let service = store.get::<Service>(&t.service_id);
            let missing: Vec<String> = task_networks(t, service, ingress)
                .into_iter()
                .filter(|n| !has_address(t, n))
                .collect();
            (!missing.is_empty()).then_some((t, missing))
        };
        match scope {
            Scope::All => {
                // Only tasks no node has taken yet (the store's state index finds them), in
                // ID order.
                let mut tasks: Vec<(&Task, Vec<String>)> = store
                    .tasks_up_to_state(TaskState::Assigned)
                    .filter_map(task_wants)
                    .collect();
                tasks.sort_by(|a, b| a.0.id().cmp(b.0.id()));
                Wanting {
                    networks: store.list::<Network>().filter(network_wants).collect(),
                    nodes: store.list::<Node>().filter(node_wants).collect(),
                    services: store.list::<Service>().filter(service_wants).collect(),
                    tasks,
                }
            }
            Scope::Only { changed: only, .. } => Wanting {
                networks: only
                    .networks
                    .iter()
                    .filter_map(|id| store.get::<Network>(id))
                    .filter(network_wants)
                    .collect(),
                nodes: only
                    .nodes
                    .iter()
                    .filter_map(|id| store.get::<Node>(id))
                    .filter(node_wants)
                    .collect(),
                services: only
                    .services
                    .iter()
                    .filter_map(|id| store.get::<Service>(id))
                    .filter(service_wants)
                    .collect(),
                tasks: only
                    .tasks
                    .iter()
                    .filter_map(|id| store.get::<Task>(id))
                    .filter_map(task_wants)
                    .collect(),
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.nodes.is_empty()
            && self.services.is_empty()
            && self.tasks.is_empty()
    }

    /// Adds `other`'s objects, keeping each kind in ID order and each object once.
    fn merge(&mut self, other: Wanting<'a>) {
        fn join<T>(into: &mut Vec<T>, from: Vec<T>, id: impl Fn(&T) -> &str) {
            into.extend(from);
            into.sort_by(|a, b| id(a).cmp(id(b)));
            into.dedup_by(|a, b| id(a) == id(b));
        }
        join(&mut self.networks, other.networks, |n| n.id());
        join(&mut self.nodes, other.nodes, |n| n.id());
        join(&mut self.services, other.services, |s| s.id());
        join(&mut self.tasks, other.tasks, |(t, _)| t.id());
    }

    fn ids(&self) -> Objects {
        Objects {
            networks: self.networks.iter().map(|n| n.id().to_owned()).collect(),
            nodes: self.nodes.iter().map(|n| n.id().to_owned()).collect(),
            services: self.services.iter().map(|s| s.id().to_owned()).collect(),
            tasks: self.tasks.iter().map(|(t, _)| t.id().to_owned()).collect(),
        }
    }
}

impl InUse {
    /// Nothing in use and nowhere to allocate from.
    fn empty() -> Self {
        InUse {
            pools: Vec::new(),
            subnet_len: 24,
            subnets: Vec::new(),
            spaces: HashMap::new(),
            vnis: Vnis::default(),
            ports: Ports::default(),
            consulted: false,
        }
    }

    fn from_store(store: &ObjectStore) -> Self {
        // The cluster's settings with the defaults filled in, as `swarm init` stores them.
        let spec = default_spec(store.cluster().and_then(|c| c.spec.clone()));
        let pools: Vec<Cidr> = spec
            .default_addr_pool
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let subnet_len = spec.subnet_size.clamp(8, 30) as u8;
        let mut in_use = InUse {
            pools,
            subnet_len,
            subnets: Vec::new(),
            spaces: HashMap::new(),
            vnis: Vnis::default(),
            ports: Ports::default(),
            consulted: false,
        };
        for network in store.list::<Network>() {
            in_use.vnis.reserve(network.vni);
            match allocated_subnet(network) {
                Some((subnet, gateway)) => {
                    in_use.subnets.push(subnet);
                    let mut space = AddressSpace::new(subnet);
                    space.reserve(gateway);
                    in_use.spaces.insert(network.id().to_owned(), space);
                }
                // A subnet the user asked for is kept out of the pool even before it is
                // allocated, so carving never hands it to another network.
                None => in_use.subnets.extend(requested(network).0),
            }
        }
        for service in store.list::<Service>() {
            let asked = service
                .spec
                .iter()
                .flat_map(|s| &s.endpoint)
                .flat_map(|e| &e.ports);
            for port in asked.filter(|p| is_ingress(p) && p.published_port != 0) {
                in_use.ports.request(port.protocol, port.published_port);
            }
            let Some(endpoint) = service.endpoint.as_ref() else {
                continue;
            };
            for vip in &endpoint.virtual_ips {
                in_use.reserve_address(&vip.network_id, &vip.addr);
            }
            for port in endpoint.ports.iter().filter(|p| is_ingress(p)) {
                in_use.ports.reserve(port.protocol, port.published_port);
            }
        }
        for attachment in store.list::<Node>().filter_map(|n| n.ingress.as_ref()) {
            for addr in &attachment.addresses {
                in_use.reserve_address(&attachment.network_id, addr);
            }
        }
        // A task of a node removed from the cluster will never report again: what it held
        // is free. (A task of a node that is only down keeps its addresses: the node may
        // still run it behind a partition.)
        let node_exists =
            |t: &Task| t.node_id.is_empty() || store.get::<Node>(&t.node_id).is_some();
        for task in store
            .tasks_with_networks()
            .filter(|t| holds_addresses(t) && node_exists(t))
        {
            for attachment in &task.networks {
                for addr in &attachment.addresses {
                    in_use.reserve_address(&attachment.network_id, addr);
                }
            }
        }
        in_use
    }

    fn reserve_address(&mut self, network_id: &str, addr: &str) {
        if let (Some(space), Ok((ip, _))) = (self.spaces.get_mut(network_id), parse_interface(addr))
        {
            if !space.reserve(ip) {
                tracing::warn!(network = network_id, addr, "address held twice");
            }
        }
    }

    /// A new address on `network_id`, in CIDR form.
    fn address(&mut self, network_id: &str) -> Result<String, String> {
        self.consulted = true;
        let space = self
            .spaces
            .get_mut(network_id)
            .ok_or_else(|| format!("network {network_id} has no subnet yet"))?;
        let ip = space.allocate().map_err(|e| e.to_string())?;
        Ok(space.subnet().with_prefix(ip))
    }

    /// Takes a published port asked for by number; false if it is taken.
    fn reserve_port(&mut self, protocol: i32, port: u32) -> bool {
        self.consulted = true;
        self.ports.reserve(protocol, port)
    }

    /// Takes a free published port of the dynamic range.
    fn allocate_port(&mut self, protocol: i32) -> Option<u32> {
        self.consulted = true;
        self.ports.allocate(protocol)
    }
}

/// Rebuilds what is in use, as a round that allocates does (for a timing).
#[cfg(test)]
pub(super) fn rebuild_in_use(store: &ObjectStore) {
    std::hint::black_box(InUse::from_store(store));
}

/// The subnet and gateway a network was given, if any.
fn allocated_subnet(network: &Network) -> Option<(Cidr, Ipv4Addr)> {
    let ipam = network.ipam.first()?;
    let subnet: Cidr = ipam.subnet.parse().ok()?;
    let gateway = ipam.gateway.parse().unwrap_or_else(|_| subnet.first_host());
    Some((subnet, gateway))
}

/// The subnet and gateway the user asked for in the spec, if any.
fn requested(network: &Network) -> (Option<Cidr>, Option<Ipv4Addr>) {
    let ipam = network.spec.as_ref().and_then(|s| s.ipam.first());
    (
        ipam.and_then(|i| i.subnet.parse().ok()),
        ipam.and_then(|i| i.gateway.parse().ok()),
    )
}

fn is_ingress(port: &PortConfig) -> bool {
    port.publish_mode == PublishMode::Ingress as i32
}

/// Networks without a subnet or VNI get them.
fn allocate_networks(wanting: &[&Network], in_use: &mut InUse, out: &mut Allocation) {
    for &network in wanting {
        let (wanted, gateway) = requested(network);
        let subnet = match wanted {
            Some(s) => Ok(s),
            None => carve(&in_use.pools, in_use.subnet_len, &in_use.subnets),
        };
        let subnet = match subnet {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(network = network.name(), error = %e, "cannot allocate a subnet");
                continue;
            }
        };
        let Some(vni) = (if network.vni != 0 {
            Some(network.vni)
        } else {
            in_use.vnis.allocate()
        }) else {
            tracing::warn!(network = network.name(), "no VXLAN network identifier left");
            continue;
        };
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        let mut space = AddressSpace::new(subnet);
        space.reserve(gateway);
        if wanted.is_none() {
            in_use.subnets.push(subnet);
        }
        in_use.spaces.insert(network.id().to_owned(), space);
        let mut network = network.clone();
        network.vni = vni;
        network.ipam = vec![IpamConfig {
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            range: String::new(),
        }];
        tracing::info!(network = network.name(), %subnet, vni, "network allocated");
        out.actions.push(update(network));
    }
}

/// Nodes without an address on the ingress network get one (a removed node's is free at
/// once, since it is no longer in the store).
fn allocate_nodes(wanting: &[&Node], ingress: &str, in_use: &mut InUse, out: &mut Allocation) {
    for &node in wanting {
        match in_use.address(ingress) {
            Ok(addr) => {
                let mut node = node.clone();
                node.ingress = Some(NetworkAttachment {
                    network_id: ingress.to_owned(),
                    addresses: vec![addr],
                    aliases: Vec::new(),
                });
                out.actions.push(update(node));
            }
            Err(e) => {
                tracing::warn!(node = node.id(), error = %e, "cannot give the node an ingress address");
                return;
            }
        }
    }
}

/// Services whose endpoint (VIPs, published ports) does not match their spec get a new one.
/// Returns these services' endpoints as they will be after this round (every other
/// service keeps the one it has).
fn allocate_services(
    wanting: &[&Service],
    ingress: Option<&str>,
    in_use: &mut InUse,
    out: &mut Allocation,
) -> HashMap<String, Option<Endpoint>> {
    let mut endpoints = HashMap::new();
    for &service in wanting {
        let endpoint = match endpoint_for(service, ingress, in_use) {
            Ok(e) => e,
            Err(reason) => {
                tracing::warn!(service = service.name(), %reason, "cannot allocate the service's endpoint");
                endpoints.insert(service.id().to_owned(), service.endpoint.clone());
                continue;
            }
        };
        if service.endpoint.as_ref() != Some(&endpoint) {
            let mut service = service.clone();
            service.endpoint = Some(endpoint.clone());
            out.actions.push(update(service));
        }
        endpoints.insert(service.id().to_owned(), Some(endpoint));
    }
    endpoints
}

/// The endpoint `service` should have, keeping what it already holds where that still fits.
fn endpoint_for(
    service: &Service,
    ingress: Option<&str>,
    in_use: &mut InUse,
) -> Result<Endpoint, String> {
    let spec = service.spec.as_ref().and_then(|s| s.endpoint.clone());
    let current = service.endpoint.clone().unwrap_or_default();
    let wanted_ports = spec.as_ref().map(|s| s.ports.as_slice()).unwrap_or(&[]);
    let mut ports = Vec::new();
    for wanted in wanted_ports {
        let mut port = wanted.clone();
        if is_ingress(wanted) {
            let held = |p: &&PortConfig| {
                is_ingress(p)
                    && p.protocol == wanted.protocol
                    && p.target_port == wanted.target_port
                    && (wanted.published_port == 0 || p.published_port == wanted.published_port)
            };
            let requested_elsewhere = |p: u32| {
                wanted_ports
                    .iter()
                    .any(|w| w.published_port == p && w.protocol == wanted.protocol)
            };
            let kept =
                current.ports.iter().find(held).filter(|p| {
                    wanted.published_port != 0 || !requested_elsewhere(p.published_port)
                });
            port.published_port = match kept {
                Some(p) => p.published_port,
                None if wanted.published_port != 0 => {
                    if !in_use.reserve_port(wanted.protocol, wanted.published_port) {
                        return Err(format!(
                            "port {}/{} is already published by another service",
                            wanted.published_port,
                            protocol_name(wanted.protocol)
                        ));
                    }
                    wanted.published_port
                }
                None => in_use.allocate_port(wanted.protocol).ok_or_else(|| {
                    format!(
                        "no {} port left in the dynamic range",
                        protocol_name(wanted.protocol)
                    )
                })?,
            };
        }
        ports.push(port);
    }
    let vip_mode = spec
        .as_ref()
        .is_none_or(|s| s.mode == ResolutionMode::Vip as i32);
    let mut virtual_ips = Vec::new();
    // A VIP on `ingress` only for the routing mesh: host-mode ports reach tasks directly.
    let mesh = publishes_ingress(spec.as_ref());
    if vip_mode {
        for network_id in networks_of(
            service.spec.as_ref().and_then(|s| s.task_template.as_ref()),
            service.spec.as_ref().and_then(|s| s.endpoint.as_ref()),
            ingress,
        )
        .into_iter()
        .filter(|id| mesh || Some(id.as_str()) != ingress)
        {
            let addr = match current
                .virtual_ips
                .iter()
                .find(|v| v.network_id == network_id)
            {
                Some(v) => v.addr.clone(),
                None => in_use.address(&network_id)?,
            };
            virtual_ips.push(VirtualIp { network_id, addr });
        }
    }
    Ok(Endpoint {
        spec,
        ports,
        virtual_ips,
    })
}

/// Tasks not yet delivered to a node get an address on each network they lack one on.
fn allocate_tasks(
    store: &ObjectStore,
    wanting: &[(&Task, Vec<String>)],
    in_use: &mut InUse,
    endpoints: &HashMap<String, Option<Endpoint>>,
    out: &mut Allocation,
) {
    for (task, missing) in wanting {
        let task = *task;
        let mut updated = task.clone();
        let mut failure = None;
        for network_id in missing {
            match in_use.address(network_id) {
                Ok(addr) => {
                    updated.networks.retain(|a| &a.network_id != network_id);
                    updated.networks.push(NetworkAttachment {
                        network_id: network_id.clone(),
                        addresses: vec![addr],
                        aliases: aliases(task, network_id),
                    });
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            None => {
                let endpoint = match endpoints.get(&task.service_id) {
                    Some(endpoint) => Some(endpoint.clone()),
                    None => store
                        .get::<Service>(&task.service_id)
                        .map(|s| s.endpoint.clone()),
                };
                if let Some(endpoint) = endpoint {
                    updated.endpoint = endpoint;
                }
                out.actions.push(update(updated));
            }
            Some(reason) => {
                // Keep the task pending and say why; what it got this round is not committed,
                // so it holds nothing.
                let reason = format!("cannot allocate a network address: {reason}");
                if task.status.as_ref().is_none_or(|s| s.err != reason) {
                    let mut task = task.clone();
                    let status = task.status.get_or_insert_with(Default::default);
                    status.err = reason;
                    if status.state == TaskState::Pending as i32 {
                        status.message = "pending network allocation".into();
                    }
                    out.actions.push(update(task));
                }
            }
        }
    }
}

fn has_address(task: &Task, network_id: &str) -> bool {
    task.networks
        .iter()
        .any(|a| a.network_id == network_id && !a.addresses.is_empty())
}

fn aliases(task: &Task, network_id: &str) -> Vec<String> {
    task.spec
        .iter()
        .flat_map(|s| &s.networks)
        .filter(|n| n.target == network_id)
        .flat_map(|n| n.aliases.iter().cloned())
        .collect()
}
