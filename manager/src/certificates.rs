//! The `Ca` gRPC service: the root certificate for anyone (joining nodes check it against
//! their token), node certificates for holders of a join token, and renewals for nodes.

use std::sync::Arc;
use std::time::Duration;

use proto::ca_server::Ca;
use proto::{
    GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse,
    ManagerStatus, Node, NodeCertificate, NodeRole, NodeSpec, NodeState, NodeStatus,
    RenewNodeCertificateRequest, RenewNodeCertificateResponse,
};
use tonic::{Request, Response, Status};

use crate::ca::identity::{caller, Caller};
use crate::ca::{IssuedCertificate, RootCa};
use crate::controlapi::cluster::role_for_token;
use crate::manager::RunningManager;
use crate::settings::DEFAULT_CERT_EXPIRY;
use crate::status::invalid;
use crate::store::{create, ObjectStore, Store, StoredObject};

/// Serves the CA through whichever manager runs on this node.
pub struct CaService {
    running: Arc<RunningManager>,
}

impl CaService {
    /// A service over the manager `running` holds.
    pub fn new(running: Arc<RunningManager>) -> Self {
        Self { running }
    }

    /// The store of the manager on this node.
    fn store(&self) -> Result<Store, Status> {
        Ok(self.running.get()?.store().clone())
    }
}

/// The cluster's root CA and certificate lifetime, from this manager's store.
fn root_ca(store: &ObjectStore) -> Result<(RootCa, Duration, String), Status> {
    let cluster = store
        .cluster()
        .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
    let root = cluster
        .root_ca
        .as_ref()
        .ok_or_else(|| Status::internal("the cluster has no root CA"))?;
    let ca = RootCa::from_pem(&root.cert_pem, &root.key_pem)
        .map_err(|e| Status::internal(format!("the cluster's root CA cannot be loaded: {e}")))?;
    let expiry = cluster
        .spec
        .as_ref()
        .and_then(|s| s.ca_config.as_ref())
        .map(|c| c.node_cert_expiry_ms)
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_CERT_EXPIRY, Duration::from_millis);
    Ok((ca, expiry, cluster.id().to_owned()))
}

fn issue(
    ca: &RootCa,
    csr_pem: &str,
    node_id: &str,
    role: NodeRole,
    cluster_id: &str,
    expiry: Duration,
) -> Result<IssuedCertificate, Status> {
    if csr_pem.trim().is_empty() {
        return Err(invalid("a certificate request (CSR) is required"));
    }
    ca.issue(csr_pem, node_id, role, cluster_id, expiry)
        .map_err(|e| invalid(format!("cannot issue a certificate: {e}")))
}

fn certificate_record(issued: &IssuedCertificate, role: NodeRole) -> NodeCertificate {
    NodeCertificate {
        serial: issued.serial.clone(),
        not_after: issued.not_after,
        role: role as i32,
    }
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn get_root_ca(
        &self,
        _req: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        let cert_pem = self
            .store()?
            .read()
            .cluster()
            .and_then(|c| c.root_ca.as_ref())
            .map(|r| r.cert_pem.clone())
            .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
        Ok(Response::new(GetRootCaResponse { cert_pem }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let store = self.store()?;
        let body = req.into_inner();
        let cluster = store
            .read_latest(|s| s.cluster().cloned())
            .await?
            .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
        let role = role_for_token(&cluster, &body.token)?;
        let description = body.description.unwrap_or_default();
        if description.hostname.trim().is_empty() {
            return Err(invalid("a joining node must report its hostname"));
        }
        let (ca, expiry, cluster_id) = root_ca(&store.read())?;
        let node_id = proto::id::new_id();
        let issued = issue(&ca, &body.csr_pem, &node_id, role, &cluster_id, expiry)?;
        let node = Node {
            meta: Some(proto::Meta {
                id: node_id.clone(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                desired_role: role as i32,
                ..Default::default()
            }),
            description: Some(description),
            status: Some(NodeStatus {
                state: NodeState::Unknown as i32,
                addr: body.advertise_addr.clone(),
                updated_at: proto::now_ms(),
                ..Default::default()
            }),
            manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                addr: body.advertise_addr.clone(),
                ..Default::default()
            }),
            role: role as i32,
            certificate: Some(certificate_record(&issued, role)),
            ingress: None,
        };
        store.write(vec![create(node)]).await?;
        let managers = store
            .read()
            .list::<Node>()
            .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
            .filter(|a| !a.is_empty())
            .collect();
        tracing::info!(node = %node_id, role = ?role, "issued a certificate to a joining node");
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id,
            cluster_id,
            cert_pem: issued.cert_pem,
            role: role as i32,
            managers,
        }))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<RenewNodeCertificateResponse>, Status> {
        let Caller::Node(identity) = caller(&req) else {
            return Err(Status::permission_denied(
                "renewing a certificate needs the node's current certificate",
            ));
        };
        let store = self.store()?;
        let current = store
            .read_latest(|s| {
                s.get::<Node>(&identity.node_id)
                    .and_then(|n| n.spec.as_ref().map(|s| s.desired_role))
            })
            .await?;
        let Some(desired) = current else {
            return Err(Status::permission_denied(
                "this node was removed from the cluster; run `skiff swarm leave --force` on it, then join again",
            ));
        };
        let role = NodeRole::try_from(desired)
            .ok()
            .filter(|r| *r != NodeRole::Unspecified)
            .unwrap_or(NodeRole::Worker);
        let (ca, expiry, cluster_id) = root_ca(&store.read())?;
        let issued = issue(
            &ca,
            &req.get_ref().csr_pem,
            &identity.node_id,
            role,
            &cluster_id,
            expiry,
        )?;
        store
            .modify::<Node>(&identity.node_id, |node| {
                node.certificate = Some(certificate_record(&issued, role));
                node.role = role as i32;
                if role == NodeRole::Worker {
                    node.manager_status = None;
                }
            })
            .await?;
        Ok(Response::new(RenewNodeCertificateResponse {
            cert_pem: issued.cert_pem,
            role: role as i32,
        }))
    }
}
