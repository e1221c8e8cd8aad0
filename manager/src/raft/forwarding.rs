//! The follower's forwarding queue: concurrent writes that reach a follower go to the
//! leader together, in one `Raft.ProposeMany` call, as the leader gathers its own writes
//! into shared entries ([`super::proposals`]).
//!
//! One call per write made a follower's writes cost the leader a stream each (headers,
//! decoding, a task) on top of the entry; at 64 clients that held writes through a
//! follower to about half the leader's rate (issue 20). While a call to the leader is
//! in flight, the writes that arrive meanwhile wait and go out together, as the leader's
//! queue does; writes to another leader (the leader moved) never wait behind them.
//! Each write keeps its own outcome: the leader answers one per batch, in order, exactly
//! what `Propose` would have answered it alone (a committed index, or a refusal as a gRPC
//! code and message), so [`super::RaftNode::propose`] retries each on its own, under its
//! own proposal ID, and the first-outcome rule holds for every write of a group. A call
//! that fails as a whole (the leader gone) fails each of its writes the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::future::BoxFuture;
use prost::Message;
use proto::StoreBatch;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// What became of one forwarded write: its commit index or how it was refused.
pub(super) type Outcome = Result<u64, tonic::Status>;

/// Sends the batches to the leader at the address, in one call; the outcome of each, in
/// order, or the failure of the whole call.
pub(super) type Send = Arc<
    dyn Fn(String, Vec<StoreBatch>) -> BoxFuture<'static, Result<Vec<Outcome>, tonic::Status>>
        + std::marker::Send
        + Sync,
>;

/// Calls to one leader in flight at once. One: the next group gathers for as long as the
/// last call takes, and the leader, whose own queue keeps two entries in flight, still
/// has other work meanwhile. Measured with the control-plane bench (64 clients, pairs of
/// rows through the leader and through a follower): with two calls in flight a call
/// carried 16 writes on average and a follower reached a median 77-86% of the leader's
/// rate; with one, 28 writes a call and 97-105%. Each call costs both ends a stream, a
/// task and a wake-up on two runtimes, so fewer, fuller calls are what a busy machine
/// needs.
const MAX_IN_FLIGHT: usize = 1;
/// Writes gathered into one call at most (the leader refuses more).
pub const MAX_FORWARDED_BATCHES: usize = 512;
/// Bytes gathered into one call at most (a single bigger write still goes, alone), well
/// inside a Raft message.
const MAX_CALL_BYTES: usize = 1024 * 1024;
/// Writers that may wait in the queue before forwarding waits for room.
const QUEUE: usize = 4096;

struct Forward {
    /// The leader's address when the writer looked.
    leader: String,
    batch: StoreBatch,
    reply: oneshot::Sender<Outcome>,
}

