//! The filter pipeline: which nodes may take a task of a given spec, and, when none may, a
//! message that tells the user what to change.
//!
//! Filters run in a fixed order (readiness, availability, constraints, platform, CPU,
//! memory, max replicas per node, host ports) and a node is charged to the first one that rejects it,
//! so the counts in a message add up to the number of nodes.

use proto::{Endpoint, Node, NodeAvailability, NodeState, Platform, TaskSpec};

use crate::allocator::ports::protocol_name;
use crate::units::{self, trim_decimals};

use super::constraint::{self, arch_eq, Constraint, SpreadPreference};
use crate::store::{host_ports, reservations, HostPort, NodeLoad};

/// A node plus the bookkeeping the scheduler keeps for it during one `schedule` call: what
/// is already reserved on it and how many tasks occupy it (including earlier decisions of
/// the same call).
#[derive(Debug)]
pub(super) struct NodeInfo<'a> {
    pub node: &'a Node,
    pub id: &'a str,
    state: i32,
    availability: i32,
    cpu_total: i64,
    memory_total: i64,
    cpu_reserved: i64,
    memory_reserved: i64,
    /// Tasks of any service occupying the node.
    pub tasks: u32,
    /// Ports (protocol, number) its tasks publish in host mode.
    host_ports: Vec<HostPort>,
}

impl<'a> NodeInfo<'a> {
    /// `None` for a node without an ID: nothing could be assigned to it.
    pub fn new(node: &'a Node) -> Option<Self> {
        let id = node
            .meta
            .as_ref()
            .map(|m| m.id.as_str())
            .filter(|id| !id.is_empty())?;
        let resources = node.description.as_ref().and_then(|d| d.resources);
        Some(NodeInfo {
            node,
            id,
            state: node
                .status
                .as_ref()
                .map_or(NodeState::Unknown as i32, |s| s.state),
            availability: node
                .spec
                .as_ref()
                .map_or(NodeAvailability::Active as i32, |s| s.availability),
            cpu_total: resources.map_or(0, |r| r.nano_cpus),
            memory_total: resources.map_or(0, |r| r.memory_bytes),
            cpu_reserved: 0,
            memory_reserved: 0,
            tasks: 0,
            host_ports: Vec::new(),
        })
    }

    /// Counts one more task on the node and reserves what it asks for: CPU, memory and the
    /// ports it publishes in host mode.
    pub fn add_task(&mut self, cpu: i64, memory: i64, host_ports: &[HostPort]) {
        self.cpu_reserved = self.cpu_reserved.saturating_add(cpu);
        self.memory_reserved = self.memory_reserved.saturating_add(memory);
        self.tasks = self.tasks.saturating_add(1);
        self.host_ports.extend_from_slice(host_ports);
    }

    /// Starts from what the tasks already on the node hold.
    pub fn load(&mut self, load: &NodeLoad) {
        let clamp = |v: i128| v.clamp(0, i128::from(i64::MAX)) as i64;
        self.cpu_reserved = clamp(load.cpu);
        self.memory_reserved = clamp(load.memory);
        self.tasks = load.tasks;
        self.host_ports = load
            .host_ports
            .iter()
            .flat_map(|(port, n)| std::iter::repeat_n(*port, *n as usize))
            .collect();
    }

    /// Takes back what [`NodeInfo::add_task`] (or [`NodeInfo::load`]) counted for one task.
    pub fn remove_task(&mut self, cpu: i64, memory: i64, host_ports: &[HostPort]) {
        self.cpu_reserved = self.cpu_reserved.saturating_sub(cpu).max(0);
        self.memory_reserved = self.memory_reserved.saturating_sub(memory).max(0);
        self.tasks = self.tasks.saturating_sub(1);
        for port in host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
    }

    fn cpu_free(&self) -> i64 {
        self.cpu_total.saturating_sub(self.cpu_reserved)
    }

    fn memory_free(&self) -> i64 {
        self.memory_total.saturating_sub(self.memory_reserved)
    }
}

