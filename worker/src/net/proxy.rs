//! The userspace routing mesh: accepts connections (TCP) and datagrams (UDP) on a published
//! port and spreads new ones round-robin over the service's running tasks, for nodes where
//! the kernel path (nftables) is not available.
//!
//! The set of backends changes under the proxy as tasks come and go ([`Backends::set`]): a
//! task that leaves gets no new connection from then on while its open connections run to
//! their end, and a new task is used at once. A backend that refuses a connection (a task
//! that just died) is skipped for the next one, so the client never sees the failure.
//! Established TCP connections have no idle timeout: long-lived quiet connections keep
//! working, unlike Swarm's IPVS mesh, which drops them after 15 minutes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::Instrument as _;

/// How long a connection attempt to one backend may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a UDP flow (one client address) keeps its backend without traffic.
const UDP_FLOW_IDLE: Duration = Duration::from_secs(30);
/// Largest UDP datagram carried.
const MAX_DATAGRAM: usize = 65_535;

/// The tasks a published port spreads over; cheap to clone, shared with the proxies.
#[derive(Clone, Default)]
pub struct Backends {
    inner: Arc<BackendsInner>,
}

#[derive(Default)]
struct BackendsInner {
    list: RwLock<Arc<[SocketAddr]>>,
    next: AtomicUsize,
}

impl Backends {
    /// Backends to start with.
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        let backends = Self::default();
        backends.set(addrs);
        backends
    }

    /// Replaces the set: new connections use only these from now on.
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        *self.inner.list.write().unwrap_or_else(|e| e.into_inner()) = addrs.into();
    }

    /// The current set.
    pub fn current(&self) -> Arc<[SocketAddr]> {
        self.inner
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The order in which to try backends for one new connection: the next in the
    /// rotation first, then the others, each once.
    fn order(&self) -> Vec<SocketAddr> {
        let list = self.current();
        if list.is_empty() {
            return Vec::new();
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % list.len();
        list[start..]
            .iter()
            .chain(&list[..start])
            .copied()
            .collect()
    }
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The published port could not be bound.
    #[error("cannot listen on {addr} for the routing mesh: {source}; is another program using the port?")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// Binds the published TCP port.
pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Binds the published UDP port.
pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, ProxyError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Serves TCP on `listener` until the task is dropped (abort it to stop publishing; open
/// connections run on their own tasks and end by themselves).
pub async fn serve_tcp(listener: TcpListener, backends: Backends) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let backends = backends.clone();
                tokio::spawn(
                    async move {
                        if let Err(e) = relay_tcp(client, &backends).await {
                            tracing::debug!(%peer, error = %e, "mesh connection ended with an error");
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "routing mesh: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connects the client to the first backend that answers, in rotation order, and copies
/// both ways until both sides have closed (half-closes are passed on).
async fn relay_tcp(mut client: TcpStream, backends: &Backends) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    for addr in backends.order() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok(());
            }
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "backend refused; trying the next"),
            Err(_) => tracing::debug!(%addr, "backend did not answer in time; trying the next"),
        }
    }
    Err(std::io::Error::other("no backend accepted the connection"))
}

/// Serves UDP on `socket` until the task is dropped: each client address is a flow bound to
/// one backend (chosen round-robin when the flow starts) until it has been idle for a while.
pub async fn serve_udp(socket: UdpSocket, backends: Backends) {
    let socket = Arc::new(socket);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(error = %e, "routing mesh: UDP receive failed");
                continue;
            }
        };
        let existing = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned();
        let upstream = match existing {
            Some(upstream) => upstream,
            None => match open_flow(&backends).await {
                Some(upstream) => {
                    let upstream = Arc::new(upstream);
                    flows
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(client, upstream.clone());
                    tokio::spawn(
                        return_flow(socket.clone(), upstream.clone(), client, flows.clone())
                            .in_current_span(),
                    );
                    upstream
                }
                None => continue,
            },
        };
        if let Err(e) = upstream.send(&buf[..len]).await {
            tracing::debug!(%client, error = %e, "routing mesh: UDP forward failed");
        }
    }
}

/// A socket connected to the next backend in rotation.
async fn open_flow(backends: &Backends) -> Option<UdpSocket> {
    for addr in backends.order() {
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let Ok(socket) = UdpSocket::bind(local).await else {
            continue;
        };
        if socket.connect(addr).await.is_ok() {
            return Some(socket);
        }
    }
    None
}

/// Carries a flow's replies back to its client until the flow is idle, then forgets it.
async fn return_flow(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while let Ok(Ok(len)) = tokio::time::timeout(UDP_FLOW_IDLE, upstream.recv(&mut buf)).await {
        if socket.send_to(&buf[..len], client).await.is_err() {
            break;
        }
    }
    flows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&client);
}

#[cfg(test)]
mod tests;
