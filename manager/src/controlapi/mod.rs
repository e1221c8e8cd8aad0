//! The `Control` gRPC service: the cluster API every manager serves. Reads go through a read
//! barrier (never older than an acknowledged write); writes are committed on a quorum before
//! they are acknowledged, and name the version they read.

pub mod cluster;
mod named;
pub mod network;
mod node;
pub mod service;

use std::sync::Arc;

use proto::control_server::Control;
use proto::token::JoinToken;
use proto::*;
use tonic::{Request, Response, Status};

use crate::ca::identity::require_manager;
use crate::manager::RunningManager;
use crate::orchestrator;
use crate::status::{invalid, refused};
use crate::store::{create, update, Store, StoredObject};
use named::Named;

/// Serves the control API through whichever manager runs on this node.
pub struct ControlService {
    running: Arc<RunningManager>,
}

impl ControlService {
    /// A service over the manager `running` holds.
    pub fn new(running: Arc<RunningManager>) -> Self {
        Self { running }
    }

    /// The store of the manager serving the call, for callers with a manager's rights.
    fn store<T>(&self, req: &Request<T>) -> Result<Store, Status> {
        require_manager(req)?;
        Ok(self.running.get()?.store().clone())
    }
}

/// The node as served: with the leader flag filled in from this manager's Raft view.
impl ControlService {
    async fn create_named<T: named::Named>(&self, store: &Store, object: T) -> Result<T, Status> {
        named::validate(&object)?;
        let id = object.id().to_owned();
        store.write(vec![create(object)]).await?;
        store
            .read_own_write(|s| s.get::<T>(&id).cloned())
            .ok_or_else(|| Status::internal("the new object vanished"))
    }

    async fn update_named<T: named::Named + Clone>(
        &self,
        store: &Store,
        reference: &str,
        version: u64,
        spec: (String, std::collections::HashMap<String, String>, Vec<u8>),
    ) -> Result<T, Status> {
        let current = store
            .read_latest(|s| s.resolve::<T>(reference).cloned())
            .await??;
        let (name, labels, data) = spec;
        let Some(mut next) = named::updated(&current, &name, labels, &data)? else {
            return Ok(current);
        };
        if version != 0 {
            next.meta_mut().version = version;
        }
        let id = next.id().to_owned();
        store.write(vec![update(next)]).await?;
        store
            .read_own_write(|s| s.get::<T>(&id).cloned())
            .ok_or_else(|| Status::internal("the updated object vanished"))
    }

    async fn remove_named<T: named::Named>(
        &self,
        store: &Store,
        reference: &str,
    ) -> Result<(), Status> {
        store
            .remove(|s| {
                let target = s.resolve::<T>(reference).cloned()?;
                named::check_unused(s, &target)?;
                Ok(target)
            })
            .await
    }
}

