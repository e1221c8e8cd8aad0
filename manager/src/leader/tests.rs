use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proto::{Meta, Service, StoreBatch};
use tokio::sync::mpsc;

use super::*;
use crate::store::fake::{FakeProposer, ME};
use crate::store::tests::service;
use crate::store::{create, StoreError, StoredObject};

fn services(count: usize) -> Vec<StoreAction> {
    (0..count)
        .map(|i| create(service(&format!("s{i}"), &format!("web-{i}"), 0)))
        .collect()
}

#[tokio::test]
async fn a_commit_goes_out_in_batches_of_at_most_batch_changes_in_order() {
    let fake = FakeProposer::new();
    commit(&fake.store(), services(2 * BATCH + 500))
        .await
        .expect("committed");
    let sizes: Vec<usize> = fake.proposed().iter().map(|b| b.actions.len()).collect();
    assert_eq!(sizes, [BATCH, BATCH, 500]);
    let store = fake.store();
    let store = store.read();
    assert_eq!(store.count::<Service>(), 2 * BATCH + 500);
    assert_eq!(store.get::<Service>("s0").map(|s| s.version()), Some(1));
    assert_eq!(store.get::<Service>("s2499").map(|s| s.version()), Some(3));
}

#[tokio::test]
async fn a_commit_stops_at_the_first_batch_that_fails() {
    let fake = FakeProposer::new();
    fake.fail_write(StoreError::Joining);
    let failed = commit(&fake.store(), services(BATCH + 1)).await;
    assert!(matches!(failed, Err(StoreError::Joining)));
    assert_eq!(fake.proposed().len(), 1);
}

#[tokio::test]
async fn a_leader_only_commit_writes_nothing_on_a_follower() {
    let fake = FakeProposer::new();
    fake.set_leader(Some(ME + 1));
    let failed = commit_as_leader(&fake.store(), services(1)).await;
    assert!(matches!(failed, Err(StoreError::NotLeader)));
    assert_eq!(fake.store().read().count::<Service>(), 0);
}

/// Reports each round; waits an hour between rounds unless the store changes.
struct Reporter {
    rounds: mpsc::UnboundedSender<&'static str>,
    starts: Arc<AtomicUsize>,
    /// The index of each change it was shown.
    observed: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Rounds for Reporter {
    const BARRIER: bool = true;

    fn start(&mut self) {
        self.starts.fetch_add(1, Ordering::SeqCst);
    }

    fn observe(&mut self, event: &WatchEvent) {
        if let WatchEvent::Changes { index, .. } = event {
            self.observed.lock().unwrap().push(*index);
        }
    }

    async fn round(&mut self, _: &Store) -> Duration {
        let _ = self.rounds.send("round");
        Duration::from_secs(3600)
    }
}

/// A loop of [`Reporter`] rounds over `fake`'s store.
struct Running {
    rounds: mpsc::UnboundedReceiver<&'static str>,
    starts: Arc<AtomicUsize>,
    observed: Arc<std::sync::Mutex<Vec<u64>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(fake: &Arc<FakeProposer>) -> Self {
        let (tx, rounds) = mpsc::unbounded_channel();
        let starts = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let observed = Arc::default();
        let reporter = Reporter {
            rounds: tx,
            starts: starts.clone(),
            observed: Arc::clone(&observed),
        };
        let task = tokio::spawn(run(fake.store(), stop_rx, reporter));
        Self {
            rounds,
            starts,
            observed,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).expect("the loop listens");
        self.task.await.expect("the loop ends on stop");
    }
}

#[tokio::test]
async fn a_leader_loop_runs_once_leading_again_after_each_change_and_ends_on_stop() {
    let fake = FakeProposer::new();
    fake.set_leader(None);
    let mut running = Running::start(&fake);
    let (rounds, starts) = (&mut running.rounds, running.starts.clone());

    fake.set_leader(Some(ME));
    assert_eq!(rounds.recv().await, Some("round"));
    assert_eq!(fake.barriers(), 1, "a barrier before the first round");
    assert_eq!(starts.load(Ordering::SeqCst), 1);

    // A burst of changes: another round, which was shown every change first, in order.
    let mut indexes = Vec::new();
    for i in 0..3 {
        let created = create(Service {
            meta: Some(Meta {
                id: format!("x{i}"),
                ..Default::default()
            }),
            ..Default::default()
        });
        let index = fake
            .commit(&StoreBatch {
                actions: vec![created],
                ..Default::default()
            })
            .expect("commit");
        indexes.push(index);
    }
    assert_eq!(rounds.recv().await, Some("round"));
    // The debounce may split the burst over two rounds; each round follows what it was shown.
    while running.observed.lock().unwrap().len() < indexes.len() {
        assert_eq!(running.rounds.recv().await, Some("round"));
    }
    assert_eq!(*running.observed.lock().unwrap(), indexes);
    running.stop().await;
}

#[tokio::test]
async fn a_leader_loop_that_cannot_pass_the_barrier_waits_and_tries_again() {
    let fake = FakeProposer::new();
    fake.fail_barrier(StoreError::Joining);
    let mut running = Running::start(&fake);
    assert_eq!(running.rounds.recv().await, Some("round"));
    assert_eq!(fake.barriers(), 2);
    running.stop().await;
}

/// Holds each round until released; counts what it was shown.
struct Held {
    entered: mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Notify>,
    observed: Arc<AtomicUsize>,
    lagged: Arc<AtomicUsize>,
    /// What each round asks for: how long to wait for a change.
    wait: Duration,
}

impl Rounds for Held {
    fn observe(&mut self, _: &WatchEvent) {
        self.observed.fetch_add(1, Ordering::SeqCst);
    }

