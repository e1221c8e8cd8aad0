//! One manager's Raft member: opens storage, runs openraft, and gives the rest of the
//! manager three operations that hide who leads: [`RaftNode::propose`] (commit a batch on a
//! quorum, forwarding to the leader if needed), [`RaftNode::read_barrier`] (wait until this
//! manager has applied everything committed before the call) and membership changes. The
//! first two, with leadership, are the store's [`Proposer`]: subsystems reach them through
//! [`crate::store::Store`] only; membership stays here, for the daemon, the Raft service and
//! the membership loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use prost::Message;
use proto::raft_client::RaftClient;
use proto::{ProposeManyRequest, ProposeRequest, ReadIndexRequest, StoreBatch};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::at_rest::KeyEncryptionKey;
use super::format::{self, EntryFormats};
use super::forwarding::{Forwarder, Send as ForwardCall};
use super::network::{Network, PeerHealth};
use super::proposals::{Proposals, Refused};
use super::types::TypeConfig;
use super::{LogStore, StateMachine, MAX_RAFT_MESSAGE_BYTES};
use crate::store::{LocalStore, Proposer, StoreError};
use crate::transport::Connector;

/// How long a write or read barrier may wait for a leader and a quorum before giving up.
pub const QUORUM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower waits to apply its own forwarded write before answering anyway.
const APPLY_WAIT: Duration = Duration::from_secs(2);
/// Pause between rounds of a leadership confirmation that found no quorum.
const CONFIRM_RETRY: Duration = Duration::from_millis(20);
/// Metadata set on a request a follower forwarded, so it is never forwarded twice.
const FORWARDED: &str = "x-skiff-forwarded";

/// Timing of the Raft group. Sub-second by design: a killed leader is replaced in under a
/// second (Docker Swarm's defaults take 10-20 s).
///
/// What a follower waits for before it stands: openraft keeps a leader lease of the
/// longest election timeout, during which a follower that heard the leader refuses to
/// vote for anyone else, and a follower that has a leader stands only after the lease
/// plus its own election timeout without a heartbeat. With 200-400 ms that is 600-800 ms
/// of silence, six to eight heartbeats; with the 400-800 ms used before it was 1.2-1.6 s,
/// which is most of the 1.54 s failover measured then (issue 20). Heartbeats are not
/// shortened: openraft gives every append (with a follower's flush) one heartbeat
/// interval. Silence that long does not happen on a busy machine because Raft runs on
/// threads of its own ([`RaftSettings::runtime`]) and keeps one connection per peer.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// How often the leader heartbeats followers.
    pub heartbeat_interval: Duration,
    /// Election timeout range; a follower that hears nothing for this long stands.
    pub election_timeout: (Duration, Duration),
    /// Entries kept in the log behind a snapshot for slow followers.
    pub log_entries_for_slow_followers: u64,
    /// The newest Raft entry format this manager reads and reports ([`format::NEWEST`]);
    /// lower only to simulate the previous release in tests of upgrades.
    pub entry_format: u32,
    /// Where openraft's core, its replication to each peer (heartbeats included), its
    /// state machine worker and the proposal queue run: a runtime of their own in
    /// `skiffd`, so that reconciliation saturating the manager's other threads never delays
    /// a heartbeat, a vote or a leadership confirmation (issue 20). `None`: the caller's
    /// runtime (unit tests).
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            log_entries_for_slow_followers: 128,
            entry_format: format::NEWEST,
            runtime: None,
        }
    }
}

/// Why a leader could not confirm its leadership.
enum Unconfirmed {
    /// Another member leads now.
    NotLeader,
    /// Raft stopped.
    Stopped(String),
}

/// Where the leader is, as far as this manager knows.
enum Leader {
    Me,
    Other(String),
}

/// This manager's member of the Raft group.
pub struct RaftNode {
    id: u64,
    raft: Raft<TypeConfig>,
    /// Where this member proposes while it leads: concurrent writes share entries.
    proposals: Proposals,
    store: LocalStore,
    connector: Arc<dyn Connector>,
    health: PeerHealth,
    /// One channel per leader address: forwarded writes reuse the connection instead of
    /// paying a TLS handshake each.
    leader_channels: Arc<LeaderChannels>,
    /// Where this member forwards writes while another leads: concurrent writes share
    /// calls.
    forwarder: Forwarder,
    /// The keys that seal the store at rest.
    keys: Arc<super::at_rest::Keyring>,
    /// The entry formats the members read.
    formats: Arc<EntryFormats>,
}

