//! The seam between the store and replication (SwarmKit's `state.Proposer`): how a batch
//! reaches a quorum, how a read waits for what is committed, and who leads. The Raft node
//! implements it; the store's tests use a fake. Nothing else names it: subsystems use
//! [`super::Store`], which is built over it.

use futures::future::BoxFuture;
use proto::StoreBatch;

use super::StoreError;

/// Commits batches and reports leadership for the store.
pub trait Proposer: Send + Sync + 'static {
    /// Commits `batch` on a quorum, forwarding it to the leader if this manager does not
    /// lead, and returns its log index once this manager has applied it (so a read that
    /// follows here sees the write).
    fn propose<'a>(&'a self, batch: &'a StoreBatch) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Commits `batch` only while this manager leads, never forwarded: a deposed leader's
    /// write must fail rather than land after its successor decided from what it read.
    fn propose_as_leader<'a>(
        &'a self,
        batch: &'a StoreBatch,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Waits until this manager has applied every entry committed before the call, so what
    /// it reads next is at least as new as any acknowledged write anywhere in the cluster.
    fn read_barrier(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether this manager leads now.
    fn is_leader(&self) -> bool;

    /// The Raft term this manager leads in, if it leads now: a new term is a new
    /// leadership, even one that followed an earlier term of this manager's too quickly for
    /// a poll of [`Proposer::is_leader`] to see the gap.
    fn leader_term(&self) -> Option<u64>;

    /// Resolves once this manager leads (at once if it does); fails once replication stops.
    fn until_leader(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The Raft ID of the leader this manager knows of (`ManagerStatus.raft_id` names the
    /// same IDs in the store).
    fn leader_raft_id(&self) -> Option<u64>;
}
