//! Test harness: real `skiffd` processes driven through the `skiff` CLI exactly as a user
//! would, each on its own loopback address ([`Cluster::new`]) or each in its own network
//! namespace, a test host with its own address on a switch of the test's own
//! ([`Cluster::on_network`], see [`netns`]), where links can be cut.
//!
//! Every cluster gets its own temporary directory, its own port and its own addresses, so
//! tests run in parallel; dropping the [`Cluster`] kills every daemon it started (also when
//! a test panics), removes its namespaces and, if the test failed, prints every daemon's log.

pub mod containerd;
pub mod faults;
pub mod linearizability;
pub mod metrics;
pub mod netns;
mod queries;
pub mod simulated;

pub use queries::{http_get, task_state, RunningTask};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where cargo put the binaries under test; `SKIFF_BIN_DIR` names another directory (a
/// benchmark comparing two builds runs itself once against each).
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("SKIFF_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> -> target/<profile>/<name>
            exe.parent()
                .and_then(Path::parent)
                .expect("target directory")
                .to_owned()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --bins` (or run `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A port no other cluster of this test process uses; distinct processes (test binaries)
/// start from distinct bases derived from their PID.
fn next_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 400) as u16 * 100;
    base + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

/// One `skiffd` on its own loopback address.
pub struct Host {
    /// 1-based host number.
    pub index: usize,
    /// `127.x.y.z:port`, the cluster address.
    pub addr: String,
    data_dir: PathBuf,
    socket: PathBuf,
    /// The Docker Engine API's socket.
    docker_socket: PathBuf,
    log: PathBuf,
    /// The network namespace the daemon runs in (test hosts on a [`netns::TestNetwork`]).
    netns: Option<String>,
    /// The mount namespaces its daemons ran in (test hosts): one per start, since tasks
    /// adopted after a restart stay in the namespace they were started in.
    mount_namespaces: Vec<netns::MountNamespace>,
    child: Option<Child>,
}

impl Host {
    /// The local socket, as `-H` takes it.
    pub fn host_arg(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The Docker Engine API's socket, as `docker -H` takes it.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.docker_socket.display())
    }

    /// The node's certificate directory (for `--tls-dir`).
    pub fn certs_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the daemon process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A set of hosts under one test.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The hosts, index 0 is host 1.
    pub hosts: Vec<Host>,
    /// The namespaces of the hosts, when they are test hosts rather than loopback addresses;
    /// dropped after the daemons are killed.
    net: Option<netns::TestNetwork>,
    /// `skiffd --network-data-path` on test hosts.
    data_path: &'static str,
    /// The daemons' `RUST_LOG`.
    log_filter: &'static str,
    /// With the containerd runtime: each host's containerd namespace (cleaned on drop).
    containerd: Option<Vec<containerd::NamespaceGuard>>,
    /// More `skiffd` arguments, per host (index 0 is host 1).
    daemon_args: Vec<Vec<String>>,
}

impl Cluster {
    /// `n` hosts, each with a fresh data directory, none started yet. Addresses are taken
    /// from 127.0.0.0/8 with a port unique to this cluster.
    pub fn new(n: usize) -> Self {
        let port = next_port();
        // A per-cluster second octet keeps the addresses of parallel clusters apart too.
        let octet = (port % 250) + 1;
        Self::with_hosts(n, None, |i| format!("127.{octet}.0.{}:{port}", i + 1))
    }

    /// `n` test hosts, each in its own network namespace with its own address on a switch
    /// of this cluster's own, daemons listening on the default port 2377; none started yet.
    /// Needs root, iproute2 and nftables (for partitions).
    pub fn on_network(n: usize) -> Self {
        let net = netns::TestNetwork::new(n);
        Self::with_hosts(n, Some(net), |i| {
            format!("{}:2377", netns::TestNetwork::address(i))
        })
    }

    fn with_hosts(
        n: usize,
        net: Option<netns::TestNetwork>,
        addr: impl Fn(usize) -> String,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir()
            .expect("temp dir");
        let hosts = (1..=n)
            .map(|i| {
                let host_dir = dir.path().join(format!("host{i}"));
                std::fs::create_dir_all(&host_dir).expect("host dir");
                Host {
                    index: i,
                    addr: addr(i),
                    data_dir: host_dir.join("data"),
                    socket: host_dir.join("skiffd.sock"),
                    docker_socket: host_dir.join("docker.sock"),
                    log: host_dir.join("skiffd.log"),
                    netns: net.as_ref().map(|net| net.namespace(i).to_owned()),
                    mount_namespaces: Vec::new(),
                    child: None,
                }
            })
            .collect();
        Self {
            dir,
            hosts,
            net,
            data_path: "kernel",
            log_filter: "info,openraft=warn",
            containerd: None,
            daemon_args: vec![Vec::new(); n],
        }
    }

    /// Starts host `i`'s daemon with `args` besides the harness's own (such as more
    /// `--docker-host` endpoints).
    pub fn with_daemon_args(mut self, i: usize, args: &[&str]) -> Self {
        self.daemon_args[i - 1].extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// From host `i`'s next start on, its daemon's extra arguments are `args` (such as a
    /// restart with another `skiffd` configuration).
    pub fn set_daemon_args(&mut self, i: usize, args: &[&str]) {
        self.daemon_args[i - 1] = args.iter().map(|a| a.to_string()).collect();
    }

    /// Hosts run tasks as containers, on skiff's test containerd, each host in a
    /// containerd namespace of its own, pulling from the test registries over plain HTTP.
    pub fn with_containerd(mut self) -> Self {
        containerd::socket();
        self.containerd = Some(
            (1..=self.hosts.len())
                .map(|i| containerd::NamespaceGuard(containerd::unique_namespace(&format!("h{i}"))))
                .collect(),
        );
        self
    }

    /// Host `i`'s containerd namespace (a cluster made `with_containerd`).
    pub fn containerd_namespace(&self, i: usize) -> String {
        let namespaces = self.containerd.as_ref().expect("a cluster with containerd");
        namespaces[i - 1].0.clone()
    }

    fn runtime_args(&self, i: usize) -> Vec<String> {
        match &self.containerd {
            None => vec!["--runtime".into(), "process".into()],
            Some(namespaces) => vec![
                "--runtime".into(),
                "containerd".into(),
                "--containerd-socket".into(),
                containerd::socket().display().to_string(),
                "--containerd-namespace".into(),
                namespaces[i - 1].0.clone(),
                "--insecure-registry".into(),
                containerd::registry().addr.clone(),
                "--insecure-registry".into(),
                containerd::auth_registry().addr.clone(),
            ],
        }
    }

    /// Test hosts run the routing mesh in `mode` (`kernel` or `userspace`).
    pub fn with_data_path(mut self, mode: &'static str) -> Self {
        self.data_path = mode;
        self
    }

    /// The daemons log with `RUST_LOG=filter` (say `trace`, to see all they could say).
    pub fn with_log_filter(mut self, filter: &'static str) -> Self {
        self.log_filter = filter;
        self
    }

    /// Test hosts resolve names outside the cluster with a resolver at host `i`'s address
    /// (port 53), which the test serves; by default they have none they can reach.
    pub fn with_resolver(self, i: usize) -> Self {
        let net = self.net.as_ref().expect("test hosts");
        net.set_resolver(&netns::TestNetwork::address(i));
        self
    }

    /// Test host `i`'s network namespace (`None` on loopback clusters).
    pub fn namespace(&self, i: usize) -> Option<&str> {
        self.hosts[i - 1].netns.as_deref()
    }

    /// Runs `f` on a new thread inside test host `i`'s network namespace (see
    /// [`netns::inside`]).
    pub fn on_host<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.namespace(i).expect("test host");
        netns::inside(Path::new("/var/run/netns").join(name), f)
    }

    /// A TCP server at [`netns::OUTSIDE`], a machine outside the cluster on the test's own
    /// network (test hosts only).
    pub fn outside_server(&self) -> OutsideServer {
        OutsideServer::start(self.network().outside())
    }

    /// The namespaces host `i`'s daemon made for its networks (see
    /// [`netns::network_namespaces`]).
    pub fn network_namespaces(&self, i: usize) -> Vec<String> {
        netns::network_namespaces(&self.hosts[i - 1].data_dir)
    }

    /// Cuts the hosts in `side` off from all the others (test hosts only).
    pub fn partition(&self, side: &[usize]) {
        self.network().partition(side);
    }

    /// Drops what host `from` sends to host `to` for each `(from, to)` in `links` (test
    /// hosts only; see [`netns::TestNetwork::cut`]): one-way and bridge partitions.
    pub fn cut(&self, links: &[(usize, usize)]) {
        self.network().cut(links);
    }

    /// Joins the partitioned hosts again.
    pub fn heal(&self) {
        self.network().heal();
    }

    fn network(&self) -> &netns::TestNetwork {
        self.net
            .as_ref()
            .expect("partitions need test hosts: make the cluster with Cluster::on_network")
    }

    /// The host with 1-based number `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// Starts `skiffd` on host `i` and waits until its socket answers.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, true);
    }

    /// Starts `skiffd` on test host `i` as `deploy/local-cluster.sh` does, under a plain
    /// `ip netns exec`: in a mount namespace of its own even when an earlier daemon's tasks
    /// still run, so that the namespaces that daemon mounted are, to this one, names with
    /// nothing behind them.
    pub fn start_in_own_mounts(&mut self, i: usize) {
        self.start_with(i, false);
    }

    /// Starts host `i`; with `inherit_mounts`, a test host's daemon starts in the mount
    /// namespace of its predecessor's tasks, if any still run there.
    fn start_with(&mut self, i: usize, inherit_mounts: bool) {
        let data_path = self.data_path;
        let mut runtime_args = self.runtime_args(i);
        runtime_args.extend(self.daemon_args[i - 1].iter().cloned());
        let host = &mut self.hosts[i - 1];
        assert!(host.child.is_none(), "host {i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .expect("log file");
        // `ip netns exec` enters the namespace and then becomes the daemon (same PID).
        // A daemon started again on a host whose tasks still run starts from their mount
        // namespace, so that it finds the task namespaces its predecessor mounted there, as
        // a daemon restarted on a real host does.
        let predecessor = host
            .mount_namespaces
            .iter()
            .rev()
            .filter(|_| inherit_mounts)
            .find_map(|mnt| netns::process_in(mnt.name()));
        let mut command = match (&host.netns, predecessor) {
            (Some(ns), Some(pid)) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-m", "ip", "netns", "exec", ns])
                    .arg(bin("skiffd"));
                c
            }
            (Some(ns), None) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("skiffd"));
                c
            }
            (None, _) => Command::new(bin("skiffd")),
        };
        let child = command
            .arg("--data-dir")
            .arg(&host.data_dir)
            .arg("--socket")
            .arg(&host.socket)
            .arg("--listen-addr")
            .arg(&host.addr)
            // Each daemon its own Docker API socket: the default path is one per machine.
            .arg("--docker-host")
            .arg(host.docker_host())
            .arg("--hostname")
            .arg(format!("host{i}"))
            .args(runtime_args)
            // Loopback hosts share one network namespace: no VXLAN devices or mesh rules
            // there (test hosts on a network set them up as real nodes do).
            .arg("--network-data-path")
            .arg(if host.netns.is_some() {
                data_path
            } else {
                "off"
            })
            .env("RUST_LOG", self.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start skiffd");
        let pid = child.id();
        host.child = Some(child);
        let socket = host.socket.clone();
        // Connect, not just look for the file: a daemon killed before left its socket file
        // behind, and the new one has yet to replace it.
        wait_until(
            &format!("skiffd on host {i} to listen"),
            Duration::from_secs(20),
            || {
                std::os::unix::net::UnixStream::connect(&socket)
                    .ok()
                    .map(drop)
            },
        );
        // Listening, the daemon has long left `ip netns exec`'s unshare behind.
        if host.netns.is_some() {
            let own = netns::mount_namespace(std::process::id());
            match netns::MountNamespace::of(pid) {
                Some(mnt) if Some(mnt.name()) != own.as_deref() => host.mount_namespaces.push(mnt),
                _ => {}
            }
        }
    }

    /// Runs `args` inside the network namespace of task `task_id`, which runs on test host
    /// `host`: `ip netns exec skt-<id>` in the mount namespace of the host's daemon, where
    /// the daemon mounted the task's namespace.
    pub fn in_task(&self, host: usize, task_id: &str, args: &[&str]) -> Output {
        let pid = self
            .pid(host)
            .unwrap_or_else(|| panic!("host {host}'s daemon is not running"))
            .to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "ip", "netns", "exec"])
            .arg(agent_runtime::task_netns_name(task_id))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter (util-linux) and ip netns exec")
    }

    /// Starts every host.
    pub fn start_all(&mut self) {
        for i in 1..=self.hosts.len() {
            self.start(i);
        }
    }

    /// Kills host `i`'s daemon with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills everything running on test host `i` (its daemon and its tasks), as a host that
    /// loses power; on a loopback cluster, only the daemon.
    pub fn kill_host(&mut self, i: usize) {
        self.kill(i);
        let host = &self.hosts[i - 1];
        if let Some(ns) = &host.netns {
            netns::kill_processes(ns);
        }
        for mnt in &host.mount_namespaces {
            netns::kill_mount_namespace(mnt.name());
        }
    }

    /// Stops host `i`'s daemon with SIGTERM and waits for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i - 1].child.take() {
            // SAFETY: signalling a child process we own by its PID.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pauses host `i`'s daemon (SIGSTOP): it holds its connections and state but answers
    /// nothing, as a process stalled by the machine, until [`Cluster::resume`].
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Lets a paused daemon run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        let pid = self
            .pid(i)
            .unwrap_or_else(|| panic!("host {i}'s daemon is not running"));
        // SAFETY: signalling a child process we own by its PID.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(
            sent,
            0,
            "signal {signal} to host {i}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The local socket of host `i`'s daemon (for clients of the Control API).
    pub fn socket(&self, i: usize) -> &Path {
        &self.hosts[i - 1].socket
    }

    /// The PID of host `i`'s daemon, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.hosts[i - 1].child.as_ref().map(Child::id)
    }

    /// Runs `skiff ARGS` against host `i`'s local socket.
    pub fn skiff(&self, i: usize, args: &[&str]) -> Output {
        self.skiff_with(&["-H", &self.host(i).host_arg()], args)
    }

    /// Where `skiff` run by this harness looks for `docker login`'s credentials
    /// (`DOCKER_CONFIG`): a directory of the cluster's own, without a `config.json` until a
    /// test writes one, so the machine's own credentials never count.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// Runs `skiff` with connection arguments of the caller's choosing.
    pub fn skiff_with(&self, conn: &[&str], args: &[&str]) -> Output {
        Command::new(bin("skiff"))
            .env("DOCKER_CONFIG", self.docker_config())
            .args(conn)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run skiff")
    }

    /// Runs `skiff ARGS` on host `i` with `input` on its standard input.
    pub fn skiff_input(&self, i: usize, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(bin("skiff"))
            .env("DOCKER_CONFIG", self.docker_config())
            .args(["-H", &self.host(i).host_arg()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run skiff");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write skiff's input");
        child.wait_with_output().expect("skiff's output")
    }

    /// Runs `skiff ARGS` on host `i` and returns its stdout; panics with its stderr if it fails.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.skiff(i, args);
        assert!(
            out.status.success(),
            "`skiff {}` on host {i} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `skiff ARGS` on host `i`, expects it to fail, and returns its stderr.
    pub fn fails(&self, i: usize, args: &[&str]) -> String {
        let out = self.skiff(i, args);
        assert!(
            !out.status.success(),
            "`skiff {}` on host {i} should have failed but printed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `skiff ARGS` on host `i`, retried until it succeeds (a cluster settling after a fault).
    pub fn eventually_ok(&self, i: usize, args: &[&str], within: Duration) -> String {
        wait_until(
            &format!("`skiff {}` on host {i} to succeed", args.join(" ")),
            within,
            || {
                let out = self.skiff(i, args);
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            },
        )
    }

    /// The daemon log of host `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.host(i).log).unwrap_or_default()
    }

    /// The temporary directory of this cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `swarm init` on host `i` (already started), advertising its own address.
    pub fn init(&self, i: usize) -> String {
        self.init_with(i, &[])
    }

    /// `swarm init` on host `i` with the `extra` arguments.
    pub fn init_with(&self, i: usize, extra: &[&str]) -> String {
        let addr = self.host(i).addr.clone();
        let mut args = vec!["swarm", "init", "--advertise-addr", &addr];
        args.extend_from_slice(extra);
        self.ok(i, &args);
        addr
    }

    /// `swarm join` of host `i` (already started) through the manager on host `via`, with
    /// the current `role` ("worker" or "manager") token.
    pub fn join(&self, i: usize, role: &str, via: usize) {
        let token = self
            .ok(via, &["swarm", "join-token", "-q", role])
            .trim()
            .to_owned();
        let own = self.host(i).addr.clone();
        let manager = self.host(via).addr.clone();
        self.ok(
            i,
            &[
                "swarm",
                "join",
                "--token",
                &token,
                "--advertise-addr",
                &own,
                &manager,
            ],
        );
    }

    /// Starts every host, `swarm init` on host 1 and `swarm join` of the others: the first
    /// `managers` hosts as managers, the rest as workers; returns once every node is ready.
    pub fn form(&mut self, managers: usize) {
        self.form_with(managers, &[]);
    }

    /// [`Cluster::form`], with `init_args` added to `swarm init`.
    pub fn form_with(&mut self, managers: usize, init_args: &[&str]) {
        self.start_all();
        self.init_with(1, init_args);
        for i in 2..=self.hosts.len() {
            self.join(i, if i <= managers { "manager" } else { "worker" }, 1);
        }
        let total = self.hosts.len();
        wait_until("every node ready", Duration::from_secs(30), || {
            let ready = self
                .nodes(1)
                .iter()
                .filter(|n| n["status"]["state"] == "NODE_STATE_READY")
                .count();
            (ready == total).then_some(())
        });
    }

    /// A connector that dials with host `i`'s node certificate (for calling RPCs directly).
    pub fn connector(&self, i: usize) -> cli::tls::TlsConnector {
        connector_from(&self.host(i).certs_dir())
    }

    /// `node ls` from host `i` as JSON.
    pub fn nodes(&self, i: usize) -> Vec<serde_json::Value> {
        let out = self.ok(i, &["node", "ls", "--format", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("node ls JSON: {e}: {out}"))
    }
}

/// A connector that dials with the node credentials in `certs` (a node's certificate
/// directory, or a copy of one).
pub fn connector_from(certs: &Path) -> cli::tls::TlsConnector {
    cli::tls::install_crypto_provider();
    let creds = cli::tls::NodeCredentials::load(certs).expect("node credentials");
    let identity = cli::tls::ReloadableIdentity::new(&creds).expect("node identity");
    cli::tls::TlsConnector::new(&creds.root_ca_pem, identity).expect("TLS connector")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 1..=self.hosts.len() {
            self.kill(i);
        }
        // Containers outlive their daemon (as they should): remove them now.
        drop(self.containerd.take());
        // Tasks on networks run in namespaces of their own: found by mount namespace.
        for mnt in self.hosts.iter().flat_map(|h| &h.mount_namespaces) {
            netns::kill_mount_namespace(mnt.name());
        }
        // Shims outlive their daemon by design; on loopback clusters nothing else finds
        // them and their tasks.
        kill_shims_under(self.dir.path());
        for host in self.hosts.iter().filter(|h| h.netns.is_some()) {
            netns::remove_node_namespaces(&host.data_dir);
        }
        if std::thread::panicking() {
            for host in &self.hosts {
                eprintln!(
                    "----- skiffd log of host {} ({}) -----\n{}",
                    host.index,
                    host.addr,
                    std::fs::read_to_string(&host.log).unwrap_or_default()
                );
            }
        }
    }
}

/// A TCP server standing for a machine outside the cluster: it keeps the first line of
/// every connection; it stops when dropped.
pub struct OutsideServer {
    /// Where it listens.
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl OutsideServer {
    /// Listens on a free port of [`netns::OUTSIDE`] in the namespace at `netns`.
    fn start(netns: PathBuf) -> Self {
        let listener = netns::inside(netns, || {
            let listener = std::net::TcpListener::bind((netns::OUTSIDE, 0))?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(listener)
        })
        .join()
        .expect("the binding thread")
        .expect("listen on the outside address");
        let addr = listener.local_addr().expect("the outside address");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let recorded = lines.clone();
        runtime.spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((conn, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut line = String::new();
                    let mut reader = tokio::io::BufReader::new(conn);
                    let read = reader.read_line(&mut line);
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), read).await {
                        let mut lines = recorded.lock().unwrap_or_else(|e| e.into_inner());
                        lines.push(line.trim().to_owned());
                    }
                });
            }
        });
        Self {
            addr,
            lines,
            _runtime: runtime,
        }
    }

    /// The first lines of the connections so far, in order of arrival.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Kills (SIGKILL) the process runtime's shims whose task directories are under `dir` (a