/// The first filter that rejected a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    NotReady(i32),
    Paused,
    Drained,
    /// Index into `Requirements::constraints`.
    Constraint(usize),
    Platform,
    Cpu {
        free: i64,
    },
    Memory {
        free: i64,
    },
    MaxReplicas,
    /// Index into `Requirements::host_ports` of a port the node already publishes.
    HostPort(usize),
}

/// Everything the filters need from a task spec, parsed once per group of tasks sharing it.
#[derive(Debug)]
pub(super) struct Requirements {
    pub constraints: Vec<Constraint>,
    pub preferences: Vec<SpreadPreference>,
    platforms: Vec<Platform>,
    pub cpu: i64,
    pub memory: i64,
    /// Zero means unlimited.
    max_replicas: u64,
    /// Ports the task publishes in host mode: a node can publish each only once.
    pub host_ports: Vec<HostPort>,
}

impl Requirements {
    /// Parses the spec's placement. An invalid constraint or preference (which the control
    /// API should have refused) makes every task of the spec unplaceable with the parse
    /// error as the reason, rather than silently ignoring what the user asked for.
    pub fn from_spec(spec: Option<&TaskSpec>) -> Result<Self, String> {
        let placement = spec.and_then(|s| s.placement.as_ref());
        let constraints = placement
            .map(|p| constraint::parse_all(&p.constraints))
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let preferences = placement
            .map(|p| {
                p.preferences
                    .iter()
                    .map(|pref| constraint::parse_spread(&pref.spread))
                    .collect()
            })
            .transpose()
            .map_err(|e: constraint::PreferenceError| e.to_string())?
            .unwrap_or_default();
        let (cpu, memory) = reservations(spec);
        Ok(Requirements {
            constraints,
            preferences,
            platforms: placement.map(|p| p.platforms.clone()).unwrap_or_default(),
            cpu,
            memory,
            max_replicas: placement.map_or(0, |p| p.max_replicas),
            host_ports: Vec::new(),
        })
    }

    /// The requirements of `spec` for a task whose endpoint is `endpoint` (the ports it
    /// publishes in host mode).
    pub fn from_task(spec: Option<&TaskSpec>, endpoint: Option<&Endpoint>) -> Result<Self, String> {
        let mut req = Self::from_spec(spec)?;
        req.host_ports = host_ports(endpoint);
        Ok(req)
    }

    /// The filters whose verdict cannot change during one `schedule` call.
    pub fn check_static(&self, node: &NodeInfo<'_>) -> Result<(), Rejection> {
        if node.state != NodeState::Ready as i32 {
            return Err(Rejection::NotReady(node.state));
        }
        if node.availability == NodeAvailability::Pause as i32 {
            return Err(Rejection::Paused);
        }
        if node.availability != NodeAvailability::Active as i32 {
            return Err(Rejection::Drained);
        }
        if let Some(i) = self.constraints.iter().position(|c| !c.matches(node.node)) {
            return Err(Rejection::Constraint(i));
        }
        if !self.platforms.is_empty() {
            let platform = node
                .node
                .description
                .as_ref()
                .and_then(|d| d.platform.as_ref());
            let (os, arch) = platform.map_or(("", ""), |p| (p.os.as_str(), p.arch.as_str()));
            let fits = |p: &Platform| {
                (p.os.is_empty() || p.os.eq_ignore_ascii_case(os))
                    && (p.arch.is_empty() || arch_eq(&p.arch, arch))
            };
            if !self.platforms.iter().any(fits) {
                return Err(Rejection::Platform);
            }
        }
        Ok(())
    }

    /// The filters that depend on what is already placed: resources and max replicas.
    /// `service_tasks` is the number of tasks of this task's service on the node.
    pub fn check_capacity(&self, node: &NodeInfo<'_>, service_tasks: u32) -> Result<(), Rejection> {
        if self.cpu > 0 && self.cpu > node.cpu_free() {
            return Err(Rejection::Cpu {
                free: node.cpu_free(),
            });
        }
        if self.memory > 0 && self.memory > node.memory_free() {
            return Err(Rejection::Memory {
                free: node.memory_free(),
            });
        }
        if self.max_replicas > 0 && u64::from(service_tasks) >= self.max_replicas {
            return Err(Rejection::MaxReplicas);
        }
        if let Some(i) = self
            .host_ports
            .iter()
            .position(|p| node.host_ports.contains(p))
        {
            return Err(Rejection::HostPort(i));
        }
        Ok(())
    }