impl RaftNode {
    /// Opens the Raft storage under `dir` and starts the member `id`. A member with existing
    /// state rejoins its group by itself; a new one waits for [`RaftNode::initialize`] or for
    /// a leader to add it. The storage is encrypted with keys that `kek` opens (or
    /// `fallback`, for a change of key-encryption key a stop interrupted: see
    /// [`super::at_rest`]); a store an older release wrote plain is encrypted first.
    pub async fn open(
        dir: &Path,
        id: u64,
        settings: &RaftSettings,
        connector: Arc<dyn Connector>,
        kek: &KeyEncryptionKey,
        fallback: Option<&KeyEncryptionKey>,
    ) -> Result<Self, String> {
        let config = Config {
            cluster_name: "skiff".into(),
            heartbeat_interval: settings.heartbeat_interval.as_millis() as u64,
            election_timeout_min: settings.election_timeout.0.as_millis() as u64,
            election_timeout_max: settings.election_timeout.1.as_millis() as u64,
            // Snapshots are triggered by the manager from the cluster's snapshot interval,
            // which users may change at run time.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: settings.log_entries_for_slow_followers,
            max_payload_entries: 64,
            snapshot_max_chunk_size: (MAX_RAFT_MESSAGE_BYTES / 4) as u64,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("invalid Raft settings: {e}"))?;
        if !(format::SINGLE_BATCH..=format::NEWEST).contains(&settings.entry_format) {
            return Err(format!(
                "Raft entry format {} is unknown: give a format from {} to {}",
                settings.entry_format,
                format::SINGLE_BATCH,
                format::NEWEST
            ));
        }
        let formats = Arc::new(EntryFormats::new(id, settings.entry_format));
        let (db, keys) = super::at_rest::prepare(dir, kek, fallback)?;
        let log = LogStore::open(&db, keys.clone()).map_err(|e| e.to_string())?;
        let sm = StateMachine::open(dir, &db, keys.clone(), settings.entry_format)
            .map_err(|e| e.to_string())?;
        let store = sm.local();
        let health = PeerHealth::default();
        let network = Network::new(connector.clone(), health.clone(), formats.clone());
        // openraft spawns its core on the runtime it starts on, and the core spawns the
        // rest (replication, the state machine worker, the peers' connections).
        let start = Raft::new(id, Arc::new(config), network, log, sm);
        let raft = match &settings.runtime {
            Some(runtime) => runtime
                .spawn(start)
                .await
                .map_err(|e| format!("cannot start Raft: {e}"))?,
            None => start.await,
        }
        .map_err(|e| format!("cannot start Raft: {e}"))?;
        let runtime = settings
            .runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let leader_channels = Arc::new(LeaderChannels {
            connector: connector.clone(),
            channels: Default::default(),
        });
        Ok(Self {
            id,
            proposals: Proposals::start(raft.clone(), formats.clone(), &runtime),
            forwarder: Forwarder::start(forward_through(leader_channels.clone())),
            raft,
            store,
            connector,
            health,
            leader_channels,
            keys,
            formats,
        })
    }

    /// Seals the store's keys by `kek` from now on (autolock turned on or off, the unlock
    /// key rotated).
    pub fn rewrap_keys(&self, kek: &KeyEncryptionKey) -> Result<(), super::at_rest::AtRestError> {
        self.keys.rewrap(kek)
    }

    /// The newest Raft entry format this member reads, which it reports to the leader.
    pub fn entry_format_understood(&self) -> u32 {
        self.formats.understood()
    }

    /// This member's Raft ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This manager's copy of the replicated store.
    pub fn local(&self) -> &LocalStore {
        &self.store
    }

    /// openraft itself, for the Raft RPC service.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Live metrics (leader, membership, log indexes).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// Whether `peer` answered this member recently (meaningful on the leader, which talks
    /// to every member each heartbeat).
    pub fn peer_answered_within(&self, peer: u64, within: Duration) -> bool {
        peer == self.id || self.health.answered_within(peer, within)
    }

