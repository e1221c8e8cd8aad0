//! The scheduler's decisions: which node each pending task goes to, or why it cannot go
//! anywhere. Pure functions over a snapshot of nodes and tasks, with no I/O, so the logic can
//! be tested (and benchmarked) without a cluster. The leader's reconciliation round
//! (`crate::orchestrator`) calls it after the orchestrators and commits its decisions in
//! batches (`crate::leader::BATCH` changes per Raft entry).
//!
//! One call works like this:
//!
//! 1. Per node, take what is already placed (tasks, reserved CPU and memory, host ports,
//!    tasks per service) from the counts the store keeps task by task ([`Placed`]), or
//!    count it once from a list of tasks.
//! 2. Group the pending tasks by service, spec version and scheduling-relevant spec
//!    (placement, reservations): tasks of one group are interchangeable, so constraints are
//!    parsed and node filters run once per group and node, not once per task.
//! 3. Tasks already bound to a node (global services) are checked against that node only.
//! 4. For the rest of a group, the nodes that pass the filters are arranged in a tree by the
//!    spread preferences (Docker's algorithm: each level evens out the service's tasks over
//!    the values of one attribute), with a min-heap at each leaf keyed by (tasks of this
//!    service, tasks overall, node ID). Placing a task is a heap update, so a group of `t`
//!    tasks on `n` nodes costs O(n + t log n).
//!
//! Every decision updates the same bookkeeping, so later decisions of the call (in the same
//! group or another) see the tasks, CPU and memory of the earlier ones.

pub mod constraint;
mod filters;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use proto::{Endpoint, Node, Platform, Task, TaskSpec};

use crate::store::{host_ports, occupies_node, reservations, Placed};

use filters::{Explanation, NodeInfo, Rejection, Requirements};

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the task on this node (the caller sets `node_id` and moves it to ASSIGNED).
    Assign { task_id: String, node_id: String },
    /// No node can take the task now; `reason` says why, for the task's status message.
    Unplaceable { task_id: String, reason: String },
}

impl Decision {
    /// The task the decision is about.
    pub fn task_id(&self) -> &str {
        match self {
            Decision::Assign { task_id, .. } | Decision::Unplaceable { task_id, .. } => task_id,
        }
    }
}

/// Decides where each of `pending` goes.
///
/// - `nodes`: every node in the store.
/// - `tasks`: every task in the store; those occupying a node (desired state RUNNING or
///   earlier, observed state not terminal) count against its resources and spread.
///   Both are iterated once, so the caller can pass the store's own iterators (e.g.
///   `store.list::<Task>()`) instead of cloning every object; slices work too.
/// - `pending`: the tasks to place, each expected once. A pending task with `node_id`
///   already set (a global service's task) is only checked against that node.
///
/// Returns one decision per pending task, in the order of `pending`.
pub fn schedule<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    tasks: impl IntoIterator<Item = &'a Task>,
    pending: &[&'a Task],
) -> Vec<Decision> {
    // A bound pending task may already name its node in the store; it does not occupy
    // the node until it is assigned.
    let bound: HashSet<&str> = pending
        .iter()
        .filter(|t| !t.node_id.is_empty())
        .map(|t| t.id())
        .collect();
    let placed = Placed::of_tasks(tasks.into_iter().filter(|t| !bound.contains(t.id())));
    decide(nodes, &placed, &[], pending)
}

/// [`schedule`] from what the store keeps placed (`ObjectStore::placed`) instead of a walk
/// over every task: `placed` counts every task occupying a node, the pending tasks already
/// bound to one included (they are in the store); those are counted out here.
pub fn schedule_placed<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    placed: &Placed,
    pending: &[&'a Task],
) -> Vec<Decision> {
    let bound: Vec<&Task> = pending
        .iter()
        .copied()
        .filter(|t| !t.node_id.is_empty())
        .collect();
    decide(nodes, placed, &bound, pending)
}

