//! A node's live membership in a cluster: its credentials, cluster port, session with the
//! leader and, on managers, the manager. Built by `init`, `join` or a restart; torn down by
//! `leave`. Role changes the cluster asks for (promote, demote) happen here too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use manager::raft::RaftNode;
use manager::Manager;
use proto::ca_client::CaClient;
use proto::raft_client::RaftClient;
use proto::{JoinRaftRequest, NodeRole, RenewNodeCertificateRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use worker::agent::Agent;
use worker::session::{self, SessionConfig, SessionEvent};

use super::server::{serve_cluster_port, Running};
use super::state::NodeState;
use super::Daemon;
use crate::tls::{self, NodeCredentials, ReloadableIdentity, TlsConnector};

/// Everything a node runs while it is in a cluster.
pub struct Membership {
    state: NodeState,
    agent: Arc<Agent>,
    identity: ReloadableIdentity,
    connector: Arc<TlsConnector>,
    cluster_port: Option<Running>,
    session_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The leader's address, as the session last found it.
    leader: Arc<Mutex<Option<String>>>,
    /// While this node runs a manager: the loop keeping its keys as autolock says.
    autolock: Mutex<Option<JoinHandle<()>>>,
    /// The span naming this node, parent of the spans of its loops and RPCs: spawned
    /// tasks do not inherit spans, so each is given its own under this one.
    span: tracing::Span,
}

impl Membership {
    /// The node's task agent.
    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// The persisted state.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// The connector that dials other nodes with this node's certificate.
    pub fn connector(&self) -> &Arc<TlsConnector> {
        &self.connector
    }

    /// The leader's address if known, else any manager's.
    pub fn manager_addr(&self) -> Option<String> {
        let leader = self
            .leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        leader.or_else(|| self.state.managers.first().cloned())
    }

    /// Starts everything for a saved (or freshly made) state. A manager's Raft member is
    /// opened as it is on disk: a new one waits to be initialised or added by the leader.
    pub async fn start(
        daemon: &Arc<Daemon>,
        state: NodeState,
        creds: &NodeCredentials,
    ) -> anyhow::Result<(Self, Option<Arc<Manager>>)> {
        let identity =
            ReloadableIdentity::new(creds).context("the node certificate cannot be loaded")?;
        let connector = Arc::new(
            TlsConnector::new(&creds.root_ca_pem, identity.clone()).context("cannot set up TLS")?,
        );
        let listen: SocketAddr = state
            .listen_addr
            .parse()
            .with_context(|| format!("invalid listen address {}", state.listen_addr))?;
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}: is another skiffd or program using the port?")
        })?;
        let span = tracing::info_span!(parent: None, "node", id = %state.node_id);
        let server_tls = tls::server_config(&creds.root_ca_pem, identity.clone())
            .context("cannot set up TLS")?;
        let cluster_port = serve_cluster_port(
            listener,
            server_tls,
            daemon.slot(),
            daemon.agent_slot(),
            span.clone(),
            daemon.opts.raft.runtime.clone(),
        )?;
        let agent = Agent::new(
            daemon.runtime.clone(),
            daemon.data.agent(),
            data_path(daemon, &state),
        );
        if let Err(e) = agent
            .recover()
            .instrument(tracing::info_span!(parent: &span, "recover"))
            .await
        {
            tracing::warn!(error = %e, "could not recover the node's tasks");
        }
        *daemon.agent.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((agent.clone(), state.node_id.clone()));
        let mut membership = Self {
            state,
            agent,
            identity,
            connector,
            cluster_port: Some(cluster_port),
            session_stop: watch::channel(false).0,
            tasks: Vec::new(),
            leader: Arc::new(Mutex::new(None)),
            autolock: Mutex::new(None),
            span,
        };
        let manager = if membership.state.manager {
            match membership.start_manager(daemon).await {
                Ok(m) => Some(m),
                Err(e) => {
                    membership.stop(&daemon.slot).await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        membership.start_session(daemon);
        membership.tasks.push(tokio::spawn(
            super::renewal::run(daemon.clone())
                .instrument(tracing::info_span!(parent: &membership.span, "renewal")),
        ));
        Ok((membership, manager))
    }

    /// Rejoins after a restart.
    pub async fn resume(daemon: &Arc<Daemon>, state: NodeState) -> anyhow::Result<Self> {
        let creds = daemon.credentials()?;
        Ok(Self::start(daemon, state, &creds).await?.0)
    }

    async fn start_manager(&self, daemon: &Arc<Daemon>) -> anyhow::Result<Arc<Manager>> {
        let kek = daemon.key_encryption_key()?;
        let raft = RaftNode::open(
            &daemon.data.raft(),
            self.state.raft_id,
            &daemon.opts.raft,
            self.connector.clone(),
            &kek,
            daemon.fallback_key_encryption_key().as_ref(),
        )
        .await
        .map_err(|e| anyhow!(e))?;
        let manager = Manager::start(
            self.state.node_id.clone(),
            self.state.advertise_addr.clone(),
            raft,
        );
        daemon.slot.set(Some(manager.clone()));
        let follow = tokio::spawn(
            super::autolock::follow(daemon.clone(), manager.clone())
                .instrument(tracing::info_span!(parent: &self.span, "autolock")),
        );
        if let Some(old) = self
            .autolock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(follow)
        {
            old.abort();
        }
        Ok(manager)
    }

    /// Stops following autolock (the manager stops).
    fn stop_autolock(&self) {
        if let Some(task) = self
            .autolock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    fn start_session(&mut self, daemon: &Arc<Daemon>) {
        let (stop, stop_rx) = watch::channel(false);
        self.session_stop = stop;
        let (tx, mut rx) = mpsc::channel(16);
        let connector = self.connector.clone();
        let config = SessionConfig {
            addr: self.state.advertise_addr.clone(),
            description: super::host::describe(
                daemon.opts.hostname.as_deref(),
                &daemon.opts.runtime,
                &self.state.listen_addr,
            ),
            managers: self.state.managers.clone(),
            agent: self.agent.clone(),
        };
        let dial: worker::Dialer = Arc::new(move |addr: &str| {
            use manager::transport::Connector;
            connector.channel(addr)
        });
        self.tasks.push(tokio::spawn(
            session::run(config, dial, tx, stop_rx)
                .instrument(tracing::info_span!(parent: &self.span, "session")),
        ));
        let daemon = daemon.clone();
        let leader = self.leader.clone();
        let role_changes = tracing::info_span!(parent: &self.span, "role_changes");
        self.tasks.push(tokio::spawn(
            async move {
                while let Some(event) = rx.recv().await {
                    if let SessionEvent::Connected { leader_addr } = &event {
                        *leader.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(leader_addr.clone());
                    }
                    if let Err(e) = on_session_event(&daemon, event).await {
                        tracing::warn!("{e:#}");
                    }
                }
            }
            .instrument(role_changes),
        ));
    }

    /// Stops the session, the manager and the cluster port; the node's tasks keep running
    /// (a restarted daemon adopts them).
    pub async fn stop(mut self, slot: &manager::RunningManager) {
        self.stop_autolock();
        let _ = self.session_stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(m) = slot.set(None) {
            m.stop().await;
        }
        if let Some(port) = self.cluster_port.take() {
            port.stop().await;
        }
    }

    /// Asks a manager for a new certificate for this node's current role in the cluster, and
    /// starts using it. Returns the role the certificate carries.
    pub async fn renew_certificate(&self, daemon: &Daemon) -> anyhow::Result<NodeRole> {
        let addr = self
            .manager_addr()
            .ok_or_else(|| anyhow!("no manager is known to renew the certificate with"))?;
        self.renew_certificate_at(daemon, &addr).await
    }

    async fn renew_certificate_at(&self, daemon: &Daemon, addr: &str) -> anyhow::Result<NodeRole> {
        let (key_pem, csr_pem) = tls::generate_key_and_csr()?;
        use manager::transport::Connector;
        let reply = CaClient::new(self.connector.channel(addr))
            .renew_node_certificate(RenewNodeCertificateRequest { csr_pem })
            .await
            .map_err(|s| anyhow!("{}", s.message()))
            .context("cannot renew the node certificate")?
            .into_inner();
        let old = daemon.credentials()?;
        let creds = NodeCredentials {
            root_ca_pem: old.root_ca_pem,
            cert_pem: reply.cert_pem,
            key_pem,
        };
        daemon.save_credentials(&creds)?;
        self.identity.replace(&creds)?;
        Ok(NodeRole::try_from(reply.role).unwrap_or(NodeRole::Worker))
    }

    /// Whether the certificate this node holds is a manager's.
    fn holds_manager_certificate(&self, daemon: &Daemon) -> bool {
        daemon
            .credentials()
            .ok()
            .and_then(|c| manager::ca::identity_from_pem(&c.cert_pem).ok())
            .is_some_and(|id| id.role == NodeRole::Manager)
    }

    /// Turns this node into a manager: a manager certificate, a fresh Raft member, and a
    /// request to the leader to add it.
    async fn become_manager(&mut self, daemon: &Arc<Daemon>) -> anyhow::Result<()> {
        if self.renew_certificate(daemon).await? != NodeRole::Manager {
            bail!("the cluster did not issue a manager certificate; the promotion may have been undone");
        }
        let _ = std::fs::remove_dir_all(daemon.data.raft());
        self.state.raft_id = new_raft_id();
        self.state.manager = true;
        self.start_manager(daemon).await?;
        let remote = self
            .manager_addr()
            .ok_or_else(|| anyhow!("no manager is known to join Raft through"))?;
        join_raft(&self.connector, &remote, &self.state).await?;
        daemon.data.save(&self.state)?;
        tracing::info!("promoted: this node is now a manager");
        Ok(())
    }

    /// Turns this node back into a worker: hands over the leadership if it has it, stops
    /// the manager, forgets its Raft data, and trades its manager certificate for a
    /// worker's. Run again whenever the cluster says "worker" while this node still holds a
    /// manager certificate, so a demotion interrupted half way (no other manager answered)
    /// finishes later.
    async fn become_worker(&mut self, daemon: &Arc<Daemon>) -> anyhow::Result<()> {
        if let Some(m) = daemon.slot.current() {
            // Stopping at once could leave a group of two waiting for this member's vote
            // on its own removal: a leader hands over first, a follower waits until the
            // leader has made it a learner.
            if m.raft().is_leader() {
                m.raft().step_down().await;
            } else if !m.raft().wait_until_not_voter(DEMOTION_WAIT).await {
                tracing::warn!("the leader did not take this manager out of the Raft voters in time; stopping it anyway");
            }
        }
        self.stop_autolock();
        if let Some(m) = daemon.slot.set(None) {
            m.stop().await;
        }
        // Only managers lock: a worker's TLS key is kept as a worker's.
        daemon.unseal_credentials()?;
        if self.state.manager {
            self.state.manager = false;
            self.state.raft_id = 0;
            daemon.data.save(&self.state)?;
            let _ = std::fs::remove_dir_all(daemon.data.raft());
        }
        // Only another manager can issue the certificate now; the leader may still be
        // this node in the session's view, and the new one may take a moment to be elected.
        let others: Vec<String> = self
            .state
            .managers
            .iter()
            .filter(|a| **a != self.state.advertise_addr)
            .cloned()
            .collect();
        if others.is_empty() {
            bail!("no other manager is known to issue this node a worker certificate; it will ask again when the cluster next says it is a worker");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            for addr in &others {
                match self.renew_certificate_at(daemon, addr).await {
                    Ok(_) => {
                        tracing::info!("demoted: this node is now a worker");
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last
            .unwrap_or_else(|| anyhow!("no manager answered"))
            .context("could not get a worker certificate; this node will ask again when the cluster next says it is a worker"))
    }
}

/// How long a demoted manager waits for the leader to take it out of the Raft voters.
const DEMOTION_WAIT: Duration = Duration::from_secs(30);

/// A random, non-zero Raft member ID.
pub fn new_raft_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// Asks the manager at `remote` to add this node to Raft; followers forward to the leader.
pub async fn join_raft(
    connector: &Arc<TlsConnector>,
    remote: &str,
    state: &NodeState,
) -> anyhow::Result<()> {
    use manager::transport::Connector;
    let request = JoinRaftRequest {
        node_id: state.node_id.clone(),
        raft_id: state.raft_id,
        addr: state.advertise_addr.clone(),
    };
    let mut last = None;
    for _ in 0..40 {
        match RaftClient::new(connector.channel(remote))
            .join(request.clone())
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                last = Some(s.message().to_owned());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(s) => bail!("cannot join the managers' Raft group: {}", s.message()),
        }
    }
    bail!(
        "cannot join the managers' Raft group: {}",
        last.unwrap_or_else(|| "no answer".into())
    )
}

async fn on_session_event(daemon: &Arc<Daemon>, event: SessionEvent) -> anyhow::Result<()> {
    let mut guard = daemon.membership.lock().await;
    let Some(membership) = guard.as_mut() else {
        return Ok(());
    };
    match event {
        SessionEvent::Connected { .. } => {}
        SessionEvent::Managers(peers) => {
            let addrs: Vec<String> = peers.into_iter().map(|p| p.addr).collect();
            if addrs != membership.state.managers {
                membership.state.managers = addrs;
                daemon.data.save(&membership.state)?;
            }
        }
        SessionEvent::DesiredRole(NodeRole::Manager) if !membership.state.manager => {
            membership.become_manager(daemon).await?;
        }
        SessionEvent::DesiredRole(NodeRole::Worker)
            if membership.state.manager || membership.holds_manager_certificate(daemon) =>
        {
            membership.become_worker(daemon).await?;
        }
        SessionEvent::DesiredRole(_) => {}
        SessionEvent::Removed => {
            tracing::warn!("this node was removed from the cluster; run `skiff swarm leave --force` and join again");
        }
    }
    Ok(())
}

/// The node's data path, when it sets up networks: its underlay (VTEP) address is the host
/// of its advertise address, which must be IPv4.
fn data_path(daemon: &Daemon, state: &NodeState) -> Option<Arc<worker::net::datapath::DataPath>> {
    let mode = daemon.opts.data_path?;
    let underlay = match state.advertise_addr.parse::<SocketAddr>().map(|a| a.ip()) {
        Ok(std::net::IpAddr::V4(ip)) => ip,
        _ => {
            tracing::warn!(addr = %state.advertise_addr, "overlay networks need an IPv4 advertise address; this node will not set them up");
            return None;
        }
    };
    // The mesh must never capture the node's own cluster port, where it listens and what
    // it advertises.
    let cluster = [&state.listen_addr, &state.advertise_addr]
        .into_iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .collect();
    Some(Arc::new(
        worker::net::datapath::DataPath::new(
            &state.node_id,
            underlay,
            mode,
            worker::net::datapath::BridgeConfig {
                subnets: daemon.opts.bridges,
                state_dir: daemon.data.bridges(),
            },
        )
        .with_cluster_addrs(cluster),
    ))
}
