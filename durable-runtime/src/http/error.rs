//! JSON error responses and the gRPC-status → HTTP-status mapping.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Code;

/// An error answered to the HTTP caller as `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn unknown_instance(id: &str) -> Self {
        Self::not_found(format!("no orchestration instance with id '{id}'"))
    }

    /// A failed sidecar call; `operation` is the gRPC method name.
    pub(crate) fn grpc(operation: &str, status: &tonic::Status) -> Self {
        let http = http_status_for(status.code());
        let detail = status.message();
        let message = match status.code() {
            Code::Unavailable => format!("sidecar unavailable ({operation}): {detail}"),
            Code::DeadlineExceeded => format!("sidecar timed out ({operation}): {detail}"),
            Code::Unimplemented => {
                format!("the sidecar does not implement {operation}: {detail}")
            }
            code => format!("{operation} failed ({code:?}): {detail}"),
        };
        if http.is_server_error() {
            tracing::warn!(operation, code = ?status.code(), detail, "sidecar call failed");
        }
        Self::new(http, message)
    }
}

/// The HTTP status answered for a gRPC status code of the sidecar.
pub(crate) fn http_status_for(code: Code) -> StatusCode {
    match code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(http_status_for(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status_for(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status_for(Code::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            http_status_for(Code::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status_for(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status_for(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(http_status_for(Code::Internal), StatusCode::BAD_GATEWAY);
        assert_eq!(http_status_for(Code::Unknown), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn grpc_error_keeps_the_sidecar_message() {
        let err = ApiError::grpc("StartInstance", &tonic::Status::internal("boom"));
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        assert!(err.message.contains("StartInstance"));
        assert!(err.message.contains("boom"));
    }
}
