//! What a committed change means to a person reading `skiff events`: the store's watch
//! says "this object is now so"; an event says "service web updated: replicas 2 -> 5".
//! [`Tracker`] remembers a few attributes of every object to tell what changed, and never
//! anything secret: a secret's or config's data, environment values and tokens are neither
//! kept nor shown (a hash of the spec tells that something else changed).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prost::Message;
use proto::{store_object, StoreActionKind, StoreEvent, StoreObject};

use crate::store::{Kind, ObjectStore, StoredObject};

/// A change as an event, before it gets its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// What kind of object changed.
    pub kind: Kind,
    /// `create`, `update` or `remove`.
    pub action: &'static str,
    /// The object's ID.
    pub id: String,
    /// Its name (a task's is `service.slot`, or `service.nodeID` for a global service's).
    pub name: String,
    /// What it is (create) or what changed (`KEY.old`, `KEY.new`), plus `name`.
    pub attributes: BTreeMap<String, String>,
}

/// What the tracker keeps of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A node, service, network, secret or config.
    Object(Summary),
    /// A task, as a few fields rather than its attributes' strings: the tracker keeps one
    /// per task on every manager (a million at C1M scale, where seven strings, a map entry
    /// and a slice came to some 350 bytes a task), and makes the strings only to compare.
    Task(TaskSeen),
}

/// What the tracker keeps of an object other than a task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    kind: Kind,
    /// Shared with the summaries of the service's tasks.
    name: Arc<str>,
    /// By key. A slice, not a map: a B-tree's first node has room for eleven entries where
    /// four are used.
    attributes: Box<[(&'static str, String)]>,
    /// A hash of the rest of the object's spec: an update that changes only that is still
    /// an event, though it says nothing about what changed.
    fingerprint: u64,
}

/// What the tracker keeps of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskSeen {
    /// The service's name, one allocation for all its tasks.
    service: Arc<str>,
    slot: u64,
    node: Box<str>,
    state: i32,
    desired: i32,
}

impl Seen {
    fn kind(&self) -> Kind {
        match self {
            Seen::Object(o) => o.kind,
            Seen::Task(_) => Kind::Task,
        }
    }

    /// A task's is `service.slot`, or `service.nodeID` for a global service's.
    fn name(&self) -> String {
        match self {
            Seen::Object(o) => o.name.to_string(),
            Seen::Task(t) if t.slot != 0 => format!("{}.{}", t.service, t.slot),
            Seen::Task(t) => format!("{}.{}", t.service, t.node),
        }
    }

    /// The attributes by key.
    fn attributes(&self) -> std::borrow::Cow<'_, [(&'static str, String)]> {
        match self {
            Seen::Object(o) => std::borrow::Cow::Borrowed(&o.attributes),
            Seen::Task(t) => {
                let state = |s: i32| {
                    let s = proto::TaskState::try_from(s).unwrap_or_default();
                    word(s.as_str_name(), "TASK_STATE_")
                };
                let mut attributes = vec![("desired-state", state(t.desired))];
                if !t.node.is_empty() {
                    attributes.push(("node.id", t.node.to_string()));
                }
                attributes.push(("service.name", t.service.to_string()));
                attributes.push(("state", state(t.state)));
                std::borrow::Cow::Owned(attributes)
            }
        }
    }

    fn fingerprint(&self) -> u64 {
        match self {
            Seen::Object(o) => o.fingerprint,
            Seen::Task(_) => 0,
        }
    }
}

/// The last seen state of every object, to describe each change against it.
#[derive(Default)]
pub struct Tracker {
    seen: HashMap<String, Seen>,
}

impl Tracker {
    /// A tracker that knows every object in `store` (no events for them).
    pub fn new(store: &ObjectStore) -> Self {
        let mut tracker = Tracker::default();
        let objects = store
            .list::<proto::Node>()
            .map(|o| o.clone().wrap())
            .chain(store.list::<proto::Service>().map(|o| o.clone().wrap()))
            .chain(store.list::<proto::Task>().map(|o| o.clone().wrap()))
            .chain(store.list::<proto::Network>().map(|o| o.clone().wrap()))
            .chain(store.list::<proto::Secret>().map(|o| o.clone().wrap()))
            .chain(store.list::<proto::Config>().map(|o| o.clone().wrap()));
        for object in objects {
            if let Some((id, seen)) = summarize(&object, &tracker.seen) {
                tracker.seen.insert(id, seen);
            }
        }
        tracker
    }

