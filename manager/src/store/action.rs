//! The actions a batch is made of. Every writer builds them here, so every object written
//! carries the same timestamps and names the version it was read at.

use proto::{now_ms, StoreAction, StoreActionKind};

use super::StoredObject;

/// An action creating `object`, stamped with the current time.
pub fn create<T: StoredObject>(mut object: T) -> StoreAction {
    let now = now_ms();
    let meta = object.meta_mut();
    meta.created_at = now;
    meta.updated_at = now;
    action(StoreActionKind::Create, object)
}

/// An action replacing `object`, whose meta names the version it was read at.
pub fn update<T: StoredObject>(mut object: T) -> StoreAction {
    object.meta_mut().updated_at = now_ms();
    action(StoreActionKind::Update, object)
}

/// An action deleting `object` if it is still at the version it was read at.
pub fn delete<T: StoredObject>(object: T) -> StoreAction {
    action(StoreActionKind::Delete, object)
}

/// An action of `kind` on `object`, as it is.
pub(super) fn action<T: StoredObject>(kind: StoreActionKind, object: T) -> StoreAction {
    StoreAction {
        kind: kind as i32,
        object: Some(object.wrap()),
    }
}
