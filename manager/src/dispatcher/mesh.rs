//! The routing mesh as one node must program it: every service that publishes ports through
//! the mesh, with the ingress addresses of its running (and not unhealthy) tasks wherever
//! they run, and the node's own leg address on the ingress network. Every node gets the
//! same services, whether or not it runs a task of them: that is what lets any node answer.

use proto::store_object::Object;
use proto::{
    HealthState, MeshService, MeshState, Node, PublishMode, Service, StoreEvent, Task, TaskState,
};

use crate::allocator::ingress_network;
use crate::store::{ObjectStore, StoredObject};

/// The mesh for `node_id` now.
pub fn view(store: &ObjectStore, node_id: &str) -> MeshState {
    let Some(ingress) = ingress_network(store).map(|n| n.id().to_owned()) else {
        return MeshState::default();
    };
    let leg_address = store
        .get::<Node>(node_id)
        .and_then(|n| n.ingress.as_ref())
        .and_then(|a| a.addresses.first().cloned())
        .unwrap_or_default();
    let mut services: Vec<MeshService> = store
        .list::<Service>()
        .filter_map(|service| {
            let ports: Vec<_> = service
                .endpoint
                .as_ref()?
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Ingress as i32 && p.published_port != 0)
                .cloned()
                .collect();
            (!ports.is_empty()).then(|| MeshService {
                service_id: service.id().to_owned(),
                ports,
                backends: Vec::new(),
            })
        })
        .collect();
    // The tasks of the services that publish, not every task.
    for service in &mut services {
        let tasks = store
            .tasks_of_service(&service.service_id)
            .filter(|t| in_rotation(t));
        for task in tasks {
            let addrs = task
                .networks
                .iter()
                .filter(|a| a.network_id == ingress)
                .flat_map(|a| a.addresses.first());
            for addr in addrs {
                let ip = addr.split('/').next().unwrap_or(addr);
                service.backends.push(ip.to_owned());
            }
        }
        service.backends.sort();
    }
    MeshState {
        leg_address,
        services,
    }
}

/// A task takes connections while it is meant to run, runs, and has not failed its health
/// check: one that stops or turns unhealthy leaves the rotation at once.
pub(super) fn in_rotation(task: &Task) -> bool {
    let status = task.status.as_ref();
    task.desired_state == TaskState::Running as i32
        && status.is_some_and(|s| s.state == TaskState::Running as i32)
        && status.is_none_or(|s| s.health != HealthState::Unhealthy as i32)
}

/// Whether `event` may change `node_id`'s mesh: services, tasks on networks, and the node's
/// own record (its leg address). Tasks without networks never do.
pub fn touched_by(event: &StoreEvent, node_id: &str) -> bool {
    match event.object.as_ref().and_then(|o| o.object.as_ref()) {
        Some(Object::Service(_)) | Some(Object::Network(_)) => true,
        Some(Object::Task(t)) => !t.networks.is_empty(),
        Some(Object::Node(n)) => n.id() == node_id,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proto::{
        Endpoint, Meta, Network, NetworkAttachment, NetworkSpec, PortConfig, StoreBatch, TaskStatus,
    };

    use super::*;
    use crate::store::create;

    fn meta(id: &str) -> Option<Meta> {
        Some(Meta {
            id: id.into(),
            ..Default::default()
        })
    }

    fn task(id: &str, state: TaskState, health: HealthState, addr: &str) -> Task {
        Task {
            meta: meta(id),
            service_id: "web".into(),
            node_id: "n2".into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                health: health as i32,
                ..Default::default()
            }),
            networks: vec![NetworkAttachment {
                network_id: "ingress".into(),
                addresses: vec![addr.into()],
                aliases: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_node_gets_the_running_healthy_tasks_of_published_services() {
        let mut store = ObjectStore::default();
        let published = PortConfig {
            published_port: 8080,
            target_port: 80,
            publish_mode: PublishMode::Ingress as i32,
            ..Default::default()
        };
        let actions = vec![
            create(Network {
                meta: meta("ingress"),
                spec: Some(NetworkSpec {
                    name: "ingress".into(),
                    ingress: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            create(Node {
                meta: meta("n1"),
                ingress: Some(NetworkAttachment {
                    network_id: "ingress".into(),
                    addresses: vec!["10.0.0.9/24".into()],
                    aliases: vec![],
                }),
                ..Default::default()
            }),
            create(Service {
                meta: meta("web"),
                endpoint: Some(Endpoint {
                    ports: vec![published],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            create(Service {
                meta: meta("quiet"),
                ..Default::default()
            }),
            create(task(
                "t1",
                TaskState::Running,
                HealthState::Healthy,
                "10.0.0.5/24",
            )),
            create(task(
                "t2",
                TaskState::Running,
                HealthState::None,
                "10.0.0.4/24",
            )),
            create(task(
                "t3",
                TaskState::Starting,
                HealthState::None,
                "10.0.0.6/24",
            )),
            create(task(
                "t4",
                TaskState::Running,
                HealthState::Unhealthy,
                "10.0.0.7/24",
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
        // Node n1 runs none of the tasks and still gets them all.
        let mesh = view(&store, "n1");
        assert_eq!(mesh.leg_address, "10.0.0.9/24");
        assert_eq!(mesh.services.len(), 1, "only services that publish");
        assert_eq!(mesh.services[0].service_id, "web");
        assert_eq!(mesh.services[0].ports[0].published_port, 8080);
        assert_eq!(mesh.services[0].backends, ["10.0.0.4", "10.0.0.5"]);

        // Assignments carry the mesh whole at first, then only when it changes.
        let mut tracker = super::super::assignments::NodeAssignments::default();
        assert_eq!(tracker.complete(&store, "n1").mesh, Some(mesh));
        let mut t3 = store.get::<Task>("t3").unwrap().clone();
        t3.status.as_mut().unwrap().state = TaskState::Running as i32;
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![crate::store::update(t3)],
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        let next = tracker
            .incremental(&store, &events, "n1")
            .expect("a change");
        let backends = &next.mesh.expect("the mesh changed").services[0].backends;
        assert_eq!(backends, &["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        // A change that does not touch the mesh sends nothing.
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![create(Service {
                        meta: meta("other"),
                        ..Default::default()
                    })],
                    ..Default::default()
                },
                3,
            )
            .unwrap();
        assert!(tracker.incremental(&store, &events, "n1").is_none());
    }
}
