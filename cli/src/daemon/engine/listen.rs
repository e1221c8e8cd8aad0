//! Where the Engine API listens (`skiffd --docker-host`, dockerd's `-H`) and how each
//! connection is served: a unix socket (mode 0660, root's), plain TCP, or TCP with mutual
//! TLS (`--tlsverify --tlscacert --tlscert --tlskey`, a client without a certificate from
//! that CA refused at the handshake).
//!
//! Plain TCP is refused at start unless `--docker-tcp-insecure` says the operator means it,
//! even on loopback: every local user reaches a loopback port, and this API is as good as
//! root on every node of the swarm. TLS handshakes run in tasks of their own with a
//! deadline (`tls::tls_incoming`), so a silent client delays nobody.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use super::App;

/// Where the API listens unless told otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/skiff/docker.sock";
/// dockerd's port for TLS.
const TLS_PORT: u16 = 2376;
/// dockerd's port for plain TCP.
const PLAIN_PORT: u16 = 2375;
/// How long in-flight requests (followed logs among them) get at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// The listening flags of `skiffd`.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// `--docker-host` values (`unix:///PATH`, `tcp://ADDR:PORT`, or `none`).
    pub hosts: Vec<String>,
    /// `--tlsverify`.
    pub tls_verify: bool,
    /// `--tlscacert`.
    pub tls_ca: Option<PathBuf>,
    /// `--tlscert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`.
    pub tls_key: Option<PathBuf>,
    /// `--docker-tcp-insecure`.
    pub tcp_insecure: bool,
}

/// One place to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address, with mutual TLS or (insecure) without.
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// Whether TLS is required.
        tls: bool,
    },
}

/// Parses and checks the flags: the endpoints to listen on (none for `none`).
pub fn endpoints(opts: &ListenOptions) -> anyhow::Result<Vec<Endpoint>> {
    let hosts: Vec<&str> = if opts.hosts.is_empty() {
        vec![DEFAULT_HOST]
    } else {
        opts.hosts.iter().map(|h| h.trim()).collect()
    };
    if hosts.contains(&"none") {
        if hosts.len() > 1 {
            bail!("--docker-host none turns the Docker API off; give it alone");
        }
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for host in hosts {
        if let Some(path) = host.strip_prefix("unix://") {
            if !path.starts_with('/') {
                bail!("invalid --docker-host \"{host}\": a unix socket needs an absolute path, as in {DEFAULT_HOST}");
            }
            out.push(Endpoint::Unix(PathBuf::from(path)));
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let default_port = if opts.tls_verify {
                TLS_PORT
            } else {
                PLAIN_PORT
            };
            let with_port = if addr.parse::<SocketAddr>().is_ok() {
                addr.to_string()
            } else {
                format!("{addr}:{default_port}")
            };
            let addr: SocketAddr = with_port.parse().map_err(|_| {
                anyhow!(
                    "invalid --docker-host \"{host}\": use tcp://IP:PORT, e.g. tcp://0.0.0.0:2376"
                )
            })?;
            if !opts.tls_verify && !opts.tcp_insecure {
                bail!(
                    "--docker-host {host} would serve the Docker API, which is as good as root on every node, without TLS to anyone who reaches {addr} (on loopback: every local user); add --tlsverify --tlscacert --tlscert --tlskey, or --docker-tcp-insecure if you mean it"
                );
            }
            out.push(Endpoint::Tcp {
                addr,
                tls: opts.tls_verify,
            });
        } else {
            bail!("invalid --docker-host \"{host}\": use unix:///PATH, tcp://ADDR:PORT or none");
        }
    }
    if opts.tls_verify {
        for (flag, value) in [
            ("--tlscacert", &opts.tls_ca),
            ("--tlscert", &opts.tls_cert),
            ("--tlskey", &opts.tls_key),
        ] {
            if value.is_none() {
                bail!("--tlsverify needs {flag}: give the CA that signs client certificates, and the server's certificate and key");
            }
        }
    }
    Ok(out)
}

/// The TLS server config: presents the given certificate and requires a client certificate
/// signed by the given CA.
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let ca_pem = read(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
        let c = c.with_context(|| format!("{} holds no valid PEM certificate", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
    }
    if roots.is_empty() {
        bail!(
            "{} holds no certificate; give --tlscacert the CA that signs client certificates",
            ca.display()
        );
    }
    let cert_pem = read(cert)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} holds no valid PEM certificate", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no certificate; give --tlscert the server's certificate",
            cert.display()
        );
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} holds no valid PEM key", key.display()))?
        .ok_or_else(|| {
            anyhow!(
                "{} holds no private key; give --tlskey the server's key",
                key.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("cannot verify clients against --tlscacert")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .context("the --tlscert and --tlskey do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound listener.
pub enum Bound {
    /// A unix socket (removed when the server stops).
    Unix(UnixListener, PathBuf),
    /// Plain TCP.
    Tcp(TcpListener),
    /// TCP with mutual TLS.
    Tls(TcpListener, Arc<rustls::ServerConfig>),
}

/// Binds every endpoint (TLS ones with `tls`).
pub async fn bind(
    endpoints: &[Endpoint],
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Unix(path) => bound.push(Bound::Unix(bind_unix(path)?, path.clone())),
            Endpoint::Tcp {
                addr,
                tls: with_tls,
            } => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the Docker API"))?;
                match (with_tls, &tls) {
                    (true, Some(config)) => bound.push(Bound::Tls(listener, config.clone())),
                    (true, None) => bail!("--tlsverify needs --tlscacert, --tlscert and --tlskey"),
                    (false, _) => bound.push(Bound::Tcp(listener)),
                }
            }
        }
    }
    Ok(bound)
}

/// A unix socket for root and root's group (0660), replacing a stale one.
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {} for the Docker API", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Serves `app` on `bound` until `stop` turns true; then lets requests in flight finish
/// (for at most a few seconds) and removes a unix socket.
pub async fn serve(bound: Bound, app: App, stop: watch::Receiver<bool>) {
    match bound {
        Bound::Unix(listener, path) => {
            let incoming = futures::stream::unfold(listener, |l| async move {
                let accepted = l.accept().await.map(|(s, _)| s);
                Some((accepted, l))
            });
            serve_incoming(incoming, app, stop).await;
            let _ = std::fs::remove_file(&path);
        }
        Bound::Tcp(listener) => {
            let incoming = futures::stream::unfold(listener, |l| async move {
                let accepted = l.accept().await.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    s
                });
                Some((accepted, l))
            });
            serve_incoming(incoming, app, stop).await;
        }
        Bound::Tls(listener, config) => {
            serve_incoming(crate::tls::tls_incoming(listener, config), app, stop).await;
        }
    }
}

