//! Service discovery as one node must serve it: for every network (but `ingress`) its tasks
//! are on, the services on that network with their VIP (none in endpoint mode `dnsrr`) and
//! the addresses of their running, not unhealthy, tasks wherever they run. The node answers
//! its tasks' DNS queries from it and balances their connections to a VIP over the tasks.
//! `ingress` is left out: it carries the routing mesh, not names (as in Swarm).

use std::collections::{BTreeMap, BTreeSet};

use proto::store_object::Object;
use proto::{DiscoveryNetwork, DiscoveryService, DiscoveryState, Service, StoreEvent};

use super::mesh::in_rotation;
use crate::allocator::{holds_addresses, ingress_network};
use crate::store::{ObjectStore, StoredObject};

/// An address without its prefix length.
fn host(addr: &str) -> &str {
    addr.split('/').next().unwrap_or(addr)
}

/// Service discovery for `node_id` now.
pub fn view(store: &ObjectStore, node_id: &str) -> DiscoveryState {
    let ingress = ingress_network(store).map(|n| n.id());
    let wanted: BTreeSet<&str> = store
        .tasks_on_node(node_id)
        .filter(|t| holds_addresses(t))
        .flat_map(|t| &t.networks)
        .map(|a| a.network_id.as_str())
        .filter(|id| Some(*id) != ingress)
        .collect();
    if wanted.is_empty() {
        return DiscoveryState::default();
    }
    let mut networks: BTreeMap<&str, Vec<DiscoveryService>> =
        wanted.iter().map(|id| (*id, Vec::new())).collect();
    for service in store.list::<Service>() {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let attached = spec.task_template.iter().flat_map(|t| &t.networks);
        for config in attached {
            let Some(services) = networks.get_mut(config.target.as_str()) else {
                continue;
            };
            let vip = service
                .endpoint
                .iter()
                .flat_map(|e| &e.virtual_ips)
                .find(|v| v.network_id == config.target)
                .map(|v| host(&v.addr).to_owned())
                .unwrap_or_default();
            services.push(DiscoveryService {
                service_id: service.id().to_owned(),
                name: spec.name.clone(),
                aliases: config.aliases.clone(),
                vip,
                tasks: Vec::new(),
            });
        }
    }
    // The tasks of the services listed, not every task.
    let listed: BTreeSet<String> = networks
        .values()
        .flatten()
        .map(|s| s.service_id.clone())
        .collect();
    let tasks = listed
        .iter()
        .flat_map(|id| store.tasks_of_service(id))
        .filter(|t| in_rotation(t));
    for task in tasks {
        for attachment in &task.networks {
            let Some(services) = networks.get_mut(attachment.network_id.as_str()) else {
                continue;
            };
            let Some(service) = services
                .iter_mut()
                .find(|s| s.service_id == task.service_id)
            else {
                continue;
            };
            if let Some(addr) = attachment.addresses.first() {
                service.tasks.push(host(addr).to_owned());
            }
        }
    }
    DiscoveryState {
        networks: networks
            .into_iter()
            .map(|(id, mut services)| {
                services.sort_by(|a, b| a.name.cmp(&b.name));
                for s in &mut services {
                    s.tasks.sort();
                }
                DiscoveryNetwork {
                    network_id: id.to_owned(),
                    services,
                }
            })
            .collect(),
    }
}

