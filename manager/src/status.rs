//! The one place where manager errors become gRPC statuses. A status message is what the
//! user reads: one sentence that says what happened and what to do.

use tonic::Status;

use crate::raft::ProposeError;
use crate::store::{ApplyError, LookupError};

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
pub fn propose_error(e: ProposeError) -> Status {
    match e {
        ProposeError::Apply(e) => apply_error(&e),
        ProposeError::Remote(s) => s,
        e @ (ProposeError::NoQuorum { .. } | ProposeError::Joining | ProposeError::Stopped(_)) => {
            Status::unavailable(e.to_string())
        }
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

impl From<ProposeError> for Status {
    fn from(e: ProposeError) -> Self {
        propose_error(e)
    }
}

impl From<LookupError> for Status {
    fn from(e: LookupError) -> Self {
        lookup_error(e)
    }
}