/// Places `pending` on `nodes` loaded with `placed` minus `discount`.
fn decide<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    placed: &Placed,
    discount: &[&Task],
    pending: &[&'a Task],
) -> Vec<Decision> {
    let (groups, services) = group_pending(pending);
    let mut cluster = Cluster::new(nodes, placed, discount, &services);
    let mut out: Vec<Option<Decision>> = vec![None; pending.len()];

    let requirements: Vec<Result<Requirements, String>> = groups
        .iter()
        .map(|g| Requirements::from_task(g.spec, g.endpoint))
        .collect();

    // Bound tasks first: they can run nowhere else, so they get the first claim on their
    // node's resources (as in SwarmKit).
    for (group, req) in groups.iter().zip(&requirements) {
        match req {
            Ok(req) => cluster.place_bound(group, req, pending, &mut out),
            Err(reason) => unplaceable(&group.bound, reason, pending, &mut out),
        }
    }
    for (group, req) in groups.iter().zip(&requirements) {
        match req {
            Ok(req) => cluster.place_free(group, req, pending, &mut out),
            Err(reason) => unplaceable(&group.free, reason, pending, &mut out),
        }
    }
    out.into_iter().flatten().collect()
}

fn unplaceable(indices: &[usize], reason: &str, pending: &[&Task], out: &mut [Option<Decision>]) {
    for &i in indices {
        out[i] = Some(Decision::Unplaceable {
            task_id: pending[i].id().to_owned(),
            reason: reason.to_string(),
        });
    }
}

/// Pending tasks that share a service and everything the filters and the spread look at.
struct Group<'a> {
    /// Index of the service in `Cluster::service_tasks`.
    service: usize,
    /// The spec of the group's first task; all others have the same placement and
    /// reservations.
    spec: Option<&'a TaskSpec>,
    /// The endpoint of the group's first task; all others publish the same host ports.
    endpoint: Option<&'a Endpoint>,
    /// Indices into `pending` of tasks without a node.
    free: Vec<usize>,
    /// Indices into `pending` of tasks already bound to a node.
    bound: Vec<usize>,
}

/// Whether two tasks schedule identically (specs and endpoints).
fn same_requirements(
    a: (Option<&TaskSpec>, Option<&Endpoint>),
    b: (Option<&TaskSpec>, Option<&Endpoint>),
) -> bool {
    a.0.and_then(|s| s.placement.as_ref()) == b.0.and_then(|s| s.placement.as_ref())
        && reservations(a.0) == reservations(b.0)
        && host_ports(a.1) == host_ports(b.1)
}

/// Groups by (service, spec version) first, a cheap hash key; tasks under one key almost
/// always share their spec, and comparing the placement with the group's first task keeps
/// the grouping right when they do not. Also numbers the services with pending tasks, in
/// order of first appearance (`Group::service`).
fn group_pending<'a>(pending: &[&'a Task]) -> (Vec<Group<'a>>, HashMap<&'a str, usize>) {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut by_key: HashMap<(&'a str, u64), Vec<usize>> = HashMap::new();
    let mut services: HashMap<&'a str, usize> = HashMap::new();
    for (i, &task) in pending.iter().enumerate() {
        let spec = task.spec.as_deref();
        let endpoint = task.endpoint.as_ref();
        let candidates = by_key
            .entry((task.service_id.as_str(), task.spec_version))
            .or_default();
        let g =
            match candidates.iter().copied().find(|&g| {
                same_requirements((groups[g].spec, groups[g].endpoint), (spec, endpoint))
            }) {
                Some(g) => g,
                None => {
                    let next = services.len();
                    let service = *services.entry(task.service_id.as_str()).or_insert(next);
                    groups.push(Group {
                        service,
                        spec,
                        endpoint,
                        free: Vec::new(),
                        bound: Vec::new(),
                    });
                    candidates.push(groups.len() - 1);
                    groups.len() - 1
                }
            };
        if task.node_id.is_empty() {
            groups[g].free.push(i);
        } else {
            groups[g].bound.push(i);
        }
    }
    (groups, services)
}

/// The scheduler's view of the cluster during one call.
struct Cluster<'a> {
    /// Sorted by node ID, so a node's index is its rank in the final tie-break.
    nodes: Vec<NodeInfo<'a>>,
    by_id: HashMap<&'a str, u32>,
    /// Per service with pending tasks (indexed like `Group::service`): node index to the
    /// number of the service's tasks on that node. Sparse, because most services run on few
    /// of a large cluster's nodes.
    service_tasks: Vec<HashMap<u32, u32>>,
    /// Per node, the verdict of the filters that cannot change during the call (readiness,
    /// availability, constraints, platform), per distinct (constraints, platforms): many
    /// services share these, so with many small groups they are evaluated once, not once per
    /// group and node.
    static_verdicts: HashMap<StaticKey<'a>, Vec<Result<(), Rejection>>>,
}

