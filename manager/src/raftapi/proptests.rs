//! Property tests of the decoding of Raft messages from peers: any bytes are a message or
//! an `invalid_argument`, never a panic, and every message decodes to what was encoded.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use proptest::prelude::*;
use proto::RaftPayload;

use super::{decode, payload};
use crate::raft::{Command, TypeConfig};

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn entries() -> impl Strategy<Value = Vec<(u64, u64, Option<Vec<u8>>)>> {
    proptest::collection::vec(
        (0..5u64, 0..1000u64, proptest::option::of(any::<Vec<u8>>())),
        0..6,
    )
}

fn request(
    term: u64,
    node: u64,
    entries: &[(u64, u64, Option<Vec<u8>>)],
) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(term, node),
        prev_log_id: Some(log_id(term, node, 3)),
        entries: entries
            .iter()
            .map(|(term, index, data)| Entry {
                log_id: log_id(*term, node, *index),
                payload: match data {
                    Some(bytes) => EntryPayload::Normal(Command(bytes.clone())),
                    None => EntryPayload::Blank,
                },
            })
            .collect(),
        leader_commit: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_from_a_peer_are_a_message_or_invalid_argument(
        data in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let payload = RaftPayload { data, ..Default::default() };
        let errors = [
            decode::<AppendEntriesRequest<TypeConfig>>(&payload).err(),
            decode::<VoteRequest<u64>>(&payload).err(),
            decode::<InstallSnapshotRequest<TypeConfig>>(&payload).err(),
        ];
        for status in errors.into_iter().flatten() {
            prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
            prop_assert!(status.message().starts_with("malformed Raft message"));
        }
    }

    #[test]
    fn append_entries_decode_to_what_was_encoded(
        term in any::<u64>(),
        node in any::<u64>(),
        entries in entries(),
    ) {
        let sent = request(term, node, &entries);
        let wire = payload(&sent, 2).unwrap();
        let got: AppendEntriesRequest<TypeConfig> = decode(&wire).unwrap();
        prop_assert_eq!(got.vote, sent.vote);
        prop_assert_eq!(got.prev_log_id, sent.prev_log_id);
        prop_assert_eq!(got.leader_commit, sent.leader_commit);
        prop_assert_eq!(got.entries.len(), sent.entries.len());
        for (got, sent) in got.entries.iter().zip(&sent.entries) {
            prop_assert_eq!(got.log_id, sent.log_id);
            match (&got.payload, &sent.payload) {
                (EntryPayload::Normal(a), EntryPayload::Normal(b)) => prop_assert_eq!(a, b),
                (EntryPayload::Blank, EntryPayload::Blank) => {}
                _ => prop_assert!(false, "payload kind changed"),
            }
        }
        // A cut message never reads as a shorter valid one that loses entries silently.
        if !wire.data.is_empty() {
            let cut = RaftPayload { data: wire.data[..wire.data.len() - 1].to_vec(), ..Default::default() };
            prop_assert!(decode::<AppendEntriesRequest<TypeConfig>>(&cut).is_err());
        }
    }

    #[test]
    fn votes_decode_to_what_was_encoded(term in any::<u64>(), node in any::<u64>(), index in any::<u64>()) {
        let sent = VoteRequest { vote: Vote::new(term, node), last_log_id: Some(log_id(term, node, index)) };
        let wire = payload(&sent, 2).unwrap();
        prop_assert_eq!(decode::<VoteRequest<u64>>(&wire).unwrap(), sent);
    }
}
