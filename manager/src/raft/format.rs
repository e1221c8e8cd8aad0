//! The Raft entry format, and the gate that keeps a leader from writing one some manager
//! cannot read.
//!
//! A log entry is a [`proto::StoreEntry`]; its `format` field says how to read it. Format 1
//! is the previous release's: one writer's batch as `actions`, no `format` field at all (the
//! bytes of a [`proto::StoreBatch`]), so every entry that release wrote reads as format 1.
//! Format 2 may gather several writers' batches into `batches`, which a format-1 reader does
//! not know and would read as an empty entry; so a format-2 entry says so (`format: 2`), and
//! a reader that only knows format 1 refuses it instead ([`NewerFormat`]).
//!
//! Each manager reports the highest format it understands in every Raft reply
//! ([`proto::RaftPayload::entry_format`]; absent in the previous release's, so 1). The
//! leader hears from every member, voters and learners, each heartbeat, so it keeps the
//! latest report per member ([`EntryFormats`]) and writes format 2 only while every member
//! of the configuration has reported it. Otherwise it writes format 1: one batch per entry.
//! A member that has not answered yet counts as format 1.
//!
//! Reporting through the Raft replies rather than the membership's node data keeps the
//! membership entries (and so the log and snapshot encodings) as they were, and the report
//! follows a manager's restart with another binary within a heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use prost::encoding::{encode_key, encode_varint, WireType};

/// The previous release's format: one batch per entry, no `format` field.
pub const SINGLE_BATCH: u32 = 1;
/// Entries that may gather several writers' batches, and say so.
pub const GATHERED: u32 = 2;
/// The newest entry format this build reads and writes.
pub const NEWEST: u32 = GATHERED;
/// The snapshot format this build writes, and the newest it reads.
pub const SNAPSHOT: u32 = 1;

/// `StoreEntry.format`'s field number.
const FORMAT_FIELD: u32 = 3;
/// `StoreEntry.batches`'s field number.
const BATCHES_FIELD: u32 = 2;

/// An entry (or snapshot) newer than this manager reads: applying stops here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this manager understands Raft {what} up to format {understood} but {what_one} {index} is \
     format {format}: upgrade skiffd"
)]
pub struct NewerFormat {
    what: &'static str,
    what_one: &'static str,
    /// The newest format this manager reads.
    pub understood: u32,
    /// The entry's log index (the snapshot's last index).
    pub index: u64,
    /// The entry's format.
    pub format: u32,
}

impl NewerFormat {
    /// Entry `index` is of `format`, newer than `understood`.
    pub fn entry(understood: u32, index: u64, format: u32) -> Self {
        Self {
            what: "entries",
            what_one: "entry",
            understood,
            index,
            format,
        }
    }

    /// The snapshot up to `index` is of `format`, newer than `understood`.
    pub fn snapshot(understood: u32, index: u64, format: u32) -> Self {
        Self {
            what: "snapshots",
            what_one: "the snapshot at",
            understood,
            index,
            format,
        }
    }
}

/// The format an entry (or snapshot) declares: absent is format 1.
pub fn declared(format: u32) -> u32 {
    format.max(SINGLE_BATCH)
}

/// The batches of a decoded entry committed at `index`, for a manager that reads formats up
/// to `understood`; `Ok(Err(_))` for an entry this format reads but that is malformed.
pub fn batches(
    entry: proto::StoreEntry,
    index: u64,
    understood: u32,
) -> Result<Result<Vec<proto::StoreBatch>, String>, NewerFormat> {
    let format = declared(entry.format);
    if format > understood {
        return Err(NewerFormat::entry(understood, index, format));
    }
    // Entries of this release before formats gathered batches without saying so: they
    // read as format 1 and are still read whole.
    Ok(match (entry.actions.is_empty(), entry.batches.is_empty()) {
        (_, true) => Ok(vec![proto::StoreBatch {
            actions: entry.actions,
            proposal: entry.proposal,
        }]),
        (true, false) => Ok(entry.batches),
        (false, false) => Err("an entry holds either actions or batches".into()),
    })
}

