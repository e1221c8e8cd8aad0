//! `skiffd`: the skiff daemon. Runs in the foreground (systemd unit in `deploy/`).

use std::path::PathBuf;
use std::sync::Arc;
use worker::net::datapath::MeshMode;

use anyhow::Context;
use clap::Parser;
use cli::daemon::{Daemon, DaemonOptions, SwarmService};

/// mimalloc rather than glibc's malloc: a manager allocates and frees a task's worth of
/// small blocks per change on several threads, and glibc's per-thread arenas both cost a
/// fifth of the leader's CPU and kept freed memory (BENCHMARKS.md, "the allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The skiff daemon: joins a cluster, runs a manager or a worker, serves the local CLI.
#[derive(Debug, Parser)]
#[command(name = "skiffd", version)]
struct Args {
    /// Where the node keeps its state, certificates and (on managers) the Raft log.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFFD_DATA_DIR")]
    data_dir: PathBuf,
    /// The local API socket (root only).
    #[arg(long, default_value = "/run/skiff/skiffd.sock", env = "SKIFFD_SOCKET")]
    socket: PathBuf,
    /// Cluster port address when `swarm init`/`swarm join` give none.
    #[arg(long, default_value = "0.0.0.0:2377")]
    listen_addr: String,
    /// Address other nodes reach this node at, when `swarm init`/`swarm join` give none.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Task runtime: containerd (containers from OCI images; the default when containerd's
    /// socket is there), process (tasks as host processes; the default otherwise) or
    /// fake[:delay=100ms,fail=0.1,run=2s] (no processes at all; scale tests).
    #[arg(long)]
    runtime: Option<agent_runtime::RuntimeChoice>,
    /// containerd's socket (runtime containerd).
    #[arg(long, default_value = agent_runtime::containerd::DEFAULT_SOCKET)]
    containerd_socket: PathBuf,
    /// The containerd namespace this node's containers and images live in.
    #[arg(long, default_value = agent_runtime::containerd::DEFAULT_NAMESPACE)]
    containerd_namespace: String,
    /// A registry (HOST:PORT) to pull from over plain HTTP; repeat for several.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Largest size of a task's log file before it is rotated (the `local` driver's
    /// max-size, when --log-driver names none)
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    log_max_bytes: u64,
    /// The logging driver of services that name none: local, json-file, syslog, journald
    /// or none
    #[arg(long, value_name = "DRIVER")]
    log_driver: Option<String>,
    /// An option of --log-driver (KEY=VALUE); repeat for several
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opts: Vec<String>,
    /// Hostname to report instead of the system's (several nodes on one machine).
    #[arg(long)]
    hostname: Option<String>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Overlay networks and the routing mesh: `kernel` (VXLAN, nftables DNAT; userspace
    /// where nftables is missing), `userspace` (VXLAN, a proxy for published ports) or `off`
    /// (only for several nodes sharing one network namespace, such as loopback test clusters).
    #[arg(long, default_value = "kernel", value_parser = ["kernel", "userspace", "off"])]
    network_data_path: String,
    /// Subnet of the node-local bridge (`skiff0`) of tasks without networks (Docker's
    /// `bridge`).
    #[arg(long, default_value_t = worker::net::bridge::DEFAULT_SUBNET)]
    bridge_subnet: worker::net::bridge::Subnet,
    /// Subnet of the node-local bridge (`skiff_gwbridge`) that gives tasks on overlay
    /// networks their way out (Docker's `docker_gwbridge`).
    #[arg(long, default_value_t = worker::net::bridge::GATEWAY_SUBNET)]
    gwbridge_subnet: worker::net::bridge::Subnet,
    /// Where the Docker Engine API listens, as dockerd's -H: unix:///PATH (mode 0660) or
    /// tcp://ADDR:PORT (with --tlsverify); repeat for several, or `none` to turn it off.
    /// Default: unix:///run/skiff/docker.sock
    #[arg(long = "docker-host", value_name = "URL")]
    docker_hosts: Vec<String>,
    /// Docker API over TCP: mutual TLS, clients need a certificate signed by --tlscacert.
    #[arg(long)]
    tlsverify: bool,
    /// Docker API over TCP: the CA that signs client certificates.
    #[arg(long, value_name = "FILE")]
    tlscacert: Option<PathBuf>,
    /// Docker API over TCP: the server's certificate.
    #[arg(long, value_name = "FILE")]
    tlscert: Option<PathBuf>,
    /// Docker API over TCP: the server's key.
    #[arg(long, value_name = "FILE")]
    tlskey: Option<PathBuf>,
    /// Serve the Docker API over plain TCP without TLS. Anyone who reaches the port (on
    /// loopback: every local user) then commands the swarm as root.
    #[arg(long)]
    docker_tcp_insecure: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off unless given; 9323 is
    /// Docker's usual port). Plain HTTP, read-only, without secrets
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_addr: Option<String>,
    /// For tests of upgrades only: read and report Raft entries up to this format, as the
    /// previous release (format 1) does, so the leader writes nothing newer. Hidden: it only
    /// slows writes down.
    #[arg(
        long,
        hide = true,
        value_name = "FORMAT",
        default_value_t = manager::raft::format::NEWEST,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(manager::raft::format::NEWEST))
    )]
    raft_entry_format: u32,
    /// For tests of a saturated manager only: while this file exists, keep every worker
    /// thread of the daemon's main runtime (everything but Raft) busy, in turns of
    /// several seconds without yielding, as a leader saturated by reconciliation would be.
    /// Hidden: it only makes the daemon slow.
    #[arg(long, hide = true, value_name = "FILE")]
    saturate_when: Option<PathBuf>,
    /// For tests of a long leader round only: while this file exists, hold a read guard
    /// of the store in turns of several seconds, as a round over a large store does, so
    /// apply waits for it. Hidden: it only stalls the daemon's writes.
    #[arg(long, hide = true, value_name = "FILE")]
    hold_store_when: Option<PathBuf>,
}

