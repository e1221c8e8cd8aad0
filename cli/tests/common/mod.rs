//! Shared by the `skiff` CLI integration tests: running the built binary, and a fake skiffd
//! on a unix socket that serves the Swarm, Control and Logs services, routes every call by
//! method name to the test file's own handler (so new RPCs in the proto need no change here)
//! and records what it got.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use proto::{GetNodeRequest, GetNodeResponse, ListNodesRequest, ListNodesResponse, Node};
use tonic::body::Body;
use tonic::Status;

pub const SELF_ID: &str = "selfnode00000000000000001";
pub const WORKER_ID: &str = "workernode000000000000002";

pub fn skiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .env_remove("SKIFF_HOST")
        .env_remove("SKIFF_TLS_DIR")
        .output()
        .expect("run skiff")
}

/// Asserts failure with exactly one line on stderr, `Error: ...`, without gRPC noise and
/// with nothing on stdout, and returns that line.
pub fn fails_with_one_sentence(args: &[&str]) -> String {
    let out = skiff(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "skiff {args:?} succeeded; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "skiff {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "skiff {args:?}: not one line: {stderr:?}");
    let line = lines[0];
    assert!(line.starts_with("Error: "), "{line}");
    for noise in ["status:", "code:", "Status {", "tonic", "transport error"] {
        assert!(!line.contains(noise), "skiff {args:?}: {line}");
    }
    assert!(out.stdout.is_empty(), "skiff {args:?} printed to stdout");
    line.to_string()
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `skiff -H <the daemon> args...`.
pub fn run<T>(daemon: &Daemon<T>, args: &[&str]) -> Run {
    let mut full = vec!["-H", daemon.host.as_str()];
    full.extend_from_slice(args);
    let out = skiff(&full);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like `run`, asserting success with nothing on stderr; returns stdout.
pub fn ok<T>(daemon: &Daemon<T>, args: &[&str]) -> String {
    let r = run(daemon, args);
    assert_eq!(r.code, Some(0), "skiff {args:?}: {}", r.stderr);
    assert!(r.stderr.is_empty(), "skiff {args:?}: {}", r.stderr);
    r.stdout
}

/// The node among `nodes` whose ID starts with `name` or whose hostname is `name`.
pub fn find_node(nodes: Vec<Node>, name: &str) -> Result<Node, Status> {
    nodes
        .into_iter()
        .find(|n| {
            n.meta.as_ref().unwrap().id.starts_with(name)
                || n.description.as_ref().unwrap().hostname == name
        })
        .ok_or_else(|| Status::not_found(format!("no such node: {name}")))
}

/// What the fake daemon got, and the test file's own data (`T`: services, tasks, ...).
pub struct State<T> {
    /// `Method request-debug` of every call.
    pub calls: Mutex<Vec<String>>,
    pub data: T,
}

impl<T> State<T> {
    /// The recorded calls of `method`, oldest first.
    pub fn calls(&self, method: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with(&format!("{method} ")))
            .cloned()
            .collect()
    }

    pub fn record(&self, method: &str, req: &impl std::fmt::Debug) {
        self.calls.lock().unwrap().push(format!("{method} {req:?}"));
    }
}

pub type Reply = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// A test file's answers: the state, the method name (`Info`, `ListNodes`, ...) and the
/// request; usually a `match` on the name with `unary` in each arm.
pub type Handler<T> = fn(Arc<State<T>>, String, http::Request<Body>) -> Reply;

/// Decodes one unary request, records it, answers with `f`.
pub async fn unary<T, Req, Resp>(
    state: &Arc<State<T>>,
    method: &str,
    req: http::Request<Body>,
    f: impl FnOnce(&T, Req) -> Result<Resp, Status> + Send + 'static,
) -> http::Response<Body>
where
    T: Send + Sync + 'static,
    Req: prost::Message + Default + std::fmt::Debug + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    let (state, method) = (state.clone(), method.to_string());
    let f = Mutex::new(Some(f));
    let svc = tower::service_fn(move |r: tonic::Request<Req>| {
        let r = r.into_inner();
        state.record(&method, &r);
        let f = f.lock().unwrap().take().expect("one call");
        std::future::ready(f(&state.data, r).map(tonic::Response::new))
    });
    tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default())
        .unary(svc, req)
        .await
}

/// Answers `ListNodes` with `nodes`, and `GetNode` (any other `method`) with the one of
/// them it names.
pub async fn read_nodes<T: Send + Sync + 'static>(
    state: &Arc<State<T>>,
    method: &str,
    req: http::Request<Body>,
    nodes: Vec<Node>,
) -> http::Response<Body> {
    if method == "ListNodes" {
        unary(state, method, req, |_, _: ListNodesRequest| {
            Ok(ListNodesResponse { nodes })
        })
        .await
    } else {
        unary(state, method, req, |_, r: GetNodeRequest| {
            find_node(nodes, &r.node).map(|n| GetNodeResponse { node: Some(n) })
        })
        .await
    }
}

macro_rules! service {
    ($name:ident, $full:literal) => {
        pub struct $name<T>(Arc<State<T>>, Handler<T>);
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name(self.0.clone(), self.1)
            }
        }
        impl<T> tonic::server::NamedService for $name<T> {
            const NAME: &'static str = $full;
        }
        impl<T> tower::Service<http::Request<Body>> for $name<T> {
            type Response = http::Response<Body>;
            type Error = Infallible;
            type Future = Reply;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: http::Request<Body>) -> Reply {
                let method = req
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                (self.1)(self.0.clone(), method, req)
            }
        }
    };
}

service!(SwarmSvc, "skiff.v1.Swarm");
service!(ControlSvc, "skiff.v1.Control");
service!(LogsSvc, "skiff.v1.Logs");

/// A running fake daemon; stops when dropped.
pub struct Daemon<T> {
    pub state: Arc<State<T>>,
    pub host: String,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl<T: Send + Sync + 'static> Daemon<T> {
    /// Serves `handler` over `data` on a fresh socket in a temporary directory.
    pub fn start(data: T, handler: Handler<T>) -> Daemon<T> {
        let dir = tempfile::tempdir().unwrap();
        let sock: PathBuf = dir.path().join("skiffd.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State {
            calls: Mutex::default(),
            data,
        });
        let listener = rt
            .block_on(async { tokio::net::UnixListener::bind(&sock) })
            .unwrap();
        let s = state.clone();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(SwarmSvc(s.clone(), handler))
                .add_service(ControlSvc(s.clone(), handler))
                .add_service(LogsSvc(s, handler))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
                .unwrap();
        });
        Daemon {
            state,
            host: format!("unix://{}", sock.display()),
            _dir: dir,
            _rt: rt,
        }
    }
}