/// The queue; its task ends when it is dropped.
pub(super) struct Forwarder {
    tx: mpsc::Sender<Forward>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Starts the queue, which calls the leader through `send`.
    pub(super) fn start(send: Send) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            task: tokio::spawn(run(send, rx)),
        }
    }

    /// Forwards `batch` to the leader at `leader`, with the writes waiting beside it.
    pub(super) async fn forward(&self, leader: String, batch: StoreBatch) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let stopped = || tonic::Status::cancelled("the forwarding queue has stopped");
        self.tx
            .send(Forward {
                leader,
                batch,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(send: Send, mut rx: mpsc::Receiver<Forward>) {
    // Owns the calls in flight, each answering with the leader it called: dropping it
    // (the queue stopped) drops their writers' replies, which then see the queue stopped.
    let mut in_flight: JoinSet<String> = JoinSet::new();
    let mut calls: HashMap<String, usize> = HashMap::new();
    // Writes waiting for a call, in arrival order. Kept apart by leader so that writes to
    // a new leader never wait behind calls to an old one that hangs (a paused manager).
    let mut waiting: VecDeque<Forward> = VecDeque::new();
    let mut open = true;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            finished(&mut calls, done);
        }
        while let Ok(next) = rx.try_recv() {
            waiting.push_back(next);
        }
        let mut sent = false;
        while let Some(leader) = waiting
            .iter()
            .map(|f| &f.leader)
            .find(|l| calls.get(*l).copied().unwrap_or(0) < MAX_IN_FLIGHT)
            .cloned()
        {
            let group = gather(&leader, &mut waiting);
            *calls.entry(leader.clone()).or_default() += 1;
            in_flight.spawn(call(send.clone(), leader, group));
            sent = true;
        }
        if sent {
            continue;
        }
        if !open && waiting.is_empty() {
            break;
        }
        // Nothing to send now: wait for a call to end or a write to arrive.
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => finished(&mut calls, done),
            next = rx.recv(), if open => match next {
                Some(next) => waiting.push_back(next),
                None => open = false,
            },
            else => break,
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Counts a call to a leader as ended.
fn finished(calls: &mut HashMap<String, usize>, done: Result<String, tokio::task::JoinError>) {
    let Ok(leader) = done else {
        return;
    };
    if let Some(n) = calls.get_mut(&leader) {
        *n -= 1;
        if *n == 0 {
            calls.remove(&leader);
        }
    }
}

/// The writes waiting for `leader`, oldest first, within the limits of one call (at
/// least one, however big).
fn gather(leader: &str, waiting: &mut VecDeque<Forward>) -> Vec<Forward> {
    let mut group = Vec::new();
    let mut bytes = 0;
    let mut rest = VecDeque::with_capacity(waiting.len());
    for forward in waiting.drain(..) {
        let fits =
            group.is_empty() || (group.len() < MAX_FORWARDED_BATCHES && bytes < MAX_CALL_BYTES);
        if forward.leader == leader && fits {
            bytes += forward.batch.encoded_len();
            group.push(forward);
        } else {
            rest.push_back(forward);
        }
    }
    *waiting = rest;
    group
}

/// Sends `group` in one call and answers each writer with its own outcome.
async fn call(send: Send, leader: String, group: Vec<Forward>) -> String {
    let (batches, replies): (Vec<_>, Vec<_>) =
        group.into_iter().map(|f| (f.batch, f.reply)).unzip();
    let writes = batches.len();
    let outcomes = match send(leader.clone(), batches).await {
        Ok(outcomes) if outcomes.len() == writes => outcomes,
        Ok(outcomes) => {
            let wrong = tonic::Status::internal(format!(
                "the leader answered {} outcomes for {writes} forwarded writes",
                outcomes.len()
            ));
            vec![Err(wrong); writes]
        }
        Err(failed) => vec![Err(failed); writes],
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
    leader
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A batch that names its writer in its proposal ID.
    fn batch(writer: usize) -> StoreBatch {
        StoreBatch {
            proposal: format!("w{writer}"),
            ..Default::default()
        }
    }

    /// The calls a fake leader received: the address called and the writers of the batches.
    type Calls = Arc<Mutex<Vec<(String, Vec<String>)>>>;

    /// A leader that commits each batch at 1000 plus its writer's number and records every
    /// call (address and writers), unless `fail` says how the whole call fails.
    fn leader(calls: Calls, fail: Option<tonic::Status>) -> Send {
        Arc::new(move |addr, batches: Vec<StoreBatch>| {
            let writers: Vec<String> = batches.iter().map(|b| b.proposal.clone()).collect();
            calls.lock().unwrap().push((addr, writers.clone()));
            let fail = fail.clone();
            Box::pin(async move {
                match fail {
                    Some(status) => Err(status),
                    None => Ok(writers
                        .iter()
                        .map(|w| Ok(1000 + w[1..].parse::<u64>().unwrap()))
                        .collect()),
                }
            })
        })
    }

    /// Forwards the writes of `writers` at once, each to the leader `to(writer)`.
    async fn forward_all(
        forwarder: &Forwarder,
        writers: std::ops::Range<usize>,
        to: impl Fn(usize) -> &'static str,
    ) -> Vec<Outcome> {
        // Every write is queued before the queue's task first runs (one thread): they
        // wait together, as concurrent writers on a busy follower do.
        futures::future::join_all(writers.map(|w| forwarder.forward(to(w).into(), batch(w)))).await
    }

    #[tokio::test]
    async fn writes_that_wait_together_go_in_one_call_each_with_its_own_outcome() {
        let calls = Arc::default();
        let forwarder = Forwarder::start(leader(Arc::clone(&calls), None));
        let outcomes = forward_all(&forwarder, 0..40, |_| "10.0.0.1:2377").await;
        for (w, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.expect("committed"), 1000 + w as u64);
        }
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let expected: Vec<String> = (0..40).map(|w| format!("w{w}")).collect();
        assert_eq!(calls[0], ("10.0.0.1:2377".into(), expected));
    }

    #[tokio::test]
    async fn a_failed_call_fails_each_of_its_writes_the_same_way() {
        let calls = Arc::default();
        let gone = tonic::Status::unavailable("the leader is gone");
        let forwarder = Forwarder::start(leader(Arc::clone(&calls), Some(gone)));
        let outcomes = forward_all(&forwarder, 0..10, |_| "10.0.0.1:2377").await;
        assert_eq!(outcomes.len(), 10);
        for outcome in outcomes {
            let status = outcome.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), "the leader is gone");
        }
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn writes_for_different_leaders_never_share_a_call() {
        let calls = Arc::default();
        let forwarder = Forwarder::start(leader(Arc::clone(&calls), None));
        // The leader moved while writers queued: 0-9 saw the old, 10-19 the new one.
        let outcomes = forward_all(&forwarder, 0..20, |w| {
            if w < 10 {
                "10.0.0.1:2377"
            } else {
                "10.0.0.2:2377"
            }
        })
        .await;
        for (w, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.expect("committed"), 1000 + w as u64);
        }
        let calls = calls.lock().unwrap();
        for (addr, writers) in calls.iter() {
            for writer in writers {
                let w: usize = writer[1..].parse().unwrap();
                assert_eq!(
                    addr,
                    if w < 10 {
                        "10.0.0.1:2377"
                    } else {
                        "10.0.0.2:2377"
                    }
                );
            }
        }
        assert_eq!(calls.len(), 2, "{calls:?}");
    }

    #[tokio::test]
    async fn writes_to_a_new_leader_never_wait_behind_calls_to_a_hung_one() {
        let calls: Calls = Arc::default();
        let recorded = Arc::clone(&calls);
        let send: Send = Arc::new(move |addr: String, batches: Vec<StoreBatch>| {
            let writers = batches.iter().map(|b| b.proposal.clone()).collect();
            recorded.lock().unwrap().push((addr.clone(), writers));
            Box::pin(async move {
                if addr == "10.0.0.1:2377" {
                    // A paused leader: the call never ends.
                    futures::future::pending::<()>().await;
                }
                Ok(batches.iter().map(|_| Ok(7)).collect())
            })
        });
        let forwarder = Arc::new(Forwarder::start(send));
        // Writes to the hung leader, one at a time, until every call it may have is taken
        // and one more write waits.
        let mut hung = Vec::new();
        for w in 0..=MAX_IN_FLIGHT {
            let forwarder = Arc::clone(&forwarder);
            hung.push(tokio::spawn(async move {
                forwarder.forward("10.0.0.1:2377".into(), batch(w)).await
            }));
            while calls.lock().unwrap().len() < (w + 1).min(MAX_IN_FLIGHT) {
                tokio::task::yield_now().await;
            }
        }
        let outcomes = forward_all(&forwarder, 10..20, |_| "10.0.0.2:2377").await;
        assert!(outcomes.into_iter().all(|o| matches!(o, Ok(7))));
        let calls = calls.lock().unwrap();
        let to_hung = calls.iter().filter(|(a, _)| a == "10.0.0.1:2377").count();
        assert_eq!(to_hung, MAX_IN_FLIGHT, "{calls:?}");
        for write in hung {
            write.abort();
        }
    }

    #[tokio::test]
    async fn an_answer_with_the_wrong_number_of_outcomes_fails_every_write() {
        let send: Send = Arc::new(|_, _| Box::pin(async { Ok(vec![Ok(1)]) }));
        let forwarder = Forwarder::start(send);
        let outcomes = forward_all(&forwarder, 0..3, |_| "10.0.0.1:2377").await;
        for outcome in outcomes {
            assert_eq!(outcome.expect_err("refused").code(), tonic::Code::Internal);
        }
    }

    #[tokio::test]
    async fn more_writes_than_one_call_carries_go_in_several() {
        let calls = Arc::default();
        let forwarder = Forwarder::start(leader(Arc::clone(&calls), None));
        let n = MAX_FORWARDED_BATCHES + 10;
        let outcomes = forward_all(&forwarder, 0..n, |_| "10.0.0.1:2377").await;
        assert!(outcomes.into_iter().all(|o| o.is_ok()));
        let calls = calls.lock().unwrap();
        assert!(calls.iter().all(|(_, w)| w.len() <= MAX_FORWARDED_BATCHES));
        assert_eq!(calls.iter().map(|(_, w)| w.len()).sum::<usize>(), n);
    }
}
