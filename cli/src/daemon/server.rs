//! The two gRPC endpoints of `skiffd`: the cluster port (mutual TLS, every node) and the
//! local unix socket (root-only, for the CLI on the host).

use std::path::Path;
use std::sync::Arc;

use super::measured::Measured;
use anyhow::Context;
use manager::ca::identity::local_caller;
use manager::certificates::CaService;
use manager::controlapi::ControlService;
use manager::dispatcherapi::DispatcherService;
use manager::raft::MAX_RAFT_MESSAGE_BYTES;
use manager::raftapi::RaftService;
use manager::RunningManager;
use proto::ca_server::CaServer;
use proto::control_server::ControlServer;
use proto::dispatcher_server::DispatcherServer;
use proto::logs_server::LogsServer;
use proto::raft_server::RaftServer;
use proto::swarm_server::{Swarm, SwarmServer};
use proto::{MAX_MESSAGE_BYTES, MAX_RESPONSE_BYTES};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use super::logs::{AgentSlot, LogsService};

/// A running server and the switch that stops it.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The cluster port's interceptor: the caller its certificate names, with the rights the
/// cluster grants that node today when this node runs a manager (see
/// `manager::ca::access`); by certificate alone on a worker, which holds no store.
fn cluster_caller(
    slot: Arc<RunningManager>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req| {
        let manager = slot.current();
        let admissions = manager.as_ref().map(|m| m.store().admissions());
        manager::ca::access::intercept(req, admissions.as_deref())
    }
}

/// The span of one request: named `rpc`, with the gRPC method's path, under the node's
/// span. The parent is given, not taken from the context: hyper serves each connection in
/// a task of its own, which has no span.
fn rpc_span(node: &tracing::Span, req: &http::Request<()>) -> tracing::Span {
    tracing::info_span!(parent: node, "rpc", method = %req.uri().path())
}

/// The path prefix of the Raft service's methods.
const RAFT_METHODS: &str = "/skiff.v1.Raft/";
/// A node's heartbeat: answered beside Raft, since it only notes the time (no store lock,
/// no write), so a leader whose other work saturates its runtime still hears its nodes and
/// does not mark them down for its own slowness.
const HEARTBEAT_METHOD: &str = "/skiff.v1.Dispatcher/Heartbeat";

/// Whether a call is served on the cluster port's own runtime rather than handed over.
fn served_beside_raft(path: &str) -> bool {
    path.starts_with(RAFT_METHODS) || path == HEARTBEAT_METHOD
}

/// Runs every request but the Raft service's and heartbeats on `runtime`; see
/// [`serve_cluster_port`].
#[derive(Clone)]
struct OutsideRaft {
    runtime: tokio::runtime::Handle,
}

impl<S> tower::Layer<S> for OutsideRaft {
    type Service = OnRuntime<S>;

    fn layer(&self, inner: S) -> OnRuntime<S> {
        OnRuntime {
            inner,
            runtime: self.runtime.clone(),
        }
    }
}

/// A service whose calls, but the Raft service's and heartbeats, run as tasks of another
/// runtime.
#[derive(Clone)]
struct OnRuntime<S> {
    inner: S,
    runtime: tokio::runtime::Handle,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Aborts a task when the call it serves is dropped (the client went away).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S, B> tower::Service<http::Request<B>> for OnRuntime<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        // The clone that was made ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if served_beside_raft(req.uri().path()) {
            let call = inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        let runtime = self.runtime.clone();
        Box::pin(async move {
            // Polled inside the request's span (tonic enters it when it polls the call).
            let span = tracing::Span::current();
            let task = runtime.spawn(async move { inner.call(req).await }.instrument(span));
            let _abort = AbortOnDrop(task.abort_handle());
            task.await?.map_err(Into::into)
        })
    }
}

