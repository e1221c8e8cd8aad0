//! Reconciliation: from the store as it is, the changes that make every service's tasks match
//! its spec. Pure: the loop in `mod.rs` commits what this returns.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proto::service_spec::Mode;
use proto::store_object::Object;
use proto::{
    Node, NodeAvailability, NodeState, RestartPolicy, Service, StoreAction, Task, TaskState,
    UpdateOrder,
};

use super::changes::{Again, Dirty, Scope, SlotId, Wake};
use super::restart::{decide, Restart};
use super::task::{exited, new_task, status_time, with_desired};
use super::update::{self, Slot};
use crate::lifecycle::{is_active, is_terminal, observed};
use crate::scheduler::constraint;
use crate::store::{create, delete, update};
use crate::store::{ObjectStore, StoredObject};

/// What one reconciliation decided.
#[derive(Default)]
pub struct Plan {
    /// Changes to commit.
    pub actions: Vec<StoreAction>,
    /// When to reconcile again even if nothing changes (a restart delay ends), Unix ms: the
    /// earliest of `wakes`.
    pub wake_at: Option<i64>,
    /// What to reconcile again then: the slot or the whole service that asked.
    pub wakes: Vec<Wake>,
    /// How many tasks the round read: the work it did, which for a partial round is
    /// proportional to what changed.
    pub tasks_read: usize,
    /// How many more tasks of replicated services the round may make (see
    /// [`reconcile_in`]).
    room: usize,
}

impl Plan {
    fn wake(&mut self, at: i64, service: &Service, again: Again) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        self.wakes.push(Wake {
            at,
            service_id: service.id().to_owned(),
            again,
        });
    }
}

/// One service's tasks by slot (replicated) or node (global).
type Slots<'a> = BTreeMap<SlotKey<'a>, Vec<&'a Task>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SlotKey<'a> {
    Slot(u64),
    Node(&'a str),
}

fn slot_key(task: &Task) -> SlotKey<'_> {
    if task.slot > 0 {
        SlotKey::Slot(task.slot)
    } else {
        SlotKey::Node(&task.node_id)
    }
}

impl SlotId {
    fn key(&self) -> SlotKey<'_> {
        match self {
            SlotId::Slot(slot) => SlotKey::Slot(*slot),
            SlotId::Node(node) => SlotKey::Node(node),
        }
    }
}

/// The nodes, looked up in the store rather than copied: a partial round must not cost
/// O(nodes).
#[derive(Clone, Copy)]
struct Nodes<'a>(&'a ObjectStore);

impl<'a> Nodes<'a> {
    fn get(&self, id: &str) -> Option<&'a Node> {
        self.0.get::<Node>(id)
    }

    fn all(&self) -> impl Iterator<Item = &'a Node> {
        self.0.list::<Node>()
    }
}

/// What a round reconciles of one service (or of the tasks of a service that is gone).
struct Group<'a> {
    service: Option<&'a Service>,
    /// The tasks of the slots reconciled, each slot's in ID order (as a walk of the store
    /// gives them, so a partial round decides ties as the full one does).
    slots: Slots<'a>,
    /// `None`: every slot of the service; otherwise only these (they may have no tasks).
    only: Option<BTreeSet<SlotKey<'a>>>,
    /// With `only`: every slot from this one on as well (a replicated service still being
    /// filled; its tasks there are in `slots`).
    from: Option<u64>,
}

/// Reconciles every service, then reaps old tasks. `history` is the cluster's task history
/// retention limit per slot.
#[cfg(test)]
pub fn reconcile(store: &ObjectStore, now: i64, history: usize) -> Plan {
    static ALL: Scope = Scope::All;
    reconcile_in(store, &ALL, now, history, usize::MAX)
}