    fn lagged(&mut self) {
        self.lagged.fetch_add(1, Ordering::SeqCst);
    }

    async fn round(&mut self, _: &Store) -> Duration {
        let _ = self.entered.send(());
        self.release.notified().await;
        self.wait
    }
}

/// A loop of [`Held`] rounds over `fake`'s store, each asking to wait `wait`.
struct HeldLoop {
    entered: mpsc::UnboundedReceiver<()>,
    release: Arc<tokio::sync::Notify>,
    observed: Arc<AtomicUsize>,
    lagged: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldLoop {
    fn start(fake: &Arc<FakeProposer>, wait: Duration) -> Self {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Notify::new());
        let observed = Arc::new(AtomicUsize::new(0));
        let lagged = Arc::new(AtomicUsize::new(0));
        let held = Held {
            entered: entered_tx,
            release: Arc::clone(&release),
            observed: Arc::clone(&observed),
            lagged: Arc::clone(&lagged),
            wait,
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(fake.store(), stop_rx, held));
        Self {
            entered,
            release,
            observed,
            lagged,
            stop,
            task,
        }
    }

    /// Commits `count` changes, one per batch.
    fn commit(fake: &FakeProposer, count: usize) {
        for action in services(count) {
            fake.commit(&StoreBatch {
                actions: vec![action],
                ..Default::default()
            })
            .expect("commit");
        }
    }

    async fn stop(self) {
        self.release.notify_one();
        self.stop.send(true).expect("the loop listens");
        self.task.await.expect("the loop ends on stop");
    }
}

#[tokio::test]
async fn a_loop_that_falls_behind_the_watch_stream_is_told_so_and_shown_what_remains() {
    let fake = FakeProposer::new();
    let mut held = HeldLoop::start(&fake, Duration::from_secs(3600));
    held.entered.recv().await.expect("a first round");
    // While the round runs, more changes than the watch stream keeps (4,096).
    const CHANGES: usize = 5_000;
    HeldLoop::commit(&fake, CHANGES);
    held.release.notify_one();
    held.entered
        .recv()
        .await
        .expect("a round after the changes");
    assert_eq!(
        held.lagged.load(Ordering::SeqCst),
        1,
        "told it fell behind once"
    );
    let shown = held.observed.load(Ordering::SeqCst);
    assert!(
        shown > 0 && shown < CHANGES,
        "shown the {shown} changes the stream still held"
    );
    held.stop().await;
}

/// A round that asks to run again at once (it had more work than one round may do) is
/// followed by one that was shown everything committed meanwhile: the stream keeps no
/// backlog for the loop, however soon its next round comes.
#[tokio::test]
async fn a_loop_that_runs_again_at_once_reads_every_change_before_its_next_round() {
    let fake = FakeProposer::new();
    let mut held = HeldLoop::start(&fake, Duration::ZERO);
    held.entered.recv().await.expect("a first round");
    const CHANGES: usize = 50;
    HeldLoop::commit(&fake, CHANGES);
    held.release.notify_one();
    held.entered.recv().await.expect("the next round, at once");
    assert_eq!(held.observed.load(Ordering::SeqCst), CHANGES);
    assert_eq!(held.lagged.load(Ordering::SeqCst), 0);
    held.stop().await;
}
