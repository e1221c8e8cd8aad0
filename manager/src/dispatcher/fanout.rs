//! One reader of the watch stream per manager that hands each node's streams only what
//! concerns that node. With every stream reading the store's broadcast itself, every
//! committed batch woke two tasks per node and each walked the whole batch for its own
//! tasks: O(events x nodes) per batch, 20,000 wake-ups at 10,000 nodes.
//!
//! The fan-out reads each batch once and routes it:
//! - a task's event goes to the node it is on and the node it was on (the fan-out remembers
//!   every placed task's node, since an update carries only the new task);
//! - events that may change what every node holds go to every node: networks, services,
//!   secrets, configs, tasks on networks (the peers, mesh and discovery views), and nodes
//!   whose address, ingress leg or manager status changed (ingress peers, sessions); a
//!   node's other changes go to that node only;
//! - a session wakes on its own node's changes and when the list of managers changes,
//!   which the fan-out keeps, so no session walks the nodes.
//!
//! Each assignments stream registers a bounded channel and removes it when it ends (a newer
//! stream of the same node replaces it, which ends the older one). A node that falls a whole
//! channel behind, a replaced store, or a fan-out that fell behind the watch stream makes
//! the node start over with a complete set, as a lagging stream always did. A stream
//! registers before it reads the store, so it misses nothing after its complete set; a batch
//! routed to it that the set already reflects changes nothing (see
//! [`super::NodeAssignments::incremental`], which reads tasks from the store).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proto::store_object::Object;
use proto::{Node, StoreActionKind, StoreEvent, Task, WeightedPeer};
use tokio::sync::{broadcast, mpsc, watch, Notify};

use crate::store::{ObjectStore, Store, StoredObject, WatchEvent};

/// How many batches a node's stream may be behind before it starts over.
const NODE_QUEUE: usize = 256;
/// How many batches a stream takes in one go: one recomputation of its views for all.
const MAX_BATCHES_AT_ONCE: usize = 1024;

/// The managers' addresses, as sessions tell their nodes.
pub type Managers = Arc<Vec<WeightedPeer>>;

/// The routes of one manager's fan-out. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    shared: Arc<Shared>,
}

struct Shared {
    /// How many batches a node's stream may be behind before it starts over.
    queue: usize,
    routes: Mutex<Routes>,
    managers: watch::Sender<Managers>,
}

#[derive(Default)]
struct Routes {
    next_id: u64,
    assignments: HashMap<String, AssignmentsRoute>,
    sessions: HashMap<String, SessionRoute>,
}

struct AssignmentsRoute {
    id: u64,
    tx: mpsc::Sender<Delivery>,
    start_over: Arc<AtomicBool>,
}

struct SessionRoute {
    id: u64,
    wake: Arc<Notify>,
}

enum Delivery {
    Batch(Routed),
    /// Look at the start-over flag.
    Wake,
}

/// One committed batch as it concerns one node.
pub struct Routed {
    batch: Arc<WatchEvent>,
    /// The node's own task events (those not in `shared`), by position in the batch.
    own: Vec<u32>,
    /// The events every node gets, by position in the batch.
    shared: Arc<[u32]>,
}

impl Routed {
    /// The batch's events that concern the node, in commit order.
    pub fn events(&self) -> impl Iterator<Item = &StoreEvent> {
        let all: &[StoreEvent] = match self.batch.as_ref() {
            WatchEvent::Changes { events, .. } => events,
            WatchEvent::Reset { .. } => &[],
        };
        let (mut own, mut shared) = (self.own.iter().peekable(), self.shared.iter().peekable());
        std::iter::from_fn(move || {
            let next = match (own.peek(), shared.peek()) {
                (Some(a), Some(b)) if a < b => own.next(),
                (Some(_), None) => own.next(),
                _ => shared.next(),
            }?;
            all.get(*next as usize)
        })
    }
}

/// What a node's assignments stream is to do next.
pub enum Next {
    /// Send the changes these batches make.
    Changes(Vec<Routed>),
    /// Something was missed: send the complete set again.
    StartOver,
}

/// A newer stream of the node replaced this one (or the fan-out stopped).
#[derive(Debug, PartialEq, Eq)]
pub struct Replaced;