/// How long one busy turn of `--saturate-when` keeps a worker thread: several times the
/// longest an election waits for a silent leader (lease plus election timeout), so a Raft
/// that shared these threads would lose its leadership in every turn.
const BUSY_TURN: std::time::Duration = std::time::Duration::from_secs(5);

/// `--saturate-when`: while `file` exists, one task per worker thread of the current
/// runtime spins for [`BUSY_TURN`] at a time, yielding only between turns.
async fn saturate_when(file: PathBuf) {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    loop {
        while !file.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(file = %file.display(), "saturating the main runtime for a test");
        let spinners: Vec<_> = (0..workers)
            .map(|_| {
                let file = file.clone();
                tokio::spawn(async move {
                    while file.exists() {
                        let until = std::time::Instant::now() + BUSY_TURN;
                        while std::time::Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for spinner in spinners {
            let _ = spinner.await;
        }
    }
}

/// How long one turn of `--hold-store-when` holds the store: more than twice the longest
/// an election waits for a silent leader, less than a write's deadline
/// ([`manager::raft::QUORUM_TIMEOUT`]), since every write waits for the turn to end.
const HOLD_TURN: std::time::Duration = std::time::Duration::from_secs(2);

/// `--hold-store-when`: while `file` exists, a blocking thread holds the running manager's
/// store for [`HOLD_TURN`] at a time, letting go only between turns.
async fn hold_store_when(file: PathBuf, slot: Arc<manager::RunningManager>) {
    loop {
        while !file.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let Some(manager) = slot.current() else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        tracing::warn!(file = %file.display(), "holding the store for a test");
        let _ = tokio::task::spawn_blocking(move || {
            let _held = manager.store().read();
            std::thread::sleep(HOLD_TURN);
        })
        .await;
    }
}

fn main() -> anyhow::Result<()> {
    // Everything skiffd writes (state, certificates, the Raft store with the CA key and
    // secrets, task logs) is for root alone, including what libraries (sled) create. Files
    // meant for containers get their modes explicitly, and task processes the usual 022.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    // `skiffd shim ...` supervises one task process (see agent_runtime::process);
    // `skiffd logger ...` logs one container's output (see agent_runtime::containerd).
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("shim") => agent_runtime::process::shim_main(&argv[2..]),
        Some("logger") => agent_runtime::containerd::logger_main(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    // Raft (openraft's core and replication, the cluster port's connections and the Raft
    // service) gets threads of its own: the OS shares the CPU between them and the main
    // runtime's, so reconciliation that keeps every main worker busy cannot delay a
    // heartbeat, a vote or a leadership confirmation (issue 20). Two workers: one keeps
    // heartbeats going while the other applies a large entry or runs a TLS handshake.
    let raft_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skiff-raft")
        .enable_all()
        .build()
        .context("cannot start Raft's async runtime")?;
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")?
        .block_on(run(args, raft_runtime.handle().clone()));
    raft_runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// The runtime the flags ask for: containerd where its socket is, unless told otherwise.
fn runtime_choice(args: &Args) -> agent_runtime::RuntimeChoice {
    args.runtime.clone().unwrap_or_else(|| {
        if args.containerd_socket.exists() {
            agent_runtime::RuntimeChoice::Containerd
        } else {
            tracing::info!(
                socket = %args.containerd_socket.display(),
                "no containerd socket: running tasks as host processes (--runtime process)"
            );
            agent_runtime::RuntimeChoice::Process
        }
    })
}

/// The logging driver of services that name none, from the flags; refused at start if no
/// task could use it.
fn log_defaults(args: &Args) -> anyhow::Result<agent_runtime::LogDefaults> {
    let Some(driver) = &args.log_driver else {
        anyhow::ensure!(
            args.log_opts.is_empty(),
            "--log-opt needs --log-driver: say which driver the options are for"
        );
        return Ok(agent_runtime::LogDefaults::local(args.log_max_bytes));
    };
    let options = args
        .log_opts
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow::anyhow!("invalid --log-opt {o:?}: use KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let defaults = agent_runtime::LogDefaults {
        driver: driver.clone(),
        options,
    };
    defaults.check().map_err(anyhow::Error::msg)?;
    Ok(defaults)
}

async fn runtime(
    args: &Args,
    choice: &agent_runtime::RuntimeChoice,
) -> anyhow::Result<Arc<dyn agent_runtime::Runtime>> {
    Ok(match choice {
        agent_runtime::RuntimeChoice::Containerd => {
            use agent_runtime::containerd::{ContainerdConfig, ContainerdRuntime, RegistryOptions};
            let config = ContainerdConfig {
                socket: args.containerd_socket.clone(),
                namespace: args.containerd_namespace.clone(),
                state_dir: args.data_dir.join("containers"),
                log: log_defaults(args)?,
                registries: RegistryOptions {
                    insecure: args.insecure_registries.clone(),
                },
                logger: std::env::current_exe().context(
                    "cannot find skiffd's own executable, which containerd runs as the log writer",
                )?,
            };
            Arc::new(ContainerdRuntime::connect(config).await?)
        }
        agent_runtime::RuntimeChoice::Process => {
            Arc::new(agent_runtime::process::ProcessRuntime::new(
                args.data_dir.join("runtime"),
                log_defaults(args)?,
            ))
        }
        agent_runtime::RuntimeChoice::Fake(config) => {
            Arc::new(agent_runtime::fake::FakeRuntime::new(config.clone()))
        }
    })
}

async fn run(args: Args, raft_runtime: tokio::runtime::Handle) -> anyhow::Result<()> {
    cli::logging::init(&args.log_format);
    // Wrong Docker API flags (plain TCP above all) stop the daemon before it starts anything.
    let docker_api = cli::daemon::engine::ListenOptions {
        hosts: args.docker_hosts.clone(),
        tls_verify: args.tlsverify,
        tls_ca: args.tlscacert.clone(),
        tls_cert: args.tlscert.clone(),
        tls_key: args.tlskey.clone(),
        tcp_insecure: args.docker_tcp_insecure,
    };
    cli::daemon::engine::listen::endpoints(&docker_api)?;
    cli::daemon::secure_data_dir(&args.data_dir)?;
    cli::tls::install_crypto_provider();
    let metrics_addr = args
        .metrics_addr
        .as_deref()
        .map(cli::daemon::metrics::parse_addr)
        .transpose()?;
    let choice = runtime_choice(&args);
    let runtime = runtime(&args, &choice).await?;
    let daemon = Daemon::new(
        DaemonOptions {
            data_dir: args.data_dir.clone(),
            hostname: args.hostname.clone(),
            runtime: choice.to_string(),
            listen_addr: args.listen_addr.clone(),
            advertise_addr: args.advertise_addr.clone(),
            raft: manager::raft::RaftSettings {
                entry_format: args.raft_entry_format,
                runtime: Some(raft_runtime),
                ..Default::default()
            },
            data_path: match args.network_data_path.as_str() {
                "kernel" => Some(MeshMode::Kernel),
                "userspace" => Some(MeshMode::Userspace),
                _ => None,
            },
            bridges: worker::net::bridge::BridgeSubnets {
                default: args.bridge_subnet,
                gateway: args.gwbridge_subnet,
            },
            registries: agent_runtime::containerd::RegistryOptions {
                insecure: args.insecure_registries.clone(),
            },
        },
        runtime,
    );
    let local = cli::daemon::serve_local_socket(
        &args.socket,
        SwarmService::new(daemon.clone()),
        daemon.slot(),
        daemon.agent_slot(),
    )
    .context("cannot serve the local API")?;
    let engine = cli::daemon::engine::serve(&docker_api, args.socket.clone())
        .await
        .context("cannot serve the Docker Engine API")?;
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics = match metrics_addr {
        Some(addr) => {
            let metrics = cli::daemon::metrics::Metrics::new(daemon.slot(), daemon.agent_slot());
            Some(cli::daemon::metrics::serve(addr, metrics, metrics_stopped).await?)
        }
        None => None,
    };
    if let Some(file) = args.saturate_when.clone() {
        tokio::spawn(saturate_when(file));
    }
    if let Some(file) = args.hold_store_when.clone() {
        tokio::spawn(hold_store_when(file, daemon.slot()));
    }
    tracing::info!(socket = %args.socket.display(), data_dir = %args.data_dir.display(), "skiffd started");
    daemon.resume().await;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    engine.stop().await;
    let _ = stop_metrics.send(true);
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    daemon.shutdown().await;
    local.stop().await;
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}
