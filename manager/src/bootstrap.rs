//! What `swarm init` writes first: the cluster object (root CA, join tokens, settings) and
//! the first manager's node object, in one batch.

use proto::token::JoinToken;
use proto::{
    Cluster, ClusterSpec, JoinTokens, ManagerStatus, Meta, Network, NetworkSpec, Node,
    NodeCertificate, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability,
    StoreBatch,
};

use crate::ca::{IssuedCertificate, RootCa};
use crate::settings::default_spec;
use crate::store::create;
use proto::now_ms;

/// The first manager of a new cluster.
pub struct FirstManager<'a> {
    /// Its node ID.
    pub node_id: &'a str,
    /// Its Raft ID.
    pub raft_id: u64,
    /// Its cluster address.
    pub addr: &'a str,
    /// What it reports about itself.
    pub description: NodeDescription,
    /// The certificate it was issued.
    pub certificate: &'a IssuedCertificate,
}

/// The batch that creates a cluster: its settings, its first manager and the ingress network.
pub fn initial_batch(
    cluster_id: &str,
    root: &RootCa,
    spec: Option<ClusterSpec>,
    first: FirstManager<'_>,
) -> Result<StoreBatch, tonic::Status> {
    let digest = root.digest();
    let mut cluster = Cluster {
        meta: Some(Meta {
            id: cluster_id.to_owned(),
            ..Default::default()
        }),
        spec: Some(default_spec(spec)),
        join_tokens: Some(JoinTokens {
            worker: JoinToken::generate(&digest).to_string(),
            manager: JoinToken::generate(&digest).to_string(),
        }),
        root_ca: Some(proto::RootCa {
            cert_pem: root.cert_pem().to_owned(),
            key_pem: root.key_pem(),
            digest,
        }),
        removed_nodes: Default::default(),
        unlock_key: String::new(),
    };
    crate::controlapi::cluster::apply_autolock(&mut cluster, false)?;
    let node = Node {
        meta: Some(Meta {
            id: first.node_id.to_owned(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            desired_role: NodeRole::Manager as i32,
            ..Default::default()
        }),
        description: Some(first.description),
        status: Some(NodeStatus {
            state: NodeState::Ready as i32,
            addr: first.addr.to_owned(),
            updated_at: now_ms(),
            ..Default::default()
        }),
        manager_status: Some(ManagerStatus {
            raft_id: first.raft_id,
            addr: first.addr.to_owned(),
            leader: false,
            reachability: Reachability::Reachable as i32,
        }),
        role: NodeRole::Manager as i32,
        certificate: Some(NodeCertificate {
            serial: first.certificate.serial.clone(),
            not_after: first.certificate.not_after,
            role: NodeRole::Manager as i32,
        }),
        // The allocator gives it one once the ingress network has its subnet.
        ingress: None,
    };
    Ok(StoreBatch {
        actions: vec![create(cluster), create(node), create(ingress_network())],
        ..Default::default()
    })
}

/// The network of the routing mesh, which every cluster has from the start (as in Swarm).
/// Its subnet comes from the default address pools like any other's, so `--default-addr-pool`
/// moves it too.
fn ingress_network() -> Network {
    Network {
        meta: Some(Meta {
            id: proto::id::new_id(),
            ..Default::default()
        }),
        spec: Some(NetworkSpec {
            name: INGRESS.into(),
            driver: crate::controlapi::network::OVERLAY.into(),
            ingress: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name of the routing mesh's network.
pub const INGRESS: &str = "ingress";

/// The batch that rebuilds a cluster from a surviving manager's copy of the store
/// (`swarm init --force-new-cluster`): every object, with this manager as the only member
/// of the new Raft group. Other managers stay in the node list, unreachable, until they are
/// demoted or removed.
pub fn recovery_batch(
    objects: &crate::store::ObjectStore,
    node_id: &str,
    raft_id: u64,
    addr: &str,
) -> StoreBatch {
    use crate::store::StoredObject;
    let snapshot = objects.to_snapshot();
    let actions = snapshot
        .objects
        .into_iter()
        .map(|object| {
            let object = match object.object {
                Some(proto::store_object::Object::Node(mut node)) => {
                    let this_node = node.id() == node_id;
                    if let Some(status) = node.manager_status.as_mut() {
                        if this_node {
                            status.raft_id = raft_id;
                            status.addr = addr.to_owned();
                            status.reachability = Reachability::Reachable as i32;
                        } else {
                            status.reachability = Reachability::Unreachable as i32;
                        }
                    }
                    node.wrap()
                }
                other => proto::StoreObject { object: other },
            };
            proto::StoreAction {
                kind: proto::StoreActionKind::Create as i32,
                object: Some(object),
            }
        })
        .collect();
    StoreBatch {
        actions,
        ..Default::default()
    }
}
