//! The server side of the cluster port: TCP connections in, finished TLS streams out, for
//! tonic to serve.
//!
//! Apart from the configs because this is where time and misbehaving peers are dealt
//! with: each handshake runs in a task of its own with a deadline, so a silent or slow
//! client delays nobody else, and nothing a client does ends the stream (which would stop
//! the server).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::configure_socket;

/// A client that has not finished its TLS handshake by then is dropped, so stalled or
/// malicious peers cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an accept error such as running out of file descriptors, wait before retrying
/// instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Connections whose handshake finished but that the server has not picked up yet.
const ACCEPTED_QUEUE: usize = 64;

/// Accepts connections on `listener` and yields those that complete a TLS handshake, for
/// `tonic::transport::Server::serve_with_incoming_shutdown` (tonic reads the client's
/// certificates from the stream, so `Request::peer_certs` works in handlers).
///
/// Each handshake runs in its own task with a 10 s limit, so a slow or silent client delays
/// nobody else. Failed handshakes are logged at debug and skipped; accept errors (such as
/// running out of file descriptors) are logged and retried. The stream therefore never
/// yields an error and never ends on its own; dropping it (server shutdown) closes the
/// listener. Must be called inside a Tokio runtime.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, io::Error>> + Send + 'static
{
    tls_incoming_on(listener, config, tokio::runtime::Handle::current())
}

/// [`tls_incoming`], with the handshakes run on `handshakes` rather than the runtime that
/// accepts: the cluster port is served on Raft's runtime, and a thousand nodes reconnecting
/// to a new leader at once must not spend its threads on key exchanges while Raft waits.
pub fn tls_incoming_on(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshakes: tokio::runtime::Handle,
) -> impl Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, io::Error>> + Send + 'static
{
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(accept_loop(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
        tx,
        handshakes,
    ));
    ReceiverStream::new(rx)
}

type Accepted = Result<tokio_rustls::server::TlsStream<TcpStream>, io::Error>;

/// The task behind [`tls_incoming`]: accepts TCP connections and hands each to its own
/// handshake task, which passes the finished TLS stream to `tx`.
async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<Accepted>,
    handshakes: tokio::runtime::Handle,
) {
    loop {
        let accepted = tokio::select! {
            // The server dropped the stream: stop listening.
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_per_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection was lost before it was accepted");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept connections on the cluster port; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if let Err(e) = configure_socket(&tcp) {
            tracing::debug!(%peer, error = %e, "cannot set socket options");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    if tx.send(Ok(tls)).await.is_err() {
                        tracing::debug!(%peer, "server shutting down; connection dropped");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
