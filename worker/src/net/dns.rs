//! The embedded DNS server of a task (one per task namespace, see [`super::discovery`]):
//! answers `SERVICE` with the service's virtual IP (or its tasks' addresses for endpoint
//! mode `dnsrr`) and `tasks.SERVICE` with every running task's address, for the services on
//! the task's networks, and forwards every other name to the node's own resolvers (from the
//! node's namespace, where they are reachable), so tasks resolve both the cluster and the
//! outside world.
//!
//! The records are swapped whole ([`Records`]) as services and tasks change, while the
//! server keeps answering. UDP answers that do not fit in 512 bytes are truncated with the
//! TC bit set and the full answer is served over TCP, as resolvers expect.
//!
//! Packets come from tasks, which may send anything: they are read and written by
//! `hickory-proto`, and what cannot be read is dropped (no header, or a response) or
//! answered FORMERR, never trusted further.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// Seconds a client may cache an answer: short, since tasks come and go.
const TTL: u32 = 5;
/// The classic UDP payload limit (answers above it are truncated).
const UDP_LIMIT: usize = 512;
/// How long to wait for an upstream resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// What the server knows about one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The service's VIP; `None` for endpoint mode `dnsrr` (and where no VIP is carried).
    pub vip: Option<Ipv4Addr>,
    /// The addresses of its running tasks.
    pub tasks: Vec<Ipv4Addr>,
}

/// The records a server answers from, by lower-case service name (or alias); cheap to
/// clone and swap.
#[derive(Clone, Default)]
pub struct Records {
    inner: Arc<RwLock<Arc<HashMap<String, ServiceRecord>>>>,
}

impl Records {
    /// Replaces every record at once.
    pub fn set(&self, services: HashMap<String, ServiceRecord>) {
        let lowered = services
            .into_iter()
            .map(|(name, record)| (name.to_ascii_lowercase(), record))
            .collect();
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lowered);
    }

    fn current(&self) -> Arc<HashMap<String, ServiceRecord>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The addresses for `name`, or `None` if the name is not one of the network's.
    fn lookup(&self, name: &Name) -> Option<Vec<Ipv4Addr>> {
        // A label with a `.` inside could pass for two: no record has one.
        if name.iter().any(|label| label.contains(&b'.')) {
            return None;
        }
        let labels: Vec<_> = name.iter().map(String::from_utf8_lossy).collect();
        let name = labels.join(".").to_ascii_lowercase();
        let records = self.current();
        if let Some(service) = name.strip_prefix("tasks.") {
            return records.get(service).map(|r| r.tasks.clone());
        }
        records
            .get(&name)
            .map(|r| r.vip.map_or_else(|| r.tasks.clone(), |vip| vec![vip]))
    }
}

/// Serves DNS over UDP on `socket` until the task is dropped (aborted). Queries in flight
/// (forwarded ones wait for their upstream) are owned by the server and end with it.
pub async fn serve_udp(socket: UdpSocket, records: Records, upstreams: Vec<SocketAddr>) {
    let socket = Arc::new(socket);
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            Some(_) = inflight.join_next(), if !inflight.is_empty() => continue,
        };
        let Ok((len, client)) = received else {
            continue;
        };
        let query = buf[..len].to_vec();
        let (socket, records, upstreams) = (socket.clone(), records.clone(), upstreams.clone());
        inflight.spawn(async move {
            if let Some(mut reply) = answer(&query, &records, &upstreams).await {
                if reply.len() > UDP_LIMIT {
                    reply = truncate(&reply);
                }
                let _ = socket.send_to(&reply, client).await;
            }
        });
    }
}

/// Serves DNS over TCP on `listener` until the task is dropped (aborted), which also closes
/// every open connection: a server in a task's namespace must let go of it when the task
/// goes.
pub async fn serve_tcp(listener: TcpListener, records: Records, upstreams: Vec<SocketAddr>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((conn, _)) = accepted else {
            continue;
        };
        let (records, upstreams) = (records.clone(), upstreams.clone());
        connections.spawn(async move {
            let _ = serve_connection(conn, &records, &upstreams).await;
        });
    }
}

async fn serve_connection(
    mut conn: TcpStream,
    records: &Records,
    upstreams: &[SocketAddr],
) -> std::io::Result<()> {
    loop {
        let len = match conn.read_u16().await {
            Ok(len) => len as usize,
            Err(_) => return Ok(()),
        };
        let mut query = vec![0u8; len];
        conn.read_exact(&mut query).await?;
        if let Some(reply) = answer(&query, records, upstreams).await {
            // Fits: hickory's encoder stops at 65535 bytes and sets TC (tested).
            conn.write_u16(reply.len() as u16).await?;
            conn.write_all(&reply).await?;
        }
    }
}

