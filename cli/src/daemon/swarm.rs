//! The `Swarm` service on the local socket: init, join, leave, info, and image loading
//! into this node's runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use manager::bootstrap::{initial_batch, FirstManager};
use manager::ca::RootCa;
use manager::controlapi::cluster::validate_spec;
use manager::settings::{default_spec, DEFAULT_CERT_EXPIRY};
use manager::Manager;
use proto::ca_client::CaClient;
use proto::swarm_server::Swarm;
use proto::token::JoinToken;
use proto::{
    GetRootCaRequest, InfoRequest, InfoResponse, InitRequest, InitResponse,
    IssueNodeCertificateRequest, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse,
    LoadImageRequest, LoadImageResponse, LocalNodeState, NodeRole, UnlockRequest, UnlockResponse,
};
use tonic::{Request, Response, Status};

use super::host::{advertise_addr, describe, parse_addr};
use super::membership::{join_raft, new_raft_id, Membership};
use super::state::NodeState;
use super::Daemon;
use crate::tls::{self, NodeCredentials};

/// Serves `Swarm` for one daemon.
pub struct SwarmService {
    daemon: Arc<Daemon>,
}

impl SwarmService {
    /// The service of `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

/// An error a user sees: the whole anyhow chain in one line.
fn user_error(code: tonic::Code, e: anyhow::Error) -> Status {
    Status::new(code, format!("{e:#}"))
}

const ALREADY_MEMBER: &str =
    "this node is already part of a cluster; leave it first with `skiff swarm leave`";

impl Daemon {
    fn listen_addr(&self, requested: &str) -> anyhow::Result<SocketAddr> {
        let s = if requested.is_empty() {
            &self.opts.listen_addr
        } else {
            requested
        };
        parse_addr(s, "listen address")
    }

    fn advertise_for(
        &self,
        requested: &str,
        listen: SocketAddr,
        towards: Option<SocketAddr>,
    ) -> anyhow::Result<SocketAddr> {
        let given = (!requested.is_empty())
            .then_some(requested)
            .or(self.opts.advertise_addr.as_deref());
        advertise_addr(given, listen, towards)
    }

    async fn init(self: &Arc<Self>, req: InitRequest) -> anyhow::Result<InitResponse> {
        let mut guard = self.membership.lock().await;
        if req.force_new_cluster {
            let Some(membership) = guard.take() else {
                bail!("--force-new-cluster needs a manager with the cluster's data; this node is not part of a cluster");
            };
            return self.force_new_cluster(&mut guard, membership).await;
        }
        if guard.is_some() {
            bail!(ALREADY_MEMBER);
        }
        let spec = default_spec(req.spec);
        validate_spec(&spec).map_err(|s| anyhow!("{}", s.message()))?;
        let listen = self.listen_addr(&req.listen_addr)?;
        let advertise = self.advertise_for(&req.advertise_addr, listen, None)?;

        let cluster_id = proto::id::new_id();
        let node_id = proto::id::new_id();
        let root = RootCa::generate(&cluster_id)?;
        let (key_pem, csr_pem) = tls::generate_key_and_csr()?;
        let expiry = spec.ca_config.as_ref().map_or(DEFAULT_CERT_EXPIRY, |c| {
            Duration::from_millis(c.node_cert_expiry_ms)
        });
        let issued = root.issue(&csr_pem, &node_id, NodeRole::Manager, &cluster_id, expiry)?;
        let creds = NodeCredentials {
            root_ca_pem: root.cert_pem().to_owned(),
            cert_pem: issued.cert_pem.clone(),
            key_pem,
        };
        let state = NodeState {
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            manager: true,
            raft_id: new_raft_id(),
            listen_addr: listen.to_string(),
            advertise_addr: advertise.to_string(),
            managers: vec![advertise.to_string()],
        };
        let _ = self.data.wipe();
        self.save_credentials(&creds)?;
        let (membership, manager) = Membership::start(self, state.clone(), &creds).await?;
        let manager = manager.ok_or_else(|| anyhow!("the manager did not start"))?;
        let created = async {
            manager
                .raft()
                .initialize(&state.advertise_addr)
                .await
                .map_err(|e| anyhow!(e))?;
            wait_until_leader(&manager).await?;
            let batch = initial_batch(
                &cluster_id,
                &root,
                Some(spec),
                FirstManager {
                    node_id: &node_id,
                    raft_id: state.raft_id,
                    addr: &state.advertise_addr,
                    description: describe(
                        self.opts.hostname.as_deref(),
                        &self.opts.runtime,
                        &state.listen_addr,
                    ),
                    certificate: &issued,
                },
            )
            .map_err(|e| anyhow!("cannot create the cluster: {}", e.message()))?;
            manager
                .raft()
                .propose(&batch)
                .await
                .map_err(|e| anyhow!("cannot create the cluster: {e}"))?;
            self.data.save(&state)
        }
        .await;
        if let Err(e) = created {
            membership.stop(&self.slot).await;
            let _ = self.data.wipe();
            return Err(e);
        }
        let tokens = manager
            .store()
            .read()
            .cluster()
            .and_then(|c| c.join_tokens.clone())
            .unwrap_or_default();
        *guard = Some(membership);
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(node = %node_id, cluster = %cluster_id, addr = %advertise, "initialised a new cluster");
        Ok(InitResponse {
            node_id,
            cluster_id,
            worker_token: tokens.worker,
            manager_token: tokens.manager,
            advertise_addr: advertise.to_string(),
        })
    }