    /// Starts a new single-member group (`swarm init`). Only on a pristine member.
    pub async fn initialize(&self, addr: &str) -> Result<(), String> {
        let members = BTreeMap::from([(self.id, BasicNode::new(addr))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| format!("cannot initialise Raft: {e}"))?;
        Ok(())
    }

    /// Whether this member has ever been part of a group.
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Whether this member currently leads.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }

    fn quorum_error(&self) -> StoreError {
        let managers = self.voters().len();
        if managers == 0 {
            return StoreError::Joining;
        }
        StoreError::NoQuorum {
            quorum: managers / 2 + 1,
            managers,
        }
    }

    /// Waits until some member is known to lead.
    /// Where the leader is, waiting while there is none this member can reach: no leader
    /// yet, or one that is not in the configuration this member has (it has just left the
    /// group, or this member is behind). Callers bound the wait.
    async fn leader(&self) -> Result<Leader, StoreError> {
        let mut rx = self.raft.metrics();
        let stopped = |e: tokio::sync::watch::error::RecvError| StoreError::Stopped(e.to_string());
        loop {
            let found = {
                let m = rx
                    .wait_for(|m| m.current_leader.is_some())
                    .await
                    .map_err(stopped)?;
                let leader = m.current_leader.unwrap_or_default();
                if leader == self.id {
                    return Ok(Leader::Me);
                }
                m.membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|node| node.addr.clone())
            };
            match found {
                Some(addr) => return Ok(Leader::Other(addr)),
                None => rx.changed().await.map_err(stopped)?,
            }
        }
    }

    fn leader_client(&self, addr: &str) -> RaftClient<Channel> {
        self.leader_channels.client(addr)
    }

    /// Commits `batch` on a quorum and applies it here; returns its log index. Followers
    /// forward to the leader, then wait until they have applied the entry themselves, so a
    /// read that follows on this manager sees the write.
    ///
    /// An attempt whose answer is lost (the leader died after committing it) is sent again
    /// under the same proposal ID; if the retry is refused, the first application's
    /// outcome is what the write did (see [`RaftNode::first_outcome`]).
    pub async fn propose(&self, batch: &StoreBatch) -> Result<u64, StoreError> {
        let mut batch = batch.clone();
        if batch.proposal.is_empty() {
            batch.proposal = format!("{:032x}", rand::random::<u128>());
        }
        let bytes = batch.encode_to_vec();
        let mut retried = false;
        let attempt = async {
            loop {
                let refused = match self.leader().await? {
                    Leader::Me => match self.proposals.propose(bytes.clone()).await {
                        Ok(index) => return Ok(index),
                        Err(Refused::NotLeader) => {
                            self.wait_for_leader_change().await;
                            retried = true;
                            continue;
                        }
                        Err(Refused::Apply(e)) => StoreError::from(e),
                        Err(Refused::Stopped(e)) => return Err(StoreError::Stopped(e)),
                    },
                    Leader::Other(addr) => {
                        match self.forwarder.forward(addr, batch.clone()).await {
                            Ok(index) => {
                                // Committed: wait to apply it here too, but not forever (this
                                // write may have removed this manager from the group).
                                let _ = tokio::time::timeout(
                                    APPLY_WAIT,
                                    self.store.wait_applied(index),
                                )
                                .await;
                                return Ok(index);
                            }
                            Err(s) if is_retryable(&s) => {
                                self.pause_before_retry().await;
                                retried = true;
                                continue;
                            }
                            Err(s) => remote(s),
                        }
                    }
                };
                if retried {
                    if let Some(first) = self.first_outcome(&batch.proposal).await {
                        return first;
                    }
                }
                return Err(refused);
            }
        };
        tokio::time::timeout(QUORUM_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(self.quorum_error()))
    }

    /// A retried proposal was refused: was that because an earlier attempt had already
    /// applied? Once every committed entry is applied here (the retry was committed, so its
    /// earlier attempt, if ever committed, came before it), the first application of the
    /// proposal, if remembered, is the write's real outcome.
    async fn first_outcome(&self, proposal: &str) -> Option<Result<u64, StoreError>> {
        self.read_barrier().await.ok()?;
        let (index, result) = self.store.first_outcome(proposal)?;
        tracing::debug!(
            proposal,
            index,
            "a retried write was refused after its first attempt applied"
        );
        Some(result.map(|()| index).map_err(StoreError::from))
    }

    /// Waits until this manager has applied every entry committed before the call, so what
    /// it reads next is at least as new as any acknowledged write anywhere in the cluster.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let attempt = async {
            loop {
                match self.leader().await? {
                    Leader::Me => match self.confirm_leadership().await {
                        Ok(_) => return Ok(()),
                        Err(Unconfirmed::NotLeader) => self.wait_for_leader_change().await,
                        Err(Unconfirmed::Stopped(e)) => return Err(StoreError::Stopped(e)),
                    },
                    Leader::Other(addr) => {
                        let mut req = tonic::Request::new(ReadIndexRequest {});
                        req.metadata_mut()
                            .insert(FORWARDED, "1".parse().expect("ascii"));
                        match self.leader_client(&addr).read_index(req).await {
                            Ok(resp) => {
                                self.store.wait_applied(resp.into_inner().index).await;
                                return Ok(());
                            }
                            Err(s) if is_retryable(&s) => self.pause_before_retry().await,
                            Err(s) => return Err(remote(s)),
                        }
                    }
                }
            }
        };
        tokio::time::timeout(QUORUM_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(self.quorum_error()))
    }

    /// Commits `batch` only while this member leads, never forwarded (a forwarded write
    /// arrives here; the allocator writes this way too).
    pub async fn propose_as_leader(&self, batch: &StoreBatch) -> Result<u64, StoreError> {
        self.proposals
            .propose(batch.encode_to_vec())
            .await
            .map_err(|refused| match refused {
                Refused::NotLeader => StoreError::NotLeader,
                Refused::Apply(e) => StoreError::Apply(e),
                Refused::Stopped(e) => StoreError::Stopped(e),
            })
    }

    /// Serves a forwarded read barrier: the index a follower must reach.
    pub async fn read_index_as_leader(&self) -> Result<u64, tonic::Status> {
        let confirmed = tokio::time::timeout(QUORUM_TIMEOUT, self.confirm_leadership()).await;
        match confirmed {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(Unconfirmed::NotLeader)) => Err(not_leader()),
            Ok(Err(Unconfirmed::Stopped(e))) => Err(tonic::Status::unavailable(e)),
            Err(_) => Err(tonic::Status::unavailable(
                "this manager could not confirm with a quorum that it still leads; retry",
            )),
        }
    }

    /// Confirms with a quorum that this member still leads, and waits until it has applied
    /// everything committed before the call (openraft's read index, which it returns).
    ///
    /// openraft gives one confirmation a heartbeat interval (100 ms) to hear from a quorum.
    /// On a saturated machine an answer can miss that although no one else leads, and
    /// nothing is wrong with leadership: the members still vote as before. So a round
    /// without a quorum is simply asked again, after a short pause so that peers that are
    /// really gone do not make this spin, until this member learns it no longer leads or the
    /// caller's deadline ([`QUORUM_TIMEOUT`]) ends the wait. Each round is also a heartbeat,
    /// so retrying costs the group nothing it would not spend anyway.
    async fn confirm_leadership(&self) -> Result<u64, Unconfirmed> {
        use openraft::error::CheckIsLeaderError;
        loop {
            match self.raft.ensure_linearizable().await {
                Ok(log_id) => return Ok(log_id.map_or(0, |l| l.index)),
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    tracing::debug!(error = %e, "leadership not confirmed in one round; asking again");
                    tokio::time::sleep(CONFIRM_RETRY).await;
                }
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                    return Err(Unconfirmed::NotLeader)
                }
                Err(e) => return Err(Unconfirmed::Stopped(e.to_string())),
            }
        }
    }

    /// Adds a manager as a voter (leader only): first as a learner that catches up, then as
    /// a voter, so the group never waits on a member that has nothing yet.
    pub async fn add_voter(&self, id: u64, addr: &str) -> Result<(), tonic::Status> {
        let failed = |e| membership_error("add the manager to", e);
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(failed)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Every member of the group (voters and learners): Raft ID and address.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// The Raft IDs of the voting members, as this member knows them.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Takes a member out of the group, one step per call (leader only): a voter becomes a
    /// learner first, and only a learner is removed. In between, the leader keeps
    /// replicating to it, so a demoted manager that is still running sees the configuration
    /// in which it no longer votes before it stops (see [`RaftNode::wait_until_not_voter`]);
    /// removed in one step, it could stop before acknowledging the change, and a group of
    /// two would be left waiting for a vote that never comes.
    pub async fn remove_member(&self, id: u64) -> Result<(), tonic::Status> {
        let failed = |e| membership_error("remove the manager from", e);
        let change = if self.voters().contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, true)
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Whether the learner `id` has the group's current configuration (leader only): it
    /// knows it no longer votes, so removing it loses nothing.
    pub fn learner_caught_up(&self, id: u64) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let Some(config) = metrics.membership_config.log_id() else {
            return false;
        };
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).copied().flatten())
            .is_some_and(|matched| matched.index >= config.index)
    }

    /// Waits, at most `within`, until this member has seen a configuration in which it
    /// does not vote: from then on the group commits without it, and it may stop.
    pub async fn wait_until_not_voter(&self, within: Duration) -> bool {
        let mut metrics = self.raft.metrics();
        let id = self.id;
        tokio::time::timeout(
            within,
            metrics.wait_for(|m| {
                let membership = m.membership_config.membership();
                membership.get_joint_config().len() == 1 && !membership.voter_ids().any(|v| v == id)
            }),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The address of the current leader, for callers that must talk to it directly.
    pub async fn leader_addr(&self) -> Result<Option<String>, StoreError> {
        let leader = tokio::time::timeout(QUORUM_TIMEOUT, self.leader())
            .await
            .unwrap_or_else(|_| Err(self.quorum_error()))?;
        Ok(match leader {
            Leader::Me => None,
            Leader::Other(addr) => Some(addr),
        })
    }

    /// A channel to the node `node_id`'s cluster port, with this manager's certificate.
    pub fn node_channel(&self, addr: &str, node_id: &str) -> Channel {
        self.connector.node_channel(addr, node_id)
    }

    /// A client for the current leader's Raft service.
    pub fn client_for(&self, addr: &str) -> RaftClient<Channel> {
        self.leader_client(addr)
    }

    /// Asks openraft for a snapshot now (the manager decides when, from the cluster's
    /// snapshot interval).
    pub async fn trigger_snapshot(&self) {
        let _ = self.raft.trigger().snapshot().await;
    }

    /// This member's view of the log, for `skiff swarm info` and tests.
    pub fn status(&self) -> proto::RaftStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leads = m.current_leader == Some(self.id) && m.state == ServerState::Leader;
        let members = m.membership_config.membership().nodes().map(|(id, _)| *id);
        proto::RaftStatus {
            entry_format: if leads {
                self.formats.writable(members)
            } else {
                0
            },
            entry_format_understood: self.formats.understood(),
            raft_id: self.id,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            leader_raft_id: m.current_leader.unwrap_or(0),
            voters: m.membership_config.membership().voter_ids().count() as u32,
        }
    }

    /// Before a demoted manager stops: if it leads, takes itself out of the voters, so the
    /// others elect a leader from a committed configuration at once (openraft steps a leader
    /// down once a configuration without it is committed) instead of after an election
    /// timeout, and the group never counts a member that is gone. Best effort, bounded:
    /// if it cannot commit the change, the next leader removes it (`loops::raft_membership`).
    pub async fn step_down(&self) {
        if !self.is_leader() {
            return;
        }
        let leave = self
            .raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([self.id])), true);
        match tokio::time::timeout(QUORUM_TIMEOUT, leave).await {
            Ok(Ok(_)) => {
                let mut metrics = self.raft.metrics();
                let _ = tokio::time::timeout(
                    QUORUM_TIMEOUT,
                    metrics.wait_for(|m| m.state != ServerState::Leader),
                )
                .await;
                tracing::info!("left the Raft voters and handed over the leadership");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not leave the Raft voters; the next leader will remove this manager")
            }
            Err(_) => tracing::warn!(
                "leaving the Raft voters timed out; the next leader will remove this manager"
            ),
        }
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    async fn wait_for_leader_change(&self) {
        let mut rx = self.raft.metrics();
        let before = rx.borrow().current_leader;
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            rx.wait_for(|m| m.current_leader != before),
        )
        .await;
    }

    /// After a forwarded call failed: until the leader changes (the usual cause, a leader
    /// gone), or 100 ms (a connection that failed while the leader stays).
    async fn pause_before_retry(&self) {
        let mut rx = self.raft.metrics();
        let before = rx.borrow().current_leader;
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            rx.wait_for(|m| m.current_leader != before),
        )
        .await;
    }
}

