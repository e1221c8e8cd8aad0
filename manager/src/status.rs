//! The one place where manager errors become gRPC statuses. A status message is what the
//! user reads: one sentence that says what happened and what to do.

use tonic::Status;

use crate::dispatcher::DispatcherError;
use crate::store::{ApplyError, LookupError, StoreError};

/// A state-machine refusal.
pub fn apply_error(e: &ApplyError) -> Status {
    let msg = e.to_string();
    match e {
        ApplyError::Conflict { .. } => Status::aborted(msg),
        ApplyError::NotFound { .. } => Status::not_found(msg),
        ApplyError::AlreadyExists { .. } | ApplyError::NameTaken { .. } => {
            Status::already_exists(msg)
        }
        ApplyError::Invalid(_) => Status::invalid_argument(msg),
    }
}

/// A failed write or read barrier.
pub fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::Apply(e) => apply_error(&e),
        StoreError::Remote { code, message } => Status::new(code, message),
        e @ (StoreError::NoQuorum { .. }
        | StoreError::Joining
        | StoreError::NotLeader
        | StoreError::Stopped(_)) => Status::unavailable(e.to_string()),
    }
}

/// A reference that names no single object.
pub fn lookup_error(e: LookupError) -> Status {
    match e {
        LookupError::NotFound { .. } => Status::not_found(e.to_string()),
        LookupError::Ambiguous { .. } => Status::invalid_argument(e.to_string()),
    }
}

/// The request is malformed.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// The request is well formed but not allowed in the cluster's current state.
pub fn refused(msg: impl Into<String>) -> Status {
    Status::failed_precondition(msg.into())
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        store_error(e)
    }
}

impl From<LookupError> for Status {
    fn from(e: LookupError) -> Self {
        lookup_error(e)
    }
}

impl From<DispatcherError> for Status {
    fn from(e: DispatcherError) -> Self {
        match e {
            DispatcherError::Store(e) => store_error(e),
            DispatcherError::Removed => Status::permission_denied(e.to_string()),
            DispatcherError::Initialising | DispatcherError::Stopped => {
                Status::unavailable(e.to_string())
            }
        }
    }
}