    /// All filters, in order.
    pub fn check(&self, node: &NodeInfo<'_>, service_tasks: u32) -> Result<(), Rejection> {
        self.check_static(node)?;
        self.check_capacity(node, service_tasks)
    }

    /// Why one node cannot take the task, as a phrase after "node X " (for tasks that are
    /// bound to one node, such as a global service's).
    pub fn describe(&self, rejection: Rejection) -> String {
        match rejection {
            Rejection::NotReady(state) => format!("is not ready ({})", state_name(state)),
            Rejection::Paused => "is paused".to_string(),
            Rejection::Drained => "is drained".to_string(),
            Rejection::Constraint(i) => {
                format!("does not satisfy constraint {}", self.constraint_text(i))
            }
            Rejection::Platform => format!("does not match platform {}", self.platform_text()),
            Rejection::Cpu { free } => {
                format!(
                    "has insufficient CPU (needs {}, {} free)",
                    fmt_cpus(self.cpu),
                    fmt_cpus(free)
                )
            }
            Rejection::Memory { free } => {
                format!(
                    "has insufficient memory (needs {}, {} free)",
                    fmt_bytes(self.memory),
                    fmt_bytes(free)
                )
            }
            Rejection::MaxReplicas => format!(
                "already runs the maximum of {} of this service",
                self.max_replicas_text()
            ),
            Rejection::HostPort(i) => format!(
                "already publishes port {} in host mode",
                self.host_port_text(i)
            ),
        }
    }

    fn host_port_text(&self, i: usize) -> String {
        self.host_ports.get(i).map_or_else(
            || "?".to_string(),
            |(protocol, port)| format!("{port}/{}", protocol_name(*protocol)),
        )
    }

    fn constraint_text(&self, i: usize) -> String {
        self.constraints
            .get(i)
            .map_or_else(|| "?".to_string(), ToString::to_string)
    }

    fn platform_text(&self) -> String {
        let one = |p: &Platform| {
            let part = |s: &str| {
                if s.is_empty() {
                    "*".to_string()
                } else {
                    s.to_string()
                }
            };
            format!("{}/{}", part(&p.os), part(&p.arch))
        };
        self.platforms
            .iter()
            .map(one)
            .collect::<Vec<_>>()
            .join(" or ")
    }

    fn max_replicas_text(&self) -> String {
        plural(self.max_replicas, "task", "tasks")
    }
}

/// Counts, per reason, the nodes that cannot take a task, and renders them as one message.
#[derive(Debug, Default)]
pub(super) struct Explanation {
    nodes: u64,
    not_ready: u64,
    paused: u64,
    drained: u64,
    /// Per constraint index.
    constraints: Vec<u64>,
    platform: u64,
    cpu: u64,
    cpu_max_free: i64,
    memory: u64,
    memory_max_free: i64,
    max_replicas: u64,
    /// Per host port index.
    host_ports: Vec<u64>,
}

impl Explanation {
    /// Charges one node to the filter that rejected it (`None`: the node would have fit).
    pub fn record(&mut self, rejection: Option<Rejection>) {
        self.nodes += 1;
        match rejection {
            None => {}
            Some(Rejection::NotReady(_)) => self.not_ready += 1,
            Some(Rejection::Paused) => self.paused += 1,
            Some(Rejection::Drained) => self.drained += 1,
            Some(Rejection::Constraint(i)) => {
                if self.constraints.len() <= i {
                    self.constraints.resize(i + 1, 0);
                }
                self.constraints[i] += 1;
            }
            Some(Rejection::Platform) => self.platform += 1,
            Some(Rejection::Cpu { free }) => {
                self.cpu_max_free = if self.cpu == 0 {
                    free
                } else {
                    self.cpu_max_free.max(free)
                };
                self.cpu += 1;
            }
            Some(Rejection::Memory { free }) => {
                self.memory_max_free = if self.memory == 0 {
                    free
                } else {
                    self.memory_max_free.max(free)
                };
                self.memory += 1;
            }
            Some(Rejection::MaxReplicas) => self.max_replicas += 1,
            Some(Rejection::HostPort(i)) => {
                if self.host_ports.len() <= i {
                    self.host_ports.resize(i + 1, 0);
                }
                self.host_ports[i] += 1;
            }
        }
    }

