//! Property tests of the packet handling: tasks may send any bytes at all.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;

use super::{respond, truncate, Records, Response, ServiceRecord, UDP_LIMIT};

fn records() -> Records {
    let records = Records::default();
    records.set(HashMap::from([
        (
            "web".to_owned(),
            ServiceRecord {
                vip: Some(Ipv4Addr::new(10, 0, 1, 2)),
                tasks: vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)],
            },
        ),
        (
            "big".to_owned(),
            ServiceRecord {
                vip: None,
                tasks: (0..=255).map(|i| Ipv4Addr::new(10, 0, 2, i)).collect(),
            },
        ),
    ]));
    records
}

/// The reply `respond` gives, or would give with no upstream answering; `None` if dropped.
fn reply_to(query: &[u8], records: &Records) -> Option<Message> {
    match respond(query, records) {
        Response::Drop => None,
        Response::Reply(reply) | Response::Forward { unanswered: reply } => Some(reply),
    }
}

/// Names tasks ask: the services', `tasks.` ones, outside names, odd bytes in labels.
fn names() -> impl Strategy<Value = Name> {
    let label = prop_oneof![
        Just(b"web".to_vec()),
        Just(b"WEB".to_vec()),
        Just(b"tasks".to_vec()),
        Just(b"big".to_vec()),
        Just(b".".to_vec()),
        "[a-z0-9-]{1,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..20),
    ];
    proptest::collection::vec(label, 0..5).prop_map(|labels| Name::from_labels(labels).unwrap())
}

fn queries() -> impl Strategy<Value = (Message, Query)> {
    (
        any::<u16>(),
        any::<bool>(),
        names(),
        prop_oneof![Just(1u16), Just(28), any::<u16>()],
        prop_oneof![Just(1u16), any::<u16>()],
    )
        .prop_map(|(id, rd, name, qtype, class)| {
            let mut question = Query::query(name, RecordType::from(qtype));
            question.set_query_class(DNSClass::from(class));
            let mut message = Message::new();
            message
                .set_id(id)
                .set_message_type(MessageType::Query)
                .set_recursion_desired(rd)
                .add_query(question.clone());
            (message, question)
        })
}

proptest! {
    // Failures are shrunk and printed; none is written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_are_dropped_or_answered_with_their_id(
        bytes in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        if let Some(reply) = reply_to(&bytes, &records()) {
            let wire = reply.to_vec().unwrap();
            prop_assert_eq!(&wire[..2], &bytes[..2]);
            prop_assert_eq!(reply.message_type(), MessageType::Response);
        }
        // Whatever an upstream sends back, truncating it does not panic.
        let truncated = truncate(&bytes);
        prop_assert!(truncated.len() <= bytes.len().max(12));
    }

    #[test]
    fn damaged_queries_are_dropped_or_answered_with_their_id(
        (query, _) in queries(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        // Near-valid packets reach deeper into the parser than random ones.
        let mut bytes = query.to_vec().unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Some(reply) = reply_to(&bytes, &records()) {
            let wire = reply.to_vec().unwrap();
            prop_assert_eq!(&wire[..2], &bytes[..2]);
        }
    }

    #[test]
    fn a_well_formed_query_gets_a_reply_with_its_id_and_question((query, question) in queries()) {
        let reply = reply_to(&query.to_vec().unwrap(), &records()).expect("a reply");
        // What goes on the wire reads back the same.
        let reply = Message::from_vec(&reply.to_vec().unwrap()).unwrap();
        prop_assert_eq!(reply.id(), query.id());
        prop_assert_eq!(reply.message_type(), MessageType::Response);
        prop_assert_eq!(reply.recursion_desired(), query.recursion_desired());
        prop_assert_eq!(reply.queries(), &[question.clone()][..]);
        let known = question.query_class() == DNSClass::IN
            && records().lookup(question.name()).is_some();
        if known {
            // A known name: NOERROR, A records for A, an empty answer for any other type.
            prop_assert_eq!(reply.response_code(), ResponseCode::NoError);
            let wanted = if question.query_type() == RecordType::A {
                records().lookup(question.name()).unwrap()
            } else {
                Vec::new()
            };
            let got: Vec<Ipv4Addr> = reply
                .answers()
                .iter()
                .map(|record| match record.data() {
                    RData::A(a) => a.0,
                    other => panic!("not an A record: {other:?}"),
                })
                .collect();
            prop_assert_eq!(got, wanted);
        } else {
            prop_assert!(reply.answers().is_empty());
        }
        // Too big for UDP: truncated to the question, TC set, same ID.
        let wire = reply.to_vec().unwrap();
        let cut = Message::from_vec(&truncate(&wire)).unwrap();
        prop_assert!(cut.to_vec().unwrap().len() <= UDP_LIMIT);
        prop_assert!(cut.truncated() && cut.answers().is_empty());
        prop_assert_eq!(cut.id(), query.id());
        prop_assert_eq!(cut.queries(), &[question][..]);
    }
}

#[test]
fn a_label_with_a_dot_after_tasks_is_answered() {
    // The hand-written parser this replaced joined labels with `.` and sliced the name:
    // `tasks` then a one-byte label `.` read as `tasks..` and panicked.
    let name = Name::from_labels(vec![b"tasks".to_vec(), b".".to_vec()]).unwrap();
    let mut query = Message::new();
    query.set_id(7).add_query(Query::query(name, RecordType::A));
    let reply = reply_to(&query.to_vec().unwrap(), &records()).expect("a reply");
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
}

#[test]
fn aaaa_for_a_known_name_is_an_empty_noerror_answer() {
    let mut query = Message::new();
    query.set_id(9).add_query(Query::query(
        Name::from_ascii("tasks.web").unwrap(),
        RecordType::AAAA,
    ));
    let reply = reply_to(&query.to_vec().unwrap(), &records()).expect("a reply");
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.answers().is_empty());
}
