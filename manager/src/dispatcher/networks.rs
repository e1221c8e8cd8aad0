//! The networks each node must set up, with their peers: the overlay networks of the tasks
//! it runs, each with the underlay addresses of the other nodes running tasks on it, and
//! `ingress`, which every node joins for the routing mesh. With the peers go the network's
//! endpoints on other nodes (task addresses, and the nodes' legs on ingress), each with its
//! node's VTEP. The worker programs its VXLAN forwarding from these, so no gossip is needed:
//! peers for broadcasts, endpoints for unicast, which would otherwise be flooded to every
//! peer.
//!
//! Ingress peers follow the traffic, not the cluster's size. A node with tasks on ingress
//! (a backend of the mesh) has every other node as a peer: any node's mesh may forward a
//! connection to its task, and the replies go back to that node's leg. Any other node only
//! forwards: its peers are the backends (and the managers, whose addresses and ports its
//! mesh must leave alone). Listing every node on every node made each join re-send a list
//! of every node to every node: O(nodes^2) per join, which held a 10,000-node cluster at
//! about 1,260 ready nodes with the leader's CPU full.

use std::collections::{BTreeMap, BTreeSet};

use proto::store_object::Object;
use proto::{Network, NetworkPeers, Node, OverlayEndpoint, StoreEvent, WeightedPeer};

use crate::allocator::{holds_addresses, ingress_network};
use crate::store::{ObjectStore, StoredObject};

/// What one node is told about networks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NetworkView {
    /// The networks, by ID.
    pub networks: BTreeMap<String, Network>,
    /// Per network, the other nodes with tasks on it, by node ID.
    pub peers: BTreeMap<String, Vec<WeightedPeer>>,
    /// Per network, its addresses held on other nodes, by address.
    pub endpoints: BTreeMap<String, Vec<OverlayEndpoint>>,
    /// Whether every other node is the node's peer on ingress (it has tasks there), so
    /// that a node that joins concerns it.
    pub every_node_a_peer: bool,
}

/// The networks `node_id` is in, with their peers.
pub fn view(store: &ObjectStore, node_id: &str) -> NetworkView {
    let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut endpoints: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    // Every task on a network, not every task: the view's endpoints are as many.
    for task in store
        .tasks_with_networks()
        .filter(|t| !t.node_id.is_empty() && holds_addresses(t))
    {
        for attachment in &task.networks {
            let network = attachment.network_id.as_str();
            members
                .entry(network)
                .or_default()
                .insert(task.node_id.as_str());
            if task.node_id != node_id {
                let held = endpoints.entry(network).or_default();
                held.extend(
                    attachment
                        .addresses
                        .iter()
                        .map(|a| (a.as_str(), task.node_id.as_str())),
                );
            }
        }
    }
    let ingress = ingress_network(store).map(|n| n.id());
    let ingress_peers = ingress.map(|ingress| ingress_peers(store, node_id, members.get(ingress)));
    if let (Some(ingress), Some(nodes)) = (ingress, &ingress_peers) {
        let legs = nodes
            .iter()
            .filter_map(|n| Some((n.ingress.as_ref()?.addresses.first()?.as_str(), n.id())));
        endpoints.entry(ingress).or_default().extend(legs);
    }
    let mut out = NetworkView {
        every_node_a_peer: ingress
            .and_then(|i| members.get(i))
            .is_some_and(|b| b.contains(node_id)),
        ..NetworkView::default()
    };
    for network in store.list::<Network>() {
        let id = network.id();
        let nodes = members.get(id);
        let mine = nodes.is_some_and(|n| n.contains(node_id)) || Some(id) == ingress;
        // Wait for the allocator: a network without a VNI cannot be set up yet.
        if !mine || network.vni == 0 {
            continue;
        }
        let peers: Vec<WeightedPeer> = match &ingress_peers {
            Some(ingress_peers) if Some(id) == ingress => {
                ingress_peers.iter().copied().filter_map(peer).collect()
            }
            _ => nodes
                .into_iter()
                .flatten()
                .filter(|n| **n != node_id)
                .filter_map(|n| peer(store.get::<Node>(n)?))
                .collect(),
        };
        let vteps: BTreeMap<&str, &str> = peers
            .iter()
            .map(|p| (p.node_id.as_str(), p.addr.as_str()))
            .collect();
        let mut held: Vec<OverlayEndpoint> = endpoints
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|(address, node)| {
                Some(OverlayEndpoint {
                    address: address.split('/').next()?.to_owned(),
                    vtep: (*vteps.get(node)?).to_owned(),
                })
            })
            .collect();
        held.sort_by(|a, b| a.address.cmp(&b.address));
        out.networks.insert(id.to_owned(), network.clone());
        out.peers.insert(id.to_owned(), peers);
        out.endpoints.insert(id.to_owned(), held);
    }
    out
}

