use std::collections::HashSet;

use proto::{
    Cluster, ClusterSpec, EndpointSpec, IpamConfig, Meta, Network, NetworkAttachmentConfig,
    NetworkSpec, PortConfig, PortProtocol, PublishMode, ResolutionMode, Service, ServiceSpec,
    StoreAction, StoreBatch, Task, TaskSpec, TaskState, TaskStatus,
};

use super::*;
use crate::store::{create, delete};

/// A store and the next log index, applying batches as Raft would.
struct World {
    store: ObjectStore,
    index: u64,
}

impl World {
    fn new(pool: &str, len: u32) -> Self {
        let mut w = World {
            store: ObjectStore::default(),
            index: 0,
        };
        w.apply(vec![create(Cluster {
            meta: Some(meta("cluster")),
            spec: Some(ClusterSpec {
                default_addr_pool: vec![pool.into()],
                subnet_size: len,
                ..Default::default()
            }),
            ..Default::default()
        })]);
        w
    }

    fn apply(&mut self, actions: Vec<StoreAction>) {
        self.index += 1;
        self.store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                self.index,
            )
            .expect("batch applies");
    }

    /// One allocator round, committed.
    fn allocate(&mut self) {
        let Allocation { actions, .. } = allocate(&self.store);
        if !actions.is_empty() {
            self.apply(actions);
        }
    }

    fn network(&mut self, id: &str, subnet: Option<&str>, ingress: bool) {
        self.apply(vec![create(Network {
            meta: Some(meta(id)),
            spec: Some(NetworkSpec {
                name: id.into(),
                driver: "overlay".into(),
                ingress,
                ipam: subnet
                    .map(|s| IpamConfig {
                        subnet: s.into(),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })]);
    }

    fn service(&mut self, id: &str, networks: &[&str], ports: Vec<PortConfig>) {
        self.apply(vec![create(Service {
            meta: Some(meta(id)),
            spec: Some(ServiceSpec {
                name: id.into(),
                task_template: Some(TaskSpec {
                    networks: networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: (*n).into(),
                            aliases: vec![],
                        })
                        .collect(),
                    ..Default::default()
                }),
                endpoint: Some(EndpointSpec {
                    mode: ResolutionMode::Vip as i32,
                    ports,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })]);
    }

    fn task(&mut self, id: &str, service: &str) {
        let spec = self
            .store
            .get::<Service>(service)
            .and_then(|s| s.spec.as_ref()?.task_template.clone());
        self.apply(vec![create(Task {
            meta: Some(meta(id)),
            service_id: service.into(),
            spec: spec.map(Into::into),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Pending as i32,
                ..Default::default()
            }),
            ..Default::default()
        })]);
    }

    fn remove<T: StoredObject>(&mut self, id: &str) {
        let object = self.store.get::<T>(id).unwrap().clone();
        self.apply(vec![delete(object)]);
    }

    fn addr(&self, task: &str, network: &str) -> String {
        let task = self.store.get::<Task>(task).unwrap();
        task.networks
            .iter()
            .find(|a| a.network_id == network)
            .map(|a| a.addresses[0].clone())
            .unwrap_or_default()
    }

    fn net(&self, id: &str) -> &Network {
        self.store.get::<Network>(id).unwrap()
    }

    fn endpoint(&self, service: &str) -> proto::Endpoint {
        self.store
            .get::<Service>(service)
            .unwrap()
            .endpoint
            .clone()
            .unwrap_or_default()
    }
}

fn meta(id: &str) -> Meta {
    Meta {
        id: id.into(),
        ..Default::default()
    }
}

fn ingress_port(published: u32, target: u32, protocol: PortProtocol) -> PortConfig {
    PortConfig {
        protocol: protocol as i32,
        target_port: target,
        published_port: published,
        publish_mode: PublishMode::Ingress as i32,
        ..Default::default()
    }
}

#[test]
fn networks_get_subnets_from_the_pool_gateways_and_distinct_vnis() {
    let mut w = World::new("10.10.0.0/16", 24);
    w.network("ingress", None, true);
    w.allocate();
    w.network("mine", Some("10.10.1.0/24"), false);
    w.network("auto", None, false);
    w.allocate();
    let subnet = |id: &str| w.net(id).ipam[0].subnet.clone();
    assert_eq!(subnet("ingress"), "10.10.0.0/24");
    assert_eq!(subnet("mine"), "10.10.1.0/24");
    assert_eq!(
        subnet("auto"),
        "10.10.2.0/24",
        "a requested subnet is skipped"
    );
    assert_eq!(w.net("mine").ipam[0].gateway, "10.10.1.1");
    let vnis: HashSet<u32> = ["ingress", "mine", "auto"]
        .iter()
        .map(|n| w.net(n).vni)
        .collect();
    assert_eq!(vnis, HashSet::from([4096, 4097, 4098]));
    // Nothing left to do: a second round changes nothing.
    assert!(allocate(&w.store).actions.is_empty());
}

#[test]
fn services_get_a_vip_per_network_and_ports_and_tasks_wait_for_addresses() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("ingress", None, true);
    w.allocate();
    w.network("back", None, false);
    w.allocate();
    w.service(
        "web",
        &["back"],
        vec![
            ingress_port(8080, 80, PortProtocol::Tcp),
            ingress_port(0, 53, PortProtocol::Udp),
        ],
    );
    w.task("t1", "web");
    let task = w.store.get::<Task>("t1").unwrap().clone();
    assert!(!is_allocated(&w.store, &task));
    w.allocate();
    let endpoint = w.endpoint("web");
    let vips: Vec<_> = endpoint
        .virtual_ips
        .iter()
        .map(|v| (v.network_id.as_str(), v.addr.as_str()))
        .collect();
    assert_eq!(vips, [("back", "10.0.1.2/24"), ("ingress", "10.0.0.2/24")]);
    let published: Vec<u32> = endpoint.ports.iter().map(|p| p.published_port).collect();
    assert_eq!(published, [8080, 30000]);
    let task = w.store.get::<Task>("t1").unwrap().clone();
    assert!(is_allocated(&w.store, &task));
    assert_eq!(w.addr("t1", "back"), "10.0.1.3/24");
    assert_eq!(w.addr("t1", "ingress"), "10.0.0.3/24");
    assert_eq!(task.endpoint, Some(endpoint));
    assert!(allocate(&w.store).actions.is_empty());
}

#[test]
fn every_node_gets_its_own_ingress_address_freed_when_it_is_removed() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("ingress", None, true);
    w.allocate();
    for id in ["n1", "n2"] {
        w.apply(vec![create(proto::Node {
            meta: Some(meta(id)),
            ..Default::default()
        })]);
    }
    w.service("web", &[], vec![ingress_port(8080, 80, PortProtocol::Tcp)]);
    w.task("t1", "web");
    w.allocate();
    let leg = |w: &World, id: &str| {
        let node = w.store.get::<proto::Node>(id).unwrap();
        let attachment = node.ingress.clone().expect("an ingress address");
        assert_eq!(attachment.network_id, "ingress");
        attachment.addresses[0].clone()
    };
    let (a, b) = (leg(&w, "n1"), leg(&w, "n2"));
    let taken: HashSet<String> = [
        a.clone(),
        b.clone(),
        w.addr("t1", "ingress"),
        w.endpoint("web").virtual_ips[0].addr.clone(),
    ]
    .into();
    assert_eq!(
        taken.len(),
        4,
        "nodes, task and VIP never share an address: {taken:?}"
    );
    assert!(allocate(&w.store).actions.is_empty(), "stable once given");
    w.remove::<proto::Node>("n1");
    w.apply(vec![create(proto::Node {
        meta: Some(meta("n3")),
        ..Default::default()
    })]);
    w.allocate();
    assert_eq!(leg(&w, "n3"), a, "the removed node's address is free again");
}

#[test]
fn dnsrr_services_get_no_vip_and_host_ports_pass_through() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("back", None, false);
    w.allocate();
    w.service(
        "db",
        &["back"],
        vec![PortConfig {
            target_port: 5432,
            published_port: 0,
            publish_mode: PublishMode::Host as i32,
            ..Default::default()
        }],
    );
    w.modify_service("db", |s| {
        s.spec.as_mut().unwrap().endpoint.as_mut().unwrap().mode = ResolutionMode::Dnsrr as i32
    });
    w.allocate();
    let endpoint = w.endpoint("db");
    assert!(endpoint.virtual_ips.is_empty());
    assert_eq!(
        endpoint.ports[0].published_port, 0,
        "host ports are the node's"
    );
}