/// Reconciles the services in `scope` (every one, or what changed), then reaps old tasks of
/// the same slots. For what it covers, a partial round decides exactly what a full round
/// decides. `history` is the cluster's task history retention limit per slot.
///
/// A round makes at most `room` tasks for replicated services' empty slots; a service with
/// more to fill asks to be reconciled again at once ([`Plan::wakes`]), so rounds in a row
/// fill it. One round making a million tasks held the leader's loop for minutes, and every
/// change committed meanwhile waited in the watch stream for the loop to read it: gigabytes
/// of events at a million tasks.
pub fn reconcile_in<'a>(
    store: &'a ObjectStore,
    scope: &'a Scope,
    now: i64,
    history: usize,
    room: usize,
) -> Plan {
    let mut plan = Plan {
        room,
        ..Plan::default()
    };
    let nodes = Nodes(store);
    let groups = match scope {
        Scope::All => everything(store, &mut plan),
        Scope::Dirty(dirty) => changed(store, dirty, &mut plan),
    };
    for group in &groups {
        let Some(service) = group.service else {
            continue;
        };
        let (slots, only) = (&group.slots, group.only.as_ref());
        match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
            Some(Mode::Replicated(r)) => {
                replicated(&mut plan, service, group, nodes, r.replicas, None, now)
            }
            Some(Mode::ReplicatedJob(j)) => replicated(
                &mut plan,
                service,
                group,
                nodes,
                j.total_completions,
                Some(j.max_concurrent),
                now,
            ),
            Some(Mode::Global(_)) => global(&mut plan, service, slots, only, nodes, false, now),
            Some(Mode::GlobalJob(_)) => global(&mut plan, service, slots, only, nodes, true, now),
            None => {}
        }
    }
    reap(&mut plan, &groups, nodes, history);
    plan
}

/// Every service with all its slots, and the tasks of services that are gone.
fn everything<'a>(store: &'a ObjectStore, plan: &mut Plan) -> Vec<Group<'a>> {
    let mut by_service: HashMap<&str, Slots<'a>> = HashMap::new();
    for task in store.list::<Task>() {
        plan.tasks_read += 1;
        by_service
            .entry(task.service_id.as_str())
            .or_default()
            .entry(slot_key(task))
            .or_default()
            .push(task);
    }
    let mut groups: Vec<Group<'a>> = store
        .list::<Service>()
        .map(|service| Group {
            service: Some(service),
            slots: by_service.remove(service.id()).unwrap_or_default(),
            only: None,
            from: None,
        })
        .collect();
    groups.extend(by_service.into_values().map(|slots| Group {
        service: None,
        slots,
        only: None,
        from: None,
    }));
    groups
}

/// The services and slots `dirty` names, widened where one slot depends on others: a node
/// change touches every global service's slot on that node and the slots of the node's
/// tasks; a rollout in progress and a job's concurrency limit look at every slot of their
/// service.
fn changed<'a>(store: &'a ObjectStore, dirty: &'a Dirty, plan: &mut Plan) -> Vec<Group<'a>> {
    // Service ID -> the slots to reconcile (`None`: all of them).
    let mut wanted: BTreeMap<&'a str, Option<BTreeSet<SlotKey<'a>>>> = BTreeMap::new();
    fn add<'a>(
        wanted: &mut BTreeMap<&'a str, Option<BTreeSet<SlotKey<'a>>>>,
        service_id: &'a str,
        key: SlotKey<'a>,
    ) {
        if let Some(keys) = wanted
            .entry(service_id)
            .or_insert_with(|| Some(BTreeSet::new()))
        {
            keys.insert(key);
        }
    }
    for service_id in &dirty.services {
        wanted.insert(service_id, None);
    }
    if !dirty.nodes.is_empty() {
        // A node that changed may now qualify for a global service or no longer: the
        // service's slot on that node (and no other) is looked at.
        let global: Vec<&Service> = store.list::<Service>().filter(|s| is_global(s)).collect();
        for node_id in &dirty.nodes {
            for service in &global {
                add(&mut wanted, service.id(), SlotKey::Node(node_id));
            }
            for task in store.tasks_on_node(node_id) {
                plan.tasks_read += 1;
                add(&mut wanted, &task.service_id, slot_key(task));
            }
        }
    }
    for (service_id, slots) in &dirty.slots {
        for slot in slots {
            add(&mut wanted, service_id, slot.key());
        }
    }
    for service_id in dirty.fill_from.keys() {
        wanted
            .entry(service_id)
            .or_insert_with(|| Some(BTreeSet::new()));
    }
    wanted
        .into_iter()
        .map(|(service_id, only)| {
            let service = store.get::<Service>(service_id);
            let whole = service.is_some_and(|s| {
                update::in_progress(s)
                    || matches!(mode(s), Some(Mode::ReplicatedJob(_)))
                    || only.as_ref().is_some_and(|keys| most_slots(s, keys.len()))
            });
            let only = if whole { None } else { only };
            let from = only.as_ref().and(dirty.fill_from.get(service_id).copied());
            let mut slots = Slots::new();
            let mut read = |task: &'a Task| {
                plan.tasks_read += 1;
                slots.entry(slot_key(task)).or_default().push(task);
            };
            match &only {
                None => store.tasks_of_service(service_id).for_each(&mut read),
                Some(keys) => {
                    for key in keys.iter().filter(|key| !at_or_after(**key, from)) {
                        tasks_in(store, service_id, *key).for_each(&mut read);
                    }
                    if let Some(from) = from {
                        store.tasks_from_slot(service_id, from).for_each(&mut read);
                    }
                }
            }
            // The index lists a slot's tasks in ID order, as the full round's walk does, so
            // ties (two tasks stopped at the same millisecond) are decided alike.
            Group {
                service,
                slots,
                only,
                from,
            }
        })
        .collect()
}

