use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;

/// A query built by hand (not by hickory, so the server's parser meets an independent
/// encoder).
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

/// (rcode, truncated, A addresses) of a reply, read by hand: header flags, then every answer
/// after the question (names as compression pointers or labels).
fn decode(reply: &[u8]) -> (u8, bool, Vec<Ipv4Addr>) {
    let rcode = reply[3] & 0x0f;
    let truncated = reply[2] & 0x02 != 0;
    let questions = u16::from_be_bytes([reply[4], reply[5]]);
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    let skip_name = |mut at: usize| loop {
        match reply[at] {
            0 => return at + 1,
            len if len >= 0xc0 => return at + 2,
            len => at += 1 + len as usize,
        }
    };
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(at) + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        // Name, type, class, TTL, length, data.
        at = skip_name(at);
        assert_eq!(reply[at..at + 2], TYPE_A.to_be_bytes(), "only A records");
        let len = u16::from_be_bytes([reply[at + 8], reply[at + 9]]) as usize;
        let data = &reply[at + 10..at + 10 + len];
        addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        at += 10 + len;
    }
    (rcode, truncated, addrs)
}

struct Server {
    udp: SocketAddr,
    tcp: SocketAddr,
    records: Records,
}

async fn server(upstreams: Vec<SocketAddr>) -> Server {
    let records = Records::default();
    let udp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp = udp_socket.local_addr().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = listener.local_addr().unwrap();
    tokio::spawn(serve_udp(udp_socket, records.clone(), upstreams.clone()));
    tokio::spawn(serve_tcp(listener, records.clone(), upstreams));
    Server { udp, tcp, records }
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    buf.truncate(len);
    buf
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(server).await.unwrap();
    conn.write_u16(q.len() as u16).await.unwrap();
    conn.write_all(q).await.unwrap();
    let len = conn.read_u16().await.unwrap() as usize;
    let mut reply = vec![0u8; len];
    conn.read_exact(&mut reply).await.unwrap();
    reply
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, last)
}

fn records() -> HashMap<String, ServiceRecord> {
    HashMap::from([
        (
            "web".to_owned(),
            ServiceRecord {
                vip: Some(ip(2)),
                tasks: vec![ip(5), ip(6)],
            },
        ),
        (
            "Cache".to_owned(),
            ServiceRecord {
                vip: None,
                tasks: vec![ip(7), ip(8)],
            },
        ),
    ])
}

#[tokio::test]
async fn services_resolve_to_their_vip_or_their_tasks() {
    let s = server(vec![]).await;
    s.records.set(records());
    let (rcode, _, addrs) = decode(&ask_udp(s.udp, &query(1, "web", TYPE_A)).await);
    assert_eq!((rcode, addrs), (0, vec![ip(2)]));
    let (_, _, addrs) = decode(&ask_udp(s.udp, &query(2, "tasks.web", TYPE_A)).await);
    assert_eq!(addrs, vec![ip(5), ip(6)]);
    // dnsrr, and names are case-insensitive.
    let (_, _, addrs) = decode(&ask_udp(s.udp, &query(3, "CACHE", TYPE_A)).await);
    assert_eq!(addrs, vec![ip(7), ip(8)]);
    // A service name asked for IPv6: no error, no address.
    let (rcode, _, addrs) = decode(&ask_udp(s.udp, &query(4, "web", TYPE_AAAA)).await);
    assert_eq!((rcode, addrs.len()), (0, 0));
    // An unknown service's tasks.
    let (rcode, _, _) = decode(&ask_udp(s.udp, &query(5, "tasks.nothing", TYPE_A)).await);
    assert_eq!(rcode, RCODE_NXDOMAIN);
    // The reply carries the query's ID.
    assert_eq!(
        ask_udp(s.udp, &query(0xbeef, "web", TYPE_A)).await[..2],
        [0xbe, 0xef]
    );
}

#[tokio::test]
async fn records_change_while_serving() {
    let s = server(vec![]).await;
    s.records.set(records());
    let mut changed = records();
    changed.get_mut("web").unwrap().tasks = vec![ip(9)];
    s.records.set(changed);
    let (_, _, addrs) = decode(&ask_udp(s.udp, &query(1, "tasks.web", TYPE_A)).await);
    assert_eq!(addrs, vec![ip(9)]);
}

#[tokio::test]
async fn other_names_go_to_the_upstream_resolver() {
    // A fake upstream that answers everything with 192.0.2.1 (it runs here, on loopback).
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (len, from) = upstream.recv_from(&mut buf).await.unwrap();
            let mut reply = Message::from_vec(&buf[..len]).unwrap();
            let name = reply.queries()[0].name().clone();
            reply
                .set_message_type(MessageType::Response)
                .add_answer(Record::from_rdata(
                    name,
                    TTL,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
            upstream
                .send_to(&reply.to_vec().unwrap(), from)
                .await
                .unwrap();
        }
    });
    let s = server(vec![upstream_addr]).await;
    s.records.set(records());
    let (_, _, addrs) = decode(&ask_udp(s.udp, &query(7, "example.org", TYPE_A)).await);
    assert_eq!(addrs, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    // Without any upstream that answers: SERVFAIL, not silence.
    let lonely = server(vec![]).await;
    let (rcode, _, _) = decode(&ask_udp(lonely.udp, &query(8, "example.org", TYPE_A)).await);
    assert_eq!(rcode, RCODE_SERVFAIL);
}

#[tokio::test]
async fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let s = server(vec![]).await;
    let many: Vec<Ipv4Addr> = (1..=100).map(|i| Ipv4Addr::new(10, 0, 2, i)).collect();
    s.records.set(HashMap::from([(
        "big".to_owned(),
        ServiceRecord {
            vip: None,
            tasks: many.clone(),
        },
    )]));
    let q = query(9, "tasks.big", TYPE_A);
    let (_, truncated, addrs) = decode(&ask_udp(s.udp, &q).await);
    assert!(truncated && addrs.is_empty());
    let (_, truncated, addrs) = decode(&ask_tcp(s.tcp, &q).await);
    assert!(!truncated);
    assert_eq!(addrs, many);
}

#[tokio::test]
async fn an_answer_too_large_even_for_tcp_is_cut_to_fit_with_tc_set() {
    // A TCP message's length is 16 bits: five thousand tasks do not fit in one.
    let s = server(vec![]).await;
    let many: Vec<Ipv4Addr> = (0..5000u32)
        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    s.records.set(HashMap::from([(
        "huge".to_owned(),
        ServiceRecord {
            vip: None,
            tasks: many.clone(),
        },
    )]));
    let reply = ask_tcp(s.tcp, &query(11, "tasks.huge", TYPE_A)).await;
    let (rcode, truncated, addrs) = decode(&reply);
    assert!(
        rcode == 0 && truncated,
        "rcode {rcode}, truncated {truncated}"
    );
    assert!(!addrs.is_empty() && addrs.len() < many.len());
    assert_eq!(addrs, many[..addrs.len()]);
    assert_eq!(reply[..2], 11u16.to_be_bytes());
}

#[tokio::test]
async fn malformed_queries_get_formerr() {
    let s = server(vec![]).await;
    let mut q = query(10, "web", TYPE_A);
    q.truncate(q.len() - 3);
    let reply = ask_udp(s.udp, &q).await;
    assert_eq!(reply[3] & 0x0f, RCODE_FORMERR);
}