/// What the static filters depend on besides the node.
type StaticKey<'a> = (&'a [String], &'a [Platform]);

fn static_key<'a>(spec: Option<&'a TaskSpec>) -> StaticKey<'a> {
    spec.and_then(|s| s.placement.as_ref())
        .map_or((&[], &[]), |p| {
            (p.constraints.as_slice(), p.platforms.as_slice())
        })
}

impl<'a> Cluster<'a> {
    fn new(
        nodes: impl IntoIterator<Item = &'a Node>,
        placed: &Placed,
        discount: &[&Task],
        services: &HashMap<&str, usize>,
    ) -> Self {
        let mut infos: Vec<NodeInfo<'a>> = nodes.into_iter().filter_map(NodeInfo::new).collect();
        infos.sort_by(|a, b| a.id.cmp(b.id));
        infos.dedup_by(|a, b| a.id == b.id);
        let by_id: HashMap<&'a str, u32> = infos
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id, i as u32))
            .collect();
        for info in &mut infos {
            if let Some(load) = placed.node(info.id) {
                info.load(load);
            }
        }
        let mut service_tasks = vec![HashMap::new(); services.len()];
        for (&service, &s) in services {
            for (node, n) in placed.of_service(service) {
                if let Some(&idx) = by_id.get(node) {
                    service_tasks[s].insert(idx, n);
                }
            }
        }
        for task in discount.iter().filter(|t| occupies_node(t)) {
            let Some(&idx) = by_id.get(task.node_id.as_str()) else {
                continue;
            };
            let (cpu, memory) = reservations(task.spec.as_deref());
            let ports = host_ports(task.endpoint.as_ref());
            infos[idx as usize].remove_task(cpu, memory, &ports);
            if let Some(&s) = services.get(task.service_id.as_str()) {
                if let Some(n) = service_tasks[s].get_mut(&idx) {
                    *n -= 1;
                    if *n == 0 {
                        service_tasks[s].remove(&idx);
                    }
                }
            }
        }
        Cluster {
            nodes: infos,
            by_id,
            service_tasks,
            static_verdicts: HashMap::new(),
        }
    }

    /// Records a decision in the bookkeeping.
    fn assign(&mut self, idx: u32, service: usize, req: &Requirements) {
        self.nodes[idx as usize].add_task(req.cpu, req.memory, &req.host_ports);
        *self.service_tasks[service].entry(idx).or_insert(0) += 1;
    }

    fn place_bound(
        &mut self,
        group: &Group<'_>,
        req: &Requirements,
        pending: &[&Task],
        out: &mut [Option<Decision>],
    ) {
        for &i in &group.bound {
            let task = pending[i];
            let node_id = task.node_id.as_str();
            let decision = match self.by_id.get(node_id) {
                None => Decision::Unplaceable {
                    task_id: task.id().to_owned(),
                    reason: format!("no suitable node: node {node_id} is not in the cluster"),
                },
                Some(&idx) => {
                    let service_tasks = self.service_tasks[group.service]
                        .get(&idx)
                        .copied()
                        .unwrap_or(0);
                    match req.check(&self.nodes[idx as usize], service_tasks) {
                        Ok(()) => {
                            self.assign(idx, group.service, req);
                            Decision::Assign {
                                task_id: task.id().to_owned(),
                                node_id: node_id.to_string(),
                            }
                        }
                        Err(rejection) => Decision::Unplaceable {
                            task_id: task.id().to_owned(),
                            reason: format!(
                                "no suitable node: node {node_id} {}",
                                req.describe(rejection)
                            ),
                        },
                    }
                }
            };
            out[i] = Some(decision);
        }
    }

    fn place_free(
        &mut self,
        group: &Group<'a>,
        req: &Requirements,
        pending: &[&Task],
        out: &mut [Option<Decision>],
    ) {
        if group.free.is_empty() {
            return;
        }
        // Dense per-node counts of this service for the duration of the group.
        let mut service_tasks = vec![0u32; self.nodes.len()];
        for (&idx, &count) in &self.service_tasks[group.service] {
            service_tasks[idx as usize] = count;
        }
        let nodes = &self.nodes;
        let verdicts: &[Result<(), Rejection>] = self
            .static_verdicts
            .entry(static_key(group.spec))
            .or_insert_with(|| nodes.iter().map(|n| req.check_static(n)).collect());
        let filters = Filters {
            nodes: &self.nodes,
            verdicts,
            service_tasks: &service_tasks,
            req,
        };
        let assigned = if group.free.len() == 1 && req.preferences.is_empty() {
            // The steady state (a failed task replaced here, another there) is many groups of
            // one task: a scan for the best node beats building a heap for one pop.
            // Compare keys first: the filters only run on nodes that would win.
            let mut best: Option<(u32, u32, usize)> = None;
            for (i, node) in self.nodes.iter().enumerate() {
                let key = (service_tasks[i], node.tasks, i);
                if best.is_none_or(|b| key < b) && filters.passes(i) {
                    best = Some(key);
                }
            }
            match best {
                Some((_, _, i)) => {
                    self.nodes[i].add_task(req.cpu, req.memory, &req.host_ports);
                    service_tasks[i] += 1;
                    vec![i as u32]
                }
                None => Vec::new(),
            }
        } else {
            let all: Vec<u32> = (0..self.nodes.len() as u32).collect();
            let mut tree = Branch::build(&filters, all, 0);
            let mut placer = Placer {
                nodes: &mut self.nodes,
                service_tasks: &mut service_tasks,
                req,
                assigned: Vec::with_capacity(group.free.len()),
            };
            tree.place(group.free.len() as u64, &mut placer);
            placer.assigned
        };

        let reason = (assigned.len() < group.free.len()).then(|| {
            let mut explanation = Explanation::default();
            for (idx, node) in self.nodes.iter().enumerate() {
                let verdict =
                    verdicts[idx].and_then(|()| req.check_capacity(node, service_tasks[idx]));
                explanation.record(verdict.err());
            }
            explanation.message(req)
        });
        for (k, &i) in group.free.iter().enumerate() {
            let task_id = pending[i].id().to_owned();
            out[i] = Some(match (assigned.get(k), &reason) {
                (Some(&idx), _) => Decision::Assign {
                    task_id,
                    node_id: self.nodes[idx as usize].id.to_string(),
                },
                (None, reason) => Decision::Unplaceable {
                    task_id,
                    reason: reason.clone().unwrap_or_default(),
                },
            });
        }
        let counts = &mut self.service_tasks[group.service];
        for &idx in &assigned {
            *counts.entry(idx).or_insert(0) += 1;
        }
    }
}

