//! The leader's proposal queue: concurrent writes share Raft entries.
//!
//! Every Raft entry costs the leader and each follower a fixed amount of work besides its
//! bytes (an append, a place in a replication message, an apply, a response), and that, not
//! the disk, bounded write throughput. So the leader proposes through this queue: while
//! entries are in flight, the batches of the writers that arrive meanwhile wait and then go
//! out together, as one [`proto::StoreEntry`] holding several batches. The state machine
//! applies them in order, each all or nothing on its own, and each writer gets its own
//! result (a batch that fails its version checks fails alone). A lone writer's batch goes
//! out at once, alone. Gathering needs entry format 2 ([`super::format`]): while some
//! manager reads only format 1, the batches gathered go out one per entry instead.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::format::{self, EntryFormats};
use super::types::{Command, TypeConfig};
use crate::store::ApplyError;

/// Entries proposed through the queue and not yet committed. One keeps the next entry
/// gathering for as long as the last one takes; two keep Raft busy while a response travels
/// back to the queue.
const MAX_IN_FLIGHT: usize = 2;
/// Batches gathered into one entry at most.
const MAX_BATCHES: usize = 512;
/// Bytes gathered into one entry at most (a single bigger batch still goes, alone), so an
/// entry stays well inside a replication message.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Writers that may wait in the queue before proposing waits for room.
const QUEUE: usize = 4096;

/// Why the queue did not commit a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// This member does not lead (any more): propose through the leader.
    NotLeader,
    /// Committed, but the state machine refused the batch.
    Apply(ApplyError),
    /// Raft stopped.
    Stopped(String),
}

struct Proposal {
    /// The encoded [`proto::StoreBatch`].
    batch: Vec<u8>,
    reply: oneshot::Sender<Result<u64, Refused>>,
}

/// The queue; its task ends when it is dropped.
pub(super) struct Proposals {
    tx: mpsc::Sender<Proposal>,
    task: tokio::task::JoinHandle<()>,
}