async fn serve_incoming<S, I>(incoming: S, app: App, mut stop: watch::Receiver<bool>)
where
    S: Stream<Item = io::Result<I>> + Send,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut incoming = std::pin::pin!(incoming);
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            next = incoming.next() => next,
        };
        let io = match next {
            Some(Ok(io)) => io,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "cannot accept a Docker API connection");
                // Back off on errors such as running out of file descriptors.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req).await) }
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "a Docker API connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(hosts: &[&str]) -> ListenOptions {
        ListenOptions {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_is_the_unix_socket_and_none_turns_it_off() {
        assert_eq!(
            endpoints(&opts(&[])).unwrap(),
            vec![Endpoint::Unix("/run/skiff/docker.sock".into())]
        );
        assert!(endpoints(&opts(&["none"])).unwrap().is_empty());
        assert!(endpoints(&opts(&["none", "unix:///x.sock"])).is_err());
    }

    #[test]
    fn plain_tcp_is_refused_even_on_loopback_unless_declared_insecure() {
        let e = endpoints(&opts(&["tcp://127.0.0.1:2375"])).unwrap_err();
        assert!(e.to_string().contains("--docker-tcp-insecure"), "{e}");
        let mut o = opts(&["tcp://127.0.0.1:2375"]);
        o.tcp_insecure = true;
        assert_eq!(
            endpoints(&o).unwrap(),
            vec![Endpoint::Tcp {
                addr: "127.0.0.1:2375".parse().unwrap(),
                tls: false
            }]
        );
    }

    #[test]
    fn tls_needs_all_three_files_and_defaults_to_port_2376() {
        let mut o = opts(&["tcp://0.0.0.0"]);
        o.tls_verify = true;
        let e = endpoints(&o).unwrap_err();
        assert!(e.to_string().contains("--tlscacert"), "{e}");
        o.tls_ca = Some("/ca".into());
        o.tls_cert = Some("/cert".into());
        o.tls_key = Some("/key".into());
        assert_eq!(
            endpoints(&o).unwrap(),
            vec![Endpoint::Tcp {
                addr: "0.0.0.0:2376".parse().unwrap(),
                tls: true
            }]
        );
        assert!(endpoints(&opts(&["http://x"])).is_err());
        assert!(endpoints(&opts(&["unix://relative"])).is_err());
    }
}