    /// "no suitable node: 2 nodes not ready, 1 node drained, ...". For resources the most
    /// free space among the rejected nodes is quoted: it tells the user how far off the
    /// reservation is ("at most 200 MiB free" means reserving 200 MiB would fit somewhere).
    pub fn message(&self, req: &Requirements) -> String {
        if self.nodes == 0 {
            return "no suitable node: the cluster has no nodes".to_string();
        }
        let nodes = |n: u64| plural(n, "node", "nodes");
        let verb = |n: u64, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        let mut parts = Vec::new();
        if self.not_ready > 0 {
            parts.push(format!("{} not ready", nodes(self.not_ready)));
        }
        if self.paused > 0 {
            parts.push(format!("{} paused", nodes(self.paused)));
        }
        if self.drained > 0 {
            parts.push(format!("{} drained", nodes(self.drained)));
        }
        for (i, &n) in self.constraints.iter().enumerate() {
            if n > 0 {
                let v = verb(n, "does", "do");
                parts.push(format!(
                    "{} {v} not satisfy constraint {}",
                    nodes(n),
                    req.constraint_text(i)
                ));
            }
        }
        if self.platform > 0 {
            let v = verb(self.platform, "does", "do");
            parts.push(format!(
                "{} {v} not match platform {}",
                nodes(self.platform),
                req.platform_text()
            ));
        }
        let at_most = |n: u64| if n == 1 { "" } else { "at most " };
        if self.cpu > 0 {
            parts.push(format!(
                "{} {} insufficient CPU (needs {}, {}{} free)",
                nodes(self.cpu),
                verb(self.cpu, "has", "have"),
                fmt_cpus(req.cpu),
                at_most(self.cpu),
                fmt_cpus(self.cpu_max_free),
            ));
        }
        if self.memory > 0 {
            parts.push(format!(
                "{} {} insufficient memory (needs {}, {}{} free)",
                nodes(self.memory),
                verb(self.memory, "has", "have"),
                fmt_bytes(req.memory),
                at_most(self.memory),
                fmt_bytes(self.memory_max_free),
            ));
        }
        if self.max_replicas > 0 {
            parts.push(format!(
                "{} already {} the maximum of {} of this service per node",
                nodes(self.max_replicas),
                verb(self.max_replicas, "runs", "run"),
                req.max_replicas_text(),
            ));
        }
        for (i, &n) in self.host_ports.iter().enumerate() {
            if n > 0 {
                parts.push(format!(
                    "{} already {} port {} in host mode",
                    nodes(n),
                    verb(n, "publishes", "publish"),
                    req.host_port_text(i)
                ));
            }
        }
        if parts.is_empty() {
            // Every node passed the filters yet tasks were left over: cannot happen with the
            // current placement, but say something true rather than nothing.
            return format!("no suitable node: all {} are full", nodes(self.nodes));
        }
        format!("no suitable node: {}", parts.join(", "))
    }
}

fn state_name(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::Down) => "down",
        Ok(NodeState::Disconnected) => "disconnected",
        Ok(NodeState::Ready) => "ready",
        _ => "state unknown",
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1.5 CPUs`, `1 CPU`, `0.25 CPUs` (from nano-CPUs).
pub(super) fn fmt_cpus(nano: i64) -> String {
    let cpus = nano.max(0) as f64 / 1e9;
    let text = trim_decimals(cpus, 3);
    if text == "1" {
        "1 CPU".to_string()
    } else {
        format!("{text} CPUs")
    }
}

/// `512 MiB`, `1.5 GiB`, `100 B`.
pub(super) fn fmt_bytes(bytes: i64) -> String {
    units::format_bytes(bytes, 1, " ")
}