#[test]
fn tasks_publishing_in_host_mode_join_ingress_without_a_vip_there() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("ingress", None, true);
    w.network("back", None, false);
    w.allocate();
    w.service(
        "web",
        &["back"],
        vec![PortConfig {
            target_port: 80,
            published_port: 8081,
            publish_mode: PublishMode::Host as i32,
            ..Default::default()
        }],
    );
    w.task("t1", "web");
    w.allocate();
    let vips: Vec<String> = w
        .endpoint("web")
        .virtual_ips
        .iter()
        .map(|v| v.network_id.clone())
        .collect();
    assert_eq!(vips, ["back"], "the mesh does not carry host-mode ports");
    // The node reaches the task through its leg into ingress.
    let subnet = |n: &str| w.net(n).ipam[0].subnet.clone();
    let prefix = |s: String| s.rsplit_once('.').unwrap().0.to_owned();
    assert!(w
        .addr("t1", "ingress")
        .starts_with(&prefix(subnet("ingress"))));
    assert!(w.addr("t1", "back").starts_with(&prefix(subnet("back"))));
}

impl World {
    fn modify_service(&mut self, id: &str, change: impl FnOnce(&mut Service)) {
        let mut s = self.store.get::<Service>(id).unwrap().clone();
        change(&mut s);
        self.apply(vec![crate::store::update(s)]);
    }
}

