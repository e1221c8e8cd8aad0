//! What the tasks already placed hold on each node: the scheduler's per-node state. The
//! store keeps one [`Placed`] up to date task by task (`ObjectStore::placed`), so a
//! scheduling round starts from it instead of walking every task of the cluster; counting
//! it from a list of tasks ([`Placed::of_tasks`]) gives the same thing, which is what the
//! tests check. It lives with the store, which keeps it, and the scheduler reads it (the
//! store depends on no subsystem).

use std::collections::{BTreeMap, HashMap};

use proto::{Endpoint, PublishMode, Task, TaskSpec, TaskState};

/// A port published in host mode: (protocol, number).
pub type HostPort = (i32, u32);

/// The ports a task publishes in host mode with a fixed number (a port asked as 0 takes any
/// free one on its node, so it never conflicts).
pub fn host_ports(endpoint: Option<&Endpoint>) -> Vec<HostPort> {
    endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode == PublishMode::Host as i32 && p.published_port != 0)
        .map(|p| (p.protocol, p.published_port))
        .collect()
}

/// Whether a task in the store holds its node's resources: it is meant to run (desired
/// state RUNNING or earlier) and has not stopped (observed state not past RUNNING). The
/// proto's `TaskState` order is the lifecycle order, so both are comparisons.
pub fn occupies_node(task: &Task) -> bool {
    let observed = task
        .status
        .as_ref()
        .map_or(TaskState::New as i32, |s| s.state);
    task.desired_state <= TaskState::Running as i32 && observed <= TaskState::Running as i32
}

/// The CPU and memory a task reserves (negative values count as zero).
pub fn reservations(spec: Option<&TaskSpec>) -> (i64, i64) {
    spec.and_then(|s| s.resources.as_ref())
        .and_then(|r| r.reservations)
        .map_or((0, 0), |r| (r.nano_cpus.max(0), r.memory_bytes.max(0)))
}

/// What the tasks occupying one node hold there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Tasks of any service.
    pub tasks: u32,
    /// Reserved nano CPUs (a sum of non-negative values, so removal is exact).
    pub cpu: i128,
    /// Reserved memory in bytes.
    pub memory: i128,
    /// Ports published in host mode, with how many tasks publish each.
    pub host_ports: BTreeMap<HostPort, u32>,
}

impl NodeLoad {
    fn is_empty(&self) -> bool {
        self.tasks == 0
    }
}

/// The load of every node that has tasks, and how many of each service's tasks each node
/// holds (for the spread and `max-replicas-per-node`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    nodes: HashMap<String, NodeLoad>,
    /// (service, node) to tasks of the service occupying the node.
    services: BTreeMap<(String, String), u32>,
}

impl Placed {
    /// Counts `tasks` (those that occupy a node).
    pub fn of_tasks<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Self {
        let mut placed = Placed::default();
        for task in tasks {
            placed.add(task);
        }
        placed
    }

    /// Counts a task in, if it occupies a node.
    pub fn add(&mut self, task: &Task) {
        if task.node_id.is_empty() || !occupies_node(task) {
            return;
        }
        let (cpu, memory) = reservations(task.spec.as_deref());
        let load = self.nodes.entry(task.node_id.clone()).or_default();
        load.tasks += 1;
        load.cpu += i128::from(cpu);
        load.memory += i128::from(memory);
        for port in host_ports(task.endpoint.as_ref()) {
            *load.host_ports.entry(port).or_default() += 1;
        }
        *self
            .services
            .entry((task.service_id.clone(), task.node_id.clone()))
            .or_default() += 1;
    }

    /// Counts out a task [`Placed::add`] counted in (the same fields).
    pub fn remove(&mut self, task: &Task) {
        if task.node_id.is_empty() || !occupies_node(task) {
            return;
        }
        let (cpu, memory) = reservations(task.spec.as_deref());
        if let Some(load) = self.nodes.get_mut(&task.node_id) {
            load.tasks -= 1;
            load.cpu -= i128::from(cpu);
            load.memory -= i128::from(memory);
            for port in host_ports(task.endpoint.as_ref()) {
                if let Some(n) = load.host_ports.get_mut(&port) {
                    *n -= 1;
                    if *n == 0 {
                        load.host_ports.remove(&port);
                    }
                }
            }
            if load.is_empty() {
                self.nodes.remove(&task.node_id);
            }
        }
        let key = (task.service_id.clone(), task.node_id.clone());
        if let Some(n) = self.services.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.services.remove(&key);
            }
        }
    }

    /// What the node's tasks hold (nothing for a node without tasks).
    pub fn node(&self, node_id: &str) -> Option<&NodeLoad> {
        self.nodes.get(node_id)
    }

    /// The nodes holding tasks of `service_id`, with how many each.
    pub fn of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = (&'a str, u32)> {
        self.services
            .range((service_id.to_owned(), String::new())..)
            .take_while(move |((s, _), _)| s == service_id)
            .map(|((_, node), n)| (node.as_str(), *n))
    }
}