/// A node's assignments stream's view of the fan-out; dropping it ends the registration.
pub struct AssignmentsFeed {
    fanout: Fanout,
    node_id: String,
    id: u64,
    rx: mpsc::Receiver<Delivery>,
    start_over: Arc<AtomicBool>,
}

impl AssignmentsFeed {
    /// Waits for the next batches that concern the node, taking all that are queued; `None`
    /// once a newer stream of the node replaced this one (or the fan-out stopped).
    pub async fn next(&mut self) -> Option<Next> {
        loop {
            let first = self.rx.recv().await?;
            if let Some(next) = self.gather(first) {
                return Some(next);
            }
        }
    }

    /// What is queued, without waiting: `Ok(None)` if nothing is.
    pub fn try_next(&mut self) -> Result<Option<Next>, Replaced> {
        match self.rx.try_recv() {
            Ok(first) => Ok(self.gather(first)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(Replaced),
        }
    }

    fn gather(&mut self, first: Delivery) -> Option<Next> {
        let mut batches = Vec::new();
        let mut delivery = Some(first);
        while let Some(d) = delivery.take() {
            if let Delivery::Batch(routed) = d {
                batches.push(routed);
            }
            if batches.len() < MAX_BATCHES_AT_ONCE {
                delivery = self.rx.try_recv().ok();
            }
        }
        // Taken after the batches: what the flag says was missed is older than the store
        // the complete set will be read from.
        if self.start_over.swap(false, Ordering::AcqRel) {
            return Some(Next::StartOver);
        }
        (!batches.is_empty()).then_some(Next::Changes(batches))
    }
}

impl Drop for AssignmentsFeed {
    fn drop(&mut self) {
        let mut routes = self.fanout.routes();
        if routes.assignments.get(&self.node_id).map(|r| r.id) == Some(self.id) {
            routes.assignments.remove(&self.node_id);
        }
    }
}

/// A node's session stream's view of the fan-out; dropping it ends the registration.
pub struct SessionFeed {
    fanout: Fanout,
    node_id: String,
    id: u64,
    wake: Arc<Notify>,
    managers: watch::Receiver<Managers>,
}

impl SessionFeed {
    /// Waits until the node's own record or the list of managers may have changed.
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            // The sender lives as long as the fan-out this feed holds.
            _ = self.managers.changed() => {}
        }
    }

    /// The managers now.
    pub fn managers(&self) -> Managers {
        self.managers.borrow().clone()
    }
}

impl Drop for SessionFeed {
    fn drop(&mut self) {
        let mut routes = self.fanout.routes();
        if routes.sessions.get(&self.node_id).map(|r| r.id) == Some(self.id) {
            routes.sessions.remove(&self.node_id);
        }
    }
}

impl Default for Fanout {
    fn default() -> Self {
        Self::with_queue(NODE_QUEUE)
    }
}

impl Fanout {
    /// A fan-out whose nodes start over once `queue` batches behind.
    pub(super) fn with_queue(queue: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue,
                routes: Mutex::default(),
                managers: watch::channel(Managers::default()).0,
            }),
        }
    }
}

impl Fanout {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.shared.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `node_id`'s assignments stream, replacing (and so ending) an earlier one.
    /// Call it before reading the complete set, so nothing after that set is missed.
    pub fn assignments(&self, node_id: &str) -> AssignmentsFeed {
        let (tx, rx) = mpsc::channel(self.shared.queue);
        let start_over = Arc::new(AtomicBool::new(false));
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = routes.next_id;
        routes.assignments.insert(
            node_id.to_owned(),
            AssignmentsRoute {
                id,
                tx,
                start_over: start_over.clone(),
            },
        );
        AssignmentsFeed {
            fanout: self.clone(),
            node_id: node_id.to_owned(),
            id,
            rx,
            start_over,
        }
    }

    /// Registers `node_id`'s session stream, replacing an earlier one.
    pub fn session(&self, node_id: &str) -> SessionFeed {
        let wake = Arc::new(Notify::new());
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = routes.next_id;
        routes.sessions.insert(
            node_id.to_owned(),
            SessionRoute {
                id,
                wake: wake.clone(),
            },
        );
        SessionFeed {
            fanout: self.clone(),
            node_id: node_id.to_owned(),
            id,
            wake,
            managers: self.shared.managers.subscribe(),
        }
    }

