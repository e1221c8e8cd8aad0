//! The fan-out and the incremental assignments against a full recomputation: whatever
//! random batches of task, node, network, secret, config and service changes commit, in
//! whatever order the fan-out routes them and the nodes take them (several batches at once,
//! batches their complete set already reflects, a full queue, a replaced store), what each
//! node ends up holding is what `complete()` on the final store gives it.
//!
//! Assumptions the generated changes keep, as the cluster does: a node always has an
//! address, a task is only on a node that exists and nodes are not removed (a removed
//! node's ID never returns), and a task never loses a network attachment once it has one
//! (the allocator adds addresses; a task's networks end with the task).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use proto::store_object::Object;
use proto::{
    assignment, AssignmentAction, AssignmentsMessage, AssignmentsType, Config, ConfigReference,
    ConfigSpec, ContainerSpec, DiscoveryState, Endpoint, EndpointSpec, HealthState, ManagerStatus,
    MeshState, Meta, Network, NetworkAttachment, NetworkAttachmentConfig, NetworkPeers,
    NetworkSpec, Node, NodeRole, NodeSpec, NodeStatus, PortConfig, PublishMode, Secret,
    SecretReference, SecretSpec, Service, ServiceSpec, StoreAction, StoreBatch, StoreEvent, Task,
    TaskSpec, TaskState, TaskStatus, VirtualIp, WeightedPeer,
};

use super::fanout::{AssignmentsFeed, Fanout, Next, Router};
use super::NodeAssignments;
use crate::store::{create, delete, update, ObjectStore, StoredObject, WatchEvent};

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

fn meta(id: &str, version: u64) -> Option<Meta> {
    Some(Meta {
        id: id.into(),
        version,
        ..Default::default()
    })
}

