//! Simulated workers: real nodes (each with its own certificate, TLS session, heartbeats,
//! assignments and status reports) that run in the test's own process with the `fake`
//! runtime, so a test or bench can connect hundreds of workers to real managers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::fake::{FakeConfig, FakeRuntime};
use manager::transport::Connector;
use proto::ca_client::CaClient;
use proto::{IssueNodeCertificateRequest, NodeDescription, Platform, Resources};
use tokio::sync::watch;

use crate::Cluster;

/// A memory file system, where the machine has one.
const IN_MEMORY: &str = "/dev/shm";

/// Simulated workers joined to a cluster; they leave (stop their sessions) when this is
/// dropped.
pub struct SimulatedWorkers {
    stop: watch::Sender<bool>,
    count: usize,
    /// The agents' state, in memory where the machine has it: a thousand nodes saving their
    /// tasks on one ext4 disk made the kernel's inode allocation (it scans past recently
    /// deleted inodes) cost the bench process more CPU than the nodes' own work, and starved
    /// their heartbeats. Each real node has a disk of its own.
    _state: tempfile::TempDir,
}

impl SimulatedWorkers {
    /// Joins `count` simulated workers, named `sim0`, `sim1`, ..., through host `via`'s
    /// manager, on `rt`. They become ready as the cluster admits them: wait for that.
    pub fn join(rt: &tokio::runtime::Runtime, cluster: &Cluster, via: usize, count: usize) -> Self {
        let addr = cluster.host(via).addr.clone();
        let token = cluster
            .ok(via, &["swarm", "join-token", "-q", "worker"])
            .trim()
            .to_owned();
        let root_pem =
            std::fs::read_to_string(cluster.host(via).certs_dir().join("ca.pem")).expect("root CA");
        let in_memory = Path::new(IN_MEMORY);
        let parent = if in_memory.is_dir() {
            in_memory
        } else {
            cluster.dir()
        };
        let state = tempfile::Builder::new()
            .prefix("skiff-simulated-")
            .tempdir_in(parent)
            .expect("a directory for the simulated workers' state");
        let state_dir = state.path().to_owned();
        let (stop, stopped) = watch::channel(false);
        for index in 0..count {
            rt.spawn(run(
                addr.clone(),
                token.clone(),
                root_pem.clone(),
                index,
                state_dir.clone(),
                stopped.clone(),
            ));
        }
        Self {
            stop,
            count,
            _state: state,
        }
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether a node (as `node ls --format json` lists it) is one of them.
    pub fn is_simulated(node: &serde_json::Value) -> bool {
        node["description"]["runtime"] == "fake"
            && node["description"]["hostname"]
                .as_str()
                .is_some_and(|h| h.starts_with("sim"))
    }
}

impl Drop for SimulatedWorkers {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Joins one simulated worker and runs its session with the fake runtime until `stop`.
async fn run(
    manager_addr: String,
    token: String,
    root_pem: String,
    index: usize,
    state_dir: PathBuf,
    stop: watch::Receiver<bool>,
) {
    let (key_pem, csr_pem) = cli::tls::generate_key_and_csr().expect("csr");
    // A thousand joins at once can time out on a busy machine: retry, as a person would.
    let issued = loop {
        let reply =
            CaClient::new(cli::tls::anonymous_channel(&manager_addr, &root_pem).expect("channel"))
                .issue_node_certificate(IssueNodeCertificateRequest {
                    token: token.clone(),
                    csr_pem: csr_pem.clone(),
                    description: Some(describe(index)),
                    advertise_addr: address(index),
                })
                .await;
        match reply {
            Ok(r) => break r.into_inner(),
            Err(_) if !*stop.borrow() => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(_) => return,
        }
    };
    let creds = cli::tls::NodeCredentials {
        root_ca_pem: root_pem.clone(),
        cert_pem: issued.cert_pem,
        key_pem,
    };
    let identity = cli::tls::ReloadableIdentity::new(&creds).expect("identity");
    let connector = Arc::new(cli::tls::TlsConnector::new(&root_pem, identity).expect("connector"));
    let runtime = Arc::new(FakeRuntime::new(FakeConfig::default()));
    let agent = worker::agent::Agent::new(runtime, agent_dir(&state_dir, index), None);
    agent.recover().await.expect("agent state");
    let dial: worker::Dialer = Arc::new(move |addr: &str| connector.channel(addr));
    let (events, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    worker::session::run(
        worker::session::SessionConfig {
            addr: address(index),
            description: describe(index),
            managers: issued.managers,
            agent,
        },
        dial,
        events,
        stop,
    )
    .await;
}

fn agent_dir(state_dir: &Path, index: usize) -> PathBuf {
    state_dir.join(format!("sim{index}"))
}

/// A unique address that nothing listens on (the managers never dial workers).
fn address(index: usize) -> String {
    format!("127.200.{}.{}:1", index / 250, index % 250 + 1)
}

/// What simulated worker `index` reports about itself: plenty of room for tasks.
pub fn describe(index: usize) -> NodeDescription {
    NodeDescription {
        hostname: format!("sim{index}"),
        platform: Some(Platform {
            os: "linux".into(),
            arch: std::env::consts::ARCH.into(),
        }),
        resources: Some(Resources {
            nano_cpus: 8_000_000_000,
            memory_bytes: 32 << 30,
            ..Default::default()
        }),
        engine_version: "bench".into(),
        runtime: "fake".into(),
        ..Default::default()
    }
}