/// `node_id`'s peers on ingress, whose tasks are on the nodes `backends`: every other node if
/// it is one of them, else the backends and the managers (see the module's doc). In node ID
/// order.
fn ingress_peers<'s>(
    store: &'s ObjectStore,
    node_id: &str,
    backends: Option<&BTreeSet<&str>>,
) -> Vec<&'s Node> {
    let others = |n: &&Node| n.id() != node_id;
    if backends.is_some_and(|b| b.contains(node_id)) {
        return store.list::<Node>().filter(others).collect();
    }
    let mut peers: Vec<&Node> = backends
        .into_iter()
        .flatten()
        .filter_map(|n| store.get::<Node>(n))
        .chain(store.managers())
        .filter(others)
        .collect();
    peers.sort_by(|a, b| a.id().cmp(b.id()));
    peers.dedup_by(|a, b| a.id() == b.id());
    peers
}

/// A node as a VXLAN peer: its underlay IP address (the host of its cluster address), with
/// its cluster port, which the peers' routing meshes leave alone.
fn peer(node: &Node) -> Option<WeightedPeer> {
    let addr = &node.status.as_ref()?.addr;
    let (host, port) = match addr.parse::<std::net::SocketAddr>() {
        Ok(sa) => (sa.ip().to_string(), sa.port()),
        Err(_) => match addr.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(0)),
            None => (addr.clone(), 0),
        },
    };
    (!host.is_empty()).then(|| WeightedPeer {
        node_id: node.id().to_owned(),
        addr: host,
        cluster_port: u32::from(port),
    })
}

impl NetworkView {
    /// Whether `event` may change this view, so that a view is computed again only when
    /// networks are in play: a cluster whose tasks use no overlay pays nothing per event,
    /// and a node's change matters only to the nodes that have it as a peer.
    pub fn touched_by(&self, event: &StoreEvent) -> bool {
        match event.object.as_ref().and_then(|o| o.object.as_ref()) {
            Some(Object::Network(_)) => true,
            // A node concerns the nodes that have it as a peer, and on ingress those that
            // have every node (a node that joins) or every manager (a new manager) as one.
            Some(Object::Node(n)) => {
                let in_ingress = self
                    .networks
                    .values()
                    .any(|net| net.spec.as_ref().is_some_and(|s| s.ingress));
                (in_ingress && (self.every_node_a_peer || n.manager_status.is_some()))
                    || self.peers.values().flatten().any(|p| p.node_id == n.id())
            }
            Some(Object::Task(t)) => !t.networks.is_empty(),
            _ => false,
        }
    }