/// The channels to the leaders this member has forwarded to, one per address.
struct LeaderChannels {
    connector: Arc<dyn Connector>,
    channels: std::sync::Mutex<std::collections::HashMap<String, Channel>>,
}

impl LeaderChannels {
    fn client(&self, addr: &str) -> RaftClient<Channel> {
        let channel = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_owned())
            .or_insert_with(|| self.connector.channel(addr))
            .clone();
        RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    }
}

/// How the forwarding queue reaches a leader: one `ProposeMany` call per group; a leader
/// of the previous release, which has no `ProposeMany`, gets one `Propose` per write.
fn forward_through(channels: Arc<LeaderChannels>) -> ForwardCall {
    Arc::new(move |addr: String, batches: Vec<StoreBatch>| {
        let mut client = channels.client(&addr);
        Box::pin(async move {
            let mut req = tonic::Request::new(ProposeManyRequest {
                batches: batches.clone(),
            });
            req.metadata_mut()
                .insert(FORWARDED, "1".parse().expect("ascii"));
            // A leader that hangs (paused, cut off) must not hold this call's place in the
            // queue longer than its writers wait.
            req.set_timeout(QUORUM_TIMEOUT);
            match client.propose_many(req).await {
                Ok(resp) => Ok(resp
                    .into_inner()
                    .outcomes
                    .into_iter()
                    .map(|o| match tonic::Code::from(o.code) {
                        tonic::Code::Ok => Ok(o.index),
                        code => Err(tonic::Status::new(code, o.message)),
                    })
                    .collect()),
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    let one_by_one = batches.into_iter().map(|batch| {
                        let mut client = client.clone();
                        async move {
                            let mut req =
                                tonic::Request::new(ProposeRequest { batch: Some(batch) });
                            req.metadata_mut()
                                .insert(FORWARDED, "1".parse().expect("ascii"));
                            client.propose(req).await.map(|r| r.into_inner().index)
                        }
                    });
                    Ok(futures::future::join_all(one_by_one).await)
                }
                Err(s) => Err(s),
            }
        })
    })
}