/// Mutable state while one group is placed.
struct Placer<'p, 'a> {
    nodes: &'p mut [NodeInfo<'a>],
    /// Dense: tasks of the group's service per node index.
    service_tasks: &'p mut [u32],
    req: &'p Requirements,
    /// Node index of each placement, in order.
    assigned: Vec<u32>,
}

/// Heap entry of a leaf: the node with the smallest key is the best candidate.
type Candidate = Reverse<(u32, u32, u32)>;

/// A node of the spread tree. Each level groups the nodes by one spread preference's
/// attribute; leaves hold the nodes that pass the filters.
struct Branch {
    /// Tasks of the service on all nodes under this branch, including nodes that fail the
    /// filters: they still count for how evenly the service is spread (Docker does the same).
    tasks: u64,
    kind: BranchKind,
}

enum BranchKind {
    /// Candidates keyed by (tasks of the service, tasks overall, node index).
    Leaf(BinaryHeap<Candidate>),
    /// Ordered by attribute value, nodes without the attribute first.
    Inner(Vec<Branch>),
}

/// What building the spread tree reads.
struct Filters<'f, 'a> {
    nodes: &'f [NodeInfo<'a>],
    /// Static filter verdicts per node.
    verdicts: &'f [Result<(), Rejection>],
    /// Dense: tasks of the group's service per node index.
    service_tasks: &'f [u32],
    req: &'f Requirements,
}