/// Whether `key` is a slot at or after `from` (which a round filling its service covers
/// with every slot from there on).
fn at_or_after(key: SlotKey<'_>, from: Option<u64>) -> bool {
    matches!((key, from), (SlotKey::Slot(slot), Some(from)) if slot >= from)
}

/// Whether `changed` slots are many and most of the service's (a large service just
/// created or scaled up): one pass over its tasks then costs less than a lookup per slot,
/// and decides the same. Small services stay slot by slot, which the random tests check.
fn most_slots(service: &Service, changed: usize) -> bool {
    const MANY: usize = 1_000;
    let slots = match mode(service) {
        Some(Mode::Replicated(r)) => r.replicas,
        _ => return false,
    };
    changed >= MANY && changed as u64 * 2 > slots
}

fn mode(service: &Service) -> Option<&Mode> {
    service.spec.as_ref().and_then(|s| s.mode.as_ref())
}

fn is_global(service: &Service) -> bool {
    matches!(mode(service), Some(Mode::Global(_) | Mode::GlobalJob(_)))
}

/// The tasks of one slot of a service, from the store's index.
fn tasks_in<'a>(
    store: &'a ObjectStore,
    service_id: &'a str,
    key: SlotKey<'a>,
) -> Box<dyn Iterator<Item = &'a Task> + 'a> {
    match key {
        SlotKey::Slot(slot) => Box::new(store.tasks_in_slot(service_id, slot)),
        SlotKey::Node(node_id) => Box::new(store.tasks_of_service_on_node(service_id, node_id)),
    }
}

/// Why a running task must stop because of its node, if it must.
fn node_problem(task: &Task, nodes: Nodes<'_>) -> Option<&'static str> {
    if task.node_id.is_empty() {
        return None;
    }
    let Some(node) = nodes.get(task.node_id.as_str()) else {
        return Some("its node was removed from the cluster");
    };
    let state = node.status.as_ref().map_or(0, |s| s.state);
    if state == NodeState::Down as i32 {
        return Some("its node is down");
    }
    let availability = node.spec.as_ref().map_or(0, |s| s.availability);
    if availability == NodeAvailability::Drain as i32 {
        return Some("its node is drained");
    }
    None
}

/// Stops tasks that ended or lost their node; returns the newest one still good.
fn settle<'a>(plan: &mut Plan, tasks: &[&'a Task], nodes: Nodes<'_>, job: bool) -> Vec<&'a Task> {
    let mut good = Vec::new();
    for &task in tasks.iter().filter(|t| is_active(t)) {
        let state = observed(task);
        if is_terminal(state) {
            // A job that completed is done; anything else that ended is history.
            let desired = if job && state == TaskState::Complete as i32 {
                TaskState::Complete
            } else {
                TaskState::Shutdown
            };
            plan.actions.push(update(with_desired(task, desired)));
        } else if node_problem(task, nodes).is_some() {
            plan.actions
                .push(update(with_desired(task, TaskState::Shutdown)));
        } else {
            good.push(task);
        }
    }
    // Two live tasks in one slot (a leader change mid-write): keep the newest. A start-first
    // rollout starts the new version beside the old one: the old one stops only once the
    // new one is ready.
    good.sort_by_key(|t| std::cmp::Reverse(t.meta().created_at));
    let starting_beside =
        good.len() >= 2 && good[0].spec_version != good[1].spec_version && !update::ready(good[0]);
    let keep = if starting_beside { 2 } else { 1 };
    for extra in good.iter().skip(keep) {
        plan.actions
            .push(update(with_desired(extra, TaskState::Shutdown)));
    }
    good.truncate(1);
    good
}