/// The entry carrying the encoded [`proto::StoreBatch`]es `batches`, in order, in `format`.
/// Format 1 holds exactly one batch: its bytes are the entry, as that release wrote them.
/// Format 2 says its format; a lone batch stays `actions`, several go as `batches`. The
/// bytes of an embedded message are its encoding, so batches are copied, not re-encoded.
pub fn encode(format: u32, batches: &[&[u8]]) -> Vec<u8> {
    debug_assert!(format == GATHERED || batches.len() == 1);
    let size: usize = batches.iter().map(|b| b.len() + 11).sum::<usize>() + 2;
    let mut entry = Vec::with_capacity(size);
    match batches {
        [one] => entry.extend_from_slice(one),
        _ => {
            for batch in batches {
                encode_key(BATCHES_FIELD, WireType::LengthDelimited, &mut entry);
                encode_varint(batch.len() as u64, &mut entry);
                entry.extend_from_slice(batch);
            }
        }
    }
    if format > SINGLE_BATCH {
        encode_key(FORMAT_FIELD, WireType::Varint, &mut entry);
        encode_varint(u64::from(format), &mut entry);
    }
    entry
}

/// What each member reported it reads, and so which format the leader may write.
pub struct EntryFormats {
    id: u64,
    understood: u32,
    peers: Mutex<HashMap<u64, u32>>,
    /// The format last chosen for writing, to log changes once.
    writing: AtomicU32,
}

impl EntryFormats {
    /// For member `id`, which reads formats up to `understood`.
    pub fn new(id: u64, understood: u32) -> Self {
        Self {
            id,
            understood,
            peers: Mutex::default(),
            writing: AtomicU32::new(0),
        }
    }

    /// The newest format this member reads (and reports).
    pub fn understood(&self) -> u32 {
        self.understood
    }

    /// `peer` answered, reporting `reported` (0 from a release before formats).
    pub fn record(&self, peer: u64, reported: u32) {
        let reads = declared(reported);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.insert(peer, reads) != Some(reads) {
            tracing::debug!(
                raft_id = peer,
                reads,
                "Raft member reports the entry formats it reads"
            );
        }
    }

    /// The format to write for a configuration of `members` (voters and learners): the
    /// newest every one of them reads. Logs when it changes.
    pub fn writable(&self, members: impl IntoIterator<Item = u64>) -> u32 {
        let (format, behind) = {
            let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            let mut format = self.understood;
            let mut behind = None;
            for member in members.into_iter().filter(|&m| m != self.id) {
                let reads = peers.get(&member).copied().unwrap_or(SINGLE_BATCH);
                if reads < format {
                    format = reads;
                    behind = Some(member);
                }
            }
            (format, behind)
        };
        let before = self.writing.swap(format, Ordering::Relaxed);
        if before != format {
            match behind {
                Some(member) if format < self.understood => tracing::info!(
                    format,
                    "writing Raft entries in format {format}: Raft member {member} reads no newer \
                     (or has not answered yet)"
                ),
                _ => tracing::info!(
                    format,
                    "writing Raft entries in format {format}: every manager reads it"
                ),
            }
        }
        format
    }

