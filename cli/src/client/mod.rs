//! The `skiff` command line: argument definitions, the connection to a daemon, and one module
//! per command group.
//!
//! Every command validates its input before it connects, so a typo is reported without a
//! daemon. Every error reaches the user as one sentence (`Error: ...` on stderr, exit code 1):
//! the daemon's own message for a refused request, or what to do when the daemon cannot be
//! reached. To add a command group (`service`, `network`, ...): a module with a
//! `clap::Subcommand` enum and an `async fn run(&GlobalOpts, Command)`, a variant in
//! [`Command`] and an arm in [`run`].

pub mod docker;
pub mod duration;
pub mod events;
pub mod format;
pub mod image;
pub mod json;
pub mod named;
pub mod network;
pub mod node;
pub mod output;
pub mod service;
pub mod stack;
pub mod swarm;
pub mod table;
pub mod task;
pub mod template;

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use hyper_util::rt::TokioIo;
use proto::control_client::ControlClient;
use proto::swarm_client::SwarmClient;
use tonic::transport::{Channel, Endpoint};

use crate::tls::DEFAULT_PORT;

/// Where `skiff` finds the local daemon unless told otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/skiff/skiffd.sock";
/// Where a node keeps its TLS credentials.
pub const DEFAULT_TLS_DIR: &str = "/var/lib/skiff/certs";
/// The client's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const START_HINT: &str = "is skiffd running? (start it with `skiffd` or `systemctl start skiffd`)";

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

/// `skiff`: drive a skiff cluster.
#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    about = "Manage a skiff cluster: nodes, services, networks, secrets and configs",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
///
/// The daemon's address has two spellings, as Docker's `-H/--host`: `-H` anywhere on the
/// line, `--host` before the command only. `--host` cannot go everywhere because
/// `service create --host NAME:IP` (a line of the task's /etc/hosts) is Docker's too, and
/// clap gives one command one argument per long name: a global `--host` would be copied into
/// `service create` and collide with it. So the two are separate arguments, the long one
/// kept at the top level (where Docker's own `-H/--host` goes), and [`GlobalOpts::host`]
/// takes whichever was given.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Daemon to talk to: unix:///path/to.sock (the local daemon) or tcp://HOST[:PORT] (a
    /// manager's cluster port, over mutual TLS); also --host, before the command
    #[arg(
        id = "daemon_host",
        short = 'H',
        env = "SKIFF_HOST",
        global = true,
        help_heading = "Global Options",
        value_name = "URL",
        default_value = DEFAULT_HOST
    )]
    pub daemon_host: String,
    /// The same as -H, before the command only (`service create --host` is a hosts entry);
    /// wins over -H and SKIFF_HOST
    #[arg(
        id = "daemon_host_long",
        long = "host",
        help_heading = "Global Options",
        value_name = "URL"
    )]
    pub daemon_host_long: Option<String>,
    /// Directory with this node's TLS credentials, used with tcp:// hosts
    #[arg(
        long = "tls-dir",
        env = "SKIFF_TLS_DIR",
        global = true,
        help_heading = "Global Options",
        value_name = "DIR",
        default_value = DEFAULT_TLS_DIR
    )]
    pub tls_dir: PathBuf,
}

impl GlobalOpts {
    /// The daemon address, parsed: `--host`'s if given, else `-H`'s (or its default).
    pub fn host(&self) -> anyhow::Result<Host> {
        self.daemon_host_long
            .as_deref()
            .unwrap_or(&self.daemon_host)
            .parse::<Host>()
    }

