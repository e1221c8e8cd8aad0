//! How the leader's loops run and commit. The orchestrator, the allocator and the managers'
//! reachability act only while this manager leads, react to the watch stream (nothing polls
//! the store) and commit what they decide in batches; this module does that part once.
//!
//! A loop waits until this manager leads, subscribes to the watch stream, and runs a round;
//! then it waits for the next committed change, or for as long as the round asked if
//! nothing changes. A short debounce gathers a burst of changes (a node's worth of status
//! reports) into one round, and what arrived meanwhile is drained: one round covers it all.
//! After a long round the loop gathers for as long as the round took (a second at most),
//! so no loop takes more than half of a saturated leader; a round that asks to run again at
//! once (its work is bounded, and there is more) goes on after reading what was committed
//! meanwhile. Either way the loop reads every event before its next round, so the watch
//! stream never holds a backlog for it.
//! A loop that wants to know what changed (the orchestrator reconciles only that) sees every
//! event it is given ([`Rounds::observe`]) and hears when it fell behind ([`Rounds::lagged`]).
//! Losing leadership ends the rounds until it comes back.

use std::future::Future;
use std::time::{Duration, Instant};

use proto::StoreAction;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use crate::store::{Store, StoreError, WatchEvent};

/// Changes committed per Raft entry: large enough to place thousands of tasks a second,
/// small enough to stay far below the message size limit.
pub const BATCH: usize = 1000;
/// How long to gather changes before a round, at the least.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// The longest a loop gathers changes after a long round.
const MAX_REST: Duration = Duration::from_secs(1);
/// How long to wait before trying again after a failed read barrier.
const RETRY: Duration = Duration::from_millis(100);

/// The work of a leader-only loop, one round at a time.
pub trait Rounds: Send {
    /// Whether to pass a read barrier on becoming leader, before the first round: so the
    /// round reads everything earlier leaders committed (the allocator, which must not hand
    /// out what they did).
    const BARRIER: bool = false;

    /// Leadership starts: forget what an earlier term learnt.
    fn start(&mut self) {}

    /// A committed change, seen before the next round. Every event after the subscription
    /// that precedes the first round comes here, in commit order, unless [`Rounds::lagged`]
    /// says some were lost.
    fn observe(&mut self, _event: &WatchEvent) {}

    /// The watch stream dropped events this loop did not read in time: what changed is
    /// unknown, so the next round must look at everything.
    fn lagged(&mut self) {}

    /// One round. Returns how long to wait for a change before the next round at the most.
    fn round(&mut self, store: &Store) -> impl Future<Output = Duration> + Send;
}

/// Runs `rounds` on this manager while it leads, until `stop` changes. Runs on every
/// manager, so a new leader starts at once.
pub async fn run<R: Rounds>(store: Store, mut stop: watch::Receiver<bool>, mut rounds: R) {
    loop {
        tokio::select! {
            leading = store.until_leader() => if leading.is_err() { return },
            _ = stop.changed() => return,
        }
        let ((), mut events) = store.subscribe(|_| ());
        if R::BARRIER {
            if let Err(e) = store.read_barrier().await {
                tracing::debug!(error = %e, "read barrier failed on becoming leader; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        rounds.start();
        while store.is_leader() {
            let started = Instant::now();
            let wait = rounds.round(&store).await;
            // Gather changes at least as long as the round took (up to MAX_REST): a loop
            // whose rounds are long keeps at most half the time, and what arrives meanwhile
            // makes one bigger round, so heartbeats, assignments and the other loops still
            // get their share of a saturated leader.
            // A round that asked to run again at once (more work than one round may do)
            // goes on after reading what was committed meanwhile: its rounds are bounded,
            // and each of them waits for its commits.
            let gather = if wait.is_zero() {
                Duration::ZERO
            } else {
                started.elapsed().clamp(DEBOUNCE, MAX_REST)
            };
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => rounds.observe(&event),
                    Err(RecvError::Lagged(_)) => rounds.lagged(),
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            tokio::time::sleep(gather).await;
            // Everything committed meanwhile is read before the next round, so the watch
            // stream keeps no backlog for this loop.
            loop {
                match events.try_recv() {
                    Ok(event) => rounds.observe(&event),
                    Err(TryRecvError::Lagged(_)) => rounds.lagged(),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        }
    }
}

/// Commits `actions` in order, in batches of at most [`BATCH`]; stops at the first failure
/// (a conflict says someone else wrote: decide again from what the store now says).
pub async fn commit(store: &Store, actions: Vec<StoreAction>) -> Result<(), StoreError> {
    for batch in batches(actions) {
        store.write(batch).await?;
    }
    Ok(())
}

/// [`commit`], only while this manager leads (see [`Store::write_as_leader`]).
pub async fn commit_as_leader(store: &Store, actions: Vec<StoreAction>) -> Result<(), StoreError> {
    for batch in batches(actions) {
        store.write_as_leader(batch).await?;
    }
    Ok(())
}

fn batches(actions: Vec<StoreAction>) -> impl Iterator<Item = Vec<StoreAction>> {
    let mut actions = actions.into_iter();
    std::iter::from_fn(move || {
        let batch: Vec<StoreAction> = actions.by_ref().take(BATCH).collect();
        (!batch.is_empty()).then_some(batch)
    })
}

#[cfg(test)]
mod tests;