    /// The peers and endpoints of `network_id` as the assignments message carries them,
    /// if they differ from `before`'s.
    pub fn peers_changed_since(&self, network_id: &str, before: &Self) -> Option<NetworkPeers> {
        let peers = self.peers.get(network_id)?;
        let endpoints = self.endpoints.get(network_id)?;
        let same = before.peers.get(network_id) == Some(peers)
            && before.endpoints.get(network_id) == Some(endpoints);
        (!same).then(|| NetworkPeers {
            network_id: network_id.to_owned(),
            peers: peers.clone(),
            endpoints: endpoints.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create;
    use proto::{
        Meta, NetworkAttachment, NetworkSpec, NodeStatus, StoreBatch, Task, TaskState, TaskStatus,
    };

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

    fn node(id: &str, addr: &str) -> Node {
        Node {
            meta: meta(id),
            status: Some(NodeStatus {
                addr: addr.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, node: &str, network: &str, state: TaskState) -> Task {
        Task {
            meta: meta(id),
            node_id: node.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            networks: vec![NetworkAttachment {
                network_id: network.into(),
                addresses: vec!["10.0.1.2/24".into()],
                aliases: vec![],
            }],
            ..Default::default()
        }
    }

    fn with_leg(node: Node, address: &str) -> Node {
        Node {
            ingress: Some(NetworkAttachment {
                network_id: "ingress".into(),
                addresses: vec![address.into()],
                aliases: vec![],
            }),
            ..node
        }
    }

    /// A store holding `actions`, applied as the first batch.
    fn stored(actions: Vec<proto::StoreAction>) -> ObjectStore {
        let mut store = ObjectStore::default();
        let batch = StoreBatch {
            actions,
            ..Default::default()
        };
        store.apply(&batch, 1).expect("applies");
        store
    }

    #[test]
    fn nodes_get_their_tasks_networks_and_ingress_with_the_nodes_the_mesh_reaches() {
        let mut mesh_task = task("t5", "n2", "ingress", TaskState::Running);
        mesh_task.networks[0].addresses = vec!["10.0.0.9/24".into()];
        let actions = vec![
            create(network("ingress", true)),
            create(network("back", false)),
            create(network("other", false)),
            create(node("n1", "127.0.0.2:2377")),
            create(with_leg(node("n2", "127.0.0.3:2377"), "10.0.0.3/24")),
            create(Node {
                manager_status: Some(proto::ManagerStatus::default()),
                ..node("n3", "127.0.0.4:2378")
            }),
            create(with_leg(node("n4", "127.0.0.5:2377"), "10.0.0.5/24")),
            create(task("t1", "n1", "back", TaskState::Running)),
            create(task("t2", "n2", "back", TaskState::Running)),
            create(task("t3", "n3", "back", TaskState::Failed)),
            create(task("t4", "n3", "other", TaskState::Running)),
            create(mesh_task),
        ];
        let store = stored(actions);
        let v = view(&store, "n1");
        assert_eq!(v.networks.keys().collect::<Vec<_>>(), ["back", "ingress"]);
        let peers = |v: &NetworkView, network: &str| -> Vec<(String, String, u32)> {
            v.peers[network]
                .iter()
                .map(|p| (p.node_id.clone(), p.addr.clone(), p.cluster_port))
                .collect()
        };
        assert_eq!(
            peers(&v, "back"),
            [("n2".into(), "127.0.0.3".into(), 2377)],
            "not itself, not an ended task's node"
        );
        assert_eq!(
            peers(&v, "ingress"),
            [
                ("n2".into(), "127.0.0.3".into(), 2377),
                ("n3".into(), "127.0.0.4".into(), 2378)
            ],
            "a node without mesh tasks: the node with one and the manager, each with its \
             cluster port for the mesh to leave alone; not n4, which runs nothing on ingress"
        );
        assert!(!v.every_node_a_peer);
        let endpoints = |v: &NetworkView, network: &str| -> Vec<(String, String)> {
            v.endpoints[network]
                .iter()
                .map(|e| (e.address.clone(), e.vtep.clone()))
                .collect()
        };
        assert_eq!(
            endpoints(&v, "back"),
            [("10.0.1.2".to_owned(), "127.0.0.3".to_owned())],
            "t2's address on n2; not n1's own task, not an ended task"
        );
        assert_eq!(
            endpoints(&v, "ingress"),
            [
                ("10.0.0.3".to_owned(), "127.0.0.3".to_owned()),
                ("10.0.0.9".to_owned(), "127.0.0.3".to_owned())
            ],
            "n2's leg and its task; not n4's leg"
        );

        // n2 runs a task on ingress: any node's mesh may send it connections, whose replies
        // go back to that node's leg.
        let v2 = view(&store, "n2");
        assert!(v2.every_node_a_peer);
        let ingress: Vec<String> = peers(&v2, "ingress").into_iter().map(|p| p.0).collect();
        assert_eq!(ingress, ["n1", "n3", "n4"], "every other node");
        assert_eq!(
            endpoints(&v2, "ingress"),
            [("10.0.0.5".to_owned(), "127.0.0.5".to_owned())],
            "n4's leg; not its own leg or task"
        );
        let v3 = view(&store, "n3");
        assert_eq!(v3.networks.keys().collect::<Vec<_>>(), ["ingress", "other"]);
    }

    #[test]
    fn a_node_change_concerns_the_views_that_have_it_or_may_gain_it_as_a_peer() {
        let actions = vec![
            create(network("ingress", true)),
            create(node("n1", "127.0.0.2:2377")),
            create(node("n2", "127.0.0.3:2377")),
            create(task("t1", "n2", "ingress", TaskState::Running)),
        ];
        let store = stored(actions);
        let event = |node: Node| StoreEvent {
            object: Some(node.wrap()),
            ..Default::default()
        };
        let (forwarder, backend) = (view(&store, "n1"), view(&store, "n2"));
        let joined = event(node("n9", "127.0.0.9:2377"));
        assert!(
            !forwarder.touched_by(&joined),
            "a worker joins: not a peer of n1"
        );
        assert!(backend.touched_by(&joined), "a worker joins: a peer of n2");
        let manager = event(Node {
            manager_status: Some(proto::ManagerStatus::default()),
            ..node("n8", "127.0.0.8:2377")
        });
        assert!(
            forwarder.touched_by(&manager),
            "managers are everyone's peers"
        );
        assert!(forwarder.touched_by(&event(node("n2", "127.0.0.30:2377"))));
    }

    #[test]
    fn assignments_carry_networks_and_peer_changes() {
        use super::super::assignments::NodeAssignments;
        use proto::{assignment, AssignmentAction};

        let actions = vec![
            create(network("ingress", true)),
            create(network("back", false)),
            create(node("n1", "127.0.0.2:2377")),
            create(node("n2", "127.0.0.3:2377")),
            create(task("t1", "n1", "back", TaskState::Assigned)),
        ];
        let mut store = stored(actions);
        let mut tracker = NodeAssignments::default();
        let first = tracker.complete(&store, "n1");
        let networks: Vec<&str> = first
            .changes
            .iter()
            .filter_map(|c| match c.assignment.as_ref()?.item.as_ref()? {
                assignment::Item::Network(n) => Some(n.id()),
                _ => None,
            })
            .collect();
        assert_eq!(networks, ["back", "ingress"]);
        assert_eq!(first.network_peers.len(), 2);
        let peers_of = |id: &str| {
            first
                .network_peers
                .iter()
                .find(|p| p.network_id == id)
                .map(|p| p.peers.len())
        };
        assert_eq!(
            (peers_of("back"), peers_of("ingress")),
            (Some(0), Some(0)),
            "n2 runs nothing on ingress and is no manager"
        );

        // A task of the same network starts on n2: n1 learns its new peer, nothing else.
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![create(task("t2", "n2", "back", TaskState::Assigned))],
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        let next = tracker
            .incremental(&store, &events, "n1")
            .expect("a change");
        assert!(next.changes.is_empty());
        assert_eq!(next.network_peers.len(), 1);
        assert_eq!(next.network_peers[0].network_id, "back");
        assert_eq!(next.network_peers[0].peers[0].addr, "127.0.0.3");
        assert_eq!(next.network_peers[0].endpoints.len(), 1);
        assert_eq!(next.peers.len(), 1);

        // A second task on n2: same peers, one more endpoint, so the peers are sent again.
        let mut t3 = task("t3", "n2", "back", TaskState::Assigned);
        t3.networks[0].addresses = vec!["10.0.1.3/24".into()];
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![create(t3)],
                    ..Default::default()
                },
                3,
            )
            .unwrap();
        let more = tracker
            .incremental(&store, &events, "n1")
            .expect("a change");
        assert_eq!(more.network_peers.len(), 1);
        let addresses: Vec<&str> = more.network_peers[0]
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(addresses, ["10.0.1.2", "10.0.1.3"]);

        // n1's task ends: it leaves "back" (ingress stays).
        let mut t1 = store.get::<Task>("t1").unwrap().clone();
        t1.status.as_mut().unwrap().state = TaskState::Failed as i32;
        let events = store
            .apply(
                &StoreBatch {
                    actions: vec![crate::store::update(t1)],
                    ..Default::default()
                },
                4,
            )
            .unwrap();
        let last = tracker
            .incremental(&store, &events, "n1")
            .expect("a change");
        let removed: Vec<&str> = last
            .changes
            .iter()
            .filter(|c| c.action == AssignmentAction::Remove as i32)
            .filter_map(|c| match c.assignment.as_ref()?.item.as_ref()? {
                assignment::Item::Network(n) => Some(n.id()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, ["back"]);
    }
}