    /// The event `change` makes, if it changed anything a reader would see.
    pub fn observe(&mut self, change: &StoreEvent) -> Option<Described> {
        let object = change.object.as_ref()?;
        let kind = StoreActionKind::try_from(change.kind).ok()?;
        if kind == StoreActionKind::Delete {
            let id = object_id(object)?;
            let seen = self.seen.remove(&id)?;
            let name = seen.name();
            return Some(Described {
                kind: seen.kind(),
                action: "remove",
                id,
                attributes: BTreeMap::from([("name".to_owned(), name.clone())]),
                name,
            });
        }
        let (id, now) = summarize(object, &self.seen)?;
        let name = now.name();
        let mut attributes = BTreeMap::from([("name".to_owned(), name.clone())]);
        let action = match self.seen.get(&id) {
            None => {
                attributes.extend(
                    now.attributes()
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone())),
                );
                "create"
            }
            Some(before) => {
                let (old, new) = (before.attributes(), now.attributes());
                for (key, _) in old.iter().chain(new.iter()) {
                    let (was, is) = (attribute(&old, key), attribute(&new, key));
                    if was != is {
                        attributes.insert(format!("{key}.old"), was.unwrap_or_default().to_owned());
                        attributes.insert(format!("{key}.new"), is.unwrap_or_default().to_owned());
                    }
                }
                let name_before = before.name();
                if name_before != name {
                    attributes.insert("name.old".into(), name_before);
                }
                if attributes.len() == 1 && before.fingerprint() == now.fingerprint() {
                    self.seen.insert(id, now);
                    return None;
                }
                "update"
            }
        };
        let kind = now.kind();
        self.seen.insert(id.clone(), now);
        Some(Described {
            kind,
            action,
            id,
            name,
            attributes,
        })
    }
}

/// The value of `key` among `attributes`, sorted by key.
fn attribute<'a>(attributes: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
    let found = attributes.binary_search_by(|(k, _)| (*k).cmp(key));
    found.ok().map(|i| attributes[i].1.as_str())
}

fn object_id(object: &StoreObject) -> Option<String> {
    Some(match object.object.as_ref()? {
        store_object::Object::Node(o) => o.id().to_owned(),
        store_object::Object::Service(o) => o.id().to_owned(),
        store_object::Object::Task(o) => o.id().to_owned(),
        store_object::Object::Network(o) => o.id().to_owned(),
        store_object::Object::Secret(o) => o.id().to_owned(),
        store_object::Object::Config(o) => o.id().to_owned(),
        store_object::Object::Cluster(_) => return None,
    })
}

/// A lowercase word for an enum value: `TASK_STATE_RUNNING` -> `running`.
fn word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn hash_of(spec: &impl Message) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.encode_to_vec().hash(&mut h);
    h.finish()
}

