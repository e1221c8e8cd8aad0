//! Applying a committed batch: all or nothing, deterministic on every manager.

use proto::{
    store_object::Object, Cluster, Config, Network, Node, Secret, Service, StoreAction,
    StoreActionKind, StoreBatch, StoreEvent, StoreObject, Task,
};

use std::sync::Arc;

use super::{Kind, ObjectStore, StoredObject};

/// Why a batch was not applied. Decided identically on every manager, since they all apply
/// the same entries to the same state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ApplyError {
    /// An update or delete named a version that is no longer the stored one.
    #[error("{kind} {id} was changed by someone else (version {expected} was read, {actual} is stored); read it again and retry")]
    Conflict {
        /// Kind of the object.
        kind: Kind,
        /// Its ID.
        id: String,
        /// The version the writer read.
        expected: u64,
        /// The version now stored.
        actual: u64,
    },
    /// An update or delete of an object that does not exist.
    #[error("{kind} {id} does not exist")]
    NotFound {
        /// Kind of the object.
        kind: Kind,
        /// Its ID.
        id: String,
    },
    /// A create with an ID that is taken.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// Kind of the object.
        kind: Kind,
        /// Its ID.
        id: String,
    },
    /// A create or rename to a name another object of the kind has.
    #[error("a {kind} named {name:?} already exists; choose another name")]
    NameTaken {
        /// Kind of the object.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// The entry is not a well-formed batch.
    #[error("invalid store batch: {0}")]
    Invalid(String),
}

/// How to put the store back if a later action of the batch fails.
enum Undo {
    Restore(Box<StoreObject>),
    Remove(Kind, String),
}

impl ObjectStore {
    /// Applies `batch`, committed at log `index`, and returns the events to publish. On error
    /// the store is left exactly as it was.
    pub fn apply(&mut self, batch: &StoreBatch, index: u64) -> Result<Vec<StoreEvent>, ApplyError> {
        let mut undo = Vec::with_capacity(batch.actions.len());
        let mut events = Vec::with_capacity(batch.actions.len());
        for action in &batch.actions {
            match self.apply_action(action, index, &mut undo) {
                Ok(event) => events.push(event),
                Err(e) => {
                    self.rollback(undo);
                    return Err(e);
                }
            }
        }
        Ok(events)
    }

    fn apply_action(
        &mut self,
        action: &StoreAction,
        index: u64,
        undo: &mut Vec<Undo>,
    ) -> Result<StoreEvent, ApplyError> {
        let kind = StoreActionKind::try_from(action.kind)
            .map_err(|_| ApplyError::Invalid(format!("unknown action kind {}", action.kind)))?;
        let object = action
            .object
            .as_ref()
            .and_then(|o| o.object.clone())
            .ok_or_else(|| ApplyError::Invalid("action without an object".into()))?;
        let written = match object {
            Object::Cluster(o) => self.apply_one(kind, *o, index, undo)?,
            Object::Node(o) => self.apply_one(kind, *o, index, undo)?,
            Object::Service(o) => self.apply_one(kind, *o, index, undo)?,
            Object::Task(o) => self.apply_one(kind, o, index, undo)?,
            Object::Network(o) => self.apply_one(kind, o, index, undo)?,
            Object::Secret(o) => self.apply_one(kind, o, index, undo)?,
            Object::Config(o) => self.apply_one(kind, o, index, undo)?,
        };
        Ok(StoreEvent {
            kind: kind as i32,
            object: Some(written),
            index,
        })
    }

    fn apply_one<T: StoredObject>(
        &mut self,
        kind: StoreActionKind,
        mut object: T,
        index: u64,
        undo: &mut Vec<Undo>,
    ) -> Result<StoreObject, ApplyError> {
        let id = object.id().to_owned();
        if id.is_empty() {
            return Err(ApplyError::Invalid(format!("{} without an ID", T::KIND)));
        }
        // The stored object's `Arc`, not a copy: once `put` or `take` drops the table's, it
        // is the only one left (unless a copy of the store shares it), and the undo step
        // takes it without a copy.
        let stored = T::table(self).get(&id).cloned();
        match (kind, stored) {
            (StoreActionKind::Create, Some(_)) => {
                Err(ApplyError::AlreadyExists { kind: T::KIND, id })
            }
            (StoreActionKind::Create, None) => {
                self.check_name(&object)?;
                object.meta_mut().version = index;
                let stored = self.put(object);
                undo.push(Undo::Remove(T::KIND, id));
                Ok(T::clone(&stored).wrap())
            }
            (StoreActionKind::Update | StoreActionKind::Delete, None) => {
                Err(ApplyError::NotFound { kind: T::KIND, id })
            }
            (StoreActionKind::Update, Some(old)) => {
                check_version(&object, &old, false)?;
                self.check_name(&object)?;
                let meta = object.meta_mut();
                meta.version = index;
                meta.created_at = old.meta().created_at;
                let stored = self.put(object);
                let old = Arc::unwrap_or_clone(old);
                undo.push(Undo::Restore(Box::new(old.wrap())));
                Ok(T::clone(&stored).wrap())
            }
            (StoreActionKind::Delete, Some(old)) => {
                check_version(&object, &old, true)?;
                self.take::<T>(&id);
                let old = Arc::unwrap_or_clone(old);
                undo.push(Undo::Restore(Box::new(old.clone().wrap())));
                Ok(old.wrap())
            }
        }
    }