    /// Connects to the daemon.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.host()?, &self.tls_dir).await
    }
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the swarm (the cluster)
    Swarm {
        #[command(subcommand)]
        command: swarm::SwarmCommand,
    },
    /// Manage the nodes of the swarm
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
    },
    /// Manage services
    Service {
        #[command(subcommand)]
        command: service::ServiceCommand,
    },
    /// Inspect tasks (list them with `service ps` or `node ps`)
    Task {
        #[command(subcommand)]
        command: task::TaskCommand,
    },
    /// Show the skiff version of this client and of the daemon
    Version(VersionArgs),
    /// Show this node's membership: cluster, role, managers and its view of Raft
    Info(VersionArgs),
    /// Manage secrets (data services can read; never shown back)
    Secret {
        #[command(subcommand)]
        command: named::NamedCommand,
    },
    /// Manage configs (data services can read)
    Config {
        #[command(subcommand)]
        command: named::NamedCommand,
    },
    /// Manage overlay networks
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// Manage images on this node
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Stream the cluster's events: services, nodes, tasks, networks, secrets, configs
    Events(events::EventsArgs),
    /// Deploy and manage stacks of services from Compose files
    Stack {
        #[command(subcommand)]
        command: stack::StackCommand,
    },
}

/// `skiff version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format: json
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// Runs the parsed command line and turns the outcome into an exit code, printing any error
/// as one sentence on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Reported>().is_none() {
                eprintln!("Error: {}", sentence(&e));
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Swarm { command } => swarm::run(&cli.global, command).await,
        Command::Node { command } => node::run(&cli.global, command).await,
        Command::Service { command } => service::run(&cli.global, command).await,
        Command::Task { command } => task::run(&cli.global, command).await,
        Command::Version(args) => version(&cli.global, args).await,
        Command::Info(args) => info(&cli.global, args).await,
        Command::Secret { command } => named::run(&cli.global, named::Kind::Secret, command).await,
        Command::Config { command } => named::run(&cli.global, named::Kind::Config, command).await,
        Command::Network { command } => network::run(&cli.global, command).await,
        Command::Image { command } => image::run(&cli.global, command).await,
        Command::Events(args) => events::run(&cli.global, args).await,
        Command::Stack { command } => stack::run(&cli.global, command).await,
    }
}

/// The error's message with its causes, on one line.
fn sentence(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// An error already printed (commands over several objects print one line per failure and
/// then fail as a whole).
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one or more operations failed")
    }
}

impl StdError for Reported {}

/// Prints `e` as commands over several objects do, and carries on.
pub fn report(e: &anyhow::Error) {
    eprintln!("Error: {}", sentence(e));
}

/// Writes `text` and a newline on stdout; a closed pipe (`skiff node ls | head`) ends the
/// process quietly instead of panicking.
pub fn out(text: impl fmt::Display) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|_| stdout.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// What `--format` asked of `skiff events` (`table`, the default, or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// Parses `skiff events`' `--format` (`table`, the default, or `json`).
pub fn list_format(value: Option<&str>) -> anyhow::Result<ListFormat> {
    match value.map(str::trim) {
        None | Some("") | Some("table") => Ok(ListFormat::Table),
        Some("json") => Ok(ListFormat::Json),
        Some(other) => Err(anyhow!(
            "unsupported --format \"{other}\": use --format json or --format table (templates are not supported)"
        )),
    }
}

/// Prints a template's output, unless it is empty (no rows: no line at all).
pub fn out_text(text: &str) {
    if !text.is_empty() {
        out(text);
    }
}

// ---------------------------------------------------------------------------------------
// Host and addresses
// ---------------------------------------------------------------------------------------

/// Where the daemon listens, from `-H`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// The local daemon's unix socket.
    Unix(PathBuf),
    /// A manager's cluster port, reached over mutual TLS.
    Tcp(HostPort),
}