    /// Restarts a manager that lost its quorum as the only member of a new Raft group with
    /// all of the cluster's objects.
    async fn force_new_cluster(
        self: &Arc<Self>,
        guard: &mut Option<Membership>,
        membership: Membership,
    ) -> anyhow::Result<InitResponse> {
        let mut state = membership.state().clone();
        if !state.manager {
            *guard = Some(membership);
            bail!("--force-new-cluster runs on a manager; this node is a worker");
        }
        let manager = self.slot.get().map_err(|s| anyhow!("{}", s.message()))?;
        let objects = manager.store().read().clone();
        membership.stop(&self.slot).await;
        // A fresh Raft group: new member ID, empty log, then every object written back.
        std::fs::remove_dir_all(self.data.raft()).context("cannot reset the Raft data")?;
        state.raft_id = new_raft_id();
        state.managers = vec![state.advertise_addr.clone()];
        self.data.save(&state)?;
        let creds = self.credentials()?;
        let (membership, manager) = Membership::start(self, state.clone(), &creds).await?;
        let manager = manager.ok_or_else(|| anyhow!("the manager did not start"))?;
        manager
            .raft()
            .initialize(&state.advertise_addr)
            .await
            .map_err(|e| anyhow!(e))?;
        wait_until_leader(&manager).await?;
        let batch = manager::bootstrap::recovery_batch(
            &objects,
            &state.node_id,
            state.raft_id,
            &state.advertise_addr,
        );
        manager
            .raft()
            .propose(&batch)
            .await
            .map_err(|e| anyhow!("cannot restore the cluster's objects: {e}"))?;
        let tokens = objects
            .cluster()
            .and_then(|c| c.join_tokens.clone())
            .unwrap_or_default();
        *guard = Some(membership);
        tracing::warn!(
            "forced a new cluster from this manager's state; other managers must join again"
        );
        Ok(InitResponse {
            node_id: state.node_id,
            cluster_id: state.cluster_id,
            worker_token: tokens.worker,
            manager_token: tokens.manager,
            advertise_addr: state.advertise_addr,
        })
    }

    async fn join(self: &Arc<Self>, req: JoinRequest) -> anyhow::Result<JoinResponse> {
        let mut guard = self.membership.lock().await;
        if guard.is_some() {
            bail!(ALREADY_MEMBER);
        }
        let token: JoinToken = req.token.parse()?;
        if req.remote_addr.is_empty() {
            bail!("give the address of a manager to join, such as 192.168.1.10:2377");
        }
        let remote = parse_addr(&req.remote_addr, "manager address")?;
        let listen = self.listen_addr(&req.listen_addr)?;
        let advertise = self.advertise_for(&req.advertise_addr, listen, Some(remote))?;
        let remote = remote.to_string();

        // Trust nothing until the root CA matches the digest in the token.
        let root_pem = CaClient::new(tls::unverified_channel(&remote))
            .get_root_ca(GetRootCaRequest {})
            .await
            .map_err(|s| reach_error(&remote, &s))?
            .into_inner()
            .cert_pem;
        let digest = manager::ca::cert_digest(&root_pem)?;
        if digest != token.ca_digest {
            bail!("the root CA of {remote} does not match the join token: {remote} is not a manager of the cluster this token belongs to (or the connection is being intercepted)");
        }
        let (key_pem, csr_pem) = tls::generate_key_and_csr()?;
        let issued = CaClient::new(tls::anonymous_channel(&remote, &root_pem)?)
            .issue_node_certificate(IssueNodeCertificateRequest {
                token: req.token.clone(),
                csr_pem,
                description: Some(describe(
                    self.opts.hostname.as_deref(),
                    &self.opts.runtime,
                    &listen.to_string(),
                )),
                advertise_addr: advertise.to_string(),
            })
            .await
            .map_err(|s| reach_error(&remote, &s))?
            .into_inner();
        let role = NodeRole::try_from(issued.role).unwrap_or(NodeRole::Worker);
        let creds = NodeCredentials {
            root_ca_pem: root_pem,
            cert_pem: issued.cert_pem,
            key_pem,
        };
        let mut managers = issued.managers;
        if !managers.contains(&remote) {
            managers.insert(0, remote.clone());
        }
        let state = NodeState {
            node_id: issued.node_id.clone(),
            cluster_id: issued.cluster_id,
            manager: role == NodeRole::Manager,
            raft_id: if role == NodeRole::Manager {
                new_raft_id()
            } else {
                0
            },
            listen_addr: listen.to_string(),
            advertise_addr: advertise.to_string(),
            managers,
        };
        let _ = self.data.wipe();
        self.save_credentials(&creds)?;
        let (membership, _) = Membership::start(self, state.clone(), &creds).await?;
        let joined = async {
            if state.manager {
                join_raft(membership.connector(), &remote, &state).await?;
            }
            self.data.save(&state)
        }
        .await;
        if let Err(e) = joined {
            membership.stop(&self.slot).await;
            let _ = self.data.wipe();
            return Err(e);
        }
        *guard = Some(membership);
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(node = %issued.node_id, ?role, "joined the cluster");
        Ok(JoinResponse {
            node_id: issued.node_id,
            role: role as i32,
        })
    }