/// Serves Control, Ca, Raft and Dispatcher on the cluster port. Callers are identified by
/// their certificate and checked against the cluster's current state; each service checks
/// what the caller may do.
///
/// With `raft_runtime`, the port (HTTP/2 over TLS, the Raft service and nodes' heartbeats)
/// is served there, and TLS handshakes and every other call run on the caller's runtime: a
/// manager saturated by reconciliation, or by every node reconnecting at once, still
/// answers votes, Raft and node heartbeats, leadership confirmations and HTTP/2 pings at
/// once (issue 20).
pub fn serve_cluster_port(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    slot: Arc<RunningManager>,
    agent: AgentSlot,
    node: tracing::Span,
    raft_runtime: Option<tokio::runtime::Handle>,
) -> anyhow::Result<Running> {
    let (stop, rx) = watch::channel(false);
    let tls_caller = cluster_caller(slot.clone());
    let here = tokio::runtime::Handle::current();
    let port_runtime = raft_runtime.unwrap_or_else(|| here.clone());
    let handshakes = here.clone();
    let router = Server::builder()
        .trace_fn(move |req| rpc_span(&node, req))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .layer(OutsideRaft { runtime: here })
        .add_service(InterceptedService::new(
            Measured(
                ControlServer::new(ControlService::new(slot.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            ),
            tls_caller.clone(),
        ))
        .add_service(InterceptedService::new(
            CaServer::new(CaService::new(slot.clone())),
            tls_caller.clone(),
        ))
        .add_service(InterceptedService::new(
            RaftServer::new(RaftService::new(slot.clone()))
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES),
            tls_caller.clone(),
        ))
        .add_service(InterceptedService::new(
            LogsServer::new(LogsService::new(slot.clone(), agent)),
            tls_caller.clone(),
        ))
        .add_service(InterceptedService::new(
            DispatcherServer::new(DispatcherService::new(slot)),
            tls_caller,
        ));
    // Accepting must happen where the port is served, and the listener must wake that
    // runtime, not the one it was bound on; the TLS handshakes run on this one.
    let listener = listener
        .into_std()
        .context("cannot move the cluster port to Raft's threads")?;
    let _entered = port_runtime.enter();
    let listener = TcpListener::from_std(listener)
        .context("cannot move the cluster port to Raft's threads")?;
    let incoming = crate::tls::tls_incoming_on(listener, tls, handshakes);
    let task = port_runtime.spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stopped(rx))
            .await
        {
            tracing::error!(error = %e, "the cluster port stopped");
        }
    });
    Ok(Running { stop, task })
}

/// Serves the local API on a unix socket only root can open.
pub fn serve_local_socket<S: Swarm>(
    path: &Path,
    swarm: S,
    slot: Arc<RunningManager>,
    agent: AgentSlot,
) -> anyhow::Result<Running> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to root", path.display()))?;
    let (stop, rx) = watch::channel(false);
    let current = agent.clone();
    let router = Server::builder()
        // The node this socket serves changes with `swarm init`, `join` and `leave`: each
        // request is put under the node it is in when the request comes.
        .trace_fn(move |req| {
            let node_id = current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(_, id)| id.clone());
            match node_id {
                Some(id) => rpc_span(&tracing::info_span!(parent: None, "node", %id), req),
                None => rpc_span(&tracing::Span::none(), req),
            }
        })
        .add_service(InterceptedService::new(
            SwarmServer::new(swarm),
            local_caller,
        ))
        .add_service(InterceptedService::new(
            LogsServer::new(LogsService::new(slot.clone(), agent)),
            local_caller,
        ))
        .add_service(InterceptedService::new(
            Measured(
                ControlServer::new(ControlService::new(slot))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            ),
            local_caller,
        ));
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let task = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, stopped(rx))
            .await
        {
            tracing::error!(error = %e, "the local socket stopped");
        }
    });
    Ok(Running { stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths kept beside Raft are the generated services' own (a renamed service must
    /// not silently send heartbeats back to the busy runtime), and nothing else is kept there.
    #[test]
    fn heartbeats_and_raft_calls_are_served_beside_raft_and_nothing_else() {
        let path = |service: &str, method: &str| format!("/{service}/{method}");
        let dispatcher = proto::dispatcher_server::SERVICE_NAME;
        assert!(served_beside_raft(&path(dispatcher, "Heartbeat")));
        assert!(served_beside_raft(&path(
            proto::raft_server::SERVICE_NAME,
            "AppendEntries"
        )));
        assert!(!served_beside_raft(&path(dispatcher, "Session")));
        assert!(!served_beside_raft(&path(dispatcher, "UpdateTaskStatus")));
        assert!(!served_beside_raft(&path(
            proto::control_server::SERVICE_NAME,
            "ListServices"
        )));
    }
}