impl std::str::FromStr for Host {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Host> {
        let s = s.trim();
        if s.is_empty() {
            return DEFAULT_HOST.parse();
        }
        let bad = || {
            anyhow!("invalid host \"{s}\": use unix:///path/to/skiffd.sock or tcp://HOST[:PORT]")
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(anyhow!(
                    "invalid host \"{s}\": a unix socket needs an absolute path, as in {DEFAULT_HOST}"
                ));
            }
            Ok(Host::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp://") {
            let addr = addr.strip_suffix('/').unwrap_or(addr);
            let hp = HostPort::parse(addr, Some(DEFAULT_PORT))
                .map_err(|reason| anyhow!("invalid host \"{s}\": {reason}"))?;
            Ok(Host::Tcp(hp))
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}

/// A host (IP address, hostname or, for local flags, interface name) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 address;
    /// `default_port` fills a missing port. The error is the reason, for the caller to frame.
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<HostPort, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the address is empty; use HOST[:PORT], e.g. 192.168.1.10:2377".into());
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| "an IPv6 address opened with [ needs a closing ]".to_string())?;
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(format!("\"{inner}\" is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("unexpected \"{p}\" after the IPv6 address"))?,
                ),
            };
            (inner.to_string(), port)
        } else if s.matches(':').count() > 1 {
            if s.parse::<Ipv6Addr>().is_err() {
                return Err(format!(
                    "\"{s}\" is not an address; write IPv6 addresses with a port as [ADDR]:PORT"
                ));
            }
            (s.to_string(), None)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (s.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("\"{s}\" names no host; use HOST[:PORT]"));
        }
        if !host.contains(':') && !valid_host_name(&host) {
            return Err(format!(
                "\"{host}\" is not an IP address, host name or interface name"
            ));
        }
        let port = match port {
            None => default_port,
            Some(p) => Some(parse_port(p)?),
        };
        Ok(HostPort { host, port })
    }

    /// `host:port` (IPv6 in brackets) for dialing; the port must be known.
    pub fn addr(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "invalid port \"{p}\": use a number from 1 to 65535"
        )),
        Ok(port) => Ok(port),
    }
}

/// An IPv4 address, a DNS name or an interface name (letters, digits, `-`, `_`, `.`).
fn valid_host_name(h: &str) -> bool {
    if h.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    h.len() <= 253
        && !h.starts_with('.')
        && !h.contains("..")
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Validates the address a node joins through (`swarm join ADDR[:PORT]`) and returns it as
/// `host:port`, with the cluster port 2377 when none is given.
pub fn remote_addr(s: &str) -> anyhow::Result<String> {
    HostPort::parse(s, Some(DEFAULT_PORT))
        .map(|hp| hp.addr())
        .map_err(|reason| anyhow!("invalid manager address \"{}\": {reason}", s.trim()))
}

/// Validates the value of an address flag (`--advertise-addr`, `--listen-addr`): an IP
/// address, host name or interface name, with an optional port. Returns it as given (the
/// daemon fills in the defaults).
pub fn addr_flag(flag: &str, s: &str) -> anyhow::Result<String> {
    HostPort::parse(s, None)
        .map(|_| s.trim().to_string())
        .map_err(|reason| anyhow!("invalid address \"{}\" for {flag}: {reason}", s.trim()))
}

// ---------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------

/// Opens a channel to the daemon at `host`: the unix socket directly (connected now, so a
/// missing daemon is reported at once), or a manager's cluster port over mutual TLS with the
/// node credentials in `tls_dir` (connected at the first request).
pub async fn connect(host: &Host, tls_dir: &Path) -> anyhow::Result<Channel> {
    match host {
        Host::Unix(path) => connect_unix(host, path).await,
        Host::Tcp(hp) => connect_tcp(hp, tls_dir),
    }
}

async fn connect_unix(host: &Host, path: &Path) -> anyhow::Result<Channel> {
    // Connect once ourselves: the io::Error says exactly what is wrong, and the stream is
    // then handed to the channel for its first connection.
    let first = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| unreachable(host, &e))?;
    let first = Arc::new(Mutex::new(Some(first)));
    let path = path.to_path_buf();
    // The URI is a placeholder: the connector ignores it.
    let endpoint =
        Endpoint::try_from("http://[::]:50051")?.connect_timeout(Duration::from_secs(10));
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let first = first.clone();
            let path = path.clone();
            async move {
                let ready = first.lock().map(|mut f| f.take()).unwrap_or(None);
                let stream = match ready {
                    Some(s) => s,
                    None => tokio::net::UnixStream::connect(&path).await?,
                };
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| unreachable(host, &e))
}