/// Reconciles a replicated service (or job): every slot, or the group's `only` those and
/// those from its `from` on (then no rollout is in progress and it is no job, so no slot
/// depends on another).
fn replicated(
    plan: &mut Plan,
    service: &Service,
    group: &Group<'_>,
    nodes: Nodes<'_>,
    wanted: u64,
    concurrency: Option<u64>,
    now: i64,
) {
    let (slots, only, from) = (&group.slots, group.only.as_ref(), group.from);
    let job = concurrency.is_some();
    let policy = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.restart.as_ref());
    let mut running = 0u64;
    let mut idle = Vec::new();
    let mut rollout = Vec::new();
    // In ascending order: when the room runs out at a slot, every empty slot after it is
    // still to be filled, and none before it.
    let visit: Box<dyn Iterator<Item = u64> + '_> = match only {
        None => Box::new(1..=wanted),
        Some(keys) => Box::new(
            keys.iter()
                .filter_map(move |key| match key {
                    SlotKey::Slot(slot) if *slot <= wanted && !at_or_after(*key, from) => {
                        Some(*slot)
                    }
                    _ => None,
                })
                .chain(from.into_iter().flat_map(|from| from..=wanted)),
        ),
    };
    for slot in visit {
        let history = slots
            .get(&SlotKey::Slot(slot))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let live = settle(plan, history, nodes, job).first().copied();
        let stopping = live.is_none() && stopping_for_update(service, history, nodes);
        rollout.push(Slot {
            key: slot,
            live,
            history,
        });
        if live.is_some() {
            running += 1;
            continue;
        }
        if job
            && history
                .iter()
                .any(|t| observed(t) == TaskState::Complete as i32)
        {
            continue;
        }
        if !stopping {
            idle.push((slot, history));
        }
    }
    if !job
        && only.is_none()
        && roll(plan, service, &rollout, now, |slot| {
            new_task(service, slot, None)
        })
    {
        // Going back to the previous spec: the next round makes tasks from it.
        return;
    }
    for (slot, history) in idle {
        if concurrency.is_some_and(|limit| running >= limit) {
            break;
        }
        match restart(service, policy, history, now) {
            Restart::Now if plan.room == 0 => {
                // The rest wait for the next round, which comes at once.
                plan.wake(now, service, Again::SlotsFrom(slot));
                break;
            }
            Restart::Now => {
                plan.room -= 1;
                plan.actions.push(create(new_task(service, slot, None)));
                running += 1;
            }
            Restart::At(at) => plan.wake(at, service, Again::Slot(SlotId::Slot(slot))),
            Restart::Never => {}
        }
    }
    // Scaled down: slots beyond the count go away, as with `docker service scale`. Their
    // tasks stop and are deleted, so scaling up again starts those slots afresh rather than
    // under the restart policy of a task that ended there before.
    for (key, tasks) in slots.range(SlotKey::Slot(wanted + 1)..) {
        if matches!(key, SlotKey::Slot(_)) {
            for task in tasks {
                remove(plan, task, nodes);
            }
        }
    }
}

/// Removes a task for good: deleted once it no longer runs, told to stop (desired REMOVE)
/// until then.
fn remove(plan: &mut Plan, task: &Task, nodes: Nodes<'_>) {
    let gone = is_terminal(observed(task))
        || node_problem(task, nodes).is_some()
        || task.node_id.is_empty();
    if gone {
        plan.actions.push(delete(task.clone()));
    } else if task.desired_state != TaskState::Remove as i32 {
        plan.actions
            .push(update(with_desired(task, TaskState::Remove)));
    }
}