/// Whether `event` may change a node's service discovery: services, networks and tasks on
/// networks. Tasks without networks never do.
pub fn touched_by(event: &StoreEvent) -> bool {
    match event.object.as_ref().and_then(|o| o.object.as_ref()) {
        Some(Object::Service(_)) | Some(Object::Network(_)) => true,
        Some(Object::Task(t)) => !t.networks.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proto::{
        Endpoint, EndpointSpec, HealthState, Meta, Network, NetworkAttachment,
        NetworkAttachmentConfig, NetworkSpec, ResolutionMode, ServiceSpec, StoreBatch, Task,
        TaskSpec, TaskState, TaskStatus, VirtualIp,
    };

    use super::*;
    use crate::store::create;

    fn meta(id: &str) -> Option<Meta> {
        Some(Meta {
            id: id.into(),
            ..Default::default()
        })
    }

    fn network(id: &str, ingress: bool) -> Network {
        Network {
            meta: meta(id),
            spec: Some(NetworkSpec {
                name: id.into(),
                ingress,
                ..Default::default()
            }),
            vni: 4096,
            ..Default::default()
        }
    }

    fn service(
        id: &str,
        networks: &[&str],
        mode: ResolutionMode,
        vips: &[(&str, &str)],
    ) -> Service {
        Service {
            meta: meta(id),
            spec: Some(ServiceSpec {
                name: id.into(),
                task_template: Some(TaskSpec {
                    networks: networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: (*n).into(),
                            aliases: if id == "db" {
                                vec!["database".into()]
                            } else {
                                vec![]
                            },
                        })
                        .collect(),
                    ..Default::default()
                }),
                endpoint: Some(EndpointSpec {
                    mode: mode as i32,
                    ports: vec![],
                }),
                ..Default::default()
            }),
            endpoint: Some(Endpoint {
                virtual_ips: vips
                    .iter()
                    .map(|(n, a)| VirtualIp {
                        network_id: (*n).into(),
                        addr: (*a).into(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(
        id: &str,
        service: &str,
        node: &str,
        state: TaskState,
        attached: &[(&str, &str)],
    ) -> Task {
        Task {
            meta: meta(id),
            service_id: service.into(),
            node_id: node.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                health: HealthState::None as i32,
                ..Default::default()
            }),
            networks: attached
                .iter()
                .map(|(n, a)| NetworkAttachment {
                    network_id: (*n).into(),
                    addresses: vec![(*a).into()],
                    aliases: vec![],
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_learns_the_services_of_its_tasks_networks_only() {
        let mut store = ObjectStore::default();
        let actions = vec![
            create(network("ingress", true)),
            create(network("front", false)),
            create(network("back", false)),
            create(network("other", false)),
            create(service(
                "web",
                &["front"],
                ResolutionMode::Vip,
                &[("front", "10.0.1.2/24"), ("ingress", "10.0.0.2/24")],
            )),
            create(service(
                "db",
                &["front", "back"],
                ResolutionMode::Dnsrr,
                &[],
            )),
            create(service(
                "hidden",
                &["other"],
                ResolutionMode::Vip,
                &[("other", "10.0.3.2/24")],
            )),
            // n1 runs a web task (front and ingress); db runs on n2, on front and back.
            create(task(
                "w1",
                "web",
                "n1",
                TaskState::Running,
                &[("front", "10.0.1.3/24"), ("ingress", "10.0.0.3/24")],
            )),
            create(task(
                "w2",
                "web",
                "n2",
                TaskState::Starting,
                &[("front", "10.0.1.4/24"), ("ingress", "10.0.0.4/24")],
            )),
            create(task(
                "d1",
                "db",
                "n2",
                TaskState::Running,
                &[("front", "10.0.1.6/24"), ("back", "10.0.2.6/24")],
            )),
            create(task(
                "h1",
                "hidden",
                "n2",
                TaskState::Running,
                &[("other", "10.0.3.3/24")],
            )),
        ];
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        let v = view(&store, "n1");
        let networks: Vec<&str> = v.networks.iter().map(|n| n.network_id.as_str()).collect();
        assert_eq!(
            networks,
            ["front"],
            "not ingress, not networks of other nodes' tasks"
        );
        let front = &v.networks[0].services;
        let names: Vec<&str> = front.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(front[0].vip, "", "dnsrr has no VIP");
        assert_eq!(front[0].aliases, ["database"]);
        assert_eq!(front[0].tasks, ["10.0.1.6"], "its address on this network");
        assert_eq!(front[1].vip, "10.0.1.2");
        assert_eq!(front[1].tasks, ["10.0.1.3"], "running tasks only");

        let v2 = view(&store, "n2");
        let networks: Vec<&str> = v2.networks.iter().map(|n| n.network_id.as_str()).collect();
        assert_eq!(networks, ["back", "front", "other"]);
        assert!(view(&store, "n3").networks.is_empty());

        // Assignments carry it whole when it changes: w2 starts running.
        let mut tracker = super::super::assignments::NodeAssignments::default();
        assert_eq!(tracker.complete(&store, "n1").discovery, Some(v));
        let mut w2 = store.get::<Task>("w2").unwrap().clone();
        w2.status.as_mut().unwrap().state = TaskState::Running as i32;
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![crate::store::update(w2)],
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        let next = tracker
            .incremental(&store, &events, "n1")
            .expect("a change");
        let discovery = next.discovery.expect("discovery changed");
        assert_eq!(
            discovery.networks[0].services[1].tasks,
            ["10.0.1.3", "10.0.1.4"]
        );
    }
}
