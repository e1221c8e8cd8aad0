//! The userspace routing mesh against a direct connection, on loopback: a small HTTP
//! response to each request, one new TCP connection per request (as a mesh sees a browser
//! or a load balancer without keep-alive), and 32 concurrent clients; then one long-lived
//! connection per client with requests in turn. Everything (clients, proxy, 3 backends)
//! shares this machine's cores.
//!
//! Run: `cargo bench -p worker --bench proxy`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use worker::net::proxy::{bind_tcp, serve_tcp, Backends};

const CLIENTS: usize = 32;
const RUN: Duration = Duration::from_secs(4);
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nhello, skiff\n";

/// A backend answering each request (anything ending with a blank line) with RESPONSE.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if conn.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn one_request(conn: &mut TcpStream) {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 256];
    while got < RESPONSE.len() {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed early");
        got += n;
    }
}

/// Requests/s and latency percentiles (ms) over RUN with CLIENTS clients.
async fn measure(target: SocketAddr, new_connection_each: bool) -> (f64, f64, f64) {
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..CLIENTS {
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut conn: Option<TcpStream> = None;
            while started.elapsed() < RUN {
                let t = Instant::now();
                if new_connection_each || conn.is_none() {
                    let c = TcpStream::connect(target).await.unwrap();
                    let _ = c.set_nodelay(true);
                    conn = Some(c);
                }
                one_request(conn.as_mut().unwrap()).await;
                if new_connection_each {
                    conn = None;
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backends = vec![backend().await, backend().await, backend().await];
        let direct = backends[0];
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let proxy = listener.local_addr().unwrap();
        tokio::spawn(serve_tcp(listener, Backends::new(backends)));

        println!("userspace routing mesh vs direct, loopback, {CLIENTS} clients, {RUN:?} per row");
        println!(
            "machine: {} CPUs shared by clients, proxy and 3 backends",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!();
        println!(
            "{:<44} {:>10} {:>8} {:>8} {:>8}",
            "case", "req/s", "p50 ms", "p99 ms", "vs direct"
        );
        for (label, fresh) in [
            ("new connection per request", true),
            ("keep-alive connections", false),
        ] {
            let (d_rate, d50, d99) = measure(direct, fresh).await;
            let (p_rate, p50, p99) = measure(proxy, fresh).await;
            println!(
                "{:<44} {:>10.0} {:>8.2} {:>8.2} {:>8}",
                format!("direct, {label}"),
                d_rate,
                d50,
                d99,
                "100%"
            );
            println!(
                "{:<44} {:>10.0} {:>8.2} {:>8.2} {:>7.0}%",
                format!("through the proxy, {label}"),
                p_rate,
                p50,
                p99,
                p_rate / d_rate * 100.0
            );
        }
        println!();
        println!("rerun: cargo bench -p worker --bench proxy");
    });
}
