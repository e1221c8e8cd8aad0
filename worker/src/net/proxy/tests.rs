use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::*;

/// A TCP backend that answers every connection with its name, after reading what the
/// client sent up to its half-close.
async fn tcp_backend(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = Vec::new();
                conn.read_to_end(&mut request).await.unwrap();
                let reply = format!("{name}:{}", request.len());
                conn.write_all(reply.as_bytes()).await.unwrap();
            });
        }
    });
    (addr, task)
}

/// A port nothing listens on (bound, then closed).
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn proxy(backends: &Backends) -> SocketAddr {
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(listener, backends.clone()));
    addr
}

/// One request through the proxy: sends `body`, half-closes, returns the reply.
async fn request(proxy: SocketAddr, body: &[u8]) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(proxy).await?;
    conn.write_all(body).await?;
    conn.shutdown().await?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await?;
    if reply.is_empty() {
        return Err(std::io::Error::other("empty reply"));
    }
    Ok(reply)
}

#[tokio::test]
async fn connections_spread_evenly_over_the_backends() {
    let mut addrs = Vec::new();
    for name in ["a", "b", "c"] {
        addrs.push(tcp_backend(name).await.0);
    }
    let backends = Backends::new(addrs);
    let proxy = proxy(&backends).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..3000 {
        let reply = request(proxy, b"x").await.unwrap();
        *counts.entry(reply).or_default() += 1;
    }
    for name in ["a:1", "b:1", "c:1"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (900..=1100).contains(&n),
            "{name}: {n} of 3000 ({counts:?})"
        );
    }
}

#[tokio::test]
async fn a_half_closed_request_still_gets_its_reply() {
    let (addr, _task) = tcp_backend("a").await;
    let proxy = proxy(&Backends::new(vec![addr])).await;
    let body = vec![7u8; 300_000];
    assert_eq!(request(proxy, &body).await.unwrap(), "a:300000");
}

#[tokio::test]
async fn a_dead_backend_is_skipped_without_failing_a_request() {
    let (alive, _task) = tcp_backend("alive").await;
    let backends = Backends::new(vec![dead_port().await, alive]);
    let proxy = proxy(&backends).await;
    for _ in 0..50 {
        assert_eq!(request(proxy, b"").await.unwrap(), "alive:0");
    }
}

#[tokio::test]
async fn backends_leave_and_join_the_rotation_at_once_without_failed_requests() {
    let (a, _ta) = tcp_backend("a").await;
    let (b, _tb) = tcp_backend("b").await;
    let (c, _tc) = tcp_backend("c").await;
    let backends = Backends::new(vec![a, b]);
    let proxy = proxy(&backends).await;
    // Load runs all along while the set changes.
    let load = tokio::spawn(async move {
        let mut failures = 0;
        for _ in 0..600 {
            if request(proxy, b"").await.is_err() {
                failures += 1;
            }
        }
        failures
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    backends.set(vec![a, b, c]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    backends.set(vec![b, c]);
    assert_eq!(
        load.await.unwrap(),
        0,
        "no request fails while the set changes"
    );
    // From now on a is out of the rotation, c in it.
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(request(proxy, b"").await.unwrap());
    }
    assert!(!seen.iter().any(|r| r.starts_with("a:")), "{seen:?}");
    assert!(seen.iter().any(|r| r.starts_with("c:")), "{seen:?}");
}

#[tokio::test]
async fn with_no_backend_the_connection_is_closed() {
    let proxy = proxy(&Backends::default()).await;
    assert!(request(proxy, b"x").await.is_err());
}

/// A UDP backend that echoes datagrams prefixed with its name.
async fn udp_backend(name: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let mut reply = format!("{name}:").into_bytes();
            reply.extend_from_slice(&buf[..len]);
            socket.send_to(&reply, from).await.unwrap();
        }
    });
    addr
}

#[tokio::test]
async fn udp_flows_are_spread_and_answered() {
    let backends = Backends::new(vec![udp_backend("a").await, udp_backend("b").await]);
    let listen = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let proxy = listen.local_addr().unwrap();
    tokio::spawn(serve_udp(listen, backends));
    let mut seen = HashMap::<String, usize>::new();
    for _ in 0..10 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(proxy).await.unwrap();
        // A flow stays with its backend.
        let mut names = Vec::new();
        for i in 0..3 {
            client.send(format!("ping{i}").as_bytes()).await.unwrap();
            let mut buf = [0u8; 2048];
            let len = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("a reply")
                .unwrap();
            let reply = String::from_utf8_lossy(&buf[..len]).into_owned();
            assert!(reply.ends_with(&format!("ping{i}")), "{reply}");
            names.push(reply.split(':').next().unwrap().to_owned());
        }
        names.dedup();
        assert_eq!(names.len(), 1, "one flow, one backend: {names:?}");
        *seen.entry(names.remove(0)).or_default() += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = bind_tcp(taken.local_addr().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("another program"), "{err}");
}