    /// Hands each registered node its part of `batch`, as `routing` says.
    pub(super) fn deliver(&self, batch: &Arc<WatchEvent>, routing: Routing) {
        let Routing {
            shared,
            mut own,
            nodes_changed,
            managers,
        } = routing;
        let shared: Arc<[u32]> = shared.into();
        let routes = self.routes();
        let send = |route: &AssignmentsRoute, own: Vec<u32>| {
            route.send(Delivery::Batch(Routed {
                batch: batch.clone(),
                own,
                shared: shared.clone(),
            }))
        };
        if shared.is_empty() {
            for (node, own) in own {
                if let Some(route) = routes.assignments.get(&*node) {
                    send(route, own);
                }
            }
        } else {
            for (node, route) in &routes.assignments {
                send(route, own.remove(node.as_str()).unwrap_or_default());
            }
        }
        for node in &nodes_changed {
            if let Some(route) = routes.sessions.get(node) {
                route.wake.notify_one();
            }
        }
        drop(routes);
        if let Some(managers) = managers {
            self.shared.managers.send_if_modified(|m| {
                let changed = **m != managers;
                if changed {
                    *m = Arc::new(managers);
                }
                changed
            });
        }
    }

    /// Makes every registered node start over and wakes every session.
    pub(super) fn start_over(&self, managers: Vec<WeightedPeer>) {
        let routes = self.routes();
        for route in routes.assignments.values() {
            route.start_over.store(true, Ordering::Release);
            // A full queue wakes the stream anyway.
            let _ = route.tx.try_send(Delivery::Wake);
        }
        for route in routes.sessions.values() {
            route.wake.notify_one();
        }
        drop(routes);
        self.shared.managers.send_replace(Arc::new(managers));
    }
}

impl AssignmentsRoute {
    fn send(&self, delivery: Delivery) {
        // A node that will start over needs no more batches: the store it will read
        // reflects them.
        if self.start_over.load(Ordering::Acquire) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(delivery) {
            self.start_over.store(true, Ordering::Release);
        }
    }
}

/// Where one batch goes.
#[derive(Debug, Default, PartialEq)]
pub struct Routing {
    /// Positions of the events every node gets.
    pub shared: Vec<u32>,
    /// Per node, the positions of its own task events not among `shared`.
    pub own: HashMap<Arc<str>, Vec<u32>>,
    /// The nodes whose own record changed (their sessions wake).
    pub nodes_changed: Vec<String>,
    /// The managers, if the batch may have changed them.
    pub managers: Option<Vec<WeightedPeer>>,
}

/// What about a node concerns the other nodes: its peer address, ingress leg and whether it
/// is a manager (their networks views: every node has the managers as ingress peers) and its
/// manager address (their sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeFacts {
    addr: String,
    leg: Option<String>,
    manager: bool,
    manager_addr: Option<String>,
}

impl NodeFacts {
    fn of(node: &Node) -> Self {
        Self {
            addr: node
                .status
                .as_ref()
                .map(|s| s.addr.clone())
                .unwrap_or_default(),
            leg: node
                .ingress
                .as_ref()
                .and_then(|a| a.addresses.first().cloned()),
            manager: node.manager_status.is_some(),
            manager_addr: node
                .manager_status
                .as_ref()
                .map(|s| s.addr.clone())
                .filter(|a| !a.is_empty()),
        }
    }
}

/// The fan-out's memory of the store: which node each placed task is on, and the facts of
/// every node, to route the next batch.
#[derive(Default)]
pub struct Router {
    /// Node of every task that has one.
    placed: HashMap<String, Arc<str>>,
    /// One copy of each node ID `placed` refers to.
    node_ids: HashSet<Arc<str>>,
    nodes: BTreeMap<String, NodeFacts>,
}

impl Router {
    /// A router that knows `store`.
    pub fn new(store: &ObjectStore) -> Self {
        let mut router = Self::default();
        router.prime(store);
        router
    }

