//! The task message, written by hand so that its spec can be shared.
//!
//! Every task of one version of a service carries the same `TaskSpec` (about 1 KB in
//! memory). The generated message would give each task its own copy; here `Task.spec` is a
//! [`SharedTaskSpec`], an `Arc` that encodes and decodes exactly as the `TaskSpec` it holds,
//! so the store can hand the tasks of one service version a single copy (see
//! `manager/src/store/shared_specs.rs`) and every clone of a task (a watch event, a node's
//! assignments, a snapshot's copy of the store) shares it too. The wire format is the one
//! `skiff.proto` describes; `build.rs` points the generated code here with `extern_path`.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::{Endpoint, Meta, NetworkAttachment, TaskSpec, TaskState, TaskStatus};

/// One task: a unit of a service placed on a node. Fields and tags as `skiff.proto`'s
/// `Task`.
#[derive(Clone, PartialEq, Message)]
pub struct Task {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<Meta>,
    #[prost(string, tag = "2")]
    pub service_id: String,
    /// Replicated services: 1..N. Global services: zero (the node identifies the task).
    #[prost(uint64, tag = "3")]
    pub slot: u64,
    /// Empty until scheduled.
    #[prost(string, tag = "4")]
    pub node_id: String,
    /// The service's task template when the task was made, shared with the other tasks of
    /// that service version.
    #[prost(message, optional, tag = "5")]
    pub spec: Option<SharedTaskSpec>,
    #[prost(uint64, tag = "6")]
    pub spec_version: u64,
    #[prost(enumeration = "TaskState", tag = "7")]
    pub desired_state: i32,
    #[prost(message, optional, tag = "8")]
    pub status: Option<TaskStatus>,
    #[prost(message, repeated, tag = "9")]
    pub networks: Vec<NetworkAttachment>,
    #[prost(message, optional, tag = "10")]
    pub endpoint: Option<Endpoint>,
    #[prost(string, tag = "11")]
    pub service_name: String,
    #[prost(uint64, tag = "12")]
    pub job_iteration: u64,
}

impl Task {
    /// The task's ID (empty for a task without meta, which no store holds).
    pub fn id(&self) -> &str {
        self.meta.as_ref().map_or("", |m| m.id.as_str())
    }
}

/// A `TaskSpec` behind an `Arc`: cloning it shares the spec; changing it through
/// `DerefMut` copies it first if it is shared (so a change never reaches another task).
#[derive(Clone, Debug, Default)]
pub struct SharedTaskSpec(Arc<TaskSpec>);

impl SharedTaskSpec {
    /// Whether both hold the very same spec (not merely equal ones).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A reference that does not keep the spec alive (for a table of the specs in use).
    pub fn downgrade(&self) -> WeakTaskSpec {
        WeakTaskSpec(Arc::downgrade(&self.0))
    }
}

/// A [`SharedTaskSpec`] that does not keep its spec alive.
#[derive(Clone, Debug, Default)]
pub struct WeakTaskSpec(Weak<TaskSpec>);

impl WeakTaskSpec {
    /// The spec, if a task still holds it.
    pub fn upgrade(&self) -> Option<SharedTaskSpec> {
        self.0.upgrade().map(SharedTaskSpec)
    }

    /// Whether no task holds the spec any more.
    pub fn is_dead(&self) -> bool {
        self.0.strong_count() == 0
    }

    /// Whether both point at the same spec (a weak reference keeps its allocation, so the
    /// address is not reused while either is held).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.0, &other.0)
    }
}

impl From<TaskSpec> for SharedTaskSpec {
    fn from(spec: TaskSpec) -> Self {
        Self(Arc::new(spec))
    }
}

impl Deref for SharedTaskSpec {
    type Target = TaskSpec;
    fn deref(&self) -> &TaskSpec {
        &self.0
    }
}

impl DerefMut for SharedTaskSpec {
    fn deref_mut(&mut self) -> &mut TaskSpec {
        Arc::make_mut(&mut self.0)
    }
}

impl PartialEq for SharedTaskSpec {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || *self.0 == *other.0
    }
}

/// Encodes and decodes as the `TaskSpec` inside: the wire never sees the `Arc`.
impl Message for SharedTaskSpec {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.0.encode_raw(buf)
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        Arc::make_mut(&mut self.0).merge_field(tag, wire_type, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{ContainerSpec, ServiceSpec};

    /// A task with every field set.
    fn full_task() -> Task {
        Task {
            meta: Some(Meta {
                id: "t1".into(),
                version: 7,
                ..Default::default()
            }),
            service_id: "s1".into(),
            slot: 3,
            node_id: "n1".into(),
            spec: Some(
                TaskSpec {
                    container: Some(ContainerSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            spec_version: 2,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                message: "started".into(),
                ..Default::default()
            }),
            networks: vec![NetworkAttachment::default()],
            endpoint: Some(Endpoint::default()),
            service_name: "web".into(),
            job_iteration: 4,
        }
    }

    #[test]
    fn a_task_round_trips_and_its_spec_encodes_as_a_task_spec() {
        let task = full_task();
        let bytes = task.encode_to_vec();
        assert_eq!(Task::decode(bytes.as_slice()).unwrap(), task);
        // Field 5 alone: its key, its length, then exactly a TaskSpec's bytes.
        let spec_only = Task {
            spec: task.spec.clone(),
            ..Default::default()
        };
        let spec_bytes = task.spec.as_deref().unwrap().encode_to_vec();
        let mut expected = vec![5 << 3 | 2, spec_bytes.len() as u8];
        expected.extend(spec_bytes);
        assert_eq!(spec_only.encode_to_vec(), expected);
    }

    /// The hand-written message has every field `skiff.proto` gives `Task`: a field added
    /// there and not here fails this.
    #[test]
    fn the_hand_written_task_has_the_fields_of_skiff_proto() {
        let fds = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let described = fds
            .file
            .iter()
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "Task")
            .expect("skiff.proto describes Task");
        let mut numbers: Vec<u32> = described.field.iter().map(|f| f.number() as u32).collect();
        numbers.sort_unstable();
        let spec = described.field.iter().find(|f| f.number() == 5).unwrap();
        assert_eq!(spec.type_name(), ".skiff.v1.TaskSpec");

        let bytes = full_task().encode_to_vec();
        let mut buf = bytes.as_slice();
        let mut encoded = Vec::new();
        while !buf.is_empty() {
            let (tag, wire_type) = prost::encoding::decode_key(&mut buf).unwrap();
            prost::encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                .unwrap();
            encoded.push(tag);
        }
        assert_eq!(encoded, numbers);
    }

    #[test]
    fn changing_a_shared_spec_copies_it() {
        let service = ServiceSpec::default();
        let a: SharedTaskSpec = service.task_template.clone().unwrap_or_default().into();
        let mut b = a.clone();
        assert!(a.ptr_eq(&b));
        b.force_update = 1;
        assert!(!a.ptr_eq(&b));
        assert_eq!(a.force_update, 0);
        assert_eq!(b.downgrade().upgrade(), Some(b.clone()));
        let weak = b.downgrade();
        drop(b);
        assert!(weak.is_dead());
    }
}
