//! The networks each node must set up, with their peers: the overlay networks of the tasks
//! it runs, each with the underlay addresses of the other nodes running tasks on it, and
//! `ingress`, which every node joins for the routing mesh with every other node as a peer
//! (a node forwards connections to tasks anywhere and their replies come back to it). With
//! the peers go the network's endpoints on other nodes (task addresses, and the nodes' legs
//! on ingress), each with its node's VTEP. The worker programs its VXLAN forwarding from
//! these, so no gossip is needed: peers for broadcasts, endpoints for unicast, which would
//! otherwise be flooded to every peer.

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
    if let Some(ingress) = ingress {
        let legs = store
            .list::<Node>()
            .filter(|n| n.id() != node_id)
            .filter_map(|n| Some((n.ingress.as_ref()?.addresses.first()?.as_str(), n.id())));
        endpoints.entry(ingress).or_default().extend(legs);
    }
    let mut out = NetworkView::default();
    for network in store.list::<Network>() {
        let id = network.id();
        let nodes = members.get(id);
        let mine = nodes.is_some_and(|n| n.contains(node_id)) || Some(id) == ingress;
        // Wait for the allocator: a network without a VNI cannot be set up yet.
        if !mine || network.vni == 0 {
            continue;
        }
        let peers: Vec<WeightedPeer> = if Some(id) == ingress {
            store
                .list::<Node>()
                .filter(|n| n.id() != node_id)
                .filter_map(peer)
                .collect()
        } else {
            nodes
                .into_iter()
                .flatten()
                .filter(|n| **n != node_id)
                .filter_map(|n| peer(store.get::<Node>(n)?))
                .collect()
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
            // Every node is an ingress peer, so any node's change may matter once the node
            // is in the ingress network.
            Some(Object::Node(n)) => {
                self.networks
                    .values()
                    .any(|net| net.spec.as_ref().is_some_and(|s| s.ingress))
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

    #[test]
    fn nodes_get_their_tasks_networks_and_ingress_with_the_other_nodes_as_peers() {
        let mut store = ObjectStore::default();
        let actions = vec![
            create(network("ingress", true)),
            create(network("back", false)),
            create(network("other", false)),
            create(node("n1", "127.0.0.2:2377")),
            create(Node {
                ingress: Some(NetworkAttachment {
                    network_id: "ingress".into(),
                    addresses: vec!["10.0.0.3/24".into()],
                    aliases: vec![],
                }),
                ..node("n2", "127.0.0.3:2377")
            }),
            create(node("n3", "127.0.0.4:2378")),
            create(task("t1", "n1", "back", TaskState::Running)),
            create(task("t2", "n2", "back", TaskState::Running)),
            create(task("t3", "n3", "back", TaskState::Failed)),
            create(task("t4", "n3", "other", TaskState::Running)),
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
        assert_eq!(v.networks.keys().collect::<Vec<_>>(), ["back", "ingress"]);
        let peers: Vec<(&str, &str)> = v.peers["back"]
            .iter()
            .map(|p| (p.node_id.as_str(), p.addr.as_str()))
            .collect();
        assert_eq!(
            peers,
            [("n2", "127.0.0.3")],
            "not itself, not an ended task's node"
        );
        let ingress: Vec<(&str, u32)> = v.peers["ingress"]
            .iter()
            .map(|p| (p.node_id.as_str(), p.cluster_port))
            .collect();
        assert_eq!(
            ingress,
            [("n2", 2377), ("n3", 2378)],
            "every other node, tasks or not, with its cluster port for the mesh to leave alone"
        );
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
            [("10.0.0.3".to_owned(), "127.0.0.3".to_owned())],
            "n2's leg"
        );
        assert!(
            endpoints(&view(&store, "n2"), "ingress").is_empty(),
            "a node's own leg is not an endpoint of its own"
        );
        let v3 = view(&store, "n3");
        assert_eq!(v3.networks.keys().collect::<Vec<_>>(), ["ingress", "other"]);
    }

    #[test]
    fn assignments_carry_networks_and_peer_changes() {
        use super::super::assignments::NodeAssignments;
        use proto::{assignment, AssignmentAction};

        let mut store = ObjectStore::default();
        let actions = vec![
            create(network("ingress", true)),
            create(network("back", false)),
            create(node("n1", "127.0.0.2:2377")),
            create(node("n2", "127.0.0.3:2377")),
            create(task("t1", "n1", "back", TaskState::Assigned)),
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
        assert_eq!((peers_of("back"), peers_of("ingress")), (Some(0), Some(1)));

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