    /// Forgets everything and learns `store`, after a gap in the watch stream.
    pub fn prime(&mut self, store: &ObjectStore) {
        *self = Self::default();
        for task in store.list::<Task>().filter(|t| !t.node_id.is_empty()) {
            let node = self.intern(&task.node_id);
            self.placed.insert(task.id().to_owned(), node);
        }
        self.nodes = store
            .list::<Node>()
            .map(|n| (n.id().to_owned(), NodeFacts::of(n)))
            .collect();
    }

    fn intern(&mut self, node_id: &str) -> Arc<str> {
        if let Some(id) = self.node_ids.get(node_id) {
            return id.clone();
        }
        let id: Arc<str> = node_id.into();
        self.node_ids.insert(id.clone());
        id
    }

    /// The managers, in node ID order.
    pub fn managers(&self) -> Vec<WeightedPeer> {
        self.nodes
            .iter()
            .filter_map(|(id, facts)| {
                Some(WeightedPeer {
                    node_id: id.clone(),
                    addr: facts.manager_addr.clone()?,
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Where each of `events` goes, learning what they change.
    pub fn route(&mut self, events: &[StoreEvent]) -> Routing {
        let mut routing = Routing::default();
        let mut managers_changed = false;
        for (position, event) in events.iter().enumerate() {
            let position = position as u32;
            let deleted = event.kind == StoreActionKind::Delete as i32;
            match event.object.as_ref().and_then(|o| o.object.as_ref()) {
                Some(Object::Task(task)) => {
                    let was = if deleted || task.node_id.is_empty() {
                        self.placed.remove(task.id())
                    } else {
                        let node = self.intern(&task.node_id);
                        self.placed.insert(task.id().to_owned(), node)
                    };
                    if !task.networks.is_empty() {
                        routing.shared.push(position);
                        continue;
                    }
                    let now =
                        (!deleted && !task.node_id.is_empty()).then(|| self.intern(&task.node_id));
                    for node in [was.clone(), now.filter(|n| Some(n) != was.as_ref())]
                        .into_iter()
                        .flatten()
                    {
                        routing.own.entry(node).or_default().push(position);
                    }
                }
                Some(Object::Node(node)) => {
                    let facts = NodeFacts::of(node);
                    let before = if deleted {
                        self.nodes.remove(node.id())
                    } else {
                        self.nodes.insert(node.id().to_owned(), facts.clone())
                    };
                    let same = !deleted && before.as_ref() == Some(&facts);
                    managers_changed |= before.and_then(|f| f.manager_addr) != facts.manager_addr
                        || (deleted && facts.manager_addr.is_some());
                    if same {
                        let node = self.intern(node.id());
                        routing.own.entry(node).or_default().push(position);
                    } else {
                        routing.shared.push(position);
                    }
                    routing.nodes_changed.push(node.id().to_owned());
                }
                Some(
                    Object::Network(_) | Object::Service(_) | Object::Secret(_) | Object::Config(_),
                ) => routing.shared.push(position),
                // The cluster object reaches nodes only in complete sets (its data path port).
                Some(Object::Cluster(_)) | None => {}
            }
        }
        // A node's event may sit in `own` and in `shared` when both were pushed for it.
        if !routing.shared.is_empty() {
            let shared: HashSet<u32> = routing.shared.iter().copied().collect();
            for own in routing.own.values_mut() {
                own.retain(|p| !shared.contains(p));
            }
            routing.own.retain(|_, own| !own.is_empty());
        }
        if managers_changed {
            routing.managers = Some(self.managers());
        }
        routing
    }
}

/// Reads the watch stream and routes every batch (runs on every manager for its life, so a
/// new leader's fan-out is already current; followers have no streams registered).
pub async fn run(fanout: Fanout, store: Store, mut stop: watch::Receiver<bool>) {
    let (mut router, mut events) = store.subscribe(Router::new);
    fanout.start_over(router.managers());
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.changed() => return,
        };
        match event {
            Ok(batch) => match batch.as_ref() {
                WatchEvent::Changes { events, .. } => {
                    let routing = router.route(events);
                    fanout.deliver(&batch, routing);
                }
                WatchEvent::Reset { .. } => {
                    router.prime(&store.read());
                    fanout.start_over(router.managers());
                }
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    "the fan-out fell behind the watch stream; every node starts over"
                );
                router.prime(&store.read());
                fanout.start_over(router.managers());
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