impl Proposals {
    /// Starts the queue in front of `raft` on `runtime`, writing the format `formats`
    /// allows.
    pub(super) fn start(
        raft: Raft<TypeConfig>,
        formats: Arc<EntryFormats>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            task: runtime.spawn(run(raft, formats, rx)),
        }
    }

    /// Commits the encoded [`proto::StoreBatch`] `batch` through this member, which must
    /// lead; returns the index of the entry that carried it.
    pub(super) async fn propose(&self, batch: Vec<u8>) -> Result<u64, Refused> {
        let (reply, result) = oneshot::channel();
        let stopped = || Refused::Stopped("the proposal queue has stopped".into());
        self.tx
            .send(Proposal { batch, reply })
            .await
            .map_err(|_| stopped())?;
        result.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Proposals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(raft: Raft<TypeConfig>, formats: Arc<EntryFormats>, mut rx: mpsc::Receiver<Proposal>) {
    // Owns the entries in flight: dropping it (the queue stopped) drops their writers'
    // replies, which then see the queue stopped.
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            // Writers arriving now wait and go out together when an entry commits.
            in_flight.join_next().await;
            continue;
        }
        let Some(first) = rx.recv().await else {
            break;
        };
        let group = gather(first, &mut rx);
        let members: Vec<u64> = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            membership.nodes().map(|(id, _)| *id).collect()
        };
        if formats.writable(members) >= format::GATHERED {
            in_flight.spawn(commit(raft.clone(), format::GATHERED, group));
        } else {
            // Some manager would read a gathered entry as empty: one batch per entry.
            for proposal in group {
                in_flight.spawn(commit(raft.clone(), format::SINGLE_BATCH, vec![proposal]));
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// `first` and the proposals waiting behind it, within the limits of one entry.
fn gather(first: Proposal, rx: &mut mpsc::Receiver<Proposal>) -> Vec<Proposal> {
    let mut bytes = first.batch.len();
    let mut group = vec![first];
    while group.len() < MAX_BATCHES && bytes < MAX_ENTRY_BYTES {
        let Ok(next) = rx.try_recv() else {
            break;
        };
        bytes += next.batch.len();
        group.push(next);
    }
    group
}

/// Commits `group` as one entry of `format` (format 1: a group of one) and answers each
/// writer with its own result.
async fn commit(raft: Raft<TypeConfig>, format: u32, group: Vec<Proposal>) {
    let batches: Vec<&[u8]> = group.iter().map(|p| p.batch.as_slice()).collect();
    let entry = format::encode(format, &batches);
    let outcome = raft.client_write(Command(entry)).await;
    let refused = match outcome {
        Ok(resp) => {
            let index = resp.log_id.index;
            let mut results = resp.data.0.into_iter();
            for proposal in group {
                let result = results.next().unwrap_or_else(|| {
                    Err(ApplyError::Invalid(
                        "the entry gave no result for this batch".into(),
                    ))
                });
                let _ = proposal
                    .reply
                    .send(result.map(|()| index).map_err(Refused::Apply));
            }
            return;
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Refused::NotLeader,
        Err(e) => Refused::Stopped(e.to_string()),
    };
    for proposal in group {
        let _ = proposal.reply.send(Err(refused.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::{Service, StoreAction, StoreBatch};
    use tonic::transport::Channel;

    use super::*;
    use crate::raft::{RaftNode, RaftSettings};
    use crate::store::tests::service;
    use crate::store::{Kind, Store, StoreError, StoredObject};
    use crate::transport::Connector;

    /// A batch of one action on `object`, as it is (no timestamps).
    fn one_action<T: StoredObject>(kind: proto::StoreActionKind, object: T) -> StoreBatch {
        StoreBatch {
            actions: vec![StoreAction {
                kind: kind as i32,
                object: Some(object.wrap()),
            }],
            ..Default::default()
        }
    }

    /// A single-member group talks to nobody.
    struct NoPeers;

    impl Connector for NoPeers {
        fn channel(&self, _: &str) -> Channel {
            Channel::from_static("http://127.0.0.1:9").connect_lazy()
        }

        fn node_channel(&self, addr: &str, _: &str) -> Channel {
            self.channel(addr)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_each_get_their_own_result() {
        use proto::StoreActionKind::{Create, Update};
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Arc::new(
            RaftNode::open(
                dir.path(),
                1,
                &RaftSettings::default(),
                Arc::new(NoPeers),
                &crate::raft::at_rest::KeyEncryptionKey::generate().unwrap(),
                None,
            )
            .await
            .expect("open"),
        );
        node.initialize("127.0.0.1:9").await.expect("initialize");
        let created = node
            .propose(&one_action(Create, service("s1", "web", 0)))
            .await
            .expect("create");

        // Forty writers at once: twenty update s1 from the version they all read (one wins,
        // the others conflict, whichever entries they share) and twenty create services.
        let writers = (0..40).map(|i| {
            let node = node.clone();
            tokio::spawn(async move {
                let batch = if i % 2 == 0 {
                    one_action(Update, service("s1", &format!("web-{i}"), created))
                } else {
                    one_action(Create, service(&format!("n{i}"), &format!("new-{i}"), 0))
                };
                (i, node.propose(&batch).await)
            })
        });
        let results = futures::future::join_all(writers).await;
        let mut won = Vec::new();
        for result in results {
            let (i, result) = result.expect("writer");
            match (i % 2, result) {
                (0, Ok(index)) => won.push((i, index)),
                (
                    0,
                    Err(StoreError::Apply(ApplyError::Conflict {
                        kind: Kind::Service,
                        id,
                        expected,
                        actual,
                    })),
                ) => {
                    assert_eq!((id.as_str(), expected), ("s1", created));
                    assert!(actual > created);
                }
                (_, Ok(index)) => {
                    let store = node.local().read();
                    let made = store.get::<Service>(&format!("n{i}")).expect("created");
                    assert_eq!(made.version(), index);
                }
                (_, Err(e)) => panic!("writer {i} failed: {e}"),
            }
        }
        let [(winner, index)] = won[..] else {
            panic!("expected one winning update, got {won:?}");
        };
        let store = node.local().read().clone();
        let s1 = store.get::<Service>("s1").expect("s1");
        assert_eq!(s1.name(), Some(format!("web-{winner}").as_str()));
        assert_eq!(s1.version(), index);
        assert_eq!(store.count::<Service>(), 21);
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_removal_reads_again_when_someone_else_wrote_in_between() {
        use proto::StoreActionKind::{Create, Update};
        let dir = tempfile::tempdir().expect("temp dir");
        let node = Arc::new(
            RaftNode::open(
                dir.path(),
                1,
                &RaftSettings::default(),
                Arc::new(NoPeers),
                &crate::raft::at_rest::KeyEncryptionKey::generate().unwrap(),
                None,
            )
            .await
            .expect("open"),
        );
        node.initialize("127.0.0.1:9").await.expect("initialize");
        let store = Store::new(node.local().clone(), node.clone());
        let created = node
            .propose(&one_action(Create, service("s1", "web", 0)))
            .await
            .expect("create");
        // The allocator (say) writes s1 after the remover's first read: the first pick
        // returns the version read before that write, as a racing read would.
        let stale = node
            .local()
            .read()
            .get::<Service>("s1")
            .cloned()
            .expect("s1");
        node.propose(&one_action(Update, service("s1", "web", created)))
            .await
            .expect("update");
        let picks = std::sync::atomic::AtomicUsize::new(0);
        store
            .remove(|store| {
                let first = picks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                let current = store.get::<Service>("s1").cloned();
                Ok::<_, StoreError>(if first {
                    stale.clone()
                } else {
                    current.expect("s1")
                })
            })
            .await
            .expect("removed despite the write in between");
        assert_eq!(picks.into_inner(), 2);
        assert!(node.local().read().get::<Service>("s1").is_none());
        // A pick that refuses ends the removal with its error and deletes nothing.
        node.propose(&one_action(Create, service("s2", "api", 0)))
            .await
            .expect("create");
        let refused = store
            .remove(|_| Err::<Service, _>(StoreError::Stopped("refused".into())))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Stopped(_))),
            "{refused:?}"
        );
        assert!(node.local().read().get::<Service>("s2").is_some());
        node.shutdown().await;
    }
}