/// Object `idx` of `kind`, in its `variant`. The same (kind, idx) is always the same ID.
fn object(kind: u8, idx: u8, variant: u16) -> Object {
    let bit = |n: u16| variant >> n & 1 == 1;
    match kind % 7 {
        0..=2 => {
            // Tasks are the most frequent changes.
            let idx = idx % 12;
            let id = format!("t{idx}");
            let node = match variant % 6 {
                0 | 1 => "",
                n => NODES[(n - 2) as usize],
            };
            let observed = [
                TaskState::Pending,
                TaskState::Assigned,
                TaskState::Running,
                TaskState::Failed,
                TaskState::Complete,
            ][(variant >> 3) as usize % 5];
            let desired = if bit(6) {
                TaskState::Shutdown
            } else {
                TaskState::Running
            };
            // Which networks a task is on is fixed by its index; whether it has its
            // addresses yet is not.
            let address = |net: &str| NetworkAttachment {
                network_id: net.into(),
                addresses: if bit(7) {
                    vec![format!("10.{}.0.{}/24", net.len(), idx + 2)]
                } else {
                    vec![]
                },
                aliases: vec![],
            };
            let networks = match idx % 3 {
                0 => vec![],
                1 => vec![address("back")],
                _ => vec![address("back"), address("ingress")],
            };
            let secrets = (0..2)
                .filter(|s| bit(8 + s))
                .map(|s| SecretReference {
                    secret_id: format!("s{s}"),
                    secret_name: format!("s{s}"),
                    ..Default::default()
                })
                .collect();
            let configs = bit(10)
                .then(|| ConfigReference {
                    config_id: "c0".into(),
                    config_name: "c0".into(),
                    ..Default::default()
                })
                .into_iter()
                .collect();
            Object::Task(Task {
                meta: meta(&id, 0),
                service_id: format!("svc{}", variant >> 11 & 3),
                node_id: node.into(),
                desired_state: desired as i32,
                status: Some(TaskStatus {
                    state: observed as i32,
                    health: if bit(13) {
                        HealthState::Unhealthy
                    } else {
                        HealthState::None
                    } as i32,
                    ..Default::default()
                }),
                spec: Some(
                    TaskSpec {
                        container: Some(ContainerSpec {
                            secrets,
                            configs,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                    .into(),
                ),
                networks,
                ..Default::default()
            })
        }
        3 => {
            let i = idx as usize % NODES.len();
            Object::Node(
                Node {
                    meta: meta(NODES[i], 0),
                    spec: Some(NodeSpec {
                        desired_role: if bit(0) {
                            NodeRole::Manager
                        } else {
                            NodeRole::Worker
                        } as i32,
                        ..Default::default()
                    }),
                    status: Some(NodeStatus {
                        addr: format!(
                            "127.0.{}.{}:{}",
                            variant & 1,
                            i + 2,
                            2377 + (variant >> 1 & 1)
                        ),
                        // Liveness changes concern the node alone.
                        message: format!("{}", variant >> 4),
                        ..Default::default()
                    }),
                    ingress: bit(2).then(|| NetworkAttachment {
                        network_id: "ingress".into(),
                        addresses: vec![format!(
                            "10.7.0.{}/24",
                            i + 2 + 10 * (variant as usize >> 5 & 1)
                        )],
                        aliases: vec![],
                    }),
                    // A manager whose address is not known yet (bit 6) is still a manager.
                    manager_status: bit(3).then(|| ManagerStatus {
                        addr: if bit(6) {
                            String::new()
                        } else {
                            format!("127.0.9.{}:2377", i + 2)
                        },
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            )
        }
        4 => {
            let (id, ingress) = if idx.is_multiple_of(2) {
                ("ingress", true)
            } else {
                ("back", false)
            };
            Object::Network(Network {
                meta: meta(id, 0),
                spec: Some(NetworkSpec {
                    name: id.into(),
                    ingress,
                    ..Default::default()
                }),
                vni: if bit(0) {
                    0
                } else {
                    4096 + u32::from(variant & 7)
                },
                ..Default::default()
            })
        }
        5 => {
            let id = format!("svc{}", idx % 4);
            let ports: Vec<PortConfig> = bit(0)
                .then(|| PortConfig {
                    published_port: 8080 + u32::from(variant >> 4 & 3),
                    target_port: 80,
                    publish_mode: PublishMode::Ingress as i32,
                    ..Default::default()
                })
                .into_iter()
                .collect();
            let networks: Vec<NetworkAttachmentConfig> = bit(1)
                .then(|| NetworkAttachmentConfig {
                    target: "back".into(),
                    aliases: if bit(2) { vec!["alias".into()] } else { vec![] },
                })
                .into_iter()
                .collect();
            Object::Service(
                Service {
                    meta: meta(&id, 0),
                    spec: Some(ServiceSpec {
                        name: id.clone(),
                        task_template: Some(TaskSpec {
                            networks,
                            ..Default::default()
                        }),
                        endpoint: Some(EndpointSpec {
                            ports: ports.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    endpoint: Some(Endpoint {
                        ports,
                        virtual_ips: bit(3)
                            .then(|| VirtualIp {
                                network_id: "back".into(),
                                addr: format!("10.4.0.{}/24", 100 + idx % 4),
                            })
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            )
        }
        _ => {
            let data = format!("bytes-{}", variant & 3).into_bytes();
            if idx % 3 == 2 {
                Object::Config(Config {
                    meta: meta("c0", 0),
                    spec: Some(ConfigSpec {
                        name: "c0".into(),
                        data,
                        ..Default::default()
                    }),
                })
            } else {
                let id = format!("s{}", idx % 3);
                Object::Secret(Secret {
                    meta: meta(&id, 0),
                    spec: Some(SecretSpec {
                        name: id,
                        data,
                        ..Default::default()
                    }),
                })
            }
        }
    }
}

fn id_of(object: &Object) -> (u8, String) {
    match object {
        Object::Task(o) => (0, o.id().to_owned()),
        Object::Node(o) => (1, o.id().to_owned()),
        Object::Network(o) => (2, o.id().to_owned()),
        Object::Service(o) => (3, o.id().to_owned()),
        Object::Secret(o) => (4, o.id().to_owned()),
        Object::Config(o) => (5, o.id().to_owned()),
        Object::Cluster(o) => (6, o.id().to_owned()),
    }
}

/// The stored version of `object`'s ID, if it exists.
fn stored_version(store: &ObjectStore, object: &Object) -> Option<u64> {
    let id = id_of(object).1;
    match object {
        Object::Task(_) => store.get::<Task>(&id).map(|o| o.version()),
        Object::Node(_) => store.get::<Node>(&id).map(|o| o.version()),
        Object::Network(_) => store.get::<Network>(&id).map(|o| o.version()),
        Object::Service(_) => store.get::<Service>(&id).map(|o| o.version()),
        Object::Secret(_) => store.get::<Secret>(&id).map(|o| o.version()),
        Object::Config(_) => store.get::<Config>(&id).map(|o| o.version()),
        Object::Cluster(_) => None,
    }
}

fn with_version(object: Object, version: u64) -> Object {
    let mut object = object;
    let set = |m: &mut Option<Meta>| m.get_or_insert_with(Default::default).version = version;
    match &mut object {
        Object::Task(o) => set(&mut o.meta),
        Object::Node(o) => set(&mut o.meta),
        Object::Network(o) => set(&mut o.meta),
        Object::Service(o) => set(&mut o.meta),
        Object::Secret(o) => set(&mut o.meta),
        Object::Config(o) => set(&mut o.meta),
        Object::Cluster(o) => set(&mut o.meta),
    }
    object
}

fn action_of(kind: proto::StoreActionKind, object: Object) -> StoreAction {
    macro_rules! act {
        ($o:expr) => {
            match kind {
                proto::StoreActionKind::Create => create($o),
                proto::StoreActionKind::Update => update($o),
                proto::StoreActionKind::Delete => delete($o),
            }
        };
    }
    match object {
        Object::Task(o) => act!(o),
        Object::Node(o) => act!(*o),
        Object::Network(o) => act!(o),
        Object::Service(o) => act!(*o),
        Object::Secret(o) => act!(o),
        Object::Config(o) => act!(o),
        Object::Cluster(o) => act!(*o),
    }
}

/// A task keeps the network attachments it has (see the module doc).
fn keeps_networks(store: &ObjectStore, object: Object) -> Object {
    match object {
        Object::Task(mut task) => {
            if let Some(old) = store.get::<Task>(task.id()) {
                for had in &old.networks {
                    let kept = task
                        .networks
                        .iter_mut()
                        .find(|a| a.network_id == had.network_id);
                    match kept {
                        Some(a) if a.addresses.is_empty() => a.addresses = had.addresses.clone(),
                        Some(_) => {}
                        None => task.networks.push(had.clone()),
                    }
                }
            }
            Object::Task(task)
        }
        other => other,
    }
}

/// `object`, with a task's node cleared if that node does not exist yet (in the store or
/// earlier in the batch): the scheduler and the orchestrator only place tasks on nodes that
/// exist, and a node's arrival need not tell nodes about tasks already on it.
fn on_a_known_node(
    store: &ObjectStore,
    batch: &HashMap<(u8, String), Option<u64>>,
    object: Object,
) -> Object {
    match object {
        Object::Task(mut task)
            if !task.node_id.is_empty()
                && store.get::<Node>(&task.node_id).is_none()
                && !batch.contains_key(&(1, task.node_id.clone())) =>
        {
            task.node_id.clear();
            Object::Task(task)
        }
        other => other,
    }
}

/// One change: which object, which variant, and whether it is deleted (if it exists).
type Op = (u8, u8, u16, bool);

/// The batch `ops` make on `store`, each action against the version the last wrote.
fn batch(store: &ObjectStore, ops: &[Op]) -> StoreBatch {
    // Per object, whether it exists and at which version, as the batch goes.
    let mut overlay: HashMap<(u8, String), Option<u64>> = HashMap::new();
    let mut actions = Vec::new();
    for &(kind, idx, variant, remove) in ops {
        let object = on_a_known_node(
            store,
            &overlay,
            keeps_networks(store, object(kind, idx, variant)),
        );
        // Nodes are not removed here: a removed node's ID never comes back, and a node
        // made again under its old ID would be a change the cluster never makes.
        let remove = remove && !matches!(object, Object::Node(_));
        let key = id_of(&object);
        let version = match overlay.get(&key) {
            Some(v) => *v,
            None => stored_version(store, &object),
        };
        // Later actions on the same object in this batch would need the batch's index as
        // their version; one action per object per batch is enough.
        if overlay.contains_key(&key) {
            continue;
        }
        let action = match (version, remove) {
            (None, _) => action_of(proto::StoreActionKind::Create, object),
            (Some(v), true) => action_of(proto::StoreActionKind::Delete, with_version(object, v)),
            (Some(v), false) => action_of(proto::StoreActionKind::Update, with_version(object, v)),
        };
        overlay.insert(key, None);
        actions.push(action);
    }
    StoreBatch {
        actions,
        ..Default::default()
    }
}

/// What a node holds after the messages it was sent.
#[derive(Debug, Default, PartialEq)]
struct Held {
    tasks: BTreeMap<String, Task>,
    networks: BTreeMap<String, Network>,
    secrets: BTreeMap<String, Secret>,
    configs: BTreeMap<String, Config>,
    peers: BTreeMap<String, NetworkPeers>,
    mesh: Option<MeshState>,
    discovery: Option<DiscoveryState>,
}

impl Held {
    fn take(&mut self, message: &AssignmentsMessage) {
        if message.r#type == AssignmentsType::Complete as i32 {
            *self = Self::default();
        }
        for change in &message.changes {
            let remove = change.action == AssignmentAction::Remove as i32;
            let item = change.assignment.as_ref().and_then(|a| a.item.clone());
            macro_rules! put {
                ($map:expr, $o:expr) => {
                    if remove {
                        $map.remove($o.id());
                    } else {
                        $map.insert($o.id().to_owned(), $o);
                    }
                };
            }
            match item.expect("a change carries an item") {
                assignment::Item::Task(o) => put!(self.tasks, o),
                assignment::Item::Network(o) => put!(self.networks, o),
                assignment::Item::Secret(o) => put!(self.secrets, o),
                assignment::Item::Config(o) => put!(self.configs, o),
            }
        }
        for peers in &message.network_peers {
            self.peers.insert(peers.network_id.clone(), peers.clone());
        }
        if let Some(mesh) = &message.mesh {
            self.mesh = Some(mesh.clone());
        }
        if let Some(discovery) = &message.discovery {
            self.discovery = Some(discovery.clone());
        }
    }

    /// The peers of networks no longer held are left over, not held; a task's status and
    /// meta are what the node itself reports, which it is not sent back (`sent.rs`).
    fn settled(mut self) -> Self {
        self.peers.retain(|id, _| self.networks.contains_key(id));
        for task in self.tasks.values_mut() {
            task.status = None;
            task.meta = None;
        }
        self
    }
}

/// One node's stream, as the dispatcher runs it, without the gRPC around it.
struct Stream {
    feed: AssignmentsFeed,
    tracker: NodeAssignments,
    held: Held,
}

impl Stream {
    /// Registers, then reads the complete set, as `assignments` does.
    fn open(fanout: &Fanout, store: &ObjectStore, node: &str) -> Self {
        let feed = fanout.assignments(node);
        let mut tracker = NodeAssignments::default();
        let mut held = Held::default();
        held.take(&tracker.complete(store, node));
        Self {
            feed,
            tracker,
            held,
        }
    }

    /// Takes what is queued.
    fn take(&mut self, store: &ObjectStore, node: &str) -> usize {
        let message = match self.feed.try_next().expect("the feed is registered") {
            None => return 0,
            Some(Next::StartOver) => Some(self.tracker.complete(store, node)),
            Some(Next::Changes(batches)) => {
                self.tracker
                    .incremental(store, batches.iter().flat_map(|b| b.events()), node)
            }
        };
        if let Some(message) = message {
            self.held.take(&message);
        }
        1
    }
}

/// What the node would hold if it connected now.
fn reconnected(store: &ObjectStore, node: &str) -> Held {
    let mut held = Held::default();
    held.take(&NodeAssignments::default().complete(store, node));
    held.settled()
}

/// What one step of a run does.
#[derive(Debug, Clone)]
enum Step {
    /// Commit a batch (the fan-out has not read it yet).
    Commit(Vec<Op>),
    /// The fan-out reads every committed batch.
    Route,
    /// A node takes what is queued for it.
    Take(u8),
    /// A node's stream is replaced by a new one.
    Reconnect(u8),
    /// The store was replaced, or the fan-out fell behind: every node starts over.
    StartOver,
}

fn step() -> impl Strategy<Value = Step> {
    let op = (
        0..7u8,
        any::<u8>(),
        any::<u16>(),
        prop::bool::weighted(0.15),
    );
    prop_oneof![
        6 => prop::collection::vec(op, 1..6).prop_map(Step::Commit),
        3 => Just(Step::Route),
        4 => (0..4u8).prop_map(Step::Take),
        1 => (0..4u8).prop_map(Step::Reconnect),
        1 => Just(Step::StartOver),
    ]
}

/// Runs `steps` with node queues of `queue` batches; returns the final store and what each
/// node holds once everything is routed and taken.
fn run(steps: &[Step], queue: usize) -> (ObjectStore, Vec<Held>, Fanout) {
    let mut store = ObjectStore::default();
    let fanout = Fanout::with_queue(queue);
    let mut router = Router::new(&store);
    let mut streams: Vec<Stream> = NODES
        .iter()
        .map(|n| Stream::open(&fanout, &store, n))
        .collect();
    let mut committed: Vec<Arc<WatchEvent>> = Vec::new();
    let mut index = 0;
    let route = |router: &mut Router, committed: &mut Vec<Arc<WatchEvent>>| {
        for batch in committed.drain(..) {
            let WatchEvent::Changes { events, .. } = batch.as_ref() else {
                unreachable!("only changes are committed here")
            };
            let routing = router.route(events);
            fanout.deliver(&batch, routing);
        }
    };
    for step in steps {
        match step {
            Step::Commit(ops) => {
                let batch = batch(&store, ops);
                index += 1;
                let events: Vec<StoreEvent> =
                    store.apply(&batch, index).expect("a consistent batch");
                committed.push(Arc::new(WatchEvent::Changes { index, events }));
            }
            Step::Route => route(&mut router, &mut committed),
            Step::Take(n) => {
                let n = usize::from(*n);
                streams[n].take(&store, NODES[n]);
            }
            Step::Reconnect(n) => {
                let n = usize::from(*n);
                streams[n] = Stream::open(&fanout, &store, NODES[n]);
            }
            Step::StartOver => {
                router.prime(&store);
                fanout.start_over(router.managers());
                // Batches committed before the store was read again are still to come.
            }
        }
    }
    route(&mut router, &mut committed);
    for (n, stream) in streams.iter_mut().enumerate() {
        while stream.take(&store, NODES[n]) > 0 {}
    }
    let held = streams
        .into_iter()
        .map(|s| std::mem::take(&mut { s }.held).settled())
        .collect();
    (store, held, fanout)
}

/// The managers as a walk of every node finds them.
fn managers_of(store: &ObjectStore) -> Vec<WeightedPeer> {
    store
        .list::<Node>()
        .filter_map(|n| {
            let addr = &n.manager_status.as_ref()?.addr;
            (!addr.is_empty()).then(|| WeightedPeer {
                node_id: n.id().to_owned(),
                addr: addr.clone(),
                ..Default::default()
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_node_ends_up_holding_what_a_complete_set_of_the_final_store_gives(
        steps in prop::collection::vec(step(), 1..60),
        queue in 1..6usize,
    ) {
        let (store, held, fanout) = run(&steps, queue);
        for (n, held) in held.into_iter().enumerate() {
            prop_assert_eq!(held, reconnected(&store, NODES[n]), "node {}", NODES[n]);
        }
        let session = fanout.session("n0");
        prop_assert_eq!(&*session.managers(), &managers_of(&store));
    }
}

#[test]
fn a_node_whose_queue_fills_starts_over_and_ends_up_equal() {
    let mut store = ObjectStore::default();
    // Node n1 exists before its tasks do.
    store.apply(&batch(&store, &[(3, 1, 0, false)]), 1).unwrap();
    let fanout = Fanout::with_queue(1);
    let mut router = Router::new(&store);
    let mut stream = Stream::open(&fanout, &store, "n1");
    for (index, variant) in [(2, 9), (3, 21), (4, 27)] {
        // Task t0 on n1 (variant % 6 == 3): assigned, then running, then failed.
        let batch = batch(&store, &[(0, 0, variant, false)]);
        let events = store.apply(&batch, index).unwrap();
        let routing = router.route(&events);
        fanout.deliver(&Arc::new(WatchEvent::Changes { index, events }), routing);
    }
    assert!(matches!(stream.feed.try_next(), Ok(Some(Next::StartOver))));
    stream.held.take(&stream.tracker.complete(&store, "n1"));
    assert!(
        matches!(stream.feed.try_next(), Ok(None)),
        "nothing else queued"
    );
    assert_eq!(stream.held.settled(), reconnected(&store, "n1"));
}

#[test]
fn a_task_event_reaches_only_the_nodes_it_was_and_is_on() {
    let store = ObjectStore::default();
    let mut router = Router::new(&store);
    let task = |node: &str| StoreEvent {
        kind: proto::StoreActionKind::Update as i32,
        object: Some(
            Task {
                meta: meta("t1", 1),
                node_id: node.into(),
                ..Default::default()
            }
            .wrap(),
        ),
        index: 1,
    };
    let own = |routing: super::fanout::Routing| {
        let mut nodes: Vec<String> = routing.own.keys().map(|n| n.to_string()).collect();
        nodes.sort();
        assert!(routing.shared.is_empty());
        nodes
    };
    assert_eq!(own(router.route(&[task("n1")])), ["n1"]);
    assert_eq!(own(router.route(&[task("n2")])), ["n1", "n2"], "moved");
    assert_eq!(own(router.route(&[task("")])), ["n2"], "unassigned");
}

#[test]
fn a_node_event_that_changes_nothing_of_its_peers_stays_with_that_node() {
    let store = ObjectStore::default();
    let mut router = Router::new(&store);
    let node = |message: &str, addr: &str| StoreEvent {
        kind: proto::StoreActionKind::Update as i32,
        object: Some(
            Node {
                meta: meta("n1", 1),
                status: Some(NodeStatus {
                    addr: addr.into(),
                    message: message.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .wrap(),
        ),
        index: 1,
    };
    let first = router.route(&[node("up", "127.0.0.2:2377")]);
    assert_eq!(first.shared, [0], "a new node is every node's peer");
    let again = router.route(&[node("down", "127.0.0.2:2377")]);
    assert!(again.shared.is_empty(), "its liveness concerns it alone");
    assert_eq!(again.nodes_changed, ["n1"]);
    let moved = router.route(&[node("down", "127.0.0.3:2377")]);
    assert_eq!(moved.shared, [0], "a new address concerns its peers");
    assert_eq!(moved.managers, None, "no manager changed");
}

#[test]
fn a_promotion_concerns_every_node_before_the_manager_has_an_address() {
    let store = ObjectStore::default();
    let mut router = Router::new(&store);
    let node = |manager: Option<&str>| StoreEvent {
        kind: proto::StoreActionKind::Update as i32,
        object: Some(
            Node {
                meta: meta("n1", 1),
                manager_status: manager.map(|addr| ManagerStatus {
                    addr: addr.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .wrap(),
        ),
        index: 1,
    };
    router.route(&[node(None)]);
    let promoted = router.route(&[node(Some(""))]);
    assert_eq!(promoted.shared, [0], "every node has the managers as peers");
    assert_eq!(promoted.managers, None, "no manager address yet");
    let addressed = router.route(&[node(Some("127.0.9.2:2377"))]);
    assert_eq!(addressed.shared, [0]);
    assert!(
        addressed.managers.is_some(),
        "the sessions' list of managers"
    );
}

#[test]
fn a_replaced_stream_ends_and_leaves_the_newer_registered() {
    let fanout = Fanout::default();
    let mut older = fanout.assignments("n1");
    let newer = fanout.assignments("n1");
    assert!(
        older.try_next().is_err(),
        "the older stream's feed is closed"
    );
    drop(older);
    let mut newer = newer;
    fanout.start_over(Vec::new());
    assert!(matches!(newer.try_next(), Ok(Some(Next::StartOver))));
}

/// The views read the store's task indexes; a walk over every task must find the same.
mod indexed_views_match_a_walk {
    use std::collections::BTreeSet;

    use super::*;
    use crate::allocator::{holds_addresses, ingress_network, is_allocated, not_delivered};
    use crate::dispatcher::assignments::assigned_to;
    use crate::dispatcher::mesh::in_rotation;
    use crate::dispatcher::{discovery, mesh, secrets};

    fn host(addr: &str) -> String {
        addr.split('/').next().unwrap_or(addr).to_owned()
    }

    fn check(store: &ObjectStore, node: &str) -> Result<(), TestCaseError> {
        let walk = || store.list::<Task>();
        // The complete set's tasks.
        let sent: BTreeSet<String> = NodeAssignments::default()
            .complete(store, node)
            .changes
            .iter()
            .filter_map(|c| match c.assignment.as_ref()?.item.as_ref()? {
                assignment::Item::Task(t) => Some(t.id().to_owned()),
                _ => None,
            })
            .collect();
        let deliverable: BTreeSet<String> = walk()
            .filter(|t| assigned_to(t, node) && (!not_delivered(t) || is_allocated(store, t)))
            .map(|t| t.id().to_owned())
            .collect();
        prop_assert_eq!(sent, deliverable);
        // Secrets and configs.
        let held = secrets::view(store, node);
        let (mut secret_ids, mut config_ids) = (BTreeSet::new(), BTreeSet::new());
        for task in walk().filter(|t| assigned_to(t, node)) {
            let Some(c) = task.spec.as_ref().and_then(|s| s.container.as_ref()) else {
                continue;
            };
            secret_ids.extend(
                c.secrets
                    .iter()
                    .filter(|r| store.get::<Secret>(&r.secret_id).is_some())
                    .map(|r| r.secret_id.clone()),
            );
            config_ids.extend(
                c.configs
                    .iter()
                    .filter(|r| store.get::<Config>(&r.config_id).is_some())
                    .map(|r| r.config_id.clone()),
            );
        }
        prop_assert_eq!(
            held.secrets.keys().cloned().collect::<BTreeSet<_>>(),
            secret_ids
        );
        prop_assert_eq!(
            held.configs.keys().cloned().collect::<BTreeSet<_>>(),
            config_ids
        );
        // The mesh's backends.
        let ingress = ingress_network(store).map(|n| n.id().to_owned());
        for service in mesh::view(store, node).services {
            let mut backends: Vec<String> = walk()
                .filter(|t| in_rotation(t) && t.service_id == service.service_id)
                .flat_map(|t| &t.networks)
                .filter(|a| Some(&a.network_id) == ingress.as_ref())
                .filter_map(|a| a.addresses.first().map(|a| host(a)))
                .collect();
            backends.sort();
            prop_assert_eq!(&service.backends, &backends);
        }
        // Discovery: the networks of the node's tasks, and each service's tasks on them.
        let state = discovery::view(store, node);
        let wanted: BTreeSet<String> = walk()
            .filter(|t| t.node_id == node && holds_addresses(t))
            .flat_map(|t| &t.networks)
            .map(|a| a.network_id.clone())
            .filter(|id| Some(id) != ingress.as_ref())
            .collect();
        let listed: BTreeSet<String> = state
            .networks
            .iter()
            .map(|n| n.network_id.clone())
            .collect();
        prop_assert_eq!(listed, wanted);
        for network in &state.networks {
            for service in &network.services {
                let mut tasks: Vec<String> = walk()
                    .filter(|t| in_rotation(t) && t.service_id == service.service_id)
                    .flat_map(|t| &t.networks)
                    .filter(|a| a.network_id == network.network_id)
                    .filter_map(|a| a.addresses.first().map(|a| host(a)))
                    .collect();
                tasks.sort();
                prop_assert_eq!(&service.tasks, &tasks);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn on_random_stores(commits in prop::collection::vec(
            prop::collection::vec((0..7u8, any::<u8>(), any::<u16>(), prop::bool::weighted(0.15)), 1..6),
            1..40,
        )) {
            let mut store = ObjectStore::default();
            for (index, ops) in commits.iter().enumerate() {
                let batch = batch(&store, ops);
                store.apply(&batch, index as u64 + 1).expect("a consistent batch");
            }
            for node in NODES {
                check(&store, node)?;
            }
        }
    }
}

/// The fan-out over a real store handle: it routes, and one that falls behind the watch
/// stream makes the nodes start over, after which they hold what a reconnection gives.
#[tokio::test]
async fn a_fanout_that_falls_behind_the_watch_stream_makes_nodes_start_over() {
    use crate::store::fake::FakeProposer;

    let proposer = FakeProposer::new();
    let store = proposer.store();
    let fanout = Fanout::default();
    let mut session = fanout.session("n1");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(super::fanout::run(fanout.clone(), store.clone(), stopped));
    // It publishes the managers once it reads the watch stream.
    session.changed().await;
    let mut stream = Stream::open(&fanout, &store.read(), "n1");

    let mut task = match object(0, 0, 9) {
        Object::Task(t) => t,
        _ => unreachable!("kind 0 is a task"),
    };
    assert_eq!(task.node_id, "n1");
    let commit = |action| {
        proposer
            .commit(&StoreBatch {
                actions: vec![action],
                ..Default::default()
            })
            .expect("the change applies")
    };
    let mut version = commit(create(task.clone()));
    // More batches than the watch stream keeps, without letting the fan-out run.
    for round in 0..5000 {
        task.meta.as_mut().unwrap().version = version;
        task.status.as_mut().unwrap().message = format!("round {round}");
        version = commit(update(task.clone()));
    }
    match stream.feed.next().await {
        Some(Next::StartOver) => {
            stream
                .held
                .take(&stream.tracker.complete(&store.read(), "n1"));
        }
        _ => panic!("the node should start over"),
    }
    assert_eq!(
        std::mem::take(&mut stream.held).settled(),
        reconnected(&store.read(), "n1")
    );

    // Routed again: the next change of its task reaches it.
    task.meta.as_mut().unwrap().version = version;
    task.status.as_mut().unwrap().message = "after".into();
    commit(update(task.clone()));
    loop {
        let batches = match stream.feed.next().await {
            Some(Next::Changes(batches)) => batches,
            // Batches the complete set already reflected may still have filled its queue.
            Some(Next::StartOver) => continue,
            None => panic!("the feed is still registered"),
        };
        let events: Vec<&StoreEvent> = batches.iter().flat_map(|b| b.events()).collect();
        if events.iter().any(|e| e.index == version + 1) {
            break;
        }
    }
    stop.send_replace(true);
    running.await.expect("the fan-out stops");
}
