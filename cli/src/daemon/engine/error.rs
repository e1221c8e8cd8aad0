//! What a Docker client reads when a request fails: dockerd's status codes and its
//! `{"message": "..."}` body, made from skiff's own errors in this one place.
//!
//! The control API's gRPC codes map as dockerd maps swarmkit's (`InvalidArgument` and
//! `FailedPrecondition` 400, `NotFound` 404, `AlreadyExists` 409, `Unavailable` 503, the
//! rest 500). The texts a Docker client or script may match on (no swarm, not a manager,
//! locked, update out of sequence) are dockerd's own, word for word.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// dockerd's answer to a manager request on a node outside any swarm.
pub const NO_SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// dockerd's answer to a manager request on a worker.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
/// dockerd's answer on a locked manager.
pub const LOCKED: &str = "Swarm is encrypted and locked. Please unlock it first or use `docker swarm leave --force` to leave the swarm.";
/// dockerd's answer to `swarm leave` (and `swarm inspect`) outside any swarm.
pub const NOT_IN_SWARM: &str = "This node is not part of a swarm";
/// dockerd's answer to an update that names a version someone else already replaced.
pub const OUT_OF_SEQUENCE: &str = "update out of sequence";

/// A failed request: an HTTP status and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `message` of the body.
    pub message: String,
}

/// What every handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or asks for something skiff refuses.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 503 with one of dockerd's swarm-state texts.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 501: a Docker endpoint skiff does not offer.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A failed call to the daemon's gRPC services, as dockerd maps swarmkit's codes. A
    /// status made on this side (the local socket is gone) says so instead of its code.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().trim();
        let message = if message.is_empty() {
            "skiffd failed the request without saying why; see its log".to_string()
        } else {
            message.to_string()
        };
        let code = match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                StatusCode::BAD_REQUEST
            }
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(code, message)
    }

    /// A stale version on an update becomes dockerd's "update out of sequence" (500).
    pub fn from_update_status(status: &tonic::Status) -> Self {
        if status.code() == tonic::Code::Aborted {
            return Self::internal(OUT_OF_SEQUENCE);
        }
        Self::from_status(status)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{body}\n"),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_dockerds_statuses() {
        let cases = [
            (tonic::Code::InvalidArgument, 400),
            (tonic::Code::FailedPrecondition, 400),
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::Unavailable, 503),
            (tonic::Code::Aborted, 500),
            (tonic::Code::Internal, 500),
        ];
        for (code, http) in cases {
            let e = ApiError::from_status(&tonic::Status::new(code, "why"));
            assert_eq!(e.status.as_u16(), http, "{code:?}");
            assert_eq!(e.message, "why");
        }
    }

    #[test]
    fn a_stale_version_is_update_out_of_sequence() {
        let e = ApiError::from_update_status(&tonic::Status::aborted("version 3 is stale"));
        assert_eq!(e.status.as_u16(), 500);
        assert_eq!(e.message, OUT_OF_SEQUENCE);
        let e = ApiError::from_update_status(&tonic::Status::not_found("no such service"));
        assert_eq!(e.status.as_u16(), 404);
    }

    #[tokio::test]
    async fn the_body_is_dockers_message_object() {
        let response = ApiError::conflict("name taken").into_response();
        assert_eq!(response.status().as_u16(), 409);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, serde_json::json!({ "message": "name taken" }));
    }
}
