//! `skiffd --metrics-addr ADDR:PORT` (off by default; dockerd's is usually 9323): Prometheus
//! metrics in the OpenMetrics text format at `/metrics`, on every node.
//!
//! What is here: the manager's (`manager::metrics`: Raft, the store by kind and task state,
//! proposals, control API calls), this node's tasks by state as its agent last reported
//! them, and the process's memory, CPU and file descriptors.
//!
//! Security: plain HTTP, read-only, to whoever reaches the address (bind it to loopback or
//! to the address your Prometheus scrapes). Only `GET`/`HEAD` of `/metrics` and of the
//! cluster page (`page.rs`) are served; other methods get 405 and other paths 404. No metric carries a name beyond a kind, a
//! state or an RPC method, so no secret, environment value, token or key can appear.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use manager::RunningManager;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::logs::AgentSlot;

/// The Content-Type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric this daemon serves.
pub struct Metrics {
    registry: Registry,
    running: Arc<RunningManager>,
}

impl Metrics {
    /// The daemon's metrics, reading the manager and agent in `running` and `agent`.
    pub fn new(running: Arc<RunningManager>, agent: AgentSlot) -> Arc<Self> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let skiff = registry.sub_registry_with_prefix("skiff");
        manager::metrics::METRICS.register(skiff);
        skiff.register_collector(Box::new(NodeTasks { agent }));
        Arc::new(Self { registry, running })
    }

    /// The metrics as they are now, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        manager::metrics::sample(self.running.current().as_deref());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// This node's tasks by the state its agent last reported.
struct NodeTasks {
    agent: AgentSlot,
}

impl std::fmt::Debug for NodeTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTasks")
    }
}

impl Collector for NodeTasks {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let agent = self
            .agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(agent, _)| agent.clone());
        let counts = agent
            .map(|a| a.reporter().count_by_state())
            .unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "node_tasks",
            "This node's tasks by the state it last reported",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for state in (0..32).filter_map(|i| proto::TaskState::try_from(i).ok()) {
            let n = counts.get(&(state as i32)).copied().unwrap_or(0);
            let labels = [("state", manager::metrics::state_word(state))];
            ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The process's resident memory, CPU time and open file descriptors, from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(process) = read_process() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let resident = ConstGauge::new(process.resident_bytes);
        resident.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            resident.metric_type(),
        )?)?;
        let fds = ConstGauge::new(process.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

struct Process {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

fn read_process() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // SAFETY: sysconf only reads constants of the system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    Some(Process {
        cpu_seconds: (utime + stime) / ticks.max(1) as f64,
        resident_bytes: resident_pages * page.max(1),
        open_fds,
    })
}

/// Parses `--metrics-addr`.
pub fn parse_addr(value: &str) -> anyhow::Result<SocketAddr> {
    value.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --metrics-addr {value:?}: use IP:PORT, e.g. 127.0.0.1:9323 (or 0.0.0.0:9323 for a Prometheus on another host)"
        )
    })
}

/// Serves `metrics` on `addr` until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics (--metrics-addr)"))?;
    let page = super::page::routes(metrics.running.clone());
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    let text = tokio::task::spawn_blocking(move || metrics.render())
                        .await
                        .unwrap_or_default();
                    ([(header::CONTENT_TYPE, OPENMETRICS)], text)
                }
            }),
        )
        .merge(page)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: metrics are at /metrics, the cluster page at /\n",
            )
                .into_response()
        });
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_read_this_process() {
        let p = read_process().expect("/proc/self");
        assert!(p.resident_bytes > 0 && p.open_fds > 0);
    }

    #[test]
    fn a_daemon_without_a_cluster_serves_its_metrics_with_zero_tasks() {
        let metrics = Metrics::new(Arc::default(), Arc::default());
        let text = metrics.render();
        assert!(text.contains("skiff_raft_is_leader 0"), "{text}");
        assert!(
            text.contains("skiff_node_tasks{state=\"running\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn bad_addresses_say_what_to_give() {
        let err = parse_addr("9323").unwrap_err().to_string();
        assert!(err.contains("use IP:PORT"), "{err}");
        assert_eq!(parse_addr("127.0.0.1:9323").unwrap().port(), 9323);
    }
}
