//! This manager's copy of the store and its watch stream.
//!
//! The copy is written in one place only, the Raft state machine, through the one
//! [`Applier`] made with it: so the store changes only by applying committed entries, and the
//! watch stream publishes each change exactly after the state it describes. Everyone else
//! holds a [`LocalStore`], which only reads and subscribes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use proto::ProposalOutcome;
use tokio::sync::{broadcast, watch};

use super::{admissions, Admissions, ApplyError, ObjectStore, StoreObjects};

/// Watch events a slow subscriber may fall behind by before it must resynchronise.
const WATCH_BUFFER: usize = 4096;

/// Proposals whose first outcome is remembered: far more than are ever in flight at once.
const OUTCOMES_KEPT: usize = 65_536;

/// The first outcome of each recent proposal that carried an ID, as this manager applied
/// it: what a retried write reads when its retry is refused because its earlier attempt
/// (whose answer was lost with a leader) had already applied.
#[derive(Default)]
struct Outcomes {
    first: HashMap<String, (u64, Result<(), ApplyError>)>,
    order: VecDeque<String>,
}

impl Outcomes {
    /// Every remembered outcome, oldest first, as a snapshot carries them.
    fn to_proto(&self) -> Vec<ProposalOutcome> {
        self.order
            .iter()
            .filter_map(|proposal| {
                let (index, result) = self.first.get(proposal)?;
                let refusal = match result {
                    Ok(()) => String::new(),
                    Err(e) => serde_json::to_string(e).ok()?,
                };
                Some(ProposalOutcome {
                    proposal: proposal.clone(),
                    index: *index,
                    refusal,
                })
            })
            .collect()
    }

    /// The outcomes a snapshot carries; one whose refusal this build cannot read (a newer
    /// release's error) is left out, as if it had not been remembered.
    fn from_proto(outcomes: Vec<ProposalOutcome>) -> Self {
        let mut restored = Outcomes::default();
        let skip = outcomes.len().saturating_sub(OUTCOMES_KEPT);
        for outcome in outcomes.into_iter().skip(skip) {
            let result = if outcome.refusal.is_empty() {
                Ok(())
            } else {
                match serde_json::from_str(&outcome.refusal) {
                    Ok(e) => Err(e),
                    Err(_) => continue,
                }
            };
            if restored.first.contains_key(&outcome.proposal) {
                continue;
            }
            restored.order.push_back(outcome.proposal.clone());
            restored
                .first
                .insert(outcome.proposal, (outcome.index, result));
        }
        restored
    }
}

/// A change the watch stream publishes, in commit order.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The changes one committed batch made.
    Changes {
        /// The batch's log index.
        index: u64,
        /// What changed, in order.
        events: Vec<proto::StoreEvent>,
    },
    /// The whole store was replaced (a snapshot was installed): re-read it.
    Reset {
        /// The index the store now reflects.
        index: u64,
    },
}

struct Shared {
    store: RwLock<ObjectStore>,
    /// Kept with the store, under a lock of its own that is never held long: see
    /// `admissions.rs`.
    admissions: RwLock<Admissions>,
    applied: watch::Sender<u64>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    outcomes: Mutex<Outcomes>,
}

/// Read access to this manager's copy of the store and to its watch stream. It may be
/// behind the leader; [`super::Store::read_latest`] reads after a barrier.
#[derive(Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
}

impl LocalStore {
    /// The current state. Hold the guard briefly: apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ObjectStore> {
        self.shared.store.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Who the cluster port admits, read without the store's lock (which apply may be
    /// waiting for behind a long reader).
    pub fn admissions(&self) -> RwLockReadGuard<'_, Admissions> {
        self.shared
            .admissions
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver of every change from now on, and what `view` makes of the state those
    /// changes follow, taken atomically. `view` runs under the read lock (it must not read
    /// the store again): a view of what it needs, not a copy of a store of a million tasks.
    pub fn subscribe<R>(
        &self,
        view: impl FnOnce(&ObjectStore) -> R,
    ) -> (R, broadcast::Receiver<Arc<WatchEvent>>) {
        let store = self.read();
        (view(&store), self.shared.events.subscribe())
    }