fn connect_tcp(hp: &HostPort, tls_dir: &Path) -> anyhow::Result<Channel> {
    use crate::tls::{install_crypto_provider, NodeCredentials, ReloadableIdentity, TlsConnector};
    use manager::transport::Connector as _;

    install_crypto_provider();
    let dir = tls_dir.display();
    let hint = "point --tls-dir (or SKIFF_TLS_DIR) at a node's certificate directory, or use the local socket";
    let creds = NodeCredentials::load(tls_dir)
        .map_err(|e| anyhow!("cannot use the node certificates in {dir} ({e}); {hint}"))?;
    let identity = ReloadableIdentity::new(&creds)
        .map_err(|e| anyhow!("cannot use the node certificates in {dir} ({e}); {hint}"))?;
    let connector = TlsConnector::new(&creds.root_ca_pem, identity)
        .map_err(|e| anyhow!("cannot use the node certificates in {dir} ({e}); {hint}"))?;
    Ok(connector.channel(&hp.addr()))
}

/// A connection to a daemon, with the clients of its services.
#[derive(Debug, Clone)]
pub struct Client {
    host: Host,
    channel: Channel,
}

impl Client {
    /// Connects to the daemon at `host` (see [`connect`]).
    pub async fn connect(host: &Host, tls_dir: &Path) -> anyhow::Result<Client> {
        Ok(Client {
            host: host.clone(),
            channel: connect(host, tls_dir).await?,
        })
    }

    /// The daemon this client talks to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The local daemon's own operations (init, join, leave, info).
    pub fn swarm(&self) -> SwarmClient<Channel> {
        SwarmClient::new(self.channel.clone()).max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
    }

    /// The channel to the daemon, for clients of its other services.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The cluster API.
    pub fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel.clone())
            .max_decoding_message_size(proto::MAX_RESPONSE_BYTES)
    }

    /// The error to show for a failed request.
    pub fn error(&self, status: tonic::Status) -> anyhow::Error {
        status_error(&self.host, status)
    }
}

/// Unwraps a gRPC reply, turning a failure into the sentence to show.
pub trait Reply<T> {
    fn reply(self, client: &Client) -> anyhow::Result<T>;
}

impl<T> Reply<T> for Result<tonic::Response<T>, tonic::Status> {
    fn reply(self, client: &Client) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| client.error(s))
    }
}

/// The error to show for a failed request to `host`: the daemon's own message when it
/// answered, or what to do when it could not be reached. Never the raw gRPC code.
pub fn status_error(host: &Host, status: tonic::Status) -> anyhow::Error {
    // A status made on this side of the wire carries the transport error that caused it;
    // one the daemon sent carries none.
    if let Some(source) = status.source() {
        return unreachable(host, source);
    }
    let message = status.message().trim();
    if message.starts_with("grpc-status header missing") {
        // Something answered HTTP, but not with gRPC: not a skiffd port.
        return anyhow!(
            "cannot reach skiffd at {host}: something other than skiffd answered there ({message}); check the address and port"
        );
    }
    if !message.is_empty() {
        return anyhow!("{message}");
    }
    use tonic::Code;
    match status.code() {
        Code::Unimplemented if matches!(host, Host::Tcp(_)) => anyhow!(
            "skiffd at {host} does not offer this operation on its cluster port; run the command on that host, against its local socket (without -H)"
        ),
        Code::Unimplemented => anyhow!(
            "skiffd at {host} does not offer this operation; is it the same version as this skiff ({VERSION})?"
        ),
        Code::Unavailable => anyhow!("skiffd at {host} is unavailable right now; retry in a moment"),
        Code::DeadlineExceeded => anyhow!("skiffd at {host} did not answer in time; retry in a moment"),
        Code::PermissionDenied | Code::Unauthenticated => {
            anyhow!("skiffd at {host} refused the request: this node is not allowed to make it")
        }
        _ => anyhow!(
            "skiffd at {host} failed the request without saying why; see its log (journalctl -u skiffd)"
        ),
    }
}