/// The object's ID and what the tracker keeps of it; `seen` names a task's service.
fn summarize(object: &StoreObject, seen: &HashMap<String, Seen>) -> Option<(String, Seen)> {
    let mut attributes = BTreeMap::new();
    let (kind, id, name, fingerprint) = match object.object.as_ref()? {
        store_object::Object::Cluster(_) => return None,
        store_object::Object::Node(n) => {
            let role = proto::NodeRole::try_from(n.role).unwrap_or_default();
            attributes.insert("role", word(role.as_str_name(), "NODE_ROLE_"));
            let spec = n.spec.clone().unwrap_or_default();
            let availability =
                proto::NodeAvailability::try_from(spec.availability).unwrap_or_default();
            attributes.insert(
                "availability",
                word(availability.as_str_name(), "NODE_AVAILABILITY_"),
            );
            let state = n.status.as_ref().map(|s| s.state).unwrap_or_default();
            let state = proto::NodeState::try_from(state).unwrap_or_default();
            attributes.insert("state", word(state.as_str_name(), "NODE_STATE_"));
            let hostname = n
                .description
                .as_ref()
                .map(|d| d.hostname.clone())
                .unwrap_or_default();
            (Kind::Node, n.id(), hostname, hash_of(&spec))
        }
        store_object::Object::Service(s) => {
            let spec = s.spec.clone().unwrap_or_default();
            let image = spec
                .task_template
                .as_ref()
                .and_then(|t| t.container.as_ref())
                .map(|c| c.image.clone())
                .unwrap_or_default();
            attributes.insert("image", image);
            match &spec.mode {
                Some(proto::service_spec::Mode::Replicated(r)) => {
                    attributes.insert("replicas", r.replicas.to_string());
                }
                Some(proto::service_spec::Mode::ReplicatedJob(j)) => {
                    attributes.insert("replicas", j.total_completions.to_string());
                }
                _ => {}
            }
            if let Some(update) = &s.update_status {
                let state = proto::UpdateState::try_from(update.state).unwrap_or_default();
                attributes.insert("updatestate", word(state.as_str_name(), "UPDATE_STATE_"));
            }
            (Kind::Service, s.id(), spec.name.clone(), hash_of(&spec))
        }
        store_object::Object::Task(t) => {
            let service = match seen.get(&t.service_id) {
                Some(Seen::Object(s)) => s.name.clone(),
                _ if !t.service_name.is_empty() => t.service_name.as_str().into(),
                _ => t.service_id.as_str().into(),
            };
            let task = TaskSeen {
                service,
                slot: t.slot,
                node: t.node_id.as_str().into(),
                state: t.status.as_ref().map(|s| s.state).unwrap_or_default(),
                desired: t.desired_state,
            };
            return Some((t.id().to_owned(), Seen::Task(task)));
        }
        store_object::Object::Network(n) => {
            let spec = n.spec.clone().unwrap_or_default();
            (Kind::Network, n.id(), spec.name.clone(), hash_of(&spec))
        }
        store_object::Object::Secret(s) => {
            let spec = s.spec.clone().unwrap_or_default();
            (Kind::Secret, s.id(), spec.name.clone(), hash_of(&spec))
        }
        store_object::Object::Config(c) => {
            let spec = c.spec.clone().unwrap_or_default();
            (Kind::Config, c.id(), spec.name.clone(), hash_of(&spec))
        }
    };
    Some((
        id.to_owned(),
        Seen::Object(Summary {
            kind,
            name: name.into(),
            attributes: attributes.into_iter().collect(),
            fingerprint,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, version: u64, replicas: u64, image: &str, env: &str) -> StoreObject {
        proto::Service {
            meta: Some(proto::Meta {
                id: id.into(),
                version,
                ..Default::default()
            }),
            spec: Some(proto::ServiceSpec {
                name: "web".into(),
                task_template: Some(proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image: image.into(),
                        env: vec![format!("PASSWORD={env}")],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(proto::service_spec::Mode::Replicated(
                    proto::ReplicatedService { replicas },
                )),
                ..Default::default()
            }),
            ..Default::default()
        }
        .wrap()
    }

    fn change(kind: StoreActionKind, object: StoreObject) -> StoreEvent {
        StoreEvent {
            kind: kind as i32,
            object: Some(object),
            index: 1,
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_service_is_created_scaled_changed_and_removed_with_what_changed() {
        let mut tracker = Tracker::default();
        let created = tracker
            .observe(&change(
                StoreActionKind::Create,
                service("s1", 1, 2, "busybox", "a"),
            ))
            .unwrap();
        assert_eq!(created.action, "create");
        assert_eq!(created.kind, Kind::Service);
        assert_eq!(
            created.attributes,
            attrs(&[("name", "web"), ("image", "busybox"), ("replicas", "2")])
        );

        let scaled = tracker
            .observe(&change(
                StoreActionKind::Update,
                service("s1", 2, 5, "busybox", "a"),
            ))
            .unwrap();
        assert_eq!(scaled.action, "update");
        assert_eq!(
            scaled.attributes,
            attrs(&[
                ("name", "web"),
                ("replicas.old", "2"),
                ("replicas.new", "5")
            ])
        );

        // A change to the environment is an update, but its values are shown nowhere.
        let env = tracker
            .observe(&change(
                StoreActionKind::Update,
                service("s1", 3, 5, "busybox", "b"),
            ))
            .unwrap();
        assert_eq!(env.attributes, attrs(&[("name", "web")]));
        assert!(!format!("{env:?}").contains("PASSWORD"));

        // A write that changes nothing a reader sees is no event.
        assert_eq!(
            tracker.observe(&change(
                StoreActionKind::Update,
                service("s1", 4, 5, "busybox", "b")
            )),
            None
        );

        let removed = tracker
            .observe(&change(
                StoreActionKind::Delete,
                proto::Service {
                    meta: Some(proto::Meta {
                        id: "s1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .wrap(),
            ))
            .unwrap();
        assert_eq!(removed.action, "remove");
        assert_eq!(removed.name, "web");
    }

    #[test]
    fn tasks_are_named_by_service_and_slot_and_report_state_changes() {
        let mut tracker = Tracker::default();
        tracker.observe(&change(
            StoreActionKind::Create,
            service("s1", 1, 1, "busybox", "a"),
        ));
        let task = |state: proto::TaskState| {
            proto::Task {
                meta: Some(proto::Meta {
                    id: "t1".into(),
                    ..Default::default()
                }),
                service_id: "s1".into(),
                slot: 1,
                node_id: "n1".into(),
                desired_state: proto::TaskState::Running as i32,
                status: Some(proto::TaskStatus {
                    state: state as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
            .wrap()
        };
        let created = tracker
            .observe(&change(
                StoreActionKind::Create,
                task(proto::TaskState::Pending),
            ))
            .unwrap();
        assert_eq!((created.kind, created.name.as_str()), (Kind::Task, "web.1"));
        assert_eq!(created.attributes["state"], "pending");
        let running = tracker
            .observe(&change(
                StoreActionKind::Update,
                task(proto::TaskState::Running),
            ))
            .unwrap();
        assert_eq!(
            running.attributes,
            attrs(&[
                ("name", "web.1"),
                ("state.old", "pending"),
                ("state.new", "running")
            ])
        );
    }

    #[test]
    fn a_secret_event_carries_its_name_and_never_its_data() {
        let mut tracker = Tracker::default();
        let secret = proto::Secret {
            meta: Some(proto::Meta {
                id: "x1".into(),
                ..Default::default()
            }),
            spec: Some(proto::SecretSpec {
                name: "db-password".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
        };
        let created = tracker
            .observe(&change(StoreActionKind::Create, secret.wrap()))
            .unwrap();
        assert_eq!(created.attributes, attrs(&[("name", "db-password")]));
        assert!(!format!("{created:?}").contains("hunter2"));
    }
}