    /// Refuses a name another object of a uniquely named kind already has.
    fn check_name<T: StoredObject>(&self, object: &T) -> Result<(), ApplyError> {
        let Some(name) = object.name().filter(|_| T::UNIQUE_NAMES) else {
            return Ok(());
        };
        let taken = self
            .names
            .get(&(T::KIND, name.to_owned()))
            .is_some_and(|owner| owner != object.id());
        if taken {
            return Err(ApplyError::NameTaken {
                kind: T::KIND,
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Remove(kind, id) => self.remove_raw(kind, &id),
                Undo::Restore(object) => self.insert_raw(*object),
            }
        }
    }

    fn remove_raw(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::Cluster => self.take::<Cluster>(id).map(drop),
            Kind::Node => self.take::<Node>(id).map(drop),
            Kind::Service => self.take::<Service>(id).map(drop),
            Kind::Task => self.take::<Task>(id).map(drop),
            Kind::Network => self.take::<Network>(id).map(drop),
            Kind::Secret => self.take::<Secret>(id).map(drop),
            Kind::Config => self.take::<Config>(id).map(drop),
        };
    }

    /// Puts `object` in its table, replacing the one with its ID, keeps the name index and
    /// the task indexes in step, and gives a task a spec already held when equal. Every
    /// insertion goes through here; it returns what the table now holds.
    fn put<T: StoredObject>(&mut self, mut object: T) -> Arc<T> {
        let id = object.id().to_owned();
        let name = object.name().filter(|_| T::UNIQUE_NAMES).map(str::to_owned);
        // The old object leaves the indexes before the new one enters: they may share keys.
        // A task replaced by a task moves between the task indexes in one step.
        let old = T::table_mut(self).remove(&id);
        if let Some(old) = &old {
            self.unname(&**old);
        }
        if let Some(task) = object.as_task_mut() {
            let replaced = old.as_deref().and_then(StoredObject::as_task);
            self.shared_specs.share(task, replaced);
            match replaced {
                Some(replaced) => self.task_index.replace(replaced, task, &id),
                None => self.task_index.insert(task, &id),
            }
        }
        if object.as_node().is_some_and(|n| n.manager_status.is_some()) {
            self.managers.insert(id.clone());
        }
        let object = Arc::new(object);
        T::table_mut(self).insert(id.clone(), Arc::clone(&object));
        if let Some(name) = name {
            self.names.insert((T::KIND, name), id);
        }
        object
    }

    /// Takes the object `id` out of its table and the name index. Every removal goes
    /// through here.
    fn take<T: StoredObject>(&mut self, id: &str) -> Option<Arc<T>> {
        let old = T::table_mut(self).remove(id)?;
        self.unindex(&*old);
        Some(old)
    }

    fn unindex<T: StoredObject>(&mut self, old: &T) {
        if let Some(task) = old.as_task() {
            self.task_index.remove(task, old.id());
        }
        self.unname(old);
    }

    /// Takes `old` out of the managers' and the names' indexes.
    fn unname<T: StoredObject>(&mut self, old: &T) {
        if old.as_node().is_some() {
            self.managers.remove(old.id());
        }
        let Some(name) = old.name().filter(|_| T::UNIQUE_NAMES) else {
            return;
        };
        let key = (T::KIND, name.to_owned());
        if self.names.get(&key).map(String::as_str) == Some(old.id()) {
            self.names.remove(&key);
        }
    }

    /// Puts an object in its table as it is (snapshots and rollback).
    pub(super) fn insert_raw(&mut self, object: StoreObject) {
        match object.object {
            Some(Object::Cluster(o)) => drop(self.put(*o)),
            Some(Object::Node(o)) => drop(self.put(*o)),
            Some(Object::Service(o)) => drop(self.put(*o)),
            Some(Object::Task(o)) => drop(self.put(o)),
            Some(Object::Network(o)) => drop(self.put(o)),
            Some(Object::Secret(o)) => drop(self.put(o)),
            Some(Object::Config(o)) => drop(self.put(o)),
            None => {}
        }
    }
}

/// An update must name the stored version; a delete may name zero to mean "any".
fn check_version<T: StoredObject>(
    object: &T,
    stored: &T,
    zero_is_any: bool,
) -> Result<(), ApplyError> {
    let expected = object.version();
    if (zero_is_any && expected == 0) || expected == stored.version() {
        return Ok(());
    }
    Err(ApplyError::Conflict {
        kind: T::KIND,
        id: object.id().to_owned(),
        expected,
        actual: stored.version(),
    })
}