/// Whether a slot (or node) with no running task gets a new one. Only tasks of the
/// service's current template count: a changed spec (`service update`, `--force`) starts
/// every slot afresh, as Docker does, even where the restart policy had given up.
fn restart(
    service: &Service,
    policy: Option<&RestartPolicy>,
    history: &[&Task],
    now: i64,
) -> Restart {
    let current: Vec<&Task> = history
        .iter()
        .copied()
        .filter(|t| !update::outdated(service, t))
        .collect();
    decide(policy, &current, now)
}

/// Whether an outdated task of the slot was told to stop by a stop-first rollout and has
/// not stopped yet: its replacement waits for it (a task whose node is gone will not
/// report, and does not hold the slot).
fn stopping_for_update(service: &Service, history: &[&Task], nodes: Nodes<'_>) -> bool {
    history.iter().any(|t| {
        update::outdated(service, t)
            && t.desired_state == TaskState::Shutdown as i32
            && !t.node_id.is_empty()
            && !is_terminal(observed(t))
            && node_problem(t, nodes).is_none()
    })
}

/// Takes the next step of the service's rollout, if one is in progress; `make` makes a new
/// task for a slot. Returns whether the service goes back to its previous spec.
fn roll<K: Copy>(
    plan: &mut Plan,
    service: &Service,
    slots: &[Slot<'_, K>],
    now: i64,
    make: impl Fn(K) -> Task,
) -> bool {
    let step = update::decide(service, slots, now);
    if let Some(at) = step.wake_at {
        plan.wake(at, service, Again::Service);
    }
    for (key, old) in &step.replace {
        match step.order {
            UpdateOrder::StopFirst => plan
                .actions
                .push(update(with_desired(old, TaskState::Shutdown))),
            UpdateOrder::StartFirst => plan.actions.push(create(make(*key))),
        }
    }
    let Some(status) = step.status else {
        return false;
    };
    let changed = if step.rollback {
        update::rolled_back(service, status)
    } else {
        let mut s = service.clone();
        s.update_status = Some(status);
        s
    };
    plan.actions.push(update(changed));
    step.rollback
}

/// Whether a global service's tasks belong on `node`.
fn eligible(service: &Service, node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .is_some_and(|s| s.state == NodeState::Ready as i32);
    let active = node
        .spec
        .as_ref()
        .is_none_or(|s| s.availability == NodeAvailability::Active as i32);
    let constraints = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.placement.as_ref())
        .map(|p| p.constraints.as_slice())
        .unwrap_or(&[]);
    ready
        && active
        && constraints
            .iter()
            .all(|c| constraint::parse(c).is_ok_and(|c| c.matches(node)))
}

/// Reconciles a global service (or job): every node, or `only` those (then no rollout is
/// in progress, so no node depends on another).
fn global(
    plan: &mut Plan,
    service: &Service,
    slots: &Slots<'_>,
    only: Option<&BTreeSet<SlotKey<'_>>>,
    nodes: Nodes<'_>,
    job: bool,
    now: i64,
) {
    let policy = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.restart.as_ref());
    let mut covered = HashSet::new();
    let mut idle = Vec::new();
    let mut rollout = Vec::new();
    for (key, tasks) in slots {
        let SlotKey::Node(node_id) = *key else {
            continue;
        };
        let node = nodes.get(node_id);
        let wanted_here = node.is_some_and(|n| eligible(service, n));
        let good = settle(plan, tasks, nodes, job);
        if !wanted_here {
            // Labels or constraints changed: the node no longer qualifies.
            for task in good {
                plan.actions
                    .push(update(with_desired(task, TaskState::Shutdown)));
            }
            continue;
        }
        covered.insert(node_id);
        let live = good.first().copied();
        let stopping = live.is_none() && stopping_for_update(service, tasks, nodes);
        rollout.push(Slot {
            key: node_id,
            live,
            history: tasks.as_slice(),
        });
        if live.is_some()
            || stopping
            || (job
                && tasks
                    .iter()
                    .any(|t| observed(t) == TaskState::Complete as i32))
        {
            continue;
        }
        idle.push((node_id, tasks.as_slice()));
    }
    if !job
        && only.is_none()
        && roll(plan, service, &rollout, now, |node_id| {
            new_task(service, 0, Some(node_id))
        })
    {
        return;
    }
    for (node_id, tasks) in idle {
        match restart(service, policy, tasks, now) {
            Restart::Now => plan
                .actions
                .push(create(new_task(service, 0, Some(node_id)))),
            Restart::At(at) => {
                plan.wake(at, service, Again::Slot(SlotId::Node(node_id.to_owned())))
            }
            Restart::Never => {}
        }
    }
    let candidates: Vec<&Node> = match only {
        None => nodes.all().collect(),
        Some(keys) => keys
            .iter()
            .filter_map(|key| match key {
                SlotKey::Node(node_id) => nodes.get(node_id),
                SlotKey::Slot(_) => None,
            })
            .collect(),
    };
    for node in candidates {
        if !covered.contains(node.id()) && eligible(service, node) {
            plan.actions
                .push(create(new_task(service, 0, Some(node.id()))));
        }
    }
}