/// The answer to one query: from the records, or from an upstream resolver.
async fn answer(query: &[u8], records: &Records, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    match respond(query, records) {
        Response::Drop => None,
        Response::Reply(reply) => encode(&reply),
        Response::Forward { unanswered } => match forward(query, upstreams).await {
            Some(reply) => Some(reply),
            None => encode(&unanswered),
        },
    }
}

/// What to do with one packet, decided from the records alone (no IO, so it can be tested
/// with any bytes at all).
#[derive(Debug)]
enum Response {
    /// Not a query (too short for a header, or a response): answering could loop.
    Drop,
    /// The answer, from the records or an error.
    Reply(Message),
    /// A name outside the network's: ask the upstreams, else reply `unanswered` (SERVFAIL).
    Forward { unanswered: Message },
}

fn respond(query: &[u8], records: &Records) -> Response {
    let Some(header) = query
        .get(..Header::len())
        .and_then(|bytes| Header::read(&mut BinDecoder::new(bytes)).ok())
    else {
        return Response::Drop;
    };
    if header.message_type() != MessageType::Query {
        return Response::Drop;
    }
    let message = match Message::from_vec(query) {
        Ok(message) if message.queries().len() == 1 => message,
        // Unreadable, or not exactly one question: say so, with the query's ID.
        _ => return Response::Reply(error_reply(&header, None, ResponseCode::FormErr)),
    };
    let question = &message.queries()[0];
    if message.op_code() != OpCode::Query {
        return Response::Reply(error_reply(&header, Some(question), ResponseCode::NotImp));
    }
    if question.query_class() == DNSClass::IN {
        if let Some(addrs) = records.lookup(question.name()) {
            // A known name has only A records: any other type gets an empty answer, NOERROR
            // (so a resolver asking AAAA first does not give up on the name).
            let addrs = if question.query_type() == RecordType::A {
                addrs
            } else {
                Vec::new()
            };
            let mut reply = error_reply(&header, Some(question), ResponseCode::NoError);
            reply.add_answers(
                addrs.into_iter().map(|addr| {
                    Record::from_rdata(question.name().clone(), TTL, RData::A(A(addr)))
                }),
            );
            return Response::Reply(reply);
        }
    }
    // `tasks.NAME` of a service the network does not have: it exists nowhere else either.
    if is_tasks_name(question.name()) {
        return Response::Reply(error_reply(&header, Some(question), ResponseCode::NXDomain));
    }
    Response::Forward {
        unanswered: error_reply(&header, Some(question), ResponseCode::ServFail),
    }
}

/// Whether `name` is `tasks.SERVICE` (two labels, the first `tasks`).
fn is_tasks_name(name: &Name) -> bool {
    let mut labels = name.iter();
    matches!(
        (labels.next(), labels.next(), labels.next()),
        (Some(first), Some(_), None) if first.eq_ignore_ascii_case(b"tasks")
    )
}

/// A reply to `query` without records: same ID, opcode and RD flag, authoritative, RA set,
/// the question echoed if there is one.
fn error_reply(query: &Header, question: Option<&Query>, rcode: ResponseCode) -> Message {
    let mut reply = Message::error_msg(query.id(), query.op_code(), rcode);
    reply
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    if let Some(question) = question {
        reply.add_query(question.clone());
    }
    reply
}

/// The wire form of a reply; `None` (nothing sent) if hickory cannot encode it, which
/// only a name longer than DNS allows could cause, and those do not parse.
fn encode(reply: &Message) -> Option<Vec<u8>> {
    reply.to_vec().ok()
}

/// Asks each upstream in turn over UDP; the first answer wins.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let local: SocketAddr = if upstream.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let Ok(socket) = UdpSocket::bind(local).await else {
            continue;
        };
        if socket.send_to(query, upstream).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((len, from))) =
            tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buf)).await
        {
            if from == *upstream && len >= 2 && buf[..2] == query[..2] {
                buf.truncate(len);
                return Some(buf);
            }
        }
    }
    None
}

/// The reply without its records and with TC set: the client retries over TCP. A reply
/// (from an upstream) hickory cannot read keeps only its header.
fn truncate(reply: &[u8]) -> Vec<u8> {
    if let Some(truncated) = Message::from_vec(reply)
        .ok()
        .and_then(|message| message.truncate().to_vec().ok())
    {
        return truncated;
    }
    let mut out = reply[..reply.len().min(Header::len())].to_vec();
    if out.len() == Header::len() {
        out[2] |= 0x02;
        out[4..12].fill(0);
    }
    out
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
