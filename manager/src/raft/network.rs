//! openraft's network over the `Raft` gRPC service, on the cluster port's mutual TLS.
//!
//! openraft messages travel as bincode inside [`proto::RaftPayload`]; the replies carry the
//! remote's `Result` so Raft-level errors (such as a higher vote) come back intact. Every
//! successful exchange is recorded in [`PeerHealth`], from which the leader derives which
//! managers are reachable, and the Raft entry format the peer reports it reads in
//! [`EntryFormats`], from which the leader derives the format it may write.
//!
//! One channel per peer address, made once and shared by every client openraft asks for:
//! openraft makes a client per replication stream but also one per vote and one per
//! leadership confirmation (a read barrier). A fresh channel means a fresh TCP connection
//! and TLS handshake inside the confirmation's deadline (one heartbeat interval), which a
//! busy machine misses, so reads failed and leaders looked unreachable (issue 20).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use proto::raft_client::RaftClient;
use proto::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::format::EntryFormats;
use super::types::TypeConfig;
use crate::transport::Connector;

/// When each peer last answered this node.
#[derive(Clone, Default)]
pub struct PeerHealth {
    last_ok: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl PeerHealth {
    fn record(&self, peer: u64) {
        let mut map = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(peer, Instant::now());
    }

    /// Whether `peer` answered within `within`.
    pub fn answered_within(&self, peer: u64, within: Duration) -> bool {
        let map = self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&peer).is_some_and(|t| t.elapsed() <= within)
    }
}

/// Makes a client per peer.
pub struct Network {
    connector: Arc<dyn Connector>,
    health: PeerHealth,
    formats: Arc<EntryFormats>,
    /// The channel to each peer address; a channel reconnects by itself after a failure.
    channels: HashMap<String, Channel>,
}

impl Network {
    /// A network dialling through `connector`, recording peers' answers in `health` and
    /// the entry formats they report in `formats`.
    pub fn new(
        connector: Arc<dyn Connector>,
        health: PeerHealth,
        formats: Arc<EntryFormats>,
    ) -> Self {
        Self {
            connector,
            health,
            formats,
            channels: HashMap::new(),
        }
    }

    /// The channel to `addr`, made on first use.
    fn channel(&mut self, addr: &str) -> Channel {
        self.channels
            .entry(addr.to_owned())
            .or_insert_with(|| self.connector.channel(addr))
            .clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = RaftClient::new(self.channel(&node.addr))
            .max_decoding_message_size(super::MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_RAFT_MESSAGE_BYTES);
        PeerClient {
            target,
            client,
            health: self.health.clone(),
            formats: self.formats.clone(),
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: u64,
    client: RaftClient<Channel>,
    health: PeerHealth,
    formats: Arc<EntryFormats>,
}

type Rpc<E> = RPCError<u64, BasicNode, E>;

fn encode<T: Serialize, E: std::error::Error>(
    value: &T,
    entry_format: u32,
) -> Result<RaftPayload, Rpc<E>> {
    bincode::serialize(value)
        .map(|data| RaftPayload { data, entry_format })
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

fn decode<T: DeserializeOwned, E: std::error::Error>(payload: &RaftPayload) -> Result<T, Rpc<E>> {
    bincode::deserialize(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// A transport failure: unreachable peers make openraft back off; other failures retry.
fn transport_error<E: std::error::Error>(status: tonic::Status) -> Rpc<E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        request: &Req,
        option: &RPCOption,
        method: Method,
    ) -> Result<Resp, Rpc<RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut req = tonic::Request::new(encode(request, self.formats.understood())?);
        // openraft gives every call `hard_ttl` and counts a call that runs out of it as a
        // timeout, which it retries at the next heartbeat. tonic's own deadline, had it fired
        // first, would count as an unreachable peer, and openraft stops sending to those for
        // a backoff: a follower slow for one heartbeat heard nothing for three, most of the
        // way to standing for election (issue 20). So tonic's deadline comes later.
        req.set_timeout(option.hard_ttl() + option.hard_ttl() / 2);
        let reply = match method {
            Method::Append => self.client.append_entries(req).await,
            Method::Vote => self.client.vote(req).await,
            Method::Snapshot => self.client.install_snapshot(req).await,
        }
        .map_err(transport_error)?;
        self.health.record(self.target);
        self.formats
            .record(self.target, reply.get_ref().entry_format);
        let result: Result<Resp, RaftError<u64, E>> = decode(reply.get_ref())?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, Rpc<RaftError<u64>>> {
        self.call(&rpc, &option, Method::Append).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, Rpc<RaftError<u64, InstallSnapshotError>>> {
        self.call(&rpc, &option, Method::Snapshot).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, Rpc<RaftError<u64>>> {
        self.call(&rpc, &option, Method::Vote).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Short: a restarted manager should be caught up within a heartbeat or two.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the channels it makes.
    #[derive(Default)]
    struct Counting {
        made: AtomicUsize,
    }

    impl Connector for Counting {
        fn channel(&self, _: &str) -> Channel {
            self.made.fetch_add(1, Ordering::SeqCst);
            Channel::from_static("http://127.0.0.1:9").connect_lazy()
        }

        fn node_channel(&self, addr: &str, _: &str) -> Channel {
            self.channel(addr)
        }
    }

    #[tokio::test]
    async fn every_client_of_a_peer_shares_one_channel() {
        let connector = Arc::new(Counting::default());
        let mut network = Network::new(
            connector.clone(),
            PeerHealth::default(),
            Arc::new(EntryFormats::new(1, super::super::format::NEWEST)),
        );
        // A replication stream, then votes and leadership confirmations to the same peers.
        for _ in 0..5 {
            network
                .new_client(2, &BasicNode::new("127.0.0.2:2377"))
                .await;
            network
                .new_client(3, &BasicNode::new("127.0.0.3:2377"))
                .await;
        }
        assert_eq!(connector.made.load(Ordering::SeqCst), 2);
        // A peer that moved gets a channel to its new address.
        network
            .new_client(3, &BasicNode::new("127.0.0.4:2377"))
            .await;
        assert_eq!(connector.made.load(Ordering::SeqCst), 3);
    }

    /// Dials one address, a peer that takes the connection and never answers.
    struct Silent(String);

    impl Connector for Silent {
        fn channel(&self, _: &str) -> Channel {
            Channel::from_shared(format!("http://{}", self.0))
                .unwrap()
                .connect_lazy()
        }

        fn node_channel(&self, addr: &str, _: &str) -> Channel {
            self.channel(addr)
        }
    }

    /// A call to a peer that does not answer outlasts openraft's own timeout for it
    /// (`hard_ttl`), so openraft counts it as a timeout and retries at the next heartbeat,
    /// rather than as an unreachable peer it stops sending to for a backoff. On tokio's
    /// paused clock: the deadlines are compared, not measured.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_given_longer_than_openraft_gives_the_call() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut network = Network::new(
            Arc::new(Silent(addr.clone())),
            PeerHealth::default(),
            Arc::new(EntryFormats::new(1, super::super::format::NEWEST)),
        );
        let mut client = network.new_client(2, &BasicNode::new(addr)).await;
        let ttl = Duration::from_millis(100);
        let request = AppendEntriesRequest {
            vote: openraft::Vote::new(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        };
        let started = tokio::time::Instant::now();
        let result = client.append_entries(request, RPCOption::new(ttl)).await;
        assert!(
            matches!(result, Err(RPCError::Unreachable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() > ttl,
            "tonic gave up after {:?}, no later than openraft's {ttl:?}",
            started.elapsed()
        );
        drop(listener);
    }
}
