//! What a node certificate may do *now*: the certificate says who is calling, the store says
//! what that node is allowed today.
//!
//! A certificate is valid for months, and a copy of a node's credentials outlives the node:
//! before this check, a manager certificate copied before `node demote` and `node rm` still
//! created services. So every call on the cluster port is checked against the managers'
//! replicated state ([`admit`]):
//! - a node in the cluster's deny-list (`Cluster.removed_nodes`, written by `node rm` in the
//!   same batch that deletes the node) is refused everything;
//! - a node the store does not know is refused everything (a node exists in the store
//!   before its first certificate is handed out);
//! - a manager certificate grants manager rights only while the node's desired role is
//!   manager, so a demotion takes effect on the next call, not at certificate expiry. Until
//!   the leader has taken it out of the Raft group it may still speak Raft to its peers
//!   ([`RaftPeer`]), which it needs to hand its leadership over.
//!
//! The facts come from the store's [`Admissions`], kept beside it under a lock of their own:
//! this check runs before Raft's calls and nodes' heartbeats, which must never wait for the
//! store's lock.
//!
//! A manager whose store is still empty (joining, not yet caught up) knows nothing to check
//! against and goes by the certificate alone; so do workers, which hold no store.

use proto::NodeRole;
use tonic::{Request, Status};

use super::identity::{peer_identity, Caller, NodeIdentity};
use crate::store::Admissions;

/// Marks a caller whose certificate is a manager's and whose node is still a member of the
/// Raft group (even if it is being demoted): it may send Raft's own messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftPeer;

/// Interceptor for a manager's cluster port: the caller named by the peer's certificate,
/// with the rights [`admit`] gives it against `admissions` (this manager's replica's; `None`
/// while the node runs no manager), or [`Caller::Anonymous`] without a certificate.
pub fn intercept(
    mut req: Request<()>,
    admissions: Option<&Admissions>,
) -> Result<Request<()>, Status> {
    let caller = match peer_identity(&req)? {
        Some(cert) => {
            let (caller, raft) = admit(admissions, cert)?;
            if let Some(raft) = raft {
                req.extensions_mut().insert(raft);
            }
            caller
        }
        None => Caller::Anonymous,
    };
    req.extensions_mut().insert(caller);
    Ok(req)
}

/// The rights the cluster grants the holder of the certificate `cert` today, and whether it
/// may speak Raft, or why it is refused. `admissions` is `None` where there is no store.
pub fn admit(
    admissions: Option<&Admissions>,
    cert: NodeIdentity,
) -> Result<(Caller, Option<RaftPeer>), Status> {
    let cert_manager = cert.role == NodeRole::Manager;
    let Some(admissions) = admissions.filter(|a| a.cluster) else {
        return Ok((Caller::Node(cert), cert_manager.then_some(RaftPeer)));
    };
    if admissions.removed.contains(&cert.node_id) {
        return Err(Status::permission_denied(format!(
            "node {} was removed from the cluster and its certificate is no longer accepted; run `skiff swarm leave --force` on it and join again with a token",
            cert.node_id
        )));
    }
    let Some(node) = admissions.nodes.get(&cert.node_id) else {
        return Err(Status::permission_denied(format!(
            "node {} is not a member of this cluster; join it with a token first",
            cert.node_id
        )));
    };
    let role = if cert_manager && node.desired_manager {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    };
    let raft = (cert_manager && (node.desired_manager || node.raft_member)).then_some(RaftPeer);
    Ok((Caller::Node(NodeIdentity { role, ..cert }), raft))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ObjectStore, StoredObject};
    use proto::{
        Cluster, ManagerStatus, Meta, Node, NodeSpec, StoreAction, StoreActionKind, StoreBatch,
    };

    fn cert(id: &str, role: NodeRole) -> NodeIdentity {
        NodeIdentity {
            node_id: id.into(),
            role,
            cluster_id: "c".into(),
        }
    }

    fn node(id: &str, desired: NodeRole, raft_id: u64) -> Node {
        Node {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                desired_role: desired as i32,
                ..Default::default()
            }),
            manager_status: (raft_id != 0).then(|| ManagerStatus {
                raft_id,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The admissions of a store holding the cluster, with `removed` in its deny-list, and
    /// `nodes`.
    fn store(nodes: Vec<Node>, removed: &[&str]) -> Admissions {
        let mut cluster = Cluster {
            meta: Some(Meta {
                id: "c".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for id in removed {
            cluster.removed_nodes.insert((*id).into(), i64::MAX);
        }
        let mut actions = vec![StoreAction {
            kind: StoreActionKind::Create as i32,
            object: Some(cluster.wrap()),
        }];
        actions.extend(nodes.into_iter().map(|n| StoreAction {
            kind: StoreActionKind::Create as i32,
            object: Some(n.wrap()),
        }));
        let mut store = ObjectStore::default();
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        Admissions::of(&store)
    }

    fn granted(result: Result<(Caller, Option<RaftPeer>), Status>) -> (NodeRole, bool) {
        match result {
            Ok((Caller::Node(id), raft)) => (id.role, raft.is_some()),
            other => panic!("expected a node caller, got {other:?}"),
        }
    }

    #[test]
    fn a_manager_keeps_its_rights_while_the_cluster_wants_it_a_manager() {
        let s = store(vec![node("m", NodeRole::Manager, 7)], &[]);
        assert_eq!(
            granted(admit(Some(&s), cert("m", NodeRole::Manager))),
            (NodeRole::Manager, true)
        );
    }

    #[test]
    fn a_demoted_manager_gets_worker_rights_at_once_and_raft_only_while_a_member() {
        let s = store(
            vec![
                node("leaving", NodeRole::Worker, 7),
                node("left", NodeRole::Worker, 0),
            ],
            &[],
        );
        assert_eq!(
            granted(admit(Some(&s), cert("leaving", NodeRole::Manager))),
            (NodeRole::Worker, true)
        );
        assert_eq!(
            granted(admit(Some(&s), cert("left", NodeRole::Manager))),
            (NodeRole::Worker, false)
        );
    }

    #[test]
    fn a_worker_certificate_never_grants_more_than_a_worker() {
        // Promoted, but still holding its worker certificate.
        let s = store(vec![node("w", NodeRole::Manager, 0)], &[]);
        assert_eq!(
            granted(admit(Some(&s), cert("w", NodeRole::Worker))),
            (NodeRole::Worker, false)
        );
    }

    #[test]
    fn removed_and_unknown_nodes_are_refused_everything() {
        let s = store(vec![node("m", NodeRole::Manager, 7)], &["gone"]);
        let err = admit(Some(&s), cert("gone", NodeRole::Manager)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("was removed"), "{}", err.message());
        let err = admit(Some(&s), cert("stranger", NodeRole::Manager)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("not a member"), "{}", err.message());
    }

    #[test]
    fn without_a_store_to_ask_the_certificate_decides() {
        assert_eq!(
            granted(admit(None, cert("m", NodeRole::Manager))),
            (NodeRole::Manager, true)
        );
        let empty = Admissions::of(&ObjectStore::default());
        assert_eq!(
            granted(admit(Some(&empty), cert("w", NodeRole::Worker))),
            (NodeRole::Worker, false)
        );
    }
}