impl Filters<'_, '_> {
    fn passes(&self, i: usize) -> bool {
        self.verdicts[i].is_ok()
            && self
                .req
                .check_capacity(&self.nodes[i], self.service_tasks[i])
                .is_ok()
    }
}

impl Branch {
    fn build(f: &Filters<'_, '_>, members: Vec<u32>, depth: usize) -> Branch {
        let (nodes, service_tasks) = (f.nodes, f.service_tasks);
        let tasks = members
            .iter()
            .map(|&i| u64::from(service_tasks[i as usize]))
            .sum();
        let Some(preference) = f.req.preferences.get(depth) else {
            let heap = members
                .into_iter()
                .filter(|&i| f.passes(i as usize))
                .map(|i| Reverse((service_tasks[i as usize], nodes[i as usize].tasks, i)))
                .collect();
            return Branch {
                tasks,
                kind: BranchKind::Leaf(heap),
            };
        };
        let mut by_value: BTreeMap<Option<&str>, Vec<u32>> = BTreeMap::new();
        for i in members {
            by_value
                .entry(preference.group_of(nodes[i as usize].node))
                .or_default()
                .push(i);
        }
        let children = by_value
            .into_values()
            .map(|members| Branch::build(f, members, depth + 1))
            .collect();
        Branch {
            tasks,
            kind: BranchKind::Inner(children),
        }
    }

    /// Places up to `n` tasks under this branch; returns how many fit.
    fn place(&mut self, n: u64, placer: &mut Placer<'_, '_>) -> u64 {
        let placed = match &mut self.kind {
            BranchKind::Leaf(heap) => place_on_nodes(heap, n, placer),
            BranchKind::Inner(children) => place_on_children(children, n, placer),
        };
        self.tasks += placed;
        placed
    }
}

/// Takes the best node, places a task there, and puts the node back with its new key if it
/// can take another (updating the top in place: one sift instead of a pop and a push).
fn place_on_nodes(heap: &mut BinaryHeap<Candidate>, n: u64, placer: &mut Placer<'_, '_>) -> u64 {
    let mut placed = 0;
    while placed < n {
        let Some(mut top) = heap.peek_mut() else {
            break;
        };
        let Reverse((service, total, idx)) = *top;
        let node = &mut placer.nodes[idx as usize];
        node.add_task(placer.req.cpu, placer.req.memory, &placer.req.host_ports);
        placer.service_tasks[idx as usize] += 1;
        placer.assigned.push(idx);
        placed += 1;
        if placer.req.check_capacity(node, service + 1).is_ok() {
            *top = Reverse((service + 1, total + 1, idx));
        } else {
            PeekMut::pop(top);
        }
    }
    placed
}

/// Docker's spread: fill the children (attribute values) towards an even number of the
/// service's tasks each, least loaded first; a child that cannot take its share is full and
/// the rest is spread again over the others.
fn place_on_children(children: &mut [Branch], n: u64, placer: &mut Placer<'_, '_>) -> u64 {
    let mut full = vec![false; children.len()];
    let mut placed = 0;
    while placed < n {
        let mut open: Vec<usize> = (0..children.len()).filter(|&i| !full[i]).collect();
        if open.is_empty() {
            break;
        }
        let remaining = n - placed;
        let total = open.iter().map(|&i| children[i].tasks).sum::<u64>() + remaining;
        let desired = total / open.len() as u64;
        let mut extra = total % open.len() as u64;
        open.sort_by_key(|&i| (children[i].tasks, i));

        let before = placed;
        let mut filled_up = false;
        for i in open {
            let remaining = n - placed;
            if remaining == 0 {
                break;
            }
            let target = desired + u64::from(extra > 0);
            let have = children[i].tasks;
            if have >= target {
                continue;
            }
            let want = (target - have).min(remaining);
            let got = children[i].place(want, placer);
            placed += got;
            if got < want {
                full[i] = true;
                filled_up = true;
            } else {
                extra = extra.saturating_sub(1);
            }
        }
        // A pass where no child filled up places everything that was left (each open child
        // is offered at least its share); this guard only rules out looping forever.
        if !filled_up && placed == before {
            break;
        }
    }
    placed
}