/// Whether a forwarded request to the leader may be retried (the leader moved or is down).
fn is_retryable(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => true,
        // A broken connection surfaces as "unknown: transport error", made on this side from
        // the transport's error (a status the leader sent has no source): the leader may be
        // cut off, so retry until the quorum timeout says so clearly.
        tonic::Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// A failed membership change, as a status: "not the leader" is retryable elsewhere.
fn membership_error(
    what: &str,
    e: RaftError<u64, ClientWriteError<u64, BasicNode>>,
) -> tonic::Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => not_leader(),
        e => tonic::Status::unavailable(format!("cannot {what} Raft: {e}")),
    }
}

fn not_leader() -> tonic::Status {
    tonic::Status::unavailable("this manager is no longer the leader; retry")
}

/// Whether a request was already forwarded once.
pub fn was_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

/// A leader's refusal of a forwarded request, as the store reports it.
fn remote(status: tonic::Status) -> StoreError {
    StoreError::Remote {
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// The Raft node is the store's proposer: subsystems write through [`crate::store::Store`]
/// and never name it.
impl Proposer for RaftNode {
    fn propose<'a>(&'a self, batch: &'a StoreBatch) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(RaftNode::propose(self, batch))
    }

    fn propose_as_leader<'a>(
        &'a self,
        batch: &'a StoreBatch,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(RaftNode::propose_as_leader(self, batch))
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(RaftNode::read_barrier(self))
    }

    fn is_leader(&self) -> bool {
        RaftNode::is_leader(self)
    }

    fn until_leader(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut metrics = self.raft.metrics();
        Box::pin(async move {
            metrics
                .wait_for(|m| m.current_leader == Some(m.id) && m.state == ServerState::Leader)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Stopped(e.to_string()))
        })
    }

    fn leader_raft_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    fn leader_term(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        (m.current_leader == Some(m.id) && m.state == ServerState::Leader).then_some(m.current_term)
    }
}
