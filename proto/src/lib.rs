//! skiff's object model and gRPC services (generated from `proto/skiff.proto`), plus the
//! formats every node must agree on: object IDs, join tokens, image references, where
//! a task's secrets and configs go, and the rules of its container options.
//!
//! This crate holds no behaviour beyond encoding: the API and the storage schema are one.

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
mod generated {
    tonic::include_proto!("skiff.v1");
}

pub use generated::*;
pub use task::{SharedTaskSpec, Task, WeakTaskSpec};

pub mod container_options;
pub mod id;
pub mod log_driver;
pub mod reference;
mod task;
pub mod task_files;
pub mod token;

/// Largest request any skiff endpoint accepts (Raft has its own, larger limit for entries
/// and snapshot chunks).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest listing the control API sends: a cluster of 100,000 tasks lists in about 40 MiB.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Milliseconds since the Unix epoch: the time format of every stored object and status
/// (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The encoded `FileDescriptorSet` of `skiff.proto`, for printing messages as JSON with
/// their field and enum names.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/skiff_descriptor.bin"));
