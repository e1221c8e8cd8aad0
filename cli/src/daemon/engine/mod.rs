//! The Docker Engine API, served by `skiffd` so that the `docker` client, docker-py and
//! other tools drive a skiff swarm unchanged (`docker -H unix:///run/skiff/docker.sock
//! service ls`).
//!
//! The engine is a front end, as the `skiff` CLI is: every handler calls the daemon's own
//! `Swarm`, `Control` and `Logs` services over its local socket (`backend`), so skiff's
//! defaults, validation and access checks apply unchanged, and nothing here reads the store.
//!
//! # Layout
//!
//! - `listen`: `--docker-host` endpoints (unix socket, TCP, mutual TLS) and serving each
//!   connection with hyper's HTTP/1 server.
//! - [`App::handle`]: dockerd's version negotiation (`/v1.24`..`/v1.50` and unversioned
//!   paths) and the headers every answer carries, around the axum router (`routes`).
//! - `decode`: bodies read as Go reads them (names case-insensitive), unknown fields
//!   refused by name; query strings and `filters`.
//! - `types`: Docker's JSON types and their translation to and from skiff's proto.
//! - `routes`: one handler module per resource.
//! - `error`: skiff's errors as dockerd's status codes and `{"message": ...}` bodies.

pub mod backend;
pub mod decode;
pub mod error;
pub mod listen;
pub mod routes;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use tokio::sync::watch;
use tower::ServiceExt as _;

use self::backend::Backend;
use self::error::ApiError;
use self::types::system::{API_VERSION, MIN_API_VERSION};

pub use listen::{ListenOptions, DEFAULT_HOST};

/// The API version a request asked for (its path's `/vX.Y`, or the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    fn parse(s: &str) -> Option<Self> {
        let (major, minor) = s.split_once('.')?;
        if major.is_empty() || minor.is_empty() {
            return None;
        }
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }
}

/// What the handlers share.
pub struct Engine {
    backend: Backend,
}

impl Engine {
    /// The daemon's own services.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

/// The router with its state, and the version handling around it.
#[derive(Clone)]
pub struct App {
    router: axum::Router,
}

impl App {
    /// The API of the daemon whose local socket is `socket`.
    pub fn new(socket: PathBuf) -> Self {
        let engine = Arc::new(Engine {
            backend: Backend::new(socket),
        });
        Self {
            router: routes::router().with_state(engine),
        }
    }

    /// Answers one request: strips and checks the API version as dockerd does, routes, and
    /// adds the headers dockerd sends with every answer.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = req.into_parts();
        let mut response = match strip_version(&parts.uri) {
            Err(e) => axum::response::IntoResponse::into_response(e),
            Ok((uri, version)) => {
                if let Some(uri) = uri {
                    parts.uri = uri;
                }
                parts.extensions.insert(version);
                let req = Request::from_parts(parts, Body::new(body));
                match self.router.clone().oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        };
        let headers = response.headers_mut();
        headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
        headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
        headers.insert("Ostype", HeaderValue::from_static("linux"));
        headers.insert(
            "Server",
            HeaderValue::from_static(concat!("skiff/", env!("CARGO_PKG_VERSION"), " (linux)")),
        );
        response
    }
}

/// The path without its `/vX.Y` prefix (if it had one) and the version asked for; a
/// version outside what is served gets dockerd's message.
fn strip_version(uri: &axum::http::Uri) -> Result<(Option<axum::http::Uri>, ApiVersion), ApiError> {
    let newest = ApiVersion::parse(API_VERSION).unwrap_or(ApiVersion(1, 50));
    let oldest = ApiVersion::parse(MIN_API_VERSION).unwrap_or(ApiVersion(1, 24));
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, newest));
    };
    let (raw, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(version) = ApiVersion::parse(raw) else {
        return Ok((None, newest));
    };
    if version < oldest {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if version > newest {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    let rebuilt = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    let uri = rebuilt
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid path {path}")))?;
    Ok((Some(uri), version))
}

/// A running Engine API and the switch that stops it.
pub struct Served {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Stops accepting, lets requests in flight finish (a few seconds at most), removes
    /// the unix sockets, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Checks the flags, binds every endpoint and serves the API there, calling the daemon
/// on its local socket `socket`. Fails before serving anything when a flag is wrong or an
/// endpoint cannot be bound.
pub async fn serve(opts: &ListenOptions, socket: PathBuf) -> anyhow::Result<Served> {
    let endpoints = listen::endpoints(opts)?;
    let tls = match (&opts.tls_ca, &opts.tls_cert, &opts.tls_key) {
        (Some(ca), Some(cert), Some(key)) if opts.tls_verify => {
            Some(listen::tls_config(ca, cert, key)?)
        }
        _ => None,
    };
    let bound = listen::bind(&endpoints, tls).await?;
    let app = App::new(socket);
    let (stop, rx) = watch::channel(false);
    let tasks = bound
        .into_iter()
        .map(|b| tokio::spawn(listen::serve(b, app.clone(), rx.clone())))
        .collect();
    for endpoint in &endpoints {
        tracing::info!(endpoint = ?endpoint, "serving the Docker Engine API");
    }
    Ok(Served { stop, tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(path: &str) -> Result<(String, ApiVersion), String> {
        strip_version(&path.parse().unwrap())
            .map(|(uri, v)| (uri.map(|u| u.to_string()).unwrap_or(path.into()), v))
            .map_err(|e| e.message)
    }

    #[test]
    fn versioned_and_unversioned_paths_route_alike() {
        assert_eq!(
            strip("/_ping").unwrap(),
            ("/_ping".into(), ApiVersion(1, 50))
        );
        assert_eq!(
            strip("/v1.41/services?filters=x").unwrap(),
            ("/services?filters=x".into(), ApiVersion(1, 41))
        );
        assert_eq!(strip("/v1.24/info").unwrap().1, ApiVersion(1, 24));
        assert_eq!(strip("/v1.50/info").unwrap().1, ApiVersion(1, 50));
    }

    #[test]
    fn versions_outside_the_range_get_dockerds_messages() {
        assert_eq!(
            strip("/v1.23/info").unwrap_err(),
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
        );
        assert_eq!(
            strip("/v1.51/info").unwrap_err(),
            "client version 1.51 is too new. Maximum supported API version is 1.50"
        );
    }
}