/// The sentence for a daemon that cannot be reached, from the error chain of the attempt.
fn unreachable(host: &Host, err: &(dyn StdError + 'static)) -> anyhow::Error {
    let unix = matches!(host, Host::Unix(_));
    let mut io_kind = None;
    let mut tls = None;
    let mut innermost = err.to_string();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        innermost = e.to_string();
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| r.to_string());
        }
        if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            io_kind.get_or_insert(io::ErrorKind::TimedOut);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                tls.get_or_insert_with(|| r.to_string());
            }
        }
        cur = e.source();
    }
    if let Some(tls) = tls {
        return anyhow!(
            "cannot reach skiffd at {host}: the TLS handshake failed ({tls}); check that the certificates in --tls-dir belong to this cluster"
        );
    }
    let port = match host {
        Host::Tcp(hp) => hp.port.unwrap_or(DEFAULT_PORT),
        Host::Unix(_) => DEFAULT_PORT,
    };
    let (reason, hint) = match (io_kind, unix) {
        (Some(io::ErrorKind::NotFound), true) => {
            ("no such socket".to_string(), START_HINT.to_string())
        }
        (Some(io::ErrorKind::PermissionDenied), true) => (
            "permission denied on the socket".to_string(),
            "it is for root only: run skiff as root (e.g. with sudo)".to_string(),
        ),
        (Some(io::ErrorKind::ConnectionRefused), true) => (
            "nothing is listening on the socket".to_string(),
            START_HINT.to_string(),
        ),
        (Some(io::ErrorKind::ConnectionRefused), false) => (
            "connection refused".to_string(),
            format!("is skiffd running on that host, and is {port} its cluster port?"),
        ),
        (Some(io::ErrorKind::TimedOut), true) => (
            "the connection timed out".to_string(),
            "skiffd may be overloaded or stuck; check `journalctl -u skiffd`".to_string(),
        ),
        (Some(io::ErrorKind::TimedOut), false) => (
            "the connection timed out".to_string(),
            format!("check the address, and that a firewall lets port {port}/tcp through"),
        ),
        (_, true) => (innermost, START_HINT.to_string()),
        (_, false) => (
            innermost,
            "check the address and that skiffd runs there".to_string(),
        ),
    };
    anyhow!("cannot reach skiffd at {host}: {reason}; {hint}")
}

// ---------------------------------------------------------------------------------------
// skiff version
// ---------------------------------------------------------------------------------------

async fn version(global: &GlobalOpts, args: VersionArgs) -> anyhow::Result<()> {
    let json = match args.format.as_deref().map(str::trim) {
        None | Some("") => false,
        Some("json") => true,
        Some(other) => {
            return Err(anyhow!(
                "unsupported --format \"{other}\": use --format json (templates are not supported)"
            ))
        }
    };
    let host = global.host()?;
    let server = match Client::connect(&host, &global.tls_dir).await {
        Ok(client) => client
            .swarm()
            .info(proto::InfoRequest {})
            .await
            .reply(&client)
            .map(|info| info.version),
        Err(e) => Err(e),
    };
    if json {
        let value = serde_json::json!({
            "client": { "version": VERSION },
            "server": server.as_ref().ok().map(|v| serde_json::json!({ "version": v })),
        });
        out(json::pretty(&value)?);
    } else {
        out(format!("Client:\n Version:\t{VERSION}"));
        if let Ok(v) = &server {
            out(format!("\nServer:\n Version:\t{v}"));
        }
    }
    server.map(|_| ())
}

// ---------------------------------------------------------------------------------------
// skiff info
// ---------------------------------------------------------------------------------------