    /// The format last chosen for writing (0 before this member first wrote as leader).
    pub fn writing(&self) -> u32 {
        self.writing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use proto::{StoreAction, StoreBatch, StoreEntry};

    use super::*;

    fn batch(kinds: &[i32]) -> StoreBatch {
        StoreBatch {
            actions: kinds
                .iter()
                .map(|&kind| StoreAction { kind, object: None })
                .collect(),
            ..Default::default()
        }
    }

    fn decode(bytes: &[u8], understood: u32) -> Result<Vec<StoreBatch>, NewerFormat> {
        let entry = StoreEntry::decode(bytes).expect("decodes");
        batches(entry, 7, understood).map(|b| b.expect("well formed"))
    }

    #[test]
    fn a_format_1_entry_is_the_bytes_of_its_batch_as_the_previous_release_wrote() {
        let single = batch(&[0, 1]);
        let bytes = single.encode_to_vec();
        assert_eq!(encode(SINGLE_BATCH, &[&bytes]), bytes);
        let entry = StoreEntry::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(declared(entry.format), SINGLE_BATCH);
        // A format-1 reader and this one read it alike.
        assert_eq!(decode(&bytes, SINGLE_BATCH), Ok(vec![single.clone()]));
        assert_eq!(decode(&bytes, NEWEST), Ok(vec![single]));
    }

    #[test]
    fn a_format_2_entry_of_encoded_batches_decodes_to_those_batches_in_order() {
        let batches = [batch(&[0]), batch(&[]), batch(&[1, 2, 0])];
        let encoded: Vec<Vec<u8>> = batches.iter().map(Message::encode_to_vec).collect();
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let bytes = encode(GATHERED, &slices);
        let entry = StoreEntry::decode(bytes.as_slice()).expect("decodes");
        assert_eq!((entry.format, entry.actions.len()), (2, 0));
        assert_eq!(decode(&bytes, GATHERED), Ok(batches.to_vec()));
    }

    #[test]
    fn a_lone_batch_in_format_2_is_its_actions_and_says_its_format() {
        let single = batch(&[2]);
        let bytes = encode(GATHERED, &[&single.encode_to_vec()]);
        let entry = StoreEntry::decode(bytes.as_slice()).expect("decodes");
        assert_eq!((entry.format, entry.batches.len()), (2, 0));
        assert_eq!(decode(&bytes, GATHERED), Ok(vec![single]));
    }

    #[test]
    fn a_format_1_reader_refuses_a_format_2_entry_instead_of_reading_it_as_empty() {
        let encoded = [batch(&[0]).encode_to_vec(), batch(&[1]).encode_to_vec()];
        for bytes in [
            encode(GATHERED, &[&encoded[0], &encoded[1]]),
            encode(GATHERED, &[&encoded[0]]),
        ] {
            let refused = decode(&bytes, SINGLE_BATCH).expect_err("newer than it reads");
            assert_eq!(
                refused.to_string(),
                "this manager understands Raft entries up to format 1 but entry 7 is format 2: \
                 upgrade skiffd"
            );
        }
    }

    #[test]
    fn an_untagged_gathered_entry_from_before_formats_still_reads_whole() {
        // What this release wrote before entries carried a format: batches, no format.
        let batches = [batch(&[0]), batch(&[1])];
        let bytes = StoreEntry {
            batches: batches.to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(decode(&bytes, NEWEST), Ok(batches.to_vec()));
    }

    #[test]
    fn an_entry_with_both_actions_and_batches_is_malformed() {
        let entry = StoreEntry {
            actions: batch(&[0]).actions,
            batches: vec![batch(&[1])],
            format: GATHERED,
            ..Default::default()
        };
        assert!(matches!(batches(entry, 1, NEWEST), Ok(Err(_))));
    }

    #[test]
    fn the_leader_writes_the_newest_format_every_member_reports() {
        let formats = EntryFormats::new(1, NEWEST);
        // Nobody answered yet: the previous release's format.
        assert_eq!(formats.writable([1, 2, 3]), SINGLE_BATCH);
        formats.record(2, 2);
        formats.record(3, 0);
        assert_eq!(formats.writable([1, 2, 3]), SINGLE_BATCH);
        formats.record(3, 2);
        assert_eq!(formats.writable([1, 2, 3]), GATHERED);
        assert_eq!(formats.writing(), GATHERED);
        // A learner joins: until it answers, format 1 again.
        assert_eq!(formats.writable([1, 2, 3, 4]), SINGLE_BATCH);
        formats.record(4, 2);
        assert_eq!(formats.writable([1, 2, 3, 4]), GATHERED);
        // A member restarted with an older binary reports less.
        formats.record(2, 1);
        assert_eq!(formats.writable([1, 2, 3, 4]), SINGLE_BATCH);
        // A leader that itself reads only format 1 never writes more.
        let old = EntryFormats::new(1, SINGLE_BATCH);
        old.record(2, 2);
        assert_eq!(old.writable([1, 2]), SINGLE_BATCH);
    }
}