    /// The index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// The current objects and the first outcomes they reflect, taken together (for a
    /// snapshot).
    pub fn objects_with_outcomes(&self) -> (StoreObjects, Vec<ProposalOutcome>) {
        let store = self.read();
        // Apply records outcomes under the store's write lock, so under the read lock the
        // two agree.
        let outcomes = self
            .shared
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_proto();
        (store.objects(), outcomes)
    }

    /// The index and outcome of the first application of the batch proposed as
    /// `proposal`, while it is among the recent ones: applied here, or carried by the
    /// snapshot this manager installed.
    pub fn first_outcome(&self, proposal: &str) -> Option<(u64, Result<(), ApplyError>)> {
        let outcomes = self
            .shared
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outcomes.first.get(proposal).cloned()
    }

    /// Waits until the entry at `index` has been applied here.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.shared.applied.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }
}

/// The one writer of a [`LocalStore`]: the state machine that applies committed entries.
pub struct Applier {
    shared: Arc<Shared>,
}

impl Default for Applier {
    fn default() -> Self {
        Self::new()
    }
}

impl Applier {
    /// An empty store and its writer.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let (applied, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                store: RwLock::new(ObjectStore::default()),
                admissions: RwLock::default(),
                applied,
                events,
                outcomes: Mutex::default(),
            }),
        }
    }

    /// A reader of the store this writes.
    pub fn local(&self) -> LocalStore {
        LocalStore {
            shared: self.shared.clone(),
        }
    }

    /// Takes the write lock: readers wait until the guard is dropped.
    pub fn lock(&self) -> Applying<'_> {
        Applying {
            store: self.shared.store.write().unwrap_or_else(|e| e.into_inner()),
            admissions: &self.shared.admissions,
            events: &self.shared.events,
            outcomes: &self.shared.outcomes,
        }
    }

    /// Records that everything up to `index` is applied, waking [`LocalStore::wait_applied`].
    /// Call it after dropping the [`Applying`] guard, so the waiters can read at once.
    pub fn applied(&self, index: u64) {
        self.shared.applied.send_replace(index);
    }
}

/// The store under the write lock, and the watch stream to publish its changes on.
pub struct Applying<'a> {
    store: RwLockWriteGuard<'a, ObjectStore>,
    admissions: &'a RwLock<Admissions>,
    events: &'a broadcast::Sender<Arc<WatchEvent>>,
    outcomes: &'a Mutex<Outcomes>,
}

impl Applying<'_> {
    /// The store, to change.
    pub fn store(&mut self) -> &mut ObjectStore {
        &mut self.store
    }

    /// Publishes a change. Sent under the write lock, so subscribers see events in commit
    /// order and exactly after the state they copied. Every change of the store is
    /// published, so the admissions learn it here too.
    pub fn publish(&self, event: WatchEvent) {
        let facts = || self.admissions.write().unwrap_or_else(|e| e.into_inner());
        match &event {
            WatchEvent::Changes { events, .. } => {
                if events.iter().any(admissions::concerns) {
                    facts().learn(&self.store, events);
                }
            }
            WatchEvent::Reset { .. } => *facts() = Admissions::of(&self.store),
        }
        let _ = self.events.send(Arc::new(event));
    }

    /// Replaces the remembered outcomes with those of an installed snapshot.
    pub fn restore_outcomes(&self, outcomes: Vec<ProposalOutcome>) {
        *self.outcomes.lock().unwrap_or_else(|e| e.into_inner()) = Outcomes::from_proto(outcomes);
    }

    /// Remembers the outcome of a batch proposed as `proposal` (none if empty), applied at
    /// `index`, unless an earlier application of it is remembered: the first one counts.
    pub fn record(&self, proposal: String, index: u64, result: &Result<(), ApplyError>) {
        if proposal.is_empty() {
            return;
        }
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let Outcomes { first, order } = &mut *outcomes;
        if first.contains_key(&proposal) {
            return;
        }
        if order.len() == OUTCOMES_KEPT {
            if let Some(oldest) = order.pop_front() {
                first.remove(&oldest);
            }
        }
        order.push_back(proposal.clone());
        first.insert(proposal, (index, result.clone()));
    }
}