/// Deletes what no one needs: tasks of removed services once stopped, and history beyond the
/// retention limit (oldest first).
fn reap(plan: &mut Plan, groups: &[Group<'_>], nodes: Nodes<'_>, history: usize) {
    // Tasks the services' reconciliation already changed (a scale-down deletes some) are
    // left alone: a batch that changed one twice would not apply.
    let changed: HashSet<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a.object.as_ref()?.object.as_ref()? {
            Object::Task(t) => Some(t.id().to_owned()),
            _ => None,
        })
        .collect();
    for group in groups {
        let service_exists = group.service.is_some();
        for tasks in group.slots.values() {
            if !service_exists {
                for task in tasks {
                    remove(plan, task, nodes);
                }
                continue;
            }
            let mut old: Vec<&&Task> = tasks
                .iter()
                .filter(|t| {
                    !is_active(t)
                        && !changed.contains(t.id())
                        && (is_terminal(observed(t))
                            || node_problem(t, nodes).is_some()
                            || exited(t))
                })
                .collect();
            let keep = history.saturating_sub(tasks.len() - old.len());
            if old.len() > keep {
                old.sort_by_key(|t| status_time(t));
                for task in &old[..old.len() - keep] {
                    plan.actions.push(delete((**task).clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::store_object::Object;
    use proto::{
        ContainerSpec, Meta, NodeSpec, NodeStatus, ReplicatedService, ServiceSpec, StoreActionKind,
        StoreBatch, TaskSpec, TaskStatus, UpdateConfig, UpdateState, UpdateStatus,
    };

    fn node() -> Node {
        Node {
            meta: Some(Meta {
                id: "n1".into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A 1-replica service at version 2, updating with `order`, and its v1 task.
    fn store(order: UpdateOrder, extra: Vec<Task>) -> ObjectStore {
        store_with_mode(
            order,
            Mode::Replicated(ReplicatedService { replicas: 1 }),
            extra,
        )
    }

    fn store_with_mode(order: UpdateOrder, mode: Mode, extra: Vec<Task>) -> ObjectStore {
        let service = Service {
            meta: Some(Meta {
                id: "svc".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: "web".into(),
                mode: Some(mode),
                task_template: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "v2".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_config: Some(UpdateConfig {
                    order: order as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            spec_version: 2,
            update_status: Some(UpdateStatus {
                state: UpdateState::Updating as i32,
                started_at: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut actions = vec![create(node()), create(service)];
        actions.extend(extra.into_iter().map(create));
        let mut s = ObjectStore::default();
        s.apply(
            &StoreBatch {
                actions,
                ..Default::default()
            },
            1,
        )
        .unwrap();
        s
    }

    fn task(id: &str, version: u64, desired: TaskState, state: TaskState) -> Task {
        Task {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            service_id: "svc".into(),
            slot: 1,
            node_id: "n1".into(),
            spec_version: version,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The task changes of a plan: (kind, task ID or "new", spec version, desired state).
    fn changes(plan: &Plan) -> Vec<(i32, String, u64, i32)> {
        plan.actions
            .iter()
            .filter_map(|a| match a.object.as_ref()?.object.as_ref()? {
                Object::Task(t) => {
                    let id = if a.kind == StoreActionKind::Create as i32 {
                        "new".to_string()
                    } else {
                        t.id().to_string()
                    };
                    Some((a.kind, id, t.spec_version, t.desired_state))
                }
                _ => None,
            })
            .collect()
    }

    const UPDATE: i32 = StoreActionKind::Update as i32;
    const CREATE: i32 = StoreActionKind::Create as i32;
    const RUNNING: i32 = TaskState::Running as i32;
    const SHUTDOWN: i32 = TaskState::Shutdown as i32;

    #[test]
    fn stop_first_stops_the_old_task_and_waits_for_it() {
        let old = task("old", 1, TaskState::Running, TaskState::Running);
        let plan = reconcile(&store(UpdateOrder::StopFirst, vec![old]), 100, 5);
        assert_eq!(changes(&plan), [(UPDATE, "old".into(), 1, SHUTDOWN)]);
        // Told to stop, still running: the slot stays empty.
        let stopping = task("old", 1, TaskState::Shutdown, TaskState::Running);
        let plan = reconcile(&store(UpdateOrder::StopFirst, vec![stopping]), 100, 5);
        assert_eq!(changes(&plan), []);
        // Stopped: the new task starts.
        let stopped = task("old", 1, TaskState::Shutdown, TaskState::Shutdown);
        let plan = reconcile(&store(UpdateOrder::StopFirst, vec![stopped]), 100, 5);
        assert_eq!(changes(&plan), [(CREATE, "new".into(), 2, RUNNING)]);
    }

    #[test]
    fn start_first_keeps_the_old_task_until_the_new_one_runs() {
        let old = task("old", 1, TaskState::Running, TaskState::Running);
        let plan = reconcile(&store(UpdateOrder::StartFirst, vec![old.clone()]), 100, 5);
        assert_eq!(changes(&plan), [(CREATE, "new".into(), 2, RUNNING)]);
        let mut new = task("new", 2, TaskState::Running, TaskState::Starting);
        new.meta.as_mut().unwrap().id = "new".into();
        let plan = reconcile(
            &store(UpdateOrder::StartFirst, vec![old.clone(), new.clone()]),
            100,
            5,
        );
        assert_eq!(changes(&plan), []);
        new.status.as_mut().unwrap().state = TaskState::Running as i32;
        let plan = reconcile(&store(UpdateOrder::StartFirst, vec![old, new]), 100, 5);
        assert_eq!(changes(&plan), [(UPDATE, "old".into(), 1, SHUTDOWN)]);
    }

    #[test]
    fn global_services_roll_node_by_node() {
        let global = || Mode::Global(proto::GlobalService {});
        let mut old = task("old", 1, TaskState::Running, TaskState::Running);
        old.slot = 0;
        let plan = reconcile(
            &store_with_mode(UpdateOrder::StopFirst, global(), vec![old.clone()]),
            100,
            5,
        );
        assert_eq!(changes(&plan), [(UPDATE, "old".into(), 1, SHUTDOWN)]);
        old.desired_state = SHUTDOWN;
        let plan = reconcile(
            &store_with_mode(UpdateOrder::StopFirst, global(), vec![old.clone()]),
            100,
            5,
        );
        assert_eq!(changes(&plan), []);
        old.status.as_mut().unwrap().state = SHUTDOWN;
        let plan = reconcile(
            &store_with_mode(UpdateOrder::StopFirst, global(), vec![old]),
            100,
            5,
        );
        assert_eq!(changes(&plan), [(CREATE, "new".into(), 2, RUNNING)]);
    }

    #[test]
    fn a_failed_rollout_rolls_back_without_making_tasks_of_the_bad_spec() {
        let failed = task("bad", 2, TaskState::Shutdown, TaskState::Failed);
        let mut store = store(UpdateOrder::StopFirst, vec![failed]);
        let mut svc = store.get::<Service>("svc").unwrap().clone();
        let spec = svc.spec.as_mut().unwrap();
        spec.update_config.as_mut().unwrap().failure_action = proto::FailureAction::Rollback as i32;
        let mut v1 = spec.clone();
        v1.task_template
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap()
            .image = "v1".into();
        svc.previous_spec = Some(v1);
        store
            .apply(
                &StoreBatch {
                    actions: vec![update(svc)],
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        let plan = reconcile(&store, proto::now_ms(), 5);
        assert_eq!(changes(&plan), [], "no task of the bad spec");
        let services: Vec<&Service> = plan
            .actions
            .iter()
            .filter_map(|a| match a.object.as_ref()?.object.as_ref()? {
                Object::Service(s) => Some(&**s),
                _ => None,
            })
            .collect();
        assert_eq!(services.len(), 1);
        let back = services[0];
        assert_eq!(back.spec_version, 3);
        let image = |s: Option<&ServiceSpec>| {
            s.and_then(|s| s.task_template.as_ref()?.container.as_ref())
                .map(|c| c.image.clone())
        };
        assert_eq!(image(back.spec.as_ref()), Some("v1".into()));
        assert_eq!(image(back.previous_spec.as_ref()), Some("v2".into()));
        let status = back.update_status.clone().unwrap();
        assert_eq!(status.state(), UpdateState::RollbackStarted);
        assert!(status.message.contains("task bad"), "{}", status.message);
    }

    /// A `replicas`-replica service at version 2 with restart condition `none` and no
    /// rollout in progress, and `tasks`.
    fn restart_none(replicas: u64, tasks: Vec<Task>) -> ObjectStore {
        let mode = Mode::Replicated(ReplicatedService { replicas });
        let mut store = store_with_mode(UpdateOrder::StopFirst, mode, tasks);
        let mut svc = store.get::<Service>("svc").unwrap().clone();
        svc.update_status = None;
        let template = svc.spec.as_mut().unwrap().task_template.as_mut().unwrap();
        template.restart = Some(RestartPolicy {
            condition: proto::RestartCondition::None as i32,
            ..Default::default()
        });
        let actions = vec![update(svc)];
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                2,
            )
            .unwrap();
        store
    }

    #[test]
    fn restart_none_leaves_a_failed_slot_empty_until_the_spec_changes() {
        let failed = task("failed", 2, TaskState::Shutdown, TaskState::Failed);
        let plan = reconcile(&restart_none(1, vec![failed]), 100, 5);
        assert_eq!(changes(&plan), []);
        // The task failed under the previous template (say before `update --force`).
        let failed = task("failed", 1, TaskState::Shutdown, TaskState::Failed);
        let plan = reconcile(&restart_none(1, vec![failed]), 100, 5);
        assert_eq!(changes(&plan), [(CREATE, "new".into(), 2, RUNNING)]);
    }

    #[test]
    fn scaling_down_removes_the_slots_beyond_the_count() {
        const REMOVE: i32 = TaskState::Remove as i32;
        const DELETE: i32 = StoreActionKind::Delete as i32;
        let kept = task("kept", 2, TaskState::Running, TaskState::Running);
        let mut running = task("running", 2, TaskState::Running, TaskState::Running);
        running.slot = 2;
        let mut failed = task("failed", 2, TaskState::Shutdown, TaskState::Failed);
        failed.slot = 3;
        let tasks = vec![kept, running.clone(), failed];
        // No history kept: the retention limit would delete the failed task too, but a
        // batch may change it only once.
        let plan = reconcile(&restart_none(1, tasks), 100, 0);
        let mut got = changes(&plan);
        got.sort();
        assert_eq!(
            got,
            [
                (UPDATE, "running".into(), 2, REMOVE),
                (DELETE, "failed".into(), 2, SHUTDOWN),
            ]
        );
        // Once stopped, the scaled-away task is deleted too: a later scale-up finds its
        // slot empty and starts it afresh, whatever the restart policy said of the tasks
        // that ran there.
        running.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
        running.desired_state = REMOVE;
        let kept = task("kept", 2, TaskState::Running, TaskState::Running);
        let plan = reconcile(&restart_none(1, vec![kept, running]), 100, 5);
        assert_eq!(changes(&plan), [(DELETE, "running".into(), 2, REMOVE)]);
    }
}

#[cfg(test)]
mod incremental_tests;
