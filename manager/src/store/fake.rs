//! A proposer without Raft, for tests of the store handle and of what is built on it: a
//! write commits at once, as on a lone manager, and a test can stage what a cluster does to
//! a writer (someone else's write just before ours, a lost quorum, a change of leader).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use proto::StoreBatch;
use tokio::sync::watch;

use super::{Applier, ApplyError, Proposer, Store, StoreError, WatchEvent};

/// This manager's Raft ID in the fake.
pub(crate) const ME: u64 = 1;

/// Commits by applying to its own store at once.
pub(crate) struct FakeProposer {
    applier: Applier,
    index: Mutex<u64>,
    /// The leader's Raft ID.
    leader: watch::Sender<Option<u64>>,
    /// Batches someone else commits just before our next proposal.
    races: Mutex<VecDeque<StoreBatch>>,
    /// Errors our next proposals fail with, before reaching the store.
    write_failures: Mutex<VecDeque<StoreError>>,
    /// Errors our next read barriers fail with.
    barrier_failures: Mutex<VecDeque<StoreError>>,
    /// Our proposals, in order.
    proposed: Mutex<Vec<StoreBatch>>,
    barriers: AtomicUsize,
    /// The Raft term: every change of leader starts a new one.
    term: AtomicU64,
}

impl FakeProposer {
    /// An empty store that this manager leads.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            applier: Applier::new(),
            index: Mutex::new(0),
            leader: watch::Sender::new(Some(ME)),
            races: Mutex::default(),
            write_failures: Mutex::default(),
            barrier_failures: Mutex::default(),
            proposed: Mutex::default(),
            barriers: AtomicUsize::new(0),
            term: AtomicU64::new(1),
        })
    }

    /// The handle subsystems would get.
    pub(crate) fn store(self: &Arc<Self>) -> Store {
        Store::new(self.applier.local(), self.clone())
    }

    /// Commits `batch` as someone else's write.
    pub(crate) fn commit(&self, batch: &StoreBatch) -> Result<u64, ApplyError> {
        let mut index = self.index.lock().unwrap();
        *index += 1;
        let mut applying = self.applier.lock();
        let events = applying.store().apply(batch, *index)?;
        applying.publish(WatchEvent::Changes {
            index: *index,
            events,
        });
        drop(applying);
        self.applier.applied(*index);
        Ok(*index)
    }

    /// Someone else commits `batch` just before our next proposal.
    pub(crate) fn race(&self, batch: StoreBatch) {
        self.races.lock().unwrap().push_back(batch);
    }

    /// Our next proposal fails with `e`.
    pub(crate) fn fail_write(&self, e: StoreError) {
        self.write_failures.lock().unwrap().push_back(e);
    }

    /// Our next read barrier fails with `e`.
    pub(crate) fn fail_barrier(&self, e: StoreError) {
        self.barrier_failures.lock().unwrap().push_back(e);
    }

    /// Makes `leader` (a Raft ID) the leader, or nobody.
    pub(crate) fn set_leader(&self, leader: Option<u64>) {
        self.term.fetch_add(1, Ordering::SeqCst);
        self.leader.send_replace(leader);
    }

    /// Our proposals so far.
    pub(crate) fn proposed(&self) -> Vec<StoreBatch> {
        self.proposed.lock().unwrap().clone()
    }

    /// How many read barriers we passed or failed.
    pub(crate) fn barriers(&self) -> usize {
        self.barriers.load(Ordering::SeqCst)
    }

    fn propose_now(&self, batch: &StoreBatch) -> Result<u64, StoreError> {
        while let Some(race) = self.races.lock().unwrap().pop_front() {
            self.commit(&race).expect("a staged race applies");
        }
        self.proposed.lock().unwrap().push(batch.clone());
        if let Some(e) = self.write_failures.lock().unwrap().pop_front() {
            return Err(e);
        }
        Ok(self.commit(batch)?)
    }
}

impl Proposer for FakeProposer {
    fn propose<'a>(&'a self, batch: &'a StoreBatch) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { self.propose_now(batch) })
    }

    fn propose_as_leader<'a>(
        &'a self,
        batch: &'a StoreBatch,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if !self.is_leader() {
                return Err(StoreError::NotLeader);
            }
            self.propose_now(batch)
        })
    }

    fn read_barrier(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.barriers.fetch_add(1, Ordering::SeqCst);
        let failure = self.barrier_failures.lock().unwrap().pop_front();
        Box::pin(async move { failure.map_or(Ok(()), Err) })
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow() == Some(ME)
    }

    fn until_leader(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut leader = self.leader.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this cannot fail.
            let _ = leader.wait_for(|l| *l == Some(ME)).await;
            Ok(())
        })
    }

    fn leader_raft_id(&self) -> Option<u64> {
        *self.leader.borrow()
    }

    fn leader_term(&self) -> Option<u64> {
        self.is_leader().then(|| self.term.load(Ordering::SeqCst))
    }
}