#[test]
fn a_removed_service_frees_its_vip_and_port_at_once() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("ingress", None, true);
    w.allocate();
    w.service("a", &[], vec![ingress_port(0, 80, PortProtocol::Tcp)]);
    w.allocate();
    let first = w.endpoint("a");
    w.remove::<Service>("a");
    w.service("b", &[], vec![ingress_port(0, 80, PortProtocol::Tcp)]);
    w.allocate();
    let second = w.endpoint("b");
    assert_eq!(first.virtual_ips[0].addr, second.virtual_ips[0].addr);
    assert_eq!(
        first.ports[0].published_port,
        second.ports[0].published_port
    );
}

#[test]
fn a_port_taken_by_another_service_is_not_handed_out_twice() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.service("a", &[], vec![ingress_port(8080, 80, PortProtocol::Tcp)]);
    w.allocate();
    // The control API refuses this; the allocator must hold even if two creates raced.
    w.service("b", &[], vec![ingress_port(8080, 80, PortProtocol::Tcp)]);
    w.allocate();
    assert_eq!(w.endpoint("a").ports[0].published_port, 8080);
    assert!(w.endpoint("b").ports.is_empty(), "b stays unallocated");
    // An auto port of another service survives a spec change of its own.
    w.service("c", &[], vec![ingress_port(0, 80, PortProtocol::Tcp)]);
    w.allocate();
    let auto = w.endpoint("c").ports[0].published_port;
    w.modify_service("c", |s| {
        s.spec
            .as_mut()
            .unwrap()
            .labels
            .insert("x".into(), "y".into());
    });
    w.allocate();
    assert_eq!(w.endpoint("c").ports[0].published_port, auto);
}

#[test]
fn three_hundred_tasks_in_turn_never_exhaust_a_slash_24() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("net", None, false);
    w.allocate();
    w.service("s", &["net"], vec![]);
    w.allocate();
    let mut live: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..300 {
        let id = format!("t{i}");
        w.task(&id, "s");
        w.allocate();
        let addr = w.addr(&id, "net");
        assert!(!addr.is_empty(), "task {i} got no address");
        seen.insert(addr);
        live.push(id);
        // Keep 100 tasks alive; the oldest goes away in turn, half by ending, half removed.
        if live.len() > 100 {
            let old = live.remove(0);
            if i % 2 == 0 {
                w.remove::<Task>(&old);
            } else {
                let mut t = w.store.get::<Task>(&old).unwrap().clone();
                t.status.as_mut().unwrap().state = TaskState::Failed as i32;
                w.apply(vec![crate::store::update(t)]);
            }
        }
        let holders: Vec<String> = w
            .store
            .list::<Task>()
            .filter(|t| holds_addresses(t))
            .map(|t| t.networks[0].addresses[0].clone())
            .collect();
        let unique: HashSet<&String> = holders.iter().collect();
        assert_eq!(unique.len(), holders.len(), "an address is held twice");
    }
    assert!(seen.len() <= 253);
}

#[test]
fn a_full_subnet_keeps_the_task_pending_with_the_reason() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("tiny", Some("10.9.0.0/30"), false);
    w.allocate();
    w.service("s", &["tiny"], vec![]);
    w.allocate();
    // A /30 has two hosts: the gateway and the VIP.
    w.task("t1", "s");
    w.allocate();
    let task = w.store.get::<Task>("t1").unwrap();
    assert!(!is_allocated(&w.store, task));
    let err = &task.status.as_ref().unwrap().err;
    assert!(
        err.contains("no address left in subnet 10.9.0.0/30"),
        "{err}"
    );
    assert!(
        allocate(&w.store).actions.is_empty(),
        "the reason is written once"
    );
}

#[test]
fn automatic_ports_leave_ports_asked_for_by_number_alone() {
    let mut w = World::new("10.0.0.0/8", 24);
    // "a" sorts first and asks for any port; "b" asks for 30000 in the same round.
    w.service("a", &[], vec![ingress_port(0, 80, PortProtocol::Tcp)]);
    w.service("b", &[], vec![ingress_port(30000, 80, PortProtocol::Tcp)]);
    w.allocate();
    assert_eq!(w.endpoint("a").ports[0].published_port, 30001);
    assert_eq!(w.endpoint("b").ports[0].published_port, 30000);
}

#[test]
fn a_host_network_task_gets_no_network_address_or_vip_and_counts_as_allocated() {
    let mut w = World::new("10.0.0.0/8", 24);
    w.network("ingress", None, true);
    w.allocate();
    w.service(
        "web",
        &[proto::container_options::HOST_NETWORK],
        vec![PortConfig {
            target_port: 8080,
            published_port: 8080,
            publish_mode: PublishMode::Host as i32,
            ..Default::default()
        }],
    );
    w.task("t1", "web");
    w.allocate();
    assert!(w.endpoint("web").virtual_ips.is_empty());
    let task = w.store.get::<Task>("t1").unwrap();
    assert!(task.networks.is_empty(), "{:?}", task.networks);
    assert!(is_allocated(&w.store, task));
}
