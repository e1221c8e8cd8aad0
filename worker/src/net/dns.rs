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

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// Seconds a client may cache an answer: short, since tasks come and go.
const TTL: u32 = 5;
/// The classic UDP payload limit (answers above it are truncated).
const UDP_LIMIT: usize = 512;
/// How long to wait for an upstream resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;

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
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
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
            conn.write_u16(reply.len() as u16).await?;
            conn.write_all(&reply).await?;
        }
    }
}

/// The answer to one query: from the records, or from an upstream resolver.
async fn answer(query: &[u8], records: &Records, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let question = match Question::parse(query) {
        Ok(q) => q,
        Err(Malformed::Unanswerable) => return None,
        Err(Malformed::Question) => return Some(error_reply(query, RCODE_FORMERR)),
    };
    if question.class == CLASS_IN {
        if let Some(addrs) = records.lookup(&question.name) {
            let addrs = if question.qtype == TYPE_A {
                addrs
            } else {
                Vec::new()
            };
            return Some(reply(query, &question, &addrs));
        }
    }
    // Names of the network's service namespace that do not exist.
    let lower = question.name.to_ascii_lowercase();
    if lower.starts_with("tasks.") && !lower.trim_end_matches('.')[6..].contains('.') {
        return Some(error_reply(query, RCODE_NXDOMAIN));
    }
    match forward(query, upstreams).await {
        Some(reply) => Some(reply),
        None => Some(error_reply(query, RCODE_SERVFAIL)),
    }
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

/// Why a query cannot be answered from the records.
#[derive(Debug)]
enum Malformed {
    /// Too short even for a header: nothing to answer.
    Unanswerable,
    /// A header, but no readable single question.
    Question,
}

/// The one question of a query.
#[derive(Debug)]
struct Question {
    name: String,
    qtype: u16,
    class: u16,
    /// Where the question ends in the query.
    end: usize,
}

impl Question {
    fn parse(query: &[u8]) -> Result<Self, Malformed> {
        if query.len() < 12 {
            return Err(Malformed::Unanswerable);
        }
        let is_response = query[2] & 0x80 != 0;
        if is_response {
            return Err(Malformed::Unanswerable);
        }
        let questions = u16::from_be_bytes([query[4], query[5]]);
        if questions != 1 {
            return Err(Malformed::Question);
        }
        let mut labels = Vec::new();
        let mut at = 12;
        loop {
            let len = *query.get(at).ok_or(Malformed::Question)? as usize;
            at += 1;
            if len == 0 {
                break;
            }
            // Compression pointers have no place in a question.
            if len > 63 {
                return Err(Malformed::Question);
            }
            let label = query.get(at..at + len).ok_or(Malformed::Question)?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            at += len;
        }
        let fixed = query.get(at..at + 4).ok_or(Malformed::Question)?;
        Ok(Self {
            name: labels.join("."),
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            class: u16::from_be_bytes([fixed[2], fixed[3]]),
            end: at + 4,
        })
    }
}

/// A response header for `query`: same ID and RD flag, QR and RA set, `rcode`.
fn header(query: &[u8], rcode: u8, questions: u16, answers: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&query[..2]);
    h.push(0x80 | (query[2] & 0x01) | 0x04); // QR, authoritative, RD as asked
    h.push(0x80 | rcode); // RA
    h.extend_from_slice(&questions.to_be_bytes());
    h.extend_from_slice(&answers.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

fn reply(query: &[u8], question: &Question, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let mut out = header(query, 0, 1, addrs.len() as u16);
    out.extend_from_slice(&query[12..question.end]);
    for addr in addrs {
        out.extend_from_slice(&[0xc0, 12]); // the name, by pointer to the question
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

fn error_reply(query: &[u8], rcode: u8) -> Vec<u8> {
    match Question::parse(query) {
        Ok(q) => {
            let mut out = header(query, rcode, 1, 0);
            out.extend_from_slice(&query[12..q.end]);
            out
        }
        Err(_) => header(query, rcode, 0, 0),
    }
}

/// The reply without its records and with TC set: the client retries over TCP.
fn truncate(reply: &[u8]) -> Vec<u8> {
    let end = Question::parse_end(reply).unwrap_or(12);
    let mut out = reply[..end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    out
}

impl Question {
    /// Where the question section of a message (query or reply) ends.
    fn parse_end(message: &[u8]) -> Option<usize> {
        let mut at = 12;
        loop {
            let len = *message.get(at)? as usize;
            at += 1;
            if len == 0 {
                return Some(at + 4).filter(|end| *end <= message.len());
            }
            at += len;
        }
    }
}

#[cfg(test)]
mod tests;