    async fn leave(self: &Arc<Self>, req: LeaveRequest) -> anyhow::Result<()> {
        let mut guard = self.membership.lock().await;
        if self.slot.is_locked() {
            if !req.force {
                bail!("this manager is locked: unlock it with `skiff swarm unlock`, or leave with --force, which forgets its cluster state without it");
            }
            self.data.wipe()?;
            self.slot.set_locked(false);
            tracing::info!("left the cluster while locked");
            return Ok(());
        }
        let Some(membership) = guard.take() else {
            bail!("this node is not part of a cluster");
        };
        if membership.state().manager && !req.force {
            let managers = membership.state().managers.len().max(1);
            *guard = Some(membership);
            bail!(
                "this node is a manager: leaving leaves {} managers out of {managers}, and the cluster needs a majority of managers to keep working; demote it first with `skiff node demote`, or use --force to leave anyway",
                managers - 1
            );
        }
        let agent = membership.agent().clone();
        membership.stop(&self.slot).await;
        *self.agent.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Leaving stops the node's tasks, as Docker does.
        agent.shut_down_all().await;
        self.data.wipe()?;
        tracing::info!("left the cluster");
        Ok(())
    }

    fn info(&self, membership: Option<&Membership>) -> InfoResponse {
        let error = self.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let version = env!("CARGO_PKG_VERSION").to_owned();
        if self.slot.is_locked() {
            return InfoResponse {
                state: LocalNodeState::Locked as i32,
                error: manager::manager::LOCKED.into(),
                version,
                ..Default::default()
            };
        }
        let Some(m) = membership else {
            return InfoResponse {
                state: if error.is_some() {
                    LocalNodeState::Error
                } else {
                    LocalNodeState::Inactive
                } as i32,
                error: error.unwrap_or_default(),
                version,
                ..Default::default()
            };
        };
        let s = m.state();
        InfoResponse {
            state: LocalNodeState::Active as i32,
            node_id: s.node_id.clone(),
            cluster_id: s.cluster_id.clone(),
            role: if s.manager {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            } as i32,
            advertise_addr: s.advertise_addr.clone(),
            managers: s.managers.clone(),
            error: String::new(),
            version,
            leader_node_id: self
                .slot
                .current()
                .and_then(|m| m.store().leader_node_id())
                .unwrap_or_default(),
            raft: self.slot.current().map(|m| m.raft().status()),
            tasks: u32::try_from(m.agent().task_count()).unwrap_or(u32::MAX),
            secrets: m.agent().secret_ids(),
        }
    }
}

/// Why a manager could not be reached or refused us, in one sentence.
fn reach_error(remote: &str, status: &Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => anyhow!(
            "cannot reach a manager at {remote}: {}; check the address and that skiffd runs there",
            status.message()
        ),
        _ => anyhow!("{}", status.message()),
    }
}