async fn info(global: &GlobalOpts, args: VersionArgs) -> anyhow::Result<()> {
    let json = match args.format.as_deref().map(str::trim) {
        None | Some("") => false,
        Some("json") => true,
        Some(other) => {
            return Err(anyhow!(
                "unsupported --format \"{other}\": use --format json (templates are not supported)"
            ))
        }
    };
    let client = global.connect().await?;
    let info = client
        .swarm()
        .info(proto::InfoRequest {})
        .await
        .reply(&client)?;
    if json {
        out(json::object(&info)?);
        return Ok(());
    }
    let state =
        proto::LocalNodeState::try_from(info.state).unwrap_or(proto::LocalNodeState::Inactive);
    let mut lines = vec![format!("Server Version: {}", info.version)];
    match state {
        proto::LocalNodeState::Active => {
            let role = if info.role == proto::NodeRole::Manager as i32 {
                "manager"
            } else {
                "worker"
            };
            lines.push("Swarm: active".into());
            lines.push(format!(" NodeID: {}", info.node_id));
            lines.push(format!(" ClusterID: {}", info.cluster_id));
            lines.push(format!(" Role: {role}"));
            lines.push(format!(" Node Address: {}", info.advertise_addr));
            lines.push(format!(" Manager Addresses: {}", info.managers.join(", ")));
            lines.push(format!(" Secrets held for tasks: {}", info.secrets.len()));
            if let Some(raft) = &info.raft {
                lines.push(format!(
                    " Raft: term {}, applied {}, snapshot at {}, log from {}, {} voters, leader {}",
                    raft.term,
                    raft.applied_index,
                    raft.snapshot_index,
                    raft.purged_index + 1,
                    raft.voters,
                    if info.leader_node_id.is_empty() {
                        "unknown"
                    } else {
                        &info.leader_node_id
                    }
                ));
            }
        }
        proto::LocalNodeState::Error => lines.push(format!("Swarm: error: {}", info.error)),
        proto::LocalNodeState::Locked => lines.push(format!("Swarm: locked: {}", info.error)),
        _ => lines.push("Swarm: inactive".into()),
    }
    out(lines.join("\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: Option<u16>) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            "unix:///run/skiff/skiffd.sock".parse::<Host>().unwrap(),
            Host::Unix("/run/skiff/skiffd.sock".into())
        );
        assert_eq!(
            "".parse::<Host>().unwrap(),
            Host::Unix("/run/skiff/skiffd.sock".into())
        );
        assert_eq!(
            "tcp://10.0.0.1:2377".parse::<Host>().unwrap(),
            Host::Tcp(hp("10.0.0.1", Some(2377)))
        );
        assert_eq!(
            "tcp://manager-1".parse::<Host>().unwrap(),
            Host::Tcp(hp("manager-1", Some(2377)))
        );
        assert_eq!(
            "tcp://[fd00::1]:4000/".parse::<Host>().unwrap(),
            Host::Tcp(hp("fd00::1", Some(4000)))
        );
        let h: Host = "tcp://[fd00::1]:4000".parse().unwrap();
        assert_eq!(h.to_string(), "tcp://[fd00::1]:4000");
        let h: Host = "unix:///tmp/x.sock".parse().unwrap();
        assert_eq!(h.to_string(), "unix:///tmp/x.sock");
    }

    #[test]
    fn bad_hosts() {
        let err = |s: &str| s.parse::<Host>().unwrap_err().to_string();
        assert_eq!(
            err("http://x:1"),
            "invalid host \"http://x:1\": use unix:///path/to/skiffd.sock or tcp://HOST[:PORT]"
        );
        assert_eq!(
            err("10.0.0.1:2377"),
            "invalid host \"10.0.0.1:2377\": use unix:///path/to/skiffd.sock or tcp://HOST[:PORT]"
        );
        assert!(err("unix://relative.sock").contains("absolute path"));
        assert!(err("unix://").contains("absolute path"));
        assert!(err("tcp://h:0").contains("invalid port \"0\""));
        assert!(err("tcp://h:99999").contains("use a number from 1 to 65535"));
        assert!(err("tcp://").contains("empty"));
        assert!(err("tcp://a b:1").contains("is not an IP address"));
    }

    #[test]
    fn remote_addresses() {
        assert_eq!(remote_addr("10.0.0.1").unwrap(), "10.0.0.1:2377");
        assert_eq!(remote_addr("10.0.0.1:4000").unwrap(), "10.0.0.1:4000");
        assert_eq!(
            remote_addr("manager.example.com").unwrap(),
            "manager.example.com:2377"
        );
        assert_eq!(remote_addr("fd00::1").unwrap(), "[fd00::1]:2377");
        assert_eq!(remote_addr("[fd00::1]").unwrap(), "[fd00::1]:2377");
        assert_eq!(remote_addr("[fd00::1]:7").unwrap(), "[fd00::1]:7");
        let err = |s: &str| remote_addr(s).unwrap_err().to_string();
        assert_eq!(
            err("10.0.0.1:abc"),
            "invalid manager address \"10.0.0.1:abc\": invalid port \"abc\": use a number from 1 to 65535"
        );
        assert!(err("").contains("empty"));
        assert!(err(":2377").contains("names no host"));
        assert!(err("[fd00::1").contains("closing ]"));
        assert!(err("[nothex]:1").contains("not an IPv6 address"));
        assert!(err("fd00::zz").contains("not an address"));
        assert!(err("http://x").contains("invalid manager address"));
    }

    #[test]
    fn address_flags() {
        assert_eq!(addr_flag("--advertise-addr", "eth0").unwrap(), "eth0");
        assert_eq!(
            addr_flag("--listen-addr", "0.0.0.0:2377").unwrap(),
            "0.0.0.0:2377"
        );
        assert_eq!(
            addr_flag("--advertise-addr", "10.0.0.1:x").unwrap_err().to_string(),
            "invalid address \"10.0.0.1:x\" for --advertise-addr: invalid port \"x\": use a number from 1 to 65535"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(list_format(None).unwrap(), ListFormat::Table);
        assert_eq!(list_format(Some("json")).unwrap(), ListFormat::Json);
        assert!(list_format(Some("{{.ID}}")).is_err());
    }

    #[test]
    fn daemon_messages_pass_through() {
        let host: Host = DEFAULT_HOST.parse().unwrap();
        let e = status_error(
            &host,
            tonic::Status::failed_precondition("this node is not part of a swarm"),
        );
        assert_eq!(e.to_string(), "this node is not part of a swarm");
        let e = status_error(
            &host,
            tonic::Status::unknown("grpc-status header missing, mapped from HTTP status code 404"),
        );
        assert!(e
            .to_string()
            .contains("something other than skiffd answered"));
        let e = status_error(&host, tonic::Status::unimplemented(""));
        assert!(!e.to_string().contains("code"));
        assert!(e.to_string().contains("does not offer this operation"));
        let tcp: Host = "tcp://10.0.0.1".parse().unwrap();
        let e = status_error(&tcp, tonic::Status::unimplemented(""));
        assert!(e.to_string().contains("run the command on that host"));
    }

    #[test]
    fn transport_errors_are_sentences() {
        let host: Host = DEFAULT_HOST.parse().unwrap();
        let io = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            unreachable(&host, &io).to_string(),
            format!("cannot reach skiffd at unix:///run/skiff/skiffd.sock: no such socket; {START_HINT}")
        );
        let io = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(unreachable(&host, &io)
            .to_string()
            .contains("run skiff as root"));
        let tcp: Host = "tcp://10.0.0.1".parse().unwrap();
        let io = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            unreachable(&tcp, &io).to_string(),
            "cannot reach skiffd at tcp://10.0.0.1:2377: connection refused; is skiffd running on that host, and is 2377 its cluster port?"
        );
        // A transport error wrapped in a status is recognised as such.
        let status =
            tonic::Status::from_error(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert!(status_error(&tcp, status)
            .to_string()
            .contains("connection refused"));
        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert!(status_error(&tcp, status)
            .to_string()
            .contains("the connection timed out; check the address"));
        // A TLS failure inside an io::Error, as the cluster-port dialer reports it.
        let tls = io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(unreachable(&tcp, &tls)
            .to_string()
            .contains("the TLS handshake failed"));
    }
}