fn served(mut node: Node, leader_raft_id: Option<u64>) -> Node {
    if let Some(status) = node.manager_status.as_mut() {
        status.leader = Some(status.raft_id) == leader_raft_id;
        if status.leader {
            status.reachability = Reachability::Reachable as i32;
        }
    }
    node
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_cluster(
        &self,
        req: Request<GetClusterRequest>,
    ) -> Result<Response<GetClusterResponse>, Status> {
        let store = self.store(&req)?;
        let cluster = store.read_latest(|s| s.cluster().cloned()).await?;
        let cluster = cluster
            .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
        Ok(Response::new(GetClusterResponse {
            cluster: Some(cluster::redacted(cluster)),
        }))
    }

    async fn update_cluster(
        &self,
        req: Request<UpdateClusterRequest>,
    ) -> Result<Response<UpdateClusterResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let mut current = store
            .read_latest(|s| s.cluster().cloned())
            .await?
            .ok_or_else(|| Status::unavailable("the cluster is still being initialised; retry"))?;
        if let Some(spec) = body.spec {
            let spec = crate::settings::default_spec(Some(spec));
            cluster::validate_spec(&spec)?;
            current.spec = Some(spec);
        }
        let digest = current
            .root_ca
            .as_ref()
            .map(|r| r.digest.clone())
            .unwrap_or_default();
        let tokens = current.join_tokens.get_or_insert_with(Default::default);
        if body.rotate_worker_token {
            tokens.worker = JoinToken::generate(&digest).to_string();
        }
        if body.rotate_manager_token {
            tokens.manager = JoinToken::generate(&digest).to_string();
        }
        cluster::apply_autolock(&mut current, body.rotate_unlock_key)?;
        current.meta_mut().version = body.version;
        store.write(vec![update(current)]).await?;
        let cluster = store.read_own_write(|s| s.cluster().cloned());
        Ok(Response::new(UpdateClusterResponse {
            cluster: cluster.map(cluster::redacted),
        }))
    }

    async fn get_unlock_key(
        &self,
        req: Request<GetUnlockKeyRequest>,
    ) -> Result<Response<GetUnlockKeyResponse>, Status> {
        let store = self.store(&req)?;
        let unlock_key = store
            .read_latest(|s| s.cluster().map(|c| c.unlock_key.clone()))
            .await?
            .unwrap_or_default();
        Ok(Response::new(GetUnlockKeyResponse { unlock_key }))
    }

    async fn get_node(
        &self,
        req: Request<GetNodeRequest>,
    ) -> Result<Response<GetNodeResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().node;
        let node = store
            .read_latest(|s| s.resolve::<Node>(&reference).cloned())
            .await??;
        Ok(Response::new(GetNodeResponse {
            node: Some(served(node, store.leader_raft_id())),
        }))
    }

    async fn list_nodes(
        &self,
        req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let store = self.store(&req)?;
        let filter = req.into_inner();
        let roles: Vec<i32> = filter
            .roles
            .iter()
            .map(|r| match r.as_str() {
                "manager" => Ok(NodeRole::Manager as i32),
                "worker" => Ok(NodeRole::Worker as i32),
                other => Err(invalid(format!(
                    "unknown role {other:?} in filter: use manager or worker"
                ))),
            })
            .collect::<Result<_, _>>()?;
        let leader = store.leader_raft_id();
        let nodes = store
            .read_latest(|s| {
                s.list::<Node>()
                    .filter(|n| roles.is_empty() || roles.contains(&n.role))
                    .filter(|n| {
                        filter.names.is_empty() || filter.names.iter().any(|x| n.name() == Some(x))
                    })
                    .cloned()
                    .map(|n| served(n, leader))
                    .collect()
            })
            .await?;
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn update_node(
        &self,
        req: Request<UpdateNodeRequest>,
    ) -> Result<Response<UpdateNodeResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let spec = body
            .spec
            .ok_or_else(|| invalid("a node update needs a spec"))?;
        node::validate_spec(&spec)?;
        let leader = store.leader_raft_id();
        let (mut target, store_check) = store
            .read_latest(|s| {
                let target = s.resolve::<Node>(&body.node).cloned()?;
                let demoting =
                    node::is_manager(&target) && spec.desired_role == NodeRole::Worker as i32;
                let check = if demoting {
                    node::check_demotion(s, &target, leader)
                } else {
                    Ok(())
                };
                Ok::<_, crate::store::LookupError>((target, check))
            })
            .await??;
        store_check?;
        if body.version != 0 {
            target.meta_mut().version = body.version;
        }
        target.spec = Some(spec);
        let id = target.id().to_owned();
        store.write(vec![update(target)]).await?;
        let node = store.read_own_write(|s| s.get::<Node>(&id).cloned());
        Ok(Response::new(UpdateNodeResponse {
            node: node.map(|n| served(n, leader)),
        }))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let now = proto::now_ms();
        store
            .remove_with(|s| {
                let target = s.resolve::<Node>(&body.node).cloned()?;
                node::check_removal(&target, body.force)?;
                let deny = node::deny(s, &target, now)?;
                Ok::<_, Status>((target, vec![update(deny)]))
            })
            .await?;
        Ok(Response::new(RemoveNodeResponse {}))
    }

    async fn create_service(
        &self,
        req: Request<CreateServiceRequest>,
    ) -> Result<Response<CreateServiceResponse>, Status> {
        let store = self.store(&req)?;
        let mut spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("a service needs a spec"))?;
        if spec.name.is_empty() {
            spec.name = format!("service-{}", &proto::id::new_id()[..8]);
        }
        let mut spec = service::with_defaults(spec);
        service::validate(&spec)?;
        let id = proto::id::new_id();
        let spec = store
            .read_latest(|s| service::check_against_store(s, &mut spec, &id).map(|()| spec))
            .await??;
        let created = Service {
            meta: Some(Meta {
                id: id.clone(),
                ..Default::default()
            }),
            spec: Some(spec),
            spec_version: 1,
            ..Default::default()
        };
        store.write(vec![create(created)]).await?;
        let service = store.read_own_write(|s| s.get::<Service>(&id).cloned());
        Ok(Response::new(CreateServiceResponse { service }))
    }

    async fn get_service(
        &self,
        req: Request<GetServiceRequest>,
    ) -> Result<Response<GetServiceResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().service;
        let service = store
            .read_latest(|s| s.resolve::<Service>(&reference).cloned())
            .await??;
        Ok(Response::new(GetServiceResponse {
            service: Some(service),
        }))
    }

    async fn list_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let store = self.store(&req)?;
        let ListServicesRequest {
            names,
            name_prefixes,
            status,
        } = req.into_inner();
        let (services, statuses) = store
            .read_latest(|s| {
                let services: Vec<Service> = s
                    .list::<Service>()
                    .filter(|svc| names.is_empty() || names.iter().any(|n| svc.name() == Some(n)))
                    .filter(|svc| {
                        name_prefixes.is_empty()
                            || name_prefixes
                                .iter()
                                .any(|p| svc.name().is_some_and(|n| n.starts_with(p.as_str())))
                    })
                    .cloned()
                    .collect();
                let statuses = if status {
                    services.iter().map(|svc| service::status(s, svc)).collect()
                } else {
                    Vec::new()
                };
                (services, statuses)
            })
            .await?;
        Ok(Response::new(ListServicesResponse { services, statuses }))
    }

    async fn update_service(
        &self,
        req: Request<UpdateServiceRequest>,
    ) -> Result<Response<UpdateServiceResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let current = store
            .read_latest(|s| s.resolve::<Service>(&body.service).cloned())
            .await??;
        let old_spec = current.spec.clone().unwrap_or_default();
        let new_spec = if body.rollback {
            current.previous_spec.clone().ok_or_else(|| {
                refused(format!(
                    "service {} has no previous spec to roll back to",
                    old_spec.name
                ))
            })?
        } else {
            service::with_defaults(
                body.spec
                    .ok_or_else(|| invalid("a service update needs a spec"))?,
            )
        };
        service::validate(&new_spec)?;
        service::check_mode_change(&old_spec, &new_spec)?;
        if new_spec.name != old_spec.name {
            return Err(invalid(
                "a service cannot be renamed; create a new service instead",
            ));
        }
        let id = current.id().to_owned();
        let mut new_spec = new_spec;
        let new_spec = store
            .read_latest(|s| service::check_against_store(s, &mut new_spec, &id).map(|()| new_spec))
            .await??;
        let mut updated = current.clone();
        if body.version != 0 {
            updated.meta_mut().version = body.version;
        }
        orchestrator::apply_spec(&mut updated, new_spec, body.rollback, proto::now_ms());
        store.write(vec![update(updated)]).await?;
        let service = store.read_own_write(|s| s.get::<Service>(&id).cloned());
        Ok(Response::new(UpdateServiceResponse { service }))
    }

    async fn remove_service(
        &self,
        req: Request<RemoveServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().service;
        store
            .remove(|s| Ok::<_, Status>(s.resolve::<Service>(&reference).cloned()?))
            .await?;
        Ok(Response::new(RemoveServiceResponse {}))
    }

    async fn get_task(
        &self,
        req: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().task;
        let task = store
            .read_latest(|s| s.resolve::<Task>(&reference).cloned())
            .await??;
        Ok(Response::new(GetTaskResponse { task: Some(task) }))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let store = self.store(&req)?;
        let f = req.into_inner();
        let tasks = store
            .read_latest(|s| {
                // The indexes find the tasks of the services or nodes named; a walk over
                // every task is only for a list without either.
                let found: Box<dyn Iterator<Item = &Task>> = if !f.service_ids.is_empty() {
                    Box::new(f.service_ids.iter().flat_map(|id| s.tasks_of_service(id)))
                } else if !f.node_ids.is_empty() {
                    Box::new(f.node_ids.iter().flat_map(|id| s.tasks_on_node(id)))
                } else {
                    Box::new(s.list::<Task>())
                };
                let mut tasks: Vec<Task> = found
                    .filter(|t| f.service_ids.is_empty() || f.service_ids.contains(&t.service_id))
                    .filter(|t| f.node_ids.is_empty() || f.node_ids.contains(&t.node_id))
                    .filter(|t| {
                        f.desired_states.is_empty() || f.desired_states.contains(&t.desired_state)
                    })
                    .cloned()
                    .collect();
                // In ID order, as a walk over every task gives them; a service or node
                // named twice lists its tasks once.
                tasks.sort_by(|a, b| a.id().cmp(b.id()));
                tasks.dedup_by(|a, b| a.id() == b.id());
                tasks
            })
            .await?;
        Ok(Response::new(ListTasksResponse { tasks }))
    }

    async fn create_network(
        &self,
        req: Request<CreateNetworkRequest>,
    ) -> Result<Response<CreateNetworkResponse>, Status> {
        let store = self.store(&req)?;
        let spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("a network needs a spec"))?;
        let spec = store.read_latest(|s| network::validate(s, spec)).await??;
        let id = proto::id::new_id();
        let created = Network {
            meta: Some(Meta {
                id: id.clone(),
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        };
        store.write(vec![create(created)]).await?;
        let network = store.read_own_write(|s| s.get::<Network>(&id).cloned());
        Ok(Response::new(CreateNetworkResponse { network }))
    }

    async fn get_network(
        &self,
        req: Request<GetNetworkRequest>,
    ) -> Result<Response<GetNetworkResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().network;
        let network = store
            .read_latest(|s| s.resolve::<Network>(&reference).cloned())
            .await??;
        Ok(Response::new(GetNetworkResponse {
            network: Some(network),
        }))
    }

    async fn list_networks(
        &self,
        req: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        let store = self.store(&req)?;
        let networks = store
            .read_latest(|s| s.list::<Network>().cloned().collect())
            .await?;
        Ok(Response::new(ListNetworksResponse { networks }))
    }

    async fn remove_network(
        &self,
        req: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().network;
        store
            .remove(|s| {
                let target = s.resolve::<Network>(&reference).cloned()?;
                network::check_removable(s, &target)?;
                Ok::<_, Status>(target)
            })
            .await?;
        Ok(Response::new(RemoveNetworkResponse {}))
    }

    async fn create_secret(
        &self,
        req: Request<CreateSecretRequest>,
    ) -> Result<Response<CreateSecretResponse>, Status> {
        let store = self.store(&req)?;
        let spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("a secret needs a spec"))?;
        let secret = self
            .create_named(&store, Secret::build(proto::id::new_id(), spec))
            .await?;
        Ok(Response::new(CreateSecretResponse {
            secret: Some(named::without_data(secret)),
        }))
    }

    async fn get_secret(
        &self,
        req: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().secret;
        let secret = store
            .read_latest(|s| s.resolve::<Secret>(&reference).cloned())
            .await??;
        Ok(Response::new(GetSecretResponse {
            secret: Some(named::without_data(secret)),
        }))
    }

    async fn list_secrets(
        &self,
        req: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let store = self.store(&req)?;
        let secrets = store
            .read_latest(|s| {
                s.list::<Secret>()
                    .cloned()
                    .map(named::without_data)
                    .collect()
            })
            .await?;
        Ok(Response::new(ListSecretsResponse { secrets }))
    }

    async fn remove_secret(
        &self,
        req: Request<RemoveSecretRequest>,
    ) -> Result<Response<RemoveSecretResponse>, Status> {
        let store = self.store(&req)?;
        self.remove_named::<Secret>(&store, &req.into_inner().secret)
            .await?;
        Ok(Response::new(RemoveSecretResponse {}))
    }

    async fn update_secret(
        &self,
        req: Request<UpdateSecretRequest>,
    ) -> Result<Response<UpdateSecretResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let spec = body
            .spec
            .ok_or_else(|| invalid("a secret update needs a spec"))?;
        let secret: Secret = self
            .update_named(
                &store,
                &body.secret,
                body.version,
                (spec.name, spec.labels, spec.data),
            )
            .await?;
        Ok(Response::new(UpdateSecretResponse {
            secret: Some(named::without_data(secret)),
        }))
    }

    async fn create_config(
        &self,
        req: Request<CreateConfigRequest>,
    ) -> Result<Response<CreateConfigResponse>, Status> {
        let store = self.store(&req)?;
        let spec = req
            .into_inner()
            .spec
            .ok_or_else(|| invalid("a config needs a spec"))?;
        let config = self
            .create_named(&store, Config::build(proto::id::new_id(), spec))
            .await?;
        Ok(Response::new(CreateConfigResponse {
            config: Some(config),
        }))
    }

    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        let store = self.store(&req)?;
        let reference = req.into_inner().config;
        let config = store
            .read_latest(|s| s.resolve::<Config>(&reference).cloned())
            .await??;
        Ok(Response::new(GetConfigResponse {
            config: Some(config),
        }))
    }

    async fn list_configs(
        &self,
        req: Request<ListConfigsRequest>,
    ) -> Result<Response<ListConfigsResponse>, Status> {
        let store = self.store(&req)?;
        let configs = store
            .read_latest(|s| s.list::<Config>().cloned().collect())
            .await?;
        Ok(Response::new(ListConfigsResponse { configs }))
    }

    async fn update_config(
        &self,
        req: Request<UpdateConfigRequest>,
    ) -> Result<Response<UpdateConfigResponse>, Status> {
        let store = self.store(&req)?;
        let body = req.into_inner();
        let spec = body
            .spec
            .ok_or_else(|| invalid("a config update needs a spec"))?;
        let config: Config = self
            .update_named(
                &store,
                &body.config,
                body.version,
                (spec.name, spec.labels, spec.data),
            )
            .await?;
        Ok(Response::new(UpdateConfigResponse {
            config: Some(config),
        }))
    }

    async fn remove_config(
        &self,
        req: Request<RemoveConfigRequest>,
    ) -> Result<Response<RemoveConfigResponse>, Status> {
        let store = self.store(&req)?;
        self.remove_named::<Config>(&store, &req.into_inner().config)
            .await?;
        Ok(Response::new(RemoveConfigResponse {}))
    }

    type EventsStream = crate::events::EventStream;

    async fn events(
        &self,
        req: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        require_manager(&req)?;
        let manager = self.running.get()?;
        Ok(Response::new(crate::events::stream(
            manager.events(),
            req.into_inner(),
        )?))
    }
}