async fn wait_until_leader(manager: &Manager) -> anyhow::Result<()> {
    let mut metrics = manager.raft().metrics();
    let id = manager.raft().id();
    tokio::time::timeout(
        Duration::from_secs(10),
        metrics.wait_for(|m| m.current_leader == Some(id)),
    )
    .await
    .map_err(|_| {
        anyhow!("this manager did not become the leader of its new Raft group within 10 s")
    })?
    .map_err(|_| anyhow!("Raft stopped"))?;
    Ok(())
}

impl SwarmService {
    /// A locked manager does nothing but unlock (or leave with --force).
    fn refuse_if_locked(&self) -> Result<(), Status> {
        if self.daemon.slot.is_locked() {
            return Err(Status::failed_precondition(manager::manager::LOCKED));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Swarm for SwarmService {
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        self.refuse_if_locked()?;
        self.daemon
            .init(req.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| user_error(tonic::Code::FailedPrecondition, e))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.refuse_if_locked()?;
        self.daemon
            .join(req.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| user_error(tonic::Code::FailedPrecondition, e))
    }

    async fn leave(&self, req: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        self.daemon
            .leave(req.into_inner())
            .await
            .map(|()| Response::new(LeaveResponse {}))
            .map_err(|e| user_error(tonic::Code::FailedPrecondition, e))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.daemon
            .unlock(&req.into_inner().unlock_key)
            .await
            .map(|()| Response::new(UnlockResponse {}))
            .map_err(|e| user_error(tonic::Code::FailedPrecondition, e))
    }

    async fn list_local_tasks(
        &self,
        _req: Request<proto::ListLocalTasksRequest>,
    ) -> Result<Response<proto::ListLocalTasksResponse>, Status> {
        let hostname = self
            .daemon
            .opts
            .hostname
            .clone()
            .unwrap_or_else(super::host::system_hostname);
        let guard = self.daemon.membership.lock().await;
        let Some(m) = guard.as_ref() else {
            return Ok(Response::new(proto::ListLocalTasksResponse {
                hostname,
                ..Default::default()
            }));
        };
        Ok(Response::new(proto::ListLocalTasksResponse {
            tasks: m.agent().tasks(),
            node_id: m.state().node_id.clone(),
            hostname,
        }))
    }

    async fn info(&self, _req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let guard = self.daemon.membership.lock().await;
        Ok(Response::new(self.daemon.info(guard.as_ref())))
    }

    async fn load_image(
        &self,
        req: Request<tonic::Streaming<LoadImageRequest>>,
    ) -> Result<Response<LoadImageResponse>, Status> {
        let images = self
            .daemon
            .load_image(req.into_inner())
            .await
            .map_err(|e| user_error(tonic::Code::InvalidArgument, e))?;
        Ok(Response::new(LoadImageResponse { images }))
    }

    async fn inspect_distribution(
        &self,
        req: Request<proto::InspectDistributionRequest>,
    ) -> Result<Response<proto::InspectDistributionResponse>, Status> {
        let req = req.into_inner();
        let image = proto::reference::ImageRef::parse(&req.image).map_err(|e| {
            Status::invalid_argument(format!("invalid image reference {:?}: {e}", req.image))
        })?;
        let d = agent_runtime::containerd::inspect_distribution(
            &image,
            &req.registry_auth,
            &self.daemon.opts.registries,
        )
        .await
        .map_err(|e| {
            let message = e.to_string();
            // Registries say "manifest unknown" or "not found" for a missing name or tag.
            if message.contains("unknown") || message.contains("not found") {
                Status::not_found(message)
            } else {
                Status::unavailable(message)
            }
        })?;
        Ok(Response::new(proto::InspectDistributionResponse {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
            platforms: d
                .platforms
                .into_iter()
                .map(|(os, arch)| proto::Platform { os, arch })
                .collect(),
        }))
    }
}

impl Daemon {
    /// Spools an uploaded image archive to the data dir, then has the runtime load it.
    async fn load_image(
        &self,
        mut chunks: tonic::Streaming<LoadImageRequest>,
    ) -> anyhow::Result<Vec<String>> {
        use tokio::io::AsyncWriteExt as _;
        let spool = self.opts.data_dir.join("tmp");
        tokio::fs::create_dir_all(&spool)
            .await
            .with_context(|| format!("cannot create {}", spool.display()))?;
        let path = spool.join(format!("image-{:016x}.tar", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            while let Some(chunk) = chunks
                .message()
                .await
                .map_err(|s| anyhow!("the upload broke off: {}", s.message()))?
            {
                file.write_all(&chunk.chunk)
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            file.flush().await?;
            self.runtime
                .load_image(&path)
                .await
                .map_err(anyhow::Error::from)
        }
        .await;
        let _ = tokio::fs::remove_file(&path).await;
        result
    }
}