/// cluster's own temporary directory), and every process under them: the tasks.
fn kill_shims_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let dir = dir.to_string_lossy().into_owned();
    // (pid, parent) of every process, and the shims among them.
    let mut parents = Vec::new();
    let mut doomed = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent is the second field after the command name, which may hold spaces.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(parent) = parent {
            parents.push((pid, parent));
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("\0shim\0") && cmdline.contains(&dir) {
            doomed.push(pid);
        }
    }
    let mut i = 0;
    while i < doomed.len() {
        let pid = doomed[i];
        doomed.extend(parents.iter().filter(|(_, p)| *p == pid).map(|(c, _)| *c));
        i += 1;
    }
    for pid in doomed {
        // SAFETY: SIGKILL to a shim of this cluster's daemons, or one of its tasks.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Polls `f` until it returns `Some`, or panics after `within` saying what was awaited.
pub fn wait_until<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    /// ARCHITECTURE.md's code map stays true: it links every module of every crate, and
    /// nothing that is gone.
    #[test]
    fn the_code_map_links_every_module_and_nothing_else() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
        let mut missing = Vec::new();
        for krate in [
            "proto",
            "manager",
            "worker",
            "agent-runtime",
            "cli",
            "integration-tests",
        ] {
            let mut todo = vec![root.join(krate).join("src")];
            while let Some(dir) = todo.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    let rel = path.strip_prefix(&root).unwrap().display().to_string();
                    if path.is_dir() {
                        todo.push(path);
                    } else if rel.ends_with(".rs")
                        && !rel.ends_with("tests.rs")
                        && !map.contains(&format!("]({rel})"))
                    {
                        missing.push(rel);
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "ARCHITECTURE.md's code map lacks {missing:?}"
        );
        let gone: Vec<&str> = map
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .filter(|link| !link.starts_with("http") && !root.join(link).exists())
            .collect();
        assert!(
            gone.is_empty(),
            "ARCHITECTURE.md links what is gone: {gone:?}"
        );
    }
}
